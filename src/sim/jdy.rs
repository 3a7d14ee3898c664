//! The jdy simulator: Kingdee 精斗云 / 云星辰 purchase inbound bills (采购入库单) behind a
//! faithful copy of the api.kingdee.com gateway, for tests, `ferry demo` and
//! `ferry simulate jdy`.
//!
//! **v2 routes.** `POST /jdyconnector/app_management/push_app_authorize?outerInstanceId=`,
//! `GET /jdyconnector/app_management/kingdee_auth_token?app_key=&app_signature=`,
//! `GET /jdy/v2/scm/pur_inbound` (list), `POST /jdy/v2/scm/pur_inbound` (save, one bill per
//! call; with `id` it updates) and `GET /jdy/v2/scm/pur_inbound_detail?id=|number=`.
//! Every v2 call must carry valid `X-Api-*` headers: the simulator recomputes the signature
//! from the bytes it received (its own implementation of reference §3, not the connector's),
//! rejects a timestamp that is not in milliseconds or more than
//! [`JdyConfig::timestamp_window_ms`] away from its clock (HTTP 519 errcode 4006, as the
//! gateway answers), and answers an unknown path with HTTP 519 errcode 5001. Business calls also need a live `app-token`
//! (else errcode `1030002006`, 授权密钥失效) and the tenant's `X-GW-Router-Addr`.
//!
//! **v1 routes.** `GET|POST /auth/user/access_token`, `POST /jdy/sys/accountGroup`,
//! `POST /jdy/pur/pur_inbound_list` and `POST /jdy/pur/pur_inbound_detail`, with
//! `?access_token=` plus the `accountId`/`groupName` headers and `{"success":…}` answers;
//! a bad token gets HTTP 401 (the real answer is undocumented).
//!
//! **Data.** Bill `i` (1-based) is a pure function of `i` and is modified at
//! `base_time + i * spacing_secs` until [`JdySim::touch`] changes it; only touched and saved
//! bills are stored. Lists are ordered by (modify time, index), and a page costs
//! O(page + stored bills), never O(all bills). Times are Asia/Shanghai wall-clock text.
//! Suppliers are `GYS0001`…`GYS0040`, materials `SP0001`…`SP0012`, warehouses
//! `CK001`…`CK003`, customers `KH0001`…: a save naming anything else is refused.
//!
//! **Quirks kept on purpose.** `page_size` above 100 is silently served as 100 while
//! `total_page` is computed from the size asked for, so a client trusting `total_page` loses
//! rows; `count` is a string; list rows are summaries and only the detail has
//! `material_entity`. Modify-time filters accept `yyyy-MM-dd HH:mm:ss`, `yyyy-MM-dd` or epoch
//! milliseconds (the real format is undocumented) and both bounds are inclusive.
//!
//! **Simulator choices where the vendor is silent.** Refused saves and bad credentials answer
//! errcode [`PARAM_ERRCODE`] / [`AUTH_ERRCODE`]; other gateway refusals (client id, auth
//! version, signed headers, signature, router address) answer HTTP 519 with errcode 519; throttling answers [`JdyThrottle`] (HTTP 429 and errcode 429 by default); a
//! `fail_rate` fault answers HTTP 500 with errcode `2000002000` (系统异常).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::kit::{counters, from_secs, json_reply, mix, naive_at, pick, shanghai_secs, simulator, start_sim, to_secs};
use super::{
    instrument, lock, parse_query, percent_encode, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle,
    Simulator,
};

/// The errcode of a refused save or a malformed parameter (simulator choice).
pub const PARAM_ERRCODE: i64 = 1000;
/// The errcode of bad credentials on the login endpoints (simulator choice).
pub const AUTH_ERRCODE: i64 = 1001;
/// 授权密钥失效: the app-token expired or is unknown (documented by clients).
pub const EXPIRED_ERRCODE: i64 = 1_030_002_006;
/// 系统异常 (documented).
pub const SYSTEM_ERRCODE: i64 = 2_000_002_000;
/// The largest page the list really serves.
pub const PAGE_CAP: u64 = 100;
/// Page size when the request names none.
pub const DEFAULT_PAGE_SIZE: u64 = 10;

const ID_BASE: u64 = 1_710_000_000_000_000_000;
const WALL_CLOCK: &str = "%Y-%m-%d %H:%M:%S";

/// How throttled requests are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JdyThrottle {
    /// HTTP status of the answer (default 429).
    pub status: u16,
    /// `errcode` in the body (default 429).
    pub errcode: i64,
}

impl Default for JdyThrottle {
    fn default() -> Self {
        JdyThrottle {
            status: 429,
            errcode: 429,
        }
    }
}

/// Which envelope `push_app_authorize` answers with (both are seen in the wild).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizeEnvelope {
    /// `{"errcode":0,"description":…,"data":[…]}` (documented).
    #[default]
    ErrcodeDescription,
    /// `{"code":0,"msg":…,"data":[…]}` (observed).
    CodeMsg,
}

/// How the jdy simulator behaves. The default credentials match the reference's §9 vectors
/// where they exist (client secret, appKey `abc` / appSecret `abc123`).
#[derive(Clone, Debug)]
pub struct JdyConfig {
    /// Number of generated bills (default 250).
    pub records: u64,
    /// Bill `i` is modified at `base_time + i * spacing_secs` (default 2024-03-01 08:00:00).
    pub base_time: NaiveDateTime,
    /// Seconds between consecutive bills (default 600; at least 1).
    pub spacing_secs: i64,
    /// Faults at start; change them with [`JdySim::set_faults`].
    pub faults: Faults,
    /// Keep full requests in the log (default true).
    pub record_bodies: bool,
    /// Gateway client id.
    pub client_id: String,
    /// Gateway client secret (HMAC key).
    pub client_secret: String,
    /// The tenant's outerInstanceId.
    pub outer_instance_id: String,
    /// The tenant's appKey, handed out by `push_app_authorize`.
    pub app_key: String,
    /// The tenant's appSecret.
    pub app_secret: String,
    /// The tenant's domain (`X-GW-Router-Addr`).
    pub domain: String,
    /// The tenant's account (账套) id.
    pub account_id: String,
    /// The tenant's group name.
    pub group_name: String,
    /// The tenant's service id.
    pub service_id: String,
    /// Envelope of `push_app_authorize`.
    pub authorize_envelope: AuthorizeEnvelope,
    /// App-token lifetime in seconds (default 86400).
    pub token_ttl_secs: i64,
    /// Largest accepted clock difference of `X-Api-TimeStamp` (default 5 minutes).
    pub timestamp_window_ms: i64,
    /// Answer to throttled requests.
    pub throttle: JdyThrottle,
    /// v1 login user.
    pub v1_username: String,
    /// v1 login password.
    pub v1_password: String,
}

impl Default for JdyConfig {
    fn default() -> Self {
        let base_time = naive_at(2024, 3, 1, 8, 0, 0);
        JdyConfig {
            records: 250,
            base_time,
            spacing_secs: 600,
            faults: Faults::default(),
            record_bodies: true,
            client_id: "225001".to_owned(),
            client_secret: "0123456789abcdef0123456789abcdef".to_owned(),
            outer_instance_id: "sim-instance-0001".to_owned(),
            app_key: "abc".to_owned(),
            app_secret: "abc123".to_owned(),
            domain: "https://tf.jdy.com".to_owned(),
            account_id: "1658412337401567232".to_owned(),
            group_name: "ferry-demo".to_owned(),
            service_id: "9001".to_owned(),
            authorize_envelope: AuthorizeEnvelope::default(),
            token_ttl_secs: 86_400,
            timestamp_window_ms: 300_000,
            throttle: JdyThrottle::default(),
            v1_username: "demo@ferry".to_owned(),
            v1_password: "ferry-pass".to_owned(),
        }
    }
}

/// A jdy simulator; clones share the same state.
#[derive(Clone)]
pub struct JdySim {
    state: Arc<JdyState>,
}

impl std::fmt::Debug for JdySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JdySim")
            .field("records", &self.record_count())
            .field("write_calls", &self.write_calls())
            .finish_non_exhaustive()
    }
}

struct JdyState {
    cfg: JdyConfig,
    lazy: Lazy,
    control: Arc<SimControl>,
    book: Mutex<Book>,
    tokens: Mutex<Tokens>,
    write_calls: AtomicU64,
    list_calls: AtomicU64,
    detail_calls: AtomicU64,
    token_calls: AtomicU64,
}

simulator!(JdySim);

impl JdySim {
    /// Builds the simulator's state; nothing listens until it is served.
    pub fn new(cfg: JdyConfig) -> JdySim {
        let mode = if cfg.record_bodies {
            LogMode::Full
        } else {
            LogMode::CountOnly
        };
        let replies = JdyReplies { throttle: cfg.throttle };
        let control = SimControl::new(cfg.faults.clone(), RequestLog::new(mode), replies);
        let lazy = Lazy {
            records: cfg.records,
            base: to_secs(cfg.base_time),
            spacing: cfg.spacing_secs.max(1),
        };
        let state = JdyState {
            cfg,
            lazy,
            control: Arc::new(control),
            book: Mutex::new(Book::default()),
            tokens: Mutex::new(Tokens::default()),
            write_calls: AtomicU64::new(0),
            list_calls: AtomicU64::new(0),
            detail_calls: AtomicU64::new(0),
            token_calls: AtomicU64::new(0),
        };
        JdySim { state: Arc::new(state) }
    }

    /// Every route, wrapped with the request log and the fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(
                "/jdyconnector/app_management/push_app_authorize",
                post(push_app_authorize),
            )
            .route(
                "/jdyconnector/app_management/kingdee_auth_token",
                get(kingdee_auth_token),
            )
            .route("/jdy/v2/scm/pur_inbound", get(v2_list).post(v2_save))
            .route("/jdy/v2/scm/pur_inbound_detail", get(v2_detail))
            .route("/auth/user/access_token", get(v1_token).post(v1_token))
            .route("/jdy/sys/accountGroup", post(v1_account_groups))
            .route("/jdy/pur/pur_inbound_list", post(v1_list))
            .route("/jdy/pur/pur_inbound_detail", post(v1_detail))
            .fallback(not_found)
            .with_state(Arc::clone(&self.state));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds a simulator and serves it on `listener`.
    pub async fn start(cfg: JdyConfig, listener: tokio::net::TcpListener) -> io::Result<(JdySim, SimHandle)> {
        start_sim(JdySim::new(cfg), JdySim::router, listener).await
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &JdyConfig {
        &self.state.cfg
    }

    /// Changes bill `index` (first line quantity, status, remark) and moves its modify time
    /// to the instant `at`, shown as Asia/Shanghai wall-clock time like every jdy time.
    /// False when there is no such bill.
    pub fn touch(&self, index: u64, at: DateTime<Utc>) -> bool {
        let lazy = self.state.lazy;
        let mut book = lock(&self.state.book);
        if index == 0 || index > lazy.records + book.added {
            return false;
        }
        let secs = shanghai_secs(at);
        let previous = book.stored.get(&index).cloned().unwrap_or_else(|| Stored {
            modified: lazy.modified_of(index),
            created: lazy.created_of(index),
            revision: 0,
            saved: None,
        });
        book.by_time.remove(&(previous.modified, index));
        book.by_time.insert((secs, index));
        if index <= lazy.records {
            book.moved.insert(index);
        }
        let mut next = previous;
        next.modified = secs;
        next.revision += 1;
        if let Some(bill) = next.saved.as_mut() {
            bill.modified = secs;
            bill.remark = format!("{} (修改 {})", bill.remark, next.revision);
        }
        book.stored.insert(index, next);
        true
    }

    /// Invalidates every app-token and v1 access_token: the next business call gets
    /// errcode 1030002006 (v2) or HTTP 401 (v1).
    pub fn expire_tokens(&self) {
        let mut tokens = lock(&self.state.tokens);
        tokens.app_tokens.clear();
        tokens.v1_tokens.clear();
    }

    /// Same as [`JdySim::expire_tokens`].
    pub fn expire_sessions(&self) {
        self.expire_tokens();
    }

    /// Bill `index` as the v2 detail endpoint serves it now.
    pub fn bill(&self, index: u64) -> Option<Value> {
        self.state.bill_by_index(index).map(|bill| bill.v2_detail())
    }

    /// Number of bills, generated plus saved.
    pub fn record_count(&self) -> u64 {
        self.state.lazy.records + lock(&self.state.book).added
    }

    /// Every bill created through the save api, in creation order, as the detail serves it.
    pub fn written(&self) -> Vec<Value> {
        let book = lock(&self.state.book);
        book.written
            .iter()
            .filter_map(|index| book.stored.get(index)?.saved.as_ref().map(|bill| bill.v2_detail()))
            .collect()
    }

    /// The saved (or updated) bill whose `bill_no` is `key`.
    pub fn written_by_key(&self, key: &str) -> Option<Value> {
        let book = lock(&self.state.book);
        let index = book.by_number.get(key)?;
        book.stored.get(index)?.saved.as_ref().map(|bill| bill.v2_detail())
    }

    counters! {
        /// Save requests that reached the handler.
        write_calls,
        /// List requests (v1 and v2) that reached the handler.
        list_calls,
        /// Detail requests (v1 and v2) that reached the handler.
        detail_calls,
        /// Successful token issues (v2 app-token and v1 access_token).
        token_calls,
    }
}

// ---------------------------------------------------------------------------
// Fault answers
// ---------------------------------------------------------------------------

struct JdyReplies {
    throttle: JdyThrottle,
}

impl FaultReplies for JdyReplies {
    fn throttled(&self) -> Response {
        let status = StatusCode::from_u16(self.throttle.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        let body = json!({
            "errcode": self.throttle.errcode,
            "description": "请求过于频繁，请稍后再试 (limit 500 calls/minute/account)",
        });
        json_reply(status, body)
    }

    fn server_error(&self) -> Response {
        let body = json!({"errcode": SYSTEM_ERRCODE, "description": "系统异常"});
        json_reply(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

fn wall_clock(secs: i64) -> String {
    from_secs(secs).format(WALL_CLOCK).to_string()
}

fn day_of(secs: i64) -> String {
    from_secs(secs).format("%Y-%m-%d").to_string()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A modify-time filter value: wall clock, a date, or epoch milliseconds.
fn parse_filter_time(name: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i64 = text.parse().map_err(|_| format!("{name} is out of range: {text}"))?;
        let instant =
            DateTime::from_timestamp_millis(millis).ok_or_else(|| format!("{name} is out of range: {text}"))?;
        return Ok(shanghai_secs(instant));
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(text, WALL_CLOCK) {
        return Ok(to_secs(time));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(to_secs(day.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    Err(format!(
        "{name} must look like 2024-03-01 00:00:00, 2024-03-01 or epoch milliseconds, got '{text}'"
    ))
}

// ---------------------------------------------------------------------------
// The book: lazy bills plus the few stored ones
// ---------------------------------------------------------------------------

/// (modify time in wall-clock seconds, bill index)
type Key = (i64, u64);

#[derive(Clone, Copy, Debug)]
struct Lazy {
    records: u64,
    base: i64,
    spacing: i64,
}

impl Lazy {
    fn modified_of(&self, index: u64) -> i64 {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        self.base.saturating_add(index.saturating_mul(self.spacing))
    }

    fn created_of(&self, index: u64) -> i64 {
        let minutes = i64::try_from(mix(index ^ CREATED_SALT) % 180 + 5).unwrap_or(5);
        self.modified_of(index) - minutes * 60
    }

    /// The first lazy index (in `1..=records + 1`) whose key is not below `key`.
    fn lower_bound(&self, (time, index): Key) -> u64 {
        let offset = i128::from(time) - i128::from(self.base);
        let spacing = i128::from(self.spacing);
        let mut first = (offset + spacing - 1).div_euclid(spacing);
        if offset.rem_euclid(spacing) == 0 && first < i128::from(index) {
            first += 1;
        }
        let end = i128::from(self.records) + 1;
        u64::try_from(first.clamp(1, end)).unwrap_or(1)
    }
}

#[derive(Clone, Debug)]
struct Stored {
    modified: i64,
    created: i64,
    revision: u32,
    /// Bills created or replaced through the save api.
    saved: Option<Box<Bill>>,
}

#[derive(Default)]
struct Book {
    /// Generated indexes now living in `stored`.
    moved: BTreeSet<u64>,
    by_time: BTreeSet<Key>,
    stored: HashMap<u64, Stored>,
    /// Bills appended by saves, after the generated ones.
    added: u64,
    /// Indexes of saved bills, in creation order.
    written: Vec<u64>,
    /// bill_no → index, for saved and updated bills.
    by_number: HashMap<String, u64>,
}

impl Book {
    /// One page of the bills with `from <= modified <= to`: (total, indexes).
    fn page(&self, lazy: Lazy, from: Option<i64>, to: Option<i64>, offset: u64, limit: u64) -> (u64, Vec<u64>) {
        if matches!((from, to), (Some(from), Some(to)) if from > to) {
            return (0, Vec::new());
        }
        let lo = from.map_or(1, |from| lazy.lower_bound((from, 0)));
        let hi = to
            .map_or(lazy.records + 1, |to| lazy.lower_bound((to.saturating_add(1), 0)))
            .max(lo);
        let moved: Vec<u64> = self.moved.range(lo..hi).copied().collect();
        let lower = from.map_or(std::ops::Bound::Unbounded, |from| std::ops::Bound::Included((from, 0)));
        let upper = to.map_or(std::ops::Bound::Unbounded, |to| {
            std::ops::Bound::Included((to, u64::MAX))
        });
        let stored: Vec<Key> = self.by_time.range((lower, upper)).copied().collect();
        let total = (hi - lo) - moved.len() as u64 + stored.len() as u64;
        let moved_before = |bound: u64| moved.partition_point(|&m| m < bound);

        let mut out = Vec::new();
        let (mut position, mut next_lazy, mut next_stored) = (0u64, lo, 0usize);
        while (out.len() as u64) < limit {
            let bound = stored
                .get(next_stored)
                .map_or(hi, |&key| lazy.lower_bound(key).clamp(lo, hi))
                .max(next_lazy);
            let untouched = (bound - next_lazy) - (moved_before(bound) - moved_before(next_lazy)) as u64;
            if position + untouched <= offset {
                position += untouched;
                next_lazy = bound;
            } else {
                // Skip the untouched bills still before `offset`, then emit.
                let mut skip = offset.saturating_sub(position);
                while skip > 0 {
                    let end = next_lazy + skip;
                    let hidden = (moved_before(end) - moved_before(next_lazy)) as u64;
                    position += skip - hidden;
                    next_lazy = end;
                    skip = hidden;
                }
                while next_lazy < bound && (out.len() as u64) < limit {
                    if moved.binary_search(&next_lazy).is_err() {
                        out.push(next_lazy);
                        position += 1;
                    }
                    next_lazy += 1;
                }
                if (out.len() as u64) >= limit {
                    break;
                }
            }
            let Some(&(_, index)) = stored.get(next_stored) else {
                break;
            };
            if position >= offset {
                out.push(index);
            }
            position += 1;
            next_stored += 1;
        }
        (total, out)
    }
}

// ---------------------------------------------------------------------------
// Master data and bill generation
// ---------------------------------------------------------------------------

const CREATED_SALT: u64 = 0x6372_6561_7465_6421;
const PARTY_SALT: u64 = 0x7061_7274_7921_2121;
const LINE_SALT: u64 = 0x6c69_6e65_7321_2121;

const SUPPLIERS: u64 = 40;
const CUSTOMERS: u64 = 60;
const CITIES: &[&str] = &[
    "杭州", "宁波", "苏州", "无锡", "佛山", "东莞", "义乌", "温州", "泉州", "青岛",
];
const BRAND_FIRST: &[&str] = &["恒", "鑫", "华", "永", "宏", "瑞", "嘉", "盛", "诚", "达"];
const BRAND_SECOND: &[&str] = &["源", "泰", "丰", "昌", "信", "通", "利", "兴", "茂", "隆"];
const TRADES: &[&str] = &["五金", "塑胶", "纸业", "电子", "日用品", "包装", "文具", "家居用品"];
const FORMS: &[&str] = &["有限公司", "有限公司", "有限责任公司", "制品厂"];
const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"];
const GIVEN: &[&str] = &["伟", "芳", "敏", "静", "磊", "军", "洋", "艳", "杰", "娟", "涛", "明"];
const REGIONS: &[(&str, &str, &str, &str)] = &[
    ("浙江省", "杭州市", "西湖区", "文三路"),
    ("上海市", "上海市", "浦东新区", "张江路"),
    ("广东省", "深圳市", "南山区", "科技园路"),
    ("江苏省", "苏州市", "工业园区", "星湖街"),
    ("北京市", "北京市", "朝阳区", "建国路"),
    ("四川省", "成都市", "武侯区", "天府大道"),
];
/// (name, model, unit, price in cents)
const MATERIALS: &[(&str, &str, &str, u64)] = &[
    ("不锈钢保温杯", "500ml", "个", 3990),
    ("无线鼠标", "M220", "个", 5900),
    ("机械键盘", "87键", "把", 19900),
    ("A4复印纸", "70g 500张/包", "包", 2450),
    ("中性笔", "0.5mm 黑色 12支", "盒", 1800),
    ("LED护眼台灯", "T6", "台", 12900),
    ("数据线", "Type-C 1m", "条", 1500),
    ("收纳箱", "56L", "个", 4500),
    ("洗手液", "500ml", "瓶", 1290),
    ("抽纸", "3层120抽", "提", 2590),
    ("保温饭盒", "1.2L", "个", 6900),
    ("蓝牙耳机", "TWS-X3", "副", 15900),
];
const STOCKS: &[(&str, &str)] = &[("总仓", "CK001"), ("杭州仓", "CK002"), ("上海仓", "CK003")];
const EMPLOYEES: &[&str] = &["王建国", "李秀英", "张伟", "刘洋", "陈静", "杨磊"];
const PAY_TYPES: &[&str] = &["银行转账", "现金", "月结30天"];

/// A master-data reference: id, name and number.
#[derive(Clone, Debug, Default, PartialEq)]
struct Party {
    id: String,
    name: String,
    number: String,
}

impl Party {
    fn new(id: String, name: impl Into<String>, number: String) -> Party {
        Party {
            id,
            name: name.into(),
            number,
        }
    }
}

fn company_name(n: u64, salt: u64) -> String {
    let hash = mix(n ^ salt);
    [
        pick(CITIES, hash),
        pick(BRAND_FIRST, hash >> 8),
        pick(BRAND_SECOND, hash >> 16),
        pick(TRADES, hash >> 24),
        pick(FORMS, hash >> 32),
    ]
    .concat()
}

fn supplier(n: u64) -> Party {
    Party::new(
        format!("16200000000000{n:05}"),
        company_name(n, PARTY_SALT),
        format!("GYS{n:04}"),
    )
}

fn customer(n: u64) -> Party {
    let hash = mix(n ^ PARTY_SALT ^ 0xc0ffee);
    let name = if hash.is_multiple_of(3) {
        format!(
            "{}{}{}",
            pick(SURNAMES, hash >> 4),
            pick(GIVEN, hash >> 12),
            pick(GIVEN, hash >> 20)
        )
    } else {
        company_name(n, PARTY_SALT ^ 0x5eed)
    };
    Party::new(format!("16300000000000{n:05}"), name, format!("KH{n:04}"))
}

fn material(n: u64) -> Party {
    let slot = (n - 1) as usize % MATERIALS.len();
    Party::new(format!("16400000000000{n:05}"), MATERIALS[slot].0, format!("SP{n:04}"))
}

fn stock(n: u64) -> Party {
    let slot = (n - 1) as usize % STOCKS.len();
    Party::new(
        format!("16500000000000{n:05}"),
        STOCKS[slot].0,
        STOCKS[slot].1.to_owned(),
    )
}

fn employee(n: u64) -> Party {
    let slot = (n - 1) as usize % EMPLOYEES.len();
    Party::new(format!("16600000000000{n:05}"), EMPLOYEES[slot], format!("ZY{n:03}"))
}

fn unit_of(material_no: u64) -> Party {
    let slot = (material_no - 1) as usize % MATERIALS.len();
    Party::new(
        format!("167000000000000{:04}", slot + 1),
        MATERIALS[slot].2,
        format!("DW{:02}", slot + 1),
    )
}

/// Finds master data by id or number among `count` entries.
fn find_party(make: fn(u64) -> Party, count: u64, id: Option<&str>, number: Option<&str>) -> Option<(u64, Party)> {
    (1..=count)
        .map(|n| (n, make(n)))
        .find(|(_, party)| id.is_some_and(|id| party.id == id) || number.is_some_and(|number| party.number == number))
}

#[derive(Clone, Debug)]
struct Line {
    seq: u32,
    id: String,
    material: Party,
    model: String,
    stock: Party,
    unit: Party,
    qty: f64,
    price: f64,
    cess: f64,
    batch_no: String,
    comment: String,
}

impl Line {
    fn amount(&self) -> f64 {
        round2(self.qty * self.price)
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Everything a purchase inbound bill shows.
#[derive(Clone, Debug)]
struct Bill {
    id: String,
    bill_no: String,
    bill_date: String,
    status: String,
    created: i64,
    modified: i64,
    audited: Option<i64>,
    creator: Party,
    remark: String,
    dept: Party,
    emp: Party,
    customer: Party,
    supplier: Party,
    phone: String,
    region: (String, String, String),
    address: String,
    pay_type: Party,
    pay_account: Party,
    lines: Vec<Line>,
}

fn bill_id(index: u64) -> String {
    (ID_BASE + index).to_string()
}

fn index_of_id(id: &str) -> Option<u64> {
    id.trim()
        .parse::<u64>()
        .ok()?
        .checked_sub(ID_BASE)
        .filter(|&index| index > 0)
}

fn generated_bill(index: u64, modified: i64, created: i64, revision: u32) -> Bill {
    let hash = mix(index);
    let revision_step = u64::from(revision);
    let supplier_no = 1 + hash % SUPPLIERS;
    let customer_no = 1 + (hash >> 8) % CUSTOMERS;
    let emp_no = 1 + (hash >> 16) % EMPLOYEES.len() as u64;
    let region = pick(REGIONS, hash >> 24);
    let line_count = 1 + (hash >> 32) % 3;
    let lines = (0..line_count)
        .map(|slot| {
            let line_hash = mix(index.wrapping_mul(4).wrapping_add(slot) ^ LINE_SALT);
            let material_no = 1 + line_hash % MATERIALS.len() as u64;
            let base_qty = 1 + (line_hash >> 16) % 20;
            let qty = if slot == 0 { base_qty + revision_step } else { base_qty };
            let seq = u32::try_from(slot + 1).unwrap_or(1);
            Line {
                seq,
                id: format!("{}{seq:02}", bill_id(index)),
                material: material(material_no),
                model: MATERIALS[(material_no - 1) as usize].1.to_owned(),
                stock: stock(1 + (line_hash >> 24) % STOCKS.len() as u64),
                unit: unit_of(material_no),
                qty: qty as f64,
                price: MATERIALS[(material_no - 1) as usize].3 as f64 / 100.0,
                cess: 13.0,
                batch_no: if (line_hash >> 40).is_multiple_of(4) {
                    format!("PC{}", day_of(created).replace('-', ""))
                } else {
                    String::new()
                },
                comment: String::new(),
            }
        })
        .collect();
    let audited = pick(&[true, true, false], (hash >> 40) + revision_step);
    let date = day_of(created);
    Bill {
        id: bill_id(index),
        bill_no: format!("CGRK-{}-{index:04}", date.replace('-', "")),
        bill_date: date,
        status: if audited { "C" } else { "Z" }.to_owned(),
        created,
        modified,
        audited: audited.then_some(modified),
        creator: employee(emp_no),
        remark: if revision == 0 {
            String::new()
        } else {
            format!("第{revision}次修改")
        },
        dept: Party::new("1680000000000000001".to_owned(), "采购部", "BM01".to_owned()),
        emp: employee(emp_no),
        customer: customer(customer_no),
        supplier: supplier(supplier_no),
        phone: format!("13{:09}", mix(customer_no ^ PARTY_SALT) % 1_000_000_000),
        region: (region.0.to_owned(), region.1.to_owned(), region.2.to_owned()),
        address: format!("{}{}{}{}号", region.1, region.2, region.3, 1 + (hash >> 48) % 300),
        pay_type: Party::new(
            "1690000000000000001".to_owned(),
            pick(PAY_TYPES, hash >> 52),
            "FKFS01".to_owned(),
        ),
        pay_account: Party::new("1690000000000000101".to_owned(), "招商银行基本户", "ZH01".to_owned()),
        lines,
    }
}

fn put_party(map: &mut Map<String, Value>, prefix: &str, party: &Party) {
    map.insert(format!("{prefix}_id"), json!(party.id));
    map.insert(format!("{prefix}_name"), json!(party.name));
    map.insert(format!("{prefix}_number"), json!(party.number));
}

impl Bill {
    fn total(&self) -> f64 {
        round2(self.lines.iter().map(Line::amount).sum())
    }

    fn audit_time(&self) -> String {
        self.audited.map(wall_clock).unwrap_or_default()
    }

    /// A v2 list row (summary, no lines).
    fn v2_summary(&self) -> Value {
        let mut row = Map::new();
        row.insert("id".into(), json!(self.id));
        row.insert("bill_no".into(), json!(self.bill_no));
        row.insert("bill_date".into(), json!(self.bill_date));
        row.insert("bill_status".into(), json!(self.status));
        row.insert("bill_close_state".into(), json!("0"));
        row.insert("create_time".into(), json!(wall_clock(self.created)));
        row.insert("modify_time".into(), json!(wall_clock(self.modified)));
        put_party(&mut row, "supplier", &self.supplier);
        put_party(&mut row, "emp", &self.emp);
        row.insert("total_amount".into(), json!(self.total()));
        row.insert("remark".into(), json!(self.remark));
        Value::Object(row)
    }

    /// The v2 detail (`pur_inbound_detail`).
    fn v2_detail(&self) -> Value {
        let total = self.total();
        let mut bill = Map::new();
        bill.insert("id".into(), json!(self.id));
        bill.insert("bill_no".into(), json!(self.bill_no));
        bill.insert("bill_date".into(), json!(self.bill_date));
        bill.insert("bill_status".into(), json!(self.status));
        bill.insert("create_time".into(), json!(wall_clock(self.created)));
        bill.insert("modify_time".into(), json!(wall_clock(self.modified)));
        bill.insert("audit_time".into(), json!(self.audit_time()));
        put_party(&mut bill, "creator", &self.creator);
        put_party(&mut bill, "modifier", &self.creator);
        let auditor = if self.audited.is_some() {
            self.creator.clone()
        } else {
            Party::default()
        };
        put_party(&mut bill, "auditor", &auditor);
        bill.insert("trans_type".into(), json!("2"));
        bill.insert("remark".into(), json!(self.remark));
        put_party(&mut bill, "dept", &self.dept);
        put_party(&mut bill, "emp", &self.emp);
        put_party(&mut bill, "customer", &self.customer);
        put_party(&mut bill, "supplier", &self.supplier);
        bill.insert("contact_phone".into(), json!(self.phone));
        let country = Party::new("1".into(), "中国", "CN".into());
        put_party(&mut bill, "contact_country", &country);
        let (province, city, district) = &self.region;
        put_party(
            &mut bill,
            "contact_province",
            &Party::new(format!("P-{province}"), province.clone(), province.clone()),
        );
        put_party(
            &mut bill,
            "contact_city",
            &Party::new(format!("C-{city}"), city.clone(), city.clone()),
        );
        put_party(
            &mut bill,
            "contact_district",
            &Party::new(format!("D-{district}"), district.clone(), district.clone()),
        );
        bill.insert("contact_address".into(), json!(self.address));
        bill.insert("total_unsettle_amount".into(), json!(total));
        bill.insert("total_unsettle_amount_for".into(), json!(total));
        bill.insert("exchange_rate".into(), json!(1.0));
        bill.insert("settle_status".into(), json!("0"));
        bill.insert("all_debt".into(), json!(total));
        bill.insert("last_debt".into(), json!(0.0));
        bill.insert("total_amount".into(), json!(total));
        put_party(&mut bill, "edit_pay_type", &self.pay_type);
        bill.insert("total_pre_amount".into(), json!(0.0));
        bill.insert("bill_dis_amount".into(), json!(0.0));
        put_party(&mut bill, "edit_pay_account", &self.pay_account);
        bill.insert("bill_dis_rate".into(), json!(0.0));
        bill.insert("total_ins_amount".into(), json!(0.0));
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|line| {
                let mut row = Map::new();
                row.insert("seq".into(), json!(line.seq));
                row.insert("id".into(), json!(line.id));
                put_party(&mut row, "material", &line.material);
                row.insert("material_model".into(), json!(line.model));
                row.insert("material_is_batch".into(), json!(!line.batch_no.is_empty()));
                row.insert("material_is_serial".into(), json!(false));
                row.insert("material_is_multi_unit".into(), json!(false));
                put_party(&mut row, "stock", &line.stock);
                put_party(&mut row, "base_unit", &line.unit);
                put_party(&mut row, "unit", &line.unit);
                row.insert("batch_no".into(), json!(line.batch_no));
                row.insert("qty".into(), json!(line.qty));
                row.insert("base_qty".into(), json!(line.qty));
                row.insert("price".into(), json!(line.price));
                row.insert(
                    "tax_price".into(),
                    json!(round2(line.price * (1.0 + line.cess / 100.0))),
                );
                row.insert("dis_rate".into(), json!(0.0));
                row.insert("cess".into(), json!(line.cess));
                row.insert("all_amount".into(), json!(line.amount()));
                row.insert("cost_view".into(), json!(line.amount()));
                row.insert("unit_cost_view".into(), json!(line.price));
                row.insert("comment".into(), json!(line.comment));
                row.insert("src_bill_no".into(), json!(""));
                Value::Object(row)
            })
            .collect();
        bill.insert("material_entity".into(), Value::Array(lines));
        bill.insert("custom_field".into(), json!({}));
        Value::Object(bill)
    }

    /// The v1 record (list and detail alike): run-together names, string values.
    fn v1_record(&self) -> Value {
        let text = |value: f64| format!("{value:.2}");
        let mut bill = Map::new();
        let party = put_party;
        bill.insert("id".into(), json!(self.id));
        bill.insert("billno".into(), json!(self.bill_no));
        bill.insert("billdate".into(), json!(self.bill_date));
        bill.insert("billstatus".into(), json!(self.status));
        bill.insert("createtime".into(), json!(wall_clock(self.created)));
        bill.insert("modifytime".into(), json!(wall_clock(self.modified)));
        bill.insert("audittime".into(), json!(self.audit_time()));
        party(&mut bill, "creatorid", &self.creator);
        party(&mut bill, "modifierid", &self.creator);
        let auditor = if self.audited.is_some() {
            self.creator.clone()
        } else {
            Party::default()
        };
        party(&mut bill, "auditorid", &auditor);
        bill.insert("transtype".into(), json!("2"));
        bill.insert("remark".into(), json!(self.remark));
        party(&mut bill, "deptid", &self.dept);
        party(&mut bill, "empid", &self.emp);
        party(&mut bill, "customerid", &self.customer);
        party(&mut bill, "supplierid", &self.supplier);
        bill.insert("contact_phone".into(), json!(self.phone));
        party(
            &mut bill,
            "contact_country",
            &Party::new("1".into(), "中国", "CN".into()),
        );
        let (province, city, district) = &self.region;
        party(
            &mut bill,
            "contact_province",
            &Party::new(format!("P-{province}"), province.clone(), province.clone()),
        );
        party(
            &mut bill,
            "contact_city",
            &Party::new(format!("C-{city}"), city.clone(), city.clone()),
        );
        party(
            &mut bill,
            "contact_district",
            &Party::new(format!("D-{district}"), district.clone(), district.clone()),
        );
        bill.insert("contact_address".into(), json!(self.address));
        let total = text(self.total());
        bill.insert("totalunsettleamount".into(), json!(total));
        bill.insert("totalunsettleamountfor".into(), json!(total));
        bill.insert("exchangerate".into(), json!("1"));
        bill.insert("settlestatus".into(), json!("0"));
        bill.insert("alldebt".into(), json!(total));
        bill.insert("lastdebt".into(), json!("0.00"));
        bill.insert("totalamount".into(), json!(total));
        party(&mut bill, "edit_pay_type", &self.pay_type);
        bill.insert("totalpreamount".into(), json!("0.00"));
        bill.insert("bill_dis_amount".into(), json!("0.00"));
        party(&mut bill, "edit_pay_account", &self.pay_account);
        bill.insert("bill_dis_rate".into(), json!("0"));
        bill.insert("totalinsamount".into(), json!("0.00"));
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|line| {
                let mut row = Map::new();
                row.insert("seq".into(), json!(line.seq.to_string()));
                row.insert("id".into(), json!(line.id));
                party(&mut row, "materialid", &line.material);
                row.insert("materialid_model".into(), json!(line.model));
                row.insert(
                    "materialid_isbatch".into(),
                    json!(if line.batch_no.is_empty() { "0" } else { "1" }),
                );
                party(&mut row, "stockid", &line.stock);
                party(&mut row, "baseunit", &line.unit);
                party(&mut row, "unit", &line.unit);
                row.insert("batchno".into(), json!(line.batch_no));
                row.insert("qty".into(), json!(text(line.qty)));
                row.insert("baseqty".into(), json!(text(line.qty)));
                row.insert("price".into(), json!(text(line.price)));
                row.insert("disrate".into(), json!("0"));
                row.insert("cess".into(), json!(text(line.cess)));
                row.insert("cost_view".into(), json!(text(line.amount())));
                row.insert("unitcost_view".into(), json!(text(line.price)));
                row.insert("comment".into(), json!(line.comment));
                Value::Object(row)
            })
            .collect();
        bill.insert("material_entity".into(), Value::Array(lines));
        Value::Object(bill)
    }
}

impl JdyState {
    fn stored_or_lazy(&self, book: &Book, index: u64) -> Option<Bill> {
        if index == 0 || index > self.lazy.records + book.added {
            return None;
        }
        Some(match book.stored.get(&index) {
            Some(Stored { saved: Some(bill), .. }) => (**bill).clone(),
            Some(stored) => generated_bill(index, stored.modified, stored.created, stored.revision),
            None => generated_bill(index, self.lazy.modified_of(index), self.lazy.created_of(index), 0),
        })
    }

    fn bill_by_index(&self, index: u64) -> Option<Bill> {
        let book = lock(&self.book);
        self.stored_or_lazy(&book, index)
    }

    fn bill_by_number(&self, number: &str) -> Option<Bill> {
        let book = lock(&self.book);
        if let Some(&index) = book.by_number.get(number) {
            return self.stored_or_lazy(&book, index);
        }
        let digits = number.rsplit('-').next()?;
        let index: u64 = digits.parse().ok()?;
        self.stored_or_lazy(&book, index).filter(|bill| bill.bill_no == number)
    }

    /// A page of bills modified in `[from, to]`, optionally only the one numbered `bill_no`.
    fn list(&self, filter: &ListFilter, offset: u64, limit: u64) -> (u64, Vec<Bill>) {
        if let Some(number) = &filter.bill_no {
            let found: Vec<Bill> = self
                .bill_by_number(number)
                .filter(|bill| filter.contains(bill.modified))
                .into_iter()
                .collect();
            let total = found.len() as u64;
            let page = found
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .collect();
            return (total, page);
        }
        let book = lock(&self.book);
        let (total, indexes) = book.page(self.lazy, filter.from, filter.to, offset, limit);
        let bills = indexes
            .into_iter()
            .filter_map(|index| self.stored_or_lazy(&book, index))
            .collect();
        (total, bills)
    }
}

#[derive(Debug, Default)]
struct ListFilter {
    from: Option<i64>,
    to: Option<i64>,
    bill_no: Option<String>,
}

impl ListFilter {
    fn contains(&self, modified: i64) -> bool {
        self.from.is_none_or(|from| modified >= from) && self.to.is_none_or(|to| modified <= to)
    }
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

fn envelope(errcode: i64, description: &str, data: Value) -> Response {
    Json(json!({"errcode": errcode, "description": description, "data": data})).into_response()
}

fn refuse(errcode: i64, description: impl Into<String>) -> Response {
    let description = description.into();
    Json(json!({"errcode": errcode, "description": description, "description_cn": description})).into_response()
}

fn gateway_refusal(description: impl Into<String>) -> Response {
    gateway_error(519, &description.into(), None)
}

/// A refusal of the api.kingdee.com gateway: HTTP 519 with `errcode`, `description` and
/// (for the codes the probes recorded) `description_cn` (reference §2 step 7, §3 envelope).
fn gateway_error(errcode: i64, description: &str, description_cn: Option<&str>) -> Response {
    let status = StatusCode::from_u16(519).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut body = json!({"errcode": errcode, "description": description});
    if let Some(text) = description_cn {
        body["description_cn"] = json!(text);
    }
    (status, Json(body)).into_response()
}

fn v1_refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"success": false, "msg": message.into()}))).into_response()
}

/// An unknown path: the gateway's HTTP 519 errcode 5001 "API not found" (reference §2
/// step 7; jdy sits behind the same api.kingdee.com gateway, §3).
async fn not_found(uri: Uri) -> Response {
    gateway_error(5001, "API not found", Some(&format!("接口不存在: {}", uri.path())))
}

// ---------------------------------------------------------------------------
// Gateway verification (the simulator's own implementation of the algorithm)
// ---------------------------------------------------------------------------

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn hmac_hex_base64(key: &str, message: &str) -> String {
    use base64::Engine as _;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hex::encode(mac.finalize().into_bytes()))
}

/// What the gateway signs for a request it received.
fn canonical_text(method: &Method, uri: &Uri, nonce: &str, timestamp: &str) -> String {
    let mut pairs = parse_query(uri.query().unwrap_or_default());
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{}={}",
                percent_encode(&percent_encode(key)),
                percent_encode(&percent_encode(value))
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}\n{}\n{query}\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n",
        method.as_str(),
        percent_encode(uri.path()),
    )
}

impl JdyState {
    fn verify_gateway(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let client = header(headers, "x-api-clientid").unwrap_or_default();
        if client != self.cfg.client_id {
            return Err(Box::new(gateway_refusal(format!("X-Api-ClientID '{client}' 无效"))));
        }
        if header(headers, "x-api-auth-version") != Some("2.0") {
            return Err(Box::new(gateway_refusal("X-Api-Auth-Version 必须为 2.0")));
        }
        let signed = header(headers, "x-api-signheaders")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !(signed.contains("x-api-timestamp") && signed.contains("x-api-nonce")) {
            return Err(Box::new(gateway_refusal(
                "X-Api-SignHeaders 必须包含 X-Api-TimeStamp,X-Api-Nonce",
            )));
        }
        let (Some(timestamp), Some(nonce)) = (header(headers, "x-api-timestamp"), header(headers, "x-api-nonce"))
        else {
            return Err(Box::new(gateway_refusal("缺少 X-Api-TimeStamp 或 X-Api-Nonce")));
        };
        let Ok(sent_ms) = timestamp.parse::<i64>() else {
            return Err(Box::new(gateway_error(
                4006,
                "Unauthorized, the request header X-Api-TimeStamp is invalid or expired",
                Some("X-Api-TimeStamp 必须是毫秒时间戳"),
            )));
        };
        if (now_ms() - sent_ms).abs() > self.cfg.timestamp_window_ms {
            // The gateway's stale-timestamp answer (reference §2 step 7, the same gateway).
            return Err(Box::new(gateway_error(
                4006,
                "Unauthorized, the request header X-Api-TimeStamp is invalid or expired",
                Some(&format!(
                    "请求头X-Api-TimeStamp {timestamp} 无效或已过期 (允许误差 {} 毫秒)",
                    self.cfg.timestamp_window_ms
                )),
            )));
        }
        let expected = hmac_hex_base64(&self.cfg.client_secret, &canonical_text(method, uri, nonce, timestamp));
        if header(headers, "x-api-signature") != Some(expected.as_str()) {
            return Err(Box::new(gateway_refusal("X-Api-Signature 签名校验失败")));
        }
        Ok(())
    }

    /// Gateway signature plus a live app-token and the tenant's router address.
    fn verify_business(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Box<Response>> {
        self.verify_gateway(method, uri, headers)?;
        let token = header(headers, "app-token").unwrap_or_default();
        let live = lock(&self.tokens)
            .app_tokens
            .get(token)
            .is_some_and(|&expires| expires > now_ms());
        if !live {
            return Err(Box::new(refuse(EXPIRED_ERRCODE, "授权密钥失效")));
        }
        if header(headers, "x-gw-router-addr") != Some(self.cfg.domain.as_str()) {
            return Err(Box::new(gateway_refusal("X-GW-Router-Addr 缺失或与授权域名不符")));
        }
        Ok(())
    }

    fn verify_v1(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let token = parse_query(uri.query().unwrap_or_default())
            .into_iter()
            .find(|(key, _)| key == "access_token")
            .map(|(_, value)| value)
            .unwrap_or_default();
        if !lock(&self.tokens).v1_tokens.contains(&token) {
            return Err(Box::new(v1_refuse(
                StatusCode::UNAUTHORIZED,
                "access_token 无效或已过期",
            )));
        }
        if header(headers, "accountid") != Some(self.cfg.account_id.as_str())
            || header(headers, "groupname") != Some(self.cfg.group_name.as_str())
        {
            return Err(Box::new(v1_refuse(StatusCode::OK, "accountId 或 groupName 无效")));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tokens {
    /// app-token → expiry (ms epoch).
    app_tokens: HashMap<String, i64>,
    v1_tokens: BTreeSet<String>,
    issued: u64,
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    parse_query(uri.query().unwrap_or_default()).into_iter().collect()
}

// ---------------------------------------------------------------------------
// v2 login
// ---------------------------------------------------------------------------

async fn push_app_authorize(
    State(state): State<Arc<JdyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = state.verify_gateway(&method, &uri, &headers) {
        return *refusal;
    }
    let cfg = &state.cfg;
    let instance = query_map(&uri).remove("outerInstanceId").unwrap_or_default();
    let (ok, data) = if instance == cfg.outer_instance_id {
        let item = json!({
            "appKey": cfg.app_key, "appSecret": cfg.app_secret, "domain": cfg.domain,
            "groupName": cfg.group_name, "accountId": cfg.account_id,
            "serviceId": cfg.service_id, "status": 1
        });
        (true, json!([item]))
    } else {
        (false, Value::Null)
    };
    let body = match (cfg.authorize_envelope, ok) {
        (AuthorizeEnvelope::ErrcodeDescription, true) => json!({"errcode": 0, "description": "成功", "data": data}),
        (AuthorizeEnvelope::CodeMsg, true) => json!({"code": 0, "msg": "success", "data": data}),
        (AuthorizeEnvelope::ErrcodeDescription, false) => {
            json!({"errcode": AUTH_ERRCODE, "description": format!("outerInstanceId {instance} 未授权")})
        }
        (AuthorizeEnvelope::CodeMsg, false) => {
            json!({"code": AUTH_ERRCODE, "msg": format!("outerInstanceId {instance} 未授权")})
        }
    };
    Json(body).into_response()
}

async fn kingdee_auth_token(
    State(state): State<Arc<JdyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = state.verify_gateway(&method, &uri, &headers) {
        return *refusal;
    }
    let cfg = &state.cfg;
    let params = query_map(&uri);
    let app_key = params.get("app_key").map(String::as_str).unwrap_or_default();
    let signature = params.get("app_signature").map(String::as_str).unwrap_or_default();
    if app_key != cfg.app_key || signature != hmac_hex_base64(&cfg.app_secret, &cfg.app_key) {
        return refuse(AUTH_ERRCODE, "授权密钥校验失败，请获取最新密钥加密");
    }
    let mut tokens = lock(&state.tokens);
    tokens.issued += 1;
    let token = format!("sim-app-token-{:016x}", mix(tokens.issued ^ 0x7070));
    let expires = now_ms() + cfg.token_ttl_secs.saturating_mul(1000);
    tokens.app_tokens.insert(token.clone(), expires);
    let access = format!(
        "{:032x}",
        u128::from(mix(tokens.issued)) << 64 | u128::from(mix(!tokens.issued))
    );
    drop(tokens);
    state.token_calls.fetch_add(1, Ordering::Relaxed);
    envelope(
        0,
        "成功",
        json!({"access_token": access, "app-token": token, "expires": expires, "uid": 173_053_163}),
    )
}

// ---------------------------------------------------------------------------
// v2 business
// ---------------------------------------------------------------------------

fn count_param(params: &BTreeMap<String, String>, name: &str, default: u64) -> Result<u64, String> {
    match params.get(name).map(|text| text.trim()).filter(|text| !text.is_empty()) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("{name} 必须是正整数, got '{text}'")),
            Ok(value) => Ok(value),
        },
    }
}

fn filter_from(params: &BTreeMap<String, String>, from: &str, to: &str) -> Result<ListFilter, String> {
    let time = |name: &str| {
        params
            .get(name)
            .filter(|text| !text.trim().is_empty())
            .map(|text| parse_filter_time(name, text))
            .transpose()
    };
    Ok(ListFilter {
        from: time(from)?,
        to: time(to)?,
        bill_no: params.get("bill_no").filter(|no| !no.is_empty()).cloned(),
    })
}

async fn v2_list(State(state): State<Arc<JdyState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(refusal) = state.verify_business(&method, &uri, &headers) {
        return *refusal;
    }
    state.list_calls.fetch_add(1, Ordering::Relaxed);
    let params = query_map(&uri);
    let parsed = (|| -> Result<(u64, u64, ListFilter), String> {
        let page = count_param(&params, "page", 1)?;
        let size = count_param(&params, "page_size", DEFAULT_PAGE_SIZE)?;
        Ok((
            page,
            size,
            filter_from(&params, "modify_start_time", "modify_end_time")?,
        ))
    })();
    let (page, requested, filter) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return refuse(PARAM_ERRCODE, message),
    };
    // The quirk: serve at most PAGE_CAP rows, but count pages by the size asked for.
    let served = requested.min(PAGE_CAP);
    let (total, bills) = state.list(&filter, (page - 1).saturating_mul(served), served);
    let rows: Vec<Value> = bills.iter().map(Bill::v2_summary).collect();
    envelope(
        0,
        "success",
        json!({
            "count": total.to_string(),
            "current_page": page,
            "current_page_size": rows.len(),
            "page": page,
            "page_size": requested,
            "total_page": total.div_ceil(requested),
            "rows": rows,
        }),
    )
}

async fn v2_detail(State(state): State<Arc<JdyState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(refusal) = state.verify_business(&method, &uri, &headers) {
        return *refusal;
    }
    state.detail_calls.fetch_add(1, Ordering::Relaxed);
    let params = query_map(&uri);
    let found = match (params.get("id"), params.get("number")) {
        (Some(id), _) if !id.is_empty() => index_of_id(id).and_then(|index| state.bill_by_index(index)),
        (_, Some(number)) if !number.is_empty() => state.bill_by_number(number),
        _ => return refuse(PARAM_ERRCODE, "id 与 number 必须二选一"),
    };
    match found {
        Some(bill) => envelope(0, "success", bill.v2_detail()),
        None => refuse(PARAM_ERRCODE, "单据不存在"),
    }
}

fn text_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

fn number_field(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Validates one posted bill and turns it into a [`Bill`] (id and times filled by the caller).
fn bill_from_post(body: &Value, now: i64) -> Result<Bill, String> {
    if !body.is_object() {
        return Err("请求体必须是一个单据对象".to_owned());
    }
    let (_, supplier) = find_party(
        supplier,
        SUPPLIERS,
        text_field(body, "supplier_id"),
        text_field(body, "supplier_number"),
    )
    .ok_or_else(
        || match (text_field(body, "supplier_id"), text_field(body, "supplier_number")) {
            (None, None) => "供应商不能为空 (supplier_id 或 supplier_number)".to_owned(),
            (id, number) => format!("供应商不存在: {}", id.or(number).unwrap_or_default()),
        },
    )?;
    let customer = find_party(
        customer,
        CUSTOMERS,
        text_field(body, "customer_id"),
        text_field(body, "customer_number"),
    )
    .map(|(_, party)| party)
    .unwrap_or_default();
    let emp = find_party(
        employee,
        EMPLOYEES.len() as u64,
        text_field(body, "emp_id"),
        text_field(body, "emp_number"),
    )
    .map(|(_, party)| party)
    .unwrap_or_default();
    let entries = body
        .get("material_entity")
        .and_then(Value::as_array)
        .filter(|entries| !entries.is_empty())
        .ok_or_else(|| "商品分录不能为空 (material_entity)".to_owned())?;
    let mut lines = Vec::with_capacity(entries.len());
    for (slot, entry) in entries.iter().enumerate() {
        let row = slot + 1;
        let (material_no, material) = find_party(
            material,
            MATERIALS.len() as u64,
            text_field(entry, "material_id"),
            text_field(entry, "material_number"),
        )
        .ok_or_else(|| format!("第{row}行商品不存在或为空 (material_id / material_number)"))?;
        let qty = number_field(entry.get("qty")).ok_or_else(|| format!("第{row}行数量 qty 不能为空"))?;
        if qty.is_nan() || qty <= 0.0 {
            return Err(format!("第{row}行数量必须大于0, got {qty}"));
        }
        let default_price = MATERIALS[(material_no - 1) as usize].3 as f64 / 100.0;
        let price = number_field(entry.get("price")).unwrap_or(default_price);
        if price < 0.0 {
            return Err(format!("第{row}行单价不能为负数"));
        }
        let stock = find_party(
            stock,
            STOCKS.len() as u64,
            text_field(entry, "stock_id"),
            text_field(entry, "stock_number"),
        )
        .map_or_else(|| stock(1), |(_, party)| party);
        lines.push(Line {
            seq: u32::try_from(row).unwrap_or(u32::MAX),
            id: String::new(),
            material,
            model: MATERIALS[(material_no - 1) as usize].1.to_owned(),
            stock,
            unit: unit_of(material_no),
            qty,
            price,
            cess: number_field(entry.get("cess")).unwrap_or(13.0),
            batch_no: text_field(entry, "batch_no").unwrap_or_default().to_owned(),
            comment: text_field(entry, "comment").unwrap_or_default().to_owned(),
        });
    }
    let bill_date = match text_field(body, "bill_date") {
        Some(date) => NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map(|day| day.format("%Y-%m-%d").to_string())
            .map_err(|_| format!("bill_date 格式应为 yyyy-MM-dd, got '{date}'"))?,
        None => day_of(now),
    };
    let region = pick(REGIONS, 0);
    Ok(Bill {
        id: String::new(),
        bill_no: text_field(body, "bill_no").unwrap_or_default().to_owned(),
        bill_date,
        status: "Z".to_owned(),
        created: now,
        modified: now,
        audited: None,
        creator: employee(1),
        remark: text_field(body, "remark").unwrap_or_default().to_owned(),
        dept: Party::new("1680000000000000001".to_owned(), "采购部", "BM01".to_owned()),
        emp,
        customer,
        supplier,
        phone: text_field(body, "contact_phone").unwrap_or_default().to_owned(),
        region: (region.0.to_owned(), region.1.to_owned(), region.2.to_owned()),
        address: text_field(body, "contact_address").unwrap_or_default().to_owned(),
        pay_type: Party::default(),
        pay_account: Party::default(),
        lines,
    })
}

impl JdyState {
    /// Creates a bill, or replaces bill `id` when the body names one.
    fn save(&self, body: &Value) -> Result<(String, String), String> {
        let now = shanghai_secs(Utc::now());
        let mut bill = bill_from_post(body, now)?;
        let mut book = lock(&self.book);
        let existing = match text_field(body, "id") {
            Some(id) => {
                let index = index_of_id(id)
                    .filter(|&index| index <= self.lazy.records + book.added)
                    .ok_or_else(|| format!("单据不存在: id {id}"))?;
                let current = self
                    .stored_or_lazy(&book, index)
                    .ok_or_else(|| format!("单据不存在: id {id}"))?;
                Some((index, current))
            }
            None => None,
        };
        let index = existing
            .as_ref()
            .map_or(self.lazy.records + book.added + 1, |(index, _)| *index);
        if bill.bill_no.is_empty() {
            bill.bill_no = match &existing {
                Some((_, current)) => current.bill_no.clone(),
                None => format!("CGRK-{}-{index:04}", day_of(now).replace('-', "")),
            };
        }
        let number_owner = book
            .by_number
            .get(&bill.bill_no)
            .copied()
            .or_else(|| generated_owner_of(self, &book, &bill.bill_no));
        if number_owner.is_some_and(|owner| owner != index) {
            return Err(format!("单据编号 {} 已存在", bill.bill_no));
        }
        bill.id = bill_id(index);
        for line in &mut bill.lines {
            line.id = format!("{}{:02}", bill.id, line.seq);
        }
        let (created, revision) = match &existing {
            Some((_, current)) => {
                bill.created = current.created;
                let revision = book.stored.get(&index).map_or(0, |stored| stored.revision) + 1;
                (current.created, revision)
            }
            None => (now, 0),
        };
        if let Some(previous) = book.stored.get(&index) {
            let key = (previous.modified, index);
            book.by_time.remove(&key);
        }
        if let Some((_, current)) = &existing {
            if book.by_number.get(&current.bill_no) == Some(&index) {
                book.by_number.remove(&current.bill_no);
            }
        } else {
            book.added += 1;
            book.written.push(index);
        }
        if index <= self.lazy.records {
            book.moved.insert(index);
        }
        book.by_time.insert((now, index));
        book.by_number.insert(bill.bill_no.clone(), index);
        let answer = (bill.id.clone(), bill.bill_no.clone());
        book.stored.insert(
            index,
            Stored {
                modified: now,
                created,
                revision,
                saved: Some(Box::new(bill)),
            },
        );
        Ok(answer)
    }
}

/// The generated bill (if any) that already carries `number`.
fn generated_owner_of(state: &JdyState, book: &Book, number: &str) -> Option<u64> {
    let index: u64 = number.rsplit('-').next()?.parse().ok()?;
    if index > state.lazy.records || book.stored.get(&index).is_some_and(|s| s.saved.is_some()) {
        return None;
    }
    state
        .stored_or_lazy(book, index)
        .filter(|bill| bill.bill_no == number)
        .map(|_| index)
}

async fn v2_save(
    State(state): State<Arc<JdyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = state.verify_business(&method, &uri, &headers) {
        return *refusal;
    }
    state.write_calls.fetch_add(1, Ordering::Relaxed);
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(body) => body,
        Err(err) => return refuse(PARAM_ERRCODE, format!("请求体不是合法的 JSON: {err}")),
    };
    match state.save(&body) {
        Ok((id, number)) => envelope(
            0,
            "success",
            json!({"ids": [id.clone()], "id_number_map": {id: number}}),
        ),
        Err(message) => refuse(PARAM_ERRCODE, message),
    }
}

// ---------------------------------------------------------------------------
// v1
// ---------------------------------------------------------------------------

async fn v1_token(State(state): State<Arc<JdyState>>, uri: Uri, body: Bytes) -> Response {
    let mut params = query_map(&uri);
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) {
        for (key, value) in fields {
            if let Value::String(text) = value {
                params.entry(key).or_insert(text);
            }
        }
    }
    let cfg = &state.cfg;
    let given = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if given("client_id") != cfg.client_id || given("client_secret") != cfg.client_secret {
        return refuse(AUTH_ERRCODE, "client_id 或 client_secret 错误");
    }
    if given("username") != cfg.v1_username || given("password") != cfg.v1_password {
        return refuse(AUTH_ERRCODE, "用户名或密码错误");
    }
    let mut tokens = lock(&state.tokens);
    tokens.issued += 1;
    let token = format!("sim-v1-{:016x}", mix(tokens.issued ^ 0x7631));
    tokens.v1_tokens.insert(token.clone());
    drop(tokens);
    state.token_calls.fetch_add(1, Ordering::Relaxed);
    envelope(0, "", json!({"access_token": token, "expires_in": cfg.token_ttl_secs}))
}

async fn v1_account_groups(State(state): State<Arc<JdyState>>, uri: Uri) -> Response {
    let token = query_map(&uri).remove("access_token").unwrap_or_default();
    if !lock(&state.tokens).v1_tokens.contains(&token) {
        return v1_refuse(StatusCode::UNAUTHORIZED, "access_token 无效或已过期");
    }
    let cfg = &state.cfg;
    Json(json!({"success": true, "data": [{
        "serviceId": cfg.service_id,
        "accountGroups": [{"accountId": cfg.account_id, "groupName": cfg.group_name, "groupId": "1"}]
    }]}))
    .into_response()
}

fn v1_params(body: &Bytes) -> Result<BTreeMap<String, String>, String> {
    if body.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Value::Object(fields) =
        serde_json::from_slice::<Value>(body).map_err(|err| format!("请求体不是合法的 JSON: {err}"))?
    else {
        return Err("请求体必须是 JSON 对象".to_owned());
    };
    Ok(fields
        .into_iter()
        .filter_map(|(key, value)| match value {
            Value::String(text) => Some((key, text)),
            Value::Number(number) => Some((key, number.to_string())),
            _ => None,
        })
        .collect())
}

fn v1_filter(params: &BTreeMap<String, String>) -> Result<ListFilter, String> {
    let day = |name: &str, end: bool| -> Result<Option<i64>, String> {
        let Some(text) = params.get(name).filter(|text| !text.trim().is_empty()) else {
            return Ok(None);
        };
        let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|_| format!("{name} 格式应为 yyyy-MM-dd, got '{text}'"))?;
        let start = to_secs(date.and_hms_opt(0, 0, 0).unwrap_or_default());
        Ok(Some(if end { start + 86_399 } else { start }))
    };
    let millis = |name: &str| -> Result<Option<i64>, String> {
        match params.get(name).map(|text| text.trim()) {
            None | Some("") | Some("-1") => Ok(None),
            Some(text) => parse_filter_time(name, text).map(Some),
        }
    };
    let from = [day("begindate", false)?, millis("begintime")?]
        .into_iter()
        .flatten()
        .max();
    let to = [day("expiredate", true)?, millis("expiretime")?]
        .into_iter()
        .flatten()
        .min();
    Ok(ListFilter {
        from,
        to,
        bill_no: None,
    })
}

async fn v1_list(State(state): State<Arc<JdyState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refusal) = state.verify_v1(&uri, &headers) {
        return *refusal;
    }
    state.list_calls.fetch_add(1, Ordering::Relaxed);
    let parsed = v1_params(&body).and_then(|params| {
        let page = count_param(&params, "page", 1)?;
        let size = count_param(&params, "pagesize", DEFAULT_PAGE_SIZE)?.min(PAGE_CAP);
        Ok((page, size, v1_filter(&params)?))
    });
    let (page, size, filter) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return v1_refuse(StatusCode::OK, message),
    };
    let (total, bills) = state.list(&filter, (page - 1).saturating_mul(size), size);
    let rows: Vec<Value> = bills.iter().map(Bill::v1_record).collect();
    Json(json!({"success": true, "data": {
        "count": total.to_string(), "page": page.to_string(), "pagesize": size.to_string(), "rows": rows
    }}))
    .into_response()
}

async fn v1_detail(State(state): State<Arc<JdyState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refusal) = state.verify_v1(&uri, &headers) {
        return *refusal;
    }
    state.detail_calls.fetch_add(1, Ordering::Relaxed);
    let id = v1_params(&body).ok().and_then(|params| params.get("id").cloned());
    match id
        .and_then(|id| index_of_id(&id))
        .and_then(|index| state.bill_by_index(index))
    {
        Some(bill) => Json(json!({"success": true, "data": bill.v1_record()})).into_response(),
        None => v1_refuse(StatusCode::OK, "单据不存在"),
    }
}

/// `ferry test`'s check of a replayed request: a gateway call's `X-Api-Signature` must be
/// the HMAC this simulator computes with `client_secret`, and a token request's
/// `app_signature` the HMAC of `app_key` with `app_secret` (when those settings are given).
pub fn verify_signature(
    client_secret: &str,
    app_key: Option<&str>,
    app_secret: Option<&str>,
    request: &super::RecordedRequest,
) -> Result<(), String> {
    if let Some(received) = request.header("x-api-signature") {
        let nonce = request.header("x-api-nonce").unwrap_or_default();
        let timestamp = request.header("x-api-timestamp").unwrap_or_default();
        let target = if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        let uri: Uri = target.parse().map_err(|e| format!("bad request target: {e}"))?;
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
        let expected = hmac_hex_base64(client_secret, &canonical_text(&method, &uri, nonce, timestamp));
        if received != expected {
            return Err(format!(
                "jdy X-Api-Signature {received} is not the HMAC the simulator's gateway computes ({expected})"
            ));
        }
    }
    if let (Some(key), Some(secret)) = (app_key, app_secret) {
        let signature = parse_query(&request.query)
            .into_iter()
            .find(|(name, _)| name == "app_signature")
            .map(|(_, value)| value);
        if let Some(received) = signature {
            let expected = hmac_hex_base64(secret, key);
            if received != expected {
                return Err(format!(
                    "jdy app_signature {received} is not the HMAC the simulator computes ({expected})"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::InjectedFault;
    use super::*;
    use crate::connector::jdy::envelope::{self, classify_with, verify_count};
    use crate::connector::jdy::request::{self, GatewaySend, Session};
    use crate::connector::jdy::{Generation, Settings};
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Connector settings (v2) that log in to a simulator run with `cfg`.
    fn v2_settings(cfg: &JdyConfig) -> Settings {
        Settings::v2(&cfg.client_id, &cfg.client_secret, &cfg.outer_instance_id)
    }

    /// Connector settings (v1) that log in to a simulator run with `cfg`.
    fn v1_settings(cfg: &JdyConfig) -> Settings {
        Settings::v1(
            &cfg.client_id,
            &cfg.client_secret,
            &cfg.v1_username,
            &cfg.v1_password,
            &cfg.account_id,
            &cfg.group_name,
        )
    }

    const LIST: &str = "scm/pur_inbound";

    struct Harness {
        sim: JdySim,
        handle: SimHandle,
        client: reqwest::Client,
        settings: Settings,
        nonce: u64,
    }

    impl Harness {
        async fn new(cfg: JdyConfig) -> Harness {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let settings = v2_settings(&cfg);
            let (sim, handle) = JdySim::start(cfg, listener).await.unwrap();
            Harness {
                sim,
                handle,
                client: reqwest::Client::new(),
                settings,
                nonce: 1_000,
            }
        }

        fn base(&self) -> String {
            self.handle.base_url()
        }

        fn nonce(&mut self) -> u64 {
            self.nonce += 1;
            self.nonce
        }

        async fn send(&self, wire: WireRequest) -> (u16, Value) {
            let (status, bytes) = crate::sim::kit::send_wire_raw(&self.client, wire).await;
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }

        async fn verdict(&self, wire: WireRequest) -> (Verdict, Value) {
            let (status, body) = self.send(wire).await;
            (classify_with(&self.settings, status, &body), body)
        }

        /// The v2 token flow: authorize, then token.
        async fn login(&mut self) -> Session {
            let nonce = self.nonce();
            let wire = request::authorize_request(&self.settings, &self.base(), Utc::now(), nonce).unwrap();
            let (verdict, body) = self.verdict(wire).await;
            assert_eq!(verdict, Verdict::Ok, "{body}");
            let auth = request::parse_authorize(&self.settings, &body).unwrap();
            let nonce = self.nonce();
            let wire = request::token_request(&self.settings, &self.base(), &auth, Utc::now(), nonce).unwrap();
            let (_, body) = self.send(wire).await;
            request::parse_token(&self.settings, &auth, &body, Utc::now()).unwrap()
        }

        async fn read(&mut self, session: &Session, api: &str, params: Value) -> (Verdict, Value) {
            let nonce = self.nonce();
            let wire = request::build(
                &self.settings,
                &self.base(),
                api,
                &params,
                Some(session),
                Utc::now(),
                nonce,
            )
            .unwrap();
            self.verdict(wire).await
        }

        async fn save(&mut self, session: &Session, body: Value) -> (Verdict, Value) {
            let nonce = self.nonce();
            let wire = request::build_save(
                &self.settings,
                &self.base(),
                LIST,
                &body,
                Some(session),
                Utc::now(),
                nonce,
            )
            .unwrap();
            self.verdict(wire).await
        }

        /// Pages through `filter` with the connector's default paging; returns every row.
        async fn read_all(&mut self, session: &Session, filter: Value) -> Vec<Value> {
            let paging = envelope::default_paging(LIST).unwrap();
            let mut rows = Vec::new();
            let mut page = paging.start;
            loop {
                let mut params = filter.clone();
                params[paging.number_param] = json!(page);
                params[paging.size_param] = json!(paging.size);
                let (verdict, body) = self.read(session, LIST, params).await;
                assert_eq!(verdict, Verdict::Ok, "{body}");
                let batch = body["data"]["rows"].as_array().cloned().unwrap_or_default();
                let last = (batch.len() as u64) < paging.size;
                rows.extend(batch);
                if last {
                    verify_count(&body["data"]["count"], rows.len() as u64).unwrap();
                    return rows;
                }
                page += 1;
            }
        }
    }

    fn cfg(records: u64) -> JdyConfig {
        JdyConfig {
            records,
            ..JdyConfig::default()
        }
    }

    fn bill_nos(rows: &[Value]) -> Vec<String> {
        rows.iter()
            .map(|row| row["bill_no"].as_str().unwrap().to_owned())
            .collect()
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, WALL_CLOCK).unwrap()
    }

    /// The instant whose Asia/Shanghai wall-clock time is `time`.
    fn china(time: NaiveDateTime) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .from_local_datetime(&time)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn good_bill(bill_no: &str) -> Value {
        json!({
            "bill_no": bill_no, "bill_date": "2024-03-05", "supplier_number": "GYS0003",
            "customer_number": "KH0007", "remark": "ferry 写入",
            "material_entity": [
                {"material_number": "SP0002", "qty": 5, "price": 59.0, "stock_number": "CK002"},
                {"material_number": "SP0009", "qty": "12"}
            ]
        })
    }

    #[test]
    fn bills_are_deterministic_and_shaped_like_the_docs() {
        let sim = JdySim::new(cfg(10));
        let first = sim.bill(1).unwrap();
        assert_eq!(first, JdySim::new(cfg(10)).bill(1).unwrap());
        assert_eq!(first["bill_no"], "CGRK-20240301-0001");
        assert_eq!(first["id"], "1710000000000000001");
        assert_eq!(first["modify_time"], "2024-03-01 08:10:00");
        for key in [
            "supplier_id",
            "supplier_name",
            "supplier_number",
            "customer_id",
            "customer_name",
            "customer_number",
            "contact_province_name",
            "contact_address",
            "total_amount",
            "emp_name",
        ] {
            assert!(first.get(key).is_some(), "missing {key}");
        }
        assert!(first["supplier_number"].as_str().unwrap().starts_with("GYS"));
        let lines = first["material_entity"].as_array().unwrap();
        assert!(!lines.is_empty());
        assert!(lines[0]["material_number"].as_str().unwrap().starts_with("SP"));
        assert!(lines[0]["qty"].as_f64().unwrap() > 0.0);
        let v1 = sim.state.bill_by_index(1).unwrap().v1_record();
        assert_eq!(v1["billno"], "CGRK-20240301-0001");
        assert_eq!(v1["customerid_name"], first["customer_name"]);
        assert!(v1["material_entity"][0]["materialid_number"].is_string());
        assert!(v1["totalamount"].is_string());
        assert!(sim.bill(11).is_none());
    }

    #[test]
    fn paging_matches_brute_force_under_touches_and_saves() {
        let sim = JdySim::new(cfg(300));
        let mut rng = StdRng::seed_from_u64(7);
        let base = to_secs(sim.config().base_time);
        for _ in 0..40 {
            let index = rng.gen_range(1..=300);
            let when = from_secs(base + rng.gen_range(-3_000..200_000));
            assert!(sim.touch(index, china(when)));
        }
        sim.state.save(&good_bill("CGRK-SIM-1")).unwrap();
        let lazy = sim.state.lazy;
        let book = lock(&sim.state.book);
        let total = lazy.records + book.added;
        let mut keys: Vec<Key> = (1..=total)
            .map(|index| {
                let modified = book
                    .stored
                    .get(&index)
                    .map_or_else(|| lazy.modified_of(index), |s| s.modified);
                (modified, index)
            })
            .collect();
        keys.sort_unstable();
        for _ in 0..200 {
            let from = rng.gen_bool(0.8).then(|| base + rng.gen_range(-5_000..210_000));
            let to = rng.gen_bool(0.8).then(|| base + rng.gen_range(-5_000..260_000));
            let expected: Vec<u64> = keys
                .iter()
                .filter(|(time, _)| from.is_none_or(|f| *time >= f) && to.is_none_or(|t| *time <= t))
                .map(|&(_, index)| index)
                .collect();
            let offset = rng.gen_range(0..expected.len() as u64 + 5);
            let limit = rng.gen_range(1..60);
            let (count, page) = book.page(lazy, from, to, offset, limit);
            assert_eq!(count, expected.len() as u64, "from {from:?} to {to:?}");
            let want: Vec<u64> = expected
                .iter()
                .copied()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
            assert_eq!(page, want, "from {from:?} to {to:?} offset {offset} limit {limit}");
        }
    }

    #[tokio::test]
    async fn login_then_page_to_the_end_with_count_verified() {
        let mut h = Harness::new(cfg(250)).await;
        let session = h.login().await;
        assert_eq!(session.router_addr.as_deref(), Some("https://tf.jdy.com"));
        let rows = h.read_all(&session, json!({})).await;
        assert_eq!(rows.len(), 250);
        let mut unique = bill_nos(&rows);
        unique.dedup();
        assert_eq!(unique.len(), 250);
        let times: Vec<&str> = rows.iter().map(|r| r["modify_time"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(rows[0].get("material_entity").is_none(), "list rows are summaries");
        assert_eq!(h.sim.list_calls(), 3);
        // Every business call carried the token and router address.
        let last = h.sim.requests().pop().unwrap();
        assert_eq!(last.header("app-token"), Some(session.token.as_str()));
        assert_eq!(last.query_param("page_size").as_deref(), Some("100"));
    }

    #[tokio::test]
    async fn oversized_pages_are_clamped_silently_and_the_builder_prevents_it() {
        let mut h = Harness::new(cfg(250)).await;
        let session = h.login().await;
        // A client that bypasses the clamp asks for 500 and gets 100 with total_page 1.
        let query = [
            ("page".to_owned(), "1".to_owned()),
            ("page_size".to_owned(), "500".to_owned()),
        ];
        let extra = vec![
            ("app-token".to_owned(), session.token.clone()),
            ("X-GW-Router-Addr".to_owned(), "https://tf.jdy.com".to_owned()),
        ];
        let send = GatewaySend {
            method: "GET",
            path: "/jdy/v2/scm/pur_inbound",
            query: &query,
            body: None,
            extra_headers: extra,
        };
        let wire = request::gateway_request(&h.settings, &h.base(), send, Utc::now(), 77).unwrap();
        let (verdict, body) = h.verdict(wire).await;
        assert_eq!(verdict, Verdict::Ok);
        let data = &body["data"];
        assert_eq!(data["rows"].as_array().unwrap().len(), 100);
        assert_eq!(data["total_page"], 1);
        assert_eq!(data["count"], "250");
        assert_eq!(data["page_size"], 500);
        assert!(verify_count(&data["count"], 100).is_err());
        // The connector's builder never asks for more than the cap.
        let (_, body) = h.read(&session, LIST, json!({"page": 1, "page_size": 500})).await;
        assert_eq!(body["data"]["page_size"], 100);
        assert_eq!(body["data"]["total_page"], 3);
    }

    #[tokio::test]
    async fn incremental_window_and_touch() {
        let mut h = Harness::new(cfg(250)).await;
        let session = h.login().await;
        let zone = chrono_tz::Asia::Shanghai;
        let from = zone
            .from_local_datetime(&at("2024-03-01 10:00:00"))
            .unwrap()
            .with_timezone(&Utc);
        let to = zone
            .from_local_datetime(&at("2024-03-01 12:00:00"))
            .unwrap()
            .with_timezone(&Utc);
        let filter = json!({
            "modify_start_time": request::modify_time_param(&h.settings, from).unwrap(),
            "modify_end_time": request::modify_time_param(&h.settings, to).unwrap(),
        });
        let rows = h.read_all(&session, filter.clone()).await;
        // Bills 12..=24 are modified every 10 minutes from 10:00 to 12:00, both ends included.
        assert_eq!(rows.len(), 13);
        assert_eq!(rows[0]["modify_time"], "2024-03-01 10:00:00");
        let instant = "2024-03-01T03:05:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(instant, china(at("2024-03-01 11:05:00")));
        assert!(h.sim.touch(3, instant));
        let rows = h.read_all(&session, filter).await;
        assert_eq!(rows.len(), 14);
        let touched = rows
            .iter()
            .find(|row| row["modify_time"] == "2024-03-01 11:05:00")
            .unwrap();
        assert_eq!(touched["id"], "1710000000000000003");
        assert_eq!(touched["remark"], "第1次修改");
        // Epoch milliseconds are accepted too.
        let mut millis = h.settings.clone();
        millis.modify_time_format = Some(crate::connector::jdy::ModifyTimeFormat::EpochMillis);
        let filter = json!({"modify_start_time": request::modify_time_param(&millis, from).unwrap()});
        let (_, body) = h.read(&session, LIST, filter).await;
        // Bills 12..=250 plus the touched bill 3.
        assert_eq!(body["data"]["count"], "240");
    }

    #[tokio::test]
    async fn detail_has_material_entity_rows() {
        let mut h = Harness::new(cfg(20)).await;
        let session = h.login().await;
        let (_, list) = h.read(&session, LIST, json!({"page": 1, "page_size": 5})).await;
        let row = list["data"]["rows"][2].clone();
        let nonce = h.nonce();
        let wire =
            request::build_detail(&h.settings, &h.base(), LIST, &row, Some(&session), Utc::now(), nonce).unwrap();
        assert!(wire.url.contains("/jdy/v2/scm/pur_inbound_detail?id="));
        let (verdict, detail) = h.verdict(wire).await;
        assert_eq!(verdict, Verdict::Ok);
        let path = envelope::records_path("scm/pur_inbound_detail").unwrap();
        assert_eq!(path, "$.data");
        let bill = &detail["data"];
        assert_eq!(bill["bill_no"], row["bill_no"]);
        assert!(!bill["material_entity"].as_array().unwrap().is_empty());
        let number = row["bill_no"].as_str().unwrap();
        let (_, by_number) = h
            .read(&session, "scm/pur_inbound_detail", json!({"number": number}))
            .await;
        assert_eq!(by_number["data"]["id"], row["id"]);
        let (verdict, _) = h.read(&session, "scm/pur_inbound_detail", json!({"id": "1"})).await;
        assert!(matches!(verdict, Verdict::Failed { code, .. } if code == "1000"));
    }

    #[tokio::test]
    async fn signature_checks_reject_bad_secret_stale_time_and_tampering() {
        let mut h = Harness::new(cfg(5)).await;
        let session = h.login().await;
        let mut wrong = h.settings.clone();
        wrong.client_secret = "not-the-secret".to_owned();
        let wire = request::build(&wrong, &h.base(), LIST, &json!({}), Some(&session), Utc::now(), 5).unwrap();
        let (status, body) = h.send(wire).await;
        assert_eq!(status, 519);
        assert!(matches!(classify_with(&h.settings, status, &body), Verdict::Failed { code, .. } if code == "519"));
        // Ten minutes old.
        let stale = Utc::now() - chrono::Duration::minutes(10);
        let wire = request::build(&h.settings, &h.base(), LIST, &json!({}), Some(&session), stale, 6).unwrap();
        let (status, body) = h.send(wire).await;
        assert_eq!((status, body["errcode"].clone()), (519, json!(4006)));
        assert!(body["description"].as_str().unwrap().contains("X-Api-TimeStamp"));
        assert!(body["description_cn"].as_str().unwrap().contains("已过期"));
        // A query changed after signing.
        let mut wire = request::build(
            &h.settings,
            &h.base(),
            LIST,
            &json!({"page": 1}),
            Some(&session),
            Utc::now(),
            7,
        )
        .unwrap();
        wire.url = wire.url.replace("page=1", "page=2");
        assert_eq!(h.send(wire).await.0, 519);
        // A wrong router address.
        let mut elsewhere = session.clone();
        elsewhere.router_addr = Some("https://other.jdy.com".to_owned());
        let wire = request::build(
            &h.settings,
            &h.base(),
            LIST,
            &json!({}),
            Some(&elsewhere),
            Utc::now(),
            8,
        )
        .unwrap();
        assert_eq!(h.send(wire).await.0, 519);
        // A wrong app secret fails the token step with the vendor's message.
        let auth = request::AppAuthorization {
            app_key: "abc".to_owned(),
            app_secret: "wrong".to_owned(),
            domain: "https://tf.jdy.com".to_owned(),
            account_id: None,
            group_name: None,
            service_id: None,
            status: Some(1),
        };
        let wire = request::token_request(&h.settings, &h.base(), &auth, Utc::now(), 9).unwrap();
        let (_, body) = h.send(wire).await;
        let err = request::parse_token(&h.settings, &auth, &body, Utc::now()).unwrap_err();
        assert!(err.contains("授权密钥校验失败"), "{err}");
        // An unknown outerInstanceId is refused in the configured envelope.
        let mut other = h.settings.clone();
        other.outer_instance_id = Some("nope".to_owned());
        let wire = request::authorize_request(&other, &h.base(), Utc::now(), 10).unwrap();
        let (_, body) = h.send(wire).await;
        assert!(request::parse_authorize(&other, &body).unwrap_err().contains("nope"));
    }

    #[tokio::test]
    async fn authorize_also_works_with_the_code_msg_envelope() {
        let mut h = Harness::new(JdyConfig {
            authorize_envelope: AuthorizeEnvelope::CodeMsg,
            ..cfg(3)
        })
        .await;
        let session = h.login().await;
        let (verdict, _) = h.read(&session, LIST, json!({})).await;
        assert_eq!(verdict, Verdict::Ok);
        let authorize = h.sim.requests().into_iter().next().unwrap();
        assert_eq!(authorize.path, request::AUTHORIZE_PATH);
    }

    #[tokio::test]
    async fn saves_fail_alone_are_remembered_and_can_be_looked_up_and_updated() {
        let mut h = Harness::new(cfg(10)).await;
        let session = h.login().await;
        let bad_supplier = json!({"supplier_number": "GYS9999",
            "material_entity": [{"material_number": "SP0001", "qty": 1}]});
        let bad_qty = json!({"supplier_number": "GYS0001",
            "material_entity": [{"material_number": "SP0001", "qty": 0}]});
        let bodies = [
            good_bill("CGRK-FERRY-0001"),
            bad_supplier,
            good_bill("CGRK-FERRY-0002"),
            bad_qty,
        ];
        let mut outcomes = Vec::new();
        for body in bodies {
            let (_, answer) = h.save(&session, body).await;
            outcomes.push(envelope::row_outcomes(LIST, &answer, 1).unwrap().remove(0));
        }
        assert!(matches!(&outcomes[0], RowOutcome::Written { target_id: Some(id), .. } if id == "1710000000000000011"));
        assert!(
            matches!(&outcomes[1], RowOutcome::Failed { message, class: "rejected" } if message.contains("GYS9999"))
        );
        assert!(matches!(&outcomes[2], RowOutcome::Written { target_id: Some(id), .. } if id == "1710000000000000012"));
        assert!(matches!(&outcomes[3], RowOutcome::Failed { message, .. } if message.contains("数量")));
        assert_eq!(h.sim.write_calls(), 4);
        assert_eq!(bill_nos(&h.sim.written()), ["CGRK-FERRY-0001", "CGRK-FERRY-0002"]);
        let stored = h.sim.written_by_key("CGRK-FERRY-0001").unwrap();
        assert_eq!(stored["supplier_number"], "GYS0003");
        assert_eq!(stored["customer_number"], "KH0007");
        assert_eq!(stored["total_amount"], json!(round2(5.0 * 59.0 + 12.0 * 12.9)));
        // Duplicate numbers are refused, also against generated bills.
        let (verdict, _) = h.save(&session, good_bill("CGRK-FERRY-0002")).await;
        assert!(matches!(verdict, Verdict::Failed { message, .. } if message.contains("已存在")));
        let (verdict, _) = h.save(&session, good_bill("CGRK-20240301-0001")).await;
        assert!(matches!(verdict, Verdict::Failed { .. }));
        // Lookup by business key through the list filter and the detail.
        let (_, found) = h.read(&session, LIST, json!({"bill_no": "CGRK-FERRY-0002"})).await;
        assert_eq!(found["data"]["count"], "1");
        let id = found["data"]["rows"][0]["id"].as_str().unwrap().to_owned();
        // Update by id.
        let mut changed = good_bill("CGRK-FERRY-0002");
        changed["id"] = json!(id);
        changed["remark"] = json!("改了备注");
        let (verdict, answer) = h.save(&session, changed).await;
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(envelope::written_id(LIST, &answer).as_deref(), Some(id.as_str()));
        assert_eq!(h.sim.written_by_key("CGRK-FERRY-0002").unwrap()["remark"], "改了备注");
        assert_eq!(h.sim.written().len(), 2);
        // Saved bills show up in the incremental list too.
        assert_eq!(h.read_all(&session, json!({})).await.len(), 12);
        let (verdict, _) = h
            .save(
                &session,
                json!({"id": "1710000000000099999", "supplier_number": "GYS0001",
            "material_entity": [{"material_number": "SP0001", "qty": 1}]}),
            )
            .await;
        assert!(matches!(verdict, Verdict::Failed { message, .. } if message.contains("不存在")));
    }

    #[tokio::test]
    async fn expired_tokens_give_session_expired_and_a_new_login_works() {
        let mut h = Harness::new(cfg(5)).await;
        let session = h.login().await;
        assert_eq!(h.read(&session, LIST, json!({})).await.0, Verdict::Ok);
        h.sim.expire_tokens();
        let (verdict, body) = h.read(&session, LIST, json!({})).await;
        assert_eq!(verdict, Verdict::SessionExpired("授权密钥失效".to_owned()), "{body}");
        assert_eq!(body["errcode"], 1_030_002_006);
        let fresh = h.login().await;
        assert_ne!(fresh.token, session.token);
        assert_eq!(h.read(&fresh, LIST, json!({})).await.0, Verdict::Ok);
        assert_eq!(h.sim.token_calls(), 2);
    }

    #[tokio::test]
    async fn throttling_answers_are_recognised() {
        let mut h = Harness::new(cfg(5)).await;
        let session = h.login().await;
        h.sim.set_faults(Faults {
            rate_limit_per_sec: Some(1),
            ..Faults::default()
        });
        assert_eq!(h.read(&session, LIST, json!({})).await.0, Verdict::Ok);
        let (verdict, _) = h.read(&session, LIST, json!({})).await;
        assert!(matches!(verdict, Verdict::Throttled(_)), "{verdict:?}");
        let faults: Vec<_> = h.sim.requests().iter().map(|r| r.fault).collect();
        assert_eq!(faults.last(), Some(&Some(InjectedFault::Throttled)));

        // A tenant whose gateway throttles with HTTP 200 and a code: configure the code.
        let mut h = Harness::new(JdyConfig {
            throttle: JdyThrottle {
                status: 200,
                errcode: 4_290_001,
            },
            ..cfg(5)
        })
        .await;
        let session = h.login().await;
        h.sim.set_faults(Faults {
            rate_limit_per_sec: Some(0),
            ..Faults::default()
        });
        let (verdict, _) = h.read(&session, LIST, json!({})).await;
        assert!(matches!(verdict, Verdict::Failed { .. }), "unknown code: {verdict:?}");
        h.settings.throttle_codes = Some(vec!["4290001".to_owned()]);
        let (verdict, _) = h.read(&session, LIST, json!({})).await;
        assert!(matches!(verdict, Verdict::Throttled(_)), "{verdict:?}");
    }

    #[tokio::test]
    async fn injected_failures_use_the_system_error_code() {
        let mut h = Harness::new(cfg(5)).await;
        let session = h.login().await;
        h.sim.set_faults(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        let (verdict, _) = h.read(&session, LIST, json!({})).await;
        assert!(matches!(verdict, Verdict::Failed { code, .. } if code == "2000002000"));
    }

    #[tokio::test]
    async fn v1_flow_speaks_the_legacy_shape() {
        let mut h = Harness::new(cfg(130)).await;
        let settings = v1_settings(h.sim.config());
        h.settings = settings.clone();
        let wire = request::v1_token_request(&settings, &h.base()).unwrap();
        let (_, body) = h.send(wire).await;
        let session = request::parse_v1_token(&settings, &body, Utc::now()).unwrap();
        assert_eq!(session.generation, Generation::V1);
        let wire = request::v1_account_groups_request(&h.base(), &session).unwrap();
        let (_, groups) = h.send(wire).await;
        let session = request::parse_v1_account_groups(&settings, &groups, &session).unwrap();
        let api = "pur/pur_inbound_list";
        let paging = envelope::default_paging(api).unwrap();
        assert_eq!(paging.size_param, "pagesize");
        let mut rows = Vec::new();
        for page in 1.. {
            let params = json!({"page": page, "pagesize": 500, "begindate": "2024-03-01"});
            let wire = request::build(&settings, &h.base(), api, &params, Some(&session), Utc::now(), 1).unwrap();
            let (verdict, body) = h.verdict(wire).await;
            assert_eq!(verdict, Verdict::Ok, "{body}");
            assert_eq!(body["success"], true);
            let batch = body["data"]["rows"].as_array().unwrap().clone();
            let done = batch.len() < 100;
            rows.extend(batch);
            if done {
                break;
            }
        }
        assert_eq!(rows.len(), 130);
        assert!(rows[0]["billno"].as_str().unwrap().starts_with("CGRK-"));
        assert!(rows[0]["customerid_name"].is_string());
        assert!(rows[0]["material_entity"].is_array(), "v1 lists carry the lines");
        let wire = request::build_detail(&settings, &h.base(), api, &rows[4], Some(&session), Utc::now(), 1).unwrap();
        let (verdict, detail) = h.verdict(wire).await;
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(detail["data"]["billno"], rows[4]["billno"]);
        h.sim.expire_sessions();
        let wire = request::build(&settings, &h.base(), api, &json!({}), Some(&session), Utc::now(), 1).unwrap();
        let (verdict, _) = h.verdict(wire).await;
        assert!(matches!(verdict, Verdict::SessionExpired(_)), "{verdict:?}");
    }

    #[test]
    fn the_simulators_signature_agrees_with_the_reference_vector() {
        let uri: Uri = "/jdy/v2/scm/pur_inbound?page_size=100&modify_start_time=2024-03-01%2000%3A00%3A00&page=1"
            .parse()
            .unwrap();
        let text = canonical_text(&Method::GET, &uri, "1234567890", "1709251200000");
        assert_eq!(
            text,
            "GET\n%2Fjdy%2Fv2%2Fscm%2Fpur_inbound\nmodify_start_time=2024-03-01%252000%253A00%253A00&page=1&page_size=100\nx-api-nonce:1234567890\nx-api-timestamp:1709251200000\n"
        );
        assert_eq!(
            hmac_hex_base64("0123456789abcdef0123456789abcdef", &text),
            "NWQyMDBiNzBhNGJkMjkwMjM5YWQ1NTVjM2E0YzFlNjRiMjc1ZDYxZjhlOWNiYTY1NWZjNzQ5MWRkZmRmODdhNA=="
        );
        // The official doc's token request (reference §9 "jdy"): app_signature's `==` padding
        // is encoded once in the URL and twice in the signed text.
        let uri: Uri = "/jdyconnector/app_management/kingdee_auth_token?app_key=bVZgAZOv1&app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%3D%3D"
            .parse()
            .unwrap();
        let text = canonical_text(&Method::GET, &uri, "4427456950", "1670305063559");
        assert_eq!(
            text,
            "GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\napp_key=bVZgAZOv1&app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%253D%253D\nx-api-nonce:4427456950\nx-api-timestamp:1670305063559\n"
        );
        assert_eq!(
            hmac_hex_base64("f2adcfef73369bfc4e1384677d38a0ff", &text),
            "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ=="
        );
        // The app_signature the token endpoint expects (reference §9, S-JDY-GW).
        assert_eq!(
            hmac_hex_base64("abc123", "abc"),
            "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ=="
        );
    }
}
