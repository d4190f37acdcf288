"""Streaming encryption of one file under its own random key (attachments).

A photo, recording or document is encrypted with secretstream in 64 KiB chunks,
the last one tagged FINAL, while the SHA-256 of the original is computed, in
bounded memory whatever the size. The key and stream header are kept by the
caller (inside the encrypted database), never beside the file.

``encrypt_file``/``decrypt_file`` copy between streams; ``FileEncryptor`` (push,
fed by ``write``) and ``DecryptingReader`` (pull, a readable stream) produce and
accept exactly the same bytes, for callers that receive or hand on data
piecewise.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import nacl.utils

from crypto.errors import CryptoError
from crypto.secretstream import (
    ABYTES,
    HEADER_BYTES,
    KEY_BYTES,
    StreamDecryptor,
    StreamEncryptor,
    StreamError,
    read_up_to,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK_BYTES = 64 * 1024


class AttachmentDamaged(CryptoError):
    """An encrypted attachment does not decrypt: damaged, truncated or swapped."""

    default_message = (
        "An attachment file is damaged or was replaced; it cannot be read. "
        "Restore the home folder from backup if you have one."
    )


@dataclass(frozen=True, slots=True)
class FileKey:
    """The per-file key and secretstream header, stored in the database."""

    key: bytes = field(repr=False)
    header: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> FileKey:
        return cls(nacl.utils.random(KEY_BYTES), nacl.utils.random(HEADER_BYTES))


@dataclass(frozen=True, slots=True)
class Encrypted:
    size: int
    sha256: bytes


def encrypt_file(src: BinaryIO, dst: BinaryIO, key: FileKey) -> Encrypted:
    """Encrypt everything readable from ``src`` into ``dst``.

    Raises OSError from the streams.
    """
    stream = StreamEncryptor(key.key, key.header)
    hasher = hashlib.sha256()
    size = 0
    chunk = read_up_to(src, CHUNK_BYTES)
    while True:
        following = read_up_to(src, CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
        hasher.update(chunk)
        size += len(chunk)
        dst.write(stream.push(chunk, final=not following))
        if not following:
            return Encrypted(size, hasher.digest())
        chunk = following


def decrypt_file(src: BinaryIO, dst: BinaryIO, key: FileKey) -> Encrypted:
    """Decrypt ``src`` into ``dst``, checking every chunk and the FINAL tag.

    ``dst`` receives authenticated chunks in order; on failure the caller must
    discard what it got. Raises AttachmentDamaged.
    """
    stream = StreamDecryptor(key.key, key.header)
    hasher = hashlib.sha256()
    size = 0
    try:
        # Bytes after the FINAL chunk make pull() raise; a missing FINAL makes finish() raise.
        while chunk := read_up_to(src, CHUNK_BYTES + ABYTES):
            plaintext, _ = stream.pull(chunk)
            hasher.update(plaintext)
            size += len(plaintext)
            dst.write(plaintext)
        stream.finish()
    except StreamError as e:
        raise AttachmentDamaged from e
    return Encrypted(size, hasher.digest())


class FileEncryptor:
    """Push-style ``encrypt_file``: the same bytes, whatever the ``write`` split points.

    The last chunk carries the FINAL tag, so a full chunk is held back until the
    next byte (or ``finish``) says whether more follows. Memory stays at about
    one chunk of plaintext plus the chunk being encrypted.
    """

    __slots__ = ("_buffer", "_dst", "_finished", "_hasher", "_size", "_stream")

    def __init__(self, dst: BinaryIO, key: FileKey) -> None:
        self._dst = dst
        self._stream = StreamEncryptor(key.key, key.header)
        self._hasher = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._finished = False

    def write(self, data: bytes) -> None:
        """Encrypt ``data`` (in whole chunks, as they fill). Raises OSError from ``dst``."""
        if self._finished:
            raise ValueError("write() after finish()")
        view = memoryview(data).cast("B")
        self._hasher.update(view)
        self._size += len(view)
        while view:
            if len(self._buffer) == CHUNK_BYTES:
                # More follows, so the held-back chunk is not the last one.
                self._dst.write(self._stream.push(bytes(self._buffer), final=False))
                self._buffer.clear()
            take = CHUNK_BYTES - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]

    def finish(self) -> Encrypted:
        """Encrypt what is left as the FINAL chunk; the plaintext's size and SHA-256."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        self._dst.write(self._stream.push(bytes(self._buffer), final=True))
        self._buffer.clear()
        return Encrypted(self._size, self._hasher.digest())


class DecryptingReader(io.RawIOBase):
    """Pull-style ``decrypt_file``: a readable stream of authenticated plaintext.

    Every byte returned has been authenticated with its chunk. When the FINAL
    chunk arrives, the reader checks that nothing follows it before returning
    its plaintext, and a stream that ends without FINAL raises instead of
    reporting EOF: a read that returns nothing means the whole file verified.
    Any failure raises AttachmentDamaged, and so does every read after it.
    ``src`` is not closed. Memory stays at about one chunk.
    """

    def __init__(self, src: BinaryIO, key: FileKey) -> None:
        super().__init__()
        self._src = src
        try:
            self._stream = StreamDecryptor(key.key, key.header)
        except StreamError as e:
            raise AttachmentDamaged from e
        self._hasher = hashlib.sha256()
        self._size = 0
        self._plain = b""
        self._pos = 0
        self._eof = False
        self._failed = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        while self._pos == len(self._plain):
            if self._eof or not self._next_chunk():
                return 0
        n = min(len(view), len(self._plain) - self._pos)
        view[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n

    def _next_chunk(self) -> bool:
        """Decrypt the next chunk into the buffer; False at a verified end."""
        if self._failed:
            raise AttachmentDamaged
        try:
            pulled = self._pull()
        except StreamError as e:
            self._failed = True
            self._plain, self._pos = b"", 0
            raise AttachmentDamaged from e
        if pulled is None:
            self._eof = True
            return False
        plaintext, final = pulled
        self._hasher.update(plaintext)
        self._size += len(plaintext)
        self._plain, self._pos = plaintext, 0
        if final:
            self._eof = True
        return True

    def _pull(self) -> tuple[bytes, bool] | None:
        """The next chunk's plaintext and whether it is the last; None at a verified end."""
        chunk = read_up_to(self._src, CHUNK_BYTES + ABYTES)
        if not chunk:
            self._stream.finish()  # raises unless FINAL was seen
            return None
        plaintext, final = self._stream.pull(chunk)
        if final and self._src.read(1):
            raise StreamError("data after the final chunk")
        return plaintext, final

    def result(self) -> Encrypted:
        """Size and SHA-256 of the whole plaintext; ValueError before the verified end."""
        if not self._eof or self._pos != len(self._plain) or self._failed:
            raise ValueError("the attachment has not been read to its end")
        return Encrypted(self._size, self._hasher.digest())

    @property
    def size(self) -> int:
        """The plaintext size, once read to the end (else ValueError)."""
        return self.result().size

    @property
    def sha256(self) -> bytes:
        """The plaintext SHA-256, once read to the end (else ValueError)."""
        return self.result().sha256
