"""Sync: enrolment, what is queued, the last result, a progress bar per transfer.

The screen talks to ``session.transfers`` (fieldapp.transfer.Transfers; the app
uses sync.usb.UsbTransfers, sealed bundles to a folder) and asks the session
whether the device is enrolled; a device that is not gets "Enrol with HQ" (e),
the setup wizard's enrolment step. Every call blocks and runs in a thread
worker; progress comes back to the UI thread as a message.
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

from fieldapp.domain import Status
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.session import EnrolmentStatus
from fieldapp.store.records import Summary
from fieldapp.transfer import Progress, TransferResult
from fieldapp.ui.base import BaseScreen

if TYPE_CHECKING:
    from fieldapp.session import Session
    from fieldapp.ui.app import FieldApp

LOAD_GROUP = "sync-load"
# What a transport calls its transfers, as the progress bars name them.
TRANSFER_NAMES = {"seal": "Sealing bundles", "usb": "To the folder", "relay": "To the relay"}
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
    enrolment: EnrolmentStatus


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def describe_enrolment(status: EnrolmentStatus) -> Text:
    if not status.enrolled:
        return Text.assemble(
            ("Not enrolled with HQ", "bold"),
            ": press e to import HQ's enrolment file.",
        )
    return Text.assemble(
        "Enrolled with HQ as ",
        (status.device_name or "", "bold"),
        f".\nHQ fingerprint: {status.fingerprint}",
    )


def describe_queue(queued: list[Summary]) -> str:
    if not queued:
        return "Nothing queued: every change has been sent."
    count = len(queued)
    ready = sum(s.status is Status.READY for s in queued)
    heading = (
        f"Queued: {count} {'testimony' if count == 1 else 'testimonies'} with changes not yet sent"
    )
    if ready == count:
        return f"{heading}."
    return f"{heading}; {ready} ready (drafts wait until marked ready)."


def describe_done(result: TransferResult, *, pushed: bool) -> str:
    """The status line after a transfer: what went where."""
    if not result.bundles:
        return (
            "Nothing to send: no testimony is marked ready, and every bundle has left before."
            if pushed
            else "Nothing to export: no testimony is marked ready, and every bundle was "
            "exported before."
        )
    done = f"Done: {plural(result.bundles, 'sealed bundle')}, {human_bytes(result.bytes)},"
    if pushed:
        return f"{done} sent to the relay."
    return f"{done} written to {result.destination}. Take it to HQ."


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
        Binding("e", "enrol", "Enrol with HQ"),
    ]

    class Progressed(Message):
        """A transfer moved on; posted from the worker thread."""

        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.pushing = False  # what the running or last transfer was
        self.bars: dict[str, ProgressBar] = {}
        self.last: TransferResult | None = None
        self.done: str = ""  # what the transfer finished on this screen did
        self.enrolment: EnrolmentStatus | None = None  # None until loaded

    @property
    def session(self) -> Session:
        return cast("FieldApp", self.app).session

    def compose(self) -> ComposeResult:
        with Vertical(id="sync"):
            yield Label("Sync", classes="title")
            yield Label("", id="enrolment", markup=False)
            yield Label("", id="last", classes="hint", markup=False)
            yield Label("Loading the queue...", id="queue-heading")
            yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
            yield VerticalScroll(id="transfers")
            yield Input(
                placeholder="Folder to export to (the USB stick); enter starts, escape cancels",
                id="folder",
            )
            yield Label("", id="sync-status", markup=False)
            yield Label("", id="sync-error", classes="error", markup=False)
            with Horizontal(id="sync-buttons"):
                yield Button("Export to folder", id="export", variant="primary")
                yield Button("Send to relay", id="push")
                yield Button("Enrol with HQ", id="enrol")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#folder", Input).display = False
        self.query_one("#transfers").display = False
        self.query_one("#enrol", Button).display = False
        self.line("#sync-status", "")
        self.line("#sync-error", "")
        table = self.query_one("#queue", DataTable)
        table.add_columns("ID", "Rev", "Status", "Taken", "Changed")
        table.focus()
        self.load()

    # ------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, exit_on_error=False, group=LOAD_GROUP)
    def load(self) -> Snapshot:
        session = self.session
        transfers = session.transfers
        return Snapshot(
            transfers.queued(session.store), transfers.last_result(), session.enrolment_status()
        )

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
        self.query_one("#queue-heading", Label).update(describe_queue(snapshot.queued))
        if snapshot.last is not None:
            self.last = snapshot.last
        self.query_one("#last", Label).update(self.done or describe_result(self.last))
        self.enrolment = snapshot.enrolment
        self.query_one("#enrolment", Label).update(describe_enrolment(snapshot.enrolment))
        self.query_one("#enrol", Button).display = not snapshot.enrolment.enrolled
        self.refresh_bindings()

    # ------------------------------------------------------------ enrolment

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        del parameters  # Textual's signature
        if action == "enrol":
            return self.enrolment is not None and not self.enrolment.enrolled
        return True

    def action_enrol(self) -> None:
        if self.busy or self.enrolment is None or self.enrolment.enrolled:
            return
        from fieldapp.ui.screens.enrol import EnrolScreen  # noqa: PLC0415

        self.line("#sync-error", "")
        self.app.push_screen(EnrolScreen(), callback=self.enrol_closed)

    @on(Button.Pressed, "#enrol")
    def enrol_pressed(self) -> None:
        self.action_enrol()

    def enrol_closed(self, enrolled: bool | None) -> None:
        if enrolled:
            self.line(
                "#sync-status", "Enrolled. Testimonies marked ready can now be sealed and exported."
            )
        self.load()

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
        folder = Path(text).expanduser()
        self.hide_folder()
        self.start(pushing=False)
        self.line("#sync-status", f"Sealing what is ready and writing the bundles to {folder}...")
        self.export(folder)

    def action_push(self) -> None:
        if self.busy:
            return
        self.start(pushing=True)
        self.line("#sync-status", "Sending to the relay...")
        self.push()

    @on(Button.Pressed, "#push")
    def push_pressed(self) -> None:
        self.action_push()

    def start(self, *, pushing: bool) -> None:
        self.busy = True
        self.pushing = pushing
        self.line("#sync-error", "")
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
            name = TRANSFER_NAMES.get(p.transfer, p.transfer)[:24]
            transfers.mount(
                Horizontal(Label(name, classes="transfer-name"), bar, classes="transfer")
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
                self.done = describe_done(result, pushed=self.pushing)
                self.query_one("#last", Label).update(self.done)
            self.line("#sync-status", "")
            self.load()  # what was sent has left the queue
        elif event.state is WorkerState.ERROR:
            if group == TRANSFER_GROUP:
                self.finish()
                self.line("#sync-status", "")
            super().on_worker_state_changed(event)
        elif group == TRANSFER_GROUP and event.state is WorkerState.CANCELLED:
            self.finish()
            self.line("#sync-status", "")

    def show_error(self, title: str, sentence: str) -> None:
        self.line("#sync-error", Text.assemble((title, "bold"), ": ", sentence))

    def line(self, selector: str, text: str | Text) -> None:
        """Show a one-line message, or hide its row when there is none."""
        label = self.query_one(selector, Label)
        label.update(text)
        label.display = bool(text)

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
