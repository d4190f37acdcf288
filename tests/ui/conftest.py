"""Fixtures for the UI tests (helpers live in tests/ui/__init__.py). Add yours below."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldapp.session import Session
from tests.ui import PASSPHRASE, make_session


@pytest.fixture
def unlocked_session(tmp_path: Path) -> Iterator[Session]:
    """A set-up, unlocked Session on a fresh home (real SQLCipher, cheap Argon2id)."""
    session = make_session(tmp_path)
    session.create(PASSPHRASE)
    yield session
    session.lock()
