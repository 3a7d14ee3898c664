//! `ferry test --record`: which built-in simulators stand behind a shipped scheme, the
//! record-time redaction, and the YAML the recording is written as.

use crate::sim::flows::{self, Flow};
use crate::sim::shop::{ShopConfig, ShopSim};
use crate::sim::SimHandle;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The simulators a recording runs against, and the environment that points a scheme at them.
pub enum RecordSims {
    Flow(flows::Running),
    Shop {
        sim: ShopSim,
        handle: SimHandle,
        env: HashMap<String, String>,
    },
}

/// The shop simulator's bearer token (the demo's).
const SHOP_TOKEN: &str = "demo-token";

/// The source and target connectors of each seed flow's scheme.
fn flow_connectors(flow: Flow) -> (&'static str, &'static str) {
    match flow {
        Flow::GuanyiToK3Cloud => ("guanyi", "kingdee-k3cloud"),
        Flow::JdyToJackyun => ("kingdee-jdy", "jackyun"),
        Flow::SimplyToK3Cloud => ("simply-crm", "kingdee-k3cloud"),
        Flow::K3CloudToSimply => ("kingdee-k3cloud", "simply-crm"),
        Flow::ErpStandardToFxiaoke => ("erp-standard", "fxiaoke"),
    }
}

/// Starts the simulators behind `plan`, each with [`super::runner::RECORDED_RECORDS`]
/// source records: those of the shipped scheme of the same name, or else of the seed flow
/// with the same source and target connectors (as `ferry init --connector … --target-connector …`
/// writes; plain `http` to `http` is the shop).
pub async fn start_for(plan: &crate::scheme::Plan) -> Result<RecordSims, String> {
    let records = super::runner::RECORDED_RECORDS;
    let scheme = plan.name.as_str();
    let connector_of = |name: &str| plan.connections.get(name).map(|c| c.connector).unwrap_or_default();
    let connectors = (
        connector_of(&plan.source.connection),
        connector_of(&plan.target.connection),
    );
    if scheme == "shop-orders-to-erp" || connectors == ("http", "http") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let config = ShopConfig {
            records,
            token: Some(SHOP_TOKEN.to_string()),
            reject_every: None,
            ..ShopConfig::default()
        };
        let (sim, handle) = ShopSim::start(config, listener).await.map_err(|e| e.to_string())?;
        let env = HashMap::from([
            ("SHOP_URL".to_string(), handle.base_url()),
            ("ERP_URL".to_string(), handle.base_url()),
            ("SHOP_TOKEN".to_string(), SHOP_TOKEN.to_string()),
        ]);
        return Ok(RecordSims::Shop { sim, handle, env });
    }
    let flow = Flow::ALL
        .into_iter()
        .find(|flow| flow.file().trim_end_matches(".yaml") == scheme)
        .or_else(|| Flow::ALL.into_iter().find(|flow| flow_connectors(*flow) == connectors))
        .ok_or_else(|| {
            let known: Vec<String> = Flow::ALL
                .iter()
                .map(|f| format!("{} → {}", flow_connectors(*f).0, flow_connectors(*f).1))
                .collect();
            format!(
                "no built-in simulators stand behind {} → {}; recording knows http → http, {}",
                connectors.0,
                connectors.1,
                known.join(", ")
            )
        })?;
    let running = flows::start_sized(flow, Some(records))
        .await
        .map_err(|e| format!("cannot start the simulators: {e}"))?;
    Ok(RecordSims::Flow(running))
}

impl RecordSims {
    /// The variables that point the scheme at the simulators, with their credentials.
    pub fn env(&self) -> HashMap<String, String> {
        match self {
            RecordSims::Flow(running) => running.env_map(),
            RecordSims::Shop { env, .. } => env.clone(),
        }
    }

    /// Changes one source record (for `change_between_runs`).
    pub fn change_one(&self) {
        match self {
            RecordSims::Flow(running) => {
                running.change_one();
            }
            RecordSims::Shop { sim, .. } => {
                let at = (chrono::Utc::now() - chrono::Duration::seconds(90))
                    .with_timezone(&chrono_tz::Asia::Shanghai)
                    .naive_local();
                sim.touch(1, at);
            }
        }
    }

    pub async fn shutdown(self) {
        match self {
            RecordSims::Flow(running) => running.shutdown().await,
            RecordSims::Shop { handle, .. } => handle.shutdown().await,
        }
    }
}

/// Replaces every occurrence of each `(secret, stand_in)` in every string of `value`.
pub fn replace_strings(value: &mut Value, replacements: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (secret, stand_in) in replacements {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), stand_in);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| replace_strings(item, replacements)),
        Value::Object(map) => {
            // Keys too: a secret can be a key (rarely), and must not survive there either.
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (mut key, mut item) in entries {
                for (secret, stand_in) in replacements {
                    if key.contains(secret.as_str()) {
                        key = key.replace(secret.as_str(), stand_in);
                    }
                }
                replace_strings(&mut item, replacements);
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

/// `value` as block-style YAML that the scheme's YAML module reads back to the same value
/// (strings that could be mistaken for another type are quoted as JSON, which YAML accepts).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0, false);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => string(text),
        other => other.to_string(),
    }
}

fn string(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

fn is_inline(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    }
}

/// Writes `value` at `indent`; `inline_first` when the caller already wrote `- ` for it.
fn write_value(out: &mut String, value: &Value, indent: usize, inline_first: bool) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (at, (key, item)) in map.iter().enumerate() {
                if !(at == 0 && inline_first) {
                    out.push_str(&pad);
                }
                let _ = write!(out, "{}:", string(key));
                if is_inline(item) {
                    let _ = writeln!(out, " {}", inline(item));
                } else {
                    out.push('\n');
                    let child = if item.is_array() { indent } else { indent + 2 };
                    write_value(out, item, child, false);
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (at, item) in items.iter().enumerate() {
                if !(at == 0 && inline_first) {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                if is_inline(item) {
                    let _ = writeln!(out, "{}", inline(item));
                } else {
                    write_value(out, item, indent + 2, true);
                }
            }
        }
        other => {
            let _ = writeln!(out, "{}", inline(other));
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_round_trips_through_the_scheme_reader() {
        let value = json!({
            "scheme": "../x.yaml",
            "env": {"A_URL": "https://a.invalid", "N": "8080"},
            "runs": [
                {"now": "2026-01-01T00:00:00Z", "exit": 0, "exchanges": [
                    {"connection": "shop", "request": {"method": "GET", "path": "/o", "query": {"page": "1", "yes": "no"}},
                     "response": {"status": 200, "body": {"data": [[1, "a"], [], {}], "ok": true, "t": "中文 \"q\"\n", "n": null}}}
                ]},
                {"now": "2026-01-01T00:05:00Z", "exit": 1, "exchanges": []}
            ]
        });
        let text = to_yaml(&value);
        let loaded =
            crate::scheme::yaml::load_with(&text.replace("${", "$${"), &|_| None, crate::scheme::MissingEnv::Note);
        assert!(loaded.diagnostics.is_empty(), "{:?}\n{text}", loaded.diagnostics);
        assert_eq!(loaded.value, value, "{text}");
    }

    #[test]
    fn secrets_are_replaced_everywhere() {
        let mut value = json!({"a": "x-SECRET-y", "b": [{"SECRET": "SECRET"}], "c": 1});
        replace_strings(&mut value, &[("SECRET".into(), "stand-in".into())]);
        assert_eq!(
            value,
            json!({"a": "x-stand-in-y", "b": [{"stand-in": "stand-in"}], "c": 1})
        );
    }
}
