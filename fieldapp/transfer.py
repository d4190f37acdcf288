"""What the sync screen needs from the sync module: the interface, and its stand-in.

The transports (bundles to a folder or USB stick, HTTPS or Tor to the relay)
arrive with the HQ and relay work; the UI is written against ``Transfers`` so
they plug in without touching a screen. Until a device is enrolled with HQ,
``OutboxOnly`` lists what is queued and refuses to send, saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.records import Summary
from fieldapp.store.store import FieldStore


@dataclass(frozen=True, slots=True)
class Progress:
    """One transfer's progress: ``done`` of ``total`` bytes (total 0 if unknown yet)."""

    transfer: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a finished export or push did."""

    bundles: int
    bytes: int
    destination: str
    finished_at: str


ProgressCallback = Callable[[Progress], None]


class NotEnrolled(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "This device is not enrolled with HQ yet, so there is no HQ key to seal "
            "bundles to. Import an enrolment file from HQ first (fieldapp enroll FILE)."
        )


class Transfers(Protocol):
    """Everything the sync screen calls. Each call may block: run it in a worker."""

    def queued(self, store: FieldStore) -> list[Summary]:
        """Testimonies with revisions not yet sent, oldest change first."""
        ...

    def last_result(self) -> TransferResult | None: ...

    def export(self, store: FieldStore, folder: Path, progress: ProgressCallback) -> TransferResult:
        """Write sealed bundles of everything queued to ``folder`` (a USB stick)."""
        ...

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        """Send everything queued to the relay."""
        ...


class OutboxOnly:
    """``Transfers`` before enrolment: shows the queue, refuses to send."""

    def queued(self, store: FieldStore) -> list[Summary]:
        wanted = {rid for rid, _ in store.outbox()}
        return store.summaries(wanted)

    def last_result(self) -> TransferResult | None:
        return None

    def export(self, store: FieldStore, folder: Path, progress: ProgressCallback) -> TransferResult:
        del store, folder, progress
        raise NotEnrolled

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        del store, progress
        raise NotEnrolled
