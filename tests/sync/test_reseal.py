"""`sync export --again` / `sync push --again` after HQ destroyed the key a bundle was sealed to.

HQ destroys a retired box key early (`hq retire-key --force`): a bundle still
sealed to it can never open and is quarantined. The testimony is still on the
device, unconfirmed; sending it again must seal it to the current key with its
whole chain and every attachment the lost bundle carried, and HQ must then
confirm it. Through the real CLI (USB), and in-process for the edge cases.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from fieldapp.domain import Status
from sync.hqimport import import_file
from sync.hqtrust import apply_hq_statements
from sync.outbox import reseal_replaced
from sync.usb import apply_receipts, verify_receipts
from tests.relay.server import RelayProcess
from tests.sync.e2e import (
    QUARANTINE_LINE,
    assert_ok,
    assert_refused,
    box_keys,
    bundles_in,
    current_key,
    deployment,
    new_hq,
    new_monitor,
)
from tests.sync.world import World, now

pytestmark = pytest.mark.slow


def test_a_bundle_sealed_to_a_destroyed_key_is_sealed_again_and_confirmed(
    tmp_path: Path,
) -> None:
    hq = new_hq(tmp_path / "actors")
    monitor = new_monitor(tmp_path / "actors", hq, "daraa-1")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200_000))
    record = monitor.add("Sealed to key 1 on a stick that is lost for months.", attach=[photo])
    key_1 = current_key(hq)
    assert monitor.export(tmp_path / "lost-stick") == 1

    # HQ rotates; the device learns key 2 from a stick; HQ destroys key 1 early.
    assert_ok(hq.run("hq", "rotate-key"))
    stick = tmp_path / "stick"
    stick.mkdir()
    assert_ok(hq.run("hq", "export-receipts", stick))
    assert_ok(monitor.run("sync", "import-receipts", stick))
    assert_ok(hq.run("hq", "retire-key", key_1, "--force"))
    assert box_keys(hq)[key_1]["state"] == "destroyed"
    late = hq.import_(tmp_path / "lost-stick")  # the lost stick turns up
    assert_refused(late, 4, also_allowed=QUARANTINE_LINE)
    assert any("destroyed-key" in r for r in hq.reasons())
    assert monitor.status(record) == "sent"

    # Sending it again seals it to key 2, attachment included, and only that copy goes.
    again = tmp_path / "again"
    assert monitor.export(again) == 0  # without --again nothing new is waiting
    again.mkdir(exist_ok=True)
    out = monitor.ok("sync", "export", "--again", again).out
    assert "Exported 1 bundle(s)" in out
    assert len(bundles_in(again)) == 1
    twice = tmp_path / "twice"  # a second --again seals nothing more, sends the same one
    twice.mkdir()
    assert "Exported 1 bundle(s)" in monitor.ok("sync", "export", "--again", twice).out
    assert [p.read_bytes() for p in bundles_in(twice)] == [
        p.read_bytes() for p in bundles_in(again)
    ]
    assert "1 imported" in assert_ok(hq.import_(again)).out
    assert record in hq.ids()
    exported = tmp_path / "export"
    assert_ok(hq.export(exported, "jsonl"))
    copies = [
        p for p in exported.rglob("*") if p.is_file() and p.read_bytes() == photo.read_bytes()
    ]
    assert len(copies) == 1  # the attachment the lost bundle carried, byte-identical
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    assert_ok(hq.run("hq", "export-receipts", receipts))
    assert_ok(monitor.run("sync", "import-receipts", receipts))
    assert monitor.status(record) == "confirmed"


def rotate_and_learn(world: World) -> None:
    """HQ rotates its box key and destroys the old one; every monitor learns the new key."""
    old = world.archive.box_key_rows()[0][0]
    world.archive.rotate_box_key(timedelta(days=365))
    world.archive.destroy_box_key(old.hex(), force=True)
    for monitor in world.monitors:
        state = monitor.store.sync_book.enrolment()
        assert state is not None
        chain = world.archive.statements()[state.trust.version :]
        apply_hq_statements(monitor.store, chain, int(now().timestamp()))


def confirm_all(world: World, monitor_index: int = 0) -> None:
    monitor = world.monitors[monitor_index]
    state = monitor.store.sync_book.enrolment()
    assert state is not None
    good, refused = verify_receipts(state, [r for _, r in world.archive.receipts()])
    assert refused == 0
    apply_receipts(monitor.store, good)


def test_an_edit_after_the_lost_bundle_travels_with_its_attachments(world: World) -> None:
    monitor = world.monitor()
    record = monitor.add("First version.", attachments={"scan.pdf": b"%PDF" + os.urandom(5000)})
    [lost] = monitor.build()
    rotate_and_learn(world)
    assert import_file(world.archive, lost).quarantined
    # Edited since: the testimony is ready again; the new bundle alone must carry it all.
    monitor.edit(record, "Second version, corrected.")
    sealed, replaced = reseal_replaced(monitor.store, now())
    assert (sealed, len(replaced)) == (1, 1)
    assert reseal_replaced(monitor.store, now()) == (0, replaced)  # once is enough
    assert monitor.build() == []  # the re-sealed bundle already carried the edit
    [bundle] = [
        b
        for b in monitor.store.sync_book.bundles(unconfirmed_only=True)
        if b.bundle_id not in replaced
    ]
    outcome = import_file(world.archive, monitor.store.home.outbox / bundle.file_name)
    assert not outcome.quarantined
    assert len(world.archive.attachments(record)) == 1
    assert world.archive.testimony(record)[1].narrative == "Second version, corrected."
    confirm_all(world)
    assert monitor.store.get(record).testimony.status is Status.CONFIRMED


def test_nothing_is_sealed_again_while_every_bundle_uses_the_current_key(world: World) -> None:
    monitor = world.monitor()
    monitor.add("Sealed to the current key.")
    monitor.build()
    before = monitor.store.sync_book.bundles()
    assert reseal_replaced(monitor.store, now()) == (0, frozenset())
    assert monitor.store.sync_book.bundles() == before


def test_confirmed_testimonies_are_never_sealed_again(world: World) -> None:
    monitor = world.monitor()
    monitor.add("Confirmed before the rotation.")
    [path] = monitor.build()
    assert not import_file(world.archive, path).quarantined
    confirm_all(world)
    before = monitor.store.sync_book.bundles()
    rotate_and_learn(world)
    assert reseal_replaced(monitor.store, now()) == (0, frozenset())
    assert monitor.store.sync_book.bundles() == before


def test_push_again_sends_it_sealed_to_the_current_key(
    tmp_path: Path,
    relay: RelayProcess,
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "idlib-1")
    record = monitor.add("Pushed, sealed to key 1, not yet pulled by HQ.")
    assert_ok(monitor.push())
    key_1 = current_key(hq)
    assert_ok(hq.run("hq", "rotate-key"))  # published on the relay at once
    assert_ok(monitor.push())  # the device learns key 2
    assert_ok(hq.run("hq", "retire-key", key_1, "--force"))
    assert_refused(hq.pull(), 4, also_allowed=QUARANTINE_LINE)  # the key-1 bundle
    assert record not in hq.ids()

    assert "Sent 1 bundle(s)" in assert_ok(monitor.push("--again")).out
    assert "1 imported" in assert_ok(hq.pull()).out
    assert_ok(monitor.push())  # the receipt comes back
    assert monitor.status(record) == "confirmed"
    assert "Sent 0 bundle(s)" in assert_ok(monitor.push("--again")).out  # nothing left
