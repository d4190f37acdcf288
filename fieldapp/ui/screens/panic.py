"""Panic: a short confirmation, then the crypto-erase, then exit."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label
from textual.worker import Worker, WorkerState

from fieldapp.ui.base import BaseModal

CONFIRM_WORD = "ERASE"


class PanicScreen(BaseModal[bool]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="panic-box"):
            yield Label("Erase everything on this laptop?", classes="title")
            yield Label(
                "The keys are destroyed at once; no one, you included, can read these "
                f"records again. Type {CONFIRM_WORD} and press enter, or escape to cancel."
            )
            yield Input(placeholder=CONFIRM_WORD, id="confirm")

    def on_mount(self) -> None:
        self.query_one("#confirm", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(result=False)

    @on(Input.Submitted, "#confirm")
    def confirmed(self, event: Input.Submitted) -> None:
        if event.value.strip() != CONFIRM_WORD:
            self.dismiss(result=False)
            return
        self.erase()

    @work(thread=True, exclusive=True, exit_on_error=False, group="panic")
    def erase(self) -> float:
        return float(self.app.session.panic())  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "panic" and event.state is WorkerState.SUCCESS:
            self.app.exit(message="fieldapp: erased. The keys are destroyed.")
        elif event.state is WorkerState.ERROR:
            super().on_worker_state_changed(event)
