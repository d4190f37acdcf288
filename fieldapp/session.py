"""The session the terminal UI drives: lock state, the open store, the home's lifecycle.

No Textual here. The UI calls these methods from thread workers; each one is a
blocking call (Argon2id, SQLCipher, files) and raises only FieldappError or
CryptoError subclasses, whose messages are safe to show.

Enrolment goes through here too, so the UI never touches a key or a signature:
``read_enrolment`` verifies HQ's file and returns a preview to compare the HQ
fingerprint against what HQ read out; only ``enrol(preview)`` keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crypto.enrolment import Enrolment
from crypto.fingerprint import hq_fingerprint
from crypto.statements import HqTrust
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import AlreadyEnrolled, EnrolmentState
from fieldapp.store.vault import Clock, KdfPolicy, create_home, panic, unlock_home, utc_now
from fieldapp.transfer import Transfers
from sync.enrol import enrol as keep_enrolment
from sync.enrol import read_enrolment_file
from sync.usb import UsbTransfers


class Locked(FieldappError):
    exit_code = ExitCode.AUTH

    def __init__(self) -> None:
        super().__init__("The session is locked; enter the passphrase to continue.")


@dataclass(frozen=True, slots=True)
class EnrolmentPreview:
    """An enrolment file that verified, waiting for the monitor to compare the fingerprint.

    ``device_name``, ``fingerprint`` (30 digits in six groups of five) and ``relay``
    are for the screen. ``enrolment`` and ``trust`` are what ``Session.enrol``
    keeps; the enrolment holds the one-time secret, so they are never shown,
    compared or put in ``repr``.
    """

    device_name: str
    fingerprint: str
    relay: str | None
    enrolment: Enrolment = field(repr=False, compare=False)
    trust: HqTrust = field(repr=False, compare=False)

    @property
    def fingerprint_groups(self) -> tuple[str, ...]:
        return tuple(self.fingerprint.split())


@dataclass(frozen=True, slots=True)
class EnrolmentStatus:
    """Whether this device is enrolled with HQ, and as what (for display)."""

    enrolled: bool
    device_name: str | None = None
    fingerprint: str | None = None
    relay: str | None = None
    enrolled_at: str | None = None

    @classmethod
    def of(cls, state: EnrolmentState | None) -> EnrolmentStatus:
        if state is None:
            return cls(enrolled=False)
        return cls(
            enrolled=True,
            device_name=state.device_name,
            fingerprint=str(hq_fingerprint(state.hq_root)),
            relay=state.relay,
            enrolled_at=state.enrolled_at,
        )


class Session:
    """One home, locked or unlocked. Thread-safe: workers may call it concurrently."""

    def __init__(
        self,
        home: Home,
        *,
        kdf: KdfPolicy | None = None,
        clock: Clock = utc_now,
        open_store: Callable[..., FieldStore] = FieldStore.open,
        transfers: Transfers | None = None,
    ) -> None:
        self.home = home
        self.transfers: Transfers = transfers or UsbTransfers(clock)
        self.kdf = kdf or KdfPolicy()
        self.clock = clock
        self._open_store = open_store
        self._store: FieldStore | None = None
        self._lock = threading.RLock()

    def is_set_up(self) -> bool:
        return self.home.is_set_up()

    @property
    def is_unlocked(self) -> bool:
        return self._store is not None

    def create(self, passphrase: str) -> str:
        """Set up the home and open it; returns the recovery code to show once."""
        with self._lock:
            unlocked, code = create_home(self.home, passphrase, kdf=self.kdf, clock=self.clock)
            self._store = self._open_store(unlocked, clock=self.clock)
            return code

    def unlock(self, secret: str) -> str | None:
        """Open the store with a passphrase or recovery code. Raises WrongSecret etc.

        Returns a note for the user if an interrupted key change (keys rekey) was
        finished or undone on the way, else None.
        """
        with self._lock:
            unlocked = unlock_home(self.home, secret)
            store = self._open_store(unlocked, clock=self.clock)
            if self._store is not None:
                self._store.close()
            self._store = store
            return unlocked.note

    def lock(self) -> None:
        """Close the store and forget the keys (as far as Python lets us)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = None

    @property
    def store(self) -> FieldStore:
        store = self._store
        if store is None:
            raise Locked
        return store

    def panic(self) -> float:
        """Lock, then crypto-erase the home. Returns the seconds the erase took."""
        with self._lock:
            self.lock()
            return panic(self.home)

    # ------------------------------------------------------------ enrolment

    def read_enrolment(self, path: Path) -> EnrolmentPreview:
        """Read and verify HQ's enrolment file; nothing is kept until ``enrol``.

        Raises EnrolmentFileError (unreadable), EnrolmentError (damaged, tampered,
        refused key statements) and, if this device is already enrolled,
        AlreadyEnrolled before the file is even read.
        """
        with self._lock:
            store = self._store
            if store is not None and store.sync_book.enrolment() is not None:
                raise AlreadyEnrolled
        enrolment, trust = read_enrolment_file(path, self.clock())
        return EnrolmentPreview(
            device_name=enrolment.device_name,
            fingerprint=str(hq_fingerprint(trust.root)),
            relay=enrolment.relay,
            enrolment=enrolment,
            trust=trust,
        )

    def enrol(self, preview: EnrolmentPreview) -> None:
        """Keep a verified enrolment whose fingerprint the monitor compared.

        Raises Locked, AlreadyEnrolled.
        """
        with self._lock:
            keep_enrolment(self.store, preview.enrolment, preview.trust)

    def enrolment_status(self) -> EnrolmentStatus:
        """Whether this device is enrolled, as which device, with which HQ. Raises Locked."""
        with self._lock:
            state = self.store.sync_book.enrolment()
        return EnrolmentStatus.of(state)
