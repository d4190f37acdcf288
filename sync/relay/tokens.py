"""The relay's two bearer tokens, kept only as SHA-256 hashes in ``tokens.json``.

The upload token is shared by every monitor of a deployment, so the relay
cannot tell monitors apart; the HQ token may also list, download and delete
blobs and publish receipts and statements. A presented token is hashed and
compared with every stored hash in constant time; every failure looks the same.

An upload hash may carry an expiry (``upload_valid_until``, Unix seconds): HQ's
``PUT /v1/upload-token`` adds the new token and gives the older ones the end of
their grace period. A file without expiries is version 1, as ``relay init``
writes it; one with expiries is version 2, so an older relay refuses to start
on it rather than keep accepting a token that should have expired.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

from sync.relay.errors import RelaySetupError
from sync.relay.fsio import read_small

TOKENS_FILE: Final = "tokens.json"
TOKENS_VERSION: Final = 1
TOKENS_VERSION_EXPIRIES: Final = 2  # some upload hash has an expiry
MAX_UPLOAD_TOKENS: Final = 16  # the current one and those still in their grace period
TOKEN_BYTES: Final = 32  # secrets.token_urlsafe(32): 43 characters of base64url
_MAX_TOKEN_CHARS: Final = 256
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")
_HASH = re.compile(r"[0-9a-f]{64}")


class Role(Enum):
    """What a request needs: UPLOAD accepts either token, HQ only the HQ token."""

    UPLOAD = "upload"
    HQ = "hq"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The lowercase hex SHA-256 that ``tokens.json`` keeps for ``token``."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _presented(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer`` header, or "" if there is none."""
    if authorization is None or len(authorization) > _MAX_TOKEN_CHARS + 7:
        return ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        return ""
    return token


@dataclass(frozen=True, slots=True)
class TokenBook:
    """The stored hashes; an upload hash may expire (``upload_until``, None: never)."""

    upload: tuple[bytes, ...]
    hq: tuple[bytes, ...]
    upload_until: tuple[int | None, ...] = ()  # one per upload hash; () for none at all

    def __post_init__(self) -> None:
        if self.upload_until and len(self.upload_until) != len(self.upload):
            raise ValueError("one expiry (or None) per upload hash")

    def _until(self) -> tuple[int | None, ...]:
        return self.upload_until or (None,) * len(self.upload)

    def allows(self, authorization: str | None, role: Role, now: float | None = None) -> bool:
        """Whether the header's token may make a request that needs ``role`` at ``now``.

        An upload hash whose expiry is at or before ``now`` (the relay's clock) no
        longer counts; it is still compared, so timing says nothing either way.
        """
        moment = time.time() if now is None else now
        digest = hashlib.sha256(_presented(authorization).encode("ascii")).digest()
        # Every comparison runs, so the time taken says nothing about which failed.
        is_hq = False
        for stored in self.hq:
            is_hq |= hmac.compare_digest(digest, stored)
        is_upload = False
        for stored, until in zip(self.upload, self._until(), strict=True):
            live = until is None or moment < until
            is_upload |= hmac.compare_digest(digest, stored) & live
        if role is Role.HQ:
            return is_hq
        return is_hq | is_upload

    def rotated(self, new_hash: bytes, valid_until: int, now: float) -> TokenBook:
        """The book after HQ made ``new_hash`` the upload token; the others end at
        ``valid_until`` (or earlier, if they already did). Expired hashes are dropped.

        Raises ValueError if the new hash is HQ's or too many tokens would stay valid.
        """
        if len(new_hash) != 32 or any(hmac.compare_digest(new_hash, h) for h in self.hq):
            raise ValueError("the upload token must not be HQ's")
        kept: list[tuple[bytes, int | None]] = []
        for stored, until in zip(self.upload, self._until(), strict=True):
            if stored == new_hash or (until is not None and until <= now):
                continue
            kept.append((stored, valid_until if until is None else min(until, valid_until)))
        kept.append((new_hash, None))
        if len(kept) > MAX_UPLOAD_TOKENS:
            raise ValueError("too many upload tokens still in their grace period")
        return TokenBook(tuple(h for h, _ in kept), self.hq, tuple(u for _, u in kept))

    def document(self) -> bytes:
        value: dict[str, object] = {
            "version": TOKENS_VERSION,
            "upload": [h.hex() for h in self.upload],
            "hq": [h.hex() for h in self.hq],
        }
        if any(u is not None for u in self._until()):
            value["version"] = TOKENS_VERSION_EXPIRIES
            value["upload_valid_until"] = {
                h.hex(): u for h, u in zip(self.upload, self._until(), strict=True) if u is not None
            }
        return json.dumps(value, indent=2).encode() + b"\n"

    @classmethod
    def from_tokens(cls, upload: str, hq: str) -> TokenBook:
        return cls((bytes.fromhex(token_hash(upload)),), (bytes.fromhex(token_hash(hq)),))


def _bad() -> RelaySetupError:
    return RelaySetupError(
        "tokens.json is not valid; restore it from a backup or create a new relay folder."
    )


def load_tokens(data_dir: Path) -> TokenBook:
    """The hashes stored in ``data_dir/tokens.json``. Raises RelaySetupError."""
    try:
        document = json.loads(read_small(data_dir / TOKENS_FILE, 64 * 1024))
    except FileNotFoundError as e:
        raise RelaySetupError(
            "The relay data folder has no tokens.json; create one with `fieldapp relay init`."
        ) from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise _bad() from e
    if (
        not isinstance(document, dict)
        or type(document.get("version")) is not int  # not True, which equals 1
        or document["version"] not in (TOKENS_VERSION, TOKENS_VERSION_EXPIRIES)
    ):
        raise _bad()
    roles: list[tuple[bytes, ...]] = []
    for role in (Role.UPLOAD, Role.HQ):
        hashes = document.get(role.value)
        if (
            not isinstance(hashes, list)
            or not hashes
            or not all(isinstance(h, str) and _HASH.fullmatch(h) for h in hashes)
        ):
            raise _bad()
        roles.append(tuple(bytes.fromhex(h) for h in hashes))
    upload, hq = roles
    if set(upload) & set(hq) or len(set(upload)) != len(upload):
        raise _bad()  # one token in both roles would make every monitor HQ
    return TokenBook(upload, hq, _expiries(document, upload))


def _expiries(document: dict[str, object], upload: tuple[bytes, ...]) -> tuple[int | None, ...]:
    if document["version"] == TOKENS_VERSION:
        if "upload_valid_until" in document:
            raise _bad()
        return ()
    found = document.get("upload_valid_until")
    if not isinstance(found, dict) or not found or len(upload) > MAX_UPLOAD_TOKENS:
        raise _bad()
    known = {h.hex() for h in upload}
    for key, value in found.items():
        if key not in known or type(value) is not int or not 0 <= value < 2**63:
            raise _bad()
    return tuple(found.get(h.hex()) for h in upload)
