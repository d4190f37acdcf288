"""The database schema, as numbered migration steps (``PRAGMA user_version``).

A step is applied in one transaction with the version bump, so a crash leaves
the schema at the old or the new version. Never edit a released step: add one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the monitor's store
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    -- The append-only history. Current state below is derived from it.
    CREATE TABLE revisions (
        testimony_id TEXT    NOT NULL,
        seq          INTEGER NOT NULL CHECK (seq >= 1),
        parent_hash  BLOB    NOT NULL,
        hash         BLOB    NOT NULL UNIQUE,
        device_key   BLOB    NOT NULL,
        signature    BLOB    NOT NULL,
        payload      BLOB    NOT NULL,
        created_at   TEXT    NOT NULL,
        PRIMARY KEY (testimony_id, seq)
    ) STRICT;
    CREATE TRIGGER revisions_append_only_update BEFORE UPDATE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
    CREATE TRIGGER revisions_append_only_delete BEFORE DELETE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;

    -- Current state of each testimony: the latest revision, with columns to list by.
    CREATE TABLE testimonies (
        id             TEXT PRIMARY KEY,
        seq            INTEGER NOT NULL,
        status         TEXT NOT NULL,
        taken_at       TEXT NOT NULL,
        incident_start TEXT,
        incident_text  TEXT NOT NULL DEFAULT '',
        place          TEXT NOT NULL DEFAULT '',
        violations     TEXT NOT NULL DEFAULT '',
        witness_code   TEXT,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        FOREIGN KEY (id, seq) REFERENCES revisions (testimony_id, seq)
    ) STRICT;
    CREATE INDEX testimonies_by_update ON testimonies (updated_at DESC, id);
    CREATE INDEX testimonies_by_status ON testimonies (status, updated_at DESC, id);

    -- The witness identity compartment: never part of a revision payload.
    CREATE TABLE witness_identities (
        witness_code TEXT PRIMARY KEY,
        identity     BLOB NOT NULL,
        updated_at   TEXT NOT NULL
    ) STRICT;

    CREATE TABLE attachments (
        id            TEXT PRIMARY KEY,
        testimony_id  TEXT NOT NULL REFERENCES testimonies (id),
        stored_name   TEXT NOT NULL UNIQUE,
        filename      TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        file_key      BLOB NOT NULL,
        stream_header BLOB NOT NULL,
        created_at    TEXT NOT NULL
    ) STRICT;

    -- What the next sync must carry: the newest revision not yet sent, per testimony.
    CREATE TABLE outbox (
        testimony_id TEXT PRIMARY KEY REFERENCES testimonies (id),
        seq          INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE sync_state (
        testimony_id  TEXT PRIMARY KEY REFERENCES testimonies (id),
        sent_seq      INTEGER NOT NULL DEFAULT 0,
        confirmed_seq INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    CREATE VIRTUAL TABLE search USING fts5(
        testimony_id UNINDEXED,
        body,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    """,
    # 2: indexes for the list's other sort orders, with and without a status filter
    """
    CREATE INDEX testimonies_by_taken ON testimonies (taken_at DESC, id);
    CREATE INDEX testimonies_by_incident ON testimonies (incident_start DESC, id);
    CREATE INDEX testimonies_by_status_taken ON testimonies (status, taken_at DESC, id);
    CREATE INDEX testimonies_by_status_incident ON testimonies (status, incident_start DESC, id);
    """,
    # 3: find a testimony's search row by rowid (FTS5 cannot index testimony_id, so
    # deleting by it scanned the whole index on every save), and sort by the UTC
    # time taken (ISO text with different offsets does not sort chronologically).
    """
    ALTER TABLE testimonies ADD COLUMN search_rowid INTEGER;
    ALTER TABLE testimonies ADD COLUMN taken_utc TEXT;
    UPDATE testimonies SET search_rowid = m.r
        FROM (SELECT rowid AS r, testimony_id AS id FROM search) AS m
        WHERE m.id = testimonies.id;
    UPDATE testimonies SET taken_utc = strftime('%Y-%m-%dT%H:%M', taken_at);
    DROP INDEX testimonies_by_taken;
    DROP INDEX testimonies_by_status_taken;
    CREATE INDEX testimonies_by_taken ON testimonies (taken_utc DESC, id);
    CREATE INDEX testimonies_by_status_taken ON testimonies (status, taken_utc DESC, id);
    """,
    # 4: search joins by search_rowid (index it), and prefix indexes for one- and
    # two-character prefixes: typing the first letter of a word (or the article ال)
    # expanded to millions of index entries without them. FTS5 options are fixed at
    # creation, so the table is rebuilt, keeping every rowid.
    """
    CREATE UNIQUE INDEX testimonies_by_search_rowid ON testimonies (search_rowid);
    CREATE VIRTUAL TABLE search_v4 USING fts5(
        testimony_id UNINDEXED,
        body,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '1 2'
    );
    INSERT INTO search_v4 (rowid, testimony_id, body)
        SELECT rowid, testimony_id, body FROM search;
    DROP TABLE search;
    ALTER TABLE search_v4 RENAME TO search;
    """,
    # 5: enrolment with HQ, and the sealed bundles built from the outbox. The HQ
    # trust state and its clock floor are saved together (docs/statements.md).
    """
    CREATE TABLE enrolment (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        device_name     TEXT    NOT NULL,
        enrolment_id    BLOB    NOT NULL,
        secret          BLOB    NOT NULL,
        hq_root         BLOB    NOT NULL,
        trust_version   INTEGER NOT NULL,
        box_key         BLOB    NOT NULL,
        protection_key  BLOB    NOT NULL,
        expires_at      INTEGER NOT NULL,
        root_expires_at INTEGER,
        clock_floor     INTEGER NOT NULL,
        relay           TEXT,
        relay_pin       TEXT,
        upload_token    TEXT,
        enrolled_at     TEXT    NOT NULL
    ) STRICT;
    CREATE TABLE hq_statements (
        version   INTEGER PRIMARY KEY,
        statement BLOB NOT NULL
    ) STRICT;
    CREATE TABLE bundles (
        bundle_id      BLOB    PRIMARY KEY,
        file_name      TEXT    NOT NULL UNIQUE,
        testimony_id   TEXT    NOT NULL REFERENCES testimonies (id),
        seq            INTEGER NOT NULL,
        size           INTEGER NOT NULL,
        payload_sha256 BLOB    NOT NULL,
        hq_key_id      BLOB    NOT NULL,
        created_at     TEXT    NOT NULL,
        exported_at    TEXT,
        uploaded_at    TEXT,
        confirmed_at   TEXT
    ) STRICT;
    CREATE INDEX bundles_by_testimony ON bundles (testimony_id);
    ALTER TABLE attachments ADD COLUMN bundle_id BLOB;
    """,
    # 6: removing a testimony's content once HQ confirmed it (an optional setting).
    # Its revisions stay, hash, chain and signature intact, with the payload
    # emptied: the only change to a revision ever allowed, and only once the
    # testimony is listed in `purged`.
    """
    CREATE TABLE purged (
        testimony_id TEXT PRIMARY KEY REFERENCES testimonies (id),
        purged_at    TEXT NOT NULL
    ) STRICT;
    DROP TRIGGER revisions_append_only_update;
    CREATE TRIGGER revisions_append_only_update BEFORE UPDATE ON revisions
    WHEN NOT (
        EXISTS (SELECT 1 FROM purged WHERE testimony_id = old.testimony_id)
        AND new.payload = X''
        AND new.testimony_id IS old.testimony_id AND new.seq IS old.seq
        AND new.parent_hash IS old.parent_hash AND new.hash IS old.hash
        AND new.device_key IS old.device_key AND new.signature IS old.signature
        AND new.created_at IS old.created_at
    )
    BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
    """,
    # 7: network sync with the relay (docs/sync.md, "Pushing to the relay"): where
    # reading HQ's receipts from the relay goes on, and how the last push went.
    """
    CREATE TABLE relay_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        receipts_cursor INTEGER NOT NULL DEFAULT 0 CHECK (receipts_cursor >= 0),
        last_push_at    TEXT,
        last_error      TEXT,
        last_error_at   TEXT
    ) STRICT;
    INSERT INTO relay_state (id) VALUES (1);
    """,
    # 8: device key rotations (docs/statements.md, "Device key rotation on the
    # monitor"): each statement this device signed, old and new public key. The new
    # secret is kept only while the rotation is pending (the key file not yet known
    # to be switched); opening the store finishes or undoes a pending one.
    """
    CREATE TABLE device_rotations (
        version    INTEGER PRIMARY KEY CHECK (version >= 1),
        statement  BLOB NOT NULL,
        old_public BLOB NOT NULL,
        new_public BLOB NOT NULL UNIQUE,
        new_secret BLOB,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        created_at TEXT NOT NULL,
        CHECK ((state = 'pending') = (new_secret IS NOT NULL))
    ) STRICT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
