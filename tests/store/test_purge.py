"""Removing a confirmed testimony's content: what goes, what stays, what stays forbidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldapp.domain import ProtectedIdentity, Status
from fieldapp.store.database import DatabaseError, transaction
from fieldapp.store.errors import RecordPurged
from fieldapp.store.store import FieldStore
from tests.store.conftest import make_testimony

CANARY = "CANARY-purge-4471 the officer at the crossing"


def _confirmed(store: FieldStore, tmp_path: Path, *, name: str = "Hassan") -> str:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 distinctive photo bytes " * 100)
    saved = store.create(
        make_testimony(store, narrative=CANARY, status=Status.READY),
        identity=ProtectedIdentity(name=name, contact="+963 555"),
        attach=[photo],
    )
    return saved.id


def _purge(store: FieldStore, record_id: str) -> list[str]:
    with store._lock, transaction(store._connection()) as c:
        return store.purge_confirmed(c, record_id, "2026-11-25T00:00:00+00:00")


def _rows_mentioning(store: FieldStore, needle: str) -> list[str]:
    """Every table cell (text or blob) in the database that contains ``needle``."""
    found = []
    tables = [
        str(r[0]) for r in store._query("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    for table in tables:
        for row in store._query(f"SELECT * FROM {table}"):  # noqa: S608 -- names from the schema
            for cell in row:
                data = cell.encode() if isinstance(cell, str) else cell
                if isinstance(data, bytes) and needle.encode() in data:
                    found.append(table)
    return found


def test_purge_removes_content_and_keeps_a_verifiable_stub(
    store: FieldStore, tmp_path: Path
) -> None:
    rid = _confirmed(store, tmp_path)
    attachment_files = set((store.home.attachments).iterdir())
    assert attachment_files
    hashes_before = store._query(
        "SELECT seq, hash, signature FROM revisions WHERE testimony_id = ?", (rid,)
    )
    names = _purge(store, rid)
    store.remove_attachment_files(names)

    assert store.is_purged(rid)
    with pytest.raises(RecordPurged):
        store.get(rid)
    with pytest.raises(RecordPurged):
        store.history(rid)
    assert _rows_mentioning(store, "CANARY-purge-4471") == []
    assert _rows_mentioning(store, "canary") == []  # the index's own tokens too
    assert _rows_mentioning(store, "Hassan") == []
    assert store.search("CANARY") == []
    assert not set(store.home.attachments.iterdir()) & attachment_files
    # The stub: listed, with its id; hashes and signatures kept for receipts and audit.
    assert [s.id for s in store.page()] == [rid]
    assert (
        store._query("SELECT seq, hash, signature FROM revisions WHERE testimony_id = ?", (rid,))
        == hashes_before
    )
    assert store.verify_all() == 0
    assert store.integrity_problems() == []


def test_purge_keeps_an_identity_another_testimony_still_names(
    store: FieldStore, tmp_path: Path
) -> None:
    rid = _confirmed(store, tmp_path)
    code = store.get(rid).testimony.witness_code
    other = store.create(make_testimony(store, narrative="kept", witness_code=code))
    _purge(store, rid)
    assert store.get(other.id).identity == ProtectedIdentity(name="Hassan", contact="+963 555")


def test_revisions_stay_append_only_except_emptying_a_purged_payload(
    store: FieldStore, tmp_path: Path
) -> None:
    kept = _confirmed(store, tmp_path)
    gone = _confirmed(store, tmp_path, name="Other")
    _purge(store, gone)
    conn = store._connection()
    for sql, args in [
        ("UPDATE revisions SET payload = X'' WHERE testimony_id = ?", (kept,)),
        ("UPDATE revisions SET payload = X'00' WHERE testimony_id = ?", (gone,)),
        ("UPDATE revisions SET hash = zeroblob(32) WHERE testimony_id = ?", (gone,)),
        ("DELETE FROM revisions WHERE testimony_id = ?", (gone,)),
    ]:
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute(sql, args)
    assert store.get(kept).testimony.narrative == CANARY


def test_the_setting_is_off_until_turned_on_and_persists(store: FieldStore) -> None:
    assert store.remove_confirmed is False
    store.set_remove_confirmed(True)
    assert store.remove_confirmed is True
    store.set_remove_confirmed(False)
    assert store.remove_confirmed is False
