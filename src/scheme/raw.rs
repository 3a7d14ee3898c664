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
    #[schemars(extend("examples" = ["Asia/Shanghai", "UTC"]))]
    pub timezone: Option<String>,
    /// Named connections; `source.connection` and `target.connection` refer to them.
    pub connections: BTreeMap<String, RawConnection>,
    /// Where records come from: the request, its paging and time windows, and each record's id.
    pub source: RawSource,
    /// Where rows go: the create/update operations, batching and the field templates.
    pub target: RawTarget,
    /// Value maps for the `map('name')` filter: source value → target value, with an optional `default`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_maps: BTreeMap<String, Map<String, Value>>,
    /// Store-backed value tables for the `field_map('name')` filter (the ERP field mapping
    /// table: employees, dictionary values, … that differ between the two systems). Rows are
    /// edited with `ferry field-mappings`, or seeded from a CSV file kept next to the scheme.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_mappings: BTreeMap<String, RawFieldMappingTable>,
    /// What runs do with the failure ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<RawFailurePolicy>,
    /// What a template does when it reads a field the record does not have: `strict` (the
    /// default) fails that record into the ledger naming the field; `lenient` reads it as null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined: Option<UndefinedMode>,
}

/// One field mapping table a scheme reads (`field_mappings.NAME`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFieldMappingTable {
    /// The table's data type in the store (default: the name under `field_mappings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["employee"]))]
    pub data_type: Option<String>,
    /// The table's channel: ERP_K3CLOUD, ERP_SAP, ERP_U8, OA or STANDARD_CHANNEL (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["ERP_K3CLOUD"]))]
    pub channel: Option<String>,
    /// The data center (account set) id; empty (the default) for a single account set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center: Option<String>,
    /// A CSV file (relative to the scheme file) whose rows are put into the store at the
    /// start of every run; `ferry field-mappings lint` shows where file and store differ.
    /// Columns: crm_value, erp_value and optionally crm_name, erp_name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["employees.csv"]))]
    pub file: Option<String>,
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
    #[schemars(extend("examples" = [5, 0.5]))]
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
    #[schemars(extend("examples" = ["kingdee-prod"]))]
    pub shared: Option<String>,
}

/// A connection to one system; `connector` picks the protocol.
///
/// The connectors are [`crate::protocol::CONNECTORS`]: this type keeps a connector's own
/// `settings` as data, and scheme validation opens them through that table. Its JSON
/// Schema, one variant per connector, is built from the same table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    /// Which connector speaks to this system (`http`, `kingdee-k3cloud`, …).
    pub connector: String,
    pub base_url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RawRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The connector's own settings (credentials and protocol knobs), read by its
    /// [`crate::protocol::Connector::open`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

impl RawConnection {
    /// The fields every connection has, whatever its connector.
    pub fn common(&self) -> HttpConnection {
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

impl JsonSchema for RawConnection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RawConnection".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let templated = HttpConnection::json_schema(generator);
        let vendor = VendorConnection::json_schema(generator);
        let variants: Vec<Value> = crate::protocol::CONNECTORS
            .iter()
            .map(|connector| {
                let fields = if connector.settings_schema.is_some() {
                    &vendor
                } else {
                    &templated
                };
                let mut properties = Map::new();
                properties.insert(
                    "connector".into(),
                    serde_json::json!({"type": "string", "const": connector.name}),
                );
                if let Some(own) = fields.get("properties").and_then(Value::as_object) {
                    properties.extend(own.clone());
                }
                let mut required = vec![Value::from("connector"), Value::from("base_url")];
                if let Some(settings) = connector.settings_schema {
                    let mut settings = settings(generator).to_value();
                    if let Some(map) = settings.as_object_mut() {
                        map.insert(
                            "description".into(),
                            "Credentials and protocol options of this vendor. Write secrets as `${ENV_VAR}`.".into(),
                        );
                    }
                    properties.insert("settings".into(), settings);
                    required.push("settings".into());
                }
                serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "properties": properties,
                    "required": required,
                    "description": connector.summary,
                    "title": format!("{} connection (`connector: {}`)", connector.title, connector.name),
                })
            })
            .collect();
        let mut schema = schemars::json_schema!({ "oneOf": variants });
        schema.insert("title".into(), "Connection".into());
        schema.insert(
            "description".into(),
            "A connection to one system; `connector` picks the protocol.".into(),
        );
        describe_connector_tag(&mut schema);
        schema
    }
}

/// The shared fields of a built-in vendor connection, as its JSON Schema describes them
/// (the `http` connector's are [`HttpConnection`]).
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct VendorConnection {
    /// The vendor's API address (see the connector's README section for each vendor's host).
    #[schemars(extend("examples" = ["${K3CLOUD_URL}", "https://api.kingdee.com", "https://open.fxiaoke.com"]))]
    base_url: String,
    /// Extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    /// Per-request timeout, e.g. `30s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["30s", "2m"]))]
    timeout: Option<String>,
    /// Source pages or target batches in flight at once on this connection (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_flight: Option<u32>,
    /// Largest response body accepted, in MiB (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_response_mib: Option<u32>,
    /// Retry policy for failed calls (throttling and session expiry are classified by the
    /// connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<RawRetry>,
    /// Rate limit: `{per_second, burst, max_in_flight, shared}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<RawRate>,
    /// The server's time zone (IANA name): window limits are written in it and times in its
    /// records without an offset are read in it. Default: the vendor's (see its README section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["Asia/Shanghai", "UTC"]))]
    timezone: Option<String>,
}

/// Settings every HTTP-based connection shares.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConnection {
    /// Base URL, e.g. `https://api.example.com`; request paths are appended to it.
    #[schemars(extend("examples" = ["https://api.example.com", "${SHOP_URL}", "${ERP_URL:-http://127.0.0.1:8080}"]))]
    pub base_url: String,
    /// Headers sent with every request. Write credentials as `${ENV_VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout, e.g. `30s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["30s", "2m"]))]
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
    #[schemars(extend("examples" = ["Asia/Shanghai", "UTC"]))]
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
    #[schemars(extend("examples" = ["200ms", "1s"]))]
    pub backoff: Option<String>,
    /// Longest single backoff (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["10s", "1m"]))]
    pub max_backoff: Option<String>,
    /// Give up once this much time has passed since the first attempt (default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["2m", "10m"]))]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// Default GET for a source, POST for a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Path appended to the connection's base_url (`http` connector); may hold templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["/orders", "/orders/<< target_id >>"]))]
    pub path: Option<String>,
    /// The vendor operation for built-in connectors; `body` then holds its business
    /// parameters. Per connector, e.g.: `guanyi` `gy.erp.shop.get`, `gy.erp.trade.get`,
    /// `gy.erp.vip.add`; `kingdee-k3cloud` `ExecuteBillQuery`, `BatchSave`, `View`;
    /// `kingdee-jdy` `scm/pur_inbound`, `scm/pur_inbound_detail`; `jackyun`
    /// `crm.customer.list`, `crm.customer.add`; `simply-crm` `query`, `sync`, `create`,
    /// `revise`; `fxiaoke` `/cgi/crm/v2/data/query`, `/cgi/crm/erp/syncdata/objdata/push`;
    /// `erp-standard` `queryMasterBatch`, `create`, `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = [
        "gy.erp.shop.get", "ExecuteBillQuery", "BatchSave", "scm/pur_inbound", "crm.customer.list",
        "crm.customer.add", "query", "create", "/cgi/crm/v2/data/query",
        "/cgi/crm/erp/syncdata/objdata/push", "queryMasterBatch"
    ]))]
    pub api: Option<String>,
    /// Query parameters. An empty value after rendering is still sent.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(extend("examples" = [{"modified_from": "<< window.start | datetime >>", "page": "<< page.number >>"}]))]
    pub query: Map<String, Value>,
    /// Extra headers for this request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body: a value tree whose strings are templates (`"<< rows >>"` keeps its type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = [{"items": "<< rows >>"}, "<< row >>"]))]
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
    #[schemars(extend("examples" = ["<< body.ok >>", "<< body.code == 0 >>"]))]
    pub success: Option<String>,
    /// Template over `body` giving the message when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< body.message >>"]))]
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
    /// Name of a connection (a key under `connections`); a `receive` source has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("examples" = ["shop", "guanyi"]))]
    pub connection: String,
    /// Receive mode: other systems push records to `ferry serve` instead of Ferry reading
    /// them; a receiving source has no `connection`, `request`, `pagination` or
    /// `incremental`. `records` (default `$`) and `id` read each pushed record: a
    /// standard-format push is `{id, objAPIName, masterFieldVal, detailFieldVals}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<RawReceive>,
    /// Name of the source object in the mapping store (default: the scheme name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["order", "BD_Customer"]))]
    pub object: Option<String>,
    /// The list request. Its templates read `window.start`/`window.end` (the incremental
    /// window) and `page.number`, `page.size`, `page.offset`, `page.cursor`.
    #[serde(default, skip_serializing_if = "RawRequest::is_empty")]
    pub request: RawRequest,
    /// How to read and judge the answer (`http` connector; built-in connectors judge their
    /// vendor's envelope themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawReadResponse>,
    /// JSONPath selecting the records in a page, e.g. `$.data.orders[*]` (built-in
    /// connectors know the list key of each api, so they may leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.data.orders[*]", "$.items[*]"]))]
    pub records: Option<String>,
    /// JSONPath selecting the ids of records deleted at the source, e.g.
    /// `$.data.deleted[*]`, written as `id` gives them (Simply CRM's `sync` knows its own).
    /// Each goes to `target.delete`, or is counted and logged when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.data.deleted[*]"]))]
    pub deleted: Option<String>,
    /// How the source is paged; choose a `style`. Built-in connectors page their list apis
    /// themselves, so leave it out there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<RawPagination>,
    /// Read in time windows from a checkpoint, so each run reads only what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<RawIncremental>,
    /// Fetch each listed record's full version (e.g. a bill with its detail rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RawDetail>,
    /// Template giving a record's source id, e.g. `<< order_no >>`.
    #[schemars(extend("examples" = ["<< order_no >>", "<< masterFieldVal.id >>"]))]
    pub id: String,
    /// Template giving a record's display name (stored with its mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< customer_name >>"]))]
    pub name: Option<String>,
}

impl RawRequest {
    /// Nothing set (a receiving source's request).
    pub fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.path.is_none()
            && self.api.is_none()
            && self.query.is_empty()
            && self.headers.is_empty()
            && self.body.is_none()
            && self.codec.is_none()
    }
}

/// A receiving source (`ferry serve`): where pushes arrive, how they are routed, read
/// and authenticated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReceive {
    /// The endpoint is `POST /receive/<path>` (default: the scheme name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["orders"]))]
    pub path: Option<String>,
    /// `standard` (the `id` header is required and the body is
    /// `{objAPIName, masterFieldVal, detailFieldVals}`), `non_standard` (any body, read with
    /// `codec`) or `any` (the default: standard when the `id` header is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ReceiveFormat>,
    /// How a non-standard body is decoded (default json); `text` gives `{text: "<body>"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<ReceiveCodec>,
    /// Routing: the `objectApiName` header (or `objAPIName` in the body) this scheme takes.
    #[serde(default, rename = "objectApiName", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["SaleOrderObj"]))]
    pub object_api_name: Option<String>,
    /// Routing: the `dataCenterId` header (or `data.dataCenterId`) this scheme takes.
    #[serde(default, rename = "dataCenterId", skip_serializing_if = "Option::is_none")]
    pub data_center_id: Option<String>,
    /// Who may push. Without it anyone who reaches the port may (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawReceiveAuth>,
    /// Largest body accepted, in bytes (default 1048576); bigger pushes get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<u64>,
    /// Most pending inbox rows of this scheme (default 100000); past it pushes get 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u64>,
    /// What identifies a push when the sender sets its own key (default: the `id` header,
    /// or `data.id`): a header (e.g. `webhook-id`, `Idempotency-Key`) or a JSONPath into
    /// the decoded body. Pushes with the same key and the same payload are one push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<RawIdempotencyKey>,
}

/// Where a push's idempotency key is read: exactly one of `header` and `path`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotencyKey {
    /// A request header, e.g. `Idempotency-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["Idempotency-Key"]))]
    pub header: Option<String>,
    /// A JSONPath into the decoded body, e.g. `$.eventId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.eventId"]))]
    pub path: Option<String>,
}

/// Which seed-000 format a receiving source takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveFormat {
    /// Standard when the `id` header is set, non-standard otherwise.
    #[default]
    Any,
    Standard,
    NonStandard,
}

/// How a non-standard push body is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveCodec {
    #[default]
    Json,
    Xml,
    Form,
    /// The body as text: the record is `{text: "<body>"}`.
    Text,
}

/// A receiver's credentials; every value should come from `${VARIABLES}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReceiveAuth {
    /// The `token` header each push must carry (compared in constant time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["${PUSH_TOKEN}"]))]
    pub token: Option<String>,
    /// Standard Webhooks secrets (`whsec_…`); when set, every push must be signed by one
    /// (several while a secret is rotated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<String>,
    /// How far a signature's timestamp may be from now (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<String>,
}

/// A per-record detail fetch: its templates read the listed record's fields.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDetail {
    /// The detail request, sent once per listed record; its templates read that record,
    /// e.g. `body: {id: "<< id >>"}`.
    pub request: RawRequest,
    /// JSONPath of the full record in the answer (built-in connectors know it per api).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.data"]))]
    pub records: Option<String>,
}

pub use crate::protocol::types::StopRule;

/// How the source is paged: `style` is one of `none`, `page_number`, `offset`, `cursor` or
/// `next_link`, and each style takes only its own fields. Request templates read
/// `page.number`, `page.size`, `page.offset` and `page.cursor`.
// Each variant carries a `title` naming its style, so an editor that matches no variant can
// say which ones it tried; `ferry validate` names the style a misplaced field belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(title = "Pagination", transform = describe_style_tag)]
pub enum RawPagination {
    /// One request per window, no paging: `{style: none}`.
    #[schemars(title = "No paging (`style: none`)")]
    None {},
    /// Page numbers: `page.number` counts up from `start` (default 1), `size` records a
    /// page, e.g. `{style: page_number, start: 1, size: 100, stop: total, total: $.data.total}`.
    #[schemars(title = "Page numbers (`style: page_number`)")]
    PageNumber {
        /// The first page's number (default 1; some APIs count from 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = [1, 0]))]
        start: Option<i64>,
        /// Records asked for per page (`page.size` in templates).
        #[schemars(extend("examples" = [100]))]
        size: u64,
        /// When the read stops (default: `total` when `total` is set, else `has_more` when
        /// `has_more` is set, else `empty_page`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopRule>,
        /// JSONPath to the total record count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = ["$.data.total", "$.total"]))]
        total: Option<String>,
        /// JSONPath to a has-more flag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = ["$.data.has_more"]))]
        has_more: Option<String>,
        /// Abort the read (never truncate it silently) after this many pages in one window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// Record offsets: `page.offset` counts up by `size` from `start` (default 0), e.g.
    /// `{style: offset, size: 100, total: $.data.total}`.
    #[schemars(title = "Record offsets (`style: offset`)")]
    Offset {
        /// The first page's offset (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<i64>,
        /// Records asked for per page (`page.size` in templates); the offset grows by it.
        #[schemars(extend("examples" = [100]))]
        size: u64,
        /// When the read stops (default: `total` when `total` is set, else `has_more` when
        /// `has_more` is set, else `empty_page`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopRule>,
        /// JSONPath to the total record count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = ["$.data.total", "$.total"]))]
        total: Option<String>,
        /// JSONPath to a has-more flag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = ["$.data.has_more"]))]
        has_more: Option<String>,
        /// Abort the read (never truncate it silently) after this many pages in one window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// A cursor token: `page.cursor` is read from the previous response; no token ends the
    /// read, e.g. `{style: cursor, cursor: $.data.next_cursor, size: 100}`.
    #[schemars(title = "Cursor tokens (`style: cursor`)")]
    Cursor {
        /// JSONPath to the next cursor token.
        #[schemars(extend("examples" = ["$.data.next_cursor", "$.meta.cursor"]))]
        cursor: String,
        /// Records asked for per page, offered to templates as `page.size`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// JSONPath to a has-more flag; with it the read stops when the flag is false,
        /// without it at the first empty page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("examples" = ["$.data.has_more"]))]
        has_more: Option<String>,
        /// Abort the read (never truncate it silently) after this many pages in one window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_pages: Option<u64>,
    },
    /// A next-page link: the response names the next page's URL; no link ends the read, e.g.
    /// `{style: next_link, next: $.links.next}`.
    #[schemars(title = "Next-page links (`style: next_link`)")]
    NextLink {
        /// JSONPath to the next URL (absolute, or a path on the same connection).
        #[schemars(extend("examples" = ["$.links.next", "$.next"]))]
        next: String,
        /// Records asked for per page, offered to templates as `page.size`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// Abort the read (never truncate it silently) after this many pages in one window.
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
    #[schemars(extend("examples" = ["modified_at", "modify_date", "masterFieldVal.lastModifyTime"]))]
    pub field: Option<String>,
    /// First window start when there is no checkpoint, e.g. `2024-01-01 00:00:00`.
    #[schemars(extend("examples" = ["2024-01-01 00:00:00", "2024-01-01"]))]
    pub start: String,
    /// Window length, e.g. `1d`, `6h`, `30m` (default 1d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["1d", "6h", "30d"]))]
    pub window: Option<String>,
    /// Each window also re-reads this much before its start (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["10m"]))]
    pub lookback: Option<String>,
    /// Windows end no later than now minus lag (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["1m"]))]
    pub lag: Option<String>,
}

/// The target: where transformed rows are written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Name of a connection (a key under `connections`).
    #[schemars(extend("examples" = ["erp", "k3cloud"]))]
    pub connection: String,
    /// Name of the target object in the mapping store, e.g. `BD_Customer` (default: the scheme name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["BD_Customer", "SAL_SaleOrder"]))]
    pub object: Option<String>,
    /// Rows per write request (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub batch: Option<u32>,
    /// Template over the row giving its business key, for matching per-row results by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< FNumber >>", "<< FBillNo >>"]))]
    pub key: Option<String>,
    /// Template giving the target name stored in the mapping (default: the source name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< FName >>"]))]
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
    /// Write-back (回写): after each successful create, one request that stores the
    /// target's id on the source record. Its templates read `record` (the source record),
    /// `source_id` and `target_id`; a refused or failed write-back goes to the ledger and
    /// is sent again by the next runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writeback: Option<RawWriteback>,
    /// The row sent to the target: a tree of field templates, with `for_each` for detail rows.
    #[schemars(schema_with = "field_tree_schema")]
    pub fields: Value,
}

/// A write-back to the source after a create (see [`RawTarget::writeback`]).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWriteback {
    /// The connection the write-back goes to (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["shop"]))]
    pub connection: Option<String>,
    /// One request per created record; its templates read `record`, `source_id` and `target_id`.
    pub request: RawRequest,
    /// How to judge the answer, as for a write (`success`, `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawWriteResponse>,
}

/// A look-up of one target record by business key; its templates read `key` and `row`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    /// The look-up request; its templates read `key` (or `keys` with `rows`) and `row`.
    pub request: RawRequest,
    /// How to read and judge the answer (`http` connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RawReadResponse>,
    /// JSONPath to the found record's target id; nothing there (or null) means "not found".
    /// With `rows`, a JSONPath over each found record.
    #[schemars(extend("examples" = ["$.data.id", "$[0]"]))]
    pub id: String,
    /// Look many keys up in one request: JSONPath selecting the records found. The request's
    /// templates then read `keys` (the list of business keys) instead of `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$[*]", "$.data.items[*]"]))]
    pub rows: Option<String>,
    /// With `rows`: JSONPath over each found record giving its business key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$[1]", "$.number"]))]
    pub key: Option<String>,
    /// With `rows`: most keys per request (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Whether an operation sends one request per batch or per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One request per batch of rows; its templates read `rows`.
    Batch,
    /// One request per row; its templates read `row`.
    Row,
}

/// A write operation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOperation {
    /// The write request; its templates read `rows` (per batch) or `row` (per row), and
    /// `target_id` in an update.
    pub request: RawRequest,
    /// How to read the answer: success, the ids written and the rows refused (`http`
    /// connector; built-in connectors read their vendor's answers themselves).
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
    /// Body codec (default json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Codec>,
    /// Template over `body`; false fails the whole request, e.g. `<< body.code == 0 >>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< body.code == 0 >>", "<< body.ok >>"]))]
    pub success: Option<String>,
    /// Template over `body` giving the message of a failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["<< body.message >>"]))]
    pub error: Option<String>,
    /// Template over `body` and `status`: true when the target did not act and asks for the
    /// same request again later; it is repeated with the connection's backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// JSONPath to the target ids of the rows that succeeded, in row order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.data.results[*].id"]))]
    pub row_ids: Option<String>,
    /// JSONPath to the elements describing failed rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["$.data.errors[*]"]))]
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
    #[schemars(extend("examples" = ["$.data.id"]))]
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
                    "for_each": {
                        "type": "string",
                        "description": "JSONPath over the record selecting detail rows",
                        "examples": ["$.lines[*]"]
                    },
                    "fields": {
                        "type": "object",
                        "description": "The fields of each detail row; their templates read the detail row's own fields",
                        "additionalProperties": { "$ref": "#/$defs/FieldValue" }
                    },
                    "key": {
                        "type": "string",
                        "description": "Template over a detail row giving its identity in the source, unique within the record (default: its position in the list). Used with `target_id`.",
                        "examples": ["<< line_no >>"]
                    },
                    "target_id": {
                        "type": "string",
                        "description": "The detail row's field that holds the target's id of the row (e.g. `FEntryID`). Ferry stores the ids the target answers and sends them on update, so changed rows are updated instead of appended. Not one of `fields`.",
                        "examples": ["FEntryID"]
                    }
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
        "additionalProperties": { "$ref": "#/$defs/FieldValue" },
        "examples": [{
            "FNumber": "<< code >>",
            "FName": "<< name | trim >>",
            "FEntity": { "for_each": "$.lines[*]", "fields": { "FQty": "<< qty | int >>" } }
        }]
    })
}

/// Describes the tag property (`tag`) of every variant of a tagged enum's `oneOf`: an editor
/// hovering `style: cursor` then shows what that style is, not a bare constant.
///
/// Every variant is a mapping, so the enum says so itself: an editor then reports a scalar
/// written in its place against the enum's title, not against one variant's.
fn describe_tag(schema: &mut schemars::Schema, tag: &str) {
    schema.insert("type".into(), Value::String("object".into()));
    let Some(variants) = schema.get_mut("oneOf").and_then(Value::as_array_mut) else {
        return;
    };
    for variant in variants {
        let Some(variant) = variant.as_object_mut() else {
            continue;
        };
        let what = variant
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(property) = variant
            .get_mut("properties")
            .and_then(|properties| properties.get_mut(tag))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let Some(value) = property.get("const").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        property.insert(
            "description".into(),
            Value::String(
                format!("`{tag}: {value}` selects this variant. {what}")
                    .trim_end()
                    .to_string(),
            ),
        );
        property.insert("examples".into(), Value::Array(vec![Value::String(value)]));
    }
}

fn describe_connector_tag(schema: &mut schemars::Schema) {
    describe_tag(schema, "connector");
}

fn describe_style_tag(schema: &mut schemars::Schema) {
    describe_tag(schema, "style");
}

/// The `$id` of the scheme language's JSON Schema. It names the schema and is never fetched:
/// editors load the file itself (`schema/scheme.schema.json`, through the modeline at the top
/// of a scheme or an editor setting). A URN, because Ferry owns no web address that a URL
/// here could promise to serve; `v1` changes only with an incompatible scheme language.
pub const SCHEMA_ID: &str = "urn:ferry:scheme-schema:v1";

/// The JSON Schema of the scheme language.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(RawScheme);
    let generated = match schema.to_value() {
        Value::Object(generated) => generated,
        other => return other,
    };
    // Identity first, then the rest in the generated order.
    let mut ordered = Map::new();
    for key in ["$schema", "$id", "title", "description"] {
        match key {
            "$id" => {
                ordered.insert(key.into(), Value::String(SCHEMA_ID.into()));
            }
            _ => {
                if let Some(value) = generated.get(key) {
                    ordered.insert(key.into(), value.clone());
                }
            }
        }
    }
    for (key, value) in generated {
        ordered.entry(key).or_insert(value);
    }
    Value::Object(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(path, property schema)` under a `properties` map anywhere in `node`.
    fn properties<'v>(node: &'v Value, path: &str, out: &mut Vec<(String, &'v Value)>) {
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "properties" {
                        for (name, property) in child.as_object().into_iter().flatten() {
                            let here = format!("{path}.{name}");
                            out.push((here.clone(), property));
                            properties(property, &here, out);
                        }
                    } else {
                        properties(child, &format!("{path}/{key}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    properties(item, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_property_has_a_description() {
        let schema = json_schema();
        let mut all = Vec::new();
        properties(&schema, "#", &mut all);
        assert!(all.len() > 150, "the walk found only {} properties", all.len());
        let undescribed: Vec<&str> = all
            .iter()
            .filter(|(_, property)| {
                property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(|text| text.trim().is_empty())
            })
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(
            undescribed.is_empty(),
            "properties without a description (add a doc comment to the field):\n  {}",
            undescribed.join("\n  ")
        );
    }

    /// Each variant of a tagged enum names its tag value in its title, and the tag property
    /// is a described constant. Returns the tag values in order.
    fn tagged_variants(schema: &Value, definition: &str, tag: &str) -> Vec<String> {
        let enum_schema = &schema["$defs"][definition];
        assert!(enum_schema["title"].is_string(), "{definition} has no title");
        assert_eq!(enum_schema["type"], "object", "{definition}");
        let variants = enum_schema["oneOf"].as_array().expect("a oneOf");
        variants
            .iter()
            .map(|variant| {
                let property = &variant["properties"][tag];
                let value = property["const"].as_str().expect("the tag is a constant").to_string();
                let title = variant["title"].as_str().unwrap_or_default();
                assert!(
                    title.contains(&format!("`{tag}: {value}`")),
                    "{definition} variant `{value}` has title {title:?}"
                );
                assert!(variant["description"].is_string(), "{definition} variant `{value}`");
                let about = property["description"].as_str().unwrap_or_default();
                assert!(
                    about.starts_with(&format!("`{tag}: {value}` selects")),
                    "{definition}.{tag} of `{value}`: {about:?}"
                );
                assert_eq!(variant["required"][0], tag, "{definition} variant `{value}`");
                assert_eq!(property["examples"], serde_json::json!([value]), "{definition}.{tag}");
                value
            })
            .collect()
    }

    #[test]
    fn tagged_variants_have_titles_and_described_tags() {
        let schema = json_schema();
        assert_eq!(
            tagged_variants(&schema, "RawPagination", "style"),
            ["none", "page_number", "offset", "cursor", "next_link"]
        );
        let connectors: Vec<&str> = crate::protocol::CONNECTORS.iter().map(|c| c.name).collect();
        assert_eq!(tagged_variants(&schema, "RawConnection", "connector"), connectors);
    }

    #[test]
    fn the_schema_names_itself_first_with_a_stable_id() {
        let schema = json_schema();
        let keys: Vec<&str> = schema.as_object().unwrap().keys().map(String::as_str).take(4).collect();
        assert_eq!(keys, ["$schema", "$id", "title", "description"]);
        // Editors and users may pin this id; change it only with an incompatible language.
        assert_eq!(schema["$id"], "urn:ferry:scheme-schema:v1");
        assert_eq!(schema["title"], "Ferry integration scheme");
    }

    /// Every `(property name, example)` in the schema.
    fn examples(schema: &Value) -> Vec<(String, Value)> {
        let mut all = Vec::new();
        properties(schema, "#", &mut all);
        all.iter()
            .flat_map(|(path, property)| {
                let name = path.rsplit('.').next().unwrap_or_default().to_string();
                property["examples"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |example| (name.clone(), example.clone()))
            })
            .collect()
    }

    #[test]
    fn the_typed_fields_have_examples_and_every_example_is_valid() {
        let schema = json_schema();
        let examples = examples(&schema);
        for wanted in [
            "timeout", "window", "lookback", "lag", "start", "records", "total", "cursor", "next", "row_ids", "id",
            "api", "success", "timezone", "base_url", "for_each",
        ] {
            assert!(
                examples.iter().any(|(name, _)| name == wanted),
                "`{wanted}` has no examples"
            );
        }
        let templates = crate::template::TemplateEnv::new(Default::default());
        let mut checked = 0;
        for (name, example) in &examples {
            let Some(text) = example.as_str() else { continue };
            let problem = if matches!(
                name.as_str(),
                "timeout" | "backoff" | "max_backoff" | "max_elapsed" | "window" | "lookback" | "lag"
            ) {
                crate::window::parse_duration(text).err()
            } else if name == "start" {
                crate::window::parse_time(text, chrono_tz::Asia::Shanghai).err()
            } else if name == "timezone" {
                text.parse::<chrono_tz::Tz>().err().map(|e| e.to_string())
            } else if text.starts_with('$') && !text.starts_with("${") {
                crate::extract::JsonPath::parse(text).err().map(|e| e.to_string())
            } else if text.contains("<<") {
                templates.compile(text).err().map(|e| e.message)
            } else {
                continue;
            };
            assert!(problem.is_none(), "example {text:?} of `{name}`: {problem:?}");
            checked += 1;
        }
        assert!(checked > 30, "only {checked} examples were checked");
    }
}
