"""Reading request bodies in chunks, within limits, never whole into memory unasked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect, Request

from sync.relay.errors import BadRequest, TooLarge
from sync.relay.ids import parse_uint


class BodyCut(Exception):
    """The client went away, or stopped sending, before the body was complete."""


def content_length(request: Request) -> int | None:
    """The declared body length, or None for a chunked body. Raises BadRequest."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    parsed = parse_uint(value.strip())
    if parsed is None:
        raise BadRequest("Content-Length is malformed.")
    return parsed


async def body_chunks(request: Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive. Raises BodyCut if it stops short or stalls."""
    stream = request.stream()
    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except (ClientDisconnect, TimeoutError) as e:
                raise BodyCut from e
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
