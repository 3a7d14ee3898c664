//! Write-back (回写, `target.writeback`): after a create, one request per created record
//! stores the target's id on the source record.
//!
//! Promises:
//! - A write-back is announced as a write intent (operation `writeback`, one per record,
//!   holding the target id and the source record) before the create's mappings are
//!   committed, so a run that dies in between leaves it pending, never lost.
//! - A successful write-back settles its intent and resolves the record's open ledger rows.
//! - A failed one files a ledger row (class `writeback`, naming the target id) and stays
//!   pending: every later run sends it again first thing, until it succeeds or has failed
//!   `failures.max_attempts` times; then it is settled and its ledger row stays open with
//!   a message saying it was given up. The ledger row carries no record, so replaying the
//!   ledger never sends the create again for it.

use super::context::{JobResult, RunContext};
use super::summary::Summary;
use crate::error::Error;
use crate::protocol::RowOutcome;
use crate::scheme::model::WritebackPlan;
use crate::store::{
    BatchCommit, BatchWriter, FailureLedger, FailureStage, FailureStatus, NewFailure, WriteIntent, WriteOperation,
};
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The ledger class of a failed write-back.
pub(crate) const WRITEBACK: &str = "writeback";

/// A record created in this batch, to be written back.
pub(crate) struct Created {
    pub source_id: String,
    pub source_name: Option<String>,
    pub target_id: String,
    pub record: Arc<Value>,
    pub hash: String,
}

/// The intents announcing the write-backs of `created` (one batch id per record, so each
/// settles alone).
pub(crate) fn intents(ctx: &RunContext, batch_id: &str, created: &[Created]) -> Vec<WriteIntent> {
    let plan = &ctx.plan;
    let now = Utc::now();
    created
        .iter()
        .map(|c| WriteIntent {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: c.source_id.clone(),
            source_name: c.source_name.clone(),
            batch_id: format!("{batch_id}-writeback-{}", c.source_id),
            operation: WriteOperation::Writeback,
            business_key: None,
            target_id: Some(c.target_id.clone()),
            payload_hash: c.hash.clone(),
            payload: Some(plan.redactor.redact_value(&c.record)),
            sent: None,
            created_at: now,
        })
        .collect()
}

/// Sends each intent's write-back; returns the commit that records the outcomes. Intents
/// whose source id is in `give_up` are settled even when they fail again.
pub(crate) async fn send_all(
    ctx: &RunContext,
    writeback: &WritebackPlan,
    intents: &[WriteIntent],
    give_up: &HashMap<String, i64>,
    result: &mut JobResult,
) -> BatchCommit {
    let plan = &ctx.plan;
    let conn = &plan.connections[&writeback.connection];
    let mut commit = BatchCommit::default();
    let mut sending = JobResult::default();
    for intent in intents {
        let target_id = intent.target_id.clone().unwrap_or_default();
        let mut vars = (*ctx.vars).clone();
        vars.insert("record".into(), intent.payload.clone().unwrap_or(Value::Null));
        vars.insert("source_id".into(), Value::String(intent.source_id.clone()));
        vars.insert("target_id".into(), Value::String(target_id.clone()));
        let scope = crate::template::Scope {
            vars: Arc::new(vars),
            ..crate::template::Scope::default()
        };
        let sent = super::send::send_on(
            ctx,
            conn,
            &writeback.op,
            "writeback",
            &scope,
            &[Some(target_id.as_str())],
            &[None],
            &mut sending,
        )
        .await;
        let problem = match sent {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(RowOutcome::Written { .. }) => None,
                Some(RowOutcome::Failed { message, .. }) => Some(message),
                None => Some("the answer held no outcome".to_string()),
            },
            Err(e) => Some(e.message),
        };
        match problem {
            None => {
                commit.settled.push((plan.name.clone(), intent.batch_id.clone()));
                commit.resolved.push((plan.name.clone(), intent.source_id.clone()));
            }
            Some(problem) => {
                result.failed += 1;
                let attempts = give_up.get(&intent.source_id).copied().unwrap_or(0) + 1;
                let last = attempts >= i64::from(plan.failures.max_attempts);
                let mut message = format!(
                    "the record was created as target id {target_id}, but writing that id back to the source failed: {}",
                    plan.redactor.redact(&problem)
                );
                if last {
                    message.push_str(&format!(
                        "; given up after {attempts} attempts: write the id back by hand, then `ferry failures resolve`"
                    ));
                    commit.settled.push((plan.name.clone(), intent.batch_id.clone()));
                } else {
                    message.push_str("; the next run sends it again");
                }
                commit.failures.push(NewFailure {
                    scheme: plan.name.clone(),
                    source_id: intent.source_id.clone(),
                    stage: FailureStage::Write,
                    error_class: WRITEBACK.into(),
                    message,
                    payload: None,
                });
            }
        }
    }
    // Requests are counted on the side they went to.
    if writeback.connection == plan.source.connection {
        ctx.source_requests
            .fetch_add(sending.requests, std::sync::atomic::Ordering::Relaxed);
    } else {
        result.requests += sending.requests;
    }
    if !commit.failures.is_empty() {
        ctx.ledger_open.store(true, std::sync::atomic::Ordering::Release);
    }
    commit
}

/// Sends the write-backs an earlier run left pending (failed or cut off), at the start of
/// a run; see the module doc.
pub(crate) async fn retry_pending(
    ctx: &RunContext,
    writeback: Option<&WritebackPlan>,
    intents: Vec<WriteIntent>,
    summary: &mut Summary,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let Some(writeback) = writeback else {
        // The scheme no longer writes back: the announcements are dropped, with a trace.
        tracing::warn!(
            scheme = %plan.name,
            rows = intents.len(),
            "dropping pending write-backs: the scheme has no `target.writeback` any more"
        );
        let commit = BatchCommit {
            settled: intents
                .iter()
                .map(|i| (plan.name.clone(), i.batch_id.clone()))
                .collect(),
            ..BatchCommit::default()
        };
        ctx.store.commit_batch(commit).await?;
        return Ok(());
    };
    let open = ctx
        .store
        .list_failures(Some(&plan.name), Some(FailureStatus::Open), 10_000)
        .await?;
    let attempts: HashMap<String, i64> = open
        .into_iter()
        .filter(|f| f.error_class == WRITEBACK)
        .map(|f| (f.source_id, f.attempts))
        .collect();
    let mut result = JobResult::default();
    let commit = send_all(ctx, writeback, &intents, &attempts, &mut result).await;
    summary.failed += result.failed;
    summary.requests += result.requests;
    ctx.store.commit_batch(commit).await?;
    Ok(())
}
