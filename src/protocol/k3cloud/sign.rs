//! Pure K3Cloud signing, byte for byte what the official Python SDK 8.2.0 computes.
//!
//! Every input (AppID, secrets, path, timestamp, nonce) is an argument, so the §9 vectors of
//! `reference/vendor-apis.md` are reproduced exactly by the tests below. Two keys are in play:
//! the XOR-decoded AppID tail signs `X-Api-Signature` (the gateway half) and the AppSecret signs
//! `X-Kd-Signature` (the K3Cloud half). Both signatures are base64 of the lowercase hex *text* of
//! an HMAC-SHA256, not of the raw digest.
//!
//! Also here: the community `LoginBySign` hash (sorted concatenation, SHA-256), which is not in
//! any official source and is offered only for the legacy login mode.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The ASCII key the SDK XORs the AppID tail with (its ROT13 seed `0054s397p6234378o09pn7q3r5qropr7`).
pub const DEFAULT_XOR_KEY: &str = "0054f397c6234378b09ca7d3e5debce7";
/// `X-Api-Auth-Version`.
pub const AUTH_VERSION: &str = "2.0";
/// `x-api-signheaders`: the headers covered by `X-Api-Signature`, in the SDK's order.
pub const SIGN_HEADERS: &str = "x-api-timestamp,x-api-nonce";

/// The XOR key for an SDK `x-kdapi-secpwd` override: the SDK takes 4 chunks of 8 characters
/// and applies ROT13, so a 32-character `secpwd` maps to `rot13(secpwd)`.
pub fn xor_key_from_secpwd(secpwd: &str) -> String {
    let chunks: String = (0..4)
        .map(|i| secpwd.chars().skip(i * 8).take(8).collect::<String>())
        .collect();
    chunks.chars().map(rot13).collect()
}

fn rot13(ch: char) -> char {
    match ch {
        'a'..='z' => char::from((ch as u8 - b'a' + 13) % 26 + b'a'),
        'A'..='Z' => char::from((ch as u8 - b'A' + 13) % 26 + b'A'),
        other => other,
    }
}

/// DecodeAppSecret: base64-decode the 32-character AppID tail, XOR it byte-wise with `xor_key`
/// and base64-encode the result. Like the SDK, anything that is not 32 characters of valid
/// base64 yields `""`.
pub fn decode_app_secret(tail: &str, xor_key: &str) -> String {
    if tail.len() != 32 {
        return String::new();
    }
    let Ok(raw) = STANDARD.decode(tail) else {
        return String::new();
    };
    let key = xor_key.as_bytes();
    let mixed: Vec<u8> = raw
        .iter()
        .enumerate()
        .map(|(i, byte)| byte ^ key.get(i).copied().unwrap_or(0))
        .collect();
    STANDARD.encode(mixed)
}

/// Splits an AppID `<clientId>_<32 chars>` into `(client_id, client_sec)`. As in the SDK, an
/// AppID that does not split into exactly two parts gives two empty strings.
pub fn split_app_id(app_id: &str, xor_key: &str) -> (String, String) {
    let parts: Vec<&str> = app_id.split('_').collect();
    match parts.as_slice() {
        [client_id, tail] => ((*client_id).to_owned(), decode_app_secret(tail, xor_key)),
        _ => (String::new(), String::new()),
    }
}

/// The signed form of a URL's path: the path (everything from the first `/` after the host)
/// percent-encoded like Python's `urllib.parse.quote`, with `/` then replaced by `%2F`.
///
/// The SDK looks for the first `/` at or after character 10 of the URL; for any host longer
/// than two characters that is the same `/`. Taking the real path avoids the SDK's mistake on
/// very short hosts. A bare path (no scheme) is used as it is.
pub fn signed_path(url_or_path: &str) -> String {
    let after_scheme = url_or_path
        .strip_prefix("https://")
        .or_else(|| url_or_path.strip_prefix("http://"));
    let path = match after_scheme {
        Some(rest) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => url_or_path,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len() * 2);
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The text `X-Api-Signature` covers: method, encoded path, the empty query line and the two
/// signed headers. K3Cloud signs only `POST`.
pub fn string_to_sign(encoded_path: &str, nonce: &str, timestamp: &str) -> String {
    format!("POST\n{encoded_path}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n")
}

/// `base64(lowercase_hex(HMAC_SHA256(key, message)))`, the SDK's `HmacSHA256`.
pub fn hmac_hex_base64(key: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this never fails; an empty key is still a key.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    STANDARD.encode(hex::encode(mac.finalize().into_bytes()))
}

/// `X-Api-Signature` for a POST to `url_or_path`.
pub fn api_signature(client_sec: &str, url_or_path: &str, nonce: &str, timestamp: &str) -> String {
    hmac_hex_base64(client_sec, &string_to_sign(&signed_path(url_or_path), nonce, timestamp))
}

/// The plain app data `AcctID,UserName,LCID,OrgNum`.
pub fn app_data(acct_id: &str, username: &str, lcid: u32, org_num: &str) -> String {
    format!("{acct_id},{username},{lcid},{org_num}")
}

/// `X-Kd-Appdata`: the app data, base64 of its UTF-8 bytes.
pub fn app_data_header(app_data: &str) -> String {
    STANDARD.encode(app_data.as_bytes())
}

/// `X-Kd-Signature`: keyed with the AppSecret over `AppID + app_data`.
pub fn kd_signature(app_id: &str, app_secret: &str, app_data: &str) -> String {
    hmac_hex_base64(app_secret, &format!("{app_id}{app_data}"))
}

/// The community `LoginBySign` hash: lowercase hex SHA-256 of the five values sorted
/// ascending (byte order) and concatenated. Not seen in official source.
pub fn login_by_sign_hash(acct_id: &str, username: &str, app_id: &str, app_secret: &str, timestamp: &str) -> String {
    let mut parts = [acct_id, username, app_id, app_secret, timestamp];
    parts.sort_unstable();
    hex::encode(Sha256::digest(parts.concat().as_bytes()))
}

/// Everything one signed request needs, in the SDK's header order.
pub struct SignInput<'a> {
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub acct_id: &'a str,
    pub username: &'a str,
    pub lcid: u32,
    pub org_num: &'a str,
    pub xor_key: &'a str,
    /// The full URL (or the bare path) the request is posted to.
    pub url: &'a str,
    /// Unix seconds, as text.
    pub timestamp: &'a str,
    /// The SDK sends the timestamp here too.
    pub nonce: &'a str,
}

/// The nine signed headers (`X-Api-*`, `x-api-*`, `X-Kd-*`), names spelled as the SDK does.
pub fn signed_headers(input: &SignInput<'_>) -> Vec<(String, String)> {
    let (client_id, client_sec) = split_app_id(input.app_id, input.xor_key);
    let data = app_data(input.acct_id, input.username, input.lcid, input.org_num);
    let pairs = [
        ("X-Api-ClientID", client_id),
        ("X-Api-Auth-Version", AUTH_VERSION.to_owned()),
        ("x-api-timestamp", input.timestamp.to_owned()),
        ("x-api-nonce", input.nonce.to_owned()),
        ("x-api-signheaders", SIGN_HEADERS.to_owned()),
        (
            "X-Api-Signature",
            api_signature(&client_sec, input.url, input.nonce, input.timestamp),
        ),
        ("X-Kd-Appkey", input.app_id.to_owned()),
        ("X-Kd-Appdata", app_data_header(&data)),
        ("X-Kd-Signature", kd_signature(input.app_id, input.app_secret, &data)),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // §9 K3Cloud vectors (fake credentials, computed with the SDK's own functions).
    const APP_ID: &str = "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4";
    const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
    const PATH: &str = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc";

    #[test]
    fn decoded_client_secret_matches_the_vector() {
        let (client_id, client_sec) = split_app_id(APP_ID, DEFAULT_XOR_KEY);
        assert_eq!(client_id, "123456");
        assert_eq!(client_sec, "UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL");
    }

    #[test]
    fn string_to_sign_matches_the_vector() {
        let text = string_to_sign(&signed_path(PATH), "1700000000", "1700000000");
        assert_eq!(
            text,
            "POST\n%2Fk3cloud%2FKingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc\n\nx-api-nonce:1700000000\nx-api-timestamp:1700000000\n"
        );
    }

    #[test]
    fn both_signatures_and_app_data_match_the_vectors() {
        let headers = signed_headers(&SignInput {
            app_id: APP_ID,
            app_secret: APP_SECRET,
            acct_id: "65a0b1c2d3e4f5",
            username: "apiuser",
            lcid: 2052,
            org_num: "0",
            xor_key: DEFAULT_XOR_KEY,
            url: &format!("https://erp.example.com{PATH}"),
            timestamp: "1700000000",
            nonce: "1700000000",
        });
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(
            get("X-Api-Signature"),
            Some("YTVmYjk2NDNhZDNhOTM2ZTk5M2E1YzhiYWIzOWE2YzFjYzNhMDczZDM5NzRiZmUxZGI4YmJkNjM0Nzk5NzE0Ng==")
        );
        assert_eq!(get("X-Kd-Appdata"), Some("NjVhMGIxYzJkM2U0ZjUsYXBpdXNlciwyMDUyLDA="));
        assert_eq!(
            get("X-Kd-Signature"),
            Some("N2U5MzcwOTM2MTI4ODA3MGRlMjZhNTAxNTdhYzkxMDhjNTZlNzAxZDMzN2VmMzUzZTNiM2FiMGI3MjIwM2JhYQ==")
        );
        assert_eq!(get("X-Api-ClientID"), Some("123456"));
        assert_eq!(get("X-Api-Auth-Version"), Some("2.0"));
        assert_eq!(get("x-api-signheaders"), Some("x-api-timestamp,x-api-nonce"));
        assert_eq!(get("X-Kd-Appkey"), Some(APP_ID));
        assert_eq!(headers.len(), 9);
    }

    #[test]
    fn login_by_sign_hash_matches_the_community_vector() {
        let hash = login_by_sign_hash("65a0b1c2d3e4f5", "apiuser", APP_ID, APP_SECRET, "1700000000");
        assert_eq!(hash, "d04dfc4ba0c8b0d97639217ef06a2b7cdc9e4e6c42e81ed2b38aa8be0917618a");
    }

    #[test]
    fn the_default_key_is_the_rot13_of_the_sdk_seed() {
        assert_eq!(xor_key_from_secpwd("0054s397p6234378o09pn7q3r5qropr7"), DEFAULT_XOR_KEY);
    }

    #[test]
    fn malformed_app_ids_give_empty_secrets_like_the_sdk() {
        assert_eq!(
            split_app_id("no-underscore", DEFAULT_XOR_KEY),
            (String::new(), String::new())
        );
        assert_eq!(split_app_id("a_b_c", DEFAULT_XOR_KEY), (String::new(), String::new()));
        assert_eq!(
            split_app_id("123_short", DEFAULT_XOR_KEY),
            ("123".to_owned(), String::new())
        );
        assert_eq!(
            decode_app_secret("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", DEFAULT_XOR_KEY),
            ""
        );
    }

    #[test]
    fn paths_are_quoted_like_python() {
        assert_eq!(signed_path("http://h:1/k3cloud/A.b-c_d~e"), "%2Fk3cloud%2FA.b-c_d~e");
        assert_eq!(signed_path("https://erp.example.com/K3Cloud/x y"), "%2FK3Cloud%2Fx%20y");
        assert_eq!(signed_path("http://a/b/c"), "%2Fb%2Fc");
        assert_eq!(signed_path("/k3/中"), "%2Fk3%2F%E4%B8%AD");
    }

    #[test]
    fn a_different_key_changes_the_signature() {
        let good = api_signature("UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL", PATH, "1", "1");
        let bad = api_signature("UVJWUANVXl8KXFlfWV1YSBNCShcUQRNM", PATH, "1", "1");
        assert_ne!(good, bad);
    }
}
