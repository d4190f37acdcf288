"""A home's keys: creating them, unlocking them, changing secrets, destroying them.

The keyslot file is written last when a home is created, so a home either has
it (and is set up) or is not a home at all. Panic destroys the keyslot file and
the sealed device key first (that alone makes every byte of the home
unreadable), then removes the database and attachments.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.kdf import KDF_FLOOR, PRODUCTION_KDF, KdfParams, MasterKey, Purpose, derive_subkey
from crypto.keyfile import change_passphrase_file as _change_passphrase_file
from crypto.keyfile import ensure_private_dir, hold_keyslots, load_keyslots, save_keyslots
from crypto.keys import DeviceSigningKey
from crypto.keyslot import SlotKind, add_slot, create_keyslots, replace_slot, unlock
from crypto.recovery import generate_recovery_code
from fieldapp.store.database import Connection, open_database, transaction
from fieldapp.store.devicekey import load_device_key, save_device_key
from fieldapp.store.errors import HomeExists, HomeMissing, hq_home_refused
from fieldapp.store.home import Home
from fieldapp.store.rekeyrecovery import rekey_interrupted, settle_interrupted_rekey

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class KdfPolicy:
    """Argon2id cost for new slots; tests pass cheap parameters and a matching floor."""

    params: KdfParams = PRODUCTION_KDF
    floor: KdfParams = KDF_FLOOR


@dataclass(frozen=True, slots=True)
class Unlocked:
    """What a correct passphrase gives: the master key and the device key."""

    home: Home
    master: MasterKey
    device: DeviceSigningKey
    # Set when unlocking finished or undid an interrupted rekey: a sentence to show.
    note: str | None = None

    def database_key(self) -> bytes:
        return derive_subkey(self.master, Purpose.SQLCIPHER_KEY)

    def open_database(self) -> Connection:
        return open_database(self.home.database, self.database_key())


def create_home(
    home: Home, passphrase: str, *, kdf: KdfPolicy = KdfPolicy(), clock: Clock = utc_now
) -> tuple[Unlocked, str]:
    """Set up a new home; returns it unlocked and the recovery code (shown once).

    Refuses a folder that is not empty. Raises HomeExists, KeyslotError,
    KeyFileError, StoreError.
    """
    if home.is_set_up() or (home.root.exists() and any(home.root.iterdir())):
        raise HomeExists
    ensure_private_dir(home.root)
    ensure_private_dir(home.attachments)
    master = MasterKey.generate()
    keyslots = create_keyslots(master, passphrase, params=kdf.params, floor=kdf.floor)
    code = generate_recovery_code()
    keyslots, _ = add_slot(
        keyslots, master, code, SlotKind.RECOVERY, params=kdf.params, floor=kdf.floor
    )
    device = DeviceSigningKey.generate()
    save_device_key(home.device_key, master, device)
    unlocked = Unlocked(home, master, device)
    conn = unlocked.open_database()
    try:
        with transaction(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("role", "monitor"),
                    ("device_key", device.public_key.raw.hex()),
                    ("created_at", clock().isoformat(timespec="seconds")),
                ],
            )
    finally:
        conn.close()
    save_keyslots(home.keyslots, keyslots)
    return unlocked, code


def unlock_home(home: Home, secret: str) -> Unlocked:
    """Open the keys with a passphrase or recovery code.

    If a rekey was interrupted, finishes or undoes it first (fieldapp.store.rekeyrecovery).
    Raises HomeMissing, WrongSecret, KeyslotCorrupt, KeyFileError, DatabaseDamaged,
    RekeyPendingCorrupt.
    """
    if not home.is_set_up():
        raise HomeMissing
    if home.is_hq():
        raise hq_home_refused()
    note = None
    if rekey_interrupted(home):
        with hold_keyslots(home.keyslots) as held:
            master, note = settle_interrupted_rekey(home, held, secret)
    else:
        master, _ = unlock(load_keyslots(home.keyslots), secret)
    return Unlocked(home, master, load_device_key(home.device_key, master), note)


def change_passphrase(
    home: Home, old: str, new: str, *, kdf: KdfPolicy = KdfPolicy()
) -> str | None:
    """Rewrap the passphrase slot under ``new``; crash-safe. Raises as the keyfile module.

    Returns the note of an interrupted rekey settled first (see ``unlock_home``), or None.
    """
    if not home.is_set_up():
        raise HomeMissing
    note = None
    if rekey_interrupted(home):  # the pending keyslots carry the current passphrase
        note = unlock_home(home, old).note
    _change_passphrase_file(home.keyslots, old, new, params=kdf.params, floor=kdf.floor)
    return note


def new_recovery_code(home: Home, secret: str, *, kdf: KdfPolicy = KdfPolicy()) -> str:
    """Replace the recovery code (or add one); the old code stops working.

    Raises HomeMissing, WrongSecret, KeyslotError, KeyFileError.
    """
    if not home.is_set_up():
        raise HomeMissing
    if rekey_interrupted(home):
        unlock_home(home, secret)
    # Read, change and write under the lock: a rekey in between must not be undone.
    with hold_keyslots(home.keyslots) as held:
        keyslots = held.load()
        master, _ = unlock(keyslots, secret)
        code = generate_recovery_code()
        recovery = [s.slot_id for s in keyslots.slots if s.kind is SlotKind.RECOVERY]
        if recovery:
            keyslots = replace_slot(
                keyslots, master, recovery[0], code, params=kdf.params, floor=kdf.floor
            )
        else:
            keyslots, _ = add_slot(
                keyslots, master, code, SlotKind.RECOVERY, params=kdf.params, floor=kdf.floor
            )
        held.save(keyslots)
    return code


def _shred(path: Path) -> None:
    """Overwrite a small key file in place with random bytes, sync, then unlink it."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            size = os.fstat(fd).st_size
            os.write(fd, os.urandom(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()


def panic(home: Home) -> float:
    """Crypto-erase the home; returns the seconds it took.

    The keyslot file and the device key go first: once they are gone nothing in
    the home can be decrypted, even if the removals after them are interrupted.
    Raises HomeMissing if there is nothing to erase.
    """
    if not home.is_set_up() and not home.device_key.exists():
        raise HomeMissing
    start = time.monotonic()
    _shred(home.rekey_pending)  # an interrupted rekey's copies of both keyslot files
    _shred(home.keyslots)
    _shred(home.device_key)
    for pattern in (
        f".{home.keyslots.name}*",
        f".{home.device_key.name}*",
        f".{home.rekey_pending.name}*",
    ):
        for stray in home.root.glob(pattern):  # lock files, a crashed write's temp file
            with contextlib.suppress(OSError):
                stray.unlink()
    for path in home.database_files():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    # Sealed bundles too: the device cannot open them, but whoever ever holds an
    # HQ box key could, and their presence alone says what this laptop was for.
    for folder in (home.attachments, home.outbox):
        if folder.is_dir():
            for entry in folder.iterdir():
                with contextlib.suppress(OSError):
                    entry.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()
    return time.monotonic() - start
