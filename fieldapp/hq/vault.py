"""An HQ home: its keys, created, unlocked and opened.

Like a monitor's home, the archive key comes from a master key behind a
passphrase slot and a recovery-code slot. The protection private key (which
opens witness identities) sits behind a second, separate set of keyslots, so a
person holding the HQ passphrase can import, read and export testimony but sees
witnesses only by their code. The root signing key and the box keys live inside
the encrypted archive.

The keyslot file is written last, as on a monitor: a home either has it and is
complete, or it is not a home.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from crypto.errors import InvalidKey
from crypto.kdf import MasterKey, Purpose, derive_subkey, open_secret, seal_secret
from crypto.keyfile import (
    atomic_write,
    ensure_private_dir,
    load_keyslots,
    read_key_file,
    save_keyslots,
)
from crypto.keys import BoxPrivateKey, ProtectionPrivateKey, RootSigningKey
from crypto.keyslot import Keyslots, SlotKind, add_slot, create_keyslots, unlock
from crypto.recovery import generate_recovery_code
from crypto.statements import sign_hq_keys
from fieldapp.hq.schema import HQ_MIGRATIONS
from fieldapp.store.database import Connection, open_database, transaction
from fieldapp.store.errors import DatabaseDamaged, HomeExists, HomeMissing, WrongKindOfHome
from fieldapp.store.home import Home
from fieldapp.store.vault import Clock, KdfPolicy, utc_now

HQ_KEYS_VALIDITY = timedelta(days=365)
"""How long an HQ-keys statement stays valid. Devices stop sealing to a box key
whose statement has expired (docs/statements.md), so HQ refreshes it within
this time (``fieldapp hq rotate-key``)."""

_MAX_KEY_FILE = 1024


class NotAnHqHome(WrongKindOfHome):
    def __init__(self) -> None:
        super().__init__(
            "This home is a monitor's, not an HQ home. Use --home to choose the HQ home, "
            "or run `fieldapp hq init` in an empty folder."
        )


@dataclass(frozen=True, slots=True)
class HqUnlocked:
    """What the HQ passphrase opens: the archive's master key."""

    home: Home
    master: MasterKey

    def open_database(self) -> Connection:
        return open_database(
            self.home.database, derive_subkey(self.master, Purpose.SQLCIPHER_KEY), HQ_MIGRATIONS
        )


@dataclass(frozen=True, slots=True)
class NewHqHome:
    unlocked: HqUnlocked
    recovery_code: str
    protection_recovery_code: str = ""


def _new_keyslots(master: MasterKey, secret: str, kdf: KdfPolicy) -> tuple[Keyslots, str]:
    slots = create_keyslots(master, secret, params=kdf.params, floor=kdf.floor)
    code = generate_recovery_code()
    slots, _ = add_slot(slots, master, code, SlotKind.RECOVERY, params=kdf.params, floor=kdf.floor)
    return slots, code


def create_hq_home(
    home: Home,
    passphrase: str,
    protection_passphrase: str,
    *,
    kdf: KdfPolicy | None = None,
    clock: Clock = utc_now,
) -> NewHqHome:
    """Set up an HQ home: root, box and protection keys, the first HQ-keys statement.

    Refuses a folder that is not empty. Raises HomeExists, KeyslotError,
    KeyFileError, StoreError.
    """
    kdf = kdf or KdfPolicy()
    if home.is_set_up() or (home.root.exists() and any(home.root.iterdir())):
        raise HomeExists
    for folder in (home.root, home.attachments, home.quarantine):
        ensure_private_dir(folder)
    protection_master = MasterKey.generate()
    protection_slots, protection_code = _new_keyslots(protection_master, protection_passphrase, kdf)
    protection = ProtectionPrivateKey.generate()
    subkey = derive_subkey(protection_master, Purpose.PROTECTION_KEY_STORAGE)
    atomic_write(
        home.protection_key,
        seal_secret(subkey, Purpose.PROTECTION_KEY_STORAGE, protection.secret_bytes()),
    )
    save_keyslots(home.protection_keyslots, protection_slots)

    master = MasterKey.generate()
    slots, code = _new_keyslots(master, passphrase, kdf)
    unlocked = HqUnlocked(home, master)
    root = RootSigningKey.generate()
    box = BoxPrivateKey.generate()
    now = clock()
    issued = int(now.timestamp())
    statement = sign_hq_keys(
        root,
        version=1,
        issued_at=issued,
        expires_at=int((now + HQ_KEYS_VALIDITY).timestamp()),
        box=box.public_key,
        protection=protection.public_key,
    )
    stamp = now.isoformat(timespec="seconds")
    conn = unlocked.open_database()
    try:
        with transaction(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("role", "hq"), ("created_at", stamp)],
            )
            conn.execute(
                "INSERT INTO root_keys (key_id, secret, public, created_at) VALUES (?, ?, ?, ?)",
                (root.public_key.key_id, root.secret_bytes(), root.public_key.raw, stamp),
            )
            conn.execute(
                "INSERT INTO box_keys (key_id, secret, public, created_at) VALUES (?, ?, ?, ?)",
                (box.public_key.key_id, box.secret_bytes(), box.public_key.raw, stamp),
            )
            conn.execute(
                "INSERT INTO protection_keys (key_id, public, created_at) VALUES (?, ?, ?)",
                (protection.public_key.key_id, protection.public_key.raw, stamp),
            )
            conn.execute(
                "INSERT INTO statements (version, statement, issued_at) VALUES (1, ?, ?)",
                (statement, issued),
            )
    finally:
        conn.close()
    save_keyslots(home.keyslots, slots)
    return NewHqHome(unlocked, code, protection_code)


def _require_hq(home: Home) -> None:
    if not home.is_set_up():
        raise HomeMissing
    if not home.is_hq():
        raise NotAnHqHome


def unlock_hq(home: Home, secret: str) -> HqUnlocked:
    """Open the archive's keys with the HQ passphrase or its recovery code.

    Raises HomeMissing, NotAnHqHome, WrongSecret, KeyslotCorrupt, KeyFileError.
    """
    _require_hq(home)
    master, _ = unlock(load_keyslots(home.keyslots), secret)
    return HqUnlocked(home, master)


def unlock_protection(home: Home, secret: str) -> ProtectionPrivateKey:
    """Open the protection private key with its own passphrase or recovery code.

    Raises HomeMissing, NotAnHqHome, WrongSecret, KeyslotCorrupt, KeyFileError,
    DatabaseDamaged.
    """
    _require_hq(home)
    master, _ = unlock(load_keyslots(home.protection_keyslots), secret)
    blob = read_key_file(home.protection_key, _MAX_KEY_FILE)
    subkey = derive_subkey(master, Purpose.PROTECTION_KEY_STORAGE)
    try:
        return ProtectionPrivateKey(open_secret(subkey, Purpose.PROTECTION_KEY_STORAGE, blob))
    except InvalidKey as e:
        raise DatabaseDamaged from e
