"""``fieldapp record | search | keys | check`` end to end, in-process, on a real home.

Each command runs through ``run()`` exactly as ``main()`` does, with its own
streams and cheap Argon2id (``CliState(kdf=CHEAP)``); the home is found
through FIELDAPP_HOME in the injected environment, and secrets come from a
passphrase file or standard input, never from argv.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import WrongSecret
from crypto.revisions import verify_chain
from fieldapp.cli import CliState, run
from fieldapp.errors import ExitCode
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home, unlock_home
from tests.store.conftest import ARABIC, CHEAP, PASSPHRASE, Clock, make_testimony

ID_RE = re.compile(r"[0-9a-hjkmnp-tv-z]{20}")  # Crockford base32, lower case
RECOVERY_RE = re.compile(r"^  ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})$", re.MULTILINE)
NEW_PASSPHRASE = "a brand new passphrase"


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        assert self.out == ""
        assert self.err.startswith("fieldapp: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.err
        return self.err


@dataclasses.dataclass
class Field:
    """A home set up through the API, and the CLI pointed at it."""

    home: Home
    recovery: str
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    clock: Clock = dataclasses.field(default_factory=Clock)  # shared: later runs are later

    @property
    def pw(self) -> tuple[str, str]:
        return ("--passphrase-file", str(self.folder / "passphrase"))

    def file(self, name: str, text: str) -> str:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def __call__(self, *argv: str, stdin: bytes | None = None) -> Result:
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        out, err = io.StringIO(), io.StringIO()
        environ = {"FIELDAPP_HOME": str(self.home.root)}
        state = CliState(kdf=CHEAP, environ=environ, clock=self.clock)
        code = run(list(argv), stdout=out, stderr=err, state=state)
        return Result(code, out.getvalue(), err.getvalue())

    def add(self, narrative: str = ARABIC, *extra: str) -> str:
        done = self(
            "record",
            "add",
            *("--narrative-file", self.file("narrative.txt", narrative)),
            *("--place", "Bustan al-Qasr crossing", "--incident-date", "2016-12"),
            *("--violation", "enforced-disappearance", "--language", "ar", *extra, *self.pw),
        )
        assert done.code == ExitCode.OK, done.err
        return done.out.strip()


class StdinMustNotBeRead(io.TextIOBase):
    @property
    def buffer(self) -> Any:
        raise AssertionError("standard input was read")


@pytest.fixture
def field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Field:
    home = Home(tmp_path / "home")
    _, recovery = create_home(home, PASSPHRASE, kdf=CHEAP)
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "passphrase").write_text(PASSPHRASE + "\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", StdinMustNotBeRead())
    return Field(home, recovery, folder, monkeypatch)


def _store(field: Field) -> FieldStore:
    return FieldStore.open(unlock_home(field.home, PASSPHRASE))


# ------------------------------------------------------------------ add, list, show


def test_add_prints_the_new_id(field: Field) -> None:
    rid = field.add()
    assert ID_RE.fullmatch(rid), rid
    with _store(field) as store:
        saved = store.get(rid)
    assert saved.seq == 1
    assert saved.testimony.narrative == ARABIC
    assert saved.testimony.violations == ("enforced-disappearance",)
    assert str(saved.testimony.incident_date) == "2016-12"


def test_add_with_json_prints_the_saved_record(field: Field) -> None:
    done = field(
        "record",
        "add",
        *("--narrative-file", field.file("n.txt", ARABIC), "--place", "Aleppo"),
        *("--witness-name", "أحمد", "--violation", "torture", "--violation", "abduction"),
        *("--consent", "justice-mechanisms", "--json", *field.pw),
    )
    assert done.code == ExitCode.OK, done.err
    record = done.json()
    assert ID_RE.fullmatch(record["id"])
    assert record["seq"] == 1
    t = record["testimony"]
    assert t["narrative"] == ARABIC
    assert t["violations"] == ["abduction", "torture"]
    assert t["status"] == "draft"
    assert re.fullmatch(r"W-[0-9A-Z]{4}-[0-9A-Z]{4}", t["witness_code"])
    assert "identity" not in record and "أحمد" not in done.out  # only with show --identity
    shown = field("record", "show", record["id"], "--json", "--identity", *field.pw).json()
    assert shown["identity"]["name"] == "أحمد"


def test_list_json_holds_every_record_newest_first(field: Field) -> None:
    first = field.add()
    second = field.add("Shelling of the market in Douma.")
    done = field("record", "list", "--json", *field.pw)
    assert done.code == ExitCode.OK, done.err
    rows = done.json()
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["place"] == "Bustan al-Qasr crossing"
    assert rows[0]["violations"] == ["enforced-disappearance"]
    assert rows[0]["incident_date"] == "2016-12"
    assert {r["status"] for r in rows} == {"draft"}
    assert ARABIC not in done.out  # a list shows no narrative
    table = field("record", "list", *field.pw)
    assert table.code == ExitCode.OK and first in table.out and second in table.out


def test_list_reads_the_passphrase_from_standard_input(field: Field) -> None:
    rid = field.add()
    done = field("record", "list", "--json", "--passphrase-file", "-", stdin=PASSPHRASE.encode())
    assert done.code == ExitCode.OK, done.err
    assert [r["id"] for r in done.json()] == [rid]


def test_show_history_verifies_and_holds_every_revision(field: Field) -> None:
    rid = field.add()
    edited = field("record", "edit", rid, "--narrative-file", field.file("n2", "تصحيح"), *field.pw)
    assert edited.code == ExitCode.OK, edited.err
    assert edited.out.strip() == f"{rid} revision 2"
    done = field("record", "show", rid[:8], "--json", "--history", *field.pw)
    assert done.code == ExitCode.OK, done.err
    record = done.json()
    assert (record["id"], record["seq"]) == (rid, 2)
    assert record["testimony"]["narrative"] == "تصحيح"
    history = record["history"]
    assert [h["seq"] for h in history] == [1, 2]
    assert [h["testimony"]["narrative"] for h in history] == [ARABIC, "تصحيح"]
    with _store(field) as store:
        revisions = store.revisions(rid)
        device = store.device_key.raw.hex()
    verify_chain(revisions, rid)  # the chain the CLI printed is the one that verifies
    assert [h["hash"] for h in history] == [r.hash.hex() for r in revisions]
    assert {h["device_key"] for h in history} == {device}
    text = field("record", "show", rid, "--history", *field.pw)
    assert text.code == ExitCode.OK
    assert "تصحيح" in text.out
    assert re.search(r"^revision 1 .* draft ", text.out, re.MULTILINE)


# ------------------------------------------------------------------ edit


def test_edit_to_ready_needs_consent_first(field: Field) -> None:
    rid = field.add()
    refused = field("record", "edit", rid, "--status", "ready", *field.pw)
    assert refused.code == ExitCode.DATA
    assert "consent" in refused.one_error_line()
    with _store(field) as store:
        assert store.get(rid).seq == 1
    done = field(
        "record", "edit", rid, "--status", "ready", "--consent", "justice-mechanisms", "--json"
    )
    assert done.code != ExitCode.OK  # no passphrase and no terminal: refused, not prompted
    done.one_error_line()
    done = field(
        "record",
        "edit",
        rid,
        *("--status", "ready", "--consent", "justice-mechanisms", "--json", *field.pw),
    )
    assert done.code == ExitCode.OK, done.err
    record = done.json()
    assert record["seq"] == 2
    assert record["testimony"]["status"] == "ready"
    assert record["testimony"]["consent"]["scopes"] == ["justice-mechanisms"]


def test_an_edit_that_changes_nothing_writes_no_revision(field: Field) -> None:
    rid = field.add()
    done = field("record", "edit", rid, "--place", "Bustan al-Qasr crossing", *field.pw)
    assert done.code == ExitCode.OK, done.err
    assert done.out.strip() == f"{rid} revision 1"


# ------------------------------------------------------------------ search


def test_search_finds_an_arabic_narrative_by_a_word_without_its_article(field: Field) -> None:
    target = field.add()  # ARABIC holds الحاجز ("the checkpoint")
    field.add("Shelling of the market in Douma.")
    for query in ("حاجز", "الحاجز", "مجهول"):
        done = field("search", query, "--json", *field.pw)
        assert done.code == ExitCode.OK, done.err
        assert [r["id"] for r in done.json()] == [target], query
    nothing = field("search", "Raqqa", *field.pw)
    assert nothing.code == ExitCode.OK
    assert nothing.out == ""


# ------------------------------------------------------------------ refusals


def test_an_unknown_violation_exits_4_with_one_line_naming_the_field(field: Field) -> None:
    done = field(
        "record",
        "add",
        *("--narrative-file", field.file("n", ARABIC), "--place", "Aleppo"),
        *("--violation", "nope", *field.pw),
    )
    assert done.code == ExitCode.DATA
    line = done.one_error_line()
    assert "violations" in line
    assert ARABIC not in line
    with _store(field) as store:
        assert store.count() == 0


@pytest.mark.parametrize("command", ["show", "edit"])
def test_an_unknown_id_exits_1(field: Field, command: str) -> None:
    field.add()
    for unknown in ("zzzzzzzz", "../../etc/passwd", "ab"):
        done = field("record", command, unknown, *field.pw)
        assert done.code == ExitCode.ERROR, unknown
        assert "record list" in done.one_error_line()


def test_an_ambiguous_prefix_exits_2_and_the_full_id_works(field: Field) -> None:
    counter = iter(range(1, 16))

    def low_entropy(n: int) -> bytes:  # ids that share their first 19 characters
        return bytes(n - 1) + bytes([next(counter) << 4 & 0xFF])

    with FieldStore.open(
        unlock_home(field.home, PASSPHRASE), clock=Clock(), random_bytes=low_entropy
    ) as store:
        one = store.create(make_testimony(store)).id
        two = store.create(make_testimony(store)).id
    done = field("record", "show", one[:10], *field.pw)
    assert done.code == ExitCode.USAGE
    assert "type more" in done.one_error_line()
    for rid in (one, two):
        shown = field("record", "show", rid, "--json", *field.pw)
        assert shown.code == ExitCode.OK and shown.json()["id"] == rid


def test_narrative_and_passphrase_cannot_both_come_from_stdin(field: Field) -> None:
    done = field(
        "record",
        "add",
        *("--narrative-file", "-", "--place", "Aleppo", "--passphrase-file", "-"),
    )  # the fixture's stdin fails the test if anything reads it
    assert done.code == ExitCode.USAGE
    assert "stdin" in done.one_error_line()


def test_a_narrative_from_stdin_is_saved_exactly(field: Field) -> None:
    done = field(
        "record",
        "add",
        *("--narrative-file", "-", "--place", "Aleppo", "--json", *field.pw),
        stdin=(ARABIC + "\n\n  indented line\n").encode(),
    )
    assert done.code == ExitCode.OK, done.err
    assert done.json()["testimony"]["narrative"] == ARABIC + "\n\n  indented line\n"


# ------------------------------------------------------------------ keys, check


def test_keys_show_json_gives_this_devices_key(field: Field) -> None:
    done = field("keys", "show", "--json", *field.pw)
    assert done.code == ExitCode.OK, done.err
    shown = done.json()
    assert shown["device_key"] == unlock_home(field.home, PASSPHRASE).device.public_key.raw.hex()
    assert re.fullmatch(r"\d{5}( \d{5}){5}", shown["device_fingerprint"])
    text = field("keys", "show", *field.pw)
    assert shown["device_fingerprint"] in text.out


def test_keys_passphrase_retires_the_old_one(field: Field) -> None:
    rid = field.add()
    new = field.file("new", NEW_PASSPHRASE + "\n")
    done = field("keys", "passphrase", *field.pw, "--new-passphrase-file", new)
    assert done.code == ExitCode.OK, done.err
    assert done.out == ""  # stdout is for data
    old = field("check", *field.pw)
    assert old.code == ExitCode.AUTH
    old.one_error_line()
    with pytest.raises(WrongSecret):
        unlock_home(field.home, PASSPHRASE)
    works = field("record", "show", rid, "--json", "--passphrase-file", new)
    assert works.code == ExitCode.OK, works.err
    assert works.json()["testimony"]["narrative"] == ARABIC
    unlock_home(field.home, field.recovery)  # the recovery code is untouched


def test_keys_passphrase_refuses_a_short_new_passphrase(field: Field) -> None:
    done = field("keys", "passphrase", *field.pw, "--new-passphrase-file", field.file("s", "short"))
    assert done.code == ExitCode.USAGE
    done.one_error_line()
    unlock_home(field.home, PASSPHRASE)


def test_keys_recovery_prints_a_code_that_unlocks(field: Field) -> None:
    done = field("keys", "recovery", *field.pw)
    assert done.code == ExitCode.OK, done.err
    match = RECOVERY_RE.search(done.out)
    assert match, done.out
    code = match.group(1)
    assert code != field.recovery
    unlocked = unlock_home(field.home, code)
    assert unlocked.device.public_key == unlock_home(field.home, PASSPHRASE).device.public_key
    with pytest.raises(WrongSecret):
        unlock_home(field.home, field.recovery)  # the old code stopped working
    by_code = field("check", "--passphrase-file", field.file("code", code))
    assert by_code.code == ExitCode.OK, by_code.err


def test_check_prints_ok(field: Field) -> None:
    field.add()
    field.add("second")
    done = field("check", *field.pw)
    assert done.code == ExitCode.OK, done.err
    assert done.out.startswith("OK")
    assert "2 revision histories verify" in done.out
    assert done.err == ""
