"""kill -9 during a passphrase change: the home must open with the old or the new one.

A child process runs ``change_passphrase_file(old -> new)`` and is SIGKILLed, (a) by
the fault hook at each named step of the write, and (b) by this process after a
random delay. After every kill the keyslot file must load, open with exactly one of
the two passphrases, and hold the original master key.

SIGKILL shows atomicity against a process crash. It cannot show durability against a
power cut (the page cache survives a kill); the fsyncs are there for that.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto.errors import WrongSecret
from crypto.kdf import KdfParams, MasterKey
from crypto.keyfile import FAULT_STEPS, change_passphrase_file, load_keyslots, save_keyslots
from crypto.keyslot import create_keyslots, unlock
from tests.conftest import CHEAP_KDF
from tests.crashchild import finish, go, wait_ready

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
OLD, NEW = "old passphrase", "new passphrase"
# The new slot costs a few milliseconds, so random kills land before, during and
# after the write rather than all before or all after it.
NEW_KDF = KdfParams(ops=1, mem=2 * 1024 * 1024)

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from crypto import keyfile
from crypto.kdf import KdfParams

cfg = json.loads(sys.argv[1])

def hook(step):
    sys.stdout.write(step + "\n")
    sys.stdout.flush()
    if step == cfg["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)

keyfile.fault_hook = hook
print("ready", flush=True)
sys.stdin.readline()
params = KdfParams(**cfg["params"])
floor = KdfParams(**cfg["floor"])
path = Path(cfg["path"])
keyfile.change_passphrase_file(path, cfg["old"], cfg["new"], params=params, floor=floor)
print("done", flush=True)
"""


def _home(tmp_path: Path, name: str, master: MasterKey) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "keyslots"
    save_keyslots(path, create_keyslots(master, OLD, params=CHEAP_KDF, floor=CHEAP_KDF))
    return path


def _start(path: Path, kill_at: str | None) -> subprocess.Popen[str]:
    cfg = {
        "path": str(path),
        "old": OLD,
        "new": NEW,
        "kill_at": kill_at,
        "params": {"ops": NEW_KDF.ops, "mem": NEW_KDF.mem},
        "floor": {"ops": CHEAP_KDF.ops, "mem": CHEAP_KDF.mem},
    }
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    return wait_ready(child)


def _opens_with(path: Path, master: MasterKey) -> str:
    """Which passphrase opens the file now; fails the test unless exactly one does."""
    ks = load_keyslots(path)
    opened = []
    for secret in (OLD, NEW):
        try:
            key, _ = unlock(ks, secret)
        except WrongSecret:
            key = None
        if key is not None:
            assert key == master, "the master key changed"
            opened.append(secret)
    assert len(opened) == 1, f"opens with {opened}, expected exactly one of old/new"
    return opened[0]


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_kill_at_each_step(tmp_path: Path, step: str) -> None:
    master = MasterKey.generate()
    path = _home(tmp_path, "home", master)
    child = _start(path, kill_at=step)
    go(child)
    code, steps = finish(child)
    assert code == -signal.SIGKILL
    assert steps == list(FAULT_STEPS[: FAULT_STEPS.index(step) + 1])
    expected = OLD if FAULT_STEPS.index(step) < FAULT_STEPS.index("renamed") else NEW
    assert _opens_with(path, master) == expected
    # The next write sweeps away whatever temp file the crash left behind.
    change_passphrase_file(path, expected, "third", params=CHEAP_KDF, floor=CHEAP_KDF)
    assert [p.name for p in path.parent.iterdir() if ".tmp-" in p.name] == []
    assert unlock(load_keyslots(path), "third")[0] == master


def test_kill_at_random_times(tmp_path: Path) -> None:
    master = MasterKey.generate()
    # Calibrate: how long does the whole change take after "go" on this machine?
    path = _home(tmp_path, "calibrate", master)
    child = _start(path, kill_at=None)
    started = time.perf_counter()
    go(child)
    if child.stdout is None:
        raise RuntimeError("no stdout")
    while (line := child.stdout.readline()) not in ("done\n", ""):
        pass
    span = time.perf_counter() - started
    code, _ = finish(child)
    assert code == 0
    assert line == "done\n"
    assert _opens_with(path, master) == NEW

    rng = random.Random(20240601)  # noqa: S311 - kill timing, not a secret
    outcomes: dict[str, int] = {}
    for run in range(60):
        path = _home(tmp_path, f"run{run}", master)
        child = _start(path, kill_at=None)
        delay = rng.uniform(0, 1.1 * span)
        go(child)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        _, steps = finish(child)
        # The hook prints each step before the write goes on, so the last line read
        # bounds how far the child got: killed after printing "written" it had not
        # renamed yet; after "fsynced" it may or may not have.
        last = steps[-1] if steps else "before-write"
        opened = _opens_with(path, master)
        outcomes[f"{last}->{opened}"] = outcomes.get(f"{last}->{opened}", 0) + 1
        if last in ("before-write", "created", "written"):
            assert opened == OLD, f"killed after {last!r}: only the old file may exist"
        if last in ("renamed", "dir-fsynced", "done"):
            assert opened == NEW, f"killed after {last!r}: the change was committed"
    print(f"\nchange took {span * 1000:.1f} ms; outcomes: {sorted(outcomes.items())}")
