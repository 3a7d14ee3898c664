//! Jackyun's request signature (pure).
//!
//! Promise: [`sign`] returns what the gateway recomputes from the form fields it
//! receives: every field except `sign`, `contextid` and `token`, sorted by key in byte
//! order, written as `key + value` with no separators, wrapped in the app secret on both
//! sides, the WHOLE string lowercased (secret and `bizcontent` JSON included), then MD5
//! as lowercase hex. The values must be the exact texts that are sent.

use md5::{Digest, Md5};

/// Form fields that are sent but never signed.
pub const UNSIGNED_FIELDS: &[&str] = &["sign", "contextid", "token"];

/// The string before lowercasing: `secret + k1v1k2v2… + secret`.
pub fn string_to_sign(fields: &[(&str, &str)], secret: &str) -> String {
    let mut signed: Vec<&(&str, &str)> = fields
        .iter()
        .filter(|(key, _)| !UNSIGNED_FIELDS.contains(key))
        .collect();
    signed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::from(secret);
    for (key, value) in signed {
        text.push_str(key);
        text.push_str(value);
    }
    text.push_str(secret);
    text
}

/// The `sign` field: lowercase hex MD5 of the lowercased [`string_to_sign`].
pub fn sign(fields: &[(&str, &str)], secret: &str) -> String {
    let lowered = string_to_sign(fields, secret).to_lowercase();
    hex::encode(Md5::digest(lowered.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn vector_fields() -> Vec<(&'static str, &'static str)> {
        vec![
            ("method", "erp.storage.goodslist"),
            ("appkey", "12345678"),
            ("version", "v1.0"),
            ("contenttype", "json"),
            ("timestamp", "2024-03-01 12:00:00"),
            ("bizcontent", r#"{"pageIndex":0,"pageSize":50}"#),
        ]
    }

    #[test]
    fn reference_vector_string_to_sign() {
        let expected = format!(
            "{SECRET}appkey12345678bizcontent{{\"pageIndex\":0,\"pageSize\":50}}contenttypejson\
             methoderp.storage.goodslisttimestamp2024-03-01 12:00:00versionv1.0{SECRET}"
        );
        assert_eq!(string_to_sign(&vector_fields(), SECRET), expected);
    }

    #[test]
    fn reference_vector_sign() {
        assert_eq!(sign(&vector_fields(), SECRET), "af8f1ae1a98bd6c9c2052248f0f3c64c");
    }

    #[test]
    fn unsigned_fields_and_field_order_do_not_matter() {
        let mut fields = vector_fields();
        fields.reverse();
        fields.push(("token", "abc"));
        fields.push(("contextid", "ctx"));
        fields.push(("sign", "whatever"));
        assert_eq!(sign(&fields, SECRET), "af8f1ae1a98bd6c9c2052248f0f3c64c");
    }

    #[test]
    fn lowercasing_happens_before_hashing() {
        // Upper-case bytes inside bizcontent sign the same as their lower-case twins...
        let mut upper = vector_fields();
        upper[5] = ("bizcontent", r#"{"PAGEINDEX":0,"PAGESIZE":50}"#);
        assert_eq!(sign(&upper, SECRET), "af8f1ae1a98bd6c9c2052248f0f3c64c");
        // ...and the digest is the MD5 of the lowered text, not of the raw one.
        let raw = string_to_sign(&vector_fields(), SECRET);
        assert_ne!(hex::encode(Md5::digest(raw.as_bytes())), sign(&vector_fields(), SECRET));
        // Any real change to a value changes the sign.
        let mut changed = vector_fields();
        changed[5] = ("bizcontent", r#"{"pageIndex":1,"pageSize":50}"#);
        assert_ne!(sign(&changed, SECRET), "af8f1ae1a98bd6c9c2052248f0f3c64c");
    }
}
