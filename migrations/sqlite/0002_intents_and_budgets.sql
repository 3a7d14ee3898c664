-- Ferry store, SQLite flavour, version 2: crash-safe write intents and shared rate budgets.

-- Rows announced to the target but not yet settled. An intent is written (and committed)
-- before its request goes out and deleted in the transaction that stores the answer, so
-- one found at the start of a run marks a write whose outcome is unknown.
CREATE TABLE write_intents (
    scheme        TEXT    NOT NULL,
    source_object TEXT    NOT NULL,
    source_id     TEXT    NOT NULL,
    source_name   TEXT,
    batch_id      TEXT    NOT NULL,
    operation     TEXT    NOT NULL CHECK (operation IN ('create', 'update')),
    business_key  TEXT,
    target_id     TEXT,
    payload_hash  TEXT    NOT NULL,
    payload       TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scheme, source_object, source_id)
) WITHOUT ROWID;
-- No index on batch_id: the table only ever holds the batches in flight.

-- Token buckets shared by every process using this store (`rate.shared`).
CREATE TABLE rate_budgets (
    name       TEXT    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
