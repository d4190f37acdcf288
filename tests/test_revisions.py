"""Hash-chained, signed revisions: a chain verifies, and any change to it does not."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.keys import DeviceSigningKey
from crypto.revisions import (
    GENESIS,
    Revision,
    RevisionError,
    make_revision,
    revision_hash,
    verify_chain,
)

DEVICE = DeviceSigningKey(bytes(range(32)))


def chain(payloads: list[bytes], record_id: str = "t1") -> list[Revision]:
    out: list[Revision] = []
    parent = GENESIS
    for seq, payload in enumerate(payloads, start=1):
        rev = make_revision(DEVICE, record_id, seq, parent, payload)
        out.append(rev)
        parent = rev.hash
    return out


def test_a_chain_verifies_and_returns_the_last_hash() -> None:
    revs = chain([b"first", "نُقلوا ليلاً".encode(), b"third"])
    assert verify_chain(revs, "t1") == revs[-1].hash


def test_the_hash_matches_the_documented_construction() -> None:
    # Independent of the code: SHA-256 over the layout in crypto/revisions.py.
    expected = hashlib.sha256(
        b"fieldapp/v1/revision\x00"
        + bytes([2])
        + b"t1"
        + struct.pack(">Q", 1)
        + bytes(32)
        + struct.pack(">Q", 7)
        + b"payload"
    ).hexdigest()
    assert expected == "8dbc388113770a13d7856ae0477180192849cd0b3fa6e21ed6f000ec53994e41"
    assert revision_hash("t1", 1, GENESIS, b"payload").hex() == expected


def _replace(revs: list[Revision], index: int, **changes: object) -> list[Revision]:
    out = list(revs)
    out[index] = dataclasses.replace(out[index], **changes)  # type: ignore[arg-type]
    return out


OTHER = DeviceSigningKey(bytes(range(1, 33)))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: _replace(r, 1, payload=b"altered"), id="payload edited"),
        pytest.param(lambda r: [r[0], r[2]], id="middle dropped"),
        pytest.param(lambda r: [r[1], r[0], r[2]], id="reordered"),
        pytest.param(lambda r: r[1:], id="first dropped"),
        pytest.param(lambda r: [*r, r[2]], id="last repeated"),
        pytest.param(lambda r: _replace(r, 2, signature=bytes(64)), id="signature zeroed"),
        pytest.param(lambda r: _replace(r, 1, device=OTHER.public_key), id="claims another device"),
        pytest.param(
            lambda r: [
                r[0],
                make_revision(OTHER, "t1", 2, r[0].hash, b"forged"),
                make_revision(DEVICE, "t1", 3, r[1].hash, b"third"),
            ],
            id="foreign revision spliced in",
        ),
        pytest.param(
            lambda r: [*r[:2], make_revision(DEVICE, "t1", 3, r[0].hash, b"fork")],
            id="fork from an older parent",
        ),
        pytest.param(lambda r: _replace(r, 0, record_id="t2"), id="moved to another record"),
        pytest.param(lambda _r: [], id="empty"),
    ],
)
def test_tampered_chains_are_refused(tamper: object) -> None:
    revs = chain([b"first", b"second", b"third"])
    with pytest.raises(RevisionError):
        verify_chain(tamper(revs), "t1")  # type: ignore[operator]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    st.data(),
)
def test_any_single_byte_change_in_any_payload_is_detected(
    payloads: list[bytes], data: st.DataObject
) -> None:
    revs = chain(payloads)
    index = data.draw(st.integers(min_value=0, max_value=len(revs) - 1))
    payload = bytearray(revs[index].payload + b"\x00")
    offset = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    payload[offset] ^= 0xFF
    with pytest.raises(RevisionError):
        verify_chain(_replace(revs, index, payload=bytes(payload)), "t1")


def test_bad_arguments_are_refused() -> None:
    for record_id, seq, parent in [("", 1, GENESIS), ("t", 0, GENESIS), ("t", 1, b"short")]:
        with pytest.raises(ValueError):
            revision_hash(record_id, seq, parent, b"")
