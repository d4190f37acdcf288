"""The startup check: whatever instant the last process died at, make the store consistent.

Run before the relay answers any request. It removes temp files and half-made
or half-removed folders (dot-named), finishes an upload whose bytes were all
received but not yet moved into ``blobs/`` (if they hash to its id; otherwise
it is discarded), removes an upload that already became a blob, and leaves
every other partial upload resumable at its file's size.

Everything it keeps is made durable before the relay answers: the last process
may have died (SIGKILL) with a rename or bytes written but not yet fsynced, which
a later power cut could still take back, and the new process answers offsets and
complete blobs from what it finds. So each resumable upload's data, description
and folder are fsynced, then ``uploads/`` and ``blobs/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from sync.relay.errors import RelaySetupError
from sync.relay.fsio import (
    DIR_MODE,
    fsync_dir,
    fsync_file,
    is_scratch,
    make_dir,
    remove_scratch,
    remove_tree,
)
from sync.relay.ids import is_blob_id
from sync.relay.storage import DATA, META, read_meta
from sync.relay.uploads import hash_file

FOLDERS = ("blobs", "uploads", "receipts", "statements")
LOCK_FILE = "relay.lock"


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``data_dir/relay.lock`` for this process; returns the fd to close at the end.

    One relay process per data folder: a second one's startup check would take
    another's uploads in the making for leftovers. Raises RelaySetupError.
    """
    try:
        fd = os.open(
            data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as e:
        raise RelaySetupError(
            "The relay data folder cannot be opened; check its permissions."
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise RelaySetupError("Another relay process is serving this data folder.") from e
    return fd


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What the check found; counts only (no ids: they are request data)."""

    scratch_removed: int = 0
    uploads_resumable: int = 0
    uploads_finished: int = 0
    uploads_removed: int = 0

    @property
    def repaired(self) -> int:
        return self.scratch_removed + self.uploads_finished + self.uploads_removed


def check_store(data_dir: Path) -> RecoveryReport:
    """Make the store under ``data_dir`` consistent; returns what was done. Raises OSError."""
    scratch = remove_scratch(data_dir)
    for name in FOLDERS:
        folder = data_dir / name
        if not folder.is_dir():
            make_dir(folder)
        folder.chmod(DIR_MODE)
        scratch += remove_scratch(folder)
    if (data_dir / "tls").is_dir():
        scratch += remove_scratch(data_dir / "tls")
    resumable = finished = removed = 0
    uploads = data_dir / "uploads"
    for name in sorted(p.name for p in uploads.iterdir()):
        if not is_blob_id(name) or is_scratch(name):
            continue
        outcome = _check_upload(data_dir, uploads / name)
        resumable += outcome == "resumable"
        finished += outcome == "finished"
        removed += outcome == "removed"
    fsync_dir(uploads)
    fsync_dir(data_dir / "blobs")
    return RecoveryReport(scratch, resumable, finished, removed)


def _check_upload(data_dir: Path, folder: Path) -> str:
    blob = data_dir / "blobs" / folder.name
    try:
        length = read_meta(folder)
        size = (folder / DATA).stat(follow_symlinks=False).st_size
    except (OSError, ValueError):
        length = size = -1  # no description or no data: it cannot be resumed
    if length < 0 or os.path.lexists(blob):
        # Either never finished being made (it could not have been answered yet) or
        # it already became a blob and only the folder's removal was lost.
        remove_tree(folder)
        return "removed"
    if size > length:  # never written past its length by us; cut the excess
        with (folder / DATA).open("r+b") as f:
            f.truncate(length)
            os.fsync(f.fileno())
        size = length
    if size < length:
        fsync_file(folder / DATA)
        fsync_file(folder / META)
        fsync_dir(folder)
        return "resumable"
    if hash_file(folder / DATA) != folder.name:
        remove_tree(folder)
        return "removed"
    with contextlib.suppress(FileNotFoundError):
        (folder / DATA).replace(blob)
    fsync_dir(data_dir / "blobs")
    remove_tree(folder)
    return "finished"
