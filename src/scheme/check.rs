//! Structural check of a scheme against the JSON Schema generated from [`super::raw`].
//!
//! serde stops at the first error; this walk reports every unknown key, wrong type, missing
//! field and invalid choice at once, each with its field path and a hint. Only after it finds
//! nothing does serde deserialize the value, so serde's single-error behaviour never hides a
//! second problem. The walk supports the subset of JSON Schema that schemars emits: `$ref`,
//! `type`, `properties`, `required`, `additionalProperties`, `enum`, `const`, `oneOf`,
//! `anyOf`, `allOf`, `items` and `minimum`.
//!
//! A scalar that is exactly one `${NAME}` reference is typed here, by what the schema
//! expects at its place: where a number or a boolean is wanted and a string is not, the
//! resolved text is read as YAML would read it (`4`, `1.5`, `true`); text that does not
//! read as the wanted type is an error naming the variable. Where a string is wanted the
//! text stays a string (`code: ${CODE}` with `CODE=007` stays `"007"`). The typed values are
//! returned in [`Checked::typed`] for the caller to put into the scheme value. A value that
//! holds a placeholder for an unset variable (`--no-env`) passes every content check.

use super::yaml::{child_path, index_path, typed_scalar, Spans};
use crate::diag::{choices_hint, Diagnostic};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// What the structural check found.
#[derive(Debug, Default)]
pub struct Checked {
    pub diagnostics: Vec<Diagnostic>,
    /// Whole-scalar `${NAME}` values read as the type their place expects: (path, value).
    pub typed: Vec<(String, Value)>,
}

/// Where the scheme's values came from the environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvFacts<'a> {
    /// Scalars that are exactly one reference: path → variable name.
    pub scalars: Option<&'a HashMap<String, String>>,
    /// Paths holding a placeholder for an unset variable.
    pub unset: Option<&'a HashSet<String>>,
}

impl EnvFacts<'_> {
    fn variable(&self, path: &str) -> Option<&str> {
        self.scalars.and_then(|s| s.get(path)).map(String::as_str)
    }
    fn is_unset(&self, path: &str) -> bool {
        self.unset.is_some_and(|u| u.contains(path))
    }
}

/// Checks `value` against `schema` and returns every problem found.
pub fn check(schema: &Value, value: &Value, spans: &Spans) -> Vec<Diagnostic> {
    check_with_env(schema, value, spans, EnvFacts::default()).diagnostics
}

/// [`check`], typing whole-scalar `${NAME}` values by the schema (see the module doc).
pub fn check_with_env(schema: &Value, value: &Value, spans: &Spans, env: EnvFacts<'_>) -> Checked {
    let mut walker = Walker {
        root: schema,
        spans,
        env,
        out: Vec::new(),
        typed: Vec::new(),
    };
    walker.walk(schema, value, "", &[]);
    Checked {
        diagnostics: walker.out,
        typed: walker.typed,
    }
}

struct Walker<'a> {
    root: &'a Value,
    spans: &'a Spans,
    env: EnvFacts<'a>,
    out: Vec<Diagnostic>,
    typed: Vec<(String, Value)>,
}

/// What a whole-scalar reference becomes where the schema wants something else than its text.
enum EnvTyped {
    /// Read as the wanted type.
    Typed(Value),
    /// A placeholder (`--no-env`) where a list or mapping is wanted: nothing can be checked.
    Unknown,
    /// The text does not read as the wanted type.
    Wrong(String, String),
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("an integer ({n})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("a string (\"{short}\")")
        }
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn type_words(name: &str) -> &'static str {
    match name {
        "null" => "nothing",
        "boolean" => "true or false",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

/// The discriminating property of a tagged `oneOf`: (property, [(tag value, branch)]).
fn discriminator<'s>(
    branches: &'s [Value],
    resolve: impl Fn(&'s Value) -> &'s Value,
) -> Option<(String, Vec<(String, &'s Value)>)> {
    let mut key: Option<String> = None;
    let mut tags = Vec::new();
    for branch in branches {
        let branch = resolve(branch);
        let props = branch.get("properties")?.as_object()?;
        let (name, tag) = props.iter().find_map(|(name, prop)| {
            let tag = prop.get("const").and_then(Value::as_str).or_else(|| {
                match prop.get("enum").and_then(Value::as_array) {
                    Some(values) if values.len() == 1 => values[0].as_str(),
                    _ => None,
                }
            })?;
            Some((name.clone(), tag.to_string()))
        })?;
        match &key {
            Some(existing) if *existing != name => return None,
            _ => key = Some(name),
        }
        tags.push((tag, branch));
    }
    key.map(|k| (k, tags))
}

/// How to write a value of a type, for hints.
fn type_example(name: &str) -> &'static str {
    match name {
        "integer" => "a whole number such as 4",
        "number" => "a number such as 4 or 1.5",
        "boolean" => "true or false",
        _ => "a value of that type",
    }
}

impl<'a> Walker<'a> {
    /// Types a whole-scalar `${NAME}` string where `names` (the schema's types) do not
    /// include a string; `None` when the value is not such a reference.
    fn env_typed(&self, path: &str, value: &Value, names: &[&str]) -> Option<EnvTyped> {
        let text = value.as_str()?;
        let variable = self.env.variable(path)?;
        let wanted: Vec<&str> = names.iter().copied().filter(|n| *n != "null").collect();
        if self.env.is_unset(path) {
            // A stand-in of the wanted type, so no type error is invented; the plan built
            // from it is never run.
            return Some(match wanted.first().copied() {
                Some("integer") | Some("number") => EnvTyped::Typed(Value::from(1)),
                Some("boolean") => EnvTyped::Typed(Value::Bool(false)),
                _ => EnvTyped::Unknown,
            });
        }
        let typed = typed_scalar(text.trim());
        if names.iter().any(|name| type_matches(name, &typed)) {
            return Some(EnvTyped::Typed(typed));
        }
        let expected: Vec<&str> = wanted.iter().map(|n| type_words(n)).collect();
        let short: String = text.chars().take(40).collect();
        Some(EnvTyped::Wrong(
            format!(
                "`${{{variable}}}` gives \"{short}\", which is not {}",
                expected.join(" or ")
            ),
            format!(
                "set {variable} to {}",
                wanted
                    .first()
                    .map_or("a value of the expected type", |n| type_example(n))
            ),
        ))
    }

    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..16 {
            match current.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    let pointer = reference.trim_start_matches('#');
                    match self.root.pointer(pointer) {
                        Some(target) => current = target,
                        None => return current,
                    }
                }
                None => return current,
            }
        }
        current
    }

    fn error(&mut self, path: &str, message: String, hint: Option<String>, at_key: bool) {
        let position = if at_key {
            self.spans.key_position(path)
        } else {
            self.spans.value_position(path)
        };
        self.out
            .push(Diagnostic::error(path, message).with_hint_opt(hint).at(position));
    }

    /// `siblings`: other variants of a tagged enum this object could have been, for hints.
    fn walk(&mut self, schema: &'a Value, value: &Value, path: &str, siblings: &[(String, &'a Value)]) {
        let schema = self.resolve(schema);
        if schema.as_bool() == Some(true) {
            return;
        }
        let typed_holder: Value;
        let mut value = value;

        if let Some(branches) = schema.get("allOf").and_then(Value::as_array) {
            for branch in branches {
                self.walk(branch, value, path, siblings);
            }
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            self.walk_alternatives(branches, value, path);
            return;
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            self.walk_alternatives(branches, value, path);
            return;
        }

        if let Some(types) = schema.get("type") {
            let names: Vec<&str> = match types {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() && !names.iter().any(|name| type_matches(name, value)) {
                match self.env_typed(path, value, &names) {
                    Some(EnvTyped::Typed(typed)) => {
                        self.typed.push((path.to_string(), typed.clone()));
                        typed_holder = typed;
                        value = &typed_holder;
                    }
                    Some(EnvTyped::Unknown) => return,
                    Some(EnvTyped::Wrong(message, hint)) => {
                        self.error(path, message, Some(hint), false);
                        return;
                    }
                    None => {}
                }
            }
            if !names.is_empty() && !names.iter().any(|name| type_matches(name, value)) {
                // "or nothing" (null) only confuses: an absent optional field is simply left out.
                let expected: Vec<&str> = names
                    .iter()
                    .filter(|n| **n != "null" || names.len() == 1)
                    .map(|n| type_words(n))
                    .collect();
                let key = path.rsplit('.').next().unwrap_or(path);
                let hint = if names.contains(&"string") && !value.is_object() && !value.is_array() {
                    Some("quote the value to make it a string".to_string())
                } else if names.contains(&"integer") || names.contains(&"number") {
                    Some(format!("write a number without quotes, e.g. `{key}: 50`"))
                } else if names.contains(&"boolean") {
                    Some(format!("write `{key}: true` or `{key}: false`"))
                } else if names.contains(&"object") {
                    Some(format!(
                        "write a mapping, e.g. `{key}: {{name: value}}` or an indented block of `name: value` lines"
                    ))
                } else if names.contains(&"array") {
                    Some(format!(
                        "write a list, e.g. `{key}: [a, b]` or lines starting with `- `"
                    ))
                } else {
                    None
                };
                self.error(
                    path,
                    format!("expected {}, found {}", expected.join(" or "), describe(value)),
                    hint,
                    false,
                );
                return;
            }
        }

        // A placeholder for an unset variable has no content to check.
        if self.env.is_unset(path) {
            return;
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                self.error(
                    path,
                    format!("expected `{constant}`, found {}", describe(value)),
                    None,
                    false,
                );
            }
        }
        if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
            if !choices.contains(value) {
                let names: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
                let shown = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
                self.error(
                    path,
                    format!("`{shown}` is not one of the allowed values"),
                    Some(choices_hint(&shown, &names)),
                    false,
                );
            }
        }
        if let (Some(min), Some(number)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
            if number < min {
                self.error(
                    path,
                    format!("must be at least {min}, found {number}"),
                    Some(format!("use {min} or more")),
                    false,
                );
            }
        }

        match value {
            Value::Object(map) => self.walk_object(schema, map, path, siblings),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item_schema, item, &index_path(path, i), &[]);
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_object(
        &mut self,
        schema: &'a Value,
        map: &Map<String, Value>,
        path: &str,
        siblings: &[(String, &'a Value)],
    ) {
        let properties: Option<&'a Map<String, Value>> = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                // A misspelt key is reported once, as unknown with a did-you-mean.
                let misspelt = map.keys().any(|k| {
                    !properties.is_some_and(|p| p.contains_key(k)) && crate::diag::did_you_mean(k, [name]).is_some()
                });
                if !map.contains_key(name) && !misspelt {
                    let description = properties
                        .and_then(|p| p.get(name))
                        .map(|p| self.resolve(p))
                        .and_then(|p| p.get("description"))
                        .and_then(Value::as_str)
                        .map(|d| format!("add `{name}:` ({d})"));
                    let where_ = if path.is_empty() {
                        "the scheme".to_string()
                    } else {
                        format!("`{path}`")
                    };
                    self.error(
                        &child_path(path, name),
                        format!("missing required field `{name}` in {where_}"),
                        description,
                        true,
                    );
                }
            }
        }
        let additional = schema.get("additionalProperties");
        for (key, item) in map {
            let item_path = child_path(path, key);
            if let Some(prop) = properties.and_then(|p| p.get(key)) {
                self.walk(prop, item, &item_path, &[]);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let names: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let owner = siblings
                        .iter()
                        .find(|(_, branch)| branch.get("properties").and_then(|p| p.get(key)).is_some())
                        .map(|(tag, _)| tag.clone());
                    let hint = match owner {
                        Some(tag) => format!("`{key}` belongs to `{tag}`; this one takes: {}", names.join(", ")),
                        None => choices_hint(key, &names),
                    };
                    self.error(&item_path, format!("unknown field `{key}`"), Some(hint), true);
                }
                Some(extra) if extra.is_object() => self.walk(extra, item, &item_path, &[]),
                _ => {}
            }
        }
    }

    fn walk_alternatives(&mut self, branches: &'a [Value], value: &Value, path: &str) {
        // A closed set of scalar choices (an enum with documented variants).
        let choices: Option<Vec<&Value>> = branches
            .iter()
            .map(|b| {
                let b = self.resolve(b);
                b.get("const").or_else(|| {
                    b.get("enum")
                        .and_then(Value::as_array)
                        .filter(|e| e.len() == 1)
                        .map(|e| &e[0])
                })
            })
            .collect();
        if let Some(choices) = choices {
            if !choices.contains(&value) && !self.env.is_unset(path) {
                let names: Vec<&str> = choices.iter().filter_map(|c| c.as_str()).collect();
                let shown = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
                self.error(
                    path,
                    format!("`{shown}` is not one of the allowed values"),
                    Some(choices_hint(&shown, &names)),
                    false,
                );
            }
            return;
        }
        if let Some((tag_key, tags)) = discriminator(branches, |b| self.resolve(b)) {
            if let Value::Object(map) = value {
                let names: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
                match map.get(&tag_key) {
                    None => {
                        self.error(
                            &child_path(path, &tag_key),
                            format!("missing `{tag_key}`"),
                            Some(format!("choose from: {}", names.join(", "))),
                            true,
                        );
                    }
                    // The tag is a placeholder (`--no-env`): which variant this is cannot be known.
                    Some(Value::String(_)) if self.env.is_unset(&child_path(path, &tag_key)) => {}
                    Some(Value::String(tag)) => match tags.iter().find(|(t, _)| t == tag) {
                        Some((_, branch)) => {
                            let others: Vec<(String, &'a Value)> = tags
                                .iter()
                                .filter(|(t, _)| t != tag)
                                .map(|(t, b)| (format!("{tag_key}: {t}"), *b))
                                .collect();
                            self.walk(branch, value, path, &others);
                        }
                        None => self.error(
                            &child_path(path, &tag_key),
                            format!("unknown {tag_key} `{tag}`"),
                            Some(choices_hint(tag, &names)),
                            false,
                        ),
                    },
                    Some(other) => self.error(
                        &child_path(path, &tag_key),
                        format!("expected a string, found {}", describe(other)),
                        Some(format!("choose from: {}", names.join(", "))),
                        false,
                    ),
                }
                return;
            }
        }
        // Untagged: accept the first branch without problems; else report the closest one.
        let mut best: Option<Vec<Diagnostic>> = None;
        for branch in branches {
            let mut trial = Walker {
                root: self.root,
                spans: self.spans,
                env: self.env,
                out: Vec::new(),
                typed: Vec::new(),
            };
            trial.walk(branch, value, path, &[]);
            if trial.out.is_empty() {
                self.typed.extend(trial.typed);
                return;
            }
            let type_only = trial
                .out
                .iter()
                .all(|d| d.message.starts_with("expected ") && d.path == path);
            let better = match &best {
                None => true,
                Some(current) => {
                    let current_type_only = current
                        .iter()
                        .all(|d| d.message.starts_with("expected ") && d.path == path);
                    (current_type_only && !type_only)
                        || (current_type_only == type_only && trial.out.len() < current.len())
                }
            };
            if better {
                best = Some(trial.out);
            }
        }
        if let Some(found) = best {
            self.out.extend(found);
        }
    }
}
