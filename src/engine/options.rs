//! What a run is given: [`RunOptions`], the progress callback and the sinks that see
//! every planned target request (`--dry-run`) and every source request.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// Receives each request a dry run would have sent.
pub type DryRunSink = Arc<dyn Fn(&PlannedRequest) + Send + Sync>;

/// Receives each source request a run sent, with what it returned.
pub type SourceSink = Arc<dyn Fn(&SourceRequest) + Send + Sync>;

/// One source request (a page, or a per-record detail request), secrets masked.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRequest {
    /// `page` or `detail`.
    pub kind: &'static str,
    /// The window read, `start → end` in the source's zone (none without `incremental`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The page's number within its window, from 1.
    pub page: u64,
    /// `GET`, `POST`, … or `CALL` for a built-in vendor connector.
    pub method: &'static str,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Records the answer held.
    pub records: usize,
}

/// Options of one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub limit: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The run's "now" (tests pin it); defaults to the clock.
    pub now: Option<DateTime<Utc>>,
    /// Receives progress updates (records read, records done).
    pub progress: Option<Arc<dyn Progress>>,
    /// Receives the planned requests of a dry run.
    pub dry_run_sink: Option<DryRunSink>,
    /// Receives every source request (a dry run prints them next to the planned writes).
    pub source_sink: Option<SourceSink>,
    /// When it fires, the run stops reading, finishes and commits the writes in flight,
    /// keeps the checkpoints of completed windows, and reports itself aborted.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Which failure-ledger rows to replay first; `None` follows the scheme's
    /// `failures.replay` (open rows below `max_attempts`).
    pub replay: Option<Replay>,
    /// Replay only: do not read the source (`ferry failures retry`).
    pub replay_only: bool,
    /// Read just these records by id (`source.detail`) instead of windows or the ledger, and
    /// send them through the planner (`ferry run --ids`); the checkpoint does not move.
    pub ids: Option<Vec<String>>,
    /// With `ids`: send records whose payload is unchanged since the last sync as updates.
    pub force: bool,
    /// Events kept per record for `ferry explain` (`None`: [`DEFAULT_KEEP_EVENTS`]; 0 keeps none).
    pub keep_events: Option<u32>,
    /// Receive mode: run these pushed records instead of reading the source (the only
    /// way a receiving scheme runs; `ferry serve`'s workers).
    pub pushed: Option<Pushed>,
}

/// Records pushed to a receiving scheme, run as one page.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// Records in the order they were received (a later one of an id wins).
    pub records: Vec<serde_json::Value>,
    /// Ids cancelled at the sender (`operationType: 3`), after the records.
    pub deleted: Vec<String>,
}

/// Events kept per record unless `--keep-events` says otherwise.
pub const DEFAULT_KEEP_EVENTS: u32 = 20;

/// Progress reporting, implemented by the CLI's progress bar.
pub trait Progress: Send + Sync {
    fn update(&self, read: u64, done: u64);
    /// Where the source is being read: called for each page that arrives.
    fn reading(&self, _at: &ReadPosition) {}
}

/// Where the source is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPosition {
    /// The window being read, from 1, of `windows`.
    pub window: u64,
    pub windows: u64,
    /// `start → end` of that window (none without `incremental`).
    pub range: Option<String>,
    /// Pages of this window received so far.
    pub page: u64,
}

/// Which ledger rows to replay.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Open rows below the scheme's `failures.max_attempts` (the start of every run).
    Automatic,
    /// Exactly these ledger ids, whatever their attempts (`ferry failures retry`).
    Ids(Vec<i64>),
    /// Every open row of the scheme (`ferry failures retry --all`).
    AllOpen,
}

/// A request a dry run would have sent (secrets masked).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRequest {
    pub operation: &'static str,
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub rows: usize,
}
