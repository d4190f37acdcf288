"""``hq rotate-root``: HQ's archive after a root rotation, and a device that follows it.

In-process (tests/sync/world.py): a real HQ archive and real monitor homes. The
end-to-end runs through the CLI and a relay are in test_root_rotation_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crypto.enrolment import read_enrolment, write_enrolment
from crypto.errors import ReceiptError, StatementError, StatementReason
from crypto.keys import RootVerifyKey
from crypto.receipts import verify_receipt
from crypto.statements import (
    HqKeysStatement,
    HqTrust,
    RootRotationStatement,
    parse_statement,
    root_anchor,
    verify_hq_chain,
)
from fieldapp.hq.rootkey import rotate_root
from fieldapp.hq.vault import HQ_KEYS_VALIDITY
from sync.hqimport import import_file
from tests.sync.world import World, now

NOW = int(now().timestamp())


def imported(world: World, count: int = 2) -> list[bytes]:
    """``count`` testimonies from one monitor imported at HQ; their receipts."""
    monitor = world.monitor("aleppo-1")
    for n in range(count):
        monitor.add(f"Testimony {n}: the witness saw the convoy.")
    for path in monitor.build():
        assert not import_file(world.archive, path).quarantined
    return [r for _, r in world.archive.receipts(include_exported=True)]


def test_the_chain_hands_over_to_the_new_root_and_certifies_the_keys(world: World) -> None:
    old_root = world.archive.root_public()
    before = world.archive.trust()
    rotation = rotate_root(world.archive)
    assert (rotation.old_root, rotation.rotation_version, rotation.keys_version) == (
        old_root,
        2,
        3,
    )
    chain = world.archive.statements()
    assert len(chain) == 3
    handover, keys = parse_statement(chain[1]), parse_statement(chain[2])
    assert isinstance(handover, RootRotationStatement) and handover.new_root == rotation.new_root
    assert isinstance(keys, HqKeysStatement)
    assert (keys.box, keys.protection) == (before.box, before.protection)
    # a device anchored at the first root follows to the new one
    followed = verify_hq_chain(HqTrust.anchor(old_root), chain, NOW)
    assert (followed.root, followed.version) == (rotation.new_root, 3)
    assert world.archive.root_public() == rotation.new_root != old_root
    assert world.archive.trust() == followed
    assert root_anchor(chain) == 2


def test_the_old_root_secret_is_erased_and_the_wal_emptied(world: World) -> None:
    old_id = world.archive.root_public().key_id
    rotate_root(world.archive)
    rows = world.archive._query(
        "SELECT secret, retired_at FROM root_keys WHERE key_id = ?", (old_id,)
    )
    assert rows[0][0] is None and rows[0][1] is not None
    assert len(world.archive._query("SELECT 1 FROM root_keys WHERE secret IS NOT NULL")) == 1
    wal = Path(f"{world.hq_home.database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    world.reopen()  # a new process: the archive opens and signs with the new root
    assert world.archive.root_key().public_key == world.archive.root_public()


def test_every_receipt_is_signed_again_and_goes_out_again(world: World) -> None:
    old_receipts = imported(world)
    world.archive.mark_receipts_exported([b for b, _ in world.archive.receipts()])
    world.archive.mark_receipts_published([b for b, _ in world.archive.receipts_to_publish()])
    assert world.archive.receipts() == [] and world.archive.receipts_to_publish() == []
    old_root = world.archive.root_public()
    rotation = rotate_root(world.archive)
    assert rotation.receipts_resigned == 2
    fresh = world.archive.receipts()
    assert [b for b, _ in fresh] == [b for b, _ in world.archive.receipts_to_publish()]
    assert len(fresh) == 2
    for old, (bundle_id, new) in zip(old_receipts, fresh, strict=True):
        said = verify_receipt(new, [rotation.new_root])
        assert said == verify_receipt(old, [old_root])  # the same bundle, hash and time
        assert said.bundle_id == bundle_id
        with pytest.raises(ReceiptError):
            verify_receipt(new, [old_root])


def test_a_device_enrolled_before_follows_and_accepts_only_new_receipts(world: World) -> None:
    old_receipts = imported(world, 1)
    [monitor] = world.monitors
    state = monitor.store.sync_book.enrolment()
    assert state is not None
    rotate_root(world.archive)
    chain = world.archive.statements()
    trust = verify_hq_chain(state.trust, chain[state.trust.version :], NOW)
    monitor.store.sync_book.advance_trust(
        trust, list(enumerate(chain, start=1))[state.trust.version :], NOW
    )
    after = monitor.store.sync_book.enrolment()
    assert after is not None and after.hq_root == world.archive.root_public()
    # The device trusts receipts from the root it trusts now, never from the old one.
    with pytest.raises(ReceiptError):
        verify_receipt(old_receipts[0], [after.hq_root])
    [(_, new_receipt)] = world.archive.receipts()
    assert (
        verify_receipt(new_receipt, [after.hq_root]).bundle_id
        == verify_receipt(old_receipts[0], [state.hq_root]).bundle_id
    )


def test_new_enrolments_are_anchored_at_the_new_root(world: World) -> None:
    first_root = world.archive.root_public()
    rotate_root(world.archive)
    enrolment = world.archive.new_enrolment("idlib-2")
    assert enrolment.anchor_version == 2
    assert enrolment.hq_root == world.archive.root_public() != first_root
    assert len(enrolment.hq_statements) == 1  # only the new root's HQ-keys statement
    data = write_enrolment(world.archive.root_key(), enrolment)
    assert first_root.raw.hex().encode() not in data
    _, trust = read_enrolment(data, now=NOW)
    assert (trust.root, trust.version) == (world.archive.trust().root, 3)
    assert (trust.box, trust.protection) == (
        world.archive.trust().box,
        world.archive.trust().protection,
    )
    # the device enrolled from it works end to end: its bundles import
    monitor = world.monitor("idlib-2")
    monitor.add("After the rotation.")
    [path] = monitor.build()
    assert not import_file(world.archive, path).quarantined


def test_two_rotations_chain_and_anchor_at_the_last(world: World) -> None:
    roots: list[RootVerifyKey] = [world.archive.root_public()]
    roots += [rotate_root(world.archive).new_root for _ in range(2)]
    chain = world.archive.statements()
    assert len(chain) == 5
    assert root_anchor(chain) == 4
    assert verify_hq_chain(HqTrust.anchor(roots[0]), chain, NOW).root == roots[2]
    assert verify_hq_chain(HqTrust.anchor(roots[1], 2), chain[2:], NOW).root == roots[2]
    # a device still anchored at the first root cannot skip the middle rotation
    with pytest.raises(StatementError) as caught:
        verify_hq_chain(HqTrust.anchor(roots[0]), chain[3:], NOW)
    assert caught.value.reason is StatementReason.SKIPPED_VERSION


def test_root_anchor_of_a_chain_never_rotated_is_zero(world: World) -> None:
    assert root_anchor(world.archive.statements()) == 0
    assert world.archive.new_enrolment("x").anchor_version == 0


@pytest.mark.parametrize("broken", ["renumbered", "garbage"])
def test_root_anchor_refuses_a_chain_out_of_place(world: World, broken: str) -> None:
    rotate_root(world.archive)
    chain = world.archive.statements()
    bad = chain[1:] if broken == "renumbered" else [*chain[:1], b"not a statement"]
    with pytest.raises(StatementError) as caught:
        root_anchor(bad)
    assert caught.value.reason is StatementReason.MALFORMED


def test_a_root_rotation_renews_a_lapsed_hq_keys_statement(world: World) -> None:
    before = world.archive.trust()
    assert before.expires_at is not None
    late = now() + timedelta(days=400)  # HQ missed its yearly rotate-key
    world.archive._clock = lambda: late
    with pytest.raises(StatementError):
        world.archive.trust()
    rotation = rotate_root(world.archive)
    trust = world.archive.trust()
    assert trust.root == rotation.new_root
    assert trust.box == before.box
    assert trust.expires_at == int(late.timestamp()) + int(HQ_KEYS_VALIDITY.total_seconds())


def test_a_root_rotation_keeps_the_expiry_hq_chose(world: World) -> None:
    before = world.archive.trust()
    rotate_root(world.archive)
    assert world.archive.trust().expires_at == before.expires_at
