"""``fieldapp relay init``: a new data folder with its tokens, settings and certificate."""

from __future__ import annotations

import datetime
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sync.relay.errors import RelaySetupError
from sync.relay.fsio import DIR_MODE, atomic_write, fsync_dir, make_dir
from sync.relay.recovery import FOLDERS
from sync.relay.settings import SETTINGS_FILE, RelaySettings, settings_document
from sync.relay.tls import write_tls
from sync.relay.tokens import TOKENS_FILE, TokenBook, new_token

_HOSTNAME: Final = re.compile(r"[A-Za-z0-9.:-]{1,253}")


@dataclass(frozen=True, slots=True)
class InitResult:
    """The tokens are shown once and never stored; the pin goes into enrolment files."""

    upload_token: str = field(repr=False)
    hq_token: str = field(repr=False)
    pin: str | None


def _prepare(data_dir: Path) -> None:
    try:
        info = data_dir.lstat()
    except FileNotFoundError:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        make_dir(data_dir)
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RelaySetupError("That path is not a folder (or is a link); name a new folder.")
    if any(os.scandir(data_dir)):
        raise RelaySetupError("That folder is not empty; name a new or empty folder.")
    data_dir.chmod(DIR_MODE)


def init_relay(
    data_dir: Path, *, tls: bool, hostname: str = "localhost", now: datetime.datetime | None = None
) -> InitResult:
    """Create a relay data folder. Raises RelaySetupError (nothing is left half-made but
    the folder itself)."""
    if tls and not _HOSTNAME.fullmatch(hostname):
        raise RelaySetupError("The hostname may hold letters, digits, dots, colons and dashes.")
    try:
        _prepare(data_dir)
        for name in FOLDERS:
            make_dir(data_dir / name)
        upload, hq = new_token(), new_token()
        settings = settings_document(RelaySettings(data_dir=data_dir))
        atomic_write(data_dir, SETTINGS_FILE, json.dumps(settings, indent=2).encode() + b"\n")
        atomic_write(data_dir, TOKENS_FILE, TokenBook.from_tokens(upload, hq).document())
        pin = None
        if tls:
            make_dir(data_dir / "tls")
            pin = write_tls(data_dir / "tls", hostname, now or datetime.datetime.now(datetime.UTC))
        fsync_dir(data_dir)
    except OSError as e:
        raise RelaySetupError(
            "The relay data folder could not be created; check the path, space and permissions."
        ) from e
    return InitResult(upload, hq, pin)
