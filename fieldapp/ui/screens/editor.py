"""The testimony editor: every field, autosaved as a draft, marked ready on request.

Saving never blocks typing: the widgets are read into an immutable snapshot on
the UI thread and a thread worker writes it. Only one save runs at a time, and
requests made meanwhile are merged and run after it, so the first save creates
the record exactly once and a stale snapshot never overwrites a newer one.
Autosave runs when edits pause for ``autosave_delay`` seconds, and Escape saves
before leaving. Any edit turns the testimony back into a draft; Ctrl+R marks it
ready again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, TextArea
from textual.worker import Worker, WorkerState

from fieldapp.domain import ProtectedIdentity, Status, Testimony, ValidationError, Vocabulary
from fieldapp.store.records import StoredTestimony
from fieldapp.ui.base import BaseScreen
from fieldapp.ui.errors import describe
from fieldapp.ui.forms import FormContext, TestimonyForm, build, form_from
from fieldapp.ui.screens.filepicker import FilePickerScreen
from fieldapp.ui.widgets.testimony_fields import TestimonyFields
from fieldapp.ui.widgets.violations import ViolationPicker

AUTOSAVE_DELAY = 2.0
_LOAD, _SAVE = "editor-load", "editor-save"
# Programmatic filling posts these; they are not edits.
_CHANGE_MESSAGES = (
    Input.Changed,
    TextArea.Changed,
    Select.Changed,
    Checkbox.Changed,
    ViolationPicker.Changed,
)


@dataclass(frozen=True, slots=True)
class Loaded:
    record: StoredTestimony | None
    spare_code: str  # the witness code a testimony without one gets
    recorded_by: str
    vocabulary: Vocabulary
    now: datetime


@dataclass(slots=True)
class _Request:
    ready: bool = False
    close: bool = False
    forced: bool = False
    attach: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Job:
    record_id: str | None
    testimony: Testimony
    identity: ProtectedIdentity | None
    attach: tuple[Path, ...]
    form: TestimonyForm
    close: bool


class EditorScreen(BaseScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+r", "ready", "Mark ready"),
        Binding("ctrl+o", "attach", "Attach"),
        Binding("escape", "back", "Save & back"),
    ]

    class Saved(Message):
        """A revision was written: the list and tests may listen."""

        def __init__(self, record_id: str, seq: int, status: Status) -> None:
            super().__init__()
            self.record_id = record_id
            self.seq = seq
            self.status = status

    def __init__(
        self,
        record_id: str | None,
        *,
        autosave_delay: float = AUTOSAVE_DELAY,
        picker_start: Path | None = None,
    ) -> None:
        super().__init__()
        self.record_id = record_id
        self.autosave_delay = autosave_delay
        self.picker_start = picker_start
        self._ctx: FormContext | None = None  # None until loaded
        self._saved_form: TestimonyForm | None = None
        self._status = Status.DRAFT
        self._seq = 0
        self._timer: Timer | None = None
        self._pending: _Request | None = None
        self._inflight: _Job | None = None
        self._leave_unsaved = False  # armed when a save on leaving failed
        self._dismissed = False

    def compose(self) -> ComposeResult:
        yield Label("Loading…", id="editor-status", markup=False)
        yield Label("", id="editor-problem", classes="error", markup=False)
        yield TestimonyFields(id="form", disabled=True)
        yield Footer()

    @property
    def fields(self) -> TestimonyFields:
        return self.query_one(TestimonyFields)

    @property
    def is_settled(self) -> bool:
        """Nothing is being saved, waiting to be saved, or scheduled for autosave."""
        return self._inflight is None and self._pending is None and self._timer is None

    def on_mount(self) -> None:
        self.query_one("#editor-problem").display = False
        self.load()

    # ------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, exit_on_error=False, group=_LOAD)
    def load(self) -> Loaded:
        session = self.app.session  # type: ignore[attr-defined]
        store = session.store
        record = None if self.record_id is None else store.get(self.record_id)
        return Loaded(
            record,
            store.new_witness_code(),
            store.recorded_by,
            store.vocabulary,
            session.clock().astimezone(),
        )

    def show_loaded(self, data: Loaded) -> None:
        record = data.record
        t = None if record is None else record.testimony
        identity = None if record is None else record.identity
        self._ctx = FormContext(
            recorded_by=data.recorded_by,
            witness_code=(t.witness_code if t and t.witness_code else data.spare_code),
            vocabulary=data.vocabulary,
            base=t,
            had_identity=identity is not None and not identity.is_empty(),
        )
        form = form_from(t, identity, data.now)
        with self.prevent(*_CHANGE_MESSAGES):
            self.fields.fill(form, data.vocabulary, self._ctx.witness_code)
        self.fields.show_attachments(() if t is None else t.attachments)
        if record is not None:
            self.record_id, self._seq = record.id, record.seq
            self._status = record.testimony.status
        # A new testimony is saved only once something is typed; a stored one only if changed.
        self._saved_form = form
        self.fields.disabled = False
        self.query_one("#taken-place" if record is None else "#narrative").focus()
        self.set_status("New testimony, not saved yet" if record is None else self.state_text())

    # ------------------------------------------------------------ edits and autosave

    @on(Input.Changed)
    @on(TextArea.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(ViolationPicker.Changed)
    def edited(self, event: Message) -> None:
        if self._ctx is None or self._dismissed:
            return
        if isinstance(event, Checkbox.Changed) and event.checkbox.id == "no-witness":
            self.fields.show_witness(self._ctx.witness_code, no_witness=event.value)
        if isinstance(event, Input.Changed) and event.input.id == "language":
            self.query_one(ViolationPicker).set_language(event.value)
        self._leave_unsaved = False
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.autosave_delay, self.autosave)

    def autosave(self) -> None:
        self._timer = None
        self.request_save()

    # ------------------------------------------------------------ actions

    def action_save(self) -> None:
        self.request_save(forced=True)

    def action_ready(self) -> None:
        self.request_save(ready=True)

    def action_back(self) -> None:
        if self._ctx is None or self._leave_unsaved:
            self._close()
        else:
            self.request_save(close=True)

    def action_attach(self) -> None:
        if self._ctx is not None:
            start = self.picker_start or Path.home()
            self.app.push_screen(FilePickerScreen(start), callback=self._picked)

    @on(Button.Pressed, "#attach")
    def attach_pressed(self) -> None:
        self.action_attach()

    def _picked(self, path: Path | None) -> None:
        if path is not None:
            self.request_save(attach=path)

    # ------------------------------------------------------------ saving

    async def flush(self, timeout: float = 10.0) -> None:
        """Save what is typed now and wait for it: for the app to call before it locks or quits."""
        self.request_save()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.is_settled and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def request_save(
        self,
        *,
        ready: bool = False,
        close: bool = False,
        forced: bool = False,
        attach: Path | None = None,
    ) -> None:
        """Save now, or right after the save in flight, merging with requests already waiting."""
        if self._ctx is None or self._dismissed:
            return
        request = self._pending or _Request()
        request.ready |= ready
        request.close |= close
        request.forced |= forced
        if attach is not None:
            request.attach.append(attach)
        self._pending = request
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._inflight is None:
            self._start_save()

    def _start_save(self) -> None:
        request, self._pending = self._pending, None
        if request is None or self._ctx is None:
            return
        form = self.fields.read()
        changed = form != self._saved_form
        if not (changed or request.ready or request.attach):
            if request.close:
                self._close()
            elif request.forced:
                self.set_status(
                    f"No changes · {self.state_text()}" if self.record_id else "Nothing to save yet"
                )
            return
        # Any edit makes the testimony a draft again; only Ctrl+R makes it ready.
        status = Status.READY if request.ready else Status.DRAFT
        try:
            testimony, identity = build(form, self._ctx, status)
        except ValidationError as e:
            note = " The file was not attached; attach it again." if request.attach else ""
            self.show_problems(e, leaving=request.close, note=note)
            return
        self._inflight = _Job(
            self.record_id, testimony, identity, tuple(request.attach), form, request.close
        )
        self.set_status("Saving…")
        self.save(self._inflight)

    @work(thread=True, exclusive=True, exit_on_error=False, group=_SAVE)
    def save(self, job: _Job) -> StoredTestimony:
        store = self.app.session.store  # type: ignore[attr-defined]
        if job.record_id is None:
            return store.create(job.testimony, identity=job.identity, attach=job.attach)  # type: ignore[no-any-return]
        return store.update(  # type: ignore[no-any-return]
            job.record_id, job.testimony, identity=job.identity, attach=job.attach
        )

    def saved(self, job: _Job, record: StoredTestimony) -> None:
        t = record.testimony
        self.record_id, self._seq, self._status = record.id, record.seq, t.status
        self._saved_form = job.form
        ctx = self._ctx
        if ctx is not None:
            had_identity = ctx.had_identity if job.identity is None else not job.identity.is_empty()
            self._ctx = FormContext(
                ctx.recorded_by, ctx.witness_code, ctx.vocabulary, t, had_identity
            )
        self.fields.show_attachments(t.attachments)
        self.clear_problems()
        now = self.app.session.clock().astimezone()  # type: ignore[attr-defined]
        self.set_status(f"Saved {now:%H:%M} · {self.state_text()}")
        self.post_message(self.Saved(record.id, record.seq, t.status))
        if job.close:
            self._close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group, state = event.worker.group, event.state
        if group == _LOAD and state is WorkerState.SUCCESS:
            self.show_loaded(event.worker.result)  # type: ignore[arg-type]
        elif group == _SAVE and state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            job, self._inflight = self._inflight, None
            if state is WorkerState.SUCCESS and job is not None:
                self.saved(job, event.worker.result)  # type: ignore[arg-type]
            elif state is WorkerState.ERROR:
                self.save_failed(event.worker.error, leaving=job is not None and job.close)
            if not self._dismissed and self._pending is not None:
                self._start_save()
        elif state is WorkerState.ERROR:
            if group == _LOAD:
                self.set_status("Could not open the testimony; Escape goes back.")
            super().on_worker_state_changed(event)

    def save_failed(self, error: BaseException | None, *, leaving: bool) -> None:
        if isinstance(error, ValidationError):
            self.show_problems(error, leaving=leaving)
            return
        title, sentence = describe(error)
        self.show_error(title, sentence)
        self.show_problem_line(f"Not saved. {title}: {sentence}")
        self.set_status(f"Not saved · {self.state_text()}")
        self._leave_unsaved = leaving

    # ------------------------------------------------------------ what the screen says

    def state_text(self) -> str:
        if self.record_id is None:
            return "new, nothing saved yet"
        return f"{self._status.value}, revision {self._seq}"

    def set_status(self, text: str) -> None:
        self.query_one("#editor-status", Label).update(text)

    def show_problems(self, error: ValidationError, *, leaving: bool, note: str = "") -> None:
        """Every problem on one line, and each field at fault flagged; the text stays."""
        line = error.message + note
        if leaving:
            line += " Escape again leaves without saving."
        self.show_problem_line(line)
        self.fields.mark_problems(error.problems)
        self.set_status(f"Not saved · {self.state_text()}")
        self._leave_unsaved = leaving

    def clear_problems(self) -> None:
        self.show_problem_line("")
        self.fields.mark_problems(())

    def show_problem_line(self, text: str) -> None:
        line = self.query_one("#editor-problem", Label)
        line.update(text)
        line.display = bool(text)

    def _close(self) -> None:
        if not self._dismissed:
            self._dismissed = True
            if self._timer is not None:
                self._timer.stop()
            self.dismiss(None)
