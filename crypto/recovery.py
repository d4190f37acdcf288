"""Recovery codes a person can write on paper and type back in a hurry.

A code is 120 random bits as 24 Crockford base32 characters plus one check
character, shown as five groups of five: ``7K3QD-0M9XW-...``. The alphabet has no
I, L, O or U, so what is typed back is forgiving: lower case, spaces and dashes are
ignored, O reads as 0 and I or L as 1. The check character is the top 5 bits of
BLAKE2b (personalised ``fa-recovery-v1``) over the 24 canonical characters: it
catches a mistyped check character always and any other single typo 31 times in
32, before any Argon2id work, with a message that says it is a typo.

The secret that goes into Argon2id is the 15 decoded bytes, so every way of typing
the same code gives the same key.
"""

from __future__ import annotations

import hashlib

import nacl.utils

from crypto.errors import WrongSecret

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SECRET_BYTES = 15  # 120 bits
DATA_CHARS = 24  # 120 / 5
CODE_CHARS = DATA_CHARS + 1
GROUP = 5
_PERSON = b"fa-recovery-v1"
# Anything longer than this is not a code someone typed; refuse it before looking.
_MAX_TYPED = 200

_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1", " ": None, "-": None, "\t": None})

TYPO_MESSAGE = "That recovery code has a typo: check each group and try again."
NOT_A_CODE_MESSAGE = (
    "That is not a recovery code: it has 25 letters and digits in five groups of five."
)


def _check_char(data: str) -> str:
    digest = hashlib.blake2b(data.encode("ascii"), digest_size=1, person=_PERSON).digest()
    return ALPHABET[digest[0] >> 3]


def _encode(secret: bytes) -> str:
    number = int.from_bytes(secret, "big")
    shifts = range(5 * (DATA_CHARS - 1), -1, -5)
    return "".join(ALPHABET[(number >> shift) & 31] for shift in shifts)


def _group(code: str) -> str:
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def encode_recovery_code(secret: bytes) -> str:
    """The display form of 15 secret bytes (for test vectors; use ``generate_recovery_code``).

    Raises:
        ValueError: ``secret`` is not 15 bytes (a programming error).
    """
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ValueError(f"A recovery secret is {SECRET_BYTES} bytes.")
    data = _encode(secret)
    return _group(data + _check_char(data))


def generate_recovery_code() -> str:
    """A fresh random recovery code, e.g. ``"7K3QD-0M9XW-RT2BN-F8HJC-5VPA4"``."""
    return encode_recovery_code(nacl.utils.random(SECRET_BYTES))


def normalize_recovery_code(typed: str) -> bytes:
    """The 15 secret bytes of a typed recovery code, however it was typed.

    Raises:
        WrongSecret: not a recovery code (wrong length or characters), or its
            check character does not match (a typo). The message says which.
    """
    if not isinstance(typed, str) or len(typed) > _MAX_TYPED or not typed.isascii():
        raise WrongSecret(NOT_A_CODE_MESSAGE)
    canonical = typed.upper().translate(_ALIASES)
    if len(canonical) != CODE_CHARS or any(c not in _VALUE for c in canonical):
        raise WrongSecret(NOT_A_CODE_MESSAGE)
    data, check = canonical[:DATA_CHARS], canonical[DATA_CHARS]
    # A plain comparison: its timing can say only whether the check character was
    # typed right, which the error message says anyway.
    if _check_char(data) != check:
        raise WrongSecret(TYPO_MESSAGE)
    number = 0
    for c in data:
        number = (number << 5) | _VALUE[c]
    return number.to_bytes(SECRET_BYTES, "big")


def format_recovery_code(typed: str) -> str:
    """The canonical display form of a valid typed code (upper case, grouped).

    Raises:
        WrongSecret: as ``normalize_recovery_code``.
    """
    return encode_recovery_code(normalize_recovery_code(typed))
