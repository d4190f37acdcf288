"""Blobs and resumable uploads in a folder (the relay's default storage).

Layout under the data folder::

    blobs/<id>                 complete blobs, named by the SHA-256 of their bytes
    uploads/<id>/upload.json   a pending upload: {"version": 1, "length": N, "sha256": id}
    uploads/<id>/data          the bytes received so far: the offset is its size

An upload is created as a dot-named folder and renamed into place, so it exists
whole or not at all. It completes by renaming ``data`` to ``blobs/<id>`` and
then removing its folder; the startup check (``recovery.py``) finishes or
removes whatever a crash left in between. Blocking: call from a worker thread.
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
    read_small,
    remove_tree,
    scratch_name,
)
from sync.relay.ids import is_blob_id
from sync.relay.settings import RelaySettings
from sync.relay.uploads import PatchWriter, Sha256, hash_file

META: Final = "upload.json"
DATA: Final = "data"
META_VERSION: Final = 1


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
    """Complete blobs and pending uploads. Thread-safe; every method blocks."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.blobs = settings.data_dir / "blobs"
        self.uploads = settings.data_dir / "uploads"
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # uploads a PATCH is writing to
        # Running hashes of uploads written by this process: offset -> state.
        self._hashes: dict[str, tuple[int, Sha256]] = {}

    # ------------------------------------------------------------ uploads

    def pending_ids(self) -> list[str]:
        return sorted(p.name for p in self.uploads.iterdir() if is_blob_id(p.name))

    def create_upload(self, blob_id: str, length: int) -> UploadState:
        """Create the upload of ``blob_id`` (idempotent). Raises Conflict, TooLarge, RelayFull."""
        if length > self.settings.max_blob_bytes:
            raise TooLarge("Upload-Length is above this relay's largest blob.")
        with self._lock:
            existing = self._state(blob_id)
            if existing is not None:
                if existing.length != length:
                    raise Conflict("An upload with that id and another length exists.")
                return existing
            if len(self.pending_ids()) >= self.settings.max_pending_uploads:
                raise RelayFull("The relay holds too many unfinished uploads; try again later.")
            if shutil.disk_usage(self.uploads).free < length + self.settings.min_free_bytes:
                raise RelayFull("The relay's disk is too full for this upload; try again later.")
            self._create(blob_id, length)
            return UploadState(0, length, complete=False)

    def _create(self, blob_id: str, length: int) -> None:
        temp = self.uploads / scratch_name("new")
        try:
            temp.mkdir(mode=0o700)
            meta = {"version": META_VERSION, "length": length, "sha256": blob_id}
            create_file(temp / META, json.dumps(meta).encode())
            create_file(temp / DATA, b"")
            fsync_dir(temp)
            temp.rename(self.uploads / blob_id)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.uploads)

    def state(self, blob_id: str) -> UploadState | None:
        """The upload's offset and length (a complete blob: both its size); None if unknown."""
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
        """A writer appending at ``offset``; close() it. Raises NotFound, Conflict."""
        with self._lock:
            state = self._state(blob_id)
            if state is None:
                raise NotFound("No upload has that id; create it with POST /v1/uploads.")
            if blob_id in self._busy:
                raise Conflict("Another PATCH to this upload is running; HEAD and try again.")
            if state.complete or offset != state.offset:
                raise Conflict("Upload-Offset is not the stored offset; HEAD to learn it.")
            remembered = self._hashes.pop(blob_id, None)
            hasher = remembered[1] if remembered and remembered[0] == offset else None
            if hasher is None and offset == 0:
                hasher = hashlib.sha256()
            writer = PatchWriter(
                self.release, blob_id, self.uploads / blob_id / DATA, state, hasher
            )
            self._busy.add(blob_id)
            return writer

    def release(self, writer: PatchWriter) -> None:
        """Called by ``writer.close()``: the upload may take another PATCH."""
        with self._lock:
            self._busy.discard(writer.blob_id)
            if writer.hasher is not None and not writer.finished:
                self._hashes[writer.blob_id] = (writer.offset, writer.hasher)

    def finish(self, writer: PatchWriter) -> bool:
        """Complete a fully written upload: True if its hash matched, else it is discarded."""
        digest = writer.hasher.hexdigest() if writer.hasher else hash_file(writer.path)
        with self._lock:
            writer.finished = True
            self._hashes.pop(writer.blob_id, None)
            if digest != writer.blob_id:
                remove_tree(self.uploads / writer.blob_id)
                return False
            self.complete_upload(writer.blob_id)
            return True

    def complete_upload(self, blob_id: str) -> None:
        """Move a verified upload's bytes into ``blobs/`` and remove its folder."""
        folder = self.uploads / blob_id
        now = datetime.now(UTC).timestamp()
        os.utime(folder / DATA, (now, now))  # stored_at and the retention clock start here
        (folder / DATA).replace(self.blobs / blob_id)
        fsync_dir(self.blobs)
        remove_tree(folder)

    def discard_upload(self, blob_id: str) -> bool:
        """Remove a pending upload unless a PATCH is writing to it; True if removed."""
        with self._lock:
            if blob_id in self._busy:
                return False
            self._hashes.pop(blob_id, None)
            with contextlib.suppress(FileNotFoundError):
                remove_tree(self.uploads / blob_id)
                return True
            return False

    # ------------------------------------------------------------ blobs

    def list_blobs(self, after: str, limit: int) -> tuple[list[BlobInfo], bool]:
        """Up to ``limit`` blobs with ids above ``after``, by id, and whether more exist."""
        names = sorted(self._blob_names())
        found: list[BlobInfo] = []
        index = bisect.bisect_right(names, after)
        while index < len(names) and len(found) < limit:
            name = names[index]
            index += 1
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                info = (self.blobs / name).stat(follow_symlinks=False)
                found.append(BlobInfo(name, info.st_size, iso_utc(info.st_mtime)))
        return found, index < len(names)

    def open_blob(self, blob_id: str) -> tuple[BinaryIO, int]:
        """The blob's bytes, open for reading, and its size. Raises NotFound."""
        try:
            fd = os.open(self.blobs / blob_id, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise NotFound from e
        f = os.fdopen(fd, "rb")
        return f, os.fstat(fd).st_size

    def delete_blob(self, blob_id: str) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            (self.blobs / blob_id).unlink()
            fsync_dir(self.blobs)

    # ------------------------------------------------------------ retention

    def sweep(self, now: float) -> tuple[int, int]:
        """Remove blobs older than ``blob_max_age`` and uploads untouched for ``upload_expiry``.

        Returns (blobs removed, uploads removed).
        """
        blob_cutoff = now - self.settings.blob_max_age.total_seconds()
        upload_cutoff = now - self.settings.upload_expiry.total_seconds()
        blobs = sum(self._expire_blob(name, blob_cutoff) for name in self._blob_names())
        uploads = 0
        for name in self.pending_ids():
            with contextlib.suppress(FileNotFoundError):
                if (self.uploads / name / DATA).stat().st_mtime < upload_cutoff:
                    uploads += self.discard_upload(name)
        return blobs, uploads

    def _blob_names(self) -> Iterator[str]:
        return (p.name for p in self.blobs.iterdir() if is_blob_id(p.name))

    def _expire_blob(self, name: str, cutoff: float) -> bool:
        with self._lock:
            try:
                if (self.blobs / name).stat(follow_symlinks=False).st_mtime >= cutoff:
                    return False
                (self.blobs / name).unlink()
            except FileNotFoundError:
                return False
            fsync_dir(self.blobs)
            return True
