//! Pure signing for the Kingdee API gateway in front of jdy (精斗云 / 云星辰) v2.
//!
//! Owns the byte-exact string-to-sign and the two HMAC values the gateway checks:
//!
//! * `X-Api-Signature = base64(hex(HMAC-SHA256(key = client_secret, msg)))`, where `msg` is
//!   `METHOD\n<path, encodeURIComponent-style>\n<query>\nx-api-nonce:<n>\nx-api-timestamp:<ms>\n`.
//!   The query line sorts the parameters by key and URL-encodes key and value **twice**
//!   (`=` → `%253D`, space → `%2520`); the real URL carries them encoded **once**. A JSON body
//!   is not signed. The nonce line comes before the timestamp line and every line, the last
//!   included, ends in `\n`.
//! * `app_signature = base64(hex(HMAC-SHA256(key = appSecret, msg = appKey)))`, sent as a
//!   query parameter of `kingdee_auth_token`.
//!
//! Note the base64 is taken of the lowercase **hex text**, not of the raw digest.
//! Every input (time, nonce, secrets) is an argument, so the §9 vectors reproduce exactly.
//!
//! Encoding keeps RFC 3986 unreserved bytes (`A-Z a-z 0-9 - _ . ~`) and percent-encodes every
//! other byte with uppercase hex, as `rawurlencode` and Python's `quote(safe='')` do. Whether
//! the gateway wants a space as `%20` or `+` is an inference (`%20` by default); the
//! `space_as_plus` switch exists in case a tenant proves otherwise.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Value of `X-Api-Auth-Version`.
pub const AUTH_VERSION: &str = "2.0";
/// Value of `X-Api-SignHeaders`: the headers folded into the signature.
pub const SIGN_HEADERS: &str = "X-Api-TimeStamp,X-Api-Nonce";

/// How a space is written when a query value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpaceStyle {
    /// `%20` (encodeURIComponent / rawurlencode); the documented clients do this.
    #[default]
    Percent20,
    /// `+` (HTML form style, Java `URLEncoder`).
    Plus,
}

/// Percent-encodes every byte but the RFC 3986 unreserved ones (`/` becomes `%2F`).
pub fn encode_component(text: &str, space: SpaceStyle) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' if space == SpaceStyle::Plus => out.push('+'),
            other => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(other >> 4)]));
                out.push(char::from(HEX[usize::from(other & 0x0f)]));
            }
        }
    }
    out
}

/// The path line: the whole path encoded once, e.g. `%2Fjdy%2Fv2%2Fscm%2Fpur_inbound`.
pub fn encode_path(path: &str) -> String {
    encode_component(path, SpaceStyle::Percent20)
}

/// Sorts query pairs by key (then value), byte order, as the gateway does before signing.
pub fn sorted_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut sorted: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted
}

/// The query line of the string-to-sign: sorted, key and value each encoded twice.
/// Empty when there are no parameters.
pub fn signed_query(pairs: &[(String, String)], space: SpaceStyle) -> String {
    let twice = |text: &str| encode_component(&encode_component(text, space), space);
    sorted_pairs(pairs)
        .into_iter()
        .map(|(key, value)| format!("{}={}", twice(key), twice(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query string for the real URL (without `?`): sorted, encoded once.
pub fn wire_query(pairs: &[(String, String)], space: SpaceStyle) -> String {
    sorted_pairs(pairs)
        .into_iter()
        .map(|(key, value)| format!("{}={}", encode_component(key, space), encode_component(value, space)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The exact text the gateway signs.
pub fn string_to_sign(
    method: &str,
    path: &str,
    pairs: &[(String, String)],
    nonce: &str,
    timestamp_ms: &str,
    space: SpaceStyle,
) -> String {
    format!(
        "{}\n{}\n{}\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp_ms}\n",
        method.to_ascii_uppercase(),
        encode_path(path),
        signed_query(pairs, space),
    )
}

/// `base64(hex(HMAC-SHA256(key, message)))`, the gateway's signature family.
pub fn hmac_hex_base64(key: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let hex_digest = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(hex_digest)
}

/// `X-Api-Signature` for a string-to-sign.
pub fn gateway_signature(client_secret: &str, string_to_sign: &str) -> String {
    hmac_hex_base64(client_secret, string_to_sign)
}

/// `app_signature` for `kingdee_auth_token`: HMAC keyed by the app secret over the app key.
pub fn app_signature(app_key: &str, app_secret: &str) -> String {
    hmac_hex_base64(app_secret, app_key)
}

/// Everything needed to sign one gateway call.
#[derive(Clone, Copy)]
pub struct GatewayCall<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The URL path, e.g. `/jdy/v2/scm/pur_inbound`.
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(String, String)],
    /// `X-Api-Nonce`.
    pub nonce: u64,
    /// `X-Api-TimeStamp`, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// How a space in a query value is encoded.
    pub space: SpaceStyle,
}

impl std::fmt::Debug for GatewayCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCall")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_keys", &self.query.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("nonce", &self.nonce)
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

/// The six `X-Api-*` headers of one call, signature included, in a fixed order.
pub fn gateway_headers(client_id: &str, client_secret: &str, call: &GatewayCall<'_>) -> Vec<(String, String)> {
    let nonce = call.nonce.to_string();
    let timestamp = call.timestamp_ms.to_string();
    let text = string_to_sign(call.method, call.path, call.query, &nonce, &timestamp, call.space);
    vec![
        ("X-Api-ClientID".to_owned(), client_id.to_owned()),
        ("X-Api-Auth-Version".to_owned(), AUTH_VERSION.to_owned()),
        ("X-Api-TimeStamp".to_owned(), timestamp),
        ("X-Api-Nonce".to_owned(), nonce),
        ("X-Api-SignHeaders".to_owned(), SIGN_HEADERS.to_owned()),
        ("X-Api-Signature".to_owned(), gateway_signature(client_secret, &text)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn app_signature_matches_the_published_vector() {
        assert_eq!(
            app_signature("abc", "abc123"),
            "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ=="
        );
    }

    #[test]
    fn official_doc_example_reproduces() {
        let query = pairs(&[
            (
                "app_signature",
                "MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA==",
            ),
            ("app_key", "bVZgAZOv1"),
        ]);
        let text = string_to_sign(
            "get",
            "/jdyconnector/app_management/kingdee_auth_token",
            &query,
            "4427456950",
            "1670305063559",
            SpaceStyle::Percent20,
        );
        assert_eq!(
            text,
            "GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\napp_key=bVZgAZOv1&app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%253D%253D\nx-api-nonce:4427456950\nx-api-timestamp:1670305063559\n"
        );
        assert_eq!(
            gateway_signature("f2adcfef73369bfc4e1384677d38a0ff", &text),
            "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ=="
        );
    }

    #[test]
    fn business_call_vector_reproduces_with_twice_encoded_sorted_query() {
        let query = pairs(&[
            ("page", "1"),
            ("page_size", "100"),
            ("modify_start_time", "2024-03-01 00:00:00"),
        ]);
        let call = GatewayCall {
            method: "GET",
            path: "/jdy/v2/scm/pur_inbound",
            query: &query,
            nonce: 1_234_567_890,
            timestamp_ms: 1_709_251_200_000,
            space: SpaceStyle::Percent20,
        };
        let text = string_to_sign(
            call.method,
            call.path,
            call.query,
            "1234567890",
            "1709251200000",
            call.space,
        );
        assert_eq!(
            text,
            "GET\n%2Fjdy%2Fv2%2Fscm%2Fpur_inbound\nmodify_start_time=2024-03-01%252000%253A00%253A00&page=1&page_size=100\nx-api-nonce:1234567890\nx-api-timestamp:1709251200000\n"
        );
        let headers = gateway_headers("client", "0123456789abcdef0123456789abcdef", &call);
        let signature = headers
            .iter()
            .find(|(name, _)| name == "X-Api-Signature")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            signature,
            Some("NWQyMDBiNzBhNGJkMjkwMjM5YWQ1NTVjM2E0YzFlNjRiMjc1ZDYxZjhlOWNiYTY1NWZjNzQ5MWRkZmRmODdhNA==")
        );
        assert_eq!(
            wire_query(&query, SpaceStyle::Percent20),
            "modify_start_time=2024-03-01%2000%3A00%3A00&page=1&page_size=100"
        );
    }

    #[test]
    fn headers_are_complete_and_ordered() {
        let call = GatewayCall {
            method: "POST",
            path: "/x",
            query: &[],
            nonce: 7,
            timestamp_ms: 1_000,
            space: SpaceStyle::Percent20,
        };
        let headers = gateway_headers("id", "secret", &call);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-Api-ClientID",
                "X-Api-Auth-Version",
                "X-Api-TimeStamp",
                "X-Api-Nonce",
                "X-Api-SignHeaders",
                "X-Api-Signature"
            ]
        );
        assert_eq!(headers[2].1, "1000");
        assert_eq!(headers[3].1, "7");
        // An empty query still leaves its (empty) line.
        assert_eq!(
            string_to_sign("post", "/x", &[], "7", "1000", SpaceStyle::Percent20),
            "POST\n%2Fx\n\nx-api-nonce:7\nx-api-timestamp:1000\n"
        );
    }

    #[test]
    fn encoding_rules() {
        assert_eq!(
            encode_component("a b/c=d~_.-中", SpaceStyle::Percent20),
            "a%20b%2Fc%3Dd~_.-%E4%B8%AD"
        );
        assert_eq!(encode_component("a b", SpaceStyle::Plus), "a+b");
        assert_eq!(signed_query(&pairs(&[("k", "a b")]), SpaceStyle::Plus), "k=a%2Bb");
        assert_eq!(
            signed_query(&pairs(&[("k", "a b")]), SpaceStyle::Percent20),
            "k=a%2520b"
        );
        // Keys sort in byte order, and keys are encoded too.
        assert_eq!(
            signed_query(&pairs(&[("b", "1"), ("a[]", "2"), ("A", "3")]), SpaceStyle::Percent20),
            "A=3&a%255B%255D=2&b=1"
        );
        assert_ne!(app_signature("abc", "abc124"), app_signature("abc", "abc123"));
    }
}
