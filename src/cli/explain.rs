//! `ferry explain SCHEME SOURCE_ID`: why one record did not arrive, or arrived wrong.
//!
//! From the store: the record's mapping (status, target id, payload hash, when synced),
//! its events newest first (run, window, outcome, payload hash, the request sent and the
//! target's answer), its ledger rows in every status, and the rendered row of its newest
//! event field by field, each with the template of `target.fields` that produced it. With
//! `--fetch`, the record as the source has it now (by `source.detail`) and the row a run
//! would render from it, and whether it changed since the last sync.
//!
//! Only reads: a missing store is an error naming its path (exit 2). Secrets are masked:
//! events and ledger rows are stored masked, and what is read or shown now (the fetched
//! record, its row, the templates) goes through the scheme's redactor. Without `--fetch`
//! the scheme's `${VARS}` need not be set (placeholders stand in).

use super::output::json_or_text;
use super::{load_for_run, load_scheme, logging, read_env_file, stores, EnvArg, FormatArg, StoreArg};
use crate::error::exit;
use crate::http::HttpClient;
use crate::scheme::Plan;
use crate::store::{EventLog, Failure, FailureLedger, Mapping, MappingQuery, MappingStore, RecordEvent};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Args)]
#[command(after_help = "Examples:
  ferry explain schemes/shop-orders-to-erp.yaml SO0000042
  ferry explain shop-orders-to-erp SO0000042 --json --store /var/lib/ferry/ferry.db
  ferry explain schemes/shop-orders-to-erp.yaml SO0000042 --fetch     # and read it from the source now")]
pub struct ExplainArgs {
    /// The scheme: its file (to show templates, and for --fetch) or its `name`.
    scheme: String,
    /// The record's id in the source (what `source.id` gives).
    source_id: String,
    /// Also read the record from the source now (by `source.detail`) and render its row;
    /// sends nothing to the target.
    #[arg(long)]
    fetch: bool,
    /// Show at most this many events, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    events: u32,
    #[command(flatten)]
    output: FormatArg,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    env: EnvArg,
}

/// One field of a rendered row and the template that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldLine {
    /// Where it sits in the row, e.g. `FEntity[0].FQty`.
    pub path: String,
    pub value: Value,
    /// The `target.fields` template (masked); none for a value no template names.
    pub template: Option<String>,
}

/// A rendered row, where it came from, and its fields.
#[derive(Serialize)]
struct RowReport {
    /// `event of run N` or `fetched now`.
    from: String,
    fields: Vec<FieldLine>,
}

#[derive(Serialize)]
struct FetchReport {
    record: Value,
    source_id: Option<String>,
    payload_hash: String,
    /// Whether its payload differs from the mapping's (the last sync); none when unmapped.
    changed_since_sync: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<RowReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row_error: Option<String>,
}

#[derive(Serialize)]
struct Explanation {
    scheme: String,
    source_id: String,
    mapping: Option<Mapping>,
    events: Vec<RecordEvent>,
    failures: Vec<Failure>,
    /// The rendered row of the newest event that has one.
    row: Option<RowReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched: Option<FetchReport>,
}

/// Most ledger rows shown.
const LEDGER_ROWS: i64 = 50;

pub async fn explain(args: ExplainArgs) -> i32 {
    let is_file = Path::new(&args.scheme).is_file();
    if args.fetch && !is_file {
        logging::error(format_args!(
            "--fetch reads the source, so it needs the scheme file, not only its name (got `{}`)",
            args.scheme
        ));
        return exit::CONFIG;
    }
    let plan = if args.fetch {
        match load_for_run(Path::new(&args.scheme), &args.env, false) {
            Ok(plan) => Some(plan),
            Err(code) => return code,
        }
    } else if is_file {
        let vars = match read_env_file(&args.env) {
            Ok(vars) => vars,
            Err(problems) => {
                for (d, text) in &problems {
                    logging::diagnostic(d, text);
                }
                return exit::CONFIG;
            }
        };
        let loaded = load_scheme(Path::new(&args.scheme), &vars, crate::scheme::MissingEnv::Note);
        if loaded.plan.is_none() {
            for d in &loaded.diagnostics {
                logging::diagnostic(d, &loaded.text);
            }
            logging::error(format_args!("{} is not valid", args.scheme));
            return exit::CONFIG;
        }
        loaded.plan
    } else {
        None
    };
    let scheme = match &plan {
        Some(plan) => plan.name.clone(),
        None => match stores::scheme_name(&args.scheme) {
            Ok(name) => name,
            Err(code) => return code,
        },
    };
    let store = match stores::open_existing(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let id = args.source_id.clone();
    let read = async {
        let mappings = store
            .query_mappings(&MappingQuery {
                scheme: Some(scheme.clone()),
                source_ids: vec![id.clone()],
                limit: Some(10),
                ..MappingQuery::default()
            })
            .await?;
        let events = store.record_events_for(&scheme, &id, i64::from(args.events)).await?;
        let failures = store.failures_of(&scheme, &id, LEDGER_ROWS).await?;
        Ok::<_, crate::store::StoreError>((mappings, events, failures))
    };
    let (mappings, events, failures) = match read.await {
        Ok(found) => found,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    let mapping = match &plan {
        Some(plan) => mappings.into_iter().find(|m| m.source_object == plan.source.object),
        None => mappings.into_iter().next(),
    };
    let row = events.iter().find_map(|e| {
        let row = e.row.as_ref()?;
        Some(RowReport {
            from: format!("event of run {} ({})", e.run_id, e.outcome),
            fields: row_fields(plan.as_ref(), row),
        })
    });
    let fetched = if args.fetch {
        let Some(plan) = &plan else {
            return exit::CONFIG;
        };
        let http = match HttpClient::new() {
            Ok(http) => http,
            Err(e) => {
                logging::error(e);
                return exit::ABORTED;
            }
        };
        let target_id = mapping.as_ref().and_then(|m| m.target_id.clone());
        match crate::engine::fetch_record(plan, &store, &http, &id, target_id).await {
            Ok(found) => {
                let (row, row_error) = match &found.row {
                    Ok(row) => (
                        Some(RowReport {
                            from: "fetched now".to_owned(),
                            fields: row_fields(Some(plan), row),
                        }),
                        None,
                    ),
                    Err(e) => (None, Some(e.clone())),
                };
                Some(FetchReport {
                    changed_since_sync: mapping
                        .as_ref()
                        .and_then(|m| m.payload_hash.as_ref())
                        .map(|h| *h != found.payload_hash),
                    record: found.record,
                    source_id: found.source_id,
                    payload_hash: found.payload_hash,
                    row,
                    row_error,
                })
            }
            Err(e) => {
                logging::error(format_args!(
                    "could not read {id} from the source: {}",
                    plan.redactor.redact(&e.message)
                ));
                return if e.kind == crate::error::ErrorKind::Config {
                    exit::CONFIG
                } else {
                    exit::ABORTED
                };
            }
        }
    } else {
        None
    };
    let explanation = Explanation {
        scheme,
        source_id: id,
        mapping,
        events,
        failures,
        row,
        fetched,
    };
    json_or_text(args.output.is_json(), &explanation, || {
        explanation_text(&explanation, args.events)
    });
    exit::OK
}

/// The fields of `row` with their templates (when the scheme is known), masked.
fn row_fields(plan: Option<&Plan>, row: &Value) -> Vec<FieldLine> {
    let templates = plan.map(|p| &p.raw.target.fields);
    let mut lines = field_lines(templates, row);
    if let Some(plan) = plan {
        for line in &mut lines {
            if let Some(t) = &mut line.template {
                *t = plan.redactor.redact(t).into_owned();
            }
        }
    }
    lines
}

/// Walks a rendered row beside the `target.fields` tree that produced it: one line per
/// leaf value, with the template at the same place (a `for_each` list's rows share the
/// templates of its `fields`).
pub fn field_lines(templates: Option<&Value>, row: &Value) -> Vec<FieldLine> {
    let mut out = Vec::new();
    walk(templates, row, String::new(), &mut out);
    out
}

fn walk(template: Option<&Value>, row: &Value, path: String, out: &mut Vec<FieldLine>) {
    let nested = match template {
        Some(Value::Object(map)) if map.contains_key("for_each") => Some((true, map.get("fields"))),
        Some(Value::Object(_)) => Some((false, template)),
        _ => None,
    };
    match (row, nested) {
        (Value::Array(rows), Some((true, fields))) => {
            for (index, item) in rows.iter().enumerate() {
                walk(fields, item, format!("{path}[{index}]"), out);
            }
        }
        (Value::Object(map), Some((false, Some(Value::Object(templates))))) => {
            for (key, value) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(templates.get(key), value, child, out);
            }
        }
        (Value::Object(map), None) if template.is_none() && !map.is_empty() => {
            for (key, value) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(None, value, child, out);
            }
        }
        _ => out.push(FieldLine {
            path,
            value: row.clone(),
            template: template.map(|t| match t {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }),
        }),
    }
}

fn explanation_text(e: &Explanation, shown: u32) -> String {
    let mut out = String::new();
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let _ = writeln!(out, "scheme {}, source id {}", e.scheme, e.source_id);
    let _ = writeln!(out, "\nmapping");
    match &e.mapping {
        None => {
            let _ = writeln!(
                out,
                "  none: no run has written or failed this record (is the id right? was it in a window read?)"
            );
        }
        Some(m) => {
            let target = match (&m.target_id, &m.target_name) {
                (Some(id), Some(name)) => format!("target {id} ({name})"),
                (Some(id), None) => format!("target {id}"),
                (None, _) => "no target id".to_owned(),
            };
            let _ = writeln!(out, "  status        {} → {target}", m.status);
            let _ = writeln!(out, "  payload hash  {}", m.payload_hash.as_deref().unwrap_or("—"));
            if let Some(first) = m.first_synced_at {
                let _ = writeln!(out, "  first synced  {}", time(first));
            }
            if let Some(last) = m.last_synced_at {
                let _ = writeln!(out, "  last synced   {}  (attempts {})", time(last), m.attempts);
            }
            if let Some(error) = &m.last_error {
                let _ = writeln!(out, "  last error    {error}");
            }
        }
    }
    let _ = writeln!(out, "\nhistory (newest first, at most {shown})");
    if e.events.is_empty() {
        let _ = writeln!(
            out,
            "  no events (runs keep them for records written or failed, see --keep-events)"
        );
    }
    for event in &e.events {
        let _ = writeln!(
            out,
            "  {}  run {}  {}  hash {}",
            time(event.at),
            event.run_id,
            event.outcome,
            event.payload_hash.as_deref().unwrap_or("—")
        );
        if let Some(window) = &event.window {
            let _ = writeln!(out, "      read in  {window}");
        }
        if let Some(request) = &event.request {
            let _ = writeln!(out, "      sent     {request}");
        }
        if let Some(answer) = &event.answer {
            let _ = writeln!(out, "      answer   {}", compact(answer));
        }
    }
    let _ = writeln!(out, "\nledger");
    if e.failures.is_empty() {
        let _ = writeln!(out, "  no ledger rows");
    }
    for f in &e.failures {
        let _ = writeln!(
            out,
            "  #{} {} {} {} (attempts {}, last {}): {}",
            f.id,
            f.status,
            f.stage,
            f.error_class,
            f.attempts,
            time(f.last_seen),
            f.message
        );
    }
    if let Some(row) = &e.row {
        write_row(&mut out, row);
    }
    if let Some(fetched) = &e.fetched {
        let _ = writeln!(out, "\nthe source now (hash {})", fetched.payload_hash);
        match fetched.changed_since_sync {
            Some(true) => {
                let _ = writeln!(
                    out,
                    "  changed since the last sync: the next run that reads it sends it"
                );
            }
            Some(false) => {
                let _ = writeln!(
                    out,
                    "  unchanged since the last sync: a run skips it (`--ids ID --force` resends it)"
                );
            }
            None => {}
        }
        let pretty = serde_json::to_string_pretty(&fetched.record).unwrap_or_default();
        for line in pretty.lines() {
            let _ = writeln!(out, "  {line}");
        }
        if let Some(row) = &fetched.row {
            write_row(&mut out, row);
        }
        if let Some(error) = &fetched.row_error {
            let _ = writeln!(out, "\nits row does not render: {error}");
        }
    }
    out
}

fn write_row(out: &mut String, row: &RowReport) {
    let _ = writeln!(out, "\nrendered row ({})", row.from);
    let width = row.fields.iter().map(|f| f.path.chars().count()).max().unwrap_or(0);
    for f in &row.fields {
        let value = compact(&f.value);
        let template = f.template.as_deref().unwrap_or("(no template)");
        let _ = writeln!(out, "  {:<width$}  {value:<20}  ← {template}", f.path);
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_leaf_of_the_row_meets_its_template() {
        let templates = json!({
            "FBillNo": "<< order_no >>",
            "FCustomerId": {"FNumber": "<< customer_code >>"},
            "FEntity": {"for_each": "$.lines[*]", "fields": {"FQty": "<< qty | int >>"}},
            "FKind": 3,
        });
        let row = json!({
            "FBillNo": "SO1",
            "FCustomerId": {"FNumber": "C1"},
            "FEntity": [{"FQty": 1}, {"FQty": 2, "FEntryID": 7}],
            "FKind": 3,
        });
        let lines = field_lines(Some(&templates), &row);
        let by_path: Vec<(&str, String, Option<&str>)> = lines
            .iter()
            .map(|l| (l.path.as_str(), compact(&l.value), l.template.as_deref()))
            .collect();
        assert_eq!(
            by_path,
            vec![
                ("FBillNo", "SO1".to_owned(), Some("<< order_no >>")),
                ("FCustomerId.FNumber", "C1".to_owned(), Some("<< customer_code >>")),
                ("FEntity[0].FQty", "1".to_owned(), Some("<< qty | int >>")),
                ("FEntity[1].FQty", "2".to_owned(), Some("<< qty | int >>")),
                ("FEntity[1].FEntryID", "7".to_owned(), None),
                ("FKind", "3".to_owned(), Some("3")),
            ]
        );
    }

    #[test]
    fn without_the_scheme_the_row_is_listed_without_templates() {
        let lines = field_lines(None, &json!({"a": {"b": 1}, "c": [1, 2]}));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].path, "a.b");
        assert_eq!(lines[1].path, "c");
        assert!(lines.iter().all(|l| l.template.is_none()));
    }
}
