-- Ferry store, PostgreSQL flavour, version 1. Mirrors migrations/sqlite/0001_init.sql.
--
-- Conventions (the same as SQLite's, so every backend returns the same values):
--   * every timestamp is BIGINT milliseconds since the Unix epoch, UTC;
--   * enumerations are lower-case TEXT guarded by CHECK constraints;
--   * JSON documents (failure payloads, run summaries) are JSON, not JSONB: JSON
--     keeps the text exactly as written (key order, number spelling), as SQLite does;
--   * text that ferry sorts or compares as a key uses COLLATE "C" (byte order), so
--     listings come out in the same order whatever the database's locale.
-- The tables are created unqualified, i.e. in the first schema of the connection's
-- search_path (normally `public`).
-- Migrations are append-only: never edit a file once it has shipped, add 0002_… instead.

-- One row per source record a scheme has seen: which target record it became.
CREATE TABLE mappings (
    scheme          TEXT COLLATE "C" NOT NULL,
    source_object   TEXT COLLATE "C" NOT NULL,
    source_id       TEXT COLLATE "C" NOT NULL,
    source_name     TEXT,
    target_object   TEXT COLLATE "C" NOT NULL,
    target_id       TEXT COLLATE "C",
    target_name     TEXT,
    status          TEXT   NOT NULL CHECK (status IN ('created', 'updated', 'failed', 'pending')),
    payload_hash    TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_synced_at BIGINT,
    last_synced_at  BIGINT,
    PRIMARY KEY (scheme, source_object, source_id)
);

-- Reverse look-ups ("which source record became target X?").
CREATE INDEX mappings_by_target_object ON mappings (target_object, target_id);
CREATE INDEX mappings_by_scheme_target ON mappings (scheme, target_id);
-- mapped_id(object, source_id) in templates searches by source id across schemes.
CREATE INDEX mappings_by_source_id ON mappings (source_id);

-- Opaque resume points (e.g. the end of the last incremental window) per scheme.
CREATE TABLE checkpoints (
    scheme     TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scheme, key)
);

-- The failure ledger: at most one open row per (scheme, source_id, stage);
-- skipped and resolved rows are kept as history.
CREATE TABLE failures (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scheme      TEXT COLLATE "C" NOT NULL,
    source_id   TEXT COLLATE "C" NOT NULL,
    stage       TEXT   NOT NULL CHECK (stage IN ('fetch', 'transform', 'write')),
    error_class TEXT   NOT NULL,
    message     TEXT   NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 1,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    payload     JSON,
    status      TEXT   NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'skipped', 'resolved'))
);

CREATE UNIQUE INDEX failures_one_open ON failures (scheme, source_id, stage) WHERE status = 'open';
CREATE INDEX failures_by_scheme_status ON failures (scheme, status, last_seen);

-- One row per `ferry run` of a scheme.
CREATE TABLE runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scheme      TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    status      TEXT   NOT NULL,
    summary     JSON
);

CREATE INDEX runs_by_scheme ON runs (scheme, id);
