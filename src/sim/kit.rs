//! The simulator kit: small pieces the vendor simulators use alike, so each vendor file
//! keeps only what is its own. It owns seeded data (a hash, table picks, shared name
//! tables), naive-time seconds, JSON fault answers, SQL `LIKE`, the `Simulator` impl and
//! counter accessors macros, and the start of a simulator on a listener.

use std::io;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;

use super::{serve, SimHandle};

// ---------------------------------------------------------------------------
// Starting
// ---------------------------------------------------------------------------

/// Serves `sim`'s router on `listener`: the simulator and the running server's handle.
pub(crate) async fn start_sim<S>(
    sim: S,
    router: impl FnOnce(&S) -> Router,
    listener: TcpListener,
) -> io::Result<(S, SimHandle)> {
    let handle = serve(listener, router(&sim)).await?;
    Ok((sim, handle))
}

/// Public accessors of a simulator's request counters: each `name` (or `name: field`) in
/// `counters! { /// doc \n name, … }` is a `pub fn name(&self) -> u64` reading the
/// `AtomicU64` `self.state.name` (or `self.state.field`).
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident $(: $field:ident)?),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> u64 {
                counters!(@load self, $name $($field)?)
            }
        )*
    };
    (@load $self:ident, $name:ident) => {
        $self.state.$name.load(std::sync::atomic::Ordering::Relaxed)
    };
    (@load $self:ident, $name:ident $field:ident) => {
        $self.state.$field.load(std::sync::atomic::Ordering::Relaxed)
    };
}
pub(crate) use counters;

/// `impl Simulator for $sim` over its `self.state.control` (the trait must be in scope).
macro_rules! simulator {
    ($sim:ty) => {
        impl Simulator for $sim {
            fn control(&self) -> &$crate::sim::SimControl {
                &self.state.control
            }
        }
    };
}
pub(crate) use simulator;

// ---------------------------------------------------------------------------
// Fault answers
// ---------------------------------------------------------------------------

/// A JSON answer with `status`.
pub(crate) fn json_reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// A 429 JSON answer asking the client to come back in a second (`Retry-After: 1`).
pub(crate) fn too_many_requests(body: Value) -> Response {
    let mut response = json_reply(StatusCode::TOO_MANY_REQUESTS, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

// ---------------------------------------------------------------------------
// Seeded data
// ---------------------------------------------------------------------------

/// splitmix64: a seeded, well-spread hash of an index.
pub(crate) fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The entry of `table` that `hash` falls on.
pub(crate) fn pick<T: Copy>(table: &[T], hash: u64) -> T {
    table[usize::try_from(hash % table.len() as u64).unwrap_or(0)]
}

/// (province, city, district, postcode, area code).
pub(crate) const REGIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("浙江省", "杭州市", "西湖区", "310012", "0571"),
    ("浙江省", "宁波市", "鄞州区", "315100", "0574"),
    ("上海市", "上海市", "浦东新区", "200120", "021"),
    ("北京市", "北京市", "朝阳区", "100020", "010"),
    ("广东省", "深圳市", "南山区", "518052", "0755"),
    ("广东省", "广州市", "天河区", "510620", "020"),
    ("江苏省", "苏州市", "工业园区", "215021", "0512"),
    ("江苏省", "南京市", "鼓楼区", "210008", "025"),
    ("四川省", "成都市", "武侯区", "610041", "028"),
    ("湖北省", "武汉市", "江汉区", "430015", "027"),
    ("福建省", "厦门市", "思明区", "361001", "0592"),
    ("山东省", "青岛市", "市南区", "266071", "0532"),
];
/// First and second characters of a company's brand.
pub(crate) const BRAND_FIRST: &[&str] = &["云", "华", "鑫", "恒", "瑞", "嘉", "盛", "博", "明", "天", "中", "新"];
pub(crate) const BRAND_SECOND: &[&str] = &["帆", "达", "泰", "源", "丰", "昌", "信", "诚", "通", "宇", "锦", "悦"];
/// The trade in a company's name.
pub(crate) const TRADES: &[&str] = &[
    "贸易", "科技", "电子", "食品", "实业", "商贸", "网络", "物流", "服饰", "家居",
];
pub(crate) const COMPANY_FORMS: &[&str] = &["有限公司", "有限公司", "有限责任公司", "股份有限公司"];
pub(crate) const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"];

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Seconds of a naive time read as UTC.
pub(crate) fn to_secs(time: NaiveDateTime) -> i64 {
    time.and_utc().timestamp()
}

/// The naive time of a calendar day and clock time (the epoch when there is none).
pub(crate) fn naive_at(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|day| day.and_hms_opt(hour, minute, second))
        .unwrap_or_default()
}

/// The naive time of `secs` (the epoch when out of range).
pub(crate) fn from_secs(secs: i64) -> NaiveDateTime {
    DateTime::from_timestamp(secs, 0)
        .map(|time| time.naive_utc())
        .unwrap_or_default()
}

/// `secs` as naive time in `format` (empty when out of range).
pub(crate) fn format_secs(secs: i64, format: &str) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|time| time.naive_utc().format(format).to_string())
        .unwrap_or_default()
}

/// Seconds of `text` read as naive time in `format`.
pub(crate) fn parse_secs(text: &str, format: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(text.trim(), format).ok().map(to_secs)
}

/// The Asia/Shanghai wall clock of the instant `at`, as naive seconds.
pub(crate) fn shanghai_secs(at: DateTime<Utc>) -> i64 {
    to_secs(at.with_timezone(&chrono_tz::Asia::Shanghai).naive_local())
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

/// SQL `LIKE` with `%` (any run) and `_` (one character).
pub(crate) fn like(text: &[char], pattern: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => (0..=text.len()).any(|skip| like(&text[skip..], rest)),
        Some(('_', rest)) => !text.is_empty() && like(&text[1..], rest),
        Some((c, rest)) => text.first() == Some(c) && like(&text[1..], rest),
    }
}

/// Sends a connector's request as it stands, for the simulators' unit tests: the status
/// and the JSON answer.
#[cfg(test)]
pub(crate) async fn send_wire(client: &reqwest::Client, wire: crate::protocol::types::WireRequest) -> (u16, Value) {
    let (status, body) = send_wire_raw(client, wire).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// [`send_wire`], with the answer's bytes as they came.
#[cfg(test)]
pub(crate) async fn send_wire_raw(
    client: &reqwest::Client,
    wire: crate::protocol::types::WireRequest,
) -> (u16, axum::body::Bytes) {
    let method = reqwest::Method::from_bytes(wire.method.as_bytes()).unwrap();
    let mut builder = client.request(method, &wire.url);
    for (name, value) in &wire.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = wire.body {
        builder = builder.body(body);
    }
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap())
}

/// Times for the simulators' unit tests.
#[cfg(test)]
pub(crate) mod test_time {
    use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

    /// `YYYY-MM-DD HH:MM:SS` as naive time.
    pub(crate) fn naive(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// The instant whose China wall-clock time is `text`.
    pub(crate) fn china(text: &str) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .from_local_datetime(&naive(text))
            .unwrap()
            .with_timezone(&Utc)
    }
}
