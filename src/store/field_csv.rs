//! Field mapping tables as CSV: what `ferry field-mappings import|export` and a scheme's
//! `field_mappings.NAME.file` read and write. Pure text in, rows out.
//!
//! # The format
//! A header row, then one row per mapping. Columns, in any order (the seed's names in
//! brackets are accepted too): `crm_value` (`fsDataId`) and `erp_value` (`erpDataId`),
//! required; `crm_name` (`fsDataName`), `erp_name` (`erpDataName`), `data_center`
//! (`dataCenterId`), `channel`, `data_type` (`dataType`), optional. A missing table column,
//! or an empty cell in one, takes the caller's default (the scheme's declaration or the
//! command's flags). Export writes all seven columns.
//!
//! # Promises
//! Every problem names its line (1 is the header): an unknown or repeated column, a missing
//! value, an unknown channel, a CRM or ERP value that appears twice in one table.

use std::collections::HashMap;

use super::field_mappings::{FieldMapping, FieldTable};
use crate::scheme::field_tables::check_channel;

/// The table of rows whose file does not say (column absent or cell empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvDefaults {
    pub data_center: Option<String>,
    pub channel: Option<String>,
    pub data_type: Option<String>,
}

impl CsvDefaults {
    /// Every row belongs to `table` unless it says otherwise.
    pub fn table(table: &FieldTable) -> CsvDefaults {
        CsvDefaults {
            data_center: Some(table.data_center.clone()),
            channel: Some(table.channel.clone()),
            data_type: Some(table.data_type.clone()),
        }
    }
}

/// A problem at one line of the file (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: u64,
    pub message: String,
}

/// One row read, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    pub line: u64,
    pub mapping: FieldMapping,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Column {
    DataCenter,
    Channel,
    DataType,
    CrmValue,
    CrmName,
    ErpValue,
    ErpName,
}

const HEADER: [&str; 7] = [
    "data_center",
    "channel",
    "data_type",
    "crm_value",
    "crm_name",
    "erp_value",
    "erp_name",
];

fn column(name: &str) -> Option<Column> {
    let normal = name.trim().trim_start_matches('\u{feff}').to_ascii_lowercase();
    Some(match normal.as_str() {
        "data_center" | "datacenterid" => Column::DataCenter,
        "channel" => Column::Channel,
        "data_type" | "datatype" => Column::DataType,
        "crm_value" | "fsdataid" => Column::CrmValue,
        "crm_name" | "fsdataname" => Column::CrmName,
        "erp_value" | "erpdataid" => Column::ErpValue,
        "erp_name" | "erpdataname" => Column::ErpName,
        _ => return None,
    })
}

/// Reads a CSV table (see the module doc).
pub fn read(text: &str, defaults: &CsvDefaults) -> Result<Vec<CsvRow>, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            return Err(CsvError {
                line: 1,
                message: format!(
                    "the file is empty; it needs a header row such as `{}`",
                    HEADER.join(",")
                ),
            })
        }
        Some(header) => header.map_err(|e| csv_error(text, e))?,
    };
    let mut columns: Vec<Column> = Vec::new();
    for name in header.iter() {
        let Some(found) = column(name) else {
            return Err(CsvError {
                line: 1,
                message: format!("unknown column `{name}` — the columns are {}", HEADER.join(", ")),
            });
        };
        if columns.contains(&found) {
            return Err(CsvError {
                line: 1,
                message: format!("column `{name}` appears twice"),
            });
        }
        columns.push(found);
    }
    for (required, name) in [(Column::CrmValue, "crm_value"), (Column::ErpValue, "erp_value")] {
        if !columns.contains(&required) {
            return Err(CsvError {
                line: 1,
                message: format!("the header has no `{name}` column"),
            });
        }
    }

    let mut rows = Vec::new();
    // (table, side, value) → line of its first row, to report repeats.
    let mut seen: HashMap<(FieldTable, bool, String), u64> = HashMap::new();
    for record in records {
        let record = record.map_err(|e| csv_error(text, e))?;
        // The reader's own line count skips blank lines; the byte offset does not.
        let line = record.position().map_or(0, |p| line_of(text, p.byte()));
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        if record.len() != columns.len() {
            return Err(CsvError {
                line,
                message: format!("{} values for {} columns", record.len(), columns.len()),
            });
        }
        let cell = |wanted: Column| {
            columns
                .iter()
                .position(|c| *c == wanted)
                .and_then(|index| record.get(index))
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let fail = |message: String| CsvError { line, message };
        let table_value = |wanted: Column, default: &Option<String>, name: &str| {
            cell(wanted)
                .map(str::to_owned)
                .or_else(|| default.clone())
                .ok_or_else(|| {
                    fail(format!(
                        "no {name}: add a `{name}` column, or name the table (--{})",
                        name.replace('_', "-")
                    ))
                })
        };
        let channel = table_value(Column::Channel, &defaults.channel, "channel")?;
        check_channel(&channel).map_err(fail)?;
        let mapping = FieldMapping {
            data_center: cell(Column::DataCenter)
                .map(str::to_owned)
                .or_else(|| defaults.data_center.clone())
                .unwrap_or_default(),
            channel,
            data_type: table_value(Column::DataType, &defaults.data_type, "data_type")?,
            crm_value: cell(Column::CrmValue)
                .ok_or_else(|| fail("the crm_value is empty".to_owned()))?
                .to_owned(),
            crm_name: cell(Column::CrmName).map(str::to_owned),
            erp_value: cell(Column::ErpValue)
                .ok_or_else(|| fail("the erp_value is empty".to_owned()))?
                .to_owned(),
            erp_name: cell(Column::ErpName).map(str::to_owned),
        };
        for (erp_side, value) in [(false, &mapping.crm_value), (true, &mapping.erp_value)] {
            let key = (mapping.table(), erp_side, value.clone());
            if let Some(first) = seen.insert(key, line) {
                let side = if erp_side { "ERP" } else { "CRM" };
                return Err(fail(format!(
                    "{side} value {value:?} of table {} appears again (first on line {first}); a value maps to one value",
                    super::describe_table(&mapping.table())
                )));
            }
        }
        rows.push(CsvRow { line, mapping });
    }
    Ok(rows)
}

/// The 1-based line of the record starting at byte `offset` of `text` (a record's offset
/// may point at the blank lines before it).
fn line_of(text: &str, offset: u64) -> u64 {
    let bytes = text.as_bytes();
    let mut end = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
        end += 1;
    }
    bytes[..end].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

fn csv_error(text: &str, err: csv::Error) -> CsvError {
    let line = err.position().map_or(0, |p| line_of(text, p.byte()));
    let message = match err.kind() {
        csv::ErrorKind::Utf8 { .. } => "the file is not UTF-8 text; save it as UTF-8".to_owned(),
        _ => err.to_string(),
    };
    CsvError { line, message }
}

/// The rows as CSV with all seven columns.
pub fn write(rows: &[FieldMapping]) -> Result<String, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| format!("cannot write CSV: {e}");
    writer.write_record(HEADER).map_err(failed)?;
    for row in rows {
        writer
            .write_record([
                row.data_center.as_str(),
                &row.channel,
                &row.data_type,
                &row.crm_value,
                row.crm_name.as_deref().unwrap_or(""),
                &row.erp_value,
                row.erp_name.as_deref().unwrap_or(""),
            ])
            .map_err(failed)?;
    }
    let bytes = writer.into_inner().map_err(|e| format!("cannot write CSV: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("cannot write CSV: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn employees() -> CsvDefaults {
        CsvDefaults {
            data_center: None,
            channel: Some("ERP_K3CLOUD".to_owned()),
            data_type: Some("employee".to_owned()),
        }
    }

    #[test]
    fn rows_take_the_table_from_defaults_and_columns_in_any_order() {
        let text = "erp_value,crm_value,erp_name\n0001,E1,Zhang San\n\n\"00,2\",E2,\n";
        let rows = read(text, &employees()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].mapping.crm_value, "E1");
        assert_eq!(rows[0].mapping.erp_name.as_deref(), Some("Zhang San"));
        assert_eq!(rows[0].mapping.channel, "ERP_K3CLOUD");
        assert_eq!(rows[0].mapping.data_center, "");
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].mapping.erp_value, "00,2");
        assert_eq!(rows[1].mapping.erp_name, None);
    }

    #[test]
    fn the_seeds_column_names_are_read_and_export_reads_back() {
        let text = "dataCenterId,channel,dataType,fsDataId,fsDataName,erpDataId,erpDataName\n\
                    dc1,ERP_SAP,employee,E1,Zhang,0001,Zhang S.\n";
        let rows = read(text, &CsvDefaults::default()).unwrap();
        assert_eq!(rows[0].mapping.data_center, "dc1");
        assert_eq!(rows[0].mapping.channel, "ERP_SAP");
        let mappings: Vec<FieldMapping> = rows.iter().map(|r| r.mapping.clone()).collect();
        let written = write(&mappings).unwrap();
        assert!(
            written.starts_with("data_center,channel,data_type,crm_value,"),
            "{written}"
        );
        let again: Vec<FieldMapping> = read(&written, &CsvDefaults::default())
            .unwrap()
            .into_iter()
            .map(|r| r.mapping)
            .collect();
        assert_eq!(again, mappings);
    }

    #[test]
    fn problems_name_their_line() {
        let cases = [
            ("", 1, "empty"),
            ("crm_value,erp_value,owner\n", 1, "unknown column `owner`"),
            ("crm_value\nE1\n", 1, "no `erp_value` column"),
            ("crm_value,erp_value\nE1,0001\nE2\n", 3, "1 values for 2 columns"),
            ("crm_value,erp_value\nE1,0001\nE2,\n", 3, "erp_value is empty"),
            (
                "crm_value,erp_value\nE1,0001\nE2,0002\nE1,0003\n",
                4,
                "CRM value \"E1\"",
            ),
            ("crm_value,erp_value\nE1,0001\nE2,0001\n", 3, "first on line 2"),
            ("crm_value,erp_value,channel\nE1,0001,SAP\n", 2, "unknown channel `SAP`"),
        ];
        for (text, line, needle) in cases {
            let err = read(text, &employees()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
        }
        let no_table = read("crm_value,erp_value\nE1,0001\n", &CsvDefaults::default()).unwrap_err();
        assert!(no_table.message.contains("no channel"), "{no_table}");
    }
}
