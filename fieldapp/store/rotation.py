"""Rotating this device's signing key, crash-safely, and the statements that prove it.

``rotate_device`` makes a new device key and a rotation statement signed by the
old and the new key (``crypto.statements.sign_device_rotation``, version N+1),
then switches the sealed key file in three steps:

1. one transaction records the statement, both public keys and the new secret
   as *pending* (the database is encrypted);
2. the key file is rewritten atomically with the new key;
3. one transaction marks the rotation *done* and erases the secret column.

The key file is the truth. Opening the store finishes a pending rotation by
looking at the key actually in the file: the new key means step 2 happened
(mark it done), the old key means it did not (forget the statement, which
never left the device). So a crash at any instant leaves a home that opens and
signs with a key its recorded chain leads to. Every bundle built afterwards
carries the done statements, version 1 first (docs/statements.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crypto.keyfile import hold_keyslots
from crypto.keys import DeviceSigningKey, DeviceVerifyKey
from crypto.statements import sign_device_rotation
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.database import Connection, transaction
from fieldapp.store.devicekey import load_device_key, save_device_key
from fieldapp.store.errors import DatabaseDamaged
from fieldapp.store.home import Home

if TYPE_CHECKING:
    from fieldapp.store.store import FieldStore

# A bundle carries every rotation statement from version 1 (so HQ can follow the
# chain whatever it holds and in whatever order bundles arrive), and a manifest
# holds at most sync.payload.MAX_STATEMENTS of them.
MAX_ROTATIONS = 64
FAULT_STEPS = ("recorded", "written", "done")


def _no_fault(step: str) -> None:
    """The default fault hook: does nothing."""


# Test seam, as crypto.keyfile.fault_hook: called with each name in FAULT_STEPS.
fault_hook: Callable[[str], None] = _no_fault


class RotationRefused(FieldappError):
    """The device key was not rotated; nothing was changed."""

    exit_code = ExitCode.KEYS


class DeviceKeyMismatch(FieldappError):
    """The device key file holds a key this home's rotation record does not lead to."""

    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "The device key file does not match this home's record of key rotations. If "
            "another fieldapp rotated the key just now, open the home again; otherwise the "
            "key file and the database come from different backups: restore both from the "
            "same one, or ask HQ to enrol this device again. Nothing was changed."
        )


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation of this device's key, as recorded."""

    version: int
    old: DeviceVerifyKey
    new: DeviceVerifyKey
    statement: bytes
    created_at: str


def _lock_path(home: Home) -> str:
    # Starts with ".device.key" so panic's sweep of the key file's strays removes it.
    return str(home.root / f".{home.device_key.name}.rotation.lock")


@contextlib.contextmanager
def _rotation_lock(home: Home, *, wait: bool) -> Iterator[bool]:
    """Hold the rotation lock; yields False (without it) if ``wait`` is false and it is held.

    Serialises rotations, and keeps a store being opened in another process from
    judging a rotation that is still in progress. flock dies with its process.
    """
    fd = os.open(_lock_path(home), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def rotations(store: FieldStore) -> list[Rotation]:
    """Every finished rotation of this device's key, version 1 first."""
    out = []
    for version, old, new, statement, created in store._query(
        "SELECT version, old_public, new_public, statement, created_at FROM device_rotations"
        " WHERE state = 'done' ORDER BY version"
    ):
        try:
            out.append(
                Rotation(
                    int(version),
                    DeviceVerifyKey(bytes(old)),
                    DeviceVerifyKey(bytes(new)),
                    bytes(statement),
                    str(created),
                )
            )
        except ValueError as e:
            raise DatabaseDamaged from e
    return out


def statements(store: FieldStore) -> tuple[bytes, ...]:
    """The rotation statements every new bundle carries: all of them, version 1 first."""
    return tuple(r.statement for r in rotations(store))


def finish_pending(store: FieldStore) -> None:
    """Finish or undo a rotation a crash interrupted, by the key in the file; check the rest.

    Called when the store opens. Skipped while another process is rotating (it
    finishes its own). Raises DeviceKeyMismatch if the key file holds neither key
    of a pending rotation, or not the newest key of the finished ones.
    """
    if not store._query("SELECT 1 FROM device_rotations LIMIT 1"):
        return  # never rotated: nothing to settle, and no lock file to create
    with contextlib.ExitStack() as stack:
        try:
            held = stack.enter_context(_rotation_lock(store.home, wait=False))
        except OSError:
            held = True  # no lock file possible (a read-only copy): nobody rotates there
        if held:
            _reconcile(store)


def _reconcile(store: FieldStore) -> None:
    pending = store._query(
        "SELECT version, old_public, new_public FROM device_rotations WHERE state = 'pending'"
    )
    in_file = store.device_key
    if pending:
        in_file = load_device_key(store.home.device_key, store._unlocked.master).public_key
        with store._lock, transaction(store._connection()) as c:
            for version, old, new in pending:
                if in_file.raw == bytes(new):
                    _mark_done(c, int(version), in_file)
                elif in_file.raw == bytes(old):
                    c.execute("DELETE FROM device_rotations WHERE version = ?", (version,))
                else:
                    raise DeviceKeyMismatch
        if in_file != store.device_key:
            store._switch_device(load_device_key(store.home.device_key, store._unlocked.master))
    done = rotations(store)
    if done and done[-1].new != store.device_key:
        raise DeviceKeyMismatch


def _mark_done(c: Connection, version: int, new: DeviceVerifyKey) -> None:
    c.execute(
        "UPDATE device_rotations SET state = 'done', new_secret = NULL WHERE version = ?",
        (version,),
    )
    c.execute("UPDATE meta SET value = ? WHERE key = 'device_key'", (new.raw.hex(),))


def rotate_device(store: FieldStore) -> Rotation:
    """Replace this device's signing key; returns the rotation. See the module docstring.

    Raises RotationRefused (too many rotations already, or another rotation in
    progress), DeviceKeyMismatch, KeyFileError (the key file could not be
    written: the old key stays), StoreError.
    """
    home, master = store.home, store._unlocked.master
    # The keyslot lock too: a rekey (fieldapp/store/rekey.py) holds it from start to
    # end and reseals the device key file, so the two never interleave.
    with _rotation_lock(home, wait=False) as held, hold_keyslots(home.keyslots) as slots:
        if not held:
            raise RotationRefused(
                "Another fieldapp is rotating this device's key right now; nothing was changed."
            )
        if home.rekey_pending.exists() or slots.load().master_id != master.key_id:
            raise RotationRefused(
                "This device's keys were changed (keys rekey) since it was unlocked; "
                "nothing was changed. Run the command again."
            )
        _reconcile(store)
        old = store._unlocked.device
        if load_device_key(home.device_key, master) != old:
            raise DeviceKeyMismatch  # another process rotated since this store opened
        version = len(rotations(store)) + 1
        if version > MAX_ROTATIONS:
            raise RotationRefused(
                f"This device's key was already rotated {MAX_ROTATIONS} times, the most a "
                "bundle can prove to HQ; nothing was changed. Ask HQ to enrol it again."
            )
        new = DeviceSigningKey.generate()
        issued_at = max(0, int(store._clock().timestamp()))
        statement = sign_device_rotation(old, new, version=version, issued_at=issued_at)
        now = store._now()
        with store._lock, transaction(store._connection()) as c:
            c.execute(
                "INSERT INTO device_rotations (version, statement, old_public, new_public,"
                " new_secret, state, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (
                    version,
                    statement,
                    old.public_key.raw,
                    new.public_key.raw,
                    new.secret_bytes(),
                    now,
                ),
            )
        fault_hook("recorded")
        try:
            save_device_key(home.device_key, master, new)
        except BaseException:
            # The file holds the old key or, if the write got as far as the rename,
            # the new one: settle the record on whichever it is.
            with contextlib.suppress(Exception):
                _reconcile(store)
            raise
        fault_hook("written")
        with store._lock, transaction(store._connection()) as c:
            _mark_done(c, version, new.public_key)
        store._switch_device(new)
        fault_hook("done")
        return Rotation(version, old.public_key, new.public_key, statement, now)
