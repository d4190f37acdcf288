"""First run: choose a passphrase, write down the recovery code, enrol with HQ (or later)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, ContentSwitcher, Footer, Input, Label, LoadingIndicator
from textual.worker import Worker, WorkerState

from fieldapp.domain.passphrase import estimate
from fieldapp.ui.base import BaseScreen
from fieldapp.ui.errors import describe
from fieldapp.ui.widgets.enrolment import EnrolmentPanel


class SetupScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="choose", id="steps"):
            with Vertical(id="choose", classes="step"):
                yield Label("Welcome to fieldapp", classes="title")
                yield Label(
                    "Everything you record is encrypted on this laptop. Choose a passphrase: "
                    "several unrelated words are strong and easy to remember."
                )
                yield Input(password=True, placeholder="Passphrase", id="first")
                yield Label("", id="strength", classes="hint")
                yield Input(password=True, placeholder="The same passphrase again", id="second")
                yield Label("", id="setup-error", classes="error")
                yield LoadingIndicator(id="creating")
                yield Button("Create", id="create", variant="primary")
            with Vertical(id="recovery", classes="step"):
                yield Label("Your recovery code", classes="title")
                yield Label(
                    "Write this code on paper now and keep it apart from the laptop. It opens "
                    "your records if you forget the passphrase. It is shown only this once.",
                )
                yield Label("", id="code")
                yield Button("I have written it down", id="written", variant="primary")
            with Vertical(id="enrol", classes="step"):
                yield EnrolmentPanel(id="enrolment")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#creating").display = False
        self.query_one("#first", Input).focus()

    @on(Input.Changed, "#first")
    def strength(self, event: Input.Changed) -> None:
        verdict = estimate(event.value) if event.value else None
        text = "" if verdict is None else f"Strength: {verdict.label}. {verdict.advice}"
        self.query_one("#strength", Label).update(text)

    @on(Input.Submitted, "#first")
    def next_field(self) -> None:
        self.query_one("#second", Input).focus()

    @on(Input.Submitted, "#second")
    @on(Button.Pressed, "#create")
    def create_pressed(self) -> None:
        first = self.query_one("#first", Input)
        second = self.query_one("#second", Input)
        error = self.query_one("#setup-error", Label)
        if not estimate(first.value).acceptable:
            error.update(estimate(first.value).advice)
            first.focus()
            return
        if first.value != second.value:
            error.update("The two passphrases differ; type them again.")
            second.value = ""
            second.focus()
            return
        error.update("")
        for widget in (first, second, self.query_one("#create", Button)):
            widget.disabled = True
        self.query_one("#creating").display = True
        self.create(first.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="create")
    def create(self, passphrase: str) -> str:
        return str(self.app.session.create(passphrase))  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "create" or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
        ):
            return
        self.query_one("#creating").display = False
        first, second = self.query_one("#first", Input), self.query_one("#second", Input)
        first.value = second.value = ""
        if event.state is WorkerState.SUCCESS:
            self.query_one("#code", Label).update(str(event.worker.result))
            self.query_one("#steps", ContentSwitcher).current = "recovery"
            self.query_one("#written", Button).focus()
            return
        for widget in (first, second, self.query_one("#create", Button)):
            widget.disabled = False
        self.query_one("#setup-error", Label).update(describe(event.worker.error)[1])
        first.focus()

    @on(Button.Pressed, "#written")
    def written(self) -> None:
        self.query_one("#code", Label).update("")
        self.query_one("#steps", ContentSwitcher).current = "enrol"
        self.query_one("#enrolment", EnrolmentPanel).start()

    @on(EnrolmentPanel.Done)
    def enrolment_done(self) -> None:
        self.app.show_testimonies()  # type: ignore[attr-defined]
