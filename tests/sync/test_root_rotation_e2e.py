"""``hq rotate-root`` with bundles in flight, through the real CLI and a real relay process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto.fingerprint import hq_fingerprint
from fieldapp.errors import ExitCode
from tests.relay.server import RelayProcess
from tests.sync.e2e import (
    Monitor,
    assert_ok,
    assert_refused,
    deployment,
    fieldapp,
    monitor_store,
    new_hq,
    new_monitor,
    parse_fingerprint,
)

pytestmark = pytest.mark.slow


def pushed(monitor: Monitor) -> str:
    return assert_ok(monitor.push()).out


def test_devices_follow_a_root_rotation_and_nothing_in_flight_is_lost(
    tmp_path: Path,
    relay: RelayProcess,
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "aleppo-1")
    first = monitor.add("Before the rotation: detained at the checkpoint for three days.")
    pushed(monitor)
    assert "1 imported" in assert_ok(hq.pull()).out
    in_flight = monitor.add("In flight: sent before HQ rotated its root, pulled after.")
    pushed(monitor)  # uploads the second bundle; brings the first receipt back
    assert monitor.status(first) == "confirmed"
    assert monitor.status(in_flight) == "sent"
    old_fingerprint = hq.fingerprint

    rotated = assert_ok(hq.run("hq", "rotate-root", "--yes"))
    new_fingerprint = parse_fingerprint(rotated.out)
    assert new_fingerprint != old_fingerprint
    assert "1 receipt(s) signed again" in rotated.out
    assert "Published 3 HQ key statement(s) on the relay" in rotated.out
    keys = hq.ok("hq", "keys", "--json").json()
    assert keys["hq_fingerprint"] == new_fingerprint
    assert keys["statement_version"] == 3

    # HQ imports the bundle sealed before the rotation and publishes the new chain.
    pulled = assert_ok(hq.pull()).out
    assert "1 imported" in pulled
    assert in_flight in hq.ids()
    out = pushed(monitor)
    assert "2 new statement(s)" in out
    assert monitor.status(in_flight) == "confirmed"
    with monitor_store(monitor) as store:
        state = store.sync_book.enrolment()
        assert state is not None
        assert str(hq_fingerprint(state.hq_root)) == new_fingerprint
        assert state.trust.version == 3

    # After the rotation the device keeps sending, and HQ keeps importing.
    after = monitor.add("After the rotation.")
    pushed(monitor)
    assert_ok(hq.pull())
    pushed(monitor)
    assert monitor.status(after) == "confirmed"

    # A new device is enrolled from the new root, by the new fingerprint only.
    hq.fingerprint = new_fingerprint
    enrolment = tmp_path / "new.enrol"
    hq.enroll("idlib-2", enrolment)
    assert json.loads(enrolment.read_text())["fieldapp_enrolment"] == 2
    secret = tmp_path / "newcomer.pass"
    secret.write_text("a monitor passphrase seven eight\n", encoding="utf-8")
    by_old = fieldapp(
        "init",
        "--enroll",
        enrolment,
        "--hq-fingerprint",
        old_fingerprint,
        "--passphrase-file",
        secret,
        home=tmp_path / "newcomer",
    )
    assert "fingerprint" in assert_refused(by_old, ExitCode.KEYS)
    assert not (tmp_path / "newcomer").exists()
    newcomer = new_monitor(tmp_path / "late", hq, "idlib-3")
    late = newcomer.add("Enrolled after the rotation.")
    pushed(newcomer)
    assert_ok(hq.pull())
    pushed(newcomer)
    assert newcomer.status(late) == "confirmed"
    assert hq.quarantine() == []


def test_a_usb_only_device_follows_the_rotation_from_the_stick(tmp_path: Path) -> None:
    hq = new_hq(tmp_path / "actors")
    monitor = new_monitor(tmp_path / "actors", hq, "daraa-1")
    sent = monitor.add("Sent by stick before HQ rotated its root.")
    assert monitor.export(tmp_path / "usb1") == 1
    assert "1 imported" in assert_ok(hq.import_(tmp_path / "usb1")).out
    old_stick = tmp_path / "old-receipts"
    old_stick.mkdir()
    hq.ok("hq", "export-receipts", old_stick)  # signed by the root about to be replaced

    new_fingerprint = parse_fingerprint(assert_ok(hq.run("hq", "rotate-root", "--yes")).out)
    # The receipts the old root signed are refused once the device trusts the new root.
    stick = tmp_path / "receipts"
    stick.mkdir()
    hq.ok("hq", "export-receipts", stick)
    assert_ok(monitor.run("sync", "import-receipts", stick))
    assert monitor.status(sent) == "confirmed"
    with monitor_store(monitor) as store:
        state = store.sync_book.enrolment()
        assert state is not None and str(hq_fingerprint(state.hq_root)) == new_fingerprint
    after = monitor.add("Sent by stick after the rotation.")
    assert monitor.export(tmp_path / "usb2") == 1
    assert "1 imported" in assert_ok(hq.import_(tmp_path / "usb2")).out
    old_only = tmp_path / "old-only"
    old_only.mkdir()
    for receipt_file in old_stick.glob("*.fareceipts"):
        receipt_file.rename(old_only / receipt_file.name)
    refused = assert_refused(monitor.run("sync", "import-receipts", old_only), ExitCode.DATA)
    assert "did not verify" in refused
    assert monitor.status(after) == "sent"
