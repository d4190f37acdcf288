"""What every command needs from the outside world, injectable for tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import click

from fieldapp.store.home import Home, resolve_home
from fieldapp.store.vault import Clock, KdfPolicy, utc_now


@dataclass
class CliState:
    """Set by the group callback; tests build one with cheap KDF parameters."""

    debug: bool = False
    home: str | None = None
    kdf: KdfPolicy = field(default_factory=KdfPolicy)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Clock = utc_now

    def resolve_home(self) -> Home:
        return resolve_home(self.home, self.environ)


pass_state = click.make_pass_decorator(CliState, ensure=True)
