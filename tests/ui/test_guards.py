"""Nothing of the testimony leaks through Textual: crash output, devtools, screenshots, cores.

The crash and CLI checks run real processes: what matters is what reaches the
terminal and the disk, which an in-process test would not see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from textual.command import CommandPalette

from fieldapp.ui import app as app_module
from fieldapp.ui.app import FieldApp
from fieldapp.ui.guard import UnsafeEnvironment, check_environment
from fieldapp.ui.screens.testimonies import TestimoniesScreen
from tests.store.conftest import make_testimony
from tests.ui import PASSPHRASE, make_session, pilot_test, settle, unlock

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-pass-123"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without Textual's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    env.pop("FIELDAPP_HOME", None)
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def run_python(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# ---------------------------------------------------------------- (a) the crash handler

# The real setup screen, with its strength check made to fail while it holds the
# passphrase just pasted into the field (a local variable of the failing frame).
# It runs under FieldApp and, as the control, under a plain Textual App; both for
# real (app.run, headless), driven by auto_pilot.
CRASH_SCRIPT = """
    import os
    import sys
    from pathlib import Path

    from textual.app import App
    from textual.widgets import Input

    import fieldapp.ui.screens.setup as setup


    def estimate(passphrase):
        raise RuntimeError(passphrase if os.environ.get("IN_MESSAGE") else "boom")


    setup.estimate = estimate


    async def paste_passphrase(pilot) -> None:
        await pilot.pause()
        pilot.app.screen.query_one("#first", Input).value = os.environ["CANARY"]
        await pilot.pause()


    if sys.argv[1] == "fieldapp":
        from fieldapp.session import Session
        from fieldapp.store.home import Home
        from fieldapp.ui.app import FieldApp

        app = FieldApp(Session(Home(Path(sys.argv[2]))))
    else:
        class Plain(App[None]):
            def on_mount(self) -> None:
                self.push_screen(setup.SetupScreen())

        app = Plain()
    app.run(headless=True, size=(80, 24), auto_pilot=paste_passphrase)
    sys.exit(app.return_code)
"""


def crash(kind: str, tmp_path: Path, **env: str) -> tuple[int, str]:
    done = run_python(
        CRASH_SCRIPT, kind, str(tmp_path / "home"), env=clean_env(CANARY=CANARY, **env)
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("env", [{}, {"IN_MESSAGE": "1"}], ids=["in-a-local", "in-the-message"])
def test_fieldapp_crash_prints_one_line_and_no_locals(tmp_path: Path, env: dict[str, str]) -> None:
    code, output = crash("fieldapp", tmp_path, **env)
    assert code == 1
    assert CANARY not in output
    assert "Traceback" not in output
    assert "boom" not in output
    assert " ".join(app_module._CRASH_TEXT.split()) in " ".join(output.split())


def test_control_plain_textual_prints_the_local_passphrase(tmp_path: Path) -> None:
    """Without our handler Textual shows locals: the test above proves something."""
    code, output = crash("textual", tmp_path)
    assert code == 1
    assert "Traceback" in output
    assert f"passphrase = '{CANARY}'" in output


# ---------------------------------------------------------------- (b) devtools and logs


@pytest.mark.parametrize(
    "environ",
    [
        {"TEXTUAL_LOG": "/tmp/textual.log"},
        {"TEXTUAL_DEBUG": "1"},
        {"TEXTUAL_SCREENSHOT": "5"},
        {"TEXTUAL_SCREENSHOT_LOCATION": "/tmp"},
        {"TEXTUAL_SCREENSHOT_FILENAME": "x.svg"},
        {"TEXTUAL_PRESS": "a,b"},
        {"TEXTUAL_DEVTOOLS_HOST": "10.0.0.1"},
        {"TEXTUAL_DEVTOOLS_PORT": "8081"},
        {"TEXTUAL": "devtools"},
        {"TEXTUAL": "debug"},
        {"TEXTUAL": "debug,devtools"},  # what `textual run --dev` sets
        {"TEXTUAL": "DevTools"},
    ],
)
def test_check_environment_refuses(environ: dict[str, str]) -> None:
    with pytest.raises(UnsafeEnvironment) as caught:
        check_environment(environ)
    message = caught.value.message
    assert next(iter(environ)) in message
    assert next(iter(environ.values())) not in message  # names, never values (paths)
    assert "\n" not in message


@pytest.mark.parametrize(
    "environ",
    [{}, {"TEXTUAL": ""}, {"TEXTUAL_LOG": ""}, {"NO_COLOR": "1", "TERM": "xterm"}],
)
def test_check_environment_allows_a_clean_environment(environ: dict[str, str]) -> None:
    check_environment(environ)


def test_check_environment_refuses_a_foreign_driver() -> None:
    with pytest.raises(UnsafeEnvironment):
        check_environment({"TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"})


def test_cli_refuses_to_open_the_ui_with_textual_log(tmp_path: Path) -> None:
    log = tmp_path / "textual.log"
    done = subprocess.run(
        [sys.executable, "-m", "fieldapp", "--home", str(tmp_path / "home")],
        cwd=ROOT,
        env=clean_env(TEXTUAL_LOG=str(log)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2  # ExitCode.USAGE
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fieldapp: Refusing to start: TEXTUAL_LOG is set")
    assert str(log) not in done.stderr
    assert not log.exists()
    assert not (tmp_path / "home").exists()


# ---------------------------------------------------------------- (c) screenshots


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")}


@pilot_test
async def test_screenshots_write_nothing_and_the_palette_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, user = tmp_path / "cwd", tmp_path / "user"
    (user / "Downloads").mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user / ".config"))
    session = make_session(tmp_path)
    session.create(PASSPHRASE)
    session.store.create(make_testimony(session.store))
    session.lock()
    app = FieldApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        before = files_under(cwd, user, session.home.root)

        app.action_screenshot()
        await app.run_action("screenshot")
        await app.run_action("app.screenshot('shot.svg', '.')")
        assert app.deliver_screenshot() is None
        with pytest.raises(PermissionError):
            app.save_screenshot()
        with pytest.raises(PermissionError):
            app.save_screenshot("shot.svg", str(cwd))
        assert list(app.get_system_commands(app.screen)) == []

        assert not app.use_command_palette
        await pilot.press("ctrl+p")
        app.action_command_palette()
        await settle(pilot)
        assert not any(isinstance(s, CommandPalette) for s in app.screen_stack)
        assert isinstance(app.screen, TestimoniesScreen)
        assert app.is_running
        assert files_under(cwd, user, session.home.root) == before
    assert not list(tmp_path.rglob("*.svg"))


# ---------------------------------------------------------------- (d) core dumps

CORE_SCRIPT = """
    import json
    import os
    import resource
    import sys

    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    soft = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    before = resource.getrlimit(resource.RLIMIT_CORE)

    from fieldapp.cli import main

    sys.argv = ["fieldapp", "--home", sys.argv[1]]  # the UI, refused: TEXTUAL_LOG is set
    try:
        main()
    except SystemExit as e:
        code = e.code
    umask = os.umask(0)
    after = resource.getrlimit(resource.RLIMIT_CORE)
    print(json.dumps({"code": code, "before": before, "after": after, "umask": umask}))
"""


def test_the_cli_process_disables_core_dumps(tmp_path: Path) -> None:
    done = run_python(
        CORE_SCRIPT,
        str(tmp_path / "home"),
        env=clean_env(TEXTUAL_LOG=str(tmp_path / "log")),
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 2
    if result["before"][1] != 0:  # a sandbox whose hard limit is 0 proves nothing here
        assert result["before"][0] > 0
    assert result["after"] == [0, 0]
    assert result["umask"] == 0o077
