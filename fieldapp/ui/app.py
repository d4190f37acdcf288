"""FieldApp: the screens, the lock, and the guards against leaking through Textual.

The app is handed its collaborators (a Session, an idle-lock delay, a monotonic
clock), as tests build it. Locking closes the store and removes every screen
that showed data, so no widget keeps decrypted text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from rich.segment import Segments
from rich.text import Text
from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from fieldapp.session import Session

IDLE_LOCK_SECONDS = 5 * 60
_CRASH_TEXT = (
    "fieldapp stopped after an unexpected error. Nothing saved was lost. "
    "Start it again; if this repeats, run `fieldapp --debug record list` and report it."
)


class FieldApp(App[None]):
    TITLE = "fieldapp"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # wherever a subclass is defined
    ENABLE_COMMAND_PALETTE = False  # its system commands include "save screenshot"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "lock", "Lock", priority=True),
        Binding("f1", "help", "Help"),
        Binding("f10", "panic", "Panic"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        session: Session,
        *,
        idle_lock_seconds: float = IDLE_LOCK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.session = session
        self.idle_lock_seconds = idle_lock_seconds
        self._monotonic = monotonic
        self._last_activity = monotonic()

    # ------------------------------------------------------------ screens

    def on_mount(self) -> None:
        from fieldapp.ui.screens.setup import SetupScreen  # noqa: PLC0415
        from fieldapp.ui.screens.unlock import UnlockScreen  # noqa: PLC0415

        self.push_screen(UnlockScreen() if self.session.is_set_up() else SetupScreen())
        self.set_interval(1.0, self._check_idle)

    def show_testimonies(self) -> None:
        """After unlock or setup: the list replaces whatever was on screen."""
        from fieldapp.ui.screens.testimonies import TestimoniesScreen  # noqa: PLC0415

        self._replace_stack(TestimoniesScreen())

    def _replace_stack(self, screen: Screen[None]) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(screen)

    # ------------------------------------------------------------ lock

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.MouseScrollDown):
            self._last_activity = self._monotonic()
        await super().on_event(event)

    async def _check_idle(self) -> None:
        idle = self._monotonic() - self._last_activity
        if self.session.is_unlocked and idle >= self.idle_lock_seconds:
            await self.action_lock()

    async def _save_open_editors(self) -> None:
        """Let every editor save what was typed since its last autosave."""
        from fieldapp.ui.screens.editor import EditorScreen  # noqa: PLC0415

        for screen in list(self.screen_stack):
            if isinstance(screen, EditorScreen):
                await screen.flush()

    async def action_lock(self) -> None:
        """Save open drafts, close the store and drop every screen that showed data."""
        if not self.session.is_unlocked:
            return
        from fieldapp.ui.screens.unlock import UnlockScreen  # noqa: PLC0415

        await self._save_open_editors()
        self.session.lock()
        self._replace_stack(UnlockScreen(locked=True))

    async def action_quit(self) -> None:
        """Save open drafts, lock, then leave."""
        if self.session.is_unlocked:
            await self._save_open_editors()
            self.session.lock()
        self.exit()

    def action_help(self) -> None:
        from fieldapp.ui.screens.help import HelpScreen  # noqa: PLC0415

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_panic(self) -> None:
        from fieldapp.ui.screens.panic import PanicScreen  # noqa: PLC0415

        if self.session.is_set_up() and not isinstance(self.screen, PanicScreen):
            self.push_screen(PanicScreen())

    # ------------------------------------------------------------ guards

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        return ()

    # The three overrides below keep Textual's signatures; their arguments are unused on purpose.
    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self.notify("Screenshots are disabled: they would write testimony to disk.")

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        return None

    def save_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str:
        raise PermissionError("screenshots are disabled")

    def _handle_exception(self, error: Exception) -> None:
        # Textual renders the traceback with every local variable (show_locals=True),
        # which would print passphrases and testimony to the terminal. Show one line.
        self._return_code = 1
        if self._exception is None:
            self._exception = error
            self._exception_event.set()
        self._fatal_error()

    def _fatal_error(self) -> None:
        self.bell()
        self._exit_renderables.append(Segments(self.console.render(Text(_CRASH_TEXT))))
        self._close_messages_no_wait()
