"""HQ pulling from the relay: download, check, import, publish receipts and statements, delete.

``pull`` lists every complete blob on the relay. Each one is downloaded into
``incoming/`` inside the HQ home (ciphertext, but kept in the home, 0600, never
in /tmp), resumed with a Range request after a cut, and its SHA-256 compared
with its id before anything else looks at it. Then it is imported exactly as
``hq import`` imports a file (sync/hqimport.py ``import_file``: the same
checks, the same quarantine). What became of each blob is recorded, so a blob
whose deletion failed is never imported or quarantined twice.

After the downloads, HQ's receipts not yet published go to the relay (for
every device; each picks out its own), HQ's key statements are published
(idempotent: the same bytes again are accepted), and every blob that was
imported, was already here, or went to quarantine is deleted from the relay.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from crypto.keyfile import ensure_private_dir
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.archive import HqArchive
from sync.hqimport import BUNDLE_SUFFIX, Outcome, import_file
from sync.publish import put_chain
from sync.push import DEFAULT_BUDGET_SECONDS
from sync.relayclient import (
    DEFAULT_TIMEOUT,
    MAX_RECEIPTS_PER_ANSWER,
    Backoff,
    BlobInfo,
    RelayClient,
    RelayError,
    RelayProtocolError,
    RelaySettingError,
    RelayUnreachable,
    UploadGone,
)

INCOMING = "incoming"  # the HQ home's folder for downloads in progress
PART_SUFFIX = ".part"
MAX_DOWNLOAD_TRIES = 2  # a blob whose bytes do not hash to its id is fetched once more


@dataclass
class PullReport:
    relay: str
    listed: int = 0
    imported: int = 0
    already: int = 0
    quarantined: int = 0
    deleted: int = 0
    bytes_downloaded: int = 0
    receipts_published: int = 0
    statements_published: int = 0
    failed: list[str] = field(default_factory=list)  # blob ids the relay served wrongly
    outcomes: list[Outcome] = field(default_factory=list)


def incoming_folder(archive: HqArchive) -> Path:
    return archive.home.root / INCOMING


def _open_part(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class _Puller:
    def __init__(
        self,
        archive: HqArchive,
        client: RelayClient,
        backoff: Backoff,
        on_outcome: Callable[[Outcome], None],
    ) -> None:
        self.archive = archive
        self.client = client
        self.backoff = backoff
        self.on_outcome = on_outcome
        self.folder = incoming_folder(archive)
        self.report = PullReport(relay=client.name)

    def run(self) -> PullReport:
        self.backoff.start()
        ensure_private_dir(self.folder)
        blobs = self.list_all()
        self.report.listed = len(blobs)
        self.tidy({b.id for b in blobs})
        done: list[str] = []
        for blob in blobs:
            if self.archive.pulled_outcome(blob.id) is None and not self.fetch_and_import(blob):
                continue
            done.append(blob.id)
        # Statements first: a receipt signed by a root a device has not followed to
        # yet is refused, and the device's receipt cursor moves past it for good.
        self.publish_statements()
        self.publish_receipts()
        for blob_id in done:
            self.backoff.call(partial(self.client.delete_blob, blob_id))
            self.report.deleted += 1
        return self.report

    def list_all(self) -> list[BlobInfo]:
        blobs: list[BlobInfo] = []
        after: str | None = None
        while True:
            page, more = self.backoff.call(partial(self.client.list_blobs, after=after))
            ids = [b.id for b in page]
            if ids != sorted(set(ids)) or (after is not None and ids and ids[0] <= after):
                # Ids must advance, or a hostile relay could keep us listing forever.
                raise RelayProtocolError(
                    f"The relay at {self.client.name} listed its bundles out of order."
                )
            blobs += page
            if not more or not page:
                return blobs
            after = page[-1].id

    def tidy(self, listed: set[str]) -> None:
        """Remove what an earlier pull left that no listed blob needs any more."""
        for entry in os.scandir(self.folder):
            stem = entry.name.removesuffix(PART_SUFFIX).removesuffix(BUNDLE_SUFFIX)
            keep = entry.name.endswith(PART_SUFFIX) and stem in listed
            if not keep and entry.is_file(follow_symlinks=False):
                _remove(Path(entry.path))

    def download(self, blob: BlobInfo) -> Path:
        """The blob, whole, in a private file in the home (resumed after a cut)."""
        part = self.folder / f"{blob.id}{PART_SUFFIX}"
        while True:
            have = _size(part)
            if have > blob.size:
                _remove(part)
                have = 0
            if have == blob.size:
                return part
            fd = _open_part(part)
            try:
                with os.fdopen(fd, "ab") as dst:
                    try:
                        got = self.client.download(blob.id, dst, offset=have, size=blob.size)
                    finally:
                        dst.flush()
                        os.fsync(dst.fileno())
            except RelayError as e:
                if _size(part) > have:
                    self.backoff.progressed()
                self.backoff.wait_or_raise(e)
            else:
                self.report.bytes_downloaded += got
                self.backoff.progressed()
                if have + got < blob.size:  # the relay ended the body early
                    self.backoff.wait_or_raise(
                        RelayUnreachable(
                            f"The connection to the relay at {self.client.name} broke while "
                            "downloading a bundle."
                        )
                    )

    def fetch_and_import(self, blob: BlobInfo) -> bool:
        """Download, check and import one blob; False if it could not be had intact."""
        for _ in range(MAX_DOWNLOAD_TRIES):
            try:
                part = self.download(blob)
            except UploadGone:
                return False  # deleted meanwhile (another pull): nothing to do
            if _sha256(part) == blob.id:
                break
            _remove(part)
        else:
            self.report.failed.append(blob.id)
            return False
        path = self.folder / f"{blob.id}{BUNDLE_SUFFIX}"
        part.replace(path)
        try:
            outcome = import_file(self.archive, path)
        finally:
            _remove(path)
        if outcome.refusal is not None and outcome.quarantined_as is None:
            # The quarantine copy could not be written (disk full?): the relay's copy is
            # the only one left, so it stays there and the next pull tries again.
            self.report.failed.append(blob.id)
            self.report.outcomes.append(outcome)
            self.on_outcome(outcome)
            return False
        if outcome.refusal is not None:
            kind = "quarantined"
            self.report.quarantined += 1
        elif outcome.result is not None and outcome.result.already_imported:
            kind = "already"
            self.report.already += 1
        else:
            kind = "imported"
            self.report.imported += 1
        self.archive.record_pulled(blob.id, kind)
        self.report.outcomes.append(outcome)
        self.on_outcome(outcome)
        return True

    def publish_receipts(self) -> None:
        pending = self.archive.receipts_to_publish()
        for start in range(0, len(pending), MAX_RECEIPTS_PER_ANSWER):
            batch = pending[start : start + MAX_RECEIPTS_PER_ANSWER]
            self.backoff.call(partial(self.client.publish_receipts, [r for _, r in batch]))
            self.archive.mark_receipts_published([b for b, _ in batch])
            self.report.receipts_published += len(batch)

    def publish_statements(self) -> None:
        self.report.statements_published += put_chain(
            self.client, self.backoff, self.archive.statements()
        )


class PullRunning(FieldappError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "Another hq pull is running on this HQ home; wait for it to finish. Nothing was done."
        )


@contextlib.contextmanager
def _one_pull_at_a_time(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the home for one pull: two at once would share
    ``incoming/`` and clean up each other's downloads."""
    fd = os.open(root / ".pull.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise PullRunning from e
        yield
    finally:
        os.close(fd)  # releases the lock


def pull(
    archive: HqArchive,
    *,
    relay: str | None = None,
    proxy: str | None = None,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    backoff: Backoff | None = None,
) -> PullReport:
    """Import every bundle waiting on the relay; publish receipts and statements; clean up.

    Raises RelaySettingError (no relay configured), a RelayError after retries
    (what was imported so far stays imported), RelayProtocolError at the end if
    the relay served a blob whose bytes did not match its id (left on the relay).
    """
    config = archive.relay_config()
    if config is None:
        raise RelaySettingError(
            "HQ has no relay configured; run fieldapp hq relay-config first (relay init "
            "prints the address, tokens and pin)."
        )
    with (
        _one_pull_at_a_time(archive.home.root),
        RelayClient(
            relay or config.url,
            config.hq_token,
            pin=config.pin,
            proxy=proxy,
            timeout=DEFAULT_TIMEOUT,
        ) as client,
    ):
        report = _Puller(
            archive, client, backoff or Backoff(budget_seconds=budget_seconds), on_outcome
        ).run()
    if report.failed:
        raise RelayProtocolError(
            f"The relay at {report.relay} served {len(report.failed)} bundle(s) whose bytes do "
            "not match their id; they were left on the relay. Check its storage."
        )
    return report
