"""The relay's parsers of untrusted text, property-tested (no relay process needed).

Every parser either gives a well-formed value or raises the one refusal it
documents; nothing else escapes (an escape would be a 500 on the wire).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.relay import ids
from sync.relay.errors import BadRequest, NotFound, RangeNotSatisfiable, RelaySetupError
from sync.relay.routes import byte_range
from sync.relay.settings import RelaySettings, parse_settings, settings_document
from sync.relay.tokens import Role, TokenBook, new_token
from sync.relay.uploadroutes import metadata_id

HEX_IDS = st.binary(min_size=0, max_size=64).map(lambda b: hashlib.sha256(b).hexdigest())
UPLOAD, HQ = new_token(), new_token()
BOOK = TokenBook.from_tokens(UPLOAD, HQ)


@given(st.text(max_size=30))
def test_parse_uint_is_plain_decimal_or_none(text: str) -> None:
    value = ids.parse_uint(text)
    if value is None:
        return
    assert 0 <= value <= ids.MAX_INT
    assert str(value) == text


@given(st.integers(min_value=0, max_value=ids.MAX_INT))
def test_parse_uint_reads_what_str_writes(value: int) -> None:
    assert ids.parse_uint(str(value)) == value


@given(st.text(max_size=80))
def test_blob_ids_are_64_lowercase_hex_or_not_found(text: str) -> None:
    try:
        assert ids.blob_id(text) == text
    except NotFound:
        assert not (len(text) == 64 and all(c in "0123456789abcdef" for c in text))


@given(HEX_IDS)
def test_metadata_round_trip(hex_id: str) -> None:
    header = "sha256 " + base64.b64encode(hex_id.encode()).decode()
    assert metadata_id(header) == hex_id


@given(st.one_of(st.none(), st.text(max_size=200), st.builds(lambda s: "sha256 " + s, st.text())))
def test_metadata_is_an_id_or_bad_request(header: str | None) -> None:
    try:
        found = metadata_id(header)
    except BadRequest:
        return
    assert ids.is_blob_id(found)


@given(st.one_of(st.none(), st.text(max_size=60)), st.integers(min_value=1, max_value=10**12))
def test_ranges_are_inside_the_blob(header: str | None, size: int) -> None:
    try:
        wanted = byte_range(header, size)
    except RangeNotSatisfiable as e:
        assert e.headers == {"Content-Range": f"bytes */{size}"}
        return
    if wanted is not None:
        first, last = wanted
        assert 0 <= first <= last < size


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-", 10, (0, 9)),
        ("bytes=4-", 10, (4, 9)),
        ("bytes=4-6", 10, (4, 6)),
        ("bytes=4-600", 10, (4, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: ignored, the whole blob
        ("items=0-", 10, None),
        ("bytes=6-4", 10, None),
        (None, 10, None),
    ],
)
def test_range_examples(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=11-20", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 10)


@given(st.one_of(st.none(), st.text(max_size=300)), st.sampled_from(Role))
def test_random_authorization_headers_are_refused(header: str | None, role: Role) -> None:
    assert not BOOK.allows(header, role)


def test_token_roles() -> None:
    assert BOOK.allows(f"Bearer {UPLOAD}", Role.UPLOAD)
    assert not BOOK.allows(f"Bearer {UPLOAD}", Role.HQ)
    assert BOOK.allows(f"Bearer {HQ}", Role.UPLOAD)
    assert BOOK.allows(f"bearer {HQ}", Role.HQ)  # the scheme is case-insensitive (RFC 9110)
    assert not BOOK.allows(f"Bearer {HQ} ", Role.HQ)
    assert not BOOK.allows(HQ, Role.HQ)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=25), inner),
    max_leaves=12,
)
KEYS = list(settings_document(RelaySettings(data_dir=Path()))["settings"])  # type: ignore[call-overload]


@given(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5))
def test_settings_files_parse_or_are_refused(values: dict[str, object]) -> None:
    raw = json.dumps({"format": "fieldapp-relay", "version": 1, "settings": values}).encode()
    try:
        settings = parse_settings(Path("/data"), raw)
    except RelaySetupError:
        return
    assert settings.max_patch_bytes >= 1
    assert settings.blob_max_age.total_seconds() >= 0


@given(st.binary(max_size=200))
def test_garbage_settings_files_are_refused_cleanly(raw: bytes) -> None:
    with contextlib.suppress(RelaySetupError):
        parse_settings(Path("/data"), raw)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("blob_max_age_days", "1e300"),
        ("blob_max_age_days", "Infinity"),
        ("max_patch_bytes", "1.5"),
        ("max_patch_bytes", "0"),
        ("max_pending_uploads", "99999999999999999999999"),
        ("body_timeout_seconds", "0"),
        ("sweep_interval_seconds", "NaN"),
        ("max_headers", "true"),
        ("max_headers", '"64"'),
        ("max_headers", "-1"),
    ],
)
def test_settings_out_of_range(key: str, value: str) -> None:
    raw = f'{{"format": "fieldapp-relay", "version": 1, "settings": {{"{key}": {value}}}}}'
    with pytest.raises(RelaySetupError, match=key):
        parse_settings(Path("/data"), raw.encode())


def test_the_written_settings_read_back_as_the_defaults() -> None:
    defaults = RelaySettings(data_dir=Path("/data"))
    raw = json.dumps(settings_document(defaults)).encode()
    assert parse_settings(Path("/data"), raw) == defaults
