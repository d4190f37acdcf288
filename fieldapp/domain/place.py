"""Places: what the witness called it, and coordinates as canonical decimal strings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final, Literal

from fieldapp.domain._text import field_text
from fieldapp.domain.errors import Problems, ValidationError

Axis = Literal["latitude", "longitude"]
_COORD_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,2})(?:\.[0-9]{1,7})?")
_COORD_LIMIT: Final = {"latitude": Decimal(90), "longitude": Decimal(180)}
_COORD_PLACES: Final = Decimal("1e-7")  # about a centimetre; more is noise from float maths


def parse_coordinate(text: str, axis: Axis) -> str:
    """A typed coordinate in canonical form: ``" +033.50 "`` -> ``"33.50"``.

    Accepts surrounding space, a leading ``+``, leading zeros, and rounds to 7
    decimal places; raises ValidationError naming ``axis``. Trailing zeros are kept:
    they say how precise the reading was.
    """
    hint = "must be decimal degrees such as 33.3152 (north and east positive)"
    candidate = text.strip().removeprefix("+") if isinstance(text, str) else ""
    if not candidate.isascii() or not re.fullmatch(r"-?[0-9]+(?:\.[0-9]+)?", candidate):
        raise ValidationError.single(axis, hint)
    try:
        value = Decimal(candidate)
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -7:
            value = value.quantize(_COORD_PLACES, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as e:
        raise ValidationError.single(axis, hint) from e
    canonical = format(value, "f")
    if canonical.startswith("-") and value == 0:
        canonical = canonical[1:]
    problem = _coordinate_problem(canonical, axis)
    if problem is not None:
        raise ValidationError.single(axis, problem)
    return canonical


def _coordinate_problem(value: str, axis: Axis) -> str | None:
    if not isinstance(value, str) or not _COORD_RE.fullmatch(value):
        return "must be decimal degrees in canonical form, such as 33.3152"
    number = Decimal(value)
    if value.startswith("-") and number == 0:
        return "must not be minus zero"
    limit = _COORD_LIMIT[axis]
    if not -limit <= number <= limit:
        return f"must be between -{limit} and {limit}"
    return None


@dataclass(frozen=True, slots=True)
class Place:
    """A place as the witness described it, with coordinates if known.

    Coordinates are decimal strings (``"33.3152"``), so the canonical JSON never
    holds a float; ``parse_coordinate`` turns typed text into that form.
    """

    text: str = field(default="", repr=False)
    latitude: str | None = None
    longitude: str | None = None

    def __post_init__(self) -> None:
        problems = Problems()
        field_text(problems, "text", self.text, required=False)
        if (self.latitude is None) != (self.longitude is None):
            problems.add("latitude", "give both latitude and longitude, or neither")
        axes: tuple[tuple[Axis, str | None], ...] = (
            ("latitude", self.latitude),
            ("longitude", self.longitude),
        )
        for axis, value in axes:
            problem = None if value is None else _coordinate_problem(value, axis)
            if problem is not None:
                problems.add(axis, problem)
        if not problems and not self.text.strip() and self.latitude is None:
            problems.add("text", "describe the place or give its coordinates")
        problems.raise_if_any()

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None
