"""Reading passphrases: from a hidden prompt, or from a file (``-`` = standard input).

Never from argv or the environment, which other users and crash reporters can
read. A file holds one secret; one trailing newline is dropped.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from fieldapp.errors import ExitCode, FieldappError

STDIN = "-"  # the file name that means standard input
MAX_SECRET_BYTES = 4096
MIN_PASSPHRASE_CHARS = 8


class SecretInputError(FieldappError):
    exit_code = ExitCode.USAGE


def _strip_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _read_file(spec: str) -> str:
    if spec == STDIN:
        data = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
    else:
        try:
            fd = os.open(Path(spec), os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise SecretInputError("The passphrase file cannot be opened.") from e
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SecretInputError("The passphrase file is not a regular file.")
            data = f.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretInputError("The passphrase file is too large to hold one passphrase.")
    try:
        return _strip_newline(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SecretInputError("The passphrase file is not UTF-8 text.") from e


def read_secret(prompt: str, file_spec: str | None, *, confirm: bool = False) -> str:
    """The secret from ``file_spec`` if given, else from a hidden prompt on a terminal."""
    if file_spec is not None:
        return _read_file(file_spec)
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
