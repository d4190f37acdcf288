"""The payload inside a bundle: manifest codec, streaming writer and reader, end to end."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.attachment import DecryptingReader, FileEncryptor, FileKey, encrypt_file
from crypto.bundle import BytesSink, open_bundle, seal_bundle
from crypto.errors import BundleError
from crypto.keys import BoxPrivateKey, DeviceSigningKey, DeviceVerifyKey
from crypto.revisions import GENESIS, make_revision, verify_chain
from crypto.secretstream import read_up_to
from sync.errors import PayloadError
from sync.payload import (
    MAGIC,
    MAX_MANIFEST_BYTES,
    PREFIX_BYTES,
    AttachmentEntry,
    AttachmentStream,
    IdentityEntry,
    Manifest,
    PayloadReader,
    PayloadSource,
    RevisionEntry,
    decode_manifest,
    encode_manifest,
)

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies


def ids() -> st.SearchStrategy[str]:
    return st.text(alphabet=ID_ALPHABET, min_size=20, max_size=20)


def printable(max_size: int, *, spaces: bool) -> st.SearchStrategy[str]:
    excluded = ["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]
    chars = st.characters(exclude_categories=excluded)  # type: ignore[arg-type]
    alphabet = st.one_of(chars, st.just(" ")) if spaces else chars
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size).filter(
        lambda s: s.isprintable() and (spaces or not any(c.isspace() for c in s))
    )


def fixed(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


@st.composite
def revision_lists(draw: st.DrawFn) -> tuple[RevisionEntry, ...]:
    count = draw(st.integers(min_value=1, max_value=4))
    return tuple(
        RevisionEntry(
            seq=seq,
            parent_hash=draw(fixed(32)),
            hash=draw(fixed(32)),
            device_key=draw(fixed(32)),
            signature=draw(fixed(64)),
            payload=draw(st.binary(max_size=300)),
            created_at=draw(printable(64, spaces=True)),
        )
        for seq in range(1, count + 1)
    )


def attachment_entries(max_size: int) -> st.SearchStrategy[tuple[AttachmentEntry, ...]]:
    entry = st.builds(
        AttachmentEntry,
        id=ids(),
        size=st.integers(min_value=0, max_value=max_size),
        sha256=fixed(32),
    )
    return st.lists(entry, max_size=5, unique_by=lambda a: a.id).map(tuple)


@st.composite
def manifests(
    draw: st.DrawFn, attachments: st.SearchStrategy[tuple[AttachmentEntry, ...]] | None = None
) -> Manifest:
    identity = st.builds(
        IdentityEntry,
        witness_code=printable(32, spaces=False),
        sealed=st.binary(min_size=48, max_size=200),
    )
    return Manifest(
        testimony_id=draw(ids()),
        created_at=draw(printable(64, spaces=True)),
        enrolment_id=draw(fixed(16)),
        binding=draw(fixed(32)),
        revisions=draw(revision_lists()),
        attachments=draw(attachments if attachments is not None else attachment_entries(1 << 40)),
        identities=tuple(draw(st.lists(identity, max_size=3, unique_by=lambda i: i.witness_code))),
        statements=tuple(draw(st.lists(st.binary(min_size=1, max_size=1024), max_size=3))),
    )


# ------------------------------------------------------------------ manifest codec


def small_manifest(**changes: object) -> Manifest:
    base = Manifest(
        testimony_id="0123456789abcdefghjk",
        created_at="2024-05-01T10:00:00+03:00",
        enrolment_id=bytes(range(16)),
        binding=bytes(32),
        revisions=(
            RevisionEntry(
                seq=1,
                parent_hash=bytes(32),
                hash=b"\x11" * 32,
                device_key=b"\x22" * 32,
                signature=b"\x33" * 64,
                payload=b"{}",
                created_at="2024-05-01T10:00:00+03:00",
            ),
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@SETTINGS
@given(manifests())
def test_manifest_round_trip(m: Manifest) -> None:
    data = encode_manifest(m)
    assert decode_manifest(data) == m
    assert encode_manifest(decode_manifest(data)) == data


def test_manifest_bytes_are_canonical_json() -> None:
    m = small_manifest(
        attachments=(AttachmentEntry("zzzzzzzzzzzzzzzzzzzz", 5, b"\xab" * 32),),
        identities=(IdentityEntry("W-7", b"\x00" * 48),),
        statements=(b"\x01\x02",),
    )
    data = encode_manifest(m)
    doc = json.loads(data)
    assert data == json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert data.startswith(b'{"attachments":[{"id":"zzzzzzzzzzzzzzzzzzzz","sha256":"abab')
    assert doc["format"] == 1
    assert doc["enrolment"] == {"binding": "00" * 32, "id": bytes(range(16)).hex()}
    assert doc["revisions"][0]["payload"] == "e30="
    assert doc["statements"] == ["AQI="]
    assert doc["identities"] == [
        {"sealed": base64.b64encode(bytes(48)).decode(), "witness_code": "W-7"}
    ]


def test_arabic_created_at_is_kept_as_utf8() -> None:
    m = small_manifest(created_at="٢٠٢٤-٠٥-٠١ ١٠:٠٠")
    data = encode_manifest(m)
    assert "٢٠٢٤".encode() in data
    assert decode_manifest(data) == m


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_manifest(data)
    assert caught.value.message == "The bundle's contents are malformed."


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_manifests_decode_or_raise_payload_error(data: st.DataObject) -> None:
    blob = bytearray(encode_manifest(small_manifest(statements=(b"s",))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
        blob[i] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(PayloadError):
        decode_manifest(bytes(blob))


def base_doc() -> dict[str, object]:
    doc = json.loads(
        encode_manifest(
            small_manifest(
                attachments=(AttachmentEntry("zzzzzzzzzzzzzzzzzzzz", 5, b"\xab" * 32),),
                identities=(IdentityEntry("W-7", b"\x00" * 48),),
                statements=(b"\x01\x02",),
            )
        )
    )
    assert isinstance(doc, dict)
    return doc


def edit(fn: Callable[[dict[str, object]], object]) -> bytes:
    doc = base_doc()
    fn(doc)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def rev(doc: dict[str, object]) -> dict[str, object]:
    revisions = doc["revisions"]
    assert isinstance(revisions, list)
    first = revisions[0]
    assert isinstance(first, dict)
    return first


def att(doc: dict[str, object]) -> dict[str, object]:
    attachments = doc["attachments"]
    assert isinstance(attachments, list)
    first = attachments[0]
    assert isinstance(first, dict)
    return first


def ident(doc: dict[str, object]) -> dict[str, object]:
    identities = doc["identities"]
    assert isinstance(identities, list)
    first = identities[0]
    assert isinstance(first, dict)
    return first


def twice(doc: dict[str, object], key: str, n: int) -> None:
    items = doc[key]
    assert isinstance(items, list)
    doc[key] = [items[0]] * n


def second_revision(doc: dict[str, object], seq: object) -> None:
    revisions = doc["revisions"]
    assert isinstance(revisions, list)
    revisions.append({**rev(doc), "seq": seq})


def numbered(doc: dict[str, object], key: str, n: int, field: str) -> None:
    items = doc[key]
    assert isinstance(items, list)
    doc[key] = [{**items[0], field: f"{i:020d}" if field == "id" else f"w{i}"} for i in range(n)]


VALID = json.dumps(base_doc()).encode()
B64_1MIB = base64.b64encode(bytes((1 << 20) + 1)).decode()

INVALID: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"{"),
    ("top-level list", b"[]"),
    ("top-level string", b'"x"'),
    ("invalid utf-8", VALID.replace(b'"W-7"', b'"W-\xff"')),
    ("utf-8 bom", b"\xef\xbb\xbf" + VALID),
    ("trailing garbage", VALID + b"x"),
    ("too large", b" " * (MAX_MANIFEST_BYTES + 1)),
    ("missing key", edit(lambda d: d.pop("statements"))),
    ("unknown key", edit(lambda d: d.update(extra=1))),
    ("format 2", edit(lambda d: d.update(format=2))),
    ("format 0", edit(lambda d: d.update(format=0))),
    ("format bool", edit(lambda d: d.update(format=True))),
    ("format string", edit(lambda d: d.update(format="1"))),
    ("format float", VALID.replace(b'"format": 1', b'"format": 1.0')),
    ("format exponent", VALID.replace(b'"format": 1', b'"format": 1e0')),
    ("format NaN", VALID.replace(b'"format": 1', b'"format": NaN')),
    ("format Infinity", VALID.replace(b'"format": 1', b'"format": Infinity')),
    ("format -Infinity", VALID.replace(b'"format": 1', b'"format": -Infinity')),
    ("huge integer", VALID.replace(b'"format": 1', b'"format": 1' + b"0" * 5000)),
    ("duplicate top key", VALID.replace(b'"format": 1', b'"format": 1, "format": 1')),
    ("duplicate nested key", VALID.replace(b'"seq": 1', b'"seq": 1, "seq": 1')),
    ("null revisions", edit(lambda d: d.update(revisions=None))),
    ("testimony id upper case", edit(lambda d: d.update(testimony_id="0123456789ABCDEFGHJK"))),
    ("testimony id letter i", edit(lambda d: d.update(testimony_id="0123456789abcdefghji"))),
    ("testimony id 21 chars", edit(lambda d: d.update(testimony_id="0123456789abcdefghjkm"))),
    ("testimony id newline", edit(lambda d: d.update(testimony_id="0123456789abcdefghjk\n"))),
    ("testimony id int", edit(lambda d: d.update(testimony_id=1))),
    ("created_at empty", edit(lambda d: d.update(created_at=""))),
    ("created_at 65 chars", edit(lambda d: d.update(created_at="x" * 65))),
    ("created_at escape", edit(lambda d: d.update(created_at="\x1b[31m2024"))),
    ("created_at bidi override", edit(lambda d: d.update(created_at="2024\u202e"))),
    ("created_at lone surrogate", VALID.replace(b'"created_at": "2024', b'"created_at": "\\ud800')),
    (
        "enrolment upper hex",
        edit(lambda d: d.update(enrolment={"id": "AB" * 16, "binding": "00" * 32})),
    ),
    (
        "enrolment short id",
        edit(lambda d: d.update(enrolment={"id": "ab" * 15, "binding": "00" * 32})),
    ),
    (
        "enrolment hex prefix",
        edit(lambda d: d.update(enrolment={"id": "0x" + "ab" * 15, "binding": "00" * 32})),
    ),
    ("enrolment missing binding", edit(lambda d: d.update(enrolment={"id": "ab" * 16}))),
    (
        "enrolment extra key",
        edit(lambda d: d.update(enrolment={"id": "ab" * 16, "binding": "00" * 32, "x": 1})),
    ),
    ("enrolment list", edit(lambda d: d.update(enrolment=["ab" * 16, "00" * 32]))),
    ("no revisions", edit(lambda d: d.update(revisions=[]))),
    ("10001 revisions", edit(lambda d: twice(d, "revisions", 10_001))),
    ("seq 0", edit(lambda d: rev(d).update(seq=0))),
    ("seq 2 first", edit(lambda d: rev(d).update(seq=2))),
    ("seq gap", edit(lambda d: second_revision(d, 3))),
    ("seq repeated", edit(lambda d: second_revision(d, 1))),
    ("seq bool", edit(lambda d: rev(d).update(seq=True))),
    ("seq string", edit(lambda d: rev(d).update(seq="1"))),
    ("seq float", VALID.replace(b'"seq": 1', b'"seq": 1.0')),
    ("parent hash upper case", edit(lambda d: rev(d).update(parent_hash="AA" * 32))),
    ("hash short", edit(lambda d: rev(d).update(hash="11" * 31))),
    ("device key long", edit(lambda d: rev(d).update(device_key="22" * 33))),
    ("signature 63 bytes", edit(lambda d: rev(d).update(signature="33" * 63))),
    ("signature non-hex", edit(lambda d: rev(d).update(signature="zz" * 64))),
    ("payload non-canonical base64", edit(lambda d: rev(d).update(payload="e31="))),
    ("payload missing padding", edit(lambda d: rev(d).update(payload="e30"))),
    ("payload newline", edit(lambda d: rev(d).update(payload="e30=\n"))),
    ("payload url-safe alphabet", edit(lambda d: rev(d).update(payload="-_-_"))),
    ("payload non-ascii", edit(lambda d: rev(d).update(payload="é30="))),
    ("payload over 1 MiB", edit(lambda d: rev(d).update(payload=B64_1MIB))),
    ("payload bytes list", edit(lambda d: rev(d).update(payload=[123, 125]))),
    ("revision extra key", edit(lambda d: rev(d).update(extra=1))),
    ("revision missing created_at", edit(lambda d: rev(d).pop("created_at"))),
    ("revision created_at empty", edit(lambda d: rev(d).update(created_at=""))),
    ("revision created_at newline", edit(lambda d: rev(d).update(created_at="2024\n"))),
    ("revision not an object", edit(lambda d: d.update(revisions=[["seq", 1]]))),
    ("duplicate attachment ids", edit(lambda d: twice(d, "attachments", 2))),
    ("1001 attachments", edit(lambda d: numbered(d, "attachments", 1001, "id"))),
    ("attachment id upper case", edit(lambda d: att(d).update(id="Z" * 20))),
    ("attachment size negative", edit(lambda d: att(d).update(size=-1))),
    ("attachment size over 2**40", edit(lambda d: att(d).update(size=(1 << 40) + 1))),
    ("attachment size bool", edit(lambda d: att(d).update(size=False))),
    ("attachment size float", VALID.replace(b'"size": 5', b'"size": 5.0')),
    ("attachment size null", edit(lambda d: att(d).update(size=None))),
    ("attachment sha256 short", edit(lambda d: att(d).update(sha256="ab" * 31))),
    (
        "attachment sha256 bytes-ish",
        edit(lambda d: att(d).update(sha256=base64.b64encode(bytes(32)).decode())),
    ),
    ("attachment extra key", edit(lambda d: att(d).update(media_type="image/jpeg"))),
    ("duplicate witness codes", edit(lambda d: twice(d, "identities", 2))),
    ("17 identities", edit(lambda d: numbered(d, "identities", 17, "witness_code"))),
    ("witness code with space", edit(lambda d: ident(d).update(witness_code="W 7"))),
    ("witness code with nbsp", edit(lambda d: ident(d).update(witness_code="W\u00a07"))),
    ("witness code with tab", edit(lambda d: ident(d).update(witness_code="W\t7"))),
    ("witness code empty", edit(lambda d: ident(d).update(witness_code=""))),
    ("witness code 33 chars", edit(lambda d: ident(d).update(witness_code="W" * 33))),
    ("witness code control", edit(lambda d: ident(d).update(witness_code="W\x007"))),
    (
        "sealed 47 bytes",
        edit(lambda d: ident(d).update(sealed=base64.b64encode(bytes(47)).decode())),
    ),
    (
        "sealed 65537 bytes",
        edit(lambda d: ident(d).update(sealed=base64.b64encode(bytes(65537)).decode())),
    ),
    ("identity extra key", edit(lambda d: ident(d).update(name="x"))),
    ("empty statement", edit(lambda d: d.update(statements=[""]))),
    (
        "statement 1025 bytes",
        edit(lambda d: d.update(statements=[base64.b64encode(bytes(1025)).decode()])),
    ),
    ("65 statements", edit(lambda d: d.update(statements=["AQI="] * 65))),
    ("statement not a string", edit(lambda d: d.update(statements=[1]))),
    ("statements object", edit(lambda d: d.update(statements={"a": "AQI="}))),
    ("nesting depth 4", edit(lambda d: d.update(statements=[[["AQI="]]]))),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ("deep nesting unbalanced", b'{"a":' + b"[" * 100_000),
    ("deep nesting after string", b'{"a": "\\"\\"[[[", "b": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
]


@pytest.mark.parametrize("data", [pytest.param(d, id=name) for name, d in INVALID])
def test_invalid_manifests_are_refused(data: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_manifest(data)
    assert "\n" not in caught.value.message


def test_the_base_of_the_invalid_table_is_valid() -> None:
    assert decode_manifest(VALID).attachments[0].size == 5


def test_a_newer_format_says_so() -> None:
    with pytest.raises(PayloadError, match="newer fieldapp"):
        decode_manifest(edit(lambda d: d.update(format=2)))


def test_quadratic_string_stripping_is_avoided() -> None:
    # Escaped quotes that never close: every quote starts a candidate string.
    decode_time_bound = b'{"a":"' + b'\\"' * 2_000_000
    with pytest.raises(PayloadError):
        decode_manifest(decode_time_bound)


def test_limits_at_their_edges_are_accepted() -> None:
    m = small_manifest(
        created_at="x" * 64,
        attachments=(
            AttachmentEntry("z" * 20, 1 << 40, bytes(32)),
            AttachmentEntry("y" * 20, 0, bytes(32)),
        ),
        identities=(IdentityEntry("W" * 32, bytes(65536)), IdentityEntry("x", bytes(48))),
        statements=(b"s" * 1024,) * 64,
    )
    assert decode_manifest(encode_manifest(m)) == m


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"testimony_id": "short"}, id="bad id"),
        pytest.param({"binding": bytes(31)}, id="short binding"),
        pytest.param({"revisions": ()}, id="no revisions"),
        pytest.param({"statements": (b"",)}, id="empty statement"),
        pytest.param({"created_at": "a\nb"}, id="control in created_at"),
    ],
)
def test_encoding_an_out_of_bounds_manifest_raises(changes: dict[str, object]) -> None:
    with pytest.raises(PayloadError, match="cannot be packed"):
        encode_manifest(small_manifest(**changes))


def test_encoding_a_too_large_manifest_raises() -> None:
    first = small_manifest().revisions[0]
    revisions = tuple(replace(first, seq=i, payload=bytes(1 << 20)) for i in range(1, 14))
    with pytest.raises(PayloadError, match="too large"):
        encode_manifest(small_manifest(revisions=revisions))


def test_to_revision_checks_the_device_key() -> None:
    device = DeviceSigningKey.generate()
    real = make_revision(device, "0123456789abcdefghjk", 1, GENESIS, b"{}")
    entry = RevisionEntry(
        seq=1,
        parent_hash=real.parent_hash,
        hash=real.hash,
        device_key=real.device.raw,
        signature=real.signature,
        payload=real.payload,
        created_at="now",
    )
    assert entry.to_revision("0123456789abcdefghjk") == real
    with pytest.raises(PayloadError):
        replace(entry, device_key=bytes(32)).to_revision("0123456789abcdefghjk")  # small order


def test_revision_payloads_stay_out_of_reprs() -> None:
    m = small_manifest(identities=(IdentityEntry("W-7", b"\xee" * 48),))
    assert "7b7d" not in repr(m)
    assert "{}" not in repr(m)
    assert "\\xee" not in repr(m)


# ------------------------------------------------------------------ streaming


class Writer:
    """An AttachmentWriter collecting into memory, recording what happened to it."""

    def __init__(self, log: list[str], entry: AttachmentEntry) -> None:
        self.entry = entry
        self.log = log
        self.out = io.BytesIO()
        self.finished = False
        self.aborted = 0

    def write(self, data: bytes, /) -> int:
        assert not self.finished and not self.aborted
        return self.out.write(data)

    def finish(self) -> None:
        assert not self.finished
        self.finished = True
        self.log.append(f"finish {self.entry.id}")

    def abort(self) -> None:
        self.aborted += 1
        self.log.append(f"abort {self.entry.id}")


class Collect:
    """on_manifest and new_attachment callbacks that remember everything."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.manifests: list[Manifest] = []
        self.writers: list[Writer] = []

    def on_manifest(self, m: Manifest) -> None:
        self.manifests.append(m)
        self.log.append("manifest")

    def new_attachment(self, entry: AttachmentEntry) -> Writer:
        self.log.append(f"new {entry.id}")
        w = Writer(self.log, entry)
        self.writers.append(w)
        return w

    def reader(self, **kw: int) -> PayloadReader:
        return PayloadReader(on_manifest=self.on_manifest, new_attachment=self.new_attachment, **kw)


class TrackedStream(io.BytesIO):
    def __init__(self, data: bytes, log: list[str], name: str) -> None:
        super().__init__(data)
        self.log = log
        self.name_ = name

    def close(self) -> None:
        if not self.closed:
            self.log.append(f"close {self.name_}")
        super().close()


def with_contents(m: Manifest, contents: list[bytes]) -> Manifest:
    entries = tuple(
        AttachmentEntry(a.id, len(c), hashlib.sha256(c).digest())
        for a, c in zip(m.attachments, contents, strict=True)
    )
    return replace(m, attachments=entries)


def source(m: Manifest, contents: dict[str, bytes], log: list[str] | None = None) -> PayloadSource:
    events = log if log is not None else []

    def open_attachment(entry: AttachmentEntry) -> BinaryIO:
        events.append(f"open {entry.id}")
        return TrackedStream(contents[entry.id], events, entry.id)

    return PayloadSource(m, open_attachment)


def payload_of(m: Manifest, contents: dict[str, bytes]) -> bytes:
    with source(m, contents) as src:
        return src.read()


def feed(reader: PayloadReader, data: bytes, sizes: list[int]) -> None:
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)] if sizes else len(data)
        reader.write(data[pos : pos + n])
        pos += n
        i += 1


@st.composite
def manifests_with_contents(draw: st.DrawFn) -> tuple[Manifest, dict[str, bytes]]:
    m = draw(manifests(attachments=attachment_entries(0)))
    contents = [draw(st.one_of(st.just(b""), st.binary(max_size=3000))) for _ in m.attachments]
    m = with_contents(m, contents)
    return m, {a.id: c for a, c in zip(m.attachments, contents, strict=True)}


@SETTINGS
@given(
    manifests_with_contents(),
    st.lists(st.integers(min_value=1, max_value=5000), max_size=6),
    st.lists(st.integers(min_value=1, max_value=4000), max_size=6),
)
def test_source_to_reader_round_trip(
    case: tuple[Manifest, dict[str, bytes]], write_sizes: list[int], read_sizes: list[int]
) -> None:
    m, contents = case
    log: list[str] = []
    src = source(m, contents, log)
    parts = []
    i = 0
    while part := src.read(read_sizes[i % len(read_sizes)] if read_sizes else -1):
        parts.append(part)
        i += 1
    data = b"".join(parts)
    opened = [e for e in log if e.startswith("open")]
    assert opened == [f"open {a.id}" for a in m.attachments]
    # One stream at a time, each closed before the next is opened.
    assert log == [e for a in m.attachments for e in (f"open {a.id}", f"close {a.id}")]
    assert data.startswith(MAGIC + b"\x00\x01")
    manifest_length = struct.unpack(">I", data[10:14])[0]
    assert data[PREFIX_BYTES : PREFIX_BYTES + manifest_length] == encode_manifest(m)
    assert len(data) == PREFIX_BYTES + manifest_length + sum(len(c) for c in contents.values())

    got = Collect()
    reader = got.reader()
    feed(reader, data, write_sizes)
    assert reader.close() == m
    assert got.manifests == [m]
    assert [w.entry for w in got.writers] == list(m.attachments)
    for w in got.writers:
        assert w.finished and not w.aborted
        assert w.out.getvalue() == contents[w.entry.id]


def two_attachments() -> tuple[Manifest, dict[str, bytes], bytes]:
    contents = {"a" * 20: b"first attachment", "b" * 20: b"", "c" * 20: b"third" * 1000}
    m = with_contents(
        small_manifest(attachments=tuple(AttachmentEntry(k, 0, bytes(32)) for k in contents)),
        list(contents.values()),
    )
    return m, contents, payload_of(m, contents)


def test_zero_size_attachments_are_created_when_due() -> None:
    m, _, data = two_attachments()
    got = Collect()
    reader = got.reader()
    end_of_first = len(data) - 5000
    reader.write(data[: end_of_first - 1])
    assert got.log == ["manifest", "new " + "a" * 20]
    reader.write(data[end_of_first - 1 : end_of_first + 1])
    assert got.log[2:] == [
        "finish " + "a" * 20,
        "new " + "b" * 20,
        "finish " + "b" * 20,
        "new " + "c" * 20,
    ]
    reader.write(data[end_of_first + 1 :])
    assert reader.close() == m


def test_an_only_empty_attachment_is_finished_with_the_manifest() -> None:
    m = with_contents(small_manifest(attachments=(AttachmentEntry("e" * 20, 0, bytes(32)),)), [b""])
    got = Collect()
    reader = got.reader()
    reader.write(payload_of(m, {"e" * 20: b""}))
    assert got.log == ["manifest", "new " + "e" * 20, "finish " + "e" * 20]
    assert reader.close() == m


def refused(data: bytes, *, when: str) -> Collect:
    """Feed ``data`` byte-exactly, expecting PayloadError at write (or at close)."""
    got = Collect()
    reader = got.reader()
    with pytest.raises(PayloadError):
        if when == "write":
            reader.write(data)
        else:
            reader.write(data)
            reader.close()
    reader.abort()
    for w in got.writers:
        assert w.aborted == 1
    reader.abort()  # idempotent
    for w in got.writers:
        assert w.aborted == 1
    return got


def test_wrong_sha256_is_refused_and_every_writer_aborted() -> None:
    m, contents, _ = two_attachments()
    last = m.attachments[2]
    bad = replace(m, attachments=(*m.attachments[:2], replace(last, sha256=bytes(32))))
    data = payload_of(replace(m, attachments=(*bad.attachments[:2], last)), contents)
    data = data.replace(encode_manifest(m), encode_manifest(bad))
    got = refused(data, when="write")
    assert [w.finished for w in got.writers] == [True, True, False]


def test_wrong_sha256_of_an_empty_attachment_is_refused() -> None:
    m, _, data = two_attachments()
    empty = m.attachments[1]
    bad = replace(
        m, attachments=(m.attachments[0], replace(empty, sha256=bytes(32)), m.attachments[2])
    )
    data = data.replace(encode_manifest(m), encode_manifest(bad))
    refused(data, when="write")


def test_short_attachment_is_refused_at_close() -> None:
    _, _, data = two_attachments()
    got = refused(data[:-1], when="close")
    assert got.writers[-1].aborted == 1


def test_trailing_bytes_are_refused() -> None:
    _, _, data = two_attachments()
    refused(data + b"\x00", when="write")


def test_trailing_bytes_after_a_payload_without_attachments_are_refused() -> None:
    m = small_manifest()
    refused(payload_of(m, {}) + b"x", when="write")


@pytest.mark.parametrize("cut", [0, 1, PREFIX_BYTES - 1, PREFIX_BYTES, PREFIX_BYTES + 10])
def test_truncated_prefix_or_manifest_is_refused_at_close(cut: int) -> None:
    _, _, data = two_attachments()
    got = refused(data[:cut], when="close")
    assert got.manifests == []
    assert got.writers == []


def test_truncated_payload_is_refused_at_close() -> None:
    _, _, data = two_attachments()
    reader = Collect().reader()
    reader.write(data[: len(data) // 2])
    with pytest.raises(PayloadError):
        reader.close()


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"FAPPBNDL" + struct.pack(">HI", 1, 10), id="bundle magic"),
        pytest.param(MAGIC + struct.pack(">HI", 0, 10), id="version 0"),
        pytest.param(MAGIC + struct.pack(">HI", 1, 0), id="empty manifest"),
        pytest.param(MAGIC + struct.pack(">HI", 1, MAX_MANIFEST_BYTES + 1), id="manifest too long"),
    ],
)
def test_bad_prefixes_are_refused_at_once(prefix: bytes) -> None:
    refused(prefix, when="write")


def test_a_newer_payload_version_says_so() -> None:
    reader = Collect().reader()
    with pytest.raises(PayloadError, match="newer fieldapp"):
        reader.write(MAGIC + struct.pack(">HI", 2, 10))


def test_max_manifest_bytes_is_enforced_from_the_prefix() -> None:
    _, _, data = two_attachments()
    reader = Collect().reader(max_manifest_bytes=100)
    with pytest.raises(PayloadError):
        reader.write(data[:PREFIX_BYTES])
    with pytest.raises(ValueError, match="max_manifest_bytes"):
        Collect().reader(max_manifest_bytes=MAX_MANIFEST_BYTES + 1)


def test_a_bad_manifest_is_refused() -> None:
    body = b'{"format":1}'
    refused(MAGIC + struct.pack(">HI", 1, len(body)) + body, when="write")


def test_on_manifest_may_refuse_and_its_exception_propagates() -> None:
    _, _, data = two_attachments()

    class Refused(Exception):
        pass

    def refuse(_: Manifest) -> None:
        raise Refused

    created: list[AttachmentEntry] = []

    def new_attachment(entry: AttachmentEntry) -> Writer:
        created.append(entry)
        return Writer([], entry)

    reader = PayloadReader(on_manifest=refuse, new_attachment=new_attachment)
    with pytest.raises(Refused):
        reader.write(data)
    assert created == []
    with pytest.raises(PayloadError):  # the failure sticks
        reader.write(b"")
    with pytest.raises(PayloadError):
        reader.close()


def test_abort_aborts_every_writer_even_if_one_fails() -> None:
    _, _, data = two_attachments()
    got = Collect()
    reader = got.reader()
    reader.write(data[:-10])
    first = got.writers[0]

    def boom() -> None:
        first.aborted += 1
        raise OSError("disk")

    first.abort = boom  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk"):
        reader.abort()
    assert [w.aborted for w in got.writers] == [1, 1, 1]
    reader.abort()
    assert [w.aborted for w in got.writers] == [1, 1, 1]


# ------------------------------------------------------------------ PayloadSource checks


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(b"first attachmen", id="shorter"),
        pytest.param(b"first attachment!", id="longer"),
        pytest.param(b"First attachment", id="wrong hash"),
        pytest.param(b"", id="empty"),
    ],
)
def test_source_refuses_a_changed_attachment(stored: bytes) -> None:
    m, contents, _ = two_attachments()
    log: list[str] = []
    src = source(m, {**contents, "a" * 20: stored}, log)
    with pytest.raises(PayloadError, match="no bundle was made") as caught:
        src.read()
    assert "first" not in caught.value.message
    assert log == ["open " + "a" * 20, "close " + "a" * 20]
    with pytest.raises(PayloadError):  # the failure sticks
        src.read(1)


def test_source_refuses_a_changed_empty_attachment() -> None:
    m, contents, _ = two_attachments()
    with pytest.raises(PayloadError):
        source(m, {**contents, "b" * 20: b"x"}).read()


def test_source_checks_the_last_attachment_before_its_last_byte() -> None:
    m, contents, data = two_attachments()
    src = source(m, {**contents, "c" * 20: contents["c" * 20][:-1] + b"?"})
    assert read_up_to(src, len(data) - 1) == data[:-1]  # type: ignore[arg-type]
    with pytest.raises(PayloadError):
        src.read(1)


def test_source_propagates_errors_from_the_store() -> None:
    m, _, _ = two_attachments()

    def open_attachment(_: AttachmentEntry) -> BinaryIO:
        raise FileNotFoundError("gone")

    src = PayloadSource(m, open_attachment)
    with pytest.raises(FileNotFoundError):
        src.read()


def test_source_close_closes_the_open_stream() -> None:
    m, contents, data = two_attachments()
    log: list[str] = []
    src = source(m, contents, log)
    read_up_to(src, len(data) - 10)  # type: ignore[arg-type]
    src.close()
    assert log[-1] == "close " + "c" * 20
    with pytest.raises(ValueError, match="closed"):
        src.read(1)


def test_source_refuses_a_manifest_it_cannot_encode() -> None:
    with pytest.raises(PayloadError, match="cannot be packed"):
        PayloadSource(small_manifest(binding=b"x"), lambda _e: io.BytesIO())


# ------------------------------------------------------------------ end to end


class EncryptingWriter:
    """What HQ does with an incoming attachment: re-encrypt it under a fresh key."""

    def __init__(
        self, entry: AttachmentEntry, store: dict[str, tuple[FileKey, io.BytesIO]]
    ) -> None:
        self.key = FileKey.generate()
        self.out = io.BytesIO()
        self.enc = FileEncryptor(self.out, self.key)
        self.entry = entry
        self.store = store
        self.aborted = False

    def write(self, data: bytes, /) -> None:
        self.enc.write(data)

    def finish(self) -> None:
        done = self.enc.finish()
        assert done.sha256 == self.entry.sha256
        self.store[self.entry.id] = (self.key, self.out)

    def abort(self) -> None:
        self.aborted = True
        self.store.pop(self.entry.id, None)


def device_side(
    hq: BoxPrivateKey, device: DeviceSigningKey, contents: dict[str, bytes]
) -> tuple[Manifest, bytes]:
    """A testimony with a real signed chain and attachments encrypted at rest."""
    tid = "0123456789abcdefghjk"
    revisions = []
    parent = GENESIS
    for seq, text in enumerate(['{"v":1}', '{"v":2,"text":"اختفى ابني"}'], start=1):
        r = make_revision(device, tid, seq, parent, text.encode())
        parent = r.hash
        revisions.append(
            RevisionEntry(
                seq,
                r.parent_hash,
                r.hash,
                r.device.raw,
                r.signature,
                r.payload,
                "2024-05-01T10:00:00",
            )
        )
    at_rest: dict[str, tuple[FileKey, bytes]] = {}
    entries = []
    for aid, data in contents.items():
        key = FileKey.generate()
        blob = io.BytesIO()
        done = encrypt_file(io.BytesIO(data), blob, key)
        at_rest[aid] = (key, blob.getvalue())
        entries.append(AttachmentEntry(aid, done.size, done.sha256))
    m = replace(
        small_manifest(revisions=tuple(revisions), attachments=tuple(entries)),
        identities=(IdentityEntry("W-7", b"\x01" * 80),),
    )

    def open_attachment(entry: AttachmentEntry) -> AttachmentStream:
        key, blob = at_rest[entry.id]
        return DecryptingReader(io.BytesIO(blob), key)

    out = io.BytesIO()
    with io.BufferedReader(PayloadSource(m, open_attachment)) as src:
        seal_bundle(src, out, recipient=hq.public_key, device=device)
    return m, out.getvalue()


def test_end_to_end_seal_and_open() -> None:
    hq, device = BoxPrivateKey.generate(), DeviceSigningKey.generate()
    contents = {"a" * 20: bytes(range(256)) * 700, "b" * 20: b"", "c" * 20: b"audio" * 33}
    m, blob = device_side(hq, device, contents)
    assert b"W-7" not in blob

    store: dict[str, tuple[FileKey, io.BytesIO]] = {}
    seen: list[Manifest] = []

    def trusts(d: DeviceVerifyKey) -> bool:
        return d == device.public_key

    reader = PayloadReader(
        on_manifest=seen.append, new_attachment=lambda e: EncryptingWriter(e, store)
    )
    opened = open_bundle(io.BytesIO(blob), [hq], reader, trusts_device=trusts)
    got = reader.close()
    assert got == m == seen[0]
    assert opened.device == device.public_key
    verify_chain([r.to_revision(got.testimony_id) for r in got.revisions], got.testimony_id)
    for aid, data in contents.items():
        key, out = store[aid]
        plain = DecryptingReader(io.BytesIO(out.getvalue()), key).read()
        assert plain == data


def test_end_to_end_tampered_bundle_aborts_every_writer() -> None:
    hq, device = BoxPrivateKey.generate(), DeviceSigningKey.generate()
    contents = {"a" * 20: b"x" * 200_000, "b" * 20: b"y" * 10}
    _, blob = device_side(hq, device, contents)
    damaged = bytearray(blob)
    damaged[-5] ^= 1  # in the last chunk: the first attachment has been written by then
    store: dict[str, tuple[FileKey, io.BytesIO]] = {}
    writers: list[EncryptingWriter] = []

    def new_attachment(e: AttachmentEntry) -> EncryptingWriter:
        writers.append(EncryptingWriter(e, store))
        return writers[-1]

    reader = PayloadReader(on_manifest=lambda _m: None, new_attachment=new_attachment)
    with pytest.raises(BundleError):
        open_bundle(io.BytesIO(bytes(damaged)), [hq], reader, trusts_device=lambda _d: True)
    assert writers and all(w.aborted for w in writers)
    assert store == {}
    with pytest.raises(PayloadError):
        reader.close()


def test_payload_is_plain_bytes_sink_compatible() -> None:
    """A payload opened into a BytesSink is exactly what PayloadSource produced."""
    hq, device = BoxPrivateKey.generate(), DeviceSigningKey.generate()
    m, contents, data = two_attachments()
    out = io.BytesIO()
    seal_bundle(io.BufferedReader(source(m, contents)), out, recipient=hq.public_key, device=device)
    sink = BytesSink()
    open_bundle(io.BytesIO(out.getvalue()), [hq], sink, trusts_device=lambda _d: True)
    assert sink.getvalue() == data
