"""Payload sizes, the random plaintext file and the disk-space check."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
_UNITS = {"K": KIB, "M": MIB, "G": GIB}
DEFAULT_SIZES = "1M,64M,1G"
_PIECE = MIB
# Per payload size, at most: plaintext, raw stream, bundle, age file (each about 1x).
_FILES_PER_SIZE = 4.2


def parse_sizes(text: str) -> list[int]:
    """``"1M,64M,1G"`` -> byte counts (binary units: K = KiB, M = MiB, G = GiB).

    Raises ValueError on anything else.
    """
    sizes: list[int] = []
    for item in text.split(","):
        token = item.strip().upper().removesuffix("IB").removesuffix("B")
        if not token:
            raise ValueError(f"empty size in {text!r}")
        unit = _UNITS.get(token[-1], 1)
        number = token[:-1] if token[-1] in _UNITS else token
        if not number.isdigit() or int(number) <= 0:
            raise ValueError(f"not a size: {item!r} (use e.g. 1M, 64M, 1G)")
        sizes.append(int(number) * unit)
    return sizes


def size_label(size: int) -> str:
    for name, unit in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def write_random(path: Path, size: int) -> None:
    """Random-looking (incompressible) data; not secret."""
    with path.open("wb") as out:
        left = size
        while left:
            piece = min(left, _PIECE)
            out.write(os.urandom(piece))
            left -= piece


def check_space(directory: Path, sizes: list[int]) -> None:
    """Raise OSError if ``directory`` cannot hold the files of the largest size."""
    need = int(max(sizes) * _FILES_PER_SIZE) + 64 * MIB
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(
            f"{directory} has {free / GIB:.1f} GiB free; the benchmark needs "
            f"{need / GIB:.1f} GiB (use --tmpdir or smaller --sizes)"
        )
