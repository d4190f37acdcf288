"""Errors the application expects, and the exit code each one ends the CLI with.

Every ``FieldappError`` carries a message that is safe to print: it names what
went wrong and what to do next, and never carries testimony, secrets or paths
inside the user's home.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``fieldapp`` command. Scripts may rely on them."""

    OK = 0
    ERROR = 1  # an expected failure not covered below
    USAGE = 2  # bad arguments (click's own code)
    AUTH = 3  # wrong passphrase or recovery code
    DATA = 4  # corrupt, tampered or foreign data was refused
    KEYS = 5  # a key or key statement is missing, unknown or refused
    IO = 6  # disk full, permission denied, unsafe path
    NETWORK = 7  # relay unreachable or refused the request
    INTERNAL = 70  # a bug: the message asks for --debug
    INTERRUPTED = 130


class FieldappError(Exception):
    """An expected failure with a user-safe one-line message."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UsageError(FieldappError):
    exit_code = ExitCode.USAGE
