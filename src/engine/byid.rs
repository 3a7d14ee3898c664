//! Reading records by their source id (`ferry run --ids`, `ferry explain --fetch`).
//!
//! The read is the scheme's `source.detail` request (an ERP-standard `queryMasterById`, a
//! vtiger `retrieve`, a K3 `View`, or an HTTP `GET /orders/<< order_no >>`), sent for a
//! stand-in record that holds only the id, under the one field `source.id` reads. A scheme
//! without `source.detail`, or whose `source.id` reads more than one field, cannot read by
//! id, and the error says so.

use super::context::{base_vars, RunContext, StoreMappedIds};
use super::summary::Summary;
use crate::error::Error;
use crate::http::HttpClient;
use crate::scheme::model::Plan;
use crate::store::Store;
use crate::template::MappedIds;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The record `source.detail` is sent for: `{<the field source.id reads>: id}`.
pub(crate) fn stand_in(plan: &Plan, id: &str) -> Result<Value, Error> {
    if plan.source.detail.is_none() {
        return Err(Error::config(format!(
            "{} has no `source.detail`, so it cannot read a record by id; add a `source.detail` request that \
             reads one record (e.g. `GET /orders/<< order_no >>`, or the connector's by-id call such as \
             erp-standard `queryMasterById`)",
            plan.file
        )));
    }
    let names = plan.source.id.variables();
    match names.iter().next() {
        Some(name) if names.len() == 1 => {
            let mut record = Map::new();
            record.insert(name.clone(), Value::String(id.to_owned()));
            Ok(Value::Object(record))
        }
        _ => Err(Error::config(format!(
            "source.id `{}` reads {} fields; reading by id needs a `source.id` of one field",
            plan.source.id.source(),
            names.len()
        ))),
    }
}

/// Whether `plan` can read records by id; the error says what to add.
pub fn check_readable_by_id(plan: &Plan) -> Result<(), Error> {
    stand_in(plan, "").map(|_| ())
}

/// Reads the record `id` as the source has it now.
pub(crate) async fn fetch_one(ctx: &RunContext, id: &str) -> Result<Value, Error> {
    let stand_in = stand_in(&ctx.plan, id)?;
    let Some(detail) = &ctx.plan.source.detail else {
        return Err(Error::config("the scheme has no `source.detail`"));
    };
    let mut found = super::fetch::fetch_details(ctx, detail, &ctx.vars, vec![stand_in]).await?;
    found
        .pop()
        .ok_or_else(|| Error::decode(format!("the source answered nothing for id {id}")))
}

/// Reads each of `ids` (for `ferry run --ids`), in order, as records with their payload
/// hashes. An id that cannot be read is counted failed and logged; the others go on.
pub(crate) async fn read_ids(ctx: &RunContext, ids: &[String], summary: &mut Summary) -> Vec<(Value, String)> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        match fetch_one(ctx, id).await {
            Ok(record) => {
                let hash = ctx.payload_hasher.hash(&record);
                found.push((record, hash));
            }
            Err(e) => {
                summary.failed += 1;
                tracing::error!(
                    source_id = %id,
                    "cannot read record {id} by id: {}",
                    ctx.plan.redactor.redact(&e.message)
                );
            }
        }
    }
    found
}

/// A record read by id, with the row a run would render from it (both with secrets masked).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchedRecord {
    pub record: Value,
    /// The id `source.id` gives the record read (it should equal the id asked for).
    pub source_id: Option<String>,
    pub payload_hash: String,
    /// The rendered row, or why it did not render.
    pub row: Result<Value, String>,
}

/// Reads `id` from the source and renders the row a run would send for it (`target_id`
/// is the mapped target id, for templates that read it). Sends nothing to the target and
/// writes nothing.
pub async fn fetch_record(
    plan: &Plan,
    store: &Store,
    http: &HttpClient,
    id: &str,
    target_id: Option<String>,
) -> Result<FetchedRecord, Error> {
    let ctx = read_context(plan, store, http).await?;
    let record = fetch_one(&ctx, id).await?;
    let hash = ctx.payload_hasher.hash(&record);
    let (source_id, row) = match super::plan::identify(&ctx, record.clone(), hash.clone()) {
        Ok(mut item) => {
            item.target_id = target_id;
            let scope = super::context::row_scope(&ctx, &item);
            let row = crate::transform::render(&plan.target.fields, &scope, "target.fields")
                .map(|row| plan.redactor.redact_value(&row))
                .map_err(|e| plan.redactor.redact(&e.message).into_owned());
            (Some(item.source_id), row)
        }
        Err(rejected) => (None, Err(rejected.failure.message)),
    };
    Ok(FetchedRecord {
        record: plan.redactor.redact_value(&record),
        source_id,
        payload_hash: hash,
        row,
    })
}

/// A context for reading and rendering only (a dry run as far as the target is concerned).
async fn read_context(plan: &Plan, store: &Store, http: &HttpClient) -> Result<RunContext, Error> {
    // The same fingerprint and field tables as a run, so "changed since the last sync" agrees.
    let field_maps = super::field_maps::load(plan, store, true).await?;
    let mut fingerprint = serde_json::to_vec(&(&plan.raw.target.fields, &plan.raw.value_maps)).unwrap_or_default();
    if !field_maps.fingerprint.is_empty() {
        fingerprint.extend_from_slice(b"\nfield_mappings:");
        fingerprint.extend_from_slice(&field_maps.fingerprint);
    }
    let uses_mapped_id = crate::scheme::validate::uses_call(&plan.target.fields, "mapped_id");
    Ok(RunContext {
        field_maps: field_maps.maps,
        plan: plan.clone(),
        store: store.clone(),
        http: http.clone(),
        vars: Arc::new(base_vars(plan, chrono::Utc::now(), 0, true)),
        mapped_ids: uses_mapped_id.then(|| Arc::new(StoreMappedIds::new(store.clone())) as Arc<dyn MappedIds>),
        payload_hasher: crate::transform::PayloadHasher::new(&fingerprint),
        dry_run: true,
        dry_run_sink: None,
        sessions: Default::default(),
        run_id: 0,
        ledger_open: std::sync::atomic::AtomicBool::new(false),
        change_checks: None,
        source_requests: Default::default(),
        source_sink: None,
        keep_events: 0,
        by_id: true,
        force: false,
    })
}
