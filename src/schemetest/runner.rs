//! Runs one test file: the scheme, loaded with the test's stand-in environment only, runs
//! twice in a fresh SQLite store against [`super::server`]s that replay the recording; then
//! each run's requests, exit code and store are compared with the test. Recording runs the
//! same way against the built-in simulators and writes the test file.

use super::format::{Exchange, LedgerExpect, MappingExpect, RunSpec, StoreExpect, TestFile, TestSpec};
use super::server::{self, Ledger, Mode, SharedLedger};
use crate::diag::Diagnostic;
use crate::engine::{self, RunOptions};
use crate::error::exit;
use crate::http::HttpClient;
use crate::scheme::{self, Plan};
use crate::sim::SimHandle;
use crate::store::{CheckpointStore, FailureLedger, MappingQuery, MappingStore, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How one test went.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub file: String,
    pub scheme: String,
    pub passed: bool,
    /// What did not hold, one message each (a message may span lines).
    pub problems: Vec<String>,
    pub duration_ms: u64,
}

/// A test that cannot run: its file or its scheme is invalid (exit 2).
#[derive(Debug)]
pub struct Invalid {
    pub diagnostics: Vec<Diagnostic>,
    /// The text the diagnostics point into.
    pub text: String,
}

/// Loads the scheme of `test` with the test's stand-ins as the whole environment.
pub fn load_plan(test: &TestFile) -> Result<Plan, Invalid> {
    let env: BTreeMap<String, String> = test.spec.env.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    let lookup = |name: &str| env.get(name).cloned();
    let loaded = scheme::load_file_with(
        &test.scheme_path,
        &scheme::LoadOptions {
            env: &lookup,
            missing_env: scheme::MissingEnv::Error,
        },
    );
    match loaded.plan {
        Some(plan) => Ok(plan),
        None => Err(Invalid {
            diagnostics: loaded.diagnostics.into_iter().filter(|d| d.is_error()).collect(),
            text: loaded.text,
        }),
    }
}

/// Splits a base URL into its origin and path (`http://h:1/k3cloud/` → (`http://h:1`, `/k3cloud`)).
fn split_base(base: &str) -> (String, String) {
    match url::Url::parse(base) {
        Ok(url) => {
            let origin = url.origin().ascii_serialization();
            (origin, url.path().trim_end_matches('/').to_string())
        }
        Err(_) => (base.to_string(), String::new()),
    }
}

/// Points every connection of `plan` at a server started by `make` (keeping each base URL's path).
async fn serve_connections(
    plan: &mut Plan,
    make: impl Fn(&str, &scheme::model::ConnectionPlan) -> Mode,
    ledger: &SharedLedger,
) -> std::io::Result<Vec<SimHandle>> {
    let mut handles = Vec::new();
    for (name, connection) in plan.connections.iter_mut() {
        let (_, path) = split_base(&connection.base_url);
        let mode = make(name, connection);
        let handle = server::start(name, &path, mode, Arc::clone(ledger)).await?;
        let trailing = if connection.base_url.ends_with('/') { "/" } else { "" };
        connection.base_url = format!("{}{path}{trailing}", handle.base_url());
        handles.push(handle);
    }
    Ok(handles)
}

/// What a run left in the store, as a test file writes it.
async fn store_state(store: &Store, scheme_name: &str) -> Result<StoreExpect, String> {
    let query = MappingQuery {
        scheme: Some(scheme_name.to_string()),
        ..MappingQuery::default()
    };
    let mut mappings: Vec<MappingExpect> = store
        .query_mappings(&query)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|m| MappingExpect {
            source_id: m.source_id,
            target_id: m.target_id,
            status: m.status.to_string(),
        })
        .collect();
    mappings.sort();
    let mut ledger: Vec<LedgerExpect> = store
        .list_failures(Some(scheme_name), None, 100_000)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|f| LedgerExpect {
            source_id: f.source_id,
            error_class: f.error_class,
        })
        .collect();
    ledger.sort();
    let checkpoint = store
        .checkpoint(scheme_name, engine::CHECKPOINT_KEY)
        .await
        .map_err(|e| e.to_string())?;
    Ok(StoreExpect {
        checkpoint,
        mappings,
        ledger,
    })
}

/// Every difference between the store a test expects and the one found.
fn store_differences(expected: &StoreExpect, found: &StoreExpect) -> Vec<String> {
    let mut out = Vec::new();
    if expected.checkpoint != found.checkpoint {
        out.push(format!(
            "checkpoint: expected {:?}, found {:?}",
            expected.checkpoint, found.checkpoint
        ));
    }
    for wanted in &expected.mappings {
        if !found.mappings.contains(wanted) {
            let actual = found.mappings.iter().find(|m| m.source_id == wanted.source_id);
            out.push(match actual {
                Some(actual) => format!(
                    "mapping {}: expected {} → {}, found {} → {}",
                    wanted.source_id,
                    wanted.status,
                    wanted.target_id.as_deref().unwrap_or("-"),
                    actual.status,
                    actual.target_id.as_deref().unwrap_or("-")
                ),
                None => format!("mapping {}: expected, not in the store", wanted.source_id),
            });
        }
    }
    for actual in &found.mappings {
        if !expected.mappings.iter().any(|m| m.source_id == actual.source_id) {
            out.push(format!("mapping {}: in the store, not expected", actual.source_id));
        }
    }
    for wanted in &expected.ledger {
        if !found.ledger.contains(wanted) {
            out.push(format!(
                "ledger row {} ({}): expected, not in the store",
                wanted.source_id, wanted.error_class
            ));
        }
    }
    for actual in &found.ledger {
        if !expected.ledger.contains(actual) {
            out.push(format!(
                "ledger row {} ({}): in the store, not expected",
                actual.source_id, actual.error_class
            ));
        }
    }
    out
}

/// Runs `plan` once at `now`; the exit code and the number of target requests.
async fn run_once(plan: &Plan, store: &Store, http: &HttpClient, now: DateTime<Utc>) -> (i32, u64, Option<String>) {
    let options = RunOptions {
        now: Some(now),
        ..RunOptions::default()
    };
    match engine::run(plan, store, http, &options).await {
        Ok(summary) => (summary.exit_code(), summary.requests, summary.aborted.clone()),
        Err(e) => {
            let code = if e.kind == crate::error::ErrorKind::Store {
                exit::CONFIG
            } else {
                exit::ABORTED
            };
            (code, 0, Some(e.to_string()))
        }
    }
}

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
async fn fresh_store() -> Result<(tempfile::TempDir, Store), String> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-test-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let path = dir.path().join("ferry.db");
    let store = Store::open(&path.display().to_string())
        .await
        .map_err(|e| format!("cannot open the test store: {e}"))?;
    Ok((dir, store))
}

/// Runs `test` and reports; `tweak` may change the plan first (tests use it to break a signer).
pub async fn run_test(test: &TestFile, tweak: &dyn Fn(&mut Plan)) -> Result<TestReport, Invalid> {
    let started = Instant::now();
    let mut plan = load_plan(test)?;
    tweak(&mut plan);
    let mut report = TestReport {
        file: test.path.display().to_string(),
        scheme: plan.name.clone(),
        passed: false,
        problems: Vec::new(),
        duration_ms: 0,
    };
    if test.spec.runs.is_empty() {
        report
            .problems
            .push("nothing recorded yet (`runs: []`): run `ferry test --record` on this file".into());
        return Ok(report);
    }
    let has_timeout = test
        .spec
        .runs
        .iter()
        .any(|run| run.faults.iter().any(|f| f.kind == super::format::FaultKind::Timeout));
    if has_timeout {
        for connection in plan.connections.values_mut() {
            connection.timeout = std::time::Duration::from_secs(2);
        }
    }
    let ledger: SharedLedger = Arc::new(Mutex::new(Ledger::default()));
    let volatile_of = |connector: &str| -> Vec<String> {
        let mut rules: Vec<String> = crate::sim::signatures::volatile_fields(connector)
            .iter()
            .map(|s| s.to_string())
            .collect();
        rules.extend(test.spec.volatile.iter().cloned());
        rules
    };
    let settings: BTreeMap<String, serde_json::Value> = plan
        .raw
        .connections
        .iter()
        .map(|(name, raw)| (name.clone(), raw.settings.clone().unwrap_or_default()))
        .collect();
    let handles = match serve_connections(
        &mut plan,
        |name, connection| Mode::Replay {
            volatile: volatile_of(connection.connector),
            expiry_fields: crate::sim::signatures::expiry_fields(connection.connector),
            verifier: crate::sim::signatures::verifier_for(
                connection.connector,
                settings.get(name).unwrap_or(&serde_json::Value::Null),
            ),
        },
        &ledger,
    )
    .await
    {
        Ok(handles) => handles,
        Err(e) => {
            report.problems.push(format!("cannot start the replay servers: {e}"));
            return Ok(report);
        }
    };
    let outcome = replay_runs(&plan, &test.spec, &ledger).await;
    for handle in handles {
        handle.shutdown().await;
    }
    match outcome {
        Ok(problems) => report.problems = problems,
        Err(e) => report.problems.push(e),
    }
    report.passed = report.problems.is_empty();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn replay_runs(plan: &Plan, spec: &TestSpec, ledger: &SharedLedger) -> Result<Vec<String>, String> {
    let (_dir, store) = fresh_store().await?;
    let http = HttpClient::new().map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    // Run two retries what run one left in the failure ledger; only a clean run one
    // promises a silent rerun.
    let mut ledger_after_first = 0;
    for (index, run) in spec.runs.iter().enumerate() {
        let label = format!("run {}", index + 1);
        server::lock(ledger).start_run(run.exchanges.clone(), run.faults.clone(), Some(run.now));
        let (code, target_requests, aborted) = run_once(plan, &store, &http, run.now).await;
        problems.extend(request_problems(&server::lock(ledger), &label));
        if code != run.exit {
            let why = aborted.map(|a| format!(" ({a})")).unwrap_or_default();
            problems.push(format!("{label}: exit code: expected {}, got {code}{why}", run.exit));
        }
        if index == 0 {
            ledger_after_first = store.count_open_failures(&plan.name).await.map_err(|e| e.to_string())?;
        }
        if index == 1 && !spec.change_between_runs && ledger_after_first == 0 && target_requests > 0 {
            problems.push(format!(
                "{label}: sent {target_requests} write request(s) to the target, but the source did not change (a rerun must write nothing)"
            ));
        }
        if let Some(expected) = &run.store {
            let found = store_state(&store, &plan.name).await?;
            for difference in store_differences(expected, &found) {
                problems.push(format!("{label}: store: {difference}"));
            }
        }
    }
    Ok(problems)
}

/// What a run's requests got wrong: the servers' problems, then the recorded requests not sent.
fn request_problems(ledger: &Ledger, label: &str) -> Vec<String> {
    let mut problems: Vec<String> = ledger.problems.iter().map(|p| format!("{label}: {p}")).collect();
    for unused in ledger.unused() {
        problems.push(format!(
            "{label}: {} {}: recorded but not sent",
            unused.connection,
            unused.request.headline()
        ));
    }
    problems
}

/// How many source records a recording holds.
pub const RECORDED_RECORDS: u64 = 4;

/// Runs the scheme of `test` twice against its built-in simulators (with the source changed
/// between runs when the test says so) and returns the test with both runs filled in,
/// secrets replaced by the test's stand-ins.
pub async fn record(test: &TestFile) -> Result<TestSpec, String> {
    let stand_in_plan = load_plan(test).map_err(|invalid| {
        invalid
            .diagnostics
            .iter()
            .map(|d| d.render(&invalid.text))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let sims = super::record::start_for(&stand_in_plan).await?;
    let sim_env = sims.env();
    let text = std::fs::read_to_string(&test.scheme_path).map_err(|e| e.to_string())?;
    let loaded = scheme::load_str(&text, &test.scheme_path.display().to_string(), &|name| {
        sim_env.get(name).cloned().or_else(|| {
            // Variables the simulators do not set keep the test's stand-in.
            test.spec.env.get(name).map(|v| v.text())
        })
    });
    let Some(mut plan) = loaded.plan else {
        let text: Vec<String> = loaded.diagnostics.iter().map(|d| d.render(&loaded.text)).collect();
        return Err(text.join("\n"));
    };
    let ledger: SharedLedger = Arc::new(Mutex::new(Ledger::default()));
    let client = reqwest::Client::new();
    let handles = serve_connections(
        &mut plan,
        |_, connection| Mode::Record {
            upstream: split_base(&connection.base_url).0,
            client: client.clone(),
        },
        &ledger,
    )
    .await
    .map_err(|e| format!("cannot start the recording servers: {e}"))?;
    let (_dir, store) = fresh_store().await?;
    let http = HttpClient::new().map_err(|e| e.to_string())?;
    let first_now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let mut runs = Vec::new();
    for index in 0..2 {
        if index == 1 && test.spec.change_between_runs {
            sims.change_one();
        }
        let now = first_now + chrono::Duration::minutes(5 * index);
        server::lock(&ledger).start_run(Vec::new(), Vec::new(), None);
        let (code, _, _) = run_once(&plan, &store, &http, now).await;
        let exchanges: Vec<Exchange> = server::lock(&ledger).recorded.clone();
        runs.push(RunSpec {
            now,
            exit: code,
            faults: Vec::new(),
            exchanges,
            store: Some(store_state(&store, &plan.name).await?),
        });
    }
    for handle in handles {
        handle.shutdown().await;
    }
    sims.shutdown().await;
    // Redact at record time: every value the simulators' environment gave becomes the
    // test's stand-in for it, so no credential is written and replay sends the same text.
    let mut replacements: Vec<(String, String)> = sim_env
        .iter()
        .filter(|(name, value)| !name.ends_with("_URL") && value.len() >= 4)
        .filter_map(|(name, value)| test.spec.env.get(name).map(|stand_in| (value.clone(), stand_in.text())))
        .filter(|(value, stand_in)| value != stand_in)
        .collect();
    replacements.sort_by_key(|(secret, _)| std::cmp::Reverse(secret.len()));
    let mut spec = test.spec.clone();
    spec.runs = runs;
    let mut value = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    super::record::replace_strings(&mut value, &replacements);
    // Nothing the simulators were given as a credential may be left, even one the test
    // has no stand-in for.
    let written = value.to_string();
    if let Some((name, _)) = sim_env
        .iter()
        .filter(|(name, secret)| !name.ends_with("_URL") && secret.len() >= 4)
        .find(|(_, secret)| written.contains(secret.as_str()))
    {
        return Err(format!(
            "the recording would hold the value of {name}; give it a stand-in under `env:` and record again"
        ));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}
