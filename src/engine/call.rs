//! Calls through a vendor protocol: log in when the protocol needs a session, sign and
//! send, judge the answer by the vendor's envelope, log in again once on an expired
//! session, and back off and retry when the vendor throttles.
//!
//! Promises:
//! - Every vendor logs in through [`login`], which sends the steps its
//!   [`Protocol::login`](crate::protocol::Protocol::login) names; no vendor code here.
//! - Logins are single-flight per connection: requests that need a session while one is
//!   being fetched wait for it and share it, and a session the vendor calls expired is
//!   replaced once, however many requests in flight met the expiry (vtiger keeps one live
//!   challenge per user; the jdy and Fxiaoke token endpoints are rate-limited, reference
//!   §3, §5, §6).
//! - A session with a lifetime is renewed before it runs out (`Session::renew_at`).

use super::context::RunContext;
use crate::error::{Error, ErrorKind};
use crate::exchange::wire_to_http;
use crate::http::{backoff_delay, HttpResponse, Repeat};
use crate::protocol::{verdict_error, Answer, Call, LoginStep, Session};
use crate::scheme::model::ConnectionPlan;
use crate::template::Scope;
use chrono::Utc;
use serde_json::Value;

/// Most requests one login may take; a protocol asking for more is broken.
const MAX_LOGIN_STEPS: usize = 8;

fn decode_answer(response: &HttpResponse) -> Result<Value, Error> {
    crate::codec::Codec::Json
        .decode(&response.body)
        .map_err(|e| Error::decode(format!("the answer could not be read: {e}")))
}

/// Runs the protocol's login: sends each step it names until it has a session.
async fn login(ctx: &RunContext, conn: &ConnectionPlan) -> Result<Option<Session>, Error> {
    let protocol = conn.protocol.as_ref();
    let failed = |e: String| {
        Error::new(
            ErrorKind::SessionExpired,
            format!("{}: login failed: {e}", protocol.name()),
        )
    };
    let now = Utc::now();
    let mut answers: Vec<Answer> = Vec::new();
    loop {
        if answers.len() > MAX_LOGIN_STEPS {
            return Err(failed(format!("no session after {MAX_LOGIN_STEPS} requests")));
        }
        let step = protocol
            .login(&conn.base_url, &answers, now, rand::random::<u128>())
            .map_err(failed)?;
        let wire = match step {
            None => return Ok(None),
            Some(LoginStep::Done(session)) => return Ok(Some(session)),
            Some(LoginStep::Send(wire)) => wire,
        };
        let request = wire_to_http(conn, wire, &Scope::default())?;
        let (response, _) = ctx.http.send(conn, &request, Repeat::Safe).await?;
        let body = decode_answer(&response)?;
        answers.push(Answer {
            status: response.status,
            body,
            set_cookies: response.set_cookies.clone(),
        });
    }
}

/// Calls `api` with `params` on a vendor connection; returns the answer and its JSON body.
/// A call that may not be repeated freely is a write (jdy builds reads and writes to one
/// path differently).
pub(crate) async fn call(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    api: &str,
    params: &Value,
    repeat: Repeat,
) -> Result<(HttpResponse, Value, u32), Error> {
    call_as(ctx, conn, api, params, repeat, repeat != Repeat::Safe).await
}

/// A write through a vendor connection, however freely it may be repeated.
pub(crate) async fn call_write(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    api: &str,
    params: &Value,
    repeat: Repeat,
) -> Result<(HttpResponse, Value, u32), Error> {
    call_as(ctx, conn, api, params, repeat, true).await
}

async fn call_as(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    api: &str,
    params: &Value,
    repeat: Repeat,
    write: bool,
) -> Result<(HttpResponse, Value, u32), Error> {
    let protocol = conn.protocol.as_ref();
    let mut expired: Option<u64> = None;
    let mut attempt = 0u32;
    let mut requests = 0u32;
    loop {
        attempt += 1;
        let held = ctx
            .sessions
            .get_or_login(&conn.name, expired, || login(ctx, conn))
            .await?;
        let wire = protocol
            .build(&Call {
                base_url: &conn.base_url,
                api,
                params,
                session: held.as_ref().map(|h| &h.session),
                now: Utc::now(),
                nonce: rand::random::<u128>(),
                write,
            })
            .map_err(|e| Error::config(format!("{}: {e}", protocol.name())))?;
        let request = wire_to_http(conn, wire, &Scope::default())?;
        let (response, sent) = ctx.http.send(conn, &request, repeat).await?;
        requests += sent;
        let body = decode_answer(&response)?;
        match verdict_error(protocol, api, protocol.classify(response.status, &body)) {
            None => return Ok((response, body, requests)),
            // A refused write may still say which rows it refused (K3Cloud's Errors by
            // DIndex): the caller splits the answer per row.
            Some(e) if write && e.kind == ErrorKind::Envelope && protocol.row_outcomes(api, &body, 1).is_some() => {
                return Ok((response, body, requests))
            }
            // Once per call: a session refused twice is not a stale session.
            Some(e) if e.kind == ErrorKind::SessionExpired && expired.is_none() => {
                expired = Some(held.map_or(0, |h| h.login));
            }
            Some(e) if e.kind == ErrorKind::Throttled && attempt < conn.retry.attempts => {
                let delay = backoff_delay(&conn.retry, attempt, response.retry_after, rand::random::<f64>());
                tracing::debug!(connection = %conn.name, delay_ms = delay.as_millis() as u64, "throttled; backing off");
                tokio::time::sleep(delay).await;
            }
            Some(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::context::Sessions;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A login that takes a while, counting how often it ran.
    async fn slow_login(count: &AtomicU32) -> Result<Option<Session>, Error> {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(Some(Session::new(n, None)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_meeting_an_expired_session_together_share_one_new_login() {
        let sessions = Arc::new(Sessions::default());
        let count = Arc::new(AtomicU32::new(0));
        let first = sessions
            .get_or_login("erp", None, || slow_login(&count))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // Eight calls in flight are all refused with the first session at once.
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let (sessions, count) = (sessions.clone(), count.clone());
                tokio::spawn(async move {
                    sessions
                        .get_or_login("erp", Some(first.login), || slow_login(&count))
                        .await
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let mut renewed = Vec::new();
        for waiter in waiters {
            renewed.push(waiter.await.unwrap());
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "one login replaced the expired session"
        );
        assert!(renewed
            .iter()
            .all(|h| h.login == renewed[0].login && h.login != first.login));
        assert_eq!(renewed[0].session.get::<u32>(), Some(&2));

        // Another connection logs in on its own.
        sessions.get_or_login("crm", None, || slow_login(&count)).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_session_due_for_renewal_is_replaced_before_use() {
        let sessions = Sessions::default();
        let count = AtomicU32::new(0);
        let due = || async {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(Some(Session::new((), Some(Utc::now() - chrono::Duration::seconds(1)))))
        };
        sessions.get_or_login("erp", None, due).await.unwrap();
        sessions.get_or_login("erp", None, due).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        let none = sessions
            .get_or_login("plain", None, || async { Ok(None) })
            .await
            .unwrap();
        assert!(none.is_none(), "a protocol without login gets no session");
    }
}
