"""Argon2id bounds, the master key, purpose-bound subkeys and sealed secrets."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import nacl.bindings
import pytest

import crypto.keys
from crypto import kdf
from crypto.errors import InvalidKey, KeyslotError, WeakParameters
from crypto.kdf import (
    KDF_CEILING,
    KDF_FLOOR,
    KDF_MINIMUM,
    PRODUCTION_KDF,
    KdfParams,
    MasterKey,
    Purpose,
    derive_subkey,
    open_secret,
    seal_secret,
)
from crypto.keys import DeviceSigningKey
from crypto.keyslot import create_keyslots

MiB = 1024 * 1024

# Known answers for master = bytes(range(32)). Computed once, independently of
# crypto.kdf, with:
#   HKDF(algorithm=SHA256(), length=32, salt=None,
#        info=b"fieldapp/v1/subkey/" + purpose).derive(bytes(range(32)))
# from cryptography 50. Changing them breaks every existing home folder.
SUBKEY_VECTORS = {
    Purpose.SQLCIPHER_KEY: "f754c26807161ce226f7698b7e5efcad59804110f7baba2d28c5341daba746a3",
    Purpose.ATTACHMENTS: "8ca01b8a234b57c83f56bcfcce0e7eb9dbe3816a457334eeb97004b70e4a428c",
    Purpose.DEVICE_KEY_STORAGE: "38896ef969062d74bb98200c2b3dcf85fb5e34c6de49406ec88bd190ee8f1fd6",
    Purpose.PROTECTION_KEY_STORAGE: (
        "555dc71db1361cfc43d1c7f1e52cbbb7816d52bf600fc6d97e0a56ff941ebe2e"
    ),
    Purpose.REKEY_HANDOVER: "4467d3c8ff9775962b25919b04cbdaf124b6acf533d908a1358c35a08513067a",
}
FIXED_MASTER = MasterKey(bytes(range(32)))


def _forbid_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> bytes:
        raise AssertionError("Argon2id must not run here")

    monkeypatch.setattr("nacl.bindings.crypto_pwhash_alg", refuse)


# --- parameters ------------------------------------------------------------------


def test_production_parameters_meet_the_floor_in_time_and_memory() -> None:
    assert PRODUCTION_KDF.ops >= KDF_FLOOR.ops
    assert PRODUCTION_KDF.mem >= KDF_FLOOR.mem
    assert PRODUCTION_KDF.meets(KDF_FLOOR)


def test_bounds_are_ordered_floor_production_ceiling() -> None:
    assert KDF_FLOOR.meets(KDF_MINIMUM)
    assert KDF_FLOOR.ops >= 3
    assert KDF_FLOOR.mem >= 64 * MiB
    assert PRODUCTION_KDF.within(KDF_CEILING)
    assert KDF_CEILING.mem <= 2048 * MiB


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(ops=KDF_FLOOR.ops - 1, mem=PRODUCTION_KDF.mem),
        KdfParams(ops=PRODUCTION_KDF.ops, mem=KDF_FLOOR.mem - 1024),
        KDF_MINIMUM,
    ],
    ids=["too-few-passes", "too-little-memory", "libsodium-minimum"],
)
def test_creating_below_the_floor_raises_weak_parameters_before_argon2(
    params: KdfParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_argon2(monkeypatch)
    with pytest.raises(WeakParameters):
        create_keyslots(MasterKey.generate(), "correct horse", params=params)


def test_params_above_the_ceiling_are_refused_for_writing_and_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forbid_argon2(monkeypatch)
    huge = KdfParams(ops=KDF_CEILING.ops + 1, mem=KDF_CEILING.mem)
    with pytest.raises(KeyslotError) as raised:
        create_keyslots(MasterKey.generate(), "pw", params=huge)
    assert raised.type is KeyslotError
    with pytest.raises(KeyslotError):
        kdf.argon2id(b"pw", bytes(16), KdfParams(ops=1, mem=KDF_CEILING.mem + 1))


def test_params_must_be_real_ints() -> None:
    assert not kdf.params_in_range(KdfParams(ops=True, mem=8192))
    assert not kdf.params_in_range(KdfParams(ops=1, mem=8192.0))  # type: ignore[arg-type]
    assert kdf.params_in_range(KdfParams(ops=1, mem=8192))


def test_default_params_are_production(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, int]] = []

    def fake(*args: Any) -> bytes:
        outlen, _pw, _salt, ops, mem, alg = args
        seen.append((ops, mem, alg))
        return bytes(outlen)

    monkeypatch.setattr("nacl.bindings.crypto_pwhash_alg", fake)
    ks = create_keyslots(MasterKey.generate(), "pw")
    assert ks.slots[0].params == PRODUCTION_KDF
    assert seen == [(4, 256 * MiB, nacl.bindings.crypto_pwhash_ALG_ARGON2ID13)]


def test_argon2id_is_argon2id13_with_the_given_cost() -> None:
    import nacl.pwhash.argon2id

    salt = bytes(range(16))
    expected = nacl.pwhash.argon2id.kdf(32, b"pw", salt, opslimit=2, memlimit=16 * 1024)
    assert kdf.argon2id(b"pw", salt, KdfParams(ops=2, mem=16 * 1024)) == expected


# --- master key ------------------------------------------------------------------


def test_master_key_hides_its_bytes_and_is_not_hashable() -> None:
    key = MasterKey.generate()
    text = repr(key) + str(key)
    assert key.secret_bytes().hex() not in text
    assert "secret" in text
    with pytest.raises(TypeError):
        hash(key)


def test_master_key_equality_is_by_value_and_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = bytes(range(32))
    calls: list[tuple[bytes, bytes]] = []
    real = crypto.keys.constant_time_equal

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto.keys, "constant_time_equal", spy)
    assert MasterKey(raw) == MasterKey(raw)
    assert MasterKey(raw) != MasterKey(bytes(32))
    assert len(calls) == 2
    assert MasterKey(raw) != DeviceSigningKey(raw)  # roles never compare equal


def test_master_keys_are_random_and_32_bytes() -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    assert a != b
    assert len(a.secret_bytes()) == 32
    with pytest.raises(InvalidKey):
        MasterKey(bytes(31))


def test_master_key_id_identifies_without_revealing() -> None:
    assert FIXED_MASTER.key_id == MasterKey(bytes(range(32))).key_id
    assert FIXED_MASTER.key_id != MasterKey(bytes(32)).key_id
    assert len(FIXED_MASTER.key_id) == 16
    assert FIXED_MASTER.key_id not in FIXED_MASTER.secret_bytes()


# --- subkeys ---------------------------------------------------------------------


@pytest.mark.parametrize("purpose", list(Purpose))
def test_subkey_known_answers(purpose: Purpose) -> None:
    assert derive_subkey(FIXED_MASTER, purpose).hex() == SUBKEY_VECTORS[purpose]


def _rfc5869_hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()  # absent salt = HashLen zeros
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # one block is 32 bytes


@pytest.mark.parametrize("purpose", list(Purpose))
def test_subkey_vectors_regenerate_from_rfc5869_by_hand(purpose: Purpose) -> None:
    info = b"fieldapp/v1/subkey/" + purpose.value.encode()
    assert _rfc5869_hkdf_sha256(bytes(range(32)), info).hex() == SUBKEY_VECTORS[purpose]


def test_purpose_strings_are_stable() -> None:
    assert [p.value for p in Purpose] == [
        "sqlcipher-key",
        "attachments",
        "device-key-storage",
        "protection-key-storage",
        "rekey-handover",
    ]


def test_subkeys_are_deterministic_distinct_and_depend_on_the_master() -> None:
    master = MasterKey.generate()
    keys = {p: derive_subkey(master, p) for p in Purpose}
    assert keys == {p: derive_subkey(master, p) for p in Purpose}
    assert len(set(keys.values())) == len(Purpose)
    assert all(len(k) == 32 for k in keys.values())
    assert master.secret_bytes() not in keys.values()
    other = MasterKey.generate()
    assert all(derive_subkey(other, p) != keys[p] for p in Purpose)


# --- sealed secrets --------------------------------------------------------------


def test_seal_open_round_trip_with_fresh_nonces() -> None:
    subkey = derive_subkey(MasterKey.generate(), Purpose.DEVICE_KEY_STORAGE)
    secret = DeviceSigningKey.generate().secret_bytes()
    a = seal_secret(subkey, Purpose.DEVICE_KEY_STORAGE, secret)
    b = seal_secret(subkey, Purpose.DEVICE_KEY_STORAGE, secret)
    assert a != b
    assert len(a) == 24 + len(secret) + 16
    assert secret not in a
    assert open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, a) == secret
    assert open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, b) == secret


def test_open_refuses_wrong_purpose_wrong_key_tampering_and_truncation() -> None:
    master = MasterKey.generate()
    subkey = derive_subkey(master, Purpose.DEVICE_KEY_STORAGE)
    blob = seal_secret(subkey, Purpose.DEVICE_KEY_STORAGE, b"seed" * 8)
    with pytest.raises(InvalidKey):
        open_secret(subkey, Purpose.ATTACHMENTS, blob)
    with pytest.raises(InvalidKey):
        open_secret(derive_subkey(master, Purpose.ATTACHMENTS), Purpose.DEVICE_KEY_STORAGE, blob)
    for i in (0, 23, 24, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[i] ^= 1
        with pytest.raises(InvalidKey):
            open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, bytes(tampered))
    with pytest.raises(InvalidKey):
        open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, blob[:39])
    with pytest.raises(InvalidKey):
        seal_secret(subkey[:31], Purpose.DEVICE_KEY_STORAGE, b"x")


def test_open_error_message_carries_no_key_material() -> None:
    subkey = bytes(range(32))
    with pytest.raises(InvalidKey) as raised:
        open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, bytes(64))
    assert subkey.hex() not in raised.value.message
