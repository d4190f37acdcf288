"""Append-only, hash-chained, signed revisions of one record.

Every change to a testimony is a revision: its payload (the record's canonical
bytes), chained to the revision before by hash, and signed by the device key.
HQ verifies the whole chain, so it can show years later that a statement was
not altered, and by which device each change was made.

    hash_n = SHA-256("fieldapp/v1/revision" 0x00 || u8 len(record id) || record id
                     || u64 seq || hash_{n-1} || u64 len(payload) || payload)

with ``hash_0`` = 32 zero bytes, ``seq`` counting from 1. The device signs
``hash_n`` with purpose ``revision``. Pure functions, bytes in and out.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from crypto.errors import CryptoError
from crypto.keys import SIGNATURE_BYTES, DeviceSigningKey, DeviceVerifyKey, SignPurpose

GENESIS = bytes(32)
_DOMAIN = b"fieldapp/v1/revision\x00"
MAX_RECORD_ID_BYTES = 64


class RevisionError(CryptoError):
    """A revision chain does not verify: a revision was altered, dropped, reordered or forged."""

    default_message = (
        "A record's revision history does not verify: it was altered or damaged. "
        "Do not trust this record; report it to HQ."
    )

    def __init__(self, seq: int | None = None, message: str | None = None) -> None:
        self.seq = seq
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Revision:
    """One signed revision. ``payload`` is the record's canonical bytes at that point."""

    record_id: str
    seq: int
    parent_hash: bytes
    hash: bytes
    device: DeviceVerifyKey
    signature: bytes
    payload: bytes = field(repr=False)


def revision_hash(record_id: str, seq: int, parent_hash: bytes, payload: bytes) -> bytes:
    """The hash that links revision ``seq`` of ``record_id`` to its parent.

    Raises ValueError for an id, sequence number or parent hash out of range.
    """
    rid = record_id.encode("utf-8")
    if not 0 < len(rid) <= MAX_RECORD_ID_BYTES or seq < 1 or len(parent_hash) != 32:
        raise ValueError("record id, sequence number or parent hash out of range")
    h = hashlib.sha256(_DOMAIN)
    h.update(struct.pack(">B", len(rid)) + rid + struct.pack(">Q", seq) + parent_hash)
    h.update(struct.pack(">Q", len(payload)))
    h.update(payload)
    return h.digest()


def make_revision(
    device: DeviceSigningKey, record_id: str, seq: int, parent_hash: bytes, payload: bytes
) -> Revision:
    """Hash and sign the next revision of ``record_id``.

    Raises ValueError as ``revision_hash``.
    """
    digest = revision_hash(record_id, seq, parent_hash, payload)
    return Revision(
        record_id=record_id,
        seq=seq,
        parent_hash=parent_hash,
        hash=digest,
        device=device.public_key,
        signature=device.sign(SignPurpose.REVISION, digest),
        payload=payload,
    )


def verify_revision(revision: Revision, parent_hash: bytes, expected_seq: int) -> None:
    """Check one revision against the hash of the revision before it.

    Raises RevisionError.
    """
    if revision.seq != expected_seq or revision.parent_hash != parent_hash:
        raise RevisionError(revision.seq)
    try:
        digest = revision_hash(revision.record_id, revision.seq, parent_hash, revision.payload)
    except ValueError as e:
        raise RevisionError(revision.seq) from e
    if digest != revision.hash or len(revision.signature) != SIGNATURE_BYTES:
        raise RevisionError(revision.seq)
    if not revision.device.verify(SignPurpose.REVISION, digest, revision.signature):
        raise RevisionError(revision.seq)


def verify_chain(revisions: Sequence[Revision], record_id: str) -> bytes:
    """Verify a whole chain, oldest first, starting at seq 1; returns the last hash.

    Each revision must be signed by the device key it names; whether those keys
    are trusted (enrolled, or linked by a rotation statement) is the caller's
    decision. Raises RevisionError.
    """
    if not revisions:
        raise RevisionError(None, "A record has no revisions; it cannot be verified.")
    parent = GENESIS
    for expected, revision in enumerate(revisions, start=1):
        if revision.record_id != record_id:
            raise RevisionError(revision.seq)
        verify_revision(revision, parent, expected)
        parent = revision.hash
    return parent
