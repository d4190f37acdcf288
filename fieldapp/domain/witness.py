"""Pseudonymous witness codes such as ``W-7KQ3-M2XA``, shown wherever a witness is meant.

Eight Crockford base32 symbols carry 40 random bits: about a trillion codes, so a
device that draws a few thousand in its life is very unlikely to draw one twice
(the store still checks). Crockford's alphabet has no I, L, O or U, so a code read
aloud or copied from paper survives: parsing upper-cases it and reads O as 0 and
I or L as 1. The code carries nothing about the witness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from fieldapp.domain.errors import ValidationError

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WITNESS_CODE_BITS: Final = 40
_RANDOM_BYTES: Final = WITNESS_CODE_BITS // 8
_CANONICAL_RE: Final = re.compile(r"W-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
_LOOSE_RE: Final = re.compile(r"W[- ]?([0-9A-Z]{4})[- ]?([0-9A-Z]{4})")
_MISREAD: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})
_HINT: Final = "is not a witness code; codes look like W-7KQ3-M2XA"


def new_witness_code(random_bytes: Callable[[int], bytes]) -> str:
    """A fresh code from ``random_bytes`` (pass ``os.urandom``; tests pass a fixed source)."""
    raw = random_bytes(_RANDOM_BYTES)
    if len(raw) != _RANDOM_BYTES:
        raise ValueError("random_bytes returned the wrong number of bytes")
    value = int.from_bytes(raw, "big")
    symbols = "".join(ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))
    return f"W-{symbols[:4]}-{symbols[4:]}"


def is_witness_code(text: object) -> bool:
    """True if ``text`` is a witness code in canonical form."""
    return isinstance(text, str) and _CANONICAL_RE.fullmatch(text) is not None


def parse_witness_code(text: str, field: str = "witness_code") -> str:
    """The canonical form of a typed code: ``w 7kq3 m2xa`` and ``W-7KQ3-M2XA`` both give the latter.

    Raises ValidationError naming ``field`` for anything that is not a code.
    """
    if not isinstance(text, str) or len(text) > 32 or not text.isascii():
        raise ValidationError.single(field, _HINT)
    match = _LOOSE_RE.fullmatch(text.strip().upper())
    if match is None:
        raise ValidationError.single(field, _HINT)
    code = "W-{}-{}".format(*(group.translate(_MISREAD) for group in match.groups()))
    if not is_witness_code(code):
        raise ValidationError.single(field, _HINT)
    return code
