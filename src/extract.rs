//! JSONPath: compiled once, evaluated many times.
//!
//! Owns the [`JsonPath`] type that schemes use to pick records out of a page
//! (`records: $.data.items[*]`), ids out of replies and values out of records.
//! Built on `jsonpath-rust` (RFC 9535 syntax plus the common `[?(…)]` filter
//! form). A path is parsed when the scheme is validated; evaluation reuses the
//! compiled query and never re-parses, because it runs per page and per record.
//!
//! Promises:
//! - Pure. A path that matches nothing selects nothing (an empty `Vec`); it is
//!   never an error at evaluation time.
//! - Parse errors are in plain words, quote the path, give the byte offset of
//!   the problem when known, and suggest a fix for the usual mistakes (missing
//!   `$`, unclosed `[`, field names that need `['…']`).
//!
//! Filters compare JSON types strictly: `@.qty > 1` does not match the string
//! `"2"`. Values decoded from XML or form bodies are all strings, so compare
//! them with strings (`@.status == '1'`).

use std::fmt;
use std::sync::Arc;

use jsonpath_rust::parser::errors::JsonPathError as LibraryError;
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::{Map, Value};

/// A parsed JSONPath. Cheap to clone (the compiled query is shared).
#[derive(Clone)]
pub struct JsonPath {
    text: String,
    query: Arc<JpQuery>,
    /// For paths made only of names, indexes and wildcards (`$.data.items[*].id`): the
    /// steps, walked directly. The library builds a location string for every value it
    /// selects, which costs more than the walk itself on these per-record paths.
    steps: Option<Arc<[Step]>>,
}

/// One step of a filter-free path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name`: the member of an object.
    Key(String),
    /// `[n]`: the n-th item of an array (n ≥ 0).
    Index(usize),
    /// `[*]` or `.*`: every item of an array, or every member value of an object.
    Wildcard,
}

/// The steps of `text`, if it is only `$` followed by `.name`, `[n]`, `[*]` and `.*`
/// (names of letters, digits and `_`). Anything else is left to the library. Only called
/// on text the library has parsed, so the shapes here are valid paths.
fn simple_steps(text: &str) -> Option<Arc<[Step]>> {
    let mut rest = text.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[*]").or_else(|| rest.strip_prefix(".*")) {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(after[..end].to_string()));
            rest = &after[end..];
        } else {
            let after = rest.strip_prefix('[')?;
            let (digits, tail) = after.split_once(']')?;
            let canonical = !digits.is_empty() && (digits == "0" || !digits.starts_with('0'));
            if !canonical || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            steps.push(Step::Index(digits.parse().ok()?));
            rest = tail;
        }
    }
    Some(steps.into())
}

fn walk<'a>(steps: &[Step], value: &'a Value, out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(value);
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some((_, member)) = object_entry(map, key) {
                walk(rest, member, out);
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get(*index) {
                walk(rest, item, out);
            }
        }
        (Step::Wildcard, Value::Array(items)) => items.iter().for_each(|item| walk(rest, item, out)),
        (Step::Wildcard, Value::Object(map)) => map.values().for_each(|member| walk(rest, member, out)),
        _ => {}
    }
}

/// Objects up to this many members are searched by comparing names rather than hashing
/// the one sought (serde_json's maps hash with SipHash, which costs more than a few
/// comparisons).
const SCAN_LIMIT: usize = 16;

/// The member `name` of a JSON object, found the cheaper way for its size.
pub(crate) fn object_entry<'a>(map: &'a Map<String, Value>, name: &str) -> Option<(&'a String, &'a Value)> {
    if map.len() <= SCAN_LIMIT {
        map.iter().find(|(key, _)| key.as_str() == name)
    } else {
        map.get_key_value(name)
    }
}

/// Why a JSONPath could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonPathError {
    /// What is wrong and how to fix it; quotes the path.
    pub message: String,
    /// Byte offset of the problem in the path text, when known.
    pub offset: Option<usize>,
}

impl JsonPath {
    /// Parses and compiles a path such as `$.data.items[*]`.
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        precheck(text)?;
        let query = parse_json_path(text).map_err(|error| explain(text, &error))?;
        Ok(JsonPath {
            text: text.to_string(),
            query: Arc::new(query),
            steps: simple_steps(text),
        })
    }

    /// Like [`JsonPath::select`], but returns owned items; for `$.a.b[*]` paths they are
    /// moved out of `value` (leaving an empty list or object behind) instead of copied.
    pub fn take_from(&self, value: &mut Value) -> Vec<Value> {
        if let Some(keys) = self.keys_then_wildcard() {
            let mut node = value;
            for key in keys {
                match node.get_mut(key.as_str()) {
                    Some(next) => node = next,
                    None => return Vec::new(),
                }
            }
            return match node {
                Value::Array(items) => std::mem::take(items),
                Value::Object(map) => std::mem::take(map).into_iter().map(|(_, v)| v).collect(),
                _ => Vec::new(),
            };
        }
        self.select(value).into_iter().cloned().collect()
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// For `$.a.b[*]`: the keys `a`, `b`.
    fn keys_then_wildcard(&self) -> Option<Vec<&String>> {
        let (last, keys) = self.steps.as_deref()?.split_last()?;
        if *last != Step::Wildcard {
            return None;
        }
        keys.iter()
            .map(|step| match step {
                Step::Key(key) => Some(key),
                _ => None,
            })
            .collect()
    }

    /// Every value the path selects, in document order.
    pub fn select<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        if let Some(steps) = &self.steps {
            let mut found = Vec::new();
            walk(steps, value, &mut found);
            return found;
        }
        self.select_with_library(value)
    }

    fn select_with_library<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        // A root query always yields references; the library's error case only
        // arises for computed values inside filters, so it maps to "nothing".
        match js_path_process(&self.query, value) {
            Ok(found) => found.into_iter().map(|found| found.val).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The first value the path selects, if any.
    pub fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.select(value).into_iter().next()
    }

    /// True when `text` is meant as a path: `$`, or starting with `$.` or `$[`.
    /// Used to tell paths from literals in schemes; no trimming is done.
    pub fn looks_like_path(text: &str) -> bool {
        text == "$" || text.starts_with("$.") || text.starts_with("$[")
    }
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonPath").field(&self.text).finish()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Paths are equal when written the same way.
impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonPath {}

// ---------------------------------------------------------------------------
// Error messages

fn error(text: &str, offset: Option<usize>, problem: &str) -> JsonPathError {
    let message = match offset {
        Some(offset) => format!("invalid JSONPath `{text}` at byte {offset}: {problem}"),
        None => format!("invalid JSONPath `{text}`: {problem}"),
    };
    JsonPathError { message, offset }
}

/// Catches the common mistakes before the grammar does, with better words.
fn precheck(text: &str) -> Result<(), JsonPathError> {
    if text.trim().is_empty() {
        return Err(JsonPathError {
            message: "the JSONPath is empty; write `$` for the whole document or a path such \
                      as `$.data.items[*]`"
                .to_string(),
            offset: None,
        });
    }
    if !text.starts_with('$') {
        let trimmed = text.trim_start();
        let problem = if trimmed.starts_with('$') {
            "remove the whitespace before `$`".to_string()
        } else if trimmed.starts_with(['.', '[']) {
            format!("a JSONPath starts with `$` (the document root); did you mean `${trimmed}`?")
        } else {
            format!("a JSONPath starts with `$` (the document root); did you mean `$.{trimmed}`?")
        };
        return Err(error(text, Some(0), &problem));
    }
    check_brackets(text)
}

/// Finds unclosed `[`/`(`, stray `]`/`)` and unterminated quotes.
fn check_brackets(text: &str) -> Result<(), JsonPathError> {
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut quote: Option<(usize, char)> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some((_, delimiter)) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == delimiter {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some((i, c)),
            '[' | '(' => open.push((i, c)),
            ']' | ')' => {
                let expected = if c == ']' { '[' } else { '(' };
                match open.pop() {
                    Some((_, opener)) if opener == expected => {}
                    Some((at, opener)) => {
                        return Err(error(
                            text,
                            Some(i),
                            &format!("`{c}` closes the `{opener}` opened at byte {at}"),
                        ))
                    }
                    None => return Err(error(text, Some(i), &format!("`{c}` has no matching `{expected}`"))),
                }
            }
            _ => {}
        }
    }
    if let Some((at, delimiter)) = quote {
        return Err(error(
            text,
            Some(at),
            &format!("the quote {delimiter} opened here is never closed"),
        ));
    }
    if let Some((at, opener)) = open.pop() {
        let closer = if opener == '[' { ']' } else { ')' };
        return Err(error(
            text,
            Some(at),
            &format!("the `{opener}` opened here is never closed with `{closer}`"),
        ));
    }
    Ok(())
}

/// Rewrites a jsonpath-rust error in plain words.
fn explain(text: &str, library_error: &LibraryError) -> JsonPathError {
    let LibraryError::PestError(pest_error) = library_error else {
        return error(text, None, &library_error.to_string());
    };
    // `pest` is not a direct dependency, so its `InputLocation` enum cannot be
    // named here; its derived Debug form is `Pos(7)` or `Span((7, 9))` and the
    // first number is the start offset. A unit test pins this down.
    let location = format!("{:?}", pest_error.location);
    let offset = location
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())
        .and_then(|digits| digits.parse::<usize>().ok())
        .map(|offset| offset.min(text.len()));
    let Some(offset) = offset else {
        return error(text, None, "the path does not follow JSONPath syntax");
    };
    error(text, Some(offset), &describe_at(text, offset))
}

/// What probably went wrong at `offset`, judged from the surrounding text.
fn describe_at(text: &str, offset: usize) -> String {
    let before = &text[..offset];
    let rest = &text[offset..];
    let Some(next) = rest.chars().next() else {
        return if before.ends_with('.') {
            "the path ends after `.`; add a field name or `*`".to_string()
        } else {
            "the path ends too early".to_string()
        };
    };
    let context = enclosing(before);
    if context == Enclosing::Filter {
        return format!(
            "unexpected `{}` in the filter; compare with ==, !=, <, <=, >, >=, combine with \
             && and ||, quote strings as 'text', and use @ for the current item, e.g. \
             `[?(@.qty > 1 && @.status == 'open')]`",
            excerpt(rest)
        );
    }
    if context == Enclosing::Bracket {
        return format!(
            "unexpected `{}` inside `[...]`; write an index `[0]`, `[*]`, a quoted name \
             `['name']`, a slice `[0:10]` or a filter `[?(@.qty > 1)]`",
            excerpt(rest)
        );
    }
    if before.ends_with('.') {
        return format!(
            "`{next}` cannot start a field name after `.`; names written after `.` use letters, \
             digits and `_`; write other names in brackets, e.g. `['{}']`",
            field_at(rest)
        );
    }
    let segment_start = before.rfind('.').map(|dot| dot + 1);
    if let Some(start) = segment_start.filter(|_| is_name_char_run(before, segment_start)) {
        let name = format!("{}{}", &before[start..], field_at(rest));
        return format!(
            "`{next}` cannot appear in a field name written after `.`; write `{name}` in \
             brackets instead: `['{name}']`"
        );
    }
    format!("unexpected `{}`", excerpt(rest))
}

/// The rest of a dotted field name: up to the next `.` or `[`.
fn field_at(rest: &str) -> &str {
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    &rest[..end]
}

/// True when the text after the last `.` is a plain name (letters, digits, `_`).
fn is_name_char_run(before: &str, start: Option<usize>) -> bool {
    start.is_some_and(|start| {
        let run = &before[start..];
        !run.is_empty() && run.chars().all(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A short piece of the path from the error onward.
fn excerpt(rest: &str) -> String {
    rest.chars().take(20).collect()
}

#[derive(PartialEq, Eq)]
enum Enclosing {
    Top,
    Bracket,
    Filter,
}

/// Whether the end of `before` lies inside `[...]`, and inside a filter.
fn enclosing(before: &str) -> Enclosing {
    let mut brackets: Vec<bool> = Vec::new(); // true = filter bracket
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for c in before.chars() {
        if let Some(delimiter) = quote {
            if c == delimiter && previous != '\\' {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '[' => brackets.push(false),
                ']' => {
                    brackets.pop();
                }
                '?' => {
                    if let Some(top) = brackets.last_mut() {
                        *top = true;
                    }
                }
                _ => {}
            }
        }
        previous = c;
    }
    match brackets.last() {
        None => Enclosing::Top,
        Some(false) => Enclosing::Bracket,
        Some(true) => Enclosing::Filter,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn simple_paths_are_walked_as_the_library_would() {
        let doc = serde_json::json!({
            "data": {
                "items": [{"id": 1, "lines": [{"sku": "A"}, {"sku": "B"}]}, {"id": "2", "lines": []}, 7, null],
                "map": {"x": {"id": 10}, "y": [1, 2], "z": "s"},
                "名称": "中文", "a_1": {"0": "zero"}, "empty": {}
            },
            "list": [[1, 2], [3]],
            "n": 5
        });
        let walked = [
            "$",
            "$.data",
            "$.data.items",
            "$.data.items[*]",
            "$.data.items[*].id",
            "$.data.items[*].lines[*].sku",
            "$.data.items[0].lines[1]",
            "$.data.items[9]",
            "$.data.items[0]",
            "$.data.items.*",
            "$.data.map.*",
            "$.data.map[*].id",
            "$.data.map[*][*]",
            "$.data.名称",
            "$.data.a_1",
            "$.list[*][0]",
            "$.list[1][0]",
            "$.n[*]",
            "$.n.x",
            "$.n[0]",
            "$.missing[*]",
            "$.data.empty[*]",
            "$[*]",
            "$.*",
            "$.data.items[10]",
        ];
        for text in walked {
            let path = super::JsonPath::parse(text).unwrap();
            assert!(path.steps.is_some(), "{text} should be walked directly");
            assert_eq!(path.select(&doc), path.select_with_library(&doc), "{text}");
        }
        for text in [
            "$..id",
            "$.data.items[-1]",
            "$.data.items[0:2]",
            "$['data']",
            "$.data.items[?(@.id == 1)]",
            "$.data.items[01]",
        ] {
            if let Ok(path) = super::JsonPath::parse(text) {
                assert!(path.steps.is_none(), "{text} is left to the library");
            }
        }
    }

    #[test]
    fn take_moves_items_and_matches_select() {
        let doc = serde_json::json!({"data": {"items": [{"a": 1}, {"a": 2}], "map": {"x": 1}}});
        for text in [
            "$.data.items[*]",
            "$.data.map[*]",
            "$.data.items[?(@.a > 1)]",
            "$.nope[*]",
            "$..a",
        ] {
            let path = super::JsonPath::parse(text).unwrap();
            let expected: Vec<serde_json::Value> = path.select(&doc).into_iter().cloned().collect();
            let mut copy = doc.clone();
            assert_eq!(path.take_from(&mut copy), expected, "{text}");
        }
    }

    use super::*;
    use serde_json::json;

    fn page() -> Value {
        json!({
            "code": 0,
            "data": {
                "total": 3,
                "items": [
                    {"id": "A1", "qty": 1, "status": "open", "lines": [{"sku": "x"}]},
                    {"id": "A2", "qty": 5, "status": "closed", "lines": [{"sku": "y"}, {"sku": "z"}]},
                    {"id": "A3", "qty": 2, "status": "open", "lines": []}
                ]
            },
            "order-id": "O-9",
            "数据": {"编号": "B1"}
        })
    }

    fn select(path: &str, value: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .select(value)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn nested_paths_and_root() {
        let value = page();
        assert_eq!(select("$.data.total", &value), [json!(3)]);
        assert_eq!(select("$.data.items[1].id", &value), [json!("A2")]);
        assert_eq!(select("$", &value), std::slice::from_ref(&value));
        assert_eq!(select("$['order-id']", &value), [json!("O-9")]);
        assert_eq!(select("$.数据.编号", &value), [json!("B1")]);
    }

    #[test]
    fn wildcard_and_descendants() {
        let value = page();
        assert_eq!(
            select("$.data.items[*].id", &value),
            [json!("A1"), json!("A2"), json!("A3")]
        );
        assert_eq!(select("$..sku", &value), [json!("x"), json!("y"), json!("z")]);
        assert_eq!(select("$.data.items[*]", &value).len(), 3);
    }

    #[test]
    fn filters() {
        let value = page();
        assert_eq!(
            select("$.data.items[?(@.qty > 1)].id", &value),
            [json!("A2"), json!("A3")]
        );
        assert_eq!(
            select("$.data.items[?@.status == 'open'].id", &value),
            [json!("A1"), json!("A3")]
        );
        assert_eq!(
            select("$.data.items[?(@.qty > 1 && @.status == 'open')].id", &value),
            [json!("A3")]
        );
    }

    #[test]
    fn filters_compare_types_strictly() {
        let from_xml = json!({"r": {"item": [{"qty": "2"}, {"qty": "5"}]}});
        assert!(select("$.r.item[?(@.qty > 1)]", &from_xml).is_empty());
        assert_eq!(select("$.r.item[?(@.qty == '5')].qty", &from_xml), [json!("5")]);
    }

    #[test]
    fn missing_paths_select_nothing() {
        let value = page();
        let path = JsonPath::parse("$.data.nothing[*].id").unwrap();
        assert!(path.select(&value).is_empty());
        assert_eq!(path.first(&value), None);
        assert!(select("$.code.deeper", &value).is_empty());
        assert!(select("$.data.items[9]", &value).is_empty());
    }

    #[test]
    fn first_and_reuse_across_values() {
        let path = JsonPath::parse("$.data.items[*].id").unwrap();
        assert_eq!(path.first(&page()), Some(&json!("A1")));
        let other = json!({"data": {"items": [{"id": 42}]}});
        assert_eq!(path.first(&other), Some(&json!(42)));
        assert_eq!(path.as_str(), "$.data.items[*].id");
        assert_eq!(path.to_string(), "$.data.items[*].id");
        assert_eq!(format!("{path:?}"), "JsonPath(\"$.data.items[*].id\")");
        assert_eq!(path.clone(), path);
    }

    #[test]
    fn descendant_filter_selects_xml_lists_of_one_or_many() {
        // Shapes produced by the XML codec for one and for two <Order> elements.
        let one = json!({"R": {"Orders": {"Order": {"@id": "1", "Sku": "a"}}}});
        let many = json!({"R": {"Orders": {"Order": [{"@id": "1"}, {"@id": "2"}]}}});
        let none = json!({"R": {"Orders": ""}});
        let records = JsonPath::parse("$.R.Orders..[?(@['@id'])]").unwrap();
        assert_eq!(records.select(&one), [&one["R"]["Orders"]["Order"]]);
        assert_eq!(records.select(&many).len(), 2);
        assert!(records.select(&none).is_empty());
        // The naive wildcard form picks the single order's fields instead.
        let wildcard = JsonPath::parse("$.R.Orders.Order[*]").unwrap();
        assert_eq!(wildcard.select(&one), [&json!("1"), &json!("a")]);
    }

    #[test]
    fn looks_like_path() {
        for yes in ["$", "$.a", "$[0]", "$..x"] {
            assert!(JsonPath::looks_like_path(yes), "{yes}");
        }
        for no in ["", "$a", "data.items", " $.a", "price: $5", "$$"] {
            assert!(!JsonPath::looks_like_path(no), "{no}");
        }
    }

    fn parse_error(text: &str) -> JsonPathError {
        match JsonPath::parse(text) {
            Ok(path) => panic!("{text} parsed as {path:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn unclosed_bracket() {
        let error = parse_error("$.data[");
        assert_eq!(error.offset, Some(6));
        assert_eq!(
            error.message,
            "invalid JSONPath `$.data[` at byte 6: the `[` opened here is never closed with `]`"
        );
        let error = parse_error("$..[");
        assert_eq!(error.offset, Some(3));
        assert!(error.message.contains("`$..[`"), "{}", error.message);
    }

    #[test]
    fn missing_root() {
        let error = parse_error("data.items");
        assert_eq!(error.offset, Some(0));
        assert!(
            error.message.contains("did you mean `$.data.items`?"),
            "{}",
            error.message
        );
        let error = parse_error(".data");
        assert!(error.message.contains("did you mean `$.data`?"), "{}", error.message);
        let error = parse_error("  $.a");
        assert!(error.message.contains("whitespace"), "{}", error.message);
        let error = parse_error("");
        assert!(error.message.contains("empty"), "{}", error.message);
    }

    #[test]
    fn names_needing_brackets() {
        let error = parse_error("$.order-id");
        assert_eq!(error.offset, Some(7));
        assert!(error.message.contains("`['order-id']`"), "{}", error.message);
        let error = parse_error("$.a.-x");
        assert_eq!(error.offset, Some(4));
        assert!(error.message.contains("cannot start a field name"), "{}", error.message);
    }

    #[test]
    fn bad_selectors_and_filters() {
        let error = parse_error("$..[]");
        assert_eq!(error.offset, Some(4));
        assert!(error.message.contains("inside `[...]`"), "{}", error.message);
        let error = parse_error("$.items[?(@.qty >)]");
        assert!(error.message.contains("in the filter"), "{}", error.message);
        let error = parse_error("$.a.");
        assert!(error.message.contains("ends after `.`"), "{}", error.message);
        let error = parse_error("$.a]");
        assert_eq!(error.offset, Some(3));
        assert!(error.message.contains("no matching `[`"), "{}", error.message);
        let error = parse_error("$['a]");
        assert!(error.message.contains("never closed"), "{}", error.message);
    }

    #[test]
    fn error_display_is_the_message() {
        let error = parse_error("$.data[");
        assert_eq!(error.to_string(), error.message);
    }
}
