"""HQ's side of an upload-token rotation, kept in the archive (docs/relay.md, "Rotating").

A rotation is recorded before anything is sent, and marked done only after the
relay stored it, so a crash or a network failure at any point leaves either
nothing done or a *pending* rotation that the next run sends again, byte for
byte. The pending rotation (serial, new token, notice) is one JSON value in the
archive's ``meta`` table (inside SQLCipher, like the tokens in ``relay_config``),
next to ``upload_token_serial``, the last serial used; finishing it writes the
new token into ``relay_config`` (so new enrolment files carry it) and moves
the pending value to ``upload_token_last`` in one transaction: a relay restored
from an older backup can be given the current token and notice again.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Final

from crypto.keys import DeviceVerifyKey
from fieldapp.hq.archive import HqArchive
from fieldapp.store.errors import ChangedMeanwhile, DatabaseDamaged

SERIAL_KEY: Final = "upload_token_serial"
PENDING_KEY: Final = "upload_token_pending"
LAST_KEY: Final = "upload_token_last"  # the last finished rotation, to send again after a restore


@dataclass(frozen=True, slots=True)
class PendingRotation:
    """A rotation recorded in the archive and not yet confirmed by the relay."""

    serial: int
    token: str = field(repr=False)
    notice: bytes = field(repr=False)
    previous_valid_until: int
    devices: int  # how many entries the notice has


@dataclass(frozen=True, slots=True)
class Recipients:
    """Who a new notice is for: each bound, non-revoked device's current key."""

    keys: tuple[tuple[str, DeviceVerifyKey], ...]
    waiting: int  # enrolments not bound yet (no key to seal to)
    revoked: int


class UploadTokenBook:
    """The upload-token rotation state of one open archive."""

    def __init__(self, archive: HqArchive) -> None:
        self._archive = archive

    def recipients(self) -> Recipients:
        """The current key (highest version) of every bound, non-revoked device."""
        rows = self._archive._query(
            "SELECT d.name, k.public FROM devices d JOIN device_keys k ON k.device_name = d.name"
            " WHERE d.revoked_at IS NULL AND d.bound_at IS NOT NULL AND k.version ="
            " (SELECT max(version) FROM device_keys WHERE device_name = d.name)"
            " ORDER BY d.name"
        )
        counts = self._archive._query(
            "SELECT coalesce(sum(bound_at IS NULL AND revoked_at IS NULL), 0),"
            " coalesce(sum(revoked_at IS NOT NULL), 0) FROM devices"
        )
        keys = tuple((str(name), DeviceVerifyKey(bytes(public))) for name, public in rows)
        return Recipients(keys, int(counts[0][0]), int(counts[0][1]))

    def last_serial(self) -> int:
        rows = self._archive._query("SELECT value FROM meta WHERE key = ?", (SERIAL_KEY,))
        if not rows:
            return 0
        try:
            return int(rows[0][0])
        except ValueError as e:
            raise DatabaseDamaged from e

    def pending(self) -> PendingRotation | None:
        return self._stored(PENDING_KEY)

    def last(self) -> PendingRotation | None:
        """The last rotation the relay confirmed, if any."""
        return self._stored(LAST_KEY)

    def _stored(self, key: str) -> PendingRotation | None:
        rows = self._archive._query("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            value = json.loads(rows[0][0])
            return PendingRotation(
                int(value["serial"]),
                str(value["token"]),
                base64.b64decode(value["notice"], validate=True),
                int(value["previous_valid_until"]),
                int(value["devices"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise DatabaseDamaged from e

    def begin(self, pending: PendingRotation) -> None:
        """Record a new rotation (its serial must be the next one) before sending it."""
        value = json.dumps(
            {
                "serial": pending.serial,
                "token": pending.token,
                "notice": base64.b64encode(pending.notice).decode("ascii"),
                "previous_valid_until": pending.previous_valid_until,
                "devices": pending.devices,
            }
        )
        with self._archive._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (SERIAL_KEY,)).fetchone()
            if (0 if row is None else int(row[0])) + 1 != pending.serial or c.execute(
                "SELECT 1 FROM meta WHERE key = ?", (PENDING_KEY,)
            ).fetchone():
                raise ChangedMeanwhile  # another rotate-upload-token ran at the same time
            c.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(SERIAL_KEY, str(pending.serial)), (PENDING_KEY, value)],
            )

    def abandon(self, pending: PendingRotation) -> None:
        """Drop a pending rotation that a newer one replaces (its serial stays used)."""
        with self._archive._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (PENDING_KEY,)).fetchone()
            if row is not None and int(json.loads(row[0])["serial"]) == pending.serial:
                c.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))

    def finish(self, pending: PendingRotation) -> None:
        """The relay stored the rotation: its token becomes the configured upload token."""
        now = self._archive._now()
        with self._archive._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (PENDING_KEY,)).fetchone()
            if row is None or int(json.loads(row[0])["serial"]) != pending.serial:
                raise ChangedMeanwhile  # another run finished or replaced it
            changed = c.execute(
                "UPDATE relay_config SET upload_token = ?, updated_at = ? WHERE id = 1",
                (pending.token, now),
            ).rowcount
            if not changed:
                raise DatabaseDamaged
            c.execute(
                "INSERT INTO meta (key, value) SELECT ?, value FROM meta WHERE key = ?"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (LAST_KEY, PENDING_KEY),
            )
            c.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
