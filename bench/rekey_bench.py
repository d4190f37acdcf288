"""``python -m bench.rekey_bench``: how long ``fieldapp keys rekey`` takes, and where.

Builds, outside any timing, three monitor homes in one temporary folder under
``--tmpdir`` (default /var/tmp; cheap Argon2id, since the KDF is not what is
measured):

1. ``testimonies``: ``--count`` synthetic testimonies (default 100,000; about
   1 KiB each, bench/store_corpus.py), no attachments;
2. ``attachments``: ``--attachment-mib`` MiB of attachments in total (default
   1024), one ``--each-mib`` file per testimony, through the real
   ``FieldStore.create``;
3. ``same size``: testimonies only, until the database is as large as case 2's:
   the control that shows whether attachments cost anything beyond their rows.

Each rekey runs in a fresh process (``--child HOME``) that calls
``fieldapp.store.rekey.rekey_home`` and times every step through
``fieldapp.store.dbrekey.step_hook``; the parent checks afterwards that no
attachment file was rewritten and that the passphrase opens the home. Every
folder is removed at the end. See bench/README.md ("keys rekey").
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.files import MIB, write_random
from bench.report import machine, machine_line
from bench.rss import own_peak_kib
from bench.store_corpus import Corpus
from bench.store_engines import database_bytes, sqlcipher_engine
from crypto.kdf import KDF_MINIMUM
from fieldapp.domain import Vocabulary
from fieldapp.store import dbrekey
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import KdfPolicy, create_home, unlock_home

PASSPHRASE = "benchmark passphrase, not a secret"  # noqa: S105 -- a throwaway temp home
CHEAP = KdfPolicy(params=KDF_MINIMUM, floor=KDF_MINIMUM)
CHUNK = 1000
BYTES_PER_RECORD = 12_000  # database and WAL per testimony, with margin
# (label, first step, last step): the parts of a rekey, from dbrekey.REKEY_STEPS.
PARTS = (
    ("unlock, new keyslots, pending file", "start", "pending-written"),
    ("open, page HMAC check, count rows, checkpoint", "pending-written", "checkpointed"),
    ("to rollback journal", "checkpointed", "journal-delete"),
    ("PRAGMA rekey", "journal-delete", "rekeyed"),
    ("reopen, HMAC and structure checks, count rows", "rekeyed", "verified"),
    ("WAL checkpoint(TRUNCATE)", "verified", "wal-truncated"),
    ("old key refused", "wal-truncated", "old-key-refused"),
    ("device key, keyslots, pending removed", "old-key-refused", "pending-removed"),
)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rekey_bench",
        description="keys rekey time: 100,000 testimonies, 1 GiB of attachments, a control.",
    )
    parser.add_argument("--count", type=int, default=100_000, help="testimonies of case 1")
    parser.add_argument("--attachment-mib", type=int, default=1024, help="MiB of case 2")
    parser.add_argument("--each-mib", type=int, default=4, help="MiB per attachment")
    parser.add_argument("--repeat", type=int, default=1, help="rekeys per home (fresh process)")
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=Path("/var/tmp"),  # noqa: S108 -- a private mkdtemp folder is made inside
        help="where the homes are built (removed afterwards)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 testimonies and 32 MiB: seconds, for tests"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.attachment_mib, args.each_mib = 2000, 32, 4
    return args


# ---------------------------------------------------------------- the child: one rekey


def child(home: Home) -> dict[str, Any]:
    """Rekey ``home`` once; the seconds of each part and the peak RSS."""
    marks: dict[str, float] = {}
    dbrekey.step_hook = lambda step: marks.__setitem__(step, time.perf_counter())
    marks["start"] = time.perf_counter()
    from fieldapp.store.rekey import rekey_home

    rekey_home(home, PASSPHRASE, kdf=CHEAP)
    end = marks["pending-removed"]
    return {
        "seconds": end - marks["start"],
        "parts": {label: marks[b] - marks[a] for label, a, b in PARTS},
        "peak_rss_kib": own_peak_kib(),
    }


# ---------------------------------------------------------------- building the homes


@dataclass
class Case:
    name: str
    home: Home
    records: int = 0
    attachment_bytes: int = 0
    database_bytes: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)


def _new_home(root: Path, name: str) -> tuple[Home, Any]:
    home = Home(root / name)
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    return home, unlocked


def _testimonies(case: Case, unlocked: Any, *, count: int | None, size: int | None) -> None:
    """Add testimonies until ``count`` of them, or until the database reaches ``size``."""
    vocabulary = Vocabulary.load_default()
    engine = sqlcipher_engine(unlocked, vocabulary, seed=7)
    corpus = Corpus(7, vocabulary, engine.store.recorded_by)
    started = time.monotonic()
    try:
        while True:
            if count is not None and case.records >= count:
                break
            n = CHUNK if count is None else min(CHUNK, count - case.records)
            if size is not None:
                engine.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if database_bytes(case.home.database) >= size:
                    break
                n = 10  # close to the target size
            for t in corpus.batch(n):
                engine.builder.create(t)
            case.records += n
            if case.records % (10 * CHUNK) == 0:
                _log(f"[build] {case.name}: {case.records:,} ({time.monotonic() - started:.0f} s)")
    finally:
        engine.close()


def _attachments(case: Case, unlocked: Any, total: int, each: int, scratch: Path) -> None:
    source = scratch / "attachment.bin"
    write_random(source, each)
    vocabulary = Vocabulary.load_default()
    with FieldStore.open(unlocked) as store:
        corpus = Corpus(11, vocabulary, store.recorded_by)
        while case.attachment_bytes < total:
            store.create(corpus.batch(1)[0], attach=[source])
            case.records += 1
            case.attachment_bytes += each
    source.unlink()


def _attachment_files(home: Home) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in home.attachments.iterdir()}


def _rekey(case: Case) -> None:
    before = _attachment_files(case.home)
    done = subprocess.run(
        [sys.executable, "-m", "bench.rekey_bench", "--child", str(case.home.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the rekey of {case.name} failed: {done.stderr[-2000:]}")
    case.runs.append(json.loads(done.stdout))
    if _attachment_files(case.home) != before:
        raise RuntimeError(f"{case.name}: the rekey rewrote attachment files")
    unlock_home(case.home, PASSPHRASE)  # the passphrase still opens it
    case.database_bytes = database_bytes(case.home.database)


# ---------------------------------------------------------------- report


def _table(cases: list[Case]) -> str:
    head = ["", *(c.name for c in cases)]
    rows = [
        ["testimonies", *(f"{c.records:,}" for c in cases)],
        ["attachments MiB", *(f"{c.attachment_bytes / MIB:,.0f}" for c in cases)],
        ["database MiB", *(f"{c.database_bytes / MIB:,.1f}" for c in cases)],
        [
            "rekey s (median)",
            *(f"{statistics.median(r['seconds'] for r in c.runs):.2f}" for c in cases),
        ],
    ]
    for label, _, _ in PARTS:
        rows.append(
            [
                f"  {label}",
                *(f"{statistics.median(r['parts'][label] for r in c.runs):.3f}" for c in cases),
            ]
        )
    rows.append(
        ["peak RSS MiB", *(f"{max(r['peak_rss_kib'] for r in c.runs) / 1024:.0f}" for c in cases)]
    )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        first = row[0].ljust(widths[0])
        lines.append(
            "  ".join([first, *(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))])
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(Home(args.child))))
        return 0
    need = args.count * BYTES_PER_RECORD + 2 * args.attachment_mib * MIB
    free = shutil.disk_usage(args.tmpdir).free
    if free < need:
        _log(f"{args.tmpdir} has {free / 2**30:.1f} GiB free; need {need / 2**30:.1f} GiB")
        return 1
    root = Path(tempfile.mkdtemp(prefix="fieldapp-rekey-bench-", dir=args.tmpdir))
    wall = time.monotonic()
    try:
        home, unlocked = _new_home(root, "testimonies")
        many = Case("testimonies", home)
        _testimonies(many, unlocked, count=args.count, size=None)
        home, unlocked = _new_home(root, "attachments")
        attached = Case("attachments", home)
        _log(f"[build] attachments: {args.attachment_mib} MiB")
        _attachments(attached, unlocked, args.attachment_mib * MIB, args.each_mib * MIB, root)
        size = database_bytes(attached.home.database)
        home, unlocked = _new_home(root, "same-size")
        control = Case("same size, no attachments", home)
        _testimonies(control, unlocked, count=None, size=size)
        cases = [many, attached, control]
        for case in cases:
            case.database_bytes = database_bytes(case.home.database)
        for i in range(args.repeat):
            for case in cases:
                _log(f"[rekey] {case.name}, run {i + 1} of {args.repeat}")
                _rekey(case)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(_table(cases))
    print(f"wall {time.monotonic() - wall:.0f} s | {machine_line(machine(None))}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "case": c.name,
                        "testimonies": c.records,
                        "attachment_bytes": c.attachment_bytes,
                        "database_bytes": c.database_bytes,
                        "runs": c.runs,
                    }
                    for c in cases
                ],
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
