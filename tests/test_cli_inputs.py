"""The one reader for passphrase, narrative and identity files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fieldapp.cli.inputfiles import read_text_input
from fieldapp.errors import FieldappError


class Refused(FieldappError):
    pass


def test_reads_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "n.txt"
    path.write_text("شهادة\n", encoding="utf-8")
    assert read_text_input(str(path), 100, "narrative", Refused) == "شهادة\n"


def test_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(Refused, match="not a regular file"):
        read_text_input(str(fifo), 100, "narrative", Refused)


@pytest.mark.parametrize(
    ("content", "limit", "message"),
    [(b"x" * 11, 10, "larger than 10 bytes"), (b"\xff\xfe", 10, "not UTF-8")],
)
def test_oversize_and_non_utf8_files_are_refused(
    tmp_path: Path, content: bytes, limit: int, message: str
) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(Refused, match=message):
        read_text_input(str(path), limit, "narrative", Refused)


def test_a_missing_file_names_only_what_it_was_for(tmp_path: Path) -> None:
    with pytest.raises(Refused) as caught:
        read_text_input(str(tmp_path / "secret-name.txt"), 10, "narrative", Refused)
    assert "secret-name" not in caught.value.message
