"""Text helpers shared by the domain modules: shapes, storability, filter folding."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from fieldapp.domain.errors import Problems

# Codes of controlled vocabularies: lowercase ASCII words joined by single hyphens.
CODE_RE: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
CODE_MAX: Final = 64

# BCP 47, the subset fieldapp needs: language, optional script, optional region,
# each in its canonical case ("ar", "ar-IQ", "ku-Arab", "ckb-Arab-IQ", "es-419").
LANGUAGE_RE: Final = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")
LANGUAGE_HINT: Final = "use a language tag such as 'ar', 'en', 'ku' or 'ar-IQ'"

_ALLOWED_CONTROLS: Final = frozenset("\t\n")


def ascii_digits(text: str) -> str:
    """``text`` with every decimal digit made ASCII, for the UI to call before parsing.

    An Arabic keyboard types ``٢٠١٦-١٢`` (and ``٣٣٫٥`` with the Arabic decimal
    separator); the parsers accept only ASCII, so that each value has one text form.
    """
    return "".join(
        "." if c == "\u066b" else str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text
    )


def is_code(text: str) -> bool:
    """True if ``text`` has the shape of a vocabulary code (not whether it is known)."""
    return len(text) <= CODE_MAX and CODE_RE.fullmatch(text) is not None


def is_language_tag(text: str) -> bool:
    return LANGUAGE_RE.fullmatch(text) is not None


def is_utf8_safe(text: str) -> bool:
    """False if ``text`` holds a lone surrogate, which no UTF-8 file can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_control(text: str) -> bool:
    """True if ``text`` holds a control character other than tab and newline."""
    return any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in text)


def text_problem(text: str, *, max_chars: int, required: bool, single_line: bool) -> str | None:
    """What is wrong with a short free-text field, or None. Never quotes the text."""
    if not is_utf8_safe(text):
        return "contains a character that cannot be stored (a lone surrogate)"
    if required and not text.strip():
        return "must not be empty"
    if len(text) > max_chars:
        return f"is too long (at most {max_chars} characters)"
    if has_control(text):
        return "must not contain control characters"
    if single_line and "\n" in text:
        return "must be a single line"
    return None


def fold(text: str) -> str:
    """``text`` for type-to-filter matching: case-folded, without marks or tatweel.

    Matching only: stored text is never normalised. Dropping combining marks after
    NFD makes Arabic typed without harakat or hamza seats (``اعتقال``) find
    ``الإعتقال``, and ``detencion`` find ``detención``.
    """
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn" and c != "\u0640")


def field_text(problems: Problems, name: str, value: object, *, required: bool) -> None:
    """Add a problem unless ``value`` is storable text (non-blank if ``required``)."""
    if not isinstance(value, str):
        problems.add(name, "must be text")
    elif not is_utf8_safe(value):
        problems.add(name, "contains a character that cannot be stored (a lone surrogate)")
    elif required and not value.strip():
        problems.add(name, "must not be empty")
