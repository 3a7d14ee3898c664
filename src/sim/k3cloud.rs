//! The Kingdee K3Cloud (金蝶云星空) WebAPI simulator, for tests, `ferry demo` and
//! `ferry simulate k3cloud`.
//!
//! **Transport.** Every `POST …/<Service>.common.kdsvc` under any prefix (e.g. `/k3cloud/`) is
//! dispatched on the service name; an unknown service gets the gateway's HTTP 519
//! `{"errcode":5001,…}`. Business errors are HTTP 200 with `Result.ResponseStatus`, as on the
//! real server.
//!
//! **Auth, verified like the real server.**
//! * Signed headers (SDK 8.2.0): the gateway half is recomputed from the received path,
//!   `x-api-nonce` and `x-api-timestamp` with the configured AppID's decoded tail. A missing
//!   AppID gets 519 errcode 4002, a timestamp more than `max_clock_skew_secs` away (or not in
//!   seconds) 519 errcode 4006, a wrong client id 519 errcode 4001 and a wrong signature 519
//!   errcode 4003 (the last two codes are this simulator's choice; the reference lists none).
//!   The K3Cloud half (`X-Kd-Appdata` naming the configured AcctID and user, `X-Kd-Signature`
//!   keyed with the AppSecret) failing gets the "会话信息已丢失，请重新登录" answer (MsgCode 1),
//!   which is how a real server reports a wrong AcctID or app.
//! * Legacy sessions: `AuthService.ValidateUser` (named or `parameters` body),
//!   `LoginByAppSecret` and `LoginBySign` set the `kdservice-sessionid` cookie; unsigned calls
//!   must carry it (cookie or header) or get the session-lost answer.
//!   [`K3CloudSim::expire_sessions`] forgets every session.
//!
//! **Data.** Seeded `BD_Customer` (ids from 100001, numbers `CUST0001`…) and `BD_MATERIAL`
//! (ids from 200001, numbers `WL00001`…) rows with Chinese names, modified at
//! `base_time + i * spacing_secs`. Rows are materialised at start (rejected alternative: the
//! shop's lazy index arithmetic, which does not fit arbitrary `FilterString`s and in-place
//! updates; a few thousand rows cost little).
//!
//! **Operations.** `Save`/`BatchSave` validate each package on its own (`FName` and a known
//! `FCreateOrgId.FNumber` are required, `FNumber` must be unique and is generated when absent)
//! and answer `SuccessEntitys[{Id,Number,DIndex}]` and `Errors[{FieldName,Message,DIndex}]`; a
//! package whose key field (`FCUSTID`/`FMATERIALID`, or `FID`) is non-zero updates that row,
//! honouring `NeedUpDateFields` and `IsDeleteEntry` (default true: entry rows not repeated are
//! deleted). `Submit`/`Audit`/`UnAudit`/`Delete` take `Ids` or `Numbers`; `View` takes `Id` or
//! `Number` and answers with the row (field keys, not the real server's property names).
//! `ExecuteBillQuery` (arrays of arrays) and `BillQuery` (objects) support `FieldKeys` with
//! sub-keys (`FCreateOrgId.FNumber`), a SQL-like `FilterString` (`=`, `<>`, `!=`, `>`, `>=`,
//! `<`, `<=`, `LIKE`, joined by `AND`/`OR`, values quoted or numeric; dates compare as dates),
//! `OrderString`, `TopRowCount`, `StartRow` and `Limit` (0 = all; capped at `max_limit`).
//! Query errors come back nested in the array, as on the real server. The SDK's async query
//! mode (`beginmethod`) is answered at once with `Status: 2`.
//!
//! **Faults.** Over `faults.rate_limit_per_sec` the answer is the MsgCode 14 envelope (always
//! the object form, even for queries: the fault layer does not know the operation);
//! `fail_rate` answers HTTP 500 with a MsgCode 4 envelope.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use super::{instrument, serve, FaultReplies, Faults, LogMode, RecordedRequest, RequestLog, SimControl, SimHandle};
use crate::connector::k3cloud::sign;

/// Default tolerance between a signed request's timestamp and the simulator's clock.
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: i64 = 300;
/// The session-lost message.
pub const SESSION_LOST: &str = "会话信息已丢失，请重新登录";
/// Organisations that exist (number, name).
pub const ORGS: &[(&str, &str)] = &[
    ("100", "总部"),
    ("101", "华东销售公司"),
    ("102", "华南销售公司"),
    ("103", "生产中心"),
];

const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const KDSVC_SUFFIX: &str = ".common.kdsvc";
const FORM_SERVICE_PREFIX: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.";
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// How the simulator behaves. The default credentials are the §9 test-vector credentials.
#[derive(Clone, Debug)]
pub struct K3CloudConfig {
    /// Seeded `BD_Customer` rows (default 120).
    pub records: u64,
    /// Seeded `BD_MATERIAL` rows (default 40).
    pub materials: u64,
    /// Faults at start; change them with [`K3CloudSim::set_faults`].
    pub faults: Faults,
    /// Data-center id (default `65a0b1c2d3e4f5`).
    pub acct_id: String,
    /// Integration user (default `apiuser`).
    pub username: String,
    /// Password for `ValidateUser` (default `Passw0rd!`).
    pub password: String,
    /// Third-party AppID (default `123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4`).
    pub app_id: String,
    /// Third-party AppSecret (default `0123456789abcdef0123456789abcdef`).
    pub app_secret: String,
    /// Largest accepted clock difference for signed requests, seconds (default 300).
    pub max_clock_skew_secs: i64,
    /// Largest query `Limit` honoured (default 10000).
    pub max_limit: u64,
    /// Seeded row `i` is modified at `base_time + i * spacing_secs` (default 2024-03-01
    /// 08:00:00, server-local time).
    pub base_time: NaiveDateTime,
    /// Seconds between seeded rows (default 1800).
    pub spacing_secs: i64,
}

impl Default for K3CloudConfig {
    fn default() -> Self {
        let base_time = NaiveDate::from_ymd_opt(2024, 3, 1)
            .and_then(|day| day.and_hms_opt(8, 0, 0))
            .unwrap_or_default();
        K3CloudConfig {
            records: 120,
            materials: 40,
            faults: Faults::default(),
            acct_id: "65a0b1c2d3e4f5".to_owned(),
            username: "apiuser".to_owned(),
            password: "Passw0rd!".to_owned(),
            app_id: "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4".to_owned(),
            app_secret: "0123456789abcdef0123456789abcdef".to_owned(),
            max_clock_skew_secs: DEFAULT_MAX_CLOCK_SKEW_SECS,
            max_limit: 10_000,
            base_time,
            spacing_secs: 1800,
        }
    }
}

/// A K3Cloud simulator; clones share the same state.
#[derive(Clone)]
pub struct K3CloudSim {
    state: Arc<SimState>,
}

impl std::fmt::Debug for K3CloudSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K3CloudSim")
            .field("customers", &self.row_count("BD_Customer"))
            .field("materials", &self.row_count("BD_MATERIAL"))
            .field("write_calls", &self.write_calls())
            .finish_non_exhaustive()
    }
}

struct SimState {
    cfg: K3CloudConfig,
    control: Arc<SimControl>,
    store: Mutex<Store>,
    sessions: Mutex<HashSet<String>>,
    session_counter: AtomicU64,
    write_calls: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl K3CloudSim {
    /// Builds and seeds the simulator; nothing listens until [`K3CloudSim::start`] or until
    /// [`K3CloudSim::router`] is served.
    pub fn new(cfg: K3CloudConfig) -> K3CloudSim {
        let control = SimControl::new(cfg.faults.clone(), RequestLog::new(LogMode::Full), K3Replies);
        let store = Store::seeded(&cfg);
        K3CloudSim {
            state: Arc::new(SimState {
                cfg,
                control: Arc::new(control),
                store: Mutex::new(store),
                sessions: Mutex::new(HashSet::new()),
                session_counter: AtomicU64::new(0),
                write_calls: AtomicU64::new(0),
            }),
        }
    }

    /// Builds a simulator and serves it on `listener`.
    pub async fn start(cfg: K3CloudConfig, listener: tokio::net::TcpListener) -> io::Result<(K3CloudSim, SimHandle)> {
        let sim = K3CloudSim::new(cfg);
        let handle = serve(listener, sim.router()).await?;
        Ok((sim, handle))
    }

    /// Every route (one dispatcher on the service name), with the log and fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&self.state))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Changes seeded customer `index` (1-based): its phone and description, and moves its
    /// `FModifyDate` to `now`. False when there is no such customer.
    pub fn touch(&self, index: u64, now: NaiveDateTime) -> bool {
        let Ok(offset) = i64::try_from(index) else { return false };
        let mut store = lock(&self.state.store);
        let Some(table) = store.table_mut("BD_Customer") else {
            return false;
        };
        let Some(row) = table.rows.get_mut(&(table.spec.first_id + offset - 1)) else {
            return false;
        };
        let revision = row
            .get("FDescription")
            .and_then(Value::as_str)
            .map_or(0, |text| text.trim_start_matches("修改").parse::<u64>().unwrap_or(0))
            + 1;
        row.insert("FDescription".to_owned(), Value::String(format!("修改{revision}")));
        row.insert(
            "FTEL".to_owned(),
            Value::String(format!("021-{:08}", mix(index + revision) % 100_000_000)),
        );
        row.insert("FModifyDate".to_owned(), Value::String(format_time(now)));
        true
    }

    /// Forgets every legacy session: the next unsigned call gets the session-lost answer.
    pub fn expire_sessions(&self) {
        lock(&self.state.sessions).clear();
    }

    /// Live legacy sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.state.sessions).len()
    }

    /// Every package saved by `Save`/`BatchSave`, in order, as stored right after its write
    /// (with `FormId` added).
    pub fn written(&self) -> Vec<Value> {
        lock(&self.state.store).written.clone()
    }

    /// The current row whose `FNumber` is `number` in any form, if it was ever written by
    /// `Save`/`BatchSave` (seeded rows are not "written").
    pub fn written_by_key(&self, number: &str) -> Option<Value> {
        let store = lock(&self.state.store);
        let form = store
            .written
            .iter()
            .rev()
            .find(|row| row.get("FNumber").and_then(Value::as_str) == Some(number))?
            .get("FormId")?
            .as_str()?
            .to_owned();
        store.row_by_number(&form, number)
    }

    /// The current row of `form` with `FNumber` `number` (seeded or written).
    pub fn row(&self, form: &str, number: &str) -> Option<Value> {
        lock(&self.state.store).row_by_number(form, number)
    }

    /// Rows `form` holds (0 for an unknown form).
    pub fn row_count(&self, form: &str) -> usize {
        lock(&self.state.store).table(form).map_or(0, |table| table.rows.len())
    }

    /// `Save`/`BatchSave` requests that reached the handler.
    pub fn write_calls(&self) -> u64 {
        self.state.write_calls.load(Ordering::Relaxed)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.control.log().entries()
    }

    /// Number of requests received.
    pub fn request_count(&self) -> u64 {
        self.state.control.log().count()
    }

    /// Replaces the faults (reseeding the failure RNG).
    pub fn set_faults(&self, faults: Faults) {
        self.state.control.faults().set(faults);
    }

    /// Edits the live faults in place.
    pub fn update_faults(&self, edit: impl FnOnce(&mut Faults)) {
        self.state.control.faults().update(edit);
    }

    /// The live faults.
    pub fn faults(&self) -> Faults {
        self.state.control.faults().current()
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

/// The simulator's throttled and failed answers, in K3Cloud's envelope.
struct K3Replies;

impl FaultReplies for K3Replies {
    fn throttled(&self) -> Response {
        let body = status_body(
            vec![error_entry("", "接口调用频率超出限制，请稍后再试", 0)],
            Vec::new(),
            14,
            Map::new(),
        );
        (StatusCode::OK, Json(body)).into_response()
    }

    fn server_error(&self) -> Response {
        let body = status_body(
            vec![error_entry("", "模拟服务器内部错误", 0)],
            Vec::new(),
            4,
            Map::new(),
        );
        (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
    }
}

fn error_entry(field: &str, message: &str, index: usize) -> Value {
    json!({"FieldName": field, "Message": message, "DIndex": index})
}

/// `{"Result":{"ResponseStatus":{…}, …extra}}`; success when `errors` is empty.
fn status_body(errors: Vec<Value>, successes: Vec<Value>, msg_code: i64, extra: Map<String, Value>) -> Value {
    let ok = errors.is_empty();
    let mut result = Map::new();
    result.insert(
        "ResponseStatus".to_owned(),
        json!({
            "ErrorCode": if ok { 0 } else { 500 },
            "IsSuccess": ok,
            "Errors": errors,
            "SuccessEntitys": successes,
            "SuccessMessages": [],
            "MsgCode": if ok { 0 } else { msg_code },
        }),
    );
    result.extend(extra);
    json!({ "Result": result })
}

fn failure(message: &str, msg_code: i64) -> Value {
    status_body(vec![error_entry("", message, 0)], Vec::new(), msg_code, Map::new())
}

fn ok_json(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

fn gateway_error(errcode: i64, description: &str, description_cn: &str) -> Response {
    let body = json!({"errcode": errcode, "description": description, "description_cn": description_cn});
    let status = StatusCode::from_u16(519).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------------------
// Time and small helpers
// ---------------------------------------------------------------------------

fn format_time(time: NaiveDateTime) -> String {
    time.format(TIME_FORMAT).to_string()
}

/// The server's local time (UTC+8).
fn server_now() -> NaiveDateTime {
    Utc::now().naive_utc() + Duration::hours(8)
}

/// Parses the date-time spellings clients send and the server returns.
fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ];
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
        })
}

/// A deterministic 64-bit mix (splitmix64).
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn flag(data: &Map<String, Value>, key: &str, default: bool) -> bool {
    match get_ci(data, key) {
        Some(Value::Bool(value)) => *value,
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => default,
        },
        _ => default,
    }
}

/// Case-insensitive key lookup (K3Cloud field keys ignore case).
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn key_of(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.keys().find(|name| name.eq_ignore_ascii_case(key)).cloned()
}

fn percent_decode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |byte: u8| char::from(byte).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

struct FormSpec {
    id: &'static str,
    key: &'static str,
    label: &'static str,
    number_prefix: &'static str,
    first_id: i64,
}

const FORMS: &[FormSpec] = &[
    FormSpec {
        id: "BD_Customer",
        key: "FCUSTID",
        label: "客户",
        number_prefix: "CUST",
        first_id: 100_001,
    },
    FormSpec {
        id: "BD_MATERIAL",
        key: "FMATERIALID",
        label: "物料",
        number_prefix: "WL",
        first_id: 200_001,
    },
];

struct Table {
    spec: &'static FormSpec,
    rows: BTreeMap<i64, Map<String, Value>>,
    by_number: HashMap<String, i64>,
    /// Every field key ever stored (for "field does not exist" errors), upper-cased.
    known_fields: HashSet<String>,
    next_id: i64,
    next_entry_id: i64,
}

impl Table {
    fn new(spec: &'static FormSpec) -> Table {
        let mut known_fields: HashSet<String> = ["FID", "FNUMBER", "FNAME", "FCREATEORGID", "FUSEORGID", "FMODIFYDATE"]
            .iter()
            .map(|key| (*key).to_owned())
            .collect();
        known_fields.insert(spec.key.to_ascii_uppercase());
        Table {
            spec,
            rows: BTreeMap::new(),
            by_number: HashMap::new(),
            known_fields,
            next_id: spec.first_id,
            next_entry_id: 1,
        }
    }

    fn insert(&mut self, id: i64, row: Map<String, Value>) {
        if let Some(number) = row.get("FNumber").and_then(text_of) {
            self.by_number.insert(number, id);
        }
        for key in row.keys() {
            self.known_fields.insert(key.to_ascii_uppercase());
            if let Some(Value::Array(entries)) = row.get(key) {
                for entry in entries.iter().filter_map(Value::as_object) {
                    self.known_fields
                        .extend(entry.keys().map(|inner| inner.to_ascii_uppercase()));
                }
            }
        }
        self.next_id = self.next_id.max(id + 1);
        self.rows.insert(id, row);
    }

    fn id_by_number(&self, number: &str) -> Option<i64> {
        self.by_number.get(number).copied()
    }

    fn public_row(&self, id: i64) -> Option<Value> {
        self.rows.get(&id).map(|row| Value::Object(row.clone()))
    }
}

struct Store {
    tables: Vec<Table>,
    written: Vec<Value>,
}

const CITIES: &[&str] = &[
    "上海", "北京", "深圳", "广州", "杭州", "苏州", "成都", "武汉", "南京", "天津",
];
const CORES: &[&str] = &[
    "华鑫", "恒通", "瑞丰", "嘉禾", "信达", "永泰", "鼎盛", "宏远", "安捷", "博瑞", "启明", "万联",
];
const TRADES: &[&str] = &["贸易", "科技", "电子", "物流", "食品", "机械"];
const PARTS: &[&str] = &["螺丝", "螺母", "垫片", "轴承", "齿轮", "弹簧", "铆钉", "法兰"];

impl Store {
    fn seeded(cfg: &K3CloudConfig) -> Store {
        let mut tables: Vec<Table> = FORMS.iter().map(Table::new).collect();
        let time_of = |i: u64| {
            let offset = i64::try_from(i)
                .unwrap_or(i64::MAX)
                .saturating_mul(cfg.spacing_secs.max(0));
            cfg.base_time + Duration::seconds(offset)
        };
        if let Some(customers) = tables.get_mut(0) {
            for i in 1..=cfg.records {
                let index = usize::try_from(i).unwrap_or(0);
                let name = format!(
                    "{}{}{}有限公司",
                    CITIES[index % CITIES.len()],
                    CORES[(index / CITIES.len()) % CORES.len()],
                    TRADES[(index / (CITIES.len() * CORES.len())) % TRADES.len()]
                );
                let modified = time_of(i);
                let org = ORGS[index % 3].0;
                let id = customers.spec.first_id + i64::try_from(i).unwrap_or(0) - 1;
                let row = json!({
                    "FCUSTID": id,
                    "FNumber": format!("CUST{i:04}"),
                    "FName": name,
                    "FShortName": format!("{}{}", CITIES[index % CITIES.len()], CORES[(index / CITIES.len()) % CORES.len()]),
                    "FCreateOrgId": {"FNumber": org},
                    "FUseOrgId": {"FNumber": org},
                    "FTEL": format!("021-{:08}", mix(i) % 100_000_000),
                    "FDescription": "",
                    "FDocumentStatus": "C",
                    "FForbidStatus": "A",
                    "FCreateDate": format_time(modified - Duration::days(30)),
                    "FModifyDate": format_time(modified),
                });
                if let Value::Object(row) = row {
                    customers.insert(id, row);
                }
            }
        }
        if let Some(materials) = tables.get_mut(1) {
            for i in 1..=cfg.materials {
                let index = usize::try_from(i).unwrap_or(0);
                let modified = time_of(i);
                let id = materials.spec.first_id + i64::try_from(i).unwrap_or(0) - 1;
                let row = json!({
                    "FMATERIALID": id,
                    "FNumber": format!("WL{i:05}"),
                    "FName": PARTS[index % PARTS.len()],
                    "FSpecification": format!("M{}×{}", 3 + index % 8, 10 + (index / 8 % 5) * 5),
                    "FCreateOrgId": {"FNumber": "100"},
                    "FUseOrgId": {"FNumber": "100"},
                    "FBaseUnitId": {"FNumber": "Pcs"},
                    "FDocumentStatus": "C",
                    "FForbidStatus": "A",
                    "FCreateDate": format_time(modified - Duration::days(60)),
                    "FModifyDate": format_time(modified),
                });
                if let Value::Object(row) = row {
                    materials.insert(id, row);
                }
            }
        }
        Store {
            tables,
            written: Vec::new(),
        }
    }

    fn table(&self, form: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|table| table.spec.id.eq_ignore_ascii_case(form))
    }

    fn table_mut(&mut self, form: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|table| table.spec.id.eq_ignore_ascii_case(form))
    }

    fn row_by_number(&self, form: &str, number: &str) -> Option<Value> {
        let table = self.table(form)?;
        table.public_row(table.id_by_number(number)?)
    }
}

// ---------------------------------------------------------------------------
// Dispatch and auth
// ---------------------------------------------------------------------------

async fn dispatch(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let Some(service) = path.rsplit('/').next().and_then(|last| last.strip_suffix(KDSVC_SUFFIX)) else {
        return gateway_error(5001, "API not found", "接口不存在");
    };
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "K3Cloud services accept POST only").into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => return ok_json(failure(&format!("请求参数不是有效的JSON：{err}"), 8)),
    };
    match service {
        "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser"
        | "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret"
        | "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign" => login(&state, service, &request),
        "Kingdee.BOS.ServiceFacade.ServicesStub.Account.AccountService.GetDataCenterList" => ok_json(json!([{
            "Id": state.cfg.acct_id, "Number": "K3SIM", "Name": "Ferry 模拟账套", "DatabaseType": 3, "Edition": "8.2"
        }])),
        _ => {
            let Some(op) = service.strip_prefix(FORM_SERVICE_PREFIX) else {
                return gateway_error(5001, "API not found", "接口不存在");
            };
            if !KNOWN_OPS.contains(&op) {
                return gateway_error(5001, "API not found", "接口不存在");
            }
            let is_query = matches!(op, "ExecuteBillQuery" | "BillQuery");
            let cookie = match authenticate(&state, &headers, path) {
                Ok(cookie) => cookie,
                Err(Refusal::Gateway(errcode, description, description_cn)) => {
                    return gateway_error(errcode, description, description_cn)
                }
                Err(Refusal::SessionLost) => {
                    let lost = failure(SESSION_LOST, 1);
                    return ok_json(if is_query { json!([[lost]]) } else { lost });
                }
            };
            let answer = business(&state, op, &request);
            let answer = if get_str(&request, "beginmethod") == Some("BeginQueryImpl") {
                json!({"TaskId": format!("{:032x}", mix(state.session_counter.fetch_add(1, Ordering::Relaxed))), "Status": 2, "Result": answer})
            } else {
                answer
            };
            let mut response = ok_json(answer);
            if let Some(cookie) = cookie {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
    }
}

const KNOWN_OPS: &[&str] = &[
    "Save",
    "BatchSave",
    "Submit",
    "Audit",
    "UnAudit",
    "Delete",
    "View",
    "ExecuteBillQuery",
    "BillQuery",
];

fn get_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

enum Refusal {
    /// A gateway refusal: HTTP 519 with this errcode and descriptions.
    Gateway(i64, &'static str, &'static str),
    SessionLost,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The session id a request carries (header or cookie).
fn session_id(headers: &HeaderMap) -> Option<String> {
    if let Some(id) = header_text(headers, "kdservice-sessionid").filter(|id| !id.is_empty()) {
        return Some(id.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("kdservice-sessionid"))
        .map(|(_, id)| id.to_owned())
}

/// Checks a business call; on success returns a `Set-Cookie` value to send (signed calls
/// get a fresh context cookie, as the real server sets one).
fn authenticate(state: &SimState, headers: &HeaderMap, path: &str) -> Result<Option<String>, Refusal> {
    let signed = ["X-Api-Signature", "X-Kd-Appkey", "X-Api-ClientID"]
        .iter()
        .any(|name| headers.contains_key(*name));
    if !signed {
        let known = session_id(headers).is_some_and(|id| lock(&state.sessions).contains(&id));
        return if known { Ok(None) } else { Err(Refusal::SessionLost) };
    }
    let cfg = &state.cfg;
    let app_key = header_text(headers, "X-Kd-Appkey").unwrap_or_default();
    if app_key.is_empty() {
        return Err(Refusal::Gateway(4002, "APP_ID is empty", "应用ID为空"));
    }
    let timestamp = header_text(headers, "x-api-timestamp").unwrap_or_default();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|ts| (Utc::now().timestamp() - ts).abs() <= cfg.max_clock_skew_secs);
    if !fresh {
        return Err(Refusal::Gateway(
            4006,
            "Unauthorized, the request header X-Api-TimeStamp is invalid or expired",
            "请求头X-Api-TimeStamp无效或已过期",
        ));
    }
    let (client_id, client_sec) = sign::split_app_id(&cfg.app_id, sign::DEFAULT_XOR_KEY);
    if header_text(headers, "X-Api-ClientID") != Some(client_id.as_str()) || app_key != cfg.app_id {
        return Err(Refusal::Gateway(
            4001,
            "Unauthorized, X-Api-ClientID or X-Kd-Appkey is invalid",
            "应用ID无效",
        ));
    }
    let nonce = header_text(headers, "x-api-nonce").unwrap_or_default();
    let expected = sign::api_signature(&client_sec, &percent_decode_path(path), nonce, timestamp);
    let sign_headers_ok =
        header_text(headers, "x-api-signheaders").is_some_and(|value| value.eq_ignore_ascii_case(sign::SIGN_HEADERS));
    if !sign_headers_ok || header_text(headers, "X-Api-Signature") != Some(expected.as_str()) {
        return Err(Refusal::Gateway(
            4003,
            "Unauthorized, X-Api-Signature is invalid",
            "签名验证失败",
        ));
    }
    let app_data = header_text(headers, "X-Kd-Appdata")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    let parts: Vec<&str> = app_data.split(',').collect();
    let names_us = parts.len() == 4 && parts[0] == cfg.acct_id && parts[1] == cfg.username;
    let kd_ok = header_text(headers, "X-Kd-Signature")
        == Some(sign::kd_signature(&cfg.app_id, &cfg.app_secret, &app_data).as_str());
    if !names_us || !kd_ok {
        return Err(Refusal::SessionLost);
    }
    Ok(Some(format!(
        "kdservice-sessionid={}; path=/; HttpOnly",
        new_session_token(state)
    )))
}

fn new_session_token(state: &SimState) -> String {
    let n = state.session_counter.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{:08x}-{:016x}", n, mix(n ^ 0x004B_3343_4C4F_5544))
}

fn login(state: &SimState, service: &str, request: &Value) -> Response {
    let cfg = &state.cfg;
    // `parameters` may be an array or (legacy envelope) a JSON string holding one.
    let parameters: Vec<Value> = match request.get("parameters") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
        _ => Vec::new(),
    };
    let arg = |position: usize, name: &str| -> String {
        request
            .as_object()
            .and_then(|map| get_ci(map, name))
            .or_else(|| parameters.get(position))
            .and_then(text_of)
            .unwrap_or_default()
    };
    let (acct, user) = (arg(0, "acctID"), arg(1, "username"));
    let accepted = acct == cfg.acct_id
        && user == cfg.username
        && if service.ends_with("ValidateUser") {
            arg(2, "password") == cfg.password
        } else if service.ends_with("LoginByAppSecret") {
            arg(2, "appId") == cfg.app_id && arg(3, "appSecret") == cfg.app_secret
        } else {
            let timestamp = arg(3, "timestamp");
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|ts| (Utc::now().timestamp() - ts).abs() <= cfg.max_clock_skew_secs);
            let expected = sign::login_by_sign_hash(&acct, &user, &cfg.app_id, &cfg.app_secret, &timestamp);
            fresh && arg(2, "appId") == cfg.app_id && arg(4, "sign") == expected
        };
    if !accepted {
        return ok_json(json!({
            "Message": "用户名或密码错误，或第三方应用未授权！",
            "MessageCode": "CheckPasswordPolicy",
            "LoginResultType": 0,
            "Context": null,
            "KDSVCSessionId": null,
            "IsSuccessByAPI": false
        }));
    }
    let session = new_session_token(state);
    lock(&state.sessions).insert(session.clone());
    let body = json!({
        "Message": null,
        "MessageCode": "CheckPasswordPolicy",
        "LoginResultType": 1,
        "Context": {
            "UserLocale": "zh-CN", "LogonLocale": "zh-CN", "DBid": cfg.acct_id, "DatabaseType": 3,
            "SessionId": session, "UserId": 100_008, "UserName": cfg.username,
            "CustomName": "Ferry 模拟账套", "DisplayVersion": "8.2.0.0", "DataCenterName": "Ferry 模拟账套"
        },
        "KDSVCSessionId": session,
        "FormId": null,
        "RedirectFormParam": null,
        "FormInputObject": null,
        "ErrorStackTrace": null,
        "Lcid": 0,
        "AccessToken": null,
        "KdAccessResult": null,
        "IsSuccessByAPI": true
    });
    let mut response = ok_json(body);
    for cookie in [
        format!("kdservice-sessionid={session}; path=/; HttpOnly"),
        format!(
            "ASP.NET_SessionId={:024x}; path=/; HttpOnly",
            mix(session.len() as u64 ^ state.session_counter.load(Ordering::Relaxed))
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

// ---------------------------------------------------------------------------
// Business operations
// ---------------------------------------------------------------------------

/// The `data` object of a request: an object, a JSON string holding one, or (legacy
/// envelope) the second element of `parameters`.
fn request_data(request: &Value) -> Option<Map<String, Value>> {
    let raw = request
        .get("data")
        .cloned()
        .or_else(|| request.get("parameters")?.as_array()?.get(1).cloned())?;
    match raw {
        Value::Object(map) => Some(map),
        Value::String(text) => serde_json::from_str::<Value>(&text).ok()?.as_object().cloned(),
        _ => None,
    }
}

fn request_form(request: &Value) -> Option<String> {
    get_str(request, "formid")
        .or_else(|| get_str(request, "FormId"))
        .map(str::to_owned)
        .or_else(|| request.get("parameters")?.as_array()?.first().and_then(text_of))
}

fn business(state: &SimState, op: &str, request: &Value) -> Value {
    let Some(data) = request_data(request) else {
        let message = "参数data不能为空，且必须是JSON对象";
        return if matches!(op, "ExecuteBillQuery" | "BillQuery") {
            json!([[failure(message, 8)]])
        } else {
            failure(message, 8)
        };
    };
    match op {
        "ExecuteBillQuery" | "BillQuery" => query(state, &data, op == "BillQuery"),
        _ => {
            let Some(form) = request_form(request) else {
                return failure("formid不能为空", 8);
            };
            let mut store = lock(&state.store);
            if store.table(&form).is_none() {
                return failure(&format!("业务对象“{form}”不存在"), 4);
            }
            match op {
                "Save" | "BatchSave" => {
                    state.write_calls.fetch_add(1, Ordering::Relaxed);
                    save(&mut store, &form, &data, op == "BatchSave")
                }
                "View" => view(&store, &form, &data),
                _ => change_status(&mut store, &form, op, &data),
            }
        }
    }
}

// --- Save / BatchSave -------------------------------------------------------

struct SaveOptions {
    need_update: Option<Vec<String>>,
    delete_entry: bool,
    auto_audit: bool,
    return_fields: Vec<String>,
}

fn save(store: &mut Store, form: &str, data: &Map<String, Value>, batch: bool) -> Value {
    let packages: Vec<Value> = match (get_ci(data, "Model"), batch) {
        (Some(Value::Array(items)), true) => items.clone(),
        (Some(model @ Value::Object(_)), false) => vec![model.clone()],
        (_, true) => return failure("BatchSave的Model必须是数组", 8),
        (_, false) => return failure("Save的Model必须是对象", 8),
    };
    let options = SaveOptions {
        need_update: get_ci(data, "NeedUpDateFields")
            .and_then(Value::as_array)
            .map(|fields| fields.iter().filter_map(text_of).collect()),
        delete_entry: flag(data, "IsDeleteEntry", true),
        auto_audit: flag(data, "IsAutoSubmitAndAudit", false),
        return_fields: get_ci(data, "NeedReturnFields")
            .and_then(Value::as_array)
            .map(|fields| fields.iter().filter_map(text_of).collect())
            .unwrap_or_default(),
    };
    let mut errors = Vec::new();
    let mut successes = Vec::new();
    let mut returned = Vec::new();
    let Some(table) = store.table_mut(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let form_id = table.spec.id;
    let mut written = Vec::new();
    for (index, package) in packages.iter().enumerate() {
        match save_package(table, package, &options) {
            Ok((id, number)) => {
                successes.push(json!({"Id": id, "Number": number, "DIndex": index}));
                if let Some(Value::Object(mut row)) = table.public_row(id) {
                    let mut picked = Map::new();
                    for field in &options.return_fields {
                        picked.insert(field.clone(), resolve(&row, table.spec, field).unwrap_or(Value::Null));
                    }
                    returned.push(Value::Object(picked));
                    row.insert("FormId".to_owned(), Value::String(form_id.to_owned()));
                    written.push(Value::Object(row));
                }
            }
            Err(problems) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(field, message)| error_entry(&field, &message, index)),
                );
            }
        }
    }
    store.written.extend(written);
    let mut extra = Map::new();
    let single = (!batch).then(|| successes.first().cloned()).flatten();
    extra.insert(
        "Id".to_owned(),
        single.as_ref().and_then(|s| s.get("Id").cloned()).unwrap_or(json!("")),
    );
    extra.insert(
        "Number".to_owned(),
        single
            .as_ref()
            .and_then(|s| s.get("Number").cloned())
            .unwrap_or(json!("")),
    );
    extra.insert("NeedReturnData".to_owned(), Value::Array(returned));
    status_body(errors, successes, 11, extra)
}

type Problems = Vec<(String, String)>;

fn is_entry_list(value: &Value) -> bool {
    matches!(value, Value::Array(rows) if rows.iter().all(Value::is_object))
}

fn entry_id(row: &Map<String, Value>) -> i64 {
    get_ci(row, "FEntryID")
        .and_then(text_of)
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

/// Gives entry rows without an id a fresh `FEntryID`.
fn number_entries(rows: &mut [Value], next_entry_id: &mut i64) {
    for row in rows.iter_mut().filter_map(Value::as_object_mut) {
        if entry_id(row) == 0 {
            let key = key_of(row, "FEntryID").unwrap_or_else(|| "FEntryID".to_owned());
            row.insert(key, Value::from(*next_entry_id));
            *next_entry_id += 1;
        }
    }
}

/// Saves one package on its own: creates it, or updates the row its key names.
fn save_package(table: &mut Table, package: &Value, options: &SaveOptions) -> Result<(i64, String), Problems> {
    let spec = table.spec;
    let Some(model) = package.as_object() else {
        return Err(vec![(String::new(), "数据包必须是JSON对象".to_owned())]);
    };
    let key_value = get_ci(model, spec.key).or_else(|| get_ci(model, "FID"));
    let target = match key_value.and_then(text_of).map(|text| text.trim().parse::<i64>()) {
        None => 0,
        Some(Ok(id)) => id,
        Some(Err(_)) => return Err(vec![(spec.key.to_owned(), format!("{}内码必须是整数", spec.label))]),
    };
    let mut next_entry_id = table.next_entry_id;
    let (id, mut row) = if target == 0 {
        let mut row = Map::new();
        row.insert(spec.key.to_owned(), Value::from(table.next_id));
        for (key, value) in model {
            if key.eq_ignore_ascii_case(spec.key) || key.eq_ignore_ascii_case("FID") {
                continue;
            }
            let mut value = value.clone();
            if let Value::Array(rows) = &mut value {
                number_entries(rows, &mut next_entry_id);
            }
            row.insert(key.clone(), value);
        }
        (table.next_id, row)
    } else {
        let Some(existing) = table.rows.get(&target) else {
            return Err(vec![(
                spec.key.to_owned(),
                format!("{}内码“{target}”不存在，无法修改", spec.label),
            )]);
        };
        let mut row = existing.clone();
        merge_update(&mut row, model, spec, options, &mut next_entry_id);
        (target, row)
    };
    if target == 0 && get_ci(&row, "FNumber").and_then(text_of).is_none_or(|n| n.is_empty()) {
        row.insert(
            "FNumber".to_owned(),
            Value::String(format!("{}{id}", spec.number_prefix)),
        );
    }
    let number = get_ci(&row, "FNumber").and_then(text_of).unwrap_or_default();
    let mut problems = validate(&row, spec);
    if let Some(owner) = table.id_by_number(&number).filter(|owner| *owner != id) {
        problems.push((
            "FNumber".to_owned(),
            format!("{}编码“{number}”已经被使用（内码{owner}），编码必须唯一", spec.label),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let now = format_time(server_now());
    if target == 0 {
        row.insert("FCreateDate".to_owned(), Value::String(now.clone()));
        let status = if options.auto_audit { "C" } else { "A" };
        row.insert("FDocumentStatus".to_owned(), Value::String(status.to_owned()));
        row.entry("FForbidStatus".to_owned()).or_insert_with(|| json!("A"));
    } else if options.auto_audit {
        row.insert("FDocumentStatus".to_owned(), json!("C"));
    }
    row.insert("FModifyDate".to_owned(), Value::String(now));
    if let Some(old) = table.rows.get(&id).and_then(|old| old.get("FNumber")).and_then(text_of) {
        table.by_number.remove(&old);
    }
    table.next_entry_id = next_entry_id;
    table.insert(id, row);
    Ok((id, number))
}

/// Applies an update package: only `NeedUpDateFields` when given; entries replaced when
/// `IsDeleteEntry` is true, merged by `FEntryID` otherwise.
fn merge_update(
    row: &mut Map<String, Value>,
    model: &Map<String, Value>,
    spec: &FormSpec,
    options: &SaveOptions,
    next_entry_id: &mut i64,
) {
    let wanted = |key: &str| {
        options
            .need_update
            .as_ref()
            .is_none_or(|fields| fields.iter().any(|field| field.eq_ignore_ascii_case(key)))
    };
    for (key, value) in model {
        if key.eq_ignore_ascii_case(spec.key) || key.eq_ignore_ascii_case("FID") || !wanted(key) {
            continue;
        }
        let slot = key_of(row, key).unwrap_or_else(|| key.clone());
        let (Value::Array(incoming), true) = (value, is_entry_list(value)) else {
            row.insert(slot, value.clone());
            continue;
        };
        let mut merged = match row.get(&slot) {
            Some(Value::Array(existing)) if !options.delete_entry => existing.clone(),
            _ => Vec::new(),
        };
        for entry in incoming.iter().filter_map(Value::as_object) {
            let id = entry_id(entry);
            let found = merged
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .find(|old| id != 0 && entry_id(old) == id);
            match found {
                Some(old) => old.extend(entry.iter().map(|(k, v)| (k.clone(), v.clone()))),
                None => merged.push(Value::Object(entry.clone())),
            }
        }
        number_entries(&mut merged, next_entry_id);
        row.insert(slot, Value::Array(merged));
    }
}

fn org_ref_problem(row: &Map<String, Value>, field: &str, label: &str, required: bool) -> Option<(String, String)> {
    let Some(value) = get_ci(row, field) else {
        return required.then(|| (field.to_owned(), format!("字段“{label}”是必填项")));
    };
    let number = value
        .as_object()
        .and_then(|object| get_ci(object, "FNumber"))
        .and_then(text_of);
    match number.filter(|number| !number.is_empty()) {
        None => Some((
            format!("{field}.FNumber"),
            format!("字段“{label}”是必填项，请按 {{\"FNumber\":\"100\"}} 填写组织编码"),
        )),
        Some(number) if !ORGS.iter().any(|(known, _)| *known == number) => Some((
            field.to_owned(),
            format!("字段“{label}”的值“{number}”在系统中不存在或未审核"),
        )),
        Some(_) => None,
    }
}

fn validate(row: &Map<String, Value>, spec: &FormSpec) -> Problems {
    let mut problems = Vec::new();
    let name_ok = match get_ci(row, "FName") {
        Some(Value::String(name)) => !name.trim().is_empty(),
        Some(Value::Object(names)) => !names.is_empty(),
        _ => false,
    };
    if !name_ok {
        problems.push(("FName".to_owned(), format!("字段“{}名称”是必填项", spec.label)));
    }
    problems.extend(org_ref_problem(row, "FCreateOrgId", "创建组织", true));
    problems.extend(org_ref_problem(row, "FUseOrgId", "使用组织", false));
    problems
}

// --- View / status changes ----------------------------------------------------

fn view(store: &Store, form: &str, data: &Map<String, Value>) -> Value {
    let Some(table) = store.table(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let id = get_ci(data, "Id").and_then(text_of).filter(|id| !id.is_empty());
    let number = get_ci(data, "Number").and_then(text_of).filter(|n| !n.is_empty());
    let found = match (id, number) {
        (Some(id), _) => id.parse::<i64>().ok().filter(|id| table.rows.contains_key(id)),
        (None, Some(number)) => table.id_by_number(&number),
        (None, None) => return failure("Id和Number不能同时为空", 8),
    };
    match found.and_then(|id| table.public_row(id).map(|row| (id, row))) {
        Some((id, Value::Object(row))) => {
            let mut record = Map::new();
            record.insert("Id".to_owned(), Value::from(id));
            record.insert("Number".to_owned(), row.get("FNumber").cloned().unwrap_or(Value::Null));
            record.extend(row);
            let mut extra = Map::new();
            extra.insert("Result".to_owned(), Value::Object(record));
            status_body(Vec::new(), Vec::new(), 0, extra)
        }
        _ => failure("单据不存在或已被删除", 10),
    }
}

/// Submit / Audit / UnAudit / Delete on `Ids` (comma string) or `Numbers` (array).
fn change_status(store: &mut Store, form: &str, op: &str, data: &Map<String, Value>) -> Value {
    let Some(table) = store.table_mut(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let ids_text = get_ci(data, "Ids").and_then(text_of).unwrap_or_default();
    let targets: Vec<(String, Option<i64>)> = if !ids_text.trim().is_empty() {
        ids_text
            .split(',')
            .map(|id| {
                (
                    id.trim().to_owned(),
                    id.trim().parse().ok().filter(|id| table.rows.contains_key(id)),
                )
            })
            .collect()
    } else {
        get_ci(data, "Numbers")
            .and_then(Value::as_array)
            .map(|numbers| {
                numbers
                    .iter()
                    .filter_map(text_of)
                    .map(|number| {
                        let id = table.id_by_number(&number);
                        (number, id)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if targets.is_empty() {
        return failure("Ids和Numbers不能同时为空", 8);
    }
    let mut errors = Vec::new();
    let mut successes = Vec::new();
    for (index, (name, id)) in targets.into_iter().enumerate() {
        let Some(id) = id else {
            errors.push(error_entry("", &format!("“{name}”对应的数据不存在"), index));
            continue;
        };
        let Some(row) = table.rows.get_mut(&id) else { continue };
        let number = row.get("FNumber").and_then(text_of).unwrap_or_default();
        let status = row.get("FDocumentStatus").and_then(text_of).unwrap_or_default();
        let next = match (op, status.as_str()) {
            ("Submit", "A" | "D" | "Z") => Ok("B"),
            ("Submit", _) => Err("数据状态不是创建或重新审核，不能提交"),
            ("Audit", "B") => Ok("C"),
            ("Audit", "C") => Err("单据已经审核！"),
            ("Audit", _) => Err("数据未提交，不能审核"),
            ("UnAudit", "C") => Ok("D"),
            ("UnAudit", _) => Err("数据未审核，不能反审核"),
            ("Delete", "C" | "B") => Err("已审核或审核中的数据不能删除"),
            ("Delete", _) => Ok(""),
            _ => Err("不支持的操作"),
        };
        match next {
            Ok("") => {
                table.rows.remove(&id);
                table.by_number.remove(&number);
                successes.push(json!({"Id": id, "Number": number, "DIndex": index}));
            }
            Ok(next) => {
                row.insert("FDocumentStatus".to_owned(), json!(next));
                row.insert("FModifyDate".to_owned(), Value::String(format_time(server_now())));
                successes.push(json!({"Id": id, "Number": number, "DIndex": index}));
            }
            Err(message) => errors.push(error_entry("", message, index)),
        }
    }
    status_body(errors, successes, 11, Map::new())
}

// --- ExecuteBillQuery / BillQuery ---------------------------------------------

/// A field of a stored row by field key: case-insensitive, `FID` names the key field,
/// `Ref.Sub` reads inside a base-data reference, and an organisation reference without a
/// sub-key gives its internal id.
fn resolve(row: &Map<String, Value>, spec: &FormSpec, field_key: &str) -> Option<Value> {
    let (head, sub) = match field_key.split_once('.') {
        Some((head, sub)) => (head, Some(sub)),
        None => (field_key, None),
    };
    let head = if head.eq_ignore_ascii_case("FID") {
        spec.key
    } else {
        head
    };
    let value = get_ci(row, head)?;
    let is_org = head.to_ascii_uppercase().ends_with("ORGID");
    let org_number = || value.as_object().and_then(|o| get_ci(o, "FNumber")).and_then(text_of);
    match (value, sub) {
        (Value::Object(object), Some(sub)) => get_ci(object, sub).cloned().or_else(|| {
            let number = org_number()?;
            let name = ORGS.iter().find(|(known, _)| *known == number)?.1;
            (is_org && sub.eq_ignore_ascii_case("FName")).then(|| json!(name))
        }),
        (Value::Object(_), None) if is_org => {
            let number = org_number()?;
            let position = ORGS.iter().position(|(known, _)| *known == number)?;
            Some(json!(if position == 0 { 1 } else { 100_050 + position as i64 }))
        }
        (Value::Object(object), None) => get_ci(object, "FNumber").cloned(),
        (other, None) => Some(other.clone()),
        (_, Some(_)) => None,
    }
}

fn field_exists(table: &Table, field_key: &str) -> bool {
    let head = field_key.split('.').next().unwrap_or_default();
    table.known_fields.contains(&head.to_ascii_uppercase())
}

fn query(state: &SimState, data: &Map<String, Value>, as_objects: bool) -> Value {
    let nested = |message: &str, code: i64| json!([[failure(message, code)]]);
    let Some(form) = get_ci(data, "FormId").and_then(text_of).filter(|f| !f.is_empty()) else {
        return nested("FormId不能为空", 8);
    };
    let store = lock(&state.store);
    let Some(table) = store.table(&form) else {
        return nested(&format!("业务对象“{form}”不存在"), 4);
    };
    let field_keys = get_ci(data, "FieldKeys").and_then(text_of).unwrap_or_default();
    let keys: Vec<&str> = field_keys
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .collect();
    if keys.is_empty() {
        return nested("FieldKeys不能为空", 8);
    }
    if let Some(missing) = keys.iter().find(|key| !field_exists(table, key)) {
        return nested(&format!("元数据中标识为{missing}的字段不存在"), 9);
    }
    let filter = match get_ci(data, "FilterString") {
        None | Some(Value::Null) => Ok(Filter::default()),
        Some(Value::String(text)) => Filter::parse(text),
        Some(Value::Array(items)) if items.is_empty() => Ok(Filter::default()),
        Some(_) => Err("模拟器只支持字符串形式的FilterString".to_owned()),
    };
    let filter = match filter {
        Ok(filter) => filter,
        Err(message) => return nested(&format!("过滤条件FilterString有误：{message}"), 8),
    };
    if let Some(field) = filter.fields().find(|field| !field_exists(table, field)) {
        return nested(&format!("元数据中标识为{field}的字段不存在"), 9);
    }
    let order = get_ci(data, "OrderString").and_then(text_of).unwrap_or_default();
    let number = |key: &str| {
        get_ci(data, key)
            .and_then(text_of)
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let start = usize::try_from(number("StartRow").unwrap_or(0)).unwrap_or(usize::MAX);
    let limit = match number("Limit").unwrap_or(0) {
        0 => state.cfg.max_limit.max(1),
        limit => limit.min(state.cfg.max_limit.max(1)),
    };
    let top = number("TopRowCount").unwrap_or(0);
    let mut rows: Vec<&Map<String, Value>> = table
        .rows
        .values()
        .filter(|row| filter.matches(row, table.spec))
        .collect();
    sort_rows(&mut rows, &order, table.spec);
    if top > 0 {
        rows.truncate(usize::try_from(top).unwrap_or(usize::MAX));
    }
    let page = rows
        .into_iter()
        .skip(start)
        .take(usize::try_from(limit).unwrap_or(usize::MAX));
    let out: Vec<Value> = page
        .map(|row| {
            if as_objects {
                let named: Map<String, Value> = keys
                    .iter()
                    .map(|key| ((*key).to_owned(), resolve(row, table.spec, key).unwrap_or(Value::Null)))
                    .collect();
                Value::Object(named)
            } else {
                Value::Array(
                    keys.iter()
                        .map(|key| resolve(row, table.spec, key).unwrap_or(Value::Null))
                        .collect(),
                )
            }
        })
        .collect();
    Value::Array(out)
}

fn compare_values(left: &Value, right: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering as O;
    let as_text = |value: &Value| text_of(value).unwrap_or_default();
    let (l, r) = (as_text(left), as_text(right));
    if let (Some(a), Some(b)) = (parse_time(&l), parse_time(&r)) {
        return a.cmp(&b);
    }
    if let (Ok(a), Ok(b)) = (l.trim().parse::<f64>(), r.trim().parse::<f64>()) {
        return a.partial_cmp(&b).unwrap_or(O::Equal);
    }
    match (left, right) {
        (Value::Null, Value::Null) => O::Equal,
        (Value::Null, _) => O::Less,
        (_, Value::Null) => O::Greater,
        _ => l.cmp(&r),
    }
}

fn sort_rows(rows: &mut [&Map<String, Value>], order: &str, spec: &FormSpec) {
    let keys: Vec<(String, bool)> = order
        .split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let field = words.next()?.to_owned();
            let descending = words.next().is_some_and(|word| word.eq_ignore_ascii_case("DESC"));
            Some((field, descending))
        })
        .collect();
    rows.sort_by(|a, b| {
        for (field, descending) in &keys {
            let left = resolve(a, spec, field).unwrap_or(Value::Null);
            let right = resolve(b, spec, field).unwrap_or(Value::Null);
            let ordering = compare_values(&left, &right);
            let ordering = if *descending { ordering.reverse() } else { ordering };
            if ordering.is_ne() {
                return ordering;
            }
        }
        let id = |row: &Map<String, Value>| get_ci(row, spec.key).and_then(Value::as_i64).unwrap_or(0);
        id(a).cmp(&id(b))
    });
}

/// A parsed SQL-like `FilterString`: OR of ANDs of comparisons.
#[derive(Debug, Default)]
struct Filter {
    any_of: Vec<Vec<Condition>>,
}

#[derive(Debug)]
struct Condition {
    field: String,
    op: String,
    value: Value,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Op(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == '(' || c == ')' {
            // Parentheses are accepted but not given meaning beyond AND-over-OR precedence.
            i += 1;
        } else if c == '\'' {
            let mut out = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("引号不成对".to_owned()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        out.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(out));
        } else if "<>=!".contains(c) {
            let mut op = String::from(c);
            if let Some(next) = chars.get(i + 1).filter(|next| "<>=".contains(**next)) {
                op.push(*next);
            }
            i += op.chars().count();
            tokens.push(Token::Op(op));
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '-') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("无法识别的字符“{c}”"));
        }
    }
    Ok(tokens)
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, String> {
        let tokens = tokenize(text)?;
        let mut filter = Filter::default();
        let mut group = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let Token::Word(field) = &tokens[i] else {
                return Err(format!("第{}个记号应为字段名", i + 1));
            };
            let op = match tokens.get(i + 1) {
                Some(Token::Op(op)) if ["=", "<>", "!=", ">", ">=", "<", "<="].contains(&op.as_str()) => op.clone(),
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("LIKE") => "LIKE".to_owned(),
                _ => return Err(format!("字段{field}后应为比较运算符")),
            };
            let value = match tokens.get(i + 2) {
                Some(Token::Text(text)) => Value::String(text.clone()),
                Some(Token::Number(number)) => Value::String(number.clone()),
                _ => return Err(format!("字段{field}的比较值应为'文本'或数字")),
            };
            group.push(Condition {
                field: field.clone(),
                op,
                value,
            });
            i += 3;
            match tokens.get(i) {
                None => {}
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("AND") => i += 1,
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("OR") => {
                    filter.any_of.push(std::mem::take(&mut group));
                    i += 1;
                }
                Some(other) => return Err(format!("多余的内容：{other:?}")),
            }
            if i == tokens.len()
                && matches!(tokens.last(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") || w.eq_ignore_ascii_case("OR"))
            {
                return Err("条件不完整".to_owned());
            }
        }
        if !group.is_empty() {
            filter.any_of.push(group);
        }
        Ok(filter)
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.any_of.iter().flatten().map(|condition| condition.field.as_str())
    }

    fn matches(&self, row: &Map<String, Value>, spec: &FormSpec) -> bool {
        self.any_of.is_empty()
            || self.any_of.iter().any(|group| {
                group.iter().all(|condition| {
                    let actual = resolve(row, spec, &condition.field).unwrap_or(Value::Null);
                    condition.holds(&actual)
                })
            })
    }
}

impl Condition {
    fn holds(&self, actual: &Value) -> bool {
        use std::cmp::Ordering as O;
        if self.op == "LIKE" {
            let text = text_of(actual).unwrap_or_default();
            let pattern = text_of(&self.value).unwrap_or_default();
            return like(&text.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>());
        }
        if actual.is_null() {
            return false;
        }
        let ordering = compare_values(actual, &self.value);
        match self.op.as_str() {
            "=" => ordering == O::Equal,
            "<>" | "!=" => ordering != O::Equal,
            ">" => ordering == O::Greater,
            ">=" => ordering != O::Less,
            "<" => ordering == O::Less,
            "<=" => ordering != O::Greater,
            _ => false,
        }
    }
}

/// SQL LIKE with `%` and `_`.
fn like(text: &[char], pattern: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => (0..=text.len()).any(|skip| like(&text[skip..], rest)),
        Some(('_', rest)) => !text.is_empty() && like(&text[1..], rest),
        Some((c, rest)) => text.first() == Some(c) && like(&text[1..], rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::k3cloud::{envelope, request, AuthMode, Settings, ValidateUserBody};
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use chrono::{DateTime, Utc};
    use tokio::net::TcpListener;

    async fn start(cfg: K3CloudConfig) -> (K3CloudSim, SimHandle, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = K3CloudSim::start(cfg, listener).await.unwrap();
        let base = format!("{}/k3cloud/", handle.base_url());
        (sim, handle, base)
    }

    fn settings() -> Settings {
        serde_json::from_value(json!({
            "acct_id": "65a0b1c2d3e4f5",
            "username": "apiuser",
            "app_id": "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4",
            "app_secret": "0123456789abcdef0123456789abcdef",
            "password": "Passw0rd!"
        }))
        .unwrap()
    }

    struct Answer {
        status: u16,
        set_cookies: Vec<String>,
        body: Value,
    }

    async fn send(request: WireRequest) -> Answer {
        let client = reqwest::Client::new();
        let mut builder = client.post(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(request.body.unwrap_or_default()).send().await.unwrap();
        let status = response.status().as_u16();
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        let body = response.json().await.unwrap();
        Answer {
            status,
            set_cookies,
            body,
        }
    }

    async fn call(
        settings: &Settings,
        base: &str,
        op: &str,
        body: Value,
        session: Option<&request::Session>,
        now: DateTime<Utc>,
    ) -> Answer {
        send(request::build(settings, base, op, &body, session, now).unwrap()).await
    }

    fn query_body(filter: &str, start: u64, limit: u64) -> Value {
        json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FCUSTID,FNumber,FName,FModifyDate",
                        "FilterString": filter, "OrderString": "FCUSTID", "StartRow": start, "Limit": limit}})
    }

    async fn query_numbers(settings: &Settings, base: &str, filter: &str, limit: u64) -> Vec<String> {
        let mut numbers = Vec::new();
        let mut start = 0;
        loop {
            let answer = call(
                settings,
                base,
                "ExecuteBillQuery",
                query_body(filter, start, limit),
                None,
                Utc::now(),
            )
            .await;
            assert_eq!(
                envelope::classify(answer.status, &answer.body),
                Verdict::Ok,
                "{}",
                answer.body
            );
            let rows = envelope::name_rows("FCUSTID,FNumber,FName,FModifyDate", &answer.body).unwrap();
            numbers.extend(rows.iter().map(|row| row["FNumber"].as_str().unwrap().to_owned()));
            if (rows.len() as u64) < limit {
                return numbers;
            }
            start += limit;
        }
    }

    #[tokio::test]
    async fn signed_headers_are_verified() {
        let (_sim, _handle, base) = start(K3CloudConfig::default()).await;
        let body = query_body("FNumber = 'CUST0003'", 0, 10);
        let ok = call(&settings(), &base, "ExecuteBillQuery", body.clone(), None, Utc::now()).await;
        assert_eq!(ok.status, 200);
        let rows = envelope::name_rows("FCUSTID,FNumber,FName,FModifyDate", &ok.body).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["FCUSTID"], 100_003);
        assert!(ok.set_cookies.iter().any(|c| c.starts_with("kdservice-sessionid=")));

        let stale = call(
            &settings(),
            &base,
            "ExecuteBillQuery",
            body.clone(),
            None,
            Utc::now() - Duration::minutes(13),
        )
        .await;
        assert_eq!(stale.status, 519);
        assert!(
            matches!(envelope::classify(stale.status, &stale.body), Verdict::Failed { code, .. } if code == "4006")
        );

        let mut tampered = request::build(&settings(), &base, "ExecuteBillQuery", &body, None, Utc::now()).unwrap();
        for (name, value) in &mut tampered.headers {
            if name == "X-Api-Signature" {
                *value = value.replace('Y', "Z");
            }
        }
        let refused = send(tampered).await;
        assert_eq!(refused.status, 519);
        assert_eq!(refused.body["errcode"], 4003);

        let mut wrong_secret = settings();
        wrong_secret.app_secret = Some("ffffffffffffffffffffffffffffffff".into());
        let lost = call(&wrong_secret, &base, "ExecuteBillQuery", body.clone(), None, Utc::now()).await;
        assert_eq!(lost.status, 200);
        assert!(matches!(
            envelope::classify(lost.status, &lost.body),
            Verdict::SessionExpired(_)
        ));

        let mut other_acct = settings();
        other_acct.acct_id = "000000".into();
        let lost = call(
            &other_acct,
            &base,
            "View",
            json!({"formid": "BD_Customer", "data": {"Number": "CUST0001"}}),
            None,
            Utc::now(),
        )
        .await;
        assert!(matches!(
            envelope::classify(lost.status, &lost.body),
            Verdict::SessionExpired(_)
        ));

        let mut no_app = request::build(&settings(), &base, "ExecuteBillQuery", &body, None, Utc::now()).unwrap();
        no_app.headers.retain(|(name, _)| name != "X-Kd-Appkey");
        no_app.headers.push(("X-Kd-Appkey".into(), String::new()));
        assert_eq!(send(no_app).await.body["errcode"], 4002);
    }

    #[tokio::test]
    async fn unknown_services_and_the_data_center_list() {
        let (_sim, _handle, base) = start(K3CloudConfig::default()).await;
        let missing = call(
            &settings(),
            &base,
            "Kingdee.BOS.WebApi.ServicesStub.Nope.Nothing",
            json!({}),
            None,
            Utc::now(),
        )
        .await;
        assert_eq!((missing.status, missing.body["errcode"].clone()), (519, json!(5001)));
        let centers = call(
            &settings(),
            &base,
            request::DATA_CENTER_LIST,
            json!({}),
            None,
            Utc::now(),
        )
        .await;
        assert_eq!(centers.body[0]["Id"], "65a0b1c2d3e4f5");
    }

    #[tokio::test]
    async fn query_pages_to_the_end_in_id_order() {
        let cfg = K3CloudConfig {
            records: 23,
            ..K3CloudConfig::default()
        };
        let (_sim, _handle, base) = start(cfg).await;
        let numbers = query_numbers(&settings(), &base, "", 5).await;
        let expected: Vec<String> = (1..=23).map(|i| format!("CUST{i:04}")).collect();
        assert_eq!(numbers, expected);
        let exact = query_numbers(&settings(), &base, "", 23).await;
        assert_eq!(exact.len(), 23, "a full last page is followed by an empty one");
    }

    #[tokio::test]
    async fn incremental_filter_and_touch() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        // Row i is modified at 2024-03-01 08:00 + i * 30 min.
        let since = "FModifyDate >= '2024-03-03 08:00:00'";
        let numbers = query_numbers(&settings(), &base, since, 50).await;
        let expected: Vec<String> = (96..=120).map(|i| format!("CUST{i:04}")).collect();
        assert_eq!(numbers, expected);
        let later = parse_time("2024-03-05 09:00:00").unwrap();
        assert!(sim.touch(7, later));
        assert!(!sim.touch(121, later));
        let after = query_numbers(&settings(), &base, "FModifyDate >= '2024-03-05 00:00:00'", 50).await;
        assert_eq!(after, ["CUST0007"]);
        let both = query_numbers(
            &settings(),
            &base,
            "FNumber = 'CUST0007' AND FModifyDate >= '2024-03-05T00:00:00' OR FNumber LIKE 'CUST001_'",
            50,
        )
        .await;
        assert_eq!(both.len(), 11);
        assert_eq!(sim.row("BD_Customer", "CUST0007").unwrap()["FDescription"], "修改1");
    }

    #[tokio::test]
    async fn query_errors_are_nested_in_the_array() {
        let (_sim, _handle, base) = start(K3CloudConfig::default()).await;
        let bad_field = json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber,FNope"}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", bad_field, None, Utc::now()).await;
        assert!(matches!(envelope::classify(answer.status, &answer.body), Verdict::Failed { code, .. } if code == "9"));
        assert!(envelope::name_rows("FNumber,FNope", &answer.body).is_err());
        let bad_filter =
            json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber", "FilterString": "FNumber = "}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", bad_filter, None, Utc::now()).await;
        assert!(matches!(
            envelope::classify(answer.status, &answer.body),
            Verdict::Failed { .. }
        ));
        let objects = json!({"data": {"FormId": "BD_MATERIAL", "FieldKeys": "FNumber,FCreateOrgId.FName,FCreateOrgId", "FilterString": "FNumber = 'WL00002'"}});
        let answer = call(&settings(), &base, "BillQuery", objects, None, Utc::now()).await;
        assert_eq!(
            answer.body,
            json!([{"FNumber": "WL00002", "FCreateOrgId.FName": "总部", "FCreateOrgId": 1}])
        );
    }

    fn customer(number: &str, name: &str) -> Value {
        json!({"FNumber": number, "FName": name, "FCreateOrgId": {"FNumber": "100"}, "FUseOrgId": {"FNumber": "100"}})
    }

    #[tokio::test]
    async fn batch_save_fails_bad_rows_alone() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let packages = vec![
            customer("NEW001", "上海新客户有限公司"),
            json!({"FNumber": "NEW002", "FName": "缺组织", "FCreateOrgId": {"FNumber": ""}}),
            json!({"FNumber": "NEW003", "FCreateOrgId": {"FNumber": "100"}}),
            customer("CUST0001", "重复编码"),
            customer("NEW005", "深圳新客户有限公司"),
        ];
        let body = request::operation_body(
            "BatchSave",
            Some("BD_Customer"),
            json!({"Model": packages, "IsAutoSubmitAndAudit": "true"}),
        )
        .unwrap();
        let answer = call(&settings(), &base, "BatchSave", body, None, Utc::now()).await;
        assert!(
            matches!(envelope::classify(answer.status, &answer.body), Verdict::Failed { code, .. } if code == "11")
        );
        let rows = envelope::row_outcomes("BatchSave", &answer.body, 5).unwrap();
        let first_id = match &rows[0] {
            RowOutcome::Written { target_id: Some(id) } => id.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(&rows[1], RowOutcome::Failed { class: "rejected", message } if message.contains("FCreateOrgId.FNumber"))
        );
        assert!(matches!(&rows[2], RowOutcome::Failed { class: "rejected", message } if message.contains("FName")));
        assert!(
            matches!(&rows[3], RowOutcome::Failed { class: "rejected", message } if message.contains("已经被使用"))
        );
        assert!(matches!(&rows[4], RowOutcome::Written { target_id: Some(_) }));
        assert_eq!(sim.written().len(), 2);
        assert_eq!(sim.write_calls(), 1);
        let stored = sim.written_by_key("NEW001").unwrap();
        assert_eq!(stored["FCUSTID"].to_string(), first_id);
        assert_eq!(stored["FDocumentStatus"], "C");
        assert!(sim.written_by_key("CUST0001").is_none(), "seeded rows are not written");

        let view = call(
            &settings(),
            &base,
            "View",
            json!({"formid": "BD_Customer", "data": {"Number": "NEW005"}}),
            None,
            Utc::now(),
        )
        .await;
        assert_eq!(envelope::classify(view.status, &view.body), Verdict::Ok);
        assert_eq!(view.body["Result"]["Result"]["FName"], "深圳新客户有限公司");
        let absent = call(
            &settings(),
            &base,
            "View",
            json!({"formid": "BD_Customer", "data": {"Number": "NEW002"}}),
            None,
            Utc::now(),
        )
        .await;
        assert!(
            matches!(envelope::classify(absent.status, &absent.body), Verdict::Failed { code, .. } if code == "10")
        );
        let found = query_numbers(&settings(), &base, "FNumber = 'NEW005'", 10).await;
        assert_eq!(found, ["NEW005"]);
    }

    #[tokio::test]
    async fn save_with_an_id_updates_and_keeps_entries_when_asked() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let mut model = customer("ENT001", "带联系人的客户");
        model["FT_BD_CUSTCONTACT"] = json!([{"FContact": "张三"}, {"FContact": "李四"}]);
        let body = request::operation_body("Save", Some("BD_Customer"), json!({"Model": model})).unwrap();
        let created = call(&settings(), &base, "Save", body, None, Utc::now()).await;
        let id = envelope::written_id("Save", &created.body).unwrap();
        let stored = sim.row("BD_Customer", "ENT001").unwrap();
        let first_entry = stored["FT_BD_CUSTCONTACT"][0]["FEntryID"].clone();

        let mut data =
            json!({"FName": "改名后的客户", "FT_BD_CUSTCONTACT": [{"FEntryID": first_entry, "FContact": "张三丰"}]});
        request::prepare_update(&mut data, "FCUSTID", &id, None, settings().update_is_delete_entry()).unwrap();
        let body = request::operation_body("Save", Some("BD_Customer"), data).unwrap();
        let updated = call(&settings(), &base, "Save", body, None, Utc::now()).await;
        assert_eq!(
            envelope::classify(updated.status, &updated.body),
            Verdict::Ok,
            "{}",
            updated.body
        );
        assert_eq!(envelope::written_id("Save", &updated.body), Some(id.clone()));
        let stored = sim.row("BD_Customer", "ENT001").unwrap();
        assert_eq!(stored["FName"], "改名后的客户");
        assert_eq!(stored["FNumber"], "ENT001");
        let contacts: Vec<&str> = stored["FT_BD_CUSTCONTACT"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["FContact"].as_str().unwrap())
            .collect();
        assert_eq!(contacts, ["张三丰", "李四"]);

        let mut data = json!({"Model": {"FT_BD_CUSTCONTACT": [{"FContact": "王五"}]}, "IsDeleteEntry": "true"});
        request::prepare_update(&mut data, "FCUSTID", &id, None, false).unwrap();
        let body = request::operation_body("Save", Some("BD_Customer"), data).unwrap();
        call(&settings(), &base, "Save", body, None, Utc::now()).await;
        let stored = sim.row("BD_Customer", "ENT001").unwrap();
        assert_eq!(
            stored["FT_BD_CUSTCONTACT"].as_array().unwrap().len(),
            1,
            "IsDeleteEntry=true replaces entries"
        );

        let body = json!({"formid": "BD_Customer", "data": {"Model": {"FCUSTID": 999_999, "FName": "x"}}});
        let missing = call(&settings(), &base, "Save", body, None, Utc::now()).await;
        assert!(matches!(
            envelope::classify(missing.status, &missing.body),
            Verdict::Failed { .. }
        ));
        assert_eq!(sim.row_count("BD_Customer"), 121);
    }

    #[tokio::test]
    async fn status_operations_follow_the_document_status() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let body =
            json!({"formid": "BD_MATERIAL", "data": {"Model": {"FName": "新物料", "FCreateOrgId": {"FNumber": 100}}}});
        let created = call(&settings(), &base, "Save", body, None, Utc::now()).await;
        let number = created.body["Result"]["Number"].as_str().unwrap().to_owned();
        assert!(number.starts_with("WL2"), "{number}");
        let op = |_step: &str| json!({"formid": "BD_MATERIAL", "data": {"Numbers": [number.clone()]}});
        let audit_first = call(&settings(), &base, "Audit", op("Audit"), None, Utc::now()).await;
        assert!(matches!(
            envelope::classify(200, &audit_first.body),
            Verdict::Failed { .. }
        ));
        for step in ["Submit", "Audit"] {
            let answer = call(&settings(), &base, step, op(step), None, Utc::now()).await;
            assert_eq!(
                envelope::classify(200, &answer.body),
                Verdict::Ok,
                "{step}: {}",
                answer.body
            );
        }
        let again = call(&settings(), &base, "Audit", op("Audit"), None, Utc::now()).await;
        assert!(
            matches!(envelope::classify(200, &again.body), Verdict::Failed { message, .. } if message.contains("已经审核"))
        );
        let delete = call(&settings(), &base, "Delete", op("Delete"), None, Utc::now()).await;
        assert!(matches!(envelope::classify(200, &delete.body), Verdict::Failed { .. }));
        call(&settings(), &base, "UnAudit", op("UnAudit"), None, Utc::now()).await;
        let delete = call(&settings(), &base, "Delete", op("Delete"), None, Utc::now()).await;
        assert_eq!(envelope::classify(200, &delete.body), Verdict::Ok);
        assert!(sim.row("BD_MATERIAL", &number).is_none());
    }

    async fn login(settings: &Settings, base: &str) -> Result<request::Session, request::RequestError> {
        let answer = send(request::login_request(settings, base, Utc::now()).unwrap().unwrap()).await;
        let cookies: Vec<&str> = answer.set_cookies.iter().map(String::as_str).collect();
        request::session_from_login(&answer.body, &cookies)
    }

    #[tokio::test]
    async fn legacy_sessions_expire_and_log_in_again() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let mut legacy = settings();
        legacy.auth = Some(AuthMode::ValidateUser);
        let body = query_body("FNumber = 'CUST0002'", 0, 10);

        let anonymous = call(&legacy, &base, "ExecuteBillQuery", body.clone(), None, Utc::now()).await;
        assert!(matches!(
            envelope::classify(anonymous.status, &anonymous.body),
            Verdict::SessionExpired(_)
        ));

        let session = login(&legacy, &base).await.unwrap();
        assert!(session.cookies.iter().any(|(name, _)| name == "ASP.NET_SessionId"));
        let ok = call(
            &legacy,
            &base,
            "ExecuteBillQuery",
            body.clone(),
            Some(&session),
            Utc::now(),
        )
        .await;
        assert_eq!(envelope::classify(ok.status, &ok.body), Verdict::Ok);

        sim.expire_sessions();
        let expired = call(
            &legacy,
            &base,
            "ExecuteBillQuery",
            body.clone(),
            Some(&session),
            Utc::now(),
        )
        .await;
        assert!(matches!(
            envelope::classify(expired.status, &expired.body),
            Verdict::SessionExpired(_)
        ));
        let save = call(
            &legacy,
            &base,
            "Save",
            json!({"formid": "BD_Customer", "data": {"Model": customer("S1", "x")}}),
            Some(&session),
            Utc::now(),
        )
        .await;
        assert!(matches!(
            envelope::classify(save.status, &save.body),
            Verdict::SessionExpired(_)
        ));

        let fresh = login(&legacy, &base).await.unwrap();
        let again = call(
            &legacy,
            &base,
            "ExecuteBillQuery",
            body.clone(),
            Some(&fresh),
            Utc::now(),
        )
        .await;
        assert_eq!(
            envelope::name_rows("FCUSTID,FNumber,FName,FModifyDate", &again.body)
                .unwrap()
                .len(),
            1
        );

        legacy.validate_user_body = Some(ValidateUserBody::Parameters);
        login(&legacy, &base).await.unwrap();
        for mode in [AuthMode::LoginByAppSecret, AuthMode::LoginBySign] {
            let mut other = settings();
            other.auth = Some(mode);
            let session = login(&other, &base).await.unwrap();
            let ok = call(
                &other,
                &base,
                "ExecuteBillQuery",
                body.clone(),
                Some(&session),
                Utc::now(),
            )
            .await;
            assert_eq!(envelope::classify(ok.status, &ok.body), Verdict::Ok, "{mode:?}");
        }
        legacy.password = Some("wrong".into());
        assert!(matches!(
            login(&legacy, &base).await,
            Err(request::RequestError::LoginRejected { .. })
        ));
        assert_eq!(sim.session_count(), 4);
    }

    #[tokio::test]
    async fn throttling_answers_msg_code_14() {
        let cfg = K3CloudConfig {
            faults: Faults {
                rate_limit_per_sec: Some(1),
                ..Faults::default()
            },
            ..K3CloudConfig::default()
        };
        let (sim, _handle, base) = start(cfg).await;
        let body = query_body("", 0, 1);
        let first = call(&settings(), &base, "ExecuteBillQuery", body.clone(), None, Utc::now()).await;
        assert_eq!(envelope::classify(first.status, &first.body), Verdict::Ok);
        let second = call(&settings(), &base, "ExecuteBillQuery", body.clone(), None, Utc::now()).await;
        assert!(matches!(
            envelope::classify(second.status, &second.body),
            Verdict::Throttled(_)
        ));
        let batch = call(
            &settings(),
            &base,
            "BatchSave",
            json!({"formid": "BD_Customer", "data": {"Model": [customer("T1", "x")]}}),
            None,
            Utc::now(),
        )
        .await;
        assert!(matches!(
            &envelope::row_outcomes("BatchSave", &batch.body, 1).unwrap()[0],
            RowOutcome::Failed { class: "uncertain", .. }
        ));
        assert_eq!(sim.write_calls(), 0, "throttled writes never reach the handler");
        sim.set_faults(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        let failed = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        assert_eq!(failed.status, 500);
        assert!(matches!(envelope::classify(failed.status, &failed.body), Verdict::Failed { code, .. } if code == "4"));
    }

    #[tokio::test]
    async fn async_query_mode_completes_at_once() {
        let (_sim, _handle, base) = start(K3CloudConfig::default()).await;
        let mut body = query_body("FNumber = 'CUST0001'", 0, 10);
        body["beginmethod"] = json!("BeginQueryImpl");
        body["querymethod"] = json!("QueryAsyncResult");
        let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        assert_eq!(answer.body["Status"], 2);
        assert_eq!(answer.body["Result"][0][1], "CUST0001");
    }

    #[test]
    fn filters_parse_and_match() {
        let spec = &FORMS[0];
        let row = json!({"FCUSTID": 5, "FNumber": "CUST0005", "FModifyDate": "2024-03-01T10:30:00", "FCreateOrgId": {"FNumber": "101"}});
        let row = row.as_object().unwrap();
        let holds = |text: &str| Filter::parse(text).unwrap().matches(row, spec);
        assert!(holds("FNumber = 'CUST0005'"));
        assert!(!holds("FNumber = 'CUST0006'"));
        assert!(holds(
            "FModifyDate >= '2024-03-01 10:30:00' and FModifyDate < '2024-03-02'"
        ));
        assert!(!holds("FModifyDate > '2024-03-01 10:30:00'"));
        assert!(holds("FCUSTID <= 5 AND FCreateOrgId.FNumber <> '100'"));
        assert!(holds("FNumber = 'x' OR FNumber LIKE 'CUST%5'"));
        assert!(holds("(FID = 5)"));
        assert!(Filter::parse("FNumber 'x'").is_err());
        assert!(Filter::parse("FNumber = 'x' AND").is_err());
        assert!(Filter::parse("FNumber = 'unterminated").is_err());
        assert!(like(&['a', 'b'], &['%']));
        assert!(!like(&['a'], &['_', '_']));
    }

    #[test]
    fn seeded_data_is_deterministic() {
        let one = Store::seeded(&K3CloudConfig::default());
        let two = Store::seeded(&K3CloudConfig::default());
        let first = one.row_by_number("BD_Customer", "CUST0001").unwrap();
        assert_eq!(first, two.row_by_number("BD_Customer", "CUST0001").unwrap());
        assert_eq!(first["FModifyDate"], "2024-03-01T08:30:00");
        assert!(first["FName"].as_str().unwrap().ends_with("有限公司"));
        assert_eq!(one.table("bd_material").unwrap().rows.len(), 40);
        assert_eq!(percent_decode_path("/a%2Fb%zz%4"), "/a/b%zz%4");
    }
}
