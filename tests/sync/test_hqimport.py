"""HQ import under hostile input: whatever a bundle file holds, it is imported whole or
quarantined with its reason, and a refused one changes nothing in the archive.

Bundles come from real enrolled monitors (tests/sync/world.py) or are forged by
hand from a manifest, sealed and signed like a device would, to break exactly
one rule at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.bundle import HEADER_TOTAL_BYTES, PREFIX_BYTES
from crypto.enrolment import binding_proof, enrolment_secret, new_enrolment_id
from crypto.keys import DeviceSigningKey
from crypto.revisions import GENESIS, Revision, make_revision
from crypto.sealed import seal_to_protection
from fieldapp.domain import (
    AttachmentRef,
    ProtectedIdentity,
    canonical_bytes,
    dump_canonical,
    identity_to_json,
)
from fieldapp.hq.custody import custody_report
from fieldapp.hq.errors import Refusal
from fieldapp.hq.export import Audience, ExportFormat, export_archive
from fieldapp.hq.vault import unlock_protection
from fieldapp.store.store import new_record_id
from sync import hqimport
from sync.files import UnsafeFolder
from sync.hqimport import Outcome, import_file, import_path
from sync.outbox import build_bundles
from sync.payload import AttachmentEntry, AttachmentWriter, IdentityEntry, PayloadReader
from tests.sync.world import (
    PROTECTION_PASSPHRASE,
    Monitor,
    World,
    attachment_files,
    chain,
    forge,
    imported,
    manifest_doc,
    manifest_of,
    new_world,
    now,
    sent,
)

# ------------------------------------------------------------------ helpers


def refused(world: World, path: Path, reason: Refusal, *, kept: bool = True) -> Outcome:
    """Import ``path``; check it was refused for ``reason`` and changed nothing at HQ.

    ``kept``: the file could be read, so a copy and a note are in the quarantine.
    """
    before = world.snapshot()
    notes = world.quarantine_notes()
    original = path.read_bytes() if kept else b""
    outcome = import_file(world.archive, path)
    assert outcome.refusal is not None, "the bundle was imported"
    assert outcome.refusal.reason is reason, outcome.refusal.message
    assert outcome.result is None
    assert world.snapshot() == before
    new = {k: v for k, v in world.quarantine_notes().items() if k not in notes}
    if not kept:
        assert outcome.quarantined_as is None
        assert new == {}
        return outcome
    assert outcome.quarantined_as is not None
    assert list(new) == [outcome.quarantined_as]
    assert new[outcome.quarantined_as].startswith(f"reason: {reason.value}\n")
    copy = world.hq_home.quarantine / f"{outcome.quarantined_as}.fabundle"
    assert copy.read_bytes() == original
    return outcome


def attachment(
    content: bytes, filename: str = "photo.jpg"
) -> tuple[AttachmentRef, AttachmentEntry]:
    """The testimony's reference to an attachment and the manifest's entry for it."""
    aid = new_record_id()
    digest = hashlib.sha256(content).digest()
    ref = AttachmentRef(aid, filename, "image/jpeg", len(content), digest.hex())
    return ref, AttachmentEntry(aid, len(content), digest)


def stranger_testimony(m: Monitor, stranger: DeviceSigningKey) -> list[Revision]:
    """A valid one-revision chain recorded and signed by ``stranger``."""
    t = m.testimony(recorded_by=stranger.public_key.key_id.hex())
    return chain(stranger, new_record_id(), [t])


class Spy:
    """Counts what the import decrypted: payload bytes and attachment writers."""

    def __init__(self) -> None:
        self.payload_bytes = 0
        self.writers = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    seen = Spy()

    class Reader(PayloadReader):
        def write(self, data: bytes, /) -> int:
            seen.payload_bytes += len(data)
            return super().write(data)

    real_new = hqimport._Writers.new

    def new(self: hqimport._Writers, entry: AttachmentEntry) -> AttachmentWriter:
        seen.writers += 1
        return real_new(self, entry)

    monkeypatch.setattr(hqimport, "PayloadReader", Reader)
    monkeypatch.setattr(hqimport._Writers, "new", new)
    return seen


# ------------------------------------------------------------------ devices and enrolment


def test_honest_bundle_imports_once(world: World, spy: Spy) -> None:
    m = world.monitor()
    rid = m.add(
        "الشاهد رأى القافلة",
        attachments={"a.jpg": os.urandom(5000), "b.txt": b"note"},
        identity=ProtectedIdentity(name="أحمد"),
    )
    [path] = m.build()
    first = imported(world, path)
    assert first.result is not None
    assert first.result.testimony_id == rid
    assert first.result.new_revisions == 1
    assert spy.payload_bytes > 0
    assert spy.writers == 2
    counts = world.counts()
    files = attachment_files(world.hq_home)
    assert len(files) == 2
    again = imported(world, path)
    assert again.result is not None
    assert again.result.already_imported
    assert world.counts() == counts
    assert attachment_files(world.hq_home) == files


def test_unknown_device_without_an_open_enrolment(world: World, spy: Spy) -> None:
    m = world.monitor()
    sent(world, m)  # binds the only enrolment
    stranger = DeviceSigningKey.generate()
    # Even with the enrolment id and secret (a stolen enrolment file), once bound.
    manifest = manifest_of(
        stranger_testimony(m, stranger),
        m.enrolment.enrolment_id,
        binding_proof(m.enrolment.secret, stranger.public_key),
    )
    spy.payload_bytes = spy.writers = 0
    # An unknown key might be the device's rotated one: the bundle is read as far as
    # its manifest, which proves no rotation, and refused before any attachment.
    refused(world, forge(world, stranger, manifest), Refusal.ENROLMENT)
    assert spy.writers == 0


def test_unknown_device_when_the_only_enrolment_is_revoked(world: World) -> None:
    m = world.monitor()  # never bound: revoked below, so no enrolment is open
    world.archive.revoke(m.name)
    stranger = DeviceSigningKey.generate()
    manifest = manifest_of(stranger_testimony(m, stranger), new_enrolment_id(), os.urandom(32))
    refused(world, forge(world, stranger, manifest), Refusal.UNKNOWN_DEVICE)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong secret", Refusal.ENROLMENT),
        ("proof made for another key", Refusal.ENROLMENT),
        ("random proof", Refusal.ENROLMENT),
        ("enrolment never issued", Refusal.UNKNOWN_DEVICE),
    ],
)
def test_enrolment_proof_is_checked_while_an_enrolment_is_open(
    world: World, case: str, reason: Refusal
) -> None:
    m = world.monitor()
    sent(world, m)
    second = world.enrolment("second")
    stranger = DeviceSigningKey.generate()
    revisions = stranger_testimony(m, stranger)
    eid, proof = second.enrolment_id, binding_proof(second.secret, stranger.public_key)
    if case == "wrong secret":
        proof = binding_proof(enrolment_secret(), stranger.public_key)
    elif case == "proof made for another key":
        proof = binding_proof(second.secret, m.device.public_key)
    elif case == "random proof":
        proof = os.urandom(32)
    else:
        eid = new_enrolment_id()
    refused(world, forge(world, stranger, manifest_of(revisions, eid, proof)), reason)
    assert world.archive.device("second").bound_at is None
    # The right proof binds the key: the refusal was for the proof alone.
    good = manifest_of(
        revisions, second.enrolment_id, binding_proof(second.secret, stranger.public_key)
    )
    outcome = imported(world, forge(world, stranger, good))
    assert outcome.result is not None
    assert outcome.result.device_name == "second"
    assert world.archive.device("second").keys == (stranger.public_key,)


@pytest.mark.parametrize("another_open", [True, False], ids=["open-enrolment", "none-open"])
def test_a_used_enrolment_binds_no_second_device(world: World, another_open: bool) -> None:
    m = world.monitor()
    sent(world, m)
    if another_open:
        world.enrolment("spare")
    copycat = DeviceSigningKey.generate()
    manifest = manifest_of(
        stranger_testimony(m, copycat),
        m.enrolment.enrolment_id,
        binding_proof(m.enrolment.secret, copycat.public_key),
    )
    # The envelope passes (the key might be a rotated one of an active device) and
    # the manifest proves neither a binding nor a rotation.
    refused(world, forge(world, copycat, manifest), Refusal.ENROLMENT)
    assert world.archive.device(m.name).keys == (m.device.public_key,)


def test_a_bound_device_cannot_take_a_second_enrolment(world: World) -> None:
    """A device already bound proving another open enrolment: refused, the enrolment stays open."""
    m = world.monitor()
    sent(world, m)
    spare = world.enrolment("spare")
    manifest = manifest_of(
        m.chain([m.testimony()]),
        spare.enrolment_id,
        binding_proof(spare.secret, m.device.public_key),
    )
    refused(world, forge(world, m.device, manifest), Refusal.ENROLMENT)
    assert world.archive.device("spare").bound_at is None
    assert world.archive.has_open_enrolments()


def test_two_devices_racing_for_one_enrolment(world: World) -> None:
    """Both hold the same enrolment file: the first bundle binds, the second is refused."""
    m = world.monitor()
    world.enrolment("spare")  # keeps an enrolment open so the second reaches the binding
    copycat = DeviceSigningKey.generate()
    copied = manifest_of(
        stranger_testimony(m, copycat),
        m.enrolment.enrolment_id,
        binding_proof(m.enrolment.secret, copycat.public_key),
    )
    forged = forge(world, copycat, copied)
    sent(world, m)
    refused(world, forged, Refusal.ENROLMENT)


def test_revoked_device_is_refused_before_its_payload_is_decrypted(world: World, spy: Spy) -> None:
    m = world.monitor()
    sent(world, m)
    m.add("after the revocation", attachments={"a.jpg": os.urandom(3000)})
    [path] = m.build()
    world.archive.revoke(m.name)
    spy.payload_bytes = spy.writers = 0
    refused(world, path, Refusal.REVOKED_DEVICE)
    assert (spy.payload_bytes, spy.writers) == (0, 0)


@pytest.mark.parametrize("another_open", [True, False], ids=["open-enrolment", "none-open"])
def test_revoked_before_its_first_bundle(world: World, another_open: bool) -> None:
    m = world.monitor()
    if another_open:
        world.enrolment("spare")
    m.add("never bound")
    [path] = m.build()
    world.archive.revoke(m.name)
    reason = Refusal.REVOKED_DEVICE if another_open else Refusal.UNKNOWN_DEVICE
    refused(world, path, reason)
    assert world.archive.device(m.name).keys == ()


# ------------------------------------------------------------------ revision chains


def _first_rewritten_by_another_key(m: Monitor, other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("first"), m.testimony("second")])
    rid = good[0].record_id
    rewritten = canonical_bytes(m.testimony("rewritten"))
    return [make_revision(other, rid, 1, GENESIS, rewritten), good[1]]


def _single_rewritten_by_another_key(m: Monitor, other: DeviceSigningKey) -> list[Revision]:
    [good] = m.chain([m.testimony("first")])
    rewritten = canonical_bytes(m.testimony("rewritten"))
    return [make_revision(other, good.record_id, 1, GENESIS, rewritten)]


def _chain_resigned_by_another_key(m: Monitor, other: DeviceSigningKey) -> list[Revision]:
    return chain(other, new_record_id(), [m.testimony("first"), m.testimony("second")])


def _payload_changed_hash_kept(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("first"), m.testimony("second")])
    changed = canonical_bytes(m.testimony("changed"))
    return [dataclasses.replace(good[0], payload=changed), good[1]]


def _gap_renumbered(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("one"), m.testimony("two"), m.testimony("three")])
    return [good[0], dataclasses.replace(good[2], seq=2)]


def _gap_resigned(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    """Revision 2 left out; revision 3 hashed and signed again as seq 2 over revision 2's hash."""
    good = m.chain([m.testimony("one"), m.testimony("two"), m.testimony("three")])
    third = make_revision(m.device, good[0].record_id, 2, good[1].hash, good[2].payload)
    return [good[0], third]


def _parent_hash_wrong(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("first")])
    second = canonical_bytes(m.testimony("second"))
    return [good[0], make_revision(m.device, good[0].record_id, 2, os.urandom(32), second)]


def _signature_of_another_revision(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("first"), m.testimony("second")])
    return [good[0], dataclasses.replace(good[1], signature=good[0].signature)]


def _recorded_by_another_device(m: Monitor, other: DeviceSigningKey) -> list[Revision]:
    return m.chain([m.testimony(recorded_by=other.public_key.key_id.hex())])


def _earlier_recorded_by_another_device(m: Monitor, other: DeviceSigningKey) -> list[Revision]:
    first = m.testimony("first", recorded_by=other.public_key.key_id.hex())
    return m.chain([first, m.testimony("second")])


def _chain_of_another_record(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    good = m.chain([m.testimony("first")])
    return [dataclasses.replace(good[0], record_id=new_record_id())]


def _not_a_testimony(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    return [make_revision(m.device, new_record_id(), 1, GENESIS, b'{"not":"a testimony"}')]


def _not_canonical(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    payload = canonical_bytes(m.testimony()) + b" "
    return [make_revision(m.device, new_record_id(), 1, GENESIS, payload)]


def _unknown_violation(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    return m.chain([m.testimony(violations=("no-such-violation",))])


def _invalid_testimony(m: Monitor, _other: DeviceSigningKey) -> list[Revision]:
    """Well-formed JSON of a testimony that the monitor's validation would refuse."""
    return m.chain([m.testimony("   ")])  # ready with an empty narrative


REVISION_CASES: dict[str, Callable[[Monitor, DeviceSigningKey], list[Revision]]] = {
    "first revision rewritten, signed by another key": _first_rewritten_by_another_key,
    "only revision rewritten, signed by another key": _single_rewritten_by_another_key,
    "whole chain signed by another key": _chain_resigned_by_another_key,
    "payload changed, hash kept": _payload_changed_hash_kept,
    "revision missing, next renumbered": _gap_renumbered,
    "revision missing, next re-signed": _gap_resigned,
    "parent hash wrong": _parent_hash_wrong,
    "signature of another revision": _signature_of_another_revision,
    "recorded by another device": _recorded_by_another_device,
    "earlier revision recorded by another device": _earlier_recorded_by_another_device,
    "revisions of another record": _chain_of_another_record,
    "payload not a testimony": _not_a_testimony,
    "payload not canonical": _not_canonical,
    "unknown violation type": _unknown_violation,
    "testimony fails validation": _invalid_testimony,
}


@pytest.mark.parametrize("case", list(REVISION_CASES))
def test_revision_chain_tampering(world: World, case: str) -> None:
    m = world.monitor()
    sent(world, m)
    revisions = REVISION_CASES[case](m, DeviceSigningKey.generate())
    refused(world, forge(world, m.device, m.manifest(revisions)), Refusal.REVISIONS)


def test_sequence_gap_in_the_manifest_is_refused_as_malformed(world: World) -> None:
    m = world.monitor()
    doc = manifest_doc(m.manifest(m.chain([m.testimony("one"), m.testimony("two")])))
    doc["revisions"][1]["seq"] = 3
    refused(world, forge(world, m.device, doc), Refusal.PAYLOAD)


# ------------------------------------------------------------------ payload contents


def test_attachment_bytes_not_matching_their_hash(world: World) -> None:
    m = world.monitor()
    sent(world, m)
    good = os.urandom(200_000)
    good_ref, good_entry = attachment(good)
    bad_ref, bad_entry = attachment(b"B" * 1000)
    t = m.testimony(attachments=(good_ref, bad_ref))
    manifest = m.manifest(m.chain([t]), attachments=[good_entry, bad_entry])
    # The first attachment arrives whole and lands on disk before the second fails.
    path = forge(world, m.device, manifest, [good, b"A" * 1000])
    refused(world, path, Refusal.PAYLOAD)


@pytest.mark.parametrize("case", ["unreferenced", "size differs", "hash differs"])
def test_attachment_no_revision_refers_to(world: World, case: str) -> None:
    m = world.monitor()
    content = os.urandom(4000)
    ref, entry = attachment(content)
    refs: tuple[AttachmentRef, ...] = ()
    if case == "size differs":
        refs = (dataclasses.replace(ref, size=ref.size + 1),)
    elif case == "hash differs":
        refs = (dataclasses.replace(ref, sha256=hashlib.sha256(b"other").hexdigest()),)
    manifest = m.manifest(m.chain([m.testimony(attachments=refs)]), attachments=[entry])
    refused(world, forge(world, m.device, manifest, [content]), Refusal.PAYLOAD)


@pytest.mark.parametrize("named", [True, False], ids=["another-code", "no-code"])
def test_identity_for_a_witness_the_testimony_does_not_name(world: World, named: bool) -> None:
    m = world.monitor()
    t = m.testimony() if named else m.testimony(witness_code=None)
    identity = IdentityEntry(m.store.new_witness_code(), os.urandom(96))
    manifest = m.manifest(m.chain([t]), identities=[identity])
    refused(world, forge(world, m.device, manifest), Refusal.PAYLOAD)


def test_bytes_after_the_last_attachment(world: World) -> None:
    m = world.monitor()
    content = os.urandom(100)
    ref, entry = attachment(content)
    manifest = m.manifest(m.chain([m.testimony(attachments=(ref,))]), attachments=[entry])
    refused(world, forge(world, m.device, manifest, [content, b"\0"]), Refusal.PAYLOAD)


def test_attachment_cut_short(world: World) -> None:
    m = world.monitor()
    content = os.urandom(100)
    ref, entry = attachment(content)
    manifest = m.manifest(m.chain([m.testimony(attachments=(ref,))]), attachments=[entry])
    refused(world, forge(world, m.device, manifest, [content[:-1]]), Refusal.PAYLOAD)


# ------------------------------------------------------------------ conflicts with HQ's state


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "first-bundle"])
def test_testimony_id_of_another_device(world: World, bound: bool) -> None:
    first = world.monitor("first")
    rid = sent(world, first)
    second = world.monitor("second")
    if bound:
        sent(world, second)
    manifest = second.manifest(second.chain([second.testimony("mine now")], rid))
    refused(world, forge(world, second.device, manifest), Refusal.CONFLICT)
    assert (world.archive.device("second").bound_at is None) is not bound
    assert world.archive.summary(rid).device_name == "first"


def test_revision_contradicting_one_hq_holds(world: World) -> None:
    m = world.monitor()
    rid = sent(world, m)
    manifest = m.manifest(m.chain([m.testimony("another first revision")], rid))
    refused(world, forge(world, m.device, manifest), Refusal.CONFLICT)
    assert len(world.archive.history(rid)) == 1


def test_attachment_id_held_with_other_content(world: World) -> None:
    m = world.monitor()
    rid = m.add(attachments={"a.jpg": os.urandom(1000)})
    [path] = m.build()
    imported(world, path)
    [held] = world.archive.attachments(rid)
    content = os.urandom(1000)
    ref, entry = attachment(content)
    ref = dataclasses.replace(ref, attachment_id=held.id)
    entry = dataclasses.replace(entry, id=held.id)
    manifest = m.manifest(m.chain([m.testimony(attachments=(ref,))]), attachments=[entry])
    refused(world, forge(world, m.device, manifest, [content]), Refusal.CONFLICT)


@pytest.mark.parametrize("same_hash", [True, False], ids=["as-captured", "other-hash"])
def test_references_to_another_testimony_s_attachment(world: World, same_hash: bool) -> None:
    """A testimony may only refer to its own attachments (held by HQ), as captured."""
    m = world.monitor()
    rid = m.add("first", attachments={"a.jpg": os.urandom(1000)})
    [path] = m.build()
    imported(world, path)
    [held] = world.archive.testimony(rid)[1].attachments
    if not same_hash:
        held = dataclasses.replace(held, sha256=hashlib.sha256(b"other").hexdigest())
    revisions = m.chain([m.testimony("borrows it", attachments=(held,))])
    refused(world, forge(world, m.device, m.manifest(revisions)), Refusal.CONFLICT)


def test_a_later_revision_renaming_an_attachment_s_hash(world: World) -> None:
    """The whole chain comes with every bundle, so the change shows within the bundle."""
    m = world.monitor()
    rid = m.add("first", attachments={"a.jpg": os.urandom(1000)})
    [path] = m.build()
    imported(world, path)
    [first] = world.archive.history(rid)
    current = world.archive.testimony(rid)[1]
    wrong = dataclasses.replace(current.attachments[0], sha256=hashlib.sha256(b"other").hexdigest())
    changed = canonical_bytes(dataclasses.replace(current, attachments=(wrong,)))
    revisions = [first.as_revision(rid), make_revision(m.device, rid, 2, first.hash, changed)]
    refused(world, forge(world, m.device, m.manifest(revisions)), Refusal.REVISIONS)


def test_an_attachment_reference_changing_within_a_bundle(world: World) -> None:
    m = world.monitor()
    content = os.urandom(500)
    ref, entry = attachment(content)
    wrong = dataclasses.replace(ref, sha256=hashlib.sha256(b"other").hexdigest())
    t1 = m.testimony("first", attachments=(ref,))
    t2 = m.testimony("second", attachments=(wrong,))
    manifest = m.manifest(m.chain([t1, t2]), attachments=[entry])
    refused(world, forge(world, m.device, manifest, [content]), Refusal.REVISIONS)


def _export(world: World, audience: Audience = Audience.INTERNAL) -> list[dict[str, Any]]:
    key = unlock_protection(world.hq_home, PROTECTION_PASSPHRASE)
    folder = world.root / f"export-{os.urandom(4).hex()}"
    export_archive(
        world.archive, folder, fmt=ExportFormat.JSONL, audience=audience, identity_key=key
    )
    lines = (folder / "testimonies.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_exports_serve_only_a_testimony_s_own_attachments(world: World) -> None:
    """References that reached HQ before the attachment they name: never served, never fatal."""
    m = world.monitor()
    content = os.urandom(3000)
    owner = m.add("owner", attachments={"a.jpg": content})
    [owner_bundle] = m.build()
    [ref] = m.store.get(owner).testimony.attachments
    wrong = dataclasses.replace(ref, sha256=hashlib.sha256(b"other").hexdigest())
    borrowing = m.chain([m.testimony("borrows the file", attachments=(ref,))])
    misnaming = m.chain([m.testimony("names another hash", attachments=(wrong,))])
    imported(world, forge(world, m.device, m.manifest(borrowing)))
    imported(world, forge(world, m.device, m.manifest(misnaming)))
    imported(world, owner_bundle)
    files = {r["id"]: r["attachments"][0]["file"] for r in _export(world)}
    assert files[owner] is not None
    assert files[borrowing[0].record_id] is None
    assert files[misnaming[0].record_id] is None
    assert custody_report(world.archive, owner).ok
    for rid in (borrowing[0].record_id, misnaming[0].record_id):
        [check] = custody_report(world.archive, rid).attachments
        assert check.status == "missing"


def test_another_device_cannot_replace_a_witness_identity(world: World) -> None:
    """Identities are the sending device's: naming another device's witness code changes
    nothing about that witness."""
    honest = world.monitor("honest")
    rid = honest.add("statement", identity=ProtectedIdentity(name="The real witness"))
    [path] = honest.build()
    imported(world, path)
    code = world.archive.summary(rid).witness_code
    assert code is not None
    other = world.monitor("other")
    protection = world.archive.protection_public()
    inner = dump_canonical(
        {"witness_code": code, "identity": identity_to_json(ProtectedIdentity(name="Impostor"))}
    )
    sealed = seal_to_protection(protection, inner)
    manifest = other.manifest(
        other.chain([other.testimony(witness_code=code)]),
        identities=[IdentityEntry(code, sealed)],
    )
    imported(world, forge(world, other.device, manifest))
    by_device = {r["device"]: r["identity"] for r in _export(world)}
    assert by_device["honest"]["name"] == "The real witness"
    assert by_device["other"]["name"] == "Impostor"


# ------------------------------------------------------------------ files that are not bundles


def _cut(at: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:at]


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], Refusal]] = {
    "empty": (lambda _data: b"", Refusal.FORMAT),
    "random bytes": (lambda data: os.urandom(len(data)), Refusal.FORMAT),
    "prefix only": (_cut(PREFIX_BYTES), Refusal.FORMAT),
    "cut in the sealed header": (_cut(PREFIX_BYTES + 100), Refusal.FORMAT),
    "header only": (_cut(HEADER_TOTAL_BYTES), Refusal.PAYLOAD),
    "cut in the payload": (lambda data: data[: len(data) // 2], Refusal.PAYLOAD),
    "last byte missing": (lambda data: data[:-1], Refusal.PAYLOAD),
    "one byte appended": (lambda data: data + b"\0", Refusal.PAYLOAD),
    "two bundles glued": (lambda data: data + data, Refusal.PAYLOAD),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_files(world: World, case: str) -> None:
    m = world.monitor()
    m.add(attachments={"a.jpg": os.urandom(150_000)})
    [path] = m.build()
    damage, reason = DAMAGE[case]
    path.write_bytes(damage(path.read_bytes()))
    refused(world, path, reason)


def test_a_directory_is_refused(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "looks-like.fabundle"
    folder.mkdir()
    refused(world, folder, Refusal.FORMAT, kept=False)
    assert list(import_path(world.archive, folder)) == []


def test_symlinks_are_never_followed(world: World, tmp_path: Path) -> None:
    m = world.monitor()
    m.add()
    [real] = m.build()
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "b.fabundle").symlink_to(real)
    (usb / "c-folder").symlink_to(tmp_path)
    (usb / "d-dangling").symlink_to(tmp_path / "nothing")
    before = world.snapshot()
    assert list(import_path(world.archive, usb)) == []
    with pytest.raises(UnsafeFolder):
        list(import_path(world.archive, usb / "b.fabundle"))
    refused(world, usb / "b.fabundle", Refusal.FORMAT, kept=False)
    assert world.snapshot() == before
    # The real file next to the links is imported, and only it.
    shutil.copy(real, usb / "a.fabundle")
    [outcome] = import_path(world.archive, usb)
    assert outcome.source == "a.fabundle"
    assert outcome.result is not None


def _in_thread(work: Callable[[], object], fifo: Path) -> object:
    """Run ``work``; if it blocks (on opening ``fifo``), unblock it and fail."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail("opening a FIFO blocked the import")
    assert result, "the import raised"
    return result[0]


def test_a_fifo_never_blocks_the_import(world: World, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    fifo = usb / "a.fabundle"
    os.mkfifo(fifo)
    before = world.snapshot()
    assert _in_thread(lambda: list(import_path(world.archive, usb)), fifo) == []
    with pytest.raises(UnsafeFolder):
        list(import_path(world.archive, fifo))
    outcome = _in_thread(lambda: import_file(world.archive, fifo), fifo)
    assert isinstance(outcome, Outcome)
    assert outcome.refusal is not None
    assert outcome.refusal.reason is Refusal.FORMAT
    assert outcome.quarantined_as is None
    assert world.snapshot() == before


def test_hidden_and_partial_copies_are_skipped(world: World, tmp_path: Path) -> None:
    m = world.monitor()
    m.add()
    [real] = m.build()
    usb = tmp_path / "usb"
    usb.mkdir()
    shutil.copy(real, usb / ".a.fabundle.tmp")
    assert list(import_path(world.archive, usb)) == []


def test_only_bundles_are_taken_from_a_folder(world: World, tmp_path: Path) -> None:
    """Receipts and other files on the same stick are left alone, not quarantined."""
    m = world.monitor()
    m.add()
    [real] = m.build()
    usb = tmp_path / "usb"
    usb.mkdir()
    shutil.copy(real, usb / "B.FABUNDLE")
    (usb / "0123.fareceipts").write_bytes(os.urandom(144))
    (usb / "notes.txt").write_text("shopping list", "utf-8")
    [outcome] = import_path(world.archive, usb)
    assert outcome.source == "B.FABUNDLE"
    assert outcome.result is not None
    assert world.quarantine_notes() == {}
    # Named explicitly, any file is opened as a bundle (and refused if it is not one).
    [refusal] = import_path(world.archive, usb / "notes.txt")
    assert refusal.refusal is not None
    assert refusal.refusal.reason is Refusal.FORMAT


# ------------------------------------------------------------------ order and rebuilding


def test_an_older_bundle_arriving_late_changes_nothing(world: World) -> None:
    m = world.monitor()
    rid = m.add("Ursprüngliche Aussage über den Konvoi")
    [older] = m.build()
    m.edit(rid, "Corrected statement about the checkpoint")
    [newer] = m.build()
    first = imported(world, newer)
    assert first.result is not None
    head = world.archive.summary(rid)
    history = world.archive.history(rid)
    late = imported(world, older)
    assert late.result is not None
    assert late.result.new_revisions == 0
    assert not late.result.already_imported
    assert world.archive.summary(rid) == head
    assert world.archive.history(rid) == history
    assert world.archive.testimony(rid)[1].narrative == "Corrected statement about the checkpoint"
    assert [s.id for s in world.archive.search("checkpoint")] == [rid]
    assert world.archive.search("Konvoi") == []


def test_an_edit_after_sync_adds_revisions(world: World) -> None:
    m = world.monitor()
    rid = m.add("first words", attachments={"a.jpg": os.urandom(100)})
    [older] = m.build()
    imported(world, older)
    m.edit(rid, "second words", attachments={"b.jpg": os.urandom(100)})
    [newer] = m.build()
    outcome = imported(world, newer)
    assert outcome.result is not None
    assert outcome.result.new_revisions >= 2
    assert world.archive.summary(rid).seq == m.store.get(rid).seq - 1  # less the "sent" one
    assert len(world.archive.attachments(rid)) == 2


def test_an_older_bundle_arriving_late_keeps_the_newer_identity(world: World) -> None:
    m = world.monitor()
    rid = m.add("statement", identity=ProtectedIdentity(name="Old spelling"))
    [older] = m.build()
    m.edit(rid, "statement, corrected", identity=ProtectedIdentity(name="New spelling"))
    [newer] = m.build()
    imported(world, newer)
    imported(world, older)
    [record] = _export(world)
    assert record["identity"]["name"] == "New spelling"


@pytest.mark.parametrize("order", ["interrupted-first", "rebuilt-first"])
def test_a_rebuilt_bundle_never_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """A crash after the bundle file is written but before it is recorded, then a rebuild."""
    m = world.monitor()
    contents = {"a.jpg": os.urandom(70_000), "b.pdf": os.urandom(1000)}
    rid = m.add(attachments=contents, identity=ProtectedIdentity(name="Witness"))
    outbox = m.store.home.outbox

    def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies before recording the bundle

    with monkeypatch.context() as patch:
        patch.setattr(type(m.store.sync_book), "record", crash)
        with pytest.raises(KeyboardInterrupt):
            build_bundles(m.store, now())
    [interrupted] = list(outbox.iterdir())
    kept = world.root / "interrupted.fabundle"
    shutil.copy(interrupted, kept)  # it reached the USB stick before the crash
    an_hour_ago = time.time() - 3601  # younger files may be another build's, still recording
    os.utime(interrupted, (an_hour_ago, an_hour_ago))
    [rebuilt] = m.build()
    assert not interrupted.exists()  # the unrecorded file is removed by the rebuild
    bundles = [kept, rebuilt] if order == "interrupted-first" else [rebuilt, kept]
    first, second = (imported(world, b) for b in bundles)
    assert first.result is not None
    assert second.result is not None
    assert first.result.bundle_id != second.result.bundle_id
    assert second.result.new_revisions == 0
    assert not second.result.already_imported
    counts = world.counts()
    assert counts["testimonies"] == 1
    assert counts["revisions"] == 1
    assert counts["attachments"] == 2
    assert counts["bundles"] == 2
    assert len(attachment_files(world.hq_home)) == 2
    for held in world.archive.attachments(rid):
        sink = _HashSink()
        world.archive.read_attachment(held.id, sink)  # type: ignore[arg-type]
        assert sink.digest() == held.sha256
    assert world.archive.remove_orphaned_attachments(grace_seconds=0) == 0


class _HashSink:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return len(data)

    def digest(self) -> bytes:
        return self._hash.digest()


def test_a_forged_bundle_id_collision(world: World) -> None:
    """Another bundle under the id of one HQ imported: a conflict, never "already imported"."""
    m = world.monitor()
    sent(world, m)
    [taken] = world.archive.receipts(include_exported=True)
    manifest = m.manifest(m.chain([m.testimony("another testimony")]))
    path = forge(world, m.device, manifest, bundle_id=taken[0])
    refused(world, path, Refusal.CONFLICT)


# ------------------------------------------------------------------ byte flips


def test_any_flipped_byte_is_quarantined_with_nothing_imported(tmp_path: Path) -> None:
    world = new_world(tmp_path)
    try:
        m = world.monitor()
        m.add(
            "A testimony with an attachment and an identity",
            attachments={"a.jpg": os.urandom(20_000)},
            identity=ProtectedIdentity(name="Witness"),
        )
        [path] = m.build()
        original = path.read_bytes()
        target = tmp_path / "flipped.fabundle"

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(
            position=st.one_of(
                st.integers(0, HEADER_TOTAL_BYTES - 1), st.integers(0, len(original) - 1)
            ),
            mask=st.integers(1, 255),
        )
        def flip(position: int, mask: int) -> None:
            data = bytearray(original)
            data[position] ^= mask
            target.write_bytes(data)
            before = world.snapshot()
            outcome = import_file(world.archive, target)
            assert outcome.refusal is not None
            assert outcome.quarantined_as is not None
            assert world.snapshot() == before

        flip()
        # Unflipped, the same bundle imports: every refusal above was the flip's doing.
        imported(world, path)
        assert world.archive.integrity_problems() == []
    finally:
        world.close()
