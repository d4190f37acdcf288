"""Upload-token notices: a new relay upload token, sealed to each enrolled device, signed by HQ.

The relay serves one notice to anyone holding the upload token (a thief of a
laptop included), so the new token travels sealed: one entry per device, the
token sealed with libsodium's ``crypto_box_seal`` to the X25519 form of that
device's Ed25519 key (``crypto_sign_ed25519_pk_to_curve25519``; the device opens
it with ``crypto_sign_ed25519_sk_to_curve25519`` of its signing key, the same
conversion age uses for ssh-ed25519 recipients). HQ's current root key signs the
whole notice, so nobody can add, swap or remove entries; the sealed plaintext
names the notice's serial, so an entry cannot be lifted into another notice.
Pure functions: bytes in, a parsed notice, a token, or ``TokenNoticeError`` out.
The byte layout is specified in ``docs/token-notice.md``.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import nacl.bindings as sodium
import nacl.exceptions

from crypto.errors import InvalidKey, TokenNoticeError, TokenNoticeReason
from crypto.keys import (
    KEY_ID_BYTES,
    SIGNATURE_BYTES,
    DeviceSigningKey,
    DeviceVerifyKey,
    RootSigningKey,
    RootVerifyKey,
    SignPurpose,
)

MAGIC: Final = b"FATOKN"
FORMAT_VERSION: Final = 1
TOKEN_BYTES: Final = 32  # the token is these bytes as unpadded base64url (43 characters)
MAX_ENTRIES: Final = 8192  # devices per deployment; bounds the notice at about 1 MiB
MAX_INT: Final = 2**63 - 1  # serials and times fit a signed 64-bit column
SEAL_DOMAIN: Final = b"fieldapp/v1/upload-token\x00"
_STATEMENT_MAGIC: Final = b"FASTMT"  # crypto/statements.py: refused as the wrong kind

_HEADER: Final = struct.Struct(">6sBQQQI")  # magic, version, serial, issued, valid until, count
_PLAINTEXT: Final = struct.Struct(f">{len(SEAL_DOMAIN)}sQ{TOKEN_BYTES}s")
SEALED_BYTES: Final = _PLAINTEXT.size + sodium.crypto_box_SEALBYTES  # 65 + 48
ENTRY_BYTES: Final = KEY_ID_BYTES + SEALED_BYTES  # 129
_TRAILER: Final = struct.Struct(f">{KEY_ID_BYTES}s{SIGNATURE_BYTES}s")  # signer id, signature
MIN_NOTICE_BYTES: Final = _HEADER.size + _TRAILER.size  # 115: a notice with no entry
MAX_NOTICE_BYTES: Final = MIN_NOTICE_BYTES + MAX_ENTRIES * ENTRY_BYTES


@dataclass(frozen=True, slots=True)
class NoticeEntry:
    """One device's entry: its key id and the token sealed to it."""

    key_id: bytes
    sealed: bytes


@dataclass(frozen=True, slots=True)
class TokenNotice:
    """A parsed notice. Its signature is checked only by ``verify_notice``."""

    serial: int
    issued_at: int
    previous_valid_until: int  # when the relay stops taking the tokens before this one
    entries: tuple[NoticeEntry, ...]
    signer: bytes  # the key id of the root that signed it
    signature: bytes
    body: bytes  # everything before the signer; the signature covers signed_bytes(body)

    def entry_for(self, key_id: bytes) -> NoticeEntry | None:
        for entry in self.entries:
            if entry.key_id == key_id:
                return entry
        return None


def token_text(raw: bytes) -> str:
    """The bearer token for 32 raw bytes: unpadded base64url, as ``secrets.token_urlsafe``."""
    if len(raw) != TOKEN_BYTES:
        raise ValueError("an upload token is 32 bytes")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_raw(text: str) -> bytes:
    """The 32 bytes behind a token made by ``token_text``. Raises ValueError."""
    if len(text) != 43 or not text.isascii():
        raise ValueError("an upload token is 43 base64url characters")
    raw = base64.urlsafe_b64decode(text + "=")
    if token_text(raw) != text:
        raise ValueError("not the canonical encoding of a token")
    return raw


def _malformed(detail: str) -> TokenNoticeError:
    return TokenNoticeError(
        TokenNoticeReason.MALFORMED,
        f"HQ's notice of a new relay upload token is damaged ({detail}); this device keeps "
        "the token it has.",
    )


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def _device_box_public(device: DeviceVerifyKey) -> bytes:
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(device.raw)
    except nacl.exceptions.RuntimeError as e:  # pragma: no cover -- the key was validated
        raise InvalidKey from e


# --- writing (HQ) ---------------------------------------------------------------------


def seal_entry(device: DeviceVerifyKey, serial: int, token: bytes) -> NoticeEntry:
    """The entry that gives ``token`` to ``device`` in the notice with ``serial``."""
    if len(token) != TOKEN_BYTES or not _is_uint(serial) or serial < 1:
        raise ValueError("a 32-byte token and a serial from 1")
    plaintext = _PLAINTEXT.pack(SEAL_DOMAIN, serial, token)
    return NoticeEntry(device.key_id, sodium.crypto_box_seal(plaintext, _device_box_public(device)))


def write_notice(
    root: RootSigningKey,
    *,
    serial: int,
    issued_at: int,
    previous_valid_until: int,
    token: bytes,
    devices: Sequence[DeviceVerifyKey],
) -> bytes:
    """A signed notice giving ``token`` to each of ``devices``. Raises ValueError."""
    if not all(_is_uint(v) for v in (serial, issued_at, previous_valid_until)) or serial < 1:
        raise ValueError("serial from 1; times from 0, within 63 bits")
    if previous_valid_until < issued_at:
        raise ValueError("the old token's grace cannot end before the notice is issued")
    entries = sorted((seal_entry(d, serial, token) for d in devices), key=lambda e: e.key_id)
    if len(entries) > MAX_ENTRIES or len({e.key_id for e in entries}) != len(entries):
        raise ValueError(f"at most {MAX_ENTRIES} distinct devices")
    body = _HEADER.pack(
        MAGIC, FORMAT_VERSION, serial, issued_at, previous_valid_until, len(entries)
    ) + b"".join(e.key_id + e.sealed for e in entries)
    signature = root.sign(SignPurpose.UPLOAD_TOKEN_NOTICE, body)
    return body + _TRAILER.pack(root.public_key.key_id, signature)


# --- reading (the relay, the device) ---------------------------------------------------


def parse_notice(data: bytes) -> TokenNotice:
    """The notice's fields, checked for layout and bounds only. Raises TokenNoticeError.

    The relay calls this to read the serial and the grace end (it cannot check the
    signature: it does not know HQ's root); devices call ``verify_notice``.
    """
    if not isinstance(data, bytes) or len(data) > MAX_NOTICE_BYTES:
        raise _malformed("too large")
    if data[: len(_STATEMENT_MAGIC)] == _STATEMENT_MAGIC:
        raise TokenNoticeError(
            TokenNoticeReason.WRONG_KIND,
            "An HQ key statement was given where a notice of a new upload token belongs; "
            "this device keeps the token it has.",
        )
    if len(data) < MIN_NOTICE_BYTES:
        raise _malformed("too short")
    magic, version, serial, issued, until, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise _malformed("not a notice")
    if version != FORMAT_VERSION:
        raise _malformed("another format version")
    if count > MAX_ENTRIES or len(data) != MIN_NOTICE_BYTES + count * ENTRY_BYTES:
        raise _malformed("wrong length for its entries")
    if not (_is_uint(serial) and serial >= 1 and _is_uint(issued) and _is_uint(until)):
        raise _malformed("a field out of range")
    if until < issued:
        raise _malformed("the old token's grace ends before the notice was issued")
    entries: list[NoticeEntry] = []
    offset = _HEADER.size
    for _ in range(count):
        key_id = data[offset : offset + KEY_ID_BYTES]
        sealed = data[offset + KEY_ID_BYTES : offset + ENTRY_BYTES]
        if entries and key_id <= entries[-1].key_id:
            raise _malformed("entries out of order or repeated")
        entries.append(NoticeEntry(key_id, sealed))
        offset += ENTRY_BYTES
    signer, signature = _TRAILER.unpack_from(data, offset)
    return TokenNotice(serial, issued, until, tuple(entries), signer, signature, data[:offset])


def verify_notice(data: bytes, root: RootVerifyKey) -> TokenNotice:
    """The notice, if ``root`` signed it for this purpose. Raises TokenNoticeError."""
    notice = parse_notice(data)
    if notice.signer != root.key_id:
        raise TokenNoticeError(
            TokenNoticeReason.WRONG_SIGNER,
            "A notice of a new relay upload token was signed by a key this device does not "
            "trust as HQ's root; this device keeps the token it has. Tell HQ.",
        )
    if not root.verify(SignPurpose.UPLOAD_TOKEN_NOTICE, notice.body, notice.signature):
        raise TokenNoticeError(TokenNoticeReason.BAD_SIGNATURE)
    return notice


def open_entry(notice: TokenNotice, device: DeviceSigningKey) -> bytes | None:
    """The 32 token bytes sealed to ``device`` in a verified notice; None without an entry.

    Raises TokenNoticeError if the entry does not open or was sealed for another serial.
    """
    public = device.public_key
    entry = notice.entry_for(public.key_id)
    if entry is None:
        return None
    _, secret = sodium.crypto_sign_seed_keypair(device.secret_bytes())
    box_secret = sodium.crypto_sign_ed25519_sk_to_curve25519(secret)
    try:
        plaintext = sodium.crypto_box_seal_open(
            entry.sealed, _device_box_public(public), box_secret
        )
    except nacl.exceptions.CryptoError as e:
        raise TokenNoticeError(TokenNoticeReason.UNOPENABLE) from e
    if len(plaintext) != _PLAINTEXT.size:  # pragma: no cover -- the length is fixed
        raise TokenNoticeError(TokenNoticeReason.UNOPENABLE)
    domain, serial, token = _PLAINTEXT.unpack(plaintext)
    if domain != SEAL_DOMAIN or serial != notice.serial:
        raise TokenNoticeError(TokenNoticeReason.WRONG_SERIAL)
    return bytes(token)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a verified notice means for one device: its serial and, if it had an entry,
    the new token (None: the device keeps its token and says so)."""

    serial: int
    previous_valid_until: int
    token: str | None = field(repr=False)


def read_notice(
    data: bytes, root: RootVerifyKey, device: DeviceSigningKey, *, after_serial: int
) -> TokenGrant:
    """Verify a notice under ``root`` and open ``device``'s entry. Raises TokenNoticeError.

    Refuses a serial at or below ``after_serial`` (the last one the device applied),
    so an old notice replayed by the relay never brings back an old token.
    """
    notice = verify_notice(data, root)
    if notice.serial <= after_serial:
        raise TokenNoticeError(
            TokenNoticeReason.REPLAYED,
            "The relay served an older notice of an upload token than this device already "
            "applied; it keeps the token it has.",
        )
    raw = open_entry(notice, device)
    return TokenGrant(
        notice.serial, notice.previous_valid_until, None if raw is None else token_text(raw)
    )
