//! `ferry validate --sample`: renders a plan's record templates over sample records, offline.
//!
//! Every record template is rendered on its own (`source.id`, `source.name`, each leaf of
//! `target.fields` including the fields of `for_each` rows, then `target.key` and
//! `target.name` over the rendered row), so one pass reports every missing field, each as a
//! diagnostic at its template's line:column. What fails a record at run time is an error;
//! what a run only leaves empty (`source.name`, `target.name`) or only warns about
//! (`incremental.field`) is a warning. `mapped_id` answers with placeholders: no store is read.

use crate::diag::{did_you_mean, Diagnostic, Severity};
use crate::extract::JsonPath;
use crate::scheme::model::{Plan, ValueTemplate};
use crate::scheme::yaml::{child_path, index_path, Spans};
use crate::template::{MappedIds, PlaceholderIds, Scope, Template, TemplateError};
use crate::transform::value_to_text;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One problem, before it is placed and merged with the same problem of other records.
struct Finding {
    severity: Severity,
    path: String,
    offset: Option<usize>,
    message: String,
    hint: Option<String>,
}

/// Renders every record template of `plan` over each of `records` and returns one
/// diagnostic per problem (a problem shared by several records names them all). `sample`
/// names the sample file in messages; diagnostics point into the scheme (their `file` is
/// left for the caller to fill in).
pub fn check_sample(plan: &Plan, spans: &Spans, records: &[Value], sample: &str) -> Vec<Diagnostic> {
    let mut merged: Vec<(Finding, Vec<usize>)> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        for finding in check_record(plan, record) {
            let same = merged.iter_mut().find(|(seen, _)| {
                seen.path == finding.path && seen.message == finding.message && seen.severity == finding.severity
            });
            match same {
                Some((_, indexes)) => indexes.push(index + 1),
                None => merged.push((finding, vec![index + 1])),
            }
        }
    }
    merged
        .into_iter()
        .map(|(finding, indexes)| {
            let which = if records.len() == 1 {
                format!("the sample record of {sample}")
            } else {
                let list: Vec<String> = indexes.iter().map(usize::to_string).collect();
                format!(
                    "sample record{} {} of {} in {sample}",
                    if indexes.len() == 1 { "" } else { "s" },
                    list.join(", "),
                    records.len()
                )
            };
            let position = match finding.offset {
                Some(offset) => spans.offset_position(&finding.path, offset),
                None => spans.value_position(&finding.path),
            };
            let message = format!("{} — {which}", finding.message);
            let diagnostic = match finding.severity {
                Severity::Error => Diagnostic::error(&finding.path, message),
                Severity::Warning => Diagnostic::warning(&finding.path, message),
                Severity::Note => Diagnostic::note(&finding.path, message),
            };
            diagnostic.with_hint_opt(finding.hint).at(position)
        })
        .collect()
}

/// Reads a sample file's text: one record (an object) or a list of records.
pub fn parse_sample(text: &str) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("the sample is not JSON: {e} (line {}, column {})", e.line(), e.column()))?;
    let records = match value {
        Value::Array(items) => items,
        record => vec![record],
    };
    if records.is_empty() {
        return Err("the sample holds no records; give one record (an object) or a list of them".into());
    }
    if let Some(index) = records.iter().position(|record| !record.is_object()) {
        return Err(format!(
            "sample record {} is not an object; a record is a JSON object as the source returns it",
            index + 1
        ));
    }
    Ok(records)
}

fn check_record(plan: &Plan, record: &Value) -> Vec<Finding> {
    let record = Arc::new(record.clone());
    let mut vars = Map::new();
    vars.insert(
        "now".into(),
        Value::String(crate::window::format_time(chrono::Utc::now(), plan.timezone)),
    );
    vars.insert("run".into(), json!({"id": 0, "scheme": plan.name, "dry_run": true}));
    let scope = Scope {
        record: Some(record.clone()),
        vars: Arc::new(vars),
        mapped_ids: Some(Arc::new(PlaceholderIds::default()) as Arc<dyn MappedIds>),
        field_maps: Some(Arc::new(crate::template::FieldMaps::placeholders())),
        ..Scope::default()
    };
    let mut out = Vec::new();

    match plan.source.id.render(&scope) {
        Ok(value @ (Value::Array(_) | Value::Object(_))) => out.push(Finding {
            severity: Severity::Error,
            path: "source.id".into(),
            offset: None,
            message: format!(
                "source.id gives {} for this record; an id must be text or a number",
                if value.is_array() { "a list" } else { "an object" }
            ),
            hint: None,
        }),
        Ok(value) if value_to_text(&value).is_none() => out.push(Finding {
            severity: Severity::Error,
            path: "source.id".into(),
            offset: None,
            message: "source.id is empty for this record".into(),
            hint: Some("every record needs an id; read a field that is always filled".into()),
        }),
        Ok(_) => {}
        Err(e) => out.push(finding(
            Severity::Error,
            "source.id",
            e,
            &record,
            plan.source.id.source(),
        )),
    }
    if let Some(name) = &plan.source.name {
        if let Err(e) = name.render(&scope) {
            out.push(name_finding("source.name", e, &record, name.source()));
        }
    }
    if let Some(field) = plan.source.incremental.as_ref().and_then(|inc| inc.field.as_deref()) {
        if let Err(problem) = crate::window::field_time(&record, field, plan.source_connection().zone) {
            out.push(field_time_finding(field, problem));
        }
    }

    let mut scope = scope;
    scope.locals = vec![("target_id".to_string(), Value::Null)];
    walk(&plan.target.fields, &scope, "target.fields", &mut out);
    if out
        .iter()
        .any(|f| f.severity == Severity::Error && f.path.starts_with("target.fields"))
    {
        return out;
    }
    // Key and name read the rendered row.
    let Ok(row) = crate::transform::render(&plan.target.fields, &scope, "target.fields") else {
        return out;
    };
    let row = Arc::new(row);
    let row_scope = Scope {
        record: Some(row.clone()),
        vars: scope.vars.clone(),
        locals: scope.locals.clone(),
        ..Scope::default()
    };
    if let Some(key) = &plan.target.key {
        if let Err(e) = key.render(&row_scope) {
            let mut found = finding(Severity::Error, "target.key", e, &row, key.source());
            found.message = format!("{} (over the rendered row)", found.message);
            out.push(found);
        }
    }
    if let Some(name) = &plan.target.name {
        if let Err(e) = name.render(&row_scope) {
            out.push(name_finding("target.name", e, &row, name.source()));
        }
    }
    out
}

/// Renders each leaf of a field tree on its own, so every failing template is reported.
fn walk(template: &ValueTemplate, scope: &Scope, path: &str, out: &mut Vec<Finding>) {
    match template {
        ValueTemplate::Literal(_) | ValueTemplate::Path(_) => {}
        ValueTemplate::Template(t) => render_leaf(t, scope, path, out),
        ValueTemplate::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, scope, &index_path(path, i), out);
            }
        }
        ValueTemplate::Object(fields) => {
            for (key, item) in fields {
                walk(item, scope, &child_path(path, key), out);
            }
        }
        ValueTemplate::ForEach { rows, fields, .. } => {
            let Some(record) = scope.record.clone() else {
                return;
            };
            let selected = rows.select(&record);
            if selected.is_empty() {
                out.push(no_rows(path, rows));
            }
            for (i, row) in selected.into_iter().enumerate() {
                let mut locals = scope.locals.clone();
                locals.push(("index".to_string(), Value::from(i)));
                let detail = Scope {
                    record: Some(Arc::new(row.clone())),
                    vars: scope.vars.clone(),
                    locals,
                    parent: Some(record.clone()),
                    mapped_ids: scope.mapped_ids.clone(),
                    field_maps: scope.field_maps.clone(),
                };
                walk(fields, &detail, &child_path(path, "fields"), out);
            }
        }
    }
}

fn render_leaf(template: &Template, scope: &Scope, path: &str, out: &mut Vec<Finding>) {
    if let Err(e) = template.render(scope) {
        let record = scope.record.clone().unwrap_or_default();
        out.push(finding(Severity::Error, path, e, &record, template.source()));
    }
}

fn no_rows(path: &str, rows: &JsonPath) -> Finding {
    Finding {
        severity: Severity::Warning,
        path: child_path(path, "for_each"),
        offset: None,
        message: format!(
            "`{}` selects no rows, so the templates of {path}.fields were not checked",
            rows.as_str()
        ),
        hint: Some("add a record with detail rows to the sample".into()),
    }
}

/// A render error as a finding; a missing field's hint names the fields the record has,
/// and without a position of its own it points at the name in the template (`source`).
fn finding(severity: Severity, path: &str, e: TemplateError, record: &Value, source: &str) -> Finding {
    let mut hint = e.hint.clone();
    let offset = e
        .offset
        .or_else(|| e.missing.first().and_then(|name| source.find(name.as_str())));
    if let Some(first) = e.missing.first() {
        let keys: Vec<&str> = record
            .as_object()
            .map(|map| map.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let head = first.split(['.', '[']).next().unwrap_or(first);
        let mut parts = Vec::new();
        if let Some(best) = did_you_mean(head, keys.iter().copied()) {
            parts.push(format!("did you mean `{best}`?"));
        }
        parts.push(if keys.is_empty() {
            "the record has no fields".to_string()
        } else {
            format!("the record has: {}", keys.join(", "))
        });
        if let Some(advice) = &e.hint {
            parts.push(advice.clone());
        }
        hint = Some(parts.join("; "));
    }
    Finding {
        severity,
        path: path.to_string(),
        offset,
        message: e.message,
        hint,
    }
}

/// A name that does not render is left empty by a run, not failed: a warning.
fn name_finding(path: &str, e: TemplateError, record: &Value, source: &str) -> Finding {
    let mut found = finding(Severity::Warning, path, e, record, source);
    found.message = format!("{}; a run would leave the name empty", found.message);
    found
}

fn field_time_finding(field: &str, problem: crate::window::FieldTimeError) -> Finding {
    let (message, hint) = match problem {
        crate::window::FieldTimeError::Missing { at, keys } => (
            format!("the record has no `{at}`, so runs cannot check it against their windows"),
            Some(if keys.is_empty() {
                "name the record's modification time".to_string()
            } else {
                let head = at.rsplit('.').next().unwrap_or(&at);
                match did_you_mean(head, keys.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`? it has: {}", keys.join(", ")),
                    None => format!("it has: {}", keys.join(", ")),
                }
            }),
        ),
        crate::window::FieldTimeError::NotATime { value, reason } => (
            format!("`{field}` is {value}, not a time: {reason}"),
            Some("name the record's modification time".to_string()),
        ),
    };
    Finding {
        severity: Severity::Warning,
        path: "source.incremental.field".into(),
        offset: None,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEME: &str = r#"
name: sample
connections:
  src: {connector: http, base_url: "http://127.0.0.1:9"}
  dst: {connector: http, base_url: "http://127.0.0.1:9"}
source:
  connection: src
  request: {method: GET, path: /items, query: {from: "<< window.start | datetime >>"}}
  records: $.items[*]
  incremental: {field: modified_at, start: "2024-01-01 00:00:00"}
  id: "<< code >>"
  name: "<< title >>"
target:
  connection: dst
  key: "<< FNumber >>-<< FMissing >>"
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
  fields:
    FNumber: "<< code >>"
    FCustomer: {FNumber: "<< customer_code >>"}
    FAmount: "<< amount | float >>"
    FEntity:
      for_each: $.lines[*]
      fields:
        FQty: "<< qty | int >>"
        FSku: "<< skuu >>"
"#;

    fn loaded() -> (Plan, Spans) {
        let loaded = crate::scheme::load_str(SCHEME, "s.yaml", &|_| None);
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let spans = crate::scheme::yaml::load(SCHEME, &|_| None).spans;
        (loaded.plan.unwrap(), spans)
    }

    #[test]
    fn every_missing_field_is_reported_where_its_template_is() {
        let (plan, spans) = loaded();
        let records = vec![
            json!({"code": "A", "customer": "C1", "amount": "1.5", "modified_at": "2024-03-01 10:00:00",
                   "lines": [{"qty": 1, "sku": "X"}]}),
            json!({"code": "B", "customer": "C2", "amount": "oops", "modified": "2024-03-01",
                   "lines": []}),
        ];
        let diags = check_sample(&plan, &spans, &records, "s.json");
        let find = |path: &str| {
            diags
                .iter()
                .find(|d| d.path == path)
                .unwrap_or_else(|| panic!("no diagnostic at {path}: {diags:#?}"))
        };
        let customer = find("target.fields.FCustomer.FNumber");
        assert!(customer.is_error());
        assert!(
            customer.message.starts_with("missing field `customer_code`")
                && customer.message.ends_with("sample records 1, 2 of 2 in s.json"),
            "{}",
            customer.message
        );
        // Line 20, at `customer_code` inside `FNumber: "<< customer_code >>"`.
        assert_eq!((customer.line, customer.column), (20, 30));
        let hint = customer.hint.as_deref().unwrap();
        assert!(hint.contains("the record has: code, customer, amount"), "{hint}");
        let sku = find("target.fields.FEntity.fields.FSku");
        assert!(
            sku.message.contains("missing field `skuu`") && sku.message.ends_with("sample record 1 of 2 in s.json")
        );
        assert!(sku.hint.as_deref().unwrap().contains("did you mean `sku`?"));
        assert_eq!(sku.line, 26);
        let amount = find("target.fields.FAmount");
        assert!(
            amount.is_error() && amount.message.contains("oops"),
            "{}",
            amount.message
        );
        assert!(!find("target.fields.FEntity.for_each").is_error());
        // Names and the change time only warn; source.id renders for both.
        assert!(!find("source.name").is_error());
        let changed = find("source.incremental.field");
        assert!(!changed.is_error() && changed.message.contains("has no `modified_at`"));
        assert!(changed.hint.as_deref().unwrap().contains("did you mean `modified`?"));
        assert!(diags.iter().all(|d| d.path != "source.id"));
        // The row failed, so the key over it was not judged.
        assert!(diags.iter().all(|d| d.path != "target.key"));
    }

    #[test]
    fn the_key_is_rendered_over_the_row() {
        let (plan, spans) = loaded();
        let record = json!({"code": "A", "customer_code": "C1", "amount": 2, "title": "t",
                            "modified_at": "2024-03-01 10:00:00", "lines": [{"qty": 1, "skuu": "X"}]});
        let diags = check_sample(&plan, &spans, &[record], "one.json");
        assert_eq!(diags.len(), 1, "{diags:#?}");
        assert_eq!(diags[0].path, "target.key");
        assert!(
            diags[0].message.contains("missing field `FMissing`")
                && diags[0].message.contains("(over the rendered row)")
                && diags[0].message.ends_with("the sample record of one.json"),
            "{}",
            diags[0].message
        );
        assert!(diags[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("the record has: FNumber, FCustomer, FAmount, FEntity"));
    }

    #[test]
    fn samples_are_one_record_or_a_list_of_them() {
        assert_eq!(parse_sample(r#"{"a": 1}"#).unwrap().len(), 1);
        assert_eq!(parse_sample(r#"[{"a": 1}, {"a": 2}]"#).unwrap().len(), 2);
        assert!(parse_sample("[]").unwrap_err().contains("no records"));
        assert!(parse_sample("[1]").unwrap_err().contains("record 1 is not an object"));
        assert!(parse_sample("{").unwrap_err().contains("not JSON"));
    }
}
