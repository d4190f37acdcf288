"""The plaintext inside one bundle: one testimony, its history and its attachments.

Layout (integers big-endian; docs/bundle-format.md, "The payload", is the reference)::

    magic "FAPPLOAD" 8 | version u16 = 1 | manifest length u32 (1..16 MiB) |
    manifest (UTF-8 JSON) | attachment contents in manifest order | nothing after

The manifest names the testimony, carries its whole signed revision chain, the
attachments new in this bundle (id, size, SHA-256), the witness identity sealed
to HQ's protection key and any device rotation statements. It is parsed
strictly: exact key sets, exact types (no bools for ints, no floats, no NaN),
lowercase hex, canonical base64, bounded lengths and nesting, no duplicate keys.

The sender streams a payload with ``PayloadSource`` (a readable stream for
``crypto.bundle.seal_bundle``); the receiver parses one as ``open_bundle``
authenticates it with ``PayloadReader`` (a ``crypto.bundle.PlaintextSink``),
so neither holds more than the manifest and a chunk in memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from crypto.errors import InvalidKey
from crypto.keys import DeviceVerifyKey
from crypto.revisions import Revision
from sync.errors import PayloadError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_MANIFEST_BYTES",
    "PREFIX_BYTES",
    "AttachmentEntry",
    "AttachmentStream",
    "AttachmentWriter",
    "IdentityEntry",
    "Manifest",
    "PayloadReader",
    "PayloadSource",
    "RevisionEntry",
    "decode_manifest",
    "encode_manifest",
]

MAGIC = b"FAPPLOAD"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")
PREFIX_BYTES = _PREFIX.size  # 14
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

MAX_REVISIONS = 10_000
MAX_REVISION_PAYLOAD_BYTES = 1 << 20
MAX_ATTACHMENTS = 1000
MAX_ATTACHMENT_BYTES = 1 << 40
MAX_IDENTITIES = 16
MIN_SEALED_IDENTITY_BYTES = 48  # crypto_box_seal overhead: nothing smaller can be one
MAX_SEALED_IDENTITY_BYTES = 65536
MAX_STATEMENTS = 64
MAX_STATEMENT_BYTES = 1024
MAX_CREATED_AT_CHARS = 64
MAX_WITNESS_CODE_CHARS = 32
# object > list > object: the deepest a valid manifest goes.
_MAX_DEPTH = 3
# Longest integer literal a valid manifest holds (2**40 has 13 digits).
_MAX_INT_DIGITS = 16

_ID = re.compile(r"[0-9abcdefghjkmnpqrstvwxyz]{20}")
_HEX = re.compile(r"[0-9a-f]*")
# A JSON string, or an unterminated one running to the end of the text. Every
# attempt at a quote succeeds, so stripping strings is linear in the input.
_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LEAF_PAIR = re.compile(r"[\[{][\]}]")

_NEWER = "This bundle was made by a newer fieldapp; update fieldapp to import it."
_OUT_OF_BOUNDS = "This testimony cannot be packed into a bundle: a field is out of bounds."
_TOO_LARGE = "This testimony's history is too large to send in one bundle."
_STORE_CHANGED = (
    "An attachment in local storage is damaged or changed while it was being packed; "
    "no bundle was made."
)


# ------------------------------------------------------------------------ model


@dataclass(frozen=True, slots=True)
class RevisionEntry:
    """One signed revision as carried in the manifest (see crypto/revisions.py)."""

    seq: int
    parent_hash: bytes
    hash: bytes
    device_key: bytes
    signature: bytes
    payload: bytes = field(repr=False)  # the record's canonical bytes: testimony text
    created_at: str

    def to_revision(self, record_id: str) -> Revision:
        """The revision, for ``crypto.revisions.verify_chain``.

        Raises PayloadError if the device key is not a valid Ed25519 key.
        """
        try:
            device = DeviceVerifyKey(self.device_key)
        except InvalidKey as e:
            raise PayloadError() from e
        return Revision(
            record_id=record_id,
            seq=self.seq,
            parent_hash=self.parent_hash,
            hash=self.hash,
            device=device,
            signature=self.signature,
            payload=self.payload,
        )


@dataclass(frozen=True, slots=True)
class AttachmentEntry:
    """An attachment whose contents follow the manifest in this payload."""

    id: str
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class IdentityEntry:
    """A witness identity, sealed to HQ's protection key."""

    witness_code: str
    sealed: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything in a payload but the attachment contents."""

    testimony_id: str
    created_at: str
    enrolment_id: bytes
    binding: bytes
    revisions: tuple[RevisionEntry, ...]
    attachments: tuple[AttachmentEntry, ...] = ()
    identities: tuple[IdentityEntry, ...] = ()
    statements: tuple[bytes, ...] = ()


# ------------------------------------------------------------------------ manifest JSON

_TOP = frozenset(
    {
        "format",
        "testimony_id",
        "created_at",
        "enrolment",
        "revisions",
        "attachments",
        "identities",
        "statements",
    }
)
_ENROLMENT = frozenset({"id", "binding"})
_REVISION = frozenset(
    {"seq", "parent_hash", "hash", "device_key", "signature", "payload", "created_at"}
)
_ATTACHMENT = frozenset({"id", "size", "sha256"})
_IDENTITY = frozenset({"witness_code", "sealed"})


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _to_json(m: Manifest) -> dict[str, object]:
    return {
        "format": FORMAT_VERSION,
        "testimony_id": m.testimony_id,
        "created_at": m.created_at,
        "enrolment": {"id": m.enrolment_id.hex(), "binding": m.binding.hex()},
        "revisions": [
            {
                "seq": r.seq,
                "parent_hash": r.parent_hash.hex(),
                "hash": r.hash.hex(),
                "device_key": r.device_key.hex(),
                "signature": r.signature.hex(),
                "payload": _b64(r.payload),
                "created_at": r.created_at,
            }
            for r in m.revisions
        ],
        "attachments": [
            {"id": a.id, "size": a.size, "sha256": a.sha256.hex()} for a in m.attachments
        ],
        "identities": [
            {"witness_code": i.witness_code, "sealed": _b64(i.sealed)} for i in m.identities
        ],
        "statements": [_b64(s) for s in m.statements],
    }


def encode_manifest(m: Manifest) -> bytes:
    """The manifest's canonical JSON bytes.

    Raises PayloadError if a field is out of the format's bounds or the result
    exceeds MAX_MANIFEST_BYTES: such a testimony cannot be sent as it is.
    """
    doc = _to_json(m)
    try:
        _from_json(doc)  # the same checks a receiver makes
    except PayloadError as e:
        raise PayloadError(_OUT_OF_BOUNDS) from e
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_MANIFEST_BYTES:
        raise PayloadError(_TOO_LARGE)
    return data


def decode_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly. Raises PayloadError, and nothing else."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_MANIFEST_BYTES:
        raise PayloadError()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError() from e
    _check_depth(text)
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_unique_pairs,
            parse_float=_refuse,
            parse_constant=_refuse,
            parse_int=_parse_int,
        )
    except (ValueError, RecursionError) as e:
        raise PayloadError() from e
    return _from_json(doc)


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than a manifest's before the parser recurses into it.

    Strings are removed, then everything but brackets; each pass removes every
    innermost pair, so after ``_MAX_DEPTH`` passes nothing may be left.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(_MAX_DEPTH):
        if not brackets:
            return
        brackets = _LEAF_PAIR.sub("", brackets)
    if brackets:
        raise PayloadError()


def _refuse(_: str) -> object:
    raise PayloadError()


def _parse_int(literal: str) -> int:
    if len(literal) > _MAX_INT_DIGITS:
        raise PayloadError()
    return int(literal)


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise PayloadError()
    return doc


def _object(value: object, keys: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict) or value.keys() != keys:
        raise PayloadError()
    return value


def _list(value: object, most: int, least: int = 0) -> list[object]:
    if type(value) is not list or not least <= len(value) <= most:
        raise PayloadError()
    return value


def _int(value: object, least: int, most: int) -> int:
    if type(value) is not int or not least <= value <= most:  # bool is an int: refused
        raise PayloadError()
    return value


def _str(value: object) -> str:
    if type(value) is not str:
        raise PayloadError()
    return value


def _id(value: object) -> str:
    text = _str(value)
    if not _ID.fullmatch(text):
        raise PayloadError()
    return text


def _printable(value: object, most: int, *, spaces: bool) -> str:
    """1..most characters, all printable (no controls, no lone surrogates, no bidi
    overrides); with ``spaces=False`` not even a space."""
    text = _str(value)
    if not 0 < len(text) <= most or not text.isprintable():
        raise PayloadError()
    if not spaces and any(c.isspace() for c in text):
        raise PayloadError()
    return text


def _hex(value: object, size: int) -> bytes:
    text = _str(value)
    if len(text) != 2 * size or not _HEX.fullmatch(text):
        raise PayloadError()
    return bytes.fromhex(text)


def _base64(value: object, least: int, most: int) -> bytes:
    text = _str(value)
    if len(text) > 4 * -(-most // 3):
        raise PayloadError()
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:  # binascii.Error, or non-ASCII text
        raise PayloadError() from e
    if not least <= len(raw) <= most or _b64(raw) != text:  # one spelling per value
        raise PayloadError()
    return raw


def _revision(value: object, expected_seq: int) -> RevisionEntry:
    doc = _object(value, _REVISION)
    if _int(doc["seq"], 1, MAX_REVISIONS) != expected_seq:
        raise PayloadError()
    return RevisionEntry(
        seq=expected_seq,
        parent_hash=_hex(doc["parent_hash"], 32),
        hash=_hex(doc["hash"], 32),
        device_key=_hex(doc["device_key"], 32),
        signature=_hex(doc["signature"], 64),
        payload=_base64(doc["payload"], 0, MAX_REVISION_PAYLOAD_BYTES),
        created_at=_printable(doc["created_at"], MAX_CREATED_AT_CHARS, spaces=True),
    )


def _attachment(value: object) -> AttachmentEntry:
    doc = _object(value, _ATTACHMENT)
    return AttachmentEntry(
        id=_id(doc["id"]),
        size=_int(doc["size"], 0, MAX_ATTACHMENT_BYTES),
        sha256=_hex(doc["sha256"], 32),
    )


def _identity(value: object) -> IdentityEntry:
    doc = _object(value, _IDENTITY)
    return IdentityEntry(
        witness_code=_printable(doc["witness_code"], MAX_WITNESS_CODE_CHARS, spaces=False),
        sealed=_base64(doc["sealed"], MIN_SEALED_IDENTITY_BYTES, MAX_SEALED_IDENTITY_BYTES),
    )


def _from_json(value: object) -> Manifest:
    if isinstance(value, dict):
        version = value.get("format")
        if type(version) is int and version > FORMAT_VERSION:
            raise PayloadError(_NEWER)
    doc = _object(value, _TOP)
    _int(doc["format"], FORMAT_VERSION, FORMAT_VERSION)
    enrolment = _object(doc["enrolment"], _ENROLMENT)
    revisions = tuple(
        _revision(r, seq)
        for seq, r in enumerate(_list(doc["revisions"], MAX_REVISIONS, 1), start=1)
    )
    attachments = tuple(_attachment(a) for a in _list(doc["attachments"], MAX_ATTACHMENTS))
    identities = tuple(_identity(i) for i in _list(doc["identities"], MAX_IDENTITIES))
    statements = tuple(
        _base64(s, 1, MAX_STATEMENT_BYTES) for s in _list(doc["statements"], MAX_STATEMENTS)
    )
    if len({a.id for a in attachments}) != len(attachments):
        raise PayloadError()
    if len({i.witness_code for i in identities}) != len(identities):
        raise PayloadError()
    return Manifest(
        testimony_id=_id(doc["testimony_id"]),
        created_at=_printable(doc["created_at"], MAX_CREATED_AT_CHARS, spaces=True),
        enrolment_id=_hex(enrolment["id"], 16),
        binding=_hex(enrolment["binding"], 32),
        revisions=revisions,
        attachments=attachments,
        identities=identities,
        statements=statements,
    )


# ------------------------------------------------------------------------ sending


class AttachmentStream(Protocol):
    """What ``open_attachment`` returns: any binary file, or a
    ``crypto.attachment.DecryptingReader`` over the encrypted file."""

    def read(self, size: int, /) -> bytes | None: ...

    def close(self) -> None: ...


class PayloadSource(io.RawIOBase):
    """Pull-style payload for ``crypto.bundle.seal_bundle(src=...)``.

    Yields the prefix and manifest, then each attachment read from the stream
    ``open_attachment(entry)`` returns: opened lazily, one at a time, closed
    after. Each must yield exactly ``entry.size`` bytes with SHA-256
    ``entry.sha256``, else PayloadError (the local store is damaged or changed
    under us); the last attachment is checked before its last bytes are
    returned, so the payload never ends without every check done. Exceptions
    from ``open_attachment`` and its streams propagate unchanged. Any failure
    sticks: every later read raises PayloadError.

    ``seal_bundle`` is typed for a BinaryIO: pass ``io.BufferedReader(source)``.
    Raises PayloadError at construction if the manifest cannot be encoded.
    """

    def __init__(
        self, manifest: Manifest, open_attachment: Callable[[AttachmentEntry], AttachmentStream]
    ) -> None:
        super().__init__()
        body = encode_manifest(manifest)
        self._head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body
        self._head_pos = 0
        self._entries = manifest.attachments
        self._open_attachment = open_attachment
        self._index = 0
        self._current: AttachmentStream | None = None
        self._remaining = 0
        self._hasher = hashlib.sha256()
        self._failed = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if self.closed:
            raise ValueError("read from a closed PayloadSource")
        if self._failed:
            raise PayloadError(_STORE_CHANGED)
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if self._head_pos < len(self._head):
            n = min(len(view), len(self._head) - self._head_pos)
            view[:n] = self._head[self._head_pos : self._head_pos + n]
            self._head_pos += n
            if self._head_pos == len(self._head):
                self._head, self._head_pos = b"", 0  # up to 16 MiB: not kept once sent
            return n
        try:
            return self._read_attachments(view)
        except BaseException:
            self._failed = True
            self._close_current()
            raise

    def _read_attachments(self, view: memoryview) -> int:
        while True:
            if self._current is None:
                if self._index == len(self._entries):
                    return 0
                entry = self._entries[self._index]
                self._current = self._open_attachment(entry)
                self._remaining = entry.size
                self._hasher = hashlib.sha256()
            if not self._remaining:
                self._end_attachment(self._current)  # a zero-size one
                continue
            want = min(len(view), self._remaining)
            data = self._current.read(want)
            if not data or len(data) > want:
                raise PayloadError(_STORE_CHANGED)  # shorter than declared
            n = len(data)
            view[:n] = data
            self._hasher.update(data)
            self._remaining -= n
            if not self._remaining:
                self._end_attachment(self._current)
            return n

    def _end_attachment(self, stream: AttachmentStream) -> None:
        entry = self._entries[self._index]
        if stream.read(1):
            raise PayloadError(_STORE_CHANGED)  # longer than declared
        if not hmac.compare_digest(self._hasher.digest(), entry.sha256):
            raise PayloadError(_STORE_CHANGED)
        self._close_current()
        self._index += 1

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.close()

    def close(self) -> None:
        if not self.closed:
            self._close_current()
        super().close()


# ------------------------------------------------------------------------ receiving


class AttachmentWriter(Protocol):
    """Where ``PayloadReader`` puts one attachment's contents (e.g. a FileEncryptor
    writing a staging file). ``finish`` is called once all of it arrived and its
    hash matched; ``abort`` whenever the bundle is refused, finished or not."""

    def write(self, data: bytes, /) -> object: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class PayloadReader:
    """A ``crypto.bundle.PlaintextSink`` that parses the payload as it is authenticated.

    It buffers the prefix and manifest (at most ``max_manifest_bytes``),
    decodes the manifest and calls ``on_manifest(manifest)`` once: that may
    raise to refuse the bundle early, and its exception propagates unchanged.
    Then each attachment's bytes go to the writer ``new_attachment(entry)``
    returns, created when that attachment's first byte is due (at once, when
    due, for a zero-size one) and hashed as they pass; when the declared size is
    reached the SHA-256 is checked and ``writer.finish()`` called. Any
    malformation raises PayloadError; a failure sticks, so later writes raise
    PayloadError too.

    Chunks arrive authenticated one by one, but the bundle is verified only
    when ``open_bundle`` returns: writers must keep what they were given
    provisional until the caller commits it. ``open_bundle`` calls ``abort()``
    if it fails; then call ``close()``, which checks that the payload was
    complete and returns the manifest.
    """

    def __init__(
        self,
        *,
        on_manifest: Callable[[Manifest], None],
        new_attachment: Callable[[AttachmentEntry], AttachmentWriter],
        max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    ) -> None:
        if not 0 < max_manifest_bytes <= MAX_MANIFEST_BYTES:
            raise ValueError("max_manifest_bytes must be between 1 and 16 MiB")
        self._on_manifest = on_manifest
        self._new_attachment = new_attachment
        self._max_manifest_bytes = max_manifest_bytes
        self._head = bytearray()
        self._manifest_length: int | None = None
        self._manifest: Manifest | None = None
        self._entries: tuple[AttachmentEntry, ...] = ()
        self._index = 0
        self._writer: AttachmentWriter | None = None
        self._remaining = 0
        self._hasher = hashlib.sha256()
        self._writers: list[AttachmentWriter] = []
        self._failed = False
        self._aborted = False

    def write(self, data: bytes, /) -> int:
        if self._failed:
            raise PayloadError()
        try:
            self._consume(memoryview(data).cast("B"))
        except BaseException:
            self._failed = True
            raise
        return len(data)

    def _consume(self, view: memoryview) -> None:
        if self._manifest is None:
            view = self._read_head(view)
            if self._manifest is None:
                return
        while view:
            if self._index == len(self._entries):
                raise PayloadError()  # bytes after the last attachment
            writer = self._writer
            if writer is None:
                writer = self._start(self._entries[self._index])
            n = min(len(view), self._remaining)
            data = bytes(view[:n])
            view = view[n:]
            self._hasher.update(data)
            writer.write(data)
            self._remaining -= n
            if not self._remaining:
                self._end(writer)
                self._start_empty()

    def _read_head(self, view: memoryview) -> memoryview:
        """Buffer the prefix and manifest; decode it once whole. Returns what follows."""
        if self._manifest_length is None:
            need = PREFIX_BYTES - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < PREFIX_BYTES:
                return view
            magic, version, length = _PREFIX.unpack(self._head)
            if magic != MAGIC:
                raise PayloadError()
            if version != FORMAT_VERSION:
                raise PayloadError(_NEWER if version > FORMAT_VERSION else None)
            if not 0 < length <= self._max_manifest_bytes:
                raise PayloadError()
            self._manifest_length = length
            self._head = bytearray()
        need = self._manifest_length - len(self._head)
        self._head += view[:need]
        view = view[need:]
        if len(self._head) < self._manifest_length:
            return view
        manifest = decode_manifest(bytes(self._head))
        self._head = bytearray()
        self._manifest = manifest
        self._entries = manifest.attachments
        self._on_manifest(manifest)
        self._start_empty()
        return view

    def _start(self, entry: AttachmentEntry) -> AttachmentWriter:
        writer = self._new_attachment(entry)
        self._writers.append(writer)
        self._writer = writer
        self._remaining = entry.size
        self._hasher = hashlib.sha256()
        return writer

    def _end(self, writer: AttachmentWriter) -> None:
        """Check the attachment just completed and finish its writer."""
        if not hmac.compare_digest(self._hasher.digest(), self._entries[self._index].sha256):
            raise PayloadError()
        self._writer = None
        self._index += 1
        writer.finish()

    def _start_empty(self) -> None:
        """Create and finish the zero-size attachments that are now due."""
        while self._index < len(self._entries) and self._entries[self._index].size == 0:
            self._end(self._start(self._entries[self._index]))

    def abort(self) -> None:
        """Call ``abort()`` on every writer created, finished or not. Idempotent.

        Every writer is aborted even if one raises; the first error then propagates.
        """
        if self._aborted:
            return
        self._aborted = True
        self._failed = True
        writers, self._writers = self._writers, []
        self._writer = None
        with contextlib.ExitStack() as stack:
            for writer in reversed(writers):  # the stack unwinds last-in first
                stack.callback(writer.abort)

    def close(self) -> Manifest:
        """The manifest, once the whole payload arrived and checked.

        Raises PayloadError if it ended early (no manifest yet, or an attachment
        incomplete), failed, or was aborted; every writer is aborted first.
        """
        if (
            self._failed
            or self._manifest is None
            or self._index != len(self._entries)
            or self._writer is not None
        ):
            self.abort()
            raise PayloadError()
        return self._manifest
