"""The committed OpenAPI document is the one the relay serves, and covers every route."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.routing import Route

from sync.relay.app import create_app
from sync.relay.datadir import init_relay
from sync.relay.openapi import document_text
from sync.relay.settings import load_settings
from tests.relay.server import REPO, RelayProcess

COMMITTED = REPO / "docs" / "relay-openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    # Regenerate with: python -m sync.relay.openapi
    assert COMMITTED.read_text() == document_text()


def test_the_relay_serves_the_committed_document(shared_relay: RelayProcess) -> None:
    with shared_relay.client() as http:  # no token needed
        served = http.get("/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text())


def test_every_route_and_method_is_documented(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    init_relay(folder, tls=False)
    app = create_app(load_settings(folder))
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    paths = json.loads(COMMITTED.read_text())["paths"]
    documented = {
        (path, method) for path, item in paths.items() for method in item if method != "parameters"
    }
    assert served == documented
