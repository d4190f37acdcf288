"""Whole-testimony checks, in two layers.

``structural_problems`` is what the canonical JSON needs: right types, canonical
forms, text that UTF-8 can carry. The codec enforces it both ways, forever: a
record signed years ago must still decode, so this layer only ever grows looser.

``testimony_problems`` adds the rules for saving a revision now: known violation
codes, size limits, a narrative and consent before a testimony leaves draft. It
may tighten over time, and is checked by the store before a save, never when
reading a record back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Final

from fieldapp.domain._text import (
    LANGUAGE_HINT,
    is_code,
    is_language_tag,
    is_utf8_safe,
    text_problem,
)
from fieldapp.domain.dates import YEAR_MAX, YEAR_MIN, IncidentDate
from fieldapp.domain.errors import FieldProblem, Problems, ValidationError
from fieldapp.domain.model import (
    AttachmentRef,
    Consent,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    Victims,
)
from fieldapp.domain.vocabulary import Vocabulary
from fieldapp.domain.witness import is_witness_code

KEY_ID_HEX_CHARS: Final = 32  # crypto.keys.KEY_ID_BYTES (16) as hex; a test keeps them equal
NARRATIVE_MAX_BYTES: Final = 1 << 20  # 1 MiB of UTF-8: a long interview, typed
MAX_OFFSET: Final = timedelta(hours=14)  # the widest UTC offset in use (Kiribati)

PLACE_TEXT_MAX: Final = 1000
DESCRIPTION_MAX: Final = 2000
AFFILIATION_MAX: Final = 500
TAKEN_BY_MAX: Final = 200
FILENAME_MAX: Final = 255
MAX_VIOLATIONS: Final = 100
MAX_PERPETRATORS: Final = 500
MAX_VICTIM_DESCRIPTIONS: Final = 5000
MAX_VICTIM_COUNT: Final = 10_000_000
MAX_ATTACHMENTS: Final = 1000
IDENTITY_LIMITS: Final = {"name": 500, "contact": 1000, "address": 1000, "notes": 20_000}

_KEY_ID_RE: Final = re.compile(f"[0-9a-f]{{{KEY_ID_HEX_CHARS}}}")


def structural_problems(t: Testimony) -> tuple[FieldProblem, ...]:
    """Everything that would keep ``t`` from a canonical encoding, as problems."""
    p = Problems()
    if not isinstance(t.recorded_by, str) or not _KEY_ID_RE.fullmatch(t.recorded_by):
        p.add("recorded_by", f"must be a device key id ({KEY_ID_HEX_CHARS} lowercase hex digits)")
    _check_taken_at(p, t.taken_at)
    _check_type(p, "taken_place", t.taken_place, Place)
    if not isinstance(t.language, str) or not is_language_tag(t.language):
        p.add("language", LANGUAGE_HINT)
    if not isinstance(t.narrative, str):
        p.add("narrative", "must be text")
    elif not is_utf8_safe(t.narrative):
        p.add("narrative", "contains a character that cannot be stored (a lone surrogate)")
    _check_optional(p, "incident_date", t.incident_date, IncidentDate)
    _check_optional(p, "incident_place", t.incident_place, Place)
    _check_violations(p, t.violations)
    _check_items(p, "perpetrators", t.perpetrators, Perpetrator)
    _check_type(p, "victims", t.victims, Victims)
    _check_type(p, "source_type", t.source_type, SourceType)
    _check_type(p, "reliability", t.reliability, Reliability)
    if t.witness_code is not None and not is_witness_code(t.witness_code):
        p.add("witness_code", "is not a witness code; codes look like W-7KQ3-M2XA")
    _check_optional(p, "consent", t.consent, Consent)
    _check_items(p, "attachments", t.attachments, AttachmentRef)
    if isinstance(t.attachments, tuple):
        ids = [a.attachment_id for a in t.attachments if isinstance(a, AttachmentRef)]
        if len(ids) != len(set(ids)):
            p.add("attachments", "the same attachment is listed twice")
    _check_type(p, "status", t.status, Status)
    return p.items


def testimony_problems(t: Testimony, vocabulary: Vocabulary) -> tuple[FieldProblem, ...]:
    """Every reason not to save ``t`` as a new revision now; empty if there is none.

    Structural problems come first; the rules for saving are then checked on
    every field that is itself well-formed, so one pass reports everything.
    """
    structural = structural_problems(t)
    at_fault = {re.split(r"[.\[]", problem.field, maxsplit=1)[0] for problem in structural}

    def ok(*names: str) -> bool:
        return at_fault.isdisjoint(names)

    p = Problems()
    if ok("narrative", "status"):
        _check_narrative(p, t)
    if ok("violations"):
        _limit(p, "violations", len(t.violations), MAX_VIOLATIONS)
        for i, code in enumerate(t.violations):
            if code not in vocabulary:
                p.add(f"violations[{i}]", f"unknown violation type code '{code}'")
    if (
        ok("incident_date", "taken_at")
        and t.incident_date is not None
        and t.incident_date.earliest() > t.taken_at.date()
    ):
        p.add("incident_date", "is after the day the testimony was taken")
    if ok("consent", "status", "source_type") and t.consent is None and _needs_consent(t):
        p.add("consent", "record the witness's consent before the testimony leaves draft")
    for name, value, limit, single_line in _texts(t, ok):
        _text(p, name, value, limit, single_line=single_line)
    if ok("perpetrators"):
        _limit(p, "perpetrators", len(t.perpetrators), MAX_PERPETRATORS)
    if ok("victims"):
        _limit(p, "victims.descriptions", len(t.victims.descriptions), MAX_VICTIM_DESCRIPTIONS)
        if t.victims.count is not None and t.victims.count > MAX_VICTIM_COUNT:
            p.add("victims.count", f"must be at most {MAX_VICTIM_COUNT}")
    if ok("attachments"):
        _limit(p, "attachments", len(t.attachments), MAX_ATTACHMENTS)
    return structural + p.items


def _needs_consent(t: Testimony) -> bool:
    """A person was interviewed and the testimony is leaving draft."""
    return t.status is not Status.DRAFT and t.source_type is not SourceType.DOCUMENT


def _check_narrative(p: Problems, t: Testimony) -> None:
    if len(t.narrative.encode("utf-8")) > NARRATIVE_MAX_BYTES:
        p.add("narrative", "is too long (at most 1 MiB); split it or attach it as a document")
    if t.status is not Status.DRAFT and not t.narrative.strip():
        p.add("narrative", "must not be empty once the testimony leaves draft")


def _texts(t: Testimony, ok: Callable[..., bool]) -> Iterator[tuple[str, str, int, bool]]:
    """(field, text, maximum length, single line?) of each well-formed short text field."""
    if ok("taken_place"):
        yield ("taken_place.text", t.taken_place.text, PLACE_TEXT_MAX, False)
    if ok("incident_place") and t.incident_place is not None:
        yield ("incident_place.text", t.incident_place.text, PLACE_TEXT_MAX, False)
    if ok("perpetrators"):
        for i, who in enumerate(t.perpetrators):
            yield (f"perpetrators[{i}].description", who.description, DESCRIPTION_MAX, False)
            yield (f"perpetrators[{i}].affiliation", who.affiliation, AFFILIATION_MAX, True)
    if ok("victims"):
        for i, text in enumerate(t.victims.descriptions):
            yield (f"victims.descriptions[{i}]", text, DESCRIPTION_MAX, False)
    if ok("consent") and t.consent is not None:
        yield ("consent.taken_by", t.consent.taken_by, TAKEN_BY_MAX, True)
    if ok("attachments"):
        for i, att in enumerate(t.attachments):
            yield (f"attachments[{i}].filename", att.filename, FILENAME_MAX, True)


def validate_testimony(t: Testimony, vocabulary: Vocabulary) -> None:
    """Raise ValidationError listing every problem of ``t`` at once, or return."""
    problems = testimony_problems(t, vocabulary)
    if problems:
        raise ValidationError(problems)


def validate_identity(identity: ProtectedIdentity) -> None:
    """Raise ValidationError if a protected identity breaks the size or character rules."""
    p = Problems()
    for name, limit in IDENTITY_LIMITS.items():
        _text(p, name, getattr(identity, name), limit, single_line=name == "name")
    p.raise_if_any()


def _check_taken_at(p: Problems, value: object) -> None:
    if not isinstance(value, datetime):
        p.add("taken_at", "must be a date and time")
        return
    offset = value.utcoffset()
    if offset is None:
        p.add("taken_at", "must include the time zone offset")
    elif abs(offset) > MAX_OFFSET or offset % timedelta(minutes=1):
        p.add("taken_at", "has an impossible time zone offset")
    if value.second or value.microsecond:
        p.add("taken_at", "must be to the minute (no seconds)")
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        p.add("taken_at", f"must be between {YEAR_MIN} and {YEAR_MAX}")


def _check_violations(p: Problems, value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(c, str) for c in value):
        p.add("violations", "must be a list of violation type codes")
        return
    for i, code in enumerate(value):
        if not is_code(code):
            p.add(f"violations[{i}]", "is not a violation type code")
    if list(value) != sorted(set(value)):
        p.add("violations", "must be sorted and without repeats")


def _check_type(p: Problems, name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        p.add(name, "has the wrong type")


def _check_optional(p: Problems, name: str, value: object, kind: type) -> None:
    if value is not None:
        _check_type(p, name, value, kind)


def _check_items(p: Problems, name: str, value: object, kind: type) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
        p.add(name, "has the wrong type")


def _limit(p: Problems, name: str, count: int, limit: int) -> None:
    if count > limit:
        p.add(name, f"has too many entries (at most {limit})")


def _text(p: Problems, name: str, value: str, limit: int, *, single_line: bool) -> None:
    problem = text_problem(value, max_chars=limit, required=False, single_line=single_line)
    if problem is not None:
        p.add(name, problem)
