//! The `kingdee-k3cloud` connector: Kingdee K3Cloud / 金蝶云星空 WebAPI (pure parts only).
//!
//! What it owns:
//! * [`sign`]: the official SDK 8.2.0 signed headers (`X-Api-*` gateway signature keyed with the
//!   XOR-decoded AppID tail, `X-Kd-*` app data signed with the AppSecret) and the community
//!   `LoginBySign` hash;
//! * [`request`]: the URL `{base}/<Service>.common.kdsvc`, the per-operation body shape
//!   (`{"formid","data"}` or `{"data"}`), signed or session headers, the legacy login requests,
//!   login parsing and cookie carrying, the ExecuteBillQuery paging parameters,
//!   [`request::prepare_update`] (safe partial updates) and [`request::ask_for_detail_ids`]
//!   (`NeedReturnFields` for the entry ids of `for_each` lists with `target_id`);
//! * [`envelope`]: the verdict on an answer (`Result.ResponseStatus`, gateway 519 errors,
//!   `response_error:` bodies, login answers and errors hidden inside query arrays), per-row
//!   BatchSave outcomes by `DIndex`, entry ids from `NeedReturnData` matched to packages by the
//!   form's key ([`envelope::attach_detail_ids`]), the query rows named by `FieldKeys`, and
//!   default paging.
//!
//! Promises: no IO, no clock, no randomness. The caller passes the time; the SDK uses the
//! Unix-seconds timestamp as the nonce too, and so do we. Business errors arrive with HTTP 200,
//! so success is decided only from `IsSuccess` (or `LoginResultType == 1` for logins).
//!
//! Quirks handled: `Save` takes `Model` as an object and `BatchSave` as an array; query answers
//! are arrays of arrays whose errors hide in a nested row; MsgCode 14 means "slow down" and
//! MsgCode 1 / "会话信息已丢失，请重新登录" means the session is gone; `IsDeleteEntry` defaults
//! to true on the server, so an update that omits entry rows would delete them (see
//! [`request::prepare_update`]).
//!
//! Configurable, because the reference marks it as inferred or disputed: the legacy login mode
//! and its body shape (two shapes are seen in the wild; `LoginBySign` is not in official
//! source), the default and maximum query `Limit` (docs say 10000, older copies 2000), the
//! `IsDeleteEntry` value sent with updates, and the SDK's XOR seed override (`secpwd`).
//! Rejected alternative: millisecond timestamps (a C# port uses them); the official SDK sends
//! seconds, and so do we.

pub mod envelope;
pub mod locks;
pub mod request;
pub mod scaffold;
pub mod sign;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `connector:` value in schemes.
pub const NAME: &str = "kingdee-k3cloud";
/// One line for `ferry schema` and the docs.
pub const ABOUT: &str =
    "Kingdee K3Cloud (金蝶云星空) WebAPI: SDK-signed headers or session login, Save/BatchSave/Submit/Audit/View/Delete and ExecuteBillQuery";

/// Credential fields that must never be printed. The AppID is listed because its tail is the
/// gateway signing key once decoded.
pub const SECRET_FIELDS: &[&str] = &["app_id", "app_secret", "password"];

/// Query page size when the scheme names none (the long-standing value in clients and docs).
pub const DEFAULT_QUERY_LIMIT: u64 = 2000;
/// Largest `Limit` current docs allow.
pub const DEFAULT_QUERY_MAX_LIMIT: u64 = 10000;
/// `LCID` when none is configured (Simplified Chinese).
pub const DEFAULT_LCID: u32 = 2052;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Stateless signed headers of the official SDK 8.2.0 (needs `app_id` and `app_secret`).
    #[default]
    SignedHeaders,
    /// Legacy `AuthService.ValidateUser` with a user password; the session cookie is carried.
    ValidateUser,
    /// Legacy `AuthService.LoginByAppSecret` with the third-party app's AppID and AppSecret.
    LoginByAppSecret,
    /// Legacy `AuthService.LoginBySign` (community algorithm, not in official source).
    LoginBySign,
}

/// The two `ValidateUser` body shapes seen in public clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidateUserBody {
    /// `{"acctID":..,"username":..,"password":..,"lcid":2052}`.
    #[default]
    Named,
    /// `{"parameters":[acctID, username, password, lcid]}`.
    Parameters,
}

/// Credentials and knobs of a `kingdee-k3cloud` connection. The common fields (base URL,
/// timeouts, retries, concurrency, extra headers) are added by the engine.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "K3CloudSettings")]
pub struct Settings {
    /// Data-center id (AcctID, 数据中心ID) from 第三方系统登录授权.
    pub acct_id: String,
    /// The integration user (集成用户).
    pub username: String,
    /// Third-party AppID, `<clientId>_<32 characters>`. Needed for `signed_headers`,
    /// `login_by_app_secret` and `login_by_sign`.
    #[serde(default)]
    pub app_id: Option<String>,
    /// The third-party AppSecret. Needed with `app_id`.
    #[serde(default)]
    pub app_secret: Option<String>,
    /// The user's password, for `validate_user` only.
    #[serde(default)]
    pub password: Option<String>,
    /// How to authenticate (default `signed_headers`).
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// Body shape of `ValidateUser` (default `named`).
    #[serde(default)]
    pub validate_user_body: Option<ValidateUserBody>,
    /// Language id (default 2052).
    #[serde(default)]
    pub lcid: Option<u32>,
    /// Organisation number put into the signed app data (default "0").
    #[serde(default)]
    pub org_num: Option<String>,
    /// The SDK's `x-kdapi-secpwd` override of the XOR seed (ROT13 form, 32 characters).
    /// Leave unset unless your Kingdee partner gave you one.
    #[serde(default)]
    pub secpwd: Option<String>,
    /// ExecuteBillQuery/BillQuery `Limit` when the scheme names none (default 2000).
    #[serde(default)]
    pub query_limit: Option<u64>,
    /// Largest `Limit` sent (default 10000; set 2000 for older servers).
    #[serde(default)]
    pub query_max_limit: Option<u64>,
    /// `IsDeleteEntry` sent with updates that do not set it (default false, so entry rows
    /// missing from an update are kept; the server itself defaults to true).
    #[serde(default)]
    pub update_is_delete_entry: Option<bool>,
    /// What an update does with a submitted or audited row, which K3Cloud refuses to
    /// change: `reaudit` (default: UnAudit, save, audit again), `unaudit` (leave it
    /// unaudited) or `refuse` (fail it into the ledger). See [`locks`].
    #[serde(default)]
    pub locked_rows: Option<crate::protocol::locks::LockedRows>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "***");
        f.debug_struct("Settings")
            .field("acct_id", &self.acct_id)
            .field("username", &self.username)
            .field("app_id", &hidden(&self.app_id))
            .field("app_secret", &hidden(&self.app_secret))
            .field("password", &hidden(&self.password))
            .field("auth", &self.auth_mode())
            .field("validate_user_body", &self.validate_user_body())
            .field("lcid", &self.lcid())
            .field("org_num", &self.org_num())
            .field("secpwd", &self.secpwd.as_ref().map(|_| "***"))
            .field("query_limit", &self.query_limit())
            .field("query_max_limit", &self.query_max_limit())
            .field("update_is_delete_entry", &self.update_is_delete_entry())
            .field("locked_rows", &self.locked_rows())
            .finish()
    }
}

impl Settings {
    /// The auth mode (default [`AuthMode::SignedHeaders`]).
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or_default()
    }

    /// The `ValidateUser` body shape (default [`ValidateUserBody::Named`]).
    pub fn validate_user_body(&self) -> ValidateUserBody {
        self.validate_user_body.unwrap_or_default()
    }

    /// LCID (default 2052).
    pub fn lcid(&self) -> u32 {
        self.lcid.unwrap_or(DEFAULT_LCID)
    }

    /// OrgNum as sent in the app data (default "0").
    pub fn org_num(&self) -> &str {
        self.org_num.as_deref().unwrap_or("0")
    }

    /// The key the AppID tail is XORed with.
    pub fn xor_key(&self) -> String {
        match &self.secpwd {
            Some(secpwd) => sign::xor_key_from_secpwd(secpwd),
            None => sign::DEFAULT_XOR_KEY.to_owned(),
        }
    }

    /// Default query `Limit`, never above [`Settings::query_max_limit`].
    pub fn query_limit(&self) -> u64 {
        self.query_limit
            .unwrap_or(DEFAULT_QUERY_LIMIT)
            .clamp(1, self.query_max_limit())
    }

    /// Largest query `Limit` (default 10000).
    pub fn query_max_limit(&self) -> u64 {
        self.query_max_limit.unwrap_or(DEFAULT_QUERY_MAX_LIMIT).max(1)
    }

    /// What updates do with submitted and audited rows (default `reaudit`).
    pub fn locked_rows(&self) -> crate::protocol::locks::LockedRows {
        self.locked_rows.unwrap_or_default()
    }

    /// `IsDeleteEntry` for updates that do not set it (default false).
    pub fn update_is_delete_entry(&self) -> bool {
        self.update_is_delete_entry.unwrap_or(false)
    }

    /// Checks that the credentials the chosen auth mode needs are present and well formed.
    pub fn check(&self) -> Result<(), request::RequestError> {
        use request::RequestError::MissingSetting;
        let mode = self.auth_mode();
        let need = |value: &Option<String>, field: &'static str| match value.as_deref() {
            Some(text) if !text.is_empty() => Ok(text.to_owned()),
            _ => Err(MissingSetting { field, mode }),
        };
        if self.acct_id.is_empty() {
            return Err(MissingSetting { field: "acct_id", mode });
        }
        if self.username.is_empty() {
            return Err(MissingSetting {
                field: "username",
                mode,
            });
        }
        match mode {
            AuthMode::ValidateUser => {
                need(&self.password, "password")?;
            }
            AuthMode::SignedHeaders | AuthMode::LoginByAppSecret | AuthMode::LoginBySign => {
                let app_id = need(&self.app_id, "app_id")?;
                need(&self.app_secret, "app_secret")?;
                if mode == AuthMode::SignedHeaders {
                    let (client_id, client_sec) = sign::split_app_id(&app_id, &self.xor_key());
                    if client_id.is_empty() || client_sec.is_empty() {
                        return Err(request::RequestError::BadAppId);
                    }
                }
            }
        }
        if let Some(secpwd) = &self.secpwd {
            if secpwd.chars().count() < 32 {
                return Err(request::RequestError::BadSecpwd);
            }
        }
        Ok(())
    }
}

// The connector.

use crate::protocol::prelude::*;

vendor_connector! {
    title: "Kingdee K3Cloud",
    summary: "Kingdee K3Cloud WebAPI: signed X-Api/X-Kd headers or a legacy session.",
    example_api: "ExecuteBillQuery",
}

impl Protocol for Settings {
    fn name(&self) -> &'static str {
        NAME
    }

    // Server-local FModifyDate (reference §2 "ExecuteBillQuery"); China servers [INF].
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        Some(chrono_tz::Asia::Shanghai)
    }

    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        let session = call.session.and_then(|s| s.get::<request::Session>());
        request::build(self, call.base_url, call.api, call.params, session, call.now).map_err(|e| e.to_string())
    }

    /// The legacy modes log in with one call whose answer (and cookies) hold the session;
    /// `signed_headers` needs no login (reference §2 "Auth").
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        now: DateTime<Utc>,
        _nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        match answers {
            [] => Ok(request::login_request(self, base_url, now)
                .map_err(|e| e.to_string())?
                .map(LoginStep::Send)),
            [.., answer] => {
                let cookies: Vec<&str> = answer.set_cookies.iter().map(String::as_str).collect();
                let session = request::session_from_login(&answer.body, &cookies).map_err(|e| e.to_string())?;
                Ok(Some(LoginStep::Done(Session::new(session, None))))
            }
        }
    }

    fn classify(&self, status: u16, body: &Value) -> Verdict {
        envelope::classify(status, body)
    }

    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        envelope::paging_for(self, api)
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
                request::set_query_page(self, params, position.max(0) as u64, size).map_err(|e| e.to_string())
            }
            None => set_page_params(params, page, paging),
        }
    }

    /// `ExecuteBillQuery` answers arrays in `FieldKeys` order; they become named records.
    fn shape_records(&self, api: &str, params: &Value, rows: Vec<Value>) -> Result<Vec<Value>, String> {
        if api != "ExecuteBillQuery" {
            return Ok(rows);
        }
        let keys = params
            .pointer("/data/FieldKeys")
            .and_then(Value::as_str)
            .unwrap_or_default();
        envelope::name_rows(keys, &Value::Array(rows))
    }

    /// Updates carry the target ids (FID, `NeedUpDateFields`, `IsDeleteEntry`); saves with
    /// detail lists ask for their entry ids (`NeedReturnFields`).
    fn prepare_write(&self, api: &str, params: &mut Value, targets: &WriteTargets<'_>) -> Result<(), String> {
        let form = params
            .get("formid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = request::default_key_field(&form);
        let Some(data) = params.get_mut("data") else {
            if targets.is_update {
                return Err(format!("{api} needs a `data` object"));
            }
            return Ok(());
        };
        if targets.is_update {
            if api == "BatchSave" {
                request::prepare_batch_update(data, key, targets.target_ids, None, self.update_is_delete_entry())
            } else {
                let id = targets.target_ids.first().copied().flatten().unwrap_or_default();
                request::prepare_update(data, key, id, None, self.update_is_delete_entry())
            }
            .map_err(|e| e.to_string())?;
        }
        if matches!(api, "Save" | "BatchSave") {
            request::ask_for_detail_ids(data, key, targets.lists).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    envelope_answers!();

    fn reports_detail_ids(&self) -> bool {
        true
    }

    fn attach_detail_ids(
        &self,
        api: &str,
        params: &Value,
        body: &Value,
        lists: &[DetailList],
        outcomes: &mut [RowOutcome],
    ) {
        if matches!(api, "Save" | "BatchSave") {
            let form = params.get("formid").and_then(Value::as_str).unwrap_or_default();
            envelope::attach_detail_ids(body, request::default_key_field(form), lists, outcomes);
        }
    }

    fn row_locks(&self, api: &str, params: &Value) -> Option<crate::protocol::locks::Relock> {
        locks::relock_for(self.locked_rows(), api, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn signed_settings() -> Settings {
        serde_json::from_value(json!({
            "acct_id": "65a0b1c2d3e4f5",
            "username": "apiuser",
            "app_id": "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4",
            "app_secret": "0123456789abcdef0123456789abcdef"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_follow_the_reference() {
        let settings = signed_settings();
        assert_eq!(settings.auth_mode(), AuthMode::SignedHeaders);
        assert_eq!(settings.lcid(), 2052);
        assert_eq!(settings.org_num(), "0");
        assert_eq!(settings.query_limit(), 2000);
        assert_eq!(settings.query_max_limit(), 10000);
        assert!(!settings.update_is_delete_entry());
        assert_eq!(settings.xor_key(), sign::DEFAULT_XOR_KEY);
        settings.check().unwrap();
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", signed_settings());
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(!text.contains("YWJj"), "{text}");
        assert!(text.contains("***"));
    }

    #[test]
    fn unknown_fields_and_modes_are_rejected() {
        let bad = serde_json::from_value::<Settings>(json!({"acct_id": "a", "username": "u", "appid": "x"}));
        assert!(bad.is_err());
        let mode = serde_json::from_value::<Settings>(json!({"acct_id": "a", "username": "u", "auth": "oauth"}));
        assert!(mode.is_err());
    }

    #[test]
    fn check_names_what_is_missing() {
        let mut settings = signed_settings();
        settings.app_id = Some("not-an-app-id".into());
        assert!(matches!(settings.check(), Err(request::RequestError::BadAppId)));
        settings.auth = Some(AuthMode::ValidateUser);
        let err = settings.check().unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
        settings.password = Some("pw".into());
        settings.check().unwrap();
    }

    #[test]
    fn query_limit_is_capped_by_the_maximum() {
        let mut settings = signed_settings();
        settings.query_limit = Some(50_000);
        settings.query_max_limit = Some(2000);
        assert_eq!(settings.query_limit(), 2000);
    }
}
