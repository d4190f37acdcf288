"""A canary typed into a testimony appears nowhere on disk, in any encoding we know of.

A seized laptop is read with forensic tools that look for text in UTF-8,
UTF-16 and inside JSON, base64 and hex dumps. A unique sentence, half Latin
half Arabic, goes into every place a monitor types text (the narrative, the
witness's protected name, an attachment's content and its file name), is saved,
edited and searched for, through the real ``fieldapp`` program and through the
API; then every file under the home and the temporary folder is read, while a
connection is still open (the WAL is full then) and after everything closed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from fieldapp.domain import ProtectedIdentity
from fieldapp.errors import ExitCode
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import Unlocked
from tests.store.conftest import ARABIC, PASSPHRASE, Clock, make_testimony

ARABIC_WORD = "الكناري"


@dataclasses.dataclass(frozen=True)
class Canary:
    """The sentence, and the fragments of it that must not show up on their own either."""

    text: str
    first: str  # uuid4 hex: 122 random bits, found only where we put them
    second: str

    @classmethod
    def new(cls) -> Canary:
        first, second = uuid.uuid4().hex, uuid.uuid4().hex
        return cls(f"canary-{first} {ARABIC_WORD} {second}", first, second)

    def fragments(self) -> tuple[str, ...]:
        # The search index stores words, not the sentence: each word is a needle too.
        return (self.text, f"canary-{self.first}", self.first, self.second, ARABIC_WORD)


def encodings(text: str) -> dict[str, bytes]:
    """``text`` as a forensic search would look for it."""
    raw = text.encode("utf-8")
    escaped = json.dumps(text, ensure_ascii=True)[1:-1]
    out = {
        "utf-8": raw,
        "utf-16-le": text.encode("utf-16-le"),
        "utf-16-be": text.encode("utf-16-be"),
        "json": escaped.encode("ascii"),
        "json-upper": _upper_escapes(escaped).encode("ascii"),
        "hex": raw.hex().encode("ascii"),
        "HEX": raw.hex().upper().encode("ascii"),
    }
    # Inside a longer base64 text the sentence starts at any of 3 byte alignments; the
    # groups that hold only its bytes are the same whatever surrounds them.
    for skip in range(3):
        whole = (len(raw) - skip) // 3 * 3
        out[f"base64+{skip}"] = base64.b64encode(raw[skip : skip + whole])
        out[f"base64url+{skip}"] = base64.urlsafe_b64encode(raw[skip : skip + whole])
    return out


def _upper_escapes(escaped: str) -> str:
    parts = escaped.split("\\u")
    return "\\u".join([parts[0], *(p[:4].upper() + p[4:] for p in parts[1:])])


def needles(canary: Canary) -> list[tuple[str, bytes]]:
    return [
        (f"{fragment[:12]}… as {name}", encoded)
        for fragment in canary.fragments()
        for name, encoded in encodings(fragment).items()
    ]


def leaks(canary: Canary, *roots: Path) -> list[str]:
    """Every (file, encoding) where a fragment of the canary shows, names included."""
    found = []
    patterns = needles(canary)
    for root in roots:
        for path in sorted(root.rglob("*")):
            if any(f in path.name for f in canary.fragments()):
                found.append(f"the name of {path}")
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [f"{path}: {what}" for what, needle in patterns if needle in data]
    return found


def files_under(*roots: Path) -> list[str]:
    return sorted(str(p) for root in roots for p in root.rglob("*") if p.is_file())


@pytest.fixture
def canary() -> Canary:
    return Canary.new()


# ------------------------------------------------------------------ the scanner itself


@pytest.mark.parametrize("encoding", sorted(encodings("x")))
def test_the_scanner_finds_the_canary_in_every_encoding(
    canary: Canary, tmp_path: Path, encoding: str
) -> None:
    """The control: a scan that cannot fail proves nothing."""
    for i, fragment in enumerate(canary.fragments()):
        if encoding.startswith("base64"):
            # Embedded in a longer base64 text at each alignment, as a dump would hold it.
            encode = base64.urlsafe_b64encode if "url" in encoding else base64.b64encode
            skip = int(encoding[-1])
            blob = encode(b"\x00" * ((3 - skip) % 3) + fragment.encode() + b"\xff\xfe")
        else:
            blob = b"\x00garbage" + encodings(fragment)[encoding] + b"more\xff"
        (tmp_path / f"dump-{i}").write_bytes(blob)
        assert leaks(canary, tmp_path), (encoding, fragment)
        (tmp_path / f"dump-{i}").unlink()
    (tmp_path / f"{canary.first}.jpg").write_bytes(b"")
    assert leaks(canary, tmp_path) == [f"the name of {tmp_path / f'{canary.first}.jpg'}"]


# ------------------------------------------------------------------ through the API


def _inputs(canary: Canary, folder: Path) -> tuple[Path, bytes]:
    """An attachment named after the canary and holding it, in a folder outside the home."""
    folder.mkdir()
    content = (f"{canary.text}\n".encode() + canary.text.encode("utf-16-le")) * 50
    attachment = folder / f"{canary.text}.txt"
    attachment.write_bytes(content)
    return attachment, content


def test_a_canary_saved_edited_and_searched_through_the_api_is_nowhere_on_disk(
    canary: Canary, home: Home, unlocked: Unlocked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    attachment, content = _inputs(canary, tmp_path / "inputs")

    with FieldStore.open(unlocked, clock=Clock()) as store:
        saved = store.create(
            make_testimony(store, narrative=f"{ARABIC} {canary.text}"),
            identity=ProtectedIdentity(name=canary.text, notes=canary.text),
            attach=[attachment],
        )
        second = store.update(
            saved.id,
            dataclasses.replace(saved.testimony, narrative=f"{canary.text} (تصحيح) {ARABIC}"),
        )
        assert second.seq == 2
        assert [r.id for r in store.search(canary.first)] == [saved.id]
        assert [r.id for r in store.search(ARABIC_WORD)] == [saved.id]
        got = store.get(saved.id)
        assert got.identity is not None and got.identity.name == canary.text
        assert got.testimony.attachments[0].filename == attachment.name
        # While the store is open: the transactions are still in the WAL.
        wal = home.database_files()[1]
        assert wal.is_file() and wal.stat().st_size > 0
        assert leaks(canary, home.root, scratch) == []
    assert leaks(canary, home.root, scratch) == []
    assert files_under(scratch) == []
    assert canary.text.encode() in content  # the input really held it


# ------------------------------------------------------------------ through the program


def fieldapp(
    home: Home, scratch: Path, *argv: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real program, under umask 022, with TMPDIR pointing at ``scratch``."""
    env = {k: v for k, v in os.environ.items() if k != "FIELDAPP_HOME"}
    env["TMPDIR"] = str(scratch)
    return subprocess.run(
        [sys.executable, "-m", "fieldapp", "--home", str(home.root), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=scratch.parent,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )


@pytest.fixture
def program(canary: Canary, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(scratch TMPDIR, passphrase file, narrative file, attachment) for the program."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    attachment, _ = _inputs(canary, tmp_path / "inputs")
    passphrase = tmp_path / "inputs" / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n", encoding="utf-8")
    narrative = tmp_path / "inputs" / "narrative.txt"
    narrative.write_text(f"{ARABIC}\n{canary.text}\n", encoding="utf-8")
    return scratch, passphrase, narrative, attachment


def test_a_canary_saved_edited_and_searched_by_the_program_is_nowhere_on_disk(
    canary: Canary, home: Home, unlocked: Unlocked, program: tuple[Path, Path, Path, Path]
) -> None:
    scratch, passphrase, narrative, attachment = program
    pw = ("--passphrase-file", str(passphrase))
    # Held open by this process: the program's transactions stay in the WAL meanwhile.
    with FieldStore.open(unlocked, clock=Clock()) as live:
        added = fieldapp(
            home,
            scratch,
            "record",
            "add",
            *("--narrative-file", str(narrative), "--witness-name", canary.text),
            *("--attach", str(attachment), "--place", "Aleppo", "--language", "ar"),
            *("--consent", "justice-mechanisms", "--json", *pw),
        )
        assert added.returncode == 0, added.stderr
        rid = json.loads(added.stdout)["id"]
        edited = fieldapp(
            home,
            scratch,
            *("record", "edit", rid, "--narrative-file", "-", "--status", "ready", *pw),
            stdin=f"{canary.text} (تصحيح)",
        )
        assert edited.returncode == 0, edited.stderr
        found = fieldapp(home, scratch, "search", canary.second, "--json", *pw)
        assert [r["id"] for r in json.loads(found.stdout)] == [rid]
        shown = fieldapp(
            home, scratch, "record", "show", rid, "--json", "--history", "--identity", *pw
        )
        record = json.loads(shown.stdout)
        assert record["testimony"]["narrative"] == f"{canary.text} (تصحيح)"
        assert record["identity"]["name"] == canary.text
        assert record["testimony"]["attachments"][0]["filename"] == attachment.name
        assert [h["seq"] for h in record["history"]] == [1, 2]
        for done in (added, edited, found, shown):
            assert done.stderr == "", done.args
        assert live.get(rid).seq == 2
        wal = home.database_files()[1]
        assert wal.is_file() and wal.stat().st_size > 0
        assert leaks(canary, home.root, scratch) == []
    assert leaks(canary, home.root, scratch) == []
    assert files_under(scratch) == []


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--violation", "nope", ExitCode.DATA),
        ("--violation", "CANARY", ExitCode.DATA),
        ("--incident-date", "CANARY", ExitCode.DATA),
        ("--taken-at", "CANARY", ExitCode.DATA),
        ("--witness-code", "CANARY", ExitCode.DATA),
        ("--language", "CANARY", ExitCode.DATA),
        ("--attach", "/nonexistent/CANARY.jpg", ExitCode.IO),
    ],
)
def test_a_refused_command_keeps_the_canary_out_of_stderr(
    canary: Canary,
    home: Home,
    unlocked: Unlocked,
    program: tuple[Path, Path, Path, Path],
    option: str,
    value: str,
    code: ExitCode,
) -> None:
    scratch, passphrase, narrative, attachment = program
    done = fieldapp(
        home,
        scratch,
        "record",
        "add",
        *("--narrative-file", str(narrative), "--witness-name", canary.text),
        *("--attach", str(attachment), "--place", canary.text),
        *(option, value.replace("CANARY", canary.text)),
        *("--passphrase-file", str(passphrase)),
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("fieldapp: ") and done.stderr.count("\n") == 1
    if code == ExitCode.DATA:  # the one line names the field at fault
        assert option.lstrip("-").replace("-", "_") in done.stderr
    stderr = done.stderr.encode("utf-8")
    assert [what for what, needle in needles(canary) if needle in stderr] == []
    # Nothing was saved: no record, no encrypted file left behind, nothing in TMPDIR.
    with FieldStore.open(unlocked) as store:
        assert store.count() == 0
    assert list(home.attachments.iterdir()) == []
    assert files_under(scratch) == []
    assert leaks(canary, home.root, scratch) == []
