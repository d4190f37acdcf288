"""The pending-rekey file: a rekey's new keys, written before the database is touched.

While ``fieldapp keys rekey`` runs, ``rekey-pending.json`` beside the keyslot file
holds everything needed to finish the rekey or to undo it, whatever instant a
crash comes at (docs/keyslots.md, "Rekey"):

- the ids of the old and the new master key;
- the new master key sealed under the old one's ``rekey-handover`` subkey, so any
  secret that opens the old keyslots (the old recovery code too) can finish it;
- the new keyslot file (the passphrase and a new recovery code, wrapping the new
  master key), byte for byte as it will be written;
- the old keyslot file, so the old recovery code can still finish the rekey after
  the keyslot file was replaced (the new code was never shown).

The device key is not in it: finishing reseals whichever copy opens (under the
old or the new master key), so this file never depends on the device key's format.
It holds no key in the clear. The format is strict like the keyslot file's: one
canonical spelling, every field checked, ``RekeyPendingCorrupt`` for anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import InvalidKey, KeyslotError
from crypto.kdf import MASTER_ID_BYTES, MasterKey, Purpose, derive_subkey, open_secret, seal_secret
from crypto.keyfile import atomic_write, read_key_file, remove_key_file
from crypto.keys import constant_time_equal
from crypto.keyslot import MAX_ENCODED_BYTES, Keyslots, decode, encode
from fieldapp.errors import ExitCode
from fieldapp.store.errors import StoreError

FORMAT = "fieldapp/rekey-pending"
VERSION = 1
_FIELDS = frozenset(
    {
        "format",
        "version",
        "old_master_id",
        "new_master_id",
        "new_master",
        "keyslots",
        "old_keyslots",
    }
)
_MAX_SEALED = 1024
MAX_BYTES = 3 * MAX_ENCODED_BYTES  # base64 of two keyslot files plus small fields


class RekeyPendingCorrupt(StoreError):
    """The pending-rekey file is damaged or does not belong to this home."""

    exit_code = ExitCode.DATA

    def __init__(self) -> None:
        super().__init__(
            "An interrupted rekey left a file that is damaged or belongs to another home "
            "(rekey-pending.json). Restore the home folder from a backup."
        )


@dataclass(frozen=True, slots=True)
class PendingRekey:
    """One rekey in flight. ``new_master`` is sealed; see ``new_master_key``."""

    old_master_id: bytes
    new_master_id: bytes
    new_master: bytes
    keyslots: bytes
    old_keyslots: bytes

    def new_keyslots(self) -> Keyslots:
        """The new keyslot file, decoded. Raises RekeyPendingCorrupt."""
        return _keyslots(self.keyslots, self.new_master_id)

    def previous_keyslots(self) -> Keyslots:
        """The keyslot file from before the rekey, decoded. Raises RekeyPendingCorrupt."""
        return _keyslots(self.old_keyslots, self.old_master_id)

    def new_master_key(self, old: MasterKey) -> MasterKey:
        """The new master key, opened with the old one. Raises RekeyPendingCorrupt."""
        if not constant_time_equal(old.key_id, self.old_master_id):
            raise RekeyPendingCorrupt
        try:
            raw = open_secret(
                derive_subkey(old, Purpose.REKEY_HANDOVER), Purpose.REKEY_HANDOVER, self.new_master
            )
            new = MasterKey(raw)
        except InvalidKey as e:
            raise RekeyPendingCorrupt from e
        if not constant_time_equal(new.key_id, self.new_master_id):
            raise RekeyPendingCorrupt
        return new


def _keyslots(raw: bytes, master_id: bytes) -> Keyslots:
    try:
        ks = decode(raw)
    except KeyslotError as e:
        raise RekeyPendingCorrupt from e
    if not constant_time_equal(ks.master_id, master_id):
        raise RekeyPendingCorrupt
    return ks


def make_pending(
    old: MasterKey, new: MasterKey, keyslots: Keyslots, old_keyslots: Keyslots
) -> PendingRekey:
    """The pending record for a rekey from ``old`` to ``new``."""
    handover = seal_secret(
        derive_subkey(old, Purpose.REKEY_HANDOVER), Purpose.REKEY_HANDOVER, new.secret_bytes()
    )
    return PendingRekey(old.key_id, new.key_id, handover, encode(keyslots), encode(old_keyslots))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def encode_pending(p: PendingRekey) -> bytes:
    """Canonical bytes: compact JSON, sorted keys, ASCII, one trailing newline."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "old_master_id": _b64(p.old_master_id),
        "new_master_id": _b64(p.new_master_id),
        "new_master": _b64(p.new_master),
        "keyslots": _b64(p.keyslots),
        "old_keyslots": _b64(p.old_keyslots),
    }
    return (
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    )


def _field(doc: dict[str, object], name: str, max_len: int, exact: int | None = None) -> bytes:
    value = doc[name]
    if type(value) is not str:
        raise RekeyPendingCorrupt
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RekeyPendingCorrupt from e
    if len(raw) > max_len or (exact is not None and len(raw) != exact):
        raise RekeyPendingCorrupt
    return raw


def decode_pending(data: bytes) -> PendingRekey:
    """Parse the file's bytes, strictly. Raises RekeyPendingCorrupt for anything else."""
    if not isinstance(data, bytes) or len(data) > MAX_BYTES:
        raise RekeyPendingCorrupt
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RekeyPendingCorrupt from e
    if not isinstance(doc, dict) or doc.keys() != _FIELDS:
        raise RekeyPendingCorrupt
    if doc["format"] != FORMAT or type(doc["version"]) is not int or doc["version"] != VERSION:
        raise RekeyPendingCorrupt
    pending = PendingRekey(
        old_master_id=_field(doc, "old_master_id", MASTER_ID_BYTES, MASTER_ID_BYTES),
        new_master_id=_field(doc, "new_master_id", MASTER_ID_BYTES, MASTER_ID_BYTES),
        new_master=_field(doc, "new_master", _MAX_SEALED),
        keyslots=_field(doc, "keyslots", MAX_ENCODED_BYTES),
        old_keyslots=_field(doc, "old_keyslots", MAX_ENCODED_BYTES),
    )
    if encode_pending(pending) != data:
        raise RekeyPendingCorrupt
    return pending


def write_pending(path: Path, pending: PendingRekey) -> None:
    """Atomically write the pending file (see crypto/keyfile.py). Raises KeyFileError."""
    atomic_write(path, encode_pending(pending))


def read_pending(path: Path) -> PendingRekey:
    """Read and decode the pending file. Raises KeyFileError, RekeyPendingCorrupt."""
    return decode_pending(read_key_file(path, MAX_BYTES))


def remove_pending(path: Path) -> None:
    """Remove the pending file durably, with any temp file of it. Raises KeyFileError."""
    remove_key_file(path)
