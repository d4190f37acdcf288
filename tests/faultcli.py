"""The real CLI with cheap Argon2id and a kill point, for crash tests. Never used outside tests.

``python -m tests.faultcli SPEC ARGS...`` runs ``fieldapp ARGS`` like tests.cheapcli,
after installing ``crypto.keyfile.fault_hook`` and ``fieldapp.store.dbrekey.step_hook``.
Each step reached is printed to stderr as ``STEP <seam>:<name>`` (flushed), so a test
can time a kill from a given step. SPEC is ``none`` or ``<seam>:<name>:<n>``: SIGKILL
this process the n-th time (from 1) step ``name`` of seam ``keyfile`` or ``rekey`` is
reached. The kill point comes in argv, never from the environment, so no setting of
a production process can turn it on.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Callable

from crypto import keyfile
from fieldapp.cli.app import run
from fieldapp.cli.state import CliState
from fieldapp.hardening import harden_process
from fieldapp.store import dbrekey
from tests.store.conftest import CHEAP


def _hook(
    seam: str, target: tuple[str, str, int] | None, seen: Counter[str]
) -> Callable[[str], None]:
    def hook(step: str) -> None:
        seen[f"{seam}:{step}"] += 1
        sys.stderr.write(f"STEP {seam}:{step}\n")
        sys.stderr.flush()
        if (
            target is not None
            and target[:2] == (seam, step)
            and seen[f"{seam}:{step}"] == target[2]
        ):
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def install(spec: str) -> None:
    """Install both hooks for ``spec`` (see the module docstring)."""
    target: tuple[str, str, int] | None = None
    if spec != "none":
        seam, name, nth = spec.split(":")
        if seam not in ("keyfile", "rekey") or int(nth) < 1:
            raise SystemExit(f"bad kill spec {spec!r}")
        target = (seam, name, int(nth))
    seen: Counter[str] = Counter()
    keyfile.fault_hook = _hook("keyfile", target, seen)
    dbrekey.step_hook = _hook("rekey", target, seen)


if __name__ == "__main__":
    harden_process()
    install(sys.argv[1])
    sys.exit(run(sys.argv[2:], state=CliState(kdf=CHEAP)))
