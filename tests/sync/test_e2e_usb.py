"""Monitor -> sealed bundles on a USB folder -> HQ, and receipts back: through the real CLI.

Every step is a ``fieldapp`` command in its own process (tests/sync/e2e.py), as
a monitor and an HQ operator would type it; only a forger's tool (a receipt
signed by the wrong HQ) is built in-process. Each failure the user can cause
must end with exactly one ``fieldapp: `` line on stderr and no traceback.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crypto.receipts import RECEIPT_BYTES, Receipt, parse_receipt, sign_receipt
from fieldapp.errors import ExitCode
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import unlock_hq
from fieldapp.store.home import Home
from tests.sync.e2e import (
    QUARANTINE_LINE,
    Hq,
    Monitor,
    assert_ok,
    assert_refused,
    bundles_in,
    encoded_forms,
    fieldapp,
    files_under,
    find_leaks,
    new_hq,
    new_monitor,
    sha256sums_problems,
)

CANARY_WORDS = "الكناري يغني عند منتصف الليل قرب بستان القصر"
WITNESS_NAME = "حسن الشاهد Hassan Witnessname"


def canary() -> str:
    """A sentence found only where a test put it: Arabic words between two random ids."""
    return f"canary-{uuid.uuid4().hex} {CANARY_WORDS} {uuid.uuid4().hex}"


def narrative_with(sentence: str) -> str:
    return (
        "قال الشاهد إنه احتُجز عند الحاجز ثلاثة أيام.\n"
        f"{sentence}\n"
        "وأضاف أن المحققين صادروا هاتفه.\n"
    )


def photo_bytes() -> bytes:
    """A binary attachment several secretstream chunks long, every byte distinctive."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(300_000)


def windows(data: bytes, size: int = 48) -> dict[str, bytes]:
    """Pieces of ``data`` to look for: a leak of any part of it is a leak."""
    offsets = (0, 1000, len(data) // 2, len(data) - size)
    return {f"attachment@{o}": data[o : o + size] for o in offsets}


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "testimonies.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def read_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "testimonies.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


# ---------------------------------------------------------------- 1. the whole chain


@dataclass(frozen=True)
class Chain:
    hq: Hq
    monitor: Monitor
    record_id: str
    canary: str
    narrative: str
    photo: bytes
    usb: Path
    plain: dict[str, Path]  # format -> export folder without identities
    named: dict[str, Path]  # format -> export folder with --include-identities

    def secrets(self) -> dict[str, str | bytes]:
        return {"canary": self.canary, "witness": WITNESS_NAME, **windows(self.photo)}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    hq = new_hq(root)
    monitor = new_monitor(root, hq, "aleppo-1")
    sentence = canary()
    narrative = narrative_with(sentence)
    photo = root / "photo.jpg"
    photo.write_bytes(photo_bytes())
    record_id = monitor.add(
        narrative,
        identity_name=WITNESS_NAME,
        attach=[photo],
        consent=["justice-mechanisms"],
    )
    usb = root / "usb"
    assert monitor.export(usb) == 1
    assert monitor.status(record_id) == "sent"
    result = assert_ok(hq.import_(usb))
    assert "1 imported, 0 already here, 0 quarantined." in result.out
    plain = {fmt: root / f"export-{fmt}" for fmt in ("jsonl", "csv")}
    named = {fmt: root / f"export-{fmt}-named" for fmt in ("jsonl", "csv")}
    for fmt in ("jsonl", "csv"):
        assert_ok(hq.export(plain[fmt], fmt))
        assert_ok(hq.export_with_identities(named[fmt], fmt))
    return Chain(hq, monitor, record_id, sentence, narrative, photo.read_bytes(), usb, plain, named)


def test_hq_lists_and_verifies_the_testimony_from_the_enrolled_device(chain: Chain) -> None:
    rows = chain.hq.testimonies()
    assert [(r["id"], r["device"]) for r in rows] == [(chain.record_id, "aleppo-1")]
    devices = chain.hq.ok("hq", "devices", "--json").json()
    assert [(d["name"], d["bound_at"] is not None) for d in devices] == [("aleppo-1", True)]
    [report] = chain.hq.ok("hq", "verify", chain.record_id, "--json").json()
    assert report["ok"] is True
    assert [(r["seq"], r["ok"], r["device"]) for r in report["revisions"]] == [
        (1, True, "aleppo-1")
    ]
    assert [a["status"] for a in report["attachments"]] == ["ok"]
    assert chain.monitor.sync_status()["unconfirmed"] == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("named", [False, True])
def test_narrative_and_attachment_arrive_byte_identical(
    chain: Chain, fmt: str, named: bool
) -> None:
    folder = (chain.named if named else chain.plain)[fmt]
    assert sha256sums_problems(folder) == []
    if fmt == "jsonl":
        [record] = read_jsonl(folder)
        assert record["id"] == chain.record_id
        narrative = record["testimony"]["narrative"]
        [attachment] = record["attachments"]
        relative = attachment["file"]
    else:
        [row] = read_csv(folder)
        assert row["id"] == chain.record_id
        narrative = row["narrative"]
        relative = row["attachments"]
    assert narrative.encode("utf-8") == chain.narrative.encode("utf-8")
    assert re.fullmatch(r"attachments/[0-9a-z]{20}", relative)
    assert (folder / relative).read_bytes() == chain.photo


def test_witness_name_is_exported_only_with_include_identities(chain: Chain) -> None:
    for folder in chain.plain.values():
        assert find_leaks([folder], {"witness": WITNESS_NAME}) == []
    [record] = read_jsonl(chain.plain["jsonl"])
    assert record["identity"] is None
    assert record["testimony"]["witness_code"]

    [record] = read_jsonl(chain.named["jsonl"])
    assert record["identity"]["name"] == WITNESS_NAME
    [row] = read_csv(chain.named["csv"])
    assert row["identity_name"] == WITNESS_NAME
    # The positive control for the scan above: it does find the name where it is.
    assert find_leaks([chain.named["csv"]], {"witness": WITNESS_NAME})


def test_usb_folder_holds_nothing_readable(chain: Chain) -> None:
    names = sorted(p.name for p in chain.usb.iterdir())
    assert len(names) == 1
    assert re.fullmatch(r"[0-9a-f]{32}\.fabundle", names[0])
    assert find_leaks([chain.usb], chain.secrets()) == []


def test_homes_hold_nothing_readable(chain: Chain) -> None:
    homes = [chain.hq.home, chain.monitor.home]
    root = chain.hq.home.parent
    scanned = {p.relative_to(root).as_posix() for p in files_under(*homes)}
    # The scan covered the databases, the outbox and both copies of the attachment.
    assert {"hq/store.db", "aleppo-1/store.db"} <= scanned
    assert any(s.startswith("aleppo-1/outbox/") for s in scanned)
    assert any(s.startswith("aleppo-1/attachments/") for s in scanned)
    assert any(s.startswith("hq/attachments/") for s in scanned)
    assert find_leaks(homes, chain.secrets()) == []


def test_the_scan_finds_the_canary_in_the_plaintext_export(chain: Chain) -> None:
    found = find_leaks([chain.plain["jsonl"]], chain.secrets())
    assert any("canary as utf-8" in f for f in found), found
    assert any("attachment@0 as raw" in f for f in found), found


def test_the_scan_finds_every_encoding(tmp_path: Path) -> None:
    secrets: dict[str, str | bytes] = {"canary": canary(), "blob": os.urandom(40)}
    for label, secret in secrets.items():
        for form, needle in encoded_forms(secret).items():
            for pad in range(3):  # inside other data at any offset
                (tmp_path / f"{label}-{form}-{pad}").write_bytes(b"x" * pad + needle + b"y")
    found = find_leaks([tmp_path], secrets)
    for label, secret in secrets.items():
        for form in encoded_forms(secret):
            assert any(f.endswith(f"{label} as {form}") for f in found), (label, form)
    # base64 of a longer text that holds the secret at each alignment.
    for pad in range(3):
        blob = os.urandom(pad) + str(secrets["canary"]).encode() + os.urandom(5)
        sub = tmp_path / f"b64-{pad}"
        sub.mkdir()
        (sub / "data").write_bytes(json.dumps({"x": base64.b64encode(blob).decode()}).encode())
        assert find_leaks([sub], {"canary": secrets["canary"]}), pad


# ---------------------------------------------------------------- 2. edit after sync


def test_an_edit_after_sync_reaches_hq_as_new_revisions(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "homs-1")
    record_id = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "usb1") == 1
    assert_ok(hq.import_(tmp_path / "usb1"))
    first = hq.show(record_id)["history"]
    assert [r["seq"] for r in first] == [1]

    edited = narrative_with("نص مصحح بعد الإرسال: تاريخ الاحتجاز كان الخميس.")
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + os.urandom(70_000))
    monitor.edit_narrative(record_id, edited, attach=[scan])
    assert monitor.status(record_id) == "ready"
    assert monitor.export(tmp_path / "usb2") == 1
    result = assert_ok(hq.import_(tmp_path / "usb2"))
    assert "3 new revision(s)" in result.out

    shown = hq.show(record_id)
    assert shown["testimony"]["narrative"] == edited
    history = shown["history"]
    assert [r["seq"] for r in history] == [1, 2, 3, 4]
    first_bundle = first[0]["bundle_id"]
    second_bundle = history[1]["bundle_id"]
    assert history[0]["bundle_id"] == first_bundle
    assert first_bundle != second_bundle
    assert {r["bundle_id"] for r in history[1:]} == {second_bundle}
    assert {r["device"] for r in history} == {"homs-1"}
    # HQ holds exactly the monitor's revisions: first content, sent marker, the edit, ready.
    local = monitor.ok("record", "show", record_id, "--history", "--json").json()["history"]
    assert [e["testimony"]["status"] for e in local] == ["ready", "sent", "draft", "ready", "sent"]
    assert [r["hash"] for r in history] == [e["hash"] for e in local[:4]]
    assert local[0]["testimony"]["narrative"] != edited
    assert local[3]["testimony"]["narrative"] == edited
    assert_ok(hq.export(tmp_path / "out", "jsonl"))
    [record] = read_jsonl(tmp_path / "out")
    assert record["testimony"]["narrative"] == edited
    # The attachment added by the edit travelled in the second bundle.
    [attachment] = record["attachments"]
    assert attachment["filename"] == "scan.pdf"
    assert (tmp_path / "out" / attachment["file"]).read_bytes() == scan.read_bytes()
    assert sha256sums_problems(tmp_path / "out") == []


# ---------------------------------------------------------------- 3. idempotent import


def test_the_same_bundle_imported_twice_is_not_duplicated(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "idlib-1")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes())
    record_id = monitor.add(narrative_with(canary()), attach=[photo])
    usb = tmp_path / "usb"
    assert monitor.export(usb) == 1
    [bundle] = bundles_in(usb)
    assert "1 imported, 0 already here" in assert_ok(hq.import_(usb)).out
    history = hq.show(record_id)["history"]
    stored = hq.stored_attachments()
    assert len(stored) == 1

    again = assert_ok(hq.import_(usb))  # the same folder
    assert f"already imported {bundle.name}" in again.out
    assert "0 imported, 1 already here, 0 quarantined." in again.out
    assert "already imported" in assert_ok(hq.import_(bundle)).out  # the file itself
    copy = tmp_path / "second-stick"
    copy.mkdir()
    shutil.copyfile(bundle, copy / "renamed.fabundle")  # the same bytes under another name
    assert "0 imported, 1 already here" in assert_ok(hq.import_(copy)).out

    assert [r["id"] for r in hq.testimonies()] == [record_id]
    assert hq.show(record_id)["history"] == history
    assert hq.stored_attachments() == stored
    assert hq.quarantine() == []
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    assert "Wrote 1 receipt(s)" in hq.ok("hq", "export-receipts", receipts).out


# ---------------------------------------------------------------- 4. revoked device


def test_a_revoked_devices_bundle_is_quarantined(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "daraa-1")
    before = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "usb1") == 1
    assert_ok(hq.import_(tmp_path / "usb1"))
    hq.ok("hq", "revoke", "daraa-1")
    [device] = hq.ok("hq", "devices", "--json").json()
    assert device["revoked_at"] is not None

    after = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "usb2") == 1
    result = hq.import_(tmp_path / "usb2")
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert "0 imported, 0 already here, 1 quarantined." in result.out
    [copy] = hq.quarantine()
    [original] = bundles_in(tmp_path / "usb2")
    assert copy.read_bytes() == original.read_bytes()
    [reason] = hq.reasons()
    assert "revoked-device" in reason
    assert hq.ids() == {before}
    assert after not in hq.ids()


# ---------------------------------------------------------------- 5. another HQ's enrolment


def test_a_bundle_sealed_for_another_hq_is_quarantined(tmp_path: Path) -> None:
    hq = new_hq(tmp_path / "ours")
    other = new_hq(tmp_path / "theirs")
    assert other.fingerprint != hq.fingerprint
    new_monitor(tmp_path / "ours", hq, "raqqa-1")  # an open enrolment at our HQ
    stranger = new_monitor(tmp_path / "theirs", other, "raqqa-1")
    stranger.add(narrative_with(canary()))
    usb = tmp_path / "usb"
    assert stranger.export(usb) == 1

    result = hq.import_(usb)
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    [reason] = hq.reasons()
    assert "no-matching-key" in reason
    assert hq.testimonies() == []
    assert hq.stored_attachments() == []
    [device] = hq.ok("hq", "devices", "--json").json()
    assert device["bound_at"] is None  # nothing bound our enrolment either


# ---------------------------------------------------------------- 6. a flipped byte


def test_a_flipped_byte_anywhere_is_quarantined_and_nothing_imported(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "hama-1")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes())
    record_id = monitor.add(narrative_with(canary()), attach=[photo])
    usb = tmp_path / "usb"
    assert monitor.export(usb) == 1
    [bundle] = bundles_in(usb)
    original = bundle.read_bytes()
    size = len(original)
    positions = {
        "magic": 0,
        "version": 9,
        "sealed-header": 150,
        "first-chunk": 300,
        "middle": size // 2,
        "last-chunk": size - 40,
        "last-byte": size - 1,
    }
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name, position in positions.items():
        (damaged / f"{name}.fabundle").write_bytes(flipped(original, position))

    result = hq.import_(damaged)
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert f"0 imported, 0 already here, {len(positions)} quarantined." in result.out
    assert result.err.count("quarantined ") == len(positions)
    assert len(hq.reasons()) == len(positions)
    assert sorted(p.read_bytes() for p in hq.quarantine()) == sorted(
        p.read_bytes() for p in damaged.iterdir()
    )
    assert hq.testimonies() == []
    assert hq.stored_attachments() == []  # no half-imported attachment left behind
    [device] = hq.ok("hq", "devices", "--json").json()
    assert device["bound_at"] is None

    one = hq.import_(damaged / "middle.fabundle")  # a single file is refused the same way
    assert_refused(one, ExitCode.DATA, also_allowed=QUARANTINE_LINE)

    assert "1 imported" in assert_ok(hq.import_(usb)).out
    assert hq.ids() == {record_id}
    assert len(hq.stored_attachments()) == 1


# ---------------------------------------------------------------- 7. receipts


def test_receipts_confirm_and_forged_receipts_are_refused(tmp_path: Path) -> None:
    hq = new_hq(tmp_path / "ours")
    monitor = new_monitor(tmp_path / "ours", hq, "deir-1")
    record_id = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "usb") == 1
    assert_ok(hq.import_(tmp_path / "usb"))
    valid = tmp_path / "receipts"
    valid.mkdir()
    assert "Wrote 1 receipt(s)" in hq.ok("hq", "export-receipts", valid).out
    [receipt_file] = list(valid.glob("*.fareceipts"))
    receipt = receipt_file.read_bytes()
    assert len(receipt) == RECEIPT_BYTES

    # A second HQ with its own monitor: its receipts are real, but not our HQ's.
    other = new_hq(tmp_path / "theirs")
    stranger = new_monitor(tmp_path / "theirs", other, "deir-2")
    stranger.add(narrative_with(canary()))
    assert stranger.export(tmp_path / "usb-theirs") == 1
    assert_ok(other.import_(tmp_path / "usb-theirs"))
    foreign = tmp_path / "receipts-theirs"
    foreign.mkdir()
    other.ok("hq", "export-receipts", foreign)

    # A receipt naming our bundle and its hash, signed by the other HQ's root.
    named = parse_receipt(receipt)
    with HqArchive.open(
        unlock_hq(Home(other.home), other.passphrase_file.read_text().strip())
    ) as archive:
        forged_by_other = sign_receipt(
            archive.root_key(), Receipt(named.bundle_id, named.payload_sha256, named.imported_at)
        )
    forgeries = {
        "bundle-id": flipped(receipt, 10),
        "payload-hash": flipped(receipt, 30),
        "time": flipped(receipt, 60),
        "signature": flipped(receipt, RECEIPT_BYTES - 1),
        "other-root": forged_by_other,
        "truncated": receipt[:-1],
        # One bad receipt refuses its whole file, the good one beside it included.
        "valid-then-forged": receipt + forged_by_other,
    }
    for name, data in forgeries.items():
        folder = tmp_path / f"forged-{name}"
        folder.mkdir()
        (folder / f"{'a' * 32}.fareceipts").write_bytes(data)
        assert_refused(monitor.run("sync", "import-receipts", folder), ExitCode.DATA)
    # Status only moves forward (sent -> confirmed): one look after them all suffices.
    assert monitor.status(record_id) == "sent"
    assert_refused(monitor.run("sync", "import-receipts", foreign), ExitCode.DATA)
    assert monitor.status(record_id) == "sent"
    assert monitor.sync_status()["confirmed"] == 0

    result = monitor.ok("sync", "import-receipts", valid)
    assert "1 bundle(s) newly confirmed" in result.out
    assert monitor.status(record_id) == "confirmed"
    status = monitor.sync_status()
    assert (status["confirmed"], status["unconfirmed"]) == (1, 0)
    again = monitor.ok("sync", "import-receipts", valid)  # applying it twice is harmless
    assert "0 bundle(s) newly confirmed" in again.out
    assert monitor.status(record_id) == "confirmed"


# ---------------------------------------------------------------- 8. enrolment files


def _tamper_body(enrolment: Path, out: Path) -> Path:
    """The enrolment file with one bit of its signed (base64) body flipped."""
    document = json.loads(enrolment.read_text(encoding="utf-8"))
    body = base64.b64decode(document["body"])
    document["body"] = base64.b64encode(flipped(body, len(body) // 2)).decode("ascii")
    out.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return out


def test_a_tampered_or_unconfirmed_enrolment_creates_no_home(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    enrolment = hq.enroll("mayadin-1", tmp_path / "mayadin-1.enrol")
    passphrase = tmp_path / "monitor.pass"
    passphrase.write_text("monitor passphrase seven eight\n", encoding="utf-8")
    home = tmp_path / "monitor"

    def init(path: Path, fingerprint: str, code: int | None = None) -> None:
        result = fieldapp(
            "init",
            "--enroll",
            path,
            "--hq-fingerprint",
            fingerprint,
            "--passphrase-file",
            passphrase,
            home=home,
        )
        assert result.code not in (ExitCode.OK, ExitCode.INTERNAL), result.describe()
        assert_refused(result, result.code if code is None else code)
        assert not home.exists()

    # Any non-zero code: today a bad signature ends with ERROR (1), not DATA (4).
    init(_tamper_body(enrolment, tmp_path / "tampered.enrol"), hq.fingerprint)
    digits = hq.fingerprint.replace(" ", "")
    wrong = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    init(enrolment, wrong, ExitCode.KEYS)
    foreign = new_hq(tmp_path, "other-hq")
    init(foreign.enroll("mayadin-1", tmp_path / "foreign.enrol"), hq.fingerprint, ExitCode.KEYS)

    monitor = new_monitor(tmp_path / "real", hq, "mayadin-2")
    second = hq.enroll("mayadin-3", tmp_path / "second.enrol")
    result = monitor.run("enroll", second, "--hq-fingerprint", hq.fingerprint)
    assert_refused(result, ExitCode.KEYS)
    assert "already enrolled" in result.err
    assert monitor.sync_status()["device_name"] == "mayadin-2"


# ---------------------------------------------------------------- 9. consent


def test_exports_honour_consent(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "aleppo-9")
    for_justice = monitor.add(
        narrative_with(canary()), identity_name=WITNESS_NAME, consent=["justice-mechanisms"]
    )
    for_press = monitor.add(
        narrative_with(canary()), identity_name=WITNESS_NAME, consent=["anonymous-publication"]
    )
    assert monitor.export(tmp_path / "usb") == 2
    assert_ok(hq.import_(tmp_path / "usb"))

    refused = tmp_path / "refused"
    result = hq.export_with_identities(refused, "jsonl", "--for", "publication")
    assert_refused(result, ExitCode.USAGE)
    assert not refused.exists()

    assert_ok(hq.export(tmp_path / "justice", "jsonl", "--for", "justice"))
    assert [r["id"] for r in read_jsonl(tmp_path / "justice")] == [for_justice]
    assert_ok(hq.export(tmp_path / "justice-csv", "csv", "--for", "justice"))
    assert [r["id"] for r in read_csv(tmp_path / "justice-csv")] == [for_justice]
    assert_ok(hq.export(tmp_path / "press", "jsonl", "--for", "publication"))
    assert [r["id"] for r in read_jsonl(tmp_path / "press")] == [for_press]
    assert_ok(hq.export(tmp_path / "internal", "jsonl"))
    assert {r["id"] for r in read_jsonl(tmp_path / "internal")} == {for_justice, for_press}


# ---------------------------------------------------------------- 10. symlinks


def test_export_into_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "qamishli-1")
    record_id = monitor.add(narrative_with(canary()))
    target = tmp_path / "real-stick"
    target.mkdir()
    link = tmp_path / "stick"
    link.symlink_to(target, target_is_directory=True)

    assert_refused(monitor.run("sync", "export", link), ExitCode.IO)
    assert list(target.iterdir()) == []
    assert monitor.status(record_id) == "ready"  # nothing was sealed or marked sent
    assert monitor.sync_status()["bundles"] == 0

    assert monitor.export(target) == 1
    assert monitor.status(record_id) == "sent"


def test_import_skips_symlinked_bundles(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "qamishli-2")
    first = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "one") == 1
    second = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "two") == 1
    [outside] = bundles_in(tmp_path / "two")
    usb = tmp_path / "one"
    (usb / "linked.fabundle").symlink_to(outside)

    result = hq.import_(usb)
    assert result.code in (ExitCode.OK, ExitCode.DATA), result.describe()
    if result.code:
        assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert "1 imported" in result.out
    assert hq.ids() == {first}

    assert_refused(hq.import_(usb / "linked.fabundle"), ExitCode.IO)
    folder_link = tmp_path / "linked-folder"
    folder_link.symlink_to(tmp_path / "two", target_is_directory=True)
    assert_refused(hq.import_(folder_link), ExitCode.IO)
    assert hq.ids() == {first}

    assert_ok(hq.import_(outside))  # the real file, named directly
    assert hq.ids() == {first, second}


# ---------------------------------------------------------------- failures of the outside world


def test_a_full_disk_or_stick_is_one_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "tartus-1")
    video = tmp_path / "video.bin"
    video.write_bytes(os.urandom(3_000_000))
    record_id = monitor.add(narrative_with(canary()), attach=[video])
    limit = 1_500_000  # above the database's size, below the bundle's
    outbox = monitor.home / "outbox"

    # The home's own disk is full while the bundle is sealed into the outbox.
    stick = tmp_path / "stick"
    stick.mkdir()
    result = monitor.run("sync", "export", stick, max_file_bytes=limit)
    assert_refused(result, ExitCode.IO)
    assert list(outbox.iterdir()) == []  # no partial bundle left behind
    assert list(stick.iterdir()) == []
    assert monitor.status(record_id) == "ready"
    assert monitor.sync_status()["bundles"] == 0

    assert monitor.export(stick) == 1
    # The stick fills up while an earlier bundle is copied again.
    full = tmp_path / "full-stick"
    full.mkdir()
    result = monitor.run("sync", "export", "--again", full, max_file_bytes=limit)
    assert_refused(result, ExitCode.IO)
    assert "0 of 1 bundle(s)" in result.err
    assert list(full.iterdir()) == []  # not even a temp file
    assert_ok(monitor.run("sync", "export", "--again", full))
    [copy] = bundles_in(full)
    [first] = bundles_in(stick)
    assert copy.read_bytes() == first.read_bytes()
    assert "1 imported" in assert_ok(hq.import_(full)).out
    assert hq.ids() == {record_id}


def test_missing_paths_and_unknown_ids_are_one_line_errors(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    assert_refused(hq.import_(tmp_path / "no-such-stick"), ExitCode.IO)
    assert_refused(hq.export(tmp_path / "no-such-parent" / "out", "jsonl"), ExitCode.IO)
    assert not (tmp_path / "no-such-parent").exists()
    result = hq.run("hq", "show", "abcdefgh")
    assert_refused(result, ExitCode.ERROR)
    assert "fieldapp hq list" in result.err
    assert_refused(hq.run("hq", "verify", "abcdefgh"), ExitCode.ERROR)
    # Refused before the protection passphrase is asked for (there is no terminal here).
    out = tmp_path / "x"
    result = hq.run(
        "hq",
        "export",
        "--format",
        "csv",
        "--out",
        out,
        "--for",
        "publication",
        "--include-identities",
    )
    assert_refused(result, ExitCode.USAGE)
    assert "never exported for publication" in result.err
    monitor = new_monitor(tmp_path, hq, "latakia-1")
    assert_refused(monitor.run("sync", "import-receipts", tmp_path / "nope"), ExitCode.IO)
    assert_refused(monitor.run("sync", "export", tmp_path / "nope"), ExitCode.IO)


def test_one_stick_both_ways_imports_cleanly(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "jableh-1")
    first = monitor.add(narrative_with(canary()))
    stick = tmp_path / "stick"
    assert monitor.export(stick) == 1
    assert_ok(hq.import_(stick))
    hq.ok("hq", "export-receipts", stick)  # receipts go back on the same stick
    assert "1 bundle(s) newly confirmed" in monitor.ok("sync", "import-receipts", stick).out
    assert monitor.status(first) == "confirmed"
    second = monitor.add(narrative_with(canary()))
    assert monitor.export(stick) == 1  # and the next bundles come on it too
    result = assert_ok(hq.import_(stick))
    assert "1 imported, 1 already here, 0 quarantined." in result.out
    assert hq.ids() == {first, second}
    assert hq.quarantine() == []


def test_hostile_file_names_cannot_forge_report_lines(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "baniyas-1")
    record_id = monitor.add(narrative_with(canary()))
    assert monitor.export(tmp_path / "usb") == 1
    [bundle] = bundles_in(tmp_path / "usb")
    stick = tmp_path / "stick"
    stick.mkdir()
    shutil.copyfile(bundle, stick / "a\nfieldapp: all clear\u202e.fabundle")
    (stick / "b\nfieldapp: forged\x1b[2J.fabundle").write_bytes(os.urandom(500))

    result = hq.import_(stick)
    assert_refused(result, ExitCode.DATA, also_allowed=QUARANTINE_LINE)
    assert not result.out.startswith("fieldapp: ")
    assert all(not line.startswith("fieldapp: ") for line in result.out.splitlines())
    assert "\u202e" not in result.out + result.err
    assert hq.ids() == {record_id}


def test_remove_confirmed_leaves_a_stub_once_hq_confirms(tmp_path: Path) -> None:
    hq = new_hq(tmp_path)
    monitor = new_monitor(tmp_path, hq, "homs-1")
    assert "remove confirmed: off" in monitor.ok("sync", "settings").out
    assert "remove confirmed: on" in monitor.ok("sync", "settings", "--remove-confirmed", "on").out
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes())
    sentence = canary()
    gone = monitor.add(narrative_with(sentence), identity_name=WITNESS_NAME, attach=[photo])
    kept = monitor.add(narrative_with(canary()))  # sent, but its receipt never comes back
    usb = tmp_path / "usb"
    assert monitor.export(usb) == 2
    for bundle in bundles_in(usb):
        if bundle != max(bundles_in(usb), key=lambda p: p.stat().st_size):
            bundle.unlink()  # HQ only ever gets the one with the photo
    assert_ok(hq.import_(usb))
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    hq.ok("hq", "export-receipts", receipts)
    monitor.ok("sync", "import-receipts", receipts)

    listed = {r["id"]: r for r in monitor.ok("record", "list", "--json").json()}
    assert listed[gone]["status"] == "confirmed"
    assert listed[kept]["status"] == "sent"
    shown = assert_refused(monitor.run("record", "show", gone), ExitCode.ERROR)
    assert "content was removed" in shown
    assert monitor.ok("record", "show", kept, "--json").json()["testimony"]["status"] == "sent"
    assert monitor.ok("search", sentence.split()[0], "--json").json() == []
    home = monitor.home
    assert list((home / "attachments").iterdir()) == []
    assert len(list((home / "outbox").iterdir())) == 1  # the unconfirmed bundle only
    assert_ok(monitor.run("check"))
