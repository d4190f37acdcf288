"""A 1 GiB blob goes up and comes back down through a relay in bounded memory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.helpers import OFFSET_STREAM, TUS, create
from tests.relay.server import RelayProcess, running_relay

MIB = 1024 * 1024
SIZE = 1024 * MIB
PATCH_BYTES = 16 * MIB  # the protocol's largest PATCH body


def _blocks(seed: bytes) -> Iterator[bytes]:
    """SIZE bytes, 1 MiB at a time, all different, never all in memory."""
    for i in range(SIZE // MIB):
        yield i.to_bytes(8, "big") + seed


def _peak_rss(relay: RelayProcess) -> int:
    assert relay.process is not None
    status = Path(f"/proc/{relay.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_1_gib_upload_and_download_in_bounded_memory(tmp_path: Path) -> None:
    seed = os.urandom(MIB - 8)
    digest = hashlib.sha256()
    for block in _blocks(seed):
        digest.update(block)
    data_id = digest.hexdigest()
    with running_relay(tmp_path) as relay:
        baseline = _peak_rss(relay)
        with relay.client(relay.upload_token) as http:
            assert create(http, data_id, SIZE).status_code == 201
            blocks = _blocks(seed)
            offset = 0
            while offset < SIZE:

                def body(blocks: Iterator[bytes] = blocks) -> Iterator[bytes]:
                    for _ in range(PATCH_BYTES // MIB):
                        yield next(blocks)

                headers = {
                    **TUS,
                    "Upload-Offset": str(offset),
                    "Content-Type": OFFSET_STREAM,
                    "Content-Length": str(PATCH_BYTES),
                }
                answer = http.patch(f"/v1/uploads/{data_id}", headers=headers, content=body())
                assert answer.status_code == 204, answer.text
                offset = int(answer.headers["Upload-Offset"])
        with relay.client(relay.hq_token) as hq:
            check = hashlib.sha256()
            with hq.stream("GET", f"/v1/blobs/{data_id}") as download:
                assert download.headers["Content-Length"] == str(SIZE)
                for chunk in download.iter_bytes():
                    check.update(chunk)
            assert check.hexdigest() == data_id
        growth = _peak_rss(relay) - baseline
        print(f"relay peak RSS growth: {growth / MIB:.1f} MiB")
        assert growth < 48 * MIB, f"the relay grew by {growth // MIB} MiB for a 1 GiB blob"
        assert (relay.data_dir / "blobs" / data_id).stat().st_size == SIZE
