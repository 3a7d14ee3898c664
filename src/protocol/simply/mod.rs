//! The Simply CRM connector (`connector: simply-crm`), a vtiger CRM derivative speaking
//! `webservice.php`.
//!
//! **Owns** the pure parts: the settings, the login proof ([`sign`]), the requests for
//! every operation plus the challenge/login pair and the VTQL/id/sync helpers
//! ([`request`]), and the reading of answers ([`envelope`]). No IO happens here; the
//! engine drives the login and sends the [`crate::protocol::types::WireRequest`]s.
//!
//! **Promises.**
//! * Login is two steps: `GET getchallenge` gives a short-lived token, then
//!   `POST login` sends `accessKey = md5(token + userAccessKey)` (lowercase hex) and gets
//!   a `sessionName` that every later call carries. A fresh challenge is fetched for
//!   every login, because some servers delete a token once used.
//! * `INVALID_SESSIONID`, `SESSION_EXPIRED`, `SESSION_LEFT_IDLE` and
//!   `AUTHENTICATION_REQUIRED` classify as [`crate::protocol::types::Verdict::SessionExpired`]:
//!   log in again (new challenge) and retry once.
//! * Each operation uses the verb vtiger registers for it: `GET` (query string) for
//!   getchallenge, retrieve, query, sync, listtypes and describe; `POST` (form body) for
//!   login, create, update, revise, delete, logout and extendsession. The server reads a
//!   POST operation's parameters from the body only. `element` is a JSON string.
//! * Errors are read in all three spellings: `code`/`message` (what vtiger serializes),
//!   `errorCode`/`errorMessage` (Simply's docs) and `errorType`/`errorMsg` (its tutorial).
//!
//! **Quirks handled.**
//! * VTQL must end with `;` and returns at most 100 rows per call: pages are
//!   `LIMIT offset, count` ([`request::query_page`]), and because rows the user cannot
//!   see are dropped silently, only an empty page ends the paging.
//! * `sync` takes `modifiedTime` in epoch seconds, answers at most ~100 changes per call
//!   (records sharing the last timestamp come together) and sets `more`. Its default
//!   paging is a cursor: each next call sends the answer's `lastModifiedTime`
//!   ([`request::continue_sync`]) while `more` is true, and an answer whose cursor does
//!   not pass the `modifiedTime` sent stops the read ([`envelope::check_sync_page`]).
//!   Its `deleted` ids are deletions ([`envelope::deleted_path`]). It only returns
//!   records owned by the calling user unless `syncType=application` (admin only) is
//!   sent, which `validate` warns about.
//! * Ids are `<prefix>x<crmid>`; the prefix is per module and per instance, read from
//!   `describe(...).idPrefix` ([`envelope::id_prefix`], [`request::RecordId`]).
//! * `update` replaces the whole record (missing fields are blanked), `revise` changes
//!   only the fields sent; [`request::full_record`] builds a full record for `update`.
//!
//! **Configurable, and why.** The session and throttle error codes (no throttle code is
//! documented), the query page size (the 100-row cap is documented but not in the code),
//! where a POST puts `operation`/`sessionName` (either works in vtiger, undocumented in
//! Simply), `syncType`, the endpoint path and the server's time zone (datetime fields
//! are server-local time).

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "simply-crm";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str = "Simply CRM / vtiger webservice.php: challenge-login sessions, VTQL query, sync";
/// The settings fields that hold credentials (redacted in logs and `Debug`).
pub const SECRET_FIELDS: &[&str] = &["access_key"];

/// Default endpoint path, appended to the connection's base URL.
pub const DEFAULT_PATH: &str = "/webservice.php";
/// Default error codes that mean "log in again".
pub const DEFAULT_SESSION_CODES: &[&str] = &[
    "INVALID_SESSIONID",
    "SESSION_EXPIRED",
    "SESSION_LEFT_IDLE",
    "AUTHENTICATION_REQUIRED",
];
/// Default (and documented maximum) rows per VTQL page.
pub const DEFAULT_QUERY_PAGE_SIZE: u64 = 100;
/// Default time zone of the server's datetime fields.
pub const DEFAULT_SERVER_TIMEZONE: &str = "UTC";

/// Credentials and knobs of one Simply CRM connection.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SimplyCrmSettings")]
pub struct Settings {
    /// The CRM user name that logs in.
    pub username: String,
    /// The user's access key (My Preferences → Access Key), not the password. Write it as
    /// `${ENV_VAR}`.
    pub access_key: String,
    /// Endpoint path after the base URL. Default `/webservice.php`.
    #[serde(default)]
    pub path: Option<String>,
    /// Error codes that mean the session is gone and a new login is needed. Default
    /// `INVALID_SESSIONID`, `SESSION_EXPIRED`, `SESSION_LEFT_IDLE`, `AUTHENTICATION_REQUIRED`.
    #[serde(default)]
    pub session_codes: Option<Vec<String>>,
    /// Error codes that mean "slow down". Default none (none is documented); HTTP 429
    /// always counts as throttled.
    #[serde(default)]
    pub throttle_codes: Option<Vec<String>>,
    /// Rows per VTQL page (`LIMIT offset, count`). Default 100, the documented cap; a
    /// larger value is cut by the server and would skip rows.
    #[serde(default)]
    pub query_page_size: Option<u64>,
    /// Send `operation` and `sessionName` of POST calls in the query string instead of
    /// the form body. Default false; vtiger accepts both.
    #[serde(default)]
    pub post_params_in_query: Option<bool>,
    /// `syncType` sent with `sync`: `application` returns every user's records (admin
    /// users only). Default unset: the server syncs the calling user's records only.
    #[serde(default)]
    pub sync_type: Option<String>,
    /// IANA time zone of the server's datetime fields (`modifiedtime`, VTQL literals).
    /// Default `UTC`.
    #[serde(default)]
    pub server_timezone: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("username", &self.username)
            .field("access_key", &"***")
            .field("path", &self.path)
            .field("session_codes", &self.session_codes)
            .field("throttle_codes", &self.throttle_codes)
            .field("query_page_size", &self.query_page_size)
            .field("post_params_in_query", &self.post_params_in_query)
            .field("sync_type", &self.sync_type)
            .field("server_timezone", &self.server_timezone)
            .finish()
    }
}

impl Settings {
    /// Settings with the given credentials and every knob at its default.
    pub fn new(username: impl Into<String>, access_key: impl Into<String>) -> Settings {
        Settings {
            username: username.into(),
            access_key: access_key.into(),
            path: None,
            session_codes: None,
            throttle_codes: None,
            query_page_size: None,
            post_params_in_query: None,
            sync_type: None,
            server_timezone: None,
        }
    }

    /// The endpoint path.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }

    /// Rows per VTQL page.
    pub fn query_page_size(&self) -> u64 {
        self.query_page_size.unwrap_or(DEFAULT_QUERY_PAGE_SIZE)
    }

    /// Whether POST calls carry `operation`/`sessionName` in the query string.
    pub fn post_params_in_query(&self) -> bool {
        self.post_params_in_query.unwrap_or(false)
    }

    /// The server's time zone name.
    pub fn server_timezone(&self) -> &str {
        self.server_timezone.as_deref().unwrap_or(DEFAULT_SERVER_TIMEZONE)
    }

    /// The envelope rules these settings describe.
    pub fn rules(&self) -> envelope::Rules {
        let defaults = envelope::Rules::default();
        envelope::Rules {
            session_codes: self.session_codes.clone().unwrap_or(defaults.session_codes),
            throttle_codes: self.throttle_codes.clone().unwrap_or(defaults.throttle_codes),
        }
    }

    /// The default paging of `operation` with the configured query page size.
    pub fn paging(&self, operation: &str) -> Option<envelope::Paging> {
        let paging = envelope::default_paging(operation)?;
        Some(if operation == "query" {
            envelope::Paging {
                size: self.query_page_size(),
                ..paging
            }
        } else {
            paging
        })
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Simply CRM",
    summary: "Simply CRM (vtiger webservice.php): challenge/login sessions, VTQL query and sync.",
    example_api: "query",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&self) -> Result<(), crate::protocol::SettingsError> {
        zone_named(self.server_timezone())
            .map(|_| ())
            .map_err(|e| crate::protocol::SettingsError::new("server_timezone", e))
    }

    // The database zone, UTC in a default install (reference §5 "Sync").
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        zone_named(self.server_timezone()).ok()
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        let session = call.session.and_then(|s| s.get::<request::Session>());
        request::build(self, call.base_url, call.api, call.params, session)
    }

    /// `getchallenge`, then `login` with the access key hashed with its token (reference §5
    /// "Auth"). vtiger keeps one live challenge per user, so logins must not overlap.
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        _now: DateTime<Utc>,
        _nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        match answers {
            [] => Ok(Some(LoginStep::Send(request::challenge_request(self, base_url)))),
            [challenge] => {
                let challenge = request::parse_challenge(&challenge.body)?;
                Ok(Some(LoginStep::Send(request::login_request(
                    self, base_url, &challenge,
                ))))
            }
            [.., login] => {
                let session = request::parse_login(&login.body)?;
                Ok(Some(LoginStep::Done(Session::new(session, None))))
            }
        }
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify_with(&self.rules(), status, body)
    }

    fn deleted_path(&self, api: &str) -> Option<&'static str> {
        envelope::deleted_path(api)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        Settings::paging(self, api).map(|mut paging| {
            // Rows the user may not see are dropped from a page, so a short page comes
            // mid-way: only an empty page ends a query (reference §5 "Query").
            if paging.style == PagingStyle::Offset {
                paging.stop = Some(StopRule::EmptyPage);
            }
            paging
        })
    }

    /// `query` pages with `LIMIT offset, count` inside its VTQL; `sync` continues from the
    /// `modifiedTime` cursor the previous answer named.
    fn apply_page(
        &self,
        api: &str,
        params: &mut Value,
        page: &PagePosition,
        paging: &PagingDefaults,
    ) -> Result<(), String> {
        match (page.numbered(paging), &page.cursor) {
            (Some((position, size)), _) if api.eq_ignore_ascii_case("query") => {
                let vtql = params.get("query").and_then(Value::as_str).unwrap_or_default();
                let paged = request::query_page(vtql, position.max(0) as u64, size)?;
                if let Some(map) = params.as_object_mut() {
                    map.insert("query".into(), Value::String(paged));
                }
                Ok(())
            }
            (None, Some(cursor)) if api.eq_ignore_ascii_case("sync") => request::continue_sync(params, cursor),
            _ => set_page_params(params, page, paging),
        }
    }

    /// `sync` must move its cursor past the `modifiedTime` it was sent.
    fn check_page(&self, api: &str, params: &Value, body: &Value) -> Result<(), String> {
        if api.eq_ignore_ascii_case("sync") {
            envelope::check_sync_page(params, body).map_err(|e| format!("{NAME}: {e}"))
        } else {
            Ok(())
        }
    }

    fn source_advice(&self, api: &str) -> Option<(String, String)> {
        (api.eq_ignore_ascii_case("sync") && self.sync_type.as_deref() != Some("application")).then(|| {
            (
                "sync returns only records the login user owns (reference §5): use an admin user or `query` on modifiedtime".to_string(),
                "an admin user reads every user's records with `settings: {sync_type: application}`".to_string(),
            )
        })
    }

    envelope_answers!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_until_overridden() {
        let mut settings = Settings::new("admin", "AbCdEfGhIjKlMnOp");
        assert_eq!(settings.path(), "/webservice.php");
        assert_eq!(settings.query_page_size(), 100);
        assert!(!settings.post_params_in_query());
        assert_eq!(settings.server_timezone(), "UTC");
        assert_eq!(settings.rules().session_codes.len(), 4);
        assert!(settings.rules().throttle_codes.is_empty());
        settings.query_page_size = Some(50);
        settings.session_codes = Some(vec!["INVALID_SESSIONID".into()]);
        assert_eq!(settings.paging("query").map(|p| p.size), Some(50));
        assert_eq!(settings.paging("sync").map(|p| p.size), Some(100));
        assert_eq!(settings.rules().session_codes, ["INVALID_SESSIONID"]);
    }

    #[test]
    fn debug_hides_the_access_key() {
        let shown = format!("{:?}", Settings::new("admin", "AbCdEfGhIjKlMnOp"));
        assert!(shown.contains("admin"));
        assert!(!shown.contains("AbCdEfGhIjKlMnOp"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_refused_and_secret_fields_exist() {
        let wrong = serde_json::json!({"username": "admin", "access_key": "k", "password": "p"});
        assert!(serde_json::from_value::<Settings>(wrong).is_err());
        let parsed: Settings =
            serde_json::from_value(serde_json::json!({"username": "admin", "access_key": "k"})).unwrap();
        let as_json = serde_json::to_value(&parsed).unwrap();
        for field in SECRET_FIELDS {
            assert!(as_json.get(field).is_some(), "{field} is not a settings field");
        }
    }

    fn page(index: u64, cursor: Option<&str>) -> PagePosition {
        PagePosition {
            number: index as i64 + 1,
            offset: index as i64 * 100,
            size: None,
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn query_pages_by_offset_until_empty_and_sync_by_its_cursor() {
        let simply = Settings::new("admin", "k");
        let query = Protocol::paging(&simply, "query").unwrap();
        assert_eq!(
            (query.style, query.stop),
            (PagingStyle::Offset, Some(StopRule::EmptyPage))
        );
        let sync = Protocol::paging(&simply, "sync").unwrap();
        assert!(matches!(sync.style, PagingStyle::Cursor { .. }), "{sync:?}");
        assert_eq!(simply.deleted_path("sync"), Some("$.result.deleted[*]"));

        let mut params = serde_json::json!({"modifiedTime": 1709280000, "elementType": "Accounts"});
        simply.apply_page("sync", &mut params, &page(0, None), &sync).unwrap();
        assert_eq!(
            params["modifiedTime"], 1709280000,
            "the first page keeps the template's value"
        );
        simply
            .apply_page("sync", &mut params, &page(1, Some("1709280600")), &sync)
            .unwrap();
        assert_eq!(params["modifiedTime"], 1709280600);

        let mut vtql = serde_json::json!({"query": "SELECT * FROM Accounts;"});
        simply.apply_page("query", &mut vtql, &page(2, None), &query).unwrap();
        assert!(vtql["query"].as_str().unwrap().contains("LIMIT 200, 100"), "{vtql}");

        let stalled = serde_json::json!({"success": true, "result": {"updated": [], "deleted": ["11x1"], "lastModifiedTime": 1709280600, "more": true}});
        let message = simply.check_page("sync", &params, &stalled).unwrap_err();
        assert!(
            message.starts_with("simply-crm: ") && message.contains("did not advance"),
            "{message}"
        );
        assert!(simply.check_page("query", &params, &stalled).is_ok());
    }
}
