"""Monitor -> relay -> HQ over real loopback HTTP, with a real relay process in every test.

The relay is ``fieldapp relay serve`` in a subprocess (tests/relay/server.py);
HQ and monitors are the real CLI in subprocesses (tests/sync/e2e.py), except
where a test needs to act *during* a push (kill the relay, count bytes): there
the same ``push`` the CLI calls runs in this process on the monitor's home.
Nothing here fakes the relay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Label

from crypto.keys import RootSigningKey
from crypto.statements import HqTrust, sign_hq_keys
from fieldapp.errors import ExitCode
from fieldapp.session import Session
from fieldapp.store.home import Home
from fieldapp.transfer import Progress
from fieldapp.ui.app import FieldApp
from fieldapp.ui.screens.sync import SyncScreen
from sync.outbox import HqKeysExpired
from sync.push import NetworkTransfers, push
from sync.relayclient import Backoff, RelayClient
from tests.relay.server import RelayProcess, free_port, running_relay, store_snapshot
from tests.store.conftest import CHEAP
from tests.sync.e2e import (
    Hq,
    Result,
    assert_ok,
    assert_refused,
    deployment,
    find_leaks,
    hq_archive,
    monitor_store,
    new_hq,
    new_monitor,
)
from tests.sync.flakyproxy import FlakyProxy
from tests.ui import pilot_test, settle, unlock

pytestmark = pytest.mark.slow

WITNESS_NAME = "حسن الشاهد Hassan Witnessname"
CANARY_WORDS = "الكناري يغني عند منتصف الليل قرب بستان القصر"
MIB = 1024 * 1024
QUICK = ("--budget", "1")  # failing cases: give up after a second without progress


def canary() -> str:
    return f"canary-{uuid.uuid4().hex} {CANARY_WORDS} {uuid.uuid4().hex}"


def photo(path: Path, size: int) -> Path:
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(size))
    return path


# ---------------------------------------------------------------- fixtures and helpers


def blobs_on(relay: RelayProcess) -> list[dict[str, Any]]:
    with relay.client(relay.hq_token) as http:
        answer = http.get("/v1/blobs")
    assert answer.status_code == 200, answer.text
    blobs = answer.json()["blobs"]
    assert isinstance(blobs, list)
    return blobs


def pending_uploads(relay: RelayProcess) -> list[str]:
    folder = relay.data_dir / "uploads"
    return (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.is_dir()
        else []
    )


def summary_count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found is not None, text
    return int(found.group(1))


def quick_backoff(budget: float = 60) -> Backoff:
    return Backoff(budget_seconds=budget, base_delay=0.05, max_delay=0.5)


# ---------------------------------------------------------------- 1. the whole way


def test_push_pull_export_and_receipts_through_a_real_relay(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    sentence = canary()
    narrative = f"قال الشاهد إنه احتُجز عند الحاجز.\n{sentence}\n"
    picture = photo(tmp_path / "photo.jpg", 700_000)
    record_id = monitor.add(
        narrative, identity_name=WITNESS_NAME, attach=[picture], consent=["justice-mechanisms"]
    )
    pushed = assert_ok(monitor.push())
    outputs: list[Result] = [pushed]
    assert "Sent 1 bundle(s)" in pushed.out
    assert monitor.status(record_id) == "sent"
    status = monitor.sync_status()
    assert (status["uploaded"], status["confirmed"], status["last_error"]) == (1, 0, None)
    assert status["relay"] == relay.url
    assert len(blobs_on(relay)) == 1

    pulled = assert_ok(hq.pull())
    outputs.append(pulled)
    assert "1 imported, 0 already here, 0 quarantined, from 1 bundle(s)" in pulled.out
    assert "1 removed from it; 1 receipt(s)" in pulled.out
    assert blobs_on(relay) == []  # HQ deleted what it imported
    assert [r["id"] for r in hq.testimonies()] == [record_id]

    export = tmp_path / "export"
    assert_ok(hq.export(export, "jsonl"))
    [record] = [
        json.loads(line) for line in (export / "testimonies.jsonl").read_text().splitlines()
    ]
    assert record["testimony"]["narrative"] == narrative
    [attachment] = record["attachments"]
    assert (export / attachment["file"]).read_bytes() == picture.read_bytes()

    # The next push brings the receipt back: the testimony is confirmed.
    again = assert_ok(monitor.push())
    outputs.append(again)
    assert "Sent 0 bundle(s)" in again.out and "1 bundle(s) newly confirmed" in again.out
    assert monitor.status(record_id) == "confirmed"
    assert monitor.sync_status()["confirmed"] == 1
    # Nothing to do twice: HQ has nothing new, the monitor nothing to send.
    assert "0 imported, 0 already here, 0 quarantined, from 0 bundle(s)" in assert_ok(hq.pull()).out

    # The relay's folder and log hold nothing readable, in any encoding.
    keys = monitor.ok("keys", "show", "--json").json()
    secrets: dict[str, str | bytes] = {
        "canary": sentence,
        "witness": WITNESS_NAME,
        "device fingerprint": keys["device_fingerprint"],
        "device fingerprint digits": keys["device_fingerprint"].replace(" ", ""),
        "device key": keys["device_key"],
        "device key bytes": bytes.fromhex(keys["device_key"]),
    }
    assert find_leaks([relay.data_dir.parent], secrets) == []
    printed = relay.output() + "".join(r.out + r.err for r in outputs)
    assert sentence not in printed and WITNESS_NAME not in printed
    # No client address (nor any address with a port other than its own) in the relay's log.
    ports = set(re.findall(r"\b(?:\d{1,3}\.){3}\d{1,3}:(\d+)", relay.output()))
    assert ports <= {str(relay.port)}, relay.output()


# ---------------------------------------------------------------- 2. killed mid-upload


def test_the_relay_killed_mid_upload_resumes_from_its_offset(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    big = photo(tmp_path / "video.bin", 40 * MIB)
    record_id = monitor.add("A long video of the checkpoint.", attach=[big])
    seen: dict[str, int] = {}

    def partial_size() -> int:
        sizes = [p.stat().st_size for p in (relay.data_dir / "uploads").glob("*/data")]
        return max(sizes, default=0)

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and partial_size() <= 4 * MIB:
            time.sleep(0.002)
        relay.kill()
        seen["kept"] = partial_size()  # what survived SIGKILL: the offset to resume from
        time.sleep(0.5)
        relay.start()  # same data folder, same port

    def slowly(progress: Progress) -> None:
        if progress.transfer == "relay":
            time.sleep(0.02)  # a slow link: the kill lands in the middle of the upload

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with monitor_store(monitor) as store:
            report = push(store, progress=slowly, backoff=quick_backoff())
            size = report.bytes
    finally:
        thread.join()
    assert relay.starts == 2 and 4 * MIB < seen["kept"] < size
    assert report.uploaded == 1 and report.retries >= 1 and report.resumed >= 1
    resent = report.bytes_sent - size
    # Only what the relay had not kept is sent again: at most the chunks in flight.
    assert 0 <= resent <= 2 * MIB < size, (resent, size)
    [blob] = blobs_on(relay)
    assert blob["size"] == size
    assert pending_uploads(relay) == []

    pulled = assert_ok(hq.pull())
    assert "1 imported, 0 already here, 0 quarantined" in pulled.out
    assert [r["id"] for r in hq.testimonies()] == [record_id]
    export = tmp_path / "export"
    assert_ok(hq.export(export, "jsonl"))
    [record] = [
        json.loads(line) for line in (export / "testimonies.jsonl").read_text().splitlines()
    ]
    [attachment] = record["attachments"]
    exported = (export / attachment["file"]).read_bytes()
    assert hashlib.sha256(exported).digest() == hashlib.sha256(big.read_bytes()).digest()


# ---------------------------------------------------------------- 3. a flaky link


@pytest.mark.parametrize("seed", [6, 2016])
def test_through_a_flaky_link_every_bundle_arrives_exactly_once(
    tmp_path: Path, relay: RelayProcess, seed: int
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    ids = set()
    for n in range(10):
        attach = [photo(tmp_path / f"photo-{n}.jpg", (2 + n % 2) * MIB)] if n % 3 == 0 else []
        ids.add(monitor.add(f"Testimony number {n} about the crossing.", attach=attach))
    with FlakyProxy(relay.port, seed=seed) as proxy, monitor_store(monitor) as store:
        report = push(store, relay=proxy.url, chunk_size=256 * 1024, backoff=quick_backoff())
        faults = proxy.stats.copy()
    assert report.uploaded == 10 and report.retries > 0, faults
    assert faults["cuts"] >= 3 and faults["drop"] + faults["delay"] > 0, faults
    blobs = blobs_on(relay)
    assert len(blobs) == len({b["id"] for b in blobs}) == 10
    assert pending_uploads(relay) == []

    pulled = assert_ok(hq.pull())
    assert "10 imported, 0 already here, 0 quarantined" in pulled.out
    rows = hq.testimonies()
    assert sorted(r["id"] for r in rows) == sorted(ids)  # each once
    assert hq.quarantine() == []

    # Receipts come back through the same bad link; nothing is sent twice.
    with FlakyProxy(relay.port, seed=seed + 1) as proxy, monitor_store(monitor) as store:
        again = push(store, relay=proxy.url, backoff=quick_backoff())
    assert (again.uploaded, again.confirmed) == (0, 10)


# ---------------------------------------------------------------- 4. through SOCKS5


@contextlib.contextmanager
def socks_proxy(log: Path) -> Iterator[int]:
    """pproxy as a SOCKS5 server on a free loopback port; its -v log goes to ``log``."""
    port = free_port()
    pproxy = Path(sys.executable).with_name("pproxy")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(pproxy), "-l", f"socks5://127.0.0.1:{port}", "-v"], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_push_through_a_real_socks5_proxy_resolves_names_there(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    record_id = monitor.add("Sent through Tor, in the field.")
    log = tmp_path / "pproxy.log"
    with socks_proxy(log) as port:
        by_name = f"http://localhost:{relay.port}"  # a name only the proxy resolves
        pushed = assert_ok(
            monitor.push("--relay", by_name, "--proxy", f"socks5h://127.0.0.1:{port}")
        )
        time.sleep(0.2)
    assert "Sent 1 bundle(s)" in pushed.out
    assert f"-> localhost:{relay.port}" in log.read_text(), log.read_text()
    assert "1 imported" in assert_ok(hq.pull()).out
    assert [r["id"] for r in hq.testimonies()] == [record_id]


def test_a_dead_proxy_is_one_clear_line_and_exit_7(tmp_path: Path, relay: RelayProcess) -> None:
    _, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    monitor.add("Waiting for Tor.")
    dead = free_port()
    failed = monitor.push("--proxy", f"socks5h://127.0.0.1:{dead}", *QUICK)
    line = assert_refused(failed, ExitCode.NETWORK)
    assert "SOCKS proxy" in line and f"127.0.0.1:{dead}" in line
    assert monitor.sync_status()["uploaded"] == 0
    assert blobs_on(relay) == [] and pending_uploads(relay) == []


# ---------------------------------------------------------------- 5. TLS and the pin


def test_tls_with_the_pin_works_and_a_wrong_pin_sends_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    folder.mkdir()
    with running_relay(folder, tls=True) as relay:
        assert relay.pin is not None and relay.url.startswith("https://")
        hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
        record_id = monitor.add("Over pinned TLS.")
        pushed = assert_ok(monitor.push())
        assert "Sent 1 bundle(s)" in pushed.out
        assert monitor.sync_status()["relay_pinned"] is True
        assert "1 imported" in assert_ok(hq.pull()).out
        assert [r["id"] for r in hq.testimonies()] == [record_id]

        # HQ configured the wrong pin: the enrolment carries it, the device refuses.
        wrong = hashlib.sha256(b"another certificate").hexdigest()
        assert_ok(
            hq.relay_config(
                relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token, pin=wrong
            )
        )
        tricked = new_monitor(tmp_path / "actors", hq, "aleppo-2")
        tricked.add("Must not leave over a swapped certificate.")
        before = store_snapshot(relay.data_dir)
        refused = tricked.push()
        line = assert_refused(refused, ExitCode.NETWORK)
        assert "TLS pin mismatch" in line and "no token" in line
        assert relay.upload_token not in refused.err + refused.out
        assert store_snapshot(relay.data_dir) == before  # no upload was even started
        assert tricked.sync_status()["uploaded"] == 0
        # HQ's own pull refuses the same way, before its token leaves.
        assert "TLS pin mismatch" in assert_refused(hq.pull(), ExitCode.NETWORK)

        # No pin at all: the self-signed certificate is not trusted by the system's CAs.
        assert_ok(
            hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token)
        )
        unpinned = new_monitor(tmp_path / "actors", hq, "aleppo-3")
        unpinned.add("No pin.")
        line = assert_refused(unpinned.push(), ExitCode.NETWORK)
        assert "does not trust" in line
        assert store_snapshot(relay.data_dir) == before


# ---------------------------------------------------------------- 6. failures, one line each


def test_an_unreachable_relay_is_one_line_and_nothing_is_marked_uploaded(
    tmp_path: Path, relay: RelayProcess
) -> None:
    _, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    record_id = monitor.add("The link is down.")
    gone = f"http://127.0.0.1:{free_port()}"
    line = assert_refused(monitor.push("--relay", gone, *QUICK), ExitCode.NETWORK)
    assert "cannot be reached" in line and "gave up after" in line
    status = monitor.sync_status()
    assert (status["bundles"], status["uploaded"]) == (1, 0)
    assert status["last_error"] == line.removeprefix("fieldapp: ")
    assert monitor.status(record_id) == "sent"  # sealed; waits in the outbox
    # The next push to the real relay sends it and clears the error.
    assert "Sent 1 bundle(s)" in assert_ok(monitor.push()).out
    assert monitor.sync_status()["last_error"] is None


def test_a_wrong_token_is_refused_in_one_line(tmp_path: Path, relay: RelayProcess) -> None:
    hq = new_hq(tmp_path / "actors")
    wrong = "W" * 43
    assert_ok(hq.relay_config(relay.url, upload_token=wrong, hq_token=relay.hq_token))
    monitor = new_monitor(tmp_path / "actors", hq, "aleppo-1")
    monitor.add("Wrong token.")
    failed = monitor.push(*QUICK)
    line = assert_refused(failed, ExitCode.NETWORK)
    assert "refused the token" in line and wrong not in failed.err
    assert monitor.sync_status()["uploaded"] == 0
    assert pending_uploads(relay) == []
    # HQ with a wrong token of its own is refused the same way.
    assert_ok(hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=wrong))
    assert "refused the token" in assert_refused(hq.pull(), ExitCode.NETWORK)


def test_a_full_relay_is_one_line_and_nothing_is_marked_uploaded(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    folder.mkdir()
    with running_relay(folder, settings={"min_free_bytes": 2**50}) as relay:  # 1 PiB free
        _, [monitor] = deployment(tmp_path, relay, "aleppo-1")
        monitor.add("No room at the relay.")
        line = assert_refused(monitor.push(*QUICK), ExitCode.NETWORK)
        assert "is full" in line
        assert monitor.sync_status()["uploaded"] == 0
        assert pending_uploads(relay) == []


# ---------------------------------------------------------------- 7. keys and quarantine


def renew_hq_keys(hq: Hq, *, days: int) -> tuple[HqTrust, int]:
    """HQ signs its keys again (same keys, a later expiry): the next statement version.

    ``hq rotate-key`` does not exist yet; the statement is signed and stored as it
    will. Returns the trust before, and the new statement's issued_at.
    """
    with hq_archive(hq) as archive:
        trust = archive.trust()
        issued = int(time.time())
        renewal = sign_hq_keys(
            archive.root_key(),
            version=trust.version + 1,
            box=trust.box,  # type: ignore[arg-type]
            protection=trust.protection,  # type: ignore[arg-type]
            issued_at=issued,
            expires_at=issued + days * 86400,
        )
        with archive._write() as c:
            c.execute(
                "INSERT INTO statements (version, statement, issued_at) VALUES (?, ?, ?)",
                (trust.version + 1, renewal, issued),
            )
    return trust, issued


def test_hq_key_statements_reach_devices_through_the_relay(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    trust, issued = renew_hq_keys(hq, days=400)
    assert "2 HQ key statement(s) published" in assert_ok(hq.pull()).out
    pushed = assert_ok(monitor.push())
    assert "HQ keys at version 2 (1 new statement(s))" in pushed.out
    with monitor_store(monitor) as store:
        state = store.sync_book.enrolment()
        assert state is not None and state.trust.version == 2 and state.clock_floor == issued

    # A statement HQ never signed, put on the relay with HQ's token: refused, keys unchanged.
    forged = sign_hq_keys(
        RootSigningKey.generate(),
        version=3,
        box=trust.box,  # type: ignore[arg-type]
        protection=trust.protection,  # type: ignore[arg-type]
        issued_at=issued,
        expires_at=issued + 400 * 86400,
    )
    with RelayClient(relay.url, relay.hq_token) as client:
        client.put_statement(3, forged)
    warned = assert_ok(monitor.push())
    assert "warning: HQ key statements from the relay were refused" in warned.err
    assert "HQ keys at version 2." in warned.out
    assert "refused" in monitor.sync_status()["last_error"]


def test_a_bad_blob_is_quarantined_removed_from_the_relay_and_exit_4(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    record_id = monitor.add("An honest testimony.")
    assert_ok(monitor.push())
    junk = os.urandom(5000)  # anyone with the upload token can put bytes on the relay
    junk_id = hashlib.sha256(junk).hexdigest()
    with RelayClient(relay.url, relay.upload_token) as client:
        state = client.create_upload(junk_id, len(junk))
        assert client.append(junk_id, state.offset, junk) == len(junk)
    assert len(blobs_on(relay)) == 2

    pulled = hq.pull()
    assert_refused(pulled, ExitCode.DATA, also_allowed=("quarantined ",))
    assert "1 imported, 0 already here, 1 quarantined" in pulled.out
    assert f"quarantined {junk_id}.fabundle: format" in pulled.err
    assert blobs_on(relay) == []  # kept in quarantine at HQ, not on the relay
    [kept] = hq.quarantine()
    assert kept.read_bytes() == junk
    assert [r["id"] for r in hq.testimonies()] == [record_id]
    incoming = hq.home / "incoming"
    assert incoming.is_dir() and list(incoming.iterdir()) == []
    assert (incoming.stat().st_mode & 0o777) == 0o700


# ---------------------------------------------------------------- 8. the TUI's "Send to relay"


def test_the_sync_screen_sends_to_the_relay(tmp_path: Path, relay: RelayProcess) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    record_id = monitor.add("Sent from the terminal UI.", attach=[photo(tmp_path / "p.jpg", MIB)])
    secret = monitor.passphrase_file.read_text(encoding="utf-8").removesuffix("\n")
    session = Session(Home(monitor.home), kdf=CHEAP, transfers=NetworkTransfers())

    @pilot_test
    async def drive() -> None:
        app = FieldApp(session)
        async with app.run_test(size=(100, 30)) as pilot:
            await unlock(pilot, secret)
            await pilot.press("y")
            await settle(pilot)
            screen = pilot.app.screen
            assert isinstance(screen, SyncScreen)
            await pilot.press("s")
            await settle(pilot)
            assert str(screen.query_one("#sync-error", Label).render()) == ""
            done = str(screen.query_one("#last", Label).render())
            assert "1 sealed bundle" in done and "sent to the relay" in done, done
            assert "relay" in screen.bars and screen.bars["relay"].percentage == 1

    drive()
    session.lock()
    assert monitor.sync_status()["uploaded"] == 1
    assert "1 imported" in assert_ok(hq.pull()).out
    assert [r["id"] for r in hq.testimonies()] == [record_id]


def test_a_bundle_too_large_for_the_relay_does_not_hold_up_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    folder.mkdir()
    with running_relay(folder, settings={"max_blob_bytes": MIB}) as relay:
        hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
        video = monitor.add("With a long video.", attach=[photo(tmp_path / "v.bin", 2 * MIB)])
        text = monitor.add("Only words.")
        line = assert_refused(monitor.push(*QUICK), ExitCode.NETWORK)
        assert "1 bundle(s) are too large" in line and "other 1 were sent" in line
        assert monitor.sync_status()["uploaded"] == 1
        assert "1 imported" in assert_ok(hq.pull()).out
        assert [r["id"] for r in hq.testimonies()] == [text]
        assert monitor.status(video) == "sent"  # sealed, waiting for a USB stick


def test_expired_hq_keys_are_renewed_through_the_relay_and_sealing_resumes(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    record_id = monitor.add("Waited for fresh HQ keys.")
    later = datetime.now(UTC) + timedelta(days=400)  # the enrolment's statement has expired
    with monitor_store(monitor) as store:
        with pytest.raises(HqKeysExpired):
            push(store, clock=lambda: later, backoff=quick_backoff())
        assert store.sync_book.bundles() == []  # nothing sealed to expired keys
        assert "expired" in (store.sync_book.relay_state().last_error or "")
    renew_hq_keys(hq, days=800)
    assert_ok(hq.pull())
    with monitor_store(monitor) as store:
        report = push(store, clock=lambda: later, backoff=quick_backoff())
    assert (report.statements, report.sealed, report.uploaded) == (1, 1, 1)
    assert "1 imported" in assert_ok(hq.pull()).out
    assert [r["id"] for r in hq.testimonies()] == [record_id]
