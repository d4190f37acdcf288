"""A real relay process on a free loopback port, for every test that talks to a relay.

``RelayProcess.create(folder)`` runs ``fieldapp relay init`` (optionally with
``--tls`` and settings overrides written into ``relay.json``); ``start()``
runs ``fieldapp relay serve`` as ``python -m tests.cheapcli`` in a subprocess
and waits for ``/v1/health``. ``kill()`` is SIGKILL, ``stop()`` SIGTERM,
``restart()`` starts again on the same data folder and port. Everything the
process prints goes to ``output()``.

    with running_relay(tmp_path) as relay:
        url, upload_token, hq_token, data_dir, pin = relay
        with relay.client(relay.hq_token) as http:
            http.get("/v1/blobs")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "tests.cheapcli")
START_TIMEOUT_S = 30.0
_TOKEN_LINE = re.compile(r"^(upload token|hq token|tls pin): (\S+)$", re.MULTILINE)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``fieldapp ARGS`` (cheap KDF) to completion; never raises on failure."""
    return subprocess.run(
        [*CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def tls_context(cert: Path) -> ssl.SSLContext:
    """A client context that trusts exactly the relay's self-signed certificate."""
    context = ssl.create_default_context(cafile=str(cert))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # as Python 3.13 does by default
    return context


@dataclass
class RelayProcess:
    """One relay data folder and, when started, the ``relay serve`` process on it."""

    data_dir: Path
    upload_token: str
    hq_token: str
    pin: str | None
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    # ------------------------------------------------------------ set-up

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        tls: bool = False,
        hostname: str = "localhost",
        settings: dict[str, Any] | None = None,
    ) -> RelayProcess:
        """``relay init`` a new data folder ``folder/relay-data``; not started yet."""
        data_dir = folder / "relay-data"
        args: list[str | Path] = ["relay", "init", "--data", data_dir]
        if tls:
            args += ["--tls", "--hostname", hostname]
        done = relay_cli(*args)
        if done.returncode != 0:
            raise RuntimeError(f"relay init failed: {done.stdout}{done.stderr}")
        found = dict(_TOKEN_LINE.findall(done.stdout))
        relay = cls(data_dir, found["upload token"], found["hq token"], found.get("tls pin"))
        if settings:
            relay.update_settings(settings)
        return relay

    def update_settings(self, changes: dict[str, Any]) -> None:
        """Change keys of ``relay.json`` (takes effect at the next start)."""
        path = self.data_dir / "relay.json"
        document = json.loads(path.read_text())
        document["settings"].update(changes)
        path.write_text(json.dumps(document))

    def __iter__(self) -> Iterator[Any]:
        """``url, upload_token, hq_token, data_dir, pin = relay``."""
        return iter((self.url, self.upload_token, self.hq_token, self.data_dir, self.pin))

    @property
    def tls(self) -> bool:
        return self.pin is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "relay-output.log"

    def verify(self) -> ssl.SSLContext | bool:
        """What to pass as httpx's ``verify``: the relay's own certificate with TLS."""
        return tls_context(self.cert) if self.tls else True

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on the relay, sending ``token`` as the bearer token if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(
            base_url=self.url, headers=headers, verify=self.verify(), timeout=30, **kwargs
        )

    # ------------------------------------------------------------ process

    def start(self) -> None:
        """Run ``relay serve`` and wait until ``/v1/health`` answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the relay is running already")
        args = [*CLI, "relay", "serve", "--data", str(self.data_dir)]
        args += ["--host", self.host, "--port", str(self.port)]
        if self.tls:
            args.append("--tls")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=log)
        self.starts += 1
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the relay exited early:\n{self.output()}")
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.Client(verify=self.verify(), timeout=2) as http,
            ):
                if http.get(f"{self.url}/v1/health").status_code == 200:
                    return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the relay did not answer within {START_TIMEOUT_S}s:\n{self.output()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def restart(self) -> None:
        """Kill the process if it runs, then start a new one on the same folder and port."""
        self.kill()
        self.start()

    def output(self) -> str:
        """Everything the relay processes printed (stdout and stderr)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode("utf-8", "replace")


@contextlib.contextmanager
def running_relay(
    folder: Path,
    *,
    tls: bool = False,
    hostname: str = "localhost",
    settings: dict[str, Any] | None = None,
) -> Iterator[RelayProcess]:
    """A started relay on a new data folder under ``folder``; killed on exit."""
    relay = RelayProcess.create(folder, tls=tls, hostname=hostname, settings=settings)
    try:
        relay.start()
        yield relay
    finally:
        relay.kill()


def store_snapshot(data_dir: Path) -> dict[str, str]:
    """Every file under ``data_dir`` (relative path -> SHA-256), and every folder (-> "dir")."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            found[os.path.relpath(Path(root) / name, data_dir)] = "dir"
        for name in files:
            path = Path(root) / name
            found[os.path.relpath(path, data_dir)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
