"""Unlock: the passphrase, with Argon2id in a worker and a visible indicator."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Input, Label, LoadingIndicator
from textual.worker import Worker, WorkerState

from fieldapp.ui.base import BaseScreen
from fieldapp.ui.errors import describe


class UnlockScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")

    def __init__(self, *, locked: bool = False) -> None:
        super().__init__()
        self.locked = locked

    def compose(self) -> ComposeResult:
        with Vertical(id="unlock-box"):
            yield Label("fieldapp", classes="title")
            yield Label(
                "Locked. Enter the passphrase to continue."
                if self.locked
                else "Enter the passphrase (or the recovery code) to open your records.",
                id="unlock-prompt",
            )
            yield Input(password=True, placeholder="Passphrase", id="passphrase")
            yield LoadingIndicator(id="unlocking")
            yield Label("", id="unlock-error", classes="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#unlocking").display = False
        self.query_one("#passphrase", Input).focus()

    @on(Input.Submitted, "#passphrase")
    def submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            return
        field = self.query_one("#passphrase", Input)
        field.disabled = True
        self.query_one("#unlocking").display = True
        self.query_one("#unlock-error", Label).update("")
        self.unlock(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="unlock")
    def unlock(self, passphrase: str) -> str | None:
        note: str | None = self.app.session.unlock(passphrase)  # type: ignore[attr-defined]
        return note

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "unlock" or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
        ):
            return
        field = self.query_one("#passphrase", Input)
        self.query_one("#unlocking").display = False
        field.disabled = False
        field.value = ""
        if event.state is WorkerState.SUCCESS:
            note = event.worker.result
            if isinstance(note, str):  # an interrupted key change was settled
                self.app.notify(note, title="Keys", severity="warning", timeout=60)
            self.app.show_testimonies()  # type: ignore[attr-defined]
            return
        _, sentence = describe(event.worker.error)
        self.query_one("#unlock-error", Label).update(sentence)
        field.focus()
