//! The `fxiaoke` connector: ShareCRM / 纷享销客 OpenAPI (reference §6).
//!
//! What it owns (all pure; the engine does the IO):
//! * [`sign`]: the token exchange. Fxiaoke signs nothing; a call is authorised by a cached token,
//!   so this module builds the token request, reads the token answer (with its expiry) and makes
//!   the fresh `thirdTraceId` UUID each URL may carry.
//! * [`request`]: business calls. The old generation (default) puts `corpAccessToken`, `corpId`
//!   and `currentOpenUserId` at the top level of the JSON body with the business arguments under
//!   `data`; the new generation (`generation: oauth2`) sends the token as
//!   `authorization: Bearer`, `x-fs-ea` and `x-fs-userid` headers with the same `{"data": …}` body.
//!   The two are never mixed. The ERP push (`/cgi/crm/erp/syncdata/objdata/push`) is checked
//!   before it is built: `destObjectApiName` is required when `directSync` is true.
//! * [`envelope`]: answers are always HTTP 200; `errorCode == 0` is success (the ERP platform's
//!   own `errCode == "s106240000"` spelling is accepted too), 20016 means "token expired: refresh
//!   once", 30004 / 14001 (and -1 "system busy") mean "slow down", and 30002 / 30003 (quota) are
//!   failures that retrying will not fix.
//!
//! Promises: the token is requested only when the engine asks (it caches [`sign::Token`] and
//! refreshes when [`sign::Token::refresh_due`] says so or after a `SessionExpired` verdict);
//! secrets never appear in `Debug` output.
//!
//! Configurable, and why: the generation (old tenants vs. new apps), the operator identity (it
//! decides data permissions), the default `dataCenterId` for pushes, and how long before expiry
//! a token is renewed (the server hands back the same token for ~6600 s of its 7200 s life, so
//! the default margin of 600 s is the point from which a renewal yields a new token).

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "fxiaoke";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str =
    "ShareCRM / Fxiaoke (纷享销客) OpenAPI: CRM object queries and ERP data push, authorised by a cached corpAccessToken";

/// Settings fields that hold credentials (masked in logs and diagnostics).
pub const SECRET_FIELDS: &[&str] = &["app_secret", "permanent_code"];

/// Which token scheme the tenant uses. The two must not be mixed in one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "FxiaokeGeneration")]
pub enum Generation {
    /// `POST /cgi/corpAccessToken/get/V2`; token, corpId and operator in the JSON body.
    #[default]
    CorpAccessToken,
    /// `POST /oauth2.0/token`; `authorization: Bearer`, `x-fs-ea` and `x-fs-userid` headers.
    Oauth2,
}

/// Credentials and knobs of one Fxiaoke connection.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FxiaokeSettings")]
pub struct Settings {
    /// The custom app's id, `FSAID_…`.
    pub app_id: String,
    /// The custom app's secret.
    pub app_secret: String,
    /// The enterprise's permanent authorisation code for the app.
    pub permanent_code: String,
    /// Old generation: the operator `currentOpenUserId` (`FSUID_…`). Use a CRM administrator;
    /// the operator decides which records are visible and writable.
    #[serde(default)]
    pub current_open_user_id: Option<String>,
    /// New generation: the operator's CRM employee id sent as `x-fs-userid` (e.g. `1000`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// `corp_access_token` (default) or `oauth2`.
    #[serde(default)]
    pub generation: Option<Generation>,
    /// `dataCenterId` put into ERP pushes that do not name one (CRM admin → 连接器 → 连接对象 →
    /// push API).
    #[serde(default)]
    pub data_center_id: Option<String>,
    /// Renew a token this many seconds before it expires (default 600).
    #[serde(default)]
    pub token_refresh_margin_secs: Option<u64>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_id", &self.app_id)
            .field("app_secret", &"***")
            .field("permanent_code", &"***")
            .field("current_open_user_id", &self.current_open_user_id)
            .field("user_id", &self.user_id)
            .field("generation", &self.generation())
            .field("data_center_id", &self.data_center_id)
            .field("token_refresh_margin_secs", &self.token_refresh_margin_secs())
            .finish()
    }
}

/// A setting that cannot work, found before any request is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("fxiaoke: `{field}` is empty; copy it from the Fxiaoke developer console (custom app → credentials)")]
    Empty { field: &'static str },
    #[error(
        "fxiaoke: the corp_access_token generation needs `current_open_user_id` (the operator, FSUID_…); \
         set it to a CRM administrator's openUserId"
    )]
    MissingOpenUserId,
    #[error(
        "fxiaoke: the oauth2 generation needs `user_id` (the operator's CRM employee id, e.g. 1000, sent as x-fs-userid)"
    )]
    MissingUserId,
}

impl Settings {
    /// The token scheme in use (default: the old `corpAccessToken`).
    pub fn generation(&self) -> Generation {
        self.generation.unwrap_or_default()
    }

    /// Seconds before expiry at which a token is renewed (default 600).
    pub fn token_refresh_margin_secs(&self) -> u64 {
        self.token_refresh_margin_secs
            .unwrap_or(sign::DEFAULT_REFRESH_MARGIN_SECS)
    }

    /// The operator identity for the configured generation, if set and non-empty.
    pub fn operator(&self) -> Option<&str> {
        let operator = match self.generation() {
            Generation::CorpAccessToken => self.current_open_user_id.as_deref(),
            Generation::Oauth2 => self.user_id.as_deref(),
        };
        operator.filter(|value| !value.trim().is_empty())
    }

    /// Checks that every credential the configured generation needs is present.
    pub fn check(&self) -> Result<(), SettingsError> {
        for (field, value) in [
            ("app_id", &self.app_id),
            ("app_secret", &self.app_secret),
            ("permanent_code", &self.permanent_code),
        ] {
            if value.trim().is_empty() {
                return Err(SettingsError::Empty { field });
            }
        }
        if self.operator().is_none() {
            return Err(match self.generation() {
                Generation::CorpAccessToken => SettingsError::MissingOpenUserId,
                Generation::Oauth2 => SettingsError::MissingUserId,
            });
        }
        Ok(())
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Fxiaoke",
    summary: "ShareCRM / Fxiaoke OpenAPI, including the ERP data push.",
    example_api: "/cgi/crm/v2/data/query",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    // Times are epoch milliseconds (reference §6); text is China-local [INF].
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        Some(chrono_tz::Asia::Shanghai)
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        let token = call
            .session
            .and_then(|s| s.get::<sign::Token>())
            .ok_or("no corpAccessToken yet")?;
        request::build(self, call.base_url, call.api, call.params, token, call.nonce).map_err(|e| e.to_string())
    }

    /// One step: `corpAccessToken` from the app's credentials (reference §6).
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        now: DateTime<Utc>,
        nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        match answers {
            [] => sign::token_request(self, base_url, nonce).map(|wire| Some(LoginStep::Send(wire))),
            [.., token] => {
                let token = sign::parse_token(&token.body, now)?;
                let margin = chrono::Duration::seconds(self.token_refresh_margin_secs().min(86_400) as i64);
                let renew_at = token.expires_at() - margin;
                Ok(Some(LoginStep::Done(Session::new(token, Some(renew_at)))))
            }
        }
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify(status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        envelope::default_paging(api)
    }

    fn apply_page(
        &self,
        _api: &str,
        params: &mut Value,
        page: &PagePosition,
        paging: &PagingDefaults,
    ) -> Result<(), String> {
        match page.numbered(paging) {
            Some((position, size)) => request::set_query_page(params, position, size),
            None => set_page_params(params, page, paging),
        }
    }

    envelope_answers!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: serde_json::Value) -> Settings {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_and_generation() {
        let old = settings(json!({
            "app_id": "FSAID_1", "app_secret": "s", "permanent_code": "p",
            "current_open_user_id": "FSUID_1"
        }));
        assert_eq!(old.generation(), Generation::CorpAccessToken);
        assert_eq!(old.token_refresh_margin_secs(), 600);
        assert_eq!(old.operator(), Some("FSUID_1"));
        assert_eq!(old.check(), Ok(()));

        let new = settings(json!({
            "app_id": "FSAID_1", "app_secret": "s", "permanent_code": "p",
            "generation": "oauth2", "current_open_user_id": "FSUID_1"
        }));
        assert_eq!(new.generation(), Generation::Oauth2);
        assert_eq!(new.check(), Err(SettingsError::MissingUserId));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed = serde_json::from_value::<Settings>(json!({
            "app_id": "a", "app_secret": "s", "permanent_code": "p", "base_url": "x"
        }));
        assert!(parsed.is_err());
    }

    #[test]
    fn check_names_the_empty_field() {
        let mut s = settings(json!({
            "app_id": "FSAID_1", "app_secret": " ", "permanent_code": "p",
            "current_open_user_id": "FSUID_1"
        }));
        assert_eq!(s.check(), Err(SettingsError::Empty { field: "app_secret" }));
        s.app_secret = "s".into();
        s.current_open_user_id = None;
        assert_eq!(s.check(), Err(SettingsError::MissingOpenUserId));
    }

    #[test]
    fn debug_hides_secrets() {
        let s = settings(json!({
            "app_id": "FSAID_1", "app_secret": "topsecret", "permanent_code": "percode",
            "current_open_user_id": "FSUID_1"
        }));
        let text = format!("{s:?}");
        assert!(!text.contains("topsecret") && !text.contains("percode"), "{text}");
        assert!(text.contains("FSAID_1"));
    }
}
