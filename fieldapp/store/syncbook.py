"""The monitor's sync bookkeeping: its enrolment with HQ, and the bundles it built.

A testimony is bundled when it is *ready*. Building a bundle writes the sealed
file first (sync/outbox.py); then one transaction here records the bundle,
takes the testimony off the outbox and appends a *sent* revision (sync
bookkeeping: it travels to HQ with the next change, never on its own). HQ's
signed receipt later marks the bundle confirmed and appends a *confirmed*
revision. A crash between the file and the transaction leaves an unrecorded
file that the next build removes, and the testimony still queued.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Literal

from crypto.attachment import DecryptingReader, FileKey
from crypto.bundle import SealedBundle
from crypto.enrolment import Enrolment
from crypto.keys import (
    BoxPublicKey,
    ProtectionPublicKey,
    RootVerifyKey,
    constant_time_equal,
)
from crypto.revisions import Revision
from crypto.statements import HqTrust
from fieldapp.domain import ProtectedIdentity, Status, canonical_bytes
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store import purge
from fieldapp.store.database import Connection, IntegrityError, transaction
from fieldapp.store.errors import ChangedMeanwhile, DatabaseDamaged, RecordNotFound, StoreIOError

if TYPE_CHECKING:
    from fieldapp.store.store import FieldStore


class AlreadyEnrolled(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "This device is already enrolled with HQ; nothing was changed. A new HQ key "
            "reaches it through sync, not through a second enrolment file."
        )


@dataclass(frozen=True, slots=True)
class EnrolmentState:
    """What the device keeps from its enrolment file, and the HQ keys it trusts now."""

    device_name: str
    enrolment_id: bytes
    secret: bytes = field(repr=False)
    trust: HqTrust
    clock_floor: int
    relay: str | None
    relay_pin: str | None
    upload_token: str | None = field(repr=False)
    enrolled_at: str

    @property
    def hq_root(self) -> RootVerifyKey:
        return self.trust.root


@dataclass(frozen=True, slots=True)
class RelayState:
    """How network sync with the relay stands: where reading receipts goes on, the last push."""

    receipts_cursor: int
    last_push_at: str | None
    last_error: str | None
    last_error_at: str | None


@dataclass(frozen=True, slots=True)
class BundleMaterial:
    """Everything one bundle carries for a testimony."""

    testimony_id: str
    seq: int
    revisions: tuple[tuple[Revision, str], ...]  # (revision, created_at), seq 1 first
    attachments: tuple[tuple[str, int, bytes], ...]  # (id, size, sha256) not yet bundled
    witness_code: str | None
    identity: ProtectedIdentity | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingBundle:
    bundle_id: bytes
    file_name: str
    testimony_id: str
    seq: int
    size: int
    created_at: str
    exported_at: str | None
    uploaded_at: str | None
    confirmed_at: str | None


class _CheckedReader(io.RawIOBase):
    """A decrypting reader that also checks the SHA-256 recorded at capture."""

    def __init__(self, src: BinaryIO, key: FileKey, sha256: str) -> None:
        self._src = src
        self._inner = DecryptingReader(src, key)
        self._hash = hashlib.sha256()
        self._expected = sha256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._inner.readinto(buffer)
        if n:
            self._hash.update(buffer[:n])
        elif self._hash.hexdigest() != self._expected:
            raise DatabaseDamaged
        return n or 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._src.close()
        super().close()


class SyncBook:
    """The sync bookkeeping of one open FieldStore (``store.sync_book``)."""

    def __init__(self, store: FieldStore) -> None:
        self._store = store

    # ------------------------------------------------------------ enrolment

    def enrolment(self) -> EnrolmentState | None:
        rows = self._store._query(
            "SELECT device_name, enrolment_id, secret, hq_root, trust_version, box_key,"
            " protection_key, expires_at, root_expires_at, clock_floor, relay, relay_pin,"
            " upload_token, enrolled_at FROM enrolment WHERE id = 1"
        )
        if not rows:
            return None
        (name, eid, secret, root, version, box, prot, expires, root_expires, floor) = rows[0][:10]
        relay, pin, token, enrolled = rows[0][10:]
        try:
            trust = HqTrust(
                root=RootVerifyKey(bytes(root)),
                version=int(version),
                box=BoxPublicKey(bytes(box)),
                protection=ProtectionPublicKey(bytes(prot)),
                expires_at=int(expires),
                root_expires_at=None if root_expires is None else int(root_expires),
            )
        except ValueError as e:
            raise DatabaseDamaged from e
        return EnrolmentState(
            str(name), bytes(eid), bytes(secret), trust, int(floor), relay, pin, token, enrolled
        )

    def enrol(self, enrolment: Enrolment, trust: HqTrust, clock_floor: int) -> EnrolmentState:
        """Keep a verified enrolment and the HQ trust state it gives. Once per device."""
        if trust.box is None or trust.protection is None:
            raise ValueError("an enrolment must certify a box and a protection key")
        store = self._store
        try:
            with store._lock, transaction(store._connection()) as c:
                c.execute(
                    "INSERT INTO enrolment (id, device_name, enrolment_id, secret, hq_root,"
                    " trust_version, box_key, protection_key, expires_at, root_expires_at,"
                    " clock_floor, relay, relay_pin, upload_token, enrolled_at)"
                    " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        enrolment.device_name,
                        enrolment.enrolment_id,
                        enrolment.secret,
                        trust.root.raw,
                        trust.version,
                        trust.box.raw,
                        trust.protection.raw,
                        trust.expires_at,
                        trust.root_expires_at,
                        clock_floor,
                        enrolment.relay,
                        enrolment.relay_pin,
                        enrolment.upload_token,
                        store._now(),
                    ),
                )
                c.executemany(
                    "INSERT INTO hq_statements (version, statement) VALUES (?, ?)",
                    list(enumerate(enrolment.hq_statements, start=enrolment.anchor_version + 1)),
                )
        except IntegrityError as e:
            raise AlreadyEnrolled from e
        state = self.enrolment()
        if state is None:  # pragma: no cover -- just written
            raise DatabaseDamaged
        return state

    def advance_trust(
        self, trust: HqTrust, statements: Sequence[tuple[int, bytes]], clock_floor: int
    ) -> EnrolmentState:
        """Keep a trust state verified from the current one through ``statements``.

        The new trust, the statements (by version) and the raised clock floor are
        written in one transaction, so a crash leaves the old state or the new
        one whole. The caller verified the chain (crypto.statements.verify_hq_chain);
        this only refuses to go backwards.
        """
        if trust.box is None or trust.protection is None or trust.expires_at is None:
            raise ValueError("a trust state after enrolment always certifies HQ keys")
        store = self._store
        with store._lock, transaction(store._connection()) as c:
            row = c.execute(
                "SELECT trust_version, clock_floor FROM enrolment WHERE id = 1"
            ).fetchone()
            if row is None:
                raise DatabaseDamaged
            if trust.version <= int(row[0]):
                raise ChangedMeanwhile  # another sync applied these statements first
            c.execute(
                "UPDATE enrolment SET hq_root = ?, trust_version = ?, box_key = ?,"
                " protection_key = ?, expires_at = ?, root_expires_at = ?, clock_floor = ?"
                " WHERE id = 1",
                (
                    trust.root.raw,
                    trust.version,
                    trust.box.raw,
                    trust.protection.raw,
                    trust.expires_at,
                    trust.root_expires_at,
                    max(int(row[1]), clock_floor),
                ),
            )
            c.executemany(
                "INSERT INTO hq_statements (version, statement) VALUES (?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                list(statements),
            )
        state = self.enrolment()
        if state is None:  # pragma: no cover -- just written
            raise DatabaseDamaged
        return state

    def hq_statements(self) -> list[bytes]:
        """The HQ statements this device holds, version 1 first."""
        return [
            bytes(r[0])
            for r in self._store._query("SELECT statement FROM hq_statements ORDER BY version")
        ]

    # ------------------------------------------------------------ the relay

    def relay_state(self) -> RelayState:
        rows = self._store._query(
            "SELECT receipts_cursor, last_push_at, last_error, last_error_at"
            " FROM relay_state WHERE id = 1"
        )
        if not rows:
            raise DatabaseDamaged
        cursor, pushed, error, error_at = rows[0]
        return RelayState(int(cursor), pushed, error, error_at)

    def set_receipts_cursor(self, cursor: int) -> None:
        """Remember how far the relay's receipts have been read.

        Usually forwards; backwards when the relay was restored from a backup or
        replaced, and answered with its own, lower, end.
        """
        if cursor < 0:
            raise ValueError("a receipts cursor is never negative")
        store = self._store
        with store._lock, transaction(store._connection()) as c:
            c.execute("UPDATE relay_state SET receipts_cursor = ? WHERE id = 1", (cursor,))

    def record_push(self, error: str | None) -> None:
        """Note that a push ended now, and how: ``error`` is its one-line message, or None."""
        store = self._store
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            if error is None:
                c.execute(
                    "UPDATE relay_state SET last_push_at = ?, last_error = NULL,"
                    " last_error_at = NULL WHERE id = 1",
                    (now,),
                )
            else:
                c.execute(
                    "UPDATE relay_state SET last_error = ?, last_error_at = ? WHERE id = 1",
                    (error, now),
                )

    def mark_uploaded(self, bundle_ids: Sequence[bytes]) -> None:
        """The relay holds these bundles, whole (it checked their hash)."""
        self._mark("uploaded_at", bundle_ids)

    def _mark(self, column: Literal["uploaded_at", "exported_at"], ids: Sequence[bytes]) -> None:
        """Set ``column`` to now where it is not set yet; the first time stays."""
        store = self._store
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            c.executemany(
                f"UPDATE bundles SET {column} = coalesce({column}, ?) WHERE bundle_id = ?",  # noqa: S608
                [(now, b) for b in ids],
            )

    # ------------------------------------------------------------ building

    def ready(self) -> list[str]:
        """Testimonies with unsent revisions whose current state is ready, oldest first."""
        return [
            str(r[0])
            for r in self._store._query(
                "SELECT o.testimony_id FROM outbox o JOIN testimonies t ON t.id = o.testimony_id"
                " WHERE t.status = ? ORDER BY o.rowid",
                (Status.READY.value,),
            )
        ]

    def material(self, record_id: str, reclaim: frozenset[bytes] = frozenset()) -> BundleMaterial:
        """What a bundle for ``record_id`` carries: every revision, and the attachments no
        bundle carried yet or that only the bundles in ``reclaim`` carried (being replaced)."""
        store = self._store
        current = store.get(record_id)
        revisions = store.revisions(current.id)
        times = dict(
            store._query(
                "SELECT seq, created_at FROM revisions WHERE testimony_id = ?", (current.id,)
            )
        )
        pending = [
            (i, s, h)
            for i, s, h, b in store._query(
                "SELECT id, size, sha256, bundle_id FROM attachments WHERE testimony_id = ?"
                " ORDER BY created_at, id",
                (current.id,),
            )
            if b is None or bytes(b) in reclaim
        ]
        return BundleMaterial(
            testimony_id=current.id,
            # The chain as read, not the head read a moment before it: an edit
            # in between must not be taken as bundled.
            seq=revisions[-1].seq,
            revisions=tuple((r, str(times[r.seq])) for r in revisions),
            attachments=tuple((str(i), int(s), bytes.fromhex(h)) for i, s, h in pending),
            witness_code=current.testimony.witness_code,
            identity=current.identity,
        )

    def open_attachment(self, attachment_id: str) -> BinaryIO:
        """A stream of an attachment's plaintext, checked against its capture hash at the end."""
        rows = self._store._query(
            "SELECT stored_name, file_key, stream_header, sha256 FROM attachments WHERE id = ?",
            (attachment_id,),
        )
        if not rows:
            raise RecordNotFound
        name, key, header, sha256 = rows[0]
        folder = self._store._unlocked.home.attachments
        try:
            src = (folder / str(name)).open("rb")
        except OSError as e:
            raise StoreIOError from e
        return io.BufferedReader(_CheckedReader(src, FileKey(bytes(key), bytes(header)), sha256))

    def record(
        self,
        material: BundleMaterial,
        sealed: SealedBundle,
        file_name: str,
        attachment_ids: list[str],
        reclaim: frozenset[bytes] = frozenset(),
    ) -> None:
        """Record a sealed bundle file and mark the testimony sent, in one transaction.

        Attachments move to it from no bundle, or from a bundle in ``reclaim``.
        """
        store = self._store
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            c.execute(
                "INSERT INTO bundles (bundle_id, file_name, testimony_id, seq, size,"
                " payload_sha256, hq_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sealed.bundle_id,
                    file_name,
                    material.testimony_id,
                    material.seq,
                    sealed.size,
                    sealed.payload_sha256,
                    sealed.hq_key_id,
                    now,
                ),
            )
            c.executemany(
                "UPDATE attachments SET bundle_id = ? WHERE id = ? AND bundle_id IS NULL",
                [(sealed.bundle_id, a) for a in attachment_ids],
            )
            c.executemany(  # only when sealing again (sync.outbox.reseal_replaced)
                "UPDATE attachments SET bundle_id = ? WHERE id = ? AND bundle_id = ?",
                [(sealed.bundle_id, a, old) for a in attachment_ids for old in reclaim],
            )
            c.execute(
                "DELETE FROM outbox WHERE testimony_id = ? AND seq <= ?",
                (material.testimony_id, material.seq),
            )
            c.execute(
                "INSERT INTO sync_state (testimony_id, sent_seq) VALUES (?, ?)"
                " ON CONFLICT (testimony_id) DO UPDATE"
                " SET sent_seq = max(sent_seq, excluded.sent_seq)",
                (material.testimony_id, material.seq),
            )
            # Marked sent only if nothing was saved since the bundle was read (an edit
            # while a large bundle was sealing stays queued, and travels next time).
            self._bookkeeping(
                c, material.testimony_id, Status.READY, Status.SENT, now, head=material.seq
            )

    def _bookkeeping(
        self, c: Connection, record_id: str, old: Status, new: Status, now: str, *, head: int
    ) -> bool:
        """Append a status-only revision ``old`` -> ``new`` if the testimony is still
        ``old`` and its newest revision is still ``head``."""
        store = self._store
        current = store.get(record_id)
        if current.testimony.status is not old or current.seq != head:
            return False
        testimony = dataclasses.replace(current.testimony, status=new)
        store._append(
            c,
            record_id,
            current,
            testimony,
            canonical_bytes(testimony),
            None,
            [],
            now,
            queue=False,
        )
        return True

    # ------------------------------------------------------------ the outbox folder

    def sealed_to_other_keys(self, key_id: bytes, *, replaced: bool) -> dict[bytes, str]:
        """Unconfirmed bundles sealed to an HQ box key other than ``key_id``: id -> testimony.

        ``replaced``: only those a later bundle of the same testimony, sealed to
        ``key_id``, already replaces; otherwise only those none replaces yet.
        """
        exists = "EXISTS" if replaced else "NOT EXISTS"
        return {
            bytes(b): str(t)
            for b, t in self._store._query(
                "SELECT b.bundle_id, b.testimony_id FROM bundles b"  # noqa: S608 -- fixed words
                " WHERE b.confirmed_at IS NULL AND b.hq_key_id != ?"
                f" AND {exists} (SELECT 1 FROM bundles n WHERE n.testimony_id = b.testimony_id"
                " AND n.rowid > b.rowid AND n.hq_key_id = ?) ORDER BY b.rowid",
                (key_id, key_id),
            )
        }

    def bundles(self, *, unconfirmed_only: bool = False) -> list[OutgoingBundle]:
        where = "WHERE confirmed_at IS NULL" if unconfirmed_only else ""
        return self._bundles(where, ())

    def bundle(self, bundle_id: bytes) -> OutgoingBundle | None:
        """One bundle by id (its primary key), or None."""
        found = self._bundles("WHERE bundle_id = ?", (bundle_id,))
        return found[0] if found else None

    def _bundles(self, where: str, args: tuple[object, ...]) -> list[OutgoingBundle]:
        return [
            OutgoingBundle(bytes(b), str(f), str(t), int(q), int(s), str(c), e, u, k)
            for b, f, t, q, s, c, e, u, k in self._store._query(
                "SELECT bundle_id, file_name, testimony_id, seq, size, created_at,"  # noqa: S608
                f" exported_at, uploaded_at, confirmed_at FROM bundles {where} ORDER BY rowid",
                args,
            )
        ]

    def mark_exported(self, bundle_ids: Sequence[bytes]) -> None:
        """These bundles were written to a folder (a USB stick)."""
        self._mark("exported_at", bundle_ids)

    def _confirm_testimony(self, c: Connection, record_id: str, now: str) -> bool:
        """Mark a testimony confirmed if HQ now holds all of it; True if it was.

        All of it: its newest bundle is confirmed and nothing was saved after that
        bundle but its *sent* mark (an older bundle's receipt never confirms a newer
        change), and every attachment arrived in a bundle HQ confirmed (attachments
        travel once, so a lost first bundle means HQ lacks them).
        """
        latest = c.execute(
            "SELECT seq, confirmed_at FROM bundles WHERE testimony_id = ?"
            " ORDER BY seq DESC, rowid DESC LIMIT 1",
            (record_id,),
        ).fetchone()
        if latest is None or latest[1] is None:
            return False
        missing = c.execute(
            "SELECT 1 FROM attachments a LEFT JOIN bundles b ON b.bundle_id = a.bundle_id"
            " WHERE a.testimony_id = ? AND b.confirmed_at IS NULL LIMIT 1",
            (record_id,),
        ).fetchone()
        if missing is not None:
            return False
        # Head: the sent mark after the bundle's revisions, or (a bundle sealed again
        # after it was sent, sync export --again) the sent mark inside the bundle.
        return self._bookkeeping(
            c, record_id, Status.SENT, Status.CONFIRMED, now, head=int(latest[0]) + 1
        ) or self._bookkeeping(
            c, record_id, Status.SENT, Status.CONFIRMED, now, head=int(latest[0])
        )

    def confirm(self, bundle_id: bytes, payload_sha256: bytes) -> OutgoingBundle | None:
        """Apply HQ's (verified) receipt. Returns the bundle if this confirmed it just now.

        A receipt for a bundle this device never built, or whose payload hash
        differs, confirms nothing.
        """
        store = self._store
        rows = store._query(
            "SELECT testimony_id, seq, payload_sha256, confirmed_at FROM bundles"
            " WHERE bundle_id = ?",
            (bundle_id,),
        )
        if not rows or rows[0][3] is not None:
            return None
        tid, seq, digest, _ = rows[0]
        if not constant_time_equal(bytes(digest), payload_sha256):
            return None
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            c.execute("UPDATE bundles SET confirmed_at = ? WHERE bundle_id = ?", (now, bundle_id))
            c.execute(
                "INSERT INTO sync_state (testimony_id, confirmed_seq) VALUES (?, ?)"
                " ON CONFLICT (testimony_id) DO UPDATE"
                " SET confirmed_seq = max(confirmed_seq, excluded.confirmed_seq)",
                (tid, seq),
            )
            removed: list[str] = []
            if self._confirm_testimony(c, str(tid), now) and purge.is_enabled(c):
                removed = store.purge_confirmed(c, str(tid), now)
        store.remove_attachment_files(removed)
        found = self.bundle(bundle_id)
        if found is not None:  # HQ holds it: the sealed copy has nothing left to do here
            with contextlib.suppress(OSError):
                (store.home.outbox / found.file_name).unlink()
        return found
