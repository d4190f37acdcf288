"""A relay killed at any moment restarts with a consistent store.

The live test SIGKILLs the relay in the middle of a 64 MiB upload; the others
build, file by file, what a kill at each step of an upload's life (creation,
PATCH, completion, removal) or of a retention sweep leaves behind, and check
what the startup check (``check_store``) makes of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from sync.relay.datadir import init_relay
from sync.relay.errors import RelaySetupError
from sync.relay.records import ReceiptLog
from sync.relay.recovery import check_store
from sync.relay.settings import RelaySettings
from sync.relay.storage import BlobStore
from tests.relay.helpers import blob_id, create, head, patch, receipt
from tests.relay.server import RelayProcess, running_relay, store_snapshot

MIB = 1024 * 1024


class Uploader(threading.Thread):
    """Sends ``data`` in 1 MiB PATCHes until done or the relay goes away."""

    def __init__(self, relay: RelayProcess, data: bytes) -> None:
        super().__init__(daemon=True)
        self.relay, self.data, self.id = relay, data, blob_id(data)
        self.acknowledged = 0  # the last offset the relay answered
        self.sent = 0  # bytes handed to the socket, answered or not
        self.failed: Exception | None = None

    def run(self) -> None:
        try:
            with self.relay.client(self.relay.upload_token) as http:
                while self.acknowledged < len(self.data):
                    chunk = self.data[self.acknowledged : self.acknowledged + MIB]
                    self.sent = self.acknowledged + len(chunk)
                    answer = patch(http, self.id, self.acknowledged, chunk)
                    assert answer.status_code == 204, answer.text
                    self.acknowledged = int(answer.headers["Upload-Offset"])
        except httpx.HTTPError as e:
            self.failed = e


@pytest.mark.slow
def test_sigkill_mid_upload_then_resume(tmp_path: Path) -> None:
    data = os.urandom(64 * MIB)
    with running_relay(tmp_path) as relay:
        with relay.client(relay.upload_token) as http:
            assert create(http, blob_id(data), len(data)).status_code == 201
        uploader = Uploader(relay, data)
        uploader.start()
        deadline = time.monotonic() + 60
        while uploader.acknowledged < 20 * MIB and time.monotonic() < deadline:
            time.sleep(0.01)
        relay.kill()
        uploader.join(timeout=30)
        assert uploader.failed is not None  # it was cut off mid-way, not finished
        acknowledged, sent = uploader.acknowledged, uploader.sent
        assert 20 * MIB <= acknowledged < len(data)

        relay.restart()
        with relay.client(relay.upload_token) as http:
            where = head(http, uploader.id)
            offset = int(where.headers["Upload-Offset"])
            assert acknowledged <= offset <= sent  # acknowledged bytes survive; nothing invented
            assert where.headers["Upload-Length"] == str(len(data))
            while offset < len(data):
                answer = patch(http, uploader.id, offset, data[offset : offset + 8 * MIB])
                assert answer.status_code == 204, answer.text
                offset = int(answer.headers["Upload-Offset"])
        with relay.client(relay.hq_token) as hq:
            listed = hq.get("/v1/blobs").json()["blobs"]
            assert [(b["id"], b["size"]) for b in listed] == [(uploader.id, len(data))]
            digest = hashlib.sha256()
            with hq.stream("GET", f"/v1/blobs/{uploader.id}") as streamed:
                for block in streamed.iter_bytes():
                    digest.update(block)
            assert digest.hexdigest() == uploader.id
        assert list((relay.data_dir / "uploads").iterdir()) == []


# ---------------------------------------------------------------- the startup check


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "relay"
    init_relay(folder, tls=False)
    return folder


def _upload_folder(data_dir: Path, data_id: str, length: int, data: bytes | None) -> Path:
    folder = data_dir / "uploads" / data_id
    folder.mkdir()
    meta = {"version": 1, "length": length, "sha256": data_id}
    (folder / "upload.json").write_text(json.dumps(meta))
    if data is not None:
        (folder / "data").write_bytes(data)
    return folder


def test_startup_check_repairs_every_crash_state(data_dir: Path) -> None:
    full = os.urandom(5000)
    partial, finished, wrong, doubled, orphan, gone, done = (os.urandom(4000) for _ in range(7))
    # Killed mid-PATCH: resumable at its size.
    _upload_folder(data_dir, blob_id(partial), len(partial), partial[:1500])
    # Killed after the last PATCH's fsync, before the rename into blobs/: finished now.
    _upload_folder(data_dir, blob_id(finished), len(finished), finished)
    # All bytes there but they do not hash to the id: discarded.
    _upload_folder(data_dir, blob_id(wrong), len(wrong), wrong[::-1])
    # More bytes than declared (cannot happen through the API): cut to the length.
    _upload_folder(data_dir, blob_id(doubled), len(doubled), doubled + b"extra")
    # Killed before the data file was created, or lost its description.
    _upload_folder(data_dir, blob_id(orphan), len(orphan), None)
    no_meta = data_dir / "uploads" / blob_id(gone)
    no_meta.mkdir()
    (no_meta / "data").write_bytes(gone[:10])
    # Killed after the rename into blobs/, before the folder was removed.
    (data_dir / "blobs" / blob_id(done)).write_bytes(done)
    _upload_folder(data_dir, blob_id(done), len(done), None)
    # A garbled description.
    garbled = _upload_folder(data_dir, blob_id(full), len(full), full[:10])
    (garbled / "upload.json").write_text("{not json")
    # Temp files, an upload being created, a folder being removed, everywhere.
    (data_dir / ".tmp-0011223344556677").write_bytes(b"half a tokens.json")
    (data_dir / "uploads" / ".new-0011223344556677").mkdir()
    (data_dir / "uploads" / ".trash-8899aabbccddeeff").mkdir()
    (data_dir / "uploads" / ".trash-8899aabbccddeeff" / "data").write_bytes(b"old")
    (data_dir / "blobs" / ".tmp-aa").write_bytes(b"x")
    (data_dir / "receipts" / ".tmp-bb").write_bytes(b"x" * 100)
    (data_dir / "statements" / ".tmp-cc").write_bytes(b"s")

    report = check_store(data_dir)

    assert report.scratch_removed == 6
    assert (report.uploads_resumable, report.uploads_finished, report.uploads_removed) == (1, 2, 5)
    uploads = sorted(p.name for p in (data_dir / "uploads").iterdir())
    assert uploads == [blob_id(partial)]
    assert (data_dir / "uploads" / blob_id(partial) / "data").read_bytes() == partial[:1500]
    blobs = {p.name: p.read_bytes() for p in (data_dir / "blobs").iterdir()}
    assert blobs == {blob_id(finished): finished, blob_id(doubled): doubled, blob_id(done): done}
    for folder in (data_dir, *(data_dir / n for n in ("receipts", "statements"))):
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    # A second run finds nothing more to do.
    before = store_snapshot(data_dir)
    assert check_store(data_dir).repaired == 0
    assert store_snapshot(data_dir) == before


def test_startup_check_removes_what_a_power_cut_leaves_of_unsynced_creations(
    data_dir: Path,
) -> None:
    """POST fsyncs nothing: after a power cut an upload nothing was written to may be
    half there. The check removes it; the client's next POST creates it again."""
    empty_meta, no_data, no_meta = (os.urandom(100) for _ in range(3))
    (data_dir / "uploads" / blob_id(empty_meta)).mkdir()
    (data_dir / "uploads" / blob_id(empty_meta) / "upload.json").write_bytes(b"")
    (data_dir / "uploads" / blob_id(empty_meta) / "data").write_bytes(b"")
    _upload_folder(data_dir, blob_id(no_data), 100, None)
    (data_dir / "uploads" / blob_id(no_meta)).mkdir()
    (data_dir / "uploads" / blob_id(no_meta) / "data").write_bytes(b"")
    building = data_dir / "uploads" / ".new-0123456789abcdef"
    building.mkdir()
    (building / "upload.json").write_bytes(b"")

    report = check_store(data_dir)

    assert (report.scratch_removed, report.uploads_removed, report.uploads_resumable) == (1, 3, 0)
    assert list((data_dir / "uploads").iterdir()) == []
    store = BlobStore(RelaySettings(data_dir=data_dir))
    store.load()
    assert store.state(blob_id(empty_meta)) is None  # HEAD: 404, so the client POSTs
    assert store.create_upload(blob_id(empty_meta), 100).offset == 0


def test_startup_check_recreates_missing_folders(data_dir: Path) -> None:
    (data_dir / "statements").rmdir()
    check_store(data_dir)
    assert (data_dir / "statements").is_dir()
    assert (data_dir / "statements").stat().st_mode & 0o777 == 0o700


def test_a_repaired_store_serves_as_expected(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path)
    partial, finished = os.urandom(3000), os.urandom(3000)
    _upload_folder(relay.data_dir, blob_id(partial), 3000, partial[:1000])
    _upload_folder(relay.data_dir, blob_id(finished), 3000, finished)
    (relay.data_dir / "uploads" / ".new-0123456789abcdef").mkdir()
    try:
        relay.start()
        with relay.client(relay.upload_token) as http:
            assert head(http, blob_id(partial)).headers["Upload-Offset"] == "1000"
            assert patch(http, blob_id(partial), 1000, partial[1000:]).status_code == 204
        with relay.client(relay.hq_token) as hq:
            assert sorted(b["id"] for b in hq.get("/v1/blobs").json()["blobs"]) == sorted(
                [blob_id(partial), blob_id(finished)]
            )
    finally:
        relay.kill()
    assert "2 upload(s) to resume" not in relay.output()
    assert "1 upload(s) to resume; 1 finished, 0 removed, 1 temp(s) removed" in relay.output()


def test_receipts_with_a_gap_stop_the_relay(data_dir: Path) -> None:
    log = ReceiptLog(data_dir / "receipts")
    log.load()
    log.add(receipt(b"a" * 16))
    (data_dir / "receipts" / f"{5:020d}.bin").write_bytes(receipt(b"b" * 16))
    with pytest.raises(RelaySetupError):
        ReceiptLog(data_dir / "receipts").load()


# ---------------------------------------------------------------- retention


def test_sweep_removes_old_blobs_and_stale_uploads(data_dir: Path) -> None:
    check_store(data_dir)
    store = BlobStore(RelaySettings(data_dir=data_dir))
    now = time.time()
    old_blob, new_blob, stale, fresh = (os.urandom(100) for _ in range(4))
    for data in (old_blob, new_blob):
        (data_dir / "blobs" / blob_id(data)).write_bytes(data)
    os.utime(data_dir / "blobs" / blob_id(old_blob), (now - 61 * 86400,) * 2)
    _upload_folder(data_dir, blob_id(stale), 100, stale[:10])
    os.utime(data_dir / "uploads" / blob_id(stale) / "data", (now - 8 * 86400,) * 2)
    _upload_folder(data_dir, blob_id(fresh), 100, fresh[:10])
    assert store.sweep(now) == (1, 1)
    assert sorted(p.name for p in (data_dir / "blobs").iterdir()) == [blob_id(new_blob)]
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == [blob_id(fresh)]
    assert store.sweep(now) == (0, 0)


def test_a_running_relay_sweeps(tmp_path: Path) -> None:
    settings = {"sweep_interval_seconds": 1, "blob_max_age_days": 1}
    with running_relay(tmp_path, settings=settings) as relay:
        with relay.client(relay.upload_token) as http:
            from tests.relay.helpers import upload

            kept, dropped = upload(http, b"kept"), upload(http, b"dropped")
        two_days_ago = time.time() - 2 * 86400
        os.utime(relay.data_dir / "blobs" / dropped, (two_days_ago, two_days_ago))
        deadline = time.monotonic() + 10
        while (relay.data_dir / "blobs" / dropped).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with relay.client(relay.hq_token) as hq:
            assert [b["id"] for b in hq.get("/v1/blobs").json()["blobs"]] == [kept]
        assert "removed 1 old blob(s), 0 stale upload(s)" in relay.output()


# ---------------------------------------------------------------- kills at random moments


class Traffic(threading.Thread):
    """Uploads blobs of 0.5 to 3 MiB in 256 KiB PATCHes, posts receipts, deletes some."""

    def __init__(self, relay: RelayProcess, seed: int) -> None:
        super().__init__(daemon=True)
        self.relay, self.random = relay, random.Random(seed)  # noqa: S311 -- reproducible, not secret
        self.completed: set[str] = set()  # answered 204 with offset = length
        self.deleted: set[str] = set()
        self.stop = False

    def run(self) -> None:
        try:
            with (
                self.relay.client(self.relay.upload_token) as http,
                self.relay.client(self.relay.hq_token) as hq,
            ):
                while not self.stop:
                    data = self.random.randbytes(self.random.randint(MIB // 2, 3 * MIB))
                    data_id = blob_id(data)
                    create(http, data_id, len(data))
                    offset = 0
                    while offset < len(data):
                        answer = patch(http, data_id, offset, data[offset : offset + MIB // 4])
                        offset = int(answer.headers["Upload-Offset"])
                    self.completed.add(data_id)
                    hq.post("/v1/receipts", content=receipt(os.urandom(16)))
                    if self.random.random() < 0.5:
                        self.deleted.add(data_id)  # before: a kill may cut the answer off
                        hq.delete(f"/v1/blobs/{data_id}")
        except (httpx.HTTPError, KeyError):
            return  # the relay was killed


def _check_on_disk(data_dir: Path) -> None:
    for path in data_dir.rglob("*"):
        assert not path.name.startswith("."), path
    for path in (data_dir / "blobs").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    for folder in (data_dir / "uploads").iterdir():
        length = json.loads((folder / "upload.json").read_text())["length"]
        assert (folder / "data").stat().st_size < length
    receipts = sorted((data_dir / "receipts").iterdir())
    assert all(p.stat().st_size % 144 == 0 for p in receipts)


@pytest.mark.slow
def test_kills_at_random_moments_leave_a_consistent_store(tmp_path: Path) -> None:
    chance = random.Random(1234)  # noqa: S311 -- reproducible timing, not a secret
    with running_relay(tmp_path) as relay:
        completed: set[str] = set()
        deleted: set[str] = set()
        for round_number in range(4):
            traffic = Traffic(relay, round_number)
            traffic.start()
            time.sleep(chance.uniform(0.3, 0.8))
            relay.kill()
            traffic.stop = True
            traffic.join(timeout=30)
            completed |= traffic.completed
            deleted |= traffic.deleted
            relay.start()  # the startup check repairs whatever the kill left
            assert relay.stop() == 0
            _check_on_disk(relay.data_dir)
            assert check_store(relay.data_dir).repaired == 0
            stored = {p.name for p in (relay.data_dir / "blobs").iterdir()}
            assert completed - deleted <= stored  # nothing acknowledged was lost
            relay.start()
        assert len(completed) >= 4
