"""Figures and the text table of the store benchmark (``bench.store_bench``)."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import machine

INSERT_RATIO_GOAL = 0.70
LATENCY_GOAL_MS = 50.0
UNLOCK_GOAL_S = (0.5, 1.5)
MB = 10**6


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Inserts:
    """One phase of saves, timed in both stores."""

    label: str
    before: int  # records in each store when the phase started
    real_api: bool  # FieldStore.create as shipped (else: the no-op FTS delete skipped)
    seconds: dict[str, float] = field(default_factory=dict)
    saves: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)  # per save, real API only

    def rate(self, engine: str) -> float:
        return self.saves / self.seconds[engine] if self.seconds.get(engine) else 0.0


@dataclass
class Latency:
    """Repeated calls of one read operation in one store (seconds per call)."""

    label: str
    engine: str
    seconds: list[float]
    goal_ms: float | None = None

    def ms(self, q: float) -> float:
        return percentile(self.seconds, q) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000

    @property
    def first_ms(self) -> float:
        return self.seconds[0] * 1000


def fsync_ms(directory: Path, rounds: int = 50) -> float:
    """Median time to write 4 KiB and fsync it in ``directory`` (a commit costs one or two)."""
    path = directory / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


def machine_line(sqlcipher: str, sqlcipher_sqlite: str, directory: Path, fsync: float) -> str:
    info = machine(None)
    return (
        f"{info['cpu']}, {info['cores']} cores | Python {info['python']} | "
        f"SQLCipher {sqlcipher} (SQLite {sqlcipher_sqlite}) vs stdlib SQLite "
        f"{sqlite3.sqlite_version} | {info['sodium']} | {platform.system()} "
        f"{platform.release()} | {directory}: 4 KiB write+fsync {fsync:.2f} ms | "
        f"1-min load at start {info['load_1min']}"
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 or not cell[:1].isdigit() else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def insert_table(phases: list[Inserts], cipher: str, plain: str) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "insert phase (one transaction per save)",
            "records before",
            "saves",
            "SQLCipher /s",
            "plain /s",
            "ratio",
            "SQLCipher ms/save p50",
            "p95",
            "goal >= 70%",
        )
    ]
    for p in phases:
        ratio = p.rate(cipher) / p.rate(plain) if p.rate(plain) else 0.0
        lat = p.latencies.get(cipher) or []
        rows.append(
            (
                p.label,
                _count(p.before),
                str(p.saves),
                f"{p.rate(cipher):.0f}",
                f"{p.rate(plain):.0f}",
                f"{ratio:.0%}",
                f"{percentile(lat, 50) * 1000:.1f}" if lat else "-",
                f"{percentile(lat, 95) * 1000:.1f}" if lat else "-",
                ("yes" if ratio >= INSERT_RATIO_GOAL else "NO") if p.real_api else "(info)",
            )
        )
    return _table(rows)


def latency_table(results: list[Latency]) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "read (fresh connection)",
            "store",
            "calls",
            "p50 ms",
            "p95 ms",
            "max ms",
            "first ms",
            "goal",
        )
    ]
    for r in results:
        if r.goal_ms is None:
            verdict = "(info)"
        else:
            verdict = f"p95 < {r.goal_ms:.0f} ms: " + ("yes" if r.ms(95) < r.goal_ms else "NO")
        rows.append(
            (
                r.label,
                r.engine,
                str(len(r.seconds)),
                f"{r.ms(50):.2f}",
                f"{r.ms(95):.2f}",
                f"{r.max_ms:.2f}",
                f"{r.first_ms:.2f}",
                verdict,
            )
        )
    return _table(rows)


def other_table(rows_in: list[tuple[str, str, str]]) -> str:
    return _table([("other", "value", "goal"), *rows_in])


def unlock_row(seconds: list[float]) -> tuple[str, str, str]:
    median = statistics.median(seconds)
    low, high = UNLOCK_GOAL_S
    each = ", ".join(f"{s:.2f}" for s in seconds)
    verdict = "yes" if low <= median <= high else "NO"
    return (
        f"unlock_home, PRODUCTION_KDF, median of {len(seconds)}",
        f"{median:.2f} s ({each})",
        f"{low}-{high} s: {verdict}",
    )
