"""HQ's box keys over time: which one is current, how long a retired one is kept.

A sealed box has no forward secrecy: whoever holds a box key's secret opens every
bundle ever sealed to it. So HQ destroys retired box keys, but only once no
device may still legitimately seal to one and no bundle sealed to it may still be
on its way. That moment is the **grace end** of a retired key:

    grace end = the expiry of the last HQ-keys statement naming the key
                + TRANSIT_ALLOWANCE

A device seals only to the box key of its latest HQ-keys statement, and only
while that statement has not expired (docs/statements.md). A device that has not
synced since the rotation keeps sealing to the old key until its statement
expires; the allowance covers the bundles it sealed just before, still on a stick
or on the relay. ``fieldapp hq retire-key`` destroys a key after its grace end,
or before it with ``--force`` (docs/hq.md, "Box keys").

Everything here is pure: rows and statements in, facts and refusals out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from crypto.errors import StatementError
from crypto.statements import HqKeysStatement, Statement, parse_statement
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.hq.errors import ImportRefused, Refusal
from fieldapp.store.errors import DatabaseDamaged

TRANSIT_ALLOWANCE: Final = timedelta(days=30)
"""How long a bundle sealed just before its HQ-keys statement expired may still be
travelling (a stick in a pocket, the relay's retention) when it reaches HQ."""

MAX_HELD_BOX_KEYS: Final = 64  # HqArchive.box_keys tries at most this many on each bundle
MIN_KEY_ID_PREFIX: Final = 8  # hex digits: 32 bits, unambiguous among any real set of keys
KEY_ID_HEX: Final = 32


class BoxKeyState(StrEnum):
    CURRENT = "current"  # devices are told to seal to it
    RETIRED = "retired"  # replaced; kept so late bundles still open
    DESTROYED = "destroyed"  # its secret is gone from the archive


@dataclass(frozen=True, slots=True)
class BoxKeyInfo:
    """One box key as HQ holds it, with the dates its retention policy depends on."""

    key_id: bytes
    created_at: str
    retired_at: str | None
    destroyed_at: str | None
    statement_versions: tuple[int, ...]  # the HQ-keys statements naming it
    last_expiry: int | None  # unix seconds: the expiry of the last of them

    @property
    def state(self) -> BoxKeyState:
        if self.destroyed_at is not None:
            return BoxKeyState.DESTROYED
        if self.retired_at is not None:
            return BoxKeyState.RETIRED
        return BoxKeyState.CURRENT

    @property
    def grace_ends_at(self) -> datetime | None:
        """When a retired key may be destroyed; None for the current key."""
        if self.retired_at is None:
            return None
        if self.last_expiry is not None:
            base = datetime.fromtimestamp(self.last_expiry, UTC)
        else:  # named in no statement: no device ever sealed to it
            base = datetime.fromisoformat(self.retired_at).astimezone(UTC)
        return base + TRANSIT_ALLOWANCE

    def short_id(self) -> str:
        return self.key_id.hex()[:16]

    def as_json(self) -> dict[str, object]:
        grace = self.grace_ends_at
        return {
            "key_id": self.key_id.hex(),
            "state": self.state.value,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "destroyed_at": self.destroyed_at,
            "statement_versions": list(self.statement_versions),
            "grace_ends_at": None if grace is None else grace.isoformat(timespec="seconds"),
        }

    def describe(self) -> str:
        """One line for ``hq keys``: the state and the dates that matter for it."""
        if self.destroyed_at is not None:
            return f"destroyed {self.destroyed_at} (created {self.created_at})"
        grace = self.grace_ends_at
        if grace is None:
            return f"current, created {self.created_at}"
        return (
            f"retired {self.retired_at}, kept until its grace period ends "
            f"{grace.isoformat(timespec='seconds')} (then hq retire-key)"
        )


def stored_statements(chain: Iterable[bytes]) -> list[Statement]:
    """HQ's own chain, parsed. Raises DatabaseDamaged if one it stored does not parse."""
    parsed = []
    for raw in chain:
        try:
            parsed.append(parse_statement(raw))
        except StatementError as e:
            raise DatabaseDamaged from e
    return parsed


def describe_box_keys(
    rows: Sequence[tuple[bytes, bytes, str, str | None, str | None]], statements: Sequence[bytes]
) -> list[BoxKeyInfo]:
    """Join the archive's box-key rows (``HqArchive.box_key_rows``) with its HQ chain.

    Raises DatabaseDamaged if a statement HQ itself stored does not parse.
    """
    named: dict[bytes, list[tuple[int, int]]] = {}
    for statement in stored_statements(statements):
        if isinstance(statement, HqKeysStatement):
            named.setdefault(statement.box.key_id, []).append(
                (statement.version, statement.expires_at)
            )
    infos = []
    for key_id, _public, created, retired, destroyed in rows:
        seen = named.get(key_id, [])
        infos.append(
            BoxKeyInfo(
                key_id=key_id,
                created_at=created,
                retired_at=retired,
                destroyed_at=destroyed,
                statement_versions=tuple(v for v, _ in seen),
                last_expiry=max((e for _, e in seen), default=None),
            )
        )
    return infos


# ------------------------------------------------------------------ retire-key


class BadKeyId(FieldappError):
    exit_code = ExitCode.USAGE

    def __init__(self) -> None:
        super().__init__(
            f"A box key id is {MIN_KEY_ID_PREFIX} to {KEY_ID_HEX} hex digits (a prefix of "
            "the id `fieldapp hq keys` shows); nothing was changed."
        )


class TooManyBoxKeys(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            f"HQ already holds {MAX_HELD_BOX_KEYS} box keys, the most an import tries; destroy "
            "retired keys whose grace period has ended first (`fieldapp hq keys`, then "
            "`fieldapp hq retire-key ID`). Nothing was changed."
        )


class BoxKeyNotFound(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "No box key of this HQ has that id; see `fieldapp hq keys`. Nothing was changed."
        )


class AmbiguousBoxKey(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "More than one box key starts with that id; give more of it (see "
            "`fieldapp hq keys`). Nothing was changed."
        )


class CurrentBoxKey(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self) -> None:
        super().__init__(
            "That is HQ's current box key, which devices seal to; rotate it first "
            "(`fieldapp hq rotate-key`). Nothing was changed."
        )


class BoxKeyAlreadyDestroyed(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self, destroyed_at: str) -> None:
        super().__init__(
            f"That box key was already destroyed ({destroyed_at}); nothing was changed."
        )


class InsideGracePeriod(FieldappError):
    exit_code = ExitCode.KEYS

    def __init__(self, grace_ends_at: datetime) -> None:
        super().__init__(
            "Devices may still seal to that box key, or bundles sealed to it be on their way, "
            f"until {grace_ends_at.isoformat(timespec='seconds')}; destroying it now would "
            "leave them unopenable. Wait, or pass --force if the key must go now. Nothing "
            "was changed."
        )


def key_id_prefix(text: str) -> str:
    """``text`` as a key id prefix (8 to 32 hex digits, lower case). Raises BadKeyId."""
    prefix = text.strip().lower()
    if not MIN_KEY_ID_PREFIX <= len(prefix) <= KEY_ID_HEX or any(
        ch not in "0123456789abcdef" for ch in prefix
    ):
        raise BadKeyId
    return prefix


def find_box_key(text: str, infos: Sequence[BoxKeyInfo]) -> BoxKeyInfo:
    """The box key ``text`` names: its whole hex id or a unique prefix of 8+ hex digits.

    Raises BadKeyId, BoxKeyNotFound, AmbiguousBoxKey.
    """
    prefix = key_id_prefix(text)
    found = [i for i in infos if i.key_id.hex().startswith(prefix)]
    if not found:
        raise BoxKeyNotFound
    if len(found) > 1:
        raise AmbiguousBoxKey
    return found[0]


def check_destroyable(info: BoxKeyInfo, now: datetime, *, force: bool) -> None:
    """Refuse to destroy the current key, a destroyed one, or one inside its grace period.

    Raises CurrentBoxKey, BoxKeyAlreadyDestroyed, InsideGracePeriod (unless ``force``).
    """
    if info.destroyed_at is not None:
        raise BoxKeyAlreadyDestroyed(info.destroyed_at)
    grace = info.grace_ends_at
    if grace is None:
        raise CurrentBoxKey
    if not force and now < grace:
        raise InsideGracePeriod(grace)


# ------------------------------------------------------------------ import


def destroyed_key_refusal(infos: Sequence[BoxKeyInfo]) -> ImportRefused | None:
    """The refusal for a bundle no held box key opens, if HQ has destroyed any box key.

    A sealed box carries no key id outside the ciphertext, so HQ cannot prove which
    key a bundle was sealed to: the reason says "most likely". None when nothing was
    ever destroyed (the bundle is then simply for some other HQ, or damaged).
    """
    destroyed = [i for i in infos if i.destroyed_at is not None]
    if not destroyed:
        return None
    named = "; ".join(
        f"{i.short_id()} (created {i.created_at}, retired {i.retired_at}, destroyed "
        f"{i.destroyed_at})"
        for i in destroyed
    )
    which = "key" if len(destroyed) == 1 else "one of the keys"
    return ImportRefused(
        Refusal.DESTROYED_KEY,
        f"No box key HQ holds opens this bundle; it was most likely sealed to destroyed box "
        f"{which} {named} (a sealed bundle names no key, so this cannot be proved). It is kept "
        "unchanged in quarantine: an archive backup from before the key was destroyed can "
        "still open it, and the monitor can send it again (sync export --again or sync push "
        "--again seals it to the current key).",
    )
