"""``/v1/upload-token``: HQ rotates the upload token; devices fetch the signed notice.

``PUT`` (HQ token) takes ``{"token_sha256": <64 lowercase hex>, "notice": <base64>}``
and stores both (sync/relay/tokenkeeper.py); ``GET`` (either token) answers the
notice's bytes, or 404 before the first rotation. The relay reads only the
notice's serial and grace end: it cannot check HQ's signature, devices do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crypto.tokennotice import MAX_NOTICE_BYTES
from sync.relay.bodies import read_limited
from sync.relay.context import Relay
from sync.relay.errors import BadRequest, NotFound
from sync.relay.tokens import Role

OCTETS: Final = "application/octet-stream"
# The JSON around a notice at its largest, base64 included.
MAX_PUT_BYTES: Final = (MAX_NOTICE_BYTES + 2) // 3 * 4 + 256
_HASH: Final = re.compile(r"[0-9a-f]{64}")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SHAPE: Final = (
    'The body must be {"token_sha256": 64 lowercase hex digits, "notice": base64}; '
    "nothing was changed."
)


def _rotation(body: bytes) -> tuple[bytes, bytes]:
    """(new token's SHA-256, notice bytes) from a PUT body. Raises BadRequest."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadRequest(_SHAPE) from e
    if not isinstance(value, dict) or set(value) != {"token_sha256", "notice"}:
        raise BadRequest(_SHAPE)
    digest, notice = value["token_sha256"], value["notice"]
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise BadRequest(_SHAPE)
    if not isinstance(notice, str) or not _BASE64.fullmatch(notice):
        raise BadRequest(_SHAPE)
    try:
        raw = base64.b64decode(notice, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(_SHAPE) from e
    return bytes.fromhex(digest), raw


class TokenRoutes:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def routes(self) -> list[Route]:
        route = Route("/v1/upload-token", self.upload_token, methods=["GET", "PUT"])
        route.methods = {m for m in route.methods or set() if m != "HEAD"}  # none in the protocol
        return [route]

    async def upload_token(self, request: Request) -> Response:
        if request.method == "PUT":
            return await self._rotate(request)
        self.relay.require(request, Role.UPLOAD)
        notice = await run_in_threadpool(self.relay.tokens.notice)
        if notice is None:
            raise NotFound("HQ has not rotated the upload token on this relay.")
        return Response(notice, media_type=OCTETS)

    async def _rotate(self, request: Request) -> Response:
        self.relay.require(request, Role.HQ)
        timeout = self.relay.settings.body_timeout_seconds
        body = await read_limited(request, MAX_PUT_BYTES, timeout)
        new_hash, notice = _rotation(body)
        await run_in_threadpool(self.relay.tokens.rotate, new_hash, notice)
        return Response(status_code=204)
