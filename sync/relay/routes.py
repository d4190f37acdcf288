"""Blobs, receipts, statements, health and the OpenAPI document."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from crypto.receipts import RECEIPT_BYTES
from sync.relay import ids
from sync.relay.bodies import read_limited
from sync.relay.context import Relay
from sync.relay.errors import BadRequest, RangeNotSatisfiable
from sync.relay.openapi import openapi_document
from sync.relay.tokens import Role

PROTOCOL: Final = 1
OCTETS: Final = "application/octet-stream"
_READ_BYTES: Final = 1 << 20
_RANGE: Final = re.compile(r"bytes=([0-9]{1,19})?-([0-9]{1,19})?")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range``; None to send it all. Raises RangeNotSatisfiable.

    ``bytes=a-``, ``bytes=a-b`` and ``bytes=-n``; any other form (several ranges,
    other units) is ignored, as RFC 9110 allows.
    """
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or (match.group(1) is None and match.group(2) is None):
        return None
    start_text, end_text = match.groups()
    if start_text is None:  # the last n bytes
        count = int(end_text)
        if count == 0:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        return max(0, size - count), size - 1
    start = int(start_text)
    end = size - 1 if end_text is None else min(int(end_text), size - 1)
    if start >= size:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    if end < start:
        return None  # an invalid range: ignored
    return start, end


async def _file_bytes(f: BinaryIO, start: int, count: int) -> AsyncIterator[bytes]:
    try:
        await run_in_threadpool(f.seek, start)
        while count > 0:
            block = await run_in_threadpool(f.read, min(_READ_BYTES, count))
            if not block:
                return
            count -= len(block)
            yield block
    finally:
        f.close()


class OtherRoutes:
    """Every endpoint but the uploads'."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.settings = relay.settings

    def routes(self) -> list[Route]:
        return [
            _get("/v1/health", self.health),
            _get("/v1/openapi.json", self.openapi),
            _get("/v1/blobs", self.list_blobs),
            _get("/v1/blobs/{blob_id}", self.blob, "DELETE"),
            _get("/v1/receipts", self.receipts, "POST"),
            _get("/v1/statements", self.statements),
            Route("/v1/statements/{version}", self.put_statement, methods=["PUT"]),
        ]

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok", "protocol": PROTOCOL})

    async def openapi(self, _: Request) -> Response:
        return JSONResponse(openapi_document())

    async def list_blobs(self, request: Request) -> Response:
        self.relay.require(request, Role.HQ)
        after = request.query_params.get("after")
        if after is not None and not ids.is_blob_id(after):
            raise BadRequest("after must be a blob id (64 lowercase hex digits).")
        most = self.settings.max_list_limit
        limit = ids.query_uint(request.query_params.get("limit"), default=most, name="limit")
        if not 1 <= limit <= most:
            raise BadRequest(f"limit must be from 1 to {most}.")
        found, more = await run_in_threadpool(self.relay.blobs.list_blobs, after or "", limit)
        blobs = [{"id": b.id, "size": b.size, "stored_at": b.stored_at} for b in found]
        return JSONResponse({"blobs": blobs, "more": more})

    async def blob(self, request: Request) -> Response:
        self.relay.require(request, Role.HQ)
        blob_id = ids.blob_id(request.path_params["blob_id"])
        if request.method == "DELETE":
            await run_in_threadpool(self.relay.blobs.delete_blob, blob_id)
            return Response(status_code=204)
        f, size = await run_in_threadpool(self.relay.blobs.open_blob, blob_id)
        try:
            wanted = byte_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            f.close()
            raise
        headers = {"Accept-Ranges": "bytes"}
        if wanted is None:
            start, end, status = 0, size - 1, 200
        else:
            (start, end), status = wanted, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        chunks = _file_bytes(f, start, end - start + 1)
        return StreamingResponse(chunks, status, headers=headers, media_type=OCTETS)

    async def receipts(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._publish_receipts(request)
        self.relay.require(request, Role.UPLOAD)
        cursor = ids.query_uint(request.query_params.get("after"), default=0, name="after")
        data, cursor, more = await run_in_threadpool(
            self.relay.receipts.after, cursor, self.settings.max_receipts_per_get
        )
        headers = {"Receipts-Cursor": str(cursor), "Receipts-More": "1" if more else "0"}
        return Response(data, headers=headers, media_type=OCTETS)

    async def _publish_receipts(self, request: Request) -> Response:
        self.relay.require(request, Role.HQ)
        limit = self.settings.max_receipts_per_post * RECEIPT_BYTES
        body = await read_limited(request, limit, self.settings.body_timeout_seconds)
        if not body or len(body) % RECEIPT_BYTES:
            raise BadRequest(f"The body must be one or more {RECEIPT_BYTES}-byte receipts.")
        stored = await run_in_threadpool(self.relay.receipts.add, body)
        return JSONResponse({"stored": stored})

    async def put_statement(self, request: Request) -> Response:
        self.relay.require(request, Role.HQ)
        version = ids.statement_version(request.path_params["version"])
        limit = self.settings.max_statement_bytes
        body = await read_limited(request, limit, self.settings.body_timeout_seconds)
        if not body:
            raise BadRequest("A statement cannot be empty.")
        await run_in_threadpool(self.relay.statements.put, version, body)
        return Response(status_code=204)

    async def statements(self, request: Request) -> Response:
        self.relay.require(request, Role.UPLOAD)
        after = ids.query_uint(request.query_params.get("after"), default=0, name="after")
        found = await run_in_threadpool(self.relay.statements.after, after)
        return JSONResponse({"statements": [base64.b64encode(s).decode() for s in found]})


def _get(path: str, endpoint: Callable[[Request], Awaitable[Response]], *others: str) -> Route:
    """A GET route without the HEAD that Starlette adds: the protocol has none there."""
    route = Route(path, endpoint, methods=["GET", *others])
    route.methods = {m for m in route.methods or set() if m != "HEAD"}
    return route
