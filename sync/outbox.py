"""Building sealed bundles from a monitor's outbox.

One bundle per ready testimony: its whole revision chain (so HQ can verify it
whatever arrived before), the attachments no earlier bundle carried, and the
witness identity sealed separately to HQ's protection key. The bundle is
sealed to HQ's current box key straight into the home's outbox folder, fsynced
and renamed into place; only then is it recorded and the testimony marked
sent (fieldapp/store/syncbook.py). Building again after a crash never
duplicates anything at HQ: revisions and attachments are imported by identity.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from crypto.keyfile import ensure_private_dir
from crypto.sealed import seal_to_protection
from fieldapp.domain import dump_canonical, identity_to_json
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store import rotation
from fieldapp.store.errors import DatabaseDamaged, StoreIOError
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import BundleMaterial, EnrolmentState, OutgoingBundle
from fieldapp.transfer import NotEnrolled
from sync.files import fsync_folder
from sync.payload import AttachmentEntry, IdentityEntry, Manifest, PayloadSource, RevisionEntry

BUNDLE_SUFFIX = ".fabundle"


class HqKeysExpired(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self, exported: int | None = None) -> None:
        done = (
            f"{exported} bundle(s) sealed before were still written to the folder. "
            if exported
            else ""
        )
        super().__init__(
            f"{done}HQ's keys on this device have expired, so nothing new is sealed (HQ may "
            "have replaced them). Testimony stays safe here; get fresh HQ keys by syncing "
            "with the relay, or ask HQ for a new enrolment."
        )


def usable_enrolment(store: FieldStore, now: datetime) -> EnrolmentState:
    """The enrolment, if its HQ keys may be sealed to now (clock floor applied)."""
    state = store.sync_book.enrolment()
    if state is None:
        raise NotEnrolled
    moment = max(int(now.timestamp()), state.clock_floor)
    if state.trust.is_expired(moment) or state.trust.box is None:
        raise HqKeysExpired
    return state


def manifest_for(
    store: FieldStore, state: EnrolmentState, material: BundleMaterial, now: datetime
) -> Manifest:
    identities: tuple[IdentityEntry, ...] = ()
    if material.identity is not None and material.witness_code is not None:
        if state.trust.protection is None:
            raise HqKeysExpired
        inner = dump_canonical(
            {"witness_code": material.witness_code, "identity": identity_to_json(material.identity)}
        )
        identities = (
            IdentityEntry(material.witness_code, seal_to_protection(state.trust.protection, inner)),
        )
    return Manifest(
        testimony_id=material.testimony_id,
        created_at=now.isoformat(timespec="seconds"),
        enrolment_id=state.enrolment_id,
        binding=store.binding_proof(state.secret),
        revisions=tuple(
            RevisionEntry(
                seq=r.seq,
                parent_hash=r.parent_hash,
                hash=r.hash,
                device_key=r.device.raw,
                signature=r.signature,
                payload=r.payload,
                created_at=created,
            )
            for r, created in material.revisions
        ),
        attachments=tuple(AttachmentEntry(a, size, sha) for a, size, sha in material.attachments),
        identities=identities,
        # Every rotation of this device's key, version 1 first: HQ follows the chain
        # from whatever key it holds, whatever order bundles arrive in.
        statements=rotation.statements(store),
    )


def remove_unrecorded(store: FieldStore, *, grace_seconds: float = 3600) -> int:
    """Delete outbox files no bundle record names: a build interrupted before it was recorded.

    Only files older than ``grace_seconds``: a build in another process may
    have renamed its bundle into place and not yet recorded it.
    """
    folder = store.home.outbox
    if not folder.is_dir():
        return 0
    recorded = {b.file_name for b in store.sync_book.bundles()}
    cutoff = time.time() - grace_seconds
    removed = 0
    for entry in os.scandir(folder):
        if entry.name in recorded or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                Path(entry.path).unlink()
                removed += 1
    return removed


def build_one(
    store: FieldStore,
    state: EnrolmentState,
    record_id: str,
    now: datetime,
    reclaim: frozenset[bytes] = frozenset(),
) -> OutgoingBundle:
    material = store.sync_book.material(record_id, reclaim)
    manifest = manifest_for(store, state, material, now)
    folder = store.home.outbox
    name = secrets.token_hex(16) + BUNDLE_SUFFIX
    temp = folder / f".{name}.tmp"
    source = io.BufferedReader(
        PayloadSource(manifest, lambda e: store.sync_book.open_attachment(e.id))
    )
    box = state.trust.box
    if box is None:
        raise HqKeysExpired
    try:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w+b") as dst:
                sealed = store.seal_bundle(source, dst, box)
                dst.flush()
                os.fsync(dst.fileno())
            temp.replace(folder / name)
            fsync_folder(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
    except OSError as e:  # the home's disk is full, or the outbox is not writable
        raise StoreIOError from e
    store.sync_book.record(material, sealed, name, [a.id for a in manifest.attachments], reclaim)
    recorded = store.sync_book.bundle(sealed.bundle_id)
    if recorded is None:  # pragma: no cover -- recorded just above, in this process
        raise DatabaseDamaged
    return recorded


def build_bundles(
    store: FieldStore,
    now: datetime,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> list[OutgoingBundle]:
    """Seal a bundle for every ready testimony in the outbox; returns the new bundles."""
    state = usable_enrolment(store, now)
    ensure_private_dir(store.home.outbox)
    remove_unrecorded(store)
    ready = store.sync_book.ready()
    built = []
    for index, record_id in enumerate(ready):
        built.append(build_one(store, state, record_id, now))
        progress(index + 1, len(ready))
    return built


def reseal_replaced(store: FieldStore, now: datetime) -> tuple[int, frozenset[bytes]]:
    """Seal again, to HQ's current box key, every testimony HQ has not confirmed whose
    bundles were sealed to a key HQ has since replaced. Returns how many it sealed,
    and every bundle a newer one replaces (sealed now or by an earlier call), which
    is not worth sending again.

    For ``sync export --again`` and ``sync push --again``: HQ may have destroyed the
    old key (``hq retire-key``), and then those bundles can never be opened. The new
    bundle carries the whole revision chain and every attachment the replaced
    bundles carried, so HQ needs nothing from them; importing both changes nothing
    twice. Raises NotEnrolled, HqKeysExpired, StoreIOError.
    """
    state = usable_enrolment(store, now)
    box = state.trust.box
    if box is None:
        raise HqKeysExpired
    book = store.sync_book
    stale = book.sealed_to_other_keys(box.key_id, replaced=False)
    reclaim = frozenset(stale)
    ensure_private_dir(store.home.outbox)
    sealed = 0
    for record_id in dict.fromkeys(stale.values()):  # each testimony once, oldest first
        if not store.is_purged(record_id):
            build_one(store, state, record_id, now, reclaim)
            sealed += 1
    # Every bundle a newer one sealed to the current key replaces: never worth sending.
    return sealed, frozenset(book.sealed_to_other_keys(box.key_id, replaced=True))


def outbox_path(store: FieldStore, bundle: OutgoingBundle) -> Path:
    return store.home.outbox / bundle.file_name
