"""Hypothesis strategies for the domain model, for any test that needs testimonies.

``valid_testimonies()`` gives structurally valid testimonies (what the codec accepts):
any text, Arabic and bidirectional marks included. ``saveable_testimonies()``
gives ones that also pass ``validate_testimony`` with the default vocabulary.
Every value is built through the public constructors, so a strategy that drifts
from the model fails loudly instead of testing something else. (No name here starts
with "test": pytest would collect it.)
"""

from __future__ import annotations

import calendar
import dataclasses
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from fieldapp.domain import (
    AttachmentRef,
    Consent,
    ConsentScope,
    IncidentDate,
    PartialDate,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    Victims,
    Vocabulary,
    new_witness_code,
    parse_coordinate,
)
from fieldapp.domain.dates import YEAR_MAX, YEAR_MIN
from fieldapp.domain.place import Axis

VOCABULARY = Vocabulary.load_default()

# Arabic letters and harakat, Arabic-Indic digits, bidi controls (LRM, RLM, embeddings,
# isolates), ZWJ/ZWNJ, plus ASCII: the text a monitor in the region really types.
_ARABIC = st.one_of(
    st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),
    st.sampled_from(
        "\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    ),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
)
# No control characters (Cc) and no surrogates (Cs): what the short fields accept.
_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"))

any_text = st.one_of(st.text(), st.text(alphabet=_ARABIC))
"""Any storable text: control characters and lone-surrogate-free, every script."""


def short_texts(max_size: int = 40, *, blank: bool = True) -> st.SearchStrategy[str]:
    """Text without control characters; ``blank=False`` guarantees a non-blank one."""
    text = st.one_of(
        st.text(alphabet=_PRINTABLE, max_size=max_size),
        st.text(alphabet=_ARABIC.filter(str.isprintable), max_size=max_size),
    )
    return text if blank else text.filter(str.strip)


@st.composite
def partial_dates(draw: st.DrawFn) -> PartialDate:
    year = draw(st.integers(YEAR_MIN, YEAR_MAX))
    precision = draw(st.sampled_from(("year", "month", "day")))
    if precision == "year":
        return PartialDate(year)
    month = draw(st.integers(1, 12))
    if precision == "month":
        return PartialDate(year, month)
    return PartialDate(year, month, draw(st.integers(1, calendar.monthrange(year, month)[1])))


@st.composite
def incident_dates(draw: st.DrawFn) -> IncidentDate:
    start = draw(partial_dates())
    if draw(st.booleans()):
        return IncidentDate(start)
    end = draw(partial_dates().filter(lambda e: e != start and e.latest() >= start.earliest()))
    return IncidentDate(start, end)


def coordinates(axis: Axis) -> st.SearchStrategy[str]:
    limit = 90 if axis == "latitude" else 180
    return st.integers(0, 7).flatmap(
        lambda places: st.decimals(
            min_value=-limit, max_value=limit, places=places, allow_nan=False
        ).map(lambda d: parse_coordinate(format(Decimal(d), "f"), axis))
    )


@st.composite
def places(draw: st.DrawFn) -> Place:
    if draw(st.booleans()):
        latitude, longitude = draw(coordinates("latitude")), draw(coordinates("longitude"))
        return Place(draw(short_texts()), latitude, longitude)
    return Place(draw(short_texts(blank=False)))


perpetrators = st.builds(Perpetrator, short_texts(blank=False), short_texts())
victims = st.builds(
    Victims,
    st.none() | st.integers(0, 10_000),
    st.lists(short_texts(blank=False), max_size=4).map(tuple),
)
witness_codes = st.binary(min_size=5, max_size=5).map(lambda b: new_witness_code(lambda _: b))
key_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
languages = st.sampled_from(("ar", "en", "ku", "ckb", "fa", "tr", "ar-IQ", "ku-Arab", "es-419"))
days = st.dates(date(YEAR_MIN, 1, 1), date(YEAR_MAX, 12, 31))


@st.composite
def consents(draw: st.DrawFn) -> Consent:
    scopes = draw(
        st.frozensets(st.sampled_from(ConsentScope), min_size=1).filter(
            lambda s: (
                ConsentScope.INTERNAL_ONLY not in s
                or s <= {ConsentScope.INTERNAL_ONLY, ConsentScope.RE_CONTACT}
            )
        )
    )
    taken_on = draw(days)
    withdrawn = draw(st.none() | st.dates(taken_on, date(YEAR_MAX, 12, 31)))
    return Consent(scopes, draw(short_texts(blank=False)), taken_on, withdrawn)


attachments = st.builds(
    AttachmentRef,
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    short_texts(blank=False).filter(lambda s: not set(s) & set("/\\\x00")),
    st.sampled_from(("image/jpeg", "audio/ogg", "video/mp4", "application/pdf")),
    st.integers(0, 2**40),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
)

taken_ats = st.builds(
    lambda d, h, m, offset: datetime(d.year, d.month, d.day, h, m, tzinfo=timezone(offset)),
    days,
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes)),
)


def valid_testimonies(
    narratives: st.SearchStrategy[str] = any_text,
) -> st.SearchStrategy[Testimony]:
    """Structurally valid testimonies (the codec accepts them); they may break saving rules."""
    return st.builds(
        Testimony,
        recorded_by=key_ids,
        taken_at=taken_ats,
        taken_place=places(),
        language=languages,
        narrative=narratives,
        incident_date=st.none() | incident_dates(),
        incident_place=st.none() | places(),
        violations=st.lists(st.sampled_from(sorted(VOCABULARY.codes)), max_size=4).map(tuple),
        perpetrators=st.lists(perpetrators, max_size=3).map(tuple),
        victims=victims,
        source_type=st.sampled_from(SourceType),
        reliability=st.sampled_from(Reliability),
        witness_code=st.none() | witness_codes,
        consent=st.none() | consents(),
        attachments=st.lists(attachments, max_size=3, unique_by=lambda a: a.attachment_id).map(
            tuple
        ),
        status=st.sampled_from(Status),
    )


@st.composite
def saveable_testimonies(draw: st.DrawFn) -> Testimony:
    """Testimonies that pass ``validate_testimony`` with the default vocabulary."""
    t = draw(valid_testimonies())
    changes: dict[str, object] = {}
    if t.status is not Status.DRAFT and not t.narrative.strip():
        changes["narrative"] = "x" + t.narrative
    if t.status is not Status.DRAFT and t.source_type is not SourceType.DOCUMENT:
        changes["consent"] = t.consent or draw(consents())
    if t.incident_date is not None and t.incident_date.earliest() > t.taken_at.date():
        changes["incident_date"] = None
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]


identities = st.builds(
    ProtectedIdentity, short_texts(), short_texts(), short_texts(), short_texts(200)
)
