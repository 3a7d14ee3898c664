//! The validated, compiled plan a run executes: templates and JSONPaths are compiled,
//! durations and times parsed, defaults filled in. Built only by [`super::validate`].

use crate::codec::Codec;
use crate::extract::JsonPath;
pub use crate::paginate::{PageStyle, PaginationPlan};
use crate::redact::Redactor;
use crate::scheme::raw::{Method, Per, RawScheme};
use crate::template::{Template, TemplateEnv};
pub use crate::transform::{DetailIdentity, ValueTemplate};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A scheme ready to run.
#[derive(Clone)]
pub struct Plan {
    pub name: String,
    /// The file it came from (for messages).
    pub file: String,
    pub timezone: chrono_tz::Tz,
    pub templates: Arc<TemplateEnv>,
    pub connections: BTreeMap<String, ConnectionPlan>,
    pub source: SourcePlan,
    pub target: TargetPlan,
    pub redactor: Redactor,
    /// How runs replay the failure ledger.
    pub failures: FailurePolicy,
    /// The field mapping tables `field_map` reads, by template name.
    pub field_tables: BTreeMap<String, super::field_tables::FieldTablePlan>,
    /// The scheme as written, after `${ENV}` resolution.
    pub raw: RawScheme,
}

/// How runs replay the failure ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Retry open ledger rows at the start of each run.
    pub replay: bool,
    /// Rows that failed this often are left for `ferry failures retry`.
    pub max_attempts: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            replay: true,
            max_attempts: 5,
        }
    }
}

/// A connection's request budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePlan {
    pub per_second: f64,
    pub burst: u32,
    /// Budget name in the store, when shared across processes.
    pub shared: Option<String>,
}

/// One connection, ready to send requests.
#[derive(Clone)]
pub struct ConnectionPlan {
    pub name: String,
    pub connector: &'static str,
    /// The protocol, with the connection's settings.
    pub protocol: std::sync::Arc<dyn crate::protocol::Protocol>,
    pub base_url: String,
    pub headers: Vec<(String, Template)>,
    pub timeout: Duration,
    pub in_flight: usize,
    pub max_response_bytes: usize,
    pub retry: RetryPolicy,
    pub rate: Option<RatePlan>,
    /// The server's time zone: window limits in requests are written in it, and times
    /// without an offset in its answers are read in it.
    pub zone: chrono_tz::Tz,
}

/// Retry policy of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// A request, templated.
#[derive(Clone)]
pub struct RequestPlan {
    pub method: Method,
    /// Path template (`http` connector).
    pub path: Option<Template>,
    /// Vendor operation template (built-in connectors); `body` holds its parameters.
    pub api: Option<Template>,
    pub query: Vec<(String, ValueTemplate)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<ValueTemplate>,
    pub codec: Codec,
}

#[derive(Clone)]
pub struct ReadResponsePlan {
    pub codec: Codec,
    pub success: Option<Template>,
    pub error: Option<Template>,
    /// True when the answer asks for the same request again later (`response.retry`).
    pub retry: Option<Template>,
}

#[derive(Clone)]
pub struct SourcePlan {
    pub connection: String,
    pub object: String,
    pub request: RequestPlan,
    pub response: ReadResponsePlan,
    pub records: JsonPath,
    /// Where a page lists the ids of records deleted at the source.
    pub deleted: Option<JsonPath>,
    pub pagination: PaginationPlan,
    /// When the scheme left paging to the connector: where the page goes in the parameters.
    pub auto_page: Option<crate::protocol::PagingDefaults>,
    pub incremental: Option<IncrementalPlan>,
    /// Per-record detail fetch, replacing each listed record with its full version.
    pub detail: Option<DetailPlan>,
    pub id: Template,
    pub name: Option<Template>,
    /// Receive mode: records are pushed to `ferry serve` rather than read. Then
    /// `connection` names the target's connection (for its zone and `in_flight`) and
    /// `request` is an empty stand-in that is never sent.
    pub receive: Option<ReceivePlan>,
}

/// A receiving source, ready to serve.
#[derive(Clone, Debug)]
pub struct ReceivePlan {
    /// `POST /receive/<path>`.
    pub path: String,
    pub format: crate::scheme::raw::ReceiveFormat,
    pub codec: crate::scheme::raw::ReceiveCodec,
    /// Routing by `objectApiName` / `objAPIName`; `None` takes any.
    pub object_api_name: Option<String>,
    /// Routing by `dataCenterId`; `None` takes any.
    pub data_center_id: Option<String>,
    /// The `token` header's expected value.
    pub token: Option<String>,
    /// Standard Webhooks secrets; empty when pushes need not be signed.
    pub signing_secrets: Vec<String>,
    pub tolerance_secs: i64,
    pub max_body: usize,
    pub max_pending: u64,
    /// The sender's own key for a push, in place of its `id`.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// Where a push's idempotency key is read.
#[derive(Clone, Debug)]
pub enum IdempotencyKey {
    /// A request header (matched without regard to case).
    Header(String),
    /// The first value a JSONPath finds in the decoded body.
    Path(JsonPath),
}

/// A per-record detail request and where the full record sits in its answer.
#[derive(Clone)]
pub struct DetailPlan {
    pub request: RequestPlan,
    pub records: JsonPath,
}

#[derive(Clone, Debug)]
pub struct IncrementalPlan {
    pub field: Option<String>,
    pub start: DateTime<Utc>,
    pub window: chrono::Duration,
    pub lookback: chrono::Duration,
    pub lag: chrono::Duration,
}

#[derive(Clone)]
pub struct TargetPlan {
    pub connection: String,
    pub object: String,
    pub batch: usize,
    pub key: Option<Template>,
    pub name: Option<Template>,
    pub create: OperationPlan,
    pub update: Option<OperationPlan>,
    /// Deletes the target record of a record deleted at the source.
    pub delete: Option<OperationPlan>,
    /// Finds a target record by business key, to settle writes whose answer was lost.
    pub lookup: Option<LookupPlan>,
    /// Stores the target id on the source record after a create (`target.writeback`).
    pub writeback: Option<WritebackPlan>,
    pub fields: ValueTemplate,
    /// The `for_each` lists of `fields` whose rows the target identifies by id.
    pub detail_lists: Vec<crate::protocol::DetailList>,
}

/// A write-back after a create: one request per created record on `connection`.
#[derive(Clone)]
pub struct WritebackPlan {
    pub connection: String,
    pub op: OperationPlan,
}

/// A look-up by business key: templates read `key` and `row`.
#[derive(Clone)]
pub struct LookupPlan {
    pub request: RequestPlan,
    pub response: ReadResponsePlan,
    /// The target id: over the answer, or over each found record of a batched look-up.
    pub id: JsonPath,
    /// A look-up of many keys per request (its templates read `keys`).
    pub batch: Option<LookupBatch>,
}

/// How a batched look-up's answer is read.
#[derive(Clone)]
pub struct LookupBatch {
    /// The records found.
    pub rows: JsonPath,
    /// Each found record's business key.
    pub key: JsonPath,
    /// Most keys per request.
    pub size: usize,
}

#[derive(Clone)]
pub struct OperationPlan {
    pub request: RequestPlan,
    pub response: WriteResponsePlan,
    pub per: Per,
    /// When a write whose answer was lost may be sent again (`retry_writes`).
    pub retry_writes: Option<crate::scheme::raw::RetryWrites>,
}

#[derive(Clone)]
pub struct WriteResponsePlan {
    pub codec: Codec,
    pub success: Option<Template>,
    pub error: Option<Template>,
    /// True when the answer asks for the same request again later (`response.retry`).
    pub retry: Option<Template>,
    pub row_ids: Option<JsonPath>,
    pub row_errors: Option<JsonPath>,
    pub row_error_index: Template,
    pub row_error_key: Option<Template>,
    pub row_error_message: Template,
    pub id: Option<JsonPath>,
}

impl Plan {
    pub fn source_connection(&self) -> &ConnectionPlan {
        &self.connections[&self.source.connection]
    }
    pub fn target_connection(&self) -> &ConnectionPlan {
        &self.connections[&self.target.connection]
    }
}
