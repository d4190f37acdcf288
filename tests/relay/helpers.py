"""Requests the relay tests make again and again, spelled as docs/relay-protocol.md says."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
from pathlib import Path

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"


def blob_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata(hex_id: str) -> str:
    return "sha256 " + base64.b64encode(hex_id.encode()).decode()


def create(http: httpx.Client, data_id: str, length: int) -> httpx.Response:
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(data_id)}
    return http.post("/v1/uploads", headers=headers)


def head(http: httpx.Client, data_id: str) -> httpx.Response:
    return http.head(f"/v1/uploads/{data_id}", headers=TUS)


def patch(http: httpx.Client, data_id: str, offset: int, body: bytes) -> httpx.Response:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_STREAM}
    return http.patch(f"/v1/uploads/{data_id}", headers=headers, content=body)


def upload(http: httpx.Client, data: bytes, chunk: int = 1 << 20) -> str:
    """Create and send ``data`` in PATCHes of ``chunk`` bytes; returns its id."""
    data_id = blob_id(data)
    created = create(http, data_id, len(data))
    assert created.status_code in {200, 201}, created.text
    offset = int(created.headers["Upload-Offset"])
    while offset < len(data):
        answer = patch(http, data_id, offset, data[offset : offset + chunk])
        assert answer.status_code == 204, answer.text
        offset = int(answer.headers["Upload-Offset"])
    return data_id


def receipt(bundle_id: bytes, filler: bytes = b"r") -> bytes:
    """A 144-byte receipt-shaped record (the relay checks only the length) for ``bundle_id``."""
    assert len(bundle_id) == 16
    return b"FARCPT\x01\x01" + bundle_id + (filler * 120)[:120]


def random_receipts(count: int) -> bytes:
    return b"".join(receipt(os.urandom(16), os.urandom(1)) for _ in range(count))


def raw_request(
    url: str,
    head_lines: list[str],
    body: bytes = b"",
    *,
    cert: Path | None = None,
    close_after_send: bool = False,
) -> bytes:
    """Send a hand-written HTTP/1.1 request; returns whatever comes back (b"" if nothing).

    Add ``Connection: close`` to ``head_lines`` so the relay closes when it has answered.

    ``close_after_send`` closes the socket as soon as the bytes are out, without
    reading: a client that vanishes mid-body.
    """
    host, port = url.split("://", 1)[1].split(":")
    sock: socket.socket = socket.create_connection((host, int(port)), timeout=30)
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(cert))
        sock = context.wrap_socket(sock, server_hostname="localhost")
    try:
        sock.sendall(("\r\n".join([*head_lines, "", ""])).encode("latin-1") + body)
        if close_after_send:
            return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP response."""
    return int(raw.split(b" ", 2)[1])
