"""The CLI dispatcher: one line per expected error, tracebacks only with --debug."""

from __future__ import annotations

import io
import subprocess
import sys

import click
import pytest

from crypto.errors import BundleError, BundleReason, WrongSecret
from fieldapp import __version__
from fieldapp.cli import cli, run
from fieldapp.errors import ExitCode, FieldappError

SECRET_LOOKING = "canary-Zx81 said the checkpoint officer"


def _group_with(raising: BaseException) -> click.Group:
    """A copy of the real group with one extra command that raises ``raising``."""

    @click.group(commands=dict(cli.commands))
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def group(ctx: click.Context, debug: bool) -> None:
        from fieldapp.cli import CliState

        ctx.ensure_object(CliState).debug = debug

    @group.command("boom")
    def boom() -> None:
        raise raising

    return group


def _run(argv: list[str], group: click.Group = cli) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(argv, group=group, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_version_prints_the_package_version() -> None:
    code, out, _ = _run(["--version"])
    assert code == 0
    assert out.strip() == f"fieldapp {__version__}"


def test_help_lists_the_global_options() -> None:
    code, out, _ = _run(["--help"])
    assert code == 0
    assert "--home" in out and "--debug" in out


def test_unknown_command_is_a_usage_error() -> None:
    code, _, err = _run(["no-such-command"])
    assert code == ExitCode.USAGE
    assert "No such command" in err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (WrongSecret(), ExitCode.AUTH),
        (BundleError(BundleReason.SIGNATURE), ExitCode.DATA),
        (FieldappError("Relay unreachable; try again later."), ExitCode.ERROR),
    ],
)
def test_expected_errors_print_one_line_and_their_code(error: Exception, code: int) -> None:
    got, out, err = _run(["boom"], _group_with(error))
    assert got == code
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("fieldapp: ")
    assert "Traceback" not in err


def test_unexpected_error_hides_its_text_without_debug() -> None:
    got, _, err = _run(["boom"], _group_with(RuntimeError(SECRET_LOOKING)))
    assert got == ExitCode.INTERNAL
    assert SECRET_LOOKING not in err
    assert "--debug" in err
    assert err.count("\n") == 1


def test_debug_shows_the_traceback() -> None:
    got, _, err = _run(["--debug", "boom"], _group_with(RuntimeError("kaboom")))
    assert got == ExitCode.INTERNAL
    assert "Traceback" in err and "kaboom" in err


def test_console_script_runs_and_disables_core_dumps() -> None:
    probe = (
        "import resource, sys; from fieldapp.hardening import harden_process; "
        "harden_process(); sys.exit(resource.getrlimit(resource.RLIMIT_CORE)[0])"
    )
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "fieldapp", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"fieldapp {__version__}"
