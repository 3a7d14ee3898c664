-- Ferry store, SQLite flavour, version 3.
-- No query looks mappings up by (target_object, target_id): reverse look-ups go through
-- (scheme, target_id) and mapped_id() through source_id. Dropping the index saves one
-- B-tree write per mapping upsert.
DROP INDEX IF EXISTS mappings_by_target_object;
