"""Commands that set up, open and erase a home: init, keys, panic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from crypto.fingerprint import fingerprint
from fieldapp.cli.secrets import STDIN, SecretInputError, check_new_passphrase, read_secret
from fieldapp.cli.state import CliState, pass_state
from fieldapp.store.store import FieldStore
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


@click.command("init")
@click.option("--enroll", "enroll", metavar="FILE", help="HQ enrolment file to import.")
@click.option(
    "--hq-fingerprint",
    metavar="DIGITS",
    help="With --enroll: the HQ fingerprint HQ gave you; setup stops if the file's differs.",
)
@PASSPHRASE_FILE
@pass_state
def init_command(
    state: CliState, enroll: str | None, hq_fingerprint: str | None, passphrase_file: str | None
) -> None:
    """Create a new home: keys, encrypted store and a recovery code (shown once)."""
    # Imported here: synccommands imports this module's options.
    from fieldapp.cli.synccommands import check_fingerprint, report_enrolment  # noqa: PLC0415
    from sync.enrol import enrol, read_enrolment_file  # noqa: PLC0415

    home = state.resolve_home()
    enrolment = None
    if enroll is not None:  # verified before anything is created: a bad file changes nothing
        enrolment, trust = read_enrolment_file(Path(enroll), state.clock())
        shown = check_fingerprint(trust.root, hq_fingerprint)
    passphrase = check_new_passphrase(read_secret("New passphrase", passphrase_file, confirm=True))
    unlocked, code = create_home(home, passphrase, kdf=state.kdf, clock=state.clock)
    click.echo(f"Created a fieldapp home in {home.root}")
    click.echo("Recovery code (write it on paper now; it is shown only this once):")
    click.echo(f"  {code}")
    click.echo(f"Device fingerprint: {fingerprint(unlocked.device.public_key)}")
    if enrolment is not None:
        with FieldStore.open(unlocked, clock=state.clock) as store:
            report_enrolment(enrol(store, enrolment, trust), shown)


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
