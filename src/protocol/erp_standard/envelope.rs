//! Answers of the standard interface (pure).
//!
//! Two reply families are recognised, and a code may be a string or a number:
//! * `{"code", "message", "data"}` (seed 000 for create / update / queries): success when `code`
//!   is one of the configured success codes (default `"0"` or `"s106240000"`);
//! * `{"errCode", "errMsg", "traceMsg"}` (the platform's own family): success when `errCode` is
//!   `"s106240000"` (or a configured success code).
//!
//! HTTP 429 and the configured throttle codes are `Throttled`. The token is static, so nothing
//! is `SessionExpired`; a refused token is a `Failed` the operator must fix. Writes are one
//! record per call: the id is `data.masterDataId`, the detail ids `data.detailDataIds`.

use serde_json::Value;

use super::{Api, Settings, DEFAULT_SUCCESS_CODES};
use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// The platform's success literal.
pub const PLATFORM_SUCCESS: &str = "s106240000";

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

/// A code or message as text: strings as they are, numbers in decimal.
fn text_of(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Judges an answer with the default success codes and no throttle codes.
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    judge(http_status, body, DEFAULT_SUCCESS_CODES, &[])
}

/// Judges an answer with the connection's success and throttle codes.
pub fn classify_with(settings: &Settings, http_status: u16, body: &Value) -> Verdict {
    judge(http_status, body, &settings.success_codes(), &settings.throttle_codes())
}

fn judge(http_status: u16, body: &Value, success: &[&str], throttle: &[&str]) -> Verdict {
    let family = if body.get("errCode").is_some() {
        Some((
            text_of(body, "errCode"),
            text_of(body, "errMsg"),
            text_of(body, "traceMsg"),
        ))
    } else if body.get("code").is_some() {
        Some((text_of(body, "code"), text_of(body, "message"), None))
    } else {
        None
    };
    let described = |message: Option<String>, trace: Option<String>| {
        let message = message.filter(|m| !m.is_empty()).unwrap_or_else(|| "no message".into());
        match trace.filter(|t| !t.is_empty()) {
            Some(trace) => format!("{message} (traceMsg {trace})"),
            None => message,
        }
    };
    if http_status == 429 {
        let message = family.map(|(_, message, trace)| described(message, trace));
        return Verdict::Throttled(format!(
            "HTTP 429: {}",
            message.unwrap_or_else(|| "too many requests".into())
        ));
    }
    let Some((code, message, trace)) = family else {
        let preview: String = body.to_string().chars().take(160).collect();
        return Verdict::Failed {
            code: if (200..300).contains(&http_status) {
                "missing".into()
            } else {
                format!("HTTP {http_status}")
            },
            message: format!("the answer has neither `code` nor `errCode`: {preview}"),
        };
    };
    let code = code.unwrap_or_default();
    let ok = code == PLATFORM_SUCCESS || success.contains(&code.as_str());
    if ok && (200..300).contains(&http_status) {
        return Verdict::Ok;
    }
    let message = described(message, trace);
    if throttle.contains(&code.as_str()) {
        return Verdict::Throttled(format!("{code}: {message}"));
    }
    let lowered = message.to_lowercase();
    let hint = if lowered.contains("token") || http_status == 401 || http_status == 403 {
        "; check the connection's `token` (the ERP side's authentication string)"
    } else {
        ""
    };
    Verdict::Failed {
        // A success code on an HTTP error status names the status instead.
        code: if code.is_empty() || ok {
            format!("HTTP {http_status}")
        } else {
            code
        },
        message: format!("{message}{hint}"),
    }
}

/// Where the rows of a query answer are.
pub fn records_path(api: &str) -> Option<&'static str> {
    match Api::parse(api)? {
        Api::QueryMasterBatch => Some("$.data.dataList[*]"),
        Api::QueryMasterById => Some("$.data"),
        Api::Create | Api::Update => None,
    }
}

/// `queryMasterBatch` pages by record `offset` and `limit` (from 0), with `data.totalNum`.
/// The page size cap is not documented [UNK]; the default is 100.
pub fn default_paging(api: &str) -> Option<Paging> {
    (Api::parse(api)? == Api::QueryMasterBatch).then_some(Paging {
        style: PagingStyle::Offset,
        start: 0,
        size: super::DEFAULT_PAGE_SIZE,
        max_size: None,
        total_path: Some("$.data.totalNum"),
        number_param: "offset",
        size_param: "limit",
        stop: None,
    })
}

/// `data.totalNum` of a batch answer (the seed shows it as a string).
pub fn total_num(body: &Value) -> Option<u64> {
    match body.get("data")?.get("totalNum")? {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// The standard interface writes one record per call: always `None`.
pub fn row_outcomes(_api: &str, _body: &Value, _rows_sent: usize) -> Option<Vec<RowOutcome>> {
    None
}

/// `data.masterDataId` of a create or update answer.
pub fn written_id(api: &str, body: &Value) -> Option<String> {
    if !Api::parse(api).is_some_and(Api::is_write) {
        return None;
    }
    text_of(body.get("data")?, "masterDataId").filter(|id| !id.is_empty())
}

/// `data.detailDataIds` as (detail name, ids) pairs. The seed shows a flat map whose shape it
/// does not explain, so a value may be one id or a list of ids.
pub fn detail_ids(body: &Value) -> Vec<(String, Vec<String>)> {
    let Some(Value::Object(map)) = body.get("data").and_then(|data| data.get("detailDataIds")) else {
        return Vec::new();
    };
    let as_text = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    map.iter()
        .map(|(name, ids)| {
            let ids = match ids {
                Value::Array(items) => items.iter().filter_map(as_text).collect(),
                single => as_text(single).into_iter().collect(),
            };
            (name.clone(), ids)
        })
        .collect()
}

/// Puts `data.detailDataIds` on the written row of a create / update. [INF] Seed 000 shows
/// `detailDataIds` as an object without saying what it holds; Ferry reads it as
/// `{"<detail apiName>": [ids of that detail's rows, in row order]}` (a single id for a
/// one-row detail), and matches a detail apiName to the list of the written row with that
/// name (`detailFieldVals.<apiName>`).
pub fn attach_detail_ids(api: &str, body: &Value, lists: &[crate::protocol::DetailList], outcomes: &mut [RowOutcome]) {
    if lists.is_empty() || !Api::parse(api).is_some_and(Api::is_write) {
        return;
    }
    let [RowOutcome::Written { details, .. }] = outcomes else {
        return;
    };
    let answered = detail_ids(body);
    if answered.is_empty() {
        return;
    }
    let mut ids = crate::protocol::DetailIds::new();
    for list in lists {
        if let Some((_, row_ids)) = answered.iter().find(|(name, _)| name == list.name()) {
            ids.insert(list.key(), row_ids.iter().cloned().map(Value::String).collect());
        }
    }
    *details = Some(ids);
}

/// The outcome of one create / update: written with its `masterDataId`, or refused.
/// Throttling is not a row outcome; `None` then (and for query apis).
pub fn write_outcome(settings: &Settings, api: &str, http_status: u16, body: &Value) -> Option<RowOutcome> {
    if !Api::parse(api).is_some_and(Api::is_write) {
        return None;
    }
    match classify_with(settings, http_status, body) {
        Verdict::Ok => Some(match written_id(api, body) {
            Some(id) => RowOutcome::written(Some(id)),
            None if api == Api::Update.name() => RowOutcome::written(None),
            None => RowOutcome::Failed {
                message: "the ERP reported success but returned no data.masterDataId".into(),
                class: crate::protocol::UNMATCHED_ANSWER,
            },
        }),
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
    fn code_family() {
        let created = json!({"code": "0", "message": "成功", "data": {"masterDataId": "100001",
            "detailDataIds": {"SaleOrderEntry": ["100001-1", "100001-2"]}}});
        assert_eq!(classify(200, &created), Verdict::Ok);
        assert_eq!(classify(200, &json!({"code": 0, "message": "ok"})), Verdict::Ok);
        assert_eq!(classify(200, &json!({"code": "s106240000"})), Verdict::Ok);
        assert_eq!(
            classify(
                200,
                &json!({"code": "E1001", "message": "客户编码不存在", "data": null})
            ),
            Verdict::Failed {
                code: "E1001".into(),
                message: "客户编码不存在".into()
            }
        );
    }

    #[test]
    fn err_code_family() {
        assert_eq!(
            classify(200, &json!({"errCode": "s106240000", "errMsg": "Success"})),
            Verdict::Ok
        );
        match classify(
            200,
            &json!({"errCode": "s306240003", "errMsg": "数据格式错误", "traceMsg": "tr-9"}),
        ) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "s306240003");
                assert_eq!(message, "数据格式错误 (traceMsg tr-9)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configured_codes() {
        let mut settings = Settings::with_token("t");
        settings.success_codes = Some(vec!["200".into()]);
        settings.throttle_codes = Some(vec!["E429".into()]);
        assert_eq!(classify_with(&settings, 200, &json!({"code": 200})), Verdict::Ok);
        assert!(matches!(
            classify_with(&settings, 200, &json!({"code": "0"})),
            Verdict::Failed { .. }
        ));
        assert!(matches!(
            classify_with(&settings, 200, &json!({"code": "E429", "message": "忙"})),
            Verdict::Throttled(_)
        ));
        // The platform literal is always success.
        assert_eq!(
            classify_with(&settings, 200, &json!({"errCode": "s106240000"})),
            Verdict::Ok
        );
    }

    #[test]
    fn transport_and_token_failures() {
        assert!(
            matches!(classify(429, &json!({"code": "429", "message": "请求过于频繁"})), Verdict::Throttled(ref m) if m.contains("请求过于频繁"))
        );
        match classify(200, &json!({"code": "401", "message": "token 校验失败"})) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "401");
                assert!(message.contains("check the connection's `token`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(500, &json!({"code": "0"})), Verdict::Failed { ref code, .. } if code == "HTTP 500"));
        assert!(matches!(classify(502, &json!("bad gateway")), Verdict::Failed { ref code, .. } if code == "HTTP 502"));
        assert!(matches!(classify(200, &json!({"data": {}})), Verdict::Failed { ref code, .. } if code == "missing"));
    }

    #[test]
    fn paths_paging_and_totals() {
        assert_eq!(records_path("queryMasterBatch"), Some("$.data.dataList[*]"));
        assert_eq!(records_path("queryMasterById"), Some("$.data"));
        assert_eq!(records_path("create"), None);
        let paging = default_paging("queryMasterBatch").unwrap();
        assert_eq!((paging.style, paging.start, paging.size), (PagingStyle::Offset, 0, 100));
        assert_eq!((paging.number_param, paging.size_param), ("offset", "limit"));
        assert_eq!(paging.total_path, Some("$.data.totalNum"));
        assert_eq!(default_paging("queryMasterById"), None);
        assert_eq!(total_num(&json!({"data": {"totalNum": "1234"}})), Some(1234));
        assert_eq!(total_num(&json!({"data": {"totalNum": 7}})), Some(7));
        assert_eq!(total_num(&json!({"data": {}})), None);
    }

    #[test]
    fn written_ids_and_outcomes() {
        let settings = Settings::with_token("t");
        let created = json!({"code": "0", "message": "成功", "data": {"masterDataId": 100001,
            "detailDataIds": {"SaleOrderEntry": ["100001-1", "100001-2"], "Other": "9"}}});
        assert_eq!(written_id("create", &created).as_deref(), Some("100001"));
        assert_eq!(written_id("queryMasterById", &created), None);
        assert_eq!(
            detail_ids(&created),
            [
                (
                    "SaleOrderEntry".to_string(),
                    vec!["100001-1".to_string(), "100001-2".to_string()]
                ),
                ("Other".to_string(), vec!["9".to_string()])
            ]
        );
        assert_eq!(row_outcomes("create", &created, 1), None);
        let lists = [crate::protocol::DetailList {
            path: vec!["detailFieldVals".into(), "SaleOrderEntry".into()],
            id_field: "id".into(),
        }];
        let mut outcomes = vec![write_outcome(&settings, "create", 200, &created).unwrap()];
        attach_detail_ids("create", &created, &lists, &mut outcomes);
        assert_eq!(
            outcomes[0],
            RowOutcome::Written {
                target_id: Some("100001".into()),
                details: Some(
                    [(
                        "detailFieldVals.SaleOrderEntry".to_string(),
                        vec![json!("100001-1"), json!("100001-2")]
                    )]
                    .into()
                ),
            }
        );
        assert_eq!(
            write_outcome(&settings, "create", 200, &created),
            Some(RowOutcome::written(Some("100001".into())))
        );
        assert!(matches!(
            write_outcome(&settings, "create", 200, &json!({"code": "0", "data": {}})),
            Some(RowOutcome::Failed {
                class: crate::protocol::UNMATCHED_ANSWER,
                ..
            })
        ));
        assert_eq!(
            write_outcome(&settings, "update", 200, &json!({"code": "0", "data": {}})),
            Some(RowOutcome::written(None))
        );
        assert!(matches!(
            write_outcome(
                &settings,
                "update",
                200,
                &json!({"code": "E2", "message": "数据不存在"})
            ),
            Some(RowOutcome::Failed { class: "rejected", .. })
        ));
        assert_eq!(write_outcome(&settings, "create", 429, &json!({})), None);
        assert_eq!(write_outcome(&settings, "queryMasterBatch", 200, &created), None);
    }
}
