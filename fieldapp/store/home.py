"""Where a home lives and what it holds.

A home is one folder (0700): the keyslot file, the sealed device key, the
SQLCipher database with its WAL files, and the encrypted attachments; a
monitor's also keeps its sealed outbox, and an HQ home holds the protection key
(under its own secret) and the quarantine instead of a device key. It is
chosen by ``--home``, else ``FIELDAPP_HOME``, else the platform's user data
folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

HOME_ENV = "FIELDAPP_HOME"


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @property
    def keyslots(self) -> Path:
        return self.root / "keyslots.json"

    @property
    def device_key(self) -> Path:
        return self.root / "device.key"

    @property
    def rekey_pending(self) -> Path:
        """Present only while a rekey is in flight: the new keys, until they are in place."""
        return self.root / "rekey-pending.json"

    @property
    def database(self) -> Path:
        return self.root / "store.db"

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

    @property
    def outbox(self) -> Path:
        """Sealed bundles waiting to leave a monitor's device (ciphertext only)."""
        return self.root / "outbox"

    @property
    def protection_keyslots(self) -> Path:
        """HQ only: the keyslots of the protection key's own secret."""
        return self.root / "protection-keyslots.json"

    @property
    def protection_key(self) -> Path:
        """HQ only: the protection private key, sealed under its own secret."""
        return self.root / "protection.key"

    @property
    def quarantine(self) -> Path:
        """HQ only: bundles that failed a check, each beside a note of why."""
        return self.root / "quarantine"

    def is_hq(self) -> bool:
        """An HQ home holds a protection key; a monitor's never does."""
        return self.protection_keyslots.is_file()

    def database_files(self) -> tuple[Path, ...]:
        """The database and every side file SQLite may create beside it."""
        db = self.database
        return (
            db,
            db.with_name(db.name + "-wal"),
            db.with_name(db.name + "-shm"),
            db.with_name(db.name + "-journal"),
        )

    def is_set_up(self) -> bool:
        return self.keyslots.is_file()


def resolve_home(option: str | None, environ: Mapping[str, str]) -> Home:
    """The home named by ``--home``, else by FIELDAPP_HOME, else the platform default."""
    if option:
        return Home(Path(option).expanduser().absolute())
    if environ.get(HOME_ENV):
        return Home(Path(environ[HOME_ENV]).expanduser().absolute())
    return Home(Path(platformdirs.user_data_dir("fieldapp", appauthor=False)))
