"""Typed key roles.

Each role is its own class so that mypy rejects, say, a device key where the HQ
root key is expected, or a public key where a private one is needed. Public keys
are validated when built (length, canonical encoding, not a low-order point);
private keys never show their bytes in ``repr`` and compare in constant time.

Signatures are always bound to a purpose string (``SignPurpose``): the bytes
signed are ``b"fieldapp/v1/sig/" + purpose + b"\\x00" + message``, so a signature
made for one kind of object can never be replayed as another.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import ClassVar, Self

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from crypto.errors import InvalidKey

KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 16

# Integers at or above this are second encodings of field elements (u + p).
_FIELD_PRIME = 2**255 - 19

# A fixed clamped scalar: multiplying any low-order X25519 point by it gives the
# all-zero point, which libsodium's crypto_scalarmult refuses.
_PROBE_SCALAR = bytes([0x58] + [0x13] * 30 + [0x42])


class SignPurpose(StrEnum):
    """What a signature is for; part of the signed bytes."""

    BUNDLE_HEADER = "bundle-header"
    HQ_KEYS = "statement/hq-keys"
    ROOT_ROTATION = "statement/root-rotation"
    DEVICE_ROTATION = "statement/device-rotation"
    ENROLMENT = "enrolment"
    RECEIPT = "receipt"
    REVISION = "revision"
    UPLOAD_TOKEN_NOTICE = "upload-token-notice"  # noqa: S105 -- a purpose name, not a secret


def signed_bytes(purpose: SignPurpose, message: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers for ``purpose``."""
    return b"fieldapp/v1/sig/" + purpose.value.encode("ascii") + b"\x00" + message


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without leaking where they differ."""
    if len(a) != len(b):
        return False
    return bool(sodium.sodium_memcmp(a, b))


class _PublicKey:
    """32 public bytes with a role. Subclasses pick the curve check."""

    __slots__ = ("_raw",)
    role: ClassVar[str] = "public"

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
            raise InvalidKey(f"A {self.role} key must be {KEY_BYTES} bytes.")
        self._check_point(raw)
        self._raw = raw

    @classmethod
    def _check_point(cls, raw: bytes) -> None:
        raise NotImplementedError

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def key_id(self) -> bytes:
        """A 16-byte identifier of this key, bound to its role."""
        return hashlib.blake2b(
            self._raw, digest_size=KEY_ID_BYTES, person=b"fa-keyid-v1", salt=self.role.encode()[:16]
        ).digest()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _PublicKey):
            return NotImplemented
        return constant_time_equal(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id.hex()[:16]})"


class _Ed25519Public(_PublicKey):
    @classmethod
    def _check_point(cls, raw: bytes) -> None:
        # Rejects non-canonical encodings, points off the curve and small-order points.
        if not sodium.crypto_core_ed25519_is_valid_point(raw):
            raise InvalidKey(f"The {cls.role} key is not a valid Ed25519 public key.")

    def verify(self, purpose: SignPurpose, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this key's signature of ``message`` for ``purpose``."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            sodium.crypto_sign_open(signature + signed_bytes(purpose, message), self._raw)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


class _X25519Public(_PublicKey):
    @classmethod
    def _check_point(cls, raw: bytes) -> None:
        # The high bit and the values p..2^255-1 are second encodings of a point: they
        # would give one key two ids and two fingerprints.
        if int.from_bytes(raw, "little") >= _FIELD_PRIME:
            raise InvalidKey(f"The {cls.role} key is not a canonical X25519 public key.")
        try:
            sodium.crypto_scalarmult(_PROBE_SCALAR, raw)
        except nacl.exceptions.RuntimeError as e:
            raise InvalidKey(f"The {cls.role} key is a weak (low-order) X25519 point.") from e


class _PrivateKey:
    """32 secret bytes with a role. Never printed, compared in constant time."""

    __slots__ = ("_seed",)
    role: ClassVar[str] = "private"

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != KEY_BYTES:
            raise InvalidKey(f"A {self.role} key must be {KEY_BYTES} bytes.")
        self._seed = seed

    @classmethod
    def generate(cls) -> Self:
        return cls(nacl.utils.random(KEY_BYTES))

    def secret_bytes(self) -> bytes:
        """The raw secret, for encrypting it at rest. Handle with care."""
        return self._seed

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _PrivateKey):
            return NotImplemented
        return constant_time_equal(self._seed, other._seed)

    __hash__ = None  # type: ignore[assignment]  # secrets are not dictionary keys

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"


class _Ed25519Private(_PrivateKey):
    def _expanded(self) -> tuple[bytes, bytes]:
        pk, sk = sodium.crypto_sign_seed_keypair(self._seed)
        return pk, sk

    def _public_raw(self) -> bytes:
        return self._expanded()[0]

    def sign(self, purpose: SignPurpose, message: bytes) -> bytes:
        """Detached Ed25519 signature of ``message`` bound to ``purpose``."""
        _, sk = self._expanded()
        return sodium.crypto_sign(signed_bytes(purpose, message), sk)[:SIGNATURE_BYTES]


class _X25519Private(_PrivateKey):
    def _public_raw(self) -> bytes:
        return sodium.crypto_scalarmult_base(self._seed)


# --- the roles -------------------------------------------------------------------


class RootVerifyKey(_Ed25519Public):
    """HQ's root public key: the trust anchor every device pins at enrolment."""

    role = "HQ root"


class RootSigningKey(_Ed25519Private):
    """HQ's root signing key; signs key statements, enrolments and receipts."""

    role = "HQ root"

    @property
    def public_key(self) -> RootVerifyKey:
        return RootVerifyKey(self._public_raw())


class DeviceVerifyKey(_Ed25519Public):
    """A monitor device's public signing key."""

    role = "device"


class DeviceSigningKey(_Ed25519Private):
    """A monitor device's signing key; signs revisions and bundle headers."""

    role = "device"

    @property
    def public_key(self) -> DeviceVerifyKey:
        return DeviceVerifyKey(self._public_raw())


class BoxPublicKey(_X25519Public):
    """An HQ box key that bundles are sealed to."""

    role = "HQ box"


class BoxPrivateKey(_X25519Private):
    """The private half of an HQ box key; opens bundle headers."""

    role = "HQ box"

    @property
    def public_key(self) -> BoxPublicKey:
        return BoxPublicKey(self._public_raw())


class ProtectionPublicKey(_X25519Public):
    """HQ's protection key that witness identities are sealed to."""

    role = "HQ protection"


class ProtectionPrivateKey(_X25519Private):
    """The private half of the protection key; opens witness identities."""

    role = "HQ protection"

    @property
    def public_key(self) -> ProtectionPublicKey:
        return ProtectionPublicKey(self._public_raw())
