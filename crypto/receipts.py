"""HQ's signed import receipt: "HQ imported this bundle, with this payload, then".

HQ signs a receipt with its root key after a bundle opened and was stored; the
device verifies it against the HQ roots it trusts before it marks the bundle as
received (and, if so configured, purges what it no longer needs). The layout is
fixed, 144 bytes (all integers big-endian; ``docs/enrolment.md`` is the reference)::

    magic "FARCPT" 6 | format version 1 | kind 1 | bundle id 16 |
    SHA-256 of the payload 32 | imported_at u64 | signer key id 16 | signature 64

The signature is ``root.sign(SignPurpose.RECEIPT, first 64 bytes)``: everything
before the signer key id, which only says which root to try.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from crypto.errors import ReceiptError, ReceiptReason
from crypto.keys import KEY_ID_BYTES, SIGNATURE_BYTES, RootSigningKey, RootVerifyKey, SignPurpose

MAGIC: Final = b"FARCPT"
FORMAT_VERSION: Final = 1
KIND: Final = 1  # an import receipt; room for other kinds of HQ acknowledgement
BUNDLE_ID_BYTES: Final = 16
SHA256_BYTES: Final = 32
MAX_INT: Final = 2**63 - 1  # fits a signed 64-bit database column

_SIGNED = struct.Struct(f">6sBB{BUNDLE_ID_BYTES}s{SHA256_BYTES}sQ")  # 64 bytes
_TRAILER = struct.Struct(f">{KEY_ID_BYTES}s{SIGNATURE_BYTES}s")  # signer key id, signature
SIGNED_BYTES: Final = _SIGNED.size  # 64
RECEIPT_BYTES: Final = SIGNED_BYTES + _TRAILER.size  # 144


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a receipt says: HQ imported ``bundle_id`` with this payload hash at this time.

    ``payload_sha256`` is the ``OpenedBundle.payload_sha256`` HQ saw. Built only
    with valid fields: ``ValueError`` otherwise.
    """

    bundle_id: bytes
    # As OpenedBundle's: a hash of a short plaintext confirms a guess at it, keep it out of logs.
    payload_sha256: bytes = field(repr=False)
    imported_at: int

    def __post_init__(self) -> None:
        if not isinstance(self.bundle_id, bytes) or len(self.bundle_id) != BUNDLE_ID_BYTES:
            raise ValueError(f"bundle_id must be {BUNDLE_ID_BYTES} bytes")
        if not isinstance(self.payload_sha256, bytes) or len(self.payload_sha256) != SHA256_BYTES:
            raise ValueError(f"payload_sha256 must be {SHA256_BYTES} bytes")
        # bool is an int subclass: True must not pass as a time.
        if type(self.imported_at) is not int or not 0 <= self.imported_at <= MAX_INT:
            raise ValueError("imported_at must be an integer number of seconds, 0 to 2^63-1")


def _signed_part(receipt: Receipt) -> bytes:
    return _SIGNED.pack(
        MAGIC,
        FORMAT_VERSION,
        KIND,
        receipt.bundle_id,
        receipt.payload_sha256,
        receipt.imported_at,
    )


def sign_receipt(root: RootSigningKey, receipt: Receipt) -> bytes:
    """The 144-byte receipt for ``receipt``, signed by HQ's root key ``root``.

    Raises:
        TypeError: if ``root`` is not a ``RootSigningKey`` or ``receipt`` not a ``Receipt``.
    """
    if not isinstance(root, RootSigningKey) or not isinstance(receipt, Receipt):
        raise TypeError("sign_receipt needs a RootSigningKey and a Receipt")
    signed = _signed_part(receipt)
    signature = root.sign(SignPurpose.RECEIPT, signed)
    return signed + _TRAILER.pack(root.public_key.key_id, signature)


def _parse(data: object) -> tuple[Receipt, bytes, bytes]:
    """The receipt, signer key id and signature, or ``ReceiptError(MALFORMED)``."""
    if not isinstance(data, bytes) or len(data) != RECEIPT_BYTES:
        raise ReceiptError(ReceiptReason.MALFORMED)
    magic, format_version, kind, bundle_id, payload_sha256, imported_at = _SIGNED.unpack_from(data)
    if magic != MAGIC or format_version != FORMAT_VERSION or kind != KIND:
        raise ReceiptError(ReceiptReason.MALFORMED)
    if imported_at > MAX_INT:
        raise ReceiptError(ReceiptReason.MALFORMED)
    key_id, signature = _TRAILER.unpack_from(data, SIGNED_BYTES)
    return Receipt(bundle_id, payload_sha256, imported_at), key_id, signature


def parse_receipt(data: bytes) -> Receipt:
    """Parse a receipt strictly. The result is NOT trusted: use ``verify_receipt``.

    Raises:
        ReceiptError: MALFORMED for anything but exactly 144 ``bytes`` with the
            right magic, format version and kind, and ``imported_at <= 2^63-1``.
    """
    return _parse(data)[0]


def verify_receipt(data: bytes, roots: Sequence[RootVerifyKey]) -> Receipt:
    """Parse a receipt and check HQ's signature on it.

    ``roots`` are the HQ root keys this device trusts: the current root first,
    then older roots after a root rotation (a receipt signed before the rotation
    reached the device still verifies).

    Raises:
        ReceiptError: MALFORMED as ``parse_receipt``; UNKNOWN_SIGNER if the signer
            key id is the key id of none of ``roots``; BAD_SIGNATURE if the
            signature does not verify under that root for ``SignPurpose.RECEIPT``.
    """
    receipt, key_id, signature = _parse(data)
    signer = next(
        (r for r in roots if isinstance(r, RootVerifyKey) and r.key_id == key_id),
        None,
    )
    if signer is None:
        raise ReceiptError(ReceiptReason.UNKNOWN_SIGNER)
    if not signer.verify(SignPurpose.RECEIPT, data[:SIGNED_BYTES], signature):
        raise ReceiptError(ReceiptReason.BAD_SIGNATURE)
    return receipt
