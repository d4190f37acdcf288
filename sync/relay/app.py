"""``create_app(settings)``: the relay's ASGI application (Starlette).

The routes are in ``uploadroutes.py`` and ``routes.py``; this module adds what
every request shares: one JSON shape for every error, header limits, response
headers, the startup check and the retention sweep. Nothing here logs a
request: no address, user agent, path, id or header ever reaches a log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.relay.context import TUS_VERSION, Relay
from sync.relay.errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RelaySetupError,
)
from sync.relay.recovery import check_store, lock_data_dir
from sync.relay.routes import OtherRoutes
from sync.relay.settings import RelaySettings
from sync.relay.tokenroutes import TokenRoutes
from sync.relay.uploadroutes import UploadRoutes

log = logging.getLogger("fieldapp.relay")

_COMMON_HEADERS: Final = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
_TUS_HEADER: Final = (b"tus-resumable", TUS_VERSION.encode())


def error_response(error: ApiError) -> Response:
    body = {"error": error.code, "message": error.message}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    # Starlette routes only ApiError here; anything else is a bug, answered as one.
    return error_response(exc if isinstance(exc, ApiError) else InternalError())


async def _http_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # Starlette routes only these here
        return error_response(InternalError())
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(headers=exc.headers))
    if exc.status_code == 404:
        return error_response(NotFound())
    return error_response(BadRequest())


class RelayGuard:
    """Outermost layer of our own: header limits, common headers, no unlogged crash.

    An unexpected exception becomes one log line naming its type and where it
    was raised (never its message, which may carry a path or an id) and a 500
    with the usual JSON error.
    """

    def __init__(self, app: ASGIApp, settings: RelaySettings) -> None:
        self.app = app
        self.settings = settings

    def _headers_ok(self, scope: Scope) -> bool:
        headers = scope["headers"]
        limit = self.settings.max_header_bytes
        total = sum(len(name) + len(value) for name, value in headers)
        return (
            len(headers) <= self.settings.max_headers
            and total <= self.settings.max_header_block_bytes
            and all(len(name) <= limit and len(value) <= limit for name, value in headers)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_COMMON_HEADERS)
        if scope["path"].startswith("/v1/uploads"):
            extra.append(_TUS_HEADER)
        names = {name for name, _ in extra}
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        if not self._headers_ok(scope):
            refused = BadRequest("Too many request headers, or one too long.")
            await error_response(refused)(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as e:  # noqa: BLE001 -- the one place that turns a bug into a 500
            _log_bug(e)
            if not started:
                await error_response(InternalError())(scope, receive, send_with_headers)


def _log_bug(error: BaseException) -> None:
    frame = error.__traceback__
    where = "?"
    while frame is not None:
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"
        frame = frame.tb_next
    log.error("internal error: %s at %s", type(error).__name__, where)


async def _sweep_forever(relay: Relay) -> None:
    interval = max(1.0, relay.settings.sweep_interval.total_seconds())
    while True:
        try:
            blobs, uploads = await run_in_threadpool(relay.blobs.sweep, time.time())
        except Exception as e:  # noqa: BLE001 -- a failed sweep must not stop the relay
            _log_bug(e)
        else:
            if blobs or uploads:
                log.info("retention: removed %d old blob(s), %d stale upload(s)", blobs, uploads)
        await anyio.sleep(interval)


def _lifespan(relay: Relay) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            lock = await run_in_threadpool(lock_data_dir, relay.settings.data_dir)
            report = await run_in_threadpool(check_store, relay.settings.data_dir)
            await run_in_threadpool(relay.blobs.load)
            await run_in_threadpool(relay.receipts.load)
        except RelaySetupError as e:
            log.error("%s", e.message)  # noqa: TRY400 -- the message is the whole story
            raise
        log.info(
            "store checked: %d upload(s) to resume; %d finished, %d removed, %d temp(s) removed",
            report.uploads_resumable,
            report.uploads_finished,
            report.uploads_removed,
            report.scratch_removed,
        )
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_sweep_forever, relay)
                yield
                tasks.cancel_scope.cancel()
        finally:
            os.close(lock)

    return lifespan


def create_app(settings: RelaySettings) -> Starlette:
    """The relay for the data folder ``settings.data_dir``. Raises RelaySetupError.

    The store is checked and repaired (``recovery.check_store``) at startup,
    before the first request; a retention sweep runs then and every
    ``settings.sweep_interval``.
    """
    relay = Relay.open(settings)
    return Starlette(
        routes=[
            *UploadRoutes(relay).routes(),
            *OtherRoutes(relay).routes(),
            *TokenRoutes(relay).routes(),
        ],
        middleware=[Middleware(RelayGuard, settings=settings)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=_lifespan(relay),
    )
