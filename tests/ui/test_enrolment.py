"""Enrolment in the terminal UI, with a real HQ made in-process, and real bundles out.

An HQ home is created here (cheap Argon2id) and writes a real signed enrolment
file. The monitor imports it in the setup wizard or later from the sync screen,
compares the HQ fingerprint shown with the HQ's own, and enrols, or refuses.
Then the sync screen seals a ready testimony into a folder (the USB stick) and
HQ imports that bundle. Every test drives the app at 80x24 as a person would
and checks the store afterwards, not only the screen.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DirectoryTree, Input, Label

from crypto.enrolment import write_enrolment
from crypto.errors import EnrolmentError, EnrolmentReason
from crypto.fingerprint import hq_fingerprint
from fieldapp.domain import Status
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import create_hq_home
from fieldapp.session import Locked, Session
from fieldapp.store.home import Home
from fieldapp.store.syncbook import AlreadyEnrolled
from fieldapp.ui.app import FieldApp
from fieldapp.ui.screens.enrol import EnrolScreen
from fieldapp.ui.screens.filepicker import FilePickerScreen
from fieldapp.ui.screens.setup import SetupScreen
from fieldapp.ui.screens.sync import SyncScreen
from fieldapp.ui.screens.testimonies import TestimoniesScreen
from fieldapp.ui.widgets.enrolment import MISMATCH_TEXT, EnrolmentPanel
from sync.enrol import EnrolmentFileError
from sync.hqimport import import_file
from sync.outbox import HqKeysExpired
from tests.store.conftest import CHEAP, make_testimony
from tests.store.conftest import Clock as StepClock
from tests.ui import PASSPHRASE, make_session, pilot_test, screen_text, settle, unlock
from tests.ui.test_flows import check_snapshot

GOOD = "olive press winter river lantern"
DEVICE = "Aleppo monitor 3"


@dataclass
class Hq:
    """An HQ home, open, that writes enrolment files into ``folder``."""

    archive: HqArchive
    folder: Path

    @property
    def fingerprint(self) -> str:
        return str(hq_fingerprint(self.archive.root_public()))

    def enrolment_file(self, name: str = DEVICE) -> Path:
        enrolment = self.archive.new_enrolment(name)
        self.archive.record_enrolment(enrolment)
        path = self.folder / f"{name.replace(' ', '-')}.faenrol"
        path.write_bytes(write_enrolment(self.archive.root_key(), enrolment))
        return path


def open_hq(root: Path, label: str) -> Hq:
    home = Home(root / label)
    created = create_hq_home(
        home, f"{label} passphrase for hq", f"{label} protection", kdf=CHEAP, clock=StepClock()
    )
    folder = root / f"{label}-stick"
    folder.mkdir()
    return Hq(HqArchive.open(created.unlocked, clock=StepClock()), folder)


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[Hq]:
    made = open_hq(tmp_path, "hq")
    yield made
    made.archive.close()


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[Hq]:
    """Another HQ: its files verify, but its fingerprint is not the one HQ reads out."""
    made = open_hq(tmp_path, "impostor")
    yield made
    made.archive.close()


def tampered(path: Path) -> Path:
    """The same file with the device name changed inside the signed body."""
    outer = json.loads(path.read_bytes())
    body = base64.b64decode(outer["body"]).replace(b"monitor 3", b"monitor 4")
    outer["body"] = base64.b64encode(body).decode("ascii")
    out = path.with_name("tampered.faenrol")
    out.write_text(json.dumps(outer), encoding="utf-8")
    return out


def text_of(app: FieldApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def panel(app: FieldApp) -> EnrolmentPanel:
    return app.screen.query_one(EnrolmentPanel)


def step(app: FieldApp) -> str | None:
    return panel(app).query_one("#enrol-steps").current  # type: ignore[attr-defined,no-any-return]


async def through_setup(pilot: Pilot[None]) -> None:
    """Passphrase twice, then "I have written it down": the enrolment step."""
    app = pilot.app
    assert isinstance(app.screen, SetupScreen)
    app.screen.query_one("#first", Input).value = GOOD
    second = app.screen.query_one("#second", Input)
    second.value = GOOD
    second.focus()
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("enter")  # "I have written it down" has the focus
    await settle(pilot)


async def choose(pilot: Pilot[None], path: Path) -> None:
    """Type the path into the (focused) path field and press Enter."""
    field = pilot.app.screen.query_one("#enrol-path", Input)
    assert field.has_focus
    field.value = str(path)
    await pilot.press("enter")
    await settle(pilot)


# ---------------------------------------------------------------- the setup wizard


@pilot_test
async def test_wizard_shows_the_hq_fingerprint_and_enrols_when_it_matches(
    tmp_path: Path, hq: Hq
) -> None:
    session = make_session(tmp_path)
    file = hq.enrolment_file()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await through_setup(pilot)
        assert step(app) == "enrol-choose"
        assert session.is_unlocked
        assert not session.enrolment_status().enrolled
        await choose(pilot, file)

        assert step(app) == "enrol-compare"
        shown = text_of(app, "#enrol-fingerprint")
        assert shown.split() == hq.fingerprint.split()  # six groups of five, in order
        assert all(re.fullmatch(r"\d{5}", g) for g in shown.split())
        text = screen_text(app)
        assert shown in text  # on screen at 80x24, not only in the widget
        assert f"with HQ as {DEVICE}." in " ".join(text.replace("│", " ").split())
        assert "digit by digit" in text
        # Enter by reflex would cancel: the focus is on "does not match".
        assert app.screen.query_one("#enrol-no", Button).has_focus
        for button in ("#enrol-yes", "#enrol-no"):
            region = app.screen.query_one(button).region
            assert region.height > 0
            assert region.bottom <= 23
        assert not session.enrolment_status().enrolled  # nothing kept before the choice

        await pilot.click("#enrol-yes")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        status = session.enrolment_status()
        assert status.enrolled
        assert status.device_name == DEVICE
        assert status.fingerprint == hq.fingerprint
        assert shown not in screen_text(app)


@pilot_test
async def test_wizard_refuses_tampered_garbage_and_missing_files_and_stays(
    tmp_path: Path, hq: Hq
) -> None:
    session = make_session(tmp_path)
    good = hq.enrolment_file()
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not an enrolment file\n", encoding="utf-8")
    cases = [
        (tampered(good), EnrolmentError(EnrolmentReason.BAD_SIGNATURE).message),
        (garbage, EnrolmentError(EnrolmentReason.MALFORMED).message),
        (tmp_path / "no-such-file", None),
        (tmp_path, None),  # a folder, not a file
    ]
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await through_setup(pilot)
        for path, message in cases:
            await choose(pilot, path)
            assert step(app) == "enrol-choose", path
            error = text_of(app, "#enrol-error")
            if message is None:
                assert error.startswith("Not imported: The enrolment file cannot be read")
            else:
                assert error == f"Not imported: {message}"
            assert "\n" not in error
            assert text_of(app, "#enrol-fingerprint") == ""
            assert panel(app).preview is None
            assert app.screen.query_one("#enrol-path", Input).has_focus
            assert not session.enrolment_status().enrolled

        await pilot.click("#enrol-skip")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
    session.unlock(GOOD)
    assert not session.enrolment_status().enrolled


@pilot_test
async def test_wizard_a_fingerprint_that_does_not_match_keeps_nothing(
    tmp_path: Path, hq: Hq, impostor: Hq
) -> None:
    session = make_session(tmp_path)
    forged = impostor.enrolment_file()  # a valid file, but from someone else's HQ
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await through_setup(pilot)
        await choose(pilot, forged)
        assert step(app) == "enrol-compare"
        shown = text_of(app, "#enrol-fingerprint")
        assert shown.split() == impostor.fingerprint.split()
        assert shown.split() != hq.fingerprint.split()  # what the monitor compares with

        await pilot.press("enter")  # "It does not match: cancel" has the focus
        await settle(pilot)
        assert step(app) == "enrol-choose"
        assert text_of(app, "#enrol-error") == MISMATCH_TEXT
        assert text_of(app, "#enrol-fingerprint") == ""
        assert panel(app).preview is None
        assert not session.enrolment_status().enrolled

        # Escape on the compare step is "does not match" too; on the first step, "later".
        await choose(pilot, forged)
        assert step(app) == "enrol-compare"
        await pilot.press("escape")
        await settle(pilot)
        assert step(app) == "enrol-choose"
        assert not session.enrolment_status().enrolled
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert not session.enrolment_status().enrolled


@pilot_test
async def test_wizard_browse_opens_the_file_picker_and_checks_the_pick(
    tmp_path: Path, hq: Hq
) -> None:
    session = make_session(tmp_path)
    file = hq.enrolment_file()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await through_setup(pilot)
        panel(app).browse_start = hq.folder
        await pilot.click("#enrol-browse")
        await pilot.pause()  # not settle(): the directory tree's loader worker runs until closed
        picker = app.screen
        assert isinstance(picker, FilePickerScreen)
        assert picker.query_one(DirectoryTree).path == hq.folder
        typed = picker.query_one("#picker-path", Input)
        typed.value = file.name  # relative to the folder the tree shows
        typed.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.query_one("#enrol-path", Input).value == str(file)
        assert step(app) == "enrol-compare"
        assert text_of(app, "#enrol-fingerprint").split() == hq.fingerprint.split()


@pilot_test
async def test_snapshot_setup_enrol(tmp_path: Path) -> None:
    app = FieldApp(make_session(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await through_setup(pilot)
        check_snapshot(app, "setup-enrol")


# ---------------------------------------------------------------- the session's API


def test_session_preview_verifies_hides_the_secret_and_enrols_once(
    tmp_path: Path, hq: Hq, impostor: Hq
) -> None:
    session = make_session(tmp_path)
    file = hq.enrolment_file()
    with pytest.raises(Locked):
        session.enrolment_status()
    session.create(PASSPHRASE)
    preview = session.read_enrolment(file)
    assert preview.device_name == DEVICE
    assert preview.fingerprint == hq.fingerprint
    assert preview.fingerprint_groups == tuple(hq.fingerprint.split())
    assert preview.relay is None
    assert preview.enrolment.secret.hex() not in repr(preview)
    assert "secret" not in repr(preview)
    with pytest.raises(EnrolmentError) as refused:
        session.read_enrolment(tampered(file))
    assert refused.value.reason is EnrolmentReason.BAD_SIGNATURE
    with pytest.raises(EnrolmentFileError):
        session.read_enrolment(tmp_path / "missing")
    assert not session.enrolment_status().enrolled

    session.enrol(preview)
    status = session.enrolment_status()
    assert (status.enrolled, status.device_name, status.fingerprint) == (
        True,
        DEVICE,
        hq.fingerprint,
    )
    # Enrolled: another file (even from another HQ) is refused before it is read.
    with pytest.raises(AlreadyEnrolled):
        session.read_enrolment(impostor.enrolment_file())
    with pytest.raises(AlreadyEnrolled):
        session.enrol(preview)
    session.lock()
    with pytest.raises(Locked):
        session.enrol(preview)


# ---------------------------------------------------------------- the sync screen


def with_ready_testimony(session: Session) -> str:
    session.create(PASSPHRASE)
    store = session.store
    record = store.create(make_testimony(store, status=Status.READY))
    session.lock()
    return record.id


async def open_sync(pilot: Pilot[None]) -> SyncScreen:
    await unlock(pilot)
    await pilot.press("y")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, SyncScreen)
    return screen


async def export_to(pilot: Pilot[None], folder: Path) -> None:
    await pilot.press("x")
    field = pilot.app.screen.query_one("#folder", Input)
    field.value = str(folder)
    await pilot.press("enter")
    await settle(pilot)


@pilot_test
async def test_sync_enrol_later_then_export_a_real_bundle_that_hq_imports(
    tmp_path: Path, hq: Hq
) -> None:
    session = make_session(tmp_path)
    record_id = with_ready_testimony(session)
    file = hq.enrolment_file()
    usb = tmp_path / "usb"
    usb.mkdir()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        assert text_of(app, "#enrolment").startswith("Not enrolled with HQ")
        assert screen.query_one("#enrol", Button).display
        assert "Enrol with HQ" in screen_text(app)
        assert text_of(app, "#queue-heading").startswith("Queued: 1 testimony")

        # Before enrolment the export says why it cannot seal, and writes nothing.
        await export_to(pilot, usb)
        assert "not enrolled with HQ" in text_of(app, "#sync-error")
        assert list(usb.iterdir()) == []

        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, EnrolScreen)
        await choose(pilot, tampered(file))
        assert text_of(app, "#enrol-error").startswith("Not imported: This enrolment file")
        await choose(pilot, file)
        assert text_of(app, "#enrol-fingerprint").split() == hq.fingerprint.split()
        await pilot.click("#enrol-yes")
        await settle(pilot)
        current: object = app.screen
        assert current is screen
        status = session.enrolment_status()
        assert status.enrolled
        assert status.fingerprint == hq.fingerprint
        enrolled = text_of(app, "#enrolment")
        assert enrolled == f"Enrolled with HQ as {DEVICE}.\nHQ fingerprint: {hq.fingerprint}"
        assert not screen.query_one("#enrol", Button).display
        assert text_of(app, "#sync-error") == ""

        await export_to(pilot, usb)
        bundles = list(usb.iterdir())
        assert len(bundles) == 1
        (bundle,) = bundles
        assert bundle.suffix == ".fabundle"
        assert record_id not in bundle.name
        size = bundle.stat().st_size
        done = text_of(app, "#last")
        assert done.startswith("Done: 1 sealed bundle, ")
        assert str(usb) in done
        assert text_of(app, "#sync-error") == ""
        assert "usb" in screen.bars
        assert screen.bars["usb"].percentage == 1
        assert screen.bars["usb"].total == size
        assert text_of(app, "#queue-heading").startswith("Nothing queued")
        assert session.store.get(record_id).testimony.status is Status.SENT
        assert session.store.outbox() == []

        # Again: nothing new to seal, nothing written twice.
        await export_to(pilot, usb)
        assert len(list(usb.iterdir())) == 1
        assert text_of(app, "#last").startswith("Nothing to export")

    outcome = import_file(hq.archive, bundle)
    assert not outcome.quarantined, outcome.refusal
    assert hq.archive.all_ids() == [record_id]


@pilot_test
async def test_sync_shows_expired_hq_keys_and_writes_nothing(tmp_path: Path, hq: Hq) -> None:
    clock = StepClock()
    session = make_session(tmp_path, clock=clock)
    with_ready_testimony(session)
    session.unlock(PASSPHRASE)
    session.enrol(session.read_enrolment(hq.enrolment_file()))
    session.lock()
    clock.now += timedelta(days=400)  # HQ's keys were valid for a year
    usb = tmp_path / "usb"
    usb.mkdir()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sync(pilot)
        assert text_of(app, "#enrolment").startswith("Enrolled with HQ as")
        await export_to(pilot, usb)
        assert text_of(app, "#sync-error") == f"Not done: {HqKeysExpired().message}"
        assert list(usb.iterdir()) == []
        assert not screen.busy
        assert len(session.store.outbox()) == 1
