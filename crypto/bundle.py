"""The sealed bundle envelope: sign-then-seal header, secretstream payload.

Layout (all integers big-endian; docs/bundle-format.md is the full reference)::

    prefix   12 bytes   magic "FAPPBNDL", version u16 = 1, reserved u16 = 0
    sealed  284 bytes   crypto_box_seal(inner header, HQ box public key)
    payload             secretstream chunks of 64 KiB plaintext (+17 bytes each)

    inner header, 236 bytes:
      bundle id 16 | HQ box key id 16 | device public key 32 | payload key 32 |
      secretstream header 24 | plaintext length u64 | padded length u64 |
      chunk size u32 | SHA-256 of the plaintext 32 | Ed25519 signature 64

The device signs (purpose ``bundle-header``) the prefix and the first 172 bytes
of the inner header, then seals: the relay cannot see who signed, and the HQ key
id inside the signed bytes exposes a header re-sealed to another key. The
plaintext is followed by zero bytes up to its Padmé size, so the file size says
little about the content.

Opening checks, in order, and stops at the first failure: the prefix (before any
public-key work), the sealed header against each HQ box key, the key id, the
device key, the signature, whether the device is trusted, the declared sizes,
then every chunk, the FINAL tag on exactly the last chunk, nothing after it, the
zero padding and the payload hash. Every failure is one ``BundleError``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from crypto.errors import BundleError, BundleReason, InvalidKey
from crypto.keys import (
    KEY_ID_BYTES,
    SIGNATURE_BYTES,
    BoxPrivateKey,
    BoxPublicKey,
    DeviceSigningKey,
    DeviceVerifyKey,
    SignPurpose,
    constant_time_equal,
)
from crypto.padme import padme
from crypto.secretstream import (
    ABYTES,
    HEADER_BYTES,
    StreamDecryptor,
    StreamEncryptor,
    StreamError,
    read_up_to,
)

MAGIC = b"FAPPBNDL"
VERSION = 1
PREFIX = struct.Struct(">8sHH")
PREFIX_BYTES = PREFIX.size  # 12
BUNDLE_ID_BYTES = 16
CHUNK_BYTES = 64 * 1024
_SIGNED_FIELDS = struct.Struct(f">{BUNDLE_ID_BYTES}s{KEY_ID_BYTES}s32s32s{HEADER_BYTES}sQQI32s")
INNER_BYTES = _SIGNED_FIELDS.size + SIGNATURE_BYTES  # 236
SEALED_BYTES = INNER_BYTES + sodium.crypto_box_SEALBYTES  # 284
HEADER_TOTAL_BYTES = PREFIX_BYTES + SEALED_BYTES  # 296
MAX_BOX_KEYS = 64
# The largest payload any HQ will accept: 64 GiB padded. Callers pass lower bounds.
MAX_PADDED_BYTES = 64 << 30
# Plaintext read and hashed per step: large enough to amortise the hashing thread
# hand-off, small enough to keep memory bounded (a few of these in flight).
_BLOCK_BYTES = 16 * CHUNK_BYTES

Random = Callable[[int], bytes]


class PlaintextSink(Protocol):
    """Where ``open_bundle`` writes the payload as it is authenticated.

    Each chunk written has passed its own authentication, in order, but the
    bundle as a whole is verified only when ``open_bundle`` returns. If it
    raises, it first calls ``abort()``: the sink must then discard everything
    it was given (e.g. drop a staging table or delete an encrypted temp file).
    """

    def write(self, data: bytes, /) -> object: ...

    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SealedBundle:
    """What the sender learns about a bundle it sealed."""

    bundle_id: bytes
    hq_key_id: bytes
    plaintext_length: int
    padded_length: int
    size: int
    # A hash of a short plaintext confirms a guess at it: keep it out of logs.
    payload_sha256: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OpenedBundle:
    """A bundle that opened and verified completely."""

    bundle_id: bytes
    hq_key_id: bytes
    device: DeviceVerifyKey
    plaintext_length: int
    payload_sha256: bytes = field(repr=False)


def chunk_count(padded_length: int) -> int:
    """How many secretstream chunks a payload of this padded length takes (>= 1)."""
    return max(1, -(-padded_length // CHUNK_BYTES))


def bundle_size(plaintext_length: int) -> int:
    """The exact size in bytes of a bundle whose payload is ``plaintext_length`` long."""
    padded = padme(plaintext_length)
    return HEADER_TOTAL_BYTES + padded + ABYTES * chunk_count(padded)


# ------------------------------------------------------------------------ sealing


def _seal_to(recipient: BoxPublicKey, message: bytes, rng: Random | None) -> bytes:
    if rng is None:
        return sodium.crypto_box_seal(message, recipient.raw)
    # Deterministic form of crypto_box_seal for test vectors only: the same
    # construction (ephemeral key, nonce = BLAKE2b-192(epk || pk), crypto_box)
    # with the ephemeral key drawn from the injected generator. The tests open
    # its output with libsodium's crypto_box_seal_open.
    epk, esk = sodium.crypto_box_seed_keypair(rng(32))
    nonce = hashlib.blake2b(epk + recipient.raw, digest_size=24).digest()
    return epk + sodium.crypto_box(message, nonce, recipient.raw, esk)


def seal_bundle(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    recipient: BoxPublicKey,
    device: DeviceSigningKey,
) -> SealedBundle:
    """Seal everything readable from ``src`` into ``dst`` as one bundle.

    ``dst`` must be seekable and positioned at the start of an empty file: the
    header (which holds the payload hash) is written last, into room reserved
    at the start. Memory stays bounded whatever the payload size.

    Raises ValueError if the payload exceeds MAX_PADDED_BYTES, OSError from
    the streams.
    """
    return _seal(src, dst, recipient=recipient, device=device, rng=None)


def _seal(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    recipient: BoxPublicKey,
    device: DeviceSigningKey,
    rng: Random | None,
) -> SealedBundle:
    """``seal_bundle`` with injectable randomness, for the test-vector generator only.

    A generator that repeats itself reuses payload keys and nonces: never pass
    anything but None outside ``tests/vectors``.
    """
    draw = rng or nacl.utils.random
    bundle_id = draw(BUNDLE_ID_BYTES)
    payload_key = draw(32)
    stream_header = draw(HEADER_BYTES)
    device_public = device.public_key
    start = dst.tell()
    dst.write(bytes(HEADER_TOTAL_BYTES))
    digest, plaintext_length, padded_length = _encrypt_payload(
        src, dst, StreamEncryptor(payload_key, stream_header)
    )
    end = dst.tell()
    prefix = PREFIX.pack(MAGIC, VERSION, 0)
    fields = _SIGNED_FIELDS.pack(
        bundle_id,
        recipient.key_id,
        device_public.raw,
        payload_key,
        stream_header,
        plaintext_length,
        padded_length,
        CHUNK_BYTES,
        digest,
    )
    signature = device.sign(SignPurpose.BUNDLE_HEADER, prefix + fields)
    sealed = _seal_to(recipient, fields + signature, rng)
    dst.seek(start)
    dst.write(prefix + sealed)
    dst.seek(end)
    return SealedBundle(
        bundle_id=bundle_id,
        hq_key_id=recipient.key_id,
        plaintext_length=plaintext_length,
        padded_length=padded_length,
        size=end - start,
        payload_sha256=digest,
    )


def _encrypt_payload(
    src: BinaryIO, dst: BinaryIO, stream: StreamEncryptor
) -> tuple[bytes, int, int]:
    """Encrypt src to dst; returns (sha256, plaintext length, padded length).

    The last chunk cannot be told apart until the next read returns nothing,
    so one block is always held back.
    """
    total = 0
    with _BackgroundSha256() as hasher:
        block = read_up_to(src, _BLOCK_BYTES)
        while True:
            following = read_up_to(src, _BLOCK_BYTES) if block else b""
            hasher.update(block)
            total += len(block)
            if total > MAX_PADDED_BYTES:
                raise ValueError("payload too large for one bundle")
            if not following:
                padded = padme(total)
                _push_last(stream, dst, block, padding=padded - total)
                break
            _push_block(stream, dst, block)
            block = following
        return hasher.digest(), total, padded


class _BackgroundSha256:
    """SHA-256 computed in a second thread while the caller encrypts or decrypts.

    hashlib and libsodium both release the GIL on large inputs, so on two cores
    the hash costs almost no wall time. Data is handed over in blocks of about
    ``_BLOCK_BYTES``: per-chunk hand-offs cost more in locking than they save.
    At most two blocks are held at once.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        # Started with the first full block: a small bundle (most of them) is
        # hashed inline, without paying for a thread it would not use.
        self._pool: ThreadPoolExecutor | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._pending: Future[None] | None = None

    def __enter__(self) -> _BackgroundSha256:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def update(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _BLOCK_BYTES:
            self._hand_over()

    def digest(self) -> bytes:
        if self._pending is not None:
            self._pending.result()
        self._consume(self._parts)  # the tail (or the whole of a small payload), inline
        self._parts, self._size = [], 0
        return self._hash.digest()

    def _hand_over(self) -> None:
        if self._pending is not None:
            self._pending.result()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-hash")
        parts, self._parts, self._size = self._parts, [], 0
        self._pending = self._pool.submit(self._consume, parts)

    def _consume(self, parts: list[bytes]) -> None:
        for part in parts:
            self._hash.update(part)


def _push_block(stream: StreamEncryptor, dst: BinaryIO, block: bytes) -> None:
    """Encrypt a block that is a whole number of chunks and not the last one."""
    view = memoryview(block)
    for i in range(0, len(block), CHUNK_BYTES):
        dst.write(stream.push(bytes(view[i : i + CHUNK_BYTES]), final=False))


def _push_last(stream: StreamEncryptor, dst: BinaryIO, block: bytes, *, padding: int) -> None:
    """Encrypt the last block and ``padding`` zero bytes, one chunk at a time.

    Padding can reach tens of MiB for large payloads, so it is never built whole.
    """
    total = len(block) + padding
    count = chunk_count(total)
    zeros = bytes(CHUNK_BYTES)
    view = memoryview(block)
    for i in range(count):
        start = i * CHUNK_BYTES
        data = bytes(view[start : start + CHUNK_BYTES])
        fill = min(CHUNK_BYTES, total - start) - len(data)
        chunk = data + zeros[:fill] if fill else data
        dst.write(stream.push(chunk, final=i == count - 1))


# ------------------------------------------------------------------------ opening


@dataclass(frozen=True, slots=True)
class _Header:
    bundle_id: bytes
    hq_key_id: bytes
    device: DeviceVerifyKey
    payload_key: bytes = field(repr=False)
    stream_header: bytes = field(repr=False)
    plaintext_length: int
    padded_length: int
    payload_sha256: bytes = field(repr=False)


def _fail(reason: BundleReason) -> BundleError:
    return BundleError(reason)


def read_prefix(data: bytes) -> None:
    """Check the 12-byte prefix. Raises BundleError(FORMAT)."""
    if len(data) != PREFIX_BYTES:
        raise _fail(BundleReason.FORMAT)
    magic, version, reserved = PREFIX.unpack(data)
    if magic != MAGIC or version != VERSION or reserved != 0:
        raise _fail(BundleReason.FORMAT)


def _try_unseal(sealed: bytes, key: BoxPrivateKey, public: BoxPublicKey) -> bytes | None:
    try:
        return sodium.crypto_box_seal_open(sealed, public.raw, key.secret_bytes())
    except nacl.exceptions.CryptoError:
        return None


def _open_header(
    prefix: bytes,
    sealed: bytes,
    keys: Sequence[BoxPrivateKey],
    *,
    trusts_device: Callable[[DeviceVerifyKey], bool],
    max_padded_length: int,
) -> _Header:
    inner: bytes | None = None
    opened_with: BoxPublicKey | None = None
    for key in keys:
        public = key.public_key
        inner = _try_unseal(sealed, key, public)
        if inner is not None:
            opened_with = public
            break
    if inner is None or opened_with is None or len(inner) != INNER_BYTES:
        raise _fail(BundleReason.NO_MATCHING_KEY)
    fields, signature = inner[:-SIGNATURE_BYTES], inner[-SIGNATURE_BYTES:]
    (bundle_id, key_id, device_raw, payload_key, stream_header, plain, padded, chunk, digest) = (
        _SIGNED_FIELDS.unpack(fields)
    )
    if not constant_time_equal(key_id, opened_with.key_id):
        raise _fail(BundleReason.HEADER)
    try:
        device = DeviceVerifyKey(device_raw)
    except InvalidKey as e:
        raise _fail(BundleReason.HEADER) from e
    if not device.verify(SignPurpose.BUNDLE_HEADER, prefix + fields, signature):
        raise _fail(BundleReason.SIGNATURE)
    if not trusts_device(device):
        raise _fail(BundleReason.UNKNOWN_DEVICE)
    if chunk != CHUNK_BYTES or plain > padded or padded > MAX_PADDED_BYTES:
        raise _fail(BundleReason.HEADER)
    if padme(plain) != padded:
        raise _fail(BundleReason.HEADER)
    if padded > max_padded_length:
        raise _fail(BundleReason.TOO_LARGE)
    return _Header(bundle_id, key_id, device, payload_key, stream_header, plain, padded, digest)


def _read_exact(src: BinaryIO, size: int, short: BundleReason = BundleReason.PAYLOAD) -> bytes:
    """Exactly ``size`` bytes, across short reads; a premature end is ``short``."""
    data = read_up_to(src, size)
    if len(data) != size:
        raise _fail(short)
    return data


def open_bundle(
    src: BinaryIO,
    keys: Sequence[BoxPrivateKey],
    sink: PlaintextSink,
    *,
    trusts_device: Callable[[DeviceVerifyKey], bool],
    max_padded_length: int = MAX_PADDED_BYTES,
) -> OpenedBundle:
    """Open and verify one bundle read from ``src``, streaming its payload to ``sink``.

    ``keys`` are the HQ box private keys to try, current first (at most 64).
    ``trusts_device`` is asked, after the signature verifies and before any
    payload is decrypted, whether the signing device is enrolled.

    Raises BundleError on any failure, after calling ``sink.abort()``.
    """
    try:
        return _open(src, keys, sink, trusts_device, max_padded_length)
    except BaseException:
        sink.abort()
        raise


def _open(
    src: BinaryIO,
    keys: Sequence[BoxPrivateKey],
    sink: PlaintextSink,
    trusts_device: Callable[[DeviceVerifyKey], bool],
    max_padded_length: int,
) -> OpenedBundle:
    if not keys or len(keys) > MAX_BOX_KEYS:
        raise ValueError("between 1 and 64 HQ box keys are needed to open bundles")
    prefix = _read_exact(src, PREFIX_BYTES, BundleReason.FORMAT)
    read_prefix(prefix)
    sealed = _read_exact(src, SEALED_BYTES, BundleReason.FORMAT)
    header = _open_header(
        prefix,
        sealed,
        keys,
        trusts_device=trusts_device,
        max_padded_length=max_padded_length,
    )
    _check_size(src, header.padded_length)
    digest = _decrypt_payload(src, sink, header)
    if src.read(1):
        raise _fail(BundleReason.PAYLOAD)
    if not constant_time_equal(digest, header.payload_sha256):
        raise _fail(BundleReason.PAYLOAD)
    return OpenedBundle(
        bundle_id=header.bundle_id,
        hq_key_id=header.hq_key_id,
        device=header.device,
        plaintext_length=header.plaintext_length,
        payload_sha256=header.payload_sha256,
    )


def _check_size(src: BinaryIO, padded_length: int) -> None:
    """If ``src`` is a regular file, refuse a wrong size before decrypting anything."""
    try:
        info = os.fstat(src.fileno())
    except (AttributeError, OSError, ValueError):
        return  # not a real file (e.g. BytesIO); the stream checks below still apply
    if not stat.S_ISREG(info.st_mode):
        return  # a pipe or socket has no size to check
    size = info.st_size
    expected = HEADER_TOTAL_BYTES + padded_length + ABYTES * chunk_count(padded_length)
    if size != expected:
        raise _fail(BundleReason.PAYLOAD)


def _decrypt_payload(src: BinaryIO, sink: PlaintextSink, header: _Header) -> bytes:
    stream = StreamDecryptor(header.payload_key, header.stream_header)
    count = chunk_count(header.padded_length)
    remaining_plain = header.plaintext_length
    with _BackgroundSha256() as hasher:
        for index in range(count):
            last = index == count - 1
            size = header.padded_length - CHUNK_BYTES * index if last else CHUNK_BYTES
            try:
                plaintext, final = stream.pull(_read_exact(src, size + ABYTES))
            except StreamError as e:
                raise _fail(BundleReason.PAYLOAD) from e
            if final != last:
                raise _fail(BundleReason.PAYLOAD)
            real = min(len(plaintext), remaining_plain)
            remaining_plain -= real
            if real < len(plaintext) and any(plaintext[real:]):
                raise _fail(BundleReason.PAYLOAD)
            data = plaintext[:real] if real < len(plaintext) else plaintext
            hasher.update(data)
            if data:
                sink.write(data)
        digest = hasher.digest()
    try:
        stream.finish()
    except StreamError as e:
        raise _fail(BundleReason.PAYLOAD) from e
    return digest


class BytesSink:
    """A sink that keeps the payload in memory, for small bundles and tests."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(data)
        return len(data)

    def abort(self) -> None:
        self._parts.clear()

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def open_bundle_bytes(
    data: bytes,
    keys: Sequence[BoxPrivateKey],
    *,
    trusts_device: Callable[[DeviceVerifyKey], bool],
    max_padded_length: int = MAX_PADDED_BYTES,
) -> tuple[OpenedBundle, bytes]:
    """Open a bundle held in memory; the plaintext is returned only once all of it verified.

    Raises BundleError.
    """
    import io  # noqa: PLC0415 -- only this convenience needs it

    sink = BytesSink()
    opened = open_bundle(
        io.BytesIO(data),
        keys,
        sink,
        trusts_device=trusts_device,
        max_padded_length=max_padded_length,
    )
    return opened, sink.getvalue()
