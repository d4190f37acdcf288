"""Upload-token notices (crypto/tokennotice.py, docs/token-notice.md).

Keys come from fixed seeds. ``_signed`` builds notice bytes from the documented
layout independently of the module (and signs them validly), so the refusal
table can hold notices the writer would never produce: unsorted entries, an
entry sealed for another serial, another purpose's signature.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import nacl.bindings as sodium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.errors import TokenNoticeError, TokenNoticeReason
from crypto.keys import (
    BoxPrivateKey,
    DeviceSigningKey,
    DeviceVerifyKey,
    ProtectionPrivateKey,
    RootSigningKey,
    SignPurpose,
)
from crypto.statements import sign_hq_keys
from crypto.tokennotice import (
    ENTRY_BYTES,
    MAX_ENTRIES,
    MAX_NOTICE_BYTES,
    MIN_NOTICE_BYTES,
    SEAL_DOMAIN,
    parse_notice,
    read_notice,
    token_raw,
    token_text,
    verify_notice,
    write_notice,
)

ROOT = RootSigningKey(bytes([1]) * 32)
OTHER_ROOT = RootSigningKey(bytes([9]) * 32)
DEVICE_A = DeviceSigningKey(bytes([2]) * 32)
DEVICE_B = DeviceSigningKey(bytes([3]) * 32)
OUTSIDER = DeviceSigningKey(bytes([4]) * 32)
TOKEN = bytes(range(32))
T0 = 1_767_225_600
DOC = Path(__file__).resolve().parents[1] / "docs" / "token-notice.md"


def _notice(serial: int = 1, devices: tuple[DeviceSigningKey, ...] = (DEVICE_A, DEVICE_B)) -> bytes:
    return write_notice(
        ROOT,
        serial=serial,
        issued_at=T0,
        previous_valid_until=T0 + 86_400,
        token=TOKEN,
        devices=[d.public_key for d in devices],
    )


def _sealed(device: DeviceVerifyKey, serial: int, token: bytes = TOKEN) -> bytes:
    plaintext = SEAL_DOMAIN + struct.pack(">Q", serial) + token
    box = sodium.crypto_sign_ed25519_pk_to_curve25519(device.raw)
    return sodium.crypto_box_seal(plaintext, box)


def _signed(
    entries: list[tuple[bytes, bytes]],
    *,
    serial: int = 1,
    root: RootSigningKey = ROOT,
    purpose: SignPurpose = SignPurpose.UPLOAD_TOKEN_NOTICE,
) -> bytes:
    """A notice laid out by hand (docs/token-notice.md) and signed, in the given entry order."""
    body = struct.pack(">6sBQQQI", b"FATOKN", 1, serial, T0, T0 + 86_400, len(entries))
    body += b"".join(key_id + sealed for key_id, sealed in entries)
    return body + root.public_key.key_id + root.sign(purpose, body)


def _entry(device: DeviceSigningKey, serial: int = 1) -> tuple[bytes, bytes]:
    return device.public_key.key_id, _sealed(device.public_key, serial)


def _sorted(*entries: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return sorted(entries)


# ---------------------------------------------------------------- round trips


def test_each_device_opens_its_own_entry() -> None:
    data = _notice(serial=7)
    for device in (DEVICE_A, DEVICE_B):
        grant = read_notice(data, ROOT.public_key, device, after_serial=6)
        assert grant.serial == 7
        assert grant.previous_valid_until == T0 + 86_400
        assert grant.token == token_text(TOKEN)
        assert token_raw(grant.token) == TOKEN


def test_a_device_without_an_entry_learns_no_token() -> None:
    grant = read_notice(_notice(), ROOT.public_key, OUTSIDER, after_serial=0)
    assert grant.token is None
    assert grant.serial == 1
    assert "token=" not in repr(grant)


def test_the_layout_is_the_documented_one() -> None:
    data = _notice(serial=3)
    notice = parse_notice(data)
    assert len(data) == MIN_NOTICE_BYTES + 2 * ENTRY_BYTES
    assert data[:7] == b"FATOKN\x01"
    assert struct.unpack_from(">QQQI", data, 7) == (3, T0, T0 + 86_400, 2)
    assert [e.key_id for e in notice.entries] == sorted(
        d.public_key.key_id for d in (DEVICE_A, DEVICE_B)
    )
    assert data[-80:-64] == ROOT.public_key.key_id
    assert MAX_NOTICE_BYTES == MIN_NOTICE_BYTES + MAX_ENTRIES * ENTRY_BYTES


def test_a_notice_for_no_device_is_valid() -> None:
    data = _notice(devices=())
    assert len(data) == MIN_NOTICE_BYTES
    assert verify_notice(data, ROOT.public_key).entries == ()


def test_the_writer_refuses_bad_fields() -> None:
    for kwargs in (
        {"serial": 0},
        {"serial": 2**63},
        {"previous_valid_until": T0 - 1},
        {"token": b"short"},
    ):
        args = {
            "serial": 1,
            "issued_at": T0,
            "previous_valid_until": T0,
            "token": TOKEN,
            "devices": [DEVICE_A.public_key],
            **kwargs,
        }
        with pytest.raises(ValueError, match=r"."):
            write_notice(ROOT, **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        write_notice(
            ROOT,
            serial=1,
            issued_at=T0,
            previous_valid_until=T0,
            token=TOKEN,
            devices=[DEVICE_A.public_key, DEVICE_A.public_key],
        )


def test_token_text_is_the_relay_token_format() -> None:
    assert token_text(TOKEN) == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token_text(bytes([255]) * 32))
    for bad in ("", "A" * 42, "A" * 44, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9"):
        with pytest.raises(ValueError, match=r"."):
            token_raw(bad)


def test_the_documented_vector_verifies_and_opens() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```\n([0-9a-f\n]+)```", text)
    assert block is not None
    data = bytes.fromhex(block.group(1).replace("\n", ""))
    notice = verify_notice(data, ROOT.public_key)
    assert (notice.serial, notice.issued_at, notice.previous_valid_until) == (
        1,
        1_767_225_600,
        1_768_435_200,
    )
    assert ROOT.public_key.key_id.hex() in text
    for device in (DEVICE_A, DEVICE_B):
        assert device.public_key.key_id.hex() in text
        grant = read_notice(data, ROOT.public_key, device, after_serial=0)
        assert grant.token == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


# ---------------------------------------------------------------- refusals


class Refusal(NamedTuple):
    data: Callable[[], bytes]
    reason: TokenNoticeReason
    device: DeviceSigningKey = DEVICE_A
    after_serial: int = 0


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _statement() -> bytes:
    return sign_hq_keys(
        ROOT,
        version=1,
        issued_at=T0,
        expires_at=T0 + 1,
        box=BoxPrivateKey(bytes([5]) * 32).public_key,
        protection=ProtectionPrivateKey(bytes([6]) * 32).public_key,
    )


REFUSALS: dict[str, Refusal] = {
    "bad signature": Refusal(lambda: _flip(_notice(), -1), TokenNoticeReason.BAD_SIGNATURE),
    "tampered entry": Refusal(lambda: _flip(_notice(), 60), TokenNoticeReason.BAD_SIGNATURE),
    "tampered grace end": Refusal(lambda: _flip(_notice(), 30), TokenNoticeReason.BAD_SIGNATURE),
    "signed by another root": Refusal(
        lambda: _signed(_sorted(_entry(DEVICE_A)), root=OTHER_ROOT),
        TokenNoticeReason.WRONG_SIGNER,
    ),
    "signed for another purpose": Refusal(
        lambda: _signed(_sorted(_entry(DEVICE_A)), purpose=SignPurpose.HQ_KEYS),
        TokenNoticeReason.BAD_SIGNATURE,
    ),
    "a key statement given as a notice": Refusal(_statement, TokenNoticeReason.WRONG_KIND),
    "truncated": Refusal(lambda: _notice()[:-1], TokenNoticeReason.MALFORMED),
    "truncated to the header": Refusal(lambda: _notice()[:35], TokenNoticeReason.MALFORMED),
    "trailing bytes": Refusal(lambda: _notice() + b"\x00", TokenNoticeReason.MALFORMED),
    "empty": Refusal(lambda: b"", TokenNoticeReason.MALFORMED),
    "other magic": Refusal(lambda: b"FATOKX" + _notice()[6:], TokenNoticeReason.MALFORMED),
    "other format version": Refusal(
        lambda: _notice()[:6] + b"\x02" + _notice()[7:], TokenNoticeReason.MALFORMED
    ),
    "serial 0": Refusal(
        lambda: _signed([_entry(DEVICE_A, 0)], serial=0), TokenNoticeReason.MALFORMED
    ),
    "unsorted entries": Refusal(
        lambda: _signed(sorted([_entry(DEVICE_A), _entry(DEVICE_B)], reverse=True)),
        TokenNoticeReason.MALFORMED,
    ),
    "duplicate entries": Refusal(
        lambda: _signed([_entry(DEVICE_A), _entry(DEVICE_A)]), TokenNoticeReason.MALFORMED
    ),
    "entry sealed for another serial": Refusal(
        lambda: _signed(_sorted(_entry(DEVICE_A, serial=1), _entry(DEVICE_B, 2)), serial=2),
        TokenNoticeReason.WRONG_SERIAL,
    ),
    "another device's entry under this key id": Refusal(
        lambda: _signed([(DEVICE_A.public_key.key_id, _sealed(DEVICE_B.public_key, 1))]),
        TokenNoticeReason.UNOPENABLE,
    ),
    "replayed serial": Refusal(
        lambda: _notice(serial=4), TokenNoticeReason.REPLAYED, after_serial=4
    ),
    "older serial": Refusal(lambda: _notice(serial=3), TokenNoticeReason.REPLAYED, after_serial=4),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refused_notices(name: str) -> None:
    case = REFUSALS[name]
    with pytest.raises(TokenNoticeError) as caught:
        read_notice(case.data(), ROOT.public_key, case.device, after_serial=case.after_serial)
    assert caught.value.reason is case.reason
    assert "\n" not in caught.value.message


def test_entry_for_the_same_serial_opens_when_built_by_hand() -> None:
    # The table's hand-built notices are refused for the named reason only.
    data = _signed(_sorted(_entry(DEVICE_A), _entry(DEVICE_B)))
    assert read_notice(data, ROOT.public_key, DEVICE_B, after_serial=0).token == token_text(TOKEN)


# ---------------------------------------------------------------- hypothesis


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_token_notice_error(data: bytes) -> None:
    try:
        parse_notice(data)
    except TokenNoticeError:
        return


_VALID = _notice()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_VALID) - 1), st.integers(1, 255))
def test_every_single_byte_change_is_refused(index: int, xor: int) -> None:
    mutated = bytearray(_VALID)
    mutated[index] ^= xor
    with pytest.raises(TokenNoticeError):
        read_notice(bytes(mutated), ROOT.public_key, DEVICE_A, after_serial=0)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=300), st.integers(0, len(_VALID)))
def test_spliced_bytes_raise_only_token_notice_error(insert: bytes, at: int) -> None:
    with pytest.raises(TokenNoticeError):
        verify_notice(_VALID[:at] + insert + _VALID[at:], ROOT.public_key)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 2**63 - 1),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
    st.binary(min_size=32, max_size=32),
    st.lists(st.binary(min_size=32, max_size=32), max_size=5, unique=True),
)
def test_round_trip(serial: int, issued: int, grace: int, token: bytes, seeds: list[bytes]) -> None:
    devices = [DeviceSigningKey(s) for s in seeds]
    data = write_notice(
        ROOT,
        serial=serial,
        issued_at=issued,
        previous_valid_until=issued + grace,
        token=token,
        devices=[d.public_key for d in devices],
    )
    notice = verify_notice(data, ROOT.public_key)
    assert (notice.serial, notice.issued_at, notice.previous_valid_until) == (
        serial,
        issued,
        issued + grace,
    )
    assert len(notice.entries) == len(devices)
    for device in devices:
        grant = read_notice(data, ROOT.public_key, device, after_serial=serial - 1)
        assert grant.token == token_text(token)
