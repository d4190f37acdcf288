"""Fingerprints a person can read aloud and compare out of band.

The construction is Signal's safety number for one party: SHA-512 iterated 5200
times over a version, the public key and a role identifier, then 30 bytes turned
into six groups of five decimal digits (each group is a 40-bit big-endian number
modulo 100000). The iterations make grinding for a look-alike key expensive; 30
digits leave about 2^99 work for a second key with the same number.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from crypto.keys import RootVerifyKey, _PublicKey, constant_time_equal

FINGERPRINT_VERSION = 0
ITERATIONS = 5200
GROUPS = 6
_NOT_DIGIT = re.compile(r"[\s\-]+")


def _digits(key: _PublicKey) -> str:
    identifier = key.role.encode("utf-8")
    # As Signal's NumericFingerprintGenerator: the loop starts from the raw
    # concatenation, not from its hash.
    digest = FINGERPRINT_VERSION.to_bytes(2, "big") + key.raw + identifier
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + key.raw).digest()
    groups = [int.from_bytes(digest[i * 5 : i * 5 + 5], "big") % 100_000 for i in range(GROUPS)]
    return "".join(f"{g:05d}" for g in groups)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A 30-digit fingerprint; ``str()`` shows it in groups of five."""

    digits: str

    def __str__(self) -> str:
        return " ".join(self.digits[i : i + 5] for i in range(0, len(self.digits), 5))

    def matches(self, typed: str) -> bool:
        """True if ``typed`` (spaces and dashes ignored) is this fingerprint.

        Constant time in the position of the first differing digit.
        """
        normalized = _NOT_DIGIT.sub("", typed)
        return constant_time_equal(normalized.encode("ascii", "replace"), self.digits.encode())


def fingerprint(key: _PublicKey) -> Fingerprint:
    """The fingerprint of any public key; the role is part of the input."""
    return Fingerprint(_digits(key))


def hq_fingerprint(root: RootVerifyKey) -> Fingerprint:
    """The HQ fingerprint: the fingerprint of the root key every device pins."""
    return fingerprint(root)
