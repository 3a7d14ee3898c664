//! Writer tasks: render rows, send them, split answers per row, commit one transaction.

use super::vendor_call;
use super::{Item, Job, JobResult, RunContext};
use crate::connector::{build_request, read_write_outcome, render_call, RowOutcome};
use crate::error::Error;
use crate::http::Repeat;
use crate::scheme::model::OperationPlan;
use crate::scheme::raw::Per;
use crate::store::{BatchCommit, BatchWriter, FailureStage, Mapping, MappingStatus, NewFailure};
use crate::template::Scope;
use crate::transform::{render, value_to_text};
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

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

struct Rendered<'a> {
    item: &'a Item,
    row: Arc<Value>,
    key: Option<String>,
    name: Option<String>,
}

pub(crate) async fn write_job(ctx: Arc<RunContext>, job: Job) -> Result<JobResult, Error> {
    let plan = &ctx.plan;
    let mut result = JobResult {
        seq: job.seq,
        ids: job
            .creates
            .iter()
            .chain(job.updates.iter())
            .map(|i| i.source_id.clone())
            .collect(),
        ..JobResult::default()
    };
    let mut commit = BatchCommit {
        mappings: Vec::new(),
        failures: job.failures,
        resolved: Vec::new(),
    };
    if !job.creates.is_empty() {
        write_operation(
            &ctx,
            &plan.target.create,
            "create",
            &job.creates,
            &mut commit,
            &mut result,
        )
        .await?;
    }
    if let Some(update) = &plan.target.update {
        if !job.updates.is_empty() {
            write_operation(&ctx, update, "update", &job.updates, &mut commit, &mut result).await?;
        }
    }
    if !ctx.dry_run && (!commit.mappings.is_empty() || !commit.failures.is_empty() || !commit.resolved.is_empty()) {
        ctx.store.commit_batch(commit).await?;
    }
    Ok(result)
}

fn row_scope(ctx: &RunContext, item: &Item) -> Scope {
    Scope {
        record: Some(item.record.clone()),
        vars: ctx.vars.clone(),
        locals: vec![(
            "target_id".to_string(),
            item.target_id.clone().map(Value::String).unwrap_or(Value::Null),
        )],
        mapped_ids: ctx.mapped_ids.clone(),
        parent: None,
    }
}

async fn write_operation(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: &'static str,
    items: &[Item],
    commit: &mut BatchCommit,
    result: &mut JobResult,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let is_update = operation == "update";
    let mut rendered = Vec::with_capacity(items.len());
    for item in items {
        let scope = row_scope(ctx, item);
        match render(&plan.target.fields, &scope, "target.fields") {
            Ok(row) => {
                let row = Arc::new(row);
                let row_scope = Scope {
                    record: Some(row.clone()),
                    vars: ctx.vars.clone(),
                    locals: scope.locals,
                    ..Scope::default()
                };
                let key = plan
                    .target
                    .key
                    .as_ref()
                    .and_then(|t| t.render(&row_scope).ok())
                    .as_ref()
                    .and_then(value_to_text);
                let name = match &plan.target.name {
                    Some(t) => t.render(&row_scope).ok().as_ref().and_then(value_to_text),
                    None => item.source_name.clone(),
                };
                rendered.push(Rendered { item, row, key, name });
            }
            Err(e) => {
                result.failed += 1;
                commit
                    .failures
                    .push(failure(ctx, item, FailureStage::Transform, "transform", &e.message));
            }
        }
    }
    if rendered.is_empty() {
        return Ok(());
    }
    let mut outcomes: Vec<RowOutcome> = Vec::with_capacity(rendered.len());
    match op.per {
        Per::Batch => {
            let rows: Vec<Value> = rendered.iter().map(|r| Value::clone(&r.row)).collect();
            let mut vars: Map<String, Value> = (*ctx.vars).clone();
            vars.insert("rows".into(), Value::Array(rows));
            vars.insert("batch".into(), json!({"seq": result.seq, "size": rendered.len()}));
            let scope = Scope {
                vars: Arc::new(vars),
                ..Scope::default()
            };
            let keys: Vec<Option<String>> = rendered.iter().map(|r| r.key.clone()).collect();
            let ids: Vec<Option<&str>> = rendered.iter().map(|r| r.item.target_id.as_deref()).collect();
            outcomes.extend(send(ctx, op, operation, &scope, &ids, &keys, result).await?);
        }
        Per::Row => {
            for r in &rendered {
                let mut vars: Map<String, Value> = (*ctx.vars).clone();
                vars.insert("row".into(), Value::clone(&r.row));
                vars.insert("record".into(), Value::clone(&r.item.record));
                vars.insert(
                    "target_id".into(),
                    r.item.target_id.clone().map(Value::String).unwrap_or(Value::Null),
                );
                let scope = Scope {
                    vars: Arc::new(vars),
                    ..Scope::default()
                };
                let ids = [r.item.target_id.as_deref()];
                outcomes.extend(send(ctx, op, operation, &scope, &ids, std::slice::from_ref(&r.key), result).await?);
            }
        }
    }
    if ctx.dry_run {
        return Ok(());
    }
    let now = Utc::now();
    for (r, outcome) in rendered.iter().zip(outcomes) {
        match outcome {
            RowOutcome::Written { target_id } => {
                if is_update {
                    result.updated += 1;
                } else {
                    result.created += 1;
                }
                commit.mappings.push(Mapping {
                    scheme: plan.name.clone(),
                    source_object: plan.source.object.clone(),
                    source_id: r.item.source_id.clone(),
                    source_name: r.item.source_name.clone(),
                    target_object: plan.target.object.clone(),
                    target_id: target_id.or_else(|| r.item.target_id.clone()).or_else(|| r.key.clone()),
                    target_name: r.name.clone(),
                    status: if is_update {
                        MappingStatus::Updated
                    } else {
                        MappingStatus::Created
                    },
                    payload_hash: Some(r.item.hash.clone()),
                    attempts: 1,
                    last_error: None,
                    first_synced_at: Some(now),
                    last_synced_at: Some(now),
                });
                commit.resolved.push((plan.name.clone(), r.item.source_id.clone()));
            }
            RowOutcome::Failed { message, class } => {
                result.failed += 1;
                commit.failures.push(NewFailure {
                    payload: Some(plan.redactor.redact_value(&r.row)),
                    ..failure(ctx, r.item, FailureStage::Write, class, &message)
                });
                if !is_update {
                    // Record the failed create so `mappings list --status failed` shows it;
                    // an existing mapping (update) keeps its target id untouched.
                    commit.mappings.push(Mapping {
                        scheme: plan.name.clone(),
                        source_object: plan.source.object.clone(),
                        source_id: r.item.source_id.clone(),
                        source_name: r.item.source_name.clone(),
                        target_object: plan.target.object.clone(),
                        target_id: None,
                        target_name: None,
                        status: MappingStatus::Failed,
                        payload_hash: None,
                        attempts: 1,
                        last_error: Some(plan.redactor.redact(&message).into_owned()),
                        first_synced_at: None,
                        last_synced_at: Some(now),
                    });
                }
            }
        }
    }
    Ok(())
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

/// Sends one request (or prints it in a dry run) and returns the per-row outcomes.
async fn send(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: &'static str,
    scope: &Scope,
    target_ids: &[Option<&str>],
    keys: &[Option<String>],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let rows = target_ids.len();
    let conn = ctx.plan.target_connection();
    if !conn.vendor.is_http() {
        return send_vendor(ctx, op, operation, scope, target_ids, keys, result).await;
    }
    let request = match build_request(conn, &op.request, scope, None) {
        Ok(request) => request,
        Err(e) => {
            return Ok(vec![
                RowOutcome::Failed {
                    message: e.message,
                    class: "transform"
                };
                rows
            ]);
        }
    };
    if ctx.dry_run {
        if let Some(sink) = &ctx.dry_run_sink {
            let redactor = &ctx.plan.redactor;
            sink(&PlannedRequest {
                operation,
                method: request.method.as_str(),
                url: redactor.redact(&request.url).into_owned(),
                headers: request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), redactor.redact(v).into_owned()))
                    .collect(),
                body: request
                    .body
                    .as_ref()
                    .map(|b| redactor.redact(&String::from_utf8_lossy(b)).into_owned()),
                rows,
            });
        }
        return Ok(vec![RowOutcome::Written { target_id: None }; rows]);
    }
    result.requests += 1;
    match ctx.http.send(conn, &request, Repeat::OnlyIfNotDelivered).await {
        Ok((response, attempts)) => {
            result.requests += u64::from(attempts.saturating_sub(1));
            Ok(read_write_outcome(op, &response, rows, keys))
        }
        Err(e) => Ok(vec![
            RowOutcome::Failed {
                message: ctx.plan.redactor.redact(&e.message).into_owned(),
                class: e.class(),
            };
            rows
        ]),
    }
}

/// One write through a built-in vendor connector.
async fn send_vendor(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: &'static str,
    scope: &Scope,
    target_ids: &[Option<&str>],
    keys: &[Option<String>],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let rows = target_ids.len();
    let conn = ctx.plan.target_connection();
    let failed = |message: String, class: &'static str| vec![RowOutcome::Failed { message, class }; rows];
    let (api, mut params) = match render_call(&op.request, scope) {
        Ok(call) => call,
        Err(e) => return Ok(failed(e.message, "transform")),
    };
    if let Err(e) = conn
        .vendor
        .prepare_write(&api, &mut params, target_ids, operation == "update")
    {
        return Ok(failed(e.message, "transform"));
    }
    if ctx.dry_run {
        if let Some(sink) = &ctx.dry_run_sink {
            let redactor = &ctx.plan.redactor;
            sink(&PlannedRequest {
                operation,
                method: "CALL",
                url: format!("{} {api}", conn.vendor.name()),
                headers: Vec::new(),
                body: Some(redactor.redact(&params.to_string()).into_owned()),
                rows,
            });
        }
        return Ok(vec![RowOutcome::Written { target_id: None }; rows]);
    }
    match vendor_call::call(ctx, conn, &api, &params, Repeat::OnlyIfNotDelivered).await {
        Ok((response, body, requests)) => {
            result.requests += u64::from(requests);
            if let Some(outcomes) = conn.vendor.row_outcomes(&api, &body, rows) {
                return Ok(outcomes);
            }
            if rows == 1 {
                if let Some(id) = conn.vendor.written_id(&api, &body) {
                    return Ok(vec![RowOutcome::Written { target_id: Some(id) }]);
                }
            }
            Ok(read_write_outcome(op, &response, rows, keys))
        }
        Err(e) => {
            result.requests += 1;
            Ok(failed(ctx.plan.redactor.redact(&e.message).into_owned(), e.class()))
        }
    }
}
