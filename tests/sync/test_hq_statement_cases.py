"""HQ-keys statements as monitors receive them: from a real relay, and on a USB stick.

One table of named cases (tests as python-tuf writes its rotation tests), each
applied the two ways a monitor gets HQ's statements: ``sync push`` fetching them
from a real relay process (the same ``push`` the CLI calls, in this process on
the monitor's home), and ``sync import-receipts`` reading a stick
(``import_receipts``, also what the CLI calls). After every refused case the
monitor's saved trust, its enrolment row and its ``hq_statements`` table, is
byte-identical to before, and the monitor still seals to the box key it had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto.enrolment import read_enrolment, write_enrolment
from crypto.keys import BoxPrivateKey, DeviceSigningKey, RootSigningKey
from crypto.statements import HqTrust, sign_device_rotation, sign_hq_keys
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home
from sync.enrol import enrol
from sync.hqimport import import_file
from sync.push import push
from sync.relayclient import RelayClient
from sync.statementfile import encode_statements
from sync.usb import StatementsRefused, export_receipts, import_receipts
from tests.relay.server import RelayProcess, running_relay
from tests.store.conftest import CHEAP, PASSPHRASE, Clock
from tests.sync.world import World, new_world

DAY = 86400


@dataclass(frozen=True)
class Keys:
    """What a case may sign with: HQ's root and keys, the device's own key."""

    root: RootSigningKey
    trust: HqTrust  # HQ's (and the device's) state before: version 1
    device: DeviceSigningKey
    now: int


def hq_keys(
    keys: Keys,
    version: int,
    *,
    signer: RootSigningKey | None = None,
    issued: int | None = None,
    days: int = 30,
) -> bytes:
    issued = keys.now if issued is None else issued
    assert keys.trust.protection is not None
    return sign_hq_keys(
        signer or keys.root,
        version=version,
        box=BoxPrivateKey.generate().public_key,
        protection=keys.trust.protection,
        issued_at=issued,
        expires_at=issued + days * DAY,
    )


Case = Callable[[Keys, list[bytes]], list[bytes]]  # (keys, HQ's chain) -> what arrives

CASES: dict[str, tuple[Case, str | None]] = {
    # name: (statements presented after the device's version, refusal reason or None)
    "good chain": (lambda k, _c: [hq_keys(k, 2)], None),
    "good chain of two": (lambda k, _c: [hq_keys(k, 2), hq_keys(k, 3)], None),
    "skipped version": (lambda k, _c: [hq_keys(k, 3)], "skipped-version"),
    "wrong signer": (
        lambda k, _c: [hq_keys(k, 2, signer=RootSigningKey.generate())],
        "bad-signature",
    ),
    "good then wrong signer": (
        lambda k, _c: [hq_keys(k, 2), hq_keys(k, 3, signer=RootSigningKey.generate())],
        "bad-signature",
    ),
    "replayed": (lambda _k, chain: [chain[0]], "replayed"),
    "replayed, signed again": (lambda k, _c: [hq_keys(k, 1)], "replayed"),
    "expired": (
        lambda k, _c: [hq_keys(k, 2, issued=k.now - 10 * DAY, days=5)],
        "expired",
    ),
    "device rotation as an HQ statement": (
        lambda k, _c: [
            sign_device_rotation(k.device, DeviceSigningKey.generate(), version=2, issued_at=k.now)
        ],
        "wrong-kind",
    ),
    "malformed bytes": (lambda k, _c: [hq_keys(k, 2)[:-1] + b"\x00\x00"], "malformed"),
    "not a statement at all": (lambda _k, _c: [b"FASTMT\x01\x01" + bytes(300)], "malformed"),
}

# On a stick HQ writes its whole chain: a statement at or below the device's
# version is one it already went past, skipped rather than refused.
SKIPPED_ON_A_STICK = {"replayed", "replayed, signed again"}


def trust_rows(store: FieldStore) -> tuple[object, ...]:
    """The device's whole saved trust: its enrolment row and every statement it holds."""
    return (
        [tuple(r) for r in store._query("SELECT * FROM enrolment")],
        [tuple(r) for r in store._query("SELECT * FROM hq_statements ORDER BY version")],
    )


def enrolled_monitor(world: World, name: str, *, relay: RelayProcess | None = None) -> FieldStore:
    enrolment = world.archive.new_enrolment(
        name,
        relay=None if relay is None else relay.url,
        upload_token=None if relay is None else relay.upload_token,
    )
    world.archive.record_enrolment(enrolment)
    data = write_enrolment(world.archive.root_key(), enrolment)
    read, trust = read_enrolment(data, now=int(datetime.now(UTC).timestamp()))
    unlocked, _ = create_home(Home(world.root / name), PASSPHRASE, kdf=CHEAP)
    store = FieldStore.open(unlocked, clock=Clock())
    enrol(store, read, trust)
    return store


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[World, FieldStore, Keys]]:
    world = new_world(tmp_path / "world")
    store = None
    try:
        store = enrolled_monitor(world, "monitor-1")
        keys = Keys(
            world.archive.root_key(),
            world.archive.trust(),
            store._unlocked.device,
            int(datetime.now(UTC).timestamp()),
        )
        yield world, store, keys
    finally:
        if store is not None:
            store.close()
        world.close()


def check_outcome(
    store: FieldStore,
    before: tuple[object, ...],
    box_before: bytes,
    refusal: str | None,
    presented: list[bytes],
) -> None:
    state = store.sync_book.enrolment()
    assert state is not None
    if refusal is None:
        assert state.trust.version == 1 + len(presented)
        assert store.sync_book.hq_statements()[-len(presented) :] == presented
        assert state.trust.box is not None and state.trust.box.raw != box_before
    else:
        assert trust_rows(store) == before
        assert state.trust.box is not None and state.trust.box.raw == box_before


@pytest.mark.parametrize("name", list(CASES))
def test_statements_from_a_usb_stick(
    name: str, setting: tuple[World, FieldStore, Keys], tmp_path: Path
) -> None:
    world, store, keys = setting
    make, refusal = CASES[name]
    chain = world.archive.statements()
    presented = make(keys, chain)
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / f"{'c' * 32}.fastatements").write_bytes(encode_statements(chain + presented))
    before = trust_rows(store)
    assert keys.trust.box is not None
    box_before = keys.trust.box.raw

    if refusal is None:
        report = import_receipts(store, stick, now=datetime.now(UTC))
        assert report.statements == len(presented)
        assert report.trust_version == 1 + len(presented)
    elif name in SKIPPED_ON_A_STICK:
        report = import_receipts(store, stick, now=datetime.now(UTC))
        assert report.statements == 0 and report.trust_version == 1
    else:
        with pytest.raises(StatementsRefused) as caught:
            import_receipts(store, stick, now=datetime.now(UTC))
        assert f"({refusal})" in caught.value.message
        assert "\n" not in caught.value.message
    if name in SKIPPED_ON_A_STICK:
        assert trust_rows(store) == before
    else:
        check_outcome(store, before, box_before, refusal, presented)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_statements_from_a_real_relay(name: str, tmp_path: Path) -> None:
    world = new_world(tmp_path / "world")
    relay_folder = tmp_path / "relay"
    relay_folder.mkdir()
    try:
        with running_relay(relay_folder) as relay:
            store = enrolled_monitor(world, "monitor-1", relay=relay)
            try:
                trust = world.archive.trust()
                keys = Keys(
                    world.archive.root_key(),
                    trust,
                    store._unlocked.device,
                    int(datetime.now(UTC).timestamp()),
                )
                make, refusal = CASES[name]
                presented = make(keys, world.archive.statements())
                with RelayClient(relay.url, relay.hq_token) as client:
                    for version, statement in enumerate(presented, start=2):
                        client.put_statement(version, statement)
                before = trust_rows(store)
                assert trust.box is not None

                report = push(store, budget_seconds=5)

                if refusal is None:
                    assert report.warnings == []
                    assert report.statements == len(presented)
                else:
                    assert report.statements == 0 and report.trust_version == 1
                    [warning] = report.warnings
                    assert f"refused ({refusal})" in warning
                check_outcome(store, before, trust.box.raw, refusal, presented)
            finally:
                store.close()
    finally:
        world.close()


def test_refused_statements_still_let_the_receipts_through(
    setting: tuple[World, FieldStore, Keys], tmp_path: Path
) -> None:
    world, _store, keys = setting
    monitor = world.monitor("monitor-2")
    record_id = monitor.add("Confirmed even though the stick's statements are forged.")
    [bundle] = monitor.build()
    assert import_file(world.archive, bundle).result is not None
    stick = tmp_path / "stick"
    stick.mkdir()
    assert export_receipts(world.archive, stick) == 1
    forged = hq_keys(keys, 2, signer=RootSigningKey.generate())
    (stick / f"{'d' * 32}.fastatements").write_bytes(
        encode_statements([*world.archive.statements(), forged])
    )
    before = trust_rows(monitor.store)

    with pytest.raises(StatementsRefused) as caught:
        import_receipts(monitor.store, stick, now=datetime.now(UTC))
    assert "(bad-signature)" in caught.value.message
    assert "1 bundle(s) newly confirmed" in caught.value.message
    assert trust_rows(monitor.store) == before
    assert monitor.store.get(record_id).testimony.status.value == "confirmed"
