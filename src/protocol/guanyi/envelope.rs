//! Reading Guanyi answers (pure): the success test, throttling and session verdicts, the list
//! key of each query method, its paging defaults, and the id of a written document.
//!
//! Guanyi answers HTTP 200 with `{"success":…, "errorCode", "subErrorCode", "errorDesc",
//! "subErrorDesc", "requestMethod", <list key>: [...], "total": n}`. Success is
//! `success == true`; errors are `success:false` with the codes and descriptions filled in.
//! Throttling has no public code, so it is recognised by configurable codes and description
//! fragments ([`ErrorCodes`]). Guanyi has no batch write: each `*.add`/`*.update` call writes one
//! document, so [`row_outcomes`] is always `None` and the call's verdict is the row's outcome.

use serde_json::Value;

use super::{DEFAULT_PAGE_SIZE, DEFAULT_THROTTLE_CODES, DEFAULT_THROTTLE_HINTS};
use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

/// Which error codes and descriptions mean "throttled" or "session expired".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodes {
    /// `errorCode`/`subErrorCode` values meaning "slow down".
    pub throttle_codes: Vec<String>,
    /// Case-insensitive fragments of `errorDesc`/`subErrorDesc` meaning "slow down".
    pub throttle_hints: Vec<String>,
    /// `errorCode`/`subErrorCode` values meaning the session is no longer valid.
    pub session_codes: Vec<String>,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        let owned = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        ErrorCodes {
            throttle_codes: owned(DEFAULT_THROTTLE_CODES),
            throttle_hints: owned(DEFAULT_THROTTLE_HINTS),
            session_codes: Vec::new(),
        }
    }
}

/// One query method and where its rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMethod {
    /// The full method name, e.g. `gy.erp.shop.get`.
    pub method: &'static str,
    /// The answer's member holding the rows.
    pub list_key: &'static str,
    /// JSONPath of the rows.
    pub records_path: &'static str,
}

/// The list methods whose row key is known. The first seven are the reference's table; the
/// history and purchase keys come from client samples ([CODE]/[INF]).
pub const LIST_METHODS: &[ListMethod] = &[
    list("gy.erp.shop.get", "shops", "$.shops[*]"),
    list("gy.erp.vip.get", "vips", "$.vips[*]"),
    list("gy.erp.trade.get", "orders", "$.orders[*]"),
    list("gy.erp.items.get", "items", "$.items[*]"),
    list("gy.erp.new.stock.get", "stocks", "$.stocks[*]"),
    list("gy.erp.supplier.get", "supplier_list", "$.supplier_list[*]"),
    list("gy.erp.trade.deliverys.get", "deliverys", "$.deliverys[*]"),
    list("gy.erp.trade.history.get", "orders", "$.orders[*]"),
    list("gy.erp.trade.deliverys.history.get", "deliverys", "$.deliverys[*]"),
    list("gy.erp.purchase.get", "purchaseOrderList", "$.purchaseOrderList[*]"),
];

const fn list(method: &'static str, list_key: &'static str, records_path: &'static str) -> ListMethod {
    ListMethod {
        method,
        list_key,
        records_path,
    }
}

/// The table entry for `api`, written in full (`gy.erp.shop.get`) or short (`shop.get`).
pub fn list_method(api: &str) -> Option<&'static ListMethod> {
    let api = api.trim();
    LIST_METHODS
        .iter()
        .find(|entry| entry.method == api || entry.method.strip_prefix("gy.erp.") == Some(api))
}

/// The member holding the rows of `api`'s answer, e.g. `shops`.
pub fn list_key(api: &str) -> Option<&'static str> {
    list_method(api).map(|entry| entry.list_key)
}

/// JSONPath of the rows of `api`'s answer, e.g. `$.shops[*]`.
pub fn records_path(api: &str) -> Option<&'static str> {
    list_method(api).map(|entry| entry.records_path)
}

/// Paging of a list method: page numbers from 1 in `page_no`, `page_size` rows (default and
/// assumed cap 100, see [`super::Settings::paging`]), the total in `$.total`.
pub fn default_paging(api: &str) -> Option<Paging> {
    list_method(api)?;
    Some(Paging {
        style: PagingStyle::PageNumber,
        start: 1,
        size: DEFAULT_PAGE_SIZE,
        max_size: Some(DEFAULT_PAGE_SIZE),
        total_path: Some("$.total"),
        number_param: "page_no",
        size_param: "page_size",
        stop: None,
    })
}

/// `success == true` (a boolean; `"true"` and `1` are accepted too).
pub fn is_success(body: &Value) -> bool {
    body.get("success").is_some_and(truthy)
}

/// The answer's `total`, as a number or a numeric string.
pub fn total(body: &Value) -> Option<u64> {
    match body.get("total")? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// [`classify_with`] using the default [`ErrorCodes`].
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    classify_with(&ErrorCodes::default(), http_status, body)
}

/// Judges one answer: `Ok` when HTTP is 2xx and `success` is true; `Throttled` on HTTP 429 or a
/// throttle code/description; `SessionExpired` on a session code; otherwise `Failed` with the
/// vendor's code (`errorCode`, else `subErrorCode`) and descriptions.
pub fn classify_with(codes: &ErrorCodes, http_status: u16, body: &Value) -> Verdict {
    let http_ok = (200..300).contains(&http_status);
    if http_ok && is_success(body) {
        return Verdict::Ok;
    }
    let error_code = text_of(body.get("errorCode"));
    let sub_code = text_of(body.get("subErrorCode"));
    let message = describe(body, &sub_code);
    let has_code = |list: &[String]| {
        list.iter()
            .any(|code| !code.is_empty() && (*code == error_code || *code == sub_code))
    };
    let lowered = message.to_lowercase();
    let hinted = codes
        .throttle_hints
        .iter()
        .any(|hint| !hint.is_empty() && lowered.contains(&hint.to_lowercase()));
    if http_status == 429 || has_code(&codes.throttle_codes) || (!is_success(body) && hinted) {
        return Verdict::Throttled(if message.is_empty() {
            format!("Guanyi throttled the call (HTTP {http_status})")
        } else {
            message
        });
    }
    if has_code(&codes.session_codes) {
        return Verdict::SessionExpired(message);
    }
    let code = if !error_code.is_empty() {
        error_code
    } else if !sub_code.is_empty() {
        sub_code
    } else if !http_ok {
        format!("http_{http_status}")
    } else if body.get("success").is_none() {
        "bad_envelope".to_owned()
    } else {
        "unknown".to_owned()
    };
    let message = if !message.is_empty() {
        message
    } else if !http_ok {
        format!("Guanyi answered HTTP {http_status} without an error description")
    } else if body.get("success").is_none() {
        format!(
            "the answer is not a Guanyi envelope (no `success` field): {}",
            snippet(body)
        )
    } else {
        "Guanyi answered success=false without an error description".to_owned()
    };
    Verdict::Failed { code, message }
}

/// Always `None`: Guanyi writes one document per call and has no per-row batch result.
pub fn row_outcomes(_api: &str, _body: &Value, _rows_sent: usize) -> Option<Vec<RowOutcome>> {
    None
}

/// The id of the document a successful write created or changed: `id`, else `code` ([INF]:
/// `*.add` answers carry the new document's `id`; some, like `gy.erp.stock.count.add`, only its
/// `code`). `None` when the answer is not a success or names neither.
pub fn written_id(_api: &str, body: &Value) -> Option<String> {
    if !is_success(body) {
        return None;
    }
    ["id", "code"]
        .iter()
        .map(|key| text_of(body.get(*key)))
        .find(|text| !text.is_empty())
}

/// `errorDesc`, then `subErrorDesc` (prefixed with `subErrorCode` when there is one).
fn describe(body: &Value, sub_code: &str) -> String {
    let desc = text_of(body.get("errorDesc"));
    let sub_desc = text_of(body.get("subErrorDesc"));
    let sub = match (sub_code.is_empty(), sub_desc.is_empty()) {
        (_, true) => String::new(),
        (true, false) => sub_desc,
        (false, false) => format!("[{sub_code}] {sub_desc}"),
    };
    match (desc.is_empty(), sub.is_empty()) {
        (true, _) => sub,
        (false, true) => desc,
        (false, false) => format!("{desc}; {sub}"),
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.trim().eq_ignore_ascii_case("true"),
        Value::Number(number) => number.as_i64() == Some(1),
        _ => false,
    }
}

/// A scalar as text; `null`, objects and arrays give "".
fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Bool(flag)) => flag.to_string(),
        _ => String::new(),
    }
}

fn snippet(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shops_answer() -> Value {
        json!({
            "success": true, "errorCode": "", "subErrorCode": "", "errorDesc": "", "subErrorDesc": "",
            "requestMethod": "gy.erp.shop.get",
            "shops": [{"id": 710944505983u64, "code": "RMSHOP008", "name": "云栖有赞微商城", "nick": "云栖8号店",
                       "type_name": "有赞微商城", "create_date": "2024-03-08 17:49:17",
                       "modify_date": "2025-03-31 18:01:47", "note": ""}],
            "total": 11
        })
    }

    fn failure(code: &str, desc: &str, sub_code: &str, sub_desc: &str) -> Value {
        json!({"success": false, "errorCode": code, "subErrorCode": sub_code, "errorDesc": desc,
               "subErrorDesc": sub_desc, "requestMethod": "gy.erp.shop.get"})
    }

    #[test]
    fn success_is_ok_and_total_is_read() {
        assert_eq!(classify(200, &shops_answer()), Verdict::Ok);
        assert_eq!(total(&shops_answer()), Some(11));
        assert_eq!(total(&json!({"total": "283"})), Some(283));
        assert_eq!(total(&json!({})), None);
        assert_eq!(classify(200, &json!({"success": "true"})), Verdict::Ok);
    }

    #[test]
    fn errors_carry_the_vendor_code_and_both_descriptions() {
        let body = failure("25", "签名无效", "isv.invalid-signature", "sign校验失败");
        assert_eq!(
            classify(200, &body),
            Verdict::Failed {
                code: "25".to_owned(),
                message: "签名无效; [isv.invalid-signature] sign校验失败".to_owned()
            }
        );
        let only_sub = failure("", "", "isv.missing-shop", "店铺不存在");
        assert_eq!(
            classify(200, &only_sub),
            Verdict::Failed {
                code: "isv.missing-shop".to_owned(),
                message: "[isv.missing-shop] 店铺不存在".to_owned()
            }
        );
        let numeric = json!({"success": false, "errorCode": 41, "errorDesc": "非法的参数", "subErrorDesc": null});
        assert_eq!(
            classify(200, &numeric),
            Verdict::Failed {
                code: "41".to_owned(),
                message: "非法的参数".to_owned()
            }
        );
        let bare = json!({"success": false});
        assert!(matches!(classify(200, &bare), Verdict::Failed { code, .. } if code == "unknown"));
    }

    #[test]
    fn non_envelopes_and_http_errors_fail_clearly() {
        let verdict = classify(200, &json!({"message": "hello"}));
        assert!(matches!(&verdict, Verdict::Failed { code, message }
            if code == "bad_envelope" && message.contains("no `success` field")));
        let server = classify(
            500,
            &json!({"success": false, "errorCode": "15", "errorDesc": "服务器内部错误"}),
        );
        assert_eq!(
            server,
            Verdict::Failed {
                code: "15".to_owned(),
                message: "服务器内部错误".to_owned()
            }
        );
        let gateway = classify(502, &Value::Null);
        assert!(matches!(gateway, Verdict::Failed { code, .. } if code == "http_502"));
        // A success body behind a failed HTTP status is not trusted.
        assert!(matches!(classify(500, &shops_answer()), Verdict::Failed { .. }));
    }

    #[test]
    fn throttling_is_recognised_by_status_code_and_description() {
        assert!(matches!(classify(429, &Value::Null), Verdict::Throttled(_)));
        assert_eq!(
            classify(200, &failure("7", "App Call Limited", "", "")),
            Verdict::Throttled("App Call Limited".to_owned())
        );
        assert!(matches!(
            classify(200, &failure("99", "接口调用过于频繁，请稍后再试", "", "")),
            Verdict::Throttled(_)
        ));
        assert!(matches!(
            classify(200, &failure("99", "Rate Limit exceeded", "", "")),
            Verdict::Throttled(_)
        ));
        // Without the hint and with a code nobody listed, it is an ordinary failure.
        assert!(matches!(
            classify(200, &failure("9001", "busy", "", "")),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn configured_codes_decide_throttle_and_session_verdicts() {
        let codes = ErrorCodes {
            throttle_codes: vec!["9001".to_owned()],
            throttle_hints: Vec::new(),
            session_codes: vec!["27".to_owned()],
        };
        assert!(matches!(
            classify_with(&codes, 200, &failure("9001", "busy", "", "")),
            Verdict::Throttled(_)
        ));
        // Hints switched off: a "频繁" description alone no longer throttles.
        assert!(matches!(
            classify_with(&codes, 200, &failure("99", "调用频繁", "", "")),
            Verdict::Failed { .. }
        ));
        assert_eq!(
            classify_with(&codes, 200, &failure("27", "无效的sessionkey", "", "")),
            Verdict::SessionExpired("无效的sessionkey".to_owned())
        );
        assert!(matches!(
            classify_with(&codes, 200, &failure("15", "x", "27", "")),
            Verdict::SessionExpired(_)
        ));
        // By default a refused sessionkey is a plain failure: no re-login can fix it.
        assert!(matches!(
            classify(200, &failure("27", "无效的sessionkey", "", "")),
            Verdict::Failed { code, .. } if code == "27"
        ));
    }

    #[test]
    fn list_keys_and_paths_follow_the_reference_table() {
        let expected = [
            ("gy.erp.shop.get", "shops"),
            ("gy.erp.vip.get", "vips"),
            ("gy.erp.trade.get", "orders"),
            ("gy.erp.items.get", "items"),
            ("gy.erp.new.stock.get", "stocks"),
            ("gy.erp.supplier.get", "supplier_list"),
            ("gy.erp.trade.deliverys.get", "deliverys"),
        ];
        for (method, key) in expected {
            assert_eq!(list_key(method), Some(key), "{method}");
            assert_eq!(records_path(method), Some(format!("$.{key}[*]").as_str()));
        }
        assert_eq!(list_key("shop.get"), Some("shops"));
        assert_eq!(list_key("trade.deliverys.history.get"), Some("deliverys"));
        assert_eq!(records_path("gy.erp.vip.add"), None);
        assert_eq!(list_key("gy.erp.shop"), None);
        for entry in LIST_METHODS {
            assert_eq!(entry.records_path, format!("$.{}[*]", entry.list_key));
        }
    }

    #[test]
    fn paging_is_page_number_from_one_with_total() {
        let paging = default_paging("gy.erp.trade.get").unwrap();
        assert_eq!(
            paging,
            Paging {
                style: PagingStyle::PageNumber,
                start: 1,
                size: 100,
                max_size: Some(100),
                total_path: Some("$.total"),
                number_param: "page_no",
                size_param: "page_size",
                stop: None
            }
        );
        assert_eq!(default_paging("gy.erp.trade.add"), None);
    }

    #[test]
    fn writes_have_no_batch_rows_but_return_the_document_id() {
        let created = json!({"success": true, "errorCode": "", "subErrorCode": "", "errorDesc": "",
                             "subErrorDesc": "", "requestMethod": "gy.erp.vip.add", "id": 700000000001u64});
        assert_eq!(row_outcomes("gy.erp.vip.add", &created, 1), None);
        assert_eq!(written_id("gy.erp.vip.add", &created), Some("700000000001".to_owned()));
        let counted = json!({"success": true, "errorCode": "", "requestMethod": "gy.erp.stock.count.add",
                             "code": "WCO85429276203", "detailErrorList": []});
        assert_eq!(
            written_id("gy.erp.stock.count.add", &counted),
            Some("WCO85429276203".to_owned())
        );
        assert_eq!(written_id("gy.erp.vip.add", &failure("15", "x", "", "")), None);
        assert_eq!(written_id("gy.erp.vip.add", &json!({"success": true})), None);
    }
}
