-- Ferry store, SQLite flavour, version 8: field (value) mappings, seed 000 §6's ERP field
-- mapping table. A table is (data_center, channel, data_type); within it a CRM value maps to
-- one ERP value and an ERP value to one CRM value. data_center is '' for a single account set.
CREATE TABLE field_mappings (
    data_center TEXT NOT NULL DEFAULT '',
    channel     TEXT NOT NULL,
    data_type   TEXT NOT NULL,
    crm_value   TEXT NOT NULL,
    crm_name    TEXT,
    erp_value   TEXT NOT NULL,
    erp_name    TEXT,
    PRIMARY KEY (data_center, channel, data_type, crm_value)
) WITHOUT ROWID;

CREATE UNIQUE INDEX field_mappings_by_erp_value ON field_mappings (data_center, channel, data_type, erp_value);
