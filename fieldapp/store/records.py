"""Read models the store hands out: summaries for lists, full records, history."""

from __future__ import annotations

from dataclasses import dataclass, field

from fieldapp.domain import ProtectedIdentity, Status, Testimony


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of the testimony list: enough to find a record, nothing more."""

    id: str
    seq: int
    status: Status
    taken_at: str
    incident: str
    place: str = field(repr=False)
    violations: tuple[str, ...]
    witness_code: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class StoredTestimony:
    """The current state of one testimony."""

    id: str
    seq: int
    testimony: Testimony
    created_at: str
    updated_at: str
    identity: ProtectedIdentity | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision as the detail view and ``record show --history`` present it."""

    seq: int
    created_at: str
    hash: str
    device_key: str
    testimony: Testimony
