//! The ERP data-sync platform's mapping-table API (seed 000 §5), served over the store's
//! own mapping rows, so the API and `ferry run` read and write the same rows.
//!
//! `POST /erp/syncData/{function}` with the function's JSON parameters, the header
//! `token` (compared in constant time), answered in the platform's envelope
//! `{errCode, errMsg[, data]}` with `errCode: "s106240000"` on success (seed 000 §5):
//! - `createSyncDataMapping` (`sourceObjectApiName`, `destObjectApiName`, `sourceDataId`,
//!   `destDataId`, `sourceDataName`, `destDataName`, `remark`, optional `ployDetailId`);
//! - `updateSyncDataMapping` (the target id of a source id);
//! - `getSyncDataMappingBySourceDataId` (`sourceDataId: [..]`, or `destDataId: [..]`; with
//!   both, the source ids win, as the seed says) and `getSyncDataMappingByDestDataId`:
//!   `data` maps each source id that has a mapping to its row;
//! - `createErpfieldmapping` (seed 000 §6: `dataCenterId`, `channel`, `dataType`,
//!   `fsDataId`, `fsDataName`, `erpDataId`, `erpDataName`): one row of the store-backed
//!   value tables that `field_map` reads (`ferry field-mappings`).
//!
//! Objects: `sourceObjectApiName` is a served scheme's `source.object`, `destObjectApiName`
//! its `target.object`; `ployDetailId`, when given, is the scheme's name (it picks one of
//! several schemes between the same objects).
//!
//! Promises: a change is made only while holding the scheme's run lock, so it never
//! interleaves with a run; a change to a record with a pending write intent, or while a
//! run holds the lock, is refused with 409. Unknown functions, objects and ids are
//! answered in the envelope (HTTP 200, `errCode` not the success code, as the platform's
//! functions answer); malformed bodies with 400, a wrong token with 401; never a 500 for
//! the caller's input.

use crate::receiver::auth::token_matches;
use crate::scheme::Plan;
use crate::store::{
    FieldMapping, FieldMappingStore, IntentLog, Mapping, MappingQuery, MappingStatus, MappingStore,
    PlatformFieldMapping, Store, StoreError,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The platform's success code (seed 000 §5).
pub const SUCCESS: &str = "s106240000";

/// Ferry's failure codes (the seed gives only the success code; any other means failure).
pub mod codes {
    pub const UNAUTHORIZED: &str = "ferry.unauthorized";
    pub const BAD_REQUEST: &str = "ferry.bad_request";
    pub const NOT_FOUND: &str = "ferry.not_found";
    pub const CONFLICT: &str = "ferry.conflict";
    pub const UNAVAILABLE: &str = "ferry.unavailable";
}

/// One scheme whose mappings the API serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub scheme: String,
    pub source_object: String,
    pub target_object: String,
}

impl Binding {
    pub fn of(plan: &Plan) -> Binding {
        Binding {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            target_object: plan.target.object.clone(),
        }
    }
}

/// What the API needs: the store, the token callers must send, the schemes it serves.
#[derive(Clone)]
pub struct MappingApi {
    pub store: Store,
    pub token: String,
    pub bindings: Arc<Vec<Binding>>,
}

impl std::fmt::Debug for MappingApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingApi")
            .field("bindings", &self.bindings)
            .finish_non_exhaustive()
    }
}

/// The routes, to be merged into a server (`ferry serve`) or served alone in tests.
pub fn router(api: MappingApi) -> Router {
    Router::new()
        .route("/erp/syncData/{function}", post(handle))
        .with_state(Arc::new(api))
}

/// A refusal: HTTP status, code and message, answered in the envelope.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::OK, codes::NOT_FOUND, message)
    }
    fn conflict(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }
    fn store(error: impl std::fmt::Display) -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            format!("the store cannot be used now: {error}"),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errCode": self.code, "errMsg": self.message}))).into_response()
    }
}

async fn handle(
    State(api): State<Arc<MappingApi>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers.get("token").and_then(|v| v.to_str().ok());
    if let Err(e) = token_matches(given, &api.token) {
        return Refusal::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, e.to_string()).into_response();
    }
    let params = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Refusal::bad("the body must be a JSON object of the function's parameters").into_response(),
        Err(e) => return Refusal::bad(format!("the body is not JSON: {e}")).into_response(),
    };
    let answer = match function.as_str() {
        "createSyncDataMapping" => create(&api, &params).await,
        "updateSyncDataMapping" => update(&api, &params).await,
        "getSyncDataMappingBySourceDataId" => get(&api, &params, false).await,
        "getSyncDataMappingByDestDataId" => get(&api, &params, true).await,
        "createErpfieldmapping" => create_field_mapping(&api, &params).await,
        other => Err(Refusal::not_found(format!(
            "unknown function `{other}`: use createSyncDataMapping, updateSyncDataMapping, getSyncDataMappingBySourceDataId or getSyncDataMappingByDestDataId"
        ))),
    };
    match answer {
        Ok(Some(data)) => Json(json!({"errCode": SUCCESS, "errMsg": "Success", "data": data})).into_response(),
        Ok(None) => Json(json!({"errCode": SUCCESS, "errMsg": "Success"})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

fn text<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
    match params.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::Number(_)) => Err(Refusal::bad(format!("`{name}` must be a string (quote the id)"))),
        Some(_) => Err(Refusal::bad(format!("`{name}` must be a non-empty string"))),
        None => Err(Refusal::bad(format!("`{name}` is missing"))),
    }
}

fn optional_text(params: &Map<String, Value>, name: &str) -> Option<String> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The served scheme between the two named objects.
fn binding<'a>(api: &'a MappingApi, params: &Map<String, Value>) -> Result<&'a Binding, Refusal> {
    let source = text(params, "sourceObjectApiName")?;
    let dest = text(params, "destObjectApiName")?;
    let ploy = optional_text(params, "ployDetailId");
    let matching: Vec<&Binding> = api
        .bindings
        .iter()
        .filter(|b| b.source_object == source && b.target_object == dest)
        .filter(|b| ploy.as_ref().is_none_or(|p| *p == b.scheme))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let served: Vec<String> = api
                .bindings
                .iter()
                .map(|b| format!("{} ({} → {})", b.scheme, b.source_object, b.target_object))
                .collect();
            Err(Refusal::not_found(format!(
                "no served scheme maps `{source}` to `{dest}`{}; served: {}",
                ploy.map(|p| format!(" with ployDetailId `{p}`")).unwrap_or_default(),
                served.join(", ")
            )))
        }
        many => Err(Refusal::bad(format!(
            "several schemes map `{source}` to `{dest}` ({}): pass `ployDetailId` with the scheme's name",
            many.iter().map(|b| b.scheme.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Holds the scheme's run lock for a change and refuses one for a record with a pending
/// write intent.
async fn guard(api: &MappingApi, b: &Binding, source_id: &str) -> Result<crate::store::lock::RunLock, Refusal> {
    let lock = match crate::store::lock::acquire(&api.store, &b.scheme, false).await {
        Ok(lock) => lock,
        Err(crate::store::lock::LockError::Held { .. }) => {
            return Err(Refusal::conflict(format!(
                "a run of scheme `{}` is in progress; change the mapping when it has finished",
                b.scheme
            )))
        }
        Err(e) => return Err(Refusal::store(e)),
    };
    let pending = api.store.pending_intents(&b.scheme).await.map_err(Refusal::store)?;
    if pending.iter().any(|i| i.source_id == source_id) {
        return Err(Refusal::conflict(format!(
            "source id `{source_id}` has a write in flight that an earlier run did not settle; the next run of `{}` settles it, then the mapping can change",
            b.scheme
        )));
    }
    Ok(lock)
}

async fn stored(api: &MappingApi, b: &Binding, source_id: &str) -> Result<Option<Mapping>, Refusal> {
    let found = api
        .store
        .mappings_for(&b.scheme, &b.source_object, &[source_id.to_string()])
        .await
        .map_err(Refusal::store)?;
    Ok(found.get(source_id).cloned())
}

async fn create(api: &MappingApi, params: &Map<String, Value>) -> Result<Option<Value>, Refusal> {
    let b = binding(api, params)?;
    let source_id = text(params, "sourceDataId")?;
    let dest_id = text(params, "destDataId")?;
    let _lock = guard(api, b, source_id).await?;
    if let Some(existing) = stored(api, b, source_id).await? {
        if matches!(existing.status, MappingStatus::Created | MappingStatus::Updated) {
            return Err(Refusal::conflict(format!(
                "source id `{source_id}` is already mapped to `{}`; use updateSyncDataMapping to change it",
                existing.target_id.unwrap_or_default()
            )));
        }
    }
    let now = Utc::now();
    let mapping = Mapping {
        scheme: b.scheme.clone(),
        source_object: b.source_object.clone(),
        source_id: source_id.to_string(),
        source_name: optional_text(params, "sourceDataName"),
        target_object: b.target_object.clone(),
        target_id: Some(dest_id.to_string()),
        target_name: optional_text(params, "destDataName"),
        // Mapped by hand: the target record exists, and no payload was sent for it, so
        // the next run that reads the record sends it as an update.
        status: MappingStatus::Updated,
        payload_hash: None,
        attempts: 0,
        last_error: None,
        first_synced_at: Some(now),
        last_synced_at: Some(now),
        detail_ids: None,
    };
    api.store.upsert_mapping(&mapping).await.map_err(Refusal::store)?;
    Ok(None)
}

async fn update(api: &MappingApi, params: &Map<String, Value>) -> Result<Option<Value>, Refusal> {
    let b = binding(api, params)?;
    let source_id = text(params, "sourceDataId")?;
    let dest_id = text(params, "destDataId")?;
    let _lock = guard(api, b, source_id).await?;
    let Some(mut mapping) = stored(api, b, source_id).await? else {
        return Err(Refusal::not_found(format!(
            "source id `{source_id}` has no mapping in scheme `{}`; create it with createSyncDataMapping",
            b.scheme
        )));
    };
    mapping.target_id = Some(dest_id.to_string());
    if let Some(name) = optional_text(params, "destDataName") {
        mapping.target_name = Some(name);
    }
    if !matches!(mapping.status, MappingStatus::Created | MappingStatus::Updated) {
        mapping.status = MappingStatus::Updated;
        mapping.payload_hash = None;
        mapping.last_error = None;
    }
    mapping.last_synced_at = Some(Utc::now());
    api.store.upsert_mapping(&mapping).await.map_err(Refusal::store)?;
    Ok(None)
}

fn id_list(params: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, Refusal> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(one)) => Ok(Some(vec![one.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(Refusal::bad(format!("`{name}` must list strings, found {other}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(Refusal::bad(format!("`{name}` must be a list of ids, found {other}"))),
    }
}

/// Most ids one query may name.
const MAX_IDS: usize = 1000;

async fn get(api: &MappingApi, params: &Map<String, Value>, by_dest: bool) -> Result<Option<Value>, Refusal> {
    let b = binding(api, params)?;
    let source_ids = if by_dest {
        None
    } else {
        id_list(params, "sourceDataId")?
    };
    let (source_ids, target_ids) = match (source_ids, id_list(params, "destDataId")?) {
        (Some(source), _) => (source, Vec::new()),
        (None, Some(dest)) => (Vec::new(), dest),
        (None, None) => {
            return Err(Refusal::bad(if by_dest {
                "`destDataId` is missing: pass the list of target ids"
            } else {
                "pass `sourceDataId` (a list of source ids) or `destDataId` (a list of target ids)"
            }))
        }
    };
    if source_ids.len() + target_ids.len() > MAX_IDS {
        return Err(Refusal::bad(format!("at most {MAX_IDS} ids per query")));
    }
    if source_ids.is_empty() && target_ids.is_empty() {
        return Ok(Some(json!({})));
    }
    let rows = api
        .store
        .query_mappings(&MappingQuery {
            scheme: Some(b.scheme.clone()),
            source_ids,
            target_ids,
            status: None,
            limit: None,
            offset: 0,
        })
        .await
        .map_err(Refusal::store)?;
    let mut data = Map::new();
    for m in rows {
        data.insert(m.source_id.clone(), row_json(&m));
    }
    Ok(Some(Value::Object(data)))
}

/// `lastSyncStatus` and `statusName` of a mapping. The seed shows 6 / 新增成功 for a
/// created record; the platform's other codes are not documented there, so the rest are
/// Ferry's own (README "Mapping-table API").
fn status_of(status: MappingStatus) -> (i64, &'static str) {
    match status {
        MappingStatus::Created => (6, "新增成功"),
        MappingStatus::Updated => (6, "更新成功"),
        MappingStatus::Failed => (5, "同步失败"),
        MappingStatus::Pending => (2, "待同步"),
        MappingStatus::Deleted => (7, "已删除"),
    }
}

fn row_json(m: &Mapping) -> Value {
    let (code, name) = status_of(m.status);
    let created = matches!(m.status, MappingStatus::Created | MappingStatus::Updated) && m.target_id.is_some();
    json!({
        "id": format!("{}:{}", m.scheme, m.source_id),
        "sourceObjectApiName": m.source_object,
        "destObjectApiName": m.target_object,
        "sourceDataId": m.source_id,
        "sourceDataName": m.source_name,
        "destDataId": m.target_id,
        "destDataName": m.target_name,
        "isCreated": created,
        "lastSyncStatus": code,
        "statusName": name,
        "status": 1,
        "updateTime": m.last_synced_at.or(m.first_synced_at).map(|t| t.timestamp_millis()),
    })
}

/// `createErpfieldmapping`: one row of a value table (seed 000 §6), as `ferry
/// field-mappings add` writes it; a value already paired otherwise is refused with 409.
async fn create_field_mapping(api: &MappingApi, params: &Map<String, Value>) -> Result<Option<Value>, Refusal> {
    let platform: PlatformFieldMapping = serde_json::from_value(Value::Object(params.clone()))
        .map_err(|e| Refusal::bad(format!("not the createErpfieldmapping shape: {e}")))?;
    let row = FieldMapping::from(platform);
    for (name, value) in [
        ("channel", &row.channel),
        ("dataType", &row.data_type),
        ("fsDataId", &row.crm_value),
        ("erpDataId", &row.erp_value),
    ] {
        if value.trim().is_empty() {
            return Err(Refusal::bad(format!("`{name}` must not be empty")));
        }
    }
    crate::scheme::field_tables::check_channel(&row.channel).map_err(Refusal::bad)?;
    match api.store.put_field_mappings(std::slice::from_ref(&row)).await {
        Ok(_) => Ok(None),
        Err(StoreError::Conflict(message)) => Err(Refusal::conflict(message)),
        Err(StoreError::InvalidRequest(message)) => Err(Refusal::bad(message)),
        Err(e) => Err(Refusal::store(e)),
    }
}
