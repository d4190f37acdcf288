"""FieldStore: testimonies, revisions, witness identities, attachments and the outbox.

Every save is one SQLite transaction that appends a signed revision and updates
the derived current state, the search index and the outbox together, so a crash
leaves either the old state or the new one. Attachment files are encrypted and
fsynced before that transaction and removed again if it fails.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Self

from crypto.attachment import Encrypted, FileKey
from crypto.bundle import SealedBundle, seal_bundle
from crypto.enrolment import binding_proof
from crypto.keys import BoxPublicKey, DeviceSigningKey, DeviceVerifyKey
from crypto.revisions import GENESIS, Revision, make_revision, revision_hash, verify_chain
from fieldapp.domain import (
    AttachmentRef,
    ProtectedIdentity,
    Status,
    Testimony,
    ValidationError,
    Vocabulary,
    canonical_bytes,
    check_transition,
    dump_canonical,
    identity_from_json,
    identity_to_json,
    new_witness_code,
    testimony_from_bytes,
    validate_identity,
    validate_testimony,
)
from fieldapp.domain.codec import load_strict
from fieldapp.store import attachments as files
from fieldapp.store import purge, rotation
from fieldapp.store.database import Connection, DatabaseError, integrity_problems, transaction
from fieldapp.store.errors import (
    AmbiguousId,
    DatabaseDamaged,
    HomeMissing,
    RecordNotFound,
    RecordPurged,
    SearchCancelled,
    StoreClosed,
)
from fieldapp.store.home import Home
from fieldapp.store.records import HistoryEntry, StoredTestimony, Summary
from fieldapp.store.syncbook import SyncBook
from fieldapp.store.textsearch import match_expression, testimony_index_text
from fieldapp.store.vault import Clock, Unlocked, utc_now

_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_CHARS = 20  # 100 random bits: unique across every device of a deployment
MIN_PREFIX = 4
PAGE = 50
_LEFT_DEVICE = frozenset({Status.SENT, Status.CONFIRMED})
SEARCH_WINDOW = 2000


def _is_interrupt(error: BaseException) -> bool:
    """SQLite's own message for a statement stopped by ``interrupt()``."""
    return error.args == ("interrupted",)


def new_record_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    value = int.from_bytes(random_bytes(13), "big") >> 4  # 100 bits
    return "".join(_ID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(ID_CHARS)))


def resolve_prefix(text: str, query: Callable[[str, Sequence[object]], list[Any]]) -> str:
    """The full id in ``testimonies`` that ``text`` names: a whole id or a unique prefix.

    Shared by the monitor's store and HQ's archive (same id format, same table
    name). Raises RecordNotFound, AmbiguousId.
    """
    prefix = text.strip().lower()
    if len(prefix) < MIN_PREFIX or any(ch not in _ID_ALPHABET for ch in prefix):
        raise RecordNotFound
    rows = query(
        "SELECT id FROM testimonies WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
        (prefix, prefix + "~"),
    )
    if not rows:
        raise RecordNotFound
    if len(rows) > 1 and str(rows[0][0]) != prefix:
        raise AmbiguousId
    return str(rows[0][0])


def _summary(row: Any) -> Summary:
    (rid, seq, status, taken_at, incident, place, violations, witness, updated) = row
    return Summary(
        id=rid,
        seq=seq,
        status=Status(status),
        taken_at=taken_at,
        incident=incident,
        place=place,
        violations=tuple(violations.split()),
        witness_code=witness,
        updated_at=updated,
    )


class Sort(StrEnum):
    """Orders the testimony list can be shown in, newest first."""

    UPDATED = "updated"
    TAKEN = "taken"
    INCIDENT = "incident"


_ORDER_BY = {
    Sort.UPDATED: "t.updated_at DESC, t.id",
    Sort.TAKEN: "t.taken_utc DESC, t.id",
    Sort.INCIDENT: "t.incident_start DESC, t.id",
}

_SUMMARY_COLUMNS = (
    "t.id, t.seq, t.status, t.taken_at, t.incident_text, t.place, t.violations, "
    "t.witness_code, t.updated_at"
)


class FieldStore:
    """The monitor's encrypted records. Open with ``FieldStore.open(unlocked)``.

    Methods raise ValidationError for refused input, RecordNotFound / AmbiguousId
    for ids, DatabaseDamaged when SQLCipher finds a page that does not
    authenticate, StoreIOError / AttachmentUnreadable for files.
    """

    def __init__(
        self,
        unlocked: Unlocked,
        conn: Connection,
        vocabulary: Vocabulary,
        clock: Clock,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._unlocked = unlocked
        self._conn = conn
        self.vocabulary = vocabulary
        self._clock = clock
        self._random = random_bytes
        # One SQLite connection serves every UI worker thread: one call at a time,
        # so two transactions never interleave and close() waits for the last one.
        self._lock = threading.RLock()
        self._closed = False
        # Guards the "a search is running" flag so cancel_search() can never
        # interrupt anything else (see cancel_search).
        self._search_flag = threading.Lock()
        self._searching = False

    @classmethod
    def open(
        cls,
        unlocked: Unlocked,
        *,
        vocabulary: Vocabulary | None = None,
        clock: Clock = utc_now,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> Self:
        store = cls(
            unlocked,
            unlocked.open_database(),
            vocabulary or Vocabulary.load_default(),
            clock,
            random_bytes,
        )
        try:
            rotation.finish_pending(store)  # a rotation a crash interrupted
        except BaseException:
            store.close()
            raise
        store.remove_orphaned_attachments()
        return store

    def remove_orphaned_attachments(self, *, grace_seconds: float = 3600) -> int:
        """Delete attachment files left by a crashed save (see attachments.remove_orphans)."""
        names = {str(r[0]) for r in self._query("SELECT stored_name FROM attachments")}
        cutoff = time.time() - grace_seconds
        return files.remove_orphans(self._unlocked.home.attachments, names, older_than=cutoff)

    def close(self) -> None:
        """Close the database; waits for a call in progress to finish first."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _connection(self) -> Connection:
        if self._closed:
            raise StoreClosed
        return self._conn

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ identity of this device

    @property
    def home(self) -> Home:
        return self._unlocked.home

    @property
    def device_key(self) -> DeviceVerifyKey:
        return self._unlocked.device.public_key

    def seal_bundle(self, src: BinaryIO, dst: BinaryIO, recipient: BoxPublicKey) -> SealedBundle:
        """Seal ``src`` into ``dst`` as a bundle to HQ, signed with this device's key."""
        return seal_bundle(src, dst, recipient=recipient, device=self._unlocked.device)

    def binding_proof(self, secret: bytes) -> bytes:
        """Proof for HQ that this device's key holds the enrolment secret."""
        return binding_proof(secret, self.device_key)

    @functools.cached_property
    def recorded_by(self) -> str:
        """The id every new revision of this device carries in ``recorded_by``: the key
        that signs it (after a key rotation, older revisions name an older key)."""
        return self.device_key.key_id.hex()

    def _switch_device(self, device: DeviceSigningKey) -> None:
        """Sign with ``device`` from now on (fieldapp/store/rotation.py switched the file)."""
        with self._lock:
            self._unlocked = dataclasses.replace(self._unlocked, device=device)
            self.__dict__.pop("recorded_by", None)

    def new_witness_code(self) -> str:
        return new_witness_code(self._random)

    def _now(self) -> str:
        return self._clock().astimezone().isoformat(timespec="seconds")

    # ------------------------------------------------------------ writing

    def create(
        self,
        testimony: Testimony,
        *,
        identity: ProtectedIdentity | None = None,
        attach: Iterable[Path] = (),
    ) -> StoredTestimony:
        """Save a new testimony (revision 1), its witness identity and attachments."""
        record_id = new_record_id(self._random)
        return self._save(record_id, None, testimony, identity, list(attach))

    def update(
        self,
        record_id: str,
        testimony: Testimony,
        *,
        identity: ProtectedIdentity | None = None,
        attach: Iterable[Path] = (),
    ) -> StoredTestimony:
        """Save a new revision of ``record_id``; nothing is written if nothing changed.

        Changing the content of a sent or confirmed testimony reopens it as a
        draft (or ready, if asked): the correction must travel to HQ again, and
        the receipt for the bundle that left before must not confirm it.
        """
        current = self.get(record_id)
        files_to_add = list(attach)
        old = current.testimony.status
        if old in _LEFT_DEVICE and self._changes_content(
            current, testimony, identity, files_to_add
        ):
            old = Status.DRAFT
            if testimony.status in _LEFT_DEVICE:
                testimony = dataclasses.replace(testimony, status=Status.DRAFT)
        if testimony.status is not old:
            check_transition(old, testimony.status)
        return self._save(current.id, current, testimony, identity, files_to_add)

    def _changes_content(
        self,
        current: StoredTestimony,
        testimony: Testimony,
        identity: ProtectedIdentity | None,
        attach: list[Path],
    ) -> bool:
        """True if saving ``testimony`` would change more than its status."""
        if attach or (identity is not None and identity != current.identity):
            return True
        # recorded_by names the signing key: after a key rotation it differs, but
        # that alone is no change of content.
        same_status = dataclasses.replace(
            testimony,
            status=current.testimony.status,
            recorded_by=current.testimony.recorded_by,
        )
        return canonical_bytes(same_status) != canonical_bytes(current.testimony)

    def set_status(self, record_id: str, status: Status) -> StoredTestimony:
        current = self.get(record_id)
        return self.update(current.id, dataclasses.replace(current.testimony, status=status))

    def _save(
        self,
        record_id: str,
        current: StoredTestimony | None,
        testimony: Testimony,
        identity: ProtectedIdentity | None,
        attach: list[Path],
    ) -> StoredTestimony:
        if not self._unlocked.home.is_set_up():
            raise HomeMissing  # erased (panic) while this store was open: save nothing
        testimony = dataclasses.replace(testimony, recorded_by=self.recorded_by)
        if identity is not None:
            validate_identity(identity)
        validate_testimony(testimony, self.vocabulary)  # before any file is written
        stored: list[files.StoredFile] = []
        try:
            stored.extend(files.store_file(self._unlocked.home.attachments, p) for p in attach)
            refs = tuple(
                AttachmentRef(
                    # Independent of the random file name on disk, which HQ never sees.
                    attachment_id=new_record_id(self._random),
                    filename=s.filename,
                    media_type=s.media_type,
                    size=s.size,
                    sha256=s.sha256,
                )
                for s in stored
            )
            testimony = dataclasses.replace(testimony, attachments=testimony.attachments + refs)
            validate_testimony(testimony, self.vocabulary)
            payload = canonical_bytes(testimony)
            identity_changed = identity is not None and (
                current is None or current.identity != identity
            )
            unchanged = current is not None and canonical_bytes(
                dataclasses.replace(testimony, recorded_by=current.testimony.recorded_by)
            ) == canonical_bytes(current.testimony)
            if current is not None and unchanged and not stored and not identity_changed:
                return current
            return self._commit(record_id, current, testimony, payload, identity, stored)
        except BaseException:
            for s in stored:
                files.remove_file(self._unlocked.home.attachments, s.stored_name)
            raise

    def _commit(
        self,
        record_id: str,
        current: StoredTestimony | None,
        testimony: Testimony,
        payload: bytes,
        identity: ProtectedIdentity | None,
        stored: list[files.StoredFile],
    ) -> StoredTestimony:
        now = self._now()
        with self._lock, transaction(self._connection()) as c:
            return self._append(c, record_id, current, testimony, payload, identity, stored, now)

    def _append(
        self,
        c: Connection,
        record_id: str,
        current: StoredTestimony | None,
        testimony: Testimony,
        payload: bytes,
        identity: ProtectedIdentity | None,
        stored: list[files.StoredFile],
        now: str,
        *,
        queue: bool = True,
    ) -> StoredTestimony:
        """Append one signed revision inside the caller's transaction.

        ``queue=False`` is for sync bookkeeping (sent, confirmed by HQ): such a
        revision travels with the next change, never on its own.
        """
        seq, parent = self._head(c, record_id)
        if (current is None) != (seq == 0):
            raise DatabaseDamaged  # someone else created or removed this record under us
        revision = make_revision(self._unlocked.device, record_id, seq + 1, parent, payload)
        c.execute(
            "INSERT INTO revisions (testimony_id, seq, parent_hash, hash, device_key,"
            " signature, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                revision.seq,
                revision.parent_hash,
                revision.hash,
                revision.device.raw,
                revision.signature,
                payload,
                now,
            ),
        )
        created = now if current is None else current.created_at
        self._write_current(c, record_id, revision.seq, testimony, created, now)
        for s, ref in zip(stored, testimony.attachments[-len(stored) :], strict=False):
            c.execute(
                "INSERT INTO attachments (id, testimony_id, stored_name, filename,"
                " media_type, size, sha256, file_key, stream_header, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ref.attachment_id,
                    record_id,
                    s.stored_name,
                    s.filename,
                    s.media_type,
                    s.size,
                    s.sha256,
                    s.key.key,
                    s.key.header,
                    now,
                ),
            )
        if identity is not None and testimony.witness_code is not None:
            c.execute(
                "INSERT INTO witness_identities (witness_code, identity, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (witness_code) DO UPDATE"
                " SET identity = excluded.identity, updated_at = excluded.updated_at",
                (testimony.witness_code, dump_canonical(identity_to_json(identity)), now),
            )
        if queue:
            c.execute(
                "INSERT INTO outbox (testimony_id, seq) VALUES (?, ?)"
                " ON CONFLICT (testimony_id) DO UPDATE SET seq = excluded.seq",
                (record_id, revision.seq),
            )
        return StoredTestimony(
            record_id, revision.seq, testimony, created, now, self._identity_of(testimony)
        )

    @staticmethod
    def _head(c: Connection, record_id: str) -> tuple[int, bytes]:
        row = c.execute(
            "SELECT seq, hash FROM revisions WHERE testimony_id = ? ORDER BY seq DESC LIMIT 1",
            (record_id,),
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def _write_current(
        self, c: Connection, record_id: str, seq: int, t: Testimony, created: str, now: str
    ) -> None:
        place = (t.incident_place or t.taken_place).text
        old = c.execute(
            "SELECT search_rowid FROM testimonies WHERE id = ?", (record_id,)
        ).fetchone()
        if old is not None and old[0] is not None:
            c.execute("DELETE FROM search WHERE rowid = ?", (old[0],))
        search_rowid = c.execute(
            "INSERT INTO search (testimony_id, body) VALUES (?, ?)",
            (record_id, self._index_body(t)),
        ).lastrowid
        c.execute(
            "INSERT INTO testimonies (id, seq, status, taken_at, taken_utc, incident_start,"
            " incident_text, place, violations, witness_code, created_at, updated_at,"
            " search_rowid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, status = excluded.status,"
            " taken_at = excluded.taken_at, taken_utc = excluded.taken_utc,"
            " incident_start = excluded.incident_start,"
            " incident_text = excluded.incident_text, place = excluded.place,"
            " violations = excluded.violations, witness_code = excluded.witness_code,"
            " updated_at = excluded.updated_at, search_rowid = excluded.search_rowid",
            (
                record_id,
                seq,
                t.status.value,
                t.taken_at.isoformat(timespec="minutes"),
                t.taken_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
                None if t.incident_date is None else t.incident_date.earliest().isoformat(),
                "" if t.incident_date is None else str(t.incident_date),
                place,
                " ".join(t.violations),
                t.witness_code,
                created,
                now,
                search_rowid,
            ),
        )

    def _index_body(self, t: Testimony) -> str:
        return testimony_index_text(t, self.vocabulary)

    # ------------------------------------------------------------ reading

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """Rows from our own STRICT tables, so column types are as declared."""
        with self._lock:
            conn = self._connection()
            try:
                return list(conn.execute(sql, args).fetchall())
            except DatabaseError as e:
                raise DatabaseDamaged from e

    def resolve_id(self, text: str) -> str:
        """The full id of the testimony ``text`` names (a whole id or a unique prefix)."""
        return resolve_prefix(text, self._query)

    @property
    def remove_confirmed(self) -> bool:
        """The setting: remove content once HQ confirms it (see store/purge.py)."""
        with self._lock:
            return purge.is_enabled(self._connection())

    @property
    def relay_proxy(self) -> str | None:
        """The SOCKS5 proxy every push goes through (Tor), if one is set."""
        rows = self._query("SELECT value FROM meta WHERE key = 'relay_proxy'")
        return str(rows[0][0]) if rows else None

    def set_relay_proxy(self, url: str | None) -> None:
        with self._lock, transaction(self._connection()) as c:
            if url is None:
                c.execute("DELETE FROM meta WHERE key = 'relay_proxy'")
            else:
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ('relay_proxy', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (url,),
                )

    def set_remove_confirmed(self, enabled: bool) -> None:
        with self._lock, transaction(self._connection()) as c:
            purge.set_enabled(c, enabled)

    def purge_confirmed(self, c: Connection, record_id: str, now: str) -> list[str]:
        """Inside the caller's transaction: empty a confirmed testimony (see purge.py)."""
        return purge.purge_content(c, record_id, now)

    def remove_attachment_files(self, stored_names: Iterable[str]) -> None:
        for name in stored_names:
            files.remove_file(self._unlocked.home.attachments, name)

    def is_purged(self, record_id: str) -> bool:
        """True once the testimony's content was removed after HQ confirmed it."""
        return bool(self._query("SELECT 1 FROM purged WHERE testimony_id = ?", (record_id,)))

    def _resolve_kept(self, record_id: str) -> str:
        rid = self.resolve_id(record_id)
        if self.is_purged(rid):
            raise RecordPurged
        return rid

    def get(self, record_id: str) -> StoredTestimony:
        rid = self._resolve_kept(record_id)
        rows = self._query(
            "SELECT t.seq, t.created_at, t.updated_at, r.payload, r.parent_hash, r.hash"
            " FROM testimonies t JOIN revisions r ON r.testimony_id = t.id AND r.seq = t.seq"
            " WHERE t.id = ?",
            (rid,),
        )
        if not rows:
            raise RecordNotFound
        seq, created, updated, payload, parent, digest = rows[0]
        self._check_stored(rid, seq, bytes(parent), bytes(payload), bytes(digest))
        testimony = self._decode(bytes(payload))
        return StoredTestimony(
            rid, seq, testimony, str(created), str(updated), self._identity_of(testimony)
        )

    def _check_stored(
        self, rid: str, seq: int, parent: bytes, payload: bytes, digest: bytes
    ) -> None:
        """Refuse a revision whose bytes no longer match its own hash.

        SQLCipher can hand back a page that failed its HMAC as zeros instead of
        an error; the revision hash catches that before anything is shown.
        Tampering by someone holding the key is the chain check's job.
        """
        try:
            intact = revision_hash(rid, seq, parent, payload) == digest
        except ValueError:
            intact = False
        if not intact and self.integrity_problems():
            raise DatabaseDamaged

    @staticmethod
    def _decode(payload: bytes) -> Testimony:
        try:
            return testimony_from_bytes(payload)
        except ValidationError as e:
            raise DatabaseDamaged from e

    def _identity_of(self, t: Testimony) -> ProtectedIdentity | None:
        return None if t.witness_code is None else self.identity(t.witness_code)

    def identity(self, witness_code: str) -> ProtectedIdentity | None:
        """The protected identity recorded for a witness code, if any."""
        rows = self._query(
            "SELECT identity FROM witness_identities WHERE witness_code = ?", (witness_code,)
        )
        if not rows:
            return None
        try:
            return identity_from_json(load_strict(bytes(rows[0][0])))
        except ValidationError as e:
            raise DatabaseDamaged from e

    def count(self, status: Status | None = None) -> int:
        if status is None:
            rows = self._query("SELECT count(*) FROM testimonies")
        else:
            rows = self._query("SELECT count(*) FROM testimonies WHERE status = ?", (status.value,))
        return int(rows[0][0])

    def page(
        self,
        *,
        status: Status | None = None,
        sort: Sort = Sort.UPDATED,
        limit: int = PAGE,
        offset: int = 0,
    ) -> list[Summary]:
        """Testimonies in ``sort`` order (newest first), one page at a time."""
        where, args = ("WHERE t.status = ?", [status.value]) if status else ("", [])
        rows = self._query(
            f"SELECT {_SUMMARY_COLUMNS} FROM testimonies t {where}"  # noqa: S608 -- fixed text
            f" ORDER BY {_ORDER_BY[Sort(sort)]} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_summary(r) for r in rows]

    def summaries(self, record_ids: Iterable[str]) -> list[Summary]:
        """Summaries of the given testimonies, oldest change first."""
        ids = sorted(set(record_ids))
        out: list[Summary] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out += [
                _summary(r)
                for r in self._query(
                    f"SELECT {_SUMMARY_COLUMNS} FROM testimonies t"  # noqa: S608 -- placeholders
                    f" WHERE t.id IN ({marks})",
                    chunk,
                )
            ]
        return sorted(out, key=lambda s: (s.updated_at, s.id))

    def search(self, query: str, *, limit: int = PAGE) -> list[Summary]:
        """Testimonies whose text matches every word of ``query`` (prefixes), best first."""
        expression = match_expression(query)
        if expression is None:
            return []
        # Rank only the SEARCH_WINDOW most recently saved matches: a common word can
        # match most of 100,000 testimonies, and ranking them all takes a second.
        sql = (
            f"SELECT {_SUMMARY_COLUMNS} FROM ("  # noqa: S608 -- fixed text
            " SELECT rowid, bm25(search) AS score FROM search WHERE search MATCH ?"
            " ORDER BY rowid DESC LIMIT ?) s"
            " JOIN testimonies t ON t.search_rowid = s.rowid ORDER BY s.score, t.id LIMIT ?"
        )
        with self._lock:
            conn = self._connection()
            with self._search_flag:
                self._searching = True
            try:
                rows = conn.execute(sql, (expression, SEARCH_WINDOW, limit)).fetchall()
            except DatabaseError as e:
                if _is_interrupt(e):
                    raise SearchCancelled from e
                raise DatabaseDamaged from e
            finally:
                with self._search_flag:
                    self._searching = False
        return [_summary(r) for r in rows]

    def cancel_search(self) -> None:
        """Stop a search in progress (the user typed on); callable from any thread.

        Only a search is ever interrupted: the flag is set and cleared, under its
        own lock, while the search holds the store lock, so no save can be running
        when the interrupt is delivered. A search that already finished is not
        affected (SQLite ignores an interrupt when no statement is running).
        """
        with self._search_flag:
            if self._searching:
                self._conn.interrupt()

    def revisions(self, record_id: str) -> list[Revision]:
        rid = self._resolve_kept(record_id)
        rows = self._query(
            "SELECT seq, parent_hash, hash, device_key, signature, payload FROM revisions"
            " WHERE testimony_id = ? ORDER BY seq",
            (rid,),
        )
        out = []
        for seq, parent, digest, device, signature, payload in rows:
            self._check_stored(rid, seq, bytes(parent), bytes(payload), bytes(digest))
            try:
                key = DeviceVerifyKey(bytes(device))
            except ValueError as e:
                raise DatabaseDamaged from e
            out.append(
                Revision(
                    record_id=rid,
                    seq=seq,
                    parent_hash=bytes(parent),
                    hash=bytes(digest),
                    device=key,
                    signature=bytes(signature),
                    payload=bytes(payload),
                )
            )
        return out

    def history(self, record_id: str) -> list[HistoryEntry]:
        """Every revision of a testimony, oldest first, after verifying the chain."""
        revisions = self.revisions(record_id)
        verify_chain(revisions, revisions[0].record_id if revisions else record_id)
        times = dict(
            self._query(
                "SELECT seq, created_at FROM revisions WHERE testimony_id = ?",
                (revisions[0].record_id,),
            )
        )
        return [
            HistoryEntry(
                seq=r.seq,
                created_at=str(times[r.seq]),
                hash=r.hash.hex(),
                device_key=r.device.raw.hex(),
                testimony=self._decode(r.payload),
            )
            for r in revisions
        ]

    def integrity_problems(self) -> list[str]:
        """Every page's HMAC and SQLite's structural check; empty when the file is sound."""
        with self._lock:
            return integrity_problems(self._connection())

    def verify_all(self) -> int:
        """Verify every testimony's revision chain; returns how many. Raises RevisionError."""
        ids = [
            str(r[0])
            for r in self._query(
                "SELECT id FROM testimonies WHERE id NOT IN (SELECT testimony_id FROM purged)"
                " ORDER BY id"
            )
        ]
        for rid in ids:
            verify_chain(self.revisions(rid), rid)
        return len(ids)

    # ------------------------------------------------------------ attachments

    def read_attachment(self, attachment_id: str, dst: BinaryIO) -> Encrypted:
        """Decrypt an attachment into ``dst`` and check its SHA-256 against the record."""
        rows = self._query(
            "SELECT stored_name, file_key, stream_header, sha256 FROM attachments WHERE id = ?",
            (attachment_id,),
        )
        if not rows:
            raise RecordNotFound
        name, key, header, sha256 = rows[0]
        done = files.read_file(
            self._unlocked.home.attachments,
            str(name),
            FileKey(bytes(key), bytes(header)),
            dst,
        )
        if done.sha256.hex() != sha256:
            raise DatabaseDamaged
        return done

    # ------------------------------------------------------------ outbox

    @functools.cached_property
    def sync_book(self) -> SyncBook:
        """Enrolment with HQ and the bundles built from the outbox."""
        return SyncBook(self)

    def outbox(self) -> list[tuple[str, int]]:
        """(testimony id, newest unsent revision) for everything changed since the last sync."""
        return [
            (str(rid), seq)
            for rid, seq in self._query("SELECT testimony_id, seq FROM outbox ORDER BY rowid")
        ]

    def mark_sent(self, record_id: str, seq: int) -> None:
        """Record that revisions up to ``seq`` left the device; later ones stay queued."""
        with self._lock, transaction(self._connection()) as c:
            c.execute("DELETE FROM outbox WHERE testimony_id = ? AND seq <= ?", (record_id, seq))
            c.execute(
                "INSERT INTO sync_state (testimony_id, sent_seq) VALUES (?, ?)"
                " ON CONFLICT (testimony_id) DO UPDATE"
                " SET sent_seq = max(sent_seq, excluded.sent_seq)",
                (record_id, seq),
            )
