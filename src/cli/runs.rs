//! `ferry runs list|show` (the run history the store keeps) and `ferry status` (per scheme:
//! the last run and its outcome, the last success, the checkpoint and its lag, open
//! failures, pending write intents, and the next timer run when systemd knows it).
//!
//! Both only read: a missing store is an error naming its path (exit 2), never created.
//! The next timer run is asked of `systemctl list-timers` (system and user managers) for
//! the unit `ferry systemd` names for the scheme; any failure there only leaves it out.

use super::output::json_or_text;
use super::{logging, stores, FormatArg, StoreArg};
use crate::error::exit;
use crate::store::{CheckpointStore, FailureLedger, IntentLog, RunHistory, RunRecord};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum RunsAction {
    /// List runs, newest first, with their outcome and counts.
    #[command(after_help = "Examples:
  ferry runs list
  ferry runs list --scheme shop-orders-to-erp --limit 5
  ferry runs list --scheme schemes/shop-orders-to-erp.yaml --format json")]
    List {
        /// Only this scheme's runs: its `name` or its scheme file.
        #[arg(long)]
        scheme: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show one run with its whole summary.
    #[command(after_help = "Examples:
  ferry runs show 42
  ferry runs show 42 --format json --store /var/lib/ferry/ferry.db")]
    Show {
        /// The run's id (see `ferry runs list`).
        id: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Args)]
#[command(after_help = "Examples:
  ferry status
  ferry status --scheme shop-orders-to-erp --store /var/lib/ferry/ferry.db
  ferry status --format json")]
pub struct StatusArgs {
    /// Only this scheme: its `name` or its scheme file.
    #[arg(long)]
    scheme: Option<String>,
    #[command(flatten)]
    output: FormatArg,
    #[command(flatten)]
    store: StoreArg,
}

pub async fn runs(action: RunsAction) -> i32 {
    match action {
        RunsAction::List {
            scheme,
            limit,
            output,
            store,
        } => {
            let scheme = match scheme.as_deref().map(stores::scheme_name).transpose() {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            if limit < 0 {
                logging::error("--limit must not be negative");
                return exit::CONFIG;
            }
            let store = match stores::open_existing(&store.store).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            match store.recent_runs(scheme.as_deref(), limit).await {
                Ok(rows) => {
                    json_or_text(output.is_json(), &rows, || runs_table(&rows));
                    exit::OK
                }
                Err(e) => {
                    logging::error(e);
                    exit::ABORTED
                }
            }
        }
        RunsAction::Show { id, output, store } => {
            let store = match stores::open_existing(&store.store).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            match store.run(id).await {
                Ok(Some(run)) => {
                    json_or_text(output.is_json(), &run, || run_detail(&run));
                    exit::OK
                }
                Ok(None) => {
                    logging::error(format_args!("no run with id {id}; list them with `ferry runs list`"));
                    exit::CONFIG
                }
                Err(e) => {
                    logging::error(e);
                    exit::ABORTED
                }
            }
        }
    }
}

fn count(run: &RunRecord, field: &str) -> u64 {
    run.summary
        .as_ref()
        .and_then(|s| s.get(field))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn duration(run: &RunRecord) -> String {
    match run.finished_at {
        Some(end) => format!("{:.1}s", (end - run.started_at).num_milliseconds() as f64 / 1000.0),
        None => "-".into(),
    }
}

pub fn runs_table(rows: &[RunRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<24} {:<21} {:>8} {:<12} {:>8} {:>8} {:>8} {:>7}",
        "ID", "SCHEME", "STARTED", "TOOK", "OUTCOME", "READ", "CREATED", "UPDATED", "FAILED"
    );
    for run in rows {
        let _ = writeln!(
            out,
            "{:<6} {:<24} {:<21} {:>8} {:<12} {:>8} {:>8} {:>8} {:>7}",
            run.id,
            run.scheme,
            time(run.started_at),
            duration(run),
            run.status,
            count(run, "read"),
            count(run, "created"),
            count(run, "updated"),
            count(run, "failed"),
        );
    }
    let _ = writeln!(out, "{} run(s)", rows.len());
    out
}

pub fn run_detail(run: &RunRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run {} of scheme {}", run.id, run.scheme);
    let _ = writeln!(out, "  outcome     {}", run.status);
    let _ = writeln!(out, "  started     {}", time(run.started_at));
    if let Some(end) = run.finished_at {
        let _ = writeln!(out, "  finished    {} ({})", time(end), duration(run));
    }
    if let Some(serde_json::Value::Object(summary)) = &run.summary {
        for (key, value) in summary {
            if matches!(key.as_str(), "scheme" | "run_id" | "duration_ms") {
                continue;
            }
            let shown = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "  {key:<16}{shown}");
        }
    }
    out
}

/// One scheme's state, as `ferry status` shows it.
#[derive(Debug, Serialize)]
pub struct SchemeStatus {
    pub scheme: String,
    pub last_run: Option<RunRecord>,
    pub last_success: Option<DateTime<Utc>>,
    pub checkpoint: Option<String>,
    /// Seconds the checkpoint is behind now.
    pub checkpoint_lag_seconds: Option<i64>,
    pub open_failures: i64,
    pub pending_intents: usize,
    /// When systemd runs the scheme's timer next.
    pub next_timer_run: Option<DateTime<Utc>>,
    pub timer: Option<String>,
}

pub async fn status(args: StatusArgs) -> i32 {
    let scheme = match args.scheme.as_deref().map(stores::scheme_name).transpose() {
        Ok(scheme) => scheme,
        Err(code) => return code,
    };
    let store = match stores::open_existing(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let latest = match store.latest_runs(scheme.as_deref(), None).await {
        Ok(latest) => latest,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    if let (Some(scheme), true) = (&scheme, latest.is_empty()) {
        logging::error(format_args!(
            "scheme {scheme} has never run with the store {}",
            args.store.store
        ));
        return exit::CONFIG;
    }
    let timers = next_timer_runs().await;
    let now = Utc::now();
    let mut all = Vec::new();
    for run in latest {
        let name = run.scheme.clone();
        let read = async {
            let last_success = store
                .latest_runs(Some(&name), Some(crate::engine::Outcome::Ok.as_str()))
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.finished_at);
            let checkpoint = store.checkpoint(&name, crate::engine::CHECKPOINT_KEY).await?;
            let open_failures = store.count_open_failures(&name).await?;
            let pending_intents = store.pending_intents(&name).await?.len();
            Ok::<_, crate::store::StoreError>((last_success, checkpoint, open_failures, pending_intents))
        };
        let (last_success, checkpoint, open_failures, pending_intents) = match read.await {
            Ok(found) => found,
            Err(e) => {
                logging::error(e);
                return exit::ABORTED;
            }
        };
        let lag = checkpoint
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| (now - c.with_timezone(&Utc)).num_seconds());
        let unit = super::systemd::unit_name(&name);
        let timer = timers.iter().find(|(t, _)| t.trim_end_matches(".timer") == unit);
        all.push(SchemeStatus {
            scheme: name,
            last_run: Some(run),
            last_success,
            checkpoint,
            checkpoint_lag_seconds: lag,
            open_failures,
            pending_intents,
            next_timer_run: timer.and_then(|(_, next)| *next),
            timer: timer.map(|(t, _)| t.clone()),
        });
    }
    json_or_text(args.output.is_json(), &all, || {
        status_text(&all, &args.store.store, now)
    });
    exit::OK
}

pub fn status_text(all: &[SchemeStatus], store: &str, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if all.is_empty() {
        let _ = writeln!(out, "no scheme has run with the store {store} yet");
        return out;
    }
    let ago = |t: DateTime<Utc>| {
        let d = now - t;
        if d < chrono::Duration::zero() {
            format!("in {}", crate::window::describe_duration(-d))
        } else {
            format!("{} ago", crate::window::describe_duration(d))
        }
    };
    for s in all {
        let _ = writeln!(out, "scheme {}", s.scheme);
        if let Some(run) = &s.last_run {
            let when = run.finished_at.unwrap_or(run.started_at);
            let _ = writeln!(
                out,
                "  last run        #{} {} ({}, {})",
                run.id,
                run.status,
                time(when),
                ago(when)
            );
        }
        match s.last_success {
            Some(t) => {
                let _ = writeln!(out, "  last success    {} ({})", time(t), ago(t));
            }
            None => {
                let _ = writeln!(out, "  last success    never");
            }
        }
        match (&s.checkpoint, s.checkpoint_lag_seconds) {
            (Some(c), Some(lag)) => {
                let lag = crate::window::describe_duration(chrono::Duration::seconds(lag));
                let _ = writeln!(out, "  checkpoint      {c} (lag {lag})");
            }
            (Some(c), None) => {
                let _ = writeln!(out, "  checkpoint      {c}");
            }
            (None, _) => {
                let _ = writeln!(out, "  checkpoint      none (no incremental window completed)");
            }
        }
        let _ = writeln!(out, "  open failures   {}", s.open_failures);
        let _ = writeln!(out, "  pending writes  {}", s.pending_intents);
        match (&s.timer, s.next_timer_run) {
            (Some(timer), Some(next)) => {
                let _ = writeln!(out, "  next timer run  {} ({}, {timer})", time(next), ago(next));
            }
            (Some(timer), None) => {
                let _ = writeln!(out, "  next timer run  not scheduled ({timer})");
            }
            _ => {}
        }
    }
    out
}

/// Timers systemd knows (system and user managers), with their next run. Best effort:
/// without systemd, or when it does not answer within two seconds, none.
async fn next_timer_runs() -> Vec<(String, Option<DateTime<Utc>>)> {
    let mut found = Vec::new();
    for user in [false, true] {
        let mut command = tokio::process::Command::new("systemctl");
        if user {
            command.arg("--user");
        }
        command
            .args(["list-timers", "--all", "--no-pager", "--output=json"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let Ok(Ok(output)) = tokio::time::timeout(std::time::Duration::from_secs(2), command.output()).await else {
            continue;
        };
        if output.status.success() {
            found.extend(parse_timers(&output.stdout));
        }
    }
    found
}

/// `systemctl list-timers --output=json`: `[{"unit": …, "next": µs since the epoch}, …]`.
pub fn parse_timers(json: &[u8]) -> Vec<(String, Option<DateTime<Utc>>)> {
    let Ok(serde_json::Value::Array(timers)) = serde_json::from_slice(json) else {
        return Vec::new();
    };
    timers
        .iter()
        .filter_map(|timer| {
            let unit = timer.get("unit")?.as_str()?.to_string();
            let next = timer
                .get("next")
                .and_then(|n| n.as_i64())
                .filter(|n| *n > 0)
                .and_then(DateTime::from_timestamp_micros);
            Some((unit, next))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_read_from_systemctl_json() {
        let json = br#"[{"next":1717243200000000,"left":1,"last":null,"passed":null,"unit":"ferry-orders.timer","activates":"ferry-orders.service"},
                        {"next":null,"unit":"other.timer"}]"#;
        let timers = parse_timers(json);
        assert_eq!(timers.len(), 2);
        assert_eq!(timers[0].0, "ferry-orders.timer");
        assert_eq!(timers[0].1.unwrap().to_rfc3339(), "2024-06-01T12:00:00+00:00");
        assert_eq!(timers[1].1, None);
        assert!(parse_timers(b"not json").is_empty());
    }
}
