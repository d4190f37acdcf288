"""Timestamps from inside the real FieldApp, for ``bench.ui_bench``.

Nothing in fieldapp/ is changed. The probe sees the app through:

- ``ProbedSession``: a ``Session`` subclass timing ``unlock`` (in the unlock
  worker's thread), with ``open_store`` (a Session argument) marking the moment
  Argon2id and the keyslot file are done and the SQLCipher store is opened;
- ``TimedStore``: ``FieldStore`` with ``page``, ``count`` and ``search`` timed
  (they run in the list's thread workers);
- ``ProbedApp``: ``FieldApp`` marking ``show_testimonies`` (the unlock worker's
  success reached the UI) and every frame: Textual's ``Screen._compositor_refresh``
  renders the dirty widgets into a compositor update and hands it to
  ``App._display``, which a headless app then drops instead of writing it to the
  terminal, so a frame's time is when ``_display`` returns;
- ``TestimoniesScreen.show`` wrapped (``patched_show``) to see which page the
  table was filled with and when.

A page counts as painted at the first frame of the list screen after its
``show()`` in which the DataTable has no row or column-width update pending
(DataTable lays out new rows on idle, so the frame right after ``show()`` can
still be the old layout).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from textual.screen import Screen
from textual.widgets import DataTable

from fieldapp.domain import Status
from fieldapp.session import Session
from fieldapp.store.home import Home
from fieldapp.store.records import Summary
from fieldapp.store.store import PAGE, FieldStore, Sort
from fieldapp.store.vault import Clock, KdfPolicy, Unlocked
from fieldapp.ui.app import FieldApp
from fieldapp.ui.screens.testimonies import Page, TestimoniesScreen


@dataclass
class Shown:
    """One ``TestimoniesScreen.show(page)``: what went into the table, and when it was painted."""

    at: float
    text: str  # the search field's value when the page was shown
    ids: tuple[str, ...]
    total: int | None
    painted: float | None = None


@dataclass
class Probe:
    """Everything the hooks record; times are ``time.perf_counter()`` seconds."""

    unlock_started: float | None = None
    kdf_done: float | None = None  # unlock_home returned: Argon2id, keyslot file, device key
    store_opened: float | None = None  # FieldStore.open returned
    unlock_done: float | None = None  # Session.unlock returned in the worker thread
    list_requested: float | None = None  # FieldApp.show_testimonies called (UI thread)
    shows: list[Shown] = field(default_factory=list)
    sql: list[tuple[str, float, float]] = field(default_factory=list)  # (call, start, seconds)
    painted_event: asyncio.Event = field(default_factory=asyncio.Event)
    on_show: Callable[[Shown], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_sql(self, call: str, start: float) -> None:
        with self._lock:
            self.sql.append((call, start, time.perf_counter() - start))

    def sql_since(self, start: float, call: str) -> list[float]:
        with self._lock:
            return [sec for name, at, sec in self.sql if name == call and at >= start]

    def sql_span(self, start: float, end: float) -> tuple[float, float] | None:
        """First start and last end of the store calls made between ``start`` and ``end``."""
        with self._lock:
            calls = [(at, at + sec) for _, at, sec in self.sql if start <= at and at + sec <= end]
        if not calls:
            return None
        return min(c[0] for c in calls), max(c[1] for c in calls)

    def shown(self, screen: TestimoniesScreen, page: Page) -> None:
        text = screen.query_text
        entry = Shown(time.perf_counter(), text, tuple(r.id for r in page.rows), page.total)
        self.shows.append(entry)
        if self.on_show is not None:
            self.on_show(entry)

    def frame(self, screen: Screen[Any]) -> None:
        if not isinstance(screen, TestimoniesScreen) or not self.shows:
            return
        last = self.shows[-1]
        if last.painted is not None:
            return
        table = screen.query_one("#table", DataTable)
        if table._require_update_dimensions or table._updated_cells:
            return  # the new rows are not laid out yet: this frame is not them
        last.painted = time.perf_counter()
        self.painted_event.set()

    async def wait_painted(
        self, since: int, predicate: Callable[[Shown], bool], timeout: float
    ) -> Shown:
        """The first painted show from ``shows[since]`` on that ``predicate`` accepts."""
        deadline = time.perf_counter() + timeout
        while True:
            for entry in self.shows[since:]:
                if entry.painted is not None and predicate(entry):
                    return entry
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            self.painted_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.painted_event.wait(), left)

    def painted_since(self, index: int) -> list[Shown]:
        return [s for s in self.shows[index:] if s.painted is not None]


class TimedStore(FieldStore):
    """FieldStore whose list and search reads are timed into ``probe``."""

    probe: Probe | None = None

    def _timed(self, call: str, start: float) -> None:
        if self.probe is not None:
            self.probe.record_sql(call, start)

    def count(self, status: Status | None = None) -> int:
        start = time.perf_counter()
        try:
            return super().count(status)
        finally:
            self._timed("count", start)

    def page(
        self,
        *,
        status: Status | None = None,
        sort: Sort = Sort.UPDATED,
        limit: int = PAGE,
        offset: int = 0,
    ) -> list[Summary]:
        start = time.perf_counter()
        try:
            return super().page(status=status, sort=sort, limit=limit, offset=offset)
        finally:
            self._timed("page", start)

    def search(self, query: str, *, limit: int = PAGE) -> list[Summary]:
        start = time.perf_counter()
        try:
            return super().search(query, limit=limit)
        finally:
            self._timed("search", start)


class ProbedSession(Session):
    """Session timing the unlock: Argon2id and keyslots, then the store's opening."""

    def __init__(self, home: Home, probe: Probe, *, kdf: KdfPolicy) -> None:
        def open_store(unlocked: Unlocked, *, clock: Clock) -> FieldStore:
            probe.kdf_done = time.perf_counter()
            store = TimedStore.open(unlocked, clock=clock)
            store.probe = probe
            probe.store_opened = time.perf_counter()
            return store

        super().__init__(home, kdf=kdf, open_store=open_store)
        self.probe = probe

    def unlock(self, secret: str) -> None:
        self.probe.unlock_started = time.perf_counter()
        super().unlock(secret)
        self.probe.unlock_done = time.perf_counter()


class ProbedApp(FieldApp):
    """The real FieldApp, reporting when the list is asked for and when frames are made."""

    def __init__(self, session: ProbedSession) -> None:
        super().__init__(session)
        self.probe = session.probe

    def show_testimonies(self) -> None:
        self.probe.list_requested = time.perf_counter()
        super().show_testimonies()

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        super()._display(screen, renderable)
        if renderable is not None:
            self.probe.frame(screen)


@contextlib.contextmanager
def patched_show() -> Iterator[None]:
    """Wrap ``TestimoniesScreen.show`` so the app's probe sees every page shown."""
    original = TestimoniesScreen.show

    def show(self: TestimoniesScreen, page: Page) -> None:
        original(self, page)
        app = self.app
        if isinstance(app, ProbedApp):
            app.probe.shown(self, page)

    TestimoniesScreen.show = show  # type: ignore[method-assign]
    try:
        yield
    finally:
        TestimoniesScreen.show = original  # type: ignore[method-assign]
