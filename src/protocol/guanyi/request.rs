//! Guanyi request builder (pure): `(method, business params)` → a signed [`WireRequest`].
//!
//! The body is one flat JSON object: `appkey`, `sessionkey`, `method`, then the business
//! parameters in the order given, then `sign` (see [`super::sign`]). Every call is a POST to the
//! same URL, the connection's `base_url` taken verbatim (the vendor's RPC URL such as
//! `http://v2.api.guanyierp.com/rest/erp_open`). Parameters whose value is `null` are left out,
//! so optional filters rendered as `null` do not reach the wire. Guanyi has no login, token,
//! timestamp or nonce, so building a request needs neither a clock nor a session.

use serde_json::{Map, Value};

use super::sign::{signed_body, SignError};
use super::Settings;
use crate::protocol::types::WireRequest;

/// The `Content-Type` sent with every call; the server does not check it strictly [INF].
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Top-level fields the connector fills in itself.
pub const SYSTEM_FIELDS: &[&str] = &["appkey", "sessionkey", "method", "sign"];

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No method was named.
    #[error("the Guanyi method is empty; name a gy.erp.* method such as gy.erp.shop.get")]
    EmptyMethod,
    /// The business parameters are not an object.
    #[error("Guanyi business parameters must be a JSON object of name: value pairs, got {found}")]
    ParamsNotObject { found: &'static str },
    /// A business parameter collides with a system field.
    #[error("parameter `{0}` is filled in by the guanyi connector; remove it from the request parameters")]
    ReservedParam(String),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// The request object before signing: system fields first, then the non-null `params`.
pub fn request_object(settings: &Settings, method: &str, params: &Value) -> Result<Map<String, Value>, RequestError> {
    if method.trim().is_empty() {
        return Err(RequestError::EmptyMethod);
    }
    let empty = Map::new();
    let params = match params {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(RequestError::ParamsNotObject {
                found: json_kind(other),
            })
        }
    };
    if let Some(reserved) = params.keys().find(|key| SYSTEM_FIELDS.contains(&key.as_str())) {
        return Err(RequestError::ReservedParam(reserved.clone()));
    }
    let mut object = Map::with_capacity(params.len() + 3);
    object.insert("appkey".to_owned(), Value::String(settings.appkey.clone()));
    object.insert("sessionkey".to_owned(), Value::String(settings.sessionkey.clone()));
    object.insert("method".to_owned(), Value::String(method.to_owned()));
    for (key, value) in params {
        if !value.is_null() {
            object.insert(key.clone(), value.clone());
        }
    }
    Ok(object)
}

/// The exact body text for `method` with `params`, signed: `{…,"sign":"<MD5>"}`.
pub fn signed_text(settings: &Settings, method: &str, params: &Value) -> Result<String, RequestError> {
    let object = request_object(settings, method, params)?;
    let (body, _signature) = signed_body(&settings.secret, &object)?;
    Ok(body)
}

/// A ready-to-send POST of `method` with `params` to `base_url`.
pub fn build(settings: &Settings, base_url: &str, method: &str, params: &Value) -> Result<WireRequest, RequestError> {
    let body = signed_text(settings, method, params)?;
    Ok(WireRequest {
        method: "POST",
        url: base_url.to_owned(),
        headers: vec![("content-type".to_owned(), CONTENT_TYPE.to_owned())],
        body: Some(body.into_bytes()),
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector_settings() -> Settings {
        Settings::new(
            "100000",
            "abcdef0123456789abcdef0123456789",
            "0123456789abcdef0123456789abcdef",
        )
    }

    #[test]
    fn builds_the_reference_vector_request() {
        let wire = build(
            &vector_settings(),
            "http://v2.api.guanyierp.com/rest/erp_open",
            "gy.erp.shop.get",
            &json!({"page_no": 1, "page_size": 10}),
        )
        .unwrap();
        assert_eq!(wire.method, "POST");
        assert_eq!(wire.url, "http://v2.api.guanyierp.com/rest/erp_open");
        assert_eq!(wire.headers, [("content-type".to_owned(), CONTENT_TYPE.to_owned())]);
        let body = String::from_utf8(wire.body.unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"appkey":"100000","sessionkey":"abcdef0123456789abcdef0123456789","method":"gy.erp.shop.get","page_no":1,"page_size":10,"sign":"BFEFA7C57052DB81965DF5C168916360"}"#
        );
    }

    #[test]
    fn params_keep_their_order_and_nulls_are_dropped() {
        let params = json!({"modify_start_date": "2024-03-01 00:00:00", "code": null, "page_no": 2, "page_size": 5});
        let text = signed_text(&vector_settings(), "gy.erp.shop.get", &params).unwrap();
        let unsigned = text.split(r#","sign":""#).next().unwrap();
        assert_eq!(
            unsigned,
            r#"{"appkey":"100000","sessionkey":"abcdef0123456789abcdef0123456789","method":"gy.erp.shop.get","modify_start_date":"2024-03-01 00:00:00","page_no":2,"page_size":5"#
        );
        let signature = &text[text.len() - 34..text.len() - 2];
        let signed_part = format!("{unsigned}}}");
        assert_eq!(
            signature,
            super::super::sign::sign("0123456789abcdef0123456789abcdef", &signed_part)
        );
    }

    #[test]
    fn null_params_mean_no_params() {
        let object = request_object(&vector_settings(), "gy.erp.shop.get", &Value::Null).unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["appkey", "sessionkey", "method"]);
    }

    #[test]
    fn rejects_bad_input_with_actionable_errors() {
        let settings = vector_settings();
        assert_eq!(build(&settings, "u", " ", &json!({})), Err(RequestError::EmptyMethod));
        assert_eq!(
            build(&settings, "u", "gy.erp.shop.get", &json!([1])),
            Err(RequestError::ParamsNotObject { found: "an array" })
        );
        let reserved = build(&settings, "u", "gy.erp.shop.get", &json!({"sign": "x"})).unwrap_err();
        assert_eq!(reserved, RequestError::ReservedParam("sign".to_owned()));
        assert!(reserved.to_string().contains("remove it"));
        assert!(matches!(
            build(&settings, "u", "gy.erp.shop.get", &json!({"appkey": "other"})),
            Err(RequestError::ReservedParam(name)) if name == "appkey"
        ));
    }
}
