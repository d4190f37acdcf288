"""Commands that set up, open and erase a home: init, keys, panic."""

from __future__ import annotations

import json
import sys

import click

from crypto.fingerprint import fingerprint
from fieldapp.cli.secrets import STDIN, SecretInputError, check_new_passphrase, read_secret
from fieldapp.cli.state import CliState, pass_state
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.vault import (
    change_passphrase,
    create_home,
    new_recovery_code,
    panic,
    unlock_home,
)

PASSPHRASE_FILE = click.option(
    "--passphrase-file",
    metavar="PATH",
    help="Read the passphrase from PATH (- for standard input) instead of a prompt.",
)


class NotYetSupported(FieldappError):
    exit_code = ExitCode.USAGE


@click.command("init")
@click.option("--enroll", "enroll", metavar="FILE", help="HQ enrolment file to import.")
@PASSPHRASE_FILE
@pass_state
def init_command(state: CliState, enroll: str | None, passphrase_file: str | None) -> None:
    """Create a new home: keys, encrypted store and a recovery code (shown once)."""
    if enroll is not None:
        raise NotYetSupported(
            "Enrolment files are not supported by this version yet; run `fieldapp init` "
            "without --enroll and enrol later."
        )
    home = state.resolve_home()
    passphrase = check_new_passphrase(read_secret("New passphrase", passphrase_file, confirm=True))
    unlocked, code = create_home(home, passphrase, kdf=state.kdf, clock=state.clock)
    click.echo(f"Created a fieldapp home in {home.root}")
    click.echo("Recovery code (write it on paper now; it is shown only this once):")
    click.echo(f"  {code}")
    click.echo(f"Device fingerprint: {fingerprint(unlocked.device.public_key)}")


@click.group("keys")
def keys_group() -> None:
    """Show and change this device's keys and secrets."""


@keys_group.command("show")
@PASSPHRASE_FILE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def keys_show(state: CliState, passphrase_file: str | None, as_json: bool) -> None:
    """Show the device key fingerprint, to compare with what HQ sees."""
    unlocked = unlock_home(state.resolve_home(), read_secret("Passphrase", passphrase_file))
    device = unlocked.device.public_key
    if as_json:
        click.echo(
            json.dumps(
                {"device_key": device.raw.hex(), "device_fingerprint": str(fingerprint(device))}
            )
        )
    else:
        click.echo(f"Device key:         {device.raw.hex()}")
        click.echo(f"Device fingerprint: {fingerprint(device)}")


@keys_group.command("passphrase")
@PASSPHRASE_FILE
@click.option(
    "--new-passphrase-file",
    metavar="PATH",
    help="Read the new passphrase from PATH (- for standard input).",
)
@pass_state
def keys_passphrase(
    state: CliState, passphrase_file: str | None, new_passphrase_file: str | None
) -> None:
    """Change the passphrase. The database is not touched; it takes about a second."""
    if passphrase_file == new_passphrase_file == STDIN:
        raise SecretInputError("Only one of the two passphrases can come from standard input.")
    old = read_secret("Current passphrase", passphrase_file)
    new = check_new_passphrase(read_secret("New passphrase", new_passphrase_file, confirm=True))
    change_passphrase(state.resolve_home(), old, new, kdf=state.kdf)
    click.echo("Passphrase changed.", err=True)


@keys_group.command("recovery")
@PASSPHRASE_FILE
@pass_state
def keys_recovery(state: CliState, passphrase_file: str | None) -> None:
    """Replace the recovery code; the old one stops working."""
    code = new_recovery_code(
        state.resolve_home(), read_secret("Passphrase", passphrase_file), kdf=state.kdf
    )
    click.echo("New recovery code (write it on paper now; it is shown only this once):")
    click.echo(f"  {code}")


@click.command("panic")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def panic_command(state: CliState, yes: bool) -> None:
    """Crypto-erase this home at once: destroy the keys, then remove the data."""
    home = state.resolve_home()
    if not yes:
        if not sys.stdin.isatty():
            raise SecretInputError("Refusing to erase without a terminal; pass --yes.")
        typed = click.prompt("Type ERASE to destroy every key and record in this home", err=True)
        if typed.strip() != "ERASE":
            click.echo("Nothing was erased.", err=True)
            return
    seconds = panic(home)
    click.echo(f"Erased: the keys are destroyed and the data removed ({seconds:.2f} s).")
