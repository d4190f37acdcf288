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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

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
from fieldapp.store.errors import DatabaseDamaged, RecordNotFound, StoreIOError

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
                    list(enumerate(enrolment.hq_statements, start=1)),
                )
        except IntegrityError as e:
            raise AlreadyEnrolled from e
        state = self.enrolment()
        if state is None:  # pragma: no cover -- just written
            raise DatabaseDamaged
        return state

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

    def material(self, record_id: str) -> BundleMaterial:
        store = self._store
        current = store.get(record_id)
        revisions = store.revisions(current.id)
        times = dict(
            store._query(
                "SELECT seq, created_at FROM revisions WHERE testimony_id = ?", (current.id,)
            )
        )
        pending = store._query(
            "SELECT id, size, sha256 FROM attachments WHERE testimony_id = ? AND bundle_id IS NULL"
            " ORDER BY created_at, id",
            (current.id,),
        )
        return BundleMaterial(
            testimony_id=current.id,
            seq=current.seq,
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
    ) -> None:
        """Record a sealed bundle file and mark the testimony sent, in one transaction."""
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
            self._bookkeeping(c, material.testimony_id, Status.READY, Status.SENT, now)

    def _bookkeeping(
        self, c: Connection, record_id: str, old: Status, new: Status, now: str
    ) -> bool:
        """Append a status-only revision ``old`` -> ``new`` if the testimony is still ``old``."""
        store = self._store
        current = store.get(record_id)
        if current.testimony.status is not old:
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

    def bundles(self, *, unconfirmed_only: bool = False) -> list[OutgoingBundle]:
        where = "WHERE confirmed_at IS NULL" if unconfirmed_only else ""
        return [
            OutgoingBundle(bytes(b), str(f), str(t), int(q), int(s), str(c), e, u, k)
            for b, f, t, q, s, c, e, u, k in self._store._query(
                "SELECT bundle_id, file_name, testimony_id, seq, size, created_at,"  # noqa: S608
                f" exported_at, uploaded_at, confirmed_at FROM bundles {where} ORDER BY rowid"
            )
        ]

    def mark_exported(self, bundle_ids: list[bytes]) -> None:
        store = self._store
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            c.executemany(
                "UPDATE bundles SET exported_at = coalesce(exported_at, ?) WHERE bundle_id = ?",
                [(now, b) for b in bundle_ids],
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
            later = c.execute(
                "SELECT 1 FROM bundles WHERE testimony_id = ? AND seq > ? AND confirmed_at IS NULL",
                (tid, seq),
            ).fetchone()
            removed: list[str] = []
            # An older bundle's receipt does not confirm a newer change.
            if (
                later is None
                and self._bookkeeping(c, str(tid), Status.SENT, Status.CONFIRMED, now)
                and purge.is_enabled(c)
            ):
                removed = store.purge_confirmed(c, str(tid), now)
        store.remove_attachment_files(removed)
        found = [b for b in self.bundles() if b.bundle_id == bundle_id]
        if found:  # HQ holds it: the sealed copy has nothing left to do here
            with contextlib.suppress(OSError):
                (store.home.outbox / found[0].file_name).unlink()
        return found[0] if found else None
