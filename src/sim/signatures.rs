//! The simulators' own signature checks, for `ferry test`: given a connector and its
//! settings, a check of one received request that recomputes the vendor's signature with
//! the simulator's code (written from the reference, never the connector's `sign`), so a
//! replayed run still catches a signing bug.

use super::RecordedRequest;
use serde_json::Value;

/// Checks one received request; `Err` says which signature is wrong and what was expected.
pub type Verifier = Box<dyn Fn(&RecordedRequest) -> Result<(), String> + Send + Sync>;

/// The request fields whose values each vendor's protocol makes time-dependent, random or
/// secret-dependent (signatures, timestamps, nonces, trace ids): replay only asks that they
/// be present, and [`verifier_for`] checks the signatures among them. Paths are the
/// replayed request's dotted paths (`body.sign`, `query.app_signature`).
pub fn volatile_fields(connector: &str) -> &'static [&'static str] {
    match connector {
        "guanyi" => &["body.sign"],
        "jackyun" => &["body.sign", "body.timestamp", "query.sign", "query.timestamp"],
        "kingdee-jdy" => &["query.app_signature"],
        "fxiaoke" => &["query.thirdTraceId"],
        // md5(challenge token + access key): the token comes from the recorded answer, the
        // key is the stand-in's, so the value differs from the recording's.
        "simply-crm" => &["body.accessKey"],
        _ => &[],
    }
}

/// Answer fields that hold an absolute expiry in epoch milliseconds (jdy's app-token
/// `data.expires`, reference §3). A replay moves them by the time since the recording, so a
/// session recorded as valid for a day stays valid for a day whenever the test runs.
pub fn expiry_fields(connector: &str) -> &'static [&'static str] {
    match connector {
        "kingdee-jdy" => &["data.expires"],
        _ => &[],
    }
}

/// The simulator's signature check for `connector` with `settings` (the connection's
/// settings after `${VAR}` substitution); `None` for a connector that signs nothing.
pub fn verifier_for(connector: &str, settings: &Value) -> Option<Verifier> {
    let text = |key: &str| {
        settings
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match connector {
        "guanyi" => {
            let secret = text("secret");
            Some(Box::new(move |request| {
                super::guanyi::verify_signature(&secret, request)
            }))
        }
        "jackyun" => {
            let secret = text("secret");
            Some(Box::new(move |request| {
                super::jackyun::verify_signature(&secret, request)
            }))
        }
        "kingdee-jdy" => {
            let client_secret = text("client_secret");
            let app_key = settings.get("app_key").and_then(Value::as_str).map(str::to_string);
            let app_secret = settings.get("app_secret").and_then(Value::as_str).map(str::to_string);
            Some(Box::new(move |request| {
                super::jdy::verify_signature(&client_secret, app_key.as_deref(), app_secret.as_deref(), request)
            }))
        }
        "kingdee-k3cloud" => {
            let (app_id, app_secret, acct_id, username) =
                (text("app_id"), text("app_secret"), text("acct_id"), text("username"));
            Some(Box::new(move |request| {
                super::k3cloud::verify_signature(&app_id, &app_secret, &acct_id, &username, request)
            }))
        }
        _ => None,
    }
}
