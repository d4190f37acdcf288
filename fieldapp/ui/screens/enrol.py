"""Enrol later: the setup wizard's enrolment step, over the sync screen.

For a device set up without enrolling. Returns True if the device is now
enrolled; escape or "Cancel" returns False and keeps nothing.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer

from fieldapp.ui.base import BaseModal
from fieldapp.ui.widgets.enrolment import LATER_INTRO, EnrolmentPanel


class EnrolScreen(BaseModal[bool]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")

    def __init__(self, *, browse_start: Path | None = None) -> None:
        super().__init__()
        self.browse_start = browse_start

    def compose(self) -> ComposeResult:
        with Vertical(id="enrol-box"):
            yield EnrolmentPanel(
                skip_label="Cancel",
                intro=LATER_INTRO,
                browse_start=self.browse_start,
                id="enrolment",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#enrolment", EnrolmentPanel).start()

    @on(EnrolmentPanel.Done)
    def done(self, event: EnrolmentPanel.Done) -> None:
        self.dismiss(event.enrolled)
