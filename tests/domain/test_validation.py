"""validate_testimony: every problem at once, each naming its field, none quoting testimony."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldapp.domain import (
    Consent,
    ConsentScope,
    IncidentDate,
    Perpetrator,
    Place,
    ProtectedIdentity,
    SourceType,
    Status,
    Term,
    Testimony,
    ValidationError,
    Victims,
    Vocabulary,
    structural_problems,
    validate_identity,
    validate_testimony,
    validation,
)
from fieldapp.domain.validation import NARRATIVE_MAX_BYTES

from .strategies import saveable_testimonies, valid_testimonies

VOCAB = Vocabulary.load_default()
CANARY = "Canary-Yasmin-Haddad-4471 قالت إنهم أخذوا زوجها"
CONSENT = Consent(frozenset({ConsentScope.ANONYMOUS_PUBLICATION}), "monitor 3", date(2024, 5, 1))


def _ok(**changes: Any) -> Testimony:
    base: dict[str, Any] = {
        "recorded_by": "0123456789abcdef" * 2,
        "taken_at": datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=3))),
        "taken_place": Place("Erbil"),
        "language": "ar",
        "narrative": CANARY,
        "violations": ("arbitrary-detention",),
        "consent": CONSENT,
        "status": Status.READY,
    }
    return Testimony(**(base | changes))


def _fields(t: Testimony, vocabulary: Vocabulary = VOCAB) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        validate_testimony(t, vocabulary)
    assert CANARY not in caught.value.message
    assert "Yasmin" not in caught.value.message
    assert "\n" not in caught.value.message
    return [p.field for p in caught.value.problems]


def test_a_complete_testimony_passes() -> None:
    validate_testimony(_ok(), VOCAB)
    assert validation.testimony_problems(_ok(), VOCAB) == ()  # qualified: pytest collects test*


def test_every_problem_is_reported_at_once() -> None:
    t = _ok(
        language="Arabic",
        narrative="  ",
        violations=("torture", "tortura"),
        consent=None,
        taken_at=datetime(2024, 5, 1, 14, 30, 15, tzinfo=UTC),
    )
    assert _fields(t) == [
        "taken_at",
        "language",
        "narrative",
        "violations[0]",
        "consent",
    ]  # sorted: tortura first


CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "device key id not hex": ({"recorded_by": "Z" * 32}, ["recorded_by"]),
    "device key id too short": ({"recorded_by": "ab"}, ["recorded_by"]),
    "naive time": ({"taken_at": datetime(2024, 5, 1, 14, 30)}, ["taken_at"]),
    "seconds": ({"taken_at": datetime(2024, 5, 1, 14, 30, 1, tzinfo=UTC)}, ["taken_at"]),
    "offset of 15 hours": (
        {"taken_at": datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=15)))},
        ["taken_at"],
    ),
    "offset with seconds": (
        {"taken_at": datetime(2024, 5, 1, tzinfo=timezone(timedelta(seconds=30)))},
        ["taken_at"],
    ),
    "language in words": ({"language": "Arabic"}, ["language"]),
    "language wrong case": ({"language": "AR"}, ["language"]),
    "language with underscore": ({"language": "ar_IQ"}, ["language"]),
    "lone surrogate": ({"narrative": "a\ud800b"}, ["narrative"]),
    "unknown code": ({"violations": ("torture", "zz-unknown")}, ["violations[1]"]),
    "malformed code": ({"violations": ("Torture",)}, ["violations[0]"]),
    "witness code not canonical": ({"witness_code": "w-7kq3-m2xa"}, ["witness_code"]),
    "empty narrative when ready": ({"narrative": "\n "}, ["narrative"]),
    "narrative over 1 MiB": ({"narrative": "ب" * (NARRATIVE_MAX_BYTES // 2 + 1)}, ["narrative"]),
    "no consent from a witness": ({"consent": None}, ["consent"]),
    "no consent for hearsay": ({"consent": None, "source_type": SourceType.HEARSAY}, ["consent"]),
    "incident after the interview": (
        {"incident_date": IncidentDate.parse("2024-05-02")},
        ["incident_date"],
    ),
    "place text too long": ({"taken_place": Place("x" * 1001)}, ["taken_place.text"]),
    "control character in affiliation": (
        {"perpetrators": (Perpetrator("men", "unit\x1b[31m"),)},
        ["perpetrators[0].affiliation"],
    ),
    "line break in affiliation": (
        {"perpetrators": (Perpetrator("men", "a\nb"),)},
        ["perpetrators[0].affiliation"],
    ),
    "victim count absurd": ({"victims": Victims(10_000_001)}, ["victims.count"]),
    "too many perpetrators": (
        {"perpetrators": (Perpetrator("x"),) * 501},
        ["perpetrators"],
    ),
    "wrong type": ({"status": "ready"}, ["status"]),
}


@pytest.mark.parametrize(("changes", "fields"), CASES.values(), ids=CASES.keys())
def test_each_rule_names_its_field(changes: dict[str, Any], fields: list[str]) -> None:
    assert _fields(_ok(**changes)) == fields


ALLOWED: dict[str, dict[str, Any]] = {
    "empty draft": {"narrative": "", "status": Status.DRAFT, "consent": None},
    "document needs no consent": {"consent": None, "source_type": SourceType.DOCUMENT},
    "narrative of exactly 1 MiB": {"narrative": "a" * NARRATIVE_MAX_BYTES},
    "narrative with control characters": {"narrative": "a\x00b\x1b\r\n\u2028"},
    "incident on the day of the interview": {"incident_date": IncidentDate.parse("2024-05")},
    "region and script tags": {"language": "ku-Arab-IQ"},
    "withdrawn consent can still be sent": {
        "consent": dataclasses.replace(CONSENT, withdrawn_on=date(2024, 6, 1)),
        "status": Status.SENT,
    },
}


@pytest.mark.parametrize("changes", ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed_edge_cases(changes: dict[str, Any]) -> None:
    validate_testimony(_ok(**changes), VOCAB)


def test_deprecated_codes_stay_valid_for_old_records() -> None:
    vocabulary = Vocabulary([Term("old-code", "Old", "test", deprecated=True)], {"en": "source"})
    validate_testimony(_ok(violations=("old-code",)), vocabulary)
    assert _fields(_ok(violations=("torture",)), vocabulary) == ["violations[0]"]


def test_structural_problems_are_the_codec_subset() -> None:
    assert structural_problems(_ok(consent=None, narrative="")) == ()
    assert [p.field for p in structural_problems(_ok(language="x"))] == ["language"]


def test_identity_limits() -> None:
    validate_identity(ProtectedIdentity("Name", "+964", "Street\nTown", "notes\n\tindented"))
    with pytest.raises(ValidationError) as caught:
        validate_identity(ProtectedIdentity(name="a\nb", notes="x" * 20_001))
    assert [p.field for p in caught.value.problems] == ["name", "notes"]


@given(saveable_testimonies())
def test_generated_saveable_testimonies_pass(t: Testimony) -> None:
    validate_testimony(t, VOCAB)


@given(valid_testimonies(narratives=st.just(CANARY)), st.sampled_from(["Arabic", "en-", "x"]))
def test_messages_never_quote_the_narrative(t: Testimony, language: str) -> None:
    bad = dataclasses.replace(t, language=language, violations=(*t.violations, "zz"))
    with pytest.raises(ValidationError) as caught:
        validate_testimony(bad, VOCAB)
    assert CANARY not in caught.value.message
    assert "language" in [p.field for p in caught.value.problems]
