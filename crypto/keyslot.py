"""Keyslots, LUKS-style: one random master key, wrapped once per passphrase or code.

Each slot holds the master key encrypted (XChaCha20-Poly1305) under
Argon2id(secret, salt, params), with its own salt and parameters. The associated
data binds the format, the file's master key id, and the slot's id, kind, KDF
algorithm, parameters and salt, so none of them can be changed or swapped between
slots without the slot failing to open. Changing a passphrase rewraps one slot;
the master key (and so the database) is untouched.

Everything here is pure: bytes and objects in, objects or exceptions out. The
file format, its bounds and the reasons for them are in docs/keyslots.md.
"""

from __future__ import annotations

import base64
import json
import struct
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from crypto import recovery
from crypto.errors import KeyslotCorrupt, KeyslotError, WrongSecret
from crypto.kdf import (
    AEAD_NONCE_BYTES,
    AEAD_TAG_BYTES,
    KDF_FLOOR,
    MASTER_ID_BYTES,
    PRODUCTION_KDF,
    SALT_BYTES,
    KdfParams,
    MasterKey,
    argon2id,
    params_in_range,
    require_strength,
)
from crypto.keys import KEY_BYTES, constant_time_equal

FORMAT = "fieldapp/keyslots"
VERSION = 1
KDF_ALG = "argon2id13"
MAX_SLOTS = 8
MAX_ENCODED_BYTES = 64 * 1024
WRAPPED_BYTES = KEY_BYTES + AEAD_TAG_BYTES
_AAD_PREFIX = b"fieldapp/v1/keyslot\x00"

_TOP_FIELDS = frozenset({"format", "version", "master_id", "slots"})
_SLOT_FIELDS = frozenset({"id", "kind", "kdf", "salt", "nonce", "wrapped"})
_KDF_FIELDS = frozenset({"alg", "ops", "mem"})


class SlotKind(StrEnum):
    """What kind of secret opens a slot; decides how the typed text becomes bytes."""

    PASSPHRASE = "passphrase"  # noqa: S105 - a slot kind, not a password
    RECOVERY = "recovery"


@dataclass(frozen=True, slots=True)
class Slot:
    """One wrapped copy of the master key. Valid by construction."""

    slot_id: int
    kind: SlotKind
    params: KdfParams
    salt: bytes
    nonce: bytes
    wrapped: bytes

    def __post_init__(self) -> None:
        if not (
            type(self.slot_id) is int
            and 0 <= self.slot_id < MAX_SLOTS
            and isinstance(self.kind, SlotKind)
            and isinstance(self.params, KdfParams)
            and params_in_range(self.params)
            and _is_bytes(self.salt, SALT_BYTES)
            and _is_bytes(self.nonce, AEAD_NONCE_BYTES)
            and _is_bytes(self.wrapped, WRAPPED_BYTES)
        ):
            raise KeyslotCorrupt()


@dataclass(frozen=True, slots=True)
class Keyslots:
    """The whole keyslot file: the master key's id and 1 to 8 slots, sorted by id.

    Always holds at least one passphrase slot.
    """

    master_id: bytes
    slots: tuple[Slot, ...]

    def __post_init__(self) -> None:
        if not (
            _is_bytes(self.master_id, MASTER_ID_BYTES)
            and isinstance(self.slots, tuple)
            and 1 <= len(self.slots) <= MAX_SLOTS
            and all(isinstance(s, Slot) for s in self.slots)
        ):
            raise KeyslotCorrupt()
        ids = [s.slot_id for s in self.slots]
        if ids != sorted(set(ids)) or SlotKind.PASSPHRASE not in {s.kind for s in self.slots}:
            raise KeyslotCorrupt()

    def slot(self, slot_id: int) -> Slot:
        """The slot with this id.

        Raises:
            KeyslotError: there is no such slot.
        """
        for s in self.slots:
            if s.slot_id == slot_id:
                return s
        raise KeyslotError("There is no keyslot with that number.")


def _is_bytes(value: object, length: int) -> bool:
    return type(value) is bytes and len(value) == length


# --- secrets ---------------------------------------------------------------------


def _passphrase_bytes(passphrase: str) -> bytes:
    """NFC then UTF-8, so the same passphrase typed on any keyboard gives the same bytes.

    Raises:
        KeyslotError: the passphrase is empty or cannot be encoded.
    """
    if not isinstance(passphrase, str) or not passphrase:
        raise KeyslotError("A passphrase cannot be empty. Choose one and try again.")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError as e:
        raise KeyslotError("The passphrase contains characters that cannot be stored.") from e


def _secret_bytes(kind: SlotKind, secret: str) -> bytes:
    """Raises KeyslotError (passphrase) or WrongSecret (recovery code)."""
    if kind is SlotKind.RECOVERY:
        return recovery.normalize_recovery_code(secret)
    return _passphrase_bytes(secret)


# --- wrapping --------------------------------------------------------------------


def _aad(master_id: bytes, slot_id: int, kind: SlotKind, params: KdfParams, salt: bytes) -> bytes:
    kind_b = kind.value.encode("ascii")
    alg_b = KDF_ALG.encode("ascii")
    return b"".join(
        [
            _AAD_PREFIX,
            master_id,
            struct.pack(">BB", slot_id, len(kind_b)),
            kind_b,
            struct.pack(">B", len(alg_b)),
            alg_b,
            struct.pack(">IQ", params.ops, params.mem),
            salt,
        ]
    )


def _wrap(
    master: MasterKey, secret: bytes, kind: SlotKind, slot_id: int, params: KdfParams
) -> Slot:
    salt = nacl.utils.random(SALT_BYTES)
    nonce = nacl.utils.random(AEAD_NONCE_BYTES)
    kek = argon2id(secret, salt, params)
    aad = _aad(master.key_id, slot_id, kind, params, salt)
    wrapped = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        master.secret_bytes(), aad, nonce, kek
    )
    return Slot(slot_id, kind, params, salt, nonce, bytes(wrapped))


def _try_open(ks: Keyslots, slot: Slot, secret: bytes) -> MasterKey | None:
    kek = argon2id(secret, slot.salt, slot.params)
    aad = _aad(ks.master_id, slot.slot_id, slot.kind, slot.params, slot.salt)
    try:
        raw = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(slot.wrapped, aad, slot.nonce, kek)
    except nacl.exceptions.CryptoError:
        return None
    master = MasterKey(bytes(raw))
    # Only someone who knew this slot's secret could have written a slot that opens;
    # if it holds another key, the file was assembled from pieces: refuse it.
    if not constant_time_equal(master.key_id, ks.master_id):
        raise KeyslotCorrupt()
    return master


def _require_owner(ks: Keyslots, master: MasterKey) -> None:
    if not constant_time_equal(master.key_id, ks.master_id):
        raise KeyslotError("That key does not belong to this keyslot file.")


def _with_slot(ks: Keyslots, slot: Slot) -> Keyslots:
    others = [s for s in ks.slots if s.slot_id != slot.slot_id]
    return Keyslots(ks.master_id, tuple(sorted([*others, slot], key=lambda s: s.slot_id)))


# --- operations ------------------------------------------------------------------


def create_keyslots(
    master: MasterKey,
    passphrase: str,
    *,
    params: KdfParams = PRODUCTION_KDF,
    floor: KdfParams = KDF_FLOOR,
) -> Keyslots:
    """A new keyslot file with one passphrase slot (id 0) wrapping ``master``.

    Raises:
        WeakParameters: ``params`` are below ``floor``.
        KeyslotError: empty passphrase, or parameters outside the supported range.
    """
    require_strength(params, floor)
    secret = _passphrase_bytes(passphrase)
    slot = _wrap(master, secret, SlotKind.PASSPHRASE, 0, params)
    return Keyslots(master.key_id, (slot,))


def add_slot(
    ks: Keyslots,
    master: MasterKey,
    secret: str,
    kind: SlotKind,
    *,
    params: KdfParams = PRODUCTION_KDF,
    floor: KdfParams = KDF_FLOOR,
) -> tuple[Keyslots, int]:
    """Add a slot opened by ``secret``; returns the new keyslots and the new slot's id.

    ``master`` must be the key this file wraps (as returned by ``unlock``).

    Raises:
        WeakParameters: ``params`` are below ``floor``.
        WrongSecret: ``kind`` is RECOVERY and ``secret`` is not a valid code.
        KeyslotError: empty passphrase, all slots in use, ``master`` is not this
            file's key, or parameters outside the supported range.
    """
    require_strength(params, floor)
    _require_owner(ks, master)
    free = sorted(set(range(MAX_SLOTS)) - {s.slot_id for s in ks.slots})
    if not free:
        raise KeyslotError(f"All {MAX_SLOTS} keyslots are in use; remove one first.")
    slot = _wrap(master, _secret_bytes(kind, secret), kind, free[0], params)
    return _with_slot(ks, slot), slot.slot_id


def replace_slot(
    ks: Keyslots,
    master: MasterKey,
    slot_id: int,
    secret: str,
    *,
    params: KdfParams = PRODUCTION_KDF,
    floor: KdfParams = KDF_FLOOR,
) -> Keyslots:
    """Rewrap slot ``slot_id`` (same kind) under a new secret, salt and parameters.

    For when the old secret is gone: unlock with a recovery code, then give the
    passphrase slot a new passphrase (or the recovery slot a new code).

    Raises:
        WeakParameters: ``params`` are below ``floor``.
        WrongSecret: the slot is a recovery slot and ``secret`` is not a valid code.
        KeyslotError: no such slot, empty passphrase, ``master`` is not this file's
            key, or parameters outside the supported range.
    """
    require_strength(params, floor)
    _require_owner(ks, master)
    kind = ks.slot(slot_id).kind
    return _with_slot(ks, _wrap(master, _secret_bytes(kind, secret), kind, slot_id, params))


def change_secret(
    ks: Keyslots,
    old_secret: str,
    new_secret: str,
    *,
    kind: SlotKind = SlotKind.PASSPHRASE,
    params: KdfParams = PRODUCTION_KDF,
    floor: KdfParams = KDF_FLOOR,
) -> Keyslots:
    """Rewrap the slot of ``kind`` that ``old_secret`` opens under ``new_secret``.

    Only that slot changes (the first one, if the old secret opens several); it gets
    a fresh salt and nonce. The master key and every other slot are unchanged.

    Raises:
        WrongSecret: ``old_secret`` opens no slot of ``kind`` (or, for RECOVERY,
            ``new_secret`` is not a valid code).
        WeakParameters: ``params`` are below ``floor``.
        KeyslotError: empty new passphrase, or parameters outside the supported range.
        KeyslotCorrupt: a slot opened but holds a key foreign to this file.
    """
    require_strength(params, floor)
    _secret_bytes(kind, new_secret)  # refuse a bad new secret before the slow unlock
    master, slot_id = unlock(ks, old_secret, kinds=(kind,))
    return replace_slot(ks, master, slot_id, new_secret, params=params, floor=floor)


def remove_slot(ks: Keyslots, slot_id: int) -> Keyslots:
    """The keyslots without slot ``slot_id``.

    The removed wrapping is gone from the new file only: copies of the old file
    (backups, disk blocks) still open with the old secret. See docs/keyslots.md.

    Raises:
        KeyslotError: no such slot, or it is the last passphrase slot.
    """
    ks.slot(slot_id)
    rest = tuple(s for s in ks.slots if s.slot_id != slot_id)
    if SlotKind.PASSPHRASE not in {s.kind for s in rest}:
        raise KeyslotError(
            "That is the last passphrase; add another passphrase before removing it."
        )
    return Keyslots(ks.master_id, rest)


def unlock(
    ks: Keyslots, secret: str, *, kinds: Collection[SlotKind] | None = None
) -> tuple[MasterKey, int]:
    """The master key and the id of the first slot ``secret`` opens.

    Slots of the kind the secret looks like are tried first, so a recovery code
    does not pay for an Argon2id run per passphrase slot before its own.

    Raises:
        WrongSecret: no slot opens (the message says so if it is a recovery code
            with a typo).
        KeyslotCorrupt: a slot opened but holds a key foreign to this file.
    """
    if not isinstance(secret, str) or not secret:
        raise WrongSecret()
    looks_like_code = _is_recovery_code(secret)
    candidates = sorted(
        (s for s in ks.slots if kinds is None or s.kind in kinds),
        key=lambda s: ((s.kind is SlotKind.RECOVERY) != looks_like_code, s.slot_id),
    )
    typo = False
    for slot in candidates:
        try:
            secret_bytes = _secret_bytes(slot.kind, secret)
        except KeyslotError as e:
            # Not a valid secret of this slot's kind, so it cannot open it; remember a
            # recovery-code typo so the error can say so.
            typo = typo or e.message == recovery.TYPO_MESSAGE
            continue
        master = _try_open(ks, slot, secret_bytes)
        if master is not None:
            return master, slot.slot_id
    raise WrongSecret(recovery.TYPO_MESSAGE if typo else None)


def _is_recovery_code(secret: str) -> bool:
    try:
        recovery.normalize_recovery_code(secret)
    except WrongSecret:
        return False
    return True


# --- encoding --------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def encode(ks: Keyslots) -> bytes:
    """The canonical file bytes: compact JSON, sorted keys, ASCII, one trailing newline."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "master_id": _b64(ks.master_id),
        "slots": [
            {
                "id": s.slot_id,
                "kind": s.kind.value,
                "kdf": {"alg": KDF_ALG, "ops": s.params.ops, "mem": s.params.mem},
                "salt": _b64(s.salt),
                "nonce": _b64(s.nonce),
                "wrapped": _b64(s.wrapped),
            }
            for s in ks.slots
        ],
    }
    return (
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    )


def _refuse(_: object) -> object:
    raise KeyslotCorrupt()


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise KeyslotCorrupt()
    return doc


def _object(value: object, fields: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict) or value.keys() != fields:
        raise KeyslotCorrupt()
    return value


def _int(value: object) -> int:
    if type(value) is not int:  # bool is an int subclass: refuse it
        raise KeyslotCorrupt()
    return value


def _str(value: object) -> str:
    if type(value) is not str:
        raise KeyslotCorrupt()
    return value


def _bytes(value: object) -> bytes:
    try:
        return base64.b64decode(_str(value), validate=True)
    except ValueError as e:  # binascii.Error, or non-ASCII text from a \u escape
        raise KeyslotCorrupt() from e


def _slot(value: object) -> Slot:
    doc = _object(value, _SLOT_FIELDS)
    kdf = _object(doc["kdf"], _KDF_FIELDS)
    if _str(kdf["alg"]) != KDF_ALG:
        raise KeyslotCorrupt()
    try:
        kind = SlotKind(_str(doc["kind"]))
    except ValueError as e:
        raise KeyslotCorrupt() from e
    params = KdfParams(ops=_int(kdf["ops"]), mem=_int(kdf["mem"]))
    return Slot(
        _int(doc["id"]),
        kind,
        params,
        _bytes(doc["salt"]),
        _bytes(doc["nonce"]),
        _bytes(doc["wrapped"]),
    )


def decode(data: bytes) -> Keyslots:
    """Parse keyslot file bytes, strictly. Does no key derivation at all.

    The size bound is checked first, then the format and version, then every
    field: exact field sets, integer types, lengths, KDF parameters within
    ``[libsodium minimum, KDF_CEILING]``, at most 8 slots. Finally the bytes must be
    exactly what ``encode`` would write, so a file has one valid spelling.

    Raises:
        KeyslotCorrupt: anything else than a canonical version-1 keyslot file.
    """
    if not isinstance(data, bytes) or len(data) > MAX_ENCODED_BYTES:
        raise KeyslotCorrupt()
    try:
        doc = json.loads(
            data.decode("ascii"),
            object_pairs_hook=_unique_pairs,
            parse_float=_refuse,
            parse_constant=_refuse,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise KeyslotCorrupt() from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyslotCorrupt()
    version = _int(doc.get("version"))
    if version != VERSION:
        if version > VERSION:
            raise KeyslotCorrupt(
                "This keyslot file was written by a newer fieldapp; update fieldapp to open it."
            )
        raise KeyslotCorrupt()
    doc = _object(doc, _TOP_FIELDS)
    raw_slots = doc["slots"]
    if not isinstance(raw_slots, list) or not 1 <= len(raw_slots) <= MAX_SLOTS:
        raise KeyslotCorrupt()
    ks = Keyslots(_bytes(doc["master_id"]), tuple(_slot(s) for s in raw_slots))
    if encode(ks) != data:
        raise KeyslotCorrupt()
    return ks
