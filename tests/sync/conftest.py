"""Fixtures for the sync tests: an in-process HQ with enrolled monitors (tests/sync/world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.world import World, new_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """An HQ home with its archive open; enrol monitors with ``world.monitor(name)``."""
    w = new_world(tmp_path)
    try:
        yield w
    finally:
        w.close()
