//! The command line: parses arguments, sets up logging, and maps outcomes to exit codes
//! (0 ok, 1 finished with failed rows, 2 configuration or usage error, 3 aborted, 4 the run
//! lock is held, 75 a peer was unreachable and nothing was written; 130/143 stopped by
//! SIGINT/SIGTERM; see [`crate::error::exit`]).

mod alert;
mod bench_receive;
mod check;
mod checkpoint;
mod demo;
mod env;
mod explain;
mod field_mappings;
mod inbox;
mod init;
mod logging;
mod metrics;
mod output;
mod project;
mod runs;
mod serve;
mod stores;
mod systemd;
mod test;

pub use init::test_file as init_test_file;

use crate::diag as scheme_diag;
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
    /// Where logs go: `text` or `json` lines on stderr, or `journald` (the systemd journal,
    /// with fields such as FERRY_SCHEME; text on stderr when there is no journal).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
    Journald,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

/// How a command prints its result. `--format` is the one spelling every command takes;
/// `--json` stays as a short form so existing scripts keep working.
#[derive(Args, Clone, Copy)]
struct FormatArg {
    /// Output format: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

impl FormatArg {
    fn is_json(self) -> bool {
        self.json || self.format == OutputFormat::Json
    }
}

/// Where `${NAME}` references in a scheme find their values.
#[derive(Args, Clone, Default)]
struct EnvArg {
    /// Also read variables from this file of `KEY=VALUE` lines (dotenv style); variables
    /// exported in the environment take precedence.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct StoreArg {
    /// Store location: a SQLite file path (default ./ferry.db), a PostgreSQL URL
    /// (postgres://user@host/db), or `memory`.
    #[arg(long, env = "FERRY_STORE", default_value = "ferry.db")]
    store: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check scheme files offline and report every problem.
    #[command(after_help = "Examples:
  ferry validate schemes/*.yaml
  ferry validate schemes/orders.yaml --no-env --strict
  ferry validate schemes/orders.yaml --sample record.json --format json")]
    Validate(ValidateArgs),
    /// Probe a live source: read the first page of the newest and oldest windows, render every
    /// record as a run would and report what would fail; sends nothing to the target, writes no store.
    #[command(after_help = "Examples:
  ferry check schemes/orders.yaml
  ferry check schemes/orders.yaml --since '2024-03-01 00:00:00' --format json")]
    Check(check::CheckArgs),
    /// Run a scheme: read the source, transform, write the target.
    #[command(after_help = "Examples:
  ferry run schemes/orders.yaml
  ferry run schemes/orders.yaml --dry-run --limit 10
  ferry run schemes/orders.yaml --since '2024-03-01 00:00:00' --until '2024-03-08 00:00:00'
  ferry run schemes/orders.yaml --ids SO-1001 SO-1002 --force     # resync these records now
  ferry run schemes/orders.yaml --store /var/lib/ferry/ferry.db --quiet --metrics-file /var/lib/node_exporter/textfile/ferry.prom
  ferry run schemes/orders.yaml --store postgres://ferry@db.internal/ferry   (or FERRY_STORE=postgres://…)
  ferry run schemes/            (a project: every scheme in the directory, in dependency order)
  ferry run project.yaml        (a project file: `schemes: [customers.yaml, orders.yaml]`)

The store keeps mappings, checkpoints, the failure ledger and the run history: a SQLite
file (default ./ferry.db), or PostgreSQL when several hosts share one. Exit codes: 0 ok,
1 records failed (in the ledger), 2 configuration, 3 aborted, 4 locked, 75 unreachable
(nothing written; try again later), 130/143 stopped by SIGINT/SIGTERM.")]
    Run(RunArgs),
    /// Print the JSON Schema of the scheme language.
    #[command(after_help = "Examples:
  ferry schema > schema/scheme.schema.json")]
    Schema,
    /// Start a scheme: write SCHEME.yaml (generic, or for built-in connectors) and its test
    /// file, both valid from the start.
    #[command(after_help = "Examples:
  ferry init                                    # schemes/my-scheme.yaml: HTTP source → HTTP target
  ferry init orders --connector guanyi --target-connector kingdee-k3cloud
  ferry init --dir ci/schemes --force")]
    Init(init::InitArgs),
    /// Run hermetic scheme tests: replay each test file's recorded answers (no network, no
    /// environment), run its scheme twice, and check requests, store and exit codes.
    #[command(after_help = "Examples:
  ferry test                                   # every schemes/**/*.test.yaml
  ferry test schemes/tests/orders.test.yaml --junit report.xml
  ferry test schemes/tests/orders.test.yaml --record   # fill it from the built-in simulators

Exit codes: 0 all passed, 1 a test failed, 2 a test file or its scheme is invalid.")]
    Test(test::TestArgs),
    /// Inspect and edit source-id → target-id mappings.
    Mappings {
        #[command(subcommand)]
        action: MappingsAction,
    },
    /// Store-backed value tables for `field_map('NAME')` in templates (employees, dictionary
    /// values, … that differ between CRM and ERP): add, list, delete, import, export, lint.
    FieldMappings {
        #[command(subcommand)]
        action: field_mappings::FieldMappingsAction,
    },
    /// Inspect the failure ledger.
    Failures {
        #[command(subcommand)]
        action: FailuresAction,
    },
    /// The run history: each run's outcome and summary.
    Runs {
        #[command(subcommand)]
        action: runs::RunsAction,
    },
    /// Per scheme: the last run and its outcome, the checkpoint and its lag, open failures,
    /// pending writes, and the next timer run.
    Status(runs::StatusArgs),
    /// Why one record did not arrive, or arrived wrong: its mapping, events, ledger rows and
    /// rendered row with the template of each field; `--fetch` reads it from the source now.
    Explain(explain::ExplainArgs),
    /// Show, move or clear the checkpoint a scheme's next run starts from.
    Checkpoint {
        #[command(subcommand)]
        action: checkpoint::CheckpointAction,
    },
    /// Print (or write) a hardened systemd service and timer that run a scheme periodically.
    Systemd(systemd::SystemdArgs),
    /// Run the example schemes against the built-in simulators in a fresh directory: a first
    /// sync, a rerun that writes nothing, and a run after some source records changed.
    #[command(after_help = "Examples:
  ferry demo
  ferry demo --dir /tmp/ferry-demo")]
    Demo {
        /// Keep the demo's files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Serve a built-in simulator until interrupted.
    #[command(after_help = "Examples:
  ferry simulate shop --port 8080
  ferry simulate kingdee-k3cloud --records 5000 --latency-ms 20")]
    Simulate(demo::SimulateArgs),
    /// Receive mode: take pushes for receiving schemes (`source.receive`) over HTTP, store
    /// each in the inbox before answering, and apply them to the target.
    #[command(after_help = "Examples:
  ferry serve schemes/receive-orders-to-erp.yaml
  ferry serve schemes/a.yaml schemes/b.yaml --listen 0.0.0.0:8080 --store postgres://ferry@db/ferry

Endpoints: POST /receive/<path> (seed-000 standard and non-standard formats),
POST /cgi/crm/erp/syncdata/objdata/push?thirdTraceId=… (Fxiaoke push shape), GET /healthz,
/readyz, /metrics. SIGTERM stops accepting, answers requests in progress, finishes the
current batches and exits 0.")]
    Serve(serve::ServeArgs),
    /// The receive-mode inbox: stored pushes and what became of them.
    Inbox {
        #[command(subcommand)]
        action: inbox::InboxAction,
    },
    /// Measure end-to-end throughput and peak memory against the simulator.
    #[command(after_help = "Examples:
  ferry bench
  ferry bench --records 100000 --batch 200 --in-flight 8")]
    Bench(demo::BenchArgs),
}

#[derive(Args)]
struct ValidateArgs {
    /// Scheme files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    output: FormatArg,
    /// Check without the environment (e.g. in CI, which has no secrets): a variable that is
    /// not set is a note, and a placeholder stands in for its value.
    #[arg(long)]
    no_env: bool,
    #[command(flatten)]
    env: EnvArg,
    /// Treat warnings as errors (exit code 2).
    #[arg(long)]
    strict: bool,
    /// Also render the record templates over this sample (one source record as JSON, or a
    /// list of them) and report each field they read that it lacks.
    #[arg(long)]
    sample: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// The scheme file; or a project: a directory of schemes, or a file listing them
    /// (`schemes: [a.yaml, b.yaml]`), run in dependency order (see `ferry run --help`).
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
    #[command(flatten)]
    output: FormatArg,
    /// No progress bar, and no summary unless something failed (for timers and cron).
    #[arg(long)]
    quiet: bool,
    /// Not a flag: `failures retry` shows no progress bar but its summary.
    #[arg(skip)]
    no_progress: bool,
    /// After the run (ok, failed or aborted), write Prometheus metrics to this textfile for
    /// node_exporter's textfile collector (atomically; a dry run writes none).
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,
    #[command(flatten)]
    create_dirs: stores::CreateDirsArg,
    /// If another run of this scheme holds the run lock, wait for it instead of exiting.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    env: EnvArg,
    /// Refuse to run a scheme that has validation warnings (exit code 2).
    #[arg(long)]
    strict: bool,
    /// Resync by id: read just these records (by the scheme's `source.detail`) instead of
    /// the windows and the ledger, and send them through the usual planner (created when
    /// unmapped, updated when changed). The checkpoint does not move.
    #[arg(long, num_args = 1.., value_name = "ID", conflicts_with_all = ["since", "until", "limit"])]
    ids: Vec<String>,
    /// Post a message here when the run fails, aborts or cannot reach its peers (repeatable):
    /// a WeCom, DingTalk or Feishu group robot's webhook URL (recognised by host, or prefixed
    /// `wecom+`, `dingtalk+`, `feishu+`), or any URL for a generic JSON webhook (`webhook+`).
    /// A robot's signing secret goes in the URL as `secret=…`; it is used to sign, never sent.
    #[arg(long = "alert", value_name = "URL")]
    alerts: Vec<String>,
    /// Also alert when the scheme has more than N open failures after the run.
    #[arg(long, value_name = "N", requires = "alerts")]
    alert_open_failures: Option<i64>,
    /// With --ids: send the records even if they are unchanged since the last sync.
    #[arg(long, requires = "ids")]
    force: bool,
    /// Events kept per record for `ferry explain` (the newest N; 0 keeps none). Only records
    /// written or failed get one.
    #[arg(long, value_name = "N", default_value_t = engine::DEFAULT_KEEP_EVENTS,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::store::MAX_KEEP_EVENTS)))]
    keep_events: u32,
}

#[derive(Subcommand)]
enum MappingsAction {
    /// List the mappings of a scheme, in natural order of source id.
    #[command(after_help = "Examples:
  ferry mappings list --scheme shop-orders-to-erp
  ferry mappings list --scheme schemes/shop-orders-to-erp.yaml --status failed --format json")]
    List {
        /// The scheme: its `name` or its scheme file.
        #[arg(long)]
        scheme: String,
        /// Only mappings in this state: created, updated, failed or pending.
        #[arg(long)]
        status: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Query mappings by source ids or by target ids.
    #[command(after_help = "Examples:
  ferry mappings get --scheme shop-orders-to-erp --source-id SO-1001
  ferry mappings get --scheme shop-orders-to-erp --target-id 100234 --format json")]
    Get {
        /// The scheme: its `name` or its scheme file.
        #[arg(long)]
        scheme: String,
        /// A source id to look up (repeatable).
        #[arg(long = "source-id")]
        source_ids: Vec<String>,
        /// A target id to look up (repeatable).
        #[arg(long = "target-id")]
        target_ids: Vec<String>,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Create a mapping, or change the target id of a source id.
    #[command(after_help = "Examples:
  ferry mappings set --scheme shop-orders-to-erp --source-id SO-1001 --target-id 100234
  ferry mappings set --scheme s --source-id 7 --target-id C7 --source-object customer --target-object BD_Customer")]
    Set {
        /// The scheme: its `name` or its scheme file.
        #[arg(long)]
        scheme: String,
        /// The source record's id.
        #[arg(long = "source-id")]
        source_id: String,
        /// The target record's id.
        #[arg(long = "target-id")]
        target_id: String,
        /// Source object (default: the one this source id, or else the scheme's other
        /// mappings, already use).
        #[arg(long)]
        source_object: Option<String>,
        /// Target object (default: as for --source-object).
        #[arg(long)]
        target_object: Option<String>,
        /// A display name for the record.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        create_dirs: stores::CreateDirsArg,
    },
    /// Delete a mapping (the next run creates the record again).
    #[command(after_help = "Examples:
  ferry mappings delete --scheme shop-orders-to-erp --source-id SO-1001")]
    Delete {
        /// The scheme: its `name` or its scheme file.
        #[arg(long)]
        scheme: String,
        /// The source record's id.
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
    #[command(after_help = "Examples:
  ferry failures list --scheme shop-orders-to-erp
  ferry failures list --status skipped --limit 20 --format json")]
    List {
        /// Only this scheme's failures: its `name` or its scheme file.
        #[arg(long)]
        scheme: Option<String>,
        /// open, skipped or resolved.
        #[arg(long, default_value = "open")]
        status: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show one failure with its payload.
    #[command(after_help = "Examples:
  ferry failures show 17
  ferry failures show 17 --format json")]
    Show {
        /// The failure's id (see `ferry failures list`).
        id: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Retry failed records now: re-send them through the scheme (create or update as
    /// their mapping says), without reading the source. Success resolves them.
    #[command(after_help = "Examples:
  ferry failures retry schemes/shop-orders-to-erp.yaml 17 18
  ferry failures retry schemes/shop-orders-to-erp.yaml --all --format json")]
    Retry(RetryArgs),
    /// Mark open failures as skipped (they will not be fixed).
    #[command(after_help = "Examples:
  ferry failures skip 17 18
  ferry failures skip --all --scheme shop-orders-to-erp")]
    Skip(CloseArgs),
    /// Mark open failures as resolved (fixed by hand in the target).
    #[command(after_help = "Examples:
  ferry failures resolve 17
  ferry failures resolve --all --scheme schemes/shop-orders-to-erp.yaml")]
    Resolve(CloseArgs),
}

#[derive(Args)]
struct CloseArgs {
    /// Failure ids (see `ferry failures list`).
    ids: Vec<i64>,
    /// Every open failure of `--scheme`.
    #[arg(long, requires = "scheme")]
    all: bool,
    /// The scheme (with --all): its `name` or its scheme file.
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
    #[command(flatten)]
    create_dirs: stores::CreateDirsArg,
    #[command(flatten)]
    output: FormatArg,
    /// If a run of this scheme holds the run lock, wait for it instead of exiting.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    env: EnvArg,
    /// Refuse to run a scheme that has validation warnings (exit code 2).
    #[arg(long)]
    strict: bool,
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    exit_quietly_on_closed_stdout();
    env::store_from_credential();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::CONFIG } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    let log_format = logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            logging::error(format_args!("cannot start the async runtime: {e}"));
            return exit::ABORTED;
        }
    };
    runtime.block_on(dispatch(cli, log_format))
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

async fn dispatch(cli: Cli, log_format: LogFormat) -> i32 {
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Check(args) => check::check(args).await,
        Command::Run(args) => run(args, log_format, None).await,
        Command::Runs { action } => runs::runs(action).await,
        Command::Status(args) => runs::status(args).await,
        Command::Checkpoint { action } => checkpoint::checkpoint(action).await,
        Command::Explain(args) => explain::explain(args).await,
        Command::Systemd(args) => systemd::systemd(args),
        Command::Schema => {
            match serde_json::to_string_pretty(&scheme::raw::json_schema()) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    logging::error(e);
                    return exit::ABORTED;
                }
            }
            exit::OK
        }
        Command::Init(args) => init::init(args),
        Command::Test(args) => test::test(args).await,
        Command::Mappings { action } => mappings(action).await,
        Command::Failures { action } => failures(action, log_format).await,
        Command::FieldMappings { action } => field_mappings::field_mappings(action).await,
        Command::Demo { dir } => demo::demo(dir).await,
        Command::Simulate(args) => demo::simulate(args).await,
        Command::Bench(args) => demo::bench(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Inbox { action } => inbox::inbox(action).await,
    }
}

/// The variables of `--env-file`, or its problems rendered for the terminal.
fn read_env_file(
    env: &EnvArg,
) -> Result<std::collections::BTreeMap<String, String>, Vec<(scheme_diag::Diagnostic, String)>> {
    let Some(path) = &env.env_file else {
        return Ok(Default::default());
    };
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut d = scheme_diag::Diagnostic::error("", format!("cannot read the environment file: {e}"))
            .with_hint("check the path given to --env-file");
        d.file = file.clone();
        vec![(d, String::new())]
    })?;
    scheme::envfile::parse(&text, &file).map_err(|problems| problems.into_iter().map(|d| (d, text.clone())).collect())
}

/// Loads a scheme, looking variables up in the environment and then in `--env-file`.
fn load_scheme(
    path: &std::path::Path,
    file_vars: &std::collections::BTreeMap<String, String>,
    missing_env: scheme::MissingEnv,
) -> scheme::Loaded {
    let lookup = |name: &str| env::variable(name, file_vars);
    scheme::load_file_with(
        path,
        &scheme::LoadOptions {
            env: &lookup,
            missing_env,
        },
    )
}

/// What an alert about this run says (masked).
fn alert_facts(
    plan: &scheme::Plan,
    args: &RunArgs,
    outcome: &str,
    summary: Option<&engine::Summary>,
    reason: Option<String>,
) -> alert::AlertFacts {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    alert::AlertFacts {
        scheme: plan.name.clone(),
        outcome: outcome.to_owned(),
        run_id: summary.and_then(|s| s.run_id),
        reason: reason.map(|r| plan.redactor.redact(&r).into_owned()),
        open_failures: None,
        host,
        store: crate::store::postgres::redact_url(&args.store.store),
        summary: summary.and_then(|s| serde_json::to_value(s).ok()),
    }
}

/// Loads the scheme a run needs, printing its diagnostics; `Err` is the exit code.
fn load_for_run(path: &std::path::Path, env: &EnvArg, strict: bool) -> Result<scheme::Plan, i32> {
    let file_vars = match read_env_file(env) {
        Ok(vars) => vars,
        Err(problems) => {
            for (d, text) in &problems {
                logging::diagnostic(d, text);
            }
            return Err(exit::CONFIG);
        }
    };
    let mut loaded = load_scheme(path, &file_vars, scheme::MissingEnv::Error);
    if strict {
        loaded.make_strict();
    }
    for d in &loaded.diagnostics {
        logging::diagnostic(d, &loaded.text);
    }
    loaded.plan.ok_or_else(|| {
        logging::error(format_args!("{} is not valid; nothing was run", path.display()));
        exit::CONFIG
    })
}

fn validate(args: &ValidateArgs) -> i32 {
    let json = args.output.is_json();
    let file_vars = match read_env_file(&args.env) {
        Ok(vars) => vars,
        Err(problems) => {
            if json {
                let diagnostics: Vec<_> = problems.into_iter().map(|(d, _)| d).collect();
                let report = serde_json::json!({"valid": false, "diagnostics": diagnostics});
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                for (d, text) in &problems {
                    logging::diagnostic(d, text);
                    if !logging::is_structured() {
                        eprintln!();
                    }
                }
            }
            return exit::CONFIG;
        }
    };
    let missing_env = if args.no_env {
        scheme::MissingEnv::Note
    } else {
        scheme::MissingEnv::Error
    };
    let mut all = Vec::new();
    let mut errors = 0;
    for file in &args.files {
        let mut loaded = load_scheme(file, &file_vars, missing_env);
        if let Some(sample) = &args.sample {
            check::add_sample_diagnostics(&mut loaded, file, sample);
        }
        if args.strict {
            loaded.make_strict();
        }
        if loaded.has_errors() {
            errors += 1;
        }
        if !json {
            for d in &loaded.diagnostics {
                logging::diagnostic(d, &loaded.text);
                if !logging::is_structured() {
                    eprintln!();
                }
            }
            let count = |severity| loaded.diagnostics.iter().filter(|d| d.severity == severity).count();
            let problems = count(scheme_diag::Severity::Error);
            let warnings = count(scheme_diag::Severity::Warning);
            let notes = count(scheme_diag::Severity::Note);
            let mut extra = Vec::new();
            if problems > 0 || warnings > 0 {
                extra.push(format!("{warnings} warning(s)"));
            }
            if notes > 0 {
                extra.push(format!("{notes} note(s)"));
            }
            if problems == 0 {
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", extra.join(", "))
                };
                println!("{}: ok{extra}", file.display());
            } else {
                extra.insert(0, format!("{problems} error(s)"));
                println!("{}: {}", file.display(), extra.join(", "));
            }
        }
        all.extend(loaded.diagnostics);
    }
    if json {
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
        logging::error(e);
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
        logging::error(format_args!(
            "scheme {scheme} maps source id {source_id} under several source objects ({})\n  hint: pass --source-object to choose one",
            objects.join(", ")
        ));
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
            logging::error(format_args!(
                "scheme {scheme} has no mappings yet, so its source and target objects are not known\n  hint: pass --source-object and --target-object (the scheme's source.object and target.object)"
            ));
            Err(exit::CONFIG)
        }
    }
}

async fn open_store(location: &str) -> Result<Store, i32> {
    Store::open(location).await.map_err(|e| {
        logging::error(e);
        exit::CONFIG
    })
}

async fn run(args: RunArgs, log_format: LogFormat, replay: Option<engine::Replay>) -> i32 {
    if project::is_project(&args.scheme) {
        return project::run_project(args, log_format).await;
    }
    let plan = match load_for_run(&args.scheme, &args.env, args.strict) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    run_plan(plan, &args, log_format, replay, None).await.0
}

/// Runs one loaded scheme: the lock, the run, its summary and metrics. Returns the exit
/// code and, when the run got as far as a summary, the summary. `http` is shared by the
/// schemes of a project; a lone run makes its own client.
async fn run_plan(
    plan: scheme::Plan,
    args: &RunArgs,
    log_format: LogFormat,
    replay: Option<engine::Replay>,
    http: Option<&HttpClient>,
) -> (i32, Option<engine::Summary>) {
    if plan.source.receive.is_some() {
        logging::error(format_args!(
            "scheme `{}` receives pushes (source.receive), so there is nothing to read; serve it with `ferry serve {}`",
            plan.name,
            args.scheme.display()
        ));
        return (exit::CONFIG, None);
    }
    let parse_opt = |text: &Option<String>, flag: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, i32> {
        match text {
            None => Ok(None),
            Some(t) => crate::window::parse_time(t, plan.timezone).map(Some).map_err(|e| {
                logging::error(format_args!("--{flag}: {e}"));
                exit::CONFIG
            }),
        }
    };
    let (since, until) = match (parse_opt(&args.since, "since"), parse_opt(&args.until, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(code), _) | (_, Err(code)) => return (code, None),
    };
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            logging::error(format_args!(
                "--since must be earlier than --until (got {since} and {until})\n  hint: swap the two times"
            ));
            return (exit::CONFIG, None);
        }
    }
    if (since.is_some() || until.is_some()) && plan.source.incremental.is_none() {
        logging::error(format_args!(
            "--since and --until choose incremental windows, but {} has no `source.incremental`\n  hint: leave them out to read the whole source",
            args.scheme.display()
        ));
        return (exit::CONFIG, None);
    }
    let mut alerts = Vec::with_capacity(args.alerts.len());
    for (index, spec) in args.alerts.iter().enumerate() {
        match alert::AlertTarget::parse(spec) {
            Ok(target) => alerts.push(target),
            Err(reason) => {
                logging::error(format_args!("--alert #{}: {reason}", index + 1));
                return (exit::CONFIG, None);
            }
        }
    }
    if args.dry_run {
        alerts.clear();
    }
    if !args.ids.is_empty() {
        if let Err(e) = engine::check_readable_by_id(&plan) {
            logging::error(format_args!("--ids: {}", e.message));
            return (exit::CONFIG, None);
        }
    }
    let metrics_file = match &args.metrics_file {
        Some(path) if !args.dry_run => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                logging::error(format_args!(
                    "--metrics-file {}: its directory does not exist",
                    path.display()
                ));
                return (exit::CONFIG, None);
            }
            Some(path.clone())
        }
        _ => None,
    };
    // Two runs of one scheme against one store never overlap; with SQLite the lock is taken
    // before the store is created or migrated. A dry run writes nothing, so it takes no
    // lock, and it must not create or migrate a store file.
    let (store, _lock) = if args.dry_run {
        let store = if std::path::Path::new(&args.store.store).exists() {
            match stores::open_existing(&args.store.store).await {
                Ok(store) => store,
                Err(code) => return (code, None),
            }
        } else {
            Store::memory()
        };
        (store, None)
    } else {
        if let Err(code) = stores::check_creatable(&args.store.store, args.create_dirs) {
            return (code, None);
        }
        match crate::store::lock::open_locked(&args.store.store, &plan.name, args.wait).await {
            Ok((store, lock)) => (store, Some(lock)),
            Err(e) => {
                logging::error(&e);
                let code = match e {
                    crate::store::lock::LockError::Held { .. } => {
                        if let Some(path) = &metrics_file {
                            let report = metrics::RunReport {
                                scheme: &plan.name,
                                outcome: "locked",
                                exit_code: exit::LOCKED,
                                summary: None,
                                store: None,
                                now: chrono::Utc::now(),
                            };
                            write_metrics(path, &report).await;
                        }
                        exit::LOCKED
                    }
                    crate::store::lock::LockError::Failed { .. } | crate::store::lock::LockError::Store(_) => {
                        exit::CONFIG
                    }
                };
                return (code, None);
            }
        }
    };
    let http = match http {
        Some(http) => http.clone(),
        None => match HttpClient::new() {
            Ok(http) => http,
            Err(e) => {
                logging::error(e);
                return (exit::ABORTED, None);
            }
        },
    };
    let json = args.output.is_json();
    let show_progress =
        !args.quiet && !args.no_progress && !json && log_format == LogFormat::Text && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(output::ProgressBar::new()));
    let (dry_run_sink, source_sink) = match (args.dry_run, json) {
        (false, _) => (None, None),
        (true, false) => (
            Some(Arc::new(output::print_planned) as engine::DryRunSink),
            Some(Arc::new(output::print_source) as engine::SourceSink),
        ),
        (true, true) => (
            Some(Arc::new(output::print_planned_json) as engine::DryRunSink),
            Some(Arc::new(output::print_source_json) as engine::SourceSink),
        ),
    };
    let stop = stop_on_signal();
    let options = RunOptions {
        stop: Some(stop),
        dry_run: args.dry_run,
        limit: args.limit,
        since,
        until,
        now: None,
        progress: progress.clone().map(|p| p as Arc<dyn engine::Progress>),
        dry_run_sink,
        source_sink,
        replay_only: replay.is_some(),
        replay,
        pushed: None,
        keep_events: Some(args.keep_events),
        ids: (!args.ids.is_empty()).then(|| args.ids.clone()),
        force: args.force,
    };
    let result = engine::run(&plan, &store, &http, &options).await;
    if let Some(p) = progress {
        p.finish();
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            logging::error(plan.redactor.redact(&e.message));
            let code = if matches!(e.kind, crate::error::ErrorKind::Store | crate::error::ErrorKind::Config) {
                exit::CONFIG
            } else {
                exit::ABORTED
            };
            if let Some(path) = &metrics_file {
                let report = metrics::RunReport {
                    scheme: &plan.name,
                    outcome: "error",
                    exit_code: code,
                    summary: None,
                    store: Some(&store),
                    now: chrono::Utc::now(),
                };
                write_metrics(path, &report).await;
            }
            let facts = alert_facts(
                &plan,
                args,
                "error",
                None,
                Some(plan.redactor.redact(&e.message).into_owned()),
            );
            alert::send(&alerts, &facts).await;
            return (code, None);
        }
    };
    let outcome = summary.outcome();
    if !alerts.is_empty() {
        let open = crate::store::FailureLedger::count_open_failures(&store, &plan.name)
            .await
            .ok();
        let failed = matches!(
            outcome,
            engine::Outcome::FailedRows | engine::Outcome::Aborted | engine::Outcome::Unreachable
        );
        let over = match (args.alert_open_failures, open) {
            (Some(limit), Some(open)) if open > limit => {
                Some(format!("{open} open failures, more than --alert-open-failures {limit}"))
            }
            _ => None,
        };
        if failed || over.is_some() {
            let reason = summary.aborted.clone().or(over);
            let mut facts = alert_facts(&plan, args, outcome.as_str(), Some(&summary), reason);
            facts.open_failures = open;
            alert::send(&alerts, &facts).await;
        }
    }
    let code = if summary.stopped {
        STOP_SIGNAL_CODE.load(std::sync::atomic::Ordering::Relaxed)
    } else {
        summary.exit_code()
    };
    tracing::info!(
        scheme = %summary.scheme,
        run_id = summary.run_id.unwrap_or_default(),
        outcome = outcome.as_str(),
        exit_code = code,
        read = summary.read,
        created = summary.created,
        updated = summary.updated,
        unchanged = summary.unchanged,
        duplicates = summary.duplicates,
        skipped = summary.skipped,
        failed = summary.failed,
        deleted = summary.deleted,
        replayed = summary.replayed,
        pages = summary.pages,
        windows = summary.windows,
        source_requests = summary.source_requests,
        target_requests = summary.requests,
        duration_ms = summary.duration_ms,
        checkpoint = summary.checkpoint.as_deref().unwrap_or(""),
        dry_run = summary.dry_run,
        "run finished"
    );
    // `--quiet`: no summary unless something failed.
    let show_summary = !args.quiet
        || matches!(
            outcome,
            engine::Outcome::FailedRows | engine::Outcome::Aborted | engine::Outcome::Unreachable
        );
    if show_summary {
        if json && args.dry_run {
            // After the planned requests, one JSON object per line.
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
        } else if json {
            println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
        } else {
            print!("{}", output::summary_table(&summary, &args.store.store));
        }
    }
    // The reason is told once, on stderr (the JSON summary carries it as data).
    if let Some(reason) = &summary.aborted {
        match outcome {
            engine::Outcome::Stopped => logging::warn(format_args!("the run was stopped: {reason}")),
            engine::Outcome::Unreachable => logging::error(format_args!(
                "the run could not reach its peers; try again later: {reason}"
            )),
            _ => logging::error(format_args!("the run aborted: {reason}")),
        }
    }
    if let Some(path) = &metrics_file {
        let report = metrics::RunReport {
            scheme: &plan.name,
            outcome: outcome.as_str(),
            exit_code: code,
            summary: Some(&summary),
            store: Some(&store),
            now: chrono::Utc::now(),
        };
        write_metrics(path, &report).await;
    }
    (code, Some(summary))
}

/// Writes the metrics textfile; a failure is a warning (the run's outcome stands).
async fn write_metrics(path: &std::path::Path, report: &metrics::RunReport<'_>) {
    if let Err(e) = metrics::write(path, report).await {
        logging::warn(format_args!("--metrics-file: {e}"));
    }
}

/// The exit code of a run stopped by a signal: 130 (SIGINT) or 143 (SIGTERM).
static STOP_SIGNAL_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(exit::INTERRUPTED);

/// A switch that turns on at SIGINT or SIGTERM: the run then stops reading, finishes and
/// commits the writes in flight, and exits with 130 or 143 (128 + the signal's number, as a
/// shell reports a process ended by it; not a failure: someone asked it to stop). A second
/// SIGINT or SIGTERM ends the process at once with the same codes; the next run settles the
/// writes whose answers were not seen, as after a kill.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        // Both listeners exist before the first signal, so a quick second one is not missed.
        // One that cannot be set up leaves its signal's default action: it ends ferry at once.
        let listen = |kind: SignalKind, name: &str| {
            signal(kind)
                .map_err(|e| tracing::warn!("cannot watch for {name} ({e}); it will end ferry without a graceful stop"))
                .ok()
        };
        let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
        async fn next(listener: &mut Option<Signal>) {
            match listener {
                Some(listener) => {
                    listener.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::spawn(async move {
            let (code, name) = tokio::select! {
                _ = next(&mut interrupt) => (exit::INTERRUPTED, "SIGINT"),
                _ = next(&mut terminate) => (exit::TERMINATED, "SIGTERM"),
            };
            STOP_SIGNAL_CODE.store(code, std::sync::atomic::Ordering::Relaxed);
            logging::notice(format_args!(
                "stopping on {name}: finishing the writes in flight (send the signal again to end at once)"
            ));
            let _ = sender.send(true);
            let code = tokio::select! {
                _ = next(&mut interrupt) => exit::INTERRUPTED,
                _ = next(&mut terminate) => exit::TERMINATED,
            };
            std::process::exit(code);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        logging::notice("stopping: finishing the writes in flight (press Ctrl-C again to end at once)");
        let _ = sender.send(true);
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(exit::INTERRUPTED);
    });
    receiver
}

async fn close_failures(args: CloseArgs, status: FailureStatus) -> i32 {
    if args.ids.is_empty() && !args.all {
        logging::error("give failure ids, or --all with --scheme");
        return exit::CONFIG;
    }
    let scheme = match args.scheme.as_deref().map(stores::scheme_name).transpose() {
        Ok(scheme) => scheme,
        Err(code) => return code,
    };
    let store = match stores::open_existing(&args.store.store).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut ids = args.ids;
    if args.all {
        match store
            .list_failures(scheme.as_deref(), Some(FailureStatus::Open), i64::MAX)
            .await
        {
            Ok(open) => ids.extend(open.iter().map(|f| f.id)),
            Err(e) => {
                logging::error(e);
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
            logging::error(e);
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
            output: format,
            store,
        } => {
            let status = match status.as_deref().map(str::parse::<MappingStatus>) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(_)) => {
                    logging::error("--status must be one of created, updated, failed, pending, deleted");
                    return exit::CONFIG;
                }
            };
            let scheme = match stores::scheme_name(&scheme) {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            let store = match stores::open_existing(&store.store).await {
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
                logging::notice(format_args!(
                    "note: showing the first {limit} mappings; pass --limit to see more"
                ));
            }
            print_mappings(found, format.is_json())
        }
        MappingsAction::Get {
            scheme,
            source_ids,
            target_ids,
            output: format,
            store,
        } => {
            if source_ids.is_empty() && target_ids.is_empty() {
                logging::error("give --source-id or --target-id (repeatable)");
                return exit::CONFIG;
            }
            let scheme = match stores::scheme_name(&scheme) {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            let store = match stores::open_existing(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let query = MappingQuery {
                scheme: Some(scheme),
                source_ids,
                target_ids,
                ..MappingQuery::default()
            };
            print_mappings(store.query_mappings(&query).await, format.is_json())
        }
        MappingsAction::Set {
            scheme,
            source_id,
            target_id,
            source_object,
            target_object,
            name,
            store,
            create_dirs,
        } => {
            let scheme = match stores::scheme_name(&scheme) {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            if let Err(code) = stores::check_creatable(&store.store, create_dirs) {
                return code;
            }
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
                // Ids of another target record's detail rows must not reach this one.
                detail_ids: Some(serde_json::json!({})),
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
                    logging::error(e);
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
            let scheme = match stores::scheme_name(&scheme) {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            let store = match stores::open_existing(&store.store).await {
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
                    logging::error(format_args!(
                        "scheme {scheme} has no mapping for source id {source_id} (object {object})"
                    ));
                    exit::ROWS_FAILED
                }
                Err(e) => {
                    logging::error(e);
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
            logging::error(e);
            exit::ABORTED
        }
    }
}

async fn failures(action: FailuresAction, log_format: LogFormat) -> i32 {
    match action {
        FailuresAction::List {
            scheme,
            status,
            limit,
            output: format,
            store,
        } => {
            let status = match status.parse::<FailureStatus>() {
                Ok(s) => s,
                Err(_) => {
                    logging::error("--status must be one of open, skipped, resolved");
                    return exit::CONFIG;
                }
            };
            let scheme = match scheme.as_deref().map(stores::scheme_name).transpose() {
                Ok(scheme) => scheme,
                Err(code) => return code,
            };
            let store = match stores::open_existing(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.list_failures(scheme.as_deref(), Some(status), limit).await {
                Ok(rows) => {
                    output::json_or_text(format.is_json(), &rows, || output::failures_table(&rows));
                    exit::OK
                }
                Err(e) => {
                    logging::error(e);
                    exit::ABORTED
                }
            }
        }
        FailuresAction::Retry(args) => {
            if args.ids.is_empty() && !args.all {
                logging::error("name the failures to retry (ids from `ferry failures list`), or pass --all");
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
                output: args.output,
                quiet: false,
                no_progress: true,
                metrics_file: None,
                create_dirs: args.create_dirs,
                wait: args.wait,
                env: args.env,
                strict: args.strict,
                keep_events: engine::DEFAULT_KEEP_EVENTS,
                ids: Vec::new(),
                force: false,
                alerts: Vec::new(),
                alert_open_failures: None,
            };
            run(run_args, log_format, Some(replay)).await
        }
        FailuresAction::Skip(args) => close_failures(args, FailureStatus::Skipped).await,
        FailuresAction::Resolve(args) => close_failures(args, FailureStatus::Resolved).await,
        FailuresAction::Show {
            id,
            output: format,
            store,
        } => {
            let store = match stores::open_existing(&store.store).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.failure(id).await {
                Ok(Some(f)) => {
                    output::json_or_text(format.is_json(), &f, || output::failure_detail(&f));
                    exit::OK
                }
                Ok(None) => {
                    logging::error(format_args!(
                        "no failure with id {id}; list them with `ferry failures list`"
                    ));
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

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag says what it does, and every command shows examples.
    #[test]
    fn every_flag_has_a_description_and_every_command_examples() {
        fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    problems.push(format!("{path}: `{id}` has no description"));
                }
            }
            let children: Vec<_> = command.get_subcommands().filter(|c| c.get_name() != "help").collect();
            if children.is_empty() {
                let examples = command
                    .get_after_help()
                    .is_some_and(|help| help.to_string().contains("Examples:"));
                if !examples {
                    problems.push(format!("{path}: no examples"));
                }
            }
            for child in children {
                walk(child, &format!("{path} {}", child.get_name()), problems);
            }
        }
        let mut problems = Vec::new();
        walk(&Cli::command(), "ferry", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
