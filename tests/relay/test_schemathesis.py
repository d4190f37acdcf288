"""Schemathesis over the live relay: no 5xx, and every answer conforms to the OpenAPI document.

The document is the committed one (docs/relay-openapi.json, checked against the
served one in test_openapi.py). Each operation gets at most 50 positive and
negative examples, sent to one real relay process with the right token for the
operation; schemathesis adds its own requests without a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.relay.server import REPO, RelayProcess, running_relay

# tus's PATCH media type is bytes like any other.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
DOCUMENT = json.loads((REPO / "docs" / "relay-openapi.json").read_text())
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=50,
    with_security_parameters=False,  # the test sends the right token itself
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@pytest.fixture(scope="module")
def fuzzed_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    with running_relay(tmp_path_factory.mktemp("fuzz")) as relay:
        yield relay


def _token(relay: RelayProcess, operation: Any) -> str:
    security = operation.definition.raw.get("security", [])
    names = {name for requirement in security for name in requirement}
    return relay.upload_token if "uploadToken" in names else relay.hq_token


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_relay_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any], fuzzed_relay: RelayProcess
) -> None:
    headers = {"Authorization": f"Bearer {_token(fuzzed_relay, case.operation)}"}
    case.call_and_validate(base_url=fuzzed_relay.url, headers=headers, checks=CHECKS)
    assert fuzzed_relay.running


def test_the_fuzzed_relay_still_takes_its_upload_token(fuzzed_relay: RelayProcess) -> None:
    # PUT /v1/upload-token could end the upload token's life, but only with a notice in
    # the documented binary layout (magic FATOKN, exact length), which generated data
    # does not hit; if it ever did, this test says so instead of later ones failing oddly.
    with fuzzed_relay.client(fuzzed_relay.upload_token) as http:
        assert http.get("/v1/receipts").status_code == 200
    assert not (fuzzed_relay.data_dir / "upload-token-notice.bin").exists()


def test_the_fuzzed_relay_logged_no_error(fuzzed_relay: RelayProcess) -> None:
    assert "ERROR" not in fuzzed_relay.output()
    assert "internal error" not in fuzzed_relay.output()
