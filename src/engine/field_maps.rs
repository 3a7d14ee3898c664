//! The `field_map` tables of a run: seeded from the scheme's CSV files, then read from the
//! store once, before the first record, so a render never waits on the store.
//!
//! A table's file (`field_mappings.NAME.file`) is put into the store first (rows with the
//! same CRM value are replaced; rows only in the store stay). A dry run writes nothing: it
//! lays the file's rows over the stored ones in memory instead. A file that cannot be read,
//! or conflicts with the store, stops the run as a configuration error naming the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Error;
use crate::scheme::field_tables::FieldTablePlan;
use crate::scheme::model::Plan;
use crate::store::field_csv::{self, CsvDefaults};
use crate::store::{FieldMapping, FieldMappingFilter, FieldMappingStore, FieldTable, Store, StoreError};
use crate::template::{FieldMapTable, FieldMaps};

/// The store table a declaration names.
pub fn store_table(declared: &FieldTablePlan) -> FieldTable {
    FieldTable {
        data_center: declared.data_center.clone(),
        channel: declared.channel.clone(),
        data_type: declared.data_type.clone(),
    }
}

/// The rows of a declaration's seed file (`None` without one); errors say `file:line: …`.
pub fn read_seed_file(declared: &FieldTablePlan) -> Result<Option<Vec<field_csv::CsvRow>>, Error> {
    let Some(path) = &declared.file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "{}: cannot read the file of field mapping table `{}`: {e}",
            path.display(),
            declared.name
        ))
    })?;
    let table = store_table(declared);
    let rows = field_csv::read(&text, &CsvDefaults::table(&table))
        .map_err(|e| Error::config(format!("{}:{}: {}", path.display(), e.line, e.message)))?;
    if let Some(row) = rows.iter().find(|row| !row.mapping.is_in(&table)) {
        return Err(Error::config(format!(
            "{}:{}: the row belongs to table {}, but the file seeds {} (field_mappings.{})",
            path.display(),
            row.line,
            crate::store::describe_table(&row.mapping.table()),
            crate::store::describe_table(&table),
            declared.name
        )));
    }
    Ok(Some(rows))
}

/// The tables of a run, and the bytes that fingerprint their contents.
#[derive(Default)]
pub struct Loaded {
    /// `None` when the scheme declares no table.
    pub maps: Option<Arc<FieldMaps>>,
    /// Every table's pairs as JSON (empty without tables). The payload hash absorbs it, as it
    /// does `value_maps`: a changed row means a record may render differently, so records
    /// read again are sent again instead of being skipped as unchanged.
    pub fingerprint: Vec<u8>,
}

/// Seeds and loads every table `plan` declares.
pub async fn load(plan: &Plan, store: &Store, dry_run: bool) -> Result<Loaded, Error> {
    if plan.field_tables.is_empty() {
        return Ok(Loaded::default());
    }
    let mut tables = BTreeMap::new();
    let mut contents: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (name, declared) in &plan.field_tables {
        let table = store_table(declared);
        let seed: Vec<FieldMapping> = read_seed_file(declared)?
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.mapping)
            .collect();
        if !seed.is_empty() && !dry_run {
            let changes = store
                .put_field_mappings(&seed)
                .await
                .map_err(|e| seed_error(declared, e))?;
            if changes.added + changes.changed > 0 {
                tracing::info!(
                    table = %name,
                    added = changes.added,
                    changed = changes.changed,
                    "field mapping table seeded from its file"
                );
            }
        }
        let mut rows: BTreeMap<String, String> = store
            .list_field_mappings(&FieldMappingFilter::table(&table))
            .await?
            .into_iter()
            .map(|row| (row.crm_value, row.erp_value))
            .collect();
        if dry_run {
            for row in seed {
                rows.retain(|_, erp| *erp != row.erp_value);
                rows.insert(row.crm_value, row.erp_value);
            }
        }
        tables.insert(name.clone(), FieldMapTable::new(rows.clone()));
        contents.insert(name, rows);
    }
    Ok(Loaded {
        maps: Some(Arc::new(FieldMaps::new(tables))),
        fingerprint: serde_json::to_vec(&contents).unwrap_or_default(),
    })
}

fn seed_error(declared: &FieldTablePlan, e: StoreError) -> Error {
    let file = declared
        .file
        .as_ref()
        .map_or_else(String::new, |f| f.display().to_string());
    match e {
        StoreError::Conflict(message) => Error::config(format!(
            "{file}: field mapping table `{}` cannot be seeded: {message}",
            declared.name
        )),
        other => Error::from(other),
    }
}
