"""The secretstream wrapper and the two libsodium equivalences the envelope relies on."""

from __future__ import annotations

import hashlib
import os

import nacl.bindings as sodium
import pytest
from nacl._sodium import ffi

from crypto.keys import BoxPrivateKey
from crypto.secretstream import StreamDecryptor, StreamEncryptor, StreamError


def _state_bytes(state: sodium.crypto_secretstream_xchacha20poly1305_state) -> bytes:
    return bytes(ffi.buffer(state.statebuf))


def test_init_pull_derives_the_same_state_as_init_push() -> None:
    # StreamEncryptor builds its push state with init_pull from a header we
    # draw; this holds only if both derive identical states from one header.
    for _ in range(20):
        key = os.urandom(32)
        pushed = sodium.crypto_secretstream_xchacha20poly1305_state()
        header = sodium.crypto_secretstream_xchacha20poly1305_init_push(pushed, key)
        pulled = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(pulled, header, key)
        assert _state_bytes(pushed) == _state_bytes(pulled)


def test_our_encryptor_output_opens_with_libsodium_pull() -> None:
    key, header = os.urandom(32), os.urandom(24)
    enc = StreamEncryptor(key, header)
    chunks = [enc.push(b"first", final=False), enc.push(b"last", final=True)]
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    got = [sodium.crypto_secretstream_xchacha20poly1305_pull(state, c, None) for c in chunks]
    assert got == [
        (b"first", sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE),
        (b"last", sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL),
    ]


def test_deterministic_seal_is_a_libsodium_sealed_box() -> None:
    from crypto.bundle import _seal_to

    hq = BoxPrivateKey.generate()
    stream = hashlib.shake_256(b"seed").digest(64)
    sealed = _seal_to(hq.public_key, b"inner header", lambda n: stream[:n])
    opened = sodium.crypto_box_seal_open(sealed, hq.public_key.raw, hq.secret_bytes())
    assert opened == b"inner header"


def test_decryptor_refuses_a_stream_without_its_final_chunk() -> None:
    key, header = os.urandom(32), os.urandom(24)
    enc = StreamEncryptor(key, header)
    first = enc.push(b"a", final=False)
    dec = StreamDecryptor(key, header)
    assert dec.pull(first) == (b"a", False)
    with pytest.raises(StreamError):
        dec.finish()


def test_decryptor_refuses_data_after_final_and_a_second_final_push() -> None:
    key, header = os.urandom(32), os.urandom(24)
    enc = StreamEncryptor(key, header)
    last = enc.push(b"z", final=True)
    with pytest.raises(StreamError):
        enc.push(b"more", final=False)
    dec = StreamDecryptor(key, header)
    assert dec.pull(last) == (b"z", True)
    dec.finish()
    with pytest.raises(StreamError):
        dec.pull(last)


def test_decryptor_refuses_a_forged_chunk() -> None:
    key, header = os.urandom(32), os.urandom(24)
    chunk = bytearray(StreamEncryptor(key, header).push(b"payload", final=True))
    chunk[-1] ^= 1
    with pytest.raises(StreamError):
        StreamDecryptor(key, header).pull(bytes(chunk))
