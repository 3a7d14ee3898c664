//! The scheme file as written: serde + schemars types, no interpretation.
//!
//! These types are the single source of the scheme language: `ferry schema` and
//! `schema/scheme.schema.json` are generated from them, and [`super::check`] walks that schema
//! to report every structural problem at once. Templates, JSONPaths and durations stay strings
//! here; [`super::validate`] compiles them into the [`super::model::Plan`].

use crate::codec::Codec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One integration scheme: a source, a target, and the connections they use.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Ferry integration scheme")]
pub struct RawScheme {
    /// Unique name of the scheme; keys its mappings, checkpoints and failures in the store.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// IANA time zone for date filters and naive timestamps (default `Asia/Shanghai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Named connections; `source.connection` and `target.connection` refer to them.
    pub connections: BTreeMap<String, RawConnection>,
    pub source: RawSource,
    pub target: RawTarget,
    /// Value maps for the `map('name')` filter: source value → target value, with an optional `default`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_maps: BTreeMap<String, Map<String, Value>>,
    /// What runs do with the failure ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<RawFailurePolicy>,
    /// What a template does when it reads a field the record does not have: `strict` (the
    /// default) fails that record into the ledger naming the field; `lenient` reads it as null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined: Option<UndefinedMode>,
}

/// What reading a missing field means (`undefined:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UndefinedMode {
    /// A missing field fails the record (use `| default(…)` or `| optional` where a field may be absent).
    #[default]
    Strict,
    /// A missing field reads as null (how Ferry behaved before 0.2; data may go out incomplete).
    Lenient,
}

/// How the failure ledger is replayed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFailurePolicy {
    /// Retry the scheme's open ledger rows at the start of every run (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<bool>,
    /// Stop replaying a row automatically once it has failed this many times (default 5);
    /// `ferry failures retry` still retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A request budget for one connection (a token bucket).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// Requests per second, on average (fractions allowed, e.g. 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// Requests that may go at once after a quiet spell (default: one second's worth, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests in flight at once; overrides `in_flight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Share the budget through the store under this name, so every ferry process using the
    /// same store (a timer run and a CI run, say) stays under one limit together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

/// A connection to one system; `connector` picks the protocol.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "connector", deny_unknown_fields)]
pub enum RawConnection {
    /// A plain HTTP API described entirely by the scheme.
    #[serde(rename = "http")]
    Http(HttpConnection),
    /// Guanyiyun C-ERP (`gy.erp.*`): one RPC URL, MD5-signed JSON bodies.
    #[serde(rename = "guanyi")]
    Guanyi(VendorConnection<crate::connector::guanyi::Settings>),
    /// Kingdee K3Cloud WebAPI: signed X-Api/X-Kd headers or a legacy session.
    #[serde(rename = "kingdee-k3cloud")]
    K3Cloud(VendorConnection<crate::connector::k3cloud::Settings>),
    /// Kingdee Jingdou Cloud Xingchen (jdy) v2 gateway, or its legacy v1 API.
    #[serde(rename = "kingdee-jdy")]
    Jdy(VendorConnection<crate::connector::jdy::Settings>),
    /// Jackyun open API: form-encoded, lowercase-MD5 signed.
    #[serde(rename = "jackyun")]
    Jackyun(VendorConnection<crate::connector::jackyun::Settings>),
    /// Simply CRM (vtiger webservice.php): challenge/login sessions, VTQL query and sync.
    #[serde(rename = "simply-crm")]
    Simply(VendorConnection<crate::connector::simply::Settings>),
    /// ShareCRM / Fxiaoke OpenAPI, including the ERP data push.
    #[serde(rename = "fxiaoke")]
    Fxiaoke(VendorConnection<crate::connector::fxiaoke::Settings>),
    /// The ERP data-sync platform's standard interface for heterogeneous ERPs.
    #[serde(rename = "erp-standard")]
    ErpStandard(VendorConnection<crate::connector::erp_standard::Settings>),
}

impl RawConnection {
    /// The fields every connection has, whatever its connector.
    pub fn common(&self) -> HttpConnection {
        match self {
            RawConnection::Http(c) => c.clone(),
            RawConnection::Guanyi(c) => c.common(),
            RawConnection::K3Cloud(c) => c.common(),
            RawConnection::Jdy(c) => c.common(),
            RawConnection::Jackyun(c) => c.common(),
            RawConnection::Simply(c) => c.common(),
            RawConnection::Fxiaoke(c) => c.common(),
            RawConnection::ErpStandard(c) => c.common(),
        }
    }
    pub fn connector_name(&self) -> &'static str {
        match self {
            RawConnection::Http(_) => crate::connector::http::NAME,
            RawConnection::Guanyi(_) => crate::connector::guanyi::NAME,
            RawConnection::K3Cloud(_) => crate::connector::k3cloud::NAME,
            RawConnection::Jdy(_) => crate::connector::jdy::NAME,
            RawConnection::Jackyun(_) => crate::connector::jackyun::NAME,
            RawConnection::Simply(_) => crate::connector::simply::NAME,
            RawConnection::Fxiaoke(_) => crate::connector::fxiaoke::NAME,
            RawConnection::ErpStandard(_) => crate::connector::erp_standard::NAME,
        }
    }
}

/// A built-in vendor connector: the shared connection fields plus the vendor's `settings`
/// (credentials and protocol knobs; see the connector's section in the README).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorConnection<S> {
    /// The vendor's API address.
    pub base_url: String,
    /// Extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout, e.g. `30s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Source pages or target batches in flight at once on this connection (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Largest response body accepted, in MiB (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RawRate>,
    /// The server's time zone (IANA name): window limits are written in it and times in its
    /// records without an offset are read in it. Default: the vendor's (see its README section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Credentials and protocol options of this vendor. Write secrets as `${ENV_VAR}`.
    pub settings: S,
}

impl<S> VendorConnection<S> {
    fn common(&self) -> HttpConnection {
        HttpConnection {
            base_url: self.base_url.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout.clone(),
            in_flight: self.in_flight,
            max_response_mib: self.max_response_mib,
            retry: self.retry.clone(),
            rate: self.rate.clone(),
            timezone: self.timezone.clone(),
        }
    }
}

/// Settings every HTTP-based connection shares.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConnection {
    /// Base URL, e.g. `https://api.example.com`; request paths are appended to it.
    pub base_url: String,
    /// Headers sent with every request. Write credentials as `${ENV_VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout, e.g. `30s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Source pages or target batches in flight at once on this connection (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Largest response body accepted, in MiB (default 64); bigger answers are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_mib: Option<u32>,
    /// Retry policy for failed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    /// Rate limit: `{per_second, burst, max_in_flight, shared}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RawRate>,
    /// The server's time zone (IANA name): window limits are written in it and times in its
    /// records without an offset are read in it (default: the scheme's `timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Retries with exponential backoff and jitter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in total, first one included (default 4; 1 disables retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// First backoff, e.g. `200ms` (default 200ms); doubles each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Longest single backoff (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
    /// Give up once this much time has passed since the first attempt (default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_elapsed: Option<String>,
}

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One HTTP request; every string may hold `<< templates >>`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// Default GET for a source, POST for a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Path appended to the connection's base_url (`http` connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The vendor operation for built-in connectors, e.g. `gy.erp.shop.get` or `BatchSave`;
    /// `body` then holds its business parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Query parameters. An empty value after rendering is still sent.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub query: Map<String, Value>,
    /// Extra headers for this request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body: a value tree whose strings are templates (`"<< rows >>"` keeps its type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// How the body is encoded (default json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Codec>,
}

/// How to read a source response.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReadResponse {
    /// Body codec (default json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Codec>,
    /// Template over `body`; a false result fails the request, e.g. `<< body.ok >>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
    /// Template over `body` giving the message when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Template over `body` and `status`: true when the answer asks for the same request again
    /// later (a "busy" error in a 200); it is repeated with the connection's backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// The source: where records come from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Name of a connection.
    pub connection: String,
    /// Name of the source object in the mapping store (default: the scheme name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub request: RawRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawReadResponse>,
    /// JSONPath selecting the records in a page, e.g. `$.data.orders[*]` (built-in
    /// connectors know the list key of each api, so they may leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// JSONPath selecting the ids of records deleted at the source, e.g.
    /// `$.data.deleted[*]`, written as `id` gives them (Simply CRM's `sync` knows its own).
    /// Each goes to `target.delete`, or is counted and logged when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<RawPagination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<RawIncremental>,
    /// Fetch each listed record's full version (e.g. a bill with its detail rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RawDetail>,
    /// Template giving a record's source id, e.g. `<< order_no >>`.
    pub id: String,
    /// Template giving a record's display name (stored with its mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A per-record detail fetch: its templates read the listed record's fields.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDetail {
    pub request: RawRequest,
    /// JSONPath of the full record in the answer (built-in connectors know it per api).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
}

/// When a paginated read stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// Stop at the first page with no records.
    EmptyPage,
    /// Stop at the first page with fewer records than `size`.
    ShortPage,
    /// Stop once `total` records (read from the response) have been fetched.
    Total,
    /// Stop when the `has_more` flag is false.
    HasMore,
}

/// How the source is paged. Request templates read `page.number`, `page.size`,
/// `page.offset` and `page.cursor`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawPagination {
    /// One request, no paging.
    None {},
    /// `page.number` counts up from `start`.
    PageNumber {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<i64>,
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopRule>,
        /// JSONPath to the total record count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<String>,
        /// JSONPath to a has-more flag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has_more: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// `page.offset` counts up by `size` from `start` (default 0).
    Offset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<i64>,
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopRule>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has_more: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// `page.cursor` is a token read from the previous response; no token ends the read.
    Cursor {
        /// JSONPath to the next cursor token.
        cursor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has_more: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// The response names the next page's URL; no link ends the read.
    NextLink {
        /// JSONPath to the next URL (absolute, or a path on the same connection).
        next: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
}

/// Incremental reads in time windows, resumed from the last checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIncremental {
    /// Record field holding the modification time (reported as the high-water mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// First window start when there is no checkpoint, e.g. `2024-01-01 00:00:00`.
    pub start: String,
    /// Window length, e.g. `1d`, `6h`, `30m` (default 1d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Each window also re-reads this much before its start (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    /// Windows end no later than now minus lag (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
}

/// The target: where transformed rows are written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Name of a connection.
    pub connection: String,
    /// Name of the target object in the mapping store, e.g. `BD_Customer` (default: the scheme name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Rows per write request (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub batch: Option<u32>,
    /// Template over the row giving its business key, for matching per-row results by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Template giving the target name stored in the mapping (default: the source name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Operation for records without a mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<RawOperation>,
    /// Finds a target record by its business key (`target.key`). With it, a create whose
    /// answer was lost (a crash, a timeout, a 5xx) is checked instead of sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<RawLookup>,
    /// Operation for records already mapped to a target id (`target_id` in templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<RawOperation>,
    /// Operation deleting the target record of a record deleted at the source
    /// (`source.deleted`). Its templates read `source_id` and `target_id` (per row), or
    /// `rows` (each `{source_id, target_id}`) and `target_ids` (per batch); there is no
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<RawOperation>,
    /// The row sent to the target: a tree of field templates, with `for_each` for detail rows.
    #[schemars(schema_with = "field_tree_schema")]
    pub fields: Value,
}

/// A look-up of one target record by business key; its templates read `key` and `row`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub request: RawRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawReadResponse>,
    /// JSONPath to the found record's target id; nothing there (or null) means "not found".
    /// With `rows`, a JSONPath over each found record.
    pub id: String,
    /// Look many keys up in one request: JSONPath selecting the records found. The request's
    /// templates then read `keys` (the list of business keys) instead of `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
    /// With `rows`: JSONPath over each found record giving its business key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// With `rows`: most keys per request (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Whether an operation sends one request per batch or per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Batch,
    Row,
}

/// A write operation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOperation {
    pub request: RawRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawWriteResponse>,
    /// `batch` (body uses `rows`) or `row` (body uses `row`); inferred from the templates when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<Per>,
    /// When a write whose answer was lost (a timeout, a 5xx) may be sent again. By default
    /// never blindly: it is looked up (`target.lookup`) or held as uncertain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_writes: Option<RetryWrites>,
}

/// Ways to let a write be sent again when its answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryWrites {
    /// The request carries `<< batch.key >>` (e.g. in an `Idempotency-Key` header) and the
    /// target applies a key once: timeouts, lost answers and 5xx are retried like reads.
    IdempotencyKey,
    /// The target never acts on a request it answers with a 5xx status: those are retried.
    /// Timeouts and lost answers are still checked, never resent blindly.
    ServerErrors,
}

/// How to read a write response, including per-row outcomes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWriteResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Codec>,
    /// Template over `body`; false fails the whole request, e.g. `<< body.code == 0 >>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
    /// Template over `body` giving the message of a failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Template over `body` and `status`: true when the target did not act and asks for the
    /// same request again later; it is repeated with the connection's backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// JSONPath to the target ids of the rows that succeeded, in row order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_ids: Option<String>,
    /// JSONPath to the elements describing failed rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_errors: Option<String>,
    /// Template over a failed element giving the row's 0-based position (default `<< index >>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_error_index: Option<String>,
    /// Template over a failed element giving the row's business key (matched against `target.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_error_key: Option<String>,
    /// Template over a failed element giving its message (default `<< message >>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_error_message: Option<String>,
    /// For one-row requests: JSONPath to the target id in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn field_tree_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // The recursive field value is a root-level definition, so every `$ref` to it resolves
    // from the document root as editors expect.
    let field_value = serde_json::json!({
        "anyOf": [
            { "type": ["string", "number", "boolean", "null"] },
            { "type": "array", "items": { "$ref": "#/$defs/FieldValue" } },
            {
                "type": "object",
                "required": ["for_each", "fields"],
                "properties": {
                    "for_each": { "type": "string", "description": "JSONPath over the record selecting detail rows" },
                    "fields": { "type": "object", "additionalProperties": { "$ref": "#/$defs/FieldValue" } },
                    "key": { "type": "string", "description": "Template over a detail row giving its identity in the source, unique within the record (default: its position in the list). Used with `target_id`." },
                    "target_id": { "type": "string", "description": "The detail row's field that holds the target's id of the row (e.g. `FEntryID`). Ferry stores the ids the target answers and sends them on update, so changed rows are updated instead of appended. Not one of `fields`." }
                },
                "additionalProperties": false
            },
            { "type": "object", "additionalProperties": { "$ref": "#/$defs/FieldValue" } }
        ]
    });
    generator
        .definitions_mut()
        .insert("FieldValue".to_string(), field_value);
    schemars::json_schema!({
        "description": "Target fields. A string is a template (`<< expr >>`; a whole-value template keeps its type) or a JSONPath (`$.a.b`); an object nests fields; an object with `for_each` (a JSONPath over the record) and `fields` builds detail rows (with `target_id`, and optionally `key`, matched to the target's rows on update).",
        "type": "object",
        "additionalProperties": { "$ref": "#/$defs/FieldValue" }
    })
}

/// The JSON Schema of the scheme language.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(RawScheme);
    schema.to_value()
}
