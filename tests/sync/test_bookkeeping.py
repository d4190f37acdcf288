"""The monitor's sync bookkeeping never marks confirmed, or removes, what HQ does not hold.

Each test is a scenario from the security review of the USB chain: a correction
after sending, an edit while a bundle is sealing, a lost first bundle carrying
the only copy of an attachment, two builds at once, panic, a long HQ import,
receipts of other devices, an earlier witness, expired HQ keys.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from crypto.bundle import SealedBundle
from crypto.keys import BoxPublicKey
from fieldapp.domain import ProtectedIdentity, Status
from fieldapp.hq.custody import custody_report
from fieldapp.hq.errors import AttachmentVanished
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import panic, unlock_home
from sync.hqimport import import_file
from sync.outbox import HqKeysExpired, build_bundles, outbox_path, remove_unrecorded
from sync.usb import export_bundles, export_receipts, import_receipts
from tests.store.conftest import PASSPHRASE
from tests.sync.world import Monitor, World, now


def _receipts_back(
    world: World, monitor: Monitor, folder: Path, *, device: str | None = None
) -> int:
    folder.mkdir(exist_ok=True)
    export_receipts(world.archive, folder, device=device)
    return import_receipts(monitor.store, folder).confirmed


def test_a_correction_after_sending_reopens_and_is_never_confirmed_by_the_old_receipt(
    world: World, tmp_path: Path
) -> None:
    m = world.monitor()
    rid = m.add("ORIGINAL narrative")
    [path] = m.build()
    assert m.store.get(rid).testimony.status is Status.SENT
    current = m.store.get(rid).testimony
    # What `record edit --narrative-file` does: the status it passes is the current one.
    m.store.update(rid, dataclasses.replace(current, narrative="CORRECTION narrative"))
    assert m.store.get(rid).testimony.status is Status.DRAFT
    m.store.set_remove_confirmed(True)
    assert import_file(world.archive, path).result is not None
    assert _receipts_back(world, m, tmp_path / "back") == 1
    kept = m.store.get(rid)  # not purged: the correction never reached HQ
    assert kept.testimony.narrative == "CORRECTION narrative"
    assert kept.testimony.status is Status.DRAFT
    # Marked ready, the correction travels, and only then is it confirmed.
    m.store.set_status(rid, Status.READY)
    [second] = m.build()
    import_file(world.archive, second)
    assert _receipts_back(world, m, tmp_path / "back2") == 1
    assert m.store.is_purged(rid)
    assert world.archive.testimony(rid)[1].narrative == "CORRECTION narrative"


def test_a_correction_may_go_straight_to_ready(world: World) -> None:
    m = world.monitor()
    rid = m.add("first")
    m.build()
    current = m.store.get(rid).testimony
    m.store.update(rid, dataclasses.replace(current, narrative="second", status=Status.READY))
    assert m.store.get(rid).testimony.status is Status.READY
    assert m.store.sync_book.ready() == [rid]


def test_an_edit_while_the_bundle_is_sealing_stays_queued(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = world.monitor()
    rid = m.add("ORIGINAL narrative")
    other = FieldStore.open(unlock_home(m.store.home, PASSPHRASE))  # a second process
    real_seal = m.store.seal_bundle

    def seal_while_editing(src: object, dst: object, box: BoxPublicKey) -> SealedBundle:
        current = other.get(rid).testimony
        other.update(rid, dataclasses.replace(current, narrative="EDIT during sealing"))
        return real_seal(src, dst, box)  # type: ignore[arg-type]

    monkeypatch.setattr(m.store, "seal_bundle", seal_while_editing)
    [first] = build_bundles(m.store, now())
    monkeypatch.undo()
    other.close()
    assert m.store.get(rid).testimony.status is Status.READY  # not marked sent
    assert m.store.sync_book.ready() == [rid]
    [second] = build_bundles(m.store, now())
    m.store.set_remove_confirmed(True)
    import_file(world.archive, outbox_path(m.store, first))
    assert _receipts_back(world, m, tmp_path / "back") == 1
    assert not m.store.is_purged(rid)  # the first bundle lacks the edit
    import_file(world.archive, outbox_path(m.store, second))
    assert _receipts_back(world, m, tmp_path / "back2") == 1
    assert m.store.is_purged(rid)
    assert world.archive.testimony(rid)[1].narrative == "EDIT during sealing"


def test_no_confirmation_while_hq_lacks_an_attachment(world: World, tmp_path: Path) -> None:
    m = world.monitor()
    rid = m.add("with a photo", attachments={"photo.jpg": b"\xff\xd8PHOTO" * 1000})
    [lost] = m.build()  # carries the photo; the stick is lost
    m.edit(rid, "corrected")
    [second] = m.build()  # the chain only: attachments travel once
    m.store.set_remove_confirmed(True)
    import_file(world.archive, second)
    _receipts_back(world, m, tmp_path / "back")
    assert m.store.get(rid).testimony.status is Status.SENT
    assert not m.store.is_purged(rid)
    assert [a.status for a in custody_report(world.archive, rid).attachments] == ["missing"]
    import_file(world.archive, lost)  # found again (sync export --again)
    _receipts_back(world, m, tmp_path / "back2")
    assert m.store.is_purged(rid)
    assert [a.status for a in custody_report(world.archive, rid).attachments] == ["ok"]


def test_a_fresh_unrecorded_bundle_is_left_for_the_build_that_made_it(world: World) -> None:
    m = world.monitor()
    m.store.home.outbox.mkdir(exist_ok=True)
    fresh = m.store.home.outbox / ("a" * 32 + ".fabundle")
    fresh.write_bytes(b"being recorded by another process")
    stale = m.store.home.outbox / ("b" * 32 + ".fabundle")
    stale.write_bytes(b"left by a crash")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert remove_unrecorded(m.store) == 1
    assert fresh.exists()
    assert not stale.exists()


def test_panic_removes_the_sealed_outbox(world: World) -> None:
    m = world.monitor()
    m.add("PANIC narrative")
    [path] = m.build()
    home = m.store.home
    m.store.close()
    panic(home)
    assert not path.exists()
    assert not home.outbox.exists()


def test_an_attachment_swept_during_a_long_import_gets_no_receipt(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = world.monitor()
    rid = m.add("video", attachments={"clip.mp4": os.urandom(5000)})
    [path] = m.build()
    real_commit = world.archive.commit

    def sweep_then_commit(incoming):  # type: ignore[no-untyped-def]
        for a in incoming.attachments:  # what another HQ process's orphan sweep would do
            (world.archive.home.attachments / a.stored_name).unlink()
        return real_commit(incoming)

    monkeypatch.setattr(world.archive, "commit", sweep_then_commit)
    with pytest.raises(AttachmentVanished):
        import_file(world.archive, path)
    monkeypatch.undo()
    assert world.archive.receipts() == []
    assert import_file(world.archive, path).result is not None  # the re-run completes
    assert [a.status for a in custody_report(world.archive, rid).attachments] == ["ok"]


def test_receipts_can_be_kept_to_one_device(world: World, tmp_path: Path) -> None:
    a, b = world.monitor("a"), world.monitor("b")
    a.add("from a")
    b.add("from b")
    for m in (a, b):
        for path in m.build():
            import_file(world.archive, path)
    assert _receipts_back(world, a, tmp_path / "to-a", device="a") == 1
    [carried] = list((tmp_path / "to-a").iterdir())
    assert len(carried.read_bytes()) == 144  # a's receipt only: nothing about b
    assert _receipts_back(world, b, tmp_path / "to-b", device="b") == 1


def test_remove_confirmed_forgets_every_witness_the_testimony_named(
    world: World, tmp_path: Path
) -> None:
    m = world.monitor()
    store = m.store
    rid = store.create(
        m.testimony("first witness"), identity=ProtectedIdentity(name="FIRST-WITNESS")
    ).id
    first_code = store.get(rid).testimony.witness_code
    store.set_status(rid, Status.DRAFT)
    second_code = store.new_witness_code()
    store.update(
        rid,
        dataclasses.replace(
            store.get(rid).testimony, witness_code=second_code, status=Status.READY
        ),
        identity=ProtectedIdentity(name="SECOND-WITNESS"),
    )
    for path in m.build():
        import_file(world.archive, path)
    store.set_remove_confirmed(True)
    _receipts_back(world, m, tmp_path / "back")
    assert store.is_purged(rid)
    assert first_code is not None
    assert store.identity(first_code) is None
    assert store.identity(second_code) is None


def test_expired_keys_still_let_already_sealed_bundles_leave(world: World, tmp_path: Path) -> None:
    m = world.monitor()
    m.add("sealed in time")
    m.build()
    m.add("too late")
    stick = tmp_path / "usb"
    stick.mkdir()
    later = now().replace(year=now().year + 2)
    with pytest.raises(HqKeysExpired, match="1 bundle"):
        export_bundles(m.store, stick, now=later)
    assert len(list(stick.iterdir())) == 1
    assert m.store.sync_book.ready() != []  # the late one waits for fresh keys
