"""What the relay refuses, as HTTP answers, and what stops it from starting.

Every ``ApiError`` becomes ``{"error": code, "message": message}`` with its
status (docs/relay-protocol.md lists the codes). Messages are fixed sentences
written here: they never echo a token, a header value, an id or a body.
"""

from __future__ import annotations

from collections.abc import Mapping

from fieldapp.errors import ExitCode, FieldappError


class RelaySetupError(FieldappError):
    """The data folder cannot be created, read or served (a one-line, user-safe message)."""

    exit_code = ExitCode.IO


class ApiError(Exception):
    """A request the relay refuses, with the status and error code the client sees."""

    status = 400
    code = "bad-request"
    default_message = "The request is malformed."

    def __init__(self, message: str | None = None, headers: Mapping[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    default_message = "A valid token is needed for this request."

    def __init__(self) -> None:
        # One answer for every failure: missing, malformed, wrong or wrong role.
        super().__init__(None, {"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status = 404
    code = "not-found"
    default_message = "Nothing is stored under that name."


class MethodNotAllowed(ApiError):
    status = 405
    code = "method-not-allowed"
    default_message = "This path does not take that method."


class Conflict(ApiError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with what is stored."


class TooLarge(ApiError):
    status = 413
    code = "too-large"
    default_message = "The request is larger than this relay accepts."


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported-media-type"
    default_message = "PATCH bodies must be application/offset+octet-stream."


class RangeNotSatisfiable(ApiError):
    status = 416
    code = "range-not-satisfiable"
    default_message = "The range starts at or after the end of the blob."


class HashMismatch(ApiError):
    status = 422
    code = "hash-mismatch"
    default_message = "The bytes do not hash to the upload's id; the upload was discarded."


class RelayFull(ApiError):
    status = 507
    code = "relay-full"
    default_message = "The relay cannot take more uploads now; try again later."


class InternalError(ApiError):
    status = 500
    code = "internal"
    default_message = "The relay failed unexpectedly; nothing was changed by this request."
