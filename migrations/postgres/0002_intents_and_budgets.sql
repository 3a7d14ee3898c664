-- Ferry store, PostgreSQL flavour, version 2. Mirrors migrations/sqlite/0002_intents_and_budgets.sql.

-- Batches announced to the target but not yet settled, one row per batch (see the SQLite file).
CREATE TABLE write_intents (
    id         BIGSERIAL PRIMARY KEY,
    scheme     TEXT COLLATE "C" NOT NULL,
    batch_id   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    intents    JSON   NOT NULL
);

-- Token buckets shared by every process using this store (`rate.shared`).
CREATE TABLE rate_budgets (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);
