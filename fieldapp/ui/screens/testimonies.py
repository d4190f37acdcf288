"""The testimony list: paged, sortable, filterable by status, searchable with ``/``.

Only one page (PAGE_SIZE rows) is ever in the table, so it stays fast with
100,000 testimonies. Every query runs in a thread worker; a newer query cancels
an older one (exclusive group), so typing in the search bar never queues up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Label
from textual.worker import Worker, WorkerState

from fieldapp.domain import Status
from fieldapp.store.errors import SearchCancelled
from fieldapp.store.records import Summary
from fieldapp.store.store import Sort
from fieldapp.ui.base import BaseScreen

PAGE_SIZE = 100
STATUS_CYCLE: tuple[Status | None, ...] = (None, *Status)
SORT_CYCLE = tuple(Sort)
COLUMNS = (
    ("ID", 8),
    ("Taken", 10),
    ("Incident", 10),
    ("Status", 9),
    ("Witness", 11),
    ("Place", 14),
    ("Violations", 30),
)
SORT_LABELS = {Sort.UPDATED: "last change", Sort.TAKEN: "date taken", Sort.INCIDENT: "incident"}


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Summary]
    total: int | None  # None for search results


class TestimoniesScreen(BaseScreen):
    __test__ = False  # not a pytest test class, despite the name
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("f", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("right_square_bracket", "next_page", "Next page", show=False),
        Binding("left_square_bracket", "previous_page", "Prev page", show=False),
        Binding("y", "sync", "Sync"),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status: Status | None = None
        self.sort = Sort.UPDATED
        self.page_offset = 0
        self.query_text = ""
        self.rows: list[Summary] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search: Arabic or Latin words", id="search")
        yield Label("", id="where", classes="hint")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        search = self.query_one("#search", Input)
        search.display = False
        table = self.query_one("#table", DataTable)
        # Fixed widths: measured widths are computed only when the table is idle, so
        # a frame drawn before that kept rows cut to the headers' widths. Place comes
        # before violations so that at 80 columns it is on screen.
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.focus()
        self.reload()

    # ------------------------------------------------------------ loading

    def reload(self) -> None:
        self.load(self.query_text, self.status, self.sort, self.page_offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="list")
    def load(self, text: str, status: Status | None, sort: Sort, offset: int) -> Page:
        store = self.app.session.store  # type: ignore[attr-defined]
        if text.strip():
            return Page(store.search(text, limit=PAGE_SIZE), None)
        return Page(
            store.page(status=status, sort=sort, limit=PAGE_SIZE, offset=offset),
            store.count(status),
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "list" and event.state is WorkerState.SUCCESS:
            result = event.worker.result
            if isinstance(result, Page):
                self.show(result)
        elif event.state is WorkerState.ERROR and not isinstance(
            event.worker.error, SearchCancelled
        ):
            super().on_worker_state_changed(event)

    def show(self, page: Page) -> None:
        self.rows = page.rows
        table = self.query_one("#table", DataTable)
        table.clear()
        for r in page.rows:
            table.add_row(
                r.id[:8],
                r.taken_at[:10],
                r.incident or "-",
                r.status.value,
                r.witness_code or "-",
                r.place,
                ", ".join(r.violations) or "-",
                key=r.id,
            )
        self.query_one("#where", Label).update(self.describe(page))

    def describe(self, page: Page) -> str:
        if page.total is None:
            return f"{len(page.rows)} found for the search. Escape clears it."
        status = self.status.value if self.status else "all"
        if not page.total:
            return f"No testimonies ({status}). Press n to record one."
        first, last = self.page_offset + 1, self.page_offset + len(page.rows)
        return (
            f"{first}-{last} of {page.total} ({status}), by {SORT_LABELS[self.sort]}. "
            "/ search  f filter  o sort  [ ] pages  F1 help"
        )

    # ------------------------------------------------------------ actions

    def selected_id(self) -> str | None:
        table = self.query_one("#table", DataTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row].id

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.page_offset = 0
        # The newer query replaces the older: stop the older one in SQLite too,
        # or it would hold the store until it finished.
        self.app.session.store.cancel_search()  # type: ignore[attr-defined]
        self.reload()

    @on(Input.Submitted, "#search")
    def search_submitted(self) -> None:
        self.query_one("#table", DataTable).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.display or self.query_text:
            search.value = ""
            search.display = False
            self.query_text = ""
            self.query_one("#table", DataTable).focus()
            self.reload()

    def action_filter(self) -> None:
        index = STATUS_CYCLE.index(self.status)
        self.status = STATUS_CYCLE[(index + 1) % len(STATUS_CYCLE)]
        self.page_offset = 0
        self.reload()

    def action_sort(self) -> None:
        self.sort = SORT_CYCLE[(SORT_CYCLE.index(self.sort) + 1) % len(SORT_CYCLE)]
        self.page_offset = 0
        self.reload()

    def action_next_page(self) -> None:
        if not self.query_text and len(self.rows) == PAGE_SIZE:
            self.page_offset += PAGE_SIZE
            self.reload()

    def action_previous_page(self) -> None:
        if not self.query_text and self.page_offset:
            self.page_offset = max(0, self.page_offset - PAGE_SIZE)
            self.reload()

    @on(DataTable.RowSelected, "#table")
    def open_selected(self) -> None:
        record_id = self.selected_id()
        if record_id is not None:
            from fieldapp.ui.screens.detail import DetailScreen  # noqa: PLC0415

            self.app.push_screen(DetailScreen(record_id), callback=lambda _: self.reload())

    def action_edit(self) -> None:
        record_id = self.selected_id()
        if record_id is not None:
            self.open_editor(record_id)

    def action_new(self) -> None:
        self.open_editor(None)

    def open_editor(self, record_id: str | None) -> None:
        from fieldapp.ui.screens.editor import EditorScreen  # noqa: PLC0415

        self.app.push_screen(EditorScreen(record_id), callback=lambda _: self.reload())

    def action_sync(self) -> None:
        from fieldapp.ui.screens.sync import SyncScreen  # noqa: PLC0415

        self.app.push_screen(SyncScreen(), callback=lambda _: self.reload())
