"""Device key rotation: the monitor's rotate_device, the statements its bundles carry,
and HQ accepting a new key only through the chain, with revocation by identity.

The table of named cases runs against a real enrolled monitor (tests/sync/world.py):
good chains are the monitor's own bundles; bad ones are forged from its keys to
break one rule each. Every refused case is quarantined with its reason, and HQ's
trust state (the ``devices`` and ``device_keys`` rows) and archive are unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.keys import DeviceSigningKey, SignPurpose
from crypto.statements import (
    DeviceTrust,
    SignatureEntry,
    StatementKind,
    _assemble,
    _body,
    sign_device_rotation,
    verify_device_chain,
)
from fieldapp.domain import Status
from fieldapp.hq import devicechain
from fieldapp.hq.errors import ImportRefused, Refusal
from fieldapp.store import rotation
from fieldapp.store.rotation import MAX_ROTATIONS, RotationRefused, rotate_device
from fieldapp.store.store import FieldStore, new_record_id
from fieldapp.store.vault import unlock_home
from sync.hqimport import Outcome, import_file
from sync.payload import MAX_STATEMENTS
from tests.store.conftest import PASSPHRASE, Clock
from tests.sync.world import Monitor, World, chain, forge, imported, manifest_of, sent

# ------------------------------------------------------------------ helpers


def trust_state(world: World) -> dict[str, list[object]]:
    """HQ's device trust and the whole archive: every row of every table, in order."""
    tables = [
        str(r[0])
        for r in world.archive._query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'search%'"
            " ORDER BY name"
        )
    ]
    assert {"devices", "device_keys", "revisions", "bundles"} <= set(tables)
    return {
        t: [tuple(row) for row in world.archive._query(f"SELECT * FROM {t} ORDER BY 1, 2")]  # noqa: S608
        for t in tables
    }


def refused(world: World, path: Path, reason: Refusal, detail: str | None) -> Outcome:
    """Import ``path``: refused for ``reason`` (and ``detail`` in the message), quarantined,
    and nothing at HQ changed."""
    before, trust = world.snapshot(), trust_state(world)
    notes = world.quarantine_notes()
    original = path.read_bytes()
    outcome = import_file(world.archive, path)
    assert outcome.refusal is not None, "the bundle was imported"
    assert outcome.refusal.reason is reason, outcome.refusal.message
    if detail is not None:
        assert f"({detail})" in outcome.refusal.message
    assert world.snapshot() == before
    assert trust_state(world) == trust
    new = {k: v for k, v in world.quarantine_notes().items() if k not in notes}
    assert outcome.quarantined_as is not None
    assert list(new) == [outcome.quarantined_as]
    assert new[outcome.quarantined_as].startswith(f"reason: {reason.value}\n")
    copy = world.hq_home.quarantine / f"{outcome.quarantined_as}.fabundle"
    assert copy.read_bytes() == original
    return outcome


def rotation_statement(
    old: DeviceSigningKey,
    new: DeviceSigningKey,
    *,
    version: int = 1,
    signers: tuple[DeviceSigningKey, ...] | None = None,
    subject: DeviceSigningKey | None = None,
) -> bytes:
    """A device rotation ``old`` -> ``new``; ``signers`` and ``subject`` (the old key named
    in the body) default to the honest ones."""
    named = subject or old
    body = _body(
        StatementKind.DEVICE_ROTATION,
        version,
        1_700_000_000,
        named.public_key.raw,
        new.public_key.raw,
    )
    keys = signers if signers is not None else (named, new)
    return _assemble(
        body,
        [
            SignatureEntry(k.public_key.key_id, k.sign(SignPurpose.DEVICE_ROTATION, body))
            for k in keys
        ],
    )


def forged_by(
    world: World, m: Monitor, signer: DeviceSigningKey, statements: tuple[bytes, ...]
) -> Path:
    """A bundle of m's enrolment, a testimony recorded and signed by ``signer``, carrying
    ``statements``."""
    t = m.testimony(recorded_by=signer.public_key.key_id.hex())
    revisions = chain(signer, new_record_id(), [t])
    manifest = manifest_of(revisions, m.enrolment.enrolment_id, b"\0" * 32)
    return forge(world, signer, dataclasses.replace(manifest, statements=statements))


# ------------------------------------------------------------------ the table

Case = Callable[[World, Monitor, DeviceSigningKey], tuple[Path, Refusal, str | None]]


def _skipped_version(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    k1 = DeviceSigningKey.generate()
    path = forged_by(world, m, k1, (rotation_statement(k0, k1, version=2),))
    return path, Refusal.DEVICE_ROTATION, "skipped-version"


def _replayed(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    rotate_device(m.store)  # HQ learns version 1 from an honest bundle
    sent(world, m, "after the first rotation")
    stranger = DeviceSigningKey.generate()
    # A version-1 statement HQ already passed, re-signed towards a key of the thief's.
    path = forged_by(world, m, stranger, (rotation_statement(k0, stranger, version=1),))
    return path, Refusal.DEVICE_ROTATION, "replayed"


def _new_key_only(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    k1 = DeviceSigningKey.generate()
    path = forged_by(world, m, k1, (rotation_statement(k0, k1, signers=(k1,)),))
    return path, Refusal.DEVICE_ROTATION, "missing-signature"


def _third_key(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    k1, third = DeviceSigningKey.generate(), DeviceSigningKey.generate()
    path = forged_by(world, m, k1, (rotation_statement(k0, k1, signers=(third, k1)),))
    return path, Refusal.DEVICE_ROTATION, "bad-signature"


def _wrong_subject(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    other, k1 = DeviceSigningKey.generate(), DeviceSigningKey.generate()
    path = forged_by(world, m, k1, (rotation_statement(other, k1),))
    return path, Refusal.DEVICE_ROTATION, "wrong-subject"


def _wrong_kind(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    k1 = DeviceSigningKey.generate()
    hq_keys = world.archive.statements()[0]  # a valid HQ-keys statement, version 1
    return forged_by(world, m, k1, (hq_keys,)), Refusal.DEVICE_ROTATION, "wrong-kind"


def _malformed(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, str]:
    k1 = DeviceSigningKey.generate()
    good = rotation_statement(k0, k1)
    bad = good[:20] + bytes([good[20] ^ 1]) + good[21:-1]  # one byte short
    return forged_by(world, m, k1, (bad,)), Refusal.DEVICE_ROTATION, "malformed"


def _revoked(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, None]:
    world.enrolment("spare")  # some device is active: an unknown key reaches its manifest
    rotate_device(m.store)  # a perfectly valid chain, from the stolen laptop
    m.add("the thief's testimony")
    [path] = m.build()
    world.archive.revoke(m.name)
    return path, Refusal.REVOKED_DEVICE, None


def _new_key_of_another_device(
    world: World, m: Monitor, k0: DeviceSigningKey
) -> tuple[Path, Refusal, str]:
    other = world.monitor("monitor-2")
    sent(world, other, "the other device's testimony")
    # Signed with m's own (known) key: the chain verifies, but its new key is taken.
    path = forged_by(world, m, k0, (rotation_statement(k0, other.device),))
    return path, Refusal.DEVICE_ROTATION, "wrong-subject"


def _signed_by_another_devices_key(
    world: World, m: Monitor, k0: DeviceSigningKey
) -> tuple[Path, Refusal, None]:
    other = world.monitor("monitor-2")
    sent(world, other, "the other device's testimony")
    path = forged_by(world, m, other.device, (rotation_statement(k0, other.device),))
    return path, Refusal.ENROLMENT, None


def _no_chain(world: World, m: Monitor, k0: DeviceSigningKey) -> tuple[Path, Refusal, None]:
    return forged_by(world, m, DeviceSigningKey.generate(), ()), Refusal.ENROLMENT, None


def _chain_to_another_key(
    world: World, m: Monitor, k0: DeviceSigningKey
) -> tuple[Path, Refusal, str]:
    k1, signer = DeviceSigningKey.generate(), DeviceSigningKey.generate()
    path = forged_by(world, m, signer, (rotation_statement(k0, k1),))
    return path, Refusal.DEVICE_ROTATION, "wrong-subject"


REFUSED: dict[str, Case] = {
    "skipped version": _skipped_version,
    "replayed old version": _replayed,
    "signed by the new key only": _new_key_only,
    "signed by a third key": _third_key,
    "wrong subject": _wrong_subject,
    "HQ-keys statement as a device rotation": _wrong_kind,
    "malformed bytes": _malformed,
    "revoked device with a valid chain": _revoked,
    "new key belongs to another device": _new_key_of_another_device,
    "signed by another device's key": _signed_by_another_devices_key,
    "unknown key without a chain": _no_chain,
    "chain leading to another key": _chain_to_another_key,
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_rotation_changes_nothing(world: World, case: str) -> None:
    m = world.monitor()
    sent(world, m)  # HQ holds m's enrolled key, version 0
    k0 = m.device
    path, reason, detail = REFUSED[case](world, m, k0)
    refused(world, path, reason, detail)


def test_good_chain_is_accepted_and_recorded(world: World) -> None:
    m = world.monitor()
    rid = sent(world, m)
    k0 = m.device.public_key
    done = rotate_device(m.store)
    assert (done.version, done.old, done.new) == (1, k0, m.device.public_key)
    # A testimony begun before the rotation, edited after, and a new one.
    m.edit(rid, "corrected after the rotation")
    new = m.add("recorded with the new key")
    paths = m.build()
    assert len(paths) == 2
    for path in paths:
        imported(world, path)
    record = world.archive.device(m.name)
    assert record.keys == (k0, done.new)
    assert record.key_version == 1
    assert [r[0] for r in world.archive._query("SELECT version FROM device_keys")] == [0, 1]
    history = world.archive.history(rid)
    assert {h.device_key for h in history} == {k0, done.new}
    assert world.archive.history(new)[-1].device_key == done.new
    assert world.archive.testimony(rid)[1].narrative == "corrected after the rotation"


def test_two_rotations_in_one_bundle(world: World) -> None:
    m = world.monitor()
    sent(world, m)
    k0 = m.device.public_key
    first, second = rotate_device(m.store), rotate_device(m.store)
    m.add("after two rotations")
    [path] = m.build()
    imported(world, path)
    assert world.archive.device(m.name).keys == (k0, first.new, second.new)
    assert world.archive.device(m.name).key_version == 2


def test_bundles_arriving_out_of_order_across_rotations(world: World) -> None:
    """Sealed with the old key before a rotation, imported after the new key's bundle."""
    m = world.monitor()
    sent(world, m)
    m.add("sealed before the rotation")
    [early] = m.build()
    rotate_device(m.store)
    m.add("sealed after it")
    [late] = m.build()
    imported(world, late)
    imported(world, early)  # the old key stays a key of the same device
    assert world.archive.device(m.name).key_version == 1


def test_rotation_before_the_first_bundle_binds_the_whole_chain(world: World) -> None:
    m = world.monitor()
    k0 = m.device.public_key
    m.add("sealed with the enrolled key")
    [early] = m.build()
    rotate_device(m.store)
    m.add("sealed with the rotated key")
    [late] = m.build()
    imported(world, late)  # binds: the enrolment proof is for the new key
    assert world.archive.device(m.name).keys == (k0, m.device.public_key)
    imported(world, early)


def test_a_ready_testimony_bundled_after_the_rotation(world: World) -> None:
    """Its newest revision is signed by the old key, the bundle by the new one."""
    m = world.monitor()
    sent(world, m)
    m.add("ready before the rotation, sent after")
    rotate_device(m.store)
    [path] = m.build()
    imported(world, path)


def test_revoked_device_is_refused_with_either_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = world.monitor()
    sent(world, m)
    m.add("sealed with the old key")
    [old_key_bundle] = m.build()
    rotate_device(m.store)
    m.add("sealed with the new key")
    [new_key_bundle] = m.build()
    imported(world, new_key_bundle)
    world.archive.revoke(m.name)
    world.enrolment("spare")  # some device is active: an unknown key reaches its manifest

    def never(*_args: object) -> object:
        raise AssertionError("a revoked device's chain must not be verified")

    monkeypatch.setattr(devicechain, "verify_device_chain", never)
    refused(world, old_key_bundle, Refusal.REVOKED_DEVICE, None)
    rotate_device(m.store)  # the thief rotates again, to a key HQ has never seen
    m.add("after the revocation")
    [fresh] = m.build()
    refused(world, fresh, Refusal.REVOKED_DEVICE, None)
    world.archive.revoke("spare")
    # With no device active, an unknown key is refused before anything is decrypted.
    refused(world, fresh, Refusal.UNKNOWN_DEVICE, None)


# ------------------------------------------------------------------ the monitor


def test_bundles_carry_every_statement_from_version_1(world: World) -> None:
    m = world.monitor()
    k0 = m.device.public_key
    assert rotation.statements(m.store) == ()
    rotate_device(m.store)
    rotate_device(m.store)
    statements = rotation.statements(m.store)
    assert len(statements) == 2
    final = verify_device_chain(DeviceTrust.anchor(k0), statements, 0)
    assert final == DeviceTrust(m.device.public_key, 2)


def test_the_new_key_survives_reopening(world: World) -> None:
    m = world.monitor()
    done = rotate_device(m.store)
    m.store.close()
    unlocked = unlock_home(m.store.home, PASSPHRASE)
    assert unlocked.device.public_key == done.new
    with FieldStore.open(unlocked, clock=Clock()) as store:
        assert store.recorded_by == done.new.key_id.hex()
        assert store.sync_book.enrolment() is not None


def test_editing_only_the_status_after_a_rotation_is_no_content_change(world: World) -> None:
    m = world.monitor()
    rid = sent(world, m)
    assert m.store.get(rid).testimony.status is Status.SENT
    rotate_device(m.store)
    before = m.store.get(rid).seq
    # Saving the same testimony again writes nothing, though recorded_by would differ.
    m.store.update(rid, m.store.get(rid).testimony)
    assert m.store.get(rid).seq == before


def test_rotation_limit(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_ROTATIONS == MAX_STATEMENTS
    monkeypatch.setattr(rotation, "MAX_ROTATIONS", 2)
    m = world.monitor()
    rotate_device(m.store)
    rotate_device(m.store)
    key = m.device
    with pytest.raises(RotationRefused):
        rotate_device(m.store)
    assert m.device == key
    assert len(rotation.statements(m.store)) == 2


def test_statement_is_what_sign_device_rotation_makes() -> None:
    old, new = DeviceSigningKey.generate(), DeviceSigningKey.generate()
    assert rotation_statement(old, new) == sign_device_rotation(
        old, new, version=1, issued_at=1_700_000_000
    )


# ------------------------------------------------------------------ hostile bytes


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_changed_byte_of_a_valid_chain_is_refused(world: World, data: st.DataObject) -> None:
    """A valid rotation statement with one byte changed, or random statements, never
    let an unknown key in; HQ's device state stays as it was."""
    if not world.monitors:
        sent(world, world.monitor())
    m = world.monitors[0]
    k1 = DeviceSigningKey.generate()
    good = rotation_statement(m.device, k1)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(good) - 1))
        flip = data.draw(st.integers(1, 255))
        statements = [good[:at] + bytes([good[at] ^ flip]) + good[at + 1 :]]
    else:
        statements = data.draw(st.lists(st.binary(max_size=300), min_size=1, max_size=3))
    before = trust_state(world)
    with pytest.raises(ImportRefused) as caught:
        world.archive.check_enrolment(m.enrolment.enrolment_id, k1.public_key, b"", statements)
    assert caught.value.reason in (Refusal.DEVICE_ROTATION, Refusal.ENROLMENT)
    assert trust_state(world) == before


def test_a_store_opening_during_a_rotation_leaves_it_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = world.monitor()
    home = m.store.home

    def crash(step: str) -> None:
        if step == "recorded":
            raise RuntimeError("killed")

    monkeypatch.setattr(rotation, "fault_hook", crash)
    with pytest.raises(RuntimeError):
        rotate_device(m.store)
    monkeypatch.undo()
    m.store.close()
    pending = "SELECT count(*) FROM device_rotations WHERE state = 'pending'"
    with rotation._rotation_lock(home, wait=False) as held:  # as if another process rotated
        assert held
        with FieldStore.open(unlock_home(home, PASSPHRASE), clock=Clock()) as store:
            assert store._query(pending)[0][0] == 1  # not judged while the lock is held
            with pytest.raises(RotationRefused):
                rotate_device(store)
    with FieldStore.open(unlock_home(home, PASSPHRASE), clock=Clock()) as store:
        assert store._query(pending)[0][0] == 0  # the file kept the old key: undone
        assert rotation.statements(store) == ()
    m.store = FieldStore.open(unlock_home(home, PASSPHRASE), clock=Clock())


def test_no_rotation_while_a_rekey_is_pending(world: World) -> None:
    """A rekey holds the keyslot lock and reseals the key file: a rotation never interleaves."""
    monitor = world.monitor()
    store = monitor.store
    key_file = store.home.device_key.read_bytes()
    store.home.rekey_pending.write_bytes(b"{}")  # a rekey is under way (or was interrupted)
    try:
        with pytest.raises(RotationRefused, match="keys rekey"):
            rotate_device(store)
    finally:
        store.home.rekey_pending.unlink()
    assert store.home.device_key.read_bytes() == key_file
    assert rotation.rotations(store) == []
    assert rotate_device(store).version == 1  # and once it is settled, rotation works
