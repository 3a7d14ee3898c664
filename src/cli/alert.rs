//! `ferry run --alert URL`: a message to a group robot or a webhook when a run fails, aborts
//! or cannot reach its peers, or when the scheme's open failures pass
//! `--alert-open-failures N`. A run stopped on request (`systemctl stop`) alerts nobody.
//!
//! Each `--alert` names one receiver; its kind comes from the host, or from a prefix:
//!
//! | kind       | recognised host            | prefix       | message                                |
//! |------------|----------------------------|--------------|----------------------------------------|
//! | WeCom      | `qyapi.weixin.qq.com`      | `wecom+`     | `msgtype: markdown`                    |
//! | DingTalk   | `oapi.dingtalk.com`        | `dingtalk+`  | `msgtype: markdown`, signed if secret  |
//! | Feishu     | `open.feishu.cn`, `open.larksuite.com` | `feishu+` | `msg_type: text`, signed if secret |
//! | webhook    | anything else              | `webhook+`   | a JSON object of the run's facts       |
//!
//! A robot's signing secret is given as a `secret=` query parameter of the URL; it is taken
//! out before anything is sent and used only to sign (DingTalk: `timestamp` and `sign` in
//! the query, HMAC-SHA256 of `timestamp\nsecret` keyed by the secret; Feishu: `timestamp`
//! and `sign` in the body, HMAC-SHA256 of nothing keyed by `timestamp\nsecret`).
//!
//! Promises: building a message is pure ([`request`]); the tokens in a receiver's URL
//! (`key`, `access_token`, the Feishu hook id) and its secret never appear in a log line
//! or an error ([`AlertTarget::describe`]); the text carries only masked values; a receiver
//! that fails is logged as a warning and never changes the run's exit code.

use crate::redact::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

/// How long one receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Which message format a receiver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    WeCom,
    DingTalk,
    Feishu,
}

/// One `--alert` receiver.
#[derive(Debug, Clone)]
pub struct AlertTarget {
    pub kind: Kind,
    /// The URL to post to, without the `secret` parameter.
    url: url::Url,
    secret: Option<Secret>,
}

/// Query parameters whose values are credentials.
const TOKEN_PARAMS: [&str; 5] = ["key", "access_token", "token", "sign", "secret"];

impl AlertTarget {
    /// Parses an `--alert` value; the error names the problem without the URL's tokens.
    pub fn parse(spec: &str) -> Result<AlertTarget, String> {
        let (forced, rest) = match spec.split_once('+') {
            Some((prefix, rest)) if !prefix.contains(':') && !prefix.contains('/') => {
                let kind = match prefix {
                    "wecom" => Kind::WeCom,
                    "dingtalk" => Kind::DingTalk,
                    "feishu" | "lark" => Kind::Feishu,
                    "webhook" => Kind::Webhook,
                    other => {
                        return Err(format!(
                            "unknown alert kind `{other}+`; use wecom+, dingtalk+, feishu+ or webhook+"
                        ))
                    }
                };
                (Some(kind), rest)
            }
            _ => (None, spec),
        };
        let mut url = url::Url::parse(rest).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{}` is not http or https", url.scheme()));
        }
        let kind = forced.unwrap_or(match url.host_str().unwrap_or_default() {
            "qyapi.weixin.qq.com" => Kind::WeCom,
            "oapi.dingtalk.com" => Kind::DingTalk,
            "open.feishu.cn" | "open.larksuite.com" => Kind::Feishu,
            _ => Kind::Webhook,
        });
        let mut secret = None;
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "secret" {
                    secret = Some(Secret::new(v.into_owned()));
                    None
                } else {
                    Some((k.into_owned(), v.into_owned()))
                }
            })
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        if secret.is_some() && !matches!(kind, Kind::DingTalk | Kind::Feishu) {
            return Err("only DingTalk and Feishu robots are signed with a `secret=`".to_owned());
        }
        Ok(AlertTarget { kind, url, secret })
    }

    /// The receiver for logs: its kind and URL with every token masked.
    pub fn describe(&self) -> String {
        let mut shown = self.url.clone();
        let _ = shown.set_password(None).map(|_| shown.set_username(""));
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let masked = if TOKEN_PARAMS.contains(&k.as_ref()) || self.kind == Kind::Webhook {
                    crate::redact::MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), masked)
            })
            .collect();
        if !pairs.is_empty() {
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        if self.kind == Kind::Feishu {
            // The hook's last path segment is its token.
            if let Ok(mut segments) = shown.path_segments_mut() {
                segments.pop().push(crate::redact::MASK);
            }
        }
        let kind = match self.kind {
            Kind::Webhook => "webhook",
            Kind::WeCom => "WeCom robot",
            Kind::DingTalk => "DingTalk robot",
            Kind::Feishu => "Feishu robot",
        };
        format!("{kind} {}", shown.as_str().replace("%2A%2A%2A", crate::redact::MASK))
    }

    /// Every credential this receiver holds, for masking error texts.
    fn credentials(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .url
            .query_pairs()
            .filter(|(k, _)| TOKEN_PARAMS.contains(&k.as_ref()))
            .map(|(_, v)| v.into_owned())
            .collect();
        if self.kind == Kind::Feishu {
            found.extend(
                self.url
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .map(str::to_owned),
            );
        }
        found.extend(self.secret.as_ref().map(|s| s.expose().to_owned()));
        found.retain(|v| v.len() >= 3);
        found
    }
}

/// What an alert says about a run (every text already masked).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertFacts {
    pub scheme: String,
    /// `failed_rows`, `aborted`, `unreachable`, `error`, or `ok` (an alert on open failures).
    pub outcome: String,
    pub run_id: Option<i64>,
    /// Why the run stopped, or what passed its threshold.
    pub reason: Option<String>,
    pub open_failures: Option<i64>,
    pub host: String,
    /// The `--store` the run used (for the commands in the message).
    pub store: String,
    /// The run's summary as JSON (none when the run did not start).
    pub summary: Option<Value>,
}

impl AlertFacts {
    fn title(&self) -> String {
        let what = match self.outcome.as_str() {
            "failed_rows" => "records failed",
            "aborted" => "run aborted",
            "unreachable" => "peer unreachable",
            "error" => "run did not start",
            _ => "open failures",
        };
        format!("ferry: {} — {what}", self.scheme)
    }

    /// The message body shared by the robots (Markdown-light: robots that do not render it
    /// still show it well).
    fn text(&self) -> String {
        let mut lines = vec![self.title()];
        lines.push(format!("outcome: {} on {}", self.outcome, self.host));
        if let Some(run) = self.run_id {
            lines.push(format!("run: {run} (ferry runs show {run} --store {})", self.store));
        }
        if let Some(summary) = &self.summary {
            let count = |name: &str| summary.get(name).and_then(Value::as_u64).unwrap_or(0);
            lines.push(format!(
                "read {}, created {}, updated {}, failed {}",
                count("read"),
                count("created"),
                count("updated"),
                count("failed")
            ));
        }
        if let Some(open) = self.open_failures {
            lines.push(format!(
                "open failures: {open} (ferry failures list --scheme {} --store {})",
                self.scheme, self.store
            ));
        }
        if let Some(reason) = &self.reason {
            lines.push(format!("reason: {reason}"));
        }
        lines.join("\n")
    }
}

/// The URL and JSON body of the alert `facts` for `target` at `now_ms` (signing included).
pub fn request(target: &AlertTarget, facts: &AlertFacts, now_ms: i64) -> (url::Url, Value) {
    let mut url = target.url.clone();
    let text = facts.text();
    let body = match target.kind {
        Kind::Webhook => json!({
            "event": "ferry.run",
            "title": facts.title(),
            "text": text,
            "facts": facts,
        }),
        Kind::WeCom => json!({"msgtype": "markdown", "markdown": {"content": markdown(&text)}}),
        Kind::DingTalk => {
            if let Some(secret) = &target.secret {
                let sign = hmac_base64(
                    secret.expose().as_bytes(),
                    format!("{now_ms}\n{}", secret.expose()).as_bytes(),
                );
                url.query_pairs_mut()
                    .append_pair("timestamp", &now_ms.to_string())
                    .append_pair("sign", &sign);
            }
            json!({"msgtype": "markdown", "markdown": {"title": facts.title(), "text": markdown(&text)}})
        }
        Kind::Feishu => {
            let mut body = json!({"msg_type": "text", "content": {"text": text}});
            if let Some(secret) = &target.secret {
                let seconds = now_ms / 1000;
                let sign = hmac_base64(format!("{seconds}\n{}", secret.expose()).as_bytes(), b"");
                body["timestamp"] = Value::String(seconds.to_string());
                body["sign"] = Value::String(sign);
            }
            body
        }
    };
    (url, body)
}

/// The text with its first line bold and the rest as Markdown lines.
fn markdown(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let rest: Vec<String> = lines.map(|l| format!("> {l}")).collect();
    format!("**{first}**\n{}", rest.join("\n"))
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts the alert to every target, one after the other; failures are logged, masked.
pub async fn send(targets: &[AlertTarget], facts: &AlertFacts) {
    if targets.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            super::logging::warn(format_args!("cannot send alerts: {e}"));
            return;
        }
    };
    for target in targets {
        let (url, body) = request(target, facts, chrono::Utc::now().timestamp_millis());
        let answer = match client.post(url).json(&body).send().await {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                robot_error(status, &text)
            }
            Err(e) => Some(e.without_url().to_string()),
        };
        match answer {
            None => tracing::info!(receiver = %target.describe(), "alert sent"),
            Some(problem) => {
                let masked = crate::redact::Redactor::new(target.credentials())
                    .redact(&problem)
                    .into_owned();
                super::logging::warn(format_args!("the alert to {} failed: {masked}", target.describe()));
            }
        }
    }
}

/// Why a receiver refused the message: a status other than 2xx, or a robot's error code
/// (`errcode` of WeCom and DingTalk, `code` of Feishu) other than 0.
fn robot_error(status: reqwest::StatusCode, text: &str) -> Option<String> {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if !status.is_success() {
        return Some(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    let code = body.get("errcode").or_else(|| body.get("code")).and_then(Value::as_i64);
    match code {
        Some(code) if code != 0 => {
            let message = body
                .get("errmsg")
                .or_else(|| body.get("msg"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(format!("the robot answered code {code}: {message}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AlertFacts {
        AlertFacts {
            scheme: "orders".into(),
            outcome: "aborted".into(),
            run_id: Some(7),
            reason: Some("the target answered 500".into()),
            open_failures: Some(3),
            host: "erp-sync-1".into(),
            store: "/var/lib/ferry/ferry.db".into(),
            summary: Some(json!({"read": 10, "created": 4, "failed": 1})),
        }
    }

    #[test]
    fn kinds_come_from_the_host_or_a_prefix_and_secrets_leave_the_url() {
        let ding =
            AlertTarget::parse("https://oapi.dingtalk.com/robot/send?access_token=tok123&secret=SECabc").unwrap();
        assert_eq!(ding.kind, Kind::DingTalk);
        assert_eq!(
            ding.url.as_str(),
            "https://oapi.dingtalk.com/robot/send?access_token=tok123"
        );
        assert_eq!(
            ding.describe(),
            "DingTalk robot https://oapi.dingtalk.com/robot/send?access_token=***"
        );
        let feishu = AlertTarget::parse("feishu+http://127.0.0.1:9/open-apis/bot/v2/hook/abcdef").unwrap();
        assert_eq!(feishu.kind, Kind::Feishu);
        assert_eq!(
            feishu.describe(),
            "Feishu robot http://127.0.0.1:9/open-apis/bot/v2/hook/***"
        );
        let wecom = AlertTarget::parse("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1").unwrap();
        assert_eq!(wecom.kind, Kind::WeCom);
        assert!(!wecom.describe().contains("k-1"));
        let hook = AlertTarget::parse("https://user:pw@hooks.example/x?t=1").unwrap();
        assert_eq!(hook.kind, Kind::Webhook);
        assert!(
            !hook.describe().contains("pw") && !hook.describe().contains("t=1"),
            "{}",
            hook.describe()
        );
        assert!(AlertTarget::parse("smtp+mail://x")
            .unwrap_err()
            .contains("unknown alert kind"));
        assert!(AlertTarget::parse("ftp://x").unwrap_err().contains("not http"));
        assert!(AlertTarget::parse("https://hooks.example/x?secret=s").is_err());
    }

    #[test]
    fn dingtalk_is_signed_in_the_query_and_feishu_in_the_body() {
        let ding = AlertTarget::parse("dingtalk+http://127.0.0.1/send?access_token=t&secret=SEC1").unwrap();
        let (url, body) = request(&ding, &facts(), 1_700_000_000_123);
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["timestamp"], "1700000000123");
        assert_eq!(query["sign"], hmac_base64(b"SEC1", b"1700000000123\nSEC1"));
        assert!(!url.as_str().contains("SEC1"));
        assert_eq!(body["msgtype"], "markdown");
        assert!(body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("the target answered 500"));

        let feishu = AlertTarget::parse("feishu+http://127.0.0.1/hook/h?secret=SEC2").unwrap();
        let (_, body) = request(&feishu, &facts(), 1_700_000_000_123);
        assert_eq!(body["timestamp"], "1700000000");
        assert_eq!(body["sign"], hmac_base64(b"1700000000\nSEC2", b""));
        assert_eq!(body["msg_type"], "text");
        assert!(body["content"]["text"]
            .as_str()
            .unwrap()
            .starts_with("ferry: orders — run aborted"));
    }

    #[test]
    fn a_robot_error_code_is_a_failure() {
        assert_eq!(
            robot_error(reqwest::StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#),
            None
        );
        assert!(robot_error(
            reqwest::StatusCode::OK,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#
        )
        .unwrap()
        .contains("sign not match"));
        assert!(robot_error(reqwest::StatusCode::OK, r#"{"code":19021,"msg":"sign match fail"}"#).is_some());
        assert!(robot_error(reqwest::StatusCode::BAD_GATEWAY, "").is_some());
    }
}
