//! The "shop" simulator: an order source plus an ERP-like batch target behind
//! one HTTP server, used by the integration tests, `ferry demo`,
//! `ferry simulate shop` and the throughput benchmark.
//!
//! **Source** (`GET /orders`). Orders are a pure function of their 1-based
//! index, so a million orders cost no memory; only orders changed with
//! [`ShopSim::touch`] or created with [`ShopSim::add_orders`] are stored.
//! Order `i` was modified at `base_time + i * spacing_secs` until touched.
//! Orders are sorted by `(modified_at, order_no)`; `order_no` is zero-padded,
//! so that is index order below ten million orders. A page is found by index
//! arithmetic over the untouched range merged with the stored orders, so a
//! request costs O(page + stored orders in the window), never O(all orders).
//! Times have second precision and are naive local times (the demo reads them
//! as Asia/Shanghai). A negative `spacing_secs` is treated as 0.
//!
//! Paging: `page`+`size` (from 1), `offset`+`limit`, or `cursor`+`size`.
//! Cursors are keyset tokens (they name the last order returned), so they stay
//! correct when orders move between requests; page and offset do not, as with
//! real APIs. With no paging parameter the request is page 1 of 100.
//!
//! `GET /orders/{order_no}` answers one order (`{"ok": true, "data": {"order": …}}`), or 404,
//! for reads by id (`source.detail`, `ferry run --ids`, `ferry explain --fetch`); it is
//! counted in `source_calls`.
//!
//! **Target** (`POST /orders/batch`, honouring an `Idempotency-Key` header, `PUT /orders/{id}`,
//! `GET /orders/lookup?number=`). Rows are validated one by one; a bad or
//! duplicate row fails alone and is reported with its index in the request.
//!
//! The bearer token (when configured) guards the source only; the target is
//! open. Faults from [`super::Faults`] apply to every route unless narrowed
//! with `only_path_prefix` (`"/orders/"` selects the target routes).
//! `create_calls`, `update_calls` and `source_calls` count requests that
//! reached the handler (fault-answered requests other than garbled ones are
//! not counted).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{Datelike, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::kit::{
    counters, from_secs, json_reply, mix, naive_at, pick, simulator, start_sim, to_secs, too_many_requests,
    BRAND_FIRST, BRAND_SECOND, COMPANY_FORMS, SURNAMES, TRADES,
};
use super::{
    instrument, lock, percent_encode, read, write, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle,
    Simulator,
};

/// Largest `size`/`limit` the source accepts.
pub const MAX_PAGE_SIZE: u64 = 500;
/// Page size when the request names none.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Most rows one `POST /orders/batch` may carry.
pub const MAX_BATCH_ROWS: usize = 500;
/// The format of every date-time the shop reads or writes.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Largest request body the target accepts (64 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How the shop behaves. `ShopConfig::default()` is the demo shop.
#[derive(Clone, Debug)]
pub struct ShopConfig {
    /// Number of generated orders (default 2500).
    pub records: u64,
    /// Order `i` is modified at `base_time + i * spacing_secs` (default
    /// 2024-01-01 00:00:00, naive Asia/Shanghai time).
    pub base_time: NaiveDateTime,
    /// Seconds between consecutive orders (default 60).
    pub spacing_secs: i64,
    /// Faults at start; change them later with [`ShopSim::set_faults`].
    pub faults: Faults,
    /// Keep full requests in the log (default true). Benchmarks turn this off
    /// and keep only counts and the target table.
    pub record_bodies: bool,
    /// The target rejects rows whose `FBillNo` number is divisible by n.
    pub reject_every: Option<u64>,
    /// When set, the source requires `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Wide orders for benchmarks: 14 scalar fields (contact, remark, region, e-mail, an
    /// `active` flag) and always two lines, about 530 bytes each.
    pub wide: bool,
}

impl Default for ShopConfig {
    fn default() -> Self {
        let base_time = naive_at(2024, 1, 1, 0, 0, 0);
        ShopConfig {
            records: 2500,
            base_time,
            spacing_secs: 60,
            faults: Faults::default(),
            record_bodies: true,
            reject_every: None,
            wide: false,
            token: None,
        }
    }
}

/// A shop simulator; clones share the same state.
#[derive(Clone)]
pub struct ShopSim {
    state: Arc<ShopState>,
}

impl std::fmt::Debug for ShopSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopSim")
            .field("orders", &self.order_count())
            .field("target_rows", &self.target_count())
            .finish_non_exhaustive()
    }
}

simulator!(ShopSim);

impl ShopSim {
    /// Builds the shop's state; nothing listens until [`ShopSim::start`] or
    /// until [`ShopSim::router`] is served.
    pub fn new(cfg: ShopConfig) -> ShopSim {
        let mode = if cfg.record_bodies {
            LogMode::Full
        } else {
            LogMode::CountOnly
        };
        let control = SimControl::new(cfg.faults, RequestLog::new(mode), ShopReplies);
        let state = ShopState {
            wide: cfg.wide,
            lazy: LazyRange {
                records: cfg.records,
                base: to_secs(cfg.base_time),
                spacing: cfg.spacing_secs.max(0),
            },
            token: cfg.token,
            reject_every: AtomicU64::new(cfg.reject_every.unwrap_or(0)),
            control: Arc::new(control),
            book: RwLock::new(OrderBook::default()),
            target: Mutex::new(TargetTable::default()),
            source_calls: AtomicU64::new(0),
            create_calls: AtomicU64::new(0),
            update_calls: AtomicU64::new(0),
            links: Mutex::new(HashMap::new()),
            refuse_links: AtomicBool::new(false),
        };
        ShopSim { state: Arc::new(state) }
    }

    /// All shop routes, wrapped with the request log and fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/orders", get(list_orders))
            .route("/orders/batch", post(create_batch))
            .route("/orders/lookup", get(lookup_order))
            .route("/orders/{id}", put(update_order).get(get_order))
            .route("/orders/{order_no}/erp-link", post(link_order))
            .with_state(Arc::clone(&self.state))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds a shop and serves it on `listener`.
    pub async fn start(cfg: ShopConfig, listener: tokio::net::TcpListener) -> io::Result<(ShopSim, SimHandle)> {
        start_sim(ShopSim::new(cfg), ShopSim::router, listener).await
    }

    /// The ERP id written back to source order `order_no`, if any.
    pub fn erp_link(&self, order_no: &str) -> Option<String> {
        lock(&self.state.links).get(order_no).cloned()
    }

    /// Write-backs linked so far.
    pub fn erp_link_count(&self) -> usize {
        lock(&self.state.links).len()
    }

    /// Refuse (or accept again) every write-back.
    pub fn refuse_erp_links(&self, refuse: bool) {
        self.state.refuse_links.store(refuse, Ordering::Relaxed);
    }

    /// Changes order `order_index` (line quantities, so the amount, and the
    /// status) and moves its `modified_at` to `now`. Returns false when no
    /// such order exists.
    pub fn touch(&self, order_index: u64, now: NaiveDateTime) -> bool {
        let lazy = self.state.lazy;
        let modified = to_secs(now);
        let mut book = write(&self.state.book);
        if order_index == 0 || order_index > lazy.records + book.added {
            return false;
        }
        let previous = match book.stored.get(&order_index) {
            Some(stored) => *stored,
            None => {
                book.moved.insert(order_index);
                let original = lazy.order_ref(order_index);
                StoredOrder {
                    modified: original.modified,
                    created: original.created,
                    revision: 0,
                }
            }
        };
        book.by_time.remove(&(previous.modified, order_index));
        book.by_time.insert((modified, order_index));
        book.stored.insert(
            order_index,
            StoredOrder {
                modified,
                created: previous.created,
                revision: previous.revision + 1,
            },
        );
        true
    }

    /// Appends `n` new orders, all created and modified at `modified_at`;
    /// returns their indexes.
    pub fn add_orders(&self, n: u64, modified_at: NaiveDateTime) -> Range<u64> {
        let secs = to_secs(modified_at);
        let mut book = write(&self.state.book);
        let first = self.state.lazy.records + book.added + 1;
        for index in first..first + n {
            book.by_time.insert((secs, index));
            book.stored.insert(
                index,
                StoredOrder {
                    modified: secs,
                    created: secs,
                    revision: 0,
                },
            );
        }
        book.added += n;
        first..first + n
    }

    /// Order `order_index` as the source serves it now.
    pub fn order(&self, order_index: u64) -> Option<Value> {
        let book = read(&self.state.book);
        if order_index == 0 || order_index > self.state.lazy.records + book.added {
            return None;
        }
        let order = render_order(book.order_ref(self.state.lazy, order_index), self.state.wide);
        drop(book);
        serde_json::to_value(order).ok()
    }

    /// Number of orders, generated plus added.
    pub fn order_count(&self) -> u64 {
        self.state.lazy.records + read(&self.state.book).added
    }

    /// Every row the target holds, in id order, each with its `"id"` first.
    pub fn target_rows(&self) -> Vec<Value> {
        let table = lock(&self.state.target);
        table
            .rows
            .iter()
            .enumerate()
            .map(|(position, row)| with_id(position, &row.row))
            .collect()
    }

    /// The target row whose `FBillNo` is `bill_no`, with its `"id"`.
    pub fn target_row_by_bill_no(&self, bill_no: &str) -> Option<Value> {
        let table = lock(&self.state.target);
        let position = *table.by_bill_no.get(bill_no)?;
        table.rows.get(position).map(|row| with_id(position, &row.row))
    }

    /// Number of rows in the target.
    pub fn target_count(&self) -> usize {
        lock(&self.state.target).rows.len()
    }

    /// Changes which rows the target rejects (`None`: none), e.g. to let failed rows through.
    pub fn set_reject_every(&self, every: Option<u64>) {
        self.state.reject_every.store(every.unwrap_or(0), Ordering::Relaxed);
    }

    /// Rows whose create was refused because their bill number was already stored: each is
    /// a duplicate the client tried to write.
    pub fn duplicate_creates(&self) -> u64 {
        lock(&self.state.target).duplicate_creates
    }

    /// Batches sent again with an `Idempotency-Key` already answered (answered the same,
    /// nothing written again).
    pub fn replayed_keys(&self) -> u64 {
        lock(&self.state.target).replayed_keys
    }

    counters! {
        /// `POST /orders/batch` requests handled.
        create_calls,
        /// `PUT /orders/{id}` requests handled.
        update_calls,
        /// `GET /orders` requests handled.
        source_calls,
    }
}

impl ShopState {
    fn rejecting(&self) -> Option<u64> {
        Some(self.reject_every.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

struct ShopState {
    lazy: LazyRange,
    wide: bool,
    token: Option<String>,
    /// 0 when no row is rejected.
    reject_every: AtomicU64,
    control: Arc<SimControl>,
    book: RwLock<OrderBook>,
    target: Mutex<TargetTable>,
    source_calls: AtomicU64,
    create_calls: AtomicU64,
    update_calls: AtomicU64,
    /// ERP ids written back to source orders (`POST /orders/{order_no}/erp-link`), by
    /// order number. Kept beside the orders, so linking does not change an order's
    /// `modified_at` or its listed fields.
    links: Mutex<HashMap<String, String>>,
    /// When set, every write-back is refused (`{"ok": false}`), as a locked order would be.
    refuse_links: AtomicBool,
}

/// The shop's answers to throttled and failed requests.
struct ShopReplies;

impl FaultReplies for ShopReplies {
    fn throttled(&self) -> Response {
        too_many_requests(json!({"ok": false, "code": 429, "message": "too many requests"}))
    }

    fn server_error(&self) -> Response {
        json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"ok": false, "code": 500, "message": "simulated internal error"}),
        )
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// `YYYY-MM-DD HH:MM:SS`, written by hand because it is on the hot path.
fn format_time(secs: i64) -> String {
    let time = from_secs(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT)
        .map(to_secs)
        .map_err(|_| format!("{name} must look like 2024-01-31 23:59:00, got '{text}'"))
}

// ---------------------------------------------------------------------------
// The order book: lazy orders plus the few stored ones
// ---------------------------------------------------------------------------

/// A sort key: (modified_at in seconds, order index).
type Key = (i64, u64);

/// The generated orders 1..=records, never touched.
#[derive(Clone, Copy, Debug)]
struct LazyRange {
    records: u64,
    base: i64,
    spacing: i64,
}

impl LazyRange {
    fn time_of(&self, index: u64) -> i64 {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        self.base.saturating_add(index.saturating_mul(self.spacing))
    }

    /// The first index (in `1..=records + 1`) whose key is not below `key`;
    /// every lazy index before it sorts before `key`.
    fn lower_bound(&self, (time, index): Key) -> u64 {
        let end = i128::from(self.records) + 1;
        let raw = if self.spacing > 0 {
            let offset = i128::from(time) - i128::from(self.base);
            let spacing = i128::from(self.spacing);
            let first_not_earlier = (offset + spacing - 1).div_euclid(spacing);
            let lands_exactly = offset.rem_euclid(spacing) == 0;
            if lands_exactly && first_not_earlier < i128::from(index) {
                first_not_earlier + 1
            } else {
                first_not_earlier
            }
        } else if time > self.base {
            end
        } else if time < self.base {
            1
        } else {
            i128::from(index)
        };
        u64::try_from(raw.clamp(1, end)).unwrap_or(1)
    }

    fn order_ref(&self, index: u64) -> OrderRef {
        let modified = self.time_of(index);
        let minutes_before = i64::try_from(mix(index ^ CREATED_SALT) % 120 + 1).unwrap_or(1);
        OrderRef {
            index,
            modified,
            created: modified - minutes_before * 60,
            revision: 0,
        }
    }
}

/// A touched or added order.
#[derive(Clone, Copy, Debug)]
struct StoredOrder {
    modified: i64,
    created: i64,
    revision: u32,
}

/// Everything needed to render one order.
#[derive(Clone, Copy, Debug)]
struct OrderRef {
    index: u64,
    modified: i64,
    created: i64,
    revision: u32,
}

#[derive(Default)]
struct OrderBook {
    /// Lazy indexes that were touched and now live in `stored`.
    moved: BTreeSet<u64>,
    /// The keys of every stored order.
    by_time: BTreeSet<Key>,
    stored: HashMap<u64, StoredOrder>,
    /// Orders appended after the lazy range.
    added: u64,
}

impl OrderBook {
    fn order_ref(&self, lazy: LazyRange, index: u64) -> OrderRef {
        match self.stored.get(&index) {
            Some(stored) => OrderRef {
                index,
                modified: stored.modified,
                created: stored.created,
                revision: stored.revision,
            },
            None => lazy.order_ref(index),
        }
    }

    /// The orders with `from <= modified_at < to`.
    fn window(&self, lazy: LazyRange, from: Option<i64>, to: Option<i64>) -> WindowView {
        let empty = matches!((from, to), (Some(from), Some(to)) if from >= to);
        if empty {
            return WindowView {
                lazy,
                lo: 1,
                hi: 1,
                moved: Vec::new(),
                stored: Vec::new(),
            };
        }
        let lo = from.map_or(1, |from| lazy.lower_bound((from, 0)));
        let hi = to.map_or(lazy.records + 1, |to| lazy.lower_bound((to, 0))).max(lo);
        let lower = from.map_or(Bound::Unbounded, |from| Bound::Included((from, 0)));
        let upper = to.map_or(Bound::Unbounded, |to| Bound::Excluded((to, 0)));
        WindowView {
            lazy,
            lo,
            hi,
            moved: self.moved.range(lo..hi).copied().collect(),
            stored: self.by_time.range((lower, upper)).copied().collect(),
        }
    }
}

/// One window: lazy indexes `lo..hi` minus `moved`, merged with `stored`.
struct WindowView {
    lazy: LazyRange,
    lo: u64,
    hi: u64,
    moved: Vec<u64>,
    stored: Vec<Key>,
}

impl WindowView {
    fn total(&self) -> u64 {
        (self.hi - self.lo) - self.moved.len() as u64 + self.stored.len() as u64
    }

    /// Untouched lazy orders in the window that sort before `key`.
    fn lazy_before(&self, key: Key) -> u64 {
        let bound = self.lazy.lower_bound(key).clamp(self.lo, self.hi);
        (bound - self.lo) - self.moved.partition_point(|&moved| moved < bound) as u64
    }

    /// Orders in the window that sort before `key`.
    fn rank(&self, key: Key) -> u64 {
        self.lazy_before(key) + self.stored.partition_point(|&stored| stored < key) as u64
    }

    /// Up to `limit` keys starting at position `offset` of the window.
    fn keys(&self, offset: u64, limit: usize) -> Vec<Key> {
        let total = self.total();
        if offset >= total {
            return Vec::new();
        }
        // Stored orders sitting before position `offset`: their merged
        // position (own rank + lazy orders before them) grows strictly.
        let (mut low, mut high) = (0, self.stored.len());
        while low < high {
            let mid = (low + high) / 2;
            if mid as u64 + self.lazy_before(self.stored[mid]) < offset {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let mut next_stored = low;
        // The first lazy index after skipping `offset - low` untouched ones.
        let mut next_lazy = self.lo + (offset - low as u64);
        let mut next_moved = 0;
        while next_moved < self.moved.len() && self.moved[next_moved] <= next_lazy {
            next_lazy += 1;
            next_moved += 1;
        }
        let wanted = usize::try_from(total - offset).map_or(limit, |left| left.min(limit));
        let mut keys = Vec::with_capacity(wanted);
        while keys.len() < wanted {
            let lazy_key = (next_lazy < self.hi).then(|| (self.lazy.time_of(next_lazy), next_lazy));
            let stored_key = self.stored.get(next_stored).copied();
            match (lazy_key, stored_key) {
                (Some(lazy), Some(stored)) if stored < lazy => {
                    keys.push(stored);
                    next_stored += 1;
                }
                (Some(lazy), _) => {
                    keys.push(lazy);
                    next_lazy += 1;
                    while self.moved.get(next_moved) == Some(&next_lazy) {
                        next_lazy += 1;
                        next_moved += 1;
                    }
                }
                (None, Some(stored)) => {
                    keys.push(stored);
                    next_stored += 1;
                }
                (None, None) => break,
            }
        }
        keys
    }
}

// ---------------------------------------------------------------------------
// Generating an order from its index
// ---------------------------------------------------------------------------

const CREATED_SALT: u64 = 0x6372_6561_7465_6421;
const NAME_SALT: u64 = 0x6e61_6d65_7321_2121;
const LINE_SALT: u64 = 0x6c69_6e65_7321_2121;
const PRICE_SALT: u64 = 0x7072_6963_6573_2121;

const CITIES: &[&str] = &[
    "杭州", "上海", "北京", "深圳", "广州", "苏州", "南京", "成都", "武汉", "宁波", "厦门", "青岛",
];
const GIVEN_NAMES: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
];
const PRODUCTS: &[&str] = &[
    "不锈钢保温杯 500ml",
    "无线鼠标",
    "机械键盘 87键",
    "蓝牙耳机",
    "帆布托特包",
    "陶瓷茶具套装",
    "不粘炒锅 32cm",
    "轻薄羽绒服",
    "透气跑步鞋",
    "护眼台灯",
    "Type-C 数据线 1m",
    "A5 笔记本",
];
const STATUSES: &[&str] = &["1", "2", "3"];

/// The customer name belonging to customer number `customer` (0..500): a
/// company such as 杭州云帆贸易有限公司 or, for one in four, a person.
fn customer_name(customer: u64) -> String {
    let hash = mix(customer ^ NAME_SALT);
    if hash.is_multiple_of(4) {
        let mut name = String::from(pick(SURNAMES, hash >> 4));
        name.push_str(pick(GIVEN_NAMES, hash >> 12));
        if (hash >> 20).is_multiple_of(2) {
            name.push_str(pick(GIVEN_NAMES, hash >> 24));
        }
        return name;
    }
    [
        pick(CITIES, hash >> 4),
        pick(BRAND_FIRST, hash >> 12),
        pick(BRAND_SECOND, hash >> 20),
        pick(TRADES, hash >> 28),
        pick(COMPANY_FORMS, hash >> 36),
    ]
    .concat()
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[derive(Serialize)]
struct OrderJson {
    order_no: String,
    customer_name: String,
    customer_code: String,
    created_at: String,
    modified_at: String,
    amount: String,
    status: &'static str,
    shop_code: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    wide: Option<WideFields>,
    lines: Vec<LineJson>,
}

/// The extra scalars of a wide (benchmark) order.
#[derive(Serialize)]
struct WideFields {
    contact_first: &'static str,
    contact_last: &'static str,
    email: Option<String>,
    region: &'static str,
    remark: String,
    active: bool,
}

#[derive(Serialize)]
struct LineJson {
    sku: String,
    name: &'static str,
    qty: String,
    price: String,
}

/// Renders an order. Products and prices depend on the index only; the first
/// line's quantity and the status step with every revision, so each touch
/// changes the amount and the status.
fn render_order(order: OrderRef, wide: bool) -> OrderJson {
    let hash = mix(order.index);
    let revision = u64::from(order.revision);
    let line_count = if wide { 2 } else { 1 + hash % 3 };
    let mut amount = 0;
    let lines = (0..line_count)
        .map(|line| {
            let line_hash = mix(order.index.wrapping_mul(4).wrapping_add(line) ^ LINE_SALT);
            let product = line_hash % 2000;
            let price = 990 + mix(product ^ PRICE_SALT) % 4900 * 10;
            let base_qty = (line_hash >> 16) % 5;
            let qty = if line == 0 {
                1 + (base_qty + revision) % 5
            } else {
                1 + base_qty
            };
            amount += price * qty;
            LineJson {
                sku: format!("SKU-{product:05}"),
                name: pick(PRODUCTS, product),
                qty: qty.to_string(),
                price: money(price),
            }
        })
        .collect();
    let customer = order.index % 500;
    OrderJson {
        order_no: format!("SO{:07}", order.index),
        customer_name: customer_name(customer),
        customer_code: format!("C{customer:04}"),
        created_at: format_time(order.created),
        modified_at: format_time(order.modified),
        amount: money(amount),
        status: pick(STATUSES, (hash >> 8) + revision),
        shop_code: format!("SHOP{:02}", 1 + (hash >> 16) % 5),
        wide: wide.then(|| WideFields {
            contact_first: pick(FIRST_NAMES, hash >> 24),
            contact_last: pick(LAST_NAMES, hash >> 32),
            // Every tenth order has no e-mail, for the scheme's `default`.
            email: (!order.index.is_multiple_of(10)).then(|| format!("buyer{}@example.com", order.index % 500)),
            region: pick(REGIONS, hash >> 40),
            remark: format!("  deliver to dock {} before noon  ", 1 + (hash >> 44) % 9),
            active: !(hash >> 48).is_multiple_of(7),
        }),
        lines,
    }
}

const FIRST_NAMES: &[&str] = &["Wei", "Fang", "Lei", "Jing", "Min", "Tao"];
const LAST_NAMES: &[&str] = &["Zhang", "Wang", "Li", "Zhao", "Chen", "Liu"];
const REGIONS: &[&str] = &["east", "north", "south", "west", "central"];

// ---------------------------------------------------------------------------
// Source API
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paging {
    Page(u64),
    Offset(u64),
    /// `None` is the start; `Some` names the last order already returned.
    Cursor(Option<Key>),
}

#[derive(Clone, Debug)]
struct OrdersRequest {
    from: Option<(i64, String)>,
    to: Option<(i64, String)>,
    paging: Paging,
    size: u64,
}

fn parse_count(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, String> {
    params
        .get(name)
        .map(|text| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| format!("{name} must be a whole number, got '{text}'"))
        })
        .transpose()
}

fn parse_size(name: &str, size: Option<u64>) -> Result<u64, String> {
    match size.unwrap_or(DEFAULT_PAGE_SIZE) {
        0 => Err(format!("{name} must be at least 1")),
        size if size > MAX_PAGE_SIZE => Err(format!(
            "{name} {size} is over the maximum page size of {MAX_PAGE_SIZE}"
        )),
        size => Ok(size),
    }
}

impl OrdersRequest {
    fn parse(params: &HashMap<String, String>) -> Result<OrdersRequest, String> {
        let time_param = |name: &str| -> Result<Option<(i64, String)>, String> {
            params
                .get(name)
                .map(|text| parse_time(name, text).map(|secs| (secs, text.clone())))
                .transpose()
        };
        let from = time_param("modified_from")?;
        let to = time_param("modified_to")?;
        let page = parse_count(params, "page")?;
        let size = parse_count(params, "size")?;
        let offset = parse_count(params, "offset")?;
        let limit = parse_count(params, "limit")?;
        let cursor = params.get("cursor");
        let mixed = "use one paging family: page+size, offset+limit or cursor+size";
        let (paging, size) = if let Some(cursor) = cursor {
            if page.is_some() || offset.is_some() || limit.is_some() {
                return Err(mixed.to_owned());
            }
            let start = if cursor.is_empty() {
                None
            } else {
                Some(decode_cursor(cursor).ok_or_else(|| {
                    format!("cursor '{cursor}' is not one this server issued; pass next_cursor back unchanged")
                })?)
            };
            (Paging::Cursor(start), parse_size("size", size)?)
        } else if offset.is_some() || limit.is_some() {
            if page.is_some() || size.is_some() {
                return Err(mixed.to_owned());
            }
            (Paging::Offset(offset.unwrap_or(0)), parse_size("limit", limit)?)
        } else {
            let page = page.unwrap_or(1);
            if page == 0 {
                return Err("page starts at 1".to_owned());
            }
            (Paging::Page(page), parse_size("size", size)?)
        };
        Ok(OrdersRequest { from, to, paging, size })
    }

    /// `/orders?…` for the page after this one, which started at `offset`.
    fn next_link(&self, offset: u64, next_cursor: &str) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some((_, text)) = &self.from {
            params.push(("modified_from", text.clone()));
        }
        if let Some((_, text)) = &self.to {
            params.push(("modified_to", text.clone()));
        }
        match self.paging {
            Paging::Page(page) => {
                params.push(("page", (page + 1).to_string()));
                params.push(("size", self.size.to_string()));
            }
            Paging::Offset(_) => {
                params.push(("offset", (offset + self.size).to_string()));
                params.push(("limit", self.size.to_string()));
            }
            Paging::Cursor(_) => {
                params.push(("cursor", next_cursor.to_owned()));
                params.push(("size", self.size.to_string()));
            }
        }
        let query: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect();
        format!("/orders?{}", query.join("&"))
    }
}

fn encode_cursor((time, index): Key) -> String {
    format!("c{:016x}{index:016x}", time as u64)
}

fn decode_cursor(token: &str) -> Option<Key> {
    let hex = token.strip_prefix('c')?;
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let time = u64::from_str_radix(&hex[..16], 16).ok()? as i64;
    let index = u64::from_str_radix(&hex[16..], 16).ok()?;
    Some((time, index))
}

#[derive(Serialize)]
struct SourceReply {
    ok: bool,
    message: &'static str,
    data: OrdersPage,
}

#[derive(Serialize)]
struct OrdersPage {
    orders: Vec<OrderJson>,
    total: u64,
    has_more: bool,
    next_cursor: Option<String>,
    next: Option<String>,
}

impl ShopState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| given == token)
    }

    fn list(&self, request: &OrdersRequest) -> OrdersPage {
        let book = read(&self.book);
        let view = book.window(
            self.lazy,
            request.from.as_ref().map(|(secs, _)| *secs),
            request.to.as_ref().map(|(secs, _)| *secs),
        );
        let total = view.total();
        let offset = match request.paging {
            Paging::Page(page) => (page - 1).saturating_mul(request.size),
            Paging::Offset(offset) => offset,
            Paging::Cursor(None) => 0,
            Paging::Cursor(Some((time, index))) => view.rank((time, index.saturating_add(1))),
        };
        let size = usize::try_from(request.size).unwrap_or(usize::MAX);
        let keys = view.keys(offset, size);
        let refs: Vec<OrderRef> = keys
            .iter()
            .map(|&(_, index)| book.order_ref(self.lazy, index))
            .collect();
        drop(book);
        let has_more = offset + (keys.len() as u64) < total;
        let next_cursor = keys.last().filter(|_| has_more).map(|&key| encode_cursor(key));
        let next = next_cursor.as_deref().map(|cursor| request.next_link(offset, cursor));
        OrdersPage {
            orders: refs.into_iter().map(|order| render_order(order, self.wide)).collect(),
            total,
            has_more,
            next_cursor,
            next,
        }
    }
}

fn source_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"ok": false, "message": message}))).into_response()
}

async fn list_orders(
    State(state): State<Arc<ShopState>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    state.source_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return source_error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let params = match query {
        Ok(Query(params)) => params,
        Err(err) => return source_error(StatusCode::BAD_REQUEST, &format!("malformed query string: {err}")),
    };
    match OrdersRequest::parse(&params) {
        Ok(request) => Json(SourceReply {
            ok: true,
            message: "",
            data: state.list(&request),
        })
        .into_response(),
        Err(message) => source_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /orders/{order_no}/erp-link` with `{"erp_id": "…"}`: the shop stores the ERP's id
/// of one of its orders (a write-back). Answers in the source envelope.
async fn link_order(
    State(state): State<Arc<ShopState>>,
    Path(order_no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.authorized(&headers) {
        return source_error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let erp_id = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => match map.get("erp_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => return source_error(StatusCode::BAD_REQUEST, "body needs a non-empty string `erp_id`"),
        },
        _ => return source_error(StatusCode::BAD_REQUEST, "body must be a JSON object"),
    };
    let known = order_no
        .strip_prefix("SO")
        .and_then(|digits| digits.parse::<u64>().ok())
        .is_some_and(|index| index >= 1 && index <= state.lazy.records + read(&state.book).added);
    if !known {
        return Json(json!({"ok": false, "message": format!("no order {order_no}")})).into_response();
    }
    if state.refuse_links.load(Ordering::Relaxed) {
        return Json(json!({"ok": false, "message": format!("order {order_no} is locked")})).into_response();
    }
    lock(&state.links).insert(order_no, erp_id);
    Json(json!({"ok": true, "message": ""})).into_response()
}

/// `GET /orders/{order_no}`: one order as the source has it now.
async fn get_order(State(state): State<Arc<ShopState>>, headers: HeaderMap, Path(number): Path<String>) -> Response {
    state.source_calls.fetch_add(1, Ordering::Relaxed);
    if !state.authorized(&headers) {
        return source_error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let index = number.strip_prefix("SO").and_then(|digits| digits.parse::<u64>().ok());
    let book = read(&state.book);
    match index.filter(|&i| i >= 1 && i <= state.lazy.records + book.added) {
        Some(index) => {
            let order = render_order(book.order_ref(state.lazy, index), state.wide);
            drop(book);
            Json(json!({"ok": true, "message": "", "data": {"order": order}})).into_response()
        }
        None => source_error(StatusCode::NOT_FOUND, &format!("no order {number}")),
    }
}

// ---------------------------------------------------------------------------
// Target API
// ---------------------------------------------------------------------------

#[derive(Default)]
struct TargetTable {
    /// Row at position p has id `T{p + 1:07}`.
    rows: Vec<TargetRow>,
    by_bill_no: HashMap<String, usize>,
    /// Creates refused because the bill number was already stored (attempted duplicates).
    duplicate_creates: u64,
    /// Answers to batches sent with an `Idempotency-Key`, by key: a batch sent again with
    /// the same key gets the first answer and changes nothing.
    answers_by_key: HashMap<String, Vec<u8>>,
    /// Batches answered from `answers_by_key`.
    replayed_keys: u64,
}

/// A stored row keeps the text it arrived as; it is parsed only when a test reads it back.
struct TargetRow {
    bill_no: String,
    row: Box<RawValue>,
}

fn target_id(position: usize) -> String {
    format!("T{:07}", position + 1)
}

/// The row position named by a target id, if the id is well formed.
fn parse_target_id(id: &str) -> Option<usize> {
    let number: usize = id.strip_prefix('T')?.parse().ok()?;
    let position = number.checked_sub(1)?;
    (target_id(position) == id).then_some(position)
}

fn with_id(position: usize, row: &RawValue) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("id".to_owned(), Value::String(target_id(position)));
    // The text was valid JSON when it was stored.
    match serde_json::from_str::<Value>(row.get()).unwrap_or(Value::Null) {
        Value::Object(fields) => object.extend(fields),
        other => {
            object.insert("row".to_owned(), other);
        }
    }
    Value::Object(object)
}

/// A row that failed validation: its bill number (if readable) and why.
struct RowProblem {
    number: Option<String>,
    message: String,
}

/// The two fields a row is checked on, read without building the rest of the row.
#[derive(Deserialize)]
struct RowHead<'a> {
    #[serde(rename = "FBillNo", borrow, default)]
    bill_no: Option<&'a RawValue>,
    #[serde(rename = "FCustomerId", borrow, default)]
    customer: Option<&'a RawValue>,
}

/// Checks one row on its own and returns its bill number.
fn validate_row(row: &RawValue, reject_every: Option<u64>) -> Result<String, RowProblem> {
    let problem = |number: Option<&str>, message: String| RowProblem {
        number: number.map(str::to_owned),
        message,
    };
    if !row.get().trim_start().starts_with('{') {
        return Err(problem(None, "row must be a JSON object".to_owned()));
    }
    let head: RowHead =
        serde_json::from_str(row.get()).map_err(|err| problem(None, format!("row is not a valid object: {err}")))?;
    let parse = |raw: Option<&RawValue>| raw.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
    let bill_no_value = parse(head.bill_no);
    let customer_value = parse(head.customer);
    let bill_no = match bill_no_value.as_ref() {
        Some(Value::String(text)) if !text.is_empty() => text,
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(problem(None, "FBillNo is required".to_owned()))
        }
        Some(_) => return Err(problem(None, "FBillNo must be a string".to_owned())),
    };
    let customer = customer_value.as_ref().and_then(|value| value.get("FNumber"));
    let has_customer = match customer {
        None | Some(Value::Null) => false,
        Some(Value::String(text)) => !text.is_empty(),
        Some(_) => true,
    };
    if !has_customer {
        return Err(problem(Some(bill_no), "FCustomerId.FNumber is required".to_owned()));
    }
    if let Some(every) = reject_every {
        let digits: String = bill_no
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if let Ok(number) = digits.parse::<u64>() {
            if number % every == 0 {
                return Err(problem(
                    Some(bill_no),
                    format!("bill {bill_no} rejected by business rule: numbers divisible by {every} are not accepted"),
                ));
            }
        }
    }
    Ok(bill_no.clone())
}

#[derive(Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

#[derive(Serialize)]
struct TargetReply<T> {
    code: u32,
    message: &'static str,
    data: T,
}

#[derive(Serialize)]
struct BatchOutcome {
    results: Vec<CreatedRow>,
    errors: Vec<FailedRow>,
}

#[derive(Serialize)]
struct CreatedRow {
    index: usize,
    id: String,
    number: String,
}

#[derive(Serialize)]
struct FailedRow {
    index: usize,
    number: Option<String>,
    message: String,
}

fn target_error(status: StatusCode, code: u32, message: String) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

async fn create_batch(State(state): State<Arc<ShopState>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &key {
        let mut table = lock(&state.target);
        if let Some(answer) = table.answers_by_key.get(key).cloned() {
            table.replayed_keys += 1;
            return ([(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response();
        }
    }
    let response = create_batch_once(&state, body);
    match key {
        None => response,
        Some(key) => {
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            if parts.status.is_success() {
                lock(&state.target).answers_by_key.insert(key, bytes.to_vec());
            }
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
    }
}

fn create_batch_once(state: &Arc<ShopState>, body: Bytes) -> Response {
    state.create_calls.fetch_add(1, Ordering::Relaxed);
    let items = match serde_json::from_slice::<BatchRequest>(&body) {
        Ok(batch) => batch.items,
        Err(err) => {
            return target_error(
                StatusCode::BAD_REQUEST,
                400,
                format!("body must be {{\"items\": [row, ...]}}: {err}"),
            )
        }
    };
    if items.len() > MAX_BATCH_ROWS {
        return target_error(
            StatusCode::BAD_REQUEST,
            400,
            format!(
                "{} items in one batch; at most {MAX_BATCH_ROWS} are accepted",
                items.len()
            ),
        );
    }
    let mut results = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    {
        let mut table = lock(&state.target);
        let table = &mut *table;
        for (index, row) in items.into_iter().enumerate() {
            let bill_no = match validate_row(row, state.rejecting()) {
                Ok(bill_no) => bill_no,
                Err(problem) => {
                    errors.push(FailedRow {
                        index,
                        number: problem.number,
                        message: problem.message,
                    });
                    continue;
                }
            };
            if let Some(&existing) = table.by_bill_no.get(&bill_no) {
                table.duplicate_creates += 1;
                errors.push(FailedRow {
                    index,
                    message: format!(
                        "duplicate bill number {bill_no} (already stored as {})",
                        target_id(existing)
                    ),
                    number: Some(bill_no),
                });
                continue;
            }
            let position = table.rows.len();
            table.by_bill_no.insert(bill_no.clone(), position);
            table.rows.push(TargetRow {
                bill_no: bill_no.clone(),
                row: row.to_owned(),
            });
            results.push(CreatedRow {
                index,
                id: target_id(position),
                number: bill_no,
            });
        }
    }
    let all_failed = results.is_empty() && !errors.is_empty();
    Json(TargetReply {
        code: u32::from(all_failed),
        message: if all_failed { "all rows failed" } else { "ok" },
        data: BatchOutcome { results, errors },
    })
    .into_response()
}

async fn update_order(State(state): State<Arc<ShopState>>, Path(id): Path<String>, body: Bytes) -> Response {
    state.update_calls.fetch_add(1, Ordering::Relaxed);
    let row = match serde_json::from_slice::<Box<RawValue>>(&body) {
        Ok(row) => row,
        Err(err) => {
            return target_error(
                StatusCode::BAD_REQUEST,
                400,
                format!("body must be one JSON row: {err}"),
            )
        }
    };
    let mut table = lock(&state.target);
    let Some(position) = parse_target_id(&id).filter(|&position| position < table.rows.len()) else {
        return target_error(StatusCode::OK, 404, format!("no order with id {id}"));
    };
    let bill_no = match validate_row(&row, state.rejecting()) {
        Ok(bill_no) => bill_no,
        Err(problem) => return target_error(StatusCode::OK, 1, problem.message),
    };
    if let Some(&owner) = table.by_bill_no.get(&bill_no) {
        if owner != position {
            return target_error(
                StatusCode::OK,
                1,
                format!(
                    "duplicate bill number {bill_no} (already stored as {})",
                    target_id(owner)
                ),
            );
        }
    }
    let old_bill_no = std::mem::replace(&mut table.rows[position].bill_no, bill_no.clone());
    table.rows[position].row = row;
    if old_bill_no != bill_no {
        table.by_bill_no.remove(&old_bill_no);
        table.by_bill_no.insert(bill_no, position);
    }
    drop(table);
    Json(TargetReply {
        code: 0,
        message: "ok",
        data: json!({"id": id}),
    })
    .into_response()
}

async fn lookup_order(
    State(state): State<Arc<ShopState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let number = match query {
        Ok(Query(params)) => params.get("number").cloned(),
        Err(_) => None,
    };
    let Some(number) = number.filter(|number| !number.is_empty()) else {
        return target_error(
            StatusCode::BAD_REQUEST,
            400,
            "pass the bill number to look up as ?number=".to_owned(),
        );
    };
    let found = lock(&state.target).by_bill_no.get(&number).copied();
    Json(TargetReply {
        code: 0,
        message: "ok",
        data: found.map(|position| json!({"id": target_id(position)})),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::super::kit::test_time::naive as at;
    use super::super::{parse_query, InjectedFault};
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, Instant};
    use tokio::net::TcpListener;

    async fn start(cfg: ShopConfig) -> (ShopSim, SimHandle, reqwest::Client) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = ShopSim::start(cfg, listener).await.unwrap();
        (sim, handle, reqwest::Client::new())
    }

    async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post_batch(client: &reqwest::Client, base: &str, items: Value) -> Value {
        client
            .post(format!("{base}/orders/batch"))
            .json(&json!({ "items": items }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn order_nos(page: &Value) -> Vec<String> {
        page["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|order| order["order_no"].as_str().unwrap().to_owned())
            .collect()
    }

    fn row(bill_no: &str, customer: &str) -> Value {
        json!({"FBillNo": bill_no, "FCustomerId": {"FNumber": customer}, "FAmount": 10})
    }

    /// The window's order numbers computed the slow, obvious way.
    fn brute_force(sim: &ShopSim, from: Option<&str>, to: Option<&str>) -> Vec<String> {
        let mut keys: Vec<(String, String)> = (1..=sim.order_count())
            .map(|index| sim.order(index).unwrap())
            .map(|order| {
                let modified = order["modified_at"].as_str().unwrap().to_owned();
                (modified, order["order_no"].as_str().unwrap().to_owned())
            })
            .filter(|(modified, _)| {
                from.is_none_or(|from| modified.as_str() >= from) && to.is_none_or(|to| modified.as_str() < to)
            })
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, order_no)| order_no).collect()
    }

    /// Follows `next` links in-process, checking `total` on every page.
    fn collect_in_process(sim: &ShopSim, first_query: &str, expected: &[String]) -> Vec<String> {
        let mut query = first_query.to_owned();
        let mut seen = Vec::new();
        for _ in 0..10_000 {
            let params: HashMap<String, String> = parse_query(&query).into_iter().collect();
            let request = OrdersRequest::parse(&params).unwrap();
            let page = sim.state.list(&request);
            assert_eq!(page.total, expected.len() as u64, "total for {query}");
            seen.extend(page.orders.iter().map(|order| order.order_no.clone()));
            assert_eq!(page.has_more, page.next.is_some());
            match page.next {
                Some(next) => query = next.trim_start_matches("/orders?").to_owned(),
                None => return seen,
            }
        }
        panic!("paging did not end for {first_query}");
    }

    #[test]
    fn orders_are_generated_deterministically_with_the_documented_shape() {
        let sim = ShopSim::new(ShopConfig::default());
        let order = sim.order(7).unwrap();
        assert_eq!(order, ShopSim::new(ShopConfig::default()).order(7).unwrap());
        assert_eq!(order["order_no"], "SO0000007");
        assert_eq!(order["customer_code"], "C0007");
        assert_eq!(order["modified_at"], "2024-01-01 00:07:00");
        assert!(order["created_at"].as_str().unwrap() < "2024-01-01 00:07:00");
        assert!(["1", "2", "3"].contains(&order["status"].as_str().unwrap()));
        assert!(order["shop_code"].as_str().unwrap().starts_with("SHOP0"));
        let name = order["customer_name"].as_str().unwrap();
        assert!(name.chars().count() >= 2 && !name.is_ascii(), "{name}");
        let lines = order["lines"].as_array().unwrap();
        assert!((1..=3).contains(&lines.len()));
        let cents = |text: &str| -> u64 { text.replace('.', "").parse().unwrap() };
        let sum: u64 = lines
            .iter()
            .map(|line| {
                assert!(line["sku"].as_str().unwrap().starts_with("SKU-"));
                line["qty"].as_str().unwrap().parse::<u64>().unwrap() * cents(line["price"].as_str().unwrap())
            })
            .sum();
        assert_eq!(cents(order["amount"].as_str().unwrap()), sum);
        // The same customer code always carries the same name.
        assert_eq!(sim.order(507).unwrap()["customer_name"], name);
        assert!(sim.order(0).is_none() && sim.order(2501).is_none());
    }

    #[tokio::test]
    async fn window_bounds_are_inclusive_from_and_exclusive_to() {
        let (_sim, handle, client) = start(ShopConfig::default()).await;
        let url = format!(
            "{}/orders?modified_from=2024-01-01%2000:10:00&modified_to=2024-01-01+00:20:00",
            handle.base_url()
        );
        let (status, page) = get(&client, &url).await;
        assert_eq!(status, 200);
        assert_eq!(page["ok"], true);
        assert_eq!(page["data"]["total"], 10);
        let expected: Vec<String> = (10..20).map(|i| format!("SO{i:07}")).collect();
        assert_eq!(order_nos(&page), expected);
        assert_eq!(page["data"]["has_more"], false);
        assert_eq!(page["data"]["next"], Value::Null);
        assert_eq!(page["data"]["next_cursor"], Value::Null);
    }

    #[tokio::test]
    async fn total_and_has_more_follow_the_pages() {
        let (_sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        let window = "modified_from=2024-01-01%2000:10:00&modified_to=2024-01-01%2000:20:00";
        let (_, first) = get(&client, &format!("{base}/orders?{window}&page=1&size=4")).await;
        assert_eq!(first["data"]["total"], 10);
        assert_eq!(first["data"]["has_more"], true);
        assert_eq!(
            first["data"]["next"],
            format!(
                "/orders?modified_from=2024-01-01%2000%3A10%3A00&modified_to=2024-01-01%2000%3A20%3A00&page=2&size=4"
            )
        );
        let (_, last) = get(&client, &format!("{base}/orders?{window}&page=3&size=4")).await;
        assert_eq!(order_nos(&last), ["SO0000018", "SO0000019"]);
        assert_eq!(last["data"]["has_more"], false);
        let (_, beyond) = get(&client, &format!("{base}/orders?{window}&page=9&size=4")).await;
        assert!(order_nos(&beyond).is_empty());
        assert_eq!(beyond["data"]["total"], 10);
        let (_, all) = get(&client, &format!("{base}/orders")).await;
        assert_eq!(all["data"]["total"], 2500);
        assert_eq!(order_nos(&all).len(), DEFAULT_PAGE_SIZE as usize);
    }

    #[tokio::test]
    async fn paging_families_agree_with_each_other_over_http() {
        let (sim, handle, client) = start(ShopConfig {
            records: 400,
            ..ShopConfig::default()
        })
        .await;
        // Some moved and added orders inside the window make the merge matter.
        sim.touch(3, at("2024-01-01 02:30:30"));
        sim.touch(390, at("2024-01-01 01:00:00"));
        sim.add_orders(4, at("2024-01-01 03:00:00"));
        let base = handle.base_url();
        let window = "modified_from=2024-01-01%2000:30:00&modified_to=2024-01-01%2005:00:00";
        let expected = brute_force(&sim, Some("2024-01-01 00:30:00"), Some("2024-01-01 05:00:00"));
        assert_eq!(expected.len(), 270 + 2 + 4);
        let mut results = Vec::new();
        for family in ["page=1&size=50", "offset=0&limit=77", "cursor=&size=500", "size=33"] {
            let mut url = format!("{base}/orders?{window}&{family}");
            let mut seen = Vec::new();
            loop {
                let (status, page) = get(&client, &url).await;
                assert_eq!(status, 200, "{url}: {page}");
                assert_eq!(page["data"]["total"], expected.len());
                seen.extend(order_nos(&page));
                match page["data"]["next"].as_str() {
                    Some(next) => url = format!("{base}{next}"),
                    None => break,
                }
            }
            results.push(seen);
        }
        // Cursor paging driven by next_cursor alone.
        let mut cursor = String::new();
        let mut by_cursor = Vec::new();
        loop {
            let url = format!("{base}/orders?{window}&size=60&cursor={cursor}");
            let (_, page) = get(&client, &url).await;
            by_cursor.extend(order_nos(&page));
            match page["data"]["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        results.push(by_cursor);
        for seen in results {
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn paging_matches_brute_force_under_random_touches() {
        let mut rng = StdRng::seed_from_u64(2024);
        for round in 0..40 {
            let spacing = [0, 1, 7, 60][round % 4];
            let records = rng.gen_range(0..90);
            let sim = ShopSim::new(ShopConfig {
                records,
                spacing_secs: spacing,
                ..ShopConfig::default()
            });
            let base = sim.state.lazy.base;
            let span = records as i64 * spacing + 10;
            let random_time = |rng: &mut StdRng| base + rng.gen_range(-20..span + 20);
            for _ in 0..rng.gen_range(0..25) {
                let index = rng.gen_range(0..records + 3);
                let time = random_time(&mut rng);
                sim.touch(index, from_secs(time));
            }
            let added = rng.gen_range(0..4);
            let time = random_time(&mut rng);
            sim.add_orders(added, from_secs(time));
            for _ in 0..rng.gen_range(0..6) {
                let index = rng.gen_range(1..=sim.order_count() + 1);
                let time = random_time(&mut rng);
                sim.touch(index, from_secs(time));
            }
            for _ in 0..8 {
                let from = rng.gen_bool(0.8).then(|| format_time(random_time(&mut rng)));
                let to = rng.gen_bool(0.8).then(|| format_time(random_time(&mut rng)));
                let expected = brute_force(&sim, from.as_deref(), to.as_deref());
                let mut window = String::new();
                if let Some(from) = &from {
                    window.push_str(&format!("modified_from={}&", percent_encode(from)));
                }
                if let Some(to) = &to {
                    window.push_str(&format!("modified_to={}&", percent_encode(to)));
                }
                let size = rng.gen_range(1..15);
                for family in [
                    format!("page=1&size={size}"),
                    format!("offset=0&limit={size}"),
                    format!("cursor=&size={size}"),
                ] {
                    let query = format!("{window}{family}");
                    let seen = collect_in_process(&sim, &query, &expected);
                    assert_eq!(seen, expected, "round {round}, query {query}");
                }
            }
        }
    }

    #[test]
    fn a_million_orders_page_by_arithmetic() {
        let sim = ShopSim::new(ShopConfig {
            records: 1_000_000,
            record_bodies: false,
            ..ShopConfig::default()
        });
        let started = Instant::now();
        let from = format_time(to_secs(at("2024-01-01 00:00:00")) + 500_000 * 60);
        let to = format_time(to_secs(at("2024-01-01 00:00:00")) + 500_010 * 60);
        let query = format!(
            "modified_from={}&modified_to={}&size=500",
            percent_encode(&from),
            percent_encode(&to)
        );
        let expected: Vec<String> = (500_000..500_010).map(|i| format!("SO{i:07}")).collect();
        assert_eq!(collect_in_process(&sim, &query, &expected), expected);
        let params: HashMap<String, String> = parse_query("page=2000&size=500").into_iter().collect();
        let last = sim.state.list(&OrdersRequest::parse(&params).unwrap());
        assert_eq!(last.total, 1_000_000);
        assert_eq!(last.orders[0].order_no, "SO0999501");
        assert_eq!(last.orders.len(), 500);
        assert!(!last.has_more);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn touch_moves_an_order_into_a_later_window() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        let first_hour = format!("{base}/orders?modified_from=2024-01-01%2000:00:00&modified_to=2024-01-01%2001:00:00");
        let next_day = format!("{base}/orders?modified_from=2024-01-05%2000:00:00&modified_to=2024-01-06%2000:00:00");
        let before = sim.order(5).unwrap();
        let (_, page) = get(&client, &first_hour).await;
        assert_eq!(page["data"]["total"], 59);
        assert!(order_nos(&page).contains(&"SO0000005".to_owned()));

        assert!(sim.touch(5, at("2024-01-05 10:00:00")));
        assert!(!sim.touch(9_999, at("2024-01-05 10:00:00")));

        let (_, page) = get(&client, &first_hour).await;
        assert_eq!(page["data"]["total"], 58);
        assert!(!order_nos(&page).contains(&"SO0000005".to_owned()));
        let (_, page) = get(&client, &next_day).await;
        let orders = page["data"]["orders"].as_array().unwrap();
        let moved = orders.iter().find(|o| o["order_no"] == "SO0000005").unwrap();
        assert_eq!(moved["modified_at"], "2024-01-05 10:00:00");
        assert_ne!(moved["amount"], before["amount"]);
        assert_ne!(moved["status"], before["status"]);
        assert_eq!(moved["created_at"], before["created_at"]);

        let added = sim.add_orders(2, at("2024-01-05 11:00:00"));
        assert_eq!(added, 2501..2503);
        let (_, page) = get(&client, &next_day).await;
        assert_eq!(order_nos(&page), ["SO0000005", "SO0002501", "SO0002502"]);
    }

    #[tokio::test]
    async fn bad_paging_requests_get_a_400_envelope() {
        let (_sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        for (query, needle) in [
            ("size=501", "maximum page size of 500"),
            ("offset=0&limit=1000", "maximum page size of 500"),
            ("size=0", "at least 1"),
            ("page=0", "page starts at 1"),
            ("page=1&offset=3", "one paging family"),
            ("cursor=zzz", "not one this server issued"),
            ("modified_from=yesterday", "modified_from must look like"),
            ("page=two", "page must be a whole number"),
        ] {
            let (status, body) = get(&client, &format!("{base}/orders?{query}")).await;
            assert_eq!(status, 400, "{query}");
            assert_eq!(body["ok"], false);
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(needle), "{query}: {message}");
        }
    }

    #[tokio::test]
    async fn batch_reports_each_bad_row_with_its_index() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        let reply = post_batch(
            &client,
            &base,
            json!([
                row("SO0000001", "C0001"),
                {"FBillNo": "SO0000002", "FCustomerId": {}},
                {"FCustomerId": {"FNumber": "C0003"}},
                row("SO0000004", "C0004"),
                "not an object",
            ]),
        )
        .await;
        assert_eq!(reply["code"], 0);
        assert_eq!(reply["message"], "ok");
        assert_eq!(
            reply["data"]["results"],
            json!([
                {"index": 0, "id": "T0000001", "number": "SO0000001"},
                {"index": 3, "id": "T0000002", "number": "SO0000004"},
            ])
        );
        assert_eq!(
            reply["data"]["errors"],
            json!([
                {"index": 1, "number": "SO0000002", "message": "FCustomerId.FNumber is required"},
                {"index": 2, "number": null, "message": "FBillNo is required"},
                {"index": 4, "number": null, "message": "row must be a JSON object"},
            ])
        );
        assert_eq!(sim.target_count(), 2);
        assert_eq!(sim.create_calls(), 1);
        let rows = sim.target_rows();
        assert_eq!(rows[1]["id"], "T0000002");
        assert_eq!(rows[1]["FBillNo"], "SO0000004");

        let all_bad = post_batch(&client, &base, json!([{"FBillNo": "X1"}])).await;
        assert_eq!(all_bad["code"], 1);
        assert_eq!(all_bad["message"], "all rows failed");
        assert_eq!(all_bad["data"]["errors"][0]["index"], 0);
        assert_eq!(all_bad["data"]["results"], json!([]));

        let too_many: Vec<Value> = (0..501).map(|i| row(&format!("B{i}"), "C1")).collect();
        let response = client
            .post(format!("{base}/orders/batch"))
            .json(&json!({ "items": too_many }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(sim.target_count(), 2);
    }

    #[tokio::test]
    async fn duplicate_bill_numbers_are_detected() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        post_batch(&client, &base, json!([row("SO0000001", "C1")])).await;
        let reply = post_batch(
            &client,
            &base,
            json!([row("SO0000002", "C2"), row("SO0000001", "C1"), row("SO0000002", "C2")]),
        )
        .await;
        assert_eq!(reply["code"], 0);
        let errors = reply["data"]["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["index"], 1);
        assert_eq!(errors[1]["index"], 2);
        for error in errors {
            assert!(error["message"].as_str().unwrap().contains("duplicate bill number"));
        }
        assert_eq!(sim.target_count(), 2);
    }

    #[tokio::test]
    async fn rows_can_be_updated_by_id_and_looked_up_by_number() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        post_batch(&client, &base, json!([row("SO1", "C1"), row("SO2", "C2")])).await;

        let (_, found) = get(&client, &format!("{base}/orders/lookup?number=SO2")).await;
        assert_eq!(found, json!({"code": 0, "message": "ok", "data": {"id": "T0000002"}}));
        let (_, missing) = get(&client, &format!("{base}/orders/lookup?number=SO9")).await;
        assert_eq!(missing["code"], 0);
        assert_eq!(missing["data"], Value::Null);

        let put = |id: &str, body: Value| {
            let request = client.put(format!("{base}/orders/{id}")).json(&body);
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        let mut changed = row("SO2", "C9");
        changed["FAmount"] = json!(99);
        let reply = put("T0000002", changed).await;
        assert_eq!(reply, json!({"code": 0, "message": "ok", "data": {"id": "T0000002"}}));
        let stored = sim.target_row_by_bill_no("SO2").unwrap();
        assert_eq!(stored["id"], "T0000002");
        assert_eq!(stored["FAmount"], 99);
        assert_eq!(stored["FCustomerId"]["FNumber"], "C9");
        assert_eq!(sim.target_count(), 2);
        assert_eq!(sim.update_calls(), 1);

        let unknown = put("T0000099", row("SO3", "C3")).await;
        assert_eq!(unknown["code"], 404);
        assert_eq!(unknown["message"], "no order with id T0000099");
        assert_eq!(put("nonsense", row("SO3", "C3")).await["code"], 404);
        let clash = put("T0000001", row("SO2", "C2")).await;
        assert_eq!(clash["code"], 1);
        assert!(clash["message"].as_str().unwrap().contains("duplicate bill number"));

        // Renumbering a row moves the lookup key with it.
        assert_eq!(put("T0000001", row("SO1-R", "C1")).await["code"], 0);
        assert!(sim.target_row_by_bill_no("SO1").is_none());
        assert_eq!(sim.target_row_by_bill_no("SO1-R").unwrap()["id"], "T0000001");
    }

    #[tokio::test]
    async fn reject_every_fails_matching_rows_alone() {
        let (sim, handle, client) = start(ShopConfig {
            reject_every: Some(3),
            ..ShopConfig::default()
        })
        .await;
        let items: Vec<Value> = (1..=6).map(|i| row(&format!("SO{i:07}"), "C1")).collect();
        let reply = post_batch(&client, &handle.base_url(), json!(items)).await;
        let failed: Vec<u64> = reply["data"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert_eq!(failed, [2, 5]);
        assert!(reply["data"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("divisible by 3"));
        assert_eq!(sim.target_count(), 4);
    }

    #[tokio::test]
    async fn garbled_responses_are_not_json_but_the_handler_ran() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        let url = format!("{base}/orders?size=3");
        assert_eq!(get(&client, &url).await.0, 200);
        sim.update_faults(|faults| faults.garble_next = 2);
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(sim.source_calls(), 2);
        let batch = client
            .post(format!("{base}/orders/batch"))
            .json(&json!({"items": [row("SO1", "C1")]}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(serde_json::from_str::<Value>(&batch).is_err(), "{batch}");
        assert_eq!(sim.target_count(), 1, "the garbled create still happened");
        assert_eq!(sim.faults().garble_next, 0);
        assert_eq!(get(&client, &url).await.1["ok"], true);
        let faults: Vec<_> = sim.requests().iter().map(|r| r.fault).collect();
        assert_eq!(
            faults,
            [None, Some(InjectedFault::Garbled), Some(InjectedFault::Garbled), None]
        );
    }

    #[tokio::test]
    async fn fail_rate_is_reproducible_from_the_seed() {
        let faults = Faults {
            fail_rate: 0.5,
            seed: 42,
            ..Faults::default()
        };
        let (sim, handle, client) = start(ShopConfig {
            faults: faults.clone(),
            ..ShopConfig::default()
        })
        .await;
        let url = format!("{}/orders?size=1", handle.base_url());
        let mut runs = Vec::new();
        for _ in 0..2 {
            sim.set_faults(faults.clone());
            let mut statuses = Vec::new();
            for _ in 0..30 {
                statuses.push(client.get(&url).send().await.unwrap().status().as_u16());
            }
            runs.push(statuses);
        }
        let mut rng = StdRng::seed_from_u64(42);
        let expected: Vec<u16> = (0..30)
            .map(|_| if rng.gen::<f64>() < 0.5 { 500 } else { 200 })
            .collect();
        assert_eq!(runs[0], expected);
        assert_eq!(runs[1], expected);
        let failures = expected.iter().filter(|s| **s == 500).count();
        assert!((5..=25).contains(&failures), "{failures} failures");
        assert_eq!(sim.source_calls(), 60 - 2 * failures as u64);
    }

    #[tokio::test]
    async fn requests_over_the_rate_limit_get_429_with_retry_after() {
        let (sim, handle, client) = start(ShopConfig {
            faults: Faults {
                rate_limit_per_sec: Some(3),
                ..Faults::default()
            },
            ..ShopConfig::default()
        })
        .await;
        let url = format!("{}/orders?size=1", handle.base_url());
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let response = client.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            if status == 429 {
                assert_eq!(response.headers()["retry-after"], "1");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["ok"], false);
            }
            statuses.push(status);
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        assert_eq!(sim.source_calls(), 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn dropped_requests_close_the_connection_without_an_answer() {
        let (sim, handle, client) = start(ShopConfig::default()).await;
        let base = handle.base_url();
        sim.set_faults(Faults {
            drop_next: 1,
            ..Faults::default()
        });
        let outcome = client
            .post(format!("{base}/orders/batch"))
            .json(&json!({"items": [row("SO1", "C1")]}))
            .send()
            .await;
        assert!(outcome.is_err(), "expected a dropped connection: {outcome:?}");
        assert_eq!(sim.target_count(), 0, "a dropped request never reaches the handler");
        assert_eq!(sim.create_calls(), 0);
        assert_eq!(sim.requests()[0].fault, Some(InjectedFault::Dropped));
        assert_eq!(get(&client, &format!("{base}/orders?size=1")).await.0, 200);
    }

    #[tokio::test]
    async fn latency_delays_answers() {
        let (_sim, handle, client) = start(ShopConfig {
            faults: Faults {
                latency_ms: 150,
                ..Faults::default()
            },
            ..ShopConfig::default()
        })
        .await;
        let started = Instant::now();
        assert_eq!(
            get(&client, &format!("{}/orders?size=1", handle.base_url())).await.0,
            200
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn the_source_requires_the_configured_token() {
        let (sim, handle, client) = start(ShopConfig {
            token: Some("s3cret".to_owned()),
            ..ShopConfig::default()
        })
        .await;
        let url = format!("{}/orders?size=1", handle.base_url());
        let invalid = json!({"ok": false, "message": "invalid token"});
        let missing = client.get(&url).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        assert_eq!(missing.json::<Value>().await.unwrap(), invalid);
        let wrong = client.get(&url).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let right = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(right.status(), 200);
        let recorded = sim.requests();
        assert_eq!(recorded[2].header("authorization"), Some("Bearer s3cret"));
    }

    #[tokio::test]
    async fn benchmark_mode_keeps_counts_and_the_table_only() {
        let (sim, handle, client) = start(ShopConfig {
            record_bodies: false,
            ..ShopConfig::default()
        })
        .await;
        post_batch(&client, &handle.base_url(), json!([row("SO1", "C1")])).await;
        get(&client, &format!("{}/orders?size=5", handle.base_url())).await;
        assert!(sim.requests().is_empty());
        assert_eq!(sim.request_count(), 2);
        assert_eq!(sim.target_count(), 1);
        assert_eq!(sim.source_calls(), 1);
    }

    /// Throughput check for the hot path; run with
    /// `cargo test --release -- --ignored --nocapture target_throughput`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn target_throughput() {
        let (sim, handle, client) = start(ShopConfig {
            records: 100_000,
            record_bodies: false,
            ..ShopConfig::default()
        })
        .await;
        let base = handle.base_url();
        let started = Instant::now();
        let mut url = format!("{base}/orders?size=500");
        let mut bodies = Vec::new();
        loop {
            let (_, page) = get(&client, &url).await;
            let rows: Vec<Value> = page["data"]["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    json!({
                        "FBillNo": o["order_no"],
                        "FCustomerId": {"FNumber": o["customer_code"]},
                        "FAmount": o["amount"],
                        "FEntity": o["lines"],
                    })
                })
                .collect();
            bodies.push(serde_json::to_vec(&json!({ "items": rows })).unwrap());
            match page["data"]["next"].as_str() {
                Some(next) => url = format!("{base}{next}"),
                None => break,
            }
        }
        let read = started.elapsed();
        let started = Instant::now();
        for body in bodies {
            let response = client
                .post(format!("{base}/orders/batch"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }
        let written = started.elapsed();
        assert_eq!(sim.target_count(), 100_000);
        let rate = |elapsed: Duration| 100_000.0 / elapsed.as_secs_f64();
        println!(
            "source: {read:?} ({:.0} rows/s, client parsing included); target: {written:?} ({:.0} rows/s)",
            rate(read),
            rate(written)
        );
    }
}
