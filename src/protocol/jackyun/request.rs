//! Pure builders of Jackyun requests.
//!
//! Promise: [`build`] turns a method name and its business parameters into one
//! form-encoded `POST` whose `sign` covers exactly the bytes sent. `bizcontent` is
//! serialized once (key order kept) and that one string is both signed and sent.
//! Paging and time windows live inside `bizcontent`; [`with_page`] and [`with_window`]
//! put them there, using the per-method field names of [`window_fields`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::{sign, Settings};
use crate::protocol::types::WireRequest;

/// `Content-Type` of every call.
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=UTF-8";
/// Format of the `timestamp` field (and of the time-window fields).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Per-method names of the modification-time window fields inside `bizcontent`.
pub const WINDOW_FIELDS: &[(&str, &str, &str)] = &[
    ("erp.storage.goodslist", "startDateModifiedSku", "endDateModifiedSku"),
    ("crm.customer.list", "gmtModifiedBegin", "gmtModifiedEnd"),
    ("oms.trade.fullinfoget", "startModified", "endModified"),
    ("wms.order.query-info.page", "startModifyTime", "endModifyTime"),
];

/// `now` written as `yyyy-MM-dd HH:mm:ss` in `timezone` (an IANA name).
pub fn timestamp_text(now: DateTime<Utc>, timezone: &str) -> Result<String, String> {
    let zone: Tz = timezone.parse().map_err(|_| {
        format!("unknown time zone '{timezone}' in jackyun settings; use an IANA name such as Asia/Shanghai")
    })?;
    Ok(now.with_timezone(&zone).format(TIMESTAMP_FORMAT).to_string())
}

/// Every form field of one call, in sending order, `sign` last.
pub fn form_fields(settings: &Settings, method: &str, bizcontent: &str, timestamp: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = vec![
        ("method".into(), method.into()),
        ("appkey".into(), settings.appkey.clone()),
        ("version".into(), settings.version().into()),
        ("contenttype".into(), "json".into()),
        ("timestamp".into(), timestamp.into()),
        ("bizcontent".into(), bizcontent.into()),
    ];
    if let Some(contextid) = &settings.contextid {
        fields.push(("contextid".into(), contextid.clone()));
    }
    if let Some(token) = &settings.token {
        fields.push(("token".into(), token.clone()));
    }
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let signature = sign::sign(&borrowed, &settings.secret);
    fields.push(("sign".into(), signature));
    fields
}

/// `application/x-www-form-urlencoded` bytes of `fields` (space as `+`).
pub fn encode_form(fields: &[(String, String)]) -> Vec<u8> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        form.append_pair(key, value);
    }
    form.finish().into_bytes()
}

/// The signed request calling `method` with business parameters `biz` (a JSON object)
/// at time `now`.
pub fn build(
    settings: &Settings,
    base_url: &str,
    method: &str,
    biz: &Value,
    now: DateTime<Utc>,
) -> Result<WireRequest, String> {
    if method.trim().is_empty() {
        return Err("the jackyun method is empty; name one such as erp.storage.goodslist".into());
    }
    if settings.appkey.is_empty() || settings.secret.is_empty() {
        return Err("jackyun appkey and secret must both be set".into());
    }
    if !biz.is_object() {
        return Err(format!(
            "jackyun bizcontent for {method} must be a JSON object, got {}",
            kind_of(biz)
        ));
    }
    let bizcontent =
        serde_json::to_string(biz).map_err(|e| format!("bizcontent for {method} could not be serialized: {e}"))?;
    let timestamp = timestamp_text(now, settings.timezone())?;
    let fields = form_fields(settings, method, &bizcontent, &timestamp);
    Ok(WireRequest {
        method: "POST",
        url: format!("{}{}", base_url.trim_end_matches('/'), settings.path()),
        headers: vec![("content-type".into(), CONTENT_TYPE.into())],
        body: Some(encode_form(&fields)),
    })
}

/// The window field names (begin, end) of `method`, when it has a known pair.
pub fn window_fields(method: &str) -> Option<(&'static str, &'static str)> {
    WINDOW_FIELDS
        .iter()
        .find(|(name, _, _)| *name == method)
        .map(|(_, begin, end)| (*begin, *end))
}

/// `biz` with `pageIndex` (0-based) and `pageSize` set.
pub fn with_page(biz: &Value, page_index: u64, page_size: u64) -> Result<Value, String> {
    let mut object = object_of(biz)?;
    object.insert("pageIndex".into(), Value::from(page_index));
    object.insert("pageSize".into(), Value::from(page_size));
    Ok(Value::Object(object))
}

/// `biz` with `method`'s window fields set to `begin`/`end` (`yyyy-MM-dd HH:mm:ss`).
pub fn with_window(method: &str, biz: &Value, begin: &str, end: &str) -> Result<Value, String> {
    let (begin_field, end_field) = window_fields(method).ok_or_else(|| {
        format!("no time-window fields are known for jackyun method {method}; set them in the scheme's params")
    })?;
    let mut object = object_of(biz)?;
    object.insert(begin_field.into(), Value::from(begin));
    object.insert(end_field.into(), Value::from(end));
    Ok(Value::Object(object))
}

fn object_of(biz: &Value) -> Result<Map<String, Value>, String> {
    match biz {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Map::new()),
        other => Err(format!(
            "jackyun bizcontent must be a JSON object, got {}",
            kind_of(other)
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
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
    use chrono::TimeZone;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::new("12345678", "0123456789abcdef0123456789abcdef")
    }

    /// 2024-03-01 12:00:00 in China is 04:00:00 UTC.
    fn vector_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 4, 0, 0).unwrap()
    }

    fn decoded(body: &[u8]) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body).into_owned().collect()
    }

    #[test]
    fn builds_the_reference_example_exactly() {
        let request = build(
            &settings(),
            "https://open.jackyun.com/",
            "erp.storage.goodslist",
            &json!({"pageIndex": 0, "pageSize": 50}),
            vector_time(),
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://open.jackyun.com/open/openapi/do");
        assert_eq!(
            request.headers,
            [("content-type".to_string(), CONTENT_TYPE.to_string())]
        );
        let body = String::from_utf8(request.body.unwrap()).unwrap();
        assert_eq!(
            body,
            "method=erp.storage.goodslist&appkey=12345678&version=v1.0&contenttype=json\
             &timestamp=2024-03-01+12%3A00%3A00\
             &bizcontent=%7B%22pageIndex%22%3A0%2C%22pageSize%22%3A50%7D\
             &sign=af8f1ae1a98bd6c9c2052248f0f3c64c"
        );
    }

    #[test]
    fn signed_bizcontent_is_the_sent_bizcontent() {
        let biz = json!({"customerCode": "KH001", "nickname": "杭州云帆贸易有限公司", "age": "30"});
        let request = build(&settings(), "http://x", "crm.customer.add", &biz, vector_time()).unwrap();
        let fields = decoded(&request.body.unwrap());
        let sent = &fields.iter().find(|(k, _)| k == "bizcontent").unwrap().1;
        assert_eq!(
            sent,
            r#"{"customerCode":"KH001","nickname":"杭州云帆贸易有限公司","age":"30"}"#
        );
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let claimed = &fields.iter().find(|(k, _)| k == "sign").unwrap().1;
        assert_eq!(&sign::sign(&borrowed, &settings().secret), claimed);
    }

    #[test]
    fn token_and_contextid_are_sent_but_not_signed() {
        let mut with_token = settings();
        with_token.token = Some("TOKEN".into());
        with_token.contextid = Some("CTX".into());
        let biz = json!({"pageIndex": 0, "pageSize": 50});
        let plain = decoded(
            &build(&settings(), "http://x", "erp.storage.goodslist", &biz, vector_time())
                .unwrap()
                .body
                .unwrap(),
        );
        let extra = decoded(
            &build(&with_token, "http://x", "erp.storage.goodslist", &biz, vector_time())
                .unwrap()
                .body
                .unwrap(),
        );
        assert!(extra.contains(&("token".into(), "TOKEN".into())));
        assert!(extra.contains(&("contextid".into(), "CTX".into())));
        assert_eq!(plain.last(), extra.last(), "same sign with and without token/contextid");
    }

    #[test]
    fn version_and_time_zone_follow_settings() {
        let mut custom = settings();
        custom.version = Some("1.0".into());
        custom.timezone = Some("UTC".into());
        let fields = decoded(
            &build(&custom, "http://x", "crm.customer.list", &json!({}), vector_time())
                .unwrap()
                .body
                .unwrap(),
        );
        assert!(fields.contains(&("version".into(), "1.0".into())));
        assert!(fields.contains(&("timestamp".into(), "2024-03-01 04:00:00".into())));
        custom.timezone = Some("Mars/Olympus".into());
        let error = build(&custom, "http://x", "crm.customer.list", &json!({}), vector_time()).unwrap_err();
        assert!(error.contains("Mars/Olympus"), "{error}");
    }

    #[test]
    fn bad_inputs_are_explained() {
        let now = vector_time();
        assert!(build(&settings(), "http://x", " ", &json!({}), now)
            .unwrap_err()
            .contains("method"));
        assert!(build(&settings(), "http://x", "m", &json!([1]), now)
            .unwrap_err()
            .contains("an array"));
        let mut no_secret = settings();
        no_secret.secret.clear();
        assert!(build(&no_secret, "http://x", "m", &json!({}), now)
            .unwrap_err()
            .contains("secret"));
    }

    #[test]
    fn paging_and_windows_go_inside_bizcontent() {
        let biz = with_page(&json!({"hasTotal": 1}), 3, 200).unwrap();
        assert_eq!(biz, json!({"hasTotal": 1, "pageIndex": 3, "pageSize": 200}));
        let biz = with_window("crm.customer.list", &biz, "2024-03-01 00:00:00", "2024-03-02 00:00:00").unwrap();
        assert_eq!(biz["gmtModifiedBegin"], "2024-03-01 00:00:00");
        assert_eq!(biz["gmtModifiedEnd"], "2024-03-02 00:00:00");
        assert_eq!(
            window_fields("erp.storage.goodslist"),
            Some(("startDateModifiedSku", "endDateModifiedSku"))
        );
        assert!(with_window("erp.unknown", &json!({}), "a", "b").is_err());
        assert!(with_page(&json!("x"), 0, 1).is_err());
        assert_eq!(
            with_page(&Value::Null, 0, 5).unwrap(),
            json!({"pageIndex": 0, "pageSize": 5})
        );
    }
}
