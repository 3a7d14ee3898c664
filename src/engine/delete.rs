//! Records deleted at the source: what happens to their target records.
//!
//! A source that reports deletions (`source.deleted`, or a connector's default such as
//! Simply CRM's `sync`) sends their ids down the same path as records, in batches, after
//! the records of the same page. For each id the batch's mapping look-up decides:
//!
//! - **Mapped to a target record** (a `created` or `updated` mapping with a target id) and
//!   the scheme has `target.delete`: the target record is deleted through it, with the
//!   machinery of writes: write intents committed before the request, one outcome per
//!   row, the failure ledger for rows that failed. A deleted row's mapping becomes
//!   `deleted` (it keeps the id of the target record that was deleted), so a record that
//!   comes back later under the same id is created anew. A failed delete leaves the
//!   mapping as it was and opens a ledger row without a payload: nothing replays it (the
//!   ledger keeps records to send, and this one is gone), so an operator deletes the
//!   target record by hand and resolves the row.
//! - **Mapped, but the scheme has no `target.delete`**: nothing is sent; the target record
//!   stays and the mapping with it (a record restored at the source updates it again).
//! - **Not mapped to a target record** (no mapping, a failed create, already deleted):
//!   there is nothing to delete. A create whose outcome is uncertain (`pending`) may have
//!   reached the target, so that case is logged as a warning.
//!
//! Every deletion is counted (`Summary::deleted`, or `failed` when the target refused it)
//! and logged at info level with its source id; none is dropped silently. A deletion also
//! resolves the record's open ledger rows (except an `uncertain` one, which holds a
//! `pending` mapping for an operator): replaying the old copy of a record the source has
//! deleted would bring it back.
//!
//! A delete intent left behind by a killed run is dropped when the next run starts, like an
//! update's: the deletion is read again from the source (its window was never
//! checkpointed) and sent again.

use super::context::Deletion;
use super::context::{JobResult, RunContext};
use super::send::send;
use crate::error::Error;
use crate::protocol::RowOutcome;
use crate::scheme::model::OperationPlan;
use crate::scheme::raw::Per;
use crate::store::{
    BatchCommit, FailureStage, IntentLog, Mapping, MappingStatus, NewFailure, WriteIntent, WriteOperation,
};
use crate::template::Scope;
use chrono::Utc;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Settles a batch's deletions into `commit` and `result`. Returns whether intents were
/// recorded under `batch_id` (so the commit must settle them).
pub(crate) async fn settle_deletions(
    ctx: &RunContext,
    deletions: Vec<Deletion>,
    batch_id: &str,
    commit: &mut BatchCommit,
    result: &mut JobResult,
) -> Result<bool, Error> {
    let plan = &ctx.plan;
    let mut to_send: Vec<Deletion> = Vec::new();
    for deletion in deletions {
        let Deletion { item, mapping } = &deletion;
        let source_id = item.source_id.as_str();
        match (&plan.target.delete, &item.target_id) {
            (Some(_), Some(_)) => {
                to_send.push(deletion);
                continue;
            }
            (None, Some(target_id)) => tracing::info!(
                scheme = %plan.name,
                source_id,
                target_id = %target_id,
                "the source deleted this record; its target record stays (the scheme has no target.delete)"
            ),
            (_, None) => match mapping.as_ref().map(|m| m.status) {
                Some(MappingStatus::Pending) => tracing::warn!(
                    scheme = %plan.name,
                    source_id,
                    "the source deleted this record, whose create is uncertain (see the ledger); if it reached \
                     the target, delete it there"
                ),
                Some(MappingStatus::Deleted) => tracing::info!(
                    scheme = %plan.name,
                    source_id,
                    "the source deleted this record; its target record was deleted already"
                ),
                _ => tracing::info!(
                    scheme = %plan.name,
                    source_id,
                    "the source deleted this record; it has no target record to delete"
                ),
            },
        }
        result.deleted += 1;
        if mapping.as_ref().map(|m| m.status) != Some(MappingStatus::Pending) {
            resolve(ctx, source_id, commit);
        }
    }
    let Some(op) = &plan.target.delete else {
        return Ok(false);
    };
    if to_send.is_empty() {
        return Ok(false);
    }
    if !ctx.dry_run {
        record_intents(ctx, &to_send, batch_id).await?;
    }
    let outcomes = send_deletes(ctx, op, &to_send, result).await?;
    if ctx.dry_run {
        result.deleted += to_send.len() as u64;
        return Ok(false);
    }
    let now = Utc::now();
    for (deletion, outcome) in to_send.iter().zip(outcomes) {
        let source_id = deletion.item.source_id.as_str();
        let target_id = deletion.item.target_id.as_deref().unwrap_or_default();
        match outcome {
            RowOutcome::Written { .. } => {
                result.deleted += 1;
                tracing::info!(
                    scheme = %plan.name,
                    source_id,
                    target_id,
                    "the source deleted this record; its target record was deleted"
                );
                if let Some(mapping) = &deletion.mapping {
                    commit.mappings.push(Mapping {
                        status: MappingStatus::Deleted,
                        payload_hash: None,
                        attempts: 1,
                        last_error: None,
                        last_synced_at: Some(now),
                        ..mapping.clone()
                    });
                }
                resolve(ctx, source_id, commit);
            }
            RowOutcome::Failed { message, class } => {
                result.failed += 1;
                let message = format!(
                    "the source deleted this record, but deleting its target record {target_id} failed: {message}. \
                     Nothing replays a delete: delete the record in the target by hand, then `ferry failures resolve` \
                     this entry"
                );
                commit.failures.push(NewFailure {
                    scheme: plan.name.clone(),
                    source_id: source_id.to_string(),
                    stage: FailureStage::Write,
                    error_class: class.to_string(),
                    message: plan.redactor.redact(&message).into_owned(),
                    payload: None,
                });
            }
        }
    }
    Ok(true)
}

/// The deleted record's open ledger rows are settled with it.
fn resolve(ctx: &RunContext, source_id: &str, commit: &mut BatchCommit) {
    if ctx.ledger_open.load(std::sync::atomic::Ordering::Acquire) {
        commit.resolved.push((ctx.plan.name.clone(), source_id.to_string()));
    }
}

async fn record_intents(ctx: &RunContext, deletions: &[Deletion], batch_id: &str) -> Result<(), Error> {
    let plan = &ctx.plan;
    let now = Utc::now();
    let intents: Vec<WriteIntent> = deletions
        .iter()
        .map(|d| WriteIntent {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: d.item.source_id.clone(),
            source_name: d.mapping.as_ref().and_then(|m| m.source_name.clone()),
            batch_id: batch_id.to_string(),
            operation: WriteOperation::Delete,
            business_key: None,
            target_id: d.item.target_id.clone(),
            payload_hash: String::new(),
            payload: None,
            sent: None,
            created_at: now,
        })
        .collect();
    ctx.store.record_intents(&intents).await?;
    Ok(())
}

/// Sends the deletes, one request per row or one for the batch as the operation says.
/// Templates read `source_id` and `target_id` per row; `rows` (each `{source_id,
/// target_id}`) and `target_ids` per batch.
async fn send_deletes(
    ctx: &RunContext,
    op: &OperationPlan,
    deletions: &[Deletion],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let target_id = |d: &Deletion| d.item.target_id.clone().unwrap_or_default();
    match op.per {
        Per::Batch => {
            let mut vars: Map<String, Value> = (*ctx.vars).clone();
            let rows: Vec<Value> = deletions
                .iter()
                .map(|d| json!({"source_id": d.item.source_id, "target_id": target_id(d)}))
                .collect();
            vars.insert("rows".into(), Value::Array(rows));
            vars.insert(
                "target_ids".into(),
                deletions.iter().map(|d| Value::String(target_id(d))).collect(),
            );
            vars.insert("batch".into(), json!({"seq": result.seq, "size": deletions.len()}));
            let scope = Scope {
                vars: Arc::new(vars),
                ..Scope::default()
            };
            let ids: Vec<Option<&str>> = deletions.iter().map(|d| d.item.target_id.as_deref()).collect();
            let keys = vec![None; deletions.len()];
            send(ctx, op, "delete", &scope, &ids, &keys, result).await
        }
        Per::Row => {
            let mut outcomes = Vec::with_capacity(deletions.len());
            for d in deletions {
                let mut vars: Map<String, Value> = (*ctx.vars).clone();
                vars.insert("source_id".into(), Value::String(d.item.source_id.clone()));
                vars.insert("target_id".into(), Value::String(target_id(d)));
                let scope = Scope {
                    vars: Arc::new(vars),
                    ..Scope::default()
                };
                let ids = [d.item.target_id.as_deref()];
                outcomes.extend(send(ctx, op, "delete", &scope, &ids, &[None], result).await?);
            }
            Ok(outcomes)
        }
    }
}
