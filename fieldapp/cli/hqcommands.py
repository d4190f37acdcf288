"""fieldapp hq ...: HQ's home, keys, devices, import, reading, export and custody."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from crypto.enrolment import write_enrolment
from crypto.fingerprint import fingerprint, hq_fingerprint
from fieldapp.cli.homecommands import PASSPHRASE_FILE
from fieldapp.cli.inputfiles import read_text_input
from fieldapp.cli.output import emit_json, emit_record, record_json
from fieldapp.cli.secrets import STDIN, SecretInputError, check_new_passphrase, read_secret
from fieldapp.cli.state import CliState, pass_state
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive, HqSummary
from fieldapp.hq.custody import CustodyReport, custody_report
from fieldapp.hq.export import Audience, ExportFormat, ExportRefused, export_archive
from fieldapp.hq.vault import create_hq_home, unlock_hq, unlock_protection
from fieldapp.store.errors import RecordNotFound
from fieldapp.store.records import StoredTestimony
from sync.files import UnsafeFolder, checked_folder, write_new
from sync.hqimport import Outcome, import_path
from sync.pull import pull
from sync.push import DEFAULT_BUDGET_SECONDS
from sync.relayclient import check_pin, check_relay_url, check_token, describe
from sync.tokenrotation import DEFAULT_GRACE_DAYS, MAX_GRACE_DAYS, rotate_upload_token
from sync.usb import export_receipts, export_statements

MAX_TOKEN_FILE_BYTES = 1024

PROTECTION_FILE = click.option(
    "--protection-passphrase-file",
    metavar="PATH",
    help="Read the protection passphrase (witness identities) from PATH (- for stdin).",
)


class Quarantined(FieldappError):
    exit_code = ExitCode.DATA


class CustodyFailed(FieldappError):
    exit_code = ExitCode.DATA


class HqRecordNotFound(FieldappError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "No imported testimony has that id (or the prefix matches none). List them with "
            "`fieldapp hq list`."
        )


@contextlib.contextmanager
def _hq_ids() -> Iterator[None]:
    """The store's "not found" names the monitor's command; HQ's names its own."""
    try:
        yield
    except RecordNotFound as e:
        raise HqRecordNotFound from e


def _must_exist(path: Path, what: str) -> None:
    """Refuse a path that is not there before asking for any passphrase."""
    try:
        path.lstat()
    except FileNotFoundError as e:
        raise UnsafeFolder(f"There is no {what} at that path; check it.") from e
    except OSError as e:
        raise UnsafeFolder(f"The {what} cannot be read; check the path and permissions.") from e


@contextlib.contextmanager
def open_archive(state: CliState, passphrase_file: str | None) -> Iterator[HqArchive]:
    unlocked = unlock_hq(state.resolve_home(), read_secret("HQ passphrase", passphrase_file))
    archive = HqArchive.open(unlocked, clock=state.clock)
    try:
        yield archive
    finally:
        archive.close()


def _two_sources(*specs: str | None) -> None:
    if sum(spec == STDIN for spec in specs) > 1:
        raise SecretInputError("Only one of the passphrases can come from standard input.")


@click.group("hq")
def hq_group() -> None:
    """HQ: keys, enrolment of devices, import and export of testimony."""


@hq_group.command("init")
@PASSPHRASE_FILE
@PROTECTION_FILE
@pass_state
def hq_init(
    state: CliState, passphrase_file: str | None, protection_passphrase_file: str | None
) -> None:
    """Create an HQ home: root, box and protection keys. Prints the HQ fingerprint."""
    _two_sources(passphrase_file, protection_passphrase_file)
    home = state.resolve_home()
    passphrase = check_new_passphrase(
        read_secret("New HQ passphrase", passphrase_file, confirm=True)
    )
    protection = check_new_passphrase(
        read_secret(
            "New protection passphrase (opens witness identities)",
            protection_passphrase_file,
            confirm=True,
        )
    )
    if protection == passphrase:
        raise SecretInputError(
            "The protection passphrase must differ from the HQ passphrase: it guards "
            "witness identities from anyone who only holds the HQ passphrase."
        )
    created = create_hq_home(home, passphrase, protection, kdf=state.kdf, clock=state.clock)
    with HqArchive.open(created.unlocked, clock=state.clock) as archive:
        root = archive.root_public()
    click.echo(f"Created an HQ home in {home.root}")
    click.echo("Recovery codes (write them on paper now; they are shown only this once):")
    click.echo(f"  HQ passphrase:         {created.recovery_code}")
    click.echo(f"  protection passphrase: {created.protection_recovery_code}")
    click.echo(f"HQ fingerprint: {hq_fingerprint(root)}")


@hq_group.command("keys")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def hq_keys(state: CliState, as_json: bool, passphrase_file: str | None) -> None:
    """Show HQ's keys, their ids and fingerprints."""
    with open_archive(state, passphrase_file) as archive:
        root = archive.root_public()
        trust = archive.trust()
        boxes = archive.box_key_infos()
        protection = archive.protection_public()
    info: dict[str, Any] = {
        "hq_fingerprint": str(hq_fingerprint(root)),
        "root_key_id": root.key_id.hex(),
        "statement_version": trust.version,
        "keys_expire_at": datetime.fromtimestamp(trust.expires_at or 0, UTC).isoformat(),
        "box_keys": [box.as_json() for box in boxes],
        "protection_key_id": protection.key_id.hex(),
        "protection_fingerprint": str(fingerprint(protection)),
    }
    if as_json:
        emit_json(info)
        return
    click.echo(f"HQ fingerprint:     {info['hq_fingerprint']}")
    click.echo(f"Root key id:        {info['root_key_id']}")
    click.echo(
        f"Statement version:  {info['statement_version']} (expires {info['keys_expire_at']})"
    )
    for box in boxes:
        click.echo(f"Box key:            {box.key_id.hex()}  {box.describe()}")
    click.echo(f"Protection key id:  {info['protection_key_id']}")


@hq_group.command("enroll")
@click.argument("name")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--relay", metavar="URL", help="The relay address monitors will push to.")
@PASSPHRASE_FILE
@pass_state
def hq_enroll(
    state: CliState, name: str, out: Path, relay: str | None, passphrase_file: str | None
) -> None:
    """Enrol a monitor's device: write its signed enrolment file to --out.

    The file holds a one-time secret: carry it to the monitor by hand or an
    encrypted channel, and read them the HQ fingerprint by another channel.
    """
    folder = checked_folder(out.parent if str(out.parent) else Path())
    if out.exists() or out.is_symlink():
        raise SecretInputError("The --out file already exists; choose a new name.")
    if relay is not None:
        relay = check_relay_url(relay)
    with open_archive(state, passphrase_file) as archive:
        root_key = archive.root_key()
        config = archive.relay_config()
        try:
            enrolment = archive.new_enrolment(
                name,
                relay=relay or (None if config is None else config.url),
                relay_pin=None if config is None else config.pin,
                upload_token=None if config is None else config.upload_token,
            )
            data = write_enrolment(root_key, enrolment)
        except ValueError as e:
            raise SecretInputError(
                "The device name must be 1 to 64 printable characters and the relay an "
                "http:// or https:// URL."
            ) from e
        # The file first: if recording fails after it, the file is useless but harmless.
        try:
            write_new(folder, out.name, [data])
        except OSError as e:
            raise UnsafeFolder(
                "The enrolment file could not be written (disk full, removed or taken "
                "meanwhile); nothing was recorded. Try again."
            ) from e
        archive.record_enrolment(enrolment)
        root = root_key.public_key
    click.echo(f"Wrote the enrolment file for {name!r} to {out}.")
    if enrolment.relay is None:
        click.echo("It names no relay: the device sends by USB stick (see hq relay-config).")
    else:
        pinned = ", TLS pinned" if enrolment.relay_pin else ""
        token = "with" if enrolment.upload_token else "without"
        click.echo(
            f"Relay: {describe(enrolment.relay)}{pinned}, {token} the deployment upload token."
        )
    click.echo(f"HQ fingerprint: {hq_fingerprint(root)}")
    click.echo("Read the fingerprint to the monitor by another channel when they import it.")


@hq_group.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def hq_devices(state: CliState, as_json: bool, passphrase_file: str | None) -> None:
    """List enrolled devices and whether each is bound, revoked."""
    with open_archive(state, passphrase_file) as archive:
        devices = archive.devices()
    rows = [
        {
            "name": d.name,
            "enrolled_at": d.enrolled_at,
            "bound_at": d.bound_at,
            "revoked_at": d.revoked_at,
            "device_fingerprint": str(fingerprint(d.keys[-1])) if d.keys else None,
            "key_version": d.key_version,  # 0 at enrolment, +1 per rotation of the key
        }
        for d in devices
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No devices enrolled.", err=True)
    for r in rows:
        state_text = (
            "revoked"
            if r["revoked_at"]
            else "active"
            if r["bound_at"]
            else "waiting for first bundle"
        )
        click.echo(f"{r['name']}  {state_text}  enrolled {r['enrolled_at']}")
        if r["device_fingerprint"]:
            click.echo(
                f"    device fingerprint {r['device_fingerprint']}  key version {r['key_version']}"
            )


@hq_group.command("revoke")
@click.argument("name")
@PASSPHRASE_FILE
@pass_state
def hq_revoke(state: CliState, name: str, passphrase_file: str | None) -> None:
    """Refuse every future bundle from the device enrolled as NAME."""
    with open_archive(state, passphrase_file) as archive:
        archive.revoke(name)
    click.echo(f"Revoked {name!r}: HQ refuses its bundles from now on, whatever key it uses.")


def _read_token(spec: str, what: str) -> str:
    text = read_text_input(spec, MAX_TOKEN_FILE_BYTES, what, SecretInputError)
    return check_token(text.strip(), what)


@hq_group.command("relay-config")
@click.option("--relay", metavar="URL", help="The relay's address monitors and HQ use.")
@click.option(
    "--hq-token-file", metavar="PATH", help="Read HQ's relay token from PATH (- for stdin)."
)
@click.option(
    "--upload-token-file",
    metavar="PATH",
    help="Read the deployment's upload token from PATH (- for stdin).",
)
@click.option(
    "--pin",
    metavar="HEX",
    help="SHA-256 of the relay certificate's public key (relay init --tls prints it).",
)
@PASSPHRASE_FILE
@pass_state
def hq_relay_config(
    state: CliState,
    relay: str | None,
    hq_token_file: str | None,
    upload_token_file: str | None,
    pin: str | None,
    passphrase_file: str | None,
) -> None:
    """Keep the relay's address, tokens and pin in HQ's archive; without options, show them.

    Enrolment files written afterwards carry the address, the pin and the upload
    token; hq pull uses the address, the pin and HQ's token. Tokens are read
    from files (or standard input), never from the command line.
    """
    given = (relay, hq_token_file, upload_token_file)
    if any(v is not None for v in given) or pin is not None:
        if any(v is None for v in given):
            raise SecretInputError(
                "Give --relay, --hq-token-file and --upload-token-file together (and --pin "
                "for a relay with its own TLS certificate)."
            )
        _two_sources(passphrase_file, hq_token_file, upload_token_file)
        url = check_relay_url(str(relay))
        checked_pin = None if pin is None else check_pin(pin)
        if checked_pin is not None and not url.startswith("https://"):
            raise SecretInputError("A pin needs an https:// relay address.")
        hq_token = _read_token(str(hq_token_file), "HQ token")
        upload_token = _read_token(str(upload_token_file), "upload token")
        if hq_token == upload_token:
            raise SecretInputError("The HQ token and the upload token must differ.")
        with open_archive(state, passphrase_file) as archive:
            config = archive.set_relay_config(
                url, hq_token=hq_token, upload_token=upload_token, pin=checked_pin
            )
        click.echo("Kept the relay settings in HQ's archive.")
    else:
        with open_archive(state, passphrase_file) as archive:
            found = archive.relay_config()
        if found is None:
            click.echo("No relay configured: devices send by USB stick.")
            return
        config = found
    click.echo(f"Relay: {config.url}")
    click.echo(f"TLS pin: {config.pin or 'none (the usual certificate authorities)'}")
    click.echo("Tokens: HQ token and upload token kept (not shown).")


@hq_group.command("rotate-upload-token")
@click.option(
    "--grace-days",
    type=click.FloatRange(min=0, max=MAX_GRACE_DAYS),
    default=DEFAULT_GRACE_DAYS,
    show_default=True,
    metavar="DAYS",
    help="How long the relay still takes the old token (devices pick the new one up meanwhile).",
)
@click.option(
    "--proxy",
    metavar="socks5h://HOST:PORT",
    help="Send through this SOCKS5 proxy (Tor: socks5h://127.0.0.1:9050).",
)
@click.option(
    "--resend-last",
    is_flag=True,
    help="Send the last rotation again (a relay restored from an older backup).",
)
@PASSPHRASE_FILE
@pass_state
def hq_rotate_upload_token(
    state: CliState,
    grace_days: float,
    proxy: str | None,
    resend_last: bool,
    passphrase_file: str | None,
) -> None:
    """Give the relay a new upload token, sealed to each enrolled, non-revoked device.

    Devices pick it up on their next sync push; the old token stops working after
    the grace period. Run it again after a failure: it sends the same rotation.
    """
    with open_archive(state, passphrase_file) as archive:
        report = rotate_upload_token(
            archive,
            grace_days=grace_days,
            proxy=proxy,
            clock=state.clock,
            resend_last=resend_last,
        )
    until = datetime.fromtimestamp(report.previous_valid_until, UTC).isoformat(timespec="minutes")
    again = " (sent again)" if report.resent else ""
    click.echo(
        f"Upload token rotated{again}: notice {report.serial} for {report.devices} device(s) "
        f"on the relay at {report.relay}; the old token works until {until}."
    )
    if report.waiting:
        click.echo(
            f"{report.waiting} enrolled device(s) have not sent a first bundle, so they got no "
            "copy: they lose the relay when the grace ends (re-enrol them, or rotate again "
            "after their first bundle arrives).",
            err=True,
        )


@hq_group.command("pull")
@click.option("--relay", metavar="URL", help="The relay's address, instead of the configured one.")
@click.option(
    "--proxy",
    metavar="socks5h://HOST:PORT",
    help="Send everything through this SOCKS5 proxy (Tor: socks5h://127.0.0.1:9050).",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0),
    default=DEFAULT_BUDGET_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Keep retrying a failing connection this long without progress, then give up.",
)
@PASSPHRASE_FILE
@pass_state
def hq_pull(
    state: CliState,
    relay: str | None,
    proxy: str | None,
    budget: float,
    passphrase_file: str | None,
) -> None:
    """Download new bundles from the relay and import them (as hq import); publish receipts."""
    with open_archive(state, passphrase_file) as archive:
        report = pull(
            archive,
            relay=relay,
            proxy=proxy,
            on_outcome=_report_outcome,
            budget_seconds=budget,
        )
    click.echo(
        f"{report.imported} imported, {report.already} already here, {report.quarantined} "
        f"quarantined, from {report.listed} bundle(s) on the relay at {report.relay}; "
        f"{report.deleted} removed from it; {report.receipts_published} receipt(s) and "
        f"{report.statements_published} HQ key statement(s) published."
    )
    if report.quarantined:
        raise Quarantined(
            f"{report.quarantined} bundle(s) failed a check and went to quarantine (and were "
            "removed from the relay); nothing from them was imported."
        )


def _report_outcome(outcome: Outcome) -> None:
    """One line per bundle, as hq import prints them."""
    if outcome.refusal is not None:
        click.echo(
            f"quarantined {_shown(outcome.source)}: {outcome.refusal.reason.value}: "
            f"{outcome.refusal.message}",
            err=True,
        )
    elif outcome.result is not None and outcome.result.already_imported:
        click.echo(f"already imported {_shown(outcome.source)}")
    elif outcome.result is not None:
        click.echo(
            f"imported {_shown(outcome.source)}: testimony {outcome.result.testimony_id}, "
            f"{outcome.result.new_revisions} new revision(s), "
            f"device {outcome.result.device_name!r}"
        )


@hq_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@PASSPHRASE_FILE
@pass_state
def hq_import(state: CliState, path: Path, passphrase_file: str | None) -> None:
    """Open, verify and import bundles from PATH (a file or a folder of them)."""
    _must_exist(path, "bundle file or folder")
    imported = already = 0
    quarantined = []
    with open_archive(state, passphrase_file) as archive:
        for outcome in _outcomes(archive, path):
            _report_outcome(outcome)
            if outcome.refusal is not None:
                quarantined.append(outcome)
            elif outcome.result is not None and outcome.result.already_imported:
                already += 1
            elif outcome.result is not None:
                imported += 1
    click.echo(f"{imported} imported, {already} already here, {len(quarantined)} quarantined.")
    if quarantined:
        raise Quarantined(
            f"{len(quarantined)} bundle(s) failed a check and went to quarantine; "
            "nothing from them was imported."
        )


def _shown(name: str) -> str:
    """A file name from the stick, safe to print: control and bidi characters escaped.

    Anyone who held the stick chose its names; a newline or a terminal escape in
    one must not forge report lines or drive the operator's terminal.
    """
    return name if name.isprintable() else repr(name)


def _outcomes(archive: HqArchive, path: Path) -> Iterator[Outcome]:
    """import_path, with a folder that cannot be read (or is pulled out) as one clear error."""
    done = 0
    try:
        for outcome in import_path(archive, path):
            done += 1
            yield outcome
    except OSError as e:
        raise UnsafeFolder(
            f"Reading the bundles failed after {done} file(s) (was the stick removed?); "
            "what was imported so far stays. Run the import again."
        ) from e


def _summary_json(s: HqSummary) -> dict[str, object]:
    return {
        "id": s.id,
        "seq": s.seq,
        "device": s.device_name,
        "status": s.status,
        "taken_at": s.taken_at,
        "incident": s.incident,
        "place": s.place,
        "violations": list(s.violations),
        "witness_code": s.witness_code,
        "updated_at": s.updated_at,
    }


def _emit_summaries(rows: list[HqSummary], as_json: bool) -> None:
    if as_json:
        emit_json([_summary_json(s) for s in rows])
        return
    if not rows:
        click.echo("No testimonies.", err=True)
    for s in rows:
        click.echo(
            f"{s.id}  {s.taken_at[:10]}  {s.device_name}  {s.witness_code or '-'}  "
            f"{','.join(s.violations) or '-'}  {s.place}"
        )


@hq_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def hq_list(state: CliState, as_json: bool, passphrase_file: str | None) -> None:
    """List imported testimonies, most recently updated first."""
    with open_archive(state, passphrase_file) as archive:
        rows = archive.summaries()
    _emit_summaries(rows, as_json)


@hq_group.command("search")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def hq_search(state: CliState, query: str, as_json: bool, passphrase_file: str | None) -> None:
    """Search imported testimonies (Arabic and Latin script)."""
    with open_archive(state, passphrase_file) as archive:
        rows = archive.search(query)
    _emit_summaries(rows, as_json)


@hq_group.command("show")
@click.argument("record_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--history", is_flag=True, help="Every revision, with its device and bundle.")
@PASSPHRASE_FILE
@pass_state
def hq_show(
    state: CliState, record_id: str, as_json: bool, history: bool, passphrase_file: str | None
) -> None:
    """Show one imported testimony (by id or a unique prefix of at least 4 characters)."""
    with open_archive(state, passphrase_file) as archive, _hq_ids():
        summary = archive.summary(record_id)
        rid, testimony = archive.testimony(summary.id)
        revisions = archive.history(rid)
    stored = StoredTestimony(
        rid, summary.seq, testimony, revisions[0].imported_at, summary.updated_at, None
    )
    provenance = [
        {
            "seq": r.seq,
            "device": r.device_name,
            "device_fingerprint": str(fingerprint(r.device_key)),
            "bundle_id": r.bundle_id.hex(),
            "created_at": r.created_at,
            "imported_at": r.imported_at,
            "hash": r.hash.hex(),
        }
        for r in revisions
    ]
    if as_json:
        value = record_json(stored, with_identity=False)
        value["device"] = summary.device_name
        if history:
            value["history"] = provenance
        emit_json(value)
        return
    click.echo(f"Device:     {summary.device_name}")
    emit_record(stored, with_identity=False)
    if history:
        click.echo("")
        for p in provenance:
            click.echo(
                f"revision {p['seq']}  device {p['device']}  bundle {p['bundle_id']}  "
                f"made {p['created_at']}  imported {p['imported_at']}"
            )


@hq_group.command("export")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), required=True)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--for",
    "audience",
    type=click.Choice([a.value for a in Audience]),
    default=Audience.INTERNAL.value,
    show_default=True,
    help="Who the export is for; only testimonies whose consent allows it are included.",
)
@click.option(
    "--include-identities",
    is_flag=True,
    help="Include witness identities (asks for the protection passphrase).",
)
@PASSPHRASE_FILE
@PROTECTION_FILE
@pass_state
def hq_export(
    state: CliState,
    fmt: str,
    out: Path,
    audience: str,
    include_identities: bool,
    passphrase_file: str | None,
    protection_passphrase_file: str | None,
) -> None:
    """Export testimonies, decrypted attachments and a SHA-256 manifest into a new folder."""
    _two_sources(passphrase_file, protection_passphrase_file)
    if include_identities and Audience(audience) is Audience.PUBLICATION:
        # Before any passphrase is asked for: the answer would be no anyway.
        raise ExportRefused(
            "Witness identities are never exported for publication; drop --include-identities."
        )
    _must_exist(out.parent, "folder to hold --out")
    home = state.resolve_home()
    with open_archive(state, passphrase_file) as archive:
        key = None
        if include_identities:
            key = unlock_protection(
                home, read_secret("Protection passphrase", protection_passphrase_file)
            )
        report = export_archive(
            archive, out, fmt=ExportFormat(fmt), audience=Audience(audience), identity_key=key
        )
    click.echo(
        f"Exported {report.testimonies} testimonies ({report.skipped_for_consent} left out by "
        f"consent), {report.attachments} attachments, {report.identities} identities to {out}."
    )
    if report.missing_attachments:
        click.echo(f"{report.missing_attachments} attachment(s) have not reached HQ yet.", err=True)


def _print_custody(report: CustodyReport) -> None:
    click.echo(f"testimony {report.testimony_id}: {'ok' if report.ok else 'FAILED'}")
    for r in report.revisions:
        receipt = (
            "no receipt"
            if r.receipt_signed_at is None
            else "receipt " + datetime.fromtimestamp(r.receipt_signed_at, UTC).isoformat()
        )
        verdict = "ok" if r.ok else f"FAILED: {r.problem}"
        click.echo(
            f"  revision {r.seq}: {verdict}; device {r.device_name} key {r.device_key[:16]}; "
            f"bundle {r.bundle_id[:16]} imported {r.imported_at}; {receipt}"
        )
    for a in report.attachments:
        click.echo(f"  attachment {a.attachment_id} {a.filename!r}: {a.status}")


@hq_group.command("verify")
@click.argument("record_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@PASSPHRASE_FILE
@pass_state
def hq_verify(
    state: CliState, record_id: str | None, as_json: bool, passphrase_file: str | None
) -> None:
    """Custody report: signatures, hash chains and attachment hashes, per testimony."""
    with open_archive(state, passphrase_file) as archive, _hq_ids():
        ids = [record_id] if record_id else archive.all_ids()
        reports = [custody_report(archive, rid) for rid in ids]
    if as_json:
        emit_json(
            [
                {
                    "id": r.testimony_id,
                    "ok": r.ok,
                    "revisions": [
                        {
                            "seq": c.seq,
                            "ok": c.ok,
                            "problem": c.problem,
                            "device": c.device_name,
                            "device_key": c.device_key,
                            "bundle_id": c.bundle_id,
                            "imported_at": c.imported_at,
                            "receipt_signed_at": c.receipt_signed_at,
                        }
                        for c in r.revisions
                    ],
                    "attachments": [
                        {"id": a.attachment_id, "filename": a.filename, "status": a.status}
                        for a in r.attachments
                    ],
                }
                for r in reports
            ]
        )
    else:
        for report in reports:
            _print_custody(report)
    failed = [r for r in reports if not r.ok]
    if failed:
        raise CustodyFailed(f"{len(failed)} testimonies failed verification; see the report.")


@hq_group.command("export-receipts")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--all", "everything", is_flag=True, help="Also receipts exported before.")
@click.option(
    "--device",
    metavar="NAME",
    help="Only this device's receipts: the stick then says nothing about other monitors.",
)
@PASSPHRASE_FILE
@pass_state
def hq_export_receipts(
    state: CliState,
    folder: Path,
    everything: bool,
    device: str | None,
    passphrase_file: str | None,
) -> None:
    """Write signed receipts for imported bundles to FOLDER, for the monitors.

    HQ's key statements go beside them, so a monitor that never reaches the
    relay learns a new box key or root from the stick (sync import-receipts).
    """
    with open_archive(state, passphrase_file) as archive:
        count = export_receipts(archive, folder, include_exported=everything, device=device)
        version = export_statements(archive, folder)
    click.echo(f"Wrote {count} receipt(s) and HQ's key statements (version {version}) to {folder}.")
