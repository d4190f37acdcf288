"""HQ's receipts and key statements, published through the relay.

Receipts are an append-only log in segments, one per POST that added any::

    receipts/<first cursor, 20 digits>.bin   concatenated 144-byte receipts

Each segment is written whole (temp, fsync, rename, fsync of the folder), so
the log only ever grows by complete segments. A receipt's cursor is its
position in the log; segment names make the positions survive a restart.
Statements are one file per version: ``statements/<version, 20 digits>.bin``.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from crypto.receipts import RECEIPT_BYTES
from sync.relay.errors import Conflict, RelaySetupError
from sync.relay.fsio import atomic_write, read_small

_SEGMENT: Final = re.compile(r"([0-9]{20})\.bin")
_BUNDLE_ID: Final = slice(8, 24)  # magic 6, format 1, kind 1, then the bundle id (16)
_READ_LIMIT: Final = 64 * 1024  # a statement stored under a larger limit stays readable


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    count: int
    path: Path


def _segment_name(number: int) -> str:
    return f"{number:020d}.bin"


class ReceiptLog:
    """Receipts in publication order, each bundle id kept once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._bundle_ids: set[bytes] = set()

    @property
    def total(self) -> int:
        """The cursor after the last receipt."""
        last = self._segments[-1] if self._segments else None
        return 0 if last is None else last.start + last.count

    def load(self) -> None:
        """Read the segments. Raises RelaySetupError if the log has a gap or a torn segment."""
        segments: list[_Segment] = []
        bundle_ids: set[bytes] = set()
        for name in sorted(p.name for p in self.folder.iterdir()):
            match = _SEGMENT.fullmatch(name)
            if match is None:
                continue
            path = self.folder / name
            data = path.read_bytes()
            start = int(match.group(1))
            if (
                not data
                or len(data) % RECEIPT_BYTES
                or (segments and segments[-1].start + segments[-1].count != start)
            ):
                raise RelaySetupError(
                    "The relay's receipts folder is damaged; restore it from a backup."
                )
            segments.append(_Segment(start, len(data) // RECEIPT_BYTES, path))
            bundle_ids.update(
                data[i : i + RECEIPT_BYTES][_BUNDLE_ID] for i in range(0, len(data), RECEIPT_BYTES)
            )
        with self._lock:
            self._segments = segments
            self._bundle_ids = bundle_ids

    def add(self, data: bytes) -> int:
        """Append the receipts in ``data`` (a multiple of 144 bytes) not stored yet.

        Returns how many were new. Raises OSError.
        """
        with self._lock:
            new: list[bytes] = []
            seen = set(self._bundle_ids)
            for i in range(0, len(data), RECEIPT_BYTES):
                receipt = data[i : i + RECEIPT_BYTES]
                if receipt[_BUNDLE_ID] not in seen:
                    seen.add(receipt[_BUNDLE_ID])
                    new.append(receipt)
            if new:
                start = self.total
                path = self.folder / _segment_name(start)
                atomic_write(self.folder, path.name, b"".join(new))
                self._segments.append(_Segment(start, len(new), path))
                self._bundle_ids = seen
            return len(new)

    def after(self, cursor: int, most: int) -> tuple[bytes, int, bool]:
        """Up to ``most`` receipts from position ``cursor``: (bytes, next cursor, more?)."""
        with self._lock:
            segments = list(self._segments)
            total = self.total
        cursor = min(cursor, total)
        if segments:
            cursor = max(cursor, segments[0].start)  # older segments removed by hand
        end = min(total, cursor + most)
        parts: list[bytes] = []
        index = max(0, bisect.bisect_right([s.start for s in segments], cursor) - 1)
        position = cursor
        while position < end and index < len(segments):
            segment = segments[index]
            first = position - segment.start
            last = min(segment.count, end - segment.start)
            with segment.path.open("rb") as f:
                f.seek(first * RECEIPT_BYTES)
                parts.append(f.read((last - first) * RECEIPT_BYTES))
            position = segment.start + last
            index += 1
        return b"".join(parts), end, end < total


class StatementBook:
    """HQ key statements by version: written once, identical rewrites accepted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def put(self, version: int, data: bytes) -> None:
        """Store ``data`` as ``version``. Raises Conflict if other bytes hold it, OSError."""
        name = _segment_name(version)
        with self._lock:
            try:
                stored = read_small(self.folder / name, _READ_LIMIT)
            except FileNotFoundError:
                atomic_write(self.folder, name, data)
                return
            if stored != data:
                raise Conflict("Another statement holds that version.")

    def after(self, version: int) -> list[bytes]:
        """Every statement with a version above ``version``, in order."""
        found: list[tuple[int, str]] = []
        for name in (p.name for p in self.folder.iterdir()):
            match = _SEGMENT.fullmatch(name)
            if match is not None and int(match.group(1)) > version:
                found.append((int(match.group(1)), name))
        statements: list[bytes] = []
        for _, name in sorted(found):
            with contextlib.suppress(FileNotFoundError):  # statements are never removed, but
                statements.append(read_small(self.folder / name, _READ_LIMIT))
        return statements
