"""ValidationError: one user-safe line built from field names and fixed messages."""

from __future__ import annotations

import pytest

from fieldapp.domain import FieldProblem, UnknownTerm, ValidationError, VocabularyError
from fieldapp.errors import ExitCode, FieldappError


def test_message_joins_every_problem_on_one_line() -> None:
    error = ValidationError(
        (
            FieldProblem("language", "use a language tag"),
            FieldProblem("narrative", "must not\nbe empty"),
        )
    )
    assert error.message == (
        "Please correct: language: use a language tag; narrative: must not be empty."
    )
    assert "\n" not in error.message
    assert str(error) == error.message


def test_is_an_expected_cli_error_with_the_data_exit_code() -> None:
    error = ValidationError.single("status", "bad")
    assert isinstance(error, FieldappError)
    assert error.exit_code is ExitCode.DATA
    assert isinstance(VocabularyError("x"), FieldappError)


def test_an_error_without_problems_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ValidationError(())


def test_within_moves_fields_under_a_prefix() -> None:
    error = ValidationError(
        (FieldProblem("latitude", "x"), FieldProblem("[2]", "y"), FieldProblem("", "z"))
    ).within("incident_place")
    assert [p.field for p in error.problems] == [
        "incident_place.latitude",
        "incident_place[2]",
        "incident_place",
    ]


def test_unknown_term_names_a_code_shaped_value_and_how_to_find_valid_ones() -> None:
    error = UnknownTerm("violations[0]", "tortura")
    assert error.code == "tortura"
    assert "violations[0]" in error.message
    assert "'tortura'" in error.message
    assert "docs/domain.md" in error.message


def test_unknown_term_never_echoes_free_text() -> None:
    error = UnknownTerm("violations", None)
    assert error.code is None
    assert "not a violation type code" in error.message
