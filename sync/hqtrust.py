"""A monitor taking in HQ's newer key statements, whatever carried them.

The relay (sync/push.py) and a USB stick from HQ (sync/usb.py) both end here:
the statements are verified from the trust state the device holds, judged at
``max(clock, floor)`` (docs/statements.md, "Expiry is judged by the device's
clock"), and the new state, the statements and the raised clock floor are kept
in one transaction. Any refusal raises before anything is written, so the
device's saved trust is exactly what it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import StatementError, StatementReason
from crypto.statements import (
    HqKeysStatement,
    RootRotationStatement,
    parse_statement,
    verify_hq_chain,
)
from fieldapp.store.store import FieldStore
from fieldapp.transfer import NotEnrolled


@dataclass(frozen=True, slots=True)
class TrustUpdate:
    """What applying statements did: how many were new, and the version trusted now."""

    accepted: int
    version: int


def newer_than(version: int, chain: Sequence[bytes]) -> list[bytes]:
    """The statements of ``chain`` above ``version`` (a stick carries HQ's whole chain).

    Raises StatementError (MALFORMED) if one does not parse: the file is refused whole.
    """
    return [raw for raw in chain if parse_statement(raw).version > version]


def apply_hq_statements(store: FieldStore, statements: Sequence[bytes], now: int) -> TrustUpdate:
    """Verify ``statements`` (the next ones after the device's version) and keep them.

    ``now`` is the device clock in unix seconds; the saved clock floor is applied
    to it and raised afterwards from the statements' own ``issued_at``. A state
    that has already expired by HQ's own clock is refused as EXPIRED (rule 3 of
    docs/statements.md). An empty list changes nothing.

    Raises:
        NotEnrolled: the device has no enrolment.
        StatementError: any refusal; the saved trust state is unchanged.
    """
    book = store.sync_book
    state = book.enrolment()
    if state is None:
        raise NotEnrolled
    if not statements:
        return TrustUpdate(0, state.trust.version)
    trust = verify_hq_chain(state.trust, statements, max(now, state.clock_floor))
    parsed = [parse_statement(raw) for raw in statements]  # verified: they parse
    floor = max(
        (s.issued_at for s in parsed if isinstance(s, HqKeysStatement | RootRotationStatement)),
        default=0,
    )
    if trust.is_expired(max(floor, state.clock_floor)):
        raise StatementError(
            StatementReason.EXPIRED,
            "HQ's newest key statement had already expired when HQ issued a later one; this "
            "device keeps the HQ keys it had. Tell HQ.",
        )
    updated = book.advance_trust(
        trust, [(s.version, raw) for s, raw in zip(parsed, statements, strict=True)], floor
    )
    return TrustUpdate(len(statements), updated.trust.version)
