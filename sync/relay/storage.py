"""Blobs and resumable uploads in a folder (the relay's default storage).

Layout under the data folder::

    blobs/<id>                 complete blobs, named by the SHA-256 of their bytes
    uploads/<id>/upload.json   a pending upload: {"version": 1, "length": N, "sha256": id}
    uploads/<id>/data          the bytes received so far: the offset is its size

An upload is built as a dot-named folder and renamed into place, so it exists
whole or not at all. It completes by renaming ``data`` to ``blobs/<id>`` and
then removing its folder; the startup check (``recovery.py``) finishes or
removes whatever a crash left in between. Blocking: call from a worker thread.

Durability: an answer never names an offset or a complete blob that a power
cut could take back. A PATCH fsyncs its bytes before answering; the first one
that leaves an upload partial also makes the upload's folder durable
(``make_durable``); a completed blob is hidden (``_settling``) until
``blobs/`` has been fsynced. Creating an upload makes nothing durable (see
``_build``), and neither does removing a folder: a crash that undoes either is
harmless, and the startup check tidies what it leaves.

Concurrency: ``_lock`` is held only to decide (existence checks, the pending
count, the busy uploads), to rename, and to update the in-memory index of
complete blobs; every fsync, every folder build and every removal of a folder's
contents happens outside it.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

from sync.relay.errors import Conflict, NotFound, RelayFull, TooLarge
from sync.relay.fsio import (
    create_file,
    fsync_dir,
    fsync_file,
    move_to_trash,
    read_small,
    scratch_name,
)
from sync.relay.ids import is_blob_id
from sync.relay.settings import RelaySettings
from sync.relay.uploads import PatchWriter, Sha256, hash_file

META: Final = "upload.json"
DATA: Final = "data"
META_VERSION: Final = 1
BUSY_MESSAGE: Final = "Another PATCH to this upload is running; HEAD and try again."


@dataclass(frozen=True, slots=True)
class UploadState:
    """Where an upload stands: ``offset == length`` once complete."""

    offset: int
    length: int
    complete: bool


@dataclass(frozen=True, slots=True)
class BlobInfo:
    id: str
    size: int
    stored_at: str  # UTC, ISO 8601, seconds


class UploadBusy(Conflict):
    """A PATCH is writing to the upload: ``holder`` is its writer."""

    def __init__(self, holder: PatchWriter) -> None:
        super().__init__(BUSY_MESSAGE)
        self.holder = holder


def read_meta(folder: Path) -> int:
    """The declared length in ``folder/upload.json``. Raises OSError or ValueError."""
    document = json.loads(read_small(folder / META, 4096))
    length = document.get("length") if isinstance(document, dict) else None
    if (
        document.get("version") != META_VERSION
        or document.get("sha256") != folder.name
        or isinstance(length, bool)
        or not isinstance(length, int)
        or length < 1
    ):
        raise ValueError("not an upload description")
    return length


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BlobStore:
    """Complete blobs and pending uploads. Thread-safe; every method blocks.

    Call ``load()`` once the startup check has run (the first call that needs the
    in-memory index loads it otherwise).
    """

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.blobs = settings.data_dir / "blobs"
        self.uploads = settings.data_dir / "uploads"
        self._lock = threading.Lock()
        self._busy: dict[str, PatchWriter] = {}  # uploads a PATCH is writing to
        # Running hashes of uploads written by this process: offset -> state.
        self._hashes: dict[str, tuple[int, Sha256]] = {}
        # Complete blob ids, sorted, and pending upload ids: what is on disk (None: not read yet).
        self._index: list[str] | None = None
        self._pending: set[str] | None = None
        # Uploads created by this process whose folder is not durable yet.
        self._fresh: set[str] = set()
        # Blobs renamed into blobs/ whose entry is not fsynced yet: set once it is.
        self._settling: dict[str, threading.Event] = {}

    def load(self) -> None:
        """Read which blobs are complete and which uploads pending (after the startup check)."""
        with self._lock:
            self._index = self._pending = None
            self._loaded()

    def _loaded(self) -> tuple[list[str], set[str]]:
        """The index of complete blobs and the pending uploads. Call with the lock held."""
        if self._index is None or self._pending is None:
            self._index = sorted(self._blob_names())
            self._pending = {p.name for p in self.uploads.iterdir() if is_blob_id(p.name)}
        return self._index, self._pending

    @contextlib.contextmanager
    def _settled(self, blob_id: str) -> Iterator[None]:
        """Hold the lock, once ``blob_id`` is not a blob on its way to being durable."""
        while True:
            with self._lock:
                settling = self._settling.get(blob_id)
                if settling is None:
                    yield
                    return
            settling.wait()

    # ------------------------------------------------------------ uploads

    def pending_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded()[1])

    def create_upload(self, blob_id: str, length: int) -> UploadState:
        """Create the upload of ``blob_id`` (idempotent). Raises Conflict, TooLarge, RelayFull."""
        if length > self.settings.max_blob_bytes:
            raise TooLarge("Upload-Length is above this relay's largest blob.")
        with self._settled(blob_id):
            existing = self._current(blob_id)
            if existing is None:
                self._check_room()
        if existing is None:
            if shutil.disk_usage(self.uploads).free < length + self.settings.min_free_bytes:
                raise RelayFull("The relay's disk is too full for this upload; try again later.")
            existing = self._create(blob_id, length)
        if existing.length != length:
            raise Conflict("An upload with that id and another length exists.")
        return existing

    def _create(self, blob_id: str, length: int) -> UploadState:
        """Build the upload outside the lock, then rename it into place unless one exists."""
        temp = self._build(blob_id, length)
        placed = False
        try:
            with self._settled(blob_id):
                existing = self._current(blob_id)  # another POST may have been quicker
                if existing is not None:
                    return existing
                self._check_room()
                temp.rename(self.uploads / blob_id)
                placed = True
                self._loaded()[1].add(blob_id)
                self._fresh.add(blob_id)
                return UploadState(0, length, complete=False)
        finally:
            if not placed:
                shutil.rmtree(temp, ignore_errors=True)

    def _check_room(self) -> None:
        if len(self._loaded()[1]) >= self.settings.max_pending_uploads:
            raise RelayFull("The relay holds too many unfinished uploads; try again later.")

    def _build(self, blob_id: str, length: int) -> Path:
        """A new upload's folder under a private dot-name, to be renamed into place.

        Nothing here is fsynced, nor is the rename: creating an upload is not made
        durable. A crash can lose an upload only while nothing but its creation was
        answered (offset 0); the client always POSTs (idempotent) before it sends a
        byte and POSTs again when HEAD or PATCH answer 404, so the loss costs it one
        request and no data. What a crash leaves half-made (this dot-named folder,
        or a folder whose upload.json is empty or whose data is missing) the
        startup check removes. Acknowledged bytes need the folder, so the first
        commit of a partial upload makes it durable (``make_durable``); a PATCH
        that completes the upload at once needs only its data and ``blobs/``
        fsynced, as the folder is thrown away. That saves four fsyncs per upload.
        """
        temp = self.uploads / scratch_name("new")
        try:
            temp.mkdir(mode=0o700)
            meta = {"version": META_VERSION, "length": length, "sha256": blob_id}
            create_file(temp / META, json.dumps(meta).encode(), sync=False)
            create_file(temp / DATA, b"", sync=False)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return temp

    def make_durable(self, writer: PatchWriter) -> None:
        """Make the upload's folder survive a power cut: its description, entries and name.

        Called by the writer (which holds the upload) before its first partial
        answer; the data file itself is fsynced by the writer. Raises OSError.
        """
        folder = self.uploads / writer.blob_id
        fsync_file(folder / META)
        fsync_dir(folder)
        fsync_dir(self.uploads)
        with self._lock:
            self._fresh.discard(writer.blob_id)

    def state(self, blob_id: str) -> UploadState | None:
        """The upload's offset and length (a complete blob: both its size); None if unknown.

        The offset of an upload a PATCH is writing is what that PATCH has fsynced.
        """
        with self._settled(blob_id):
            return self._current(blob_id)

    def _current(self, blob_id: str) -> UploadState | None:
        """``_state``, but a busy upload's offset is its writer's committed one. Lock held."""
        holder = self._busy.get(blob_id)
        if holder is not None and not holder.finished:
            return UploadState(holder.committed, holder.length, complete=False)
        return self._state(blob_id)

    def _state(self, blob_id: str) -> UploadState | None:
        with contextlib.suppress(FileNotFoundError):
            size = (self.blobs / blob_id).stat(follow_symlinks=False).st_size
            return UploadState(size, size, complete=True)
        folder = self.uploads / blob_id
        try:
            length = read_meta(folder)
            offset = (folder / DATA).stat(follow_symlinks=False).st_size
        except (OSError, ValueError):
            return None
        return UploadState(offset, length, complete=False)

    def begin_patch(self, blob_id: str, offset: int) -> PatchWriter:
        """A writer appending at ``offset``; close() it. Raises NotFound, UploadBusy, Conflict."""
        with self._settled(blob_id):
            state = self._state(blob_id)
            if state is None:
                raise NotFound("No upload has that id; create it with POST /v1/uploads.")
            holder = self._busy.get(blob_id)
            if holder is not None:
                raise UploadBusy(holder)
            if state.complete or offset != state.offset:
                raise Conflict("Upload-Offset is not the stored offset; HEAD to learn it.")
            remembered = self._hashes.pop(blob_id, None)
            hasher = remembered[1] if remembered and remembered[0] == offset else None
            if hasher is None and offset == 0:
                hasher = hashlib.sha256()
            writer = PatchWriter(
                self,
                blob_id,
                self.uploads / blob_id / DATA,
                state,
                hasher,
                durable=blob_id not in self._fresh,
            )
            self._busy[blob_id] = writer
            return writer

    def release(self, writer: PatchWriter) -> None:
        """Called by ``writer.close()``: the upload may take another PATCH."""
        with self._lock:
            if self._busy.get(writer.blob_id) is writer:
                del self._busy[writer.blob_id]
            if writer.hasher is not None and not writer.finished:
                self._hashes[writer.blob_id] = (writer.offset, writer.hasher)

    def finish(self, writer: PatchWriter) -> bool:
        """Complete a fully written upload: True if its hash matched, else it is discarded.

        The blob is durable when this returns True; until then other requests
        for it wait (``_settling``) rather than see it complete.
        """
        blob_id = writer.blob_id
        digest = writer.hasher.hexdigest() if writer.hasher else hash_file(writer.path)
        if digest != blob_id:
            with self._lock:
                writer.finished = True
                self._hashes.pop(blob_id, None)
                discarded = self._unlist_upload(blob_id)
            shutil.rmtree(discarded, ignore_errors=True)
            return False
        now = datetime.now(UTC).timestamp()
        os.utime(writer.path, (now, now))  # stored_at and the retention clock start here
        settled = threading.Event()
        with self._lock:
            writer.finished = True
            self._hashes.pop(blob_id, None)
            writer.path.replace(self.blobs / blob_id)  # the blob is complete from here on
            self._settling[blob_id] = settled
            trash: Path | None = None
            with contextlib.suppress(OSError):  # left over, the startup check removes it
                trash = self._unlist_upload(blob_id)
            self._forget_upload(blob_id)  # not pending any more, whatever became of the folder
        try:
            fsync_dir(self.blobs)
        finally:
            try:
                with self._lock:
                    del self._settling[blob_id]
                    index = self._loaded()[0]
                    position = bisect.bisect_left(index, blob_id)
                    if position == len(index) or index[position] != blob_id:
                        index.insert(position, blob_id)
            finally:
                settled.set()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return True

    def _unlist_upload(self, blob_id: str) -> Path:
        """Rename the upload's folder away and forget it (lock held); returns the trash.

        Not fsynced: if a crash undoes it, the upload is back as it was (a stale
        one is swept again; a discarded one fails its hash again) or its bytes
        are a blob already, and the startup check removes the folder.
        Raises OSError (FileNotFoundError: the folder was gone; it is forgotten).
        """
        try:
            trash = move_to_trash(self.uploads / blob_id)
        except FileNotFoundError:
            self._forget_upload(blob_id)
            raise
        self._forget_upload(blob_id)
        return trash

    def _forget_upload(self, blob_id: str) -> None:
        self._loaded()[1].discard(blob_id)
        self._fresh.discard(blob_id)

    def discard_upload(self, blob_id: str) -> bool:
        """Remove a pending upload unless a PATCH is writing to it; True if removed."""
        with self._lock:
            if blob_id in self._busy:
                return False
            self._hashes.pop(blob_id, None)
            try:
                trash = self._unlist_upload(blob_id)
            except FileNotFoundError:
                return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # ------------------------------------------------------------ blobs

    def list_blobs(self, after: str, limit: int) -> tuple[list[BlobInfo], bool]:
        """Up to ``limit`` blobs with ids above ``after``, by id, and whether more exist.

        Pages through the in-memory index: O(log n + limit), whatever n.
        """
        found: list[BlobInfo] = []
        more = False
        while len(found) < limit:
            with self._lock:
                index = self._loaded()[0]
                start = bisect.bisect_right(index, after)
                names = index[start : start + limit - len(found)]
                more = start + len(names) < len(index)
            if not names:
                break
            for name in names:
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    info = (self.blobs / name).stat(follow_symlinks=False)
                    found.append(BlobInfo(name, info.st_size, iso_utc(info.st_mtime)))
            after = names[-1]
        return found, more

    def open_blob(self, blob_id: str) -> tuple[BinaryIO, int]:
        """The blob's bytes, open for reading, and its size. Raises NotFound."""
        try:
            fd = os.open(self.blobs / blob_id, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise NotFound from e
        f = os.fdopen(fd, "rb")
        return f, os.fstat(fd).st_size

    def delete_blob(self, blob_id: str) -> None:
        with self._settled(blob_id):
            removed = self._remove_blob(blob_id, None)
        if removed:
            fsync_dir(self.blobs)

    def _remove_blob(self, blob_id: str, older_than: float | None) -> bool:
        """Unlink a blob (if its mtime is below ``older_than``) and unindex it. Lock held."""
        path = self.blobs / blob_id
        try:
            if older_than is not None and path.stat(follow_symlinks=False).st_mtime >= older_than:
                return False
            path.unlink()
        except FileNotFoundError:
            self._unindex(blob_id)
            return False
        self._unindex(blob_id)
        return True

    def _unindex(self, blob_id: str) -> None:
        index = self._loaded()[0]
        position = bisect.bisect_left(index, blob_id)
        if position < len(index) and index[position] == blob_id:
            del index[position]

    # ------------------------------------------------------------ retention

    def sweep(self, now: float) -> tuple[int, int]:
        """Remove blobs older than ``blob_max_age`` and uploads untouched for ``upload_expiry``.

        Returns (blobs removed, uploads removed).
        """
        blob_cutoff = now - self.settings.blob_max_age.total_seconds()
        upload_cutoff = now - self.settings.upload_expiry.total_seconds()
        blobs = 0
        for name in self._blob_names():
            with self._settled(name):
                blobs += self._remove_blob(name, blob_cutoff)
        if blobs:
            fsync_dir(self.blobs)
        uploads = 0
        for name in self.pending_ids():
            with contextlib.suppress(FileNotFoundError):
                if (self.uploads / name / DATA).stat().st_mtime < upload_cutoff:
                    uploads += self.discard_upload(name)
        return blobs, uploads

    def _blob_names(self) -> Iterator[str]:
        return (p.name for p in self.blobs.iterdir() if is_blob_id(p.name))
