//! JSON bodies, via serde_json.
//!
//! Decoding keeps object keys in document order. Encoding is compact (no
//! whitespace, keys in object order, non-ASCII written as raw UTF-8, numbers in
//! serde_json's shortest round-trip form), hence deterministic: vendors that sign
//! the body see exactly the bytes we hashed. Pretty-printing was rejected
//! because some signature schemes hash the body and whitespace must then match.

use serde_json::error::Category;
use serde_json::Value;

use super::{
    near, position_of, preview, reject_empty_or_html, significant, tail, utf8_text, Codec, CodecError, Position,
    MAX_DEPTH,
};

pub(super) fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    reject_empty_or_html(Codec::Json, bytes)?;
    if significant(bytes).starts_with(b"<") {
        return Err(CodecError::WrongFormat {
            expected: Codec::Json,
            found: Codec::Xml,
            preview: preview(bytes),
        });
    }
    let text = utf8_text(Codec::Json, bytes)?;
    serde_json::from_str(text).map_err(|error| describe(text, bytes, &error))
}

pub(super) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|error| CodecError::Encode {
        codec: Codec::Json,
        message: error.to_string(),
    })
}

/// Turns a serde_json error into an operator-facing one.
fn describe(text: &str, bytes: &[u8], error: &serde_json::Error) -> CodecError {
    let position = (error.line() > 0).then(|| Position {
        line: error.line(),
        column: error.column(),
    });
    // serde_json appends " at line L column C"; we print the position ourselves.
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();

    if error.classify() == Category::Eof {
        return CodecError::Truncated {
            codec: Codec::Json,
            detail: message,
            position,
            tail: tail(bytes),
        };
    }
    if message.contains("recursion limit exceeded") {
        return CodecError::TooDeep {
            codec: Codec::Json,
            limit: MAX_DEPTH,
            preview: preview(bytes),
        };
    }
    let offset = position.map(|p| offset_of(text, p));
    let message = match message.as_str() {
        "trailing characters" => {
            "extra text after the end of the JSON document (two documents, or a log line?)".to_string()
        }
        _ => message,
    };
    CodecError::Syntax {
        codec: Codec::Json,
        message,
        position: offset.map(|offset| position_of(text, offset)),
        near: offset.and_then(|offset| near(text, offset)),
        preview: preview(bytes),
    }
}

/// The byte offset of serde_json's (line, column); its column counts bytes.
fn offset_of(text: &str, position: Position) -> usize {
    let line_start = text
        .split_inclusive('\n')
        .take(position.line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    (line_start + position.column.saturating_sub(1)).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_key_order_and_encodes_compactly() {
        let body = br#"{ "z": 1, "a": [true, null, "x"], "m": {"k": 2.5} }"#;
        let value = decode(body).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(encode(&value).unwrap(), br#"{"z":1,"a":[true,null,"x"],"m":{"k":2.5}}"#);
    }

    #[test]
    fn encoding_is_deterministic_and_keeps_unicode_raw() {
        let value = json!({"FName": "物料", "FQty": 3, "FNote": "a\"b"});
        let first = encode(&value).unwrap();
        assert_eq!(first, encode(&value.clone()).unwrap());
        assert_eq!(
            String::from_utf8(first).unwrap(),
            r#"{"FName":"物料","FQty":3,"FNote":"a\"b"}"#
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let error = decode(b"{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        match &error {
            CodecError::Syntax { position, message, .. } => {
                assert_eq!(*position, Some(Position { line: 3, column: 7 }));
                assert!(message.contains("expected `:`"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = error.to_string();
        assert!(text.starts_with("invalid JSON at line 3, column 7"), "{text}");
        assert!(text.contains("body begins: {\\n"), "{text}");
    }

    #[test]
    fn error_far_into_the_body_shows_nearby_text() {
        let body = format!("{{\"items\": [{}1, 2 3]}}", "0, ".repeat(100));
        let error = decode(body.as_bytes()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("near: …"), "{text}");
        assert!(text.contains("1, 2 3]"), "{text}");
    }

    #[test]
    fn truncated_document_is_named() {
        let error = decode(br#"{"data": {"items": [{"id": 1}, {"id""#).unwrap_err();
        assert!(matches!(error, CodecError::Truncated { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("ends unexpectedly"), "{text}");
        assert!(text.contains("{\"id\""), "{text}");
    }

    #[test]
    fn xml_where_json_expected() {
        let error = decode(b"<?xml version=\"1.0\"?><Response><Code>0</Code></Response>").unwrap_err();
        assert!(
            matches!(
                error,
                CodecError::WrongFormat {
                    expected: Codec::Json,
                    found: Codec::Xml,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("set `codec: xml`"), "{error}");
    }

    #[test]
    fn plain_text_error_page_shows_preview() {
        let error = decode(b"Service Unavailable").unwrap_err();
        assert!(matches!(error, CodecError::Syntax { .. }), "{error:?}");
        assert!(error.to_string().contains("Service Unavailable"), "{error}");
    }

    #[test]
    fn trailing_garbage_is_explained() {
        let error = decode(b"{\"a\":1}\n{\"a\":2}").unwrap_err();
        assert!(error.to_string().contains("extra text after"), "{error}");
    }

    #[test]
    fn hostile_nesting_is_refused() {
        let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let error = decode(body.as_bytes()).unwrap_err();
        assert!(matches!(error, CodecError::TooDeep { limit: 128, .. }), "{error:?}");
        let nested_ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(decode(nested_ok.as_bytes()).is_ok());
    }
}
