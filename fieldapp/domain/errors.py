"""The exceptions fieldapp.domain raises.

Every message is safe to show as it is: it names a field and what is wrong with
it, and never echoes what was typed into it. A narrative, a name or a place typed
into the wrong box must not end up on screen in an error, in a log or in a crash
report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fieldapp.errors import ExitCode, FieldappError

_FIELD_MAX = 80


class DomainError(FieldappError):
    """Base class of every failure raised by fieldapp.domain."""

    exit_code = ExitCode.DATA


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field: ``field`` names it, ``message`` says what is wrong.

    ``field`` is a path such as ``incident_place.latitude`` or ``perpetrators[2].description``.
    """

    field: str
    message: str

    def line(self) -> str:
        """The problem as ``field: message``, on one line."""
        return f"{_one_line(self.field)[:_FIELD_MAX]}: {_one_line(self.message)}"


class ValidationError(DomainError):
    """Input was refused. ``problems`` lists every field at fault, ``message`` joins them."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ValidationError needs at least one problem")
        super().__init__("Please correct: " + "; ".join(p.line() for p in self.problems) + ".")

    @classmethod
    def single(cls, field: str, message: str) -> ValidationError:
        """An error about one field."""
        return cls((FieldProblem(field, message),))

    def within(self, prefix: str) -> ValidationError:
        """The same problems, their fields moved under ``prefix`` (``lat`` -> ``place.lat``)."""
        return ValidationError(
            FieldProblem(_join(prefix, p.field), p.message) for p in self.problems
        )


class UnknownTerm(ValidationError):
    """A violation code that the vocabulary does not hold. ``code`` is set only if code-shaped."""

    def __init__(self, field: str, code: str | None) -> None:
        self.code = code
        what = f"unknown violation type code '{code}'" if code else "not a violation type code"
        super().__init__(
            (
                FieldProblem(
                    field,
                    f"{what}; pick one from the list of violation types "
                    "(the codes are listed in docs/domain.md)",
                ),
            )
        )


class VocabularyError(DomainError):
    """The vocabulary file is damaged or does not follow its format (a packaging bug)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"The violation-type vocabulary is invalid ({_one_line(detail)}); "
            "reinstall fieldapp or report this to HQ."
        )


class Problems:
    """Collects problems so that a check can report every one of them at once."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[FieldProblem] = []

    def add(self, field: str, message: str) -> None:
        self._items.append(FieldProblem(field, message))

    def extend(self, error: ValidationError, prefix: str = "") -> None:
        """Take over the problems of ``error``, their fields moved under ``prefix``."""
        self._items.extend(FieldProblem(_join(prefix, p.field), p.message) for p in error.problems)

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def items(self) -> tuple[FieldProblem, ...]:
        return tuple(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise ValidationError(self._items)


def _join(prefix: str, field: str) -> str:
    if not prefix or not field:
        return prefix or field
    if field.startswith("["):
        return prefix + field
    return f"{prefix}.{field}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
