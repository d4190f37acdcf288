"""Typed key roles (crypto/keys.py): validation, roles, purposes, no leaks.

The low-order point lists are libsodium's (``has_small_order`` in
crypto_scalarmult/curve25519/ref10/x25519_ref10.c and ``ge25519_has_small_order``
in crypto_core/ed25519/ref10/ed25519_ref10.c), plus the same encodings with the
top bit set. Small pure-Python curve helpers below check independently of
libsodium that every listed point really has small order, so the lists are not
taken on trust either.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import InvalidKey
from crypto.keys import (
    KEY_ID_BYTES,
    BoxPrivateKey,
    BoxPublicKey,
    DeviceSigningKey,
    DeviceVerifyKey,
    ProtectionPrivateKey,
    ProtectionPublicKey,
    RootSigningKey,
    RootVerifyKey,
    SignPurpose,
    constant_time_equal,
    signed_bytes,
)

P = 2**255 - 19
PUBLIC_CLASSES: list[Any] = [RootVerifyKey, DeviceVerifyKey, BoxPublicKey, ProtectionPublicKey]
PRIVATE_CLASSES: list[Any] = [RootSigningKey, DeviceSigningKey, BoxPrivateKey, ProtectionPrivateKey]
ROLE_PAIRS: list[tuple[Any, Any]] = [
    (RootSigningKey, RootVerifyKey),
    (DeviceSigningKey, DeviceVerifyKey),
    (BoxPrivateKey, BoxPublicKey),
    (ProtectionPrivateKey, ProtectionPublicKey),
]
SIGNERS = [RootSigningKey, DeviceSigningKey]
X25519_PUBLIC = [BoxPublicKey, ProtectionPublicKey]
ED25519_PUBLIC = [RootVerifyKey, DeviceVerifyKey]
SEED = bytes(range(32))


def _enc(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _with_top_bit(raw: bytes) -> bytes:
    return raw[:31] + bytes([raw[31] | 0x80])


def _name(cls: type) -> str:
    return cls.__name__


# --- independent curve helpers --------------------------------------------------------


def _x25519(k: int, u: int) -> int:
    """RFC 7748 section 5 Montgomery ladder, unclamped scalar; 0 for the point at infinity."""
    x1, x2, z2, x3, z3, swap = u % P, 1, 0, u % P, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b, c, d = x2 + z2, x2 - z2, x3 + z3, x3 - z3
        aa, bb, da, cb = a * a % P, b * b % P, d * a % P, c * b % P
        e = (aa - bb) % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return x2 * pow(z2, P - 2, P) % P


ED_D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _ed_decode_loose(raw: bytes) -> tuple[int, int] | None:
    """RFC 8032 point decoding, but reducing y mod p and allowing x = 0 with the sign bit."""
    n = int.from_bytes(raw, "little")
    sign, y = n >> 255, (n & (2**255 - 1)) % P
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return x, y


def _ed_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = ED_D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def _ed_times_8(point: tuple[int, int]) -> tuple[int, int]:
    for _ in range(3):
        point = _ed_add(point, point)
    return point


# --- the known weak encodings ---------------------------------------------------------

_X25519_LIBSODIUM = {
    "0 (order 4)": bytes(32),
    "1 (order 1)": _enc(1),
    "order 8 (e0eb7a7c...)": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
    ),
    "order 8 (5f9c95bc...)": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "p-1 (order 2)": _enc(P - 1),
    "p (=0)": _enc(P),
    "p+1 (=1)": _enc(P + 1),
}
X25519_LOW_ORDER = {
    **_X25519_LIBSODIUM,
    **{f"{k}, top bit set": _with_top_bit(v) for k, v in _X25519_LIBSODIUM.items()},
}

_ED25519_LIBSODIUM = {
    "y=0 (order 4)": bytes(32),
    "y=1, identity": _enc(1),
    "order 8 (26e8958f...)": bytes.fromhex(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"
    ),
    "order 8 (c7176a70...)": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "y=p-1 (order 2)": _enc(P - 1),
    "y=p (=0)": _enc(P),
    "y=p+1 (=1)": _enc(P + 1),
}
ED25519_SMALL_ORDER = {
    **_ED25519_LIBSODIUM,
    **{f"{k}, sign bit set": _with_top_bit(v) for k, v in _ED25519_LIBSODIUM.items()},
}


def test_the_listed_x25519_points_really_have_small_order() -> None:
    for raw in X25519_LOW_ORDER.values():
        assert _x25519(8, int.from_bytes(raw, "little") & (2**255 - 1)) == 0
    good = BoxPrivateKey(SEED).public_key.raw
    assert _x25519(8, int.from_bytes(good, "little")) != 0


def test_the_listed_ed25519_points_really_have_small_order() -> None:
    for raw in ED25519_SMALL_ORDER.values():
        point = _ed_decode_loose(raw)
        assert point is not None
        assert _ed_times_8(point) == (0, 1)
    good = _ed_decode_loose(RootSigningKey(SEED).public_key.raw)
    assert good is not None
    assert _ed_times_8(good) != (0, 1)


def test_x25519_ladder_matches_rfc7748() -> None:
    scalar = bytearray(
        bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    )
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    u = int.from_bytes(
        bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"), "little"
    )
    out = _x25519(int.from_bytes(scalar, "little"), u)
    assert _enc(out).hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", X25519_PUBLIC, ids=_name)
@pytest.mark.parametrize("raw", X25519_LOW_ORDER.values(), ids=X25519_LOW_ORDER.keys())
def test_low_order_x25519_points_are_refused(cls: type[BoxPublicKey], raw: bytes) -> None:
    with pytest.raises(InvalidKey):
        cls(raw)


@pytest.mark.parametrize("cls", X25519_PUBLIC, ids=_name)
def test_non_canonical_x25519_encodings_are_refused(cls: type[BoxPublicKey]) -> None:
    """Values p..2^255-1 (and anything with the top bit) are second encodings of a point."""
    for n in range(P, 2**255):
        with pytest.raises(InvalidKey):
            cls(_enc(n))
    good = BoxPrivateKey(SEED).public_key.raw
    with pytest.raises(InvalidKey):
        cls(_with_top_bit(good))


@pytest.mark.parametrize("cls", ED25519_PUBLIC, ids=_name)
@pytest.mark.parametrize("raw", ED25519_SMALL_ORDER.values(), ids=ED25519_SMALL_ORDER.keys())
def test_small_order_ed25519_points_are_refused(cls: type[RootVerifyKey], raw: bytes) -> None:
    with pytest.raises(InvalidKey):
        cls(raw)


@pytest.mark.parametrize("cls", ED25519_PUBLIC, ids=_name)
def test_ed25519_points_off_the_curve_are_refused(cls: type[RootVerifyKey]) -> None:
    off_curve = [y for y in range(2, 200) if _ed_decode_loose(_enc(y)) is None][:10]
    assert off_curve
    for y in off_curve:
        with pytest.raises(InvalidKey):
            cls(_enc(y))


@pytest.mark.parametrize("cls", ED25519_PUBLIC, ids=_name)
def test_non_canonical_ed25519_encodings_are_refused(cls: type[RootVerifyKey]) -> None:
    for y in range(P, 2**255):
        with pytest.raises(InvalidKey):
            cls(_enc(y))


@pytest.mark.parametrize("cls", ED25519_PUBLIC, ids=_name)
def test_mixed_order_ed25519_points_are_refused(cls: type[RootVerifyKey]) -> None:
    """A real key plus a point of order 8: on the curve, but not in the prime-order group."""
    good = RootSigningKey(SEED).public_key.raw
    for torsion in list(_ED25519_LIBSODIUM.values())[2:4]:
        mixed = sodium.crypto_core_ed25519_add(good, torsion)
        assert _ed_decode_loose(mixed) is not None
        with pytest.raises(InvalidKey):
            cls(mixed)


@pytest.mark.parametrize("cls", PUBLIC_CLASSES + PRIVATE_CLASSES, ids=_name)
@pytest.mark.parametrize(
    "raw",
    [b"", bytes(31), bytes(33), bytes(64), bytearray(32), memoryview(bytes(32)), "x" * 32, None],
    ids=["empty", "31", "33", "64", "bytearray", "memoryview", "str", "None"],
)
def test_wrong_lengths_and_types_are_refused(cls: Callable[[object], object], raw: object) -> None:
    with pytest.raises(InvalidKey):
        cls(raw)


def test_refusals_never_carry_key_bytes() -> None:
    for cls in X25519_PUBLIC + ED25519_PUBLIC:
        for raw in [bytes(32), _enc(P + 3), _with_top_bit(bytes([7] * 32)), bytes([0xAB] * 33)]:
            with pytest.raises(InvalidKey) as caught:
                cls(raw)
            message = caught.value.message
            assert raw.hex() not in message.lower()
            assert raw.hex()[:8] not in message.lower()
            assert str(raw) not in message


# --- round trips and known answers ---------------------------------------------------------


@pytest.mark.parametrize(("private_cls", "public_cls"), ROLE_PAIRS, ids=lambda c: c.__name__)
def test_public_key_round_trip(private_cls: Any, public_cls: Any) -> None:
    private = private_cls(SEED)
    public = private.public_key
    assert type(public) is public_cls
    again = public_cls(public.raw)
    assert again == public
    assert hash(again) == hash(public)
    assert again.key_id == public.key_id
    assert len(public.key_id) == KEY_ID_BYTES
    assert private_cls(private.secret_bytes()) == private
    assert private_cls.generate() != private_cls.generate()


@given(seed=st.binary(min_size=32, max_size=32))
def test_every_seed_gives_valid_public_keys_of_every_role(seed: bytes) -> None:
    for private_cls, public_cls in ROLE_PAIRS:
        public = private_cls(seed).public_key
        assert public_cls(public.raw) == public


@given(raw=st.binary(min_size=32, max_size=32))
def test_arbitrary_bytes_give_a_key_or_invalid_key(raw: bytes) -> None:
    for cls in PUBLIC_CLASSES:
        try:
            key = cls(raw)
        except InvalidKey:
            key = None
        assert key is None or key.raw == raw


def test_rfc8032_public_key() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    expected = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert RootSigningKey(seed).public_key.raw.hex() == expected
    assert DeviceSigningKey(seed).public_key.raw.hex() == expected


def test_rfc7748_public_keys() -> None:
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    alice_public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    bob_public = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    assert BoxPrivateKey(alice).public_key.raw.hex() == alice_public
    assert ProtectionPrivateKey(bob).public_key.raw.hex() == bob_public


# --- secrets never shown -------------------------------------------------------------------


@pytest.mark.parametrize("cls", PRIVATE_CLASSES, ids=_name)
def test_private_key_repr_shows_no_key_bytes(cls: type) -> None:
    seed = bytes.fromhex("c0ffee" * 10 + "0102")
    key = cls(seed)
    public_raw = key.public_key.raw
    shown = [repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})]
    forbidden = [
        seed.hex(),
        seed.hex()[:8],
        seed.hex().upper()[:8],
        repr(seed)[2:12],
        base64.b64encode(seed).decode()[:8],
        public_raw.hex()[:8],
    ]
    for text in shown:
        assert "<secret>" in text
        for needle in forbidden:
            assert needle not in text
        assert seed.decode("latin-1")[:6] not in text


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=_name)
def test_public_key_repr_shows_a_short_key_id_only(cls: type) -> None:
    raw = (
        BoxPrivateKey(SEED).public_key.raw
        if cls in X25519_PUBLIC
        else RootSigningKey(SEED).public_key.raw
    )
    key = cls(raw)
    assert raw.hex()[:8] not in repr(key)
    assert key.key_id.hex()[:16] in repr(key)


# --- signatures are bound to a purpose ------------------------------------------------------

PURPOSE_PAIRS = [(a, b) for a, b in itertools.permutations(SignPurpose, 2)]


@pytest.mark.parametrize("cls", SIGNERS, ids=_name)
@pytest.mark.parametrize(
    ("signed_for", "checked_as"),
    PURPOSE_PAIRS,
    ids=[f"{a.value}->{b.value}" for a, b in PURPOSE_PAIRS],
)
def test_signatures_are_purpose_bound(
    cls: type[RootSigningKey], signed_for: SignPurpose, checked_as: SignPurpose
) -> None:
    key = cls(SEED)
    signature = key.sign(signed_for, b"the same message")
    assert key.public_key.verify(signed_for, b"the same message", signature)
    assert not key.public_key.verify(checked_as, b"the same message", signature)


def test_revision_signature_is_not_a_receipt() -> None:
    key = DeviceSigningKey(SEED)
    signature = key.sign(SignPurpose.REVISION, b"revision 7")
    assert not key.public_key.verify(SignPurpose.RECEIPT, b"revision 7", signature)


def test_signed_bytes_layout() -> None:
    assert signed_bytes(SignPurpose.REVISION, b"msg") == b"fieldapp/v1/sig/revision\x00msg"
    assert signed_bytes(SignPurpose.HQ_KEYS, b"") == b"fieldapp/v1/sig/statement/hq-keys\x00"
    # A raw Ed25519 signature of the message alone does not verify: the prefix is required.
    key = RootSigningKey(SEED)
    _, expanded = sodium.crypto_sign_seed_keypair(SEED)
    bare = sodium.crypto_sign(b"msg", expanded)[:64]
    assert not key.public_key.verify(SignPurpose.REVISION, b"msg", bare)
    prefixed = sodium.crypto_sign(signed_bytes(SignPurpose.REVISION, b"msg"), expanded)[:64]
    assert key.public_key.verify(SignPurpose.REVISION, b"msg", prefixed)


@pytest.mark.parametrize("cls", SIGNERS, ids=_name)
def test_verify_refuses_every_wrong_input(cls: type[RootSigningKey]) -> None:
    key = cls(SEED)
    other = cls(bytes(32))
    purpose = SignPurpose.RECEIPT
    signature = key.sign(purpose, b"message")
    public = key.public_key
    assert public.verify(purpose, b"message", signature)
    assert not public.verify(purpose, b"messagE", signature)
    assert not public.verify(purpose, b"message\x00", signature)
    assert not other.public_key.verify(purpose, b"message", signature)
    assert not public.verify(purpose, b"message", signature[:-1])
    assert not public.verify(purpose, b"message", signature + b"\x00")
    assert not public.verify(purpose, b"message", b"")
    assert not public.verify(purpose, b"message", bytes(64))
    for position in range(64):
        flipped = bytearray(signature)
        flipped[position] ^= 0x01
        assert not public.verify(purpose, b"message", bytes(flipped))


def test_signature_with_s_plus_l_is_refused() -> None:
    """Ed25519 malleability: S and S + L are the same scalar; only S < L is accepted."""
    order = 2**252 + 27742317777372353535851937790883648493
    key = RootSigningKey(SEED)
    signature = key.sign(SignPurpose.RECEIPT, b"m")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + order).to_bytes(32, "little")
    assert not key.public_key.verify(SignPurpose.RECEIPT, b"m", malleated)


@given(
    seed=st.binary(min_size=32, max_size=32),
    purpose=st.sampled_from(list(SignPurpose)),
    message=st.binary(max_size=512),
)
def test_sign_verify_round_trip(seed: bytes, purpose: SignPurpose, message: bytes) -> None:
    key = DeviceSigningKey(seed)
    assert key.public_key.verify(purpose, message, key.sign(purpose, message))


# --- key ids and equality --------------------------------------------------------------------


def _bytes_valid_for_every_role() -> bytes:
    for n in itertools.count():
        raw = RootSigningKey(_enc(n)).public_key.raw
        if int.from_bytes(raw, "little") < P:
            return raw
    raise AssertionError("unreachable")


def test_key_id_differs_between_roles_for_the_same_bytes() -> None:
    raw = _bytes_valid_for_every_role()
    keys = [cls(raw) for cls in PUBLIC_CLASSES]
    assert len({k.key_id for k in keys}) == len(PUBLIC_CLASSES)
    assert RootVerifyKey(raw).key_id != DeviceVerifyKey(raw).key_id
    assert BoxPublicKey(raw).key_id != ProtectionPublicKey(raw).key_id


def test_key_id_is_deterministic_and_differs_between_keys() -> None:
    a, b = RootSigningKey(SEED).public_key, RootSigningKey(bytes(32)).public_key
    assert a.key_id == RootVerifyKey(a.raw).key_id
    assert a.key_id != b.key_id


def test_equality_is_by_type_and_bytes() -> None:
    raw = _bytes_valid_for_every_role()
    root, device = RootVerifyKey(raw), DeviceVerifyKey(raw)
    box, protection = BoxPublicKey(raw), ProtectionPublicKey(raw)
    assert root == RootVerifyKey(raw)
    assert hash(root) == hash(RootVerifyKey(raw))
    for a, b in itertools.combinations([root, device, box, protection], 2):
        assert a != b
        assert not (a == b)  # noqa: SIM201 -- checks __eq__, not __ne__
    assert root != raw
    assert root != RootSigningKey(SEED).public_key
    assert len({root, RootVerifyKey(raw), device}) == 2


def test_private_key_equality_and_hashing() -> None:
    assert RootSigningKey(SEED) == RootSigningKey(SEED)
    assert RootSigningKey(SEED) != RootSigningKey(bytes(32))
    assert RootSigningKey(SEED) != DeviceSigningKey(SEED)
    assert BoxPrivateKey(SEED) != ProtectionPrivateKey(SEED)
    assert RootSigningKey(SEED) != SEED
    for cls in PRIVATE_CLASSES:
        with pytest.raises(TypeError):
            hash(cls(SEED))


def test_constant_time_equal() -> None:
    assert constant_time_equal(b"abc", b"abc")
    assert not constant_time_equal(b"abc", b"abd")
    assert not constant_time_equal(b"abc", b"abcd")
    assert constant_time_equal(b"", b"")
