"""``hq export``: testimonies, their attachments (decrypted) and a SHA-256 manifest.

An export is plaintext by purpose: it is what analysts and partners read. It is
written into a new, private (0700) folder, which should sit on an encrypted
volume. Layout::

    testimonies.jsonl | testimonies.csv   one record per testimony
    attachments/<attachment id>           each file, decrypted, checked against
                                          the SHA-256 taken at capture
    SHA256SUMS                            sha256sum format, for `sha256sum -c`

Names from inside a bundle never become paths: files are named by attachment
id (checked to be an id), the original file name is a field of the record.

Consent (``audience``): *internal* exports every testimony; *justice* only
those whose witness agreed to sharing with justice mechanisms; *publication*
only those agreeing to (anonymous or named) publication. Withdrawn consent
allows nothing but internal use. Witness identities are exported only with
``identity_key`` (the protection key, unlocked with its own passphrase), never
for publication, and only for witnesses whose consent is not withdrawn.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from crypto.keys import ProtectionPrivateKey
from crypto.sealed import SealedMessageError, open_from_protection
from fieldapp.domain import (
    ConsentScope,
    ProtectedIdentity,
    Testimony,
    ValidationError,
    identity_from_json,
    identity_to_json,
)
from fieldapp.domain.codec import load_strict, testimony_to_json
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive
from fieldapp.store.errors import DatabaseDamaged

_ID = re.compile(r"^[0-9abcdefghjkmnpqrstvwxyz]{20}$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Audience(StrEnum):
    INTERNAL = "internal"
    JUSTICE = "justice"
    PUBLICATION = "publication"


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class ExportRefused(FieldappError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class ExportReport:
    testimonies: int
    skipped_for_consent: int
    attachments: int
    missing_attachments: int
    identities: int
    folder: Path


def allowed_for(t: Testimony, audience: Audience) -> bool:
    if audience is Audience.INTERNAL:
        return True
    if t.consent is None:
        return False
    scope = (
        ConsentScope.JUSTICE_MECHANISMS
        if audience is Audience.JUSTICE
        else ConsentScope.ANONYMOUS_PUBLICATION
    )
    return t.consent.allows(scope)


def open_identity(
    key: ProtectionPrivateKey, witness_code: str, envelopes: list[bytes]
) -> ProtectedIdentity | None:
    """The newest envelope for ``witness_code`` that opens and names that code."""
    for sealed in envelopes:
        found = _open_one(key, witness_code, sealed)
        if found is not None:
            return found
    return None


def _open_one(
    key: ProtectionPrivateKey, witness_code: str, sealed: bytes
) -> ProtectedIdentity | None:
    """One envelope's identity, or None if it does not open or names another witness."""
    try:
        inner = load_strict(open_from_protection(key, sealed))
        if not isinstance(inner, dict) or inner.get("witness_code") != witness_code:
            return None
        return identity_from_json(inner.get("identity"))
    except (SealedMessageError, ValidationError):
        return None


def _new_folder(folder: Path) -> None:
    if folder.is_symlink():
        raise ExportRefused("The export folder is a symlink; name a real folder.")
    if folder.exists():
        if not folder.is_dir() or any(folder.iterdir()):
            raise ExportRefused("The export folder must be new or empty; nothing was written.")
    else:
        folder.mkdir(mode=0o700, parents=False)
    folder.chmod(0o700)
    (folder / "attachments").mkdir(mode=0o700)


class _HashingFile(io.RawIOBase):
    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        self.hash.update(data)
        self._dst.write(data)
        return len(data)


def _write_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _csv_cell(value: object) -> str:
    """Text for a spreadsheet cell; a leading formula character is neutralised."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = (
    "id",
    "device",
    "taken_at",
    "language",
    "incident_date",
    "place",
    "violations",
    "witness_code",
    "consent_scopes",
    "consent_withdrawn_on",
    "narrative",
    "attachments",
    "identity_name",
    "identity_contact",
    "identity_address",
)


def _csv_values(
    rid: str,
    device: str,
    t: Testimony,
    files: list[dict[str, object]],
    identity: ProtectedIdentity | None,
) -> tuple[object, ...]:
    return (
        rid,
        device,
        t.taken_at.isoformat(timespec="minutes"),
        t.language,
        t.incident_date,
        (t.incident_place or t.taken_place).text,
        " ".join(t.violations),
        t.witness_code,
        "" if t.consent is None else " ".join(sorted(t.consent.scopes)),
        "" if t.consent is None else t.consent.withdrawn_on,
        t.narrative,
        ";".join(str(f["file"]) for f in files if f["file"]),
        "" if identity is None else identity.name,
        "" if identity is None else identity.contact,
        "" if identity is None else identity.address,
    )


class _Exporter:
    def __init__(
        self,
        archive: HqArchive,
        folder: Path,
        audience: Audience,
        identity_key: ProtectionPrivateKey | None,
    ) -> None:
        self.archive = archive
        self.folder = folder
        self.audience = audience
        self.identity_key = identity_key
        self.sums: list[tuple[str, str]] = []
        self.attachments = 0
        self.missing = 0
        self.identities = 0

    def attachment_files(self, rid: str, t: Testimony) -> list[dict[str, object]]:
        # Only this testimony's own attachments, as captured: a reference to another
        # testimony's file, or naming another hash, is exported as missing.
        held = {
            a.id: a
            for a in self.archive.attachments_by_ids([a.attachment_id for a in t.attachments])
            if a.testimony_id == rid
        }
        out: list[dict[str, object]] = []
        for ref in t.attachments:
            entry: dict[str, object] = {
                "attachment_id": ref.attachment_id,
                "filename": ref.filename,
                "media_type": ref.media_type,
                "size": ref.size,
                "sha256": ref.sha256,
                "file": None,
            }
            found = held.get(ref.attachment_id)
            if (
                found is not None
                and found.size == ref.size
                and found.sha256.hex() == ref.sha256
                and _ID.match(ref.attachment_id)
            ):
                relative = f"attachments/{ref.attachment_id}"
                with _write_private(self.folder / relative) as raw:
                    sink = _HashingFile(raw)
                    self.archive.read_attachment(ref.attachment_id, sink)  # type: ignore[arg-type]
                    raw.flush()
                    os.fsync(raw.fileno())
                if sink.hash.hexdigest() != ref.sha256:
                    raise DatabaseDamaged
                self.sums.append((sink.hash.hexdigest(), relative))
                entry["file"] = relative
                self.attachments += 1
            else:
                self.missing += 1
            out.append(entry)
        return out

    def identity(self, device_name: str, t: Testimony) -> ProtectedIdentity | None:
        if self.identity_key is None or t.witness_code is None:
            return None
        if t.consent is not None and t.consent.is_withdrawn:
            return None
        found = open_identity(
            self.identity_key,
            t.witness_code,
            self.archive.sealed_identities(t.witness_code, device_name=device_name),
        )
        if found is not None:
            self.identities += 1
        return found

    def records(
        self,
    ) -> Iterator[tuple[str, str, Testimony, list[dict[str, object]], ProtectedIdentity | None]]:
        for summary in self.archive.summaries(limit=1 << 62):
            _, t = self.archive.testimony(summary.id)
            if not allowed_for(t, self.audience):
                continue
            yield (
                summary.id,
                summary.device_name,
                t,
                self.attachment_files(summary.id, t),
                self.identity(summary.device_name, t),
            )


def export_archive(
    archive: HqArchive,
    folder: Path,
    *,
    fmt: ExportFormat,
    audience: Audience = Audience.INTERNAL,
    identity_key: ProtectionPrivateKey | None = None,
) -> ExportReport:
    """Write the export described in the module docstring. Raises ExportRefused first."""
    if identity_key is not None and audience is Audience.PUBLICATION:
        raise ExportRefused(
            "Witness identities are never exported for publication; drop --include-identities."
        )
    _new_folder(folder)
    exporter = _Exporter(archive, folder, audience, identity_key)
    total = archive.count()
    name = f"testimonies.{fmt.value}"
    written = 0
    with _write_private(folder / name) as raw:
        sink = _HashingFile(raw)
        rows = io.StringIO()
        writer = csv.writer(rows) if fmt is ExportFormat.CSV else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        for rid, device, t, files, identity in exporter.records():
            if writer is None:
                record = {
                    "id": rid,
                    "device": device,
                    "testimony": testimony_to_json(t),
                    "attachments": files,
                    "identity": None if identity is None else identity_to_json(identity),
                }
                rows.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            else:
                writer.writerow(_csv_cell(v) for v in _csv_values(rid, device, t, files, identity))
            sink.write(rows.getvalue().encode("utf-8"))
            rows.seek(0)
            rows.truncate()
            written += 1
        sink.write(rows.getvalue().encode("utf-8"))  # the CSV header of an empty export
        raw.flush()
        os.fsync(raw.fileno())
    exporter.sums.insert(0, (sink.hash.hexdigest(), name))
    with _write_private(folder / "SHA256SUMS") as out:
        out.write("".join(f"{digest}  {path}\n" for digest, path in exporter.sums).encode())
        out.flush()
        os.fsync(out.fileno())
    return ExportReport(
        testimonies=written,
        skipped_for_consent=total - written,
        attachments=exporter.attachments,
        missing_attachments=exporter.missing,
        identities=exporter.identities,
        folder=folder,
    )
