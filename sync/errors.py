"""The exceptions sync/ raises.

As in crypto/, every message is written for the person at the keyboard: one
line, saying what went wrong, never echoing the content that was refused (a
bundle's bytes, names, codes or paths). Callers may show ``error.message`` as it is.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class of the failures sync/ raises."""

    default_message = "Moving data between machines failed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class PayloadError(SyncError):
    """A bundle's plaintext (the payload) is malformed, or cannot be built.

    On the receiving side nothing from the bundle may be kept; on the sending
    side no bundle was made.
    """

    default_message = "The bundle's contents are malformed."
