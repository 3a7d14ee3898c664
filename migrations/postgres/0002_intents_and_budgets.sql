-- Ferry store, PostgreSQL flavour, version 2. Mirrors migrations/sqlite/0002_intents_and_budgets.sql.

-- Rows announced to the target but not yet settled (see the SQLite file).
CREATE TABLE write_intents (
    scheme        TEXT COLLATE "C" NOT NULL,
    source_object TEXT COLLATE "C" NOT NULL,
    source_id     TEXT COLLATE "C" NOT NULL,
    source_name   TEXT,
    batch_id      TEXT COLLATE "C" NOT NULL,
    operation     TEXT   NOT NULL CHECK (operation IN ('create', 'update')),
    business_key  TEXT,
    target_id     TEXT,
    payload_hash  TEXT   NOT NULL,
    payload       JSON,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scheme, source_object, source_id)
);

-- Token buckets shared by every process using this store (`rate.shared`).
CREATE TABLE rate_budgets (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);
