"""An HQ and its monitors, in-process, with cheap Argon2id: the world the import tests attack.

``World`` holds an HQ home and its open archive; ``world.monitor(name)`` enrols
a fresh monitor home the way a user would (HQ writes a signed enrolment file,
the monitor reads and verifies it). Testimonies are added ready to send, and
``Monitor.build`` seals bundles into the monitor's outbox exactly as
``fieldapp sync export`` does. ``forge`` builds a bundle by hand from a
manifest, for the bundles no honest device would make.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto.bundle import _seal
from crypto.enrolment import Enrolment, read_enrolment, write_enrolment
from crypto.keys import DeviceSigningKey
from crypto.revisions import GENESIS, Revision, make_revision
from fieldapp.domain import ProtectedIdentity, Status, Testimony, canonical_bytes
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import create_hq_home, unlock_hq
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore, new_record_id
from fieldapp.store.vault import create_home
from sync.enrol import enrol
from sync.hqimport import Outcome, import_file
from sync.outbox import build_bundles, outbox_path
from sync.payload import (
    FORMAT_VERSION,
    MAGIC,
    AttachmentEntry,
    IdentityEntry,
    Manifest,
    RevisionEntry,
    encode_manifest,
)
from tests.store.conftest import CHEAP, PASSPHRASE, Clock, make_testimony

PROTECTION_PASSPHRASE = "a different passphrase for witness identities"

CREATED_AT = "2016-12-10T12:00:00+03:00"
TABLES = ("testimonies", "revisions", "attachments", "bundles", "identities", "devices")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Monitor:
    """A monitor's home, open, enrolled with the world's HQ."""

    name: str
    store: FieldStore
    enrolment: Enrolment
    files: Path  # where its attachment sources are written

    @property
    def device(self) -> DeviceSigningKey:
        """The device's signing key, for forging bundles it could have made."""
        return self.store._unlocked.device

    def add(
        self,
        narrative: str = "The witness saw the convoy leave at dawn.",
        *,
        attachments: Mapping[str, bytes] = {},
        identity: ProtectedIdentity | None = None,
    ) -> str:
        """Record a ready testimony with these attachments; returns its id."""
        paths = []
        for filename, content in attachments.items():
            path = self.files / filename
            path.write_bytes(content)
            paths.append(path)
        testimony = make_testimony(self.store, narrative, status=Status.READY)
        return self.store.create(testimony, identity=identity, attach=paths).id

    def edit(
        self,
        record_id: str,
        narrative: str,
        *,
        attachments: Mapping[str, bytes] = {},
        identity: ProtectedIdentity | None = None,
    ) -> None:
        """Change a testimony (after it was sent) and mark it ready again."""
        paths = []
        for filename, content in attachments.items():
            path = self.files / filename
            path.write_bytes(content)
            paths.append(path)
        current = self.store.get(record_id).testimony
        if current.status is not Status.DRAFT:
            self.store.set_status(record_id, Status.DRAFT)
        changed = dataclasses.replace(
            self.store.get(record_id).testimony, narrative=narrative, status=Status.READY
        )
        self.store.update(record_id, changed, attach=paths, identity=identity)

    def testimony(
        self, narrative: str = "The convoy left at dawn.", **changes: object
    ) -> Testimony:
        """A ready testimony this device could record (not saved)."""
        return make_testimony(self.store, narrative, status=Status.READY, **changes)

    def chain(
        self, testimonies: Sequence[Testimony], record_id: str | None = None
    ) -> list[Revision]:
        return chain(self.device, record_id or new_record_id(), testimonies)

    def manifest(
        self,
        revisions: Sequence[Revision],
        *,
        attachments: Sequence[AttachmentEntry] = (),
        identities: Sequence[IdentityEntry] = (),
    ) -> Manifest:
        """The manifest this device would send for ``revisions``, with its enrolment proof."""
        return manifest_of(
            revisions,
            self.enrolment.enrolment_id,
            self.store.binding_proof(self.enrolment.secret),
            attachments=attachments,
            identities=identities,
        )

    def build(self) -> list[Path]:
        """Seal a bundle for every ready testimony; returns the files in the outbox."""
        return [outbox_path(self.store, b) for b in build_bundles(self.store, now())]


@dataclass
class World:
    root: Path
    hq_home: Home
    archive: HqArchive
    monitors: list[Monitor] = field(default_factory=list)

    def enrolment(self, name: str) -> Enrolment:
        """An enrolment HQ issued and recorded (the monitor has not used it yet)."""
        enrolment = self.archive.new_enrolment(name)
        self.archive.record_enrolment(enrolment)
        return enrolment

    def monitor(self, name: str = "monitor-1") -> Monitor:
        enrolment = self.enrolment(name)
        data = write_enrolment(self.archive.root_key(), enrolment)
        read, trust = read_enrolment(data, now=int(now().timestamp()))
        home = Home(self.root / name)
        unlocked, _ = create_home(home, PASSPHRASE, kdf=CHEAP)
        store = FieldStore.open(unlocked, clock=Clock())
        enrol(store, read, trust)
        files = self.root / f"{name}-files"
        files.mkdir()
        m = Monitor(name, store, read, files)
        self.monitors.append(m)
        return m

    def reopen(self) -> HqArchive:
        """Close the archive and open it again with the passphrase, as a new process would."""
        self.archive.close()
        self.archive = HqArchive.open(unlock_hq(self.hq_home, PASSPHRASE))
        return self.archive

    def close(self) -> None:
        for m in self.monitors:
            m.store.close()
        self.archive.close()

    # ------------------------------------------------------------ observing HQ

    def counts(self) -> dict[str, int]:
        return {
            t: int(self.archive._query(f"SELECT count(*) FROM {t}")[0][0])  # noqa: S608
            for t in TABLES
        }

    def snapshot(self) -> dict[str, object]:
        """What must not change when a bundle is refused: rows, devices and stored files."""
        return {
            "counts": self.counts(),
            "devices": self.archive.devices(),
            "files": attachment_files(self.hq_home),
        }

    def quarantine_notes(self) -> dict[str, str]:
        """Each quarantine note by name (the copy of its bundle has the same stem)."""
        return {
            p.stem: p.read_text("utf-8")
            for p in self.hq_home.quarantine.iterdir()
            if p.name.endswith(".reason")
        }


def imported(world: World, path: Path) -> Outcome:
    """Import one bundle file at HQ; it must import."""
    outcome = import_file(world.archive, path)
    assert outcome.refusal is None, outcome.refusal.message
    assert outcome.result is not None
    return outcome


def sent(world: World, m: Monitor, narrative: str = "The convoy left at dawn.") -> str:
    """A testimony the monitor built into a bundle that HQ imported (binding the device)."""
    rid = m.add(narrative)
    [path] = m.build()
    imported(world, path)
    return rid


def attachment_files(home: Home) -> set[str]:
    """Every name in HQ's attachment folder, temp files included."""
    return {p.name for p in home.attachments.iterdir()}


def new_world(root: Path) -> World:
    hq_home = Home(root / "hq")
    created = create_hq_home(hq_home, PASSPHRASE, PROTECTION_PASSPHRASE, kdf=CHEAP)
    return World(root, hq_home, HqArchive.open(created.unlocked))


def chain(
    device: DeviceSigningKey, record_id: str, testimonies: Sequence[Testimony]
) -> list[Revision]:
    """A valid revision chain of these testimony states, signed by ``device``."""
    out: list[Revision] = []
    parent = GENESIS
    for seq, t in enumerate(testimonies, start=1):
        r = make_revision(device, record_id, seq, parent, canonical_bytes(t))
        out.append(r)
        parent = r.hash
    return out


def entries(revisions: Sequence[Revision]) -> tuple[RevisionEntry, ...]:
    return tuple(
        RevisionEntry(
            seq=r.seq,
            parent_hash=r.parent_hash,
            hash=r.hash,
            device_key=r.device.raw,
            signature=r.signature,
            payload=r.payload,
            created_at=CREATED_AT,
        )
        for r in revisions
    )


def manifest_of(
    revisions: Sequence[Revision],
    enrolment_id: bytes,
    binding: bytes,
    *,
    attachments: Sequence[AttachmentEntry] = (),
    identities: Sequence[IdentityEntry] = (),
) -> Manifest:
    return Manifest(
        testimony_id=revisions[0].record_id,
        created_at=CREATED_AT,
        enrolment_id=enrolment_id,
        binding=binding,
        revisions=entries(revisions),
        attachments=tuple(attachments),
        identities=tuple(identities),
    )


def payload_bytes(manifest: Manifest | dict[str, Any], contents: Sequence[bytes] = ()) -> bytes:
    """A payload: the manifest (or a raw manifest document, to break its rules) and contents.

    Unlike ``PayloadSource`` nothing is checked: the contents may differ from
    what the manifest declares.
    """
    if isinstance(manifest, Manifest):
        body = encode_manifest(manifest)
    else:
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack(">8sHI", MAGIC, FORMAT_VERSION, len(body)) + body + b"".join(contents)


def manifest_doc(manifest: Manifest) -> dict[str, Any]:
    """The manifest as a JSON document, to change in ways ``Manifest`` cannot express."""
    doc: dict[str, Any] = json.loads(encode_manifest(manifest))
    return doc


def seal_payload(
    world: World, device: DeviceSigningKey, payload: bytes, *, bundle_id: bytes | None = None
) -> Path:
    """Seal ``payload`` to the HQ's current box key, signed by ``device``; returns the file.

    ``bundle_id`` forces the bundle id (through the test-vector generator's
    randomness hook); everything else stays random.
    """
    box = world.archive.trust().box
    assert box is not None
    out = world.root / "forged" / f"{os.urandom(8).hex()}.fabundle"
    out.parent.mkdir(exist_ok=True)
    draws = [] if bundle_id is None else [bundle_id]

    def rng(size: int) -> bytes:
        return draws.pop() if draws else os.urandom(size)

    with out.open("w+b") as dst:
        _seal(io.BytesIO(payload), dst, recipient=box, device=device, rng=rng)
    return out


def forge(
    world: World,
    device: DeviceSigningKey,
    manifest: Manifest | dict[str, Any],
    contents: Sequence[bytes] = (),
    *,
    bundle_id: bytes | None = None,
) -> Path:
    """A bundle no honest device would make: ``manifest`` and ``contents``, sealed and signed."""
    return seal_payload(world, device, payload_bytes(manifest, contents), bundle_id=bundle_id)
