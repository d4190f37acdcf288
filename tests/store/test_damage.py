"""A home that is attacked, damaged or erased: refuse, never return wrong data, change nothing.

Every case here is something a monitor's laptop meets in the field: a wrong
passphrase typed at a checkpoint, a disk that flips bytes, an attachment file
swapped by someone who had the laptop for an hour, a shared machine with umask
022, the panic button. The rule is always the same: either the exact original
data, or one of our own errors (one line, a known exit code), and the home is
left as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto.attachment import AttachmentDamaged
from crypto.errors import WrongSecret
from crypto.revisions import RevisionError
from fieldapp.cli import CliState, run
from fieldapp.domain import ProtectedIdentity
from fieldapp.errors import ExitCode
from fieldapp.store.errors import DatabaseDamaged, HomeMissing, StoreError
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import (
    Unlocked,
    change_passphrase,
    create_home,
    new_recovery_code,
    panic,
    unlock_home,
)
from tests.store.conftest import ARABIC, CHEAP, PASSPHRASE, Clock, make_testimony

PAGE_SIZE = 4096  # SQLCipher 4's default, which open_database keeps
WRONG = "correct horse battery stable"  # one letter off
RECORDS = 50
SEARCHES = ("حاجز", "الحاجز", "Bustan", "word1", "record-17", "nothing-matches-this")


# ------------------------------------------------------------------ helpers


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` (and itself) with its mtime and bytes (None for a folder).

    A folder's mtime moves when a file is created in it, even one removed again.
    """
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
        for p in [root, *sorted(root.rglob("*"))]
    }


def cli(home: Home, *argv: str) -> tuple[int, str, str]:
    """The CLI in-process on ``home`` with cheap Argon2id for anything it creates."""
    out, err = io.StringIO(), io.StringIO()
    code = run(
        ["--home", str(home.root), *argv],
        stdout=out,
        stderr=err,
        state=CliState(kdf=CHEAP, environ={}, clock=Clock()),
    )
    return code, out.getvalue(), err.getvalue()


def cli_process(*argv: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """The real ``fieldapp`` program in a child process started with ``umask``."""
    return subprocess.run(
        [sys.executable, "-m", "fieldapp", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(umask),
    )


def assert_one_line(err: str) -> None:
    assert err.startswith("fieldapp: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    return path


@pytest.fixture
def wrong_file(tmp_path: Path) -> Path:
    path = tmp_path / "wrong-passphrase"
    path.write_text(WRONG + "\n", encoding="utf-8")
    return path


@pytest.fixture
def populated(home: Home, tmp_path: Path) -> Home:
    """A closed home with two testimonies, two revisions, an identity and an attachment."""
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(70_000))
    with FieldStore.open(unlocked, clock=Clock()) as store:
        first = store.create(make_testimony(store), attach=[photo])
        store.update(first.id, dataclasses.replace(first.testimony, narrative="second words"))
        store.create(make_testimony(store, narrative="Shelling of the market in Douma."))
    return home


# ------------------------------------------------------------------ wrong passphrase


def test_a_wrong_passphrase_through_the_api_changes_no_byte(populated: Home) -> None:
    before = snapshot(populated.root)
    attempts: list[Callable[[], object]] = [
        lambda: unlock_home(populated, WRONG),
        lambda: unlock_home(populated, "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"),  # recovery-code shaped
        lambda: change_passphrase(populated, WRONG, "a brand new passphrase", kdf=CHEAP),
        lambda: new_recovery_code(populated, WRONG, kdf=CHEAP),
    ]
    for attempt in attempts:
        with pytest.raises(WrongSecret):
            attempt()
        assert snapshot(populated.root) == before
    unlock_home(populated, PASSPHRASE)  # the right one still works


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["record", "list"],
        ["record", "show", "0000"],
        ["search", "حاجز"],
        ["keys", "show"],
        ["keys", "recovery"],
        ["record", "add", "--narrative-file", "NARRATIVE", "--place", "Aleppo"],
        ["record", "edit", "0000", "--narrative-file", "NARRATIVE"],
        ["keys", "passphrase", "--new-passphrase-file", "NEW"],
    ],
    ids=lambda argv: "-".join(argv[:2]),
)
def test_a_wrong_passphrase_on_the_cli_exits_3_with_one_line_and_changes_no_byte(
    populated: Home, wrong_file: Path, tmp_path: Path, argv: list[str]
) -> None:
    narrative = tmp_path / "narrative.txt"
    narrative.write_text(ARABIC, encoding="utf-8")
    new = tmp_path / "new-passphrase"
    new.write_text("a brand new passphrase\n", encoding="utf-8")
    argv = [{"NARRATIVE": str(narrative), "NEW": str(new)}.get(a, a) for a in argv]
    before = snapshot(populated.root)
    code, out, err = cli(populated, *argv, "--passphrase-file", str(wrong_file))
    assert code == ExitCode.AUTH
    assert out == ""
    assert_one_line(err)
    assert snapshot(populated.root) == before


def test_a_wrong_passphrase_in_a_real_process_exits_3_with_one_line(
    populated: Home, wrong_file: Path
) -> None:
    before = snapshot(populated.root)
    done = cli_process("--home", str(populated.root), "check", "--passphrase-file", str(wrong_file))
    assert done.returncode == ExitCode.AUTH
    assert done.stdout == ""
    assert_one_line(done.stderr)
    assert snapshot(populated.root) == before


# ------------------------------------------------------------------ damaged database


def _seeded(seed: int) -> Callable[[int], bytes]:
    """Record ids and witness codes from a seed, so the database's layout is the same each run."""
    return random.Random(seed).randbytes  # noqa: S311 -- a reproducible layout, no secret


def _damage(database: Path, offset: int) -> None:
    """Overwrite three bytes at ``offset`` with different ones."""
    with database.open("r+b") as f:
        f.seek(offset)
        original = f.read(3)
        assert len(original) == 3
        f.seek(offset)
        f.write(bytes(b ^ 0x5A for b in original))


@dataclasses.dataclass(frozen=True)
class Pristine:
    """A closed, checkpointed home and what every read of it returns."""

    root: Path
    ids: tuple[str, ...]
    pages: int
    api: dict[str, Any]
    cli: dict[tuple[str, ...], tuple[int, str, str]]


def _api_reads(store: FieldStore, ids: tuple[str, ...]) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, read) for every way the store hands data out."""
    yield "count", store.count
    yield "page", lambda: store.page(limit=1000)
    yield "outbox", store.outbox
    yield "verify_all", store.verify_all
    for query in SEARCHES:
        yield f"search {query}", functools.partial(store.search, query)
    for rid in ids:
        yield f"get {rid}", functools.partial(store.get, rid)
        yield f"history {rid}", functools.partial(store.history, rid)


def _cli_reads(ids: tuple[str, ...]) -> list[tuple[str, ...]]:
    reads: list[tuple[str, ...]] = [("record", "list", "--json", "--limit", "1000")]
    reads += [("search", query, "--json") for query in SEARCHES[:3]]
    reads += [("record", "show", rid, "--json", "--history", "--identity") for rid in ids]
    return reads


def _build_pristine(root: Path, records: int, words: int) -> Pristine:
    home = Home(root)
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    with FieldStore.open(unlocked, clock=Clock(), random_bytes=_seeded(records)) as store:
        ids = []
        for i in range(records):
            # Long narratives spread the records over many pages, some of them overflow pages.
            narrative = f"{ARABIC} record-{i} " + " ".join(f"word{k}" for k in range(words * i))
            saved = store.create(
                make_testimony(store, narrative=narrative),
                identity=ProtectedIdentity(name=f"شاهد {i}", contact=f"+963 {i:04d}"),
            )
            if i % 3 == 0:
                store.update(saved.id, dataclasses.replace(saved.testimony, narrative="تصحيح"))
            ids.append(saved.id)
        api = {name: read() for name, read in _api_reads(store, tuple(ids))}
        assert store.integrity_problems() == []
    # Closing the last connection checkpoints the WAL into the database and removes it.
    assert not any(p.exists() for p in home.database_files()[1:])
    passphrase = root.parent / "passphrase"
    passphrase.write_text(PASSPHRASE, encoding="utf-8")
    expected = {
        argv: cli(home, *argv, "--passphrase-file", str(passphrase))
        for argv in _cli_reads(tuple(ids))
    }
    assert all(code == ExitCode.OK for code, _, _ in expected.values())
    assert cli(home, "check", "--passphrase-file", str(passphrase))[0] == ExitCode.OK
    pages = home.database.stat().st_size // PAGE_SIZE
    return Pristine(root, tuple(ids), pages, api, expected)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    return _build_pristine(tmp_path_factory.mktemp("pristine") / "home", RECORDS, 40)


# (name, page: a number or a fraction of the file, offset inside the page)
DAMAGE_CASES: list[tuple[str, float, int]] = [
    ("page1-salt", 1, 0),
    ("page1-salt-end", 1, 13),
    ("page1-header", 1, 16),
    ("page1-schema", 1, 1500),
    ("page1-hmac", 1, PAGE_SIZE - 40),
]
for _page in (2, 3, 0.2, 0.4, 0.6, 0.8, 1.0):
    for _name, _within in (("data", 700), ("tail", 3900), ("hmac", PAGE_SIZE - 3)):
        DAMAGE_CASES.append((f"page{_page}-{_name}", _page, _within))


def _page_number(spec: float, pages: int) -> int:
    return int(spec) if isinstance(spec, int) else max(2, min(pages, round(spec * pages)))


REFUSED = "refused with DatabaseDamaged"
BROKEN_CHAIN = "refused with RevisionError"


def _outcome(read: Callable[[], Any]) -> Any:
    """What ``read`` returns, or which of the refusals it raised."""
    try:
        return read()
    except DatabaseDamaged:
        return REFUSED
    except RevisionError:
        return BROKEN_CHAIN


def _read_fresh(unlocked: Unlocked, ids: tuple[str, ...], name: str) -> Any:
    with FieldStore.open(unlocked, clock=Clock()) as store:
        return dict(_api_reads(store, ids))[name]()


@pytest.mark.parametrize(
    ("where", "page", "within"), DAMAGE_CASES, ids=[c[0] for c in DAMAGE_CASES]
)
def test_three_damaged_bytes_are_refused_never_read_as_data(
    pristine: Pristine, tmp_path: Path, where: str, page: float, within: int
) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(pristine.root, home.root)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE, encoding="utf-8")
    _damage(home.database, (_page_number(page, pristine.pages) - 1) * PAGE_SIZE + within)
    unlocked = unlock_home(home, PASSPHRASE)  # the keys are not in the database

    # One connection per read, as each CLI command has (one long-lived connection: below).
    for name, original in pristine.api.items():
        got = _outcome(functools.partial(_read_fresh, unlocked, pristine.ids, name))
        if got == BROKEN_CHAIN:
            # SQLCipher's known gap, pinned by an xfail test below: a refusal, not wrong data.
            assert name.split(maxsplit=1)[0] in {"history", "verify_all"}, (where, name)
        else:
            assert got in (REFUSED, original), f"{where}: {name} returned changed data"

    def problems() -> list[str]:
        with FieldStore.open(unlocked, clock=Clock()) as store:
            return store.integrity_problems()

    assert _outcome(problems) not in ([], BROKEN_CHAIN), f"{where}: integrity_problems() missed it"

    for argv, expected in pristine.cli.items():
        code, out, err = cli(home, *argv, "--passphrase-file", str(passphrase))
        if code == ExitCode.OK:
            assert (code, out, err) == expected, f"{where}: {argv} returned changed data"
            continue
        assert out == "", (where, argv)
        assert_one_line(err)
        assert code == ExitCode.DATA or (
            # The same gap: `show --history` reports a broken chain (exit 1), see below.
            code == ExitCode.ERROR and "--history" in argv and "revision history" in err
        ), f"{where}: {argv} exited {code}: {err}"

    code, out, err = cli(home, "check", "--passphrase-file", str(passphrase))
    assert code == ExitCode.DATA, f"{where}: check did not report the damage: {out}{err}"
    assert out == ""
    assert_one_line(err)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """Few long records, so that every page can be damaged in turn."""
    return _build_pristine(tmp_path_factory.mktemp("small") / "home", 6, 600)


def _each_damaged_page(pristine: Pristine, tmp_path: Path) -> Iterator[tuple[int, Home]]:
    """The home with page 2, then 3, ... damaged (page 1 refuses the open: tested above)."""
    home = Home(tmp_path / "home")
    shutil.copytree(pristine.root, home.root)
    image = home.database.read_bytes()
    for page in range(2, pristine.pages + 1):
        home.database.write_bytes(image)
        _damage(home.database, (page - 1) * PAGE_SIZE + 700)
        yield page, home


def test_every_damaged_page_under_a_revision_is_reported_as_damage(
    small: Pristine, tmp_path: Path
) -> None:
    unlocked = unlock_home(Home(small.root), PASSPHRASE)
    failures = []
    for page, home in _each_damaged_page(small, tmp_path):
        damaged = dataclasses.replace(unlocked, home=home)
        for rid in small.ids:
            got = _outcome(functools.partial(_read_fresh, damaged, small.ids, f"history {rid}"))
            if got not in (REFUSED, small.api[f"history {rid}"]):
                failures.append(f"page {page}: history({rid}) gave {str(got)[:40]}")
    assert failures == []


@pytest.mark.xfail(
    strict=True,
    reason=(
        "product bug: on one long-lived connection (the TUI's), a search over a damaged "
        "FTS page silently leaves out a matching record instead of raising DatabaseDamaged "
        "(store.py search; SQLCipher zero-fills the page and FTS5 reads it as data)"
    ),
)
def test_every_damaged_page_under_the_index_is_refused_by_a_long_lived_store(
    small: Pristine, tmp_path: Path
) -> None:
    unlocked = unlock_home(Home(small.root), PASSPHRASE)
    failures = []
    for page, home in _each_damaged_page(small, tmp_path):
        store = _outcome(
            functools.partial(FieldStore.open, dataclasses.replace(unlocked, home=home))
        )
        if store == REFUSED:
            continue
        with store:
            for query in (*SEARCHES, *SEARCHES):
                got = _outcome(functools.partial(store.search, query))
                expected = {r.id for r in small.api[f"search {query}"]}
                # The ranking may move with damaged statistics; the records found may not.
                if got != REFUSED and {r.id for r in got} != expected:
                    failures.append(f"page {page}: search {query!r} missed or added records")
    assert failures == []


def test_a_tampered_history_exits_4_on_the_cli(populated: Home, passphrase_file: Path) -> None:
    """Tampering by someone holding the key: the chain catches it; the exit code says DATA."""
    unlocked = unlock_home(populated, PASSPHRASE)
    with FieldStore.open(unlocked) as store:
        rid = store.page()[-1].id  # the first testimony: it has two revisions
        payload = store.revisions(rid)[0].payload.replace(b'"ar"', b'"en"', 1)
    conn = unlocked.open_database()
    try:
        conn.execute("DROP TRIGGER revisions_append_only_update")
        conn.execute(
            "UPDATE revisions SET payload = ? WHERE testimony_id = ? AND seq = 1", (payload, rid)
        )
    finally:
        conn.close()
    for argv in (["record", "show", rid, "--history"], ["check"]):
        code, out, err = cli(populated, *argv, "--passphrase-file", str(passphrase_file))
        assert out == ""
        assert_one_line(err)
        assert "revision history does not verify" in err
        assert code == ExitCode.DATA, argv


# ------------------------------------------------------------------ damaged attachment


@pytest.fixture
def with_attachments(home: Home, tmp_path: Path) -> tuple[FieldStore, list[tuple[str, bytes]]]:
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    store = FieldStore.open(unlocked, clock=Clock())
    contents = [os.urandom(200_000), b"a short note", os.urandom(65_536)]
    paths = []
    for i, content in enumerate(contents):
        paths.append(tmp_path / f"file-{i}.bin")
        paths[-1].write_bytes(content)
    saved = store.create(make_testimony(store), attach=paths)
    refs = [
        (a.attachment_id, c) for a, c in zip(saved.testimony.attachments, contents, strict=True)
    ]
    return store, refs


def _stored_file(store: FieldStore, home: Home, attachment_id: str) -> Path:
    """The random on-disk name of an attachment: only the database knows it."""
    row = store._conn.execute(
        "SELECT stored_name FROM attachments WHERE id = ?", (attachment_id,)
    ).fetchone()
    path = home.attachments / str(row[0])
    assert path.is_file()
    return path


@pytest.mark.parametrize(
    "damage",
    ["first-byte", "second-chunk", "last-byte", "truncated", "extended", "swapped"],
)
def test_a_damaged_attachment_raises_attachment_damaged_and_nothing_else(
    with_attachments: tuple[FieldStore, list[tuple[str, bytes]]], home: Home, damage: str
) -> None:
    store, refs = with_attachments
    with store:
        (big_id, _), (small_id, small), _ = refs
        path = _stored_file(store, home, big_id)
        data = bytearray(path.read_bytes())
        match damage:
            case "first-byte":
                data[0] ^= 0x01
            case "second-chunk":
                data[70_000] ^= 0x80
            case "last-byte":
                data[-1] ^= 0x01
            case "truncated":
                del data[-17:]
            case "extended":
                data += b"\x00"
            case "swapped":
                data = bytearray(_stored_file(store, home, small_id).read_bytes())
        path.write_bytes(bytes(data))
        with pytest.raises(AttachmentDamaged) as caught:
            store.read_attachment(big_id, io.BytesIO())
        assert type(caught.value) is AttachmentDamaged
        # The other attachments and the record itself are untouched.
        out = io.BytesIO()
        store.read_attachment(small_id, out)
        assert out.getvalue() == small
        assert store.get(store.page()[0].id).testimony.narrative == ARABIC


# ------------------------------------------------------------------ permissions


def _modes(root: Path) -> dict[str, int]:
    modes = {".": root.stat().st_mode & 0o777}
    modes |= {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")}
    return modes


def _assert_private(root: Path) -> None:
    for name, mode in _modes(root).items():
        path = root / name
        want = 0o700 if path.is_dir() else 0o600
        assert mode == want, f"{name} is {mode:o}, not {want:o}"


def test_a_real_init_and_add_under_umask_022_leave_only_private_files(
    tmp_path: Path, passphrase_file: Path
) -> None:
    home = Home(tmp_path / "home")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8" + os.urandom(5000))
    narrative = tmp_path / "narrative.txt"
    narrative.write_text(ARABIC, encoding="utf-8")
    # Production Argon2id here (a real `init`): about a second, once.
    done = cli_process("--home", str(home.root), "init", "--passphrase-file", str(passphrase_file))
    assert done.returncode == 0, done.stderr
    _assert_private(home.root)
    done = cli_process(
        "--home",
        str(home.root),
        "record",
        "add",
        "--narrative-file",
        str(narrative),
        "--place",
        "Aleppo",
        "--attach",
        str(photo),
        "--witness-name",
        "أحمد",
        "--passphrase-file",
        str(passphrase_file),
    )
    assert done.returncode == 0, done.stderr
    _assert_private(home.root)
    assert len(list(home.attachments.iterdir())) == 1
    old = os.umask(0o022)
    try:
        with FieldStore.open(unlock_home(home, PASSPHRASE)) as store:
            store.create(make_testimony(store))  # the WAL now holds a transaction
            wal, shm = home.database_files()[1:3]
            assert wal.exists() and shm.exists()
            _assert_private(home.root)
    finally:
        os.umask(old)


def test_the_in_process_cli_under_umask_022_leaves_only_private_files(
    tmp_path: Path, passphrase_file: Path
) -> None:
    """Without main()'s umask: the store itself must make its files private."""
    home = Home(tmp_path / "home")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(5000))
    narrative = tmp_path / "narrative.txt"
    narrative.write_text(ARABIC, encoding="utf-8")
    old = os.umask(0o022)
    try:
        assert cli(home, "init", "--passphrase-file", str(passphrase_file))[0] == 0
        code, _, err = cli(
            home,
            "record",
            "add",
            *("--narrative-file", str(narrative), "--place", "Aleppo", "--attach", str(photo)),
            *("--passphrase-file", str(passphrase_file)),
        )
        assert code == 0, err
        _assert_private(home.root)
        with FieldStore.open(unlock_home(home, PASSPHRASE)) as store:
            store.create(make_testimony(store))
            assert home.database_files()[1].exists()
            _assert_private(home.root)
    finally:
        os.umask(old)


# ------------------------------------------------------------------ missing home, init


def test_a_missing_home_exits_1_with_one_line_and_is_not_created(
    tmp_path: Path, passphrase_file: Path
) -> None:
    missing = Home(tmp_path / "nowhere")
    for argv in (["record", "list"], ["check"], ["keys", "show"], ["search", "x"]):
        code, out, err = cli(missing, *argv, "--passphrase-file", str(passphrase_file))
        assert (code, out) == (ExitCode.ERROR, ""), argv
        assert_one_line(err)
    done = cli_process(
        "--home", str(missing.root), "record", "list", "--passphrase-file", str(passphrase_file)
    )
    assert done.returncode == ExitCode.ERROR
    assert_one_line(done.stderr)
    code, _, err = cli(missing, "panic", "--yes")
    assert code == ExitCode.ERROR
    assert_one_line(err)
    assert not missing.root.exists()


def test_init_refuses_a_folder_that_is_not_empty_and_leaves_it_untouched(
    tmp_path: Path, passphrase_file: Path, populated: Home
) -> None:
    folder = Home(tmp_path / "my-documents")
    folder.root.mkdir()
    (folder.root / "notes.txt").write_text("my own notes", encoding="utf-8")
    (folder.root / "sub").mkdir()
    for target in (folder, populated):
        before = snapshot(target.root)
        code, out, err = cli(target, "init", "--passphrase-file", str(passphrase_file))
        assert (code, out) == (ExitCode.ERROR, "")
        assert_one_line(err)
        assert snapshot(target.root) == before
    unlock_home(populated, PASSPHRASE)


# ------------------------------------------------------------------ panic


def test_panic_on_the_cli_erases_keys_and_data(populated: Home) -> None:
    assert list(populated.attachments.iterdir())
    code, out, err = cli(populated, "panic", "--yes")
    assert code == 0, err
    assert "Erased" in out
    assert not populated.keyslots.exists()
    assert not populated.device_key.exists()
    assert not any(p.exists() for p in populated.database_files())
    assert not populated.attachments.exists()
    assert [p.name for p in populated.root.rglob("*")] == []
    with pytest.raises(HomeMissing):
        unlock_home(populated, PASSPHRASE)
    code, _, err = cli(populated, "panic", "--yes")  # nothing left to erase
    assert code == ExitCode.ERROR
    assert_one_line(err)


def test_panic_without_yes_and_without_a_terminal_erases_nothing(populated: Home) -> None:
    before = snapshot(populated.root)
    code, out, err = cli(populated, "panic")
    assert code == ExitCode.USAGE
    assert out == ""
    assert_one_line(err)
    assert snapshot(populated.root) == before


def test_panic_erases_a_home_in_under_a_second(home: Home, tmp_path: Path) -> None:
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    video = tmp_path / "video.mp4"
    video.write_bytes(os.urandom(1 << 20))
    with FieldStore.open(unlocked, clock=Clock()) as store:
        for _ in range(20):
            store.create(make_testimony(store), attach=[video])
    seconds = panic(home)
    assert seconds < 1.0
    with pytest.raises(HomeMissing):
        unlock_home(home, PASSPHRASE)
    assert [p.name for p in home.root.rglob("*")] == []


def test_panic_erases_the_wal_of_a_store_that_is_still_open(home: Home) -> None:
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    store = FieldStore.open(unlocked, clock=Clock())
    try:
        store.create(make_testimony(store))
        assert home.database_files()[1].exists()
        panic(home)
        assert [p.name for p in home.root.rglob("*")] == []
    finally:
        store.close()
    # Closing the last connection checkpoints into the unlinked file: nothing comes back.
    assert [p.name for p in home.root.rglob("*")] == []


def test_a_store_left_open_during_panic_saves_nothing_and_recreates_nothing(
    home: Home, tmp_path: Path
) -> None:
    unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(1000))
    store = FieldStore.open(unlocked, clock=Clock())
    try:
        panic(home)
        with pytest.raises(StoreError):
            store.create(make_testimony(store), attach=[photo])
    finally:
        store.close()
        assert [p.name for p in home.root.rglob("*")] == []


def test_hashes_of_attachments_are_what_was_captured(
    with_attachments: tuple[FieldStore, list[tuple[str, bytes]]],
) -> None:
    """The control for the damage cases above: undamaged files read back exactly."""
    store, refs = with_attachments
    with store:
        for attachment_id, content in refs:
            out = io.BytesIO()
            done = store.read_attachment(attachment_id, out)
            assert out.getvalue() == content
            assert done.sha256 == hashlib.sha256(content).digest()
