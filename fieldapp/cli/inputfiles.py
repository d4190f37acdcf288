"""Reading one text input from a file or standard input, bounded and refusing FIFOs."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from fieldapp.errors import FieldappError

STDIN = "-"  # the file name that means standard input


def read_text_input(spec: str, limit: int, what: str, error: type[FieldappError]) -> str:
    """UTF-8 text of at most ``limit`` bytes from file ``spec`` (``-`` = standard input).

    A FIFO or device planted at the path is refused instead of read (it could
    block forever). Raises ``error`` with a message naming ``what``.
    """
    try:
        if spec == STDIN:
            data = sys.stdin.buffer.read(limit + 1)
        else:
            fd = os.open(Path(spec), os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise error(f"The {what} file is not a regular file.")
                data = f.read(limit + 1)
    except OSError as e:
        raise error(f"The {what} file cannot be read; check the path.") from e
    if len(data) > limit:
        raise error(f"The {what} file is larger than {limit} bytes.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"The {what} file is not UTF-8 text.") from e
