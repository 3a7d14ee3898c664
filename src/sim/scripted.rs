//! The scripted simulator: answers each path with replies given up front, for testing how
//! Ferry copes with answers no well-behaved vendor sends (garbage, HTML, XML for JSON,
//! error envelopes, endless pages, huge bodies).
//!
//! Each path has a list of replies; request N to the path gets reply N, and the last reply
//! repeats once the list runs out. A path with no script answers 404. The method is
//! ignored. [`ScriptedSim::hits`] counts the requests per path and [`ScriptedSim::bodies`]
//! returns what they carried.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

use super::{lock, serve, SimHandle};

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(value: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// Any status, content type and raw body.
    pub fn raw(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }
}

#[derive(Default)]
struct Script {
    replies: HashMap<String, Vec<Reply>>,
    hits: HashMap<String, usize>,
    bodies: HashMap<String, Vec<Vec<u8>>>,
}

/// A running scripted simulator; clones share the script.
#[derive(Clone)]
pub struct ScriptedSim {
    script: Arc<Mutex<Script>>,
}

impl ScriptedSim {
    /// Serves `routes` (path → replies in order) on `listener`. A path written with its
    /// query (`/find?no=A`) is a route of its own, matched before the bare path.
    pub async fn start(listener: TcpListener, routes: Vec<(&str, Vec<Reply>)>) -> io::Result<(ScriptedSim, SimHandle)> {
        let script = Script {
            replies: routes
                .into_iter()
                .map(|(path, replies)| (path.to_string(), replies))
                .collect(),
            hits: HashMap::new(),
            bodies: HashMap::new(),
        };
        let sim = ScriptedSim {
            script: Arc::new(Mutex::new(script)),
        };
        let router = Router::new().fallback(answer).with_state(sim.clone());
        let handle = serve(listener, router).await?;
        Ok((sim, handle))
    }

    /// Requests received on `path`.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.script).hits.get(path).copied().unwrap_or(0)
    }

    /// The bodies of the requests received on `path`, in order, parsed as JSON (`null`
    /// for a body that is not JSON).
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        lock(&self.script)
            .bodies
            .get(path)
            .map(|bodies| {
                bodies
                    .iter()
                    .map(|body| serde_json::from_slice(body).unwrap_or(serde_json::Value::Null))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Largest request body the scripted simulator keeps.
const MAX_BODY: usize = 16 * 1024 * 1024;

async fn answer(State(sim): State<ScriptedSim>, request: Request) -> Response {
    let uri_path = request.uri().path().to_string();
    // A route written with its query (`/find?no=A`) answers that query alone.
    let path = match request.uri().path_and_query() {
        Some(full) if lock(&sim.script).replies.contains_key(full.as_str()) => full.as_str().to_string(),
        _ => uri_path,
    };
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .unwrap_or_default();
    let reply = {
        let mut script = lock(&sim.script);
        script.bodies.entry(path.clone()).or_default().push(body.to_vec());
        let hit = script.hits.entry(path.clone()).or_default();
        let index = *hit;
        *hit += 1;
        script
            .replies
            .get(&path)
            .and_then(|replies| replies.get(index).or(replies.last()).cloned())
    };
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, format!("no script for {path}")).into_response();
    };
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    response
}
