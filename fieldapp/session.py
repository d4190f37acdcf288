"""The session the terminal UI drives: lock state, the open store, the home's lifecycle.

No Textual here. The UI calls these methods from thread workers; each one is a
blocking call (Argon2id, SQLCipher, files) and raises only FieldappError or
CryptoError subclasses, whose messages are safe to show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import Clock, KdfPolicy, create_home, panic, unlock_home, utc_now
from fieldapp.transfer import OutboxOnly, Transfers


class Locked(FieldappError):
    exit_code = ExitCode.AUTH

    def __init__(self) -> None:
        super().__init__("The session is locked; enter the passphrase to continue.")


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
        self.transfers: Transfers = transfers or OutboxOnly()
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

    def unlock(self, secret: str) -> None:
        """Open the store with a passphrase or recovery code. Raises WrongSecret etc."""
        with self._lock:
            unlocked = unlock_home(self.home, secret)
            store = self._open_store(unlocked, clock=self.clock)
            if self._store is not None:
                self._store.close()
            self._store = store

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
