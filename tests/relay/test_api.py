"""Every endpoint's happy path against a real relay process (docs/relay-protocol.md)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.relay.helpers import (
    TUS,
    blob_id,
    create,
    head,
    patch,
    random_receipts,
    receipt,
    upload,
)
from tests.relay.server import RelayProcess, running_relay


def test_health_needs_no_token(shared_relay: RelayProcess) -> None:
    with shared_relay.client() as http:
        answer = http.get("/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "protocol": 1}
    assert "server" not in answer.headers


def test_upload_list_download_delete(shared_relay: RelayProcess) -> None:
    data = os.urandom(300_000)
    with shared_relay.client(shared_relay.upload_token) as http:
        data_id = blob_id(data)
        created = create(http, data_id, len(data))
        assert created.status_code == 201
        assert created.headers["Location"] == f"/v1/uploads/{data_id}"
        assert created.headers["Upload-Offset"] == "0"
        assert created.headers["Tus-Resumable"] == "1.0.0"
        where = head(http, data_id)
        assert where.status_code == 200
        assert (where.headers["Upload-Offset"], where.headers["Upload-Length"]) == ("0", "300000")
        assert where.headers["Cache-Control"] == "no-store"
        done = patch(http, data_id, 0, data)
        assert done.status_code == 204
        assert done.headers["Upload-Offset"] == "300000"
        finished = head(http, data_id)  # a complete blob: offset = length
        assert finished.headers["Upload-Offset"] == finished.headers["Upload-Length"] == "300000"
    with shared_relay.client(shared_relay.hq_token) as hq:
        listed = hq.get("/v1/blobs").json()
        assert [b["id"] for b in listed["blobs"]] == [data_id]
        assert listed["blobs"][0]["size"] == len(data)
        assert listed["blobs"][0]["stored_at"].endswith("Z")
        assert listed["more"] is False
        got = hq.get(f"/v1/blobs/{data_id}")
        assert got.status_code == 200
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["Content-Length"] == str(len(data))
        assert got.content == data
        part = hq.get(f"/v1/blobs/{data_id}", headers={"Range": "bytes=1000-"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        assert part.content == data[1000:]
        beyond = hq.get(f"/v1/blobs/{data_id}", headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
        assert beyond.json()["error"] == "range-not-satisfiable"
        assert hq.delete(f"/v1/blobs/{data_id}").status_code == 204
        assert hq.delete(f"/v1/blobs/{data_id}").status_code == 204  # idempotent
        assert hq.get(f"/v1/blobs/{data_id}").status_code == 404
        assert hq.get("/v1/blobs").json() == {"blobs": [], "more": False}


def test_create_is_idempotent_and_resumes_at_the_stored_offset(shared_relay: RelayProcess) -> None:
    data = os.urandom(5000)
    data_id = blob_id(data)
    with shared_relay.client(shared_relay.upload_token) as http:
        assert create(http, data_id, len(data)).status_code == 201
        again = create(http, data_id, len(data))
        assert (again.status_code, again.headers["Upload-Offset"]) == (201, "0")
        assert patch(http, data_id, 0, data[:1234]).headers["Upload-Offset"] == "1234"
        assert head(http, data_id).headers["Upload-Offset"] == "1234"
        lost = create(http, data_id, len(data))  # a client that lost every answer
        assert (lost.status_code, lost.headers["Upload-Offset"]) == (201, "1234")
        wrong = patch(http, data_id, 1000, data[1000:])
        assert wrong.status_code == 409
        assert wrong.json()["error"] == "conflict"
        assert head(http, data_id).headers["Upload-Offset"] == "1234"
        assert create(http, data_id, len(data) + 1).status_code == 409  # another length
        assert patch(http, data_id, 1234, data[1234:]).status_code == 204
        complete = create(http, data_id, len(data))
        assert (complete.status_code, complete.headers["Upload-Offset"]) == (200, "5000")
        assert patch(http, data_id, 0, data).status_code == 409
    with shared_relay.client(shared_relay.hq_token) as hq:
        assert hq.get(f"/v1/blobs/{data_id}").content == data
        hq.delete(f"/v1/blobs/{data_id}")


def test_a_partial_upload_is_never_listed_or_served(shared_relay: RelayProcess) -> None:
    data = os.urandom(4096)
    data_id = blob_id(data)
    with shared_relay.client(shared_relay.upload_token) as http:
        create(http, data_id, len(data))
        patch(http, data_id, 0, data[:4095])
    with shared_relay.client(shared_relay.hq_token) as hq:
        assert data_id not in {b["id"] for b in hq.get("/v1/blobs").json()["blobs"]}
        assert hq.get(f"/v1/blobs/{data_id}").status_code == 404
        assert hq.get(f"/v1/blobs/{data_id}", headers={"Range": "bytes=0-"}).status_code == 404


def test_a_hash_mismatch_discards_the_upload(shared_relay: RelayProcess) -> None:
    data = os.urandom(2048)
    claimed = blob_id(b"something else" + data)
    with shared_relay.client(shared_relay.upload_token) as http:
        assert create(http, claimed, len(data)).status_code == 201
        assert patch(http, claimed, 0, data[:1000]).status_code == 204
        refused = patch(http, claimed, 1000, data[1000:])
        assert refused.status_code == 422
        assert refused.json()["error"] == "hash-mismatch"
        assert head(http, claimed).status_code == 404
    with shared_relay.client(shared_relay.hq_token) as hq:
        assert claimed not in {b["id"] for b in hq.get("/v1/blobs").json()["blobs"]}
        assert hq.get(f"/v1/blobs/{claimed}").status_code == 404
    assert not (shared_relay.data_dir / "uploads" / claimed).exists()


def test_an_upload_of_several_chunks(shared_relay: RelayProcess) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    with shared_relay.client(shared_relay.upload_token) as http:
        data_id = upload(http, data, chunk=1024 * 1024)
    with shared_relay.client(shared_relay.hq_token) as hq:
        assert hq.get(f"/v1/blobs/{data_id}").content == data
        hq.delete(f"/v1/blobs/{data_id}")


def test_the_hq_token_may_also_upload(shared_relay: RelayProcess) -> None:
    with shared_relay.client(shared_relay.hq_token) as hq:
        data_id = upload(hq, b"from hq")
        assert hq.get(f"/v1/blobs/{data_id}").content == b"from hq"
        hq.delete(f"/v1/blobs/{data_id}")


def test_listing_pages_by_id(shared_relay: RelayProcess) -> None:
    blobs = [os.urandom(100) for _ in range(5)]
    with shared_relay.client(shared_relay.upload_token) as http:
        ids = sorted(upload(http, b) for b in blobs)
    with shared_relay.client(shared_relay.hq_token) as hq:
        first = hq.get("/v1/blobs", params={"limit": 2}).json()
        assert [b["id"] for b in first["blobs"]] == ids[:2]
        assert first["more"] is True
        rest = hq.get("/v1/blobs", params={"after": ids[1], "limit": 1000}).json()
        assert [b["id"] for b in rest["blobs"]] == ids[2:]
        assert rest["more"] is False
        last = hq.get("/v1/blobs", params={"after": ids[3], "limit": 1}).json()
        assert ([b["id"] for b in last["blobs"]], last["more"]) == ([ids[4]], False)
        for data_id in ids:
            hq.delete(f"/v1/blobs/{data_id}")


def test_receipts_are_kept_once_each_and_fetched_by_cursor(
    tmp_path: Path,
) -> None:
    with running_relay(tmp_path, settings={"max_receipts_per_get": 3}) as relay:
        batch = random_receipts(4)
        with relay.client(relay.hq_token) as hq:
            assert hq.post("/v1/receipts", content=batch).json() == {"stored": 4}
            assert hq.post("/v1/receipts", content=batch).json() == {"stored": 0}
            newer = receipt(os.urandom(16))
            same_bundle = receipt(batch[8:24], filler=b"x")  # the bundle id is the key
            answer = hq.post("/v1/receipts", content=newer + same_bundle + newer)
            assert answer.json() == {"stored": 1}
        with relay.client(relay.upload_token) as monitor:
            assert monitor.post("/v1/receipts", content=batch).status_code == 401
            first = monitor.get("/v1/receipts", params={"after": 0})
            assert first.headers["Content-Type"] == "application/octet-stream"
            assert first.content == batch[: 3 * 144]
            assert (first.headers["Receipts-Cursor"], first.headers["Receipts-More"]) == ("3", "1")
            second = monitor.get("/v1/receipts", params={"after": 3})
            assert second.content == batch[3 * 144 :] + newer
            assert (second.headers["Receipts-Cursor"], second.headers["Receipts-More"]) == (
                "5",
                "0",
            )
            empty = monitor.get("/v1/receipts", params={"after": 5})
            assert (empty.content, empty.headers["Receipts-Cursor"]) == (b"", "5")
            assert monitor.get("/v1/receipts").content == batch[: 3 * 144]  # after defaults to 0
        relay.restart()  # cursors survive a restart
        with relay.client(relay.upload_token) as monitor:
            again = monitor.get("/v1/receipts", params={"after": 3})
            assert again.content == batch[3 * 144 :] + newer
        with relay.client(relay.hq_token) as hq:
            assert hq.post("/v1/receipts", content=batch).json() == {"stored": 0}


def test_statements_are_written_once_per_version(shared_relay: RelayProcess) -> None:
    first, second = os.urandom(300), os.urandom(1024)
    with shared_relay.client(shared_relay.hq_token) as hq:
        assert hq.put("/v1/statements/1", content=first).status_code == 204
        assert hq.put("/v1/statements/1", content=first).status_code == 204
        clash = hq.put("/v1/statements/1", content=second)
        assert (clash.status_code, clash.json()["error"]) == (409, "conflict")
        assert hq.put("/v1/statements/2", content=second).status_code == 204
    with shared_relay.client(shared_relay.upload_token) as monitor:
        assert monitor.put("/v1/statements/3", content=first).status_code == 401
        every = monitor.get("/v1/statements").json()["statements"]
        assert [base64.b64decode(s) for s in every] == [first, second]
        later = monitor.get("/v1/statements", params={"after": 1}).json()["statements"]
        assert [base64.b64decode(s) for s in later] == [second]
        assert monitor.get("/v1/statements", params={"after": 2}).json() == {"statements": []}


def test_tus_headers_on_every_upload_answer(shared_relay: RelayProcess) -> None:
    with shared_relay.client(shared_relay.upload_token) as http:
        missing = http.head(f"/v1/uploads/{'0' * 64}", headers=TUS)
        assert missing.status_code == 404
        assert missing.headers["Tus-Resumable"] == "1.0.0"
        assert http.get("/v1/health").headers.get("Tus-Resumable") is None
