"""enroll, sync export | import-receipts | status: a monitor's side of moving data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crypto.fingerprint import hq_fingerprint
from crypto.keys import RootVerifyKey
from fieldapp.cli.homecommands import PASSPHRASE_FILE
from fieldapp.cli.session import open_store
from fieldapp.cli.state import CliState, pass_state
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.syncbook import EnrolmentState
from sync.enrol import enrol, read_enrolment_file
from sync.usb import export_bundles, import_receipts

HQ_FINGERPRINT = click.option(
    "--hq-fingerprint",
    metavar="DIGITS",
    help="The HQ fingerprint HQ read out to you; enrolment stops if the file's differs.",
)


class FingerprintMismatch(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "The enrolment file's HQ fingerprint is not the one you were given: it may be "
            "forged. Nothing was imported; contact HQ by another channel."
        )


def check_fingerprint(root: RootVerifyKey, expected: str | None) -> str:
    """The HQ fingerprint to show; refuses if ``expected`` is given and differs."""
    found = hq_fingerprint(root)
    if expected is not None and not found.matches(expected):
        raise FingerprintMismatch
    return str(found)


def report_enrolment(enrolled: EnrolmentState, fingerprint_text: str) -> None:
    click.echo(f"Enrolled with HQ as {enrolled.device_name!r}.")
    click.echo(f"HQ fingerprint: {fingerprint_text}")
    click.echo("Compare it, digit by digit, with the one HQ gives you by phone or in person.")


@click.command("enroll")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@HQ_FINGERPRINT
@PASSPHRASE_FILE
@pass_state
def enroll_command(
    state: CliState, file: Path, hq_fingerprint: str | None, passphrase_file: str | None
) -> None:
    """Import HQ's enrolment file into this home (once per device)."""
    enrolment, trust = read_enrolment_file(file, state.clock())
    shown = check_fingerprint(trust.root, hq_fingerprint)
    with open_store(state, passphrase_file) as store:
        enrolled = enrol(store, enrolment, trust)
    report_enrolment(enrolled, shown)


@click.group("sync")
def sync_group() -> None:
    """Move sealed bundles to HQ and bring HQ's receipts back."""


@sync_group.command("export")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--again", is_flag=True, help="Also copy bundles exported before but not confirmed.")
@PASSPHRASE_FILE
@pass_state
def sync_export(state: CliState, folder: Path, again: bool, passphrase_file: str | None) -> None:
    """Seal what is ready and write the bundles to FOLDER (a USB stick)."""
    with open_store(state, passphrase_file) as store:
        result = export_bundles(store, folder, now=state.clock(), again=again)
    click.echo(f"Exported {result.bundles} bundle(s), {result.bytes} bytes, to {folder}.")


@sync_group.command("import-receipts")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@PASSPHRASE_FILE
@pass_state
def sync_import_receipts(state: CliState, folder: Path, passphrase_file: str | None) -> None:
    """Apply HQ's signed receipts from FOLDER: confirmed testimonies are marked so."""
    with open_store(state, passphrase_file) as store:
        report = import_receipts(store, folder)
    click.echo(
        f"Read {report.receipts} receipt(s) from {report.files} file(s); "
        f"{report.confirmed} bundle(s) newly confirmed by HQ."
    )


@sync_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def sync_status(state: CliState, as_json: bool, passphrase_file: str | None) -> None:
    """What is queued, sealed, exported and confirmed."""
    with open_store(state, passphrase_file) as store:
        book = store.sync_book
        enrolment = book.enrolment()
        bundles = book.bundles()
        status = {
            "enrolled": enrolment is not None,
            "device_name": None if enrolment is None else enrolment.device_name,
            "queued": len(book.ready()),
            "bundles": len(bundles),
            "waiting_to_leave": sum(
                b.exported_at is None and b.uploaded_at is None and b.confirmed_at is None
                for b in bundles
            ),
            "unconfirmed": sum(b.confirmed_at is None for b in bundles),
            "confirmed": sum(b.confirmed_at is not None for b in bundles),
        }
    if as_json:
        click.echo(json.dumps(status))
        return
    for key, value in status.items():
        click.echo(f"{key.replace('_', ' ')}: {value}")


@sync_group.command("settings")
@click.option(
    "--remove-confirmed",
    type=click.Choice(["on", "off"]),
    help="on: once HQ confirms a testimony, remove its content from this device "
    "(a stub with its id and status stays).",
)
@PASSPHRASE_FILE
@pass_state
def sync_settings(
    state: CliState, remove_confirmed: str | None, passphrase_file: str | None
) -> None:
    """Show or change how this device treats testimony HQ has confirmed."""
    with open_store(state, passphrase_file) as store:
        if remove_confirmed is not None:
            store.set_remove_confirmed(remove_confirmed == "on")
        enabled = store.remove_confirmed
    click.echo(f"remove confirmed: {'on' if enabled else 'off'}")
