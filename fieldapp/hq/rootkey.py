"""Rotating HQ's root signing key (``fieldapp hq rotate-root``).

TUF's rule: version N+1 names the new root and is signed by the old root and the
new one, so a device that trusts the old root follows to the new one and nothing
else can. Right after it, version N+2 certifies the current box and protection
keys under the new root, so the keys a device seals to are vouched for by the
root it now trusts (docs/statements.md, "What a device does").

Everything HQ signed with the old root and may still send is signed again with
the new one: every stored import receipt is re-signed and marked as not yet
published or exported, so `hq pull` and `hq export-receipts` carry it again.
Devices accept receipts from the root they trust now, never from an earlier one:
a root given up because it leaked must not be able to confirm (and, with
remove-confirmed on, erase) a testimony HQ never received.

The old root's secret is erased in the same transaction, and the write-ahead log
is checkpointed and truncated after it, so the home no longer holds it. New
enrolment files are signed by the new root and anchored at version N+1
(crypto.statements.root_anchor).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from crypto.errors import ReceiptError
from crypto.keys import BoxPublicKey, RootSigningKey, RootVerifyKey
from crypto.receipts import sign_receipt, verify_receipt
from crypto.statements import HqKeysStatement, sign_hq_keys, sign_root_rotation
from fieldapp.hq.boxkeys import stored_statements
from fieldapp.hq.vault import HQ_KEYS_VALIDITY
from fieldapp.store.database import Connection, DatabaseError
from fieldapp.store.errors import DatabaseDamaged

if TYPE_CHECKING:
    from fieldapp.hq.archive import HqArchive

ROOT_VALIDITY = timedelta(days=3650)
"""The expiry written into a root rotation. A device stops trusting a root whose
rotation has expired, so HQ rotates (or refreshes) its root within this time. It
is long on purpose: freshness comes from the HQ-keys statement (HQ_KEYS_VALIDITY),
which ``hq rotate-key`` renews; this only bounds how long a root can stay in use."""


@dataclass(frozen=True, slots=True)
class RootRotation:
    old_root: RootVerifyKey
    new_root: RootVerifyKey
    rotation_version: int  # the root rotation statement; new enrolments anchor here
    keys_version: int  # the HQ-keys statement signed by the new root
    receipts_resigned: int


def rotate_root(archive: HqArchive) -> RootRotation:
    """Replace HQ's root key; see the module docstring. One transaction.

    Raises DatabaseDamaged if the archive's keys or receipts are not what HQ wrote.
    """
    now = int(archive._clock().timestamp())
    stamp = archive._now()
    new = RootSigningKey.generate()
    with archive._write() as c:
        old = _current_root(c)
        rows = c.execute("SELECT version, statement, issued_at FROM statements ORDER BY version")
        chain = [(int(v), bytes(s), int(i)) for v, s, i in rows.fetchall()]
        box = c.execute(
            "SELECT public FROM box_keys WHERE retired_at IS NULL AND secret IS NOT NULL"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        last_keys = _last_hq_keys(raw for _, raw, _ in chain)
        if not chain or box is None or last_keys is None:
            raise DatabaseDamaged
        version = chain[-1][0]
        # Never before an earlier statement: devices raise their clock floor from these.
        issued = max(now, *(i for _, _, i in chain))
        rotation = sign_root_rotation(
            old,
            new,
            version=version + 1,
            issued_at=issued,
            expires_at=issued + int(ROOT_VALIDITY.total_seconds()),
        )
        # The same keys until the same expiry (what hq rotate-key chose); only a
        # lapsed statement gets a new term, as a fresh one from hq init would.
        expires = last_keys.expires_at
        if expires <= issued:
            expires = issued + int(HQ_KEYS_VALIDITY.total_seconds())
        keys = sign_hq_keys(
            new,
            version=version + 2,
            box=BoxPublicKey(bytes(box[0])),
            protection=archive.protection_public(),
            issued_at=issued,
            expires_at=expires,
        )
        c.execute(
            "UPDATE root_keys SET retired_at = ?, secret = NULL WHERE key_id = ?",
            (stamp, old.public_key.key_id),
        )
        c.execute(
            "INSERT INTO root_keys (key_id, secret, public, created_at) VALUES (?, ?, ?, ?)",
            (new.public_key.key_id, new.secret_bytes(), new.public_key.raw, stamp),
        )
        # Each re-checks the whole chain: HQ never keeps one its devices would refuse.
        archive._append_statement(c, rotation, check=False)
        archive._append_statement(c, keys)
        resigned = _resign_receipts(c, old.public_key, new)
    _forget_old_pages(archive)
    return RootRotation(old.public_key, new.public_key, version + 1, version + 2, resigned)


def _last_hq_keys(chain: Iterable[bytes]) -> HqKeysStatement | None:
    keys = [s for s in stored_statements(chain) if isinstance(s, HqKeysStatement)]
    return keys[-1] if keys else None


def _current_root(c: Connection) -> RootSigningKey:
    rows = c.execute(
        "SELECT secret FROM root_keys WHERE retired_at IS NULL ORDER BY created_at DESC"
    ).fetchall()
    if len(rows) != 1 or rows[0][0] is None:
        raise DatabaseDamaged
    return RootSigningKey(bytes(rows[0][0]))


def _resign_receipts(c: Connection, old: RootVerifyKey, new: RootSigningKey) -> int:
    rows = c.execute("SELECT bundle_id, receipt FROM bundles ORDER BY rowid").fetchall()
    updates = []
    for bundle_id, data in rows:
        try:
            receipt = verify_receipt(bytes(data), [old])
        except ReceiptError as e:
            raise DatabaseDamaged from e
        updates.append((sign_receipt(new, receipt), bytes(bundle_id)))
    c.executemany(
        "UPDATE bundles SET receipt = ?, receipt_exported_at = NULL,"
        " receipt_published_at = NULL WHERE bundle_id = ?",
        updates,
    )
    return len(updates)


def _forget_old_pages(archive: HqArchive) -> None:
    """Checkpoint and truncate the WAL: the page that held the old secret leaves it."""
    with archive._lock:
        try:
            archive._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except DatabaseError as e:
            raise DatabaseDamaged from e
