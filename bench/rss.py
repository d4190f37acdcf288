"""Peak resident set size of one process image.

Why not ``ru_maxrss``: on Linux, ``execve`` folds the high-water mark of the
memory image it replaces into the process's ``maxrss``, and a child started by
``subprocess`` replaces a (v)fork of the parent. So ``wait4`` reports at least
the parent's RSS for every child (``true`` started from a 200 MiB Python shows
200 MiB). ``VmHWM`` in ``/proc/PID/status`` belongs to the current image only.
"""

from __future__ import annotations

import contextlib
import resource
import threading
from pathlib import Path

SAMPLE_SECONDS = 0.001


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """The process's peak RSS in KiB, or None if /proc does not say (exited, not Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def own_peak_kib() -> int:
    """This process's peak RSS in KiB (``ru_maxrss`` where /proc is missing)."""
    peak = vm_hwm_kib()
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak


class Sampler(threading.Thread):
    """Reads another process's VmHWM every millisecond until ``stop()``."""

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"rss-sampler-{pid}", daemon=True)
        self._pid = pid
        self._stopped = threading.Event()
        self.peak_kib: int | None = None

    def run(self) -> None:
        while not self._stopped.is_set():
            sample = vm_hwm_kib(self._pid)
            if sample is not None:
                self.peak_kib = max(sample, self.peak_kib or 0)
            self._stopped.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def reset_peak() -> None:
    """Start a new VmHWM period (Linux >= 4.0); harmless where it is not supported."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def peak_mib() -> float:
    """This process's peak RSS since start or the last ``reset_peak()``, in MiB."""
    return (vm_hwm_kib() or 0) / 1024
