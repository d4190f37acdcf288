"""Per-file attachment encryption: round trips, damage detection, bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import pytest

from crypto.attachment import (
    CHUNK_BYTES,
    AttachmentDamaged,
    FileKey,
    decrypt_file,
    encrypt_file,
)
from crypto.secretstream import ABYTES


def encrypt(data: bytes, key: FileKey) -> bytes:
    out = io.BytesIO()
    done = encrypt_file(io.BytesIO(data), out, key)
    assert done.size == len(data)
    assert done.sha256 == hashlib.sha256(data).digest()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 300_000])
def test_round_trip(size: int) -> None:
    key = FileKey.generate()
    data = os.urandom(size)
    blob = encrypt(data, key)
    out = io.BytesIO()
    done = decrypt_file(io.BytesIO(blob), out, key)
    assert out.getvalue() == data
    assert done.sha256 == hashlib.sha256(data).digest()
    if size >= 16:
        assert data[:16] not in blob


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[: CHUNK_BYTES + ABYTES], id="final chunk dropped"),
        pytest.param(lambda b: b + b"x", id="appended"),
        pytest.param(lambda b: b[:10] + bytes([b[10] ^ 1]) + b[11:], id="flipped"),
        pytest.param(
            lambda b: b[CHUNK_BYTES + ABYTES :] + b[: CHUNK_BYTES + ABYTES], id="reordered"
        ),
        pytest.param(lambda _b: b"", id="emptied"),
    ],
)
def test_damaged_files_are_refused(damage: object) -> None:
    key = FileKey.generate()
    blob = encrypt(os.urandom(CHUNK_BYTES + 100), key)
    with pytest.raises(AttachmentDamaged):
        decrypt_file(io.BytesIO(damage(blob)), io.BytesIO(), key)  # type: ignore[operator]


def test_another_files_key_does_not_open_it() -> None:
    blob = encrypt(b"photo", FileKey.generate())
    with pytest.raises(AttachmentDamaged):
        decrypt_file(io.BytesIO(blob), io.BytesIO(), FileKey.generate())


def test_keys_never_show_in_repr() -> None:
    key = FileKey.generate()
    assert key.key.hex() not in repr(key)
    assert key.header.hex() not in repr(key)


class Pattern:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"v" * n


class Null:
    def write(self, data: bytes) -> int:
        return len(data)


def test_encrypting_32_mib_stays_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        encrypt_file(Pattern(32 << 20), Null(), FileKey.generate())  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak
