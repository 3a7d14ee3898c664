//! Submitted and audited rows (pure).
//!
//! K3Cloud refuses a Save/BatchSave that changes a row in status B (submitted) or C
//! (audited): `IsSuccess:false`, `MsgCode` 11, one error per package ending `…单据已经审核！`
//! (reference §2 "Write response", observed failure). The wording differs between
//! versions, so the lock is read from the row's `FDocumentStatus` (A created, B submitted,
//! C audited, D re-audit, Z draft: Kingdee's letters, [INF] for the meaning), fetched with
//! one `ExecuteBillQuery` per batch, never from the error text.
//!
//! What an update does with a locked row is the connection's `locked_rows` setting:
//! - `reaudit` (default): `UnAudit` the audited rows (one request per batch, `Ids` as a comma
//!   string, outcomes by `DIndex`), save, then leave them audited again. A save that carries
//!   `IsAutoSubmitAndAudit: true` re-audits by itself; otherwise `Submit` then `Audit` follow.
//! - `unaudit`: the same, but the saved rows stay unaudited for someone to audit in K3Cloud.
//! - `refuse`: locked rows are not touched; each fails into the ledger saying why.
//!
//! A submitted row (B) is never withdrawn: it waits for its approver, so it fails with a
//! message saying so. The engine drives the steps (`engine::relock`) and records each
//! unaudited row as a write intent until it is audited again.

use super::request::default_key_field;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// What an update does with a submitted or audited row (`settings.locked_rows`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockedRows {
    /// Unaudit, save, audit again (the server does it when the save has `IsAutoSubmitAndAudit`).
    #[default]
    Reaudit,
    /// Unaudit and save; the row stays unaudited.
    Unaudit,
    /// Leave locked rows alone and fail them into the ledger.
    Refuse,
}

/// How one update batch deals with locked rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relock {
    pub policy: LockedRows,
    /// The form of the saved rows (`formid`).
    pub form: String,
    /// Its primary key field (`FCUSTID` for `BD_Customer`).
    pub key_field: &'static str,
    /// The save carries `IsAutoSubmitAndAudit: true`, so saved rows end audited.
    pub server_reaudits: bool,
}

/// A row's lock, from its `FDocumentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// Created, re-audit or draft: a save may change it.
    Free,
    /// Audited: `UnAudit` unlocks it.
    Audited,
    /// Submitted and waiting for approval: only its approver can move it.
    Submitted,
    /// The query did not return the row: it is gone from K3Cloud.
    Missing,
}

/// The lock handling of an update through `api` with `params`; `None` when the operation
/// saves nothing (only `Save` and `BatchSave` change rows).
pub fn relock_for(policy: LockedRows, api: &str, params: &Value) -> Option<Relock> {
    if api != "Save" && api != "BatchSave" {
        return None;
    }
    let form = params.get("formid").and_then(Value::as_str)?.to_string();
    let flag = params.pointer("/data/IsAutoSubmitAndAudit");
    let server_reaudits = match flag {
        Some(Value::Bool(on)) => *on,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Some(Relock {
        policy,
        key_field: default_key_field(&form),
        form,
        server_reaudits,
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

impl Relock {
    /// One `ExecuteBillQuery` reading the status of every id (reference §2 ExecuteBillQuery).
    pub fn status_query(&self, ids: &[&str]) -> (&'static str, Value) {
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
                "FormId": self.form,
                "FieldKeys": format!("{},FDocumentStatus", self.key_field),
                "FilterString": format!("{} IN ({list})", self.key_field),
                "Limit": ids.len().max(1),
            }}),
        )
    }

    /// `Submit`, `Audit` or `UnAudit` of `ids`: `Ids` as a comma string (reference §2 "Other ops").
    pub fn list_operation(&self, op: &'static str, ids: &[&str]) -> (&'static str, Value) {
        (
            op,
            json!({"formid": self.form, "data": {"CreateOrgId": 0, "Numbers": [], "Ids": id_list(ids), "NetworkCtrl": ""}}),
        )
    }
}

/// The status of each id from the status query's rows (`[[id, status], …]`).
pub fn read_statuses(rows: &Value) -> Result<HashMap<String, String>, String> {
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
pub fn row_lock(status: Option<&str>) -> RowLock {
    match status {
        None => RowLock::Missing,
        Some("C") => RowLock::Audited,
        Some("B") => RowLock::Submitted,
        Some(_) => RowLock::Free,
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
        let (api, unaudit) = r.list_operation("UnAudit", &["101", "102"]);
        assert_eq!(api, "UnAudit");
        assert_eq!(unaudit["formid"], "BD_Customer");
        assert_eq!(unaudit["data"]["Ids"], "101,102", "Ids is a comma string");
        assert!(unaudit["data"]["Numbers"].is_array());
    }

    #[test]
    fn statuses_and_locks() {
        let statuses = read_statuses(&json!([[101, "C"], ["102", "A"], [103, "B"]])).unwrap();
        assert_eq!(statuses["101"], "C");
        assert_eq!(row_lock(statuses.get("101").map(String::as_str)), RowLock::Audited);
        assert_eq!(row_lock(statuses.get("102").map(String::as_str)), RowLock::Free);
        assert_eq!(row_lock(statuses.get("103").map(String::as_str)), RowLock::Submitted);
        assert_eq!(row_lock(statuses.get("104").map(String::as_str)), RowLock::Missing);
        assert_eq!(row_lock(Some("D")), RowLock::Free);
        assert!(read_statuses(&json!({"Result": {}})).is_err());
        assert!(read_statuses(&json!([[101]])).is_err());
    }
}
