"""Strict JSON reading for the domain codecs: every reader raises ValidationError only.

Each reader takes a parsed JSON value and returns a typed one, or raises
ValidationError whose field is relative ("" for the value itself); ``read_field``
files the problem under its key and carries on, so one pass reports everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final, TypeAlias, TypeVar

from fieldapp.domain.errors import Problems, ValidationError

JSON: TypeAlias = bool | int | str | list["JSON"] | dict[str, "JSON"] | None
T = TypeVar("T")

MAX_RECORD_BYTES: Final = 16 << 20  # far above any valid record; bounds work on hostile input


def dump_canonical(obj: JSON) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_strict(data: bytes) -> object:
    """Parse JSON bytes, refusing duplicate keys, floats, NaN and oversized input."""
    if not isinstance(data, bytes) or len(data) > MAX_RECORD_BYTES:
        raise ValidationError.single("record", "is not a fieldapp record or is too large")
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_refuse,
            parse_constant=_refuse,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValidationError.single("record", "is not valid fieldapp JSON") from e


def read_field(
    p: Problems, key: str, parse: Callable[[object], T], d: dict[str, object], fallback: T
) -> T:
    try:
        return parse(d[key])
    except ValidationError as e:
        p.extend(e, key)
        return fallback


def bad(message: str) -> ValidationError:
    return ValidationError.single("", message)


def exact_record(obj: object, keys: frozenset[str]) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise ValidationError.single("record", "must be a JSON object")
    found = set(obj)
    if found != keys:
        missing = sorted(keys - found)
        extra = len(found - keys)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"{extra} unexpected field(s)"] if extra else []
        )
        raise ValidationError.single("record", "; ".join(parts))
    return obj


def exact_object(obj: object, keys: frozenset[str]) -> dict[str, object]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise bad(f"must be an object with exactly the fields {', '.join(sorted(keys))}")
    return obj


def integer(raw: object) -> int:
    if type(raw) is not int:  # bool is an int subclass: true is not 1 here
        raise bad("must be a whole number")
    return raw


def string(raw: object) -> str:
    if not isinstance(raw, str):
        raise bad("must be text")
    return raw


def optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    return lambda raw: None if raw is None else parse(raw)


def list_of(parse: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    def read(raw: object) -> tuple[T, ...]:
        if not isinstance(raw, list):
            raise bad("must be a list")
        p, items = Problems(), []
        for i, item in enumerate(raw):
            try:
                items.append(parse(item))
            except ValidationError as e:
                p.extend(e, f"[{i}]")
        p.raise_if_any()
        return tuple(items)

    return read


def enum(kind: Callable[[str], T]) -> Callable[[object], T]:
    def read(raw: object) -> T:
        try:
            return kind(string(raw))
        except ValueError as e:
            raise bad("is not one of the allowed values") from e

    return read


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _refuse(_: str) -> object:
    raise ValueError("floats and constants are not allowed")
