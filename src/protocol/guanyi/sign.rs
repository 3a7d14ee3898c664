//! Guanyi request signing (pure).
//!
//! `sign = UPPER(hex(MD5(secret + J + secret)))`, hashed as UTF-8, where `J` is the exact compact
//! JSON text of the request object without `sign`. The signed body is `J` with `,"sign":"<SIGN>"`
//! spliced in before its final `}`, so the text the server strips and hashes is byte-for-byte
//! the text signed here. Nothing is re-serialized after signing.
//!
//! `J` is produced by `serde_json`'s compact writer: no spaces, CJK and other non-ASCII left
//! unescaped, `/` not escaped, key order as given (the crate is built with `preserve_order`).

use md5::{Digest, Md5};
use serde_json::{Map, Value};

/// Why a text could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The text to sign is not a JSON object.
    #[error("a Guanyi request must be a JSON object text like {{\"appkey\":…}}; got text starting with {start:?}")]
    NotAnObject { start: String },
    /// The object already carries a `sign` member.
    #[error("the request already has a \"sign\" member; leave it out, the connector computes and adds it")]
    AlreadySigned,
}

/// `UPPER(hex(MD5(secret + json_text + secret)))`: 32 uppercase hex characters.
pub fn sign(secret: &str, json_text: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(secret.as_bytes());
    hasher.update(json_text.as_bytes());
    hasher.update(secret.as_bytes());
    hex::encode_upper(hasher.finalize())
}

/// The compact JSON text `J` of a request object, exactly as it will be signed and sent.
pub fn compact_text(request: &Map<String, Value>) -> String {
    // `Value`'s Display is serde_json's compact writer and cannot fail for a map of values.
    Value::Object(request.clone()).to_string()
}

/// Inserts `"sign":"<sign>"` as the last member of the object text `json_text`, touching
/// nothing else: `{"a":1}` becomes `{"a":1,"sign":"…"}` and `{}` becomes `{"sign":"…"}`.
pub fn splice_sign(json_text: &str, sign: &str) -> Result<String, SignError> {
    let trimmed = json_text.trim_end();
    let not_object = || SignError::NotAnObject {
        start: json_text.chars().take(16).collect(),
    };
    if !json_text.trim_start().starts_with('{') || !trimmed.ends_with('}') {
        return Err(not_object());
    }
    let head = &trimmed[..trimmed.len() - 1];
    let empty_object = head.trim() == "{";
    let mut out = String::with_capacity(json_text.len() + sign.len() + 10);
    out.push_str(head);
    if !empty_object {
        out.push(',');
    }
    out.push_str("\"sign\":\"");
    out.push_str(sign);
    out.push_str("\"}");
    Ok(out)
}

/// Signs `request` (which must not contain `sign`) with `secret`. Returns the body to send and
/// the signature.
pub fn signed_body(secret: &str, request: &Map<String, Value>) -> Result<(String, String), SignError> {
    if request.contains_key("sign") {
        return Err(SignError::AlreadySigned);
    }
    let text = compact_text(request);
    let signature = sign(secret, &text);
    let body = splice_sign(&text, &signature)?;
    Ok((body, signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const VECTOR_J: &str = r#"{"appkey":"100000","sessionkey":"abcdef0123456789abcdef0123456789","method":"gy.erp.shop.get","page_no":1,"page_size":10}"#;
    const VECTOR_SIGN: &str = "BFEFA7C57052DB81965DF5C168916360";

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn reproduces_the_reference_test_vector() {
        assert_eq!(sign(SECRET, VECTOR_J), VECTOR_SIGN);
    }

    #[test]
    fn compact_text_of_the_vector_request_is_the_vector_text() {
        let request = object(json!({
            "appkey": "100000",
            "sessionkey": "abcdef0123456789abcdef0123456789",
            "method": "gy.erp.shop.get",
            "page_no": 1,
            "page_size": 10,
        }));
        assert_eq!(compact_text(&request), VECTOR_J);
        let (body, signature) = signed_body(SECRET, &request).unwrap();
        assert_eq!(signature, VECTOR_SIGN);
        assert_eq!(
            body,
            format!(
                "{}{}",
                &VECTOR_J[..VECTOR_J.len() - 1],
                r#","sign":"BFEFA7C57052DB81965DF5C168916360"}"#
            )
        );
    }

    #[test]
    fn sign_is_uppercase_and_depends_on_every_byte() {
        let signature = sign(SECRET, "{}");
        assert_eq!(signature.len(), 32);
        assert_eq!(signature, signature.to_uppercase());
        assert_ne!(sign(SECRET, VECTOR_J), sign(SECRET, &VECTOR_J.replace(":10}", ": 10}")));
        assert_ne!(sign("other", VECTOR_J), VECTOR_SIGN);
    }

    #[test]
    fn compact_text_keeps_cjk_and_slashes_unescaped() {
        let request = object(json!({"name": "有赞微商城", "url": "http://a/b", "note": "x\"y"}));
        assert_eq!(
            compact_text(&request),
            r#"{"name":"有赞微商城","url":"http://a/b","note":"x\"y"}"#
        );
        // The hash covers the UTF-8 bytes of the CJK text, not \u escapes.
        let escaped = r#"{"name":"\u6709\u8d5e\u5fae\u5546\u57ce","url":"http://a/b","note":"x\"y"}"#;
        assert_ne!(sign(SECRET, &compact_text(&request)), sign(SECRET, escaped));
    }

    #[test]
    fn splice_adds_sign_last_without_touching_the_rest() {
        assert_eq!(splice_sign(r#"{"a":1}"#, "S").unwrap(), r#"{"a":1,"sign":"S"}"#);
        assert_eq!(splice_sign("{}", "S").unwrap(), r#"{"sign":"S"}"#);
        assert_eq!(splice_sign("{ }\n", "S").unwrap(), r#"{ "sign":"S"}"#);
        assert!(matches!(splice_sign("[1]", "S"), Err(SignError::NotAnObject { .. })));
        assert!(matches!(splice_sign("", "S"), Err(SignError::NotAnObject { .. })));
    }

    #[test]
    fn refuses_a_request_that_is_already_signed() {
        let request = object(json!({"appkey": "1", "sign": "X"}));
        assert_eq!(signed_body(SECRET, &request), Err(SignError::AlreadySigned));
    }
}
