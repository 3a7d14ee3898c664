//! What a template can see, and the bridge between `serde_json` and minijinja values.
//!
//! A [`Scope`] is handed to every render. Top-level names resolve in this order:
//! `locals` (the most recently pushed first), then `vars`, then the name `record`
//! (the whole record), then the fields of `record`.
//!
//! The record is never converted up front. The render context is a minijinja
//! object ([`ScopeContext`]) that resolves a name only when the template reads it,
//! and JSON objects and arrays are handed out as lazy views ([`JsonNode`]) that
//! remember where they live (a shared root plus a path). Only scalars are
//! converted, and only when they are read. The rejected alternative,
//! `Value::from_serialize(record)` per render, copies every field of every record.
//!
//! [`lookup_path`] is the fast path used for plain dotted names such as
//! `window.start`: it walks the JSON directly and reproduces minijinja's lenient
//! rules (a missing key or an attribute of a scalar is undefined); the one case
//! that is an error in minijinja (an attribute of an undefined value) is handed
//! back to the slow path so the error text stays identical.
//!
//! [`FilterInput`] is what Ferry's filters compute on: a borrowed JSON value or
//! undefined. The minijinja side builds one with [`with_input`] (JSON views are
//! borrowed, not copied) and the native filter chains build one straight from
//! the record, so both run the same filter code.

use std::fmt;
use std::sync::Arc;

use crate::extract::object_entry;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use serde_json::{Map, Value as Json};

/// The name under which the render context exposes itself to Ferry's own filters
/// (`mapped_id` needs the scope's lookup service).
pub(crate) const SCOPE_HANDLE: &str = "__ferry_scope";

/// The name that returns the whole record.
pub const RECORD: &str = "record";

/// The name of the master record inside a `for_each`.
pub const PARENT: &str = "parent";

thread_local! {
    /// Names read but not found during the current strict render (see [`MissLog`]).
    static MISSES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Which names a strict render read without finding them.
///
/// A render runs on one thread without yielding, so the log is thread-local: name
/// lookups (the fast path, [`ScopeContext`], [`JsonNode`]) note a miss, and the
/// constructs that handle absence on purpose (`default`, `optional`, the `defined`
/// and `undefined` tests) forgive the miss their input came from. Whatever is left
/// when the render ends was read and used: a missing field. Nested logs (a render
/// started inside another) keep the outer one intact.
pub(crate) struct MissLog {
    outer: Option<Vec<String>>,
}

impl MissLog {
    /// Starts noting misses on this thread.
    pub(crate) fn start() -> MissLog {
        MissLog {
            outer: MISSES.with_borrow_mut(|log| log.replace(Vec::new())),
        }
    }

    /// Stops noting and returns the misses left, in the order they happened.
    pub(crate) fn finish(mut self) -> Vec<String> {
        let outer = self.outer.take();
        MISSES
            .with_borrow_mut(|log| std::mem::replace(log, outer))
            .unwrap_or_default()
    }
}

impl Drop for MissLog {
    fn drop(&mut self) {
        // Reached only when `finish` was not called (an unwinding render).
        if let Some(outer) = self.outer.take() {
            MISSES.with_borrow_mut(|log| *log = Some(outer));
        }
    }
}

/// Notes that `name` was read and not found (only while a [`MissLog`] runs).
pub(crate) fn note_missing(name: impl FnOnce() -> String) {
    MISSES.with_borrow_mut(|log| {
        if let Some(log) = log {
            let name = name();
            // One lookup may ask several frames for the same name.
            if log.last() != Some(&name) {
                log.push(name);
            }
        }
    });
}

/// How many misses are noted so far (for [`rewind_missing`]).
pub(crate) fn missing_mark() -> usize {
    MISSES.with_borrow(|log| log.as_ref().map_or(0, Vec::len))
}

/// Drops the misses noted after `mark`: the work that noted them is being redone.
pub(crate) fn rewind_missing(mark: usize) {
    MISSES.with_borrow_mut(|log| {
        if let Some(log) = log {
            log.truncate(mark);
        }
    });
}

/// Forgives the miss `back` places before the latest (0 = the latest): its value
/// was handled on purpose (`default`, `optional`, `is defined`).
pub(crate) fn forgive_missing(back: usize) {
    MISSES.with_borrow_mut(|log| {
        if let Some(log) = log {
            if let Some(index) = log.len().checked_sub(back + 1) {
                log.remove(index);
            }
        }
    });
}

/// Looks up the target id that another scheme wrote for a source id.
///
/// Implemented by the engine over the mapping store (batched per page); tests use
/// an in-memory map.
pub trait MappedIds: Send + Sync {
    /// `Ok(None)` means "no mapping yet"; `Err` is a store failure described for a person.
    fn mapped_id(&self, object: &str, source_id: &str) -> Result<Option<String>, String>;
}

/// Answers every `mapped_id` with a stand-in id, `<object:source id>`, and counts the
/// look-ups: for checks that render records without a store (`ferry check`,
/// `ferry validate --sample`), where a real look-up would only say "not synced yet".
#[derive(Debug, Default)]
pub struct PlaceholderIds {
    lookups: std::sync::atomic::AtomicU64,
}

impl PlaceholderIds {
    /// How many look-ups were answered with a stand-in.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl MappedIds for PlaceholderIds {
    fn mapped_id(&self, object: &str, source_id: &str) -> Result<Option<String>, String> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(format!("<{object}:{source_id}>")))
    }
}

/// Everything one render can read. Cloning is cheap except for `locals`.
#[derive(Clone, Default)]
pub struct Scope {
    /// The current record; its fields are top-level names and `record` is the whole value.
    pub record: Option<Arc<Json>>,
    /// Run-level variables such as `now` or `window`.
    pub vars: Arc<Map<String, Json>>,
    /// Innermost names, e.g. the current detail row of a `for_each`; later entries win.
    pub locals: Vec<(String, Json)>,
    /// The master record inside a `for_each`, readable as `parent` (shared, never copied).
    pub parent: Option<Arc<Json>>,
    /// The id-mapping service for `mapped_id`; `None` where no store is available.
    pub mapped_ids: Option<Arc<dyn MappedIds>>,
    /// The field mapping tables for `field_map`; `None` where none were loaded.
    pub field_maps: Option<Arc<super::FieldMaps>>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("record", &self.record)
            .field("vars", &self.vars)
            .field("locals", &self.locals)
            .field("parent", &self.parent)
            .field("mapped_ids", &self.mapped_ids.as_ref().map(|_| "<service>"))
            .field("field_maps", &self.field_maps)
            .finish()
    }
}

/// Where a top-level name was found.
enum Found<'a> {
    Local(usize, &'a Json),
    Parent(&'a Json),
    Var(&'a str, &'a Json),
    Record(&'a Json),
    RecordField(&'a str, &'a Json),
}

impl<'a> Found<'a> {
    fn json(&self) -> &'a Json {
        match *self {
            Found::Local(_, json)
            | Found::Parent(json)
            | Found::Var(_, json)
            | Found::Record(json)
            | Found::RecordField(_, json) => json,
        }
    }
}

impl Scope {
    /// A scope over one record with no vars or locals.
    pub fn for_record(record: Arc<Json>) -> Scope {
        Scope {
            record: Some(record),
            ..Scope::default()
        }
    }

    /// Adds (or shadows) a local name.
    pub fn push_local(&mut self, name: impl Into<String>, value: Json) {
        self.locals.push((name.into(), value));
    }

    /// Resolves a top-level name in the documented order.
    pub fn lookup(&self, name: &str) -> Option<&Json> {
        self.find(name).map(|found| found.json())
    }

    fn find<'a>(&'a self, name: &str) -> Option<Found<'a>> {
        if let Some(index) = self.locals.iter().rposition(|(key, _)| key == name) {
            return Some(Found::Local(index, &self.locals[index].1));
        }
        if name == PARENT {
            if let Some(parent) = self.parent.as_deref() {
                return Some(Found::Parent(parent));
            }
        }
        if let Some((key, value)) = object_entry(&self.vars, name) {
            return Some(Found::Var(key, value));
        }
        let record = self.record.as_deref()?;
        if name == RECORD {
            return Some(Found::Record(record));
        }
        let (key, value) = object_entry(record.as_object()?, name)?;
        Some(Found::RecordField(key, value))
    }
}

/// Result of the fast dotted-path lookup.
pub(crate) enum FastLookup<'a> {
    Found(&'a Json),
    Undefined,
    /// minijinja would raise an error here; let it, so the message is the usual one.
    NeedsSlowPath,
}

/// Walks `path` (already split on dots) through the scope without minijinja.
pub(crate) fn lookup_path<'a>(scope: &'a Scope, path: &[String]) -> FastLookup<'a> {
    let Some((first, rest)) = path.split_first() else {
        return FastLookup::NeedsSlowPath;
    };
    let Some(mut current) = scope.lookup(first) else {
        return if rest.is_empty() {
            note_missing(|| first.clone());
            FastLookup::Undefined
        } else {
            FastLookup::NeedsSlowPath
        };
    };
    for (position, key) in rest.iter().enumerate() {
        match current.as_object().and_then(|map| object_entry(map, key)) {
            Some((_, next)) => current = next,
            // Attribute of a missing key, an array or a scalar: undefined. Reading
            // further from undefined is an error, which the slow path reports.
            None if position + 1 == rest.len() => {
                // A missing key is a missing field; an attribute of a scalar or a list
                // is undefined without one, as on the slow path.
                if current.is_object() {
                    note_missing(|| path.join("."));
                }
                return FastLookup::Undefined;
            }
            None => return FastLookup::NeedsSlowPath,
        }
    }
    FastLookup::Found(current)
}

/// The render context: resolves top-level names from a [`Scope`] on demand.
pub(crate) struct ScopeContext {
    pub(crate) scope: Scope,
}

impl fmt::Debug for ScopeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.scope, f)
    }
}

impl ScopeContext {
    pub(crate) fn value(scope: &Scope) -> Value {
        Value::from_object(ScopeContext { scope: scope.clone() })
    }
}

impl Object for ScopeContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if name == SCOPE_HANDLE {
            return Some(Value::from_dyn_object(self.clone()));
        }
        let Some(found) = self.scope.find(name) else {
            // Function names are looked up here before minijinja's globals.
            if !super::FUNCTIONS.contains(&name) {
                note_missing(|| name.to_owned());
            }
            return None;
        };
        let (root, path) = match found {
            Found::Local(index, _) => (Root::Local(self.clone(), index), Vec::new()),
            Found::Var(key, _) => (Root::Var(self.scope.vars.clone(), key.into()), Vec::new()),
            Found::Record(_) => (Root::Whole(self.record()?, Some(RECORD)), Vec::new()),
            Found::Parent(_) => (Root::Whole(self.scope.parent.clone()?, Some(PARENT)), Vec::new()),
            Found::RecordField(key, _) => (Root::Whole(self.record()?, None), vec![Step::Key(key.into())]),
        };
        Some(node_or_scalar(root, path, found.json()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}

impl ScopeContext {
    fn record(&self) -> Option<Arc<Json>> {
        self.scope.record.clone()
    }
}

/// The shared value a [`JsonNode`] points into.
#[derive(Clone)]
enum Root {
    /// A whole value, with the name it is read under (`None`: its fields are top-level names).
    Whole(Arc<Json>, Option<&'static str>),
    Var(Arc<Map<String, Json>>, Arc<str>),
    Local(Arc<ScopeContext>, usize),
}

#[derive(Clone)]
enum Step {
    Key(Arc<str>),
    Index(usize),
}

/// A lazy minijinja view of a JSON object or array.
pub(crate) struct JsonNode {
    root: Root,
    path: Vec<Step>,
}

static NULL: Json = Json::Null;

impl JsonNode {
    /// The JSON this node stands for.
    pub(crate) fn json(&self) -> &Json {
        let mut current = match &self.root {
            Root::Whole(json, _) => &**json,
            Root::Var(map, key) => map.get(&**key).unwrap_or(&NULL),
            Root::Local(context, index) => context.scope.locals.get(*index).map_or(&NULL, |(_, json)| json),
        };
        for step in &self.path {
            let next = match (step, current) {
                (Step::Key(key), Json::Object(map)) => map.get(&**key),
                (Step::Index(index), Json::Array(items)) => items.get(*index),
                _ => None,
            };
            current = next.unwrap_or(&NULL);
        }
        current
    }

    /// How the value at `self` followed by `key` is written in a template (`lines[0].sku`).
    fn name_of(&self, key: &Value) -> String {
        let mut name = match &self.root {
            Root::Whole(_, label) => label.unwrap_or_default().to_owned(),
            Root::Var(_, key) => key.to_string(),
            Root::Local(context, index) => context
                .scope
                .locals
                .get(*index)
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
        };
        let push_key = |name: &mut String, key: &str| {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(key);
        };
        for step in &self.path {
            match step {
                Step::Key(key) => push_key(&mut name, key),
                Step::Index(index) => name.push_str(&format!("[{index}]")),
            }
        }
        match key.as_str() {
            Some(text) => push_key(&mut name, text),
            None => name.push_str(&format!("[{key}]")),
        }
        name
    }

    fn child(&self, step: Step, json: &Json) -> Value {
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(step);
        node_or_scalar(self.root.clone(), path, json)
    }
}

impl fmt::Debug for JsonNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.json())
    }
}

impl Object for JsonNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.json() {
            Json::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let found = self.find(key);
        // A missing key or index is a missing field; a name looked up on a list is
        // undefined without one, as on the fast path.
        let missing_member = match self.json() {
            Json::Object(_) => true,
            Json::Array(_) => key.as_i64().is_some(),
            _ => false,
        };
        if found.is_none() && missing_member {
            note_missing(|| self.name_of(key));
        }
        found
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.json() {
            Json::Object(map) => Enumerator::Values(map.keys().map(|key| Value::from(key.as_str())).collect()),
            Json::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.json() {
            Json::Object(map) => Some(map.len()),
            Json::Array(items) => Some(items.len()),
            _ => Some(0),
        }
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.enumerator_len().unwrap_or(0) > 0
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.json())
    }
}

impl JsonNode {
    fn find(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.json() {
            Json::Object(map) => {
                let (name, child) = map.get_key_value(key.as_str()?)?;
                Some(self.child(Step::Key(name.as_str().into()), child))
            }
            Json::Array(items) => {
                let index = key.as_i64()?;
                let index = if index < 0 {
                    i64::try_from(items.len()).ok()? + index
                } else {
                    index
                };
                let index = usize::try_from(index).ok()?;
                let child = items.get(index)?;
                Some(self.child(Step::Index(index), child))
            }
            _ => None,
        }
    }
}

fn node_or_scalar(root: Root, path: Vec<Step>, json: &Json) -> Value {
    match json {
        Json::Object(_) | Json::Array(_) => Value::from_object(JsonNode { root, path }),
        scalar => scalar_to_value(scalar),
    }
}

/// A filter's input: JSON, undefined, or (only on the minijinja side) a value
/// that has no JSON form.
pub(crate) enum FilterInput<'a> {
    Undefined,
    Json(&'a Json),
    Foreign(Foreign),
}

/// A template value with no JSON form, such as NaN, infinity or a function.
pub(crate) struct Foreign {
    /// How minijinja displays it (`NaN`, `inf`, …).
    pub(crate) shown: String,
    /// Why it has no JSON form.
    pub(crate) reason: String,
    /// Its float, when it is a number.
    pub(crate) number: Option<f64>,
    /// Its truthiness by minijinja's rules.
    pub(crate) truthy: bool,
}

/// Runs `apply` on the [`FilterInput`] view of a minijinja value. JSON views are
/// borrowed; other values are converted with [`value_to_json`].
pub(crate) fn with_input<R>(value: &Value, apply: impl FnOnce(&FilterInput<'_>) -> R) -> R {
    if value.is_undefined() {
        return apply(&FilterInput::Undefined);
    }
    if let Some(node) = value.downcast_object_ref::<JsonNode>() {
        return apply(&FilterInput::Json(node.json()));
    }
    match value_to_json(value) {
        Ok(json) => apply(&FilterInput::Json(&json)),
        Err(reason) => {
            let number = if value.kind() == ValueKind::Number {
                f64::try_from(value.clone()).ok()
            } else {
                None
            };
            apply(&FilterInput::Foreign(Foreign {
                shown: value.to_string(),
                reason,
                number,
                truthy: value.is_true(),
            }))
        }
    }
}

/// Turns a JSON scalar into a minijinja value (objects and arrays need a root; see [`json_to_value`]).
pub(crate) fn scalar_to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(flag) => Value::from(*flag),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                Value::from(int)
            } else if let Some(int) = number.as_u64() {
                Value::from(int)
            } else {
                Value::from(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(text) => Value::from(text.as_str()),
        Json::Object(_) | Json::Array(_) => Value::from_serialize(json),
    }
}

/// Turns an owned JSON value into a minijinja value (objects and arrays stay lazy).
pub(crate) fn json_to_value(json: Json) -> Value {
    match json {
        Json::Object(_) | Json::Array(_) => Value::from_object(JsonNode {
            root: Root::Whole(Arc::new(json), None),
            path: Vec::new(),
        }),
        Json::String(text) => Value::from(text),
        scalar => scalar_to_value(&scalar),
    }
}

/// Turns a minijinja value back into JSON. Undefined becomes `null`.
pub(crate) fn value_to_json(value: &Value) -> Result<Json, String> {
    if let Some(node) = value.downcast_object_ref::<JsonNode>() {
        return Ok(node.json().clone());
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(Json::Null),
        ValueKind::Bool => Ok(Json::Bool(value.is_true())),
        ValueKind::Number => number_to_json(value),
        ValueKind::String => Ok(Json::String(value.as_str().unwrap_or_default().to_owned())),
        ValueKind::Bytes => Ok(Json::String(
            String::from_utf8_lossy(value.as_bytes().unwrap_or_default()).into_owned(),
        )),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter().map_err(|err| err.to_string())?;
            items
                .map(|item| value_to_json(&item))
                .collect::<Result<_, _>>()
                .map(Json::Array)
        }
        ValueKind::Map => {
            let mut map = Map::new();
            for key in value.try_iter().map_err(|err| err.to_string())? {
                let item = value.get_item(&key).map_err(|err| err.to_string())?;
                let key = match key.as_str() {
                    Some(text) => text.to_owned(),
                    None => key.to_string(),
                };
                map.insert(key, value_to_json(&item)?);
            }
            Ok(Json::Object(map))
        }
        other => Err(format!("a {other} value cannot be turned into JSON")),
    }
}

fn number_to_json(value: &Value) -> Result<Json, String> {
    if value.is_integer() {
        if let Ok(int) = i64::try_from(value.clone()) {
            return Ok(Json::from(int));
        }
        if let Ok(int) = u64::try_from(value.clone()) {
            return Ok(Json::from(int));
        }
    }
    let float = f64::try_from(value.clone()).map_err(|err| err.to_string())?;
    serde_json::Number::from_f64(float)
        .map(Json::Number)
        .ok_or_else(|| format!("{float} is not a finite number and has no JSON form"))
}

/// The integer a JSON number reads as, by minijinja's rule for `i64::try_from`:
/// integers that fit, and floats that convert to an integer and back unchanged.
pub(crate) fn json_int(number: &serde_json::Number) -> Option<i64> {
    if let Some(int) = number.as_i64() {
        return Some(int);
    }
    let float = number.as_f64().filter(|_| number.is_f64())?;
    // The saturating cast and the exact comparison are minijinja's own test.
    let int = float as i64;
    (int as f64 == float).then_some(int)
}

/// Appends the text form of a JSON value: strings raw, null nothing, the rest compact JSON.
pub(crate) fn push_json_text(out: &mut String, json: &Json) {
    match json {
        Json::Null => {}
        Json::String(text) => out.push_str(text),
        // The same text as `to_string`, without the serializer.
        Json::Number(number) => out.push_str(&number.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

/// The text form of a JSON value (see [`push_json_text`]).
pub(crate) fn json_text(json: &Json) -> String {
    match json {
        Json::String(text) => text.clone(),
        Json::Number(number) => number.to_string(),
        other => {
            let mut out = String::new();
            push_json_text(&mut out, other);
            out
        }
    }
}

/// The text form of a minijinja value, the same rules as [`push_json_text`].
pub(crate) fn value_text(value: &Value) -> Result<String, String> {
    if let Some(text) = value.as_str() {
        return Ok(text.to_owned());
    }
    value_to_json(value).map(|json| json_text(&json))
}

/// The text form of a filter input, the same rules as [`push_json_text`].
pub(crate) fn input_text(input: &FilterInput<'_>) -> Result<String, String> {
    match input {
        FilterInput::Undefined => Ok(String::new()),
        FilterInput::Json(json) => Ok(json_text(json)),
        FilterInput::Foreign(foreign) => Err(foreign.reason.clone()),
    }
}

/// How a value reads in an error message: strings quoted, the rest as JSON.
pub(crate) fn describe(value: &Value) -> String {
    with_input(value, describe_input)
}

/// How a filter input reads in an error message (see [`describe`]).
pub(crate) fn describe_input(input: &FilterInput<'_>) -> String {
    let text = match input {
        FilterInput::Undefined => return "an undefined value".to_owned(),
        FilterInput::Json(json) => json.to_string(),
        FilterInput::Foreign(foreign) => foreign.shown.clone(),
    };
    const LIMIT: usize = 80;
    if text.chars().count() > LIMIT {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_and_large_objects_resolve_names_alike() {
        for size in [1, 16, 17, 48] {
            let record: Map<String, Json> = (0..size).map(|i| (format!("field_{i}"), json!(i))).collect();
            let scope = Scope::for_record(Arc::new(Json::Object(record)));
            for i in 0..size {
                assert_eq!(scope.lookup(&format!("field_{i}")), Some(&json!(i)), "size {size}");
            }
            assert_eq!(scope.lookup("field_missing"), None, "size {size}");
            assert_eq!(scope.lookup(&format!("field_{size}")), None, "size {size}");
        }
    }
}
