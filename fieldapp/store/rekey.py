"""``fieldapp keys rekey``: a new master key for a monitor's home, crash-safe.

Three phases under the keyslot file's lock (docs/keyslots.md, "Rekey"):

1. write ``rekey-pending.json``: the new keyslots and the new master key sealed
   under the old one, atomically; nothing else has changed yet;
2. re-encrypt the database (fieldapp.store.dbrekey) and verify it;
3. commit (fieldapp.store.rekeyrecovery.commit_rekey): reseal the device key,
   replace the keyslot file, remove the pending file.

A crash anywhere leaves a home that the next unlock finishes or undoes, deciding
by which key opens the database. Attachments are not touched: their keys live in
the database and move with it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from crypto.kdf import MasterKey
from crypto.keyfile import hold_keyslots
from crypto.keyslot import SlotKind, add_slot, create_keyslots, unlock
from crypto.recovery import generate_recovery_code
from fieldapp.store.dbrekey import opens_at_all, reached, rekey_database
from fieldapp.store.devicekey import load_device_key
from fieldapp.store.errors import HomeMissing, hq_home_refused
from fieldapp.store.home import Home
from fieldapp.store.pendingrekey import make_pending, remove_pending, write_pending
from fieldapp.store.rekeyrecovery import commit_rekey, database_key, finish_pending_rekey
from fieldapp.store.vault import KdfPolicy


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """What a rekey gives back: the new recovery code (shown once) and how long it took."""

    recovery_code: str
    seconds: float


_PRODUCTION = KdfPolicy()


def rekey_home(home: Home, passphrase: str, *, kdf: KdfPolicy = _PRODUCTION) -> Rekeyed:
    """Move the home to a new master key; returns the new recovery code.

    The passphrase stays the same; the old recovery code stops working. Finishes
    an earlier interrupted rekey first. Raises HomeMissing, WrongKindOfHome (an HQ
    home), WrongSecret, HomeInUse (another process has the database open),
    RekeyFailed, DatabaseDamaged, KeyFileError, KeyslotError.
    """
    if not home.is_set_up():
        raise HomeMissing
    if home.is_hq():
        raise hq_home_refused()
    started = time.monotonic()
    with hold_keyslots(home.keyslots) as held:
        if home.rekey_pending.exists():  # this run's new recovery code replaces any note
            finish_pending_rekey(home, held, passphrase)
        current = held.load()
        old, _ = unlock(current, passphrase, kinds=(SlotKind.PASSPHRASE,))
        load_device_key(home.device_key, old)  # refuse a home whose device key is not ours
        new = MasterKey.generate()
        code = generate_recovery_code()
        keyslots = create_keyslots(new, passphrase, params=kdf.params, floor=kdf.floor)
        keyslots, _ = add_slot(
            keyslots, new, code, SlotKind.RECOVERY, params=kdf.params, floor=kdf.floor
        )
        write_pending(home.rekey_pending, make_pending(old, new, keyslots, current))
        reached("pending-written")
        try:
            rekey_database(home.database, database_key(old), database_key(new))
        except BaseException:
            # Undo only what certainly never happened; anything else stays pending
            # for the next unlock, which decides by the database.
            with contextlib.suppress(Exception):  # the error being reported matters more
                if opens_at_all(home.database, database_key(old)):
                    remove_pending(home.rekey_pending)
            raise
        commit_rekey(home, held, keyslots, old, new)
    return Rekeyed(code, time.monotonic() - started)
