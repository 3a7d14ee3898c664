//! Semantic validation (pure): compiles every template and JSONPath, resolves references and
//! defaults, and builds the [`Plan`]. Every problem is collected; a plan is returned only
//! when there are no errors (warnings are allowed).
//!
//! Each section (each connection, the source, the target) is deserialized on its own, so a
//! type error in the target does not hide a bad template in the source.

use super::context;
use super::model::*;
use super::raw::*;
use super::yaml::{child_path, index_path, Spans};
use crate::codec::Codec;
use crate::diag::{choices_hint, did_you_mean, Diagnostic};
use crate::extract::JsonPath;
use crate::protocol::types::PagingStyle;
use crate::protocol::Protocol;
use crate::redact::Redactor;
use crate::template::{Shape, Template, TemplateEnv, TemplateOptions};
use crate::window::{parse_duration, parse_std_duration, parse_time};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Splits a parser's "what is wrong; how to write it" message into message and hint.
fn split_advice(message: String) -> (String, Option<String>) {
    match message.split_once("; ") {
        Some((what, how)) => (what.to_string(), Some(how.to_string())),
        None => (message, None),
    }
}

/// Names a template may read, by place in the scheme. Every name listed is one Ferry
/// provides there, so the members read from it are checked (see [`super::context`]).
#[derive(Clone, Copy)]
enum Names {
    /// Record fields (or an answer's elements) are in scope, so any other name is accepted
    /// as one of their fields.
    Any(&'static [&'static str]),
    /// Templates over one source record (`target.fields`, `source.id`, …): any name, but
    /// run context that exists only around requests draws a warning, since it resolves
    /// only if the record happens to have a field of that name.
    Record(&'static [&'static str]),
    /// Only these names exist here; any other is an error.
    Only(&'static [&'static str]),
}

impl Names {
    fn provided(self) -> &'static [&'static str] {
        match self {
            Names::Any(names) | Names::Record(names) | Names::Only(names) => names,
        }
    }
}

/// Names defined for request or response templates but not for templates over a record.
/// (`status` and `body` are left out: records often have fields of those names.)
const REQUEST_ONLY_NAMES: &[&str] = &["window", "page", "rows", "row", "batch"];

const SOURCE_REQUEST_NAMES: &[&str] = &["window", "page", "now", "run"];
/// A detail request reads the listed record's fields, plus the run's context.
const DETAIL_REQUEST_NAMES: &[&str] = &["window", "now", "run"];
/// Response templates see the decoded answer and its status, nothing else.
const READ_RESPONSE_NAMES: &[&str] = &["body", "status"];
const WRITE_REQUEST_NAMES: &[&str] = &["rows", "row", "record", "target_id", "now", "run", "batch"];
const WRITE_RESPONSE_NAMES: &[&str] = &["body", "status"];
const WRITEBACK_REQUEST_NAMES: &[&str] = &["record", "source_id", "target_id", "now", "run"];
const DELETE_REQUEST_NAMES: &[&str] = &["rows", "target_ids", "source_id", "target_id", "now", "run", "batch"];
const CONNECTION_NAMES: &[&str] = &["now", "run"];
const LOOKUP_REQUEST_NAMES: &[&str] = &["key", "row", "now", "run"];
const LOOKUP_BATCH_REQUEST_NAMES: &[&str] = &["keys", "now", "run"];
/// `source.id` and `source.name`: the record, plus the run's context.
const SOURCE_RECORD_NAMES: &[&str] = &["now", "run"];
/// `target.fields`, `target.key`, `target.name`.
const TARGET_RECORD_NAMES: &[&str] = &["now", "run", "target_id"];
/// Inside a `for_each` of `target.fields`.
const DETAIL_ROW_NAMES: &[&str] = &["now", "run", "target_id", "index"];
/// Elements of a write answer's `row_errors`: only the element's own fields.
const ROW_ERROR_NAMES: &[&str] = &[];

/// Header names whose literal values look like credentials.
fn is_credential_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "authorization",
        "token",
        "secret",
        "key",
        "password",
        "sign",
        "cookie",
        "session",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

struct Ctx<'a> {
    spans: &'a Spans,
    /// Paths with structural errors (already reported).
    structural: &'a [String],
    env_paths: &'a HashSet<String>,
    /// Templates of the connections (the scheme's zone).
    /// Paths holding a placeholder for an unset variable (`--no-env`): their content is
    /// unknown, so it is not checked.
    unset: &'a HashSet<String>,
    templates: Arc<TemplateEnv>,
    /// Templates that talk to one side, with that server's zone (see [`SideEnvs`]).
    sides: Option<SideEnvs>,
    diags: Vec<Diagnostic>,
    /// The protocol of each connection, for checks that depend on it.
    vendors: std::collections::HashMap<String, Arc<dyn Protocol>>,
    /// The whole scheme value, for looking at raw fields.
    root: &'a Value,
    /// Whether `source.incremental` is set (only then does `window` exist).
    incremental: bool,
    /// The members of a written row: the keys of `target.fields`.
    row: Shape,
}

impl Ctx<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let position = self.spans.value_position(path);
        self.diags
            .push(Diagnostic::error(path, message).with_hint_opt(hint).at(position));
    }
    fn error_at_key(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let position = self.spans.key_position(path);
        self.diags
            .push(Diagnostic::error(path, message).with_hint_opt(hint).at(position));
    }
    fn warning(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let position = self.spans.value_position(path);
        self.diags
            .push(Diagnostic::warning(path, message).with_hint_opt(hint).at(position));
    }

    /// Deserializes one section for semantic checks. Structural problems were already
    /// reported by the schema walk, so a field serde rejects is pruned and the section is
    /// retried: the rest of it still gets checked.
    fn section<T: DeserializeOwned>(&mut self, value: Option<&Value>, path: &str) -> Option<T> {
        let mut value = value?.clone();
        for _ in 0..32 {
            let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(parsed) => return Some(parsed),
                Err(e) => e,
            };
            let inner = error.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                child_path(path, &inner)
            };
            let placeholder = self.unset.contains(&full);
            if !placeholder && !self.structural.iter().any(|p| p.starts_with(path)) {
                self.error(&full, error.inner().to_string(), None);
                return None;
            }
            if inner == "." || inner.is_empty() || !prune(&mut value, &inner) {
                return None;
            }
        }
        None
    }

    /// The raw value at a dotted path (object keys only).
    fn spans_value(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.root, |node, key| node.get(key))
    }

    fn has_error_at(&self, path: &str) -> bool {
        self.structural.iter().any(|p| p == path) || self.diags.iter().any(|d| d.is_error() && d.path == path)
    }

    /// The environment a template at `path` compiles in: each template reads and writes
    /// times in the zone of the server it talks to.
    fn env_for(&self, path: &str) -> &TemplateEnv {
        let Some(sides) = &self.sides else {
            return &self.templates;
        };
        if ["source.request", "source.response", "source.detail"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            &sides.source
        } else if path.starts_with("source.") || path.starts_with("target.fields") {
            &sides.record
        } else if path.starts_with("target.") {
            &sides.target
        } else {
            &self.templates
        }
    }

    /// What a name Ferry provides holds, if `names` provides it here.
    fn provided_shape(&self, name: &str, names: Names) -> Option<Shape> {
        if !names.provided().contains(&name) {
            return None;
        }
        Some(match name {
            "page" => context::page(),
            "window" if self.incremental => context::window(),
            "window" => return None,
            "run" => context::run(),
            "batch" => context::batch(),
            "now" => context::now(),
            "status" => context::status(),
            "row" => self.row.clone(),
            "rows" => Shape::List(Box::new(self.row.clone())),
            "target_id" => Shape::Scalar("text (the target id), or nothing before the record is written"),
            "key" => Shape::Scalar("text (the business key)"),
            "index" => Shape::Scalar("a number (the detail row's position)"),
            _ => Shape::Open,
        })
    }

    /// Where `template` first reads `name`, or else where the template's value starts.
    fn name_position(&self, path: &str, template: &Template, name: &str) -> crate::diag::Position {
        match template.name_offset(name) {
            Some(offset) => self.spans.offset_position(path, offset),
            None => self.spans.value_position(path),
        }
    }

    fn template(&mut self, path: &str, text: &str, names: Names) -> Option<Template> {
        match self.env_for(path).compile(text) {
            Ok(template) => {
                if let Names::Record(_) = names {
                    for variable in template.variables() {
                        if REQUEST_ONLY_NAMES.contains(&variable.as_str()) {
                            let at = self.name_position(path, &template, &variable);
                            self.diags.push(
                                Diagnostic::warning(
                                    path,
                                    format!("`{variable}` is not defined for a record's templates; here it is read as the record's own field `{variable}`"),
                                )
                                .with_hint("record templates can read the record's fields, `record`, `now`, `run` and `target_id`; `window` and `page` exist only in source request templates")
                                .at(at),
                            );
                        }
                    }
                }
                if let Names::Only(allowed) = names {
                    for variable in template.variables() {
                        let at = self.name_position(path, &template, &variable);
                        if variable == "window" && allowed.contains(&"window") && !self.incremental {
                            self.diags.push(
                                Diagnostic::error(
                                    path,
                                    format!("`window` is only set when `source.incremental` is, so it would be empty here (in template `{text}`)"),
                                )
                                .with_hint("add `source.incremental` (field, start, window) to read in time windows, or remove the window filter")
                                .at(at),
                            );
                        } else if !allowed.contains(&variable.as_str()) {
                            let hint = match did_you_mean(&variable, allowed.iter().copied()) {
                                Some(best) => {
                                    format!("did you mean `{best}`? names available here: {}", allowed.join(", "))
                                }
                                None => format!("names available here: {}", allowed.join(", ")),
                            };
                            self.diags.push(
                                Diagnostic::error(path, format!("unknown variable `{variable}` in template `{text}`"))
                                    .with_hint(hint)
                                    .at(at),
                            );
                        }
                    }
                }
                for problem in template.unknown_members(&|name| self.provided_shape(name, names)) {
                    let at = match problem.offset {
                        Some(offset) => self.spans.offset_position(path, offset),
                        None => self.spans.value_position(path),
                    };
                    self.diags.push(
                        Diagnostic::error(path, format!("{} in template `{text}`", problem.message))
                            .with_hint_opt(problem.hint)
                            .at(at),
                    );
                }
                Some(template)
            }
            Err(e) => {
                let position = match e.offset {
                    Some(offset) => self.spans.offset_position(path, offset),
                    None => self.spans.value_position(path),
                };
                let hint = e.hint.clone().unwrap_or_else(|| {
                    "a template is a minijinja expression between `<<` and `>>`, e.g. `<< order_no >>` or `<< amount | float >>`".to_string()
                });
                self.diags.push(
                    Diagnostic::error(path, format!("template error: {}", e.message))
                        .with_hint(hint)
                        .at(position),
                );
                None
            }
        }
    }

    fn optional_template(&mut self, path: &str, text: Option<&String>, names: Names) -> Option<Option<Template>> {
        match text {
            None => Some(None),
            Some(text) => self.template(path, text, names).map(Some),
        }
    }

    fn json_path(&mut self, path: &str, text: &str) -> Option<JsonPath> {
        let text = if self.unset.contains(path) { "$" } else { text };
        if !JsonPath::looks_like_path(text) {
            self.error(
                path,
                format!("`{text}` is not a JSONPath"),
                Some(format!(
                    "JSONPaths start at the root `$`, e.g. `$.{}`",
                    text.trim_start_matches('.')
                )),
            );
            return None;
        }
        match JsonPath::parse(text) {
            Ok(compiled) => Some(compiled),
            Err(e) => {
                let position = match e.offset {
                    Some(offset) => self.spans.offset_position(path, offset),
                    None => self.spans.value_position(path),
                };
                self.diags.push(
                    Diagnostic::error(path, format!("invalid JSONPath `{text}`: {}", e.message))
                        .with_hint("examples: `$.data.items[*]`, `$..id`, `$.rows[?(@.qty > 0)]`")
                        .at(position),
                );
                None
            }
        }
    }

    fn optional_json_path(&mut self, path: &str, text: Option<&String>) -> Option<Option<JsonPath>> {
        match text {
            None => Some(None),
            Some(text) => self.json_path(path, text).map(Some),
        }
    }

    fn duration(&mut self, path: &str, text: Option<&String>, default: &str) -> Option<chrono::Duration> {
        let text = text
            .map(String::as_str)
            .filter(|_| !self.unset.contains(path))
            .unwrap_or(default);
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(message) => {
                let (message, hint) = split_advice(message);
                self.error(path, message, hint);
                None
            }
        }
    }

    fn std_duration(&mut self, path: &str, text: Option<&String>, default: &str) -> Option<std::time::Duration> {
        let text = text
            .map(String::as_str)
            .filter(|_| !self.unset.contains(path))
            .unwrap_or(default);
        match parse_std_duration(text) {
            Ok(d) => Some(d),
            Err(message) => {
                self.error(path, message, None);
                None
            }
        }
    }

    /// Compiles a value tree: strings become templates (or JSONPaths for field trees).
    fn value_template(
        &mut self,
        path: &str,
        value: &Value,
        names: Names,
        paths_allowed: bool,
    ) -> Option<ValueTemplate> {
        match value {
            Value::String(text) if paths_allowed && JsonPath::looks_like_path(text) => {
                self.json_path(path, text).map(ValueTemplate::Path)
            }
            Value::String(text) => {
                let template = self.template(path, text, names)?;
                if template.is_literal() {
                    Some(ValueTemplate::Literal(Value::String(text.clone())))
                } else {
                    Some(ValueTemplate::Template(template))
                }
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.value_template(&index_path(path, i), item, names, paths_allowed) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                ok.then_some(ValueTemplate::Array(out))
            }
            Value::Object(map) if paths_allowed && map.contains_key("for_each") => self.for_each(path, map, names),
            Value::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                let mut ok = true;
                for (key, item) in map {
                    match self.value_template(&child_path(path, key), item, names, paths_allowed) {
                        Some(t) => out.push((key.clone(), t)),
                        None => ok = false,
                    }
                }
                ok.then_some(ValueTemplate::Object(out))
            }
            other => Some(ValueTemplate::Literal(other.clone())),
        }
    }

    fn for_each(&mut self, path: &str, map: &Map<String, Value>, names: Names) -> Option<ValueTemplate> {
        const MEMBERS: [&str; 4] = ["for_each", "fields", "key", "target_id"];
        for key in map.keys() {
            if !MEMBERS.contains(&key.as_str()) {
                let hint = match did_you_mean(key, MEMBERS.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`? a `for_each` block takes `for_each` (a JSONPath), `fields`, and optionally `key` and `target_id`"),
                    None => "a `for_each` block takes `for_each` (a JSONPath), `fields`, and optionally `key` and `target_id`".to_string(),
                };
                self.error_at_key(
                    &child_path(path, key),
                    format!("unknown field `{key}` in a `for_each` block"),
                    Some(hint),
                );
            }
        }
        let rows_path = child_path(path, "for_each");
        let rows = match map.get("for_each") {
            Some(Value::String(text)) => self.json_path(&rows_path, text),
            _ => {
                self.error(
                    &rows_path,
                    "`for_each` must be a JSONPath string",
                    Some("e.g. `for_each: $.lines[*]`".into()),
                );
                None
            }
        };
        let fields_path = child_path(path, "fields");
        // A detail row's templates also see its position as `index`.
        let names = match names {
            Names::Record(TARGET_RECORD_NAMES) => Names::Record(DETAIL_ROW_NAMES),
            other => other,
        };
        let fields = match map.get("fields") {
            Some(fields @ Value::Object(_)) => self.value_template(&fields_path, fields, names, true),
            Some(_) => {
                self.error(
                    &fields_path,
                    "`fields` of a `for_each` block must be a mapping of detail fields",
                    None,
                );
                None
            }
            None => {
                self.error_at_key(
                    &fields_path,
                    "a `for_each` block needs `fields`",
                    Some("add `fields:` with the detail row's fields".into()),
                );
                None
            }
        };
        let identity = self.detail_identity(path, map, names);
        Some(ValueTemplate::ForEach {
            rows: rows?,
            fields: Box::new(fields?),
            identity: identity?.map(Box::new),
        })
    }

    /// The `key` and `target_id` of a `for_each` block (`Some(None)` when it has neither;
    /// `None` after an error).
    fn detail_identity(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        names: Names,
    ) -> Option<Option<DetailIdentity>> {
        let key_path = child_path(path, "key");
        let id_path = child_path(path, "target_id");
        if map.get("key").is_none() && map.get("target_id").is_none() {
            return Some(None);
        }
        if !path.starts_with("target.fields") {
            let which = if map.contains_key("target_id") {
                "target_id"
            } else {
                "key"
            };
            self.error_at_key(
                &child_path(path, which),
                format!("`{which}` is only meaningful in a `for_each` of `target.fields`"),
                Some("remove it: detail rows are matched to the target's rows only when they are written".into()),
            );
            return None;
        }
        let target_id = match map.get("target_id") {
            Some(Value::String(field)) if !field.trim().is_empty() => Some(field.clone()),
            Some(_) => {
                self.error(
                    &id_path,
                    "`target_id` must name the detail row's field that holds the target's id of the row",
                    Some("e.g. `target_id: FEntryID` (K3Cloud entry rows) or `target_id: id`".into()),
                );
                None
            }
            None => {
                self.error_at_key(
                    &key_path,
                    "`key` identifies detail rows for `target_id`, which this block lacks",
                    Some("add `target_id:` with the detail row's field that holds the target's id of the row (e.g. `FEntryID`), or remove `key`".into()),
                );
                None
            }
        };
        if let (Some(field), Some(Value::Object(fields))) = (&target_id, map.get("fields")) {
            if fields.contains_key(field) {
                self.error_at_key(
                    &child_path(&child_path(path, "fields"), field),
                    format!(
                        "`{field}` is this block's `target_id`: Ferry fills it from the ids the target gave the rows"
                    ),
                    Some(format!("remove `{field}` from `fields`")),
                );
                return None;
            }
        }
        let key = match map.get("key") {
            None => None,
            Some(Value::String(text)) => {
                let template = self.template(&key_path, text, names)?;
                let reads_the_row = template.variables().iter().any(|name| name != "now" && name != "run");
                if template.is_literal() || !reads_the_row {
                    self.error(
                        &key_path,
                        "`key` is the same for every detail row, so it cannot tell them apart",
                        Some("use a template over the detail row that is unique within its record, e.g. `key: \"<< line_no >>\"`, or leave `key` out to match rows by position".into()),
                    );
                    return None;
                }
                Some(template)
            }
            Some(_) => {
                self.error(
                    &key_path,
                    "`key` must be a template over the detail row",
                    Some("e.g. `key: \"<< line_no >>\"`".into()),
                );
                return None;
            }
        };
        Some(Some(DetailIdentity {
            key,
            target_id: target_id?,
        }))
    }

    fn request(
        &mut self,
        path: &str,
        raw: &RawRequest,
        default_method: Method,
        names: Names,
        vendor: &dyn Protocol,
    ) -> Option<RequestPlan> {
        let mut ok = true;
        if vendor.templated() {
            if raw.api.is_some() {
                self.error_at_key(
                    &child_path(path, "api"),
                    "`api` names an operation of a built-in connector; the `http` connector uses `path`",
                    Some("write `path: /orders` (appended to base_url)".into()),
                );
                ok = false;
            }
            if raw.path.is_none() {
                self.error_at_key(
                    &child_path(path, "path"),
                    "missing `path`",
                    Some("the `http` connector needs the request path, e.g. `path: /orders`".into()),
                );
                ok = false;
            }
        } else {
            if raw.path.is_some() {
                self.error_at_key(
                    &child_path(path, "path"),
                    format!("`path` does not apply to the `{}` connector", vendor.name()),
                    Some("name the vendor operation with `api:` and put its parameters in `body:`".into()),
                );
                ok = false;
            }
            if raw.api.is_none() {
                self.error_at_key(
                    &child_path(path, "api"),
                    format!("missing `api`: which `{}` operation to call", vendor.name()),
                    Some("e.g. `api: gy.erp.shop.get` or `api: BatchSave`, with its parameters in `body:`".into()),
                );
                ok = false;
            }
        }
        let template_path = match &raw.path {
            Some(text) => self.template(&child_path(path, "path"), text, names).map(Some),
            None => Some(None),
        };
        let api = match &raw.api {
            Some(text) => self.template(&child_path(path, "api"), text, names).map(Some),
            None => Some(None),
        };
        ok &= template_path.is_some() && api.is_some();
        let mut query = Vec::new();
        for (key, value) in &raw.query {
            match self.value_template(&child_path(&child_path(path, "query"), key), value, names, false) {
                Some(t) => query.push((key.clone(), t)),
                None => ok = false,
            }
        }
        let mut headers = Vec::new();
        for (key, value) in &raw.headers {
            match self.template(&child_path(&child_path(path, "headers"), key), value, names) {
                Some(t) => headers.push((key.clone(), t)),
                None => ok = false,
            }
        }
        let body = match &raw.body {
            Some(body) => {
                let compiled = self.value_template(&child_path(path, "body"), body, names, false);
                ok &= compiled.is_some();
                compiled
            }
            None => None,
        };
        let codec = raw.codec.unwrap_or_default();
        if matches!(codec, Codec::Form) && body.as_ref().is_some_and(|b| matches!(b, ValueTemplate::Array(_))) {
            self.error(
                &child_path(path, "body"),
                "a form-encoded body must be a mapping of fields",
                None,
            );
            ok = false;
        }
        let (path, api) = (template_path?, api?);
        ok.then(|| RequestPlan {
            method: raw.method.unwrap_or(default_method),
            path,
            api,
            query,
            headers,
            body,
            codec,
        })
    }
}

/// The members of a written row: the keys of `target.fields`, unless the fields are one
/// `for_each` block (then a row is a list) or not a mapping at all.
fn row_shape(fields: Option<&Value>) -> Shape {
    match fields {
        Some(Value::Object(map)) if !map.contains_key("for_each") => {
            Shape::Map(map.keys().map(|key| (key.clone(), Shape::Open)).collect())
        }
        _ => Shape::Open,
    }
}

/// Every variable the templates of a request read.
fn request_variables(request: &RequestPlan) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for t in request.path.iter().chain(request.api.iter()) {
        names.extend(t.variables());
    }
    for (_, t) in &request.headers {
        names.extend(t.variables());
    }
    for (_, t) in &request.query {
        collect_variables(t, &mut names);
    }
    if let Some(body) = &request.body {
        collect_variables(body, &mut names);
    }
    names
}

pub(crate) fn collect_variables(template: &ValueTemplate, names: &mut BTreeSet<String>) {
    match template {
        ValueTemplate::Template(t) => names.extend(t.variables()),
        ValueTemplate::Array(items) => items.iter().for_each(|i| collect_variables(i, names)),
        ValueTemplate::Object(items) => items.iter().for_each(|(_, i)| collect_variables(i, names)),
        ValueTemplate::ForEach { fields, .. } => collect_variables(fields, names),
        ValueTemplate::Literal(_) | ValueTemplate::Path(_) => {}
    }
}

/// The template environments of the two sides of a scheme.
///
/// The rule: a time that crosses the wire is written and read in the zone of the server
/// it crosses to or from. Source requests and answers use the source's zone; a record's
/// own templates (`source.id`, `target.fields`) read times without an offset in the
/// source's zone and write them in the target's; target requests and answers use the
/// target's zone. An explicit `tz=`/`from_tz=` always wins.
struct SideEnvs {
    source: TemplateEnv,
    record: TemplateEnv,
    target: TemplateEnv,
}

impl SideEnvs {
    fn new(base: &TemplateOptions, source: chrono_tz::Tz, target: chrono_tz::Tz) -> SideEnvs {
        let with = |timezone, naive_zone| {
            TemplateEnv::new(TemplateOptions {
                timezone,
                naive_zone,
                ..base.clone()
            })
        };
        SideEnvs {
            source: with(source, None),
            record: with(target, Some(source)),
            target: with(target, None),
        }
    }
}

/// Validates a scheme value and builds its plan.
pub fn validate(
    value: &Value,
    spans: &Spans,
    env_paths: &HashSet<String>,
    unset: &HashSet<String>,
    secrets: Vec<String>,
    file: &str,
    structural: &[String],
) -> (Option<Plan>, Vec<Diagnostic>) {
    let schema_ok = structural.is_empty();
    let Some(root) = value.as_object() else {
        return (None, Vec::new());
    };

    // Time zone and value maps first: templates depend on them.
    let mut early = Vec::new();
    let timezone = match root.get("timezone").and_then(Value::as_str) {
        None => chrono_tz::Asia::Shanghai,
        Some(_) if unset.contains("timezone") => chrono_tz::Asia::Shanghai,
        Some(name) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .map(|best| format!("did you mean `{best}`? use an IANA name such as Asia/Shanghai or UTC"))
                    .unwrap_or_else(|| "use an IANA name such as Asia/Shanghai or UTC".into());
                early.push(
                    Diagnostic::error("timezone", format!("unknown time zone `{name}`"))
                        .with_hint(hint)
                        .at(spans.value_position("timezone")),
                );
                chrono_tz::Asia::Shanghai
            }
        },
    };
    let value_maps: BTreeMap<String, Map<String, Value>> = root
        .get("value_maps")
        .and_then(Value::as_object)
        .map(|maps| {
            maps.iter()
                .filter_map(|(k, v)| v.as_object().map(|m| (k.clone(), m.clone())))
                .collect()
        })
        .unwrap_or_default();
    let strict = !matches!(root.get("undefined").and_then(Value::as_str), Some("lenient"));
    let declared_tables = root
        .get("field_mappings")
        .and_then(|tables| serde_json::from_value(tables.clone()).ok())
        .unwrap_or_default();
    let (field_tables, table_problems) = super::field_tables::resolve(&declared_tables, file);
    for problem in table_problems {
        let position = spans.value_position(&problem.path);
        early.push(problem.at(position));
    }
    let options = TemplateOptions {
        timezone,
        naive_zone: None,
        value_maps,
        field_tables: field_tables.keys().cloned().collect(),
        strict,
    };
    let templates = Arc::new(TemplateEnv::new(options.clone()));
    let mut ctx = Ctx {
        spans,
        structural,
        env_paths,
        unset,
        templates: templates.clone(),
        sides: None,
        diags: early,
        vendors: Default::default(),
        root: value,
        incremental: root
            .get("source")
            .and_then(|source| source.get("incremental"))
            .is_some_and(|inc| !inc.is_null()),
        row: row_shape(root.get("target").and_then(|target| target.get("fields"))),
    };

    // Connections.
    let mut connection_names: Vec<String> = Vec::new();
    let mut connections = BTreeMap::new();
    let mut connections_ok = true;
    if let Some(map) = root.get("connections").and_then(Value::as_object) {
        for (name, raw_value) in map {
            connection_names.push(name.clone());
            let path = child_path("connections", name);
            let Some(raw) = ctx.section::<RawConnection>(Some(raw_value), &path) else {
                connections_ok = false;
                continue;
            };
            let Some(protocol) = open_connection(&mut ctx, &path, name, &raw) else {
                connections_ok = false;
                continue;
            };
            ctx.vendors.insert(name.clone(), protocol.clone());
            match build_connection(&mut ctx, &path, name, &raw, protocol, timezone) {
                Some(plan) => {
                    connections.insert(name.clone(), plan);
                }
                None => connections_ok = false,
            }
        }
    }

    let check_connection = |ctx: &mut Ctx, path: &str, name: &str| {
        if !connection_names.iter().any(|n| n == name) {
            let names: Vec<&str> = connection_names.iter().map(String::as_str).collect();
            ctx.error(
                path,
                format!("unknown connection `{name}`"),
                Some(if names.is_empty() {
                    "define it under `connections:`".to_string()
                } else {
                    choices_hint(name, &names)
                }),
            );
        }
    };

    let scheme_name = root.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if root.contains_key("name") && scheme_name.trim().is_empty() {
        ctx.error(
            "name",
            "the scheme name is empty",
            Some("give the scheme a short unique name, e.g. shop-orders-to-erp".into()),
        );
    }

    // Each side's templates in its server's zone.
    let zone_of = |side: &str| {
        root.get(side)
            .and_then(|s| s.get("connection"))
            .and_then(Value::as_str)
            .and_then(|name| connections.get(name))
            .map_or(timezone, |c: &ConnectionPlan| c.zone)
    };
    ctx.sides = Some(SideEnvs::new(&options, zone_of("source"), zone_of("target")));

    // Source.
    let raw_source = ctx.section::<RawSource>(root.get("source"), "source");
    let target_connection = root
        .get("target")
        .and_then(|t| t.get("connection"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let source = raw_source.as_ref().and_then(|raw| match &raw.receive {
        Some(receive) => build_receiving_source(&mut ctx, raw, receive, &scheme_name, &target_connection),
        None if raw.connection.is_empty() => {
            ctx.error_at_key(
                "source.connection",
                "missing `connection`: the source reads from a connection, or receives pushes",
                Some(
                    "add `connection: <name under connections>`, or `receive: {}` to take pushes with `ferry serve`"
                        .into(),
                ),
            );
            None
        }
        None => {
            check_connection(&mut ctx, "source.connection", &raw.connection);
            build_source(&mut ctx, raw, &scheme_name, timezone)
        }
    });

    // Target.
    let raw_target = ctx.section::<RawTarget>(root.get("target"), "target");
    let target = raw_target.as_ref().and_then(|raw| {
        check_connection(&mut ctx, "target.connection", &raw.connection);
        if let Some(name) = raw.writeback.as_ref().and_then(|w| w.connection.as_ref()) {
            check_connection(&mut ctx, "target.writeback.connection", name);
        }
        let source_connection = raw_source.as_ref().map(|source| source.connection.clone());
        build_target(&mut ctx, raw, &scheme_name, source_connection.as_deref())
    });

    let mut diags = ctx.diags;
    let has_errors = diags.iter().any(Diagnostic::is_error);
    if has_errors || !schema_ok || !connections_ok {
        return (None, diags);
    }
    let raw_scheme = match serde_json::from_value::<RawScheme>(value.clone()) {
        Ok(raw) => raw,
        Err(e) => {
            diags.push(Diagnostic::error("", e.to_string()));
            return (None, diags);
        }
    };
    let (Some(source), Some(target)) = (source, target) else {
        return (None, diags);
    };
    let failures = raw_scheme
        .failures
        .as_ref()
        .map(|raw| FailurePolicy {
            replay: raw.replay.unwrap_or(true),
            max_attempts: raw.max_attempts.unwrap_or(5),
        })
        .unwrap_or_default();
    let plan = Plan {
        name: scheme_name,
        file: file.to_string(),
        timezone,
        templates,
        connections,
        source,
        target,
        redactor: Redactor::new(secrets),
        failures,
        field_tables,
        raw: raw_scheme,
    };
    (Some(plan), diags)
}

/// Opens a connection's protocol through the connector table: its settings are read by
/// the connector and checked, each problem reported at its path under `settings`.
/// Settings holding placeholders of unset variables (`--no-env`) are read but not checked.
fn open_connection(ctx: &mut Ctx, path: &str, name: &str, raw: &RawConnection) -> Option<Arc<dyn Protocol>> {
    let Some(connector) = crate::protocol::connector(&raw.connector) else {
        let connector_path = child_path(path, "connector");
        if !ctx.structural.iter().any(|p| p.starts_with(path)) {
            let names = crate::protocol::CONNECTORS.iter().map(|c| c.name);
            let hint = did_you_mean(&raw.connector, names.clone())
                .map(|best| format!("did you mean `{best}`?"))
                .unwrap_or_else(|| format!("use one of: {}", names.collect::<Vec<_>>().join(", ")));
            ctx.error(
                &connector_path,
                format!("unknown connector `{}`", raw.connector),
                Some(hint),
            );
        }
        return None;
    };
    let settings_path = child_path(path, "settings");
    let at = |inner: &str| {
        if inner.is_empty() {
            settings_path.clone()
        } else {
            child_path(&settings_path, inner)
        }
    };
    let mut settings = raw.settings.clone();
    for _ in 0..32 {
        let error = match (connector.open)(settings.as_ref()) {
            Ok(protocol) => {
                let placeholders = ctx.unset.iter().any(|p| p.starts_with(&settings_path));
                if let (false, Err(e)) = (placeholders, protocol.check()) {
                    ctx.error(&at(&e.path), e.message, None);
                    ctx.vendors.insert(name.to_string(), protocol);
                    return None;
                }
                return Some(protocol);
            }
            Err(e) => e,
        };
        let full = at(&error.path);
        let pruned = ctx.unset.contains(&full)
            && !error.path.is_empty()
            && settings.as_mut().is_some_and(|value| prune(value, &error.path));
        if !pruned {
            if !ctx.structural.iter().any(|p| p.starts_with(path)) {
                ctx.error(&full, error.message, None);
            }
            break;
        }
    }
    // The rest of the scheme is still checked against what this connector is.
    ctx.vendors.insert(name.to_string(), Arc::new(Unopened(connector.name)));
    None
}

/// A connection whose settings could not be read: it names its connector, so the
/// source and target are still checked against it, and runs nothing.
#[derive(Debug)]
struct Unopened(&'static str);

impl Protocol for Unopened {
    fn name(&self) -> &'static str {
        self.0
    }

    fn templated(&self) -> bool {
        self.0 == crate::protocol::http::NAME
    }

    fn build(&self, _call: &crate::protocol::Call<'_>) -> Result<crate::protocol::WireRequest, String> {
        Err("its settings could not be read".to_string())
    }
}

/// A connection's zone: its `timezone`, else its vendor's, else the scheme's.
fn connection_zone(
    ctx: &mut Ctx,
    path: &str,
    common: &HttpConnection,
    vendor: &dyn Protocol,
    scheme_zone: chrono_tz::Tz,
) -> Option<chrono_tz::Tz> {
    let vendor_zone = vendor.server_zone();
    let Some(name) = &common.timezone else {
        return Some(vendor_zone.unwrap_or(scheme_zone));
    };
    let zone_path = child_path(path, "timezone");
    match name.parse::<chrono_tz::Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
            let hint = did_you_mean(name, names.iter().copied())
                .map(|best| format!("did you mean `{best}`? use an IANA name such as Asia/Shanghai or UTC"))
                .unwrap_or_else(|| "use an IANA name such as Asia/Shanghai or UTC".into());
            ctx.error(&zone_path, format!("unknown time zone `{name}`"), Some(hint));
            None
        }
    }
}

fn build_connection(
    ctx: &mut Ctx,
    path: &str,
    name: &str,
    raw: &RawConnection,
    protocol: Arc<dyn Protocol>,
    scheme_zone: chrono_tz::Tz,
) -> Option<ConnectionPlan> {
    let common = raw.common();
    let zone = connection_zone(ctx, path, &common, protocol.as_ref(), scheme_zone);
    let url_path = child_path(path, "base_url");
    let mut ok = true;
    match url::Url::parse(&common.base_url) {
        _ if ctx.has_error_at(&url_path) => ok = false,
        _ if ctx.unset.contains(&url_path) => {}
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
        Ok(url) => {
            ctx.error(
                &url_path,
                format!("base_url must use http or https, not `{}`", url.scheme()),
                None,
            );
            ok = false;
        }
        Err(e) => {
            ctx.error(
                &url_path,
                format!("`{}` is not a URL: {e}", common.base_url),
                Some("write a full URL such as https://api.example.com".into()),
            );
            ok = false;
        }
    }
    let mut headers = Vec::new();
    for (key, value) in &common.headers {
        let header_path = child_path(&child_path(path, "headers"), key);
        if is_credential_header(key) && !ctx.env_paths.contains(&header_path) && !value.trim().is_empty() {
            ctx.warning(
                &header_path,
                format!("header `{key}` holds a literal credential"),
                Some(format!("move the value to the environment and write `{key}: \"${{MY_TOKEN}}\"`, so it never lands in version control")),
            );
        }
        match ctx.template(&header_path, value, Names::Only(CONNECTION_NAMES)) {
            Some(t) => headers.push((key.clone(), t)),
            None => ok = false,
        }
    }
    let timeout = ctx.std_duration(&child_path(path, "timeout"), common.timeout.as_ref(), "30s");
    let in_flight = common.in_flight.unwrap_or(2);
    if in_flight == 0 {
        ctx.error(&child_path(path, "in_flight"), "in_flight must be at least 1", None);
        ok = false;
    }
    let mut retry = RetryPolicy::default();
    if let Some(raw_retry) = &common.retry {
        let retry_path = child_path(path, "retry");
        if let Some(attempts) = raw_retry.attempts {
            if attempts == 0 {
                ctx.error(
                    &child_path(&retry_path, "attempts"),
                    "attempts must be at least 1 (1 means no retries)",
                    None,
                );
                ok = false;
            }
            retry.attempts = attempts.max(1);
        }
        retry.backoff = ctx.std_duration(&child_path(&retry_path, "backoff"), raw_retry.backoff.as_ref(), "200ms")?;
        retry.max_backoff = ctx.std_duration(
            &child_path(&retry_path, "max_backoff"),
            raw_retry.max_backoff.as_ref(),
            "10s",
        )?;
        retry.max_elapsed = ctx.std_duration(
            &child_path(&retry_path, "max_elapsed"),
            raw_retry.max_elapsed.as_ref(),
            "2m",
        )?;
    }
    let mut in_flight = in_flight;
    let rate = match &common.rate {
        None => None,
        Some(raw_rate) => {
            let rate_path = child_path(path, "rate");
            if let Some(max) = raw_rate.max_in_flight {
                if max == 0 {
                    ctx.error(
                        &child_path(&rate_path, "max_in_flight"),
                        "max_in_flight must be at least 1",
                        None,
                    );
                    ok = false;
                }
                in_flight = max;
            }
            if let Some(shared) = &raw_rate.shared {
                if raw_rate.per_second.is_none() {
                    ctx.error(
                        &child_path(&rate_path, "shared"),
                        "a shared budget needs `per_second`",
                        Some("add e.g. `per_second: 10` next to `shared`".into()),
                    );
                    ok = false;
                }
                if shared.trim().is_empty() {
                    ctx.error(
                        &child_path(&rate_path, "shared"),
                        "the shared budget name is empty",
                        Some("name it after the tenant, e.g. `shared: kingdee-prod`".into()),
                    );
                    ok = false;
                }
            }
            match raw_rate.per_second {
                None => None,
                Some(per_second) if !(per_second.is_finite() && per_second > 0.0) => {
                    ctx.error(
                        &child_path(&rate_path, "per_second"),
                        format!("per_second must be a positive number, got {per_second}"),
                        Some("e.g. `per_second: 5`, or `0.5` for one request every two seconds".into()),
                    );
                    ok = false;
                    None
                }
                Some(per_second) => {
                    let burst = raw_rate.burst.unwrap_or_else(|| per_second.ceil().max(1.0) as u32);
                    if burst == 0 {
                        ctx.error(&child_path(&rate_path, "burst"), "burst must be at least 1", None);
                        ok = false;
                    }
                    Some(RatePlan {
                        per_second,
                        burst: burst.max(1),
                        shared: raw_rate.shared.clone().filter(|s| !s.trim().is_empty()),
                    })
                }
            }
        }
    };
    let timeout = timeout?;
    let zone = zone?;
    let secret_fields = crate::protocol::connector(protocol.name()).map_or(&[][..], |c| c.secret_fields);
    for field in secret_fields {
        let field_path = child_path(&child_path(path, "settings"), field);
        let literal = ctx
            .spans_value(&field_path)
            .is_some_and(|v| v.as_str().is_some_and(|t| !t.is_empty()));
        if literal && !ctx.env_paths.contains(&field_path) {
            ctx.warning(
                &field_path,
                format!("`{field}` holds a literal credential"),
                Some(format!(
                    "write it as `{field}: \"${{MY_{}}}\"` and keep the value in the environment",
                    field.to_uppercase()
                )),
            );
        }
    }
    ok.then(|| ConnectionPlan {
        name: name.to_string(),
        connector: protocol.name(),
        protocol,
        base_url: common.base_url.trim_end_matches('/').to_string(),
        headers,
        timeout,
        in_flight: in_flight.max(1) as usize,
        max_response_bytes: common.max_response_mib.unwrap_or(64) as usize * 1024 * 1024,
        retry,
        rate,
        zone,
    })
}

fn build_source(ctx: &mut Ctx, raw: &RawSource, scheme_name: &str, tz: chrono_tz::Tz) -> Option<SourcePlan> {
    let vendor = ctx
        .vendors
        .get(&raw.connection)
        .cloned()
        .unwrap_or_else(|| Arc::new(crate::protocol::http::Http));
    let request = ctx.request(
        "source.request",
        &raw.request,
        Method::Get,
        Names::Only(SOURCE_REQUEST_NAMES),
        vendor.as_ref(),
    );
    // A literal api lets the connector supply the list key and the paging.
    let literal_api = raw.request.api.as_deref().filter(|a| !a.contains("<<"));
    let response_raw = raw.response.clone().unwrap_or_default();
    let success = ctx.optional_template(
        "source.response.success",
        response_raw.success.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let error = ctx.optional_template(
        "source.response.error",
        response_raw.error.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let retry = ctx.optional_template(
        "source.response.retry",
        response_raw.retry.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let records = match (&raw.records, literal_api.and_then(|api| vendor.records_path(api))) {
        (Some(text), _) => ctx.json_path("source.records", text),
        (None, Some(default)) => ctx.json_path("source.records", default),
        // A misspelt `records` key was already reported as unknown, with a did-you-mean.
        (None, None)
            if ctx.structural.iter().any(|p| {
                p.strip_prefix("source.")
                    .is_some_and(|key| did_you_mean(key, ["records"]).is_some())
            }) =>
        {
            None
        }
        (None, None) => {
            ctx.error_at_key(
                "source.records",
                "missing `records`: the JSONPath of the records in a page",
                Some(match literal_api {
                    Some(api) => format!(
                        "`{}` has no built-in list key for `{api}`; add e.g. `records: $.data.items[*]`",
                        vendor.name()
                    ),
                    None => "add e.g. `records: $.data.orders[*]`".to_string(),
                }),
            );
            None
        }
    };
    let deleted = match (&raw.deleted, literal_api.and_then(|api| vendor.deleted_path(api))) {
        (Some(text), _) => ctx.json_path("source.deleted", text).map(Some),
        (None, Some(default)) => ctx.json_path("source.deleted", default).map(Some),
        (None, None) => Some(None),
    };
    let auto_page = match (&raw.pagination, literal_api) {
        (None, Some(api)) => vendor.paging(api),
        _ => None,
    };
    if let Some((message, hint)) = literal_api.and_then(|api| vendor.source_advice(api)) {
        ctx.warning("source.request.api", message, Some(hint));
    }
    let id = ctx.template("source.id", &raw.id, Names::Record(SOURCE_RECORD_NAMES));
    if let Some(t) = &id {
        if t.is_literal() && !ctx.unset.contains("source.id") {
            ctx.error(
                "source.id",
                format!("`{}` is a constant, so every record would get the same id", raw.id),
                Some("use a template over the record, e.g. `<< order_no >>`".into()),
            );
        }
    }
    let name = ctx.optional_template("source.name", raw.name.as_ref(), Names::Record(SOURCE_RECORD_NAMES));
    let detail = match &raw.detail {
        None => Some(None),
        Some(d) => {
            let request = ctx.request(
                "source.detail.request",
                &d.request,
                Method::Get,
                Names::Any(DETAIL_REQUEST_NAMES),
                vendor.as_ref(),
            );
            let literal = d.request.api.as_deref().filter(|a| !a.contains("<<"));
            let path = match (&d.records, literal.and_then(|api| vendor.records_path(api))) {
                (Some(text), _) => ctx.json_path("source.detail.records", text),
                (None, Some(default)) => ctx.json_path("source.detail.records", default),
                (None, None) => ctx.json_path("source.detail.records", "$"),
            };
            match (request, path) {
                (Some(request), Some(records)) => Some(Some(DetailPlan { request, records })),
                _ => None,
            }
        }
    };
    let pagination = match &auto_page {
        Some(defaults) => Some(pagination_from_defaults(ctx, defaults)),
        None => build_pagination(ctx, raw.pagination.as_ref()),
    };
    let incremental = match &raw.incremental {
        None => Some(None),
        Some(inc) => {
            let start = match parse_time(&inc.start, tz) {
                _ if ctx.unset.contains("source.incremental.start") => Some(chrono::DateTime::UNIX_EPOCH),
                Ok(t) => Some(t),
                Err(message) => {
                    let (message, hint) = split_advice(message);
                    ctx.error("source.incremental.start", message, hint);
                    None
                }
            };
            let window = ctx.duration("source.incremental.window", inc.window.as_ref(), "1d");
            let lookback = ctx.duration("source.incremental.lookback", inc.lookback.as_ref(), "0s");
            let lag = ctx.duration("source.incremental.lag", inc.lag.as_ref(), "0s");
            if window.is_some_and(|w| w <= chrono::Duration::zero()) {
                ctx.error("source.incremental.window", "the window must be longer than zero", None);
            }
            match (start, window, lookback, lag) {
                (Some(start), Some(window), Some(lookback), Some(lag)) => Some(Some(IncrementalPlan {
                    field: inc.field.clone(),
                    start,
                    window,
                    lookback,
                    lag,
                })),
                _ => None,
            }
        }
    };
    let detail = detail?;
    let retry = retry?;
    let (request, success, error, records, deleted, id, name, pagination, incremental) = (
        request?,
        success?,
        error?,
        records?,
        deleted?,
        id?,
        name?,
        pagination?,
        incremental?,
    );

    let used = request_variables(&request);
    if auto_page.is_none()
        && !matches!(pagination.style, PageStyle::None | PageStyle::NextLink { .. })
        && !used.contains("page")
    {
        ctx.warning(
            "source.pagination",
            "pagination is set but the request never uses `page`, so every page would be the same request",
            Some(
                "put `<< page.number >>`, `<< page.offset >>` or `<< page.cursor >>` into source.request.query or body"
                    .into(),
            ),
        );
    }
    if incremental.is_some() && !used.contains("window") {
        ctx.warning(
            "source.incremental",
            "incremental windows are set but the request never uses `window`",
            Some("filter the request with `<< window.start | datetime >>` and `<< window.end | datetime >>`".into()),
        );
    }
    Some(SourcePlan {
        connection: raw.connection.clone(),
        object: raw.object.clone().unwrap_or_else(|| scheme_name.to_string()),
        request,
        response: ReadResponsePlan {
            codec: response_raw.codec.unwrap_or_default(),
            success,
            error,
            retry,
        },
        records,
        deleted,
        pagination,
        auto_page,
        incremental,
        detail,
        id,
        name,
        receive: None,
    })
}

/// A receiving source (`source.receive`): no connection or request; its records are the
/// pushes `ferry serve` takes, read with `records` (default `$`) and `id`.
fn build_receiving_source(
    ctx: &mut Ctx,
    raw: &RawSource,
    receive: &RawReceive,
    scheme_name: &str,
    target_connection: &str,
) -> Option<SourcePlan> {
    let polled_only: [(&str, bool); 6] = [
        ("connection", !raw.connection.is_empty()),
        ("request", !raw.request.is_empty()),
        ("pagination", raw.pagination.is_some()),
        ("incremental", raw.incremental.is_some()),
        ("detail", raw.detail.is_some()),
        ("response", raw.response.is_some()),
    ];
    let mut ok = true;
    for (key, set) in polled_only {
        if set {
            ok = false;
            ctx.error_at_key(
                &format!("source.{key}"),
                format!("a receiving source has no `{key}`: records are pushed to `ferry serve`, not read"),
                Some(format!(
                    "remove `{key}`, or remove `receive` to read the source with `ferry run`"
                )),
            );
        }
    }
    let path = receive.path.clone().unwrap_or_else(|| scheme_name.to_string());
    if path.is_empty()
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        ok = false;
        ctx.error(
            "source.receive.path",
            format!("`{path}` cannot be a URL path segment"),
            Some("use letters, digits, `-`, `_` and `.`, e.g. `orders`".into()),
        );
    }
    let auth = receive.auth.clone().unwrap_or_default();
    if auth.token.is_none() && auth.signing_secrets.is_empty() {
        ctx.warning(
            "source.receive",
            "pushes are not authenticated: anyone who reaches the port can write to the target",
            Some("add `auth: {token: ${PUSH_TOKEN}}` (and/or `signing_secrets`)".into()),
        );
    }
    for (index, secret) in auth.signing_secrets.iter().enumerate() {
        if secret.is_empty() {
            ok = false;
            ctx.error(
                &index_path("source.receive.auth.signing_secrets", index),
                "a signing secret is empty",
                None,
            );
        }
    }
    if auth.token.as_deref() == Some("") {
        ok = false;
        ctx.error("source.receive.auth.token", "the token is empty", None);
    }
    let tolerance = ctx.duration("source.receive.auth.tolerance", auth.tolerance.as_ref(), "5m");
    for (key, value) in [("max_body", receive.max_body), ("max_pending", receive.max_pending)] {
        if value == Some(0) {
            ok = false;
            ctx.error(
                &format!("source.receive.{key}"),
                format!("`{key}` must be at least 1"),
                None,
            );
        }
    }
    let idempotency_key = match &receive.idempotency_key {
        None => Some(None),
        Some(key) => match (&key.header, &key.path) {
            (Some(header), None) if is_header_name(header) => Some(Some(IdempotencyKey::Header(header.clone()))),
            (Some(header), None) => {
                ctx.error(
                    "source.receive.idempotency_key.header",
                    format!("`{header}` is not a valid header name"),
                    Some("use letters, digits and `-`, e.g. `Idempotency-Key`".into()),
                );
                None
            }
            (None, Some(path)) => ctx
                .json_path("source.receive.idempotency_key.path", path)
                .map(|path| Some(IdempotencyKey::Path(path))),
            _ => {
                ctx.error(
                    "source.receive.idempotency_key",
                    "give exactly one of `header` and `path`",
                    Some("e.g. `idempotency_key: {header: Idempotency-Key}` or `{path: $.eventId}`".into()),
                );
                None
            }
        },
    };
    let records = ctx.json_path("source.records", raw.records.as_deref().unwrap_or("$"));
    let deleted = match &raw.deleted {
        Some(text) => ctx.json_path("source.deleted", text).map(Some),
        None => Some(None),
    };
    let id = ctx.template("source.id", &raw.id, Names::Record(SOURCE_RECORD_NAMES));
    if let Some(t) = &id {
        if t.is_literal() && !ctx.unset.contains("source.id") {
            ctx.error(
                "source.id",
                format!("`{}` is a constant, so every record would get the same id", raw.id),
                Some("use a template over the pushed record, e.g. `<< id >>` for a standard-format push".into()),
            );
        }
    }
    let name = ctx.optional_template("source.name", raw.name.as_ref(), Names::Record(SOURCE_RECORD_NAMES));
    let (records, deleted, id, name, tolerance, idempotency_key) =
        (records?, deleted?, id?, name?, tolerance?, idempotency_key?);
    if !ok {
        return None;
    }
    let codec = match receive.codec.unwrap_or_default() {
        ReceiveCodec::Xml => Codec::Xml,
        ReceiveCodec::Form => Codec::Form,
        ReceiveCodec::Json | ReceiveCodec::Text => Codec::Json,
    };
    let stand_in = RequestPlan {
        method: Method::Post,
        path: None,
        api: None,
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        codec,
    };
    Some(SourcePlan {
        connection: target_connection.to_string(),
        object: raw.object.clone().unwrap_or_else(|| scheme_name.to_string()),
        request: stand_in,
        response: ReadResponsePlan {
            codec,
            success: None,
            error: None,
            retry: None,
        },
        records,
        deleted,
        pagination: build_pagination(ctx, None)?,
        auto_page: None,
        incremental: None,
        detail: None,
        id,
        name,
        receive: Some(ReceivePlan {
            path,
            format: receive.format.unwrap_or_default(),
            codec: receive.codec.unwrap_or_default(),
            object_api_name: receive.object_api_name.clone().filter(|s| !s.is_empty()),
            data_center_id: receive.data_center_id.clone().filter(|s| !s.is_empty()),
            token: auth.token.clone(),
            signing_secrets: auth.signing_secrets.clone(),
            tolerance_secs: tolerance.num_seconds(),
            max_body: receive.max_body.unwrap_or(1 << 20) as usize,
            max_pending: receive.max_pending.unwrap_or(100_000),
            idempotency_key,
        }),
    })
}

/// The pagination plan of a connector's default paging: the same plan the scheme would
/// get by writing that style itself.
fn pagination_from_defaults(ctx: &mut Ctx, defaults: &crate::protocol::PagingDefaults) -> PaginationPlan {
    let total = defaults
        .total_path
        .and_then(|p| ctx.json_path("source.pagination.total", p));
    let numbered_stop = defaults.stop.unwrap_or(if total.is_some() {
        StopRule::Total
    } else {
        StopRule::ShortPage
    });
    match defaults.style {
        PagingStyle::PageNumber | PagingStyle::Offset => PaginationPlan {
            style: if defaults.style == PagingStyle::Offset {
                PageStyle::Offset { start: defaults.start }
            } else {
                PageStyle::PageNumber { start: defaults.start }
            },
            size: Some(defaults.size),
            stop: numbered_stop,
            total,
            has_more: None,
            max_pages: None,
        },
        PagingStyle::Cursor { cursor, has_more } => PaginationPlan {
            style: match ctx.json_path("source.pagination.cursor", cursor) {
                Some(cursor) => PageStyle::Cursor { cursor },
                None => PageStyle::None,
            },
            // The server picks how many rows a cursor page holds.
            size: None,
            stop: StopRule::HasMore,
            total: None,
            has_more: ctx.json_path("source.pagination.has_more", has_more),
            max_pages: None,
        },
    }
}

fn build_pagination(ctx: &mut Ctx, raw: Option<&RawPagination>) -> Option<PaginationPlan> {
    let base = "source.pagination";
    let none = PaginationPlan {
        style: PageStyle::None,
        size: None,
        stop: StopRule::EmptyPage,
        total: None,
        has_more: None,
        max_pages: None,
    };
    let Some(raw) = raw else { return Some(none) };
    let check_size = |ctx: &mut Ctx, size: Option<u64>| {
        if size == Some(0) {
            ctx.error(&child_path(base, "size"), "the page size must be at least 1", None);
        }
    };
    let stop_needs =
        |ctx: &mut Ctx, stop: Option<StopRule>, total: &Option<String>, has_more: &Option<String>| match stop {
            Some(StopRule::Total) if total.is_none() => ctx.error(
                &child_path(base, "stop"),
                "`stop: total` needs `total`, the JSONPath of the record count",
                Some("add e.g. `total: $.data.total`, or choose another stop rule".into()),
            ),
            Some(StopRule::HasMore) if has_more.is_none() => ctx.error(
                &child_path(base, "stop"),
                "`stop: has_more` needs `has_more`, the JSONPath of the flag",
                Some("add e.g. `has_more: $.data.has_more`, or choose another stop rule".into()),
            ),
            _ => {}
        };
    let default_stop = |total: &Option<String>, has_more: &Option<String>| {
        if total.is_some() {
            StopRule::Total
        } else if has_more.is_some() {
            StopRule::HasMore
        } else {
            StopRule::EmptyPage
        }
    };
    match raw {
        RawPagination::None {} => Some(none),
        RawPagination::PageNumber {
            start,
            size,
            stop,
            total,
            has_more,
            max_pages,
        }
        | RawPagination::Offset {
            start,
            size,
            stop,
            total,
            has_more,
            max_pages,
        } => {
            check_size(ctx, Some(*size));
            stop_needs(ctx, *stop, total, has_more);
            let total_path = ctx.optional_json_path(&child_path(base, "total"), total.as_ref());
            let more_path = ctx.optional_json_path(&child_path(base, "has_more"), has_more.as_ref());
            let style = match raw {
                RawPagination::PageNumber { .. } => PageStyle::PageNumber {
                    start: start.unwrap_or(1),
                },
                _ => PageStyle::Offset {
                    start: start.unwrap_or(0),
                },
            };
            Some(PaginationPlan {
                style,
                size: Some(*size),
                stop: stop.unwrap_or_else(|| default_stop(total, has_more)),
                total: total_path?,
                has_more: more_path?,
                max_pages: *max_pages,
            })
        }
        RawPagination::Cursor {
            cursor,
            size,
            has_more,
            max_pages,
        } => {
            check_size(ctx, *size);
            let cursor_path = ctx.json_path(&child_path(base, "cursor"), cursor);
            let more_path = ctx.optional_json_path(&child_path(base, "has_more"), has_more.as_ref());
            Some(PaginationPlan {
                style: PageStyle::Cursor { cursor: cursor_path? },
                size: *size,
                stop: if has_more.is_some() {
                    StopRule::HasMore
                } else {
                    StopRule::EmptyPage
                },
                total: None,
                has_more: more_path?,
                max_pages: *max_pages,
            })
        }
        RawPagination::NextLink { next, size, max_pages } => {
            check_size(ctx, *size);
            let next_path = ctx.json_path(&child_path(base, "next"), next);
            Some(PaginationPlan {
                style: PageStyle::NextLink { next: next_path? },
                size: *size,
                stop: StopRule::EmptyPage,
                total: None,
                has_more: None,
                max_pages: *max_pages,
            })
        }
    }
}

fn build_target(
    ctx: &mut Ctx,
    raw: &RawTarget,
    scheme_name: &str,
    source_connection: Option<&str>,
) -> Option<TargetPlan> {
    let vendor = ctx
        .vendors
        .get(&raw.connection)
        .cloned()
        .unwrap_or_else(|| Arc::new(crate::protocol::http::Http));
    let batch = raw.batch.unwrap_or(100);
    if batch == 0 && !ctx.has_error_at("target.batch") {
        ctx.error(
            "target.batch",
            "the batch size must be at least 1",
            Some("`batch` is the number of rows per write request, e.g. `batch: 50`; use 1 for targets that take one row at a time".into()),
        );
    }
    let fields = match &raw.fields {
        Value::Object(_) => ctx.value_template("target.fields", &raw.fields, Names::Record(TARGET_RECORD_NAMES), true),
        other => {
            ctx.error(
                "target.fields",
                format!(
                    "`fields` must be a mapping of target fields, found {}",
                    if other.is_array() { "a list" } else { "a single value" }
                ),
                Some("e.g. `fields: {FName: \"<< name >>\"}`".into()),
            );
            None
        }
    };
    let key = ctx.optional_template("target.key", raw.key.as_ref(), Names::Record(TARGET_RECORD_NAMES));
    let name = ctx.optional_template("target.name", raw.name.as_ref(), Names::Record(TARGET_RECORD_NAMES));
    if raw.update.is_some() && raw.create.is_none() {
        ctx.error_at_key(
            "target.update",
            "`update` is set but `create` is missing",
            Some("records without a mapping are created first; add `target.create` with the create request".into()),
        );
    }
    if raw.create.is_none() && raw.update.is_none() {
        ctx.error_at_key(
            "target.create",
            "the target has no `create` operation",
            Some("add `create: {request: {method: POST, path: …, body: {items: \"<< rows >>\"}}}`".into()),
        );
    }
    let create = raw.create.as_ref().and_then(|op| {
        build_operation(
            ctx,
            "target.create",
            op,
            OpKind::Create,
            raw.key.is_some(),
            vendor.as_ref(),
        )
    });
    let update = match &raw.update {
        None => Some(None),
        Some(op) => build_operation(
            ctx,
            "target.update",
            op,
            OpKind::Update,
            raw.key.is_some(),
            vendor.as_ref(),
        )
        .map(Some),
    };
    let delete = match &raw.delete {
        None => Some(None),
        Some(op) => build_operation(
            ctx,
            "target.delete",
            op,
            OpKind::Delete,
            raw.key.is_some(),
            vendor.as_ref(),
        )
        .map(Some),
    };
    let lookup = match &raw.lookup {
        None => Some(None),
        Some(lookup) => build_lookup(ctx, lookup, raw.key.is_some(), vendor.as_ref()).map(Some),
    };
    let writeback = match &raw.writeback {
        None => Some(None),
        Some(writeback) => build_writeback(ctx, writeback, source_connection).map(Some),
    };
    let (fields, key, name, create, update, delete, lookup, writeback) =
        (fields?, key?, name?, create?, update?, delete?, lookup?, writeback?);
    let mut detail_lists = Vec::new();
    collect_detail_lists(ctx, &fields, "target.fields", &mut Vec::new(), false, &mut detail_lists);
    if let Some(first) = detail_lists.first() {
        if !vendor.reports_detail_ids() {
            ctx.error_at_key(
                &format!("target.fields.{}.target_id", first.key()),
                format!(
                    "the `{}` connector does not report the ids of detail rows, so `target_id` could never be filled",
                    vendor.name()
                ),
                Some("`target_id` works with targets whose answers name detail row ids: kingdee-k3cloud, erp-standard. Remove `key` and `target_id` here".into()),
            );
            return None;
        }
    }
    (batch > 0).then(|| TargetPlan {
        connection: raw.connection.clone(),
        object: raw.object.clone().unwrap_or_else(|| scheme_name.to_string()),
        batch: batch as usize,
        key,
        name,
        create,
        update,
        delete,
        lookup,
        writeback,
        fields,
        detail_lists,
    })
}

/// `target.writeback`: one request per created record, on the source's connection unless
/// it names another.
fn build_writeback(ctx: &mut Ctx, raw: &RawWriteback, source_connection: Option<&str>) -> Option<WritebackPlan> {
    let connection = match (&raw.connection, source_connection) {
        (Some(name), _) => name.clone(),
        (None, Some(source)) => source.to_string(),
        (None, None) => return None,
    };
    let vendor = ctx
        .vendors
        .get(&connection)
        .cloned()
        .unwrap_or_else(|| Arc::new(crate::protocol::http::Http));
    let op = RawOperation {
        request: raw.request.clone(),
        response: raw.response.clone(),
        per: Some(Per::Row),
        retry_writes: None,
    };
    let op = build_operation(ctx, "target.writeback", &op, OpKind::Writeback, false, vendor.as_ref())?;
    Some(WritebackPlan { connection, op })
}

/// The `for_each` lists of `target.fields` with a `target_id`, found under named fields
/// (`at`). One inside a list or inside another `for_each` is refused: its rows have no one
/// place in the written row to be matched at.
fn collect_detail_lists(
    ctx: &mut Ctx,
    tree: &ValueTemplate,
    path: &str,
    at: &mut Vec<String>,
    nested: bool,
    out: &mut Vec<crate::protocol::DetailList>,
) {
    match tree {
        ValueTemplate::Object(fields) => {
            for (name, value) in fields {
                at.push(name.clone());
                collect_detail_lists(ctx, value, &child_path(path, name), at, nested, out);
                at.pop();
            }
        }
        ValueTemplate::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_detail_lists(ctx, item, &index_path(path, i), at, true, out);
            }
        }
        ValueTemplate::ForEach { fields, identity, .. } => {
            if let Some(identity) = identity {
                if nested {
                    ctx.error_at_key(
                        &child_path(path, "target_id"),
                        "`target_id` works only for a `for_each` directly under named fields, not inside a list or another `for_each`",
                        Some("move the detail rows to a field of their own, or remove `key` and `target_id`".into()),
                    );
                } else {
                    out.push(crate::protocol::DetailList {
                        path: at.clone(),
                        id_field: identity.target_id.clone(),
                    });
                }
            }
            collect_detail_lists(ctx, fields, &child_path(path, "fields"), at, true, out);
        }
        ValueTemplate::Literal(_) | ValueTemplate::Template(_) | ValueTemplate::Path(_) => {}
    }
}

fn build_lookup(ctx: &mut Ctx, raw: &RawLookup, has_key: bool, vendor: &dyn Protocol) -> Option<LookupPlan> {
    if !has_key {
        ctx.error_at_key(
            "target.lookup",
            "`lookup` finds records by business key, but `target.key` is not set",
            Some("add `target.key`, e.g. `key: \"<< FNumber >>\"`".into()),
        );
    }
    let batched = raw.rows.is_some();
    let request = ctx.request(
        "target.lookup.request",
        &raw.request,
        Method::Get,
        Names::Only(if batched {
            LOOKUP_BATCH_REQUEST_NAMES
        } else {
            LOOKUP_REQUEST_NAMES
        }),
        vendor,
    );
    let batch = match (&raw.rows, &raw.key) {
        (None, None) => Some(None),
        (None, Some(_)) => {
            ctx.error(
                "target.lookup.key",
                "`key` reads each record a batched look-up found, but `rows` is not set",
                Some("add `rows: $.path[*]` selecting the records found, and read `keys` in the request".into()),
            );
            None
        }
        (Some(_), None) => {
            ctx.error_at_key(
                "target.lookup.rows",
                "a batched look-up needs `key`, a JSONPath to each found record's business key",
                Some("e.g. `key: $[1]` when the query answers `[id, number]` rows".into()),
            );
            None
        }
        (Some(rows), Some(key)) => {
            let rows = ctx.json_path("target.lookup.rows", rows);
            let key = ctx.json_path("target.lookup.key", key);
            if raw.batch == Some(0) {
                ctx.error("target.lookup.batch", "the look-up batch must be at least 1", None);
            }
            match (rows, key) {
                (Some(rows), Some(key)) => Some(Some(LookupBatch {
                    rows,
                    key,
                    size: raw.batch.unwrap_or(100).max(1) as usize,
                })),
                _ => None,
            }
        }
    };
    if let Some(request) = &request {
        let used = request_variables(request);
        if batched && !used.contains("keys") {
            ctx.error(
                "target.lookup.request",
                "a batched look-up (`rows`) sends many keys at once, but the request never reads `keys`",
                Some("e.g. `FilterString: \"FNumber IN (<< keys | sql_list >>)\"`".into()),
            );
        }
    }
    let response_raw = raw.response.clone().unwrap_or_default();
    let success = ctx.optional_template(
        "target.lookup.response.success",
        response_raw.success.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let error = ctx.optional_template(
        "target.lookup.response.error",
        response_raw.error.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let retry = ctx.optional_template(
        "target.lookup.response.retry",
        response_raw.retry.as_ref(),
        Names::Only(READ_RESPONSE_NAMES),
    );
    let id = ctx.json_path("target.lookup.id", &raw.id);
    Some(LookupPlan {
        request: request?,
        response: ReadResponsePlan {
            codec: response_raw.codec.unwrap_or_default(),
            success: success?,
            error: error?,
            retry: retry?,
        },
        id: id?,
        batch: batch?,
    })
    .filter(|_| has_key)
}

/// Which target operation a request belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Create,
    Update,
    Delete,
    Writeback,
}

fn build_operation(
    ctx: &mut Ctx,
    path: &str,
    raw: &RawOperation,
    kind: OpKind,
    has_key: bool,
    vendor: &dyn Protocol,
) -> Option<OperationPlan> {
    let request_path = child_path(path, "request");
    let names = match kind {
        OpKind::Delete => DELETE_REQUEST_NAMES,
        OpKind::Writeback => WRITEBACK_REQUEST_NAMES,
        OpKind::Create | OpKind::Update => WRITE_REQUEST_NAMES,
    };
    let request = ctx.request(&request_path, &raw.request, Method::Post, Names::Only(names), vendor)?;
    let used = request_variables(&request);
    if kind == OpKind::Create && used.contains("target_id") {
        ctx.error(
            &request_path,
            "`target_id` is only known when updating; a created record has no target id yet",
            Some("move this request to `target.update`, or remove `target_id`".into()),
        );
    }
    let uses_rows = used.contains("rows") || used.contains("target_ids");
    let uses_row = used.contains("row")
        || used.contains("record")
        || used.contains("source_id")
        || (kind != OpKind::Create && used.contains("target_id"));
    let per = match raw.per {
        Some(per) => per,
        None if uses_rows => Per::Batch,
        None => Per::Row,
    };
    match (per, kind) {
        (Per::Batch, OpKind::Delete) if uses_row => ctx.error(
            &request_path,
            "this delete sends a whole batch (`rows`, `target_ids`) but also reads one row (`source_id` or `target_id`)",
            Some("use `rows`/`target_ids` with `per: batch`, or `source_id`/`target_id` with `per: row`".into()),
        ),
        (Per::Row, OpKind::Delete) if uses_rows => ctx.error(
            &request_path,
            "`rows` and `target_ids` are only available when the delete sends a batch (`per: batch`)",
            Some("use `target_id` for one-row deletes, or set `per: batch`".into()),
        ),
        (Per::Batch, _) if uses_row => ctx.error(
            &request_path,
            "this request sends a whole batch (`rows`) but also reads one row (`row`, `record` or `target_id`)",
            Some("use `rows` with `per: batch`, or `row`/`target_id` with `per: row`".into()),
        ),
        (Per::Row, _) if uses_rows => ctx.error(
            &request_path,
            "`rows` is only available when the request sends a batch (`per: batch`)",
            Some("use `row` for one-row requests, or set `per: batch`".into()),
        ),
        _ => {}
    }
    let response_path = child_path(path, "response");
    let raw_response = raw.response.clone().unwrap_or_default();
    let names = Names::Only(WRITE_RESPONSE_NAMES);
    let success = ctx.optional_template(
        &child_path(&response_path, "success"),
        raw_response.success.as_ref(),
        names,
    );
    let error = ctx.optional_template(&child_path(&response_path, "error"), raw_response.error.as_ref(), names);
    let retry = ctx.optional_template(&child_path(&response_path, "retry"), raw_response.retry.as_ref(), names);
    let row_ids = ctx.optional_json_path(&child_path(&response_path, "row_ids"), raw_response.row_ids.as_ref());
    let row_errors = ctx.optional_json_path(
        &child_path(&response_path, "row_errors"),
        raw_response.row_errors.as_ref(),
    );
    let default_index = "<< index >>".to_string();
    let row_error_index = ctx.template(
        &child_path(&response_path, "row_error_index"),
        raw_response.row_error_index.as_ref().unwrap_or(&default_index),
        Names::Any(ROW_ERROR_NAMES),
    );
    let row_error_key = ctx.optional_template(
        &child_path(&response_path, "row_error_key"),
        raw_response.row_error_key.as_ref(),
        Names::Any(ROW_ERROR_NAMES),
    );
    if raw_response.row_error_key.is_some() && kind == OpKind::Delete {
        ctx.error(
            &child_path(&response_path, "row_error_key"),
            "`row_error_key` matches failed rows by business key, but a delete sends no row to have one",
            Some("match failed deletes by position with `row_error_index`".into()),
        );
    } else if raw_response.row_error_key.is_some() && !has_key {
        ctx.error(
            &child_path(&response_path, "row_error_key"),
            "`row_error_key` matches failed rows by business key, but `target.key` is not set",
            Some("add `target.key`, e.g. `key: \"<< FNumber >>\"`, or match by position with `row_error_index`".into()),
        );
    }
    let default_message = "<< message >>".to_string();
    let row_error_message = ctx.template(
        &child_path(&response_path, "row_error_message"),
        raw_response.row_error_message.as_ref().unwrap_or(&default_message),
        Names::Any(ROW_ERROR_NAMES),
    );
    let id = ctx.optional_json_path(&child_path(&response_path, "id"), raw_response.id.as_ref());
    if raw.retry_writes == Some(RetryWrites::IdempotencyKey) && !request_reads(&request, "batch.key") {
        ctx.error(
                    &child_path(path, "retry_writes"),
                    "`retry_writes: idempotency_key` needs the request to carry `<< batch.key >>`",
                    Some(
                        "send it where the target reads its idempotency key, e.g. `headers: {Idempotency-Key: \"<< batch.key >>\"}`"
                            .into(),
                    ),
                );
    }
    Some(OperationPlan {
        retry_writes: raw.retry_writes,
        request,
        per,
        response: WriteResponsePlan {
            codec: raw_response.codec.unwrap_or_default(),
            success: success?,
            error: error?,
            retry: retry?,
            row_ids: row_ids?,
            row_errors: row_errors?,
            row_error_index: row_error_index?,
            row_error_key: row_error_key?,
            row_error_message: row_error_message?,
            id: id?,
        },
    })
}

/// Whether any template of a request reads `member` (e.g. `batch.key`).
fn request_reads(request: &RequestPlan, member: &str) -> bool {
    fn in_tree(template: &ValueTemplate, member: &str) -> bool {
        match template {
            ValueTemplate::Template(t) => t.source().contains(member),
            ValueTemplate::Array(items) => items.iter().any(|i| in_tree(i, member)),
            ValueTemplate::Object(items) => items.iter().any(|(_, i)| in_tree(i, member)),
            ValueTemplate::ForEach { fields, .. } => in_tree(fields, member),
            ValueTemplate::Literal(_) | ValueTemplate::Path(_) => false,
        }
    }
    request.headers.iter().any(|(_, t)| t.source().contains(member))
        || request.query.iter().any(|(_, t)| in_tree(t, member))
        || request.body.as_ref().is_some_and(|t| in_tree(t, member))
        || request.path.as_ref().is_some_and(|t| t.source().contains(member))
}

/// Whether any template in `template` calls `name` (a filter or function).
pub fn uses_call(template: &ValueTemplate, name: &str) -> bool {
    match template {
        ValueTemplate::Template(t) => t.calls().contains(name),
        ValueTemplate::Array(items) => items.iter().any(|i| uses_call(i, name)),
        ValueTemplate::Object(items) => items.iter().any(|(_, i)| uses_call(i, name)),
        ValueTemplate::ForEach { fields, identity, .. } => {
            uses_call(fields, name)
                || identity
                    .as_ref()
                    .and_then(|identity| identity.key.as_ref())
                    .is_some_and(|key| key.calls().contains(name))
        }
        ValueTemplate::Literal(_) | ValueTemplate::Path(_) => false,
    }
}

/// Removes the node at a serde path (`a.b[2].c`) from a value; false when nothing was removed.
fn prune(value: &mut Value, path: &str) -> bool {
    let mut parts: Vec<String> = Vec::new();
    for piece in path.split('.') {
        match piece.split_once('[') {
            Some((name, rest)) => {
                if !name.is_empty() {
                    parts.push(name.to_string());
                }
                parts.extend(rest.split('[').map(|i| i.trim_end_matches(']').to_string()));
            }
            None => parts.push(piece.to_string()),
        }
    }
    let Some(last) = parts.pop() else { return false };
    let mut node = value;
    for part in &parts {
        node = match node {
            Value::Object(map) => match map.get_mut(part) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(items) => match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Object(map) => map.remove(&last).is_some(),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}
/// An HTTP header name (RFC 9110 token characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
