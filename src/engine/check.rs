//! `ferry check`: a probe against a live source, the first thing to run against a new tenant.
//!
//! It reads the first page of each window (newest window first, up to a record limit and a
//! window limit) with the run's own fetch code, and renders every record as a run would:
//! `source.id`, `target.fields` and `target.key`. It reports missing fields, other template
//! errors, the `incremental.field` checks, whether a run would stop on its first page, and
//! the newest change time next to "now" in the source server's zone.
//!
//! Promises: it sends no request to the target and writes to no store (a memory store
//! stands in; `mapped_id` answers with placeholders, since which ids are mapped says nothing
//! about the scheme). Only source requests are sent, and only reads.

use super::context::ChangeChecks;
use super::context::{base_vars, row_scope, RunContext};
use super::fetch;
use super::guard::fields_every_record_lacks;
use super::plan::{describe_record_failure, identify};
use super::run::run_windows;
use crate::error::Error;
use crate::http::HttpClient;
use crate::paginate::Pager;
use crate::scheme::model::Plan;
use crate::store::Store;
use crate::template::{MappedIds, PlaceholderIds, Scope};
use crate::window::{local_text, whole_hour_offset, TimeTally, Window};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What to read.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Records to render at most, over all windows.
    pub limit: u64,
    /// Windows to read at most (newest first).
    pub max_windows: usize,
    /// Override the range of windows, as `ferry run --since/--until` do.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// "Now" (tests pin it); defaults to the clock.
    pub now: Option<DateTime<Utc>>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            limit: 100,
            max_windows: 10,
            since: None,
            until: None,
            now: None,
        }
    }
}

/// One kind of problem: how many records have it, and the first one's message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Problem {
    pub records: u64,
    pub example: String,
}

/// The `incremental.field` findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimesReport {
    pub field: String,
    /// The source connection and its server's zone.
    pub connection: String,
    pub zone: String,
    /// Now in that zone, `YYYY-MM-DD HH:MM:SS`.
    pub now: String,
    /// The newest change time seen, in that zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_local: Option<String>,
    /// Now minus the newest change time (negative: it lies ahead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_age_seconds: Option<i64>,
    /// Set when that difference is close to a whole number of hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole_hours: Option<i64>,
    pub tally: TimeTally,
}

/// What `ferry check` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckReport {
    pub scheme: String,
    /// Windows a first run would read, and how many of them (newest first) were read.
    pub windows: u64,
    pub windows_read: u64,
    pub pages: u64,
    pub records: u64,
    /// Records that would be sent.
    pub ok: u64,
    /// Records that would fail into the ledger.
    pub failed: u64,
    /// Records lacking a field a template reads, by field.
    pub missing_fields: BTreeMap<String, Problem>,
    /// Other template errors, by the field whose template failed.
    pub errors: BTreeMap<String, Problem>,
    /// Why a run would stop on its first page, when it would (judged when that page was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stops: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<TimesReport>,
    /// `mapped_id` look-ups answered with a placeholder.
    pub mapped_id_placeholders: u64,
}

impl CheckReport {
    /// 0 when every record would go through, 1 when some would fail or a run would stop.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 || self.stops.is_some() {
            crate::error::exit::ROWS_FAILED
        } else {
            crate::error::exit::OK
        }
    }

    /// Whether anything deserves a look even though no record fails.
    pub fn has_warnings(&self) -> bool {
        self.times.as_ref().is_some_and(|times| {
            let tally = &times.tally;
            tally.outside_window + tally.in_future + tally.field_unreadable + tally.stale_pages > 0
                || times.whole_hours.is_some()
        })
    }
}

/// Reads the first page of the newest and oldest windows of the live source and renders
/// their records.
/// An error means the source could not be read (or the scheme cannot be run at all).
pub async fn check(plan: &Plan, http: &HttpClient, options: &CheckOptions) -> Result<CheckReport, Error> {
    let now = options.now.unwrap_or_else(Utc::now);
    let store = Store::memory();
    let (windows, _) = run_windows(plan, &store, now, options.since, options.until).await?;
    let placeholders = Arc::new(PlaceholderIds::default());
    let fingerprint = serde_json::to_vec(&(&plan.raw.target.fields, &plan.raw.value_maps)).unwrap_or_default();
    let uses_mapped_id = crate::scheme::validate::uses_call(&plan.target.fields, "mapped_id");
    let ctx = RunContext {
        plan: plan.clone(),
        store,
        http: http.clone(),
        vars: Arc::new(base_vars(plan, now, 0, true)),
        mapped_ids: uses_mapped_id.then(|| placeholders.clone() as Arc<dyn MappedIds>),
        field_maps: (!plan.field_tables.is_empty()).then(|| Arc::new(crate::template::FieldMaps::placeholders())),
        payload_hasher: crate::transform::PayloadHasher::new(&fingerprint),
        dry_run: true,
        dry_run_sink: None,
        sessions: Default::default(),
        run_id: 0,
        ledger_open: std::sync::atomic::AtomicBool::new(false),
        change_checks: ChangeChecks::of(plan, options.now, None),
        source_requests: Default::default(),
        source_sink: None,
        keep_events: 0,
        by_id: false,
        force: false,
    };
    let mut report = CheckReport {
        scheme: plan.name.clone(),
        windows: windows.len() as u64,
        ..CheckReport::default()
    };
    let mut times = TimeTally::default();
    // A run stops on its first page with records: the first page of the earliest window
    // that has any. The verdict of the earliest window read with records counts only when
    // every window before it was read and found empty.
    let mut candidate: Option<(usize, Option<String>)> = None;
    let mut empty = std::collections::HashSet::new();
    let parent = crate::exchange::records_parent(&plan.source.records);
    let order = visiting_order(windows.len(), options.max_windows);
    for (position, &index) in order.iter().enumerate() {
        let remaining = options.limit.saturating_sub(report.records);
        if remaining == 0 {
            break;
        }
        // The newest window leaves half of the records to the oldest.
        let share = if position == 0 && order.len() > 1 {
            remaining - remaining / 2
        } else {
            remaining
        };
        let window = &windows[index];
        let mut records = first_page(&ctx, window.as_ref(), parent.as_ref()).await?;
        report.windows_read += 1;
        report.pages += 1;
        records.truncate(usize::try_from(share).unwrap_or(usize::MAX));
        let records = match &plan.source.detail {
            Some(detail) => {
                let vars = fetch::window_vars(&ctx, window.as_ref());
                fetch::fetch_details(&ctx, detail, &vars, records).await?
            }
            None => records,
        };
        let page_times = fetch::check_times(&ctx, window.as_ref(), &records);
        if records.is_empty() {
            empty.insert(index);
        } else if candidate.as_ref().is_none_or(|(earliest, _)| index < *earliest) {
            let hashed: Vec<(Value, String)> = records
                .iter()
                .map(|record| (record.clone(), ctx.payload_hasher.hash(record)))
                .collect();
            candidate = Some((index, stop_reason(&ctx, &hashed, page_times.as_ref())));
        }
        if let Some(page_times) = page_times {
            times.absorb(page_times);
        }
        for record in records {
            report.records += 1;
            match preview(&ctx, record) {
                Ok(()) => report.ok += 1,
                Err(problem) => {
                    report.failed += 1;
                    note_problem(&mut report, &ctx, problem);
                }
            }
        }
    }
    report.stops = candidate
        .filter(|(index, _)| (0..*index).all(|before| empty.contains(&before)))
        .and_then(|(_, reason)| reason);
    report.mapped_id_placeholders = placeholders.lookups();
    let examples = &mut times.examples;
    let texts = [
        &mut examples.outside_window,
        &mut examples.in_future,
        &mut examples.field_unreadable,
        &mut examples.stale_page,
    ];
    for text in texts.into_iter().flatten() {
        *text = plan.redactor.redact(text).into_owned();
    }
    report.times = ctx.change_checks.as_ref().map(|checks| {
        let age = times.newest.as_ref().map(|newest| now - newest.at);
        TimesReport {
            field: checks.field.clone(),
            connection: plan.source.connection.clone(),
            zone: checks.zone.to_string(),
            now: local_text(now, checks.zone),
            newest_local: times.newest.as_ref().map(|newest| local_text(newest.at, checks.zone)),
            newest_age_seconds: age.map(|age| age.num_seconds()),
            whole_hours: age.and_then(whole_hour_offset),
            tally: times,
        }
    });
    Ok(report)
}

/// Why a run whose first page this is would stop (see `first_page_verdict` and
/// `window_verdict`), in short.
fn stop_reason(ctx: &RunContext, records: &[(Value, String)], times: Option<&TimeTally>) -> Option<String> {
    if let Some((names, _)) = fields_every_record_lacks(ctx, records) {
        let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
        return Some(format!(
            "every record of the page ({}) lacks {}, so the scheme's field names do not match this source",
            records.len(),
            names.join(", ")
        ));
    }
    let times = times.filter(|times| times.all_outside())?;
    Some(format!(
        "every record of the page ({}) lies outside the window it was read in, {}: the source ignores the \
         window filter (a misspelt parameter, a filter it does not support), or source.incremental.field names \
         another time than the one it filters on",
        records.len(),
        times.window.as_deref().unwrap_or("?")
    ))
}

/// Which windows to read, in order: the newest first (its records show whether the source's
/// times are read in the right zone), then the oldest (a first run's first page), then
/// alternately inwards, at most `max` of them.
fn visiting_order(count: usize, max: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(count.min(max));
    let (mut low, mut high) = (0, count);
    while low < high && order.len() < max.max(1) {
        high -= 1;
        order.push(high);
        if low < high && order.len() < max.max(1) {
            order.push(low);
            low += 1;
        }
    }
    order
}

/// The records of a window's first page (before detail fetches).
async fn first_page(
    ctx: &RunContext,
    window: Option<&Window>,
    parent: Option<&crate::extract::JsonPath>,
) -> Result<Vec<Value>, Error> {
    let vars = fetch::window_vars(ctx, window);
    let first = Pager::new(&ctx.plan.source.pagination).peek(0);
    let page = fetch::fetch_page(ctx, &vars, parent, first)
        .await
        .map_err(|e| match window {
            Some(window) => e.context(format!(
                "reading window [{}, {})",
                local_text(window.start, ctx.plan.source_connection().zone),
                local_text(window.end, ctx.plan.source_connection().zone)
            )),
            None => e,
        })?;
    Ok(page.records)
}

/// Why one record would fail.
struct RecordProblem {
    record: String,
    message: String,
    missing: Vec<String>,
}

/// Renders a record as a run would: its id (and name), its row, and the key over the row.
fn preview(ctx: &RunContext, record: Value) -> Result<(), RecordProblem> {
    let plan = &ctx.plan;
    let label = fetch::record_label(ctx, &record);
    let hash = ctx.payload_hasher.hash(&record);
    let item = identify(ctx, record, hash).map_err(|rejected| RecordProblem {
        record: label.clone(),
        message: rejected.failure.message,
        missing: rejected.missing,
    })?;
    let scope = row_scope(ctx, &item);
    let row = crate::transform::render(&plan.target.fields, &scope, "target.fields").map_err(|e| RecordProblem {
        record: label.clone(),
        message: describe_record_failure(&e.message, &e.missing, &item.record),
        missing: e.missing,
    })?;
    if let Some(key) = &plan.target.key {
        let row_scope = Scope {
            record: Some(Arc::new(row)),
            vars: ctx.vars.clone(),
            locals: scope.locals,
            ..Scope::default()
        };
        key.render(&row_scope).map_err(|e| RecordProblem {
            record: label,
            message: format!("target.key (over the rendered row): {}", e.message),
            missing: e.missing,
        })?;
    }
    Ok(())
}

fn note_problem(report: &mut CheckReport, ctx: &RunContext, problem: RecordProblem) {
    let example = ctx
        .plan
        .redactor
        .redact(&format!("{}: {}", problem.record, problem.message))
        .into_owned();
    let count = |problems: &mut BTreeMap<String, Problem>, key: String| {
        let entry = problems.entry(key).or_default();
        entry.records += 1;
        if entry.example.is_empty() {
            entry.example = example.clone();
        }
    };
    if problem.missing.is_empty() {
        // Grouped by the field whose template failed (the message's leading path).
        let field = problem
            .message
            .split_once(": ")
            .map_or(problem.message.as_str(), |(field, _)| field)
            .to_string();
        count(&mut report.errors, field);
    } else {
        for name in problem.missing {
            count(&mut report.missing_fields, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::visiting_order;

    #[test]
    fn windows_are_visited_newest_then_oldest_inwards() {
        assert_eq!(visiting_order(1, 10), vec![0]);
        assert_eq!(visiting_order(5, 10), vec![4, 0, 3, 1, 2]);
        assert_eq!(visiting_order(36, 4), vec![35, 0, 34, 1]);
        assert_eq!(visiting_order(0, 4), Vec::<usize>::new());
    }
}
