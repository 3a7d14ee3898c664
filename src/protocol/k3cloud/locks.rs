//! K3Cloud's row locks (reference §2): rows in `FDocumentStatus` B (submitted, 审核中) or C
//! (audited) refuse a Save/BatchSave, with an error ending `…单据已经审核！` (observed
//! failure). The letters A created, B submitted, C audited, D re-audit, Z draft are
//! Kingdee's ([INF] for their meaning). Statuses come from one `ExecuteBillQuery`; `UnAudit`,
//! `Submit` and `Audit` take `Ids` as a comma string and answer per id by `DIndex`
//! (reference §2 "Other ops"). What the engine does with them is [`crate::protocol::locks`].

use super::request::default_key_field;
use crate::protocol::locks::{LockOps, LockStep, LockedRows, Relock, RowLock};
use serde_json::{json, Value};
use std::collections::HashMap;

/// K3Cloud's lock requests.
pub static OPS: LockOps = LockOps {
    vendor: "K3Cloud",
    status_field: "FDocumentStatus",
    status_query,
    read_statuses,
    lock_of,
    step,
    step_name,
    status_code,
};

/// The lock handling of an update through `api` with `params`; `None` when the operation
/// saves nothing (only `Save` and `BatchSave` change rows).
pub fn relock_for(policy: LockedRows, api: &str, params: &Value) -> Option<Relock> {
    if api != "Save" && api != "BatchSave" {
        return None;
    }
    let form = params.get("formid").and_then(Value::as_str)?.to_string();
    let server_reaudits = match params.pointer("/data/IsAutoSubmitAndAudit") {
        Some(Value::Bool(on)) => *on,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Some(Relock {
        policy,
        key_field: default_key_field(&form),
        form,
        server_reaudits,
        ops: &OPS,
    })
}

fn id_list(ids: &[&str]) -> String {
    ids.iter().map(|id| id.trim()).collect::<Vec<_>>().join(",")
}

/// Whether every id is a number, so it can go into a filter unquoted.
fn numeric(ids: &[&str]) -> bool {
    ids.iter()
        .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// One `ExecuteBillQuery` reading the status of every id (reference §2 ExecuteBillQuery).
fn status_query(relock: &Relock, ids: &[&str]) -> (&'static str, Value) {
    let list = if numeric(ids) {
        id_list(ids)
    } else {
        ids.iter()
            .map(|id| format!("'{}'", id.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",")
    };
    (
        "ExecuteBillQuery",
        json!({"data": {
            "FormId": relock.form,
            "FieldKeys": format!("{},FDocumentStatus", relock.key_field),
            "FilterString": format!("{} IN ({list})", relock.key_field),
            "Limit": ids.len().max(1),
        }}),
    )
}

fn step_name(step: LockStep) -> &'static str {
    match step {
        LockStep::Unlock => "UnAudit",
        LockStep::Submit => "Submit",
        LockStep::Approve => "Audit",
    }
}

/// `UnAudit`, `Submit` or `Audit` of `ids`: `Ids` as a comma string (reference §2 "Other ops").
fn step(relock: &Relock, step: LockStep, ids: &[&str]) -> (&'static str, Value) {
    (
        step_name(step),
        json!({"formid": relock.form, "data": {"CreateOrgId": 0, "Numbers": [], "Ids": id_list(ids), "NetworkCtrl": ""}}),
    )
}

/// The status of each id from the status query's rows (`[[id, status], …]`).
fn read_statuses(rows: &Value) -> Result<HashMap<String, String>, String> {
    let Some(rows) = rows.as_array() else {
        return Err(format!("the status query answered {rows} instead of rows"));
    };
    let mut statuses = HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(id), Some(status)) = (row.get(0), row.get(1).and_then(Value::as_str)) else {
            return Err(format!("the status query answered a row without id and status: {row}"));
        };
        let id = match id {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        statuses.insert(id, status.to_string());
    }
    Ok(statuses)
}

/// A row's lock from its status (`None`: not found).
fn lock_of(status: Option<&str>) -> RowLock {
    match status {
        None => RowLock::Missing,
        Some("C") => RowLock::Audited,
        Some("B") => RowLock::Submitted,
        Some(_) => RowLock::Free,
    }
}

/// The `FDocumentStatus` letter of a lock; an unlocked (unaudited) row shows D, re-audit.
fn status_code(lock: RowLock) -> &'static str {
    match lock {
        RowLock::Free => "D",
        RowLock::Audited => "C",
        RowLock::Submitted => "B",
        RowLock::Missing => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relock(params: Value) -> Relock {
        relock_for(LockedRows::Reaudit, "BatchSave", &params).unwrap()
    }

    #[test]
    fn only_saves_are_guarded_and_the_server_flag_is_read() {
        let params = json!({"formid": "BD_Customer", "data": {"Model": [], "IsAutoSubmitAndAudit": true}});
        assert_eq!(relock_for(LockedRows::Reaudit, "Audit", &params), None);
        let r = relock(params);
        assert_eq!(
            (r.form.as_str(), r.key_field, r.server_reaudits),
            ("BD_Customer", "FCUSTID", true)
        );
        for (flag, expected) in [(json!("true"), true), (json!("false"), false), (json!(false), false)] {
            let r = relock(json!({"formid": "SAL_SaleOrder", "data": {"IsAutoSubmitAndAudit": flag}}));
            assert_eq!(r.server_reaudits, expected);
            assert_eq!(r.key_field, "FID");
        }
        assert!(!relock(json!({"formid": "BD_Customer", "data": {}})).server_reaudits);
    }

    #[test]
    fn requests_follow_the_reference_shapes() {
        let r = relock(json!({"formid": "BD_Customer", "data": {}}));
        let (api, query) = r.status_query(&["101", "102"]);
        assert_eq!(api, "ExecuteBillQuery");
        assert_eq!(query["data"]["FieldKeys"], "FCUSTID,FDocumentStatus");
        assert_eq!(query["data"]["FilterString"], "FCUSTID IN (101,102)");
        let (_, quoted) = r.status_query(&["a'b", "c"]);
        assert_eq!(quoted["data"]["FilterString"], "FCUSTID IN ('a''b','c')");
        let (api, unaudit) = r.step(LockStep::Unlock, &["101", "102"]);
        assert_eq!(api, "UnAudit");
        assert_eq!(unaudit["formid"], "BD_Customer");
        assert_eq!(unaudit["data"]["Ids"], "101,102", "Ids is a comma string");
        assert!(unaudit["data"]["Numbers"].is_array());
        assert_eq!(
            (r.step_name(LockStep::Submit), r.step_name(LockStep::Approve)),
            ("Submit", "Audit")
        );
    }

    #[test]
    fn statuses_and_locks() {
        let r = relock(json!({"formid": "BD_Customer", "data": {}}));
        let statuses = r.read_statuses(&json!([[101, "C"], ["102", "A"], [103, "B"]])).unwrap();
        assert_eq!(statuses["101"], "C");
        assert_eq!(r.lock_of(statuses.get("101").map(String::as_str)), RowLock::Audited);
        assert_eq!(r.lock_of(statuses.get("102").map(String::as_str)), RowLock::Free);
        assert_eq!(r.lock_of(statuses.get("103").map(String::as_str)), RowLock::Submitted);
        assert_eq!(r.lock_of(statuses.get("104").map(String::as_str)), RowLock::Missing);
        assert_eq!(r.lock_of(Some("D")), RowLock::Free);
        assert!(r.read_statuses(&json!({"Result": {}})).is_err());
        assert!(r.read_statuses(&json!([[101]])).is_err());
    }
}
