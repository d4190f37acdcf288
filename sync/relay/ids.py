"""What may appear in a path or query: checked before any file is touched."""

from __future__ import annotations

import re
from typing import Final

from sync.relay.errors import BadRequest, NotFound

_BLOB_ID: Final = re.compile(r"[0-9a-f]{64}")
_UINT: Final = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_INT: Final = 2**63 - 1


def is_blob_id(text: str) -> bool:
    return _BLOB_ID.fullmatch(text) is not None


def blob_id(text: str) -> str:
    """``text`` if it is a blob id (64 lowercase hex), else NotFound: never a file lookup."""
    if not is_blob_id(text):
        raise NotFound
    return text


def parse_uint(text: str) -> int | None:
    """A decimal integer 0..2^63-1 written without sign, spaces or leading zeros."""
    if _UINT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= MAX_INT else None


def statement_version(text: str) -> int:
    """A statement version from a path (1..2^63-1), else NotFound."""
    value = parse_uint(text)
    if value is None or value < 1:
        raise NotFound
    return value


def query_uint(value: str | None, *, default: int, name: str) -> int:
    """A non-negative integer query parameter, else BadRequest."""
    if value is None:
        return default
    parsed = parse_uint(value)
    if parsed is None:
        raise BadRequest(f"{name} must be a whole number, 0 or more.")
    return parsed
