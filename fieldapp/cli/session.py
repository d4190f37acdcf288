"""Opening the store for one command: unlock with the passphrase, then close after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from fieldapp.cli.secrets import read_secret
from fieldapp.cli.state import CliState
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import unlock_home


@contextlib.contextmanager
def open_store(state: CliState, passphrase_file: str | None) -> Iterator[FieldStore]:
    home = state.resolve_home()
    unlocked = unlock_home(home, read_secret("Passphrase", passphrase_file))
    if unlocked.note:  # an interrupted rekey was settled on the way
        click.echo(unlocked.note, err=True)
    store = FieldStore.open(unlocked, clock=state.clock)
    try:
        yield store
    finally:
        store.close()
