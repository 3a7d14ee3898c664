//! The fetch task: walks windows and pages, sending decoded pages to the planner.
//!
//! Each page goes out as its records and, where the source reports deletions
//! (`source.deleted`, or the connector's default such as Simply CRM's `sync`), the ids it
//! lists deleted, in that order. A connector's check of an answer against its request
//! (a `sync` cursor that does not advance) stops the read as a paging guard.
//! It also checks each source page's `incremental.field` against the window the page was
//! read in ([`ChangeChecks`], the decisions in [`crate::window::PageTimes`]); the planner
//! counts the results and warns.
//!
//! Every source request is counted ([`RunContext::source_requests`], retries included) and
//! described once its answer is read: logged at debug level with its window, page and
//! record count, and handed to the run's source sink (secrets masked in both).

use super::call;
use super::context::{Fetched, RunContext};
use crate::error::Error;
use crate::exchange::{build_request, read_page, records_parent, render_call, Page};
use crate::http::Repeat;
use crate::paginate::{PageRequest, PageSeen, Pager};
use crate::template::Scope;
use crate::transform::value_to_text;
use crate::window::{format_time, PageTimes, TimeTally, Window};
use chrono::Utc;
use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio::sync::Semaphore;

pub(crate) async fn fetch_all(
    ctx: Arc<RunContext>,
    windows: Vec<Option<Window>>,
    replay: Vec<(Value, String)>,
    sender: Sender<Fetched>,
    pages: Arc<AtomicU64>,
) {
    for chunk in replay.chunks(ctx.plan.target.batch.max(1)) {
        let records = chunk.to_vec();
        let page = Fetched::Page {
            records,
            deleted: Vec::new(),
            replay: true,
            times: None,
        };
        if sender.send(page).await.is_err() {
            return;
        }
    }
    let parent = records_parent(&ctx.plan.source.records);
    let in_flight = ctx.plan.source_connection().in_flight.max(1);
    let slots = Arc::new(Semaphore::new(in_flight));
    // Windows are read `in_flight` at a time (a dry run reads them one by one, so its
    // listing stays in order); their pages are handed on strictly in window order, and
    // the page requests of all of them share the connection's `in_flight` slots.
    let ahead = if ctx.dry_run { 1 } else { in_flight };
    let mut reading: VecDeque<WindowTask> = VecDeque::new();
    let mut next = 0;
    loop {
        while reading.len() < ahead && next < windows.len() {
            reading.push_back(WindowTask::start(&ctx, &windows, next, parent.clone(), &slots, &pages));
            next += 1;
        }
        let Some(mut task) = reading.pop_front() else { return };
        while let Some(message) = task.pages.recv().await {
            if sender.send(message).await.is_err() {
                return;
            }
        }
        let outcome = match (&mut task.handle).await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::new(
                crate::error::ErrorKind::Aborted,
                format!("reading window {} failed: {e}", task.index + 1),
            )),
        };
        match outcome {
            Ok(true) => {
                if sender.send(Fetched::WindowDone { window: task.index }).await.is_err() {
                    return;
                }
            }
            Ok(false) => return,
            Err(error) => {
                let _ = sender.send(Fetched::Failed(error)).await;
                return;
            }
        }
    }
}

/// One window being read in its own task; its pages wait in `pages` until the windows
/// before it are handed on. Dropping it stops the read.
struct WindowTask {
    index: usize,
    pages: tokio::sync::mpsc::Receiver<Fetched>,
    handle: tokio::task::JoinHandle<Result<bool, Error>>,
}

impl WindowTask {
    fn start(
        ctx: &Arc<RunContext>,
        windows: &[Option<Window>],
        index: usize,
        parent: Option<crate::extract::JsonPath>,
        slots: &Arc<Semaphore>,
        pages: &Arc<AtomicU64>,
    ) -> WindowTask {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let (ctx, slots, pages) = (ctx.clone(), slots.clone(), pages.clone());
        let window = windows[index];
        let handle = tokio::spawn(async move {
            let vars = window_vars(&ctx, window.as_ref());
            let read = (index, window.as_ref());
            fetch_window(&ctx, &vars, parent.as_ref(), read, &sender, &pages, &slots).await
        });
        WindowTask {
            index,
            pages: receiver,
            handle,
        }
    }
}

impl Drop for WindowTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A page request in its own task, sent when one of the connection's `in_flight` slots is
/// free. Its own task, so a slot is never held by a request nobody polls (a window waiting
/// for its turn to hand pages on); dropping the future cancels the request.
fn fetch_page_in_slot(
    slots: &Arc<Semaphore>,
    ctx: &Arc<RunContext>,
    vars: &Arc<Map<String, Value>>,
    parent: Option<&crate::extract::JsonPath>,
    request: PageRequest,
) -> impl std::future::Future<Output = Result<Page, Error>> {
    let (slots, ctx, vars, parent) = (slots.clone(), ctx.clone(), vars.clone(), parent.cloned());
    let task = AbortOnDrop(tokio::spawn(async move {
        let _slot = slots.acquire().await;
        fetch_page(&ctx, &vars, parent.as_ref(), request).await
    }));
    async move {
        task.await.unwrap_or_else(|e| {
            Err(Error::new(
                crate::error::ErrorKind::Aborted,
                format!("a page read failed: {e}"),
            ))
        })
    }
}

/// A task handle that cancels its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The run's variables plus `window`, in the source server's zone (so a template that
/// prints it raw is right too).
pub(crate) fn window_vars(ctx: &RunContext, window: Option<&Window>) -> Arc<Map<String, Value>> {
    let mut vars: Map<String, Value> = (*ctx.vars).clone();
    if let Some(window) = window {
        // In the source server's zone, so a template that prints it raw is right too.
        let zone = ctx.plan.source_connection().zone;
        vars.insert(
            "window".into(),
            crate::scheme::context::window_value(format_time(window.start, zone), format_time(window.end, zone)),
        );
    }
    Arc::new(vars)
}

/// Checks the `incremental.field` of a source page read in `window`.
pub(crate) fn check_times(ctx: &RunContext, window: Option<&Window>, records: &[Value]) -> Option<TimeTally> {
    let checks = ctx.change_checks.as_ref()?;
    let window = window?;
    if records.is_empty() {
        return None;
    }
    let page = PageTimes {
        field: &checks.field,
        zone: checks.zone,
        window: *window,
        now: checks.now.unwrap_or_else(Utc::now),
        resume: checks.resume,
    };
    Some(page.tally(records, |record| record_label(ctx, record)))
}

/// Names a record in a message by its source id (``record `SO-1` ``).
pub(crate) fn record_label(ctx: &RunContext, record: &Value) -> String {
    let scope = Scope {
        record: Some(Arc::new(record.clone())),
        vars: ctx.vars.clone(),
        ..Scope::default()
    };
    match ctx.plan.source.id.render(&scope).ok().as_ref().and_then(value_to_text) {
        Some(id) => format!("record `{id}`"),
        None => "a record".to_string(),
    }
}

pub(crate) async fn fetch_page(
    ctx: &RunContext,
    vars: &Arc<Map<String, Value>>,
    parent: Option<&crate::extract::JsonPath>,
    page: PageRequest,
) -> Result<Page, Error> {
    let plan = &ctx.plan;
    let conn = plan.source_connection();
    let mut page_vars = (**vars).clone();
    page_vars.insert("page".into(), page.to_value());
    let scope = Scope {
        vars: Arc::new(page_vars),
        ..Scope::default()
    };
    if !conn.protocol.templated() {
        // Vendor throttles are retried by the vendor call itself.
        return fetch_vendor_page(ctx, &scope, &page).await;
    }
    let mut attempt = 1;
    loop {
        match fetch_http_page(ctx, &scope, parent, &page).await {
            // The answer asked for the same request again (`source.response.retry`).
            Err(e) if e.kind == crate::error::ErrorKind::Throttled && attempt < conn.retry.attempts => {
                let delay = crate::http::backoff_delay(&conn.retry, attempt, None, rand::random::<f64>());
                tracing::debug!(
                    page = page.index + 1,
                    delay_ms = delay.as_millis() as u64,
                    "{}",
                    e.message
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn fetch_http_page(
    ctx: &RunContext,
    scope: &Scope,
    parent: Option<&crate::extract::JsonPath>,
    page: &PageRequest,
) -> Result<Page, Error> {
    let plan = &ctx.plan;
    let conn = plan.source_connection();
    let request = build_request(conn, &plan.source.request, scope, page.next_url.as_deref())?;
    let sent = ctx.http.send(conn, &request, Repeat::Safe).await;
    count_source_requests(ctx, sent.as_ref().map_or(1, |(_, attempts)| *attempts));
    let (response, _attempts) = sent?;
    let read = read_page(
        &plan.source.response,
        &plan.source.records,
        parent,
        &response,
        plan.source.response.codec,
    )
    .map_err(|e| e.context(format!("page {} of the source", page.index + 1)))?;
    let body = request.body.as_deref().map(String::from_utf8_lossy);
    describe_source_request(
        ctx,
        scope,
        ("page", page.index + 1),
        request.method.as_str(),
        &request.url,
        body.as_deref(),
        read.records.len(),
    );
    Ok(read)
}

fn count_source_requests(ctx: &RunContext, requests: u32) {
    ctx.source_requests.fetch_add(u64::from(requests), Ordering::Relaxed);
}

/// Logs a source request at debug level and hands it to the run's source sink.
fn describe_source_request(
    ctx: &RunContext,
    scope: &Scope,
    (kind, page): (&'static str, u64),
    method: &'static str,
    url: &str,
    body: Option<&str>,
    records: usize,
) {
    let wants_log = tracing::enabled!(tracing::Level::DEBUG);
    if !wants_log && ctx.source_sink.is_none() {
        return;
    }
    let redactor = &ctx.plan.redactor;
    let window = scope.vars.get("window").and_then(|w| {
        let start = w.get("start")?.as_str()?;
        let end = w.get("end")?.as_str()?;
        Some(format!("{start} → {end}"))
    });
    let described = crate::engine::SourceRequest {
        kind,
        window,
        page,
        method,
        url: redactor.redact(url).into_owned(),
        body: body.map(|b| redactor.redact(b).into_owned()),
        records,
    };
    if wants_log {
        tracing::debug!(
            scheme = %ctx.plan.name,
            kind,
            window = described.window.as_deref().unwrap_or(""),
            page,
            method,
            url = %described.url,
            body = described.body.as_deref().unwrap_or(""),
            records,
            "source request"
        );
    }
    if let Some(sink) = &ctx.source_sink {
        sink(&described);
    }
}

/// Replaces each listed record with its full version, `in_flight` requests at a time.
pub(crate) async fn fetch_details(
    ctx: &RunContext,
    detail: &crate::scheme::model::DetailPlan,
    vars: &Arc<Map<String, Value>>,
    records: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    let conn = ctx.plan.source_connection();
    let one = |record: Value| async move {
        let scope = Scope {
            record: Some(Arc::new(record)),
            vars: vars.clone(),
            ..Scope::default()
        };
        let body = if conn.protocol.templated() {
            let request = build_request(conn, &detail.request, &scope, None)?;
            let sent = ctx.http.send(conn, &request, Repeat::Safe).await;
            count_source_requests(ctx, sent.as_ref().map_or(1, |(_, attempts)| *attempts));
            let (response, _) = sent?;
            let body = request.body.as_deref().map(String::from_utf8_lossy);
            describe_source_request(
                ctx,
                &scope,
                ("detail", 0),
                request.method.as_str(),
                &request.url,
                body.as_deref(),
                1,
            );
            ctx.plan.source.response.codec.decode(&response.body)?
        } else {
            let (api, params) = render_call(&detail.request, &scope)?;
            let called = call::call(ctx, conn, &api, &params, Repeat::Safe).await;
            count_source_requests(ctx, called.as_ref().map_or(1, |(_, _, requests)| *requests));
            let body = called?.1;
            let url = format!("{} {api}", conn.protocol.name());
            describe_source_request(ctx, &scope, ("detail", 0), "CALL", &url, Some(&params.to_string()), 1);
            body
        };
        detail.records.first(&body).cloned().ok_or_else(|| {
            Error::decode(format!(
                "the detail answer has nothing at `{}`",
                detail.records.as_str()
            ))
        })
    };
    futures::stream::iter(records.into_iter().map(one))
        .buffered(conn.in_flight.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// A page from a built-in vendor connector: the connector places the page in the
/// parameters, judges the envelope and shapes the rows.
async fn fetch_vendor_page(ctx: &RunContext, scope: &Scope, page: &PageRequest) -> Result<Page, Error> {
    let plan = &ctx.plan;
    let conn = plan.source_connection();
    let (api, mut params) = render_call(&plan.source.request, scope)?;
    if let Some(paging) = &plan.source.auto_page {
        conn.protocol
            .apply_page(&api, &mut params, &page.position(), paging)
            .map_err(|e| Error::config(format!("{}: {e}", conn.protocol.name())))?;
    }
    let called = call::call(ctx, conn, &api, &params, Repeat::Safe).await;
    count_source_requests(ctx, called.as_ref().map_or(1, |(_, _, requests)| *requests));
    let (response, body, _) = called.map_err(|e| e.context(format!("page {} of the source", page.index + 1)))?;
    let (mut body, verdict) = crate::exchange::check_read_envelope(&plan.source.response, body, response.status);
    if let Some(message) = verdict? {
        return Err(Error::envelope(format!("the source reported an error: {message}")));
    }
    conn.protocol
        .check_page(&api, &params, &body)
        .map_err(|message| Error::guard(format!("page {} of the source: {message}", page.index + 1)))?;
    let rows = plan.source.records.take_from(&mut body);
    let records = conn
        .protocol
        .shape_records(&api, &params, rows)
        .map_err(Error::decode)?;
    let url = format!("{} {api}", conn.protocol.name());
    describe_source_request(
        ctx,
        scope,
        ("page", page.index + 1),
        "CALL",
        &url,
        Some(&params.to_string()),
        records.len(),
    );
    Ok(Page { body, records })
}

/// The ids a page lists as deleted at the source, as text (the form `source.id` gives).
fn deleted_ids(path: Option<&crate::extract::JsonPath>, body: &mut Value) -> Result<Vec<String>, Error> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    path.take_from(body)
        .into_iter()
        .filter(|id| !id.is_null())
        .map(|id| match id {
            Value::Array(_) | Value::Object(_) => Err(Error::decode(format!(
                "`source.deleted` ({}) selects {id} rather than an id; point it at the ids themselves, e.g. `$.deleted[*].id`",
                path.as_str()
            ))),
            id => value_to_text(&id).ok_or_else(|| {
                Error::decode(format!(
                    "`source.deleted` ({}) selects an empty id",
                    path.as_str()
                ))
            }),
        })
        .collect()
}

/// Fingerprint of a page, from its records' payload hashes.
fn fingerprint(hashes: &[(Value, String)]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (_, hash) in hashes {
        hash.hash(&mut hasher);
    }
    hasher.finish()
}

/// Reads one window (its index and its times). Returns false when the planner stopped listening.
async fn fetch_window(
    ctx: &Arc<RunContext>,
    vars: &Arc<Map<String, Value>>,
    parent: Option<&crate::extract::JsonPath>,
    (window, times): (usize, Option<&Window>),
    sender: &Sender<Fetched>,
    pages: &AtomicU64,
    slots: &Arc<Semaphore>,
) -> Result<bool, Error> {
    let mut pager = Pager::new(&ctx.plan.source.pagination);
    let depth = if pager.can_prefetch() {
        ctx.plan.source_connection().in_flight.max(1) as u64
    } else {
        1
    };
    // The first page goes alone: most windows of an incremental read hold one page, and
    // a page requested past the end costs a rate-limited tenant a request for nothing.
    let mut queue = FuturesOrdered::new();
    queue.push_back(fetch_page_in_slot(slots, ctx, vars, parent, pager.first()));
    let mut requested: u64 = 1;
    let mut full_streak: u64 = 0;
    while let Some(result) = queue.next().await {
        let page = result.map_err(|e| e.context(format!("reading window {}", window + 1)))?;
        pages.fetch_add(1, Ordering::Relaxed);
        let Page { mut body, records } = page;
        let deleted = deleted_ids(ctx.plan.source.deleted.as_ref(), &mut body)
            .map_err(|e| e.context(format!("reading window {}", window + 1)))?;
        let records = match &ctx.plan.source.detail {
            Some(detail) => fetch_details(ctx, detail, vars, records).await?,
            None => records,
        };
        let checked = check_times(ctx, times, &records).map(Box::new);
        let hashed: Vec<(Value, String)> = records
            .into_iter()
            .map(|record| {
                let hash = ctx.payload_hasher.hash(&record);
                (record, hash)
            })
            .collect();
        // Deleted ids share the page with records, so both count towards a full page.
        let seen_rows = hashed.len() + deleted.len();
        let seen = PageSeen {
            body: &body,
            records: hashed.len(),
            deleted: deleted.len(),
            fingerprint: fingerprint(&hashed),
        };
        let next = pager.advance(&seen).map_err(|e| Error::guard(e.0))?;
        let full = ctx
            .plan
            .source
            .pagination
            .size
            .is_some_and(|size| seen_rows as u64 >= size);
        drop(body);
        if sender
            .send(Fetched::Page {
                records: hashed,
                deleted,
                replay: false,
                times: checked,
            })
            .await
            .is_err()
        {
            return Ok(false);
        }
        let Some(next) = next else {
            return Ok(true);
        };
        if depth == 1 {
            queue.push_back(fetch_page_in_slot(slots, ctx, vars, parent, next));
            continue;
        }
        // With an announced total, keep up to `depth` pages in flight, never past the last.
        // Without one, read ahead only as far as the run of full pages so far earns: a
        // window that ends after one full page costs no request past its empty end.
        full_streak = if full { full_streak + 1 } else { 0 };
        let (ahead, last) = match pager.last_index() {
            Some(last) => (depth, last.max(next.index)),
            None => (full_streak.clamp(1, depth), u64::MAX),
        };
        let last = if full { last } else { next.index };
        while (queue.len() as u64) < ahead && requested <= last {
            queue.push_back(fetch_page_in_slot(slots, ctx, vars, parent, pager.page_at(requested)));
            requested += 1;
        }
    }
    Ok(true)
}
