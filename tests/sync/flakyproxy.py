"""A TCP proxy for the tests that makes a link as bad as a failing 3G one, reproducibly.

``FlakyProxy(target_port, seed=...)`` listens on a free loopback port and
forwards each connection to the target. Each new connection draws its fate from
a ``random.Random(seed)``, in connection order, each fault with its own chance:

- ``drop``: accepted, then reset (RST) before a byte is forwarded;
- ``delay``: forwarded after a pause;
- ``cut_up``: reset after some bytes from the client (a request body cut
  mid-way: the relay sees a truncated PATCH);
- ``cut_down``: reset after some bytes from the relay (an answer lost after the
  relay acted on the request).

Clients keep connections alive, so cut points are drawn over a connection's
whole life (up to ``max_up`` client bytes, ``max_down`` relay bytes; by default
every connection dies within ``max_up`` bytes, as on a link that keeps dropping), and
forwarding pauses now and then (``stall_rate``). ``stats`` counts what was
planned and what fired (``cuts``), so a test can show the faults were real.
Threads only; ``close()`` stops everything.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Fate:
    drop: bool = False
    delay: float = 0.0
    up_limit: int | None = None  # client bytes forwarded before a reset
    down_limit: int | None = None  # relay bytes forwarded before a reset


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', as on a dropped link.

    shutdown(SHUT_RD) first wakes a thread blocked reading this socket: until it
    returns, the kernel would keep the socket open and send nothing.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class FlakyProxy:
    def __init__(
        self,
        target_port: int,
        *,
        seed: int,
        target_host: str = "127.0.0.1",
        drop_rate: float = 0.1,
        delay_rate: float = 0.15,
        cut_up_rate: float = 1.0,
        cut_down_rate: float = 0.25,
        max_delay: float = 0.3,
        max_up: int = 2 * 1024 * 1024,
        max_down: int = 4000,
        stall_rate: float = 0.02,
    ) -> None:
        self.target = (target_host, target_port)
        self._rng = random.Random(seed)  # noqa: S311 -- a reproducible schedule, not a secret
        self._stalls = random.Random(seed + 1)  # noqa: S311 -- apart: threads draw these
        self._lock = threading.Lock()
        self.rates = {
            "drop": drop_rate,
            "delay": delay_rate,
            "cut_up": cut_up_rate,
            "cut_down": cut_down_rate,
        }
        self.max_delay = max_delay
        self.max_up = max_up
        self.max_down = max_down
        self.stall_rate = stall_rate
        self.stats: Counter[str] = Counter()
        self.fates: list[Fate] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FlakyProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            _reset(s)
        self._thread.join(timeout=5)

    def _next_fate(self) -> Fate:
        rng, rates = self._rng, self.rates
        with self._lock:
            drawn = {kind: rng.random() < rate for kind, rate in rates.items()}
            fate = Fate(
                drop=drawn["drop"],
                delay=rng.uniform(0.02, self.max_delay) if drawn["delay"] else 0.0,
                up_limit=rng.randint(1, self.max_up) if drawn["cut_up"] else None,
                down_limit=rng.randint(1, self.max_down) if drawn["cut_down"] else None,
            )
            self.fates.append(fate)
            self.stats["connections"] += 1
            self.stats.update(kind for kind, hit in drawn.items() if hit)
            return fate

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update(socks)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        fate = self._next_fate()
        if fate.drop:
            self._untrack(client)
            _reset(client)
            return
        time.sleep(fate.delay)
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            self._untrack(client)
            _reset(client)
            return
        self._track(upstream)
        done = threading.Event()
        finished = [0]  # directions ended in order; both ended: the connection is over
        up_limit, down_limit = fate.up_limit, fate.down_limit
        threads = [
            threading.Thread(
                target=self._pump, args=(client, upstream, up_limit, done, finished), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(upstream, client, down_limit, done, finished), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        done.wait()
        for s in (client, upstream):
            _reset(s)
        for t in threads:
            t.join(timeout=5)
        self._untrack(client, upstream)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        limit: int | None,
        done: threading.Event,
        finished: list[int],
    ) -> None:
        sent = 0
        try:
            while not done.is_set():
                data = src.recv(65536)
                if not data:
                    # An orderly end: pass the half-close on; over when both sides ended.
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    with self._lock:
                        finished[0] += 1
                        if finished[0] == 2:
                            done.set()
                    return
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    self._count("cuts")
                    done.set()
                    return
                with self._lock:
                    stall = self._stalls.random() < self.stall_rate
                if stall:
                    time.sleep(0.02)
                dst.sendall(data)
                sent += len(data)
                self._count("bytes", len(data))
        except OSError:
            done.set()
