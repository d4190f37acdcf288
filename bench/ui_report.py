"""The aligned text table of ``bench.ui_bench``: one row per measure, milliseconds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

Row = tuple[str, ...]
HEADER: Row = ("measure", "n", "p50 ms", "p95 ms", "max ms", "goal", "met")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 3 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def ms_row(label: str, seconds: Sequence[float], goal_ms: float | None) -> Row:
    if not seconds:
        return (label, "0", "-", "-", "-", "-", "-")
    p50 = statistics.median(seconds) * 1000
    p95 = percentile(seconds, 0.95) * 1000
    goal = f"< {goal_ms:.0f} ms" if goal_ms is not None else ""
    met = "" if goal_ms is None else ("yes" if p95 < goal_ms else "NO")
    return (
        label,
        str(len(seconds)),
        f"{p50:.1f}",
        f"{p95:.1f}",
        f"{max(seconds) * 1000:.1f}",
        goal,
        met,
    )


def table(rows: Sequence[Row]) -> str:
    """Left-aligned text, right-aligned numbers, a rule under the header."""
    rows = [HEADER, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(w) if 0 < i < 5 and n else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)
