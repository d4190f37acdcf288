"""``python -m bench.store_explain DIR``: query plans and variants on a kept benchmark store.

Run ``python -m bench.store_bench --keep`` first; DIR is the folder it names
(``kept /tmp/fieldapp-store-bench-...``). This opens both stores read-only in
spirit (the timed deletes run inside a transaction that is rolled back), prints
EXPLAIN QUERY PLAN for the statements FieldStore runs on every save and every
search, and times the search and the FTS delete as written in
fieldapp/store/store.py against the variants suggested in bench/README.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.store_bench import PASSPHRASE
from bench.store_corpus import Lexicon, queries
from bench.store_engines import FTS_DELETE, plain_connection, pragma
from bench.store_report import percentile
from fieldapp.store.home import Home
from fieldapp.store.textsearch import match_expression
from fieldapp.store.vault import unlock_home

if TYPE_CHECKING:
    from sqlite3 import Connection

COLUMNS = (
    "t.id, t.seq, t.status, t.taken_at, t.incident_text, t.place, t.violations, "
    "t.witness_code, t.updated_at"
)
RANKED = 2000
SEARCH_VARIANTS = {
    # What FieldStore.search runs today: every match is joined, then sorted.
    "as shipped (join all matches, sort)": (
        f"SELECT {COLUMNS} FROM search s JOIN testimonies t ON t.id = s.testimony_id"  # noqa: S608
        " WHERE search MATCH ? ORDER BY bm25(search) LIMIT ?"
    ),
    # FTS5 ranks inside the virtual table and only the top rows are joined.
    "rank in FTS subquery, join top N": (
        f"SELECT {COLUMNS} FROM (SELECT testimony_id, rank FROM search"  # noqa: S608
        " WHERE search MATCH ? ORDER BY rank LIMIT ?) s"
        " JOIN testimonies t ON t.id = s.testimony_id ORDER BY s.rank"
    ),
    # bm25 over the newest RANKED matches only, then the top N joined: bounded work.
    f"bm25 over newest {RANKED} matches, join top N": (
        f"SELECT {COLUMNS} FROM (SELECT r, b FROM (SELECT rowid AS r, bm25(search) AS b"  # noqa: S608
        f" FROM search WHERE search MATCH ? ORDER BY rowid DESC LIMIT {RANKED})"
        " ORDER BY b LIMIT ?) x JOIN search s ON s.rowid = x.r"
        " JOIN testimonies t ON t.id = s.testimony_id ORDER BY x.b"
    ),
    # No relevance ranking: newest index rows first, FTS5 can stop after N.
    "newest first, no bm25": (
        f"SELECT {COLUMNS} FROM (SELECT testimony_id, rowid AS r FROM search"  # noqa: S608
        " WHERE search MATCH ? ORDER BY rowid DESC LIMIT ?) s"
        " JOIN testimonies t ON t.id = s.testimony_id ORDER BY s.r DESC"
    ),
}
PLANS = {
    "FTS delete on save": FTS_DELETE,
    "FTS delete by rowid": "DELETE FROM search WHERE rowid = ?",
    "_head on save": (
        "SELECT seq, hash FROM revisions WHERE testimony_id = ? ORDER BY seq DESC LIMIT 1"
    ),
    "search": SEARCH_VARIANTS["as shipped (join all matches, sort)"],
    "search, rank in subquery": SEARCH_VARIANTS["rank in FTS subquery, join top N"],
    "search, bm25 over newest": SEARCH_VARIANTS[f"bm25 over newest {RANKED} matches, join top N"],
    "page": (
        f"SELECT {COLUMNS} FROM testimonies t"  # noqa: S608
        " ORDER BY t.updated_at DESC, t.id LIMIT ? OFFSET ?"
    ),
}


def _plan(conn: Connection, sql: str) -> list[str]:
    args = tuple("x" for _ in range(sql.count("?")))
    return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


def _time_search(conn: Connection, sql: str, words: list[str]) -> list[float]:
    out = []
    for q in words:
        start = time.perf_counter()
        conn.execute(sql, (match_expression(q), 50)).fetchall()
        out.append(time.perf_counter() - start)
    return out


def _time_delete(conn: Connection, sql: str, args: list[object]) -> list[float]:
    out = []
    for arg in args:
        conn.execute("BEGIN IMMEDIATE")
        try:
            start = time.perf_counter()
            conn.execute(sql, (arg,))
            out.append(time.perf_counter() - start)
        finally:
            conn.execute("ROLLBACK")
    return out


def _line(label: str, seconds: list[float]) -> str:
    return (
        f"  {label:<46} p50 {percentile(seconds, 50) * 1000:8.2f} ms"
        f"  p95 {percentile(seconds, 95) * 1000:8.2f} ms  max {max(seconds) * 1000:8.2f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_explain")
    parser.add_argument("folder", type=Path, help="a folder kept by store_bench --keep")
    parser.add_argument("--seed", type=int, default=20161210, help="the corpus seed it used")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--deletes", type=int, default=10)
    args = parser.parse_args(argv)

    unlocked = unlock_home(Home(args.folder / "home"), PASSPHRASE)
    cipher = unlocked.open_database()
    cache = int(str(pragma(cipher, "cache_size")))
    plain = plain_connection(args.folder / "plain" / "store.db", cache)
    conns = {"SQLCipher": cipher, "plain sqlite3": plain}
    count = int(cipher.execute("SELECT count(*) FROM testimonies").fetchone()[0])
    print(f"{args.folder}: {count} testimonies, cache_size={cache}")

    print("\nEXPLAIN QUERY PLAN")
    for label, sql in PLANS.items():
        print(f"  {label}: " + " / ".join(_plan(cipher, sql)))

    words = queries(args.seed, Lexicon.build(random.Random(args.seed)), args.queries)
    for name, conn in conns.items():
        print(f"\nsearch, {len(words)} queries, limit 50 ({name}, cache_size={cache})")
        for label, sql in SEARCH_VARIANTS.items():
            _time_search(conn, sql, words[:5])  # warm this statement's pages a little
            print(_line(label, _time_search(conn, sql, words)))
    ids = [
        r[0]
        for r in cipher.execute(
            "SELECT id FROM testimonies ORDER BY random() LIMIT ?", (args.deletes,)
        )
    ]
    rowids = [
        r[0]
        for r in cipher.execute(
            "SELECT rowid FROM search ORDER BY random() LIMIT ?", (args.deletes,)
        )
    ]
    for name, conn in conns.items():
        print(f"\nFTS delete of one testimony, rolled back ({name})")
        print(
            _line("as shipped: WHERE testimony_id = ?", _time_delete(conn, FTS_DELETE, list(ids)))
        )
        print(
            _line(
                "by rowid: WHERE rowid = ?",
                _time_delete(conn, "DELETE FROM search WHERE rowid = ?", list(rowids)),
            )
        )
    counted = "SELECT count(*) FROM search WHERE search MATCH ?"
    hits = [cipher.execute(counted, (match_expression(q),)).fetchone()[0] for q in words]
    print(f"\ntestimonies matched per query: median {statistics.median(hits)}, max {max(hits)}")
    cipher.close()
    plain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
