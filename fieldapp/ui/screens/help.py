"""Help: every key binding of the app and of the screen underneath."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Label

from fieldapp.ui.base import BaseScreen

KEYS: tuple[tuple[str, str, str], ...] = (
    ("Anywhere", "ctrl+l", "Lock now: the screen shows nothing until the passphrase"),
    ("Anywhere", "f1", "This help"),
    ("Anywhere", "f10", "Panic: crypto-erase this laptop's records (asks first)"),
    ("Anywhere", "ctrl+q", "Quit"),
    ("List", "/", "Search (Arabic or Latin); escape clears"),
    ("List", "n", "New testimony"),
    ("List", "enter", "Open the selected testimony"),
    ("List", "e", "Edit the selected testimony"),
    ("List", "f", "Filter by status: all, draft, ready, sent, confirmed"),
    ("List", "o", "Sort by: last change, date taken, incident date"),
    ("List", "] / [", "Next / previous page"),
    ("List", "y", "Sync: enrolment, what is queued, export to a folder"),
    ("Editor", "ctrl+s", "Save now (drafts also save themselves)"),
    ("Editor", "ctrl+r", "Mark ready"),
    ("Editor", "ctrl+o", "Attach a file"),
    ("Editor", "escape", "Save and go back"),
    ("Sync", "x", "Export to a folder (a USB stick)"),
    ("Sync", "s", "Send to the relay"),
    ("Sync", "e", "Enrol with HQ: import HQ's file, compare its fingerprint"),
    ("Sync", "escape", "Back to the list"),
    ("Detail", "e", "Edit"),
    ("Detail", "escape", "Back to the list"),
)


class HelpScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label("Keys", classes="title")
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("Where", "Key", "What it does")
        for row in KEYS:
            table.add_row(*row)
        table.focus()
