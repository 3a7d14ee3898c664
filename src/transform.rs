//! Record → target row (pure). Renders a compiled [`ValueTemplate`] tree over a record and
//! its context, including detail rows (`for_each`), and fingerprints payloads.

use crate::error::Error;
use crate::template::Scope;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;

/// A value tree whose leaves may be templates or JSONPaths.
#[derive(Clone)]
pub enum ValueTemplate {
    Literal(Value),
    Template(crate::template::Template),
    Path(crate::extract::JsonPath),
    Array(Vec<ValueTemplate>),
    Object(Vec<(String, ValueTemplate)>),
    /// Detail rows: one rendering of `fields` per element selected from the record.
    ForEach {
        rows: crate::extract::JsonPath,
        fields: Box<ValueTemplate>,
        /// How the target identifies these rows, when the scheme says (`key`, `target_id`).
        identity: Option<Box<DetailIdentity>>,
    },
}

/// How the rows of one `for_each` are matched to the target's rows across writes: each
/// row's identity in the source, and the field of the rendered row that carries the
/// target's id of the row (filled by Ferry on update from the stored mapping).
#[derive(Clone)]
pub struct DetailIdentity {
    /// Template over the detail row giving its identity; `None`: its position in the list.
    pub key: Option<crate::template::Template>,
    /// The field of the rendered detail row holding the target's row id (e.g. `FEntryID`).
    pub target_id: String,
}

/// Renders `template` in `scope`. `path` names the field for error messages.
pub fn render(template: &ValueTemplate, scope: &Scope, path: &str) -> Result<Value, Error> {
    render_inner(template, scope).map_err(|failure| render_error(path, failure))
}

/// Why a field did not render: where (relative to the field being rendered), what, and
/// the missing names when the cause was a missing field.
struct Failure {
    at: String,
    message: String,
    missing: Vec<String>,
}

impl From<crate::template::TemplateError> for Failure {
    fn from(e: crate::template::TemplateError) -> Failure {
        Failure {
            at: String::new(),
            message: e.message,
            missing: e.missing,
        }
    }
}

fn render_error(path: &str, failure: Failure) -> Error {
    let Failure { at, message, missing } = failure;
    let full = match (path.is_empty(), at.is_empty()) {
        (true, _) => at,
        (false, true) => path.to_string(),
        (false, false) if at.starts_with('[') => format!("{path}{at}"),
        (false, false) => format!("{path}.{at}"),
    };
    let message = if full.is_empty() {
        message
    } else {
        format!("{full}: {message}")
    };
    if missing.is_empty() {
        Error::transform(message)
    } else {
        Error::missing_field(message, missing)
    }
}

/// A rendered value that borrows from the scope where it can: what [`render_view`]
/// returns. It serializes exactly as [`render`]'s value would.
#[derive(Debug)]
pub enum View<'s> {
    Value(Cow<'s, Value>),
    Object(Vec<(&'s str, View<'s>)>),
    Array(Vec<View<'s>>),
}

impl View<'_> {
    /// The owned value [`render`] would have returned.
    pub fn into_value(self) -> Value {
        match self {
            View::Value(value) => value.into_owned(),
            View::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, view)| (key.to_owned(), view.into_value()))
                    .collect(),
            ),
            View::Array(items) => Value::Array(items.into_iter().map(View::into_value).collect()),
        }
    }
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            View::Value(value) => value.serialize(serializer),
            View::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, view) in fields {
                    map.serialize_entry(key, view)?;
                }
                map.end()
            }
            View::Array(items) => serializer.collect_seq(items),
        }
    }
}

/// [`render`] without copying what the scope already holds: a field that is one plain
/// lookup (`items: "<< rows >>"`) refers to the scope's value. Used for request bodies,
/// which are serialized once and dropped. `for_each` trees are rendered as by [`render`].
pub fn render_view<'s>(template: &'s ValueTemplate, scope: &'s Scope, path: &str) -> Result<View<'s>, Error> {
    match template {
        ValueTemplate::Literal(value) => Ok(View::Value(Cow::Borrowed(value))),
        ValueTemplate::Template(t) => t
            .render_cow(scope)
            .map(View::Value)
            .map_err(|e| render_error(path, e.into())),
        ValueTemplate::Object(fields) => {
            let mut out = Vec::with_capacity(fields.len());
            for (key, item) in fields {
                out.push((key.as_str(), render_view(item, scope, &join_path(path, key))?));
            }
            Ok(View::Object(out))
        }
        ValueTemplate::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| render_view(item, scope, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(View::Array),
        ValueTemplate::Path(_) | ValueTemplate::ForEach { .. } => {
            render(template, scope, path).map(|value| View::Value(Cow::Owned(value)))
        }
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Prefixes an error's field path with one more step. Called only once an error has
/// happened, so the step's text is built only then.
fn under(step: String, failure: Failure) -> Failure {
    let at = if failure.at.is_empty() {
        step
    } else if failure.at.starts_with('[') {
        format!("{step}{}", failure.at)
    } else {
        format!("{step}.{}", failure.at)
    };
    Failure { at, ..failure }
}

fn render_inner(template: &ValueTemplate, scope: &Scope) -> Result<Value, Failure> {
    match template {
        ValueTemplate::Literal(value) => Ok(value.clone()),
        ValueTemplate::Template(t) => t.render(scope).map_err(Failure::from),
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
            .map(|(i, item)| render_inner(item, scope).map_err(|e| under(format!("[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        ValueTemplate::Object(fields) => {
            let mut out = Map::with_capacity(fields.len());
            for (key, item) in fields {
                let value = render_inner(item, scope).map_err(|e| under(key.clone(), e))?;
                out.insert(key.clone(), value);
            }
            Ok(Value::Object(out))
        }
        ValueTemplate::ForEach { rows, fields, .. } => {
            let Some(record) = scope.record.clone() else {
                return Ok(Value::Array(Vec::new()));
            };
            let selected = rows.select(&record);
            let mut out = Vec::with_capacity(selected.len());
            for (i, row) in selected.into_iter().enumerate() {
                let detail = detail_scope(scope, &record, row, i);
                out.push(render_inner(fields, &detail).map_err(|e| under(format!("[{i}]"), e))?);
            }
            Ok(Value::Array(out))
        }
    }
}

/// The scope of detail row `i` of a `for_each` over `record`: the row is the record, the
/// master is `parent`, the position is `index`.
fn detail_scope(scope: &Scope, record: &Arc<Value>, row: &Value, i: usize) -> Scope {
    let mut locals = Vec::with_capacity(scope.locals.len() + 1);
    locals.extend(scope.locals.iter().cloned());
    locals.push(("index".to_string(), Value::from(i)));
    Scope {
        record: Some(Arc::new(row.clone())),
        vars: scope.vars.clone(),
        locals,
        parent: Some(record.clone()),
        mapped_ids: scope.mapped_ids.clone(),
        field_maps: scope.field_maps.clone(),
    }
}

/// The identities of the rows of each `for_each` list of `template` that declares a
/// `target_id`, by list path (`a.b`, as [`crate::protocol::DetailList::key`] names it), in
/// the order [`render`] renders the rows: each row's `key`, or its position. Fails when a
/// key is empty or two rows of one list share one (their target ids could not be told
/// apart).
pub fn detail_keys(template: &ValueTemplate, scope: &Scope) -> Result<Vec<(String, Vec<String>)>, Error> {
    let mut out = Vec::new();
    collect_detail_keys(template, scope, "", &mut out)?;
    Ok(out)
}

fn collect_detail_keys(
    template: &ValueTemplate,
    scope: &Scope,
    path: &str,
    out: &mut Vec<(String, Vec<String>)>,
) -> Result<(), Error> {
    match template {
        ValueTemplate::Object(fields) => {
            for (name, item) in fields {
                collect_detail_keys(item, scope, &join_path(path, name), out)?;
            }
            Ok(())
        }
        ValueTemplate::ForEach {
            rows,
            identity: Some(identity),
            ..
        } => {
            let Some(record) = scope.record.clone() else {
                out.push((path.to_string(), Vec::new()));
                return Ok(());
            };
            let selected = rows.select(&record);
            let mut keys: Vec<String> = Vec::with_capacity(selected.len());
            for (i, row) in selected.into_iter().enumerate() {
                let key = match &identity.key {
                    None => i.to_string(),
                    Some(template) => {
                        let detail = detail_scope(scope, &record, row, i);
                        let value = template
                            .render(&detail)
                            .map_err(|e| render_error(&format!("{path}[{i}] (its key)"), e.into()))?;
                        value_to_text(&value).ok_or_else(|| {
                            Error::transform(format!(
                                "{path}[{i}]: the detail row's key `{}` is empty; each row needs a key to be matched to the target's row",
                                template.source()
                            ))
                        })?
                    }
                };
                if let Some(first) = keys.iter().position(|known| *known == key) {
                    return Err(Error::transform(format!(
                        "{path}: detail rows {first} and {i} have the same key `{key}`, so their target ids could not be told apart; make `key` unique within a record"
                    )));
                }
                keys.push(key);
            }
            out.push((path.to_string(), keys));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Fingerprints source records under one field mapping: equal fingerprints mean the target
/// would receive the same row, so the write can be skipped as unchanged.
///
/// The hash is SHA-256 over the mapping's bytes followed by the record's JSON text,
/// truncated to 16 bytes. The mapping is absorbed once, when the hasher is made, so each
/// record costs only its own bytes (the mapping is often several times longer).
#[derive(Clone)]
pub struct PayloadHasher {
    after_mapping: Sha256,
}

impl PayloadHasher {
    pub fn new(mapping_fingerprint: &[u8]) -> Self {
        let mut after_mapping = Sha256::new();
        after_mapping.update(mapping_fingerprint);
        PayloadHasher { after_mapping }
    }

    pub fn hash(&self, record: &Value) -> String {
        thread_local! {
            /// The record's JSON text, reused from record to record.
            static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut hasher = self.after_mapping.clone();
        TEXT.with_borrow_mut(|text| {
            text.clear();
            // serde_json keeps key order, so the same record text hashes the same way.
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *text, record);
            hasher.update(&text[..]);
            // Do not keep one unusually large record's buffer for the rest of the run.
            if text.capacity() > 64 * 1024 {
                *text = Vec::new();
            }
        });
        hex::encode(&hasher.finalize()[..16])
    }
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
            ..TemplateOptions::default()
        })
    }

    fn template(env: &TemplateEnv, text: &str) -> ValueTemplate {
        ValueTemplate::Template(env.compile(text).unwrap())
    }

    #[test]
    fn renders_nested_fields_paths_and_details() {
        let env = env();
        let tree = ValueTemplate::Object(vec![
            ("FBillNo".into(), template(&env, "<< order_no >>")),
            ("FAmount".into(), template(&env, "<< amount | float >>")),
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
                        ("FQty".into(), template(&env, "<< qty | int >>")),
                        ("Bill".into(), template(&env, "<< parent.order_no >>-<< index >>")),
                    ])),
                    identity: None,
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
        let tree = ValueTemplate::Object(vec![("FQty".into(), template(&env, "<< qty | int >>"))]);
        let scope = Scope {
            record: Some(Arc::new(json!({"qty": "lots"}))),
            ..Scope::default()
        };
        let err = render(&tree, &scope, "").unwrap_err();
        assert!(err.message.starts_with("FQty:"), "{err}");
    }

    #[test]
    fn views_serialize_like_rendered_values_and_fail_alike() {
        let env = env();
        let body = ValueTemplate::Object(vec![
            ("items".into(), template(&env, "<< rows >>")),
            (
                "meta".into(),
                ValueTemplate::Array(vec![
                    ValueTemplate::Literal(json!("v1")),
                    template(&env, "n=<< rows | length >>"),
                    ValueTemplate::Path(JsonPath::parse("$.order_no").unwrap()),
                ]),
            ),
        ]);
        let mut vars = Map::new();
        vars.insert(
            "rows".into(),
            json!([{"FBillNo": "SO1", "FQty": 2}, {"FBillNo": "SO2"}]),
        );
        let scope = Scope {
            record: Some(Arc::new(json!({"order_no": "SO9"}))),
            vars: Arc::new(vars),
            ..Scope::default()
        };
        let value = render(&body, &scope, "body").unwrap();
        let view = render_view(&body, &scope, "body").unwrap();
        assert!(matches!(&view, View::Object(fields) if matches!(fields[0].1, View::Value(Cow::Borrowed(_)))));
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(view.into_value(), value);

        let broken = ValueTemplate::Object(vec![(
            "items".into(),
            ValueTemplate::Array(vec![template(&env, "<< rows | int >>")]),
        )]);
        let by_value = render(&broken, &scope, "body").unwrap_err();
        let by_view = render_view(&broken, &scope, "body").unwrap_err();
        assert_eq!(by_view.message, by_value.message);
        assert!(by_view.message.starts_with("body.items[0]:"), "{}", by_view.message);
    }

    #[test]
    fn hash_depends_on_record_and_mapping() {
        let m1 = PayloadHasher::new(b"m1");
        let a = m1.hash(&json!({"x": 1}));
        assert_eq!(a, m1.hash(&json!({"x": 1})));
        assert_ne!(a, m1.hash(&json!({"x": 2})));
        assert_ne!(a, PayloadHasher::new(b"m2").hash(&json!({"x": 1})));
    }

    #[test]
    fn hashes_match_those_stored_by_earlier_versions() {
        // Stored mappings carry these hashes; a different formula would make every record
        // look changed after an upgrade.
        let mapping = "a mapping longer than one 64-byte SHA-256 block, so state is carried over".repeat(3);
        let record = json!({"order_no": "SO-1", "lines": [{"sku": "A", "qty": 2}], "note": "\u{4e2d}\"q\""});
        let mut expected = Sha256::new();
        expected.update(mapping.as_bytes());
        expected.update(serde_json::to_vec(&record).unwrap());
        let expected = hex::encode(&expected.finalize()[..16]);
        assert_eq!(PayloadHasher::new(mapping.as_bytes()).hash(&record), expected);
    }
}
