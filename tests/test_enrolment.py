"""Enrolment files and the enrolment binding proof (crypto/enrolment.py).

Files are also built here by hand from docs/enrolment.md (outer JSON, canonical
BODY, signature over the exact BODY bytes), so that a bad BODY can be re-signed
by the right root and only field validation is left to refuse it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.enrolment import (
    MAX_ENROLMENT_BYTES,
    Enrolment,
    binding_proof,
    canonical_json,
    check_binding,
    enrolment_secret,
    new_enrolment_id,
    read_enrolment,
    write_enrolment,
)
from crypto.errors import EnrolmentError, EnrolmentReason, StatementError, StatementReason
from crypto.keys import (
    BoxPrivateKey,
    DeviceSigningKey,
    ProtectionPrivateKey,
    RootSigningKey,
    SignPurpose,
)
from crypto.statements import HqTrust, sign_hq_keys, sign_root_rotation, verify_hq_chain

Reason = EnrolmentReason
T0 = 1_700_000_000
DAY = 86_400
NOW = T0 + 10 * DAY
FRESH = NOW + 365 * DAY
MAX_INT = 2**63 - 1


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"fieldapp enrolment test " + label.encode()).digest()


ROOT, NEW_ROOT, OTHER_ROOT = (RootSigningKey(_seed(f"root {n}")) for n in range(3))
BOX = BoxPrivateKey(_seed("box")).public_key
PROT = ProtectionPrivateKey(_seed("protection")).public_key
DEVICE, OTHER_DEVICE = (DeviceSigningKey(_seed(f"device {n}")).public_key for n in range(2))
SECRET = _seed("secret")
OTHER_SECRET = _seed("other secret")
TOKEN = "tok_" + "A1-z" * 8


def hq_keys(root: RootSigningKey, version: int = 1, *, expires: int = FRESH) -> bytes:
    return sign_hq_keys(
        root, version=version, box=BOX, protection=PROT, issued_at=T0, expires_at=expires
    )


STATEMENT = hq_keys(ROOT)
ENROLMENT = Enrolment(
    device_name="Field laptop ٣",
    enrolment_id=bytes(range(16)),
    secret=SECRET,
    hq_root=ROOT.public_key,
    hq_statements=(STATEMENT,),
    issued_at=T0,
    relay="https://relay.example.org/fieldapp",
    relay_pin="ab" * 32,
    upload_token=TOKEN,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


B64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def noncanonical(text: str) -> str:
    """The same bytes in base64 with an unused bit of the last character set."""
    stripped = text.rstrip("=")
    assert stripped != text, "only padded base64 has unused bits"
    last = B64_ALPHABET[B64_ALPHABET.index(stripped[-1]) ^ 1]
    changed = stripped[:-1] + last + text[len(stripped) :]
    assert changed != text
    assert base64.b64decode(changed) == base64.b64decode(text)
    return changed


def valid_fields() -> dict[str, Any]:
    """ENROLMENT's BODY as a dict, built from the documented field table."""
    return {
        "device_name": ENROLMENT.device_name,
        "enrolment_id": ENROLMENT.enrolment_id.hex(),
        "enrolment_secret": b64(SECRET),
        "hq_root": ROOT.public_key.raw.hex(),
        "hq_statements": [b64(STATEMENT)],
        "issued_at": T0,
        "relay": ENROLMENT.relay,
        "relay_pin": ENROLMENT.relay_pin,
        "upload_token": TOKEN,
    }


def outer(body: str, signature: str, **extra: Any) -> bytes:
    return json.dumps(
        {"fieldapp_enrolment": 1, "body": body, "signature": signature, **extra}
    ).encode()


def file_from_body(
    body: bytes, signer: RootSigningKey = ROOT, purpose: SignPurpose = SignPurpose.ENROLMENT
) -> bytes:
    return outer(b64(body), b64(signer.sign(purpose, body)))


def file_from_fields(fields: dict[str, Any], signer: RootSigningKey = ROOT) -> bytes:
    return file_from_body(canonical_json(fields), signer)


def refusal(data: object, **kwargs: Any) -> EnrolmentError:
    kwargs.setdefault("now", NOW)
    with pytest.raises(EnrolmentError) as caught:
        read_enrolment(data, **kwargs)  # type: ignore[arg-type]
    return caught.value


def reason_of(data: object, **kwargs: Any) -> EnrolmentReason:
    return refusal(data, **kwargs).reason


def parts_of(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """The outer object, BODY bytes and signature of a file."""
    obj = json.loads(data)
    return obj, base64.b64decode(obj["body"]), base64.b64decode(obj["signature"])


# --- round trip and layout ---------------------------------------------------------


def test_round_trip() -> None:
    data = write_enrolment(ROOT, ENROLMENT)
    enrolment, trust = read_enrolment(data, now=NOW)
    assert enrolment == ENROLMENT
    assert trust == verify_hq_chain(HqTrust.anchor(ROOT.public_key), [STATEMENT], NOW)
    assert (trust.root, trust.version, trust.box, trust.protection) == (
        ROOT.public_key,
        1,
        BOX,
        PROT,
    )


def test_round_trip_with_optional_fields_absent() -> None:
    plain = dataclasses.replace(ENROLMENT, relay=None, relay_pin=None, upload_token=None)
    enrolment, _ = read_enrolment(write_enrolment(ROOT, plain), now=NOW)
    assert enrolment == plain
    assert enrolment.relay is enrolment.relay_pin is enrolment.upload_token is None


def test_chain_with_a_root_rotation() -> None:
    chain = (
        STATEMENT,
        sign_root_rotation(ROOT, NEW_ROOT, version=2, issued_at=T0, expires_at=FRESH),
        hq_keys(NEW_ROOT, 3),
    )
    enrolment = dataclasses.replace(ENROLMENT, hq_statements=chain)
    read, trust = read_enrolment(write_enrolment(ROOT, enrolment), now=NOW)
    assert read.hq_statements == chain
    assert trust == verify_hq_chain(HqTrust.anchor(ROOT.public_key), chain, NOW)
    assert trust.root == NEW_ROOT.public_key
    assert trust.version == 3


# After a root rotation at version 2, HQ enrols new devices from the new root:
# format 2, anchored at version 2, carrying only what follows it.
ANCHORED = dataclasses.replace(
    ENROLMENT, hq_root=NEW_ROOT.public_key, hq_statements=(hq_keys(NEW_ROOT, 3),), anchor_version=2
)


def test_anchored_round_trip_needs_no_earlier_root() -> None:
    data = write_enrolment(NEW_ROOT, ANCHORED)
    obj, body, _ = parts_of(data)
    assert obj["fieldapp_enrolment"] == 2
    assert json.loads(body)["hq_anchor_version"] == 2
    assert ROOT.public_key.raw.hex().encode() not in body
    enrolment, trust = read_enrolment(data, now=NOW)
    assert enrolment == ANCHORED
    assert (trust.root, trust.version, trust.box) == (NEW_ROOT.public_key, 3, BOX)
    # the same state an older device reaches by following the whole chain
    rotated = (
        STATEMENT,
        sign_root_rotation(ROOT, NEW_ROOT, version=2, issued_at=T0, expires_at=FRESH),
        hq_keys(NEW_ROOT, 3),
    )
    followed = verify_hq_chain(HqTrust.anchor(ROOT.public_key), rotated, NOW)
    assert (followed.root, followed.version, followed.box, followed.protection) == (
        trust.root,
        trust.version,
        trust.box,
        trust.protection,
    )


def test_anchored_chain_must_start_right_after_the_anchor() -> None:
    for statements, reason in (
        ((hq_keys(NEW_ROOT, 2),), StatementReason.REPLAYED),
        ((hq_keys(NEW_ROOT, 4),), StatementReason.SKIPPED_VERSION),
        ((hq_keys(ROOT, 3),), StatementReason.BAD_SIGNATURE),
    ):
        forged = dataclasses.replace(ANCHORED, hq_statements=statements)
        error = refusal(write_enrolment(NEW_ROOT, forged))
        assert error.reason is Reason.CHAIN
        assert isinstance(error.__cause__, StatementError)
        assert error.__cause__.reason is reason


def anchored_file(fields: dict[str, Any], file_format: int) -> bytes:
    body = canonical_json(fields)
    return json.dumps(
        {
            "fieldapp_enrolment": file_format,
            "body": b64(body),
            "signature": b64(NEW_ROOT.sign(SignPurpose.ENROLMENT, body)),
        }
    ).encode()


def anchored_fields(**changes: Any) -> dict[str, Any]:
    fields = valid_fields()
    fields.update(
        hq_root=NEW_ROOT.public_key.raw.hex(),
        hq_statements=[b64(hq_keys(NEW_ROOT, 3))],
        hq_anchor_version=2,
    )
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not ...}


def test_the_anchored_builder_matches_the_writer() -> None:
    assert (
        anchored_file(anchored_fields(), 2)
        == json.dumps(json.loads(write_enrolment(NEW_ROOT, ANCHORED))).encode()
    )


@pytest.mark.parametrize(
    ("case", "fields", "file_format"),
    [
        ("format 1 with an anchor", anchored_fields(), 1),
        ("format 2 without an anchor", anchored_fields(hq_anchor_version=...), 2),
        ("format 2 anchored at 0", anchored_fields(hq_anchor_version=0), 2),
        ("anchor negative", anchored_fields(hq_anchor_version=-1), 2),
        ("anchor a bool", anchored_fields(hq_anchor_version=True), 2),
        ("anchor a float", anchored_fields(hq_anchor_version=2.0), 2),
        ("anchor a string", anchored_fields(hq_anchor_version="2"), 2),
        ("anchor above 2^63-1", anchored_fields(hq_anchor_version=MAX_INT + 1), 2),
        ("format 3", anchored_fields(), 3),
    ],
)
def test_bad_anchors_are_malformed(case: str, fields: dict[str, Any], file_format: int) -> None:
    assert reason_of(anchored_file(fields, file_format)) is Reason.MALFORMED, case


def test_an_anchor_of_zero_is_written_as_format_1() -> None:
    obj, body, _ = parts_of(write_enrolment(ROOT, ENROLMENT))
    assert obj["fieldapp_enrolment"] == 1
    assert b"hq_anchor_version" not in body


def test_layout_is_the_documented_one() -> None:
    data = write_enrolment(ROOT, ENROLMENT)
    obj, body, signature = parts_of(data)
    assert set(obj) == {"fieldapp_enrolment", "body", "signature"}
    assert obj["fieldapp_enrolment"] == 1
    assert body == json.dumps(
        valid_fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert "٣".encode() in body  # UTF-8, not \\u escapes
    assert ROOT.public_key.verify(SignPurpose.ENROLMENT, body, signature)
    assert data.endswith(b"\n")
    assert data.decode("ascii")  # a text file


def test_expected_root_that_matches_is_accepted() -> None:
    enrolment, _ = read_enrolment(
        write_enrolment(ROOT, ENROLMENT), now=NOW, expected_root=ROOT.public_key
    )
    assert enrolment == ENROLMENT


def test_repr_hides_secrets_and_key_bytes() -> None:
    text = repr(ENROLMENT)
    for hidden in (SECRET.hex(), repr(SECRET), TOKEN, STATEMENT.hex()[:32], repr(STATEMENT)[:40]):
        assert hidden not in text
    assert ROOT.public_key.raw.hex() not in text
    assert "Field laptop" in text


# --- signature, foreign root, chain --------------------------------------------------


def _flip_in_body(data: bytes, marker: bytes, offset: int = 0) -> bytes:
    """Flip the low bit of the byte ``offset`` after ``marker`` inside BODY."""
    obj, body, _ = parts_of(data)
    at = body.index(marker) + len(marker) + offset
    tampered = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
    assert tampered != body
    return json.dumps({**obj, "body": b64(tampered)}).encode()


@pytest.mark.parametrize(
    ("marker", "offset"),
    [
        (b'"device_name":"', 0),
        (b'"enrolment_id":"', 5),
        (b'"enrolment_secret":"', 3),
        (b'"issued_at":', 9),
        (b'"relay":"', 12),
        (b'"relay_pin":"', 0),
        (b'"upload_token":"', 6),
        (b'"hq_statements":["', 10),
    ],
)
def test_tampered_body_byte_is_a_bad_signature(marker: bytes, offset: int) -> None:
    data = _flip_in_body(write_enrolment(ROOT, ENROLMENT), marker, offset)
    assert reason_of(data) is Reason.BAD_SIGNATURE


def test_tampered_signature_is_a_bad_signature() -> None:
    obj, _, signature = parts_of(write_enrolment(ROOT, ENROLMENT))
    tampered = bytes([signature[0] ^ 0x80]) + signature[1:]
    assert reason_of(json.dumps({**obj, "signature": b64(tampered)}).encode()) is (
        Reason.BAD_SIGNATURE
    )


def test_signed_by_another_root_than_hq_root_is_a_bad_signature() -> None:
    assert reason_of(file_from_fields(valid_fields(), OTHER_ROOT)) is Reason.BAD_SIGNATURE


def test_signed_for_another_purpose_is_a_bad_signature() -> None:
    body = canonical_json(valid_fields())
    data = file_from_body(body, ROOT, SignPurpose.HQ_KEYS)
    assert reason_of(data) is Reason.BAD_SIGNATURE


def test_a_consistent_file_from_another_root() -> None:
    # An attacker swaps in their own hq_root and re-signs: the body now names
    # OTHER_ROOT, so the file is internally consistent: only expected_root or the
    # out-of-band fingerprint check can catch it (FOREIGN), never the signature.
    fields = {**valid_fields(), "hq_root": OTHER_ROOT.public_key.raw.hex()}
    data = file_from_fields(fields, OTHER_ROOT)
    assert reason_of(data, expected_root=ROOT.public_key) is Reason.FOREIGN
    # Without expected_root the chain (signed by ROOT) does not verify from OTHER_ROOT.
    assert reason_of(data) is Reason.CHAIN


def test_expected_root_differs_is_foreign() -> None:
    data = write_enrolment(ROOT, ENROLMENT)
    error = refusal(data, expected_root=OTHER_ROOT.public_key)
    assert error.reason is Reason.FOREIGN
    assert "different HQ" in error.message


def test_expired_chain_is_refused_with_the_statement_message() -> None:
    expiring = dataclasses.replace(ENROLMENT, hq_statements=(hq_keys(ROOT, expires=NOW),))
    data = write_enrolment(ROOT, expiring)
    read_enrolment(data, now=NOW - 1)  # fresh one second earlier
    error = refusal(data)
    assert error.reason is Reason.CHAIN
    cause = error.__cause__
    assert isinstance(cause, StatementError)
    assert cause.reason is StatementReason.EXPIRED
    assert error.message == cause.message


@pytest.mark.parametrize(
    ("case", "chain", "statement_reason"),
    [
        ("signed by another root", (hq_keys(OTHER_ROOT),), StatementReason.BAD_SIGNATURE),
        ("starts at version 2", (hq_keys(ROOT, 2),), StatementReason.SKIPPED_VERSION),
        ("not a statement", (b"\x00" * 40,), StatementReason.MALFORMED),
        ("replayed version", (STATEMENT, STATEMENT), StatementReason.REPLAYED),
    ],
)
def test_bad_chains_are_chain(
    case: str, chain: tuple[bytes, ...], statement_reason: StatementReason
) -> None:
    data = write_enrolment(ROOT, dataclasses.replace(ENROLMENT, hq_statements=chain))
    error = refusal(data)
    assert error.reason is Reason.CHAIN, case
    assert isinstance(error.__cause__, StatementError)
    assert error.__cause__.reason is statement_reason, case


def test_order_signature_before_fields() -> None:
    fields = {**valid_fields(), "issued_at": -1}
    assert reason_of(file_from_fields(fields)) is Reason.MALFORMED
    assert reason_of(file_from_fields(fields, OTHER_ROOT)) is Reason.BAD_SIGNATURE


def test_order_fields_before_foreign_before_chain() -> None:
    bad_field = file_from_fields({**valid_fields(), "relay": "ftp://x"})
    assert reason_of(bad_field, expected_root=OTHER_ROOT.public_key) is Reason.MALFORMED
    expired = write_enrolment(
        ROOT, dataclasses.replace(ENROLMENT, hq_statements=(hq_keys(ROOT, expires=NOW),))
    )
    assert reason_of(expired) is Reason.CHAIN
    assert reason_of(expired, expected_root=OTHER_ROOT.public_key) is Reason.FOREIGN


def test_messages_are_user_safe() -> None:
    assert str(EnrolmentError(Reason.BAD_SIGNATURE)) == (
        "This enrolment file has been altered or damaged: its HQ signature does not verify. "
        "Ask HQ for a new one."
    )
    assert str(EnrolmentError(Reason.FOREIGN)) == (
        "This enrolment file comes from a different HQ than the one this device is enrolled "
        "with; it was not imported."
    )
    messages = {r: EnrolmentError(r).message for r in Reason}
    assert len(set(messages.values())) == len(Reason)
    data = file_from_fields({**valid_fields(), "device_name": ""})
    for error in (refusal(data), refusal(write_enrolment(ROOT, ENROLMENT), now=FRESH)):
        for secret in (SECRET.hex()[:16], b64(SECRET)[:16], TOKEN, ROOT.public_key.raw.hex()[:16]):
            assert secret not in error.message
            assert secret not in repr(error)


# --- malformed files ---------------------------------------------------------------


def _good_parts() -> tuple[str, str]:
    obj, _, _ = parts_of(write_enrolment(ROOT, ENROLMENT))
    return obj["body"], obj["signature"]


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def _body_text() -> str:
    return canonical_json(valid_fields()).decode()


def _malformed_files() -> list[tuple[str, bytes]]:
    body, signature = _good_parts()
    good = outer(body, signature)
    body_text = _body_text()

    def with_body_text(text: str) -> bytes:
        return file_from_body(text.encode("utf-8"))

    sig = base64.b64decode(signature)
    body_bytes = base64.b64decode(body)
    # The fixed test body is padded and the signature holds "+" or "/", so every
    # edit below changes the file (the good-file anchor test checks the helpers).
    assert body.endswith("=")
    assert "+" in signature or "/" in signature
    return [
        ("not JSON", b"fieldapp enrolment"),
        ("empty", b""),
        ("JSON array", b"[]"),
        ("invalid UTF-8", good[:-1] + b"\xff}"),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + good),
        ("duplicate outer key", good[:-1] + b', "signature": "' + signature.encode() + b'"}'),
        ("unknown outer key", outer(body, signature, comment="hi")),
        ("missing outer key", json.dumps({"fieldapp_enrolment": 1, "body": body}).encode()),
        (
            "format version 2",
            _replace_once(good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": 2'),
        ),
        (
            "format version true",
            _replace_once(good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": true'),
        ),
        (
            "format version 1.0",
            _replace_once(good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": 1.0'),
        ),
        (
            "format version NaN",
            _replace_once(good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": NaN'),
        ),
        (
            "format version as string",
            _replace_once(good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": "1"'),
        ),
        (
            "huge integer",
            _replace_once(
                good, b'"fieldapp_enrolment": 1', b'"fieldapp_enrolment": ' + b"1" * 5000
            ),
        ),
        ("body not a string", outer(None, signature)),  # type: ignore[arg-type]
        ("body padding removed", outer(body.rstrip("="), signature)),
        ("body padding added", outer(body + "==", signature)),
        ("body non-canonical", outer(noncanonical(body), signature)),
        ("body with a newline", outer(body[:40] + "\n" + body[40:], signature)),
        ("body with a space", outer(body[:40] + " " + body[40:], signature)),
        ("body non-alphabet character", outer(body[:40] + "*" + body[41:], signature)),
        (
            "signature urlsafe alphabet",
            outer(body, signature.replace("+", "-").replace("/", "_")),
        ),
        ("signature non-canonical", outer(body, noncanonical(signature))),
        ("signature padding removed", outer(body, signature.rstrip("="))),
        ("signature 63 bytes", outer(body, b64(sig[:63]))),
        ("signature 65 bytes", outer(body, b64(sig + b"\x00"))),
        ("signature empty", outer(body, "")),
        ("body not JSON", file_from_body(b"not json")),
        ("body a JSON list", file_from_body(b"[]")),
        ("body invalid UTF-8", file_from_body(body_bytes[:-2] + b"\xff}")),
        ("body duplicate key", with_body_text(body_text[:-1] + ',"issued_at":0}')),
        ("body unknown key", file_from_fields({**valid_fields(), "note": "x"})),
        (
            "body missing key",
            file_from_fields({k: v for k, v in valid_fields().items() if k != "relay_pin"}),
        ),
        ("body NaN", with_body_text(body_text.replace(f'"issued_at":{T0}', '"issued_at":NaN'))),
        (
            "body Infinity",
            with_body_text(body_text.replace(f'"issued_at":{T0}', '"issued_at":Infinity')),
        ),
        ("body issued_at true", file_from_fields({**valid_fields(), "issued_at": True})),
        (
            "body deeply nested",
            with_body_text(body_text[:-1] + ',"x":' + "[" * 15000 + "]" * 15000 + "}"),
        ),
    ]


@pytest.mark.parametrize(
    ("case", "data"), _malformed_files(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_malformed_files(case: str, data: bytes) -> None:
    assert reason_of(data) is Reason.MALFORMED, case


def test_the_malformed_table_is_anchored_by_a_good_file() -> None:
    # The helpers build acceptable files: the table's refusals come from its edits.
    body, signature = _good_parts()
    assert read_enrolment(outer(body, signature), now=NOW)[0] == ENROLMENT
    assert read_enrolment(file_from_body(_body_text().encode()), now=NOW)[0] == ENROLMENT
    assert read_enrolment(file_from_fields(valid_fields()), now=NOW)[0] == ENROLMENT


def test_size_limit() -> None:
    data = write_enrolment(ROOT, ENROLMENT)
    # JSON allows trailing whitespace: only the size check tells these two apart.
    at_limit = data + b" " * (MAX_ENROLMENT_BYTES - len(data))
    assert len(at_limit) == MAX_ENROLMENT_BYTES
    assert read_enrolment(at_limit, now=NOW)[0] == ENROLMENT
    assert reason_of(at_limit + b" ") is Reason.MALFORMED


@pytest.mark.parametrize("data", [bytearray(b"{}"), "{}", None, 7])
def test_non_bytes_are_malformed(data: object) -> None:
    assert reason_of(data) is Reason.MALFORMED


def test_bad_arguments_are_type_errors() -> None:
    data = write_enrolment(ROOT, ENROLMENT)
    with pytest.raises(TypeError):
        read_enrolment(data, now=True)
    with pytest.raises(TypeError):
        read_enrolment(data, now=float(NOW))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        read_enrolment(data, now=NOW, expected_root=ROOT)  # type: ignore[arg-type]


# --- named bad BODY cases, each properly signed by the right root -------------------


BAD_FIELDS: list[tuple[str, str, object]] = [
    ("device_name empty", "device_name", ""),
    ("device_name 65 characters", "device_name", "x" * 65),
    ("device_name only spaces", "device_name", "   "),
    ("device_name only ideographic space", "device_name", "\u3000"),
    ("device_name newline", "device_name", "lap\ntop"),
    ("device_name NUL", "device_name", "lap\x00top"),
    ("device_name DEL", "device_name", "lap\x7ftop"),
    ("device_name right-to-left override", "device_name", "lap\u202etop"),
    ("device_name line separator", "device_name", "lap\u2028top"),
    ("device_name lone surrogate", "device_name", "lap\ud800top"),
    ("device_name private use", "device_name", "lap\ue000top"),
    ("device_name number", "device_name", 7),
    ("device_name null", "device_name", None),
    ("device_name list", "device_name", ["laptop"]),
    ("enrolment_id uppercase", "enrolment_id", "AB" * 16),
    ("enrolment_id 15 bytes", "enrolment_id", "ab" * 15),
    ("enrolment_id 17 bytes", "enrolment_id", "ab" * 17),
    ("enrolment_id odd length", "enrolment_id", "a" * 33),
    ("enrolment_id not hex", "enrolment_id", "g" * 32),
    ("enrolment_id trailing newline", "enrolment_id", "ab" * 16 + "\n"),
    ("enrolment_id base64", "enrolment_id", b64(bytes(16))),
    ("enrolment_id number", "enrolment_id", 12),
    ("enrolment_secret 31 bytes", "enrolment_secret", b64(SECRET[:31])),
    ("enrolment_secret 33 bytes", "enrolment_secret", b64(SECRET + b"\x00")),
    ("enrolment_secret non-canonical", "enrolment_secret", noncanonical(b64(SECRET))),
    ("enrolment_secret no padding", "enrolment_secret", b64(SECRET).rstrip("=")),
    (
        "enrolment_secret urlsafe",
        "enrolment_secret",
        base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),
    ),
    ("enrolment_secret with space", "enrolment_secret", " " + b64(SECRET)),
    ("enrolment_secret hex", "enrolment_secret", SECRET.hex()),
    ("enrolment_secret null", "enrolment_secret", None),
    ("hq_statements empty", "hq_statements", []),
    ("hq_statements a string", "hq_statements", b64(STATEMENT)),
    ("hq_statements item a number", "hq_statements", [5]),
    ("hq_statements item null", "hq_statements", [None]),
    ("hq_statements item empty", "hq_statements", [""]),
    ("hq_statements item not base64", "hq_statements", ["not base64!"]),
    ("hq_statements item non-canonical", "hq_statements", [noncanonical(b64(STATEMENT))]),
    ("hq_statements item too long", "hq_statements", [b64(bytes(1025))]),
    ("hq_statements 4097 items", "hq_statements", [b64(b"\x00")] * 4097),
    ("hq_statements nested list", "hq_statements", [[b64(STATEMENT)]]),
    ("issued_at negative", "issued_at", -1),
    ("issued_at 2^63", "issued_at", MAX_INT + 1),
    ("issued_at true", "issued_at", True),
    ("issued_at false", "issued_at", False),
    ("issued_at float", "issued_at", 1.5),
    ("issued_at integral float", "issued_at", float(T0)),
    ("issued_at string", "issued_at", str(T0)),
    ("issued_at null", "issued_at", None),
    ("relay ftp", "relay", "ftp://relay.example.org"),
    ("relay no scheme", "relay", "relay.example.org"),
    ("relay uppercase scheme", "relay", "HTTPS://relay.example.org"),
    ("relay no host", "relay", "https://"),
    ("relay only a port", "relay", "https://:443/x"),
    ("relay with a space", "relay", "https://relay.example.org/a b"),
    ("relay with a tab", "relay", "https://relay.example.org/\tx"),
    ("relay trailing newline", "relay", "https://relay.example.org\n"),
    ("relay zero-width space", "relay", "https://relay.example.org/\u200b"),
    ("relay bad port", "relay", "https://relay.example.org:99999/"),
    ("relay bad IPv6", "relay", "https://[::1/"),
    ("relay too long", "relay", "https://relay.example.org/" + "a" * 2048),
    ("relay number", "relay", 443),
    ("relay_pin uppercase", "relay_pin", "AB" * 32),
    ("relay_pin 63 digits", "relay_pin", "a" * 63),
    ("relay_pin 65 digits", "relay_pin", "a" * 65),
    ("relay_pin base64", "relay_pin", b64(bytes(32))),
    ("relay_pin number", "relay_pin", 1),
    ("upload_token 15 characters", "upload_token", "a" * 15),
    ("upload_token 257 characters", "upload_token", "a" * 257),
    ("upload_token with a space", "upload_token", "abcdefgh ijklmnop"),
    ("upload_token with a slash", "upload_token", "abcdefgh/ijklmnop"),
    ("upload_token with padding", "upload_token", "abcdefghijklmnop=="),
    ("upload_token non-ASCII letter", "upload_token", "abcdefghijklmnoé"),
    ("upload_token number", "upload_token", 1234567890123456),
    ("upload_token list", "upload_token", [TOKEN]),
]


@pytest.mark.parametrize(("case", "key", "value"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_bad_body_fields_are_malformed(case: str, key: str, value: object) -> None:
    fields = {**valid_fields(), key: value}
    # ASCII-escaped (the reader accepts any JSON spelling the root signed), so that a
    # lone surrogate reaches field validation as the escape \\ud800, not as bad UTF-8.
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")
    data = file_from_body(body)
    assert len(data) <= MAX_ENROLMENT_BYTES, case  # refused by its field, not its size
    error = refusal(data)
    assert error.reason is Reason.MALFORMED, case


BAD_ROOTS: list[tuple[str, object]] = [
    ("uppercase", ROOT.public_key.raw.hex().upper()),
    ("31 bytes", ROOT.public_key.raw.hex()[:62]),
    ("identity point (small order)", "01" + "00" * 31),
    ("not on the curve", "02" + "00" * 31),
    ("base64", b64(ROOT.public_key.raw)),
    ("null", None),
]


@pytest.mark.parametrize(("case", "value"), BAD_ROOTS, ids=[c[0] for c in BAD_ROOTS])
def test_bad_hq_root_is_malformed(case: str, value: object) -> None:
    assert reason_of(file_from_fields({**valid_fields(), "hq_root": value})) is Reason.MALFORMED


GOOD_FIELDS: list[tuple[str, str, object]] = [
    ("device_name one character", "device_name", "x"),
    ("device_name 64 characters", "device_name", "é" * 64),
    ("device_name Arabic with spaces", "device_name", " حاسوب ميداني "),
    ("enrolment_secret zeros", "enrolment_secret", b64(bytes(32))),
    ("issued_at 0", "issued_at", 0),
    ("issued_at 2^63-1", "issued_at", MAX_INT),
    ("relay plain http with port", "relay", "http://192.0.2.1:8080"),
    ("relay onion", "relay", "http://" + "a" * 56 + ".onion/"),
    ("relay IPv6", "relay", "https://[2001:db8::1]:8443/x"),
    ("relay 2048 characters", "relay", "https://r.example/" + "a" * (2048 - 18)),
    ("relay null", "relay", None),
    ("relay_pin null", "relay_pin", None),
    ("upload_token 16 characters", "upload_token", "A-_z" * 4),
    ("upload_token 256 characters", "upload_token", "a" * 256),
    ("upload_token null", "upload_token", None),
]


@pytest.mark.parametrize(("case", "key", "value"), GOOD_FIELDS, ids=[c[0] for c in GOOD_FIELDS])
def test_boundary_body_fields_are_accepted(case: str, key: str, value: object) -> None:
    enrolment, _ = read_enrolment(file_from_fields({**valid_fields(), key: value}), now=NOW)
    if key == "enrolment_secret":
        assert isinstance(value, str)
        assert enrolment.secret == base64.b64decode(value), case
    else:
        assert getattr(enrolment, key) == value, case


# --- writing -----------------------------------------------------------------------


def test_write_refuses_a_root_other_than_hq_root() -> None:
    with pytest.raises(ValueError, match="HQ root"):
        write_enrolment(OTHER_ROOT, ENROLMENT)


def test_write_refuses_a_file_over_the_size_limit() -> None:
    big = dataclasses.replace(ENROLMENT, hq_statements=(STATEMENT,) * 200)
    with pytest.raises(ValueError, match="exceed"):
        write_enrolment(ROOT, big)


def test_write_refuses_an_enrolment_forced_invalid() -> None:
    forced = dataclasses.replace(ENROLMENT)
    object.__setattr__(forced, "device_name", "")
    with pytest.raises(ValueError, match="device_name"):
        write_enrolment(ROOT, forced)


@pytest.mark.parametrize(
    "changes",
    [
        {"device_name": "a\nb"},
        {"enrolment_id": bytes(15)},
        {"secret": bytes(31)},
        {"hq_statements": ()},
        {"hq_statements": [STATEMENT]},
        {"hq_statements": (STATEMENT.hex(),)},
        {"issued_at": -1},
        {"issued_at": True},
        {"relay": "ftp://x"},
        {"relay_pin": "AB" * 32},
        {"upload_token": "short"},
    ],
)
def test_invalid_enrolments_cannot_be_built(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        dataclasses.replace(ENROLMENT, **changes)  # type: ignore[arg-type]


def test_hq_root_of_another_role_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(ENROLMENT, hq_root=DEVICE)  # type: ignore[arg-type]


def test_value_errors_do_not_show_secrets() -> None:
    with pytest.raises(ValueError, match="upload_token") as caught:
        dataclasses.replace(ENROLMENT, upload_token="secret token!!!!")
    assert "secret token" not in str(caught.value)


# --- binding proof and fresh values -------------------------------------------------


def test_binding_proof_is_the_documented_construction() -> None:
    proof = binding_proof(SECRET, DEVICE)
    assert len(proof) == 32
    assert (
        proof
        == hashlib.blake2b(DEVICE.raw, digest_size=32, key=SECRET, person=b"fa-enrol-bind").digest()
    )


def test_binding_proof_checks() -> None:
    proof = binding_proof(SECRET, DEVICE)
    assert check_binding(SECRET, DEVICE, proof)
    assert not check_binding(SECRET, OTHER_DEVICE, proof)
    assert not check_binding(OTHER_SECRET, DEVICE, proof)
    assert binding_proof(SECRET, OTHER_DEVICE) != proof
    assert binding_proof(OTHER_SECRET, DEVICE) != proof
    assert not check_binding(SECRET, DEVICE, proof[:31])
    assert not check_binding(SECRET, DEVICE, proof + b"\x00")
    assert not check_binding(SECRET, DEVICE, bytes([proof[0] ^ 1]) + proof[1:])
    assert not check_binding(SECRET, DEVICE, b"")
    assert not check_binding(SECRET, DEVICE, proof.hex())  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [SECRET[:31], SECRET + b"\x00", b"", SECRET.hex()])
def test_binding_proof_needs_a_32_byte_secret(secret: object) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        binding_proof(secret, DEVICE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        check_binding(secret, DEVICE, bytes(32))  # type: ignore[arg-type]


def test_binding_proof_needs_a_device_key() -> None:
    with pytest.raises(TypeError):
        binding_proof(SECRET, ROOT.public_key)  # type: ignore[arg-type]


def test_fresh_values() -> None:
    secrets = {enrolment_secret() for _ in range(8)}
    ids = {new_enrolment_id() for _ in range(8)}
    assert len(secrets) == len(ids) == 8
    assert all(type(s) is bytes and len(s) == 32 for s in secrets)
    assert all(type(i) is bytes and len(i) == 16 for i in ids)


# --- hypothesis: nothing but EnrolmentError escapes ----------------------------------


def _expect_only_enrolment_error(data: bytes) -> None:
    with contextlib.suppress(EnrolmentError):
        read_enrolment(data, now=NOW)
    with contextlib.suppress(EnrolmentError):
        read_enrolment(data, now=NOW, expected_root=ROOT.public_key)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", "AA==", b64(SECRET), ROOT.public_key.raw.hex(), "ab" * 16]),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_enrolment_error(data: bytes) -> None:
    _expect_only_enrolment_error(data)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        JSON_VALUES.map(json.dumps),
        st.text(alphabet='{}[]:,"\\ 01tfnaeul-.eE', max_size=200),
        st.fixed_dictionaries(
            {
                "fieldapp_enrolment": st.one_of(st.just(1), JSON_VALUES),
                "body": st.one_of(
                    JSON_VALUES, JSON_VALUES.map(lambda v: b64(json.dumps(v).encode()))
                ),
                "signature": st.one_of(JSON_VALUES, st.binary(max_size=70).map(b64)),
            }
        ).map(json.dumps),
    )
)
def test_json_ish_text_raises_only_enrolment_error(text: str) -> None:
    _expect_only_enrolment_error(text.encode("utf-8", "surrogatepass"))


_FIELD_VALUES = {
    key: st.one_of(st.just(value), JSON_VALUES) for key, value in valid_fields().items()
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries({}, optional=_FIELD_VALUES),
    st.sampled_from([ROOT, OTHER_ROOT]),
)
def test_signed_json_ish_bodies_raise_only_enrolment_error(
    fields: dict[str, Any], signer: RootSigningKey
) -> None:
    # Properly signed bodies with fields of any JSON type, present or not.
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = file_from_body(body.encode("utf-8", "surrogatepass"), signer)
    try:
        enrolment, _ = read_enrolment(data, now=NOW)
    except EnrolmentError:
        return
    # Only a complete, valid body signed by the root it names gets through, and then
    # it is exactly what the writer would produce from the result.
    assert set(fields) == set(valid_fields())
    _, written_body, _ = parts_of(write_enrolment(signer, enrolment))
    assert written_body == body.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_raise_only_enrolment_error(data: st.DataObject) -> None:
    raw = bytearray(write_enrolment(ROOT, ENROLMENT))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        offset = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[offset] = data.draw(st.integers(min_value=0, max_value=255))
    mutated = bytes(raw)
    try:
        enrolment, _ = read_enrolment(mutated, now=NOW)
    except EnrolmentError:
        return
    assert enrolment == ENROLMENT  # only whitespace or no-op changes may pass
