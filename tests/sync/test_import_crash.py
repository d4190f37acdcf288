"""``hq import`` killed at any moment leaves each bundle fully imported or absent.

A real monitor (in-process, tests/sync/world.py) exports bundles into a folder,
among them a testimony in two bundles and a 2 MiB attachment. The real CLI
then imports the folder in a subprocess, SIGKILLed at seeded random moments,
each time from a fresh copy of the same HQ home. After each kill the archive
must open and pass its integrity checks; every bundle must be wholly there
(its testimony with every revision and every attachment readable and matching
its hash) or wholly absent; the only stray files are the unreferenced
ciphertext of the killed run, which the orphan sweep removes without touching
a referenced file. A re-run then completes, with each testimony exactly once.

The second half injects faults in-process, without timing luck: a failure at
each step of the archive's commit, or while an attachment is written, keeps
nothing of that bundle, not even its attachment files.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fieldapp.domain import ProtectedIdentity
from fieldapp.errors import ExitCode
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import unlock_hq
from fieldapp.store import attachments as store_files
from fieldapp.store.home import Home
from sync.hqimport import import_file
from tests.store.conftest import PASSPHRASE
from tests.sync.world import World, attachment_files, new_world

REPO = Path(__file__).resolve().parents[2]
KILLS = 25
SEED = 20161210


@dataclass(frozen=True)
class Expected:
    """What one bundle brings, from the monitor's own records."""

    bundle_id: bytes
    testimony_id: str
    seq: int  # the last revision it carries
    attachments: dict[str, bytes]  # id -> SHA-256


@dataclass(frozen=True)
class Scene:
    pristine: Path  # an HQ home (closed) with the device enrolled, nothing imported
    usb: Path
    bundles: list[Expected]
    passphrase_file: Path


def _monitor_bundles(world: World, usb: Path) -> list[Expected]:
    m = world.monitor()
    big = os.urandom(2 << 20)
    first = m.add("First statement, later corrected", attachments={"a.jpg": os.urandom(40_000)})
    m.build()
    m.edit(first, "The corrected statement", attachments={"b.jpg": os.urandom(9000)})
    m.add("A long video", attachments={"video.mp4": big}, identity=ProtectedIdentity(name="X"))
    for i in range(3):
        m.add(f"Short statement {i}", attachments={f"{i}.txt": os.urandom(500 + i)})
    m.add("No attachment at all", identity=ProtectedIdentity(name="Y"))
    m.build()
    out = []
    for b in m.store.sync_book.bundles():
        shutil.copy(m.store.home.outbox / b.file_name, usb / b.file_name)
        carried = m.store._query(
            "SELECT id, sha256 FROM attachments WHERE bundle_id = ?", (b.bundle_id,)
        )
        out.append(
            Expected(b.bundle_id, b.testimony_id, b.seq, {i: bytes.fromhex(h) for i, h in carried})
        )
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    root = tmp_path_factory.mktemp("crash")
    usb = root / "usb"
    usb.mkdir()
    world = new_world(root)
    try:
        bundles = _monitor_bundles(world, usb)
    finally:
        world.close()
    passphrase_file = root / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n", "utf-8")
    yield Scene(world.hq_home.root, usb, bundles, passphrase_file)


def _command(home: Path, scene: Scene, folder: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.cheapcli",
        "--home",
        str(home),
        "hq",
        "import",
        str(folder or scene.usb),
        "--passphrase-file",
        str(scene.passphrase_file),
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FIELDAPP_HOME"}
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(home: Path, scene: Scene, folder: Path | None = None) -> float:
    """Import the folder to completion; returns how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        _command(home, scene, folder),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr.decode(errors="replace")
    return time.monotonic() - started


def _killed_at(home: Path, scene: Scene, delay: float, *, after_lines: int = 0) -> None:
    """Start an import; SIGKILL it ``delay`` seconds after it printed ``after_lines`` lines.

    Each imported bundle prints one line, so ``after_lines`` puts the kill inside
    the import of a given bundle however long starting the interpreter takes.
    """
    child = subprocess.Popen(
        _command(home, scene),
        cwd=REPO,
        env={**_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert child.stdout is not None
    watchdog = threading.Timer(60, child.kill)  # a hung child fails the test, never blocks it
    watchdog.start()
    try:
        for _ in range(after_lines):
            if not child.stdout.readline():
                break
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        watchdog.cancel()
        child.stdout.close()
    assert child.returncode in (ExitCode.OK, -signal.SIGKILL)


def _fresh_copy(scene: Scene, target: Path) -> Path:
    shutil.copytree(scene.pristine, target, symlinks=True)
    return target


class _Sha256:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.hash.update(data)
        return len(data)


def _stored_names(archive: HqArchive) -> set[str]:
    return {str(r[0]) for r in archive._query("SELECT stored_name FROM attachments")}


def check_archive(archive: HqArchive, bundles: list[Expected]) -> set[bytes]:
    """Every bundle wholly imported or wholly absent; returns the ids of those imported."""
    assert archive.integrity_problems() == []
    held_bundles = {bytes(r[0]) for r in archive._query("SELECT bundle_id FROM bundles")}
    assert held_bundles <= {b.bundle_id for b in bundles}
    imported = [b for b in bundles if b.bundle_id in held_bundles]
    by_testimony: dict[str, int] = {}
    for b in imported:
        by_testimony[b.testimony_id] = max(by_testimony.get(b.testimony_id, 0), b.seq)
    assert sorted(archive.all_ids()) == sorted(by_testimony)
    for rid, seq in by_testimony.items():
        assert [r.seq for r in archive.history(rid)] == list(range(1, seq + 1))
        assert archive.summary(rid).seq == seq
        assert {bytes(b.bundle_id) for b in archive.bundles_of(rid)} == {
            b.bundle_id for b in imported if b.testimony_id == rid
        }
    expected_attachments = {aid: sha for b in imported for aid, sha in b.attachments.items()}
    held = {
        str(r[0]): (bytes(r[1]), bytes(r[2]))
        for r in archive._query("SELECT id, sha256, bundle_id FROM attachments")
    }
    assert {aid: sha for aid, (sha, _) in held.items()} == expected_attachments
    for b in imported:
        for aid in b.attachments:
            assert held[aid][1] == b.bundle_id
            sink = _Sha256()
            archive.read_attachment(aid, sink)  # type: ignore[arg-type]
            assert sink.hash.digest() == b.attachments[aid]
    return held_bundles


def _check_after_kill(home: Home, bundles: list[Expected], context: str) -> bool:
    """The checks after a kill; returns whether it interrupted an import half-way."""
    with HqArchive.open(unlock_hq(home, PASSPHRASE)) as archive:
        try:
            imported = check_archive(archive, bundles)
            referenced = _stored_names(archive)
            on_disk = attachment_files(home)
            assert referenced <= on_disk, "a referenced attachment file is missing"
            strays = on_disk - referenced
            removed = archive.remove_orphaned_attachments(grace_seconds=0)
            assert removed == len(strays)
            assert attachment_files(home) == referenced
            check_archive(archive, bundles)  # nothing referenced went with the strays
        except AssertionError as e:
            raise AssertionError(f"{context}: {e}") from e
    return bool(strays) or 0 < len(imported) < len(bundles)


def test_sigkill_during_hq_import(scene: Scene, tmp_path: Path) -> None:
    # One run to completion: its duration bounds the kill points, its end state is the goal.
    reference = _fresh_copy(scene, tmp_path / "reference")
    full = _run(reference, scene)
    with HqArchive.open(unlock_hq(Home(reference), PASSPHRASE)) as archive:
        assert check_archive(archive, scene.bundles) == {b.bundle_id for b in scene.bundles}
        assert attachment_files(Home(reference)) == _stored_names(archive)
    empty = tmp_path / "empty"
    empty.mkdir()
    startup = _run(reference, scene, empty)  # start, unlock, open: no bundle to import
    work = max(full - startup, 0.01)
    rng = random.Random(SEED)  # noqa: S311 -- reproducible kill points, not secrets
    # Half the kills at a time since the start (from during start-up to the end),
    # half a little after the n-th bundle was reported imported.
    points = [(rng.uniform(startup / 2, full), 0) for _ in range(KILLS // 2)]
    points += [
        (rng.uniform(0, 2 * work / len(scene.bundles)), rng.randrange(1, len(scene.bundles)))
        for _ in range(KILLS - KILLS // 2)
    ]
    halfway = 0
    for index, (delay, lines) in enumerate(points):
        home = Home(_fresh_copy(scene, tmp_path / f"kill-{index}"))
        _killed_at(home.root, scene, delay, after_lines=lines)
        context = f"killed {delay:.3f}s after {lines} bundle(s) (a full run takes {full:.3f}s)"
        halfway += _check_after_kill(home, scene.bundles, context)
        _run(home.root, scene)
        with HqArchive.open(unlock_hq(home, PASSPHRASE)) as archive:
            assert check_archive(archive, scene.bundles) == {b.bundle_id for b in scene.bundles}
            assert archive.count() == len({b.testimony_id for b in scene.bundles})
            assert attachment_files(home) == _stored_names(archive)
        shutil.rmtree(home.root)
    assert halfway, "no kill landed inside an import: the test proved nothing"


# ------------------------------------------------------------------ faults without timing luck


class Injected(OSError):
    """The fault the tests inject (a disk error, say)."""


def _fail_after(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, then the fault: the step ran inside the transaction, then it failed."""

    def failing(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise Injected

    return failing


COMMIT_STEPS = ["_bind_device", "_add_revisions", "_write_current", "_add_attachments"]


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[World, list[Path]]]:
    """A world whose monitor has three bundles ready (attachments, an identity, an edit)."""
    world = new_world(tmp_path)
    m = world.monitor()
    rid = m.add("first", attachments={"a.jpg": os.urandom(150_000), "b.txt": b"note"})
    paths = m.build()
    m.edit(rid, "second", attachments={"c.jpg": os.urandom(3000)})
    m.add("third", attachments={"d.jpg": os.urandom(70_000)}, identity=ProtectedIdentity(name="Z"))
    paths += m.build()
    try:
        yield world, paths
    finally:
        world.close()


@pytest.mark.parametrize("step", COMMIT_STEPS)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_commit_failing_midway_keeps_nothing(
    loaded: tuple[World, list[Path]], monkeypatch: pytest.MonkeyPatch, step: str, which: int
) -> None:
    world, paths = loaded
    for earlier in paths[:which]:
        assert import_file(world.archive, earlier).result is not None
    before = world.snapshot()
    with monkeypatch.context() as patch:
        patch.setattr(HqArchive, step, _fail_after(getattr(HqArchive, step)))
        with pytest.raises(Injected):
            import_file(world.archive, paths[which])
        assert world.snapshot() == before
    # The archive is sound, the fault left nothing behind, and the bundle imports cleanly.
    assert world.reopen().integrity_problems() == []
    assert world.archive.remove_orphaned_attachments(grace_seconds=0) == 0
    assert import_file(world.archive, paths[which]).result is not None
    assert attachment_files(world.hq_home) == _stored_names(world.archive)


@pytest.mark.parametrize("at", [1, 2])
def test_an_attachment_write_failing_keeps_nothing(
    loaded: tuple[World, list[Path]], monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    """The disk fills while the ``at``-th attachment of a bundle is written."""
    world, paths = loaded
    before = world.snapshot()
    calls = 0
    real_finish = store_files.IncomingFile.finish

    def finish(self: store_files.IncomingFile) -> None:
        nonlocal calls
        calls += 1
        if calls == at:
            raise Injected
        real_finish(self)

    with monkeypatch.context() as patch:
        patch.setattr(store_files.IncomingFile, "finish", finish)
        with pytest.raises(Injected):
            import_file(world.archive, paths[0])
    assert world.snapshot() == before
    assert world.quarantine_notes() == {}  # HQ's own fault: the bundle is not to blame
    assert import_file(world.archive, paths[0]).result is not None
