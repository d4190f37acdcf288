"""A rough passphrase strength estimate, for feedback while typing.

Not a guarantee: it counts length and variety and catches the obvious (one
repeated character, a run like 12345, a very common password). The setup wizard
shows its verdict; the only hard rule is MIN_CHARS.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

MIN_CHARS = 8
_COMMON = frozenset(
    {
        "password", "passw0rd", "123456789", "12345678", "qwertyuiop", "iloveyou",
        "11111111", "00000000", "abc12345", "letmein1", "password1", "admin123",
        "welcome1", "qwerty123", "1q2w3e4r", "aleppo2016", "syria123",
    }
)  # fmt: skip
LABELS = ("too short", "weak", "fair", "good", "strong")


@dataclass(frozen=True, slots=True)
class Strength:
    score: int  # 0..4, an index into LABELS
    bits: float  # a crude entropy estimate
    advice: str

    @property
    def label(self) -> str:
        return LABELS[self.score]

    @property
    def acceptable(self) -> bool:
        return self.score >= 1


def _pool(text: str) -> int:
    pool = 0
    if any(c.islower() for c in text):
        pool += 26
    if any(c.isupper() for c in text):
        pool += 26
    if any(c.isdigit() for c in text):
        pool += 10
    if any(not c.isascii() for c in text):
        pool += 100  # Arabic and other scripts
    if any(c.isascii() and not c.isalnum() for c in text):
        pool += 33
    return max(pool, 1)


def _is_run(text: str) -> bool:
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    return len(steps) <= 1


def estimate(passphrase: str) -> Strength:
    """How hard ``passphrase`` looks to guess, with one line of advice."""
    text = passphrase.strip()
    if len(text) < MIN_CHARS:
        return Strength(0, 0.0, f"Use at least {MIN_CHARS} characters; several words are best.")
    if text.lower() in _COMMON or _is_run(text):
        return Strength(1, 10.0, "This is a very common choice; pick unrelated words instead.")
    distinct = len(set(text))
    bits = len(text) * math.log2(_pool(text)) * min(1.0, distinct / max(len(text) * 0.5, 1))
    words = len(text.split())
    if bits >= 80 or (words >= 4 and len(text) >= 20):
        return Strength(4, bits, "Strong. Write nothing down but the recovery code.")
    if bits >= 60:
        return Strength(3, bits, "Good. Another word would make it strong.")
    if bits >= 40:
        return Strength(2, bits, "Fair. Add a word or two for a laptop that may be seized.")
    return Strength(1, bits, "Weak. Use a longer phrase of several unrelated words.")
