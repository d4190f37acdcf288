"""One PATCH at a time per upload, and a PATCH whose client went quiet gives the upload up.

A connection that dies without a FIN or RST leaves its PATCH waiting for bytes
until ``body_timeout_seconds`` (60 s here, the default). A HEAD or PATCH from
another connection stops it once it has received nothing for
``takeover_seconds``; a PATCH that is still receiving is never stopped, and two
PATCHes never write to one upload at once. Also: many clients uploading at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.relay.helpers import OFFSET_STREAM, blob_id, create, head, patch, status_of, upload
from tests.relay.server import RelayProcess, running_relay

MIB = 1024 * 1024
TAKEOVER_S = 2.0  # the default


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """Default settings: body_timeout_seconds 60, takeover_seconds 2."""
    with running_relay(tmp_path_factory.mktemp("takeover")) as started:
        yield started


def _open_patch(relay: RelayProcess, data_id: str, offset: int, declared: int) -> socket.socket:
    """A raw PATCH whose head declares ``declared`` body bytes; the caller sends the body."""
    host, port = relay.url.split("://")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    lines = [
        f"PATCH /v1/uploads/{data_id} HTTP/1.1",
        "Host: relay",
        f"Authorization: Bearer {relay.upload_token}",
        "Tus-Resumable: 1.0.0",
        f"Upload-Offset: {offset}",
        f"Content-Type: {OFFSET_STREAM}",
        f"Content-Length: {declared}",
    ]
    sock.sendall("\r\n".join([*lines, "", ""]).encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """The relay's answer on ``sock`` (a JSON error or an empty 204)."""
    answer = b""
    while b"\r\n\r\n" not in answer or not (
        answer.endswith(b"}") or answer.startswith(b"HTTP/1.1 204")
    ):
        more = sock.recv(65536)
        if not more:
            break
        answer += more
    return answer


def _wait_until_written(relay: RelayProcess, data_id: str, size: int) -> None:
    """Until the upload's data file holds ``size`` bytes: the relay is in that PATCH."""
    path = relay.data_dir / "uploads" / data_id / "data"
    deadline = time.monotonic() + 10
    while path.stat().st_size < size:
        assert time.monotonic() < deadline, "the relay never wrote the first block"
        time.sleep(0.01)


def _stored(relay: RelayProcess, data_id: str) -> bytes:
    with relay.client(relay.hq_token) as hq:
        return hq.get(f"/v1/blobs/{data_id}").content


def test_a_silent_patch_is_taken_over_by_head_then_patch(relay: RelayProcess) -> None:
    data = os.urandom(3 * MIB)
    data_id = blob_id(data)
    sent = MIB + 12345
    with relay.client(relay.upload_token) as http:
        assert create(http, data_id, len(data)).status_code == 201
        with _open_patch(relay, data_id, 0, len(data)) as silent:
            silent.sendall(data[:sent])  # then nothing: the link died, the socket stays open
            _wait_until_written(relay, data_id, MIB)  # the relay writes 1 MiB blocks
            started = time.monotonic()
            where = head(http, data_id)  # from another connection
            waited = time.monotonic() - started
            # The HEAD waited for the quiet PATCH to be stopped, which kept every byte.
            assert where.status_code == 200
            assert int(where.headers["Upload-Offset"]) == sent
            assert TAKEOVER_S * 0.5 < waited < 10  # far below the 60 s body timeout
            # The stopped PATCH answered 409 (its client is gone; this one still listens).
            stopped = _answer(silent)
            assert status_of(stopped) == 409
            assert b'"conflict"' in stopped
            answer = patch(http, data_id, sent, data[sent:])
            assert answer.status_code == 204, answer.text
            assert answer.headers["Upload-Offset"] == str(len(data))
    stored = _stored(relay, data_id)
    assert hashlib.sha256(stored).hexdigest() == data_id
    assert stored == data


def test_a_silent_patch_is_taken_over_by_a_patch(relay: RelayProcess) -> None:
    """A PATCH at the stored offset stops a PATCH that never sent a byte, and goes on."""
    data = os.urandom(200_000)
    data_id = blob_id(data)
    with relay.client(relay.upload_token) as http:
        create(http, data_id, len(data))
        with _open_patch(relay, data_id, 0, len(data)) as silent:
            time.sleep(0.2)  # the relay has begun the silent PATCH
            started = time.monotonic()
            answer = patch(http, data_id, 0, data)
            assert answer.status_code == 204, answer.text
            assert time.monotonic() - started < 10
            assert status_of(_answer(silent)) == 409
    assert _stored(relay, data_id) == data


def test_a_patch_taking_over_from_the_wrong_offset_gets_409_and_head_tells(
    relay: RelayProcess,
) -> None:
    data = os.urandom(2 * MIB)
    data_id = blob_id(data)
    with relay.client(relay.upload_token) as http:
        create(http, data_id, len(data))
        with _open_patch(relay, data_id, 0, len(data)) as silent:
            kept = MIB + 70_000
            silent.sendall(data[:kept])
            _wait_until_written(relay, data_id, MIB)
            # Sent at offset 0, as if nothing had arrived: the quiet PATCH is stopped
            # and keeps what it received, so 0 is no longer the offset.
            late = patch(http, data_id, 0, data[:MIB])
            assert late.status_code == 409
            assert head(http, data_id).headers["Upload-Offset"] == str(kept)
        upload(http, data)  # POST again (idempotent), then on from there
    assert _stored(relay, data_id) == data


def test_a_patch_still_receiving_is_never_taken_over(tmp_path: Path) -> None:
    """A slow PATCH that keeps sending holds the upload: others wait, then get 409 or the
    fsynced offset, and its bytes stay whole."""
    with running_relay(tmp_path, settings={"takeover_seconds": 0.5}) as slow_relay:
        data = os.urandom(3 * MIB)
        data_id = blob_id(data)
        first = MIB + MIB // 2  # one 1 MiB block is written (not fsynced) at once
        with slow_relay.client(slow_relay.upload_token) as http:
            create(http, data_id, len(data))
            done = threading.Event()
            with _open_patch(slow_relay, data_id, 0, len(data)) as slow:
                slow.sendall(data[:first])

                def trickle() -> None:
                    for start in range(first, len(data), 4096):
                        if done.is_set():
                            return
                        slow.sendall(data[start : start + 4096])
                        time.sleep(0.005)  # ~800 KB/s: never quiet for 0.5 s

                sender = threading.Thread(target=trickle)
                sender.start()
                try:
                    _wait_until_written(slow_relay, data_id, MIB)
                    started = time.monotonic()
                    refused = patch(http, data_id, 0, data[:4096])
                    assert refused.status_code == 409
                    assert 0.4 < time.monotonic() - started < 5  # it waited, then gave up
                    where = head(http, data_id)
                    # Only fsynced bytes are ever answered: none yet (the slow PATCH
                    # commits when its body ends), though blocks are written already.
                    assert where.headers["Upload-Offset"] == "0"
                    written = slow_relay.data_dir / "uploads" / data_id / "data"
                    assert written.stat().st_size >= MIB
                finally:
                    sender.join(30)
                    done.set()
                answer = _answer(slow)
                assert status_of(answer) == 204, answer
        assert _stored(slow_relay, data_id) == data


def test_head_waits_for_a_patch_that_ends_by_itself(relay: RelayProcess) -> None:
    """A HEAD during a PATCH answers the offset that PATCH ends at, not the one before."""
    data = os.urandom(4 * MIB)
    data_id = blob_id(data)
    with relay.client(relay.upload_token) as http:
        create(http, data_id, len(data))
        with _open_patch(relay, data_id, 0, 2 * MIB) as running:
            running.sendall(data[:MIB])
            _wait_until_written(relay, data_id, MIB)
            result: list[httpx.Response] = []
            asker = threading.Thread(target=lambda: result.append(head(http, data_id)))
            asker.start()
            time.sleep(0.3)
            running.sendall(data[MIB : 2 * MIB])  # the PATCH ends
            asker.join(10)
            assert status_of(_answer(running)) == 204
        assert result[0].headers["Upload-Offset"] == str(2 * MIB)


# ---------------------------------------------------------------- many clients at once


def test_many_clients_upload_small_blobs_at_once(relay: RelayProcess) -> None:
    clients, each = 8, 25
    blobs = [[os.urandom(4096) for _ in range(each)] for _ in range(clients)]
    failures: list[BaseException] = []
    start = threading.Barrier(clients)

    def run(mine: list[bytes]) -> None:
        try:
            with relay.client(relay.upload_token) as http:
                start.wait()
                for data in mine:
                    upload(http, data)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(mine,)) for mine in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    expected = {blob_id(data) for mine in blobs for data in mine}
    with relay.client(relay.hq_token) as hq:
        listed: list[str] = []
        after = None
        while True:
            params = {"limit": "30"} | ({"after": after} if after else {})
            page = hq.get("/v1/blobs", params=params).json()
            listed += [b["id"] for b in page["blobs"]]
            if not page["more"]:
                break
            after = listed[-1]
        assert expected <= set(listed)
        assert listed == sorted(set(listed))
        for data_id in expected:
            hq.delete(f"/v1/blobs/{data_id}")
    for data_id in expected:
        assert not (relay.data_dir / "uploads" / data_id).exists()
    assert not [p for p in (relay.data_dir / "uploads").iterdir() if p.name.startswith(".")]


def test_many_clients_upload_the_same_blob_at_once(relay: RelayProcess) -> None:
    """POSTs race to create it, PATCHes race to write it: one blob, whole, at the end."""
    data = os.urandom(MIB // 2)
    data_id = blob_id(data)
    start = threading.Barrier(6)
    outcomes: list[int] = []

    def run() -> None:
        with relay.client(relay.upload_token) as http:
            start.wait()
            created = create(http, data_id, len(data))
            assert created.status_code in {200, 201}, created.text
            offset = int(created.headers["Upload-Offset"])
            while offset < len(data):
                answer = patch(http, data_id, offset, data[offset : offset + 64 * 1024])
                if answer.status_code == 409:
                    offset = int(head(http, data_id).headers["Upload-Offset"])
                    continue
                assert answer.status_code == 204, answer.text
                offset = int(answer.headers["Upload-Offset"])
            outcomes.append(offset)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes == [len(data)] * 6
    assert _stored(relay, data_id) == data
    assert not (relay.data_dir / "uploads" / data_id).exists()
