"""`keys rekey`: a new master key, the database re-encrypted, nothing lost.

In-process tests of fieldapp.store.rekey and of finishing an interrupted rekey
(the SIGKILL tests are in test_rekey_crash.py).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import keyfile
from crypto.errors import KeyFileError, WrongSecret
from crypto.kdf import MasterKey, Purpose, derive_subkey
from crypto.keyfile import load_keyslots
from crypto.keyslot import create_keyslots, unlock
from fieldapp.store import dbrekey
from fieldapp.store.database import open_database
from fieldapp.store.dbrekey import REKEY_STEPS, opens_at_all, wal_path
from fieldapp.store.errors import DatabaseDamaged, HomeInUse, HomeMissing, WrongKindOfHome
from fieldapp.store.home import Home
from fieldapp.store.pendingrekey import (
    RekeyPendingCorrupt,
    decode_pending,
    encode_pending,
    make_pending,
)
from fieldapp.store.rekey import rekey_home
from fieldapp.store.rekeyrecovery import FINISHED_CODE_KEPT, FINISHED_CODE_LOST, UNDONE
from fieldapp.store.vault import change_passphrase, new_recovery_code, panic, unlock_home
from tests.conftest import CHEAP_KDF
from tests.store.conftest import CHEAP, PASSPHRASE
from tests.store.homefill import Filled, check_everything, fill

_FIXED_KEYSLOTS = create_keyslots(
    MasterKey(bytes(range(32))), PASSPHRASE, params=CHEAP_KDF, floor=CHEAP_KDF
)


def _key(master: MasterKey) -> bytes:
    return derive_subkey(master, Purpose.SQLCIPHER_KEY)


def _master(home: Home) -> MasterKey:
    return unlock(load_keyslots(home.keyslots), PASSPHRASE)[0]


def _hashes(home: Home) -> dict[str, str]:
    return {
        str(p.relative_to(home.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def filled(home: Home, tmp_path: Path) -> Filled:
    return fill(home, tmp_path / "sources")


def test_rekey_moves_everything_to_a_new_master_key(
    home: Home, filled: Filled, tmp_path: Path
) -> None:
    old = _master(home)
    before = tmp_path / "before.db"
    shutil.copyfile(home.database, before)
    attachments = {p.name: p.read_bytes() for p in home.attachments.iterdir()}

    done = rekey_home(home, PASSPHRASE, kdf=CHEAP)

    new = _master(home)
    assert new.key_id != old.key_id
    # The copy taken before opens only with the old key, the database only with the new.
    assert not opens_at_all(before, _key(new))
    assert opens_at_all(before, _key(old))
    assert not opens_at_all(home.database, _key(old))
    # No frame left in a WAL, no journal, no pending file.
    assert not wal_path(home.database).exists() or wal_path(home.database).stat().st_size == 0
    assert not dbrekey.journal_path(home.database).exists()
    assert not home.rekey_pending.exists()
    # Attachments are not rewritten: their keys moved with the database.
    assert {p.name: p.read_bytes() for p in home.attachments.iterdir()} == attachments
    check_everything(home, PASSPHRASE, filled)
    # The new recovery code opens the home; the old one no longer does.
    check_everything(home, done.recovery_code, filled)
    with pytest.raises(WrongSecret):
        unlock_home(home, filled.recovery_code)
    assert unlock_home(home, PASSPHRASE).device == unlock_home(home, done.recovery_code).device


def test_every_page_authenticates_under_the_new_key_only(home: Home, filled: Filled) -> None:
    rekey_home(home, PASSPHRASE, kdf=CHEAP)
    conn = open_database(home.database, _key(_master(home)))
    try:
        # cipher_integrity_check reads every page of the file and checks its HMAC.
        assert [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")] == []
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert str(mode).lower() == "wal"  # back in WAL mode after the rekey
    finally:
        conn.close()


def test_refusals_change_nothing(home: Home, filled: Filled, tmp_path: Path) -> None:
    before = _hashes(home)
    with pytest.raises(WrongSecret):
        rekey_home(home, "not the passphrase", kdf=CHEAP)
    with pytest.raises(WrongSecret):  # rekey needs the passphrase: it wraps the new key
        rekey_home(home, filled.recovery_code, kdf=CHEAP)
    assert _hashes(home) == before
    with pytest.raises(HomeMissing):
        rekey_home(Home(tmp_path / "nowhere"), PASSPHRASE, kdf=CHEAP)
    assert not (tmp_path / "nowhere").exists()


def test_hq_home_is_refused(home: Home, filled: Filled) -> None:
    home.protection_keyslots.write_bytes(b"{}")  # what makes a home an HQ home
    before = _hashes(home)
    with pytest.raises(WrongKindOfHome):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    assert _hashes(home) == before


def test_an_open_database_elsewhere_refuses_the_rekey_and_changes_nothing(
    home: Home, filled: Filled
) -> None:
    old = _master(home)
    other = open_database(home.database, _key(old))
    try:
        other.execute("SELECT count(*) FROM sqlite_master").fetchone()
        with pytest.raises(HomeInUse):
            rekey_home(home, PASSPHRASE, kdf=CHEAP)
    finally:
        other.close()
    assert _master(home).key_id == old.key_id
    assert not home.rekey_pending.exists()
    check_everything(home, filled.recovery_code, filled)


@pytest.mark.parametrize("step", REKEY_STEPS)
@pytest.mark.parametrize("secret", ["passphrase", "old recovery code"])
def test_an_error_at_each_step_leaves_a_home_that_opens(
    home: Home, filled: Filled, step: str, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _master(home)

    def fail(reached: str) -> None:
        if reached == step:
            raise OSError("simulated failure")

    monkeypatch.setattr(dbrekey, "step_hook", fail)
    with pytest.raises(OSError, match="simulated"):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    monkeypatch.setattr(dbrekey, "step_hook", dbrekey._no_step)
    typed = PASSPHRASE if secret == "passphrase" else filled.recovery_code
    if step == "pending-removed":  # the rekey was complete: only its new code was lost
        if secret != "passphrase":
            with pytest.raises(WrongSecret):
                unlock_home(home, typed)
        typed = PASSPHRASE
    unlocked = unlock_home(home, typed)  # finishes or undoes it
    assert not home.rekey_pending.exists()
    forward = REKEY_STEPS.index(step) >= REKEY_STEPS.index("rekeyed")
    if step in ("checkpointed", "journal-delete", "pending-removed"):
        # Nothing was pending any more: the error path removed the pending file when
        # the old key still opened the database, or the rekey had completed.
        assert unlocked.note is None
    elif not forward:
        assert unlocked.note == UNDONE
    else:
        assert unlocked.note == (FINISHED_CODE_LOST if typed == PASSPHRASE else FINISHED_CODE_KEPT)
    assert unlock_home(home, PASSPHRASE).note is None  # said once
    assert (unlocked.master.key_id != old.key_id) == forward
    assert opens_at_all(home.database, _key(unlocked.master))
    assert not opens_at_all(home.database, _key(old)) or not forward
    check_everything(home, PASSPHRASE, filled)
    # The old recovery code works after a roll back, and after a roll forward finished
    # with it (the new code was never shown); not after one finished with the passphrase.
    if forward and typed == PASSPHRASE:
        with pytest.raises(WrongSecret):
            unlock_home(home, filled.recovery_code)
    else:
        check_everything(home, filled.recovery_code, filled)


def test_a_wrong_secret_does_not_touch_a_pending_rekey(
    home: Home, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(reached: str) -> None:
        if reached == "verified":
            raise OSError("simulated failure")

    monkeypatch.setattr(dbrekey, "step_hook", fail)
    with pytest.raises(OSError, match="simulated"):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    monkeypatch.setattr(dbrekey, "step_hook", dbrekey._no_step)
    before = _hashes(home)
    with pytest.raises(WrongSecret):
        unlock_home(home, "not the passphrase")
    assert _hashes(home) == before
    assert home.rekey_pending.exists()


def test_passphrase_and_recovery_changes_finish_a_pending_rekey_first(
    home: Home, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(reached: str) -> None:
        if reached == "device-key-written":
            raise OSError("simulated failure")

    monkeypatch.setattr(dbrekey, "step_hook", fail)
    with pytest.raises(OSError, match="simulated"):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    monkeypatch.setattr(dbrekey, "step_hook", dbrekey._no_step)
    change_passphrase(home, PASSPHRASE, "a brand new passphrase", kdf=CHEAP)
    assert not home.rekey_pending.exists()
    check_everything(home, "a brand new passphrase", filled)
    with pytest.raises(WrongSecret):
        unlock_home(home, PASSPHRASE)
    code = new_recovery_code(home, "a brand new passphrase", kdf=CHEAP)
    check_everything(home, code, filled)


def test_a_pending_file_of_another_home_is_refused(
    home: Home, filled: Filled, tmp_path: Path
) -> None:
    other = Home(tmp_path / "other")
    fill(other, tmp_path / "other-sources", records=1)
    rekey_home(other, PASSPHRASE, kdf=CHEAP)  # leaves no pending file: make one
    ks = load_keyslots(other.keyslots)
    stranger = make_pending(MasterKey.generate(), MasterKey.generate(), ks, ks)
    home.rekey_pending.write_bytes(encode_pending(stranger))
    with pytest.raises(RekeyPendingCorrupt):
        unlock_home(home, PASSPHRASE)


def test_a_database_no_key_opens_is_reported_not_guessed(
    home: Home, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(reached: str) -> None:
        if reached == "verified":
            raise OSError("simulated failure")

    monkeypatch.setattr(dbrekey, "step_hook", fail)
    with pytest.raises(OSError, match="simulated"):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    monkeypatch.setattr(dbrekey, "step_hook", dbrekey._no_step)
    with home.database.open("r+b") as f:  # damage the first page
        f.seek(100)
        f.write(b"\xff" * 64)
    with pytest.raises(DatabaseDamaged):
        unlock_home(home, PASSPHRASE)
    assert home.rekey_pending.exists()  # kept: it may still be needed


def test_pending_file_round_trips() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    ks = create_keyslots(new, PASSPHRASE, params=CHEAP_KDF, floor=CHEAP_KDF)
    old_ks = create_keyslots(old, PASSPHRASE, params=CHEAP_KDF, floor=CHEAP_KDF)
    pending = make_pending(old, new, ks, old_ks)
    again = decode_pending(encode_pending(pending))
    assert again == pending
    assert again.new_master_key(old) == new
    assert again.new_keyslots() == ks
    assert again.previous_keyslots() == old_ks
    with pytest.raises(RekeyPendingCorrupt):
        again.new_master_key(new)


@given(st.binary(max_size=2000))
def test_pending_decoder_refuses_random_bytes(data: bytes) -> None:
    with pytest.raises(RekeyPendingCorrupt):
        decode_pending(data)


@given(st.data())
def test_pending_decoder_refuses_any_changed_byte(data: st.DataObject) -> None:
    encoded = encode_pending(
        make_pending(
            MasterKey(bytes(32)), MasterKey(bytes(range(32))), _FIXED_KEYSLOTS, _FIXED_KEYSLOTS
        )
    )
    i = data.draw(st.integers(0, len(encoded) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[i]))
    changed = encoded[:i] + bytes([b]) + encoded[i + 1 :]
    try:
        decoded = decode_pending(changed)
    except RekeyPendingCorrupt:
        return
    # A change that still decodes (inside a keyslot file, say) can never hand over
    # another master key: the sealed key and both ids are checked together.
    try:
        handed = decoded.new_master_key(MasterKey(bytes(32)))
    except RekeyPendingCorrupt:
        return
    assert handed == MasterKey(bytes(range(32)))


def test_panic_destroys_a_pending_rekey_too(
    home: Home, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(reached: str) -> None:
        if reached == "rekeyed":
            raise OSError("simulated failure")

    monkeypatch.setattr(dbrekey, "step_hook", fail)
    with pytest.raises(OSError, match="simulated"):
        rekey_home(home, PASSPHRASE, kdf=CHEAP)
    assert home.rekey_pending.exists()
    panic(home)
    assert [p.name for p in home.root.iterdir()] == []


def test_two_key_changes_cannot_interleave(
    home: Home, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyfile, "LOCK_TIMEOUT_S", 0.2)
    before = _hashes(home)
    with keyfile.hold_keyslots(home.keyslots):  # as a rekey in another process holds it
        with pytest.raises(KeyFileError, match="Another fieldapp process"):
            rekey_home(home, PASSPHRASE, kdf=CHEAP)
        with pytest.raises(KeyFileError, match="Another fieldapp process"):
            change_passphrase(home, PASSPHRASE, "another passphrase", kdf=CHEAP)
        with pytest.raises(KeyFileError, match="Another fieldapp process"):
            new_recovery_code(home, PASSPHRASE, kdf=CHEAP)
    assert _hashes(home) == before
    check_everything(home, filled.recovery_code, filled)
