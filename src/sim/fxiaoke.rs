//! The Fxiaoke (纷享销客 / ShareCRM) simulator: the OpenAPI gateway of one enterprise, for
//! tests, `ferry demo` and `ferry simulate fxiaoke`.
//!
//! **Tokens.** `POST /cgi/corpAccessToken/get/V2` (old generation) and `POST /oauth2.0/token`
//! (new generation, `grantType: app_secret`) check the app credentials and issue tokens that
//! live `token_ttl_secs` (7200). Like the real server, asking again while a token still has
//! more than a twelfth of its life left (6600 of 7200 s) returns the same token with the
//! remaining `expiresIn`. The token endpoint takes at most `token_calls_per_minute` calls.
//! [`FxiaokeSim::expire_tokens`] invalidates every token, so the next call answers 20016.
//!
//! **Auth of business calls**, as the gateway probes showed: no token at all → 20017
//! "corpAccessToken为必填项，不能为空"; an unknown or expired token, a token of the other
//! generation, or a wrong corpId / `x-fs-ea` → 20016; an unknown operator
//! (`currentOpenUserId` / `x-fs-userid`) → 20012. Everything answers HTTP 200.
//!
//! **ERP push** (`POST /cgi/crm/erp/syncdata/objdata/push`): each call carries one record under
//! `data`, validated on its own: `objAPIName` and `dataCenterId` (which must be this tenant's)
//! are required, `destObjectApiName` is required when `directSync` is true, a present `id`
//! (standard format) needs a `masterFieldVal` object and `detailFieldVals` must map names to
//! arrays of objects. Standard pushes are remembered by (`objAPIName`, `id`); pushing the same
//! id again replaces the record and counts a new version. Non-standard pushes (no `id`) are
//! kept in arrival order.
//!
//! **CRM query** (`POST /cgi/crm/v2/data/query`): `AccountObj` rows are a pure function of
//! their 1-based index (only touched rows are stored), with Chinese company names, `_id`s like
//! Mongo ObjectIds, times in ms and employee fields as lists. `search_query_info` supports
//! `limit` ≤ 100, `offset` ≤ 10000 (a multiple of `limit`), filters (`EQ N GT GTE LT LTE IN NIN
//! LIKE`), `orders` (default `_id` ascending) and `fieldProjection`; `find_explicit_total_num:
//! false` drops `total`. A query costs O(records), fine for the sizes simulated.
//!
//! **Limits.** Each interface allows `interface_limit` calls per window (100 per 20 s by
//! default) and answers 30004 over it; `daily_quota` calls in total, then 30002. The shared
//! fault layer's throttle answer is 30004 and its failure answer -1 "系统繁忙", both HTTP 200.
//! Codes the docs do not fix are the simulator's choice: 14001 when the token endpoint is
//! over its per-minute limit, 32000 for a malformed body.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::kit::{counters, mix, pick, simulator, start_sim};
use super::{instrument, lock, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle, Simulator};

/// Old-generation token path.
pub const TOKEN_PATH: &str = "/cgi/corpAccessToken/get/V2";
/// New-generation token path.
pub const OAUTH2_TOKEN_PATH: &str = "/oauth2.0/token";
/// ERP push path.
pub const PUSH_PATH: &str = "/cgi/crm/erp/syncdata/objdata/push";
/// Preset-object query path.
pub const QUERY_PATH: &str = "/cgi/crm/v2/data/query";
/// The object the query serves.
pub const ACCOUNT_OBJECT: &str = "AccountObj";

const MAX_LIMIT: u64 = 100;
const MAX_OFFSET: u64 = 10_000;

/// A call budget per fixed time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimit {
    pub calls: u32,
    pub per: Duration,
}

/// How the simulated enterprise behaves. The default credentials are fake.
#[derive(Clone, Debug)]
pub struct FxiaokeConfig {
    /// Number of generated `AccountObj` rows (default 250).
    pub records: u64,
    /// Faults at start (throttle answers 30004, failures -1).
    pub faults: Faults,
    pub app_id: String,
    pub app_secret: String,
    pub permanent_code: String,
    /// The enterprise's `corpId` (old generation).
    pub corp_id: String,
    /// The enterprise account `ea` (new generation, `x-fs-ea`).
    pub ea: String,
    /// The one operator `currentOpenUserId` the old generation accepts.
    pub open_user_id: String,
    /// The one operator employee id `x-fs-userid` the new generation accepts.
    pub employee_id: String,
    /// The tenant's ERP data center id; pushes must name it.
    pub data_center_id: String,
    /// Token lifetime in seconds (default 7200).
    pub token_ttl_secs: u64,
    /// Per-interface budget (default 100 calls per 20 s); over it answers 30004.
    pub interface_limit: Option<CallLimit>,
    /// Token endpoint budget per minute (default 10); over it answers 14001.
    pub token_calls_per_minute: Option<u32>,
    /// Business calls allowed in total (the daily quota); over it answers 30002.
    pub daily_quota: Option<u64>,
    /// `AccountObj` row `i` was last modified at `base_time_ms + i * spacing_ms`
    /// (default 2024-01-01 00:00 Asia/Shanghai, one hour apart).
    pub base_time_ms: i64,
    pub spacing_ms: i64,
}

impl Default for FxiaokeConfig {
    fn default() -> Self {
        FxiaokeConfig {
            records: 250,
            faults: Faults::default(),
            app_id: "FSAID_131a2b3".into(),
            app_secret: "0123456789abcdef0123456789abcdef".into(),
            permanent_code: "ABCDEF0123456789ABCDEF0123456789".into(),
            corp_id: "FSCID_5E6F7A8B9C0D1E2F".into(),
            ea: "fs_demo_ea".into(),
            open_user_id: "FSUID_0123456789ABCDEF0123456789".into(),
            employee_id: "1000".into(),
            data_center_id: "63f82854a8bd974420925e83".into(),
            token_ttl_secs: 7200,
            interface_limit: Some(CallLimit {
                calls: 100,
                per: Duration::from_secs(20),
            }),
            token_calls_per_minute: Some(10),
            daily_quota: None,
            base_time_ms: 1_703_980_800_000,
            spacing_ms: 3_600_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Corp,
    Oauth2,
}

struct IssuedToken {
    kind: TokenKind,
    issued: Instant,
}

#[derive(Default)]
struct Tokens {
    live: HashMap<String, IssuedToken>,
    /// The token handed out last, per generation.
    current: HashMap<&'static str, String>,
    minted: u64,
}

/// A fixed-window counter.
#[derive(Default)]
struct Window {
    start: Option<Instant>,
    used: u32,
}

impl Window {
    /// Spends one call, or reports that the budget of the current window is gone.
    fn spend(&mut self, limit: CallLimit, now: Instant) -> bool {
        if self.start.is_none_or(|start| now.duration_since(start) >= limit.per) {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used >= limit.calls {
            return false;
        }
        self.used += 1;
        true
    }
}

#[derive(Default)]
struct Limits {
    per_path: HashMap<&'static str, Window>,
    token: Window,
    business_calls: u64,
}

#[derive(Clone, Copy)]
struct Touched {
    modified_ms: i64,
    revision: u32,
}

struct Pushed {
    object: String,
    id: String,
    data: Value,
    versions: u32,
}

#[derive(Default)]
struct Pushes {
    standard: Vec<Pushed>,
    by_key: HashMap<(String, String), usize>,
    non_standard: Vec<Value>,
}

struct FxState {
    cfg: FxiaokeConfig,
    control: Arc<SimControl>,
    tokens: Mutex<Tokens>,
    limits: Mutex<Limits>,
    touched: Mutex<HashMap<u64, Touched>>,
    pushes: Mutex<Pushes>,
    traces: AtomicU64,
    token_calls: AtomicU64,
    push_calls: AtomicU64,
    query_calls: AtomicU64,
}

/// The Fxiaoke simulator; clones share state.
#[derive(Clone)]
pub struct FxiaokeSim {
    state: Arc<FxState>,
}

impl std::fmt::Debug for FxiaokeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FxiaokeSim")
            .field("records", &self.state.cfg.records)
            .field("pushed", &lock(&self.state.pushes).standard.len())
            .finish_non_exhaustive()
    }
}

/// The fault layer's answers in Fxiaoke's envelope (always HTTP 200).
struct FxReplies;

impl FaultReplies for FxReplies {
    fn throttled(&self) -> Response {
        Json(json!({"traceId": "E-O.sim.throttle", "errorDescription": "秒频次超限",
                    "errorMessage": "秒频次超限", "errorCode": 30004}))
        .into_response()
    }

    fn server_error(&self) -> Response {
        Json(json!({"traceId": "E-O.sim.busy", "errorDescription": "系统繁忙",
                    "errorMessage": "系统繁忙", "errorCode": -1}))
        .into_response()
    }
}

simulator!(FxiaokeSim);

impl FxiaokeSim {
    /// Builds the simulator's state; nothing listens until [`FxiaokeSim::start`].
    pub fn new(cfg: FxiaokeConfig) -> FxiaokeSim {
        let control = SimControl::new(cfg.faults.clone(), RequestLog::new(LogMode::Full), FxReplies);
        FxiaokeSim {
            state: Arc::new(FxState {
                cfg,
                control: Arc::new(control),
                tokens: Mutex::new(Tokens::default()),
                limits: Mutex::new(Limits::default()),
                touched: Mutex::new(HashMap::new()),
                pushes: Mutex::new(Pushes::default()),
                traces: AtomicU64::new(0),
                token_calls: AtomicU64::new(0),
                push_calls: AtomicU64::new(0),
                query_calls: AtomicU64::new(0),
            }),
        }
    }

    /// Every route, wrapped with the request log and the fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(TOKEN_PATH, post(corp_token))
            .route(OAUTH2_TOKEN_PATH, post(oauth2_token))
            .route(PUSH_PATH, post(push))
            .route(QUERY_PATH, post(query))
            .with_state(Arc::clone(&self.state));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds the simulator and serves it on `listener`.
    pub async fn start(cfg: FxiaokeConfig, listener: tokio::net::TcpListener) -> io::Result<(FxiaokeSim, SimHandle)> {
        start_sim(FxiaokeSim::new(cfg), FxiaokeSim::router, listener).await
    }

    /// Invalidates every token; the next business call answers 20016.
    pub fn expire_tokens(&self) {
        let mut tokens = lock(&self.state.tokens);
        tokens.live.clear();
        tokens.current.clear();
    }

    /// Number of tokens that still work.
    pub fn live_tokens(&self) -> usize {
        let ttl = Duration::from_secs(self.state.cfg.token_ttl_secs);
        lock(&self.state.tokens)
            .live
            .values()
            .filter(|token| token.issued.elapsed() < ttl)
            .count()
    }

    /// Changes `AccountObj` row `index` (its phone number and remark) and sets its
    /// `last_modified_time` to `now`. False when there is no such row.
    pub fn touch(&self, index: u64, now: DateTime<Utc>) -> bool {
        if index == 0 || index > self.state.cfg.records {
            return false;
        }
        let mut touched = lock(&self.state.touched);
        let revision = touched.get(&index).map_or(0, |t| t.revision) + 1;
        touched.insert(
            index,
            Touched {
                modified_ms: now.timestamp_millis(),
                revision,
            },
        );
        true
    }

    /// `AccountObj` row `index` as the query serves it now.
    pub fn account(&self, index: u64) -> Option<Value> {
        if index == 0 || index > self.state.cfg.records {
            return None;
        }
        let touched = lock(&self.state.touched).get(&index).copied();
        Some(Value::Object(account_row(&self.state.cfg, index, touched)))
    }

    /// The latest `data` of every standard-format push, in order of first arrival.
    pub fn written(&self) -> Vec<Value> {
        lock(&self.state.pushes)
            .standard
            .iter()
            .map(|pushed| pushed.data.clone())
            .collect()
    }

    /// The latest `data` pushed with this `id` (any object).
    pub fn written_by_key(&self, id: &str) -> Option<Value> {
        let pushes = lock(&self.state.pushes);
        pushes
            .standard
            .iter()
            .find(|pushed| pushed.id == id)
            .map(|pushed| pushed.data.clone())
    }

    /// The latest `data` of every standard-format push to ERP object `object`.
    pub fn written_for(&self, object: &str) -> Vec<Value> {
        lock(&self.state.pushes)
            .standard
            .iter()
            .filter(|pushed| pushed.object == object)
            .map(|pushed| pushed.data.clone())
            .collect()
    }

    /// How many times (`objAPIName`, `id`) was pushed successfully.
    pub fn push_versions(&self, object: &str, id: &str) -> u32 {
        let pushes = lock(&self.state.pushes);
        pushes
            .by_key
            .get(&(object.to_owned(), id.to_owned()))
            .and_then(|&position| pushes.standard.get(position))
            .map_or(0, |pushed| pushed.versions)
    }

    /// Accepted pushes without an `id` (non-standard format), in arrival order.
    pub fn non_standard_pushes(&self) -> Vec<Value> {
        lock(&self.state.pushes).non_standard.clone()
    }

    counters! {
        /// Push requests that reached the handler (accepted or refused).
        write_calls: push_calls,
        /// Token requests that reached a token handler.
        token_calls,
        /// Query requests that reached the handler.
        query_calls,
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

impl FxState {
    fn trace(&self) -> String {
        let n = self.traces.fetch_add(1, Ordering::Relaxed) + 1;
        format!("E-O.{}.{}-{n:08}", self.cfg.ea, self.cfg.employee_id)
    }

    fn error(&self, code: i64, message: &str) -> Response {
        Json(json!({"traceId": self.trace(), "errorDescription": message,
                    "errorMessage": message, "errorCode": code}))
        .into_response()
    }

    fn ok(&self, extra: Map<String, Value>) -> Response {
        let mut body = Map::new();
        body.insert("traceId".into(), Value::String(self.trace()));
        body.insert("errorDescription".into(), Value::String("success".into()));
        body.insert("errorMessage".into(), Value::String("OK".into()));
        body.insert("errorCode".into(), json!(0));
        body.extend(extra);
        Json(Value::Object(body)).into_response()
    }
}

/// A refused call, rendered into Fxiaoke's envelope by [`FxState::refuse`].
struct Refusal {
    code: i64,
    message: String,
}

impl Refusal {
    fn new(code: i64, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl FxState {
    fn refuse(&self, refusal: Refusal) -> Response {
        if refusal.code == 10006 {
            // The token gateway's own shape (probe in S-FX-SKILL).
            return Json(json!({"errorCode": 10006, "errorMessage": refusal.message,
                "errorDescription": "缺少参数或参数不合法",
                "traceId": format!("open-api-gateway-web/{}", self.trace())}))
            .into_response();
        }
        self.error(refusal.code, &refusal.message)
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::new(12004, "POST 的数据包为空"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Refusal::new(32000, "参数错误：请求体必须是 JSON 对象")),
        Err(e) => Err(Refusal::new(32000, format!("参数错误：请求体不是合法的 JSON（{e}）"))),
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

impl FxState {
    /// Checks the app credentials of a token request.
    fn check_app(&self, body: &Value) -> Result<(), Refusal> {
        let field = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
        let cfg = &self.cfg;
        if field("appId") != cfg.app_id || field("appSecret") != cfg.app_secret {
            // The gateway answers this for a wrong appId as well as a wrong appSecret.
            return Err(Refusal::new(10006, "the parameter appSecret is missing or illegal"));
        }
        if field("permanentCode") != cfg.permanent_code {
            return Err(Refusal::new(20015, "永久授权码错误"));
        }
        Ok(())
    }

    /// Hands out the current token of `kind` while it has over a twelfth of its life left,
    /// or mints a new one. Returns the token and its remaining seconds.
    fn grant(&self, kind: TokenKind) -> (String, u64) {
        let ttl = Duration::from_secs(self.cfg.token_ttl_secs.max(1));
        let reuse_until = ttl - ttl / 12;
        let slot = match kind {
            TokenKind::Corp => "corp",
            TokenKind::Oauth2 => "oauth2",
        };
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        if let Some(current) = tokens.current.get(slot) {
            if let Some(issued) = tokens.live.get(current) {
                let age = now.duration_since(issued.issued);
                if age < reuse_until {
                    let left = (ttl - age).as_secs().max(1);
                    return (current.clone(), left);
                }
            }
        }
        tokens.minted += 1;
        let seed = tokens.minted ^ self.cfg.app_id.bytes().fold(0, |h, b| mix(h ^ u64::from(b)));
        let token = format!("{:016X}{:016X}", mix(seed), mix(seed ^ 0x746f_6b65_6e21));
        tokens.live.insert(token.clone(), IssuedToken { kind, issued: now });
        tokens.current.insert(slot, token.clone());
        (token, ttl.as_secs())
    }

    fn token_budget_left(&self) -> bool {
        let Some(per_minute) = self.cfg.token_calls_per_minute else {
            return true;
        };
        let limit = CallLimit {
            calls: per_minute,
            per: Duration::from_secs(60),
        };
        lock(&self.limits).token.spend(limit, Instant::now())
    }

    fn token_valid(&self, token: &str, kind: TokenKind) -> bool {
        let ttl = Duration::from_secs(self.cfg.token_ttl_secs.max(1));
        lock(&self.tokens)
            .live
            .get(token)
            .is_some_and(|issued| issued.kind == kind && issued.issued.elapsed() < ttl)
    }
}

async fn corp_token(State(state): State<Arc<FxState>>, body: Bytes) -> Response {
    state.token_calls.fetch_add(1, Ordering::Relaxed);
    if !state.token_budget_left() {
        return state.error(14001, "接口调用超过限制：换 token 接口每分钟最多 10 次");
    }
    if let Err(refusal) = parse_body(&body).and_then(|body| state.check_app(&body)) {
        return state.refuse(refusal);
    }
    let (token, left) = state.grant(TokenKind::Corp);
    let mut extra = Map::new();
    extra.insert("corpAccessToken".into(), Value::String(token));
    extra.insert("corpId".into(), Value::String(state.cfg.corp_id.clone()));
    extra.insert("expiresIn".into(), json!(left));
    state.ok(extra)
}

async fn oauth2_token(State(state): State<Arc<FxState>>, body: Bytes) -> Response {
    state.token_calls.fetch_add(1, Ordering::Relaxed);
    if !state.token_budget_left() {
        return state.error(14001, "接口调用超过限制：换 token 接口每分钟最多 10 次");
    }
    let body = match parse_body(&body).and_then(|body| state.check_app(&body).map(|()| body)) {
        Ok(body) => body,
        Err(refusal) => return state.refuse(refusal),
    };
    if body.get("grantType").and_then(Value::as_str) != Some("app_secret") {
        return state.error(32000, "参数错误：grantType 必须为 app_secret");
    }
    let (token, left) = state.grant(TokenKind::Oauth2);
    let mut extra = Map::new();
    extra.insert("accessToken".into(), Value::String(token));
    extra.insert("ea".into(), Value::String(state.cfg.ea.clone()));
    extra.insert("expiresIn".into(), json!(left));
    state.ok(extra)
}

// ---------------------------------------------------------------------------
// Auth and limits of business calls
// ---------------------------------------------------------------------------

impl FxState {
    fn authenticate(&self, headers: &HeaderMap, body: &Value) -> Result<(), Refusal> {
        let bad_token = || Refusal::new(20016, "the cropId,cropAccessToken or authorization is error");
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(authorization) = header("authorization") {
            let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
            if !self.token_valid(token, TokenKind::Oauth2) || header("x-fs-ea") != Some(self.cfg.ea.as_str()) {
                return Err(bad_token());
            }
            if header("x-fs-userid") != Some(self.cfg.employee_id.as_str()) {
                return Err(Refusal::new(20012, "openUserId 未找到：x-fs-userid 不是本企业的员工"));
            }
            return Ok(());
        }
        let field = |key: &str| body.get(key).and_then(Value::as_str);
        let Some(token) = field("corpAccessToken").filter(|token| !token.is_empty()) else {
            return Err(Refusal::new(20017, "corpAccessToken为必填项，不能为空"));
        };
        if !self.token_valid(token, TokenKind::Corp) || field("corpId") != Some(self.cfg.corp_id.as_str()) {
            return Err(bad_token());
        }
        if field("currentOpenUserId") != Some(self.cfg.open_user_id.as_str()) {
            return Err(Refusal::new(
                20012,
                "openUserId 未找到：currentOpenUserId 不是本企业的员工",
            ));
        }
        Ok(())
    }

    fn spend(&self, path: &'static str) -> Result<(), Refusal> {
        let mut limits = lock(&self.limits);
        if let Some(quota) = self.cfg.daily_quota {
            if limits.business_calls >= quota {
                return Err(Refusal::new(30002, "当天访问频次超限（0 点重新统计）"));
            }
        }
        if let Some(limit) = self.cfg.interface_limit {
            if !limits.per_path.entry(path).or_default().spend(limit, Instant::now()) {
                return Err(Refusal::new(30004, "秒频次超限"));
            }
        }
        limits.business_calls += 1;
        Ok(())
    }

    /// Parse, authenticate and count one business call; the `data` object on success.
    fn admit(&self, path: &'static str, headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Refusal> {
        let body = parse_body(body)?;
        self.authenticate(headers, &body)?;
        self.spend(path)?;
        match body.get("data") {
            Some(Value::Object(data)) => Ok(data.clone()),
            _ => Err(Refusal::new(32000, "参数错误：data 为必填项，且必须是对象")),
        }
    }
}

// ---------------------------------------------------------------------------
// ERP push
// ---------------------------------------------------------------------------

/// Checks one pushed record; the (object, id) key for standard-format records.
fn check_push(data: &Map<String, Value>, data_center: &str) -> Result<(String, Option<String>), String> {
    let text = |key: &str| -> Result<Option<&str>, String> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!("参数错误：{key} 必须是字符串")),
        }
    };
    let object = text("objAPIName")?.ok_or("参数错误：objAPIName 不能为空")?;
    let center = text("dataCenterId")?.ok_or("参数错误：dataCenterId 不能为空")?;
    if center != data_center {
        return Err(format!(
            "数据中心 {center} 不存在，请在 连接器 → 连接对象 中查看推送接口的 dataCenterId"
        ));
    }
    let direct = match data.get("directSync") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err("参数错误：directSync 必须是布尔值".into()),
    };
    if direct && text("destObjectApiName")?.is_none() {
        return Err("参数错误：directSync 为 true 时 destObjectApiName 必填".into());
    }
    let id = text("id")?;
    match data.get("masterFieldVal") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) if id.is_none() => {}
        _ => return Err("参数错误：标准格式（带 id）的 masterFieldVal 必须是对象".into()),
    }
    match data.get("detailFieldVals") {
        None | Some(Value::Null) => {}
        Some(Value::Object(details)) => {
            for (name, rows) in details {
                let rows_ok = rows.as_array().is_some_and(|rows| rows.iter().all(Value::is_object));
                if !rows_ok {
                    return Err(format!("参数错误：detailFieldVals.{name} 必须是对象数组"));
                }
            }
        }
        Some(_) => return Err("参数错误：detailFieldVals 必须是 从对象apiName → 数组 的映射".into()),
    }
    Ok((object.to_owned(), id.map(str::to_owned)))
}

async fn push(State(state): State<Arc<FxState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.push_calls.fetch_add(1, Ordering::Relaxed);
    let data = match state.admit(PUSH_PATH, &headers, &body) {
        Ok(data) => data,
        Err(refusal) => return state.refuse(refusal),
    };
    let (object, id) = match check_push(&data, &state.cfg.data_center_id) {
        Ok(key) => key,
        Err(message) => return state.error(32000, &message),
    };
    let mut pushes = lock(&state.pushes);
    let record = Value::Object(data);
    match id {
        None => pushes.non_standard.push(record),
        Some(id) => {
            let key = (object.clone(), id.clone());
            match pushes.by_key.get(&key).copied() {
                Some(position) => {
                    let pushed = &mut pushes.standard[position];
                    pushed.data = record;
                    pushed.versions += 1;
                }
                None => {
                    let position = pushes.standard.len();
                    pushes.standard.push(Pushed {
                        object,
                        id,
                        data: record,
                        versions: 1,
                    });
                    pushes.by_key.insert(key, position);
                }
            }
        }
    }
    drop(pushes);
    state.ok(Map::new())
}

// ---------------------------------------------------------------------------
// AccountObj rows
// ---------------------------------------------------------------------------

const CITIES: &[(&str, &str)] = &[
    ("上海", "021"),
    ("北京", "010"),
    ("广州", "020"),
    ("深圳", "0755"),
    ("杭州", "0571"),
    ("南京", "025"),
    ("成都", "028"),
    ("武汉", "027"),
    ("西安", "029"),
    ("苏州", "0512"),
];
const WORD_A: &[&str] = &["华", "金", "东", "宏", "新", "安", "立", "远", "和", "永", "汇", "德"];
const WORD_B: &[&str] = &["信", "盛", "航", "润", "科", "隆", "达", "光", "辉", "邦", "捷", "拓"];
const INDUSTRY: &[&str] = &[
    "机械",
    "化工",
    "医疗器械",
    "软件",
    "包装",
    "建材",
    "汽车配件",
    "纺织",
    "电气",
];
const FORMS: &[&str] = &["有限公司", "股份有限公司", "集团有限公司", "科技有限公司"];
const ROADS: &[&str] = &["人民路", "解放大道", "中山路", "建设路", "科技园路", "长江路", "和平街"];
const LEVELS: &[&str] = &["A", "B", "C"];

fn account_row(cfg: &FxiaokeConfig, index: u64, touched: Option<Touched>) -> Map<String, Value> {
    let hash = mix(index);
    let step = i64::try_from(index).unwrap_or(i64::MAX);
    let original = cfg
        .base_time_ms
        .saturating_add(step.saturating_mul(cfg.spacing_ms.max(0)));
    let created = original - i64::try_from(hash % 90 + 1).unwrap_or(1) * 86_400_000;
    let (modified, revision) = touched.map_or((original, 0), |t| (t.modified_ms, t.revision));
    let (city, area_code) = CITIES[(hash % CITIES.len() as u64) as usize];
    let name = format!(
        "{city}{}{}{}{}",
        pick(WORD_A, hash >> 8),
        pick(WORD_B, hash >> 16),
        pick(INDUSTRY, hash >> 24),
        pick(FORMS, hash >> 32)
    );
    let phone = 10_000_000 + (mix(hash ^ u64::from(revision)) % 90_000_000);
    let mut row = Map::new();
    let created_secs = u32::try_from(created.max(0) / 1000).unwrap_or(u32::MAX);
    row.insert("_id".into(), json!(format!("{created_secs:08x}{hash:016x}")));
    row.insert("name".into(), json!(name));
    row.insert("account_no".into(), json!(format!("KH{index:06}")));
    row.insert("account_level".into(), json!(pick(LEVELS, hash >> 40)));
    row.insert("tel".into(), json!(format!("{area_code}-{phone}")));
    row.insert(
        "address".into(),
        json!(format!(
            "{city}市{}{}号",
            pick(ROADS, hash >> 44),
            1 + (hash >> 48) % 300
        )),
    );
    row.insert(
        "credit_limit".into(),
        json!(format!("{}.00", (1 + (hash >> 52) % 50) * 10_000)),
    );
    row.insert("owner".into(), json!(["1000"]));
    row.insert("record_type".into(), json!("default__c"));
    row.insert("life_status".into(), json!("normal"));
    row.insert(
        "remark".into(),
        json!(if revision == 0 {
            String::new()
        } else {
            format!("第{revision}次修改")
        }),
    );
    row.insert("create_time".into(), json!(created));
    row.insert("last_modified_time".into(), json!(modified));
    row.insert("is_deleted".into(), json!(false));
    row
}

// ---------------------------------------------------------------------------
// Query
// ---------------------------------------------------------------------------

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare(left: &Value, right: &Value) -> std::cmp::Ordering {
    match (as_number(left), as_number(right)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
        _ => as_text(left).cmp(&as_text(right)),
    }
}

struct Filter {
    field: String,
    operator: String,
    values: Vec<Value>,
}

impl Filter {
    fn parse(value: &Value) -> Result<Filter, String> {
        let field = value
            .get("field_name")
            .and_then(Value::as_str)
            .ok_or("参数错误：filters[].field_name 必填")?;
        let operator = value
            .get("operator")
            .and_then(Value::as_str)
            .ok_or("参数错误：filters[].operator 必填")?
            .to_ascii_uppercase();
        let values = match value.get("field_values") {
            Some(Value::Array(values)) => values.clone(),
            _ => return Err("参数错误：filters[].field_values 必须是数组".into()),
        };
        if !matches!(
            operator.as_str(),
            "EQ" | "N" | "GT" | "GTE" | "LT" | "LTE" | "IN" | "NIN" | "LIKE"
        ) {
            return Err(format!("参数错误：不支持的 operator {operator}"));
        }
        if values.is_empty() {
            return Err("参数错误：field_values 不能为空".into());
        }
        Ok(Filter {
            field: field.to_owned(),
            operator,
            values,
        })
    }

    fn matches(&self, row: &Map<String, Value>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let Some(value) = row.get(&self.field) else {
            return self.operator == "N" || self.operator == "NIN";
        };
        // Employee and department fields are lists: any element may match.
        let candidates: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let first = &self.values[0];
        let any = |test: &dyn Fn(&Value) -> bool| candidates.iter().any(|c| test(c));
        match self.operator.as_str() {
            "EQ" => any(&|c| compare(c, first) == Equal),
            "N" => !any(&|c| compare(c, first) == Equal),
            "GT" => any(&|c| compare(c, first) == Greater),
            "GTE" => any(&|c| compare(c, first) != Less),
            "LT" => any(&|c| compare(c, first) == Less),
            "LTE" => any(&|c| compare(c, first) != Greater),
            "IN" => any(&|c| self.values.iter().any(|v| compare(c, v) == Equal)),
            "NIN" => !any(&|c| self.values.iter().any(|v| compare(c, v) == Equal)),
            "LIKE" => any(&|c| as_text(c).contains(&as_text(first))),
            _ => false,
        }
    }
}

struct QuerySpec {
    offset: u64,
    limit: u64,
    filters: Vec<Filter>,
    orders: Vec<(String, bool)>,
    projection: Vec<String>,
    with_total: bool,
}

fn parse_query(data: &Map<String, Value>) -> Result<QuerySpec, (i64, String)> {
    let bad = |message: String| (32000, message);
    match data.get("dataObjectApiName").and_then(Value::as_str) {
        Some(ACCOUNT_OBJECT) => {}
        Some(other) => {
            return Err(bad(format!(
                "对象 {other} 不存在或无权限（模拟器只提供 {ACCOUNT_OBJECT}）"
            )))
        }
        None => return Err(bad("参数错误：dataObjectApiName 必填".into())),
    }
    let empty = Map::new();
    let info = match data.get("search_query_info") {
        Some(Value::Object(info)) => info,
        None => &empty,
        Some(_) => return Err(bad("参数错误：search_query_info 必须是对象".into())),
    };
    let count = |key: &str, default: u64| -> Result<u64, (i64, String)> {
        match info.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => as_number(value)
                .filter(|n| *n >= 0.0 && n.fract() == 0.0)
                .map(|n| n as u64)
                .ok_or_else(|| bad(format!("参数错误：{key} 必须是非负整数"))),
        }
    };
    let limit = count("limit", 20)?;
    let offset = count("offset", 0)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(format!("参数错误：limit 取值 1~{MAX_LIMIT}")));
    }
    if offset > MAX_OFFSET {
        return Err((10013, "offset 不能超过10000，请使用 _id 游标翻页".into()));
    }
    if offset % limit != 0 {
        return Err(bad("参数错误：offset 必须是 limit 的整数倍".into()));
    }
    let filters = match info.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(Filter::parse).collect::<Result<_, _>>().map_err(bad)?,
        Some(_) => return Err(bad("参数错误：filters 必须是数组".into())),
    };
    let orders = match info.get("orders") {
        None | Some(Value::Null) => vec![("_id".to_owned(), true)],
        Some(Value::Array(items)) => items
            .iter()
            .map(|order| {
                let field = order.get("fieldName").and_then(Value::as_str);
                let ascending = order.get("isAsc").and_then(Value::as_bool).unwrap_or(true);
                field
                    .map(|field| (field.to_owned(), ascending))
                    .ok_or_else(|| bad("参数错误：orders[].fieldName 必填".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("参数错误：orders 必须是数组".into())),
    };
    let projection = match info.get("fieldProjection") {
        Some(Value::Array(fields)) => fields.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let with_total = data
        .get("find_explicit_total_num")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(QuerySpec {
        offset,
        limit,
        filters,
        orders,
        projection,
        with_total,
    })
}

async fn query(State(state): State<Arc<FxState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.query_calls.fetch_add(1, Ordering::Relaxed);
    let data = match state.admit(QUERY_PATH, &headers, &body) {
        Ok(data) => data,
        Err(refusal) => return state.refuse(refusal),
    };
    let spec = match parse_query(&data) {
        Ok(spec) => spec,
        Err((code, message)) => return state.error(code, &message),
    };
    let touched = lock(&state.touched).clone();
    let mut rows: Vec<Map<String, Value>> = (1..=state.cfg.records)
        .map(|index| account_row(&state.cfg, index, touched.get(&index).copied()))
        .filter(|row| spec.filters.iter().all(|filter| filter.matches(row)))
        .collect();
    rows.sort_by(|a, b| {
        for (field, ascending) in &spec.orders {
            let order = compare(
                a.get(field).unwrap_or(&Value::Null),
                b.get(field).unwrap_or(&Value::Null),
            );
            let order = if *ascending { order } else { order.reverse() };
            if order.is_ne() {
                return order;
            }
        }
        std::cmp::Ordering::Equal
    });
    let total = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(usize::try_from(spec.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(spec.limit).unwrap_or(usize::MAX))
        .map(|row| {
            if spec.projection.is_empty() {
                return Value::Object(row);
            }
            let kept = row
                .into_iter()
                .filter(|(key, _)| key == "_id" || spec.projection.iter().any(|wanted| wanted == key))
                .collect();
            Value::Object(kept)
        })
        .collect();
    let mut result = Map::new();
    if spec.with_total {
        result.insert("total".into(), json!(total));
    }
    result.insert("offset".into(), json!(spec.offset));
    result.insert("limit".into(), json!(spec.limit));
    result.insert("dataList".into(), Value::Array(page));
    let mut extra = Map::new();
    extra.insert("data".into(), Value::Object(result));
    state.ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::fxiaoke::envelope::{classify, push_outcome, records_path};
    use crate::connector::fxiaoke::request::{build, modified_after, set_query_page, PUSH_API, QUERY_API};
    use crate::connector::fxiaoke::sign::{parse_token, token_request, Token};
    use crate::connector::fxiaoke::{Generation, Settings};
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use tokio::net::TcpListener;

    async fn start(cfg: FxiaokeConfig) -> (FxiaokeSim, SimHandle) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FxiaokeSim::start(cfg, listener).await.unwrap()
    }

    fn settings_for(cfg: &FxiaokeConfig, generation: Generation) -> Settings {
        Settings {
            app_id: cfg.app_id.clone(),
            app_secret: cfg.app_secret.clone(),
            permanent_code: cfg.permanent_code.clone(),
            current_open_user_id: Some(cfg.open_user_id.clone()),
            user_id: Some(cfg.employee_id.clone()),
            generation: Some(generation),
            data_center_id: Some(cfg.data_center_id.clone()),
            token_refresh_margin_secs: None,
        }
    }

    async fn send(request: WireRequest) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut builder = client.post(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(request.body.unwrap_or_default()).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn login(settings: &Settings, base: &str) -> Token {
        let (status, body) = send(token_request(settings, base, 42).unwrap()).await;
        assert_eq!(status, 200);
        parse_token(&body, Utc::now()).unwrap()
    }

    fn query_data(offset: i64, filters: Value) -> Value {
        let mut data = json!({"dataObjectApiName": "AccountObj", "search_query_info": {
            "filters": filters, "orders": [{"fieldName": "_id", "isAsc": true}]}});
        set_query_page(&mut data, offset, 100).unwrap();
        data
    }

    fn order(id: &str, number: &str) -> Value {
        json!({"objAPIName": "erpSalesOrderObj", "id": id, "directSync": false,
               "masterFieldVal": {"number": number, "order_account_id": "042700001", "order_origin_price": "100"},
               "detailFieldVals": {"erpSalesOrderProductObj": [{"number": format!("{number}-0001"), "product_id": "000", "sales_price": "100"}]}})
    }

    #[tokio::test]
    async fn token_success_and_failures() {
        let cfg = FxiaokeConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let first = login(&settings, &base).await;
        assert_eq!(first.corp_id, cfg.corp_id);
        assert_eq!(first.expires_in_secs, 7200);
        // Within the reuse window the same token comes back.
        let again = login(&settings, &base).await;
        assert_eq!(again.access_token, first.access_token);

        let mut wrong = settings.clone();
        wrong.app_secret = "ffffffffffffffffffffffffffffffff".into();
        let (_, body) = send(token_request(&wrong, &base, 1).unwrap()).await;
        let error = parse_token(&body, Utc::now()).unwrap_err();
        assert!(error.contains("10006") && error.contains("app_secret"), "{error}");
        let mut wrong = settings.clone();
        wrong.permanent_code = "0000".into();
        let (_, body) = send(token_request(&wrong, &base, 1).unwrap()).await;
        assert!(parse_token(&body, Utc::now()).unwrap_err().contains("20015"));
        assert_eq!(sim.token_calls(), 4);
        assert_eq!(sim.live_tokens(), 1);
    }

    #[tokio::test]
    async fn business_calls_need_the_right_token_corp_and_operator() {
        let cfg = FxiaokeConfig::default();
        let (_sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        let url = format!("{base}{QUERY_PATH}");
        let unauthenticated = WireRequest {
            method: "POST",
            url: url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(serde_json::to_vec(&json!({"data": query_data(0, json!([]))})).unwrap()),
        };
        let (status, body) = send(unauthenticated).await;
        assert_eq!(status, 200);
        assert_eq!(body["errorCode"], 20017);
        assert!(matches!(classify(status, &body), Verdict::Failed { ref code, .. } if code == "20017"));

        let mut forged = token.clone();
        forged.access_token = "FORGED".into();
        let (status, body) =
            send(build(&settings, &base, QUERY_API, &query_data(0, json!([])), &forged, 1).unwrap()).await;
        assert!(matches!(classify(status, &body), Verdict::SessionExpired(_)), "{body}");

        let mut stranger = settings.clone();
        stranger.current_open_user_id = Some("FSUID_STRANGER".into());
        let (status, body) =
            send(build(&stranger, &base, QUERY_API, &query_data(0, json!([])), &token, 1).unwrap()).await;
        assert!(matches!(classify(status, &body), Verdict::Failed { ref code, .. } if code == "20012"));
    }

    #[tokio::test]
    async fn pages_to_the_end_and_filters_incrementally() {
        let cfg = FxiaokeConfig {
            records: 230,
            ..FxiaokeConfig::default()
        };
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        assert_eq!(records_path(QUERY_API), Some("$.data.dataList[*]"));

        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let request = build(&settings, &base, QUERY_API, &query_data(offset, json!([])), &token, 9).unwrap();
            let (status, body) = send(request).await;
            assert_eq!(classify(status, &body), Verdict::Ok, "{body}");
            assert_eq!(body["data"]["total"], 230);
            let rows = body["data"]["dataList"].as_array().unwrap().clone();
            if rows.is_empty() {
                break;
            }
            seen.extend(rows.iter().map(|row| row["_id"].as_str().unwrap().to_owned()));
            offset += 100;
        }
        assert_eq!(seen.len(), 230);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen, "ids are unique and served in _id order");

        let now = Utc::now();
        assert!(sim.touch(7, now));
        assert!(sim.touch(120, now));
        assert!(!sim.touch(231, now));
        let since = now.timestamp_millis() - 1;
        let request = build(
            &settings,
            &base,
            QUERY_API,
            &query_data(0, json!([modified_after(since)])),
            &token,
            3,
        )
        .unwrap();
        let (_, body) = send(request).await;
        let numbers: Vec<&str> = body["data"]["dataList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["account_no"].as_str().unwrap())
            .collect();
        let mut numbers = numbers;
        numbers.sort();
        assert_eq!(numbers, ["KH000007", "KH000120"]);
        assert_eq!(body["data"]["total"], 2);
        assert_eq!(sim.account(7).unwrap()["remark"], "第1次修改");

        // Paging rules: limit over 100, offset over 10000, offset not a multiple of limit.
        for (info, code) in [
            (json!({"limit": 101, "offset": 0}), 32000),
            (json!({"limit": 100, "offset": 10100}), 10013),
            (json!({"limit": 100, "offset": 50}), 32000),
        ] {
            let data = json!({"dataObjectApiName": "AccountObj", "search_query_info": info});
            let (_, body) = send(build(&settings, &base, QUERY_API, &data, &token, 3).unwrap()).await;
            assert_eq!(body["errorCode"], code, "{body}");
        }
    }

    #[tokio::test]
    async fn lookup_by_business_key_with_projection() {
        let cfg = FxiaokeConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        let data = json!({"dataObjectApiName": "AccountObj", "find_explicit_total_num": false,
            "search_query_info": {"limit": 10, "offset": 0,
                "filters": [{"field_name": "account_no", "operator": "EQ", "field_values": ["KH000042"]}],
                "fieldProjection": ["name", "account_no"]}});
        let (_, body) = send(build(&settings, &base, QUERY_API, &data, &token, 3).unwrap()).await;
        let rows = body["data"]["dataList"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        let expected = sim.account(42).unwrap();
        assert_eq!(
            rows[0],
            json!({"_id": expected["_id"], "name": expected["name"], "account_no": "KH000042"})
        );
        assert!(body["data"].get("total").is_none());
    }

    #[tokio::test]
    async fn pushes_validate_each_record_and_repush_updates() {
        let cfg = FxiaokeConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;

        let mut bad = order("112", "04270003");
        bad.as_object_mut().unwrap().remove("objAPIName");
        let batch = [order("111", "04270002"), bad.clone(), order("113", "04270004")];
        let mut outcomes = Vec::new();
        for (n, record) in batch.iter().enumerate() {
            let request = build(&settings, &base, PUSH_API, record, &token, n as u128).unwrap();
            assert!(request.url.contains("thirdTraceId="));
            let (status, body) = send(request).await;
            assert_eq!(status, 200);
            outcomes.push(push_outcome(PUSH_API, &body, record).unwrap());
        }
        assert_eq!(outcomes[0], RowOutcome::written(Some("111".into())));
        assert!(
            matches!(&outcomes[1], RowOutcome::Failed { message, class: "rejected" } if message.contains("objAPIName"))
        );
        assert_eq!(outcomes[2], RowOutcome::written(Some("113".into())));
        assert_eq!(sim.written().len(), 2);
        assert_eq!(sim.written_for("erpSalesOrderObj").len(), 2);
        assert!(sim.written_for("other").is_empty());
        assert_eq!(sim.write_calls(), 3);
        // The connector's default dataCenterId reached the server.
        assert_eq!(sim.written_by_key("111").unwrap()["dataCenterId"], cfg.data_center_id);

        let mut changed = order("111", "04270002");
        changed["masterFieldVal"]["order_origin_price"] = json!("120");
        let (_, body) = send(build(&settings, &base, PUSH_API, &changed, &token, 7).unwrap()).await;
        assert_eq!(classify(200, &body), Verdict::Ok);
        assert_eq!(sim.written().len(), 2);
        assert_eq!(sim.push_versions("erpSalesOrderObj", "111"), 2);
        assert_eq!(
            sim.written_by_key("111").unwrap()["masterFieldVal"]["order_origin_price"],
            "120"
        );

        // A wrong data center and a directSync without destination (sent raw) are refused.
        let mut foreign = order("114", "04270005");
        foreign["dataCenterId"] = json!("000000000000000000000000");
        let (_, body) = send(build(&settings, &base, PUSH_API, &foreign, &token, 8).unwrap()).await;
        assert!(matches!(classify(200, &body), Verdict::Failed { ref message, .. } if message.contains("数据中心")));
        let raw = json!({"corpAccessToken": token.access_token, "corpId": token.corp_id,
                         "currentOpenUserId": cfg.open_user_id,
                         "data": {"objAPIName": "erpSalesOrderObj", "dataCenterId": cfg.data_center_id,
                                  "id": "115", "directSync": true, "masterFieldVal": {}}});
        let (_, body) = send(WireRequest {
            method: "POST",
            url: format!("{base}{PUSH_PATH}"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(serde_json::to_vec(&raw).unwrap()),
        })
        .await;
        assert!(
            body["errorMessage"].as_str().unwrap().contains("destObjectApiName"),
            "{body}"
        );
        assert_eq!(sim.written().len(), 2);
    }

    #[tokio::test]
    async fn expired_tokens_answer_20016_and_a_new_login_works() {
        let cfg = FxiaokeConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        let data = query_data(0, json!([]));
        let (status, body) = send(build(&settings, &base, QUERY_API, &data, &token, 1).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok);

        sim.expire_tokens();
        let (status, body) = send(build(&settings, &base, QUERY_API, &data, &token, 2).unwrap()).await;
        assert!(matches!(classify(status, &body), Verdict::SessionExpired(_)), "{body}");
        let fresh = login(&settings, &base).await;
        assert_ne!(fresh.access_token, token.access_token);
        let (status, body) = send(build(&settings, &base, QUERY_API, &data, &fresh, 3).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok);
    }

    #[tokio::test]
    async fn short_lived_tokens_expire_by_time() {
        let cfg = FxiaokeConfig {
            token_ttl_secs: 1,
            ..FxiaokeConfig::default()
        };
        let (_sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        assert_eq!(token.expires_in_secs, 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, body) =
            send(build(&settings, &base, QUERY_API, &query_data(0, json!([])), &token, 1).unwrap()).await;
        assert!(matches!(classify(status, &body), Verdict::SessionExpired(_)));
    }

    #[tokio::test]
    async fn new_generation_round_trip_and_no_mixing() {
        let cfg = FxiaokeConfig::default();
        let (_sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::Oauth2);
        let token = login(&settings, &base).await;
        assert_eq!(token.generation, Generation::Oauth2);
        assert_eq!(token.corp_id, cfg.ea);
        let (status, body) =
            send(build(&settings, &base, QUERY_API, &query_data(0, json!([])), &token, 5).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok, "{body}");
        let (_, body) = send(build(&settings, &base, PUSH_API, &order("9", "X9"), &token, 6).unwrap()).await;
        assert_eq!(classify(200, &body), Verdict::Ok, "{body}");

        // An old-generation token presented the new way is refused.
        let old_settings = settings_for(&cfg, Generation::CorpAccessToken);
        let mut old = login(&old_settings, &base).await;
        old.generation = Generation::Oauth2;
        old.corp_id = cfg.ea.clone();
        let (status, body) =
            send(build(&settings, &base, QUERY_API, &query_data(0, json!([])), &old, 5).unwrap()).await;
        assert!(matches!(classify(status, &body), Verdict::SessionExpired(_)));
    }

    #[tokio::test]
    async fn interface_limit_throttles_with_30004() {
        let cfg = FxiaokeConfig {
            interface_limit: Some(CallLimit {
                calls: 3,
                per: Duration::from_secs(20),
            }),
            ..FxiaokeConfig::default()
        };
        let (_sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        let mut verdicts = Vec::new();
        for n in 0..4 {
            let (status, body) =
                send(build(&settings, &base, QUERY_API, &query_data(0, json!([])), &token, n).unwrap()).await;
            verdicts.push(classify(status, &body));
        }
        assert_eq!(&verdicts[..3], [Verdict::Ok, Verdict::Ok, Verdict::Ok]);
        assert!(
            matches!(&verdicts[3], Verdict::Throttled(m) if m.contains("30004")),
            "{verdicts:?}"
        );
        // The limit is per interface: pushes still go through.
        let (_, body) = send(build(&settings, &base, PUSH_API, &order("1", "N1"), &token, 9).unwrap()).await;
        assert_eq!(classify(200, &body), Verdict::Ok);
    }

    #[tokio::test]
    async fn fault_layer_and_quota_use_fxiaoke_codes() {
        let cfg = FxiaokeConfig {
            daily_quota: Some(2),
            faults: Faults {
                rate_limit_per_sec: Some(2),
                only_path_prefix: Some("/cgi/crm/".into()),
                ..Faults::default()
            },
            ..FxiaokeConfig::default()
        };
        let (sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        let token = login(&settings, &base).await;
        let data = query_data(0, json!([]));
        let mut verdicts = Vec::new();
        for n in 0..3 {
            let (status, body) = send(build(&settings, &base, QUERY_API, &data, &token, n).unwrap()).await;
            assert_eq!(status, 200);
            verdicts.push(classify(status, &body));
        }
        assert_eq!(&verdicts[..2], [Verdict::Ok, Verdict::Ok]);
        assert!(matches!(&verdicts[2], Verdict::Throttled(m) if m.contains("30004")));

        sim.set_faults(Faults::default());
        let (_, body) = send(build(&settings, &base, QUERY_API, &data, &token, 4).unwrap()).await;
        assert!(
            matches!(classify(200, &body), Verdict::Failed { ref code, ref message } if code == "30002" && message.contains("will not help"))
        );

        sim.set_faults(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        let (status, body) = send(build(&settings, &base, QUERY_API, &data, &token, 5).unwrap()).await;
        assert_eq!(status, 200);
        assert!(matches!(classify(status, &body), Verdict::Throttled(ref m) if m.contains("-1")));
    }

    #[tokio::test]
    async fn token_endpoint_allows_ten_calls_a_minute() {
        let cfg = FxiaokeConfig::default();
        let (_sim, handle) = start(cfg.clone()).await;
        let base = handle.base_url();
        let settings = settings_for(&cfg, Generation::CorpAccessToken);
        for _ in 0..10 {
            login(&settings, &base).await;
        }
        let (_, body) = send(token_request(&settings, &base, 1).unwrap()).await;
        assert_eq!(body["errorCode"], 14001);
        assert!(parse_token(&body, Utc::now()).unwrap_err().contains("cache the token"));
    }
}
