"""Fixtures for the relay tests: a real ``fieldapp relay serve`` process per test or module.

See tests/relay/server.py (``RelayProcess``, ``running_relay``), which other test
folders may import as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.server import RelayProcess, running_relay


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay without TLS, default settings, on a new data folder."""
    with running_relay(tmp_path) as started:
        yield started


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One relay for a whole module of tests that do not depend on each other's data."""
    with running_relay(tmp_path_factory.mktemp("relay")) as started:
        yield started
