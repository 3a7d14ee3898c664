//! The `erp-standard` connector: a heterogeneous ERP that implements the standard interface of
//! ShareCRM's ERP data-sync platform (seed 000, "API Development"; reference §6, where the
//! endpoint names are marked unverified).
//!
//! The ERP side exposes four endpoints under one base URL ("http://MyDoman/path/"):
//! * `create` and `update` (POST, JSON `{"objAPIName","masterFieldVal","detailFieldVals"}`),
//!   answering `data.masterDataId` and `data.detailDataIds` — Ferry uses them as a target, and
//!   reads `detailDataIds` as `{"<detail apiName>": [row ids in order]}` [INF] to match detail
//!   rows on update ([`envelope::attach_detail_ids`]);
//! * `queryMasterBatch` (GET `objAPIName, startTime, endTime` in ms, `includeDetail, offset,
//!   limit`; answers `data.totalNum` + `data.dataList`) and `queryMasterById` (GET `objAPIName,
//!   dataId, includeDetail`) — Ferry uses them as a source.
//!
//! Every call carries a `token` header (a static credential handed out by the ERP side;
//! [`sign`]). Answers come in two families ([`envelope`]): `code`/`message`/`data` as in the
//! seed, and the platform's own `errCode`/`errMsg` where success is `"s106240000"`.
//!
//! Configurable, and why:
//! * the four paths — the seed names them but the reference could not verify them ([UNK]);
//!   a path may also be a full URL;
//! * the success codes of the `code` family — the seed shows the field but no success value, so
//!   the default accepts `"0"` (the usual convention) and `"s106240000"` (the platform's only
//!   corroborated success literal) [INF];
//! * throttle codes — none are documented; HTTP 429 always counts as throttling [UNK];
//! * page size and `includeDetail` — the seed gives no limit [UNK];
//! * the master field holding the ERP id on `update` — the seed's update body has no separate id,
//!   so the id travels inside `masterFieldVal` (default field `id`) [INF].

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "erp-standard";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str = "a heterogeneous ERP implementing the ShareCRM ERP data-sync standard interface \
                         (create, update, queryMasterBatch, queryMasterById) behind a `token` header";

/// Settings fields that hold credentials (masked in logs and diagnostics).
pub const SECRET_FIELDS: &[&str] = &["token"];

/// Default success codes of the `code` family [INF].
pub const DEFAULT_SUCCESS_CODES: &[&str] = &["0", "s106240000"];
/// Default page size of `queryMasterBatch` [UNK].
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Default master field carrying the ERP id on `update` [INF].
pub const DEFAULT_ID_FIELD: &str = "id";

/// The four standard endpoints, by the names schemes use as `api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Create,
    Update,
    QueryMasterBatch,
    QueryMasterById,
}

impl Api {
    /// Every api, in the seed's order.
    pub const ALL: [Api; 4] = [Api::Create, Api::Update, Api::QueryMasterBatch, Api::QueryMasterById];

    /// The name used in schemes and as the default path.
    pub fn name(self) -> &'static str {
        match self {
            Api::Create => "create",
            Api::Update => "update",
            Api::QueryMasterBatch => "queryMasterBatch",
            Api::QueryMasterById => "queryMasterById",
        }
    }

    /// The api called `name`, if any.
    pub fn parse(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.name() == name)
    }

    /// Writes are POSTed JSON bodies; queries are GETs with a query string.
    pub fn is_write(self) -> bool {
        matches!(self, Api::Create | Api::Update)
    }
}

/// Credentials and knobs of one connection to a standard-interface ERP.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ErpStandardSettings")]
pub struct Settings {
    /// The authentication string sent as the `token` header.
    pub token: String,
    /// Path (relative to base_url, or a full URL) of `create` (default `create`).
    #[serde(default)]
    pub create_path: Option<String>,
    /// Path of `update` (default `update`).
    #[serde(default)]
    pub update_path: Option<String>,
    /// Path of `queryMasterBatch` (default `queryMasterBatch`).
    #[serde(default)]
    pub query_batch_path: Option<String>,
    /// Path of `queryMasterById` (default `queryMasterById`).
    #[serde(default)]
    pub query_by_id_path: Option<String>,
    /// Values of `code` that mean success (default `["0", "s106240000"]`).
    #[serde(default)]
    pub success_codes: Option<Vec<String>>,
    /// Values of `code` / `errCode` that mean "slow down" (default none; HTTP 429 always does).
    #[serde(default)]
    pub throttle_codes: Option<Vec<String>>,
    /// `limit` of `queryMasterBatch` pages (default 100).
    #[serde(default)]
    pub page_size: Option<u64>,
    /// `includeDetail` sent with queries (default true).
    #[serde(default)]
    pub include_detail: Option<bool>,
    /// Master field carrying the ERP id in `update` bodies (default `id`).
    #[serde(default)]
    pub id_field: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token", &"***")
            .field("create_path", &self.path(Api::Create))
            .field("update_path", &self.path(Api::Update))
            .field("query_batch_path", &self.path(Api::QueryMasterBatch))
            .field("query_by_id_path", &self.path(Api::QueryMasterById))
            .field("success_codes", &self.success_codes())
            .field("throttle_codes", &self.throttle_codes())
            .field("page_size", &self.page_size())
            .field("include_detail", &self.include_detail())
            .field("id_field", &self.id_field())
            .finish()
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|text| !text.is_empty())
}

impl Settings {
    /// Settings with only a token; everything else at its default.
    pub fn with_token(token: impl Into<String>) -> Settings {
        Settings {
            token: token.into(),
            create_path: None,
            update_path: None,
            query_batch_path: None,
            query_by_id_path: None,
            success_codes: None,
            throttle_codes: None,
            page_size: None,
            include_detail: None,
            id_field: None,
        }
    }

    /// The configured path of `api`, or its standard name.
    pub fn path(&self, api: Api) -> &str {
        let configured = match api {
            Api::Create => &self.create_path,
            Api::Update => &self.update_path,
            Api::QueryMasterBatch => &self.query_batch_path,
            Api::QueryMasterById => &self.query_by_id_path,
        };
        non_empty(configured).unwrap_or(api.name())
    }

    /// Codes that mean success.
    pub fn success_codes(&self) -> Vec<&str> {
        match &self.success_codes {
            Some(codes) => codes.iter().map(String::as_str).collect(),
            None => DEFAULT_SUCCESS_CODES.to_vec(),
        }
    }

    /// Codes that mean "slow down".
    pub fn throttle_codes(&self) -> Vec<&str> {
        self.throttle_codes.iter().flatten().map(String::as_str).collect()
    }

    /// `limit` of batch query pages.
    pub fn page_size(&self) -> u64 {
        self.page_size.filter(|size| *size > 0).unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// `includeDetail` of queries.
    pub fn include_detail(&self) -> bool {
        self.include_detail.unwrap_or(true)
    }

    /// Master field carrying the ERP id on update.
    pub fn id_field(&self) -> &str {
        non_empty(&self.id_field).unwrap_or(DEFAULT_ID_FIELD)
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "ERP standard interface",
    summary: "The ERP data-sync platform's standard interface for heterogeneous ERPs.",
    example_api: "queryMasterBatch",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        request::build(self, call.base_url, call.api, call.params)
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify_with(self, status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        envelope::default_paging(api)
    }

    envelope_answers!();

    fn reports_detail_ids(&self) -> bool {
        true
    }

    fn attach_detail_ids(
        &self,
        api: &str,
        _params: &Value,
        body: &Value,
        lists: &[DetailList],
        outcomes: &mut [RowOutcome],
    ) {
        envelope::attach_detail_ids(api, body, lists, outcomes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let s: Settings = serde_json::from_value(json!({"token": "T"})).unwrap();
        assert_eq!(s.path(Api::QueryMasterBatch), "queryMasterBatch");
        assert_eq!(s.path(Api::Create), "create");
        assert_eq!(s.success_codes(), ["0", "s106240000"]);
        assert!(s.throttle_codes().is_empty());
        assert_eq!(s.page_size(), 100);
        assert!(s.include_detail());
        assert_eq!(s.id_field(), "id");
    }

    #[test]
    fn configured_values_win() {
        let s: Settings = serde_json::from_value(json!({
            "token": "T", "create_path": "erp/api/saveOrder", "update_path": " ",
            "success_codes": ["200"], "throttle_codes": ["E429"], "page_size": 0, "id_field": "FID"
        }))
        .unwrap();
        assert_eq!(s.path(Api::Create), "erp/api/saveOrder");
        assert_eq!(s.path(Api::Update), "update");
        assert_eq!(s.success_codes(), ["200"]);
        assert_eq!(s.throttle_codes(), ["E429"]);
        assert_eq!(s.page_size(), 100);
        assert_eq!(s.id_field(), "FID");
        assert!(serde_json::from_value::<Settings>(json!({"token": "T", "base_url": "x"})).is_err());
    }

    #[test]
    fn api_names_round_trip() {
        for api in Api::ALL {
            assert_eq!(Api::parse(api.name()), Some(api));
        }
        assert_eq!(Api::parse("query"), None);
        assert!(Api::Create.is_write() && !Api::QueryMasterById.is_write());
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", Settings::with_token("s3cr3t-token"));
        assert!(!text.contains("s3cr3t-token") && text.contains("***"), "{text}");
    }
}
