//! The one server `ferry test` puts in front of each connection of a scheme, on
//! 127.0.0.1 port 0: in replay mode it answers from the test file's exchanges and checks
//! each request against them (and its signature with the simulators' own check); in record
//! mode it forwards to a built-in simulator and writes down what went by.

use super::format::{Exchange, FaultKind, FaultSpec, ResponseSpec};
use super::matching::{self, RequestShape};
use crate::sim::signatures::Verifier;
use crate::sim::{self, RecordedRequest, SimHandle};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What one run's servers share: the exchanges (used or not), the faults, and every problem.
#[derive(Default)]
pub struct Ledger {
    pub exchanges: Vec<Exchange>,
    used: Vec<bool>,
    faults: Vec<FaultSpec>,
    requests_per_connection: HashMap<String, usize>,
    /// What did not match, one message each.
    pub problems: Vec<String>,
    /// Record mode: the exchanges seen, in arrival order.
    pub recorded: Vec<Exchange>,
    /// Replay mode: the clock of the run when it was recorded.
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Ledger {
    /// Starts a run: these exchanges and faults, nothing used, no problems.
    pub fn start_run(
        &mut self,
        exchanges: Vec<Exchange>,
        faults: Vec<FaultSpec>,
        recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.recorded_at = recorded_at;
        self.used = vec![false; exchanges.len()];
        self.exchanges = exchanges;
        self.faults = faults;
        self.requests_per_connection.clear();
        self.problems.clear();
        self.recorded.clear();
    }

    /// The recorded exchanges no request used.
    pub fn unused(&self) -> Vec<&Exchange> {
        self.exchanges
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(exchange, _)| exchange)
            .collect()
    }
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

pub fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Replay answers from the ledger; record forwards to `upstream` (an origin, `http://ip:port`).
pub enum Mode {
    Replay {
        volatile: Vec<String>,
        verifier: Option<Verifier>,
        /// Answer fields holding an absolute expiry in epoch ms, moved to the replay's clock.
        expiry_fields: &'static [&'static str],
    },
    Record {
        upstream: String,
        client: reqwest::Client,
    },
}

struct Connection {
    name: String,
    /// The path of the connection's base URL (no trailing `/`); request paths are kept relative to it.
    base_path: String,
    mode: Mode,
    ledger: SharedLedger,
}

/// Serves connection `name` whose base URL has path `base_path`.
pub async fn start(name: &str, base_path: &str, mode: Mode, ledger: SharedLedger) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let connection = Arc::new(Connection {
        name: name.to_string(),
        base_path: base_path.trim_end_matches('/').to_string(),
        mode,
        ledger,
    });
    let router = Router::new().fallback(answer).with_state(connection);
    sim::serve(listener, router).await
}

const MAX_BODY: usize = 64 * 1024 * 1024;

async fn answer(State(connection): State<Arc<Connection>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let full_path = parts.uri.path().to_string();
    let relative = full_path
        .strip_prefix(&connection.base_path)
        .unwrap_or(&full_path)
        .to_string();
    let relative = if relative.is_empty() { "/".to_string() } else { relative };
    let query = parts.uri.query().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let shape = RequestShape::from_parts(parts.method.as_str(), &relative, &query, content_type.as_deref(), &body);
    match &connection.mode {
        Mode::Record { upstream, client } => {
            record(&connection, upstream, client, &parts, &full_path, &query, body, shape).await
        }
        Mode::Replay {
            volatile,
            verifier,
            expiry_fields,
        } => {
            let received = RecordedRequest {
                method: parts.method.as_str().to_string(),
                path: full_path,
                query,
                headers,
                body,
                fault: None,
            };
            replay(
                &connection,
                volatile,
                verifier.as_ref(),
                expiry_fields,
                shape,
                &received,
            )
            .await
        }
    }
}

async fn replay(
    connection: &Connection,
    volatile: &[String],
    verifier: Option<&Verifier>,
    expiry_fields: &[&str],
    shape: RequestShape,
    received: &RecordedRequest,
) -> Response {
    let (fault, mut chosen, recorded_at) = {
        let mut ledger = connection.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let count = ledger
            .requests_per_connection
            .entry(connection.name.clone())
            .or_default();
        *count += 1;
        let count = *count;
        let fault = ledger
            .faults
            .iter()
            .find(|f| f.connection == connection.name && f.request == count)
            .map(|f| f.kind);
        let recorded_at = ledger.recorded_at;
        match fault {
            Some(FaultKind::ServerError) => return fault_answer(503, "injected fault: server error"),
            Some(FaultKind::Throttle) => {
                let mut response = fault_answer(429, "injected fault: throttled");
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                return response;
            }
            Some(FaultKind::Timeout) => (fault, None, recorded_at),
            _ => (fault, choose(&mut ledger, connection, volatile, &shape), recorded_at),
        }
    };
    if let (Some(response), Some(recorded_at)) = (chosen.as_mut(), recorded_at) {
        if let Some(body) = response.body.as_mut() {
            move_expiries(body, expiry_fields, recorded_at, chrono::Utc::now());
        }
    }
    if fault == Some(FaultKind::Timeout) {
        // Never answer (no exchange is used): the client's timeout ends the request.
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        return fault_answer(504, "injected fault: timeout");
    }
    if let Some(verify) = verifier {
        if let Err(problem) = verify(received) {
            lock_push(
                connection,
                format!("{} {}: signature: {problem}", connection.name, shape.headline()),
            );
        }
    }
    match chosen {
        Some(response) if fault == Some(FaultKind::CrashAfterWrite) => {
            let mut answer = respond(&response);
            *answer.body_mut() = Body::from("{\"cut short");
            answer
        }
        Some(response) => respond(&response),
        None => fault_answer(
            400,
            "ferry test: no recorded exchange matches this request (see the test's report)",
        ),
    }
}

/// Moves each epoch-ms expiry at `fields` (dotted paths into the answer) by the time between
/// the recording's clock and the replay's.
pub fn move_expiries(
    body: &mut serde_json::Value,
    fields: &[&str],
    recorded_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let shift = (now - recorded_at).num_milliseconds();
    for field in fields {
        let pointer = format!("/{}", field.replace('.', "/"));
        if let Some(value) = body.pointer_mut(&pointer) {
            if let Some(millis) = value.as_i64() {
                *value = serde_json::Value::from(millis.saturating_add(shift));
            }
        }
    }
}

fn lock_push(connection: &Connection, problem: String) {
    connection
        .ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .problems
        .push(problem);
}

/// The answer for `shape`: the first unused exchange of this connection that matches; else
/// the first unused one with the same method and path (its difference is a problem, and its
/// answer keeps the run going so later differences show too); else none.
fn choose(
    ledger: &mut Ledger,
    connection: &Connection,
    volatile: &[String],
    shape: &RequestShape,
) -> Option<ResponseSpec> {
    let candidates: Vec<usize> = (0..ledger.exchanges.len())
        .filter(|&i| !ledger.used[i] && ledger.exchanges[i].connection == connection.name)
        .collect();
    if let Some(&i) = candidates
        .iter()
        .find(|&&i| matching::differences(&ledger.exchanges[i].request, shape, volatile).is_empty())
    {
        ledger.used[i] = true;
        return Some(ledger.exchanges[i].response.clone());
    }
    let similar = candidates.iter().copied().find(|&i| {
        let recorded = &ledger.exchanges[i].request;
        recorded.method.eq_ignore_ascii_case(&shape.method) && recorded.path == shape.path
    });
    match similar {
        Some(i) => {
            ledger.used[i] = true;
            let lines = matching::differences(&ledger.exchanges[i].request, shape, volatile);
            let mut problem = format!(
                "{} {}: the request differs from the recording:",
                connection.name,
                shape.headline()
            );
            for line in lines {
                problem.push_str(&format!("\n    {line}"));
            }
            ledger.problems.push(problem);
            Some(ledger.exchanges[i].response.clone())
        }
        None => {
            let body = shape
                .body
                .as_ref()
                .map(|b| format!(" {}", truncate(&b.to_string())))
                .unwrap_or_default();
            ledger.problems.push(format!(
                "{} {}: not in the recording (an extra request){body}",
                connection.name,
                shape.headline()
            ));
            None
        }
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

fn fault_answer(status: u16, text: &'static str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
    )
        .into_response()
}

/// The HTTP answer of a recorded response.
pub fn respond(spec: &ResponseSpec) -> Response {
    let body = match (&spec.body, &spec.text) {
        (Some(json), _) => json.to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &spec.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    if !spec.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) && spec.body.is_some() {
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    response
}

/// Response headers worth keeping in a recording.
const KEPT_HEADERS: &[&str] = &["content-type", "set-cookie", "retry-after"];

#[allow(clippy::too_many_arguments)]
async fn record(
    connection: &Connection,
    upstream: &str,
    client: &reqwest::Client,
    parts: &axum::http::request::Parts,
    full_path: &str,
    query: &str,
    body: Bytes,
    shape: RequestShape,
) -> Response {
    let url = if query.is_empty() {
        format!("{upstream}{full_path}")
    } else {
        format!("{upstream}{full_path}?{query}")
    };
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut forwarded = client.request(method, &url).body(body.to_vec());
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            forwarded = forwarded.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match forwarded.send().await {
        Ok(answer) => answer,
        Err(e) => return fault_answer_owned(502, format!("ferry test --record: the simulator did not answer: {e}")),
    };
    let status = answer.status().as_u16();
    let mut headers = std::collections::BTreeMap::new();
    for (name, value) in answer.headers() {
        if KEPT_HEADERS.contains(&name.as_str()) {
            headers.insert(
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let (json, text) = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(json) if !bytes.is_empty() => (Some(json), None),
        _ if bytes.is_empty() => (None, None),
        _ => (None, Some(String::from_utf8_lossy(&bytes).into_owned())),
    };
    let response = ResponseSpec {
        status,
        headers,
        body: json,
        text,
    };
    // The replay answers with the parsed JSON; the client gets the same bytes now.
    let mut reply = respond(&response);
    *reply.body_mut() = Body::from(bytes);
    connection
        .ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .recorded
        .push(Exchange {
            connection: connection.name.clone(),
            request: shape,
            response,
        });
    reply
}

fn fault_answer_owned(status: u16, text: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiries_move_with_the_clock_and_nothing_else_does() {
        let recorded_at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let a_year_later = recorded_at + chrono::Duration::days(365);
        let day_ms = 86_400_000_i64;
        let mut body = json!({"data": {"expires": 1_800_000_000_000_i64 + day_ms, "other": 5}});
        move_expiries(&mut body, &["data.expires"], recorded_at, a_year_later);
        assert_eq!(body["data"]["expires"], json!(a_year_later.timestamp_millis() + day_ms));
        assert_eq!(body["data"]["other"], 5);
    }
}
