"""The relay upload token a device holds, and the last HQ notice it applied (docs/sync.md).

The token lives in the ``enrolment`` row (as the enrolment file gave it); the
serial of the last notice applied, and a note when a notice had no entry for
this device, live in the ``meta`` table. A new token and its serial are written
in one transaction, so a crash leaves the old pair or the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from crypto.keys import RootVerifyKey
from crypto.tokennotice import TokenGrant, read_notice
from fieldapp.store.database import transaction
from fieldapp.store.errors import ChangedMeanwhile, DatabaseDamaged

if TYPE_CHECKING:
    from fieldapp.store.store import FieldStore

SERIAL_KEY: Final = "upload_token_serial"
NO_ENTRY_KEY: Final = "upload_token_no_entry"  # serial of a notice that left this device out


@dataclass(frozen=True, slots=True)
class TokenState:
    serial: int  # the last notice applied (0: the token from the enrolment file)
    no_entry_serial: int | None  # the latest notice with no entry for this device


def _meta_int(store: FieldStore, key: str) -> int | None:
    rows = store._query("SELECT value FROM meta WHERE key = ?", (key,))
    if not rows:
        return None
    try:
        return int(rows[0][0])
    except ValueError as e:
        raise DatabaseDamaged from e


def token_state(store: FieldStore) -> TokenState:
    return TokenState(_meta_int(store, SERIAL_KEY) or 0, _meta_int(store, NO_ENTRY_KEY))


def read_token_notice(store: FieldStore, data: bytes, root: RootVerifyKey) -> TokenGrant:
    """Verify ``data`` under ``root`` and open this device's entry with its signing key.

    Raises TokenNoticeError (replayed serials included); changes nothing.
    """
    after = token_state(store).serial
    return read_notice(data, root, store._unlocked.device, after_serial=after)


def apply_grant(store: FieldStore, grant: TokenGrant) -> None:
    """Keep what a verified notice gave: the new token and its serial, or the note that
    it had no entry for this device (the token stays)."""
    with store._lock, transaction(store._connection()) as c:
        row = c.execute("SELECT value FROM meta WHERE key = ?", (SERIAL_KEY,)).fetchone()
        if row is not None and int(row[0]) >= grant.serial:
            raise ChangedMeanwhile  # another push applied this notice first
        upsert = (
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        c.execute(upsert, (SERIAL_KEY, str(grant.serial)))
        if grant.token is None:
            c.execute(upsert, (NO_ENTRY_KEY, str(grant.serial)))
            return
        if not c.execute(
            "UPDATE enrolment SET upload_token = ? WHERE id = 1", (grant.token,)
        ).rowcount:
            raise DatabaseDamaged
        c.execute("DELETE FROM meta WHERE key = ?", (NO_ENTRY_KEY,))
