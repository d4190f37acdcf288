"""The sync screen against the Transfers interface: the real USB transport, and a double.

A session's default transport is sync.usb.UsbTransfers: before enrolment it lists
the queue and refuses to seal, saying why. The contract double below lets the
screen's progress and layout be tested without crypto; tests/ui/test_enrolment.py
exports real sealed bundles.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Label, ProgressBar

from fieldapp.session import Session
from fieldapp.store.records import Summary
from fieldapp.store.store import FieldStore
from fieldapp.transfer import NotEnrolled, Progress, ProgressCallback, TransferResult
from fieldapp.ui.app import FieldApp
from fieldapp.ui.errors import GENERIC
from fieldapp.ui.screens.sync import FolderMissing, SyncScreen
from fieldapp.ui.screens.testimonies import TestimoniesScreen
from sync.usb import NetworkNotAvailable, UsbTransfers
from tests.store.conftest import make_testimony
from tests.ui import PASSPHRASE, make_session, pilot_test, screen_text, settle, unlock

FINISHED_AT = "2016-12-10T15:00:00+00:00"
CANARY = "Canary-narrative-6f3a"


class FolderCopyTransfers:
    """Contract test double for ``Transfers``: one file per queued testimony, no crypto.

    It behaves as the interface promises (queue = the store's outbox, progress per
    transfer, sent revisions leave the queue, last_result remembers) so the screen
    can be tested end to end before the real bundle transport exists.
    """

    def __init__(self) -> None:
        self.last: TransferResult | None = None
        self.threads: set[int] = set()
        self.relay: list[str] = []

    def queued(self, store: FieldStore) -> list[Summary]:
        return store.summaries(rid for rid, _ in store.outbox())

    def last_result(self) -> TransferResult | None:
        return self.last

    def _send(self, store: FieldStore, progress: ProgressCallback, where: str) -> TransferResult:
        self.threads.add(threading.get_ident())
        total = 0
        sent = 0
        for rid, seq in store.outbox():
            body = f"{rid} revision {seq}\n".encode()  # never the testimony itself
            progress(Progress(rid, 0, len(body)))
            self._deliver(where, rid, body)
            progress(Progress(rid, len(body), len(body)))
            store.mark_sent(rid, seq)
            total += len(body)
            sent += 1
        self.last = TransferResult(sent, total, where, FINISHED_AT)
        return self.last

    def _deliver(self, where: str, rid: str, body: bytes) -> None:
        if where == "relay":
            self.relay.append(rid)
        else:
            (Path(where) / f"{rid}.bundle").write_bytes(body)

    def export(self, store: FieldStore, folder: Path, progress: ProgressCallback) -> TransferResult:
        return self._send(store, progress, str(folder))

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        return self._send(store, progress, "relay")


class Exploding(UsbTransfers):
    """A transport failing with an arbitrary exception whose text must never be shown."""

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        del store, progress
        raise RuntimeError(f"relay said no about {CANARY}")


def populate(session: Session, count: int, *, sent: int = 0) -> list[str]:
    """Set up the home with ``count`` testimonies; the first ``sent`` leave the outbox."""
    session.create(PASSPHRASE)
    store = session.store
    ids = [store.create(make_testimony(store)).id for _ in range(count)]
    for rid in ids[:sent]:
        store.mark_sent(rid, 1)
    session.lock()
    return ids


async def open_sync(pilot: Pilot[None]) -> SyncScreen:
    await unlock(pilot)
    assert isinstance(pilot.app.screen, TestimoniesScreen)
    await pilot.press("y")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, SyncScreen)
    return screen


async def export_to(pilot: Pilot[None], folder: Path) -> None:
    await pilot.press("x")
    field = pilot.app.screen.query_one("#folder", Input)
    assert field.display
    assert field.has_focus
    field.value = str(folder)
    await pilot.press("enter")
    await settle(pilot)


def label(screen: SyncScreen, selector: str) -> str:
    return str(screen.query_one(selector, Label).render())


def queue_ids(screen: SyncScreen) -> list[str]:
    table = screen.query_one("#queue", DataTable)
    return [str(key.value) for key in table.rows]


@pilot_test
async def test_the_queue_is_exactly_the_outbox(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    ids = populate(session, 4, sent=1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        outbox = [rid for rid, _ in session.store.outbox()]
        assert sorted(queue_ids(screen)) == sorted(outbox) == sorted(ids[1:])
        assert "Queued: 3 testimonies" in label(screen, "#queue-heading")
        assert label(screen, "#last") == "Last transfer: none yet."


@pilot_test
async def test_not_enrolled_refuses_export_and_push_with_the_sentence(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 2)
    usb = tmp_path / "usb"
    usb.mkdir()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await export_to(pilot, usb)
        error = label(screen, "#sync-error")
        assert error == f"Not done: {NotEnrolled().message}"
        assert list(usb.iterdir()) == []
        assert not screen.busy
        assert all(not b.disabled for b in screen.query(Button))

        await pilot.press("s")
        await settle(pilot)
        assert label(screen, "#sync-error") == f"Not done: {NetworkNotAvailable().message}"
        assert len(session.store.outbox()) == 2  # nothing left the queue


@pilot_test
async def test_export_writes_a_file_per_testimony_and_fills_every_bar(tmp_path: Path) -> None:
    transfers = FolderCopyTransfers()
    session = make_session(tmp_path, transfers=transfers)
    ids = populate(session, 3)
    usb = tmp_path / "usb"
    usb.mkdir()
    seen: list[Progress] = []

    def hook(message: Message) -> None:
        if isinstance(message, SyncScreen.Progressed):
            seen.append(message.progress)

    app = FieldApp(session)
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        screen = await open_sync(pilot)
        assert sorted(queue_ids(screen)) == sorted(ids)
        await export_to(pilot, usb)

        assert sorted(p.name for p in usb.iterdir()) == sorted(f"{rid}.bundle" for rid in ids)
        assert set(screen.bars) == set(ids)
        assert all(bar.percentage == 1 for bar in screen.bars.values())
        assert len(screen.query(ProgressBar)) == 3
        assert "Done: 3 sealed bundles" in label(screen, "#last")
        assert str(usb) in label(screen, "#last")
        assert label(screen, "#sync-error") == ""
        # What was exported left the queue, in the store and on screen.
        assert session.store.outbox() == []
        assert queue_ids(screen) == []
        assert label(screen, "#queue-heading").startswith("Nothing queued")

    # The progress came through messages, from a thread that was not the UI's.
    assert {p.transfer for p in seen if p.done == p.total} == set(ids)
    assert threading.main_thread().ident not in transfers.threads


@pilot_test
async def test_push_reports_progress_and_reopening_shows_the_last_result(tmp_path: Path) -> None:
    transfers = FolderCopyTransfers()
    session = make_session(tmp_path, transfers=transfers)
    ids = populate(session, 2)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert sorted(transfers.relay) == sorted(ids)
        assert all(bar.percentage == 1 for bar in screen.bars.values())
        assert label(screen, "#last").startswith("Done: 2 sealed bundles, ")
        assert label(screen, "#last").endswith(" bytes, sent to the relay.")

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        await pilot.press("y")
        await settle(pilot)
        again = app.screen
        assert isinstance(again, SyncScreen)
        assert "Last transfer: 2 bundles" in label(again, "#last")
        assert again.bars == {}


@pilot_test
async def test_export_to_a_missing_folder_creates_nothing(tmp_path: Path) -> None:
    transfers = FolderCopyTransfers()
    session = make_session(tmp_path, transfers=transfers)
    populate(session, 1)
    missing = tmp_path / "not-plugged-in"
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await export_to(pilot, missing)
        assert label(screen, "#sync-error") == f"Not done: {FolderMissing().message}"
        assert not missing.exists()
        assert len(session.store.outbox()) == 1


@pilot_test
async def test_an_arbitrary_error_is_shown_without_its_text(tmp_path: Path) -> None:
    session = make_session(tmp_path, transfers=Exploding())
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert label(screen, "#sync-error") == f"Unexpected error: {GENERIC}"
        assert CANARY not in screen_text(app)
        assert app.is_running  # the failure was shown, not fatal


@pilot_test
async def test_escape_closes_the_folder_field_then_the_screen(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await pilot.press("x")
        await pilot.press("s")  # typed into the folder field, not a push
        folder = screen.query_one("#folder", Input)
        assert folder.value == "s"
        assert label(screen, "#sync-error") == ""
        await pilot.press("escape")
        assert not folder.display
        assert folder.value == ""
        assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)


@pilot_test
async def test_everything_fits_in_80_by_24(tmp_path: Path) -> None:
    transfers = FolderCopyTransfers()
    session = make_session(tmp_path, transfers=transfers)
    populate(session, 12)
    usb = tmp_path / "usb"
    usb.mkdir()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        await export_to(pilot, usb)
        await pilot.press("x")  # the folder field open as well as the bars
        await settle(pilot)
        text = screen_text(app)
        for needle in ("Done: 12 sealed bundles", "Export to folder", "Send to relay"):
            assert needle in text
        for widget in (
            *screen.query(Button),
            screen.query_one("#folder"),
            screen.query_one("#last"),
        ):
            region = widget.region
            assert region.height > 0
            assert region.right <= 80
            assert region.bottom <= 23, widget  # above the footer
