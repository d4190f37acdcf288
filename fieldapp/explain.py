"""What to tell a person about a failure: a title and one sentence.

Only our own exceptions carry messages written for the user; anything else is
described by a generic sentence, because ``str()`` of an arbitrary exception can
carry testimony, names or paths. Used by the UI; the CLI dispatcher follows the
same rule.
"""

from __future__ import annotations

from crypto.errors import CryptoError, WrongSecret
from fieldapp.errors import FieldappError

GENERIC = "Something went wrong; nothing was lost. Try again, or restart fieldapp."


def describe(error: BaseException | None) -> tuple[str, str]:
    """(title, sentence) for an error, safe to put on screen."""
    if isinstance(error, WrongSecret):
        return "Wrong passphrase", error.message
    if isinstance(error, FieldappError | CryptoError):
        return "Not done", error.message
    return "Unexpected error", GENERIC
