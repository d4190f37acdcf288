"""The controlled vocabulary of violation types, read from ``data/violations.json``.

A testimony names its violations by code (``arbitrary-detention``), never by label,
so labels can be corrected and translated without touching signed records. A code
is never removed and never reused for another meaning: a term that should no longer
be offered is marked ``deprecated`` and stays resolvable for old records. The file
format is described in docs/domain.md; ``Vocabulary.from_json`` refuses anything
that does not follow it exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Final

from fieldapp.domain._text import fold, has_control, is_code, is_language_tag, is_utf8_safe
from fieldapp.domain.errors import UnknownTerm, VocabularyError

FORMAT: Final = "fieldapp-vocabulary"
VERSION: Final = 1
TRANSLATION_STATUSES: Final = frozenset({"source", "reviewed", "draft"})
_MAX_FILE_BYTES: Final = 1 << 20
_TOP_KEYS: Final = frozenset({"format", "version", "translation_status", "terms"})
_TERM_REQUIRED: Final = frozenset({"code", "labels", "source"})
_TERM_OPTIONAL: Final = frozenset({"definition", "deprecated"})
_TEXT_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class Term:
    """One violation type. ``labels`` holds (language tag, label) pairs, English included."""

    code: str
    label: str
    source: str
    definition: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    deprecated: bool = False

    def label_in(self, lang: str) -> str:
        """The label in ``lang``, or the English one if there is no translation."""
        return dict(self.labels).get(lang, self.label)


class Vocabulary:
    """An immutable, ordered set of terms, looked up by code."""

    __slots__ = ("_by_code", "_status", "_terms")
    _terms: tuple[Term, ...]
    _by_code: Mapping[str, Term]
    _status: Mapping[str, str]

    def __init__(self, terms: Iterable[Term], translation_status: Mapping[str, str]) -> None:
        ordered = tuple(terms)
        by_code = MappingProxyType({t.code: t for t in ordered})
        if len(by_code) != len(ordered):
            raise VocabularyError("a code appears twice")
        object.__setattr__(self, "_terms", ordered)
        object.__setattr__(self, "_by_code", by_code)
        object.__setattr__(self, "_status", MappingProxyType(dict(translation_status)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Vocabulary is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Vocabulary is immutable")

    @classmethod
    def load_default(cls) -> Vocabulary:
        """The vocabulary shipped with fieldapp (read once, then shared: it is immutable)."""
        return _default()

    @classmethod
    def from_json(cls, data: bytes) -> Vocabulary:
        """Parse a vocabulary file; raise VocabularyError if it is not exactly well-formed."""
        if len(data) > _MAX_FILE_BYTES:
            raise VocabularyError("the file is too large")
        try:
            doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise VocabularyError("the file is not valid UTF-8 JSON") from e
        return _parse(doc)

    @property
    def terms(self) -> tuple[Term, ...]:
        """Every term in file order, deprecated ones included."""
        return self._terms

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self._by_code)

    @property
    def translation_status(self) -> Mapping[str, str]:
        """Language tag -> ``source``, ``reviewed`` or ``draft`` (not yet checked by a native)."""
        return self._status

    def get(self, code: str, field: str = "violations") -> Term:
        """The term with ``code``; raise UnknownTerm (a ValidationError) naming ``field``."""
        term = self._by_code.get(code) if isinstance(code, str) else None
        if term is None:
            raise UnknownTerm(field, code if isinstance(code, str) and is_code(code) else None)
        return term

    def filter(self, text: str, lang: str = "en") -> tuple[Term, ...]:
        """Terms to offer while typing: ``text`` found in the code, the ``lang`` or English label.

        Case-insensitive, and blind to diacritics (Arabic harakat, hamza seats,
        Latin accents). Deprecated terms are never offered. Empty text offers all.
        """
        needle = fold(text.strip())
        return tuple(
            t
            for t in self._terms
            if not t.deprecated
            and (needle in t.code or needle in fold(t.label_in(lang)) or needle in fold(t.label))
        )

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def __iter__(self) -> Iterator[Term]:
        return iter(self._terms)

    def __len__(self) -> int:
        return len(self._terms)


@cache
def _default() -> Vocabulary:
    try:
        data = resources.files("fieldapp.domain").joinpath("data/violations.json").read_bytes()
    except OSError as e:
        raise VocabularyError("the packaged file is missing") from e
    return Vocabulary.from_json(data)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _parse(doc: object) -> Vocabulary:
    if not isinstance(doc, dict) or set(doc) != _TOP_KEYS:
        raise VocabularyError(f"the top level must hold exactly {sorted(_TOP_KEYS)}")
    if doc["format"] != FORMAT:
        raise VocabularyError(f"'format' must be {FORMAT!r}")
    if type(doc["version"]) is not int or doc["version"] != VERSION:
        raise VocabularyError(f"'version' must be {VERSION}")
    status = doc["translation_status"]
    if (
        not isinstance(status, dict)
        or status.get("en") != "source"
        or not all(is_language_tag(k) and v in TRANSLATION_STATUSES for k, v in status.items())
    ):
        raise VocabularyError("'translation_status' must map language tags to a known status")
    terms = doc["terms"]
    if not isinstance(terms, list) or not terms:
        raise VocabularyError("'terms' must be a non-empty list")
    parsed = [_parse_term(i, raw, frozenset(status)) for i, raw in enumerate(terms)]
    seen: set[str] = set()
    for i, term in enumerate(parsed):
        if term.code in seen:
            raise VocabularyError(f"term {i}: code {term.code!r} appears twice")
        seen.add(term.code)
    return Vocabulary(parsed, status)


def _parse_term(index: int, raw: object, languages: frozenset[str]) -> Term:
    where = f"term {index}"
    if (
        not isinstance(raw, dict)
        or not _TERM_REQUIRED <= set(raw) <= _TERM_REQUIRED | _TERM_OPTIONAL
    ):
        raise VocabularyError(f"{where}: needs 'code', 'labels', 'source' and nothing unknown")
    code = raw["code"]
    if not isinstance(code, str) or not is_code(code):
        raise VocabularyError(f"{where}: the code must be lowercase words joined by hyphens")
    where = f"term {code!r}"
    labels = raw["labels"]
    if not isinstance(labels, dict) or not all(_clean(v) for v in labels.values()):
        raise VocabularyError(f"{where}: 'labels' must map languages to non-empty text")
    if "en" not in labels:
        raise VocabularyError(f"{where}: the English label ('en') is missing")
    if not set(labels) <= languages:
        raise VocabularyError(f"{where}: a label's language is missing from 'translation_status'")
    source = raw["source"]
    definition = raw.get("definition")
    deprecated = raw.get("deprecated", False)
    if not _clean(source):
        raise VocabularyError(f"{where}: 'source' must be non-empty text")
    if definition is not None and not _clean(definition):
        raise VocabularyError(f"{where}: 'definition' must be non-empty text when present")
    if not isinstance(deprecated, bool):
        raise VocabularyError(f"{where}: 'deprecated' must be true or false")
    return Term(
        code=code,
        label=labels["en"],
        source=source,
        definition=definition,
        labels=tuple(sorted(labels.items())),
        deprecated=deprecated,
    )


def _clean(value: object) -> bool:
    return (
        isinstance(value, str)
        and value == value.strip()
        and 0 < len(value) <= _TEXT_MAX
        and is_utf8_safe(value)
        and not has_control(value)
        and "\n" not in value
    )
