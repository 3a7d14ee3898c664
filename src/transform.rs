//! Record → target row (pure). Renders a compiled [`ValueTemplate`] tree over a record and
//! its context, including detail rows (`for_each`), and fingerprints payloads.

use crate::error::Error;
use crate::scheme::model::ValueTemplate;
use crate::template::Scope;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Renders `template` in `scope`. `path` names the field for error messages.
pub fn render(template: &ValueTemplate, scope: &Scope, path: &str) -> Result<Value, Error> {
    render_inner(template, scope).map_err(|(at, message)| {
        let full = match (path.is_empty(), at.is_empty()) {
            (true, _) => at,
            (false, true) => path.to_string(),
            (false, false) if at.starts_with('[') => format!("{path}{at}"),
            (false, false) => format!("{path}.{at}"),
        };
        Error::transform(if full.is_empty() {
            message
        } else {
            format!("{full}: {message}")
        })
    })
}

/// Prefixes an error's field path with one more step (only on the error path).
fn under(step: String) -> impl FnOnce((String, String)) -> (String, String) {
    move |(at, message)| {
        let joined = if at.is_empty() {
            step
        } else if at.starts_with('[') {
            format!("{step}{at}")
        } else {
            format!("{step}.{at}")
        };
        (joined, message)
    }
}

fn render_inner(template: &ValueTemplate, scope: &Scope) -> Result<Value, (String, String)> {
    match template {
        ValueTemplate::Literal(value) => Ok(value.clone()),
        ValueTemplate::Template(t) => t.render(scope).map_err(|e| (String::new(), e.message)),
        ValueTemplate::Path(p) => {
            let Some(record) = scope.record.as_deref() else {
                return Ok(Value::Null);
            };
            let mut found = p.select(record);
            Ok(match found.len() {
                0 => Value::Null,
                1 => found.remove(0).clone(),
                _ => Value::Array(found.into_iter().cloned().collect()),
            })
        }
        ValueTemplate::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| render_inner(item, scope).map_err(under(format!("[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        ValueTemplate::Object(fields) => {
            let mut out = Map::with_capacity(fields.len());
            for (key, item) in fields {
                let value = render_inner(item, scope).map_err(under(key.clone()))?;
                out.insert(key.clone(), value);
            }
            Ok(Value::Object(out))
        }
        ValueTemplate::ForEach { rows, fields } => {
            let Some(record) = scope.record.clone() else {
                return Ok(Value::Array(Vec::new()));
            };
            let selected = rows.select(&record);
            let mut out = Vec::with_capacity(selected.len());
            for (i, row) in selected.into_iter().enumerate() {
                let mut locals = scope.locals.clone();
                locals.push(("index".to_string(), Value::from(i)));
                let detail = Scope {
                    record: Some(Arc::new(row.clone())),
                    vars: scope.vars.clone(),
                    locals,
                    parent: Some(record.clone()),
                    mapped_ids: scope.mapped_ids.clone(),
                };
                out.push(render_inner(fields, &detail).map_err(under(format!("[{i}]")))?);
            }
            Ok(Value::Array(out))
        }
    }
}

/// Fingerprint of a source record under a given field mapping: equal fingerprints mean the
/// target would receive the same row, so the write can be skipped as unchanged.
pub fn payload_hash(record: &Value, mapping_fingerprint: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(mapping_fingerprint);
    // serde_json keeps key order, so the same record text hashes the same way.
    if let Ok(bytes) = serde_json::to_vec(record) {
        hasher.update(&bytes);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Turns a rendered id or name into the text stored in the mapping table.
pub fn value_to_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::JsonPath;
    use crate::template::{TemplateEnv, TemplateOptions};
    use serde_json::json;

    fn env() -> TemplateEnv {
        TemplateEnv::new(TemplateOptions {
            timezone: chrono_tz::Asia::Shanghai,
            value_maps: Default::default(),
        })
    }

    #[test]
    fn renders_nested_fields_paths_and_details() {
        let env = env();
        let tree = ValueTemplate::Object(vec![
            (
                "FBillNo".into(),
                ValueTemplate::Template(env.compile("<< order_no >>").unwrap()),
            ),
            (
                "FAmount".into(),
                ValueTemplate::Template(env.compile("<< amount | float >>").unwrap()),
            ),
            (
                "Customer".into(),
                ValueTemplate::Object(vec![(
                    "FNumber".into(),
                    ValueTemplate::Path(JsonPath::parse("$.customer.code").unwrap()),
                )]),
            ),
            (
                "FEntity".into(),
                ValueTemplate::ForEach {
                    rows: JsonPath::parse("$.lines[*]").unwrap(),
                    fields: Box::new(ValueTemplate::Object(vec![
                        (
                            "FQty".into(),
                            ValueTemplate::Template(env.compile("<< qty | int >>").unwrap()),
                        ),
                        (
                            "Bill".into(),
                            ValueTemplate::Template(env.compile("<< parent.order_no >>-<< index >>").unwrap()),
                        ),
                    ])),
                },
            ),
        ]);
        let record = json!({"order_no": "SO1", "amount": "12.5", "customer": {"code": "C9"}, "lines": [{"qty": "2"}, {"qty": 3}]});
        let scope = Scope {
            record: Some(Arc::new(record)),
            ..Scope::default()
        };
        let row = render(&tree, &scope, "").unwrap();
        assert_eq!(
            row,
            json!({"FBillNo": "SO1", "FAmount": 12.5, "Customer": {"FNumber": "C9"},
                   "FEntity": [{"FQty": 2, "Bill": "SO1-0"}, {"FQty": 3, "Bill": "SO1-1"}]})
        );
    }

    #[test]
    fn errors_name_the_field() {
        let env = env();
        let tree = ValueTemplate::Object(vec![(
            "FQty".into(),
            ValueTemplate::Template(env.compile("<< qty | int >>").unwrap()),
        )]);
        let scope = Scope {
            record: Some(Arc::new(json!({"qty": "lots"}))),
            ..Scope::default()
        };
        let err = render(&tree, &scope, "").unwrap_err();
        assert!(err.message.starts_with("FQty:"), "{err}");
    }

    #[test]
    fn hash_depends_on_record_and_mapping() {
        let a = payload_hash(&json!({"x": 1}), b"m1");
        assert_eq!(a, payload_hash(&json!({"x": 1}), b"m1"));
        assert_ne!(a, payload_hash(&json!({"x": 2}), b"m1"));
        assert_ne!(a, payload_hash(&json!({"x": 1}), b"m2"));
    }
}
