"""The relay's store in-process: fsyncs per upload, what the lock covers, the listing index.

These drive ``BlobStore`` directly (no HTTP) so they can count fsyncs, watch the
lock and step between a rename and its folder fsync.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.relay import fsio
from sync.relay.datadir import init_relay
from sync.relay.recovery import check_store
from sync.relay.settings import RelaySettings
from sync.relay.storage import BlobStore
from tests.relay.helpers import blob_id

MIB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    folder = tmp_path / "relay"
    init_relay(folder, tls=False)
    check_store(folder)
    blobs = BlobStore(RelaySettings(data_dir=folder))
    blobs.load()
    return blobs


class Fsyncs:
    """Records every fsync the store makes: what it was of, and whether the lock was held."""

    def __init__(self, store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.calls: list[tuple[str, bool]] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            self.calls.append((self._label(fd), store._lock.locked()))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def _label(self, fd: int) -> str:
        """``uploads/<id>/data``, ``uploads/``, ``blobs/``...: what ``fd`` is open on."""
        target = Path(f"/proc/self/fd/{fd}").readlink()
        parts = target.relative_to(self.store.settings.data_dir).parts
        shown = ["<id>" if len(part) == 64 else part for part in parts]
        return "/".join(shown) + ("/" if target.is_dir() else "")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    @property
    def under_lock(self) -> list[str]:
        return [name for name, locked in self.calls if locked]


def _upload(store: BlobStore, data: bytes, chunk: int | None = None) -> str:
    data_id = blob_id(data)
    store.create_upload(data_id, len(data))
    offset = 0
    while offset < len(data):
        writer = store.begin_patch(data_id, offset)
        try:
            writer.write(data[offset : offset + (chunk or len(data))])
            writer.commit()
            if writer.offset == writer.length:
                assert store.finish(writer)
            offset = writer.offset
        finally:
            writer.close()
    return data_id


def test_a_small_upload_fsyncs_its_data_and_blobs_only_and_none_under_the_lock(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = Fsyncs(store, monkeypatch)
    data = os.urandom(4096)
    data_id = _upload(store, data)
    assert fsyncs.names == ["uploads/<id>/data", "blobs/"]
    assert fsyncs.under_lock == []
    assert (store.blobs / data_id).read_bytes() == data
    assert list(store.uploads.iterdir()) == []  # the folder went to the trash, then away


def test_the_first_partial_commit_makes_the_upload_durable(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = Fsyncs(store, monkeypatch)
    data = os.urandom(3 * 1000)
    _upload(store, data, chunk=1000)
    assert fsyncs.names == [
        # first PATCH: its bytes, then the folder it lives in (created without any fsync)
        "uploads/<id>/data",
        "uploads/<id>/upload.json",
        "uploads/<id>/",
        "uploads/",
        # second PATCH: its bytes only
        "uploads/<id>/data",
        # last PATCH: its bytes, then blobs/ once the data is renamed there
        "uploads/<id>/data",
        "blobs/",
    ]
    assert fsyncs.under_lock == []


def test_an_upload_found_at_startup_is_durable_already(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    init_relay(folder, tls=False)
    check_store(folder)
    first = BlobStore(RelaySettings(data_dir=folder))
    first.load()
    data = os.urandom(5000)
    data_id = blob_id(data)
    first.create_upload(data_id, len(data))  # not durable: the process "dies" here
    calls: list[str] = []
    real_fsync_file, real_fsync_dir = fsio.fsync_file, fsio.fsync_dir

    def fsync_file(path: Path) -> None:
        calls.append(str(path.relative_to(folder)))
        real_fsync_file(path)

    def fsync_dir(path: Path) -> None:
        calls.append(str(path.relative_to(folder)) + "/")
        real_fsync_dir(path)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("sync.relay.recovery.fsync_file", fsync_file)
        patched.setattr("sync.relay.recovery.fsync_dir", fsync_dir)
        report = check_store(folder)
    assert report.uploads_resumable == 1
    upload = f"uploads/{data_id}"
    assert calls == [f"{upload}/data", f"{upload}/upload.json", f"{upload}/", "uploads/", "blobs/"]
    second = BlobStore(RelaySettings(data_dir=folder))
    second.load()
    writer = second.begin_patch(data_id, 0)
    try:
        assert writer.durable  # its first partial commit need not fsync the folder again
    finally:
        writer.close()


def test_an_upload_is_built_outside_the_lock(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []
    real_create = fsio.create_file

    def create_file(path: Path, data: bytes, *, sync: bool = True) -> None:
        seen.append((path.name, store._lock.locked()))
        real_create(path, data, sync=sync)

    monkeypatch.setattr("sync.relay.storage.create_file", create_file)
    store.create_upload("a" * 64, 10)
    assert seen == [("upload.json", False), ("data", False)]
    assert store.create_upload("a" * 64, 10).offset == 0  # idempotent: nothing built again
    assert len(seen) == 2


def test_two_posts_of_one_upload_at_once_make_one_upload(store: BlobStore) -> None:
    data = os.urandom(1000)
    data_id = blob_id(data)
    start = threading.Barrier(8)
    answers: list[Any] = []

    def post() -> None:
        start.wait()
        answers.append(store.create_upload(data_id, len(data)))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {(a.offset, a.length, a.complete) for a in answers} == {(0, 1000, False)}
    assert [p.name for p in store.uploads.iterdir()] == [data_id]  # no temp left behind
    assert store.pending_ids() == [data_id]


def test_a_completed_blob_is_hidden_until_blobs_is_fsynced(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2000)
    data_id = blob_id(data)
    store.create_upload(data_id, len(data))
    writer = store.begin_patch(data_id, 0)
    writer.write(data)
    writer.commit()
    in_fsync, go_on = threading.Event(), threading.Event()
    real_fsync_dir = fsio.fsync_dir

    def slow_fsync_dir(path: Path) -> None:
        if path == store.blobs:
            in_fsync.set()
            go_on.wait(10)
        real_fsync_dir(path)

    monkeypatch.setattr("sync.relay.storage.fsync_dir", slow_fsync_dir)
    finished: list[bool] = []
    finisher = threading.Thread(target=lambda: finished.append(store.finish(writer)))
    finisher.start()
    assert in_fsync.wait(10)
    # The blob is in blobs/ already, but nobody may see it complete before it is durable.
    assert (store.blobs / data_id).exists()
    assert store.list_blobs("", 10) == ([], False)
    states: list[Any] = []
    asker = threading.Thread(target=lambda: states.append(store.state(data_id)))
    asker.start()
    asker.join(0.3)
    assert asker.is_alive()  # HEAD waits
    assert not store._lock.locked()  # ...without holding the lock: others go on
    other = os.urandom(100)
    assert store.create_upload(blob_id(other), 100).offset == 0
    go_on.set()
    finisher.join(10)
    asker.join(10)
    writer.close()
    assert finished == [True]
    assert [(s.offset, s.length, s.complete) for s in states] == [(2000, 2000, True)]
    assert [b.id for b in store.list_blobs("", 10)[0]] == [data_id]


def test_head_answers_the_committed_offset_of_a_running_patch(store: BlobStore) -> None:
    data = os.urandom(3 * MIB)
    data_id = blob_id(data)
    store.create_upload(data_id, len(data))
    writer = store.begin_patch(data_id, 0)
    try:
        writer.write(data[:MIB])
        writer.commit()
        writer.write(data[MIB : 2 * MIB])  # written, not fsynced yet
        assert (store.uploads / data_id / "data").stat().st_size == 2 * MIB
        state = store.state(data_id)
        assert state is not None
        assert state.offset == MIB
        assert store.create_upload(data_id, len(data)).offset == MIB
    finally:
        writer.close()  # an error mid-way: what was not committed is cut off again
    assert (store.uploads / data_id / "data").stat().st_size == MIB
    again = store.state(data_id)
    assert again is not None
    assert again.offset == MIB


# ---------------------------------------------------------------- the listing index


def _fake_blobs(store: BlobStore, count: int, seed: int) -> list[str]:
    chance = random.Random(seed)  # noqa: S311 -- reproducible ids, not secrets
    ids = sorted({chance.randbytes(32).hex() for _ in range(count)})
    for name in ids:
        (store.blobs / name).write_bytes(b"")
    return ids


def _all_pages(store: BlobStore, limit: int, between: Callable[[str], None]) -> Iterator[str]:
    """Every id, page by page; ``between(cursor)`` runs after each page that says more."""
    after = ""
    while True:
        found, more = store.list_blobs(after, limit)
        assert len(found) <= limit
        yield from (b.id for b in found)
        if not more:
            return
        assert found, "a page that says more must name its last id"
        after = found[-1].id
        between(after)


def test_listing_pages_through_many_blobs_with_deletes_and_new_ones(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    init_relay(folder, tls=False)
    store = BlobStore(RelaySettings(data_dir=folder))
    ids = _fake_blobs(store, 5000, seed=1)
    check_store(folder)
    store.load()
    chance = random.Random(2)  # noqa: S311 -- reproducible, not secret
    deleted: set[str] = set()
    deleted_ahead: set[str] = set()
    added_ahead: set[str] = set()

    def between(cursor: str) -> None:
        # HQ deletes what it imported (behind the cursor) and some blobs ahead;
        # new blobs complete, ahead of the cursor or behind it.
        behind = [i for i in ids if i <= cursor and i not in deleted]
        ahead = [i for i in ids if i > cursor and i not in deleted]
        for name in chance.sample(behind, min(50, len(behind))):
            store.delete_blob(name)
            deleted.add(name)
        for name in chance.sample(ahead, min(20, len(ahead))):
            store.delete_blob(name)
            deleted.add(name)
            deleted_ahead.add(name)
        for _ in range(5):
            new = _upload(store, chance.randbytes(64))
            if new > cursor:
                added_ahead.add(new)

    listed = list(_all_pages(store, 1000, between))
    assert listed == sorted(set(listed))  # in order, never twice
    assert set(ids) - deleted <= set(listed)  # every blob there all along is listed
    assert deleted_ahead
    assert deleted_ahead.isdisjoint(listed)  # deleted before their page: never shown
    assert added_ahead
    assert added_ahead <= set(listed)  # completed before their page: shown
    # What is listed is what is on disk, in order, afterwards as well.
    on_disk = sorted(p.name for p in store.blobs.iterdir())
    assert [b.id for b in store.list_blobs("", 100_000)[0]] == on_disk


def test_listing_skips_a_blob_gone_behind_its_back_and_fills_the_page(store: BlobStore) -> None:
    ids = _fake_blobs(store, 30, seed=3)
    store.load()
    (store.blobs / ids[3]).unlink()  # not through the store: the index still names it
    found, more = store.list_blobs("", 10)
    assert [b.id for b in found] == ids[:3] + ids[4:11]
    assert more is True
    found, more = store.list_blobs(ids[-2], 10)
    assert ([b.id for b in found], more) == ([ids[-1]], False)
    assert store.list_blobs(ids[-1], 10) == ([], False)


def test_the_index_follows_completions_deletes_and_the_sweep(store: BlobStore) -> None:
    kept = _upload(store, b"kept")
    old = _upload(store, b"old")
    gone = _upload(store, b"gone")
    store.delete_blob(gone)
    store.delete_blob(gone)  # idempotent
    os.utime(store.blobs / old, (1.0, 1.0))
    assert store.sweep(10 * 365 * 86400.0) == (1, 0)
    assert [b.id for b in store.list_blobs("", 10)[0]] == [kept]


def test_a_hash_mismatch_leaves_nothing(store: BlobStore) -> None:
    claimed = blob_id(b"claimed")
    store.create_upload(claimed, 5)
    writer = store.begin_patch(claimed, 0)
    try:
        writer.write(b"other")
        writer.commit()
        assert not store.finish(writer)
    finally:
        writer.close()
    assert list(store.uploads.iterdir()) == []
    assert store.pending_ids() == []
    assert store.state(claimed) is None
    assert store.list_blobs("", 10) == ([], False)
