//! Requests of the standard interface (pure), exactly as seed 000 shows them:
//!
//! * `POST <base>/create` and `POST <base>/update`, `Content-Type: application/json`, body
//!   `{"objAPIName": …, "masterFieldVal": {…}, "detailFieldVals": {"<detail>": [{…}, …]}}`;
//!   an update names its record by the id field inside `masterFieldVal` (default `id`).
//! * `GET <base>/queryMasterBatch?objAPIName=…&startTime=<ms>&endTime=<ms>&includeDetail=true&offset=…&limit=…`
//! * `GET <base>/queryMasterById?objAPIName=…&dataId=…&includeDetail=true`
//!
//! All carry the `token` header. `params` is the scheme's rendered argument object with those
//! same keys; times may be given as ms numbers or digit strings, `offset`/`limit`/
//! `includeDetail` default from the settings.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::sign::token_header;
use super::{Api, Settings};
use crate::protocol::types::WireRequest;

/// Builds the request for `api` (`create`, `update`, `queryMasterBatch` or `queryMasterById`).
pub fn build(settings: &Settings, base_url: &str, api: &str, params: &Value) -> Result<WireRequest, String> {
    let which = Api::parse(api).ok_or_else(|| {
        format!("erp-standard: unknown api `{api}`; choose create, update, queryMasterBatch or queryMasterById")
    })?;
    let Value::Object(params) = params else {
        return Err(format!("erp-standard: the arguments of {api} must be a JSON object"));
    };
    let token = token_header(settings)?;
    let url = endpoint(base_url, settings.path(which));
    match which {
        Api::Create | Api::Update => {
            let body = write_body(settings, which, params)?;
            let body = serde_json::to_vec(&body).map_err(|e| format!("erp-standard: encoding the {api} body: {e}"))?;
            Ok(WireRequest {
                method: "POST",
                url,
                headers: vec![token, ("content-type".into(), "application/json".into())],
                body: Some(body),
            })
        }
        Api::QueryMasterBatch | Api::QueryMasterById => {
            let pairs = query_pairs(settings, which, params)?;
            let query: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{key}={}", encode(value)))
                .collect();
            let separator = if url.contains('?') { '&' } else { '?' };
            Ok(WireRequest {
                method: "GET",
                url: format!("{url}{separator}{}", query.join("&")),
                headers: vec![token],
                body: None,
            })
        }
    }
}

/// `base_url` joined with `path`; a path that is a full URL stands alone.
fn endpoint(base_url: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        return path.to_string();
    }
    format!("{}/{}", base_url.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// Percent-encodes a query value (all but RFC 3986 unreserved bytes).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn object_name(params: &Map<String, Value>) -> Result<String, String> {
    match params.get("objAPIName") {
        Some(Value::String(name)) if !name.trim().is_empty() => Ok(name.clone()),
        _ => Err("erp-standard: `objAPIName` (the ERP object's api name) is required".into()),
    }
}

/// The create / update body, checked: `masterFieldVal` an object, `detailFieldVals` an object
/// of arrays of objects (`{}` when absent), and for update the id field present in the master.
pub fn write_body(settings: &Settings, api: Api, params: &Map<String, Value>) -> Result<Value, String> {
    let name = object_name(params)?;
    let Some(Value::Object(master)) = params.get("masterFieldVal") else {
        return Err("erp-standard: `masterFieldVal` must be an object of the master's field values".into());
    };
    let details = match params.get("detailFieldVals") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(details)) => {
            for (detail, rows) in details {
                let rows_ok = rows.as_array().is_some_and(|rows| rows.iter().all(Value::is_object));
                if !rows_ok {
                    return Err(format!(
                        "erp-standard: `detailFieldVals.{detail}` must be a list of row objects"
                    ));
                }
            }
            details.clone()
        }
        Some(_) => {
            return Err("erp-standard: `detailFieldVals` must be an object of detail name → list of rows".into())
        }
    };
    if api == Api::Update {
        let field = settings.id_field();
        let has_id = match master.get(field) {
            Some(Value::String(id)) => !id.is_empty(),
            Some(Value::Number(_)) => true,
            _ => false,
        };
        if !has_id {
            return Err(format!(
                "erp-standard: update needs the record's ERP id in `masterFieldVal.{field}` \
                 (the masterDataId create returned; the field is set by `id_field`)"
            ));
        }
    }
    Ok(json!({"objAPIName": name, "masterFieldVal": master, "detailFieldVals": details}))
}

/// Milliseconds since the epoch, as `startTime` / `endTime` expect.
pub fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn whole_number(params: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("erp-standard: `{key}` must be a whole number, got {n}")),
        Some(Value::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("erp-standard: `{key}` must be a whole number, got `{text}`")),
        Some(other) => Err(format!("erp-standard: `{key}` must be a whole number, got {other}")),
    }
}

fn flag(params: &Map<String, Value>, key: &str, default: bool) -> Result<bool, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(value)) => Ok(*value),
        Some(Value::String(text)) if text == "true" || text == "false" => Ok(text == "true"),
        Some(other) => Err(format!("erp-standard: `{key}` must be true or false, got {other}")),
    }
}

/// The query parameters of a query api, in the seed's order.
pub fn query_pairs(
    settings: &Settings,
    api: Api,
    params: &Map<String, Value>,
) -> Result<Vec<(String, String)>, String> {
    let name = object_name(params)?;
    let include = flag(params, "includeDetail", settings.include_detail())?;
    match api {
        Api::QueryMasterBatch => {
            let start = whole_number(params, "startTime")?
                .ok_or("erp-standard: `startTime` (ms since the epoch) is required")?;
            let end =
                whole_number(params, "endTime")?.ok_or("erp-standard: `endTime` (ms since the epoch) is required")?;
            if start > end {
                return Err(format!("erp-standard: startTime {start} is after endTime {end}"));
            }
            let offset = whole_number(params, "offset")?.unwrap_or(0);
            if offset < 0 {
                return Err(format!("erp-standard: `offset` must not be negative, got {offset}"));
            }
            let limit =
                whole_number(params, "limit")?.unwrap_or(i64::try_from(settings.page_size()).unwrap_or(i64::MAX));
            if limit < 1 {
                return Err(format!("erp-standard: `limit` must be at least 1, got {limit}"));
            }
            Ok(vec![
                ("objAPIName".into(), name),
                ("startTime".into(), start.to_string()),
                ("endTime".into(), end.to_string()),
                ("includeDetail".into(), include.to_string()),
                ("offset".into(), offset.to_string()),
                ("limit".into(), limit.to_string()),
            ])
        }
        Api::QueryMasterById => {
            let id = match params.get("dataId") {
                Some(Value::String(id)) if !id.is_empty() => id.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err("erp-standard: `dataId` (the ERP record id) is required".into()),
            };
            Ok(vec![
                ("objAPIName".into(), name),
                ("dataId".into(), id),
                ("includeDetail".into(), include.to_string()),
            ])
        }
        Api::Create | Api::Update => Err(format!("erp-standard: {} is not a query", api.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn settings() -> Settings {
        Settings::with_token("TOKEN-0123")
    }

    fn header<'a>(request: &'a WireRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn create_body_matches_the_seed() {
        let params = json!({"objAPIName": "SaleOrderObj",
            "masterFieldVal": {"billNo": "XSDD000001", "customerName": "上海华信机械有限公司"},
            "detailFieldVals": {"SaleOrderEntry": [{"productCode": "P001", "qty": "2"}]}});
        let request = build(&settings(), "http://erp.example.com/path/", "create", &params).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "http://erp.example.com/path/create");
        assert_eq!(header(&request, "token"), Some("TOKEN-0123"));
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, params);
        // Absent details are sent as an empty map.
        let bare = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"billNo": "1"}});
        let request = build(&settings(), "http://e", "create", &bare).unwrap();
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["detailFieldVals"], json!({}));
    }

    #[test]
    fn update_needs_the_id_field() {
        let params = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"billNo": "XSDD000001"}});
        let error = build(&settings(), "http://e", "update", &params).unwrap_err();
        assert!(error.contains("masterFieldVal.id"), "{error}");
        let params = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "100001", "billNo": "XSDD000001"}});
        let request = build(&settings(), "http://e", "update", &params).unwrap();
        assert_eq!(request.url, "http://e/update");
        let mut custom = settings();
        custom.id_field = Some("FID".into());
        custom.update_path = Some("https://other.example.com/erp/modify".into());
        let params = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"FID": 7}});
        let request = build(&custom, "http://e", "update", &params).unwrap();
        assert_eq!(request.url, "https://other.example.com/erp/modify");
    }

    #[test]
    fn write_bodies_are_checked() {
        let cases = [
            (json!({"masterFieldVal": {}}), "`objAPIName`"),
            (json!({"objAPIName": "A"}), "`masterFieldVal` must be an object"),
            (
                json!({"objAPIName": "A", "masterFieldVal": {}, "detailFieldVals": []}),
                "`detailFieldVals` must be an object",
            ),
            (
                json!({"objAPIName": "A", "masterFieldVal": {}, "detailFieldVals": {"E": [1]}}),
                "`detailFieldVals.E`",
            ),
        ];
        for (params, expected) in cases {
            let error = build(&settings(), "http://e", "create", &params).unwrap_err();
            assert!(error.contains(expected), "{params}: {error}");
        }
        assert!(build(&settings(), "http://e", "save", &json!({}))
            .unwrap_err()
            .contains("unknown api"));
        assert!(build(&Settings::with_token(""), "http://e", "create", &json!({}))
            .unwrap_err()
            .contains("token"));
    }

    #[test]
    fn batch_query_string_in_seed_order() {
        let start = millis(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap());
        let params = json!({"objAPIName": "SaleOrderObj", "startTime": start, "endTime": "1709337600000",
                            "offset": 200, "limit": 50});
        let request = build(&settings(), "http://erp/path", "queryMasterBatch", &params).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.body, None);
        assert_eq!(
            request.url,
            "http://erp/path/queryMasterBatch?objAPIName=SaleOrderObj&startTime=1709251200000&endTime=1709337600000&includeDetail=true&offset=200&limit=50"
        );
        assert_eq!(header(&request, "token"), Some("TOKEN-0123"));
        let defaults = json!({"objAPIName": "销售订单", "startTime": 0, "endTime": 1, "includeDetail": false});
        let request = build(&settings(), "http://erp", "queryMasterBatch", &defaults).unwrap();
        assert!(request.url.ends_with(
            "?objAPIName=%E9%94%80%E5%94%AE%E8%AE%A2%E5%8D%95&startTime=0&endTime=1&includeDetail=false&offset=0&limit=100"
        ), "{}", request.url);
    }

    #[test]
    fn batch_query_arguments_are_checked() {
        let cases = [
            (json!({"objAPIName": "A", "endTime": 1}), "`startTime`"),
            (
                json!({"objAPIName": "A", "startTime": 5, "endTime": 1}),
                "after endTime",
            ),
            (
                json!({"objAPIName": "A", "startTime": "x", "endTime": 1}),
                "whole number",
            ),
            (
                json!({"objAPIName": "A", "startTime": 0, "endTime": 1, "limit": 0}),
                "`limit`",
            ),
            (
                json!({"objAPIName": "A", "startTime": 0, "endTime": 1, "offset": -1}),
                "`offset`",
            ),
            (
                json!({"objAPIName": "A", "startTime": 0, "endTime": 1, "includeDetail": 1}),
                "`includeDetail`",
            ),
        ];
        for (params, expected) in cases {
            let error = build(&settings(), "http://e", "queryMasterBatch", &params).unwrap_err();
            assert!(error.contains(expected), "{params}: {error}");
        }
    }

    #[test]
    fn by_id_query() {
        let params = json!({"objAPIName": "SaleOrderObj", "dataId": "100 001"});
        let request = build(&settings(), "http://erp/", "queryMasterById", &params).unwrap();
        assert_eq!(
            request.url,
            "http://erp/queryMasterById?objAPIName=SaleOrderObj&dataId=100%20001&includeDetail=true"
        );
        let error = build(
            &settings(),
            "http://erp/",
            "queryMasterById",
            &json!({"objAPIName": "A"}),
        )
        .unwrap_err();
        assert!(error.contains("`dataId`"));
    }
}
