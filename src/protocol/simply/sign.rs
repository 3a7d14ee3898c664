//! Simply CRM's (vtiger's) login proof (pure).
//!
//! Promise: [`access_key`] returns the `accessKey` login field the server recomputes:
//! the lowercase hex MD5 of the challenge token followed by the user's access key (PHP
//! `md5($token . $accessKey)`). The user's access key comes from the user's preferences;
//! it is not the password.

use md5::{Digest, Md5};

/// `md5(token + user_access_key)` as lowercase hex.
pub fn access_key(token: &str, user_access_key: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(token.as_bytes());
    hasher.update(user_access_key.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vector() {
        assert_eq!(
            access_key("5e9f4b2a1c3d7", "AbCdEfGhIjKlMnOp"),
            "169e887eac9fa70350afb7c5abfe06cb"
        );
    }

    #[test]
    fn order_and_case_matter() {
        let proof = access_key("5e9f4b2a1c3d7", "AbCdEfGhIjKlMnOp");
        assert_eq!(proof, proof.to_lowercase());
        assert_ne!(access_key("AbCdEfGhIjKlMnOp", "5e9f4b2a1c3d7"), proof);
        assert_ne!(access_key("5e9f4b2a1c3d7", "abcdefghijklmnop"), proof);
        assert_ne!(access_key("5e9f4b2a1c3d8", "AbCdEfGhIjKlMnOp"), proof);
    }
}
