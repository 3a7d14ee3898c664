//! The K3Cloud simulator's own check of a caller's credentials, written from reference §2
//! ("Auth option A" and "LoginBySign") and tested against the §9 vectors. It shares no code
//! with the connector's signing, so a signing bug there cannot be mirrored here.
//!
//! **Signed headers (option A).** The gateway half: `X-Api-Signature` must equal
//! `base64(hex(HMAC-SHA256(client_sec, string_to_sign)))`, where `client_sec` is the configured
//! AppID tail put through DecodeAppSecret and the string to sign covers the quoted request path,
//! `x-api-nonce` and `x-api-timestamp`. The K3Cloud half: `X-Kd-Signature` must equal
//! `base64(hex(HMAC-SHA256(AppSecret, AppID + app_data)))` over the app data the caller sent
//! in `X-Kd-Appdata`, which must name the configured AcctID and user.
//!
//! **Refusals.** Gateway problems are HTTP 519 with an `errcode` (4002 "APP_ID is empty" and
//! 4006 for a bad timestamp are from the reference's probes; 4001 for an unknown client or
//! AppID, 4003 for a bad signature, a wrong `x-api-signheaders` or `X-Api-Auth-Version` are
//! this simulator's choices: the reference lists no code for them). A failing K3Cloud half
//! is the session-lost answer, as a real server reports a wrong AcctID or app.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// DecodeAppSecret's XOR key, as reference §2 step 3 gives it.
const XOR_KEY: &[u8] = b"0054f397c6234378b09ca7d3e5debce7";
/// The one `X-Api-Auth-Version` the SDK sends.
const AUTH_VERSION: &str = "2.0";
/// The `x-api-signheaders` value, literally.
const SIGNED_HEADER_LIST: &str = "x-api-timestamp,x-api-nonce";

/// What the simulator knows about its one third-party app.
pub(super) struct AppCredentials<'a> {
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub acct_id: &'a str,
    pub username: &'a str,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// HTTP 519 with this errcode and descriptions (English, Chinese).
    Gateway(i64, &'static str, &'static str),
    /// The "会话信息已丢失" answer (MsgCode 1).
    SessionLost,
}

/// Reference §2 step 3: a 32-character tail is base64-decoded, XORed byte by byte with the
/// ASCII key and base64-encoded again; any other tail (or one that is not base64) gives "".
pub(super) fn decode_app_secret(tail: &str) -> String {
    if tail.chars().count() != 32 {
        return String::new();
    }
    match STANDARD.decode(tail) {
        Ok(raw) => {
            let mixed: Vec<u8> = raw.iter().zip(XOR_KEY.iter().cycle()).map(|(b, k)| b ^ k).collect();
            STANDARD.encode(mixed)
        }
        Err(_) => String::new(),
    }
}

/// Reference §2 step 2: `(client_id, client_sec)` from `<clientId>_<tail>`; both empty unless
/// the AppID has exactly two parts.
pub(super) fn client_of(app_id: &str) -> (String, String) {
    let mut parts = app_id.split('_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(tail), None) => (id.to_owned(), decode_app_secret(tail)),
        _ => (String::new(), String::new()),
    }
}

/// The path as signed: every byte except ASCII letters, digits and `-._~` percent-encoded
/// (Python's `quote` keeps `/`, which the SDK then replaces with `%2F`: the same result).
pub(super) fn quoted_path(path: &str) -> String {
    path.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Reference §2 step 4: method, quoted path, the empty query line, then the two headers.
pub(super) fn string_to_sign(quoted_path: &str, nonce: &str, timestamp: &str) -> String {
    format!("POST\n{quoted_path}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n")
}

/// `base64` of the lowercase hex text of `HMAC-SHA256(key, message)`.
pub(super) fn hex_hmac_base64(key: &str, message: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(message.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex_text: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    STANDARD.encode(hex_text)
}

/// Reference §2 "LoginBySign" (community algorithm): lowercase hex SHA-256 of the five values
/// sorted ascending and concatenated.
pub(super) fn login_sign(acct_id: &str, username: &str, app_id: &str, app_secret: &str, timestamp: &str) -> String {
    let mut values = [acct_id, username, app_id, app_secret, timestamp];
    values.sort();
    let digest = Sha256::digest(values.concat().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// True when `timestamp` is Unix seconds within `max_skew_secs` of `now_secs`.
pub(super) fn fresh(timestamp: &str, now_secs: i64, max_skew_secs: i64) -> bool {
    timestamp.trim().parse::<i64>().is_ok_and(|ts| {
        now_secs
            .checked_sub(ts)
            .is_some_and(|gap| gap.unsigned_abs() <= max_skew_secs.unsigned_abs())
    })
}

/// Checks a signed request for `path` (percent-decoded) received at `now_secs`.
pub(super) fn check_signed(
    app: &AppCredentials<'_>,
    headers: &HeaderMap,
    path: &str,
    now_secs: i64,
    max_skew_secs: i64,
) -> Result<(), Refusal> {
    let app_key = header(headers, "X-Kd-Appkey");
    let client_id = header(headers, "X-Api-ClientID");
    if app_key.is_empty() || client_id.is_empty() {
        return Err(Refusal::Gateway(4002, "APP_ID is empty", "应用ID为空"));
    }
    let timestamp = header(headers, "x-api-timestamp");
    if !fresh(timestamp, now_secs, max_skew_secs) {
        return Err(Refusal::Gateway(
            4006,
            "Unauthorized, the request header X-Api-TimeStamp is invalid or expired",
            "请求头X-Api-TimeStamp无效或已过期",
        ));
    }
    let (expected_client, client_sec) = client_of(app.app_id);
    if client_id != expected_client || app_key != app.app_id {
        return Err(Refusal::Gateway(
            4001,
            "Unauthorized, X-Api-ClientID or X-Kd-Appkey is invalid",
            "应用ID无效",
        ));
    }
    if header(headers, "X-Api-Auth-Version") != AUTH_VERSION {
        return Err(Refusal::Gateway(
            4003,
            "Unauthorized, X-Api-Auth-Version must be 2.0",
            "请求头X-Api-Auth-Version必须为2.0",
        ));
    }
    let nonce = header(headers, "x-api-nonce");
    let expected = hex_hmac_base64(&client_sec, &string_to_sign(&quoted_path(path), nonce, timestamp));
    let list_ok = header(headers, "x-api-signheaders").eq_ignore_ascii_case(SIGNED_HEADER_LIST);
    if !list_ok || header(headers, "X-Api-Signature") != expected {
        return Err(Refusal::Gateway(
            4003,
            "Unauthorized, X-Api-Signature is invalid",
            "签名验证失败",
        ));
    }
    let app_data = STANDARD
        .decode(header(headers, "X-Kd-Appdata"))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    let parts: Vec<&str> = app_data.split(',').collect();
    let names_us = matches!(parts.as_slice(), [acct, user, lcid, _org]
        if *acct == app.acct_id && *user == app.username && lcid.parse::<u32>().is_ok());
    let kd_expected = hex_hmac_base64(app.app_secret, &format!("{}{app_data}", app.app_id));
    if !names_us || header(headers, "X-Kd-Signature") != kd_expected {
        return Err(Refusal::SessionLost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // Reference §9, K3Cloud.
    const APP_ID: &str = "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4";
    const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
    const PATH: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc";
    const TS: &str = "1700000000";
    const API_SIGNATURE: &str =
        "YTVmYjk2NDNhZDNhOTM2ZTk5M2E1YzhiYWIzOWE2YzFjYzNhMDczZDM5NzRiZmUxZGI4YmJkNjM0Nzk5NzE0Ng==";
    const APP_DATA: &str = "NjVhMGIxYzJkM2U0ZjUsYXBpdXNlciwyMDUyLDA=";
    const KD_SIGNATURE: &str =
        "N2U5MzcwOTM2MTI4ODA3MGRlMjZhNTAxNTdhYzkxMDhjNTZlNzAxZDMzN2VmMzUzZTNiM2FiMGI3MjIwM2JhYQ==";

    fn app() -> AppCredentials<'static> {
        AppCredentials {
            app_id: APP_ID,
            app_secret: APP_SECRET,
            acct_id: "65a0b1c2d3e4f5",
            username: "apiuser",
        }
    }

    /// The headers the SDK sends for the §9 request, typed in from the vectors.
    fn vector_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("X-Api-ClientID", "123456"),
            ("X-Api-Auth-Version", "2.0"),
            ("x-api-timestamp", TS),
            ("x-api-nonce", TS),
            ("x-api-signheaders", "x-api-timestamp,x-api-nonce"),
            ("X-Api-Signature", API_SIGNATURE),
            ("X-Kd-Appkey", APP_ID),
            ("X-Kd-Appdata", APP_DATA),
            ("X-Kd-Signature", KD_SIGNATURE),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn every_part_matches_the_reference_vectors() {
        assert_eq!(
            client_of(APP_ID),
            ("123456".to_owned(), "UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL".to_owned())
        );
        let text = string_to_sign(&quoted_path(PATH), TS, TS);
        assert_eq!(
            text,
            "POST\n%2Fk3cloud%2FKingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc\n\nx-api-nonce:1700000000\nx-api-timestamp:1700000000\n"
        );
        assert_eq!(
            hex_hmac_base64("UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL", &text),
            API_SIGNATURE
        );
        assert_eq!(STANDARD.encode("65a0b1c2d3e4f5,apiuser,2052,0"), APP_DATA);
        assert_eq!(
            hex_hmac_base64(APP_SECRET, &format!("{APP_ID}65a0b1c2d3e4f5,apiuser,2052,0")),
            KD_SIGNATURE
        );
        assert_eq!(
            login_sign("65a0b1c2d3e4f5", "apiuser", APP_ID, APP_SECRET, TS),
            "d04dfc4ba0c8b0d97639217ef06a2b7cdc9e4e6c42e81ed2b38aa8be0917618a"
        );
    }

    #[test]
    fn the_vector_request_passes_and_each_broken_part_is_refused() {
        let now = 1_700_000_000 + 60;
        assert_eq!(check_signed(&app(), &vector_headers(), PATH, now, 300), Ok(()));

        let stale = check_signed(&app(), &vector_headers(), PATH, 1_700_000_000 + 13 * 60, 300);
        assert!(matches!(stale, Err(Refusal::Gateway(4006, ..))));
        let other_path = check_signed(&app(), &vector_headers(), "/k3cloud/Other.common.kdsvc", now, 300);
        assert!(matches!(other_path, Err(Refusal::Gateway(4003, ..))));

        let broken = |name: &'static str, value: &'static str| {
            let mut headers = vector_headers();
            headers.insert(name, HeaderValue::from_static(value));
            check_signed(&app(), &headers, PATH, now, 300)
        };
        assert!(matches!(broken("X-Kd-Appkey", ""), Err(Refusal::Gateway(4002, ..))));
        assert!(matches!(
            broken("X-Api-ClientID", "654321"),
            Err(Refusal::Gateway(4001, ..))
        ));
        assert!(matches!(
            broken("X-Api-Auth-Version", "1.0"),
            Err(Refusal::Gateway(4003, ..))
        ));
        assert!(matches!(
            broken("x-api-signheaders", "x-api-nonce"),
            Err(Refusal::Gateway(4003, ..))
        ));
        assert!(matches!(
            broken("x-api-nonce", "1700000001"),
            Err(Refusal::Gateway(4003, ..))
        ));
        // Milliseconds are not seconds.
        assert!(matches!(
            broken("x-api-timestamp", "1700000000000"),
            Err(Refusal::Gateway(4006, ..))
        ));
        // The K3Cloud half: a signature keyed with the decoded tail instead of the AppSecret,
        // and app data naming another data center.
        let wrong_key = hex_hmac_base64(
            "UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL",
            &format!("{APP_ID}65a0b1c2d3e4f5,apiuser,2052,0"),
        );
        let mut headers = vector_headers();
        headers.insert("X-Kd-Signature", HeaderValue::from_str(&wrong_key).unwrap());
        assert_eq!(
            check_signed(&app(), &headers, PATH, now, 300),
            Err(Refusal::SessionLost)
        );
        assert_eq!(
            broken("X-Kd-Appdata", "MDAwMDAwLGFwaXVzZXIsMjA1MiwwCg=="),
            Err(Refusal::SessionLost)
        );
    }

    #[test]
    fn malformed_app_ids_and_tails_give_empty_secrets() {
        assert_eq!(client_of("no-underscore"), (String::new(), String::new()));
        assert_eq!(client_of("a_b_c"), (String::new(), String::new()));
        assert_eq!(client_of("123_short"), ("123".to_owned(), String::new()));
        assert_eq!(decode_app_secret("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"), "");
    }

    #[test]
    fn paths_are_quoted_byte_by_byte() {
        assert_eq!(quoted_path("/k3cloud/A.b-c_d~e"), "%2Fk3cloud%2FA.b-c_d~e");
        assert_eq!(quoted_path("/K3Cloud/x y"), "%2FK3Cloud%2Fx%20y");
        assert_eq!(quoted_path("/k3/中"), "%2Fk3%2F%E4%B8%AD");
    }
}
