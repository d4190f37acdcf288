"""The canonical JSON: exact round trips (Arabic included), a pinned encoding, strict reading.

Functions are called through the module (``codec.testimony_to_json``): pytest would
collect a bare imported name starting with "test" as a test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import unicodedata
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldapp.domain import (
    AttachmentRef,
    Consent,
    ConsentScope,
    IncidentDate,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    ValidationError,
    Victims,
    canonical_bytes,
    codec,
)

from .strategies import any_text, identities, valid_testimonies

# Arabic with harakat (fatha, kasra, damma, shadda, sukun, tanwin), tatweel, a
# left-to-right checkpoint name and number inside right-to-left text, explicit
# RLM/LRM marks and isolates, ZWNJ, Arabic-Indic digits, and a decomposed "é".
NARRATIVE = (
    "قالَتْ: «أَخَذُوا زَوْجِي عِنْدَ حاجِزِ \u2066Checkpoint 7 (Route M4)\u2069 "
    "يَوْمَ ٩ كانون الأوّل ٢٠١٦» \u200fـــ ثم اختفى.\u200e\n"
    "Rene\u0301 said: \u202bهم كانوا ثلاثة\u202c, plate ABC-123.\u200c\r\n\tEnd"
)


def _testimony() -> Testimony:
    return Testimony(
        recorded_by="00112233445566778899aabbccddeeff",
        taken_at=datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=3))),
        taken_place=Place("فندق في أربيل", "36.1911", "44.0091"),
        language="ar",
        narrative=NARRATIVE,
        incident_date=IncidentDate.parse("2016-12/2017-01-15"),
        incident_place=Place("حاجز ٧"),
        violations=("enforced-disappearance", "arbitrary-detention"),
        perpetrators=(Perpetrator("ثلاثة رجال بزي عسكري", "unknown"),),
        victims=Victims(1, ("زوج الشاهدة، ٣٤ سنة",)),
        source_type=SourceType.DIRECT_WITNESS,
        reliability=Reliability.HIGH,
        witness_code="W-7KQ3-M2XA",
        consent=Consent(
            frozenset({ConsentScope.RE_CONTACT, ConsentScope.ANONYMOUS_PUBLICATION}),
            "M-12",
            date(2024, 5, 1),
        ),
        attachments=(AttachmentRef("att_01", "صورة.jpg", "image/jpeg", 52311, "ab" * 32),),
        status=Status.READY,
    )


# The exact bytes of _testimony(): revisions sign these, so any change to the
# encoding must be deliberate (a new schema number), never a side effect.
EXPECTED = (
    '{"attachments":[{"attachment_id":"att_01","filename":"صورة.jpg","media_type":"image/jpeg",'
    '"sha256":"' + "ab" * 32 + '","size":52311}],'
    '"consent":{"scopes":["anonymous-publication","re-contact"],"taken_by":"M-12",'
    '"taken_on":"2024-05-01","withdrawn_on":null},'
    '"incident_date":"2016-12/2017-01-15",'
    '"incident_place":{"latitude":null,"longitude":null,"text":"حاجز ٧"},'
    '"language":"ar",'
    '"narrative":' + json.dumps(NARRATIVE, ensure_ascii=False) + ","
    '"perpetrators":[{"affiliation":"unknown","description":"ثلاثة رجال بزي عسكري"}],'
    '"recorded_by":"00112233445566778899aabbccddeeff","reliability":"high","schema":1,'
    '"source_type":"direct-witness","status":"ready","taken_at":"2024-05-01T14:30+03:00",'
    '"taken_place":{"latitude":"36.1911","longitude":"44.0091","text":"فندق في أربيل"},'
    '"victims":{"count":1,"descriptions":["زوج الشاهدة، ٣٤ سنة"]},'
    '"violations":["arbitrary-detention","enforced-disappearance"],'
    '"witness_code":"W-7KQ3-M2XA"}'
).encode("utf-8")


def test_canonical_bytes_are_pinned() -> None:
    assert canonical_bytes(_testimony()) == EXPECTED


def test_arabic_narrative_round_trips_byte_for_byte() -> None:
    data = canonical_bytes(_testimony())
    assert NARRATIVE.splitlines()[0].encode("utf-8") in data  # raw UTF-8, not escaped
    back = codec.testimony_from_bytes(data)
    assert back == _testimony()
    assert back.narrative == NARRATIVE
    assert back.narrative.encode("utf-8") == NARRATIVE.encode("utf-8")


def test_text_is_never_normalised() -> None:
    nfd, nfc = "Rene\u0301 أُ", unicodedata.normalize("NFC", "Rene\u0301 أُ")
    assert nfd != nfc
    for text in (nfd, nfc):
        t = dataclasses.replace(_testimony(), narrative=text)
        assert codec.testimony_from_bytes(canonical_bytes(t)).narrative == text


def test_utc_is_written_plus_zero_and_offsets_are_kept() -> None:
    utc = datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)  # noqa: UP017 - both spellings
    kabul = datetime(2024, 1, 1, 4, 30, tzinfo=timezone(timedelta(hours=4, minutes=30)))
    assert codec.format_taken_at(utc) == "2024-01-01T00:00+00:00"
    assert codec.format_taken_at(kabul) == "2024-01-01T04:30+04:30"
    west = datetime(2024, 1, 1, 0, 0, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert codec.format_taken_at(west) == "2024-01-01T00:00-03:30"


def test_no_floats_no_spaces_no_ascii_escapes() -> None:
    text = canonical_bytes(_testimony()).decode("utf-8")
    escaped_narrative = json.dumps(NARRATIVE, ensure_ascii=False)
    assert escaped_narrative in text
    assert ": " not in text.replace(escaped_narrative, "")
    assert "\\u06" not in text
    json.loads(text, parse_float=_fail)


def _fail(_: str) -> None:
    raise AssertionError("a float in the canonical JSON")


@given(valid_testimonies())
def test_round_trip_of_generated_testimonies(t: Testimony) -> None:
    obj = codec.testimony_to_json(t)
    back = codec.testimony_from_json(obj)
    assert back == t
    assert back.taken_at.utcoffset() == t.taken_at.utcoffset()  # == compares instants only
    data = canonical_bytes(t)
    assert canonical_bytes(back) == data
    assert codec.testimony_from_bytes(data) == t
    assert json.loads(data) == obj


def test_to_json_refuses_a_testimony_without_canonical_form() -> None:
    bad = dataclasses.replace(_testimony(), language="Arabic", narrative="\ud800")
    with pytest.raises(ValidationError) as caught:
        canonical_bytes(bad)
    assert [p.field for p in caught.value.problems] == ["language", "narrative"]


# ---------------------------------------------------------------- strict reading


def _set(path: str, value: object) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(codec.testimony_to_json(_testimony()))
    *parents, last = path.split(".")
    target: Any = obj
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return obj


_DELETE = object()

MUTATIONS: dict[str, tuple[str, object, str]] = {
    # name: (path, new value, field named in the error)
    "schema 2": ("schema", 2, "schema"),
    "schema true": ("schema", True, "schema"),
    "schema text": ("schema", "1", "schema"),
    "missing key": ("witness_code", _DELETE, "record"),
    "extra key": ("note", "x", "record"),
    "narrative a list": ("narrative", ["x"], "narrative"),
    "narrative with lone surrogate": ("narrative", "a\udc00", "narrative"),
    "taken_at without offset": ("taken_at", "2024-05-01T14:30", "taken_at"),
    "taken_at with seconds": ("taken_at", "2024-05-01T14:30:00+03:00", "taken_at"),
    "taken_at Z": ("taken_at", "2024-05-01T14:30Z", "taken_at"),
    "taken_at minus zero": ("taken_at", "2024-05-01T14:30-00:00", "taken_at"),
    "taken_at hour 24": ("taken_at", "2024-05-01T24:00+03:00", "taken_at"),
    "taken_at offset 15h": ("taken_at", "2024-05-01T14:30+15:00", "taken_at"),
    "taken_at offset 99 minutes": ("taken_at", "2024-05-01T14:30+00:99", "taken_at"),
    "violations unsorted": ("violations", ["torture", "abduction"], "violations"),
    "violations repeated": ("violations", ["torture", "torture"], "violations"),
    "violation not a code": ("violations", ["Torture"], "violations[0]"),
    "incident date reversed": ("incident_date", "2017/2016", "incident_date"),
    "incident date as number": ("incident_date", 2016, "incident_date"),
    "latitude as number": ("taken_place.latitude", 36, "taken_place.latitude"),
    "latitude not canonical": ("taken_place.latitude", "036.1911", "taken_place.latitude"),
    "place extra key": ("taken_place.accuracy", "5", "taken_place"),
    "perpetrator missing key": ("perpetrators.0.affiliation", _DELETE, "perpetrators[0]"),
    "victim count as text": ("victims.count", "1", "victims.count"),
    "victim count negative": ("victims.count", -1, "victims.count"),
    "victim count true": ("victims.count", True, "victims.count"),
    "source type unknown": ("source_type", "rumour", "source_type"),
    "status unknown": ("status", "deleted", "status"),
    "status upper case": ("status", "READY", "status"),
    "witness code lower case": ("witness_code", "w-7kq3-m2xa", "witness_code"),
    "consent scopes unsorted": (
        "consent.scopes",
        ["re-contact", "anonymous-publication"],
        "consent.scopes",
    ),
    "consent unknown scope": ("consent.scopes", ["everything"], "consent.scopes[0]"),
    "consent date short": ("consent.taken_on", "2024-5-1", "consent.taken_on"),
    "consent date compact": ("consent.taken_on", "20240501", "consent.taken_on"),
    "consent withdrawn before": ("consent.withdrawn_on", "2024-04-01", "consent.withdrawn_on"),
    "attachment size float": ("attachments.0.size", 1.0, "attachments[0].size"),
    "attachment size bool": ("attachments.0.size", False, "attachments[0].size"),
    "attachment id path": ("attachments.0.attachment_id", "../x", "attachments[0].attachment_id"),
    "attachment not an object": ("attachments.0", "x", "attachments[0]"),
}


@pytest.mark.parametrize(("path", "value", "field"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_mutated_records_are_refused_naming_the_field(path: str, value: object, field: str) -> None:
    obj = _set(path, value)
    with pytest.raises(ValidationError) as caught:
        codec.testimony_from_json(obj)
    assert field in [p.field for p in caught.value.problems]
    assert "Yasmin" not in caught.value.message
    assert NARRATIVE[:10] not in caught.value.message


def test_a_repeated_attachment_is_refused() -> None:
    obj: Any = codec.testimony_to_json(_testimony())
    obj["attachments"].append(obj["attachments"][0])
    with pytest.raises(ValidationError) as caught:
        codec.testimony_from_json(obj)
    assert [p.field for p in caught.value.problems] == ["attachments"]


def test_several_bad_fields_are_reported_together() -> None:
    obj = _set("status", "deleted")
    obj["language"] = 5
    obj["victims"]["count"] = -2
    with pytest.raises(ValidationError) as caught:
        codec.testimony_from_json(obj)
    assert [p.field for p in caught.value.problems] == ["language", "victims.count", "status"]


def test_a_newer_schema_asks_for_an_update() -> None:
    with pytest.raises(ValidationError, match="newer fieldapp"):
        codec.testimony_from_json(_set("schema", 2))


def test_unexpected_keys_are_counted_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        codec.testimony_from_json(_set("Ahmad Saleh's phone", "+964"))
    assert "Ahmad" not in caught.value.message
    assert "1 unexpected field" in caught.value.message


BAD_BYTES: dict[str, bytes] = {
    "not canonical: spaces": json.dumps(codec.testimony_to_json(_testimony())).encode(),
    "not canonical: ascii escapes": json.dumps(
        codec.testimony_to_json(_testimony()), sort_keys=True, separators=(",", ":")
    ).encode(),
    "trailing newline": EXPECTED + b"\n",
    "byte order mark": b"\xef\xbb\xbf" + EXPECTED,
    "duplicate key": EXPECTED[:-1] + b',"status":"draft"}',
    "invalid utf-8": EXPECTED.replace("فندق".encode(), b"\xff\xfe"),
    "nan": b'{"schema":NaN}',
    "float": b'{"schema":1.0}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "too large": b" " * (codec.MAX_RECORD_BYTES + 1),
    "empty": b"",
    "a list": b"[]",
}


@pytest.mark.parametrize("data", BAD_BYTES.values(), ids=BAD_BYTES.keys())
def test_bad_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ValidationError):
        codec.testimony_from_bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_arbitrary_json_raises_only_validation_error(obj: object) -> None:
    with pytest.raises(ValidationError):
        codec.testimony_from_json(obj)


@given(valid_testimonies(narratives=st.just("n")), st.data())
def test_randomly_mutated_records_decode_or_raise_validation_error(
    t: Testimony, data: st.DataObject
) -> None:
    obj: Any = codec.testimony_to_json(t)
    target = obj
    while True:  # walk down to a random container
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(target[key], (dict, list)) and data.draw(st.booleans()):
            target = target[key]
            continue
        target[key] = data.draw(JSON_VALUES)
        break
    try:
        back = codec.testimony_from_json(obj)
    except ValidationError:
        return
    assert codec.testimony_to_json(back) == obj  # if it decodes, it is canonical


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_validation_error(data: bytes) -> None:
    with pytest.raises(ValidationError):
        codec.testimony_from_bytes(data)


# ---------------------------------------------------------------- identity compartment


@given(identities)
def test_identity_round_trip(identity: ProtectedIdentity) -> None:
    assert codec.identity_from_json(codec.identity_to_json(identity)) == identity


def test_identity_reading_is_strict() -> None:
    good = codec.identity_to_json(ProtectedIdentity(name="أحمد"))
    for bad in ({**good, "schema": 2}, {**good, "phone": "1"}, {**good, "name": 7}, [good]):
        with pytest.raises(ValidationError) as caught:
            codec.identity_from_json(bad)
        assert "أحمد" not in caught.value.message


@given(any_text)
def test_any_narrative_survives_exactly(text: str) -> None:
    t = dataclasses.replace(_testimony(), narrative=text)
    assert codec.testimony_from_bytes(canonical_bytes(t)).narrative == text
