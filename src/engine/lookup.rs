//! Finding target records by business key (`target.lookup`), to settle writes whose
//! answer was lost: in this run (`write::settle_unknown`) or a later one (`recover`).
//!
//! A look-up is either one request per key (its templates read `key` and `row`, and `id`
//! is a JSONPath over the answer) or, when the scheme gives `rows`, one request per chunk
//! of keys (its templates read `keys`; `rows` selects the records found, and `key` and `id`
//! are JSONPaths over each). The batched form costs one request per batch instead of one
//! per row against a rate-limited tenant (K3Cloud `FNumber IN (…)`, vtiger `… IN (…)`).
//!
//! Promises: a key is reported found only with the id of a record whose own key equals
//! it; a request that fails fails every key it carried (the caller decides), never "not
//! found".

use super::call;
use super::context::RunContext;
use crate::error::Error;
use crate::exchange::{build_request, check_read_envelope, render_call};
use crate::http::Repeat;
use crate::scheme::model::LookupPlan;
use crate::template::Scope;
use crate::transform::value_to_text;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Looks up each `(key, row)`; per key, the target id found, `None` when absent, or the
/// error of the request that carried it. Results are in the order of `keys`.
pub(crate) async fn find_target_ids(
    ctx: &RunContext,
    lookup: &LookupPlan,
    keys: &[(&str, &Value)],
) -> Vec<Result<Option<String>, Error>> {
    match &lookup.batch {
        Some(batch) => {
            let mut out = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(batch.size.max(1)) {
                match find_chunk(ctx, lookup, batch, chunk).await {
                    Ok(found) => out.extend(chunk.iter().map(|(key, _)| Ok(found.get(*key).cloned()))),
                    Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
                }
            }
            out
        }
        None => {
            // Chunks of concurrent look-ups (a buffered stream here would make `run` unspawnable).
            let concurrency = (ctx.plan.target_connection().in_flight * 4).max(4);
            let mut out = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(concurrency) {
                out.extend(
                    futures::future::join_all(chunk.iter().map(|(key, row)| find_one(ctx, lookup, key, row))).await,
                );
            }
            out
        }
    }
}

/// Sends a look-up request with `names` in scope and returns the checked answer.
async fn ask(ctx: &RunContext, lookup: &LookupPlan, names: Vec<(&str, Value)>, what: &str) -> Result<Value, Error> {
    let conn = ctx.plan.target_connection();
    let mut vars: Map<String, Value> = (*ctx.vars).clone();
    for (name, value) in names {
        vars.insert(name.to_string(), value);
    }
    let scope = Scope {
        vars: Arc::new(vars),
        ..Scope::default()
    };
    let (status, body) = if conn.protocol.templated() {
        let request = build_request(conn, &lookup.request, &scope, None)?;
        let (response, _) = ctx.http.send(conn, &request, Repeat::Safe).await?;
        let body = lookup
            .response
            .codec
            .decode(&response.body)
            .map_err(|e| Error::decode(format!("the look-up answer could not be read: {e}")))?;
        (response.status, body)
    } else {
        let (api, params) = render_call(&lookup.request, &scope)?;
        let (response, body, _) = call::call(ctx, conn, &api, &params, Repeat::Safe).await?;
        (response.status, body)
    };
    let (body, verdict) = check_read_envelope(&lookup.response, body, status);
    if let Some(message) = verdict? {
        return Err(Error::envelope(format!("the look-up of {what} failed: {message}")));
    }
    Ok(body)
}

/// One key, one request; `Ok(None)` when it is not there.
async fn find_one(ctx: &RunContext, lookup: &LookupPlan, key: &str, row: &Value) -> Result<Option<String>, Error> {
    let names = vec![("key", Value::String(key.to_string())), ("row", row.clone())];
    let body = ask(ctx, lookup, names, &format!("`{key}`")).await?;
    Ok(lookup.id.first(&body).and_then(value_to_text))
}

/// One request for a chunk of keys: the ids found, by key.
async fn find_chunk(
    ctx: &RunContext,
    lookup: &LookupPlan,
    batch: &crate::scheme::model::LookupBatch,
    chunk: &[(&str, &Value)],
) -> Result<HashMap<String, String>, Error> {
    let keys: Vec<Value> = chunk.iter().map(|(key, _)| Value::String(key.to_string())).collect();
    let what = format!("{} keys", keys.len());
    let body = ask(ctx, lookup, vec![("keys", Value::Array(keys))], &what).await?;
    let mut found = HashMap::new();
    for record in batch.rows.select(&body) {
        let (Some(key), Some(id)) = (
            batch.key.first(record).and_then(value_to_text),
            lookup.id.first(record).and_then(value_to_text),
        ) else {
            continue;
        };
        if chunk.iter().any(|(wanted, _)| *wanted == key) {
            found.insert(key, id);
        }
    }
    Ok(found)
}
