"""POST, HEAD and PATCH on /v1/uploads: tus 1.0 core with creation, id chosen by the client.

One PATCH at a time writes to an upload (the store refuses a second one). A
PATCH or HEAD that finds one running waits for it to end, at most about
``takeover_seconds``; if the running PATCH has received nothing for
``takeover_seconds`` (its client's connection most likely died without a
word), it is stopped: it keeps what it received, fsynced, releases the upload
and answers 409, and the new request goes on from the stored offset. This is
tusd's lock takeover, limited to a writer that has gone quiet.
"""

from __future__ import annotations

import base64
import binascii
import enum
import errno
import time
from typing import Final

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.relay import ids
from sync.relay.bodies import BodyCut, BodyStopped, Watch, body_chunks, content_length
from sync.relay.context import Relay, require_tus
from sync.relay.errors import (
    BadRequest,
    Conflict,
    HashMismatch,
    NotFound,
    RelayFull,
    TooLarge,
    UnsupportedMediaType,
)
from sync.relay.storage import UploadBusy
from sync.relay.tokens import Role
from sync.relay.uploads import PatchWriter

OFFSET_STREAM = "application/offset+octet-stream"
_FLUSH_BYTES = 1 << 20  # what a PATCH holds in memory before writing it out
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_RELEASE_WAIT: Final = 30.0  # how long a stopped PATCH may take to save what it received
_WAIT_MARGIN: Final = 0.25  # beyond takeover_seconds, for a PATCH that just went quiet
_BEGIN_TRIES: Final = 3


class Ending(enum.Enum):
    """How a PATCH body ended."""

    WHOLE = "whole"
    CUT = "cut"  # the client went away or stalled for body_timeout
    STOPPED = "stopped"  # another request took the upload over


class Lease(Watch):
    """The PATCH writing to an upload, as other requests for it see it (event loop only)."""

    def __init__(self, writer: PatchWriter) -> None:
        super().__init__()
        self.writer = writer
        self.released = anyio.Event()


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
        self._leases: dict[str, Lease] = {}  # blob id -> the PATCH writing to it

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
        lease = self._leases.get(blob_id)
        if lease is not None:
            await self._wait_or_take_over(lease)
        state = await run_in_threadpool(self.relay.blobs.state, blob_id)
        if state is None:
            raise NotFound
        headers = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length)}
        return Response(status_code=200, headers=headers)

    async def _wait_or_take_over(self, lease: Lease) -> bool:
        """Wait for the PATCH holding ``lease`` to end, stopping it if it has gone quiet.

        Waits at most about ``takeover_seconds`` for a PATCH that keeps receiving
        bytes (then False: it still runs); one that has waited ``takeover_seconds``
        for its next bytes is stopped, and given ``_RELEASE_WAIT`` to save what it
        received. True once the upload is released.
        """
        takeover = self.settings.takeover_seconds
        deadline = time.monotonic() + takeover + _WAIT_MARGIN
        while not lease.released.is_set():
            idle = lease.idle_seconds()
            if idle > takeover:
                lease.stop()
                with anyio.move_on_after(_RELEASE_WAIT):
                    await lease.released.wait()
                break
            now = time.monotonic()
            if now >= deadline:
                break
            with anyio.move_on_after(min(deadline, now + takeover - idle) - now + 0.01):
                await lease.released.wait()
        return lease.released.is_set()

    async def _begin(self, blob_id: str, offset: int) -> PatchWriter:
        """The upload's writer, once any PATCH still holding it has ended or been stopped."""
        tries = 0
        while True:
            try:
                return await run_in_threadpool(self.relay.blobs.begin_patch, blob_id, offset)
            except UploadBusy as busy:
                tries += 1
                lease = self._leases.get(blob_id)
                if tries >= _BEGIN_TRIES:
                    raise
                if lease is None or lease.writer is not busy.holder:
                    await anyio.sleep(0.01)  # the holder is just starting or just ending
                elif not await self._wait_or_take_over(lease):
                    raise

    async def _append(self, request: Request, blob_id: str) -> Response:
        media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
        if media != OFFSET_STREAM:
            raise UnsupportedMediaType
        offset = _header_uint(request, "Upload-Offset")
        declared = content_length(request)
        if declared is not None and declared > self.settings.max_patch_bytes:
            raise TooLarge("The PATCH body is above this relay's largest chunk.")
        writer = await self._begin(blob_id, offset)
        lease = self._leases[blob_id] = Lease(writer)
        try:
            if declared is not None and declared > writer.room:
                raise TooLarge("The PATCH body would pass Upload-Length.")
            limit = min(self.settings.max_patch_bytes, writer.room)
            ending = await self._receive(request, writer, limit, lease)
            if writer.offset == writer.length:
                if not await run_in_threadpool(self.relay.blobs.finish, writer):
                    raise HashMismatch
            elif ending is Ending.CUT:
                raise BadRequest("The body was cut off; HEAD for the offset and go on from there.")
            elif ending is Ending.STOPPED:
                raise Conflict(
                    "This PATCH sent nothing for a while and another request took the upload "
                    "over; what arrived is kept: HEAD for the offset."
                )
            return Response(status_code=204, headers={"Upload-Offset": str(writer.offset)})
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if writer.pending:  # an error mid-way: cut off what was not committed
                        await run_in_threadpool(writer.close)
                    else:
                        writer.close()  # no I/O but close(2), and the lock for a moment
                finally:
                    if self._leases.get(blob_id) is lease:
                        del self._leases[blob_id]
                    lease.released.set()

    async def _receive(
        self, request: Request, writer: PatchWriter, limit: int, lease: Lease
    ) -> Ending:
        """Write the body through ``writer`` and fsync it; roll back if it passes ``limit``.

        A body cut short, or stopped by another request, keeps what arrived (tus):
        the offset says where to go on.
        """
        parts: list[bytes] = []
        held = received = 0
        ending = Ending.WHOLE
        try:
            try:
                timeout = self.settings.body_timeout_seconds
                async for chunk in body_chunks(request, timeout, lease):
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
            except BodyStopped:
                ending = Ending.STOPPED
            except BodyCut:
                ending = Ending.CUT
            await run_in_threadpool(_flush, writer, b"".join(parts))
        except OSError as e:
            await run_in_threadpool(writer.rollback)
            if e.errno in _DISK_FULL:
                raise RelayFull("The relay's disk is full; try again later.") from e
            raise
        return ending
