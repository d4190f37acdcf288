"""Streaming encryption of one file under its own random key (attachments).

A photo, recording or document is encrypted with secretstream in 64 KiB chunks,
the last one tagged FINAL, while the SHA-256 of the original is computed, in
bounded memory whatever the size. The key and stream header are kept by the
caller (inside the encrypted database), never beside the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO

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
