//! The engine: the only place that wires IO together to run a [`Plan`].
//!
//! Data path: a fetch task reads source pages (prefetching numbered pages up to the source
//! connection's `in_flight`) and sends them through a bounded channel; the planner computes
//! each record's id and payload hash, groups records into batches, looks their ids up in the
//! mapping store (one query per batch) and decides create, update or unchanged; writer tasks
//! (up to the target connection's `in_flight`) render rows, send them, split the answer per
//! row and commit mappings and failures in one store transaction per batch.
//!
//! Promises:
//! - Memory depends on page size, batch size and in-flight limits, never on record count.
//! - A record id is never in two batches in flight at once, so one run cannot create a
//!   record twice; a record whose payload hash equals its last successful sync is skipped.
//! - A window's checkpoint moves only after every record in it was written or parked in the
//!   failure ledger, and windows are checkpointed in order.
//! - A run that aborts (bad answer, guard, store failure) finishes the writes in flight,
//!   commits them, and leaves the checkpoint where it was.
//! - Before a batch is sent its write intents are committed; a run starts by settling the
//!   intents an earlier run left behind and by replaying the failure ledger ([`recover`]).
//!   A create whose answer was lost is looked up by business key before it is sent again.
//! - `--dry-run` renders and prints the requests it would send (secrets masked) and writes
//!   nothing to the target or the store.
//! - Records deleted at the source travel the same path as records, in the order the
//!   source reported them (a page's records first, then its deleted ids), so of two events
//!   of one id in a run the later wins: a deletion replaces a pending write of the id in
//!   its batch, a record read after its deletion replaces the deletion, and batches that
//!   share an id run one after the other. What a deletion does is [`delete`]'s business.
//! - Each source page's `incremental.field` is checked against the window it was read in
//!   (see [`crate::window::PageTimes`]): records outside it, in the future or without the
//!   field, and pages older than the resumed checkpoint are counted in the [`Summary`] and
//!   the first of each kind is logged as a warning; they still go through. Only a first
//!   page whose every record lies outside its window stops the run (as one whose every
//!   record lacks a field does), before anything is sent.
//! - [`check`] (`ferry check`) reads first pages with the same fetch code and renders their
//!   records as a run would, sending nothing to the target and writing no store.
//! - Each counter of the [`Summary`] means one thing: `requests` are target requests,
//!   `source_requests` source requests (retries and per-record detail requests included),
//!   `windows` the windows read to their end. Every source request is logged at debug
//!   level (and handed to [`RunOptions::source_sink`]) with its window, page and record count.
//! - A run whose first batch could not reach the target at all (refused, unresolved, not
//!   connected) stops there rather than failing every record: the batch's rows are in the
//!   ledger, nothing was written, and the summary says `unreachable` (exit code 75), as it
//!   does when the source cannot be reached before anything was written.

mod check;
mod delete;
mod details;
mod fetch;
mod lookup;
mod recover;
mod relock;
mod vendor_call;
mod write;

use crate::error::{Error, ErrorKind};
use crate::http::HttpClient;
use crate::scheme::model::Plan;
use crate::store::{CheckpointStore, FailureLedger, FailureStage, MappingStore, NewFailure, RunHistory, Store};
use crate::template::{MappedIds, Scope};
use crate::transform::value_to_text;
use crate::window::{format_time, parse_time, plan_windows, TimeTally, Window, WindowSpec};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use check::{check, CheckOptions, CheckReport, Problem, TimesReport};
pub use recover::Replay;
pub use write::PlannedRequest;

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
}

/// Resolves when `stop` turns true (never, without one).
async fn stop_requested(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(receiver) => {
            if receiver.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

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

/// A source record on its way to the target.
pub(crate) struct Item {
    pub record: Arc<Value>,
    pub source_id: String,
    pub source_name: Option<String>,
    pub hash: String,
    pub target_id: Option<String>,
    /// The target ids of the record's detail rows, from its mapping (updates only).
    pub detail_ids: Option<Value>,
    /// The source reported this record deleted (`record` is null, `hash` empty).
    pub deleted: bool,
}

impl Item {
    /// A record the source reported deleted.
    fn deletion(source_id: String) -> Item {
        Item {
            record: Arc::new(Value::Null),
            source_id,
            source_name: None,
            hash: String::new(),
            target_id: None,
            detail_ids: None,
            deleted: true,
        }
    }
}

/// A batch handed to a writer, which looks it up and sorts it into creates and updates.
pub(crate) struct Job {
    pub seq: u64,
    pub items: Vec<Item>,
    pub failures: Vec<NewFailure>,
}

/// A looked-up batch.
pub(crate) struct PlannedJob {
    pub creates: Vec<Item>,
    pub updates: Vec<Item>,
    pub deletions: Vec<delete::Deletion>,
    pub unchanged: u64,
    pub skipped: u64,
}

/// What a writer reports back.
#[derive(Default)]
pub(crate) struct JobResult {
    pub seq: u64,
    pub created: u64,
    pub updated: u64,
    pub failed: u64,
    pub deleted: u64,
    pub requests: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub ids: Vec<String>,
    /// Missing fields of the rows that failed to render (see [`Summary::missing_fields`]).
    pub missing: Vec<String>,
    /// Why the run must stop after this batch (its outcomes are committed).
    pub abort: Option<Error>,
}

/// Messages from the fetch task.
pub(crate) enum Fetched {
    /// Records with their payload hashes (computed in the fetch task, off the planner).
    Page {
        records: Vec<(Value, String)>,
        /// Ids of records the page reported deleted at the source, after its records.
        deleted: Vec<String>,
        /// Rows from the failure ledger rather than the source.
        replay: bool,
        /// The `incremental.field` checks of the page (source pages of a scheme with one).
        times: Option<Box<TimeTally>>,
    },
    WindowDone {
        window: usize,
    },
    Failed(Error),
}

/// Shared, read-only state of a run.
pub(crate) struct RunContext {
    pub plan: Plan,
    pub store: Store,
    pub http: HttpClient,
    pub vars: Arc<Map<String, Value>>,
    pub mapped_ids: Option<Arc<dyn MappedIds>>,
    pub payload_hasher: crate::transform::PayloadHasher,
    pub dry_run: bool,
    pub dry_run_sink: Option<DryRunSink>,
    pub sessions: vendor_call::Sessions,
    /// The run's id in the store (0 in a dry run); batch ids are `run-seq`.
    pub run_id: i64,
    /// Whether the scheme may have open ledger rows; while false, successful rows need not
    /// resolve anything (saves a statement per batch).
    pub ledger_open: std::sync::atomic::AtomicBool,
    /// The `incremental.field` checks; `None` when the scheme names no field.
    pub change_checks: Option<fetch::ChangeChecks>,
    /// Requests sent to the source so far.
    pub source_requests: std::sync::atomic::AtomicU64,
    /// Receives every source request.
    pub source_sink: Option<SourceSink>,
}

/// The checkpoint key under which a scheme's incremental watermark is stored (RFC 3339).
pub const CHECKPOINT_KEY: &str = "window_end";

/// Runs a plan to completion (or abort) and returns its summary.
pub async fn run(plan: &Plan, store: &Store, http: &HttpClient, options: &RunOptions) -> Result<Summary, Error> {
    let started = Instant::now();
    let now = options.now.unwrap_or_else(Utc::now);
    let run_id = if options.dry_run {
        0
    } else {
        store.start_run(&plan.name).await?
    };

    let (windows, checkpoint) = if options.replay_only {
        (Vec::new(), None)
    } else {
        run_windows(plan, store, now, options.since, options.until).await?
    };
    // A page older than the checkpoint this run resumed from was synced before (a backfill
    // reads old windows on purpose, so it is not judged).
    let resume = match (&plan.source.incremental, checkpoint, options.since) {
        (Some(inc), Some(checkpoint), None) => Some(checkpoint - inc.lookback),
        _ => None,
    };

    let fingerprint = serde_json::to_vec(&(&plan.raw.target.fields, &plan.raw.value_maps)).unwrap_or_default();
    let payload_hasher = crate::transform::PayloadHasher::new(&fingerprint);
    let uses_mapped_id = crate::scheme::validate::uses_call(&plan.target.fields, "mapped_id");
    // A dry run counts the rows of the creates and updates it planned.
    let planned = Arc::new(PlannedRows::default());
    let dry_run_sink = if options.dry_run {
        let inner = options.dry_run_sink.clone();
        let counts = planned.clone();
        Some(Arc::new(move |request: &PlannedRequest| {
            counts.add(request);
            if let Some(inner) = &inner {
                inner(request);
            }
        }) as DryRunSink)
    } else {
        None
    };
    let ctx = Arc::new(RunContext {
        plan: plan.clone(),
        store: store.clone(),
        http: http
            .clone()
            .with_fresh_reach()
            .with_shared_budgets(Arc::new(StoreBudgets(store.clone()))),
        vars: Arc::new(base_vars(plan, now, run_id, options.dry_run)),
        mapped_ids: uses_mapped_id.then(|| Arc::new(StoreMappedIds::new(store.clone())) as Arc<dyn MappedIds>),
        payload_hasher,
        dry_run: options.dry_run,
        dry_run_sink,
        sessions: Default::default(),
        run_id,
        ledger_open: std::sync::atomic::AtomicBool::new(
            options.dry_run || store.count_open_failures(&plan.name).await? > 0,
        ),
        change_checks: fetch::ChangeChecks::of(plan, options.now, resume),
        source_requests: Default::default(),
        source_sink: options.source_sink.clone(),
    });
    tracing::info!(scheme = %plan.name, run_id, dry_run = options.dry_run, windows = windows.len(), "run started");

    let mut summary = Summary {
        scheme: plan.name.clone(),
        dry_run: options.dry_run,
        run_id: (!options.dry_run).then_some(run_id),
        ..Summary::default()
    };
    let outcome = match recover(&ctx, options, &mut summary).await {
        Ok(replay) => drive(&ctx, &windows, replay, options, &mut summary).await,
        Err(e) => Err(e),
    };
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary.source_requests = ctx.source_requests.load(std::sync::atomic::Ordering::Relaxed);
    if options.dry_run {
        summary.created = planned.creates.load(std::sync::atomic::Ordering::Relaxed);
        summary.updated = planned.updates.load(std::sync::atomic::Ordering::Relaxed);
    }
    if let Err(e) = outcome {
        summary.aborted = Some(plan.redactor.redact(&e.message).into_owned());
        // Try again later: nothing changed in the target. A source read that failed in
        // transport (refused, unresolved, timed out) counts; a write only when it never
        // reached the target.
        summary.unreachable = !summary.stopped && e.kind == ErrorKind::Transport && summary.written() == 0;
    }
    if !options.dry_run {
        let summary_json = serde_json::to_value(&summary).unwrap_or(Value::Null);
        store
            .finish_run(run_id, summary.outcome().as_str(), &summary_json)
            .await?;
    }
    Ok(summary)
}

/// Rows of the creates and updates a dry run planned.
#[derive(Default)]
struct PlannedRows {
    creates: std::sync::atomic::AtomicU64,
    updates: std::sync::atomic::AtomicU64,
}

impl PlannedRows {
    fn add(&self, request: &PlannedRequest) {
        let counter = match request.operation {
            "create" => &self.creates,
            "update" => &self.updates,
            _ => return,
        };
        counter.fetch_add(request.rows as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The windows a run reads (one `None` for a source without `incremental`), and the
/// stored checkpoint they start from.
pub(crate) async fn run_windows(
    plan: &Plan,
    store: &Store,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(Vec<Option<Window>>, Option<DateTime<Utc>>), Error> {
    let Some(inc) = &plan.source.incremental else {
        return Ok((vec![None], None));
    };
    let checkpoint = match store.checkpoint(&plan.name, CHECKPOINT_KEY).await? {
        Some(text) => Some(
            parse_time(&text, plan.timezone)
                .map_err(|e| Error::store(format!("stored checkpoint is unreadable: {e}")))?,
        ),
        None => None,
    };
    let spec = WindowSpec {
        start: inc.start,
        window: inc.window,
        lookback: inc.lookback,
        lag: inc.lag,
    };
    let windows = plan_windows(&spec, checkpoint, now, since, until)
        .into_iter()
        .map(Some)
        .collect();
    Ok((windows, checkpoint))
}

/// The variables every record and request template sees: `now` and `run`.
fn base_vars(plan: &Plan, now: DateTime<Utc>, run_id: i64, dry_run: bool) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("now".into(), Value::String(format_time(now, plan.timezone)));
    vars.insert(
        "run".into(),
        crate::scheme::context::run_value(run_id, &plan.name, dry_run),
    );
    vars
}

/// Settles an earlier run's unfinished writes, then gathers the ledger rows to replay.
async fn recover(ctx: &RunContext, options: &RunOptions, summary: &mut Summary) -> Result<Vec<(Value, String)>, Error> {
    if !ctx.dry_run {
        recover::reconcile_intents(ctx, summary).await?;
    }
    let which = match &options.replay {
        Some(which) => which.clone(),
        None if ctx.plan.failures.replay => Replay::Automatic,
        None => return Ok(Vec::new()),
    };
    recover::ledger_records(ctx, &which).await
}

/// Tracks which windows are complete, to move the checkpoint in order.
struct Checkpoints {
    /// Last batch seq of each finished window.
    window_last_seq: BTreeMap<usize, u64>,
    done: HashSet<u64>,
    /// Every seq below this is done.
    done_below: u64,
    next_window: usize,
}

impl Checkpoints {
    fn mark_done(&mut self, seq: u64) {
        self.done.insert(seq);
        while self.done.remove(&self.done_below) {
            self.done_below += 1;
        }
    }
    /// Windows (in order) whose every batch is done.
    fn completed(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(last) = self.window_last_seq.get(&self.next_window) {
            if *last >= self.done_below {
                break;
            }
            self.window_last_seq.remove(&self.next_window);
            out.push(self.next_window);
            self.next_window += 1;
        }
        out
    }
}

#[allow(unused_assignments)] // the last dispatch! bumps a sequence nobody reads
async fn drive(
    ctx: &Arc<RunContext>,
    windows: &[Option<Window>],
    replay: Vec<(Value, String)>,
    options: &RunOptions,
    summary: &mut Summary,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let source_in_flight = plan.source_connection().in_flight;
    let target_in_flight = plan.target_connection().in_flight;
    let (sender, mut receiver) = mpsc::channel::<Fetched>(source_in_flight.max(1) * 2);
    let fetch_ctx = ctx.clone();
    let fetch_windows = windows.to_vec();
    let pages = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fetch_pages = pages.clone();
    let fetcher =
        tokio::spawn(async move { fetch::fetch_all(fetch_ctx, fetch_windows, replay, sender, fetch_pages).await });

    let batch_size = plan.target.batch;
    let mut batch: Vec<Item> = Vec::with_capacity(batch_size);
    let mut pending_failures: Vec<NewFailure> = Vec::new();
    let mut in_flight_ids: HashMap<String, u64> = HashMap::new();
    // Ledger rows replayed in this run, by source id, with their payload hashes: the same
    // record read again from the source (a full re-read, a backfill) is not sent twice.
    let mut replayed_hashes: HashMap<String, String> = HashMap::new();
    let mut writers: JoinSet<Result<JobResult, Error>> = JoinSet::new();
    let mut checkpoints = Checkpoints {
        window_last_seq: BTreeMap::new(),
        done: HashSet::new(),
        done_below: 0,
        next_window: 0,
    };
    let mut next_seq = 0u64;
    let mut failure: Option<Error> = None;
    let mut limit_reached = false;
    let mut done_records = 0u64;
    let mut stop = options.stop.clone();
    let mut first_page_checked = false;
    let mut probed = false;
    let mut run_times = TimeTally::default();
    let mut position = ReadPosition {
        window: 1,
        windows: windows.len() as u64,
        range: window_range(ctx, windows.first()),
        page: 0,
    };

    // Dispatches the current batch (possibly empty, to carry failures or close a window).
    macro_rules! dispatch {
        () => {{
            let items = std::mem::take(&mut batch);
            let failures = std::mem::take(&mut pending_failures);
            let seq = next_seq;
            next_seq = seq + 1;
            // Never let an id be in two batches at once.
            while items.iter().any(|i| in_flight_ids.contains_key(&i.source_id)) {
                match writers.join_next().await {
                    Some(joined) => finish_job(
                        joined,
                        summary,
                        &mut in_flight_ids,
                        &mut checkpoints,
                        &mut done_records,
                        &mut failure,
                    ),
                    None => break,
                }
            }
            for item in &items {
                in_flight_ids.insert(item.source_id.clone(), seq);
            }
            let job = Job { seq, items, failures };
            while writers.len() >= target_in_flight {
                if let Some(joined) = writers.join_next().await {
                    finish_job(
                        joined,
                        summary,
                        &mut in_flight_ids,
                        &mut checkpoints,
                        &mut done_records,
                        &mut failure,
                    );
                }
            }
            // A stopping run sends nothing more (its windows stay unchecked).
            if failure.is_none() {
                let probe = !probed && !job.items.is_empty();
                let writer_ctx = ctx.clone();
                writers.spawn(async move { write::write_job(writer_ctx, job).await });
                // The run's first batch goes alone: an answer that cannot be matched to its
                // rows stops the run before a second batch is sent.
                if probe {
                    probed = true;
                    while let Some(joined) = writers.join_next().await {
                        finish_job(
                            joined,
                            summary,
                            &mut in_flight_ids,
                            &mut checkpoints,
                            &mut done_records,
                            &mut failure,
                        );
                    }
                    if failure.is_none() {
                        failure = target_unreachable(ctx, summary);
                    }
                }
            }
            seq
        }};
    }

    while failure.is_none() {
        // Reap finished writers without waiting, to keep the checkpoint moving.
        while let Some(joined) = writers.try_join_next() {
            finish_job(
                joined,
                summary,
                &mut in_flight_ids,
                &mut checkpoints,
                &mut done_records,
                &mut failure,
            );
        }
        advance_checkpoints(ctx, windows, &mut checkpoints, summary).await?;
        if let Some(progress) = &options.progress {
            progress.update(summary.read, done_records);
        }
        let message = tokio::select! {
            message = receiver.recv() => message,
            _ = stop_requested(&mut stop) => {
                failure = Some(Error::new(ErrorKind::Aborted, "stopped by a signal; the writes in flight were finished and committed"));
                summary.stopped = true;
                break;
            }
        };
        let Some(message) = message else { break };
        match message {
            Fetched::Page {
                records,
                deleted,
                replay,
                times,
            } => {
                if replay {
                    summary.replayed += records.len() as u64;
                } else {
                    summary.pages += 1;
                    position.page += 1;
                    if let Some(progress) = &options.progress {
                        progress.reading(&position);
                    }
                    if !first_page_checked && !records.is_empty() {
                        first_page_checked = true;
                        let verdict = first_page_verdict(ctx, &records)
                            .or_else(|| times.as_ref().and_then(|times| window_verdict(ctx, times)));
                        if let Some(error) = verdict {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if let Some(times) = times {
                    note_times(ctx, &mut run_times, summary, *times);
                }
                for (record, hash) in records {
                    if options.limit.is_some_and(|limit| summary.read >= limit) {
                        limit_reached = true;
                        break;
                    }
                    summary.read += 1;
                    match identify(ctx, record, hash) {
                        Ok(item) if !replay && replayed_hashes.get(&item.source_id) == Some(&item.hash) => {
                            summary.duplicates += 1;
                        }
                        Ok(item) => {
                            if replay {
                                replayed_hashes.insert(item.source_id.clone(), item.hash.clone());
                            }
                            // A record seen twice in one batch keeps its latest version (a
                            // deletion before it is simply replaced).
                            if let Some(existing) = batch.iter_mut().find(|i| i.source_id == item.source_id) {
                                if !existing.deleted {
                                    summary.duplicates += 1;
                                }
                                *existing = item;
                            } else {
                                batch.push(item);
                            }
                        }
                        Err(rejected) => {
                            summary.failed += 1;
                            for name in &rejected.missing {
                                *summary.missing_fields.entry(name.clone()).or_default() += 1;
                            }
                            pending_failures.push(rejected.failure);
                        }
                    }
                    if batch.len() >= batch_size {
                        dispatch!();
                    }
                }
                if limit_reached {
                    break;
                }
                for source_id in deleted {
                    let item = Item::deletion(source_id);
                    // The later event of an id in this batch wins: here, the deletion.
                    if let Some(existing) = batch.iter_mut().find(|i| i.source_id == item.source_id) {
                        if !existing.deleted {
                            summary.duplicates += 1;
                        }
                        *existing = item;
                    } else {
                        batch.push(item);
                    }
                    if batch.len() >= batch_size {
                        dispatch!();
                    }
                }
            }
            Fetched::WindowDone { window } => {
                let seq = dispatch!();
                checkpoints.window_last_seq.insert(window, seq);
                summary.windows += 1;
                position = ReadPosition {
                    window: window as u64 + 2,
                    windows: windows.len() as u64,
                    range: window_range(ctx, windows.get(window + 1)),
                    page: 0,
                };
            }
            Fetched::Failed(error) => {
                failure = Some(error);
            }
        }
    }
    drop(receiver);
    if failure.is_none() && (!batch.is_empty() || !pending_failures.is_empty()) {
        dispatch!();
    }
    while let Some(joined) = writers.join_next().await {
        finish_job(
            joined,
            summary,
            &mut in_flight_ids,
            &mut checkpoints,
            &mut done_records,
            &mut failure,
        );
    }
    // Windows are only checkpointed when nothing failed before them.
    advance_checkpoints(ctx, windows, &mut checkpoints, summary).await?;
    if let Some(progress) = &options.progress {
        progress.update(summary.read, done_records);
    }
    match fetcher.await {
        Ok(()) => {}
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            failure = failure.or(Some(Error::new(
                ErrorKind::Aborted,
                format!("the fetch task failed: {e}"),
            )))
        }
    }
    summary.pages = summary.pages.max(pages.load(std::sync::atomic::Ordering::Relaxed));
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `start → end` of a window, in the source's zone.
fn window_range(ctx: &RunContext, window: Option<&Option<Window>>) -> Option<String> {
    let window = window?.as_ref()?;
    let zone = ctx.plan.source_connection().zone;
    Some(format!(
        "{} → {}",
        format_time(window.start, zone),
        format_time(window.end, zone)
    ))
}

/// After the run's first batch: when the target accepted nothing and no attempt ever
/// reached it, every further batch would fail the same way, so the run stops here.
fn target_unreachable(ctx: &RunContext, summary: &Summary) -> Option<Error> {
    if ctx.dry_run || summary.written() > 0 || summary.failed == 0 {
        return None;
    }
    let connection = &ctx.plan.target_connection().name;
    let reason = ctx.http.never_reached(connection)?;
    Some(Error::unreachable(format!(
        "the target (connection `{connection}`) cannot be reached: {}. Nothing was written; the run stopped \
         after its first batch instead of failing every record, the batch's rows are in the failure ledger and \
         the next run sends them again",
        ctx.plan.redactor.redact(&reason)
    )))
}

fn finish_job(
    joined: Result<Result<JobResult, Error>, tokio::task::JoinError>,
    summary: &mut Summary,
    in_flight_ids: &mut HashMap<String, u64>,
    checkpoints: &mut Checkpoints,
    done_records: &mut u64,
    failure: &mut Option<Error>,
) {
    match joined {
        Ok(Ok(result)) => {
            summary.created += result.created;
            summary.updated += result.updated;
            summary.failed += result.failed;
            summary.requests += result.requests;
            summary.unchanged += result.unchanged;
            summary.skipped += result.skipped;
            summary.deleted += result.deleted;
            for name in result.missing {
                *summary.missing_fields.entry(name).or_default() += 1;
            }
            if let Some(abort) = result.abort {
                failure.get_or_insert(abort);
            }
            *done_records +=
                result.created + result.updated + result.failed + result.unchanged + result.skipped + result.deleted;
            for id in &result.ids {
                if in_flight_ids.get(id) == Some(&result.seq) {
                    in_flight_ids.remove(id);
                }
            }
            checkpoints.mark_done(result.seq);
        }
        Ok(Err(e)) => {
            if failure.is_none() {
                *failure = Some(e);
            }
        }
        Err(e) => {
            if failure.is_none() {
                *failure = Some(Error::new(ErrorKind::Aborted, format!("a writer task failed: {e}")));
            }
        }
    }
}

async fn advance_checkpoints(
    ctx: &RunContext,
    windows: &[Option<Window>],
    checkpoints: &mut Checkpoints,
    summary: &mut Summary,
) -> Result<(), Error> {
    for index in checkpoints.completed() {
        if let Some(Some(window)) = windows.get(index) {
            let text = format_time(window.end, ctx.plan.timezone);
            if !ctx.dry_run {
                // Never move a checkpoint backwards (a backfill reads older windows).
                let current = ctx.store.checkpoint(&ctx.plan.name, CHECKPOINT_KEY).await?;
                let newer = match current.as_deref().map(|c| parse_time(c, ctx.plan.timezone)) {
                    Some(Ok(existing)) => window.end > existing,
                    _ => true,
                };
                if newer {
                    ctx.store.set_checkpoint(&ctx.plan.name, CHECKPOINT_KEY, &text).await?;
                }
            }
            summary.checkpoint = Some(text);
        }
    }
    Ok(())
}

/// A record that could not be identified: its ledger row, and the missing fields that
/// caused it (if that was the cause).
pub(crate) struct Unidentified {
    pub failure: NewFailure,
    pub missing: Vec<String>,
}

/// Computes a record's id, name and payload hash; a failure goes to the ledger.
fn identify(ctx: &RunContext, record: Value, hash: String) -> Result<Item, Box<Unidentified>> {
    let plan = &ctx.plan;
    let record = Arc::new(record);
    let scope = Scope {
        record: Some(record.clone()),
        vars: ctx.vars.clone(),
        ..Scope::default()
    };
    let failure_of = |class: &str, message: String, missing: Vec<String>| {
        Box::new(Unidentified {
            failure: NewFailure {
                scheme: plan.name.clone(),
                source_id: format!("hash:{hash}"),
                stage: FailureStage::Transform,
                error_class: class.into(),
                message: plan.redactor.redact(&message).into_owned(),
                payload: Some(plan.redactor.redact_value(&record)),
            },
            missing,
        })
    };
    let failure = |message: String| failure_of("transform", message, Vec::new());
    let source_id = match plan.source.id.render(&scope) {
        Ok(value @ (Value::Array(_) | Value::Object(_))) => {
            return Err(failure(format!(
                "source.id `{}` gives {} for this record; an id must be text or a number",
                plan.source.id.source(),
                if value.is_array() { "a list" } else { "an object" }
            )))
        }
        Ok(value) => match value_to_text(&value) {
            Some(id) => id,
            None => {
                return Err(failure(format!(
                    "source.id `{}` is empty for this record",
                    plan.source.id.source()
                )))
            }
        },
        Err(e) => {
            let message = describe_record_failure(&format!("source.id: {}", e.message), &e.missing, &record);
            let class = if e.missing.is_empty() {
                "transform"
            } else {
                "missing_field"
            };
            return Err(failure_of(class, message, e.missing));
        }
    };
    let source_name = match &plan.source.name {
        Some(template) => template.render(&scope).ok().as_ref().and_then(value_to_text),
        None => None,
    };
    Ok(Item {
        record,
        source_id,
        source_name,
        hash,
        target_id: None,
        detail_ids: None,
        deleted: false,
    })
}

/// Renders the records of the run's first source page without sending anything. When
/// every one of them lacks the same field, the scheme is wrong rather than the data (a
/// field name that this source does not use): the run stops before anything is written,
/// and the checkpoint stays where it was.
fn first_page_verdict(ctx: &RunContext, records: &[(Value, String)]) -> Option<Error> {
    let (names, example) = fields_every_record_lacks(ctx, records)?;
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    Some(Error::new(
        ErrorKind::Aborted,
        format!(
            "every record of the first page ({}) lacks {}, so the scheme's field names do not match this source; \
             nothing was sent and the checkpoint stays. Correct the template (or mark the field optional with \
             `| default(…)` / `| optional`) and run again. First failure: {}",
            records.len(),
            names.join(", "),
            ctx.plan.redactor.redact(&example)
        ),
    ))
}

/// The fields every one of `records` lacks (none: `None`), with the first failure's message.
fn fields_every_record_lacks(ctx: &RunContext, records: &[(Value, String)]) -> Option<(Vec<String>, String)> {
    let mut common: Option<Vec<String>> = None;
    let mut example = String::new();
    for (record, hash) in records {
        let missing = match identify(ctx, record.clone(), hash.clone()) {
            Err(rejected) => {
                example = rejected.failure.message.clone();
                rejected.missing
            }
            Ok(item) => {
                let scope = write::row_scope(ctx, &item);
                match crate::transform::render(&ctx.plan.target.fields, &scope, "target.fields") {
                    Err(e) => {
                        if example.is_empty() {
                            example = describe_record_failure(&e.message, &e.missing, &item.record);
                        }
                        e.missing
                    }
                    Ok(_) => return None,
                }
            }
        };
        let shared: Vec<String> = match common {
            None => missing,
            Some(before) => before.into_iter().filter(|name| missing.contains(name)).collect(),
        };
        if shared.is_empty() {
            return None;
        }
        common = Some(shared);
    }
    Some((common?, example))
}

/// Stops the run when every record of its first source page lies outside the window it
/// was read in: the source ignores the window filter (or the parameter is misspelt), so
/// the run would re-read and re-send whatever the source sends every time.
fn window_verdict(ctx: &RunContext, times: &TimeTally) -> Option<Error> {
    if !times.all_outside() {
        return None;
    }
    let field = ctx.change_checks.as_ref().map_or("", |checks| checks.field.as_str());
    let values = match (&times.oldest, &times.newest) {
        (Some(oldest), Some(newest)) if oldest.value != newest.value => {
            format!("its `{field}` values run from `{}` to `{}`", oldest.value, newest.value)
        }
        (Some(only), _) => format!("its `{field}` is `{}`", only.value),
        _ => String::new(),
    };
    let example = times
        .examples
        .outside_window
        .as_deref()
        .or(times.examples.in_future.as_deref())
        .unwrap_or_default();
    Some(Error::new(
        ErrorKind::Aborted,
        ctx.plan
            .redactor
            .redact(&format!(
                "every record of the first page ({}) lies outside the window it was read in, {}: {values}. The source \
                 ignores the window filter (a misspelt parameter name, a filter it does not support), or \
                 source.incremental.field names another time than the one the source filters on; nothing was sent \
                 and the checkpoint stays. Check the window parameters of source.request against the source's \
                 documentation (`ferry check` shows what the source returns) and run again. First: {example}",
                times.records,
                times.window.as_deref().unwrap_or("?"),
            ))
            .into_owned(),
    ))
}

/// Adds a page's `incremental.field` checks to the run: the counters go to the summary,
/// and the first record of each kind is logged as a warning with what it suggests.
fn note_times(ctx: &RunContext, run: &mut TimeTally, summary: &mut Summary, page: TimeTally) {
    let redact = |text: &Option<String>| {
        ctx.plan
            .redactor
            .redact(text.as_deref().unwrap_or_default())
            .into_owned()
    };
    let scheme = ctx.plan.name.as_str();
    if run.outside_window == 0 && page.outside_window > 0 {
        tracing::warn!(
            scheme,
            "{}; the window parameters or the source's filter look wrong (a misspelt parameter, a filter the \
             source ignores). Further such records are only counted (see the summary)",
            redact(&page.examples.outside_window)
        );
    }
    if run.in_future == 0 && page.in_future > 0 {
        tracing::warn!(
            scheme,
            "{}; the source connection's `timezone` may be wrong, or the source's clock. Further such records \
             are only counted (see the summary)",
            redact(&page.examples.in_future)
        );
    }
    if run.field_unreadable == 0 && page.field_unreadable > 0 {
        tracing::warn!(
            scheme,
            "{}; source.incremental.field probably names the wrong field, and the window checks cannot judge these \
             records. Further such records are only counted (see the summary)",
            redact(&page.examples.field_unreadable)
        );
    }
    if run.stale_pages == 0 && page.stale_pages > 0 {
        tracing::warn!(
            scheme,
            "{}; the source seems to ignore the window filter. Further such pages are only counted (see the summary)",
            redact(&page.examples.stale_page)
        );
    }
    run.absorb(page);
    summary.outside_window = run.outside_window;
    summary.in_future = run.in_future;
    summary.field_unreadable = run.field_unreadable;
    summary.stale_pages = run.stale_pages;
}

/// A record failure's message; when fields were missing, it lists the keys the record
/// does have, so the scheme can be corrected at a glance.
pub(crate) fn describe_record_failure(message: &str, missing: &[String], record: &Value) -> String {
    if missing.is_empty() {
        return message.to_string();
    }
    const SHOWN: usize = 30;
    let keys: Vec<&str> = record
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let listed = if keys.is_empty() {
        "the record has no fields".to_string()
    } else if keys.len() > SHOWN {
        format!(
            "the record has: {}, … ({} fields)",
            keys[..SHOWN].join(", "),
            keys.len()
        )
    } else {
        format!("the record has: {}", keys.join(", "))
    };
    format!("{message}; {listed}")
}

/// Looks a batch up in the mapping store (one query) and sorts it into creates, updates,
/// unchanged and skipped. Runs in the writer task, so look-ups of batches overlap.
pub(crate) async fn plan_job(ctx: &RunContext, items: Vec<Item>) -> Result<PlannedJob, Error> {
    let plan = &ctx.plan;
    let ids: Vec<String> = items.iter().map(|i| i.source_id.clone()).collect();
    let existing = if ids.is_empty() {
        HashMap::new()
    } else {
        ctx.store.mappings_for(&plan.name, &plan.source.object, &ids).await?
    };
    let mut job = PlannedJob {
        creates: Vec::new(),
        updates: Vec::new(),
        deletions: Vec::new(),
        unchanged: 0,
        skipped: 0,
    };
    for mut item in items {
        if item.deleted {
            let mapping = existing.get(&item.source_id).cloned();
            job.deletions.push(delete::Deletion::new(item, mapping));
            continue;
        }
        match existing.get(&item.source_id) {
            Some(mapping)
                if mapping.target_id.is_some()
                    && matches!(
                        mapping.status,
                        crate::store::MappingStatus::Created | crate::store::MappingStatus::Updated
                    ) =>
            {
                if mapping.payload_hash.as_deref() == Some(item.hash.as_str()) {
                    job.unchanged += 1;
                } else if plan.target.update.is_some() {
                    item.target_id = mapping.target_id.clone();
                    item.detail_ids = mapping.detail_ids.clone();
                    job.updates.push(item);
                } else {
                    job.skipped += 1;
                }
            }
            // An earlier create of this record may or may not have landed: hold it until an
            // operator settles the `uncertain` ledger row.
            Some(mapping) if mapping.status == crate::store::MappingStatus::Pending => job.skipped += 1,
            _ => job.creates.push(item),
        }
    }
    Ok(job)
}

/// The mapping of a record the target now holds (created, updated or adopted).
pub(crate) struct Synced<'a> {
    pub source_id: &'a str,
    pub source_name: Option<String>,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub status: crate::store::MappingStatus,
    pub hash: &'a str,
    /// Detail row ids to store (`None` keeps the stored ones).
    pub detail_ids: Option<Value>,
}

impl Synced<'_> {
    pub(crate) fn mapping(self, plan: &Plan, now: DateTime<Utc>) -> crate::store::Mapping {
        crate::store::Mapping {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: self.source_id.to_string(),
            source_name: self.source_name,
            target_object: plan.target.object.clone(),
            target_id: self.target_id,
            target_name: self.target_name,
            status: self.status,
            payload_hash: Some(self.hash.to_string()),
            attempts: 1,
            last_error: None,
            first_synced_at: Some(now),
            last_synced_at: Some(now),
            detail_ids: self.detail_ids,
        }
    }
}

/// The mapping of a create that failed (`Failed`) or may have landed (`Pending`, held until
/// an operator decides); it keeps no target id.
pub(crate) fn unsynced_mapping(
    plan: &Plan,
    source_id: &str,
    source_name: Option<String>,
    status: crate::store::MappingStatus,
    error: String,
    now: DateTime<Utc>,
) -> crate::store::Mapping {
    crate::store::Mapping {
        scheme: plan.name.clone(),
        source_object: plan.source.object.clone(),
        source_id: source_id.to_string(),
        source_name,
        target_object: plan.target.object.clone(),
        target_id: None,
        target_name: None,
        status,
        payload_hash: None,
        attempts: 1,
        last_error: Some(error),
        first_synced_at: None,
        last_synced_at: Some(now),
        detail_ids: None,
    }
}

/// `rate.shared` budgets kept in the store.
struct StoreBudgets(Store);

impl crate::http::SharedBudgets for StoreBudgets {
    fn take<'a>(
        &'a self,
        name: &'a str,
        per_second: f64,
        burst: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<std::time::Duration, Error>> + Send + 'a>> {
        use crate::store::RateBudget;
        Box::pin(async move {
            self.0
                .take_token(name, per_second, burst)
                .await
                .map_err(|e| Error::from(e).context(format!("rate budget `{name}`")))
        })
    }
}

/// `mapped_id` lookups, answered from the store with a small cache.
struct StoreMappedIds {
    store: Store,
    cache: std::sync::Mutex<HashMap<(String, String), Option<String>>>,
}

impl StoreMappedIds {
    fn new(store: Store) -> StoreMappedIds {
        StoreMappedIds {
            store,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl MappedIds for StoreMappedIds {
    fn mapped_id(&self, object: &str, source_id: &str) -> Result<Option<String>, String> {
        let key = (object.to_string(), source_id.to_string());
        if let Ok(cache) = self.cache.lock() {
            if let Some(found) = cache.get(&key) {
                return Ok(found.clone());
            }
        }
        let store = self.store.clone();
        let found = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move { store.target_id_for(object, source_id).await })
        })
        .map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, found.clone());
        }
        Ok(found)
    }
}
