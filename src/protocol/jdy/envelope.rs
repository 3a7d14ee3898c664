//! Pure answer handling for jdy: verdicts, where list rows live, paging defaults, the
//! `count` check and per-row write results.
//!
//! Envelopes seen in the wild, all accepted:
//! * v2 business and token calls: `{"errcode":0,"description":"success","data":{…}}`, errors
//!   with a non-zero `errcode` and `description` / `description_cn`;
//! * `push_app_authorize` sometimes answers `{"code":0,"msg":"…","data":[…]}` instead
//!   (`code` 200 is also read as success, an inference);
//! * v1: `{"success":true,"data":{"rows":[…]}}`, errors with `success:false` and whatever
//!   code/message fields come along;
//! * gateway failures use HTTP 519 and are reported with their own message.
//!
//! Verdict order: HTTP 429 or a configured throttle code → `Throttled`; a session-expiry code
//! (default `1030002006`, 授权密钥失效) or HTTP 401 → `SessionExpired`; a success marker with
//! a 2xx status → `Ok`; everything else → `Failed` with the vendor's code and message.

use serde_json::Value;

use super::Settings;
use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

fn is_auth_api(api: &str) -> bool {
    [
        "push_app_authorize",
        "kingdee_auth_token",
        "access_token",
        "accountGroup",
    ]
    .iter()
    .any(|name| api.contains(name))
}

fn is_detail_api(api: &str) -> bool {
    api.trim_end_matches('/').ends_with("_detail")
}

fn is_v1_list_api(api: &str) -> bool {
    api.trim_end_matches('/').ends_with("_list")
}

/// JSONPath of the records in a read answer: `$.data.rows[*]` for lists, `$.data` for a
/// `_detail`, `None` for the token calls.
pub fn records_path(api: &str) -> Option<&'static str> {
    if is_auth_api(api) {
        None
    } else if is_detail_api(api) {
        Some("$.data")
    } else {
        Some("$.data.rows[*]")
    }
}

/// Paging of a list api: `page` from 1, 100 rows (the server's silent cap). v2 uses
/// `page_size` and reports `data.count`; v1 lists (`…_list`) use `pagesize`.
pub fn default_paging(api: &str) -> Option<Paging> {
    if is_auth_api(api) || is_detail_api(api) {
        return None;
    }
    let v1 = is_v1_list_api(api);
    Some(Paging {
        style: PagingStyle::PageNumber,
        start: 1,
        size: super::DEFAULT_PAGE_SIZE_CAP,
        max_size: Some(super::DEFAULT_PAGE_SIZE_CAP),
        total_path: if v1 { None } else { Some("$.data.count") },
        number_param: "page",
        size_param: if v1 { "pagesize" } else { "page_size" },
        stop: None,
    })
}

/// Checks after the last page that the rows seen match the server's `count` (a string such
/// as `"250"`; numbers are accepted too). A null `count` cannot be checked and passes.
pub fn verify_count(count: &Value, rows_seen: u64) -> Result<(), String> {
    let reported = match count {
        Value::Null => return Ok(()),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
    .ok_or_else(|| format!("jdy reported count {count}, which is not a whole number"))?;
    if reported == rows_seen {
        return Ok(());
    }
    Err(format!(
        "jdy reported count {reported} but {rows_seen} rows arrived. Keep page_size at 100 or less \
         (the server clamps larger pages silently and skips rows); if records changed during the \
         read, run the window again"
    ))
}

/// The vendor's code as text, from `errcode`, `code`, `errCode` or `error_code`.
pub fn code_of(body: &Value) -> Option<String> {
    ["errcode", "code", "errCode", "error_code"]
        .iter()
        .find_map(|key| match body.get(*key)? {
            Value::Number(number) => Some(number.to_string()),
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            _ => None,
        })
}

/// The vendor's message, from `description`, `description_cn`, `msg`, `message`, `errmsg`
/// or `error`; empty when there is none.
pub fn message_of(body: &Value) -> String {
    ["description", "description_cn", "msg", "message", "errmsg", "error"]
        .iter()
        .find_map(|key| match body.get(*key)? {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .unwrap_or_default()
}

/// Judges an answer with the default codes (see [`classify_with`]).
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    let throttle: Vec<&str> = super::DEFAULT_THROTTLE_CODES.to_vec();
    let session: Vec<&str> = super::DEFAULT_SESSION_EXPIRED_CODES.to_vec();
    classify_codes(&throttle, &session, http_status, body)
}

/// Judges an answer using the settings' throttle and session-expiry codes.
pub fn classify_with(settings: &Settings, http_status: u16, body: &Value) -> Verdict {
    classify_codes(
        &settings.throttle_codes(),
        &settings.session_expired_codes(),
        http_status,
        body,
    )
}

fn classify_codes<T: AsRef<str>>(throttle: &[T], session: &[T], http_status: u16, body: &Value) -> Verdict {
    let code = code_of(body);
    let message = message_of(body);
    let listed = |codes: &[T]| code.as_deref().is_some_and(|c| codes.iter().any(|x| x.as_ref() == c));
    let described = |fallback: &str| {
        if message.is_empty() {
            fallback.to_owned()
        } else {
            message.clone()
        }
    };
    if http_status == 429 || listed(throttle) {
        return Verdict::Throttled(described("jdy asked to slow down"));
    }
    if listed(session) || http_status == 401 {
        return Verdict::SessionExpired(described("jdy authorization expired; pull the authorization again"));
    }
    let transport_ok = (200..300).contains(&http_status);
    let success = match body.get("success") {
        Some(Value::Bool(flag)) => Some(*flag),
        _ => code
            .as_deref()
            .map(|c| c == "0" || (c == "200" && body.get("errcode").is_none())),
    };
    match (transport_ok, success) {
        (true, Some(true)) => Verdict::Ok,
        (_, Some(false)) | (false, Some(true)) => Verdict::Failed {
            code: code.unwrap_or_else(|| format!("http {http_status}")),
            message: with_status(http_status, described("jdy reported a failure without a message")),
        },
        (false, None) => Verdict::Failed {
            code: format!("http {http_status}"),
            message: with_status(
                http_status,
                described(&format!("HTTP {http_status} without a jdy envelope: {}", snippet(body))),
            ),
        },
        (true, None) => Verdict::Failed {
            code: "no-envelope".to_owned(),
            message: format!(
                "the answer has no errcode/code/success field, so success cannot be judged: {}",
                snippet(body)
            ),
        },
    }
}

fn with_status(http_status: u16, message: String) -> String {
    if http_status == 519 {
        format!("API gateway rejected the call (HTTP 519): {message}. Check the X-Api-* signature, the client id/secret and the clock")
    } else {
        message
    }
}

fn snippet(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn is_write_api(api: &str) -> bool {
    !(is_auth_api(api) || is_detail_api(api) || is_v1_list_api(api))
}

/// The ids a save answer returned: `data.ids[]`, else the keys of `data.id_number_map`,
/// else `data.id`.
fn returned_ids(body: &Value) -> Vec<String> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let text = |value: &Value| match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    if let Some(ids) = data.get("ids").and_then(Value::as_array) {
        if !ids.is_empty() {
            return ids.iter().filter_map(text).collect();
        }
    }
    if let Some(map) = data.get("id_number_map").and_then(Value::as_object) {
        if !map.is_empty() {
            return map.keys().cloned().collect();
        }
    }
    data.get("id").and_then(text).into_iter().collect()
}

/// Per-row results of a save. jdy saves one bill per call, so `rows_sent` is normally 1;
/// returned ids are matched to rows in order. A refused save fails every row sent as
/// `rejected`. `None` for read-only apis (`_detail`, v1 `_list`, token calls).
pub fn row_outcomes(api: &str, body: &Value, rows_sent: usize) -> Option<Vec<RowOutcome>> {
    if !is_write_api(api) {
        return None;
    }
    let outcomes = match classify(200, body) {
        Verdict::Ok => {
            let ids = returned_ids(body);
            (0..rows_sent)
                .map(|row| RowOutcome::Written {
                    details: None,
                    target_id: if ids.len() == rows_sent {
                        ids.get(row).cloned()
                    } else {
                        None
                    },
                })
                .collect()
        }
        Verdict::Failed { code, message } => {
            let class = if code == "no-envelope" {
                crate::protocol::UNMATCHED_ANSWER
            } else {
                "rejected"
            };
            let mut text = format!("[{code}] {message}");
            if let Some(chinese) = body.get("description_cn").and_then(Value::as_str) {
                if !text.contains(chinese) {
                    text.push_str(&format!(" ({chinese})"));
                }
            }
            vec![RowOutcome::Failed { message: text, class }; rows_sent]
        }
        Verdict::Throttled(message) | Verdict::SessionExpired(message) => vec![
            RowOutcome::Failed {
                message: format!("not saved, retry: {message}"),
                class: crate::protocol::UNMATCHED_ANSWER,
            };
            rows_sent
        ],
    };
    Some(outcomes)
}

/// The id of the bill a one-row save wrote.
pub fn written_id(api: &str, body: &Value) -> Option<String> {
    if !is_write_api(api) || classify(200, body) != Verdict::Ok {
        return None;
    }
    returned_ids(body).into_iter().next()
}

/// The bill number a save assigned (`data.id_number_map[id]`), handy when jdy numbered it.
pub fn written_number(body: &Value, id: &str) -> Option<String> {
    body.pointer("/data/id_number_map")?
        .get(id)?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed(code: &str) -> impl Fn(&Verdict) -> bool + '_ {
        move |verdict| matches!(verdict, Verdict::Failed { code: c, .. } if c == code)
    }

    #[test]
    fn success_in_every_spelling() {
        let v2 = json!({"errcode": 0, "description": "success", "data": {"count": "1", "rows": []}});
        assert_eq!(classify(200, &v2), Verdict::Ok);
        assert_eq!(
            classify(200, &json!({"errcode": "0", "description": "成功"})),
            Verdict::Ok
        );
        assert_eq!(classify(200, &json!({"code": 0, "msg": "ok", "data": []})), Verdict::Ok);
        assert_eq!(
            classify(200, &json!({"code": 200, "msg": "ok", "data": []})),
            Verdict::Ok
        );
        assert_eq!(
            classify(200, &json!({"success": true, "data": {"rows": []}})),
            Verdict::Ok
        );
    }

    #[test]
    fn failures_keep_code_and_message() {
        let system = json!({"errcode": 2000002000, "description": "系统异常"});
        assert_eq!(
            classify(200, &system),
            Verdict::Failed {
                code: "2000002000".to_owned(),
                message: "系统异常".to_owned()
            }
        );
        let save = json!({"errcode": 1000, "description": "supplier required", "description_cn": "供应商不能为空"});
        assert!(failed("1000")(&classify(200, &save)));
        let v1 = json!({"success": false, "msg": "单据不存在"});
        assert!(
            matches!(classify(200, &v1), Verdict::Failed { code, message } if code == "http 200" && message == "单据不存在")
        );
        let code_msg = json!({"code": 500, "msg": "bad outerInstanceId"});
        assert!(failed("500")(&classify(200, &code_msg)));
        assert!(failed("no-envelope")(&classify(200, &json!({"rows": []}))));
        assert!(failed("http 502")(&classify(502, &Value::Null)));
        // errcode 0 with a failing transport is still a failure.
        assert!(matches!(classify(500, &json!({"errcode": 0})), Verdict::Failed { .. }));
    }

    #[test]
    fn gateway_519_is_recognised() {
        let verdict = classify(519, &json!({"errcode": 519, "description": "签名校验失败"}));
        match verdict {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "519");
                assert!(
                    message.contains("HTTP 519") && message.contains("签名校验失败"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(519, &Value::Null), Verdict::Failed { code, .. } if code == "http 519"));
    }

    #[test]
    fn session_expiry_and_throttling() {
        let expired = json!({"errcode": 1030002006, "description": "授权密钥失效"});
        assert_eq!(
            classify(200, &expired),
            Verdict::SessionExpired("授权密钥失效".to_owned())
        );
        assert!(matches!(
            classify(401, &json!({"success": false})),
            Verdict::SessionExpired(_)
        ));
        assert!(matches!(classify(429, &json!({"errcode": 429})), Verdict::Throttled(_)));
        let odd = json!({"errcode": 1030002099, "description": "too many"});
        assert!(matches!(classify(200, &odd), Verdict::Failed { .. }));
        let mut settings = super::super::Settings::v2("c", "s", "o");
        settings.throttle_codes = Some(vec!["1030002099".to_owned()]);
        settings.session_expired_codes = Some(vec!["42".to_owned()]);
        assert_eq!(
            classify_with(&settings, 200, &odd),
            Verdict::Throttled("too many".to_owned())
        );
        assert!(matches!(
            classify_with(&settings, 200, &json!({"code": "42"})),
            Verdict::SessionExpired(_)
        ));
        assert!(matches!(
            classify_with(&settings, 200, &expired),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn records_and_paging_per_api() {
        assert_eq!(records_path("scm/pur_inbound"), Some("$.data.rows[*]"));
        assert_eq!(records_path("scm/pur_inbound_detail"), Some("$.data"));
        assert_eq!(records_path("pur/pur_inbound_list"), Some("$.data.rows[*]"));
        assert_eq!(records_path("/jdyconnector/app_management/kingdee_auth_token"), None);
        let v2 = default_paging("scm/pur_inbound").unwrap();
        assert_eq!(
            (v2.size_param, v2.size, v2.max_size, v2.start),
            ("page_size", 100, Some(100), 1)
        );
        assert_eq!(v2.total_path, Some("$.data.count"));
        assert_eq!(default_paging("pur/pur_inbound_list").unwrap().size_param, "pagesize");
        assert!(default_paging("scm/pur_inbound_detail").is_none());
    }

    #[test]
    fn count_is_a_string_and_must_match() {
        assert!(verify_count(&json!("250"), 250).is_ok());
        assert!(verify_count(&json!(3), 3).is_ok());
        assert!(verify_count(&Value::Null, 7).is_ok());
        let lost = verify_count(&json!("250"), 100).unwrap_err();
        assert!(
            lost.contains("250") && lost.contains("100") && lost.contains("page_size"),
            "{lost}"
        );
        assert!(verify_count(&json!("lots"), 1).is_err());
    }

    #[test]
    fn save_outcomes() {
        let ok = json!({"errcode": 0, "description": "success",
            "data": {"ids": ["1700000000000001001"], "id_number_map": {"1700000000000001001": "CGRK-20240301-0001"}}});
        assert_eq!(
            row_outcomes("scm/pur_inbound", &ok, 1),
            Some(vec![RowOutcome::written(Some("1700000000000001001".to_owned()))])
        );
        assert_eq!(
            written_id("scm/pur_inbound", &ok).as_deref(),
            Some("1700000000000001001")
        );
        assert_eq!(
            written_number(&ok, "1700000000000001001").as_deref(),
            Some("CGRK-20240301-0001")
        );
        let map_only = json!({"errcode": 0, "data": {"id_number_map": {"77": "N"}}});
        assert_eq!(written_id("scm/pur_inbound", &map_only).as_deref(), Some("77"));
        let refused =
            json!({"errcode": 1000, "description": "material_entity is empty", "description_cn": "商品分录不能为空"});
        match row_outcomes("scm/pur_inbound", &refused, 1).unwrap().as_slice() {
            [RowOutcome::Failed { message, class }] => {
                assert_eq!(*class, "rejected");
                assert!(
                    message.contains("1000") && message.contains("商品分录不能为空"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(written_id("scm/pur_inbound", &refused), None);
        let two = json!({"errcode": 0, "data": {"ids": ["1", "2"]}});
        assert_eq!(
            row_outcomes("scm/pur_inbound", &two, 2).unwrap()[1],
            RowOutcome::written(Some("2".to_owned()))
        );
        assert!(row_outcomes("scm/pur_inbound_detail", &ok, 1).is_none());
        assert!(matches!(
            row_outcomes("scm/pur_inbound", &json!({"errcode": 1030002006}), 1).unwrap()[0],
            RowOutcome::Failed {
                class: crate::protocol::UNMATCHED_ANSWER,
                ..
            }
        ));
    }
}
