//! Token header handling for the standard interface (pure). Nothing is signed: every request
//! carries the ERP-issued authentication string in a `token` header (seed 000: "token —
//! Request authentication string"). The token is static, so there is no login, no expiry and no
//! refresh; a refused token is a configuration error. The reference has no test vectors for
//! this vendor because there is nothing to compute.

use super::Settings;

/// The header carrying the token.
pub const TOKEN_HEADER: &str = "token";

/// The `token` header for `settings`; fails when the token is empty.
pub fn token_header(settings: &Settings) -> Result<(String, String), String> {
    let token = settings.token.trim();
    if token.is_empty() {
        return Err("erp-standard: `token` is empty; set it to the authentication string the ERP side issued".into());
    }
    Ok((TOKEN_HEADER.to_string(), token.to_string()))
}

/// Whether `received` equals `expected`, compared in time independent of where they differ
/// (for servers checking the header, such as the simulator).
pub fn token_matches(expected: &str, received: Option<&str>) -> bool {
    let Some(received) = received else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    let mut difference = u8::from(a.len() != b.len());
    for (index, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(index).copied().unwrap_or(!byte);
    }
    difference == 0 && !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_carries_the_trimmed_token() {
        let header = token_header(&Settings::with_token(" 7f3c9a1e-token ")).unwrap();
        assert_eq!(header, ("token".to_string(), "7f3c9a1e-token".to_string()));
        let error = token_header(&Settings::with_token("  ")).unwrap_err();
        assert!(error.contains("`token` is empty"), "{error}");
    }

    #[test]
    fn matching() {
        assert!(token_matches("abc", Some("abc")));
        assert!(!token_matches("abc", Some("abd")));
        assert!(!token_matches("abc", Some("ab")));
        assert!(!token_matches("abc", Some("abcd")));
        assert!(!token_matches("abc", None));
        assert!(!token_matches("", Some("")));
    }
}
