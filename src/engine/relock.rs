//! Updates of rows the target locks: K3Cloud refuses to change a submitted or audited row
//! (see `protocol::locks`; K3Cloud's are `protocol::k3cloud::locks`). Around the save of an update batch this module reads
//! each row's lock (one query), unlocks the audited rows (one `UnAudit`), and afterwards
//! locks them again (`Submit`, then `Audit`) unless the save did that itself.
//!
//! Promises:
//! - Every unlocked row is recorded as a write intent (`relock`) before the `UnAudit` is
//!   sent, and settled only with the batch's answer; a run that finds one left behind
//!   (the process died between the steps) locks the row again or files it in the ledger.
//!   A row is never left unaudited without a trace.
//! - Per-row outcomes hold across the steps: a row that fails at any step fails alone,
//!   with the step named in its ledger message; the other rows go on.
//! - A save that fails for an unlocked row locks the row again, so its old data stays as
//!   it was, audited.

use super::call;
use super::context::RunContext;
use crate::error::Error;
use crate::http::Repeat;
use crate::protocol::locks::{LockStep, LockedRows, Relock, RowLock};
use crate::protocol::RowOutcome;
use crate::store::{IntentLog, WriteIntent, WriteOperation};
use chrono::Utc;
use serde_json::Value;

/// What [`unlock`] did to an update batch.
pub(crate) struct Unlocked {
    pub relock: Relock,
    /// Per row: `Some` when the row must not be saved (with why), `None` to save it.
    pub blocked: Vec<Option<RowOutcome>>,
    /// Rows this batch unaudited, to audit again.
    pub unaudited: Vec<usize>,
}

/// One row of an update batch, as this module needs it.
pub(crate) struct LockedRow<'a> {
    pub source_id: &'a str,
    pub source_name: Option<&'a str>,
    pub target_id: &'a str,
    pub hash: &'a str,
}

fn failed(message: String) -> RowOutcome {
    RowOutcome::Failed {
        message,
        class: "rejected",
    }
}

/// Reads the locks of an update batch's rows and unaudits the audited ones (see the
/// module doc). `None` when the vendor has no locks for this operation.
pub(crate) async fn unlock(
    ctx: &RunContext,
    relock: Relock,
    rows: &[LockedRow<'_>],
    batch_id: &str,
    requests: &mut u64,
) -> Result<Unlocked, Error> {
    let conn = ctx.plan.target_connection();
    let ids: Vec<&str> = rows.iter().map(|r| r.target_id).collect();
    let (api, query) = relock.status_query(&ids);
    let (_, body, sent) = call::call(ctx, conn, api, &query, Repeat::Safe)
        .await
        .map_err(|e| e.context("reading the document status of the rows to update"))?;
    *requests += u64::from(sent);
    let statuses = relock.read_statuses(&body).map_err(Error::decode)?;
    let mut blocked: Vec<Option<RowOutcome>> = Vec::with_capacity(rows.len());
    let mut audited = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let status = statuses.get(row.target_id.trim()).map(String::as_str);
        let form = &relock.form;
        let vendor = relock.vendor();
        blocked.push(match (relock.lock_of(status), relock.policy) {
            (RowLock::Free, _) => None,
            (RowLock::Missing, _) => Some(failed(format!(
                "{form} {} is no longer in the target (a query by {} found nothing); if it was deleted \
                 there on purpose, remove the mapping with `ferry mappings delete` and it is created again",
                row.target_id, relock.key_field
            ))),
            (RowLock::Submitted, _) => Some(failed(format!(
                "{form} {} is submitted and waiting for approval ({}), so {vendor} refuses \
                 changes; Ferry does not withdraw submissions: approve or withdraw it in {vendor}, then run \
                 `ferry failures retry`",
                row.target_id,
                relock.state(RowLock::Submitted)
            ))),
            (RowLock::Audited, LockedRows::Refuse) => Some(failed(format!(
                "{form} {} is audited ({}) and this connection's `locked_rows` is `refuse`; \
                 unaudit it in {vendor} (or set `locked_rows: reaudit`), then run `ferry failures retry`",
                row.target_id,
                relock.state(RowLock::Audited)
            ))),
            (RowLock::Audited, _) => {
                audited.push(index);
                None
            }
        });
    }
    let mut unaudited = Vec::new();
    if !audited.is_empty() {
        record_relocks(ctx, rows, &audited, batch_id).await?;
        let ids: Vec<&str> = audited.iter().map(|&i| rows[i].target_id).collect();
        let outcomes = list_operation(ctx, &relock, LockStep::Unlock, &ids, requests).await;
        let step = format!("{} {}", relock.vendor(), relock.step_name(LockStep::Unlock));
        for (&index, outcome) in audited.iter().zip(outcomes) {
            match outcome {
                Ok(()) => unaudited.push(index),
                Err(message) => blocked[index] = Some(failed(format!("{step} before the update: {message}"))),
            }
        }
    }
    Ok(Unlocked {
        relock,
        blocked,
        unaudited,
    })
}

/// After the save: audits again the rows [`unlock`] unaudited, where the save did not
/// (failed saves always, so the old data stays audited). A row whose audit fails keeps
/// its save but fails with the reason.
pub(crate) async fn relock(
    ctx: &RunContext,
    unlocked: &Unlocked,
    rows: &[LockedRow<'_>],
    outcomes: &mut [RowOutcome],
    requests: &mut u64,
) {
    let saved: Vec<bool> = outcomes
        .iter()
        .map(|outcome| matches!(outcome, RowOutcome::Written { .. }))
        .collect();
    let saved = |index: usize| saved[index];
    let again: Vec<usize> = unlocked
        .unaudited
        .iter()
        .copied()
        .filter(|&index| match unlocked.relock.policy {
            _ if !saved(index) => true,
            LockedRows::Reaudit => !unlocked.relock.server_reaudits,
            LockedRows::Unaudit | LockedRows::Refuse => false,
        })
        .collect();
    if again.is_empty() {
        return;
    }
    let targets: Vec<&str> = again.iter().map(|&i| rows[i].target_id).collect();
    for (index, problem) in again
        .iter()
        .zip(audit_again(ctx, &unlocked.relock, &targets, requests).await)
    {
        let Some(problem) = problem else { continue };
        let relock = &unlocked.relock;
        let unaudited = relock.state(RowLock::Free);
        let state = if saved(*index) {
            format!("the row was saved but is left unaudited ({unaudited})")
        } else {
            format!("the row is left unaudited ({unaudited}) with its old data")
        };
        let note = format!(
            "{problem}; {state}: audit it in {}, or run `ferry failures retry` to save and audit it again",
            relock.vendor()
        );
        outcomes[*index] = match &outcomes[*index] {
            RowOutcome::Failed { message, class } => RowOutcome::Failed {
                message: format!("{message}; then {note}"),
                class,
            },
            RowOutcome::Written { .. } => failed(note),
        };
    }
}

/// `Submit` then `Audit` of `ids`; per id, the problem if either step failed.
async fn audit_again(ctx: &RunContext, relock: &Relock, ids: &[&str], requests: &mut u64) -> Vec<Option<String>> {
    let step = |step: LockStep| format!("{} {}", relock.vendor(), relock.step_name(step));
    let submit = step(LockStep::Submit);
    let mut problems: Vec<Option<String>> = list_operation(ctx, relock, LockStep::Submit, ids, requests)
        .await
        .into_iter()
        .map(|outcome| outcome.err().map(|m| format!("{submit} after the update: {m}")))
        .collect();
    let submitted: Vec<usize> = (0..ids.len()).filter(|&i| problems[i].is_none()).collect();
    if submitted.is_empty() {
        return problems;
    }
    let audit_ids: Vec<&str> = submitted.iter().map(|&i| ids[i]).collect();
    let audited = list_operation(ctx, relock, LockStep::Approve, &audit_ids, requests).await;
    let approve = step(LockStep::Approve);
    for (&index, outcome) in submitted.iter().zip(audited) {
        if let Err(message) = outcome {
            problems[index] = Some(format!("{approve} after the update: {message}"));
        }
    }
    problems
}

/// Sends one lock step for `ids` and splits the answer per id (K3Cloud: by `DIndex`). A
/// request that fails as a whole fails every id with its message.
async fn list_operation(
    ctx: &RunContext,
    relock: &Relock,
    step: LockStep,
    ids: &[&str],
    requests: &mut u64,
) -> Vec<Result<(), String>> {
    let conn = ctx.plan.target_connection();
    let (api, params) = relock.step(step, ids);
    let redact = |message: &str| ctx.plan.redactor.redact(message).into_owned();
    match call::call(ctx, conn, api, &params, Repeat::OnlyIfNotDelivered).await {
        Ok((_, body, sent)) => {
            *requests += u64::from(sent);
            match conn.protocol.row_outcomes(api, &body, ids.len()) {
                Some(outcomes) => outcomes
                    .into_iter()
                    .map(|outcome| match outcome {
                        RowOutcome::Written { .. } => Ok(()),
                        RowOutcome::Failed { message, .. } => Err(redact(&message)),
                    })
                    .collect(),
                None => vec![Err(format!("{api} answered without per-row results")); ids.len()],
            }
        }
        Err(e) => {
            *requests += 1;
            vec![Err(redact(&e.message)); ids.len()]
        }
    }
}

/// Commits a `relock` intent for each row about to be unaudited.
async fn record_relocks(
    ctx: &RunContext,
    rows: &[LockedRow<'_>],
    audited: &[usize],
    batch_id: &str,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let now = Utc::now();
    let intents: Vec<WriteIntent> = audited
        .iter()
        .map(|&index| {
            let row = &rows[index];
            WriteIntent {
                scheme: plan.name.clone(),
                source_object: plan.source.object.clone(),
                source_id: row.source_id.to_string(),
                source_name: row.source_name.map(str::to_string),
                batch_id: batch_id.to_string(),
                operation: WriteOperation::Relock,
                business_key: None,
                target_id: Some(row.target_id.to_string()),
                payload_hash: row.hash.to_string(),
                payload: None,
                sent: None,
                created_at: now,
            }
        })
        .collect();
    ctx.store.record_intents(&intents).await?;
    Ok(())
}

/// Finishes `relock` intents an earlier run left behind: rows that are not audited are
/// audited again. Returns, per intent, the problem when that failed.
pub(crate) async fn finish_abandoned(
    ctx: &RunContext,
    relock: Option<&Relock>,
    intents: &[&WriteIntent],
) -> Vec<Option<String>> {
    let Some(relock) = relock else {
        return vec![
            Some("the form of the unaudited row cannot be read from the scheme's update".to_string());
            intents.len()
        ];
    };
    let ids: Vec<&str> = intents
        .iter()
        .map(|i| i.target_id.as_deref().unwrap_or_default())
        .collect();
    let mut requests = 0;
    let (api, query) = relock.status_query(&ids);
    let statuses = match call::call(ctx, ctx.plan.target_connection(), api, &query, Repeat::Safe).await {
        Ok((_, body, _)) => relock.read_statuses(&body),
        Err(e) => Err(e.message),
    };
    let statuses = match statuses {
        Ok(statuses) => statuses,
        Err(message) => {
            let message = format!("its status could not be read: {}", ctx.plan.redactor.redact(&message));
            return vec![Some(message); intents.len()];
        }
    };
    let mut problems = vec![None; ids.len()];
    // Unaudited rows need Submit then Audit; a row the dead run already submitted, Audit.
    let (mut unaudited, mut submitted) = (Vec::new(), Vec::new());
    for (index, id) in ids.iter().enumerate() {
        match relock.lock_of(statuses.get(*id).map(String::as_str)) {
            RowLock::Audited => {}
            RowLock::Submitted => submitted.push(index),
            RowLock::Free => unaudited.push(index),
            RowLock::Missing => problems[index] = Some(format!("{} {id} is no longer in the target", relock.form)),
        }
    }
    if !unaudited.is_empty() {
        let open_ids: Vec<&str> = unaudited.iter().map(|&i| ids[i]).collect();
        for (&index, problem) in unaudited
            .iter()
            .zip(audit_again(ctx, relock, &open_ids, &mut requests).await)
        {
            problems[index] = problem;
        }
    }
    if !submitted.is_empty() {
        let open_ids: Vec<&str> = submitted.iter().map(|&i| ids[i]).collect();
        let outcomes = list_operation(ctx, relock, LockStep::Approve, &open_ids, &mut requests).await;
        let approve = format!("{} {}", relock.vendor(), relock.step_name(LockStep::Approve));
        for (&index, outcome) in submitted.iter().zip(outcomes) {
            problems[index] = outcome.err().map(|m| format!("{approve}: {m}"));
        }
    }
    problems
}

/// The lock handling of the scheme's update operation, read from its request with no rows
/// (the form and the flags are literals in it), for settling intents without a batch.
pub(crate) fn scheme_relock(ctx: &RunContext) -> Option<Relock> {
    let update = ctx.plan.target.update.as_ref()?;
    let mut vars = (*ctx.vars).clone();
    vars.insert("rows".into(), Value::Array(Vec::new()));
    vars.insert("row".into(), Value::Null);
    let scope = crate::template::Scope {
        vars: std::sync::Arc::new(vars),
        ..crate::template::Scope::default()
    };
    let (api, params) = crate::exchange::render_call(&update.request, &scope).ok()?;
    ctx.plan.target_connection().protocol.row_locks(&api, &params)
}
