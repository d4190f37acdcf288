"""A file picker: browse with a directory tree or type a path; returns a Path or None."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DirectoryTree, Footer, Input, Label

from fieldapp.ui.base import BaseModal


class _Tree(DirectoryTree):
    """Hidden files are left out: they are rarely evidence and crowd a home folder."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")]


class FilePickerScreen(BaseModal[Path | None]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, start: Path, *, title: str = "Attach a file") -> None:
        super().__init__()
        self.start = start
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Label(self.title_text, classes="title")
            yield _Tree(self.start, id="picker-tree")
            yield Input(
                placeholder="Or type a path (from the folder above), Enter", id="picker-path"
            )
            yield Label("", id="picker-error", classes="error", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#picker-tree", DirectoryTree).focus()

    @on(DirectoryTree.FileSelected, "#picker-tree")
    def file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.choose(event.path)

    @on(Input.Submitted, "#picker-path")
    def path_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if text:
            path = Path(text).expanduser()
            # A relative path means inside the folder the tree shows, not the process's cwd.
            self.choose(path if path.is_absolute() else self.start / path)

    def choose(self, path: Path) -> None:
        # A quick stat, not I/O worth a worker; the store reads the file in its own.
        if not path.is_file():
            self.query_one("#picker-error", Label).update(
                "There is no file at that path; pick one in the tree or check the spelling."
            )
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
