"""Sync: what is queued, the last result, a progress bar per transfer, export and send.

The screen talks only to ``session.transfers`` (fieldapp.transfer.Transfers), so the
bundle and relay transports plug in without touching it. Every call blocks and
runs in a thread worker; progress comes back to the UI thread as a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar
from textual.worker import Worker, WorkerState

from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.records import Summary
from fieldapp.transfer import Progress, TransferResult
from fieldapp.ui.base import BaseScreen

if TYPE_CHECKING:
    from fieldapp.session import Session
    from fieldapp.ui.app import FieldApp

LOAD_GROUP = "sync-load"
TRANSFER_GROUP = "sync-transfer"


class FolderMissing(FieldappError):
    """The export folder does not exist: we never create one on the laptop's own disk."""

    exit_code = ExitCode.IO

    def __init__(self) -> None:
        super().__init__(
            "There is no folder at that path; plug in the USB stick or check the path."
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    queued: list[Summary]
    last: TransferResult | None


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def describe_result(result: TransferResult | None) -> str:
    if result is None:
        return "Last transfer: none yet."
    return (
        f"Last transfer: {plural(result.bundles, 'bundle')}, {human_bytes(result.bytes)} "
        f"to {result.destination}, {result.finished_at}."
    )


class SyncScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("x", "export", "Export"),
        Binding("s", "push", "Send"),
    ]

    class Progressed(Message):
        """A transfer moved on; posted from the worker thread."""

        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.bars: dict[str, ProgressBar] = {}
        self.last: TransferResult | None = None

    @property
    def session(self) -> Session:
        return cast("FieldApp", self.app).session

    def compose(self) -> ComposeResult:
        with Vertical(id="sync"):
            yield Label("Sync", classes="title")
            yield Label("", id="last", classes="hint")
            yield Label("Loading the queue...", id="queue-heading")
            yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
            yield VerticalScroll(id="transfers")
            yield Input(
                placeholder="Folder to export to (the USB stick); enter starts, escape cancels",
                id="folder",
            )
            yield Label("", id="sync-error", classes="error")
            with Horizontal(id="sync-buttons"):
                yield Button("Export to folder", id="export", variant="primary")
                yield Button("Send to relay", id="push")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#folder", Input).display = False
        self.query_one("#transfers").display = False
        table = self.query_one("#queue", DataTable)
        table.add_columns("ID", "Rev", "Status", "Taken", "Changed")
        table.focus()
        self.load()

    # ------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, exit_on_error=False, group=LOAD_GROUP)
    def load(self) -> Snapshot:
        transfers = self.session.transfers
        return Snapshot(transfers.queued(self.session.store), transfers.last_result())

    def show_snapshot(self, snapshot: Snapshot) -> None:
        table = self.query_one("#queue", DataTable)
        table.clear()
        for s in snapshot.queued:
            table.add_row(
                s.id[:8],
                str(s.seq),
                s.status.value,
                s.taken_at[:10],
                s.updated_at[:16].replace("T", " "),
                key=s.id,
            )
        count = len(snapshot.queued)
        heading = (
            f"Queued: {count} {'testimony' if count == 1 else 'testimonies'} "
            "with changes not yet sent."
            if count
            else "Nothing queued: every change has been sent."
        )
        self.query_one("#queue-heading", Label).update(heading)
        if snapshot.last is not None:
            self.last = snapshot.last
        self.query_one("#last", Label).update(describe_result(self.last))

    # ------------------------------------------------------------ transfers

    def action_export(self) -> None:
        if self.busy:
            return
        folder = self.query_one("#folder", Input)
        folder.display = True
        folder.focus()

    @on(Button.Pressed, "#export")
    def export_pressed(self) -> None:
        self.action_export()

    @on(Input.Submitted, "#folder")
    def folder_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.busy:
            return
        self.hide_folder()
        self.start()
        self.export(Path(text).expanduser())

    def action_push(self) -> None:
        if self.busy:
            return
        self.start()
        self.push()

    @on(Button.Pressed, "#push")
    def push_pressed(self) -> None:
        self.action_push()

    def start(self) -> None:
        self.busy = True
        self.query_one("#sync-error", Label).update("")
        for button in self.query(Button):
            button.disabled = True
        transfers = self.query_one("#transfers", VerticalScroll)
        transfers.remove_children()
        transfers.display = False
        self.bars.clear()

    def finish(self) -> None:
        self.busy = False
        for button in self.query(Button):
            button.disabled = False

    def report(self, progress: Progress) -> None:
        """The worker's progress callback: runs in the worker thread."""
        self.post_message(self.Progressed(progress))

    @work(thread=True, exclusive=True, exit_on_error=False, group=TRANSFER_GROUP)
    def export(self, folder: Path) -> TransferResult:
        if not folder.is_dir():
            raise FolderMissing
        return self.session.transfers.export(self.session.store, folder, self.report)

    @work(thread=True, exclusive=True, exit_on_error=False, group=TRANSFER_GROUP)
    def push(self) -> TransferResult:
        return self.session.transfers.push(self.session.store, self.report)

    def on_sync_screen_progressed(self, message: Progressed) -> None:
        p = message.progress
        bar = self.bars.get(p.transfer)
        if bar is None:
            bar = self.bars[p.transfer] = ProgressBar(show_eta=False)
            transfers = self.query_one("#transfers", VerticalScroll)
            transfers.display = True
            transfers.mount(
                Horizontal(Label(p.transfer[:24], classes="transfer-name"), bar, classes="transfer")
            )
        bar.update(total=p.total or None, progress=p.done)

    # ------------------------------------------------------------ results

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group == LOAD_GROUP and event.state is WorkerState.SUCCESS:
            result = event.worker.result
            if isinstance(result, Snapshot):
                self.show_snapshot(result)
        elif group == TRANSFER_GROUP and event.state is WorkerState.SUCCESS:
            result = event.worker.result
            self.finish()
            if isinstance(result, TransferResult):
                self.last = result
                self.query_one("#last", Label).update(describe_result(result))
            self.load()  # what was sent has left the queue
        elif event.state is WorkerState.ERROR:
            if group == TRANSFER_GROUP:
                self.finish()
            super().on_worker_state_changed(event)
        elif group == TRANSFER_GROUP and event.state is WorkerState.CANCELLED:
            self.finish()

    def show_error(self, title: str, sentence: str) -> None:
        line = Text.assemble((title, "bold"), ": ", sentence)
        self.query_one("#sync-error", Label).update(line)

    # ------------------------------------------------------------ leaving

    def hide_folder(self) -> None:
        folder = self.query_one("#folder", Input)
        folder.value = ""
        folder.display = False
        self.query_one("#queue", DataTable).focus()

    def action_back(self) -> None:
        if self.query_one("#folder", Input).display:
            self.hide_folder()
            return
        self.dismiss(None)
