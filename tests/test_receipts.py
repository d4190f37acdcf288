"""HQ import receipts (crypto/receipts.py).

Receipts are also built here by hand from the byte table in docs/enrolment.md,
so the tests check that the documented layout is the real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import ReceiptError, ReceiptReason
from crypto.keys import RootSigningKey, SignPurpose
from crypto.receipts import (
    RECEIPT_BYTES,
    Receipt,
    parse_receipt,
    sign_receipt,
    verify_receipt,
)

MAX_INT = 2**63 - 1


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"fieldapp receipts test " + label.encode()).digest()


ROOT, OLD_ROOT, OTHER_ROOT = (RootSigningKey(_seed(f"root {n}")) for n in range(3))
BUNDLE_ID = bytes(range(16))
PAYLOAD_SHA256 = hashlib.sha256(b"a payload").digest()
RECEIPT = Receipt(bundle_id=BUNDLE_ID, payload_sha256=PAYLOAD_SHA256, imported_at=1_700_000_000)


def by_hand(
    receipt: Receipt,
    signer: RootSigningKey,
    *,
    magic: bytes = b"FARCPT",
    version: int = 1,
    kind: int = 1,
    purpose: SignPurpose = SignPurpose.RECEIPT,
    imported_at: int | None = None,
) -> bytes:
    """A receipt from the documented table, signed over bytes 0..64."""
    when = receipt.imported_at if imported_at is None else imported_at
    signed = (
        magic
        + bytes([version, kind])
        + receipt.bundle_id
        + receipt.payload_sha256
        + struct.pack(">Q", when)
    )
    assert len(signed) == 64
    return signed + signer.public_key.key_id + signer.sign(purpose, signed)


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def assert_malformed(data: bytes) -> None:
    """Both parse_receipt and verify_receipt refuse ``data`` as MALFORMED."""
    with pytest.raises(ReceiptError) as parsed:
        parse_receipt(data)
    with pytest.raises(ReceiptError) as verified:
        verify_receipt(data, [ROOT.public_key])
    assert parsed.value.reason is verified.value.reason is ReceiptReason.MALFORMED


def reason_of(data: bytes, roots: list[RootSigningKey]) -> ReceiptReason:
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(data, [r.public_key for r in roots])
    return caught.value.reason


# --- round trip and layout ---------------------------------------------------------


def test_round_trip() -> None:
    data = sign_receipt(ROOT, RECEIPT)
    assert len(data) == RECEIPT_BYTES == 144
    assert parse_receipt(data) == RECEIPT
    assert verify_receipt(data, [ROOT.public_key]) == RECEIPT


def test_layout_is_the_documented_one() -> None:
    data = sign_receipt(ROOT, RECEIPT)
    assert data == by_hand(RECEIPT, ROOT)  # Ed25519 is deterministic
    assert data[:6] == b"FARCPT"
    assert data[6:8] == b"\x01\x01"
    assert data[8:24] == BUNDLE_ID
    assert data[24:56] == PAYLOAD_SHA256
    assert int.from_bytes(data[56:64], "big") == RECEIPT.imported_at
    assert data[64:80] == ROOT.public_key.key_id
    assert ROOT.public_key.verify(SignPurpose.RECEIPT, data[:64], data[80:])


@pytest.mark.parametrize("imported_at", [0, 1, MAX_INT])
def test_imported_at_bounds_round_trip(imported_at: int) -> None:
    receipt = Receipt(BUNDLE_ID, PAYLOAD_SHA256, imported_at)
    assert verify_receipt(sign_receipt(ROOT, receipt), [ROOT.public_key]) == receipt


@pytest.mark.parametrize(
    ("bundle_id", "payload_sha256", "imported_at"),
    [
        (b"\x00" * 15, PAYLOAD_SHA256, 0),
        (b"\x00" * 17, PAYLOAD_SHA256, 0),
        (bytearray(16), PAYLOAD_SHA256, 0),
        (BUNDLE_ID, b"\x00" * 31, 0),
        (BUNDLE_ID, PAYLOAD_SHA256.hex(), 0),
        (BUNDLE_ID, PAYLOAD_SHA256, -1),
        (BUNDLE_ID, PAYLOAD_SHA256, MAX_INT + 1),
        (BUNDLE_ID, PAYLOAD_SHA256, True),
        (BUNDLE_ID, PAYLOAD_SHA256, 1.0),
    ],
)
def test_receipt_fields_are_checked(
    bundle_id: object, payload_sha256: object, imported_at: object
) -> None:
    with pytest.raises(ValueError, match="must be"):
        Receipt(bundle_id, payload_sha256, imported_at)  # type: ignore[arg-type]


def test_repr_hides_the_payload_hash() -> None:
    assert PAYLOAD_SHA256.hex() not in repr(RECEIPT)
    assert repr(PAYLOAD_SHA256) not in repr(RECEIPT)


# --- signatures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "offset"),
    [
        ("bundle id, first byte", 8),
        ("bundle id, last byte", 23),
        ("payload hash, first byte", 24),
        ("payload hash, last byte", 55),
        ("imported_at, low byte", 63),
        ("imported_at, second-highest byte", 57),
        ("signature, R", 80),
        ("signature, S", 143),
    ],
)
def test_each_tampered_field_is_a_bad_signature(field: str, offset: int) -> None:
    data = flip(sign_receipt(ROOT, RECEIPT), offset)
    parse_receipt(data)  # still well formed: only the signature can catch it
    assert reason_of(data, [ROOT]) is ReceiptReason.BAD_SIGNATURE, field


def test_signer_id_swapped_to_another_trusted_root_is_a_bad_signature() -> None:
    data = sign_receipt(ROOT, RECEIPT)
    swapped = data[:64] + OLD_ROOT.public_key.key_id + data[80:]
    assert reason_of(swapped, [ROOT, OLD_ROOT]) is ReceiptReason.BAD_SIGNATURE


def test_tampered_signer_id_is_an_unknown_signer() -> None:
    data = flip(sign_receipt(ROOT, RECEIPT), 70)
    assert reason_of(data, [ROOT]) is ReceiptReason.UNKNOWN_SIGNER


def test_unknown_signer() -> None:
    data = sign_receipt(OTHER_ROOT, RECEIPT)
    assert reason_of(data, [ROOT, OLD_ROOT]) is ReceiptReason.UNKNOWN_SIGNER


def test_no_trusted_roots_is_an_unknown_signer() -> None:
    assert reason_of(sign_receipt(ROOT, RECEIPT), []) is ReceiptReason.UNKNOWN_SIGNER


def test_signer_second_in_the_roots_list_verifies() -> None:
    data = sign_receipt(OLD_ROOT, RECEIPT)
    assert verify_receipt(data, [ROOT.public_key, OLD_ROOT.public_key]) == RECEIPT


@pytest.mark.parametrize("purpose", [p for p in SignPurpose if p is not SignPurpose.RECEIPT])
def test_signature_for_another_purpose_fails(purpose: SignPurpose) -> None:
    data = by_hand(RECEIPT, ROOT, purpose=purpose)
    assert data[:80] == sign_receipt(ROOT, RECEIPT)[:80]
    assert reason_of(data, [ROOT]) is ReceiptReason.BAD_SIGNATURE


def test_refusal_messages_are_user_safe() -> None:
    data = flip(sign_receipt(ROOT, RECEIPT), 8)
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(data, [ROOT.public_key])
    message = caught.value.message
    assert message == str(caught.value)
    assert "signature does not verify" in message
    for secret in (data.hex(), ROOT.public_key.raw.hex(), ROOT.public_key.key_id.hex()):
        assert secret[:16] not in message
    assert {str(ReceiptError(r)) for r in ReceiptReason} == {
        ReceiptError(r).message for r in ReceiptReason
    }
    assert len({ReceiptError(r).message for r in ReceiptReason}) == len(ReceiptReason)


# --- malformed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("wrong magic", by_hand(RECEIPT, ROOT, magic=b"FASTMT")),
        ("format version 0", by_hand(RECEIPT, ROOT, version=0)),
        ("format version 2", by_hand(RECEIPT, ROOT, version=2)),
        ("kind 0", by_hand(RECEIPT, ROOT, kind=0)),
        ("kind 2", by_hand(RECEIPT, ROOT, kind=2)),
        ("imported_at 2^63", by_hand(RECEIPT, ROOT, imported_at=MAX_INT + 1)),
        ("imported_at 2^64-1", by_hand(RECEIPT, ROOT, imported_at=2**64 - 1)),
    ],
)
def test_malformed_layouts(case: str, data: bytes) -> None:
    # Validly signed, so only the layout check can refuse them.
    assert ROOT.public_key.verify(SignPurpose.RECEIPT, data[:64], data[80:]), case
    assert_malformed(data)


@pytest.mark.parametrize(
    "data",
    [
        bytearray(sign_receipt(ROOT, RECEIPT)),
        memoryview(sign_receipt(ROOT, RECEIPT)),
        "FARCPT",
        None,
    ],
)
def test_non_bytes_are_malformed(data: object) -> None:
    assert_malformed(data)  # type: ignore[arg-type]


VALID = sign_receipt(ROOT, RECEIPT)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400).filter(lambda n: n != RECEIPT_BYTES))
def test_every_other_length_is_malformed(length: int) -> None:
    # A prefix or extension of a valid receipt: right magic, version and kind.
    assert_malformed((VALID * 3)[:length])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=144, max_size=144),
        st.binary(min_size=136, max_size=136).map(lambda tail: b"FARCPT\x01\x01" + tail),
    )
)
def test_arbitrary_bytes_raise_only_receipt_error(data: bytes) -> None:
    # Anything but ReceiptError escapes and fails the test.
    with contextlib.suppress(ReceiptError):
        parse_receipt(data)
    with contextlib.suppress(ReceiptError):
        verify_receipt(data, [ROOT.public_key])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_receipts_raise_only_receipt_error(data: st.DataObject) -> None:
    # Keep the magic, version and kind most of the time so parsing gets past them.
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        offset = data.draw(st.integers(min_value=0, max_value=RECEIPT_BYTES - 1))
        raw[offset] = data.draw(st.integers(min_value=0, max_value=255))
    mutated = bytes(raw)
    try:
        result = verify_receipt(mutated, [ROOT.public_key, OLD_ROOT.public_key])
    except ReceiptError:
        return
    # Anything accepted must be exactly what the root signed.
    assert mutated == VALID
    assert result == RECEIPT
