"""Results, the aligned text table, the JSON file and the machine line."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.files import size_label

MB = 10**6  # throughput unit: decimal megabytes per second
RATIO_GOAL = 0.80
RSS_GOAL_MIB = 100
GOAL_CASES = frozenset({"seal", "open"})
# Each case is compared with the raw secretstream run in the same direction.
BASELINE = {
    "seal": "raw push",
    "open": "raw pull",
    "age encrypt": "raw push",
    "age decrypt": "raw pull",
}
COLUMNS = (
    "case",
    "size",
    "MB/s best",
    "MB/s median",
    "ratio to raw",
    "peak RSS MiB",
    "goal met",
)


@dataclass(frozen=True, slots=True)
class Result:
    case: str
    size: int
    seconds: tuple[float, ...]  # empty: the tool is not installed
    peak_rss_kib: int = 0

    @property
    def available(self) -> bool:
        return bool(self.seconds)

    @property
    def mbps_best(self) -> float:
        return self.size / MB / min(self.seconds)

    @property
    def mbps_median(self) -> float:
        return self.size / MB / statistics.median(self.seconds)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024


def ratio(result: Result, results: list[Result]) -> float | None:
    """Best throughput over the best of the raw baseline for the same size."""
    base_case = BASELINE.get(result.case)
    if base_case is None or not result.available:
        return None
    for base in results:
        if base.case == base_case and base.size == result.size and base.available:
            return result.mbps_best / base.mbps_best
    return None


def goal(result: Result, results: list[Result]) -> str:
    if result.case not in GOAL_CASES or not result.available:
        return "-"
    misses = []
    share = ratio(result, results)
    if share is None or share < RATIO_GOAL:
        misses.append("ratio")
    if result.peak_rss_mib >= RSS_GOAL_MIB:
        misses.append("RSS")
    return "yes" if not misses else "NO (" + ", ".join(misses) + ")"


def _row(result: Result, results: list[Result]) -> tuple[str, ...]:
    if not result.available:
        return (result.case, size_label(result.size), "not installed", "", "", "", "")
    share = ratio(result, results)
    return (
        result.case,
        size_label(result.size),
        f"{result.mbps_best:.1f}",
        f"{result.mbps_median:.1f}",
        "-" if share is None else f"{share:.0%}",
        f"{result.peak_rss_mib:.1f}",
        goal(result, results),
    )


def table(results: list[Result]) -> str:
    rows = [COLUMNS, *(_row(r, results) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < 2 or not cell[:1].isdigit() else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cpu_model() -> str:
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open(encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _sodium() -> str:
    import nacl.bindings

    version = getattr(nacl.bindings, "sodium_version_string", None)
    pynacl = metadata.version("pynacl")
    if callable(version):
        return f"libsodium {version()} (PyNaCl {pynacl})"
    return f"PyNaCl {pynacl} (bundled libsodium, version not exposed)"


def machine(age_version: str | None) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sodium": _sodium(),
        "os": f"{platform.system()} {platform.release()}",
        "age": age_version or "not installed",
        "load_1min": round(os.getloadavg()[0], 2),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores | Python {info['python']} | "
        f"{info['sodium']} | age {info['age']} | {info['os']} | "
        f"1-min load at start {info['load_1min']}"
    )


def legend(repeat: int) -> str:
    return (
        f"MB = 10^6 bytes of payload per wall second; best and median of {repeat} runs, "
        f"each in a fresh process; warm page cache.\n"
        f"Ratio = best MB/s over best raw secretstream MB/s in the same direction. "
        f"Goal (seal, open): ratio >= {RATIO_GOAL:.0%} and peak RSS < {RSS_GOAL_MIB} MiB."
    )


def write_json(path: Path, info: dict[str, Any], repeat: int, results: list[Result]) -> None:
    doc = {
        "machine": info,
        "units": {"throughput": "MB/s, MB = 10^6 bytes", "rss": "MiB"},
        "repeat": repeat,
        "results": [
            {
                "case": r.case,
                "size_bytes": r.size,
                "size": size_label(r.size),
                "installed": r.available,
                "seconds": list(r.seconds),
                "mbps_best": r.mbps_best if r.available else None,
                "mbps_median": r.mbps_median if r.available else None,
                "ratio_to_raw": ratio(r, results),
                "peak_rss_mib": r.peak_rss_mib if r.available else None,
                "goal_met": goal(r, results),
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
