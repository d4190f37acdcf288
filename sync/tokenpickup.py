"""A device picking up a new relay upload token during ``sync push`` (docs/sync.md).

After HQ's key statements (so a root rotation is followed first), the device
fetches HQ's upload-token notice, verifies it under the HQ root it trusts now,
refuses a serial not above the last one it applied, opens its own entry with
its device key, and keeps the new token and serial in one transaction; the rest
of the push already uses the new token. A notice with no entry for this device
(revoked, or its key changed after HQ wrote the notice) is noted, not an error:
the device keeps its token and ``sync status`` says so. A refused notice is a
warning and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto.errors import TokenNoticeError, TokenNoticeReason
from crypto.tokennotice import parse_notice
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import EnrolmentState
from fieldapp.store.uploadtoken import apply_grant, read_token_notice, token_state
from sync.relayclient import Backoff, RelayClient


@dataclass(frozen=True, slots=True)
class PickUp:
    serial: int | None  # the notice's serial if one was applied
    renewed: bool  # this device now sends a new token
    warning: str | None


def pick_up_token(
    store: FieldStore, client: RelayClient, backoff: Backoff, state: EnrolmentState
) -> PickUp:
    """Fetch, check and apply the relay's upload-token notice. Raises RelayError, StoreIOError."""
    data = backoff.call(client.upload_token_notice)
    if data is None:
        return PickUp(None, renewed=False, warning=None)
    try:
        grant = read_token_notice(store, data, state.trust.root)
    except TokenNoticeError as e:
        if e.reason is TokenNoticeReason.REPLAYED and _same_as_applied(store, data):
            return PickUp(None, renewed=False, warning=None)
        return PickUp(
            None,
            renewed=False,
            warning=f"The relay's notice of a new upload token was refused ({e.reason.value}); "
            "this device keeps the token it has. Tell HQ if this keeps happening.",
        )
    apply_grant(store, grant)
    if grant.token is None:
        return PickUp(
            grant.serial,
            renewed=False,
            warning="HQ rotated the relay upload token without a copy for this device (it was "
            "revoked, or its key changed since); it keeps its old token, which stops working "
            "when HQ's grace period ends. Ask HQ.",
        )
    client.use_token(grant.token)
    return PickUp(grant.serial, renewed=True, warning=None)


def _same_as_applied(store: FieldStore, data: bytes) -> bool:
    """A verified notice at the serial already applied: every push after a rotation."""
    return parse_notice(data).serial == token_state(store).serial
