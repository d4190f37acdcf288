"""The testimony editor on a real store: what the store holds after typing, saving, attaching."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, Label, Select, Static, TextArea

from fieldapp.domain import (
    Consent,
    ConsentScope,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    ValidationError,
    Victims,
)
from fieldapp.session import Session
from fieldapp.store.store import FieldStore
from fieldapp.ui.app import FieldApp
from fieldapp.ui.forms import FormContext, TestimonyForm, build, form_from
from fieldapp.ui.screens.editor import EditorScreen
from fieldapp.ui.screens.filepicker import FilePickerScreen
from fieldapp.ui.screens.testimonies import TestimoniesScreen
from fieldapp.ui.widgets.violations import ViolationPicker
from tests.store.conftest import ARABIC, make_testimony
from tests.ui import PASSPHRASE, pilot_test, settle

SIZE = (80, 24)
SLOW = 600.0  # an autosave delay no test reaches: saving is explicit there


class Saves:
    """Captures the editor's Saved messages (``run_test(message_hook=...)``)."""

    def __init__(self) -> None:
        self.seen: list[EditorScreen.Saved] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, EditorScreen.Saved):
            self.seen.append(message)


async def open_editor(
    pilot: Pilot[None], record_id: str | None = None, **kw: object
) -> EditorScreen:
    await settle(pilot)
    screen = EditorScreen(record_id, **kw)  # type: ignore[arg-type]
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector).focus()
    await pilot.press(*text)


async def wait_until(pilot: Pilot[None], done: Callable[[], bool]) -> None:
    """Let the autosave delay pass (the subject of the test), then wait for its worker."""
    for _ in range(200):
        await pilot.pause(0.02)
        if done():
            await settle(pilot)
            return
    raise AssertionError("the autosave did not happen")


def problem_line(screen: EditorScreen) -> str:
    label = screen.query_one("#editor-problem", Label)
    return str(label.content) if label.display else ""


def store_of(session: Session) -> FieldStore:
    return session.store


@pilot_test
async def test_new_testimony_with_arabic_narrative_is_marked_ready(
    unlocked_session: Session,
) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, autosave_delay=SLOW)
        await type_into(pilot, "#taken-place", "Aleppo, hotel")
        language = screen.query_one("#language", Input)
        language.value = ""
        await type_into(pilot, "#language", "ar")
        area = screen.query_one("#narrative", TextArea)
        head, rest = ARABIC[:8], ARABIC[8:]
        await type_into(pilot, "#narrative", head)  # typed key by key, spaces included
        area.insert(rest)
        await type_into(pilot, "#incident-date", "2016-12")

        # Two violations, each found by filtering; the second filter keeps the first choice.
        picker = screen.query_one(ViolationPicker)
        await type_into(pilot, "#violation-filter", "disappear")
        await pilot.press("enter", "space")
        assert picker.chosen == {"enforced-disappearance"}
        screen.query_one("#violation-filter", Input).value = ""
        await type_into(pilot, "#violation-filter", "torture")
        await pilot.press("enter", "space")
        assert picker.chosen == {"enforced-disappearance", "torture"}
        await type_into(pilot, "#identity-name", "Ahmad Y.")
        screen.query_one("#consent-justice-mechanisms", Checkbox).focus()
        await pilot.press("space")

        await pilot.press("ctrl+r")
        await settle(pilot)
        assert problem_line(screen) == ""

    store = store_of(unlocked_session)
    (summary,) = store.page()
    saved = store.get(summary.id)
    t = saved.testimony
    assert t.status is Status.READY
    assert t.narrative == ARABIC
    assert t.language == "ar"
    assert t.taken_place == Place("Aleppo, hotel")
    assert str(t.incident_date) == "2016-12"
    assert t.violations == ("enforced-disappearance", "torture")
    assert t.consent is not None
    assert t.consent.scopes == {ConsentScope.JUSTICE_MECHANISMS}
    assert t.witness_code is not None
    identity = store.identity(t.witness_code)
    assert identity is not None
    assert identity.name == "Ahmad Y."


@pilot_test
async def test_autosave_writes_drafts_without_saving_by_hand(unlocked_session: Session) -> None:
    saves = Saves()
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    store = store_of(unlocked_session)
    async with app.run_test(size=SIZE, message_hook=saves) as pilot:
        screen = await open_editor(pilot, autosave_delay=0.05)
        await type_into(pilot, "#taken-place", "Idlib")
        await type_into(pilot, "#narrative", "First words")
        await wait_until(pilot, lambda: screen.is_settled and len(saves.seen) >= 1)
        (summary,) = store.page()
        first = store.get(summary.id)
        assert first.testimony.narrative == "First words"
        assert first.testimony.status is Status.DRAFT
        assert "Saved" in str(screen.query_one("#editor-status", Label).content)

        # Typing on, with saves landing in between: revisions, never a second record.
        count = len(saves.seen)
        for word in (" and", " more", " words"):
            await pilot.press(*word)
            await pilot.pause(0.01)
        await wait_until(pilot, lambda: screen.is_settled and len(saves.seen) > count)
        assert store.count() == 1
        last = store.get(summary.id)
        assert last.seq > first.seq
        assert last.testimony.narrative == "First words and more words"
        assert {s.record_id for s in saves.seen} == {summary.id}

        # What the app calls before locking: saves at once, without the delay.
        screen.autosave_delay = SLOW
        await pilot.press(*"!")
        await screen.flush()
        assert store.get(summary.id).testimony.narrative == "First words and more words!"


@pilot_test
async def test_invalid_incident_date_is_named_and_the_text_stays(
    unlocked_session: Session,
) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, autosave_delay=SLOW)
        await type_into(pilot, "#taken-place", "Homs")
        await type_into(pilot, "#narrative", "Kept")
        await type_into(pilot, "#incident-date", "2016-13")
        await pilot.press("ctrl+s")
        await settle(pilot)
        line = problem_line(screen)
        assert "incident_date" in line
        assert "\n" not in line
        assert screen.query_one("#incident-date", Input).value == "2016-13"
        assert screen.query_one("#incident-date").has_class("-invalid")
        assert screen.query_one("#narrative", TextArea).text == "Kept"
        assert store_of(unlocked_session).count() == 0

        await pilot.press("backspace", "2")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert problem_line(screen) == ""
        assert not screen.query_one("#incident-date").has_class("-invalid")
    (summary,) = store_of(unlocked_session).page()
    assert summary.incident == "2016-12"


@pilot_test
async def test_attach_a_file_through_the_picker(unlocked_session: Session, tmp_path: Path) -> None:
    evidence = tmp_path / "photos" / "checkpoint.jpg"
    evidence.parent.mkdir()
    data = b"\xff\xd8\xff" + bytes(range(256)) * 40
    evidence.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, autosave_delay=SLOW, picker_start=tmp_path)
        await type_into(pilot, "#taken-place", "Daraa")
        await pilot.press("ctrl+o")
        await pilot.pause()  # not settle(): the directory tree's loader worker runs until closed
        assert isinstance(app.screen, FilePickerScreen)
        await type_into(pilot, "#picker-path", "photos/checkpoint.jpg")  # from the tree's folder
        await pilot.press("enter")
        await settle(pilot)
        current: object = app.screen
        assert current is screen
        shown = str(screen.query_one("#attachments", Static).content)
        assert "checkpoint.jpg" in shown
        assert digest in shown

    store = store_of(unlocked_session)
    (summary,) = store.page()
    (ref,) = store.get(summary.id).testimony.attachments
    assert (ref.filename, ref.size, ref.sha256) == ("checkpoint.jpg", len(data), digest)


@pilot_test
async def test_editing_loads_every_field_and_one_change_is_one_revision(
    unlocked_session: Session,
) -> None:
    store = store_of(unlocked_session)
    original = make_testimony(
        store,
        incident_date=None,
        incident_place=Place("Bustan al-Qasr", "36.1911", "37.1408"),
        perpetrators=(Perpetrator("Three men in uniform", "Air Force Intelligence"),),
        victims=Victims(2, ("A man, about 30", "His brother")),
        source_type=SourceType.HEARSAY,
        reliability=Reliability.MEDIUM,
        violations=("arbitrary-detention", "torture"),
        consent=Consent(
            frozenset({ConsentScope.INTERNAL_ONLY}),
            "monitor-7",
            date(2016, 12, 10),
            date(2016, 12, 12),
        ),
    )
    identity = ProtectedIdentity("Samira", "+963 900 000", "Old city", "Prefers evenings")
    saved = store.create(original, identity=identity)
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, saved.id, autosave_delay=SLOW)
        q = screen.query_one
        inputs = {
            "#taken-at": "2016-12-10 14:30+03:00",
            "#taken-place": "Aleppo, a hotel room",
            "#language": "ar",
            "#incident-date": "",
            "#incident-place": "Bustan al-Qasr",
            "#incident-lat": "36.1911",
            "#incident-lon": "37.1408",
            "#victim-count": "2",
            "#consent-taken-on": "2016-12-10",
            "#consent-withdrawn-on": "2016-12-12",
            "#identity-name": "Samira",
            "#identity-contact": "+963 900 000",
            "#identity-address": "Old city",
        }
        assert {sel: q(sel, Input).value for sel in inputs} == inputs
        assert q("#narrative", TextArea).text == ARABIC
        assert q("#perpetrators", TextArea).text == "Three men in uniform | Air Force Intelligence"
        assert q("#victim-descriptions", TextArea).text == "A man, about 30\nHis brother"
        assert q("#identity-notes", TextArea).text == "Prefers evenings"
        assert q(ViolationPicker).chosen == {"arbitrary-detention", "torture"}
        assert q("#source-type", Select).value is SourceType.HEARSAY
        assert q("#reliability", Select).value is Reliability.MEDIUM
        assert q("#no-witness", Checkbox).value is False
        assert str(q("#witness-code", Label).content) == original.witness_code
        scopes = {s for s in ConsentScope if q(f"#consent-{s.value}", Checkbox).value}
        assert scopes == {ConsentScope.INTERNAL_ONLY}

        await pilot.press("ctrl+s")  # nothing changed: nothing written
        await settle(pilot)
        assert store.get(saved.id).seq == 1

        await type_into(pilot, "#incident-place", " crossing")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("escape")  # saved already: leaves without another revision
        await settle(pilot)
        assert not isinstance(app.screen, EditorScreen)

    history = store.history(saved.id)
    assert [h.seq for h in history] == [1, 2]
    expected = dataclasses.replace(
        saved.testimony, incident_place=Place("Bustan al-Qasr crossing", "36.1911", "37.1408")
    )
    assert history[1].testimony == expected
    assert store.identity(original.witness_code or "") == identity


@pilot_test
async def test_identity_left_empty_stores_none_and_arabic_digits_parse(
    unlocked_session: Session,
) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, autosave_delay=SLOW)
        await type_into(pilot, "#taken-place", "Raqqa")
        await type_into(pilot, "#incident-date", "٢٠١٦-١٢/٢٠١٦-١٢-٠٩")
        await type_into(pilot, "#incident-lat", "٣٥")
        # Pilot cannot press U+066B (no key name); a terminal delivers it as a character.
        screen.query_one("#incident-lat", Input).insert_text_at_cursor("٫")
        await pilot.press(*"٩٥")
        await type_into(pilot, "#incident-lon", "39.01")
        await pilot.press("escape")  # saves, then leaves
        await settle(pilot)
        assert not isinstance(app.screen, EditorScreen)

    store = store_of(unlocked_session)
    (summary,) = store.page()
    t = store.get(summary.id).testimony
    assert str(t.incident_date) == "2016-12/2016-12-09"
    assert t.incident_place == Place("", "35.95", "39.01")
    assert t.witness_code is not None
    assert store.identity(t.witness_code) is None


@pilot_test
async def test_leaving_with_an_unsaveable_draft_asks_for_a_second_escape(
    unlocked_session: Session,
) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot, autosave_delay=SLOW)
        await type_into(pilot, "#narrative", "No place given yet")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        assert "taken_place" in problem_line(screen)
        assert "Escape again" in problem_line(screen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not screen
    assert store_of(unlocked_session).count() == 0


@pilot_test
async def test_new_from_the_list_and_back_shows_the_row(unlocked_session: Session) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.show_testimonies()
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EditorScreen)
        await pilot.press(*"Hama")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TestimoniesScreen)
        assert app.screen.query_one(DataTable).row_count == 1


# ---------------------------------------------------------------- the form, without a screen


def context(store: FieldStore, **changes: object) -> FormContext:
    ctx = FormContext(store.recorded_by, store.new_witness_code(), store.vocabulary)
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def test_form_round_trips_a_stored_testimony_unchanged(unlocked_session: Session) -> None:
    store = store_of(unlocked_session)
    t = make_testimony(
        store,
        perpetrators=(Perpetrator("Men | in black", ""), Perpetrator("A sniper", "Army")),
        victims=Victims(None, ("Two children",)),
    )
    form = form_from(t, None, datetime(2016, 12, 10, tzinfo=UTC))
    assert form.perpetrators == "Men | in black |\nA sniper | Army"
    ctx = context(store, witness_code=t.witness_code, base=t)
    rebuilt, identity = build(form, ctx, Status.DRAFT)
    assert rebuilt == t
    assert identity is None


def test_form_reports_every_problem_at_once(unlocked_session: Session) -> None:
    store = store_of(unlocked_session)
    form = TestimonyForm(
        taken_at="yesterday",
        taken_place="",
        incident_date="2016-12-40",
        incident_lat="91",
        incident_lon="10",
        victim_count="some",
        no_witness=True,
        identity_name="Samira",
    )
    with pytest.raises(ValidationError) as caught:
        build(form, context(store), Status.READY)
    fields = {p.field.split("[")[0] for p in caught.value.problems}
    assert {
        "taken_at",
        "taken_place.text",
        "incident_date",
        "incident_place.latitude",
        "victims.count",
        "identity",
        "narrative",
    } <= fields
    assert "\n" not in caught.value.message


@pilot_test
async def test_locking_keeps_what_was_typed_since_the_last_autosave(
    unlocked_session: Session,
) -> None:
    app = FieldApp(unlocked_session, idle_lock_seconds=SLOW)
    store = store_of(unlocked_session)
    home = unlocked_session.home
    async with app.run_test(size=SIZE) as pilot:
        await open_editor(pilot, autosave_delay=SLOW)  # no autosave would ever run
        await type_into(pilot, "#taken-place", "Idlib")
        await type_into(pilot, "#narrative", "typed just before ctrl+l")
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert not unlocked_session.is_unlocked
    del store
    from fieldapp.store.store import FieldStore as Store
    from fieldapp.store.vault import unlock_home

    with Store.open(unlock_home(home, PASSPHRASE)) as reopened:
        (summary,) = reopened.page()
        assert reopened.get(summary.id).testimony.narrative == "typed just before ctrl+l"
