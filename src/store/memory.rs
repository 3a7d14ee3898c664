//! The in-process store: plain collections behind one mutex.
//!
//! It keeps exactly the promises of the SQLite store (the shared suite in
//! `store/tests.rs` checks both), including millisecond timestamps and listing
//! order, and it loses everything when the process exits. Each call takes the
//! lock once and never across an `.await`, so every call, `commit_batch`
//! included, is atomic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::field_mappings::{
    put_step, sort_rows, FieldMapping, FieldMappingChanges, FieldMappingFilter, FieldMappingStore, FieldSide,
    FieldTable,
};
use super::{
    check_keep, check_limit, check_query, now, truncate_to_millis, BatchCommit, BatchWriter, CheckpointStore, EventLog,
    Failure, FailureLedger, FailureStage, FailureStatus, IntentLog, Mapping, MappingQuery, MappingStatus, MappingStore,
    NewFailure, RateBudget, RecordEvent, RunHistory, RunRecord, StoreError, WriteIntent,
};

const LOCATION: &str = "memory";

/// An in-memory store; clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    inbox: Arc<Mutex<super::inbox::MemoryInbox>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

type FailureKey = (String, String, FailureStage);

#[derive(Default)]
struct State {
    /// `(scheme, source_object)` → `source_id` → mapping; the ordered maps give the listing order.
    mappings: BTreeMap<(String, String), BTreeMap<String, Mapping>>,
    checkpoints: HashMap<(String, String), String>,
    failures: BTreeMap<i64, Failure>,
    /// The id of the open failure for each `(scheme, source_id, stage)`.
    open_failures: HashMap<FailureKey, i64>,
    last_failure_id: i64,
    runs: BTreeMap<i64, RunRecord>,
    last_run_id: i64,
    /// Unsettled intents, in the order recorded.
    intents: Vec<WriteIntent>,
    /// Budget name → (tokens, updated at ms).
    budgets: HashMap<String, (f64, i64)>,
    /// Field mapping table → CRM value → row.
    field_mappings: BTreeMap<FieldTable, BTreeMap<String, FieldMapping>>,
    /// `(scheme, source_id)` → its events, oldest first.
    events: HashMap<(String, String), std::collections::VecDeque<RecordEvent>>,
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The inbox (`super::inbox`), behind its own lock.
    pub(super) fn inbox(&self) -> MutexGuard<'_, super::inbox::MemoryInbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change behind
        // (every mutation below completes without panicking), so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn upsert_mapping(&mut self, m: &Mapping) {
        let mut new = m.clone();
        new.first_synced_at = new.first_synced_at.map(truncate_to_millis);
        new.last_synced_at = new.last_synced_at.map(truncate_to_millis);
        let group = self
            .mappings
            .entry((m.scheme.clone(), m.source_object.clone()))
            .or_default();
        if let Some(old) = group.get_mut(&m.source_id) {
            new.first_synced_at = old.first_synced_at.or(new.first_synced_at);
            new.target_id = new.target_id.or_else(|| old.target_id.take());
            new.target_name = new.target_name.or_else(|| old.target_name.take());
            new.detail_ids = new.detail_ids.or_else(|| old.detail_ids.take());
            *old = new;
        } else {
            group.insert(m.source_id.clone(), new);
        }
    }

    fn record_failure(&mut self, f: &NewFailure, at: chrono::DateTime<chrono::Utc>) {
        let key = (f.scheme.clone(), f.source_id.clone(), f.stage);
        if let Some(existing) = self.open_failures.get(&key).and_then(|id| self.failures.get_mut(id)) {
            existing.attempts += 1;
            existing.last_seen = at;
            existing.error_class.clone_from(&f.error_class);
            existing.message.clone_from(&f.message);
            existing.payload.clone_from(&f.payload);
            return;
        }
        self.last_failure_id += 1;
        let id = self.last_failure_id;
        self.failures.insert(
            id,
            Failure {
                id,
                scheme: f.scheme.clone(),
                source_id: f.source_id.clone(),
                stage: f.stage,
                error_class: f.error_class.clone(),
                message: f.message.clone(),
                attempts: 1,
                first_seen: at,
                last_seen: at,
                payload: f.payload.clone(),
                status: FailureStatus::Open,
            },
        );
        self.open_failures.insert(key, id);
    }

    fn resolve(&mut self, scheme: &str, source_id: &str) {
        for stage in [FailureStage::Fetch, FailureStage::Transform, FailureStage::Write] {
            let key = (scheme.to_owned(), source_id.to_owned(), stage);
            if let Some(id) = self.open_failures.remove(&key) {
                if let Some(failure) = self.failures.get_mut(&id) {
                    failure.status = FailureStatus::Resolved;
                }
            }
        }
    }

    fn set_failure_status(&mut self, id: i64, status: FailureStatus) -> bool {
        let Some(failure) = self.failures.get_mut(&id) else {
            return false;
        };
        if failure.status == status {
            return false;
        }
        let key = (failure.scheme.clone(), failure.source_id.clone(), failure.stage);
        if status == FailureStatus::Open {
            if self.open_failures.contains_key(&key) {
                return false;
            }
            self.open_failures.insert(key, id);
        } else if failure.status == FailureStatus::Open {
            self.open_failures.remove(&key);
        }
        failure.status = status;
        true
    }
}

fn limit_to_usize(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

impl MappingStore for MemoryStore {
    async fn mappings_for(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Mapping>, StoreError> {
        let state = self.lock();
        let group_key = (scheme.to_owned(), source_object.to_owned());
        let Some(group) = state.mappings.get(&group_key) else {
            return Ok(HashMap::new());
        };
        Ok(source_ids
            .iter()
            .filter_map(|id| group.get(id).map(|m| (id.clone(), m.clone())))
            .collect())
    }

    async fn query_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        check_query(q)?;
        let source_ids: HashSet<&str> = q.source_ids.iter().map(String::as_str).collect();
        let target_ids: HashSet<&str> = q.target_ids.iter().map(String::as_str).collect();
        let state = self.lock();
        let mut matches: Vec<&Mapping> = state
            .mappings
            .iter()
            .filter(|((scheme, _), _)| q.scheme.as_ref().is_none_or(|s| s == scheme))
            .flat_map(|(_, group)| group.values())
            .filter(|m| source_ids.is_empty() || source_ids.contains(m.source_id.as_str()))
            .filter(|m| target_ids.is_empty() || m.target_id.as_deref().is_some_and(|t| target_ids.contains(t)))
            .filter(|m| q.status.is_none_or(|s| s == m.status))
            .collect();
        matches.sort_by(|a, b| {
            (&a.scheme, &a.source_object, super::natural_key(&a.source_id)).cmp(&(
                &b.scheme,
                &b.source_object,
                super::natural_key(&b.source_id),
            ))
        });
        let matches = matches
            .into_iter()
            .skip(limit_to_usize(q.offset))
            .take(q.limit.map_or(usize::MAX, limit_to_usize))
            .cloned()
            .collect();
        Ok(matches)
    }

    async fn upsert_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        self.lock().upsert_mapping(m);
        Ok(())
    }

    async fn delete_mapping(&self, scheme: &str, source_object: &str, source_id: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let group_key = (scheme.to_owned(), source_object.to_owned());
        let Some(group) = state.mappings.get_mut(&group_key) else {
            return Ok(false);
        };
        let removed = group.remove(source_id).is_some();
        if group.is_empty() {
            state.mappings.remove(&group_key);
        }
        Ok(removed)
    }

    async fn target_id_for(&self, object: &str, source_id: &str) -> Result<Option<String>, StoreError> {
        let state = self.lock();
        let mut best: Option<&Mapping> = None;
        let rank = |m: &Mapping| (m.scheme == object, m.last_synced_at);
        for group in state.mappings.values() {
            let Some(m) = group.get(source_id) else {
                continue;
            };
            let eligible = (m.target_object == object || m.scheme == object)
                && matches!(m.status, MappingStatus::Created | MappingStatus::Updated)
                && m.target_id.is_some();
            // Strictly better only: among equals the first in key order wins, as in SQL.
            if eligible && best.is_none_or(|b| rank(m) > rank(b)) {
                best = Some(m);
            }
        }
        Ok(best.and_then(|m| m.target_id.clone()))
    }
}

impl CheckpointStore for MemoryStore {
    async fn checkpoint(&self, scheme: &str, key: &str) -> Result<Option<String>, StoreError> {
        let state = self.lock();
        Ok(state.checkpoints.get(&(scheme.to_owned(), key.to_owned())).cloned())
    }

    async fn set_checkpoint(&self, scheme: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.lock()
            .checkpoints
            .insert((scheme.to_owned(), key.to_owned()), value.to_owned());
        Ok(())
    }

    async fn clear_checkpoint(&self, scheme: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .checkpoints
            .remove(&(scheme.to_owned(), key.to_owned()))
            .is_some())
    }
}

impl FailureLedger for MemoryStore {
    async fn list_failures(
        &self,
        scheme: Option<&str>,
        status: Option<FailureStatus>,
        limit: i64,
    ) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let state = self.lock();
        let mut found: Vec<Failure> = state
            .failures
            .values()
            .filter(|f| scheme.is_none_or(|s| s == f.scheme))
            .filter(|f| status.is_none_or(|s| s == f.status))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.id.cmp(&a.id)));
        found.truncate(limit_to_usize(limit));
        Ok(found)
    }

    async fn failures_of(&self, scheme: &str, source_id: &str, limit: i64) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let state = self.lock();
        let mut found: Vec<Failure> = state
            .failures
            .values()
            .filter(|f| f.scheme == scheme && f.source_id == source_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.id.cmp(&a.id)));
        found.truncate(limit_to_usize(limit));
        Ok(found)
    }

    async fn failure(&self, id: i64) -> Result<Option<Failure>, StoreError> {
        Ok(self.lock().failures.get(&id).cloned())
    }

    async fn set_failure_status(&self, ids: &[i64], status: FailureStatus) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let changed = ids.iter().filter(|&&id| state.set_failure_status(id, status)).count();
        Ok(changed as u64)
    }

    async fn count_open_failures(&self, scheme: &str) -> Result<i64, StoreError> {
        let state = self.lock();
        let open = state.open_failures.keys().filter(|(s, _, _)| s == scheme).count();
        Ok(i64::try_from(open).unwrap_or(i64::MAX))
    }
}

impl RunHistory for MemoryStore {
    async fn start_run(&self, scheme: &str) -> Result<i64, StoreError> {
        let mut state = self.lock();
        state.last_run_id += 1;
        let id = state.last_run_id;
        state.runs.insert(
            id,
            RunRecord {
                id,
                scheme: scheme.to_owned(),
                started_at: now(),
                finished_at: None,
                status: "running".to_owned(),
                summary: None,
            },
        );
        Ok(id)
    }

    async fn finish_run(&self, id: i64, status: &str, summary: &serde_json::Value) -> Result<(), StoreError> {
        let mut state = self.lock();
        let run = state.runs.get_mut(&id).ok_or_else(|| StoreError::NotFound {
            location: LOCATION.to_owned(),
            what: format!("run {id}"),
        })?;
        run.finished_at = Some(now());
        status.clone_into(&mut run.status);
        run.summary = Some(summary.clone());
        Ok(())
    }

    async fn recent_runs(&self, scheme: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        check_limit(limit)?;
        let state = self.lock();
        Ok(state
            .runs
            .values()
            .rev()
            .filter(|r| scheme.is_none_or(|s| s == r.scheme))
            .take(limit_to_usize(limit))
            .cloned()
            .collect())
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.lock().runs.get(&id).cloned())
    }

    async fn latest_runs(&self, scheme: Option<&str>, status: Option<&str>) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        let mut newest: std::collections::BTreeMap<&str, &RunRecord> = std::collections::BTreeMap::new();
        for run in state.runs.values() {
            if scheme.is_some_and(|s| s != run.scheme) || status.is_some_and(|s| s != run.status) {
                continue;
            }
            newest.insert(&run.scheme, run);
        }
        Ok(newest.into_values().cloned().collect())
    }
}

impl BatchWriter for MemoryStore {
    async fn commit_batch(&self, batch: BatchCommit) -> Result<(), StoreError> {
        let at = now();
        let mut state = self.lock();
        for m in &batch.mappings {
            state.upsert_mapping(m);
        }
        for (scheme, source_id) in &batch.resolved {
            state.resolve(scheme, source_id);
        }
        for f in &batch.failures {
            state.record_failure(f, at);
        }
        for (scheme, batch_id) in &batch.settled {
            state
                .intents
                .retain(|intent| !(intent.scheme == *scheme && intent.batch_id == *batch_id));
        }
        Ok(())
    }
}

impl IntentLog for MemoryStore {
    async fn record_intents(&self, intents: &[WriteIntent]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for intent in intents {
            let mut stored = intent.clone();
            stored.created_at = truncate_to_millis(stored.created_at);
            state.intents.push(stored);
        }
        Ok(())
    }

    async fn pending_intents(&self, scheme: &str) -> Result<Vec<WriteIntent>, StoreError> {
        let state = self.lock();
        let mut found: Vec<WriteIntent> = state
            .intents
            .iter()
            .filter(|intent| intent.scheme == scheme)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.batch_id).cmp(&(b.created_at, &b.batch_id)));
        Ok(found)
    }
}

impl RateBudget for MemoryStore {
    async fn take_token(&self, name: &str, per_second: f64, burst: u32) -> Result<std::time::Duration, StoreError> {
        let now_ms = now().timestamp_millis();
        let mut state = self.lock();
        let entry = state
            .budgets
            .entry(name.to_string())
            .or_insert((f64::from(burst), now_ms));
        let tokens = crate::rate::take(entry.0, entry.1, now_ms, per_second, burst);
        *entry = (tokens, entry.1.max(now_ms));
        Ok(crate::rate::wait_for(tokens, per_second))
    }
}

impl FieldMappingStore for MemoryStore {
    async fn put_field_mappings(&self, rows: &[FieldMapping]) -> Result<FieldMappingChanges, StoreError> {
        let mut state = self.lock();
        // Applied to a copy, so a conflict half-way leaves nothing behind.
        let mut tables = state.field_mappings.clone();
        let mut changes = FieldMappingChanges::default();
        for row in rows {
            let table = tables.entry(row.table()).or_default();
            let erp_owner = table
                .values()
                .find(|stored| stored.erp_value == row.erp_value)
                .map(|stored| stored.crm_value.clone());
            let step = put_step(row, table.get(&row.crm_value), erp_owner.as_deref())?;
            changes.count(&step);
            table.insert(row.crm_value.clone(), row.clone());
        }
        state.field_mappings = tables;
        Ok(changes)
    }

    async fn list_field_mappings(&self, filter: &FieldMappingFilter) -> Result<Vec<FieldMapping>, StoreError> {
        let state = self.lock();
        let mut rows: Vec<FieldMapping> = state
            .field_mappings
            .values()
            .flat_map(BTreeMap::values)
            .filter(|row| filter.matches(row))
            .cloned()
            .collect();
        sort_rows(&mut rows);
        Ok(rows)
    }

    async fn delete_field_mapping(&self, table: &FieldTable, crm_value: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        Ok(state
            .field_mappings
            .get_mut(table)
            .and_then(|rows| rows.remove(crm_value))
            .is_some())
    }

    async fn find_field_mapping(
        &self,
        table: &FieldTable,
        side: FieldSide,
        value: &str,
    ) -> Result<Option<FieldMapping>, StoreError> {
        let state = self.lock();
        let Some(rows) = state.field_mappings.get(table) else {
            return Ok(None);
        };
        Ok(match side {
            FieldSide::Crm => rows.get(value).cloned(),
            FieldSide::Erp => rows.values().find(|row| row.erp_value == value).cloned(),
        })
    }
}

impl EventLog for MemoryStore {
    async fn record_events(&self, events: Vec<RecordEvent>, keep: u32) -> Result<(), StoreError> {
        check_keep(keep)?;
        if keep == 0 {
            return Ok(());
        }
        let mut state = self.lock();
        for mut event in events {
            event.at = truncate_to_millis(event.at);
            let list = state
                .events
                .entry((event.scheme.clone(), event.source_id.clone()))
                .or_default();
            list.push_back(event);
            while list.len() > keep as usize {
                list.pop_front();
            }
        }
        Ok(())
    }

    async fn record_events_for(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> Result<Vec<RecordEvent>, StoreError> {
        check_limit(limit)?;
        let state = self.lock();
        Ok(state
            .events
            .get(&(scheme.to_owned(), source_id.to_owned()))
            .map(|list| list.iter().rev().take(limit as usize).cloned().collect())
            .unwrap_or_default())
    }
}
