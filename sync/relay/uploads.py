"""Appending a PATCH body to a pending upload: write, fsync, then answer.

A ``PatchWriter`` holds the upload exclusively (the store refuses a second
PATCH meanwhile) and keeps the running SHA-256 of what the file holds, so a
completed upload need not be read again when one process received it all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
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
        on_close: Callable[[PatchWriter], None],
        blob_id: str,
        path: Path,
        state: UploadState,
        hasher: Sha256 | None,
    ) -> None:
        self.blob_id = blob_id
        self.path = path
        self.length = state.length
        self.offset = state.offset
        self.hasher = hasher
        self.finished = False
        self._on_close = on_close
        self._start = state.offset
        self._saved = hasher.copy() if hasher is not None else None
        self._fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.lseek(self._fd, self._start, os.SEEK_SET)

    @property
    def room(self) -> int:
        """How many more bytes the upload takes."""
        return self.length - self.offset

    @property
    def pending(self) -> int:
        """Bytes written since the last commit."""
        return self.offset - self._start

    def write(self, data: bytes) -> None:
        """Append ``data``; the caller has checked ``room``. Raises OSError."""
        write_all(self._fd, data)
        self.offset += len(data)
        if self.hasher is not None:
            self.hasher.update(data)

    def commit(self) -> int:
        """fsync what was written; returns the new offset. Raises OSError."""
        os.fsync(self._fd)
        self._start = self.offset
        self._saved = self.hasher.copy() if self.hasher is not None else None
        return self.offset

    def rollback(self) -> None:
        """Forget everything written since the last commit. Raises OSError."""
        os.ftruncate(self._fd, self._start)
        os.fsync(self._fd)
        self.offset = self._start
        self.hasher = self._saved.copy() if self._saved is not None else None

    def close(self) -> None:
        os.close(self._fd)
        self._on_close(self)
