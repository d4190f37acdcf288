"""The sealed bundle envelope: round trips, tampering of every kind, hostile headers."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import nacl.bindings as sodium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import bundle
from crypto.bundle import (
    CHUNK_BYTES,
    HEADER_TOTAL_BYTES,
    BytesSink,
    bundle_size,
    open_bundle,
    open_bundle_bytes,
    seal_bundle,
)
from crypto.errors import BundleError, BundleReason
from crypto.keys import BoxPrivateKey, DeviceSigningKey, DeviceVerifyKey
from crypto.padme import padme
from crypto.secretstream import ABYTES, StreamDecryptor, StreamEncryptor
from tests.vectors import bundle_vectors as bv

HQ = bv.HQ_BOX
DEVICE = bv.DEVICE
ARABIC_TEXT = "اختفى ابني بعد عبوره الحاجز في ١٢ كانون الأول ٢٠١٦، ولم نسمع عنه شيئاً منذ ذلك الحين."


def trusted(device: DeviceVerifyKey) -> bool:
    """HQ's enrolled devices, here just the one."""
    return device == DEVICE.public_key


def seal(data: bytes) -> bytes:
    out = io.BytesIO()
    seal_bundle(io.BytesIO(data), out, recipient=HQ.public_key, device=DEVICE)
    return out.getvalue()


def reason_of(blob: bytes, keys: list[BoxPrivateKey] | None = None, **kw: object) -> BundleReason:
    with pytest.raises(BundleError) as caught:
        open_bundle_bytes(blob, keys or [HQ], trusts_device=trusted, **kw)  # type: ignore[arg-type]
    return caught.value.reason


def chunks_of(blob: bytes) -> list[bytes]:
    """The ciphertext chunks of a well-formed bundle."""
    body = blob[HEADER_TOTAL_BYTES:]
    size = CHUNK_BYTES + ABYTES
    return [body[i : i + size] for i in range(0, len(body), size)]


# ------------------------------------------------------------------ round trips

EDGE_SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES]


@pytest.mark.parametrize("size", [*EDGE_SIZES, 3 * 1024 * 1024 + 7])
def test_round_trip_at_chunk_edges_and_several_mib(size: int) -> None:
    data = os.urandom(size)
    blob = seal(data)
    assert len(blob) == bundle_size(size)
    opened, plaintext = open_bundle_bytes(blob, [HQ], trusts_device=trusted)
    assert plaintext == data
    assert opened.plaintext_length == size
    assert opened.payload_sha256 == hashlib.sha256(data).digest()
    assert opened.device == DEVICE.public_key
    assert opened.hq_key_id == HQ.public_key.key_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(EDGE_SIZES).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.integers(min_value=0, max_value=3 * CHUNK_BYTES).map(lambda n: b"\xa5" * n),
    )
)
def test_round_trip_property(data: bytes) -> None:
    opened, plaintext = open_bundle_bytes(seal(data), [HQ], trusts_device=trusted)
    assert plaintext == data
    assert opened.plaintext_length == len(data)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x0600, max_codepoint=0x06FF), max_size=2000))
def test_arabic_text_round_trips_exactly(text: str) -> None:
    _, plaintext = open_bundle_bytes(seal(text.encode("utf-8")), [HQ], trusts_device=trusted)
    assert plaintext.decode("utf-8") == text


def test_arabic_testimony_round_trips_and_is_not_in_the_bundle() -> None:
    encoded = ARABIC_TEXT.encode("utf-8")
    blob = seal(encoded)
    assert encoded not in blob
    assert encoded[:12] not in blob
    assert open_bundle_bytes(blob, [HQ], trusts_device=trusted)[1].decode("utf-8") == ARABIC_TEXT


def test_bundles_of_the_same_payload_differ() -> None:
    first, second = seal(b"same words"), seal(b"same words")
    assert first != second
    assert first[:12] == second[:12]


def test_a_retired_key_still_opens_late_bundles() -> None:
    retired = BoxPrivateKey.generate()
    out = io.BytesIO()
    seal_bundle(io.BytesIO(b"late"), out, recipient=retired.public_key, device=DEVICE)
    current = BoxPrivateKey.generate()
    opened, plaintext = open_bundle_bytes(out.getvalue(), [current, retired], trusts_device=trusted)
    assert plaintext == b"late"
    assert opened.hq_key_id == retired.public_key.key_id


def test_bundle_sealed_to_a_real_file_opens_from_it(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "b"
    data = os.urandom(CHUNK_BYTES * 3 + 11)
    with path.open("wb") as f:
        seal_bundle(io.BytesIO(data), f, recipient=HQ.public_key, device=DEVICE)
    sink = BytesSink()
    with path.open("rb") as f:
        open_bundle(f, [HQ], sink, trusts_device=trusted)
    assert sink.getvalue() == data
    with path.open("ab") as f:
        f.write(b"\0")
    with path.open("rb") as f, pytest.raises(BundleError) as caught:
        open_bundle(f, [HQ], BytesSink(), trusts_device=trusted)
    assert caught.value.reason is BundleReason.PAYLOAD


# ------------------------------------------------------------------ padding


@pytest.mark.parametrize(("a", "b"), [(1000, 1024), (65537, 67584), (10**6, 1015808)])
def test_sizes_in_one_padme_bucket_give_identical_bundle_sizes(a: int, b: int) -> None:
    assert padme(a) == padme(b)
    assert len(seal(os.urandom(a))) == len(seal(os.urandom(b)))


def test_a_size_past_the_bucket_gives_a_larger_bundle() -> None:
    assert len(seal(bytes(1025))) > len(seal(bytes(1024)))


# ------------------------------------------------------------------ tampering

SMALL = b"Detained at the checkpoint on 2016-12-09."


def test_every_single_byte_flip_of_a_small_bundle_is_refused() -> None:
    blob = seal(SMALL)
    for offset in range(len(blob)):
        flipped = bytearray(blob)
        flipped[offset] ^= 0x40
        reason = reason_of(bytes(flipped))
        if offset < bundle.PREFIX_BYTES:
            assert reason is BundleReason.FORMAT, offset
        elif offset < HEADER_TOTAL_BYTES:
            assert reason is BundleReason.NO_MATCHING_KEY, offset
        else:
            assert reason is BundleReason.PAYLOAD, offset


def test_truncation_at_and_between_chunk_boundaries_is_refused() -> None:
    blob = seal(os.urandom(3 * CHUNK_BYTES + 100))
    boundaries = [HEADER_TOTAL_BYTES + i * (CHUNK_BYTES + ABYTES) for i in range(4)]
    cuts = {0, 5, bundle.PREFIX_BYTES, HEADER_TOTAL_BYTES - 1, len(blob) - 1}
    for b in boundaries:
        cuts |= {b - 1, b, b + 1, b + CHUNK_BYTES // 2}
    for cut in sorted(c for c in cuts if c < len(blob)):
        assert reason_of(blob[:cut]) in {BundleReason.FORMAT, BundleReason.PAYLOAD}, cut


@pytest.mark.parametrize("extra", [b"\0", bytes(ABYTES), os.urandom(CHUNK_BYTES + ABYTES)])
def test_appended_bytes_are_refused(extra: bytes) -> None:
    assert reason_of(seal(os.urandom(CHUNK_BYTES + 5)) + extra) is BundleReason.PAYLOAD


def _rebuild(blob: bytes, chunks: list[bytes]) -> bytes:
    return blob[:HEADER_TOTAL_BYTES] + b"".join(chunks)


def test_reordered_duplicated_and_dropped_chunks_are_refused() -> None:
    blob = seal(os.urandom(3 * CHUNK_BYTES + 100))
    c = chunks_of(blob)
    assert len(c) == 4
    cases = {
        "swap first two": [c[1], c[0], c[2], c[3]],
        "duplicate first": [c[0], c[0], c[2], c[3]],
        "drop middle, duplicate another": [c[0], c[2], c[2], c[3]],
        "drop last": [c[0], c[1], c[2]],
        "drop middle": [c[0], c[1], c[3]],
        "final twice": [c[0], c[1], c[2], c[3], c[3]],
    }
    for name, chunks in cases.items():
        assert reason_of(_rebuild(blob, chunks)) is BundleReason.PAYLOAD, name


def test_chunks_spliced_from_another_bundle_are_refused() -> None:
    one = seal(os.urandom(2 * CHUNK_BYTES + 1))
    two = seal(os.urandom(2 * CHUNK_BYTES + 1))
    spliced = _rebuild(one, [chunks_of(one)[0], chunks_of(two)[1], chunks_of(one)[2]])
    assert reason_of(spliced) is BundleReason.PAYLOAD


def test_wrong_recipient_is_refused() -> None:
    assert reason_of(seal(SMALL), [BoxPrivateKey.generate()]) is BundleReason.NO_MATCHING_KEY


def test_unsigned_header_is_refused() -> None:
    blob = seal(SMALL)
    forged = bv.reseal(blob, label="unsigned", signature=bytes(64))
    assert reason_of(forged) is BundleReason.SIGNATURE


def test_header_signed_by_another_device_is_refused() -> None:
    forged = bv.reseal(seal(SMALL), label="foreign", signer=DeviceSigningKey.generate())
    assert reason_of(forged) is BundleReason.SIGNATURE


def test_header_resealed_to_another_hq_key_is_refused() -> None:
    other = BoxPrivateKey.generate()
    forged = bv.reseal(seal(SMALL), label="reseal", recipient=other.public_key)
    assert reason_of(forged, [other]) is BundleReason.HEADER


def test_header_fields_changed_after_signing_are_refused() -> None:
    blob = seal(SMALL)
    forged = bv.reseal(
        blob, label="edited", fields=bv.with_fields(blob, plaintext_length=len(SMALL) - 1)
    )
    assert reason_of(forged) is BundleReason.SIGNATURE


def test_payload_that_does_not_match_the_signed_hash_is_refused() -> None:
    # A device (or anyone holding the payload key) re-encrypting a different
    # payload under the signed header: the chunks authenticate, the hash does not.
    original = seal(SMALL)
    fields, _ = bv.open_inner(original)
    values = bundle._SIGNED_FIELDS.unpack(fields)
    key, header = values[3], values[4]
    other = bytes(len(SMALL))
    enc = StreamEncryptor(key, header)
    chunk = enc.push(other + bytes(padme(len(SMALL)) - len(SMALL)), final=True)
    assert reason_of(original[:HEADER_TOTAL_BYTES] + chunk) is BundleReason.PAYLOAD


def test_nonzero_padding_is_refused() -> None:
    original = seal(b"x" * 9)  # padded to 10: one byte of padding
    fields, _ = bv.open_inner(original)
    values = bundle._SIGNED_FIELDS.unpack(fields)
    enc = StreamEncryptor(values[3], values[4])
    chunk = enc.push(b"x" * 9 + b"\x01", final=True)
    assert reason_of(original[:HEADER_TOTAL_BYTES] + chunk) is BundleReason.PAYLOAD


def test_final_tag_on_an_early_chunk_is_refused() -> None:
    original = seal(os.urandom(CHUNK_BYTES + 1))
    fields, _ = bv.open_inner(original)
    values = bundle._SIGNED_FIELDS.unpack(fields)
    enc = StreamEncryptor(values[3], values[4])
    early_final = enc.push(bytes(CHUNK_BYTES), final=True)
    assert reason_of(original[:HEADER_TOTAL_BYTES] + early_final + bytes(100)) in {
        BundleReason.PAYLOAD
    }


def test_untrusted_device_is_refused_before_any_payload_is_decrypted() -> None:
    released: list[bytes] = []
    aborted: list[bool] = []

    class Sink:
        def write(self, data: bytes) -> None:
            released.append(data)

        def abort(self) -> None:
            aborted.append(True)

    with pytest.raises(BundleError) as caught:
        open_bundle(io.BytesIO(seal(SMALL)), [HQ], Sink(), trusts_device=lambda _d: False)
    assert caught.value.reason is BundleReason.UNKNOWN_DEVICE
    assert released == []
    assert aborted == [True]


def test_sink_is_told_to_discard_when_a_late_chunk_fails() -> None:
    blob = bytearray(seal(os.urandom(2 * CHUNK_BYTES + 1)))
    blob[-1] ^= 1
    aborted: list[bool] = []

    class Sink(BytesSink):
        def abort(self) -> None:
            aborted.append(True)
            super().abort()

    sink = Sink()
    with pytest.raises(BundleError):
        open_bundle(io.BytesIO(bytes(blob)), [HQ], sink, trusts_device=trusted)
    assert aborted == [True]
    assert sink.getvalue() == b""


# ------------------------------------------------------------------ hostile input


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        out = super().read(size)
        self.consumed += len(out)
        return out


def test_unknown_version_is_refused_before_any_public_key_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*_a: object) -> bytes:
        raise AssertionError("crypto_box_seal_open called on a bad prefix")

    monkeypatch.setattr(sodium, "crypto_box_seal_open", forbidden)
    blob = seal(SMALL)
    for version in (0, 2, 0xFFFF):
        bad = bundle.PREFIX.pack(bundle.MAGIC, version, 0) + blob[bundle.PREFIX_BYTES :]
        assert reason_of(bad) is BundleReason.FORMAT
    assert reason_of(b"NOTABNDL" + blob[8:]) is BundleReason.FORMAT
    assert reason_of(bundle.PREFIX.pack(bundle.MAGIC, 1, 1) + blob[12:]) is BundleReason.FORMAT


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"plaintext_length": 2**34, "padded_length": padme(2**34)}, BundleReason.TOO_LARGE),
        ({"plaintext_length": 2**62, "padded_length": 2**62}, BundleReason.HEADER),
        ({"plaintext_length": 5, "padded_length": 4}, BundleReason.HEADER),
        ({"chunk_size": 1}, BundleReason.HEADER),
        ({"chunk_size": 2**32 - 1}, BundleReason.HEADER),
    ],
    ids=["huge-consistent", "beyond-format", "plain-over-padded", "tiny-chunk", "huge-chunk"],
)
def test_validly_signed_hostile_headers_are_refused_after_reading_only_the_header(
    changes: dict[str, int], expected: BundleReason
) -> None:
    blob = seal(SMALL)
    forged = bv.reseal(blob, label="hostile", fields=bv.with_fields(blob, **changes), signer=DEVICE)
    reader = CountingReader(forged)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as caught:
            open_bundle(reader, [HQ], BytesSink(), trusts_device=trusted, max_padded_length=1 << 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason is expected
    assert reader.consumed == HEADER_TOTAL_BYTES
    assert peak < 1 << 20


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_ever_raise_bundle_error(data: bytes) -> None:
    with pytest.raises(BundleError):
        open_bundle_bytes(data, [HQ], trusts_device=trusted)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_mutations_of_a_valid_bundle_are_refused(data: st.DataObject) -> None:
    blob = bytearray(seal(SMALL))
    offsets = data.draw(
        st.sets(st.integers(min_value=0, max_value=len(blob) - 1), min_size=1, max_size=8)
    )
    for offset in offsets:
        blob[offset] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(BundleError):
        open_bundle_bytes(bytes(blob), [HQ], trusts_device=trusted)


# ------------------------------------------------------------------ bounded memory


class PatternReader:
    """A large payload produced on the fly, so the test itself holds no copy."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = (b"0123456789abcdef" * (n // 16 + 1))[:n]
        self.left -= n
        self.hasher.update(out)
        return out


class HashingSink:
    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.size += len(data)

    def abort(self) -> None:
        self.size = -1


def test_sealing_and_opening_64_mib_stays_in_bounded_memory(tmp_path: object) -> None:
    import pathlib

    size = 64 * 1024 * 1024 + 3
    path = pathlib.Path(str(tmp_path)) / "big.bundle"
    source = PatternReader(size)
    tracemalloc.start()
    try:
        with path.open("wb") as f:
            sealed = seal_bundle(source, f, recipient=HQ.public_key, device=DEVICE)  # type: ignore[arg-type]
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = HashingSink()
        with path.open("rb") as f:
            opened = open_bundle(f, [HQ], sink, trusts_device=trusted)
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sealed.size == path.stat().st_size == bundle_size(size)
    assert opened.payload_sha256 == source.hasher.digest() == sink.hasher.digest()
    assert sink.size == size
    assert seal_peak < 8 << 20, seal_peak
    assert open_peak < 8 << 20, open_peak


class TrickleReader(io.BytesIO):
    """A pipe-like source that returns at most 7 bytes per read."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


def test_short_reads_from_a_pipe_like_source_still_open() -> None:
    data = os.urandom(CHUNK_BYTES + 3)
    sink = BytesSink()
    open_bundle(TrickleReader(seal(data)), [HQ], sink, trusts_device=trusted)
    assert sink.getvalue() == data


def test_device_trust_must_be_decided_by_every_caller() -> None:
    import inspect

    for function in (open_bundle, open_bundle_bytes):
        parameter = inspect.signature(function).parameters["trusts_device"]
        assert parameter.default is inspect.Parameter.empty, function.__name__


def test_reprs_never_show_the_payload_key_or_the_plaintext_hash() -> None:
    data = b"short testimony"
    blob = seal(data)
    opened, _ = open_bundle_bytes(blob, [HQ], trusts_device=trusted)
    header = bundle._open_header(
        blob[: bundle.PREFIX_BYTES],
        blob[bundle.PREFIX_BYTES : HEADER_TOTAL_BYTES],
        [HQ],
        trusts_device=trusted,
        max_padded_length=1 << 20,
    )
    digest = hashlib.sha256(data).digest()
    for text in (repr(opened), repr(header)):
        for secret in (header.payload_key, header.stream_header, digest):
            assert secret.hex() not in text
            assert repr(secret) not in text


class NullDestination:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(data[:0])  # keep the count, not the bytes
        return len(data)


def test_large_padding_is_encrypted_chunk_by_chunk_in_bounded_memory() -> None:
    key, header = os.urandom(32), os.urandom(24)
    padding = 64 * 1024 * 1024 + 5
    block = os.urandom(1000)
    dst = NullDestination()
    tracemalloc.start()
    try:
        bundle._push_last(StreamEncryptor(key, header), dst, block, padding=padding)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(dst.chunks) == bundle.chunk_count(len(block) + padding)
    assert peak < 2 << 20, peak


def test_streamed_padding_decrypts_to_the_block_then_zeros() -> None:
    key, header = os.urandom(32), os.urandom(24)
    block = os.urandom(CHUNK_BYTES + 10)
    out = io.BytesIO()
    bundle._push_last(StreamEncryptor(key, header), out, block, padding=CHUNK_BYTES + 7)
    body = out.getvalue()
    dec = StreamDecryptor(key, header)
    size = CHUNK_BYTES + ABYTES
    plain = [dec.pull(body[i : i + size]) for i in range(0, len(body), size)]
    dec.finish()
    assert b"".join(p for p, _ in plain) == block + bytes(CHUNK_BYTES + 7)
    assert [final for _, final in plain] == [False, False, True]
