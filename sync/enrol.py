"""A monitor's enrolment: reading HQ's enrolment file and keeping what it certifies."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from crypto.enrolment import MAX_ENROLMENT_BYTES, Enrolment, read_enrolment
from crypto.keys import RootVerifyKey
from crypto.statements import HqKeysStatement, HqTrust, RootRotationStatement, parse_statement
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.store import FieldStore
from fieldapp.store.syncbook import EnrolmentState
from sync.files import open_regular


class EnrolmentFileError(FieldappError):
    exit_code = ExitCode.IO


def read_enrolment_file(
    path: Path, now: datetime, expected_root: RootVerifyKey | None = None
) -> tuple[Enrolment, HqTrust]:
    """Read and verify an enrolment file. Raises EnrolmentFileError, EnrolmentError."""
    try:
        with open_regular(path) as src:
            data = src.read(MAX_ENROLMENT_BYTES + 1)
    except OSError as e:
        raise EnrolmentFileError(
            "The enrolment file cannot be read; check the path (symlinks are not followed)."
        ) from e
    return read_enrolment(data, now=int(now.timestamp()), expected_root=expected_root)


def clock_floor(enrolment: Enrolment) -> int:
    """The highest issued_at of the (verified) HQ statements: the device's clock floor."""
    floor = 0
    for raw in enrolment.hq_statements:
        statement = parse_statement(raw)
        if isinstance(statement, HqKeysStatement | RootRotationStatement):
            floor = max(floor, statement.issued_at)
    return floor


def enrol(store: FieldStore, enrolment: Enrolment, trust: HqTrust) -> EnrolmentState:
    """Keep a verified enrolment in the store. Raises AlreadyEnrolled."""
    return store.sync_book.enrol(enrolment, trust, clock_floor(enrolment))
