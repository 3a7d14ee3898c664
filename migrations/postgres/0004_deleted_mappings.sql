-- Ferry store, PostgreSQL flavour, version 4. Mirrors migrations/sqlite/0004_deleted_mappings.sql:
-- a mapping may be `deleted`. 0001 declared the check on the column, so PostgreSQL named it
-- mappings_status_check.
ALTER TABLE mappings DROP CONSTRAINT IF EXISTS mappings_status_check;
ALTER TABLE mappings ADD CONSTRAINT mappings_status_check
    CHECK (status IN ('created', 'updated', 'failed', 'pending', 'deleted'));
