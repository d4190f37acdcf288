"""Pushing to the relay: sealed bundles up, HQ's key statements and receipts down.

``push`` seals whatever is ready (sync/outbox.py), then uploads every bundle
HQ has not confirmed and the relay does not hold yet. A bundle's blob id is the
SHA-256 of its file: creating the upload is idempotent, and after any failure
the client asks the relay where the upload stands (HEAD) and goes on from
there, so a dropped connection costs at most the chunk in flight. Transient
failures (unreachable, timeouts, cuts, 5xx, a moved offset) are retried with
exponential backoff and full jitter while the time budget lasts
(sync/relayclient.py ``Backoff``). A bundle is marked uploaded only after the
relay acknowledged its last byte, which it acknowledges only once the whole
blob hashed to its id.

Then HQ's newer key statements are fetched and verified from the trust state
the device holds (sync/hqtrust.py, the same code a USB stick's statements go
through: verified at ``max(clock, floor)``, the new state and raised floor kept
in one transaction), and if expired keys had held sealing back, what is ready is
sealed and sent now. Last, every receipt published since the stored cursor is
fetched (the relay cannot tell whose bundles they are) and each one verified
against HQ's root exactly as receipts from a USB stick are (sync/usb.py); those
naming this device's bundles confirm them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from crypto.errors import StatementError
from fieldapp.errors import FieldappError
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import EnrolmentState, OutgoingBundle
from fieldapp.store.vault import Clock, utc_now
from fieldapp.transfer import NotEnrolled, Progress, ProgressCallback, TransferResult
from sync.hqtrust import apply_hq_statements
from sync.outbox import HqKeysExpired, build_bundles, outbox_path, reseal_replaced
from sync.relayclient import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_TIMEOUT,
    Backoff,
    HashMismatch,
    RelayClient,
    RelayError,
    RelayProtocolError,
    RelaySettingError,
    RelayTooLarge,
    UploadGone,
)
from sync.tokenpickup import pick_up_token
from sync.usb import UsbTransfers, apply_receipts, verify_receipts

DEFAULT_BUDGET_SECONDS = 600.0
MAX_RESTARTS = 3  # an upload lost or refused whole this often: something is wrong


@dataclass
class PushReport:
    """What one push did."""

    relay: str  # scheme://host:port, for display
    sealed: int = 0
    uploaded: int = 0  # bundles the relay now holds whole, sent by this push
    bytes: int = 0  # their size
    bytes_sent: int = 0  # upload body bytes sent, failed tries included
    resumed: int = 0  # times an upload went on from bytes the relay already held
    retries: int = 0
    receipts: int = 0  # receipts read from the relay (every device's)
    confirmed: int = 0  # this device's bundles newly confirmed
    statements: int = 0  # new HQ key statements accepted
    trust_version: int = 0
    token_serial: int | None = None  # an upload-token notice applied by this push
    token_renewed: bool = False  # the push picked up (and then used) a new upload token
    warnings: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size) of a file, read in blocks without following a symlink."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _read_at(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


class _Pusher:
    def __init__(
        self,
        store: FieldStore,
        client: RelayClient,
        backoff: Backoff,
        progress: ProgressCallback,
        clock: Clock,
        chunk_size: int,
        again: bool = False,
    ) -> None:
        self.again = again
        self.store = store
        self.client = client
        self.backoff = backoff
        self.progress = progress
        self.clock = clock
        self.chunk_size = chunk_size
        self.report = PushReport(relay=client.name)
        self.too_large = 0  # bundles the relay refused as too large: the rest go on
        # Bundles whose upload the relay refused for reasons of their own (someone
        # created an upload under the same id with another length, or kept spoiling
        # it): one such bundle must not hold up the others, the receipts or the keys.
        self.refused = 0

    def run(self) -> PushReport:
        self.backoff.start()
        held_back = self.seal()
        self.upload_pending()
        if self.fetch_statements() and held_back is not None:
            held_back = self.seal()
            self.upload_pending()
        self.fetch_upload_token()
        self.fetch_receipts()
        self.report.bytes_sent = self.client.bytes_sent
        self.report.retries = self.backoff.retries
        if self.too_large:
            raise RelayTooLarge(
                f"{self.too_large} bundle(s) are too large for the relay at {self.client.name} "
                f"and stay queued here: send them by USB (fieldapp sync export). The other "
                f"{self.report.uploaded} were sent."
            )
        if self.refused:
            raise RelayProtocolError(
                f"The relay at {self.client.name} refused {self.refused} bundle(s); they stay "
                f"queued here (send them by USB: fieldapp sync export). The other "
                f"{self.report.uploaded} were sent."
            )
        if held_back is not None:
            raise held_back
        return self.report

    # ------------------------------------------------------------ sealing

    def seal(self) -> HqKeysExpired | None:
        """Seal what is ready; the refusal if HQ's keys here have expired (sent on anyway)."""
        try:
            if self.again:  # sealed to a key HQ replaced (and may have destroyed): again
                self.report.sealed += reseal_replaced(self.store, self.clock())[0]
            built = build_bundles(
                self.store,
                self.clock(),
                lambda done, total: self.progress(Progress("seal", done, total)),
            )
        except HqKeysExpired as e:
            return e
        self.report.sealed += len(built)
        return None

    # ------------------------------------------------------------ uploading

    def upload_pending(self) -> None:
        book = self.store.sync_book
        # Smallest first: on a link that may fail any minute, a long video must not hold
        # up the text testimonies queued behind it.
        pending = sorted(
            (b for b in book.bundles(unconfirmed_only=True) if b.uploaded_at is None),
            key=lambda b: b.size,
        )
        total = sum(b.size for b in pending)
        done = 0
        if pending:
            self.progress(Progress("relay", 0, total))
        for bundle in pending:
            path = outbox_path(self.store, bundle)
            try:
                blob_id, size = sha256_file(path)
            except OSError:
                self.report.warnings.append(
                    "A sealed bundle is missing from the outbox and could not be sent; the "
                    "testimony is sent again when it next changes."
                )
                continue
            try:
                self.upload(bundle, path, blob_id, size, done, total)
            except RelayTooLarge:
                self.too_large += 1
                done += size
                continue
            except RelayProtocolError as e:
                if e.transient:
                    raise
                self.refused += 1
                done += size
                continue
            book.mark_uploaded([bundle.bundle_id])
            done += size
            self.report.uploaded += 1
            self.report.bytes += size
            self.progress(Progress("relay", done, total))

    def upload(
        self, bundle: OutgoingBundle, path: Path, blob_id: str, size: int, before: int, total: int
    ) -> None:
        del bundle  # the relay knows a bundle only by the hash of its bytes
        client, backoff = self.client, self.backoff
        offset = self.where(blob_id, size, create=True)
        if offset > 0:
            self.report.resumed += 1
        restarts = 0
        while offset < size:
            data = _read_at(path, offset, min(self.chunk_size, size - offset))
            try:
                new_offset = client.append(blob_id, offset, data)
            except (UploadGone, HashMismatch) as e:
                # The relay dropped the upload (expired) or refused the assembled bytes
                # (discarding them): start it again, a few times at most.
                restarts += 1
                if restarts >= MAX_RESTARTS:
                    raise RelayProtocolError(
                        f"The relay at {client.name} lost or refused a bundle's upload "
                        "several times; the bundle stays queued here."
                    ) from e
                offset = self.where(blob_id, size, create=True)
            except RelayError as e:
                backoff.wait_or_raise(e)  # raises unless transient and within the budget
                offset = self.where(blob_id, size)
                if offset > 0:
                    self.report.resumed += 1
            else:
                if new_offset <= offset:
                    # An accepted body must move the offset; a relay that says otherwise
                    # would have us send the same chunk forever.
                    raise RelayProtocolError(
                        f"The relay at {client.name} accepted a chunk without storing it."
                    )
                backoff.progressed()
                offset = new_offset
            self.progress(Progress("relay", before + offset, total))

    def where(self, blob_id: str, size: int, *, create: bool = False) -> int:
        """The relay's offset for this upload, creating it if asked or if it is unknown."""
        client = self.client

        def ask() -> int:
            if not create:
                try:
                    state = client.upload_offset(blob_id)
                except UploadGone:
                    state = client.create_upload(blob_id, size)
            else:
                state = client.create_upload(blob_id, size)
            if state.length != size:
                raise RelayProtocolError(
                    f"The relay at {client.name} holds this bundle with another length."
                )
            return state.offset

        return self.backoff.call(ask, progress=False)

    # ------------------------------------------------------------ coming back

    def enrolment(self) -> EnrolmentState:
        state = self.store.sync_book.enrolment()
        if state is None:  # pragma: no cover -- checked before the push began
            raise NotEnrolled
        return state

    def fetch_statements(self) -> bool:
        """Apply HQ's key statements newer than the device's; True if the trust moved on."""
        state = self.enrolment()
        after = state.trust.version
        new = self.backoff.call(lambda: self.client.statements(after))
        if not new:
            self.report.trust_version = after
            return False
        try:
            update = apply_hq_statements(self.store, new, int(self.clock().timestamp()))
        except StatementError as e:
            self.report.trust_version = after
            self.report.warnings.append(
                f"HQ key statements from the relay were refused ({e.reason.value}); this "
                "device keeps the HQ keys it had. Tell HQ."
            )
            return False
        self.report.statements = update.accepted
        self.report.trust_version = update.version
        return True

    def fetch_upload_token(self) -> None:
        """A new upload token from HQ's notice, used from the next request (sync/tokenpickup.py)."""
        picked = pick_up_token(self.store, self.client, self.backoff, self.enrolment())
        self.report.token_serial = picked.serial
        self.report.token_renewed = picked.renewed
        if picked.warning is not None:
            self.report.warnings.append(picked.warning)

    def fetch_receipts(self) -> None:
        book = self.store.sync_book
        state = self.enrolment()
        cursor = book.relay_state().receipts_cursor
        refused = 0
        while True:
            page = self.backoff.call(partial(self.client.receipts, cursor))
            good, failed = verify_receipts(state, page.receipts)
            refused += failed
            self.report.confirmed += apply_receipts(self.store, good)
            self.report.receipts += len(page.receipts)
            book.set_receipts_cursor(page.cursor)
            if not page.more or page.cursor <= cursor:
                break
            cursor = page.cursor
        if refused:
            self.report.warnings.append(
                f"{refused} receipt(s) from the relay did not verify against HQ's key and "
                "were ignored."
            )


def push(
    store: FieldStore,
    *,
    relay: str | None = None,
    proxy: str | None = None,
    progress: ProgressCallback = lambda _p: None,
    clock: Clock = utc_now,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    backoff: Backoff | None = None,
    client_factory: Callable[..., RelayClient] = RelayClient,
    again: bool = False,
) -> PushReport:
    """Seal what is ready, send every bundle the relay lacks, bring statements and receipts back.

    ``again`` first seals again, to HQ's current box key, what HQ has not confirmed
    and was sealed to a key it has since replaced (sync.outbox.reseal_replaced).

    The relay address, its pin and the upload token come from the enrolment;
    ``relay`` overrides the address, ``proxy`` (socks5h://HOST:PORT) sends
    everything through SOCKS5. The outcome (the error's message, or success) is
    recorded for ``sync status``. Raises NotEnrolled, RelaySettingError, a
    RelayError (after retrying what may pass), HqKeysExpired (after sending
    what was sealed, if the relay brought no fresh HQ keys), StoreIOError.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    state = store.sync_book.enrolment()
    if state is None:
        raise NotEnrolled
    url = relay or state.relay
    try:
        if url is None:
            raise RelaySettingError(
                "This device has no relay address (the enrolment file named none); pass "
                "--relay URL, or export to a USB stick instead."
            )
        if state.upload_token is None:
            raise RelaySettingError(
                "The enrolment file carried no relay upload token, so this device cannot send "
                "to the relay; export to a USB stick instead, or ask HQ to set up the relay "
                "before enrolling devices."
            )
        # The device's own setting (sync settings --proxy) unless the command gives one:
        # the UI's "Send to relay" goes through Tor too once it is set.
        with client_factory(
            url,
            state.upload_token,
            pin=state.relay_pin,
            proxy=proxy or store.relay_proxy,
            timeout=DEFAULT_TIMEOUT,
        ) as client:
            pusher = _Pusher(
                store,
                client,
                backoff or Backoff(budget_seconds=budget_seconds),
                progress,
                clock,
                chunk_size,
                again,
            )
            report = pusher.run()
    except FieldappError as e:
        store.sync_book.record_push(e.message)
        raise
    store.sync_book.record_push(None)
    if report.warnings:
        store.sync_book.record_push(report.warnings[-1])
    return report


class NetworkTransfers(UsbTransfers):
    """``Transfers`` for the TUI's sync screen: export to a folder, or push to the relay."""

    def __init__(
        self,
        clock: Clock = utc_now,
        *,
        relay: str | None = None,
        proxy: str | None = None,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    ) -> None:
        super().__init__(clock)
        self._relay = relay
        self._proxy = proxy
        self._budget = budget_seconds

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        report = push(
            store,
            relay=self._relay,
            proxy=self._proxy,
            progress=progress,
            clock=self._clock,
            budget_seconds=self._budget,
        )
        now: datetime = self._clock()
        self._last = TransferResult(
            bundles=report.uploaded,
            bytes=report.bytes,
            destination=f"the relay ({report.relay})",
            finished_at=now.isoformat(timespec="seconds"),
        )
        return self._last
