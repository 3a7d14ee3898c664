-- Ferry store, PostgreSQL flavour, version 5. Mirrors migrations/sqlite/0005_detail_ids.sql:
-- the target's ids of a record's detail rows, as JSON text. NULL: none known.
ALTER TABLE mappings ADD COLUMN IF NOT EXISTS detail_ids TEXT;
