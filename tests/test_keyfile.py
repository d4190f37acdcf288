"""Key files: private folders, 0600 files, refusing links, and faults at every step."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto import keyfile
from crypto.errors import KeyFileError, KeyslotCorrupt, WeakParameters, WrongSecret
from crypto.kdf import MasterKey
from crypto.keyfile import (
    FAULT_STEPS,
    atomic_write,
    change_passphrase_file,
    ensure_private_dir,
    load_keyslots,
    read_key_file,
    save_keyslots,
)
from crypto.keyslot import MAX_ENCODED_BYTES, create_keyslots, unlock
from tests.conftest import KdfKwargs

OLD, NEW = b"old content\n", b"new content, longer than the old one\n"
PRE_RENAME = ("created", "written", "fsynced")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


class _FakeOs:
    """The real os module, except for the calls a test overrides."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name, getattr(os, name))


@pytest.fixture(params=[0o000, 0o077], ids=["umask-000", "umask-077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    ensure_private_dir(folder)
    return folder


# --- folders ---------------------------------------------------------------------


def test_new_private_dir_is_0700(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "a" / "home"
    ensure_private_dir(folder)
    assert folder.is_dir()
    assert _mode(folder) == 0o700


def test_existing_dir_is_narrowed_to_0700(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "home"
    folder.mkdir(mode=0o755)
    folder.chmod(0o777)
    ensure_private_dir(folder)
    assert _mode(folder) == 0o700


def _fsynced_folders(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Spy on keyfile's fsync; the (st_dev, st_ino) of each folder it syncs, in order."""
    synced: list[tuple[int, int]] = []

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.append((st.st_dev, st.st_ino))
        os.fsync(fd)

    monkeypatch.setattr(keyfile, "os", _FakeOs(fsync=fsync))
    return synced


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_a_new_private_dir_is_made_durable_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _fsynced_folders(monkeypatch)
    ensure_private_dir(tmp_path / "a" / "home")
    # Each new folder is an entry in the folder above it; both entries must be synced.
    assert synced == [_identity(tmp_path), _identity(tmp_path / "a")]


def test_an_existing_private_dir_needs_no_folder_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "home").mkdir()
    synced = _fsynced_folders(monkeypatch)
    ensure_private_dir(tmp_path / "home")
    assert synced == []


def test_a_failed_folder_sync_is_key_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(keyfile, "os", _FakeOs(fsync=fsync))
    with pytest.raises(KeyFileError, match="did not confirm") as raised:
        ensure_private_dir(tmp_path / "home")
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.EIO


def test_private_dir_refuses_a_symlink_and_a_file(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    real.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(KeyFileError):
        ensure_private_dir(link)
    assert _mode(real) == 0o755  # the link's target was not touched
    afile = tmp_path / "file"
    afile.write_bytes(b"")
    with pytest.raises(KeyFileError):
        ensure_private_dir(afile)


# --- writing ---------------------------------------------------------------------


def test_atomic_write_creates_a_0600_file(home: Path, umask: int) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    assert target.read_bytes() == OLD
    assert _mode(target) == 0o600
    assert _temps(home) == []
    assert all(_mode(p) == 0o600 for p in home.iterdir())  # the lock file too


def test_atomic_write_replaces_and_narrows_an_existing_file(home: Path, umask: int) -> None:
    target = home / "keyslots"
    target.write_bytes(OLD)
    target.chmod(0o644)
    atomic_write(target, NEW)
    assert target.read_bytes() == NEW
    assert _mode(target) == 0o600


def test_atomic_write_refuses_a_symlink_target(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(OLD)
    target = home / "keyslots"
    target.symlink_to(elsewhere)
    with pytest.raises(KeyFileError):
        atomic_write(target, NEW)
    assert target.is_symlink()
    assert elsewhere.read_bytes() == OLD
    assert _temps(home) == []


def test_atomic_write_refuses_a_dangling_symlink_and_a_directory(home: Path) -> None:
    (home / "dangling").symlink_to(home / "nowhere")
    with pytest.raises(KeyFileError):
        atomic_write(home / "dangling", NEW)
    assert not (home / "nowhere").exists()
    (home / "adir").mkdir()
    with pytest.raises(KeyFileError):
        atomic_write(home / "adir", NEW)


def test_atomic_write_into_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        atomic_write(tmp_path / "missing" / "keyslots", NEW)


def test_stale_temp_files_are_removed_on_the_next_write(home: Path) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    (home / ".keyslots.tmp-0123456789abcdef").write_bytes(b"half")
    (home / ".keyslots.tmp-fedcba9876543210").write_bytes(b"")
    (home / ".device.tmp-0123456789abcdef").write_bytes(b"another file's temp")
    (home / "notes").write_bytes(b"unrelated")
    atomic_write(target, NEW)
    assert _temps(home) == [".device.tmp-0123456789abcdef"]
    assert (home / "notes").read_bytes() == b"unrelated"
    assert target.read_bytes() == NEW


def test_the_temp_name_is_what_the_sweep_matches(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def hook(step: str) -> None:
        if step == "created":
            seen.extend(_temps(home))

    monkeypatch.setattr(keyfile, "fault_hook", hook)
    atomic_write(home / "keyslots", OLD)
    (name,) = seen
    assert re.fullmatch(r"\.keyslots\.tmp-[0-9a-f]{16}", name)


def test_files_that_only_share_the_temp_prefix_survive_a_write(home: Path) -> None:
    # A target named "keyslots.tmp-x" has its lock at ".keyslots.tmp-x.lock": the
    # sweep for "keyslots" must not remove it (it may be held by another writer).
    atomic_write(home / "keyslots.tmp-x", b"another key file")
    assert (home / ".keyslots.tmp-x.lock").exists()
    lookalikes = [
        ".keyslots.tmp-0123456789abcdef.lock",  # the lock of "keyslots.tmp-<16 hex>"
        ".keyslots.tmp-0123456789abcdef.tmp-0123456789abcdef",  # that target's temp
        ".keyslots.tmp-0123456789ABCDEF",  # not the writer's spelling
        ".keyslots.tmp-0123456789abcdef0",  # one digit too many
        ".keyslots.tmp-deadbeef",  # too few
    ]
    for name in lookalikes:
        (home / name).write_bytes(b"not ours")
    (home / ".keyslots.tmp-0123456789abcdef").write_bytes(b"ours, left by a crash")
    atomic_write(home / "keyslots", NEW)
    assert not (home / ".keyslots.tmp-0123456789abcdef").exists()
    for name in [".keyslots.tmp-x.lock", *lookalikes]:
        assert (home / name).exists(), name
    assert (home / "keyslots.tmp-x").read_bytes() == b"another key file"
    assert (home / "keyslots").read_bytes() == NEW


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_a_fault_at_any_step_leaves_old_or_new_and_no_temp(
    home: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    reached: list[str] = []

    def hook(name: str) -> None:
        reached.append(name)
        if name == step:
            raise RuntimeError("injected fault")

    monkeypatch.setattr(keyfile, "fault_hook", hook)
    with pytest.raises(KeyFileError) as raised:
        atomic_write(target, NEW)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert reached == list(FAULT_STEPS[: FAULT_STEPS.index(step) + 1])
    assert _temps(home) == []
    assert _mode(target) == 0o600
    if step in PRE_RENAME:
        assert target.read_bytes() == OLD  # the rename is the commit point
        assert "nothing was changed" in raised.value.message
    else:
        assert target.read_bytes() == NEW
        assert "replaced" in raised.value.message


def test_an_interrupt_mid_write_propagates_and_cleans_up(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)

    def hook(name: str) -> None:
        if name == "written":
            raise KeyboardInterrupt

    monkeypatch.setattr(keyfile, "fault_hook", hook)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, NEW)
    assert target.read_bytes() == OLD
    assert _temps(home) == []


def test_a_failed_close_closes_the_temp_fd_once_and_cleans_up(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    bystander_file = tmp_path / "bystander"
    bystander_file.write_bytes(b"someone else's file")
    temp_fds: list[int] = []
    closed: list[int] = []

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = os.open(path, flags, *args, **kwargs)
        if ".tmp-" in str(path):
            temp_fds.append(fd)
        return fd

    def close(fd: int) -> None:
        closed.append(fd)
        if fd in temp_fds and closed.count(fd) == 1:
            # As Linux does: the descriptor is released even though close reports an
            # error. Another thread then gets the same number for its own file.
            os.close(fd)
            bystander = os.open(bystander_file, os.O_RDONLY)
            if bystander != fd:
                os.dup2(bystander, fd)
                os.close(bystander)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.close(fd)

    monkeypatch.setattr(keyfile, "os", _FakeOs(open=open_, close=close))
    try:
        with pytest.raises(KeyFileError) as raised:
            atomic_write(target, NEW)
        (temp_fd,) = temp_fds
        assert closed.count(temp_fd) == 1, "the temp fd was closed twice"
        # The other thread's descriptor, now under the same number, is still open.
        assert os.read(temp_fd, 100) == b"someone else's file"
    finally:
        for fd in temp_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.EIO
    assert "nothing was changed" in raised.value.message
    assert target.read_bytes() == OLD
    assert _temps(home) == []
    monkeypatch.undo()
    atomic_write(target, NEW)
    assert target.read_bytes() == NEW


def test_a_failed_close_on_the_error_path_still_cleans_up(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)

    temp_fds: list[int] = []

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = os.open(path, flags, *args, **kwargs)
        if ".tmp-" in str(path):
            temp_fds.append(fd)
        return fd

    def close(fd: int) -> None:
        os.close(fd)
        if fd in temp_fds:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def hook(step: str) -> None:
        if step == "written":
            raise RuntimeError("injected fault")

    monkeypatch.setattr(keyfile, "os", _FakeOs(open=open_, close=close))
    monkeypatch.setattr(keyfile, "fault_hook", hook)
    with pytest.raises(KeyFileError) as raised:
        atomic_write(target, NEW)
    assert isinstance(raised.value.__cause__, RuntimeError)  # the first fault, not close's
    assert len(temp_fds) == 1
    assert target.read_bytes() == OLD
    assert _temps(home) == []


@pytest.mark.parametrize("partial", [False, True], ids=["nothing-written", "half-written"])
def test_a_full_disk_becomes_key_file_error_and_keeps_the_old_file(
    home: Path, partial: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    calls: list[int] = []

    def write(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if partial and len(calls) == 1:
            return os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keyfile, "os", _FakeOs(write=write))
    with pytest.raises(KeyFileError) as raised:
        atomic_write(target, NEW)
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ENOSPC
    assert len(calls) == (2 if partial else 1)
    assert target.read_bytes() == OLD
    assert _temps(home) == []


def test_an_fsync_error_keeps_the_old_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(keyfile, "os", _FakeOs(fsync=fsync))
    with pytest.raises(KeyFileError):
        atomic_write(target, NEW)
    assert target.read_bytes() == OLD
    assert _temps(home) == []


def test_a_held_lock_times_out_with_key_file_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home / "keyslots"
    atomic_write(target, OLD)
    monkeypatch.setattr(keyfile, "LOCK_TIMEOUT_S", 0.1)
    fd = os.open(home / ".keyslots.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: conflicts
        with pytest.raises(KeyFileError, match="Another fieldapp process"):
            atomic_write(target, NEW)
    finally:
        os.close(fd)
    assert target.read_bytes() == OLD
    atomic_write(target, NEW)  # released: works again
    assert target.read_bytes() == NEW


# --- reading ---------------------------------------------------------------------


def test_read_key_file(home: Path) -> None:
    target = home / "key"
    atomic_write(target, b"12345")
    assert read_key_file(target, 5) == b"12345"
    with pytest.raises(KeyFileError):
        read_key_file(target, 4)
    with pytest.raises(KeyFileError):
        read_key_file(home / "missing", 5)


def test_read_refuses_links_folders_and_fifos(home: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"secret")
    (home / "link").symlink_to(real)
    with pytest.raises(KeyFileError):
        read_key_file(home / "link", 100)
    with pytest.raises(KeyFileError):
        read_key_file(home, 100)
    os.mkfifo(home / "fifo")
    with pytest.raises(KeyFileError):  # and does not hang waiting for a writer
        read_key_file(home / "fifo", 100)


# --- keyslot files ---------------------------------------------------------------


def test_save_load_change_passphrase(home: Path, cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    path = home / "keyslots"
    save_keyslots(path, create_keyslots(master, "old", **cheap_kdf))
    assert _mode(path) == 0o600
    assert unlock(load_keyslots(path), "old") == (master, 0)
    change_passphrase_file(path, "old", "new", **cheap_kdf)
    ks = load_keyslots(path)
    assert unlock(ks, "new") == (master, 0)
    with pytest.raises(WrongSecret):
        unlock(ks, "old")
    assert _temps(home) == []


def test_failed_change_leaves_the_file_byte_identical(home: Path, cheap_kdf: KdfKwargs) -> None:
    path = home / "keyslots"
    save_keyslots(path, create_keyslots(MasterKey.generate(), "old", **cheap_kdf))
    before = path.read_bytes()
    with pytest.raises(WrongSecret):
        change_passphrase_file(path, "wrong", "new", **cheap_kdf)
    with pytest.raises(WeakParameters):
        change_passphrase_file(path, "old", "new", params=cheap_kdf["params"])
    assert path.read_bytes() == before


def test_load_refuses_oversize_corrupt_and_linked_files(home: Path, tmp_path: Path) -> None:
    path = home / "keyslots"
    atomic_write(path, b" " * (MAX_ENCODED_BYTES + 100))
    with pytest.raises(KeyslotCorrupt):
        load_keyslots(path)
    atomic_write(path, b"{}")
    with pytest.raises(KeyslotCorrupt):
        load_keyslots(path)
    path.unlink()
    path.symlink_to(tmp_path / "whatever")
    with pytest.raises(KeyFileError):
        load_keyslots(path)
