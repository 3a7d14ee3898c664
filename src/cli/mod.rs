//! The command line: parses arguments, sets up logging, and maps outcomes to exit codes
//! (0 ok, 1 finished with failed rows, 2 configuration or usage error, 3 aborted).

mod check;
mod demo;
mod output;

use crate::engine::{self, RunOptions};
use crate::error::exit;
use crate::http::HttpClient;
use crate::scheme;
use crate::store::{
    FailureLedger, FailureStatus, Mapping, MappingQuery, MappingStatus, MappingStore, Store, StoreError,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Declarative integration runner for ERP/CRM APIs", long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct StoreArg {
    /// Store location: a SQLite file path (default ./ferry.db) or `memory`.
    #[arg(long, env = "FERRY_STORE", default_value = "ferry.db")]
    store: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check scheme files offline and report every problem.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Also render the record templates over this sample (one source record as JSON, or
        /// a list of them) and report each field they read that it lacks.
        #[arg(long)]
        sample: Option<PathBuf>,
    },
    /// Probe a live source: read the first page of the newest and oldest windows, render every
    /// record as a run would and report what would fail; sends nothing to the target, writes no store.
    Check(check::CheckArgs),
    /// Run a scheme: read the source, transform, write the target.
    Run(RunArgs),
    /// Print the JSON Schema of the scheme language.
    Schema,
    /// Inspect and edit source-id → target-id mappings.
    Mappings {
        #[command(subcommand)]
        action: MappingsAction,
    },
    /// Inspect the failure ledger.
    Failures {
        #[command(subcommand)]
        action: FailuresAction,
    },
    /// Run the example schemes against the built-in simulators in a fresh directory: a first
    /// sync, a rerun that writes nothing, and a run after some source records changed.
    Demo {
        /// Keep the demo's files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Serve a built-in simulator until interrupted.
    Simulate(demo::SimulateArgs),
    /// Measure end-to-end throughput and peak memory against the simulator.
    Bench(demo::BenchArgs),
}

#[derive(Args)]
struct RunArgs {
    scheme: PathBuf,
    #[command(flatten)]
    store: StoreArg,
    /// Read, transform and plan, print the requests, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop after N records.
    #[arg(long)]
    limit: Option<u64>,
    /// Start of a backfill window (overrides the checkpoint), e.g. "2024-03-01 00:00:00".
    #[arg(long)]
    since: Option<String>,
    /// End of a backfill window (overrides now - lag).
    #[arg(long)]
    until: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// If another run of this scheme holds the run lock, wait for it instead of exiting.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
enum MappingsAction {
    /// List the mappings of a scheme.
    List {
        #[arg(long)]
        scheme: String,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Query mappings by source ids or by target ids.
    Get {
        #[arg(long)]
        scheme: String,
        #[arg(long = "source-id")]
        source_ids: Vec<String>,
        #[arg(long = "target-id")]
        target_ids: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Create a mapping, or change the target id of a source id.
    Set {
        #[arg(long)]
        scheme: String,
        #[arg(long = "source-id")]
        source_id: String,
        #[arg(long = "target-id")]
        target_id: String,
        /// Source object (default: the one this source id, or else the scheme's other
        /// mappings, already use).
        #[arg(long)]
        source_object: Option<String>,
        /// Target object (default: as for --source-object).
        #[arg(long)]
        target_object: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Delete a mapping (the next run creates the record again).
    Delete {
        #[arg(long)]
        scheme: String,
        #[arg(long = "source-id")]
        source_id: String,
        /// Source object (default: the one this source id is mapped under).
        #[arg(long)]
        source_object: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Subcommand)]
enum FailuresAction {
    /// List failed records.
    List {
        #[arg(long)]
        scheme: Option<String>,
        /// open, skipped or resolved (default: open).
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show one failure with its payload.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Retry failed records now: re-send them through the scheme (create or update as
    /// their mapping says), without reading the source. Success resolves them.
    Retry(RetryArgs),
    /// Mark open failures as skipped (they will not be fixed).
    Skip(CloseArgs),
    /// Mark open failures as resolved (fixed by hand in the target).
    Resolve(CloseArgs),
}

#[derive(Args)]
struct CloseArgs {
    /// Failure ids (see `ferry failures list`).
    ids: Vec<i64>,
    /// Every open failure of `--scheme`.
    #[arg(long, requires = "scheme")]
    all: bool,
    #[arg(long)]
    scheme: Option<String>,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
struct RetryArgs {
    /// The scheme file the failures belong to.
    scheme: PathBuf,
    /// Failure ids (see `ferry failures list`); an `uncertain` one is created again, so check
    /// the target first.
    #[arg(conflicts_with = "all")]
    ids: Vec<i64>,
    /// Every open failure of the scheme.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    store: StoreArg,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// If a run of this scheme holds the run lock, wait for it instead of exiting.
    #[arg(long)]
    wait: bool,
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    exit_quietly_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::CONFIG } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::ABORTED;
        }
    };
    runtime.block_on(dispatch(cli))
}

/// `println!` panics when the reader of standard output has gone away. That is not a bug
/// worth a backtrace: stop with the shell's code for it instead.
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(exit::BROKEN_PIPE);
        }
        default_hook(info)
    }));
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            // Structured logs go to journald or a collector, which should see each run's
            // start and summary; a person at a terminal has the printed summary.
            tracing_subscriber::EnvFilter::new(match format {
                LogFormat::Json => "warn,ferry=info",
                LogFormat::Text => "warn",
            })
        });
    // Colour codes only for a person at a terminal; journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

async fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files, format, sample } => validate(&files, format, sample.as_deref()),
        Command::Check(args) => check::check(args).await,
        Command::Run(args) => run(args, cli.log_format, None).await,
        Command::Schema => {
            match serde_json::to_string_pretty(&scheme::raw::json_schema()) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::ABORTED;
                }
            }
            exit::OK
        }
        Command::Mappings { action } => mappings(action).await,
        Command::Failures { action } => failures(action).await,
        Command::Demo { dir } => demo::demo(dir).await,
        Command::Simulate(args) => demo::simulate(args).await,
        Command::Bench(args) => demo::bench(args).await,
    }
}

fn validate(files: &[PathBuf], format: OutputFormat, sample: Option<&std::path::Path>) -> i32 {
    let mut all = Vec::new();
    let mut errors = 0;
    for file in files {
        let mut loaded = scheme::load_file(file);
        if let Some(sample) = sample {
            check::add_sample_diagnostics(&mut loaded, file, sample);
        }
        if loaded.has_errors() {
            errors += 1;
        }
        if format == OutputFormat::Text {
            for d in &loaded.diagnostics {
                eprint!("{}", d.render(&loaded.text));
                eprintln!();
            }
            let problems = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = loaded.diagnostics.len() - problems;
            if problems == 0 {
                println!(
                    "{}: ok{}",
                    file.display(),
                    if warnings > 0 {
                        format!(" ({warnings} warning(s))")
                    } else {
                        String::new()
                    }
                );
            } else {
                println!("{}: {problems} error(s), {warnings} warning(s)", file.display());
            }
        }
        all.extend(loaded.diagnostics);
    }
    if format == OutputFormat::Json {
        let report = serde_json::json!({"valid": errors == 0, "diagnostics": all});
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    if errors == 0 {
        exit::OK
    } else {
        exit::CONFIG
    }
}

/// The source and target objects a manual mapping change applies to. Objects the user
/// gave win; the rest come from the mapping this source id already has, or else from the
/// scheme's other mappings (a scheme reads one source object and writes one target object).
/// Guessing the scheme name instead would write a row no run ever reads.
async fn mapping_objects(
    store: &Store,
    scheme: &str,
    source_id: &str,
    source_object: Option<String>,
    target_object: Option<String>,
) -> Result<(String, String), i32> {
    if let (Some(source), Some(target)) = (&source_object, &target_object) {
        return Ok((source.clone(), target.clone()));
    }
    let query = |source_ids: Vec<String>, limit: i64| MappingQuery {
        scheme: Some(scheme.to_string()),
        source_ids,
        limit: Some(limit),
        ..MappingQuery::default()
    };
    let failed = |e: StoreError| {
        eprintln!("error: {e}");
        exit::ABORTED
    };
    let mut known = store
        .query_mappings(&query(vec![source_id.to_string()], 100))
        .await
        .map_err(failed)?;
    if let Some(source) = &source_object {
        known.retain(|m| &m.source_object == source);
    }
    if known.len() > 1 {
        let objects: Vec<&str> = known.iter().map(|m| m.source_object.as_str()).collect();
        eprintln!(
            "error: scheme {scheme} maps source id {source_id} under several source objects ({})\n  hint: pass --source-object to choose one",
            objects.join(", ")
        );
        return Err(exit::CONFIG);
    }
    let found = match known.pop() {
        Some(mapping) => Some(mapping),
        None => store.query_mappings(&query(Vec::new(), 1)).await.map_err(failed)?.pop(),
    };
    match found {
        Some(m) => Ok((
            source_object.unwrap_or(m.source_object),
            target_object.unwrap_or(m.target_object),
        )),
        None => {
            eprintln!(
                "error: scheme {scheme} has no mappings yet, so its source and target objects are not known\n  hint: pass --source-object and --target-object (the scheme's source.object and target.object)"
            );
            Err(exit::CONFIG)
        }
    }
}

async fn open_store(location: &str) -> Result<Store, i32> {
    Store::open(location).await.map_err(|e| {
        eprintln!("error: {e}");
        exit::CONFIG
    })
}

async fn run(args: RunArgs, log_format: LogFormat, replay: Option<engine::Replay>) -> i32 {
    let loaded = scheme::load_file(&args.scheme);
    for d in &loaded.diagnostics {
        eprint!("{}", d.render(&loaded.text));
    }
    let Some(plan) = loaded.plan else {
        eprintln!("error: {} is not valid; nothing was run", args.scheme.display());
        return exit::CONFIG;
    };
    let parse_opt = |text: &Option<String>, flag: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, i32> {
        match text {
            None => Ok(None),
            Some(t) => crate::window::parse_time(t, plan.timezone).map(Some).map_err(|e| {
                eprintln!("error: --{flag}: {e}");
                exit::CONFIG
            }),
        }
    };
    let (since, until) = match (parse_opt(&args.since, "since"), parse_opt(&args.until, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            eprintln!(
                "error: --since must be earlier than --until (got {since} and {until})\n  hint: swap the two times"
            );
            return exit::CONFIG;
        }
    }
    if (since.is_some() || until.is_some()) && plan.source.incremental.is_none() {
        eprintln!(
            "error: --since and --until choose incremental windows, but {} has no `source.incremental`\n  hint: leave them out to read the whole source",
            args.scheme.display()
        );
        return exit::CONFIG;
    }
    // A dry run must not create or migrate a store file.
    let store = if args.dry_run && !std::path::Path::new(&args.store.store).exists() {
        Store::memory()
    } else {
        match open_store(&args.store.store).await {
            Ok(store) => store,
            Err(code) => return code,
        }
    };
    let http = match HttpClient::new() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    // Two runs of one scheme against one store never overlap (a dry run writes nothing).
    let _lock = if args.dry_run {
        None
    } else {
        match crate::store::lock::acquire(&store, &plan.name, args.wait).await {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("error: {e}");
                return match e {
                    crate::store::lock::LockError::Held { .. } => exit::LOCKED,
                    crate::store::lock::LockError::Failed { .. } => exit::CONFIG,
                };
            }
        }
    };
    let show_progress = !args.quiet && !args.json && log_format == LogFormat::Text && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(output::ProgressBar::new()));
    let options = RunOptions {
        stop: Some(stop_on_signal()),
        dry_run: args.dry_run,
        limit: args.limit,
        since,
        until,
        now: None,
        progress: progress.clone().map(|p| p as Arc<dyn engine::Progress>),
        dry_run_sink: args
            .dry_run
            .then(|| Arc::new(output::print_planned) as engine::DryRunSink),
        replay_only: replay.is_some(),
        replay,
    };
    let backfill = |time: Option<chrono::DateTime<chrono::Utc>>| time.map(|t| t.to_rfc3339()).unwrap_or_default();
    tracing::info!(scheme = %plan.name, dry_run = args.dry_run, since = %backfill(since), until = %backfill(until), "run started");
    let result = engine::run(&plan, &store, &http, &options).await;
    if let Some(p) = progress {
        p.finish();
    }
    match result {
        Ok(summary) => {
            if summary.aborted.is_none() {
                tracing::info!(
                    scheme = %summary.scheme,
                    read = summary.read,
                    created = summary.created,
                    updated = summary.updated,
                    unchanged = summary.unchanged,
                    failed = summary.failed,
                    replayed = summary.replayed,
                    pages = summary.pages,
                    requests = summary.requests,
                    duration_ms = summary.duration_ms,
                    checkpoint = summary.checkpoint.as_deref().unwrap_or(""),
                    "run finished"
                );
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
            } else {
                print!("{}", output::summary_table(&summary));
            }
            if let Some(reason) = &summary.aborted {
                tracing::error!(scheme = %summary.scheme, reason = %reason, "run aborted");
                eprintln!("error: the run aborted: {reason}");
            }
            summary.exit_code()
        }
        Err(e) => {
            eprintln!("error: {}", plan.redactor.redact(&e.message));
            if e.kind == crate::error::ErrorKind::Store {
                exit::CONFIG
            } else {
                exit::ABORTED
            }
        }
    }
}

/// A switch that turns on at SIGINT or SIGTERM: the run then stops reading, finishes and
/// commits the writes in flight, and exits with code 3.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        eprintln!("stopping: finishing the writes in flight (send the signal again to kill)");
        let _ = sender.send(true);
        // A second signal ends the process at once.
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(exit::ABORTED);
    });
    receiver
}

async fn close_failures(args: CloseArgs, status: FailureStatus) -> i32 {
    if args.ids.is_empty() && !args.all {
        eprintln!("error: give failure ids, or --all with --scheme");
        return exit::CONFIG;
    }
    let store = match open_store(&args.store.store).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut ids = args.ids;
    if args.all {
        match store
            .list_failures(args.scheme.as_deref(), Some(FailureStatus::Open), i64::MAX)
            .await
        {
            Ok(open) => ids.extend(open.iter().map(|f| f.id)),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ABORTED;
            }
        }
    }
    match store.set_failure_status(&ids, status).await {
        Ok(changed) => {
            println!("{changed} failure(s) marked {}", format!("{status:?}").to_lowercase());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ABORTED
        }
    }
}

async fn mappings(action: MappingsAction) -> i32 {
    match action {
        MappingsAction::List {
            scheme,
            status,
            limit,
            json,
            store,
        } => {
            let status = match status.as_deref().map(str::parse::<MappingStatus>) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(_)) => {
                    eprintln!("error: --status must be one of created, updated, failed, pending");
                    return exit::CONFIG;
                }
            };
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let query = MappingQuery {
                scheme: Some(scheme),
                status,
                limit: Some(limit),
                ..MappingQuery::default()
            };
            let found = store.query_mappings(&query).await;
            if found.as_ref().is_ok_and(|rows| rows.len() as i64 == limit) {
                eprintln!("note: showing the first {limit} mappings; pass --limit to see more");
            }
            print_mappings(found, json)
        }
        MappingsAction::Get {
            scheme,
            source_ids,
            target_ids,
            json,
            store,
        } => {
            if source_ids.is_empty() && target_ids.is_empty() {
                eprintln!("error: give --source-id or --target-id (repeatable)");
                return exit::CONFIG;
            }
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let query = MappingQuery {
                scheme: Some(scheme),
                source_ids,
                target_ids,
                ..MappingQuery::default()
            };
            print_mappings(store.query_mappings(&query).await, json)
        }
        MappingsAction::Set {
            scheme,
            source_id,
            target_id,
            source_object,
            target_object,
            name,
            store,
        } => {
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let (source_object, target_object) =
                match mapping_objects(&store, &scheme, &source_id, source_object, target_object).await {
                    Ok(objects) => objects,
                    Err(code) => return code,
                };
            let now = chrono::Utc::now();
            let mapping = Mapping {
                source_object,
                target_object,
                scheme,
                source_id,
                source_name: name.clone(),
                target_id: Some(target_id),
                target_name: name,
                status: MappingStatus::Created,
                payload_hash: None,
                attempts: 0,
                last_error: None,
                first_synced_at: Some(now),
                last_synced_at: Some(now),
            };
            match store.upsert_mapping(&mapping).await {
                Ok(()) => {
                    println!(
                        "mapped {} → {}",
                        mapping.source_id,
                        mapping.target_id.unwrap_or_default()
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::ABORTED
                }
            }
        }
        MappingsAction::Delete {
            scheme,
            source_id,
            source_object,
            store,
        } => {
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let object = match source_object {
                Some(object) => object,
                None => match mapping_objects(&store, &scheme, &source_id, None, None).await {
                    Ok((object, _)) => object,
                    Err(code) => return code,
                },
            };
            match store.delete_mapping(&scheme, &object, &source_id).await {
                Ok(true) => {
                    println!("deleted the mapping of {source_id}");
                    exit::OK
                }
                Ok(false) => {
                    eprintln!("error: scheme {scheme} has no mapping for source id {source_id} (object {object})");
                    exit::ROWS_FAILED
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::ABORTED
                }
            }
        }
    }
}

fn print_mappings(found: Result<Vec<Mapping>, crate::store::StoreError>, json: bool) -> i32 {
    match found {
        Ok(rows) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
            } else {
                print!("{}", output::mappings_table(&rows));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ABORTED
        }
    }
}

async fn failures(action: FailuresAction) -> i32 {
    match action {
        FailuresAction::List {
            scheme,
            status,
            limit,
            json,
            store,
        } => {
            let status = match status.parse::<FailureStatus>() {
                Ok(s) => s,
                Err(_) => {
                    eprintln!("error: --status must be one of open, skipped, resolved");
                    return exit::CONFIG;
                }
            };
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.list_failures(scheme.as_deref(), Some(status), limit).await {
                Ok(rows) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
                    } else {
                        print!("{}", output::failures_table(&rows));
                    }
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::ABORTED
                }
            }
        }
        FailuresAction::Retry(args) => {
            if args.ids.is_empty() && !args.all {
                eprintln!("error: name the failures to retry (ids from `ferry failures list`), or pass --all");
                return exit::CONFIG;
            }
            let replay = if args.all {
                engine::Replay::AllOpen
            } else {
                engine::Replay::Ids(args.ids)
            };
            let run_args = RunArgs {
                scheme: args.scheme,
                store: args.store,
                dry_run: false,
                limit: None,
                since: None,
                until: None,
                json: args.json,
                quiet: true,
                wait: args.wait,
            };
            run(run_args, LogFormat::Text, Some(replay)).await
        }
        FailuresAction::Skip(args) => close_failures(args, FailureStatus::Skipped).await,
        FailuresAction::Resolve(args) => close_failures(args, FailureStatus::Resolved).await,
        FailuresAction::Show { id, json, store } => {
            let store = match open_store(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.failure(id).await {
                Ok(Some(f)) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&f).unwrap_or_default());
                    } else {
                        print!("{}", output::failure_detail(&f));
                    }
                    exit::OK
                }
                Ok(None) => {
                    eprintln!("error: no failure with id {id}; list them with `ferry failures list`");
                    exit::ROWS_FAILED
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::ABORTED
                }
            }
        }
    }
}
