"""Run one child process and collect its wall time and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.rss import Sampler


class ChildFailed(Exception):
    """A benchmark child exited non-zero or printed something unexpected."""


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    peak_rss_kib: int


def run_python_case(argv: Sequence[str], *, cwd: Path) -> Run:
    """Run a ``bench.case`` child, which times itself and reports its own peak RSS."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=errors, cwd=cwd, check=False)
        _check(argv, proc.returncode, errors)
    try:
        report = json.loads(proc.stdout)
        return Run(seconds=float(report["seconds"]), peak_rss_kib=int(report["peak_rss_kib"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ChildFailed(f"unexpected output from {' '.join(argv)}: {proc.stdout[:200]!r}") from e


def run_tool(argv: Sequence[str]) -> Run:
    """Run an external program: whole-process wall time, VmHWM sampled from /proc.

    Where /proc is missing the peak falls back to ``ru_maxrss`` from ``wait4``,
    which on Linux would be at least this process's own RSS (see bench.rss).
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            sampler.stop()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        _check(argv, proc.returncode, errors)
    peak = sampler.peak_kib if sampler.peak_kib is not None else usage.ru_maxrss
    return Run(seconds=seconds, peak_rss_kib=peak)


def _check(argv: Sequence[str], returncode: int, errors: IO[bytes]) -> None:
    if returncode != 0:
        errors.seek(0)
        detail = errors.read().decode(errors="replace").strip()
        raise ChildFailed(f"{' '.join(argv)} exited {returncode}: {detail[-2000:]}")
