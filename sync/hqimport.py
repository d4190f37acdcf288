"""HQ import: open, verify and import bundle files, quarantining every one that fails.

For each bundle file, in order, stopping at the first failure:

1. it is a regular file reached without following a symlink (nor waiting on a
   FIFO); in a folder, only ``*.fabundle`` files are taken;
2. the envelope opens with one of HQ's box keys and its device signature
   verifies (crypto/bundle.py); the device is asked about before any payload is
   decrypted: a known key of a revoked device is refused there; a bundle no
   held key opens is ``destroyed-key`` if HQ has destroyed any box key
   (fieldapp/hq/boxkeys.py), else ``no-matching-key``;
3. the payload parses (sync/payload.py) and every attachment matches its
   declared size and SHA-256; attachments are encrypted into the archive as
   they stream, and removed again if anything later fails. As soon as the
   manifest is read, before any attachment: the enrolment it names must not be
   revoked, and an unknown signing key must be proved by the enrolment proof or
   by the device's key rotation chain (fieldapp/hq/devicechain.py);
4. every revision verifies: the hash chain from the genesis, each signature,
   each payload is a testimony recorded by its signing key that passes the
   same validation the device applied (HQ's vocabulary included); an
   attachment keeps its size and hash across revisions; attachments and
   identities belong to the testimony;
5. the archive checks it against what it holds (enrolment binding, revocation,
   conflicts, attachments of other testimonies) and imports it in one
   transaction, signing a receipt.

A failure at any step copies the bundle, unchanged, into the quarantine folder
with a note of the reason, and nothing from it is kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from crypto.bundle import MAX_PADDED_BYTES, open_bundle
from crypto.errors import BundleError, BundleReason
from crypto.keyfile import atomic_write, ensure_private_dir
from crypto.keys import DeviceVerifyKey
from crypto.revisions import RevisionError, verify_chain
from fieldapp.domain import (
    ValidationError,
    Vocabulary,
    testimony_from_bytes,
    validate_testimony,
)
from fieldapp.hq.archive import (
    HqArchive,
    ImportResult,
    IncomingAttachment,
    IncomingBundle,
    IncomingRevision,
)
from fieldapp.hq.devicechain import DeviceVerdict
from fieldapp.hq.errors import ImportRefused, Refusal
from fieldapp.store.attachments import IncomingFile
from sync.errors import PayloadError
from sync.files import UnsafeFolder
from sync.payload import AttachmentEntry, Manifest, PayloadReader

BUNDLE_SUFFIX = ".fabundle"
MAX_BUNDLE_BYTES = MAX_PADDED_BYTES

_BUNDLE_REFUSALS = {
    BundleReason.FORMAT: Refusal.FORMAT,
    BundleReason.NO_MATCHING_KEY: Refusal.NO_MATCHING_KEY,
    BundleReason.HEADER: Refusal.FORMAT,
    BundleReason.SIGNATURE: Refusal.SIGNATURE,
    BundleReason.UNKNOWN_DEVICE: Refusal.UNKNOWN_DEVICE,
    BundleReason.PAYLOAD: Refusal.PAYLOAD,
    BundleReason.TOO_LARGE: Refusal.TOO_LARGE,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one bundle file."""

    source: str  # the file's name, for the report (never a path from inside a bundle)
    result: ImportResult | None = None
    refusal: ImportRefused | None = None
    quarantined_as: str | None = None

    @property
    def quarantined(self) -> bool:
        return self.refusal is not None


def bundle_files(path: Path) -> list[Path]:
    """The bundle files ``path`` names: itself, or the bundles in a folder.

    In a folder, only regular files named ``*.fabundle`` count: the same USB
    stick carries receipts (``*.fareceipts``) and whatever else its owner keeps
    there. A file named explicitly is taken whatever its name. Symlinks are
    never followed: a folder's symlinked entries are skipped, and a symlink
    given as the path is refused. Names starting with a dot (a copy in
    progress) are skipped.
    """
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFolder("Refusing to follow a symlink; name the bundle file itself.")
    if stat.S_ISREG(info.st_mode):
        return [path]
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder("Not a bundle file or a folder of bundles.")
    found = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if (
            entry.name.startswith(".")
            or not entry.name.lower().endswith(BUNDLE_SUFFIX)  # FAT may change the case
            or not entry.is_file(follow_symlinks=False)
        ):
            continue
        found.append(path / entry.name)
    return found


def _open_no_follow(path: Path) -> BinaryIO:
    # O_NONBLOCK: opening a FIFO (swapped in after the folder was listed) would
    # otherwise wait for a writer forever. It is cleared once the file is known
    # to be a regular one, where it means nothing anyway.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    handle = os.fdopen(fd, "rb")
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular:
            os.set_blocking(fd, True)
    except BaseException:
        handle.close()
        raise
    if not regular:
        handle.close()
        raise ImportRefused(Refusal.FORMAT, "Not a regular file.")
    return handle


class _Writers:
    """Attachment files being written for one bundle; all removed unless kept."""

    def __init__(self, archive: HqArchive) -> None:
        self._archive = archive
        self.files: dict[str, IncomingFile] = {}

    def new(self, entry: AttachmentEntry) -> IncomingFile:
        writer = IncomingFile(self._archive.home.attachments)
        self.files[entry.id] = writer
        return writer

    def remove_all(self) -> None:
        for writer in self.files.values():
            writer.abort()


def _device_check(
    archive: HqArchive, refused: list[ImportRefused], signers: list[DeviceVerifyKey]
) -> Callable[[DeviceVerifyKey], bool]:
    def trusts(key: DeviceVerifyKey) -> bool:
        signers.append(key)
        device = archive.device_for_key(key)
        if device is not None:
            if device.revoked:
                refused.append(
                    ImportRefused(
                        Refusal.REVOKED_DEVICE,
                        f"Device {device.name!r} is revoked; its bundles are refused.",
                    )
                )
                return False
            return True
        # An unknown key may be a device's first bundle, or a device's rotated key:
        # it proves its enrolment or its rotation chain in the manifest, checked
        # before any attachment is decrypted (fieldapp/hq/devicechain.py).
        if archive.accepts_new_keys():
            return True
        refused.append(
            ImportRefused(
                Refusal.UNKNOWN_DEVICE,
                "The bundle is signed by a device that is not enrolled with this HQ.",
            )
        )
        return False

    return trusts


def _verify_contents(
    manifest: Manifest, vocabulary: Vocabulary, device_keys: frozenset[bytes]
) -> tuple[IncomingRevision, ...]:
    """Step 4: the revisions, their testimonies, and what the bundle claims about them.

    ``device_keys`` are the keys of the bundle's device (enrolment identity) once
    this bundle's rotation statements are applied: after a key rotation, older
    revisions are signed by, and name in ``recorded_by``, an older key of it.
    """
    recorders = {DeviceVerifyKey(k).key_id.hex() for k in device_keys}
    tid = manifest.testimony_id
    try:
        revisions = [entry.to_revision(tid) for entry in manifest.revisions]
        verify_chain(revisions, tid)
    except (RevisionError, PayloadError) as e:
        raise ImportRefused(Refusal.REVISIONS, "A revision chain does not verify.") from e
    incoming = []
    for entry, revision in zip(manifest.revisions, revisions, strict=True):
        try:
            testimony = testimony_from_bytes(revision.payload)
            # The device validated every revision it signed: one that fails (say a
            # violation code this HQ does not know) cannot be indexed or shown.
            validate_testimony(testimony, vocabulary)
        except ValidationError as e:
            raise ImportRefused(
                Refusal.REVISIONS,
                f"Revision {revision.seq} is not a valid testimony for this HQ (if the "
                "monitor runs a newer fieldapp, update HQ's and import it again).",
            ) from e
        if testimony.recorded_by not in recorders:
            raise ImportRefused(
                Refusal.REVISIONS, f"Revision {revision.seq} names another recording device."
            )
        incoming.append(IncomingRevision(revision, entry.created_at, testimony))
    captured: dict[str, tuple[int, str]] = {}
    for r in incoming:
        for ref in r.testimony.attachments:
            if captured.setdefault(ref.attachment_id, (ref.size, ref.sha256)) != (
                ref.size,
                ref.sha256,
            ):
                raise ImportRefused(
                    Refusal.REVISIONS, "A revision changes the size or hash of an attachment."
                )
    if revisions[-1].device.raw not in device_keys:
        raise ImportRefused(
            Refusal.REVISIONS, "The latest revision is not signed by the bundle's device."
        )
    referenced = {
        (a.attachment_id, a.size, a.sha256) for r in incoming for a in r.testimony.attachments
    }
    for a in manifest.attachments:
        if (a.id, a.size, a.sha256.hex()) not in referenced:
            raise ImportRefused(
                Refusal.PAYLOAD, "The bundle carries an attachment no revision refers to."
            )
    codes = {r.testimony.witness_code for r in incoming} - {None}
    if any(i.witness_code not in codes for i in manifest.identities):
        raise ImportRefused(
            Refusal.PAYLOAD, "The bundle carries a witness identity its testimony does not name."
        )
    return tuple(incoming)


def open_and_verify(
    archive: HqArchive, src: BinaryIO, size: int, writers: _Writers
) -> IncomingBundle:
    """Steps 2 to 4 for one bundle stream. Raises ImportRefused; ``writers`` holds files."""
    refused: list[ImportRefused] = []
    signers: list[DeviceVerifyKey] = []
    verdicts: list[DeviceVerdict] = []

    def check_claim(manifest: Manifest) -> None:
        # Before any attachment is decrypted: the enrolment the bundle claims must
        # be this device's (or an open one whose proof verifies for its key), and
        # an unknown key must be reached by the device's rotation chain.
        verdicts.append(
            archive.check_enrolment(
                manifest.enrolment_id, signers[-1], manifest.binding, manifest.statements
            )
        )

    reader = PayloadReader(on_manifest=check_claim, new_attachment=writers.new)
    try:
        opened = open_bundle(
            src,
            archive.box_keys(),
            reader,
            trusts_device=_device_check(archive, refused, signers),
        )
        manifest = reader.close()
    except BundleError as e:
        if refused:
            raise refused[0] from e
        if e.reason is BundleReason.NO_MATCHING_KEY:
            destroyed = archive.destroyed_key_refusal()  # None if no box key was destroyed
            if destroyed is not None:
                raise destroyed from e
        raise ImportRefused(_BUNDLE_REFUSALS.get(e.reason, Refusal.FORMAT), e.message) from e
    except PayloadError as e:
        raise ImportRefused(Refusal.PAYLOAD, e.message) from e
    revisions = _verify_contents(manifest, archive.vocabulary, verdicts[-1].keys)
    attachments = []
    for entry in manifest.attachments:
        writer = writers.files[entry.id]
        attachments.append(
            IncomingAttachment(entry.id, entry.size, entry.sha256, writer.stored_name, writer.key)
        )
    return IncomingBundle(
        bundle_id=opened.bundle_id,
        payload_sha256=opened.payload_sha256,
        hq_key_id=opened.hq_key_id,
        size=size,
        device=opened.device,
        enrolment_id=manifest.enrolment_id,
        binding=manifest.binding,
        testimony_id=manifest.testimony_id,
        revisions=revisions,
        attachments=tuple(attachments),
        identities=tuple((i.witness_code, i.sealed) for i in manifest.identities),
        statements=manifest.statements,
    )


def import_file(archive: HqArchive, path: Path) -> Outcome:
    """Import one bundle file; on any refusal quarantine it. Never raises ImportRefused."""
    writers = _Writers(archive)
    try:
        try:
            src = _open_no_follow(path)
        except OSError as e:
            raise ImportRefused(Refusal.FORMAT, "The file cannot be read.") from e
        with src:
            size = os.fstat(src.fileno()).st_size
            incoming = open_and_verify(archive, src, size, writers)
        result = archive.commit(incoming)
    except ImportRefused as refusal:
        writers.remove_all()
        return Outcome(
            path.name, refusal=refusal, quarantined_as=quarantine(archive, path, refusal)
        )
    except BaseException:
        writers.remove_all()
        raise
    if result.already_imported:
        writers.remove_all()  # the copies from the first import stay
    else:
        kept = {a.attachment_id for a in incoming.attachments}
        for aid, writer in writers.files.items():
            if aid not in kept:
                writer.abort()
        _drop_duplicates(archive, incoming, writers)
    return Outcome(path.name, result=result)


def _drop_duplicates(archive: HqArchive, incoming: IncomingBundle, writers: _Writers) -> None:
    """Remove the fresh copy of an attachment HQ already held from an earlier bundle."""
    held = archive.stored_names({a.attachment_id for a in incoming.attachments})
    for a in incoming.attachments:
        if held.get(a.attachment_id) != a.stored_name:
            writers.files[a.attachment_id].abort()


def quarantine(archive: HqArchive, path: Path, refusal: ImportRefused) -> str | None:
    """Copy a refused bundle into the quarantine folder with a note; returns its new name.

    The copy is ciphertext exactly as it arrived; the note holds the reason and
    the time, nothing from inside the bundle. Returns None if the file could
    not be read at all (nothing to keep).
    """
    folder = archive.home.quarantine
    ensure_private_dir(folder)
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(8)}"
    try:
        with _open_no_follow(path) as src:
            _copy_atomically(src, folder / f"{name}{BUNDLE_SUFFIX}")
    except (OSError, ImportRefused):
        return None
    note = f"reason: {refusal.reason.value}\nmessage: {refusal.message}\nfile: {path.name!r}\n"
    atomic_write(folder / f"{name}.reason", note.encode("utf-8"))
    return name


def _copy_atomically(src: BinaryIO, dst: Path) -> None:
    temp = dst.with_name(f".{dst.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(dst)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    dir_fd = os.open(dst.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def import_path(archive: HqArchive, path: Path) -> Iterator[Outcome]:
    """Import every bundle ``path`` names, one outcome per file, in name order."""
    for file in bundle_files(path):
        yield import_file(archive, file)
