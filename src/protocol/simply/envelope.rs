//! Pure reading of Simply CRM (`webservice.php`) answers: the verdict, where rows sit,
//! how `query` and `sync` page, what a write returned, and the module id prefix.
//!
//! Envelope: `{"success":true,"result":…}` or `{"success":false,"error":{…}}`, with
//! business errors under HTTP 200. The error object is read in every known spelling
//! ([`error_of`]). Session codes ([`Rules::session_codes`]) mean "log in again"; HTTP 429
//! and configured throttle codes mean "slow down".
//!
//! Writes carry one record per call (`create`, `update`, `revise`, `delete`), so there is
//! no batch shape: [`row_outcomes`] is `None` and [`row_outcome`] judges the one row.

use serde_json::Value;

use crate::protocol::types::{PagingStyle, RowOutcome, Verdict};

/// How a list api pages (the shared type of every vendor).
pub use crate::protocol::types::PagingDefaults as Paging;

/// Which error codes mean what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Codes meaning the session is gone.
    pub session_codes: Vec<String>,
    /// Codes meaning "slow down".
    pub throttle_codes: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            session_codes: super::DEFAULT_SESSION_CODES.iter().map(|c| c.to_string()).collect(),
            throttle_codes: Vec::new(),
        }
    }
}

/// The verdict on one answer, with the default [`Rules`].
pub fn classify(http_status: u16, body: &Value) -> Verdict {
    classify_with(&Rules::default(), http_status, body)
}

/// The verdict on one answer under `rules`.
pub fn classify_with(rules: &Rules, http_status: u16, body: &Value) -> Verdict {
    let error = error_of(body);
    if http_status == 429 {
        let message = error.map(|(code, message)| format!("{code}: {message}"));
        return Verdict::Throttled(message.unwrap_or_else(|| "HTTP 429 Too Many Requests".into()));
    }
    match body.get("success").and_then(success_flag) {
        Some(true) if (200..300).contains(&http_status) => Verdict::Ok,
        Some(true) => Verdict::Failed {
            code: format!("HTTP {http_status}"),
            message: "the answer says success but the HTTP status is not 2xx".into(),
        },
        Some(false) => {
            let (code, message) =
                error.unwrap_or_else(|| ("UNKNOWN".into(), "success is false and no error was given".into()));
            if rules.session_codes.contains(&code) {
                Verdict::SessionExpired(format!("{code}: {message}"))
            } else if rules.throttle_codes.contains(&code) {
                Verdict::Throttled(format!("{code}: {message}"))
            } else {
                Verdict::Failed { code, message }
            }
        }
        None => {
            let preview: String = body.to_string().chars().take(160).collect();
            Verdict::Failed {
                code: format!("HTTP {http_status}"),
                message: format!("the answer is not a webservice envelope (no `success`): {preview}"),
            }
        }
    }
}

/// The error code and message of a failed answer, whichever spelling it uses:
/// `code`/`message`, `errorCode`/`errorMessage` or `errorType`/`errorMsg`. A bare string
/// error becomes (`UNKNOWN`, text).
pub fn error_of(body: &Value) -> Option<(String, String)> {
    let error = body.get("error")?;
    if let Some(text) = error.as_str() {
        return Some(("UNKNOWN".into(), text.into()));
    }
    let first = |keys: &[&str]| {
        keys.iter().find_map(|key| match error.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        })
    };
    let code = first(&["code", "errorCode", "errorType"]);
    let message = first(&["message", "errorMessage", "errorMsg"]);
    if code.is_none() && message.is_none() {
        return None;
    }
    Some((
        code.unwrap_or_else(|| "UNKNOWN".into()),
        message.unwrap_or_else(|| "no message".into()),
    ))
}

fn success_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The default JSONPath of the rows `operation` returns.
pub fn records_path(operation: &str) -> Option<&'static str> {
    match operation.to_ascii_lowercase().as_str() {
        "query" => Some("$.result[*]"),
        "sync" => Some("$.result.updated[*]"),
        "retrieve" | "create" | "update" | "revise" => Some("$.result"),
        "listtypes" => Some("$.result.types[*]"),
        "describe" => Some("$.result.fields[*]"),
        _ => None,
    }
}

/// Where a `sync` answer names the next call's `modifiedTime`.
pub const SYNC_CURSOR_PATH: &str = "$.result.lastModifiedTime";
/// Where a `sync` answer says whether more changes wait.
pub const SYNC_MORE_PATH: &str = "$.result.more";

/// The default JSONPath of the ids of deleted records an operation reports: `sync`
/// lists them under `result.deleted` (reference §5 "Sync").
pub fn deleted_path(operation: &str) -> Option<&'static str> {
    operation.eq_ignore_ascii_case("sync").then_some("$.result.deleted[*]")
}

/// The default paging: `query` by offset (inside the VTQL `LIMIT`, at most 100 rows),
/// `sync` by the `modifiedTime` cursor: each call sends the previous answer's
/// `lastModifiedTime` while its `more` is true (the server picks ~100 changes per call).
pub fn default_paging(operation: &str) -> Option<Paging> {
    match operation.to_ascii_lowercase().as_str() {
        "query" => Some(Paging {
            style: PagingStyle::Offset,
            start: 0,
            size: super::DEFAULT_QUERY_PAGE_SIZE,
            max_size: Some(super::DEFAULT_QUERY_PAGE_SIZE),
            total_path: None,
            number_param: "offset",
            size_param: "count",
            stop: None,
        }),
        "sync" => Some(Paging {
            style: PagingStyle::Cursor {
                cursor: SYNC_CURSOR_PATH,
                has_more: SYNC_MORE_PATH,
            },
            start: 0,
            size: 100,
            max_size: Some(100),
            total_path: None,
            number_param: "modifiedTime",
            size_param: "",
            stop: None,
        }),
        _ => None,
    }
}

/// Whether a `query` page ends the paging: only an empty page does, because the server
/// silently drops rows the user may not see, so short pages happen mid-way.
pub fn is_last_query_page(rows_on_page: usize) -> bool {
    rows_on_page == 0
}

/// What one `sync` answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStep {
    /// Number of created or changed records in `updated`.
    pub updated: usize,
    /// Ids of deleted records.
    pub deleted: Vec<String>,
    /// `lastModifiedTime`: the cursor for the next call.
    pub last_modified_time: i64,
    /// Whether more changes wait beyond `last_modified_time`.
    pub more: bool,
}

/// Reads `updated`, `deleted`, `lastModifiedTime` and `more` from a `sync` answer.
pub fn sync_step(body: &Value) -> Result<SyncStep, String> {
    let result = body.get("result").ok_or("the sync answer has no result")?;
    let last_modified_time = match result.get("lastModifiedTime") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .ok_or("the sync answer has no integer lastModifiedTime")?;
    let deleted = result
        .get("deleted")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    Ok(SyncStep {
        updated: result.get("updated").and_then(Value::as_array).map_or(0, Vec::len),
        deleted,
        last_modified_time,
        more: result.get("more").and_then(success_flag).unwrap_or(false),
    })
}

/// The `modifiedTime` of the next `sync` call after one sent with `current`, or `None`
/// when the answer says nothing more waits. A `more` answer that does not move the
/// cursor forward is an error: asking again would loop, and skipping ahead would lose
/// the changes at that second. It cannot happen on a sound server, because the records
/// sharing the last timestamp come together, so a `more` answer always ends later than
/// the call's `modifiedTime`.
pub fn next_modified_time(current: i64, body: &Value) -> Result<Option<i64>, String> {
    let step = sync_step(body)?;
    if !step.more {
        return Ok(None);
    }
    if step.last_modified_time <= current {
        return Err(format!(
            "sync answered more=true but lastModifiedTime {} did not advance past the modifiedTime {current} \
             it was sent; asking again would return the same changes forever and skipping ahead would lose \
             changes, so reading stops here. Read this module with `query` on modifiedtime instead",
            step.last_modified_time
        ));
    }
    Ok(Some(step.last_modified_time))
}

/// Checks a `sync` answer against the call that got it (`params`, the business
/// parameters sent): a `more` answer must move the cursor past the `modifiedTime` sent.
pub fn check_sync_page(params: &Value, body: &Value) -> Result<(), String> {
    let sent = match params.get("modifiedTime") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .ok_or("sync needs an integer `modifiedTime` (epoch seconds), e.g. `<< window.start | timestamp >>`")?;
    next_modified_time(sent, body).map(|_| ())
}

/// The module's id prefix from a `describe` answer (`result.idPrefix`).
pub fn id_prefix(describe_body: &Value) -> Result<String, String> {
    let prefix = describe_body
        .pointer("/result/idPrefix")
        .ok_or("the describe answer has no result.idPrefix")?;
    let text = match prefix {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("idPrefix is not a number: {other}")),
    };
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("idPrefix '{text}' is not a number"));
    }
    Ok(text)
}

/// Per-row outcomes of a batch write: always `None`, webservice writes carry one record.
pub fn row_outcomes(_operation: &str, _body: &Value, _rows_sent: usize) -> Option<Vec<RowOutcome>> {
    None
}

/// The outcome of the one row a write call carried, or `None` when the call must be
/// retried rather than judged (throttled, session gone).
pub fn row_outcome(operation: &str, verdict: &Verdict, body: &Value) -> Option<RowOutcome> {
    match verdict {
        Verdict::Ok => Some(RowOutcome::written(written_id(operation, body))),
        Verdict::Failed { code, message } => Some(RowOutcome::Failed {
            message: format!("{operation} refused the row ({code}): {message}"),
            class: "rejected",
        }),
        Verdict::Throttled(_) | Verdict::SessionExpired(_) => None,
    }
}

/// The id of the record `create`, `update` or `revise` returned (`result.id`).
pub fn written_id(operation: &str, body: &Value) -> Option<String> {
    match operation.to_ascii_lowercase().as_str() {
        "create" | "update" | "revise" | "retrieve" => body
            .pointer("/result/id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_is_ok() {
        let body = json!({"success": true, "result": [{"id": "11x1", "accountname": "杭州云帆贸易有限公司"}]});
        assert_eq!(classify(200, &body), Verdict::Ok);
        assert!(matches!(classify(500, &body), Verdict::Failed { .. }));
    }

    #[test]
    fn every_error_spelling_is_read() {
        let expected = Verdict::Failed {
            code: "MANDATORY_FIELDS_MISSING".into(),
            message: "lastname does not have a value".into(),
        };
        for error in [
            json!({"code": "MANDATORY_FIELDS_MISSING", "message": "lastname does not have a value"}),
            json!({"errorCode": "MANDATORY_FIELDS_MISSING", "errorMessage": "lastname does not have a value"}),
            json!({"errorType": "MANDATORY_FIELDS_MISSING", "errorMsg": "lastname does not have a value"}),
        ] {
            assert_eq!(classify(200, &json!({"success": false, "error": error})), expected);
        }
        assert_eq!(
            classify(200, &json!({"success": false, "error": "boom"})),
            Verdict::Failed {
                code: "UNKNOWN".into(),
                message: "boom".into()
            }
        );
        assert!(
            matches!(classify(200, &json!({"success": false})), Verdict::Failed { ref code, .. } if code == "UNKNOWN")
        );
    }

    #[test]
    fn session_codes_ask_for_a_new_login() {
        for (code, message) in [
            ("INVALID_SESSIONID", "Session Identifier provided is Invalid"),
            ("SESSION_EXPIRED", "Session has life span over please login again"),
            ("SESSION_LEFT_IDLE", "Session has been invalidated to due lack activity"),
            ("AUTHENTICATION_REQUIRED", "Authencation required"),
        ] {
            let body = json!({"success": false, "error": {"errorCode": code, "errorMessage": message}});
            assert_eq!(
                classify(200, &body),
                Verdict::SessionExpired(format!("{code}: {message}"))
            );
        }
        let login_failure = json!({"success": false, "error": {"code": "INVALID_AUTH_TOKEN", "message": "Specified token is invalid or expired"}});
        assert!(matches!(classify(200, &login_failure), Verdict::Failed { .. }));
    }

    #[test]
    fn throttling_by_status_or_configured_code() {
        let body = json!({"success": false, "error": {"code": "TOO_MANY_REQUESTS", "message": "slow down"}});
        assert_eq!(
            classify(429, &body),
            Verdict::Throttled("TOO_MANY_REQUESTS: slow down".into())
        );
        assert_eq!(
            classify(429, &json!(null)),
            Verdict::Throttled("HTTP 429 Too Many Requests".into())
        );
        assert!(matches!(classify(200, &body), Verdict::Failed { .. }));
        let rules = Rules {
            throttle_codes: vec!["TOO_MANY_REQUESTS".into()],
            ..Rules::default()
        };
        assert_eq!(
            classify_with(&rules, 200, &body),
            Verdict::Throttled("TOO_MANY_REQUESTS: slow down".into())
        );
    }

    #[test]
    fn non_envelopes_fail_with_the_status() {
        let Verdict::Failed { code, message } = classify(502, &json!("<html>Bad Gateway</html>")) else {
            panic!("expected a failure");
        };
        assert_eq!(code, "HTTP 502");
        assert!(message.contains("not a webservice envelope"));
    }

    #[test]
    fn rows_and_paging_per_operation() {
        assert_eq!(records_path("query"), Some("$.result[*]"));
        assert_eq!(records_path("sync"), Some("$.result.updated[*]"));
        assert_eq!(records_path("create"), Some("$.result"));
        assert_eq!(records_path("delete"), None);
        let query = default_paging("query").unwrap();
        assert_eq!(
            (query.style, query.start, query.size, query.max_size),
            (PagingStyle::Offset, 0, 100, Some(100))
        );
        assert_eq!(
            default_paging("sync").unwrap().style,
            PagingStyle::Cursor {
                cursor: "$.result.lastModifiedTime",
                has_more: "$.result.more"
            }
        );
        assert_eq!(deleted_path("sync"), Some("$.result.deleted[*]"));
        assert_eq!(deleted_path("query"), None);
        assert!(default_paging("create").is_none());
        assert!(is_last_query_page(0));
        assert!(!is_last_query_page(37), "short pages happen when rows are hidden");
    }

    #[test]
    fn sync_cursor_moves_while_more() {
        let body = json!({"success": true, "result": {"updated": [{"id": "11x1"}, {"id": "12x9"}], "deleted": ["11x4"], "lastModifiedTime": 1709280600, "more": true}});
        assert_eq!(
            sync_step(&body).unwrap(),
            SyncStep {
                updated: 2,
                deleted: vec!["11x4".into()],
                last_modified_time: 1709280600,
                more: true
            }
        );
        assert_eq!(next_modified_time(1709280000, &body).unwrap(), Some(1709280600));
        assert!(
            next_modified_time(1709280600, &body).is_err(),
            "no progress must not loop"
        );
        let done = json!({"success": true, "result": {"updated": [], "deleted": [], "lastModifiedTime": "1709280600", "more": false}});
        assert_eq!(next_modified_time(1709280600, &done).unwrap(), None);
        assert!(sync_step(&json!({"success": true, "result": {"more": false}})).is_err());
    }

    #[test]
    fn a_sync_page_must_move_past_the_modified_time_it_was_sent() {
        let stalled = json!({"success": true, "result": {"updated": [{"id": "11x1"}], "deleted": [], "lastModifiedTime": 1709280600, "more": true}});
        let message = check_sync_page(&json!({"modifiedTime": 1709280600}), &stalled).unwrap_err();
        assert!(message.contains("did not advance"), "{message}");
        assert!(check_sync_page(&json!({"modifiedTime": "1709280000"}), &stalled).is_ok());
        let done = json!({"success": true, "result": {"updated": [], "deleted": [], "lastModifiedTime": 1709280600, "more": false}});
        assert!(check_sync_page(&json!({"modifiedTime": 1709280600}), &done).is_ok());
        assert!(check_sync_page(&json!({"modifiedTime": "2024-03-01"}), &done)
            .unwrap_err()
            .contains("epoch seconds"));
    }

    #[test]
    fn id_prefix_comes_from_describe() {
        let body = json!({"success": true, "result": {"name": "Accounts", "idPrefix": "11", "fields": []}});
        assert_eq!(id_prefix(&body).unwrap(), "11");
        assert_eq!(id_prefix(&json!({"result": {"idPrefix": 12}})).unwrap(), "12");
        assert!(id_prefix(&json!({"result": {"idPrefix": "1x"}})).is_err());
        assert!(id_prefix(&json!({"result": {}})).is_err());
    }

    #[test]
    fn one_row_writes_report_their_id_or_refusal() {
        let created = json!({"success": true, "result": {"id": "12x345", "lastname": "Li"}});
        assert_eq!(written_id("create", &created).as_deref(), Some("12x345"));
        assert_eq!(
            written_id("delete", &json!({"success": true, "result": {"status": "successful"}})),
            None
        );
        assert_eq!(
            row_outcome("create", &classify(200, &created), &created),
            Some(RowOutcome::written(Some("12x345".into())))
        );
        let refused = json!({"success": false, "error": {"code": "REFERENCE_INVALID", "message": "account_id refers to a missing record"}});
        let Some(RowOutcome::Failed { message, class }) = row_outcome("create", &classify(200, &refused), &refused)
        else {
            panic!("expected a refused row");
        };
        assert_eq!(class, "rejected");
        assert!(message.contains("REFERENCE_INVALID"));
        let expired = json!({"success": false, "error": {"code": "INVALID_SESSIONID", "message": "x"}});
        assert_eq!(row_outcome("create", &classify(200, &expired), &expired), None);
        assert_eq!(row_outcomes("create", &created, 1), None);
    }
}
