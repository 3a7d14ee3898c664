//! What a push says (pure): the seed-000 standard and non-standard formats and the
//! seed-001 Fxiaoke push shape, read into one [`Push`], and the answers each expects.
//!
//! - **Standard** (seed 000 §4.1): the `id` header is non-empty and the body is JSON
//!   `{objAPIName, masterFieldVal, detailFieldVals}`. A body that does not fit is refused
//!   (the platform itself fails such a push with a parsing error).
//! - **Non-standard** (seed 000 §4.2): no `id` header; the body is anything (JSON, XML,
//!   form, text) and the scheme maps it with its codec, `records` and `id`.
//! - **Fxiaoke push** (seed 001): `POST /cgi/crm/erp/syncdata/objdata/push?thirdTraceId=…`
//!   with `{data: {objAPIName, dataCenterId, id, masterFieldVal, detailFieldVals, directSync,
//!   destObjectApiName}}`; `data.id` present means the standard format, absent the
//!   non-standard one; `directSync: true` asks for the outcome in the answer.
//!
//! The headers of seed 000 §4 (`tenantId`, `dataCenterId`, `objectApiName`, `version`,
//! `operationType`) are read for routing; `operationType` 3 is a cancellation.

use serde_json::{json, Map, Value};

/// The platform's success code (seed 000 §4, seed 001's ERP push URL family).
pub const SUCCESS_CODE: &str = "s106240000";

/// Which shape a push arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{objAPIName, masterFieldVal, detailFieldVals}` with an `id` header (or `data.id`).
    Standard,
    /// Any body; the scheme says how to read it.
    NonStandard,
}

/// One push, read but not yet mapped by a scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub shape: Shape,
    /// The pushed record's id (`id` header, `data.id`); none for a non-standard push.
    pub id: Option<String>,
    /// `objectApiName` header or `objAPIName`, for routing.
    pub object: Option<String>,
    /// `dataCenterId` header or `data.dataCenterId`, for routing.
    pub data_center: Option<String>,
    /// `operationType: 3`: the record was cancelled at the sender.
    pub cancel: bool,
    /// Fxiaoke `directSync`: process first, answer with the outcome.
    pub direct_sync: bool,
    /// Fxiaoke `thirdTraceId` (part of the dedupe key).
    pub trace: Option<String>,
    /// Standard: the record (`{objAPIName, masterFieldVal, detailFieldVals}`); non-standard:
    /// `None` (the scheme decodes the raw body).
    pub record: Option<Value>,
}

/// Why a push was refused as malformed (answered 400; nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// A header's value, trimmed; `None` when absent or blank.
fn header(headers: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    headers(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Checks the standard body shape and returns it as the record.
fn standard_record(body: Value, what: &str) -> Result<Value, FormatError> {
    let Value::Object(map) = body else {
        return Err(FormatError(format!(
            "{what} must be a JSON object {{objAPIName, masterFieldVal, detailFieldVals}}"
        )));
    };
    match map.get("objAPIName") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        _ => return Err(FormatError(format!("{what}: `objAPIName` must be a non-empty string"))),
    }
    if !matches!(map.get("masterFieldVal"), Some(Value::Object(_))) {
        return Err(FormatError(format!(
            "{what}: `masterFieldVal` must be an object of fields"
        )));
    }
    match map.get("detailFieldVals") {
        None | Some(Value::Null) => {}
        Some(Value::Object(details)) => {
            if let Some((name, _)) = details.iter().find(|(_, rows)| !rows.is_array()) {
                return Err(FormatError(format!(
                    "{what}: `detailFieldVals.{name}` must be a list of detail rows"
                )));
            }
        }
        Some(_) => {
            return Err(FormatError(format!(
                "{what}: `detailFieldVals` must map each detail object to its list of rows"
            )))
        }
    }
    Ok(Value::Object(map))
}

/// Reads a push to a seed-000 endpoint: standard when the `id` header is non-empty.
/// `headers` looks a header up by name, ignoring case.
pub fn read_platform_push(headers: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> Result<Push, FormatError> {
    let id = header(headers, "id");
    let cancel = header(headers, "operationType").as_deref() == Some("3");
    let data_center = header(headers, "dataCenterId");
    let mut object = header(headers, "objectApiName");
    let (shape, record) = match &id {
        Some(_) => {
            let body: Value = serde_json::from_slice(body).map_err(|e| {
                FormatError(format!(
                    "the `id` header marks a standard-format push, whose body must be JSON: {e}"
                ))
            })?;
            let record = standard_record(body, "a standard-format body")?;
            if object.is_none() {
                object = record["objAPIName"].as_str().map(str::to_string);
            }
            (Shape::Standard, Some(record))
        }
        None => (Shape::NonStandard, None),
    };
    Ok(Push {
        shape,
        id,
        object,
        data_center,
        cancel,
        direct_sync: false,
        trace: None,
        record,
    })
}

/// Reads a push in the Fxiaoke ERP data push shape (seed 001).
pub fn read_fxiaoke_push(third_trace_id: Option<&str>, body: &[u8]) -> Result<Push, FormatError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FormatError(format!("an ERP data push body must be JSON `{{\"data\": {{…}}}}`: {e}")))?;
    let Some(Value::Object(data)) = value.get("data") else {
        return Err(FormatError("an ERP data push needs a `data` object (seed 001)".into()));
    };
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| match v {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    let id = text("id");
    let direct_sync = matches!(data.get("directSync"), Some(Value::Bool(true)));
    if direct_sync && text("destObjectApiName").is_none() {
        return Err(FormatError(
            "`directSync: true` needs `destObjectApiName` (seed 001: required for real-time sync)".into(),
        ));
    }
    let (shape, record) = match &id {
        Some(_) => {
            let mut fields = Map::new();
            for key in ["objAPIName", "masterFieldVal", "detailFieldVals"] {
                if let Some(v) = data.get(key) {
                    fields.insert(key.to_string(), v.clone());
                }
            }
            (
                Shape::Standard,
                Some(standard_record(Value::Object(fields), "`data` of a standard push")?),
            )
        }
        None => (Shape::NonStandard, None),
    };
    Ok(Push {
        shape,
        object: text("objAPIName"),
        data_center: text("dataCenterId"),
        id,
        cancel: false,
        direct_sync,
        trace: third_trace_id.map(str::to_string).filter(|t| !t.is_empty()),
        record,
    })
}

/// The seed-000 answer: `errCode` `s106240000` on success (with Ferry's inbox id), a
/// Ferry code `s3062400NNN`-style (`NNN` the HTTP status) with the reason otherwise — the
/// platform's own failure codes are not published (reference §6, [UNK]).
pub fn platform_answer(status: u16, message: &str, inbox_id: Option<i64>) -> Value {
    if status < 300 {
        let mut answer = json!({"errCode": SUCCESS_CODE, "errMsg": "Success"});
        if let Some(id) = inbox_id {
            answer["inboxId"] = json!(id);
        }
        answer
    } else {
        json!({"errCode": format!("s306240{status}"), "errMsg": message})
    }
}

/// The Fxiaoke answer (seed 001): `errorCode` 0 on success, else the HTTP status.
pub fn fxiaoke_answer(status: u16, message: &str, trace_id: &str) -> Value {
    let ok = status < 300;
    json!({
        "traceId": trace_id,
        "errorCode": if ok { 0 } else { i64::from(status) },
        "errorMessage": if ok { "OK" } else { message },
        "errorDescription": if ok { "success" } else { message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_string())
        }
    }

    const STANDARD: &str =
        r#"{"objAPIName":"SaleOrderObj","masterFieldVal":{"Key1":"v1"},"detailFieldVals":{"Lines":[{"Key4":"v4"}]}}"#;

    #[test]
    fn the_id_header_makes_a_push_standard() {
        let h = headers(&[("id", "SO-1"), ("dataCenterId", "dc1"), ("operationType", "3")]);
        let push = read_platform_push(&h, STANDARD.as_bytes()).unwrap();
        assert_eq!(push.shape, Shape::Standard);
        assert_eq!(push.id.as_deref(), Some("SO-1"));
        assert_eq!(
            push.object.as_deref(),
            Some("SaleOrderObj"),
            "objAPIName routes when no header"
        );
        assert_eq!(push.data_center.as_deref(), Some("dc1"));
        assert!(push.cancel);
        assert_eq!(push.record.unwrap()["masterFieldVal"]["Key1"], "v1");

        let plain = headers(&[("objectApiName", "SaleOrderObj")]);
        let push = read_platform_push(&plain, b"<order><no>1</no></order>").unwrap();
        assert_eq!((push.shape, push.id, push.record), (Shape::NonStandard, None, None));
        assert!(!push.cancel);
    }

    #[test]
    fn a_standard_push_that_does_not_fit_is_refused_with_the_reason() {
        let h = headers(&[("id", "SO-1")]);
        for (body, reason) in [
            ("not json", "must be JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"masterFieldVal":{}}"#, "`objAPIName`"),
            (r#"{"objAPIName":"A","masterFieldVal":[]}"#, "`masterFieldVal`"),
            (
                r#"{"objAPIName":"A","masterFieldVal":{},"detailFieldVals":{"L":{}}}"#,
                "detailFieldVals.L",
            ),
        ] {
            let error = read_platform_push(&h, body.as_bytes()).unwrap_err();
            assert!(error.0.contains(reason), "{body}: {error}");
        }
    }

    #[test]
    fn fxiaoke_pushes_read_data_and_the_trace_id() {
        let body = r#"{"data":{"objAPIName":"erpSalesOrderObj","dataCenterId":"63f8","id":"111","directSync":false,
            "masterFieldVal":{"number":"04270002"},"detailFieldVals":{"erpSalesOrderProductObj":[{"number":"1"}]}}}"#;
        let push = read_fxiaoke_push(Some("trace-9"), body.as_bytes()).unwrap();
        assert_eq!(push.shape, Shape::Standard);
        assert_eq!(
            (push.id.as_deref(), push.trace.as_deref(), push.data_center.as_deref()),
            (Some("111"), Some("trace-9"), Some("63f8"))
        );
        assert_eq!(push.record.unwrap()["masterFieldVal"]["number"], "04270002");

        let loose = read_fxiaoke_push(None, br#"{"data":{"objAPIName":"x","anything":[1,2]}}"#).unwrap();
        assert_eq!(loose.shape, Shape::NonStandard);
        let direct = read_fxiaoke_push(
            None,
            br#"{"data":{"id":"1","directSync":true,"objAPIName":"x","masterFieldVal":{}}}"#,
        );
        assert!(direct.unwrap_err().0.contains("destObjectApiName"));
        assert!(read_fxiaoke_push(None, b"{}").unwrap_err().0.contains("`data`"));
    }

    #[test]
    fn answers_follow_each_family() {
        assert_eq!(
            platform_answer(200, "", Some(7)),
            json!({"errCode": "s106240000", "errMsg": "Success", "inboxId": 7})
        );
        assert_eq!(platform_answer(401, "wrong token", None)["errCode"], "s306240401");
        let ok = fxiaoke_answer(200, "", "E-1");
        assert_eq!(
            (ok["errorCode"].clone(), ok["traceId"].clone()),
            (json!(0), json!("E-1"))
        );
        assert_eq!(fxiaoke_answer(400, "bad", "E-2")["errorCode"], 400);
    }
}
