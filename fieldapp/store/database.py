"""Opening the SQLCipher database: key first, then checks, then migrations.

The key is a raw 256-bit key (``PRAGMA key = "x'..'"``): SQLCipher's own
passphrase KDF is never used, because the key already comes from Argon2id via
the keyslot. No other statement runs before the key. Right after, we check that
this really is SQLCipher 4 with temporary storage in memory (a plain sqlite3
would silently write plaintext), and read the schema once: with a wrong key or a
damaged first page that read fails, and we say so instead of going on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import sqlcipher3

from fieldapp.store.errors import DatabaseDamaged, NewerSchema, UnsupportedDatabase
from fieldapp.store.schema import MIGRATIONS

if TYPE_CHECKING:
    # sqlcipher3 ships no type hints; its API is the standard library's sqlite3.
    from sqlite3 import Connection
else:
    Connection = sqlcipher3.Connection

__all__ = [
    "Connection",
    "DatabaseError",
    "IntegrityError",
    "integrity_problems",
    "open_database",
    "transaction",
]

# The exception classes are sqlcipher3's own, not sqlite3's: catch these.
DatabaseError: type[Exception] = sqlcipher3.DatabaseError
IntegrityError: type[Exception] = sqlcipher3.IntegrityError
_TEMP_STORE_MEMORY = 2
BUSY_TIMEOUT_MS = 10_000


def _pragma(conn: Connection, text: str) -> object:
    row = conn.execute(f"PRAGMA {text}").fetchone()
    return None if row is None else row[0]


def open_database(path: Path, key: bytes, migrations: Sequence[str] = MIGRATIONS) -> Connection:
    """Open (creating if absent) the database at ``path`` under raw ``key``.

    ``migrations`` is the schema: the monitor's by default, HQ's for an HQ home.

    Raises UnsupportedDatabase, DatabaseDamaged, NewerSchema.
    """
    if len(key) != 32:
        raise ValueError("the database key must be 32 bytes")
    conn = cast(
        "Connection",
        sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False),
    )
    try:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        # SQLCipher logs decryption failures to stderr; ours are reported as one line.
        conn.execute("PRAGMA cipher_log_level = NONE")
        _check_engine(conn)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except DatabaseError as e:
            raise DatabaseDamaged from e
        _configure(conn)
        _migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    _private_files(path)
    return conn


def _check_engine(conn: Connection) -> None:
    version = _pragma(conn, "cipher_version")
    if not isinstance(version, str) or not version.startswith("4."):
        raise UnsupportedDatabase("this SQLite is not SQLCipher 4 and would store plaintext")
    conn.execute("PRAGMA temp_store = MEMORY")
    if _pragma(conn, "temp_store") != _TEMP_STORE_MEMORY:
        raise UnsupportedDatabase("SQLCipher cannot keep temporary tables in memory")


def _configure(conn: Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # A WAL of SQLCipher pages is encrypted like the database itself.
    if str(_pragma(conn, "journal_mode = WAL")).lower() != "wal":
        raise UnsupportedDatabase("the database cannot use write-ahead logging")
    # FULL: a transaction reported as committed survives a power cut, not just a crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Deleted content is overwritten inside the encrypted file, not left in free pages.
    conn.execute("PRAGMA secure_delete = ON")


def _migrate(conn: Connection, migrations: Sequence[str]) -> None:
    current = _pragma(conn, "user_version")
    if not isinstance(current, int):
        raise DatabaseDamaged
    if current > len(migrations):
        raise NewerSchema
    for version in range(current + 1, len(migrations) + 1):
        step = migrations[version - 1]
        conn.executescript(f"BEGIN IMMEDIATE;\n{step}\nPRAGMA user_version = {version};\nCOMMIT;")


def _private_files(path: Path) -> None:
    """Make the database and its side files 0600, whatever the umask was."""
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            candidate.chmod(0o600, follow_symlinks=False)


def integrity_problems(conn: Connection) -> list[str]:
    """Pages whose HMAC fails, then SQLite's own structural check. Empty means sound.

    Raises DatabaseDamaged if the check itself cannot read the file.
    """
    try:
        cipher = [str(r[0]) for r in conn.execute("PRAGMA cipher_integrity_check")]
        sqlite = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    except DatabaseError as e:
        raise DatabaseDamaged from e
    return cipher + [s for s in sqlite if s != "ok"]


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """One write transaction: committed whole on success, rolled back on any error.

    ``BEGIN IMMEDIATE`` takes the write lock at once, so two writers queue up
    (up to the busy timeout) instead of failing half-way. Raises DatabaseDamaged
    when SQLCipher finds a page that does not authenticate.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except DatabaseError as e:
        raise DatabaseDamaged from e
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except DatabaseError as e:
        with contextlib.suppress(DatabaseError):
            conn.execute("ROLLBACK")
        raise DatabaseDamaged from e
