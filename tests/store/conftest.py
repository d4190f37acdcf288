"""Fixtures for the store: a real home with SQLCipher, cheap Argon2id only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from crypto.kdf import KDF_MINIMUM
from fieldapp.domain import Consent, ConsentScope, IncidentDate, Place, Testimony
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import KdfPolicy, Unlocked, create_home

CHEAP = KdfPolicy(params=KDF_MINIMUM, floor=KDF_MINIMUM)
PASSPHRASE = "correct horse battery staple"
ARABIC = "شهد الشاهد أن المعتقلين نُقلوا ليلاً من الحاجز إلى مكان مجهول."
ALEPPO = timezone(timedelta(hours=3))


class Clock:
    """A clock that moves one minute per call, so timestamps are distinct."""

    def __init__(self) -> None:
        self.now = datetime(2016, 12, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def unlocked(home: Home) -> Unlocked:
    return create_home(home, PASSPHRASE, kdf=CHEAP)[0]


@pytest.fixture
def store(unlocked: Unlocked) -> Iterator[FieldStore]:
    with FieldStore.open(unlocked, clock=Clock()) as s:
        yield s


def make_testimony(store: FieldStore, narrative: str = ARABIC, **changes: object) -> Testimony:
    base = Testimony(
        recorded_by=store.recorded_by,
        taken_at=datetime(2016, 12, 10, 14, 30, tzinfo=ALEPPO),
        taken_place=Place("Aleppo, a hotel room"),
        language="ar",
        narrative=narrative,
        incident_date=IncidentDate.parse("2016-12"),
        incident_place=Place("Bustan al-Qasr crossing"),
        violations=("enforced-disappearance",),
        witness_code=store.new_witness_code(),
        consent=Consent(
            scopes=frozenset({ConsentScope.JUSTICE_MECHANISMS}),
            taken_by="monitor",
            taken_on=date(2016, 12, 10),
        ),
    )
    import dataclasses

    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
