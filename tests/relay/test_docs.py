"""docs/relay.md and docs/relay-protocol.md stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from sync.relay.errors import ApiError
from sync.relay.openapi import ERROR_CODES
from sync.relay.settings import RelaySettings, settings_document
from tests.relay.server import REPO

RELAY_DOC = (REPO / "docs" / "relay.md").read_text()
PROTOCOL_DOC = (REPO / "docs" / "relay-protocol.md").read_text()


def _all_api_errors() -> list[type[ApiError]]:
    found: list[type[ApiError]] = []
    pending: list[type[ApiError]] = [ApiError]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def test_the_settings_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \| ", RELAY_DOC, re.MULTILINE))
    settings = settings_document(RelaySettings(data_dir=Path()))["settings"]
    assert isinstance(settings, dict)
    assert documented == set(settings)


def test_every_error_code_is_in_the_protocol_and_the_openapi_document() -> None:
    codes = {(kind.status, kind.code) for kind in _all_api_errors()}
    assert codes == set(ERROR_CODES.items())
    for status, code in codes:
        assert f"`{code}` {status}" in PROTOCOL_DOC.replace("\n", " "), code
