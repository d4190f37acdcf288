"""The ``.fastatements`` stick file: exact framing, and nothing else accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.statementfile import (
    MAGIC,
    MAX_STATEMENTS,
    StatementsFileRefused,
    decode_statements,
    encode_statements,
)

statements = st.lists(st.binary(min_size=1, max_size=1024), min_size=1, max_size=20)


@given(statements)
def test_round_trip(chain: list[bytes]) -> None:
    assert decode_statements(encode_statements(chain)) == chain


@given(statements, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(chain: list[bytes], extra: bytes) -> None:
    with pytest.raises(StatementsFileRefused):
        decode_statements(encode_statements(chain) + extra)


@given(statements, st.data())
def test_every_truncation_is_refused(chain: list[bytes], data: st.DataObject) -> None:
    encoded = encode_statements(chain)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(StatementsFileRefused):
        decode_statements(encoded[:cut])


@given(st.binary(max_size=3000))
def test_arbitrary_bytes_decode_or_are_refused_cleanly(data: bytes) -> None:
    try:
        decoded = decode_statements(data)
    except StatementsFileRefused:
        return
    assert encode_statements(decoded) == data  # one encoding per content


@given(st.binary(max_size=600))
def test_bytes_after_the_magic_decode_or_are_refused_cleanly(body: bytes) -> None:
    data = MAGIC + body
    try:
        decoded = decode_statements(data)
    except StatementsFileRefused:
        return
    assert encode_statements(decoded) == data


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty", b""),
        ("magic only", MAGIC),
        ("zero statements", MAGIC + b"\x00\x00"),
        ("too many statements", MAGIC + (MAX_STATEMENTS + 1).to_bytes(2, "big")),
        ("empty statement", MAGIC + b"\x00\x01\x00\x00"),
        ("statement too long", MAGIC + b"\x00\x01\x04\x01" + bytes(1025)),
        ("wrong format version", MAGIC[:-1] + b"\x02\x00\x01\x00\x01\x00"),
        ("receipts file", bytes(144)),
    ],
)
def test_named_malformed_files(name: str, data: bytes) -> None:
    with pytest.raises(StatementsFileRefused):
        decode_statements(data)


def test_encode_refuses_what_decode_would_refuse() -> None:
    for bad in ([], [b""], [bytes(1025)], [b"x"] * (MAX_STATEMENTS + 1)):
        with pytest.raises(ValueError):
            encode_statements(bad)
