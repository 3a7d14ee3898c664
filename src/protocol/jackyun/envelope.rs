//! Pure reading of Jackyun answers: the verdict, where list rows sit, how lists page,
//! and what a write returned.
//!
//! Envelope: `{"code":..,"msg":"..","subCode":..,"result":{"data":..}}`, business
//! errors with HTTP 200. Success is a code from [`Rules::success_codes`] (200 and 0 by
//! default; `code` may be a number or a string) together with a `subCode` that is
//! missing, null, empty or all zeros. HTTP 429 is always "throttled"; other throttle
//! and token-expiry codes are unknown and come from the settings.
//!
//! Writes (`crm.customer.add`, …) take one record per call, so they have no per-row
//! batch shape: [`row_outcomes`] is `None` and [`row_outcome`] turns one call's verdict
//! into one row's outcome.

use serde_json::Value;

use super::DEFAULT_PAGE_SIZE;
use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

/// Which envelope codes mean what. Codes are compared as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `code` values meaning success.
    pub success_codes: Vec<String>,
    /// `code` or `subCode` values meaning "slow down".
    pub throttle_codes: Vec<String>,
    /// `code` or `subCode` values meaning the token expired.
    pub session_codes: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            success_codes: super::DEFAULT_SUCCESS_CODES.iter().map(|c| c.to_string()).collect(),
            throttle_codes: Vec::new(),
            session_codes: Vec::new(),
        }
    }
}

/// Rows key per list method: rows sit at `result.data.<key>`; `None` means
/// `result.data` itself is the list.
const ROW_KEYS: &[(&str, Option<&str>, &str)] = &[
    ("erp.storage.goodslist", Some("goods"), "$.result.data.goods[*]"),
    (
        "erp.warehouse.get",
        Some("warehouseInfo"),
        "$.result.data.warehouseInfo[*]",
    ),
    (
        "erp.sales.get",
        Some("salesChannelInfo"),
        "$.result.data.salesChannelInfo[*]",
    ),
    (
        "erp.logistic.get",
        Some("logisticInfo"),
        "$.result.data.logisticInfo[*]",
    ),
    ("oms.trade.fullinfoget", Some("trades"), "$.result.data.trades[*]"),
    ("crm.customer.list", None, "$.result.data[*]"),
];

/// The verdict on one answer, with the default [`Rules`].
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    classify_with(&Rules::default(), http_status, body)
}

/// The verdict on one answer under `rules`.
pub fn classify_with(rules: &Rules, http_status: u16, body: &Value) -> Verdict {
    let code = body.get("code").and_then(code_text);
    let sub_code = body
        .get("subCode")
        .and_then(code_text)
        .filter(|sub| !is_blank_sub_code(sub));
    let message = message_of(body);
    if http_status == 429 {
        return Verdict::Throttled(or_default(message, "HTTP 429 Too Many Requests"));
    }
    let matches = |list: &[String]| {
        [code.as_deref(), sub_code.as_deref()]
            .into_iter()
            .flatten()
            .any(|value| list.iter().any(|listed| listed == value))
    };
    if matches(&rules.throttle_codes) {
        return Verdict::Throttled(or_default(message, "throttled"));
    }
    if matches(&rules.session_codes) {
        return Verdict::SessionExpired(or_default(message, "token expired"));
    }
    let Some(code) = code else {
        let preview: String = body.to_string().chars().take(160).collect();
        return Verdict::Failed {
            code: format!("HTTP {http_status}"),
            message: format!("the answer is not a Jackyun envelope (no `code`): {preview}"),
        };
    };
    let success = rules.success_codes.contains(&code);
    if success && sub_code.is_none() && (200..300).contains(&http_status) {
        return Verdict::Ok;
    }
    let code = match sub_code {
        Some(sub) => format!("{code}/{sub}"),
        None if !(200..300).contains(&http_status) => format!("{code} (HTTP {http_status})"),
        None => code,
    };
    Verdict::Failed {
        code,
        message: or_default(message, "no message"),
    }
}

/// The default JSONPath of the rows of list method `api`.
pub fn records_path(api: &str) -> Option<&'static str> {
    ROW_KEYS
        .iter()
        .find(|(name, _, _)| *name == api)
        .map(|(_, _, path)| *path)
}

/// The rows of a list answer for `api` (empty when the list is missing or null).
pub fn rows<'a>(api: &str, body: &'a Value) -> &'a [Value] {
    let data = body.pointer("/result/data");
    let list = match ROW_KEYS.iter().find(|(name, _, _)| *name == api) {
        Some((_, Some(key), _)) => data.and_then(|data| data.get(key)),
        _ => data,
    };
    list.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The default paging of list method `api`: `pageIndex` from 0 and `pageSize` inside
/// `bizcontent`, no trustworthy total (stop on a short page, see [`is_last_page`]).
pub fn default_paging(api: &str) -> Option<Paging> {
    let pages = records_path(api).is_some() || api == "wms.order.query-info.page";
    pages.then_some(Paging {
        style: PagingStyle::PageNumber,
        start: 0,
        size: DEFAULT_PAGE_SIZE,
        max_size: None,
        total_path: None,
        number_param: "pageIndex",
        size_param: "pageSize",
        stop: None,
    })
}

/// Whether a page with `rows_on_page` rows, asked for `page_size`, is the last one.
pub fn is_last_page(rows_on_page: usize, page_size: u64) -> bool {
    u64::try_from(rows_on_page).is_ok_and(|rows| rows < page_size)
}

/// Per-row outcomes of a batch write. Jackyun writes carry one record per call, so
/// this is always `None`; use [`row_outcome`] for the single row.
pub fn row_outcomes(_api: &str, _body: &Value, _rows_sent: usize) -> Option<Vec<RowOutcome>> {
    None
}

/// The outcome of the one row a write call carried, or `None` when the call must be
/// retried rather than judged (throttled, token expired).
pub fn row_outcome(api: &str, verdict: &Verdict, body: &Value) -> Option<RowOutcome> {
    match verdict {
        Verdict::Ok => Some(RowOutcome::written(written_id(api, body))),
        Verdict::Failed { code, message } => Some(RowOutcome::Failed {
            message: format!("{api} refused the row ({code}): {message}"),
            class: "rejected",
        }),
        Verdict::Throttled(_) | Verdict::SessionExpired(_) => None,
    }
}

/// The id a one-record write returned: `result.data` itself when it is a scalar, else
/// its `customerId`, `id`, `billNo` or `code` field.
pub fn written_id(_api: &str, body: &Value) -> Option<String> {
    let data = body.pointer("/result/data")?;
    if let Some(id) = code_text(data) {
        return Some(id);
    }
    ["customerId", "id", "billNo", "code"]
        .iter()
        .find_map(|key| data.get(key).and_then(code_text))
        .filter(|id| !id.is_empty())
}

/// A code or id as text: strings as they are, numbers in decimal.
fn code_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A `subCode` that still means success: empty or only zeros.
fn is_blank_sub_code(sub: &str) -> bool {
    sub.chars().all(|c| c == '0')
}

fn message_of(body: &Value) -> String {
    let main = ["msg", "message"]
        .iter()
        .find_map(|key| body.get(key).and_then(Value::as_str))
        .unwrap_or_default();
    let sub = ["subMsg", "subMessage"]
        .iter()
        .find_map(|key| body.get(key).and_then(Value::as_str))
        .unwrap_or_default();
    match (main.is_empty(), sub.is_empty()) {
        (_, true) => main.to_string(),
        (true, false) => sub.to_string(),
        (false, false) => format!("{main}: {sub}"),
    }
}

fn or_default(message: String, default: &str) -> String {
    if message.is_empty() {
        default.to_string()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed(code: &str, message: &str) -> Verdict {
        Verdict::Failed {
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn every_success_spelling_is_ok() {
        for code in [json!(200), json!("200"), json!(0), json!("0")] {
            for sub in [json!(null), json!(""), json!("0"), json!("0000"), json!(0)] {
                let body = json!({"code": code, "msg": "成功", "subCode": sub, "result": {"data": {}}});
                assert_eq!(classify(200, &body), Verdict::Ok, "{body}");
            }
            let without_sub = json!({"code": code, "msg": "ok"});
            assert_eq!(classify(200, &without_sub), Verdict::Ok);
        }
    }

    #[test]
    fn a_real_sub_code_fails_a_success_code() {
        let body =
            json!({"code": 200, "msg": "业务处理失败", "subCode": "crm.customer.exists", "subMsg": "客户编号已存在"});
        assert_eq!(
            classify(200, &body),
            failed("200/crm.customer.exists", "业务处理失败: 客户编号已存在")
        );
    }

    #[test]
    fn errors_keep_the_vendor_code_and_message() {
        let body = json!({"code": 401, "msg": "签名错误", "subCode": null});
        assert_eq!(classify(200, &body), failed("401", "签名错误"));
        let body = json!({"code": "-1", "message": "系统繁忙"});
        assert_eq!(classify(200, &body), failed("-1", "系统繁忙"));
        let body = json!({"code": 500, "msg": "内部错误"});
        assert_eq!(classify(500, &body), failed("500 (HTTP 500)", "内部错误"));
        let body = json!({"code": 200, "msg": "ok"});
        assert!(matches!(classify(502, &body), Verdict::Failed { .. }));
    }

    #[test]
    fn answers_without_a_code_are_not_envelopes() {
        let Verdict::Failed { code, message } = classify(502, &json!("<html>bad gateway</html>")) else {
            panic!("expected a failure");
        };
        assert_eq!(code, "HTTP 502");
        assert!(message.contains("not a Jackyun envelope"), "{message}");
    }

    #[test]
    fn configured_success_codes_replace_the_defaults() {
        let rules = Rules {
            success_codes: vec!["0".into()],
            ..Rules::default()
        };
        assert_eq!(classify_with(&rules, 200, &json!({"code": 0})), Verdict::Ok);
        assert!(matches!(
            classify_with(&rules, 200, &json!({"code": 200})),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn throttling_and_token_expiry() {
        let body = json!({"code": 429, "msg": "接口调用频率超限", "subCode": "isp.call-limited"});
        assert_eq!(classify(429, &body), Verdict::Throttled("接口调用频率超限".into()));
        assert_eq!(
            classify(429, &json!(null)),
            Verdict::Throttled("HTTP 429 Too Many Requests".into())
        );
        // Without configured codes a throttle code in a 200 answer is just a failure...
        let coded = json!({"code": 200, "msg": "调用太频繁", "subCode": "isp.call-limited"});
        assert!(matches!(classify(200, &coded), Verdict::Failed { .. }));
        // ...and with them it is throttling; sub codes count too.
        let rules = Rules {
            throttle_codes: vec!["isp.call-limited".into()],
            session_codes: vec!["40101".into()],
            ..Rules::default()
        };
        assert_eq!(
            classify_with(&rules, 200, &coded),
            Verdict::Throttled("调用太频繁".into())
        );
        let expired = json!({"code": 40101, "msg": "token已过期"});
        assert_eq!(
            classify_with(&rules, 200, &expired),
            Verdict::SessionExpired("token已过期".into())
        );
    }

    #[test]
    fn rows_sit_under_the_method_key() {
        assert_eq!(records_path("erp.storage.goodslist"), Some("$.result.data.goods[*]"));
        assert_eq!(records_path("crm.customer.list"), Some("$.result.data[*]"));
        assert_eq!(records_path("oms.trade.fullinfoget"), Some("$.result.data.trades[*]"));
        assert_eq!(records_path("crm.customer.add"), None);
        let goods = json!({"code": 200, "result": {"data": {"goods": [{"goodsNo": "G1"}, {"goodsNo": "G2"}]}}});
        assert_eq!(rows("erp.storage.goodslist", &goods).len(), 2);
        let customers = json!({"code": 200, "result": {"data": [{"customerCode": "KH1"}]}});
        assert_eq!(rows("crm.customer.list", &customers)[0]["customerCode"], "KH1");
        assert!(rows(
            "erp.storage.goodslist",
            &json!({"code": 200, "result": {"data": {"goods": null}}})
        )
        .is_empty());
    }

    #[test]
    fn paging_starts_at_zero_and_stops_on_a_short_page() {
        let paging = default_paging("crm.customer.list").unwrap();
        assert_eq!(paging.style, PagingStyle::PageNumber);
        assert_eq!(paging.start, 0);
        assert_eq!(paging.size, 200);
        assert_eq!(paging.total_path, None);
        assert_eq!((paging.number_param, paging.size_param), ("pageIndex", "pageSize"));
        assert!(default_paging("wms.order.query-info.page").is_some());
        assert!(default_paging("crm.customer.add").is_none());
        assert!(!is_last_page(200, 200));
        assert!(is_last_page(199, 200));
        assert!(is_last_page(0, 200));
    }

    #[test]
    fn one_row_writes_report_their_id_or_refusal() {
        let ok = json!({"code": 200, "msg": "成功", "result": {"data": {"customerId": "1650000000000007919", "customerCode": "KH1"}}});
        assert_eq!(
            written_id("crm.customer.add", &ok).as_deref(),
            Some("1650000000000007919")
        );
        let scalar = json!({"code": 0, "result": {"data": 42}});
        assert_eq!(written_id("crm.customer.add", &scalar).as_deref(), Some("42"));
        assert_eq!(written_id("crm.customer.add", &json!({"code": 0})), None);
        assert_eq!(
            row_outcome("crm.customer.add", &classify(200, &ok), &ok),
            Some(RowOutcome::written(Some("1650000000000007919".into())))
        );
        let refused = json!({"code": 400, "msg": "客户编号已存在: KH1", "subCode": "crm.customer.duplicate-code"});
        let Some(RowOutcome::Failed { message, class }) =
            row_outcome("crm.customer.add", &classify(200, &refused), &refused)
        else {
            panic!("expected a refused row");
        };
        assert_eq!(class, "rejected");
        assert!(message.contains("客户编号已存在: KH1"), "{message}");
        assert_eq!(
            row_outcome("crm.customer.add", &Verdict::Throttled("x".into()), &refused),
            None
        );
        assert_eq!(row_outcomes("crm.customer.add", &ok, 1), None);
    }
}
