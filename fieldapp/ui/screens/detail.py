"""One testimony in full, with its verified revision history."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Label, Static
from textual.worker import Worker, WorkerState

from fieldapp.store.records import HistoryEntry, StoredTestimony
from fieldapp.ui.base import BaseScreen


class DetailScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("e", "edit", "Edit"),
    ]

    def __init__(self, record_id: str) -> None:
        super().__init__()
        self.record_id = record_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Label("", id="heading", classes="title")
            yield Static("", id="fields")
            yield Label("Narrative", classes="title")
            yield Static("", id="narrative")
            yield Label("Revision history (chain verified)", classes="title")
            yield DataTable(id="history", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#history", DataTable).add_columns(
            "Rev", "Saved", "Status", "Hash", "Narrative length"
        )
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail")
    def load(self) -> tuple[StoredTestimony, list[HistoryEntry]]:
        store = self.app.session.store  # type: ignore[attr-defined]
        record = store.get(self.record_id)
        return record, store.history(record.id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "detail" and event.state is WorkerState.SUCCESS:
            record, history = event.worker.result  # type: ignore[misc]
            self.show(record, history)
        elif event.state is WorkerState.ERROR:
            super().on_worker_state_changed(event)

    def show(self, record: StoredTestimony, history: list[HistoryEntry]) -> None:
        t = record.testimony
        incident_place = t.incident_place.text if t.incident_place else ""
        self.query_one("#heading", Label).update(
            f"Testimony {record.id}  revision {record.seq}  {t.status.value}"
        )
        lines = [
            f"Taken:       {t.taken_at.isoformat(timespec='minutes')}  {t.taken_place.text}",
            f"Language:    {t.language}",
            f"Incident:    {t.incident_date or '-'}  {incident_place}",
            f"Violations:  {', '.join(t.violations) or '-'}",
            f"Witness:     {t.witness_code or '-'}"
            + (
                "  (identity recorded)"
                if record.identity and not record.identity.is_empty()
                else ""
            ),
            f"Source:      {t.source_type.value}, reliability {t.reliability.value}",
            f"Victims:     {t.victims.count if t.victims.count is not None else 'unknown'}",
        ]
        lines += [f"Perpetrator: {p.description} {p.affiliation}".rstrip() for p in t.perpetrators]
        if t.consent is not None:
            scopes = ", ".join(sorted(s.value for s in t.consent.scopes))
            lines.append(f"Consent:     {scopes}, taken {t.consent.taken_on}")
        lines += [f"Attachment:  {a.filename}  sha256 {a.sha256}" for a in t.attachments]
        self.query_one("#fields", Static).update("\n".join(lines))
        self.query_one("#narrative", Static).update(t.narrative or "(empty)")
        table = self.query_one("#history", DataTable)
        table.clear()
        for h in history:
            table.add_row(
                str(h.seq), h.created_at, h.testimony.status.value, h.hash[:16],
                str(len(h.testimony.narrative)),
            )  # fmt: skip

    def action_back(self) -> None:
        self.dismiss(None)

    def action_edit(self) -> None:
        from fieldapp.ui.screens.editor import EditorScreen  # noqa: PLC0415

        self.app.switch_screen(EditorScreen(self.record_id))
