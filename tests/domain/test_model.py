"""Value types and enums of the model: construction checks, consent, places, reprs."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, date, datetime
from typing import Any

import pytest

from fieldapp.domain import (
    ALLOWED_TRANSITIONS,
    AttachmentRef,
    Consent,
    ConsentScope,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    ValidationError,
    Victims,
    ascii_digits,
    can_transition,
    check_transition,
    parse_coordinate,
)

S = ConsentScope
CANARY = "Canary-Yasmin-Haddad-4471"
SHA = "ab" * 32


def _problem_fields(build: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        build()
    return [p.field for p in caught.value.problems]


# ---------------------------------------------------------------- enums and status


def test_enum_values_are_the_stored_strings() -> None:
    assert [s.value for s in Status] == ["draft", "ready", "sent", "confirmed"]
    assert [s.value for s in SourceType] == ["direct-witness", "hearsay", "document"]
    assert [r.value for r in Reliability] == ["high", "medium", "low", "unknown"]
    assert [c.value for c in ConsentScope] == [
        "internal-only",
        "anonymous-publication",
        "named-publication",
        "justice-mechanisms",
        "re-contact",
    ]


ALLOWED = {
    ("draft", "ready"),
    ("ready", "draft"),
    ("ready", "sent"),
    ("sent", "confirmed"),
    ("sent", "draft"),
    ("confirmed", "draft"),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(Status, Status)))
def test_transitions_are_exactly_the_documented_ones(old: Status, new: Status) -> None:
    allowed = (old.value, new.value) in ALLOWED
    assert can_transition(old, new) is allowed
    if allowed:
        check_transition(old, new)
    else:
        with pytest.raises(ValidationError) as caught:
            check_transition(old, new)
        assert caught.value.problems[0].field == "status"
        assert f"from {old.value} to {new.value}" in caught.value.message
    assert len(ALLOWED_TRANSITIONS) == len(ALLOWED)


# ---------------------------------------------------------------- consent

DAY = date(2024, 5, 1)


@pytest.mark.parametrize(
    "scopes",
    [
        {S.INTERNAL_ONLY},
        {S.INTERNAL_ONLY, S.RE_CONTACT},
        {S.ANONYMOUS_PUBLICATION},
        {S.NAMED_PUBLICATION, S.JUSTICE_MECHANISMS, S.RE_CONTACT},
        {S.NAMED_PUBLICATION, S.ANONYMOUS_PUBLICATION},
    ],
)
def test_consistent_scopes_are_accepted(scopes: set[ConsentScope]) -> None:
    assert Consent(frozenset(scopes), "monitor 3", DAY).scopes == scopes


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scopes": frozenset()}, "scopes"),
        ({"scopes": frozenset({S.INTERNAL_ONLY, S.ANONYMOUS_PUBLICATION})}, "scopes"),
        ({"scopes": frozenset({S.INTERNAL_ONLY, S.JUSTICE_MECHANISMS})}, "scopes"),
        ({"scopes": frozenset({"named-publication"})}, "scopes"),
        ({"taken_by": "  "}, "taken_by"),
        ({"taken_on": datetime(2024, 5, 1, tzinfo=UTC)}, "taken_on"),
        ({"taken_on": date(1899, 12, 31)}, "taken_on"),
        ({"withdrawn_on": date(2024, 4, 30)}, "withdrawn_on"),
    ],
)
def test_inconsistent_consent_is_refused(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "scopes": frozenset({S.ANONYMOUS_PUBLICATION}),
        "taken_by": "monitor 3",
        "taken_on": DAY,
    }
    assert _problem_fields(lambda: Consent(**(base | kwargs))) == [field]


def test_withdrawal_on_the_day_consent_was_taken_is_fine() -> None:
    assert Consent(frozenset({S.INTERNAL_ONLY}), "m", DAY, DAY).is_withdrawn


def test_named_publication_implies_anonymous_publication() -> None:
    named = Consent(frozenset({S.NAMED_PUBLICATION}), "m", DAY)
    assert named.allows(S.ANONYMOUS_PUBLICATION)
    assert named.allows(S.NAMED_PUBLICATION)
    assert not named.allows(S.JUSTICE_MECHANISMS)
    anonymous = Consent(frozenset({S.ANONYMOUS_PUBLICATION}), "m", DAY)
    assert not anonymous.allows(S.NAMED_PUBLICATION)


def test_withdrawn_consent_allows_nothing() -> None:
    consent = Consent(frozenset(S) - {S.INTERNAL_ONLY}, "m", DAY, date(2024, 6, 1))
    assert not any(consent.allows(scope) for scope in S)


# ---------------------------------------------------------------- places


@pytest.mark.parametrize(
    ("typed", "axis", "canonical"),
    [
        ("33.3152", "latitude", "33.3152"),
        (" +033.50 ", "latitude", "33.50"),
        ("-0.0", "longitude", "0.0"),
        ("-0.5", "longitude", "-0.5"),
        ("90", "latitude", "90"),
        ("-180", "longitude", "-180"),
        ("44.361488123456", "longitude", "44.3614881"),
        ("12.00000005", "latitude", "12.0000000"),  # half-even rounding at 7 places
        ("12.00000015", "latitude", "12.0000002"),
    ],
)
def test_parse_coordinate_gives_canonical_strings(typed: str, axis: Any, canonical: str) -> None:
    assert parse_coordinate(typed, axis) == canonical


@pytest.mark.parametrize(
    ("typed", "axis"),
    [
        ("90.0000001", "latitude"),
        ("-91", "latitude"),
        ("180.5", "longitude"),
        ("1e2", "latitude"),
        ("33,5", "latitude"),
        ("33.", "latitude"),
        (".5", "latitude"),
        ("NaN", "latitude"),
        ("Infinity", "longitude"),
        ("", "latitude"),
        ("\u0663\u0663.\u0665", "latitude"),  # Arabic-Indic digits: convert before calling
        ("33.5N", "latitude"),
    ],
)
def test_parse_coordinate_refuses_nonsense(typed: str, axis: Any) -> None:
    assert _problem_fields(lambda: parse_coordinate(typed, axis)) == [axis]


@pytest.mark.parametrize(
    ("lat", "lon", "fields"),
    [
        ("33.5", None, ["latitude"]),
        (None, "44.1", ["latitude"]),
        ("033.5", "44.1", ["latitude"]),
        ("+33.5", "44.1", ["latitude"]),
        ("-0", "44.1", ["latitude"]),
        ("33.12345678", "44.1", ["latitude"]),
        ("95", "190", ["latitude", "longitude"]),
    ],
)
def test_place_requires_canonical_coordinates_in_pairs(
    lat: str | None, lon: str | None, fields: list[str]
) -> None:
    assert _problem_fields(lambda: Place("x", lat, lon)) == fields


def test_place_needs_a_description_or_coordinates() -> None:
    assert Place("", "0", "0").has_coordinates
    assert not Place("near the mill").has_coordinates
    assert _problem_fields(lambda: Place("   ")) == ["text"]


# ---------------------------------------------------------------- other values


def test_perpetrator_and_victims_checks() -> None:
    assert _problem_fields(lambda: Perpetrator(" ")) == ["description"]
    assert _problem_fields(lambda: Victims(-1)) == ["count"]
    assert _problem_fields(lambda: Victims(count=True)) == ["count"]
    assert _problem_fields(lambda: Victims(2, ("man, 34", ""))) == ["descriptions[1]"]
    assert Victims(0).count == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attachment_id": "../../etc/passwd"}, "attachment_id"),
        ({"attachment_id": ""}, "attachment_id"),
        ({"filename": "a/b.jpg"}, "filename"),
        ({"filename": "a\\b.jpg"}, "filename"),
        ({"filename": "x" * 256}, "filename"),
        ({"media_type": "Image/JPEG"}, "media_type"),
        ({"media_type": "image/jpeg; q=1"}, "media_type"),
        ({"size": -1}, "size"),
        ({"size": False}, "size"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"sha256": "ab" * 31}, "sha256"),
    ],
)
def test_attachment_ref_checks(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "attachment_id": "a1",
        "filename": "photo.jpg",
        "media_type": "image/jpeg",
        "size": 10,
        "sha256": SHA,
    }
    AttachmentRef(**base)
    assert _problem_fields(lambda: AttachmentRef(**(base | kwargs))) == [field]


def test_protected_identity_emptiness() -> None:
    assert ProtectedIdentity().is_empty()
    assert ProtectedIdentity(name=" ", notes="\n").is_empty()
    assert not ProtectedIdentity(contact="+964 750 000 0000").is_empty()


def _testimony(**changes: Any) -> Testimony:
    base: dict[str, Any] = {
        "recorded_by": "0" * 32,
        "taken_at": datetime(2024, 5, 1, 14, 30, tzinfo=UTC),
        "taken_place": Place(CANARY),
        "language": "ar",
        "narrative": CANARY,
    }
    return Testimony(**(base | changes))


def test_violations_are_kept_sorted_and_unique() -> None:
    t = _testimony(violations=("torture", "abduction", "torture"))
    assert t.violations == ("abduction", "torture")
    assert dataclasses.replace(t, violations=("b", "a")).violations == ("a", "b")


def test_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _testimony().narrative = "changed"  # type: ignore[misc]


def test_reprs_never_show_free_text() -> None:
    values: list[object] = [
        _testimony(
            perpetrators=(Perpetrator(CANARY, CANARY),),
            victims=Victims(1, (CANARY,)),
            incident_place=Place(CANARY),
            consent=Consent(frozenset({S.INTERNAL_ONLY}), CANARY, DAY),
            attachments=(AttachmentRef("a", CANARY, "image/jpeg", 1, SHA),),
        ),
        ProtectedIdentity(CANARY, CANARY, CANARY, CANARY),
    ]
    for value in values:
        assert CANARY not in repr(value)
        assert CANARY not in str(value)


def test_arabic_coordinates_parse_after_ascii_digits() -> None:
    typed = (
        "\u0663\u0666\u066b\u0661\u0669\u0661\u0661"  # ٣٦٫١٩١١ with the Arabic decimal separator
    )
    assert parse_coordinate(ascii_digits(typed), "latitude") == "36.1911"
