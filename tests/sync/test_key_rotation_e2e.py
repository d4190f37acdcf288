"""HQ rotates its box key while bundles are on their way: through the real CLI.

Every step is a ``fieldapp`` command in its own process (tests/sync/e2e.py);
where a relay is involved it is a real relay process on loopback
(tests/relay/server.py). The story each test tells: a monitor seals to key 1;
HQ rotates to key 2; the key-1 bundles still import; after its next sync the
monitor seals to key 2; HQ destroys key 1; a late key-1 bundle is quarantined
with the destroyed-key reason, byte for byte; nothing else is lost.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fieldapp.errors import ExitCode
from sync.relayclient import RelayClient
from tests.relay.server import RelayProcess
from tests.sync.e2e import (
    QUARANTINE_LINE,
    Hq,
    Monitor,
    assert_ok,
    assert_refused,
    box_keys,
    bundles_in,
    current_key,
    deployment,
    hq_archive,
    new_hq,
    new_monitor,
)

pytestmark = pytest.mark.slow


def sealed_to(hq: Hq) -> dict[str, str]:
    """testimony id -> hex id of the box key its bundle was sealed to, for every import."""
    with hq_archive(hq) as archive:
        rows = archive._query("SELECT testimony_id, hq_key_id FROM bundles")
    return {str(t): bytes(k).hex() for t, k in rows}


def seals_to(monitor: Monitor) -> tuple[int, str]:
    status = monitor.sync_status()
    return int(status["hq_key_version"]), str(status["hq_box_key_id"])


def key_state(hq: Hq) -> tuple[object, ...]:
    """Everything retire-key could change: the key rows, secrets included, and the chain."""
    with hq_archive(hq) as archive:
        return (
            [
                tuple(r)
                for r in archive._query(
                    "SELECT key_id, secret, retired_at, destroyed_at FROM box_keys ORDER BY rowid"
                )
            ],
            archive.statements(),
        )


# ---------------------------------------------------------------- by USB stick


def test_bundles_in_flight_by_usb_stick(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "idlib-1")
    stay_at_home = new_monitor(tmp_path, hq, "idlib-2")  # learns key 2 only from a stick
    key1 = current_key(hq)
    assert seals_to(monitor) == (1, key1)

    first = monitor.add("Sealed to key 1, imported after the rotation.")
    assert monitor.export(tmp_path / "usb1") == 1
    rotated = hq.ok("hq", "rotate-key", "--validity-days", "90")
    key2 = current_key(hq)
    assert key2 != key1
    assert f"New box key {key2} (HQ key statement version 2" in rotated.out
    assert f"Retired box key {key1}" in rotated.out
    assert box_keys(hq)[key1]["state"] == "retired"

    # The monitor has heard nothing yet: it still seals to key 1.
    second = monitor.add("Sealed to key 1 after the rotation.")
    assert monitor.export(tmp_path / "usb2") == 1
    late = monitor.add("Sealed to key 1, and carried late.")
    assert monitor.export(tmp_path / "late") == 1
    [late_file] = bundles_in(tmp_path / "late")
    late_bytes = late_file.read_bytes()

    # HQ kept the retired key: both key-1 sticks import.
    for name in ("usb1", "usb2"):
        assert (
            "1 imported, 0 already here, 0 quarantined."
            in assert_ok(hq.import_(tmp_path / name)).out
        )
    assert sealed_to(hq) == {first: key1, second: key1}

    # HQ's stick carries the receipts and the chain; statements go in before receipts.
    stick = tmp_path / "stick"
    stick.mkdir()
    written = hq.ok("hq", "export-receipts", stick).out
    assert "Wrote 2 receipt(s) and HQ's key statements (version 2)" in written
    assert len(list(stick.glob("*.fastatements"))) == 1
    applied = monitor.ok("sync", "import-receipts", stick).out
    assert "2 bundle(s) newly confirmed by HQ; HQ keys at version 2 (1 new statement(s))" in (
        applied
    )
    assert seals_to(monitor) == (2, key2)
    assert monitor.status(first) == "confirmed"
    again = monitor.ok("sync", "import-receipts", stick).out  # the same stick twice: no change
    assert "HQ keys at version 2." in again

    # After that sync the monitor seals to key 2.
    third = monitor.add("Sealed to key 2.")
    assert monitor.export(tmp_path / "usb3") == 1
    # A monitor that only ever exports (the TUI's USB path) learns key 2 from HQ's stick too.
    assert seals_to(stay_at_home) == (1, key1)
    fourth = stay_at_home.add("Exported onto HQ's stick, sealed to key 2.")
    assert stay_at_home.export(stick) == 1
    assert seals_to(stay_at_home) == (2, key2)
    assert_ok(hq.import_(tmp_path / "usb3"))
    assert "1 imported, 0 already here" in assert_ok(hq.import_(stick)).out
    assert sealed_to(hq) == {first: key1, second: key1, third: key2, fourth: key2}

    # Key 1 is still inside its grace period: retire-key refuses without --force.
    before = key_state(hq)
    line = assert_refused(hq.run("hq", "retire-key", key1[:8]), ExitCode.KEYS)
    assert "--force" in line
    assert key_state(hq) == before
    forced = hq.ok("hq", "retire-key", key1[:8], "--force")
    assert f"Destroyed box key {key1}" in forced.out
    assert "warning: destroyed before its grace period ended" in forced.err
    assert "Backups of this HQ home" in forced.out
    assert box_keys(hq)[key1]["state"] == "destroyed"

    # The late key-1 bundle: quarantined with the reason, kept byte for byte.
    result = hq.import_(tmp_path / "late")
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert f"quarantined {late_file.name}: destroyed-key" in result.err
    assert key1[:16] in result.err
    [kept] = hq.quarantine()
    assert kept.read_bytes() == late_bytes
    [reason] = hq.reasons()
    assert reason.startswith("reason: destroyed-key\n") and "most likely" in reason

    # Nothing else is lost: every other testimony at HQ, the late one still on the device.
    assert hq.ids() == {first, second, third, fourth}
    assert monitor.status(late) == "sent"
    assert monitor.sync_status()["unconfirmed"] >= 1


# ---------------------------------------------------------------- through a real relay


def blobs_on(relay: RelayProcess) -> list[str]:
    with RelayClient(relay.url, relay.hq_token) as client:
        return [b.id for b in client.list_blobs()[0]]


def test_bundles_in_flight_through_a_real_relay(tmp_path: Path, relay: RelayProcess) -> None:
    hq, [monitor, offline] = deployment(tmp_path, relay, "hama-1", "hama-2")
    key1 = current_key(hq)
    first = monitor.add("Sent to the relay, sealed to key 1.")
    assert_ok(monitor.push())
    # The other monitor seals to key 1 too, and stays offline for a while.
    late = offline.add("Sealed to key 1 by a device that was offline for weeks.")
    assert offline.export(tmp_path / "late") == 1
    [late_file] = bundles_in(tmp_path / "late")

    rotated = hq.ok("hq", "rotate-key")
    key2 = current_key(hq)
    assert f"Published 2 HQ key statement(s) on the relay at {relay.url}" in rotated.out
    pulled = assert_ok(hq.pull())
    assert "1 imported, 0 already here, 0 quarantined" in pulled.out
    assert sealed_to(hq) == {first: key1}

    # The next push brings the new statement; from then on the monitor seals to key 2.
    assert "HQ keys at version 2 (1 new statement(s))" in assert_ok(monitor.push()).out
    assert seals_to(monitor) == (2, key2)
    second = monitor.add("Sealed to key 2.")
    assert_ok(monitor.push())
    assert_ok(hq.pull())
    assert sealed_to(hq) == {first: key1, second: key2}

    hq.ok("hq", "retire-key", key1, "--force")

    # The offline device comes back and pushes its key-1 bundle: HQ quarantines it.
    came_back = assert_ok(offline.push())
    assert "Sent 1 bundle(s)" in came_back.out
    assert "HQ keys at version 2 (1 new statement(s))" in came_back.out
    assert seals_to(offline) == (2, key2)
    result = hq.pull()
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert "0 imported, 0 already here, 1 quarantined" in result.out
    assert ": destroyed-key: " in result.err and key1[:16] in result.err
    [kept] = hq.quarantine()
    assert kept.read_bytes() == late_file.read_bytes()
    assert blobs_on(relay) == []

    assert hq.ids() == {first, second}
    assert offline.status(late) == "sent"


def test_rotate_key_with_the_relay_down_is_one_line_and_pull_publishes(
    tmp_path: Path, relay: RelayProcess
) -> None:
    hq, [monitor] = deployment(tmp_path, relay, "tartus-1")
    relay.stop()
    result = hq.run("hq", "rotate-key", "--budget", "1")
    line = assert_refused(result, ExitCode.NETWORK)
    assert "The new box key is in place" in line and "hq pull" in line
    key2 = current_key(hq)
    assert f"New box key {key2}" in result.out
    assert hq.ok("hq", "keys", "--json").json()["statement_version"] == 2

    relay.restart()
    assert "2 HQ key statement(s) published" in assert_ok(hq.pull()).out
    assert "HQ keys at version 2 (1 new statement(s))" in assert_ok(monitor.push()).out
    assert seals_to(monitor) == (2, key2)


# ---------------------------------------------------------------- retire-key refusals


def test_retire_key_refusals_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    key1 = current_key(hq)
    hq.ok("hq", "rotate-key")
    key2 = current_key(hq)
    # A retired key sharing key 1's first 8 hex digits, so that prefix is ambiguous.
    twin = bytes.fromhex(key1[:8]) + os.urandom(12)
    with hq_archive(hq) as archive, archive._write() as c:
        c.execute(
            "INSERT INTO box_keys (key_id, secret, public, created_at, retired_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                twin,
                os.urandom(32),
                os.urandom(32),
                "2026-01-01T00:00:00+00:00",
                "2026-01-02T00:00:00+00:00",
            ),
        )
    unknown = next(
        p
        for p in (os.urandom(4).hex() for _ in range(100))
        if not any(k.startswith(p) for k in (key1, key2, twin.hex()))
    )
    before = key_state(hq)
    cases = [
        ("current key", key2, ExitCode.KEYS, "current box key"),
        ("current key by prefix", key2[:8].upper(), ExitCode.KEYS, "current box key"),
        ("unknown id", unknown, ExitCode.KEYS, "No box key"),
        ("ambiguous prefix", key1[:8], ExitCode.KEYS, "More than one"),
        ("inside the grace period", key1, ExitCode.KEYS, "--force"),
        ("too short", key1[:7], ExitCode.USAGE, "hex digits"),
        ("not hex", "zz" + key1[2:], ExitCode.USAGE, "hex digits"),
    ]
    for name, text, code, words in cases:
        line = assert_refused(hq.run("hq", "retire-key", text), code)
        assert words in line, name
        assert key_state(hq) == before, name

    hq.ok("hq", "retire-key", twin.hex(), "--force")
    after = key_state(hq)
    assert after != before
    line = assert_refused(hq.run("hq", "retire-key", twin.hex(), "--force"), ExitCode.KEYS)
    assert "already destroyed" in line
    assert key_state(hq) == after
