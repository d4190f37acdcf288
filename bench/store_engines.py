"""The two stores the benchmark compares: the real SQLCipher one, and the same code on sqlite3.

``plain_store`` runs the unmodified ``FieldStore`` against a standard-library
``sqlite3`` connection set up the way ``fieldapp.store.database.open_database``
sets up SQLCipher, minus the key and the cipher checks: the same PRAGMAs
(``temp_store = MEMORY``, busy timeout, WAL, ``synchronous = FULL``, foreign
keys, ``secure_delete``), applied by that module's own ``_configure``, and the
schema applied by its own ``_migrate`` from ``schema.MIGRATIONS``. Every save
therefore runs the same statements in the same transactions, with the same
revision hashing and signing. Only the page cache size is set explicitly: the
sqlcipher3 wheel is built with an 8 MiB default, the standard library's
SQLite with 2 MiB, and that alone moves insert throughput by a third, so the
plain connection gets whatever the SQLCipher connection uses.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fieldapp.domain import Vocabulary
from fieldapp.store import database
from fieldapp.store.schema import MIGRATIONS
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import Unlocked

if TYPE_CHECKING:
    from sqlite3 import Connection, Cursor

# The statement FieldStore._write_current runs before indexing a testimony. For a
# record that is being created it deletes nothing, but FTS5 cannot use an index
# for an UNINDEXED column, so it reads the whole search table to find that out.
FTS_DELETE = "DELETE FROM search WHERE testimony_id = ?"


class DeterministicClock:
    """A clock that moves ``step`` per call from a fixed start (so both stores agree)."""

    def __init__(self, step: timedelta = timedelta(seconds=7)) -> None:
        self.now = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
        self._step = step

    def __call__(self) -> datetime:
        self.now += self._step
        return self.now


def seeded_random(seed: int) -> Any:
    """A ``random_bytes`` for record ids and witness codes, the same sequence for a seed."""
    return random.Random(seed).randbytes


class SkipNoOpFtsDelete:
    """Connection wrapper for building the big database: drops ``FTS_DELETE`` only.

    Used only with ``FieldStore.create`` (new ids, nothing indexed under them yet),
    so the database it produces is the one the real API produces; only the time
    differs. ``skipped`` counts how often it applied (0 means the store no longer
    runs that statement and the build was the real API throughout).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.skipped = 0

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        if sql == FTS_DELETE:
            self.skipped += 1
            return self._conn.cursor()
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._conn.close()


def plain_connection(path: Path, cache_size: int) -> Connection:
    """A standard-library sqlite3 connection configured like ``database.open_database``."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA temp_store = MEMORY")  # what _check_engine sets for SQLCipher
    conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
    database._configure(conn)  # busy_timeout, WAL, synchronous=FULL, foreign_keys, secure_delete
    database._migrate(conn, MIGRATIONS)  # one transaction per step
    return conn


def pragma(conn: Connection, name: str) -> object:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return None if row is None else row[0]


@dataclass
class Engine:
    """One store under test: the real API, and a wrapper for the fast bulk build."""

    name: str
    store: FieldStore
    builder: FieldStore  # same connection, clock and random, FTS_DELETE skipped
    skipper: SkipNoOpFtsDelete
    conn: Connection
    path: Path

    def close(self) -> None:
        self.store.close()


def _engine(
    name: str,
    unlocked: Unlocked,
    conn: Connection,
    path: Path,
    vocabulary: Vocabulary,
    seed: int,
) -> Engine:
    clock, rand = DeterministicClock(), seeded_random(seed)
    store = FieldStore(unlocked, conn, vocabulary, clock, rand)
    skipper = SkipNoOpFtsDelete(conn)
    builder = FieldStore(unlocked, cast("Connection", skipper), vocabulary, clock, rand)
    return Engine(name, store, builder, skipper, conn, path)


def sqlcipher_engine(unlocked: Unlocked, vocabulary: Vocabulary, seed: int) -> Engine:
    conn = unlocked.open_database()
    return _engine("SQLCipher", unlocked, conn, unlocked.home.database, vocabulary, seed)


def plain_engine(
    unlocked: Unlocked, path: Path, cache_size: int, vocabulary: Vocabulary, seed: int
) -> Engine:
    conn = plain_connection(path, cache_size)
    return _engine("plain sqlite3", unlocked, conn, path, vocabulary, seed)


def database_bytes(path: Path) -> int:
    """The database file and its WAL (after a clean close the WAL is gone)."""
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total
