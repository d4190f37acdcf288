"""Fixed, public key material for the benchmark. It never protects real data."""

from __future__ import annotations

import hashlib

from crypto.keys import BoxPrivateKey, DeviceSigningKey
from crypto.secretstream import HEADER_BYTES


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"fieldapp bench/" + label.encode()).digest()


HQ_BOX = BoxPrivateKey(_seed("hq-box"))
DEVICE = DeviceSigningKey(_seed("device"))
STREAM_KEY = _seed("raw-stream-key")
STREAM_HEADER = _seed("raw-stream-header")[:HEADER_BYTES]
