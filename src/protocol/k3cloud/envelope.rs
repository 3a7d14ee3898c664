//! Pure K3Cloud answer handling: verdicts, per-row BatchSave outcomes, query rows and paging.
//!
//! Answer families, all accepted by [`classify`]:
//! * business answers `{"Result":{"ResponseStatus":{IsSuccess, Errors[], SuccessEntitys[],
//!   MsgCode, ErrorCode}, "Id", "Number", "Result"}}`, always HTTP 200: `IsSuccess` decides;
//!   MsgCode 14 is throttling, MsgCode 1 or the message "会话信息已丢失，请重新登录" a lost session;
//! * gateway refusals, HTTP 519 `{"errcode","description","description_cn"}` (4002 APP_ID
//!   empty, 4006 stale timestamp, 5001 API not found, …);
//! * ExecuteBillQuery answers, arrays of arrays, where an error hides as a nested row holding
//!   a `Result.ResponseStatus` object ([`nested_error`] finds it, [`classify`] reports it);
//! * login answers with `LoginResultType` (1 is success);
//! * text bodies starting `response_error:` (see [`classify_text`]).
//!
//! `row_outcomes("BatchSave", …)` places every `Errors[]` and `SuccessEntitys[]` entry on its
//! package by `DIndex`; a package the answer does not mention is "uncertain", never assumed
//! written.

use serde_json::{Map, Value};

use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// MsgCode of a lost session/context.
pub const MSG_CODE_SESSION_LOST: i64 = 1;
/// MsgCode "调用限制": the call limit, i.e. throttling.
pub const MSG_CODE_THROTTLED: i64 = 14;
/// The message a lost session carries.
pub const SESSION_LOST_MESSAGE: &str = "会话信息已丢失，请重新登录";
/// Gateway status for refused signatures, timestamps and unknown APIs.
pub const GATEWAY_STATUS: u16 = 519;
/// Gateway errcode for a stale or malformed `x-api-timestamp`.
pub const GATEWAY_STALE_TIMESTAMP: i64 = 4006;
/// Prefix of the SDK's plain-text error bodies.
pub const RESPONSE_ERROR_PREFIX: &str = "response_error:";

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

/// Default paging of a query api: offset style `StartRow`/`Limit` inside `data`, 2000 rows,
/// at most 10000, no total; the last page is the first one shorter than `Limit`.
pub fn default_paging(api: &str) -> Option<Paging> {
    matches!(api, "ExecuteBillQuery" | "BillQuery").then_some(Paging {
        style: PagingStyle::Offset,
        start: 0,
        size: super::DEFAULT_QUERY_LIMIT,
        max_size: Some(super::DEFAULT_QUERY_MAX_LIMIT),
        total_path: None,
        number_param: "StartRow",
        size_param: "Limit",
        stop: None,
    })
}

/// [`default_paging`] with the connection's configured limits.
pub fn paging_for(settings: &super::Settings, api: &str) -> Option<Paging> {
    default_paging(api).map(|paging| Paging {
        size: settings.query_limit(),
        max_size: Some(settings.query_max_limit()),
        ..paging
    })
}

/// Default JSONPath of the rows of a read api. ExecuteBillQuery rows are arrays until
/// [`name_rows`] turns them into objects; View's record is `$.Result.Result`.
pub fn records_path(api: &str) -> Option<&'static str> {
    match api {
        "ExecuteBillQuery" | "BillQuery" => Some("$[*]"),
        "View" => Some("$.Result.Result"),
        _ => None,
    }
}

/// The `Result.ResponseStatus` object of a business answer.
pub fn response_status(body: &Value) -> Option<&Map<String, Value>> {
    body.get("Result")?.get("ResponseStatus")?.as_object()
}

/// The first error hidden in a query answer: a row (or a row's cell) that is an object with
/// `Result.ResponseStatus`. Returns that object.
pub fn nested_error(body: &Value) -> Option<&Value> {
    let rows = body.as_array()?;
    let is_error = |value: &&Value| response_status(value).is_some();
    rows.iter().find(is_error).or_else(|| {
        rows.iter()
            .filter_map(Value::as_array)
            .find_map(|cells| cells.iter().find(is_error))
    })
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// `FieldName: Message` of one `Errors[]` entry.
fn error_text(error: &Value) -> String {
    let message = text_of(error.get("Message")).unwrap_or_else(|| error.to_string());
    match text_of(error.get("FieldName")).filter(|name| !name.is_empty()) {
        Some(field) => format!("{field}: {message}"),
        None => message,
    }
}

fn status_message(status: &Map<String, Value>) -> String {
    let errors: Vec<String> = status
        .get("Errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(error_text).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        "K3Cloud reported IsSuccess=false without an error message".to_owned()
    } else {
        errors.join("; ")
    }
}

/// The verdict of one `ResponseStatus`.
fn status_verdict(status: &Map<String, Value>) -> Verdict {
    if is_true(status.get("IsSuccess")) {
        return Verdict::Ok;
    }
    let message = status_message(status);
    let msg_code = int_of(status.get("MsgCode"));
    if msg_code == Some(MSG_CODE_THROTTLED) {
        return Verdict::Throttled(message);
    }
    if msg_code == Some(MSG_CODE_SESSION_LOST) || message.contains(SESSION_LOST_MESSAGE) {
        return Verdict::SessionExpired(message);
    }
    let code = msg_code
        .map(|code| code.to_string())
        .or_else(|| text_of(status.get("ErrorCode")))
        .unwrap_or_else(|| "unknown".to_owned());
    Verdict::Failed { code, message }
}

fn gateway_verdict(http_status: u16, body: &Value) -> Option<Verdict> {
    let code = body.get("errcode")?;
    let code_number = int_of(Some(code));
    if code_number == Some(0) && http_status != GATEWAY_STATUS {
        return Some(Verdict::Ok);
    }
    let description = text_of(body.get("description"))
        .or_else(|| text_of(body.get("description_cn")))
        .unwrap_or_else(|| "no description".to_owned());
    let hint = match code_number {
        Some(GATEWAY_STALE_TIMESTAMP) => {
            " (the request timestamp is too far from the server's clock; check this machine's time)"
        }
        Some(4002) => " (set app_id)",
        Some(5001) => " (check the base URL and the operation name)",
        _ => "",
    };
    Some(Verdict::Failed {
        code: text_of(Some(code)).unwrap_or_default(),
        message: format!("K3Cloud gateway refused the request: {description}{hint}"),
    })
}

/// Judges one JSON answer. See the module doc for the families recognised.
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    if let Some(verdict) = gateway_verdict(http_status, body) {
        return verdict;
    }
    if let Some(status) = response_status(body) {
        let verdict = status_verdict(status);
        // Business answers come with 200/206; anything else failed even if the body says ok.
        return match (verdict, http_status) {
            (Verdict::Ok, 200 | 206) => Verdict::Ok,
            (Verdict::Ok, status) => Verdict::Failed {
                code: format!("http_{status}"),
                message: format!("K3Cloud answered HTTP {status}"),
            },
            (other, _) => other,
        };
    }
    if !matches!(http_status, 200 | 206) {
        let preview: String = body.to_string().chars().take(200).collect();
        return Verdict::Failed {
            code: format!("http_{http_status}"),
            message: format!("K3Cloud answered HTTP {http_status}: {preview}"),
        };
    }
    if let Some(result_type) = body.get("LoginResultType") {
        return if int_of(Some(result_type)) == Some(1) {
            Verdict::Ok
        } else {
            Verdict::Failed {
                code: text_of(Some(result_type)).unwrap_or_default(),
                message: text_of(body.get("Message")).unwrap_or_else(|| "login refused".to_owned()),
            }
        };
    }
    match body {
        Value::Array(_) => match nested_error(body).and_then(response_status) {
            Some(status) => match status_verdict(status) {
                // A nested status that claims success is still not a data row.
                Verdict::Ok => Verdict::Failed {
                    code: "nested".to_owned(),
                    message: "the query answer holds a status object instead of rows".to_owned(),
                },
                other => other,
            },
            None => Verdict::Ok,
        },
        // View in some versions answers with `Result` and no status.
        Value::Object(map) if map.get("Result").is_some_and(Value::is_object) => Verdict::Ok,
        Value::String(text) => classify_text(http_status, text),
        _ => {
            let preview: String = body.to_string().chars().take(200).collect();
            Verdict::Failed {
                code: "unrecognised".to_owned(),
                message: format!("not a K3Cloud answer: {preview}"),
            }
        }
    }
}

/// Judges a raw answer text: `response_error:` bodies and non-JSON text fail; JSON goes to
/// [`classify`].
pub fn classify_text(http_status: u16, text: &str) -> Verdict {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if let Some(rest) = trimmed.strip_prefix(RESPONSE_ERROR_PREFIX) {
        let message = rest.trim().to_owned();
        if message.contains(SESSION_LOST_MESSAGE) {
            return Verdict::SessionExpired(message);
        }
        return Verdict::Failed {
            code: "response_error".to_owned(),
            message: if message.is_empty() {
                "empty response_error".to_owned()
            } else {
                message
            },
        };
    }
    match serde_json::from_str::<Value>(trimmed) {
        // A JSON string holding JSON (older servers double-encode).
        Ok(Value::String(inner)) if inner != trimmed => classify_text(http_status, &inner),
        Ok(Value::String(inner)) => Verdict::Failed {
            code: "unrecognised".to_owned(),
            message: inner,
        },
        Ok(body) => classify(http_status, &body),
        Err(_) => Verdict::Failed {
            code: format!("http_{http_status}"),
            message: format!(
                "K3Cloud answered text that is not JSON: {}",
                trimmed.chars().take(200).collect::<String>()
            ),
        },
    }
}

fn id_text(entity: &Value) -> Option<String> {
    text_of(entity.get("Id")).filter(|id| !id.is_empty() && id != "0")
}

/// One outcome per BatchSave package (`None` for other apis), placed by `DIndex`.
///
/// Success entries give `Written { target_id: Id }`; error entries `Failed` with class
/// "rejected" (several errors for one package are joined). A throttled or session-lost answer,
/// or one that is no business answer at all, fails every package as "uncertain". Packages the
/// answer does not mention are "rejected" when the answer has errors it could not place, and
/// "uncertain" otherwise.
pub fn row_outcomes(api: &str, body: &Value, rows_sent: usize) -> Option<Vec<RowOutcome>> {
    // BatchSave reports per package; the list operations (Submit, Audit, UnAudit, Delete)
    // report per id of `Ids`, both by `DIndex` (reference §2 "Write response").
    if !["BatchSave", "Submit", "Audit", "UnAudit", "Delete"].contains(&api) {
        return None;
    }
    let uncertain = |message: String| {
        vec![
            RowOutcome::Failed {
                message,
                class: crate::protocol::UNMATCHED_ANSWER
            };
            rows_sent
        ]
    };
    let Some(status) = response_status(body) else {
        return Some(match classify(200, body) {
            Verdict::Failed { code, message } => uncertain(format!("{code}: {message}")),
            other => uncertain(format!("the BatchSave answer has no ResponseStatus ({other:?})")),
        });
    };
    match status_verdict(status) {
        Verdict::Throttled(message) | Verdict::SessionExpired(message) => {
            return Some(uncertain(format!("nothing was saved: {message}")))
        }
        Verdict::Ok | Verdict::Failed { .. } => {}
    }
    let mut outcomes: Vec<Option<RowOutcome>> = vec![None; rows_sent];
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); rows_sent];
    let mut unplaced = Vec::new();
    let empty = Vec::new();
    let successes = status.get("SuccessEntitys").and_then(Value::as_array).unwrap_or(&empty);
    let by_position = successes.len() == rows_sent && successes.iter().all(|e| e.get("DIndex").is_none());
    for (rank, entity) in successes.iter().enumerate() {
        let index = match int_of(entity.get("DIndex")) {
            Some(index) => usize::try_from(index).ok(),
            None if by_position => Some(rank),
            None => None,
        };
        if let Some(slot) = index.and_then(|index| outcomes.get_mut(index)) {
            *slot = Some(RowOutcome::written(id_text(entity)));
        }
    }
    for error in status.get("Errors").and_then(Value::as_array).unwrap_or(&empty) {
        let index = int_of(error.get("DIndex")).and_then(|index| usize::try_from(index).ok());
        match index.filter(|index| *index < rows_sent) {
            Some(index) => failures[index].push(error_text(error)),
            None => unplaced.push(error_text(error)),
        }
    }
    let unplaced = unplaced.join("; ");
    let rows = outcomes
        .into_iter()
        .zip(failures)
        .map(|(outcome, errors)| match (outcome, errors.is_empty()) {
            (_, false) => RowOutcome::Failed {
                message: errors.join("; "),
                class: "rejected",
            },
            (Some(outcome), true) => outcome,
            (None, true) if !unplaced.is_empty() => RowOutcome::Failed {
                message: unplaced.clone(),
                class: "rejected",
            },
            (None, true) => RowOutcome::Failed {
                message: "the BatchSave answer names neither success nor error for this package".to_owned(),
                class: crate::protocol::UNMATCHED_ANSWER,
            },
        })
        .collect();
    Some(rows)
}

/// Puts the detail row ids of a Save/BatchSave answer on its written rows: each
/// `Result.NeedReturnData` object (asked for by [`super::request::ask_for_detail_ids`]) is
/// matched to the written row whose target id its `key_field` carries, never by position
/// (failed packages have no object), and gives, per list, the `id_field` of each of its
/// entry rows in the answer's order (`Null` where a row has none). Rows without a match
/// keep `details: None`.
pub fn attach_detail_ids(
    body: &Value,
    key_field: &str,
    lists: &[crate::protocol::DetailList],
    outcomes: &mut [RowOutcome],
) {
    if lists.is_empty() {
        return;
    }
    let Some(Value::Array(returned)) = body.get("Result").and_then(|result| result.get("NeedReturnData")) else {
        return;
    };
    let field = |object: &Map<String, Value>, name: &str| -> Option<Value> {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    for outcome in outcomes.iter_mut() {
        let RowOutcome::Written {
            target_id: Some(id),
            details,
        } = outcome
        else {
            continue;
        };
        let found = returned
            .iter()
            .filter_map(Value::as_object)
            .find(|object| text_of(field(object, key_field).as_ref()).as_deref() == Some(id.as_str()));
        let Some(object) = found else { continue };
        let mut ids = crate::protocol::DetailIds::new();
        for list in lists {
            if let Some(Value::Array(rows)) = field(object, list.name()) {
                let row_ids = rows
                    .iter()
                    .map(|row| {
                        row.as_object()
                            .and_then(|row| field(row, &list.id_field))
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                ids.insert(list.key(), row_ids);
            }
        }
        *details = Some(ids);
    }
}

/// The id a successful one-row write returned (`Result.Id`, else the first success entry).
pub fn written_id(api: &str, body: &Value) -> Option<String> {
    if !matches!(
        api,
        "Save" | "Draft" | "Submit" | "Audit" | "UnAudit" | "Delete" | "BatchSave"
    ) {
        return None;
    }
    let status = response_status(body)?;
    if !is_true(status.get("IsSuccess")) {
        return None;
    }
    body.get("Result")
        .and_then(id_text)
        .or_else(|| status.get("SuccessEntitys")?.as_array()?.first().and_then(id_text))
}

/// Names ExecuteBillQuery rows: each inner array becomes an object keyed by the comma-separated
/// `field_keys`, in order. Fails on a hidden error row, a non-array answer or a row whose
/// length differs from the number of keys.
pub fn name_rows(field_keys: &str, rows: &Value) -> Result<Vec<Value>, String> {
    if let Some(error) = nested_error(rows) {
        let message = response_status(error)
            .map(status_message)
            .unwrap_or_else(|| error.to_string());
        return Err(format!("the query answer holds an error instead of rows: {message}"));
    }
    let Some(rows) = rows.as_array() else {
        return Err(format!(
            "the query answer must be an array of rows, got: {}",
            rows.to_string().chars().take(160).collect::<String>()
        ));
    };
    let keys: Vec<&str> = field_keys.split(',').map(str::trim).collect();
    if keys.iter().any(|key| key.is_empty()) {
        return Err(format!("FieldKeys `{field_keys}` has an empty key"));
    }
    rows.iter()
        .enumerate()
        .map(|(position, row)| {
            let cells = row
                .as_array()
                .ok_or_else(|| format!("row {position} is not an array: {row}"))?;
            if cells.len() != keys.len() {
                return Err(format!(
                    "row {position} has {} values but FieldKeys names {} fields ({field_keys})",
                    cells.len(),
                    keys.len()
                ));
            }
            let named: Map<String, Value> = keys
                .iter()
                .map(|key| (*key).to_owned())
                .zip(cells.iter().cloned())
                .collect();
            Ok(Value::Object(named))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(inner: Value) -> Value {
        json!({"Result": {"ResponseStatus": inner}})
    }

    #[test]
    fn observed_success_and_failure() {
        let ok = json!({"Result": {"ResponseStatus": {"IsSuccess": true, "Errors": [], "SuccessEntitys": [{"Id": 100029, "Number": "FKSQ000004", "DIndex": 0}], "MsgCode": 0}, "Id": 100029, "Number": "FKSQ000004", "NeedReturnData": [{}]}});
        assert_eq!(classify(200, &ok), Verdict::Ok);
        assert_eq!(written_id("Save", &ok).as_deref(), Some("100029"));
        let audited = status(
            json!({"ErrorCode": 500, "IsSuccess": false, "Errors": [{"FieldName": "", "Message": "单据已经审核！", "DIndex": 0}], "MsgCode": 11}),
        );
        assert_eq!(
            classify(200, &audited),
            Verdict::Failed {
                code: "11".into(),
                message: "单据已经审核！".into()
            }
        );
        assert_eq!(written_id("Save", &audited), None);
    }

    #[test]
    fn throttle_and_session_spellings() {
        let throttled = status(
            json!({"ErrorCode": 500, "IsSuccess": false, "Errors": [{"Message": "调用频率超出限制"}], "MsgCode": 14}),
        );
        assert!(matches!(classify(200, &throttled), Verdict::Throttled(_)));
        let lost = status(
            json!({"ErrorCode": 500, "IsSuccess": false, "Errors": [{"FieldName": null, "Message": "会话信息已丢失，请重新登录", "DIndex": 0}], "MsgCode": 1}),
        );
        assert!(matches!(classify(200, &lost), Verdict::SessionExpired(_)));
        let lost_by_text = status(
            json!({"IsSuccess": "false", "Errors": [{"Message": "会话信息已丢失，请重新登录"}], "MsgCode": "0"}),
        );
        assert!(matches!(classify(200, &lost_by_text), Verdict::SessionExpired(_)));
        assert!(matches!(
            classify_text(200, "response_error:会话信息已丢失，请重新登录"),
            Verdict::SessionExpired(_)
        ));
    }

    #[test]
    fn gateway_errors_are_recognised() {
        let stale = json!({"errcode": 4006, "description": "Unauthorized, X-Api-TimeStamp is invalid", "description_cn": "时间戳无效"});
        match classify(519, &stale) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "4006");
                assert!(message.contains("clock"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let no_app = json!({"errcode": 4002, "description": "APP_ID is empty"});
        assert!(matches!(classify(519, &no_app), Verdict::Failed { code, .. } if code == "4002"));
        let missing = json!({"errcode": "5001", "description": "API not found"});
        assert!(matches!(classify(519, &missing), Verdict::Failed { code, .. } if code == "5001"));
    }

    #[test]
    fn text_bodies() {
        assert_eq!(
            classify_text(200, "response_error:  boom "),
            Verdict::Failed {
                code: "response_error".into(),
                message: "boom".into()
            }
        );
        assert!(matches!(classify_text(500, "<html>oops"), Verdict::Failed { code, .. } if code == "http_500"));
        assert_eq!(classify_text(200, "[[1,\"A\"]]"), Verdict::Ok);
        assert_eq!(classify_text(200, "\"[[1]]\""), Verdict::Ok, "double-encoded JSON");
        assert!(matches!(classify(502, &json!({"m": 1})), Verdict::Failed { code, .. } if code == "http_502"));
        assert!(matches!(classify(200, &json!(42)), Verdict::Failed { code, .. } if code == "unrecognised"));
    }

    #[test]
    fn login_answers() {
        assert_eq!(
            classify(200, &json!({"LoginResultType": 1, "KDSVCSessionId": "x"})),
            Verdict::Ok
        );
        assert!(matches!(
            classify(200, &json!({"LoginResultType": 0, "Message": "用户名或密码错误"})),
            Verdict::Failed { code, message } if code == "0" && message.contains("密码")
        ));
    }

    #[test]
    fn query_rows_are_named_and_nested_errors_caught() {
        let rows = json!([
            [100234, "WL0001", "螺丝", "2024-03-02T10:11:12.35"],
            [100235, "WL0002", "螺母", null]
        ]);
        assert_eq!(classify(200, &rows), Verdict::Ok);
        let named = name_rows("FMATERIALID, FNumber,FName,FModifyDate", &rows).unwrap();
        assert_eq!(
            named[0],
            json!({"FMATERIALID": 100234, "FNumber": "WL0001", "FName": "螺丝", "FModifyDate": "2024-03-02T10:11:12.35"})
        );
        assert_eq!(named[1]["FModifyDate"], Value::Null);
        assert!(name_rows("FNumber", &rows).unwrap_err().contains("row 0 has 4 values"));
        assert!(name_rows("FNumber,,FName", &rows).is_err());
        assert!(name_rows("FNumber", &json!({"a": 1})).is_err());
        assert_eq!(name_rows("FNumber", &json!([])).unwrap(), Vec::<Value>::new());

        let hidden = json!([[{"Result": {"ResponseStatus": {"ErrorCode": 500, "IsSuccess": false, "Errors": [{"FieldName": null, "Message": "会话信息已丢失，请重新登录", "DIndex": 0}], "MsgCode": 1}}}]]);
        assert!(matches!(classify(200, &hidden), Verdict::SessionExpired(_)));
        assert!(name_rows("FNumber", &hidden).unwrap_err().contains("会话信息已丢失"));
        let flat = json!([{"Result": {"ResponseStatus": {"IsSuccess": false, "Errors": [{"Message": "字段FXX不存在"}], "MsgCode": 9}}}]);
        assert_eq!(
            classify(200, &flat),
            Verdict::Failed {
                code: "9".into(),
                message: "字段FXX不存在".into()
            }
        );
        let throttled = json!([[{"Result": {"ResponseStatus": {"IsSuccess": false, "Errors": [], "MsgCode": 14}}}]]);
        assert!(matches!(classify(200, &throttled), Verdict::Throttled(_)));
    }

    #[test]
    fn detail_row_ids_are_matched_to_packages_by_their_key() {
        let lists = [crate::protocol::DetailList {
            path: vec!["FSaleOrderEntry".into()],
            id_field: "FEntryID".into(),
        }];
        // Package 1 failed, so NeedReturnData has objects for packages 2 and 0 only (listed
        // here out of order on purpose).
        let body = json!({"Result": {"ResponseStatus": {"IsSuccess": false, "Errors": [{"Message": "x", "DIndex": 1}],
        "SuccessEntitys": [{"Id": 300021, "DIndex": 0}, {"Id": 300022, "DIndex": 2}]},
        "NeedReturnData": [
            {"FID": 300022, "FSaleOrderEntry": [{"FEntryID": 9}]},
            {"FID": 300021, "FSaleOrderEntry": [{"FEntryID": 7}, {"FEntryID": 8}, {"FQty": 1}]}
        ]}});
        let mut outcomes = row_outcomes("BatchSave", &body, 3).unwrap();
        attach_detail_ids(&body, "FID", &lists, &mut outcomes);
        let details = |i: usize| match &outcomes[i] {
            RowOutcome::Written { details, .. } => details.clone(),
            RowOutcome::Failed { .. } => None,
        };
        assert_eq!(
            details(0).unwrap()["FSaleOrderEntry"],
            vec![json!(7), json!(8), Value::Null]
        );
        assert!(matches!(outcomes[1], RowOutcome::Failed { .. }));
        assert_eq!(details(2).unwrap()["FSaleOrderEntry"], vec![json!(9)]);

        // No object for a package (or none at all): no details, nothing guessed.
        let bare = json!({"Result": {"ResponseStatus": {"IsSuccess": true, "SuccessEntitys": [{"Id": 1, "DIndex": 0}]},
            "NeedReturnData": [{"FSaleOrderEntry": [{"FEntryID": 5}]}]}});
        let mut outcomes = row_outcomes("BatchSave", &bare, 1).unwrap();
        attach_detail_ids(&bare, "FID", &lists, &mut outcomes);
        assert_eq!(outcomes[0], RowOutcome::written(Some("1".into())));
    }

    #[test]
    fn batch_save_rows_follow_dindex() {
        let mixed = status(json!({
            "ErrorCode": 500, "IsSuccess": false, "MsgCode": 11,
            "Errors": [
                {"FieldName": "FCreateOrgId", "Message": "创建组织 是必填项", "DIndex": 2},
                {"FieldName": "FName", "Message": "客户名称 是必填项", "DIndex": 2}
            ],
            "SuccessEntitys": [{"Id": 100301, "Number": "C1", "DIndex": 1}, {"Id": 100300, "Number": "C0", "DIndex": 0}]
        }));
        let rows = row_outcomes("BatchSave", &mixed, 4).unwrap();
        assert_eq!(rows[0], RowOutcome::written(Some("100300".into())));
        assert_eq!(rows[1], RowOutcome::written(Some("100301".into())));
        assert_eq!(
            rows[2],
            RowOutcome::Failed {
                message: "FCreateOrgId: 创建组织 是必填项; FName: 客户名称 是必填项".into(),
                class: "rejected"
            }
        );
        assert!(matches!(
            &rows[3],
            RowOutcome::Failed {
                class: crate::protocol::UNMATCHED_ANSWER,
                ..
            }
        ));
        assert_eq!(row_outcomes("Save", &mixed, 1), None);
    }

    #[test]
    fn batch_save_whole_request_failures() {
        let refused = status(json!({"IsSuccess": false, "Errors": [{"Message": "没有新增权限"}], "MsgCode": 2}));
        let rows = row_outcomes("BatchSave", &refused, 2).unwrap();
        assert!(rows
            .iter()
            .all(|row| matches!(row, RowOutcome::Failed { class: "rejected", message } if message == "没有新增权限")));
        let throttled = status(json!({"IsSuccess": false, "Errors": [], "MsgCode": 14}));
        assert!(row_outcomes("BatchSave", &throttled, 2)
            .unwrap()
            .iter()
            .all(|row| matches!(
                row,
                RowOutcome::Failed {
                    class: crate::protocol::UNMATCHED_ANSWER,
                    ..
                }
            )));
        let gateway = json!({"errcode": 4006, "description": "stale"});
        assert!(matches!(
            &row_outcomes("BatchSave", &gateway, 1).unwrap()[0],
            RowOutcome::Failed { class: crate::protocol::UNMATCHED_ANSWER, message } if message.contains("4006")
        ));
        let positional = status(json!({"IsSuccess": true, "Errors": [], "SuccessEntitys": [{"Id": "7"}, {"Id": 8}]}));
        assert_eq!(
            row_outcomes("BatchSave", &positional, 2).unwrap(),
            [
                RowOutcome::written(Some("7".into())),
                RowOutcome::written(Some("8".into()))
            ]
        );
    }

    #[test]
    fn paging_defaults() {
        let paging = default_paging("ExecuteBillQuery").unwrap();
        assert_eq!(
            (paging.style, paging.start, paging.size),
            (PagingStyle::Offset, 0, 2000)
        );
        assert_eq!((paging.number_param, paging.size_param), ("StartRow", "Limit"));
        assert_eq!(paging.max_size, Some(10000));
        assert!(default_paging("Save").is_none());
        let settings: super::super::Settings = serde_json::from_value(
            json!({"acct_id": "a", "username": "u", "query_limit": 500, "query_max_limit": 2000}),
        )
        .unwrap();
        let paging = paging_for(&settings, "BillQuery").unwrap();
        assert_eq!((paging.size, paging.max_size), (500, Some(2000)));
        assert_eq!(records_path("ExecuteBillQuery"), Some("$[*]"));
        assert_eq!(records_path("View"), Some("$.Result.Result"));
    }
}
