"""The relay's settings: limits and retention, with the protocol's defaults.

A data folder keeps them in ``relay.json`` (written by ``relay init``) so an
operator can change a limit or the retention without code::

    {"format": "fieldapp-relay", "version": 1,
     "settings": {"blob_max_age_days": 60, "max_pending_uploads": 256, ...}}

Keys left out take the defaults below; an unknown key stops the relay from
starting (a typo must not silently keep the default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from sync.relay.errors import RelaySetupError
from sync.relay.fsio import read_small

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

FORMAT: Final = "fieldapp-relay"
VERSION: Final = 1
SETTINGS_FILE: Final = "relay.json"
_DAY_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Everything ``create_app`` needs: the data folder, limits and retention."""

    data_dir: Path
    max_blob_bytes: int = 4 * GIB  # largest Upload-Length
    max_patch_bytes: int = 16 * MIB  # largest PATCH body
    max_pending_uploads: int = 256
    max_receipts_per_post: int = 10_000
    max_receipts_per_get: int = 10_000
    max_statement_bytes: int = 1024
    max_list_limit: int = 1000  # GET /v1/blobs?limit=
    max_headers: int = 64
    max_header_bytes: int = 8 * KIB  # each header's value
    max_header_block_bytes: int = 64 * KIB  # all of them (the HTTP parser's limit)
    min_free_bytes: int = 64 * MIB  # kept free on the disk when accepting an upload
    blob_max_age: timedelta = timedelta(days=60)  # a blob HQ never deleted
    upload_expiry: timedelta = timedelta(days=7)  # an upload untouched that long
    sweep_interval: timedelta = timedelta(hours=1)
    body_timeout_seconds: float = 60.0  # a body that sends nothing for that long is cut
    # A PATCH that has received nothing for that long is stopped when another request
    # for its upload comes (it keeps what it received), instead of holding the upload
    # until body_timeout_seconds: the usual trace of a connection that died silently.
    takeover_seconds: float = 2.0
    # The relay's clock (Unix seconds), by which upload tokens expire. Not a relay.json
    # key: only tests built in-process hand in another.
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)


_MAX_COUNT: Final = 2**53  # far above any sane limit, and exact in a JSON number
_MAX_DAYS: Final = 36_500.0
_MAX_SECONDS: Final = 86_400.0 * 365


def _whole(value: float) -> int:
    if not isinstance(value, int):
        raise TypeError("a whole number is needed")
    if value > _MAX_COUNT:
        raise ValueError("too large")
    return value


def _days(value: float) -> timedelta:
    if value > _MAX_DAYS:
        raise ValueError("too large")
    return timedelta(seconds=float(value) * _DAY_SECONDS)


def _seconds(value: float) -> timedelta:
    if value > _MAX_SECONDS:
        raise ValueError("too large")
    return timedelta(seconds=float(value))


def _plain_seconds(value: float) -> float:
    return _seconds(value).total_seconds()


def _timeout(value: float) -> float:
    if value <= 0:
        raise ValueError("a timeout of 0 would cut every body")
    return _seconds(value).total_seconds()


# relay.json key -> (field name, reader of the JSON number, writer back to JSON)
_KEYS: Final[dict[str, tuple[str, Callable[[float], Any], Callable[[Any], float]]]] = {
    "max_blob_bytes": ("max_blob_bytes", _whole, int),
    "max_patch_bytes": ("max_patch_bytes", _whole, int),
    "max_pending_uploads": ("max_pending_uploads", _whole, int),
    "max_receipts_per_post": ("max_receipts_per_post", _whole, int),
    "max_receipts_per_get": ("max_receipts_per_get", _whole, int),
    "max_statement_bytes": ("max_statement_bytes", _whole, int),
    "max_list_limit": ("max_list_limit", _whole, int),
    "max_headers": ("max_headers", _whole, int),
    "max_header_bytes": ("max_header_bytes", _whole, int),
    "max_header_block_bytes": ("max_header_block_bytes", _whole, int),
    "min_free_bytes": ("min_free_bytes", _whole, int),
    "blob_max_age_days": ("blob_max_age", _days, lambda t: t.total_seconds() / _DAY_SECONDS),
    "upload_expiry_days": ("upload_expiry", _days, lambda t: t.total_seconds() / _DAY_SECONDS),
    "sweep_interval_seconds": ("sweep_interval", _seconds, lambda t: t.total_seconds()),
    "body_timeout_seconds": ("body_timeout_seconds", _timeout, float),
    "takeover_seconds": ("takeover_seconds", _plain_seconds, float),
}


def settings_document(settings: RelaySettings) -> dict[str, object]:
    """The ``relay.json`` content for ``settings`` (every key, so operators see them all)."""
    values = {key: back(getattr(settings, name)) for key, (name, _, back) in _KEYS.items()}
    return {"format": FORMAT, "version": VERSION, "settings": values}


def _bad(detail: str) -> RelaySetupError:
    return RelaySetupError(
        f"relay.json is not valid ({detail}); fix it or restore it from a backup."
    )


def parse_settings(data_dir: Path, raw: bytes) -> RelaySettings:
    """The settings in ``raw`` (relay.json). Raises RelaySetupError."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad("not JSON") from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad("not a fieldapp relay settings file")
    if document.get("version") != VERSION:
        raise _bad("written by another version of fieldapp")
    values = document.get("settings", {})
    if not isinstance(values, dict):
        raise _bad('"settings" must be an object')
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KEYS:
            raise _bad(f"unknown setting {key[:40]!r}")
        name, convert, _ = _KEYS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise _bad(f"{key} must be a number, 0 or more")
        try:
            changes[name] = convert(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise _bad(f"{key} is out of range or not a whole number") from e
    settings = replace(RelaySettings(data_dir=data_dir), **changes)
    for f in fields(RelaySettings):
        value = getattr(settings, f.name)
        if f.name.startswith("max_") and value < 1:
            raise _bad(f"{f.name} must be at least 1")
    return settings


def load_settings(data_dir: Path) -> RelaySettings:
    """The settings of the relay data folder ``data_dir``. Raises RelaySetupError."""
    try:
        raw = read_small(data_dir / SETTINGS_FILE, 64 * KIB)
    except FileNotFoundError as e:
        raise RelaySetupError(
            "That folder is not a relay data folder; create one with `fieldapp relay init`."
        ) from e
    except OSError as e:
        raise RelaySetupError("The relay data folder cannot be read; check its permissions.") from e
    return parse_settings(data_dir, raw)
