//! `application/x-www-form-urlencoded` bodies.
//!
//! Encoding takes an object and writes one `key=value` pair per field, in
//! object order, with `url::form_urlencoded` (space becomes `+`; everything but
//! ASCII letters, digits and `*-._` is percent-encoded). Values are written as:
//! strings as-is, numbers and booleans as their JSON text, `null` as an empty
//! string, objects and arrays as compact JSON text. Anything but an object is an
//! error.
//!
//! Decoding gives an object of strings in body order (`a=b&c=d` →
//! `{"a":"b","c":"d"}`). A key without `=` gets `""`. A key that repeats becomes
//! an array of its strings in order, so no value is silently dropped. An empty
//! body is an empty object, because zero fields is a valid form.
//!
//! Decoding is done by hand rather than with `form_urlencoded::parse` because
//! that function replaces invalid UTF-8 with U+FFFD. Legacy systems sometimes
//! percent-encode GBK bytes; we want an error naming the field, not silently
//! corrupted text.

use serde_json::{Map, Value};

use super::{looks_like_html, preview, significant, utf8_text, Codec, CodecError};

pub(super) fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    if significant(bytes).is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if looks_like_html(bytes) {
        return Err(CodecError::HtmlPage {
            codec: Codec::Form,
            preview: preview(bytes),
        });
    }
    let found = match significant(bytes).first() {
        Some(b'{' | b'[') => Some(Codec::Json),
        Some(b'<') => Some(Codec::Xml),
        _ => None,
    };
    if let Some(found) = found {
        return Err(CodecError::WrongFormat {
            expected: Codec::Form,
            found,
            preview: preview(bytes),
        });
    }
    let text = utf8_text(Codec::Form, bytes)?;

    let mut fields = Map::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key).map_err(|()| not_utf8(bytes, "a field name", raw_key))?;
        let value = percent_decode(raw_value)
            .map_err(|()| not_utf8(bytes, &format!("the value of field `{key}`"), raw_value))?;
        match fields.get_mut(&key) {
            None => {
                fields.insert(key, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
        }
    }
    Ok(Value::Object(fields))
}

pub(super) fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let Value::Object(fields) = value else {
        return Err(CodecError::Encode {
            codec: Codec::Form,
            message: format!(
                "a form body is a set of named fields, so the payload must be an object, \
                 not {}",
                describe_kind(value)
            ),
        });
    };
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        serializer.append_pair(key, &field_text(value));
    }
    Ok(serializer.finish().into_bytes())
}

/// The text a field value is written as.
fn field_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        // Display for Value is compact JSON, which is what we want for the rest.
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn not_utf8(bytes: &[u8], what: &str, raw: &str) -> CodecError {
    CodecError::InvalidUtf8 {
        codec: Codec::Form,
        detail: format!(
            "{what} decodes to bytes that are not UTF-8: `{raw}` (percent-encoded in another \
             encoding, such as GBK?)"
        ),
        preview: preview(bytes),
    }
}

/// Decodes `+` and `%XX`; a `%` not followed by two hex digits stays literal,
/// as browsers and `form_urlencoded` do.
fn percent_decode(raw: &str) -> Result<String, ()> {
    if !raw.contains(['%', '+']) {
        return Ok(raw.to_string());
    }
    let input = raw.as_bytes();
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                input.get(i + 1).and_then(|b| hex_value(*b)),
                input.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_pairs_into_strings_in_order() {
        let value = decode(b"z=1&a=hello+world&name=%E7%89%A9%E6%96%99&empty=&flag").unwrap();
        assert_eq!(
            value,
            json!({"z": "1", "a": "hello world", "name": "物料", "empty": "", "flag": ""})
        );
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "name", "empty", "flag"]);
    }

    #[test]
    fn repeated_keys_become_arrays() {
        assert_eq!(
            decode(b"id=1&x=y&id=2&id=3").unwrap(),
            json!({"id": ["1", "2", "3"], "x": "y"})
        );
    }

    #[test]
    fn empty_body_is_empty_object() {
        assert_eq!(decode(b"").unwrap(), json!({}));
        assert_eq!(decode(b"&&").unwrap(), json!({}));
    }

    #[test]
    fn malformed_percent_stays_literal() {
        assert_eq!(
            decode(b"a=100%&b=%zz&c=%4").unwrap(),
            json!({"a": "100%", "b": "%zz", "c": "%4"})
        );
    }

    #[test]
    fn percent_encoded_gbk_is_an_error_naming_the_field() {
        let error = decode(b"ok=1&name=%D6%D0%CE%C4").unwrap_err();
        assert!(matches!(error, CodecError::InvalidUtf8 { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("field `name`"), "{text}");
        assert!(text.contains("%D6%D0%CE%C4"), "{text}");
    }

    #[test]
    fn json_or_xml_where_form_expected() {
        for (body, found) in [(b"{\"a\":1}".as_slice(), Codec::Json), (b"<r/>", Codec::Xml)] {
            let error = decode(body).unwrap_err();
            assert_eq!(
                error,
                CodecError::WrongFormat {
                    expected: Codec::Form,
                    found,
                    preview: String::from_utf8(body.to_vec()).unwrap(),
                }
            );
        }
    }

    #[test]
    fn encodes_scalars_and_nested_values() {
        let value = json!({
            "method": "kingdee.save",
            "page": 2,
            "ratio": 0.5,
            "active": true,
            "note": null,
            "data": {"FName": "物料 A", "list": [1, 2]},
            "q": "a&b=c+d"
        });
        let body = String::from_utf8(encode(&value).unwrap()).unwrap();
        assert_eq!(
            body,
            "method=kingdee.save&page=2&ratio=0.5&active=true&note=\
             &data=%7B%22FName%22%3A%22%E7%89%A9%E6%96%99+A%22%2C%22list%22%3A%5B1%2C2%5D%7D\
             &q=a%26b%3Dc%2Bd"
        );
        let back = decode(body.as_bytes()).unwrap();
        assert_eq!(back["q"], json!("a&b=c+d"));
        assert_eq!(back["data"], json!(r#"{"FName":"物料 A","list":[1,2]}"#));
    }

    #[test]
    fn encoding_a_non_object_is_an_error() {
        for value in [json!([1, 2]), json!("text"), json!(null)] {
            let error = encode(&value).unwrap_err();
            assert!(error.to_string().contains("must be an object"), "{error}");
        }
    }
}
