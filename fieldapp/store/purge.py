"""Removing a testimony's content from the device once HQ has confirmed it.

An optional setting (``remove_confirmed``), for monitors who would rather not
carry testimony HQ already holds through the next checkpoint. What stays is a
stub: the id, the status (*confirmed*), when it was taken and updated, and each
revision's hash, chain link and signature, so the device can still show what it
sent and HQ's receipts still match. What goes, in one transaction: every
revision's payload (the narrative, places, people, consent), the search entry,
the list columns that repeat content, the attachments (rows now, encrypted
files right after), and the witness identity unless another kept testimony
names the same witness. With ``secure_delete`` on, SQLCipher overwrites the
freed content inside the encrypted file.
"""

from __future__ import annotations

import contextlib

from fieldapp.domain import ValidationError, testimony_from_bytes
from fieldapp.store.database import Connection

SETTING = "remove_confirmed"


def purge_content(c: Connection, record_id: str, now: str) -> list[str]:
    """Empty a confirmed testimony inside the caller's transaction.

    Returns the stored names of its attachment files, for the caller to delete
    once the transaction has committed.
    """
    c.execute(
        "INSERT INTO purged (testimony_id, purged_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (record_id, now),
    )
    # Every witness the testimony ever named (a corrected code too), read before
    # the payloads are emptied.
    witnesses = set()
    for (payload,) in c.execute(
        "SELECT payload FROM revisions WHERE testimony_id = ?", (record_id,)
    ).fetchall():
        with contextlib.suppress(ValidationError):
            code = testimony_from_bytes(bytes(payload)).witness_code
            if code is not None:
                witnesses.add(code)
    c.execute("UPDATE revisions SET payload = X'' WHERE testimony_id = ?", (record_id,))
    row = c.execute(
        "SELECT search_rowid, witness_code FROM testimonies WHERE id = ?", (record_id,)
    ).fetchone()
    if row is not None and row[0] is not None:
        # FTS5 normally only marks a row deleted and keeps its tokens until a merge;
        # secure-delete removes them now. Off again after, since it slows every save.
        c.execute("INSERT INTO search (search, rank) VALUES ('secure-delete', 1)")
        c.execute("DELETE FROM search WHERE rowid = ?", (row[0],))
        c.execute("INSERT INTO search (search, rank) VALUES ('secure-delete', 0)")
    if row is not None and row[1] is not None:
        witnesses.add(str(row[1]))
    c.execute(
        "UPDATE testimonies SET incident_start = NULL, incident_text = '', place = '',"
        " violations = '', witness_code = NULL, search_rowid = NULL WHERE id = ?",
        (record_id,),
    )
    for witness in sorted(witnesses):
        c.execute(
            "DELETE FROM witness_identities WHERE witness_code = ? AND NOT EXISTS"
            " (SELECT 1 FROM testimonies WHERE witness_code = ?)",
            (witness, witness),
        )
    names = [
        str(r[0])
        for r in c.execute(
            "SELECT stored_name FROM attachments WHERE testimony_id = ?", (record_id,)
        )
    ]
    c.execute("DELETE FROM attachments WHERE testimony_id = ?", (record_id,))
    c.execute("DELETE FROM outbox WHERE testimony_id = ?", (record_id,))
    return names


def is_enabled(c: Connection) -> bool:
    row = c.execute("SELECT value FROM meta WHERE key = ?", (SETTING,)).fetchone()
    return row is not None and row[0] == "on"


def set_enabled(c: Connection, enabled: bool) -> None:
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (SETTING, "on" if enabled else "off"),
    )
