"""Witness codes: format, known answers, normalisation of typed codes, uniqueness."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldapp.domain import ValidationError, is_witness_code, new_witness_code, parse_witness_code
from fieldapp.domain.witness import ALPHABET

FORMAT = re.compile(r"W-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def _fixed(data: bytes) -> str:
    return new_witness_code(lambda n: data[:n])


def _reference(data: bytes) -> str:
    """Crockford base32 of 40 bits, written independently of the module (bit strings)."""
    bits = "".join(f"{b:08b}" for b in data)
    symbols = "".join(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[int(bits[i : i + 5], 2)] for i in range(0, 40, 5)
    )
    return f"W-{symbols[:4]}-{symbols[4:]}"


def test_alphabet_is_crockford_without_ambiguous_letters() -> None:
    assert len(ALPHABET) == 32
    assert not set(ALPHABET) & set("ILOU")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00" * 5, "W-0000-0000"),
        (b"\xff" * 5, "W-ZZZZ-ZZZZ"),
        (b"\x01\x23\x45\x67\x89", _reference(b"\x01\x23\x45\x67\x89")),
        (bytes([0b00001_000, 0b10_00011_0, 0b0100_0010, 0b1_00110_00, 0b111_01000]), "W-1234-5678"),
    ],
)
def test_known_answers(data: bytes, code: str) -> None:
    assert _fixed(data) == code


def test_a_short_random_source_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="wrong number of bytes"):
        new_witness_code(lambda n: b"\x00" * (n - 1))


def test_many_draws_are_well_formed_and_distinct() -> None:
    # 40 bits: the chance of any repeat among 10,000 draws is about 1 in 22,000.
    codes = [new_witness_code(os.urandom) for _ in range(10_000)]
    assert all(FORMAT.fullmatch(c) for c in codes)
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("W-7KQ3-M2XA", "W-7KQ3-M2XA"),
        ("w-7kq3-m2xa", "W-7KQ3-M2XA"),
        ("W7KQ3M2XA", "W-7KQ3-M2XA"),
        ("w 7kq3 m2xa", "W-7KQ3-M2XA"),
        ("  W-7KQ3-M2XA\n", "W-7KQ3-M2XA"),
        ("W-7KQ3-MZXA", "W-7KQ3-MZXA"),
        ("W-OOOO-0000", "W-0000-0000"),  # O read as zero
        ("W-IL1i-l0oO", "W-1111-1000"),  # I and L read as one
    ],
)
def test_typed_codes_are_normalised(typed: str, canonical: str) -> None:
    assert parse_witness_code(typed) == canonical


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "W-7KQ3",
        "X-7KQ3-M2XA",
        "7KQ3-M2XA",
        "W-7KQ3-M2XU",  # U is not in the alphabet
        "W-7KQ3-M2X!",
        "W--7KQ3-M2XA",
        "W-7KQ3-M2XA5",
        "W-\uff17KQ3-M2XA",  # fullwidth seven
        "W-7KQ3-M2XA" + " " * 40,
        "Ahmad Saleh",
    ],
)
def test_anything_else_is_refused_without_echoing_it(typed: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_witness_code(typed, field="witness_code")
    assert caught.value.problems[0].field == "witness_code"
    assert "W-7KQ3-M2XA" in caught.value.message  # the example of the format
    if typed.strip() and typed.strip() not in "W-7KQ3-M2XA":
        assert typed.strip() not in caught.value.message


@given(st.binary(min_size=5, max_size=5))
def test_generated_codes_parse_to_themselves_and_encode_their_bits(data: bytes) -> None:
    code = _fixed(data)
    assert code == _reference(data)
    assert is_witness_code(code)
    assert parse_witness_code(code) == code
    assert parse_witness_code(code.lower().replace("-", " ")) == code


@given(st.text(max_size=20))
def test_arbitrary_text_gives_a_canonical_code_or_validation_error(text: str) -> None:
    try:
        code = parse_witness_code(text)
    except ValidationError:
        return
    assert is_witness_code(code)
