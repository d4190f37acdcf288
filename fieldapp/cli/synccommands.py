"""enroll, sync push | export | import-receipts | status: a monitor's side of moving data."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from crypto.fingerprint import hq_fingerprint
from crypto.keys import RootVerifyKey
from fieldapp.cli.homecommands import PASSPHRASE_FILE
from fieldapp.cli.session import open_store
from fieldapp.cli.state import CliState, pass_state
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.syncbook import EnrolmentState
from fieldapp.store.uploadtoken import token_state
from fieldapp.transfer import Progress
from sync.enrol import enrol, read_enrolment_file
from sync.push import DEFAULT_BUDGET_SECONDS, PushReport, push
from sync.relayclient import check_proxy_url, describe
from sync.usb import export_bundles, import_receipts

RELAY_OPTION = click.option(
    "--relay", metavar="URL", help="The relay's address, instead of the one HQ's file gave."
)
PROXY_OPTION = click.option(
    "--proxy",
    metavar="socks5h://HOST:PORT",
    help="Send everything through this SOCKS5 proxy (Tor: socks5h://127.0.0.1:9050); "
    "host names are resolved by the proxy.",
)
BUDGET_OPTION = click.option(
    "--budget",
    type=click.FloatRange(min=0),
    default=DEFAULT_BUDGET_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Keep retrying a failing connection this long without progress, then give up.",
)

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


class TerminalProgress:
    """A click progress bar on stderr for the relay transfer (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._total = 0
        self._shown = 0

    def __call__(self, progress: Progress) -> None:
        if progress.transfer != "relay" or progress.total <= 0:
            return
        if self._bar is None or progress.total != self._total:
            self.close()
            self._bar = click.progressbar(
                length=progress.total, label="To the relay", file=sys.stderr, show_pos=False
            )
            self._bar.__enter__()
            self._total, self._shown = progress.total, 0
        self._bar.update(progress.done - self._shown)
        self._shown = progress.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def push_summary(report: PushReport) -> str:
    extra = []
    if report.resumed:
        extra.append(f"{report.resumed} resumed")
    if report.retries:
        extra.append(f"{report.retries} retries")
    resent = max(0, report.bytes_sent - report.bytes)
    if resent:
        extra.append(f"{resent} bytes sent again")
    details = f" ({', '.join(extra)})" if extra else ""
    sealed = f"Sealed {report.sealed} new bundle(s). " if report.sealed else ""
    return (
        f"{sealed}Sent {report.uploaded} bundle(s), {report.bytes} bytes, to the relay at "
        f"{report.relay}{details}; {report.receipts} receipt(s) read, {report.confirmed} "
        f"bundle(s) newly confirmed by HQ; HQ keys at version {report.trust_version}"
        + (f" ({report.statements} new statement(s))." if report.statements else ".")
        + (" Picked up HQ's new relay upload token." if report.token_renewed else "")
    )


AGAIN_HELP = (
    "Also send again what HQ has not confirmed; bundles sealed to an HQ key since "
    "replaced are sealed again to the current one first."
)


@sync_group.command("push")
@RELAY_OPTION
@PROXY_OPTION
@BUDGET_OPTION
@click.option("--again", is_flag=True, help=AGAIN_HELP)
@PASSPHRASE_FILE
@pass_state
def sync_push(
    state: CliState,
    relay: str | None,
    proxy: str | None,
    budget: float,
    again: bool,
    passphrase_file: str | None,
) -> None:
    """Seal what is ready, send it to the relay, and bring HQ's receipts and keys back."""
    bar = TerminalProgress() if sys.stderr.isatty() else None
    with open_store(state, passphrase_file) as store:
        try:
            report = push(
                store,
                relay=relay,
                proxy=proxy,
                progress=bar or (lambda _p: None),
                clock=state.clock,
                budget_seconds=budget,
                again=again,
            )
        finally:
            if bar is not None:
                bar.close()
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(push_summary(report))


@sync_group.command("export")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--again", is_flag=True, help=AGAIN_HELP)
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
    """Apply HQ's key statements, then its signed receipts, from FOLDER.

    A newer HQ box key on the stick is used for every bundle sealed from then on;
    confirmed testimonies are marked so.
    """
    with open_store(state, passphrase_file) as store:
        report = import_receipts(store, folder, now=state.clock())
    keys = f" ({report.statements} new statement(s))" if report.statements else ""
    click.echo(
        f"Read {report.receipts} receipt(s) from {report.files} file(s); "
        f"{report.confirmed} bundle(s) newly confirmed by HQ; HQ keys at version "
        f"{report.trust_version}{keys}."
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
        relay = book.relay_state()
        token = token_state(store)
        status: dict[str, Any] = {
            "enrolled": enrolment is not None,
            "device_name": None if enrolment is None else enrolment.device_name,
            # The HQ key statement version this device trusts, and the box key it seals to.
            "hq_key_version": None if enrolment is None else enrolment.trust.version,
            "hq_box_key_id": None
            if enrolment is None or enrolment.trust.box is None
            else enrolment.trust.box.key_id.hex(),
            "hq_keys_expire_at": None
            if enrolment is None or enrolment.trust.expires_at is None
            else datetime.fromtimestamp(enrolment.trust.expires_at, UTC).isoformat(),
            "queued": len(book.ready()),
            "bundles": len(bundles),
            "waiting_to_leave": sum(
                b.exported_at is None and b.uploaded_at is None and b.confirmed_at is None
                for b in bundles
            ),
            "uploaded": sum(b.uploaded_at is not None for b in bundles),
            "unconfirmed": sum(b.confirmed_at is None for b in bundles),
            "confirmed": sum(b.confirmed_at is not None for b in bundles),
            "relay": None
            if enrolment is None or enrolment.relay is None
            else describe(enrolment.relay),
            "relay_pinned": enrolment is not None and enrolment.relay_pin is not None,
            "last_push_at": relay.last_push_at,
            "last_error": relay.last_error,
            "last_error_at": relay.last_error_at,
            "upload_token_notice": token.serial or None,
            "upload_token_left_out": token.no_entry_serial,
        }
    if as_json:
        click.echo(json.dumps(status))
        return
    for key, value in status.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        click.echo(f"{key.replace('_', ' ')}: {shown}")


@sync_group.command("settings")
@click.option(
    "--remove-confirmed",
    type=click.Choice(["on", "off"]),
    help="on: once HQ confirms a testimony, remove its content from this device "
    "(a stub with its id and status stays).",
)
@click.option(
    "--proxy",
    metavar="socks5h://HOST:PORT|none",
    help="Send every push, from the CLI and the UI, through this SOCKS5 proxy (Tor); "
    "none: connect directly.",
)
@PASSPHRASE_FILE
@pass_state
def sync_settings(
    state: CliState, remove_confirmed: str | None, proxy: str | None, passphrase_file: str | None
) -> None:
    """Show or change how this device sends, and treats testimony HQ has confirmed."""
    if proxy is not None and proxy != "none":
        proxy = check_proxy_url(proxy)
    with open_store(state, passphrase_file) as store:
        if remove_confirmed is not None:
            store.set_remove_confirmed(remove_confirmed == "on")
        if proxy is not None:
            store.set_relay_proxy(None if proxy == "none" else proxy)
        enabled = store.remove_confirmed
        current = store.relay_proxy
    click.echo(f"remove confirmed: {'on' if enabled else 'off'}")
    click.echo(f"proxy: {current or 'none (direct)'}")
