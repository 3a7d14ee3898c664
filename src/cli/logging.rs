//! Logging and the one way a command reports a problem on standard error.
//!
//! `--log-format text` (the default) writes tracing events and `error:` lines as text.
//! `--log-format json` writes every stderr line as one JSON object: problems a command
//! reports ([`error`], [`warn`], [`diagnostic`]) become tracing events too, so a collector
//! never meets a plain-text line. `--log-format journald` sends events to the systemd
//! journal with their fields (`FERRY_SCHEME`, `FERRY_RUN_ID`, `FERRY_READ`, …, and the
//! standard `MESSAGE` and `PRIORITY`); when there is no journal socket it warns once and
//! falls back to text on stderr, which a service manager collects just the same (refusing
//! to run would turn a logging preference into a failed sync).

use super::LogFormat;
use crate::diag::{Diagnostic, Severity};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether problems are reported as tracing events rather than text.
static STRUCTURED: AtomicBool = AtomicBool::new(false);

/// Journal field names are the event's fields with this prefix: `FERRY_SCHEME`.
pub const JOURNAL_FIELD_PREFIX: &str = "FERRY";

/// Sets up logging; returns the format in effect (text when the journal is missing).
pub fn init(format: LogFormat) -> LogFormat {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = |format: LogFormat| {
        tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| {
                // Structured logs go to journald or a collector, which should see each run's
                // start and summary; a person at a terminal has the printed summary.
                tracing_subscriber::EnvFilter::new(match format {
                    LogFormat::Json | LogFormat::Journald => "warn,ferry=info",
                    LogFormat::Text => "warn",
                })
            })
    };
    let mut effective = format;
    let mut journal_missing = None;
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_string()))
                    .with_syslog_identifier("ferry".to_string());
                STRUCTURED.store(true, Ordering::Relaxed);
                let _ = tracing_subscriber::registry()
                    .with(filter(format))
                    .with(layer)
                    .try_init();
                return effective;
            }
            Err(e) => {
                journal_missing = Some(e);
                effective = LogFormat::Text;
            }
        }
    }
    // Colour codes only for a person at a terminal; journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(format))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match effective {
        LogFormat::Json => {
            STRUCTURED.store(true, Ordering::Relaxed);
            builder.json().flatten_event(true).try_init()
        }
        LogFormat::Text | LogFormat::Journald => builder.with_target(false).try_init(),
    };
    if let Some(e) = journal_missing {
        warn(format_args!(
            "--log-format journald: no systemd journal here ({e}); logging to stderr as text instead"
        ));
    }
    effective
}

/// Whether problems go out as tracing events (JSON or journald).
pub fn is_structured() -> bool {
    STRUCTURED.load(Ordering::Relaxed)
}

/// Reports an error: `error: …` on stderr, or an error event.
pub fn error(message: impl std::fmt::Display) {
    if is_structured() {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// Reports a warning: `warning: …` on stderr, or a warning event.
pub fn warn(message: impl std::fmt::Display) {
    if is_structured() {
        tracing::warn!("{message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// Reports a scheme diagnostic: rendered with its excerpt, or as one event with its fields.
pub fn diagnostic(d: &Diagnostic, text: &str) {
    if !is_structured() {
        eprint!("{}", d.render(text));
        return;
    }
    let hint = d.hint.as_deref().unwrap_or("");
    let (file, line, column, path) = (d.file.as_str(), d.line, d.column, d.path.as_str());
    match d.severity {
        Severity::Error => tracing::error!(file, line, column, path, hint, "{}", d.message),
        Severity::Warning => tracing::warn!(file, line, column, path, hint, "{}", d.message),
        Severity::Note => tracing::info!(file, line, column, path, hint, "{}", d.message),
    }
}

/// Reports what is happening (a graceful stop): a plain line, or a warning event.
pub fn notice(message: impl std::fmt::Display) {
    if is_structured() {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}
