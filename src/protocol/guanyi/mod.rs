//! Guanyiyun / 管易云 C-ERP open API (`gy.erp.*`): the pure half of the `guanyi` connector.
//!
//! **What it owns.** Turning `(method, business params)` into the exact bytes Guanyi expects
//! ([`request`]), the MD5 signature over those bytes ([`sign`]), and reading answers
//! ([`envelope`]): the success test, throttling, the list key of each query method and its
//! `page_no`/`page_size`/`total` paging. No IO happens here; the engine sends the
//! [`crate::protocol::types::WireRequest`] and hands the answer back.
//!
//! **Protocol in one breath.** Every call is an HTTP POST of one flat JSON object to a single
//! RPC URL (the connection's `base_url`, e.g. `http://v2.api.guanyierp.com/rest/erp_open`;
//! the URL depends on the tenant's login host, so it is never hard-coded). System fields
//! `appkey`, `sessionkey`, `method` and the business parameters are siblings at the top level;
//! `sign = UPPER(hex(MD5(secret + J + secret)))` where `J` is the compact JSON text without
//! `sign`. Answers are HTTP 200 with `success`, `errorCode`, `subErrorCode`, `errorDesc`,
//! `subErrorDesc`, `requestMethod`, the method's list key and `total`.
//!
//! **Promises.**
//! * The signed text is the sent text: the body is serialized once and `,"sign":"…"` is spliced
//!   in before its final `}`. Re-serializing after signing was rejected because any change of
//!   key order or escaping breaks the server's hash.
//! * CJK stays unescaped and `/` is not escaped in the signed text (as the vendor's PHP demo).
//! * There is no login and no token: `sessionkey` is long-lived, so this connector has no
//!   `Session` type and no re-login step.
//!
//! **Configurable, and why** (facts marked [UNK]/[INF] in the vendor reference):
//! * `page_size`: the largest page Guanyi accepts is unknown; clients commonly use 100, which is
//!   the default and also the cap announced to the pager.
//! * `throttle_codes` / `throttle_hints`: no public "too frequent" code exists. By default code
//!   `7` (the TOP-style "call limited" code Guanyi's envelope imitates) and descriptions
//!   containing 频繁/限流/频率/"rate limit"/"too many"/"too frequent" count as throttling.
//! * `session_codes`: codes that mean the `sessionkey` was refused. Empty by default, because a
//!   refused `sessionkey` needs new credentials from the ERP's 应用授权 page, which no
//!   re-login can obtain; a tenant whose gateway reports a transient session error can list it.

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "guanyi";

/// One line for `ferry schema` and the docs.
pub const ABOUT: &str =
    "Guanyiyun (管易云) C-ERP open API gy.erp.*: one RPC URL, flat JSON body signed with UPPER(MD5(secret+JSON+secret))";

/// Settings fields that hold credentials (masked in logs and `Debug`).
pub const SECRET_FIELDS: &[&str] = &["sessionkey", "secret"];

/// Rows per page when the scheme does not say; also the assumed largest page ([UNK]).
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// `errorCode`s treated as throttling unless configured otherwise ([INF], TOP-style "call limited").
pub const DEFAULT_THROTTLE_CODES: &[&str] = &["7"];

/// Description fragments treated as throttling unless configured otherwise ([INF]).
pub const DEFAULT_THROTTLE_HINTS: &[&str] = &["频繁", "限流", "频率", "rate limit", "too many", "too frequent"];

/// Credentials and knobs of a Guanyi connection. The common fields (`base_url`, timeouts,
/// retries…) live beside these in the connection, not here.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "GuanyiSettings")]
pub struct Settings {
    /// `appkey` from ERP 控制面板 → 应用授权 → 云ERP授权.
    pub appkey: String,
    /// `sessionkey` from the same page; long-lived, never refreshed by Ferry.
    pub sessionkey: String,
    /// The signing secret from the same page; never sent, only hashed.
    pub secret: String,
    /// `page_size` for list methods, also used as the largest page the pager may ask for.
    /// Guanyi's real maximum is not documented; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    /// `errorCode`/`subErrorCode` values that mean "slow down and retry". Default `["7"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_codes: Option<Vec<String>>,
    /// Fragments of `errorDesc`/`subErrorDesc` (case-insensitive) that mean "slow down".
    /// Default `["频繁", "限流", "频率", "rate limit", "too many", "too frequent"]`; `[]` turns
    /// description matching off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_hints: Option<Vec<String>>,
    /// `errorCode`/`subErrorCode` values that mean the session is no longer valid. Default `[]`
    /// (a refused `sessionkey` is a credentials problem and fails the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_codes: Option<Vec<String>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("appkey", &self.appkey)
            .field("sessionkey", &"***")
            .field("secret", &"***")
            .field("page_size", &self.page_size)
            .field("throttle_codes", &self.throttle_codes)
            .field("throttle_hints", &self.throttle_hints)
            .field("session_codes", &self.session_codes)
            .finish()
    }
}

impl Settings {
    /// Settings with the three credentials and every knob at its default.
    pub fn new(appkey: impl Into<String>, sessionkey: impl Into<String>, secret: impl Into<String>) -> Settings {
        Settings {
            appkey: appkey.into(),
            sessionkey: sessionkey.into(),
            secret: secret.into(),
            page_size: None,
            throttle_codes: None,
            throttle_hints: None,
            session_codes: None,
        }
    }

    /// Rows per page (at least 1); [`DEFAULT_PAGE_SIZE`] unless configured.
    pub fn page_size(&self) -> u64 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1)
    }

    /// The error-code lists [`envelope::classify_with`] uses, defaults filled in.
    pub fn error_codes(&self) -> envelope::ErrorCodes {
        let defaults = envelope::ErrorCodes::default();
        envelope::ErrorCodes {
            throttle_codes: self.throttle_codes.clone().unwrap_or(defaults.throttle_codes),
            throttle_hints: self.throttle_hints.clone().unwrap_or(defaults.throttle_hints),
            session_codes: self.session_codes.clone().unwrap_or(defaults.session_codes),
        }
    }

    /// [`envelope::default_paging`] with this connection's page size as size and cap.
    pub fn paging(&self, api: &str) -> Option<envelope::Paging> {
        let size = self.page_size();
        envelope::default_paging(api).map(|paging| envelope::Paging {
            size,
            max_size: Some(size),
            ..paging
        })
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Guanyiyun",
    summary: "Guanyiyun C-ERP (`gy.erp.*`): one RPC URL, MD5-signed JSON bodies.",
    example_api: "gy.erp.shop.get",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    // China-local `yyyy-MM-dd HH:mm:ss` (reference §1 "Incremental windows") [INF: the zone].
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        Some(chrono_tz::Asia::Shanghai)
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        request::build(self, call.base_url, call.api, call.params).map_err(|e| e.to_string())
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify_with(&self.error_codes(), status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        Settings::paging(self, api)
    }

    envelope_answers!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_credentials() {
        let settings = Settings::new("100000", "session-value-42", "secret-value-42");
        let shown = format!("{settings:?}");
        assert!(shown.contains("100000"), "{shown}");
        assert!(!shown.contains("session-value-42"), "{shown}");
        assert!(!shown.contains("secret-value-42"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn settings_reject_unknown_fields_and_fill_defaults() {
        let parsed: Settings =
            serde_json::from_value(serde_json::json!({"appkey": "a", "sessionkey": "s", "secret": "x"})).unwrap();
        assert_eq!(parsed.page_size(), 100);
        let codes = parsed.error_codes();
        assert_eq!(codes.throttle_codes, ["7"]);
        assert!(codes.throttle_hints.iter().any(|h| h == "频繁"));
        assert!(codes.session_codes.is_empty());
        let unknown = serde_json::from_value::<Settings>(
            serde_json::json!({"appkey": "a", "sessionkey": "s", "secret": "x", "base_url": "http://x"}),
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn configured_page_size_sets_size_and_cap() {
        let mut settings = Settings::new("a", "s", "x");
        settings.page_size = Some(50);
        let paging = settings.paging("gy.erp.shop.get").unwrap();
        assert_eq!((paging.size, paging.max_size), (50, Some(50)));
        assert_eq!((paging.number_param, paging.size_param), ("page_no", "page_size"));
        assert!(settings.paging("gy.erp.vip.add").is_none());
        settings.page_size = Some(0);
        assert_eq!(settings.page_size(), 1);
    }

    #[test]
    fn secret_fields_name_real_fields() {
        let value = serde_json::to_value(Settings::new("a", "s", "x")).unwrap();
        for field in SECRET_FIELDS {
            assert!(value.get(*field).is_some(), "{field}");
        }
    }
}
