-- Ferry store, PostgreSQL flavour, version 7. Mirrors migrations/sqlite/0007_record_events.sql:
-- the newest events of each record, written only when it was written or failed.
CREATE TABLE IF NOT EXISTS record_events (
    id           BIGSERIAL PRIMARY KEY,
    scheme       TEXT    NOT NULL,
    source_id    TEXT    NOT NULL,
    run_id       BIGINT  NOT NULL,
    at           BIGINT  NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('created', 'updated', 'unchanged', 'failed')),
    payload_hash TEXT,
    detail       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS record_events_by_record ON record_events (scheme, source_id, id);
CREATE INDEX IF NOT EXISTS failures_by_record ON failures (scheme, source_id);
