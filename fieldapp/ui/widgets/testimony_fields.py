"""Every field of a testimony as widgets, in one scrolling column that fits 80x24.

``read`` gives the values as a TestimonyForm and ``fill`` shows one; neither
talks to the store. The witness's protected identity sits in its own,
differently bordered box, so nobody mistakes it for the testimony.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, TextArea

from fieldapp.domain import (
    AttachmentRef,
    ConsentScope,
    FieldProblem,
    Reliability,
    SourceType,
    Vocabulary,
)
from fieldapp.ui.forms import TestimonyForm
from fieldapp.ui.widgets.attachments import AttachmentList
from fieldapp.ui.widgets.violations import ViolationPicker

E = TypeVar("E", bound=Enum)

IDENTITY_TITLE = "Protected identity — sealed separately, can be left empty"
DATE_HINT = "YYYY, YYYY-MM, YYYY-MM-DD or START/END"
SCOPE_LABELS = {
    ConsentScope.INTERNAL_ONLY: "Internal use at HQ only",
    ConsentScope.ANONYMOUS_PUBLICATION: "Anonymous publication",
    ConsentScope.NAMED_PUBLICATION: "Publication with the witness's name",
    ConsentScope.JUSTICE_MECHANISMS: "Courts, inquiries, UN mechanisms",
    ConsentScope.RE_CONTACT: "May be contacted again",
}
# The field paths of ValidationError, matched by their longest prefix, to the widget at fault.
FIELD_WIDGETS = {
    "taken_at": "#taken-at",
    "taken_place": "#taken-place",
    "language": "#language",
    "narrative": "#narrative",
    "incident_date": "#incident-date",
    "incident_place": "#incident-place",
    "incident_place.latitude": "#incident-lat",
    "incident_place.longitude": "#incident-lon",
    "violations": "#violation-list",
    "perpetrators": "#perpetrators",
    "victims": "#victim-descriptions",
    "victims.count": "#victim-count",
    "source_type": "#source-type",
    "reliability": "#reliability",
    "witness_code": "#no-witness",
    "consent": "#consent-scopes",
    "consent.taken_on": "#consent-taken-on",
    "consent.withdrawn_on": "#consent-withdrawn-on",
    "identity": "#identity",
    "identity.name": "#identity-name",
    "identity.contact": "#identity-contact",
    "identity.address": "#identity-address",
    "identity.notes": "#identity-notes",
}
_INPUTS = {
    "taken_at": "#taken-at",
    "taken_place": "#taken-place",
    "language": "#language",
    "incident_date": "#incident-date",
    "incident_place": "#incident-place",
    "incident_lat": "#incident-lat",
    "incident_lon": "#incident-lon",
    "victim_count": "#victim-count",
    "consent_taken_on": "#consent-taken-on",
    "consent_withdrawn_on": "#consent-withdrawn-on",
    "identity_name": "#identity-name",
    "identity_contact": "#identity-contact",
    "identity_address": "#identity-address",
}
_TEXT_AREAS = {
    "narrative": "#narrative",
    "perpetrators": "#perpetrators",
    "victim_descriptions": "#victim-descriptions",
    "identity_notes": "#identity-notes",
}


class TickBox(Checkbox):
    """A checkbox whose state shows without colour (NO_COLOR): X when ticked, blank when not."""

    def render(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super().render()


def _row(label: str, *widgets: Widget) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), *widgets, classes="row")


def _input(id_: str, placeholder: str = "") -> Input:
    # Focus must not select the text: tabbing in and typing would replace a whole field.
    return Input(placeholder=placeholder, id=id_, compact=True, select_on_focus=False)


def _area(id_: str) -> TextArea:
    return TextArea(id=id_, soft_wrap=True, tab_behavior="focus", show_line_numbers=False)


class TestimonyFields(VerticalScroll):
    __test__ = False  # not a pytest test class, despite the name

    def compose(self) -> ComposeResult:
        yield Label("Interview", classes="section")
        yield _row("Taken at", _input("taken-at", "YYYY-MM-DD HH:MM"))
        yield _row("Taken place", _input("taken-place", "where the interview took place"))
        yield _row("Language", _input("language", "ar, en, ku, ar-IQ (und if unsure)"))
        yield Label("Narrative (exactly as told)", classes="caption")
        yield _area("narrative")

        yield Label("Incident", classes="section")
        yield _row("Incident date", _input("incident-date", DATE_HINT))
        yield Label(f"  {DATE_HINT}, e.g. 2016-12 or 2016-12/2017-01-15", classes="hint")
        yield _row("Incident place", _input("incident-place", "as the witness named it"))
        yield _row(
            "Lat / lon",
            _input("incident-lat", "latitude, e.g. 36.2021"),
            _input("incident-lon", "longitude, e.g. 37.1343"),
        )
        yield Label("Violations", classes="caption")
        yield ViolationPicker(id="violations")
        yield Label("Perpetrators: one per line, description | affiliation", classes="caption")
        yield _area("perpetrators")
        yield _row("Victims (count)", _input("victim-count", "empty if unknown"))
        yield Label("Victims: one description per line", classes="caption")
        yield _area("victim-descriptions")
        yield _row(
            "Source",
            Select(
                [(s.value, s) for s in SourceType],
                allow_blank=False,
                id="source-type",
                compact=True,
            ),
        )
        yield _row(
            "Reliability",
            Select(
                [(r.value, r) for r in Reliability],
                allow_blank=False,
                id="reliability",
                compact=True,
            ),
        )

        yield Label("Witness and consent", classes="section")
        yield _row("Witness code", Label("", id="witness-code", markup=False))
        yield TickBox(
            "No witness (a document, or nobody to protect)", id="no-witness", compact=True
        )
        with Vertical(id="consent-scopes"):
            yield Label("Consent: what the witness agreed to", classes="caption")
            for scope, text in SCOPE_LABELS.items():
                yield TickBox(text, id=f"consent-{scope.value}", compact=True)
        yield _row("Consent taken on", _input("consent-taken-on", "YYYY-MM-DD"))
        yield _row("Withdrawn on", _input("consent-withdrawn-on", "YYYY-MM-DD, empty if not"))

        identity = Vertical(id="identity")
        identity.border_title = IDENTITY_TITLE
        with identity:
            yield _row("Name", _input("identity-name"))
            yield _row("Contact", _input("identity-contact", "phone, messenger, intermediary"))
            yield _row("Address", _input("identity-address"))
            yield Label("Notes", classes="caption")
            yield _area("identity-notes")

        yield Label("Attachments", classes="section")
        yield AttachmentList(id="attachments")
        yield Button("Attach file (Ctrl+O)", id="attach", compact=True)

    # ------------------------------------------------------------ values

    def read(self) -> TestimonyForm:
        values: dict[str, object] = {
            name: self.query_one(sel, Input).value for name, sel in _INPUTS.items()
        }
        values |= {name: self.query_one(sel, TextArea).text for name, sel in _TEXT_AREAS.items()}
        return TestimonyForm(
            violations=self.query_one(ViolationPicker).chosen,
            source_type=self._choice("#source-type", SourceType.DIRECT_WITNESS),
            reliability=self._choice("#reliability", Reliability.UNKNOWN),
            no_witness=self.query_one("#no-witness", Checkbox).value,
            consent_scopes=frozenset(
                s for s in ConsentScope if self.query_one(f"#consent-{s.value}", Checkbox).value
            ),
            **values,  # type: ignore[arg-type]
        )

    def _choice(self, selector: str, default: E) -> E:
        value = self.query_one(selector, Select).value
        return value if isinstance(value, type(default)) else default

    def fill(self, form: TestimonyForm, vocabulary: Vocabulary, witness_code: str) -> None:
        """Show ``form``; the caller prevents the change messages this would post."""
        for name, sel in _INPUTS.items():
            self.query_one(sel, Input).value = getattr(form, name)
        for name, sel in _TEXT_AREAS.items():
            self.query_one(sel, TextArea).load_text(getattr(form, name))
        self.query_one(ViolationPicker).load(vocabulary, form.violations, form.language)
        self.query_one("#source-type", Select).value = form.source_type
        self.query_one("#reliability", Select).value = form.reliability
        self.query_one("#no-witness", Checkbox).value = form.no_witness
        for scope in ConsentScope:
            self.query_one(f"#consent-{scope.value}", Checkbox).value = scope in form.consent_scopes
        self.show_witness(witness_code, no_witness=form.no_witness)

    def show_witness(self, code: str, *, no_witness: bool) -> None:
        self.query_one("#witness-code", Label).update("none" if no_witness else code)

    def show_attachments(self, refs: tuple[AttachmentRef, ...]) -> None:
        self.query_one(AttachmentList).show(refs)

    def mark_problems(self, problems: Iterable[FieldProblem]) -> None:
        """Flag the widget of every field at fault; clear the flag on the others."""
        at_fault = {_widget_for(p.field) for p in problems}
        for selector in set(FIELD_WIDGETS.values()):
            self.query_one(selector).set_class(selector in at_fault, "-invalid")


def _widget_for(field: str) -> str | None:
    matches = [
        key for key in FIELD_WIDGETS if field == key or field.startswith((f"{key}.", f"{key}["))
    ]
    return FIELD_WIDGETS[max(matches, key=len)] if matches else None
