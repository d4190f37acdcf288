"""Encrypted attachment files beside the database.

Each file is encrypted under its own random key (kept in the database, so a
rekey of the database covers it) into a file with a random name: neither the
original name nor its type shows on disk. Streaming keeps memory bounded for a
two-hour video as for a photo.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from crypto.attachment import Encrypted, FileEncryptor, FileKey, decrypt_file, encrypt_file
from fieldapp.store.errors import AttachmentUnreadable, StoreIOError

_NAME_BYTES = 16


@dataclass(frozen=True, slots=True)
class StoredFile:
    stored_name: str
    filename: str
    media_type: str
    size: int
    sha256: str
    key: FileKey


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_source(source: Path) -> BinaryIO:
    try:
        handle = source.open("rb")
    except OSError as e:
        raise AttachmentUnreadable from e
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise AttachmentUnreadable
    return handle


def store_file(folder: Path, source: Path) -> StoredFile:
    """Encrypt ``source`` into ``folder`` under a fresh key and a random name.

    The file appears under its final name only once complete and fsynced.
    Raises AttachmentUnreadable, StoreIOError.
    """
    if not folder.is_dir():
        raise StoreIOError  # never recreate it: after a panic it must stay gone
    key = FileKey.generate()
    name = secrets.token_hex(_NAME_BYTES)
    temp = folder / f".{name}.tmp"
    with _open_source(source) as src:
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as dst:
                done = encrypt_file(src, dst, key)
                dst.flush()
                os.fsync(dst.fileno())
            temp.replace(folder / name)
            _fsync_dir(folder)
        except OSError as e:
            with contextlib.suppress(OSError):
                temp.unlink()
            # A read error of the source mid-way and a write error of ours (disk
            # full) end alike: nothing was kept.
            raise StoreIOError from e
    media_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    return StoredFile(name, source.name, media_type, done.size, done.sha256.hex(), key)


def read_file(folder: Path, stored_name: str, key: FileKey, dst: BinaryIO) -> Encrypted:
    """Decrypt a stored attachment into ``dst``. Raises AttachmentDamaged, StoreIOError."""
    if not _is_stored_name(stored_name):
        raise StoreIOError
    try:
        fd = os.open(folder / stored_name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise StoreIOError from e
    with os.fdopen(fd, "rb") as src:
        return decrypt_file(src, dst, key)


def remove_file(folder: Path, stored_name: str) -> None:
    """Remove a stored attachment (after a failed save). Missing is fine."""
    if _is_stored_name(stored_name):
        with contextlib.suppress(FileNotFoundError):
            (folder / stored_name).unlink()


def _is_stored_name(name: str) -> bool:
    return len(name) == 2 * _NAME_BYTES and all(c in "0123456789abcdef" for c in name)


def remove_orphans(folder: Path, referenced: set[str], *, older_than: float) -> int:
    """Delete encrypted files and temp files no record refers to; returns how many.

    A crash between writing a file and committing its record leaves one behind:
    undecryptable (its key died with the process) but a trace on disk. Only
    files older than ``older_than`` (a timestamp) go, so a save in progress in
    another process is never touched.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        name = entry.name
        ours = _is_stored_name(name) or (
            name.startswith(".") and name.endswith(".tmp") and _is_stored_name(name[1:-4])
        )
        if not ours or name in referenced:
            continue
        with contextlib.suppress(OSError):
            if entry.lstat().st_mtime < older_than:
                entry.unlink()
                removed += 1
    return removed


class IncomingFile:
    """An attachment arriving in pieces (from a bundle), encrypted as it is written.

    Lands under a random name once ``finish()`` has fsynced it; ``abort()``
    removes it whatever state it is in. Raises StoreIOError.
    """

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise StoreIOError
        self.key = FileKey.generate()
        self.stored_name = secrets.token_hex(_NAME_BYTES)
        self._folder = folder
        self._temp = folder / f".{self.stored_name}.tmp"
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise StoreIOError from e
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._encryptor = FileEncryptor(self._file, self.key)
        self.result: Encrypted | None = None

    def write(self, data: bytes, /) -> int:
        try:
            self._encryptor.write(data)
        except OSError as e:
            raise StoreIOError from e
        return len(data)

    def finish(self) -> None:
        handle = self._file
        if handle is None:
            raise StoreIOError
        try:
            self.result = self._encryptor.finish()
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            self._file = None
            self._temp.replace(self._folder / self.stored_name)
            _fsync_dir(self._folder)
        except OSError as e:
            raise StoreIOError from e

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        for path in (self._temp, self._folder / self.stored_name):
            with contextlib.suppress(OSError):
                path.unlink()
