"""The store as a monitor uses it: save, revise, list, search, attachments, outbox."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import pytest

from crypto.revisions import RevisionError
from fieldapp.domain import ProtectedIdentity, Status, ValidationError
from fieldapp.store.errors import AmbiguousId, AttachmentUnreadable, RecordNotFound
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import Unlocked
from tests.store.conftest import ARABIC, Clock, make_testimony


def test_a_saved_testimony_reads_back_exactly(store: FieldStore) -> None:
    t = make_testimony(store)
    saved = store.create(t, identity=ProtectedIdentity(name="أحمد", contact="+963 ..."))
    got = store.get(saved.id)
    assert got.testimony == t
    assert got.testimony.narrative == ARABIC
    assert got.seq == 1
    assert got.identity == ProtectedIdentity(name="أحمد", contact="+963 ...")


def test_records_survive_closing_and_reopening(unlocked: Unlocked) -> None:
    with FieldStore.open(unlocked, clock=Clock()) as s:
        rid = s.create(make_testimony(s)).id
    with FieldStore.open(unlocked, clock=Clock()) as s:
        assert s.get(rid).testimony.narrative == ARABIC


def test_every_change_is_a_new_verified_revision(store: FieldStore) -> None:
    first = store.create(make_testimony(store))
    second = store.update(
        first.id, dataclasses.replace(first.testimony, narrative=ARABIC + " (تصحيح)")
    )
    third = store.set_status(first.id, Status.READY)
    assert (second.seq, third.seq) == (2, 3)
    history = store.history(first.id)
    assert [h.seq for h in history] == [1, 2, 3]
    assert history[0].testimony.narrative == ARABIC
    assert history[2].testimony.status is Status.READY
    assert store.verify_all() == 1


def test_saving_an_unchanged_testimony_writes_no_revision(store: FieldStore) -> None:
    saved = store.create(make_testimony(store))
    again = store.update(saved.id, saved.testimony)
    assert again.seq == 1
    assert len(store.history(saved.id)) == 1


def test_status_moves_only_along_allowed_transitions(store: FieldStore) -> None:
    saved = store.create(make_testimony(store))
    with pytest.raises(ValidationError):
        store.set_status(saved.id, Status.CONFIRMED)
    assert store.get(saved.id).testimony.status is Status.DRAFT


def test_invalid_testimony_is_refused_and_nothing_is_written(store: FieldStore) -> None:
    bad = make_testimony(store, violations=("not-a-code",))
    with pytest.raises(ValidationError) as caught:
        store.create(bad)
    assert "violations" in caught.value.message
    assert ARABIC not in caught.value.message
    assert store.count() == 0
    assert store.outbox() == []


def test_ids_resolve_from_unique_prefixes(store: FieldStore) -> None:
    saved = store.create(make_testimony(store))
    assert store.get(saved.id[:6]).id == saved.id
    assert store.get(saved.id.upper()).id == saved.id
    for bad in ("", "ab", "zzzzzz", "'; DROP TABLE revisions; --", "../../etc"):
        with pytest.raises(RecordNotFound):
            store.get(bad)


def test_an_ambiguous_prefix_is_refused(unlocked: Unlocked) -> None:
    counter = iter(range(1, 16))

    def low_entropy(n: int) -> bytes:  # ids that share their first 19 characters
        return bytes(n - 1) + bytes([next(counter) << 4 & 0xFF])

    with FieldStore.open(unlocked, clock=Clock(), random_bytes=low_entropy) as s:
        one = s.create(make_testimony(s)).id
        two = s.create(make_testimony(s)).id
        assert one[:19] == two[:19] and one != two
        with pytest.raises(AmbiguousId):
            s.get(one[:10])
        assert s.get(one).id == one
        assert s.get(two).id == two


def test_search_finds_arabic_with_and_without_article_and_harakat(store: FieldStore) -> None:
    target = store.create(make_testimony(store))
    store.create(make_testimony(store, narrative="Shelling of the market in Douma."))
    for query in ("حاجز", "الحاجز", "نقلوا", "نُقلوا", "مجهول"):
        assert [r.id for r in store.search(query)] == [target.id], query


def test_search_finds_latin_text_case_and_accent_insensitively(store: FieldStore) -> None:
    saved = store.create(make_testimony(store, narrative="Détenu à Alep par des hommes armés."))
    for query in ("detenu", "ALEP", "hommes arm", "Bustan"):
        assert [r.id for r in store.search(query)] == [saved.id], query
    assert store.search("Douma") == []


def test_search_treats_fts_syntax_as_plain_words(store: FieldStore) -> None:
    store.create(make_testimony(store, narrative="near the NEAR checkpoint"))
    for hostile in ('"', "NEAR(", "a OR b", "*", "col:x", ")", "^"):
        store.search(hostile)  # must not raise an FTS syntax error
    assert len(store.search("near checkpoint")) == 1


def test_search_index_follows_edits(store: FieldStore) -> None:
    saved = store.create(make_testimony(store, narrative="first words"))
    store.update(saved.id, dataclasses.replace(saved.testimony, narrative="second words"))
    assert store.search("first") == []
    assert [r.id for r in store.search("second")] == [saved.id]


def test_list_pages_newest_first_and_filters_by_status(store: FieldStore) -> None:
    ids = [store.create(make_testimony(store, narrative=f"n{i}")).id for i in range(7)]
    store.set_status(ids[0], Status.READY)
    page = store.page(limit=3)
    assert [r.id for r in page] == [ids[0], ids[6], ids[5]]
    assert [r.id for r in store.page(limit=3, offset=3)] == [ids[4], ids[3], ids[2]]
    assert [r.id for r in store.page(status=Status.READY)] == [ids[0]]
    assert store.count() == 7
    assert store.count(Status.READY) == 1


def test_attachments_are_encrypted_and_read_back_with_their_hash(
    store: FieldStore, home: Home, tmp_path: Path
) -> None:
    original = tmp_path / "checkpoint-photo.jpg"
    content = b"\xff\xd8JPEG" + b"canary-ATTACH-7781" * 5000
    original.write_bytes(content)
    saved = store.create(make_testimony(store), attach=[original])
    (ref,) = saved.testimony.attachments
    assert ref.filename == "checkpoint-photo.jpg"
    assert ref.sha256 == hashlib.sha256(content).hexdigest()
    assert ref.media_type == "image/jpeg"
    on_disk = list(home.attachments.iterdir())
    assert len(on_disk) == 1
    assert "checkpoint" not in on_disk[0].name
    assert b"canary-ATTACH" not in on_disk[0].read_bytes()
    out = io.BytesIO()
    store.read_attachment(ref.attachment_id, out)
    assert out.getvalue() == content


def test_an_unreadable_attachment_saves_nothing(
    store: FieldStore, home: Home, tmp_path: Path
) -> None:
    good = tmp_path / "a.txt"
    good.write_bytes(b"ok")
    with pytest.raises(AttachmentUnreadable):
        store.create(make_testimony(store), attach=[good, tmp_path / "missing.jpg"])
    with pytest.raises(AttachmentUnreadable):
        store.create(make_testimony(store), attach=[tmp_path])  # a folder
    assert store.count() == 0
    assert list(home.attachments.iterdir()) == []


def test_the_outbox_holds_the_newest_unsent_revision(store: FieldStore) -> None:
    a = store.create(make_testimony(store))
    b = store.create(make_testimony(store))
    store.update(a.id, dataclasses.replace(a.testimony, narrative="changed"))
    assert store.outbox() == [(a.id, 2), (b.id, 1)]
    store.mark_sent(a.id, 2)
    assert store.outbox() == [(b.id, 1)]
    store.update(a.id, dataclasses.replace(a.testimony, narrative="changed again"))
    assert (a.id, 3) in store.outbox()


def test_a_tampered_revision_is_detected(store: FieldStore, unlocked: Unlocked) -> None:
    saved = store.create(make_testimony(store))
    store.update(saved.id, dataclasses.replace(saved.testimony, narrative="second"))
    conn = unlocked.open_database()
    try:
        with pytest.raises(Exception, match="append-only"):
            conn.execute("UPDATE revisions SET payload = x'00' WHERE seq = 1")
        # Someone holding the key can drop the guard; the chain still gives them away.
        conn.execute("DROP TRIGGER revisions_append_only_update")
        payload = store.revisions(saved.id)[0].payload.replace(b"ar", b"en", 1)
        conn.execute("UPDATE revisions SET payload = ? WHERE seq = 1", (payload,))
    finally:
        conn.close()
    with pytest.raises(RevisionError):
        store.history(saved.id)
    with pytest.raises(RevisionError):
        store.verify_all()


def test_sorting_by_date_taken_follows_real_time_across_utc_offsets(store: FieldStore) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from fieldapp.store.store import Sort

    aleppo = timezone(timedelta(hours=3))
    # 01:30 in Aleppo on the 10th is 22:30 UTC on the 9th: before 23:00 UTC on the 9th.
    early = store.create(
        make_testimony(store, taken_at=datetime(2016, 12, 10, 1, 30, tzinfo=aleppo))
    )
    late = store.create(make_testimony(store, taken_at=datetime(2016, 12, 9, 23, 0, tzinfo=UTC)))
    assert [r.id for r in store.page(sort=Sort.TAKEN)] == [late.id, early.id]


def test_each_testimony_has_exactly_one_search_row_after_many_edits(store: FieldStore) -> None:
    saved = store.create(make_testimony(store, narrative="alpha"))
    for word in ("beta", "gamma", "delta"):
        saved = store.update(saved.id, dataclasses.replace(saved.testimony, narrative=word))
    assert [r.id for r in store.search("delta")] == [saved.id]
    for gone in ("alpha", "beta", "gamma"):
        assert store.search(gone) == []


def test_cancel_search_stops_a_running_search_and_nothing_else(store: FieldStore) -> None:
    from fieldapp.store.errors import SearchCancelled

    for i in range(30):
        store.create(make_testimony(store, narrative=f"checkpoint words {i}"))
    calls: list[int] = []

    def typed_on() -> int:  # SQLite calls this while a statement runs
        calls.append(1)
        store.cancel_search()
        return 0

    store._conn.set_progress_handler(typed_on, 10)
    try:
        with pytest.raises(SearchCancelled):
            store.search("checkpoint")
        # A save while the same handler keeps calling cancel_search is not touched.
        saved = store.create(make_testimony(store, narrative="saved while typing"))
        assert calls
    finally:
        store._conn.set_progress_handler(None, 0)
    assert store.get(saved.id).testimony.narrative == "saved while typing"
    assert len(store.search("checkpoint")) == 30
