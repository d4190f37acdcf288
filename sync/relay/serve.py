"""``fieldapp relay serve``: the relay under uvicorn, in the foreground.

Nothing about a client reaches a log: uvicorn's access log is off, its
``Server`` header too, proxy headers are ignored, and the only loggers that
write (ours, uvicorn's warnings and errors, asyncio's) go through a formatter
that prints an exception's type and place but never its message. SIGTERM and
SIGINT stop the server cleanly (requests in flight finish first).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Final

from sync.relay.app import create_app
from sync.relay.errors import RelaySetupError
from sync.relay.settings import load_settings
from sync.relay.tls import TlsFiles

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("fieldapp.relay")

GRACEFUL_SHUTDOWN_SECONDS: Final = 10
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOT_STARTED: Final = (
    "The relay did not start (see the lines above): the port may be in use, "
    "or another relay serves this data folder."
)


class SafeFormatter(logging.Formatter):
    """Exceptions as their type and innermost place only: messages may carry request data."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 -- logging's name
        kind, _, trace = ei
        where = "?"
        while trace is not None:
            where = f"{trace.tb_frame.f_code.co_filename}:{trace.tb_lineno}"
            trace = trace.tb_next
        return f"  ({getattr(kind, '__name__', 'exception')} at {where})"

    def formatStack(self, stack_info: str) -> str:  # noqa: N802, ARG002 -- logging's API
        return ""


def configure_logging(stream: IO[str] | None = None) -> None:
    """Send our, uvicorn's and asyncio's warnings to ``stream`` (stderr); no access log."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(SafeFormatter(_FORMAT))
    writers = (
        ("fieldapp.relay", logging.INFO),
        ("uvicorn", logging.WARNING),
        ("asyncio", logging.WARNING),
    )
    for name, level in writers:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    for name in ("uvicorn.error", "uvicorn.asgi"):  # through "uvicorn"'s handler
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.setLevel(logging.WARNING)
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True


def _ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or 1.3 with the relay's certificate. Raises OSError, ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _ssl_factory(
    files: TlsFiles,
) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(_: uvicorn.Config, __: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return _ssl_context(files)

    return factory


def _loop_error(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # The default handler prints the context, which can name a transport and its peer.
    error = context.get("exception")
    log.warning("event loop: %s", type(error).__name__ if error else "error without exception")


async def _serve(server: uvicorn.Server) -> None:
    asyncio.get_running_loop().set_exception_handler(_loop_error)
    await server.serve()


def _ignore(_: int, __: FrameType | None) -> None:
    """uvicorn re-raises the signal that stopped it; the stop is already done."""


def build_config(data_dir: Path, *, host: str, port: int, tls: bool) -> uvicorn.Config:
    """The uvicorn configuration for the relay in ``data_dir``. Raises RelaySetupError."""
    # Imported here: uvicorn imports click, which sync/ must not load on import
    # (tests/test_boundaries.py); only the process that serves pays for it.
    import uvicorn  # noqa: PLC0415

    settings = load_settings(data_dir)
    app = create_app(settings)
    factory = None
    if tls:
        files = TlsFiles.in_folder(data_dir / "tls")
        if not (files.cert.is_file() and files.key.is_file()):
            raise RelaySetupError(
                "This relay has no TLS certificate; create the folder with `relay init --tls`."
            )
        try:
            _ssl_context(files)  # fail now, with one clear line, rather than inside uvicorn
        except (OSError, ssl.SSLError) as e:
            raise RelaySetupError(
                "The relay's TLS certificate or key cannot be read; check the tls/ folder."
            ) from e
        factory = _ssl_factory(files)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        h11_max_incomplete_event_size=settings.max_header_block_bytes,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_context_factory=factory,
    )


def serve(data_dir: Path, *, host: str, port: int, tls: bool) -> None:
    """Run the relay until SIGTERM or SIGINT. Raises RelaySetupError."""
    import uvicorn  # noqa: PLC0415 -- as in build_config

    configure_logging()
    config = build_config(data_dir, host=host, port=port, tls=tls)
    server = uvicorn.Server(config)
    log.info("starting on port %d%s", port, " with TLS" if tls else " without TLS")
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_serve(server))
    except SystemExit as e:  # uvicorn's way to say it could not start (logged above)
        raise RelaySetupError(_NOT_STARTED) from e
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise RelaySetupError(_NOT_STARTED)
    log.info("stopped")
