"""Signed key statements and chain verification (crypto/statements.py).

The chains are tested as tables of named cases, as python-tuf tests root rotation:
each case is a starting trust state, a list of statement bytes, and either the
expected end state or the reason the chain must be refused. Keys come from fixed
seeds so every case is the same on every run. Helpers at the top build statement
bytes from the layout in docs/statements.md independently of the module, so the
tests also check that the documented layout is the real one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto.errors import StatementError, StatementReason
from crypto.keys import (
    BoxPrivateKey,
    BoxPublicKey,
    DeviceSigningKey,
    DeviceVerifyKey,
    ProtectionPrivateKey,
    ProtectionPublicKey,
    RootSigningKey,
    RootVerifyKey,
    SignPurpose,
)
from crypto.statements import (
    MAX_CHAIN_LENGTH,
    MAX_INT,
    MAX_STATEMENT_BYTES,
    DeviceRotationStatement,
    DeviceTrust,
    HqKeysStatement,
    HqTrust,
    RootRotationStatement,
    parse_statement,
    sign_device_rotation,
    sign_hq_keys,
    sign_root_rotation,
    verify_device_chain,
    verify_hq_chain,
)

Reason = StatementReason
T0 = 1_700_000_000
DAY = 86_400
NOW = T0 + 100 * DAY
FRESH = NOW + 365 * DAY
STALE = NOW - DAY
P25519 = 2**255 - 19


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"fieldapp statements test " + label.encode()).digest()


R0, R1, R2, R_OTHER = (RootSigningKey(_seed(f"root {n}")) for n in range(4))
BOX = [BoxPrivateKey(_seed(f"box {n}")).public_key for n in range(5)]
PROT = [ProtectionPrivateKey(_seed(f"protection {n}")).public_key for n in range(3)]
D0, D1, D2, D_OTHER = (DeviceSigningKey(_seed(f"device {n}")) for n in range(4))
ALL_PUBLIC_RAW = [
    *(k.public_key.raw for k in (R0, R1, R2, R_OTHER, D0, D1, D2, D_OTHER)),
    *(k.raw for k in BOX),
    *(k.raw for k in PROT),
]
ANCHOR = HqTrust.anchor(R0.public_key)
DEVICE_ANCHOR = DeviceTrust.anchor(D0.public_key)

# --- statement builders -------------------------------------------------------------


def hq(
    root: RootSigningKey,
    version: int,
    box: int = 0,
    prot: int = 0,
    *,
    issued: int = T0,
    expires: int = FRESH,
) -> bytes:
    return sign_hq_keys(
        root,
        version=version,
        box=BOX[box],
        protection=PROT[prot],
        issued_at=issued,
        expires_at=expires,
    )


def rot(old: RootSigningKey, new: RootSigningKey, version: int, *, expires: int = FRESH) -> bytes:
    return sign_root_rotation(old, new, version=version, issued_at=T0, expires_at=expires)


def dev(old: DeviceSigningKey, new: DeviceSigningKey, version: int, *, issued: int = T0) -> bytes:
    return sign_device_rotation(old, new, version=version, issued_at=issued)


def body_of(data: bytes) -> bytes:
    return parse_statement(data).body


def entries_of(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(e.key_id, e.signature) for e in parse_statement(data).signatures]


def assemble(body: bytes, entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Body, count byte, entries: exactly in the order given (no sorting)."""
    return body + bytes([len(entries)]) + b"".join(k + s for k, s in entries)


def signed_by(
    body: bytes, *signers: tuple[RootSigningKey | DeviceSigningKey, SignPurpose]
) -> bytes:
    entries = [(key.public_key.key_id, key.sign(purpose, body)) for key, purpose in signers]
    return assemble(body, sorted(entries))


def with_body_of(signed: bytes, other: bytes) -> bytes:
    """``other``'s body carrying ``signed``'s signatures: a field changed after signing."""
    return assemble(body_of(other), entries_of(signed))


def raw_body(
    kind: int, fields: bytes, *, magic: bytes = b"FASTMT", format_version: int = 1
) -> bytes:
    return magic + bytes([format_version, kind]) + fields


def hq_fields(
    version: int,
    issued: int,
    expires: int,
    *,
    box: bytes,
    box_id: bytes,
    prot: bytes,
    prot_id: bytes,
) -> bytes:
    return struct.pack(">QQQ", version, issued, expires) + box + box_id + prot + prot_id


def root_fields(version: int, issued: int, expires: int, new_root: bytes) -> bytes:
    return struct.pack(">QQQ", version, issued, expires) + new_root


def device_fields(version: int, issued: int, old: bytes, new: bytes) -> bytes:
    return struct.pack(">QQ", version, issued) + old + new


def good_hq_fields(**change: object) -> bytes:
    values: dict[str, object] = {
        "version": 1,
        "issued": T0,
        "expires": FRESH,
        "box": BOX[0].raw,
        "box_id": BOX[0].key_id,
        "prot": PROT[0].raw,
        "prot_id": PROT[0].key_id,
    }
    values.update(change)
    return hq_fields(**values)  # type: ignore[arg-type]


def r0_signed_hq(fields: bytes, **header: object) -> bytes:
    body = raw_body(1, fields, **header)  # type: ignore[arg-type]
    return signed_by(body, (R0, SignPurpose.HQ_KEYS))


# --- layout ---------------------------------------------------------------------------


def test_documented_layout_is_the_real_one() -> None:
    data = hq(R0, 7, 1, 2, issued=T0, expires=FRESH)
    fields = hq_fields(
        7,
        T0,
        FRESH,
        box=BOX[1].raw,
        box_id=BOX[1].key_id,
        prot=PROT[2].raw,
        prot_id=PROT[2].key_id,
    )
    assert body_of(data) == raw_body(1, fields)
    assert len(data) == 8 + 120 + 1 + 80
    assert data[8 + 120] == 1
    assert data[8 + 120 + 1 : 8 + 120 + 17] == R0.public_key.key_id

    rotation = rot(R0, R1, 3)
    assert body_of(rotation) == raw_body(2, root_fields(3, T0, FRESH, R1.public_key.raw))
    assert len(rotation) == 8 + 56 + 1 + 160

    device = dev(D0, D1, 2)
    assert body_of(device) == raw_body(
        3, device_fields(2, T0, D0.public_key.raw, D1.public_key.raw)
    )
    assert len(device) == 8 + 80 + 1 + 160


def test_signatures_cover_the_purpose_and_the_whole_body() -> None:
    data = hq(R0, 1)
    ((key_id, signature),) = entries_of(data)
    assert key_id == R0.public_key.key_id
    assert R0.public_key.verify(SignPurpose.HQ_KEYS, body_of(data), signature)
    assert not R0.public_key.verify(SignPurpose.ROOT_ROTATION, body_of(data), signature)


def test_signature_entries_are_sorted_by_key_id() -> None:
    for data in (rot(R0, R1, 1), rot(R1, R0, 1), dev(D0, D1, 1), dev(D1, D0, 1)):
        ids = [k for k, _ in entries_of(data)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 2


def test_signing_is_deterministic() -> None:
    assert hq(R0, 1) == hq(R0, 1)
    assert rot(R0, R1, 2) == rot(R0, R1, 2)


# --- the HQ chain table ---------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    root: RootVerifyKey
    version: int
    box: BoxPublicKey | None
    protection: ProtectionPublicKey | None


@dataclass(frozen=True)
class HqCase:
    trust: Callable[[], HqTrust]  # builds a new starting state for each run
    chain: list[bytes]
    expect: Ok | StatementReason


def anchor() -> HqTrust:
    return HqTrust.anchor(R0.public_key)


def state_v2() -> HqTrust:
    """What ``hq(R0, 1), hq(R0, 2, 1)`` from the anchor gives, built by hand."""
    return HqTrust(root=R0.public_key, version=2, box=BOX[1], protection=PROT[0], expires_at=FRESH)


def state_stale() -> HqTrust:
    return HqTrust(root=R0.public_key, version=1, box=BOX[0], protection=PROT[0], expires_at=STALE)


ROOT_SIGNERS = {k.public_key: k for k in (R0, R1, R2, R_OTHER)}
HQ_RR_BODY = body_of(rot(R0, R1, 1))

HQ_CASES: dict[str, HqCase] = {
    "good chain: box rotations and a root rotation in between": HqCase(
        anchor,
        [hq(R0, 1, 0, 0), hq(R0, 2, 1, 0), rot(R0, R1, 3), hq(R1, 4, 2, 1), hq(R1, 5, 3, 1)],
        Ok(R1.public_key, 5, BOX[3], PROT[1]),
    ),
    "good chain: two root rotations back to back": HqCase(
        anchor,
        [hq(R0, 1), rot(R0, R1, 2), rot(R1, R2, 3), hq(R2, 4, 4, 2)],
        Ok(R2.public_key, 4, BOX[4], PROT[2]),
    ),
    "good chain: continues from a saved state": HqCase(
        state_v2, [hq(R0, 3, 2)], Ok(R0.public_key, 3, BOX[2], PROT[0])
    ),
    "box key carries over a root rotation": HqCase(
        state_v2, [rot(R0, R1, 3)], Ok(R1.public_key, 3, BOX[1], PROT[0])
    ),
    "root rotation right after enrolment, no HQ keys yet": HqCase(
        anchor, [rot(R0, R1, 1)], Ok(R1.public_key, 1, None, None)
    ),
    "root refresh: same key, new expiry, one signature": HqCase(
        state_v2, [rot(R0, R0, 3)], Ok(R0.public_key, 3, BOX[1], PROT[0])
    ),
    "empty chain from the enrolment anchor": HqCase(anchor, [], Ok(R0.public_key, 0, None, None)),
    "empty chain from a fresh state": HqCase(state_v2, [], Ok(R0.public_key, 2, BOX[1], PROT[0])),
    "empty chain from an expired state": HqCase(state_stale, [], Reason.EXPIRED),
    "skipped version": HqCase(anchor, [hq(R0, 1), hq(R0, 3)], Reason.SKIPPED_VERSION),
    "first statement is not version 1": HqCase(anchor, [hq(R0, 2)], Reason.SKIPPED_VERSION),
    "replayed: the same statement twice": HqCase(anchor, [hq(R0, 1), hq(R0, 1)], Reason.REPLAYED),
    "replayed: an old statement against a newer state": HqCase(
        state_v2, [hq(R0, 1)], Reason.REPLAYED
    ),
    "replayed: an old statement at the current version": HqCase(
        state_v2, [hq(R0, 2, 4)], Reason.REPLAYED
    ),
    "wrong signer: HQ keys signed by an unknown root": HqCase(
        anchor, [hq(R_OTHER, 1)], Reason.BAD_SIGNATURE
    ),
    "wrong signer: old root after a root rotation": HqCase(
        anchor, [rot(R0, R1, 1), hq(R0, 2)], Reason.BAD_SIGNATURE
    ),
    "wrong signer: new root before its rotation": HqCase(
        anchor, [hq(R1, 1), rot(R0, R1, 2)], Reason.BAD_SIGNATURE
    ),
    "root rotation signed only by the old root": HqCase(
        anchor, [signed_by(HQ_RR_BODY, (R0, SignPurpose.ROOT_ROTATION))], Reason.MISSING_SIGNATURE
    ),
    "root rotation signed only by the new root": HqCase(
        anchor, [signed_by(HQ_RR_BODY, (R1, SignPurpose.ROOT_ROTATION))], Reason.MISSING_SIGNATURE
    ),
    "root rotation signed by an unknown root instead of the old": HqCase(
        anchor,
        [
            signed_by(
                HQ_RR_BODY, (R_OTHER, SignPurpose.ROOT_ROTATION), (R1, SignPurpose.ROOT_ROTATION)
            )
        ],
        Reason.BAD_SIGNATURE,
    ),
    "root rotation by someone else entirely": HqCase(
        anchor, [rot(R_OTHER, R1, 1)], Reason.BAD_SIGNATURE
    ),
    "root rotation whose new-root signature is not over this body": HqCase(
        anchor,
        [
            assemble(
                HQ_RR_BODY,
                sorted(
                    [
                        (R0.public_key.key_id, R0.sign(SignPurpose.ROOT_ROTATION, HQ_RR_BODY)),
                        (R1.public_key.key_id, R1.sign(SignPurpose.ROOT_ROTATION, b"other")),
                    ]
                ),
            )
        ],
        Reason.BAD_SIGNATURE,
    ),
    "no signatures at all": HqCase(
        anchor, [assemble(body_of(hq(R0, 1)), [])], Reason.MISSING_SIGNATURE
    ),
    "an extra signer besides the root": HqCase(
        anchor,
        [signed_by(body_of(hq(R0, 1)), (R0, SignPurpose.HQ_KEYS), (R1, SignPurpose.HQ_KEYS))],
        Reason.BAD_SIGNATURE,
    ),
    "expired final state": HqCase(anchor, [hq(R0, 1, expires=STALE)], Reason.EXPIRED),
    "expires exactly now": HqCase(anchor, [hq(R0, 1, expires=NOW)], Reason.EXPIRED),
    "expired intermediate, fresh final: accepted": HqCase(
        anchor, [hq(R0, 1, 0, expires=STALE), hq(R0, 2, 1)], Ok(R0.public_key, 2, BOX[1], PROT[0])
    ),
    "expired intermediate root rotation, fresh later one: accepted": HqCase(
        anchor,
        [rot(R0, R1, 1, expires=STALE), hq(R1, 2), rot(R1, R2, 3)],
        Ok(R2.public_key, 3, BOX[0], PROT[0]),
    ),
    "latest root rotation expired though HQ keys are fresh": HqCase(
        anchor, [rot(R0, R1, 1, expires=STALE), hq(R1, 2)], Reason.EXPIRED
    ),
    "fresh root rotation cannot revive expired HQ keys": HqCase(
        anchor, [hq(R0, 1, expires=STALE), rot(R0, R1, 2)], Reason.EXPIRED
    ),
    "type confusion: device rotation in an HQ chain": HqCase(
        anchor, [dev(D0, D1, 1)], Reason.WRONG_KIND
    ),
    "type confusion: device rotation after good statements": HqCase(
        anchor, [hq(R0, 1), dev(D0, D1, 2)], Reason.WRONG_KIND
    ),
    "type confusion: HQ-keys body signed with the root-rotation purpose": HqCase(
        anchor,
        [signed_by(body_of(hq(R0, 1)), (R0, SignPurpose.ROOT_ROTATION))],
        Reason.BAD_SIGNATURE,
    ),
    "type confusion: root-rotation body signed with the HQ-keys purpose": HqCase(
        anchor,
        [signed_by(HQ_RR_BODY, (R0, SignPurpose.HQ_KEYS), (R1, SignPurpose.HQ_KEYS))],
        Reason.BAD_SIGNATURE,
    ),
    "type confusion: HQ-keys statement relabelled as a root rotation": HqCase(
        anchor, [hq(R0, 1)[:7] + b"\x02" + hq(R0, 1)[8:]], Reason.MALFORMED
    ),
    "tampered after signing: box key swapped": HqCase(
        anchor, [with_body_of(hq(R0, 1, 0), hq(R0, 1, 3))], Reason.BAD_SIGNATURE
    ),
    "tampered after signing: protection key swapped": HqCase(
        anchor, [with_body_of(hq(R0, 1, 0, 0), hq(R0, 1, 0, 2))], Reason.BAD_SIGNATURE
    ),
    "tampered after signing: expiry extended": HqCase(
        anchor,
        [with_body_of(hq(R0, 1, expires=STALE), hq(R0, 1, expires=FRESH))],
        Reason.BAD_SIGNATURE,
    ),
    "tampered after signing: new root swapped": HqCase(
        anchor, [with_body_of(rot(R0, R1, 1), rot(R0, R2, 1))], Reason.BAD_SIGNATURE
    ),
    "tampered after signing: version bumped": HqCase(
        state_v2, [with_body_of(hq(R0, 2), hq(R0, 3))], Reason.BAD_SIGNATURE
    ),
    "duplicated signature entry": HqCase(
        anchor, [assemble(body_of(hq(R0, 1)), entries_of(hq(R0, 1)) * 2)], Reason.MALFORMED
    ),
    "duplicated root-rotation signature in place of the new root's": HqCase(
        anchor,
        [
            assemble(
                HQ_RR_BODY,
                [e for e in entries_of(rot(R0, R1, 1)) if e[0] == R0.public_key.key_id] * 2,
            )
        ],
        Reason.MALFORMED,
    ),
    "signature entries out of order": HqCase(
        anchor, [assemble(HQ_RR_BODY, entries_of(rot(R0, R1, 1))[::-1])], Reason.MALFORMED
    ),
    "garbage in the middle of a chain": HqCase(
        anchor, [hq(R0, 1), b"not a statement", hq(R0, 2)], Reason.MALFORMED
    ),
    "a failure after good statements refuses the whole chain": HqCase(
        anchor, [hq(R0, 1), hq(R0, 2), hq(R_OTHER, 3)], Reason.BAD_SIGNATURE
    ),
}


def _no_key_material(message: str) -> None:
    lowered = message.lower()
    for raw in ALL_PUBLIC_RAW:
        assert raw.hex() not in lowered
        assert raw.hex()[:16] not in lowered


def _assert_hq_state_still_usable(trust: HqTrust) -> None:
    """``trust`` accepts exactly the statement that should come next after it."""
    signer = ROOT_SIGNERS[trust.root]
    after = verify_hq_chain(trust, [hq(signer, trust.version + 1, 3, 2)], NOW)
    assert Ok(after.root, after.version, after.box, after.protection) == Ok(
        trust.root, trust.version + 1, BOX[3], PROT[2]
    )


@pytest.mark.parametrize("case", HQ_CASES.values(), ids=HQ_CASES.keys())
def test_hq_chain(case: HqCase) -> None:
    trust = case.trust()
    if isinstance(case.expect, Ok):
        result = verify_hq_chain(trust, case.chain, NOW)
        assert Ok(result.root, result.version, result.box, result.protection) == case.expect
        assert not result.is_expired(NOW)
    else:
        with pytest.raises(StatementError) as caught:
            verify_hq_chain(trust, case.chain, NOW)
        assert caught.value.reason is case.expect
        _no_key_material(caught.value.message)
    # The caller's state is what it was, and still takes the next statement.
    assert trust == case.trust()
    _assert_hq_state_still_usable(trust)


def test_the_saved_state_built_by_hand_is_what_the_chain_gives() -> None:
    assert verify_hq_chain(anchor(), [hq(R0, 1), hq(R0, 2, 1)], NOW) == state_v2()


def test_hq_chain_records_both_expiries() -> None:
    result = verify_hq_chain(
        ANCHOR, [hq(R0, 1, expires=NOW + 10), rot(R0, R1, 2, expires=NOW + 20)], NOW
    )
    assert (result.expires_at, result.root_expires_at) == (NOW + 10, NOW + 20)
    assert not result.is_expired(NOW + 9)
    assert result.is_expired(NOW + 10)
    with pytest.raises(StatementError) as caught:
        verify_hq_chain(result, [], NOW + 10)
    assert caught.value.reason is Reason.EXPIRED


def test_hq_trust_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANCHOR.version = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEVICE_ANCHOR.device = D1.public_key  # type: ignore[misc]


def test_a_refused_chain_leaves_the_callers_list_and_state_alone() -> None:
    trust = state_v2()
    # A good version 3, then a gap: the whole chain is refused, version 3 included.
    chain = [hq(R0, 3, 2), hq(R0, 5)]
    copy = list(chain)
    with pytest.raises(StatementError) as caught:
        verify_hq_chain(trust, chain, NOW)
    assert caught.value.reason is Reason.SKIPPED_VERSION
    assert chain == copy
    assert trust == state_v2()
    # The same object still stands at version 2: version 3 is what it accepts next.
    after = verify_hq_chain(trust, [hq(R0, 3, 2)], NOW)
    assert (after.root, after.version, after.box) == (R0.public_key, 3, BOX[2])


def test_chain_length_is_bounded_before_parsing() -> None:
    with pytest.raises(StatementError) as caught:
        verify_hq_chain(ANCHOR, [b""] * (MAX_CHAIN_LENGTH + 1), NOW)
    assert caught.value.reason is Reason.MALFORMED


def test_now_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        verify_hq_chain(ANCHOR, [], float(NOW))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        verify_device_chain(DEVICE_ANCHOR, [], now=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: HqTrust(R0.public_key, -1, None, None, None),
        lambda: HqTrust(R0.public_key, version=True, box=None, protection=None, expires_at=None),
        lambda: HqTrust(R0.public_key, 1, BOX[0], None, FRESH),
        lambda: HqTrust(R0.public_key, 1, BOX[0], PROT[0], None),
        lambda: HqTrust(R0.public_key, 1, None, None, FRESH),
        lambda: HqTrust(R0.public_key, 1, PROT[0], BOX[0], FRESH),  # type: ignore[arg-type]
        lambda: HqTrust(D0.public_key, 1, None, None, None),  # type: ignore[arg-type]
        lambda: HqTrust(R0.public_key, 1, None, None, None, root_expires_at=-5),
        lambda: DeviceTrust(D0.public_key, -1),
        lambda: DeviceTrust(R0.public_key, 0),  # type: ignore[arg-type]
    ],
    ids=[
        "negative version",
        "bool version",
        "box without protection",
        "keys without expiry",
        "expiry without keys",
        "box and protection swapped",
        "device key as root",
        "negative root expiry",
        "device negative version",
        "root key as device",
    ],
)
def test_inconsistent_trust_states_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(StatementError) as caught:
        make()
    assert caught.value.reason is Reason.MALFORMED


# --- the device chain table -------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCase:
    trust: Callable[[], DeviceTrust]  # builds a new starting state for each run
    chain: list[bytes]
    expect: tuple[DeviceVerifyKey, int] | StatementReason


def device_anchor() -> DeviceTrust:
    return DeviceTrust.anchor(D0.public_key)


def device_v1() -> DeviceTrust:
    return DeviceTrust(D1.public_key, 1)


DEVICE_SIGNERS = {k.public_key: k for k in (D0, D1, D2, D_OTHER)}
DEV_BODY = body_of(dev(D0, D1, 1))

DEVICE_CASES: dict[str, DeviceCase] = {
    "good chain: two rotations": DeviceCase(
        device_anchor, [dev(D0, D1, 1), dev(D1, D2, 2)], (D2.public_key, 2)
    ),
    "good chain: rotating back to an earlier key": DeviceCase(
        device_anchor, [dev(D0, D1, 1), dev(D1, D0, 2)], (D0.public_key, 2)
    ),
    "empty chain": DeviceCase(device_anchor, [], (D0.public_key, 0)),
    "issued far in the future: accepted (clocks are not trusted)": DeviceCase(
        device_anchor, [dev(D0, D1, 1, issued=NOW + 3650 * DAY)], (D1.public_key, 1)
    ),
    "skipped version": DeviceCase(device_anchor, [dev(D0, D1, 2)], Reason.SKIPPED_VERSION),
    "replayed: the same statement twice": DeviceCase(
        device_anchor, [dev(D0, D1, 1), dev(D0, D1, 1)], Reason.REPLAYED
    ),
    "replayed: an old rotation against a newer state": DeviceCase(
        device_v1, [dev(D0, D1, 1)], Reason.REPLAYED
    ),
    "wrong subject: rotates a key that is not the trusted one": DeviceCase(
        device_anchor, [dev(D_OTHER, D1, 1)], Reason.WRONG_SUBJECT
    ),
    "wrong subject: second rotation starts from the first's old key": DeviceCase(
        device_anchor, [dev(D0, D1, 1), dev(D0, D2, 2)], Reason.WRONG_SUBJECT
    ),
    "signed only by the old key": DeviceCase(
        device_anchor,
        [signed_by(DEV_BODY, (D0, SignPurpose.DEVICE_ROTATION))],
        Reason.MISSING_SIGNATURE,
    ),
    "signed only by the new key": DeviceCase(
        device_anchor,
        [signed_by(DEV_BODY, (D1, SignPurpose.DEVICE_ROTATION))],
        Reason.MISSING_SIGNATURE,
    ),
    "wrong signer in place of the new key": DeviceCase(
        device_anchor,
        [
            signed_by(
                DEV_BODY, (D0, SignPurpose.DEVICE_ROTATION), (D_OTHER, SignPurpose.DEVICE_ROTATION)
            )
        ],
        Reason.BAD_SIGNATURE,
    ),
    "type confusion: HQ-keys statement in a device chain": DeviceCase(
        device_anchor, [hq(R0, 1)], Reason.WRONG_KIND
    ),
    "type confusion: root rotation in a device chain": DeviceCase(
        device_anchor, [rot(R0, R1, 1)], Reason.WRONG_KIND
    ),
    "type confusion: device body signed with the revision purpose": DeviceCase(
        device_anchor,
        [signed_by(DEV_BODY, (D0, SignPurpose.REVISION), (D1, SignPurpose.REVISION))],
        Reason.BAD_SIGNATURE,
    ),
    "tampered after signing: new key swapped": DeviceCase(
        device_anchor, [with_body_of(dev(D0, D1, 1), dev(D0, D2, 1))], Reason.BAD_SIGNATURE
    ),
    "tampered after signing: issued_at changed": DeviceCase(
        device_anchor,
        [with_body_of(dev(D0, D1, 1), dev(D0, D1, 1, issued=T0 + 1))],
        Reason.BAD_SIGNATURE,
    ),
    "duplicated signature entry": DeviceCase(
        device_anchor,
        [assemble(DEV_BODY, [entries_of(dev(D0, D1, 1))[0]] * 2)],
        Reason.MALFORMED,
    ),
    "garbage": DeviceCase(device_anchor, [b"\x00" * 249], Reason.MALFORMED),
}


def _assert_device_state_still_usable(trust: DeviceTrust) -> None:
    """``trust`` accepts exactly the rotation that should come next after it."""
    old = DEVICE_SIGNERS[trust.device]
    new = D2 if old is not D2 else D1
    after = verify_device_chain(trust, [dev(old, new, trust.version + 1)], NOW)
    assert (after.device, after.version) == (new.public_key, trust.version + 1)


@pytest.mark.parametrize("case", DEVICE_CASES.values(), ids=DEVICE_CASES.keys())
def test_device_chain(case: DeviceCase) -> None:
    trust = case.trust()
    if isinstance(case.expect, tuple):
        result = verify_device_chain(trust, case.chain, NOW)
        assert (result.device, result.version) == case.expect
    else:
        with pytest.raises(StatementError) as caught:
            verify_device_chain(trust, case.chain, NOW)
        assert caught.value.reason is case.expect
        _no_key_material(caught.value.message)
    # The caller's state is what it was, and still takes the next rotation.
    assert trust == case.trust()
    _assert_device_state_still_usable(trust)


# --- strict parsing -------------------------------------------------------------------

GOOD_HQ = hq(R0, 1)
LOW_ORDER_X25519 = bytes(32)
NONCANONICAL_X25519 = (P25519 + 2).to_bytes(32, "little")
SMALL_ORDER_ED25519 = (1).to_bytes(32, "little")  # the identity point

PARSE_CASES: dict[str, object] = {
    "empty": b"",
    "header only": GOOD_HQ[:8],
    "body without count byte": GOOD_HQ[:128],
    "truncated by one byte": GOOD_HQ[:-1],
    "one trailing byte": GOOD_HQ + b"\x00",
    "oversized, refused before parsing": GOOD_HQ + b"\x00" * MAX_STATEMENT_BYTES,
    "wrong magic": b"FASTMX" + GOOD_HQ[6:],
    "format version 0": GOOD_HQ[:6] + b"\x00" + GOOD_HQ[7:],
    "format version 2": GOOD_HQ[:6] + b"\x02" + GOOD_HQ[7:],
    "kind 0": GOOD_HQ[:7] + b"\x00" + GOOD_HQ[8:],
    "kind 4": GOOD_HQ[:7] + b"\x04" + GOOD_HQ[8:],
    "count says 2, one entry": GOOD_HQ[:128] + b"\x02" + GOOD_HQ[129:],
    "count says 0, one entry": GOOD_HQ[:128] + b"\x00" + GOOD_HQ[129:],
    "three signature entries": assemble(
        body_of(GOOD_HQ), [(bytes([i]) * 16, bytes(64)) for i in range(3)]
    ),
    "version 0": r0_signed_hq(good_hq_fields(version=0)),
    "version 2^63": r0_signed_hq(good_hq_fields(version=2**63)),
    "version 2^64-1": r0_signed_hq(good_hq_fields(version=2**64 - 1)),
    "issued_at 2^63": r0_signed_hq(good_hq_fields(issued=2**63, expires=2**63 + 1)),
    "expires_at equal to issued_at": r0_signed_hq(good_hq_fields(issued=T0, expires=T0)),
    "expires_at before issued_at": r0_signed_hq(good_hq_fields(issued=T0, expires=T0 - 1)),
    "low-order box key": r0_signed_hq(good_hq_fields(box=LOW_ORDER_X25519)),
    "non-canonical box key": r0_signed_hq(good_hq_fields(box=NONCANONICAL_X25519)),
    "low-order protection key": r0_signed_hq(good_hq_fields(prot=LOW_ORDER_X25519)),
    "box key id does not match the box key": r0_signed_hq(good_hq_fields(box_id=BOX[1].key_id)),
    "box key id of the protection role": r0_signed_hq(
        good_hq_fields(box_id=ProtectionPublicKey(BOX[0].raw).key_id)
    ),
    "protection key id does not match": r0_signed_hq(good_hq_fields(prot_id=bytes(16))),
    "box and protection are the same key": r0_signed_hq(
        good_hq_fields(prot=BOX[0].raw, prot_id=ProtectionPublicKey(BOX[0].raw).key_id)
    ),
    "root rotation to a small-order point": signed_by(
        raw_body(2, root_fields(1, T0, FRESH, SMALL_ORDER_ED25519)),
        (R0, SignPurpose.ROOT_ROTATION),
    ),
    "root rotation to a point off the curve": signed_by(
        raw_body(2, root_fields(1, T0, FRESH, (2).to_bytes(32, "little"))),
        (R0, SignPurpose.ROOT_ROTATION),
    ),
    "device rotation to the same key": signed_by(
        raw_body(3, device_fields(1, T0, D0.public_key.raw, D0.public_key.raw)),
        (D0, SignPurpose.DEVICE_ROTATION),
    ),
    "device rotation from a small-order point": signed_by(
        raw_body(3, device_fields(1, T0, SMALL_ORDER_ED25519, D1.public_key.raw)),
        (D1, SignPurpose.DEVICE_ROTATION),
    ),
    "device rotation with the root-rotation length": raw_body(
        3, root_fields(1, T0, FRESH, D1.public_key.raw)
    )
    + b"\x00",
    "not bytes: bytearray": bytearray(GOOD_HQ),
    "not bytes: memoryview": memoryview(GOOD_HQ),
    "not bytes: str": GOOD_HQ.decode("latin-1"),
    "not bytes: None": None,
}


@pytest.mark.parametrize("data", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_parse_refuses(data: object) -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(data)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.MALFORMED


def test_parse_gives_typed_statements() -> None:
    statement = parse_statement(hq(R0, 4, 2, 1, issued=T0, expires=FRESH))
    assert isinstance(statement, HqKeysStatement)
    assert (statement.version, statement.issued_at, statement.expires_at) == (4, T0, FRESH)
    assert (statement.box, statement.protection) == (BOX[2], PROT[1])
    rotation = parse_statement(rot(R0, R1, 2))
    assert isinstance(rotation, RootRotationStatement)
    assert rotation.new_root == R1.public_key
    device = parse_statement(dev(D0, D1, 3))
    assert isinstance(device, DeviceRotationStatement)
    assert (device.old_device, device.new_device) == (D0.public_key, D1.public_key)


@pytest.mark.parametrize(
    "call",
    [
        lambda: hq(R0, 0),
        lambda: hq(R0, -1),
        lambda: hq(R0, version=True),
        lambda: hq(R0, 1.0),  # type: ignore[arg-type]
        lambda: hq(R0, MAX_INT + 1),
        lambda: hq(R0, 1, issued=-1),
        lambda: hq(R0, 1, issued=T0, expires=T0),
        lambda: hq(R0, 1, expires=float(FRESH)),  # type: ignore[arg-type]
        lambda: sign_hq_keys(
            R0,
            version=1,
            box=BOX[0],
            protection=ProtectionPublicKey(BOX[0].raw),
            issued_at=T0,
            expires_at=FRESH,
        ),
        lambda: sign_hq_keys(
            R0,
            version=1,
            box=PROT[0],  # type: ignore[arg-type]
            protection=PROT[1],
            issued_at=T0,
            expires_at=FRESH,
        ),
        lambda: rot(R0, R1, 0),
        lambda: rot(R0, R1, 1, expires=T0),
        lambda: dev(D0, D0, 1),
        lambda: dev(D0, D1, 1, issued=-1),
    ],
    ids=[
        "version 0",
        "negative version",
        "bool version",
        "float version",
        "version past 2^63-1",
        "negative issued_at",
        "expires_at equal to issued_at",
        "float expires_at",
        "box and protection the same key",
        "protection key passed as box key",
        "root rotation version 0",
        "root rotation expiring at issue",
        "device rotation to the same key",
        "device rotation negative issued_at",
    ],
)
def test_signing_refuses_bad_arguments(call: Callable[[], bytes]) -> None:
    with pytest.raises(StatementError) as caught:
        call()
    assert caught.value.reason is Reason.MALFORMED


# --- hypothesis -------------------------------------------------------------------------

seeds = st.binary(min_size=32, max_size=32)
versions = st.integers(min_value=1, max_value=MAX_INT)


@st.composite
def times(draw: st.DrawFn) -> tuple[int, int]:
    issued = draw(st.integers(min_value=0, max_value=MAX_INT - 1))
    expires = draw(st.integers(min_value=issued + 1, max_value=MAX_INT))
    return issued, expires


@given(root=seeds, box=seeds, prot=seeds, version=versions, when=times())
def test_hq_keys_round_trip(
    root: bytes, box: bytes, prot: bytes, version: int, when: tuple[int, int]
) -> None:
    box_key = BoxPrivateKey(box).public_key
    prot_key = ProtectionPrivateKey(prot).public_key
    assume(box_key.raw != prot_key.raw)
    signer = RootSigningKey(root)
    data = sign_hq_keys(
        signer,
        version=version,
        box=box_key,
        protection=prot_key,
        issued_at=when[0],
        expires_at=when[1],
    )
    statement = parse_statement(data)
    assert isinstance(statement, HqKeysStatement)
    assert (statement.version, statement.issued_at, statement.expires_at) == (version, *when)
    assert (statement.box, statement.protection) == (box_key, prot_key)
    assert [e.key_id for e in statement.signatures] == [signer.public_key.key_id]


@given(old=seeds, new=seeds, version=versions, when=times())
def test_root_rotation_round_trip(
    old: bytes, new: bytes, version: int, when: tuple[int, int]
) -> None:
    old_key, new_key = RootSigningKey(old), RootSigningKey(new)
    data = sign_root_rotation(
        old_key, new_key, version=version, issued_at=when[0], expires_at=when[1]
    )
    statement = parse_statement(data)
    assert isinstance(statement, RootRotationStatement)
    assert (statement.version, statement.issued_at, statement.expires_at) == (version, *when)
    assert statement.new_root == new_key.public_key
    signers = {old_key.public_key.key_id, new_key.public_key.key_id}
    assert {e.key_id for e in statement.signatures} == signers
    assert len(statement.signatures) == len(signers)


@given(old=seeds, new=seeds, version=versions, issued=st.integers(0, MAX_INT))
def test_device_rotation_round_trip(old: bytes, new: bytes, version: int, issued: int) -> None:
    old_key, new_key = DeviceSigningKey(old), DeviceSigningKey(new)
    assume(old_key.public_key != new_key.public_key)
    data = sign_device_rotation(old_key, new_key, version=version, issued_at=issued)
    statement = parse_statement(data)
    assert isinstance(statement, DeviceRotationStatement)
    assert (statement.version, statement.issued_at) == (version, issued)
    assert (statement.old_device, statement.new_device) == (old_key.public_key, new_key.public_key)
    trust = DeviceTrust(old_key.public_key, version - 1)
    assert verify_device_chain(trust, [data], NOW).device == new_key.public_key


def _parse_or_refuse(data: bytes) -> None:
    try:
        parse_statement(data)
    except StatementError as e:
        assert e.reason is Reason.MALFORMED


@given(st.binary(max_size=MAX_STATEMENT_BYTES + 64))
def test_parse_of_arbitrary_bytes_raises_only_statement_error(data: bytes) -> None:
    _parse_or_refuse(data)


@given(
    kind=st.sampled_from([b"\x01", b"\x02", b"\x03"]),
    tail=st.binary(min_size=55, max_size=300),
)
def test_parse_of_arbitrary_bodies_raises_only_statement_error(kind: bytes, tail: bytes) -> None:
    _parse_or_refuse(b"FASTMT\x01" + kind + tail)


VALID = {
    "hq keys": hq(R0, 1),
    "root rotation": rot(R0, R1, 1),
    "device rotation": dev(D0, D1, 1),
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[name])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        where = draw(st.integers(min_value=0, max_value=len(data)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]))
        if how == "flip" and where < len(data):
            data[where] ^= draw(st.integers(min_value=1, max_value=255))
        elif how == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=80))
        elif how == "delete":
            del data[where : where + draw(st.integers(min_value=1, max_value=80))]
        elif how == "truncate":
            del data[where:]
        elif how == "extend":
            data += draw(st.binary(min_size=1, max_size=80))
    return name, bytes(data)


@given(mutated())
def test_parse_of_mutated_statements_raises_only_statement_error(
    case: tuple[str, bytes],
) -> None:
    _parse_or_refuse(case[1])


@given(mutated())
def test_mutated_statements_never_verify(case: tuple[str, bytes]) -> None:
    name, data = case
    assume(data != VALID[name])
    with pytest.raises(StatementError):
        if name == "device rotation":
            verify_device_chain(DEVICE_ANCHOR, [data], NOW)
        else:
            verify_hq_chain(ANCHOR, [data], NOW)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["hq keys", "root rotation"]),
    position=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_flip_makes_the_hq_chain_fail(name: str, position: int, mask: int) -> None:
    data = bytearray(VALID[name])
    data[position % len(data)] ^= mask
    with pytest.raises(StatementError):
        verify_hq_chain(ANCHOR, [bytes(data)], NOW)


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_position_flipped_fails(name: str) -> None:
    """Exhaustive over positions, for the low and the high bit of each byte."""
    valid = VALID[name]
    for position in range(len(valid)):
        for mask in (0x01, 0x80):
            data = bytearray(valid)
            data[position] ^= mask
            with pytest.raises(StatementError):
                if name == "device rotation":
                    verify_device_chain(DEVICE_ANCHOR, [bytes(data)], NOW)
                else:
                    verify_hq_chain(ANCHOR, [bytes(data)], NOW)
