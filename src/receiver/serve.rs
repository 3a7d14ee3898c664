//! `ferry serve`'s IO shell: the HTTP endpoints that take pushes into the inbox, and the
//! workers that drain it through the same planner and writer as `ferry run`.
//!
//! Promises:
//! - **Durability first.** A push is answered with success only after its inbox row is
//!   committed (with its dedupe key). A repeated push gets the original row's id and is
//!   not stored or applied again. When the store cannot be written the answer is 503 and
//!   nothing is acknowledged.
//! - **Refusals store nothing**: a push that matches no scheme (404), fails
//!   authentication (401), is too large (413), malformed (400), or finds the inbox full
//!   (503 with `Retry-After`). Bodies are never logged.
//! - **Workers** claim rows with a lease, in arrival order per business key, and run each
//!   claimed group with [`crate::engine::run`] given the pushed records; a cancellation
//!   (`operationType: 3`) goes to `target.delete` like a record deleted at the source. A
//!   cancellation and a record of the same group are never run together, so neither can
//!   overtake the other. A group that aborted is retried with backoff; records that failed
//!   at the target are in the failure ledger and their rows are marked `failed`.
//! - **Graceful stop.** When `stop` fires, the listener stops accepting, requests in
//!   progress are answered, then each worker finishes its current group and returns.

use super::auth::{self, SignedHeaders};
use super::formats::{self, Push, Shape};
use crate::engine::{Pushed, Replay, RunOptions};
use crate::error::Error;
use crate::http::HttpClient;
use crate::scheme::model::{IdempotencyKey, Plan, ReceivePlan};
use crate::scheme::raw::{ReceiveCodec, ReceiveFormat};
use crate::store::{FailureLedger, FailureStatus, InboxRow, InboxStore, NewPush, PushOutcome, PushStatus, Store};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A claimed row is another worker's to take after this long without an answer (default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// Claims of a row before it is marked failed.
const MAX_ATTEMPTS: i64 = 5;
/// How long a `directSync` push waits for its outcome before being answered "stored".
const DIRECT_SYNC_WAIT: Duration = Duration::from_secs(30);
/// How often an idle worker looks at the inbox (pushes also wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often a worker recounts its scheme's pending rows.
const DEPTH_REFRESH: Duration = Duration::from_millis(500);

/// One receiving scheme.
struct Receiver {
    plan: Plan,
    receive: ReceivePlan,
    /// Wakes this scheme's worker when a push was stored.
    wake: Notify,
    /// Pending rows as last counted by the worker, plus pushes stored since: the inbox is
    /// counted for real (one query) only when this reaches `max_pending`.
    pending: std::sync::atomic::AtomicI64,
}

struct Shared {
    receivers: Vec<Arc<Receiver>>,
    store: Store,
    http: HttpClient,
    metrics: Metrics,
    /// How long a worker's claim lasts.
    lease: Duration,
}

/// The answer family of an endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Seed 000: `{errCode, errMsg}`.
    Platform,
    /// Seed 001: `{traceId, errorCode, errorMessage, errorDescription}`.
    Fxiaoke,
}

/// Checks that the receiving plans can be served together: each one receives, and no two
/// take the same pushes (same path and routing at the platform endpoint).
pub fn check_plans(plans: &[Plan]) -> Result<(), String> {
    let mut seen: HashMap<(String, Option<String>, Option<String>), &str> = HashMap::new();
    for plan in plans {
        let Some(receive) = &plan.source.receive else {
            return Err(format!(
                "{}: scheme `{}` reads its source; `ferry serve` takes schemes whose source is `receive` (run this one with `ferry run`)",
                plan.file, plan.name
            ));
        };
        let key = (
            receive.path.clone(),
            receive.object_api_name.clone(),
            receive.data_center_id.clone(),
        );
        if let Some(other) = seen.insert(key, &plan.name) {
            return Err(format!(
                "schemes `{other}` and `{}` both receive at /receive/{} with the same objectApiName and dataCenterId, so a push could not be routed; give one a different `receive.path` or routing",
                plan.name, receive.path
            ));
        }
    }
    Ok(())
}

/// Serves `plans` on `listener` until `stop` fires, then drains and returns.
/// `lease`: how long a worker's claim on inbox rows lasts; a crashed worker's rows are
/// taken over after it.
pub async fn serve(
    plans: Vec<Plan>,
    store: Store,
    http: HttpClient,
    listener: tokio::net::TcpListener,
    lease: Duration,
    mut stop: watch::Receiver<bool>,
    extra: Option<Router>,
) -> Result<(), Error> {
    check_plans(&plans).map_err(Error::config)?;
    let metrics = Metrics::new().map_err(|e| Error::config(format!("cannot set up metrics: {e}")))?;
    let receivers: Vec<Arc<Receiver>> = plans
        .into_iter()
        .filter_map(|plan| {
            let receive = plan.source.receive.clone()?;
            Some(Arc::new(Receiver {
                plan,
                receive,
                wake: Notify::new(),
                pending: std::sync::atomic::AtomicI64::new(i64::MAX),
            }))
        })
        .collect();
    let shared = Arc::new(Shared {
        receivers,
        store,
        http,
        metrics,
        lease,
    });

    // Workers stop only after the last request was answered (a directSync push waits for one).
    let (workers_stop, workers_stopped) = watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    let host = std::process::id();
    for (index, receiver) in shared.receivers.iter().enumerate() {
        let worker = format!("{}-{host}-{index}-{}", hostname(), Utc::now().timestamp_millis());
        workers.spawn(drain(shared.clone(), receiver.clone(), worker, workers_stopped.clone()));
    }

    let app = Router::new()
        .route("/receive/{path}", post(receive_platform))
        .route("/cgi/crm/erp/syncdata/objdata/push", post(receive_fxiaoke))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(shared.clone());
    // The platform's mapping-table API and the operator console, when enabled.
    let app = match extra {
        Some(extra) => app.merge(extra),
        None => app,
    };
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    tracing::info!("stopped accepting pushes; letting the workers finish their current batches");
    let _ = workers_stop.send(true);
    for receiver in &shared.receivers {
        receiver.wake.notify_one();
    }
    while workers.join_next().await.is_some() {}
    served.map_err(|e| Error::transport(format!("the HTTP server failed: {e}")))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

// ---- answers --------------------------------------------------------------------------

fn answer(family: Family, status: StatusCode, message: &str, inbox_id: Option<i64>, trace: &str) -> Response {
    let body = match family {
        Family::Platform => formats::platform_answer(status.as_u16(), message, inbox_id),
        Family::Fxiaoke => {
            let mut body = formats::fxiaoke_answer(status.as_u16(), message, trace);
            if let Some(id) = inbox_id {
                body["inboxId"] = json!(id);
            }
            body
        }
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("5"));
    }
    response
}

/// A refusal: counted by reason, logged without the body, nothing stored.
fn refuse(shared: &Shared, family: Family, status: StatusCode, reason: &str, message: String, trace: &str) -> Response {
    shared.metrics.pushes.with_label_values(&["", reason]).inc();
    tracing::warn!(status = status.as_u16(), reason, "push refused: {message}");
    answer(family, status, &message, None, trace)
}

// ---- endpoints ------------------------------------------------------------------------

async fn receive_platform(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = platform_push(&shared, &path, &headers, body).await;
    shared
        .metrics
        .latency
        .with_label_values(&["receive"])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn platform_push(shared: &Arc<Shared>, path: &str, headers: &HeaderMap, body: Body) -> Response {
    let family = Family::Platform;
    let candidates: Vec<&Arc<Receiver>> = shared.receivers.iter().filter(|r| r.receive.path == path).collect();
    if candidates.is_empty() {
        let paths: Vec<String> = shared
            .receivers
            .iter()
            .map(|r| format!("/receive/{}", r.receive.path))
            .collect();
        return refuse(
            shared,
            family,
            StatusCode::NOT_FOUND,
            "unmatched",
            format!("no scheme receives at /receive/{path} (served: {})", paths.join(", ")),
            "",
        );
    }
    let limit = candidates.iter().map(|r| r.receive.max_body).max().unwrap_or(1 << 20);
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return refuse(
            shared,
            family,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes (source.receive.max_body)"),
            "",
        );
    };
    // Credentials first: a push no scheme here would let in learns nothing about the body.
    if let Some(Err(e)) = candidates
        .iter()
        .map(|r| authenticate(&r.receive, headers, &bytes))
        .reduce(|a, b| a.or(b))
    {
        // Counted under the scheme when the path serves only one.
        let scheme = match candidates.as_slice() {
            [only] => only.plan.name.as_str(),
            _ => "",
        };
        shared.metrics.pushes.with_label_values(&[scheme, "unauthorized"]).inc();
        tracing::warn!(scheme, status = 401, reason = "unauthorized", "push refused: {e}");
        return answer(family, StatusCode::UNAUTHORIZED, &e.to_string(), None, "");
    }
    // A scheme that only takes non-standard pushes reads the body itself, `id` header or not.
    let hide_id = candidates
        .iter()
        .all(|r| r.receive.format == ReceiveFormat::NonStandard);
    let lookup = |name: &str| {
        if hide_id && name.eq_ignore_ascii_case("id") {
            return None;
        }
        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    let push = match formats::read_platform_push(&lookup, &bytes) {
        Ok(push) => push,
        Err(e) => return refuse(shared, family, StatusCode::BAD_REQUEST, "malformed", e.0, ""),
    };
    let Some(receiver) = route(candidates.into_iter(), &push) else {
        return refuse(
            shared,
            family,
            StatusCode::NOT_FOUND,
            "unmatched",
            unmatched_message(&push, &format!("/receive/{path}")),
            "",
        );
    };
    accept(shared, receiver, push, &bytes, headers, family).await
}

#[derive(serde::Deserialize)]
struct TraceQuery {
    #[serde(rename = "thirdTraceId")]
    third_trace_id: Option<String>,
}

async fn receive_fxiaoke(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TraceQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let family = Family::Fxiaoke;
    let trace = query.third_trace_id.clone().unwrap_or_default();
    let limit = shared
        .receivers
        .iter()
        .map(|r| r.receive.max_body)
        .max()
        .unwrap_or(1 << 20);
    let response = match axum::body::to_bytes(body, limit).await {
        Err(_) => refuse(
            &shared,
            family,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes (source.receive.max_body)"),
            &trace,
        ),
        Ok(bytes)
            if shared
                .receivers
                .iter()
                .all(|r| authenticate(&r.receive, &headers, &bytes).is_err()) =>
        {
            let reason = shared
                .receivers
                .first()
                .and_then(|r| authenticate(&r.receive, &headers, &bytes).err())
                .map_or_else(|| "no credentials".to_string(), |e| e.to_string());
            refuse(
                &shared,
                family,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                reason,
                &trace,
            )
        }
        Ok(bytes) => match formats::read_fxiaoke_push(query.third_trace_id.as_deref(), &bytes) {
            Err(e) => refuse(&shared, family, StatusCode::BAD_REQUEST, "malformed", e.0, &trace),
            Ok(push) => match route(shared.receivers.iter(), &push) {
                None => refuse(
                    &shared,
                    family,
                    StatusCode::NOT_FOUND,
                    "unmatched",
                    unmatched_message(&push, "/cgi/crm/erp/syncdata/objdata/push"),
                    &trace,
                ),
                Some(receiver) => accept(&shared, receiver, push, &bytes, &headers, family).await,
            },
        },
    };
    shared
        .metrics
        .latency
        .with_label_values(&["fxiaoke_push"])
        .observe(started.elapsed().as_secs_f64());
    response
}

fn unmatched_message(push: &Push, endpoint: &str) -> String {
    format!(
        "no scheme served at {endpoint} takes objectApiName `{}` and dataCenterId `{}`; the push was not stored",
        push.object.as_deref().unwrap_or("(none)"),
        push.data_center.as_deref().unwrap_or("(none)")
    )
}

/// The receiver whose routing takes `push` (unset routing fields take anything).
fn route<'a>(mut candidates: impl Iterator<Item = &'a Arc<Receiver>>, push: &Push) -> Option<&'a Arc<Receiver>> {
    candidates.find(|r| {
        let takes = |wanted: &Option<String>, given: &Option<String>| match wanted {
            None => true,
            Some(wanted) => given.as_deref() == Some(wanted.as_str()),
        };
        takes(&r.receive.object_api_name, &push.object) && takes(&r.receive.data_center_id, &push.data_center)
    })
}

fn authenticate(receive: &ReceivePlan, headers: &HeaderMap, body: &[u8]) -> Result<(), auth::AuthError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = &receive.token {
        auth::token_matches(header("token"), token)?;
    }
    if !receive.signing_secrets.is_empty() {
        let signed = SignedHeaders {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
        };
        auth::verify_signature(
            signed,
            body,
            &receive.signing_secrets,
            receive.tolerance_secs,
            Utc::now().timestamp(),
        )?;
    }
    Ok(())
}

/// The payload stored for a push: the standard record with its id, or the decoded body.
fn payload_of(receiver: &Receiver, push: &Push, bytes: &[u8], family: Family) -> Result<Value, String> {
    if let (Shape::Standard, Some(Value::Object(record))) = (push.shape, &push.record) {
        let mut with_id = serde_json::Map::new();
        with_id.insert("id".into(), json!(push.id));
        with_id.extend(record.clone());
        return Ok(Value::Object(with_id));
    }
    if family == Family::Fxiaoke {
        // The non-standard Fxiaoke form: the scheme reads `data` as it is.
        let body: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        return Ok(body.get("data").cloned().unwrap_or(Value::Null));
    }
    match receiver.receive.codec {
        ReceiveCodec::Text => Ok(json!({"text": String::from_utf8_lossy(bytes)})),
        ReceiveCodec::Json => {
            serde_json::from_slice(bytes).map_err(|e| format!("the body is not valid JSON (source.receive.codec): {e}"))
        }
        ReceiveCodec::Xml => crate::codec::Codec::Xml
            .decode(bytes)
            .map_err(|e| format!("the body is not valid XML (source.receive.codec): {e}")),
        ReceiveCodec::Form => crate::codec::Codec::Form
            .decode(bytes)
            .map_err(|e| format!("the body is not a valid form (source.receive.codec): {e}")),
    }
}

/// The sender's own key for a push (`source.receive.idempotency_key`), when the scheme
/// names one; a push without it is refused, since it could not be told from a repeat.
fn idempotency_key(receive: &ReceivePlan, headers: &HeaderMap, payload: &Value) -> Result<Option<String>, String> {
    let found = match &receive.idempotency_key {
        None => return Ok(None),
        Some(IdempotencyKey::Header(name)) => headers
            .get(name.as_str())
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_string),
        Some(IdempotencyKey::Path(path)) => path
            .select(payload)
            .into_iter()
            .find_map(crate::transform::value_to_text)
            .filter(|value| !value.is_empty()),
    };
    match (found, &receive.idempotency_key) {
        (Some(key), _) => Ok(Some(key)),
        (None, Some(IdempotencyKey::Header(name))) => Err(format!(
            "the push has no `{name}` header, which this scheme takes as its idempotency key \
             (source.receive.idempotency_key)"
        )),
        (None, Some(IdempotencyKey::Path(path))) => Err(format!(
            "the push body has no value at `{path}`, which this scheme takes as its idempotency key \
             (source.receive.idempotency_key.path)"
        )),
        (None, None) => Ok(None),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Stores an authenticated, routed push and answers it.
async fn accept(
    shared: &Arc<Shared>,
    receiver: &Arc<Receiver>,
    push: Push,
    bytes: &[u8],
    headers: &HeaderMap,
    family: Family,
) -> Response {
    let trace = push.trace.clone().unwrap_or_default();
    let scheme = receiver.plan.name.as_str();
    let refused = |status: StatusCode, reason: &str, message: String| {
        shared.metrics.pushes.with_label_values(&[scheme, reason]).inc();
        tracing::warn!(scheme, status = status.as_u16(), reason, "push refused: {message}");
        answer(family, status, &message, None, &trace)
    };
    if bytes.len() > receiver.receive.max_body {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {} bytes (source.receive.max_body)",
                receiver.receive.max_body
            ),
        );
    }
    if let Err(e) = authenticate(&receiver.receive, headers, bytes) {
        return refused(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
    }
    match (receiver.receive.format, push.shape) {
        (ReceiveFormat::Standard, Shape::NonStandard) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("scheme `{scheme}` takes standard-format pushes only: set the `id` header (or `data.id`)"),
            )
        }
        (ReceiveFormat::NonStandard, Shape::Standard) if family == Family::Fxiaoke => {
            return refused(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("scheme `{scheme}` takes non-standard pushes only: leave out `data.id`"),
            )
        }
        _ => {}
    }
    let payload = match payload_of(receiver, &push, bytes, family) {
        Ok(payload) => payload,
        Err(message) => return refused(StatusCode::BAD_REQUEST, "malformed", message),
    };
    let max_pending = receiver.receive.max_pending.min(i64::MAX as u64) as i64;
    let counted = if receiver.pending.load(Ordering::Relaxed) < max_pending {
        Ok(None)
    } else {
        shared.store.inbox_depth(Some(scheme)).await.map(|depth| {
            receiver.pending.store(depth.pending, Ordering::Relaxed);
            Some(depth)
        })
    };
    match counted {
        Ok(Some(depth)) if depth.pending >= max_pending => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "inbox_full",
                format!(
                    "the inbox of `{scheme}` holds {} pending pushes (source.receive.max_pending); try again later",
                    depth.pending
                ),
            )
        }
        Ok(_) => {}
        Err(e) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_down",
                format!("the inbox cannot be read, so nothing was acknowledged: {e}"),
            )
        }
    }
    let key = match idempotency_key(&receiver.receive, headers, &payload) {
        Ok(key) => key.or_else(|| push.id.clone()),
        Err(message) => return refused(StatusCode::BAD_REQUEST, "malformed", message),
    };
    let payload_text = serde_json::to_vec(&payload).unwrap_or_default();
    let dedupe_key = hex_sha256(
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            key.as_deref().unwrap_or_default(),
            trace,
            push.cancel,
            hex_sha256(&payload_text)
        )
        .as_bytes(),
    );
    let received_as = match (family, push.shape) {
        (Family::Platform, Shape::Standard) => "standard",
        (Family::Platform, Shape::NonStandard) => "non_standard",
        (Family::Fxiaoke, Shape::Standard) => "fxiaoke",
        (Family::Fxiaoke, Shape::NonStandard) => "fxiaoke_non_standard",
    };
    let new = NewPush {
        scheme: scheme.to_string(),
        dedupe_key,
        business_key: push.id.clone(),
        cancel: push.cancel,
        received_as: received_as.into(),
        payload,
    };
    let appended = match shared.store.append_push(&new).await {
        Ok(appended) => appended,
        Err(e) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_down",
                format!("the push could not be stored, so it was not acknowledged: {e}"),
            )
        }
    };
    if !appended.duplicate {
        receiver.pending.fetch_add(1, Ordering::Relaxed);
    }
    let outcome = if appended.duplicate {
        "duplicate"
    } else {
        "acknowledged"
    };
    shared.metrics.pushes.with_label_values(&[scheme, outcome]).inc();
    tracing::debug!(
        scheme,
        inbox_id = appended.id,
        duplicate = appended.duplicate,
        "push stored"
    );
    receiver.wake.notify_one();
    let trace = if trace.is_empty() {
        format!("ferry-{}", appended.id)
    } else {
        trace
    };
    if push.direct_sync {
        return direct_sync_answer(shared, appended.id, &trace).await;
    }
    answer(family, StatusCode::OK, "", Some(appended.id), &trace)
}

/// `directSync: true`: waits for the row's outcome and answers with it.
async fn direct_sync_answer(shared: &Shared, id: i64, trace: &str) -> Response {
    let deadline = Instant::now() + DIRECT_SYNC_WAIT;
    loop {
        match shared.store.push(id).await {
            Ok(Some(row)) => match row.status {
                PushStatus::Done => return answer(Family::Fxiaoke, StatusCode::OK, "", Some(id), trace),
                PushStatus::Failed => {
                    let message = row.last_error.unwrap_or_else(|| "the push failed".into());
                    return answer(
                        Family::Fxiaoke,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &message,
                        Some(id),
                        trace,
                    );
                }
                PushStatus::Pending if row.last_error.is_some() && row.claimed_by.is_none() => {
                    let message = format!(
                        "stored as inbox row {id} but not applied yet ({}); it will be retried",
                        row.last_error.unwrap_or_default()
                    );
                    return answer(Family::Fxiaoke, StatusCode::BAD_GATEWAY, &message, Some(id), trace);
                }
                PushStatus::Pending => {}
            },
            Ok(None) => {
                return answer(
                    Family::Fxiaoke,
                    StatusCode::GONE,
                    "the inbox row was purged",
                    Some(id),
                    trace,
                )
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            let message = format!("stored as inbox row {id}; still being applied");
            return answer(Family::Fxiaoke, StatusCode::ACCEPTED, &message, Some(id), trace);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.inbox_depth(None).await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is not ready: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    for receiver in &shared.receivers {
        let scheme = receiver.plan.name.as_str();
        if let Ok(depth) = shared.store.inbox_depth(Some(scheme)).await {
            shared
                .metrics
                .pending
                .with_label_values(&[scheme])
                .set(depth.pending as f64);
            let age = depth
                .oldest
                .map_or(0.0, |t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
            shared.metrics.oldest.with_label_values(&[scheme]).set(age);
        }
    }
    use prometheus::Encoder;
    let mut text = Vec::new();
    match prometheus::TextEncoder::new().encode(&shared.metrics.registry.gather(), &mut text) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", prometheus::TEXT_FORMAT)],
            String::from_utf8_lossy(&text).into_owned(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

// ---- metrics --------------------------------------------------------------------------

struct Metrics {
    registry: prometheus::Registry,
    /// Pushes by scheme and outcome: acknowledged, duplicate, or the refusal reason.
    pushes: prometheus::IntCounterVec,
    /// Inbox rows settled by the workers, by outcome.
    rows: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
    pending: prometheus::GaugeVec,
    oldest: prometheus::GaugeVec,
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};
        let registry = prometheus::Registry::new();
        let pushes = IntCounterVec::new(
            Opts::new(
                "ferry_receive_pushes_total",
                "Pushes by scheme and outcome (acknowledged, duplicate, or why they were refused).",
            ),
            &["scheme", "outcome"],
        )?;
        let rows = IntCounterVec::new(
            Opts::new("ferry_inbox_rows_total", "Inbox rows the workers settled, by outcome."),
            &["scheme", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ferry_receive_request_seconds",
                "Time from a push's arrival to its answer.",
            )
            .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            &["endpoint"],
        )?;
        let pending = GaugeVec::new(
            Opts::new("ferry_inbox_pending", "Pushes stored and not yet applied."),
            &["scheme"],
        )?;
        let oldest = GaugeVec::new(
            Opts::new(
                "ferry_inbox_oldest_pending_age_seconds",
                "Age of the oldest pending push (0 when none).",
            ),
            &["scheme"],
        )?;
        registry.register(Box::new(pushes.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(oldest.clone()))?;
        Ok(Metrics {
            registry,
            pushes,
            rows,
            latency,
            pending,
            oldest,
        })
    }
}

// ---- workers --------------------------------------------------------------------------

/// Drains one scheme's inbox until `stop` fires (after its current group).
async fn drain(shared: Arc<Shared>, receiver: Arc<Receiver>, worker: String, mut stop: watch::Receiver<bool>) {
    let plan = &receiver.plan;
    let limit = (plan.target.batch * plan.target_connection().in_flight).clamp(1, 1000) as i64;
    tracing::info!(scheme = %plan.name, worker = %worker, "worker started");
    let mut counted_at: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        // The pending count (for `max_pending`) is refreshed now and then, not per claim:
        // counting a deep inbox costs as much as the claim itself.
        if counted_at.is_none_or(|at| at.elapsed() >= DEPTH_REFRESH) {
            if let Ok(depth) = shared.store.inbox_depth(Some(&plan.name)).await {
                receiver.pending.store(depth.pending, Ordering::Relaxed);
            }
            counted_at = Some(Instant::now());
        }
        let lease_until = Utc::now() + chrono::Duration::from_std(shared.lease).unwrap_or_default();
        match shared.store.claim_pushes(&plan.name, &worker, limit, lease_until).await {
            Ok(rows) if !rows.is_empty() => {
                for group in groups(rows) {
                    apply(&shared, &receiver, &worker, group).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(scheme = %plan.name, "cannot claim pushes from the inbox: {e}"),
        }
        tokio::select! {
            _ = receiver.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!(scheme = %plan.name, worker = %worker, "worker stopped");
}

/// Splits claimed rows (in arrival order) into runs of one kind, so a cancellation and a
/// record never share a run and keep their order.
fn groups(rows: Vec<InboxRow>) -> Vec<Vec<InboxRow>> {
    let mut groups: Vec<Vec<InboxRow>> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some(group) if group[0].cancel == row.cancel => group.push(row),
            _ => groups.push(vec![row]),
        }
    }
    groups
}

/// The records a stored payload holds (`source.records`, default `$`).
pub fn records_of(plan: &Plan, payload: &Value) -> Vec<Value> {
    plan.source.records.select(payload).into_iter().cloned().collect()
}

/// A record's source id, as the run will compute it.
fn source_id_of(plan: &Plan, record: &Value) -> Option<String> {
    let scope = crate::template::Scope {
        record: Some(Arc::new(record.clone())),
        ..Default::default()
    };
    plan.source
        .id
        .render(&scope)
        .ok()
        .as_ref()
        .and_then(crate::transform::value_to_text)
}

/// Runs one group of claimed rows through the engine and settles them.
async fn apply(shared: &Shared, receiver: &Receiver, worker: &str, rows: Vec<InboxRow>) {
    let plan = &receiver.plan;
    let started = Utc::now();
    let mut pushed = Pushed::default();
    let mut row_ids: Vec<Vec<String>> = Vec::with_capacity(rows.len());
    for row in &rows {
        let records = records_of(plan, &row.payload);
        let mut ids: Vec<String> = records.iter().filter_map(|r| source_id_of(plan, r)).collect();
        if row.cancel {
            if ids.is_empty() {
                ids.extend(row.business_key.clone());
            }
            pushed.deleted.extend(ids.iter().cloned());
        } else {
            pushed.records.extend(records);
        }
        row_ids.push(ids);
    }
    let options = RunOptions {
        pushed: Some(pushed),
        replay: Some(Replay::Ids(Vec::new())),
        ..RunOptions::default()
    };
    // One group of a scheme at a time across every process on this store: a run settles the
    // write intents it finds, which must not be another process's writes in flight.
    let result = match BatchLock::take(&shared.store, &plan.name).await {
        Ok(lock) => {
            let result = crate::engine::run(plan, &shared.store, &shared.http, &options).await;
            lock.release().await;
            result
        }
        Err(message) => Err(Error::store(message)),
    };
    let retry_all = |message: String| -> Vec<PushOutcome> {
        rows.iter()
            .map(|row| PushOutcome {
                id: row.id,
                retry_at: (row.attempts < MAX_ATTEMPTS)
                    .then(|| Utc::now() + chrono::Duration::seconds(1 << row.attempts.clamp(0, 6))),
                error: Some(message.clone()),
            })
            .collect()
    };
    let outcomes = match result {
        Ok(summary) if summary.aborted.is_none() => {
            let failed = if summary.failed > 0 {
                failed_ids(shared, plan, started).await
            } else {
                HashMap::new()
            };
            rows.iter()
                .zip(&row_ids)
                .map(|(row, ids)| {
                    let error = ids.iter().find_map(|id| failed.get(id).cloned()).or_else(|| {
                        (summary.failed > 0 && ids.is_empty() && !row.cancel).then(|| {
                            "the pushed record could not be identified (source.id); see `ferry failures list`"
                                .to_string()
                        })
                    });
                    // A cancellation with nowhere to go is recorded and reported, not dropped.
                    let error = error.or_else(|| {
                        (row.cancel && plan.target.delete.is_none()).then(|| {
                            "a cancellation (operationType 3) arrived, but the scheme has no `target.delete`: nothing was deleted in the target".to_string()
                        })
                    });
                    PushOutcome {
                        id: row.id,
                        error,
                        retry_at: None,
                    }
                })
                .collect()
        }
        Ok(summary) => retry_all(summary.aborted.unwrap_or_default()),
        Err(e) => retry_all(plan.redactor.redact(&e.message).into_owned()),
    };
    for outcome in &outcomes {
        let label = match (&outcome.error, outcome.retry_at) {
            (None, _) => "done",
            (Some(_), Some(_)) => "retry",
            (Some(_), None) => "failed",
        };
        shared.metrics.rows.with_label_values(&[&plan.name, label]).inc();
    }
    if let Err(e) = shared.store.finish_pushes(worker, &outcomes).await {
        // The lease runs out and the rows are claimed again; the mappings make that safe.
        tracing::warn!(scheme = %plan.name, "cannot settle inbox rows: {e}");
    }
}

/// The run lock of a scheme, held for one group: a file lock beside a SQLite store, a
/// Postgres advisory lock (the same one `ferry run` takes) released when the group is done.
enum BatchLock {
    /// Released when dropped.
    Held(#[allow(dead_code)] crate::store::lock::RunLock),
    Advisory(sqlx::pool::PoolConnection<sqlx::Postgres>, String),
}

impl BatchLock {
    async fn take(store: &Store, scheme: &str) -> Result<BatchLock, String> {
        match store {
            Store::Postgres(pg) => {
                let key = format!("ferry-run:{scheme}");
                let mut connection = pg.pool().acquire().await.map_err(|e| e.to_string())?;
                sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
                    .bind(&key)
                    .execute(&mut *connection)
                    .await
                    .map_err(|e| format!("cannot take the run lock of `{scheme}`: {e}"))?;
                Ok(BatchLock::Advisory(connection, key))
            }
            _ => crate::store::lock::acquire(store, scheme, true)
                .await
                .map(BatchLock::Held)
                .map_err(|e| e.to_string()),
        }
    }

    async fn release(self) {
        if let BatchLock::Advisory(mut connection, key) = self {
            let released = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                .bind(&key)
                .execute(&mut *connection)
                .await;
            if released.is_err() {
                use sqlx::Connection as _;
                // A session whose unlock failed must not go back to the pool holding the lock.
                let _ = connection.detach().close().await;
            }
        }
    }
}

/// Source ids of open ledger rows recorded since `since`, with their messages.
async fn failed_ids(shared: &Shared, plan: &Plan, since: chrono::DateTime<Utc>) -> HashMap<String, String> {
    let since = since - chrono::Duration::seconds(1);
    match shared
        .store
        .list_failures(Some(&plan.name), Some(FailureStatus::Open), 10_000)
        .await
    {
        Ok(failures) => {
            let mut seen = HashSet::new();
            failures
                .into_iter()
                .filter(|f| f.last_seen >= since && seen.insert(f.source_id.clone()))
                .map(|f| (f.source_id, f.message))
                .collect()
        }
        Err(e) => {
            tracing::warn!(scheme = %plan.name, "cannot read the failure ledger: {e}");
            HashMap::new()
        }
    }
}
