"""The relay's two bearer tokens, kept only as SHA-256 hashes in ``tokens.json``.

The upload token is shared by every monitor of a deployment, so the relay
cannot tell monitors apart; the HQ token may also list, download and delete
blobs and publish receipts and statements. A presented token is hashed and
compared with every stored hash in constant time; every failure looks the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

from sync.relay.errors import RelaySetupError
from sync.relay.fsio import read_small

TOKENS_FILE: Final = "tokens.json"
TOKENS_VERSION: Final = 1
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
    """The stored hashes; lists so that a later rotation can keep an old token for a while."""

    upload: tuple[bytes, ...]
    hq: tuple[bytes, ...]

    def allows(self, authorization: str | None, role: Role) -> bool:
        """Whether the header's token may make a request that needs ``role``."""
        digest = hashlib.sha256(_presented(authorization).encode("ascii")).digest()
        # Every comparison runs, so the time taken says nothing about which failed.
        is_hq = False
        for stored in self.hq:
            is_hq |= hmac.compare_digest(digest, stored)
        is_upload = False
        for stored in self.upload:
            is_upload |= hmac.compare_digest(digest, stored)
        if role is Role.HQ:
            return is_hq
        return is_hq | is_upload

    def document(self) -> bytes:
        return (
            json.dumps(
                {
                    "version": TOKENS_VERSION,
                    "upload": [h.hex() for h in self.upload],
                    "hq": [h.hex() for h in self.hq],
                },
                indent=2,
            ).encode()
            + b"\n"
        )

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
    if not isinstance(document, dict) or document.get("version") != TOKENS_VERSION:
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
    if set(upload) & set(hq):
        raise _bad()  # one token in both roles would make every monitor HQ
    return TokenBook(upload, hq)
