"""Per-file attachment encryption: round trips, damage detection, bounded memory."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.attachment import (
    CHUNK_BYTES,
    AttachmentDamaged,
    DecryptingReader,
    FileEncryptor,
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


# ------------------------------------------------------------ streaming helpers

# One key for the property tests: the bytes depend on it, not their correctness.
STREAM_KEY = FileKey.generate()
STREAM_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def file_data(draw: st.DrawFn) -> bytes:
    """0..300 KiB, weighted towards chunk edges (exact multiples of 64 KiB and one off)."""
    size = draw(
        st.one_of(
            st.integers(min_value=0, max_value=300 * 1024),
            st.sampled_from([k * CHUNK_BYTES + d for k in range(5) for d in (-1, 0, 1)]).filter(
                lambda n: n >= 0
            ),
            st.integers(min_value=0, max_value=200),
        )
    )
    seed = draw(st.binary(min_size=1, max_size=16))
    return (hashlib.sha256(seed).digest() * (size // 32 + 1))[:size]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@STREAM_SETTINGS
@given(file_data(), st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12))
def test_file_encryptor_matches_encrypt_file(data: bytes, cuts: list[int]) -> None:
    expected = io.BytesIO()
    want = encrypt_file(io.BytesIO(data), expected, STREAM_KEY)
    out = io.BytesIO()
    enc = FileEncryptor(out, STREAM_KEY)
    for piece in split(data, cuts):
        enc.write(piece)
    got = enc.finish()
    assert out.getvalue() == expected.getvalue()
    assert got == want


@pytest.mark.parametrize("size", [0, CHUNK_BYTES, 2 * CHUNK_BYTES])
def test_file_encryptor_edges_with_empty_writes(size: int) -> None:
    data = os.urandom(size)
    key = FileKey.generate()
    out = io.BytesIO()
    enc = FileEncryptor(out, key)
    enc.write(b"")
    enc.write(data)
    enc.write(b"")
    enc.finish()
    assert out.getvalue() == encrypt(data, key)
    assert len(out.getvalue()) == size + ABYTES * max(1, -(-size // CHUNK_BYTES))


def test_file_encryptor_refuses_use_after_finish() -> None:
    enc = FileEncryptor(io.BytesIO(), FileKey.generate())
    enc.finish()
    with pytest.raises(ValueError, match="after finish"):
        enc.write(b"x")
    with pytest.raises(ValueError, match="twice"):
        enc.finish()


def read_all(reader: DecryptingReader, sizes: list[int]) -> bytes:
    parts: list[bytes] = []
    i = 0
    while True:
        part = reader.read(sizes[i % len(sizes)] if sizes else -1)
        i += 1
        assert part is not None
        if not part:
            return b"".join(parts)
        parts.append(part)


@STREAM_SETTINGS
@given(file_data(), st.lists(st.integers(min_value=1, max_value=3 * CHUNK_BYTES), max_size=8))
def test_decrypting_reader_yields_the_data(data: bytes, sizes: list[int]) -> None:
    blob = io.BytesIO()
    encrypt_file(io.BytesIO(data), blob, STREAM_KEY)
    reader = DecryptingReader(io.BytesIO(blob.getvalue()), STREAM_KEY)
    assert reader.readable()
    assert read_all(reader, sizes) == data
    assert reader.result().size == reader.size == len(data)
    assert reader.sha256 == hashlib.sha256(data).digest()
    assert reader.read(10) == b""


def test_decrypting_reader_result_needs_the_end() -> None:
    key = FileKey.generate()
    reader = DecryptingReader(io.BytesIO(encrypt(b"abc" * 50_000, key)), key)
    reader.read(10)
    with pytest.raises(ValueError, match="end"):
        reader.result()


def test_decrypting_reader_reads_through_buffered_io() -> None:
    key = FileKey.generate()
    data = os.urandom(3 * CHUNK_BYTES + 5)
    with io.BufferedReader(DecryptingReader(io.BytesIO(encrypt(data, key)), key)) as f:
        assert f.read() == data


@STREAM_SETTINGS
@given(
    file_data(),
    st.sampled_from(["truncate", "flip", "append"]),
    st.integers(min_value=0),
    st.lists(st.integers(min_value=1, max_value=2 * CHUNK_BYTES), max_size=4),
)
def test_decrypting_reader_refuses_damage(
    data: bytes, kind: str, where: int, sizes: list[int]
) -> None:
    blob = bytearray(encrypt(data, STREAM_KEY))
    if kind == "truncate":
        del blob[where % len(blob) :]
    elif kind == "flip":
        blob[where % len(blob)] ^= 1 << (where % 8)
    else:
        blob += bytes([where % 256]) * (1 + where % 40)
    reader = DecryptingReader(io.BytesIO(bytes(blob)), STREAM_KEY)
    with pytest.raises(AttachmentDamaged):
        read_all(reader, sizes)
    with pytest.raises(AttachmentDamaged):  # the failure sticks
        reader.read(1)


def test_decrypting_reader_wrong_or_malformed_key() -> None:
    blob = encrypt(b"photo", FileKey.generate())
    with pytest.raises(AttachmentDamaged):
        DecryptingReader(io.BytesIO(blob), FileKey.generate()).read(1)
    with pytest.raises(AttachmentDamaged):
        DecryptingReader(io.BytesIO(blob), FileKey(b"k" * 31, b"h" * 24))


def test_decrypting_reader_refuses_bytes_after_final_before_returning_them() -> None:
    key = FileKey.generate()
    reader = DecryptingReader(io.BytesIO(encrypt(b"short", key) + b"x"), key)
    with pytest.raises(AttachmentDamaged):
        reader.read(1)


def test_streaming_helpers_stay_in_bounded_memory() -> None:
    key = FileKey.generate()
    tracemalloc.start()
    try:
        enc = FileEncryptor(Null(), key)  # type: ignore[arg-type]
        piece = b"v" * 1000
        for _ in range(8 << 10):  # 8 MiB in uneven pieces
            enc.write(piece)
        enc.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
