"""Keyslots: operations, the exact file format, and a strict decoder under attack."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import struct
import unicodedata
from collections.abc import Callable
from typing import Any

import nacl.bindings
import nacl.pwhash.argon2id
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import kdf
from crypto.errors import KeyslotCorrupt, KeyslotError, WeakParameters, WrongSecret
from crypto.kdf import KDF_CEILING, KdfParams, MasterKey
from crypto.keyslot import (
    MAX_ENCODED_BYTES,
    MAX_SLOTS,
    Keyslots,
    Slot,
    SlotKind,
    add_slot,
    change_secret,
    create_keyslots,
    decode,
    encode,
    remove_slot,
    replace_slot,
    unlock,
)
from crypto.recovery import generate_recovery_code
from tests.conftest import CHEAP_KDF, KdfKwargs

MiB = 1024 * 1024
JsonDoc = dict[str, Any]


@pytest.fixture
def no_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any Argon2id call fail the test."""

    def refuse(*args: object) -> bytes:
        raise AssertionError("Argon2id must not run here")

    monkeypatch.setattr("nacl.bindings.crypto_pwhash_alg", refuse)


def _two_passphrases(cheap_kdf: KdfKwargs) -> tuple[MasterKey, Keyslots]:
    master = MasterKey.generate()
    ks = create_keyslots(master, "first passphrase", **cheap_kdf)
    ks, _ = add_slot(ks, master, "second passphrase", SlotKind.PASSPHRASE, **cheap_kdf)
    return master, ks


# --- operations ------------------------------------------------------------------


def test_create_and_unlock_round_trip(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "correct horse battery staple", **cheap_kdf)
    assert [(s.slot_id, s.kind) for s in ks.slots] == [(0, SlotKind.PASSPHRASE)]
    assert ks.master_id == master.key_id
    opened, slot_id = unlock(ks, "correct horse battery staple")
    assert opened == master
    assert slot_id == 0
    assert unlock(decode(encode(ks)), "correct horse battery staple")[0] == master


@pytest.mark.parametrize(
    "wrong", ["correct horse battery stapl", "Correct horse battery staple", " ", "x" * 1000]
)
def test_wrong_passphrase(cheap_kdf: KdfKwargs, wrong: str) -> None:
    ks = create_keyslots(MasterKey.generate(), "correct horse battery staple", **cheap_kdf)
    with pytest.raises(WrongSecret):
        unlock(ks, wrong)


def test_empty_secret_opens_nothing_and_cannot_be_set(
    cheap_kdf: KdfKwargs, no_argon2: None
) -> None:
    with pytest.raises(KeyslotError) as raised:
        create_keyslots(MasterKey.generate(), "", **cheap_kdf)
    assert raised.type is KeyslotError
    ks = Keyslots(bytes(16), (Slot(0, SlotKind.PASSPHRASE, CHEAP_KDF, *_zeros()),))
    with pytest.raises(WrongSecret):
        unlock(ks, "")


def _zeros() -> tuple[bytes, bytes, bytes]:
    return bytes(16), bytes(24), bytes(48)


def test_passphrases_are_nfc_normalised(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    composed, decomposed = "caf\u00e9 \u0645\u0631\u062d\u0628\u0627", "cafe\u0301 مرحبا"
    assert composed != decomposed
    assert unicodedata.normalize("NFC", decomposed) == composed
    ks = create_keyslots(master, decomposed, **cheap_kdf)
    assert unlock(ks, composed)[0] == master


def test_a_passphrase_shaped_like_a_recovery_code_still_opens_its_slot(
    cheap_kdf: KdfKwargs,
) -> None:
    master = MasterKey.generate()
    shaped = "correct horse battery staple"  # 25 Crockford letters once O->0, L->1
    ks = create_keyslots(master, shaped, **cheap_kdf)
    ks, _ = add_slot(ks, master, generate_recovery_code(), SlotKind.RECOVERY, **cheap_kdf)
    assert unlock(ks, shaped) == (master, 0)


def test_add_slot_keeps_master_and_other_slots(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "first", **cheap_kdf)
    before = ks.slot(0)
    ks2, new_id = add_slot(ks, master, "second", SlotKind.PASSPHRASE, **cheap_kdf)
    assert new_id == 1
    assert ks2.slot(0) == before
    assert ks2.master_id == ks.master_id
    assert unlock(ks2, "first") == (master, 0)
    assert unlock(ks2, "second") == (master, 1)


def test_add_slot_refuses_a_foreign_master(cheap_kdf: KdfKwargs) -> None:
    ks = create_keyslots(MasterKey.generate(), "first", **cheap_kdf)
    with pytest.raises(KeyslotError):
        add_slot(ks, MasterKey.generate(), "second", SlotKind.PASSPHRASE, **cheap_kdf)


def test_at_most_eight_slots_and_freed_ids_are_reused(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "p0", **cheap_kdf)
    for i in range(1, MAX_SLOTS):
        ks, slot_id = add_slot(ks, master, f"p{i}", SlotKind.PASSPHRASE, **cheap_kdf)
        assert slot_id == i
    with pytest.raises(KeyslotError):
        add_slot(ks, master, "p8", SlotKind.PASSPHRASE, **cheap_kdf)
    ks = remove_slot(ks, 3)
    ks, slot_id = add_slot(ks, master, "again", SlotKind.PASSPHRASE, **cheap_kdf)
    assert slot_id == 3
    assert unlock(ks, "p7") == (master, 7)
    assert unlock(decode(encode(ks)), "again") == (master, 3)


def test_remove_slot(cheap_kdf: KdfKwargs) -> None:
    master, ks = _two_passphrases(cheap_kdf)
    ks2 = remove_slot(ks, 0)
    with pytest.raises(WrongSecret):
        unlock(ks2, "first passphrase")
    assert unlock(ks2, "second passphrase") == (master, 1)
    assert ks2.slot(1) == ks.slot(1)
    with pytest.raises(KeyslotError):
        remove_slot(ks, 5)


def test_the_last_passphrase_slot_cannot_be_removed(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "only", **cheap_kdf)
    ks, rec = add_slot(ks, master, generate_recovery_code(), SlotKind.RECOVERY, **cheap_kdf)
    with pytest.raises(KeyslotError, match="last passphrase"):
        remove_slot(ks, 0)
    assert remove_slot(ks, rec).slots == (ks.slot(0),)  # the recovery slot may go


def test_change_secret_rewraps_only_that_slot(cheap_kdf: KdfKwargs) -> None:
    master, ks = _two_passphrases(cheap_kdf)
    code = generate_recovery_code()
    ks, _ = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    changed = change_secret(ks, "second passphrase", "third passphrase", **cheap_kdf)
    with pytest.raises(WrongSecret):
        unlock(changed, "second passphrase")
    assert unlock(changed, "third passphrase") == (master, 1)
    assert unlock(changed, "first passphrase") == (master, 0)
    assert unlock(changed, code) == (master, 2)
    assert changed.slot(0) == ks.slot(0)
    assert changed.slot(2) == ks.slot(2)
    assert changed.slot(1).salt != ks.slot(1).salt
    assert changed.slot(1).nonce != ks.slot(1).nonce
    assert changed.master_id == ks.master_id


def test_change_secret_can_raise_the_cost(cheap_kdf: KdfKwargs) -> None:
    master, ks = _two_passphrases(cheap_kdf)
    dearer = KdfParams(ops=2, mem=64 * 1024)
    changed = change_secret(
        ks, "first passphrase", "first passphrase", params=dearer, floor=CHEAP_KDF
    )
    assert changed.slot(0).params == dearer
    assert unlock(changed, "first passphrase") == (master, 0)


def test_change_secret_refusals(cheap_kdf: KdfKwargs) -> None:
    master, ks = _two_passphrases(cheap_kdf)
    code = generate_recovery_code()
    ks, _ = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    with pytest.raises(WrongSecret):
        change_secret(ks, "not it", "new", **cheap_kdf)
    with pytest.raises(WrongSecret):  # a recovery code does not change a passphrase slot
        change_secret(ks, code, "new", **cheap_kdf)
    with pytest.raises(KeyslotError):
        change_secret(ks, "first passphrase", "", **cheap_kdf)
    with pytest.raises(WeakParameters):
        change_secret(ks, "first passphrase", "new", params=CHEAP_KDF)


def test_forgotten_passphrase_is_replaced_after_a_recovery_unlock(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "forgotten", **cheap_kdf)
    code = generate_recovery_code()
    ks, _ = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    opened, _ = unlock(ks, code)
    ks = replace_slot(ks, opened, 0, "remembered", **cheap_kdf)
    assert unlock(ks, "remembered") == (master, 0)
    with pytest.raises(WrongSecret):
        unlock(ks, "forgotten")
    with pytest.raises(KeyslotError):
        replace_slot(ks, MasterKey.generate(), 0, "x", **cheap_kdf)


def test_unlock_kinds_filter(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "pw", **cheap_kdf)
    code = generate_recovery_code()
    ks, rec = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    assert unlock(ks, code, kinds=(SlotKind.RECOVERY,)) == (master, rec)
    with pytest.raises(WrongSecret):
        unlock(ks, code, kinds=(SlotKind.PASSPHRASE,))


def test_every_slot_gets_its_own_salt_and_nonce(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "same", **cheap_kdf)
    ks, _ = add_slot(ks, master, "same", SlotKind.PASSPHRASE, **cheap_kdf)
    a, b = ks.slots
    assert a.salt != b.salt
    assert a.nonce != b.nonce
    assert a.wrapped != b.wrapped
    assert master.secret_bytes() not in encode(ks)


# --- the associated data binds every slot field ----------------------------------


def _swap(ks: Keyslots, field: str) -> Keyslots:
    a, b = ks.slots
    a2 = dataclasses.replace(a, **{field: getattr(b, field)})
    b2 = dataclasses.replace(b, **{field: getattr(a, field)})
    return Keyslots(ks.master_id, (a2, b2))


def test_same_kib_params_give_the_same_argon2_output() -> None:
    # The precondition that makes the next tests about the AAD and not the KDF:
    # libsodium counts memory in KiB, so 8192 and 8193 bytes derive the same key.
    salt = bytes(16)
    assert kdf.argon2id(b"pw", salt, KdfParams(1, 8192)) == kdf.argon2id(
        b"pw", salt, KdfParams(1, 8193)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([(8192, 8193), (8192, 9000), (9216, 10239), (16384, 8192)]),
    st.sampled_from([(1, 1), (1, 2), (2, 1)]),
)
def test_swapping_params_between_slots_breaks_both(
    mems: tuple[int, int], opses: tuple[int, int]
) -> None:
    master = MasterKey.generate()
    pa, pb = KdfParams(opses[0], mems[0]), KdfParams(opses[1], mems[1])
    ks = create_keyslots(master, "alpha", params=pa, floor=CHEAP_KDF)
    ks, _ = add_slot(ks, master, "bravo", SlotKind.PASSPHRASE, params=pb, floor=CHEAP_KDF)
    swapped = _swap(ks, "params")
    for secret in ("alpha", "bravo"):
        with pytest.raises(WrongSecret):
            unlock(swapped, secret)
        with pytest.raises(WrongSecret):
            unlock(decode(encode(swapped)), secret)


def _tamper_cases() -> dict[str, Callable[[Keyslots], Keyslots]]:
    def one(ks: Keyslots, **changes: Any) -> Keyslots:
        a, b = ks.slots
        return Keyslots(ks.master_id, (dataclasses.replace(a, **changes), b))

    return {
        "mem +1 byte (same Argon2 output)": lambda ks: one(ks, params=KdfParams(1, 8193)),
        "ops changed": lambda ks: one(ks, params=KdfParams(2, 8192)),
        "slot ids swapped": lambda ks: Keyslots(
            ks.master_id,
            (
                dataclasses.replace(ks.slots[1], slot_id=0),
                dataclasses.replace(ks.slots[0], slot_id=1),
            ),
        ),
        "slot id moved": lambda ks: Keyslots(
            ks.master_id, (ks.slots[1], dataclasses.replace(ks.slots[0], slot_id=5))
        ),
        "salts swapped": lambda ks: _swap(ks, "salt"),
        "nonces swapped": lambda ks: _swap(ks, "nonce"),
        "wrapped swapped": lambda ks: _swap(ks, "wrapped"),
        "master id changed": lambda ks: Keyslots(bytes(16), ks.slots),
    }


@pytest.mark.parametrize("case", list(_tamper_cases()))
def test_tampered_slot_fields_do_not_open(cheap_kdf: KdfKwargs, case: str) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "alpha", **cheap_kdf)
    ks, _ = add_slot(ks, master, "bravo", SlotKind.PASSPHRASE, **cheap_kdf)
    tampered = _tamper_cases()[case](ks)
    with pytest.raises(WrongSecret):
        unlock(tampered, "alpha")


def test_kind_is_bound_too(cheap_kdf: KdfKwargs, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make both kinds derive the same bytes from the same text, so only the AAD differs.
    monkeypatch.setattr("crypto.recovery.normalize_recovery_code", lambda s: s.encode())
    master = MasterKey.generate()
    ks = create_keyslots(master, "pw", **cheap_kdf)
    ks, _ = add_slot(ks, master, "shared", SlotKind.RECOVERY, **cheap_kdf)
    assert unlock(ks, "shared") == (master, 1)
    relabelled = Keyslots(
        ks.master_id, (ks.slots[0], dataclasses.replace(ks.slots[1], kind=SlotKind.PASSPHRASE))
    )
    with pytest.raises(WrongSecret):
        unlock(relabelled, "shared")


# --- the exact format ------------------------------------------------------------

# A file built by hand from docs/keyslots.md, independently of crypto.keyslot:
# master = bytes(range(32)), salt = bytes(range(100, 116)), nonce = bytes(range(200, 224)),
# Argon2id ops=2 mem=16384 over NFC("café de l'aube"); the wrapping and AAD are
# rebuilt in _hand_built_file() below, which must reproduce these bytes exactly.
VECTOR = (
    b'{"format":"fieldapp/keyslots","master_id":"WoMIg+V0hjTGQIL2jWiSOQ==","slots":[{"id":0,'
    b'"kdf":{"alg":"argon2id13","mem":16384,"ops":2},"kind":"passphrase",'
    b'"nonce":"yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f","salt":"ZGVmZ2hpamtsbW5vcHFycw==",'
    b'"wrapped":"IcGfRI/2ZEMQYRAGkD9Ie4mzuAItBXzbhPoAE+y4kGbuGb//wm5vlKMx+q147ijv"}],'
    b'"version":1}\n'
)
VECTOR_PASSPHRASE = "cafe\u0301 de l'aube"


def _hand_built_file() -> bytes:
    master = bytes(range(32))
    master_id = hashlib.blake2b(master, digest_size=16, person=b"fa-master-id-v1").digest()
    salt, nonce, ops, mem = bytes(range(100, 116)), bytes(range(200, 224)), 2, 16384
    secret = unicodedata.normalize("NFC", VECTOR_PASSPHRASE).encode("utf-8")
    kek = nacl.pwhash.argon2id.kdf(32, secret, salt, opslimit=ops, memlimit=mem)
    aad = (
        b"fieldapp/v1/keyslot\x00"
        + master_id
        + bytes([0, len(b"passphrase")])
        + b"passphrase"
        + bytes([len(b"argon2id13")])
        + b"argon2id13"
        + struct.pack(">IQ", ops, mem)
        + salt
    )
    wrapped = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(master, aad, nonce, kek)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    doc = {
        "version": 1,
        "format": "fieldapp/keyslots",
        "master_id": b64(master_id),
        "slots": [
            {
                "id": 0,
                "kind": "passphrase",
                "kdf": {"alg": "argon2id13", "ops": ops, "mem": mem},
                "salt": b64(salt),
                "nonce": b64(nonce),
                "wrapped": b64(wrapped),
            }
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def test_vector_regenerates_from_the_documented_construction() -> None:
    assert _hand_built_file() == VECTOR


def test_vector_decodes_reencodes_and_unlocks() -> None:
    ks = decode(VECTOR)
    assert encode(ks) == VECTOR
    assert unlock(ks, VECTOR_PASSPHRASE) == (MasterKey(bytes(range(32))), 0)


# --- strict decoding -------------------------------------------------------------

params_st = st.builds(
    KdfParams, ops=st.integers(1, KDF_CEILING.ops), mem=st.integers(8192, KDF_CEILING.mem)
)


@st.composite
def keyslots_st(draw: st.DrawFn) -> Keyslots:
    ids = sorted(draw(st.sets(st.integers(0, MAX_SLOTS - 1), min_size=1)))
    kinds = [draw(st.sampled_from(SlotKind)) for _ in ids]
    kinds[draw(st.integers(0, len(ids) - 1))] = SlotKind.PASSPHRASE
    slots = tuple(
        Slot(
            i,
            kind,
            draw(params_st),
            draw(st.binary(min_size=16, max_size=16)),
            draw(st.binary(min_size=24, max_size=24)),
            draw(st.binary(min_size=48, max_size=48)),
        )
        for i, kind in zip(ids, kinds, strict=True)
    )
    return Keyslots(draw(st.binary(min_size=16, max_size=16)), slots)


def _refused_or_valid(data: bytes) -> None:
    """decode may accept (a mutation can produce another valid file) or raise
    KeyslotCorrupt; any other exception type fails the test by propagating."""
    try:
        ks = decode(data)
    except KeyslotCorrupt:
        return
    assert encode(ks) == data


@given(keyslots_st())
def test_decode_encode_round_trip(ks: Keyslots) -> None:
    data = encode(ks)
    assert decode(data) == ks
    assert encode(decode(data)) == data
    assert len(data) <= MAX_ENCODED_BYTES


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_keyslot_corrupt(data: bytes) -> None:
    _refused_or_valid(data)


@settings(max_examples=300)
@given(keyslots_st(), st.data())
def test_byte_mutations_raise_only_keyslot_corrupt(ks: Keyslots, data: st.DataObject) -> None:
    raw = bytearray(encode(ks))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "set", "truncate"]))
        if op == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "delete":
            del raw[i : i + data.draw(st.integers(1, 8))]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "set":
            raw[i] = data.draw(st.sampled_from(b'0123456789{}[]":,-.etfnrAZaz+/= \\\n\x00\xff'))
        else:
            del raw[i:]
        if not raw:
            break
    _refused_or_valid(bytes(raw))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["passphrase", "recovery", "argon2id13", "fieldapp/keyslots", "AAAA"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


@settings(max_examples=400)
@given(keyslots_st(), st.data())
def test_json_mutations_raise_only_keyslot_corrupt(ks: Keyslots, data: st.DataObject) -> None:
    doc = json.loads(encode(ks))
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    op = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "replace" or (op == "delete" and isinstance(parent, list)):
        parent[path[-1]] = data.draw(json_values)
    elif op == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8))] = data.draw(json_values)
    else:
        parent.append(data.draw(json_values))
    _refused_or_valid(_canonical(doc))


def _base_doc() -> JsonDoc:
    slots = (
        Slot(0, SlotKind.PASSPHRASE, KdfParams(3, 256 * MiB), bytes(16), bytes(24), bytes(48)),
        Slot(1, SlotKind.RECOVERY, KdfParams(3, 256 * MiB), bytes(16), bytes(24), bytes(48)),
    )
    doc: JsonDoc = json.loads(encode(Keyslots(bytes(16), slots)))
    return doc


def _set(path: str, value: Any) -> Callable[[JsonDoc], None]:
    def apply(doc: JsonDoc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = doc
        for p in parents:
            node = node[p]
        node[last] = value

    return apply


def _b64(n: int) -> str:
    return base64.b64encode(bytes(n)).decode()


DOC_CASES: dict[str, Callable[[JsonDoc], None]] = {
    "unknown format": _set("format", "luks"),
    "version 0": _set("version", 0),
    "version as bool": _set("version", value=True),
    "version as string": _set("version", "1"),
    "version as float": _set("version", 1.0),
    "extra top-level field": _set("comment", "hi"),
    "missing slots": lambda d: d.pop("slots") and None,
    "no slots": _set("slots", []),
    "nine slots": lambda d: d.__setitem__(
        "slots", [dict(d["slots"][0], id=i) for i in range(MAX_SLOTS)] + [d["slots"][0]]
    ),
    "slots not a list": _set("slots", {"0": 1}),
    "no passphrase slot": lambda d: d.__setitem__("slots", d["slots"][1:]),
    "duplicate slot ids": _set("slots.1.id", 0),
    "unsorted slot ids": lambda d: d.__setitem__("slots", d["slots"][::-1]),
    "slot id 8": _set("slots.1.id", 8),
    "slot id -1": _set("slots.0.id", -1),
    "slot id as bool": _set("slots.1.id", value=True),
    "unknown kind": _set("slots.1.kind", "fingerprint"),
    "unknown alg": _set("slots.0.kdf.alg", "argon2i13"),
    "ops 0": _set("slots.0.kdf.ops", 0),
    "ops above ceiling": _set("slots.0.kdf.ops", KDF_CEILING.ops + 1),
    "ops 2**64": _set("slots.0.kdf.ops", 2**64),
    "mem below libsodium minimum": _set("slots.0.kdf.mem", 8191),
    "mem above ceiling": _set("slots.0.kdf.mem", KDF_CEILING.mem + 1),
    "mem 4 TiB": _set("slots.0.kdf.mem", 4 * 1024**4),
    "mem as float": _set("slots.0.kdf.mem", 268435456.0),
    "mem as bool": _set("slots.0.kdf.mem", value=True),
    "extra kdf field": _set("slots.0.kdf.lanes", 4),
    "extra slot field": _set("slots.0.note", ""),
    "salt 15 bytes": _set("slots.0.salt", _b64(15)),
    "salt 17 bytes": _set("slots.0.salt", _b64(17)),
    "nonce 23 bytes": _set("slots.0.nonce", _b64(23)),
    "wrapped 47 bytes": _set("slots.0.wrapped", _b64(47)),
    "wrapped not base64": _set("slots.0.wrapped", "!" * 64),
    "salt with an escaped non-ASCII character": _set("slots.0.salt", "\u0080" * 24),
    "base64 without padding": _set("slots.0.salt", _b64(16).rstrip("=")),
    "base64 non-canonical bits": _set("slots.0.salt", "AAAAAAAAAAAAAAAAAAAAAB=="),
    "master id 15 bytes": _set("master_id", _b64(15)),
    "master id as list": _set("master_id", [0] * 16),
    "top level is a list": lambda d: d.clear(),
}


@pytest.mark.parametrize("case", list(DOC_CASES))
def test_decode_refuses(case: str, no_argon2: None) -> None:
    doc = _base_doc()
    assert decode(_canonical(doc))  # the base is valid
    if case == "top level is a list":
        data = b"[]\n"
    else:
        DOC_CASES[case](doc)
        data = _canonical(doc)
    with pytest.raises(KeyslotCorrupt):
        decode(data)


RAW_CASES: dict[str, Callable[[bytes], bytes]] = {
    "oversize": lambda v: v + b" " * (MAX_ENCODED_BYTES - len(v) + 1),
    "oversize garbage": lambda _: b"\xff" * (10 * MAX_ENCODED_BYTES),
    "pretty-printed": lambda v: json.dumps(json.loads(v), indent=1, sort_keys=True).encode(),
    "unsorted keys": lambda v: (
        json.dumps(dict(reversed(json.loads(v).items())), separators=(",", ":")).encode() + b"\n"
    ),
    "no trailing newline": lambda v: v[:-1],
    "two trailing newlines": lambda v: v + b"\n",
    "BOM": lambda v: b"\xef\xbb\xbf" + v,
    "duplicate key": lambda v: v.replace(b'{"format"', b'{"format":"x","format"', 1),
    "NaN": lambda v: v.replace(b'"version":1', b'"version":NaN'),
    "non-ASCII": lambda v: v.replace(b"passphrase", "passphrasé".encode()),
    "deep nesting": lambda _: b"[" * 60_000 + b"]" * 60_000,
    "huge integer": lambda v: v.replace(b'"version":1', b'"version":' + b"9" * 5000),
    "empty": lambda _: b"",
    "a different JSON file": lambda _: b'{"hello":"world"}\n',
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_decode_refuses_raw(case: str, no_argon2: None) -> None:
    with pytest.raises(KeyslotCorrupt):
        decode(RAW_CASES[case](VECTOR))


def test_decode_refuses_non_bytes(no_argon2: None) -> None:
    with pytest.raises(KeyslotCorrupt):
        decode(VECTOR.decode())  # type: ignore[arg-type]


def test_newer_version_says_to_update(no_argon2: None) -> None:
    data = VECTOR.replace(b'"version":1', b'"version":2')
    with pytest.raises(KeyslotCorrupt, match="newer fieldapp"):
        decode(data)


def test_huge_params_are_refused_without_argon2_even_when_built_by_hand(
    no_argon2: None,
) -> None:
    with pytest.raises(KeyslotCorrupt):
        Slot(0, SlotKind.PASSPHRASE, KdfParams(2**32 - 1, 2**42), *_zeros())
    with pytest.raises(KeyslotError):
        kdf.argon2id(b"pw", bytes(16), KdfParams(2**32 - 1, 2**42))
    huge = VECTOR.replace(b'"mem":16384,"ops":2', b'"mem":4398046510080,"ops":4294967295')
    with pytest.raises(KeyslotCorrupt):
        decode(huge)
