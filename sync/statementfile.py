"""HQ's statement chain as one file, for a USB stick (``*.fastatements``).

Layout (docs/sync.md, "HQ's key statements on the stick"):

    8 bytes   magic ``FACHAIN`` and format version 0x01
    2 bytes   count n, big-endian, 1 to 4096
    n times:  2 bytes length L (1 to 1024), then L bytes: one statement

Nothing else, nothing after. The statements inside are HQ's chain in version
order, exactly as ``hq keys`` reports it; this layer only frames them. Whether
they are HQ's, and newer, is decided by verification (sync/hqtrust.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from fieldapp.errors import ExitCode, FieldappError

MAGIC: Final = b"FACHAIN\x01"
MAX_STATEMENTS: Final = 4096  # crypto.statements.MAX_CHAIN_LENGTH
MAX_STATEMENT_BYTES: Final = 1024  # crypto.statements.MAX_STATEMENT_BYTES
MAX_FILE_BYTES: Final = len(MAGIC) + 2 + MAX_STATEMENTS * (2 + MAX_STATEMENT_BYTES)
_U16 = struct.Struct(">H")


class StatementsFileRefused(FieldappError):
    """A ``.fastatements`` file is not one HQ wrote (wrong layout); nothing from it is used."""

    exit_code = ExitCode.DATA

    def __init__(self) -> None:
        super().__init__(
            "A key statements file on the stick is not one HQ wrote (damaged or foreign); "
            "nothing from it was used."
        )


def encode_statements(statements: Sequence[bytes]) -> bytes:
    """Frame HQ's chain for the stick. Raises ValueError if it does not fit the layout."""
    if not 1 <= len(statements) <= MAX_STATEMENTS:
        raise ValueError("a statements file holds 1 to 4096 statements")
    parts = [MAGIC, _U16.pack(len(statements))]
    for raw in statements:
        if not isinstance(raw, bytes) or not 1 <= len(raw) <= MAX_STATEMENT_BYTES:
            raise ValueError("a statement is 1 to 1024 bytes")
        parts += [_U16.pack(len(raw)), raw]
    return b"".join(parts)


def decode_statements(data: bytes) -> list[bytes]:
    """The statements a file frames, in order. Raises StatementsFileRefused."""
    if len(data) > MAX_FILE_BYTES or not data.startswith(MAGIC):
        raise StatementsFileRefused
    offset = len(MAGIC)
    if len(data) < offset + 2:
        raise StatementsFileRefused
    (count,) = _U16.unpack_from(data, offset)
    offset += 2
    if not 1 <= count <= MAX_STATEMENTS:
        raise StatementsFileRefused
    out = []
    for _ in range(count):
        if len(data) < offset + 2:
            raise StatementsFileRefused
        (length,) = _U16.unpack_from(data, offset)
        offset += 2
        if not 1 <= length <= MAX_STATEMENT_BYTES or len(data) < offset + length:
            raise StatementsFileRefused
        out.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise StatementsFileRefused
    return out
