"""Tests of the terminal UI, driven by Textual's Pilot on real stores.

Helpers shared by the UI tests live here (the conftest holds fixtures only):
homes with real SQLCipher stores and cheap Argon2id, a deterministic source of
random bytes for stable ids, waiting for workers without sleeping, and the
plain text of what is on screen.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

from rich.cells import cell_len
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input
from textual.worker import WorkerState

from fieldapp.session import Session
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import Clock, Unlocked
from fieldapp.transfer import Transfers
from tests.store.conftest import CHEAP, PASSPHRASE
from tests.store.conftest import Clock as StepClock

__all__ = [
    "PASSPHRASE",
    "CountingRandom",
    "make_session",
    "pilot_test",
    "screen_text",
    "settle",
    "unlock",
]


P = ParamSpec("P")


def pilot_test(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test in its own event loop (no pytest async plugin is installed)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class CountingRandom:
    """Deterministic stand-in for ``os.urandom``: record ids and witness codes repeat per run."""

    def __init__(self, seed: str = "fieldapp-ui") -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        return hashlib.shake_256(f"{self.seed}/{self.calls}".encode()).digest(n)


def make_session(
    root: Path,
    *,
    transfers: Transfers | None = None,
    random_bytes: Callable[[int], bytes] | None = None,
    clock: Clock | None = None,
) -> Session:
    """A Session on ``root / "home"``, not set up yet, with cheap Argon2id."""

    def open_store(unlocked: Unlocked, *, clock: Clock) -> FieldStore:
        if random_bytes is None:
            return FieldStore.open(unlocked, clock=clock)
        return FieldStore.open(unlocked, clock=clock, random_bytes=random_bytes)

    return Session(
        Home(root / "home"),
        kdf=CHEAP,
        clock=clock or StepClock(),
        open_store=open_store,
        transfers=transfers,
    )


async def settle(pilot: Pilot[None], rounds: int = 100) -> None:
    """Wait until no worker runs and every message their results caused is handled."""
    app = pilot.app
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()
        busy = [w for w in app.workers if w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        if not busy:
            await pilot.pause()
            return
    raise AssertionError(f"workers still running after {rounds} rounds")


async def unlock(pilot: Pilot[None], secret: str = PASSPHRASE) -> None:
    """Type ``secret`` into the unlock screen and wait for the result."""
    field = pilot.app.screen.query_one("#passphrase", Input)
    field.value = secret
    field.focus()
    await pilot.press("enter")
    await settle(pilot)


# Rich's SVG export: one <text> per run of equally styled cells, placed by x (12.2 px
# per cell) and clipped to its line.
_SVG_TEXT = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
    r'clip-path="url\(#[\w-]+-line-(\d+)\)">(.*?)</text>'
)
_CHAR_WIDTH = 20 * 0.61


def svg_text(svg: str, height: int) -> str:
    """The characters of a Rich SVG export, one line per terminal row, trailing spaces cut."""
    lines = [""] * height
    for x, line, content in _SVG_TEXT.findall(svg):
        row = int(line)
        text = html.unescape(content).replace("\xa0", " ")
        pad = round(float(x) / _CHAR_WIDTH) - cell_len(lines[row])
        lines[row] += " " * max(pad, 0) + text
    return "\n".join(line.rstrip() for line in lines)


def screen_text(app: App[None]) -> str:
    """What the terminal shows now, as plain text (through the public SVG export)."""
    for field in app.screen.query(Input):
        field.cursor_blink = False
    return svg_text(app.export_screenshot(), app.size.height)
