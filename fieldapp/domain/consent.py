"""Consent: what the witness agreed their testimony may be used for, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Final

from fieldapp.domain._text import field_text
from fieldapp.domain.dates import YEAR_MAX, YEAR_MIN
from fieldapp.domain.errors import Problems


class ConsentScope(StrEnum):
    """One use of the testimony the witness agreed to."""

    INTERNAL_ONLY = "internal-only"  # HQ analysis only; excludes every other use but re-contact
    ANONYMOUS_PUBLICATION = "anonymous-publication"
    NAMED_PUBLICATION = "named-publication"  # implies anonymous publication (see Consent.allows)
    JUSTICE_MECHANISMS = "justice-mechanisms"  # courts, commissions of inquiry, UN mechanisms
    RE_CONTACT = "re-contact"  # HQ or the monitor may contact the witness again


_SHARING: Final = frozenset(
    {
        ConsentScope.ANONYMOUS_PUBLICATION,
        ConsentScope.NAMED_PUBLICATION,
        ConsentScope.JUSTICE_MECHANISMS,
    }
)


def _real_date(value: object) -> bool:
    return (
        isinstance(value, date)
        and not isinstance(value, datetime)
        and YEAR_MIN <= value.year <= YEAR_MAX
    )


@dataclass(frozen=True, slots=True)
class Consent:
    """What the witness agreed to, who asked them, and when; and when they withdrew it, if so.

    A partial withdrawal is a new Consent with fewer scopes (in a new revision).
    """

    scopes: frozenset[ConsentScope]
    taken_by: str = field(repr=False)
    taken_on: date
    withdrawn_on: date | None = None

    def __post_init__(self) -> None:
        problems = Problems()
        if not isinstance(self.scopes, frozenset) or not self.scopes:
            problems.add("scopes", "name at least one use the witness agreed to")
        elif not all(isinstance(s, ConsentScope) for s in self.scopes):
            problems.add("scopes", "holds an unknown consent scope")
        elif ConsentScope.INTERNAL_ONLY in self.scopes and self.scopes & _SHARING:
            problems.add("scopes", "internal-only cannot be combined with publication or justice")
        field_text(problems, "taken_by", self.taken_by, required=True)
        if not _real_date(self.taken_on):
            problems.add("taken_on", f"must be a date between {YEAR_MIN} and {YEAR_MAX}")
        if self.withdrawn_on is not None:
            if not _real_date(self.withdrawn_on):
                problems.add("withdrawn_on", f"must be a date between {YEAR_MIN} and {YEAR_MAX}")
            elif _real_date(self.taken_on) and self.withdrawn_on < self.taken_on:
                problems.add("withdrawn_on", "is before the day consent was taken")
        problems.raise_if_any()

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn_on is not None

    def allows(self, scope: ConsentScope) -> bool:
        """True if the testimony may be used for ``scope`` now.

        Nothing is allowed once consent is withdrawn. Named publication allows
        anonymous publication too: it exposes the witness less.
        """
        if self.is_withdrawn:
            return False
        if scope is ConsentScope.ANONYMOUS_PUBLICATION:
            return bool(self.scopes & {scope, ConsentScope.NAMED_PUBLICATION})
        return scope in self.scopes
