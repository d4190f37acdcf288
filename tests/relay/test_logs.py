"""Nothing about a client reaches the relay's output: no address, no user agent, no request.

A real relay takes successful, refused, malformed and cut-off requests from
127.0.0.1 with a distinctive user agent and other request data; then it is
stopped with SIGTERM and everything it printed is searched.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.relay.helpers import OFFSET_STREAM, blob_id, create, patch, raw_request, upload
from tests.relay.server import running_relay

AGENT = "CanaryAgent/7.3 (witness-laptop; monitor-aleppo-1)"
FORWARDED = "203.0.113.77"


def test_no_client_address_or_user_agent_in_the_output(tmp_path: Path) -> None:
    headers = {"User-Agent": AGENT, "X-Forwarded-For": FORWARDED, "X-Real-IP": FORWARDED}
    with running_relay(tmp_path) as relay:
        secret_data = os.urandom(5000)
        with relay.client(relay.upload_token, headers=headers) as http:
            data_id = upload(http, secret_data)
            create(http, "f" * 64, 10)
            patch(http, "f" * 64, 3, b"wrong offset")
            http.get("/v1/receipts", params={"after": "nonsense"})
            http.post("/v1/uploads", headers={"Upload-Metadata": "garbage"})
            http.get("/no/such/path")
        with relay.client("A" * 43, headers=headers) as stranger:
            stranger.get("/v1/blobs")
        with relay.client(relay.hq_token, headers=headers) as hq:
            hq.get(f"/v1/blobs/{data_id}")
            hq.get("/v1/blobs", headers={f"X-Pad-{i}": AGENT for i in range(70)})
            hq.delete(f"/v1/blobs/{data_id}")
        # Not HTTP at all, an oversized head, and a body cut off mid-way.
        raw_request(relay.url, ["GARBAGE / HTTP/9.9", f"User-Agent: {AGENT}", ""])
        raw_request(relay.url, ["GET /v1/health HTTP/1.1", "Host: x", "X-Big: " + "a" * 200_000])
        cut = os.urandom(100_000)
        with relay.client(relay.upload_token) as http:
            create(http, blob_id(cut), len(cut))
        raw_request(
            relay.url,
            [
                f"PATCH /v1/uploads/{blob_id(cut)} HTTP/1.1",
                "Host: x",
                f"User-Agent: {AGENT}",
                f"Authorization: Bearer {relay.upload_token}",
                "Tus-Resumable: 1.0.0",
                "Upload-Offset: 0",
                f"Content-Type: {OFFSET_STREAM}",
                f"Content-Length: {len(cut)}",
            ],
            cut[:5000],
            close_after_send=True,
        )
        assert relay.stop() == 0  # SIGTERM: a clean stop, with its own log lines
    output = relay.output()
    assert "starting on port" in output
    assert "stopped" in output
    for leak in (
        "127.0.0.1",
        "CanaryAgent",
        "witness-laptop",
        FORWARDED,
        relay.upload_token,
        relay.hq_token,
        data_id,
        blob_id(cut),
        "f" * 64,
        "nonsense",
        "garbage",
        "/no/such/path",
        "/v1/",
    ):
        assert leak not in output, leak
