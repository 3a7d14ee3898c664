//! Simulators: real HTTP servers that speak a vendor's protocol, for tests,
//! `ferry demo`, `ferry simulate` and the throughput benchmark.
//!
//! This module owns the plumbing every simulator shares; each system lives in
//! its own file (`shop.rs`, later one file per vendor) and only adds routes and
//! state. The plumbing promises:
//!
//! * **Binding and shutdown.** [`serve`] takes a bound listener (tests bind
//!   `127.0.0.1:0`) and returns a [`SimHandle`]. Dropping the handle or calling
//!   [`SimHandle::shutdown`] stops accepting and lets in-flight requests finish.
//! * **A request log.** [`RequestLog`] records every request that reaches the
//!   server: method, path, query, headers and body ([`LogMode::Full`]), or only
//!   a count ([`LogMode::CountOnly`], for benchmarks).
//! * **Fault injection, changeable at runtime.** [`Faults`] describes latency,
//!   random 500s (seeded, so a test sees the same sequence every run), a
//!   throttle limit, garbled responses and dropped connections. The
//!   [`FaultInjector`] inside a [`SimControl`] can be replaced or edited while
//!   the server runs; [`instrument`] wraps a router so every request passes
//!   through it. What a throttle or failure *looks like* is the vendor's choice,
//!   expressed through [`FaultReplies`].
//!
//! Fault semantics, decided in this order for each eligible request:
//! 1. `latency_ms` delays every eligible request (faulted or not).
//! 2. `drop_next`: the connection is closed without a response, and the
//!    request never reaches the handler, so a retry is safe.
//! 3. `rate_limit_per_sec`: requests over the limit within a one-second window
//!    get the vendor's throttle answer; throttled requests do not use up the
//!    window's budget.
//! 4. `fail_rate`: that fraction of requests get the vendor's failure answer.
//! 5. `garble_next`: the handler **runs** (its side effects happen) and the
//!    response body is then cut short, like a proxy losing the tail. This
//!    models "the write happened but the client never learned the ids".
//!
//! Dropping a connection needs the connection-level hook installed by
//! [`serve`]; a router served some other way answers 502 with an empty body
//! instead. Rejected alternative: panicking in the handler, which also drops
//! the connection but prints a panic for every injected fault.

pub mod erp_standard;
pub mod flows;
pub mod fxiaoke;
pub mod guanyi;
pub mod jackyun;
pub mod jdy;
pub mod k3cloud;
pub(crate) mod kit;
pub mod scripted;
pub mod shop;
pub mod signatures;
pub mod simply;

use std::future::IntoFuture;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest request body the log will buffer (64 MiB); larger bodies get 413.
const MAX_RECORDED_BODY: usize = 64 * 1024 * 1024;

/// Locks a mutex, ignoring poisoning: simulator state stays usable after a
/// panicking test thread, which is what a test harness wants.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/// A running simulator. Dropping it (or calling [`SimHandle::shutdown`])
/// stops the server gracefully.
#[must_use = "dropping the handle stops the simulator"]
#[derive(Debug)]
pub struct SimHandle {
    /// The address the server listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// `http://IP:PORT`, with an unspecified bind address (`0.0.0.0`, `::`)
    /// replaced by `127.0.0.1` so the URL is always connectable.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        format!("http://{addr}")
    }

    /// Stops accepting connections and waits (at most two seconds) for in-flight
    /// requests to finish; a client holding a connection open cannot block it longer.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; nothing to do then.
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `router` on `listener` in a background task (requires a tokio
/// runtime). The connection hook that lets the fault layer drop connections
/// is installed here.
pub async fn serve(listener: TcpListener, router: Router) -> io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = router.into_make_service_with_connect_info::<ConnectionTap>();
    let server = axum::serve(TapListener(listener), app).with_graceful_shutdown(async move {
        // A dropped sender also means "stop".
        let _ = stop_rx.await;
    });
    let task = tokio::spawn(server.into_future());
    Ok(SimHandle {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// Per-connection information handed to handlers: the peer and a switch that
/// severs the connection.
#[derive(Clone, Debug)]
struct ConnectionTap {
    #[allow(dead_code)] // shown in axum's trace output via Debug
    peer: SocketAddr,
    severed: Arc<AtomicBool>,
}

impl ConnectionTap {
    fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
    }
}

/// A TCP listener whose streams can be severed from inside a handler.
struct TapListener(TcpListener);

impl Listener for TapListener {
    type Io = TappedStream;
    type Addr = ConnectionTap;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own impl retries accept errors with a back-off.
        let (stream, peer) = Listener::accept(&mut self.0).await;
        // Small JSON answers should not wait for Nagle; failure is harmless.
        let _ = stream.set_nodelay(true);
        let severed = Arc::new(AtomicBool::new(false));
        let io = TappedStream {
            inner: stream,
            severed: Arc::clone(&severed),
        };
        (io, ConnectionTap { peer, severed })
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnectionTap {
            peer: self.0.local_addr()?,
            severed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, TapListener>> for ConnectionTap {
    fn connect_info(stream: IncomingStream<'_, TapListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that reports end-of-file and refuses writes once severed, so
/// hyper closes the connection without writing a byte of the response.
struct TappedStream {
    inner: TcpStream,
    severed: Arc<AtomicBool>,
}

impl TappedStream {
    fn is_severed(&self) -> bool {
        self.severed.load(Ordering::SeqCst)
    }
}

fn severed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for TappedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.is_severed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TappedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// Scripted misbehaviour. `Faults::default()` is a well-behaved server.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Delay added to every eligible request.
    pub latency_ms: u64,
    /// Delay added after the handler ran, before the answer leaves: a client that dies
    /// meanwhile has written without hearing about it.
    pub latency_after_ms: u64,
    /// Fraction (0.0..=1.0) of eligible requests answered with the vendor's
    /// failure (HTTP 500 unless the vendor says otherwise).
    pub fail_rate: f64,
    /// Requests per one-second window; the rest get the vendor's throttle
    /// answer (the shop: HTTP 429 with `Retry-After: 1`).
    pub rate_limit_per_sec: Option<u32>,
    /// The next N handled responses have their body truncated into non-JSON.
    pub garble_next: u32,
    /// The next N requests have their connection closed without a response.
    pub drop_next: u32,
    /// Seed for the `fail_rate` draws; the same seed gives the same sequence
    /// of failures after every [`FaultInjector::set`].
    pub seed: u64,
    /// When set, only requests whose path starts with this prefix are
    /// eligible for any fault (e.g. `"/orders/"` to hit only the shop target).
    pub only_path_prefix: Option<String>,
    /// Every Nth eligible request gets the throttle answer (on top of `rate_limit_per_sec`).
    pub throttle_every: Option<u32>,
    /// Overrides the Retry-After seconds of throttle answers that carry one (0 is allowed).
    pub retry_after_secs: Option<u64>,
    /// A `fail_rate` failure lets the handler run first: the write happens, and the client
    /// still sees the failure (a lost answer, the hardest case for exactly-once).
    pub fail_after_handler: bool,
}

/// The fault applied to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedFault {
    /// Connection closed without a response; the handler did not run.
    Dropped,
    /// Answered with the vendor's throttle reply; the handler did not run.
    Throttled,
    /// Answered with the vendor's failure reply; the handler did not run.
    Failed,
    /// The handler ran, then its answer was replaced by the vendor's failure reply.
    FailedAfterHandling,
    /// The handler ran and its response body was truncated.
    Garbled,
}

/// What the fault layer will do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Delay before anything else happens.
    pub latency: Duration,
    /// Delay between the handler and the answer.
    pub latency_after: Duration,
    /// Retry-After override for a throttle answer.
    pub retry_after_secs: Option<u64>,
    /// The fault to apply, if any.
    pub fault: Option<InjectedFault>,
}

struct FaultState {
    faults: Faults,
    rng: StdRng,
    window_start: Option<Instant>,
    window_used: u32,
    /// Eligible requests seen, for `throttle_every`.
    eligible_seen: u64,
}

impl FaultState {
    fn new(faults: Faults) -> Self {
        FaultState {
            rng: StdRng::seed_from_u64(faults.seed),
            faults,
            window_start: None,
            window_used: 0,
            eligible_seen: 0,
        }
    }

    /// Whether a `fail_rate` draw picks this request.
    fn fails_now(&mut self) -> bool {
        self.faults.fail_rate > 0.0 && self.rng.gen::<f64>() < self.faults.fail_rate
    }

    /// Spends one unit of the current window's budget, or reports throttling.
    fn throttles_now(&mut self) -> bool {
        let Some(limit) = self.faults.rate_limit_per_sec else {
            return false;
        };
        let now = Instant::now();
        let window_expired = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if window_expired {
            self.window_start = Some(now);
            self.window_used = 0;
        }
        if self.window_used >= limit {
            return true;
        }
        self.window_used += 1;
        false
    }
}

/// The live fault settings of one simulator, safe to change while it serves.
pub struct FaultInjector {
    state: Mutex<FaultState>,
}

impl FaultInjector {
    /// Starts with `faults`, seeding the failure RNG from `faults.seed`.
    pub fn new(faults: Faults) -> Self {
        FaultInjector {
            state: Mutex::new(FaultState::new(faults)),
        }
    }

    /// Replaces the faults, reseeds the RNG and starts a fresh rate window.
    pub fn set(&self, faults: Faults) {
        *lock(&self.state) = FaultState::new(faults);
    }

    /// Edits the faults in place, keeping the RNG sequence and rate window
    /// (e.g. `update(|f| f.garble_next = 1)` in the middle of a test).
    pub fn update(&self, edit: impl FnOnce(&mut Faults)) {
        edit(&mut lock(&self.state).faults);
    }

    /// The current settings; `garble_next`/`drop_next` show what is left.
    pub fn current(&self) -> Faults {
        lock(&self.state).faults.clone()
    }

    /// Decides the fate of one request to `path`, consuming counters.
    pub fn decide(&self, path: &str) -> FaultPlan {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let eligible = state
            .faults
            .only_path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix));
        if !eligible {
            return FaultPlan {
                latency: Duration::ZERO,
                latency_after: Duration::ZERO,
                retry_after_secs: None,
                fault: None,
            };
        }
        let latency = Duration::from_millis(state.faults.latency_ms);
        state.eligible_seen += 1;
        let nth_throttled = state
            .faults
            .throttle_every
            .is_some_and(|every| every > 0 && state.eligible_seen.is_multiple_of(u64::from(every)));
        let fault = if state.faults.drop_next > 0 {
            state.faults.drop_next -= 1;
            Some(InjectedFault::Dropped)
        } else if nth_throttled || state.throttles_now() {
            Some(InjectedFault::Throttled)
        } else if state.fails_now() {
            Some(if state.faults.fail_after_handler {
                InjectedFault::FailedAfterHandling
            } else {
                InjectedFault::Failed
            })
        } else if state.faults.garble_next > 0 {
            state.faults.garble_next -= 1;
            Some(InjectedFault::Garbled)
        } else {
            None
        };
        FaultPlan {
            latency,
            latency_after: Duration::from_millis(state.faults.latency_after_ms),
            retry_after_secs: state.faults.retry_after_secs,
            fault,
        }
    }
}

/// How a vendor answers when the fault layer throttles, fails or garbles.
/// The defaults suit plain JSON APIs.
pub trait FaultReplies: Send + Sync + 'static {
    /// The answer to a request over the rate limit.
    fn throttled(&self) -> Response {
        kit::too_many_requests(serde_json::json!({"message": "rate limit exceeded"}))
    }

    /// The answer to a request picked by `fail_rate`.
    fn server_error(&self) -> Response {
        kit::json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"message": "simulated internal error"}),
        )
    }

    /// Turns a real response body into garbage the client cannot parse.
    fn garble(&self, body: Bytes) -> Bytes {
        truncate_to_garbage(body)
    }
}

/// The plain-JSON answers of [`FaultReplies`]' default methods.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultReplies;

impl FaultReplies for DefaultReplies {}

/// Keeps the first half of `body`; if that still parses as JSON (or is
/// empty), returns an HTML fragment instead.
pub fn truncate_to_garbage(body: Bytes) -> Bytes {
    let cut = body.slice(..body.len() / 2);
    let still_json = serde_json::from_slice::<serde::de::IgnoredAny>(&cut).is_ok();
    if cut.is_empty() || still_json {
        Bytes::from_static(b"<html><body><h1>502 Bad Gatew")
    } else {
        cut
    }
}

// ---------------------------------------------------------------------------
// Request log
// ---------------------------------------------------------------------------

/// How much the [`RequestLog`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    /// Every request with headers and body.
    Full,
    /// Only the number of requests (benchmarks): no buffering, no memory growth.
    CountOnly,
}

/// One request as the simulator received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query, e.g. `/orders`.
    pub path: String,
    /// The raw query string without `?`; empty when there was none.
    pub query: String,
    /// Every header, names lower-case, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// The request body as received.
    pub body: Bytes,
    /// The fault applied to this request, if any.
    pub fault: Option<InjectedFault>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The decoded query parameters in order (`+` and `%XX` decoded).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// The first decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Records the requests a simulator receives.
pub struct RequestLog {
    mode: LogMode,
    count: AtomicU64,
    entries: Mutex<Vec<RecordedRequest>>,
}

impl RequestLog {
    /// An empty log keeping `mode`'s level of detail.
    pub fn new(mode: LogMode) -> Self {
        RequestLog {
            mode,
            count: AtomicU64::new(0),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The level of detail this log keeps.
    pub fn mode(&self) -> LogMode {
        self.mode
    }

    /// Requests received so far (in either mode).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A copy of the recorded requests (always empty in `CountOnly` mode).
    pub fn entries(&self) -> Vec<RecordedRequest> {
        lock(&self.entries).clone()
    }

    /// Forgets everything recorded so far, including the count.
    pub fn clear(&self) {
        lock(&self.entries).clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Counts `request` and, in `Full` mode, buffers and stores its body,
    /// handing back an equivalent request. Errors with 413 when the body is
    /// larger than 64 MiB or cannot be read.
    async fn record(&self, request: Request, fault: Option<InjectedFault>) -> Result<Request, Response> {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.mode == LogMode::CountOnly {
            return Ok(request);
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_RECORDED_BODY).await.map_err(|err| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body could not be read: {err}"),
            )
                .into_response()
        })?;
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        lock(&self.entries).push(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body: body.clone(),
            fault,
        });
        Ok(Request::from_parts(parts, Body::from(body)))
    }
}

// ---------------------------------------------------------------------------
// The layer tying faults and the log to a router
// ---------------------------------------------------------------------------

/// The log, the faults and the vendor's fault answers of one simulator.
pub struct SimControl {
    log: RequestLog,
    faults: FaultInjector,
    replies: Box<dyn FaultReplies>,
}

impl SimControl {
    /// Bundles a log and starting faults with the vendor's fault answers.
    pub fn new(faults: Faults, log: RequestLog, replies: impl FaultReplies) -> Self {
        SimControl {
            log,
            faults: FaultInjector::new(faults),
            replies: Box::new(replies),
        }
    }

    /// The request log.
    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// The live fault settings.
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }
}

/// What every simulator's handle offers over its [`SimControl`]: the request log and the
/// live faults. A simulator implements [`control`](Simulator::control); the rest is shared.
pub trait Simulator {
    /// The simulator's log and faults.
    fn control(&self) -> &SimControl;

    /// Every request received, in arrival order (empty when only counts are kept).
    fn requests(&self) -> Vec<RecordedRequest> {
        self.control().log().entries()
    }

    /// Number of requests received (kept in every log mode).
    fn request_count(&self) -> u64 {
        self.control().log().count()
    }

    /// Replaces the faults (reseeding the failure RNG).
    fn set_faults(&self, faults: Faults) {
        self.control().faults().set(faults);
    }

    /// Edits the live faults in place, e.g. `update_faults(|f| f.garble_next = 1)`.
    fn update_faults(&self, edit: impl FnOnce(&mut Faults)) {
        self.control().faults().update(edit);
    }

    /// The live faults, with what is left of `garble_next` and `drop_next`.
    fn faults(&self) -> Faults {
        self.control().faults().current()
    }
}

/// Wraps every route of `router` (and its fallback) with the request log and
/// the fault layer of `control`.
pub fn instrument(router: Router, control: Arc<SimControl>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(control, fault_layer))
}

async fn fault_layer(State(control): State<Arc<SimControl>>, request: Request, next: Next) -> Response {
    let plan = control.faults.decide(request.uri().path());
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let request = match control.log.record(request, plan.fault).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match plan.fault {
        None if !plan.latency_after.is_zero() => {
            let response = next.run(request).await;
            tokio::time::sleep(plan.latency_after).await;
            response
        }
        None => next.run(request).await,
        Some(InjectedFault::Dropped) => {
            // Without the hook from `serve` the connection cannot be severed;
            // the empty 502 below is then what the client sees.
            if let Some(ConnectInfo(tap)) = request.extensions().get::<ConnectInfo<ConnectionTap>>() {
                tap.sever();
            }
            StatusCode::BAD_GATEWAY.into_response()
        }
        Some(InjectedFault::Throttled) => {
            let mut response = control.replies.throttled();
            if let Some(seconds) = plan.retry_after_secs {
                if response.headers().contains_key(header::RETRY_AFTER) {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            response
        }
        Some(InjectedFault::Failed) => control.replies.server_error(),
        Some(InjectedFault::FailedAfterHandling) => {
            let _ = next.run(request).await;
            control.replies.server_error()
        }
        Some(InjectedFault::Garbled) => {
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(control.replies.garble(body)))
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers shared by the simulators
// ---------------------------------------------------------------------------

/// Splits and decodes an `application/x-www-form-urlencoded` query string.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved bytes).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use serde_json::{json, Value};

    fn demo_router(control: &Arc<SimControl>) -> Router {
        let routes = Router::new()
            .route(
                "/hello",
                get(|| async { axum::Json(json!({"hello": "world", "n": [1, 2, 3]})) }),
            )
            .route("/echo", post(|body: Bytes| async move { body }));
        instrument(routes, Arc::clone(control))
    }

    async fn start(faults: Faults, mode: LogMode) -> (Arc<SimControl>, SimHandle) {
        let control = Arc::new(SimControl::new(faults, RequestLog::new(mode), DefaultReplies));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = serve(listener, demo_router(&control)).await.unwrap();
        (control, handle)
    }

    #[tokio::test]
    async fn serves_and_shuts_down() {
        let (_control, handle) = start(Faults::default(), LogMode::Full).await;
        let url = format!("{}/hello", handle.base_url());
        assert!(url.starts_with("http://127.0.0.1:"));
        // The client keeps its idle keep-alive connection open on purpose.
        let client = reqwest::Client::new();
        let body: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["hello"], "world");
        let addr = handle.addr;
        tokio::time::timeout(Duration::from_secs(5), handle.shutdown())
            .await
            .expect("an idle keep-alive connection must not block shutdown");
        assert!(TcpStream::connect(addr).await.is_err());
        assert!(client.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let (_control, handle) = start(Faults::default(), LogMode::Full).await;
        let addr = handle.addr;
        drop(handle);
        let mut refused = false;
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "server still accepting after the handle was dropped");
    }

    #[tokio::test]
    async fn full_log_keeps_method_path_query_headers_and_body() {
        let (control, handle) = start(Faults::default(), LogMode::Full).await;
        let client = reqwest::Client::new();
        client
            .post(format!("{}/echo?a=1&b=x+y%26z", handle.base_url()))
            .header("X-Sign", "abc")
            .body("payload")
            .send()
            .await
            .unwrap();
        let entries = control.log().entries();
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(entry.method, "POST");
        assert_eq!(entry.path, "/echo");
        assert_eq!(entry.query, "a=1&b=x+y%26z");
        assert_eq!(entry.query_param("b").as_deref(), Some("x y&z"));
        assert_eq!(entry.header("x-sign"), Some("abc"));
        assert_eq!(&entry.body[..], b"payload");
        assert_eq!(entry.fault, None);
        assert_eq!(control.log().count(), 1);
    }

    #[tokio::test]
    async fn count_only_log_keeps_no_entries_and_still_serves_bodies() {
        let (control, handle) = start(Faults::default(), LogMode::CountOnly).await;
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let echoed = client
                .post(format!("{}/echo", handle.base_url()))
                .body("abc")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(echoed, "abc");
        }
        assert_eq!(control.log().count(), 3);
        assert!(control.log().entries().is_empty());
        control.log().clear();
        assert_eq!(control.log().count(), 0);
    }

    #[tokio::test]
    async fn default_replies_throttle_and_fail() {
        let faults = Faults {
            rate_limit_per_sec: Some(1),
            ..Faults::default()
        };
        let (control, handle) = start(faults, LogMode::Full).await;
        let url = format!("{}/hello", handle.base_url());
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        let throttled = reqwest::get(&url).await.unwrap();
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()["retry-after"], "1");
        control.faults().set(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 500);
        let faults: Vec<_> = control.log().entries().iter().map(|e| e.fault).collect();
        assert_eq!(
            faults,
            [None, Some(InjectedFault::Throttled), Some(InjectedFault::Failed)]
        );
    }

    #[tokio::test]
    async fn path_prefix_limits_which_requests_are_faulted() {
        let faults = Faults {
            drop_next: 1,
            only_path_prefix: Some("/echo".to_owned()),
            ..Faults::default()
        };
        let (control, handle) = start(faults, LogMode::Full).await;
        let client = reqwest::Client::new();
        let hello = client.get(format!("{}/hello", handle.base_url())).send().await;
        assert_eq!(hello.unwrap().status(), 200);
        assert_eq!(control.faults().current().drop_next, 1);
        let echo = client
            .post(format!("{}/echo", handle.base_url()))
            .body("x")
            .send()
            .await;
        assert!(echo.is_err(), "the /echo request should have been dropped");
        assert_eq!(control.faults().current().drop_next, 0);
    }

    #[test]
    fn garbage_is_never_json() {
        for body in [&b"{\"a\":1}"[..], b"{}", b"", b"[1,2,3]", b"12345678"] {
            let garbled = truncate_to_garbage(Bytes::copy_from_slice(body));
            assert!(
                serde_json::from_slice::<Value>(&garbled).is_err(),
                "{body:?} became valid JSON"
            );
        }
    }

    #[test]
    fn update_keeps_the_rng_sequence_and_set_restarts_it() {
        let faults = Faults {
            fail_rate: 0.5,
            seed: 9,
            ..Faults::default()
        };
        let injector = FaultInjector::new(faults.clone());
        let first: Vec<_> = (0..20).map(|_| injector.decide("/x").fault).collect();
        injector.set(faults);
        let again: Vec<_> = (0..10).map(|_| injector.decide("/x").fault).collect();
        injector.update(|f| f.latency_ms = 5);
        let rest: Vec<_> = (0..10).map(|_| injector.decide("/x").fault).collect();
        assert_eq!(first, [again, rest].concat());
        assert_eq!(injector.decide("/x").latency, Duration::from_millis(5));
    }

    #[test]
    fn query_strings_round_trip() {
        let value = "2024-01-01 00:00:00+08 &=/中";
        let query = format!("k={}&flag", percent_encode(value));
        assert_eq!(
            parse_query(&query),
            [("k".to_owned(), value.to_owned()), ("flag".to_owned(), String::new())]
        );
        assert_eq!(parse_query("a=%zz%4"), [("a".to_owned(), "%zz%4".to_owned())]);
    }
}
