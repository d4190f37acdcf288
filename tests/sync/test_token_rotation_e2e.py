"""``hq rotate-upload-token`` end to end: a real relay process, HQ and monitors as the real CLI.

Monitors enrolled with token T1; HQ rotates; during the grace both tokens work;
a monitor's push picks up T2 and uses it; a revoked monitor gets no entry and
never learns T2; after the grace T1 is refused. Time passing on the relay is
simulated by ending the grace in ``tokens.json`` while the relay is stopped
(the expiry is an absolute time, so this is the state the relay reaches by
itself). A table of hostile notices, served as a compromised relay would serve
them, leaves each monitor's saved token state byte-identical.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import pytest

from crypto.keys import DeviceVerifyKey, RootSigningKey, SignPurpose
from crypto.tokennotice import SEAL_DOMAIN, parse_notice, token_raw, write_notice
from fieldapp.errors import ExitCode
from fieldapp.hq.uploadtokens import UploadTokenBook
from sync.relay.tokenkeeper import NOTICE_FILE
from sync.relay.tokens import TOKENS_FILE
from sync.tokenrotation import rotate_upload_token
from tests.relay.server import RelayProcess
from tests.sync.e2e import (
    Hq,
    Monitor,
    assert_ok,
    assert_refused,
    find_leaks,
    hq_archive,
    monitor_store,
    new_hq,
    new_monitor,
)
from tests.test_tokennotice import T0

pytestmark = pytest.mark.slow


def saved_token_state(monitor: Monitor) -> tuple[Any, ...]:
    """Everything the device keeps about its token and HQ's trust, as stored."""
    with monitor_store(monitor) as store:
        enrolment = store._query("SELECT * FROM enrolment")
        meta = store._query(
            "SELECT key, value FROM meta WHERE key LIKE 'upload_token%' ORDER BY key"
        )
        statements = store._query("SELECT * FROM hq_statements ORDER BY version")
    return tuple(map(tuple, enrolment)), tuple(map(tuple, meta)), tuple(map(tuple, statements))


def stored_token(monitor: Monitor) -> str | None:
    with monitor_store(monitor) as store:
        state = store.sync_book.enrolment()
        assert state is not None
        return state.upload_token


def token_works(relay: RelayProcess, token: str) -> bool:
    with relay.client(token) as http:
        status = http.get("/v1/receipts").status_code
    assert status in (200, 401)
    return status == 200


def end_the_grace(relay: RelayProcess) -> None:
    """Stop the relay, move every expiry in tokens.json into the past, start it again."""
    relay.stop()
    path = relay.data_dir / TOKENS_FILE
    document = json.loads(path.read_text())
    document["upload_valid_until"] = dict.fromkeys(document["upload_valid_until"], 1)
    path.write_text(json.dumps(document))
    relay.start()


def device_key(hq: Hq, name: str) -> DeviceVerifyKey:
    with hq_archive(hq) as archive:
        return archive.device(name).keys[-1]


def test_rotation_reaches_enrolled_devices_only(tmp_path: Path, relay: RelayProcess) -> None:
    actors = tmp_path / "actors"
    hq = new_hq(actors)
    assert_ok(hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token))
    t1 = relay.upload_token
    amal, carim, waiting = (new_monitor(actors, hq, n) for n in ("amal", "carim", "waiting"))
    for monitor in (amal, carim):  # bound at HQ by their first bundle
        monitor.add(f"testimony of {monitor.device}")
        assert_ok(monitor.push())
    assert "2 imported" in assert_ok(hq.pull()).out
    hq.ok("hq", "revoke", "carim")

    rotated = hq.ok("hq", "rotate-upload-token", "--grace-days", "14")
    assert "notice 1 for 1 device(s)" in rotated.out, rotated.describe()
    assert "1 enrolled device(s) have not sent a first bundle" in rotated.err
    with hq_archive(hq) as archive:
        config = archive.relay_config()
        assert config is not None
        t2 = config.upload_token
        assert UploadTokenBook(archive).pending() is None
    assert t2 != t1
    assert t2 not in rotated.out + rotated.err
    notice = (relay.data_dir / NOTICE_FILE).read_bytes()
    assert [e.key_id for e in parse_notice(notice).entries] == [device_key(hq, "amal").key_id]

    # During the grace both tokens work.
    assert token_works(relay, t1) and token_works(relay, t2)

    # amal's push picks T2 up and uses it for the rest of the push.
    pushed = assert_ok(amal.push())
    assert "Picked up HQ's new relay upload token." in pushed.out
    assert stored_token(amal) == t2
    status = amal.sync_status()
    assert (status["upload_token_notice"], status["upload_token_left_out"]) == (1, None)
    # The next push sees the same notice: nothing to say, nothing changes.
    before = saved_token_state(amal)
    again = assert_ok(amal.push())
    assert "Picked up" not in again.out and "warning" not in again.err
    assert saved_token_state(amal) == before

    # carim (revoked) has no entry: it keeps T1 and says so, the push does not fail.
    pushed = assert_ok(carim.push())
    assert "without a copy for this device" in pushed.err
    assert stored_token(carim) == t1
    assert carim.sync_status()["upload_token_left_out"] == 1
    # "waiting" had no key at HQ yet: no entry either.
    assert_ok(waiting.push())
    assert stored_token(waiting) == t1

    # A device enrolled now gets T2 in its enrolment file.
    later = new_monitor(actors, hq, "later")
    assert stored_token(later) == t2

    # After the grace: T1 is refused, T2 (amal, later) works.
    end_the_grace(relay)
    assert not token_works(relay, t1)
    assert token_works(relay, t2)
    record = amal.add("after the grace")
    assert "Sent 1 bundle(s)" in assert_ok(amal.push()).out
    assert_ok(later.push())
    refused = assert_refused(carim.push("--budget", "1"), ExitCode.NETWORK)
    assert "refused the token" in refused
    assert "1 imported" in assert_ok(hq.pull()).out
    assert record in hq.ids()
    # T2 is nowhere in plain form: not on the relay, not in any home, not in the notice.
    homes = [relay.data_dir, hq.home, amal.home, carim.home, later.home]
    assert find_leaks(homes, {"T2": t2, "T2 bytes": token_raw(t2)}) == []


def test_a_failed_send_is_finished_by_running_again(tmp_path: Path, relay: RelayProcess) -> None:
    actors = tmp_path / "actors"
    hq = new_hq(actors)
    assert_ok(hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token))
    amal = new_monitor(actors, hq, "amal")
    amal.add("first")
    assert_ok(amal.push())
    assert_ok(hq.pull())

    relay.stop()
    failed = assert_refused(hq.run("hq", "rotate-upload-token"), ExitCode.NETWORK)
    assert "cannot be reached" in failed
    with hq_archive(hq) as archive:
        pending = UploadTokenBook(archive).pending()
        config = archive.relay_config()
    assert pending is not None and config is not None
    assert config.upload_token == relay.upload_token  # not switched before the relay has it

    relay.start()
    finished = hq.ok("hq", "rotate-upload-token", "--grace-days", "3")
    assert "sent again" in finished.out and "notice 1 for 1 device(s)" in finished.out
    assert (relay.data_dir / NOTICE_FILE).read_bytes() == pending.notice
    with hq_archive(hq) as archive:
        config = archive.relay_config()
        assert config is not None and UploadTokenBook(archive).pending() is None
    assert config.upload_token == pending.token
    assert_ok(amal.push())
    assert stored_token(amal) == pending.token
    # A relay restored from a backup taken before the second rotation refuses the
    # token amal picked up; sending the last rotation again lets it back in.
    backup = {n: (relay.data_dir / n).read_bytes() for n in (TOKENS_FILE, NOTICE_FILE)}
    assert "notice 2 for 1 device(s)" in hq.ok("hq", "rotate-upload-token").out
    assert "Picked up" in assert_ok(amal.push()).out
    relay.stop()
    for name, data in backup.items():
        (relay.data_dir / name).write_bytes(data)
    relay.start()
    assert "refused the token" in assert_refused(amal.push("--budget", "1"), ExitCode.NETWORK)
    resent = hq.ok("hq", "rotate-upload-token", "--resend-last")
    assert "(sent again): notice 2" in resent.out
    pushed = assert_ok(amal.push())
    assert "Picked up" not in pushed.out and "warning" not in pushed.err
    token_3 = stored_token(amal)
    assert token_3 is not None and token_3 != pending.token
    assert token_works(relay, token_3)


def test_a_crash_after_the_relay_stored_it_is_finished_by_running_again(
    tmp_path: Path, relay: RelayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    actors = tmp_path / "actors"
    hq = new_hq(actors)
    assert_ok(hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token))

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # stands for the process dying before the archive write

    with hq_archive(hq) as archive, monkeypatch.context() as patch:
        patch.setattr(UploadTokenBook, "finish", crash)
        with pytest.raises(KeyboardInterrupt):
            rotate_upload_token(archive, grace_days=1)
    stored = (relay.data_dir / NOTICE_FILE).read_bytes()
    tokens = (relay.data_dir / TOKENS_FILE).read_bytes()
    with hq_archive(hq) as archive:
        pending = UploadTokenBook(archive).pending()
        assert pending is not None and pending.notice == stored
        assert token_works(relay, pending.token) and token_works(relay, relay.upload_token)
        report = rotate_upload_token(archive, grace_days=30)  # the pending one, as it was
        config = archive.relay_config()
    assert report.resent and report.serial == 1
    assert config is not None and config.upload_token == pending.token
    # The relay took the same request again and changed nothing.
    assert (relay.data_dir / NOTICE_FILE).read_bytes() == stored
    assert (relay.data_dir / TOKENS_FILE).read_bytes() == tokens


def test_rotation_needs_a_relay(tmp_path: Path) -> None:
    hq = new_hq(tmp_path / "actors")
    line = assert_refused(hq.run("hq", "rotate-upload-token"), ExitCode.USAGE)
    assert "no relay configured" in line
    assert_ok(hq.relay_config("http://127.0.0.1:9", upload_token="u" * 43, hq_token="h" * 43))
    line = assert_refused(hq.run("hq", "rotate-upload-token", "--resend-last"), ExitCode.ERROR)
    assert "nothing to send again" in line
    assert hq.run("hq", "rotate-upload-token", "--grace-days", "-1").code == ExitCode.USAGE


# ---------------------------------------------------------------- hostile notices


def _sealed_for(device: DeviceVerifyKey, serial: int, token: bytes) -> bytes:
    plaintext = SEAL_DOMAIN + serial.to_bytes(8, "big") + token
    return sodium.crypto_box_seal(
        plaintext, sodium.crypto_sign_ed25519_pk_to_curve25519(device.raw)
    )


def _hand_made(root: RootSigningKey, serial: int, entries: list[tuple[bytes, bytes]]) -> bytes:
    body = struct.pack(">6sBQQQI", b"FATOKN", 1, serial, T0, T0 + 1, len(entries))
    body += b"".join(k + s for k, s in sorted(entries))
    return body + root.public_key.key_id + root.sign(SignPurpose.UPLOAD_TOKEN_NOTICE, body)


Hostile = Callable[[RootSigningKey, DeviceVerifyKey, DeviceVerifyKey, bytes], bytes]
HOSTILE: dict[str, tuple[Hostile, str | None]] = {
    # The serial already applied, other bytes: refused (replayed) without a word.
    "replayed serial": (
        lambda root, me, _other, _stmt: write_notice(
            root, serial=1, issued_at=T0, previous_valid_until=T0, token=b"\1" * 32, devices=[me]
        ),
        None,
    ),
    "wrong signer": (
        lambda _root, me, _other, _stmt: write_notice(
            RootSigningKey.generate(),
            serial=9,
            issued_at=T0,
            previous_valid_until=T0,
            token=b"\2" * 32,
            devices=[me],
        ),
        "wrong-signer",
    ),
    "other kind": (lambda _root, _me, _other, stmt: stmt, "wrong-kind"),
    "malformed": (lambda *_: os.urandom(300), "malformed"),
    "another device's entry": (
        lambda root, me, other, _stmt: _hand_made(
            root, 9, [(me.key_id, _sealed_for(other, 9, b"\3" * 32))]
        ),
        "unopenable",
    ),
    "entry sealed for another serial": (
        lambda root, me, _other, _stmt: _hand_made(
            root, 9, [(me.key_id, _sealed_for(me, 8, b"\4" * 32))]
        ),
        "wrong-serial",
    ),
}


def test_hostile_notices_change_nothing(tmp_path: Path, relay: RelayProcess) -> None:
    actors = tmp_path / "actors"
    hq = new_hq(actors)
    assert_ok(hq.relay_config(relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token))
    amal, basim = new_monitor(actors, hq, "amal"), new_monitor(actors, hq, "basim")
    for monitor in (amal, basim):
        monitor.add(f"testimony of {monitor.device}")
        assert_ok(monitor.push())
    assert_ok(hq.pull())
    hq.ok("hq", "rotate-upload-token")
    assert_ok(amal.push())
    good = (relay.data_dir / NOTICE_FILE).read_bytes()
    with hq_archive(hq) as archive:
        root = archive.root_key()
        statement = archive.statements()[0]
    me, other = device_key(hq, "amal"), device_key(hq, "basim")

    for name, (make, reason) in HOSTILE.items():
        (relay.data_dir / NOTICE_FILE).write_bytes(make(root, me, other, statement))
        before = saved_token_state(amal)
        pushed = assert_ok(amal.push())
        assert saved_token_state(amal) == before, name
        if reason is None:
            assert "warning" not in pushed.err, (name, pushed.describe())
        else:
            assert f"was refused ({reason})" in pushed.err, (name, pushed.describe())
            [line] = [x for x in pushed.err.splitlines() if "upload token" in x]
            assert line.startswith("warning: ")
    (relay.data_dir / NOTICE_FILE).write_bytes(good)
    assert_ok(amal.push())
