"""The enrolment file HQ gives a monitor, and the one-time secret it carries.

An enrolment file is UTF-8 JSON, at most 64 KiB::

    {"fieldapp_enrolment": 1, "body": "<base64 of BODY>", "signature": "<base64>"}

BODY is canonical JSON (sorted keys, no spaces, UTF-8) naming the device, HQ's
current root key, the HQ-keys / root-rotation statement chain from the version
after the one at which that root took over (format 2 names that version; format
1 is a root that has never been rotated, anchored at version 0), and a one-time
enrolment secret; the signature is ``root.sign(SignPurpose.ENROLMENT,
BODY)``. ``read_enrolment`` checks, in order: size and JSON shape, the signature
by the root BODY names (over the exact BODY bytes), the BODY fields, the
expected root if the device already has one, and the statement chain. Only then
is anything in the file trusted. ``docs/enrolment.md`` is the specification.

The secret lets HQ bind the device key: the device's first bundle carries
``binding_proof(secret, device_key)``, and HQ binds the first device key whose
proof checks; after that the secret binds nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NoReturn

import nacl.utils

from crypto.errors import EnrolmentError, EnrolmentReason, InvalidKey, StatementError
from crypto.keys import (
    SIGNATURE_BYTES,
    DeviceVerifyKey,
    RootSigningKey,
    RootVerifyKey,
    SignPurpose,
    constant_time_equal,
)
from crypto.statements import MAX_CHAIN_LENGTH, MAX_STATEMENT_BYTES, HqTrust, verify_hq_chain

FORMAT_VERSION: Final = 1  # the root HQ was created with; the chain starts at version 1
ANCHORED_FORMAT_VERSION: Final = 2  # a later root, anchored at hq_anchor_version
MAX_ENROLMENT_BYTES: Final = 64 * 1024  # the whole file, checked before anything else
ENROLMENT_ID_BYTES: Final = 16
SECRET_BYTES: Final = 32
BINDING_PROOF_BYTES: Final = 32
MAX_DEVICE_NAME: Final = 64  # characters
MAX_RELAY_URL: Final = 2048  # characters
MAX_INT: Final = 2**63 - 1

_OUTER_KEYS: Final = frozenset({"fieldapp_enrolment", "body", "signature"})
_BODY_KEYS: Final = frozenset(
    {
        "device_name",
        "enrolment_id",
        "enrolment_secret",
        "hq_root",
        "hq_statements",
        "issued_at",
        "relay",
        "relay_pin",
        "upload_token",
    }
)
_ANCHORED_BODY_KEYS: Final = _BODY_KEYS | {"hq_anchor_version"}
_BINDING_PERSON: Final = b"fa-enrol-bind"
_MAX_INT_DIGITS: Final = 20  # longer JSON integers are refused before int() sees them
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What an enrolment file says, with every field valid.

    Building one with an invalid field raises ``ValueError`` (``TypeError`` if
    ``hq_root`` is not a ``RootVerifyKey``). ``secret`` is the one-time enrolment
    secret and ``upload_token`` a relay credential: neither appears in ``repr``,
    nor do the statement bytes. ``hq_statements`` are statements
    (``crypto/statements.py``), verified as a chain from ``hq_root`` by
    ``read_enrolment``. ``relay_pin`` is the hex SHA-256 of the relay
    certificate's SubjectPublicKeyInfo.
    """

    device_name: str
    enrolment_id: bytes
    secret: bytes = field(repr=False)
    hq_root: RootVerifyKey
    hq_statements: tuple[bytes, ...] = field(repr=False)
    issued_at: int
    relay: str | None = None
    relay_pin: str | None = None
    upload_token: str | None = field(default=None, repr=False)
    anchor_version: int = 0

    def __post_init__(self) -> None:
        _check_fields(self)


# --- field rules (shared by the writer and the reader) ------------------------------


def _check_fields(e: Enrolment) -> None:
    """Raise ``ValueError`` naming the first invalid field, never its value.

    ``TypeError`` if ``hq_root`` is not a ``RootVerifyKey`` (a key of another role).
    """
    if not _is_device_name(e.device_name):
        raise ValueError(
            f"device_name must be 1 to {MAX_DEVICE_NAME} characters, not only spaces, "
            "with no control characters or line breaks"
        )
    if not isinstance(e.enrolment_id, bytes) or len(e.enrolment_id) != ENROLMENT_ID_BYTES:
        raise ValueError(f"enrolment_id must be {ENROLMENT_ID_BYTES} bytes")
    if not isinstance(e.secret, bytes) or len(e.secret) != SECRET_BYTES:
        raise ValueError(f"the enrolment secret must be {SECRET_BYTES} bytes")
    if not isinstance(e.hq_root, RootVerifyKey):
        raise TypeError("hq_root must be a RootVerifyKey")
    if (
        not isinstance(e.hq_statements, tuple)
        or not 1 <= len(e.hq_statements) <= MAX_CHAIN_LENGTH
        or not all(
            isinstance(s, bytes) and 1 <= len(s) <= MAX_STATEMENT_BYTES for s in e.hq_statements
        )
    ):
        raise ValueError(
            f"hq_statements must be a tuple of 1 to {MAX_CHAIN_LENGTH} statements, "
            f"each 1 to {MAX_STATEMENT_BYTES} bytes"
        )
    if type(e.issued_at) is not int or not 0 <= e.issued_at <= MAX_INT:
        raise ValueError("issued_at must be an integer number of seconds, 0 to 2^63-1")
    if type(e.anchor_version) is not int or not 0 <= e.anchor_version <= MAX_INT:
        raise ValueError("anchor_version must be an integer from 0 to 2^63-1")
    if e.relay is not None and not _is_relay_url(e.relay):
        raise ValueError(
            f"relay must be an http:// or https:// URL of at most {MAX_RELAY_URL} characters"
        )
    if e.relay_pin is not None and not (
        isinstance(e.relay_pin, str) and _HEX_KEY.fullmatch(e.relay_pin)
    ):
        raise ValueError("relay_pin must be 64 lowercase hex digits (a SHA-256)")
    if e.upload_token is not None and not (
        isinstance(e.upload_token, str) and _TOKEN.fullmatch(e.upload_token)
    ):
        raise ValueError("upload_token must be 16 to 256 characters from A-Z a-z 0-9 _ -")


def _is_device_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_DEVICE_NAME
        and not name.isspace()
        # C*: control, format, surrogate, private use, unassigned. Zl, Zp: line breaks.
        and not any(
            unicodedata.category(c)[0] == "C" or unicodedata.category(c) in {"Zl", "Zp"}
            for c in name
        )
    )


def _is_relay_url(url: object) -> bool:
    if not isinstance(url, str) or len(url) > MAX_RELAY_URL:
        return False
    if not url.startswith(("http://", "https://")):
        return False
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not 0..65535
    except ValueError:
        return False
    return bool(parts.hostname)


# --- binding proof and fresh values -------------------------------------------------


def binding_proof(secret: bytes, device: DeviceVerifyKey) -> bytes:
    """Proof that whoever holds ``secret`` chose ``device`` as its key (32 bytes).

    Keyed BLAKE2b (key = the enrolment secret, person ``fa-enrol-bind``) over the
    device's raw public key. HQ binds the first device key with a valid proof.

    Raises:
        ValueError: if ``secret`` is not 32 bytes.
        TypeError: if ``device`` is not a ``DeviceVerifyKey``.
    """
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ValueError(f"the enrolment secret must be {SECRET_BYTES} bytes")
    if not isinstance(device, DeviceVerifyKey):
        raise TypeError("binding_proof needs a DeviceVerifyKey")
    return hashlib.blake2b(
        device.raw, digest_size=BINDING_PROOF_BYTES, key=secret, person=_BINDING_PERSON
    ).digest()


def check_binding(secret: bytes, device: DeviceVerifyKey, proof: bytes) -> bool:
    """True if ``proof`` is ``binding_proof(secret, device)``; compared in constant time.

    Raises:
        ValueError, TypeError: as ``binding_proof``, for a bad secret or key.
    """
    expected = binding_proof(secret, device)
    return isinstance(proof, bytes) and constant_time_equal(expected, proof)


def enrolment_secret() -> bytes:
    """A fresh one-time enrolment secret: 32 random bytes."""
    return bytes(nacl.utils.random(SECRET_BYTES))


def new_enrolment_id() -> bytes:
    """A fresh enrolment id: 16 random bytes."""
    return bytes(nacl.utils.random(ENROLMENT_ID_BYTES))


# --- writing ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def canonical_json(obj: object) -> bytes:
    """The BODY encoding: sorted keys, no spaces, UTF-8 (not ASCII-escaped)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def write_enrolment(root: RootSigningKey, enrolment: Enrolment) -> bytes:
    """The enrolment file for ``enrolment``, signed by HQ's root key ``root``.

    Raises:
        ValueError: if ``root`` is not the key ``enrolment.hq_root`` names, if a
            field is invalid, or if the file would exceed 64 KiB (too many
            statements).
        TypeError: if ``root`` is not a ``RootSigningKey`` or ``enrolment`` not an
            ``Enrolment``.
    """
    if not isinstance(root, RootSigningKey) or not isinstance(enrolment, Enrolment):
        raise TypeError("write_enrolment needs a RootSigningKey and an Enrolment")
    _check_fields(enrolment)  # again: a frozen dataclass can still be forced
    if root.public_key != enrolment.hq_root:
        raise ValueError("the enrolment must be signed by the HQ root key it names")
    fields: dict[str, object] = {
        "device_name": enrolment.device_name,
        "enrolment_id": enrolment.enrolment_id.hex(),
        "enrolment_secret": _b64(enrolment.secret),
        "hq_root": enrolment.hq_root.raw.hex(),
        "hq_statements": [_b64(s) for s in enrolment.hq_statements],
        "issued_at": enrolment.issued_at,
        "relay": enrolment.relay,
        "relay_pin": enrolment.relay_pin,
        "upload_token": enrolment.upload_token,
    }
    # One encoding per content: a root never rotated is always format 1.
    file_format = FORMAT_VERSION
    if enrolment.anchor_version:
        fields["hq_anchor_version"] = enrolment.anchor_version
        file_format = ANCHORED_FORMAT_VERSION
    body = canonical_json(fields)
    signature = root.sign(SignPurpose.ENROLMENT, body)
    outer = {"fieldapp_enrolment": file_format, "body": _b64(body), "signature": _b64(signature)}
    data = (json.dumps(outer, indent=2) + "\n").encode("ascii")
    if len(data) > MAX_ENROLMENT_BYTES:
        raise ValueError(f"the enrolment file would exceed {MAX_ENROLMENT_BYTES} bytes")
    return data


# --- reading ------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: anything that makes the file MALFORMED."""


def _fail() -> NoReturn:
    raise _Malformed


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        _fail()  # a duplicate key: which one wins differs between parsers
    return obj


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        _fail()
    return int(text)


def _refuse_constant(_name: str) -> NoReturn:
    _fail()  # NaN, Infinity, -Infinity are not JSON


def _strict_object(data: bytes, keys: frozenset[str]) -> dict[str, object]:
    """``data`` as a UTF-8 JSON object with exactly ``keys``, or ``_Malformed``."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_unique_object,
            parse_int=_bounded_int,
            parse_constant=_refuse_constant,
        )
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError
        raise _Malformed from e
    if not isinstance(value, dict) or set(value) != keys:
        _fail()
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        _fail()
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _b64decode(value: object, *, size: int | None = None) -> bytes:
    """Strict, canonical standard base64: the one encoding of its bytes, or ``_Malformed``."""
    text = _str(value)
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:  # binascii.Error, or a non-ASCII str
        raise _Malformed from e
    if _b64(raw) != text or (size is not None and len(raw) != size):
        _fail()
    return raw


def _hex(value: object, pattern: re.Pattern[str]) -> bytes:
    text = _str(value)
    if not pattern.fullmatch(text):
        _fail()
    return bytes.fromhex(text)


def _root(value: object) -> RootVerifyKey:
    try:
        return RootVerifyKey(_hex(value, _HEX_KEY))
    except InvalidKey as e:
        raise _Malformed from e


def _enrolment_from(fields: Mapping[str, object], root: RootVerifyKey) -> Enrolment:
    statements = fields["hq_statements"]
    if not isinstance(statements, list):
        _fail()
    issued_at = fields["issued_at"]
    if type(issued_at) is not int:  # bool is an int subclass: refuse true/false
        _fail()
    anchor_version = fields.get("hq_anchor_version", 0)
    if type(anchor_version) is not int or ("hq_anchor_version" in fields and anchor_version < 1):
        _fail()  # format 2 exists only for a later root: its anchor is at least 1
    try:
        return Enrolment(
            device_name=_str(fields["device_name"]),
            enrolment_id=_hex(fields["enrolment_id"], _HEX_ID),
            secret=_b64decode(fields["enrolment_secret"], size=SECRET_BYTES),
            hq_root=root,
            hq_statements=tuple(_b64decode(s) for s in statements),
            issued_at=issued_at,
            relay=_optional_str(fields["relay"]),
            relay_pin=_optional_str(fields["relay_pin"]),
            upload_token=_optional_str(fields["upload_token"]),
            anchor_version=anchor_version,
        )
    except ValueError as e:
        raise _Malformed from e


def read_enrolment(
    data: bytes, *, now: int, expected_root: RootVerifyKey | None = None
) -> tuple[Enrolment, HqTrust]:
    """Read and verify an enrolment file; return it and the HQ trust it establishes.

    Checks, in order, stopping at the first failure:

    1. at most 64 KiB of UTF-8 JSON, exactly the outer keys, format 1, strict
       canonical base64 for ``body`` and a 64-byte ``signature``; BODY a JSON
       object with exactly the documented keys and ``hq_root`` a valid key;
    2. the signature over the exact BODY bytes by the ``hq_root`` BODY names;
    3. every BODY field;
    4. if ``expected_root`` is given (the device already trusts an HQ), that it
       is ``hq_root``;
    5. the statements as an HQ chain from ``HqTrust.anchor(hq_root, anchor_version)``
       at ``now``.

    The returned trust is what ``verify_hq_chain`` returns. The caller still has
    the HQ fingerprint (``crypto.fingerprint.hq_fingerprint``) compared out of band
    before it pins the root.

    Raises:
        EnrolmentError: MALFORMED (1, 3), BAD_SIGNATURE (2), FOREIGN (4) or
            CHAIN (5, with the statement error's message).
        TypeError: if ``now`` is not an int or ``expected_root`` not a root key.
    """
    if type(now) is not int:
        raise TypeError("now must be an int of unix seconds")
    if expected_root is not None and not isinstance(expected_root, RootVerifyKey):
        raise TypeError("expected_root must be a RootVerifyKey or None")
    try:
        body, signature, fields, root = _read_shape(data)
    except _Malformed as e:
        raise EnrolmentError(EnrolmentReason.MALFORMED) from e
    if not root.verify(SignPurpose.ENROLMENT, body, signature):
        raise EnrolmentError(EnrolmentReason.BAD_SIGNATURE)
    try:
        enrolment = _enrolment_from(fields, root)
    except _Malformed as e:
        raise EnrolmentError(EnrolmentReason.MALFORMED) from e
    if expected_root is not None and not constant_time_equal(expected_root.raw, root.raw):
        raise EnrolmentError(EnrolmentReason.FOREIGN)
    try:
        trust = verify_hq_chain(
            HqTrust.anchor(root, enrolment.anchor_version), enrolment.hq_statements, now
        )
    except StatementError as e:
        raise EnrolmentError(EnrolmentReason.CHAIN, e.message) from e
    return enrolment, trust


def _read_shape(data: object) -> tuple[bytes, bytes, dict[str, object], RootVerifyKey]:
    """Step 1: BODY bytes, signature, BODY's parsed object and the root it names."""
    if not isinstance(data, bytes) or len(data) > MAX_ENROLMENT_BYTES:
        _fail()
    outer = _strict_object(data, _OUTER_KEYS)
    version = outer["fieldapp_enrolment"]
    if type(version) is not int or version not in (FORMAT_VERSION, ANCHORED_FORMAT_VERSION):
        _fail()
    body = _b64decode(outer["body"])
    signature = _b64decode(outer["signature"], size=SIGNATURE_BYTES)
    keys = _BODY_KEYS if version == FORMAT_VERSION else _ANCHORED_BODY_KEYS
    fields = _strict_object(body, keys)
    return body, signature, fields, _root(fields["hq_root"])
