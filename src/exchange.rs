//! The scheme's side of a request and its answer (pure): rendering a [`RequestPlan`] into
//! an HTTP request or a vendor call, and reading an answer with the scheme's own templates
//! (`success`, `error`, `retry`), its `records` JSONPath and its per-row paths.
//!
//! Layer 3: it reads the scheme's plan and renders templates, so it sits above
//! [`crate::protocol`] (what a vendor is) and below the engine (which sends). A vendor's
//! own envelope rules are applied by its protocol; these are applied on top, to every
//! connector's answers alike.

use crate::codec::Codec;
use crate::error::{Error, ErrorKind};
use crate::extract::JsonPath;
use crate::protocol::{RowOutcome, WireRequest, RETRY_LATER, UNMATCHED_ANSWER};
use crate::scheme::model::{ConnectionPlan, OperationPlan, ReadResponsePlan, RequestPlan, WriteResponsePlan};
use crate::scheme::raw::Method;
use crate::template::{Scope, Template};
use crate::transform::{render, render_view, value_to_text};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A fully rendered request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// A response whose body has been read in full.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: bytes::Bytes,
    pub retry_after: Option<std::time::Duration>,
    /// `Set-Cookie` values, for vendors whose sessions live in cookies.
    pub set_cookies: Vec<String>,
}

/// Renders a request. `next_url` replaces path and query for next-link paging.
pub fn build_request(
    conn: &ConnectionPlan,
    plan: &RequestPlan,
    scope: &Scope,
    next_url: Option<&str>,
) -> Result<HttpRequest, Error> {
    let url = match next_url {
        Some(link) if link.starts_with("http://") || link.starts_with("https://") => link.to_string(),
        Some(link) => join_url(&conn.base_url, link),
        None => {
            let Some(path) = &plan.path else {
                return Err(Error::config("this request has no `path`"));
            };
            let path = path
                .render_string(scope)
                .map_err(|e| Error::transform(format!("request path: {}", e.message)))?;
            let mut url = if path.starts_with("http://") || path.starts_with("https://") {
                path
            } else {
                join_url(&conn.base_url, &path)
            };
            if !plan.query.is_empty() {
                let mut pairs = url::form_urlencoded::Serializer::new(String::new());
                for (key, template) in &plan.query {
                    let value = render(template, scope, key)?;
                    pairs.append_pair(key, &query_text(&value));
                }
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&pairs.finish());
            }
            url
        }
    };
    let mut headers = Vec::with_capacity(conn.headers.len() + plan.headers.len() + 1);
    for (name, template) in conn.headers.iter().chain(plan.headers.iter()) {
        let value = template
            .render_string(scope)
            .map_err(|e| Error::transform(format!("header {name}: {}", e.message)))?;
        headers.push((name.clone(), value));
    }
    let body = match &plan.body {
        Some(template) => {
            let view = render_view(template, scope, "body")?;
            headers.push(("content-type".to_string(), plan.codec.content_type().to_string()));
            Some(
                plan.codec
                    .encode_serializable(&view)
                    .map_err(|e| Error::transform(format!("encoding the request body: {e}")))?,
            )
        }
        None => None,
    };
    Ok(HttpRequest {
        method: plan.method,
        url,
        headers,
        body,
    })
}

/// Renders a vendor call: the api name and its business parameters (the `body` tree).
pub fn render_call(plan: &RequestPlan, scope: &Scope) -> Result<(String, Value), Error> {
    let Some(api) = &plan.api else {
        return Err(Error::config("this request names no `api`"));
    };
    let api = api
        .render_string(scope)
        .map_err(|e| Error::transform(format!("api: {}", e.message)))?;
    let params = match &plan.body {
        Some(template) => render(template, scope, "body")?,
        None => Value::Object(Map::new()),
    };
    Ok((api, params))
}

/// A vendor's wire request as an [`HttpRequest`], with the connection's own headers added.
pub fn wire_to_http(conn: &ConnectionPlan, wire: WireRequest, scope: &Scope) -> Result<HttpRequest, Error> {
    let method = match wire.method {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        _ => Method::Post,
    };
    let mut headers = wire.headers;
    for (name, template) in &conn.headers {
        let value = template
            .render_string(scope)
            .map_err(|e| Error::transform(format!("header {name}: {}", e.message)))?;
        headers.push((name.clone(), value));
    }
    Ok(HttpRequest {
        method,
        url: wire.url,
        headers,
        body: wire.body,
    })
}

fn join_url(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

fn query_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `check` with `body` and `status` in scope, without copying the body: it is moved
/// into the scope and moved back out afterwards.
fn with_response<T>(body: Value, status: u16, check: impl FnOnce(&Scope) -> T) -> (Value, T) {
    let mut names = Map::new();
    names.insert("body".into(), body);
    names.insert("status".into(), Value::from(status));
    let shared = Arc::new(Value::Object(names));
    let result = {
        let scope = Scope {
            record: Some(shared.clone()),
            ..Scope::default()
        };
        check(&scope)
    };
    let names = Arc::try_unwrap(shared).unwrap_or_else(|still_shared| Value::clone(&still_shared));
    let body = match names {
        Value::Object(mut map) => map.remove("body").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (body, result)
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != "false" && s != "0",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Judges an answer by the scheme's templates: `Ok(None)` when it succeeded, the error
/// message when it failed, and a [`ErrorKind::Throttled`] error when `retry` says the peer
/// asks for the same request again later (a "soft" error in a 200, such as `busy`).
fn envelope_verdict(
    success: &Option<Template>,
    error: &Option<Template>,
    retry: &Option<Template>,
    scope: &Scope,
    what: &str,
) -> Result<Option<String>, Error> {
    let message = || match error {
        Some(template) => template.render_string(scope).unwrap_or_default(),
        None => String::new(),
    };
    if let Some(retry) = retry {
        let again = retry
            .render(scope)
            .map_err(|e| Error::decode(format!("{what}: evaluating `retry` failed: {}", e.message)))?;
        if truthy(&again) {
            return Err(Error::new(
                ErrorKind::Throttled,
                format!("the {what} asks to be retried (`retry` was true): {}", message()),
            ));
        }
    }
    let Some(success) = success else { return Ok(None) };
    let ok = success
        .render(scope)
        .map_err(|e| Error::decode(format!("{what}: evaluating `success` failed: {}", e.message)))?;
    if truthy(&ok) {
        return Ok(None);
    }
    let message = message();
    Ok(Some(if message.is_empty() {
        "the response's success test was false".to_string()
    } else {
        message
    }))
}

/// Applies the scheme's own `success`/`error` templates to a decoded source answer
/// (vendor answers were already judged by their connector). Gives the body back.
pub fn check_read_envelope(
    plan: &ReadResponsePlan,
    body: Value,
    status: u16,
) -> (Value, Result<Option<String>, Error>) {
    with_response(body, status, |scope| {
        envelope_verdict(&plan.success, &plan.error, &plan.retry, scope, "source answer")
    })
}

/// A decoded source page.
#[derive(Debug)]
pub struct Page {
    pub body: Value,
    pub records: Vec<Value>,
}

/// Decodes a source answer, checks its envelope and selects its records.
/// `records_parent` is the container of the list (for telling "empty" from "missing").
pub fn read_page(
    plan: &ReadResponsePlan,
    records: &JsonPath,
    records_parent: Option<&JsonPath>,
    response: &HttpResponse,
    codec: Codec,
) -> Result<Page, Error> {
    let body = codec
        .decode(&response.body)
        .map_err(|e| Error::decode(format!("source answer could not be read: {e}")))?;
    let (mut body, verdict) = with_response(body, response.status, |scope| {
        envelope_verdict(&plan.success, &plan.error, &plan.retry, scope, "source answer")
    });
    if let Some(message) = verdict? {
        return Err(Error::envelope(format!("the source reported an error: {message}")));
    }
    let selected = records.take_from(&mut body);
    if selected.is_empty() {
        if let Some(parent) = records_parent {
            if parent.first(&body).is_none() {
                let preview: String = body.to_string().chars().take(160).collect();
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!(
                        "the source answer has no `{}` (the list key is missing); the answer starts: {preview}",
                        parent.as_str()
                    ),
                ));
            }
        }
    }
    Ok(Page {
        body,
        records: selected,
    })
}

/// The parent of a `…[*]` records path, used to detect a missing list key.
pub fn records_parent(records: &JsonPath) -> Option<JsonPath> {
    let text = records.as_str();
    let parent = text.strip_suffix("[*]")?;
    if parent == "$" {
        return None;
    }
    JsonPath::parse(parent).ok()
}

/// Splits a write answer into one outcome per row sent.
/// `keys` are the rows' business keys (when `target.key` is set), for matching by key;
/// `path` is where the operation's response is written in the scheme (for messages, e.g.
/// `target.create.response`).
pub fn read_write_outcome(
    op: &OperationPlan,
    response: &HttpResponse,
    row_count: usize,
    keys: &[Option<String>],
    path: &str,
) -> Vec<RowOutcome> {
    let plan: &WriteResponsePlan = &op.response;
    let all_failed = |message: String, class: &'static str| vec![RowOutcome::Failed { message, class }; row_count];
    let body = match plan.codec.decode(&response.body) {
        Ok(body) => body,
        Err(e) => {
            return all_failed(
                format!("the target's answer could not be read: {e}"),
                crate::protocol::UNKNOWN_OUTCOME,
            )
        }
    };
    let (body, verdict) = with_response(body, response.status, |scope| {
        envelope_verdict(&plan.success, &plan.error, &plan.retry, scope, "target answer")
    });
    let request_error = match verdict {
        Ok(verdict) => verdict,
        Err(e) if e.kind == ErrorKind::Throttled => return all_failed(e.message, RETRY_LATER),
        Err(e) => return all_failed(e.message, "decode"),
    };

    let mut failures: Vec<Option<String>> = vec![None; row_count];
    let mut any_row_detail = false;
    if let Some(errors_path) = &plan.row_errors {
        for element in errors_path.select(&body) {
            any_row_detail = true;
            let element_scope = Scope {
                record: Some(Arc::new(element.clone())),
                ..Scope::default()
            };
            let message = plan
                .row_error_message
                .render_string(&element_scope)
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| element.to_string());
            let position = match &plan.row_error_key {
                Some(key_template) => key_template
                    .render(&element_scope)
                    .ok()
                    .and_then(|k| value_to_text(&k))
                    .and_then(|k| {
                        keys.iter()
                            .position(|candidate| candidate.as_deref() == Some(k.as_str()))
                    }),
                None => plan
                    .row_error_index
                    .render(&element_scope)
                    .ok()
                    .and_then(|i| match i {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    })
                    .map(|i| i as usize),
            };
            match position {
                Some(i) if i < row_count => failures[i] = Some(message),
                _ => {
                    // An error we cannot place: fail every row rather than guess.
                    return all_failed(
                        format!("the target reported an error that names no row of this batch: {message}"),
                        "rejected",
                    );
                }
            }
        }
    }
    if let Some(message) = &request_error {
        if !any_row_detail {
            return all_failed(format!("the target rejected the request: {message}"), "rejected");
        }
    }

    let ok_positions: Vec<usize> = (0..row_count).filter(|i| failures[*i].is_none()).collect();
    // Where the ids are read (for messages) and the ids found there.
    let id_path: Option<(&str, &JsonPath)> = match (&plan.row_ids, &plan.id) {
        (Some(p), _) => Some(("row_ids", p)),
        (None, Some(p)) => Some(("id", p)),
        (None, None) => None,
    };
    let ids: Option<Vec<Option<String>>> = match id_path {
        Some(("row_ids", p)) => Some(p.select(&body).into_iter().map(value_to_text).collect()),
        Some((_, p)) => Some(vec![p.first(&body).and_then(value_to_text)]),
        None => None,
    };
    let id_for = |position: usize, rank: usize| -> Result<Option<String>, String> {
        match &ids {
            None => Ok(None),
            Some(ids) if ids.len() == ok_positions.len() => Ok(ids[rank].clone()),
            Some(ids) if ids.len() == row_count => Ok(ids[position].clone()),
            Some(ids) => {
                let (key, json_path) = id_path.map_or(("row_ids", ""), |(key, p)| (key, p.as_str()));
                Err(format!(
                    "`{path}.{key}` (`{json_path}`) found {} id(s) in the answer for {} successful row(s), so ids \
                     cannot be matched to rows; the answer's top-level keys are: {}",
                    ids.len(),
                    ok_positions.len(),
                    top_level_keys(&body)
                ))
            }
        }
    };
    let mut outcomes = Vec::with_capacity(row_count);
    let mut rank = 0;
    for (position, failure) in failures.into_iter().enumerate() {
        match failure {
            Some(message) => outcomes.push(RowOutcome::Failed {
                message,
                class: "rejected",
            }),
            None => {
                let outcome = match id_for(position, rank) {
                    Ok(target_id) => RowOutcome::written(target_id),
                    Err(message) => RowOutcome::Failed {
                        message,
                        class: UNMATCHED_ANSWER,
                    },
                };
                rank += 1;
                outcomes.push(outcome);
            }
        }
    }
    outcomes
}

/// The keys of an answer's top level, for messages about paths that found nothing.
fn top_level_keys(body: &Value) -> String {
    match body {
        Value::Object(map) if map.is_empty() => "(none: an empty object)".to_string(),
        Value::Object(map) => map.keys().take(20).map(String::as_str).collect::<Vec<_>>().join(", "),
        Value::Array(_) => "(none: the answer is a list)".to_string(),
        other => format!("(none: the answer is {other})"),
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
