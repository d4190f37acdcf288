"""Appending a PATCH body to a pending upload: write, fsync, then answer.

A ``PatchWriter`` holds the upload exclusively (the store refuses a second
PATCH meanwhile) and keeps the running SHA-256 of what the file holds, so a
completed upload need not be read again when one process received it all.

``committed`` is the offset fsynced so far: the only one ever answered. A
writer closed with bytes written but not committed (an error mid-way) cuts
them off again, so the data file's size is always a committed offset once no
writer holds it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, Self

from sync.relay.fsio import write_all

if TYPE_CHECKING:
    from sync.relay.storage import UploadState

_BLOCK: Final = 1 << 20


class Sha256(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Self: ...


class UploadOwner(Protocol):
    """What a writer needs from the store that handed it out."""

    def make_durable(self, writer: PatchWriter) -> None:
        """Make the upload's folder durable (its creation was not): before a partial answer."""

    def release(self, writer: PatchWriter) -> None:
        """The writer is closed: the upload may take another PATCH."""


def hash_file(path: Path) -> str:
    """The lowercase hex SHA-256 of the file at ``path``, read in bounded memory."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


class PatchWriter:
    """Appends to ``path`` from ``state.offset``; ``commit`` makes the bytes durable."""

    def __init__(
        self,
        owner: UploadOwner,
        blob_id: str,
        path: Path,
        state: UploadState,
        hasher: Sha256 | None,
        *,
        durable: bool,
    ) -> None:
        self.blob_id = blob_id
        self.path = path
        self.length = state.length
        self.offset = state.offset
        self.committed = state.offset  # fsynced (and the folder durable, if it is partial)
        self.hasher = hasher
        self.durable = durable  # False: the upload's folder may not survive a power cut yet
        self.finished = False
        self._owner = owner
        self._saved = hasher.copy() if hasher is not None else None
        self._fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.lseek(self._fd, self.committed, os.SEEK_SET)

    @property
    def room(self) -> int:
        """How many more bytes the upload takes."""
        return self.length - self.offset

    @property
    def pending(self) -> int:
        """Bytes written since the last commit."""
        return self.offset - self.committed

    def write(self, data: bytes) -> None:
        """Append ``data``; the caller has checked ``room``. Raises OSError."""
        write_all(self._fd, data)
        self.offset += len(data)
        if self.hasher is not None:
            self.hasher.update(data)

    def commit(self) -> int:
        """fsync what was written; returns the new offset. Raises OSError.

        A partial offset (above 0, below the length) is about to be answered, so
        the upload's folder must survive a power cut too: the first such commit
        makes it durable. A complete upload is not: its data moves to ``blobs/``.
        """
        if self.pending:
            os.fsync(self._fd)
        if not self.durable and 0 < self.offset < self.length:
            self._owner.make_durable(self)
            self.durable = True
        self.committed = self.offset
        self._saved = self.hasher.copy() if self.hasher is not None else None
        return self.offset

    def rollback(self) -> None:
        """Forget everything written since the last commit. Raises OSError."""
        os.ftruncate(self._fd, self.committed)
        os.fsync(self._fd)
        self.offset = self.committed
        self.hasher = self._saved.copy() if self._saved is not None else None

    def close(self) -> None:
        """Cut off anything not committed, then release the upload. Raises OSError."""
        try:
            if self.pending and not self.finished:
                self.rollback()
        finally:
            os.close(self._fd)
            self._owner.release(self)
