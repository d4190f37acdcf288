"""Incident dates with partial precision: ``2016``, ``2016-12``, ``2016-12-09``, or a range.

Witnesses often remember "the winter of 2016" or "some day in December": the date
is recorded with the precision it really has, never padded to a made-up day. A
range is written ISO 8601 interval style, ``START/END``, each end at its own
precision (``2016-12/2017-01-15``). The text form is canonical: parsing accepts
exactly what ``str()`` produces, so ``str(IncidentDate.parse(s)) == s`` whenever
parsing succeeds.

A range is refused when its end lies wholly before its start, that is when the
latest day the end can mean is before the earliest day the start can mean
(``2016-12-20/2016-12`` is accepted: it started on the 20th and ended later that
month), and when start and end are the same (write the date once).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from fieldapp.domain.errors import ValidationError

YEAR_MIN: Final = 1900
YEAR_MAX: Final = 2100
DATE_HINT: Final = "use YYYY, YYYY-MM, YYYY-MM-DD or START/END (for example 2016-12/2017-01-15)"

_DATE_RE: Final = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
_MAX_TEXT: Final = 32  # the longest valid range is 21 characters

Precision = Literal["year", "month", "day"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _partial_problem(year: int, month: int | None, day: int | None) -> str | None:
    """What is wrong with these parts, or None. Checks types too: JSON and callers lie."""
    if not _is_int(year) or not YEAR_MIN <= year <= YEAR_MAX:
        return f"the year must be between {YEAR_MIN} and {YEAR_MAX}"
    if month is None:
        return None if day is None else "a day needs a month (use YYYY-MM-DD)"
    if not _is_int(month) or not 1 <= month <= 12:
        return "the month must be 01 to 12"
    if day is None:
        return None
    if not _is_int(day) or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return "is not a real calendar date"
    return None


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A calendar date known to the year, the month or the day."""

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        problem = _partial_problem(self.year, self.month, self.day)
        if problem is not None:
            raise ValidationError.single("date", problem)

    @classmethod
    def parse(cls, text: str, field: str = "date") -> PartialDate:
        """Parse ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; raise ValidationError naming ``field``."""
        result = _parse_partial(text)
        if isinstance(result, str):
            raise ValidationError.single(field, result)
        return result

    @property
    def precision(self) -> Precision:
        if self.month is None:
            return "year"
        return "month" if self.day is None else "day"

    def earliest(self) -> date:
        """The first day this date can mean."""
        return date(self.year, self.month or 1, self.day or 1)

    def latest(self) -> date:
        """The last day this date can mean."""
        if self.month is None:
            return date(self.year, 12, 31)
        last = calendar.monthrange(self.year, self.month)[1]
        return date(self.year, self.month, self.day or last)

    def __str__(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


def _parse_partial(text: str) -> PartialDate | str:
    """The date, or what is wrong with ``text`` (never quoting it)."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        return DATE_HINT
    match = _DATE_RE.fullmatch(text)
    if match is None:
        return DATE_HINT
    year, month, day = match.groups()
    parts = (int(year), None if month is None else int(month), None if day is None else int(day))
    problem = _partial_problem(*parts)
    if problem is not None:
        return problem
    return PartialDate(*parts)


@dataclass(frozen=True, slots=True)
class IncidentDate:
    """When an incident happened: one partial date, or a range of two."""

    start: PartialDate
    end: PartialDate | None = None

    def __post_init__(self) -> None:
        problem = _range_problem(self.start, self.end)
        if problem is not None:
            raise ValidationError.single("incident_date", problem)

    @classmethod
    def parse(cls, text: str, field: str = "incident_date") -> IncidentDate:
        """Parse a date or a ``START/END`` range; raise ValidationError naming ``field``."""
        if not isinstance(text, str) or len(text) > _MAX_TEXT:
            raise ValidationError.single(field, DATE_HINT)
        parts = text.split("/")
        if len(parts) > 2:
            raise ValidationError.single(field, DATE_HINT)
        parsed: list[PartialDate] = []
        for label, part in zip(("start", "end"), parts, strict=False):
            result = _parse_partial(part)
            if isinstance(result, str):
                where = "" if len(parts) == 1 else f" (in the {label} of the range)"
                raise ValidationError.single(field, result + where)
            parsed.append(result)
        first, end = parsed[0], (parsed[1] if len(parsed) == 2 else None)
        problem = _range_problem(first, end)
        if problem is not None:
            raise ValidationError.single(field, problem)
        return cls(first, end)

    def earliest(self) -> date:
        """The first day the incident can have happened on."""
        return self.start.earliest()

    def latest(self) -> date:
        """The last day the incident can have happened on."""
        return (self.end or self.start).latest()

    def overlaps(self, first: date, last: date) -> bool:
        """True if the incident can have happened between ``first`` and ``last`` inclusive."""
        return self.earliest() <= last and first <= self.latest()

    def __str__(self) -> str:
        return str(self.start) if self.end is None else f"{self.start}/{self.end}"


def _range_problem(start: PartialDate, end: PartialDate | None) -> str | None:
    if end is None:
        return None
    if end == start:
        return "the start and end of the range are the same; write the date once"
    if end.latest() < start.earliest():
        return "the end of the range is before its start"
    return None
