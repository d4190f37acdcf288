"""SIGKILL during `hq rotate-root`, `hq rotate-key` and `hq retire-key`: HQ always opens whole.

Each command is one transaction of the archive (plus a WAL checkpoint after it),
so a kill at any moment must leave the archive exactly before or exactly after:
a chain devices accept, one root secret that signs every stored receipt, the
box keys the chain names, and every imported testimony. Kill moments are seeded
and spread over the command's whole run, as a person pulling the plug would.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto.receipts import verify_receipt
from crypto.statements import parse_statement
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import unlock_hq
from fieldapp.store.home import Home
from tests.sync.e2e import Hq, assert_ok, new_hq, new_monitor

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6  # per command; each is a fresh copy of the HQ home and one CLI process


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Hq:
    """An HQ that imported two testimonies from one monitor (so it holds receipts)."""
    root = tmp_path_factory.mktemp("template")
    hq = new_hq(root)
    monitor = new_monitor(root, hq, "aleppo-1")
    for n in range(2):
        monitor.add(f"Testimony {n} about the checkpoint.")
    assert monitor.export(root / "usb") == 2
    assert "2 imported" in assert_ok(hq.import_(root / "usb")).out
    return hq


def copy_of(template: Hq, tmp_path: Path) -> Hq:
    home = tmp_path / "hq"
    shutil.copytree(template.home, home, symlinks=True)
    return Hq(home, template.passphrase_file, template.protection_file, template.fingerprint)


def state_of(hq: Hq) -> tuple[int, int, list[str]]:
    """(chain length, box keys held, testimony ids), after checking the archive is whole."""
    secret = hq.passphrase_file.read_text(encoding="utf-8").removesuffix("\n")
    archive = HqArchive.open(unlock_hq(Home(hq.home), secret))
    try:
        assert archive.integrity_problems() == []
        trust = archive.trust()  # the chain verifies, as a device would check it
        chain = archive.statements()
        assert [parse_statement(s).version for s in chain] == list(range(1, len(chain) + 1))
        assert trust.box is not None and trust.box.key_id in {
            k.public_key.key_id for k in archive.box_keys()
        }
        assert len(archive._query("SELECT 1 FROM root_keys WHERE secret IS NOT NULL")) == 1
        root = archive.root_public()
        assert trust.root == root
        for _, receipt in archive.receipts(include_exported=True):
            verify_receipt(receipt, [root])  # every receipt is signed by the current root
        return len(chain), len(archive.box_keys()), sorted(archive.all_ids())
    finally:
        archive.close()


def killed_at(hq: Hq, args: list[str], delay: float) -> int | None:
    """Run ``fieldapp --home HQ ARGS``; SIGKILL it after ``delay`` s. Its exit code, or None."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cheapcli",
            "--home",
            str(hq.home),
            *args,
            "--passphrase-file",
            str(hq.passphrase_file),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return None


def moment(rng: random.Random, n: int, took: float) -> float:
    """When to kill: anywhere in the run, or (every other time) in its last third,
    where the keys are written; most of the start is the interpreter starting."""
    return rng.uniform(0.0, took * 1.05) if n % 2 else rng.uniform(took * 0.65, took * 1.02)


def run_time(hq: Hq, args: list[str], tmp_path: Path) -> float:
    probe = copy_of(hq, tmp_path / "probe")
    start = time.monotonic()
    assert killed_at(probe, args, 30.0) == 0
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("args", "before", "after"),
    [
        (["hq", "rotate-root", "--yes"], (1, 1), (3, 1)),
        (["hq", "rotate-key"], (1, 1), (2, 2)),
    ],
    ids=["rotate-root", "rotate-key"],
)
def test_hq_key_commands_killed_at_random_moments(
    template: Hq, tmp_path: Path, args: list[str], before: tuple[int, int], after: tuple[int, int]
) -> None:
    ids = state_of(template)[2]
    took = run_time(template, args, tmp_path)
    rng = random.Random(f"hq-key-crash {args[1]}")  # noqa: S311 -- seeded kill moments
    for n in range(KILLS):
        hq = copy_of(template, tmp_path / f"kill-{n}")
        code = killed_at(hq, args, moment(rng, n, took))
        chain, boxes, found = state_of(hq)
        assert found == ids  # nothing imported is ever lost
        assert (chain, boxes) in (before, after), f"kill {n}: {(chain, boxes)}"
        if code == 0:
            assert (chain, boxes) == after
        if (chain, boxes) == before and n % 2 == 0:
            # Killed before it took effect: running it again completes it.
            assert_ok(hq.run(*args))
            assert state_of(hq)[:2] == after


def test_retire_key_killed_at_random_moments(template: Hq, tmp_path: Path) -> None:
    rotated = copy_of(template, tmp_path / "rotated")
    assert_ok(rotated.run("hq", "rotate-key"))
    old = rotated.ok("hq", "keys", "--json").json()["box_keys"][-1]["key_id"]
    args = ["hq", "retire-key", old, "--force"]
    took = run_time(rotated, args, tmp_path)
    ids = state_of(rotated)[2]
    rng = random.Random("hq-key-crash retire-key")  # noqa: S311 -- seeded kill moments
    for n in range(KILLS):
        hq = copy_of(rotated, tmp_path / f"kill-{n}")
        code = killed_at(hq, args, moment(rng, n, took))
        chain, boxes, found = state_of(hq)
        assert found == ids
        # the old key is either still held (retired) or destroyed, never half
        assert (chain, boxes) in ((2, 2), (2, 1)), f"kill {n}: {(chain, boxes)}"
        if code == 0:
            assert boxes == 1
