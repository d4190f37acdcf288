"""fieldapp hq rotate-key | retire-key | rotate-root: HQ's box keys and its root key.

New box keys, old ones destroyed after their grace period, and a new root key
that enrolled devices follow through the statement chain.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from crypto.fingerprint import hq_fingerprint
from fieldapp.cli.homecommands import PASSPHRASE_FILE
from fieldapp.cli.hqcommands import hq_group, open_archive
from fieldapp.cli.state import CliState, pass_state
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.boxkeys import key_id_prefix
from fieldapp.hq.rootkey import rotate_root
from fieldapp.hq.vault import HQ_KEYS_VALIDITY
from sync.publish import PUBLISH_BUDGET_SECONDS, publish_statements
from sync.relayclient import RelayError, RelaySettingError, check_proxy_url
from sync.tokenrotation import reissue_after_root_rotation, rotate_upload_token

MAX_VALIDITY_DAYS = 3650


class NotPublished(FieldappError):
    """The key changed, but the relay could not be told yet."""

    exit_code = ExitCode.NETWORK


def _date(moment: datetime | int) -> str:
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


PROXY_OPTION = click.option(
    "--proxy",
    metavar="socks5h://HOST:PORT",
    help="Publish on the relay through this SOCKS5 proxy (Tor: socks5h://127.0.0.1:9050).",
)
BUDGET_OPTION = click.option(
    "--budget",
    type=click.FloatRange(min=0),
    default=PUBLISH_BUDGET_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Keep retrying an unreachable relay this long, then leave publishing to hq pull.",
)


@hq_group.command("rotate-key")
@click.option(
    "--validity-days",
    type=click.IntRange(1, MAX_VALIDITY_DAYS),
    default=HQ_KEYS_VALIDITY.days,
    show_default=True,
    help="How long devices may seal to the new key without a newer statement. Shorter "
    "also shortens how long the key must be kept once it is replaced.",
)
@PROXY_OPTION
@BUDGET_OPTION
@PASSPHRASE_FILE
@pass_state
def hq_rotate_key(
    state: CliState,
    validity_days: int,
    proxy: str | None,
    budget: float,
    passphrase_file: str | None,
) -> None:
    """Replace HQ's box key; devices seal to the new one after their next sync.

    The new key is announced by an HQ-keys statement signed by the root key, put
    on the relay at once if one is configured (and by every hq pull), on sticks
    by hq export-receipts, and in new enrolment files. The old key is retired,
    not destroyed: bundles sealed to it still open. See hq retire-key.
    """
    if proxy is not None:
        proxy = check_proxy_url(proxy)
    with open_archive(state, passphrase_file) as archive:
        rotation = archive.rotate_box_key(timedelta(days=validity_days))
        infos = {i.key_id: i for i in archive.box_key_infos()}
        new = infos[rotation.key_id]
        click.echo(
            f"New box key {rotation.key_id.hex()} (HQ key statement version "
            f"{rotation.version}, valid until {_date(new.last_expiry or 0)})."
        )
        for key_id in rotation.retired:
            grace = infos[key_id].grace_ends_at
            click.echo(
                f"Retired box key {key_id.hex()}: kept so late bundles still open; it may be "
                f"destroyed (hq retire-key) from {_date(grace) if grace else '-'}."
            )
        _publish(archive, proxy, budget, "box key")


def _publish(archive: HqArchive, proxy: str | None, budget: float, what: str) -> None:
    """Put the chain on the relay now; a failure is one line, exit 7, and hq pull retries."""
    try:
        published = publish_statements(archive, proxy=proxy, budget_seconds=budget)
    except (RelayError, RelaySettingError) as e:
        raise NotPublished(
            f"The new {what} is in place, but it could not be published on the relay "
            f"({e.message.rstrip('.')}); the next `fieldapp hq pull` publishes it."
        ) from e
    if published is None:
        click.echo(
            f"No relay configured: devices learn the new {what} from sticks written by "
            "hq export-receipts, and new enrolment files carry it."
        )
    else:
        click.echo(
            f"Published {published.statements} HQ key statement(s) on the relay at "
            f"{published.relay}; devices pick the new {what} up on their next sync push."
        )


@hq_group.command("retire-key")
@click.argument("key_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="Destroy it even before its grace period ends (suspected compromise). Bundles "
    "still sealed to it then never open in this archive.",
)
@PASSPHRASE_FILE
@pass_state
def hq_retire_key(state: CliState, key_id: str, force: bool, passphrase_file: str | None) -> None:
    """Destroy a retired box key (ID: its hex id, or 8+ leading hex digits of it).

    Only after its grace period: the expiry of the last statement naming it, plus
    an allowance for bundles in transit (hq keys shows the date). A bundle that
    arrives sealed to a destroyed key is quarantined with the reason destroyed-key.
    """
    key_id_prefix(key_id)  # a malformed id is refused before any passphrase is asked
    with open_archive(state, passphrase_file) as archive:
        info, wal_cleared = archive.destroy_box_key(key_id, force=force)
        now = state.clock()
    click.echo(f"Destroyed box key {info.key_id.hex()}: its secret is erased from the archive.")
    grace = info.grace_ends_at
    if grace is not None and now < grace:
        click.echo(
            f"warning: destroyed before its grace period ended ({_date(grace)}): bundles "
            "still sealed to it are quarantined as destroyed-key, and only an archive backup "
            "from before now can open them.",
            err=True,
        )
    if not wal_cleared:
        click.echo(
            "warning: another HQ process has the archive open, so its write-ahead log could "
            "not be cleared yet; it is when the last process using the archive closes it.",
            err=True,
        )
    click.echo(
        "Backups of this HQ home made before now still hold the key: destroy them too, or "
        'hold them to the same retention policy (docs/hq.md, "Box keys").'
    )


@hq_group.command("rotate-root")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@PROXY_OPTION
@BUDGET_OPTION
@PASSPHRASE_FILE
@pass_state
def hq_rotate_root(
    state: CliState, yes: bool, proxy: str | None, budget: float, passphrase_file: str | None
) -> None:
    """Replace HQ's root signing key; enrolled devices follow it on their next sync.

    The rotation is signed by the old and the new root, and a statement of HQ's
    box and protection keys by the new root follows it. The old root's secret is
    erased. Receipts are signed again by the new root and go out again with the
    next hq pull or hq export-receipts. New enrolment files carry the new HQ
    fingerprint. If the old root may have leaked, run hq rotate-key next.
    """
    if proxy is not None:
        proxy = check_proxy_url(proxy)
    if not yes:
        click.confirm(
            "Replace HQ's root key? The HQ fingerprint changes; devices already enrolled "
            "follow on their next sync",
            abort=True,
        )
    with open_archive(state, passphrase_file) as archive:
        rotation = rotate_root(archive)
        # The upload-token notice on the relay was signed by the old root: re-sign it.
        notice = reissue_after_root_rotation(archive, state.clock)
        click.echo(
            f"HQ has a new root key (statements {rotation.rotation_version} and "
            f"{rotation.keys_version}); the old root's secret is erased."
        )
        click.echo(f"HQ fingerprint: {hq_fingerprint(rotation.new_root)}")
        click.echo(f"Previous HQ fingerprint: {hq_fingerprint(rotation.old_root)}")
        click.echo(
            f"{rotation.receipts_resigned} receipt(s) signed again by the new root; they go "
            "out again with the next hq pull and hq export-receipts."
        )
        _publish(archive, proxy, budget, "root key")
        if notice:
            try:
                report = rotate_upload_token(
                    archive, proxy=proxy, clock=state.clock, budget_seconds=budget
                )
            except (RelayError, RelaySettingError) as e:
                raise NotPublished(
                    "The upload-token notice was signed again by the new root, but it could "
                    f"not be sent ({e.message.rstrip('.')}); run `fieldapp hq "
                    "rotate-upload-token` to send it."
                ) from e
            click.echo(
                f"Upload-token notice {report.serial} signed again by the new root and sent "
                f"(the same token, for {report.devices} device(s))."
            )
