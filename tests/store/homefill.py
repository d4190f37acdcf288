"""A home with testimonies and attachments, and the check that every one is still there.

Used by the rekey and passphrase tests: what a key change must never lose.
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fieldapp.domain import Place, Testimony
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import create_home, unlock_home
from tests.store.conftest import CHEAP, PASSPHRASE


@dataclass(frozen=True)
class Filled:
    """What was put in: each record's narrative and its attachments' SHA-256."""

    recovery_code: str
    narratives: dict[str, str]
    attachments: dict[str, list[str]]


def fill(home: Home, scratch: Path, *, records: int = 12, seed: int = 7) -> Filled:
    """Create ``home`` with ``records`` testimonies; every third has an attachment."""
    rng = random.Random(seed)  # noqa: S311 -- test content, not a secret
    unlocked, code = create_home(home, PASSPHRASE, kdf=CHEAP)
    narratives: dict[str, str] = {}
    attachments: dict[str, list[str]] = {}
    scratch.mkdir(parents=True, exist_ok=True)
    with FieldStore.open(unlocked) as store:
        for i in range(records):
            attach = []
            if i % 3 == 0:
                source = scratch / f"attachment-{i}.bin"
                source.write_bytes(rng.randbytes(rng.randrange(1, 200_000)))
                attach = [source]
            narrative = f"record {i} " + "شهادة " * rng.randrange(1, 4000)
            saved = store.create(
                Testimony(
                    recorded_by=store.recorded_by,
                    taken_at=datetime(2016, 12, 10, 14, 30, tzinfo=UTC),
                    taken_place=Place("Aleppo"),
                    language="ar",
                    narrative=narrative,
                    witness_code=store.new_witness_code(),
                ),
                attach=attach,
            )
            narratives[saved.id] = narrative
            attachments[saved.id] = [hashlib.sha256(p.read_bytes()).hexdigest() for p in attach]
    return Filled(code, narratives, attachments)


def check_everything(home: Home, secret: str, filled: Filled) -> None:
    """Open with ``secret``; every page, record and attachment must be as filled."""
    with FieldStore.open(unlock_home(home, secret)) as store:
        assert store.integrity_problems() == []
        assert store.verify_all() == len(filled.narratives)
        assert {s.id for s in store.page(limit=100_000)} == set(filled.narratives)
        for record_id, narrative in filled.narratives.items():
            testimony = store.get(record_id).testimony
            assert testimony.narrative == narrative
            hashes = []
            for ref in testimony.attachments:
                plain = io.BytesIO()
                store.read_attachment(ref.attachment_id, plain)
                assert hashlib.sha256(plain.getvalue()).hexdigest() == ref.sha256
                hashes.append(ref.sha256)
            assert hashes == filled.attachments[record_id]
