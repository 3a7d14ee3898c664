-- Ferry store, SQLite flavour, version 2: crash-safe write intents and shared rate budgets.

-- Batches announced to the target but not yet settled: one row per batch, its rows as a
-- JSON array. A row is written (and committed) before the batch's request goes out and
-- deleted in the transaction that stores the answer, so one found at the start of a run
-- marks writes whose outcome is unknown. The table only ever holds the batches in flight,
-- so it needs no index beyond its rowid.
CREATE TABLE write_intents (
    id         INTEGER PRIMARY KEY,
    scheme     TEXT    NOT NULL,
    batch_id   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    intents    TEXT    NOT NULL
);

-- Token buckets shared by every process using this store (`rate.shared`).
CREATE TABLE rate_budgets (
    name       TEXT    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
