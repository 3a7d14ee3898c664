-- Ferry store, SQLite flavour, version 4: a mapping may be `deleted` (the source deleted
-- the record and ferry deleted its target record through `target.delete`).
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt with the
-- wider check, keeping every row and the indexes that 0001 and 0003 left.
CREATE TABLE mappings_v4 (
    scheme          TEXT    NOT NULL,
    source_object   TEXT    NOT NULL,
    source_id       TEXT    NOT NULL,
    source_name     TEXT,
    target_object   TEXT    NOT NULL,
    target_id       TEXT,
    target_name     TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('created', 'updated', 'failed', 'pending', 'deleted')),
    payload_hash    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_synced_at INTEGER,
    last_synced_at  INTEGER,
    PRIMARY KEY (scheme, source_object, source_id)
) WITHOUT ROWID;

INSERT INTO mappings_v4 (scheme, source_object, source_id, source_name, target_object, target_id,
                         target_name, status, payload_hash, attempts, last_error, first_synced_at,
                         last_synced_at)
SELECT scheme, source_object, source_id, source_name, target_object, target_id, target_name, status,
       payload_hash, attempts, last_error, first_synced_at, last_synced_at
FROM mappings;

DROP TABLE mappings;
ALTER TABLE mappings_v4 RENAME TO mappings;

CREATE INDEX mappings_by_scheme_target ON mappings (scheme, target_id);
CREATE INDEX mappings_by_source_id ON mappings (source_id);
