"""What the sync screen needs from the sync module: the interface and its results.

The UI is written against ``Transfers``, so a transport plugs in without
touching a screen. ``sync.usb.UsbTransfers`` is the one the app uses (sealed
bundles to a folder or USB stick); this module cannot import it (the stores sit
below sync), so ``fieldapp.session`` and the CLI wire it in.
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
            "bundles to. Import HQ's enrolment file first (fieldapp enroll FILE, or "
            '"Enrol with HQ" on the sync screen).'
        )


class Transfers(Protocol):
    """Everything the sync screen calls. Each call may block: run it in a worker."""

    def queued(self, store: FieldStore) -> list[Summary]:
        """Testimonies with revisions not yet sent, oldest change first."""
        ...

    def last_result(self) -> TransferResult | None: ...

    def export(self, store: FieldStore, folder: Path, progress: ProgressCallback) -> TransferResult:
        """Seal what is ready and write the bundles to ``folder`` (a USB stick)."""
        ...

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        """Send everything queued to the relay."""
        ...
