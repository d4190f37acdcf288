"""Process-level protections applied before any secret is handled."""

from __future__ import annotations

import contextlib
import os
import resource


def harden_process() -> None:
    """Disable core dumps and make every file this process creates private.

    A core dump would write decrypted memory to disk. The umask makes SQLite's
    WAL and shared-memory files, and anything else we create, 0600 / 0700
    whatever the user's umask (022 would leave them readable by other users).
    """
    # Some sandboxes forbid changing limits; the hard limit is then already theirs.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(0o077)
