"""``hq verify``: the chain-of-custody report for imported testimony.

Per testimony, re-checked from the archive's own bytes (not from what import
once concluded): each revision's hash, its place in the hash chain, its device
signature and which enrolled device holds that key, the bundle that brought it
and when its receipt was signed; each attachment decrypted and hashed against
the SHA-256 the monitor took at capture.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from crypto.errors import CryptoError
from crypto.receipts import parse_receipt
from crypto.revisions import GENESIS, RevisionError, verify_revision
from fieldapp.hq.archive import HqArchive, decode_testimony
from fieldapp.store.errors import StoreError


@dataclass(frozen=True, slots=True)
class RevisionCheck:
    seq: int
    device_name: str
    device_key: str  # hex
    bundle_id: str  # hex
    imported_at: str
    receipt_signed_at: int | None
    ok: bool
    problem: str = ""


@dataclass(frozen=True, slots=True)
class AttachmentCheck:
    attachment_id: str
    filename: str
    status: str  # "ok", "missing", "mismatch", "unreadable"


@dataclass(frozen=True, slots=True)
class CustodyReport:
    testimony_id: str
    revisions: list[RevisionCheck] = field(default_factory=list)
    attachments: list[AttachmentCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.revisions) and all(a.status == "ok" for a in self.attachments)


class _Sha256Sink:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.hash.update(data)
        return len(data)


def custody_report(archive: HqArchive, record_id: str) -> CustodyReport:
    rid = archive.resolve_id(record_id)
    report = CustodyReport(rid)
    receipts: dict[bytes, int | None] = {}
    for b in archive.bundles_of(rid):
        try:
            receipts[b.bundle_id] = parse_receipt(b.receipt).imported_at
        except CryptoError:
            receipts[b.bundle_id] = None
    device_keys = {key.raw: d.name for d in archive.devices() for key in d.keys}
    parent = GENESIS
    latest = None
    for index, held in enumerate(archive.history(rid), start=1):
        problem = ""
        try:
            verify_revision(held.as_revision(rid), parent, index)
        except RevisionError as e:
            problem = e.message
        if not problem and device_keys.get(held.device_key.raw) != held.device_name:
            problem = "signed by a key not enrolled for this device"
        report.revisions.append(
            RevisionCheck(
                seq=held.seq,
                device_name=held.device_name,
                device_key=held.device_key.raw.hex(),
                bundle_id=held.bundle_id.hex(),
                imported_at=held.imported_at,
                receipt_signed_at=receipts.get(held.bundle_id),
                ok=not problem,
                problem=problem,
            )
        )
        parent = held.hash
        latest = held
    if latest is not None:
        seen: set[str] = set()
        for revision in archive.history(rid):
            for ref in decode_testimony(revision.payload).attachments:
                if ref.attachment_id in seen:
                    continue
                seen.add(ref.attachment_id)
                report.attachments.append(
                    _check_attachment(archive, rid, ref.attachment_id, ref.filename, ref.sha256)
                )
    return report


def _check_attachment(
    archive: HqArchive, rid: str, attachment_id: str, filename: str, sha256: str
) -> AttachmentCheck:
    held = archive.attachments_by_ids([attachment_id])
    if not held or held[0].testimony_id != rid:  # another testimony's file proves nothing here
        return AttachmentCheck(attachment_id, filename, "missing")
    sink = _Sha256Sink()
    try:
        archive.read_attachment(attachment_id, sink)  # type: ignore[arg-type]
    except (CryptoError, StoreError):
        return AttachmentCheck(attachment_id, filename, "unreadable")
    status = "ok" if sink.hash.hexdigest() == sha256 else "mismatch"
    return AttachmentCheck(attachment_id, filename, status)
