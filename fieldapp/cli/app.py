"""The ``fieldapp`` command line: one dispatcher, one line per expected error.

``run()`` is the whole program minus ``sys.exit``: tests call it in-process with
their own streams. Expected failures (``FieldappError`` and ``CryptoError``)
print one line on stderr and return their exit code; anything else is a bug,
reported as one line that asks for ``--debug``, which alone prints tracebacks.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import IO

import click

from crypto.attachment import AttachmentDamaged
from crypto.errors import (
    BundleError,
    CryptoError,
    EnrolmentError,
    InvalidKey,
    KeyFileError,
    KeyslotCorrupt,
    ReceiptError,
    StatementError,
    WrongSecret,
)
from crypto.revisions import RevisionError
from crypto.sealed import SealedMessageError
from fieldapp import __version__
from fieldapp.cli.state import CliState
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hardening import harden_process

_CRYPTO_EXIT_CODES: tuple[tuple[type[CryptoError], ExitCode], ...] = (
    (WrongSecret, ExitCode.AUTH),
    (KeyslotCorrupt, ExitCode.DATA),
    (BundleError, ExitCode.DATA),
    (StatementError, ExitCode.KEYS),
    (InvalidKey, ExitCode.KEYS),
    (KeyFileError, ExitCode.IO),
    (RevisionError, ExitCode.DATA),
    (AttachmentDamaged, ExitCode.DATA),
    (EnrolmentError, ExitCode.DATA),  # tampered, foreign or expired enrolment file
    (ReceiptError, ExitCode.DATA),
    (SealedMessageError, ExitCode.DATA),
)


@click.group(
    name="fieldapp",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", prog_name="fieldapp", message="%(prog)s %(version)s"
)
@click.option("--home", metavar="DIR", help="Home folder holding the keys and the encrypted store.")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """fieldapp: secure, offline-first field reporting for human-rights monitors.

    Run with no command to open the terminal UI; every command has --help.
    """
    state = ctx.ensure_object(CliState)
    state.debug = debug
    state.home = home
    if ctx.invoked_subcommand is None:
        run_tui(state)


def run_tui(state: CliState) -> None:
    """Open the terminal UI on the home (the setup wizard if there is none yet)."""
    from fieldapp.session import Session  # noqa: PLC0415 -- Textual loads only for the UI
    from fieldapp.ui.app import FieldApp  # noqa: PLC0415
    from fieldapp.ui.guard import check_environment  # noqa: PLC0415
    from sync.push import NetworkTransfers  # noqa: PLC0415

    check_environment(state.environ)
    session = Session(
        state.resolve_home(),
        kdf=state.kdf,
        clock=state.clock,
        # sealed bundles to a folder (a USB stick), or to the relay the enrolment names
        transfers=NetworkTransfers(state.clock),
    )
    app = FieldApp(session)
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code of an expected error, or None for a bug."""
    if isinstance(error, FieldappError):
        return error.exit_code
    for kind, code in _CRYPTO_EXIT_CODES:
        if isinstance(error, kind):
            return code
    if isinstance(error, CryptoError):
        return ExitCode.ERROR
    return None


def run(
    argv: Sequence[str],
    *,
    group: click.Group = cli,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    state: CliState | None = None,
) -> int:
    """Run the CLI with ``argv`` and return its exit code; never raises."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    state = state or CliState()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = group.main(list(argv), prog_name="fieldapp", standalone_mode=False, obj=state)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show(file=err)
        return int(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        err.write("fieldapp: interrupted; nothing more was done.\n")
        return ExitCode.INTERRUPTED
    except Exception as e:  # noqa: BLE001 -- the one place that turns errors into exit codes
        code = exit_code_for(e)
        if state.debug:
            traceback.print_exception(e, file=err)
        if code is None:
            err.write(
                "fieldapp: internal error; nothing was lost. "
                "Run the same command with --debug and report the traceback.\n"
            )
            return ExitCode.INTERNAL
        message = e.message if isinstance(e, FieldappError | CryptoError) else ""
        err.write(f"fieldapp: {message}\n")
        return code
    finally:
        sys.stdout, sys.stderr = old_out, old_err


def main() -> None:
    """Console-script entry point."""
    harden_process()
    sys.exit(run(sys.argv[1:]))


def _register() -> None:
    # Imported here: the command modules import this module's state.
    from fieldapp.cli.homecommands import init_command, keys_group, panic_command  # noqa: PLC0415
    from fieldapp.cli.hqcommands import hq_group  # noqa: PLC0415
    from fieldapp.cli.hqkeycommands import hq_rotate_key  # noqa: PLC0415, F401 -- registers
    from fieldapp.cli.records import check_command, record_group, search_command  # noqa: PLC0415
    from fieldapp.cli.relaycommands import relay_group  # noqa: PLC0415
    from fieldapp.cli.synccommands import enroll_command, sync_group  # noqa: PLC0415

    for command in (
        init_command,
        enroll_command,
        sync_group,
        hq_group,
        relay_group,
        record_group,
        search_command,
        keys_group,
        check_command,
        panic_command,
    ):
        cli.add_command(command)


_register()
