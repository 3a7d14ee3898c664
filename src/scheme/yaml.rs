//! YAML text → `serde_json::Value` plus the position of every node, with `${ENV}` resolved.
//!
//! This is the only module that knows the YAML library (yaml-rust2's event parser). We build
//! the value tree from parser events ourselves because we need a line and column for every key
//! and value: serde_yaml's deserializer (deprecated anyway) reports only the first error's
//! position, and validation must report all problems, each where it is.
//!
//! Scalars follow the YAML 1.2 core schema: `null`/`~`/empty, `true`/`false`, integers,
//! floats; quoted scalars are always strings. Anchors and aliases are supported; duplicate
//! keys are errors.
//!
//! `${NAME}` and `${NAME:-default}` inside string values are replaced from the environment
//! when the scheme loads (the default also stands in for a variable set to the empty string); `$${` writes a literal `${`. Values substituted under
//! `connections` (other than `base_url`) or from variables whose name looks secret are
//! collected as secrets so that output can redact them.
//!
//! The substituted text is always a string here. A scalar that is exactly one reference
//! (`in_flight: ${IN_FLIGHT:-4}`) is listed in [`Loaded::env_scalars`], so the structural
//! check can type it by what the schema expects at that place (see [`typed_scalar`]).
//!
//! A variable that is not set (and has no default) is an error, or with [`MissingEnv::Note`]
//! (`ferry validate --no-env`) a note. Either way its reference becomes a placeholder
//! ([`placeholder`]) that no real value looks like, and the paths holding one are listed in
//! [`Loaded::unset_paths`] so that checks of a value's content (a URL, a duration, an
//! allowed choice, a type) skip them instead of adding errors about a value nobody wrote.

use crate::diag::{Diagnostic, Position};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node sits in the text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    /// Position of the mapping key (equals `value` for sequence items and the root).
    pub key: Position,
    /// Position of the value's first character.
    pub value: Position,
    /// Whether the value was a quoted scalar (its text starts one column later).
    pub quoted: bool,
    /// Whether the value was a block scalar or spans lines (inner columns are unknown).
    pub multiline: bool,
}

/// Positions of every node, keyed by its dotted path (`source.request.query.page`, `a[0].b`).
#[derive(Debug, Clone, Default)]
pub struct Spans {
    by_path: HashMap<String, Span>,
}

impl Spans {
    /// The span of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Span {
        let mut probe = path;
        loop {
            if let Some(span) = self.by_path.get(probe) {
                return *span;
            }
            match parent_path(probe) {
                Some(parent) => probe = parent,
                None => return self.by_path.get("").copied().unwrap_or_default(),
            }
        }
    }
    /// Position of a key (for "unknown key" problems).
    pub fn key_position(&self, path: &str) -> Position {
        self.find(path).key
    }
    /// Position of a value (for "wrong value" problems).
    pub fn value_position(&self, path: &str) -> Position {
        self.find(path).value
    }
    /// Position of a byte offset inside a string value, when it can be known.
    pub fn offset_position(&self, path: &str, offset: usize) -> Position {
        let span = self.find(path);
        if span.multiline {
            return span.value;
        }
        Position {
            line: span.value.line,
            column: span.value.column + usize::from(span.quoted) + offset,
        }
    }
}

/// The path of the parent node, if any.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// The node at a dotted path (`a.b[2].c`), for writing into it.
pub fn value_at_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    if path.is_empty() {
        return Some(value);
    }
    let mut node = value;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            node = node.as_object_mut()?.get_mut(key)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.strip_suffix(']')?.parse().ok()?;
            node = node.as_array_mut()?.get_mut(index)?;
        }
    }
    Some(node)
}

/// Joins a parent path and a key.
pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a parent path and an index.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// What a reference to a variable that is not set (and has no default) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingEnv {
    /// An error: the scheme cannot run without it.
    #[default]
    Error,
    /// A note, and a placeholder stands in for the value (`ferry validate --no-env`).
    Note,
}

/// The text that stands in for a variable that is not set, under [`MissingEnv::Note`].
/// No real value looks like it, and it holds no template or reference markers.
pub fn placeholder(name: &str) -> String {
    format!("\u{ab}unset {name}\u{bb}")
}

/// The YAML typing (core schema) of the text a whole-scalar reference resolved to:
/// `4` is an integer, `1.5` a number, `true` a boolean, anything else text.
pub fn typed_scalar(text: &str) -> Value {
    scalar_value(text, TScalarStyle::Plain)
}

/// Result of loading YAML text.
#[derive(Debug, Default)]
pub struct Loaded {
    pub value: Value,
    pub spans: Spans,
    /// Values substituted from the environment that must never be printed.
    pub secrets: Vec<String>,
    /// Problems found (YAML syntax, duplicate keys, missing variables).
    pub diagnostics: Vec<Diagnostic>,
    /// Paths of the values that contained a `${ENV}` reference.
    pub env_paths: std::collections::HashSet<String>,
    /// Scalars that are exactly one `${NAME}` or `${NAME:-default}`: path → variable name.
    pub env_scalars: HashMap<String, String>,
    /// Paths whose value holds a [`placeholder`] for a variable that is not set. A scheme
    /// with any never yields a plan.
    pub unset_paths: std::collections::HashSet<String>,
    /// Every `${NAME}` reference, in the order of the text (a name may repeat).
    pub references: Vec<EnvReference>,
}

/// One `${NAME}` or `${NAME:-default}` in a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReference {
    pub name: String,
    pub has_default: bool,
    /// Its value is treated as a secret (a connection setting other than `base_url`, or a
    /// name that looks secret).
    pub secret: bool,
}

/// Parses `text`, resolving `${ENV}` through `env`; a variable that is not set is an error.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    load_with(text, env, MissingEnv::Error)
}

/// Parses `text`, resolving `${ENV}` through `env`; `missing` says what an unset variable is.
pub fn load_with(text: &str, env: &dyn Fn(&str) -> Option<String>, missing: MissingEnv) -> Loaded {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let marker = e.marker();
        let position = Position {
            line: marker.line(),
            column: marker.col() + 1,
        };
        let mut loaded = Loaded::default();
        loaded.diagnostics.push(
            Diagnostic::error("", format!("invalid YAML: {}", e.info()))
                .with_hint("check indentation, quoting and that every `key:` is followed by a space")
                .at(position),
        );
        return loaded;
    }
    let Some(root) = builder.root.take() else {
        let mut loaded = Loaded::default();
        loaded.diagnostics.push(
            Diagnostic::error("", "the scheme file is empty")
                .with_hint("start from one of the files in schemes/")
                .at(Position { line: 1, column: 1 }),
        );
        return loaded;
    };
    let mut loaded = Loaded {
        diagnostics: builder.diagnostics,
        ..Loaded::default()
    };
    let root_span = Span {
        key: root.position,
        value: root.position,
        ..Span::default()
    };
    let resolver = Resolver {
        env,
        missing,
        noted: Default::default(),
    };
    loaded.value = convert(root, "", root_span, &resolver, &mut loaded);
    loaded
}

/// How references are resolved while converting.
struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    missing: MissingEnv,
    /// Variables already noted as unset (one note per variable).
    noted: std::cell::RefCell<std::collections::HashSet<String>>,
}

fn convert(node: Node, path: &str, span: Span, env: &Resolver, out: &mut Loaded) -> Value {
    let span = Span {
        quoted: node.quoted,
        multiline: node.multiline,
        ..span
    };
    out.spans.by_path.insert(path.to_string(), span);
    match node.kind {
        NodeKind::Scalar(value) => match value {
            Value::String(text) if text.contains("${") => {
                out.env_paths.insert(path.to_string());
                if let Some(name) = whole_reference(&text) {
                    out.env_scalars.insert(path.to_string(), name.to_string());
                }
                Value::String(resolve_env(&text, path, span, env, out))
            }
            other => other,
        },
        NodeKind::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = Span {
                        key: item.position,
                        value: item.position,
                        ..Span::default()
                    };
                    convert(item, &index_path(path, i), at, env, out)
                })
                .collect(),
        ),
        NodeKind::Map(entries) => {
            let mut map = Map::new();
            for (key, key_position, item) in entries {
                let at = Span {
                    key: key_position,
                    value: item.position,
                    ..Span::default()
                };
                let child = convert(item, &child_path(path, &key), at, env, out);
                map.insert(key, child);
            }
            Value::Object(map)
        }
    }
}

/// The variable name when `text` is exactly one `${NAME}` or `${NAME:-default}`.
fn whole_reference(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("${")?.strip_suffix('}')?;
    if inner.contains('}') || inner.contains("${") {
        return None;
    }
    Some(inner.split_once(":-").map_or(inner, |(name, _)| name))
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "KEY",
        "PASS",
        "PWD",
        "AUTH",
        "SESSION",
        "CREDENTIAL",
        "SIGN",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

fn resolve_env(text: &str, path: &str, span: Span, resolver: &Resolver, out: &mut Loaded) -> String {
    let env = resolver.env;
    let secret_place = path.starts_with("connections.") && !path.ends_with(".base_url");
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(at) = rest.find("${") {
        if at > 0 && rest.as_bytes()[at - 1] == b'$' {
            result.push_str(&rest[..at - 1]);
            result.push_str("${");
            consumed += at + 2;
            rest = &rest[at + 2..];
            continue;
        }
        result.push_str(&rest[..at]);
        let Some(close) = rest[at..].find('}') else {
            out.diagnostics.push(
                Diagnostic::error(path, "unclosed `${` in an environment reference")
                    .with_hint("write ${NAME} or ${NAME:-default}; use $${ for a literal ${")
                    .at(out.spans.offset_position(path, consumed + at)),
            );
            result.push_str(&rest[at..]);
            return result;
        };
        let inner = &rest[at + 2..at + close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        let position = Position {
            line: span.value.line,
            column: span.value.column + usize::from(span.quoted) + consumed + at,
        };
        if !valid_name {
            out.diagnostics.push(
                Diagnostic::error(path, format!("`{name}` is not a valid environment variable name"))
                    .with_hint("names use letters, digits and `_`, e.g. ${SHOP_TOKEN}")
                    .at(position),
            );
        } else {
            out.references.push(EnvReference {
                name: name.to_string(),
                has_default: default.is_some(),
                secret: secret_place || looks_secret(name),
            });
            // As in the shell, `:-` also replaces a variable that is set but empty.
            let value = env(name).filter(|value| !value.is_empty() || default.is_none());
            match (value, default) {
                (Some(value), _) => {
                    if (secret_place || looks_secret(name)) && value.len() >= 3 {
                        out.secrets.push(value.clone());
                    }
                    result.push_str(&value);
                }
                (None, Some(default)) => result.push_str(default),
                (None, None) if resolver.missing == MissingEnv::Note => {
                    result.push_str(&placeholder(name));
                    out.unset_paths.insert(path.to_string());
                    if resolver.noted.borrow_mut().insert(name.to_string()) {
                        out.diagnostics.push(
                            Diagnostic::note(
                                path,
                                format!("environment variable `{name}` is not set; checked with a placeholder"),
                            )
                            .with_hint(format!(
                                "--no-env checks the scheme without its environment; set {name} or pass --env-file to check its value too"
                            ))
                            .at(position),
                        );
                    }
                }
                (None, None) => {
                    // The placeholder keeps checks of this value's content from piling
                    // more errors onto the one that matters.
                    result.push_str(&placeholder(name));
                    out.unset_paths.insert(path.to_string());
                    out.diagnostics.push(
                        Diagnostic::error(path, format!("environment variable `{name}` is not set"))
                            .with_hint(format!(
                                "export {name}=… before running, or give a default: ${{{name}:-value}}"
                            ))
                            .at(position),
                    );
                }
            }
        }
        consumed += at + close + 1;
        rest = &rest[at + close + 1..];
    }
    result.push_str(rest);
    result
}

#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    position: Position,
    quoted: bool,
    multiline: bool,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Scalar(Value),
    Seq(Vec<Node>),
    Map(Vec<(String, Position, Node)>),
}

enum Frame {
    Seq(Vec<Node>, Position, usize),
    Map(
        Vec<(String, Position, Node)>,
        Option<(String, Position)>,
        Position,
        usize,
    ),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    diagnostics: Vec<Diagnostic>,
}

fn position_of(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn scalar_value(text: &str, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(int) = text.parse::<i64>() {
        return Value::Number(int.into());
    }
    let numeric = text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
        && text.chars().any(|c| c.is_ascii_digit());
    if numeric {
        if let Ok(float) = text.parse::<f64>() {
            if let Some(number) = Number::from_f64(float) {
                return Value::Number(number);
            }
        }
    }
    Value::String(text.to_string())
}

impl Builder {
    /// The field path of the value now being built: the pending key of every open
    /// mapping and the next index of every open list.
    fn path_being_built(&self) -> String {
        self.stack.iter().fold(String::new(), |path, frame| match frame {
            Frame::Map(_, Some((key, _)), _, _) => child_path(&path, key),
            Frame::Map(_, None, _, _) => path,
            Frame::Seq(items, _, _) => index_path(&path, items.len()),
        })
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending_key, _, _)) => match pending_key.take() {
                None => {
                    let key = match &node.kind {
                        NodeKind::Scalar(Value::String(s)) => s.clone(),
                        NodeKind::Scalar(Value::Null) => "null".to_string(),
                        NodeKind::Scalar(other) => other.to_string(),
                        _ => {
                            self.diagnostics.push(
                                Diagnostic::error("", "a mapping key must be a plain value, not a list or a mapping")
                                    .at(node.position),
                            );
                            String::from("?")
                        }
                    };
                    let duplicate = entries
                        .iter()
                        .any(|(existing, _, _)| *existing == key)
                        .then(|| key.clone());
                    *pending_key = Some((key, node.position));
                    if let Some(key) = duplicate {
                        let path = self.path_being_built();
                        self.diagnostics.push(
                            Diagnostic::error(path, format!("duplicate key `{key}`"))
                                .with_hint("each key may appear once per mapping; remove or merge the repeats")
                                .at(node.position),
                        );
                    }
                }
                Some((key, key_position)) => {
                    if let Some(existing) = entries.iter_mut().find(|(k, _, _)| *k == key) {
                        existing.2 = node;
                    } else {
                        entries.push((key, key_position, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let position = position_of(mark);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let multiline = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) || text.contains('\n');
                let quoted = matches!(style, TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted);
                let node = Node {
                    kind: NodeKind::Scalar(scalar_value(&text, style)),
                    position,
                    quoted,
                    multiline,
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), position, anchor)),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(Vec::new(), None, position, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node_and_anchor = match self.stack.pop() {
                    Some(Frame::Seq(items, position, anchor)) => Some((
                        Node {
                            kind: NodeKind::Seq(items),
                            position,
                            quoted: false,
                            multiline: false,
                        },
                        anchor,
                    )),
                    Some(Frame::Map(entries, _, position, anchor)) => Some((
                        Node {
                            kind: NodeKind::Map(entries),
                            position,
                            quoted: false,
                            multiline: false,
                        },
                        anchor,
                    )),
                    None => None,
                };
                if let Some((node, anchor)) = node_and_anchor {
                    self.push_node(node, anchor);
                }
            }
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().unwrap_or(Node {
                    kind: NodeKind::Scalar(Value::Null),
                    position,
                    quoted: false,
                    multiline: false,
                });
                self.push_node(Node { position, ..node }, 0);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn values_and_positions() {
        let text = "name: demo\nsource:\n  records: \"$.data[*]\"\n  size: 10\n  ok: true\n  list: [a, 2]\n";
        let loaded = load(text, &no_env);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.value["source"]["size"], 10);
        assert_eq!(loaded.value["source"]["ok"], true);
        assert_eq!(loaded.value["source"]["list"][1], 2);
        let span = loaded.spans.find("source.records");
        assert_eq!((span.key.line, span.key.column), (3, 3));
        assert_eq!((span.value.line, span.value.column), (3, 12));
        assert!(span.quoted);
        assert_eq!(loaded.spans.value_position("source.list[1]").column, 13);
        assert_eq!(loaded.spans.find("source.missing.deeper").key.line, 2);
    }

    #[test]
    fn env_resolution_and_secrets() {
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cr3t".to_string()),
            "URL" => Some("http://x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let text = "connections:\n  a: {base_url: \"${URL}\", headers: {Authorization: \"Bearer ${TOKEN}\"}}\nx: \"${NOPE:-dflt} $${LIT}\"\ny: \"${MISSING}\"\nz: \"[${EMPTY:-fallback}][${EMPTY}]\"\n";
        let loaded = load(text, &env);
        assert_eq!(loaded.value["connections"]["a"]["base_url"], "http://x");
        assert_eq!(
            loaded.value["connections"]["a"]["headers"]["Authorization"],
            "Bearer s3cr3t"
        );
        assert_eq!(loaded.value["x"], "dflt ${LIT}");
        assert_eq!(
            loaded.value["z"], "[fallback][]",
            "a set but empty variable takes the default"
        );
        assert_eq!(loaded.secrets, vec!["s3cr3t".to_string()]);
        assert_eq!(loaded.diagnostics.len(), 1);
        assert!(loaded.diagnostics[0].message.contains("`MISSING`"));
        assert_eq!((loaded.diagnostics[0].line, loaded.diagnostics[0].column), (4, 5));
    }

    #[test]
    fn whole_references_are_listed_for_typing() {
        let env = |name: &str| (name == "N").then(|| "4".to_string());
        let text = "a: ${N}\nb: \"${N:-1}\"\nc: x${N}\nd: ${N}${N}\ne: $${N}\n";
        let loaded = load(text, &env);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.value["a"], "4", "typing is the schema's job");
        let mut whole: Vec<(&str, &str)> = loaded
            .env_scalars
            .iter()
            .map(|(path, name)| (path.as_str(), name.as_str()))
            .collect();
        whole.sort();
        assert_eq!(whole, [("a", "N"), ("b", "N")]);
        assert_eq!(typed_scalar("4"), Value::from(4));
        assert_eq!(typed_scalar("1.5"), Value::from(1.5));
        assert_eq!(typed_scalar("true"), Value::Bool(true));
        assert_eq!(typed_scalar("007"), Value::from(7));
        assert_eq!(typed_scalar("4 apples"), Value::from("4 apples"));
    }

    #[test]
    fn unset_variables_become_placeholders_noted_once_under_no_env() {
        let text = "a: ${GONE}\nb: \"x-${GONE}-${OTHER:-d}\"\nc: ok\n";
        let loaded = load_with(text, &no_env, MissingEnv::Note);
        assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
        let note = &loaded.diagnostics[0];
        assert_eq!(note.severity, crate::diag::Severity::Note);
        assert!(note.message.contains("`GONE`"));
        assert_eq!((note.line, note.column), (1, 4));
        assert_eq!(loaded.value["a"], placeholder("GONE"));
        assert_eq!(loaded.value["b"], format!("x-{}-d", placeholder("GONE")));
        let mut unset: Vec<&str> = loaded.unset_paths.iter().map(String::as_str).collect();
        unset.sort();
        assert_eq!(unset, ["a", "b"]);

        let failing = load(text, &no_env);
        assert_eq!(failing.diagnostics.len(), 2, "one error per reference");
        assert!(failing.diagnostics.iter().all(Diagnostic::is_error));
    }

    #[test]
    fn value_at_mut_follows_dotted_and_indexed_paths() {
        let mut value = serde_json::json!({"a": {"b": [1, {"c": 2}]}});
        *value_at_mut(&mut value, "a.b[1].c").unwrap() = Value::from(3);
        assert_eq!(value["a"]["b"][1]["c"], 3);
        assert!(value_at_mut(&mut value, "a.b[5]").is_none());
        assert!(value_at_mut(&mut value, "a.x.c").is_none());
    }

    #[test]
    fn syntax_error_has_position() {
        let loaded = load("a: [1, 2\nb: 3\n", &no_env);
        assert_eq!(loaded.diagnostics.len(), 1);
        assert!(loaded.diagnostics[0].message.starts_with("invalid YAML"));
        assert!(loaded.diagnostics[0].line >= 1);
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let loaded = load("a: 1\na: 2\n", &no_env);
        assert_eq!(loaded.diagnostics.len(), 1);
        assert!(loaded.diagnostics[0].message.contains("duplicate key `a`"));
        assert_eq!(loaded.diagnostics[0].line, 2);
    }

    #[test]
    fn anchors_and_aliases() {
        let loaded = load("base: &b {x: 1}\nother: *b\n", &no_env);
        assert_eq!(loaded.value["other"]["x"], 1);
    }
}
