"""Process-level protections applied before any secret is handled."""

from __future__ import annotations

import contextlib
import resource


def harden_process() -> None:
    """Disable core dumps, so a crash cannot write decrypted memory to disk."""
    # Some sandboxes forbid changing limits; the hard limit is then already theirs.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
