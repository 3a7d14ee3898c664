//! The "erp-standard" simulator: a heterogeneous ERP implementing the standard interface of
//! ShareCRM's ERP data-sync platform (seed 000), for tests, `ferry demo` and
//! `ferry simulate erp-standard`.
//!
//! **Data.** Sales orders (`SaleOrderObj` by default) with detail rows (`SaleOrderEntryObj`):
//! Chinese customer names, amounts as strings, times as ms since the epoch. Generated order
//! `i` (1-based) has id `1{i:09}`, bill number `XSDD{i:08}` and was last modified at
//! `base_time_ms + i * spacing_ms` until touched; generated orders cost no memory, only touched
//! or rewritten ones are stored. Records written through the API get ids `2{n:09}`.
//!
//! **Queries** (GET). `queryMasterBatch?objAPIName&startTime&endTime&includeDetail&offset&limit`
//! returns the records with `startTime <= lastModifyTime < endTime`, ordered by modification
//! time, as `data.totalNum` (a string, as in the seed) and `data.dataList` of
//! `{objAPIName, masterFieldVal, detailFieldVals}`; `includeDetail=false` leaves the details
//! out. A page costs O(offset + limit + stored records in the window). `queryMasterById?
//! objAPIName&dataId&includeDetail` returns one record.
//!
//! **Writes** (POST JSON `{objAPIName, masterFieldVal, detailFieldVals}`). Each call is
//! validated on its own: orders need `billNo` (unique) and `customerName`, a numeric
//! `totalAmount` when given, and detail rows with `productCode` and a positive `qty`. Every
//! detail row has an `id` unique in its record (`<record id>-<n>`, never reused). `create` and
//! `update` answer `data.masterDataId` and `data.detailDataIds` as `{detail: [ids of all its
//! rows, in order]}` ([INF]: seed 000 shows `detailDataIds` as an object without saying what it
//! holds). `update` finds the record by `masterFieldVal.id`, merges the master fields, merges
//! each detail list sent row by row — a row carrying the `id` of one of the record's rows
//! changes that row (an id the record does not have is refused with `404`), a row without one
//! is appended, rows not sent stay ([INF], like K3Cloud with `IsDeleteEntry` false) — and
//! moves its modification time to now; generated orders can be updated too.
//!
//! **Auth and envelopes.** Every call needs the `token` header; a wrong one answers code `401`.
//! Answers are HTTP 200 with `{code, message, data}` (success `"0"`) or, with
//! [`ReplyStyle::ErrCode`], the platform's `{errCode, errMsg, data}` (success `"s106240000"`).
//! The interface documents no error codes, so these are the simulator's: `400` bad arguments,
//! `401` token, `404` unknown object or record, `409` duplicate bill number. The fault layer
//! throttles with HTTP 429 `{code: "429"}` and fails with HTTP 500 `{code: "500"}`.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::kit::{counters, json_reply, mix, pick, simulator, start_sim};
use super::{
    instrument, lock, parse_query, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle, Simulator,
};

/// The platform's success literal, used by [`ReplyStyle::ErrCode`].
pub const PLATFORM_SUCCESS: &str = "s106240000";

/// Which envelope the simulated ERP answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplyStyle {
    /// `{"code", "message", "data"}` as in seed 000.
    #[default]
    Code,
    /// `{"errCode", "errMsg", "data"}`, success `s106240000`.
    ErrCode,
}

/// How the simulated ERP behaves. `ErpStandardConfig::default()` is the demo ERP.
#[derive(Clone, Debug)]
pub struct ErpStandardConfig {
    /// Number of generated sales orders (default 500).
    pub records: u64,
    /// Faults at start.
    pub faults: Faults,
    /// The `token` header every call must carry.
    pub token: String,
    /// The master object (default `SaleOrderObj`).
    pub order_object: String,
    /// The detail object of orders (default `SaleOrderEntryObj`).
    pub entry_object: String,
    /// Further objects the ERP accepts writes for, with no field rules beyond a non-empty master.
    pub extra_objects: Vec<String>,
    /// Order `i` was last modified at `base_time_ms + i * spacing_ms` (default
    /// 2024-01-01 00:00 Asia/Shanghai, one minute apart; spacing at least 1 ms).
    pub base_time_ms: i64,
    pub spacing_ms: i64,
    /// Largest `limit` accepted (default 500).
    pub max_limit: u64,
    /// The envelope of answers (default `code`/`message`/`data`).
    pub reply_style: ReplyStyle,
    /// The success `code` of [`ReplyStyle::Code`] answers (default `"0"`).
    pub success_code: String,
}

impl Default for ErpStandardConfig {
    fn default() -> Self {
        ErpStandardConfig {
            records: 500,
            faults: Faults::default(),
            token: "erp-std-token-0123456789abcdef".into(),
            order_object: "SaleOrderObj".into(),
            entry_object: "SaleOrderEntryObj".into(),
            extra_objects: Vec::new(),
            base_time_ms: 1_703_980_800_000,
            spacing_ms: 60_000,
            max_limit: 500,
            reply_style: ReplyStyle::Code,
            success_code: "0".into(),
        }
    }
}

/// A record's place in the time order. Generated orders sort before written records at the
/// same millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Order(u64),
    Doc(u64),
}

type Key = (i64, Slot);

#[derive(Clone, Copy)]
struct Touched {
    modified_ms: i64,
    revision: u32,
}

/// A record written through the API.
#[derive(Clone)]
struct Doc {
    object: String,
    id: String,
    master: Map<String, Value>,
    details: Map<String, Value>,
    modified_ms: i64,
}

#[derive(Default)]
struct Book {
    /// Generated orders served with a new time and revision.
    touched: HashMap<u64, Touched>,
    /// Generated orders that are no longer served lazily (touched or rewritten).
    moved: BTreeSet<u64>,
    /// Stored records per object, in time order.
    extras: HashMap<String, BTreeSet<Key>>,
    docs: HashMap<u64, Doc>,
    doc_by_id: HashMap<String, u64>,
    /// Bill numbers of stored orders → record id.
    bills: HashMap<String, String>,
    /// Sequence numbers of written records, in write order.
    write_order: Vec<u64>,
    next_doc: u64,
}

struct ErpState {
    cfg: ErpStandardConfig,
    control: Arc<SimControl>,
    book: Mutex<Book>,
    create_calls: AtomicU64,
    update_calls: AtomicU64,
    query_calls: AtomicU64,
}

/// The standard-interface ERP simulator; clones share state.
#[derive(Clone)]
pub struct ErpStandardSim {
    state: Arc<ErpState>,
}

impl std::fmt::Debug for ErpStandardSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpStandardSim")
            .field("records", &self.state.cfg.records)
            .field("written", &lock(&self.state.book).write_order.len())
            .finish_non_exhaustive()
    }
}

struct ErpReplies;

impl FaultReplies for ErpReplies {
    fn throttled(&self) -> Response {
        json_reply(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"code": "429", "message": "请求过于频繁，请稍后再试", "data": null}),
        )
    }

    fn server_error(&self) -> Response {
        json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "500", "message": "系统异常，请稍后重试", "data": null}),
        )
    }
}

simulator!(ErpStandardSim);

impl ErpStandardSim {
    /// Builds the simulator's state; nothing listens until [`ErpStandardSim::start`].
    pub fn new(cfg: ErpStandardConfig) -> ErpStandardSim {
        let control = SimControl::new(cfg.faults.clone(), RequestLog::new(LogMode::Full), ErpReplies);
        ErpStandardSim {
            state: Arc::new(ErpState {
                cfg,
                control: Arc::new(control),
                book: Mutex::new(Book::default()),
                create_calls: AtomicU64::new(0),
                update_calls: AtomicU64::new(0),
                query_calls: AtomicU64::new(0),
            }),
        }
    }

    /// The four standard routes, wrapped with the request log and the fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/create", post(create))
            .route("/update", post(update))
            .route("/queryMasterBatch", get(query_batch))
            .route("/queryMasterById", get(query_by_id))
            .with_state(Arc::clone(&self.state));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds the simulator and serves it on `listener`.
    pub async fn start(
        cfg: ErpStandardConfig,
        listener: tokio::net::TcpListener,
    ) -> io::Result<(ErpStandardSim, SimHandle)> {
        start_sim(ErpStandardSim::new(cfg), ErpStandardSim::router, listener).await
    }

    /// Changes generated order `index` (first line quantity, so the amounts, and the status)
    /// and moves its `lastModifyTime` to `now`. False when no such generated order exists or
    /// it was rewritten through `update` (touch written records by updating them).
    pub fn touch(&self, index: u64, now: DateTime<Utc>) -> bool {
        let state = &self.state;
        if index == 0 || index > state.cfg.records {
            return false;
        }
        let mut book = lock(&state.book);
        if book.moved.contains(&index) && !book.touched.contains_key(&index) {
            return false;
        }
        let old_time = book
            .touched
            .get(&index)
            .map_or_else(|| state.lazy_time(index), |t| t.modified_ms);
        let revision = book.touched.get(&index).map_or(0, |t| t.revision) + 1;
        let modified_ms = now.timestamp_millis();
        let times = book.extras.entry(state.cfg.order_object.clone()).or_default();
        times.remove(&(old_time, Slot::Order(index)));
        times.insert((modified_ms, Slot::Order(index)));
        book.touched.insert(index, Touched { modified_ms, revision });
        book.moved.insert(index);
        true
    }

    /// Generated order `index` as the queries serve it now (details included).
    pub fn order(&self, index: u64) -> Option<Value> {
        if index == 0 || index > self.state.cfg.records {
            return None;
        }
        let book = lock(&self.state.book);
        let slot = match book.doc_by_id.get(&generated_id(index)) {
            Some(&seq) => Slot::Doc(seq),
            None => Slot::Order(index),
        };
        Some(self.state.render(&book, slot, true))
    }

    /// Every record written through `create` / `update`, in order of first write, as
    /// `{objAPIName, masterFieldVal, detailFieldVals}`.
    pub fn written(&self) -> Vec<Value> {
        let book = lock(&self.state.book);
        book.write_order
            .iter()
            .map(|&seq| self.state.render(&book, Slot::Doc(seq), true))
            .collect()
    }

    /// The written order whose `billNo` is `bill_no`.
    pub fn written_by_key(&self, bill_no: &str) -> Option<Value> {
        let book = lock(&self.state.book);
        let id = book.bills.get(bill_no)?;
        let seq = *book.doc_by_id.get(id)?;
        Some(self.state.render(&book, Slot::Doc(seq), true))
    }

    /// The written record with id `id` (a `masterDataId`).
    pub fn written_by_id(&self, id: &str) -> Option<Value> {
        let book = lock(&self.state.book);
        let seq = *book.doc_by_id.get(id)?;
        Some(self.state.render(&book, Slot::Doc(seq), true))
    }

    /// `create` plus `update` requests that reached a handler.
    pub fn write_calls(&self) -> u64 {
        self.create_calls() + self.update_calls()
    }

    counters! {
        /// `create` requests that reached the handler.
        create_calls,
        /// `update` requests that reached the handler.
        update_calls,
        /// Query requests that reached a handler.
        query_calls,
    }
}

// ---------------------------------------------------------------------------
// Generated orders
// ---------------------------------------------------------------------------

fn generated_id(index: u64) -> String {
    format!("1{index:09}")
}

fn generated_bill(index: u64) -> String {
    format!("XSDD{index:08}")
}

const PROVINCES: &[&str] = &[
    "江苏", "浙江", "广东", "山东", "福建", "湖北", "四川", "河南", "安徽", "湖南",
];
const NAME_HEAD: &[&str] = &["恒", "永", "嘉", "顺", "博", "晨", "海", "万", "兴", "康", "融", "卓"];
const NAME_TAIL: &[&str] = &["泰", "发", "源", "诚", "远", "安", "利", "祥", "达", "丰", "鼎", "汇"];
const BUSINESS: &[&str] = &["五金", "电子", "医药", "食品", "化工", "建材", "日用品", "办公用品"];
const SALES: &[&str] = &["刘洋", "陈静", "王磊", "赵敏", "孙强", "周婷", "吴刚", "郑丽"];
const STATUSES: &[&str] = &["已审核", "未审核", "已关闭"];
const GOODS: &[(&str, &str)] = &[
    ("办公椅", "把"),
    ("A4 复印纸", "箱"),
    ("激光打印机", "台"),
    ("不锈钢水杯", "个"),
    ("LED 台灯", "盏"),
    ("文件柜", "组"),
    ("无线键鼠套装", "套"),
    ("工业胶带", "卷"),
];

fn yuan(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl ErpState {
    fn lazy_time(&self, index: u64) -> i64 {
        let step = i64::try_from(index).unwrap_or(i64::MAX);
        self.cfg
            .base_time_ms
            .saturating_add(step.saturating_mul(self.spacing()))
    }

    fn spacing(&self) -> i64 {
        self.cfg.spacing_ms.max(1)
    }

    /// The first generated index whose time is not before `time`, in `1..=records + 1`.
    fn first_index_at_or_after(&self, time: i64) -> u64 {
        let offset = i128::from(time) - i128::from(self.cfg.base_time_ms);
        let spacing = i128::from(self.spacing());
        let first = (offset + spacing - 1).div_euclid(spacing);
        let end = i128::from(self.cfg.records) + 1;
        u64::try_from(first.clamp(1, end)).unwrap_or(1)
    }

    fn generated_order(&self, index: u64, touched: Option<Touched>, with_details: bool) -> Value {
        let hash = mix(index);
        let (modified, revision) = touched.map_or((self.lazy_time(index), 0), |t| (t.modified_ms, t.revision));
        let created = self.lazy_time(index) - i64::try_from(hash % 240 + 1).unwrap_or(1) * 60_000;
        let customer = hash % 300;
        let customer_hash = mix(customer ^ 0x6375_7374);
        let customer_name = format!(
            "{}{}{}{}有限公司",
            pick(PROVINCES, customer_hash),
            pick(NAME_HEAD, customer_hash >> 8),
            pick(NAME_TAIL, customer_hash >> 16),
            pick(BUSINESS, customer_hash >> 24)
        );
        let id = generated_id(index);
        let lines = 1 + hash % 3;
        let mut total = 0;
        let mut rows = Vec::new();
        for line in 0..lines {
            let line_hash = mix(index.wrapping_mul(8).wrapping_add(line));
            let (name, unit) = GOODS[(line_hash % GOODS.len() as u64) as usize];
            let price = 1_000 + line_hash % 50_000;
            let base_qty = 1 + (line_hash >> 20) % 9;
            let qty = if line == 0 {
                1 + (base_qty + u64::from(revision)) % 9
            } else {
                base_qty
            };
            total += price * qty;
            rows.push(json!({
                "id": format!("{id}-{}", line + 1),
                "lineNo": (line + 1).to_string(),
                "productCode": format!("WL{:05}", line_hash % 2000),
                "productName": name,
                "unit": unit,
                "qty": qty.to_string(),
                "price": yuan(price),
                "amount": yuan(price * qty),
            }));
        }
        let master = json!({
            "id": id,
            "billNo": generated_bill(index),
            "orderDate": created,
            "customerCode": format!("KH{customer:05}"),
            "customerName": customer_name,
            "salesman": pick(SALES, hash >> 12),
            "currency": "CNY",
            "totalAmount": yuan(total),
            "status": pick(STATUSES, (hash >> 20) + u64::from(revision)),
            "createTime": created,
            "lastModifyTime": modified,
        });
        let mut details = Map::new();
        if with_details {
            details.insert(self.cfg.entry_object.clone(), Value::Array(rows));
        }
        json!({"objAPIName": self.cfg.order_object, "masterFieldVal": master, "detailFieldVals": details})
    }

    fn render(&self, book: &Book, slot: Slot, with_details: bool) -> Value {
        match slot {
            Slot::Order(index) => self.generated_order(index, book.touched.get(&index).copied(), with_details),
            Slot::Doc(seq) => match book.docs.get(&seq) {
                Some(doc) => {
                    let details = if with_details { doc.details.clone() } else { Map::new() };
                    json!({"objAPIName": doc.object, "masterFieldVal": doc.master, "detailFieldVals": details})
                }
                None => Value::Null,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Envelopes and auth
// ---------------------------------------------------------------------------

impl ErpState {
    fn reply(&self, data: Value) -> Response {
        match self.cfg.reply_style {
            ReplyStyle::Code => Json(json!({"code": self.cfg.success_code, "message": "成功", "data": data})),
            ReplyStyle::ErrCode => Json(json!({"errCode": PLATFORM_SUCCESS, "errMsg": "success", "data": data})),
        }
        .into_response()
    }

    fn error(&self, code: &str, message: &str) -> Response {
        match self.cfg.reply_style {
            ReplyStyle::Code => Json(json!({"code": code, "message": message, "data": null})),
            ReplyStyle::ErrCode => {
                Json(json!({"errCode": code, "errMsg": message, "traceMsg": format!("erp-sim-{code}")}))
            }
        }
        .into_response()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers.get("token").and_then(|value| value.to_str().ok());
        given.is_some_and(|token| !token.is_empty() && token == self.cfg.token)
    }

    fn refuse_token(&self) -> Response {
        self.error("401", "token 校验失败：请检查请求头 token")
    }

    fn knows(&self, object: &str) -> bool {
        object == self.cfg.order_object || self.cfg.extra_objects.iter().any(|known| known == object)
    }
}

// ---------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------

struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("参数错误：缺少 {key}"))
    }

    fn number(&self, key: &str, default: Option<i64>) -> Result<i64, String> {
        match self.get(key) {
            None | Some("") => default.ok_or_else(|| format!("参数错误：缺少 {key}")),
            Some(text) => text
                .parse()
                .map_err(|_| format!("参数错误：{key} 必须是整数，收到 {text}")),
        }
    }

    fn include_detail(&self) -> Result<bool, String> {
        match self.get("includeDetail") {
            None | Some("") | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("参数错误：includeDetail 必须是 true 或 false，收到 {other}")),
        }
    }
}

impl ErpState {
    /// Keys of `object`'s records with `start <= time < end`, positions `offset..offset+limit`,
    /// and the window's total.
    fn window(&self, book: &Book, object: &str, start: i64, end: i64, offset: u64, limit: u64) -> (Vec<Key>, u64) {
        let empty = BTreeSet::new();
        let extras = book.extras.get(object).unwrap_or(&empty);
        let stored: Vec<Key> = if start < end {
            extras
                .range((start, Slot::Order(0))..(end, Slot::Order(0)))
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let (lo, hi) = if object == self.cfg.order_object && start < end {
            (self.first_index_at_or_after(start), self.first_index_at_or_after(end))
        } else {
            (1, 1)
        };
        let moved_inside = book.moved.range(lo..hi).count() as u64;
        let total = (hi - lo) - moved_inside + stored.len() as u64;

        let mut keys = Vec::new();
        let mut skipped = 0;
        let mut next_lazy = lo;
        let mut stored_iter = stored.into_iter().peekable();
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        loop {
            while next_lazy < hi && book.moved.contains(&next_lazy) {
                next_lazy += 1;
            }
            let lazy = (next_lazy < hi).then(|| (self.lazy_time(next_lazy), Slot::Order(next_lazy)));
            let key = match (lazy, stored_iter.peek().copied()) {
                (Some(lazy), Some(stored)) if stored < lazy => {
                    stored_iter.next();
                    stored
                }
                (Some(lazy), _) => {
                    next_lazy += 1;
                    lazy
                }
                (None, Some(stored)) => {
                    stored_iter.next();
                    stored
                }
                (None, None) => break,
            };
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if keys.len() >= wanted {
                break;
            }
            keys.push(key);
        }
        (keys, total)
    }
}

/// `objAPIName, startTime, endTime, includeDetail, offset, limit` of a batch query.
type BatchArgs = (String, i64, i64, bool, u64, u64);

fn batch_args(params: &Params, max_limit: u64) -> Result<BatchArgs, String> {
    let object = params.required("objAPIName")?.to_owned();
    let start = params.number("startTime", None)?;
    let end = params.number("endTime", None)?;
    let include = params.include_detail()?;
    let offset = params.number("offset", Some(0))?;
    let limit = params.number("limit", Some(100))?;
    if start > end {
        return Err(format!("参数错误：startTime {start} 晚于 endTime {end}"));
    }
    let offset = u64::try_from(offset).map_err(|_| "参数错误：offset 不能为负数".to_string())?;
    let limit = u64::try_from(limit)
        .ok()
        .filter(|limit| (1..=max_limit).contains(limit))
        .ok_or_else(|| format!("参数错误：limit 取值 1~{max_limit}"))?;
    Ok((object, start, end, include, offset, limit))
}

fn parse_params(query: Option<String>) -> Params {
    Params(parse_query(query.as_deref().unwrap_or_default()))
}

async fn query_batch(State(state): State<Arc<ErpState>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    state.query_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return state.refuse_token();
    }
    let params = parse_params(query);
    let (object, start, end, include, offset, limit) = match batch_args(&params, state.cfg.max_limit) {
        Ok(parsed) => parsed,
        Err(message) => return state.error("400", &message),
    };
    if !state.knows(&object) {
        return state.error("404", &format!("对象 {object} 不存在"));
    }
    let book = lock(&state.book);
    let (keys, total) = state.window(&book, &object, start, end, offset, limit);
    let list: Vec<Value> = keys
        .into_iter()
        .map(|(_, slot)| state.render(&book, slot, include))
        .collect();
    drop(book);
    state.reply(json!({"totalNum": total.to_string(), "dataList": list}))
}

async fn query_by_id(State(state): State<Arc<ErpState>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    state.query_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return state.refuse_token();
    }
    let params = parse_params(query);
    let by_id = || -> Result<(String, String, bool), String> {
        Ok((
            params.required("objAPIName")?.to_owned(),
            params.required("dataId")?.to_owned(),
            params.include_detail()?,
        ))
    };
    let (object, id, include) = match by_id() {
        Ok(parsed) => parsed,
        Err(message) => return state.error("400", &message),
    };
    if !state.knows(&object) {
        return state.error("404", &format!("对象 {object} 不存在"));
    }
    let book = lock(&state.book);
    match state.find(&book, &object, &id) {
        Some(slot) => {
            let record = state.render(&book, slot, include);
            drop(book);
            state.reply(record)
        }
        None => state.error("404", &format!("数据不存在：{object} {id}")),
    }
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

/// A write body after validation.
struct WriteBody {
    object: String,
    master: Map<String, Value>,
    /// `None` when the body sent no details for the record's detail object.
    details: Option<Map<String, Value>>,
}

fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn non_empty_text<'a>(master: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    master
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
}

impl ErpState {
    fn parse_write(&self, body: &Bytes, partial: bool) -> Result<WriteBody, (String, String)> {
        let bad = |message: String| ("400".to_string(), message);
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("参数错误：请求体不是合法的 JSON（{e}）")))?;
        let object = value
            .get("objAPIName")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| bad("参数错误：缺少 objAPIName".into()))?
            .to_owned();
        if !self.knows(&object) {
            return Err(("404".into(), format!("对象 {object} 不存在")));
        }
        let Some(Value::Object(master)) = value.get("masterFieldVal") else {
            return Err(bad("参数错误：masterFieldVal 必须是对象".into()));
        };
        let details = match value.get("detailFieldVals") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(details)) => details.clone(),
            Some(_) => return Err(bad("参数错误：detailFieldVals 必须是对象".into())),
        };
        if object != self.cfg.order_object {
            if master.is_empty() {
                return Err(bad("参数错误：masterFieldVal 不能为空".into()));
            }
            let sent = (!details.is_empty()).then_some(details);
            return Ok(WriteBody {
                object,
                master: master.clone(),
                details: sent,
            });
        }
        // Sales order rules. A partial (update) body may leave out billNo and customerName.
        for key in ["billNo", "customerName"] {
            let present = master.contains_key(key);
            if (!partial || present) && non_empty_text(master, key).is_none() {
                return Err(bad(format!("{key} 不能为空")));
            }
        }
        if let Some(amount) = master.get("totalAmount") {
            if numeric(amount).is_none() {
                return Err(bad(format!("totalAmount 必须是数字，收到 {amount}")));
            }
        }
        for name in details.keys() {
            if name != &self.cfg.entry_object {
                return Err(bad(format!(
                    "未知的明细对象 {name}，销售订单的明细是 {}",
                    self.cfg.entry_object
                )));
            }
        }
        let rows = match details.get(&self.cfg.entry_object) {
            None => None,
            Some(Value::Array(rows)) => Some(rows),
            Some(_) => return Err(bad(format!("{} 必须是数组", self.cfg.entry_object))),
        };
        if let Some(rows) = rows {
            for (position, row) in rows.iter().enumerate() {
                let line = position + 1;
                let Value::Object(row) = row else {
                    return Err(bad(format!("第 {line} 行明细必须是对象")));
                };
                if non_empty_text(row, "productCode").is_none() {
                    return Err(bad(format!("第 {line} 行明细缺少 productCode")));
                }
                if !row.get("qty").and_then(numeric).is_some_and(|qty| qty > 0.0) {
                    return Err(bad(format!("第 {line} 行明细 qty 必须是大于 0 的数字")));
                }
            }
        }
        let sent_rows = rows.is_some();
        Ok(WriteBody {
            object,
            master: master.clone(),
            details: sent_rows.then_some(details),
        })
    }

    /// The record of `object` called `id`, written or generated.
    fn find(&self, book: &Book, object: &str, id: &str) -> Option<Slot> {
        if let Some(&seq) = book.doc_by_id.get(id) {
            return book
                .docs
                .get(&seq)
                .filter(|doc| doc.object == object)
                .map(|_| Slot::Doc(seq));
        }
        if object != self.cfg.order_object {
            return None;
        }
        let index: u64 = id.strip_prefix('1').filter(|digits| digits.len() == 9)?.parse().ok()?;
        (index >= 1 && index <= self.cfg.records).then_some(Slot::Order(index))
    }

    /// Which record already holds bill number `bill`, if any.
    fn bill_owner(&self, book: &Book, bill: &str) -> Option<String> {
        if let Some(id) = book.bills.get(bill) {
            return Some(id.clone());
        }
        let index: u64 = bill
            .strip_prefix("XSDD")
            .filter(|digits| digits.len() == 8)?
            .parse()
            .ok()?;
        let generated = index >= 1 && index <= self.cfg.records && !book.doc_by_id.contains_key(&generated_id(index));
        generated.then(|| generated_id(index))
    }

    /// Assigns detail ids, stores the record and moves it to `now` in the time order.
    /// Returns `data` for the answer.
    fn store(&self, book: &mut Book, mut doc: Doc, previous: Option<Key>, now: i64) -> Value {
        let seq = match book.doc_by_id.get(&doc.id) {
            Some(&seq) => seq,
            None => {
                book.next_doc += 1;
                let seq = book.next_doc;
                book.doc_by_id.insert(doc.id.clone(), seq);
                book.write_order.push(seq);
                seq
            }
        };
        let mut detail_ids = Map::new();
        for (name, rows) in doc.details.iter_mut() {
            let mut ids = Vec::new();
            if let Value::Array(rows) = rows {
                let mut next = rows
                    .iter()
                    .filter_map(|row| {
                        row.get("id")?
                            .as_str()?
                            .strip_prefix(&format!("{}-", doc.id))?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0);
                for row in rows.iter_mut() {
                    let Value::Object(row) = row else { continue };
                    let id = match row.get("id").and_then(Value::as_str) {
                        Some(id) => id.to_owned(),
                        None => {
                            next += 1;
                            let id = format!("{}-{next}", doc.id);
                            row.insert("id".into(), Value::String(id.clone()));
                            id
                        }
                    };
                    ids.push(Value::String(id));
                }
            }
            detail_ids.insert(name.clone(), Value::Array(ids));
        }
        doc.modified_ms = now;
        doc.master.insert("id".into(), Value::String(doc.id.clone()));
        doc.master.insert("lastModifyTime".into(), json!(now));
        if let Some(bill) = non_empty_text(&doc.master, "billNo") {
            book.bills.insert(bill.to_owned(), doc.id.clone());
        }
        let times = book.extras.entry(doc.object.clone()).or_default();
        if let Some(previous) = previous {
            times.remove(&previous);
        }
        times.insert((now, Slot::Doc(seq)));
        let answer = json!({"masterDataId": doc.id, "detailDataIds": detail_ids});
        book.docs.insert(seq, doc);
        answer
    }
}

async fn create(State(state): State<Arc<ErpState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.create_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return state.refuse_token();
    }
    let write = match state.parse_write(&body, false) {
        Ok(write) => write,
        Err((code, message)) => return state.error(&code, &message),
    };
    let now = Utc::now().timestamp_millis();
    let mut book = lock(&state.book);
    if let Some(bill) = non_empty_text(&write.master, "billNo") {
        if let Some(owner) = state.bill_owner(&book, bill) {
            drop(book);
            return state.error("409", &format!("单据编号 {bill} 已存在（id {owner}）"));
        }
    }
    let id = format!("2{:09}", book.next_doc + 1);
    let mut master = write.master;
    master.insert("createTime".into(), json!(now));
    // A new record's detail rows get new ids, whatever a create sends.
    let mut details = write.details.unwrap_or_default();
    for row in details.values_mut().filter_map(Value::as_array_mut).flatten() {
        if let Value::Object(row) = row {
            row.remove("id");
        }
    }
    let doc = Doc {
        object: write.object,
        id,
        master,
        details,
        modified_ms: now,
    };
    let data = state.store(&mut book, doc, None, now);
    drop(book);
    state.reply(data)
}

async fn update(State(state): State<Arc<ErpState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.update_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return state.refuse_token();
    }
    let write = match state.parse_write(&body, true) {
        Ok(write) => write,
        Err((code, message)) => return state.error(&code, &message),
    };
    let Some(id) = write.master.get("id").and_then(|id| match id {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }) else {
        return state.error(
            "400",
            "参数错误：更新需要 masterFieldVal.id（create 返回的 masterDataId）",
        );
    };
    let now = Utc::now().timestamp_millis();
    let mut book = lock(&state.book);
    let Some(slot) = state.find(&book, &write.object, &id) else {
        drop(book);
        return state.error("404", &format!("数据不存在：{} {id}", write.object));
    };
    // The current record, as a document to merge into.
    let (mut current, previous) = match slot {
        Slot::Doc(seq) => match book.docs.get(&seq) {
            Some(doc) => (doc.clone(), Some((doc.modified_ms, slot))),
            None => return state.error("404", &format!("数据不存在：{id}")),
        },
        Slot::Order(index) => {
            let rendered = state.render(&book, slot, true);
            let master = rendered["masterFieldVal"].as_object().cloned().unwrap_or_default();
            let details = rendered["detailFieldVals"].as_object().cloned().unwrap_or_default();
            // Only a touched order has a key among the stored records to remove.
            let previous = book.touched.get(&index).map(|t| (t.modified_ms, slot));
            (
                Doc {
                    object: write.object.clone(),
                    id: id.clone(),
                    master,
                    details,
                    modified_ms: now,
                },
                previous,
            )
        }
    };
    if let Some(bill) = non_empty_text(&write.master, "billNo") {
        let owner = state.bill_owner(&book, bill);
        if owner.as_deref().is_some_and(|owner| owner != id) {
            drop(book);
            return state.error("409", &format!("单据编号 {bill} 已存在"));
        }
        if let Some(old) = non_empty_text(&current.master, "billNo") {
            if old != bill {
                book.bills.remove(old);
            }
        }
    }
    current.master.extend(write.master);
    if let Some(details) = write.details {
        if let Err(message) = merge_details(&mut current.details, details) {
            drop(book);
            return state.error("404", &message);
        }
    }
    if let Slot::Order(index) = slot {
        // The generated order is stored from now on.
        book.moved.insert(index);
        book.touched.remove(&index);
    }
    let data = state.store(&mut book, current, previous, now);
    drop(book);
    state.reply(data)
}

/// Merges the detail lists of an update into the record's (see the module doc): rows with
/// the id of a stored row change it, rows without an id are appended (`store` numbers
/// them), stored rows not sent stay.
fn merge_details(stored: &mut Map<String, Value>, sent: Map<String, Value>) -> Result<(), String> {
    for (name, rows) in sent {
        let Value::Array(rows) = rows else { continue };
        let list = stored.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else {
            *list = Value::Array(rows);
            continue;
        };
        let mut appended = Vec::new();
        for (position, row) in rows.into_iter().enumerate() {
            let Value::Object(row) = row else { continue };
            let id = match row.get("id") {
                Some(Value::String(id)) if !id.is_empty() => id.clone(),
                Some(Value::Number(id)) => id.to_string(),
                _ => {
                    appended.push(Value::Object(row));
                    continue;
                }
            };
            let found = list
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .find(|old| old.get("id").and_then(Value::as_str) == Some(id.as_str()));
            let Some(old) = found else {
                return Err(format!("第 {} 行明细的 id {id} 在 {name} 中不存在", position + 1));
            };
            for (key, value) in row {
                if key != "id" {
                    old.insert(key, value);
                }
            }
        }
        list.extend(appended);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::erp_standard::envelope::{
        classify, classify_with, detail_ids, records_path, total_num, write_outcome, written_id,
    };
    use crate::connector::erp_standard::request::build;
    use crate::connector::erp_standard::Settings;
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use chrono::TimeZone;
    use tokio::net::TcpListener;

    async fn start(cfg: ErpStandardConfig) -> (ErpStandardSim, SimHandle) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ErpStandardSim::start(cfg, listener).await.unwrap()
    }

    async fn send(request: WireRequest) -> (u16, Value) {
        assert!(matches!(request.method, "GET" | "POST"), "{}", request.method);
        crate::sim::kit::send_wire(&reqwest::Client::new(), request).await
    }

    fn batch(start: i64, end: i64, offset: u64, limit: u64) -> Value {
        json!({"objAPIName": "SaleOrderObj", "startTime": start, "endTime": end, "offset": offset, "limit": limit})
    }

    fn bill_nos(body: &Value) -> Vec<String> {
        body["data"]["dataList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| record["masterFieldVal"]["billNo"].as_str().unwrap().to_owned())
            .collect()
    }

    fn new_order(bill: &str) -> Value {
        json!({"objAPIName": "SaleOrderObj",
               "masterFieldVal": {"billNo": bill, "customerName": "江苏恒泰五金有限公司", "totalAmount": "300.00"},
               "detailFieldVals": {"SaleOrderEntryObj": [
                   {"productCode": "WL00001", "qty": "2", "price": "100.00"},
                   {"productCode": "WL00002", "qty": "1", "price": "100.00"}]}})
    }

    #[tokio::test]
    async fn token_is_checked() {
        let cfg = ErpStandardConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let params = batch(0, i64::MAX, 0, 10);
        let wrong = Settings::with_token("not-the-token");
        let (status, body) = send(build(&wrong, &handle.base_url(), "queryMasterBatch", &params).unwrap()).await;
        assert_eq!(status, 200);
        match classify(status, &body) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "401");
                assert!(message.contains("`token`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let (_, body) = send(build(&wrong, &handle.base_url(), "create", &new_order("X1")).unwrap()).await;
        assert_eq!(body["code"], "401");
        assert!(sim.written().is_empty());
        let right = Settings::with_token(cfg.token.clone());
        let (status, body) = send(build(&right, &handle.base_url(), "queryMasterBatch", &params).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok);
    }

    #[tokio::test]
    async fn pages_through_a_window_to_the_end() {
        let cfg = ErpStandardConfig {
            records: 250,
            ..ErpStandardConfig::default()
        };
        let (_sim, handle) = start(cfg.clone()).await;
        let settings = Settings::with_token(cfg.token.clone());
        assert_eq!(records_path("queryMasterBatch"), Some("$.data.dataList[*]"));
        // Orders 11..=210 were modified in this window (one a minute).
        let start = cfg.base_time_ms + 11 * 60_000;
        let end = cfg.base_time_ms + 211 * 60_000;
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let request = build(
                &settings,
                &handle.base_url(),
                "queryMasterBatch",
                &batch(start, end, offset, 70),
            )
            .unwrap();
            let (status, body) = send(request).await;
            assert_eq!(classify(status, &body), Verdict::Ok);
            assert_eq!(total_num(&body), Some(200));
            let page = bill_nos(&body);
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            seen.extend(page);
        }
        let expected: Vec<String> = (11..=210).map(generated_bill).collect();
        assert_eq!(seen, expected);

        // Details come with includeDetail=true only; amounts are strings, times ms.
        let (_, body) = send(
            build(
                &settings,
                &handle.base_url(),
                "queryMasterBatch",
                &batch(start, end, 0, 1),
            )
            .unwrap(),
        )
        .await;
        let record = &body["data"]["dataList"][0];
        assert!(record["masterFieldVal"]["totalAmount"].is_string());
        assert!(record["masterFieldVal"]["lastModifyTime"].is_i64());
        assert!(!record["detailFieldVals"]["SaleOrderEntryObj"]
            .as_array()
            .unwrap()
            .is_empty());
        let mut no_detail = batch(start, end, 0, 1);
        no_detail["includeDetail"] = json!(false);
        let (_, body) = send(build(&settings, &handle.base_url(), "queryMasterBatch", &no_detail).unwrap()).await;
        assert_eq!(body["data"]["dataList"][0]["detailFieldVals"], json!({}));

        // Limits are enforced.
        let (_, body) = send(
            build(
                &settings,
                &handle.base_url(),
                "queryMasterBatch",
                &batch(start, end, 0, 501),
            )
            .unwrap(),
        )
        .await;
        assert!(matches!(classify(200, &body), Verdict::Failed { ref code, .. } if code == "400"));
    }

    #[tokio::test]
    async fn touched_orders_move_into_later_windows() {
        let cfg = ErpStandardConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let settings = Settings::with_token(cfg.token.clone());
        let now = Utc.with_ymd_and_hms(2024, 6, 1, 8, 0, 0).unwrap();
        let before = sim.order(42).unwrap();
        assert!(sim.touch(42, now));
        assert!(sim.touch(7, now + chrono::Duration::seconds(1)));
        assert!(!sim.touch(501, now));
        let after = sim.order(42).unwrap();
        assert_ne!(before["masterFieldVal"]["status"], after["masterFieldVal"]["status"]);
        assert_eq!(after["masterFieldVal"]["lastModifyTime"], json!(now.timestamp_millis()));

        let window = batch(now.timestamp_millis(), now.timestamp_millis() + 60_000, 0, 100);
        let (_, body) = send(build(&settings, &handle.base_url(), "queryMasterBatch", &window).unwrap()).await;
        assert_eq!(bill_nos(&body), ["XSDD00000042", "XSDD00000007"]);
        // The old window lost them.
        let old = batch(cfg.base_time_ms, cfg.base_time_ms + 100 * 60_000, 0, 500);
        let (_, body) = send(build(&settings, &handle.base_url(), "queryMasterBatch", &old).unwrap()).await;
        assert_eq!(total_num(&body), Some(97));
        assert!(!bill_nos(&body).contains(&"XSDD00000042".to_string()));
        // By id still finds it, changed.
        let by_id = json!({"objAPIName": "SaleOrderObj", "dataId": generated_id(42)});
        let (_, body) = send(build(&settings, &handle.base_url(), "queryMasterById", &by_id).unwrap()).await;
        assert_eq!(classify(200, &body), Verdict::Ok);
        assert_eq!(body["data"], after);
        assert_eq!(records_path("queryMasterById"), Some("$.data"));
    }

    #[tokio::test]
    async fn writes_validate_each_record_and_update_by_id() {
        let cfg = ErpStandardConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let settings = Settings::with_token(cfg.token.clone());
        let base = handle.base_url();
        let mut bad = new_order("XS-2");
        bad["detailFieldVals"]["SaleOrderEntryObj"][1]["qty"] = json!("0");
        let rows = [new_order("XS-1"), bad, new_order("XS-3"), new_order("XS-1")];
        let mut outcomes = Vec::new();
        for row in &rows {
            let (status, body) = send(build(&settings, &base, "create", row).unwrap()).await;
            outcomes.push(write_outcome(&settings, "create", status, &body).unwrap());
        }
        assert_eq!(outcomes[0], RowOutcome::written(Some("2000000001".into())));
        assert!(
            matches!(&outcomes[1], RowOutcome::Failed { message, class: "rejected" } if message.contains("第 2 行"))
        );
        assert_eq!(outcomes[2], RowOutcome::written(Some("2000000002".into())));
        assert!(matches!(&outcomes[3], RowOutcome::Failed { message, .. } if message.starts_with("409")));
        assert_eq!(sim.written().len(), 2);
        assert_eq!(sim.create_calls(), 4);

        let stored = sim.written_by_key("XS-1").unwrap();
        assert_eq!(stored["masterFieldVal"]["id"], "2000000001");
        assert_eq!(stored["detailFieldVals"]["SaleOrderEntryObj"][1]["id"], "2000000001-2");

        // The answer carries the detail ids.
        let (_, body) = send(build(&settings, &base, "create", &new_order("XS-4")).unwrap()).await;
        assert_eq!(written_id("create", &body).as_deref(), Some("2000000003"));
        assert_eq!(
            detail_ids(&body),
            [(
                "SaleOrderEntryObj".to_string(),
                vec!["2000000003-1".to_string(), "2000000003-2".to_string()]
            )]
        );

        // Update by id merges master fields and keeps details not sent.
        let change =
            json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "2000000001", "totalAmount": "280.00"}});
        let (status, body) = send(build(&settings, &base, "update", &change).unwrap()).await;
        assert_eq!(
            write_outcome(&settings, "update", status, &body),
            Some(RowOutcome::written(Some("2000000001".into())))
        );
        let stored = sim.written_by_id("2000000001").unwrap();
        assert_eq!(stored["masterFieldVal"]["totalAmount"], "280.00");
        assert_eq!(stored["masterFieldVal"]["billNo"], "XS-1");
        assert_eq!(
            stored["detailFieldVals"]["SaleOrderEntryObj"].as_array().unwrap().len(),
            2
        );
        assert_eq!(sim.written().len(), 3);

        // Unknown ids and a generated order.
        let missing = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "2999999999"}});
        let (_, body) = send(build(&settings, &base, "update", &missing).unwrap()).await;
        assert!(matches!(classify(200, &body), Verdict::Failed { ref code, .. } if code == "404"));
        let generated =
            json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": generated_id(5), "remark": "加急"}});
        let (_, body) = send(build(&settings, &base, "update", &generated).unwrap()).await;
        assert_eq!(classify(200, &body), Verdict::Ok, "{body}");
        let order = sim.order(5).unwrap();
        assert_eq!(order["masterFieldVal"]["remark"], "加急");
        assert_eq!(order["masterFieldVal"]["billNo"], generated_bill(5));
        assert!(!sim.touch(5, Utc::now()), "a rewritten order is no longer generated");
        // Written records show up in the batch query of their modification window.
        let now = Utc::now().timestamp_millis();
        let (_, body) = send(
            build(
                &settings,
                &base,
                "queryMasterBatch",
                &batch(now - 60_000, now + 60_000, 0, 100),
            )
            .unwrap(),
        )
        .await;
        let mut bills = bill_nos(&body);
        bills.sort();
        assert_eq!(bills, ["XS-1", "XS-3", "XS-4", "XSDD00000005"]);
        // A duplicate bill number through update is refused.
        let clash = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "2000000002", "billNo": "XS-1"}});
        let (_, body) = send(build(&settings, &base, "update", &clash).unwrap()).await;
        assert_eq!(body["code"], "409");
    }

    #[tokio::test]
    async fn detail_rows_are_updated_by_id_and_appended_without_one() {
        let cfg = ErpStandardConfig::default();
        let (sim, handle) = start(cfg.clone()).await;
        let (settings, base) = (Settings::with_token(cfg.token.clone()), handle.base_url());
        // Ids a create sends are replaced.
        let mut order = new_order("D-1");
        order["detailFieldVals"]["SaleOrderEntryObj"][0]["id"] = json!("9-9");
        let (_, body) = send(build(&settings, &base, "create", &order).unwrap()).await;
        assert_eq!(
            body["data"]["detailDataIds"],
            json!({"SaleOrderEntryObj": ["2000000001-1", "2000000001-2"]})
        );
        // Line 2 by its id with a new qty, plus a new line; line 1 is not sent and stays.
        let change = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "2000000001"},
            "detailFieldVals": {"SaleOrderEntryObj": [
                {"id": "2000000001-2", "productCode": "WL00002", "qty": "7"},
                {"productCode": "WL00003", "qty": "1"}]}});
        let (status, body) = send(build(&settings, &base, "update", &change).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok, "{body}");
        assert_eq!(
            body["data"]["detailDataIds"],
            json!({"SaleOrderEntryObj": ["2000000001-1", "2000000001-2", "2000000001-3"]})
        );
        let lines = sim.written_by_id("2000000001").unwrap()["detailFieldVals"]["SaleOrderEntryObj"].clone();
        assert_eq!(lines[0]["qty"], "2");
        assert_eq!(lines[1]["qty"], "7");
        assert_eq!(lines[1]["price"], "100.00", "fields not sent stay");
        assert_eq!(lines[2]["productCode"], "WL00003");
        // An id the record does not have is refused, and nothing changes.
        let stray = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": "2000000001", "remark": "x"},
            "detailFieldVals": {"SaleOrderEntryObj": [{"id": "2000000002-1", "productCode": "WL00002", "qty": "1"}]}});
        let (_, body) = send(build(&settings, &base, "update", &stray).unwrap()).await;
        assert_eq!(body["code"], "404", "{body}");
        let after = sim.written_by_id("2000000001").unwrap();
        assert_eq!(after["detailFieldVals"]["SaleOrderEntryObj"], lines);
        assert!(after["masterFieldVal"].get("remark").is_none());
        // A generated order keeps its place when an update is refused.
        let generated = json!({"objAPIName": "SaleOrderObj", "masterFieldVal": {"id": generated_id(7)},
            "detailFieldVals": {"SaleOrderEntryObj": [{"id": "nope", "productCode": "WL00002", "qty": "1"}]}});
        let (_, body) = send(build(&settings, &base, "update", &generated).unwrap()).await;
        assert_eq!(body["code"], "404");
        assert!(sim.touch(7, Utc::now()), "still a generated order");
    }

    #[tokio::test]
    async fn err_code_style_and_throttling() {
        let cfg = ErpStandardConfig {
            reply_style: ReplyStyle::ErrCode,
            faults: Faults {
                rate_limit_per_sec: Some(1),
                ..Faults::default()
            },
            ..ErpStandardConfig::default()
        };
        let (sim, handle) = start(cfg.clone()).await;
        let settings = Settings::with_token(cfg.token.clone());
        let (status, body) = send(build(&settings, &handle.base_url(), "create", &new_order("E-1")).unwrap()).await;
        assert_eq!(body["errCode"], PLATFORM_SUCCESS);
        assert_eq!(classify_with(&settings, status, &body), Verdict::Ok);
        assert_eq!(written_id("create", &body).as_deref(), Some("2000000001"));
        let (status, body) = send(build(&settings, &handle.base_url(), "create", &new_order("E-2")).unwrap()).await;
        assert_eq!(status, 429);
        assert!(matches!(classify_with(&settings, status, &body), Verdict::Throttled(_)));
        assert_eq!(sim.written().len(), 1);

        sim.set_faults(Faults::default());
        let unknown = json!({"objAPIName": "PurchaseOrderObj", "masterFieldVal": {"a": 1}});
        let (_, body) = send(build(&settings, &handle.base_url(), "create", &unknown).unwrap()).await;
        assert!(matches!(classify_with(&settings, 200, &body), Verdict::Failed { ref code, .. } if code == "404"));
    }

    #[tokio::test]
    async fn extra_objects_and_failures() {
        let cfg = ErpStandardConfig {
            extra_objects: vec!["CustomerObj".into()],
            faults: Faults {
                fail_rate: 1.0,
                only_path_prefix: Some("/queryMasterById".into()),
                ..Faults::default()
            },
            ..ErpStandardConfig::default()
        };
        let (sim, handle) = start(cfg.clone()).await;
        let settings = Settings::with_token(cfg.token.clone());
        let customer = json!({"objAPIName": "CustomerObj", "masterFieldVal": {"name": "浙江嘉源食品有限公司"}});
        let (status, body) = send(build(&settings, &handle.base_url(), "create", &customer).unwrap()).await;
        assert_eq!(classify(status, &body), Verdict::Ok);
        let empty = json!({"objAPIName": "CustomerObj", "masterFieldVal": {}});
        let (_, body) = send(build(&settings, &handle.base_url(), "create", &empty).unwrap()).await;
        assert_eq!(body["code"], "400");
        assert_eq!(sim.written().len(), 1);
        let by_id = json!({"objAPIName": "CustomerObj", "dataId": "2000000001"});
        let (status, body) = send(build(&settings, &handle.base_url(), "queryMasterById", &by_id).unwrap()).await;
        assert_eq!(status, 500);
        assert!(matches!(classify(status, &body), Verdict::Failed { ref code, .. } if code == "500"));
        sim.set_faults(Faults::default());
        let (_, body) = send(build(&settings, &handle.base_url(), "queryMasterById", &by_id).unwrap()).await;
        assert_eq!(body["data"]["masterFieldVal"]["name"], "浙江嘉源食品有限公司");
    }
}
