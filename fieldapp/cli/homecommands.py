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
    if unlocked.note:  # an interrupted rekey was settled on the way
        click.echo(unlocked.note, err=True)
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
    note = change_passphrase(state.resolve_home(), old, new, kdf=state.kdf)
    if note:  # an interrupted rekey was settled on the way
        click.echo(note, err=True)
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


@keys_group.command("rekey")
@PASSPHRASE_FILE
@pass_state
def keys_rekey(state: CliState, passphrase_file: str | None) -> None:
    """Move to a new master key: the database is re-encrypted; a new recovery code.

    The passphrase stays; the old recovery code stops working. Close other fieldapp
    windows first. Takes about as long as reading the database once, twice over.
    """
    from fieldapp.store.rekey import rekey_home  # noqa: PLC0415

    home = state.resolve_home()
    passphrase = read_secret("Passphrase", passphrase_file)
    click.echo("Re-encrypting the database under a new master key...", err=True)
    done = rekey_home(home, passphrase, kdf=state.kdf)
    click.echo(
        f"Rekeyed in {done.seconds:.1f} s: the database, device key and keyslots are under "
        "a new master key. The old recovery code no longer works."
    )
    click.echo("New recovery code (write it on paper now; it is shown only this once):")
    click.echo(f"  {done.recovery_code}")


@keys_group.command("rotate-device")
@PASSPHRASE_FILE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def keys_rotate_device(state: CliState, passphrase_file: str | None, as_json: bool) -> None:
    """Replace the device signing key; the next bundle proves the change to HQ.

    Works before enrolment too: HQ then binds whatever key the first bundle proves.
    """
    from fieldapp.store.rotation import rotate_device  # noqa: PLC0415

    unlocked = unlock_home(state.resolve_home(), read_secret("Passphrase", passphrase_file))
    if unlocked.note:  # an interrupted rekey was settled on the way
        click.echo(unlocked.note, err=True)
    with FieldStore.open(unlocked, clock=state.clock) as store:
        done = rotate_device(store)
    old, new = fingerprint(done.old), fingerprint(done.new)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": done.version,
                    "old_device_fingerprint": str(old),
                    "device_fingerprint": str(new),
                    "device_key": done.new.raw.hex(),
                }
            )
        )
        return
    click.echo(f"Device key rotated (version {done.version}).")
    click.echo(f"Old device fingerprint: {old}")
    click.echo(f"New device fingerprint: {new}")
    click.echo(
        "Tell HQ the new fingerprint by another channel; the next bundle carries the "
        "rotation, and HQ accepts the new key only through it.",
        err=True,
    )


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
