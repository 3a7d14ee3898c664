//! `ferry run --metrics-file PATH`: a Prometheus textfile for node_exporter's textfile
//! collector, written after every run (ok, failed, aborted, stopped, unreachable, refused
//! by the lock) in the classic text format (encoded by the `prometheus` crate).
//!
//! - **Atomic**: written to `PATH.tmp.<pid>` beside it (node_exporter reads only `*.prom`),
//!   then renamed over `PATH`, so the collector never reads half a file.
//! - **Nothing is lost between runs**: the previous file is read back. Series of other
//!   schemes sharing the file are kept as they were (a lock file `PATH.lock` serialises
//!   writers); counters (`_total`) continue from the previous values (they restart from
//!   zero when the file is removed, which Prometheus treats as a counter reset); the last
//!   success time is the newest of the previous file's and the store's last `ok` run, so
//!   a failed or aborted run never hides when the scheme last succeeded.
//! - Gauges `ferry_failures_open` and `ferry_checkpoint_lag_seconds` come from the store
//!   after the run; when it cannot be read their previous values stay.

use crate::engine::Summary;
use crate::store::{CheckpointStore, FailureLedger, RunHistory, Store};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a run ended, as the `outcome` label says it: the run history's outcomes, plus
/// `locked` (another run held the lock) and `error` (the store failed).
pub type OutcomeLabel = &'static str;

/// What the textfile holds about one scheme.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemeMetrics {
    pub last_success: Option<f64>,
    /// Per outcome, when a run last ended with it.
    pub last_run: BTreeMap<String, f64>,
    pub last_exit_code: Option<f64>,
    pub duration: Option<f64>,
    /// Counters, by outcome.
    pub runs: BTreeMap<String, f64>,
    pub records: BTreeMap<String, f64>,
    pub source_requests: f64,
    pub target_requests: f64,
    pub failures_open: Option<f64>,
    pub checkpoint_lag: Option<f64>,
}

/// The record outcomes counted in `ferry_records_total`, as named in the summary.
const RECORD_OUTCOMES: [&str; 8] = [
    "read",
    "created",
    "updated",
    "unchanged",
    "duplicates",
    "skipped",
    "failed",
    "deleted",
];

/// One run to add to the file.
pub struct RunReport<'a> {
    pub scheme: &'a str,
    pub outcome: OutcomeLabel,
    pub exit_code: i32,
    pub summary: Option<&'a Summary>,
    pub store: Option<&'a Store>,
    pub now: DateTime<Utc>,
}

/// Adds `report` to the textfile at `path`; an error says what failed.
pub async fn write(path: &Path, report: &RunReport<'_>) -> Result<(), String> {
    let lock_path = sibling(path, ".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // Writers of one file take turns (a run takes milliseconds here).
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(format!("cannot read the previous {}: {e}", path.display())),
    };
    let mut all = previous;
    let entry = all.entry(report.scheme.to_string()).or_default();
    let from_store = StoreFacts::read(report).await;
    update(entry, report, &from_store);
    let text = encode(&all)?;
    let temporary = sibling(path, &format!(".tmp.{}", std::process::id()));
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot rename {} to {}: {e}", temporary.display(), path.display())
    })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the store says after the run (each `None` when it could not be read).
#[derive(Default)]
pub struct StoreFacts {
    pub last_success: Option<DateTime<Utc>>,
    pub failures_open: Option<i64>,
    pub checkpoint: Option<DateTime<Utc>>,
    /// The store answered at all (a missing checkpoint then means "none").
    pub answered: bool,
}

impl StoreFacts {
    async fn read(report: &RunReport<'_>) -> StoreFacts {
        let Some(store) = report.store else {
            return StoreFacts::default();
        };
        let scheme = report.scheme;
        let last_success = store
            .latest_runs(Some(scheme), Some(crate::engine::Outcome::Ok.as_str()))
            .await
            .ok()
            .and_then(|runs| runs.into_iter().next())
            .and_then(|run| run.finished_at);
        let failures_open = store.count_open_failures(scheme).await.ok();
        let checkpoint = store.checkpoint(scheme, crate::engine::CHECKPOINT_KEY).await;
        StoreFacts {
            last_success,
            failures_open,
            answered: checkpoint.is_ok(),
            checkpoint: checkpoint
                .ok()
                .flatten()
                .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Adds one run to a scheme's metrics (pure).
pub fn update(metrics: &mut SchemeMetrics, report: &RunReport<'_>, store: &StoreFacts) {
    let now = seconds(report.now);
    metrics.last_run.insert(report.outcome.to_string(), now);
    *metrics.runs.entry(report.outcome.to_string()).or_default() += 1.0;
    metrics.last_exit_code = Some(f64::from(report.exit_code));
    let mut success = metrics.last_success;
    if let Some(at) = store.last_success {
        success = Some(success.map_or(seconds(at), |s| s.max(seconds(at))));
    }
    if report.outcome == crate::engine::Outcome::Ok.as_str() {
        success = Some(now);
    }
    metrics.last_success = success;
    if let Some(summary) = report.summary {
        metrics.duration = Some(summary.duration_ms as f64 / 1000.0);
        let counts = [
            summary.read,
            summary.created,
            summary.updated,
            summary.unchanged,
            summary.duplicates,
            summary.skipped,
            summary.failed,
            summary.deleted,
        ];
        for (outcome, count) in RECORD_OUTCOMES.iter().zip(counts) {
            *metrics.records.entry(outcome.to_string()).or_default() += count as f64;
        }
        metrics.source_requests += summary.source_requests as f64;
        metrics.target_requests += summary.requests as f64;
    }
    if let Some(open) = store.failures_open {
        metrics.failures_open = Some(open as f64);
    }
    if store.answered {
        metrics.checkpoint_lag = store
            .checkpoint
            .map(|checkpoint| (report.now - checkpoint).num_milliseconds() as f64 / 1000.0);
    }
}

/// Reads back a file this module wrote (unknown lines are ignored).
pub fn parse(text: &str) -> BTreeMap<String, SchemeMetrics> {
    let mut all: BTreeMap<String, SchemeMetrics> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let Some(scheme) = labels.get("scheme") else {
            continue;
        };
        let metrics = all.entry(scheme.clone()).or_default();
        let outcome = labels.get("outcome").cloned().unwrap_or_default();
        match name.as_str() {
            "ferry_last_success_timestamp_seconds" => metrics.last_success = Some(value),
            "ferry_last_run_timestamp_seconds" => {
                metrics.last_run.insert(outcome, value);
            }
            "ferry_last_run_exit_code" => metrics.last_exit_code = Some(value),
            "ferry_run_duration_seconds" => metrics.duration = Some(value),
            "ferry_runs_total" => {
                metrics.runs.insert(outcome, value);
            }
            "ferry_records_total" => {
                metrics.records.insert(outcome, value);
            }
            "ferry_source_requests_total" => metrics.source_requests = value,
            "ferry_target_requests_total" => metrics.target_requests = value,
            "ferry_failures_open" => metrics.failures_open = Some(value),
            "ferry_checkpoint_lag_seconds" => metrics.checkpoint_lag = Some(value),
            _ => {}
        }
    }
    all
}

/// `name{a="x",b="y"} value` → its parts.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some((
                name.to_string(),
                BTreeMap::new(),
                value.split_whitespace().next()?.parse().ok()?,
            ));
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    let after_labels = loop {
        while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
            chars.next();
        }
        let (start, c) = chars.next()?;
        if c == '}' {
            break start + 1;
        }
        let mut key = String::from(c);
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key.trim().to_string(), value);
    };
    let value = rest[after_labels..].split_whitespace().next()?.parse().ok()?;
    Some((name.to_string(), labels, value))
}

/// The textfile for every scheme's metrics.
pub fn encode(all: &BTreeMap<String, SchemeMetrics>) -> Result<String, String> {
    use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};
    let failed = |e: prometheus::Error| format!("cannot encode the metrics: {e}");
    let registry = Registry::new();
    let family = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, String> {
        let family = GaugeVec::new(Opts::new(name, help), labels).map_err(failed)?;
        registry.register(Box::new(family.clone())).map_err(failed)?;
        Ok(family)
    };
    // Counters continue from the previous file, so they are set rather than incremented:
    // the crate's counter types only count up from zero, so these are counter families
    // built on gauges with the counter type declared.
    let counter = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, String> {
        let family = GaugeVec::new(Opts::new(name, help), labels).map_err(failed)?;
        registry.register(Box::new(AsCounter(family.clone()))).map_err(failed)?;
        Ok(family)
    };
    let last_success = family(
        "ferry_last_success_timestamp_seconds",
        "When a run of the scheme last ended with outcome ok (Unix time).",
        &["scheme"],
    )?;
    let last_run = family(
        "ferry_last_run_timestamp_seconds",
        "When a run of the scheme last ended with this outcome (Unix time).",
        &["scheme", "outcome"],
    )?;
    let exit_code = family(
        "ferry_last_run_exit_code",
        "The exit code of the scheme's last run (see the README's exit-code table).",
        &["scheme"],
    )?;
    let duration = family(
        "ferry_run_duration_seconds",
        "How long the scheme's last run took.",
        &["scheme"],
    )?;
    let runs = counter(
        "ferry_runs_total",
        "Runs of the scheme, by outcome.",
        &["scheme", "outcome"],
    )?;
    let records = counter(
        "ferry_records_total",
        "Records of the scheme's runs, by what happened to them (read, created, updated, unchanged, duplicates, skipped, failed, deleted).",
        &["scheme", "outcome"],
    )?;
    let source_requests = counter(
        "ferry_source_requests_total",
        "Requests sent to the scheme's source, retries included.",
        &["scheme"],
    )?;
    let target_requests = counter(
        "ferry_target_requests_total",
        "Requests sent to the scheme's target, retries included.",
        &["scheme"],
    )?;
    let failures_open = family(
        "ferry_failures_open",
        "Open rows of the scheme's failure ledger after its last run.",
        &["scheme"],
    )?;
    let lag = family(
        "ferry_checkpoint_lag_seconds",
        "How far the scheme's incremental checkpoint was behind the time of its last run.",
        &["scheme"],
    )?;
    for (scheme, m) in all {
        let s = scheme.as_str();
        if let Some(v) = m.last_success {
            last_success.with_label_values(&[s]).set(v);
        }
        for (outcome, v) in &m.last_run {
            last_run.with_label_values(&[s, outcome.as_str()]).set(*v);
        }
        if let Some(v) = m.last_exit_code {
            exit_code.with_label_values(&[s]).set(v);
        }
        if let Some(v) = m.duration {
            duration.with_label_values(&[s]).set(v);
        }
        for (outcome, v) in &m.runs {
            runs.with_label_values(&[s, outcome.as_str()]).set(*v);
        }
        for (outcome, v) in &m.records {
            records.with_label_values(&[s, outcome.as_str()]).set(*v);
        }
        source_requests.with_label_values(&[s]).set(m.source_requests);
        target_requests.with_label_values(&[s]).set(m.target_requests);
        if let Some(v) = m.failures_open {
            failures_open.with_label_values(&[s]).set(v);
        }
        if let Some(v) = m.checkpoint_lag {
            lag.with_label_values(&[s]).set(v);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .map_err(failed)?;
    String::from_utf8(out).map_err(|e| format!("cannot encode the metrics: {e}"))
}

/// A gauge family exposed with the counter type.
#[derive(Clone)]
struct AsCounter(prometheus::GaugeVec);

impl prometheus::core::Collector for AsCounter {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.0.collect();
        for family in &mut families {
            family.set_field_type(prometheus::proto::MetricType::COUNTER);
            for metric in family.mut_metric() {
                let value = metric.get_gauge().get_value();
                let mut counter = prometheus::proto::Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
                metric.set_gauge(Default::default());
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(created: u64, failed: u64) -> Summary {
        Summary {
            scheme: "orders".into(),
            read: created + failed,
            created,
            failed,
            requests: 3,
            source_requests: 2,
            duration_ms: 1500,
            ..Summary::default()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_counters_go_on() {
        let ok = summary(10, 0);
        let mut all = BTreeMap::new();
        let report = |outcome, summary, now| RunReport {
            scheme: "orders",
            outcome,
            exit_code: 0,
            summary,
            store: None,
            now,
        };
        update(
            all.entry("orders".to_string()).or_default(),
            &report("ok", Some(&ok), at(1_000)),
            &StoreFacts::default(),
        );
        // Another scheme in the same file is kept as it is.
        all.entry("invoices".to_string()).or_default().last_success = Some(5.0);
        let text = encode(&all).unwrap();
        assert!(
            text.contains("# TYPE ferry_records_total counter"),
            "counters keep their type: {text}"
        );
        assert!(
            text.contains("ferry_last_success_timestamp_seconds{scheme=\"orders\"} 1000"),
            "{text}"
        );

        let mut again = parse(&text);
        assert_eq!(again, all, "the file reads back as written");
        let failed = summary(0, 4);
        update(
            again.get_mut("orders").unwrap(),
            &report("failed_rows", Some(&failed), at(2_000)),
            &StoreFacts::default(),
        );
        let text = encode(&again).unwrap();
        assert!(
            text.contains("ferry_last_success_timestamp_seconds{scheme=\"orders\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("ferry_last_run_timestamp_seconds{outcome=\"failed_rows\",scheme=\"orders\"} 2000"),
            "{text}"
        );
        assert!(
            text.contains("ferry_last_run_timestamp_seconds{outcome=\"ok\",scheme=\"orders\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("ferry_records_total{outcome=\"created\",scheme=\"orders\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("ferry_records_total{outcome=\"failed\",scheme=\"orders\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ferry_source_requests_total{scheme=\"orders\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ferry_target_requests_total{scheme=\"orders\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("ferry_last_success_timestamp_seconds{scheme=\"invoices\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn the_store_supplies_a_success_the_file_lost_and_the_checkpoint_lag() {
        let mut metrics = SchemeMetrics::default();
        let facts = StoreFacts {
            last_success: Some(at(900)),
            failures_open: Some(3),
            checkpoint: Some(at(400)),
            answered: true,
        };
        let report = RunReport {
            scheme: "orders",
            outcome: "aborted",
            exit_code: 3,
            summary: None,
            store: None,
            now: at(1_000),
        };
        update(&mut metrics, &report, &facts);
        assert_eq!(metrics.last_success, Some(900.0));
        assert_eq!(metrics.failures_open, Some(3.0));
        assert_eq!(metrics.checkpoint_lag, Some(600.0));
        assert_eq!(metrics.last_exit_code, Some(3.0));
    }

    #[test]
    fn label_values_with_quotes_read_back() {
        let parsed = parse_sample(r#"ferry_failures_open{scheme="a \"b\" \\ c"} 7"#).unwrap();
        assert_eq!(parsed.1["scheme"], r#"a "b" \ c"#);
        assert_eq!(parsed.2, 7.0);
        assert_eq!(parse_sample("garbage"), None);
    }
}
