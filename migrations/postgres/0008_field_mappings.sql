-- Ferry store, PostgreSQL flavour, version 8. Mirrors migrations/sqlite/0008_field_mappings.sql:
-- field (value) mappings, unique per table in both directions.
CREATE TABLE IF NOT EXISTS field_mappings (
    data_center TEXT COLLATE "C" NOT NULL DEFAULT '',
    channel     TEXT COLLATE "C" NOT NULL,
    data_type   TEXT COLLATE "C" NOT NULL,
    crm_value   TEXT COLLATE "C" NOT NULL,
    crm_name    TEXT,
    erp_value   TEXT COLLATE "C" NOT NULL,
    erp_name    TEXT,
    PRIMARY KEY (data_center, channel, data_type, crm_value)
);

CREATE UNIQUE INDEX IF NOT EXISTS field_mappings_by_erp_value
    ON field_mappings (data_center, channel, data_type, erp_value);
