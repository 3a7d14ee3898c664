//! Calls to built-in vendor connectors: login when a session is needed, sign and send,
//! judge the answer by the vendor's envelope, log in again once on an expired session,
//! and back off and retry when the vendor throttles.

use super::RunContext;
use crate::protocol::vendor::{verdict_error, Session, Vendor};
use crate::exchange::wire_to_http;
use crate::error::{Error, ErrorKind};
use crate::http::{backoff_delay, HttpResponse, Repeat};
use crate::scheme::model::ConnectionPlan;
use crate::template::Scope;
use chrono::Utc;
use serde_json::Value;

/// Sessions of the run's connections, by connection name.
pub(crate) type Sessions = tokio::sync::Mutex<std::collections::HashMap<String, Session>>;

fn decode_answer(response: &HttpResponse) -> Result<Value, Error> {
    crate::codec::Codec::Json
        .decode(&response.body)
        .map_err(|e| Error::decode(format!("the answer could not be read: {e}")))
}

async fn session_for(ctx: &RunContext, conn: &ConnectionPlan) -> Result<Option<Session>, Error> {
    let mut sessions = ctx.sessions.lock().await;
    if let Some(session) = sessions.get(&conn.name) {
        return Ok(Some(session.clone()));
    }
    let Some(session) = login(ctx, conn).await? else {
        return Ok(None);
    };
    sessions.insert(conn.name.clone(), session.clone());
    Ok(Some(session))
}

/// Sends one login step and decodes its answer.
async fn exchange(
    ctx: &RunContext,
    conn: &ConnectionPlan,
    wire: crate::protocol::WireRequest,
) -> Result<(HttpResponse, Value), Error> {
    let request = wire_to_http(conn, wire, &Scope::default())?;
    let (response, _) = ctx.http.send(conn, &request, Repeat::Safe).await?;
    let body = decode_answer(&response)?;
    Ok((response, body))
}

fn login_failed(vendor: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::new(ErrorKind::SessionExpired, format!("{vendor}: login failed: {e}"))
}

/// Logs in (one or more steps) for vendors with sessions or tokens.
async fn login(ctx: &RunContext, conn: &ConnectionPlan) -> Result<Option<Session>, Error> {
    use crate::protocol::{fxiaoke, jdy, simply};
    let base = conn.base_url.as_str();
    let now = Utc::now();
    let nonce = || rand::random::<u32>() as u64 + 1;
    match &conn.vendor {
        Vendor::K3Cloud(_) => {
            let Some(wire) = conn.vendor.login_request(base, now)? else {
                return Ok(None);
            };
            let (response, body) = exchange(ctx, conn, wire).await?;
            let cookies: Vec<&str> = response.set_cookies.iter().map(String::as_str).collect();
            conn.vendor.session_from_login(&body, &cookies).map(Some)
        }
        Vendor::Jdy(s) => {
            let fail = login_failed(jdy::NAME);
            if s.generation() == jdy::Generation::V1 {
                let (_, body) = exchange(ctx, conn, jdy::request::v1_token_request(s, base).map_err(&fail)?).await?;
                return jdy::request::parse_v1_token(s, &body, now)
                    .map(|t| Some(Session::Jdy(t)))
                    .map_err(fail);
            }
            let authorization = match jdy::request::authorization_from_settings(s) {
                Some(found) => found,
                None => {
                    let wire = jdy::request::authorize_request(s, base, now, nonce()).map_err(&fail)?;
                    let (_, body) = exchange(ctx, conn, wire).await?;
                    jdy::request::parse_authorize(s, &body).map_err(&fail)?
                }
            };
            let wire = jdy::request::token_request(s, base, &authorization, now, nonce()).map_err(&fail)?;
            let (_, body) = exchange(ctx, conn, wire).await?;
            jdy::request::parse_token(s, &authorization, &body, now)
                .map(|t| Some(Session::Jdy(t)))
                .map_err(fail)
        }
        Vendor::Simply(s) => {
            let fail = login_failed(simply::NAME);
            let (_, body) = exchange(ctx, conn, simply::request::challenge_request(s, base)).await?;
            let challenge = simply::request::parse_challenge(&body).map_err(&fail)?;
            let (_, body) = exchange(ctx, conn, simply::request::login_request(s, base, &challenge)).await?;
            simply::request::parse_login(&body)
                .map(|v| Some(Session::Simply(v)))
                .map_err(fail)
        }
        Vendor::Fxiaoke(s) => {
            let fail = login_failed(fxiaoke::NAME);
            let wire = fxiaoke::sign::token_request(s, base, rand::random::<u128>()).map_err(&fail)?;
            let (_, body) = exchange(ctx, conn, wire).await?;
            fxiaoke::sign::parse_token(&body, now)
                .map(|t| Some(Session::Fxiaoke(t)))
                .map_err(fail)
        }
        _ => Ok(None),
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
    let vendor: &Vendor = &conn.vendor;
    let mut logged_in_again = false;
    let mut attempt = 0u32;
    let mut requests = 0u32;
    loop {
        attempt += 1;
        let session = session_for(ctx, conn).await?;
        let wire = vendor.build(&conn.base_url, api, params, session.as_ref(), Utc::now(), write)?;
        let request = wire_to_http(conn, wire, &Scope::default())?;
        let (response, sent) = ctx.http.send(conn, &request, repeat).await?;
        requests += sent;
        let body = decode_answer(&response)?;
        match verdict_error(vendor, api, vendor.classify(response.status, &body)) {
            None => return Ok((response, body, requests)),
            // A refused write may still say which rows it refused (K3Cloud's Errors by
            // DIndex): the caller splits the answer per row.
            Some(e) if write && e.kind == ErrorKind::Envelope && vendor.row_outcomes(api, &body, 1).is_some() => {
                return Ok((response, body, requests))
            }
            Some(e) if e.kind == ErrorKind::SessionExpired && !logged_in_again => {
                tracing::info!(connection = %conn.name, "session expired; logging in again");
                ctx.sessions.lock().await.remove(&conn.name);
                logged_in_again = true;
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
