//! The Jackyun / 吉客云 simulator: the open-API gateway `POST /open/openapi/do`, for
//! tests, `ferry demo` and `ferry simulate jackyun`.
//!
//! **Gateway.** The public parameters are read from the form body (and from the query
//! string, which some clients use). Each call is checked like the real gateway does:
//! every public field present, a known `appkey`, `contenttype=json`, a `timestamp`
//! (`yyyy-MM-dd HH:mm:ss`, China time) within [`JackyunConfig::max_clock_skew_secs`],
//! and a `sign` recomputed from the received fields (sorted `key+value`, wrapped in the
//! secret, lowercased, MD5 hex). Failures come back with HTTP 200 and the Jackyun
//! envelope `{"code","msg","subCode","result"}`.
//!
//! **Methods.**
//! * `crm.customer.list`: customers ordered by (`gmtModified`, `customerId`), filtered by
//!   `gmtModifiedBegin`/`gmtModifiedEnd` (both inclusive) and an exact `customerCode`;
//!   the rows are `result.data` itself.
//! * `erp.storage.goodslist`: goods (one SKU each) filtered by
//!   `startDateModifiedSku`/`endDateModifiedSku` and `goodsNo`; rows in
//!   `result.data.goods`.
//! * `crm.customer.add`: one customer per call, validated on its own; a duplicate
//!   `customerCode` is a business error. The new customer is remembered, listed by
//!   `crm.customer.list` and returned as `result.data.customerId`.
//!
//! Lists page with `pageIndex` from 0 and `pageSize` up to [`MAX_PAGE_SIZE`]; no total is
//! returned, so clients stop on a short page. A larger `pageSize` is refused rather than
//! silently capped, because a silent cap would make a short-page client stop early.
//!
//! **Not documented by Jackyun, chosen here** (the reference marks them unknown): the
//! error codes (400 bad parameter or refused row, 401 authentication, 404 unknown
//! method), the throttle answer (HTTP 429 with code 429), the page-size cap and the
//! shape of the `crm.customer.add` answer.
//!
//! **Data.** `records` customers and `records` goods are generated at start from their
//! index (seeded, realistic Chinese names, regions, phones and barcodes); record `i` was
//! modified at `base_time + i * spacing_secs` until touched. The tables are held in
//! memory, which suits tests and demos; the million-row benchmark uses the shop.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::kit::{
    counters, format_secs, json_reply, mix, naive_at, parse_secs, pick, shanghai_secs, simulator, start_sim, to_secs,
    too_many_requests, BRAND_FIRST, BRAND_SECOND, COMPANY_FORMS, REGIONS, SURNAMES, TRADES,
};
use super::{
    instrument, lock, parse_query, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle, Simulator,
};

/// The gateway path.
pub const GATEWAY_PATH: &str = "/open/openapi/do";
/// Largest `pageSize` the simulator accepts (the real maximum is unknown).
pub const MAX_PAGE_SIZE: u64 = 200;
/// `pageSize` when a list call names none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Format of `timestamp` and of every date-time field.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Business fields of a customer that `crm.customer.add` keeps (from the 客户新增 docs).
pub const CUSTOMER_FIELDS: &[&str] = &[
    "customerCode",
    "nickname",
    "alias",
    "vipLevel",
    "vipLevelName",
    "contacts",
    "country",
    "state",
    "city",
    "district",
    "town",
    "address",
    "detailedAddress",
    "zip",
    "gender",
    "age",
    "birthday",
    "calendarType",
    "phone",
    "email",
    "qq",
    "weiXin",
    "taxNumber",
    "customerManager",
    "customerManagerName",
    "refereeId",
    "referee",
    "specialReminding",
    "customerType",
    "customerTypeName",
];

/// How the simulator behaves. The default credentials are those of the reference's
/// signing test vector.
#[derive(Clone, Debug)]
pub struct JackyunConfig {
    /// Customers and goods generated at start (default 500 of each).
    pub records: u64,
    /// Record `i` is modified at `base_time + i * spacing_secs` (China time; default
    /// 2024-01-01 00:00:00).
    pub base_time: NaiveDateTime,
    /// Seconds between consecutive records (default 600).
    pub spacing_secs: i64,
    /// Faults at start; change them later with [`JackyunSim::set_faults`].
    pub faults: Faults,
    /// The accepted `appkey` (default `12345678`).
    pub appkey: String,
    /// The app secret signatures are checked with.
    pub secret: String,
    /// Largest accepted distance between `timestamp` and the server clock (default 600 s).
    pub max_clock_skew_secs: i64,
    /// The `code` of successful answers (default 200; some tenants see 0).
    pub success_code: i64,
}

impl Default for JackyunConfig {
    fn default() -> Self {
        JackyunConfig {
            records: 500,
            base_time: naive_at(2024, 1, 1, 0, 0, 0),
            spacing_secs: 600,
            faults: Faults::default(),
            appkey: "12345678".to_owned(),
            secret: "0123456789abcdef0123456789abcdef".to_owned(),
            max_clock_skew_secs: 600,
            success_code: 200,
        }
    }
}

/// A Jackyun simulator; clones share the same state.
#[derive(Clone)]
pub struct JackyunSim {
    state: Arc<JackyunState>,
}

impl std::fmt::Debug for JackyunSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JackyunSim")
            .field("customers", &self.customer_count())
            .field("written", &lock(&self.state.tables).written.len())
            .finish_non_exhaustive()
    }
}

struct JackyunState {
    appkey: String,
    secret: String,
    max_clock_skew_secs: i64,
    success_code: i64,
    control: Arc<SimControl>,
    tables: Mutex<Tables>,
    write_calls: AtomicU64,
}

/// One stored row and its modification time (China-time seconds).
#[derive(Clone, Debug)]
struct Stored {
    modified: i64,
    /// How many times [`JackyunSim::touch`] changed the row.
    revision: u64,
    row: Map<String, Value>,
}

#[derive(Default)]
struct Tables {
    customers: Vec<Stored>,
    by_code: HashMap<String, usize>,
    goods: Vec<Stored>,
    /// Positions in `customers` of the rows `crm.customer.add` created, in order.
    written: Vec<usize>,
    next_customer_id: u64,
}

simulator!(JackyunSim);

impl JackyunSim {
    /// Builds the state; nothing listens until [`JackyunSim::start`] or until
    /// [`JackyunSim::router`] is served.
    pub fn new(cfg: JackyunConfig) -> JackyunSim {
        let base = to_secs(cfg.base_time);
        let spacing = cfg.spacing_secs.max(0);
        let mut tables = Tables {
            next_customer_id: customer_id(cfg.records + 1),
            ..Tables::default()
        };
        for index in 1..=cfg.records {
            let modified = base.saturating_add(i64::try_from(index).unwrap_or(i64::MAX).saturating_mul(spacing));
            let customer = generated_customer(index, modified);
            if let Some(code) = customer.get("customerCode").and_then(Value::as_str) {
                tables.by_code.insert(code.to_owned(), tables.customers.len());
            }
            tables.customers.push(Stored {
                modified,
                revision: 0,
                row: customer,
            });
            tables.goods.push(Stored {
                modified,
                revision: 0,
                row: generated_goods(index, modified),
            });
        }
        let control = SimControl::new(cfg.faults, RequestLog::new(LogMode::Full), JackyunReplies);
        JackyunSim {
            state: Arc::new(JackyunState {
                appkey: cfg.appkey,
                secret: cfg.secret,
                max_clock_skew_secs: cfg.max_clock_skew_secs.max(0),
                success_code: cfg.success_code,
                control: Arc::new(control),
                tables: Mutex::new(tables),
                write_calls: AtomicU64::new(0),
            }),
        }
    }

    /// The gateway route, wrapped with the request log and the fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(GATEWAY_PATH, post(gateway))
            .with_state(Arc::clone(&self.state));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds a simulator and serves it on `listener`.
    pub async fn start(cfg: JackyunConfig, listener: tokio::net::TcpListener) -> io::Result<(JackyunSim, SimHandle)> {
        start_sim(JackyunSim::new(cfg), JackyunSim::router, listener).await
    }

    /// Changes customer `index` (1-based; its VIP level and manager notes) and moves its
    /// `gmtModified` to the instant `at`, written as China time like every Jackyun time
    /// (reference §4). False when there is no such customer.
    pub fn touch(&self, index: u64, at: DateTime<Utc>) -> bool {
        let mut tables = lock(&self.state.tables);
        let Some(stored) = position(index).and_then(|at| tables.customers.get_mut(at)) else {
            return false;
        };
        stored.revision += 1;
        let revision = stored.revision;
        stored
            .row
            .insert("vipLevelName".into(), json!(pick(VIP_LEVELS, mix(index) + revision)));
        stored
            .row
            .insert("specialReminding".into(), json!(format!("第{revision}次资料更新")));
        stored.modified = shanghai_secs(at);
        stored
            .row
            .insert("gmtModified".into(), json!(format_time(stored.modified)));
        true
    }

    /// Changes goods `index` (1-based; its retail price) and moves its modification
    /// time to the instant `at` (China time). False when there is no such goods.
    pub fn touch_goods(&self, index: u64, at: DateTime<Utc>) -> bool {
        let mut tables = lock(&self.state.tables);
        let Some(stored) = position(index).and_then(|at| tables.goods.get_mut(at)) else {
            return false;
        };
        let price = stored
            .row
            .get("retailPrice")
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<f64>().ok())
            .unwrap_or(0.0);
        stored
            .row
            .insert("retailPrice".into(), json!(format!("{:.2}", price + 1.0)));
        stored.modified = shanghai_secs(at);
        let text = format_time(stored.modified);
        stored.row.insert("gmtModified".into(), json!(text));
        stored.row.insert("skuGmtModified".into(), json!(text));
        true
    }

    /// Customer `index` (1-based, generated or added) as `crm.customer.list` shows it.
    pub fn customer(&self, index: u64) -> Option<Value> {
        let tables = lock(&self.state.tables);
        position(index)
            .and_then(|at| tables.customers.get(at))
            .map(|stored| Value::Object(stored.row.clone()))
    }

    /// Goods `index` (1-based) as `erp.storage.goodslist` shows it.
    pub fn goods(&self, index: u64) -> Option<Value> {
        let tables = lock(&self.state.tables);
        position(index)
            .and_then(|at| tables.goods.get(at))
            .map(|stored| Value::Object(stored.row.clone()))
    }

    /// Number of customers, generated plus added.
    pub fn customer_count(&self) -> usize {
        lock(&self.state.tables).customers.len()
    }

    /// The customers `crm.customer.add` created, in order.
    pub fn written(&self) -> Vec<Value> {
        let tables = lock(&self.state.tables);
        tables
            .written
            .iter()
            .filter_map(|at| tables.customers.get(*at))
            .map(|stored| Value::Object(stored.row.clone()))
            .collect()
    }

    /// The customer `crm.customer.add` created with `customerCode` `code`.
    pub fn written_by_key(&self, code: &str) -> Option<Value> {
        let tables = lock(&self.state.tables);
        let at = *tables.by_code.get(code)?;
        tables
            .written
            .contains(&at)
            .then(|| tables.customers.get(at))
            .flatten()
            .map(|stored| Value::Object(stored.row.clone()))
    }

    counters! {
        /// `crm.customer.add` calls that passed the gateway checks (refused rows included).
        write_calls,
    }
}

fn position(index: u64) -> Option<usize> {
    index.checked_sub(1).and_then(|at| usize::try_from(at).ok())
}

/// Jackyun's answers to throttled and failed requests.
struct JackyunReplies;

impl FaultReplies for JackyunReplies {
    fn throttled(&self) -> Response {
        too_many_requests(
            json!({"code": 429, "msg": "接口调用频率超限，请稍后再试", "subCode": "isp.call-limited", "result": null}),
        )
    }

    fn server_error(&self) -> Response {
        json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": 500, "msg": "服务器内部错误", "subCode": "isp.unknown-error", "result": null}),
        )
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

fn format_time(secs: i64) -> String {
    format_secs(secs, DATETIME_FORMAT)
}

fn parse_time(text: &str) -> Option<i64> {
    parse_secs(text, DATETIME_FORMAT)
}

/// The server clock in China time, as seconds of the naive local time.
fn china_now() -> i64 {
    shanghai_secs(Utc::now())
}

// ---------------------------------------------------------------------------
// Generated data
// ---------------------------------------------------------------------------

const GIVEN_NAMES: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛",
];
const ROADS: &[&str] = &[
    "文三路",
    "学院路",
    "人民路",
    "中山路",
    "建设路",
    "解放路",
    "长江路",
    "科技园路",
];
const CUSTOMER_TYPES: &[(&str, &str)] = &[
    ("1", "零售客户"),
    ("2", "批发客户"),
    ("3", "渠道分销商"),
    ("4", "大客户"),
];
const VIP_LEVELS: &[&str] = &["普通会员", "银卡会员", "金卡会员", "钻石会员"];
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("不锈钢保温杯", "500ml 象牙白", "杯壶"),
    ("无线鼠标", "静音款 深空灰", "数码配件"),
    ("机械键盘", "87键 茶轴", "数码配件"),
    ("蓝牙耳机", "降噪版 黑色", "数码配件"),
    ("帆布托特包", "大号 米色", "箱包"),
    ("陶瓷茶具套装", "一壶四杯", "茶具"),
    ("不粘炒锅", "32cm 带盖", "厨具"),
    ("轻薄羽绒服", "M码 藏青", "服装"),
    ("透气跑步鞋", "42码 白色", "鞋靴"),
    ("护眼台灯", "三档调光", "家居"),
];
const BRANDS: &[&str] = &["云帆", "恒源", "嘉信", "博通", "天悦"];

fn person_name(hash: u64) -> String {
    let mut name = String::from(pick(SURNAMES, hash));
    name.push_str(pick(GIVEN_NAMES, hash >> 8));
    if (hash >> 16).is_multiple_of(2) {
        name.push_str(pick(GIVEN_NAMES, hash >> 24));
    }
    name
}

fn customer_id(index: u64) -> u64 {
    1_650_000_000_000_000_000 + index * 7919
}

fn generated_customer(index: u64, modified: i64) -> Map<String, Value> {
    let hash = mix(index);
    let (state, city, district, zip, area) = pick(REGIONS, hash);
    let city_short = city.trim_end_matches('市');
    let nickname = [
        city_short,
        pick(BRAND_FIRST, hash >> 8),
        pick(BRAND_SECOND, hash >> 16),
        pick(TRADES, hash >> 24),
        pick(COMPANY_FORMS, hash >> 32),
    ]
    .concat();
    let (type_id, type_name) = pick(CUSTOMER_TYPES, hash >> 40);
    let created = modified - i64::try_from((hash >> 20) % 86_400).unwrap_or(0);
    let row = json!({
        "customerId": customer_id(index).to_string(),
        "customerCode": format!("KH{index:06}"),
        "nickname": nickname,
        "contacts": person_name(hash >> 12),
        "phone": format!("1{}{:09}", pick(&["3", "5", "8"], hash >> 4), (hash >> 6) % 1_000_000_000),
        "email": format!("kh{index:06}@example.cn"),
        "country": "中国",
        "state": state,
        "city": city,
        "district": district,
        "address": format!("{state}{city}{district}{}{}号", pick(ROADS, hash >> 44), 1 + (hash >> 48) % 300),
        "zip": zip,
        "telephone": format!("{area}-{:08}", (hash >> 10) % 100_000_000),
        "customerType": type_id,
        "customerTypeName": type_name,
        "vipLevelName": pick(VIP_LEVELS, hash),
        "taxNumber": format!("91{:06}MA{:08}X", (hash >> 3) % 1_000_000, (hash >> 23) % 100_000_000),
        "isBlockup": 0,
        "gmtCreate": format_time(created),
        "gmtModified": format_time(modified),
    });
    match row {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn generated_goods(index: u64, modified: i64) -> Map<String, Value> {
    let hash = mix(index ^ 0x5EED_600D);
    let (name, spec, category) = pick(PRODUCTS, hash);
    let cents = 990 + (hash >> 8) % 49_000;
    let row = json!({
        "goodsId": (1_700_000_000_000_000_000u64 + index * 104_729).to_string(),
        "goodsNo": format!("G{index:06}"),
        "goodsName": name,
        "skuId": (1_710_000_000_000_000_000u64 + index * 104_723).to_string(),
        "skuName": spec,
        "skuBarcode": format!("69{:011}", mix(index) % 100_000_000_000),
        "unitName": "件",
        "retailPrice": format!("{}.{:02}", cents / 100, cents % 100),
        "cateName": category,
        "brandName": pick(BRANDS, hash >> 20),
        "skuIsBlockup": 0,
        "isBlockup": 0,
        "gmtCreate": format_time(modified - 86_400),
        "gmtModified": format_time(modified),
        "skuGmtModified": format_time(modified),
    });
    match row {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------

/// A refused call: HTTP 200 with a non-success Jackyun envelope.
struct Refusal {
    code: i64,
    sub_code: &'static str,
    msg: String,
}

impl Refusal {
    fn new(code: i64, sub_code: &'static str, msg: impl Into<String>) -> Refusal {
        Refusal {
            code,
            sub_code,
            msg: msg.into(),
        }
    }

    fn bad_param(msg: impl Into<String>) -> Refusal {
        Refusal::new(400, "isv.invalid-parameter", msg)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Json(json!({"code": self.code, "msg": self.msg, "subCode": self.sub_code, "result": null})).into_response()
    }
}

const PUBLIC_FIELDS: &[&str] = &[
    "method",
    "appkey",
    "version",
    "contenttype",
    "timestamp",
    "bizcontent",
    "sign",
];

async fn gateway(
    State(state): State<Arc<JackyunState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params: Vec<(String, String)> = query.as_deref().map(parse_query).unwrap_or_default();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    if !is_json {
        params.extend(parse_query(&String::from_utf8_lossy(&body)));
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (key, value) in params {
        fields.insert(key, value);
    }
    match state.handle(&fields) {
        Ok(result) => Json(json!({
            "code": state.success_code,
            "msg": "成功",
            "subCode": null,
            "result": result,
        }))
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

impl JackyunState {
    fn handle(&self, fields: &HashMap<String, String>) -> Result<Value, Refusal> {
        self.authenticate(fields)?;
        let method = fields.get("method").map(String::as_str).unwrap_or_default();
        let biz_text = fields.get("bizcontent").map(String::as_str).unwrap_or_default();
        let biz: Value = serde_json::from_str(biz_text)
            .map_err(|e| Refusal::bad_param(format!("bizcontent 不是合法的JSON: {e}")))?;
        let Value::Object(biz) = biz else {
            return Err(Refusal::bad_param("bizcontent 必须是JSON对象"));
        };
        match method {
            "crm.customer.list" => self.list_customers(&biz),
            "erp.storage.goodslist" => self.list_goods(&biz),
            "crm.customer.add" => {
                self.write_calls.fetch_add(1, Ordering::Relaxed);
                self.add_customer(&biz)
            }
            other => Err(Refusal::new(
                404,
                "isv.method-not-exists",
                format!("接口不存在: {other}"),
            )),
        }
    }

    fn authenticate(&self, fields: &HashMap<String, String>) -> Result<(), Refusal> {
        let missing: Vec<&str> = PUBLIC_FIELDS
            .iter()
            .copied()
            .filter(|name| fields.get(*name).is_none_or(|value| value.is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::new(
                400,
                "isv.missing-parameter",
                format!("缺少公共参数: {}", missing.join(", ")),
            ));
        }
        let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
        if field("appkey") != self.appkey {
            return Err(Refusal::new(
                401,
                "isv.invalid-appkey",
                format!("appkey不存在: {}", field("appkey")),
            ));
        }
        if field("contenttype") != "json" {
            return Err(Refusal::bad_param(format!(
                "contenttype 只支持 json, 收到 {}",
                field("contenttype")
            )));
        }
        let Some(sent_at) = parse_time(field("timestamp")) else {
            return Err(Refusal::bad_param(format!(
                "timestamp 格式应为 yyyy-MM-dd HH:mm:ss, 收到 {}",
                field("timestamp")
            )));
        };
        if (china_now() - sent_at).abs() > self.max_clock_skew_secs {
            return Err(Refusal::new(
                401,
                "isv.invalid-timestamp",
                format!("timestamp 已过期或超前: {} (服务器时间为北京时间)", field("timestamp")),
            ));
        }
        if field("sign") != expected_sign(fields, &self.secret) {
            return Err(Refusal::new(401, "isv.invalid-signature", "签名错误"));
        }
        Ok(())
    }

    fn list_customers(&self, biz: &Map<String, Value>) -> Result<Value, Refusal> {
        let (page_index, page_size) = paging(biz)?;
        let begin = time_filter(biz, "gmtModifiedBegin")?;
        let end = time_filter(biz, "gmtModifiedEnd")?;
        let code = text_filter(biz, "customerCode");
        let tables = lock(&self.tables);
        let rows = page_of(&tables.customers, begin, end, page_index, page_size, |row| {
            code.as_deref()
                .is_none_or(|code| row.get("customerCode").and_then(Value::as_str) == Some(code))
        });
        Ok(json!({ "data": rows }))
    }

    fn list_goods(&self, biz: &Map<String, Value>) -> Result<Value, Refusal> {
        let (page_index, page_size) = paging(biz)?;
        let begin = time_filter(biz, "startDateModifiedSku")?;
        let end = time_filter(biz, "endDateModifiedSku")?;
        let goods_no = text_filter(biz, "goodsNo");
        let tables = lock(&self.tables);
        let rows = page_of(&tables.goods, begin, end, page_index, page_size, |row| {
            goods_no
                .as_deref()
                .is_none_or(|no| row.get("goodsNo").and_then(Value::as_str) == Some(no))
        });
        Ok(json!({ "data": { "goods": rows } }))
    }

    fn add_customer(&self, biz: &Map<String, Value>) -> Result<Value, Refusal> {
        let row = validate_customer(biz)?;
        let code = row
            .get("customerCode")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut tables = lock(&self.tables);
        if tables.by_code.contains_key(&code) {
            return Err(Refusal::new(
                400,
                "crm.customer.duplicate-code",
                format!("客户编号已存在: {code}"),
            ));
        }
        let id = tables.next_customer_id;
        tables.next_customer_id += 7919;
        let now = china_now();
        let mut stored = Map::new();
        stored.insert("customerId".into(), json!(id.to_string()));
        stored.extend(row);
        stored.insert("isBlockup".into(), json!(0));
        stored.insert("gmtCreate".into(), json!(format_time(now)));
        stored.insert("gmtModified".into(), json!(format_time(now)));
        let at = tables.customers.len();
        tables.customers.push(Stored {
            modified: now,
            revision: 0,
            row: stored,
        });
        tables.by_code.insert(code.clone(), at);
        tables.written.push(at);
        Ok(json!({ "data": { "customerId": id.to_string(), "customerCode": code } }))
    }
}

// ---------------------------------------------------------------------------
// The signature, as the gateway recomputes it (reference §4 "Sign")
// ---------------------------------------------------------------------------

/// Received fields that take no part in the signature (§4 "Sign", step 1).
const UNSIGNED: &[&str] = &["sign", "contextid", "token"];

/// `secret + key1value1key2value2… + secret` over the received fields other than
/// [`UNSIGNED`], keys in ascending byte order, before any lowercasing (§4 steps 1–4).
fn signing_text(fields: &HashMap<String, String>, secret: &str) -> String {
    let sorted: BTreeMap<&str, &str> = fields
        .iter()
        .filter(|(key, _)| !UNSIGNED.contains(&key.as_str()))
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let mut text = String::from(secret);
    for (key, value) in sorted {
        text.push_str(key);
        text.push_str(value);
    }
    text.push_str(secret);
    text
}

/// The `sign` a correct client sends: the whole [`signing_text`] lowercased (the JSON in
/// `bizcontent` too), then MD5 as lowercase hex (§4 steps 5–6).
fn expected_sign(fields: &HashMap<String, String>, secret: &str) -> String {
    let digest = Md5::digest(signing_text(fields, secret).to_lowercase().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `pageIndex` (from 0) and `pageSize`, as numbers or numeric strings.
fn paging(biz: &Map<String, Value>) -> Result<(u64, u64), Refusal> {
    let number = |name: &str| -> Result<Option<u64>, Refusal> {
        match biz.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| Refusal::bad_param(format!("{name} 必须是非负整数"))),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => text
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| Refusal::bad_param(format!("{name} 必须是非负整数, 收到 {text}"))),
            Some(other) => Err(Refusal::bad_param(format!("{name} 必须是非负整数, 收到 {other}"))),
        }
    };
    let index = number("pageIndex")?.unwrap_or(0);
    let size = number("pageSize")?.unwrap_or(DEFAULT_PAGE_SIZE);
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(Refusal::bad_param(format!(
            "pageSize 取值范围为 1-{MAX_PAGE_SIZE}, 收到 {size}"
        )));
    }
    Ok((index, size))
}

fn time_filter(biz: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match biz.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => parse_time(text)
            .map(Some)
            .ok_or_else(|| Refusal::bad_param(format!("{name} 格式应为 yyyy-MM-dd HH:mm:ss, 收到 {text}"))),
        Some(other) => Err(Refusal::bad_param(format!(
            "{name} 格式应为 yyyy-MM-dd HH:mm:ss, 收到 {other}"
        ))),
    }
}

fn text_filter(biz: &Map<String, Value>, name: &str) -> Option<String> {
    match biz.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// One page of `table` ordered by (modified, position), within [begin, end].
fn page_of(
    table: &[Stored],
    begin: Option<i64>,
    end: Option<i64>,
    page_index: u64,
    page_size: u64,
    keep: impl Fn(&Map<String, Value>) -> bool,
) -> Vec<Value> {
    let mut keys: Vec<(i64, usize)> = table
        .iter()
        .enumerate()
        .filter(|(_, stored)| begin.is_none_or(|b| stored.modified >= b) && end.is_none_or(|e| stored.modified <= e))
        .filter(|(_, stored)| keep(&stored.row))
        .map(|(at, stored)| (stored.modified, at))
        .collect();
    keys.sort_unstable();
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let skip = usize::try_from(page_index).unwrap_or(usize::MAX).saturating_mul(size);
    keys.into_iter()
        .skip(skip)
        .take(size)
        .filter_map(|(_, at)| table.get(at))
        .map(|stored| Value::Object(stored.row.clone()))
        .collect()
}

/// Checks one customer of `crm.customer.add` and keeps its known fields.
fn validate_customer(biz: &Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
    let refuse = |msg: String| Refusal::new(400, "crm.customer.invalid", msg);
    let mut row = Map::new();
    for (key, value) in biz {
        if !CUSTOMER_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::Null => continue,
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                row.insert(key.clone(), value.clone());
            }
            _ => return Err(refuse(format!("字段 {key} 必须是字符串"))),
        }
    }
    let text = |row: &Map<String, Value>, name: &str| -> String {
        match row.get(name) {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    };
    let code = text(&row, "customerCode");
    if code.is_empty() {
        return Err(refuse("客户编号(customerCode)不能为空".into()));
    }
    if code.chars().count() > 50 || code.chars().any(char::is_whitespace) {
        return Err(refuse(format!("客户编号(customerCode)格式不正确: {code}")));
    }
    row.insert("customerCode".into(), json!(code));
    if text(&row, "nickname").is_empty() {
        return Err(refuse(format!("客户名称(nickname)不能为空: {code}")));
    }
    let phone = text(&row, "phone");
    if !phone.is_empty()
        && !phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | ' '))
    {
        return Err(refuse(format!("联系电话(phone)格式不正确: {phone}")));
    }
    let email = text(&row, "email");
    let email_ok = email
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if !email.is_empty() && !email_ok {
        return Err(refuse(format!("email格式不正确: {email}")));
    }
    let age = text(&row, "age");
    if !age.is_empty() && age.parse::<u8>().map_or(true, |age| age > 150) {
        return Err(refuse(format!("年龄(age)必须是0-150的整数: {age}")));
    }
    let birthday = text(&row, "birthday");
    if !birthday.is_empty() && NaiveDate::parse_from_str(&birthday, "%Y-%m-%d").is_err() {
        return Err(refuse(format!("生日(birthday)格式应为 yyyy-MM-dd: {birthday}")));
    }
    Ok(row)
}

/// `ferry test`'s check of a replayed request: `sign` must be what this simulator's gateway
/// computes over the received fields with `secret` (the clock is not checked: replay pins it).
pub fn verify_signature(secret: &str, request: &super::RecordedRequest) -> Result<(), String> {
    let mut params = parse_query(&request.query);
    let is_json = request
        .header("content-type")
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    if !is_json {
        params.extend(parse_query(&String::from_utf8_lossy(&request.body)));
    }
    let fields: HashMap<String, String> = params.into_iter().collect();
    let received = fields.get("sign").map(String::as_str).unwrap_or_default();
    let expected = expected_sign(&fields, secret);
    if received == expected {
        Ok(())
    } else {
        Err(format!(
            "jackyun `sign` {received:?} is not the MD5 the simulator's gateway computes ({expected})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::jackyun::{envelope, request, Settings};
    use crate::connector::types::{RowOutcome, Verdict};
    use crate::sim::kit::test_time::{china, naive};
    use crate::sim::InjectedFault;
    use chrono::{Duration as ChronoDuration, TimeZone};
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn settings() -> Settings {
        Settings::new("12345678", "0123456789abcdef0123456789abcdef")
    }

    async fn start(cfg: JackyunConfig) -> (JackyunSim, SimHandle, reqwest::Client) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = JackyunSim::start(cfg, listener).await.unwrap();
        (sim, handle, reqwest::Client::new())
    }

    async fn send(client: &reqwest::Client, wire: crate::connector::types::WireRequest) -> (u16, Value) {
        assert_eq!(wire.method, "POST");
        assert!(wire.body.is_some(), "a form body");
        crate::sim::kit::send_wire(client, wire).await
    }

    /// Calls `method` through the connector's own request builder, signed now.
    async fn call(
        client: &reqwest::Client,
        base: &str,
        settings: &Settings,
        method: &str,
        biz: Value,
    ) -> (Verdict, Value) {
        let wire = request::build(settings, base, method, &biz, Utc::now()).unwrap();
        let (status, body) = send(client, wire).await;
        (envelope::classify_with(&settings.rules(), status, &body), body)
    }

    fn list_page(page_index: u64, page_size: u64) -> Value {
        request::with_page(&json!({"hasTotal": 1}), page_index, page_size).unwrap()
    }

    #[test]
    fn the_gateway_signature_is_the_reference_vector() {
        // Reference §9 "Jackyun".
        let secret = "0123456789abcdef0123456789abcdef";
        let vector = "af8f1ae1a98bd6c9c2052248f0f3c64c";
        let mut fields: HashMap<String, String> = [
            ("method", "erp.storage.goodslist"),
            ("appkey", "12345678"),
            ("version", "v1.0"),
            ("contenttype", "json"),
            ("timestamp", "2024-03-01 12:00:00"),
            ("bizcontent", r#"{"pageIndex":0,"pageSize":50}"#),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(
            signing_text(&fields, secret),
            format!(
                r#"{secret}appkey12345678bizcontent{{"pageIndex":0,"pageSize":50}}contenttypejsonmethoderp.storage.goodslisttimestamp2024-03-01 12:00:00versionv1.0{secret}"#
            )
        );
        assert_eq!(expected_sign(&fields, secret), vector);
        // sign, contextid and token travel but are not signed.
        for (key, value) in [("sign", vector), ("contextid", "ctx-1"), ("token", "tok")] {
            fields.insert(key.to_owned(), value.to_owned());
        }
        assert_eq!(expected_sign(&fields, secret), vector);
        // The whole text is lowercased before hashing, so letter case inside values does not
        // count, but every other byte does.
        fields.insert("bizcontent".into(), r#"{"PAGEINDEX":0,"PAGESIZE":50}"#.into());
        assert_eq!(expected_sign(&fields, secret), vector);
        fields.insert("bizcontent".into(), r#"{"pageIndex":0,"pageSize":51}"#.into());
        assert_ne!(expected_sign(&fields, secret), vector);
    }

    #[tokio::test]
    async fn signed_calls_pass_and_every_auth_mistake_is_refused() {
        let (sim, handle, client) = start(JackyunConfig::default()).await;
        let base = handle.base_url();
        let (verdict, body) = call(&client, &base, &settings(), "crm.customer.list", list_page(0, 5)).await;
        assert_eq!(verdict, Verdict::Ok, "{body}");
        assert_eq!(body["code"], 200);
        assert_eq!(envelope::rows("crm.customer.list", &body).len(), 5);

        let wrong_secret = Settings::new("12345678", "ffffffffffffffffffffffffffffffff");
        let (verdict, _) = call(&client, &base, &wrong_secret, "crm.customer.list", list_page(0, 5)).await;
        assert_eq!(
            verdict,
            Verdict::Failed {
                code: "401/isv.invalid-signature".into(),
                message: "签名错误".into()
            }
        );
        let wrong_key = Settings::new("87654321", "0123456789abcdef0123456789abcdef");
        let (verdict, _) = call(&client, &base, &wrong_key, "crm.customer.list", list_page(0, 5)).await;
        assert!(matches!(verdict, Verdict::Failed { ref code, .. } if code == "401/isv.invalid-appkey"));

        // The reference vector's timestamp (2024-03-01 12:00 China time) is long stale.
        let old = Utc.with_ymd_and_hms(2024, 3, 1, 4, 0, 0).unwrap();
        let wire = request::build(
            &settings(),
            &base,
            "erp.storage.goodslist",
            &json!({"pageIndex": 0, "pageSize": 50}),
            old,
        )
        .unwrap();
        assert!(
            String::from_utf8_lossy(wire.body.as_deref().unwrap()).contains("sign=af8f1ae1a98bd6c9c2052248f0f3c64c")
        );
        let (status, body) = send(&client, wire).await;
        assert_eq!(status, 200);
        assert_eq!(body["subCode"], "isv.invalid-timestamp");

        // Changing bizcontent after signing breaks the sign.
        let mut wire = request::build(&settings(), &base, "crm.customer.list", &list_page(0, 5), Utc::now()).unwrap();
        let text = String::from_utf8(wire.body.take().unwrap()).unwrap();
        wire.body = Some(text.replace("%22pageSize%22%3A5", "%22pageSize%22%3A6").into_bytes());
        let (_, body) = send(&client, wire).await;
        assert_eq!(body["subCode"], "isv.invalid-signature");

        // Wrongly named public fields are simply missing.
        let response = client
            .post(format!("{base}{GATEWAY_PATH}"))
            .form(&[
                ("method", "crm.customer.list"),
                ("app_key", "12345678"),
                ("biz_content", "{}"),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 400);
        assert!(body["msg"].as_str().unwrap().contains("appkey"), "{body}");

        let (verdict, _) = call(&client, &base, &settings(), "erp.nothing.here", json!({})).await;
        assert!(matches!(verdict, Verdict::Failed { ref code, .. } if code == "404/isv.method-not-exists"));
        assert_eq!(sim.requests().len(), 7);
    }

    #[tokio::test]
    async fn parameters_in_the_query_string_are_accepted_too() {
        let (_sim, handle, client) = start(JackyunConfig::default()).await;
        let wire = request::build(
            &settings(),
            &handle.base_url(),
            "crm.customer.list",
            &list_page(0, 2),
            Utc::now(),
        )
        .unwrap();
        let query = String::from_utf8(wire.body.unwrap()).unwrap();
        let response = client
            .post(format!("{}?{query}", wire.url))
            .json(&json!({"ignored": true}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(envelope::classify(200, &body), Verdict::Ok, "{body}");
    }

    #[tokio::test]
    async fn customer_pages_run_to_a_short_page() {
        let (_sim, handle, client) = start(JackyunConfig {
            records: 450,
            ..JackyunConfig::default()
        })
        .await;
        let base = handle.base_url();
        let settings = settings();
        let paging = settings.paging("crm.customer.list").unwrap();
        let mut page = u64::try_from(paging.start).unwrap();
        let mut codes = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let (verdict, body) = call(
                &client,
                &base,
                &settings,
                "crm.customer.list",
                list_page(page, paging.size),
            )
            .await;
            assert_eq!(verdict, Verdict::Ok);
            let rows = envelope::rows("crm.customer.list", &body);
            sizes.push(rows.len());
            codes.extend(rows.iter().map(|row| row["customerCode"].as_str().unwrap().to_owned()));
            if envelope::is_last_page(rows.len(), paging.size) {
                break;
            }
            page += 1;
        }
        assert_eq!(sizes, [200, 200, 50]);
        let expected: Vec<String> = (1..=450).map(|i| format!("KH{i:06}")).collect();
        assert_eq!(codes, expected);

        let (verdict, body) = call(&client, &base, &settings, "crm.customer.list", list_page(0, 201)).await;
        assert!(matches!(verdict, Verdict::Failed { ref code, .. } if code == "400/isv.invalid-parameter"));
        assert!(body["msg"].as_str().unwrap().contains("pageSize"));
    }

    #[tokio::test]
    async fn goods_sit_under_their_key_and_filter_by_sku_time() {
        let (sim, handle, client) = start(JackyunConfig::default()).await;
        let base = handle.base_url();
        let biz = request::with_window(
            "erp.storage.goodslist",
            &list_page(0, 50),
            "2024-01-01 01:00:00",
            "2024-01-01 02:00:00",
        )
        .unwrap();
        let (verdict, body) = call(&client, &base, &settings(), "erp.storage.goodslist", biz).await;
        assert_eq!(verdict, Verdict::Ok);
        let numbers: Vec<&str> = envelope::rows("erp.storage.goodslist", &body)
            .iter()
            .map(|row| row["goodsNo"].as_str().unwrap())
            .collect();
        // Goods i is modified at 00:00 + i * 10 minutes; the window is inclusive.
        assert_eq!(
            numbers,
            ["G000006", "G000007", "G000008", "G000009", "G000010", "G000011", "G000012"]
        );
        let first = sim.goods(6).unwrap();
        assert!(first["skuBarcode"].as_str().unwrap().starts_with("69"));
        assert_eq!(first["skuGmtModified"], "2024-01-01 01:00:00");
    }

    #[tokio::test]
    async fn incremental_windows_see_touched_customers() {
        let (sim, handle, client) = start(JackyunConfig::default()).await;
        let base = handle.base_url();
        let window =
            |begin: &str, end: &str| request::with_window("crm.customer.list", &list_page(0, 200), begin, end).unwrap();
        let (_, body) = call(
            &client,
            &base,
            &settings(),
            "crm.customer.list",
            window("2024-01-02 00:00:00", "2024-01-02 01:00:00"),
        )
        .await;
        let codes: Vec<&str> = envelope::rows("crm.customer.list", &body)
            .iter()
            .map(|row| row["customerCode"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["KH000144", "KH000145", "KH000146", "KH000147", "KH000148", "KH000149", "KH000150"]
        );

        let before = sim.customer(3).unwrap();
        // 00:00 UTC is 08:00 in China: the customer is stamped on the China clock.
        let instant = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
        assert_eq!(instant, china("2024-06-01 08:00:00"));
        assert!(sim.touch(3, instant));
        assert!(!sim.touch(9999, instant));
        let after = sim.customer(3).unwrap();
        assert_ne!(before["specialReminding"], after["specialReminding"]);
        let (_, body) = call(
            &client,
            &base,
            &settings(),
            "crm.customer.list",
            window("2024-06-01 00:00:00", "2024-06-02 00:00:00"),
        )
        .await;
        let rows = envelope::rows("crm.customer.list", &body);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["customerCode"], "KH000003");
        assert_eq!(rows[0]["gmtModified"], "2024-06-01 08:00:00");
        assert!(rows[0].get("revision").is_none());
        let (_, body) = call(
            &client,
            &base,
            &settings(),
            "crm.customer.list",
            window("2024-01-01 00:00:00", "2024-01-01 00:30:00"),
        )
        .await;
        let codes: Vec<&str> = envelope::rows("crm.customer.list", &body)
            .iter()
            .map(|row| row["customerCode"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["KH000001", "KH000002"],
            "the touched customer left its old window"
        );
    }

    #[tokio::test]
    async fn adds_are_validated_one_by_one_and_remembered() {
        let (sim, handle, client) = start(JackyunConfig {
            records: 10,
            ..JackyunConfig::default()
        })
        .await;
        let base = handle.base_url();
        let customer = |code: &str, name: &str| {
            json!({
                "customerCode": code, "nickname": name, "contacts": "王伟", "phone": "13800138000",
                "email": "wangwei@example.cn", "state": "浙江省", "city": "杭州市", "district": "西湖区",
                "age": "35", "customerTypeName": "批发客户", "unknownField": "ignored",
            })
        };
        let batch = [
            customer("C-1001", "杭州云帆贸易有限公司"),
            customer("C-1002", ""),
            customer("KH000003", "撞号公司"),
            json!({"customerCode": "C-1004", "nickname": "宁波恒达实业有限公司", "age": 30, "birthday": "1990-02-30"}),
            customer("C-1005", "深圳瑞通科技有限公司"),
            customer("C-1001", "杭州云帆贸易有限公司"),
        ];
        let mut outcomes = Vec::new();
        for row in batch {
            let (verdict, body) = call(&client, &base, &settings(), "crm.customer.add", row).await;
            outcomes.push(envelope::row_outcome("crm.customer.add", &verdict, &body).unwrap());
        }
        let written: Vec<bool> = outcomes
            .iter()
            .map(|o| matches!(o, RowOutcome::Written { .. }))
            .collect();
        assert_eq!(written, [true, false, false, false, true, false]);
        let messages: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                RowOutcome::Failed { message, class } => {
                    assert_eq!(*class, "rejected");
                    Some(message.clone())
                }
                RowOutcome::Written { .. } => None,
            })
            .collect();
        assert!(messages[0].contains("nickname"), "{messages:?}");
        assert!(messages[1].contains("客户编号已存在: KH000003"), "{messages:?}");
        assert!(messages[2].contains("birthday"), "{messages:?}");
        assert!(messages[3].contains("客户编号已存在: C-1001"), "{messages:?}");
        assert_eq!(sim.write_calls(), 6);

        let RowOutcome::Written {
            target_id: Some(id), ..
        } = &outcomes[0]
        else {
            panic!("expected an id");
        };
        let stored = sim.written_by_key("C-1001").unwrap();
        assert_eq!(&stored["customerId"], id);
        assert_eq!(stored["nickname"], "杭州云帆贸易有限公司");
        assert_eq!(stored["age"], "35");
        assert!(stored.get("unknownField").is_none());
        assert!(
            sim.written_by_key("KH000003").is_none(),
            "generated customers are not writes"
        );
        assert_eq!(sim.written().len(), 2);
        assert_eq!(sim.customer_count(), 12);

        // The business key is found through the vendor's own list method.
        let (verdict, body) = call(
            &client,
            &base,
            &settings(),
            "crm.customer.list",
            json!({"customerCode": "C-1005", "pageIndex": 0, "pageSize": 10}),
        )
        .await;
        assert_eq!(verdict, Verdict::Ok);
        let rows = envelope::rows("crm.customer.list", &body);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["nickname"], "深圳瑞通科技有限公司");
        assert_eq!(
            sim.written_by_key("C-1005").unwrap()["customerId"],
            rows[0]["customerId"]
        );
    }

    #[tokio::test]
    async fn throttling_and_failures_use_jackyun_envelopes() {
        let (sim, handle, client) = start(JackyunConfig {
            faults: Faults {
                rate_limit_per_sec: Some(2),
                ..Faults::default()
            },
            ..JackyunConfig::default()
        })
        .await;
        let base = handle.base_url();
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            verdicts.push(
                call(&client, &base, &settings(), "crm.customer.list", list_page(0, 1))
                    .await
                    .0,
            );
        }
        assert_eq!(verdicts[..2], [Verdict::Ok, Verdict::Ok]);
        assert_eq!(verdicts[2], Verdict::Throttled("接口调用频率超限，请稍后再试".into()));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            call(&client, &base, &settings(), "crm.customer.list", list_page(0, 1))
                .await
                .0,
            Verdict::Ok
        );

        sim.set_faults(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        let (verdict, _) = call(&client, &base, &settings(), "crm.customer.list", list_page(0, 1)).await;
        assert!(matches!(verdict, Verdict::Failed { ref code, .. } if code.starts_with("500")));
        let faults: Vec<_> = sim.requests().iter().map(|r| r.fault).collect();
        assert_eq!(faults[2], Some(InjectedFault::Throttled));
        assert_eq!(faults[4], Some(InjectedFault::Failed));
    }

    #[tokio::test]
    async fn success_code_zero_is_understood_by_the_connector() {
        let (_sim, handle, client) = start(JackyunConfig {
            success_code: 0,
            ..JackyunConfig::default()
        })
        .await;
        let (verdict, body) = call(
            &client,
            &handle.base_url(),
            &settings(),
            "erp.storage.goodslist",
            list_page(0, 3),
        )
        .await;
        assert_eq!(body["code"], 0);
        assert_eq!(verdict, Verdict::Ok);
        let mut strict = settings();
        strict.success_codes = Some(vec!["200".into()]);
        let (verdict, _) = call(
            &client,
            &handle.base_url(),
            &strict,
            "erp.storage.goodslist",
            list_page(0, 3),
        )
        .await;
        assert!(matches!(verdict, Verdict::Failed { .. }));
    }

    #[test]
    fn generated_data_is_deterministic_and_realistic() {
        let one = JackyunSim::new(JackyunConfig::default());
        let two = JackyunSim::new(JackyunConfig::default());
        assert_eq!(one.customer(42), two.customer(42));
        let customer = one.customer(42).unwrap();
        assert_eq!(customer["customerCode"], "KH000042");
        assert!(customer["nickname"].as_str().unwrap().ends_with("公司"));
        assert_eq!(customer["phone"].as_str().unwrap().len(), 11);
        let modified = naive(customer["gmtModified"].as_str().unwrap());
        assert_eq!(modified, naive("2024-01-01 00:00:00") + ChronoDuration::minutes(420));
        assert!(one.customer(0).is_none());
        assert!(one.customer(501).is_none());
    }
}
