//! Human-readable output: summary tables, mapping and failure listings, progress bar.

use crate::engine::{Outcome, PlannedRequest, Progress, ReadPosition, SourceRequest, Summary};
use crate::store::{Failure, Mapping};
use std::fmt::Write as _;

/// Prints `value` as pretty JSON when `json`, else the text `text` makes of it.
pub fn json_or_text<T: serde::Serialize + ?Sized>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        print!("{}", text());
    }
}

/// The summary of a run against the store at `store` (named in the hints it prints).
pub fn summary_table(s: &Summary, store: &str) -> String {
    let store_flag = if store == "ferry.db" {
        String::new()
    } else {
        format!(" --store {store}")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scheme {}{}",
        s.scheme,
        if s.dry_run { "  (dry run: nothing written)" } else { "" }
    );
    // A dry run's created and updated are the creates and updates it planned.
    let (created, updated) = if s.dry_run {
        ("to create", "to update")
    } else {
        ("created", "updated")
    };
    let rows: [(&str, u64); 11] = [
        ("read", s.read),
        (created, s.created),
        (updated, s.updated),
        ("unchanged", s.unchanged),
        ("duplicates", s.duplicates),
        ("skipped", s.skipped),
        ("failed", s.failed),
        ("windows", s.windows),
        ("pages", s.pages),
        ("source requests", s.source_requests),
        ("target requests", s.requests),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<16}{value:>9}");
    }
    // Deletions and recovery counters appear only when something happened.
    for (label, value) in [
        ("deleted", s.deleted),
        ("replayed", s.replayed),
        ("reconciled", s.reconciled),
        ("uncertain", s.uncertain),
    ] {
        if value > 0 {
            let _ = writeln!(out, "  {label:<16}{value:>9}");
        }
    }
    let _ = writeln!(out, "  {:<16}{:>8.2}s", "duration", s.duration_ms as f64 / 1000.0);
    if let Some(checkpoint) = &s.checkpoint {
        let _ = writeln!(out, "  {:<16}{checkpoint}", "checkpoint");
    }
    if let Some(id) = s.run_id {
        let _ = writeln!(out, "  {:<16}{id} (ferry runs show {id}{store_flag})", "run");
    }
    for (field, count) in &s.missing_fields {
        let _ = writeln!(
            out,
            "  {field} missing in {count} record{}",
            if *count == 1 { "" } else { "s" }
        );
    }
    // The `incremental.field` checks (warnings: the data may still be right).
    for (count, what) in [
        (
            s.outside_window,
            "record(s) changed outside the window they were read in (incremental.field): check the window parameters",
        ),
        (
            s.in_future,
            "record(s) changed in the future (incremental.field): check the source connection's timezone",
        ),
        (
            s.field_unreadable,
            "record(s) without a readable incremental.field: check its name",
        ),
        (
            s.stale_pages,
            "page(s) older than the checkpoint: the source seems to ignore the window filter",
        ),
    ] {
        if count > 0 {
            let _ = writeln!(out, "  warning: {count} {what} (examples in the log)");
        }
    }
    if s.failed > 0 && !s.dry_run {
        let _ = writeln!(
            out,
            "  failed rows are in the ledger: ferry failures list --scheme {}{store_flag}",
            s.scheme
        );
    }
    if s.uncertain > 0 {
        let _ = writeln!(
            out,
            "  {} earlier create(s) could not be checked: see `ferry failures list --scheme {}{store_flag}` (class uncertain)",
            s.uncertain, s.scheme
        );
    }
    // The reason itself is printed once, on stderr.
    let outcome = match s.outcome() {
        Outcome::Ok | Outcome::FailedRows => None,
        Outcome::Aborted => Some("ABORTED (the reason is on stderr)"),
        Outcome::Stopped => Some("stopped by a signal"),
        Outcome::Unreachable => Some("UNREACHABLE: nothing was written; try again later (the reason is on stderr)"),
    };
    if let Some(outcome) = outcome {
        let _ = writeln!(out, "  {:<16}{outcome}", "outcome");
    }
    out
}

/// A source request of a dry run, as text.
pub fn print_source(request: &SourceRequest) {
    let window = request
        .window
        .as_deref()
        .map(|w| format!(", window {w}"))
        .unwrap_or_default();
    let what = if request.kind == "page" {
        format!("source page {}{window}", request.page)
    } else {
        format!("source detail{window}")
    };
    println!("--- {what}: {} record(s)", request.records);
    println!("{} {}", request.method, request.url);
    if let Some(body) = request.body.as_deref().filter(|b| !b.is_empty()) {
        println!("\n{body}");
    }
}

/// A source request of a dry run, as one line of JSON.
pub fn print_source_json(request: &SourceRequest) {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("side".into(), "source".into());
    }
    println!("{value}");
}

/// A planned target request of a dry run, as one line of JSON.
pub fn print_planned_json(request: &PlannedRequest) {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("side".into(), "target".into());
    }
    println!("{value}");
}

pub fn print_planned(request: &PlannedRequest) {
    println!("--- {} ({} row(s))", request.operation, request.rows);
    println!("{} {}", request.method, request.url);
    for (name, value) in &request.headers {
        println!("{name}: {value}");
    }
    if let Some(body) = &request.body {
        println!("\n{body}");
    }
}

pub fn mappings_table(rows: &[Mapping]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<24} {:<9} {:<26} NAME",
        "SOURCE ID", "TARGET ID", "STATUS", "LAST SYNC"
    );
    for m in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:<9} {:<26} {}",
            m.source_id,
            m.target_id.as_deref().unwrap_or("-"),
            m.status.to_string(),
            m.last_synced_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            m.target_name.as_deref().or(m.source_name.as_deref()).unwrap_or("")
        );
    }
    let _ = writeln!(out, "{} mapping(s)", rows.len());
    out
}

pub fn failures_table(rows: &[Failure]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<24} {:<10} {:<14} {:<8} MESSAGE",
        "ID", "SOURCE ID", "STAGE", "CLASS", "ATTEMPTS"
    );
    for f in rows {
        let message: String = f.message.chars().take(80).collect();
        let _ = writeln!(
            out,
            "{:<6} {:<24} {:<10} {:<14} {:<8} {message}",
            f.id,
            f.source_id,
            format!("{:?}", f.stage).to_lowercase(),
            f.error_class,
            f.attempts
        );
    }
    let _ = writeln!(out, "{} failure(s)", rows.len());
    out
}

pub fn failure_detail(f: &Failure) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "failure {} of scheme {}", f.id, f.scheme);
    let _ = writeln!(out, "  source id   {}", f.source_id);
    let _ = writeln!(out, "  stage       {}", format!("{:?}", f.stage).to_lowercase());
    let _ = writeln!(out, "  class       {}", f.error_class);
    let _ = writeln!(out, "  status      {}", format!("{:?}", f.status).to_lowercase());
    let _ = writeln!(out, "  attempts    {}", f.attempts);
    let _ = writeln!(out, "  first seen  {}", f.first_seen.to_rfc3339());
    let _ = writeln!(out, "  last seen   {}", f.last_seen.to_rfc3339());
    let _ = writeln!(out, "  message     {}", f.message);
    if let Some(payload) = &f.payload {
        let _ = writeln!(
            out,
            "  payload\n{}",
            serde_json::to_string_pretty(payload).unwrap_or_default()
        );
    }
    out
}

/// An indicatif spinner showing the window and page being read, and records read and done.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    position: std::sync::Mutex<String>,
    counts: std::sync::Mutex<(u64, u64)>,
}

impl ProgressBar {
    pub fn new() -> ProgressBar {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        ProgressBar {
            bar,
            position: Default::default(),
            counts: Default::default(),
        }
    }

    fn show(&self) {
        let position = self.position.lock().map(|p| p.clone()).unwrap_or_default();
        let (read, done) = self.counts.lock().map(|c| *c).unwrap_or_default();
        self.bar
            .set_message(format!("{position}read {read} records, {done} written or failed"));
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for ProgressBar {
    fn update(&self, read: u64, done: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts = (read, done);
        }
        self.show();
    }

    fn reading(&self, at: &ReadPosition) {
        if let Ok(mut position) = self.position.lock() {
            *position = progress_position(at);
        }
        self.show();
    }
}

/// `window 3/10 (start → end), page 4 · `
pub fn progress_position(at: &ReadPosition) -> String {
    let range = at.range.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    format!("window {}/{}{range}, page {} · ", at.window, at.windows, at.page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_names_the_window_and_page() {
        let at = ReadPosition {
            window: 3,
            windows: 10,
            range: Some("2024-03-01T00:00:00+08:00 → 2024-03-02T00:00:00+08:00".into()),
            page: 4,
        };
        assert_eq!(
            progress_position(&at),
            "window 3/10 (2024-03-01T00:00:00+08:00 → 2024-03-02T00:00:00+08:00), page 4 · "
        );
    }

    #[test]
    fn hints_name_the_store_the_run_used() {
        let summary = Summary {
            scheme: "orders".into(),
            failed: 2,
            run_id: Some(7),
            ..Summary::default()
        };
        let text = summary_table(&summary, "/var/lib/ferry/ferry.db");
        assert!(
            text.contains("ferry failures list --scheme orders --store /var/lib/ferry/ferry.db"),
            "{text}"
        );
        assert!(
            text.contains("ferry runs show 7 --store /var/lib/ferry/ferry.db"),
            "{text}"
        );
        let default_store = summary_table(&summary, "ferry.db");
        assert!(
            default_store.contains("ferry failures list --scheme orders\n"),
            "{default_store}"
        );
    }
}
