//! Sending one write request of a batch: through the scheme's templates (`http`) or the
//! connection's protocol, or only printed in a dry run; and reading its answer into one
//! outcome per row. What the outcomes mean for the store is the writer's business.

use super::call;
use super::context::JobResult;
use super::context::RunContext;
use super::options::PlannedRequest;
use crate::error::Error;
use crate::exchange::{build_request, read_write_outcome, render_call};
use crate::http::{backoff_delay, Repeat};
use crate::protocol::{RowOutcome, RETRY_LATER, UNKNOWN_OUTCOME};
use crate::scheme::model::{ConnectionPlan, OperationPlan};
use crate::template::Scope;

/// The key of one write request (`batch.key`): the same for every send of it, in this run
/// or, after a crash, in the run that resends it.
pub(crate) fn request_key(run_id: i64, seq: u64, operation: &str) -> String {
    request_key_of(&format!("{run_id}-{seq}"), operation)
}

/// [`request_key`] from a batch id (`run-seq`, as intents store it).
pub(crate) fn request_key_of(batch_id: &str, operation: &str) -> String {
    format!("{batch_id}-{operation}")
}

/// How the transport may repeat a write of `op` (its `retry_writes`).
fn write_repeat(op: &OperationPlan) -> Repeat {
    match op.retry_writes {
        None => Repeat::OnlyIfNotDelivered,
        Some(crate::scheme::raw::RetryWrites::IdempotencyKey) => Repeat::Safe,
        Some(crate::scheme::raw::RetryWrites::ServerErrors) => Repeat::AlsoServerErrors,
    }
}

/// Sends one request (or prints it in a dry run) and returns the per-row outcomes.
pub(super) async fn send(
    ctx: &RunContext,
    op: &OperationPlan,
    operation: &'static str,
    scope: &Scope,
    target_ids: &[Option<&str>],
    keys: &[Option<String>],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let conn = ctx.plan.target_connection();
    send_on(ctx, conn, op, operation, scope, target_ids, keys, result).await
}

/// [`send`] on a given connection (a write-back goes to the source's).
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_on(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    op: &OperationPlan,
    operation: &'static str,
    scope: &Scope,
    target_ids: &[Option<&str>],
    keys: &[Option<String>],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let rows = target_ids.len();
    if !conn.protocol.templated() {
        return send_vendor(ctx, conn, op, operation, scope, target_ids, keys, result).await;
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
        return Ok(vec![RowOutcome::written(None); rows]);
    }
    let mut attempt = 1;
    loop {
        result.requests += 1;
        let outcomes = match ctx.http.send(conn, &request, write_repeat(op)).await {
            Ok((response, attempts)) => {
                result.requests += u64::from(attempts.saturating_sub(1));
                read_write_outcome(op, &response, rows, keys, &format!("target.{operation}.response"))
            }
            Err(e) => vec![
                RowOutcome::Failed {
                    message: ctx.plan.redactor.redact(&e.message).into_owned(),
                    class: write_error_class(&e),
                };
                rows
            ],
        };
        // The target did not act and asked for the same request again (`response.retry`).
        let again = outcomes
            .iter()
            .any(|o| matches!(o, RowOutcome::Failed { class, .. } if *class == RETRY_LATER));
        if !again || attempt >= conn.retry.attempts {
            return Ok(outcomes);
        }
        tokio::time::sleep(backoff_delay(&conn.retry, attempt, None, rand::random::<f64>())).await;
        attempt += 1;
    }
}

/// The ledger class of a failed write request: [`UNKNOWN_OUTCOME`] when it may have landed.
fn write_error_class(error: &Error) -> &'static str {
    if error.may_have_landed() {
        UNKNOWN_OUTCOME
    } else {
        error.class()
    }
}

/// One write through a built-in vendor connector.
#[allow(clippy::too_many_arguments)]
async fn send_vendor(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    op: &OperationPlan,
    operation: &'static str,
    scope: &Scope,
    target_ids: &[Option<&str>],
    keys: &[Option<String>],
    result: &mut JobResult,
) -> Result<Vec<RowOutcome>, Error> {
    let rows = target_ids.len();
    let failed = |message: String, class: &'static str| vec![RowOutcome::Failed { message, class }; rows];
    let (api, mut params) = match render_call(&op.request, scope) {
        Ok(call) => call,
        Err(e) => return Ok(failed(e.message, "transform")),
    };
    let lists = match operation {
        "create" | "update" => ctx.plan.target.detail_lists.as_slice(),
        _ => &[],
    };
    let targets = crate::protocol::WriteTargets {
        target_ids,
        is_update: operation == "update",
        lists,
    };
    if let Err(e) = conn.protocol.prepare_write(&api, &mut params, &targets) {
        return Ok(failed(format!("{}: {e}", conn.protocol.name()), "transform"));
    }
    if ctx.dry_run {
        if let Some(sink) = &ctx.dry_run_sink {
            let redactor = &ctx.plan.redactor;
            sink(&PlannedRequest {
                operation,
                method: "CALL",
                url: format!("{} {api}", conn.protocol.name()),
                headers: Vec::new(),
                body: Some(redactor.redact(&params.to_string()).into_owned()),
                rows,
            });
        }
        return Ok(vec![RowOutcome::written(None); rows]);
    }
    match call::call_write(ctx, conn, &api, &params, write_repeat(op)).await {
        Ok((response, body, requests)) => {
            result.requests += u64::from(requests);
            let mut outcomes = match conn.protocol.row_outcomes(&api, &body, rows) {
                Some(outcomes) => outcomes,
                None => match conn.protocol.written_id(&api, &body).filter(|_| rows == 1) {
                    Some(id) => vec![RowOutcome::written(Some(id))],
                    None => read_write_outcome(op, &response, rows, keys, &format!("target.{operation}.response")),
                },
            };
            conn.protocol
                .attach_detail_ids(&api, &params, &body, lists, &mut outcomes);
            Ok(outcomes)
        }
        Err(e) => {
            result.requests += 1;
            Ok(failed(
                ctx.plan.redactor.redact(&e.message).into_owned(),
                write_error_class(&e),
            ))
        }
    }
}
