"""Re-encrypting the SQLCipher database under a new key, and asking which key opens it.

SQLCipher 4's ``PRAGMA rekey`` rewrites every page in one write transaction. We do
not run it in WAL mode: SQLCipher added "rekey support for databases in WAL mode
with concurrent connections" only in 5.0, SQLite3 Multiple Ciphers refuses rekey
in WAL mode because it corrupted databases, and a WAL would hold the rewritten
pages under the new key while the main file still holds them under the old one.
So the WAL is checkpointed and truncated, the database switched to the rollback
journal (which needs every other connection closed: that doubles as the check
that nothing else is using the home), rekeyed, and switched back to WAL when it
is reopened. In rollback mode a crash mid-rekey leaves a hot journal holding the
original pages, still encrypted under the old key; whichever key opens the file
next, SQLite copies them back as they are, and the old key opens it again.

Nor do we trust rekey's return code (SQLCipher 4 returns OK even when the rewrite
failed, sqlcipher/sqlcipher#616): the result is verified by reopening with the new
key, checking every page's HMAC and the structure, counting every table's rows
against the counts taken before, and checking that the old key no longer opens it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from fieldapp.errors import ExitCode
from fieldapp.store.database import (
    Connection,
    DatabaseError,
    integrity_problems,
    open_database,
)
from fieldapp.store.errors import DatabaseDamaged, HomeInUse, StoreError

# The steps of a rekey, in order (the first and the last three are in fieldapp.store.rekey
# and fieldapp.store.rekeyrecovery). Crash tests kill the process at each.
REKEY_STEPS = (
    "pending-written",
    "checkpointed",
    "journal-delete",
    "rekeyed",
    "verified",
    "wal-truncated",
    "old-key-refused",
    "device-key-written",
    "keyslots-written",
    "pending-removed",
)


def _no_step(step: str) -> None:
    """The default step hook: does nothing."""


# Test seam, like crypto.keyfile.fault_hook: called with each name in REKEY_STEPS.
step_hook: Callable[[str], None] = _no_step


def reached(step: str) -> None:
    """Report a rekey step to the test seam."""
    step_hook(step)


class RekeyFailed(StoreError):
    """PRAGMA rekey did not take, and the database still opens with the old key."""

    exit_code = ExitCode.IO

    def __init__(self) -> None:
        super().__init__(
            "The database could not be re-encrypted (is the disk full or read-only?). "
            "It still opens with the current keys; nothing was changed."
        )


def wal_path(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


def journal_path(database: Path) -> Path:
    return database.with_name(database.name + "-journal")


def _census(conn: Connection) -> dict[str, int]:
    """Every table's row count: what a rekey must leave exactly as it was."""
    names = [
        str(r[0])
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    counts: dict[str, int] = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        # The names come from sqlite_master and are quoted: no outside text reaches the SQL.
        query = f"SELECT count(*) FROM {quoted}"  # noqa: S608
        counts[name] = int(conn.execute(query).fetchone()[0])
    return counts


def unauthenticated_pages(conn: Connection) -> list[str]:
    """SQLCipher's check of every page's HMAC under this connection's key; empty if all pass.

    This is what says which key a database is under. SQLite's structural check
    (``integrity_problems`` runs both) is four times slower and a rekey cannot
    change the structure, so it runs only once, after the rekey.
    """
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA cipher_integrity_check")]
    except DatabaseError as e:
        raise DatabaseDamaged from e


def truncate_wal(conn: Connection, database: Path) -> None:
    """Checkpoint every WAL frame into the database and truncate the WAL to 0 bytes.

    Raises HomeInUse if another connection keeps a frame from being checkpointed.
    """
    row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    wal = wal_path(database)
    if row is None or row[0] != 0 or (wal.exists() and wal.stat().st_size != 0):
        raise HomeInUse


def opens_soundly(database: Path, key: bytes) -> bool:
    """True if ``key`` opens the database and every page authenticates under it.

    False if the key does not open it. Leaves the WAL empty. Raises DatabaseDamaged
    if the key opens it but some page does not authenticate (after a crash the hot
    journal is played back before anything is read, so a mix means damage),
    HomeInUse if the WAL cannot be emptied.
    """
    if not database.is_file():  # never let a wrong guess create an empty database
        return False
    try:
        conn = open_database(database, key)
    except DatabaseDamaged:
        return False
    try:
        if unauthenticated_pages(conn):
            raise DatabaseDamaged
        truncate_wal(conn, database)
    finally:
        conn.close()
    return True


def opens_at_all(database: Path, key: bytes) -> bool:
    """True if ``key`` opens the database (its first page and schema read)."""
    if not database.is_file():
        return False
    try:
        conn = open_database(database, key)
    except DatabaseDamaged:
        return False
    conn.close()
    return True


def rekey_database(database: Path, old_key: bytes, new_key: bytes) -> None:
    """Re-encrypt the database from ``old_key`` to ``new_key`` and prove it.

    Afterwards every page authenticates under the new key, the old key opens
    nothing, every table holds as many rows as before, the database is back in WAL
    mode with an empty WAL, and no rollback journal is left.

    Raises HomeInUse (another connection is open; nothing changed), RekeyFailed
    (the rekey did not take; nothing changed), DatabaseDamaged.
    """
    conn = open_database(database, old_key)
    try:
        if unauthenticated_pages(conn):  # refuse to rekey a damaged file: nothing changed
            raise DatabaseDamaged
        before = _census(conn)
        truncate_wal(conn, database)
        reached("checkpointed")
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()
        except DatabaseError as e:
            raise HomeInUse from e
        if mode is None or str(mode[0]).lower() != "delete":
            raise HomeInUse
        reached("journal-delete")
        conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
        reached("rekeyed")
    finally:
        conn.close()
    _verify(database, old_key, new_key, before)


def _verify(database: Path, old_key: bytes, new_key: bytes, before: dict[str, int]) -> None:
    try:
        conn = open_database(database, new_key)  # back to WAL mode
    except DatabaseDamaged:
        if opens_at_all(database, old_key):
            raise RekeyFailed from None
        raise
    try:
        if integrity_problems(conn) or _census(conn) != before:
            raise DatabaseDamaged
        reached("verified")
        truncate_wal(conn, database)
        reached("wal-truncated")
    finally:
        with contextlib.suppress(DatabaseError):
            conn.close()
    if opens_at_all(database, old_key) or journal_path(database).exists():
        raise DatabaseDamaged
    reached("old-key-refused")
