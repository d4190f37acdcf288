"""Reading passphrases: from a hidden prompt, or from a file (``-`` = standard input).

Never from argv or the environment, which other users and crash reporters can
read. A file holds one secret; one trailing newline is dropped.
"""

from __future__ import annotations

import sys

import click

from fieldapp.cli.inputfiles import STDIN, read_text_input
from fieldapp.domain.passphrase import MIN_CHARS as MIN_PASSPHRASE_CHARS
from fieldapp.errors import ExitCode, FieldappError

__all__ = ["STDIN", "SecretInputError", "check_new_passphrase", "read_secret"]

MAX_SECRET_BYTES = 4096


class SecretInputError(FieldappError):
    exit_code = ExitCode.USAGE


def _strip_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def read_secret(prompt: str, file_spec: str | None, *, confirm: bool = False) -> str:
    """The secret from ``file_spec`` if given, else from a hidden prompt on a terminal."""
    if file_spec is not None:
        return _strip_newline(
            read_text_input(file_spec, MAX_SECRET_BYTES, "passphrase", SecretInputError)
        )
    if not sys.stdin.isatty():
        raise SecretInputError(
            "No terminal to ask for the passphrase on: pass --passphrase-file PATH "
            "(or - to read it from standard input)."
        )
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return str(value)


def check_new_passphrase(passphrase: str) -> str:
    """Refuse passphrases too short to resist guessing on a seized laptop."""
    if len(passphrase.strip()) < MIN_PASSPHRASE_CHARS:
        raise SecretInputError(
            f"Choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters; "
            "several unrelated words are easiest to remember."
        )
    return passphrase
