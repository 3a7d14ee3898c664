//! Pure request builders and login parsers for jdy.
//!
//! Owns: the URL, headers and body of every jdy call (v2 gateway and legacy v1), the token
//! flow's parsers, the [`Session`] they produce, and the list → detail step. Promises:
//! * the signature covers exactly the method, path and query put on the wire (the same
//!   sorted pairs feed both);
//! * a read never asks for more than [`Settings::page_size_cap`] rows (`page_size` in v2,
//!   `pagesize` in v1 are clamped, whatever the scheme says);
//! * secrets never reach `Debug` output.
//!
//! `api` names a resource relative to the generation's root: `scm/pur_inbound` is
//! `/jdy/v2/scm/pur_inbound` in v2, `pur/pur_inbound_list` is `/jdy/pur/pur_inbound_list` in
//! v1. An `api` starting with `/` is used as the path unchanged.
//!
//! v2 list filters travel as query parameters (the official curl examples do this; one
//! generated SDK puts them in a GET body, which is rejected here). A JSON array value is sent
//! as comma-joined text, an inference since no source shows array filters on the wire.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::sign::{self, GatewayCall};
use super::{Generation, ModifyTimeFormat, Settings};
use crate::protocol::types::{Verdict, WireRequest};

/// `push_app_authorize`: pulls the tenant's authorization (v2 step 1).
pub const AUTHORIZE_PATH: &str = "/jdyconnector/app_management/push_app_authorize";
/// `kingdee_auth_token`: exchanges appKey + app_signature for an app-token (v2 step 2).
pub const TOKEN_PATH: &str = "/jdyconnector/app_management/kingdee_auth_token";
/// v1 token endpoint.
pub const V1_TOKEN_PATH: &str = "/auth/user/access_token";
/// v1 account-group listing.
pub const V1_ACCOUNT_GROUPS_PATH: &str = "/jdy/sys/accountGroup";
/// Root of v2 business paths.
pub const V2_ROOT: &str = "/jdy/v2/";
/// Root of v1 business paths.
pub const V1_ROOT: &str = "/jdy/";

/// One authorization returned by `push_app_authorize`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppAuthorization {
    pub app_key: String,
    pub app_secret: String,
    /// The tenant's domain, sent as `X-GW-Router-Addr`.
    pub domain: String,
    pub account_id: Option<String>,
    pub group_name: Option<String>,
    pub service_id: Option<String>,
    /// 1 = authorized.
    pub status: Option<i64>,
}

impl std::fmt::Debug for AppAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuthorization")
            .field("app_key", &self.app_key)
            .field("app_secret", &"***")
            .field("domain", &self.domain)
            .field("account_id", &self.account_id)
            .field("group_name", &self.group_name)
            .field("service_id", &self.service_id)
            .field("status", &self.status)
            .finish()
    }
}

/// A logged-in connection: the v2 app-token (or v1 access_token) and where to send calls.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub generation: Generation,
    /// v2 `app-token` header, or v1 `access_token` query parameter.
    pub token: String,
    /// v2 `X-GW-Router-Addr` (the tenant's domain).
    pub router_addr: Option<String>,
    /// v1 `accountId` header (informational in v2).
    pub account_id: Option<String>,
    /// v1 `groupName` header (informational in v2).
    pub group_name: Option<String>,
    /// The expiry the server announced, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// When to fetch a new token: the earlier of expiry minus the margin and the max age.
    pub refresh_at: DateTime<Utc>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("generation", &self.generation)
            .field("token", &"***")
            .field("router_addr", &self.router_addr)
            .field("account_id", &self.account_id)
            .field("group_name", &self.group_name)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

impl Session {
    /// True once the cached token should be replaced before the next call.
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        now >= self.refresh_at
    }
}

// ---------------------------------------------------------------------------
// Paths, parameters and the shared gateway step
// ---------------------------------------------------------------------------

/// The URL path of `api` for `generation`.
pub fn api_path(generation: Generation, api: &str) -> String {
    if api.starts_with('/') {
        return api.to_owned();
    }
    let root = match generation {
        Generation::V2 => V2_ROOT,
        Generation::V1 => V1_ROOT,
    };
    format!("{root}{}", api.trim_start_matches('/'))
}

fn join(base_url: &str, path: &str, query: &str) -> String {
    let mut url = format!("{}{path}", base_url.trim_end_matches('/'));
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn timestamp_ms(now: DateTime<Utc>) -> i64 {
    now.timestamp_millis()
}

/// Text of a scalar parameter value; `None` for null.
fn param_text(key: &str, value: &Value) -> Result<Option<String>, String> {
    Ok(match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match param_text(key, item)? {
                    Some(text) if !matches!(item, Value::Array(_) | Value::Object(_)) => parts.push(text),
                    Some(_) => return Err(format!("query parameter {key}: arrays may hold only scalars")),
                    None => {}
                }
            }
            Some(parts.join(","))
        }
        Value::Object(_) => {
            return Err(format!(
                "query parameter {key} is an object; jdy list filters are scalars or arrays of scalars"
            ))
        }
    })
}

/// Flattens a params object into query pairs (nulls dropped).
pub fn query_pairs(params: &Value) -> Result<Vec<(String, String)>, String> {
    match params {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (key, value) in map {
                if let Some(text) = param_text(key, value)? {
                    pairs.push((key.clone(), text));
                }
            }
            Ok(pairs)
        }
        other => Err(format!("request params must be a JSON object, got {other}")),
    }
}

/// Clamps a page-size parameter in `params` to `cap`; returns the value sent.
fn clamp_page_size(params: &mut Map<String, Value>, key: &str, cap: u64) -> Result<(), String> {
    let Some(value) = params.get(key) else {
        return Ok(());
    };
    let asked = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        Value::Null => return Ok(()),
        _ => None,
    }
    .ok_or_else(|| format!("{key} must be a whole number, got {value}"))?;
    if asked > cap {
        // Keep the caller's type (jdy docs type page_size as a string).
        let clamped = match value {
            Value::String(_) => Value::String(cap.to_string()),
            _ => Value::from(cap),
        };
        params.insert(key.to_owned(), clamped);
    }
    Ok(())
}

fn params_object(params: &Value) -> Result<Map<String, Value>, String> {
    match params {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map.clone()),
        other => Err(format!("request params must be a JSON object, got {other}")),
    }
}

fn require_session(session: Option<&Session>) -> Result<&Session, String> {
    session.ok_or_else(|| "no jdy session yet: log in (authorize + token) before business calls".to_owned())
}

/// What one signed gateway call sends, before signing.
#[derive(Debug, Clone)]
pub struct GatewaySend<'a> {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL path.
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(String, String)],
    /// JSON body (not signed).
    pub body: Option<&'a Value>,
    /// Headers placed after the `X-Api-*` ones (e.g. `app-token`).
    pub extra_headers: Vec<(String, String)>,
}

/// A fully signed v2 gateway request.
pub fn gateway_request(
    settings: &Settings,
    base_url: &str,
    send: GatewaySend<'_>,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let GatewaySend {
        method,
        path,
        query,
        body,
        extra_headers: extra,
    } = send;
    let call = GatewayCall {
        method,
        path,
        query,
        nonce,
        timestamp_ms: timestamp_ms(now),
        space: settings.space_style(),
    };
    let mut headers = sign::gateway_headers(&settings.client_id, &settings.client_secret, &call);
    headers.extend(extra);
    headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    let body = match body {
        Some(value) => {
            Some(serde_json::to_vec(value).map_err(|err| format!("request body could not be encoded as JSON: {err}"))?)
        }
        None => None,
    };
    Ok(WireRequest {
        method,
        url: join(base_url, path, &sign::wire_query(query, settings.space_style())),
        headers,
        body,
    })
}

fn v2_business_headers(session: &Session) -> Result<Vec<(String, String)>, String> {
    let router = session
        .router_addr
        .clone()
        .ok_or_else(|| "the v2 session has no router address (X-GW-Router-Addr); log in again".to_owned())?;
    Ok(vec![
        ("app-token".to_owned(), session.token.clone()),
        ("X-GW-Router-Addr".to_owned(), router),
    ])
}

fn v1_request(base_url: &str, path: &str, session: &Session, body: &Value) -> Result<WireRequest, String> {
    let mut headers = Vec::with_capacity(3);
    if let Some(account) = &session.account_id {
        headers.push(("accountId".to_owned(), account.clone()));
    }
    if let Some(group) = &session.group_name {
        headers.push(("groupName".to_owned(), group.clone()));
    }
    headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    let query = sign::wire_query(
        &[("access_token".to_owned(), session.token.clone())],
        sign::SpaceStyle::Percent20,
    );
    Ok(WireRequest {
        method: "POST",
        url: join(base_url, path, &query),
        headers,
        body: Some(serde_json::to_vec(body).map_err(|err| format!("request body could not be encoded: {err}"))?),
    })
}

// ---------------------------------------------------------------------------
// Business calls
// ---------------------------------------------------------------------------

/// A read call (list or detail). v2: signed `GET` with `params` as the query. v1: `POST
/// ?access_token=` with `params` as the JSON body. The page size is clamped to the cap.
pub fn build(
    settings: &Settings,
    base_url: &str,
    api: &str,
    params: &Value,
    session: Option<&Session>,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let session = require_session(session)?;
    let generation = settings.generation();
    let path = api_path(generation, api);
    let mut params = params_object(params)?;
    match generation {
        Generation::V2 => {
            clamp_page_size(&mut params, "page_size", settings.page_size_cap())?;
            let query = query_pairs(&Value::Object(params))?;
            let extra = v2_business_headers(session)?;
            gateway_request(
                settings,
                base_url,
                GatewaySend {
                    method: "GET",
                    path: &path,
                    query: &query,
                    body: None,
                    extra_headers: extra,
                },
                now,
                nonce,
            )
        }
        Generation::V1 => {
            clamp_page_size(&mut params, "pagesize", settings.page_size_cap())?;
            v1_request(base_url, &path, session, &Value::Object(params))
        }
    }
}

/// A save call: `POST` with `body` as JSON (v2: signed, empty query; v1: `?access_token=`).
pub fn build_save(
    settings: &Settings,
    base_url: &str,
    api: &str,
    body: &Value,
    session: Option<&Session>,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let session = require_session(session)?;
    let generation = settings.generation();
    let path = api_path(generation, api);
    match generation {
        Generation::V2 => {
            let extra = v2_business_headers(session)?;
            gateway_request(
                settings,
                base_url,
                GatewaySend {
                    method: "POST",
                    path: &path,
                    query: &[],
                    body: Some(body),
                    extra_headers: extra,
                },
                now,
                nonce,
            )
        }
        Generation::V1 => v1_request(base_url, &path, session, body),
    }
}

/// The detail api of a list api: `scm/pur_inbound` → `scm/pur_inbound_detail`,
/// `pur/pur_inbound_list` → `pur/pur_inbound_detail`.
pub fn detail_api(list_api: &str) -> String {
    let trimmed = list_api.trim_end_matches('/');
    if trimmed.ends_with("_detail") {
        return trimmed.to_owned();
    }
    let stem = trimmed.strip_suffix("_list").unwrap_or(trimmed);
    format!("{stem}_detail")
}

/// The detail request's params for one list row: `{"id": row.id}`.
pub fn detail_params(row: &Value) -> Result<Value, String> {
    match row.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(json!({ "id": id })),
        Some(Value::Number(id)) => Ok(json!({ "id": id.to_string() })),
        _ => Err(format!(
            "list row has no usable \"id\" to fetch its detail: {}",
            truncate(&row.to_string(), 200)
        )),
    }
}

/// The detail request for one list row (v2 `GET <resource>_detail?id=`, v1 `POST` `{"id"}`).
pub fn build_detail(
    settings: &Settings,
    base_url: &str,
    list_api: &str,
    row: &Value,
    session: Option<&Session>,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let params = detail_params(row)?;
    build(settings, base_url, &detail_api(list_api), &params, session, now, nonce)
}

/// A `modify_*_time` filter value for `time`, in the configured format and zone.
pub fn modify_time_param(settings: &Settings, time: DateTime<Utc>) -> Result<String, String> {
    Ok(match settings.modify_time_format() {
        ModifyTimeFormat::EpochMillis => time.timestamp_millis().to_string(),
        ModifyTimeFormat::DateTime => {
            let zone = settings.time_zone()?;
            zone.from_utc_datetime(&time.naive_utc())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        }
    })
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// v2 login: authorization, then app-token
// ---------------------------------------------------------------------------

/// Step 1: `POST push_app_authorize?outerInstanceId=…`, signed, body `{}`.
pub fn authorize_request(
    settings: &Settings,
    base_url: &str,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let instance = settings
        .outer_instance_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| "outer_instance_id is required to pull the jdy authorization".to_owned())?;
    let query = [("outerInstanceId".to_owned(), instance.to_owned())];
    let body = json!({});
    gateway_request(
        settings,
        base_url,
        GatewaySend {
            method: "POST",
            path: AUTHORIZE_PATH,
            query: &query,
            body: Some(&body),
            extra_headers: Vec::new(),
        },
        now,
        nonce,
    )
}

/// The authorization given in the settings (`app_key`, `app_secret`, `router_addr`), which
/// makes step 1 unnecessary.
pub fn authorization_from_settings(settings: &Settings) -> Option<AppAuthorization> {
    let app_key = settings.app_key.clone().filter(|v| !v.is_empty())?;
    let app_secret = settings.app_secret.clone().filter(|v| !v.is_empty())?;
    let domain = settings.router_addr.clone().filter(|v| !v.is_empty())?;
    Some(AppAuthorization {
        app_key,
        app_secret,
        domain,
        account_id: settings.account_id.clone(),
        group_name: settings.group_name.clone(),
        service_id: None,
        status: Some(1),
    })
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn ensure_ok(settings: &Settings, what: &str, body: &Value) -> Result<(), String> {
    match super::envelope::classify_with(settings, 200, body) {
        Verdict::Ok => Ok(()),
        Verdict::Failed { code, message } => Err(format!("{what} failed: [{code}] {message}")),
        Verdict::Throttled(message) => Err(format!("{what} was throttled: {message}")),
        Verdict::SessionExpired(message) => Err(format!("{what} was refused as expired: {message}")),
    }
}

/// Parses step 1's answer and picks the authorization to use: the one for
/// [`Settings::account_id`] when set, else the first with `status == 1`.
pub fn parse_authorize(settings: &Settings, body: &Value) -> Result<AppAuthorization, String> {
    ensure_ok(settings, "push_app_authorize", body)?;
    let items = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| "push_app_authorize answered without a data array; check outer_instance_id".to_owned())?;
    let parse = |item: &Value| -> Option<AppAuthorization> {
        Some(AppAuthorization {
            app_key: text_of(item.get("appKey"))?,
            app_secret: text_of(item.get("appSecret"))?,
            domain: text_of(item.get("domain"))?,
            account_id: text_of(item.get("accountId")),
            group_name: text_of(item.get("groupName")),
            service_id: text_of(item.get("serviceId")),
            status: int_of(item.get("status")),
        })
    };
    let all: Vec<AppAuthorization> = items.iter().filter_map(parse).collect();
    if all.is_empty() {
        return Err(
            "push_app_authorize returned no usable authorization (appKey/appSecret/domain); has the tenant authorized the app?"
                .to_owned(),
        );
    }
    let chosen = match settings.account_id.as_deref() {
        Some(wanted) => all
            .iter()
            .find(|a| a.account_id.as_deref() == Some(wanted))
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().filter_map(|a| a.account_id.as_deref()).collect();
                format!("account_id {wanted} is not among the authorized accounts; choose from {known:?}")
            })?,
        None => all.iter().find(|a| a.status == Some(1)).ok_or_else(|| {
            "no authorization has status 1 (authorized); ask the tenant to authorize the app".to_owned()
        })?,
    };
    if chosen.status.is_some_and(|status| status != 1) {
        return Err(format!(
            "the authorization for account {} has status {:?}, not 1 (authorized)",
            chosen.account_id.as_deref().unwrap_or("?"),
            chosen.status
        ));
    }
    Ok(chosen.clone())
}

/// Step 2: `GET kingdee_auth_token?app_key=…&app_signature=…`, signed.
pub fn token_request(
    settings: &Settings,
    base_url: &str,
    authorization: &AppAuthorization,
    now: DateTime<Utc>,
    nonce: u64,
) -> Result<WireRequest, String> {
    let query = [
        ("app_key".to_owned(), authorization.app_key.clone()),
        (
            "app_signature".to_owned(),
            sign::app_signature(&authorization.app_key, &authorization.app_secret),
        ),
    ];
    gateway_request(
        settings,
        base_url,
        GatewaySend {
            method: "GET",
            path: TOKEN_PATH,
            query: &query,
            body: None,
            extra_headers: Vec::new(),
        },
        now,
        nonce,
    )
}

fn refresh_at(settings: &Settings, now: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let by_age = now + settings.token_max_age();
    match expires_at {
        Some(expiry) => (expiry - settings.token_refresh_margin()).min(by_age),
        None => by_age,
    }
}

/// Parses step 2's answer into a session (`data["app-token"]`, `data.expires` in ms).
pub fn parse_token(
    settings: &Settings,
    authorization: &AppAuthorization,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Session, String> {
    ensure_ok(settings, "kingdee_auth_token", body)?;
    let data = body.get("data").unwrap_or(&Value::Null);
    let token = text_of(data.get("app-token"))
        .ok_or_else(|| "kingdee_auth_token answered without data[\"app-token\"]".to_owned())?;
    let expires_at = int_of(data.get("expires")).and_then(DateTime::from_timestamp_millis);
    Ok(Session {
        generation: Generation::V2,
        token,
        router_addr: Some(authorization.domain.clone()),
        account_id: authorization.account_id.clone(),
        group_name: authorization.group_name.clone(),
        expires_at,
        refresh_at: refresh_at(settings, now, expires_at),
    })
}

// ---------------------------------------------------------------------------
// v1 login
// ---------------------------------------------------------------------------

/// v1 token: `GET /auth/user/access_token?client_id&client_secret&username&password`.
pub fn v1_token_request(settings: &Settings, base_url: &str) -> Result<WireRequest, String> {
    let required = |name: &str, value: &Option<String>| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("generation v1 needs {name} to get an access_token"))
    };
    let query = [
        ("client_id".to_owned(), settings.client_id.clone()),
        ("client_secret".to_owned(), settings.client_secret.clone()),
        ("username".to_owned(), required("username", &settings.username)?),
        ("password".to_owned(), required("password", &settings.password)?),
    ];
    Ok(WireRequest {
        method: "GET",
        url: join(
            base_url,
            V1_TOKEN_PATH,
            &sign::wire_query(&query, sign::SpaceStyle::Percent20),
        ),
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: None,
    })
}

/// Parses the v1 token answer (`data.access_token`); the account headers come from settings.
pub fn parse_v1_token(settings: &Settings, body: &Value, now: DateTime<Utc>) -> Result<Session, String> {
    ensure_ok(settings, "access_token", body)?;
    let data = body.get("data").unwrap_or(&Value::Null);
    let token = text_of(data.get("access_token"))
        .ok_or_else(|| "access_token answered without data.access_token".to_owned())?;
    let expires_at = int_of(data.get("expires_in")).map(|secs| now + chrono::Duration::seconds(secs));
    Ok(Session {
        generation: Generation::V1,
        token,
        router_addr: None,
        account_id: settings.account_id.clone(),
        group_name: settings.group_name.clone(),
        expires_at,
        refresh_at: refresh_at(settings, now, expires_at),
    })
}

/// v1 account groups: `POST /jdy/sys/accountGroup?access_token=…`.
pub fn v1_account_groups_request(base_url: &str, session: &Session) -> Result<WireRequest, String> {
    let query = sign::wire_query(
        &[("access_token".to_owned(), session.token.clone())],
        sign::SpaceStyle::Percent20,
    );
    Ok(WireRequest {
        method: "POST",
        url: join(base_url, V1_ACCOUNT_GROUPS_PATH, &query),
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: Some(b"{}".to_vec()),
    })
}

/// Fills the session's `accountId`/`groupName` from `data[].accountGroups[]`, choosing
/// [`Settings::account_id`] when set, else the first group.
pub fn parse_v1_account_groups(settings: &Settings, body: &Value, session: &Session) -> Result<Session, String> {
    ensure_ok(settings, "accountGroup", body)?;
    let groups: Vec<(String, Option<String>)> = body
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|service| service.get("accountGroups").and_then(Value::as_array))
        .flatten()
        .filter_map(|group| Some((text_of(group.get("accountId"))?, text_of(group.get("groupName")))))
        .collect();
    let chosen = match settings.account_id.as_deref() {
        Some(wanted) => groups.iter().find(|(id, _)| id == wanted),
        None => groups.first(),
    }
    .ok_or_else(|| {
        let known: Vec<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
        format!("no matching v1 account group; accounts available: {known:?}")
    })?;
    let mut session = session.clone();
    session.account_id = Some(chosen.0.clone());
    session.group_name = chosen.1.clone().or_else(|| settings.group_name.clone());
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::v2("cid-1", "0123456789abcdef0123456789abcdef", "oi-9")
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn session() -> Session {
        Session {
            generation: Generation::V2,
            token: "tok-1".to_owned(),
            router_addr: Some("https://tf.jdy.com".to_owned()),
            account_id: None,
            group_name: None,
            expires_at: None,
            refresh_at: at(0),
        }
    }

    fn header<'a>(request: &'a WireRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn list_request_matches_the_reference_example() {
        let params = json!({"modify_start_time": "2024-03-01 00:00:00", "page": 1, "page_size": 100});
        let request = build(
            &settings(),
            "https://api.kingdee.com/",
            "scm/pur_inbound",
            &params,
            Some(&session()),
            at(1_709_251_200_000),
            1_234_567_890,
        )
        .unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.url,
            "https://api.kingdee.com/jdy/v2/scm/pur_inbound?modify_start_time=2024-03-01%2000%3A00%3A00&page=1&page_size=100"
        );
        assert_eq!(
            header(&request, "X-Api-Signature"),
            Some("NWQyMDBiNzBhNGJkMjkwMjM5YWQ1NTVjM2E0YzFlNjRiMjc1ZDYxZjhlOWNiYTY1NWZjNzQ5MWRkZmRmODdhNA==")
        );
        assert_eq!(header(&request, "X-Api-TimeStamp"), Some("1709251200000"));
        assert_eq!(header(&request, "app-token"), Some("tok-1"));
        assert_eq!(header(&request, "X-GW-Router-Addr"), Some("https://tf.jdy.com"));
        assert!(request.body.is_none());
    }

    #[test]
    fn page_size_is_clamped_to_the_cap() {
        let request = build(
            &settings(),
            "http://h",
            "scm/pur_inbound",
            &json!({"page": 1, "page_size": "500"}),
            Some(&session()),
            at(0),
            1,
        )
        .unwrap();
        assert!(request.url.ends_with("page=1&page_size=100"), "{}", request.url);
        let mut capped = settings();
        capped.page_size_cap = Some(20);
        let request = build(
            &capped,
            "http://h",
            "scm/pur_inbound",
            &json!({"page_size": 50}),
            Some(&session()),
            at(0),
            1,
        )
        .unwrap();
        assert!(request.url.ends_with("page_size=20"));
        let small = build(
            &capped,
            "http://h",
            "scm/pur_inbound",
            &json!({"page_size": 5}),
            Some(&session()),
            at(0),
            1,
        )
        .unwrap();
        assert!(small.url.ends_with("page_size=5"));
        let bad = build(
            &capped,
            "http://h",
            "x",
            &json!({"page_size": "many"}),
            Some(&session()),
            at(0),
            1,
        );
        assert!(bad.unwrap_err().contains("page_size"));
    }

    #[test]
    fn business_calls_need_a_session() {
        let err = build(&settings(), "http://h", "scm/pur_inbound", &json!({}), None, at(0), 1).unwrap_err();
        assert!(err.contains("log in"));
    }

    #[test]
    fn save_posts_json_and_signs_an_empty_query() {
        let body = json!({"bill_no": "CGRK-1", "material_entity": []});
        let request = build_save(
            &settings(),
            "http://h",
            "scm/pur_inbound",
            &body,
            Some(&session()),
            at(5),
            9,
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "http://h/jdy/v2/scm/pur_inbound");
        assert_eq!(
            request.body.as_deref(),
            Some(serde_json::to_vec(&body).unwrap().as_slice())
        );
        let text = sign::string_to_sign(
            "POST",
            "/jdy/v2/scm/pur_inbound",
            &[],
            "9",
            "5",
            sign::SpaceStyle::Percent20,
        );
        let expected = sign::gateway_signature("0123456789abcdef0123456789abcdef", &text);
        assert_eq!(header(&request, "X-Api-Signature"), Some(expected.as_str()));
    }

    #[test]
    fn detail_follows_the_list_row() {
        assert_eq!(detail_api("scm/pur_inbound"), "scm/pur_inbound_detail");
        assert_eq!(detail_api("pur/pur_inbound_list"), "pur/pur_inbound_detail");
        assert_eq!(detail_api("scm/pur_inbound_detail"), "scm/pur_inbound_detail");
        let row = json!({"id": "1700000000000001001", "bill_no": "CGRK-20240301-0001"});
        let request = build_detail(
            &settings(),
            "http://h",
            "scm/pur_inbound",
            &row,
            Some(&session()),
            at(0),
            3,
        )
        .unwrap();
        assert_eq!(
            request.url,
            "http://h/jdy/v2/scm/pur_inbound_detail?id=1700000000000001001"
        );
        assert!(detail_params(&json!({"bill_no": "x"})).unwrap_err().contains("id"));
        assert_eq!(detail_params(&json!({"id": 42})).unwrap(), json!({"id": "42"}));
    }

    #[test]
    fn authorize_and_token_requests() {
        let request = authorize_request(&settings(), "http://h", at(1000), 5).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            "http://h/jdyconnector/app_management/push_app_authorize?outerInstanceId=oi-9"
        );
        assert_eq!(request.body.as_deref(), Some(&b"{}"[..]));
        assert!(header(&request, "app-token").is_none());
        let auth = AppAuthorization {
            app_key: "abc".to_owned(),
            app_secret: "abc123".to_owned(),
            domain: "https://tf.jdy.com".to_owned(),
            account_id: None,
            group_name: None,
            service_id: None,
            status: Some(1),
        };
        let token = token_request(&settings(), "http://h", &auth, at(1000), 5).unwrap();
        assert_eq!(
            token.url,
            "http://h/jdyconnector/app_management/kingdee_auth_token?app_key=abc&app_signature=ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ%3D%3D"
        );
        assert!(!format!("{auth:?}").contains("abc123"));
    }

    #[test]
    fn parse_authorize_picks_the_account_and_accepts_both_envelopes() {
        let items = json!([
            {"appKey": "k0", "appSecret": "s0", "domain": "https://a.jdy.com", "accountId": "100", "status": 0},
            {"appKey": "k1", "appSecret": "s1", "domain": "https://tf.jdy.com", "groupName": "g",
             "accountId": 200, "serviceId": "svc", "status": 1}
        ]);
        let errcode = json!({"errcode": 0, "description": "成功", "data": items});
        let chosen = parse_authorize(&settings(), &errcode).unwrap();
        assert_eq!(chosen.app_key, "k1");
        assert_eq!(chosen.account_id.as_deref(), Some("200"));
        let code_msg = json!({"code": 0, "msg": "success", "data": items});
        assert_eq!(
            parse_authorize(&settings(), &code_msg).unwrap().domain,
            "https://tf.jdy.com"
        );
        let mut pick = settings();
        pick.account_id = Some("100".to_owned());
        assert!(parse_authorize(&pick, &errcode).unwrap_err().contains("status"));
        pick.account_id = Some("999".to_owned());
        assert!(parse_authorize(&pick, &errcode).unwrap_err().contains("200"));
        let refused = json!({"code": 1001, "msg": "outerInstanceId 不存在"});
        assert!(parse_authorize(&settings(), &refused)
            .unwrap_err()
            .contains("outerInstanceId"));
    }

    #[test]
    fn parse_token_caches_until_the_earlier_of_expiry_and_max_age() {
        let auth = authorization_from_settings(&Settings {
            app_key: Some("k".to_owned()),
            app_secret: Some("s".to_owned()),
            router_addr: Some("https://tf.jdy.com".to_owned()),
            ..settings()
        })
        .unwrap();
        let now = at(1_700_000_000_000);
        let expires = 1_700_000_000_000 + 24 * 3600 * 1000;
        let body = json!({"errcode": 0, "description": "成功",
            "data": {"access_token": "a", "app-token": "T-1", "expires": expires, "uid": 1}});
        let session = parse_token(&settings(), &auth, &body, now).unwrap();
        assert_eq!(session.token, "T-1");
        assert_eq!(session.router_addr.as_deref(), Some("https://tf.jdy.com"));
        assert_eq!(session.expires_at, Some(at(expires)));
        assert_eq!(session.refresh_at, now + chrono::Duration::hours(20));
        assert!(!session.needs_refresh(now));
        assert!(session.needs_refresh(now + chrono::Duration::hours(21)));
        assert!(!format!("{session:?}").contains("T-1"));
        let soon = json!({"errcode": 0, "data": {"app-token": "T", "expires": 1_700_000_060_000_i64}});
        let short = parse_token(&settings(), &auth, &soon, now).unwrap();
        assert_eq!(short.refresh_at, at(1_700_000_060_000) - chrono::Duration::seconds(300));
        assert!(parse_token(&settings(), &auth, &json!({"errcode": 0, "data": {}}), now).is_err());
    }

    #[test]
    fn v1_requests_have_the_legacy_shape() {
        let v1 = Settings::v1("cid", "csec", "user", "p w", "acct-1", "grp");
        let token = v1_token_request(&v1, "http://h").unwrap();
        assert_eq!(
            token.url,
            "http://h/auth/user/access_token?client_id=cid&client_secret=csec&password=p%20w&username=user"
        );
        let session = parse_v1_token(&v1, &json!({"errcode": 0, "data": {"access_token": "AT"}}), at(0)).unwrap();
        let params = json!({"page": 2, "pagesize": 500, "begindate": "2024-03-01"});
        let request = build(&v1, "http://h", "pur/pur_inbound", &params, Some(&session), at(0), 1);
        let request = request.unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "http://h/jdy/pur/pur_inbound?access_token=AT");
        assert_eq!(header(&request, "accountId"), Some("acct-1"));
        assert_eq!(header(&request, "groupName"), Some("grp"));
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"page": 2, "pagesize": 100, "begindate": "2024-03-01"}));
        let detail = build_detail(
            &v1,
            "http://h",
            "pur/pur_inbound_list",
            &json!({"id": "9"}),
            Some(&session),
            at(0),
            1,
        )
        .unwrap();
        assert_eq!(detail.url, "http://h/jdy/pur/pur_inbound_detail?access_token=AT");
        assert_eq!(detail.body.as_deref(), Some(&br#"{"id":"9"}"#[..]));
        let groups = json!({"success": true, "data": [{"serviceId": "s", "accountGroups": [
            {"accountId": "a1", "groupName": "g1", "groupId": "1"},
            {"accountId": "acct-1", "groupName": "g2", "groupId": "2"}]}]});
        let filled = parse_v1_account_groups(&v1, &groups, &session).unwrap();
        assert_eq!(filled.group_name.as_deref(), Some("g2"));
    }

    #[test]
    fn modify_time_formats() {
        let time = at(1_709_222_400_000); // 2024-02-29T16:00:00Z
        assert_eq!(modify_time_param(&settings(), time).unwrap(), "2024-03-01 00:00:00");
        let mut ms = settings();
        ms.modify_time_format = Some(ModifyTimeFormat::EpochMillis);
        assert_eq!(modify_time_param(&ms, time).unwrap(), "1709222400000");
    }

    #[test]
    fn query_values_flatten() {
        let pairs = query_pairs(&json!({"a": ["1", 2], "b": null, "c": true})).unwrap();
        assert_eq!(
            pairs,
            [("a".to_owned(), "1,2".to_owned()), ("c".to_owned(), "true".to_owned())]
        );
        assert!(query_pairs(&json!({"a": {"x": 1}})).is_err());
        assert!(query_pairs(&json!([1])).is_err());
    }
}
