//! The persistent store (layer 3, an IO edge): id mappings, checkpoints, the
//! failure ledger and run history.
//!
//! # What it owns and promises
//! - **Narrow traits** ([`MappingStore`], [`CheckpointStore`], [`FailureLedger`],
//!   [`RunHistory`], [`BatchWriter`]) are implemented by every backend and by the
//!   closed enum [`Store`], which the engine holds. `Store` is cheap to clone (the
//!   backends keep their state behind an `Arc`) and dispatches statically, one
//!   `match` per method. Trait methods return `impl Future + Send` rather than
//!   being plain `async fn`, so generic callers can spawn them too.
//! - **One transaction per batch.** [`BatchWriter::commit_batch`] applies a batch's
//!   mapping upserts, failure resolutions and new failures atomically: after a
//!   crash either all of a batch is visible or none of it is. Checkpoints are
//!   separate: move one only after the batches it covers are committed (a crash
//!   in between redoes work, which the mappings make safe).
//! - **Mapping upserts never forget a target id**: an upsert whose `target_id`
//!   (or `target_name`) is `None` keeps the stored one, and `first_synced_at` keeps
//!   its first value. Call [`MappingStore::delete_mapping`] to forget a mapping.
//!   [`Mapping::detail_ids`] follows the same rule as a whole: `Some` replaces the stored
//!   map (the writer that learned ids passes the complete map), `None` keeps it.
//! - **Failures**: at most one *open* failure per `(scheme, source_id, stage)`.
//!   Recording it again adds one to `attempts`, moves `last_seen`, replaces
//!   `error_class`, `message` and `payload`, and keeps `first_seen`. Skipped and
//!   resolved failures stay as history; a later failure opens a fresh row.
//! - **Timestamps** are stored as integer milliseconds since the Unix epoch (UTC)
//!   in every backend, so values read back are truncated to milliseconds. Integers
//!   were chosen over RFC 3339 text because they are smaller, sort and compare
//!   cheaply and map to `BIGINT` in Postgres unchanged.
//! - **Listing order** is stable: mappings by `(scheme, source_object, source_id)`
//!   with source ids in natural order of their trailing number ([`natural_key`]: `1, 2,
//!   10`, `SO-9, SO-10`), failures newest `last_seen` first, runs newest first.
//! - **Mapping statuses** are `created`, `updated`, `failed`, `pending` and `deleted` (the
//!   target record was deleted because its source record was); only `created` and
//!   `updated` mappings answer `mapped_id`.
//! - **Write intents** ([`IntentLog`]) are committed before a target write and deleted by
//!   the batch commit that stores its answer ([`BatchCommit::settled`]); the ones found at
//!   the start of a run mark writes whose outcome is unknown.
//! - **Rate budgets** ([`RateBudget`]) are token buckets updated in one statement, so
//!   several processes sharing a store share the budget.
//! - **Field mappings** ([`FieldMappingStore`]): value pairs per `(data_center, channel,
//!   data_type)` table, unique in both directions (see `field_mappings.rs`).
//! - **Inbox** ([`InboxStore`]): receive mode's pushes, stored before they are answered,
//!   deduplicated per scheme and claimed by workers with leases (see `inbox.rs`).
//! - **Record events** ([`EventLog`]) are a bounded history per record for `ferry explain`:
//!   written only when a record was written or failed, at most `keep` per record (older
//!   ones are deleted in the same transaction), listed newest first.
//! - **Errors** name the store location and say what to do; they never quote a
//!   record payload. [`StoreError::is_retryable`] is true only for busy/locked.
//!
//! All SQL lives under `store/`; the schemas are in `migrations/sqlite/NNNN_*.sql`
//! and `migrations/postgres/NNNN_*.sql` and are applied on open.

pub mod field_csv;
mod field_mappings;
pub mod lock;
mod memory;
pub mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use field_mappings::{
    describe_table, FieldMapping, FieldMappingChanges, FieldMappingFilter, FieldMappingStore, FieldSide, FieldTable,
    PlatformFieldMapping,
};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, SqliteSync};

/// Most ids a single [`MappingQuery`] may carry (source and target ids together).
pub const MAX_QUERY_IDS: usize = 10_000;

/// How far a mapping got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingStatus {
    /// The target record was created by ferry.
    Created,
    /// An existing target record was updated.
    Updated,
    /// The last attempt failed; see `last_error` and the failure ledger.
    Failed,
    /// Seen but not written yet.
    Pending,
    /// The source deleted the record and ferry deleted its target record (`target_id`
    /// names the record that was deleted). A record that comes back is created anew.
    Deleted,
}

/// The stage of the pipeline at which a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureStage {
    Fetch,
    Transform,
    Write,
}

/// Where a ledger entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureStatus {
    /// Still failing; retried by the next run.
    Open,
    /// A person decided not to retry it.
    Skipped,
    /// The record went through later.
    Resolved,
}

/// A text did not name a variant of one of the store's enumerations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' — choose from {choices}")]
pub struct ParseStatusError {
    pub what: &'static str,
    pub value: String,
    pub choices: &'static str,
}

macro_rules! text_enum {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            /// The lower-case text used in the database, the CLI and JSON.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseStatusError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(ParseStatusError {
                        what: $what,
                        value: text.to_owned(),
                        choices: concat!($($text, ", "),+).trim_end_matches(", "),
                    }),
                }
            }
        }
    };
}

text_enum!(MappingStatus, "mapping status", Created => "created", Updated => "updated", Failed => "failed", Pending => "pending", Deleted => "deleted");
text_enum!(FailureStage, "failure stage", Fetch => "fetch", Transform => "transform", Write => "write");
text_enum!(WriteOperation, "write operation", Create => "create", Update => "update", Relock => "relock", Delete => "delete", Writeback => "writeback");
text_enum!(EventOutcome, "event outcome", Created => "created", Updated => "updated", Unchanged => "unchanged", Failed => "failed");
text_enum!(FailureStatus, "failure status", Open => "open", Skipped => "skipped", Resolved => "resolved");

mod inbox;
pub use inbox::{Appended, InboxDepth, InboxRow, InboxStore, NewPush, PushOutcome, PushStatus};

/// Which target record a source record became. Keyed by `(scheme, source_object, source_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub scheme: String,
    pub source_object: String,
    pub source_id: String,
    pub source_name: Option<String>,
    pub target_object: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub status: MappingStatus,
    pub payload_hash: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub first_synced_at: Option<DateTime<Utc>>,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The target's ids of the record's detail rows, as
    /// `{"<list path>": {"<detail key>": <target row id>}}` (see `for_each` `key` and
    /// `target_id`); an upsert with `None` keeps the stored map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_ids: Option<serde_json::Value>,
}

/// A ledger entry: one source record that failed at one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub id: i64,
    pub scheme: String,
    pub source_id: String,
    pub stage: FailureStage,
    pub error_class: String,
    pub message: String,
    pub attempts: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub payload: Option<serde_json::Value>,
    pub status: FailureStatus,
}

/// A failure to record (or to count again, if it is already open).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFailure {
    pub scheme: String,
    pub source_id: String,
    pub stage: FailureStage,
    pub error_class: String,
    pub message: String,
    pub payload: Option<serde_json::Value>,
}

/// One run of a scheme. `status` is free text chosen by the engine (`running` while it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: i64,
    pub scheme: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub summary: Option<serde_json::Value>,
}

/// What one event did to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventOutcome {
    Created,
    Updated,
    /// Sent again on request (`ferry run --ids`) while its payload had not changed.
    Unchanged,
    Failed,
}

/// One thing that happened to one record in one run (see [`EventLog`]). Everything in it is
/// already redacted by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvent {
    pub scheme: String,
    pub source_id: String,
    pub run_id: i64,
    pub at: DateTime<Utc>,
    pub outcome: EventOutcome,
    pub payload_hash: Option<String>,
    /// The window the record was read in (`start → end`), or how it came (`ledger replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The row Ferry rendered from the record, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<serde_json::Value>,
    /// What was sent, e.g. `create POST /orders/batch (batch 3-0, 100 rows)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The target's answer for this row: `{"target_id": …}` or `{"class": …, "message": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

/// The JSON kept in the `detail` column of the SQL backends.
#[derive(Deserialize)]
pub(crate) struct EventDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

impl RecordEvent {
    /// The `detail` column's text.
    pub(crate) fn detail_json(&self) -> Result<String, StoreError> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            window: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            row: &'a Option<serde_json::Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            answer: &'a Option<serde_json::Value>,
        }
        serde_json::to_string(&Out {
            window: &self.window,
            row: &self.row,
            request: &self.request,
            answer: &self.answer,
        })
        .map_err(|e| StoreError::InvalidRequest(format!("a record event cannot be stored: {e}")))
    }

    /// An event read back from its columns.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_columns(
        scheme: String,
        source_id: String,
        run_id: i64,
        at: i64,
        outcome: &str,
        payload_hash: Option<String>,
        detail: &str,
    ) -> Result<RecordEvent, String> {
        let detail: EventDetail =
            serde_json::from_str(detail).map_err(|e| format!("a stored record event is invalid: {e}"))?;
        Ok(RecordEvent {
            scheme,
            source_id,
            run_id,
            at: DateTime::from_timestamp_millis(at).ok_or_else(|| format!("impossible event time {at}"))?,
            outcome: outcome.parse().map_err(|e: ParseStatusError| e.to_string())?,
            payload_hash,
            window: detail.window,
            row: detail.row,
            request: detail.request,
            answer: detail.answer,
        })
    }
}

/// A `record_events` row as the SQL backends read it: scheme, source id, run id, time (ms),
/// outcome, payload hash, detail JSON.
pub(crate) type EventColumns = (String, String, i64, i64, String, Option<String>, String);

/// Most events [`EventLog::record_events`] keeps per record.
pub const MAX_KEEP_EVENTS: u32 = 1_000;

/// The bounded history of each record, for `ferry explain`.
pub trait EventLog {
    /// Store `events` in one transaction and keep only the newest `keep` events of each
    /// record they name (`keep` 0 stores nothing; at most [`MAX_KEEP_EVENTS`]).
    fn record_events(&self, events: Vec<RecordEvent>, keep: u32)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record's events, newest first, at most `limit`.
    fn record_events_for(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordEvent>, StoreError>> + Send;
}

/// Events grouped by scheme, with the distinct source ids of each (for trimming).
pub(crate) fn event_ids_by_scheme(events: &[RecordEvent]) -> std::collections::BTreeMap<&str, Vec<&str>> {
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for e in events {
        let ids = by.entry(e.scheme.as_str()).or_default();
        if !ids.contains(&e.source_id.as_str()) {
            ids.push(&e.source_id);
        }
    }
    by
}

pub(crate) fn check_keep(keep: u32) -> Result<(), StoreError> {
    if keep > MAX_KEEP_EVENTS {
        return Err(StoreError::InvalidRequest(format!(
            "at most {MAX_KEEP_EVENTS} events per record may be kept, got {keep}"
        )));
    }
    Ok(())
}

/// Everything one target batch changes, committed in ONE transaction.
///
/// Applied in this order: mapping upserts, then resolutions, then new failures,
/// so a failure recorded by this batch is never hidden by a resolution in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchCommit {
    /// Mapping upserts, applied in order (a later entry for the same key wins).
    pub mappings: Vec<Mapping>,
    /// Failures to open, or to count again if already open.
    pub failures: Vec<NewFailure>,
    /// `(scheme, source_id)` pairs that succeeded now: their open failures become resolved.
    pub resolved: Vec<(String, String)>,
    /// `(scheme, batch_id)` of write intents this commit settles: they are deleted.
    pub settled: Vec<(String, String)>,
}

impl BatchCommit {
    /// True when committing would change nothing.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty() && self.failures.is_empty() && self.resolved.is_empty() && self.settled.is_empty()
    }
}

impl StoreError {
    /// A statement that failed: [`StoreError::Busy`] (retryable) when another writer held
    /// the lock, [`StoreError::Query`] otherwise.
    pub(crate) fn statement(location: String, action: &'static str, busy: bool, reason: String) -> StoreError {
        if busy {
            StoreError::Busy {
                location,
                action,
                reason,
            }
        } else {
            StoreError::Query {
                location,
                action,
                reason,
            }
        }
    }
}

/// Which write an intent announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteOperation {
    Create,
    Update,
    /// A row the target locks (an audited K3Cloud row) was unlocked for an update and is
    /// not yet locked again; a run that finds one left behind locks it again.
    Relock,
    /// The target record of a record deleted at the source is being deleted.
    Delete,
    /// A created record's target id is to be written back to the source (`target.writeback`).
    Writeback,
}

/// A row about to be written to the target, committed before the request goes out and
/// deleted (settled) in the transaction that stores the answer. One left behind means the
/// process died in between: the write may or may not have happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteIntent {
    pub scheme: String,
    pub source_object: String,
    pub source_id: String,
    pub source_name: Option<String>,
    /// Unique per batch and run, e.g. `17-3` (run 17, batch 3).
    pub batch_id: String,
    pub operation: WriteOperation,
    /// The row's business key (`target.key`), for looking the record up.
    pub business_key: Option<String>,
    /// The mapped target id (updates).
    pub target_id: Option<String>,
    pub payload_hash: String,
    /// The source record, redacted; kept only when the target has no look-up, so that an
    /// uncertain row can be replayed from the ledger.
    pub payload: Option<serde_json::Value>,
    /// The row exactly as sent, kept for a create with `retry_writes: idempotency_key`: a
    /// run that finds the intent left behind sends the same rows under the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Filters for [`MappingStore::query_mappings`]. Empty id lists and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingQuery {
    pub scheme: Option<String>,
    pub source_ids: Vec<String>,
    pub target_ids: Vec<String>,
    pub status: Option<MappingStatus>,
    /// At most this many rows; `None` for all.
    pub limit: Option<i64>,
    /// Rows to skip first, for paging.
    pub offset: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store at {location}: {reason} — pass --store or set FERRY_STORE to a writable path")]
    Open { location: String, reason: String },

    /// A command that only reads found no store ([`Store::open_existing`]).
    #[error("no store at {location}: {reason}")]
    Missing { location: String, reason: String },

    #[error("cannot bring the store at {location} up to date: {reason} — {hint}")]
    Migrate {
        location: String,
        reason: String,
        hint: &'static str,
    },

    #[error("store at {location} is busy while {action} ({reason}) — another process is writing to it; retry, or give each ferry process its own --store")]
    Busy {
        location: String,
        action: &'static str,
        reason: String,
    },

    #[error("store at {location} failed while {action}: {reason}")]
    Query {
        location: String,
        action: &'static str,
        reason: String,
    },

    #[error("store at {location} holds data ferry cannot read ({action}): {detail} — the file was probably written by a newer ferry or edited by hand")]
    Corrupt {
        location: String,
        action: &'static str,
        detail: String,
    },

    #[error("{what} does not exist in the store at {location}")]
    NotFound { location: String, what: String },

    #[error("invalid store request: {0}")]
    InvalidRequest(String),

    /// A write would break a uniqueness promise (e.g. two CRM values for one ERP value).
    #[error("{0}")]
    Conflict(String),

    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// True when the same call may succeed if repeated (the database was busy or locked).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        let kind = if e.is_retryable() {
            crate::error::ErrorKind::StoreBusy
        } else {
            crate::error::ErrorKind::Store
        };
        crate::error::Error::new(kind, e.to_string())
    }
}

/// Mapping look-ups and edits.
pub trait MappingStore {
    /// The stored mappings among `source_ids`, keyed by source id; absent ids are
    /// simply missing. One query per batch (chunked for very long lists).
    fn mappings_for(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Mapping>, StoreError>> + Send;

    /// List mappings matching every filter in `q`, in key order.
    fn query_mappings(&self, q: &MappingQuery) -> impl Future<Output = Result<Vec<Mapping>, StoreError>> + Send;

    /// Create a mapping, or update the stored one with the same key (see the module doc).
    fn upsert_mapping(&self, m: &Mapping) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forget a mapping; `true` if one existed.
    fn delete_mapping(
        &self,
        scheme: &str,
        source_object: &str,
        source_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// For templates' `mapped_id(object, source_id)`: the target id of a created or
    /// updated mapping whose `target_object` or `scheme` equals `object`. A scheme
    /// match wins over a target-object match, then the most recently synced.
    fn target_id_for(
        &self,
        object: &str,
        source_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// Opaque resume points per scheme.
pub trait CheckpointStore {
    fn checkpoint(&self, scheme: &str, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Store `value`, replacing any previous one.
    fn set_checkpoint(
        &self,
        scheme: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forget a checkpoint (the next run starts from the scheme's `incremental.start`);
    /// `true` if one was stored.
    fn clear_checkpoint(&self, scheme: &str, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The failure ledger. Failures are written through [`BatchWriter::commit_batch`].
pub trait FailureLedger {
    /// Newest `last_seen` first, at most `limit` rows.
    fn list_failures(
        &self,
        scheme: Option<&str>,
        status: Option<FailureStatus>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Failure>, StoreError>> + Send;

    fn failure(&self, id: i64) -> impl Future<Output = Result<Option<Failure>, StoreError>> + Send;

    /// Set the status of the given failures; returns how many actually changed.
    /// Reopening a failure whose key already has an open failure leaves it as it is.
    fn set_failure_status(
        &self,
        ids: &[i64],
        status: FailureStatus,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn count_open_failures(&self, scheme: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Every ledger row of one record (any status), newest `last_seen` first, at most `limit`.
    fn failures_of(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Failure>, StoreError>> + Send;
}

/// Write intents (see [`WriteIntent`]); they are settled through [`BatchWriter::commit_batch`].
pub trait IntentLog {
    /// Store `intents` in one transaction, replacing any with the same source key.
    fn record_intents(&self, intents: &[WriteIntent]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The scheme's unsettled intents, oldest batch first.
    fn pending_intents(&self, scheme: &str) -> impl Future<Output = Result<Vec<WriteIntent>, StoreError>> + Send;
}

/// Request budgets shared by every process that uses the store (token buckets).
pub trait RateBudget {
    /// Takes one request from budget `name` (refilled at `per_second`, holding at most
    /// `burst`) and returns how long the caller must wait before sending it. The token is
    /// taken even when the answer is a wait, so callers queue up fairly.
    fn take_token(
        &self,
        name: &str,
        per_second: f64,
        burst: u32,
    ) -> impl Future<Output = Result<std::time::Duration, StoreError>> + Send;
}

/// One batch's intents as stored by the SQL backends: a row per batch, its rows as JSON.
pub(crate) struct IntentBatch<'a> {
    pub scheme: &'a str,
    pub batch_id: &'a str,
    pub created_at: i64,
    pub json: String,
}

/// One stored batch of intents (format 2): what its rows share, once, then one short
/// array per row. Rows are `[source_id, source_name, business_key, target_id,
/// payload_hash, payload]`. Format 1, still read, was an array of whole [`WriteIntent`]s;
/// at 100 rows it was twice the size, and every byte is written before each request.
#[derive(Serialize)]
struct IntentBatchOut<'a> {
    scheme: &'a str,
    source_object: &'a str,
    batch_id: &'a str,
    operation: WriteOperation,
    created_at: i64,
    rows: Vec<IntentRowOut<'a>>,
    /// The rows as sent ([`WriteIntent::sent`]), parallel to `rows`; absent when none was kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sent: Vec<Option<&'a serde_json::Value>>,
}

type IntentRowOut<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    Option<&'a serde_json::Value>,
);

#[derive(Deserialize)]
struct IntentBatchIn {
    scheme: String,
    source_object: String,
    batch_id: String,
    operation: WriteOperation,
    created_at: i64,
    rows: Vec<IntentRowIn>,
    #[serde(default)]
    sent: Vec<Option<serde_json::Value>>,
}

type IntentRowIn = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<serde_json::Value>,
);

/// Groups intents into stored batches, keeping their order. Consecutive intents share a
/// batch when everything but their rows is equal.
pub(crate) fn intent_batches(intents: &[WriteIntent]) -> Result<Vec<IntentBatch<'_>>, StoreError> {
    let same_batch = |a: &WriteIntent, b: &WriteIntent| {
        a.scheme == b.scheme
            && a.batch_id == b.batch_id
            && a.source_object == b.source_object
            && a.operation == b.operation
            && a.created_at.timestamp_millis() == b.created_at.timestamp_millis()
    };
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (index, intent) in intents.iter().enumerate() {
        match groups.last_mut() {
            Some((start, end)) if same_batch(&intents[*start], intent) => *end = index + 1,
            _ => groups.push((index, index + 1)),
        }
    }
    groups
        .into_iter()
        .map(|(start, end)| {
            let first = &intents[start];
            let batch = IntentBatchOut {
                scheme: &first.scheme,
                source_object: &first.source_object,
                batch_id: &first.batch_id,
                operation: first.operation,
                created_at: first.created_at.timestamp_millis(),
                sent: if intents[start..end].iter().any(|i| i.sent.is_some()) {
                    intents[start..end].iter().map(|i| i.sent.as_ref()).collect()
                } else {
                    Vec::new()
                },
                rows: intents[start..end]
                    .iter()
                    .map(|i| {
                        (
                            i.source_id.as_str(),
                            i.source_name.as_deref(),
                            i.business_key.as_deref(),
                            i.target_id.as_deref(),
                            i.payload_hash.as_str(),
                            i.payload.as_ref(),
                        )
                    })
                    .collect(),
            };
            let json = serde_json::to_string(&batch)
                .map_err(|e| StoreError::InvalidRequest(format!("a write intent cannot be stored: {e}")))?;
            Ok(IntentBatch {
                scheme: &first.scheme,
                batch_id: &first.batch_id,
                created_at: batch.created_at,
                json,
            })
        })
        .collect()
}

/// The intents of stored batches, in order (either format).
pub(crate) fn unpack_intents<'a>(rows: impl Iterator<Item = &'a str>) -> Result<Vec<WriteIntent>, String> {
    let invalid = |e: serde_json::Error| format!("stored write intents are invalid: {e}");
    let mut out = Vec::new();
    for row in rows {
        if row.trim_start().starts_with('[') {
            let batch: Vec<WriteIntent> = serde_json::from_str(row).map_err(invalid)?;
            out.extend(batch);
            continue;
        }
        let batch: IntentBatchIn = serde_json::from_str(row).map_err(invalid)?;
        let created_at = DateTime::<Utc>::from_timestamp_millis(batch.created_at)
            .ok_or_else(|| format!("stored write intents have an impossible time: {}", batch.created_at))?;
        let mut sent = batch.sent.into_iter();
        out.extend(batch.rows.into_iter().map(
            |(source_id, source_name, business_key, target_id, payload_hash, payload)| WriteIntent {
                sent: sent.next().flatten(),
                scheme: batch.scheme.clone(),
                source_object: batch.source_object.clone(),
                source_id,
                source_name,
                batch_id: batch.batch_id.clone(),
                operation: batch.operation,
                business_key,
                target_id,
                payload_hash,
                payload,
                created_at,
            },
        ));
    }
    Ok(out)
}

/// A log of runs.
pub trait RunHistory {
    /// Record a run as `running` now; returns its id.
    fn start_run(&self, scheme: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Stamp the end of a run. Fails with [`StoreError::NotFound`] for an unknown id.
    fn finish_run(
        &self,
        id: i64,
        status: &str,
        summary: &serde_json::Value,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Newest first, at most `limit` rows.
    fn recent_runs(
        &self,
        scheme: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;

    /// One run by id.
    fn run(&self, id: i64) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send;

    /// The newest run of each scheme (only of `scheme`, when given; only runs whose status
    /// is `status`, when given), by scheme name.
    fn latest_runs(
        &self,
        scheme: Option<&str>,
        status: Option<&str>,
    ) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
}

/// Atomic per-batch writes.
pub trait BatchWriter {
    /// Apply `batch` in one transaction (see [`BatchCommit`] for the order).
    fn commit_batch(&self, batch: BatchCommit) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store the engine holds: one variant per backend.
#[derive(Debug, Clone)]
pub enum Store {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Run `$call` with `$backend` bound to whichever backend `$store` holds.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Memory($backend) => $call,
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}
pub(crate) use dispatch;

impl Store {
    /// Open the store named by `location`:
    /// - `memory` or `:memory:` — in process, gone when the process exits;
    /// - `sqlite://PATH`, `sqlite:PATH` or a bare path — an SQLite file, created
    ///   (with its directory) if missing and migrated to the current schema;
    /// - `postgres://…` or `postgresql://…` — a PostgreSQL database, migrated to
    ///   the current schema; the tables go into the first schema of the
    ///   connection's search_path (`public` unless the URL sets
    ///   `options=-csearch_path%3DNAME`), see [`postgres`].
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        match parse_location(location)? {
            Location::Memory => Ok(Store::memory()),
            Location::SqliteFile(path) => Ok(Store::Sqlite(
                SqliteStore::open_synchronous(path, sqlite_sync_of(location)?).await?,
            )),
            Location::Postgres(url) => Ok(Store::Postgres(PostgresStore::open(url).await?)),
        }
    }

    /// Open a store that already exists, creating nothing: a missing SQLite file, or a
    /// database without Ferry's tables, is an error naming the location. For commands that
    /// only read (listings, `ferry status`).
    pub async fn open_existing(location: &str) -> Result<Store, StoreError> {
        match parse_location(location)? {
            Location::Memory => Ok(Store::memory()),
            Location::SqliteFile(path) => {
                if !std::path::Path::new(path).exists() {
                    return Err(StoreError::Missing {
                        location: path.to_owned(),
                        reason: "nothing has run with this --store yet (a `ferry run` creates it); pass the \
                                 --store (or FERRY_STORE) your runs use"
                            .to_owned(),
                    });
                }
                Ok(Store::Sqlite(
                    SqliteStore::open_synchronous(path, sqlite_sync_of(location)?).await?,
                ))
            }
            Location::Postgres(url) => Ok(Store::Postgres(PostgresStore::open_existing(url).await?)),
        }
    }

    /// The directory a SQLite store's file lives in, when it does not exist (a store in
    /// memory or in Postgres has none).
    pub fn missing_directory(location: &str) -> Option<std::path::PathBuf> {
        let Ok(Location::SqliteFile(path)) = parse_location(location) else {
            return None;
        };
        let parent = std::path::Path::new(path).parent()?;
        (!parent.as_os_str().is_empty() && !parent.exists()).then(|| parent.to_path_buf())
    }

    /// A fresh, empty in-memory store.
    pub fn memory() -> Store {
        Store::Memory(MemoryStore::new())
    }

    /// A one-line description for logs and `ferry status`.
    pub fn describe(&self) -> String {
        match self {
            Store::Memory(_) => "in-memory store (not persisted)".to_owned(),
            Store::Sqlite(s) => format!("SQLite store at {}", s.location()),
            Store::Postgres(s) => format!("PostgreSQL store at {}", s.location()),
        }
    }

    /// Release the store's connections (a no-op in memory). Later calls fail.
    pub async fn close(&self) {
        match self {
            Store::Memory(_) => {}
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Location<'a> {
    Memory,
    SqliteFile(&'a str),
    Postgres(&'a str),
}

fn parse_location(location: &str) -> Result<Location<'_>, StoreError> {
    let trimmed = location.trim();
    if trimmed.is_empty() {
        return Err(StoreError::InvalidRequest(
            "the store location is empty — pass --store PATH (e.g. ./ferry.db) or `memory`".to_owned(),
        ));
    }
    if trimmed == "memory" || trimmed == ":memory:" {
        return Ok(Location::Memory);
    }
    let path = if let Some(rest) = trimmed.strip_prefix("sqlite://") {
        sqlite_options(rest)?.0
    } else if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        sqlite_options(rest)?.0
    } else if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Location::Postgres(trimmed));
    } else if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(StoreError::Unsupported(format!(
            "unknown store kind '{scheme}' in {} — use a file path, sqlite://PATH, postgres://URL or `memory`",
            postgres::redact_url(trimmed)
        )));
    } else {
        trimmed
    };
    match path {
        "" => Err(StoreError::InvalidRequest(format!(
            "the store location {trimmed} names no file — write it as sqlite://./ferry.db"
        ))),
        ":memory:" => Ok(Location::Memory),
        _ => Ok(Location::SqliteFile(path)),
    }
}

/// Splits `PATH?synchronous=full` (the `sqlite:` forms only) into the path and the
/// durability asked for; `normal` when none is given.
fn sqlite_options(rest: &str) -> Result<(&str, SqliteSync), StoreError> {
    let Some((path, query)) = rest.split_once('?') else {
        return Ok((rest, SqliteSync::Normal));
    };
    let mut sync = SqliteSync::Normal;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                sync = match value.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSync::Normal,
                    "full" => SqliteSync::Full,
                    other => {
                        return Err(StoreError::InvalidRequest(format!(
                            "unknown SQLite synchronous setting `{other}` in the store location — use \
                             ?synchronous=normal (the default) or ?synchronous=full"
                        )))
                    }
                }
            }
            _ => {
                return Err(StoreError::InvalidRequest(format!(
                    "unknown SQLite store option `{pair}` — the one option is ?synchronous=normal|full"
                )))
            }
        }
    }
    Ok((path, sync))
}

/// The durability a SQLite location asks for (`normal` for every other location).
fn sqlite_sync_of(location: &str) -> Result<SqliteSync, StoreError> {
    let trimmed = location.trim();
    match trimmed
        .strip_prefix("sqlite://")
        .or_else(|| trimmed.strip_prefix("sqlite:"))
    {
        Some(rest) => Ok(sqlite_options(rest)?.1),
        None => Ok(SqliteSync::Normal),
    }
}

impl MappingStore for Store {
    async fn mappings_for(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Mapping>, StoreError> {
        dispatch!(self, s => s.mappings_for(scheme, source_object, source_ids).await)
    }

    async fn query_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        dispatch!(self, s => s.query_mappings(q).await)
    }

    async fn upsert_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        dispatch!(self, s => s.upsert_mapping(m).await)
    }

    async fn delete_mapping(&self, scheme: &str, source_object: &str, source_id: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_mapping(scheme, source_object, source_id).await)
    }

    async fn target_id_for(&self, object: &str, source_id: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.target_id_for(object, source_id).await)
    }
}

impl CheckpointStore for Store {
    async fn checkpoint(&self, scheme: &str, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.checkpoint(scheme, key).await)
    }

    async fn set_checkpoint(&self, scheme: &str, key: &str, value: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_checkpoint(scheme, key, value).await)
    }

    async fn clear_checkpoint(&self, scheme: &str, key: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.clear_checkpoint(scheme, key).await)
    }
}

impl FailureLedger for Store {
    async fn list_failures(
        &self,
        scheme: Option<&str>,
        status: Option<FailureStatus>,
        limit: i64,
    ) -> Result<Vec<Failure>, StoreError> {
        dispatch!(self, s => s.list_failures(scheme, status, limit).await)
    }

    async fn failure(&self, id: i64) -> Result<Option<Failure>, StoreError> {
        dispatch!(self, s => s.failure(id).await)
    }

    async fn set_failure_status(&self, ids: &[i64], status: FailureStatus) -> Result<u64, StoreError> {
        dispatch!(self, s => s.set_failure_status(ids, status).await)
    }

    async fn count_open_failures(&self, scheme: &str) -> Result<i64, StoreError> {
        dispatch!(self, s => s.count_open_failures(scheme).await)
    }

    async fn failures_of(&self, scheme: &str, source_id: &str, limit: i64) -> Result<Vec<Failure>, StoreError> {
        dispatch!(self, s => s.failures_of(scheme, source_id, limit).await)
    }
}

impl IntentLog for Store {
    async fn record_intents(&self, intents: &[WriteIntent]) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_intents(intents).await)
    }

    async fn pending_intents(&self, scheme: &str) -> Result<Vec<WriteIntent>, StoreError> {
        dispatch!(self, s => s.pending_intents(scheme).await)
    }
}

impl RateBudget for Store {
    async fn take_token(&self, name: &str, per_second: f64, burst: u32) -> Result<std::time::Duration, StoreError> {
        dispatch!(self, s => s.take_token(name, per_second, burst).await)
    }
}

impl RunHistory for Store {
    async fn start_run(&self, scheme: &str) -> Result<i64, StoreError> {
        dispatch!(self, s => s.start_run(scheme).await)
    }

    async fn finish_run(&self, id: i64, status: &str, summary: &serde_json::Value) -> Result<(), StoreError> {
        dispatch!(self, s => s.finish_run(id, status, summary).await)
    }

    async fn recent_runs(&self, scheme: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, s => s.recent_runs(scheme, limit).await)
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        dispatch!(self, s => s.run(id).await)
    }

    async fn latest_runs(&self, scheme: Option<&str>, status: Option<&str>) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, s => s.latest_runs(scheme, status).await)
    }
}

impl EventLog for Store {
    async fn record_events(&self, events: Vec<RecordEvent>, keep: u32) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_events(events, keep).await)
    }

    async fn record_events_for(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> Result<Vec<RecordEvent>, StoreError> {
        dispatch!(self, s => s.record_events_for(scheme, source_id, limit).await)
    }
}

impl BatchWriter for Store {
    async fn commit_batch(&self, batch: BatchCommit) -> Result<(), StoreError> {
        dispatch!(self, s => s.commit_batch(batch).await)
    }
}

// ---- helpers shared by the backends -------------------------------------------------

/// The order of mapping listings: a source id's text before its trailing digits, then its
/// length, then its bytes, so ids that differ in a trailing number sort by that number.
/// The SQL backends order by the same key (`rtrim(id, '0123456789'), length(id), id`).
pub fn natural_key(id: &str) -> (&str, usize, &str) {
    (
        id.trim_end_matches(|c: char| c.is_ascii_digit()),
        id.chars().count(),
        id,
    )
}

/// The current time at the stored precision (milliseconds).
pub(crate) fn now() -> DateTime<Utc> {
    truncate_to_millis(Utc::now())
}

/// `t` at the stored precision, so every backend returns the same values.
pub(crate) fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Reject negative limits and offsets and oversized id lists, identically in every backend.
pub(crate) fn check_query(q: &MappingQuery) -> Result<(), StoreError> {
    if let Some(limit) = q.limit {
        check_limit(limit)?;
    }
    if q.offset < 0 {
        return Err(StoreError::InvalidRequest(format!(
            "offset must be 0 or more, got {}",
            q.offset
        )));
    }
    let ids = q.source_ids.len() + q.target_ids.len();
    if ids > MAX_QUERY_IDS {
        return Err(StoreError::InvalidRequest(format!(
            "a mapping query may name at most {MAX_QUERY_IDS} ids, got {ids} — split it into several queries"
        )));
    }
    Ok(())
}

pub(crate) fn check_limit(limit: i64) -> Result<(), StoreError> {
    if limit < 0 {
        return Err(StoreError::InvalidRequest(format!(
            "limit must be 0 or more, got {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for status in [
            MappingStatus::Created,
            MappingStatus::Updated,
            MappingStatus::Failed,
            MappingStatus::Pending,
            MappingStatus::Deleted,
        ] {
            assert_eq!(status.to_string().parse::<MappingStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert_eq!("write".parse::<FailureStage>(), Ok(FailureStage::Write));
        assert_eq!(FailureStatus::Skipped.as_str(), "skipped");
    }

    #[test]
    fn unknown_enum_text_lists_the_choices() {
        let err = "done".parse::<MappingStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown mapping status 'done' — choose from created, updated, failed, pending, deleted"
        );
    }

    #[test]
    fn locations_are_classified() {
        assert_eq!(parse_location("memory").unwrap(), Location::Memory);
        assert_eq!(parse_location(" :memory: ").unwrap(), Location::Memory);
        assert_eq!(parse_location("sqlite://:memory:").unwrap(), Location::Memory);
        assert_eq!(
            parse_location("sqlite://./x/ferry.db").unwrap(),
            Location::SqliteFile("./x/ferry.db")
        );
        assert_eq!(
            parse_location("sqlite:ferry.db").unwrap(),
            Location::SqliteFile("ferry.db")
        );
        assert_eq!(
            parse_location("/var/lib/ferry.db").unwrap(),
            Location::SqliteFile("/var/lib/ferry.db")
        );
        assert!(matches!(parse_location(""), Err(StoreError::InvalidRequest(_))));
        assert!(matches!(
            parse_location("sqlite://"),
            Err(StoreError::InvalidRequest(_))
        ));
        let err = parse_location("mysql://db/ferry").unwrap_err();
        assert!(err.to_string().contains("unknown store kind 'mysql'"), "{err}");
    }

    #[test]
    fn a_sqlite_location_may_ask_for_synchronous_full() {
        assert_eq!(
            parse_location("sqlite:ferry.db?synchronous=full").unwrap(),
            Location::SqliteFile("ferry.db")
        );
        assert_eq!(
            sqlite_sync_of("sqlite://./x.db?synchronous=FULL").unwrap(),
            SqliteSync::Full
        );
        assert_eq!(
            sqlite_sync_of("sqlite:x.db?synchronous=normal").unwrap(),
            SqliteSync::Normal
        );
        assert_eq!(sqlite_sync_of("sqlite:x.db").unwrap(), SqliteSync::Normal);
        let err = parse_location("sqlite:x.db?synchronous=off").unwrap_err();
        assert!(err.to_string().contains("?synchronous=full"), "{err}");
        let err = parse_location("sqlite:x.db?cache=shared").unwrap_err();
        assert!(
            err.to_string().contains("unknown SQLite store option `cache=shared`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn synchronous_full_reaches_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        for (query, expected) in [("", 1), ("?synchronous=full", 2)] {
            let location = format!("sqlite:{}{query}", dir.path().join(format!("s{expected}.db")).display());
            let Store::Sqlite(store) = Store::open(&location).await.unwrap() else {
                panic!("{location} is a SQLite store")
            };
            for pool in [store.pool_for(sql::On::Write), store.pool_for(sql::On::Read)] {
                let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
                assert_eq!(level, expected, "{location}: 1 is NORMAL, 2 is FULL");
            }
        }
    }

    #[test]
    fn postgres_urls_are_classified() {
        assert_eq!(
            parse_location(" postgres://ferry@db/erp ").unwrap(),
            Location::Postgres("postgres://ferry@db/erp")
        );
        assert_eq!(
            parse_location("postgresql://db/erp").unwrap(),
            Location::Postgres("postgresql://db/erp")
        );
        let err = parse_location("mysql://u:hunter2@db/ferry").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn query_checks_reject_bad_paging() {
        let mut q = MappingQuery {
            limit: Some(-1),
            ..MappingQuery::default()
        };
        assert!(check_query(&q).is_err());
        q.limit = None;
        q.offset = -3;
        assert!(check_query(&q).is_err());
        q.offset = 0;
        q.source_ids = vec![String::new(); MAX_QUERY_IDS + 1];
        assert!(check_query(&q).is_err());
    }
}
