"""Incident dates with partial precision: tables of valid and invalid text, then hypothesis."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldapp.domain import IncidentDate, PartialDate, ValidationError, ascii_digits
from fieldapp.domain.dates import DATE_HINT

from .strategies import incident_dates, partial_dates

D = date

VALID = [
    # text, earliest, latest
    ("2016", D(2016, 1, 1), D(2016, 12, 31)),
    ("2016-12", D(2016, 12, 1), D(2016, 12, 31)),
    ("2016-02", D(2016, 2, 1), D(2016, 2, 29)),
    ("2015-02", D(2015, 2, 1), D(2015, 2, 28)),
    ("2016-12-09", D(2016, 12, 9), D(2016, 12, 9)),
    ("2016-02-29", D(2016, 2, 29), D(2016, 2, 29)),
    ("2000-02-29", D(2000, 2, 29), D(2000, 2, 29)),
    ("1900", D(1900, 1, 1), D(1900, 12, 31)),
    ("2100-12-31", D(2100, 12, 31), D(2100, 12, 31)),
    ("2016-12/2017-01-15", D(2016, 12, 1), D(2017, 1, 15)),
    ("2016/2018", D(2016, 1, 1), D(2018, 12, 31)),
    ("2016-12-09/2016-12-10", D(2016, 12, 9), D(2016, 12, 10)),
    ("2016/2016-05", D(2016, 1, 1), D(2016, 5, 31)),  # some time in 2016, ended by May
    ("2016-12-20/2016-12", D(2016, 12, 20), D(2016, 12, 31)),  # the end can follow the start
]


@pytest.mark.parametrize(("text", "earliest", "latest"), VALID, ids=[v[0] for v in VALID])
def test_valid_dates_parse_and_print_back(text: str, earliest: date, latest: date) -> None:
    parsed = IncidentDate.parse(text)
    assert str(parsed) == text
    assert parsed.earliest() == earliest
    assert parsed.latest() == latest


INVALID = {
    "empty": "",
    "two-digit year": "16",
    "one-digit month": "2016-1",
    "month 13": "2016-13",
    "month 00": "2016-00",
    "day 00": "2016-12-00",
    "30 February": "2016-02-30",
    "29 February, no leap year": "2015-02-29",
    "1900 was no leap year": "1900-02-29",
    "year before 1900": "1899",
    "year after 2100": "2101",
    "leading space": " 2016",
    "trailing newline": "2016\n",
    "time of day": "2016-12-09T10:00",
    "slashes": "09/12/2016",
    "open end": "2016/",
    "open start": "/2016",
    "three parts": "2016/2017/2018",
    "double slash": "2016//2017",
    "end wholly before start": "2017/2016-12",
    "end day before start day": "2016-12-10/2016-12-09",
    "end month before start day": "2016-12-01/2016-11",
    "same start and end": "2016-12/2016-12",
    "abbreviated ISO end": "2016-12-09/15",
    "open ISO end": "2016/..",
    "fullwidth digits": "\uff12\uff10\uff11\uff16",
    "arabic-indic digits": "\u0662\u0660\u0661\u0666",
    "words": "winter 2016",
    "very long": "2016-" * 100,
}


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_invalid_dates_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        IncidentDate.parse(text, field="incident_date")
    (problem,) = caught.value.problems
    assert problem.field == "incident_date"
    assert "\n" not in caught.value.message


def test_unreadable_text_gets_the_syntax_hint_and_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        IncidentDate.parse("when Khalid was taken", field="incident_date")
    assert DATE_HINT in caught.value.message
    assert "use YYYY, YYYY-MM, YYYY-MM-DD or START/END" in caught.value.message
    assert "Khalid" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2016-02-30", "is not a real calendar date"),
        ("2016-13", "the month must be 01 to 12"),
        ("1850", "the year must be between 1900 and 2100"),
        ("2017/2016", "the end of the range is before its start"),
        ("2016/2016", "write the date once"),
        ("2016/2017-02-30", "is not a real calendar date (in the end of the range)"),
    ],
)
def test_messages_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        IncidentDate.parse(text)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2016, None, 9), "a day needs a month"),
        ((2016, 2, 30), "is not a real calendar date"),
        ((True,), "the year must be between"),
        ((2016, 0), "the month must be 01 to 12"),
    ],
)
def test_partial_date_constructor_checks_too(args: tuple[int | None, ...], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PartialDate(*args)  # type: ignore[arg-type]
    assert message in caught.value.message


def test_partial_date_parse_refuses_ranges() -> None:
    assert PartialDate.parse("2016-12").precision == "month"
    with pytest.raises(ValidationError):
        PartialDate.parse("2016/2017", field="consent.taken_on")


def test_overlaps_is_inclusive_and_uses_the_whole_possible_span() -> None:
    december = IncidentDate.parse("2016-12")
    assert december.overlaps(D(2016, 12, 31), D(2017, 1, 5))
    assert december.overlaps(D(2016, 11, 1), D(2016, 12, 1))
    assert not december.overlaps(D(2017, 1, 1), D(2017, 2, 1))


@given(incident_dates())
def test_round_trip_of_generated_dates(value: IncidentDate) -> None:
    text = str(value)
    assert IncidentDate.parse(text) == value
    assert str(IncidentDate.parse(text)) == text
    assert value.earliest() <= value.latest()


@given(partial_dates())
def test_partial_date_spans_are_consistent(value: PartialDate) -> None:
    assert PartialDate.parse(str(value)) == value
    assert value.earliest() <= value.latest()
    assert PartialDate.parse(str(value)).earliest().year == value.year


NEAR_VALID = st.from_regex(
    r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?(/[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)?", fullmatch=True
)


@given(st.one_of(st.text(), NEAR_VALID))
def test_any_text_parses_to_its_canonical_self_or_raises_validation_error(text: str) -> None:
    try:
        parsed = IncidentDate.parse(text)
    except ValidationError as e:
        assert e.problems[0].field == "incident_date"
        return
    assert str(parsed) == text  # accepted text is always canonical: one text per date
    assert parsed.earliest() <= parsed.latest()


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("\u0662\u0660\u0661\u0666-\u0661\u0662", "2016-12"),  # Arabic-Indic
        ("\u06f2\u06f0\u06f1\u06f6", "2016"),  # Extended Arabic-Indic (Persian, Kurdish)
        ("\uff12\uff10\uff11\uff16/2017", "2016/2017"),  # fullwidth
    ],
)
def test_ascii_digits_lets_the_ui_accept_any_keyboard(typed: str, canonical: str) -> None:
    with pytest.raises(ValidationError):
        IncidentDate.parse(typed)
    assert str(IncidentDate.parse(ascii_digits(typed))) == canonical
