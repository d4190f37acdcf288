"""HQ box-key rotation and retirement, in-process: the archive, the policy, the import.

The end-to-end stories (monitors sealing to the old key, then the new one, by
stick and by relay) are in test_key_rotation_e2e.py; this file pins the rules
those stories rely on.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.errors import StatementError, StatementReason
from crypto.keys import RootSigningKey
from crypto.statements import (
    HqKeysStatement,
    HqTrust,
    parse_statement,
    sign_hq_keys,
    verify_hq_chain,
)
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.boxkeys import (
    MAX_HELD_BOX_KEYS,
    TRANSIT_ALLOWANCE,
    AmbiguousBoxKey,
    BadKeyId,
    BoxKeyAlreadyDestroyed,
    BoxKeyInfo,
    BoxKeyNotFound,
    BoxKeyState,
    CurrentBoxKey,
    InsideGracePeriod,
    TooManyBoxKeys,
    check_destroyable,
    find_box_key,
)
from fieldapp.hq.errors import Refusal
from fieldapp.hq.vault import unlock_hq
from sync.hqimport import import_file
from tests.store.conftest import PASSPHRASE
from tests.sync.world import World, new_world

DAY = timedelta(days=1)


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment

    def __call__(self) -> datetime:
        return self.now


def clocked(world: World, clock: FixedClock) -> HqArchive:
    """The world's archive reopened on ``clock``."""
    world.archive.close()
    world.archive = HqArchive.open(unlock_hq(world.hq_home, PASSPHRASE), clock=clock)
    return world.archive


def key_rows(archive: HqArchive) -> list[tuple[object, ...]]:
    """Everything retire-key may change, secrets included."""
    return [
        tuple(r)
        for r in archive._query(
            "SELECT key_id, secret, public, created_at, retired_at, destroyed_at FROM box_keys"
            " ORDER BY rowid"
        )
    ]


# ---------------------------------------------------------------- rotation


def test_rotate_key_adds_a_key_and_statement_n_plus_1_in_one_step(world: World) -> None:
    archive = world.archive
    before = archive.trust()
    [old] = archive.box_key_infos()
    rotation = archive.rotate_box_key(timedelta(days=90))

    assert rotation.version == before.version + 1 == 2
    assert rotation.retired == (old.key_id,)
    assert archive.statements()[-1] == rotation.statement
    statement = parse_statement(rotation.statement)
    assert isinstance(statement, HqKeysStatement)
    assert statement.box.key_id == rotation.key_id
    assert statement.protection == before.protection  # the protection key stays
    assert statement.expires_at - statement.issued_at == 90 * 86400
    # A device following the chain from HQ's root reaches the new key.
    after = verify_hq_chain(
        HqTrust.anchor(before.root), archive.statements(), statement.issued_at + 1
    )
    assert after.box is not None and after.box.key_id == rotation.key_id
    assert archive.trust() == after

    infos = {i.key_id: i for i in archive.box_key_infos()}
    assert infos[rotation.key_id].state is BoxKeyState.CURRENT
    assert infos[old.key_id].state is BoxKeyState.RETIRED
    assert infos[old.key_id].statement_versions == (1,)
    # Both keys open bundles; the current one is tried first.
    assert [k.public_key.key_id for k in archive.box_keys()] == [rotation.key_id, old.key_id]
    assert archive.new_enrolment("later").hq_statements[-1] == rotation.statement


def test_the_grace_period_is_the_last_expiry_naming_the_key_plus_transit(world: World) -> None:
    archive = world.archive
    first = parse_statement(archive.statements()[0])
    assert isinstance(first, HqKeysStatement)
    old = archive.box_key_infos()[0]
    archive.rotate_box_key(timedelta(days=7))
    retired = next(i for i in archive.box_key_infos() if i.key_id == old.key_id)
    assert retired.last_expiry == first.expires_at
    assert retired.grace_ends_at == (
        datetime.fromtimestamp(first.expires_at, UTC) + TRANSIT_ALLOWANCE
    )
    assert retired.as_json()["grace_ends_at"] is not None
    assert "kept until its grace period ends" in retired.describe()


def test_a_statement_issue_time_never_goes_back(world: World) -> None:
    late = world.archive.trust()
    issued = parse_statement(world.archive.statements()[0]).issued_at
    archive = clocked(world, FixedClock(datetime.fromtimestamp(issued, UTC) - 400 * DAY))
    rotation = archive.rotate_box_key(timedelta(days=30))
    statement = parse_statement(rotation.statement)
    assert statement.issued_at == issued  # HQ's clock was behind: the floor is kept
    assert late.version + 1 == statement.version


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("skipped version", lambda root, t: sign_hq_keys(root, version=3, **t)),
        ("replayed version", lambda root, t: sign_hq_keys(root, version=1, **t)),
        ("another root", lambda _root, t: sign_hq_keys(RootSigningKey.generate(), version=2, **t)),
        ("malformed", lambda _root, _t: b"not a statement"),
    ],
)
def test_a_statement_that_would_break_the_chain_is_never_appended(
    world: World, name: str, make: object
) -> None:
    archive = world.archive
    trust = archive.trust()
    now = int(datetime.now(UTC).timestamp())
    fields = {
        "box": trust.box,
        "protection": trust.protection,
        "issued_at": now,
        "expires_at": now + 86400,
    }
    statement = make(archive.root_key(), fields)  # type: ignore[operator]
    before = archive.statements()
    with pytest.raises(StatementError), archive._write() as c:
        archive._append_statement(c, statement)
    assert archive.statements() == before, name


# ---------------------------------------------------------------- retire-key


def test_retire_key_refuses_and_changes_nothing(world: World) -> None:
    archive = world.archive
    [first] = archive.box_key_infos()
    archive.rotate_box_key(timedelta(days=30))
    current = next(i for i in archive.box_key_infos() if i.state is BoxKeyState.CURRENT)
    before = key_rows(archive)
    cases: list[tuple[str, type[Exception]]] = [
        (current.key_id.hex(), CurrentBoxKey),
        (current.key_id.hex()[:8].upper(), CurrentBoxKey),  # a prefix, in either case
        ("00" * 16 if first.key_id[0] else "ff" * 16, BoxKeyNotFound),
        (first.key_id.hex(), InsideGracePeriod),
        ("abc", BadKeyId),
        ("xyz0123456", BadKeyId),
        ("0" * 33, BadKeyId),
    ]
    for text, error in cases:
        with pytest.raises(error):
            archive.destroy_box_key(text)
        assert key_rows(archive) == before, text


def test_an_ambiguous_prefix_is_refused() -> None:
    def info(key_id: bytes) -> BoxKeyInfo:
        return BoxKeyInfo(key_id, "2026-01-01T00:00:00+00:00", None, None, (1,), 1)

    keys = [
        info(bytes.fromhex("aabbccdd" + "00" * 12)),
        info(bytes.fromhex("aabbccdd" + "11" * 12)),
    ]
    with pytest.raises(AmbiguousBoxKey):
        find_box_key("aabbccdd", keys)
    assert find_box_key("aabbccdd1", keys) is keys[1]


def test_check_destroyable_is_a_pure_policy() -> None:
    retired = BoxKeyInfo(
        b"\x01" * 16,
        "2026-01-01T00:00:00+00:00",
        "2026-02-01T00:00:00+00:00",
        None,
        (1,),
        int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()),
    )
    grace = datetime(2026, 3, 1, tzinfo=UTC) + TRANSIT_ALLOWANCE
    with pytest.raises(InsideGracePeriod):
        check_destroyable(retired, grace - timedelta(seconds=1), force=False)
    check_destroyable(retired, grace - timedelta(seconds=1), force=True)
    check_destroyable(retired, grace, force=False)
    destroyed = BoxKeyInfo(b"\x01" * 16, "x", "y", "2026-04-01", (1,), 1)
    with pytest.raises(BoxKeyAlreadyDestroyed):
        check_destroyable(destroyed, grace, force=True)


def test_after_the_grace_period_the_secret_is_gone_and_the_wal_is_empty(world: World) -> None:
    archive = world.archive
    [old] = archive.box_key_infos()
    archive.rotate_box_key(timedelta(days=30))
    grace = next(i for i in archive.box_key_infos() if i.key_id == old.key_id).grace_ends_at
    assert grace is not None
    secret = bytes(
        archive._query("SELECT secret FROM box_keys WHERE key_id = ?", (old.key_id,))[0][0]
    )
    archive = clocked(world, FixedClock(grace + timedelta(seconds=1)))
    info, cleared = archive.destroy_box_key(old.key_id.hex()[:8])
    assert cleared
    assert info.state is BoxKeyState.DESTROYED and info.destroyed_at is not None
    assert archive._query("SELECT secret FROM box_keys WHERE key_id = ?", (old.key_id,)) == [
        (None,)
    ]
    wal = Path(f"{world.hq_home.database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert len(archive.box_keys()) == 1
    with pytest.raises(BoxKeyAlreadyDestroyed):
        archive.destroy_box_key(old.key_id.hex())
    # The database file is encrypted anyway; this checks nothing slipped out in the clear.
    for path in world.hq_home.root.iterdir():
        if path.is_file():
            assert secret not in path.read_bytes(), path.name


# ---------------------------------------------------------------- import


def test_a_bundle_for_a_destroyed_key_is_quarantined_with_the_reason(world: World) -> None:
    monitor = world.monitor()
    monitor.add("Sealed to the first box key, and late.")
    [late] = monitor.build()
    original = late.read_bytes()
    archive = world.archive
    [old] = archive.box_key_infos()
    archive.rotate_box_key(timedelta(days=30))
    snapshot = world.snapshot()
    archive.destroy_box_key(old.key_id.hex(), force=True)

    outcome = import_file(archive, late)
    assert outcome.refusal is not None
    assert outcome.refusal.reason is Refusal.DESTROYED_KEY
    message = outcome.refusal.message
    assert old.key_id.hex()[:16] in message and "most likely" in message
    assert "destroyed" in message and "\n" not in message
    assert world.snapshot() == snapshot
    [note] = world.quarantine_notes().items()
    assert note[1].startswith("reason: destroyed-key\n")
    kept = world.hq_home.quarantine / f"{note[0]}.fabundle"
    assert kept.read_bytes() == original  # byte-identical: a key backup still opens it


def test_with_nothing_destroyed_an_unopenable_bundle_keeps_the_old_reason(
    world: World, tmp_path: Path
) -> None:
    other = new_world(tmp_path / "other")
    try:
        stranger = other.monitor("stranger")
        stranger.add("For another HQ.")
        [foreign] = stranger.build()
        world.archive.rotate_box_key(timedelta(days=30))  # retired, not destroyed
        outcome = import_file(world.archive, foreign)
        assert outcome.refusal is not None
        assert outcome.refusal.reason is Refusal.NO_MATCHING_KEY
    finally:
        other.close()


def test_retired_keys_still_open_bundles(world: World) -> None:
    monitor = world.monitor()
    record_id = monitor.add("Sealed before the rotation.")
    [bundle] = monitor.build()
    world.archive.rotate_box_key(timedelta(days=30))
    outcome = import_file(world.archive, bundle)
    assert outcome.result is not None and outcome.result.testimony_id == record_id
    assert bundle.exists()


def test_rotation_stops_before_an_import_would_stop_trying_old_keys(world: World) -> None:
    archive = world.archive
    with archive._write() as c:
        for _ in range(MAX_HELD_BOX_KEYS - 1):
            c.execute(
                "INSERT INTO box_keys (key_id, secret, public, created_at, retired_at)"
                " VALUES (?, ?, ?, '2026-01-01T00:00:00+00:00', '2026-01-02T00:00:00+00:00')",
                (os.urandom(16), os.urandom(32), os.urandom(32)),
            )
    before = (key_rows(archive), archive.statements())
    with pytest.raises(TooManyBoxKeys):
        archive.rotate_box_key(timedelta(days=30))
    assert (key_rows(archive), archive.statements()) == before


def test_a_rotation_whose_statement_fails_leaves_no_key_behind(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = world.archive
    before = (key_rows(archive), archive.statements())

    def refuse() -> HqTrust:
        raise StatementError(StatementReason.EXPIRED)

    monkeypatch.setattr(archive, "trust", refuse)  # the chain check inside the transaction
    with pytest.raises(StatementError):
        archive.rotate_box_key(timedelta(days=30))
    monkeypatch.undo()
    assert (key_rows(archive), archive.statements()) == before
    assert [i.state for i in archive.box_key_infos()] == [BoxKeyState.CURRENT]
