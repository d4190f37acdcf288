"""The relay client's pieces that need no relay: settings, pins, retries, bookkeeping.

Everything here runs in-process without a relay: address and pin checks, the
backoff schedule (with an injected clock and sleep), the monitor's relay
bookkeeping (schema step 7), HQ's relay settings (HQ schema step 2), the
receipts check shared with USB, and a push to a port where nothing listens.
Every test that talks to a relay is in test_relay_e2e.py, against a real one.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.enrolment import read_enrolment, write_enrolment
from crypto.keys import RootSigningKey
from crypto.receipts import Receipt, sign_receipt
from crypto.statements import sign_hq_keys, verify_hq_chain
from fieldapp.cli.app import run
from fieldapp.cli.state import CliState
from fieldapp.errors import ExitCode
from fieldapp.store.errors import ChangedMeanwhile
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home
from sync.enrol import enrol
from sync.hqimport import import_file
from sync.pull import PullRunning, pull
from sync.push import NetworkTransfers, push
from sync.relayclient import (
    Backoff,
    RelayBusy,
    RelayClient,
    RelayError,
    RelayNameNotFound,
    RelaySettingError,
    RelayTokenRefused,
    RelayUnreachable,
    check_pin,
    check_proxy_url,
    check_relay_url,
    describe,
    pinned_context,
    spki_sha256,
)
from sync.usb import verify_receipts
from tests.store.conftest import CHEAP, PASSPHRASE, Clock
from tests.sync.e2e import assert_ok, assert_refused, new_hq
from tests.sync.world import Monitor, World, now

TOKEN = "U" * 43
HQ_TOKEN = "H" * 43


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_monitor(
    world: World, name: str, url: str, *, token: str | None = TOKEN, pin: str | None = None
) -> Monitor:
    """A monitor enrolled (in-process) from a file naming this relay, pin and token."""
    enrolment = world.archive.new_enrolment(name, relay=url, relay_pin=pin, upload_token=token)
    world.archive.record_enrolment(enrolment)
    data = write_enrolment(world.archive.root_key(), enrolment)
    read, trust = read_enrolment(data, now=int(now().timestamp()))
    unlocked, _ = create_home(Home(world.root / name), PASSPHRASE, kdf=CHEAP)
    store = FieldStore.open(unlocked, clock=Clock())
    enrol(store, read, trust)
    files = world.root / f"{name}-files"
    files.mkdir()
    monitor = Monitor(name, store, read, files)
    world.monitors.append(monitor)
    return monitor


class FakeTime:
    """monotonic() and sleep() for Backoff: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def certificate(key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, bytes]:
    """A self-signed certificate (DER) and the DER of its SubjectPublicKeyInfo."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "relay")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))  # long expired: pins ignore dates
        .sign(key, hashes.SHA256())
    )
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return cert.public_bytes(Encoding.DER), spki


@pytest.fixture
def fake_time() -> Iterator[FakeTime]:
    yield FakeTime()


# ---------------------------------------------------------------- settings


def test_relay_addresses_are_plain_http_urls_and_messages_name_only_the_host() -> None:
    assert check_relay_url("https://relay.example/") == "https://relay.example"
    assert check_relay_url("http://127.0.0.1:8080/base/") == "http://127.0.0.1:8080/base"
    for bad in (
        "ftp://relay.example",
        "relay.example",
        "https://",
        "https://relay.example/?x=1",
        "https://relay.example:99999",
    ):
        with pytest.raises(RelaySettingError):
            check_relay_url(bad)
    with pytest.raises(RelaySettingError) as refused:
        check_relay_url("https://alice:s3cret-pass@relay.example")
    assert "s3cret" not in refused.value.message and "alice" not in refused.value.message
    assert describe("https://relay.example:8443/some/path") == "https://relay.example:8443"
    assert describe("http://[::1]:80/x") == "http://[::1]:80"


def test_proxies_are_socks5_with_remote_dns_and_never_echo_credentials() -> None:
    assert check_proxy_url("socks5h://127.0.0.1:9050") == "socks5://127.0.0.1:9050"
    assert check_proxy_url("socks5://tor:9050/") == "socks5://tor:9050"
    assert check_proxy_url("socks5h://user:isolation@127.0.0.1:9050") == (
        "socks5://user:isolation@127.0.0.1:9050"
    )
    for bad in ("http://127.0.0.1:8080", "socks5h://127.0.0.1", "socks4://h:1", "socks5h://h:1/x"):
        with pytest.raises(RelaySettingError) as refused:
            check_proxy_url(bad)
        assert refused.value.exit_code == ExitCode.USAGE
    with pytest.raises(RelaySettingError) as refused:
        check_proxy_url("http://user:hunter2-secret@127.0.0.1:8080")
    assert "hunter2" not in refused.value.message


def test_pins_are_64_hex_digits_colons_and_case_forgiven() -> None:
    pin = hashlib.sha256(b"x").hexdigest()
    spaced = ":".join(pin[i : i + 2] for i in range(0, 64, 2)).upper()
    assert check_pin(spaced) == pin
    for bad in ("", pin[:-1], pin + "0", "g" * 64):
        with pytest.raises(RelaySettingError):
            check_pin(bad)


def test_a_pin_is_the_sha256_of_the_certificates_public_key_info() -> None:
    der, spki = certificate()
    assert spki_sha256(der) == hashlib.sha256(spki).hexdigest()
    other, _ = certificate()
    assert spki_sha256(other) != spki_sha256(der)
    # Same key, another certificate: the same pin (a relay may renew its certificate).
    key = ec.generate_private_key(ec.SECP256R1())
    assert spki_sha256(certificate(key)[0]) == spki_sha256(certificate(key)[0])
    context = pinned_context(der)
    assert context.cert_store_stats()["x509"] == 1
    assert not context.check_hostname


def test_a_pin_on_a_plain_http_address_is_refused() -> None:
    with pytest.raises(RelaySettingError):
        RelayClient("http://relay.example", TOKEN, pin="0" * 64)


def test_the_client_repr_holds_no_token() -> None:
    client = RelayClient("https://relay.example", TOKEN, pin="1" * 64)
    assert TOKEN not in repr(client) and TOKEN not in str(vars(client).get("url"))


# ---------------------------------------------------------------- retrying


def test_backoff_is_exponential_with_full_jitter_up_to_the_cap(fake_time: FakeTime) -> None:
    backoff = Backoff(
        budget_seconds=1000,
        base_delay=0.5,
        max_delay=8,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        random=lambda: 1.0,  # the top of each jitter range
    )
    backoff.start()
    for _ in range(7):
        backoff.wait_or_raise(RelayUnreachable("down"))
    assert fake_time.sleeps == [0.5, 1, 2, 4, 8, 8, 8]
    half = Backoff(
        base_delay=0.5, sleep=fake_time.sleep, monotonic=fake_time.monotonic, random=lambda: 0.5
    )
    fake_time.sleeps.clear()
    half.wait_or_raise(RelayBusy("503"))
    half.wait_or_raise(RelayBusy("503"))
    assert fake_time.sleeps == [0.25, 0.5]


def test_backoff_gives_up_when_the_budget_passes_without_progress(fake_time: FakeTime) -> None:
    backoff = Backoff(
        budget_seconds=10,
        base_delay=1,
        max_delay=4,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        random=lambda: 1.0,
    )
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise RelayUnreachable("The relay at http://x cannot be reached.")

    backoff.start()
    with pytest.raises(RelayUnreachable) as gave_up:
        backoff.call(failing)
    assert sum(fake_time.sleeps) <= 10
    assert calls == len(fake_time.sleeps) + 1
    assert "gave up after" in gave_up.value.message
    assert gave_up.value.exit_code == ExitCode.NETWORK


def test_progress_starts_the_budget_again(fake_time: FakeTime) -> None:
    backoff = Backoff(
        budget_seconds=5,
        base_delay=1,
        max_delay=2,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        random=lambda: 1.0,
    )
    backoff.start()
    for _ in range(20):  # 20 failures, 40 s in all, but progress after each
        backoff.wait_or_raise(RelayUnreachable("cut"))
        backoff.progressed()
    assert sum(fake_time.sleeps) == 20


def test_final_errors_are_never_retried(fake_time: FakeTime) -> None:
    backoff = Backoff(sleep=fake_time.sleep, monotonic=fake_time.monotonic)
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise RelayTokenRefused("no")

    with pytest.raises(RelayTokenRefused):
        backoff.call(refused)
    assert calls == 1 and fake_time.sleeps == []


# ---------------------------------------------------------------- the monitor's bookkeeping


def test_relay_state_starts_empty_and_follows_a_restored_relays_cursor(world: World) -> None:
    book = world.monitor("m1").store.sync_book
    state = book.relay_state()
    assert (state.receipts_cursor, state.last_error, state.last_push_at) == (0, None, None)
    book.set_receipts_cursor(7)
    assert book.relay_state().receipts_cursor == 7
    # A relay restored from backup answers with its own, lower, end: read on from there,
    # or every later push would fail and no receipt would ever arrive again.
    book.set_receipts_cursor(3)
    assert book.relay_state().receipts_cursor == 3
    book.record_push("The relay at http://x cannot be reached.")
    assert book.relay_state().last_error == "The relay at http://x cannot be reached."
    assert book.relay_state().last_push_at is None
    book.record_push(None)
    after = book.relay_state()
    assert after.last_error is None and after.last_push_at is not None


def test_new_hq_statements_advance_the_trust_and_floor_together(world: World) -> None:
    monitor = world.monitor("m1")
    book = monitor.store.sync_book
    before = book.enrolment()
    assert before is not None
    trust = world.archive.trust()
    issued = int(now().timestamp()) + 60
    renewal = sign_hq_keys(
        world.archive.root_key(),
        version=trust.version + 1,
        box=trust.box,  # type: ignore[arg-type]
        protection=trust.protection,  # type: ignore[arg-type]
        issued_at=issued,
        expires_at=issued + 400 * 86400,
    )
    advanced = verify_hq_chain(before.trust, [renewal], int(now().timestamp()))
    after = book.advance_trust(advanced, [(advanced.version, renewal)], issued)
    assert after.trust == advanced and after.trust.version == before.trust.version + 1
    assert after.clock_floor == issued
    assert book.hq_statements()[-1] == renewal
    with pytest.raises(ChangedMeanwhile):  # a concurrent sync got there first
        book.advance_trust(advanced, [], issued)  # never sideways or back
    assert book.enrolment() == after


def test_receipts_are_verified_by_the_code_usb_uses(world: World) -> None:
    monitor = world.monitor("m1")
    state = monitor.store.sync_book.enrolment()
    assert state is not None
    receipt = Receipt(bytes(16), bytes(32), 1_500_000_000)
    good = sign_receipt(world.archive.root_key(), receipt)
    forged = sign_receipt(RootSigningKey.generate(), receipt)
    verified, refused = verify_receipts(state, [good, forged, good[:-1] + bytes([good[-1] ^ 1])])
    assert verified == [receipt] and refused == 2


# ---------------------------------------------------------------- HQ's relay settings


def test_hq_keeps_its_relay_settings_and_enrolment_files_carry_them(world: World) -> None:
    archive = world.archive
    assert archive.relay_config() is None
    pin = "ab" * 32
    config = archive.set_relay_config(
        "https://relay.example", hq_token=HQ_TOKEN, upload_token=TOKEN, pin=pin
    )
    assert (config.url, config.pin, config.hq_token, config.upload_token) == (
        "https://relay.example",
        pin,
        HQ_TOKEN,
        TOKEN,
    )
    assert TOKEN not in repr(config) and HQ_TOKEN not in repr(config)
    world.reopen()
    assert world.archive.relay_config() == config
    monitor = relay_monitor(world, "m1", config.url, pin=config.pin, token=config.upload_token)
    state = monitor.store.sync_book.enrolment()
    assert state is not None
    assert (state.relay, state.relay_pin, state.upload_token) == (config.url, pin, TOKEN)


def test_receipts_are_published_once(world: World) -> None:
    monitor = world.monitor("m1")
    monitor.add()
    (path,) = monitor.build()
    assert import_file(world.archive, path).result is not None
    pending = world.archive.receipts_to_publish()
    assert len(pending) == 1
    world.archive.mark_receipts_published([pending[0][0]])
    assert world.archive.receipts_to_publish() == []
    # Publishing is tracked apart from carrying receipts out by USB.
    assert len(world.archive.receipts()) == 1
    assert world.archive.pulled_outcome("0" * 64) is None
    world.archive.record_pulled("0" * 64, "quarantined")
    world.archive.record_pulled("0" * 64, "imported")  # the first outcome stays
    assert world.archive.pulled_outcome("0" * 64) == "quarantined"


# ---------------------------------------------------------------- failing without a relay


def test_an_unreachable_relay_is_one_error_and_nothing_is_marked_uploaded(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monitor = relay_monitor(world, "m1", url)
    monitor.add()
    with pytest.raises(RelayUnreachable) as failed:
        push(monitor.store, clock=now, budget_seconds=0.3)
    message = failed.value.message
    assert "\n" not in message and TOKEN not in message
    assert "127.0.0.1" in message and failed.value.exit_code == ExitCode.NETWORK
    bundles = monitor.store.sync_book.bundles()
    assert len(bundles) == 1  # sealed, safe in the outbox
    assert bundles[0].uploaded_at is None
    state = monitor.store.sync_book.relay_state()
    assert state.last_error == message and state.last_push_at is None


def test_no_relay_address_or_no_token_says_what_to_do(world: World) -> None:
    plain = world.monitor("m1")
    with pytest.raises(RelaySettingError, match="--relay URL"):
        push(plain.store, clock=now)
    tokenless = relay_monitor(world, "m2", "http://127.0.0.1:9", token=None)
    with pytest.raises(RelaySettingError, match="upload token"):
        push(tokenless.store, clock=now)
    assert tokenless.store.sync_book.relay_state().last_error is not None


def test_the_tui_transport_pushes_for_real(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monitor = relay_monitor(world, "m1", url)
    monitor.add()
    transfers = NetworkTransfers(now, budget_seconds=0.2)
    with pytest.raises(RelayError) as failed:
        transfers.push(monitor.store, lambda _p: None)
    assert isinstance(failed.value, RelayUnreachable)
    assert transfers.queued(monitor.store) == []  # sealed: it left the queue for the outbox


def test_sync_status_shows_uploads_and_the_last_error(world: World) -> None:
    """The fields `sync status --json` adds, from the bookkeeping they come from."""
    url = f"http://127.0.0.1:{free_port()}"
    monitor = relay_monitor(world, "m1", url)
    monitor.add()
    with pytest.raises(RelayUnreachable):
        push(monitor.store, clock=now, budget_seconds=0)
    monitor.store.close()
    secret = world.root / "pass"
    secret.write_text(PASSPHRASE)
    out, err = io.StringIO(), io.StringIO()
    home = str(world.root / "m1")
    argv = ["--home", home, "sync", "status", "--json", "--passphrase-file", str(secret)]
    code = run(argv, stdout=out, stderr=err, state=CliState(kdf=CHEAP))
    assert code == 0, err.getvalue()
    status = json.loads(out.getvalue())
    assert status["uploaded"] == 0 and status["waiting_to_leave"] == 1
    assert status["relay"] == url and status["relay_pinned"] is False
    assert "cannot be reached" in status["last_error"]
    world.monitors.remove(monitor)


def test_hq_relay_config_reads_tokens_from_files_and_never_prints_them(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    assert "No relay configured" in assert_ok(hq.run("hq", "relay-config")).out
    half = hq.run("hq", "relay-config", "--relay", "https://relay.example")
    assert "together" in assert_refused(half, ExitCode.USAGE)
    bad = hq.relay_config("https://relay.example", upload_token="short", hq_token=HQ_TOKEN)
    assert "upload token" in assert_refused(bad, ExitCode.USAGE)
    same = hq.relay_config("https://relay.example", upload_token=TOKEN, hq_token=TOKEN)
    assert "must differ" in assert_refused(same, ExitCode.USAGE)
    plain_pin = hq.relay_config(
        "http://relay.example", upload_token=TOKEN, hq_token=HQ_TOKEN, pin="ab" * 32
    )
    assert "https" in assert_refused(plain_pin, ExitCode.USAGE)
    pin = ":".join(["AB"] * 32)  # as openssl prints fingerprints
    done = assert_ok(
        hq.relay_config("https://relay.example/", upload_token=TOKEN, hq_token=HQ_TOKEN, pin=pin)
    )
    shown = assert_ok(hq.run("hq", "relay-config")).out
    for out in (done.out, shown):
        assert "Relay: https://relay.example\n" in out and f"TLS pin: {'ab' * 32}" in out
        assert TOKEN not in out and HQ_TOKEN not in out
    enrolled = assert_ok(hq.run("hq", "enroll", "m1", "--out", tmp_path / "m1.enrol"))
    assert "Relay: https://relay.example, TLS pinned, with the deployment upload token." in (
        enrolled.out
    )
    body = json.loads((tmp_path / "m1.enrol").read_text())["body"]
    fields = json.loads(base64.b64decode(body))
    assert (fields["relay"], fields["relay_pin"], fields["upload_token"]) == (
        "https://relay.example",
        "ab" * 32,
        TOKEN,
    )
    assert HQ_TOKEN not in (tmp_path / "m1.enrol").read_text()
    # --relay still replaces the address for one file; pin and token stay.
    other = tmp_path / "m2.enrol"
    assert_ok(hq.run("hq", "enroll", "m2", "--out", other, "--relay", "https://onion.example"))
    fields = json.loads(base64.b64decode(json.loads(other.read_text())["body"]))
    assert (fields["relay"], fields["upload_token"]) == ("https://onion.example", TOKEN)


def test_an_onion_relay_is_never_reached_without_a_proxy(world: World) -> None:
    onion = "http://" + "a" * 56 + ".onion"
    with pytest.raises(RelaySettingError, match="onion"):
        RelayClient(onion, TOKEN)
    RelayClient(onion, TOKEN, proxy="socks5h://127.0.0.1:9050").close()


def test_the_devices_proxy_setting_carries_every_push(world: World) -> None:
    """Set once, it is used by `sync push` and by the UI's "Send to relay" alike."""
    monitor = relay_monitor(world, "m1", "http://relay.invalid:8080")
    monitor.add()
    dead = f"socks5h://127.0.0.1:{free_port()}"
    monitor.store.set_relay_proxy(dead)
    assert monitor.store.relay_proxy == dead
    with pytest.raises(RelayUnreachable, match="SOCKS proxy"):
        push(monitor.store, clock=now, budget_seconds=0.3)
    monitor.store.set_relay_proxy(None)
    assert monitor.store.relay_proxy is None
    # Without the proxy the name is looked up locally, fails, and is not asked again.
    with pytest.raises(RelayNameNotFound):
        push(monitor.store, clock=now, budget_seconds=30)


def test_two_pulls_on_one_hq_home_never_run_at_once(world: World) -> None:
    """They would share incoming/ and clean up each other's downloads."""
    world.archive.set_relay_config(
        f"http://127.0.0.1:{free_port()}", hq_token=TOKEN, upload_token=TOKEN, pin=None
    )
    lock = os.open(world.archive.home.root / ".pull.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a pull in another process
        with pytest.raises(PullRunning):
            pull(world.archive, budget_seconds=0.3)
    finally:
        os.close(lock)
    # Once it is done, the next pull goes ahead (and finds nothing listening).
    with pytest.raises(RelayUnreachable):
        pull(world.archive, budget_seconds=0.3)
