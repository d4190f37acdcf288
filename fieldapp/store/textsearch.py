"""Text normalisation for full-text search in Arabic and Latin scripts.

Only the search index sees normalised text; the narrative itself is stored
exactly as typed. Arabic is written with optional short vowels (harakat) and
tatweel, several forms of alef, and attached articles and conjunctions, so a
search for حاجز must find الحاجز and حاجِز. Latin text is case-folded and the
unicode61 tokenizer removes diacritics. Queries go through the same steps and
are quoted term by term, so no FTS5 query syntax from the user is interpreted.
"""

from __future__ import annotations

import re
import unicodedata

from fieldapp.domain import Testimony, Vocabulary

# Quranic marks, harakat, superscript alef, tatweel.
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_FOLD = str.maketrans(
    {
        "\u0622": "\u0627",  # آ -> ا
        "\u0623": "\u0627",  # أ -> ا
        "\u0625": "\u0627",  # إ -> ا
        "\u0671": "\u0627",  # ٱ -> ا
        "\u0649": "\u064a",  # ى -> ي
        "\u0629": "\u0647",  # ة -> ه
        "\u0624": "\u0648",  # ؤ -> و
        "\u0626": "\u064a",  # ئ -> ي
        **{chr(0x0660 + i): str(i) for i in range(10)},  # Arabic-Indic digits
        **{chr(0x06F0 + i): str(i) for i in range(10)},  # Extended (Persian) digits
    }
)
_WORD = re.compile(r"\w+")
# Attached article and the particles that combine with it: و ف ب ك ل + ال
_ARTICLES = ("وال", "فال", "بال", "كال", "لل", "ال")
_MIN_STEM = 2
MAX_QUERY_TERMS = 16


def _stem(word: str) -> str | None:
    for article in _ARTICLES:
        if word.startswith(article) and len(word) - len(article) >= _MIN_STEM:
            return word[len(article) :]
    return None


def normalize(text: str) -> str:
    """The form of ``text`` that goes into the index (and that queries are matched in)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _ARABIC_MARKS.sub("", folded).translate(_FOLD)


def index_text(*parts: str) -> str:
    """Normalised text for the index; Arabic words with an article also appear without it."""
    words: list[str] = []
    for part in parts:
        for word in _WORD.findall(normalize(part)):
            words.append(word)
            stem = _stem(word)
            if stem is not None:
                words.append(stem)
    return " ".join(words)


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression: every term must match, each as a prefix.

    Returns None when the query has no searchable term.
    """
    terms: list[str] = []
    for word in _WORD.findall(normalize(query))[:MAX_QUERY_TERMS]:
        term = _stem(word) or word
        terms.append('"' + term.replace('"', '""') + '"*')
    return " AND ".join(terms) if terms else None


def testimony_index_text(t: Testimony, vocabulary: Vocabulary) -> str:
    """What the search index holds for one testimony: its text, places, labels, names."""
    labels = [vocabulary.get(code).label_in("en") for code in t.violations]
    arabic = [vocabulary.get(code).label_in("ar") for code in t.violations]
    places = [p.text for p in (t.taken_place, t.incident_place) if p is not None]
    return index_text(
        t.narrative,
        *places,
        *(f"{p.description} {p.affiliation}" for p in t.perpetrators),
        *t.victims.descriptions,
        *labels,
        *arabic,
        *t.violations,
        t.witness_code or "",
        *(a.filename for a in t.attachments),
    )
