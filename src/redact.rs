//! Secret hygiene: [`Secret`] hides its value in Debug/Display, and [`Redactor`] masks every
//! known secret value in text before it is printed, logged or stored.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a redacted secret is replaced with.
pub const MASK: &str = "***";

/// A credential whose Debug and Display never show the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The real value, for signing and sending only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Masks known secret values in text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

/// A secret and the other spellings it takes on the wire.
fn encoded_forms(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .get(1..json.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string();
    vec![secret.to_string(), form, percent, json]
}

impl Redactor {
    /// Masks each secret as written and as it appears once encoded into a query string,
    /// a form body or a JSON string (`Ab+c/d=` is also `Ab%2Bc%2Fd%3D` in a URL).
    pub fn new(secrets: Vec<String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().flat_map(|s| encoded_forms(&s)).collect();
        secrets.retain(|s| s.len() >= 3);
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            out = out.replace(secret.as_str(), MASK);
        }
        Cow::Owned(out)
    }
    /// Masks secrets inside every string of a JSON value.
    pub fn redact_value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact_value(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.redact_value(v))).collect()),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn encoded_secrets_are_masked_too() {
        let redactor = Redactor::new(vec!["Ab+cd/EF=gh&ij k\"q".to_string()]);
        for text in [
            "q=key=Ab%2Bcd%2FEF%3Dgh%26ij+k%22q",
            "/path/Ab%2Bcd%2FEF%3Dgh%26ij%20k%22q",
            r#"{"key":"Ab+cd/EF=gh&ij k\"q"}"#,
            "raw Ab+cd/EF=gh&ij k\"q",
        ] {
            let masked = redactor.redact(text);
            assert!(masked.contains(MASK) && !masked.contains("gh"), "{text} → {masked}");
        }
    }

    #[test]
    fn redactor_masks_longest_first() {
        let r = Redactor::new(vec!["abc".into(), "abcdef".into()]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
        let v = r.redact_value(&serde_json::json!({"h": ["Bearer abcdef"]}));
        assert_eq!(v, serde_json::json!({"h": ["Bearer ***"]}));
    }
}
