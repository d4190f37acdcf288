"""One timed case, run in a fresh process: ``python -m bench.case CASE SRC DST``.

Prints ``{"seconds": ..., "peak_rss_kib": ...}`` on stdout: the wall time of
the operation alone (no interpreter start-up or imports) and the peak RSS of
this process image, interpreter and imports included (see bench.rss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import material
from bench.rss import own_peak_kib
from crypto.bundle import CHUNK_BYTES, open_bundle, seal_bundle
from crypto.secretstream import ABYTES, StreamDecryptor, StreamEncryptor

CASES = ("seal", "open", "push", "pull")


class CaseFailed(Exception):
    """The operation did not produce what it should have."""


class DiscardSink:
    """A ``PlaintextSink`` that counts the plaintext and drops it."""

    def __init__(self) -> None:
        self.length = 0

    def write(self, data: bytes, /) -> int:
        self.length += len(data)
        return len(data)

    def abort(self) -> None:
        self.length = 0


def seal(src: Path, dst: Path) -> None:
    with src.open("rb") as plain, dst.open("wb") as out:
        seal_bundle(plain, out, recipient=material.HQ_BOX.public_key, device=material.DEVICE)


def open_(src: Path) -> None:
    sink = DiscardSink()
    with src.open("rb") as sealed:
        opened = open_bundle(
            sealed, [material.HQ_BOX], sink, trusts_device=lambda d: d == material.DEVICE.public_key
        )
    if sink.length != opened.plaintext_length:
        raise CaseFailed("open_bundle wrote a different length than it declared")


def push(src: Path, dst: Path) -> None:
    """Raw secretstream push of 64 KiB chunks: no envelope, hash or padding."""
    stream = StreamEncryptor(material.STREAM_KEY, material.STREAM_HEADER)
    with src.open("rb") as plain, dst.open("wb") as out:
        chunk = plain.read(CHUNK_BYTES)
        while True:
            following = plain.read(CHUNK_BYTES)
            out.write(stream.push(chunk, final=not following))
            if not following:
                break
            chunk = following


def pull(src: Path) -> None:
    """Raw secretstream pull of what ``push`` wrote, plaintext discarded."""
    stream = StreamDecryptor(material.STREAM_KEY, material.STREAM_HEADER)
    with src.open("rb") as sealed:
        while chunk := sealed.read(CHUNK_BYTES + ABYTES):
            stream.pull(chunk)
    stream.finish()


def run(case: str, src: Path, dst: Path) -> None:
    match case:
        case "seal":
            seal(src, dst)
        case "open":
            open_(src)
        case "push":
            push(src, dst)
        case "pull":
            pull(src)
        case _:
            raise ValueError(f"unknown case {case!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.case")
    parser.add_argument("case", choices=CASES)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path, help="output file (ignored by open and pull)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run(args.case, args.src, args.dst)
    seconds = time.perf_counter() - start
    json.dump({"seconds": seconds, "peak_rss_kib": own_peak_kib()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
