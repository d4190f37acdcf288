"""Root rotations as a monitor receives them: a table of named cases.

Each case hands a list of statements to ``sync.hqtrust.apply_hq_statements``, the
one code path for statements from the relay and from a USB stick, on a real
enrolled monitor home. A good case must move the device to the new root; every
refused case must name its reason and leave the device's saved trust (its
enrolment row and its statements table) byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crypto.errors import StatementError, StatementReason
from crypto.keys import DeviceSigningKey, RootSigningKey
from crypto.statements import (
    SignatureEntry,
    _assemble,
    parse_statement,
    sign_device_rotation,
    sign_hq_keys,
    sign_root_rotation,
)
from sync.hqtrust import apply_hq_statements
from tests.sync.world import Monitor, World, new_world, now

NOW = int(now().timestamp())
YEAR = 365 * 86_400
Reason = StatementReason


@dataclass(frozen=True)
class Keys:
    old: RootSigningKey  # the root the device trusts (version 1)
    new: RootSigningKey
    stranger: RootSigningKey
    world: World

    def rotation(
        self,
        version: int = 2,
        *,
        old: RootSigningKey | None = None,
        new: RootSigningKey | None = None,
        expires: int = NOW + YEAR,
        issued: int = NOW - 60,
    ) -> bytes:
        return sign_root_rotation(
            old or self.old, new or self.new, version=version, issued_at=issued, expires_at=expires
        )

    def hq_keys(self, root: RootSigningKey, version: int) -> bytes:
        trust = self.world.archive.trust()
        assert trust.box is not None and trust.protection is not None
        return sign_hq_keys(
            root,
            version=version,
            box=trust.box,
            protection=trust.protection,
            issued_at=NOW - 60,
            expires_at=NOW + YEAR,
        )

    def signed_only_by(self, statement: bytes, *signers: RootSigningKey) -> bytes:
        """The same statement body with only these signatures."""
        parsed = parse_statement(statement)
        entries = [
            SignatureEntry(k.public_key.key_id, k.sign(parsed.purpose, parsed.body))
            for k in signers
        ]
        return _assemble(parsed.body, entries)


Build = Callable[[Keys], list[bytes]]


@dataclass(frozen=True)
class Case:
    build: Build
    refused: Reason | None = None  # None: accepted, and the device trusts the new root


CASES: dict[str, Case] = {
    "good: rotation, then HQ keys by the new root": Case(
        lambda k: [k.rotation(2), k.hq_keys(k.new, 3)]
    ),
    "good: the rotation alone": Case(lambda k: [k.rotation(2)]),
    "skipped version": Case(lambda k: [k.rotation(3)], Reason.SKIPPED_VERSION),
    "replayed version": Case(lambda k: [k.rotation(1)], Reason.REPLAYED),
    "signed by the new root only": Case(
        lambda k: [k.signed_only_by(k.rotation(2), k.new)], Reason.MISSING_SIGNATURE
    ),
    "signed by the old root only": Case(
        lambda k: [k.signed_only_by(k.rotation(2), k.old)], Reason.MISSING_SIGNATURE
    ),
    "new root's signature replaced by a stranger's": Case(
        lambda k: [k.signed_only_by(k.rotation(2), k.old, k.stranger)], Reason.BAD_SIGNATURE
    ),
    "a stranger hands the root to itself": Case(
        lambda k: [k.rotation(2, old=k.stranger, new=k.stranger)], Reason.MISSING_SIGNATURE
    ),
    "a stranger rotates to a key of its own": Case(
        lambda k: [k.rotation(2, old=k.stranger)], Reason.BAD_SIGNATURE
    ),
    "expired rotation": Case(
        lambda k: [k.rotation(2, issued=NOW - 2 * YEAR, expires=NOW - YEAR)], Reason.EXPIRED
    ),
    "HQ keys by the new root without the rotation": Case(
        lambda k: [k.hq_keys(k.new, 2)], Reason.BAD_SIGNATURE
    ),
    "after a good rotation, HQ keys still signed by the old root": Case(
        lambda k: [k.rotation(2), k.hq_keys(k.old, 3)], Reason.BAD_SIGNATURE
    ),
    "a device rotation presented as a root rotation": Case(
        lambda _: [
            sign_device_rotation(
                DeviceSigningKey.generate(), DeviceSigningKey.generate(), version=2, issued_at=NOW
            )
        ],
        Reason.WRONG_KIND,
    ),
    "truncated rotation": Case(lambda k: [k.rotation(2)[:-1]], Reason.MALFORMED),
    "rotation with a trailing byte": Case(lambda k: [k.rotation(2) + b"\x00"], Reason.MALFORMED),
    "issued_at changed under the signatures": Case(
        lambda k: [_flip(k.rotation(2), 20)], Reason.BAD_SIGNATURE
    ),
}


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Keys, Monitor]]:
    world = new_world(tmp_path)
    try:
        monitor = world.monitor("aleppo-1")
        keys = Keys(
            world.archive.root_key(), RootSigningKey.generate(), RootSigningKey.generate(), world
        )
        yield keys, monitor
    finally:
        world.close()


def saved_trust(monitor: Monitor) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The device's saved HQ trust, row by row, as stored."""
    store = monitor.store
    enrolment = [tuple(r) for r in store._query("SELECT * FROM enrolment")]
    statements = [tuple(r) for r in store._query("SELECT * FROM hq_statements ORDER BY version")]
    return enrolment, statements


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_root_rotation_case(setup: tuple[Keys, Monitor], case: Case) -> None:
    keys, monitor = setup
    before = saved_trust(monitor)
    statements = case.build(keys)
    if case.refused is None:
        update = apply_hq_statements(monitor.store, statements, NOW)
        state = monitor.store.sync_book.enrolment()
        assert state is not None
        assert state.hq_root == keys.new.public_key
        assert update.version == state.trust.version == 1 + len(statements)
        assert saved_trust(monitor) != before
        return
    with pytest.raises(StatementError) as caught:
        apply_hq_statements(monitor.store, statements, NOW)
    assert caught.value.reason is case.refused
    assert saved_trust(monitor) == before


def test_a_rotation_already_applied_is_refused_as_replayed(setup: tuple[Keys, Monitor]) -> None:
    keys, monitor = setup
    chain = [keys.rotation(2), keys.hq_keys(keys.new, 3)]
    apply_hq_statements(monitor.store, chain, NOW)
    after = saved_trust(monitor)
    with pytest.raises(StatementError) as caught:
        apply_hq_statements(monitor.store, chain, NOW)
    assert caught.value.reason is Reason.REPLAYED
    assert saved_trust(monitor) == after


def test_the_old_root_cannot_speak_for_hq_after_the_rotation(setup: tuple[Keys, Monitor]) -> None:
    keys, monitor = setup
    apply_hq_statements(monitor.store, [keys.rotation(2), keys.hq_keys(keys.new, 3)], NOW)
    after = saved_trust(monitor)
    for forged in (keys.hq_keys(keys.old, 4), keys.rotation(4, old=keys.old, new=keys.stranger)):
        with pytest.raises(StatementError) as caught:
            apply_hq_statements(monitor.store, [forged], NOW)
        assert caught.value.reason in {Reason.BAD_SIGNATURE, Reason.MISSING_SIGNATURE}
        assert saved_trust(monitor) == after
