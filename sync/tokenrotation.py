"""HQ rotating the deployment's upload token (``fieldapp hq rotate-upload-token``).

1. A new token (32 random bytes, as ``relay init`` makes them) and a notice
   giving it to every bound, non-revoked device's current key, signed by HQ's
   current root (crypto/tokennotice.py), recorded in the archive as *pending*
   (fieldapp/hq/uploadtokens.py) before anything leaves HQ.
2. ``PUT /v1/upload-token`` with the token's SHA-256 and the notice: from then
   on the relay takes the new token, and the older ones until the grace ends.
3. The pending rotation is finished: the new token goes into ``relay_config``,
   so enrolment files written afterwards carry it.

A run that finds a pending rotation sends that one again instead of making a
new one (the relay accepts the same request twice), so a failure at any step
is repaired by running the command again, unless sending it now would do harm;
then a new rotation (the next serial) replaces it before anything is sent:

- a device it names has been revoked since (or another was bound): the new
  notice goes to exactly today's recipients, never to a revoked device;
- its grace period has already ended: sent now, it would end every older
  token at once, before any device could fetch the notice with one;
- it is signed by a root HQ has since rotated away from: devices refuse it.

``reissue_after_root_rotation`` re-signs the last rotation under a new root:
the same token and grace end, the next serial, today's recipients.
``resend_last`` sends the last finished rotation again, for a relay restored
from a backup older than it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from crypto.tokennotice import TOKEN_BYTES, parse_notice, token_raw, token_text, write_notice
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.uploadtokens import PendingRotation, UploadTokenBook
from fieldapp.store.vault import Clock, utc_now
from sync.relayclient import DEFAULT_TIMEOUT, Backoff, RelayClient, RelaySettingError

DEFAULT_GRACE_DAYS = 14.0
MAX_GRACE_DAYS = 365.0
_DAY = 86_400


class RotationRefused(FieldappError):
    exit_code = ExitCode.ERROR


@dataclass(frozen=True, slots=True)
class RotationReport:
    relay: str
    serial: int
    devices: int  # entries in the notice
    waiting: int  # enrolments without a bound key: they get no entry
    revoked: int
    previous_valid_until: int
    resent: bool  # a pending rotation from an earlier run was sent again


def _new_rotation(
    archive: HqArchive,
    book: UploadTokenBook,
    grace_days: float,
    now: int,
    *,
    token: str | None = None,
    until: int | None = None,
) -> tuple[PendingRotation, int, int]:
    """Record a new rotation: a new token unless ``token`` (a re-signed one) is given."""
    recipients = book.recipients()
    serial = book.last_serial() + 1
    raw = secrets.token_bytes(TOKEN_BYTES) if token is None else token_raw(token)
    if until is None:
        until = now + round(grace_days * _DAY)
    until = max(until, now)  # a notice cannot end the old tokens before it is issued
    notice = write_notice(
        archive.root_key(),
        serial=serial,
        issued_at=now,
        previous_valid_until=until,
        token=raw,
        devices=[key for _, key in recipients.keys],
    )
    pending = PendingRotation(serial, token_text(raw), notice, until, len(recipients.keys))
    book.begin(pending)
    return pending, recipients.waiting, recipients.revoked


def _harmful_to_send(
    archive: HqArchive, book: UploadTokenBook, pending: PendingRotation, now: int
) -> bool:
    """Whether a pending rotation must be replaced rather than sent (see the module)."""
    notice = parse_notice(pending.notice)
    recipients = {key.key_id for _, key in book.recipients().keys}
    if {e.key_id for e in notice.entries} != recipients:
        return True
    if notice.signer != archive.root_public().key_id:
        return True
    config = archive.relay_config()
    reissue = config is not None and pending.token == config.upload_token
    return not reissue and pending.previous_valid_until <= now


def _replace(
    archive: HqArchive, book: UploadTokenBook, pending: PendingRotation, grace_days: float, now: int
) -> tuple[PendingRotation, int, int]:
    """A new rotation in place of ``pending``; a re-signed token keeps its token and grace."""
    config = archive.relay_config()
    book.abandon(pending)
    if config is not None and pending.token == config.upload_token:
        return _new_rotation(
            archive, book, grace_days, now, token=pending.token, until=pending.previous_valid_until
        )
    return _new_rotation(archive, book, grace_days, now)


def reissue_after_root_rotation(archive: HqArchive, clock: Clock = utc_now) -> bool:
    """Re-sign the pending or last token rotation under HQ's current root (not sent).

    After ``hq rotate-root`` devices refuse a notice the old root signed; this
    records one signed by the new root, for the same token and grace end, to be
    sent by ``rotate_upload_token``. False if there was never a rotation.
    """
    book = UploadTokenBook(archive)
    now = int(clock().timestamp())
    pending = book.pending()
    if pending is not None:
        _replace(archive, book, pending, DEFAULT_GRACE_DAYS, now)
        return True
    last, config = book.last(), archive.relay_config()
    if last is None or config is None or config.upload_token != last.token:
        return False  # never rotated, or the token was set by hand since (hq relay-config)
    _new_rotation(
        archive,
        book,
        DEFAULT_GRACE_DAYS,
        now,
        token=config.upload_token,
        until=last.previous_valid_until,
    )
    return True


def rotate_upload_token(
    archive: HqArchive,
    *,
    grace_days: float = DEFAULT_GRACE_DAYS,
    proxy: str | None = None,
    clock: Clock = utc_now,
    budget_seconds: float = 60.0,
    client_factory: Callable[..., RelayClient] = RelayClient,
    resend_last: bool = False,
) -> RotationReport:
    """Rotate (or finish rotating) the upload token; see the module.

    Raises RelaySettingError (no relay configured), RotationRefused (a grace out
    of range), a RelayError (the rotation stays pending; run again).
    """
    if not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise RotationRefused(f"The grace period must be 0 to {MAX_GRACE_DAYS:g} days.")
    config = archive.relay_config()
    if config is None:
        raise RelaySettingError(
            "HQ has no relay configured; run fieldapp hq relay-config first. Devices that "
            "send by USB stick need no upload token."
        )
    book = UploadTokenBook(archive)
    pending = book.pending()
    resent = pending is not None
    waiting = revoked = 0
    if pending is None and resend_last:
        pending = book.last()
        if pending is None:
            raise RotationRefused("HQ has not rotated the upload token yet: nothing to send again.")
        resent = True
    now = int(clock().timestamp())
    if pending is None:
        pending, waiting, revoked = _new_rotation(archive, book, grace_days, now)
    elif book.pending() is not None and _harmful_to_send(archive, book, pending, now):
        pending, waiting, revoked = _replace(archive, book, pending, grace_days, now)
        resent = False
    digest = hashlib.sha256(pending.token.encode("ascii")).hexdigest()
    with client_factory(
        config.url, config.hq_token, pin=config.pin, proxy=proxy, timeout=DEFAULT_TIMEOUT
    ) as client:
        backoff = Backoff(budget_seconds=budget_seconds)
        backoff.start()
        backoff.call(lambda: client.put_upload_token(digest, pending.notice))
        name = client.name
    if book.pending() is not None:
        book.finish(pending)
    return RotationReport(
        name,
        pending.serial,
        pending.devices,
        waiting,
        revoked,
        pending.previous_valid_until,
        resent,
    )
