"""Crash-safe file operations for the relay's data folder.

Every file that must survive is written as a temp file, fsynced, renamed into
place and made durable by an fsync of its folder. Temp and trash names start
with a dot and are never valid ids, so the startup check can remove them all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def is_scratch(name: str) -> bool:
    """A temp file, an upload being created or a folder being removed."""
    return name.startswith(".")


def scratch_name(kind: str) -> str:
    return f".{kind}-{secrets.token_hex(8)}"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_file(path: Path) -> None:
    """fsync the file ``path`` (not a link): its data and size, not its folder's entry."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write a new file at ``path`` (never an existing one), fsynced unless ``sync`` is False.

    Never a folder fsync: the caller decides whether the file's entry must be durable.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, FILE_MODE)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(folder: Path, name: str, data: bytes) -> None:
    """Put ``data`` at ``folder/name``: a crash leaves the old file or the new one.

    Raises OSError (the temp file is removed again).
    """
    temp = folder / scratch_name("tmp")
    try:
        create_file(temp, data)
        temp.replace(folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(folder)


def make_dir(path: Path) -> None:
    """Create the folder ``path`` (0700) and make its entry durable. Raises OSError."""
    path.mkdir(mode=DIR_MODE)
    path.chmod(DIR_MODE, follow_symlinks=False)  # whatever the umask
    fsync_dir(path.parent)


def move_to_trash(path: Path) -> Path:
    """Rename the folder ``path`` to a dot-named sibling, in one step; returns the new path.

    No folder fsync: a crash may undo the rename, which the caller must be able to
    live with. Delete the trash with ``shutil.rmtree``; whatever a crash leaves of
    it, the startup check removes. Raises OSError.
    """
    trash = path.parent / scratch_name("trash")
    path.rename(trash)
    return trash


def remove_tree(path: Path) -> None:
    """Remove the folder ``path``: renamed away in one step, then deleted.

    A crash after the rename leaves a dot-named folder that the startup check
    removes; before it, the folder is intact. Raises OSError.
    """
    trash = path.parent / scratch_name("trash")
    path.rename(trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def remove_scratch(folder: Path) -> int:
    """Remove the dot-named leftovers in ``folder``; returns how many there were."""
    removed = 0
    for entry in os.scandir(folder):
        if not is_scratch(entry.name):
            continue
        removed += 1
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                Path(entry.path).unlink()
    if removed:
        fsync_dir(folder)
    return removed


def read_small(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (no symlink), at most ``limit``. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise OSError("not a small regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)[:limit]
    finally:
        os.close(fd)
