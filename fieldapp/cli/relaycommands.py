"""fieldapp relay init | serve: running the store-and-forward relay (docs/relay.md)."""

from __future__ import annotations

from pathlib import Path

import click

from sync.relay.datadir import init_relay
from sync.relay.serve import serve

DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="The relay's data folder.",
)


@click.group("relay")
def relay_group() -> None:
    """Run the relay that carries sealed bundles from monitors to HQ."""


@relay_group.command("init")
@DATA
@click.option("--tls", is_flag=True, help="Also create a self-signed TLS certificate.")
@click.option(
    "--hostname",
    default="localhost",
    show_default=True,
    metavar="NAME",
    help="The name clients use for the relay (in the certificate, with 127.0.0.1).",
)
def relay_init(data_dir: Path, tls: bool, hostname: str) -> None:
    """Create a relay data folder and print its two tokens, once."""
    result = init_relay(data_dir, tls=tls, hostname=hostname)
    click.echo(f"Relay data folder created: {data_dir}")
    click.echo(f"upload token: {result.upload_token}")
    click.echo(f"hq token: {result.hq_token}")
    if result.pin is not None:
        click.echo(f"tls pin: {result.pin}")
    click.echo(
        "These tokens are shown only this once and the relay keeps only their hashes. "
        "Give the upload token to HQ for the enrolment files and keep the HQ token for "
        "`fieldapp hq pull`; store both like passwords."
    )


@relay_group.command("serve")
@DATA
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default 8443 with --tls, 8080 without).",
)
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with the certificate from `relay init --tls`."
)
def relay_serve(data_dir: Path, host: str, port: int | None, tls: bool) -> None:
    """Run the relay in the foreground until SIGTERM or Ctrl-C."""
    serve(data_dir, host=host, port=port or (8443 if tls else 8080), tls=tls)
