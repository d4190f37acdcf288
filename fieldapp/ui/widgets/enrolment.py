"""Enrolment with HQ: choose HQ's file, compare the HQ fingerprint, then enrol.

Used as the setup wizard's last step and, for a device set up without it, from
the sync screen (``EnrolScreen``). Two steps in one widget:

1. *choose*: a path (typed, or through the file picker); the file is read and
   verified in a worker (``Session.read_enrolment``). A damaged, tampered or
   unreadable file is refused in one line and the step stays.
2. *compare*: the device name and the HQ fingerprint in groups of five, to be
   compared digit by digit with what HQ read out by another channel. "It
   matches: enrol" keeps it (``Session.enrol``); "It does not match: cancel"
   keeps nothing and goes back to step 1. The cancel button has the focus, so
   Enter pressed by reflex never enrols.

The widget posts ``EnrolmentPanel.Done`` when the monitor enrolled or chose to
enrol later; its host decides where to go next.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, ContentSwitcher, Input, Label, LoadingIndicator
from textual.worker import Worker, WorkerState

from fieldapp.session import EnrolmentPreview
from fieldapp.ui.errors import describe

if TYPE_CHECKING:
    from fieldapp.session import Session
    from fieldapp.ui.app import FieldApp

SETUP_INTRO = (
    "If HQ gave you an enrolment file (on a USB stick, say), choose it now. "
    "You can also enrol later: y opens sync, then e."
)
LATER_INTRO = "Choose the enrolment file HQ gave you (on a USB stick, say)."
READ_GROUP = "enrol-read"
ENROL_GROUP = "enrol-keep"
COMPARE_TEXT = (
    "Compare it digit by digit with the fingerprint HQ read out to you by phone or in "
    "person, not with anything that came with the file. If a single digit differs, the "
    "file may be forged: do not enrol."
)
MISMATCH_TEXT = (
    "Nothing was imported. The file may be forged: tell HQ by another channel and ask "
    "for a new one."
)


def error_line(error: BaseException | None) -> Text:
    """A refusal as the panel shows it: a bold title and the exception's own sentence."""
    title, sentence = describe(error)
    if title == "Not done":
        title = "Not imported"
    return Text.assemble((title, "bold"), ": ", sentence)


class EnrolmentPanel(Vertical):
    """Choose, verify, compare and enrol. Posts ``Done`` when finished or skipped."""

    DEFAULT_CSS = """
    EnrolmentPanel, EnrolmentPanel #enrol-steps, EnrolmentPanel .enrol-step {
        height: auto;
    }
    EnrolmentPanel .enrol-step Label {
        width: 100%;
    }
    EnrolmentPanel Input {
        margin-top: 1;
    }
    EnrolmentPanel #enrol-busy {
        height: 1;
    }
    EnrolmentPanel #enrol-fingerprint {
        text-style: bold;
        color: $accent;
        padding: 1 2;
    }
    EnrolmentPanel .enrol-buttons {
        height: auto;
        margin-top: 1;
    }
    EnrolmentPanel .enrol-buttons Button {
        margin-right: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Not now"),
    ]

    class Done(Message):
        """The monitor enrolled (``enrolled``) or chose not to now."""

        def __init__(self, *, enrolled: bool, device_name: str | None = None) -> None:
            super().__init__()
            self.enrolled = enrolled
            self.device_name = device_name

    def __init__(
        self,
        *,
        skip_label: str = "Skip, enrol later",
        intro: str = SETUP_INTRO,
        browse_start: Path | None = None,
        id: str | None = None,  # noqa: A002 -- Textual's own parameter name
    ) -> None:
        super().__init__(id=id)
        self.skip_label = skip_label
        self.intro = intro
        self.browse_start = browse_start or Path.home()
        self.preview: EnrolmentPreview | None = None
        self.working = False  # a file is being read or an enrolment kept

    @property
    def session(self) -> Session:
        return cast("FieldApp", self.app).session

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="enrol-choose", id="enrol-steps"):
            with Vertical(id="enrol-choose", classes="enrol-step"):
                yield Label("Enrol with HQ", classes="title")
                yield Label(self.intro)
                yield Input(placeholder="Path to HQ's enrolment file, Enter", id="enrol-path")
                yield LoadingIndicator(id="enrol-busy")
                yield Label("", id="enrol-error", classes="error", markup=False)
                with Horizontal(classes="enrol-buttons"):
                    yield Button("Check file", id="enrol-check", variant="primary")
                    yield Button("Browse...", id="enrol-browse")
                    yield Button(self.skip_label, id="enrol-skip")
            with Vertical(id="enrol-compare", classes="enrol-step"):
                yield Label("Compare the HQ fingerprint", classes="title")
                yield Label("", id="enrol-device", markup=False)
                yield Label("", id="enrol-fingerprint", markup=False)
                yield Label(COMPARE_TEXT)
                with Horizontal(classes="enrol-buttons"):
                    yield Button("It matches: enrol", id="enrol-yes", variant="success")
                    yield Button("It does not match: cancel", id="enrol-no", variant="error")

    def on_mount(self) -> None:
        self.query_one("#enrol-busy").display = False

    def start(self) -> None:
        """Show step 1 with the focus in the path field."""
        self.query_one("#enrol-steps", ContentSwitcher).current = "enrol-choose"
        self.query_one("#enrol-path", Input).focus()

    # ------------------------------------------------------------ step 1: choose

    @on(Input.Submitted, "#enrol-path")
    @on(Button.Pressed, "#enrol-check")
    def check_pressed(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        text = self.query_one("#enrol-path", Input).value.strip()
        if not text:
            self.query_one("#enrol-error", Label).update(
                "Type the path of the enrolment file, or choose Browse."
            )
            return
        self.check(Path(text).expanduser())

    @on(Button.Pressed, "#enrol-browse")
    def browse_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        from fieldapp.ui.screens.filepicker import FilePickerScreen  # noqa: PLC0415

        self.app.push_screen(
            FilePickerScreen(self.browse_start, title="Choose HQ's enrolment file"),
            callback=self.picked,
        )

    def picked(self, path: Path | None) -> None:
        if path is None:
            self.query_one("#enrol-path", Input).focus()
            return
        self.query_one("#enrol-path", Input).value = str(path)
        self.check(path)

    def check(self, path: Path) -> None:
        self.busy(busy=True)
        self.query_one("#enrol-error", Label).update("")
        self.read(path)

    def busy(self, *, busy: bool) -> None:
        self.working = busy
        self.query_one("#enrol-busy").display = busy
        for widget in self.query("#enrol-choose Input, #enrol-choose Button"):
            widget.disabled = busy

    @work(thread=True, exclusive=True, exit_on_error=False, group=READ_GROUP)
    def read(self, path: Path) -> EnrolmentPreview:
        return self.session.read_enrolment(path)

    @on(Button.Pressed, "#enrol-skip")
    def skip_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_skip()

    def action_skip(self) -> None:
        if self.working:
            return  # a file is being read or kept: wait for it
        self.forget()
        self.post_message(self.Done(enrolled=False))

    def action_back(self) -> None:
        """Escape: on step 2 the same as "does not match"; on step 1, enrol later."""
        if self.working:
            return
        if self.query_one("#enrol-steps", ContentSwitcher).current == "enrol-compare":
            self.cancel()
        else:
            self.action_skip()

    # ------------------------------------------------------------ step 2: compare

    def show_preview(self, preview: EnrolmentPreview) -> None:
        self.preview = preview
        relay = "" if preview.relay is None else f" Its relay: {preview.relay}."
        self.query_one("#enrol-device", Label).update(
            Text.assemble(
                "This file enrols this laptop with HQ as ",
                (preview.device_name, "bold"),
                f".{relay} HQ's fingerprint in this file is:",
            )
        )
        self.query_one("#enrol-fingerprint", Label).update("   ".join(preview.fingerprint_groups))
        self.query_one("#enrol-steps", ContentSwitcher).current = "enrol-compare"
        self.query_one("#enrol-no", Button).focus()

    @on(Button.Pressed, "#enrol-yes")
    def matches(self, event: Button.Pressed) -> None:
        event.stop()
        preview = self.preview
        if preview is None or self.working:
            return
        self.working = True
        for button in self.query("#enrol-compare Button"):
            button.disabled = True
        self.keep(preview)

    @work(thread=True, exclusive=True, exit_on_error=False, group=ENROL_GROUP)
    def keep(self, preview: EnrolmentPreview) -> str:
        self.session.enrol(preview)
        return preview.device_name

    @on(Button.Pressed, "#enrol-no")
    def does_not_match(self, event: Button.Pressed) -> None:
        event.stop()
        if not self.working:
            self.cancel()

    def cancel(self) -> None:
        self.forget()
        self.query_one("#enrol-error", Label).update(MISMATCH_TEXT)
        self.start()

    def forget(self) -> None:
        """Drop the preview (it holds the one-time secret) and clear step 2."""
        self.preview = None
        for selector in ("#enrol-device", "#enrol-fingerprint"):
            self.query_one(selector, Label).update("")

    # ------------------------------------------------------------ results

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        event.stop()
        group = event.worker.group
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        if group == READ_GROUP:
            self.busy(busy=False)
            if event.state is WorkerState.SUCCESS and isinstance(
                event.worker.result, EnrolmentPreview
            ):
                self.show_preview(event.worker.result)
                return
            self.query_one("#enrol-error", Label).update(error_line(event.worker.error))
            self.query_one("#enrol-path", Input).focus()
        elif group == ENROL_GROUP:
            self.working = False
            for button in self.query("#enrol-compare Button"):
                button.disabled = False
            if event.state is WorkerState.SUCCESS:
                name = str(event.worker.result)
                self.forget()
                self.app.notify(f"Enrolled with HQ as {name}.", title="Enrolled", markup=False)
                self.post_message(self.Done(enrolled=True, device_name=name))
                return
            line = error_line(event.worker.error)
            self.forget()
            self.query_one("#enrol-error", Label).update(line)
            self.start()
