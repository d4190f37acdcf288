"""The real ``fieldapp`` in a real terminal (tmux, 80x24), driven as a person would.

First run: choose a passphrase twice, read the recovery code off the screen,
enrol with the file of an HQ made in-process (its fingerprint on screen, "It
matches" chosen with the keyboard), record a testimony with an Arabic
narrative, lock (nothing of it stays on screen), unlock, quit. Then the command
line, on the same home, lists exactly that testimony with the narrative byte
for byte, says the home is enrolled, and the recovery code read from the screen
opens the home.

Argon2id runs with the production parameters in the app, as a monitor would see
it (the HQ home, which is not under test here, uses cheap ones).
Every step polls the screen until what a person waits for shows, with a
generous deadline; nothing sleeps for a fixed time. Arabic may be reordered by
the terminal, so on-screen checks look for the Latin canary and the narrative
itself is checked through the CLI afterwards.

The list's columns have fixed widths: rows drawn before the table measured its
content used to be cut to the headers' widths (the last test pins the fix).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from crypto.enrolment import write_enrolment
from crypto.fingerprint import hq_fingerprint as fingerprint_of
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import create_hq_home
from fieldapp.store.home import Home
from fieldapp.ui.app import FieldApp
from fieldapp.ui.screens.testimonies import Page, TestimoniesScreen
from tests.store.conftest import CHEAP, make_testimony
from tests.ui import PASSPHRASE as CHEAP_PASSPHRASE
from tests.ui import make_session, pilot_test, screen_text, settle, unlock
from tests.ui.tmux import TMUX, Screen, TmuxPane

needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed: cannot drive a real terminal"
)

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "cedar window copper lantern meadow"
# Five groups of five Crockford base32 characters (crypto/recovery.py).
RECOVERY_CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}(?:-[0-9A-HJKMNP-TV-Z]{5}){4}\b")
EDITOR_STATUS = re.compile(r"(Saved \d\d:\d\d|No changes) · draft, revision \d+")
STEP = 30.0  # seconds any one step may take (Argon2id at production cost, slow CI)
CLI_TIMEOUT = 60.0
DEVICE = "Field laptop 7"


def enrolment_from_a_new_hq(tmp_path: Path) -> tuple[Path, str]:
    """An HQ made in-process (cheap Argon2id): its enrolment file and its fingerprint."""
    created = create_hq_home(Home(tmp_path / "hq"), "hq passphrase one", "hq protection", kdf=CHEAP)
    with HqArchive.open(created.unlocked) as archive:
        enrolment = archive.new_enrolment(DEVICE)
        archive.record_enrolment(enrolment)
        path = tmp_path / "stick" / "enrolment.faenrol"
        path.parent.mkdir()
        path.write_bytes(write_enrolment(archive.root_key(), enrolment))
        return path, str(fingerprint_of(archive.root_public()))


def fieldapp_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m fieldapp``."""
    script = Path(sys.executable).with_name("fieldapp")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "fieldapp"]


def program_env(tmp_path: Path, home: Path) -> dict[str, str]:
    """A clean environment: nothing of the caller's (no TEXTUAL_*, NO_COLOR, LC_ALL, TMUX)."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": str(REPO),  # the checkout under test, even if not installed
        "HOME": str(tmp_path),
        "FIELDAPP_HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*fieldapp_command(), *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
        check=False,
    )


def dots(line: str) -> int:
    """How many characters a password field shows as typed."""
    return line.count("•")


def draft_rows(screen: Screen) -> list[list[str]]:
    """The cells of every list row showing a draft (no cell here holds a space)."""
    return [line.split() for line in screen.lines if " draft " in line]


def is_row_of(cells: list[str], place: str) -> bool:
    """One row of the list for a testimony taken at ``place`` (the sixth column)."""
    return len(cells) == 7 and cells[5] == place


def the_row(screen: Screen, place: str) -> list[str] | None:
    """The list's only row, if the list shows exactly one testimony, taken at ``place``."""
    rows = draft_rows(screen)
    if "1-1 of 1 (all)" in screen.text and len(rows) == 1 and is_row_of(rows[0], place):
        return rows[0]
    return None


def cursor_below(screen: Screen, label: str) -> bool:
    """The cursor is inside the box that follows ``label`` (a TextArea under its caption)."""
    row = screen.row_of(label)
    return row is not None and screen.cursor_y > row and "▊" in screen.cursor_line


@pytest.mark.slow
@needs_tmux
def test_first_run_record_lock_unlock_quit_in_tmux(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = program_env(tmp_path, home)
    token = secrets.token_hex(3)
    canary = f"canary-{token}"
    place = f"Site-{token}"  # short enough for the list's Place column at 80 columns
    narrative = f"اعتقل عند الحاجز {canary}"

    enrolment_file, hq_fingerprint = enrolment_from_a_new_hq(tmp_path)

    pane = TmuxPane(fieldapp_command(), env=env, cwd=tmp_path)
    try:
        # -------------------------------------------------- first run: the setup wizard
        screen = pane.wait_for_text("Welcome to fieldapp", timeout=STEP)
        assert (screen.width, screen.height) == (80, 24)
        pane.type(PASSPHRASE)
        pane.wait_for(
            lambda s: "Strength:" in s.text and any(dots(r) == len(PASSPHRASE) for r in s.lines),
            "the passphrase typed into the first field",
        )
        pane.press("Enter")
        # Type on only once the cursor has moved, or keys would land in the first field.
        pane.wait_for(
            lambda s: "The same passphrase again" in s.cursor_line, "the cursor in the second field"
        )
        pane.type(PASSPHRASE)
        pane.wait_for(
            lambda s: sum(dots(r) == len(PASSPHRASE) for r in s.lines) == 2,
            "both passphrase fields filled",
        )
        pane.press("Enter")

        screen = pane.wait_for(lambda s: RECOVERY_CODE.search(s.text), "the recovery code")
        assert "Your recovery code" in screen.text
        assert "shown only" in screen.text
        found = RECOVERY_CODE.search(screen.text)
        assert found is not None
        recovery_code = found.group()
        pane.press("Enter")  # "I have written it down" has the focus

        # -------------------------------------------------- enrol: HQ's file, its fingerprint
        screen = pane.wait_for_text("Skip, enrol later", timeout=STEP)
        assert "Enrol with HQ" in screen.text
        assert recovery_code not in screen.text
        pane.type(str(enrolment_file))
        pane.press("Enter")
        screen = pane.wait_for(
            lambda s: "Compare the HQ fingerprint" in s.text and "It matches" in s.text,
            "the HQ fingerprint to compare",
            timeout=STEP,
        )
        assert "   ".join(hq_fingerprint.split()) in screen.text, screen
        assert DEVICE in screen.text
        pane.press("BTab", "Enter")  # from "does not match" (the focus) to "It matches"

        # -------------------------------------------------- the empty list, then a new testimony
        screen = pane.wait_for_text("No testimonies (all).", timeout=STEP)
        assert recovery_code not in screen.text  # shown only once
        pane.press("n")
        pane.wait_for(
            lambda s: "New testimony, not saved yet" in s.text and "Taken place" in s.cursor_line,
            "the new testimony's form, the cursor in 'Taken place'",
        )
        pane.type(place)
        pane.wait_for(lambda s: place in s.cursor_line, "the place typed")
        pane.press("Tab")
        pane.wait_for(lambda s: "Language" in s.cursor_line, "the cursor in 'Language'")
        pane.press("Tab")
        pane.wait_for(
            lambda s: cursor_below(s, "Narrative (exactly as told)"),
            "the cursor in the narrative",
        )
        pane.type(narrative)
        screen = pane.wait_for(lambda s: canary in s.cursor_line, "the narrative typed")
        status_before = screen.lines[0].strip()
        pane.press("C-s")
        screen = pane.wait_for(
            lambda s: EDITOR_STATUS.search(s.lines[0]) and s.lines[0].strip() != status_before,
            "the editor saying the draft is saved",
        )
        pane.press("Escape")  # saves if anything changed, then back to the list

        screen = pane.wait_for(lambda s: the_row(s, place), "the list with the new testimony")
        row = the_row(screen, place)
        assert row is not None
        shown_id = row[0]  # the start of the record id (8 characters, unless cut)

        # -------------------------------------------------- lock: nothing of the data on screen
        pane.press("C-l")
        screen = pane.wait_for_text("Locked. Enter the passphrase to continue.", timeout=STEP)
        for secret in (token, canary, place, "Site-", row[4], "W-", "اعتقل", "draft"):
            assert secret not in screen.text, f"{secret!r} is still on the lock screen:\n{screen}"

        # -------------------------------------------------- unlock, see the row again
        pane.type(PASSPHRASE)
        pane.wait_for(
            lambda s: any(dots(r) == len(PASSPHRASE) for r in s.lines),
            "the passphrase typed into the unlock field",
        )
        pane.press("Enter")
        screen = pane.wait_for(
            lambda s: the_row(s, place), "the list again after unlocking", timeout=STEP
        )
        again = the_row(screen, place)
        assert again is not None
        ids = sorted((shown_id, again[0]), key=len)
        assert ids[1].startswith(ids[0]), f"another record is listed: {row} then {again}"

        # -------------------------------------------------- quit
        pane.press("C-q")
        screen = pane.wait_for_exit(timeout=STEP)
        assert screen.exit_status == 0, f"fieldapp exited with {screen.exit_status}:\n{screen}"
        assert token not in screen.text, f"the testimony is left on the terminal:\n{screen}"
    finally:
        pane.close()

    # ------------------------------------------------------ the CLI sees what was typed
    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE, encoding="utf-8")
    listed = cli(
        env,
        "--home",
        str(home),
        "record",
        "list",
        "--json",
        "--passphrase-file",
        str(passphrase_file),
    )
    assert listed.returncode == 0, listed.stderr
    summaries = json.loads(listed.stdout)
    assert len(summaries) == 1, summaries
    (summary,) = summaries
    assert summary["id"].startswith(shown_id)
    assert summary["place"] == place
    assert summary["status"] == "draft"

    shown = cli(
        env,
        "--home",
        str(home),
        "record",
        "show",
        summary["id"],
        "--json",
        "--passphrase-file",
        str(passphrase_file),
    )
    assert shown.returncode == 0, shown.stderr
    testimony = json.loads(shown.stdout)["testimony"]
    assert testimony["narrative"] == narrative
    assert testimony["taken_place"]["text"] == place

    # ------------------------------------------------------ enrolled with that HQ
    status = cli(
        env,
        "--home",
        str(home),
        "sync",
        "status",
        "--json",
        "--passphrase-file",
        str(passphrase_file),
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["enrolled"] is True
    assert json.loads(status.stdout)["device_name"] == DEVICE

    # ------------------------------------------------------ the code read off the screen opens it
    code_file = tmp_path / "recovery.txt"
    code_file.write_text(recovery_code + "\n", encoding="utf-8")
    by_code = cli(
        env, "--home", str(home), "keys", "show", "--json", "--passphrase-file", str(code_file)
    )
    assert by_code.returncode == 0, by_code.stderr
    by_passphrase = cli(
        env,
        "--home",
        str(home),
        "keys",
        "show",
        "--json",
        "--passphrase-file",
        str(passphrase_file),
    )
    assert by_passphrase.returncode == 0, by_passphrase.stderr
    assert json.loads(by_code.stdout) == json.loads(by_passphrase.stdout)


# ---------------------------------------------------------------- product bug, reproduced


@pilot_test
async def test_list_rows_are_not_cut_to_the_header_widths_by_an_early_frame(
    tmp_path: Path,
) -> None:
    session = make_session(tmp_path)
    session.create(CHEAP_PASSPHRASE)
    session.lock()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        screen = app.screen
        assert isinstance(screen, TestimoniesScreen)
        assert "No testimonies" in screen_text(app)
        record = session.store.create(make_testimony(session.store))
        shown = screen.show

        def show_then_paint(page: Page) -> None:
            shown(page)
            app.export_screenshot()  # the terminal paints before the table's next idle

        screen.show = show_then_paint  # type: ignore[method-assign]
        screen.reload()  # as after the editor closes
        await settle(pilot)
        text = screen_text(app)
        assert "1-1 of 1 (all)" in text
        assert record.id[:8] in text, text
        assert "2016-12-10" in text, text
