"""Key files on disk: private folders, atomic writes, careful reads.

This is the one module of crypto/ that touches the filesystem, on purpose: fieldapp
(keyslots, the sealed device key) and sync (HQ keys) must write key files in exactly
the same crash-safe way, and crypto/ is the package both import. Keeping the
procedure here, next to the formats it protects, means there is one implementation
to audit and one crash test for it.

The write procedure (see docs/keyslots.md): take a lock file beside the target;
remove temp files a crash left behind; create a new temp file in the same folder
(O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 whatever the umask); write everything; fsync;
rename over the target; fsync the folder. Until the rename the target is untouched;
the rename swaps old for new in one step. A crash at any instant leaves the old
file or the new one, never a mix.

POSIX only (Linux, macOS): it relies on O_NOFOLLOW, directory fds and flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from crypto.errors import KeyFileError
from crypto.kdf import KDF_FLOOR, PRODUCTION_KDF, KdfParams
from crypto.keyslot import MAX_ENCODED_BYTES, Keyslots, change_secret, decode, encode

FILE_MODE = 0o600
DIR_MODE = 0o700
FAULT_STEPS = ("created", "written", "fsynced", "renamed", "dir-fsynced")
LOCK_TIMEOUT_S = 10.0

_TEMP_INFIX = ".tmp-"
_TEMP_TOKEN_BYTES = 8  # the temp name ends in twice as many lowercase hex digits


def _no_fault(step: str) -> None:
    """The default fault hook: does nothing."""


# Test seam: called with each name in FAULT_STEPS as the write reaches it. Tests set it
# to raise, or to SIGKILL the process, to show that every step is crash-safe.
fault_hook: Callable[[str], None] = _no_fault

_WRITTEN_BUT_UNSURE = (
    "The key file was replaced, but the disk did not confirm the write. "
    "Check the disk, then try the new secret first and the old one if it fails."
)


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, outermost first."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing[::-1]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as a folder only we can use (0700), or make it so if it exists.

    Missing parent folders are created with default permissions. Every folder
    created here is made durable by an fsync of the folder that holds it.

    Raises:
        KeyFileError: ``path`` is a symbolic link or not a folder, or cannot be
            created, made durable or restricted.
    """
    path = Path(path)
    try:
        created = _missing_folders(path)
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError(
            "The home folder could not be created or is a link; choose a real folder."
        ) from e
    try:
        # fchmod on the fd we opened without following links: no swap-in race.
        os.fchmod(fd, DIR_MODE)
    except OSError as e:
        raise KeyFileError("The home folder's permissions could not be restricted.") from e
    finally:
        os.close(fd)
    try:
        # A new folder is only an entry in its parent until the parent is fsynced: a
        # power cut right after init could lose the whole new home, with the key files
        # written into it (their own fsyncs do not cover that entry).
        for folder in created:
            _fsync_folder(folder.parent)
    except OSError as e:
        raise KeyFileError(
            "The home folder was created, but the disk did not confirm it. "
            "Check the disk, then try again."
        ) from e


def _open_dir(folder: Path) -> int:
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError() from e


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[tuple[int, str]]:
    """Hold ``.<name>.lock`` beside ``path``; yield (folder fd, file name).

    The lock serialises writers (and read-modify-write) of one key file across
    processes. flock is released by the kernel if we die, so a crash leaves no lock.
    """
    name = path.name
    dir_fd = _open_dir(path.parent)
    lock_fd = -1
    try:
        try:
            lock_fd = os.open(
                f".{name}.lock",
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
                dir_fd=dir_fd,
            )
            os.fchmod(lock_fd, FILE_MODE)
        except OSError as e:
            raise KeyFileError() from e
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KeyFileError(
                        "Another fieldapp process is changing the keys; wait and try again."
                    ) from None
                time.sleep(0.02)
            except OSError as e:
                raise KeyFileError() from e
        yield dir_fd, name
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)  # closing releases the flock
        os.close(dir_fd)


def _temp_name(name: str) -> str:
    return f".{name}{_TEMP_INFIX}{secrets.token_hex(_TEMP_TOKEN_BYTES)}"


def _remove_stale_temps(dir_fd: int, name: str) -> None:
    # Exactly the names _temp_name makes for this target. A prefix match would also
    # take other files, such as the lock of a target named "<name>.tmp-x", and
    # removing a lock another writer holds lets two writers in at once.
    temp = re.compile(
        rf"\.{re.escape(name)}{re.escape(_TEMP_INFIX)}[0-9a-f]{{{2 * _TEMP_TOKEN_BYTES}}}"
    )
    for entry in os.listdir(dir_fd):
        if temp.fullmatch(entry):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=dir_fd)


def _fsync(fd: int) -> None:
    os.fsync(fd)
    # On macOS fsync does not reach the platter; F_FULLFSYNC does.
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        fcntl.fcntl(fd, full)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _refuse_non_regular_target(dir_fd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("The key file is a link or not a regular file; refusing to replace it.")


def _atomic_write_at(dir_fd: int, name: str, data: bytes) -> None:
    """The write procedure, with the lock already held. See the module docstring."""
    try:
        _remove_stale_temps(dir_fd, name)
    except OSError as e:
        raise KeyFileError() from e
    _refuse_non_regular_target(dir_fd, name)
    temp = _temp_name(name)
    fd = -1
    renamed = False
    try:
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            FILE_MODE,
            dir_fd=dir_fd,
        )
        os.fchmod(fd, FILE_MODE)  # the umask may have narrowed or (0o000) not narrowed it
        fault_hook("created")
        _write_all(fd, data)
        fault_hook("written")
        _fsync(fd)
        fault_hook("fsynced")
        # Forget the fd before closing it. A failed close has still released it (on
        # Linux always, elsewhere unspecified), so closing it again on the error path
        # could close a descriptor another thread has just been given.
        closing, fd = fd, -1
        os.close(closing)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
        fault_hook("renamed")
        _fsync(dir_fd)
        fault_hook("dir-fsynced")
    except BaseException as e:
        if fd >= 0:
            # Best effort: a failure here must not skip removing the temp file, nor
            # replace the error being reported.
            with contextlib.suppress(OSError):
                os.close(fd)
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
        if not isinstance(e, Exception):
            raise  # KeyboardInterrupt, SystemExit: the temp file is gone, let it through
        # Before the rename nothing changed; after it the new content is in place but
        # may not be durable yet.
        raise KeyFileError(_WRITTEN_BUT_UNSURE if renamed else None) from e


def atomic_write(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` so that a crash leaves old or new.

    The folder must exist (see ``ensure_private_dir``). The file ends up mode 0600.
    Temp files left by an earlier crash are removed first.

    Raises:
        KeyFileError: the write failed (disk full, permissions, ``path`` is a link or
            not a regular file, another process holds the lock). If the message
            says the file was replaced, it holds the new content; otherwise it is
            exactly as before.
    """
    path = Path(path)
    with _locked(path) as (dir_fd, name):
        _atomic_write_at(dir_fd, name, data)


def _read_at(dir_fd: int | None, path: str | Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a regular file, refusing links, FIFOs, devices."""
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang us.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError as e:
        raise KeyFileError("The key file is missing. Restore it from backup.") from e
    except OSError as e:
        raise KeyFileError("The key file could not be opened, or is a link; refusing it.") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KeyFileError("The key file is not a regular file; refusing it.")
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise KeyFileError("The key file could not be read.") from e
    finally:
        os.close(fd)


def read_key_file(path: Path, max_bytes: int) -> bytes:
    """The content of the key file at ``path``, which may hold at most ``max_bytes``.

    Raises:
        KeyFileError: missing, a symbolic link or not a regular file, unreadable,
            or larger than ``max_bytes``.
    """
    data = _read_at(None, Path(path), max_bytes + 1)
    if len(data) > max_bytes:
        raise KeyFileError("The key file is larger than any valid one; refusing it.")
    return data


def load_keyslots(path: Path) -> Keyslots:
    """Read and strictly decode the keyslot file at ``path``.

    Raises:
        KeyFileError: missing, a link, or unreadable.
        KeyslotCorrupt: oversize or not a valid keyslot file.
    """
    return decode(_read_at(None, Path(path), MAX_ENCODED_BYTES + 1))


def save_keyslots(path: Path, ks: Keyslots) -> None:
    """Atomically write ``ks`` to ``path`` (replacing any file there).

    Raises:
        KeyFileError: as ``atomic_write``.
    """
    atomic_write(path, encode(ks))


def change_passphrase_file(
    path: Path,
    old: str,
    new: str,
    *,
    params: KdfParams = PRODUCTION_KDF,
    floor: KdfParams = KDF_FLOOR,
) -> None:
    """Rewrap the passphrase slot ``old`` opens under ``new``, in place, crash-safely.

    Read, change and write happen under the key file's lock, so two changes at once
    cannot lose one. After a crash the file opens with ``old`` or with ``new``.

    Raises:
        WrongSecret: ``old`` opens no passphrase slot.
        WeakParameters: ``params`` are below ``floor``.
        KeyslotError: empty new passphrase, or parameters outside the supported range.
        KeyslotCorrupt: the file is not a valid keyslot file.
        KeyFileError: the file could not be read or written (see ``atomic_write``).
    """
    path = Path(path)
    with _locked(path) as (dir_fd, name):
        ks = decode(_read_at(dir_fd, name, MAX_ENCODED_BYTES + 1))
        changed = change_secret(ks, old, new, params=params, floor=floor)
        _atomic_write_at(dir_fd, name, encode(changed))


class HeldKeyslots:
    """The keyslot file, read and written while its lock is held (see ``hold_keyslots``)."""

    def __init__(self, dir_fd: int, name: str) -> None:
        self._dir_fd = dir_fd
        self._name = name

    def load(self) -> Keyslots:
        """Read and strictly decode the file. Raises as ``load_keyslots``."""
        return decode(_read_at(self._dir_fd, self._name, MAX_ENCODED_BYTES + 1))

    def save(self, ks: Keyslots) -> None:
        """Atomically replace the file. Raises as ``atomic_write``."""
        _atomic_write_at(self._dir_fd, self._name, encode(ks))


@contextlib.contextmanager
def hold_keyslots(path: Path) -> Iterator[HeldKeyslots]:
    """Hold the keyslot file's lock for a longer change (a rekey, finishing one).

    Every writer of the file takes the same lock, so nothing else can change the
    keys until the block ends. Do not call ``save_keyslots`` or
    ``change_passphrase_file`` on the same path inside the block: they would wait
    for this lock; use the ``HeldKeyslots`` methods.

    Raises:
        KeyFileError: the folder cannot be opened, or another process holds the
            lock for more than ``LOCK_TIMEOUT_S`` seconds.
    """
    with _locked(Path(path)) as (dir_fd, name):
        yield HeldKeyslots(dir_fd, name)


def remove_key_file(path: Path) -> None:
    """Remove the key file at ``path`` (if present) and any temp file a crash left.

    Under the file's lock; the folder is fsynced afterwards so the removal is durable.

    Raises:
        KeyFileError: the file could not be removed or the disk did not confirm it.
    """
    path = Path(path)
    with _locked(path) as (dir_fd, name):
        try:
            _remove_stale_temps(dir_fd, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            _fsync(dir_fd)
        except OSError as e:
            raise KeyFileError("A key file could not be removed; check the home folder.") from e
