"""POST, HEAD and PATCH on /v1/uploads: tus 1.0 core with creation, id chosen by the client."""

from __future__ import annotations

import base64
import binascii
import errno

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.relay import ids
from sync.relay.bodies import BodyCut, body_chunks, content_length
from sync.relay.context import Relay, require_tus
from sync.relay.errors import (
    BadRequest,
    HashMismatch,
    NotFound,
    RelayFull,
    TooLarge,
    UnsupportedMediaType,
)
from sync.relay.tokens import Role
from sync.relay.uploads import PatchWriter

OFFSET_STREAM = "application/offset+octet-stream"
_FLUSH_BYTES = 1 << 20  # what a PATCH holds in memory before writing it out
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _header_uint(request: Request, name: str) -> int:
    value = request.headers.get(name)
    parsed = None if value is None else ids.parse_uint(value.strip())
    if parsed is None:
        raise BadRequest(f"{name} must be a whole number, 0 or more.")
    return parsed


def metadata_id(header: str | None) -> str:
    """The blob id in ``Upload-Metadata: sha256 <base64 of the 64 hex digits>``.

    Raises BadRequest for anything else, another key included.
    """
    message = "Upload-Metadata must be exactly: sha256 <base64 of the blob's hex SHA-256>."
    key, _, encoded = (header or "").strip().partition(" ")
    if key != "sha256" or "," in encoded:
        raise BadRequest(message)
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("ascii")
    except (binascii.Error, ValueError) as e:
        raise BadRequest(message) from e
    if not ids.is_blob_id(text):
        raise BadRequest(message)
    return text


def _flush(writer: PatchWriter, data: bytes) -> None:
    if data:
        writer.write(data)
    writer.commit()


class UploadRoutes:
    """The upload endpoints of one relay."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.settings = relay.settings

    def routes(self) -> list[Route]:
        return [
            Route("/v1/uploads", self.create, methods=["POST"]),
            Route("/v1/uploads/{blob_id}", self.upload, methods=["HEAD", "PATCH"]),
        ]

    async def create(self, request: Request) -> Response:
        self.relay.require(request, Role.UPLOAD)
        require_tus(request)
        length = _header_uint(request, "Upload-Length")
        if length < 1:
            raise BadRequest("Upload-Length must be at least 1: a bundle is never empty.")
        blob_id = metadata_id(request.headers.get("upload-metadata"))
        if content_length(request):
            raise BadRequest("POST /v1/uploads takes no body; send the bytes with PATCH.")
        if length > self.settings.max_blob_bytes:
            raise TooLarge("Upload-Length is above this relay's largest blob.")
        state = await run_in_threadpool(self.relay.blobs.create_upload, blob_id, length)
        headers = {"Upload-Offset": str(state.offset), "Location": f"/v1/uploads/{blob_id}"}
        return Response(status_code=200 if state.complete else 201, headers=headers)

    async def upload(self, request: Request) -> Response:
        self.relay.require(request, Role.UPLOAD)
        blob_id = ids.blob_id(request.path_params["blob_id"])
        require_tus(request)
        if request.method == "HEAD":
            return await self._where(blob_id)
        return await self._append(request, blob_id)

    async def _where(self, blob_id: str) -> Response:
        state = await run_in_threadpool(self.relay.blobs.state, blob_id)
        if state is None:
            raise NotFound
        headers = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length)}
        return Response(status_code=200, headers=headers)

    async def _append(self, request: Request, blob_id: str) -> Response:
        media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
        if media != OFFSET_STREAM:
            raise UnsupportedMediaType
        offset = _header_uint(request, "Upload-Offset")
        declared = content_length(request)
        if declared is not None and declared > self.settings.max_patch_bytes:
            raise TooLarge("The PATCH body is above this relay's largest chunk.")
        writer = await run_in_threadpool(self.relay.blobs.begin_patch, blob_id, offset)
        try:
            if declared is not None and declared > writer.room:
                raise TooLarge("The PATCH body would pass Upload-Length.")
            await self._receive(request, writer, min(self.settings.max_patch_bytes, writer.room))
            done = writer.offset == writer.length
            if done and not await run_in_threadpool(self.relay.blobs.finish, writer):
                raise HashMismatch
            return Response(status_code=204, headers={"Upload-Offset": str(writer.offset)})
        finally:
            writer.close()

    async def _receive(self, request: Request, writer: PatchWriter, limit: int) -> None:
        """Write the body through ``writer`` and fsync it; roll back if it passes ``limit``.

        A body cut short keeps what arrived (tus): the offset says where to go on.
        """
        parts: list[bytes] = []
        held = received = 0
        cut = False
        try:
            try:
                async for chunk in body_chunks(request, self.settings.body_timeout_seconds):
                    received += len(chunk)
                    if received > limit:
                        await run_in_threadpool(writer.rollback)
                        raise TooLarge("The PATCH body is too large for this upload.")
                    parts.append(chunk)
                    held += len(chunk)
                    if held >= _FLUSH_BYTES:
                        await run_in_threadpool(writer.write, b"".join(parts))
                        parts.clear()
                        held = 0
            except BodyCut:
                cut = True
            await run_in_threadpool(_flush, writer, b"".join(parts))
        except OSError as e:
            await run_in_threadpool(writer.rollback)
            if e.errno in _DISK_FULL:
                raise RelayFull("The relay's disk is full; try again later.") from e
            raise
        if cut:
            raise BadRequest("The body was cut off; HEAD for the offset and go on from there.")
