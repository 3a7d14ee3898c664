//! The shared state of one run ([`RunContext`]) and the values that travel through it: a
//! record on its way ([`Item`]), a batch ([`Job`]), what a writer reports ([`JobResult`]),
//! and what the fetch task sends ([`Fetched`]). Read-only once the run starts, except for
//! its counters and sessions.

use super::options::{DryRunSink, SourceSink};
use crate::error::Error;
use crate::http::HttpClient;
use crate::protocol::Session;
use crate::scheme::model::Plan;
use crate::store::{Mapping, MappingStatus};
use crate::store::{MappingStore, NewFailure, Store};
use crate::template::MappedIds;
use crate::template::Scope;
use crate::window::{format_time, TimeTally};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

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
    /// Where it was read: the window `start → end`, or `ledger replay` (for its events).
    pub window: Option<Arc<str>>,
}

impl Item {
    /// A record the source reported deleted.
    pub(super) fn deletion(source_id: String) -> Item {
        Item {
            record: Arc::new(Value::Null),
            source_id,
            source_name: None,
            hash: String::new(),
            target_id: None,
            detail_ids: None,
            deleted: true,
            window: None,
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
    pub deletions: Vec<Deletion>,
    pub unchanged: u64,
    pub skipped: u64,
    /// Unchanged records of a run by id, with their mapped target id (each leaves an event).
    pub unchanged_by_id: Vec<(Item, Option<String>)>,
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
    /// The batch's record events, saved with its commit (taken out before the result returns).
    pub events: Vec<crate::store::RecordEvent>,
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
    /// The `field_map` tables, loaded once at the start of the run (`None`: none declared).
    pub field_maps: Option<Arc<crate::template::FieldMaps>>,
    pub payload_hasher: crate::transform::PayloadHasher,
    pub dry_run: bool,
    pub dry_run_sink: Option<DryRunSink>,
    pub sessions: Sessions,
    /// The run's id in the store (0 in a dry run); batch ids are `run-seq`.
    pub run_id: i64,
    /// Whether the scheme may have open ledger rows; while false, successful rows need not
    /// resolve anything (saves a statement per batch).
    pub ledger_open: std::sync::atomic::AtomicBool,
    /// The `incremental.field` checks; `None` when the scheme names no field.
    pub change_checks: Option<ChangeChecks>,
    /// Requests sent to the source so far.
    pub source_requests: std::sync::atomic::AtomicU64,
    /// Receives every source request.
    pub source_sink: Option<SourceSink>,
    /// Events kept per record (0: none).
    pub keep_events: u32,
    /// Records are read by id (`ferry run --ids`): an unchanged one leaves an event.
    pub by_id: bool,
    /// Send unchanged records as updates (`ferry run --ids --force`).
    pub force: bool,
}

/// The checkpoint key under which a scheme's incremental watermark is stored (RFC 3339).
pub const CHECKPOINT_KEY: &str = "window_end";

/// The variables every record and request template sees: `now` and `run`.
pub(super) fn base_vars(plan: &Plan, now: DateTime<Utc>, run_id: i64, dry_run: bool) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("now".into(), Value::String(format_time(now, plan.timezone)));
    vars.insert(
        "run".into(),
        crate::scheme::context::run_value(run_id, &plan.name, dry_run),
    );
    vars
}

/// `rate.shared` budgets kept in the store.
pub(super) struct StoreBudgets(pub(super) Store);

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
pub(super) struct StoreMappedIds {
    store: Store,
    cache: std::sync::Mutex<HashMap<(String, String), Option<String>>>,
}

impl StoreMappedIds {
    pub(super) fn new(store: Store) -> StoreMappedIds {
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

pub(crate) fn row_scope(ctx: &RunContext, item: &Item) -> Scope {
    Scope {
        record: Some(item.record.clone()),
        vars: ctx.vars.clone(),
        locals: vec![(
            "target_id".to_string(),
            item.target_id.clone().map(Value::String).unwrap_or(Value::Null),
        )],
        mapped_ids: ctx.mapped_ids.clone(),
        field_maps: ctx.field_maps.clone(),
        parent: None,
    }
}

/// What the `incremental.field` checks need besides the page and its window.
pub(crate) struct ChangeChecks {
    /// `source.incremental.field`.
    pub field: String,
    /// The source server's zone.
    pub zone: chrono_tz::Tz,
    /// A pinned "now" (tests); otherwise the clock when the page arrives.
    pub now: Option<DateTime<Utc>>,
    /// The checkpoint the run resumed from, minus lookback.
    pub resume: Option<DateTime<Utc>>,
}

impl ChangeChecks {
    /// The checks of `plan`, when its source names an `incremental.field`.
    pub(crate) fn of(
        plan: &crate::scheme::model::Plan,
        now: Option<DateTime<Utc>>,
        resume: Option<DateTime<Utc>>,
    ) -> Option<ChangeChecks> {
        let field = plan.source.incremental.as_ref()?.field.clone()?;
        Some(ChangeChecks {
            field,
            zone: plan.source_connection().zone,
            now,
            resume,
        })
    }
}

/// A record the source reported deleted, with its mapping as the batch look-up found it.
pub(crate) struct Deletion {
    pub item: Item,
    pub mapping: Option<Mapping>,
}

impl Deletion {
    /// `item.target_id` is set when the mapping names a live target record.
    pub(crate) fn new(mut item: Item, mapping: Option<Mapping>) -> Deletion {
        item.target_id = mapping
            .as_ref()
            .filter(|m| matches!(m.status, MappingStatus::Created | MappingStatus::Updated))
            .and_then(|m| m.target_id.clone());
        Deletion { item, mapping }
    }
}

/// The sessions of a run's connections, one slot per connection. A slot's lock is held
/// while its login runs, which makes logins single-flight.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Held>>>>>,
    logins: std::sync::atomic::AtomicU64,
}

/// A session with the number of the login that made it.
#[derive(Clone)]
pub(super) struct Held {
    pub login: u64,
    pub session: Session,
}

impl Sessions {
    fn slot(&self, connection: &str) -> Arc<tokio::sync::Mutex<Option<Held>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(connection.to_string()).or_default().clone()
    }

    /// The connection's live session, or the one `login` makes when there is none, it is
    /// due for renewal, or it is `expired` (the number of the login whose session a call
    /// was refused with). One login at a time per connection; waiters share its session.
    pub(super) async fn get_or_login<F, Fut>(
        &self,
        connection: &str,
        expired: Option<u64>,
        login: F,
    ) -> Result<Option<Held>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Session>, Error>>,
    {
        let slot = self.slot(connection);
        let mut held = slot.lock().await;
        if let Some(current) = held.as_ref() {
            let renew = current.session.renew_at.is_some_and(|at| at <= Utc::now());
            if Some(current.login) != expired && !renew {
                return Ok(Some(current.clone()));
            }
            tracing::info!(connection, "session expired; logging in again");
        }
        let Some(session) = login().await? else {
            return Ok(None);
        };
        let login = self.logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let fresh = Held { login, session };
        *held = Some(fresh.clone());
        Ok(Some(fresh))
    }
}
