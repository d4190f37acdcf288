"""`fieldapp keys rekey` through the real CLI (tests.cheapcli in a subprocess)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crypto.errors import WrongSecret
from fieldapp.errors import ExitCode
from fieldapp.hq.vault import create_hq_home
from fieldapp.session import Session
from fieldapp.store.home import Home
from fieldapp.store.vault import unlock_home
from tests.store.conftest import CHEAP, PASSPHRASE
from tests.store.homefill import Filled, check_everything, fill

REPO = Path(__file__).resolve().parent.parent
CODE = re.compile(r"^  ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})$", re.MULTILINE)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.cheapcli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )


def _secret_file(tmp_path: Path, name: str, secret: str) -> str:
    path = tmp_path / name
    path.write_text(secret + "\n", encoding="utf-8")
    return str(path)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Home, Filled]:
    home = Home(tmp_path / "home")
    return home, fill(home, tmp_path / "sources", records=6)


def test_rekey_shows_a_new_recovery_code_once_and_the_home_still_opens(
    filled: tuple[Home, Filled], tmp_path: Path
) -> None:
    home, content = filled
    pw = _secret_file(tmp_path, "pw", PASSPHRASE)
    listed = _cli("--home", str(home.root), "record", "list", "--json", "--passphrase-file", pw)
    assert listed.returncode == 0, listed.stderr

    done = _cli("--home", str(home.root), "keys", "rekey", "--passphrase-file", pw)

    assert done.returncode == 0, done.stderr
    codes = CODE.findall(done.stdout)
    assert len(codes) == 1  # shown once
    assert "old recovery code no longer works" in done.stdout
    assert codes[0] not in done.stderr
    # The old code fails, the new one and the passphrase work, through the CLI too.
    old = _cli(
        "--home", str(home.root), "keys", "show", "--passphrase-file",
        _secret_file(tmp_path, "old-code", content.recovery_code),
    )  # fmt: skip
    assert old.returncode == ExitCode.AUTH
    assert old.stderr.count("\n") == 1
    new = _cli(
        "--home", str(home.root), "keys", "show", "--passphrase-file",
        _secret_file(tmp_path, "new-code", codes[0]),
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    again = _cli("--home", str(home.root), "record", "list", "--json", "--passphrase-file", pw)
    assert again.returncode == 0, again.stderr
    assert again.stdout == listed.stdout
    check_everything(home, codes[0], content)
    with pytest.raises(WrongSecret):
        unlock_home(home, content.recovery_code)
    # The session the TUI uses opens it as well.
    session = Session(home, kdf=CHEAP)
    session.unlock(PASSPHRASE)
    assert session.store.count() == len(content.narratives)
    session.lock()


@pytest.mark.parametrize("case", ["wrong passphrase", "recovery code", "hq home", "no home"])
def test_refusals_are_one_line_and_change_nothing(
    filled: tuple[Home, Filled], tmp_path: Path, case: str
) -> None:
    home, content = filled
    secret = {"wrong passphrase": "not it", "recovery code": content.recovery_code}.get(
        case, PASSPHRASE
    )
    root = home.root
    if case == "hq home":
        root = tmp_path / "hq"
        create_hq_home(Home(root), PASSPHRASE, "the protection passphrase", kdf=CHEAP)
    if case == "no home":
        root = tmp_path / "nothing-here"
    secret_file = _secret_file(tmp_path, "secret", secret)
    before = _hashes(tmp_path)
    got = _cli("--home", str(root), "keys", "rekey", "--passphrase-file", secret_file)
    expected = {
        "wrong passphrase": ExitCode.AUTH,
        "recovery code": ExitCode.AUTH,
        "hq home": ExitCode.USAGE,
        "no home": ExitCode.ERROR,
    }[case]
    assert got.returncode == expected, got.stderr
    errors = [line for line in got.stderr.splitlines() if line.startswith("fieldapp: ")]
    assert len(errors) == 1 and "Traceback" not in got.stderr
    assert got.stdout == ""
    assert _hashes(tmp_path) == before
    assert not (tmp_path / "nothing-here").exists()
