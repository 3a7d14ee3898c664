//! Who may push (pure): the seed-000 `token` header, compared in constant time, and an
//! optional Standard Webhooks signature over `id.timestamp.body`.
//!
//! Standard Webhooks (the `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! headers): the signature is `v1,` followed by base64 of HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`, keyed by the secret's bytes (a `whsec_` prefix marks a
//! base64-encoded secret). The header may carry several space-separated signatures, and a
//! receiver may hold several secrets while one is being rotated: any match passes. A
//! timestamp further than the tolerance from now is refused, so a captured push cannot be
//! replayed later.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a push was refused (answered 401; nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the `token` header is missing")]
    MissingToken,
    #[error("the `token` header is wrong")]
    WrongToken,
    #[error("the push is not signed: the `{0}` header is missing")]
    MissingSignatureHeader(&'static str),
    #[error("`webhook-timestamp` is not a number of seconds")]
    BadTimestamp,
    #[error("the signature is {0} s from now, beyond the {1} s tolerance (a replayed or delayed push)")]
    Stale(i64, i64),
    #[error("no signature matches any of the receiver's secrets")]
    BadSignature,
}

/// Whether `given` equals `expected`, in time that does not depend on where they differ.
pub fn token_matches(given: Option<&str>, expected: &str) -> Result<(), AuthError> {
    let given = given.ok_or(AuthError::MissingToken)?;
    // Lengths leak, contents do not: a secret's length is no secret worth keeping here.
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::WrongToken)
    }
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64, or raw text).
fn secret_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// The `v1,…` signature of a push, as a sender computes it.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret_key(secret)).expect("HMAC accepts any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The Standard Webhooks headers of one push.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a push's signature against `secrets` at time `now` (unix seconds).
pub fn verify_signature(
    headers: SignedHeaders<'_>,
    body: &[u8],
    secrets: &[String],
    tolerance_secs: i64,
    now: i64,
) -> Result<(), AuthError> {
    let id = headers.id.ok_or(AuthError::MissingSignatureHeader("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(AuthError::MissingSignatureHeader("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(AuthError::MissingSignatureHeader("webhook-signature"))?;
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| AuthError::BadTimestamp)?;
    let skew = now - timestamp;
    if skew.abs() > tolerance_secs {
        return Err(AuthError::Stale(skew, tolerance_secs));
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let expected = sign(secret, id, timestamp, body);
        for given in signatures.split_whitespace() {
            if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Ok(());
            }
        }
    }
    Err(AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert_eq!(token_matches(Some("s3cret"), "s3cret"), Ok(()));
        assert_eq!(token_matches(Some("s3cre"), "s3cret"), Err(AuthError::WrongToken));
        assert_eq!(token_matches(Some("s3cret!"), "s3cret"), Err(AuthError::WrongToken));
        assert_eq!(token_matches(None, "s3cret"), Err(AuthError::MissingToken));
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The published Standard Webhooks example: this secret, id, timestamp and body
        // give this signature.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(secret, id, 1614265330, body), expected);
        let headers = SignedHeaders {
            id: Some(id),
            timestamp: Some("1614265330"),
            signature: Some(&format!("v1,bm90IGl0 {expected}")),
        };
        let secrets = vec!["whsec_old".to_string(), secret.to_string()];
        assert_eq!(verify_signature(headers, body, &secrets, 300, 1614265330 + 10), Ok(()));
        assert_eq!(
            verify_signature(headers, b"{\"test\": 1}", &secrets, 300, 1614265330),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(headers, body, &secrets, 300, 1614265330 + 301),
            Err(AuthError::Stale(301, 300))
        );
        let unsigned = SignedHeaders {
            signature: None,
            ..headers
        };
        assert_eq!(
            verify_signature(unsigned, body, &secrets, 300, 1614265330),
            Err(AuthError::MissingSignatureHeader("webhook-signature"))
        );
    }
}
