"""The editor's form as plain values, and the one conversion to and from the domain.

No Textual and no storage: the editor reads its widgets into a ``TestimonyForm``
and ``build`` turns that into a Testimony and a ProtectedIdentity, or raises one
ValidationError listing every field at fault (parsing and the domain's own
rules together), so the screen can show them all on one line. Digits typed on
an Arabic keyboard are made ASCII before any date, number or coordinate is
parsed; free text is kept exactly as typed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

from fieldapp.domain import (
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
    Vocabulary,
    ascii_digits,
    parse_coordinate,
    testimony_problems,
    validate_identity,
)
from fieldapp.domain.errors import Problems

T = TypeVar("T")

NEW_LANGUAGE = "und"  # BCP 47 "undetermined", as `fieldapp record add` uses
TAKEN_AT_HINT = "use a date and time such as 2016-12-10 14:30 (an offset like +03:00 is optional)"
DAY_HINT = "use a date such as 2016-12-10"
# Only for checking the rest of a form whose own value did not parse; never saved.
_PLACEHOLDER_PLACE = Place("-")
_PLACEHOLDER_TAKEN_AT = datetime(2100, 12, 31, 23, 59, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TestimonyForm:
    """What the editor's widgets hold: text as typed, choices as values."""

    __test__ = False  # not a pytest test class, despite the name

    taken_at: str = ""
    taken_place: str = ""
    language: str = NEW_LANGUAGE
    narrative: str = ""
    incident_date: str = ""
    incident_place: str = ""
    incident_lat: str = ""
    incident_lon: str = ""
    violations: frozenset[str] = frozenset()
    perpetrators: str = ""  # one per line: "description | affiliation"
    victim_count: str = ""
    victim_descriptions: str = ""  # one per line
    source_type: SourceType = SourceType.DIRECT_WITNESS
    reliability: Reliability = Reliability.UNKNOWN
    no_witness: bool = False
    consent_scopes: frozenset[ConsentScope] = frozenset()
    consent_taken_on: str = ""
    consent_withdrawn_on: str = ""
    identity_name: str = ""
    identity_contact: str = ""
    identity_address: str = ""
    identity_notes: str = ""


@dataclass(frozen=True, slots=True)
class FormContext:
    """What a save needs besides the form: who records, and the stored record if any."""

    recorded_by: str
    witness_code: str  # the record's code, or a fresh one for "has a witness"
    vocabulary: Vocabulary
    base: Testimony | None = None  # the stored testimony: attachments, coordinates
    had_identity: bool = False  # an identity is stored: clearing the section clears it


def format_taken_at(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="minutes")


def format_perpetrators(perpetrators: tuple[Perpetrator, ...]) -> str:
    """One line each; the last '|' separates the affiliation, so a description may hold '|'."""
    lines = []
    for p in perpetrators:
        text = " ".join(p.description.splitlines())
        if p.affiliation:
            text += f" | {p.affiliation}"
        elif "|" in text:
            text += " |"  # an empty affiliation, so the description keeps its '|'
        lines.append(text)
    return "\n".join(lines)


def format_lines(items: tuple[str, ...]) -> str:
    return "\n".join(" ".join(item.splitlines()) for item in items)


def form_from(
    t: Testimony | None, identity: ProtectedIdentity | None, now: datetime
) -> TestimonyForm:
    """The form showing ``t`` (or a new testimony taken ``now``) and its witness identity."""
    who = identity or ProtectedIdentity()
    if t is None:
        form = TestimonyForm(
            taken_at=format_taken_at(now.replace(second=0, microsecond=0)),
            consent_taken_on=now.date().isoformat(),
        )
    else:
        form = _form_of(t, now)
    return dataclasses.replace(
        form,
        identity_name=who.name,
        identity_contact=who.contact,
        identity_address=who.address,
        identity_notes=who.notes,
    )


def _form_of(t: Testimony, now: datetime) -> TestimonyForm:
    place = t.incident_place
    consent = t.consent
    return TestimonyForm(
        taken_at=format_taken_at(t.taken_at),
        taken_place=t.taken_place.text,
        language=t.language,
        narrative=t.narrative,
        incident_date="" if t.incident_date is None else str(t.incident_date),
        incident_place="" if place is None else place.text,
        incident_lat="" if place is None or place.latitude is None else place.latitude,
        incident_lon="" if place is None or place.longitude is None else place.longitude,
        violations=frozenset(t.violations),
        perpetrators=format_perpetrators(t.perpetrators),
        victim_count="" if t.victims.count is None else str(t.victims.count),
        victim_descriptions=format_lines(t.victims.descriptions),
        source_type=t.source_type,
        reliability=t.reliability,
        no_witness=t.witness_code is None,
        consent_scopes=frozenset() if consent is None else consent.scopes,
        consent_taken_on=now.date().isoformat()
        if consent is None
        else consent.taken_on.isoformat(),
        consent_withdrawn_on=""
        if consent is None or consent.withdrawn_on is None
        else consent.withdrawn_on.isoformat(),
    )


def build(
    form: TestimonyForm, ctx: FormContext, status: Status
) -> tuple[Testimony, ProtectedIdentity | None]:
    """The testimony and identity to save, or ValidationError naming every field at fault."""
    p = Problems()
    base = ctx.base

    def attempt(make: Callable[[], T], fallback: T, prefix: str = "") -> T:
        try:
            return make()
        except ValidationError as e:
            p.extend(e, prefix)
            return fallback

    # Lists the editor shows one item per line are reused as stored while their text
    # is untouched, so editing another field never rewrites them.
    if base is not None and form.perpetrators == format_perpetrators(base.perpetrators):
        perpetrators = base.perpetrators
    else:
        perpetrators = attempt(lambda: _perpetrators(form.perpetrators), ())
    if base is not None and form.victim_descriptions == format_lines(base.victims.descriptions):
        descriptions = base.victims.descriptions
    else:
        descriptions = _lines(form.victim_descriptions)
    witness_code = None if form.no_witness else ctx.witness_code
    t = Testimony(
        recorded_by=ctx.recorded_by,
        taken_at=attempt(lambda: _taken_at(form.taken_at), _PLACEHOLDER_TAKEN_AT),
        taken_place=attempt(
            lambda: _taken_place(form.taken_place, base), _PLACEHOLDER_PLACE, "taken_place"
        ),
        language=form.language.strip(),
        narrative=form.narrative,
        incident_date=attempt(lambda: _optional(form.incident_date, IncidentDate.parse), None),
        incident_place=attempt(lambda: _incident_place(form), None, "incident_place"),
        violations=tuple(sorted(form.violations)),
        perpetrators=perpetrators,
        victims=attempt(
            lambda: Victims(_victim_count(form.victim_count), descriptions), Victims(), "victims"
        ),
        source_type=form.source_type,
        reliability=form.reliability,
        witness_code=witness_code,
        consent=attempt(lambda: _consent(form, ctx), None, "consent"),
        attachments=() if base is None else base.attachments,
        status=status,
    )
    identity = attempt(lambda: _identity(form, ctx, witness_code), None, "identity")
    problems = p.items + testimony_problems(t, ctx.vocabulary)
    if problems:
        raise ValidationError(problems)
    return t, identity


def _optional(text: str, parse: Callable[[str], T]) -> T | None:
    text = ascii_digits(text.strip())
    return parse(text) if text else None


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _taken_at(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(ascii_digits(text.strip()))
    except ValueError as e:
        raise ValidationError.single("taken_at", TAKEN_AT_HINT) from e
    value = value if value.tzinfo else value.astimezone()  # typed without offset: local time
    return value.replace(second=0, microsecond=0)


def _taken_place(text: str, base: Testimony | None) -> Place:
    # Coordinates of where the interview happened are kept, not edited, here.
    old = None if base is None else base.taken_place
    if old is not None and old.has_coordinates:
        return Place(text, old.latitude, old.longitude)
    return Place(text)


def _incident_place(form: TestimonyForm) -> Place | None:
    text, lat, lon = form.incident_place, form.incident_lat, form.incident_lon
    if not (text.strip() or lat.strip() or lon.strip()):
        return None
    text = text if text.strip() else ""
    p = Problems()
    latitude = longitude = None
    try:
        latitude = _optional(lat, lambda s: parse_coordinate(s, "latitude"))
    except ValidationError as e:
        p.extend(e)
    try:
        longitude = _optional(lon, lambda s: parse_coordinate(s, "longitude"))
    except ValidationError as e:
        p.extend(e)
    p.raise_if_any()
    return Place(text, latitude, longitude)


def _perpetrators(text: str) -> tuple[Perpetrator, ...]:
    p, out = Problems(), []
    for i, line in enumerate(_lines(text)):
        description, bar, affiliation = line.rpartition("|")
        if not bar:
            description, affiliation = affiliation, ""
        try:
            out.append(Perpetrator(description.strip(), affiliation.strip()))
        except ValidationError as e:
            p.extend(e, f"perpetrators[{i}]")
    p.raise_if_any()
    return tuple(out)


def _victim_count(text: str) -> int | None:
    digits = ascii_digits(text.strip())
    if not digits:
        return None
    if not (digits.isascii() and digits.isdigit()):
        raise ValidationError.single("count", "must be a whole number, or empty if unknown")
    return int(digits)


def _day(text: str, field: str) -> date | None:
    digits = ascii_digits(text.strip())
    if not digits:
        return None
    try:
        return date.fromisoformat(digits)
    except ValueError as e:
        raise ValidationError.single(field, DAY_HINT) from e


def _consent(form: TestimonyForm, ctx: FormContext) -> Consent | None:
    withdrawn = _day(form.consent_withdrawn_on, "withdrawn_on")
    if not form.consent_scopes and withdrawn is None:
        return None
    taken_on = _day(form.consent_taken_on, "taken_on")
    if taken_on is None:
        raise ValidationError.single("taken_on", "say when consent was given; " + DAY_HINT)
    old = None if ctx.base is None else ctx.base.consent
    taken_by = ctx.recorded_by if old is None else old.taken_by
    return Consent(frozenset(form.consent_scopes), taken_by, taken_on, withdrawn)


def _identity(
    form: TestimonyForm, ctx: FormContext, witness_code: str | None
) -> ProtectedIdentity | None:
    identity = ProtectedIdentity(
        name=form.identity_name,
        contact=form.identity_contact,
        address=form.identity_address,
        notes=form.identity_notes,
    )
    if identity.is_empty():
        # Left empty: store nothing, or clear what was stored before.
        return ProtectedIdentity() if ctx.had_identity and witness_code else None
    if witness_code is None:
        raise ValidationError.single(
            "", "needs a witness code: untick 'No witness' or clear the protected identity"
        )
    validate_identity(identity)
    return identity
