//! The Jackyun / 吉客云 open API connector (`connector: jackyun`).
//!
//! **Owns** the pure parts of talking to `POST <base>/open/openapi/do`: the settings
//! (credentials and knobs), the MD5 signature ([`sign`]), the form-encoded request
//! ([`request`]) and the reading of answers ([`envelope`]). No IO happens here; the
//! engine sends the [`crate::protocol::types::WireRequest`]s these functions build.
//!
//! **Promises.**
//! * Every call is one form post with the fields `method`, `appkey`, `version`,
//!   `contenttype=json`, `timestamp` (`yyyy-MM-dd HH:mm:ss`, China time), `bizcontent`
//!   and `sign`, plus `contextid`/`token` when configured (those two are never signed).
//! * `bizcontent` is serialized exactly once; the signed text and the sent text are the
//!   same bytes.
//! * A page of a list call lives inside `bizcontent` (`pageIndex` from 0, `pageSize`).
//!   The reported totals are unreliable, so the last page is the first short page
//!   ([`envelope::is_last_page`]).
//!
//! **Quirks handled.**
//! * The whole string to sign, the JSON inside `bizcontent` included, is lowercased
//!   before hashing; ports that skip this step get "sign error" on any upper-case byte.
//! * Sources disagree on the success code (200 or 0), so both are accepted, and a
//!   non-empty, non-zero `subCode` turns an otherwise successful code into a failure.
//! * Rows sit under a per-method key (`result.data.goods`, …) or directly in
//!   `result.data` (`crm.customer.list`); see [`envelope::records_path`].
//!
//! **Configurable, and why.** The success codes (sources conflict), the throttle and
//! token-expiry codes (not documented anywhere), the page size (the maximum is
//! unknown), the longest incremental window (one day is the known safe size), the
//! `version` value (`v1.0` and `1.0` are both seen), the gateway path and the time zone
//! of `timestamp`. Each has an accessor that applies the reference's default.

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "jackyun";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str = "Jackyun / 吉客云 open API: MD5-signed form posts to /open/openapi/do";
/// The settings fields that hold credentials (redacted in logs and `Debug`).
pub const SECRET_FIELDS: &[&str] = &["secret", "token"];

/// Default `version` form field.
pub const DEFAULT_VERSION: &str = "v1.0";
/// Default gateway path, appended to the connection's base URL.
pub const DEFAULT_PATH: &str = "/open/openapi/do";
/// Default time zone of the `timestamp` field.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";
/// Default success codes, compared as text with the envelope's `code`.
pub const DEFAULT_SUCCESS_CODES: &[&str] = &["200", "0"];
/// Default rows per page (the value public clients use; the maximum is unknown).
pub const DEFAULT_PAGE_SIZE: u64 = 200;
/// Default longest incremental window, in hours.
pub const DEFAULT_MAX_WINDOW_HOURS: u32 = 24;

/// Credentials and knobs of one Jackyun connection.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "JackyunSettings")]
pub struct Settings {
    /// The `appkey` issued by the Jackyun open platform.
    pub appkey: String,
    /// The app secret that signs every call. Write it as `${ENV_VAR}`.
    pub secret: String,
    /// Optional `token` form field for authorized (ISV) calls; sent, never signed.
    #[serde(default)]
    pub token: Option<String>,
    /// Optional `contextid` form field; sent, never signed.
    #[serde(default)]
    pub contextid: Option<String>,
    /// The `version` form field. Default `v1.0`; some tenants use `1.0`.
    #[serde(default)]
    pub version: Option<String>,
    /// Gateway path after the base URL. Default `/open/openapi/do`.
    #[serde(default)]
    pub path: Option<String>,
    /// IANA time zone of the `timestamp` field. Default `Asia/Shanghai`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Envelope `code` values that mean success, compared as text. Default `["200", "0"]`
    /// (sources disagree; both are seen).
    #[serde(default)]
    pub success_codes: Option<Vec<String>>,
    /// `code` or `subCode` values that mean "slow down". Default none: Jackyun's throttle
    /// code is undocumented. HTTP 429 always counts as throttled.
    #[serde(default)]
    pub throttle_codes: Option<Vec<String>>,
    /// `code` or `subCode` values that mean the `token` expired. Default none (undocumented).
    #[serde(default)]
    pub session_codes: Option<Vec<String>>,
    /// Rows per page for list methods. Default 200; the server's maximum is unknown.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Longest time window one incremental list call may cover, in hours. Default 24
    /// (some methods refuse longer windows).
    #[serde(default)]
    pub max_window_hours: Option<u32>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("appkey", &self.appkey)
            .field("secret", &"***")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("contextid", &self.contextid)
            .field("version", &self.version)
            .field("path", &self.path)
            .field("timezone", &self.timezone)
            .field("success_codes", &self.success_codes)
            .field("throttle_codes", &self.throttle_codes)
            .field("session_codes", &self.session_codes)
            .field("page_size", &self.page_size)
            .field("max_window_hours", &self.max_window_hours)
            .finish()
    }
}

impl Settings {
    /// Settings with the given credentials and every knob at its default.
    pub fn new(appkey: impl Into<String>, secret: impl Into<String>) -> Settings {
        Settings {
            appkey: appkey.into(),
            secret: secret.into(),
            token: None,
            contextid: None,
            version: None,
            path: None,
            timezone: None,
            success_codes: None,
            throttle_codes: None,
            session_codes: None,
            page_size: None,
            max_window_hours: None,
        }
    }

    /// The `version` form field.
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }

    /// The gateway path.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }

    /// The time zone name of the `timestamp` field.
    pub fn timezone(&self) -> &str {
        self.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE)
    }

    /// Rows per page for list methods.
    pub fn page_size(&self) -> u64 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// Longest incremental window, in hours.
    pub fn max_window_hours(&self) -> u32 {
        self.max_window_hours.unwrap_or(DEFAULT_MAX_WINDOW_HOURS)
    }

    /// The envelope rules these settings describe.
    pub fn rules(&self) -> envelope::Rules {
        let defaults = envelope::Rules::default();
        envelope::Rules {
            success_codes: self.success_codes.clone().unwrap_or(defaults.success_codes),
            throttle_codes: self.throttle_codes.clone().unwrap_or(defaults.throttle_codes),
            session_codes: self.session_codes.clone().unwrap_or(defaults.session_codes),
        }
    }

    /// The default paging of `method` with the configured page size.
    pub fn paging(&self, method: &str) -> Option<envelope::Paging> {
        envelope::default_paging(method).map(|paging| envelope::Paging {
            size: self.page_size(),
            ..paging
        })
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Jackyun",
    summary: "Jackyun open API: form-encoded, lowercase-MD5 signed.",
    example_api: "crm.customer.list",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&self) -> Result<(), crate::protocol::SettingsError> {
        zone_named(self.timezone())
            .map(|_| ())
            .map_err(|e| crate::protocol::SettingsError::new("timezone", e))
    }

    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        zone_named(self.timezone()).ok()
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        request::build(self, call.base_url, call.api, call.params, call.now)
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify_with(&self.rules(), status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        Settings::paging(self, api)
    }

    fn apply_page(
        &self,
        _api: &str,
        params: &mut Value,
        page: &PagePosition,
        paging: &PagingDefaults,
    ) -> Result<(), String> {
        match page.numbered(paging) {
            Some((position, size)) => {
                *params = request::with_page(params, position.max(0) as u64, size)?;
                Ok(())
            }
            None => set_page_params(params, page, paging),
        }
    }

    envelope_answers!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_until_overridden() {
        let mut settings = Settings::new("12345678", "s3cret");
        assert_eq!(settings.version(), "v1.0");
        assert_eq!(settings.path(), "/open/openapi/do");
        assert_eq!(settings.timezone(), "Asia/Shanghai");
        assert_eq!(settings.page_size(), 200);
        assert_eq!(settings.max_window_hours(), 24);
        assert_eq!(settings.rules().success_codes, ["200", "0"]);
        settings.version = Some("1.0".into());
        settings.page_size = Some(50);
        settings.success_codes = Some(vec!["0".into()]);
        assert_eq!(settings.version(), "1.0");
        assert_eq!(settings.paging("crm.customer.list").map(|p| p.size), Some(50));
        assert_eq!(settings.rules().success_codes, ["0"]);
    }

    #[test]
    fn debug_hides_credentials() {
        let mut settings = Settings::new("12345678", "very-secret-value");
        settings.token = Some("token-value".into());
        let shown = format!("{settings:?}");
        assert!(shown.contains("12345678"));
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("token-value"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_refused_and_secret_fields_exist() {
        let parsed: Result<Settings, _> =
            serde_json::from_value(serde_json::json!({"appkey": "1", "secret": "2", "app_key": "3"}));
        assert!(parsed.is_err());
        let parsed: Settings =
            serde_json::from_value(serde_json::json!({"appkey": "1", "secret": "2", "token": "t"})).unwrap();
        let as_json = serde_json::to_value(&parsed).unwrap();
        for field in SECRET_FIELDS {
            assert!(as_json.get(field).is_some(), "{field} is not a settings field");
        }
    }
}
