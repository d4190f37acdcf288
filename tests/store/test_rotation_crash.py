"""Crashes during ``rotate_device``: the home always opens, signs with the key its
recorded chain leads to, and keeps every record.

A child process rotates the device key of a real home and is SIGKILLed (a) by the
fault hooks at each named step (the rotation's own steps and the key file write's),
and (b) by this process after a seeded random delay. The same steps are also made
to raise an exception in-process (a failure the process survives). After each,
the home is unlocked and opened as the next fieldapp run would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto import keyfile
from crypto.errors import KeyFileError
from crypto.keys import DeviceVerifyKey
from crypto.statements import DeviceTrust, verify_device_chain
from fieldapp.store import rotation
from fieldapp.store.home import Home
from fieldapp.store.rotation import rotate_device, rotations
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home, unlock_home
from tests.crashchild import finish, go, wait_ready
from tests.store.conftest import CHEAP, PASSPHRASE, Clock, make_testimony

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent.parent
STEPS = [f"key:{s}" for s in keyfile.FAULT_STEPS] + [f"rotation:{s}" for s in rotation.FAULT_STEPS]
# The rotation's steps in the order a run reaches them.
ORDER = ["rotation:recorded", *STEPS[: len(keyfile.FAULT_STEPS)], *STEPS[-2:]]
assert sorted(ORDER) == sorted(STEPS)

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from crypto import keyfile
from crypto.errors import KeyFileError
from fieldapp.store import rotation
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import unlock_home

cfg = json.loads(sys.argv[1])

def hook(prefix):
    def called(step):
        name = prefix + step
        sys.stdout.write(name + "\n")
        sys.stdout.flush()
        if name == cfg["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)
    return called

keyfile.fault_hook = hook("key:")
rotation.fault_hook = hook("rotation:")
store = FieldStore.open(unlock_home(Home(Path(cfg["home"])), cfg["passphrase"]))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(cfg["repeat"]):
    rotation.rotate_device(store)
print("done", flush=True)
"""


class Before:
    """What the home held before the rotation that is interrupted."""

    def __init__(self, store: FieldStore) -> None:
        self.enrolled = first_key(store)
        self.key = store.device_key
        self.version = len(rotations(store))
        self.ids = sorted(s.id for s in store.page())
        self.histories = {rid: store.history(rid) for rid in self.ids}


def first_key(store: FieldStore) -> DeviceVerifyKey:
    done = rotations(store)
    return done[0].old if done else store.device_key


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """A home with two testimonies (one with an attachment), rotated once already."""
    home = Home(tmp_path / "home")
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    with FieldStore.open(unlocked, clock=Clock()) as store:
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(os.urandom(20_000))
        store.create(make_testimony(store, "before any rotation"), attach=[photo])
        rotate_device(store)
        store.create(make_testimony(store, "after the first rotation"))
    yield home


def before(home: Home) -> Before:
    with FieldStore.open(unlock_home(home, PASSPHRASE), clock=Clock()) as store:
        return Before(store)


def check_home(home: Home, was: Before, *, most: int = 1) -> str:
    """The home opens and is consistent; returns "old" or "new" for the key it signs with.

    ``most``: how many rotations the interrupted run may have finished.
    """
    unlocked = unlock_home(home, PASSPHRASE)
    with FieldStore.open(unlocked, clock=Clock()) as store:
        pending = store._query("SELECT count(*) FROM device_rotations WHERE state = 'pending'")
        assert pending[0][0] == 0
        secrets = store._query("SELECT count(*) FROM device_rotations WHERE new_secret IS NOT NULL")
        assert secrets[0][0] == 0
        done = rotations(store)
        assert was.version <= len(done) <= was.version + most
        which = "old" if len(done) == was.version else "new"
        assert (store.device_key == was.key) == (which == "old")
        # The statements lead from the enrolled key to exactly the key in the file.
        trust = verify_device_chain(
            DeviceTrust.anchor(was.enrolled), [r.statement for r in done], 0
        )
        assert trust == DeviceTrust(store.device_key, len(done))
        assert store.integrity_problems() == []
        assert sorted(s.id for s in store.page()) == was.ids
        assert store.verify_all() == len(was.ids)
        for rid, history in was.histories.items():
            assert store.history(rid) == history
        # Saves sign with the key in the file, and name it.
        saved = store.create(make_testimony(store, "after the crash"))
        assert store.revisions(saved.id)[-1].device == store.device_key
        assert saved.testimony.recorded_by == store.device_key.key_id.hex()
        again = rotate_device(store)  # and the next rotation goes on from here
        assert again.version == len(done) + 1
    return which


def start(home: Home, kill_at: str | None, repeat: int = 1) -> subprocess.Popen[str]:
    cfg = {"home": str(home.root), "passphrase": PASSPHRASE, "kill_at": kill_at, "repeat": repeat}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    return wait_ready(child)


@pytest.mark.parametrize("step", ORDER)
def test_kill_at_each_step(home: Home, step: str) -> None:
    was = before(home)
    child = start(home, kill_at=step)
    go(child)
    code, steps = finish(child)
    assert code == -signal.SIGKILL
    assert steps == ORDER[: ORDER.index(step) + 1]
    # Before the key file's rename the old key is in force, from it on the new one.
    expected = "old" if ORDER.index(step) < ORDER.index("key:renamed") else "new"
    assert check_home(home, was) == expected


@pytest.mark.parametrize("seed", range(6))
def test_kill_at_a_random_moment(home: Home, seed: int) -> None:
    # A rotation takes a few milliseconds: the child rotates again and again, so the
    # kill lands somewhere inside one of them, at a different point for each seed.
    was = before(home)
    child = start(home, kill_at=None, repeat=40)
    go(child)
    time.sleep(random.Random(seed).uniform(0.01, 0.1))  # noqa: S311 -- a test's timing
    child.send_signal(signal.SIGKILL)
    code, steps = finish(child)
    assert code == -signal.SIGKILL, "the child finished before the kill"
    which = check_home(home, was, most=40)
    if "key:renamed" in steps:
        assert which == "new"
    elif "key:fsynced" not in steps:
        assert which == "old"
    # else the kill fell between the fsync and the rename's report: either is right.


class Fault(Exception):
    pass


@pytest.mark.parametrize("step", ORDER)
def test_a_failure_at_each_step(home: Home, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process survives the failure: the open store and the next run agree."""
    was = before(home)
    prefix, name = step.split(":")

    def fail(reached: str) -> None:
        if reached == name:
            raise Fault

    monkeypatch.setattr(keyfile if prefix == "key" else rotation, "fault_hook", fail)
    store = FieldStore.open(unlock_home(home, PASSPHRASE), clock=Clock())
    try:
        # The key file's write reports its own KeyFileError, whatever failed inside it.
        with pytest.raises(KeyFileError if prefix == "key" else Fault):
            rotate_device(store)
        monkeypatch.undo()
        in_file = unlock_home(home, PASSPHRASE).device.public_key
        if prefix == "key" or name == "done":
            # Handled where it failed: the open store signs with the key in the file.
            assert store.device_key == in_file
    finally:
        store.close()
    expected = "old" if ORDER.index(step) < ORDER.index("key:renamed") else "new"
    assert check_home(home, was) == expected
