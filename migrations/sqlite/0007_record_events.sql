-- Ferry store, SQLite flavour, version 7: a bounded history of what happened to each
-- record (`ferry explain`). A row is written only when a record was written to the target
-- or failed, and only the newest N rows of a record are kept (`ferry run --keep-events`).
-- `detail` is JSON text: {"window", "row" (the rendered row, secrets masked), "request"
-- (what was sent, summarised), "answer" (the target's answer for this row)}.
CREATE TABLE record_events (
    id           INTEGER PRIMARY KEY,
    scheme       TEXT    NOT NULL,
    source_id    TEXT    NOT NULL,
    run_id       INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('created', 'updated', 'unchanged', 'failed')),
    payload_hash TEXT,
    detail       TEXT    NOT NULL
);
CREATE INDEX record_events_by_record ON record_events (scheme, source_id, id);
-- `ferry explain` lists every ledger row of one record, whatever its status.
CREATE INDEX failures_by_record ON failures (scheme, source_id);
