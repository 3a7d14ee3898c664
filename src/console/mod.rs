//! The operator console (issue 16 §3): server-rendered pages under `/console/` over the
//! store, to be mounted into `ferry serve` (or served alone in tests).
//!
//! Pages: per scheme its recent runs with a plot of records per run and its inbox depth
//! (`/console/`); the open failures with Retry, Skip and Resolve (`/console/failures`);
//! mapping search by source or target id with an edit form (`/console/mappings`).
//!
//! Promises:
//! - Nothing but the login page and the stylesheet is served without a session: a GET
//!   without one is sent to the login page, anything else is answered 401.
//! - A session starts only from the server's operator token (constant-time compare), lives
//!   in memory, and rides in an `HttpOnly; SameSite=Strict` cookie ([`session`]).
//! - Every POST but the login carries the session's CSRF token in the form; a missing or
//!   wrong one is answered 403 and changes nothing.
//! - Every value on a page is HTML-escaped; pages load nothing from other origins and run
//!   no script (a `Content-Security-Policy` says so to the browser).
//! - A mapping edit holds the scheme's run lock, like the platform API: refused (409)
//!   beside a run or a write in flight for that record.
//! - Retry replays the ledger rows through the engine now when the server gave a
//!   [`Replayer`] (as `ferry failures retry` does); without one the row stays open and the
//!   next run of the scheme replays it, which the page says.

pub mod html;
pub mod session;

use crate::engine::{self, Replay, RunOptions};
use crate::http::HttpClient;
use crate::platform::Binding;
use crate::receiver::auth::token_matches;
use crate::scheme::Plan;
use crate::store::lock::{self, LockError};
use crate::store::{
    FailureLedger, FailureStatus, InboxStore, IntentLog, Mapping, MappingQuery, MappingStatus, MappingStore,
    RunHistory, Store,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use futures::future::BoxFuture;
use html::{esc, page, query_value};
use session::{Session, Sessions};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Reports how many pushed records wait in a scheme's inbox (`None`: unknown, or the
/// scheme has no inbox). `ferry serve` plugs in [`StoreInbox`] for its receiving schemes.
pub trait InboxDepthHook: Send + Sync {
    fn depth<'a>(&'a self, scheme: &'a str) -> BoxFuture<'a, Option<u64>>;

    /// The inbox depth at [`DEPTH_SAMPLES`] evenly spaced moments up to now, oldest first,
    /// with the moment the series starts (`None`: no history to show).
    fn depth_history<'a>(&'a self, _scheme: &'a str) -> BoxFuture<'a, Option<(chrono::DateTime<Utc>, Vec<u64>)>> {
        Box::pin(async { None })
    }
}

/// Points of the inbox depth plot.
pub const DEPTH_SAMPLES: usize = 40;
/// Pushes the depth history is computed from (the newest ones).
const DEPTH_ROWS: i64 = 2000;

/// The depth at `samples` moments from `start` to `now`: rows received by then and not
/// finished by then. `rows` are `(received_at, finished_at)`.
pub fn depth_series(
    rows: &[(chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>)],
    start: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
    samples: usize,
) -> Vec<u64> {
    let span = (now - start).num_milliseconds().max(1);
    (1..=samples)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(span * i as i64 / samples as i64);
            rows.iter()
                .filter(|(received, finished)| *received <= at && finished.is_none_or(|f| f > at))
                .count() as u64
        })
        .collect()
}

/// The receive-mode inbox in the store: the pending pushes of the listed schemes.
pub struct StoreInbox {
    pub store: Store,
    /// The schemes that receive pushes; others show "n/a".
    pub receiving: Vec<String>,
}

impl InboxDepthHook for StoreInbox {
    fn depth<'a>(&'a self, scheme: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            if !self.receiving.iter().any(|s| s == scheme) {
                return None;
            }
            let depth = self.store.inbox_depth(Some(scheme)).await.ok()?;
            u64::try_from(depth.pending).ok()
        })
    }

    fn depth_history<'a>(&'a self, scheme: &'a str) -> BoxFuture<'a, Option<(chrono::DateTime<Utc>, Vec<u64>)>> {
        Box::pin(async move {
            if !self.receiving.iter().any(|s| s == scheme) {
                return None;
            }
            let rows = self.store.list_pushes(Some(scheme), None, DEPTH_ROWS).await.ok()?;
            let times: Vec<_> = rows.iter().map(|r| (r.received_at, r.finished_at)).collect();
            let start = times.iter().map(|(received, _)| *received).min()?;
            let now = Utc::now();
            Some((start, depth_series(&times, start, now, DEPTH_SAMPLES)))
        })
    }
}

/// Replays failure-ledger rows of a scheme now; answers a one-line outcome for the operator.
pub trait Replayer: Send + Sync {
    fn replay<'a>(&'a self, scheme: &'a str, ids: Vec<i64>) -> BoxFuture<'a, Result<String, String>>;
}

/// What the console needs.
#[derive(Clone)]
pub struct ConsoleState {
    pub store: Store,
    /// The server's operator token: entering it on the login page starts a session.
    pub token: String,
    /// The schemes the server serves.
    pub bindings: Arc<Vec<Binding>>,
    /// Inbox depth per scheme; absent: the pages say "inbox: n/a".
    pub inbox: Option<Arc<dyn InboxDepthHook>>,
    /// Replays failures now; absent: Retry leaves the row to the next run.
    pub replayer: Option<Arc<dyn Replayer>>,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("bindings", &self.bindings)
            .field("inbox", &self.inbox.is_some())
            .field("replayer", &self.replayer.is_some())
            .finish_non_exhaustive()
    }
}

/// Replays through the engine, as `ferry failures retry SCHEME IDS` does: holding the
/// scheme's run lock, reading no source beyond the replayed records.
pub struct EngineReplayer {
    pub plans: Vec<Plan>,
    pub store: Store,
    pub http: HttpClient,
}

impl Replayer for EngineReplayer {
    fn replay<'a>(&'a self, scheme: &'a str, ids: Vec<i64>) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let plan = self
                .plans
                .iter()
                .find(|p| p.name == scheme)
                .ok_or_else(|| format!("scheme `{scheme}` is not loaded by this server"))?;
            let _lock = match lock::acquire(&self.store, scheme, false).await {
                Ok(held) => held,
                Err(LockError::Held { .. }) => {
                    return Err(format!(
                        "a run of scheme `{scheme}` is in progress; retry when it has finished"
                    ))
                }
                Err(e) => return Err(e.to_string()),
            };
            let options = RunOptions {
                replay: Some(Replay::Ids(ids)),
                replay_only: true,
                ..RunOptions::default()
            };
            let summary = engine::run(plan, &self.store, &self.http, &options)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "replayed {}: {} created, {} updated, {} unchanged, {} failed",
                summary.replayed, summary.created, summary.updated, summary.unchanged, summary.failed
            ))
        })
    }
}

struct Console {
    state: ConsoleState,
    sessions: Sessions,
}

/// The console's routes, all under `/console/`.
pub fn router(state: ConsoleState) -> Router {
    let console = Arc::new(Console {
        state,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(overview))
        .route("/console/style.css", get(stylesheet))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/failures", get(failures))
        .route("/console/failures/{id}/{action}", post(failure_action))
        .route("/console/mappings", get(mappings).post(edit_mapping))
        .with_state(console)
}

/// Answers with the headers every console page carries.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], html::CSS).into_response()
}

/// The fields of a url-encoded form (the last of repeated names wins).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie_value(v, session::COOKIE))
        .map(str::to_string)
}

/// Why a request was not let through.
enum Denied {
    /// A page asked for without a session: go log in.
    NoSessionForPage,
    /// A change without a session: 401.
    NoSession,
    /// A change without the session's CSRF token: 403 (with the session's token, so the
    /// refusal page can still offer logout).
    WrongCsrf { csrf: String },
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::NoSessionForPage => see_other("/console/login"),
            Denied::NoSession => html_response(
                StatusCode::UNAUTHORIZED,
                html::login_page(Some("Log in first: this change needs a session.")),
            ),
            Denied::WrongCsrf { csrf } => html_response(
                StatusCode::FORBIDDEN,
                page(
                    "Refused",
                    &csrf,
                    None,
                    &html::error_body(
                        "The form's CSRF token is missing or wrong; nothing was changed. Reload the page and try again.",
                    ),
                ),
            ),
        }
    }
}

/// The request's session (for a page).
fn viewer(console: &Console, headers: &HeaderMap) -> Result<Session, Denied> {
    session_id(headers)
        .and_then(|id| console.sessions.find(&id, Instant::now()))
        .ok_or(Denied::NoSessionForPage)
}

/// For a POST: the session id when the session and its CSRF token are right.
fn changer(console: &Console, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<String, Denied> {
    let (id, session) = session_id(headers)
        .and_then(|id| console.sessions.find(&id, Instant::now()).map(|s| (id, s)))
        .ok_or(Denied::NoSession)?;
    if !session::csrf_matches(&session, form.get("csrf").map(String::as_str)) {
        return Err(Denied::WrongCsrf { csrf: session.csrf });
    }
    Ok(id)
}

fn store_trouble(session: &Session, error: impl std::fmt::Display) -> Response {
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Store unavailable",
            &session.csrf,
            None,
            &html::error_body(&format!("the store cannot be used now: {error}")),
        ),
    )
}

async fn login_form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if viewer(&console, &headers).is_ok() {
        return see_other("/console/");
    }
    html_response(StatusCode::OK, html::login_page(None))
}

async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let form = form_fields(&body);
    if token_matches(form.get("token").map(String::as_str), &console.state.token).is_err() {
        return html_response(
            StatusCode::UNAUTHORIZED,
            html::login_page(Some("That is not the server's operator token.")),
        );
    }
    let id = console.sessions.start(Instant::now());
    let mut response = see_other("/console/");
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_fields(&body);
    let id = match changer(&console, &headers, &form) {
        Ok(id) => id,
        Err(denied) => return denied.into_response(),
    };
    console.sessions.end(&id);
    let mut response = see_other("/console/login");
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// How many runs each scheme shows.
const RUNS_SHOWN: i64 = 30;
/// How many runs the table lists (the plot shows all of [`RUNS_SHOWN`]).
const RUNS_LISTED: usize = 10;

async fn overview(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = match viewer(&console, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let state = &console.state;
    let mut body = String::new();
    if state.bindings.is_empty() {
        body.push_str("<p class=\"muted\">This server serves no schemes.</p>");
    }
    for b in state.bindings.iter() {
        let runs = match state.store.recent_runs(Some(&b.scheme), RUNS_SHOWN).await {
            Ok(runs) => runs,
            Err(e) => return store_trouble(&session, e),
        };
        let open = match state.store.count_open_failures(&b.scheme).await {
            Ok(n) => n,
            Err(e) => return store_trouble(&session, e),
        };
        let inbox = match &state.inbox {
            Some(inbox) => inbox
                .depth(&b.scheme)
                .await
                .map(|n| n.to_string())
                .unwrap_or_else(|| "n/a".into()),
            None => "n/a".into(),
        };
        let depth_plot = match &state.inbox {
            Some(inbox) => inbox
                .depth_history(&b.scheme)
                .await
                .map(|(start, series)| html::depth_plot(start, &series))
                .unwrap_or_default(),
            None => String::new(),
        };
        let _ = write!(
            body,
            "<section class=\"scheme\" id=\"scheme-{id}\"><h2>{name}</h2>\
<p>{source} → {target} · <a href=\"/console/failures?scheme={q}\">open failures: {open}</a> · \
<span class=\"inbox\">inbox: {inbox}</span></p>{plot}{depth_plot}",
            id = esc(&b.scheme),
            name = esc(&b.scheme),
            source = esc(&b.source_object),
            target = esc(&b.target_object),
            q = esc(&query_value(&b.scheme)),
            inbox = esc(&inbox),
            plot = html::runs_plot(&runs),
        );
        if !runs.is_empty() {
            body.push_str(
                "<table class=\"runs\"><tr><th>Run</th><th>Started (UTC)</th><th>Status</th>\
<th class=\"num\">Read</th><th class=\"num\">Created</th><th class=\"num\">Updated</th><th class=\"num\">Failed</th>\
<th class=\"num\">Duration</th></tr>",
            );
            for run in runs.iter().take(RUNS_LISTED) {
                let duration = run
                    .finished_at
                    .map(|end| format!("{:.1} s", (end - run.started_at).num_milliseconds() as f64 / 1000.0))
                    .unwrap_or_else(|| "running".into());
                let _ = write!(
                    body,
                    "<tr><td>{id}</td><td>{started}</td><td>{status}</td><td class=\"num\">{read}</td>\
<td class=\"num\">{created}</td><td class=\"num\">{updated}</td><td class=\"num\">{failed}</td><td class=\"num\">{duration}</td></tr>",
                    id = run.id,
                    started = run.started_at.format("%Y-%m-%d %H:%M:%S"),
                    status = esc(&run.status),
                    read = html::counter(run, "read"),
                    created = html::counter(run, "created"),
                    updated = html::counter(run, "updated"),
                    failed = html::counter(run, "failed"),
                    duration = esc(&duration),
                );
            }
            body.push_str("</table>");
        }
        body.push_str("</section>");
    }
    html_response(
        StatusCode::OK,
        page("Runs", &session.csrf, session.notice.as_deref(), &body),
    )
}

#[derive(Debug, serde::Deserialize, Default)]
struct SchemeFilter {
    scheme: Option<String>,
}

/// How many open failures the ledger page lists.
const FAILURES_SHOWN: i64 = 200;

async fn failures(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(filter): Query<SchemeFilter>,
) -> Response {
    let session = match viewer(&console, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let scheme = filter.scheme.filter(|s| !s.is_empty());
    let rows = match console
        .state
        .store
        .list_failures(scheme.as_deref(), Some(FailureStatus::Open), FAILURES_SHOWN)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return store_trouble(&session, e),
    };
    let mut body = scheme_picker(&console.state, "/console/failures", scheme.as_deref(), "");
    if console.state.replayer.is_none() {
        body.push_str(
            "<p class=\"muted\">Retry keeps the row open for the next run of its scheme, which replays it.</p>",
        );
    }
    if rows.is_empty() {
        body.push_str("<p class=\"muted\">No open failures.</p>");
    } else {
        body.push_str(
            "<table class=\"failures\"><tr><th>Id</th><th>Scheme</th><th>Source id</th><th>Stage</th><th>Class</th>\
<th>Message</th><th class=\"num\">Attempts</th><th>Last seen (UTC)</th><th>Action</th></tr>",
        );
        for f in &rows {
            let mut actions = String::new();
            for (action, label) in [("retry", "Retry"), ("skip", "Skip"), ("resolve", "Resolve")] {
                let _ = write!(
                    actions,
                    "<form class=\"inline\" method=\"post\" action=\"/console/failures/{id}/{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"{action}-{id}\">{label}</button></form> ",
                    id = f.id,
                    csrf = esc(&session.csrf),
                );
            }
            let _ = write!(
                body,
                "<tr id=\"failure-{id}\"><td>{id}</td><td>{scheme}</td><td>{source}</td><td>{stage}</td><td>{class}</td>\
<td>{message}</td><td class=\"num\">{attempts}</td><td>{seen}</td><td>{actions}</td></tr>",
                id = f.id,
                scheme = esc(&f.scheme),
                source = esc(&f.source_id),
                stage = esc(f.stage.as_str()),
                class = esc(&f.error_class),
                message = esc(&shorten(&f.message, 300)),
                attempts = f.attempts,
                seen = f.last_seen.format("%Y-%m-%d %H:%M:%S"),
            );
        }
        body.push_str("</table>");
    }
    html_response(
        StatusCode::OK,
        page("Failures", &session.csrf, session.notice.as_deref(), &body),
    )
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut short: String = text.chars().take(chars).collect();
    short.push('…');
    short
}

/// A form choosing one served scheme (or all), keeping `extra` hidden fields.
fn scheme_picker(state: &ConsoleState, action: &str, chosen: Option<&str>, extra: &str) -> String {
    let mut options = String::from("<option value=\"\">all schemes</option>");
    for b in state.bindings.iter() {
        let selected = if chosen == Some(b.scheme.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            options,
            "<option value=\"{s}\"{selected}>{s}</option>",
            s = esc(&b.scheme)
        );
    }
    format!(
        "<form method=\"get\" action=\"{action}\"><label>Scheme <select name=\"scheme\">{options}</select></label>\
{extra} <button>Show</button></form>"
    )
}

async fn failure_action(
    State(console): State<Arc<Console>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_fields(&body);
    let session_id = match changer(&console, &headers, &form) {
        Ok(id) => id,
        Err(denied) => return denied.into_response(),
    };
    let Ok(id) = id.parse::<i64>() else {
        console
            .sessions
            .notify(&session_id, format!("`{id}` is not a failure id"));
        return see_other("/console/failures");
    };
    let store = &console.state.store;
    let notice = match store.failure(id).await {
        Err(e) => format!("failure {id}: the store cannot be used now: {e}"),
        Ok(None) => format!("there is no failure {id}"),
        Ok(Some(failure)) if failure.status != FailureStatus::Open => {
            format!("failure {id} is already {}", failure.status.as_str())
        }
        Ok(Some(failure)) => match action.as_str() {
            "skip" | "resolve" => {
                let status = if action == "skip" {
                    FailureStatus::Skipped
                } else {
                    FailureStatus::Resolved
                };
                match store.set_failure_status(&[id], status).await {
                    Ok(_) => format!("failure {id} ({}) is now {}", failure.source_id, status.as_str()),
                    Err(e) => format!("failure {id}: the store cannot be used now: {e}"),
                }
            }
            "retry" => match &console.state.replayer {
                Some(replayer) => match replayer.replay(&failure.scheme, vec![id]).await {
                    Ok(outcome) => format!("failure {id} ({}): {outcome}", failure.source_id),
                    Err(why) => format!("failure {id} was not retried: {why}"),
                },
                None => format!(
                    "failure {id} ({}) stays open: the next run of `{}` replays it (or run `ferry failures retry` now)",
                    failure.source_id, failure.scheme
                ),
            },
            other => {
                return html_response(
                    StatusCode::NOT_FOUND,
                    html::error_body(&format!("unknown action `{other}`")),
                )
            }
        },
    };
    console.sessions.notify(&session_id, notice);
    see_other("/console/failures")
}

#[derive(Debug, serde::Deserialize, Default)]
struct MappingSearch {
    scheme: Option<String>,
    source_id: Option<String>,
    target_id: Option<String>,
}

/// Most rows one mapping search shows.
const MAPPINGS_SHOWN: i64 = 100;

async fn mappings(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(search): Query<MappingSearch>,
) -> Response {
    let session = match viewer(&console, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let rows = match find_mappings(&console.state, &search).await {
        Ok(rows) => rows,
        Err(e) => return store_trouble(&session, e),
    };
    let body = mappings_body(&console.state, &session, &search, &rows);
    html_response(
        StatusCode::OK,
        page("Mappings", &session.csrf, session.notice.as_deref(), &body),
    )
}

fn trimmed(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

async fn find_mappings(state: &ConsoleState, search: &MappingSearch) -> Result<Vec<Mapping>, crate::store::StoreError> {
    let source = trimmed(&search.source_id);
    let target = trimmed(&search.target_id);
    if source.is_none() && target.is_none() {
        return Ok(Vec::new());
    }
    state
        .store
        .query_mappings(&MappingQuery {
            scheme: trimmed(&search.scheme),
            source_ids: source.into_iter().collect(),
            target_ids: target.into_iter().collect(),
            status: None,
            limit: Some(MAPPINGS_SHOWN),
            offset: 0,
        })
        .await
}

fn mappings_body(state: &ConsoleState, session: &Session, search: &MappingSearch, rows: &[Mapping]) -> String {
    let source = trimmed(&search.source_id).unwrap_or_default();
    let target = trimmed(&search.target_id).unwrap_or_default();
    let fields = format!(
        " <label>Source id <input type=\"text\" name=\"source_id\" id=\"source_id\" value=\"{}\"></label> \
<label>Target id <input type=\"text\" name=\"target_id\" id=\"target_id\" value=\"{}\"></label>",
        esc(&source),
        esc(&target)
    );
    let mut body = scheme_picker(state, "/console/mappings", trimmed(&search.scheme).as_deref(), &fields);
    if source.is_empty() && target.is_empty() {
        body.push_str("<p class=\"muted\">Search by a source id or a target id.</p>");
        return body;
    }
    if rows.is_empty() {
        body.push_str("<p class=\"muted\">No mapping matches.</p>");
        return body;
    }
    body.push_str(
        "<table class=\"mappings\"><tr><th>Scheme</th><th>Source</th><th>Source id</th><th>Target</th>\
<th>Status</th><th>Last synced (UTC)</th><th>Target id</th></tr>",
    );
    for m in rows {
        let _ = write!(
            body,
            "<tr><td>{scheme}</td><td>{source_object}</td><td>{source_id}</td><td>{target_object}</td><td>{status}</td><td>{synced}</td>\
<td><form method=\"post\" action=\"/console/mappings\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"scheme\" value=\"{scheme}\"><input type=\"hidden\" name=\"source_id\" value=\"{source_id}\">\
<input type=\"text\" name=\"target_id\" class=\"edit-target\" value=\"{target_id}\"> <button class=\"save\">Save</button></form></td></tr>",
            scheme = esc(&m.scheme),
            source_object = esc(&m.source_object),
            source_id = esc(&m.source_id),
            target_object = esc(&m.target_object),
            status = esc(m.status.as_str()),
            synced = m
                .last_synced_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            csrf = esc(&session.csrf),
            target_id = esc(m.target_id.as_deref().unwrap_or_default()),
        );
    }
    body.push_str("</table>");
    body
}

/// Why a mapping edit was refused: its HTTP status and message.
struct EditRefusal(StatusCode, String);

async fn edit_mapping(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_fields(&body);
    let session_id = match changer(&console, &headers, &form) {
        Ok(id) => id,
        Err(denied) => return denied.into_response(),
    };
    let field = |name: &str| form.get(name).map(|v| v.trim().to_string()).unwrap_or_default();
    let (scheme, source_id, target_id) = (field("scheme"), field("source_id"), field("target_id"));
    let search = format!(
        "/console/mappings?scheme={}&source_id={}",
        query_value(&scheme),
        query_value(&source_id)
    );
    match change_target(&console.state, &scheme, &source_id, &target_id).await {
        Ok(()) => {
            console.sessions.notify(
                &session_id,
                format!("`{source_id}` in `{scheme}` now maps to target id `{target_id}`"),
            );
            see_other(&search)
        }
        Err(EditRefusal(status, message)) => {
            let session = console.sessions.find(&session_id, Instant::now());
            let csrf = session.map(|s| s.csrf).unwrap_or_default();
            let back = format!(
                "{}<p><a href=\"{}\">Back to the mapping</a></p>",
                html::error_body(&message),
                esc(&search)
            );
            html_response(status, page("Mapping not changed", &csrf, None, &back))
        }
    }
}

/// Changes the target id of one mapping, holding the scheme's run lock (as the platform
/// API's `updateSyncDataMapping` does).
async fn change_target(
    state: &ConsoleState,
    scheme: &str,
    source_id: &str,
    target_id: &str,
) -> Result<(), EditRefusal> {
    let bad = |m: String| EditRefusal(StatusCode::BAD_REQUEST, m);
    let store_down = |e: crate::store::StoreError| {
        EditRefusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be used now: {e}"),
        )
    };
    let Some(b) = state.bindings.iter().find(|b| b.scheme == scheme) else {
        return Err(EditRefusal(
            StatusCode::NOT_FOUND,
            format!("this server serves no scheme `{scheme}`"),
        ));
    };
    if source_id.is_empty() {
        return Err(bad("the source id is missing".into()));
    }
    if target_id.is_empty() {
        return Err(bad("the new target id is empty; enter the target record's id".into()));
    }
    let _lock = match lock::acquire(&state.store, scheme, false).await {
        Ok(held) => held,
        Err(LockError::Held { .. }) => {
            return Err(EditRefusal(
                StatusCode::CONFLICT,
                format!("a run of scheme `{scheme}` is in progress; change the mapping when it has finished"),
            ))
        }
        Err(e) => return Err(EditRefusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    };
    let pending = state.store.pending_intents(scheme).await.map_err(store_down)?;
    if pending.iter().any(|i| i.source_id == source_id) {
        return Err(EditRefusal(
            StatusCode::CONFLICT,
            format!("source id `{source_id}` has a write in flight that an earlier run did not settle; the next run of `{scheme}` settles it, then the mapping can change"),
        ));
    }
    let found = state
        .store
        .mappings_for(scheme, &b.source_object, &[source_id.to_string()])
        .await
        .map_err(store_down)?;
    let Some(mut mapping) = found.get(source_id).cloned() else {
        return Err(EditRefusal(
            StatusCode::NOT_FOUND,
            format!("source id `{source_id}` has no mapping in scheme `{scheme}`"),
        ));
    };
    mapping.target_id = Some(target_id.to_string());
    if !matches!(mapping.status, MappingStatus::Created | MappingStatus::Updated) {
        // Mapped by hand: the next run sends the record as an update of this target.
        mapping.status = MappingStatus::Updated;
        mapping.payload_hash = None;
        mapping.last_error = None;
    }
    mapping.last_synced_at = Some(Utc::now());
    state.store.upsert_mapping(&mapping).await.map_err(store_down)
}

#[cfg(test)]
mod depth_tests {
    use super::depth_series;
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn the_depth_counts_rows_received_and_not_yet_finished_at_each_moment() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |s: i64| t0 + Duration::seconds(s);
        // Received at 0, 0, 5; finished at 4, never, 9.
        let rows = [(at(0), Some(at(4))), (at(0), None), (at(5), Some(at(9)))];
        // Moments 2.5, 5, 7.5, 10.
        assert_eq!(depth_series(&rows, t0, at(10), 4), vec![2, 2, 2, 1]);
        assert!(depth_series(&[], t0, at(10), 4).iter().all(|&d| d == 0));
    }
}
