//! Fxiaoke answers (pure): verdicts, record locations, paging defaults and written ids.
//!
//! Fxiaoke answers HTTP 200 even for errors; the verdict comes from the body's `errorCode`
//! (an Int, accepted as digits in a string too), never from `errorMessage`, which may change.
//! The ERP integration platform's own family (`errCode == "s106240000"`, `errMsg`) is also
//! recognised. Codes handled:
//!
//! | code | verdict |
//! |---|---|
//! | 0 | `Ok` |
//! | 20016 (token missing or expired) | `SessionExpired`: refresh the token once and retry |
//! | 30004 (per-second frequency), 14001 (interface call limit), -1 (system busy) | `Throttled` |
//! | 30002 (daily quota), 30003 (no quota bought) | `Failed`, marked not retryable |
//! | anything else | `Failed` with the code, message and `traceId` |
//!
//! Writes here are one record per call (push, create), so [`row_outcomes`] is `None`; the
//! push answer carries no id, the record's own `id` (see [`pushed_id`]) is its identity.

use serde_json::Value;

use super::request::{CREATE_API, CUSTOM_QUERY_API, MAX_QUERY_LIMIT, PUSH_API, QUERY_API};
use super::sign::number_field;
use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// The ERP integration platform's success code (its `errCode` family).
pub const PLATFORM_SUCCESS: &str = "s106240000";
/// Codes that mean "slow down and retry".
pub const THROTTLE_CODES: &[i64] = &[30004, 14001, -1];
/// Codes that mean "the token is missing or expired: refresh once".
pub const SESSION_EXPIRED_CODES: &[i64] = &[20016];
/// Quota codes that retrying cannot fix.
pub const QUOTA_CODES: &[i64] = &[30002, 30003];

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

fn text_of(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The answer's `traceId` (keep it for support tickets).
pub fn trace_id(body: &Value) -> Option<String> {
    text_of(body, "traceId")
}

fn message_of(body: &Value, keys: &[&str]) -> String {
    let message = keys
        .iter()
        .find_map(|key| text_of(body, key))
        .unwrap_or_else(|| "no message".into());
    match trace_id(body).or_else(|| text_of(body, "traceMsg")) {
        Some(trace) => format!("{message} (traceId {trace})"),
        None => message,
    }
}

/// Judges one answer.
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    if http_status == 429 {
        return Verdict::Throttled(format!("HTTP 429: {}", message_of(body, &["errorMessage"])));
    }
    if !(200..300).contains(&http_status) {
        let preview: String = body.to_string().chars().take(160).collect();
        return Verdict::Failed {
            code: format!("HTTP {http_status}"),
            message: format!("Fxiaoke answers HTTP 200 even for errors, so HTTP {http_status} points at a proxy or a wrong base_url: {preview}"),
        };
    }
    if !body.is_object() {
        return Verdict::Failed {
            code: "not-json-object".into(),
            message: "the answer is not a JSON object; is base_url the API gateway (e.g. https://open.fxiaoke.com), not www.fxiaoke.com?".into(),
        };
    }
    if body.get("errorCode").is_some() {
        let Some(code) = number_field(body, "errorCode") else {
            return Verdict::Failed {
                code: text_of(body, "errorCode").unwrap_or_else(|| "unreadable".into()),
                message: format!("errorCode is not a number: {}", message_of(body, &["errorMessage"])),
            };
        };
        let message = message_of(body, &["errorMessage", "errorDescription"]);
        return classify_code(code, message);
    }
    if let Some(code) = text_of(body, "errCode") {
        if code == PLATFORM_SUCCESS {
            return Verdict::Ok;
        }
        return Verdict::Failed {
            code,
            message: message_of(body, &["errMsg"]),
        };
    }
    Verdict::Failed {
        code: "missing".into(),
        message: format!(
            "the answer has neither errorCode nor errCode: {}",
            body.to_string().chars().take(160).collect::<String>()
        ),
    }
}

fn classify_code(code: i64, message: String) -> Verdict {
    if code == 0 {
        Verdict::Ok
    } else if SESSION_EXPIRED_CODES.contains(&code) {
        Verdict::SessionExpired(format!("{code}: {message}; request a new token and retry once"))
    } else if THROTTLE_CODES.contains(&code) {
        Verdict::Throttled(format!("{code}: {message}"))
    } else if QUOTA_CODES.contains(&code) {
        let why = if code == 30002 {
            "the daily call quota is used up (it resets at 0:00)"
        } else {
            "the enterprise has bought no OpenAPI quota"
        };
        Verdict::Failed {
            code: code.to_string(),
            message: format!("{message}: {why}; retrying will not help, ask the enterprise administrator"),
        }
    } else {
        let hint = match code {
            20017 => "; no token was sent — the connector must send corpAccessToken (or the Bearer header)",
            20012 | 20014 | 30027 => "; check the operator (current_open_user_id / user_id) and its permissions",
            10013 => "; an offset over 10000 needs `_id` cursor paging with offset 0",
            50009 => "; a server-side timeout — the call may still have taken effect",
            _ => "",
        };
        Verdict::Failed {
            code: code.to_string(),
            message: format!("{message}{hint}"),
        }
    }
}

fn is_query(api: &str) -> bool {
    api == QUERY_API || api == CUSTOM_QUERY_API
}

/// Where the rows of a list answer are.
pub fn records_path(api: &str) -> Option<&'static str> {
    is_query(api).then_some("$.data.dataList[*]")
}

/// The query's paging: `offset` (a record offset, not a page number) and `limit` inside
/// `data.search_query_info`, at most 100 a page; `data.total` is present unless
/// `find_explicit_total_num` is false. Offsets stop at 10000.
pub fn default_paging(api: &str) -> Option<Paging> {
    is_query(api).then_some(Paging {
        style: PagingStyle::Offset,
        start: 0,
        size: MAX_QUERY_LIMIT,
        max_size: Some(MAX_QUERY_LIMIT),
        total_path: Some("$.data.total"),
        number_param: "search_query_info.offset",
        size_param: "search_query_info.limit",
        stop: None,
    })
}

/// Fxiaoke has no batch write among the supported apis: always `None`.
pub fn row_outcomes(_api: &str, _body: &Value, _rows_sent: usize) -> Option<Vec<RowOutcome>> {
    None
}

/// The id a one-record write returned: `dataId` for create. The push answer has none.
pub fn written_id(api: &str, body: &Value) -> Option<String> {
    if api == CREATE_API || api == "/cgi/crm/custom/v2/data/create" {
        return text_of(body, "dataId").or_else(|| body.get("data").and_then(|data| text_of(data, "dataId")));
    }
    None
}

/// The identity of a pushed record: the `id` it was sent with (standard format only).
pub fn pushed_id(data: &Value) -> Option<String> {
    text_of(data, "id")
}

/// The outcome of one push: written under the record's own `id`, or refused with the
/// vendor's message. Throttling and token expiry are not row outcomes; `None` then.
pub fn push_outcome(api: &str, body: &Value, data: &Value) -> Option<RowOutcome> {
    if api != PUSH_API {
        return None;
    }
    match classify(200, body) {
        Verdict::Ok => Some(RowOutcome::written(pushed_id(data))),
        Verdict::Failed { code, message } => Some(RowOutcome::Failed {
            message: format!("{code}: {message}"),
            class: "rejected",
        }),
        Verdict::Throttled(_) | Verdict::SessionExpired(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_in_both_families() {
        // Seed example answer of the push api.
        let push =
            json!({"traceId": "E-O.827xxxxxx", "errorDescription": "success", "errorMessage": "OK", "errorCode": 0});
        assert_eq!(classify(200, &push), Verdict::Ok);
        assert_eq!(classify(200, &json!({"errorCode": "0"})), Verdict::Ok);
        assert_eq!(
            classify(200, &json!({"errCode": "s106240000", "errMsg": "Success"})),
            Verdict::Ok
        );
    }

    #[test]
    fn token_expiry_asks_for_a_refresh() {
        // The gateway's real answer to a forged token (probe in S-FX-SKILL).
        let body = json!({"traceId": "E-O.null.-1000-1", "errorMessage": "the cropId,cropAccessToken or authorization is error", "errorCode": 20016});
        match classify(200, &body) {
            Verdict::SessionExpired(message) => {
                assert!(
                    message.contains("20016") && message.contains("E-O.null.-1000-1"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttle_codes() {
        for code in [30004, 14001, -1] {
            let verdict = classify(200, &json!({"errorCode": code, "errorMessage": "秒频次超限"}));
            assert!(
                matches!(verdict, Verdict::Throttled(ref m) if m.contains(&code.to_string())),
                "{verdict:?}"
            );
        }
        assert!(matches!(classify(429, &json!({})), Verdict::Throttled(_)));
    }

    #[test]
    fn quota_failures_say_they_are_not_retryable() {
        for code in [30002, 30003] {
            match classify(200, &json!({"errorCode": code, "errorMessage": "当天访问频次超限"})) {
                Verdict::Failed { code: got, message } => {
                    assert_eq!(got, code.to_string());
                    assert!(message.contains("retrying will not help"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn other_failures_keep_code_message_and_trace() {
        let body = json!({"traceId": "E-O.null.-1000-2", "errorMessage": "corpAccessToken为必填项，不能为空", "errorCode": 20017});
        match classify(200, &body) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "20017");
                assert!(message.contains("corpAccessToken为必填项") && message.contains("E-O.null.-1000-2"));
                assert!(message.contains("no token was sent"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(200, &json!({"errCode": "s106240001", "errMsg": "参数错误"})),
            Verdict::Failed {
                code: "s106240001".into(),
                message: "参数错误".into()
            }
        );
        assert!(matches!(
            classify(200, &json!({"errorCode": "x"})),
            Verdict::Failed { .. }
        ));
        assert!(matches!(classify(200, &json!({"ok": true})), Verdict::Failed { ref code, .. } if code == "missing"));
        assert!(
            matches!(classify(200, &json!("<html>")), Verdict::Failed { ref message, .. } if message.contains("www.fxiaoke.com"))
        );
        assert!(matches!(classify(502, &json!(null)), Verdict::Failed { ref code, .. } if code == "HTTP 502"));
    }

    #[test]
    fn query_defaults() {
        assert_eq!(records_path(QUERY_API), Some("$.data.dataList[*]"));
        assert_eq!(records_path(CUSTOM_QUERY_API), Some("$.data.dataList[*]"));
        assert_eq!(records_path(PUSH_API), None);
        let paging = default_paging(QUERY_API).unwrap();
        assert_eq!(
            (paging.style, paging.start, paging.size, paging.max_size),
            (PagingStyle::Offset, 0, 100, Some(100))
        );
        assert_eq!(paging.number_param, "search_query_info.offset");
        assert_eq!(paging.total_path, Some("$.data.total"));
        assert_eq!(default_paging(PUSH_API), None);
    }

    #[test]
    fn written_ids() {
        let created = json!({"errorCode": 0, "errorMessage": "OK", "dataId": "5f1a2b3c4d5e6f7a8b9c0d1e"});
        assert_eq!(
            written_id(CREATE_API, &created).as_deref(),
            Some("5f1a2b3c4d5e6f7a8b9c0d1e")
        );
        assert_eq!(written_id(PUSH_API, &created), None);
        assert_eq!(row_outcomes(PUSH_API, &created, 1), None);
        let data = json!({"id": "111", "masterFieldVal": {}});
        assert_eq!(pushed_id(&data).as_deref(), Some("111"));
        assert_eq!(
            push_outcome(PUSH_API, &json!({"errorCode": 0}), &data),
            Some(RowOutcome::written(Some("111".into())))
        );
        assert!(matches!(
            push_outcome(
                PUSH_API,
                &json!({"errorCode": 32000, "errorMessage": "参数错误"}),
                &data
            ),
            Some(RowOutcome::Failed { class: "rejected", .. })
        ));
        assert_eq!(push_outcome(PUSH_API, &json!({"errorCode": 30004}), &data), None);
        assert_eq!(push_outcome(QUERY_API, &json!({"errorCode": 0}), &data), None);
    }
}
