//! The Kingdee K3Cloud (金蝶云星空) WebAPI simulator, for tests, `ferry demo` and
//! `ferry simulate kingdee-k3cloud`. It is a witness, not a mirror: it is written from
//! reference §2 and checks signatures with its own code (`verify`), never the connector's.
//!
//! **Transport.** Every `POST …/<Service>.common.kdsvc` under any prefix (e.g. `/k3cloud/`) is
//! dispatched on the service name; an unknown service gets the gateway's HTTP 519
//! `{"errcode":5001,…}`. Business errors are HTTP 200 with `Result.ResponseStatus`, as on the
//! real server.
//!
//! **Auth.**
//! * Signed headers (SDK 8.2.0, reference §2 option A), checked by `verify`: gateway
//!   refusals are HTTP 519 (4002 no AppID, 4006 timestamp more than `max_clock_skew_secs`
//!   away or not in seconds, 4001 unknown client, 4003 bad signature); a failing K3Cloud half
//!   (`X-Kd-Appdata` / `X-Kd-Signature`) is the session-lost answer (MsgCode 1).
//! * Legacy sessions: `AuthService.ValidateUser` (named or `parameters` body),
//!   `LoginByAppSecret` and `LoginBySign` set the `kdservice-sessionid` cookie; unsigned calls
//!   must carry it (cookie or header) or get the session-lost answer.
//!   [`K3CloudSim::expire_sessions`] forgets every session.
//!
//! **Data.** Seeded `BD_Customer` (ids from 100001, numbers `CUST0001`…), `BD_MATERIAL`
//! (ids from 200001, `WL00001`…) and `SAL_SaleOrder` bills (ids from 300001, `FBillNo`
//! `XSDD000001`…, entry rows under `FSaleOrderEntry`), all audited (`C`), modified at
//! `base_time + i * spacing_secs` in the server's zone. Rows are materialised at start.
//!
//! **Document status and locks.** Every row has `FDocumentStatus` ([`status`]): Save and
//! BatchSave create rows in `A` (`C` with `IsAutoSubmitAndAudit`), `Draft` in `Z`; `Submit`
//! A/D→B, `Audit` B→C, `UnAudit` C→D, `Delete` only A/D/Z. With `locks_audited` (default, as
//! K3Cloud does) a Save/BatchSave package that changes a `B` or `C` row is refused on its own
//! (`Errors` entry with its `DIndex`, message ending `单据已经审核！` or `单据已经提交！`) and the
//! row is left as it was; an update of an `A`/`D` row keeps its status, or ends in `C` with
//! `IsAutoSubmitAndAudit`.
//!
//! **Answers.** `ResponseStatus.IsSuccess` is false (ErrorCode 500, MsgCode 11) as soon as one
//! package or id failed, as K3Cloud reports it, while `SuccessEntitys` still lists every
//! package or id that succeeded with its `DIndex` (its position in `Model`, or in the
//! request's `Ids`/`Numbers`). Save answers `Result.Id`/`Result.Number`; Save and BatchSave
//! answer `Result.NeedReturnData`, one object per *successful* package in `SuccessEntitys`
//! order, shaped like the model: `FNumber` → `{"FNumber":…}`, `FCreateOrgId.FNumber` →
//! `{"FCreateOrgId":{"FNumber":…}}`, `FSaleOrderEntry.FEntryID` →
//! `{"FSaleOrderEntry":[{"FEntryID":…},…]}` ([INF]: the reference gives only `[{}]`).
//! Submit/Audit/UnAudit/Delete answer `Result.ResponseStatus` alone. `View` answers
//! `Result.Result`: the stored row (field keys, not the real server's property names) with
//! `Id` and `Number` added.
//!
//! **Entries.** An array of objects in a model is an entry list. Each stored entry row gets a
//! table-wide unique `FEntryID` (ids a create sends are replaced). On update a row carrying an
//! `FEntryID` changes that row (an id the bill does not have is refused), a row without one is
//! appended, and with `IsDeleteEntry` true (the default) stored rows the payload does not
//! repeat are deleted. `NeedUpDateFields`, when not empty, limits the update to the listed
//! header fields, entry keys and entry fields.
//!
//! **Queries.** `ExecuteBillQuery` (arrays of arrays) and `BillQuery` (objects) support
//! `FieldKeys` with sub-keys (`FCreateOrgId.FNumber`), entry fields and `<Entry>_FEntryId` /
//! `<Entry>_FSeq` (one answer row per entry row then; a bill without entry rows gives one row
//! of nulls), a SQL-like `FilterString` (`filter`: comparisons, `LIKE`, `IN`, `IS NULL`,
//! `AND`/`OR`, parentheses), `OrderString`, `TopRowCount`, `StartRow` and `Limit` (0 = all;
//! capped at `max_limit`). Errors come back nested in the array, as on the real server. The
//! SDK's async query mode (`beginmethod`) is answered at once with `Status: 2`.
//!
//! **Faults.** Over `faults.rate_limit_per_sec` the answer is the MsgCode 14 envelope (always
//! the object form, even for queries: the fault layer does not know the operation);
//! `fail_rate` answers HTTP 500 with a MsgCode 4 envelope.

mod filter;
mod verify;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

use super::kit::{counters, json_reply, mix, naive_at, simulator, start_sim};
use super::{instrument, lock, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle, Simulator};
use filter::{parse_time, Filter};
use verify::{AppCredentials, Refusal};

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

/// `FDocumentStatus` letters. [INF] Kingdee domain knowledge, not in the reference.
pub mod status {
    /// 创建: saved, editable.
    pub const CREATED: &str = "A";
    /// 审核中: submitted, locked.
    pub const SUBMITTED: &str = "B";
    /// 已审核: audited, locked.
    pub const AUDITED: &str = "C";
    /// 重新审核: un-audited again, editable.
    pub const REAUDIT: &str = "D";
    /// 暂存: a draft.
    pub const DRAFT: &str = "Z";
    /// Every letter.
    pub const ALL: [&str; 5] = [CREATED, SUBMITTED, AUDITED, REAUDIT, DRAFT];
}

const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const KDSVC_SUFFIX: &str = ".common.kdsvc";
const FORM_SERVICE_PREFIX: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.";
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
const ENTRY_ID: &str = "FEntryID";

/// How the simulator behaves. The default credentials are the §9 test-vector credentials.
#[derive(Clone, Debug)]
pub struct K3CloudConfig {
    /// Seeded `BD_Customer` rows (default 120).
    pub records: u64,
    /// Seeded `BD_MATERIAL` rows (default 40).
    pub materials: u64,
    /// Seeded `SAL_SaleOrder` bills, 1 to 3 entry rows each (default 20; none without
    /// customers and materials to refer to).
    pub sale_orders: u64,
    /// Refuse Save/BatchSave packages that change a submitted (`B`) or audited (`C`) row, as
    /// K3Cloud does (default true). Turn it off only to test code that does not UnAudit yet.
    pub locks_audited: bool,
    /// The server's time zone: `FModifyDate` and the other dates are its local time
    /// (default Asia/Shanghai; [INF]: the reference leaves the zone unstated).
    pub server_zone: Tz,
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
        let base_time = naive_at(2024, 3, 1, 8, 0, 0);
        K3CloudConfig {
            records: 120,
            materials: 40,
            sale_orders: 20,
            locks_audited: true,
            server_zone: chrono_tz::Asia::Shanghai,
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
            .field("sale_orders", &self.row_count("SAL_SaleOrder"))
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

impl SimState {
    /// `at` on the server's wall clock.
    fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.cfg.server_zone).naive_local()
    }
}

simulator!(K3CloudSim);

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
        start_sim(K3CloudSim::new(cfg), K3CloudSim::router, listener).await
    }

    /// Every route (one dispatcher on the service name), with the log and fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&self.state))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Changes seeded customer `index` (1-based) the way a user in K3Cloud would: its phone
    /// and description, with `FModifyDate` set to `at` on the server's clock (its zone is
    /// `server_zone`). The status is left alone. False when there is no such customer.
    pub fn touch(&self, index: u64, at: DateTime<Utc>) -> bool {
        let Ok(offset) = i64::try_from(index) else { return false };
        let modified = self.state.local(at);
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
        row.insert("FModifyDate".to_owned(), Value::String(format_time(modified)));
        true
    }

    /// Changes entry row `entry_id` of the row of `form` numbered `number` (`FNumber`, or
    /// `FBillNo` for bills): `changes` (an object) is merged into it (its `FEntryID` cannot
    /// change) and the bill's `FModifyDate` moves to `at` on the server's clock. False when
    /// the row, the entry row or an object of changes is missing.
    pub fn change_entry(&self, form: &str, number: &str, entry_id: i64, changes: &Value, at: DateTime<Utc>) -> bool {
        let Some(changes) = changes.as_object() else {
            return false;
        };
        let modified = self.state.local(at);
        let mut store = lock(&self.state.store);
        let Some(row) = store.row_mut(form, number) else {
            return false;
        };
        let found = row
            .values_mut()
            .filter_map(Value::as_array_mut)
            .flatten()
            .filter_map(Value::as_object_mut)
            .find(|entry| entry_id_of(entry) == entry_id);
        let Some(entry) = found else { return false };
        for (key, value) in changes {
            if !key.eq_ignore_ascii_case(ENTRY_ID) {
                entry.insert(key.clone(), value.clone());
            }
        }
        row.insert("FModifyDate".to_owned(), Value::String(format_time(modified)));
        true
    }

    /// The entry rows under `entry_key` (e.g. `FSaleOrderEntry`) of the row of `form`
    /// numbered `number`, each with its `FEntryID`; `None` when there is no such row, an
    /// empty list when it has no such entry rows.
    pub fn entries(&self, form: &str, number: &str, entry_key: &str) -> Option<Vec<Value>> {
        let store = lock(&self.state.store);
        let row = store.row(form, number)?;
        Some(match get_ci(row, entry_key) {
            Some(Value::Array(rows)) => rows.clone(),
            _ => Vec::new(),
        })
    }

    /// The `FDocumentStatus` of the row of `form` numbered `number` (see [`status`]).
    pub fn status(&self, form: &str, number: &str) -> Option<String> {
        let store = lock(&self.state.store);
        store.row(form, number).map(|row| status_of(row).to_owned())
    }

    /// Sets the `FDocumentStatus` of a row directly (as a user in K3Cloud would through the
    /// UI); false for an unknown row or a letter that is not one of [`status::ALL`].
    pub fn set_status(&self, form: &str, number: &str, letter: &str) -> bool {
        if !status::ALL.contains(&letter) {
            return false;
        }
        let mut store = lock(&self.state.store);
        let Some(row) = store.row_mut(form, number) else {
            return false;
        };
        row.insert("FDocumentStatus".to_owned(), json!(letter));
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

    /// Every package saved by `Save`/`BatchSave`/`Draft`, in order, as stored right after its
    /// write (with `FormId` added).
    pub fn written(&self) -> Vec<Value> {
        lock(&self.state.store).written.clone()
    }

    /// The current row whose number (`FNumber`, or `FBillNo` for bills) is `number` in any
    /// form, if it was ever written by `Save`/`BatchSave` (seeded rows are not "written").
    pub fn written_by_key(&self, number: &str) -> Option<Value> {
        let store = lock(&self.state.store);
        let form = store.written.iter().rev().find_map(|row| {
            let form = row.get("FormId")?.as_str()?;
            let spec = store.table(form)?.spec;
            (row.get(spec.number_field).and_then(text_of).as_deref() == Some(number)).then(|| form.to_owned())
        })?;
        store.row(&form, number).map(|row| Value::Object(row.clone()))
    }

    /// The current row of `form` numbered `number` (seeded or written).
    pub fn row(&self, form: &str, number: &str) -> Option<Value> {
        lock(&self.state.store)
            .row(form, number)
            .map(|row| Value::Object(row.clone()))
    }

    /// Rows `form` holds (0 for an unknown form).
    pub fn row_count(&self, form: &str) -> usize {
        lock(&self.state.store).table(form).map_or(0, |table| table.rows.len())
    }

    counters! {
        /// `Save`/`BatchSave`/`Draft` requests that reached the handler.
        write_calls,
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
        json_reply(StatusCode::OK, body)
    }

    fn server_error(&self) -> Response {
        let body = status_body(
            vec![error_entry("", "模拟服务器内部错误", 0)],
            Vec::new(),
            4,
            Map::new(),
        );
        json_reply(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

fn error_entry(field: &str, message: &str, index: usize) -> Value {
    json!({"FieldName": field, "Message": message, "DIndex": index})
}

/// `{"Result":{"ResponseStatus":{…}, …extra}}`: `IsSuccess` only when `errors` is empty, as
/// K3Cloud reports a partly failed batch; `successes` lists what did succeed.
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
// Small helpers
// ---------------------------------------------------------------------------

fn format_time(time: NaiveDateTime) -> String {
    time.format(TIME_FORMAT).to_string()
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A boolean option, sent as a JSON bool or as `"true"`/`"false"` (reference §2).
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

fn status_of(row: &Map<String, Value>) -> &str {
    row.get("FDocumentStatus").and_then(Value::as_str).unwrap_or_default()
}

fn entry_id_of(row: &Map<String, Value>) -> i64 {
    get_ci(row, ENTRY_ID)
        .and_then(text_of)
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or(0)
}

fn is_entry_list(value: &Value) -> bool {
    matches!(value, Value::Array(rows) if rows.iter().all(Value::is_object))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormKind {
    /// Base data: `FName` and a known `FCreateOrgId` are required.
    BaseData,
    /// A sale order: a known `FSaleOrgId`, an existing `FCustId` and at least one entry row
    /// with an existing `FMaterialId` and a positive `FQty` are required ([INF]: a small part
    /// of the real form's rules).
    SaleOrder,
}

struct FormSpec {
    id: &'static str,
    /// The primary key in `Model` (`FID` is accepted as its alias).
    key: &'static str,
    label: &'static str,
    /// `FNumber` for base data, `FBillNo` for bills.
    number_field: &'static str,
    number_prefix: &'static str,
    first_id: i64,
    kind: FormKind,
    /// Entry lists the form always has.
    entries: &'static [&'static str],
}

const SALE_ORDER_ENTRY: &str = "FSaleOrderEntry";

const FORMS: &[FormSpec] = &[
    FormSpec {
        id: "BD_Customer",
        key: "FCUSTID",
        label: "客户",
        number_field: "FNumber",
        number_prefix: "CUST",
        first_id: 100_001,
        kind: FormKind::BaseData,
        entries: &[],
    },
    FormSpec {
        id: "BD_MATERIAL",
        key: "FMATERIALID",
        label: "物料",
        number_field: "FNumber",
        number_prefix: "WL",
        first_id: 200_001,
        kind: FormKind::BaseData,
        entries: &[],
    },
    FormSpec {
        id: "SAL_SaleOrder",
        key: "FID",
        label: "销售订单",
        number_field: "FBillNo",
        number_prefix: "XSDD",
        first_id: 300_001,
        kind: FormKind::SaleOrder,
        entries: &[SALE_ORDER_ENTRY],
    },
];

struct Table {
    spec: &'static FormSpec,
    rows: BTreeMap<i64, Map<String, Value>>,
    by_number: HashMap<String, i64>,
    /// Header field keys ever stored (for "field does not exist" errors), upper-cased.
    header_fields: HashSet<String>,
    /// Entry keys as first spelled, by upper-cased key, with their rows' field keys
    /// (upper-cased).
    entry_fields: BTreeMap<String, (String, HashSet<String>)>,
    next_id: i64,
    next_entry_id: i64,
}

impl Table {
    fn new(spec: &'static FormSpec) -> Table {
        let header_fields = [
            "FID",
            "FNAME",
            "FCREATEORGID",
            "FUSEORGID",
            "FMODIFYDATE",
            "FCREATEDATE",
            "FDOCUMENTSTATUS",
        ]
        .iter()
        .map(|key| (*key).to_owned())
        .chain([spec.key.to_ascii_uppercase(), spec.number_field.to_ascii_uppercase()])
        .collect();
        let entry_fields = spec
            .entries
            .iter()
            .map(|key| {
                let fields = HashSet::from([ENTRY_ID.to_ascii_uppercase()]);
                (key.to_ascii_uppercase(), ((*key).to_owned(), fields))
            })
            .collect();
        Table {
            spec,
            rows: BTreeMap::new(),
            by_number: HashMap::new(),
            header_fields,
            entry_fields,
            next_id: spec.first_id,
            // Entry ids are table-wide and far from every header id.
            next_entry_id: spec.first_id * 10 + 1,
        }
    }

    fn number_of(&self, row: &Map<String, Value>) -> String {
        get_ci(row, self.spec.number_field)
            .and_then(text_of)
            .unwrap_or_default()
    }

    fn insert(&mut self, id: i64, row: Map<String, Value>) {
        if let Some(old) = self.rows.get(&id).map(|old| self.number_of(old)) {
            self.by_number.remove(&old);
        }
        let number = self.number_of(&row);
        if !number.is_empty() {
            self.by_number.insert(number, id);
        }
        for (key, value) in &row {
            match value {
                Value::Array(rows) if is_entry_list(value) => {
                    let (_, fields) = self
                        .entry_fields
                        .entry(key.to_ascii_uppercase())
                        .or_insert_with(|| (key.clone(), HashSet::from([ENTRY_ID.to_ascii_uppercase()])));
                    for entry in rows.iter().filter_map(Value::as_object) {
                        fields.extend(entry.keys().map(|inner| inner.to_ascii_uppercase()));
                    }
                }
                _ => {
                    self.header_fields.insert(key.to_ascii_uppercase());
                }
            }
        }
        self.next_id = self.next_id.max(id + 1);
        self.rows.insert(id, row);
    }

    fn remove(&mut self, id: i64) {
        if let Some(row) = self.rows.remove(&id) {
            let number = self.number_of(&row);
            self.by_number.remove(&number);
        }
    }

    fn id_by_number(&self, number: &str) -> Option<i64> {
        self.by_number.get(number).copied()
    }

    fn take_entry_id(&mut self) -> i64 {
        let id = self.next_entry_id;
        self.next_entry_id += 1;
        id
    }

    /// The stored spelling of an entry key, if the form has that entry list.
    fn entry_key(&self, key: &str) -> Option<&str> {
        self.entry_fields
            .get(&key.to_ascii_uppercase())
            .map(|(name, _)| name.as_str())
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
        let as_index = |i: u64| usize::try_from(i).unwrap_or(0);
        let as_offset = |i: u64| i64::try_from(i).unwrap_or(0);
        if let Some(customers) = tables.get_mut(0) {
            for i in 1..=cfg.records {
                let index = as_index(i);
                let city = CITIES[index % CITIES.len()];
                let core = CORES[(index / CITIES.len()) % CORES.len()];
                let trade = TRADES[(index / (CITIES.len() * CORES.len())) % TRADES.len()];
                let modified = time_of(i);
                let org = ORGS[index % 3].0;
                let id = customers.spec.first_id + as_offset(i) - 1;
                let row = json!({
                    "FCUSTID": id,
                    "FNumber": format!("CUST{i:04}"),
                    "FName": format!("{city}{core}{trade}有限公司"),
                    "FShortName": format!("{city}{core}"),
                    "FCreateOrgId": {"FNumber": org},
                    "FUseOrgId": {"FNumber": org},
                    "FTEL": format!("021-{:08}", mix(i) % 100_000_000),
                    "FDescription": "",
                    "FDocumentStatus": status::AUDITED,
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
                let index = as_index(i);
                let modified = time_of(i);
                let id = materials.spec.first_id + as_offset(i) - 1;
                let row = json!({
                    "FMATERIALID": id,
                    "FNumber": format!("WL{i:05}"),
                    "FName": PARTS[index % PARTS.len()],
                    "FSpecification": format!("M{}×{}", 3 + index % 8, 10 + (index / 8 % 5) * 5),
                    "FCreateOrgId": {"FNumber": "100"},
                    "FUseOrgId": {"FNumber": "100"},
                    "FBaseUnitId": {"FNumber": "Pcs"},
                    "FDocumentStatus": status::AUDITED,
                    "FForbidStatus": "A",
                    "FCreateDate": format_time(modified - Duration::days(60)),
                    "FModifyDate": format_time(modified),
                });
                if let Value::Object(row) = row {
                    materials.insert(id, row);
                }
            }
        }
        let (customers, materials) = (cfg.records, cfg.materials);
        if let Some(orders) = tables.get_mut(2).filter(|_| customers > 0 && materials > 0) {
            for i in 1..=cfg.sale_orders {
                let modified = time_of(i);
                let id = orders.spec.first_id + as_offset(i) - 1;
                let lines: Vec<Value> = (0..1 + mix(i) % 3)
                    .map(|line| {
                        let material = 1 + mix(i * 7 + line) % materials;
                        json!({
                            "FEntryID": orders.take_entry_id(),
                            "FMaterialId": {"FNumber": format!("WL{material:05}")},
                            "FQty": 1 + mix(i * 13 + line) % 50,
                            "FTaxPrice": (1 + mix(i * 17 + line) % 400) as f64 / 4.0,
                            "FEntryNote": "",
                        })
                    })
                    .collect();
                let row = json!({
                    "FID": id,
                    "FBillNo": format!("XSDD{i:06}"),
                    "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
                    "FDate": format_time(modified.date().and_hms_opt(0, 0, 0).unwrap_or(modified)),
                    "FSaleOrgId": {"FNumber": "100"},
                    "FCustId": {"FNumber": format!("CUST{:04}", 1 + mix(i) % customers)},
                    "FNote": "",
                    "FDocumentStatus": status::AUDITED,
                    "FCreateDate": format_time(modified - Duration::days(1)),
                    "FModifyDate": format_time(modified),
                    "FSaleOrderEntry": lines,
                });
                if let Value::Object(row) = row {
                    orders.insert(id, row);
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

    fn row(&self, form: &str, number: &str) -> Option<&Map<String, Value>> {
        let table = self.table(form)?;
        table.rows.get(&table.id_by_number(number)?)
    }

    fn row_mut(&mut self, form: &str, number: &str) -> Option<&mut Map<String, Value>> {
        let table = self.table_mut(form)?;
        let id = table.id_by_number(number)?;
        table.rows.get_mut(&id)
    }

    /// `number → FDocumentStatus` of every row of `form` (for reference checks).
    fn statuses(&self, form: &str) -> HashMap<String, String> {
        self.table(form).map_or_else(HashMap::new, |table| {
            table
                .rows
                .values()
                .map(|row| (table.number_of(row), status_of(row).to_owned()))
                .collect()
        })
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
    let now = Utc::now();
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
        | "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign" => login(&state, service, &request, now),
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
            let cookie = match authenticate(&state, &headers, path, now) {
                Ok(cookie) => cookie,
                Err(Refusal::Gateway(errcode, description, description_cn)) => {
                    return gateway_error(errcode, description, description_cn)
                }
                Err(Refusal::SessionLost) => {
                    let lost = failure(SESSION_LOST, 1);
                    return ok_json(if is_query { json!([[lost]]) } else { lost });
                }
            };
            let answer = business(&state, op, &request, state.local(now));
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
    "Draft",
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

/// The session id a request carries (header or cookie).
fn session_id(headers: &HeaderMap) -> Option<String> {
    if let Some(id) = headers
        .get("kdservice-sessionid")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty())
    {
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
fn authenticate(
    state: &SimState,
    headers: &HeaderMap,
    path: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, Refusal> {
    let signed = ["X-Api-Signature", "X-Kd-Appkey", "X-Api-ClientID"]
        .iter()
        .any(|name| headers.contains_key(*name));
    if !signed {
        let known = session_id(headers).is_some_and(|id| lock(&state.sessions).contains(&id));
        return if known { Ok(None) } else { Err(Refusal::SessionLost) };
    }
    let cfg = &state.cfg;
    let app = AppCredentials {
        app_id: &cfg.app_id,
        app_secret: &cfg.app_secret,
        acct_id: &cfg.acct_id,
        username: &cfg.username,
    };
    verify::check_signed(
        &app,
        headers,
        &percent_decode_path(path),
        now.timestamp(),
        cfg.max_clock_skew_secs,
    )?;
    Ok(Some(format!(
        "kdservice-sessionid={}; path=/; HttpOnly",
        new_session_token(state)
    )))
}

fn new_session_token(state: &SimState) -> String {
    let n = state.session_counter.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{:08x}-{:016x}", n, mix(n ^ 0x004B_3343_4C4F_5544))
}

fn login(state: &SimState, service: &str, request: &Value, now: DateTime<Utc>) -> Response {
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
            let expected = verify::login_sign(&acct, &user, &cfg.app_id, &cfg.app_secret, &timestamp);
            verify::fresh(&timestamp, now.timestamp(), cfg.max_clock_skew_secs)
                && arg(2, "appId") == cfg.app_id
                && arg(4, "sign") == expected
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

fn business(state: &SimState, op: &str, request: &Value, now: NaiveDateTime) -> Value {
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
                "Save" | "BatchSave" | "Draft" => {
                    state.write_calls.fetch_add(1, Ordering::Relaxed);
                    let mode = match op {
                        "BatchSave" => SaveMode::Batch,
                        "Draft" => SaveMode::Draft,
                        _ => SaveMode::Single,
                    };
                    save(&mut store, &form, &data, mode, state.cfg.locks_audited, now)
                }
                "View" => view(&store, &form, &data),
                _ => change_status(&mut store, &form, op, &data, now),
            }
        }
    }
}

// --- Save / BatchSave / Draft ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaveMode {
    Single,
    Batch,
    Draft,
}

struct SaveOptions {
    /// `NeedUpDateFields`, upper-cased; `None` when absent or empty (then every sent field
    /// is updated, as the official templates' `"NeedUpDateFields":[]` means).
    need_update: Option<HashSet<String>>,
    delete_entry: bool,
    auto_audit: bool,
    verify_base_data: bool,
    return_fields: Vec<String>,
    draft: bool,
    locks: bool,
}

impl SaveOptions {
    fn wanted(&self, key: &str) -> bool {
        self.need_update
            .as_ref()
            .is_none_or(|fields| fields.contains(&key.to_ascii_uppercase()))
    }
}

/// Numbers and statuses of the base data a bill refers to.
#[derive(Default)]
struct References {
    customers: HashMap<String, String>,
    materials: HashMap<String, String>,
}

fn save(
    store: &mut Store,
    form: &str,
    data: &Map<String, Value>,
    mode: SaveMode,
    locks: bool,
    now: NaiveDateTime,
) -> Value {
    let packages: Vec<Value> = match (get_ci(data, "Model"), mode) {
        (Some(Value::Array(items)), SaveMode::Batch) => items.clone(),
        (Some(model @ Value::Object(_)), SaveMode::Single | SaveMode::Draft) => vec![model.clone()],
        (_, SaveMode::Batch) => return failure("BatchSave的Model必须是数组", 8),
        (_, _) => return failure("Save的Model必须是对象", 8),
    };
    let list = |key: &str| -> Vec<String> {
        get_ci(data, key)
            .and_then(Value::as_array)
            .map(|fields| fields.iter().filter_map(text_of).collect())
            .unwrap_or_default()
    };
    let need_update: HashSet<String> = list("NeedUpDateFields")
        .iter()
        .map(|field| field.to_ascii_uppercase())
        .collect();
    let options = SaveOptions {
        need_update: (!need_update.is_empty()).then_some(need_update),
        delete_entry: flag(data, "IsDeleteEntry", true),
        auto_audit: mode != SaveMode::Draft && flag(data, "IsAutoSubmitAndAudit", false),
        verify_base_data: flag(data, "IsVerifyBaseDataField", false),
        return_fields: list("NeedReturnFields"),
        draft: mode == SaveMode::Draft,
        locks,
    };
    let refs = match store.table(form).map(|table| table.spec.kind) {
        Some(FormKind::SaleOrder) => References {
            customers: store.statuses("BD_Customer"),
            materials: store.statuses("BD_MATERIAL"),
        },
        _ => References::default(),
    };
    let Some(table) = store.table_mut(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let form_id = table.spec.id;
    let mut errors = Vec::new();
    let mut successes = Vec::new();
    let mut returned = Vec::new();
    let mut written = Vec::new();
    for (index, package) in packages.iter().enumerate() {
        match save_package(table, package, &options, &refs, now) {
            Ok(id) => {
                let Some(row) = table.rows.get(&id) else { continue };
                successes.push(json!({"Id": id, "Number": table.number_of(row), "DIndex": index}));
                returned.push(return_data(table, row, &options.return_fields));
                let mut row = row.clone();
                row.insert("FormId".to_owned(), Value::String(form_id.to_owned()));
                written.push(Value::Object(row));
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
    if mode != SaveMode::Batch {
        let single = successes.first();
        let field = |name: &str| single.and_then(|s| s.get(name).cloned()).unwrap_or(json!(""));
        extra.insert("Id".to_owned(), field("Id"));
        extra.insert("Number".to_owned(), field("Number"));
    }
    extra.insert("NeedReturnData".to_owned(), Value::Array(returned));
    status_body(errors, successes, 11, extra)
}

/// One `NeedReturnData` object, shaped like the model (see the module doc).
fn return_data(table: &Table, row: &Map<String, Value>, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields {
        let (head, sub) = match field.split_once('.') {
            Some((head, sub)) => (head, Some(sub)),
            None => (field.as_str(), None),
        };
        match (table.entry_key(head), sub) {
            (Some(entry_key), Some(sub)) => {
                let rows = match get_ci(row, entry_key) {
                    Some(Value::Array(rows)) => rows.as_slice(),
                    _ => &[],
                };
                let slot = out
                    .entry(head.to_owned())
                    .or_insert_with(|| Value::Array(rows.iter().map(|_| json!({})).collect()));
                if let Value::Array(items) = slot {
                    for (item, entry) in items.iter_mut().zip(rows) {
                        let value = entry
                            .as_object()
                            .and_then(|entry| resolve(entry, None, sub))
                            .unwrap_or(Value::Null);
                        if let Value::Object(item) = item {
                            item.insert(sub.to_owned(), value);
                        }
                    }
                }
            }
            (_, Some(sub)) => {
                let value = resolve(row, Some(table.spec), field).unwrap_or(Value::Null);
                let slot = out.entry(head.to_owned()).or_insert_with(|| json!({}));
                if let Value::Object(slot) = slot {
                    slot.insert(sub.to_owned(), value);
                }
            }
            (_, None) => {
                out.insert(
                    field.clone(),
                    resolve(row, Some(table.spec), field).unwrap_or(Value::Null),
                );
            }
        }
    }
    Value::Object(out)
}

type Problems = Vec<(String, String)>;

fn problem(field: &str, message: String) -> Problems {
    vec![(field.to_owned(), message)]
}

/// Saves one package on its own: creates it, or updates the row its key names. The table
/// is changed only when the package succeeds.
fn save_package(
    table: &mut Table,
    package: &Value,
    options: &SaveOptions,
    refs: &References,
    now: NaiveDateTime,
) -> Result<i64, Problems> {
    let spec = table.spec;
    let Some(model) = package.as_object() else {
        return Err(problem("", "数据包必须是JSON对象".to_owned()));
    };
    let key_value = get_ci(model, spec.key).or_else(|| get_ci(model, "FID"));
    let target = match key_value {
        None | Some(Value::Null) => 0,
        Some(value) => {
            let text = text_of(value).unwrap_or_else(|| value.to_string());
            match text.trim() {
                "" => 0,
                id => id
                    .parse::<i64>()
                    .map_err(|_| problem(spec.key, format!("{}内码“{text}”必须是整数", spec.label)))?,
            }
        }
    };
    let is_key = |key: &str| key.eq_ignore_ascii_case(spec.key) || key.eq_ignore_ascii_case("FID");
    let mut next_entry_id = table.next_entry_id;
    let (id, mut row, before) = if target == 0 {
        let mut row = Map::new();
        row.insert(spec.key.to_owned(), Value::from(table.next_id));
        for (key, value) in model.iter().filter(|(key, _)| !is_key(key)) {
            let mut value = value.clone();
            if let Value::Array(rows) = &mut value {
                if rows.iter().all(Value::is_object) {
                    for entry in rows.iter_mut().filter_map(Value::as_object_mut) {
                        entry.retain(|inner, _| !inner.eq_ignore_ascii_case(ENTRY_ID));
                        entry.insert(ENTRY_ID.to_owned(), Value::from(next_entry_id));
                        next_entry_id += 1;
                    }
                }
            }
            row.insert(key.clone(), value);
        }
        (table.next_id, row, None)
    } else {
        let Some(existing) = table.rows.get(&target) else {
            return Err(problem(
                spec.key,
                format!("{}内码“{target}”不存在，无法修改", spec.label),
            ));
        };
        let before = status_of(existing).to_owned();
        if options.locks {
            let number = table.number_of(existing);
            match before.as_str() {
                status::AUDITED => {
                    return Err(problem(
                        "",
                        format!("{}“{number}”不允许修改：单据已经审核！", spec.label),
                    ))
                }
                // [INF] The wording for a submitted row; the reference quotes only the audited one.
                status::SUBMITTED => {
                    return Err(problem(
                        "",
                        format!("{}“{number}”不允许修改：单据已经提交！", spec.label),
                    ))
                }
                _ => {}
            }
        }
        let mut row = existing.clone();
        for (key, value) in model.iter().filter(|(key, _)| !is_key(key) && options.wanted(key)) {
            let slot = key_of(&row, key).unwrap_or_else(|| key.clone());
            match value {
                Value::Array(incoming) if is_entry_list(value) => {
                    let stored = match row.get(&slot) {
                        Some(Value::Array(stored)) => stored.as_slice(),
                        _ => &[],
                    };
                    let merged = merge_entries(&slot, stored, incoming, options, &mut next_entry_id)?;
                    row.insert(slot, Value::Array(merged));
                }
                _ => {
                    row.insert(slot, value.clone());
                }
            }
        }
        (target, row, Some(before))
    };
    if before.is_none() && table.number_of(&row).is_empty() {
        let number = match spec.kind {
            FormKind::SaleOrder => format!("{}{:06}", spec.number_prefix, id - spec.first_id + 1),
            FormKind::BaseData => format!("{}{id}", spec.number_prefix),
        };
        let slot = key_of(&row, spec.number_field).unwrap_or_else(|| spec.number_field.to_owned());
        row.insert(slot, Value::String(number));
    }
    let number = table.number_of(&row);
    let mut problems = if options.draft {
        Vec::new()
    } else {
        validate(&row, spec, refs, options.verify_base_data)
    };
    if let Some(owner) = table.id_by_number(&number).filter(|owner| *owner != id) {
        problems.push((
            spec.number_field.to_owned(),
            format!("{}编码“{number}”已经被使用（内码{owner}），编码必须唯一", spec.label),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let stamp = Value::String(format_time(now));
    let after = match (before.as_deref(), options.draft, options.auto_audit) {
        (None, true, _) => status::DRAFT,
        (_, _, true) => status::AUDITED,
        (None, false, false) => status::CREATED,
        // Saving a draft makes it a created row; a draft saved again stays a draft.
        (Some(status::DRAFT), false, false) => status::CREATED,
        (Some(status::DRAFT), true, false) => status::DRAFT,
        // A, D, or (with locks off) B and C keep their status.
        (Some(_), _, false) => before.as_deref().unwrap_or(status::CREATED),
    }
    .to_owned();
    if before.is_none() {
        row.insert("FCreateDate".to_owned(), stamp.clone());
        row.entry("FForbidStatus".to_owned()).or_insert_with(|| json!("A"));
        if spec.kind == FormKind::SaleOrder && get_ci(&row, "FDate").is_none() {
            let today = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
            row.insert("FDate".to_owned(), Value::String(format_time(today)));
        }
    }
    if after == status::AUDITED && before.as_deref() != Some(status::AUDITED) {
        row.insert("FApproveDate".to_owned(), stamp.clone());
    }
    row.insert("FDocumentStatus".to_owned(), Value::String(after));
    row.insert("FModifyDate".to_owned(), stamp);
    table.next_entry_id = next_entry_id;
    table.insert(id, row);
    Ok(id)
}

/// The entry rows after an update (see the module doc). With `IsDeleteEntry` they are the
/// payload's rows in its order (updated or appended); without it every stored row stays in
/// its place (updated when the payload names it) and new rows follow.
fn merge_entries(
    entry_key: &str,
    stored: &[Value],
    incoming: &[Value],
    options: &SaveOptions,
    next_entry_id: &mut i64,
) -> Result<Vec<Value>, Problems> {
    let stored_row = |id: i64| {
        stored
            .iter()
            .filter_map(Value::as_object)
            .find(|old| entry_id_of(old) == id)
    };
    let mut in_payload_order = Vec::new();
    let mut updated: HashMap<i64, Value> = HashMap::new();
    let mut appended = Vec::new();
    for (line, entry) in incoming.iter().filter_map(Value::as_object).enumerate() {
        let id = entry_id_of(entry);
        if id == 0 {
            let mut fresh = entry.clone();
            fresh.retain(|inner, _| !inner.eq_ignore_ascii_case(ENTRY_ID));
            fresh.insert(ENTRY_ID.to_owned(), Value::from(*next_entry_id));
            *next_entry_id += 1;
            in_payload_order.push(Value::Object(fresh.clone()));
            appended.push(Value::Object(fresh));
            continue;
        }
        let field = format!("{entry_key}.{ENTRY_ID}");
        if updated.contains_key(&id) {
            return Err(problem(&field, format!("第{}行分录的内码{id}重复", line + 1)));
        }
        let Some(old) = stored_row(id) else {
            // [INF] The real message is unknown; a row id the bill does not have is refused.
            return Err(problem(&field, format!("第{}行分录的内码{id}在单据中不存在", line + 1)));
        };
        let mut row = old.clone();
        for (inner, value) in entry {
            if inner.eq_ignore_ascii_case(ENTRY_ID) || !options.wanted(inner) {
                continue;
            }
            let slot = key_of(&row, inner).unwrap_or_else(|| inner.clone());
            row.insert(slot, value.clone());
        }
        in_payload_order.push(Value::Object(row.clone()));
        updated.insert(id, Value::Object(row));
    }
    if options.delete_entry {
        return Ok(in_payload_order);
    }
    let mut kept: Vec<Value> = stored
        .iter()
        .map(|old| {
            let id = old.as_object().map_or(0, entry_id_of);
            updated.remove(&id).unwrap_or_else(|| old.clone())
        })
        .collect();
    kept.extend(appended);
    Ok(kept)
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

/// A base-data reference `{"FNumber": ..}` that must name a row of `known`; with
/// `IsVerifyBaseDataField` that row must also be audited.
fn base_ref_problem(
    row: &Map<String, Value>,
    field: &str,
    label: &str,
    known: &HashMap<String, String>,
    verify: bool,
    line: Option<usize>,
) -> Option<(String, String)> {
    let prefix = line.map_or_else(String::new, |line| format!("第{line}行分录，"));
    let number = get_ci(row, field)
        .and_then(Value::as_object)
        .and_then(|object| get_ci(object, "FNumber"))
        .and_then(text_of)
        .filter(|number| !number.is_empty());
    let Some(number) = number else {
        return Some((
            field.to_owned(),
            format!("{prefix}字段“{label}”是必填项，请按 {{\"FNumber\":\"编码\"}} 填写"),
        ));
    };
    match known.get(&number) {
        None => Some((
            field.to_owned(),
            format!("{prefix}字段“{label}”的值“{number}”在系统中不存在"),
        )),
        Some(letter) if verify && letter != status::AUDITED => {
            Some((field.to_owned(), format!("{prefix}字段“{label}”的值“{number}”未审核")))
        }
        Some(_) => None,
    }
}

fn validate(row: &Map<String, Value>, spec: &FormSpec, refs: &References, verify_base_data: bool) -> Problems {
    let mut problems = Vec::new();
    match spec.kind {
        FormKind::BaseData => {
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
        }
        FormKind::SaleOrder => {
            problems.extend(org_ref_problem(row, "FSaleOrgId", "销售组织", true));
            problems.extend(base_ref_problem(
                row,
                "FCustId",
                "客户",
                &refs.customers,
                verify_base_data,
                None,
            ));
            let lines = match get_ci(row, SALE_ORDER_ENTRY) {
                Some(Value::Array(lines)) => lines.as_slice(),
                _ => &[],
            };
            if lines.is_empty() {
                problems.push((
                    SALE_ORDER_ENTRY.to_owned(),
                    "单据体“订单明细”至少需要一行分录".to_owned(),
                ));
            }
            for (line, entry) in lines.iter().filter_map(Value::as_object).enumerate() {
                problems.extend(base_ref_problem(
                    entry,
                    "FMaterialId",
                    "物料编码",
                    &refs.materials,
                    verify_base_data,
                    Some(line + 1),
                ));
                let quantity = get_ci(entry, "FQty")
                    .and_then(text_of)
                    .and_then(|qty| qty.trim().parse::<f64>().ok());
                if !quantity.is_some_and(|qty| qty > 0.0) {
                    problems.push(("FQty".to_owned(), format!("第{}行分录，销售数量必须大于0", line + 1)));
                }
            }
        }
    }
    problems
}

// --- View / status changes ----------------------------------------------------

fn view(store: &Store, form: &str, data: &Map<String, Value>) -> Value {
    let Some(table) = store.table(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let id = get_ci(data, "Id").and_then(text_of).filter(|id| !id.trim().is_empty());
    let number = get_ci(data, "Number").and_then(text_of).filter(|n| !n.is_empty());
    let found = match (id, number) {
        (Some(id), _) => id.trim().parse::<i64>().ok().filter(|id| table.rows.contains_key(id)),
        (None, Some(number)) => table.id_by_number(&number),
        (None, None) => return failure("Id和Number不能同时为空", 8),
    };
    match found.and_then(|id| table.rows.get(&id).map(|row| (id, row))) {
        Some((id, row)) => {
            let mut record = Map::new();
            record.insert("Id".to_owned(), Value::from(id));
            record.insert("Number".to_owned(), Value::String(table.number_of(row)));
            record.extend(row.iter().map(|(k, v)| (k.clone(), v.clone())));
            let mut extra = Map::new();
            extra.insert("Result".to_owned(), Value::Object(record));
            status_body(Vec::new(), Vec::new(), 0, extra)
        }
        None => failure("单据不存在或已被删除", 10),
    }
}

/// Submit / Audit / UnAudit / Delete on `Ids` (a comma string, preferred) or `Numbers` (an
/// array); each id succeeds or fails on its own, `DIndex` being its position in that list.
fn change_status(store: &mut Store, form: &str, op: &str, data: &Map<String, Value>, now: NaiveDateTime) -> Value {
    let Some(table) = store.table_mut(form) else {
        return failure(&format!("业务对象“{form}”不存在"), 4);
    };
    let targets: Vec<(String, Option<i64>)> = match (get_ci(data, "Ids"), get_ci(data, "Numbers")) {
        (Some(Value::String(ids)), _) if !ids.trim().is_empty() => ids
            .split(',')
            .map(|id| {
                let id = id.trim().to_owned();
                let found = id.parse().ok().filter(|id| table.rows.contains_key(id));
                (id, found)
            })
            .collect(),
        (Some(Value::Array(_) | Value::Number(_) | Value::Object(_)), _) => {
            return failure("参数Ids必须是以逗号分隔的字符串，如\"100001,100002\"", 8)
        }
        (_, Some(Value::Array(numbers))) if !numbers.is_empty() => numbers
            .iter()
            .map(|number| match number {
                Value::String(number) => (number.clone(), table.id_by_number(number)),
                other => (other.to_string(), None),
            })
            .collect(),
        (_, Some(Value::String(text))) if !text.trim().is_empty() => {
            return failure("参数Numbers必须是数组，如[\"CUST0001\"]", 8)
        }
        _ => return failure("Ids和Numbers不能同时为空", 8),
    };
    let label = table.spec.label;
    let mut errors = Vec::new();
    let mut successes = Vec::new();
    for (index, (name, id)) in targets.into_iter().enumerate() {
        let Some((id, row)) = id.and_then(|id| table.rows.get_mut(&id).map(|row| (id, row))) else {
            errors.push(error_entry("", &format!("{label}“{name}”对应的数据不存在"), index));
            continue;
        };
        let number = get_ci(row, table.spec.number_field)
            .and_then(text_of)
            .unwrap_or_default();
        let current = status_of(row).to_owned();
        let refuse = |why: &str| format!("{label}“{number}”{why}（单据状态为{current}）");
        let next = match (op, current.as_str()) {
            ("Submit", status::CREATED | status::REAUDIT) => Ok(status::SUBMITTED),
            ("Submit", status::SUBMITTED) => Err(refuse("已经提交，不能重复提交")),
            ("Submit", status::AUDITED) => Err(refuse("已经审核，不能提交")),
            ("Submit", _) => Err(refuse("不是创建或重新审核状态，请先保存再提交")),
            ("Audit", status::SUBMITTED) => Ok(status::AUDITED),
            ("Audit", status::AUDITED) => Err(format!("{label}“{number}”：单据已经审核！")),
            ("Audit", _) => Err(refuse("未提交，不能审核")),
            ("UnAudit", status::AUDITED) => Ok(status::REAUDIT),
            ("UnAudit", _) => Err(refuse("未审核，不能反审核")),
            ("Delete", status::CREATED | status::REAUDIT | status::DRAFT) => Ok(""),
            ("Delete", _) => Err(refuse("已提交或已审核，不能删除")),
            _ => Err(format!("不支持的操作{op}")),
        };
        match next {
            Ok("") => {
                table.remove(id);
                successes.push(json!({"Id": id, "Number": number, "DIndex": index}));
            }
            Ok(next) => {
                // [INF] Status operations leave FModifyDate alone; the audit date is stamped.
                if next == status::AUDITED {
                    row.insert("FApproveDate".to_owned(), Value::String(format_time(now)));
                } else {
                    row.remove("FApproveDate");
                }
                row.insert("FDocumentStatus".to_owned(), json!(next));
                successes.push(json!({"Id": id, "Number": number, "DIndex": index}));
            }
            Err(message) => errors.push(error_entry("", &message, index)),
        }
    }
    status_body(errors, successes, 11, Map::new())
}

// --- ExecuteBillQuery / BillQuery ---------------------------------------------

/// A field of a stored row by field key: case-insensitive; with the form's `spec`, `FID`
/// names the key field; `Ref.Sub` reads inside a base-data reference, and an organisation
/// reference without a sub-key gives its internal id.
fn resolve(row: &Map<String, Value>, spec: Option<&FormSpec>, field_key: &str) -> Option<Value> {
    let (head, sub) = match field_key.split_once('.') {
        Some((head, sub)) => (head, Some(sub)),
        None => (field_key, None),
    };
    let head = match spec {
        Some(spec) if head.eq_ignore_ascii_case("FID") => spec.key,
        _ => head,
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

/// What a query's field key reads.
#[derive(Debug, Clone)]
enum Column {
    Header(String),
    EntryId,
    EntrySeq,
    Entry(String),
}

/// Classifies a field key against the form: `<Entry>_FEntryId` / `<Entry>_FSeq`, a header
/// field, or a field of one entry list (whose stored key is returned too).
fn classify(table: &Table, key: &str) -> Option<(Column, Option<String>)> {
    if let Some((prefix, suffix)) = key.rsplit_once('_') {
        if let Some(entry) = table.entry_key(prefix) {
            if suffix.eq_ignore_ascii_case("FEntryId") {
                return Some((Column::EntryId, Some(entry.to_owned())));
            }
            if suffix.eq_ignore_ascii_case("FSeq") {
                return Some((Column::EntrySeq, Some(entry.to_owned())));
            }
        }
    }
    let head = key.split('.').next().unwrap_or_default().to_ascii_uppercase();
    if table.header_fields.contains(&head) {
        return Some((Column::Header(key.to_owned()), None));
    }
    table
        .entry_fields
        .values()
        .find(|(_, fields)| fields.contains(&head))
        .map(|(name, _)| (Column::Entry(key.to_owned()), Some(name.clone())))
}

/// One answer row: a bill's header, and one of its entry rows with its 0-based position
/// when the query reads entry fields.
struct Flat<'a> {
    id: i64,
    header: &'a Map<String, Value>,
    entry: Option<(&'a Map<String, Value>, usize)>,
}

impl Flat<'_> {
    fn value(&self, column: &Column, spec: &FormSpec) -> Value {
        match column {
            Column::Header(key) => resolve(self.header, Some(spec), key),
            Column::EntryId => self.entry.and_then(|(entry, _)| get_ci(entry, ENTRY_ID).cloned()),
            Column::EntrySeq => self.entry.map(|(_, seq)| json!(seq + 1)),
            Column::Entry(key) => self.entry.and_then(|(entry, _)| resolve(entry, None, key)),
        }
        .unwrap_or(Value::Null)
    }
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
    let spec = table.spec;
    let field_keys = get_ci(data, "FieldKeys").and_then(text_of).unwrap_or_default();
    let keys: Vec<&str> = field_keys
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .collect();
    if keys.is_empty() {
        return nested("FieldKeys不能为空", 8);
    }
    let filter = match get_ci(data, "FilterString") {
        None | Some(Value::Null) => Ok(Filter::All),
        Some(Value::String(text)) => Filter::parse(text),
        Some(Value::Array(items)) if items.is_empty() => Ok(Filter::All),
        Some(_) => Err("模拟器只支持字符串形式的FilterString".to_owned()),
    };
    let filter = match filter {
        Ok(filter) => filter,
        Err(message) => return nested(&format!("过滤条件FilterString有误：{message}"), 8),
    };
    let order_text = get_ci(data, "OrderString").and_then(text_of).unwrap_or_default();
    let mut order: Vec<(String, bool)> = Vec::new();
    for part in order_text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let descending = match words.as_slice() {
            [_] => false,
            [_, direction] if direction.eq_ignore_ascii_case("ASC") => false,
            [_, direction] if direction.eq_ignore_ascii_case("DESC") => true,
            _ => return nested(&format!("排序条件OrderString有误：“{part}”"), 8),
        };
        order.push((words[0].to_owned(), descending));
    }
    // Every field the query reads, classified once.
    let mut columns: HashMap<String, Column> = HashMap::new();
    let mut entry_lists: HashSet<String> = HashSet::new();
    let filter_fields = filter.fields();
    let all_fields = keys
        .iter()
        .copied()
        .chain(filter_fields.iter().copied())
        .chain(order.iter().map(|(field, _)| field.as_str()));
    for field in all_fields {
        let Some((column, entry)) = classify(table, field) else {
            return nested(&format!("元数据中标识为{field}的字段不存在"), 9);
        };
        entry_lists.extend(entry);
        columns.insert(field.to_owned(), column);
    }
    if entry_lists.len() > 1 {
        let mut names: Vec<&String> = entry_lists.iter().collect();
        names.sort();
        return nested(&format!("模拟器一次查询只支持一个单据体，本次涉及：{names:?}"), 8);
    }
    let entry_list = entry_lists.into_iter().next();
    let mut rows: Vec<Flat<'_>> = Vec::new();
    for (id, header) in &table.rows {
        let entries: Vec<&Map<String, Value>> = match entry_list.as_deref().and_then(|key| header.get(key)) {
            Some(Value::Array(entries)) => entries.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        };
        if entry_list.is_none() || entries.is_empty() {
            rows.push(Flat {
                id: *id,
                header,
                entry: None,
            });
        } else {
            rows.extend(entries.into_iter().enumerate().map(|(seq, entry)| Flat {
                id: *id,
                header,
                entry: Some((entry, seq)),
            }));
        }
    }
    let column = |field: &str| columns.get(field).cloned().unwrap_or(Column::Header(field.to_owned()));
    rows.retain(|row| filter.matches(&|field| row.value(&column(field), spec)));
    rows.sort_by(|a, b| {
        for (field, descending) in &order {
            let ordering = order_values(&a.value(&column(field), spec), &b.value(&column(field), spec));
            let ordering = if *descending { ordering.reverse() } else { ordering };
            if ordering.is_ne() {
                return ordering;
            }
        }
        let seq = |row: &Flat<'_>| row.entry.map_or(0, |(_, seq)| seq);
        a.id.cmp(&b.id).then(seq(a).cmp(&seq(b)))
    });
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
    if top > 0 {
        rows.truncate(usize::try_from(top).unwrap_or(usize::MAX));
    }
    let out: Vec<Value> = rows
        .into_iter()
        .skip(start)
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|row| {
            if as_objects {
                let named: Map<String, Value> = keys
                    .iter()
                    .map(|key| ((*key).to_owned(), row.value(&column(key), spec)))
                    .collect();
                Value::Object(named)
            } else {
                Value::Array(keys.iter().map(|key| row.value(&column(key), spec)).collect())
            }
        })
        .collect();
    Value::Array(out)
}

/// Ordering for `OrderString`: NULL first, numbers numerically, date-times as date-times,
/// other text as text.
fn order_values(left: &Value, right: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering as O;
    match (left, right) {
        (Value::Null, Value::Null) => O::Equal,
        (Value::Null, _) => O::Less,
        (_, Value::Null) => O::Greater,
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(O::Equal),
        (Value::String(a), Value::String(b)) => match (parse_time(a), parse_time(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.cmp(b),
        },
        _ => text_of(left)
            .unwrap_or_default()
            .cmp(&text_of(right).unwrap_or_default()),
    }
}

/// `ferry test`'s check of a replayed request: a call with signed headers must pass this
/// simulator's own check (`verify::check_signed`) for the given app; a session call carries
/// no signature and passes.
pub fn verify_signature(
    app_id: &str,
    app_secret: &str,
    acct_id: &str,
    username: &str,
    request: &super::RecordedRequest,
) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let signed = ["X-Api-Signature", "X-Kd-Appkey", "X-Api-ClientID"]
        .iter()
        .any(|name| headers.contains_key(*name));
    if !signed {
        return Ok(());
    }
    let app = verify::AppCredentials {
        app_id,
        app_secret,
        acct_id,
        username,
    };
    verify::check_signed(
        &app,
        &headers,
        &percent_decode_path(&request.path),
        Utc::now().timestamp(),
        i64::MAX / 4,
    )
    .map_err(|refusal| format!("kingdee-k3cloud signed headers refused by the simulator: {refusal:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::k3cloud::{envelope, request, AuthMode, Settings, ValidateUserBody};
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use chrono::{DateTime, TimeZone, Utc};
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
        // 01:00 UTC is 09:00 on the server's (Shanghai) clock.
        let later = Utc.with_ymd_and_hms(2024, 3, 5, 1, 0, 0).unwrap();
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
        let touched = sim.row("BD_Customer", "CUST0007").unwrap();
        assert_eq!(touched["FDescription"], "修改1");
        assert_eq!(touched["FModifyDate"], "2024-03-05T09:00:00");
        assert_eq!(touched["FDocumentStatus"], "C", "a change in K3Cloud keeps the status");
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
            RowOutcome::Written {
                target_id: Some(id), ..
            } => id.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(&rows[1], RowOutcome::Failed { class: "rejected", message } if message.contains("FCreateOrgId.FNumber"))
        );
        assert!(matches!(&rows[2], RowOutcome::Failed { class: "rejected", message } if message.contains("FName")));
        assert!(
            matches!(&rows[3], RowOutcome::Failed { class: "rejected", message } if message.contains("已经被使用"))
        );
        assert!(matches!(&rows[4], RowOutcome::Written { target_id: Some(_), .. }));
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
            RowOutcome::Failed {
                class: crate::connector::UNMATCHED_ANSWER,
                ..
            }
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
    fn seeded_data_is_deterministic() {
        let one = Store::seeded(&K3CloudConfig::default());
        let two = Store::seeded(&K3CloudConfig::default());
        let first = one.row("BD_Customer", "CUST0001").unwrap();
        assert_eq!(first, two.row("BD_Customer", "CUST0001").unwrap());
        assert_eq!(first["FModifyDate"], "2024-03-01T08:30:00");
        assert!(first["FName"].as_str().unwrap().ends_with("有限公司"));
        assert_eq!(one.table("bd_material").unwrap().rows.len(), 40);
        assert_eq!(percent_decode_path("/a%2Fb%zz%4"), "/a/b%zz%4");
        let order = one.row("SAL_SaleOrder", "XSDD000001").unwrap();
        assert_eq!(order, two.row("SAL_SaleOrder", "XSDD000001").unwrap());
        assert_eq!(order["FDocumentStatus"], "C");
        let lines = order["FSaleOrderEntry"].as_array().unwrap();
        assert!((1..=3).contains(&lines.len()));
        assert!(lines.iter().all(|line| line["FEntryID"].as_i64().unwrap() > 0));
        assert_eq!(one.table("SAL_SaleOrder").unwrap().rows.len(), 20);
        let bare = Store::seeded(&K3CloudConfig {
            records: 0,
            ..K3CloudConfig::default()
        });
        assert!(
            bare.table("SAL_SaleOrder").unwrap().rows.is_empty(),
            "orders need customers"
        );
    }

    // --- Document status and locks ---------------------------------------------

    async fn batch_save(base: &str, form: &str, data: Value) -> Answer {
        let body = json!({"formid": form, "data": data});
        call(&settings(), base, "BatchSave", body, None, Utc::now()).await
    }

    async fn operate(base: &str, op: &str, form: &str, data: Value) -> Value {
        let body = json!({"formid": form, "data": data});
        let answer = call(&settings(), base, op, body, None, Utc::now()).await;
        assert_eq!(answer.status, 200);
        answer.body
    }

    #[tokio::test]
    async fn updates_of_audited_or_submitted_rows_are_refused_per_package() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let created = batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [customer("LOCK01", "审核后的客户"), customer("LOCK02", "只保存的客户")], "IsAutoSubmitAndAudit": true}),
        )
        .await;
        assert_eq!(created.body["Result"]["ResponseStatus"]["IsSuccess"], true);
        let ids: Vec<i64> = created.body["Result"]["ResponseStatus"]["SuccessEntitys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entity| entity["Id"].as_i64().unwrap())
            .collect();
        assert_eq!(sim.status("BD_Customer", "LOCK01").as_deref(), Some("C"));
        let kept = sim.row("BD_Customer", "LOCK01").unwrap();

        // Package 0 changes an audited row, package 1 a new one, package 2 a seeded (audited)
        // row by FID, package 3 a row in A.
        let plain = batch_save(&base, "BD_Customer", json!({"Model": [customer("LOCK03", "x")]})).await;
        let created_id = plain.body["Result"]["ResponseStatus"]["SuccessEntitys"][0]["Id"]
            .as_i64()
            .unwrap();
        assert_eq!(sim.status("BD_Customer", "LOCK03").as_deref(), Some("A"));
        let update = batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [
                {"FCUSTID": ids[0], "FName": "改名"},
                customer("LOCK04", "新客户"),
                {"FID": 100_005, "FName": "改名"},
                {"FCUSTID": created_id, "FName": "改名成功"}
            ], "NeedUpDateFields": ["FName"], "IsAutoSubmitAndAudit": "true"}),
        )
        .await;
        let status = &update.body["Result"]["ResponseStatus"];
        assert_eq!(
            status["IsSuccess"], false,
            "one failed package makes the answer unsuccessful"
        );
        assert_eq!(status["ErrorCode"], 500);
        assert_eq!(status["MsgCode"], 11);
        let errors = status["Errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0]["DIndex"], 0);
        assert_eq!(errors[0]["FieldName"], "");
        assert!(errors[0]["Message"].as_str().unwrap().ends_with("单据已经审核！"));
        assert_eq!(errors[1]["DIndex"], 2);
        let succeeded: Vec<i64> = status["SuccessEntitys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entity| entity["DIndex"].as_i64().unwrap())
            .collect();
        assert_eq!(succeeded, [1, 3]);
        assert_eq!(
            sim.row("BD_Customer", "LOCK01").unwrap(),
            kept,
            "a refused row is unchanged"
        );
        assert_ne!(sim.row("BD_Customer", "CUST0005").unwrap()["FName"], "改名");
        assert_eq!(sim.row("BD_Customer", "LOCK03").unwrap()["FName"], "改名成功");
        assert_eq!(
            sim.status("BD_Customer", "LOCK03").as_deref(),
            Some("C"),
            "auto-audit re-audits"
        );

        // The connector reads the same answer per row.
        let rows = envelope::row_outcomes("BatchSave", &update.body, 4).unwrap();
        assert!(matches!(&rows[0], RowOutcome::Failed { message, .. } if message.contains("单据已经审核")));
        assert!(matches!(&rows[1], RowOutcome::Written { .. }));

        // Submitted rows are locked too; UnAudit (C → D) unlocks, and D stays D.
        assert!(sim.set_status("BD_Customer", "LOCK02", "B"));
        let submitted = batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [{"FCUSTID": ids[1], "FName": "y"}]}),
        )
        .await;
        let message = submitted.body["Result"]["ResponseStatus"]["Errors"][0]["Message"].clone();
        assert!(message.as_str().unwrap().ends_with("单据已经提交！"), "{message}");
        let unaudit = operate(&base, "UnAudit", "BD_Customer", json!({"Numbers": ["LOCK01"]})).await;
        assert_eq!(unaudit["Result"]["ResponseStatus"]["IsSuccess"], true, "{unaudit}");
        let again = batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [{"FCUSTID": ids[0], "FName": "反审核后改名"}]}),
        )
        .await;
        assert_eq!(
            again.body["Result"]["ResponseStatus"]["IsSuccess"], true,
            "{}",
            again.body
        );
        assert_eq!(sim.status("BD_Customer", "LOCK01").as_deref(), Some("D"));
        assert_eq!(sim.row("BD_Customer", "LOCK01").unwrap()["FName"], "反审核后改名");
    }

    #[tokio::test]
    async fn the_lock_can_be_switched_off_for_code_that_does_not_unaudit_yet() {
        let cfg = K3CloudConfig {
            locks_audited: false,
            ..K3CloudConfig::default()
        };
        let (sim, _handle, base) = start(cfg).await;
        let update = batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [{"FCUSTID": 100_002, "FName": "改名"}], "NeedUpDateFields": ["FName"]}),
        )
        .await;
        assert_eq!(update.body["Result"]["ResponseStatus"]["IsSuccess"], true);
        assert_eq!(sim.row("BD_Customer", "CUST0002").unwrap()["FName"], "改名");
        assert_eq!(sim.status("BD_Customer", "CUST0002").as_deref(), Some("C"));
    }

    #[tokio::test]
    async fn status_operations_answer_per_id_in_request_order() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let created = batch_save(
            &base,
            "BD_MATERIAL",
            json!({"Model": [
                {"FNumber": "M1", "FName": "甲", "FCreateOrgId": {"FNumber": "100"}},
                {"FNumber": "M2", "FName": "乙", "FCreateOrgId": {"FNumber": "100"}}
            ]}),
        )
        .await;
        let ids: Vec<String> = created.body["Result"]["ResponseStatus"]["SuccessEntitys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entity| entity["Id"].to_string())
            .collect();
        // M1 is submitted first, so submitting both fails only for M1 (DIndex 1 in this list).
        operate(&base, "Submit", "BD_MATERIAL", json!({"Numbers": ["M1"]})).await;
        let both = operate(
            &base,
            "Submit",
            "BD_MATERIAL",
            json!({"CreateOrgId": 0, "Numbers": [], "Ids": format!("{}, {}", ids[1], ids[0]), "NetworkCtrl": ""}),
        )
        .await;
        let status = &both["Result"]["ResponseStatus"];
        assert_eq!(status["IsSuccess"], false);
        assert_eq!(status["MsgCode"], 11);
        assert_eq!(
            status["SuccessEntitys"],
            json!([{"Id": ids[1].parse::<i64>().unwrap(), "Number": "M2", "DIndex": 0}])
        );
        assert_eq!(status["Errors"][0]["DIndex"], 1);
        assert!(status["Errors"][0]["Message"].as_str().unwrap().contains("已经提交"));
        assert_eq!(both["Result"].as_object().unwrap().len(), 1, "only ResponseStatus");

        let audit = operate(&base, "Audit", "BD_MATERIAL", json!({"Numbers": ["M1", "NOPE", "M2"]})).await;
        let status = &audit["Result"]["ResponseStatus"];
        let ok: Vec<i64> = status["SuccessEntitys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["DIndex"].as_i64().unwrap())
            .collect();
        assert_eq!(ok, [0, 2]);
        assert_eq!(status["Errors"][0]["DIndex"], 1);
        assert_eq!(sim.status("BD_MATERIAL", "M1").as_deref(), Some("C"));
        assert!(sim.row("BD_MATERIAL", "M1").unwrap()["FApproveDate"].is_string());

        let view = operate(
            &base,
            "View",
            "BD_MATERIAL",
            json!({"CreateOrgId": 0, "Number": "M2", "Id": ""}),
        )
        .await;
        assert_eq!(view["Result"]["Result"]["FDocumentStatus"], "C");
        assert_eq!(view["Result"]["Result"]["Number"], "M2");
        assert_eq!(view["Result"]["ResponseStatus"]["IsSuccess"], true);

        for (op, from) in [("UnAudit", "A"), ("Audit", "A"), ("Delete", "B"), ("Delete", "C")] {
            assert!(sim.set_status("BD_MATERIAL", "M2", from));
            let refused = operate(&base, op, "BD_MATERIAL", json!({"Numbers": ["M2"]})).await;
            let message = refused["Result"]["ResponseStatus"]["Errors"][0]["Message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                message.contains(&format!("单据状态为{from}")),
                "{op} from {from}: {message}"
            );
        }
        for bad in [
            json!({"Ids": [ids[0].clone()]}),
            json!({"Numbers": "M1"}),
            json!({"Numbers": []}),
        ] {
            let refused = operate(&base, "Submit", "BD_MATERIAL", bad.clone()).await;
            assert_eq!(refused["Result"]["ResponseStatus"]["MsgCode"], 8, "{bad}");
        }
        // UnAudit → D, then Delete is allowed.
        assert!(sim.set_status("BD_MATERIAL", "M2", "C"));
        operate(&base, "UnAudit", "BD_MATERIAL", json!({"Ids": ids[1].clone()})).await;
        assert_eq!(sim.status("BD_MATERIAL", "M2").as_deref(), Some("D"));
        let bad_key = batch_save(
            &base,
            "BD_MATERIAL",
            json!({"Model": [{"FMATERIALID": {"FNumber": "M1"}, "FName": "x"}]}),
        )
        .await;
        assert_eq!(
            bad_key.body["Result"]["ResponseStatus"]["Errors"][0]["FieldName"],
            "FMATERIALID"
        );
        let deleted = operate(&base, "Delete", "BD_MATERIAL", json!({"Ids": ids[1].clone()})).await;
        assert_eq!(deleted["Result"]["ResponseStatus"]["IsSuccess"], true);
        assert!(sim.row("BD_MATERIAL", "M2").is_none());
    }

    #[tokio::test]
    async fn drafts_are_z_and_become_a_when_saved() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let body = json!({"formid": "BD_Customer", "data": {"Model": {"FNumber": "DRAFT1"}}});
        let draft = call(&settings(), &base, "Draft", body, None, Utc::now()).await;
        assert_eq!(
            draft.body["Result"]["ResponseStatus"]["IsSuccess"], true,
            "{}",
            draft.body
        );
        assert_eq!(sim.status("BD_Customer", "DRAFT1").as_deref(), Some("Z"));
        let submit = operate(&base, "Submit", "BD_Customer", json!({"Numbers": ["DRAFT1"]})).await;
        assert_eq!(submit["Result"]["ResponseStatus"]["IsSuccess"], false);
        let id = draft.body["Result"]["Id"].as_i64().unwrap();
        let mut model = customer("DRAFT1", "补全后的客户");
        model["FCUSTID"] = json!(id);
        let saved = call(
            &settings(),
            &base,
            "Save",
            json!({"formid": "BD_Customer", "data": {"Model": model}}),
            None,
            Utc::now(),
        )
        .await;
        assert_eq!(
            saved.body["Result"]["ResponseStatus"]["IsSuccess"], true,
            "{}",
            saved.body
        );
        assert_eq!(sim.status("BD_Customer", "DRAFT1").as_deref(), Some("A"));
    }

    #[tokio::test]
    async fn queries_select_and_filter_on_status_and_in_lists() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        assert!(sim.set_status("BD_Customer", "CUST0004", "A"));
        let numbers = query_numbers(
            &settings(),
            &base,
            "FNumber IN ('CUST0002','CUST0004', 'CUST0009','NOPE')",
            50,
        )
        .await;
        assert_eq!(numbers, ["CUST0002", "CUST0004", "CUST0009"]);
        let audited = query_numbers(
            &settings(),
            &base,
            "FNumber IN ('CUST0002','CUST0004') AND FDocumentStatus = 'C'",
            50,
        )
        .await;
        assert_eq!(audited, ["CUST0002"]);
        let grouped = query_numbers(
            &settings(),
            &base,
            "(FNumber IN ('CUST0002','CUST0004') OR FNumber = 'CUST0010') AND FDocumentStatus NOT IN ('A','B')",
            50,
        )
        .await;
        assert_eq!(grouped, ["CUST0002", "CUST0010"]);
        let body = json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber,FDocumentStatus", "FilterString": "FNumber IN ('CUST0004')"}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        assert_eq!(answer.body, json!([["CUST0004", "A"]]));
        for bad in [
            "FNumber IN ()",
            "FNumber IN ('a'",
            "FNumber IN 'a'",
            "FNumber = 'a' FName = 'b'",
        ] {
            let body = json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber", "FilterString": bad}});
            let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
            assert!(
                matches!(envelope::classify(answer.status, &answer.body), Verdict::Failed { code, .. } if code == "8"),
                "{bad}: {}",
                answer.body
            );
        }
    }

    // --- Bills with entry rows ---------------------------------------------------

    fn sale_order(customer: &str, lines: &[(&str, u64)]) -> Value {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(material, qty)| json!({"FMaterialId": {"FNumber": material}, "FQty": qty, "FTaxPrice": 2.5}))
            .collect();
        json!({"FID": 0, "FBillTypeID": {"FNUMBER": "XSDD01_SYS"}, "FSaleOrgId": {"FNumber": "100"},
               "FCustId": {"FNumber": customer}, "FSaleOrderEntry": lines})
    }

    fn entry_ids(sim: &K3CloudSim, number: &str) -> Vec<i64> {
        sim.entries("SAL_SaleOrder", number, "FSaleOrderEntry")
            .unwrap()
            .iter()
            .map(|line| line["FEntryID"].as_i64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn sale_order_entries_get_ids_and_are_matched_by_them() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let created = batch_save(
            &base,
            "SAL_SaleOrder",
            json!({"Model": [
                sale_order("CUST0001", &[("WL00001", 5), ("WL00002", 7)]),
                sale_order("NOPE", &[("WL00001", 1)]),
                sale_order("CUST0002", &[("WL00003", 0)]),
                sale_order("CUST0003", &[])
            ], "NeedReturnFields": ["FBillNo", "FSaleOrderEntry.FEntryID", "FSaleOrgId.FNumber"]}),
        )
        .await;
        let status = &created.body["Result"]["ResponseStatus"];
        assert_eq!(
            status["SuccessEntitys"].as_array().unwrap().len(),
            1,
            "{}",
            created.body
        );
        let failed: Vec<(i64, String)> = status["Errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["DIndex"].as_i64().unwrap(),
                    e["FieldName"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            failed,
            [
                (1, "FCustId".to_owned()),
                (2, "FQty".to_owned()),
                (3, "FSaleOrderEntry".to_owned())
            ]
        );
        let number = status["SuccessEntitys"][0]["Number"].as_str().unwrap().to_owned();
        assert!(number.starts_with("XSDD"), "{number}");
        let ids = entry_ids(&sim, &number);
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(
            created.body["Result"]["NeedReturnData"],
            json!([{"FBillNo": number, "FSaleOrderEntry": [{"FEntryID": ids[0]}, {"FEntryID": ids[1]}], "FSaleOrgId": {"FNumber": "100"}}])
        );
        assert_eq!(sim.status("SAL_SaleOrder", &number).as_deref(), Some("A"));

        // One query row per entry row.
        let body = json!({"data": {"FormId": "SAL_SaleOrder", "FieldKeys": "FID,FBillNo,FSaleOrderEntry_FEntryId,FSaleOrderEntry_FSeq,FMaterialId.FNumber,FQty",
                                   "FilterString": format!("FBillNo = '{number}'"), "OrderString": "FSaleOrderEntry_FSeq DESC"}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        let order_id = status["SuccessEntitys"][0]["Id"].clone();
        assert_eq!(
            answer.body,
            json!([
                [order_id, number, ids[1], 2, "WL00002", 7],
                [order_id, number, ids[0], 1, "WL00001", 5]
            ])
        );

        // Update: line 0 by its id, line 1 left out, one new line; IsDeleteEntry false keeps line 1.
        let id = order_id.as_i64().unwrap();
        let update = json!({"Model": [{"FID": id, "FSaleOrderEntry": [
            {"FEntryID": ids[0], "FQty": 50},
            {"FMaterialId": {"FNumber": "WL00004"}, "FQty": 1}
        ]}], "IsDeleteEntry": "false", "NeedReturnFields": ["FSaleOrderEntry.FEntryID"]});
        let answer = batch_save(&base, "SAL_SaleOrder", update).await;
        assert_eq!(
            answer.body["Result"]["ResponseStatus"]["IsSuccess"], true,
            "{}",
            answer.body
        );
        let after = entry_ids(&sim, &number);
        assert_eq!(after.len(), 3);
        assert_eq!(&after[..2], &ids[..], "kept rows stay in place, new ones follow");
        assert!(after[2] > ids[1]);
        let lines = sim.entries("SAL_SaleOrder", &number, "FSaleOrderEntry").unwrap();
        assert_eq!(lines[0]["FQty"], 50);
        assert_eq!(
            lines[0]["FMaterialId"]["FNumber"], "WL00001",
            "unsent entry fields are kept"
        );
        assert_eq!(lines[1]["FQty"], 7);
        assert_eq!(
            answer.body["Result"]["NeedReturnData"][0]["FSaleOrderEntry"],
            json!([{"FEntryID": after[0]}, {"FEntryID": after[1]}, {"FEntryID": after[2]}])
        );

        // The default IsDeleteEntry (true) deletes rows the payload does not repeat.
        let update = json!({"Model": [{"FID": id, "FSaleOrderEntry": [{"FEntryID": after[2], "FQty": 3}]}]});
        batch_save(&base, "SAL_SaleOrder", update).await;
        assert_eq!(entry_ids(&sim, &number), [after[2]]);

        // An entry id the bill does not have is refused, and nothing changes.
        let update = json!({"Model": [{"FID": id, "FSaleOrderEntry": [{"FEntryID": ids[0], "FQty": 9}]}]});
        let refused = batch_save(&base, "SAL_SaleOrder", update).await;
        let error = &refused.body["Result"]["ResponseStatus"]["Errors"][0];
        assert_eq!(error["FieldName"], "FSaleOrderEntry.FEntryID");
        assert_eq!(entry_ids(&sim, &number), [after[2]]);

        // The change helper edits one line and moves the bill's FModifyDate.
        let at = Utc.with_ymd_and_hms(2024, 6, 1, 4, 0, 0).unwrap();
        assert!(sim.change_entry(
            "SAL_SaleOrder",
            &number,
            after[2],
            &json!({"FQty": 11, "FEntryID": 1}),
            at
        ));
        assert!(!sim.change_entry("SAL_SaleOrder", &number, ids[0], &json!({"FQty": 1}), at));
        let row = sim.row("SAL_SaleOrder", &number).unwrap();
        assert_eq!(row["FSaleOrderEntry"][0]["FQty"], 11);
        assert_eq!(row["FSaleOrderEntry"][0]["FEntryID"], after[2]);
        assert_eq!(row["FModifyDate"], "2024-06-01T12:00:00");
    }

    #[tokio::test]
    async fn entry_queries_cover_seeded_bills_and_unknown_fields_fail() {
        let (sim, _handle, base) = start(K3CloudConfig::default()).await;
        let body = json!({"data": {"FormId": "SAL_SaleOrder", "FieldKeys": "FBillNo,FSaleOrderEntry_FEntryId",
                                   "FilterString": "FDocumentStatus = 'C'", "Limit": 0}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        let rows = answer.body.as_array().unwrap();
        let expected: usize = (1..=20)
            .map(|i| {
                sim.entries("SAL_SaleOrder", &format!("XSDD{i:06}"), "FSaleOrderEntry")
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(rows.len(), expected);
        let entry_ids: HashSet<i64> = rows.iter().map(|row| row[1].as_i64().unwrap()).collect();
        assert_eq!(entry_ids.len(), expected, "entry ids are unique");

        let body = json!({"data": {"FormId": "SAL_SaleOrder", "FieldKeys": "FBillNo", "FilterString": "FMaterialId.FNumber = 'WL00001'"}});
        let answer = call(&settings(), &base, "BillQuery", body, None, Utc::now()).await;
        let found: Vec<&str> = answer
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["FBillNo"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (1..=20)
            .map(|i| format!("XSDD{i:06}"))
            .filter(|number| {
                let lines = sim.entries("SAL_SaleOrder", number, "FSaleOrderEntry").unwrap();
                lines.iter().any(|line| line["FMaterialId"]["FNumber"] == "WL00001")
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(found, expected.iter().map(String::as_str).collect::<Vec<_>>());

        for keys in ["FBillNo,FEntity_FEntryId", "FBillNo,FNope"] {
            let body = json!({"data": {"FormId": "SAL_SaleOrder", "FieldKeys": keys}});
            let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
            assert!(
                matches!(envelope::classify(answer.status, &answer.body), Verdict::Failed { code, .. } if code == "9"),
                "{keys}: {}",
                answer.body
            );
        }
        // A customer with contact rows: the generic entry key works the same way.
        let mut model = customer("CONTACTS", "有联系人的客户");
        model["FT_BD_CUSTCONTACT"] = json!([{"FContact": "甲"}, {"FContact": "乙"}]);
        batch_save(
            &base,
            "BD_Customer",
            json!({"Model": [model], "NeedReturnFields": ["FT_BD_CUSTCONTACT.FEntryID"]}),
        )
        .await;
        let body = json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber,FT_BD_CUSTCONTACT_FEntryId,FContact",
                                   "FilterString": "FNumber IN ('CONTACTS','CUST0001')", "OrderString": "FNumber"}});
        let answer = call(&settings(), &base, "ExecuteBillQuery", body, None, Utc::now()).await;
        let rows = answer.body.as_array().unwrap();
        assert_eq!(rows.len(), 3, "{}", answer.body);
        assert_eq!(rows[0][2], "甲");
        assert_eq!(
            rows[2],
            json!(["CUST0001", null, null]),
            "a row without entries gives nulls"
        );
    }

    #[tokio::test]
    async fn the_server_zone_is_a_setting() {
        let cfg = K3CloudConfig {
            server_zone: chrono_tz::UTC,
            ..K3CloudConfig::default()
        };
        let (sim, _handle, _base) = start(cfg).await;
        assert!(sim.touch(1, Utc.with_ymd_and_hms(2024, 5, 1, 23, 30, 0).unwrap()));
        assert_eq!(
            sim.row("BD_Customer", "CUST0001").unwrap()["FModifyDate"],
            "2024-05-01T23:30:00"
        );
    }
}
