"""``python -m bench.store_bench``: FieldStore on SQLCipher against the same code on sqlite3.

Builds a store of ``--count`` synthetic testimonies (default 100,000) twice, in
one temporary folder: the real SQLCipher store of a home created with the
production Argon2id parameters, and the same FieldStore code on a standard
library sqlite3 connection (see bench/store_engines.py). Then times search,
the record list, unlocking, and reports sizes and peak RSS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import store_report as report
from bench.rss import peak_mib, reset_peak
from bench.store_corpus import Corpus, queries
from bench.store_engines import (
    Engine,
    database_bytes,
    plain_engine,
    pragma,
    sqlcipher_engine,
)
from fieldapp.domain import Status, Vocabulary
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore, Sort
from fieldapp.store.textsearch import match_expression
from fieldapp.store.vault import KdfPolicy, Unlocked, create_home, unlock_home

PASSPHRASE = "benchmark passphrase, not a secret"  # noqa: S105 -- a throwaway temp home
CHUNK = 1000  # testimonies generated at a time (both stores get the same chunk)
BYTES_PER_RECORD = 24_000  # free space per testimony: both stores and WALs, with margin


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_bench",
        description="FieldStore insert, search, list and unlock times: SQLCipher vs sqlite3.",
    )
    parser.add_argument("--count", type=int, default=100_000, help="testimonies per store")
    parser.add_argument(
        "--real",
        type=int,
        default=5000,
        help="first saves through the unmodified FieldStore.create (default 5000)",
    )
    parser.add_argument(
        "--probe",
        type=int,
        default=100,
        help="unmodified saves timed at 10%%, 50%% and 100%% of --count (default 100)",
    )
    parser.add_argument("--queries", type=int, default=200, help="search queries (default 200)")
    parser.add_argument("--unlock-repeat", type=int, default=5, help="unlocks timed (default 5)")
    parser.add_argument("--seed", type=int, default=20161210, help="corpus seed")
    parser.add_argument(
        "--tmpdir", type=Path, default=Path(tempfile.gettempdir()), help="where the stores go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.count < 1 or args.real < 0 or args.probe < 0 or args.queries < 1:
        parser.error("--count and --queries must be positive, --real and --probe not negative")
    if args.unlock_repeat < 1:
        parser.error("--unlock-repeat must be at least 1")
    return args


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inserts


def _phases(count: int, real: int, probe: int) -> list[report.Inserts]:
    """Consecutive phases covering saves 0..count: real API first, probes, bulk build."""
    first = min(real, count)
    probes = sorted({p for p in (count // 10, count // 2, count - probe) if p >= first})
    phases: list[report.Inserts] = []
    if first:
        phases.append(report.Inserts(f"create(), first {first}", 0, real_api=True))
        phases[-1].saves = first
    at = first
    for p in probes:
        if p < at or probe == 0:
            continue
        if p > at:
            phases.append(report.Inserts("create(), no-op FTS delete skipped", at, real_api=False))
            phases[-1].saves = p - at
        phases.append(report.Inserts(f"create() at {p:,} records", p, real_api=True))
        phases[-1].saves = min(probe, count - p)
        at = p + phases[-1].saves
    if at < count:
        phases.append(report.Inserts("create(), no-op FTS delete skipped", at, real_api=False))
        phases[-1].saves = count - at
    return [p for p in phases if p.saves > 0]


def _run_phase(
    phase: report.Inserts, corpus: Corpus, engines: list[Engine], chunk_no: list[int]
) -> None:
    left = phase.saves
    for engine in engines:
        phase.seconds[engine.name] = 0.0
        phase.latencies[engine.name] = []
    while left:
        batch = corpus.batch(min(CHUNK, left))
        left -= len(batch)
        order = engines if chunk_no[0] % 2 == 0 else engines[::-1]  # alternate who goes first
        chunk_no[0] += 1
        for engine in order:
            if phase.real_api:
                times = phase.latencies[engine.name]
                for t in batch:
                    start = time.perf_counter()
                    engine.store.create(t)
                    times.append(time.perf_counter() - start)
                phase.seconds[engine.name] += sum(times[-len(batch) :])
            else:
                start = time.perf_counter()
                for t in batch:
                    engine.builder.create(t)
                phase.seconds[engine.name] += time.perf_counter() - start


def _build(
    phases: list[report.Inserts], corpus: Corpus, engines: list[Engine], count: int
) -> float:
    start = time.perf_counter()
    chunk_no = [0]
    for phase in phases:
        _log(
            f"[build] {phase.label}: saves {phase.before}..{phase.before + phase.saves} of {count}"
        )
        _run_phase(phase, corpus, engines, chunk_no)
        done = phase.before + phase.saves
        rates = ", ".join(f"{e.name} {phase.rate(e.name):.0f}/s" for e in engines)
        _log(f"[build]   {done} done, {time.perf_counter() - start:.0f} s; {rates}")
    return time.perf_counter() - start


# ---------------------------------------------------------------- reads


def _time_calls(
    label: str, engine: str, calls: list[Callable[[], object]], goal: float | None
) -> report.Latency:
    seconds = []
    for call in calls:
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return report.Latency(label, engine, seconds, goal)


def _matches(store: FieldStore, query: str) -> int:
    """How many testimonies ``query`` matches (FieldStore.search returns at most 50)."""
    row = store._conn.execute(
        "SELECT count(*) FROM search WHERE search MATCH ?", (match_expression(query),)
    ).fetchone()
    return int(row[0])


def _reads(
    stores: dict[str, FieldStore], words: list[str], count: int, seed: int
) -> tuple[list[report.Latency], list[tuple[float, str]]]:
    """Search and list timings, SQLCipher first in each pair of rows; search times by query."""
    results: list[report.Latency] = []
    search_times: dict[str, list[float]] = {name: [] for name in stores}
    for q in words:  # interleaved, so both stores see the same machine state
        for name, store in stores.items():
            start = time.perf_counter()
            store.search(q, limit=50)
            search_times[name].append(time.perf_counter() - start)
    for name in stores:
        goal = report.LATENCY_GOAL_MS if name == "SQLCipher" else None
        results.append(report.Latency("search(q, limit=50)", name, search_times[name], goal))
    cipher = stores["SQLCipher"]
    step = max(1, count // 100)  # 100 ids spread over the list, without loading all of it
    ids = [cipher.page(limit=1, offset=k)[0].id for k in range(0, count, step)][:100]
    random.Random(seed).shuffle(ids)
    half = count // 2
    cases: list[tuple[str, int, Callable[[FieldStore], object], float | None]] = [
        ("page(limit=50)", 100, lambda s: s.page(limit=50), report.LATENCY_GOAL_MS),
        ("page(status=READY)", 100, lambda s: s.page(status=Status.READY), None),
        ("page(sort=TAKEN)", 100, lambda s: s.page(sort=Sort.TAKEN), None),
        (
            "page(status=READY, sort=INCIDENT)",
            100,
            lambda s: s.page(status=Status.READY, sort=Sort.INCIDENT),
            None,
        ),
        (f"page(offset={half})", 20, lambda s: s.page(offset=half), None),
        ("count()", 20, lambda s: s.count(), None),
    ]
    for label, n, fn, goal in cases:
        for name, store in stores.items():
            calls: list[Callable[[], object]] = [functools.partial(fn, store)] * n
            results.append(_time_calls(label, name, calls, goal if name == "SQLCipher" else None))
    for name, store in stores.items():
        gets: list[Callable[[], object]] = [functools.partial(store.get, rid) for rid in ids]
        results.append(_time_calls(f"get(id), {len(ids)} ids", name, gets, None))
    return results, list(zip(search_times["SQLCipher"], words, strict=True))


# ---------------------------------------------------------------- unlock


def _unlock(home: Home, repeat: int) -> tuple[list[float], list[float], Unlocked]:
    """unlock_home times, then FieldStore.open times (open + checks + schema) on the big store."""
    unlock_s, open_s = [], []
    unlocked: Unlocked | None = None
    for i in range(repeat):
        _log(f"[unlock] {i + 1}/{repeat}")
        start = time.perf_counter()
        unlocked = unlock_home(home, PASSPHRASE)
        unlock_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        store = FieldStore.open(unlocked)
        store.count()  # first real read of the big database
        open_s.append(time.perf_counter() - start)
        store.close()
    assert unlocked is not None
    return unlock_s, open_s, unlocked


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0915 -- one linear script
    args = _parse_args(argv)
    wall = time.perf_counter()
    args.tmpdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fieldapp-store-bench-", dir=args.tmpdir))
    out: dict[str, Any] = {"count": args.count, "seed": args.seed}
    try:
        free = shutil.disk_usage(work).free
        if free < args.count * BYTES_PER_RECORD:
            need = args.count * BYTES_PER_RECORD / report.MB
            print(f"bench: {work} has {free / report.MB:.0f} MB free, wants {need:.0f} MB")
            return 1
        fsync = report.fsync_ms(work)
        vocabulary = Vocabulary.load_default()
        home = Home(work / "home")

        _log("[setup] creating a home with PRODUCTION_KDF (two Argon2id slots)")
        start = time.perf_counter()
        unlocked, _code = create_home(home, PASSPHRASE, kdf=KdfPolicy())
        create_s = time.perf_counter() - start
        reset_peak()

        cipher = sqlcipher_engine(unlocked, vocabulary, args.seed)
        cache = int(str(pragma(cipher.conn, "cache_size")))
        versions = (
            str(pragma(cipher.conn, "cipher_version")),
            cipher.conn.execute("SELECT sqlite_version()").fetchone()[0],
        )
        (work / "plain").mkdir()
        plain = plain_engine(unlocked, work / "plain" / "store.db", cache, vocabulary, args.seed)
        header = report.machine_line(versions[0], versions[1], args.tmpdir, fsync)
        _log(header)
        engines = [cipher, plain]
        corpus = Corpus(args.seed, vocabulary, cipher.store.recorded_by)
        phases = _phases(args.count, args.real, args.probe)
        build_s = _build(phases, corpus, engines, args.count)
        skipped = {e.name: e.skipper.skipped for e in engines}
        for engine in engines:
            engine.close()
        build_rss = peak_mib()
        sizes = {e.name: database_bytes(e.path) for e in engines}

        reset_peak()
        unlock_s, open_s, unlocked = _unlock(home, args.unlock_repeat)
        unlock_rss = peak_mib()

        reset_peak()
        _log("[reads] search, page, count, get")
        stores = {
            "SQLCipher": FieldStore.open(unlocked),
            "plain sqlite3": plain_engine(unlocked, plain.path, cache, vocabulary, args.seed).store,
        }
        words = queries(args.seed, corpus.lexicon, args.queries)
        reads, by_query = _reads(stores, words, args.count, args.seed)
        hits = {q: _matches(stores["SQLCipher"], q) for q in words}
        for store in stores.values():
            store.close()
        read_rss = peak_mib()
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    wall_s = time.perf_counter() - wall

    c_mb, p_mb = sizes["SQLCipher"] / report.MB, sizes["plain sqlite3"] / report.MB
    others = [
        report.unlock_row(unlock_s),
        (
            f"FieldStore.open + count() on {args.count} records, median",
            f"{statistics.median(open_s) * 1000:.1f} ms (first {open_s[0] * 1000:.1f} ms)",
            "(info)",
        ),
        ("create_home, PRODUCTION_KDF (2 Argon2id slots)", f"{create_s:.2f} s", "(info)"),
        (
            f"database size, {args.count} records",
            f"SQLCipher {c_mb:.1f} MB, plain {p_mb:.1f} MB ({c_mb / p_mb - 1:+.1%})",
            "(info)",
        ),
        (
            "peak RSS (VmHWM): build / unlock / reads",
            f"{build_rss:.0f} / {unlock_rss:.0f} / {read_rss:.0f} MiB",
            "(info)",
        ),
        (
            f"build: {args.count} records in each store",
            f"{build_s:.0f} s (both stores, interleaved)",
            "(info)",
        ),
        ("benchmark wall time", f"{wall_s:.0f} s", "(info)"),
    ]
    print(header)
    print(
        f"{args.count} testimonies per store, ~1 KiB narrative each (seed {args.seed}); "
        f"WAL, synchronous=FULL, cache_size={cache} in both; SQLCipher = real FieldStore, "
        "plain = the same FieldStore code on stdlib sqlite3."
    )
    print()
    print(report.insert_table(phases, "SQLCipher", "plain sqlite3"))
    if any(skipped.values()):
        print(
            "Rows marked (info) skip the one statement FieldStore runs for a new record that "
            "deletes nothing (DELETE FROM search WHERE testimony_id = ?, a full scan of the "
            "FTS table); the data written is the same. FieldStore has no bulk import."
        )
    else:
        print("The no-op FTS delete was not found: every phase used the unmodified API.")
    print()
    print(report.latency_table(reads))
    slowest = sorted(by_query, reverse=True)[:5]
    print(
        f"{len(words)} queries of 1-2 words (half Arabic, half Latin), drawn with corpus "
        f"frequencies ({len(hits)} distinct); testimonies matched: median "
        f"{statistics.median(hits.values()):.0f}, max {max(hits.values())}.\nSlowest in SQLCipher: "
        + "; ".join(f"{q!r} {sec * 1000:.0f} ms, {hits[q]} matches" for sec, q in slowest)
    )
    print()
    print(report.other_table(others))
    if args.json is not None:
        out.update(
            machine=header,
            inserts=[asdict(p) | {"latencies": None} for p in phases],
            reads=[asdict(r) for r in reads],
            unlock_s=unlock_s,
            open_s=open_s,
            create_home_s=create_s,
            size_bytes=sizes,
            peak_rss_mib={"build": build_rss, "unlock": unlock_rss, "reads": read_rss},
            build_s=build_s,
            wall_s=wall_s,
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
