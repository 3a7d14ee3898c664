//! Writer tasks: render rows, send them, split answers per row, commit one transaction.

use super::context::row_scope;
use super::context::{Item, Job, JobResult, RunContext};
use super::plan::{describe_record_failure, plan_job, unsynced_mapping, Synced};
use super::send::{request_key, send};
use crate::error::Error;
use crate::http::backoff_delay;
use crate::protocol::{RowOutcome, UNKNOWN_OUTCOME, UNMATCHED_ANSWER};
use crate::scheme::model::OperationPlan;
use crate::scheme::raw::Per;
use crate::store::{
    BatchCommit, BatchWriter, EventLog, EventOutcome, FailureStage, IntentLog, MappingStatus, NewFailure, RecordEvent,
    WriteIntent, WriteOperation,
};
use crate::template::Scope;
use crate::transform::{render, value_to_text};
use chrono::Utc;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A row that rendered, minus the row itself: rows travel separately (see [`Rows`]) so the
/// batch request can use them without copying.
struct Rendered<'a> {
    item: &'a Item,
    key: Option<String>,
    name: Option<String>,
    /// The row's detail keys and the detail ids sent (schemes with `target_id` lists).
    details: Option<super::details::RowDetails>,
}

/// The rendered rows of one operation, parallel to its [`Rendered`] entries.
type Rows = Vec<Value>;

pub(crate) async fn write_job(ctx: Arc<RunContext>, job: Job) -> Result<JobResult, Error> {
    let plan = &ctx.plan;
    let batch_id = format!("{}-{}", ctx.run_id, job.seq);
    let ids: Vec<String> = job.items.iter().map(|i| i.source_id.clone()).collect();
    let failures_in = job.failures;
    let planned = plan_job(&ctx, job.items).await?;
    let mut result = JobResult {
        seq: job.seq,
        unchanged: planned.unchanged,
        skipped: planned.skipped,
        ids,
        ..JobResult::default()
    };
    let mut job = planned;
    let mut commit = BatchCommit {
        failures: failures_in,
        ..BatchCommit::default()
    };
    let mut created = Vec::new();
    if !ctx.dry_run && ctx.keep_events > 0 {
        for (item, target_id) in std::mem::take(&mut job.unchanged_by_id) {
            let answer = serde_json::json!({"target_id": target_id});
            let request = "nothing sent: unchanged since the last sync (--force resends it)".to_owned();
            result.events.push(record_event(
                &ctx,
                &item,
                EventOutcome::Unchanged,
                None,
                Some(request),
                answer,
            ));
        }
    }
    if !job.creates.is_empty() {
        write_operation(
            &ctx,
            &plan.target.create,
            WriteOperation::Create,
            &job.creates,
            &batch_id,
            &mut commit,
            &mut result,
            &mut created,
        )
        .await?;
    }
    if let Some(update) = &plan.target.update {
        if !job.updates.is_empty() {
            write_operation(
                &ctx,
                update,
                WriteOperation::Update,
                &job.updates,
                &batch_id,
                &mut commit,
                &mut result,
                &mut Vec::new(),
            )
            .await?;
        }
    }
    let deleted_any = super::delete::settle_deletions(&ctx, job.deletions, &batch_id, &mut commit, &mut result).await?;
    let wrote_anything = !(job.creates.is_empty() && job.updates.is_empty()) || deleted_any;
    if ctx.dry_run {
        // Nothing reaches the ledger in a dry run, so say here why each row would fail.
        for failure in &commit.failures {
            tracing::warn!(
                source_id = %failure.source_id,
                stage = ?failure.stage,
                "dry run: this record would fail: {}",
                ctx.plan.redactor.redact(&failure.message)
            );
        }
    }
    if !ctx.dry_run && wrote_anything {
        commit.settled.push((plan.name.clone(), batch_id.clone()));
    }
    let events = std::mem::take(&mut result.events);
    if ctx.dry_run {
        return Ok(result);
    }
    // Write-backs are announced before the creates' mappings are committed (see `writeback`).
    let writebacks = match &plan.target.writeback {
        Some(_) if !created.is_empty() => {
            let intents = super::writeback::intents(&ctx, &batch_id, &created);
            ctx.store.record_intents(&intents).await?;
            intents
        }
        _ => Vec::new(),
    };
    if !commit.failures.is_empty() {
        ctx.ledger_open.store(true, std::sync::atomic::Ordering::Release);
    }
    // Submitted together, so SQLite's group writer commits both in one transaction (each
    // is a no-op when empty).
    let (committed, recorded) = tokio::join!(
        ctx.store.commit_batch(commit),
        ctx.store.record_events(events, ctx.keep_events)
    );
    committed?;
    if let Err(e) = recorded {
        // The history is for explaining; losing a batch of it must not stop a run.
        tracing::warn!(error = %e, "the batch's record events were not saved");
    }
    if let (Some(writeback), false) = (&plan.target.writeback, writebacks.is_empty()) {
        let done = super::writeback::send_all(&ctx, writeback, &writebacks, &Default::default(), &mut result).await;
        ctx.store.commit_batch(done).await?;
    }
    Ok(result)
}

/// One event of `item` in this run.
fn record_event(
    ctx: &RunContext,
    item: &Item,
    outcome: EventOutcome,
    row: Option<Value>,
    request: Option<String>,
    answer: Value,
) -> RecordEvent {
    RecordEvent {
        scheme: ctx.plan.name.clone(),
        source_id: item.source_id.clone(),
        run_id: ctx.run_id,
        at: Utc::now(),
        outcome,
        payload_hash: (!item.hash.is_empty()).then(|| item.hash.clone()),
        window: item.window.as_deref().map(str::to_owned),
        row,
        request: Some(request.unwrap_or_else(|| "nothing sent: the row did not render".to_owned())),
        answer: Some(answer),
    }
}

/// What a write sent, in a line: `create POST /orders/batch (batch 3-0, 100 rows)`.
fn request_summary(op: &OperationPlan, operation: WriteOperation, batch_id: &str, rows: usize) -> String {
    let what = op
        .request
        .path
        .as_ref()
        .or(op.request.api.as_ref())
        .map(|t| t.source().to_owned())
        .unwrap_or_default();
    let per = match op.per {
        Per::Batch => format!("batch {batch_id}, {rows} row(s) in one request"),
        Per::Row => format!("batch {batch_id}, one request per row"),
    };
    format!(
        "{} {} {what} ({per})",
        operation_name(operation),
        op.request.method.as_str()
    )
}

fn operation_name(operation: WriteOperation) -> &'static str {
    match operation {
        WriteOperation::Create => "create",
        WriteOperation::Update => "update",
        WriteOperation::Relock => "relock",
        WriteOperation::Delete => "delete",
        WriteOperation::Writeback => "writeback",
    }
}

/// Renders, sends and settles one operation's rows; created rows to write back are
/// added to `created` (when the scheme has `target.writeback`).
#[allow(clippy::too_many_arguments)]
async fn write_operation(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: WriteOperation,
    items: &[Item],
    batch_id: &str,
    commit: &mut BatchCommit,
    result: &mut JobResult,
    created: &mut Vec<super::writeback::Created>,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let is_update = operation == WriteOperation::Update;
    let first_failure = commit.failures.len();
    let mut rendered = Vec::with_capacity(items.len());
    let mut rows: Rows = Vec::with_capacity(items.len());
    for item in items {
        let scope = row_scope(ctx, item);
        match render(&plan.target.fields, &scope, "target.fields") {
            Ok(mut row) => {
                let details = if plan.target.detail_lists.is_empty() {
                    None
                } else {
                    let stored = if is_update { item.detail_ids.as_ref() } else { None };
                    match super::details::prepare(
                        &plan.target.detail_lists,
                        &plan.target.fields,
                        &scope,
                        &mut row,
                        stored,
                    ) {
                        Ok(details) => Some(details),
                        Err(e) => {
                            result.failed += 1;
                            let message = format!("target.fields.{}", e.message);
                            commit
                                .failures
                                .push(failure(ctx, item, FailureStage::Transform, e.class(), &message));
                            result.missing.extend(e.missing);
                            continue;
                        }
                    }
                };
                let row = Arc::new(row);
                let row_scope = Scope {
                    record: Some(row.clone()),
                    vars: ctx.vars.clone(),
                    locals: scope.locals,
                    ..Scope::default()
                };
                // A key that cannot be computed would leave a lost answer unverifiable.
                let key = match plan.target.key.as_ref().map(|t| t.render(&row_scope)) {
                    None => None,
                    Some(Ok(value)) => value_to_text(&value),
                    Some(Err(e)) => {
                        result.failed += 1;
                        let message = format!("target.key (over the rendered row): {}", e.message);
                        let class = if e.missing.is_empty() {
                            "transform"
                        } else {
                            "missing_field"
                        };
                        commit
                            .failures
                            .push(failure(ctx, item, FailureStage::Transform, class, &message));
                        result.missing.extend(e.missing);
                        continue;
                    }
                };
                let name = match &plan.target.name {
                    Some(t) => t.render(&row_scope).ok().as_ref().and_then(value_to_text),
                    None => item.source_name.clone(),
                };
                drop(row_scope);
                rendered.push(Rendered {
                    item,
                    key,
                    name,
                    details,
                });
                rows.push(Arc::try_unwrap(row).unwrap_or_else(|shared| Value::clone(&shared)));
            }
            Err(e) => {
                result.failed += 1;
                let message = describe_record_failure(&e.message, &e.missing, &item.record);
                commit
                    .failures
                    .push(failure(ctx, item, FailureStage::Transform, e.class(), &message));
                result.missing.extend(e.missing);
            }
        }
    }
    if !ctx.dry_run && ctx.keep_events > 0 {
        // Rows that did not render: their event carries the reason, not a row.
        for (f, item) in commit.failures[first_failure..].iter().zip(
            items
                .iter()
                .filter(|i| !rendered.iter().any(|r: &Rendered| std::ptr::eq(r.item, *i))),
        ) {
            let answer = serde_json::json!({"class": f.error_class, "message": f.message});
            result
                .events
                .push(record_event(ctx, item, EventOutcome::Failed, None, None, answer));
        }
    }
    if rendered.is_empty() {
        return Ok(());
    }
    if !ctx.dry_run {
        record_intents(ctx, operation, &rendered, &rows, batch_id).await?;
    }
    let relock = if is_update && !ctx.dry_run {
        super::relock::scheme_relock(ctx)
    } else {
        None
    };
    let (mut outcomes, mut rows) = match relock {
        Some(relock) => guarded_update(ctx, op, relock, &rendered, rows, batch_id, result).await?,
        None => {
            let all: Vec<&Rendered> = rendered.iter().collect();
            send_rows(ctx, op, operation, &all, rows, result, 0).await?
        }
    };
    if ctx.dry_run {
        return Ok(());
    }
    note_unmatched(ctx, &outcomes, is_update, result);
    if !is_update {
        settle_unknown(ctx, op, &rendered, &rows, &mut outcomes, result).await?;
    }
    let now = Utc::now();
    let request = (ctx.keep_events > 0).then(|| request_summary(op, operation, batch_id, rendered.len()));
    for (index, (r, outcome)) in rendered.iter().zip(outcomes).enumerate() {
        if let Some(request) = &request {
            let (kind, answer) = match &outcome {
                RowOutcome::Written { target_id, .. } => (
                    if is_update {
                        EventOutcome::Updated
                    } else {
                        EventOutcome::Created
                    },
                    serde_json::json!({"target_id": target_id.clone().or_else(|| r.item.target_id.clone()), "key": r.key}),
                ),
                RowOutcome::Failed { message, class } => (
                    EventOutcome::Failed,
                    serde_json::json!({"class": class, "message": plan.redactor.redact(message)}),
                ),
            };
            // The rows are not needed after this loop: move each into its event.
            let row = rows.get_mut(index).map(std::mem::take).map(|row| {
                if plan.redactor.is_empty() {
                    row
                } else {
                    plan.redactor.redact_value(&row)
                }
            });
            result
                .events
                .push(record_event(ctx, r.item, kind, row, Some(request.clone()), answer));
        }
        match outcome {
            RowOutcome::Written { target_id, details } => {
                let detail_ids = r
                    .details
                    .as_ref()
                    .and_then(|rows| super::details::learned(ctx, rows, details, is_update, &r.item.source_id));
                if is_update {
                    result.updated += 1;
                } else {
                    result.created += 1;
                }
                let target_id = target_id.or_else(|| r.item.target_id.clone()).or_else(|| r.key.clone());
                match (is_update, &plan.target.writeback, &target_id) {
                    (false, Some(_), Some(id)) => created.push(super::writeback::Created {
                        source_id: r.item.source_id.clone(),
                        source_name: r.item.source_name.clone(),
                        target_id: id.clone(),
                        record: r.item.record.clone(),
                        hash: r.item.hash.clone(),
                    }),
                    // Nothing to write back: say so rather than skip it.
                    (false, Some(_), None) => {
                        result.failed += 1;
                        commit.failures.push(failure(
                            ctx,
                            r.item,
                            FailureStage::Write,
                            super::writeback::WRITEBACK,
                            "the record was created, but the target's answer named no id (and the row has no `target.key`), so nothing could be written back to the source; set `response.row_ids` or `response.id`",
                        ));
                    }
                    _ => {}
                }
                let synced = Synced {
                    source_id: &r.item.source_id,
                    source_name: r.item.source_name.clone(),
                    target_id,
                    target_name: r.name.clone(),
                    status: if is_update {
                        MappingStatus::Updated
                    } else {
                        MappingStatus::Created
                    },
                    hash: &r.item.hash,
                    detail_ids,
                };
                commit.mappings.push(synced.mapping(plan, now));
                if ctx.ledger_open.load(std::sync::atomic::Ordering::Acquire) {
                    commit.resolved.push((plan.name.clone(), r.item.source_id.clone()));
                }
            }
            RowOutcome::Failed { message, class } => {
                result.failed += 1;
                if is_update {
                    // An existing mapping keeps its target id; sending an update again is harmless.
                    commit
                        .failures
                        .push(failure(ctx, r.item, FailureStage::Write, class, &message));
                    continue;
                }
                let uncertain = class == UNKNOWN_OUTCOME || class == UNMATCHED_ANSWER;
                let (class, message, status) = if uncertain {
                    (
                        UNCERTAIN,
                        uncertain_message(&message, plan.target.lookup.is_some()),
                        MappingStatus::Pending,
                    )
                } else {
                    (class, message, MappingStatus::Failed)
                };
                commit
                    .failures
                    .push(failure(ctx, r.item, FailureStage::Write, class, &message));
                // A failed create shows in `mappings list --status failed`; an uncertain one is
                // held `pending` so no later run creates it again until someone decides.
                commit.mappings.push(unsynced_mapping(
                    plan,
                    &r.item.source_id,
                    r.item.source_name.clone(),
                    status,
                    plan.redactor.redact(&message).into_owned(),
                    now,
                ));
            }
        }
    }
    Ok(())
}

/// An update of rows the target may lock (see [`super::relock`]): unlock what is locked,
/// save what may be saved, lock again. The rows are not handed back (updates need them
/// no more).
async fn guarded_update(
    ctx: &RunContext,
    op: &OperationPlan,
    relock: crate::protocol::locks::Relock,
    rendered: &[Rendered<'_>],
    rows: Rows,
    batch_id: &str,
    result: &mut JobResult,
) -> Result<(Vec<RowOutcome>, Rows), Error> {
    use super::relock::{self, LockedRow};
    let locked: Vec<LockedRow> = rendered
        .iter()
        .map(|r| LockedRow {
            source_id: &r.item.source_id,
            source_name: r.item.source_name.as_deref(),
            target_id: r.item.target_id.as_deref().unwrap_or_default(),
            hash: &r.item.hash,
        })
        .collect();
    let unlocked = relock::unlock(ctx, relock, &locked, batch_id, &mut result.requests).await?;
    let mut outcomes: Vec<Option<RowOutcome>> = unlocked.blocked.clone();
    let to_save: Vec<usize> = (0..rendered.len()).filter(|&i| outcomes[i].is_none()).collect();
    if !to_save.is_empty() {
        let mut rows: Vec<Option<Value>> = rows.into_iter().map(Some).collect();
        let subset: Vec<&Rendered> = to_save.iter().map(|&i| &rendered[i]).collect();
        let subset_rows: Rows = to_save.iter().filter_map(|&i| rows[i].take()).collect();
        let (saved, _) = send_rows(ctx, op, WriteOperation::Update, &subset, subset_rows, result, 0).await?;
        for (&index, outcome) in to_save.iter().zip(saved) {
            outcomes[index] = Some(outcome);
        }
    }
    let mut outcomes: Vec<RowOutcome> = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or(RowOutcome::Failed {
                message: "the target gave no outcome for this row".to_string(),
                class: UNKNOWN_OUTCOME,
            })
        })
        .collect();
    relock::relock(ctx, &unlocked, &locked, &mut outcomes, &mut result.requests).await;
    Ok((outcomes, Vec::new()))
}

/// The ledger class of a create whose outcome nobody could establish.
pub(crate) const UNCERTAIN: &str = "uncertain";

pub(crate) fn uncertain_message(cause: &str, has_lookup: bool) -> String {
    let how = if has_lookup {
        "the look-up by business key failed too"
    } else {
        "the target has no `lookup` to check it"
    };
    let prevent = if has_lookup {
        ""
    } else {
        ". To settle such writes by themselves, give the target a `lookup`, or set `retry_writes: idempotency_key` \
         on the operation (sending `<< batch.key >>` where the target reads an idempotency key), or \
         `retry_writes: server_errors` if the target never acts on a request it answers with 5xx"
    };
    format!(
        "this create may or may not have reached the target ({cause}); {how}. Check the target: if the \
         record is there, record its id with `ferry mappings set`; if not, run `ferry failures retry` on this entry{prevent}"
    )
}

/// Commits the rows' write intents before anything is sent (see [`crate::store::WriteIntent`]).
async fn record_intents(
    ctx: &RunContext,
    operation: WriteOperation,
    rendered: &[Rendered<'_>],
    rows: &[Value],
    batch_id: &str,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let keep_payload = operation == WriteOperation::Create && plan.target.lookup.is_none();
    // A create sent under an idempotency key is sent again as it was (see `recover`); a row
    // that would have to be stored redacted cannot be, so it is not kept.
    let keep_sent = operation == WriteOperation::Create
        && plan.target.create.retry_writes == Some(crate::scheme::raw::RetryWrites::IdempotencyKey);
    let sent = |row: &Value| {
        keep_sent
            .then(|| plan.redactor.redact_value(row))
            .filter(|kept| kept == row)
    };
    let now = Utc::now();
    let intents: Vec<WriteIntent> = rendered
        .iter()
        .zip(rows)
        .map(|(r, row)| WriteIntent {
            sent: sent(row),
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: r.item.source_id.clone(),
            source_name: r.item.source_name.clone(),
            batch_id: batch_id.to_string(),
            operation,
            business_key: r.key.clone(),
            target_id: r.item.target_id.clone(),
            payload_hash: r.item.hash.clone(),
            payload: keep_payload.then(|| plan.redactor.redact_value(&r.item.record)),
            created_at: now,
        })
        .collect();
    ctx.store.record_intents(&intents).await?;
    Ok(())
}

/// An answer that cannot be matched to its rows means the scheme's response paths (or the
/// vendor's answers) are not what Ferry expects: the batch is settled as usual, and the
/// run stops before sending more.
fn note_unmatched(ctx: &RunContext, outcomes: &[RowOutcome], is_update: bool, result: &mut JobResult) {
    let Some(message) = outcomes.iter().find_map(|outcome| match outcome {
        RowOutcome::Failed { message, class } if *class == UNMATCHED_ANSWER => Some(message),
        _ => None,
    }) else {
        return;
    };
    let settled = if is_update {
        "its rows are in the ledger; an update is safe to send again"
    } else if ctx.plan.target.lookup.is_some() {
        "its rows were looked up with target.lookup: found ones are mapped, absent ones are in the ledger, \
         unverifiable ones held `pending`"
    } else {
        "its rows are in the ledger as `uncertain` and their mappings held `pending` (no target.lookup to check them)"
    };
    result.abort.get_or_insert_with(|| {
        Error::new(
            crate::error::ErrorKind::Aborted,
            format!(
                "{}. The run stopped before sending another batch; {settled}. Correct the scheme, then run again",
                ctx.plan.redactor.redact(message)
            ),
        )
    });
}

/// Settles creates whose answer was lost: looks each up by business key, adopts the ids it
/// finds, and sends the rest again, up to the connection's retry attempts. Rows it cannot
/// settle stay [`UNKNOWN_OUTCOME`]. Rows of an unmatched answer are looked up once and
/// never sent again (the run is stopping).
async fn settle_unknown(
    ctx: &RunContext,
    op: &OperationPlan,
    rendered: &[Rendered<'_>],
    rows: &[Value],
    outcomes: &mut [RowOutcome],
    result: &mut JobResult,
) -> Result<(), Error> {
    let Some(lookup) = &ctx.plan.target.lookup else {
        return Ok(());
    };
    let conn = ctx.plan.target_connection();
    let mut round = 1u32;
    loop {
        let unknown: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                matches!(o, RowOutcome::Failed { class, .. } if *class == UNKNOWN_OUTCOME || *class == UNMATCHED_ANSWER)
            })
            .filter(|(i, _)| rendered[*i].key.is_some())
            .map(|(i, _)| i)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let keys: Vec<(&str, &Value)> = unknown
            .iter()
            .map(|&i| (rendered[i].key.as_deref().unwrap_or_default(), &rows[i]))
            .collect();
        let answers = super::lookup::find_target_ids(ctx, lookup, &keys).await;
        result.requests += match &lookup.batch {
            Some(batch) => unknown.len().div_ceil(batch.size.max(1)) as u64,
            None => unknown.len() as u64,
        };
        let found: Vec<(usize, Result<Option<String>, Error>)> = unknown.iter().copied().zip(answers).collect();
        let mut resend = Vec::new();
        let mut absent = Vec::new();
        for (i, answer) in found {
            let unmatched = matches!(outcomes[i], RowOutcome::Failed { class, .. } if class == UNMATCHED_ANSWER);
            match answer {
                Ok(Some(id)) => outcomes[i] = RowOutcome::written(Some(id)),
                Ok(None) if unmatched => absent.push(i),
                Ok(None) => resend.push(i),
                Err(e) => {
                    tracing::warn!(error = %ctx.plan.redactor.redact(&e.message), "look-up by business key failed")
                }
            }
        }
        if round >= conn.retry.attempts {
            absent.append(&mut resend);
        }
        // Checked and absent: a plain failure, safe to replay.
        for &i in &absent {
            if let RowOutcome::Failed { message, .. } = &outcomes[i] {
                outcomes[i] = RowOutcome::Failed {
                    message: format!("{message} (checked: the record is not in the target)"),
                    class: "not_written",
                };
            }
        }
        if resend.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(backoff_delay(&conn.retry, round, None, rand::random::<f64>())).await;
        round += 1;
        let subset: Vec<&Rendered> = resend.iter().map(|&i| &rendered[i]).collect();
        let subset_rows: Rows = resend.iter().map(|&i| rows[i].clone()).collect();
        let (again, _) = send_rows(ctx, op, WriteOperation::Create, &subset, subset_rows, result, round).await?;
        for (i, outcome) in resend.into_iter().zip(again) {
            outcomes[i] = outcome;
        }
    }
}

/// Sends `rows` as one batch request or one request per row, as the operation says, and
/// hands the rows back. They are moved into the request's scope (`rows`, or `row` and
/// `record` per row) and out again, never copied.
/// `attempt` is 0 for the first send of these rows and counts resends of a subset (which
/// must not reuse the idempotency key of the whole batch).
async fn send_rows(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: WriteOperation,
    rendered: &[&Rendered<'_>],
    rows: Rows,
    result: &mut JobResult,
    attempt: u32,
) -> Result<(Vec<RowOutcome>, Rows), Error> {
    let operation = operation_name(operation);
    let mut key = request_key(ctx.run_id, result.seq, operation);
    if attempt > 0 {
        key.push_str(&format!("-resend{attempt}"));
    }
    let mut outcomes: Vec<RowOutcome> = Vec::with_capacity(rendered.len());
    match op.per {
        Per::Batch => {
            let mut vars: Map<String, Value> = (*ctx.vars).clone();
            vars.insert("rows".into(), Value::Array(rows));
            vars.insert(
                "batch".into(),
                crate::scheme::context::batch_value(result.seq, rendered.len(), &key),
            );
            let scope = Scope {
                vars: Arc::new(vars),
                ..Scope::default()
            };
            let keys: Vec<Option<String>> = rendered.iter().map(|r| r.key.clone()).collect();
            let ids: Vec<Option<&str>> = rendered.iter().map(|r| r.item.target_id.as_deref()).collect();
            let sent = send(ctx, op, operation, &scope, &ids, &keys, result).await;
            let rows = take_var(scope.vars, "rows")
                .and_then(|rows| match rows {
                    Value::Array(rows) => Some(rows),
                    _ => None,
                })
                .unwrap_or_default();
            outcomes.extend(sent?);
            Ok((outcomes, rows))
        }
        Per::Row => {
            let mut back = Vec::with_capacity(rows.len());
            for (r, row) in rendered.iter().zip(rows) {
                let mut vars: Map<String, Value> = (*ctx.vars).clone();
                vars.insert("row".into(), row);
                vars.insert("record".into(), Value::clone(&r.item.record));
                vars.insert(
                    "target_id".into(),
                    r.item.target_id.clone().map(Value::String).unwrap_or(Value::Null),
                );
                vars.insert(
                    "batch".into(),
                    crate::scheme::context::batch_value(result.seq, 1, &format!("{key}-{}", r.item.source_id)),
                );
                let scope = Scope {
                    vars: Arc::new(vars),
                    ..Scope::default()
                };
                let ids = [r.item.target_id.as_deref()];
                let sent = send(ctx, op, operation, &scope, &ids, std::slice::from_ref(&r.key), result).await;
                back.push(take_var(scope.vars, "row").unwrap_or_default());
                outcomes.extend(sent?);
            }
            Ok((outcomes, back))
        }
    }
}

/// Moves one variable back out of a request scope's vars (copying only if the vars are
/// still shared, which a finished request leaves them not).
fn take_var(vars: Arc<Map<String, Value>>, name: &str) -> Option<Value> {
    match Arc::try_unwrap(vars) {
        Ok(mut vars) => vars.remove(name),
        Err(shared) => shared.get(name).cloned(),
    }
}

fn failure(ctx: &RunContext, item: &Item, stage: FailureStage, class: &str, message: &str) -> NewFailure {
    NewFailure {
        scheme: ctx.plan.name.clone(),
        source_id: item.source_id.clone(),
        stage,
        error_class: class.to_string(),
        message: ctx.plan.redactor.redact(message).into_owned(),
        payload: Some(ctx.plan.redactor.redact_value(&item.record)),
    }
}
