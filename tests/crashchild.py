"""The parent's side of a crash-test child: wait until it is ready, let it go, collect it.

A child process (see tests/test_keyfile_crash.py, tests/store/test_rotation_crash.py)
prints ``ready``, waits for ``go`` on its standard input, then does the work a test
kills it in the middle of. These helpers keep that handshake in one place.
"""

from __future__ import annotations

import signal
import subprocess

import pytest


def wait_ready(child: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Return ``child`` once it said ``ready``; fail the test with its stderr if it did not."""
    if child.stdout is None or child.stdout.readline() != "ready\n":
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"child did not start: {err}")
    return child


def go(child: subprocess.Popen[str]) -> None:
    if child.stdin is None:
        raise RuntimeError("no stdin")
    child.stdin.write("go\n")
    child.stdin.flush()


def finish(child: subprocess.Popen[str], timeout: float = 60) -> tuple[int, list[str]]:
    """Its exit code (0, or killed by SIGKILL) and the words it printed; else fail."""
    out, err = child.communicate(timeout=timeout)
    if child.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"child failed unexpectedly ({child.returncode}): {err}")
    return child.returncode, out.split()
