"""Deterministic generator of the bundle test vectors in ``tests/vectors/bundles/``.

Run ``python -m tests.vectors.bundle_vectors`` to rewrite them; the test suite
regenerates them in memory and compares every byte, so a change to the format
cannot go unnoticed. Keys and all randomness come from SHAKE-256 over fixed
labels, so anyone can rebuild the same bytes (docs/bundle-format.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crypto import bundle
from crypto.keys import SIGNATURE_BYTES, BoxPrivateKey, BoxPublicKey, DeviceSigningKey, SignPurpose

OUT = Path(__file__).parent / "bundles"
ARABIC = "شهد الشاهد أن المعتقلين نُقلوا ليلاً من الحاجز إلى مكان مجهول.".encode()


class DeterministicRandom:
    """SHAKE-256(label) read as a stream: the same label gives the same draws."""

    def __init__(self, label: str) -> None:
        self._stream = hashlib.shake_256(b"fieldapp test vectors/" + label.encode()).digest(4096)
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        out = self._stream[self._pos : self._pos + n]
        if len(out) != n:
            raise RuntimeError("deterministic stream exhausted")
        self._pos += n
        return out


def seed(label: str) -> bytes:
    return hashlib.shake_256(b"fieldapp test keys/" + label.encode()).digest(32)


HQ_BOX = BoxPrivateKey(seed("hq box 1"))
OTHER_HQ_BOX = BoxPrivateKey(seed("hq box other"))
DEVICE = DeviceSigningKey(seed("device 1"))
OTHER_DEVICE = DeviceSigningKey(seed("device other"))


def payload(length: int, label: str = "payload") -> bytes:
    return hashlib.shake_256(label.encode()).digest(length) if length else b""


def seal(
    data: bytes,
    *,
    label: str,
    recipient: BoxPublicKey = HQ_BOX.public_key,
    device: DeviceSigningKey = DEVICE,
) -> bytes:
    out = io.BytesIO()
    bundle._seal(
        io.BytesIO(data), out, recipient=recipient, device=device, rng=DeterministicRandom(label)
    )
    return out.getvalue()


def open_inner(blob: bytes, key: BoxPrivateKey = HQ_BOX) -> tuple[bytes, bytes]:
    """(signed fields, signature) of a bundle's header, for building forgeries."""
    import nacl.bindings as sodium

    sealed = blob[bundle.PREFIX_BYTES : bundle.HEADER_TOTAL_BYTES]
    inner = sodium.crypto_box_seal_open(sealed, key.public_key.raw, key.secret_bytes())
    return inner[:-SIGNATURE_BYTES], inner[-SIGNATURE_BYTES:]


def reseal(
    blob: bytes,
    *,
    label: str,
    fields: bytes | None = None,
    signature: bytes | None = None,
    signer: DeviceSigningKey | None = None,
    recipient: BoxPublicKey = HQ_BOX.public_key,
    opener: BoxPrivateKey = HQ_BOX,
) -> bytes:
    """The bundle with its header rebuilt: new fields, signature or signer, resealed."""
    old_fields, old_signature = open_inner(blob, opener)
    fields = old_fields if fields is None else fields
    prefix = blob[: bundle.PREFIX_BYTES]
    if signer is not None:
        signature = signer.sign(SignPurpose.BUNDLE_HEADER, prefix + fields)
    signature = old_signature if signature is None else signature
    sealed = bundle._seal_to(recipient, fields + signature, DeterministicRandom(label))
    return prefix + sealed + blob[bundle.HEADER_TOTAL_BYTES :]


def with_fields(blob: bytes, **changes: object) -> bytes:
    """The signed fields of ``blob``'s header with some of them replaced."""
    names = (
        "bundle_id",
        "hq_key_id",
        "device",
        "payload_key",
        "stream_header",
        "plaintext_length",
        "padded_length",
        "chunk_size",
        "payload_sha256",
    )
    values = dict(zip(names, bundle._SIGNED_FIELDS.unpack(open_inner(blob)[0]), strict=True))
    values.update(changes)
    return bundle._SIGNED_FIELDS.pack(*(values[n] for n in names))


@dataclass
class Vector:
    name: str
    description: str
    expect: str  # "ok" or a BundleReason value
    build: Callable[[], bytes]
    payload: bytes | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _flip(blob: bytes, offset: int) -> bytes:
    out = bytearray(blob)
    out[offset] ^= 0x01
    return bytes(out)


def vectors() -> list[Vector]:
    two_chunks = payload(bundle.CHUNK_BYTES + 1, "two chunks")
    return [
        Vector(
            "empty",
            "empty payload: one empty FINAL chunk",
            "ok",
            lambda: seal(b"", label="empty"),
            b"",
        ),
        Vector(
            "arabic",
            "a short Arabic statement (UTF-8)",
            "ok",
            lambda: seal(ARABIC, label="arabic"),
            ARABIC,
        ),
        Vector(
            "two-chunks",
            "65537 bytes: a full chunk, then a padded FINAL chunk",
            "ok",
            lambda: seal(two_chunks, label="two chunks"),
            two_chunks,
        ),
        Vector(
            "no-matching-key",
            "sealed to a different HQ box key",
            "no-matching-key",
            lambda: seal(ARABIC, label="other hq", recipient=OTHER_HQ_BOX.public_key),
        ),
        Vector(
            "bad-signature",
            "the header signature has one bit flipped",
            "signature",
            lambda: reseal(
                seal(ARABIC, label="arabic"),
                label="bad sig",
                signature=_flip(open_inner(seal(ARABIC, label="arabic"))[1], 0),
            ),
        ),
        Vector(
            "foreign-signer",
            "header names device 1 but device 2 signed it",
            "signature",
            lambda: reseal(seal(ARABIC, label="arabic"), label="foreign", signer=OTHER_DEVICE),
        ),
        Vector(
            "resealed",
            "a valid header re-sealed to another HQ box key",
            "header",
            lambda: reseal(
                seal(ARABIC, label="arabic"), label="resealed", recipient=OTHER_HQ_BOX.public_key
            ),
            extra={"open_with": "other hq box"},
        ),
        Vector(
            "bad-padding-claim",
            "signed header whose padded length is not Padmé's",
            "header",
            lambda: reseal(
                seal(ARABIC, label="arabic"),
                label="bad pad",
                fields=with_fields(seal(ARABIC, label="arabic"), padded_length=len(ARABIC) + 1),
                signer=DEVICE,
            ),
        ),
        Vector(
            "payload-flip",
            "one bit flipped in the payload ciphertext",
            "payload",
            lambda: _flip(seal(ARABIC, label="arabic"), bundle.HEADER_TOTAL_BYTES + 3),
        ),
        Vector(
            "truncated",
            "the last byte of the payload removed",
            "payload",
            lambda: seal(ARABIC, label="arabic")[:-1],
        ),
        Vector(
            "bad-version",
            "format version 2",
            "format",
            lambda: (
                bundle.PREFIX.pack(bundle.MAGIC, 2, 0)
                + seal(ARABIC, label="arabic")[bundle.PREFIX_BYTES :]
            ),
        ),
    ]


def render() -> dict[str, bytes]:
    """Every vector file's name and exact bytes."""
    files: dict[str, bytes] = {}
    index = []
    for v in vectors():
        blob = v.build()
        files[f"{v.name}.bundle"] = blob
        entry = {
            "name": v.name,
            "description": v.description,
            "file": f"{v.name}.bundle",
            "expect": v.expect,
            "bundle_sha256": hashlib.sha256(blob).hexdigest(),
            "open_with": v.extra.get("open_with", "hq box 1"),
        }
        if v.payload is not None:
            entry["payload_sha256"] = hashlib.sha256(v.payload).hexdigest()
            entry["payload_length"] = str(len(v.payload))
            if len(v.payload) <= 1024:
                entry["payload_hex"] = v.payload.hex()
        index.append(entry)
    keys = {
        "note": "Keys are SHAKE-256('fieldapp test keys/' + label)[:32]; randomness for "
        "each vector is SHAKE-256('fieldapp test vectors/' + vector label) read in order: "
        "bundle id (16), payload key (32), secretstream header (24), sealed-box "
        "ephemeral seed (32). Generated by tests/vectors/bundle_vectors.py.",
        "hq box 1": {"private": HQ_BOX.secret_bytes().hex(), "public": HQ_BOX.public_key.raw.hex()},
        "other hq box": {
            "private": OTHER_HQ_BOX.secret_bytes().hex(),
            "public": OTHER_HQ_BOX.public_key.raw.hex(),
        },
        "device 1": {"seed": DEVICE.secret_bytes().hex(), "public": DEVICE.public_key.raw.hex()},
        "device 2": {
            "seed": OTHER_DEVICE.secret_bytes().hex(),
            "public": OTHER_DEVICE.public_key.raw.hex(),
        },
    }
    doc = {"format": "fieldapp-bundle-vectors", "version": 1, "keys": keys, "vectors": index}
    files["index.json"] = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    return files


def write() -> None:
    OUT.mkdir(exist_ok=True)
    for name, data in render().items():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    write()
