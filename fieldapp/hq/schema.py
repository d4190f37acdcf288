"""HQ's archive schema, as numbered migration steps (see fieldapp/store/schema.py)."""

from __future__ import annotations

HQ_MIGRATIONS: tuple[str, ...] = (
    # 1: keys, devices, bundles and the imported testimony
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    -- Private keys live only here, inside the encrypted database.
    CREATE TABLE root_keys (
        key_id     BLOB PRIMARY KEY,
        secret     BLOB,
        public     BLOB NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        retired_at TEXT
    ) STRICT;
    CREATE TABLE box_keys (
        key_id       BLOB PRIMARY KEY,
        secret       BLOB,
        public       BLOB NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        retired_at   TEXT,
        destroyed_at TEXT,
        CHECK ((secret IS NULL) = (destroyed_at IS NOT NULL))
    ) STRICT;
    -- Only the public half: the private half is sealed under its own secret.
    CREATE TABLE protection_keys (
        key_id     BLOB PRIMARY KEY,
        public     BLOB NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    ) STRICT;
    -- The HQ chain devices follow (crypto/statements.py), as published.
    CREATE TABLE statements (
        version   INTEGER PRIMARY KEY CHECK (version >= 1),
        statement BLOB NOT NULL,
        issued_at INTEGER NOT NULL
    ) STRICT;

    -- One row per enrolment identity; revocation is by identity, never by key.
    -- The one-time secret is erased when the first bundle binds a device key.
    CREATE TABLE devices (
        name          TEXT PRIMARY KEY,
        enrolment_id  BLOB NOT NULL UNIQUE,
        secret        BLOB,
        enrolled_at   TEXT NOT NULL,
        bound_at      TEXT,
        revoked_at    TEXT
    ) STRICT;
    -- Every key a device identity has signed with: version 0 is the key bound at
    -- enrolment, later versions follow its rotation chain.
    CREATE TABLE device_keys (
        public      BLOB PRIMARY KEY,
        device_name TEXT NOT NULL REFERENCES devices (name),
        version     INTEGER NOT NULL CHECK (version >= 0),
        added_at    TEXT NOT NULL,
        UNIQUE (device_name, version)
    ) STRICT;

    CREATE TABLE bundles (
        bundle_id      BLOB PRIMARY KEY,
        device_name    TEXT NOT NULL REFERENCES devices (name),
        testimony_id   TEXT NOT NULL,
        payload_sha256 BLOB NOT NULL,
        hq_key_id      BLOB NOT NULL,
        size           INTEGER NOT NULL,
        imported_at    TEXT NOT NULL,
        receipt        BLOB NOT NULL,
        receipt_exported_at TEXT
    ) STRICT;
    CREATE INDEX bundles_by_testimony ON bundles (testimony_id);

    -- The devices' append-only history, with where each revision came from.
    CREATE TABLE revisions (
        testimony_id TEXT    NOT NULL,
        seq          INTEGER NOT NULL CHECK (seq >= 1),
        parent_hash  BLOB    NOT NULL,
        hash         BLOB    NOT NULL UNIQUE,
        device_key   BLOB    NOT NULL,
        signature    BLOB    NOT NULL,
        payload      BLOB    NOT NULL,
        created_at   TEXT    NOT NULL,
        bundle_id    BLOB    NOT NULL REFERENCES bundles (bundle_id),
        device_name  TEXT    NOT NULL,
        imported_at  TEXT    NOT NULL,
        PRIMARY KEY (testimony_id, seq)
    ) STRICT;
    CREATE TRIGGER revisions_append_only_update BEFORE UPDATE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
    CREATE TRIGGER revisions_append_only_delete BEFORE DELETE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;

    CREATE TABLE testimonies (
        id             TEXT PRIMARY KEY,
        seq            INTEGER NOT NULL,
        device_name    TEXT NOT NULL,
        status         TEXT NOT NULL,
        taken_at       TEXT NOT NULL,
        incident_text  TEXT NOT NULL,
        place          TEXT NOT NULL,
        violations     TEXT NOT NULL,
        witness_code   TEXT,
        first_imported TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        search_rowid   INTEGER UNIQUE,
        FOREIGN KEY (id, seq) REFERENCES revisions (testimony_id, seq)
    ) STRICT;
    CREATE INDEX testimonies_by_update ON testimonies (updated_at DESC, id);

    CREATE TABLE attachments (
        id            TEXT PRIMARY KEY,
        testimony_id  TEXT NOT NULL,
        size          INTEGER NOT NULL,
        sha256        BLOB NOT NULL,
        stored_name   TEXT NOT NULL UNIQUE,
        file_key      BLOB NOT NULL,
        stream_header BLOB NOT NULL,
        bundle_id     BLOB NOT NULL REFERENCES bundles (bundle_id),
        imported_at   TEXT NOT NULL
    ) STRICT;
    CREATE INDEX attachments_by_testimony ON attachments (testimony_id);

    -- Witness identities, still sealed to the protection key: the archive key
    -- alone never opens them.
    CREATE TABLE identities (
        witness_code TEXT NOT NULL,
        bundle_id    BLOB NOT NULL REFERENCES bundles (bundle_id),
        sealed       BLOB NOT NULL,
        imported_at  TEXT NOT NULL,
        PRIMARY KEY (witness_code, bundle_id)
    ) STRICT;

    CREATE VIRTUAL TABLE search USING fts5(
        testimony_id UNINDEXED,
        body,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '1 2'
    );
    """,
    # 2: the relay (docs/hq.md, "Pulling from the relay"): its address, pin and the two
    # tokens, kept only here inside the encrypted archive; which receipts were
    # published there, and what became of each blob pulled from it.
    """
    CREATE TABLE relay_config (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        url          TEXT NOT NULL,
        hq_token     TEXT NOT NULL,
        upload_token TEXT NOT NULL,
        pin          TEXT,
        updated_at   TEXT NOT NULL
    ) STRICT;
    ALTER TABLE bundles ADD COLUMN receipt_published_at TEXT;
    CREATE TABLE pulled_blobs (
        blob_id   TEXT PRIMARY KEY,
        outcome   TEXT NOT NULL CHECK (outcome IN ('imported', 'already', 'quarantined')),
        pulled_at TEXT NOT NULL
    ) STRICT;
    """,
)
