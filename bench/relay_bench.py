"""``python -m bench.relay_bench``: relay upload throughput on loopback, beside a bare upload.

The bench starts one server process of its own, ``python -m bench.relay_bench
serve``: uvicorn configured exactly as ``fieldapp relay serve`` configures it
(``sync.relay.serve.build_config``), serving the real relay app
(``create_app``) behind a thin ASGI wrapper that adds one route,
``PUT /bare/<name>``: the request body streamed to a file with no checks
(1 MiB writes in the thread pool, as the relay writes, then fsync and rename),
what a plain static-file upload server does. So the relay and the bare path
run in the same process, on the same disk, in the same run. The wrapper also
counts and times every ``os.fsync`` in that process and swaps a timed lock in
for the relay store's one lock (``BlobStore._lock``), both read through
``GET /bench/stats``; sync/ itself is unchanged. For reference, a second
process runs the unmodified ``fieldapp relay serve`` (no wrapper, no meters).

Clients are threads in this process, each with its own httpx connection,
driving the protocol directly (docs/relay-protocol.md); one small-bundle row
goes through ``sync.relayclient.RelayClient`` instead, and the resume cases
resume with RelayClient in the loop ``sync.push`` uses.

1. small bundles: 1 and ``--clients`` clients uploading ``--small-count``
   random 4 KiB blobs each (POST + PATCH), against PUT /bare of the same bytes;
2. one ``--large-mib`` blob in PATCH chunks of 8 MiB, 1 MiB (sync push's
   chunk) and 16 MiB (the relay's largest), against one streamed PUT /bare,
   with the server's peak RSS (VmHWM, reset before each case);
3. the same bytes as ``--clients`` concurrent blobs;
4. resuming: a PATCH cut mid-body (socket closed, reset, or left silent),
   then wait, HEAD and go on as sync push does: bytes sent in all against the
   blob's size.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.files import MIB, size_label, write_random
from bench.rss import vm_hwm_kib

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from sync.relayclient import RelayClient

REPO: Final = Path(__file__).resolve().parents[1]
HOST: Final = "127.0.0.1"
MB: Final = 10**6
SMALL_BYTES: Final = 4096  # a sealed small bundle is ~3.9 kB (bench/hq_import_bench.py)
PUSH_CHUNK: Final = MIB  # sync.relayclient.DEFAULT_CHUNK_BYTES, what sync push sends
RELAY_MAX_CHUNK: Final = 16 * MIB  # the relay's default max_patch_bytes
BARE_PREFIX: Final = "/bare/"
STATS_PATH: Final = "/bench/stats"
FLUSH_BYTES: Final = MIB  # the bare route writes like the relay: 1 MiB at a time, in a thread
CUT_FRACTIONS: Final = (0.1, 0.5, 0.9)
CASES: Final = ("small", "large", "parallel", "resume")
START_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 300.0
TUS: Final = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM: Final = "application/offset+octet-stream"
_NAME: Final = re.compile(r"[0-9a-f]{64}")
_TOKEN_LINE: Final = re.compile(r"^(upload token|hq token): (\S+)$", re.MULTILINE)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the server process


class FsyncMeter:
    """Counts and times every ``os.fsync`` in this process (about 1 us per call added)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._real = os.fsync

    def install(self) -> None:
        os.fsync = self._fsync  # the relay calls os.fsync through the module: all of it counts

    def _fsync(self, fd: Any) -> None:
        start = time.perf_counter()
        try:
            self._real(fd)
        finally:
            spent = time.perf_counter() - start
            with self._lock:
                self.calls += 1
                self.seconds += spent


class LockMeter:
    """Stands in for ``BlobStore._lock``: times waiting for it and holding it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0.0
        self.acquired = 0
        self.wait_seconds = 0.0
        self.held_seconds = 0.0

    def __enter__(self) -> LockMeter:
        start = time.perf_counter()
        self._lock.acquire()
        self._taken = time.perf_counter()
        self.acquired += 1
        self.wait_seconds += self._taken - start
        return self

    def __exit__(self, *_exc: object) -> None:
        self.held_seconds += time.perf_counter() - self._taken
        self._lock.release()


def _meter_store_lock(app: Any) -> LockMeter | None:
    """Swap a LockMeter in for the relay's BlobStore lock (found through the upload routes)."""
    for route in getattr(app, "routes", []):
        routes = getattr(getattr(route, "endpoint", None), "__self__", None)
        store = getattr(getattr(routes, "relay", None), "blobs", None)
        if store is not None and hasattr(store, "_lock"):
            meter = LockMeter()
            store._lock = meter
            return meter
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _finish_bare(fd: int, rest: bytes, temp: Path, final: Path) -> None:
    if rest:
        _write_all(fd, rest)
    os.fsync(fd)
    temp.rename(final)


class BenchApp:
    """The relay's ASGI app, plus ``PUT /bare/<name>`` and ``GET /bench/stats``."""

    def __init__(
        self, relay: ASGIApp, bare_dir: Path, meter: FsyncMeter, lock: LockMeter | None
    ) -> None:
        self.relay = relay
        self.bare_dir = bare_dir
        self.meter = meter
        self.lock = lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(BARE_PREFIX):
            await self._bare(scope, receive, send)
        elif path == STATS_PATH:
            stats = {"fsyncs": self.meter.calls, "fsync_seconds": self.meter.seconds}
            if self.lock is not None:
                stats["lock_wait_seconds"] = self.lock.wait_seconds
                stats["lock_held_seconds"] = self.lock.held_seconds
            await _answer(send, 200, json.dumps(stats).encode())
        else:
            await self.relay(scope, receive, send)

    async def _bare(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body to a temp file, fsync, rename: no token, length or hash check."""
        from starlette.concurrency import run_in_threadpool

        name = scope["path"][len(BARE_PREFIX) :]
        if scope["method"] != "PUT" or not _NAME.fullmatch(name):
            await _answer(send, 404, b"")
            return
        temp = self.bare_dir / f".{name}.{secrets.token_hex(4)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = await run_in_threadpool(os.open, temp, flags, 0o600)
        parts: list[bytes] = []
        held = 0
        done = False
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # cut off: nothing kept
                body = message.get("body", b"")
                if body:
                    parts.append(body)
                    held += len(body)
                if held >= FLUSH_BYTES:
                    await run_in_threadpool(_write_all, fd, b"".join(parts))
                    parts.clear()
                    held = 0
                if not message.get("more_body", False):
                    break
            await run_in_threadpool(_finish_bare, fd, b"".join(parts), temp, self.bare_dir / name)
            done = True
        finally:
            os.close(fd)
            if not done:
                temp.unlink(missing_ok=True)
        await _answer(send, 201, b"")


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(data_dir: Path, bare_dir: Path, port: int) -> int:
    """The ``serve`` sub-command: the relay under uvicorn as ``relay serve`` runs it, plus /bare."""
    import uvicorn
    from starlette.applications import Starlette

    from sync.relay.serve import build_config, configure_logging

    meter = FsyncMeter()
    meter.install()
    configure_logging()
    config = build_config(data_dir, host=HOST, port=port, tls=False)
    relay = config.app
    assert isinstance(relay, Starlette)  # create_app's, as `relay serve` would serve it
    config.app = BenchApp(relay, bare_dir, meter, _meter_store_lock(relay))
    server = uvicorn.Server(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # uvicorn re-raises the signal that stopped it
    asyncio.run(server.serve())
    return 0


# ---------------------------------------------------------------- server processes, seen from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Tokens:
    upload: str
    hq: str


def init_relay(data_dir: Path) -> Tokens:
    """``fieldapp relay init --data DATA_DIR`` (no KDF involved: the real CLI, not cheapcli)."""
    argv = [sys.executable, "-m", "fieldapp", "relay", "init", "--data", str(data_dir)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    found = dict(_TOKEN_LINE.findall(done.stdout))
    if done.returncode != 0 or len(found) != 2:
        raise RuntimeError(f"relay init failed: {done.stdout}{done.stderr}")
    return Tokens(found["upload token"], found["hq token"])


def _proc_status(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


@dataclass
class ServerProcess:
    """One server process on a free loopback port: the bench server or ``relay serve``."""

    label: str
    argv: list[str]
    log: Path
    tokens: Tokens
    port: int
    bench: bool  # the bench server (has /bare and /bench/stats)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        import httpx

        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, cwd=REPO, stdout=out, stderr=out)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited early; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.label} did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def reset_peak(self) -> None:
        """Start a new VmHWM period for the server (write 5 to its clear_refs)."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5", encoding="ascii")

    def peak_kib(self) -> int:
        return vm_hwm_kib(self.pid) or 0

    def rss_kib(self) -> int:
        return _proc_status(self.pid, "VmRSS") or 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, float]:
        """fsync calls and seconds, store-lock wait and hold seconds, in the bench server so far.

        Empty for ``relay serve``, which is not instrumented.
        """
        if not self.bench:
            return {}
        import httpx

        stats: dict[str, float] = httpx.get(self.url + STATS_PATH, timeout=10).json()
        return stats


@dataclass
class Meter:
    """Server-side figures over one case: CPU, fsyncs, the store lock, peak RSS."""

    server: ServerProcess
    cpu: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    peak_kib: int = 0

    def __enter__(self) -> Meter:
        self.server.reset_peak()
        self.before = self.server.stats()
        self.cpu = -self.server.cpu_seconds()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cpu += self.server.cpu_seconds()
        self.after = self.server.stats()
        self.peak_kib = self.server.peak_kib()

    def _delta(self, key: str) -> float | None:
        if key not in self.after:
            return None
        return self.after[key] - self.before[key]

    def figures(self) -> dict[str, Any]:
        return {
            "server_cpu_s": self.cpu,
            "fsyncs": self._delta("fsyncs"),
            "fsync_s": self._delta("fsync_seconds"),
            "lock_wait_s": self._delta("lock_wait_seconds"),
            "lock_held_s": self._delta("lock_held_seconds"),
            "peak_rss_kib": self.peak_kib,
        }


# ---------------------------------------------------------------- clients


class UnexpectedAnswer(Exception):
    """The server answered something the protocol does not allow here."""


def _metadata(blob_id: str) -> str:
    return "sha256 " + base64.b64encode(blob_id.encode("ascii")).decode("ascii")


def _pread(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise OSError("short read from the source file")
    return data


class Uploader:
    """One client with one keep-alive connection (httpx), speaking the protocol directly."""

    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
            trust_env=False,
        )
        self.http.get("/v1/health").raise_for_status()  # the connection exists before timing

    def close(self) -> None:
        self.http.close()

    def create(self, blob_id: str, length: int) -> int:
        headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": _metadata(blob_id)}
        r = self.http.post("/v1/uploads", headers=headers)
        if r.status_code not in (200, 201):
            raise UnexpectedAnswer(f"POST /v1/uploads: {r.status_code} {r.text[:200]}")
        return int(r.headers["upload-offset"])

    def append(self, blob_id: str, offset: int, data: bytes) -> int:
        headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_STREAM}
        r = self.http.patch(f"/v1/uploads/{blob_id}", headers=headers, content=data)
        if r.status_code != 204:
            raise UnexpectedAnswer(f"PATCH: {r.status_code} {r.text[:200]}")
        return int(r.headers["upload-offset"])

    def relay_bytes(self, blob_id: str, data: bytes) -> tuple[float, float]:
        """A small blob in one PATCH; (POST seconds, PATCH seconds)."""
        start = time.perf_counter()
        if self.create(blob_id, len(data)) != 0:
            raise UnexpectedAnswer("a new upload did not start at offset 0")
        posted = time.perf_counter()
        if self.append(blob_id, 0, data) != len(data):
            raise UnexpectedAnswer("the PATCH did not complete the blob")
        return posted - start, time.perf_counter() - posted

    def relay_file(self, blob_id: str, fd: int, start: int, length: int, chunk: int) -> int:
        """Upload bytes ``start .. start+length`` of ``fd``; returns the PATCH count."""
        offset = self.create(blob_id, length)
        patches = 0
        while offset < length:
            data = _pread(fd, start + offset, min(chunk, length - offset))
            offset = self.append(blob_id, offset, data)
            patches += 1
        return patches

    def bare(self, name: str, content: bytes | Iterator[bytes], length: int) -> None:
        headers = {"Content-Length": str(length), "Content-Type": "application/octet-stream"}
        r = self.http.put(BARE_PREFIX + name, headers=headers, content=content)
        if r.status_code != 201:
            raise UnexpectedAnswer(f"PUT /bare: {r.status_code}")


def _file_blocks(fd: int, start: int, length: int, block: int = MIB) -> Iterator[bytes]:
    done = 0
    while done < length:
        piece = _pread(fd, start + done, min(block, length - done))
        done += len(piece)
        yield piece


def _parallel(jobs: Sequence[Callable[[], Any]]) -> tuple[float, list[Any]]:
    """Run each job in its own thread, all released at once; (wall seconds, results)."""
    barrier = threading.Barrier(len(jobs) + 1)
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = jobs[n]()
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(len(jobs))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, results


# ---------------------------------------------------------------- case 1: small bundles


SMALL_RELAY = "relay: POST + PATCH (httpx)"
SMALL_CLIENT = "relay: POST + PATCH via sync.relayclient.RelayClient"
SMALL_BARE = "bare: PUT /bare/<id>"
SMALL_SERVE = "relay: POST + PATCH (httpx), `fieldapp relay serve` process"


def _small_blobs(clients: int, count: int) -> list[list[tuple[str, bytes]]]:
    blobs = []
    for _ in range(clients):
        mine = []
        for _ in range(count):
            data = os.urandom(SMALL_BYTES)
            mine.append((hashlib.sha256(data).hexdigest(), data))
        blobs.append(mine)
    return blobs


def _small_job(
    case: str, server: ServerProcess, blobs: list[tuple[str, bytes]]
) -> Callable[[], list[tuple[float, float]]]:
    """One client's uploads; each returns (total seconds, POST seconds or 0)."""
    if case == SMALL_CLIENT:
        from sync.relayclient import RelayClient

        client = RelayClient(server.url, server.tokens.upload)
        client.health()

        def via_client() -> list[tuple[float, float]]:
            times = []
            with client:
                for blob_id, data in blobs:
                    start = time.perf_counter()
                    client.create_upload(blob_id, len(data))
                    posted = time.perf_counter()
                    if client.append(blob_id, 0, data) != len(data):
                        raise UnexpectedAnswer("the PATCH did not complete the blob")
                    times.append((time.perf_counter() - start, posted - start))
            return times

        return via_client

    uploader = Uploader(server.url, server.tokens.upload)

    def direct() -> list[tuple[float, float]]:
        times = []
        try:
            for blob_id, data in blobs:
                if case == SMALL_BARE:
                    start = time.perf_counter()
                    uploader.bare(blob_id, data, len(data))
                    times.append((time.perf_counter() - start, 0.0))
                else:
                    post, patch = uploader.relay_bytes(blob_id, data)
                    times.append((post + patch, post))
        finally:
            uploader.close()
        return times

    return direct


def run_small(case: str, server: ServerProcess, clients: int, count: int) -> dict[str, Any]:
    blobs = _small_blobs(clients, count)
    jobs = [_small_job(case, server, mine) for mine in blobs]
    with Meter(server) as meter:
        wall, results = _parallel(jobs)
    times = [t for per_client in results for t in per_client]
    return {
        "case": case,
        "clients": clients,
        "uploads": len(times),
        "bytes": len(times) * SMALL_BYTES,
        "wall_s": wall,
        "latencies": [total for total, _ in times],
        "post_latencies": [post for _, post in times if post],
        **meter.figures(),
    }


# ---------------------------------------------------------------- cases 2 and 3: large uploads


@dataclass(frozen=True, slots=True)
class Slice:
    """Bytes ``start .. start+length`` of the source file, and their SHA-256."""

    start: int
    length: int
    blob_id: str


def _hash_slices(path: Path, pieces: int) -> list[Slice]:
    size = path.stat().st_size
    step = size // pieces
    slices = []
    with path.open("rb") as f:
        for n in range(pieces):
            length = step if n < pieces - 1 else size - step * (pieces - 1)
            hasher = hashlib.sha256()
            left = length
            while left:
                block = f.read(min(MIB, left))
                hasher.update(block)
                left -= len(block)
            slices.append(Slice(n * step, length, hasher.hexdigest()))
    return slices


class Cleaner:
    """Removes what a large case stored, so the next case starts from the same store."""

    def __init__(self, bench: ServerProcess, bare_dir: Path) -> None:
        import httpx

        self.bare_dir = bare_dir
        self.hq = httpx.Client(
            headers={"Authorization": f"Bearer {bench.tokens.hq}"}, timeout=60, trust_env=False
        )

    def remove(self, server: ServerProcess, slices: Sequence[Slice]) -> None:
        for s in slices:
            (self.bare_dir / s.blob_id).unlink(missing_ok=True)
            headers = {"Authorization": f"Bearer {server.tokens.hq}"}
            r = self.hq.delete(f"{server.url}/v1/blobs/{s.blob_id}", headers=headers)
            if r.status_code != 204:
                raise UnexpectedAnswer(f"DELETE /v1/blobs: {r.status_code}")

    def check_stored(self, server: ServerProcess, slices: Sequence[Slice], *, bare: bool) -> None:
        for s in slices:
            if bare:
                size = (self.bare_dir / s.blob_id).stat().st_size
            else:
                headers = {"Authorization": f"Bearer {server.tokens.upload}", **TUS}
                r = self.hq.head(f"{server.url}/v1/uploads/{s.blob_id}", headers=headers)
                offset, length = r.headers.get("upload-offset"), r.headers.get("upload-length")
                size = int(offset) if r.status_code == 200 and offset == length else -1
            if size != s.length:
                raise UnexpectedAnswer(f"blob {s.blob_id[:12]} not stored whole ({size})")


def _large_job(
    server: ServerProcess, fd: int, piece: Slice, chunk: int | None
) -> Callable[[], tuple[float, int]]:
    uploader = Uploader(server.url, server.tokens.upload)

    def job() -> tuple[float, int]:
        start = time.perf_counter()
        try:
            if chunk is None:
                blocks = _file_blocks(fd, piece.start, piece.length)
                uploader.bare(piece.blob_id, blocks, piece.length)
                requests = 1
            else:
                requests = 1 + uploader.relay_file(
                    piece.blob_id, fd, piece.start, piece.length, chunk
                )
        finally:
            uploader.close()
        return time.perf_counter() - start, requests

    return job


def run_large(
    label: str,
    server: ServerProcess,
    source: Path,
    slices: Sequence[Slice],
    chunk: int | None,
    cleaner: Cleaner,
) -> dict[str, Any]:
    """Every slice at once, one client each; chunk None: PUT /bare, one streamed body."""
    fd = os.open(source, os.O_RDONLY)
    try:
        jobs = [_large_job(server, fd, s, chunk) for s in slices]
        rss_before = server.rss_kib()
        with Meter(server) as meter:
            wall, results = _parallel(jobs)
    finally:
        os.close(fd)
    cleaner.check_stored(server, slices, bare=chunk is None)
    cleaner.remove(server, slices)
    return {
        "case": label,
        "chunk": chunk,
        "clients": len(slices),
        "bytes": sum(s.length for s in slices),
        "wall_s": wall,
        "client_s": [seconds for seconds, _ in results],
        "requests": sum(n for _, n in results),
        "rss_before_kib": rss_before,
        **meter.figures(),
    }


# ---------------------------------------------------------------- case 4: resuming


CUT_CLOSE = "close"
CUT_RESET = "reset"
CUT_STALL = "silent"


def _cut_patch(
    server: ServerProcess, blob_id: str, offset: int, body: bytes, send: int, how: str
) -> socket.socket | None:
    """A PATCH declaring ``len(body)`` bytes that stops after ``send`` of them.

    ``close``: the client closes its socket (FIN, as when the client process
    dies with nothing unread); ``reset``: SO_LINGER 0, the kernel sends RST (a
    middlebox or a NAT that forgot the flow); ``silent``: the socket stays open
    and sends nothing more (the link went dead: the relay hears nothing), and
    is returned so the caller closes it at the end.
    """
    head = (
        f"PATCH /v1/uploads/{blob_id} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
        f"Authorization: Bearer {server.tokens.upload}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: {offset}\r\nContent-Type: {OFFSET_STREAM}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii")
    sock = socket.create_connection((HOST, server.port))
    sock.sendall(head + body[:send])
    if how == CUT_STALL:
        return sock
    if how == CUT_RESET:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return None


@dataclass
class ResumeCase:
    chunk: int
    fraction: float
    how: str
    size: int
    cut_at: int = 0  # blob offset where the cut PATCH started
    sent_before_cut: int = 0  # of the cut PATCH's body
    stored_after_cut: int = 0  # how much of it the relay kept
    sent: int = 0  # every upload body byte handed to the network, the cut one included
    sent_to_409: int = 0  # PATCH bodies answered 409 (the cut PATCH still running)
    conflicts: int = 0
    resume_s: float = 0.0  # from the cut until the relay accepted a PATCH again
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _resume_loop(
    client: RelayClient, fd: int, piece: Slice, chunk: int, case: ResumeCase, cut_time: float
) -> None:
    """What sync/push.py ``Pusher.upload`` does after a failed PATCH: wait, HEAD, PATCH on.

    The waits are sync.relayclient.Backoff's, with its jitter fixed at its mean
    (a uniform draw in [0, 0.5 s * 2**attempt] taken as half of that) so runs
    compare. 409 (the cut PATCH is still running on the relay) is transient:
    wait again, HEAD again, send the chunk again, as push does.
    """
    from sync.relayclient import Backoff, RelayUnreachable, UploadConflict

    backoff = Backoff(random=lambda: 0.5)
    backoff.wait_or_raise(RelayUnreachable("the connection broke"))  # what push saw
    offset = client.upload_offset(piece.blob_id).offset
    accepted = False
    while offset < piece.length:
        data = _pread(fd, piece.start + offset, min(chunk, piece.length - offset))
        try:
            new_offset = client.append(piece.blob_id, offset, data)
        except UploadConflict as e:
            case.conflicts += 1
            case.sent_to_409 += len(data)
            backoff.wait_or_raise(e)
            offset = client.upload_offset(piece.blob_id).offset
            continue
        if not accepted:
            accepted = True
            case.resume_s = time.perf_counter() - cut_time
            case.stored_after_cut = offset - case.cut_at
        if new_offset > offset:
            backoff.progressed()
        offset = new_offset


def run_resume(
    server: ServerProcess, source: Path, piece: Slice, case: ResumeCase, cleaner: Cleaner
) -> ResumeCase:
    """Upload ``piece``, cutting the PATCH that holds the blob's middle after ``fraction``."""
    from sync.relayclient import RelayClient

    chunk = case.chunk
    case.cut_at = (piece.length // 2) // chunk * chunk
    body_len = min(chunk, piece.length - case.cut_at)
    case.sent_before_cut = int(body_len * case.fraction)
    fd = os.open(source, os.O_RDONLY)
    silent: socket.socket | None = None
    start = time.perf_counter()
    try:
        with RelayClient(server.url, server.tokens.upload) as client:
            offset = client.create_upload(piece.blob_id, piece.length).offset
            while offset < case.cut_at:
                data = _pread(fd, piece.start + offset, min(chunk, case.cut_at - offset))
                offset = client.append(piece.blob_id, offset, data)
            body = _pread(fd, piece.start + case.cut_at, body_len)
            silent = _cut_patch(
                server, piece.blob_id, case.cut_at, body, case.sent_before_cut, case.how
            )
            cut_time = time.perf_counter()
            _resume_loop(client, fd, piece, chunk, case, cut_time)
            case.sent = client.bytes_sent + case.sent_before_cut
    finally:
        os.close(fd)
        if silent is not None:
            silent.close()
    case.wall_s = time.perf_counter() - start
    cleaner.check_stored(server, [piece], bare=False)
    cleaner.remove(server, [piece])
    return case


# ---------------------------------------------------------------- HQ listing (info)


def list_all(server: ServerProcess) -> tuple[int, int, float]:
    """Every blob via GET /v1/blobs pages of 1000 (HQ token): (blobs, pages, seconds)."""
    import httpx

    headers = {"Authorization": f"Bearer {server.tokens.hq}"}
    count = pages = 0
    after: str | None = None
    start = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        while True:
            params = {"limit": "1000"} | ({"after": after} if after else {})
            page = http.get("/v1/blobs", params=params).json()
            pages += 1
            count += len(page["blobs"])
            if page["blobs"]:
                after = page["blobs"][-1]["id"]
            if not page["more"]:
                break
    return count, pages, time.perf_counter() - start


# ---------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _range(values: Sequence[float], fmt: str) -> str:
    if len(values) < 2:
        return ""
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def _ms(values: Sequence[float], q: float) -> str:
    from bench.store_report import percentile

    return f"{percentile(values, q) * 1000:.2f}" if values else "-"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _server_sum(group: list[dict[str, Any]], key: str, scale: float, fmt: str) -> str:
    """``key`` summed over the runs of a case, times ``scale``; "-" if not measured."""
    values = [r[key] for r in group]
    if any(v is None for v in values):
        return "-"
    return f"{sum(values) * scale:{fmt}}"


def _small_table(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("path", "clients", "uploads/s", "range", "p50 ms", "p95 ms", "max ms", "MB/s",
         "vs bare", "server CPU ms/upload", "fsyncs/upload", "fsync ms/upload",
         "store lock held ms/upload", "lock wait ms/upload"),
    ]  # fmt: skip
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["clients"], r["case"]), []).append(r)
    for (clients, case), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        rates = [r["uploads"] / r["wall_s"] for r in group]
        bare = groups.get((clients, SMALL_BARE), [])
        bare_rate = _median([r["uploads"] / r["wall_s"] for r in bare])
        lat = [t for r in group for t in r["latencies"]]
        per = 1 / sum(r["uploads"] for r in group)
        locked = case not in (SMALL_BARE, SMALL_SERVE)
        rows.append(
            (
                case,
                str(clients),
                f"{_median(rates):.0f}",
                _range(rates, ".0f"),
                _ms(lat, 50),
                _ms(lat, 95),
                f"{max(lat) * 1000:.1f}",
                f"{_median(rates) * SMALL_BYTES / MB:.2f}",
                f"{_median(rates) / bare_rate:.0%}" if bare_rate else "",
                _server_sum(group, "server_cpu_s", per * 1000, ".2f"),
                _server_sum(group, "fsyncs", per, ".1f"),
                _server_sum(group, "fsync_s", per * 1000, ".2f"),
                _server_sum(group, "lock_held_s", per * 1000, ".2f") if locked else "-",
                _server_sum(group, "lock_wait_s", per * 1000, ".2f") if locked else "-",
            )
        )
    return rows


def _large_table(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("path", "clients x size", "requests", "MB/s", "range", "slowest client s",
         "vs bare", "server CPU s", "fsyncs", "fsync s", "store lock held s",
         "relay peak RSS MiB", "RSS before"),
    ]  # fmt: skip
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["case"], []).append(r)
    bare = next((g for label, g in groups.items() if label.startswith("bare")), [])
    bare_rate = _median([r["bytes"] / MB / r["wall_s"] for r in bare])
    for label, group in groups.items():
        rates = [r["bytes"] / MB / r["wall_s"] for r in group]
        first = group[0]
        each = first["bytes"] // first["clients"]
        per_run = 1 / len(group)
        rows.append(
            (
                label,
                f"{first['clients']} x {size_label(each)}",
                str(first["requests"]),
                f"{_median(rates):.1f}",
                _range(rates, ".0f"),
                f"{_median([max(r['client_s']) for r in group]):.2f}",
                f"{_median(rates) / bare_rate:.0%}" if bare_rate else "",
                _server_sum(group, "server_cpu_s", per_run, ".2f"),
                _server_sum(group, "fsyncs", per_run, ".0f"),
                _server_sum(group, "fsync_s", per_run, ".2f"),
                _server_sum(group, "lock_held_s", per_run, ".3f"),
                _mib(max(r["peak_rss_kib"] for r in group)),
                _mib(first["rss_before_kib"]),
            )
        )
    return rows


def _resume_table(cases: list[ResumeCase]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("chunk", "cut after", "how", "blob bytes", "bytes sent", "resent", "resent %",
         "lost in the cut", "sent to 409s", "409s", "resume s", "bare PUT would resend"),
    ]  # fmt: skip
    for c in cases:
        resent = c.sent - c.size
        rows.append(
            (
                size_label(c.chunk),
                f"{c.fraction:.0%} of a chunk ({c.sent_before_cut:,} B)",
                c.how,
                f"{c.size:,}",
                f"{c.sent:,}",
                f"{resent:,}",
                f"{resent / c.size:.3%}",
                f"{c.sent_before_cut - c.stored_after_cut:,}",
                f"{c.sent_to_409:,}",
                str(c.conflicts),
                f"{c.resume_s:.2f}",
                f"{c.cut_at + c.sent_before_cut:,}",
            )
        )
    return rows


def _print_report(
    header: str, results: dict[str, Any], args: argparse.Namespace, wall: float
) -> None:
    from bench.hq_import_bench import _table

    print(header)
    print(
        "Loopback, one server process (uvicorn + the real relay app + PUT /bare), clients are "
        "threads here, each with its own keep-alive connection. MB = 10^6 bytes of blob per "
        f"wall second. Median of {args.repeat} run(s) (range shown), relay and bare "
        "alternating which goes first. Server CPU, fsyncs (counted inside the server) and "
        "peak RSS (VmHWM, reset before each case) are of the server process."
    )
    print()
    if results["small"]:
        print(
            f"1. Small bundles: {SMALL_BYTES} random bytes each, {args.small_count} per client; "
            "latency per complete upload (relay: POST + PATCH; bare: one PUT)."
        )
        print(_table(_small_table(results["small"])))
        print()
        for line in results["small_notes"]:
            print(line)
        print()
    if results["large"]:
        print(
            f"2. One {size_label(args.large_mib * MIB)} blob; relay: POST then PATCHes of the "
            "chunk named, each written and fsynced before the answer; bare: one streamed PUT "
            "(Content-Length, 1 MiB blocks from the client)."
        )
        print(_table(_large_table(results["large"])))
        print()
    if results["parallel"]:
        print(
            f"3. The same {size_label(args.large_mib * MIB)} as {args.clients} blobs uploaded "
            "at once, one client each (aggregate MB/s: all bytes over the wall time until the "
            "last finished)."
        )
        print(_table(_large_table(results["parallel"])))
        print()
    if results["resume"]:
        print(
            "4. Resuming: the PATCH holding the blob's middle is cut after the share of its body "
            "shown; then wait, HEAD and go on as sync push does (RelayClient; Backoff waits with "
            "the jitter at its mean: 0.25 s, 0.5 s, 1 s, ... up to 15 s). Bytes sent = "
            "every upload body byte handed to the network; resent = sent - blob size. "
            "'bare PUT would resend' = what a non-resumable upload restarts (computed)."
        )
        print(_table(_resume_table(results["resume"])))
        print()
    other: list[tuple[str, ...]] = [("other (info)", "value")]
    for label, value in results["other"]:
        other.append((label, value))
    other.append(("benchmark wall time", f"{wall:.0f} s"))
    other.append(("1-min load at the end (start: first line)", f"{os.getloadavg()[0]:.2f}"))
    print(_table(other, numbers_right=False))


# ---------------------------------------------------------------- the run


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    bench: ServerProcess | None = None
    plain: ServerProcess | None = None
    results: dict[str, Any] = field(
        default_factory=lambda: {
            "small": [],
            "small_notes": [],
            "large": [],
            "parallel": [],
            "resume": [],
            "other": [],
        }
    )

    def servers(self) -> tuple[ServerProcess, ServerProcess]:
        assert self.bench is not None
        assert self.plain is not None
        return self.bench, self.plain

    def start_servers(self) -> None:
        data, bare = self.work / "bench-relay", self.work / "bare"
        bare.mkdir()
        tokens = init_relay(data)
        port = free_port()
        argv = [sys.executable, "-m", "bench.relay_bench", "serve"]
        argv += ["--data", str(data), "--bare", str(bare), "--port", str(port)]
        self.bench = ServerProcess(
            "bench server", argv, self.work / "bench-server.log", tokens, port, bench=True
        )
        self.bench.start()
        data = self.work / "plain-relay"
        tokens = init_relay(data)
        port = free_port()
        argv = [sys.executable, "-m", "fieldapp", "relay", "serve"]
        argv += ["--data", str(data), "--port", str(port)]
        self.plain = ServerProcess(
            "fieldapp relay serve", argv, self.work / "relay-serve.log", tokens, port, bench=False
        )
        self.plain.start()
        rss = f"{_mib(self.bench.rss_kib())} / {_mib(self.plain.rss_kib())} MiB"
        self.results["other"].append(("server RSS at start: bench server / relay serve", rss))

    def small(self) -> None:
        bench, plain = self.servers()
        counts = [1, self.args.clients] if self.args.clients > 1 else [1]
        for clients in counts:
            for round_ in range(self.args.repeat):
                order = [SMALL_RELAY, SMALL_BARE, SMALL_CLIENT, SMALL_SERVE]
                if round_ % 2:
                    order.reverse()
                for case in order:
                    server = plain if case == SMALL_SERVE else bench
                    r = run_small(case, server, clients, self.args.small_count)
                    self.results["small"].append(r)
                    _log(
                        f"[small] {clients} client(s), {case}: "
                        f"{r['uploads'] / r['wall_s']:.0f} uploads/s"
                    )
        for clients in counts:
            relay = [
                r
                for r in self.results["small"]
                if r["case"] == SMALL_RELAY and r["clients"] == clients
            ]
            post = [t for r in relay for t in r["post_latencies"]]
            total = [t for r in relay for t in r["latencies"]]
            patch = [
                a - b
                for r in relay
                for a, b in zip(r["latencies"], r["post_latencies"], strict=True)
            ]
            self.results["small_notes"].append(
                f"relay, {clients} client(s): POST p50 {_ms(post, 50)} / p95 {_ms(post, 95)} ms, "
                f"PATCH p50 {_ms(patch, 50)} / p95 {_ms(patch, 95)} ms "
                f"(complete upload p50 {_ms(total, 50)} ms)."
            )
        count, pages, seconds = list_all(bench)
        expected = sum(
            r["uploads"]
            for r in self.results["small"]
            if r["case"] != SMALL_BARE and r["case"] != SMALL_SERVE
        )
        bare = sum(1 for p in (self.work / "bare").iterdir() if not p.name.startswith("."))
        expected_bare = sum(r["uploads"] for r in self.results["small"] if r["case"] == SMALL_BARE)
        if count != expected or bare != expected_bare:
            raise UnexpectedAnswer(
                f"the bench server holds {count} blobs (expected {expected}) and {bare} bare "
                f"files (expected {expected_bare})"
            )
        self.results["other"].append(
            (
                f"HQ listing of the {count} small blobs (GET /v1/blobs, {pages} pages of 1000)",
                f"{seconds * 1000:.0f} ms, {seconds / pages * 1000:.1f} ms per page",
            )
        )
        for p in (self.work / "bare").iterdir():
            p.unlink()

    def large(self, source: Path) -> None:
        bench, plain = self.servers()
        whole = _hash_slices(source, 1)
        cleaner = Cleaner(bench, self.work / "bare")
        chunk = self.args.chunk_mib * MIB
        chunks = [chunk] + [c for c in (PUSH_CHUNK, RELAY_MAX_CHUNK) if c != chunk]
        for round_ in range(self.args.repeat):
            cases: list[tuple[str, ServerProcess, int | None]] = [
                (f"relay: PATCH {size_label(c)} chunks", bench, c) for c in chunks
            ]
            cases.append(("bare: one PUT, streamed body", bench, None))
            cases.append(
                (f"relay: PATCH {size_label(chunk)} chunks, `fieldapp relay serve`", plain, chunk)
            )
            if round_ % 2:
                cases.reverse()
            for label, server, c in cases:
                r = run_large(label, server, source, whole, c, cleaner)
                self.results["large"].append(r)
                _log(f"[large] {label}: {r['bytes'] / MB / r['wall_s']:.1f} MB/s")

    def parallel(self, source: Path) -> None:
        bench, _ = self.servers()
        cleaner = Cleaner(bench, self.work / "bare")
        chunk = self.args.chunk_mib * MIB
        pieces = _hash_slices(source, self.args.clients)
        for round_ in range(self.args.repeat):
            order: list[tuple[str, int | None]] = [
                (f"relay: PATCH {size_label(chunk)} chunks", chunk),
                ("bare: one PUT each, streamed body", None),
            ]
            if round_ % 2:
                order.reverse()
            for label, c in order:
                r = run_large(label, bench, source, pieces, c, cleaner)
                self.results["parallel"].append(r)
                _log(f"[parallel] {label}: {r['bytes'] / MB / r['wall_s']:.1f} MB/s")

    def resume(self, source: Path) -> None:
        bench, _ = self.servers()
        (piece,) = _hash_slices(source, 1)
        cleaner = Cleaner(bench, self.work / "bare")
        chunks = sorted({PUSH_CHUNK, self.args.chunk_mib * MIB})
        plan = [
            (c, f, how) for c in chunks for f in CUT_FRACTIONS for how in (CUT_CLOSE, CUT_RESET)
        ]
        if not self.args.no_silent:
            plan += [(c, 0.5, CUT_STALL) for c in chunks]
        for c, fraction, how in plan:
            case = run_resume(
                bench, source, piece, ResumeCase(c, fraction, how, piece.length), cleaner
            )
            self.results["resume"].append(case)
            _log(
                f"[resume] {size_label(c)} chunks, cut after {fraction:.0%} ({how}): "
                f"resent {case.sent - case.size:,} B, resumed after {case.resume_s:.2f} s"
            )

    def stop(self) -> None:
        for server in (self.bench, self.plain):
            if server is not None:
                server.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay_bench",
        description="Relay upload throughput on loopback beside a bare upload; resume cost.",
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--small-count", type=int, default=500, help="small blobs per client (default 500; 0 skips)"
    )
    parser.add_argument(
        "--large-mib", type=int, default=256, help="large upload in MiB (default 256; 0 skips)"
    )
    parser.add_argument(
        "--chunk-mib", type=int, default=8, help="PATCH chunk for the large upload (default 8)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument(
        "--no-silent",
        action="store_true",
        help="skip the silent-cut resume cases (each waits the relay's takeover time, about 2 s)",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which cases to run, comma-separated (default {','.join(CASES)})",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/var/tmp"),  # noqa: S108 -- on disk, not tmpfs; a private subfolder
        help="where the temporary folder goes (default /var/tmp: a disk, not tmpfs)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not args.cases or any(c not in CASES for c in args.cases):
        parser.error(f"--cases takes some of {','.join(CASES)}")
    if args.clients < 1 or args.repeat < 1 or args.small_count < 0 or args.large_mib < 0:
        parser.error("--clients and --repeat must be at least 1, the counts not negative")
    if not 1 <= args.chunk_mib <= RELAY_MAX_CHUNK // MIB:
        parser.error(f"--chunk-mib must be 1..{RELAY_MAX_CHUNK // MIB} (the relay's limit)")
    if args.large_mib and args.large_mib * MIB < 2 * max(args.chunk_mib * MIB, PUSH_CHUNK):
        parser.error("--large-mib must be at least twice the chunk")
    return args


def _serve_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_bench serve")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bare", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(args.data, args.bare, args.port)


def _header(args: argparse.Namespace, work: Path) -> str:
    """The machine line: CPU, Python, uvicorn, the filesystem and its fsync cost, the load."""
    import uvicorn

    from bench.hq_import_bench import filesystem
    from bench.report import machine
    from bench.store_report import fsync_ms

    fs = filesystem(work)
    if fs.startswith("tmpfs"):
        _log(f"[warning] {work} is on tmpfs: the relay's store lives in RAM")
    info = machine(None)
    return (
        f"{info['cpu']}, {info['cores']} cores | Python {info['python']} | uvicorn "
        f"{uvicorn.__version__} (h11) | {info['os']} | {args.work_dir}: {fs}, 4 KiB "
        f"write+fsync {fsync_ms(work):.2f} ms | 1-min load at start {info['load_1min']}"
    )


def _run_cases(run: Bench, args: argparse.Namespace, work: Path) -> None:
    run.start_servers()
    if args.small_count and "small" in args.cases:
        run.small()
    large = args.large_mib * MIB
    if large and {"large", "parallel", "resume"} & set(args.cases):
        source = work / "source.bin"
        _log(f"[setup] writing {size_label(large)} of random data")
        write_random(source, large)
        if "large" in args.cases:
            run.large(source)
        if "parallel" in args.cases and args.clients > 1:
            run.parallel(source)
        if "resume" in args.cases:
            run.resume(source)
        source.unlink()


def _write_json(path: Path, header: str, run: Bench, wall_s: float) -> None:
    doc = {
        "machine": header,
        "args": {k: str(v) for k, v in vars(run.args).items()},
        "results": {**run.results, "resume": [vars(c) for c in run.results["resume"]]},
        "wall_s": wall_s,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        return _serve_main(argv[1:])
    args = _parse_args(argv)
    wall = time.perf_counter()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fieldapp-relay-bench-", dir=args.work_dir))
    run = Bench(args, work)
    try:
        # the source, the relay's copy and the bare copy (deleted after each case), margin
        need = 3 * args.large_mib * MIB + 2 * args.clients * args.small_count * 64_000
        need += 128 * MIB
        free = shutil.disk_usage(work).free
        if free < need:
            print(f"bench: {work} has {free / MB:.0f} MB free, wants {need / MB:.0f} MB")
            return 1
        header = _header(args, work)
        _log(header)
        _run_cases(run, args, work)
    finally:
        run.stop()
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    wall_s = time.perf_counter() - wall
    _print_report(header, run.results, args, wall_s)
    if args.json is not None:
        _write_json(args.json, header, run, wall_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
