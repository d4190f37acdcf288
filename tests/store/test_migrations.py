"""Schema migrations bring an older database forward without losing anything."""

from __future__ import annotations

import os
from pathlib import Path

import sqlcipher3

from fieldapp.store.database import open_database
from fieldapp.store.schema import MIGRATIONS, SCHEMA_VERSION


def test_version_3_links_existing_search_rows_and_sorts_by_utc(tmp_path: Path) -> None:
    path, key = tmp_path / "old.db", os.urandom(32)
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA foreign_keys = OFF")  # rows without revisions, for the test only
    for version, step in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(f"BEGIN;{step}PRAGMA user_version = {version};COMMIT;")
    rows = [("a1", "2016-12-10T01:30+03:00"), ("b2", "2016-12-09T23:00+00:00")]
    for rid, taken in rows:
        conn.execute(
            "INSERT INTO testimonies (id, seq, status, taken_at, created_at, updated_at)"
            " VALUES (?, 1, 'draft', ?, 'x', 'x')",
            (rid, taken),
        )
        conn.execute("INSERT INTO search (testimony_id, body) VALUES (?, ?)", (rid, "words"))
    conn.close()

    upgraded = open_database(path, key)
    try:
        assert upgraded.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        got = dict(
            upgraded.execute(
                "SELECT t.id, s.testimony_id FROM testimonies t"
                " JOIN search s ON s.rowid = t.search_rowid"
            ).fetchall()
        )
        assert got == {"a1": "a1", "b2": "b2"}
        utc = dict(upgraded.execute("SELECT id, taken_utc FROM testimonies").fetchall())
        (search_sql,) = upgraded.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'search'"
        ).fetchone()
        assert "prefix" in search_sql  # version 4 rebuilt it with prefix indexes
        assert upgraded.execute(
            "SELECT count(*) FROM search WHERE search MATCH '\"w\"*'"
        ).fetchone() == (2,)
        # 01:30 in Aleppo is 22:30 UTC the day before: later than b2 only by UTC.
        assert utc == {"a1": "2016-12-09T22:30", "b2": "2016-12-09T23:00"}
    finally:
        upgraded.close()
