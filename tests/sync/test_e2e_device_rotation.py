"""Device key rotation end to end, through the real CLI in subprocesses and a USB folder.

A monitor enrols and sends, rotates its device key with ``fieldapp keys rotate-device``,
edits a testimony sent before the rotation and records a new one, and sends again:
HQ imports both bundles through the rotation chain, ``hq verify`` passes and
``hq devices`` shows key version 1 with the new fingerprint. After ``hq revoke``,
bundles signed by the old key and by the new key are both refused.
"""

from __future__ import annotations

from pathlib import Path

from fieldapp.errors import ExitCode
from tests.sync.e2e import (
    QUARANTINE_LINE,
    assert_ok,
    assert_refused,
    bundles_in,
    fieldapp,
    new_hq,
    new_monitor,
)


def test_rotate_send_verify_then_revoke(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "homs-1")
    first = monitor.add("شهادة أولى قبل تدوير المفتاح")
    assert monitor.export(tmp_path / "usb1") == 1
    assert "1 imported" in assert_ok(hq.import_(tmp_path / "usb1")).out
    enrolled = monitor.ok("keys", "show", "--json").json()["device_fingerprint"]
    [device] = hq.ok("hq", "devices", "--json").json()
    assert (device["device_fingerprint"], device["key_version"]) == (enrolled, 0)

    # A bundle sealed with the enrolled key, still on its way when the key rotates.
    monitor.add("sealed with the old key, delivered late")
    assert monitor.export(tmp_path / "held") == 1

    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase\n", encoding="utf-8")
    refused = fieldapp("keys", "rotate-device", "--passphrase-file", wrong, home=monitor.home)
    assert_refused(refused, ExitCode.AUTH)
    assert monitor.ok("keys", "show", "--json").json()["device_fingerprint"] == enrolled

    rotated = monitor.ok("keys", "rotate-device", "--json").json()
    assert rotated["version"] == 1
    assert rotated["old_device_fingerprint"] == enrolled
    assert rotated["device_fingerprint"] != enrolled
    text = monitor.ok("keys", "show").out
    assert rotated["device_fingerprint"] in text

    monitor.edit_narrative(first, "شهادة مصححة بعد تدوير المفتاح")
    second = monitor.add("recorded with the new key")
    assert monitor.export(tmp_path / "usb2") == 2
    result = assert_ok(hq.import_(tmp_path / "usb2"))
    assert "2 imported" in result.out, result.describe()
    assert hq.quarantine() == []
    assert {first, second} <= hq.ids()
    assert hq.show(first)["testimony"]["narrative"] == "شهادة مصححة بعد تدوير المفتاح"
    history = hq.show(first)["history"]
    assert {r["device_fingerprint"] for r in history} == {
        enrolled,
        rotated["device_fingerprint"],
    }
    assert_ok(hq.run("hq", "verify"))
    [device] = hq.ok("hq", "devices", "--json").json()
    assert device["key_version"] == 1
    assert device["device_fingerprint"] == rotated["device_fingerprint"]
    assert "key version 1" in hq.ok("hq", "devices").out

    hq.ok("hq", "revoke", "homs-1")
    [late] = bundles_in(tmp_path / "held")  # signed by the old key
    refused = hq.import_(late)
    assert_refused(refused, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    monitor.add("after the revocation, with the new key")
    assert monitor.export(tmp_path / "usb3") == 1
    refused = hq.import_(tmp_path / "usb3")
    assert_refused(refused, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert [r.splitlines()[0] for r in hq.reasons()] == ["reason: revoked-device"] * 2

    # Rotating again (a thief would) reaches no key HQ would take from this device.
    monitor.ok("keys", "rotate-device")
    monitor.add("from a key HQ has never seen")
    assert monitor.export(tmp_path / "usb4") == 1
    refused = hq.import_(tmp_path / "usb4")
    assert_refused(refused, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert len(hq.quarantine()) == 3
    assert hq.ids() == {first, second}
