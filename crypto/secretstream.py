"""The one wrapper around libsodium's ``crypto_secretstream_xchacha20poly1305``.

Each chunk is authenticated and bound to its position; the last one carries the
FINAL tag. ``StreamDecryptor`` refuses a chunk after FINAL and ``finish()``
refuses a stream that ended without one, so truncation at a chunk boundary
cannot pass for a complete stream.

The push state is initialised from a header we choose (by ``init_pull``, which
derives exactly the state ``init_push`` derives from a header it draws itself;
``tests/test_secretstream.py`` checks that equivalence on the installed
libsodium). This is what lets test vectors be deterministic; in production the
header comes from the OS random generator like every other nonce.
"""

from __future__ import annotations

from typing import BinaryIO

import nacl.bindings as sodium
import nacl.exceptions

KEY_BYTES = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES
HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


class StreamError(Exception):
    """A chunk failed to authenticate, came after FINAL, or FINAL never came."""


class StreamEncryptor:
    """Encrypts chunks in order; the caller marks the last one ``final``."""

    __slots__ = ("_finished", "_state")

    def __init__(self, key: bytes, header: bytes) -> None:
        if len(key) != KEY_BYTES or len(header) != HEADER_BYTES:
            raise ValueError("secretstream key or header has the wrong length")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        self._finished = False

    def push(self, chunk: bytes, *, final: bool) -> bytes:
        if self._finished:
            raise StreamError("stream already finished")
        self._finished = final
        tag = TAG_FINAL if final else TAG_MESSAGE
        return sodium.crypto_secretstream_xchacha20poly1305_push(self._state, chunk, None, tag)


class StreamDecryptor:
    """Decrypts chunks in order and tracks whether FINAL has been seen."""

    __slots__ = ("_finished", "_state")

    def __init__(self, key: bytes, header: bytes) -> None:
        if len(key) != KEY_BYTES or len(header) != HEADER_BYTES:
            raise StreamError("secretstream key or header has the wrong length")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        self._finished = False

    def pull(self, ciphertext: bytes) -> tuple[bytes, bool]:
        """The chunk's plaintext and whether it was the FINAL one.

        Raises StreamError if it does not authenticate, carries a tag other
        than MESSAGE or FINAL, or arrives after FINAL.
        """
        if self._finished:
            raise StreamError("data after the final chunk")
        if len(ciphertext) < ABYTES:
            raise StreamError("chunk too short")
        try:
            plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                self._state, ciphertext, None
            )
        except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as e:
            raise StreamError("chunk failed to authenticate") from e
        if tag == TAG_FINAL:
            self._finished = True
        elif tag != TAG_MESSAGE:
            raise StreamError("unexpected chunk tag")
        return plaintext, self._finished

    def finish(self) -> None:
        """Raise StreamError unless the FINAL chunk has been pulled."""
        if not self._finished:
            raise StreamError("stream ended without its final chunk")


def read_up_to(src: BinaryIO, size: int) -> bytes:
    """``size`` bytes from ``src``, fewer only if it ends first (short reads joined)."""
    parts: list[bytes] = []
    want = size
    while want:
        part = src.read(want)
        if not part:
            break
        parts.append(part)
        want -= len(part)
    return b"".join(parts)
