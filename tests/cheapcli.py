"""The real ``fieldapp`` CLI with cheap Argon2id parameters, for subprocess tests.

``python -m tests.cheapcli ARGS`` behaves exactly like ``fieldapp ARGS`` except
that new keyslots use libsodium's minimum cost (and accept it when unlocking),
so a test can run dozens of commands in seconds. Never used outside tests.
"""

from __future__ import annotations

import sys

from fieldapp.cli.app import run
from fieldapp.cli.state import CliState
from fieldapp.hardening import harden_process
from tests.store.conftest import CHEAP

if __name__ == "__main__":
    harden_process()
    sys.exit(run(sys.argv[1:], state=CliState(kdf=CHEAP)))
