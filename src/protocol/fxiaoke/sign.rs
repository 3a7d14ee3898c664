//! Fxiaoke token handling (pure). Fxiaoke has no request signature: every business call is
//! authorised by a token obtained from the app credentials, so this module holds what signing
//! holds for other vendors — the token request builder, the token answer parser with expiry
//! arithmetic, and the `thirdTraceId` UUID generator.
//!
//! Old generation: `POST /cgi/corpAccessToken/get/V2` with `{"appId","appSecret","permanentCode"}`
//! answers `corpAccessToken`, `corpId` and `expiresIn` (seconds left, at most 7200).
//! New generation: `POST /oauth2.0/token?thirdTraceId=<uuid4>` with the same fields plus
//! `"grantType":"app_secret"` answers `accessToken` and `ea`.
//!
//! The server returns the same token for about 6600 s after issuing it and only then a new
//! one; the token endpoint allows at most 10 calls a minute and no concurrency. So callers cache
//! the [`Token`] and renew it once [`Token::refresh_due`] (default margin 600 s) or after a
//! 20016 answer. Randomness and time come in as arguments.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::{Generation, Settings};
use crate::protocol::types::WireRequest;

/// Old-generation token endpoint.
pub const TOKEN_PATH: &str = "/cgi/corpAccessToken/get/V2";
/// New-generation token endpoint.
pub const OAUTH2_TOKEN_PATH: &str = "/oauth2.0/token";
/// Documented token lifetime in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 7200;
/// Renewal margin: the last 600 s of a token's life are when a renewal yields a new token.
pub const DEFAULT_REFRESH_MARGIN_SECS: u64 = 600;

/// Formats 128 random bits as an RFC 4122 version-4 UUID (lowercase), for `thirdTraceId`.
/// The version and variant bits are forced, so any `u128` gives a valid v4 UUID.
pub fn third_trace_id(random: u128) -> String {
    let mut bytes = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `base_url` + `path`, without doubling or dropping the slash between them.
pub(crate) fn join(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

/// The token request for the configured generation. `trace` is 128 random bits for the
/// new generation's `thirdTraceId` (ignored by the old one, whose URL carries no query).
pub fn token_request(settings: &Settings, base_url: &str, trace: u128) -> Result<WireRequest, String> {
    settings.check().map_err(|e| e.to_string())?;
    let (url, body) = match settings.generation() {
        Generation::CorpAccessToken => (
            join(base_url, TOKEN_PATH),
            json!({
                "appId": settings.app_id,
                "appSecret": settings.app_secret,
                "permanentCode": settings.permanent_code,
            }),
        ),
        Generation::Oauth2 => (
            format!(
                "{}?thirdTraceId={}",
                join(base_url, OAUTH2_TOKEN_PATH),
                third_trace_id(trace)
            ),
            json!({
                "appId": settings.app_id,
                "appSecret": settings.app_secret,
                "permanentCode": settings.permanent_code,
                "grantType": "app_secret",
            }),
        ),
    };
    let body = serde_json::to_vec(&body).map_err(|e| format!("fxiaoke: encoding the token request: {e}"))?;
    Ok(WireRequest {
        method: "POST",
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body),
    })
}

/// A token and what it is good for. `Debug` masks the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// `corpAccessToken` (old generation) or `accessToken` (new generation).
    pub access_token: String,
    /// `corpId` (old generation, `FSCID_…`) or `ea` (new generation).
    pub corp_id: String,
    /// Seconds the token had left when it was received (`expiresIn`, 7200 when absent).
    pub expires_in_secs: u64,
    /// When the answer was received.
    pub obtained_at: DateTime<Utc>,
    /// Which scheme issued it; the request builder uses the matching placement.
    pub generation: Generation,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"***")
            .field("corp_id", &self.corp_id)
            .field("expires_in_secs", &self.expires_in_secs)
            .field("obtained_at", &self.obtained_at)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Token {
    /// When the token stops working.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.obtained_at
            .checked_add_signed(seconds(self.expires_in_secs))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// True once `now` is within `margin_secs` of expiry (or past it): time to renew.
    pub fn refresh_due(&self, now: DateTime<Utc>, margin_secs: u64) -> bool {
        let renew_at = self
            .expires_at()
            .checked_sub_signed(seconds(margin_secs))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        now >= renew_at
    }
}

/// A span of whole seconds, clamped to ten years so date arithmetic cannot overflow.
fn seconds(secs: u64) -> Duration {
    const TEN_YEARS: i64 = 10 * 366 * 24 * 3600;
    Duration::seconds(i64::try_from(secs).unwrap_or(TEN_YEARS).min(TEN_YEARS))
}

/// Reads a numeric field that may arrive as a number or as digits in a string.
pub(crate) fn number_field(body: &Value, key: &str) -> Option<i64> {
    match body.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// What a person should check for a refused token request.
fn token_hint(code: i64) -> &'static str {
    match code {
        10006 | 11002 | 10002 => "check app_secret (the gateway answers 10006 for a missing or wrong appSecret)",
        20006 | 10001 | 11001 => "check app_id and app_secret",
        20015 | 10012 | 11013 => "check permanent_code (the enterprise's permanent authorisation code)",
        30004 | 14001 => "the token endpoint allows 10 calls a minute and no concurrency; cache the token",
        20021 | 20022 => "the app is disabled or not authorised in this enterprise; ask its administrator",
        _ => "see the errorCode table of the Fxiaoke OpenAPI docs",
    }
}

/// Reads a token answer of either generation. Fails with the vendor's code, message, traceId
/// and a hint when the answer is an error or lacks the token.
pub fn parse_token(body: &Value, obtained_at: DateTime<Utc>) -> Result<Token, String> {
    if !body.is_object() {
        return Err(
            "fxiaoke: the token answer is not a JSON object; is base_url the API gateway (e.g. https://open.fxiaoke.com), not www.fxiaoke.com?"
                .into(),
        );
    }
    let code = number_field(body, "errorCode");
    if code != Some(0) {
        let message = text_field(body, "errorMessage")
            .or_else(|| text_field(body, "errorDescription"))
            .unwrap_or("no errorMessage");
        let trace = text_field(body, "traceId")
            .map(|t| format!(", traceId {t}"))
            .unwrap_or_default();
        return Err(match code {
            Some(code) => format!(
                "fxiaoke: the token request was refused ({code}: {message}{trace}); {}",
                token_hint(code)
            ),
            None => format!("fxiaoke: the token answer has no errorCode ({message}{trace})"),
        });
    }
    let expires_in_secs = number_field(body, "expiresIn")
        .and_then(|secs| u64::try_from(secs).ok())
        .unwrap_or(TOKEN_LIFETIME_SECS);
    if let (Some(token), Some(corp)) = (text_field(body, "corpAccessToken"), text_field(body, "corpId")) {
        return Ok(Token {
            access_token: token.to_owned(),
            corp_id: corp.to_owned(),
            expires_in_secs,
            obtained_at,
            generation: Generation::CorpAccessToken,
        });
    }
    if let (Some(token), Some(ea)) = (text_field(body, "accessToken"), text_field(body, "ea")) {
        return Ok(Token {
            access_token: token.to_owned(),
            corp_id: ea.to_owned(),
            expires_in_secs,
            obtained_at,
            generation: Generation::Oauth2,
        });
    }
    Err("fxiaoke: the token answer says success but carries neither corpAccessToken+corpId nor accessToken+ea".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn settings(generation: Generation) -> Settings {
        Settings {
            app_id: "FSAID_131a2b3".into(),
            app_secret: "0123456789abcdef0123456789abcdef".into(),
            permanent_code: "ABCDEF0123456789ABCDEF0123456789".into(),
            current_open_user_id: Some("FSUID_0123456789ABCDEF0123456789".into()),
            user_id: Some("1000".into()),
            generation: Some(generation),
            data_center_id: None,
            token_refresh_margin_secs: None,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn trace_ids_are_version_4_uuids() {
        assert_eq!(third_trace_id(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(third_trace_id(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = third_trace_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn old_generation_token_request() {
        let request = token_request(&settings(Generation::CorpAccessToken), "https://open.fxiaoke.com/", 7).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://open.fxiaoke.com/cgi/corpAccessToken/get/V2");
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"appId": "FSAID_131a2b3", "appSecret": "0123456789abcdef0123456789abcdef",
                   "permanentCode": "ABCDEF0123456789ABCDEF0123456789"})
        );
        assert!(request
            .headers
            .contains(&("content-type".to_string(), "application/json".to_string())));
    }

    #[test]
    fn new_generation_token_request() {
        let request = token_request(&settings(Generation::Oauth2), "https://open.fxiaoke.com", 0).unwrap();
        assert_eq!(
            request.url,
            "https://open.fxiaoke.com/oauth2.0/token?thirdTraceId=00000000-0000-4000-8000-000000000000"
        );
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["grantType"], "app_secret");
        assert_eq!(body["appId"], "FSAID_131a2b3");
    }

    #[test]
    fn token_request_refuses_incomplete_settings() {
        let mut s = settings(Generation::CorpAccessToken);
        s.current_open_user_id = None;
        let error = token_request(&s, "https://open.fxiaoke.com", 0).unwrap_err();
        assert!(error.contains("current_open_user_id"), "{error}");
    }

    #[test]
    fn parses_old_generation_answer() {
        let body = json!({"errorCode": 0, "errorMessage": "success", "corpAccessToken": "CAT123",
                          "corpId": "FSCID_ABC", "expiresIn": 7200});
        let token = parse_token(&body, at(1_700_000_000)).unwrap();
        assert_eq!(token.access_token, "CAT123");
        assert_eq!(token.corp_id, "FSCID_ABC");
        assert_eq!(token.generation, Generation::CorpAccessToken);
        assert_eq!(token.expires_at(), at(1_700_007_200));
        assert!(!token.refresh_due(at(1_700_006_599), 600));
        assert!(token.refresh_due(at(1_700_006_600), 600));
        assert!(token.refresh_due(at(1_700_009_000), 0));
        assert!(!format!("{token:?}").contains("CAT123"));
    }

    #[test]
    fn parses_new_generation_answer_and_string_expiry() {
        let body = json!({"errorCode": 0, "accessToken": "AT9", "ea": "fs_demo", "expiresIn": "3600"});
        let token = parse_token(&body, at(0)).unwrap();
        assert_eq!(token.generation, Generation::Oauth2);
        assert_eq!(token.corp_id, "fs_demo");
        assert_eq!(token.expires_in_secs, 3600);
        let no_expiry = parse_token(&json!({"errorCode": 0, "accessToken": "AT9", "ea": "x"}), at(0)).unwrap();
        assert_eq!(no_expiry.expires_in_secs, 7200);
    }

    #[test]
    fn refused_token_requests_explain_themselves() {
        // The gateway's real answer to a forged appSecret (probe in S-FX-SKILL).
        let body = json!({"errorCode": 10006, "errorMessage": "the parameter appSecret is missing or illegal",
                          "errorDescription": "缺少参数或参数不合法", "traceId": "open-api-gateway-web/abc"});
        let error = parse_token(&body, at(0)).unwrap_err();
        assert!(error.contains("10006") && error.contains("app_secret") && error.contains("open-api-gateway-web/abc"));
        let error = parse_token(&json!({"errorCode": 20015, "errorMessage": "永久授权码错误"}), at(0)).unwrap_err();
        assert!(error.contains("permanent_code"), "{error}");
        let error = parse_token(&json!({"errorCode": 0}), at(0)).unwrap_err();
        assert!(error.contains("neither"), "{error}");
        let error = parse_token(&json!("<html>"), at(0)).unwrap_err();
        assert!(error.contains("www.fxiaoke.com"), "{error}");
    }
}
