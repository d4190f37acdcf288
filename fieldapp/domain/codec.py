"""The canonical JSON of a testimony: what revisions hash and sign.

``canonical_bytes`` is deterministic: keys sorted, no spaces, UTF-8 as is (Arabic
stays Arabic), integers and strings only (no floats), every key always present
with ``null`` for nothing. Text is never normalised, so a narrative comes back
byte for byte. Readers are strict: exact keys, exact types, canonical forms; any
other input raises ValidationError and nothing else. The layout is in docs/domain.md.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final

from fieldapp.domain._json import (
    JSON,
    MAX_RECORD_BYTES,
    bad,
    dump_canonical,
    enum,
    exact_object,
    exact_record,
    integer,
    list_of,
    load_strict,
    optional,
    read_field,
    string,
)
from fieldapp.domain.dates import IncidentDate
from fieldapp.domain.errors import Problems, ValidationError
from fieldapp.domain.model import (
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
    Victims,
)
from fieldapp.domain.validation import structural_problems

__all__ = [
    "JSON",
    "MAX_RECORD_BYTES",
    "SCHEMA",
    "canonical_bytes",
    "dump_canonical",
    "format_taken_at",
    "identity_from_json",
    "identity_to_json",
    "load_strict",
    "testimony_from_bytes",
    "testimony_from_json",
    "testimony_to_json",
]

SCHEMA: Final = 1
_KEYS: Final = frozenset(
    {
        "schema", "recorded_by", "taken_at", "taken_place", "language", "narrative",
        "incident_date", "incident_place", "violations", "perpetrators", "victims",
        "source_type", "reliability", "witness_code", "consent", "attachments", "status",
    }
)  # fmt: skip
_TAKEN_AT_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}"
)
_DAY_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLACEHOLDER_PLACE: Final = Place("-")
_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- writing


def testimony_to_json(t: Testimony) -> dict[str, JSON]:
    """``t`` as a JSON object; raise ValidationError if it has no canonical form."""
    problems = structural_problems(t)
    if problems:
        raise ValidationError(problems)
    return {
        "schema": SCHEMA,
        "recorded_by": t.recorded_by,
        "taken_at": format_taken_at(t.taken_at),
        "taken_place": _place_json(t.taken_place),
        "language": t.language,
        "narrative": t.narrative,
        "incident_date": None if t.incident_date is None else str(t.incident_date),
        "incident_place": None if t.incident_place is None else _place_json(t.incident_place),
        "violations": list(t.violations),
        "perpetrators": [
            {"description": p.description, "affiliation": p.affiliation} for p in t.perpetrators
        ],
        "victims": {"count": t.victims.count, "descriptions": list(t.victims.descriptions)},
        "source_type": t.source_type.value,
        "reliability": t.reliability.value,
        "witness_code": t.witness_code,
        "consent": None if t.consent is None else _consent_json(t.consent),
        "attachments": [
            {
                "attachment_id": a.attachment_id,
                "filename": a.filename,
                "media_type": a.media_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in t.attachments
        ],
        "status": t.status.value,
    }


def canonical_bytes(t: Testimony) -> bytes:
    """The bytes a revision hashes and signs; the same testimony always gives the same bytes."""
    return dump_canonical(testimony_to_json(t))


def format_taken_at(value: datetime) -> str:
    """``2024-05-01T14:30+03:00``: to the minute, with the offset (UTC is ``+00:00``)."""
    offset = value.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    hours, minutes = divmod(abs(offset) // timedelta(minutes=1), 60)
    return f"{value:%Y-%m-%dT%H:%M}{sign}{hours:02d}:{minutes:02d}"


def _place_json(place: Place) -> JSON:
    return {"text": place.text, "latitude": place.latitude, "longitude": place.longitude}


def _consent_json(c: Consent) -> JSON:
    scopes: list[JSON] = [s.value for s in sorted(c.scopes)]
    return {
        "scopes": scopes,
        "taken_by": c.taken_by,
        "taken_on": c.taken_on.isoformat(),
        "withdrawn_on": None if c.withdrawn_on is None else c.withdrawn_on.isoformat(),
    }


# ---------------------------------------------------------------- reading


def testimony_from_bytes(data: bytes) -> Testimony:
    """Decode signed bytes; refuse anything but the canonical encoding of a testimony."""
    obj = load_strict(data)
    t = testimony_from_json(obj)
    if canonical_bytes(t) != data:
        raise ValidationError.single("record", "is not in canonical form")
    return t


def testimony_from_json(obj: object) -> Testimony:
    """The testimony ``obj`` encodes; raise ValidationError listing every problem."""
    p = Problems()
    d = exact_record(obj, _KEYS)  # raises for the whole record: nothing else can be read
    schema = d["schema"]
    if type(schema) is not int or schema != SCHEMA:
        newer = type(schema) is int and schema > SCHEMA
        p.add("schema", "comes from a newer fieldapp; update fieldapp" if newer else "is unknown")
        p.raise_if_any()
    t = Testimony(
        recorded_by=read_field(p, "recorded_by", string, d, ""),
        taken_at=read_field(p, "taken_at", _taken_at, d, _EPOCH),
        taken_place=read_field(p, "taken_place", _place, d, _PLACEHOLDER_PLACE),
        language=read_field(p, "language", string, d, ""),
        narrative=read_field(p, "narrative", string, d, ""),
        incident_date=read_field(p, "incident_date", optional(_incident_date), d, None),
        incident_place=read_field(p, "incident_place", optional(_place), d, None),
        violations=read_field(p, "violations", _violations, d, ()),
        perpetrators=read_field(p, "perpetrators", list_of(_perpetrator), d, ()),
        victims=read_field(p, "victims", _victims, d, Victims()),
        source_type=read_field(p, "source_type", enum(SourceType), d, SourceType.DOCUMENT),
        reliability=read_field(p, "reliability", enum(Reliability), d, Reliability.UNKNOWN),
        witness_code=read_field(p, "witness_code", optional(string), d, None),
        consent=read_field(p, "consent", optional(_consent), d, None),
        attachments=read_field(p, "attachments", list_of(_attachment), d, ()),
        status=read_field(p, "status", enum(Status), d, Status.DRAFT),
    )
    p.raise_if_any()
    problems = structural_problems(t)
    if problems:
        raise ValidationError(problems)
    return t


def _taken_at(raw: object) -> datetime:
    text = string(raw)
    if not _TAKEN_AT_RE.fullmatch(text):
        raise bad("must look like 2024-05-01T14:30+03:00")
    try:
        local = datetime.strptime(text[:16], "%Y-%m-%dT%H:%M")
        sign = -1 if text[16] == "-" else 1
        offset = timedelta(hours=int(text[17:19]), minutes=int(text[20:22])) * sign
        value = local.replace(tzinfo=timezone(offset))
    except ValueError as e:
        raise bad("is not a real date and time") from e
    if format_taken_at(value) != text:
        raise bad("is not in canonical form")
    return value


def _day(raw: object) -> date:
    text = string(raw)
    hint = "must be a real date written YYYY-MM-DD"
    if not _DAY_RE.fullmatch(text):
        raise bad(hint)
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise bad(hint) from e


def _incident_date(raw: object) -> IncidentDate:
    return IncidentDate.parse(string(raw), field="")


def _place(raw: object) -> Place:
    d = exact_object(raw, frozenset({"text", "latitude", "longitude"}))
    p = Problems()
    text = read_field(p, "text", string, d, "")
    latitude = read_field(p, "latitude", optional(string), d, None)
    longitude = read_field(p, "longitude", optional(string), d, None)
    p.raise_if_any()
    return Place(text, latitude, longitude)


def _violations(raw: object) -> tuple[str, ...]:
    codes = list_of(string)(raw)
    if list(codes) != sorted(set(codes)):
        raise bad("must be sorted and without repeats")
    return codes


def _perpetrator(raw: object) -> Perpetrator:
    d = exact_object(raw, frozenset({"description", "affiliation"}))
    p = Problems()
    description = read_field(p, "description", string, d, "")
    affiliation = read_field(p, "affiliation", string, d, "")
    p.raise_if_any()
    return Perpetrator(description, affiliation)


def _victims(raw: object) -> Victims:
    d = exact_object(raw, frozenset({"count", "descriptions"}))
    p = Problems()
    count = read_field(p, "count", optional(integer), d, None)
    descriptions: tuple[str, ...] = read_field(p, "descriptions", list_of(string), d, ())
    p.raise_if_any()
    return Victims(count, descriptions)


def _scopes(raw: object) -> frozenset[ConsentScope]:
    scopes = list_of(enum(ConsentScope))(raw)
    if [s.value for s in scopes] != sorted({s.value for s in scopes}):
        raise bad("must be sorted and without repeats")
    return frozenset(scopes)


def _consent(raw: object) -> Consent:
    d = exact_object(raw, frozenset({"scopes", "taken_by", "taken_on", "withdrawn_on"}))
    p = Problems()
    scopes: frozenset[ConsentScope] = read_field(p, "scopes", _scopes, d, frozenset())
    taken_by = read_field(p, "taken_by", string, d, "")
    taken_on = read_field(p, "taken_on", _day, d, _EPOCH.date())
    withdrawn_on = read_field(p, "withdrawn_on", optional(_day), d, None)
    p.raise_if_any()
    return Consent(scopes, taken_by, taken_on, withdrawn_on)


def _attachment(raw: object) -> AttachmentRef:
    d = exact_object(raw, frozenset({"attachment_id", "filename", "media_type", "size", "sha256"}))
    p = Problems()
    attachment_id = read_field(p, "attachment_id", string, d, "")
    filename = read_field(p, "filename", string, d, "")
    media_type = read_field(p, "media_type", string, d, "")
    size = read_field(p, "size", integer, d, 0)
    sha256 = read_field(p, "sha256", string, d, "")
    p.raise_if_any()
    return AttachmentRef(attachment_id, filename, media_type, size, sha256)


# Identity codec: for the witness identity compartment, sealed separately.

_IDENTITY_KEYS: Final = frozenset({"schema", "name", "contact", "address", "notes"})


def identity_to_json(identity: ProtectedIdentity) -> dict[str, JSON]:
    return {
        "schema": SCHEMA,
        "name": identity.name,
        "contact": identity.contact,
        "address": identity.address,
        "notes": identity.notes,
    }


def identity_from_json(obj: object) -> ProtectedIdentity:
    d = exact_record(obj, _IDENTITY_KEYS)
    if type(d["schema"]) is not int or d["schema"] != SCHEMA:
        raise ValidationError.single("schema", "is unknown")
    p = Problems()
    fields = {k: read_field(p, k, string, d, "") for k in ("name", "contact", "address", "notes")}
    p.raise_if_any()
    return ProtectedIdentity(**fields)
