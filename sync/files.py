"""Writing into folders we do not control (a USB stick, an export folder) safely.

Every file appears under its final name only once complete and fsynced
(temp file, fsync, rename, fsync of the folder); nothing is overwritten; no
symlink is followed, neither the folder itself nor a name inside it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from fieldapp.errors import ExitCode, FieldappError

_BLOCK = 1 << 20


class UnsafeFolder(FieldappError):
    exit_code = ExitCode.IO


def checked_folder(folder: Path, *, write: bool = True) -> Path:
    """``folder`` if it is a real directory (not a symlink) we may list, and with
    ``write`` also write into. Raises UnsafeFolder.

    Reading alone (receipts from a write-protected stick) needs no write access.
    """
    try:
        info = folder.lstat()
    except FileNotFoundError as e:
        raise UnsafeFolder("The folder does not exist; create it or check the path.") from e
    except OSError as e:
        raise UnsafeFolder("The folder cannot be read; check the path and permissions.") from e
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFolder("The folder is a symlink; name the real folder.")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder("That path is not a folder.")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UnsafeFolder("The folder cannot be read; check the path and permissions.")
    if write and not os.access(folder, os.W_OK):
        raise UnsafeFolder("The folder is not writable; check the USB stick or permissions.")
    return folder


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(folder: Path, name: str, chunks: Iterable[bytes]) -> int:
    """Write a new file ``folder/name`` from ``chunks``; returns its size.

    Raises FileExistsError if the name is taken, OSError on a write failure
    (the temp file is removed).
    """
    if "/" in name or name.startswith(".") or name in {"", ".", ".."}:
        raise ValueError("a plain file name is needed")
    final = folder / name
    temp = folder / f".{name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        _move_into_place(temp, final)
        fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return size


def _move_into_place(temp: Path, final: Path) -> None:
    # Names are random, so a clash means something odd is going on: never replace.
    # (link() would refuse atomically, but FAT and exFAT sticks have no hard links.)
    if os.path.lexists(final):
        raise FileExistsError(final.name)
    temp.replace(final)


def read_blocks(src: BinaryIO) -> Iterable[bytes]:
    while block := src.read(_BLOCK):
        yield block


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a symlink. Raises OSError.

    O_NONBLOCK so that a FIFO put in the file's place cannot hang the open; it
    is cleared again once the file is known to be regular.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError("not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def regular_files(folder: Path, suffix: str) -> list[Path]:
    """The regular files in ``folder`` ending in ``suffix``, by name; symlinks skipped."""
    return [
        folder / entry.name
        for entry in sorted(os.scandir(folder), key=lambda e: e.name)
        if entry.name.endswith(suffix)
        and not entry.name.startswith(".")
        and entry.is_file(follow_symlinks=False)
    ]
