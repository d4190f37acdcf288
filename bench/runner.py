"""``python -m bench``: time the bundle envelope against raw secretstream (and age)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import report
from bench.agetool import Age, find_age
from bench.files import DEFAULT_SIZES, check_space, parse_sizes, size_label, write_random
from bench.measure import ChildFailed, Run, run_python_case, run_tool
from bench.report import Result

ROOT = Path(__file__).resolve().parent.parent
CASE_ORDER = ("raw push", "raw pull", "seal", "open", "age encrypt", "age decrypt")


def _sizes(text: str) -> list[int]:
    try:
        return parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Seal/open throughput and peak RSS of the bundle envelope.",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=parse_sizes(DEFAULT_SIZES),
        help=f"comma-separated payload sizes, K/M/G = KiB/MiB/GiB (default {DEFAULT_SIZES})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--tmpdir", type=Path, default=Path(tempfile.gettempdir()), help="where files go"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _python_case(case: str, src: Path, dst: Path) -> Callable[[], Run]:
    argv = [sys.executable, "-m", "bench.case", case, str(src), str(dst)]
    return lambda: run_python_case(argv, cwd=ROOT)


def _commands(work: Path, plain: Path, age: Age | None) -> dict[str, Callable[[], Run] | None]:
    raw, bundle, aged = work / "raw.stream", work / "payload.bundle", work / "payload.age"
    return {
        "raw push": _python_case("push", plain, raw),
        "raw pull": _python_case("pull", raw, raw),
        "seal": _python_case("seal", plain, bundle),
        "open": _python_case("open", bundle, bundle),
        "age encrypt": None if age is None else lambda: run_tool(age.encrypt_argv(plain, aged)),
        "age decrypt": None if age is None else lambda: run_tool(age.decrypt_argv(aged)),
    }


def _bench_size(work: Path, size: int, repeat: int, age: Age | None) -> list[Result]:
    """All cases for one payload size, interleaved round by round; files removed after."""
    plain = work / "plaintext.bin"
    label = size_label(size)
    print(f"[{label}] writing {plain}", file=sys.stderr, flush=True)
    write_random(plain, size)
    commands = _commands(work, plain, age)
    runs: dict[str, list[Run]] = {case: [] for case in CASE_ORDER}
    try:
        for round_no in range(1, repeat + 1):
            for case in CASE_ORDER:
                command = commands[case]
                if command is None:
                    continue
                print(f"[{label}] run {round_no}/{repeat}: {case}", file=sys.stderr, flush=True)
                runs[case].append(command())
    finally:
        for path in work.iterdir():
            if path.suffix != ".txt":  # keep the age identity for the next size
                path.unlink()
    return [
        Result(
            case=case,
            size=size,
            seconds=tuple(r.seconds for r in runs[case]),
            peak_rss_kib=max((r.peak_rss_kib for r in runs[case]), default=0),
        )
        for case in CASE_ORDER
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fieldapp-bench-", dir=args.tmpdir))
    try:
        check_space(work, args.sizes)
        age = find_age(work)
        info = report.machine(age.version if age else None)
        results: list[Result] = []
        for size in args.sizes:
            results.extend(_bench_size(work, size, args.repeat, age))
    except (OSError, ChildFailed) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report.machine_line(info))
    print(report.legend(args.repeat))
    print()
    print(report.table(results))
    if args.json is not None:
        report.write_json(args.json, info, args.repeat, results)
        print(f"\nJSON written to {args.json}")
    return 0
