-- Ferry store, SQLite flavour, version 6: the receive-mode inbox (`ferry serve`).
--
-- One row per accepted push, committed before the push is answered. `dedupe_key` (the
-- push's id, its thirdTraceId and its payload hash) is unique per scheme, so a repeated
-- push finds the original row instead of adding one. Workers claim `pending` rows with a
-- lease (`claimed_by`, `lease_until`); a row whose lease ran out is claimed again. A row
-- that failed and will be retried stays `pending` with a later `available_at`. Times are
-- milliseconds since the Unix epoch (UTC).
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    scheme       TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    business_key TEXT,
    cancel       INTEGER NOT NULL DEFAULT 0,
    received_as  TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    received_at  INTEGER NOT NULL,
    available_at INTEGER NOT NULL,
    claimed_by   TEXT,
    lease_until  INTEGER,
    finished_at  INTEGER,
    last_error   TEXT,
    UNIQUE (scheme, dedupe_key)
);

-- Claiming: the pending rows of a scheme in arrival order.
CREATE INDEX inbox_by_status ON inbox (scheme, status, id);
-- Per-key order: the earlier rows of one business key.
CREATE INDEX inbox_by_key ON inbox (scheme, business_key, id);
