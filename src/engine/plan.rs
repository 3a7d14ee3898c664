//! Planning a batch: each record's id, name and payload hash ([`identify`]), then one
//! mapping look-up per batch deciding create, update, unchanged or skipped ([`plan_job`]).

use super::context::{Deletion, Item, PlannedJob, RunContext};
use crate::error::Error;
use crate::scheme::model::Plan;
use crate::store::{FailureStage, MappingStore, NewFailure};
use crate::template::Scope;
use crate::transform::value_to_text;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A record that could not be identified: its ledger row, and the missing fields that
/// caused it (if that was the cause).
pub(crate) struct Unidentified {
    pub failure: NewFailure,
    pub missing: Vec<String>,
}

/// Computes a record's id, name and payload hash; a failure goes to the ledger.
pub(super) fn identify(ctx: &RunContext, record: Value, hash: String) -> Result<Item, Box<Unidentified>> {
    let plan = &ctx.plan;
    let record = Arc::new(record);
    let scope = Scope {
        record: Some(record.clone()),
        vars: ctx.vars.clone(),
        ..Scope::default()
    };
    let failure_of = |class: &str, message: String, missing: Vec<String>| {
        Box::new(Unidentified {
            failure: NewFailure {
                scheme: plan.name.clone(),
                source_id: format!("hash:{hash}"),
                stage: FailureStage::Transform,
                error_class: class.into(),
                message: plan.redactor.redact(&message).into_owned(),
                payload: Some(plan.redactor.redact_value(&record)),
            },
            missing,
        })
    };
    let failure = |message: String| failure_of("transform", message, Vec::new());
    let source_id = match plan.source.id.render(&scope) {
        Ok(value @ (Value::Array(_) | Value::Object(_))) => {
            return Err(failure(format!(
                "source.id `{}` gives {} for this record; an id must be text or a number",
                plan.source.id.source(),
                if value.is_array() { "a list" } else { "an object" }
            )))
        }
        Ok(value) => match value_to_text(&value) {
            Some(id) => id,
            None => {
                return Err(failure(format!(
                    "source.id `{}` is empty for this record",
                    plan.source.id.source()
                )))
            }
        },
        Err(e) => {
            let message = describe_record_failure(&format!("source.id: {}", e.message), &e.missing, &record);
            let class = if e.missing.is_empty() {
                "transform"
            } else {
                "missing_field"
            };
            return Err(failure_of(class, message, e.missing));
        }
    };
    let source_name = match &plan.source.name {
        Some(template) => template.render(&scope).ok().as_ref().and_then(value_to_text),
        None => None,
    };
    Ok(Item {
        record,
        source_id,
        source_name,
        hash,
        target_id: None,
        detail_ids: None,
        deleted: false,
        window: None,
    })
}

/// A record failure's message; when fields were missing, it lists the keys the record
/// does have, so the scheme can be corrected at a glance.
pub(crate) fn describe_record_failure(message: &str, missing: &[String], record: &Value) -> String {
    if missing.is_empty() {
        return message.to_string();
    }
    const SHOWN: usize = 30;
    let keys: Vec<&str> = record
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let listed = if keys.is_empty() {
        "the record has no fields".to_string()
    } else if keys.len() > SHOWN {
        format!(
            "the record has: {}, … ({} fields)",
            keys[..SHOWN].join(", "),
            keys.len()
        )
    } else {
        format!("the record has: {}", keys.join(", "))
    };
    format!("{message}; {listed}")
}

/// Looks a batch up in the mapping store (one query) and sorts it into creates, updates,
/// unchanged and skipped. Runs in the writer task, so look-ups of batches overlap.
pub(crate) async fn plan_job(ctx: &RunContext, items: Vec<Item>) -> Result<PlannedJob, Error> {
    let plan = &ctx.plan;
    let ids: Vec<String> = items.iter().map(|i| i.source_id.clone()).collect();
    let existing = if ids.is_empty() {
        HashMap::new()
    } else {
        ctx.store.mappings_for(&plan.name, &plan.source.object, &ids).await?
    };
    let mut job = PlannedJob {
        creates: Vec::new(),
        updates: Vec::new(),
        deletions: Vec::new(),
        unchanged: 0,
        skipped: 0,
        unchanged_by_id: Vec::new(),
    };
    for mut item in items {
        if item.deleted {
            let mapping = existing.get(&item.source_id).cloned();
            job.deletions.push(Deletion::new(item, mapping));
            continue;
        }
        match existing.get(&item.source_id) {
            Some(mapping)
                if mapping.target_id.is_some()
                    && matches!(
                        mapping.status,
                        crate::store::MappingStatus::Created | crate::store::MappingStatus::Updated
                    ) =>
            {
                let unchanged = mapping.payload_hash.as_deref() == Some(item.hash.as_str());
                if unchanged && !(ctx.force && plan.target.update.is_some()) {
                    job.unchanged += 1;
                    if ctx.by_id {
                        job.unchanged_by_id.push((item, mapping.target_id.clone()));
                    }
                } else if plan.target.update.is_some() {
                    item.target_id = mapping.target_id.clone();
                    item.detail_ids = mapping.detail_ids.clone();
                    job.updates.push(item);
                } else {
                    job.skipped += 1;
                }
            }
            // An earlier create of this record may or may not have landed: hold it until an
            // operator settles the `uncertain` ledger row.
            Some(mapping) if mapping.status == crate::store::MappingStatus::Pending => job.skipped += 1,
            _ => job.creates.push(item),
        }
    }
    Ok(job)
}

/// The mapping of a record the target now holds (created, updated or adopted).
pub(crate) struct Synced<'a> {
    pub source_id: &'a str,
    pub source_name: Option<String>,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub status: crate::store::MappingStatus,
    pub hash: &'a str,
    /// Detail row ids to store (`None` keeps the stored ones).
    pub detail_ids: Option<Value>,
}

impl Synced<'_> {
    pub(crate) fn mapping(self, plan: &Plan, now: DateTime<Utc>) -> crate::store::Mapping {
        crate::store::Mapping {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: self.source_id.to_string(),
            source_name: self.source_name,
            target_object: plan.target.object.clone(),
            target_id: self.target_id,
            target_name: self.target_name,
            status: self.status,
            payload_hash: Some(self.hash.to_string()),
            attempts: 1,
            last_error: None,
            first_synced_at: Some(now),
            last_synced_at: Some(now),
            detail_ids: self.detail_ids,
        }
    }
}

/// The mapping of a create that failed (`Failed`) or may have landed (`Pending`, held until
/// an operator decides); it keeps no target id.
pub(crate) fn unsynced_mapping(
    plan: &Plan,
    source_id: &str,
    source_name: Option<String>,
    status: crate::store::MappingStatus,
    error: String,
    now: DateTime<Utc>,
) -> crate::store::Mapping {
    crate::store::Mapping {
        scheme: plan.name.clone(),
        source_object: plan.source.object.clone(),
        source_id: source_id.to_string(),
        source_name,
        target_object: plan.target.object.clone(),
        target_id: None,
        target_name: None,
        status,
        payload_hash: None,
        attempts: 1,
        last_error: Some(error),
        first_synced_at: None,
        last_synced_at: Some(now),
        detail_ids: None,
    }
}
