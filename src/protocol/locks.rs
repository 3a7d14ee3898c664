//! Rows a target locks (pure): what an update does with a row the vendor refuses to change
//! in its current state (K3Cloud's submitted and audited rows, reference §2 "Write
//! response", observed failure).
//!
//! The lock is read from each row's status field, fetched with one query per batch, never
//! from an error's wording (which differs between versions). What an update does with a
//! locked row is the connection's `locked_rows` setting:
//! - `reaudit` (default): unlock the approved rows (one request per batch, outcomes per
//!   id), save, then leave them approved again. A save that approves by itself (K3Cloud's
//!   `IsAutoSubmitAndAudit: true`) needs nothing more; otherwise submit and approve follow.
//! - `unaudit`: the same, but the saved rows stay unlocked for someone to approve.
//! - `refuse`: locked rows are not touched; each fails into the ledger saying why.
//!
//! A submitted row is never withdrawn: it waits for its approver, so it fails with a
//! message saying so. The vendor supplies the request shapes ([`LockOps`]); the engine
//! drives the steps (`engine::relock`) and records each unlocked row as a write intent
//! until it is locked again.

use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// The form (object) of the saved rows, for requests and messages.
    pub form: String,
    /// Its primary key field (`FCUSTID` for `BD_Customer`).
    pub key_field: &'static str,
    /// The save approves rows by itself (K3Cloud `IsAutoSubmitAndAudit: true`).
    pub server_reaudits: bool,
    /// The vendor's requests and status letters.
    pub ops: &'static LockOps,
}

/// A step of unlocking or locking rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStep {
    /// Undo an approval (K3Cloud `UnAudit`).
    Unlock,
    /// Submit for approval (K3Cloud `Submit`).
    Submit,
    /// Approve (K3Cloud `Audit`).
    Approve,
}

/// What a vendor with row locks supplies: its requests and what its statuses mean.
pub struct LockOps {
    /// The vendor, for messages.
    pub vendor: &'static str,
    /// The row field holding the status (for messages).
    pub status_field: &'static str,
    /// One query reading the status of every id: `(api, params)`.
    pub status_query: fn(&Relock, &[&str]) -> (&'static str, Value),
    /// The status of each id from that query's answer.
    pub read_statuses: fn(&Value) -> Result<HashMap<String, String>, String>,
    /// A status's lock (`None`: the row was not found).
    pub lock_of: fn(Option<&str>) -> RowLock,
    /// A lock step for `ids`: `(api, params)`.
    pub step: fn(&Relock, LockStep, &[&str]) -> (&'static str, Value),
    /// The vendor's name of a step (`UnAudit`), for messages.
    pub step_name: fn(LockStep) -> &'static str,
    /// The status value a lock is known by (`C` for audited), for messages; for
    /// [`RowLock::Free`], the value of an unlocked row.
    pub status_code: fn(RowLock) -> &'static str,
}

impl std::fmt::Debug for LockOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockOps")
            .field("vendor", &self.vendor)
            .finish_non_exhaustive()
    }
}

/// One table per vendor: the same table is the same vendor.
impl PartialEq for LockOps {
    fn eq(&self, other: &LockOps) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for LockOps {}

impl Relock {
    /// The query reading the status of every id.
    pub fn status_query(&self, ids: &[&str]) -> (&'static str, Value) {
        (self.ops.status_query)(self, ids)
    }

    /// The request of one lock step for `ids`.
    pub fn step(&self, step: LockStep, ids: &[&str]) -> (&'static str, Value) {
        (self.ops.step)(self, step, ids)
    }

    /// The statuses a status query answered.
    pub fn read_statuses(&self, answer: &Value) -> Result<HashMap<String, String>, String> {
        (self.ops.read_statuses)(answer)
    }

    /// The lock of a row with this status.
    pub fn lock_of(&self, status: Option<&str>) -> RowLock {
        (self.ops.lock_of)(status)
    }

    /// The vendor's name of a step.
    pub fn step_name(&self, step: LockStep) -> &'static str {
        (self.ops.step_name)(step)
    }

    /// A lock as the vendor's status field shows it (`FDocumentStatus C`), for messages.
    pub fn state(&self, lock: RowLock) -> String {
        format!("{} {}", self.ops.status_field, (self.ops.status_code)(lock))
    }

    /// The vendor's name, for messages.
    pub fn vendor(&self) -> &'static str {
        self.ops.vendor
    }
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
