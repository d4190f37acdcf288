"""Fixtures for the sync tests: an in-process HQ with enrolled monitors (tests/sync/world.py),
and a real relay process on loopback (tests/relay/server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.server import RelayProcess, running_relay
from tests.sync.world import World, new_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """An HQ home with its archive open; enrol monitors with ``world.monitor(name)``."""
    w = new_world(tmp_path)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A ``fieldapp relay serve`` process with its data in ``tmp_path / "relay"``."""
    folder = tmp_path / "relay"
    folder.mkdir()
    with running_relay(folder) as running:
        yield running
