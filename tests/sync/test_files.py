"""sync/files.py: folders we do not control are written and read without surprises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync.files import UnsafeFolder, checked_folder, open_regular, regular_files, write_new


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "enrol.faenrol"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        open_regular(fifo)  # a blocking open would hang here: no writer ever comes


def test_open_regular_refuses_symlinks_and_reads_files(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"bundle bytes")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(OSError):
        open_regular(link)
    with open_regular(real) as src:
        assert src.read() == b"bundle bytes"


def test_write_new_never_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    assert write_new(tmp_path, "a.fabundle", [b"one", b"two"]) == 6
    with pytest.raises(FileExistsError):
        write_new(tmp_path, "a.fabundle", [b"other"])
    assert (tmp_path / "a.fabundle").read_bytes() == b"onetwo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fabundle"]


@pytest.mark.parametrize("name", ["../escape", "sub/name", ".hidden", "", ".", ".."])
def test_write_new_takes_plain_names_only(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        write_new(tmp_path, name, [b"x"])
    assert list(tmp_path.iterdir()) == []


def test_checked_folder_refuses_symlinks_files_and_missing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path)
    for bad in ("file", "link", "missing"):
        with pytest.raises(UnsafeFolder):
            checked_folder(tmp_path / bad)
    assert checked_folder(tmp_path) == tmp_path


def test_regular_files_skips_symlinks_dotfiles_and_other_suffixes(tmp_path: Path) -> None:
    for name in ("b.fareceipts", "a.fareceipts", ".c.fareceipts", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e.fareceipts").symlink_to(tmp_path / "a.fareceipts")
    (tmp_path / "f.fareceipts").mkdir()
    assert [p.name for p in regular_files(tmp_path, ".fareceipts")] == [
        "a.fareceipts",
        "b.fareceipts",
    ]
