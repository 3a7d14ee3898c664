//! The console's HTML (pure): escaping, the page frame, the runs plot. Every value that
//! reaches a page goes through [`esc`]; pages load nothing from elsewhere (no CDN, no script).

use crate::store::RunRecord;
use std::fmt::Write as _;

/// `text` safe inside HTML text and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one query-string value.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The stylesheet, served at `/console/style.css`.
pub const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header .who{margin-left:auto}
header form{display:inline}main{padding:1em 1.4em;max-width:1100px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #d8dbe2;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eceef2}.num{text-align:right}
.notice{background:#e6f4ea;border:1px solid #9bd1a8;padding:.5em .8em}
.error{background:#fdecea;border:1px solid #f1a79f;padding:.5em .8em}
.muted{color:#6b7280}button{cursor:pointer}
.scheme{background:#fff;border:1px solid #d8dbe2;padding:.6em 1em;margin:1em 0}
form.inline{display:inline}input[type=text]{width:14em}
.login{max-width:22em;margin:4em auto;background:#fff;border:1px solid #d8dbe2;padding:1.4em}
";

/// A page for a logged-in operator: the header with navigation and logout, a notice, the body.
pub fn page(title: &str, csrf: &str, notice: Option<&str>, body: &str) -> String {
    let notice = notice
        .map(|n| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(n)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Ferry console</title>\
<link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>\
<header><strong>Ferry console</strong><a href=\"/console/\">Runs</a><a href=\"/console/failures\">Failures</a>\
<a href=\"/console/mappings\">Mappings</a><span class=\"who\"><form method=\"post\" action=\"/console/logout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"logout\">Log out</button></form></span></header>\
<main><h1>{title}</h1>{notice}{body}</main></body></html>",
        title = esc(title),
        csrf = esc(csrf),
    )
}

/// The login page, with an error when a login was refused.
pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · Ferry console</title>\
<link rel=\"stylesheet\" href=\"/console/style.css\"></head><body><div class=\"login\"><h1>Ferry console</h1>{error}\
<form method=\"post\" action=\"/console/login\"><p><label>Operator token<br>\
<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label></p>\
<p><button id=\"login\">Log in</button></p></form></div></body></html>"
    )
}

/// A page with only an error message (for refusals and store trouble).
pub fn error_body(message: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message))
}

/// A counter from a run's summary (0 when absent).
pub fn counter(run: &RunRecord, name: &str) -> u64 {
    run.summary
        .as_ref()
        .and_then(|s| s.get(name))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

const PLOT_WIDTH: u64 = 600;
const PLOT_HEIGHT: u64 = 120;
/// Widest bar (with its gap), so a short history does not draw slabs.
const MAX_SLOT: u64 = 24;

/// An inline SVG plot of the inbox depth over time (oldest on the left), from `start`.
pub fn depth_plot(start: chrono::DateTime<chrono::Utc>, series: &[u64]) -> String {
    if series.is_empty() {
        return String::new();
    }
    let max = series.iter().copied().max().unwrap_or(0).max(1);
    let slot = (PLOT_WIDTH / series.len() as u64).min(MAX_SLOT);
    let bar = slot.saturating_sub(2).max(1);
    let height = PLOT_HEIGHT / 2;
    let mut svg = format!(
        "<svg class=\"plot depth\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
aria-label=\"inbox depth over time\" xmlns=\"http://www.w3.org/2000/svg\">\
<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\" stroke=\"#d8dbe2\"/>",
        w = PLOT_WIDTH,
        h = height + 14
    );
    for (i, depth) in series.iter().enumerate() {
        let bar_height = depth * height / max;
        let _ = write!(
            svg,
            "<g><title>{depth} pending</title><rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{bar_height}\" fill=\"#8b5cf6\"/></g>",
            x = i as u64 * slot + 1,
            y = height + 2 - bar_height,
        );
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" font-size=\"10\" fill=\"#6b7280\">inbox depth since {} UTC · max {max} pending</text></svg>",
        height + 12,
        start.format("%Y-%m-%d %H:%M")
    );
    svg
}

/// An inline SVG bar chart of records read per run, oldest on the left; the failed part of
/// each bar is red. `runs` is newest first, as the store answers.
pub fn runs_plot(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "<p class=\"muted\">No runs yet.</p>".into();
    }
    let max = runs.iter().map(|r| counter(r, "read")).max().unwrap_or(0).max(1);
    let slot = (PLOT_WIDTH / runs.len() as u64).min(MAX_SLOT);
    let bar = slot.saturating_sub(2).max(1);
    let mut svg = format!(
        "<svg class=\"plot\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
aria-label=\"records per run\" xmlns=\"http://www.w3.org/2000/svg\">\
<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\" stroke=\"#d8dbe2\"/>",
        w = PLOT_WIDTH,
        h = PLOT_HEIGHT + 14
    );
    for (i, run) in runs.iter().rev().enumerate() {
        let read = counter(run, "read");
        let failed = counter(run, "failed").min(read);
        let height = read * PLOT_HEIGHT / max;
        let failed_height = failed * PLOT_HEIGHT / max;
        let x = i as u64 * slot + 1;
        let _ = write!(
            svg,
            "<g><title>run {id} ({status}): {read} read, {failed} failed</title>\
<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{height}\" fill=\"#5b8def\"/>\
<rect x=\"{x}\" y=\"{fy}\" width=\"{bar}\" height=\"{failed_height}\" fill=\"#e5533d\"/></g>",
            id = run.id,
            status = esc(&run.status),
            y = PLOT_HEIGHT + 2 - height,
            fy = PLOT_HEIGHT + 2 - failed_height,
        );
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" font-size=\"10\" fill=\"#6b7280\">max {max} records/run · red: failed</text></svg>",
        PLOT_HEIGHT + 12
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_plot_has_one_bar_per_run_scaled_to_the_largest() {
        let run = |id, read, failed| RunRecord {
            id,
            scheme: "s".into(),
            started_at: Utc::now(),
            finished_at: None,
            status: "<ok>".into(),
            summary: Some(json!({"read": read, "failed": failed})),
        };
        let svg = runs_plot(&[run(2, 10, 5), run(1, 5, 0)]);
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(
            svg.contains("height=\"120\" fill=\"#5b8def\""),
            "the largest run fills the plot"
        );
        assert!(svg.contains("height=\"60\" fill=\"#e5533d\""), "half of it failed");
        assert!(svg.contains("(&lt;ok&gt;)"), "status escaped");
        assert!(runs_plot(&[]).contains("No runs"));
    }
}
