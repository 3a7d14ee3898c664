//! `ferry field-mappings add|list|delete|import|export|lint`: the store-backed value tables
//! that `field_map('NAME')` reads (seed 000 §6's ERP field mapping table).
//!
//! - A table is `(data center, channel, data type)`. `--table NAME` with `--scheme FILE`
//!   names a table the scheme declares under `field_mappings` (its channel and data center
//!   come from there); without `--scheme`, `--table` is the data type and `--channel`
//!   (default STANDARD_CHANNEL) and `--data-center` (default empty) complete it.
//! - Bad input exits 2 with the reason: an unknown channel, an undeclared table, a CSV
//!   problem as `FILE:LINE: …`, an ERP value another CRM value already has.
//! - `lint` exits 1 when a seed file and the store differ or the ledger holds values that
//!   still have no mapping, 0 when everything agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::json_or_text;
use super::{logging, stores, FormatArg, StoreArg};
use crate::engine::field_maps::{read_seed_file, store_table};
use crate::error::exit;
use crate::scheme::field_tables::{check_channel, FieldTablePlan, DEFAULT_CHANNEL};
use crate::store::field_csv::{self, CsvDefaults};
use crate::store::{
    describe_table, FailureLedger, FailureStatus, FieldMapping, FieldMappingFilter, FieldMappingStore, FieldSide,
    FieldTable, Store, StoreError,
};

#[derive(Subcommand)]
pub enum FieldMappingsAction {
    /// Add a CRM value ↔ ERP value row, or change the ERP value of a CRM value.
    #[command(after_help = "Examples:
  ferry field-mappings add --table employee --channel ERP_K3CLOUD --crm E1001 --erp 0001 --erp-name 'Zhang San'
  ferry field-mappings add --scheme schemes/orders.yaml --table employee --crm E1002 --erp 0002

Then `ferry failures retry SCHEME --all` sends the records that failed for want of the row.")]
    Add(AddArgs),
    /// List rows, by table and CRM value.
    #[command(after_help = "Examples:
  ferry field-mappings list
  ferry field-mappings list --table employee --channel ERP_K3CLOUD --json
  ferry field-mappings list --scheme schemes/orders.yaml")]
    List(ListArgs),
    /// Delete the row of a CRM value.
    #[command(after_help = "Examples:
  ferry field-mappings delete --table employee --channel ERP_K3CLOUD --crm E1001
  ferry field-mappings delete --scheme schemes/orders.yaml --table employee --crm E1001")]
    Delete(DeleteArgs),
    /// Add or change rows from a CSV file, all or nothing.
    #[command(after_help = "Examples:
  ferry field-mappings import employees.csv --table employee --channel ERP_K3CLOUD
  ferry field-mappings import maps.csv          # the file has data_type and channel columns

Columns: crm_value, erp_value (required), crm_name, erp_name, data_center, channel, data_type
(the seed's fsDataId, erpDataId, fsDataName, erpDataName, dataCenterId, dataType also work).
A table column the file lacks takes --table, --channel and --data-center.")]
    Import(ImportArgs),
    /// Write rows as CSV (to a file, or `-` for standard output).
    #[command(after_help = "Examples:
  ferry field-mappings export - --table employee
  ferry field-mappings export schemes/employees.csv --scheme schemes/orders.yaml --table employee")]
    Export(ExportArgs),
    /// Compare a scheme's seed files with the store, and list values the ledger shows
    /// without a mapping. Exit 1 when anything is out of line.
    #[command(after_help = "Examples:
  ferry field-mappings lint schemes/orders.yaml
  ferry field-mappings lint schemes/orders.yaml --json --store /var/lib/ferry/ferry.db")]
    Lint(LintArgs),
}

/// Which table (or, for listings, which tables).
#[derive(Args, Clone, Default)]
pub struct TableArgs {
    /// A scheme file: `--table` then names a table it declares under `field_mappings`.
    #[arg(long, value_name = "FILE")]
    scheme: Option<PathBuf>,
    /// The table: its data type (e.g. employee), or its name in the `--scheme`.
    #[arg(long, visible_alias = "data-type")]
    table: Option<String>,
    /// ERP_K3CLOUD, ERP_SAP, ERP_U8, OA or STANDARD_CHANNEL (default for add, delete, import).
    #[arg(long, conflicts_with = "scheme")]
    channel: Option<String>,
    /// The data center (account set) id; empty for a single account set.
    #[arg(long, conflicts_with = "scheme")]
    data_center: Option<String>,
}

#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The CRM value (the seed's fsDataId; for employees the employee id).
    #[arg(long)]
    crm: String,
    /// The ERP value (the seed's erpDataId).
    #[arg(long)]
    erp: String,
    /// The CRM value's display name.
    #[arg(long)]
    crm_name: Option<String>,
    /// The ERP value's display name.
    #[arg(long)]
    erp_name: Option<String>,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    create_dirs: stores::CreateDirsArg,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    table: TableArgs,
    #[command(flatten)]
    output: FormatArg,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The CRM value whose row goes.
    #[arg(long)]
    crm: String,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The CSV file.
    file: PathBuf,
    #[command(flatten)]
    table: TableArgs,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    create_dirs: stores::CreateDirsArg,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Where to write: a file path, or `-` for standard output.
    file: PathBuf,
    #[command(flatten)]
    table: TableArgs,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
pub struct LintArgs {
    /// The scheme file whose `field_mappings` are checked.
    scheme: PathBuf,
    /// Look at this many of the scheme's newest open ledger rows.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    #[command(flatten)]
    output: FormatArg,
    #[command(flatten)]
    store: StoreArg,
}

pub async fn field_mappings(action: FieldMappingsAction) -> i32 {
    let result = match action {
        FieldMappingsAction::Add(args) => add(args).await,
        FieldMappingsAction::List(args) => list(args).await,
        FieldMappingsAction::Delete(args) => delete(args).await,
        FieldMappingsAction::Import(args) => import(args).await,
        FieldMappingsAction::Export(args) => export(args).await,
        FieldMappingsAction::Lint(args) => lint(args).await,
    };
    result.unwrap_or_else(|code| code)
}

// ---- tables ---------------------------------------------------------------------------

fn config_error(message: impl std::fmt::Display) -> i32 {
    logging::error(message);
    exit::CONFIG
}

/// A scheme's `name` and its declared tables.
fn scheme_tables(path: &Path) -> Result<(String, BTreeMap<String, FieldTablePlan>), i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format_args!("{}: cannot read the scheme file: {e}", path.display())))?;
    let parsed = crate::scheme::yaml::load_with(&text, &|_| None, crate::scheme::MissingEnv::Note);
    let name = parsed
        .value
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| config_error(format_args!("{}: the scheme has no `name`", path.display())))?
        .to_owned();
    let raw = match parsed.value.get("field_mappings") {
        None => BTreeMap::new(),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
            config_error(format_args!(
                "{}: field_mappings: {e} (check it with `ferry validate`)",
                path.display()
            ))
        })?,
    };
    let (tables, problems) = crate::scheme::field_tables::resolve(&raw, &path.display().to_string());
    if let Some(problem) = problems.first() {
        return Err(config_error(format_args!(
            "{}: {}: {}",
            path.display(),
            problem.path,
            problem.message
        )));
    }
    Ok((name, tables))
}

impl TableArgs {
    /// The one table the flags name (for add and delete).
    fn table(&self) -> Result<FieldTable, i32> {
        if let Some(scheme) = &self.scheme {
            let Some(name) = &self.table else {
                return Err(config_error(
                    "--scheme needs --table NAME: one of the tables it declares",
                ));
            };
            let (_, tables) = scheme_tables(scheme)?;
            return declared(scheme, &tables, name).map(store_table);
        }
        let Some(data_type) = self.table.clone().filter(|t| !t.is_empty()) else {
            return Err(config_error(
                "name the table with --table (its data type, e.g. employee)",
            ));
        };
        let channel = self.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
        check_channel(&channel).map_err(|message| config_error(format_args!("--channel: {message}")))?;
        Ok(FieldTable {
            data_center: self.data_center.clone().unwrap_or_default(),
            channel,
            data_type,
        })
    }

    /// The rows the flags select (for list and export): every flag given narrows.
    fn filters(&self) -> Result<Vec<FieldMappingFilter>, i32> {
        if let Some(scheme) = &self.scheme {
            let (_, tables) = scheme_tables(scheme)?;
            return match &self.table {
                Some(name) => declared(scheme, &tables, name).map(|t| vec![FieldMappingFilter::table(&store_table(t))]),
                None => Ok(tables
                    .values()
                    .map(|t| FieldMappingFilter::table(&store_table(t)))
                    .collect()),
            };
        }
        if let Some(channel) = &self.channel {
            check_channel(channel).map_err(|message| config_error(format_args!("--channel: {message}")))?;
        }
        Ok(vec![FieldMappingFilter {
            data_center: self.data_center.clone(),
            channel: self.channel.clone(),
            data_type: self.table.clone(),
        }])
    }

    /// The table of CSV rows that do not name theirs.
    fn csv_defaults(&self) -> Result<CsvDefaults, i32> {
        if self.scheme.is_some() {
            return self.table().map(|table| CsvDefaults::table(&table));
        }
        if let Some(channel) = &self.channel {
            check_channel(channel).map_err(|message| config_error(format_args!("--channel: {message}")))?;
        }
        Ok(CsvDefaults {
            data_center: self.data_center.clone(),
            channel: Some(self.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.to_owned())),
            data_type: self.table.clone(),
        })
    }
}

fn declared<'t>(
    scheme: &Path,
    tables: &'t BTreeMap<String, FieldTablePlan>,
    name: &str,
) -> Result<&'t FieldTablePlan, i32> {
    tables.get(name).ok_or_else(|| {
        let known: Vec<&str> = tables.keys().map(String::as_str).collect();
        let declared = if known.is_empty() {
            "it declares no field_mappings".to_owned()
        } else {
            format!("it declares {}", known.join(", "))
        };
        config_error(format_args!(
            "{}: no field mapping table `{name}` — {declared}",
            scheme.display()
        ))
    })
}

async fn open_for_write(store: &StoreArg, create_dirs: stores::CreateDirsArg) -> Result<Store, i32> {
    stores::check_creatable(&store.store, create_dirs)?;
    super::open_store(&store.store).await
}

fn store_failed(e: StoreError) -> i32 {
    let code = match e {
        StoreError::Conflict(_) | StoreError::InvalidRequest(_) => exit::CONFIG,
        _ => exit::ABORTED,
    };
    logging::error(e);
    code
}

// ---- commands -----------------------------------------------------------------------

async fn add(args: AddArgs) -> Result<i32, i32> {
    let table = args.table.table()?;
    if args.crm.is_empty() || args.erp.is_empty() {
        return Err(config_error("--crm and --erp must not be empty"));
    }
    let row = FieldMapping {
        data_center: table.data_center.clone(),
        channel: table.channel.clone(),
        data_type: table.data_type.clone(),
        crm_value: args.crm,
        crm_name: args.crm_name,
        erp_value: args.erp,
        erp_name: args.erp_name,
    };
    let store = open_for_write(&args.store, args.create_dirs).await?;
    let changes = store
        .put_field_mappings(std::slice::from_ref(&row))
        .await
        .map_err(store_failed)?;
    let verb = if changes.added > 0 {
        "added"
    } else if changes.changed > 0 {
        "changed"
    } else {
        "already there"
    };
    println!(
        "{verb}: {} {:?} → {:?}",
        describe_table(&table),
        row.crm_value,
        row.erp_value
    );
    Ok(exit::OK)
}

async fn list(args: ListArgs) -> Result<i32, i32> {
    let filters = args.table.filters()?;
    let store = stores::open_existing(&args.store.store).await?;
    let rows = rows_of(&store, &filters).await?;
    json_or_text(args.output.is_json(), &rows, || table_text(&rows));
    Ok(exit::OK)
}

async fn rows_of(store: &Store, filters: &[FieldMappingFilter]) -> Result<Vec<FieldMapping>, i32> {
    let mut rows = Vec::new();
    for filter in filters {
        rows.extend(store.list_field_mappings(filter).await.map_err(store_failed)?);
    }
    Ok(rows)
}

fn table_text(rows: &[FieldMapping]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<17} {:<12} {:<20} {:<20} ERP NAME",
        "TABLE", "CHANNEL", "DATA CENTER", "CRM VALUE", "ERP VALUE"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<14} {:<17} {:<12} {:<20} {:<20} {}",
            row.data_type,
            row.channel,
            if row.data_center.is_empty() {
                "-"
            } else {
                &row.data_center
            },
            row.crm_value,
            row.erp_value,
            row.erp_name.as_deref().or(row.crm_name.as_deref()).unwrap_or("")
        );
    }
    let _ = writeln!(out, "{} row(s)", rows.len());
    out
}

async fn delete(args: DeleteArgs) -> Result<i32, i32> {
    let table = args.table.table()?;
    let store = stores::open_existing(&args.store.store).await?;
    if store
        .delete_field_mapping(&table, &args.crm)
        .await
        .map_err(store_failed)?
    {
        println!("deleted: {} {:?}", describe_table(&table), args.crm);
        Ok(exit::OK)
    } else {
        Err(config_error(format_args!(
            "table {} has no row for CRM value {:?}; see `ferry field-mappings list`",
            describe_table(&table),
            args.crm
        )))
    }
}

async fn import(args: ImportArgs) -> Result<i32, i32> {
    let defaults = args.table.csv_defaults()?;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| config_error(format_args!("{}: cannot read: {e}", args.file.display())))?;
    let rows = field_csv::read(&text, &defaults)
        .map_err(|e| config_error(format_args!("{}:{}: {}", args.file.display(), e.line, e.message)))?;
    let store = open_for_write(&args.store, args.create_dirs).await?;
    let mappings: Vec<FieldMapping> = rows.into_iter().map(|row| row.mapping).collect();
    let changes = store.put_field_mappings(&mappings).await.map_err(|e| {
        let code = store_failed_quietly(&e);
        logging::error(format_args!("{}: nothing imported: {e}", args.file.display()));
        code
    })?;
    println!(
        "{}: {} added, {} changed, {} unchanged",
        args.file.display(),
        changes.added,
        changes.changed,
        changes.unchanged
    );
    Ok(exit::OK)
}

fn store_failed_quietly(e: &StoreError) -> i32 {
    match e {
        StoreError::Conflict(_) | StoreError::InvalidRequest(_) => exit::CONFIG,
        _ => exit::ABORTED,
    }
}

async fn export(args: ExportArgs) -> Result<i32, i32> {
    let filters = args.table.filters()?;
    let store = stores::open_existing(&args.store.store).await?;
    let rows = rows_of(&store, &filters).await?;
    let text = field_csv::write(&rows).map_err(|e| {
        logging::error(e);
        exit::ABORTED
    })?;
    if args.file.as_os_str() == "-" {
        print!("{text}");
    } else {
        std::fs::write(&args.file, text)
            .map_err(|e| config_error(format_args!("{}: cannot write: {e}", args.file.display())))?;
        eprintln!("{}: {} row(s) written", args.file.display(), rows.len());
    }
    Ok(exit::OK)
}

// ---- lint -----------------------------------------------------------------------------

/// Where a seed file and the store disagree about one CRM value.
#[derive(Debug, Serialize, PartialEq)]
struct Drift {
    table: String,
    crm_value: String,
    /// `file:line` of the file's row, when the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    /// The ERP value in the file (`None`: the file lacks the row).
    file: Option<String>,
    /// The ERP value in the store (`None`: the store lacks the row).
    store: Option<String>,
}

/// A value the ledger shows without a mapping, and the failures waiting for it.
#[derive(Debug, Serialize, PartialEq)]
struct Unmapped {
    table: String,
    direction: &'static str,
    value: String,
    failures: Vec<i64>,
}

#[derive(Debug, Serialize)]
struct LintReport {
    scheme: String,
    tables: Vec<String>,
    drift: Vec<Drift>,
    unmapped: Vec<Unmapped>,
}

async fn lint(args: LintArgs) -> Result<i32, i32> {
    let (scheme, tables) = scheme_tables(&args.scheme)?;
    if tables.is_empty() {
        return Err(config_error(format_args!(
            "{}: the scheme declares no field_mappings",
            args.scheme.display()
        )));
    }
    let store = stores::open_existing(&args.store.store).await?;
    let mut report = LintReport {
        scheme: scheme.clone(),
        tables: tables.keys().cloned().collect(),
        drift: Vec::new(),
        unmapped: Vec::new(),
    };
    for (name, declared) in &tables {
        let stored = store
            .list_field_mappings(&FieldMappingFilter::table(&store_table(declared)))
            .await
            .map_err(store_failed)?;
        let seed = read_seed_file(declared).map_err(|e| config_error(e.message))?;
        if let (Some(seed), Some(path)) = (seed, &declared.file) {
            report.drift.extend(drift(name, path, &seed, &stored));
        }
    }

    let failures = store
        .list_failures(Some(&scheme), Some(FailureStatus::Open), args.limit)
        .await
        .map_err(store_failed)?;
    let mut waiting: BTreeMap<crate::template::Unmapped, BTreeSet<i64>> = BTreeMap::new();
    for failure in &failures {
        if let Some(found) = crate::template::parse_unmapped(&failure.message) {
            waiting.entry(found).or_default().insert(failure.id);
        }
    }
    for (found, ids) in waiting {
        let Some(declared) = tables.get(&found.table) else {
            continue;
        };
        let side = if found.reverse { FieldSide::Erp } else { FieldSide::Crm };
        let mapped = store
            .find_field_mapping(&store_table(declared), side, &found.value)
            .await
            .map_err(store_failed)?;
        if mapped.is_none() {
            report.unmapped.push(Unmapped {
                table: found.table,
                direction: if found.reverse { "erp_to_crm" } else { "crm_to_erp" },
                value: found.value,
                failures: ids.into_iter().collect(),
            });
        }
    }

    let clean = report.drift.is_empty() && report.unmapped.is_empty();
    json_or_text(args.output.is_json(), &report, || lint_text(&report, &args.scheme));
    Ok(if clean { exit::OK } else { exit::ROWS_FAILED })
}

/// The CRM values where `seed` (the file at `path`) and `stored` disagree, file order first.
fn drift(name: &str, path: &Path, seed: &[field_csv::CsvRow], stored: &[FieldMapping]) -> Vec<Drift> {
    let in_store: BTreeMap<&str, &FieldMapping> = stored.iter().map(|row| (row.crm_value.as_str(), row)).collect();
    let mut out = Vec::new();
    for row in seed {
        let found = in_store.get(row.mapping.crm_value.as_str());
        if found.is_some_and(|stored| **stored == row.mapping) {
            continue;
        }
        out.push(Drift {
            table: name.to_owned(),
            crm_value: row.mapping.crm_value.clone(),
            at: Some(format!("{}:{}", path.display(), row.line)),
            file: Some(row.mapping.erp_value.clone()),
            store: found.map(|stored| stored.erp_value.clone()),
        });
    }
    let in_file: BTreeSet<&str> = seed.iter().map(|row| row.mapping.crm_value.as_str()).collect();
    for row in stored {
        if !in_file.contains(row.crm_value.as_str()) {
            out.push(Drift {
                table: name.to_owned(),
                crm_value: row.crm_value.clone(),
                at: None,
                file: None,
                store: Some(row.erp_value.clone()),
            });
        }
    }
    out
}

fn lint_text(report: &LintReport, scheme: &Path) -> String {
    let mut out = String::new();
    for d in &report.drift {
        let what = match (&d.file, &d.store) {
            (Some(file), Some(store)) if file == store => format!("names differ (ERP value {file:?} in both)"),
            (Some(file), Some(store)) => format!("the file says {file:?}, the store {store:?}"),
            (Some(file), None) => format!("in the file ({file:?}), not in the store (the next run adds it)"),
            (None, Some(store)) => format!("in the store ({store:?}), not in the file"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "{}: table {} CRM value {:?}: {what}",
            d.at.as_deref().unwrap_or(&scheme.display().to_string()),
            d.table,
            d.crm_value
        );
    }
    for u in &report.unmapped {
        let ids: Vec<String> = u.failures.iter().map(i64::to_string).collect();
        let flag = if u.direction == "erp_to_crm" { "--erp" } else { "--crm" };
        let _ = writeln!(
            out,
            "unmapped: table {} {} value {:?} ({} failure(s): {}) — ferry field-mappings add --scheme {} --table {} {flag} {:?} …",
            u.table,
            if u.direction == "erp_to_crm" { "ERP" } else { "CRM" },
            u.value,
            u.failures.len(),
            ids.join(" "),
            scheme.display(),
            u.table,
            u.value
        );
    }
    let _ = writeln!(
        out,
        "{}: {} table(s), {} difference(s) between files and store, {} unmapped value(s) in the ledger",
        report.scheme,
        report.tables.len(),
        report.drift.len(),
        report.unmapped.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(crm: &str, erp: &str) -> FieldMapping {
        FieldMapping {
            data_center: String::new(),
            channel: "OA".to_owned(),
            data_type: "employee".to_owned(),
            crm_value: crm.to_owned(),
            crm_name: None,
            erp_value: erp.to_owned(),
            erp_name: None,
        }
    }

    #[test]
    fn drift_lists_changed_missing_and_extra_rows() {
        let seed = vec![
            field_csv::CsvRow {
                line: 2,
                mapping: row("E1", "0001"),
            },
            field_csv::CsvRow {
                line: 3,
                mapping: row("E2", "0002"),
            },
            field_csv::CsvRow {
                line: 4,
                mapping: row("E3", "0003"),
            },
        ];
        let stored = vec![row("E1", "0001"), row("E2", "0222"), row("E9", "0009")];
        let found = drift("employee", Path::new("maps/e.csv"), &seed, &stored);
        let summary: Vec<String> = found
            .iter()
            .map(|d| format!("{} {:?} {:?} {:?}", d.crm_value, d.at, d.file, d.store))
            .collect();
        assert_eq!(
            summary,
            [
                r#"E2 Some("maps/e.csv:3") Some("0002") Some("0222")"#,
                r#"E3 Some("maps/e.csv:4") Some("0003") None"#,
                r#"E9 None None Some("0009")"#,
            ]
        );
    }
}
