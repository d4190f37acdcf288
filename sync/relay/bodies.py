"""Reading request bodies in chunks, within limits, never whole into memory unasked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect, Request

from sync.relay.errors import BadRequest, TooLarge
from sync.relay.ids import parse_uint


class BodyCut(Exception):
    """The client went away, or stopped sending, before the body was complete."""


class BodyStopped(BodyCut):
    """Another task asked the reader to stop (``Watch.stop``) before the body was complete."""


class Watch:
    """A body being read, as other tasks of the event loop see it: how long it has been
    waiting for bytes, and a way to make it stop between two chunks.

    Only the wait for the next chunk is interrupted: whatever was received is the
    reader's to keep. Use from the event loop's thread only.
    """

    def __init__(self) -> None:
        self.stop_requested = False
        self._waiting_since: float | None = None
        self._scope: anyio.CancelScope | None = None

    def idle_seconds(self) -> float:
        """How long the reader has been waiting for the next bytes (0 while it works)."""
        if self._waiting_since is None:
            return 0.0
        return time.monotonic() - self._waiting_since

    def stop(self) -> None:
        self.stop_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def waiting(self, scope: anyio.CancelScope) -> None:
        """The reader waits for bytes inside ``scope`` (which ``stop`` cancels)."""
        self._scope, self._waiting_since = scope, time.monotonic()

    def working(self) -> None:
        """The reader got bytes (or gave up) and works on them."""
        self._scope = self._waiting_since = None


def content_length(request: Request) -> int | None:
    """The declared body length, or None for a chunked body. Raises BadRequest."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    parsed = parse_uint(value.strip())
    if parsed is None:
        raise BadRequest("Content-Length is malformed.")
    return parsed


async def body_chunks(
    request: Request, idle_timeout: float, watch: Watch | None = None
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive. Raises BodyCut if it stops short or stalls,
    BodyStopped if ``watch`` is stopped."""
    stream = request.stream()
    watch = watch or Watch()
    try:
        while True:
            if watch.stop_requested:
                raise BodyStopped
            scope = anyio.CancelScope()
            watch.waiting(scope)
            try:
                with anyio.fail_after(idle_timeout), scope:
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except (ClientDisconnect, TimeoutError) as e:
                raise BodyCut from e
            finally:
                watch.working()
            if scope.cancelled_caught:
                raise BodyStopped
            if chunk:
                yield chunk
    finally:
        await stream.aclose()


async def read_limited(request: Request, limit: int, idle_timeout: float) -> bytes:
    """The whole body if it is at most ``limit`` bytes. Raises TooLarge, BadRequest."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise TooLarge
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in body_chunks(request, idle_timeout):
            size += len(chunk)
            if size > limit:
                raise TooLarge
            parts.append(chunk)
    except BodyCut as e:
        raise BadRequest("The body was cut off; nothing was stored.") from e
    return b"".join(parts)
