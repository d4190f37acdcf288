"""The passphrase strength estimate the setup wizard shows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldapp.domain.passphrase import LABELS, MIN_CHARS, estimate


@pytest.mark.parametrize(
    ("passphrase", "label"),
    [
        ("abc", "too short"),
        ("       x", "too short"),
        ("password", "weak"),
        ("12345678", "weak"),
        ("aaaaaaaaaaaa", "weak"),
        ("correct horse battery staple", "strong"),
        ("كلمة سر طويلة جدا", "strong"),
    ],
)
def test_known_passphrases_get_the_expected_verdict(passphrase: str, label: str) -> None:
    assert estimate(passphrase).label == label


def test_only_too_short_is_unacceptable() -> None:
    assert not estimate("x" * (MIN_CHARS - 1)).acceptable
    assert estimate("plum river lantern").acceptable


@given(st.text(max_size=60))
def test_every_input_gets_a_score_and_one_line_advice(text: str) -> None:
    s = estimate(text)
    assert 0 <= s.score < len(LABELS)
    assert "\n" not in s.advice
