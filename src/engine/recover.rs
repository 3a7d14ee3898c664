//! Recovery at the start of a run: settle the write intents a killed run left behind, and
//! gather the failure-ledger rows to replay.
//!
//! Promises:
//! - Pending intents are settled before anything is read or written. A create whose row can
//!   be looked up by business key adopts the id found (no second create) or, when absent, is
//!   simply forgotten (the source record is read again, because its window was never
//!   checkpointed). A create that cannot be checked goes to the ledger as `uncertain` and its
//!   mapping is held `pending`, so no run creates it again until an operator decides.
//!   An update intent is dropped: sending an update again is harmless. So is a delete
//!   intent: the deletion is read again from the source and sent again (see [`super::delete`]).
//! - A look-up that fails aborts the run and leaves every intent in place.
//! - Replayed ledger rows are fetched again from the source where the scheme has a
//!   per-record `source.detail` request, else taken from the ledger's copy.
//! - Replayed ledger rows flow through the normal planner (mapping look-up, create or
//!   update, per-row outcome); success resolves them, failure counts another attempt.

use super::context::RunContext;
use super::options::Replay;
use super::plan::{identify, unsynced_mapping, Synced};
use super::summary::Summary;
use super::write::{uncertain_message, UNCERTAIN};
use crate::error::Error;
use crate::store::{
    BatchCommit, BatchWriter, FailureLedger, FailureStage, FailureStatus, IntentLog, MappingStatus, MappingStore,
    NewFailure, WriteIntent, WriteOperation,
};
use chrono::Utc;
use serde_json::Value;

/// Most ledger rows one run replays.
const REPLAY_LIMIT: i64 = 10_000;

/// Settles the intents a previous run left pending (see the module doc).
pub(crate) async fn reconcile_intents(ctx: &RunContext, summary: &mut Summary) -> Result<(), Error> {
    let plan = &ctx.plan;
    let intents = ctx.store.pending_intents(&plan.name).await?;
    let (writebacks, intents): (Vec<WriteIntent>, Vec<WriteIntent>) = intents
        .into_iter()
        .partition(|intent| intent.operation == WriteOperation::Writeback);
    settle_creates(ctx, intents, summary).await?;
    if !writebacks.is_empty() {
        super::writeback::retry_pending(ctx, plan.target.writeback.as_ref(), writebacks, summary).await?;
    }
    Ok(())
}

/// Settles the create, update, delete and relock intents (see the module doc).
async fn settle_creates(ctx: &RunContext, intents: Vec<WriteIntent>, summary: &mut Summary) -> Result<(), Error> {
    let plan = &ctx.plan;
    if intents.is_empty() {
        return Ok(());
    }
    tracing::info!(
        scheme = %plan.name,
        rows = intents.len(),
        "settling writes left unfinished by an earlier run"
    );
    // Look the creates up; commit batch by batch, so a run killed while reconciling keeps
    // what it settled.
    let mut by_batch: Vec<(String, Vec<WriteIntent>)> = Vec::new();
    for intent in intents {
        match by_batch.last_mut() {
            Some((batch, list)) if *batch == intent.batch_id => list.push(intent),
            _ => by_batch.push((intent.batch_id.clone(), vec![intent])),
        }
    }
    for (batch_id, intents) in by_batch {
        let mut found = check_intents(ctx, &intents).await;
        resend_idempotent(ctx, &batch_id, &intents, &mut found).await;
        let mut commit = BatchCommit {
            settled: vec![(plan.name.clone(), batch_id)],
            ..BatchCommit::default()
        };
        finish_relocks(ctx, &intents, &mut commit).await;
        let now = Utc::now();
        for (intent, found) in intents.iter().zip(found) {
            match found? {
                Some(Some(target_id)) => {
                    summary.reconciled += 1;
                    let synced = Synced {
                        source_id: &intent.source_id,
                        source_name: intent.source_name.clone(),
                        target_id: Some(target_id),
                        target_name: intent.source_name.clone(),
                        status: MappingStatus::Created,
                        hash: &intent.payload_hash,
                        detail_ids: None,
                    };
                    commit.mappings.push(synced.mapping(plan, now));
                    commit.resolved.push((plan.name.clone(), intent.source_id.clone()));
                }
                // Checked and absent, or an update: the record is read again and written then.
                Some(None) => {}
                None => {
                    summary.uncertain += 1;
                    let message = uncertain_message("the run stopped before its answer was stored", false);
                    commit.failures.push(NewFailure {
                        scheme: plan.name.clone(),
                        source_id: intent.source_id.clone(),
                        stage: FailureStage::Write,
                        error_class: UNCERTAIN.into(),
                        message: message.clone(),
                        payload: intent.payload.clone(),
                    });
                    commit.mappings.push(unsynced_mapping(
                        plan,
                        &intent.source_id,
                        intent.source_name.clone(),
                        MappingStatus::Pending,
                        message,
                        now,
                    ));
                }
            }
        }
        if !commit.failures.is_empty() {
            ctx.ledger_open.store(true, std::sync::atomic::Ordering::Release);
        }
        ctx.store.commit_batch(commit).await?;
    }
    Ok(())
}

/// Creates sent under an idempotency key (`retry_writes: idempotency_key`) that nothing
/// else could settle are sent again exactly as they were, under the same key: the target
/// applies the key once, so this finishes them without a second record. Rows it cannot
/// settle keep their `found` (uncertain).
async fn resend_idempotent(
    ctx: &RunContext,
    batch_id: &str,
    intents: &[WriteIntent],
    found: &mut [Result<Option<Option<String>>, Error>],
) {
    use crate::protocol::{RowOutcome, UNKNOWN_OUTCOME, UNMATCHED_ANSWER};
    use crate::scheme::raw::{Per, RetryWrites};
    let op = &ctx.plan.target.create;
    if op.retry_writes != Some(RetryWrites::IdempotencyKey) {
        return;
    }
    let open: Vec<usize> = (0..intents.len())
        .filter(|&i| matches!(found[i], Ok(None)) && intents[i].operation == WriteOperation::Create)
        .collect();
    // The same request means every row of it, as it was.
    if open.is_empty() || open.iter().any(|&i| intents[i].sent.is_none()) {
        return;
    }
    let key = super::send::request_key_of(batch_id, "create");
    let seq: u64 = batch_id
        .rsplit('-')
        .next()
        .and_then(|seq| seq.parse().ok())
        .unwrap_or(0);
    let mut result = super::context::JobResult::default();
    let mut outcomes = Vec::with_capacity(open.len());
    let scope_with = |vars: Vec<(&str, Value)>| {
        let mut all = (*ctx.vars).clone();
        for (name, value) in vars {
            all.insert(name.to_string(), value);
        }
        crate::template::Scope {
            vars: std::sync::Arc::new(all),
            ..crate::template::Scope::default()
        }
    };
    match op.per {
        Per::Batch => {
            let rows: Vec<Value> = open.iter().filter_map(|&i| intents[i].sent.clone()).collect();
            let batch = crate::scheme::context::batch_value(seq, rows.len(), &key);
            let scope = scope_with(vec![("rows", Value::Array(rows)), ("batch", batch)]);
            let ids = vec![None; open.len()];
            let keys: Vec<Option<String>> = open.iter().map(|&i| intents[i].business_key.clone()).collect();
            match super::send::send(ctx, op, "create", &scope, &ids, &keys, &mut result).await {
                Ok(sent) => outcomes = sent,
                Err(_) => return,
            }
        }
        Per::Row => {
            for &i in &open {
                let intent = &intents[i];
                let batch = crate::scheme::context::batch_value(seq, 1, &format!("{key}-{}", intent.source_id));
                let scope = scope_with(vec![
                    ("row", intent.sent.clone().unwrap_or_default()),
                    ("record", intent.payload.clone().unwrap_or_default()),
                    ("target_id", Value::Null),
                    ("batch", batch),
                ]);
                let keys = [intent.business_key.clone()];
                match super::send::send(ctx, op, "create", &scope, &[None], &keys, &mut result).await {
                    Ok(mut sent) => outcomes.push(sent.pop().unwrap_or(RowOutcome::Failed {
                        message: String::new(),
                        class: UNKNOWN_OUTCOME,
                    })),
                    Err(_) => return,
                }
            }
        }
    }
    for (&i, outcome) in open.iter().zip(outcomes) {
        found[i] = match outcome {
            RowOutcome::Written { target_id, .. } => Ok(Some(target_id.or_else(|| intents[i].business_key.clone()))),
            RowOutcome::Failed { class, .. } if class == UNKNOWN_OUTCOME || class == UNMATCHED_ANSWER => Ok(None),
            // Refused: nothing was created; the record is read again and sent then.
            RowOutcome::Failed { .. } => Ok(Some(None)),
        };
    }
}

/// Rows a dead run unlocked for an update and never locked again are locked now; the
/// ones that cannot be go to the ledger, saying so.
async fn finish_relocks(ctx: &RunContext, intents: &[WriteIntent], commit: &mut BatchCommit) {
    let relocks: Vec<&WriteIntent> = intents
        .iter()
        .filter(|i| i.operation == WriteOperation::Relock)
        .collect();
    if relocks.is_empty() {
        return;
    }
    let relock = super::relock::scheme_relock(ctx);
    let problems = super::relock::finish_abandoned(ctx, relock.as_ref(), &relocks).await;
    let vendor = relock.as_ref().map_or("the target", |r| r.vendor());
    for (intent, problem) in relocks.into_iter().zip(problems) {
        let Some(problem) = problem else { continue };
        commit.failures.push(NewFailure {
            scheme: ctx.plan.name.clone(),
            source_id: intent.source_id.clone(),
            stage: FailureStage::Write,
            error_class: "left_unaudited".into(),
            message: format!(
                "an earlier run unaudited target row {} to update it and stopped before auditing it again; \
                 auditing it now failed: {problem}. Audit it in {vendor}",
                intent.target_id.as_deref().unwrap_or("?")
            ),
            payload: None,
        });
    }
}

/// What each unsettled intent turned out to be: `Some(Some(id))` found in the target,
/// `Some(None)` nothing to adopt (absent, or not a create), `None` cannot be checked.
async fn check_intents(ctx: &RunContext, intents: &[WriteIntent]) -> Vec<Result<Option<Option<String>>, Error>> {
    // An update is sent again when the record is read again; a relock is finished apart.
    let mut out: Vec<Result<Option<Option<String>>, Error>> = intents
        .iter()
        .map(|intent| {
            if intent.operation != WriteOperation::Create {
                Ok(Some(None))
            } else {
                Ok(None)
            }
        })
        .collect();
    let Some(lookup) = &ctx.plan.target.lookup else {
        return out;
    };
    let creates: Vec<(usize, &str)> = intents
        .iter()
        .enumerate()
        .filter(|(_, intent)| intent.operation == WriteOperation::Create)
        .filter_map(|(index, intent)| intent.business_key.as_deref().map(|key| (index, key)))
        .collect();
    let keys: Vec<(&str, &Value)> = creates.iter().map(|(_, key)| (*key, &Value::Null)).collect();
    let found = super::lookup::find_target_ids(ctx, lookup, &keys).await;
    for ((index, _), found) in creates.into_iter().zip(found) {
        out[index] = found.map(Some).map_err(|e| {
            e.context(format!(
                "settling the unfinished create of `{}`",
                intents[index].source_id
            ))
        });
    }
    out
}

/// The source records of the ledger rows to replay, with their payload hashes.
pub(crate) async fn ledger_records(ctx: &RunContext, which: &Replay) -> Result<Vec<(Value, String)>, Error> {
    let plan = &ctx.plan;
    let candidates = match which {
        Replay::Ids(ids) => {
            let mut found = Vec::new();
            for id in ids {
                match ctx.store.failure(*id).await? {
                    Some(f) if f.scheme == plan.name => found.push(f),
                    Some(f) => {
                        return Err(Error::config(format!(
                            "failure {id} belongs to scheme `{}`, not `{}` — pass that scheme's file",
                            f.scheme, plan.name
                        )))
                    }
                    None => {
                        return Err(Error::config(format!(
                            "there is no failure {id} — see `ferry failures list`"
                        )))
                    }
                }
            }
            found
        }
        _ => {
            ctx.store
                .list_failures(Some(&plan.name), Some(FailureStatus::Open), REPLAY_LIMIT)
                .await?
        }
    };
    let explicit = !matches!(which, Replay::Automatic);
    let mut records = Vec::new();
    let mut settled_ids = Vec::new();
    for failure in candidates {
        let eligible = failure.status == FailureStatus::Open
            && failure.stage != FailureStage::Fetch
            && (explicit
                || (failure.error_class != UNCERTAIN && failure.attempts < i64::from(plan.failures.max_attempts)));
        if !eligible {
            continue;
        }
        let Some(record) = failure.payload.clone().filter(|p| !p.is_null()) else {
            continue;
        };
        if failure.error_class == UNCERTAIN {
            // The operator says: send it. Release the hold on its mapping.
            let held = ctx
                .store
                .mappings_for(
                    &plan.name,
                    &plan.source.object,
                    std::slice::from_ref(&failure.source_id),
                )
                .await?;
            if held
                .get(&failure.source_id)
                .is_some_and(|m| m.status == MappingStatus::Pending)
            {
                ctx.store
                    .delete_mapping(&plan.name, &plan.source.object, &failure.source_id)
                    .await?;
            }
        }
        let hash = ctx.payload_hasher.hash(&record);
        // A record that failed before it had an id is filed under its hash; once it has
        // one, later outcomes are filed under that id, so this row is settled now.
        if failure.source_id.starts_with("hash:") {
            if let Ok(item) = identify(ctx, record.clone(), hash.clone()) {
                if item.source_id != failure.source_id {
                    settled_ids.push(failure.id);
                }
            }
        } else if failure.error_class == UNCERTAIN {
            settled_ids.push(failure.id);
        }
        records.push((record, hash));
    }
    if !settled_ids.is_empty() {
        ctx.store
            .set_failure_status(&settled_ids, FailureStatus::Resolved)
            .await?;
    }
    Ok(refetch(ctx, records).await)
}

/// Where the scheme reads each record's full version (`source.detail`), replayed records
/// are fetched again, so a replay sends the source's current data rather than the
/// (redacted) copy in the ledger. If that fetch fails, the stored copies are used.
async fn refetch(ctx: &RunContext, records: Vec<(Value, String)>) -> Vec<(Value, String)> {
    let Some(detail) = &ctx.plan.source.detail else {
        return records;
    };
    if records.is_empty() {
        return records;
    }
    let listed: Vec<Value> = records.iter().map(|(record, _)| record.clone()).collect();
    match super::fetch::fetch_details(ctx, detail, &ctx.vars, listed).await {
        Ok(fresh) => fresh
            .into_iter()
            .map(|record| {
                let hash = ctx.payload_hasher.hash(&record);
                (record, hash)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(
                error = %ctx.plan.redactor.redact(&e.message),
                "could not fetch the failed records again; replaying the ledger's copies"
            );
            records
        }
    }
}
