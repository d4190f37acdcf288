"""What every screen shares: one place where worker failures become a message."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from fieldapp.ui.errors import describe


class WorkerErrors:
    """Mixin: a failed worker is shown as a title and one sentence, never str(e)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            title, sentence = describe(event.worker.error)
            self.show_error(title, sentence)

    def show_error(self, title: str, sentence: str) -> None:
        self.app.notify(sentence, title=title, severity="error", timeout=8)  # type: ignore[attr-defined]


class BaseScreen(WorkerErrors, Screen[None]):
    pass


ResultT = TypeVar("ResultT")


class BaseModal(WorkerErrors, ModalScreen[ResultT], Generic[ResultT]):
    pass
