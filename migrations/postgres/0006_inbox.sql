-- Ferry store, PostgreSQL flavour, version 6. Mirrors migrations/sqlite/0006_inbox.sql:
-- the receive-mode inbox. Several `ferry serve` processes may share it: workers claim rows
-- with `FOR UPDATE SKIP LOCKED` and a lease.
CREATE TABLE IF NOT EXISTS inbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scheme       TEXT COLLATE "C" NOT NULL,
    dedupe_key   TEXT COLLATE "C" NOT NULL,
    business_key TEXT COLLATE "C",
    cancel       BOOLEAN NOT NULL DEFAULT FALSE,
    received_as  TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    received_at  BIGINT  NOT NULL,
    available_at BIGINT  NOT NULL,
    claimed_by   TEXT,
    lease_until  BIGINT,
    finished_at  BIGINT,
    last_error   TEXT,
    UNIQUE (scheme, dedupe_key)
);

CREATE INDEX IF NOT EXISTS inbox_by_status ON inbox (scheme, status, id);
CREATE INDEX IF NOT EXISTS inbox_by_key ON inbox (scheme, business_key, id);
