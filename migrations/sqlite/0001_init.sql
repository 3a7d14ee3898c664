-- Ferry store, SQLite flavour, version 1.
--
-- Conventions (the Postgres migrations mirror them):
--   * every timestamp is INTEGER milliseconds since the Unix epoch, UTC;
--   * enumerations are lower-case TEXT guarded by CHECK constraints;
--   * JSON documents (failure payloads, run summaries) are TEXT.
-- Migrations are append-only: never edit a file once it has shipped, add 0002_… instead.

-- One row per source record a scheme has seen: which target record it became.
CREATE TABLE mappings (
    scheme          TEXT    NOT NULL,
    source_object   TEXT    NOT NULL,
    source_id       TEXT    NOT NULL,
    source_name     TEXT,
    target_object   TEXT    NOT NULL,
    target_id       TEXT,
    target_name     TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('created', 'updated', 'failed', 'pending')),
    payload_hash    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_synced_at INTEGER,
    last_synced_at  INTEGER,
    PRIMARY KEY (scheme, source_object, source_id)
) WITHOUT ROWID;

-- Reverse look-ups ("which source record became target X?").
CREATE INDEX mappings_by_target_object ON mappings (target_object, target_id);
CREATE INDEX mappings_by_scheme_target ON mappings (scheme, target_id);
-- mapped_id(object, source_id) in templates searches by source id across schemes.
CREATE INDEX mappings_by_source_id ON mappings (source_id);

-- Opaque resume points (e.g. the end of the last incremental window) per scheme.
CREATE TABLE checkpoints (
    scheme     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scheme, key)
) WITHOUT ROWID;

-- The failure ledger: at most one open row per (scheme, source_id, stage);
-- skipped and resolved rows are kept as history.
CREATE TABLE failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scheme      TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    stage       TEXT    NOT NULL CHECK (stage IN ('fetch', 'transform', 'write')),
    error_class TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    payload     TEXT,
    status      TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'skipped', 'resolved'))
);

CREATE UNIQUE INDEX failures_one_open ON failures (scheme, source_id, stage) WHERE status = 'open';
CREATE INDEX failures_by_scheme_status ON failures (scheme, status, last_seen);

-- One row per `ferry run` of a scheme.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scheme      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT    NOT NULL,
    summary     TEXT
);

CREATE INDEX runs_by_scheme ON runs (scheme, id);
