//! The field mapping tables a scheme declares (`field_mappings:`), resolved: each template
//! name with its store table `(data_center, channel, data_type)` and its seed file.
//!
//! Pure: the seed file's path is only joined to the scheme's directory here; the engine
//! and `ferry field-mappings` read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::RawFieldMappingTable;
use crate::diag::{did_you_mean, Diagnostic};

/// The channels seed 000 §6 allows.
pub const CHANNELS: &[&str] = &["ERP_K3CLOUD", "ERP_SAP", "ERP_U8", "OA", "STANDARD_CHANNEL"];

/// The channel of a table that names none.
pub const DEFAULT_CHANNEL: &str = "STANDARD_CHANNEL";

/// One declared table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTablePlan {
    /// The name templates use: `field_map('NAME')`.
    pub name: String,
    pub data_center: String,
    pub channel: String,
    pub data_type: String,
    /// The CSV file that seeds the table, relative paths joined to the scheme's directory.
    pub file: Option<PathBuf>,
}

/// `Err` says why `channel` is not one of [`CHANNELS`], with a did-you-mean.
pub fn check_channel(channel: &str) -> Result<(), String> {
    if CHANNELS.contains(&channel) {
        return Ok(());
    }
    let hint = did_you_mean(channel, CHANNELS.iter().copied())
        .map(|best| format!("did you mean `{best}`? "))
        .unwrap_or_default();
    Err(format!(
        "unknown channel `{channel}` — {hint}use one of {}",
        CHANNELS.join(", ")
    ))
}

/// Resolves the declarations; problems are reported at `field_mappings.NAME.FIELD`.
pub fn resolve(
    raw: &BTreeMap<String, RawFieldMappingTable>,
    scheme_file: &str,
) -> (BTreeMap<String, FieldTablePlan>, Vec<Diagnostic>) {
    let mut tables = BTreeMap::new();
    let mut problems = Vec::new();
    let directory = Path::new(scheme_file).parent().unwrap_or(Path::new(""));
    for (name, declared) in raw {
        let path = format!("field_mappings.{name}");
        let channel = declared.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
        if let Err(message) = check_channel(&channel) {
            problems.push(Diagnostic::error(format!("{path}.channel"), message));
        }
        let data_type = declared.data_type.clone().unwrap_or_else(|| name.clone());
        if data_type.trim().is_empty() {
            problems.push(Diagnostic::error(format!("{path}.data_type"), "the data type is empty"));
        }
        let file = match declared.file.as_deref() {
            Some("") => {
                problems.push(Diagnostic::error(format!("{path}.file"), "the file name is empty"));
                None
            }
            Some(file) => Some(directory.join(file)),
            None => None,
        };
        tables.insert(
            name.clone(),
            FieldTablePlan {
                name: name.clone(),
                data_center: declared.data_center.clone().unwrap_or_default(),
                channel,
                data_type,
                file,
            },
        );
    }
    (tables, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_get_defaults_and_files_next_to_the_scheme() {
        let raw = BTreeMap::from([
            ("employee".to_owned(), RawFieldMappingTable::default()),
            (
                "dept".to_owned(),
                RawFieldMappingTable {
                    data_type: Some("department".to_owned()),
                    channel: Some("ERP_K3CLOUD".to_owned()),
                    data_center: Some("dc1".to_owned()),
                    file: Some("maps/dept.csv".to_owned()),
                },
            ),
        ]);
        let (tables, problems) = resolve(&raw, "schemes/orders.yaml");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(tables["employee"].channel, DEFAULT_CHANNEL);
        assert_eq!(tables["employee"].data_type, "employee");
        assert_eq!(tables["employee"].data_center, "");
        assert_eq!(tables["dept"].data_type, "department");
        assert_eq!(tables["dept"].file, Some(PathBuf::from("schemes/maps/dept.csv")));
    }

    #[test]
    fn an_unknown_channel_is_named_with_a_suggestion() {
        let raw = BTreeMap::from([(
            "employee".to_owned(),
            RawFieldMappingTable {
                channel: Some("ERP_K3CLOD".to_owned()),
                ..RawFieldMappingTable::default()
            },
        )]);
        let (_, problems) = resolve(&raw, "s.yaml");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "field_mappings.employee.channel");
        assert!(
            problems[0].message.contains("did you mean `ERP_K3CLOUD`"),
            "{}",
            problems[0].message
        );
    }
}
