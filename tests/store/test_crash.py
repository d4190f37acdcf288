"""kill -9 during saves: nothing reported as saved is lost, and the home stays sound.

A child process saves testimonies and revisions in a loop and prints
``SAVED <id> <seq> <n> <attachments>`` only after each save returned. The parent
kills it with SIGKILL at random moments (after a random number of saves, or at a
random time: during start-up, WAL recovery, a transaction, an attachment's
encryption), again and again on the same home, and after each kill checks the
whole home: every page authenticates, every history verifies, every reported
save is there with its content, every attachment reads back with its SHA-256.

The seed is random per run and shown in every failure; set FIELDAPP_CRASH_SEED
to replay one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import queue
import random
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home, unlock_home
from tests.store.conftest import CHEAP, PASSPHRASE

ITERATIONS = 30
STARTUP_TIMEOUT = 30.0

# The child builds its testimonies itself: importing the test fixtures would pull in pytest.
CHILD = r"""
import dataclasses, random, sys
from datetime import datetime, timezone
from pathlib import Path

from fieldapp.domain import Place, Testimony
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import unlock_home

home, mode, tag, scratch = Home(Path(sys.argv[1])), sys.argv[2], sys.argv[3], Path(sys.argv[4])
rng = random.Random(tag)
store = FieldStore.open(unlock_home(home, sys.stdin.readline().rstrip("\n")))
ids = [s.id for s in store.page(limit=100_000)]
print("READY", flush=True)
n = 0
while True:
    n += 1
    narrative = f"counter {tag} {n} " + "نص " * rng.randrange(1, 3000)
    attach = []
    if mode == "attach":
        source = scratch / f"{tag}-{n}.bin"
        source.write_bytes(rng.randbytes(rng.randrange(1, 400_000)))
        attach = [source]
    if not ids or rng.random() < 0.4:
        testimony = Testimony(
            recorded_by=store.recorded_by,
            taken_at=datetime(2016, 12, 10, 14, 30, tzinfo=timezone.utc),
            taken_place=Place("Aleppo"),
            language="ar",
            narrative=narrative,
            witness_code=store.new_witness_code(),
        )
        saved = store.create(testimony, attach=attach)
        ids.append(saved.id)
    else:
        current = store.get(rng.choice(ids))
        changed = dataclasses.replace(current.testimony, narrative=narrative)
        saved = store.update(current.id, changed, attach=attach)
    print("SAVED", saved.id, saved.seq, n, len(saved.testimony.attachments), flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Saved:
    """One save the child reported: it must survive every later kill."""

    record_id: str
    seq: int
    narrative_prefix: str
    attachments: int


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        # A kill can cut the last report short; a line without its newline was
        # never completely written, so it promises nothing.
        if line.endswith("\n"):
            lines.put(line[:-1])
    lines.put(None)


class Child:
    """The saving child process and the lines it printed."""

    def __init__(self, home: Home, mode: str, tag: str, scratch: Path) -> None:
        self.tag = tag
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home.root), mode, tag, str(scratch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=scratch,
            start_new_session=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(PASSPHRASE + "\n")
        self.process.stdin.flush()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(
            target=_read_lines, args=(self.process.stdout, self.lines), daemon=True
        )
        self.reader.start()
        self.saved: list[Saved] = []
        self.ready = False

    def _take(self, timeout: float) -> bool:
        """Handle one line; False when the child's output has ended."""
        line = self.lines.get(timeout=timeout)
        if line is None:
            return False
        if line == "READY":
            self.ready = True
        else:
            word, rid, seq, n, attachments = line.split()
            assert word == "SAVED", line
            self.saved.append(Saved(rid, int(seq), f"counter {self.tag} {n} ", int(attachments)))
        return True

    def run_until(self, *, saves: int | None = None, seconds: float | None = None) -> None:
        """Read lines until ``saves`` saves were reported or ``seconds`` after the start."""
        if saves is not None:
            while len(self.saved) < saves:
                assert self._take(STARTUP_TIMEOUT), self.failure()
            return
        assert seconds is not None
        deadline = self.started + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                assert self._take(left), self.failure()
            except queue.Empty:
                break

    def kill(self) -> None:
        """SIGKILL, then collect every line printed before it."""
        self.process.kill()
        self.process.wait(timeout=STARTUP_TIMEOUT)
        self.reader.join(timeout=STARTUP_TIMEOUT)
        while self._take(STARTUP_TIMEOUT):
            pass
        assert self.process.returncode == -9, self.failure()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def failure(self) -> str:
        """The child ended by itself: say why."""
        self.process.kill()
        _, err = self.process.communicate(timeout=STARTUP_TIMEOUT)
        return f"the child ({self.tag}) stopped on its own: {err[-2000:]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_home(home: Home, saved: list[Saved], scratch: Path, seed: str) -> int:
    """Everything a crash may not break; returns the number of attachments read back."""
    with FieldStore.open(unlock_home(home, PASSPHRASE)) as store:
        assert store.integrity_problems() == [], seed
        count = store.verify_all()
        assert count == store.count(), seed
        histories = {}
        for s in saved:
            if s.record_id not in histories:
                histories[s.record_id] = {h.seq: h for h in store.history(s.record_id)}
            history = histories[s.record_id]
            assert store.get(s.record_id).seq >= s.seq, (seed, s)
            assert s.seq in history, (seed, s)
            testimony = history[s.seq].testimony
            assert testimony.narrative.startswith(s.narrative_prefix), (seed, s)
            assert len(testimony.attachments) == s.attachments, (seed, s)
        read = 0
        for summary in store.page(limit=100_000):
            for ref in store.get(summary.id).testimony.attachments:
                plain = io.BytesIO()
                # Raises if the file is missing (StoreIOError), damaged or not the one recorded.
                store.read_attachment(ref.attachment_id, plain)
                assert hashlib.sha256(plain.getvalue()).hexdigest() == ref.sha256, (seed, ref)
                source = scratch / ref.filename
                assert _sha256(source) == ref.sha256, (seed, ref)  # what was captured
                read += 1
    return read


@pytest.mark.slow
def test_sigkill_during_saves_loses_nothing_reported_as_saved(home: Home, tmp_path: Path) -> None:
    seed = os.environ.get("FIELDAPP_CRASH_SEED") or secrets.token_hex(4)
    rng = random.Random(seed)  # noqa: S311 -- kill timing, not a secret
    create_home(home, PASSPHRASE, kdf=CHEAP)
    scratch = tmp_path / "sources"
    scratch.mkdir()
    saved: list[Saved] = []
    attachments_read = 0
    kinds = []
    for i in range(ITERATIONS):
        mode = "attach" if i % 3 == 2 else "plain"
        child = Child(home, mode, f"{seed}-{i}", scratch)
        match i % 4:
            case 0 | 1:
                kinds.append("after saves")
                child.run_until(saves=rng.randint(1, 12))
            case 2:
                kinds.append("in start-up")  # unlock, open, WAL recovery of the last kill
                child.run_until(seconds=rng.uniform(0.0, 0.25))
            case _:
                kinds.append("mid-loop")
                child.run_until(saves=1)
                child.run_until(seconds=time.monotonic() - child.started + rng.uniform(0, 0.1))
        child.kill()
        saved += child.saved
        attachments_read = check_home(home, saved, scratch, f"seed {seed}, kill {i}")
    assert len(saved) > ITERATIONS, f"seed {seed}: too few saves to mean anything"
    assert attachments_read > 0, f"seed {seed}: no attachment was ever saved"
