//! `ferry test [PATH...]`: runs hermetic scheme tests (see [`crate::schemetest`]) and prints
//! a summary, JSON or JUnit XML; `--record` fills test files from the built-in simulators.

use super::output::json_or_text;
use super::FormatArg;
use crate::error::exit;
use crate::schemetest::{self, format, record, report, runner};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TestArgs {
    /// Test files (`*.test.yaml`) or directories to search for them.
    #[arg(default_value = "schemes")]
    paths: Vec<PathBuf>,
    /// Record: run each test's scheme twice against its built-in simulators and rewrite the
    /// test file with what was sent and answered (credentials replaced by the stand-ins).
    #[arg(long)]
    record: bool,
    #[command(flatten)]
    output: FormatArg,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

pub async fn test(args: TestArgs) -> i32 {
    let files = match schemetest::collect(&args.paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    if files.is_empty() {
        eprintln!("error: no test files (*.test.yaml) under the given paths");
        return exit::CONFIG;
    }
    let mut invalid = false;
    let mut reports = Vec::new();
    for file in &files {
        let test = match format::load(file) {
            Ok(test) => test,
            Err((text, diagnostics)) => {
                for d in diagnostics {
                    eprint!("{}", d.render(&text));
                }
                invalid = true;
                continue;
            }
        };
        if args.record {
            match record_one(&test).await {
                Ok(()) => println!("recorded {}", file.display()),
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    invalid = true;
                }
            }
            continue;
        }
        match runner::run_test(&test, &|_| {}).await {
            Ok(report) => reports.push(report),
            Err(bad) => {
                eprintln!(
                    "error: {}: its scheme does not load with the test's stand-ins:",
                    file.display()
                );
                for d in &bad.diagnostics {
                    eprint!("{}", d.render(&bad.text));
                }
                invalid = true;
            }
        }
    }
    if !args.record {
        json_or_text(args.output.is_json(), &reports, || report::text(&reports));
        if let Some(path) = &args.junit {
            if let Err(e) = std::fs::write(path, report::junit(&reports)) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return exit::CONFIG;
            }
        }
    }
    if invalid {
        exit::CONFIG
    } else if reports.iter().any(|r| !r.passed) {
        exit::ROWS_FAILED
    } else {
        exit::OK
    }
}

async fn record_one(test: &format::TestFile) -> Result<(), String> {
    let spec = runner::record(test).await?;
    let value = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    let mut text = String::from(
        "# Hermetic test of the scheme below, for `ferry test`: it replays recorded answers, so it\n\
         # needs no network and no real credentials. Written by `ferry test --record`.\n",
    );
    text.push_str(&record::to_yaml(&value));
    std::fs::write(&test.path, text).map_err(|e| format!("cannot write: {e}"))
}
