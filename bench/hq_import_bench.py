"""``python -m bench.hq_import_bench``: how fast HQ imports bundles, and in how much memory.

Builds, outside any timing, an HQ home and an enrolled monitor home (cheap
Argon2id: the KDF is not what is measured), ``--count`` ready testimonies of
about 1 KiB (bench/store_corpus.py) sealed one bundle each by the real
``sync.outbox.build_bundles``, and one testimony with an ``--attachment-mib``
attachment sealed the same way. The bundles are moved to folders beside the
HQ home (the "USB stick", same disk) and the monitor home is deleted. Then
each case runs in a fresh process (``--child``), which unlocks the HQ home,
opens the archive and times only the import:

1. ``import``: every small bundle through ``sync.hqimport.import_file``, in
   the order ``import_path`` takes them; wall time, bundles/s, per-bundle
   latency, MB/s of bundle bytes, peak RSS (VmHWM), and where the time goes.
2. ``again``: the same folder once more (every bundle already imported).
3. ``large``: the one large bundle; then, in the same process, for reference,
   ``crypto.bundle.open_bundle`` of the same file into a sink that drops the
   plaintext, and a plain copy of the file (1 MiB reads and writes, fsync).
4. ``large-again``: the large bundle once more (already imported).

See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from bench.case import DiscardSink
from bench.files import MIB, size_label, write_random
from bench.measure import ChildFailed
from bench.report import RSS_GOAL_MIB, machine
from bench.rss import own_peak_kib, reset_peak, vm_hwm_kib
from bench.store_corpus import Corpus
from bench.store_engines import database_bytes, pragma
from bench.store_report import MB, fsync_ms, percentile
from crypto.bundle import open_bundle
from crypto.enrolment import read_enrolment, write_enrolment
from crypto.kdf import KDF_MINIMUM
from crypto.keys import BoxPrivateKey, DeviceVerifyKey
from fieldapp.domain import ProtectedIdentity, Status, Testimony, Vocabulary
from fieldapp.hq.archive import HqArchive, ImportResult, IncomingBundle
from fieldapp.hq.vault import create_hq_home, unlock_hq
from fieldapp.store.attachments import IncomingFile
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import KdfPolicy, create_home
from sync import hqimport
from sync.enrol import enrol
from sync.outbox import build_bundles

P = ParamSpec("P")
R = TypeVar("R")

PASSPHRASE = "benchmark passphrase, not a secret"  # noqa: S105 -- a throwaway temp home
PROTECTION_PASSPHRASE = "benchmark protection passphrase"  # noqa: S105
CHEAP = KdfPolicy(params=KDF_MINIMUM, floor=KDF_MINIMUM)
DEVICE_NAME = "bench-monitor"
CASES = ("import", "again", "large", "large-again")
BYTES_PER_BUNDLE = 64_000  # monitor store, bundle (3.9 kB), HQ archive (9.3 kB), WAL; margin
LARGE_FILES = 4.2  # source, monitor copy, bundle, HQ copy, reference copy (deleted in turn)
COPY_BLOCK = MIB
PROGRESS_STEPS = 10


class CaseFailed(Exception):
    """An import did not do what the case expects (quarantined, or not idempotent)."""


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the child: timed import


BOX_KEYS = "box_keys() (SQL)"
DEVICE = "device lookup (SQL, called inside open_bundle)"
OPEN = "open_bundle: unseal, decrypt, hash, parse payload, hash attachments"
ATTACH_WRITE = "attachments: encrypt, hash again, write (IncomingFile.write)"
ATTACH_FINISH = "attachments: fsync, rename (IncomingFile.finish)"
VERIFY = "_verify_contents: revision chain, signatures, testimony"
COMMIT = "archive.commit: one transaction, receipt, fsync"
NESTED_IN_OPEN = (DEVICE, ATTACH_WRITE, ATTACH_FINISH)


class _Split:
    """Seconds spent per part of the import, summed over all bundles."""

    def __init__(self) -> None:
        parts = (BOX_KEYS, DEVICE, OPEN, ATTACH_WRITE, ATTACH_FINISH, VERIFY, COMMIT)
        self.seconds = dict.fromkeys(parts, 0.0)

    def timed(self, part: str, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        return wrapper

    def net(self) -> dict[str, float]:
        """The parts, open_bundle without what it calls (device lookup, attachment writes)."""
        out = dict(self.seconds)
        out[OPEN] -= sum(out[p] for p in NESTED_IN_OPEN)
        return out


SPLIT = _Split()


class _TimedArchive(HqArchive):
    """HqArchive with its per-bundle calls timed."""

    def box_keys(self) -> list[BoxPrivateKey]:
        return SPLIT.timed(BOX_KEYS, super().box_keys)()

    def device_for_key(self, key: DeviceVerifyKey) -> Any:
        return SPLIT.timed(DEVICE, super().device_for_key)(key)

    def has_open_enrolments(self) -> bool:
        return SPLIT.timed(DEVICE, super().has_open_enrolments)()

    def commit(self, incoming: IncomingBundle) -> ImportResult:
        return SPLIT.timed(COMMIT, super().commit)(incoming)


class _TimedIncomingFile(IncomingFile):
    """The attachment writer sync.hqimport creates, timed."""

    def write(self, data: bytes, /) -> int:
        return SPLIT.timed(ATTACH_WRITE, super().write)(data)

    def finish(self) -> None:
        SPLIT.timed(ATTACH_FINISH, super().finish)()


@contextlib.contextmanager
def _timing() -> Iterator[None]:
    """Swap timed versions into sync.hqimport's namespace (its code is unchanged).

    Each timed call costs about 1-2 us (a closure and two perf_counter calls).
    """
    swaps = {
        "open_bundle": SPLIT.timed(OPEN, open_bundle),
        "_verify_contents": SPLIT.timed(VERIFY, hqimport._verify_contents),
        "IncomingFile": _TimedIncomingFile,
    }
    originals = {name: getattr(hqimport, name) for name in swaps}
    for name, value in swaps.items():
        setattr(hqimport, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(hqimport, name, value)


def _vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _open_archive(work: Path) -> tuple[_TimedArchive, float]:
    unlocked = unlock_hq(Home(work / "hq"), PASSPHRASE)
    start = time.perf_counter()
    archive = _TimedArchive.open(unlocked)
    return archive, time.perf_counter() - start


def _import_folder(work: Path, case: str) -> dict[str, Any]:
    """Cases ``import`` and ``again``: every bundle in work/small, one at a time."""
    archive, open_s = _open_archive(work)
    folder = work / "small"
    sizes = [p.stat().st_size for p in hqimport.bundle_files(folder)]
    before = archive.count()
    latencies: list[float] = []
    step = max(1, len(sizes) // PROGRESS_STEPS)
    rss_before = _vm_rss_kib()
    with _timing():
        start = time.perf_counter()
        files = hqimport.bundle_files(folder)  # what import_path does first
        for n, path in enumerate(files, 1):
            t0 = time.perf_counter()
            outcome = hqimport.import_file(archive, path)
            latencies.append(time.perf_counter() - t0)
            if outcome.result is None or outcome.result.already_imported != (case == "again"):
                raise CaseFailed(f"{path.name}: {outcome}")
            if n % step == 0:
                rate = n / (time.perf_counter() - start)
                _log(f"[{case}] {n}/{len(files)} bundles, {rate:.0f}/s")
        seconds = time.perf_counter() - start
    peak = own_peak_kib()
    after = archive.count()
    archive.close()
    expected = before + (0 if case == "again" else len(files))
    if after != expected:
        raise CaseFailed(f"archive holds {after} testimonies, expected {expected}")
    return {
        "bundles": len(files),
        "bytes": sum(sizes),
        "seconds": seconds,
        "latencies": latencies,
        "split": SPLIT.net(),
        "archive_open_s": open_s,
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "testimonies_after": after,
        "database_bytes": database_bytes(Home(work / "hq").database),
    }


def _copy(src: Path, dst: Path) -> None:
    with src.open("rb") as source, dst.open("wb") as out:
        while block := source.read(COPY_BLOCK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _import_large(work: Path, case: str) -> dict[str, Any]:
    """Case ``large``: the one large bundle, then bare open_bundle and a copy of it.

    Case ``large-again``: the same bundle once more (already imported), alone.
    """
    again = case == "large-again"
    archive, open_s = _open_archive(work)
    (path,) = hqimport.bundle_files(work / "large")
    size = path.stat().st_size
    files_before = len(list(archive.home.attachments.iterdir()))
    rss_before = _vm_rss_kib()
    _log(f"[{case}] importing {path.name} ({size / MB:.0f} MB)")
    with _timing():
        start = time.perf_counter()
        outcome = hqimport.import_file(archive, path)
        import_s = time.perf_counter() - start
    import_peak = own_peak_kib()
    if outcome.result is None or outcome.result.already_imported != again:
        raise CaseFailed(f"{path.name}: {outcome}")
    stored = archive.attachments(outcome.result.testimony_id)
    if len(stored) != 1:
        raise CaseFailed(f"expected one attachment at HQ, found {len(stored)}")
    files_after = len(list(archive.home.attachments.iterdir()))
    if files_after != files_before + (0 if again else 1):
        raise CaseFailed(f"attachment files at HQ: {files_before} before, {files_after} after")
    keys = archive.box_keys()
    archive.close()
    result = {
        "bytes": size,
        "attachment_bytes": stored[0].size,
        "seconds": import_s,
        "split": SPLIT.net(),
        "archive_open_s": open_s,
        "rss_before_kib": rss_before,
        "peak_rss_kib": import_peak,
    }
    if again:
        return result

    _log("[large] reference: open_bundle into a null sink")
    reset_peak()
    sink = DiscardSink()
    start = time.perf_counter()
    with path.open("rb") as src:
        opened = open_bundle(src, keys, sink, trusts_device=lambda _key: True)
    bare_s = time.perf_counter() - start
    bare_peak = vm_hwm_kib() or 0
    if sink.length != opened.plaintext_length:
        raise CaseFailed("open_bundle wrote a different length than it declared")

    _log("[large] reference: copy the file (1 MiB blocks, fsync)")
    copy = work / "large-copy.tmp"
    reset_peak()
    start = time.perf_counter()
    try:
        _copy(path, copy)
        copy_s = time.perf_counter() - start
        copy_peak = vm_hwm_kib() or 0
    finally:
        copy.unlink(missing_ok=True)
    return result | {
        "payload_bytes": opened.plaintext_length,
        "open_bundle_s": bare_s,
        "open_bundle_peak_kib": bare_peak,
        "copy_s": copy_s,
        "copy_peak_kib": copy_peak,
    }


def _child(case: str, work: Path) -> int:
    large = case.startswith("large")
    result = _import_large(work, case) if large else _import_folder(work, case)
    json.dump(result, sys.stdout)
    return 0


def _run_child(case: str, work: Path) -> dict[str, Any]:
    """A fresh interpreter for one case; its progress goes straight to our stderr."""
    argv = [
        sys.executable,
        "-m",
        "bench.hq_import_bench",
        "--child",
        case,
        "--child-dir",
        str(work),
    ]
    proc = subprocess.run(
        argv, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1], check=False
    )
    if proc.returncode != 0:
        raise ChildFailed(f"{' '.join(argv)} exited {proc.returncode}")
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as e:
        raise ChildFailed(f"unexpected output from {' '.join(argv)}: {proc.stdout[:200]!r}") from e
    return result


# ---------------------------------------------------------------- setup, not timed


@dataclasses.dataclass
class Setup:
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    build_rates: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    sqlcipher: str = "?"


def _ready_testimony(corpus: Corpus) -> Testimony:
    """The next corpus testimony that is not a draft (those all have consent), made ready."""
    while True:
        t = corpus.testimony()
        if t.status is not Status.DRAFT:
            return dataclasses.replace(t, status=Status.READY)


def _identity(n: int) -> ProtectedIdentity:
    return ProtectedIdentity(
        name=f"Witness {n}", contact=f"+963 9{n:08d}", notes="met at the clinic"
    )


def _move_outbox(store: FieldStore, folder: Path) -> int:
    folder.mkdir()
    moved = 0
    for entry in os.scandir(store.home.outbox):
        if entry.is_file(follow_symlinks=False) and entry.name.endswith(hqimport.BUNDLE_SUFFIX):
            Path(entry.path).rename(folder / entry.name)
            moved += 1
    return moved


def _build(store: FieldStore, label: str, setup: Setup) -> None:
    start = time.perf_counter()
    last = [start]

    def progress(done: int, total: int) -> None:
        step = max(1, total // PROGRESS_STEPS)
        if done % step == 0 or done == total:
            now = time.perf_counter()
            rate = step / (now - last[0]) if done % step == 0 else 0.0
            last[0] = now
            if label == "small" and done % step == 0:
                setup.build_rates.append((done, rate))
            _log(f"[setup] build_bundles ({label}): {done}/{total}, {rate:.0f}/s")

    build_bundles(store, datetime.now(UTC), progress)
    setup.seconds[f"build_bundles, {label}"] = time.perf_counter() - start


def _set_up(work: Path, count: int, attachment: int, seed: int) -> Setup:
    setup = Setup()
    start = time.perf_counter()
    _log("[setup] HQ home, enrolment, monitor home (minimum-cost Argon2id)")
    new = create_hq_home(Home(work / "hq"), PASSPHRASE, PROTECTION_PASSPHRASE, kdf=CHEAP)
    with HqArchive.open(new.unlocked) as archive:
        enrolment = archive.new_enrolment(DEVICE_NAME)
        data = write_enrolment(archive.root_key(), enrolment)
        archive.record_enrolment(enrolment)
    conn = new.unlocked.open_database()
    try:
        setup.sqlcipher = (
            f"SQLCipher {pragma(conn, 'cipher_version')} "
            f"(SQLite {conn.execute('SELECT sqlite_version()').fetchone()[0]})"
        )
    finally:
        conn.close()
    read, trust = read_enrolment(data, now=int(time.time()))
    unlocked, _code = create_home(Home(work / "monitor"), PASSPHRASE, kdf=CHEAP)
    with FieldStore.open(unlocked) as store:
        enrol(store, read, trust)
        corpus = Corpus(seed, Vocabulary.load_default(), store.recorded_by)
        setup.seconds["homes and enrolment"] = time.perf_counter() - start
        if count:
            start = time.perf_counter()
            step = max(1, count // PROGRESS_STEPS)
            for n in range(count):
                t = _ready_testimony(corpus)
                store.create(t, identity=_identity(n) if t.witness_code else None)
                if (n + 1) % step == 0:
                    _log(f"[setup] testimonies: {n + 1}/{count}")
            setup.seconds["FieldStore.create, small"] = time.perf_counter() - start
            _build(store, "small", setup)
            _move_outbox(store, work / "small")
        if attachment:
            source = work / "attachment.bin"
            _log(f"[setup] writing {size_label(attachment)} of random data, attaching it")
            start = time.perf_counter()
            write_random(source, attachment)
            store.create(_ready_testimony(corpus), attach=[source])
            source.unlink()
            setup.seconds["FieldStore.create with the attachment"] = time.perf_counter() - start
            _build(store, "large", setup)
            _move_outbox(store, work / "large")
    shutil.rmtree(work / "monitor")  # its copy of the attachment is not needed any more
    return setup


# ---------------------------------------------------------------- report


def filesystem(path: Path) -> str:
    """Type, device and mount point of the filesystem holding ``path`` (from /proc/mounts)."""
    target = str(path.resolve())
    best = ("", "unknown", "unknown")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
            device, mount, fstype = line.split()[:3]
            mount = mount.replace("\\040", " ")
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, fstype, device)
    mount, fstype, device = best
    return f"{fstype} ({device} on {mount})"


def _table(rows: list[tuple[str, ...]], *, numbers_right: bool = True) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(w) if numbers_right and n and i and cell[:1].isdigit() else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.2f}" if values else "-"


def _small_rows(label: str, r: dict[str, Any]) -> list[tuple[str, ...]]:
    lat = r["latencies"]
    tenth = max(1, len(lat) // 10)
    rows: list[tuple[str, ...]] = [
        (
            label,
            f"{r['bundles']}",
            f"{r['seconds']:.1f}",
            f"{r['bundles'] / r['seconds']:.1f}",
            _ms(lat, 50),
            _ms(lat, 95),
            f"{max(lat) * 1000:.1f}",
            f"{r['bytes'] / MB / r['seconds']:.2f}",
            _mib(r["peak_rss_kib"]),
        )
    ]
    for part, chunk in (("first", lat[:tenth]), ("last", lat[-tenth:])):
        rows.append(
            (
                f"  {part} 10% of the bundles",
                f"{len(chunk)}",
                f"{sum(chunk):.1f}",
                f"{len(chunk) / sum(chunk):.1f}",
                _ms(chunk, 50),
                _ms(chunk, 95),
                f"{max(chunk) * 1000:.1f}",
                "",
                "",
            )
        )
    return rows


def _split_rows(label: str, r: dict[str, Any]) -> list[tuple[str, ...]]:
    total = r["seconds"]
    n = r.get("bundles", 1)
    parts: dict[str, float] = r["split"]
    rest = total - sum(parts.values())
    rows: list[tuple[str, ...]] = [(f"{label}: where the time goes", "ms per bundle", "share")]
    for part, seconds in [*parts.items(), ("other: listing, open(), fstat, bookkeeping", rest)]:
        if seconds == 0:
            continue  # no attachments in the small bundles
        rows.append((f"  {part}", f"{seconds / n * 1000:.3f}", f"{seconds / total:.0%}"))
    return rows


def _large_rows(r: dict[str, Any], again: dict[str, Any] | None) -> list[tuple[str, ...]]:
    size = r["bytes"]
    rows: list[tuple[str, ...]] = [
        ("case (one bundle, fresh process)", "bytes", "seconds", "MB/s", "peak RSS MiB",
         "time / import time"),
    ]  # fmt: skip
    cases = [("import_file (decrypt, verify, encrypt into archive, fsync, commit)", r)]
    if again is not None:
        cases.append(("import_file again (already imported: changes nothing)", again))
    measured = [(label, c["seconds"], c["peak_rss_kib"]) for label, c in cases]
    measured += [
        ("  same process: open_bundle -> null sink (decrypt + hash only)", r["open_bundle_s"],
         r["open_bundle_peak_kib"]),
        ("  same process: file copy, 1 MiB blocks + fsync", r["copy_s"], r["copy_peak_kib"]),
    ]  # fmt: skip
    for label, seconds, peak in measured:
        rows.append(
            (
                label,
                f"{size / MB:.1f} MB",
                f"{seconds:.2f}",
                f"{size / MB / seconds:.1f}",
                _mib(peak),
                f"{seconds / r['seconds']:.0%}",
            )
        )
    return rows


def _print_report(
    args: argparse.Namespace,
    header: str,
    setup: Setup,
    results: dict[str, dict[str, Any]],
    wall: float,
) -> None:
    print(header)
    print(
        "Each case in a fresh process (HQ unlocked with minimum-cost Argon2id, archive opened, "
        "then only the import timed); warm page cache (bundles just written, not dropped). "
        "MB = 10^6 bytes of bundle file per wall second. Peak RSS = VmHWM of the importing "
        "process, interpreter and imports included."
    )
    print()
    small = [(k, v) for k, v in results.items() if k in {"import", "again"}]
    if small:
        first = small[0][1]
        print(
            f"Small bundles: {first['bundles']} bundles, one ~1 KiB testimony each (seed "
            f"{args.seed}; ~90% with a sealed witness identity), no attachment; "
            f"{first['bytes'] / first['bundles']:.0f} bytes per bundle on average."
        )
        rows: list[tuple[str, ...]] = [
            ("case", "bundles", "wall s", "bundles/s", "p50 ms", "p95 ms", "max ms", "MB/s",
             "peak RSS MiB"),
        ]  # fmt: skip
        labels = {"import": "import (new bundles)", "again": "re-import (all already here)"}
        for case, r in small:
            rows += _small_rows(labels[case], r)
        print(_table(rows))
        print()
        for case, r in small:
            print(_table(_split_rows(labels[case], r)))
            print()
    if "large" in results:
        r = results["large"]
        print(
            f"Large bundle: one testimony with a {size_label(r['attachment_bytes'])} attachment "
            f"(random data); bundle {r['bytes']:,} bytes, payload {r['payload_bytes']:,} bytes."
        )
        again = results.get("large-again")
        print(_table(_large_rows(r, again)))
        bounded = r["peak_rss_kib"] / 1024 < RSS_GOAL_MIB
        print(
            f"Import peak RSS {_mib(r['peak_rss_kib'])} MiB against "
            f"{_mib(r['rss_before_kib'])} MiB when the import started: "
            + (f"bounded (< {RSS_GOAL_MIB} MiB)." if bounded else f"NOT under {RSS_GOAL_MIB} MiB.")
            + " The references run after the import with VmHWM reset (clear_refs) before each."
        )
        print()
        print(_table(_split_rows("large import", r)))
        print()
        if again is not None:
            print(_table(_split_rows("large re-import", again)))
            print()
    other: list[tuple[str, ...]] = [("other (info)", "value")]
    for case, r in results.items():
        other.append(
            (f"{case}: HqArchive.open before timing", f"{r['archive_open_s'] * 1000:.1f} ms")
        )
        other.append(
            (f"{case}: RSS when the timed import started", f"{_mib(r['rss_before_kib'])} MiB")
        )
    if "import" in results:
        r = results["import"]
        other.append(
            (
                f"HQ database after {r['testimonies_after']} testimonies",
                f"{r['database_bytes'] / MB:.1f} MB",
            )
        )
    for label, seconds in setup.seconds.items():
        other.append((f"setup: {label}", f"{seconds:.1f} s"))
    if setup.build_rates:
        other.append(
            (
                "setup: build_bundles rate by progress",
                ", ".join(f"{done}: {rate:.0f}/s" for done, rate in setup.build_rates),
            )
        )
    other.append(("benchmark wall time", f"{wall:.0f} s"))
    other.append(("1-min load at the end (start: first line)", f"{os.getloadavg()[0]:.2f}"))
    print(_table(other, numbers_right=False))


# ---------------------------------------------------------------- main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hq_import_bench",
        description="HQ import rate: many small bundles, one large attachment, re-import.",
    )
    parser.add_argument("--count", type=int, default=10_000, help="small bundles (default 10000)")
    parser.add_argument(
        "--attachment-mib", type=int, default=1024, help="large attachment in MiB (default 1024)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/var/tmp"),  # noqa: S108 -- on disk, not tmpfs; a private subfolder
        help="where the temporary folder goes (default /var/tmp: a disk, not tmpfs)",
    )
    parser.add_argument("--seed", type=int, default=20161210, help="corpus seed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 0 or args.attachment_mib < 0 or not (args.count or args.attachment_mib):
        parser.error("--count and --attachment-mib must not be negative, nor both zero")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child is not None:
        return _child(args.child, args.child_dir)
    wall = time.perf_counter()
    attachment = args.attachment_mib * MIB
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fieldapp-hq-import-bench-", dir=args.work_dir))
    results: dict[str, dict[str, Any]] = {}
    try:
        need = args.count * BYTES_PER_BUNDLE + int(attachment * LARGE_FILES) + 64 * MIB
        free = shutil.disk_usage(work).free
        if free < need:
            print(f"bench: {work} has {free / MB:.0f} MB free, wants {need / MB:.0f} MB")
            return 1
        fs = filesystem(work)
        if fs.startswith("tmpfs"):
            _log(f"[warning] {work} is on tmpfs: bundles and archive live in RAM")
        fsync = fsync_ms(work)
        info = machine(None)
        setup = _set_up(work, args.count, attachment, args.seed)
        header = (
            f"{info['cpu']}, {info['cores']} cores | Python {info['python']} | "
            f"{setup.sqlcipher} | {info['sodium']} | {info['os']} | "
            f"{args.work_dir}: {fs}, 4 KiB write+fsync {fsync:.2f} ms | "
            f"1-min load at start {info['load_1min']}"
        )
        _log(header)
        cases = (["import", "again"] if args.count else []) + (
            ["large", "large-again"] if attachment else []
        )
        for case in cases:
            _log(f"[{case}] fresh process")
            results[case] = _run_child(case, work)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    wall_s = time.perf_counter() - wall
    _print_report(args, header, setup, results, wall_s)
    if args.json is not None:
        doc = {
            "machine": header,
            "count": args.count,
            "attachment_bytes": attachment,
            "setup_s": setup.seconds,
            "results": results,
            "wall_s": wall_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
