//! `ferry check SCHEME`: a probe against a live tenant (see [`crate::engine::check`]), and
//! the `--sample` part of `ferry validate`. Kept apart from the other commands so each
//! stays a small change to `cli/mod.rs`.

use super::OutputFormat;
use crate::engine::{self, CheckOptions, CheckReport, Problem};
use crate::error::{exit, ErrorKind};
use crate::http::HttpClient;
use crate::scheme;
use crate::window::describe_duration;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(super) struct CheckArgs {
    /// The scheme file to probe.
    scheme: PathBuf,
    /// Records to read and render at most, over all windows.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// Windows to read at most (their first page each, newest window first).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    windows: u64,
    /// Read windows from this time instead of `incremental.start`, e.g. "2024-03-01 00:00:00".
    #[arg(long)]
    since: Option<String>,
    /// Read windows up to this time instead of now - lag.
    #[arg(long)]
    until: Option<String>,
    /// Output format: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// Runs `ferry check` and returns its exit code: 0 all well, 1 records would fail (or a run
/// would stop on its first page), 2 configuration error, 3 the source could not be read.
pub(super) async fn check(args: CheckArgs) -> i32 {
    let loaded = scheme::load_file(&args.scheme);
    for d in &loaded.diagnostics {
        eprint!("{}", d.render(&loaded.text));
    }
    let Some(plan) = loaded.plan else {
        eprintln!("error: {} is not valid; nothing was checked", args.scheme.display());
        return exit::CONFIG;
    };
    let parse = |text: &Option<String>, flag: &str| match text {
        None => Ok(None),
        Some(t) => crate::window::parse_time(t, plan.timezone)
            .map(Some)
            .map_err(|e| format!("--{flag}: {e}")),
    };
    let (since, until) = match (parse(&args.since, "since"), parse(&args.until, "until")) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    if (since.is_some() || until.is_some()) && plan.source.incremental.is_none() {
        eprintln!(
            "error: --since and --until choose incremental windows, but {} has no `source.incremental`",
            args.scheme.display()
        );
        return exit::CONFIG;
    }
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            eprintln!("error: --since must be earlier than --until");
            return exit::CONFIG;
        }
    }
    let http = match HttpClient::new() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    let options = CheckOptions {
        limit: args.limit,
        max_windows: usize::try_from(args.windows).unwrap_or(usize::MAX),
        since,
        until,
        now: None,
    };
    match engine::check(&plan, &http, &options).await {
        Ok(report) => {
            match args.format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
                OutputFormat::Text => print!("{}", report_text(&report)),
            }
            report.exit_code()
        }
        Err(e) => {
            let message = plan.redactor.redact(&e.message);
            if e.kind == ErrorKind::Config {
                eprintln!("error: {message}");
                exit::CONFIG
            } else {
                eprintln!("error: the source could not be read: {message}");
                exit::ABORTED
            }
        }
    }
}

/// The human report: what was read, what would fail, what looks wrong, what to do.
pub(super) fn report_text(r: &CheckReport) -> String {
    let mut out = String::new();
    let windows = if r.windows <= 1 {
        String::new()
    } else {
        format!(
            " of {} of {} windows (newest and oldest first)",
            r.windows_read, r.windows
        )
    };
    let _ = writeln!(
        out,
        "check {}: read {} record(s) from the first page{windows}; nothing was written",
        r.scheme, r.records
    );
    let problem = |out: &mut String, tag: &str, headline: String, p: &Problem| {
        let _ = writeln!(out, "  {tag:<5} {headline}");
        let _ = writeln!(out, "        e.g. {}", p.example);
    };
    for (field, p) in &r.missing_fields {
        problem(
            &mut out,
            "FAIL",
            format!("missing field `{field}` in {} record(s)", p.records),
            p,
        );
    }
    for (field, p) in &r.errors {
        problem(
            &mut out,
            "FAIL",
            format!("{field} fails for {} record(s)", p.records),
            p,
        );
    }
    if let Some(reason) = &r.stops {
        let _ = writeln!(out, "  STOP  a run would stop on its first page: {reason}");
    }
    if let Some(times) = &r.times {
        let tally = &times.tally;
        let field = &times.field;
        let examples = &tally.examples;
        for (count, what, example) in [
            (
                tally.outside_window,
                format!("record(s) with `{field}` outside the window they were read in: the window parameters or the source's filter look wrong"),
                &examples.outside_window,
            ),
            (
                tally.in_future,
                format!("record(s) with `{field}` in the future: check connection `{}`'s timezone", times.connection),
                &examples.in_future,
            ),
            (
                tally.field_unreadable,
                format!("record(s) without a readable `{field}`: check source.incremental.field"),
                &examples.field_unreadable,
            ),
        ] {
            if count > 0 {
                let _ = writeln!(out, "  WARN  {count} {what}");
                if let Some(example) = example {
                    let _ = writeln!(out, "        e.g. {example}");
                }
            }
        }
        match (&times.newest_local, times.newest_age_seconds) {
            (Some(newest), Some(age)) => {
                let age_text = describe_duration(chrono::Duration::seconds(age));
                let relation = if age < 0 { "ahead of now" } else { "ago" };
                let _ = writeln!(
                    out,
                    "  time  newest `{field}`: {newest}, now {} ({}): {age_text} {relation}",
                    times.now, times.zone
                );
                if let Some(hours) = times.whole_hours {
                    let _ = writeln!(
                        out,
                        "  WARN  that is close to {} whole hour(s): if the tenant changed a record just now, its times \
                         are not in {}; set `timezone:` on connection `{}` to the server's zone",
                        hours.abs(),
                        times.zone,
                        times.connection
                    );
                }
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  time  no readable `{field}` seen; now is {} ({})",
                    times.now, times.zone
                );
            }
        }
    }
    if r.mapped_id_placeholders > 0 {
        let _ = writeln!(
            out,
            "  note  mapped_id answered {} look-up(s) with placeholders; no store was read",
            r.mapped_id_placeholders
        );
    }
    let verdict = if r.records == 0 {
        "nothing to check: the source returned no records; read older windows with --since, or check the \
         request's filters"
            .to_string()
    } else if r.failed > 0 {
        format!(
            "{} of {} record(s) would fail into the ledger; fix the scheme (see above) and check again",
            r.failed, r.records
        )
    } else if r.stops.is_some() {
        "a run would stop on its first page; fix the scheme (see above) and check again".to_string()
    } else if r.has_warnings() {
        format!("all {} record(s) render, with warnings (see above)", r.records)
    } else {
        format!("ok: all {} record(s) render", r.records)
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}

/// `ferry validate --sample FILE`: adds the diagnostics of rendering the scheme's record
/// templates over the sample records to `loaded` (a scheme with errors is not rendered).
pub(super) fn add_sample_diagnostics(loaded: &mut scheme::Loaded, file: &Path, sample: &Path) {
    let Some(plan) = &loaded.plan else {
        return;
    };
    let sample_name = sample.display().to_string();
    let records = std::fs::read_to_string(sample)
        .map_err(|e| format!("cannot read the sample: {e}"))
        .and_then(|text| scheme::sample::parse_sample(&text));
    let found = match records {
        Ok(records) => {
            // Positions of the templates; they do not depend on the environment.
            let spans = scheme::yaml::load(&loaded.text, &|_| None).spans;
            let mut found = scheme::sample::check_sample(plan, &spans, &records, &sample_name);
            for d in &mut found {
                d.file = file.display().to_string();
                d.message = plan.redactor.redact(&d.message).into_owned();
            }
            found
        }
        Err(message) => {
            let mut d = crate::diag::Diagnostic::error("", message)
                .with_hint("a sample is one source record (a JSON object) or a list of them");
            d.file = sample_name;
            vec![d]
        }
    };
    loaded.diagnostics.extend(found);
    crate::diag::tidy(&mut loaded.diagnostics);
}
