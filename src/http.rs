//! HTTP transport (IO edge): one shared reqwest client (rustls), per-connection timeouts,
//! a response size limit, and retries with exponential backoff and jitter.
//!
//! Who retries: this module, and only calls that are safe to repeat. Reads retry on transport
//! errors, timeouts, 408, 429 (honouring Retry-After) and 5xx. Writes retry only when the peer
//! cannot have acted on them: the connection was refused, or it answered 429; a write that
//! timed out or got a 5xx is reported to the engine instead, which checks it by business-key
//! look-up before sending it again (or files it as uncertain).
//!
//! Rate limits: a connection's `rate` is a token bucket taken before every attempt, kept in
//! process or, with `rate.shared`, in the store so that several processes share it.
//!
//! Reachability: an error of a request that never reached its peer (refused, unresolved,
//! or not connected within [`CONNECT_TIMEOUT`]) carries [`Error::unreachable`], and the
//! client remembers per connection whether any attempt got an answer
//! ([`HttpClient::never_reached`]), so the engine can stop a run whose target is down
//! instead of failing every record.

use crate::error::{Error, ErrorKind};
pub use crate::exchange::{HttpRequest, HttpResponse};
use crate::scheme::model::{ConnectionPlan, RetryPolicy};
use crate::scheme::raw::Method;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Whether a call may be repeated after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads: repeat on any retryable failure.
    Safe,
    /// Writes: repeat only when the peer cannot have acted.
    OnlyIfNotDelivered,
    /// Writes to a target that never acts on a request it answers with 5xx: also those.
    AlsoServerErrors,
}

/// The pause before attempt `attempt + 1` (pure). `jitter` in [0, 1) spreads clients apart.
pub fn backoff_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    // Retry-After is honoured as given, even beyond max_backoff.
    if let Some(wait) = retry_after {
        return wait;
    }
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let base = policy.backoff.saturating_mul(factor).min(policy.max_backoff);
    // Equal jitter: half fixed, half random.
    base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Whether `error` may be retried under `repeat` (pure).
pub fn should_retry(error: &Error, repeat: Repeat, delivered: bool) -> bool {
    match repeat {
        Repeat::Safe => error.is_retryable(),
        Repeat::OnlyIfNotDelivered => {
            matches!(error.kind, ErrorKind::Throttled | ErrorKind::Status(429))
                || (!delivered && error.kind == ErrorKind::Transport)
        }
        Repeat::AlsoServerErrors => {
            should_retry(error, Repeat::OnlyIfNotDelivered, delivered)
                || matches!(error.kind, ErrorKind::Status(code) if code >= 500)
        }
    }
}

/// How long connecting (TCP and TLS) may take before the peer counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one connection's attempts showed: whether any got an answer, and the last error of
/// one that never reached the peer.
#[derive(Default)]
struct Reach {
    answered: bool,
    unreachable: Option<String>,
}

/// The shared client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    /// Token buckets of connections with a process-local `rate`, by connection name.
    local_budgets: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (f64, i64)>>>,
    /// Where `rate.shared` budgets live.
    shared_budgets: Option<std::sync::Arc<dyn SharedBudgets>>,
    /// Per connection name: what its attempts showed (see [`HttpClient::never_reached`]).
    reach: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Reach>>>,
}

/// Where `rate.shared` budgets live; the engine hands the store in.
pub trait SharedBudgets: Send + Sync {
    /// Takes one request from budget `name`; returns how long to wait before sending it.
    fn take<'a>(
        &'a self,
        name: &'a str,
        per_second: f64,
        burst: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Duration, Error>> + Send + 'a>>;
}

/// Why one attempt failed.
struct Failed {
    error: Error,
    /// The request may have reached the peer.
    delivered: bool,
    /// The peer's Retry-After, if it sent one.
    retry_after: Option<Duration>,
}

impl Failed {
    fn new(error: Error, delivered: bool) -> Failed {
        Failed {
            error,
            delivered,
            retry_after: None,
        }
    }
}

fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // The HTTP-date form.
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

impl HttpClient {
    pub fn new() -> Result<HttpClient, Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            local_budgets: Default::default(),
            shared_budgets: None,
            reach: Default::default(),
        })
    }

    /// This client with its own record of which connections answered (one per run).
    pub fn with_fresh_reach(mut self) -> HttpClient {
        self.reach = Default::default();
        self
    }

    /// When no attempt on `connection` got an answer and at least one never reached the
    /// peer: that attempt's error message.
    pub fn never_reached(&self, connection: &str) -> Option<String> {
        let reach = self.reach.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = reach.get(connection)?;
        if seen.answered {
            return None;
        }
        seen.unreachable.clone()
    }

    fn note_reach(&self, connection: &str, outcome: Result<(), &Error>) {
        let mut reach = self.reach.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = reach.entry(connection.to_string()).or_default();
        match outcome {
            Ok(()) => seen.answered = true,
            Err(error) => seen.unreachable = Some(error.message.clone()),
        }
    }

    /// This client, keeping `rate.shared` budgets in `budgets` (the store).
    pub fn with_shared_budgets(mut self, budgets: std::sync::Arc<dyn SharedBudgets>) -> HttpClient {
        self.shared_budgets = Some(budgets);
        self
    }

    /// Waits until the connection's rate budget allows one more request.
    async fn take_budget(&self, conn: &ConnectionPlan) -> Result<(), Error> {
        let Some(rate) = &conn.rate else {
            return Ok(());
        };
        let wait = match (&rate.shared, &self.shared_budgets) {
            (Some(name), Some(budgets)) => budgets.take(name, rate.per_second, rate.burst).await?,
            _ => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let mut buckets = self
                    .local_budgets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let bucket = buckets
                    .entry(conn.name.clone())
                    .or_insert((f64::from(rate.burst), now_ms));
                let tokens = crate::rate::take(bucket.0, bucket.1, now_ms, rate.per_second, rate.burst);
                *bucket = (tokens, bucket.1.max(now_ms));
                crate::rate::wait_for(tokens, rate.per_second)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// One attempt. Returns the error and whether the request may have reached the peer.
    async fn attempt(&self, conn: &ConnectionPlan, request: &HttpRequest) -> Result<HttpResponse, Failed> {
        self.take_budget(conn).await.map_err(|e| Failed::new(e, false))?;
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.client.request(method, &request.url).timeout(conn.timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(|e| {
            // reqwest names the full URL, query (and credentials) included: drop it.
            let e = e.without_url();
            let delivered = !e.is_connect();
            let kind = if e.is_timeout() { "timed out" } else { "failed" };
            Failed::new(
                Error::transport(format!(
                    "{} {} {kind}: {}",
                    request.method.as_str(),
                    strip_query(&request.url),
                    error_chain(&e)
                )),
                delivered,
            )
        })?;
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if let Some(length) = response.content_length() {
            if length as usize > conn.max_response_bytes {
                return Err(Failed::new(too_big(conn, request), true));
            }
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > conn.max_response_bytes {
                        return Err(Failed::new(too_big(conn, request), true));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let e = e.without_url();
                    return Err(Failed::new(
                        Error::transport(format!(
                            "reading the answer to {} {} failed: {}",
                            request.method.as_str(),
                            strip_query(&request.url),
                            error_chain(&e)
                        )),
                        true,
                    ));
                }
            }
        }
        let body = Bytes::from(body);
        if status == 429 {
            return Err(Failed {
                error: Error::new(
                    ErrorKind::Throttled,
                    format!("{} answered 429 Too Many Requests", strip_query(&request.url)),
                ),
                delivered: true,
                retry_after,
            });
        }
        if status >= 400 {
            let preview: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(Failed::new(
                Error::new(
                    ErrorKind::Status(status),
                    format!(
                        "{} {} answered HTTP {status}: {preview}",
                        request.method.as_str(),
                        strip_query(&request.url)
                    ),
                ),
                true,
            ));
        }
        Ok(HttpResponse {
            status,
            body,
            retry_after,
            set_cookies,
        })
    }

    /// Sends with the connection's retry policy. Returns the response and the attempts made.
    pub async fn send(
        &self,
        conn: &ConnectionPlan,
        request: &HttpRequest,
        repeat: Repeat,
    ) -> Result<(HttpResponse, u32), Error> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(conn, request).await;
            match &outcome {
                Ok(_) => self.note_reach(&conn.name, Ok(())),
                Err(failed) if failed.delivered => self.note_reach(&conn.name, Ok(())),
                Err(failed) if failed.error.kind == ErrorKind::Transport => {
                    self.note_reach(&conn.name, Err(&failed.error))
                }
                Err(_) => {}
            }
            match outcome {
                Ok(response) => return Ok((response, attempt)),
                Err(Failed {
                    error,
                    delivered,
                    retry_after,
                }) => {
                    let out_of_time = started.elapsed() >= conn.retry.max_elapsed;
                    if attempt >= conn.retry.attempts || out_of_time || !should_retry(&error, repeat, delivered) {
                        let suffix = if attempt > 1 {
                            format!(" (after {attempt} attempts)")
                        } else {
                            String::new()
                        };
                        let unreachable = !delivered && error.kind == ErrorKind::Transport;
                        return Err(Error {
                            unreachable,
                            ..Error::new(error.kind, format!("{}{suffix}", error.message))
                        });
                    }
                    let delay = backoff_delay(&conn.retry, attempt, retry_after, rand::random::<f64>());
                    tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

fn too_big(conn: &ConnectionPlan, request: &HttpRequest) -> Error {
    Error::decode(format!(
        "the answer to {} {} is larger than {} MiB; raise connections.{}.max_response_mib or request smaller pages",
        request.method.as_str(),
        strip_query(&request.url),
        conn.max_response_bytes / (1024 * 1024),
        conn.name
    ))
}

/// Drops the query string, which may carry credentials or signatures.
pub fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_elapsed: Duration::from_secs(5),
        };
        assert_eq!(backoff_delay(&policy, 1, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(&policy, 2, None, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&policy, 5, None, 1.0), Duration::from_millis(350));
        assert_eq!(
            backoff_delay(&policy, 1, Some(Duration::from_secs(1)), 0.5),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn writes_are_not_retried_blindly() {
        let server_error = Error::new(ErrorKind::Status(502), "bad gateway");
        assert!(should_retry(&server_error, Repeat::Safe, true));
        assert!(!should_retry(&server_error, Repeat::OnlyIfNotDelivered, true));
        let refused = Error::transport("connection refused");
        assert!(should_retry(&refused, Repeat::OnlyIfNotDelivered, false));
        assert!(!should_retry(&refused, Repeat::OnlyIfNotDelivered, true));
        assert!(should_retry(
            &Error::new(ErrorKind::Throttled, "slow down"),
            Repeat::OnlyIfNotDelivered,
            true
        ));
    }
}
