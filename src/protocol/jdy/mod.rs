//! The `kingdee-jdy` connector: Kingdee 精斗云 / 云星辰 (jdy) open API, pure parts only.
//!
//! **What it owns.** How a jdy call becomes bytes ([`request`]), how those bytes are signed
//! ([`sign`]) and how an answer is judged and unpacked ([`envelope`]). No IO happens here: the
//! engine drives the token flow, retries and paging with these functions.
//!
//! **Generations.** A tenant is on one of two API generations ([`Generation`]):
//! * `v2` (default, `https://api.kingdee.com`, paths `/jdy/v2/...`). Every call carries the
//!   gateway's `X-Api-*` HMAC headers (millisecond timestamp, twice-encoded sorted query).
//!   Login is three steps, all signed:
//!   1. `POST /jdyconnector/app_management/push_app_authorize?outerInstanceId=…` returns an
//!      array of authorizations (`appKey`, `appSecret`, `domain`, `accountId`, `status`…);
//!      [`request::parse_authorize`] picks one ([`Settings::account_id`], else the first with
//!      `status == 1`). Both `errcode/description` and `code/msg` envelopes are accepted.
//!      Configuring `app_key` + `app_secret` + `router_addr` skips this step.
//!   2. `GET /jdyconnector/app_management/kingdee_auth_token?app_key=…&app_signature=…` returns
//!      the `app-token` and its expiry (ms epoch); [`request::Session`] caches both.
//!   3. Business calls add `app-token` and `X-GW-Router-Addr: <domain>`. Lists are `GET` with
//!      query parameters, saves are `POST` with a JSON body (the body is not signed).
//!
//!   Code `1030002006` (授权密钥失效) is [`Verdict::SessionExpired`](crate::protocol::types::Verdict):
//!   pull the authorization and the token again, then retry once.
//! * `v1` (legacy): `POST /jdy/<module>/<obj>_list?access_token=…` with headers `accountId` and
//!   `groupName` and a JSON body `{"page","pagesize","begindate",…}`; answers look like
//!   `{"success":true,"data":{"rows":[…]}}`. The token comes from `/auth/user/access_token`.
//!
//! **Promises and quirks handled.**
//! * The server silently caps `page_size` at 100 while computing `total_page` from the size
//!   asked for, which loses rows without an error. [`request::build`] therefore clamps
//!   `page_size` / `pagesize` to [`Settings::page_size_cap`] (default 100), and
//!   [`envelope::verify_count`] checks, after the last page, that the rows seen match the
//!   `count` the server reported (a string).
//! * List rows are summaries; [`request::detail_api`] / [`request::build_detail`] fetch
//!   `<resource>_detail?id=` for the `material_entity` lines.
//! * HTTP 519 is the gateway's own failure status and is reported with its body's message.
//!
//! **Configurable because the sources disagree or are silent** (tagged [INF]/[UNK] in the
//! reference): the throttle codes (none known; HTTP 429 always counts), the session-expiry
//! codes, how long a token is trusted, the `modify_*_time` value format and time zone, whether
//! a space is signed as `%20` or `+`, and the page-size cap.

pub mod envelope;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "kingdee-jdy";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str = "Kingdee 精斗云/云星辰 (jdy) open API: v2 api.kingdee.com gateway \
(X-Api-* HMAC, app-token, X-GW-Router-Addr) or legacy v1 access_token";
/// Settings fields holding credentials (redacted in logs and `Debug`).
pub const SECRET_FIELDS: &[&str] = &["client_secret", "app_secret", "password"];

/// The largest page the server honours; larger requests are clamped silently.
pub const DEFAULT_PAGE_SIZE_CAP: u64 = 100;
/// Codes that mean "authorization expired, pull it again" (授权密钥失效).
pub const DEFAULT_SESSION_EXPIRED_CODES: &[&str] = &["1030002006"];
/// No throttle code is documented; HTTP 429 is recognised regardless.
pub const DEFAULT_THROTTLE_CODES: &[&str] = &[];
/// One client caches the roughly 24-hour app-token for 20 hours.
pub const DEFAULT_TOKEN_MAX_AGE_SECS: u64 = 20 * 3600;
/// Refresh a token this long before the expiry the server announced.
pub const DEFAULT_TOKEN_REFRESH_MARGIN_SECS: u64 = 300;
/// Time zone of jdy's wall-clock times.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// Which API generation the tenant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "JdyGeneration")]
pub enum Generation {
    /// Legacy `access_token` API (`/jdy/<module>/<obj>_list`).
    V1,
    /// Current gateway API (`/jdy/v2/...`), signed `X-Api-*` headers plus `app-token`.
    #[default]
    V2,
}

/// How `modify_start_time` / `modify_end_time` values are written (undocumented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModifyTimeFormat {
    /// `yyyy-MM-dd HH:mm:ss` in [`Settings::time_zone`].
    #[default]
    DateTime,
    /// Milliseconds since the epoch.
    EpochMillis,
}

/// Credentials and knobs of one jdy connection.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "JdySettings")]
pub struct Settings {
    /// API generation: `v2` (default) or legacy `v1`.
    #[serde(default)]
    pub generation: Option<Generation>,
    /// The app's Client ID from the developer console (开发者后台). v2 signs with it; v1 sends
    /// it to `/auth/user/access_token`.
    pub client_id: String,
    /// The app's Client Secret: the HMAC key of every v2 call, and the v1 token secret.
    pub client_secret: String,
    /// v2: the tenant's `outerInstanceId`, used to pull its authorization.
    #[serde(default)]
    pub outer_instance_id: Option<String>,
    /// Which account (账套) to use when several are authorized (v2), and the `accountId`
    /// header (v1). Default: the first authorized account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// v1: the `groupName` header.
    #[serde(default)]
    pub group_name: Option<String>,
    /// v1: the login user name.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: the login password.
    #[serde(default)]
    pub password: Option<String>,
    /// v2: the tenant's appKey, when known up front (skips `push_app_authorize` together with
    /// `app_secret` and `router_addr`).
    #[serde(default)]
    pub app_key: Option<String>,
    /// v2: the tenant's appSecret, when known up front.
    #[serde(default)]
    pub app_secret: Option<String>,
    /// v2: the `X-GW-Router-Addr` domain (e.g. `https://tf.jdy.com`), when known up front.
    #[serde(default)]
    pub router_addr: Option<String>,
    /// Largest `page_size` ever sent (default 100): the server silently clamps above 100.
    #[serde(default)]
    pub page_size_cap: Option<u64>,
    /// Envelope codes meaning "slow down" (default none known; HTTP 429 always counts).
    #[serde(default)]
    pub throttle_codes: Option<Vec<String>>,
    /// Envelope codes meaning "log in again" (default `["1030002006"]`).
    #[serde(default)]
    pub session_expired_codes: Option<Vec<String>>,
    /// Longest time an app-token is reused, in seconds (default 72000 = 20 h).
    #[serde(default)]
    pub token_max_age_secs: Option<u64>,
    /// Refresh this many seconds before the announced expiry (default 300).
    #[serde(default)]
    pub token_refresh_margin_secs: Option<u64>,
    /// Format of `modify_*_time` filter values: `date_time` (default) or `epoch_millis`.
    #[serde(default)]
    pub modify_time_format: Option<ModifyTimeFormat>,
    /// IANA time zone of jdy's wall-clock times (default `Asia/Shanghai`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Encode a space in query values as `+` instead of `%20` (default false).
    #[serde(default)]
    pub space_as_plus: Option<bool>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "***");
        f.debug_struct("Settings")
            .field("generation", &self.generation())
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("outer_instance_id", &self.outer_instance_id)
            .field("account_id", &self.account_id)
            .field("group_name", &self.group_name)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("app_key", &self.app_key)
            .field("app_secret", &hidden(&self.app_secret))
            .field("router_addr", &self.router_addr)
            .field("page_size_cap", &self.page_size_cap())
            .field("throttle_codes", &self.throttle_codes())
            .field("session_expired_codes", &self.session_expired_codes())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Minimal v2 settings (every knob at its default).
    pub fn v2(client_id: &str, client_secret: &str, outer_instance_id: &str) -> Settings {
        Settings {
            generation: Some(Generation::V2),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            outer_instance_id: Some(outer_instance_id.to_owned()),
            account_id: None,
            group_name: None,
            username: None,
            password: None,
            app_key: None,
            app_secret: None,
            router_addr: None,
            page_size_cap: None,
            throttle_codes: None,
            session_expired_codes: None,
            token_max_age_secs: None,
            token_refresh_margin_secs: None,
            modify_time_format: None,
            time_zone: None,
            space_as_plus: None,
        }
    }

    /// Minimal v1 settings (every knob at its default).
    pub fn v1(
        client_id: &str,
        client_secret: &str,
        username: &str,
        password: &str,
        account_id: &str,
        group_name: &str,
    ) -> Settings {
        Settings {
            generation: Some(Generation::V1),
            outer_instance_id: None,
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            account_id: Some(account_id.to_owned()),
            group_name: Some(group_name.to_owned()),
            ..Settings::v2(client_id, client_secret, "")
        }
    }

    /// The API generation (default v2).
    pub fn generation(&self) -> Generation {
        self.generation.unwrap_or_default()
    }

    /// The page-size cap (default 100, never below 1).
    pub fn page_size_cap(&self) -> u64 {
        self.page_size_cap.unwrap_or(DEFAULT_PAGE_SIZE_CAP).max(1)
    }

    /// Envelope codes that mean throttling.
    pub fn throttle_codes(&self) -> Vec<String> {
        match &self.throttle_codes {
            Some(codes) => codes.clone(),
            None => DEFAULT_THROTTLE_CODES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// Envelope codes that mean the authorization or token expired.
    pub fn session_expired_codes(&self) -> Vec<String> {
        match &self.session_expired_codes {
            Some(codes) => codes.clone(),
            None => DEFAULT_SESSION_EXPIRED_CODES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// Longest reuse of one app-token.
    pub fn token_max_age(&self) -> chrono::Duration {
        secs(self.token_max_age_secs.unwrap_or(DEFAULT_TOKEN_MAX_AGE_SECS))
    }

    /// How long before the announced expiry a token is refreshed.
    pub fn token_refresh_margin(&self) -> chrono::Duration {
        secs(
            self.token_refresh_margin_secs
                .unwrap_or(DEFAULT_TOKEN_REFRESH_MARGIN_SECS),
        )
    }

    /// Format of `modify_*_time` values.
    pub fn modify_time_format(&self) -> ModifyTimeFormat {
        self.modify_time_format.unwrap_or_default()
    }

    /// The time zone of wall-clock times; errors name the bad value.
    pub fn time_zone(&self) -> Result<chrono_tz::Tz, String> {
        let name = self.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE);
        name.parse::<chrono_tz::Tz>()
            .map_err(|_| format!("time_zone '{name}' is not an IANA zone name; use e.g. Asia/Shanghai"))
    }

    /// How a space in a query value is encoded.
    pub fn space_style(&self) -> sign::SpaceStyle {
        if self.space_as_plus.unwrap_or(false) {
            sign::SpaceStyle::Plus
        } else {
            sign::SpaceStyle::Percent20
        }
    }

    /// Checks that the fields the chosen generation needs are present.
    pub fn validate(&self) -> Result<(), String> {
        let missing = |value: &Option<String>| value.as_deref().is_none_or(str::is_empty);
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err("client_id and client_secret are required (developer console → app credentials)".to_owned());
        }
        match self.generation() {
            Generation::V2 => {
                let preset = [&self.app_key, &self.app_secret, &self.router_addr];
                let preset_count = preset.iter().filter(|value| !missing(value)).count();
                if preset_count != 0 && preset_count != 3 {
                    return Err("app_key, app_secret and router_addr go together: set all three or none".to_owned());
                }
                if preset_count == 0 && missing(&self.outer_instance_id) {
                    return Err(
                        "v2 needs outer_instance_id to pull the tenant's authorization (or app_key, app_secret and router_addr)"
                            .to_owned(),
                    );
                }
            }
            Generation::V1 => {
                for (name, value) in [
                    ("username", &self.username),
                    ("password", &self.password),
                    ("account_id", &self.account_id),
                    ("group_name", &self.group_name),
                ] {
                    if missing(value) {
                        return Err(format!("generation v1 needs {name}"));
                    }
                }
            }
        }
        self.time_zone().map(|_| ())
    }
}

fn secs(value: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1000))
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Kingdee Xingchen",
    summary: "Kingdee Jingdou Cloud Xingchen (jdy) v2 gateway, or its legacy v1 API.",
    example_api: "scm/pur_inbound",
}

/// A nonce for the gateway's signature: never zero.
fn gateway_nonce(nonce: u128) -> u64 {
    (nonce % u128::from(u32::MAX)) as u64 + 1
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&self) -> Result<(), crate::protocol::SettingsError> {
        self.time_zone()
            .map(|_| ())
            .map_err(|e| crate::protocol::SettingsError::new("time_zone", e))
    }

    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        self.time_zone().ok()
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        let session = call.session.and_then(|s| s.get::<request::Session>());
        let nonce = gateway_nonce(call.nonce);
        if call.write {
            request::build_save(self, call.base_url, call.api, call.params, session, call.now, nonce)
        } else {
            request::build(self, call.base_url, call.api, call.params, session, call.now, nonce)
        }
    }

    /// v1: one token call. v2: the app authorization (unless the settings hold it), then
    /// the app-token (reference §3 "Auth").
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        now: DateTime<Utc>,
        nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        let done = |session: request::Session| {
            let renew_at = Some(session.refresh_at);
            Some(LoginStep::Done(Session::new(session, renew_at)))
        };
        if self.generation() == Generation::V1 {
            return match answers {
                [] => request::v1_token_request(self, base_url).map(|wire| Some(LoginStep::Send(wire))),
                [.., token] => request::parse_v1_token(self, &token.body, now).map(done),
            };
        }
        let nonce = gateway_nonce(nonce);
        let (authorization, answers) = match request::authorization_from_settings(self) {
            Some(found) => (found, answers),
            None => match answers {
                [] => return request::authorize_request(self, base_url, now, nonce).map(|w| Some(LoginStep::Send(w))),
                [authorize, rest @ ..] => (request::parse_authorize(self, &authorize.body)?, rest),
            },
        };
        match answers {
            [] => request::token_request(self, base_url, &authorization, now, nonce).map(|w| Some(LoginStep::Send(w))),
            [.., token] => request::parse_token(self, &authorization, &token.body, now).map(done),
        }
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify_with(self, status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        envelope::default_paging(api)
    }

    envelope_answers!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_reject_unknown_fields() {
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "client_id": "cid", "client_secret": "sec", "outer_instance_id": "oi"
        }))
        .unwrap();
        assert_eq!(settings.generation(), Generation::V2);
        assert_eq!(settings.page_size_cap(), 100);
        assert_eq!(settings.session_expired_codes(), ["1030002006"]);
        assert!(settings.throttle_codes().is_empty());
        assert_eq!(settings.token_max_age(), chrono::Duration::hours(20));
        assert!(settings.validate().is_ok());
        let unknown = serde_json::from_value::<Settings>(serde_json::json!({
            "client_id": "c", "client_secret": "s", "base_url": "x"
        }));
        assert!(unknown.is_err());
        let v1: Settings = serde_json::from_value(serde_json::json!({
            "generation": "v1", "client_id": "c", "client_secret": "s"
        }))
        .unwrap();
        assert_eq!(v1.generation(), Generation::V1);
        assert!(v1.validate().unwrap_err().contains("username"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut settings = Settings::v1("cid", "topsecret", "u", "pw-123", "a", "g");
        settings.app_secret = Some("appsecret-xyz".to_owned());
        let text = format!("{settings:?}");
        for secret in ["topsecret", "pw-123", "appsecret-xyz"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("cid"));
    }

    #[test]
    fn validation_explains_what_is_missing() {
        let mut settings = Settings::v2("c", "s", "");
        assert!(settings.validate().unwrap_err().contains("outer_instance_id"));
        settings.app_key = Some("k".to_owned());
        assert!(settings.validate().unwrap_err().contains("together"));
        settings.app_secret = Some("s".to_owned());
        settings.router_addr = Some("https://tf.jdy.com".to_owned());
        assert!(settings.validate().is_ok());
        settings.time_zone = Some("Mars/Base".to_owned());
        assert!(settings.validate().unwrap_err().contains("Mars/Base"));
    }
}
