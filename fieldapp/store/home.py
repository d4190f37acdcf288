"""Where a home lives and what it holds.

A home is one folder (0700): the keyslot file, the sealed device key, the
SQLCipher database with its WAL files, and the encrypted attachments. It is
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
    def database(self) -> Path:
        return self.root / "store.db"

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

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
