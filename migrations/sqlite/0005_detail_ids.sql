-- Ferry store, SQLite flavour, version 5: a mapping remembers the target's ids of its
-- record's detail rows, as JSON text `{"<list path>": {"<detail key>": <target row id>}}`,
-- so an update changes those rows instead of appending copies. NULL: none known.
ALTER TABLE mappings ADD COLUMN detail_ids TEXT;
