//! Fxiaoke business requests (pure): every call is `POST` + `application/json` with the business
//! arguments under `data`.
//!
//! * Old generation: `{"corpAccessToken", "corpId", "currentOpenUserId", "data": {…}}`.
//! * New generation: the same `{"data": {…}}` body, with `authorization: Bearer <token>`,
//!   `x-fs-ea` and `x-fs-userid` headers and a fresh `?thirdTraceId=<uuid4>` on every URL.
//!
//! The ERP push URL always carries `thirdTraceId` (as documented for both generations). Its
//! `data` is completed with the configured `dataCenterId` and checked before sending: the
//! documented rule is that `destObjectApiName` is required when `directSync` is true; the
//! field types are checked too so a malformed row fails here, with a message, not at the vendor.

use serde_json::{json, Map, Value};

use super::sign::{join, third_trace_id, Token};
use super::{Generation, Settings};
use crate::protocol::types::WireRequest;

/// Push records into the ERP integration platform (`data` = one record).
pub const PUSH_API: &str = "/cgi/crm/erp/syncdata/objdata/push";
/// Query preset CRM objects (`AccountObj`, …).
pub const QUERY_API: &str = "/cgi/crm/v2/data/query";
/// Query custom objects (api names ending `__c`).
pub const CUSTOM_QUERY_API: &str = "/cgi/crm/custom/v2/data/query";
/// Create a preset CRM object record.
pub const CREATE_API: &str = "/cgi/crm/v2/data/create";
/// Update a preset CRM object record.
pub const UPDATE_API: &str = "/cgi/crm/v2/data/update";
/// Largest `search_query_info.limit` the query accepts.
pub const MAX_QUERY_LIMIT: u64 = 100;
/// Largest `search_query_info.offset`; deeper reads page by an `_id` cursor with offset 0.
pub const MAX_QUERY_OFFSET: i64 = 10_000;

/// Builds one business call. `api` is the path (e.g. [`QUERY_API`]), `data` the business
/// arguments that go under `data`, `token` the cached token, `trace` 128 random bits for the
/// `thirdTraceId`.
pub fn build(
    settings: &Settings,
    base_url: &str,
    api: &str,
    data: &Value,
    token: &Token,
    trace: u128,
) -> Result<WireRequest, String> {
    if !api.starts_with('/') || api.len() < 2 {
        return Err(format!(
            "fxiaoke: api `{api}` must be a path such as {QUERY_API} or {PUSH_API}"
        ));
    }
    if token.generation != settings.generation() {
        return Err(format!(
            "fxiaoke: the cached token belongs to the {:?} generation but the connection is set to {:?}; \
             the two generations must not be mixed — request a new token",
            token.generation,
            settings.generation()
        ));
    }
    let Value::Object(_) = data else {
        return Err(format!(
            "fxiaoke: the arguments for {api} must be a JSON object (they are sent under `data`), got {}",
            kind(data)
        ));
    };
    let data = if api == PUSH_API {
        let completed = with_push_defaults(settings, data);
        check_push_data(&completed)?;
        completed
    } else {
        data.clone()
    };
    let operator = settings.operator().ok_or_else(|| {
        settings
            .check()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "fxiaoke: no operator configured".into())
    })?;

    let wants_trace = api == PUSH_API || settings.generation() == Generation::Oauth2;
    let mut url = join(base_url, api);
    if wants_trace {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("thirdTraceId=");
        url.push_str(&third_trace_id(trace));
    }
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let body = match settings.generation() {
        Generation::CorpAccessToken => json!({
            "corpAccessToken": token.access_token,
            "corpId": token.corp_id,
            "currentOpenUserId": operator,
            "data": data,
        }),
        Generation::Oauth2 => {
            headers.push(("authorization".into(), format!("Bearer {}", token.access_token)));
            headers.push(("x-fs-ea".into(), token.corp_id.clone()));
            headers.push(("x-fs-userid".into(), operator.to_owned()));
            json!({ "data": data })
        }
    };
    let body = serde_json::to_vec(&body).map_err(|e| format!("fxiaoke: encoding the request body: {e}"))?;
    Ok(WireRequest {
        method: "POST",
        url,
        headers,
        body: Some(body),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `data` with the configured `dataCenterId` filled in when the record names none.
pub fn with_push_defaults(settings: &Settings, data: &Value) -> Value {
    let mut data = data.clone();
    if let (Value::Object(map), Some(center)) = (&mut data, settings.data_center_id.as_deref()) {
        let missing = match map.get("dataCenterId") {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.is_empty(),
            Some(_) => false,
        };
        if missing && !center.is_empty() {
            map.insert("dataCenterId".into(), Value::String(center.to_owned()));
        }
    }
    data
}

/// Checks one ERP push record (the value under `data`). A present `id` marks the platform's
/// standard format, which then needs `masterFieldVal`; without `id` the body is "non-standard"
/// and a function on the push interface must transform it.
pub fn check_push_data(data: &Value) -> Result<(), String> {
    let fail = |message: String| Err(format!("fxiaoke push: {message}"));
    let Value::Object(map) = data else {
        return fail(format!("the record must be a JSON object, got {}", kind(data)));
    };
    for key in ["objAPIName", "dataCenterId", "destObjectApiName"] {
        match map.get(key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => return fail(format!("`{key}` must be a string, got {}", kind(other))),
        }
    }
    if let Some(Value::String(name)) = map.get("objAPIName") {
        if name.trim().is_empty() {
            return fail("`objAPIName` is empty; name the ERP object, e.g. erpSalesOrderObj".into());
        }
    }
    let standard = match map.get("id") {
        None | Some(Value::Null) => false,
        Some(Value::String(id)) if !id.is_empty() => true,
        Some(Value::String(_)) => {
            return fail("`id` is empty; leave it out for the non-standard format or give the record's id".into())
        }
        Some(other) => {
            return fail(format!(
                "`id` must be a string, got {}; render it as text (e.g. << id | string >>)",
                kind(other)
            ))
        }
    };
    let direct_sync = match map.get("directSync") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => return fail(format!("`directSync` must be true or false, got {}", kind(other))),
    };
    if direct_sync {
        let named = map
            .get("destObjectApiName")
            .and_then(Value::as_str)
            .is_some_and(|name| !name.trim().is_empty());
        if !named {
            return fail(
                "`destObjectApiName` is required when `directSync` is true (the CRM object to sync into)".into(),
            );
        }
    }
    match map.get("masterFieldVal") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) if !standard => {}
        None | Some(Value::Null) => {
            return fail("`masterFieldVal` is required when `id` is given (the standard format)".into())
        }
        Some(other) => return fail(format!("`masterFieldVal` must be an object, got {}", kind(other))),
    }
    match map.get("detailFieldVals") {
        None | Some(Value::Null) => {}
        Some(Value::Object(details)) => check_details(details).or_else(fail)?,
        Some(other) => {
            return fail(format!(
                "`detailFieldVals` must be an object of detail object name → list of rows, got {}",
                kind(other)
            ))
        }
    }
    Ok(())
}

fn check_details(details: &Map<String, Value>) -> Result<(), String> {
    for (name, rows) in details {
        let Value::Array(rows) = rows else {
            return Err(format!(
                "`detailFieldVals.{name}` must be a list of rows, got {}",
                kind(rows)
            ));
        };
        if let Some(position) = rows.iter().position(|row| !row.is_object()) {
            return Err(format!(
                "`detailFieldVals.{name}[{position}]` must be an object of field values"
            ));
        }
    }
    Ok(())
}

/// Sets `search_query_info.offset` and `.limit` of a query's `data`, creating the object
/// when missing. The limit is capped at [`MAX_QUERY_LIMIT`].
pub fn set_query_page(data: &mut Value, offset: i64, limit: u64) -> Result<(), String> {
    let Value::Object(map) = data else {
        return Err("fxiaoke: query arguments must be a JSON object".into());
    };
    let info = map
        .entry("search_query_info")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(info) = info else {
        return Err("fxiaoke: `search_query_info` must be an object".into());
    };
    info.insert("offset".into(), json!(offset));
    info.insert("limit".into(), json!(limit.min(MAX_QUERY_LIMIT)));
    Ok(())
}

/// The incremental filter "modified after `since_ms`": `last_modified_time GT <ms>`.
pub fn modified_after(since_ms: i64) -> Value {
    json!({"field_name": "last_modified_time", "operator": "GT", "field_values": [since_ms]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn settings(generation: Generation) -> Settings {
        Settings {
            app_id: "FSAID_131a2b3".into(),
            app_secret: "0123456789abcdef0123456789abcdef".into(),
            permanent_code: "ABCDEF0123456789ABCDEF0123456789".into(),
            current_open_user_id: Some("FSUID_OPERATOR".into()),
            user_id: Some("1000".into()),
            generation: Some(generation),
            data_center_id: Some("63f82854a8bd974420925e83".into()),
            token_refresh_margin_secs: None,
        }
    }

    fn token(generation: Generation) -> Token {
        Token {
            access_token: "TOKEN1".into(),
            corp_id: "FSCID_CORP".into(),
            expires_in_secs: 7200,
            obtained_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            generation,
        }
    }

    fn body(request: &WireRequest) -> Value {
        serde_json::from_slice(request.body.as_deref().unwrap()).unwrap()
    }

    fn header<'a>(request: &'a WireRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn push_record() -> Value {
        json!({"objAPIName": "erpSalesOrderObj", "id": "111", "directSync": false,
               "masterFieldVal": {"number": "04270002", "order_origin_price": "100"},
               "detailFieldVals": {"erpSalesOrderProductObj": [{"number": "04270002-0001", "product_price": "100"}]}})
    }

    #[test]
    fn old_generation_puts_the_token_in_the_body() {
        let data = json!({"dataObjectApiName": "AccountObj", "search_query_info": {"limit": 100, "offset": 0}});
        let s = settings(Generation::CorpAccessToken);
        let request = build(
            &s,
            "https://open.fxiaoke.com",
            QUERY_API,
            &data,
            &token(Generation::CorpAccessToken),
            1,
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://open.fxiaoke.com/cgi/crm/v2/data/query");
        assert_eq!(header(&request, "authorization"), None);
        assert_eq!(
            body(&request),
            json!({"corpAccessToken": "TOKEN1", "corpId": "FSCID_CORP",
                   "currentOpenUserId": "FSUID_OPERATOR", "data": data})
        );
    }

    #[test]
    fn new_generation_uses_headers_and_a_trace_id() {
        let data = json!({"dataObjectApiName": "AccountObj"});
        let s = settings(Generation::Oauth2);
        let request = build(
            &s,
            "https://open.fxiaoke.com/",
            QUERY_API,
            &data,
            &token(Generation::Oauth2),
            0,
        )
        .unwrap();
        assert_eq!(
            request.url,
            "https://open.fxiaoke.com/cgi/crm/v2/data/query?thirdTraceId=00000000-0000-4000-8000-000000000000"
        );
        assert_eq!(header(&request, "authorization"), Some("Bearer TOKEN1"));
        assert_eq!(header(&request, "x-fs-ea"), Some("FSCID_CORP"));
        assert_eq!(header(&request, "x-fs-userid"), Some("1000"));
        assert_eq!(body(&request), json!({"data": data}));
    }

    #[test]
    fn generations_are_never_mixed() {
        let s = settings(Generation::Oauth2);
        let error = build(
            &s,
            "http://x",
            QUERY_API,
            &json!({}),
            &token(Generation::CorpAccessToken),
            0,
        )
        .unwrap_err();
        assert!(error.contains("must not be mixed"), "{error}");
    }

    #[test]
    fn push_carries_a_trace_id_and_the_default_data_center() {
        let s = settings(Generation::CorpAccessToken);
        let request = build(
            &s,
            "http://127.0.0.1:9",
            PUSH_API,
            &push_record(),
            &token(Generation::CorpAccessToken),
            u128::MAX,
        )
        .unwrap();
        assert_eq!(
            request.url,
            "http://127.0.0.1:9/cgi/crm/erp/syncdata/objdata/push?thirdTraceId=ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        let sent = body(&request);
        assert_eq!(sent["data"]["dataCenterId"], "63f82854a8bd974420925e83");
        assert_eq!(sent["data"]["id"], "111");
        assert_eq!(sent["corpAccessToken"], "TOKEN1");
        // A record naming its own data center keeps it.
        let mut own = push_record();
        own["dataCenterId"] = json!("other");
        let request = build(&s, "http://x", PUSH_API, &own, &token(Generation::CorpAccessToken), 0).unwrap();
        assert_eq!(body(&request)["data"]["dataCenterId"], "other");
    }

    #[test]
    fn direct_sync_needs_a_destination() {
        let s = settings(Generation::CorpAccessToken);
        let mut record = push_record();
        record["directSync"] = json!(true);
        let error = build(
            &s,
            "http://x",
            PUSH_API,
            &record,
            &token(Generation::CorpAccessToken),
            0,
        )
        .unwrap_err();
        assert!(error.contains("destObjectApiName"), "{error}");
        record["destObjectApiName"] = json!("SalesOrderObj");
        assert!(build(
            &s,
            "http://x",
            PUSH_API,
            &record,
            &token(Generation::CorpAccessToken),
            0
        )
        .is_ok());
    }

    #[test]
    fn push_records_are_type_checked() {
        let cases = [
            (json!({"id": 111, "masterFieldVal": {}}), "`id` must be a string"),
            (json!({"id": "", "masterFieldVal": {}}), "`id` is empty"),
            (json!({"id": "1"}), "`masterFieldVal` is required"),
            (
                json!({"id": "1", "masterFieldVal": []}),
                "`masterFieldVal` must be an object",
            ),
            (
                json!({"id": "1", "masterFieldVal": {}, "detailFieldVals": []}),
                "`detailFieldVals` must be an object",
            ),
            (
                json!({"id": "1", "masterFieldVal": {}, "detailFieldVals": {"d": {}}}),
                "`detailFieldVals.d` must be a list",
            ),
            (
                json!({"id": "1", "masterFieldVal": {}, "detailFieldVals": {"d": [1]}}),
                "`detailFieldVals.d[0]`",
            ),
            (
                json!({"objAPIName": " ", "masterFieldVal": {}}),
                "`objAPIName` is empty",
            ),
            (json!({"objAPIName": 5}), "`objAPIName` must be a string"),
            (json!({"directSync": "yes"}), "`directSync` must be true or false"),
        ];
        for (record, expected) in cases {
            let error = check_push_data(&record).unwrap_err();
            assert!(error.contains(expected), "{record}: {error}");
        }
        // Non-standard format: no id, anything under masterFieldVal's absence is allowed.
        assert_eq!(
            check_push_data(&json!({"objAPIName": "erpSalesOrderObj", "raw": "<xml/>"})),
            Ok(())
        );
    }

    #[test]
    fn arguments_must_be_an_object_and_api_a_path() {
        let s = settings(Generation::CorpAccessToken);
        let t = token(Generation::CorpAccessToken);
        assert!(build(&s, "http://x", QUERY_API, &json!([1]), &t, 0)
            .unwrap_err()
            .contains("JSON object"));
        assert!(build(&s, "http://x", "query", &json!({}), &t, 0)
            .unwrap_err()
            .contains("must be a path"));
    }

    #[test]
    fn query_page_and_incremental_filter() {
        let mut data = json!({"dataObjectApiName": "AccountObj"});
        set_query_page(&mut data, 200, 500).unwrap();
        assert_eq!(data["search_query_info"], json!({"offset": 200, "limit": 100}));
        assert!(set_query_page(&mut json!({"search_query_info": 1}), 0, 1).is_err());
        assert_eq!(
            modified_after(1_709_251_200_000),
            json!({"field_name": "last_modified_time", "operator": "GT", "field_values": [1_709_251_200_000_i64]})
        );
    }
}
