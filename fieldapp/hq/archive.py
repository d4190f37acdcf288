"""HqArchive: HQ's encrypted store of keys, devices, bundles and imported testimony.

Every bundle is imported in one SQLite transaction (its revisions, current
state, attachments, sealed identities and receipt together), so a crash leaves
a bundle fully imported or absent. Attachment files are written and fsynced
before that transaction; a crash in between leaves only unreferenced
ciphertext, removed the next time the archive opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, BinaryIO, Self

from crypto.attachment import Encrypted, FileKey
from crypto.enrolment import Enrolment, enrolment_secret, new_enrolment_id
from crypto.errors import StatementError, StatementReason
from crypto.keys import (
    BoxPrivateKey,
    DeviceVerifyKey,
    ProtectionPublicKey,
    RootSigningKey,
    RootVerifyKey,
)
from crypto.receipts import Receipt, sign_receipt
from crypto.revisions import Revision
from crypto.statements import (
    HqKeysStatement,
    HqTrust,
    RootRotationStatement,
    parse_statement,
    root_anchor,
    sign_hq_keys,
    verify_hq_chain,
)
from fieldapp.domain import Testimony, Vocabulary, testimony_from_bytes
from fieldapp.domain.errors import ValidationError
from fieldapp.hq.boxkeys import (
    MAX_HELD_BOX_KEYS,
    BoxKeyInfo,
    TooManyBoxKeys,
    check_destroyable,
    describe_box_keys,
    destroyed_key_refusal,
    find_box_key,
)
from fieldapp.hq.devicechain import DeviceVerdict, judge
from fieldapp.hq.errors import (
    AttachmentVanished,
    DeviceExists,
    DeviceNotFound,
    ImportRefused,
    Refusal,
)
from fieldapp.hq.vault import HqUnlocked
from fieldapp.store import attachments as files
from fieldapp.store.database import (
    Connection,
    DatabaseError,
    IntegrityError,
    integrity_problems,
    transaction,
)
from fieldapp.store.errors import (
    DatabaseDamaged,
    RecordNotFound,
    StoreClosed,
)
from fieldapp.store.home import Home
from fieldapp.store.store import resolve_prefix
from fieldapp.store.textsearch import match_expression, testimony_index_text
from fieldapp.store.vault import Clock, utc_now


@dataclass(frozen=True, slots=True)
class BoxKeyRotation:
    """What ``rotate_box_key`` did: the new key, the key(s) it retired, the statement."""

    key_id: bytes
    retired: tuple[bytes, ...]
    version: int
    statement: bytes


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    name: str
    enrolment_id: bytes
    enrolled_at: str
    bound_at: str | None
    revoked_at: str | None
    keys: tuple[DeviceVerifyKey, ...]  # version order: the enrolled key first

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def key_version(self) -> int | None:
        """The version of the current key (0 until the device rotates it), if bound."""
        return len(self.keys) - 1 if self.keys else None


@dataclass(frozen=True, slots=True)
class IncomingRevision:
    revision: Revision
    created_at: str  # the device's clock, informative
    testimony: Testimony


@dataclass(frozen=True, slots=True)
class IncomingAttachment:
    attachment_id: str
    size: int
    sha256: bytes
    stored_name: str
    key: FileKey


@dataclass(frozen=True, slots=True)
class IncomingBundle:
    """A bundle that opened and verified on its own; the archive checks it against its state."""

    bundle_id: bytes
    payload_sha256: bytes
    hq_key_id: bytes
    size: int
    device: DeviceVerifyKey
    enrolment_id: bytes
    binding: bytes
    testimony_id: str
    revisions: tuple[IncomingRevision, ...]
    attachments: tuple[IncomingAttachment, ...]
    identities: tuple[tuple[str, bytes], ...]
    statements: tuple[bytes, ...] = ()  # the device's key rotation statements, if any


@dataclass(frozen=True, slots=True)
class ImportResult:
    bundle_id: bytes
    testimony_id: str
    device_name: str
    new_revisions: int
    already_imported: bool


@dataclass(frozen=True, slots=True)
class HqSummary:
    id: str
    seq: int
    device_name: str
    status: str
    taken_at: str
    incident: str
    place: str
    violations: tuple[str, ...]
    witness_code: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class HqRevision:
    """One revision as HQ holds it, with where it came from."""

    seq: int
    hash: bytes
    parent_hash: bytes
    device_key: DeviceVerifyKey
    signature: bytes
    payload: bytes
    created_at: str
    bundle_id: bytes
    device_name: str
    imported_at: str

    def as_revision(self, record_id: str) -> Revision:
        return Revision(
            record_id=record_id,
            seq=self.seq,
            parent_hash=self.parent_hash,
            hash=self.hash,
            device=self.device_key,
            signature=self.signature,
            payload=self.payload,
        )


@dataclass(frozen=True, slots=True)
class HqAttachment:
    id: str
    testimony_id: str
    size: int
    sha256: bytes
    bundle_id: bytes
    imported_at: str


@dataclass(frozen=True, slots=True)
class BundleRecord:
    bundle_id: bytes
    device_name: str
    testimony_id: str
    imported_at: str
    receipt: bytes


_SUMMARY = (
    "t.id, t.seq, t.device_name, t.status, t.taken_at, t.incident_text, t.place,"
    " t.violations, t.witness_code, t.updated_at"
)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where HQ's relay is and the credentials for it, kept inside the encrypted archive.

    ``hq_token`` lists, downloads and deletes blobs and publishes receipts and
    statements; ``upload_token`` is the deployment's shared token, written into
    every enrolment file. Neither appears in ``repr``.
    """

    url: str
    hq_token: str = field(repr=False)
    upload_token: str = field(repr=False)
    pin: str | None
    updated_at: str


def _summary(row: Any) -> HqSummary:
    rid, seq, device, status, taken, incident, place, violations, witness, updated = row
    return HqSummary(
        rid,
        seq,
        device,
        status,
        taken,
        incident,
        place,
        tuple(violations.split()),
        witness,
        updated,
    )


class HqArchive:
    """HQ's archive. Open with ``HqArchive.open(unlocked)``; one call at a time."""

    def __init__(
        self, unlocked: HqUnlocked, conn: Connection, clock: Clock, vocabulary: Vocabulary
    ) -> None:
        self._unlocked = unlocked
        self._conn = conn
        self._clock = clock
        self.vocabulary = vocabulary
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def open(
        cls, unlocked: HqUnlocked, *, clock: Clock = utc_now, vocabulary: Vocabulary | None = None
    ) -> Self:
        archive = cls(
            unlocked, unlocked.open_database(), clock, vocabulary or Vocabulary.load_default()
        )
        archive.remove_orphaned_attachments()
        return archive

    @property
    def home(self) -> Home:
        return self._unlocked.home

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            if self._closed:
                raise StoreClosed
            try:
                return list(self._conn.execute(sql, args).fetchall())
            except DatabaseError as e:
                raise DatabaseDamaged from e

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock:
            if self._closed:
                raise StoreClosed
            with transaction(self._conn) as c:
                yield c

    def _now(self) -> str:
        return self._clock().astimezone().isoformat(timespec="seconds")

    def remove_orphaned_attachments(self, *, grace_seconds: float = 3600) -> int:
        """Delete attachment files a crashed import left behind (see attachments.remove_orphans)."""
        names = {str(r[0]) for r in self._query("SELECT stored_name FROM attachments")}
        return files.remove_orphans(
            self._unlocked.home.attachments, names, older_than=time.time() - grace_seconds
        )

    def integrity_problems(self) -> list[str]:
        with self._lock:
            return integrity_problems(self._conn)

    # ------------------------------------------------------------------ keys

    def root_key(self) -> RootSigningKey:
        rows = self._query(
            "SELECT secret FROM root_keys WHERE retired_at IS NULL ORDER BY created_at DESC"
        )
        if not rows or rows[0][0] is None:
            raise DatabaseDamaged
        return RootSigningKey(bytes(rows[0][0]))

    def root_public(self) -> RootVerifyKey:
        return self.root_key().public_key

    def box_keys(self) -> list[BoxPrivateKey]:
        """The box keys that may open bundles: the current one first, then retired ones."""
        rows = self._query(
            "SELECT secret FROM box_keys WHERE secret IS NOT NULL"
            " ORDER BY retired_at IS NOT NULL, created_at DESC LIMIT 64"
        )
        return [BoxPrivateKey(bytes(r[0])) for r in rows]

    def box_key_rows(self) -> list[tuple[bytes, bytes, str, str | None, str | None]]:
        """(key id, public, created, retired, destroyed) of every box key, newest first."""
        return [
            (bytes(k), bytes(p), str(c), r, d)
            for k, p, c, r, d in self._query(
                "SELECT key_id, public, created_at, retired_at, destroyed_at FROM box_keys"
                " ORDER BY created_at DESC, rowid DESC"
            )
        ]

    def box_key_infos(self) -> list[BoxKeyInfo]:
        """Every box key with the dates its retention depends on (fieldapp/hq/boxkeys.py)."""
        with self._lock:
            return describe_box_keys(self.box_key_rows(), self.statements())

    def _append_statement(self, c: Connection, statement: bytes, *, check: bool = True) -> int:
        """Append a signed HQ statement to the chain, in the caller's transaction.

        It must be the next version, and the whole chain must still verify with it
        (``trust()``): HQ never publishes a chain its devices would refuse. Returns
        its version. Raises StatementError (the caller's transaction rolls back).
        ``check=False`` defers the check to the caller's next append: a root
        rotation is only sound once the HQ-keys statement after it is there too
        (the one before may have lapsed).
        """
        parsed = parse_statement(statement)
        if not isinstance(parsed, HqKeysStatement | RootRotationStatement):
            raise StatementError(StatementReason.WRONG_KIND)
        last = c.execute("SELECT coalesce(max(version), 0) FROM statements").fetchone()[0]
        if parsed.version != int(last) + 1:
            raise StatementError(StatementReason.SKIPPED_VERSION)
        c.execute(
            "INSERT INTO statements (version, statement, issued_at) VALUES (?, ?, ?)",
            (parsed.version, statement, parsed.issued_at),
        )
        if check:
            try:
                self.trust()
            except StatementError as e:
                raise StatementError(
                    e.reason,
                    f"HQ's own key statement chain would not verify with it ({e.reason.value}); "
                    "nothing was changed.",
                ) from e
        return parsed.version

    def rotate_box_key(self, validity: timedelta) -> BoxKeyRotation:
        """A new current box key, the old one retired, announced by HQ-keys statement N+1.

        The key and its statement (signed by the current root, with the same
        protection key) are written in one transaction. The statement's issue time
        never goes below the last one's, so devices' clock floors stay sound.
        Raises TooManyBoxKeys when HQ already holds as many keys as an import tries.
        """
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        new = BoxPrivateKey.generate()
        stamp = self._now()
        with self._write() as c:
            held = c.execute("SELECT count(*) FROM box_keys WHERE secret IS NOT NULL").fetchone()
            if int(held[0]) >= MAX_HELD_BOX_KEYS:
                raise TooManyBoxKeys
            last = c.execute("SELECT coalesce(max(issued_at), 0) FROM statements").fetchone()[0]
            issued = max(int(self._clock().timestamp()), int(last))
            top = c.execute("SELECT coalesce(max(version), 0) FROM statements").fetchone()[0]
            version = int(top) + 1
            statement = sign_hq_keys(
                self.root_key(),
                version=version,
                box=new.public_key,
                protection=self.protection_public(),
                issued_at=issued,
                expires_at=issued + int(validity.total_seconds()),
            )
            retired = [
                bytes(r[0])
                for r in c.execute("SELECT key_id FROM box_keys WHERE retired_at IS NULL")
            ]
            c.execute("UPDATE box_keys SET retired_at = ? WHERE retired_at IS NULL", (stamp,))
            c.execute(
                "INSERT INTO box_keys (key_id, secret, public, created_at) VALUES (?, ?, ?, ?)",
                (new.public_key.key_id, new.secret_bytes(), new.public_key.raw, stamp),
            )
            self._append_statement(c, statement)
        return BoxKeyRotation(new.public_key.key_id, tuple(retired), version, statement)

    def destroy_box_key(self, text: str, *, force: bool = False) -> tuple[BoxKeyInfo, bool]:
        """Erase a retired box key's secret (see fieldapp/hq/boxkeys.py for the policy).

        ``text`` is its hex id or a unique prefix. After the transaction the WAL is
        checkpointed and truncated, so no frame holding the secret stays beside the
        database (secure_delete overwrites it inside the database file); the flag
        returned is False if another connection kept the WAL from being truncated
        (it is, by the next checkpoint after that one closes). Raises
        BadKeyId, BoxKeyNotFound, AmbiguousBoxKey, CurrentBoxKey,
        BoxKeyAlreadyDestroyed, InsideGracePeriod; nothing changes then.
        """
        with self._write() as c:
            info = find_box_key(text, self.box_key_infos())
            check_destroyable(info, self._clock(), force=force)
            c.execute(
                "UPDATE box_keys SET secret = NULL, destroyed_at = ?"
                " WHERE key_id = ? AND secret IS NOT NULL AND retired_at IS NOT NULL",
                (self._now(), info.key_id),
            )
        with self._lock:
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        [after] = [i for i in self.box_key_infos() if i.key_id == info.key_id]
        return after, not busy

    def destroyed_key_refusal(self) -> ImportRefused | None:
        """The quarantine reason for a bundle no held key opens, if any box key was destroyed."""
        return destroyed_key_refusal(self.box_key_infos())

    def protection_public(self) -> ProtectionPublicKey:
        rows = self._query("SELECT public FROM protection_keys ORDER BY created_at DESC LIMIT 1")
        if not rows:
            raise DatabaseDamaged
        return ProtectionPublicKey(bytes(rows[0][0]))

    def statements(self) -> list[bytes]:
        """The HQ chain, version 1 first: what a device needs to trust the current keys."""
        return [
            bytes(r[0]) for r in self._query("SELECT statement FROM statements ORDER BY version")
        ]

    def trust(self) -> HqTrust:
        """The state a device reaches by following HQ's own chain now (checks it is sound)."""
        return verify_hq_chain(
            HqTrust.anchor(self._first_root()), self.statements(), int(self._clock().timestamp())
        )

    def _first_root(self) -> RootVerifyKey:
        rows = self._query("SELECT public FROM root_keys ORDER BY rowid LIMIT 1")
        if not rows:
            raise DatabaseDamaged
        return RootVerifyKey(bytes(rows[0][0]))

    def sign_receipt(self, receipt: Receipt) -> bytes:
        return sign_receipt(self.root_key(), receipt)

    # ------------------------------------------------------------------ devices

    def new_enrolment(
        self,
        name: str,
        *,
        relay: str | None = None,
        relay_pin: str | None = None,
        upload_token: str | None = None,
    ) -> Enrolment:
        """A fresh enrolment for a device called ``name`` (not recorded yet).

        Raises ValueError if a relay field is invalid (see crypto.enrolment).
        """
        if self._query("SELECT 1 FROM devices WHERE name = ?", (name,)):
            raise DeviceExists
        # Anchored at the current root (docs/enrolment.md): a new device never needs,
        # nor learns, a root HQ has rotated away from.
        anchor = root_anchor(self.statements())
        return Enrolment(
            device_name=name,
            enrolment_id=new_enrolment_id(),
            secret=enrolment_secret(),
            hq_root=self.root_public(),
            hq_statements=tuple(self.statements()[anchor:]),
            issued_at=int(self._clock().timestamp()),
            relay=relay,
            relay_pin=relay_pin,
            upload_token=upload_token,
            anchor_version=anchor,
        )

    def record_enrolment(self, enrolment: Enrolment) -> None:
        """Remember an enrolment HQ wrote out; its first bundle binds the device key."""
        try:
            with self._write() as c:
                c.execute(
                    "INSERT INTO devices (name, enrolment_id, secret, enrolled_at)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        enrolment.device_name,
                        enrolment.enrolment_id,
                        enrolment.secret,
                        self._now(),
                    ),
                )
        except IntegrityError as e:
            raise DeviceExists from e

    def _device_rows(self, where: str, args: Sequence[object]) -> list[DeviceRecord]:
        rows = self._query(
            "SELECT name, enrolment_id, enrolled_at, bound_at, revoked_at FROM devices"  # noqa: S608
            f" {where} ORDER BY enrolled_at, name",
            args,
        )
        out = []
        for name, eid, enrolled, bound, revoked in rows:
            keys = self._query(
                "SELECT public FROM device_keys WHERE device_name = ? ORDER BY version", (name,)
            )
            out.append(
                DeviceRecord(
                    str(name),
                    bytes(eid),
                    str(enrolled),
                    bound,
                    revoked,
                    tuple(DeviceVerifyKey(bytes(k[0])) for k in keys),
                )
            )
        return out

    def devices(self) -> list[DeviceRecord]:
        return self._device_rows("", ())

    def device(self, name: str) -> DeviceRecord:
        found = self._device_rows("WHERE name = ?", (name,))
        if not found:
            raise DeviceNotFound
        return found[0]

    def device_for_key(self, key: DeviceVerifyKey) -> DeviceRecord | None:
        rows = self._query("SELECT device_name FROM device_keys WHERE public = ?", (key.raw,))
        return None if not rows else self.device(str(rows[0][0]))

    def has_open_enrolments(self) -> bool:
        """True while some enrolment has not yet bound a device key (and is not revoked)."""
        rows = self._query(
            "SELECT 1 FROM devices WHERE bound_at IS NULL AND revoked_at IS NULL LIMIT 1"
        )
        return bool(rows)

    def accepts_new_keys(self) -> bool:
        """True while some device is not revoked: an unknown key may be its first key
        (an open enrolment) or a rotated one, proved in the bundle's manifest."""
        return bool(self._query("SELECT 1 FROM devices WHERE revoked_at IS NULL LIMIT 1"))

    def revoke(self, name: str) -> DeviceRecord:
        """Refuse every future bundle of this enrolment identity, whatever key it uses."""
        with self._write() as c:
            changed = c.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?), secret = NULL"
                " WHERE name = ?",
                (self._now(), name),
            ).rowcount
        if not changed:
            raise DeviceNotFound
        return self.device(name)

    # ------------------------------------------------------------------ import

    def bundle(self, bundle_id: bytes) -> BundleRecord | None:
        rows = self._query(
            "SELECT device_name, testimony_id, imported_at, receipt FROM bundles"
            " WHERE bundle_id = ?",
            (bundle_id,),
        )
        if not rows:
            return None
        device, tid, imported, receipt = rows[0]
        return BundleRecord(bundle_id, str(device), str(tid), str(imported), bytes(receipt))

    def commit(self, incoming: IncomingBundle) -> ImportResult:
        """Import a verified bundle in one transaction, or refuse it whole (ImportRefused).

        Importing a bundle that is already here changes nothing.
        """
        now = self._now()
        imported_at = int(self._clock().timestamp())
        with self._write() as c:
            known = self._known_bundle(c, incoming)
            if known is not None:
                return known
            device_name = self._bind_device(c, incoming, now)
            receipt = sign_receipt(
                self.root_key(),
                Receipt(incoming.bundle_id, incoming.payload_sha256, imported_at),
            )
            c.execute(
                "INSERT INTO bundles (bundle_id, device_name, testimony_id, payload_sha256,"
                " hq_key_id, size, imported_at, receipt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    incoming.bundle_id,
                    device_name,
                    incoming.testimony_id,
                    incoming.payload_sha256,
                    incoming.hq_key_id,
                    incoming.size,
                    now,
                    receipt,
                ),
            )
            new = self._add_revisions(c, incoming, device_name, now)
            self._check_references(c, incoming)
            self._add_attachments(c, incoming, now)
            self._add_identities(c, incoming, device_name, now, advanced=new > 0)
            return ImportResult(
                incoming.bundle_id, incoming.testimony_id, device_name, new, already_imported=False
            )

    def _add_identities(
        self, c: Connection, incoming: IncomingBundle, device_name: str, now: str, *, advanced: bool
    ) -> None:
        """Keep the bundle's identity envelopes; the newest kept is the one exports use.

        A bundle that brought no new revision arrived after a newer one of the same
        testimony (every identity change is a new revision on the device): its
        identity is older than the one HQ holds, so it is kept only if the device
        has sent none for that witness yet.
        """
        for code, sealed in incoming.identities:
            if (
                not advanced
                and c.execute(
                    "SELECT 1 FROM identities i JOIN bundles b ON b.bundle_id = i.bundle_id"
                    " WHERE i.witness_code = ? AND b.device_name = ? LIMIT 1",
                    (code, device_name),
                ).fetchone()
            ):
                continue
            c.execute(
                "INSERT INTO identities (witness_code, bundle_id, sealed, imported_at)"
                " VALUES (?, ?, ?, ?)",
                (code, incoming.bundle_id, sealed, now),
            )

    def _known_bundle(self, c: Connection, incoming: IncomingBundle) -> ImportResult | None:
        row = c.execute(
            "SELECT payload_sha256, device_name FROM bundles WHERE bundle_id = ?",
            (incoming.bundle_id,),
        ).fetchone()
        if row is None:
            return None
        if bytes(row[0]) != incoming.payload_sha256:
            raise ImportRefused(
                Refusal.CONFLICT, "A different bundle with the same id was already imported."
            )
        return ImportResult(
            incoming.bundle_id, incoming.testimony_id, str(row[1]), 0, already_imported=True
        )

    def check_enrolment(
        self,
        enrolment_id: bytes,
        device: DeviceVerifyKey,
        binding: bytes,
        statements: Sequence[bytes] = (),
    ) -> DeviceVerdict:
        """The device a bundle's enrolment claim resolves to, or ImportRefused.

        Read-only: called as soon as a bundle's manifest is read, so a bundle
        with a bad claim (or a device key rotation chain that does not verify,
        fieldapp/hq/devicechain.py) is refused before its attachments are
        decrypted. ``commit`` judges it again inside its transaction.
        """
        with self._lock:
            return judge(
                self._conn,
                enrolment_id,
                device,
                binding,
                statements,
                int(self._clock().timestamp()),
            )

    def _bind_device(self, c: Connection, incoming: IncomingBundle, now: str) -> str:
        verdict = judge(
            c,
            incoming.enrolment_id,
            incoming.device,
            incoming.binding,
            incoming.statements,
            int(self._clock().timestamp()),
        )
        # Keys proved by the bundle (its enrolment proof, its rotation chain), in
        # the import's transaction: a refused or interrupted import adds none.
        c.executemany(
            "INSERT INTO device_keys (public, device_name, version, added_at) VALUES (?, ?, ?, ?)",
            [(key.raw, verdict.name, version, now) for version, key in verdict.new_keys],
        )
        if verdict.binds:
            # One-time: once bound, the secret can bind nothing else.
            c.execute(
                "UPDATE devices SET bound_at = ?, secret = NULL WHERE name = ?",
                (now, verdict.name),
            )
        return verdict.name

    def _add_revisions(
        self, c: Connection, incoming: IncomingBundle, device_name: str, now: str
    ) -> int:
        tid = incoming.testimony_id
        owner = c.execute("SELECT device_name FROM testimonies WHERE id = ?", (tid,)).fetchone()
        if owner is not None and str(owner[0]) != device_name:
            raise ImportRefused(
                Refusal.CONFLICT, "The bundle's testimony id belongs to another device."
            )
        device_keys = {
            bytes(r[0])
            for r in c.execute(
                "SELECT public FROM device_keys WHERE device_name = ?", (device_name,)
            )
        }
        held = {
            int(seq): bytes(digest)
            for seq, digest in c.execute(
                "SELECT seq, hash FROM revisions WHERE testimony_id = ?", (tid,)
            )
        }
        new = 0
        for item in incoming.revisions:
            r = item.revision
            if r.device.raw not in device_keys:
                raise ImportRefused(
                    Refusal.REVISIONS, f"Revision {r.seq} is signed by a key of another device."
                )
            if r.seq in held:
                if held[r.seq] != r.hash:
                    raise ImportRefused(
                        Refusal.CONFLICT,
                        f"Revision {r.seq} differs from the one HQ already holds.",
                    )
                continue
            c.execute(
                "INSERT INTO revisions (testimony_id, seq, parent_hash, hash, device_key,"
                " signature, payload, created_at, bundle_id, device_name, imported_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tid,
                    r.seq,
                    r.parent_hash,
                    r.hash,
                    r.device.raw,
                    r.signature,
                    r.payload,
                    item.created_at,
                    incoming.bundle_id,
                    device_name,
                    now,
                ),
            )
            new += 1
        latest = incoming.revisions[-1]
        head = max(held) if held else 0
        if latest.revision.seq > head:
            self._write_current(c, tid, latest, device_name, now, first=owner is None)
        return new

    def _write_current(
        self,
        c: Connection,
        tid: str,
        latest: IncomingRevision,
        device_name: str,
        now: str,
        *,
        first: bool,
    ) -> None:
        t = latest.testimony
        old = c.execute("SELECT search_rowid FROM testimonies WHERE id = ?", (tid,)).fetchone()
        if old is not None and old[0] is not None:
            c.execute("DELETE FROM search WHERE rowid = ?", (old[0],))
        rowid = c.execute(
            "INSERT INTO search (testimony_id, body) VALUES (?, ?)",
            (tid, testimony_index_text(t, self.vocabulary)),
        ).lastrowid
        values = (
            latest.revision.seq,
            device_name,
            t.status.value,
            t.taken_at.isoformat(timespec="minutes"),
            "" if t.incident_date is None else str(t.incident_date),
            (t.incident_place or t.taken_place).text,
            " ".join(t.violations),
            t.witness_code,
            now,
            rowid,
        )
        if first:
            c.execute(
                "INSERT INTO testimonies (seq, device_name, status, taken_at, incident_text,"
                " place, violations, witness_code, updated_at, search_rowid, id, first_imported)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, tid, now),
            )
        else:
            c.execute(
                "UPDATE testimonies SET seq = ?, device_name = ?, status = ?, taken_at = ?,"
                " incident_text = ?, place = ?, violations = ?, witness_code = ?,"
                " updated_at = ?, search_rowid = ? WHERE id = ?",
                (*values, tid),
            )

    def _check_references(self, c: Connection, incoming: IncomingBundle) -> None:
        """Every attachment HQ holds that a revision names is this testimony's, as captured.

        A device never shares an attachment between testimonies nor changes its
        hash; a reference that does would make exports and custody reports
        serve another testimony's file, or fail on it.
        """
        refs = {
            (a.attachment_id, a.size, a.sha256)
            for r in incoming.revisions
            for a in r.testimony.attachments
        }
        for aid, size, sha256 in sorted(refs):
            row = c.execute(
                "SELECT testimony_id, size, sha256 FROM attachments WHERE id = ?", (aid,)
            ).fetchone()
            if row is not None and (
                str(row[0]) != incoming.testimony_id
                or int(row[1]) != size
                or bytes(row[2]).hex() != sha256
            ):
                raise ImportRefused(
                    Refusal.CONFLICT,
                    "A revision refers to an attachment HQ holds for another testimony "
                    "or with another hash.",
                )

    def _add_attachments(self, c: Connection, incoming: IncomingBundle, now: str) -> None:
        for a in incoming.attachments:
            # Written before this transaction; another HQ process's orphan sweep may
            # have removed it if the import ran long. Never sign a receipt for a file
            # HQ does not hold: fail, and the import is simply run again.
            if not (self.home.attachments / a.stored_name).is_file():
                raise AttachmentVanished
            row = c.execute(
                "SELECT testimony_id, sha256 FROM attachments WHERE id = ?", (a.attachment_id,)
            ).fetchone()
            if row is not None:
                if str(row[0]) != incoming.testimony_id or bytes(row[1]) != a.sha256:
                    raise ImportRefused(
                        Refusal.CONFLICT, "An attachment differs from the one HQ already holds."
                    )
                continue  # sent again in a rebuilt bundle: the first copy stays
            c.execute(
                "INSERT INTO attachments (id, testimony_id, size, sha256, stored_name, file_key,"
                " stream_header, bundle_id, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.attachment_id,
                    incoming.testimony_id,
                    a.size,
                    a.sha256,
                    a.stored_name,
                    a.key.key,
                    a.key.header,
                    incoming.bundle_id,
                    now,
                ),
            )

    # ------------------------------------------------------------------ reading

    def resolve_id(self, text: str) -> str:
        """The full id of the testimony ``text`` names (a whole id or a unique prefix)."""
        return resolve_prefix(text, self._query)

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM testimonies")[0][0])

    def summaries(self, *, limit: int = 1000, offset: int = 0) -> list[HqSummary]:
        rows = self._query(
            f"SELECT {_SUMMARY} FROM testimonies t"  # noqa: S608 -- fixed text
            " ORDER BY t.updated_at DESC, t.id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_summary(r) for r in rows]

    def all_ids(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT id FROM testimonies ORDER BY id")]

    def search(self, query: str, *, limit: int = 100) -> list[HqSummary]:
        expression = match_expression(query)
        if expression is None:
            return []
        rows = self._query(
            f"SELECT {_SUMMARY} FROM (SELECT rowid, bm25(search) AS score FROM search"  # noqa: S608
            " WHERE search MATCH ?) s JOIN testimonies t ON t.search_rowid = s.rowid"
            " ORDER BY s.score, t.id LIMIT ?",
            (expression, limit),
        )
        return [_summary(r) for r in rows]

    def summary(self, record_id: str) -> HqSummary:
        rid = self.resolve_id(record_id)
        rows = self._query(f"SELECT {_SUMMARY} FROM testimonies t WHERE t.id = ?", (rid,))  # noqa: S608
        if not rows:
            raise RecordNotFound
        return _summary(rows[0])

    def history(self, record_id: str) -> list[HqRevision]:
        rid = self.resolve_id(record_id)
        rows = self._query(
            "SELECT seq, hash, parent_hash, device_key, signature, payload, created_at,"
            " bundle_id, device_name, imported_at FROM revisions WHERE testimony_id = ?"
            " ORDER BY seq",
            (rid,),
        )
        out = []
        for seq, digest, parent, key, sig, payload, created, bundle, device, imported in rows:
            try:
                device_key = DeviceVerifyKey(bytes(key))
            except ValueError as e:
                raise DatabaseDamaged from e
            out.append(
                HqRevision(
                    int(seq),
                    bytes(digest),
                    bytes(parent),
                    device_key,
                    bytes(sig),
                    bytes(payload),
                    str(created),
                    bytes(bundle),
                    str(device),
                    str(imported),
                )
            )
        return out

    def testimony(self, record_id: str) -> tuple[str, Testimony]:
        """The current state of a testimony: (full id, testimony)."""
        revisions = self.history(record_id)
        if not revisions:
            raise RecordNotFound
        return self.resolve_id(record_id), decode_testimony(revisions[-1].payload)

    def attachments(self, record_id: str) -> list[HqAttachment]:
        rid = self.resolve_id(record_id)
        return [
            HqAttachment(str(i), str(t), int(s), bytes(h), bytes(b), str(at))
            for i, t, s, h, b, at in self._query(
                "SELECT id, testimony_id, size, sha256, bundle_id, imported_at FROM attachments"
                " WHERE testimony_id = ? ORDER BY imported_at, id",
                (rid,),
            )
        ]

    def attachments_by_ids(self, ids: Sequence[str]) -> list[HqAttachment]:
        out = []
        for aid in ids:
            out += [
                HqAttachment(str(i), str(t), int(s), bytes(h), bytes(b), str(at))
                for i, t, s, h, b, at in self._query(
                    "SELECT id, testimony_id, size, sha256, bundle_id, imported_at"
                    " FROM attachments WHERE id = ?",
                    (aid,),
                )
            ]
        return out

    def read_attachment(self, attachment_id: str, dst: BinaryIO) -> Encrypted:
        """Decrypt an attachment into ``dst``; the caller compares its SHA-256."""
        rows = self._query(
            "SELECT stored_name, file_key, stream_header FROM attachments WHERE id = ?",
            (attachment_id,),
        )
        if not rows:
            raise RecordNotFound
        name, key, header = rows[0]
        return files.read_file(
            self._unlocked.home.attachments, str(name), FileKey(bytes(key), bytes(header)), dst
        )

    def stored_names(self, attachment_ids: set[str]) -> dict[str, str]:
        """The file name each of these attachments is stored under, if HQ holds it."""
        out = {}
        for aid in attachment_ids:
            rows = self._query("SELECT stored_name FROM attachments WHERE id = ?", (aid,))
            if rows:
                out[aid] = str(rows[0][0])
        return out

    def sealed_identities(self, witness_code: str, *, device_name: str) -> list[bytes]:
        """The identity envelopes a device sent for a witness code, newest first.

        Witness codes are drawn by each device: only that device's envelopes
        speak for its witness (another device naming the same code, by chance
        or on purpose, never replaces the identity).
        """
        return [
            bytes(r[0])
            for r in self._query(
                "SELECT i.sealed FROM identities i JOIN bundles b ON b.bundle_id = i.bundle_id"
                " WHERE i.witness_code = ? AND b.device_name = ?"
                " ORDER BY i.imported_at DESC, i.rowid DESC",
                (witness_code, device_name),
            )
        ]

    def bundles_of(self, record_id: str) -> list[BundleRecord]:
        rid = self.resolve_id(record_id)
        return [
            BundleRecord(bytes(b), str(d), rid, str(at), bytes(r))
            for b, d, at, r in self._query(
                "SELECT bundle_id, device_name, imported_at, receipt FROM bundles"
                " WHERE testimony_id = ? ORDER BY imported_at, rowid",
                (rid,),
            )
        ]

    # ------------------------------------------------------------------ receipts

    def receipts(
        self, *, include_exported: bool = False, device: str | None = None
    ) -> list[tuple[bytes, bytes]]:
        """(bundle id, signed receipt) for bundles whose receipt has not left HQ yet.

        ``device`` keeps to one device's bundles: a stick going to one monitor
        then carries nothing about the others.
        """
        if device is not None:
            self.device(device)  # DeviceNotFound for a name HQ never enrolled
        conditions = [] if include_exported else ["receipt_exported_at IS NULL"]
        args: list[object] = []
        if device is not None:
            conditions.append("device_name = ?")
            args.append(device)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return [
            (bytes(b), bytes(r))
            for b, r in self._query(
                f"SELECT bundle_id, receipt FROM bundles {where} ORDER BY rowid",  # noqa: S608
                args,
            )
        ]

    def mark_receipts_exported(self, bundle_ids: Sequence[bytes]) -> None:
        now = self._now()
        with self._write() as c:
            c.executemany(
                "UPDATE bundles SET receipt_exported_at = coalesce(receipt_exported_at, ?)"
                " WHERE bundle_id = ?",
                [(now, b) for b in bundle_ids],
            )

    def receipts_to_publish(self) -> list[tuple[bytes, bytes]]:
        """(bundle id, signed receipt) for bundles whose receipt the relay has not had yet."""
        return [
            (bytes(b), bytes(r))
            for b, r in self._query(
                "SELECT bundle_id, receipt FROM bundles WHERE receipt_published_at IS NULL"
                " ORDER BY rowid"
            )
        ]

    def mark_receipts_published(self, bundle_ids: Sequence[bytes]) -> None:
        now = self._now()
        with self._write() as c:
            c.executemany(
                "UPDATE bundles SET receipt_published_at = coalesce(receipt_published_at, ?)"
                " WHERE bundle_id = ?",
                [(now, b) for b in bundle_ids],
            )

    # ------------------------------------------------------------------ the relay

    def relay_config(self) -> RelayConfig | None:
        rows = self._query(
            "SELECT url, hq_token, upload_token, pin, updated_at FROM relay_config WHERE id = 1"
        )
        if not rows:
            return None
        url, hq_token, upload_token, pin, updated = rows[0]
        return RelayConfig(str(url), str(hq_token), str(upload_token), pin, str(updated))

    def set_relay_config(
        self, url: str, *, hq_token: str, upload_token: str, pin: str | None
    ) -> RelayConfig:
        """Keep (or replace) the relay's address, pin and tokens. The caller validated them."""
        with self._write() as c:
            c.execute(
                "INSERT INTO relay_config (id, url, hq_token, upload_token, pin, updated_at)"
                " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                " hq_token = excluded.hq_token, upload_token = excluded.upload_token,"
                " pin = excluded.pin, updated_at = excluded.updated_at",
                (url, hq_token, upload_token, pin, self._now()),
            )
        config = self.relay_config()
        if config is None:  # pragma: no cover -- just written
            raise DatabaseDamaged
        return config

    def pulled_outcome(self, blob_id: str) -> str | None:
        """What became of a blob pulled from the relay before: imported, already, quarantined."""
        rows = self._query("SELECT outcome FROM pulled_blobs WHERE blob_id = ?", (blob_id,))
        return None if not rows else str(rows[0][0])

    def record_pulled(self, blob_id: str, outcome: str) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO pulled_blobs (blob_id, outcome, pulled_at) VALUES (?, ?, ?)"
                " ON CONFLICT (blob_id) DO NOTHING",
                (blob_id, outcome, self._now()),
            )


def decode_testimony(payload: bytes) -> Testimony:
    try:
        return testimony_from_bytes(payload)
    except ValidationError as e:
        raise DatabaseDamaged from e
