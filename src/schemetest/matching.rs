//! Pure request matching for `ferry test`: a received request and a recorded one become the
//! same shape (method, path, query as an object, body as JSON), and are compared
//! semantically: object key order is ignored, a form body is an object of its fields, a
//! field holding JSON text is compared as JSON, and volatile fields (signatures, timestamps,
//! nonces: the connector's [`crate::sim::signatures::volatile_fields`] plus the test's
//! `volatile:` list) only have to be present. Their values are checked elsewhere, by the
//! simulators' own signature checks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request as a test file writes it down (the path relative to the connection's base URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestShape {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub query: Map<String, Value>,
    /// The body: JSON as JSON, a form as an object of its fields, other text as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl RequestShape {
    /// The shape of a received request: `path` relative to the connection's base path.
    pub fn from_parts(method: &str, path: &str, query: &str, content_type: Option<&str>, body: &[u8]) -> RequestShape {
        let query = fields_object(&crate::sim::parse_query(query));
        RequestShape {
            method: method.to_string(),
            path: path.to_string(),
            query,
            body: body_value(content_type, body),
        }
    }

    /// `POST /path` for messages.
    pub fn headline(&self) -> String {
        format!(
            "{} {}",
            self.method,
            if self.path.is_empty() { "/" } else { &self.path }
        )
    }
}

/// A form's (or query's) fields as an object; a value holding a JSON object or array is
/// kept as JSON, so it compares semantically.
fn fields_object(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| (key.clone(), json_text_or_string(value)))
        .collect()
}

fn json_text_or_string(text: &str) -> Value {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            return value;
        }
    }
    Value::String(text.to_string())
}

/// The body as a value: JSON (also JSON text that was URL-encoded whole), a form's fields,
/// or the text; `None` when empty.
pub fn body_value(content_type: Option<&str>, body: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Some(value);
    }
    let decoded = crate::sim::parse_query(&format!("x={text}"))
        .pop()
        .map(|(_, value)| value)
        .unwrap_or_default();
    if text.starts_with("%7B") || text.starts_with("%7b") {
        if let Ok(value) = serde_json::from_str::<Value>(&decoded) {
            return Some(value);
        }
    }
    let is_form = content_type.is_some_and(|ct| ct.contains("x-www-form-urlencoded"))
        || (text.contains('=') && !text.contains(' ') && !text.contains('\n'));
    if is_form {
        return Some(Value::Object(fields_object(&crate::sim::parse_query(text))));
    }
    Some(Value::String(text.to_string()))
}

/// Every difference between the `expected` (recorded) and the `actual` request, one line
/// each (`body.data.Model[0].FName: expected "A", got "B"`); empty when they match.
pub fn differences(expected: &RequestShape, actual: &RequestShape, volatile: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if !expected.method.eq_ignore_ascii_case(&actual.method) {
        out.push(format!("method: expected {}, got {}", expected.method, actual.method));
    }
    if expected.path != actual.path {
        out.push(format!("path: expected {:?}, got {:?}", expected.path, actual.path));
    }
    compare(
        &Value::Object(expected.query.clone()),
        &Value::Object(actual.query.clone()),
        "query",
        volatile,
        &mut out,
    );
    compare(
        expected.body.as_ref().unwrap_or(&Value::Null),
        actual.body.as_ref().unwrap_or(&Value::Null),
        "body",
        volatile,
        &mut out,
    );
    out
}

fn is_volatile(path: &str, volatile: &[String]) -> bool {
    volatile.iter().any(|rule| rule == path)
}

fn compare(expected: &Value, actual: &Value, path: &str, volatile: &[String], out: &mut Vec<String>) {
    if is_volatile(path, volatile) {
        return;
    }
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want_value) in want {
                let child = format!("{path}.{key}");
                match got.get(key) {
                    Some(got_value) => compare(want_value, got_value, &child, volatile, out),
                    None => out.push(format!("{child}: expected {}, missing", short(want_value))),
                }
            }
            for (key, got_value) in got {
                if !want.contains_key(key) {
                    out.push(format!("{path}.{key}: not expected, got {}", short(got_value)));
                }
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            for (index, (want_value, got_value)) in want.iter().zip(got).enumerate() {
                compare(want_value, got_value, &format!("{path}[{index}]"), volatile, out);
            }
            if want.len() != got.len() {
                out.push(format!("{path}: expected {} items, got {}", want.len(), got.len()));
            }
        }
        _ if expected == actual => {}
        // A number sent as text (or the other way) is the same value on the wire of a form.
        (Value::String(text), Value::Number(n)) | (Value::Number(n), Value::String(text)) if text == &n.to_string() => {
        }
        _ => out.push(format!("{path}: expected {}, got {}", short(expected), short(actual))),
    }
}

/// A value for a message, cut to a readable length.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(body: Value) -> RequestShape {
        RequestShape {
            method: "POST".into(),
            path: "/api".into(),
            query: Map::new(),
            body: Some(body),
        }
    }

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let a = shape(json!({"a": 1, "b": {"c": [1, 2]}}));
        let b = shape(serde_json::from_str(r#"{"b": {"c": [1, 2]}, "a": 1}"#).unwrap());
        assert!(differences(&a, &b, &[]).is_empty());
        let c = shape(json!({"a": 1, "b": {"c": [1, 3]}}));
        assert_eq!(differences(&a, &c, &[]), ["body.b.c[1]: expected 2, got 3"]);
    }

    #[test]
    fn volatile_fields_must_only_be_present() {
        let a = shape(json!({"sign": "AAA", "x": 1}));
        let b = shape(json!({"sign": "BBB", "x": 1}));
        assert_eq!(differences(&a, &b, &[]).len(), 1);
        assert!(differences(&a, &b, &["body.sign".into()]).is_empty());
        let missing = shape(json!({"x": 1}));
        assert_eq!(
            differences(&a, &missing, &["body.sign".into()]),
            [r#"body.sign: expected "AAA", missing"#]
        );
    }

    #[test]
    fn forms_and_json_text_inside_them_compare_as_values() {
        let body = b"method=crm.customer.add&bizcontent=%7B%22b%22%3A1%2C%22a%22%3A2%7D";
        let received = RequestShape::from_parts("POST", "/open/openapi/do", "", None, body);
        assert_eq!(
            received.body,
            Some(json!({"method": "crm.customer.add", "bizcontent": {"a": 2, "b": 1}}))
        );
        let encoded_json = body_value(None, b"%7B%22a%22%3A1%7D");
        assert_eq!(encoded_json, Some(json!({"a": 1})));
    }
}
