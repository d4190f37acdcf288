"""Finishing a rekey: the commit, and what unlocking does when a rekey was interrupted.

The decision is made by the database, never by the files: if the new master key
opens it (every page authenticating), the rekey happened and is finished (roll
forward); if the old one opens it, the rekey never reached the database and the
pending file is discarded (roll back). docs/keyslots.md, "Rekey", has the table of
crash points and what each leaves.
"""

from __future__ import annotations

from crypto.errors import WrongSecret
from crypto.kdf import MasterKey, Purpose, derive_subkey
from crypto.keyfile import HeldKeyslots
from crypto.keys import constant_time_equal
from crypto.keyslot import Keyslots, SlotKind, replace_slot, unlock
from fieldapp.store.dbrekey import opens_soundly, reached
from fieldapp.store.devicekey import load_device_key, save_device_key
from fieldapp.store.errors import DatabaseDamaged
from fieldapp.store.home import Home
from fieldapp.store.pendingrekey import RekeyPendingCorrupt, read_pending, remove_pending


def database_key(master: MasterKey) -> bytes:
    return derive_subkey(master, Purpose.SQLCIPHER_KEY)


def commit_rekey(
    home: Home, held: HeldKeyslots, keyslots: Keyslots, old: MasterKey | None, new: MasterKey
) -> None:
    """Phase 3, once the database opens under ``new``: device key, keyslots, pending file.

    Each write is atomic; a crash between them leaves the pending file, and the next
    unlock comes back here. ``old`` is None when the keyslots were already switched
    (then the device key was resealed before them). Raises KeyFileError,
    DatabaseDamaged.
    """
    try:
        load_device_key(home.device_key, new)  # already resealed by an interrupted commit
    except DatabaseDamaged:
        if old is None:
            raise
        save_device_key(home.device_key, new, load_device_key(home.device_key, old))
    reached("device-key-written")
    held.save(keyslots)
    reached("keyslots-written")
    remove_pending(home.rekey_pending)
    reached("pending-removed")


# What unlocking tells the person after settling an interrupted rekey.
FINISHED_CODE_LOST = (
    "An interrupted `fieldapp keys rekey` was completed. Its new recovery code was never "
    "shown and the old one no longer works: run `fieldapp keys recovery` now."
)
FINISHED_CODE_KEPT = (
    "An interrupted `fieldapp keys rekey` was completed; the recovery code you typed still works."
)
UNDONE = "An interrupted `fieldapp keys rekey` was undone; nothing changed. Run it again."


def finish_pending_rekey(home: Home, held: HeldKeyslots, secret: str) -> tuple[MasterKey, str]:
    """Finish or undo the interrupted rekey.

    Returns the master key that opens the home now, and a sentence for the person
    (one of FINISHED_CODE_LOST, FINISHED_CODE_KEPT, UNDONE).

    Call with the keyslot lock held and the pending file present. ``secret`` is what
    the person typed: the passphrase, or the old recovery code (finishing with it
    keeps it working, since the new code was never shown). A wrong secret changes
    nothing. Raises WrongSecret, KeyslotCorrupt, KeyFileError, RekeyPendingCorrupt,
    DatabaseDamaged (neither key opens the database soundly).
    """
    pending = read_pending(home.rekey_pending)
    current = held.load()
    try:
        master, slot_id = unlock(current, secret)
        used = current.slot(slot_id)
    except WrongSecret:
        # The keyslot file may already be the new one, which the old recovery code
        # does not open; the old file is in the pending record.
        if not constant_time_equal(current.master_id, pending.new_master_id):
            raise
        previous = pending.previous_keyslots()
        master, slot_id = unlock(previous, secret)
        used = previous.slot(slot_id)
    old: MasterKey | None
    if constant_time_equal(master.key_id, pending.new_master_id):
        old, new = None, master  # the keyslots were already switched
    elif constant_time_equal(master.key_id, pending.old_master_id):
        old, new = master, pending.new_master_key(master)
    else:
        raise RekeyPendingCorrupt
    if opens_soundly(home.database, database_key(new)):
        keyslots = pending.new_keyslots()
        if old is not None and used.kind is SlotKind.RECOVERY:
            # Finished with the old code: keep it working, the new one was never shown.
            recovery = [s.slot_id for s in keyslots.slots if s.kind is SlotKind.RECOVERY]
            if recovery:
                keyslots = replace_slot(
                    keyslots, new, recovery[0], secret, params=used.params, floor=used.params
                )
        commit_rekey(home, held, keyslots, old, new)
        kept = used.kind is SlotKind.RECOVERY
        return new, FINISHED_CODE_KEPT if kept else FINISHED_CODE_LOST
    if old is not None and opens_soundly(home.database, database_key(old)):
        remove_pending(home.rekey_pending)
        return old, UNDONE
    raise DatabaseDamaged


def rekey_interrupted(home: Home) -> bool:
    """True if a rekey left its pending file, or the temp file of one, in the home."""
    name = home.rekey_pending.name
    return home.rekey_pending.exists() or any(home.root.glob(f".{name}.tmp-*"))


def settle_interrupted_rekey(
    home: Home, held: HeldKeyslots, secret: str
) -> tuple[MasterKey, str | None]:
    """Unlock a home where ``rekey_interrupted`` is true: its master key now, and a note.

    A crash before the pending file was renamed into place leaves only its temp
    file: nothing had changed, so it is removed once ``secret`` proves right (no
    note). Raises as ``finish_pending_rekey``.
    """
    if home.rekey_pending.exists():
        return finish_pending_rekey(home, held, secret)
    master, _ = unlock(held.load(), secret)
    remove_pending(home.rekey_pending)  # sweeps the temp file
    return master, None
