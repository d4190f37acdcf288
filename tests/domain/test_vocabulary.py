"""The violation vocabulary: required categories, stable codes, translations, strict parsing."""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from typing import Any

import pytest

from fieldapp.domain import Term, UnknownTerm, ValidationError, Vocabulary, VocabularyError
from fieldapp.domain._text import is_code

VOCAB = Vocabulary.load_default()

# The categories the design requires (DESIGN.md "Domain model" and the brief).
REQUIRED = {
    "arbitrary-detention",
    "enforced-disappearance",
    "extrajudicial-execution",
    "torture",
    "abduction",
    "hostage-taking",
    "forced-conscription",
    "reprisals-against-civilians",
    "obstruction-of-movement",
    "attack-on-civilians",
    "sexual-gender-based-violence",
    "denial-of-humanitarian-access",
    "incommunicado-detention",
    "death-in-custody",
    "forced-displacement",
    "attack-on-medical-care",
    "human-shields",
    "pillage",
    "destruction-of-property",
    "siege-starvation",
    "child-recruitment",
}

# Every code ever shipped. Signed testimonies name violations by these codes, so a
# code may be deprecated but never removed or renamed: this list only ever grows.
PINNED_CODES = (
    "abduction",
    "arbitrary-detention",
    "attack-on-civilians",
    "attack-on-journalists-defenders",
    "attack-on-medical-care",
    "attack-on-schools",
    "child-recruitment",
    "death-in-custody",
    "denial-of-humanitarian-access",
    "destruction-of-property",
    "enforced-disappearance",
    "extrajudicial-execution",
    "forced-conscription",
    "forced-displacement",
    "hostage-taking",
    "human-shields",
    "incommunicado-detention",
    "indiscriminate-attack",
    "killing-maiming-children",
    "obstruction-of-movement",
    "other",
    "pillage",
    "reprisals-against-civilians",
    "sexual-gender-based-violence",
    "siege-starvation",
    "threats-intimidation",
    "torture",
    "unfair-trial",
    "unlawful-killing",
)


def test_the_required_categories_are_present() -> None:
    assert REQUIRED - VOCAB.codes == set()


def test_no_code_was_removed_or_added_without_updating_the_pin() -> None:
    assert tuple(sorted(VOCAB.codes)) == PINNED_CODES


def test_codes_are_unique_and_kebab_case() -> None:
    codes = [t.code for t in VOCAB.terms]
    assert len(codes) == len(set(codes))
    assert all(is_code(c) for c in codes)


def test_labels_are_unique_per_language() -> None:
    for lang in ("en", "ar"):
        labels = [t.label_in(lang) for t in VOCAB.terms]
        assert len(labels) == len(set(labels)), lang


def test_every_term_has_an_arabic_label_in_arabic_script() -> None:
    for term in VOCAB.terms:
        arabic = dict(term.labels)["ar"]
        assert arabic != term.label
        letters = [c for c in arabic if c.isalpha()]
        assert letters
        assert all("ARABIC" in unicodedata.name(c) for c in letters), term.code
    assert VOCAB.translation_status == {"en": "source", "ar": "draft"}


def test_every_term_names_its_source_and_has_a_definition() -> None:
    for term in VOCAB.terms:
        assert term.source
        assert term.definition
        assert not term.deprecated


def test_get_returns_the_term() -> None:
    term = VOCAB.get("enforced-disappearance")
    assert term.label == "Enforced disappearance"
    assert term.label_in("ar") == "الاختفاء القسري"
    assert term.label_in("ku") == term.label  # no Kurdish yet: English


def test_get_unknown_code_names_it_and_says_where_the_list_is() -> None:
    with pytest.raises(UnknownTerm) as caught:
        VOCAB.get("tortura", field="violations[1]")
    assert isinstance(caught.value, ValidationError)
    assert caught.value.problems[0].field == "violations[1]"
    assert "'tortura'" in caught.value.message
    assert "docs/domain.md" in caught.value.message


def test_get_with_free_text_does_not_echo_it() -> None:
    with pytest.raises(UnknownTerm) as caught:
        VOCAB.get("Ahmad was taken at night")
    assert "Ahmad" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("DETENTION", "en", "arbitrary-detention"),
        ("hostage", "en", "hostage-taking"),
        ("siege", "en", "siege-starvation"),
        ("الاختفاء", "ar", "enforced-disappearance"),
        ("اعدام", "ar", "extrajudicial-execution"),  # typed without the hamza of الإعدام
        ("التَّعذيب", "ar", "torture"),  # typed with harakat the label lacks
        ("disappearance", "ar", "enforced-disappearance"),  # English still works in Arabic
    ],
)
def test_filter_matches_code_and_labels_case_and_mark_insensitively(
    text: str, lang: str, expected: str
) -> None:
    assert expected in [t.code for t in VOCAB.filter(text, lang)]


def test_filter_narrows_and_empty_text_offers_everything() -> None:
    assert len(VOCAB.filter("")) == len(VOCAB)
    assert [t.code for t in VOCAB.filter("custody")] == ["death-in-custody"]
    assert VOCAB.filter("no such violation") == ()


def test_vocabulary_is_immutable_and_shared() -> None:
    assert Vocabulary.load_default() is VOCAB
    assert isinstance(VOCAB.terms, tuple)
    with pytest.raises(AttributeError):
        VOCAB._terms = ()
    with pytest.raises(TypeError):
        VOCAB.translation_status["ar"] = "reviewed"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        VOCAB.terms[0].code = "x"  # type: ignore[misc]


# ---------------------------------------------------------------- strict parsing


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "fieldapp-vocabulary",
        "version": 1,
        "translation_status": {"en": "source", "ar": "draft"},
        "terms": [
            {"code": "a-b", "labels": {"en": "A", "ar": "أ"}, "source": "test"},
            {
                "code": "old",
                "labels": {"en": "Old"},
                "source": "test",
                "definition": "d",
                "deprecated": True,
            },
        ],
    }
    doc.update(changes)
    return doc


def _encode(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def test_a_minimal_file_parses_and_deprecated_terms_resolve_but_are_not_offered() -> None:
    vocab = Vocabulary.from_json(_encode(_doc()))
    assert vocab.get("old").deprecated
    assert [t.code for t in vocab.filter("")] == ["a-b"]
    assert vocab.get("a-b") == Term(
        code="a-b", label="A", source="test", labels=(("ar", "أ"), ("en", "A"))
    )


def _term(**changes: Any) -> dict[str, Any]:
    term: dict[str, Any] = {"code": "x", "labels": {"en": "X"}, "source": "s"}
    term.update(changes)
    return {k: v for k, v in term.items() if v is not None}


BAD_FILES: dict[str, bytes] = {
    "not json": b"{",
    "not utf-8": b'{"format": "\xff"}',
    "top level list": b"[]",
    "duplicate json key": b'{"format": "fieldapp-vocabulary", "format": "x"}',
    "wrong format": _encode(_doc(format="other")),
    "newer version": _encode(_doc(version=2)),
    "version true": _encode(_doc(version=True)),
    "unknown top key": _encode({**_doc(), "extra": 1}),
    "no terms": _encode(_doc(terms=[])),
    "en not source": _encode(_doc(translation_status={"en": "draft"})),
    "bad status": _encode(_doc(translation_status={"en": "source", "ar": "done"})),
    "duplicate codes": _encode(_doc(terms=[_term(), _term()])),
    "uppercase code": _encode(_doc(terms=[_term(code="Torture")])),
    "code with space": _encode(_doc(terms=[_term(code="a b")])),
    "double hyphen": _encode(_doc(terms=[_term(code="a--b")])),
    "missing english": _encode(_doc(terms=[_term(labels={"ar": "س"})])),
    "empty label": _encode(_doc(terms=[_term(labels={"en": ""})])),
    "label with newline": _encode(_doc(terms=[_term(labels={"en": "a\nb"})])),
    "label padded": _encode(_doc(terms=[_term(labels={"en": " X"})])),
    "undeclared language": _encode(_doc(terms=[_term(labels={"en": "X", "ku": "K"})])),
    "missing source": _encode(_doc(terms=[{"code": "x", "labels": {"en": "X"}}])),
    "unknown term key": _encode(_doc(terms=[_term(note="n")])),
    "deprecated not bool": _encode(_doc(terms=[_term(deprecated="yes")])),
    "empty definition": _encode(_doc(terms=[_term(definition="")])),
    "term not object": _encode(_doc(terms=["x"])),
}


@pytest.mark.parametrize("data", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_malformed_files_are_refused(data: bytes) -> None:
    with pytest.raises(VocabularyError) as caught:
        Vocabulary.from_json(data)
    assert "\n" not in caught.value.message
