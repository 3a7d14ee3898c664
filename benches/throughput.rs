//! `cargo bench`: Ferry's end-to-end throughput and peak memory.
//!
//! Runs the release binary's own `ferry bench` (the shop flow against the built-in
//! simulator in a child process, page 100, batch 100, a fresh SQLite store) several times
//! per size and reports each run plus the median and best. Sizes and repetitions come from
//! `FERRY_BENCH_RECORDS` (comma-separated, default `10000,100000`) and `FERRY_BENCH_RUNS`
//! (default 5); extra `ferry bench` flags from `FERRY_BENCH_ARGS` (e.g. `--store memory`).
//!
//! A benchmark, not a test: it asserts nothing about speed, because the figures depend on
//! the machine; it fails only if a run itself fails.

use std::process::{Command, ExitCode};

struct Run {
    throughput: f64,
    peak_rss_mib: f64,
}

fn field(output: &str, label: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

fn run_once(records: u64, extra: &[String]) -> Result<Run, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "--records", &records.to_string()])
        .args(extra)
        .output()
        .map_err(|e| format!("cannot start ferry: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "ferry bench failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(Run {
        throughput: field(&text, "throughput").ok_or_else(|| format!("no throughput in: {text}"))?,
        peak_rss_mib: field(&text, "peak RSS").ok_or_else(|| format!("no peak RSS in: {text}"))?,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> ExitCode {
    // `cargo bench -- <filter>` passes arguments; `cargo test --benches` passes `--bench`
    // absent, so a test build only checks that the benchmark starts.
    if std::env::args().all(|a| a != "--bench") {
        println!("throughput: run with `cargo bench` to measure");
        return ExitCode::SUCCESS;
    }
    let sizes: Vec<u64> = std::env::var("FERRY_BENCH_RECORDS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = std::env::var("FERRY_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let extra: Vec<String> = std::env::var("FERRY_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    for records in sizes {
        let mut rates = Vec::with_capacity(runs);
        let mut rss = Vec::with_capacity(runs);
        for n in 1..=runs {
            match run_once(records, &extra) {
                Ok(run) => {
                    println!(
                        "records {records:>9}  run {n}: {:>8.0} records/s  peak RSS {:.1} MiB",
                        run.throughput, run.peak_rss_mib
                    );
                    rates.push(run.throughput);
                    rss.push(run.peak_rss_mib);
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let best = rates.iter().copied().fold(0.0, f64::max);
        let most_rss = rss.iter().copied().fold(0.0, f64::max);
        println!(
            "records {records:>9}  median {:>8.0} records/s  best {best:.0}  peak RSS at most {most_rss:.1} MiB",
            median(&mut rates)
        );
    }
    ExitCode::SUCCESS
}
