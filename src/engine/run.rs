//! A run from start to end: settle what an earlier run left ([`super::recover`]), plan the
//! windows, then drive the fetch task, the planner and the writers through each window,
//! committing checkpoints in order and stopping cleanly on an abort or a signal.

use super::context::{
    base_vars, ChangeChecks, Fetched, Item, Job, JobResult, RunContext, StoreBudgets, StoreMappedIds, CHECKPOINT_KEY,
};
use super::fetch;
use super::guard::{first_page_verdict, note_times, window_verdict};
use super::options::{DryRunSink, PlannedRequest, ReadPosition, Replay, RunOptions};
use super::plan::identify;
use super::recover;
use super::summary::Summary;
use super::write;
use crate::error::{Error, ErrorKind};
use crate::http::HttpClient;
use crate::scheme::model::Plan;
use crate::store::{CheckpointStore, FailureLedger, NewFailure, RunHistory, Store};
use crate::template::MappedIds;
use crate::window::{format_time, parse_time, plan_windows, TimeTally, Window, WindowSpec};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Resolves when `stop` turns true (never, without one).
async fn stop_requested(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(receiver) => {
            if receiver.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Runs a plan to completion (or abort) and returns its summary.
pub async fn run(plan: &Plan, store: &Store, http: &HttpClient, options: &RunOptions) -> Result<Summary, Error> {
    let started = Instant::now();
    if plan.source.receive.is_some() && options.pushed.is_none() {
        return Err(Error::config(format!(
            "scheme `{}` receives pushes (source.receive); serve it with `ferry serve {}`",
            plan.name, plan.file
        )));
    }
    if plan.source.receive.is_none() && options.pushed.is_some() {
        return Err(Error::config(format!(
            "scheme `{}` reads its source; only a receiving scheme runs pushed records",
            plan.name
        )));
    }
    let now = options.now.unwrap_or_else(Utc::now);
    // Before the run is recorded: a seed file that cannot be read stops it as a configuration error.
    let field_maps = super::field_maps::load(plan, store, options.dry_run).await?;
    let run_id = if options.dry_run {
        0
    } else {
        store.start_run(&plan.name).await?
    };

    let (windows, checkpoint) = if options.pushed.is_some() {
        (vec![None], None)
    } else if options.replay_only || options.ids.is_some() {
        (Vec::new(), None)
    } else {
        run_windows(plan, store, now, options.since, options.until).await?
    };
    // A page older than the checkpoint this run resumed from was synced before (a backfill
    // reads old windows on purpose, so it is not judged).
    let resume = match (&plan.source.incremental, checkpoint, options.since) {
        (Some(inc), Some(checkpoint), None) => Some(checkpoint - inc.lookback),
        _ => None,
    };

    let mut fingerprint = serde_json::to_vec(&(&plan.raw.target.fields, &plan.raw.value_maps)).unwrap_or_default();
    // Appended only when there are tables, so other schemes keep their payload hashes.
    if !field_maps.fingerprint.is_empty() {
        fingerprint.extend_from_slice(b"\nfield_mappings:");
        fingerprint.extend_from_slice(&field_maps.fingerprint);
    }
    let payload_hasher = crate::transform::PayloadHasher::new(&fingerprint);
    let uses_mapped_id = crate::scheme::validate::uses_call(&plan.target.fields, "mapped_id");
    // A dry run counts the rows of the creates and updates it planned.
    let planned = Arc::new(PlannedRows::default());
    let dry_run_sink = if options.dry_run {
        let inner = options.dry_run_sink.clone();
        let counts = planned.clone();
        Some(Arc::new(move |request: &PlannedRequest| {
            counts.add(request);
            if let Some(inner) = &inner {
                inner(request);
            }
        }) as DryRunSink)
    } else {
        None
    };
    let ctx = Arc::new(RunContext {
        plan: plan.clone(),
        store: store.clone(),
        http: http
            .clone()
            .with_fresh_reach()
            .with_shared_budgets(Arc::new(StoreBudgets(store.clone()))),
        vars: Arc::new(base_vars(plan, now, run_id, options.dry_run)),
        mapped_ids: uses_mapped_id.then(|| Arc::new(StoreMappedIds::new(store.clone())) as Arc<dyn MappedIds>),
        field_maps: field_maps.maps,
        payload_hasher,
        dry_run: options.dry_run,
        dry_run_sink,
        sessions: Default::default(),
        run_id,
        ledger_open: std::sync::atomic::AtomicBool::new(
            options.dry_run || store.count_open_failures(&plan.name).await? > 0,
        ),
        change_checks: ChangeChecks::of(plan, options.now, resume),
        source_requests: Default::default(),
        source_sink: options.source_sink.clone(),
        keep_events: options.keep_events.unwrap_or(super::options::DEFAULT_KEEP_EVENTS),
        by_id: options.ids.is_some(),
        force: options.force,
    });
    tracing::info!(scheme = %plan.name, run_id, dry_run = options.dry_run, windows = windows.len(), "run started");

    let mut summary = Summary {
        scheme: plan.name.clone(),
        dry_run: options.dry_run,
        run_id: (!options.dry_run).then_some(run_id),
        ..Summary::default()
    };
    let outcome = match recover(&ctx, options, &mut summary).await {
        Ok(replay) => drive(&ctx, &windows, replay, options, &mut summary).await,
        Err(e) => Err(e),
    };
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary.source_requests = ctx.source_requests.load(std::sync::atomic::Ordering::Relaxed);
    if options.dry_run {
        summary.created = planned.creates.load(std::sync::atomic::Ordering::Relaxed);
        summary.updated = planned.updates.load(std::sync::atomic::Ordering::Relaxed);
    }
    if let Err(e) = outcome {
        summary.aborted = Some(plan.redactor.redact(&e.message).into_owned());
        // Try again later: nothing changed in the target. A source read that failed in
        // transport (refused, unresolved, timed out) counts; a write only when it never
        // reached the target.
        summary.unreachable = !summary.stopped && e.kind == ErrorKind::Transport && summary.written() == 0;
    }
    if !options.dry_run {
        let summary_json = serde_json::to_value(&summary).unwrap_or(Value::Null);
        store
            .finish_run(run_id, summary.outcome().as_str(), &summary_json)
            .await?;
    }
    Ok(summary)
}

/// Rows of the creates and updates a dry run planned.
#[derive(Default)]
struct PlannedRows {
    creates: std::sync::atomic::AtomicU64,
    updates: std::sync::atomic::AtomicU64,
}

impl PlannedRows {
    fn add(&self, request: &PlannedRequest) {
        let counter = match request.operation {
            "create" => &self.creates,
            "update" => &self.updates,
            _ => return,
        };
        counter.fetch_add(request.rows as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The windows a run reads (one `None` for a source without `incremental`), and the
/// stored checkpoint they start from.
pub(crate) async fn run_windows(
    plan: &Plan,
    store: &Store,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(Vec<Option<Window>>, Option<DateTime<Utc>>), Error> {
    let Some(inc) = &plan.source.incremental else {
        return Ok((vec![None], None));
    };
    let checkpoint = match store.checkpoint(&plan.name, CHECKPOINT_KEY).await? {
        Some(text) => Some(
            parse_time(&text, plan.timezone)
                .map_err(|e| Error::store(format!("stored checkpoint is unreadable: {e}")))?,
        ),
        None => None,
    };
    let spec = WindowSpec {
        start: inc.start,
        window: inc.window,
        lookback: inc.lookback,
        lag: inc.lag,
    };
    let windows = plan_windows(&spec, checkpoint, now, since, until)
        .into_iter()
        .map(Some)
        .collect();
    Ok((windows, checkpoint))
}

/// Settles an earlier run's unfinished writes, then gathers the ledger rows to replay.
async fn recover(ctx: &RunContext, options: &RunOptions, summary: &mut Summary) -> Result<Vec<(Value, String)>, Error> {
    if !ctx.dry_run {
        recover::reconcile_intents(ctx, summary).await?;
    }
    if let Some(ids) = &options.ids {
        return Ok(super::byid::read_ids(ctx, ids, summary).await);
    }
    let which = match &options.replay {
        Some(which) => which.clone(),
        None if ctx.plan.failures.replay => Replay::Automatic,
        None => return Ok(Vec::new()),
    };
    recover::ledger_records(ctx, &which).await
}

/// Tracks which windows are complete, to move the checkpoint in order.
struct Checkpoints {
    /// Last batch seq of each finished window.
    window_last_seq: BTreeMap<usize, u64>,
    done: HashSet<u64>,
    /// Every seq below this is done.
    done_below: u64,
    next_window: usize,
}

impl Checkpoints {
    fn mark_done(&mut self, seq: u64) {
        self.done.insert(seq);
        while self.done.remove(&self.done_below) {
            self.done_below += 1;
        }
    }
    /// Windows (in order) whose every batch is done.
    fn completed(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(last) = self.window_last_seq.get(&self.next_window) {
            if *last >= self.done_below {
                break;
            }
            self.window_last_seq.remove(&self.next_window);
            out.push(self.next_window);
            self.next_window += 1;
        }
        out
    }
}

#[allow(unused_assignments)] // the last dispatch! bumps a sequence nobody reads
async fn drive(
    ctx: &Arc<RunContext>,
    windows: &[Option<Window>],
    replay: Vec<(Value, String)>,
    options: &RunOptions,
    summary: &mut Summary,
) -> Result<(), Error> {
    let plan = &ctx.plan;
    let source_in_flight = plan.source_connection().in_flight;
    let target_in_flight = plan.target_connection().in_flight;
    let (sender, mut receiver) = mpsc::channel::<Fetched>(source_in_flight.max(1) * 2);
    let fetch_ctx = ctx.clone();
    let fetch_windows = windows.to_vec();
    let pages = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fetch_pages = pages.clone();
    let fetcher = match options.pushed.clone() {
        Some(pushed) => tokio::spawn(async move { send_pushed(fetch_ctx, pushed, replay, sender).await }),
        None => {
            tokio::spawn(async move { fetch::fetch_all(fetch_ctx, fetch_windows, replay, sender, fetch_pages).await })
        }
    };

    let batch_size = plan.target.batch;
    let mut batch: Vec<Item> = Vec::with_capacity(batch_size);
    let mut pending_failures: Vec<NewFailure> = Vec::new();
    let mut in_flight_ids: HashMap<String, u64> = HashMap::new();
    // Ledger rows replayed in this run, by source id, with their payload hashes: the same
    // record read again from the source (a full re-read, a backfill) is not sent twice.
    let mut replayed_hashes: HashMap<String, String> = HashMap::new();
    let mut writers: JoinSet<Result<JobResult, Error>> = JoinSet::new();
    let mut checkpoints = Checkpoints {
        window_last_seq: BTreeMap::new(),
        done: HashSet::new(),
        done_below: 0,
        next_window: 0,
    };
    let mut next_seq = 0u64;
    let mut failure: Option<Error> = None;
    let mut limit_reached = false;
    let mut done_records = 0u64;
    let mut stop = options.stop.clone();
    let mut first_page_checked = false;
    let mut probed = false;
    let mut run_times = TimeTally::default();
    let mut position = ReadPosition {
        window: 1,
        windows: windows.len() as u64,
        range: window_range(ctx, windows.first()),
        page: 0,
    };

    // Dispatches the current batch (possibly empty, to carry failures or close a window).
    macro_rules! dispatch {
        () => {{
            let items = std::mem::take(&mut batch);
            let failures = std::mem::take(&mut pending_failures);
            let seq = next_seq;
            next_seq = seq + 1;
            // Never let an id be in two batches at once.
            while items.iter().any(|i| in_flight_ids.contains_key(&i.source_id)) {
                match writers.join_next().await {
                    Some(joined) => finish_job(
                        joined,
                        summary,
                        &mut in_flight_ids,
                        &mut checkpoints,
                        &mut done_records,
                        &mut failure,
                    ),
                    None => break,
                }
            }
            for item in &items {
                in_flight_ids.insert(item.source_id.clone(), seq);
            }
            let job = Job { seq, items, failures };
            while writers.len() >= target_in_flight {
                if let Some(joined) = writers.join_next().await {
                    finish_job(
                        joined,
                        summary,
                        &mut in_flight_ids,
                        &mut checkpoints,
                        &mut done_records,
                        &mut failure,
                    );
                }
            }
            // A stopping run sends nothing more (its windows stay unchecked).
            if failure.is_none() {
                let probe = !probed && !job.items.is_empty();
                let writer_ctx = ctx.clone();
                writers.spawn(async move { write::write_job(writer_ctx, job).await });
                // The run's first batch goes alone: an answer that cannot be matched to its
                // rows stops the run before a second batch is sent.
                if probe {
                    probed = true;
                    while let Some(joined) = writers.join_next().await {
                        finish_job(
                            joined,
                            summary,
                            &mut in_flight_ids,
                            &mut checkpoints,
                            &mut done_records,
                            &mut failure,
                        );
                    }
                    if failure.is_none() {
                        failure = target_unreachable(ctx, summary);
                    }
                }
            }
            seq
        }};
    }

    while failure.is_none() {
        // Reap finished writers without waiting, to keep the checkpoint moving.
        while let Some(joined) = writers.try_join_next() {
            finish_job(
                joined,
                summary,
                &mut in_flight_ids,
                &mut checkpoints,
                &mut done_records,
                &mut failure,
            );
        }
        advance_checkpoints(ctx, windows, &mut checkpoints, summary).await?;
        if let Some(progress) = &options.progress {
            progress.update(summary.read, done_records);
        }
        let message = tokio::select! {
            message = receiver.recv() => message,
            _ = stop_requested(&mut stop) => {
                failure = Some(Error::new(ErrorKind::Aborted, "stopped by a signal; the writes in flight were finished and committed"));
                summary.stopped = true;
                break;
            }
        };
        let Some(message) = message else { break };
        match message {
            Fetched::Page {
                records,
                deleted,
                replay,
                times,
            } => {
                if replay {
                    // Records read by id are counted as read, not as replayed.
                    if !ctx.by_id {
                        summary.replayed += records.len() as u64;
                    }
                } else {
                    summary.pages += 1;
                    position.page += 1;
                    if let Some(progress) = &options.progress {
                        progress.reading(&position);
                    }
                    if !first_page_checked && !records.is_empty() {
                        first_page_checked = true;
                        let verdict = first_page_verdict(ctx, &records)
                            .or_else(|| times.as_ref().and_then(|times| window_verdict(ctx, times)));
                        if let Some(error) = verdict {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if let Some(times) = times {
                    note_times(ctx, &mut run_times, summary, *times);
                }
                let read_in: Option<Arc<str>> = if replay && ctx.by_id {
                    Some(Arc::from("read by id (ferry run --ids)"))
                } else if replay {
                    Some(Arc::from("ledger replay"))
                } else {
                    position.range.as_deref().map(Arc::from)
                };
                for (record, hash) in records {
                    if options.limit.is_some_and(|limit| summary.read >= limit) {
                        limit_reached = true;
                        break;
                    }
                    summary.read += 1;
                    match identify(ctx, record, hash).map(|mut item| {
                        item.window = read_in.clone();
                        item
                    }) {
                        Ok(item) if !replay && replayed_hashes.get(&item.source_id) == Some(&item.hash) => {
                            summary.duplicates += 1;
                        }
                        Ok(item) => {
                            if replay {
                                replayed_hashes.insert(item.source_id.clone(), item.hash.clone());
                            }
                            // A record seen twice in one batch keeps its latest version (a
                            // deletion before it is simply replaced).
                            if let Some(existing) = batch.iter_mut().find(|i| i.source_id == item.source_id) {
                                if !existing.deleted {
                                    summary.duplicates += 1;
                                }
                                *existing = item;
                            } else {
                                batch.push(item);
                            }
                        }
                        Err(rejected) => {
                            summary.failed += 1;
                            for name in &rejected.missing {
                                *summary.missing_fields.entry(name.clone()).or_default() += 1;
                            }
                            pending_failures.push(rejected.failure);
                        }
                    }
                    if batch.len() >= batch_size {
                        dispatch!();
                    }
                }
                if limit_reached {
                    break;
                }
                for source_id in deleted {
                    let item = Item::deletion(source_id);
                    // The later event of an id in this batch wins: here, the deletion.
                    if let Some(existing) = batch.iter_mut().find(|i| i.source_id == item.source_id) {
                        if !existing.deleted {
                            summary.duplicates += 1;
                        }
                        *existing = item;
                    } else {
                        batch.push(item);
                    }
                    if batch.len() >= batch_size {
                        dispatch!();
                    }
                }
            }
            Fetched::WindowDone { window } => {
                let seq = dispatch!();
                checkpoints.window_last_seq.insert(window, seq);
                summary.windows += 1;
                position = ReadPosition {
                    window: window as u64 + 2,
                    windows: windows.len() as u64,
                    range: window_range(ctx, windows.get(window + 1)),
                    page: 0,
                };
            }
            Fetched::Failed(error) => {
                failure = Some(error);
            }
        }
    }
    drop(receiver);
    if failure.is_none() && (!batch.is_empty() || !pending_failures.is_empty()) {
        dispatch!();
    }
    while let Some(joined) = writers.join_next().await {
        finish_job(
            joined,
            summary,
            &mut in_flight_ids,
            &mut checkpoints,
            &mut done_records,
            &mut failure,
        );
    }
    // Windows are only checkpointed when nothing failed before them.
    advance_checkpoints(ctx, windows, &mut checkpoints, summary).await?;
    if let Some(progress) = &options.progress {
        progress.update(summary.read, done_records);
    }
    match fetcher.await {
        Ok(()) => {}
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            failure = failure.or(Some(Error::new(
                ErrorKind::Aborted,
                format!("the fetch task failed: {e}"),
            )))
        }
    }
    summary.pages = summary.pages.max(pages.load(std::sync::atomic::Ordering::Relaxed));
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Receive mode's stand-in for the fetch task: the ledger rows to replay, then the pushed
/// records as one page of the run's one window.
async fn send_pushed(
    ctx: Arc<RunContext>,
    pushed: super::options::Pushed,
    replay: Vec<(Value, String)>,
    sender: mpsc::Sender<Fetched>,
) {
    if !replay.is_empty() {
        let page = Fetched::Page {
            records: replay,
            deleted: Vec::new(),
            replay: true,
            times: None,
        };
        if sender.send(page).await.is_err() {
            return;
        }
    }
    let records = pushed
        .records
        .into_iter()
        .map(|record| {
            let hash = ctx.payload_hasher.hash(&record);
            (record, hash)
        })
        .collect();
    let page = Fetched::Page {
        records,
        deleted: pushed.deleted,
        replay: false,
        times: None,
    };
    if sender.send(page).await.is_ok() {
        let _ = sender.send(Fetched::WindowDone { window: 0 }).await;
    }
}

/// `start → end` of a window, in the source's zone.
fn window_range(ctx: &RunContext, window: Option<&Option<Window>>) -> Option<String> {
    let window = window?.as_ref()?;
    let zone = ctx.plan.source_connection().zone;
    Some(format!(
        "{} → {}",
        format_time(window.start, zone),
        format_time(window.end, zone)
    ))
}

/// After the run's first batch: when the target accepted nothing and no attempt ever
/// reached it, every further batch would fail the same way, so the run stops here.
fn target_unreachable(ctx: &RunContext, summary: &Summary) -> Option<Error> {
    if ctx.dry_run || summary.written() > 0 || summary.failed == 0 {
        return None;
    }
    let connection = &ctx.plan.target_connection().name;
    let reason = ctx.http.never_reached(connection)?;
    Some(Error::unreachable(format!(
        "the target (connection `{connection}`) cannot be reached: {}. Nothing was written; the run stopped \
         after its first batch instead of failing every record, the batch's rows are in the failure ledger and \
         the next run sends them again",
        ctx.plan.redactor.redact(&reason)
    )))
}

fn finish_job(
    joined: Result<Result<JobResult, Error>, tokio::task::JoinError>,
    summary: &mut Summary,
    in_flight_ids: &mut HashMap<String, u64>,
    checkpoints: &mut Checkpoints,
    done_records: &mut u64,
    failure: &mut Option<Error>,
) {
    match joined {
        Ok(Ok(result)) => {
            summary.created += result.created;
            summary.updated += result.updated;
            summary.failed += result.failed;
            summary.requests += result.requests;
            summary.unchanged += result.unchanged;
            summary.skipped += result.skipped;
            summary.deleted += result.deleted;
            for name in result.missing {
                *summary.missing_fields.entry(name).or_default() += 1;
            }
            if let Some(abort) = result.abort {
                failure.get_or_insert(abort);
            }
            *done_records +=
                result.created + result.updated + result.failed + result.unchanged + result.skipped + result.deleted;
            for id in &result.ids {
                if in_flight_ids.get(id) == Some(&result.seq) {
                    in_flight_ids.remove(id);
                }
            }
            checkpoints.mark_done(result.seq);
        }
        Ok(Err(e)) => {
            if failure.is_none() {
                *failure = Some(e);
            }
        }
        Err(e) => {
            if failure.is_none() {
                *failure = Some(Error::new(ErrorKind::Aborted, format!("a writer task failed: {e}")));
            }
        }
    }
}

async fn advance_checkpoints(
    ctx: &RunContext,
    windows: &[Option<Window>],
    checkpoints: &mut Checkpoints,
    summary: &mut Summary,
) -> Result<(), Error> {
    for index in checkpoints.completed() {
        if let Some(Some(window)) = windows.get(index) {
            let text = format_time(window.end, ctx.plan.timezone);
            if !ctx.dry_run {
                // Never move a checkpoint backwards (a backfill reads older windows).
                let current = ctx.store.checkpoint(&ctx.plan.name, CHECKPOINT_KEY).await?;
                let newer = match current.as_deref().map(|c| parse_time(c, ctx.plan.timezone)) {
                    Some(Ok(existing)) => window.end > existing,
                    _ => true,
                };
                if newer {
                    ctx.store.set_checkpoint(&ctx.plan.name, CHECKPOINT_KEY, &text).await?;
                }
            }
            summary.checkpoint = Some(text);
        }
    }
    Ok(())
}
