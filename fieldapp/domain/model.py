"""The testimony and the values it is made of: immutable, typed, checked on construction.

Small values (places, consent, attachments, ...) refuse to exist in a state that
cannot be stored, raising ValidationError naming their own fields. The testimony
itself is a plain record: ``validate_testimony`` (fieldapp.domain.validation)
checks it as a whole and reports every problem at once. Free text is never
normalised and never shown in a repr, so tracebacks and logs do not carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Final

from fieldapp.domain._text import field_text
from fieldapp.domain.consent import Consent, ConsentScope
from fieldapp.domain.dates import IncidentDate
from fieldapp.domain.errors import Problems, ValidationError
from fieldapp.domain.place import Place, parse_coordinate

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AttachmentRef",
    "Consent",
    "ConsentScope",
    "Perpetrator",
    "Place",
    "ProtectedIdentity",
    "Reliability",
    "SourceType",
    "Status",
    "Testimony",
    "Victims",
    "can_transition",
    "check_transition",
    "parse_coordinate",
]

_ATTACHMENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MEDIA_TYPE_RE: Final = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"
)
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")


class Status(StrEnum):
    """Where a testimony is in its life. Only HQ's signed receipt makes it ``confirmed``."""

    DRAFT = "draft"  # being written; may be incomplete
    READY = "ready"  # complete, queued for the next sync; may go back to draft
    SENT = "sent"  # in a bundle that left the device
    CONFIRMED = "confirmed"  # HQ's receipt for that bundle came back


ALLOWED_TRANSITIONS: Final[frozenset[tuple[Status, Status]]] = frozenset(
    {
        (Status.DRAFT, Status.READY),
        (Status.READY, Status.DRAFT),
        (Status.READY, Status.SENT),
        (Status.SENT, Status.CONFIRMED),
        # A correction after sending (a consent withdrawal, a fixed date) goes back
        # to draft and, once ready again, travels to HQ as a new revision.
        (Status.SENT, Status.DRAFT),
        (Status.CONFIRMED, Status.DRAFT),
    }
)


def can_transition(old: Status, new: Status) -> bool:
    """True if a testimony may move from ``old`` to ``new`` (keeping a status is no move)."""
    return (old, new) in ALLOWED_TRANSITIONS


def check_transition(old: Status, new: Status) -> None:
    """Raise ValidationError on the ``status`` field unless ``old`` -> ``new`` is allowed."""
    if not can_transition(old, new):
        raise ValidationError.single(
            "status", f"a testimony cannot go from {old.value} to {new.value}"
        )


class SourceType(StrEnum):
    """How the source knows what they told: they saw it, they heard of it, or a document."""

    DIRECT_WITNESS = "direct-witness"
    HEARSAY = "hearsay"
    DOCUMENT = "document"


class Reliability(StrEnum):
    """How far the monitor trusts this source, in their own judgement at the time."""

    HIGH = "high"  # consistent, detailed, corroborated or from a source proven reliable
    MEDIUM = "medium"  # plausible and consistent, not corroborated
    LOW = "low"  # doubts about the account or the source
    UNKNOWN = "unknown"  # no basis to judge yet


@dataclass(frozen=True, slots=True)
class Perpetrator:
    """An alleged perpetrator as described ("three men in black uniforms") and who they serve."""

    description: str = field(repr=False)
    affiliation: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        problems = Problems()
        field_text(problems, "description", self.description, required=True)
        field_text(problems, "affiliation", self.affiliation, required=False)
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class Victims:
    """How many victims, if known, and a description of each one or each group."""

    count: int | None = None
    descriptions: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        problems = Problems()
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        ):
            problems.add("count", "must be a whole number, zero or more, or left unknown")
        if not isinstance(self.descriptions, tuple):
            problems.add("descriptions", "must be a list of descriptions")
        else:
            for i, text in enumerate(self.descriptions):
                field_text(problems, f"descriptions[{i}]", text, required=True)
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class ProtectedIdentity:
    """Who the witness is. Kept in its own compartment, sealed to HQ's protection key.

    Never part of a Testimony: the testimony knows the witness only by code.
    """

    name: str = field(default="", repr=False)
    contact: str = field(default="", repr=False)
    address: str = field(default="", repr=False)
    notes: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        problems = Problems()
        for name in ("name", "contact", "address", "notes"):
            field_text(problems, name, getattr(self, name), required=False)
        problems.raise_if_any()

    def is_empty(self) -> bool:
        return not any(p.strip() for p in (self.name, self.contact, self.address, self.notes))


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file attached to a testimony; the store encrypts the file and fills this in."""

    attachment_id: str
    filename: str = field(repr=False)
    media_type: str
    size: int
    sha256: str  # of the original file, lowercase hex, recorded at capture

    def __post_init__(self) -> None:
        problems = Problems()
        if not isinstance(self.attachment_id, str) or not _ATTACHMENT_ID_RE.fullmatch(
            self.attachment_id
        ):
            problems.add("attachment_id", "must be 1 to 64 letters, digits, '-' or '_'")
        field_text(problems, "filename", self.filename, required=True)
        if isinstance(self.filename, str) and (
            len(self.filename) > 255 or any(c in self.filename for c in "/\\\x00")
        ):
            problems.add("filename", "must be a file name of at most 255 characters, no folders")
        if not isinstance(self.media_type, str) or not _MEDIA_TYPE_RE.fullmatch(self.media_type):
            problems.add("media_type", "must be a lowercase media type such as image/jpeg")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            problems.add("size", "must be a whole number of bytes, zero or more")
        if not isinstance(self.sha256, str) or not _SHA256_RE.fullmatch(self.sha256):
            problems.add("sha256", "must be 64 lowercase hexadecimal digits")
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class Testimony:
    """Everything one revision of a testimony carries, except the witness's identity.

    ``violations`` is kept sorted and without duplicates whatever order it is given in.
    ``taken_at`` is aware and to the minute, in the monitor's local offset.
    """

    __test__: ClassVar[bool] = False  # a class named Test* is not a pytest test class

    recorded_by: str  # the device signing key's id, lowercase hex
    taken_at: datetime
    taken_place: Place
    language: str  # BCP 47 tag of the narrative: "ar", "en", "ku", "ar-IQ"
    narrative: str = field(repr=False)  # kept exactly as typed: never normalised
    incident_date: IncidentDate | None = None
    incident_place: Place | None = None
    violations: tuple[str, ...] = ()
    perpetrators: tuple[Perpetrator, ...] = ()
    victims: Victims = Victims()
    source_type: SourceType = SourceType.DIRECT_WITNESS
    reliability: Reliability = Reliability.UNKNOWN
    witness_code: str | None = None
    consent: Consent | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    status: Status = Status.DRAFT

    def __post_init__(self) -> None:
        if isinstance(self.violations, tuple) and all(isinstance(v, str) for v in self.violations):
            object.__setattr__(self, "violations", tuple(sorted(set(self.violations))))
