"""The monitor's flows through FieldApp, on real homes: setup, unlock, lock, list, help, panic.

Every test drives the app with Pilot at 80x24 and asserts on the store and the
home afterwards as well as on the screen. Workers are awaited (``settle``),
never slept on. The snapshot checks at the end compare the plain text of the
main screens with tests/ui/snapshots/ (FIELDAPP_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import DataTable, Input, Label

from crypto.errors import WrongSecret
from fieldapp.domain import Place, Status
from fieldapp.domain.passphrase import estimate
from fieldapp.session import Session
from fieldapp.store import dbrekey
from fieldapp.store.home import Home
from fieldapp.store.rekey import rekey_home
from fieldapp.store.rekeyrecovery import FINISHED_CODE_LOST
from fieldapp.store.store import Sort
from fieldapp.store.vault import unlock_home
from fieldapp.ui.app import FieldApp
from fieldapp.ui.screens.detail import DetailScreen
from fieldapp.ui.screens.help import KEYS, HelpScreen
from fieldapp.ui.screens.panic import PanicScreen
from fieldapp.ui.screens.setup import SetupScreen
from fieldapp.ui.screens.sync import SyncScreen
from fieldapp.ui.screens.testimonies import PAGE_SIZE, TestimoniesScreen
from fieldapp.ui.screens.unlock import UnlockScreen
from tests.store.conftest import ARABIC, CHEAP, make_testimony
from tests.ui import (
    PASSPHRASE,
    CountingRandom,
    make_session,
    pilot_test,
    screen_text,
    settle,
    unlock,
)

GOOD = "olive press winter river lantern"
CANARY = "Canaryplace"  # a place name that must vanish from the screen on lock
NARRATIVE = "Canarynarrative"  # so must a word of the narrative
OLIVE = "الزيتون"  # an Arabic word only a few narratives carry
MANY = 250
SNAPSHOTS = Path(__file__).with_name("snapshots")
UPDATE = bool(os.environ.get("FIELDAPP_UPDATE_SNAPSHOTS"))


def label(app: FieldApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def rows(app: FieldApp) -> list[str]:
    table = app.screen.query_one("#table", DataTable)
    return [str(key.value) for key in table.rows]


def no_data_on_screen(app: FieldApp, *needles: str) -> None:
    """Nothing the store holds is shown or kept in a widget of any screen."""
    for screen in app.screen_stack:
        assert not isinstance(screen, TestimoniesScreen | DetailScreen | SyncScreen)
        assert all(table.row_count == 0 for table in screen.query(DataTable))
    text = screen_text(app)
    for needle in needles:
        assert needle not in text


def populate(session: Session, count: int, *, canary: bool = False) -> list[str]:
    session.create(PASSPHRASE)
    store = session.store
    ids = []
    for i in range(count):
        place = Place(f"{CANARY} {i}" if canary else f"Aleppo, district {i % 7}")
        narrative = f"{ARABIC} {OLIVE}" if i % 25 == 0 else ARABIC
        if canary:
            narrative = f"{NARRATIVE} {narrative}"
        t = make_testimony(store, narrative=narrative, taken_place=place, incident_place=place)
        t = dataclasses.replace(t, taken_at=t.taken_at + timedelta(days=(i * 97) % MANY))
        if i % 5 == 0:
            t = dataclasses.replace(t, status=Status.READY)
        ids.append(store.create(t).id)
    session.lock()
    return ids


# ---------------------------------------------------------------- first run


@pilot_test
async def test_setup_refuses_weak_and_mismatched_then_shows_a_working_recovery_code(
    tmp_path: Path,
) -> None:
    session = make_session(tmp_path)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, SetupScreen)
        first = app.screen.query_one("#first", Input)
        second = app.screen.query_one("#second", Input)

        async def submit(one: str, two: str) -> None:
            first.value = one
            first.focus()
            await pilot.press("enter")
            assert second.has_focus
            second.value = two
            await pilot.press("enter")
            await settle(pilot)

        await submit("short1", "short1")
        assert label(app, "#strength").startswith("Strength: too short.")
        assert label(app, "#setup-error") == estimate("short1").advice
        assert not session.is_set_up()

        await submit(GOOD, GOOD + " x")
        assert label(app, "#setup-error") == "The two passphrases differ; type them again."
        assert second.value == ""
        assert label(app, "#strength").startswith("Strength: strong.")
        assert not session.is_set_up()

        await submit(GOOD, GOOD)
        code = label(app, "#code")
        assert code
        assert first.value == second.value == ""
        assert session.is_set_up()
        assert session.is_unlocked
        # The code shown really opens the home (Argon2id off the UI thread).
        unlocked = await asyncio.to_thread(unlock_home, session.home, code)
        assert unlocked.device.public_key == session.store.device_key

        await pilot.press("enter")  # "I have written it down" has the focus
        await settle(pilot)
        # The optional enrolment step; escape means "enrol later".
        assert "Enrol with HQ" in screen_text(app)
        assert code not in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert "No testimonies (all)" in label(app, "#where")
        assert code not in screen_text(app)

    with pytest.raises(WrongSecret):
        unlock_home(Home(tmp_path / "home"), GOOD + " x")
    unlock_home(Home(tmp_path / "home"), GOOD)


# ---------------------------------------------------------------- unlock and lock


@pilot_test
async def test_wrong_passphrase_says_so_in_one_line_and_stays(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 3)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, UnlockScreen)
        await unlock(pilot, "not the passphrase at all")
        assert isinstance(app.screen, UnlockScreen)
        error = label(app, "#unlock-error")
        assert error == WrongSecret().message
        assert "\n" not in error
        field = app.screen.query_one("#passphrase", Input)
        assert field.value == ""
        assert field.has_focus
        assert not field.disabled
        assert not session.is_unlocked

        await unlock(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert len(rows(app)) == 3


@pilot_test
async def test_an_interrupted_rekey_finished_at_unlock_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys rekey killed after the database moved: the UI finishes it, and says the code changed."""
    session = make_session(tmp_path)
    populate(session, 2)

    def killed(step: str) -> None:
        if step == "rekeyed":
            raise KeyboardInterrupt  # stands for the process dying right there

    monkeypatch.setattr(dbrekey, "step_hook", killed)
    with pytest.raises(KeyboardInterrupt):
        rekey_home(session.home, PASSPHRASE, kdf=CHEAP)
    monkeypatch.setattr(dbrekey, "step_hook", dbrekey._no_step)
    assert session.home.rekey_pending.exists()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert len(rows(app)) == 2
        notes = [n.message for n in app._notifications]
        assert notes == [FINISHED_CODE_LOST]
    assert not session.home.rekey_pending.exists()


@pytest.mark.parametrize("where", ["list", "detail", "help over detail", "sync"])
@pilot_test
async def test_lock_drops_every_screen_with_data(tmp_path: Path, where: str) -> None:
    session = make_session(tmp_path)
    populate(session, 3, canary=True)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        keys = {"list": [], "detail": ["enter"], "help over detail": ["enter", "f1"], "sync": ["y"]}
        await pilot.press(*keys[where])
        await settle(pilot)
        assert len(app.screen_stack) == 2 + len(keys[where])
        with_data = app.screen_stack[1:]
        assert all(screen.is_attached for screen in with_data)
        if where == "detail":  # the check after locking would see them
            text = screen_text(app)
            assert CANARY in text
            assert NARRATIVE in text
            assert ARABIC[:10] in text

        await pilot.press("ctrl+l")
        await settle(pilot)
        assert not session.is_unlocked
        assert isinstance(app.screen, UnlockScreen)
        assert len(app.screen_stack) == 2
        assert "Locked." in label(app, "#unlock-prompt")
        no_data_on_screen(app, CANARY, NARRATIVE, ARABIC[:10])
        assert not any(screen.is_attached for screen in with_data)

        await unlock(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert len(rows(app)) == 3


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pilot_test
async def test_idle_lock_after_the_configured_delay(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 2, canary=True)
    clock = FakeMonotonic()
    app = FieldApp(session, idle_lock_seconds=60, monotonic=clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        assert isinstance(app.screen, TestimoniesScreen)

        clock.now += 59
        await app._check_idle()
        await pilot.press("down")  # activity restarts the count
        clock.now += 59
        await app._check_idle()
        await settle(pilot)
        assert session.is_unlocked
        assert isinstance(app.screen, TestimoniesScreen)

        clock.now += 1
        await app._check_idle()
        await settle(pilot)
        assert not session.is_unlocked
        assert isinstance(app.screen, UnlockScreen)
        no_data_on_screen(app, CANARY, NARRATIVE)

        clock.now += 3600  # locked stays locked; nothing to do
        await app._check_idle()
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)


# ---------------------------------------------------------------- the list


@pytest.fixture(scope="module")
def many_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    session = make_session(root)
    ids = populate(session, MANY)
    session.unlock(PASSPHRASE)
    store = session.store
    # The most recently changed testimony has three revisions.
    record = store.get(ids[1])
    store.update(ids[1], dataclasses.replace(record.testimony, narrative=ARABIC + " ١"))
    store.update(ids[1], dataclasses.replace(record.testimony, narrative=ARABIC + " ٢"))
    session.lock()
    return root / "home"


@pytest.fixture
def many(many_home: Path, tmp_path: Path) -> Iterator[Session]:
    """A copy of the 250-testimony home (locked), so each test may change it."""
    shutil.copytree(many_home, tmp_path / "home")
    session = make_session(tmp_path)
    try:
        yield session
    finally:
        session.lock()


def expected_page(session: Session, **query: object) -> list[str]:
    """The page the list should show, straight from the store the app opened."""
    return [s.id for s in session.store.page(limit=PAGE_SIZE, **query)]  # type: ignore[arg-type]


@pilot_test
async def test_paging_filter_and_sort(many: Session) -> None:
    app = FieldApp(many)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        store = many.store
        assert rows(app) == expected_page(many)
        assert label(app, "#where").startswith(f"1-100 of {MANY} (all), by last change.")

        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert rows(app) == expected_page(many, offset=100)
        assert label(app, "#where").startswith(f"101-200 of {MANY}")
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert len(rows(app)) == MANY - 200
        await pilot.press("right_square_bracket")  # no page after the last
        await settle(pilot)
        assert label(app, "#where").startswith(f"201-{MANY} of {MANY}")
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert rows(app) == expected_page(many, offset=100)

        await pilot.press("f")
        await settle(pilot)
        drafts = store.count(Status.DRAFT)
        assert label(app, "#where").startswith(f"1-100 of {drafts} (draft)")
        assert rows(app) == expected_page(many, status=Status.DRAFT)
        await pilot.press("f")
        await settle(pilot)
        ready = store.count(Status.READY)
        assert ready == MANY // 5
        assert label(app, "#where").startswith(f"1-{ready} of {ready} (ready)")
        assert {s.status for s in store.summaries(rows(app))} == {Status.READY}
        await pilot.press("f", "f", "f")  # sent, confirmed, then all again
        await settle(pilot)
        assert label(app, "#where").startswith(f"1-100 of {MANY} (all)")

        await pilot.press("o")
        await settle(pilot)
        assert "by date taken" in label(app, "#where")
        by_taken = expected_page(many, sort=Sort.TAKEN)
        assert rows(app) == by_taken
        assert by_taken != expected_page(many)
        await pilot.press("o")
        await settle(pilot)
        assert "by incident" in label(app, "#where")


@pilot_test
async def test_search_arabic_and_escape_clears(many: Session) -> None:
    app = FieldApp(many)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        store = many.store
        await pilot.press("slash")
        search = app.screen.query_one("#search", Input)
        assert search.display
        assert search.has_focus
        await pilot.press(*OLIVE)
        await settle(pilot)
        assert search.value == OLIVE
        found = rows(app)
        assert sorted(found) == sorted(s.id for s in store.search(OLIVE, limit=PAGE_SIZE))
        assert len(found) == MANY // 25
        assert label(app, "#where") == f"{MANY // 25} found for the search. Escape clears it."

        await pilot.press("escape")
        await settle(pilot)
        assert not search.display
        assert search.value == ""
        assert rows(app) == expected_page(many)


@pilot_test
async def test_enter_opens_the_detail_with_its_revision_history(many: Session) -> None:
    app = FieldApp(many)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        top = rows(app)[0]
        assert many.store.get(top).seq == 3
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.record_id == top
        history = app.screen.query_one("#history", DataTable)
        assert [history.get_row_at(i)[0] for i in range(history.row_count)] == ["1", "2", "3"]
        assert label(app, "#heading") == f"Testimony {top}  revision 3  draft"

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert rows(app)[0] == top


# ---------------------------------------------------------------- help and panic


def binding_keys(bindings: list[Binding]) -> set[str]:
    names = {"slash": "/", "right_square_bracket": "]", "left_square_bracket": "["}
    return {names.get(b.key, b.key) for b in bindings if b.show}


def help_keys(where: str) -> set[str]:
    return {k for w, keys, _ in KEYS if w in (where, "Anywhere") for k in keys.split(" / ")}


@pilot_test
async def test_f1_lists_every_key(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#keys", DataTable)
        shown = [tuple(table.get_row_at(i)) for i in range(table.row_count)]
        assert shown == list(KEYS)
        text = screen_text(app)
        assert "ctrl+l" in text
        assert "Lock now" in text
        await pilot.press("f1")  # no second help on top of the first
        assert len(app.screen_stack) == 3
        await pilot.press("escape")
        assert isinstance(app.screen, TestimoniesScreen)


@pytest.mark.parametrize(
    ("where", "bindings"),
    [
        ("Anywhere", FieldApp.BINDINGS),
        ("List", TestimoniesScreen.BINDINGS),
        ("Detail", DetailScreen.BINDINGS),
        ("Sync", SyncScreen.BINDINGS),
    ],
)
def test_help_knows_every_shown_binding(where: str, bindings: list[Binding]) -> None:
    assert binding_keys(bindings) <= help_keys(where)


@pilot_test
async def test_panic_erase_destroys_the_keys_and_exits(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 2)
    home = session.home
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        await pilot.press("f10")
        assert isinstance(app.screen, PanicScreen)
        await pilot.press(*"ERASE", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert app.return_code == 0
    assert not home.keyslots.exists()
    assert not home.device_key.exists()
    assert not any(p.exists() for p in home.database_files())
    assert not session.is_unlocked


@pytest.mark.parametrize("keys", [("e", "r", "a", "s", "e", "enter"), ("escape",), ("enter",)])
@pilot_test
async def test_panic_anything_else_cancels(tmp_path: Path, keys: tuple[str, ...]) -> None:
    session = make_session(tmp_path)
    ids = populate(session, 2)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        await pilot.press("f10", *keys)
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert app.is_running
        assert sorted(rows(app)) == sorted(ids)
    assert session.home.keyslots.exists()
    unlock_home(session.home, PASSPHRASE)


@pilot_test
async def test_panic_from_the_unlock_screen(tmp_path: Path) -> None:
    """Someone at the door while locked: erase without the passphrase."""
    session = make_session(tmp_path)
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f10", *"ERASE", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert not session.home.keyslots.exists()


# ---------------------------------------------------------------- 80 columns


@pilot_test
async def test_setup_instructions_are_whole_at_80_columns(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "unrelated words are strong" in " ".join(screen_text(app).replace("│", " ").split())
        first = app.screen.query_one("#first", Input)
        second = app.screen.query_one("#second", Input)
        first.value = second.value = GOOD
        second.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "shown only this once" in " ".join(screen_text(app).replace("│", " ").split())


@pilot_test
async def test_unlock_instruction_is_whole_at_80_columns(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "to open your records." in " ".join(screen_text(app).replace("│", " ").split())


# ---------------------------------------------------------------- snapshots


def normalise_svg(svg: str) -> str:
    """Rich names the SVG's classes and clip paths after a hash of the content."""
    return re.sub(r"terminal-\d+", "terminal", svg)


def check_snapshot(app: FieldApp, name: str) -> None:
    text = screen_text(app) + "\n"
    txt, svg = SNAPSHOTS / f"{name}.txt", SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        txt.write_text(text, encoding="utf-8")
        svg.write_text(normalise_svg(app.export_screenshot()), encoding="utf-8")
        return
    assert txt.exists(), f"no snapshot {txt.name}: run with FIELDAPP_UPDATE_SNAPSHOTS=1"
    expected = txt.read_text(encoding="utf-8")
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), lineterm=""))
    assert text == expected, f"{name} changed (FIELDAPP_UPDATE_SNAPSHOTS=1 to accept):\n{diff}"


@pilot_test
async def test_snapshot_setup(tmp_path: Path) -> None:
    app = FieldApp(make_session(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        check_snapshot(app, "setup")


@pilot_test
async def test_snapshot_unlock(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    populate(session, 1)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        check_snapshot(app, "unlock")


@pilot_test
async def test_snapshot_list(tmp_path: Path) -> None:
    session = make_session(tmp_path, random_bytes=CountingRandom())
    populate(session, 8)
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        check_snapshot(app, "list")
