-- Ferry store, PostgreSQL flavour, version 3. Mirrors migrations/sqlite/0003_drop_unused_mapping_index.sql.
DROP INDEX IF EXISTS mappings_by_target_object;
