"""Carrying bundles and receipts by USB stick (or any folder).

On the stick a bundle is named by a fresh random id and nothing else: the
name says nothing about the device, the testimony or the time. Receipts travel
back as one file per export, each receipt 144 bytes (crypto/receipts.py), and
beside them HQ's whole key statement chain (sync/statementfile.py), so a
monitor that never reaches the relay still learns a new HQ box key. A monitor
applies the statements before the receipts, through the same verification as
``sync push`` (sync/hqtrust.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crypto.errors import ReceiptError, StatementError
from crypto.receipts import RECEIPT_BYTES, Receipt, verify_receipt
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive
from fieldapp.store.records import Summary
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import EnrolmentState
from fieldapp.store.vault import Clock, utc_now
from fieldapp.transfer import NotEnrolled, Progress, ProgressCallback, TransferResult
from sync.files import (
    UnsafeFolder,
    checked_folder,
    open_regular,
    read_blocks,
    regular_files,
    write_new,
)
from sync.hqtrust import apply_hq_statements, newer_than
from sync.outbox import BUNDLE_SUFFIX, HqKeysExpired, build_bundles, outbox_path, reseal_replaced
from sync.statementfile import (
    MAX_FILE_BYTES,
    StatementsFileRefused,
    decode_statements,
    encode_statements,
)

RECEIPTS_SUFFIX = ".fareceipts"
STATEMENTS_SUFFIX = ".fastatements"
MAX_RECEIPTS_PER_FILE = 1_000_000


class ReceiptsRefused(FieldappError):
    exit_code = ExitCode.DATA


class StickIOError(FieldappError):
    """Writing to or reading from the folder failed part way: full, removed, read-only."""

    exit_code = ExitCode.IO


def readable_folder(folder: Path) -> Path:
    """``folder`` if we may list it (receipts can come on a write-protected stick)."""
    return checked_folder(folder, write=False)


class StatementsRefused(FieldappError):
    """HQ key statements from the stick were refused; the device's trust is unchanged."""

    exit_code = ExitCode.KEYS


@dataclass(frozen=True, slots=True)
class ReceiptReport:
    files: int
    receipts: int
    confirmed: int
    statements: int = 0  # new HQ key statements accepted from the stick
    trust_version: int = 0  # the HQ key version the device trusts afterwards


@dataclass(frozen=True, slots=True)
class StickStatements:
    """What the stick's statement files did to the device's trust."""

    accepted: int
    version: int
    refused: str | None  # the reason of the first refusal, if any


def apply_stick_statements(store: FieldStore, folder: Path, now: datetime) -> StickStatements:
    """Apply HQ's newer key statements from every ``*.fastatements`` file in ``folder``.

    Files are taken in name order, each verified from the trust reached so far
    (sync/hqtrust.py); statements the device already has are skipped. A refused
    file changes nothing and the others still count. Raises NotEnrolled, UnsafeFolder.
    """
    state = store.sync_book.enrolment()
    if state is None:
        raise NotEnrolled
    try:
        files = regular_files(folder, STATEMENTS_SUFFIX)
    except OSError as e:
        raise UnsafeFolder("The folder cannot be read; check the path and permissions.") from e
    accepted, version, refused = 0, state.trust.version, None
    for path in files:
        try:
            with open_regular(path) as src:
                chain = decode_statements(src.read(MAX_FILE_BYTES + 1))
            update = apply_hq_statements(store, newer_than(version, chain), int(now.timestamp()))
        except (StatementsFileRefused, OSError):
            refused = refused or "malformed"
            continue
        except StatementError as e:
            refused = refused or e.reason.value
            continue
        accepted += update.accepted
        version = update.version
    return StickStatements(accepted, version, refused)


def export_bundles(
    store: FieldStore,
    folder: Path,
    *,
    now: datetime,
    again: bool = False,
    progress: ProgressCallback = lambda _p: None,
) -> TransferResult:
    """Seal what is ready, then copy every bundle not yet exported into ``folder``.

    With ``again``, every bundle HQ has not confirmed is copied, even if it was
    exported before (the first stick was lost). HQ key statements already on the
    stick (it came back from HQ) are applied first, so new bundles are sealed to
    HQ's newest box key; a refused statements file is left for ``sync
    import-receipts`` to report and does not stop the export. Raises NotEnrolled,
    HqKeysExpired, UnsafeFolder, StoreIOError (the home), StickIOError (the folder).
    """
    checked_folder(folder)
    apply_stick_statements(store, folder, now)
    expired = False
    replaced: frozenset[bytes] = frozenset()
    try:
        if again:  # sealed to a key HQ replaced (and may have destroyed): seal them again
            _, replaced = reseal_replaced(store, now)
        build_bundles(store, now, lambda done, total: progress(Progress("seal", done, total)))
    except HqKeysExpired:
        expired = True  # bundles sealed while the keys were valid still go
    pending = [
        b
        for b in store.sync_book.bundles(unconfirmed_only=True)
        if b.bundle_id not in replaced
        and (again or (b.exported_at is None and b.uploaded_at is None))
    ]
    total = sum(b.size for b in pending)
    done = 0
    for written, bundle in enumerate(pending):
        try:
            with open_regular(outbox_path(store, bundle)) as src:
                done += write_new(folder, secrets.token_hex(16) + BUNDLE_SUFFIX, read_blocks(src))
        except OSError as e:
            raise StickIOError(
                f"Writing to the folder failed after {written} of {len(pending)} bundle(s) "
                "(the USB stick may be full, write-protected or removed). The rest stay "
                "queued: free some space and export again."
            ) from e
        store.sync_book.mark_exported([bundle.bundle_id])
        progress(Progress("usb", done, total))
    if expired:
        raise HqKeysExpired(exported=len(pending))
    return TransferResult(
        bundles=len(pending),
        bytes=done,
        destination=str(folder),
        finished_at=now.isoformat(timespec="seconds"),
    )


def _read_receipt_file(path: Path) -> list[bytes]:
    with open_regular(path) as src:
        data = src.read(RECEIPT_BYTES * MAX_RECEIPTS_PER_FILE + 1)
    if not data or len(data) % RECEIPT_BYTES or len(data) > RECEIPT_BYTES * MAX_RECEIPTS_PER_FILE:
        raise ReceiptsRefused(
            f"{path.name!r} is not a receipts file from HQ (wrong size); nothing was applied."
        )
    return [data[i : i + RECEIPT_BYTES] for i in range(0, len(data), RECEIPT_BYTES)]


def verify_receipts(state: EnrolmentState, raw: Sequence[bytes]) -> tuple[list[Receipt], int]:
    """Check each receipt against the HQ root this device trusts: (the good ones, how many failed).

    The one verification for receipts whatever carried them (a USB stick, the
    relay); what to do with a failure is the caller's policy.
    """
    good: list[Receipt] = []
    refused = 0
    for receipt in raw:
        try:
            good.append(verify_receipt(receipt, [state.hq_root]))
        except ReceiptError:
            refused += 1
    return good, refused


def apply_receipts(store: FieldStore, receipts: Sequence[Receipt]) -> int:
    """Confirm the bundles verified receipts name (only this device's); how many were new."""
    return sum(store.sync_book.confirm(r.bundle_id, r.payload_sha256) is not None for r in receipts)


def import_receipts(
    store: FieldStore, folder: Path, *, now: datetime | None = None
) -> ReceiptReport:
    """Apply HQ's key statements from ``folder``, then every valid receipt file in it.

    Statements first (``apply_stick_statements``): a receipt signed by a root HQ
    rotated to is then already trusted, and bundles sealed from now on go to
    the newest box key. A receipt confirms a bundle only if it is signed by the
    HQ root this device trusts and names a bundle this device built, with the
    same payload hash; a file with any bad receipt is refused whole. Raises
    NotEnrolled, ReceiptsRefused (after applying the good files),
    StatementsRefused (statements refused, receipts all applied).
    """
    if store.sync_book.enrolment() is None:
        raise NotEnrolled
    readable_folder(folder)
    statements = apply_stick_statements(store, folder, now or utc_now())
    state = store.sync_book.enrolment()
    if state is None:  # pragma: no cover -- checked above
        raise NotEnrolled
    try:
        files = regular_files(folder, RECEIPTS_SUFFIX)
    except OSError as e:
        raise UnsafeFolder("The folder cannot be read; check the path and permissions.") from e
    checked: list[Receipt] = []
    refused: list[str] = []
    for path in files:
        try:
            verified, failed = verify_receipts(state, _read_receipt_file(path))
        except (ReceiptsRefused, OSError):
            refused.append(path.name)
            continue
        if failed:  # one bad receipt refuses its whole file, the good ones in it too
            refused.append(path.name)
        else:
            checked.extend(verified)
    confirmed = apply_receipts(store, checked)
    keys_refused = (
        ""
        if statements.refused is None
        else f"HQ key statements on the stick were refused ({statements.refused}); this "
        f"device keeps the HQ keys it had (version {statements.version}). "
    )
    if refused:
        raise ReceiptsRefused(
            f"{keys_refused}{len(refused)} receipts file(s) did not verify against HQ's key "
            f"and were not applied ({confirmed} bundle(s) confirmed from the others)."
        )
    if keys_refused:
        raise StatementsRefused(
            f"{keys_refused}{confirmed} bundle(s) newly confirmed from the receipts. Ask HQ "
            "for a fresh stick, and tell them: the stick may have been tampered with."
        )
    return ReceiptReport(
        len(files), len(checked), confirmed, statements.accepted, statements.version
    )


def export_receipts(
    archive: HqArchive,
    folder: Path,
    *,
    include_exported: bool = False,
    device: str | None = None,
) -> int:
    """Write HQ's receipts not yet carried out (of one device, if named) into one new file."""
    checked_folder(folder)
    receipts = archive.receipts(include_exported=include_exported, device=device)
    if not receipts:
        return 0
    try:
        write_new(folder, secrets.token_hex(16) + RECEIPTS_SUFFIX, [r for _, r in receipts])
    except OSError as e:
        raise StickIOError(
            "Writing the receipts to the folder failed (the USB stick may be full, "
            "write-protected or removed); nothing was marked as carried out. Try again."
        ) from e
    archive.mark_receipts_exported([b for b, _ in receipts])
    return len(receipts)


def export_statements(archive: HqArchive, folder: Path) -> int:
    """Write HQ's whole key statement chain into one new file; returns its newest version.

    Monitors that only ever see sticks learn a new box key or root from it.
    Raises UnsafeFolder, StickIOError.
    """
    checked_folder(folder)
    chain = archive.statements()
    try:
        write_new(folder, secrets.token_hex(16) + STATEMENTS_SUFFIX, [encode_statements(chain)])
    except OSError as e:
        raise StickIOError(
            "Writing HQ's key statements to the folder failed (the USB stick may be full, "
            "write-protected or removed). Try again."
        ) from e
    return len(chain)


class UsbTransfers:
    """``Transfers`` for the TUI's sync screen: export to a folder; no network yet."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._last: TransferResult | None = None

    def queued(self, store: FieldStore) -> list[Summary]:
        wanted = {rid for rid, _ in store.outbox()}
        return store.summaries(wanted)

    def last_result(self) -> TransferResult | None:
        return self._last

    def export(self, store: FieldStore, folder: Path, progress: ProgressCallback) -> TransferResult:
        self._last = export_bundles(store, folder, now=self._clock(), progress=progress)
        return self._last

    def push(self, store: FieldStore, progress: ProgressCallback) -> TransferResult:
        del store, progress
        raise NetworkNotAvailable


class NetworkNotAvailable(FieldappError):
    exit_code = ExitCode.NETWORK

    def __init__(self) -> None:
        super().__init__(
            "Sending over the network is not available in this version; export to a "
            "USB stick instead."
        )
