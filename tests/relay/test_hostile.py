"""Hostile requests: a clear 4xx every time, and the data folder byte-identical afterwards.

Each case runs against a relay holding one complete blob, one partial upload,
receipts and a statement; the folder is hashed, file by file, before and after.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.relay.helpers import (
    OFFSET_STREAM,
    TUS,
    blob_id,
    create,
    head,
    metadata,
    patch,
    raw_request,
    receipt,
    status_of,
    upload,
)
from tests.relay.server import RelayProcess, running_relay, store_snapshot

MIB = 1024 * 1024


@dataclass
class Stocked:
    relay: RelayProcess
    blob: str
    partial: str
    partial_length: int
    partial_offset: int


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stocked]:
    folder = tmp_path_factory.mktemp("hostile")
    with running_relay(folder, settings={"max_pending_uploads": 2}) as relay:
        with relay.client(relay.upload_token) as http:
            complete = upload(http, os.urandom(10_000))
            data = os.urandom(50_000)
            partial = blob_id(data)
            create(http, partial, len(data))
            patch(http, partial, 0, data[:20_000])
        with relay.client(relay.hq_token) as hq:
            hq.post("/v1/receipts", content=receipt(os.urandom(16)))
            hq.put("/v1/statements/1", content=b"statement one")
        yield Stocked(relay, complete, partial, len(data), 20_000)


@pytest.fixture
def unchanged(stocked: Stocked) -> Iterator[None]:
    """The data folder is byte-identical after the test (and the relay still healthy)."""
    before = store_snapshot(stocked.relay.data_dir)
    yield
    time.sleep(0.05)  # a refused request may still be closing
    assert store_snapshot(stocked.relay.data_dir) == before
    with stocked.relay.client() as http:
        assert http.get("/v1/health").status_code == 200


def _error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"] == code


# ---------------------------------------------------------------- tokens


def _token_cases(s: Stocked) -> list[tuple[str, dict[str, str]]]:
    upload, hq = s.relay.upload_token, s.relay.hq_token
    return [
        ("no header", {}),
        ("empty", {"Authorization": ""}),
        ("scheme only", {"Authorization": "Bearer"}),
        ("basic", {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}),
        ("wrong token", {"Authorization": "Bearer " + "A" * 43}),
        ("truncated", {"Authorization": "Bearer " + hq[:-1]}),
        ("extended", {"Authorization": "Bearer " + hq + "A"}),
        ("two spaces", {"Authorization": "Bearer  " + hq}),
        ("the hash itself", {"Authorization": "Bearer " + "0" * 64}),
        ("upload token for HQ", {"Authorization": "Bearer " + upload}),
        ("huge", {"Authorization": "Bearer " + "A" * 8000}),
    ]


@pytest.mark.usefixtures("unchanged")
def test_every_token_failure_gets_the_same_answer(stocked: Stocked) -> None:
    answers = set()
    for _, headers in _token_cases(stocked):
        with stocked.relay.client(headers=headers) as http:
            for method, path in [
                ("GET", "/v1/blobs"),
                ("GET", f"/v1/blobs/{stocked.blob}"),
                ("DELETE", f"/v1/blobs/{stocked.blob}"),
                ("POST", "/v1/receipts"),
                ("PUT", "/v1/statements/2"),
            ]:
                answer = http.request(method, path, content=b"x" * 144)
                assert answer.status_code == 401
                assert answer.headers["WWW-Authenticate"] == "Bearer"
                answers.add(answer.content)
    assert len(answers) == 1
    assert answers.pop() == (
        b'{"error":"unauthorized","message":"A valid token is needed for this request."}'
    )


@pytest.mark.usefixtures("unchanged")
def test_upload_endpoints_refuse_missing_and_wrong_tokens(stocked: Stocked) -> None:
    for _, headers in _token_cases(stocked)[:-2]:
        with stocked.relay.client(headers=headers) as http:
            _error(create(http, stocked.partial, stocked.partial_length), 401, "unauthorized")
            assert head(http, stocked.partial).status_code == 401
            _error(patch(http, stocked.partial, 20_000, b"x"), 401, "unauthorized")
            _error(http.get("/v1/receipts"), 401, "unauthorized")
            _error(http.get("/v1/statements"), 401, "unauthorized")


# ---------------------------------------------------------------- names


BAD_IDS = [
    "..%2f..%2ftokens.json",
    "..%2F..%2Frelay.json",
    "%2e%2e",
    "tokens.json",
    "A" * 64,  # upper-case hex
    "f" * 63,
    "f" * 65,
    "%C3%A9" * 64,  # é
    "%EF%BC%90" * 64,  # fullwidth digit zero
    "f" * 63 + "%00",
    "f" * 64 + "%0a",
    "f" * 64 + ".tmp",
    ".new-0000",
    "%20" + "f" * 64,
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("bad", BAD_IDS)
def test_path_tricks_in_ids_are_not_found(stocked: Stocked, bad: str) -> None:
    relay = stocked.relay
    with relay.client(relay.hq_token) as http:
        for method, path in [
            ("GET", f"/v1/blobs/{bad}"),
            ("DELETE", f"/v1/blobs/{bad}"),
            ("HEAD", f"/v1/uploads/{bad}"),
            ("PATCH", f"/v1/uploads/{bad}"),
            ("PUT", f"/v1/statements/{bad}"),
        ]:
            request = http.build_request(
                method,
                path,
                headers={**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_STREAM},
                content=b"x",
            )
            request.url = request.url.copy_with(raw_path=path.encode())  # no normalising
            answer = http.send(request)
            assert answer.status_code == 404, (method, path, answer.text)
            if method != "HEAD":
                assert answer.json()["error"] == "not-found"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "path",
    ["/v1/blobs/../tokens.json", "/v1/blobs/%2e%2e/tokens.json", "/v1/../v1/blobs", "/tokens.json"],
)
def test_dot_segments_reach_nothing(stocked: Stocked, path: str) -> None:
    relay = stocked.relay
    raw = raw_request(
        relay.url,
        [
            f"GET {path} HTTP/1.1",
            "Host: x",
            f"Authorization: Bearer {relay.hq_token}",
            "Connection: close",
        ],
    )
    assert status_of(raw) == 404
    assert b"tokens" not in raw.split(b"\r\n\r\n", 1)[1]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "version", ["0", "01", "-1", "1.0", "9223372036854775808", "x", "1%00", "%2e%2e"]
)
def test_bad_statement_versions_are_not_found(stocked: Stocked, version: str) -> None:
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        request = hq.build_request("PUT", f"/v1/statements/{version}", content=b"s")
        request.url = request.url.copy_with(raw_path=f"/v1/statements/{version}".encode())
        _error(hq.send(request), 404, "not-found")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/blobs", {"after": "F" * 64}),
        ("/v1/blobs", {"after": "../x"}),
        ("/v1/blobs", {"limit": "0"}),
        ("/v1/blobs", {"limit": "1001"}),
        ("/v1/blobs", {"limit": "-1"}),
        ("/v1/blobs", {"limit": "ten"}),
        ("/v1/receipts", {"after": "-1"}),
        ("/v1/receipts", {"after": "1e3"}),
        ("/v1/receipts", {"after": "99999999999999999999"}),
        ("/v1/statements", {"after": "x"}),
    ],
)
def test_bad_query_parameters(stocked: Stocked, path: str, params: dict[str, str]) -> None:
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        _error(hq.get(path, params=params), 400, "bad-request")


# ---------------------------------------------------------------- upload headers


def _create_headers(s: Stocked, **changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        **TUS,
        "Upload-Length": str(s.partial_length),
        "Upload-Metadata": metadata(s.partial),
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


CREATE_CASES: dict[str, tuple[dict[str, str | None], int, str]] = {
    "no tus header": ({"Tus-Resumable": None}, 400, "bad-request"),
    "old tus": ({"Tus-Resumable": "0.2.2"}, 400, "bad-request"),
    "no length": ({"Upload-Length": None}, 400, "bad-request"),
    "length text": ({"Upload-Length": "ten"}, 400, "bad-request"),
    "length negative": ({"Upload-Length": "-5"}, 400, "bad-request"),
    "length signed": ({"Upload-Length": "+5"}, 400, "bad-request"),
    "length float": ({"Upload-Length": "5.0"}, 400, "bad-request"),
    "length exponent": ({"Upload-Length": "1e3"}, 400, "bad-request"),
    "length zero": ({"Upload-Length": "0"}, 400, "bad-request"),
    "length leading zero": ({"Upload-Length": "0100"}, 400, "bad-request"),
    "length huge number": ({"Upload-Length": "9" * 40}, 400, "bad-request"),
    "length above limit": ({"Upload-Length": str(4 * 1024**3 + 1)}, 413, "too-large"),
    "no metadata": ({"Upload-Metadata": None}, 400, "bad-request"),
    "metadata key only": ({"Upload-Metadata": "sha256"}, 400, "bad-request"),
    "metadata not base64": ({"Upload-Metadata": "sha256 !!!!"}, 400, "bad-request"),
    "metadata raw hex": ({"Upload-Metadata": "sha256 " + "a" * 64}, 400, "bad-request"),
    "metadata other key": ({"Upload-Metadata": "md5 " + "QUFB"}, 400, "bad-request"),
    "metadata upper hex": ({"Upload-Metadata": metadata("A" * 64)}, 400, "bad-request"),
    "metadata 63 hex": ({"Upload-Metadata": metadata("a" * 63)}, 400, "bad-request"),
    "metadata path": ({"Upload-Metadata": metadata("../../tokens.json")}, 400, "bad-request"),
    "metadata two pairs": (
        {"Upload-Metadata": metadata("a" * 64) + ",filename " + "eC5qcGc="},
        400,
        "bad-request",
    ),
    "metadata unpadded": ({"Upload-Metadata": metadata("a" * 64).rstrip("=")}, 400, "bad-request"),
    "another length": ({"Upload-Length": "50001"}, 409, "conflict"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("case", list(CREATE_CASES), ids=list(CREATE_CASES))
def test_malformed_creation_headers(stocked: Stocked, case: str) -> None:
    changes, status, code = CREATE_CASES[case]
    with stocked.relay.client(stocked.relay.upload_token) as http:
        answer = http.post("/v1/uploads", headers=_create_headers(stocked, **changes))
    _error(answer, status, code)
    assert answer.headers["Tus-Resumable"] == "1.0.0"


def test_too_many_pending_uploads(stocked: Stocked) -> None:
    with stocked.relay.client(stocked.relay.upload_token) as http:
        second = os.urandom(100)
        assert create(http, blob_id(second), 100).status_code == 201  # 2 pending: the limit
        before = store_snapshot(stocked.relay.data_dir)
        third = os.urandom(100)
        _error(create(http, blob_id(third), 100), 507, "relay-full")
        assert store_snapshot(stocked.relay.data_dir) == before
        assert create(http, stocked.blob, 10_000).status_code == 200  # complete: no new upload
        assert patch(http, blob_id(second), 0, second).status_code == 204  # frees a place
        assert create(http, blob_id(third), 100).status_code == 201
        assert patch(http, blob_id(third), 0, third).status_code == 204
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        hq.delete(f"/v1/blobs/{blob_id(second)}")
        hq.delete(f"/v1/blobs/{blob_id(third)}")


PATCH_CASES: dict[str, tuple[dict[str, str | None], bytes, int, str]] = {
    "no tus header": ({"Tus-Resumable": None}, b"x", 400, "bad-request"),
    "no content type": ({"Content-Type": None}, b"x", 415, "unsupported-media-type"),
    "octet-stream": (
        {"Content-Type": "application/octet-stream"},
        b"x",
        415,
        "unsupported-media-type",
    ),
    "json": ({"Content-Type": "application/json"}, b"{}", 415, "unsupported-media-type"),
    "no offset": ({"Upload-Offset": None}, b"x", 400, "bad-request"),
    "offset text": ({"Upload-Offset": "abc"}, b"x", 400, "bad-request"),
    "offset negative": ({"Upload-Offset": "-1"}, b"x", 400, "bad-request"),
    "offset behind": ({"Upload-Offset": "19999"}, b"xx", 409, "conflict"),
    "offset ahead": ({"Upload-Offset": "20001"}, b"x", 409, "conflict"),
    "offset zero": ({"Upload-Offset": "0"}, b"x", 409, "conflict"),
    "past the length": ({}, b"x" * 30_001, 413, "too-large"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("case", list(PATCH_CASES), ids=list(PATCH_CASES))
def test_malformed_patches(stocked: Stocked, case: str) -> None:
    changes, body, status, code = PATCH_CASES[case]
    headers: dict[str, str | None] = {
        **TUS,
        "Upload-Offset": str(stocked.partial_offset),
        "Content-Type": OFFSET_STREAM,
        **changes,
    }
    sent = {k: v for k, v in headers.items() if v is not None}
    with stocked.relay.client(stocked.relay.upload_token) as http:
        answer = http.patch(f"/v1/uploads/{stocked.partial}", headers=sent, content=body)
        _error(answer, status, code)
        assert head(http, stocked.partial).headers["Upload-Offset"] == str(stocked.partial_offset)


@pytest.mark.usefixtures("unchanged")
def test_patch_to_an_unknown_upload(stocked: Stocked) -> None:
    with stocked.relay.client(stocked.relay.upload_token) as http:
        _error(patch(http, "e" * 64, 0, b"x"), 404, "not-found")
        _error(patch(http, stocked.blob, 10_000, b"x"), 409, "conflict")  # complete already


def _raw_patch(s: Stocked, declared: int, body: bytes, *extra: str, chunked: bool = False) -> bytes:
    relay = s.relay
    lines = [
        f"PATCH /v1/uploads/{s.partial} HTTP/1.1",
        "Host: relay",
        f"Authorization: Bearer {relay.upload_token}",
        "Tus-Resumable: 1.0.0",
        f"Upload-Offset: {s.partial_offset}",
        f"Content-Type: {OFFSET_STREAM}",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}",
        "Connection: close",
        *extra,
    ]
    return raw_request(relay.url, lines, body)


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_patch_is_refused_before_its_body(stocked: Stocked) -> None:
    # The head alone declares 16 MiB + 1: the answer comes without a byte of body sent.
    raw = _raw_patch(stocked, 16 * MIB + 1, b"")
    assert status_of(raw) == 413
    assert b'"too-large"' in raw


@pytest.mark.usefixtures("unchanged")
def test_a_chunked_body_past_the_length_is_rolled_back(stocked: Stocked) -> None:
    room = stocked.partial_length - stocked.partial_offset
    chunk = b"z" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(room // 4096 + 2))
    raw = _raw_patch(stocked, 0, body + b"0\r\n\r\n", chunked=True)
    assert status_of(raw) == 413
    with stocked.relay.client(stocked.relay.upload_token) as http:
        assert head(http, stocked.partial).headers["Upload-Offset"] == str(stocked.partial_offset)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/receipts", b"", 400, "bad-request"),
        ("/v1/receipts", b"x" * 143, 400, "bad-request"),
        ("/v1/receipts", b"x" * 145, 400, "bad-request"),
        ("/v1/receipts", b'{"receipts": []}', 400, "bad-request"),
        ("/v1/receipts", b"x" * 144 * 10_001, 413, "too-large"),
        ("/v1/statements/5", b"", 400, "bad-request"),
        ("/v1/statements/5", b"s" * 1025, 413, "too-large"),
        ("/v1/statements/1", b"another statement one", 409, "conflict"),
    ],
)
def test_malformed_bodies(stocked: Stocked, path: str, body: bytes, status: int, code: str) -> None:
    method = "POST" if path == "/v1/receipts" else "PUT"
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        _error(hq.request(method, path, content=body), status, code)


@pytest.mark.usefixtures("unchanged")
def test_header_limits(stocked: Stocked) -> None:
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        many = {f"X-Filler-{i}": "1" for i in range(70)}
        _error(hq.get("/v1/blobs", headers=many), 400, "bad-request")
        _error(hq.get("/v1/blobs", headers={"X-Long": "a" * 9000}), 400, "bad-request")
        huge = {f"X-Big-{i}": "b" * 8000 for i in range(10)}  # 80 KiB: the parser's limit
        assert hq.get("/v1/blobs", headers=huge).status_code == 400
        assert hq.get("/v1/blobs", headers={"X-Fine": "a" * 8000}).status_code == 200


@pytest.mark.usefixtures("unchanged")
def test_methods_that_are_not_in_the_protocol(stocked: Stocked) -> None:
    with stocked.relay.client(stocked.relay.hq_token) as hq:
        answer = hq.put(f"/v1/blobs/{stocked.blob}", content=b"replace")
        _error(answer, 405, "method-not-allowed")
        assert set(answer.headers["Allow"].split(", ")) == {"GET", "DELETE"}
        _error(hq.delete("/v1/uploads"), 405, "method-not-allowed")
        _error(hq.get(f"/v1/uploads/{stocked.partial}"), 405, "method-not-allowed")
        _error(hq.post("/v1/statements"), 405, "method-not-allowed")
        _error(hq.get("/v2/blobs"), 404, "not-found")


def test_a_body_cut_short_keeps_what_arrived(tmp_path: Path) -> None:
    """tus semantics: the bytes that reached the relay are kept, fsynced, and HEAD says so."""
    with running_relay(tmp_path) as relay:
        data = os.urandom(3 * MIB)
        data_id = blob_id(data)
        with relay.client(relay.upload_token) as http:
            create(http, data_id, len(data))
        sent = MIB + 12345
        lines = [
            f"PATCH /v1/uploads/{data_id} HTTP/1.1",
            "Host: relay",
            f"Authorization: Bearer {relay.upload_token}",
            "Tus-Resumable: 1.0.0",
            "Upload-Offset: 0",
            f"Content-Type: {OFFSET_STREAM}",
            f"Content-Length: {len(data)}",
        ]
        raw_request(relay.url, lines, data[:sent], close_after_send=True)
        with relay.client(relay.upload_token) as http:
            offset = _settled_offset(lambda: head(http, data_id))
            assert offset == sent
            assert patch(http, data_id, offset, data[offset:]).status_code == 204
        with relay.client(relay.hq_token) as hq:
            assert hq.get(f"/v1/blobs/{data_id}").content == data


def _settled_offset(ask: Callable[[], httpx.Response]) -> int:
    """The upload's offset once the relay has noticed the cut (it stops changing)."""
    last, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        offset = int(ask().headers["Upload-Offset"])
        if offset == last:
            return offset
        last = offset
        time.sleep(0.2)
    return last


def test_a_stalled_body_is_cut_after_the_timeout(tmp_path: Path) -> None:
    """A client that stops sending mid-body does not hold the upload for ever."""
    with running_relay(tmp_path, settings={"body_timeout_seconds": 1}) as relay:
        data = os.urandom(200_000)
        data_id = blob_id(data)
        with relay.client(relay.upload_token) as http:
            create(http, data_id, len(data))
        host, port = relay.url.split("://")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as stalled:
            head_lines = [
                f"PATCH /v1/uploads/{data_id} HTTP/1.1",
                "Host: relay",
                f"Authorization: Bearer {relay.upload_token}",
                "Tus-Resumable: 1.0.0",
                "Upload-Offset: 0",
                f"Content-Type: {OFFSET_STREAM}",
                f"Content-Length: {len(data)}",
            ]
            stalled.sendall("\r\n".join([*head_lines, "", ""]).encode() + data[:70_000])
            started = time.monotonic()
            answer = stalled.recv(65536)  # the relay answers once the timeout passes
            assert 0.5 < time.monotonic() - started < 10
            while not answer.endswith(b"}") and (more := stalled.recv(65536)):
                answer += more
            assert status_of(answer) == 400
            assert b"cut off" in answer
        with relay.client(relay.upload_token) as http:
            assert head(http, data_id).headers["Upload-Offset"] == "70000"
            assert patch(http, data_id, 70_000, data[70_000:]).status_code == 204
