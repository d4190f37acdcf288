"""A pending upload-token rotation that would do harm if sent is replaced, not sent.

From a security review of the rotation: a rotation left pending by a relay that
was down must not reach a device revoked since, must not end every older token
at once because its grace ran out while it waited, and a root rotation must not
leave devices with a notice signed by a root they no longer trust. Real relay
process, real CLI (tests/sync/test_token_rotation_e2e.py has the main story).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.tokennotice import parse_notice
from fieldapp.errors import ExitCode
from fieldapp.hq.uploadtokens import UploadTokenBook
from sync.relay.tokenkeeper import NOTICE_FILE
from sync.relayclient import RelayError
from sync.tokenrotation import rotate_upload_token
from tests.relay.server import RelayProcess
from tests.sync.e2e import Hq, Monitor, assert_ok, assert_refused, hq_archive, new_hq, new_monitor
from tests.sync.test_token_rotation_e2e import device_key, stored_token, token_works

pytestmark = pytest.mark.slow


def deployment(root: Path, server: RelayProcess, *names: str) -> tuple[Hq, list[Monitor]]:
    """HQ with the relay, and monitors bound at HQ by a first bundle each."""
    hq = new_hq(root)
    assert_ok(
        hq.relay_config(server.url, upload_token=server.upload_token, hq_token=server.hq_token)
    )
    monitors = [new_monitor(root, hq, name) for name in names]
    for monitor in monitors:
        monitor.add(f"testimony of {monitor.device}")
        assert_ok(monitor.push())
    assert f"{len(names)} imported" in assert_ok(hq.pull()).out
    return hq, monitors


def test_a_pending_rotation_never_reaches_a_device_revoked_since(
    tmp_path: Path,
    relay: RelayProcess,
) -> None:
    hq, [amal, carim] = deployment(tmp_path / "actors", relay, "amal", "carim")
    relay.stop()
    assert_refused(hq.run("hq", "rotate-upload-token"), ExitCode.NETWORK)
    with hq_archive(hq) as archive:
        pending = UploadTokenBook(archive).pending()
    assert pending is not None and pending.devices == 2  # carim was still in good standing
    hq.ok("hq", "revoke", "carim")  # then carim's laptop is seized

    relay.start()
    rotated = hq.ok("hq", "rotate-upload-token")
    assert "sent again" not in rotated.out
    assert "notice 2 for 1 device(s)" in rotated.out
    notice = parse_notice((relay.data_dir / NOTICE_FILE).read_bytes())
    assert [e.key_id for e in notice.entries] == [device_key(hq, "amal").key_id]
    with hq_archive(hq) as archive:
        config = archive.relay_config()
        assert config is not None and UploadTokenBook(archive).pending() is None
    assert config.upload_token != pending.token  # the token carim could open is never used
    assert not token_works(relay, pending.token)
    assert "without a copy for this device" in assert_ok(carim.push()).err
    assert stored_token(carim) == relay.upload_token
    assert "Picked up" in assert_ok(amal.push()).out
    assert stored_token(amal) == config.upload_token


def test_a_pending_rotation_whose_grace_ran_out_is_replaced(
    tmp_path: Path,
    relay: RelayProcess,
) -> None:
    hq, _ = deployment(tmp_path / "actors", relay, "amal")
    start = datetime.now(UTC)
    relay.stop()
    with hq_archive(hq) as archive:
        with pytest.raises(RelayError):
            rotate_upload_token(archive, grace_days=1, clock=lambda: start, budget_seconds=0.5)
        first = UploadTokenBook(archive).pending()
        assert first is not None
        relay.start()
        later = start + timedelta(days=3)  # the relay was out of reach for three days
        report = rotate_upload_token(archive, grace_days=14, clock=lambda: later)
    assert (report.serial, report.resent) == (2, False)
    assert report.previous_valid_until == int(later.timestamp()) + 14 * 86_400
    # Sent as it was, it would have ended the deployment's token two days ago.
    assert token_works(relay, relay.upload_token)


def test_a_root_rotation_signs_the_token_notice_again(
    tmp_path: Path,
    relay: RelayProcess,
) -> None:
    hq, [amal] = deployment(tmp_path / "actors", relay, "amal")
    hq.ok("hq", "rotate-upload-token")
    assert "Picked up" in assert_ok(amal.push()).out
    token = stored_token(amal)
    before = parse_notice((relay.data_dir / NOTICE_FILE).read_bytes())

    rotated = hq.ok("hq", "rotate-root", "--yes")
    assert "Upload-token notice 2 signed again by the new root" in rotated.out
    notice = parse_notice((relay.data_dir / NOTICE_FILE).read_bytes())
    with hq_archive(hq) as archive:
        new_root = archive.root_public()
        config = archive.relay_config()
    assert notice.signer == new_root.key_id != before.signer
    assert notice.previous_valid_until == before.previous_valid_until
    assert config is not None and config.upload_token == token
    # The device follows the new root, then finds a notice it can verify: no warning.
    pushed = assert_ok(amal.push())
    assert "warning" not in pushed.err and "refused" not in pushed.err
    assert stored_token(amal) == token
    status = amal.sync_status()
    assert (status["upload_token_notice"], status["upload_token_left_out"]) == (2, None)
