"""Small messages sealed to one X25519 key: witness identities to HQ's protection key.

``crypto_box_seal`` (an ephemeral X25519 key per message, XSalsa20-Poly1305):
anyone may seal, only the holder of the private key opens, and the sender is
anonymous, which is what the protected-identity compartment needs. The bundle
that carries a sealed identity is itself signed by the device, so the sender is
authenticated one level up.
"""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions

from crypto.errors import CryptoError
from crypto.keys import ProtectionPrivateKey, ProtectionPublicKey

SEAL_OVERHEAD = sodium.crypto_box_SEALBYTES  # 48
MAX_SEALED_BYTES = 64 * 1024


class SealedMessageError(CryptoError):
    """A sealed message does not open with the key given."""

    default_message = (
        "A sealed witness identity cannot be opened with this protection key: it is "
        "damaged, or sealed to another key."
    )


def seal_to_protection(recipient: ProtectionPublicKey, message: bytes) -> bytes:
    """Seal ``message`` so that only the protection private key opens it."""
    if len(message) + SEAL_OVERHEAD > MAX_SEALED_BYTES:
        raise ValueError("a sealed message is limited to 64 KiB")
    return bytes(sodium.crypto_box_seal(message, recipient.raw))


def open_from_protection(key: ProtectionPrivateKey, sealed: bytes) -> bytes:
    """Open a message sealed by ``seal_to_protection``. Raises SealedMessageError."""
    if not isinstance(sealed, bytes) or not SEAL_OVERHEAD < len(sealed) <= MAX_SEALED_BYTES:
        raise SealedMessageError
    try:
        return bytes(sodium.crypto_box_seal_open(sealed, key.public_key.raw, key.secret_bytes()))
    except nacl.exceptions.CryptoError as e:
        raise SealedMessageError from e
