"""The home ``bench.ui_bench`` drives: N testimonies, built once, reusable with ``--home-dir``.

Layout of the build folder::

    ui_bench.json              what was built (count, seed, build time); "complete" is
                               written last, so an interrupted build is never reused
    home/                      a real fieldapp home (keyslots, device key, SQLCipher store)
    keyslots-production.json   the keyslot file create_home wrote with PRODUCTION_KDF
    keyslots-cheap.json        the same master key, passphrase slot rewrapped with
                               libsodium's minimum Argon2id cost

Both keyslot files open the same master key, so one 100,000-record database
serves both measurements: ``use_keyslots`` copies one of them into the home
before a run. The testimonies come from ``bench.store_corpus`` (seeded, ~1 KiB
narrative, Arabic and Latin mixed) and are saved one by one through the
unmodified ``FieldStore.create`` in one process (one transaction each, as the
UI saves), with the store benchmark's seeded clock and random bytes so that a
seed always gives the same ids and timestamps.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from bench.store_corpus import Corpus
from bench.store_engines import DeterministicClock, seeded_random
from crypto.kdf import KDF_MINIMUM, PRODUCTION_KDF
from fieldapp.domain import Vocabulary
from fieldapp.store.home import Home
from fieldapp.store.schema import SCHEMA_VERSION
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import KdfPolicy, change_passphrase, create_home

PASSPHRASE = "ui benchmark passphrase, not a secret"  # noqa: S105 -- a throwaway bench home
CHEAP_KDF = KdfPolicy(params=KDF_MINIMUM, floor=KDF_MINIMUM)
MARKER = "ui_bench.json"
FORMAT = 2
CHUNK = 1000
BYTES_PER_RECORD = 12_000  # database + WAL + margin; the store takes ~7.5 kB per testimony

Variant = Literal["production", "cheap"]


@dataclass(frozen=True, slots=True)
class Built:
    root: Path
    home: Home
    count: int
    seed: int
    build_s: float  # generating + saving every testimony (0 when reused: see built_s)
    built_s: float  # what the original build took
    reused: bool
    db_bytes: int


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _read_marker(root: Path) -> dict[str, object] | None:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, data: dict[str, object]) -> None:
    tmp = root / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / MARKER)


def db_bytes(home: Home) -> int:
    return sum(p.stat().st_size for p in home.database_files() if p.exists())


def _identity(count: int, seed: int) -> dict[str, object]:
    """What a reusable build must match: a store schema or KDF change means rebuilding."""
    return {
        "format": FORMAT,
        "count": count,
        "seed": seed,
        "schema_version": SCHEMA_VERSION,
        "production_kdf": [PRODUCTION_KDF.ops, PRODUCTION_KDF.mem],
    }


def _clear_previous(root: Path) -> None:
    """Remove an earlier (other count/seed, or interrupted) build of ours, nothing else."""
    for name in ("home",):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in ("keyslots-production.json", "keyslots-cheap.json", MARKER):
        (root / name).unlink(missing_ok=True)


def prepare(root: Path, count: int, seed: int) -> Built:
    """Reuse the build in ``root`` if it holds ``count`` testimonies of ``seed``, else build.

    Refuses a non-empty folder that is not one of our builds.
    """
    root.mkdir(parents=True, exist_ok=True)
    home = Home(root / "home")
    marker = _read_marker(root)
    wanted = _identity(count, seed)
    if (
        marker is not None
        and all(marker.get(k) == v for k, v in wanted.items())
        and marker.get("complete") is True
        and home.is_set_up()
    ):
        built_s = float(cast("float", marker.get("build_s", 0.0)))
        _log(f"[build] reusing {root} ({count} testimonies, seed {seed}, built in {built_s:.0f} s)")
        return Built(root, home, count, seed, 0.0, built_s, reused=True, db_bytes=db_bytes(home))
    if marker is None and any(root.iterdir()):
        raise SystemExit(f"bench: {root} is not empty and holds no {MARKER}; choose another folder")
    _clear_previous(root)
    free = shutil.disk_usage(root).free
    if free < count * BYTES_PER_RECORD:
        want = count * BYTES_PER_RECORD / 1e6
        raise SystemExit(f"bench: {root} has {free / 1e6:.0f} MB free, wants {want:.0f} MB")
    _write_marker(root, {**wanted, "complete": False})
    build_s = _build(root, home, count, seed)
    _write_marker(root, {**wanted, "complete": True, "build_s": round(build_s, 1)})
    return Built(root, home, count, seed, build_s, build_s, reused=False, db_bytes=db_bytes(home))


def _build(root: Path, home: Home, count: int, seed: int) -> float:
    _log(f"[build] {count} testimonies into {root} (seed {seed})")
    start = time.perf_counter()
    unlocked, _code = create_home(home, PASSPHRASE, kdf=KdfPolicy())  # PRODUCTION_KDF slots
    _copy_private(home.keyslots, root / "keyslots-production.json")
    _log(f"[build] create_home with PRODUCTION_KDF: {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    vocabulary = Vocabulary.load_default()
    conn = unlocked.open_database()
    store = FieldStore(unlocked, conn, vocabulary, DeterministicClock(), seeded_random(seed))
    corpus = Corpus(seed, vocabulary, store.recorded_by)
    done = 0
    try:
        while done < count:
            for testimony in corpus.batch(min(CHUNK, count - done)):
                store.create(testimony)
                done += 1
            if done % (10 * CHUNK) == 0 or done == count:
                rate = done / (time.perf_counter() - start)
                _log(f"[build]   {done}/{count}, {rate:.0f}/s")
    finally:
        conn.close()
    build_s = time.perf_counter() - start

    # A second keyslot file for the same master key: the passphrase slot at minimum cost.
    change_passphrase(home, PASSPHRASE, PASSPHRASE, kdf=CHEAP_KDF)
    _copy_private(home.keyslots, root / "keyslots-cheap.json")
    use_keyslots(root, home, "production")
    return build_s


def _copy_private(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` atomically, mode 0600."""
    tmp = dst.with_name(f".{dst.name}.bench-tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(0o600)
    tmp.replace(dst)


def use_keyslots(root: Path, home: Home, variant: Variant) -> None:
    """Put the ``variant`` keyslot file in place as the home's keyslot file."""
    _copy_private(root / f"keyslots-{variant}.json", home.keyslots)
