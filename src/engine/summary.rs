//! What a run gives back: the [`Summary`] of its counters and its [`Outcome`], each counter
//! meaning one thing (see the engine's promises).

use serde::Serialize;
use std::collections::BTreeMap;

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub scheme: String,
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Records read again in the same run under a source id already seen (the latest
    /// version, or a later deletion of the record, was kept), e.g. one supplier on many bills; also ledger rows replayed by
    /// this run and then read unchanged from the source again (sent once, not twice).
    pub duplicates: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Records the source reported deleted that this run settled: deleted in the target
    /// through `target.delete`, or, without one (or without a mapped target record), only
    /// counted and logged. Failed deletes count under `failed`.
    pub deleted: u64,
    /// Records that failed because a template read a field they do not have, by field.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub missing_fields: BTreeMap<String, u64>,
    /// Records whose `incremental.field` lies outside the window they were read in
    /// (beyond `lookback`): the window parameters or the source's filter look wrong.
    #[serde(skip_serializing_if = "is_zero")]
    pub outside_window: u64,
    /// Records whose `incremental.field` lies in the future (beyond a small clock skew).
    #[serde(skip_serializing_if = "is_zero")]
    pub in_future: u64,
    /// Records without a readable `incremental.field` (missing, or not a time).
    #[serde(skip_serializing_if = "is_zero")]
    pub field_unreadable: u64,
    /// Pages whose every record is older than the checkpoint the run resumed from.
    #[serde(skip_serializing_if = "is_zero")]
    pub stale_pages: u64,
    /// Ledger rows fed through the run again.
    pub replayed: u64,
    /// Creates left unfinished by an earlier run that were found in the target and adopted.
    pub reconciled: u64,
    /// Creates left unfinished by an earlier run that could not be checked (see the ledger).
    pub uncertain: u64,
    pub pages: u64,
    /// Requests sent to the target (retries included).
    pub requests: u64,
    /// Requests sent to the source (retries and per-record detail requests included).
    pub source_requests: u64,
    /// Windows read to their end (one for a source without `incremental`).
    pub windows: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// The run was stopped on request (a signal): `aborted` says so, and it is no failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// The run stopped because the source or the target could not be reached, and the
    /// target accepted nothing: try again later (exit code 75).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
    pub dry_run: bool,
    /// The run's id in the store's run history (none for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// How a run ended, as the run history and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Finished, with records in the failure ledger.
    FailedRows,
    Aborted,
    /// Stopped on request (SIGINT, SIGTERM).
    Stopped,
    /// A peer could not be reached and nothing was written.
    Unreachable,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::FailedRows,
        Outcome::Aborted,
        Outcome::Stopped,
        Outcome::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FailedRows => "failed_rows",
            Outcome::Aborted => "aborted",
            Outcome::Stopped => "stopped",
            Outcome::Unreachable => "unreachable",
        }
    }
}

impl Summary {
    pub fn outcome(&self) -> Outcome {
        if self.stopped {
            Outcome::Stopped
        } else if self.unreachable {
            Outcome::Unreachable
        } else if self.aborted.is_some() {
            Outcome::Aborted
        } else if self.failed > 0 {
            Outcome::FailedRows
        } else {
            Outcome::Ok
        }
    }

    /// The process exit code for this outcome. A stopped run gets 3 here; the command line
    /// knows which signal stopped it and exits 130 or 143 instead.
    pub fn exit_code(&self) -> i32 {
        use crate::error::exit;
        match self.outcome() {
            Outcome::Ok => exit::OK,
            Outcome::FailedRows => exit::ROWS_FAILED,
            Outcome::Aborted | Outcome::Stopped => exit::ABORTED,
            Outcome::Unreachable => exit::UNAVAILABLE,
        }
    }

    /// Records the target holds because of this run.
    pub fn written(&self) -> u64 {
        self.created + self.updated + self.deleted + self.reconciled
    }
}
