//! The run's guards over what the source answered: a first page whose every record lacks a
//! field or lies outside its window stops the run before anything is sent; the
//! `incremental.field` checks of every page are tallied and the first of each kind logged.

use super::context::{row_scope, RunContext};
use super::plan::{describe_record_failure, identify};
use super::summary::Summary;
use crate::error::{Error, ErrorKind};
use crate::window::TimeTally;
use serde_json::Value;

/// Renders the records of the run's first source page without sending anything. When
/// every one of them lacks the same field, the scheme is wrong rather than the data (a
/// field name that this source does not use): the run stops before anything is written,
/// and the checkpoint stays where it was.
pub(super) fn first_page_verdict(ctx: &RunContext, records: &[(Value, String)]) -> Option<Error> {
    let (names, example) = fields_every_record_lacks(ctx, records)?;
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    Some(Error::new(
        ErrorKind::Aborted,
        format!(
            "every record of the first page ({}) lacks {}, so the scheme's field names do not match this source; \
             nothing was sent and the checkpoint stays. Correct the template (or mark the field optional with \
             `| default(…)` / `| optional`) and run again. First failure: {}",
            records.len(),
            names.join(", "),
            ctx.plan.redactor.redact(&example)
        ),
    ))
}

/// The fields every one of `records` lacks (none: `None`), with the first failure's message.
pub(super) fn fields_every_record_lacks(
    ctx: &RunContext,
    records: &[(Value, String)],
) -> Option<(Vec<String>, String)> {
    let mut common: Option<Vec<String>> = None;
    let mut example = String::new();
    for (record, hash) in records {
        let missing = match identify(ctx, record.clone(), hash.clone()) {
            Err(rejected) => {
                example = rejected.failure.message.clone();
                rejected.missing
            }
            Ok(item) => {
                let scope = row_scope(ctx, &item);
                match crate::transform::render(&ctx.plan.target.fields, &scope, "target.fields") {
                    Err(e) => {
                        if example.is_empty() {
                            example = describe_record_failure(&e.message, &e.missing, &item.record);
                        }
                        e.missing
                    }
                    Ok(_) => return None,
                }
            }
        };
        let shared: Vec<String> = match common {
            None => missing,
            Some(before) => before.into_iter().filter(|name| missing.contains(name)).collect(),
        };
        if shared.is_empty() {
            return None;
        }
        common = Some(shared);
    }
    Some((common?, example))
}

/// Stops the run when every record of its first source page lies outside the window it
/// was read in: the source ignores the window filter (or the parameter is misspelt), so
/// the run would re-read and re-send whatever the source sends every time.
pub(super) fn window_verdict(ctx: &RunContext, times: &TimeTally) -> Option<Error> {
    if !times.all_outside() {
        return None;
    }
    let field = ctx.change_checks.as_ref().map_or("", |checks| checks.field.as_str());
    let values = match (&times.oldest, &times.newest) {
        (Some(oldest), Some(newest)) if oldest.value != newest.value => {
            format!("its `{field}` values run from `{}` to `{}`", oldest.value, newest.value)
        }
        (Some(only), _) => format!("its `{field}` is `{}`", only.value),
        _ => String::new(),
    };
    let example = times
        .examples
        .outside_window
        .as_deref()
        .or(times.examples.in_future.as_deref())
        .unwrap_or_default();
    Some(Error::new(
        ErrorKind::Aborted,
        ctx.plan
            .redactor
            .redact(&format!(
                "every record of the first page ({}) lies outside the window it was read in, {}: {values}. The source \
                 ignores the window filter (a misspelt parameter name, a filter it does not support), or \
                 source.incremental.field names another time than the one the source filters on; nothing was sent \
                 and the checkpoint stays. Check the window parameters of source.request against the source's \
                 documentation (`ferry check` shows what the source returns) and run again. First: {example}",
                times.records,
                times.window.as_deref().unwrap_or("?"),
            ))
            .into_owned(),
    ))
}

/// Adds a page's `incremental.field` checks to the run: the counters go to the summary,
/// and the first record of each kind is logged as a warning with what it suggests.
pub(super) fn note_times(ctx: &RunContext, run: &mut TimeTally, summary: &mut Summary, page: TimeTally) {
    let redact = |text: &Option<String>| {
        ctx.plan
            .redactor
            .redact(text.as_deref().unwrap_or_default())
            .into_owned()
    };
    let scheme = ctx.plan.name.as_str();
    if run.outside_window == 0 && page.outside_window > 0 {
        tracing::warn!(
            scheme,
            "{}; the window parameters or the source's filter look wrong (a misspelt parameter, a filter the \
             source ignores). Further such records are only counted (see the summary)",
            redact(&page.examples.outside_window)
        );
    }
    if run.in_future == 0 && page.in_future > 0 {
        tracing::warn!(
            scheme,
            "{}; the source connection's `timezone` may be wrong, or the source's clock. Further such records \
             are only counted (see the summary)",
            redact(&page.examples.in_future)
        );
    }
    if run.field_unreadable == 0 && page.field_unreadable > 0 {
        tracing::warn!(
            scheme,
            "{}; source.incremental.field probably names the wrong field, and the window checks cannot judge these \
             records. Further such records are only counted (see the summary)",
            redact(&page.examples.field_unreadable)
        );
    }
    if run.stale_pages == 0 && page.stale_pages > 0 {
        tracing::warn!(
            scheme,
            "{}; the source seems to ignore the window filter. Further such pages are only counted (see the summary)",
            redact(&page.examples.stale_page)
        );
    }
    run.absorb(page);
    summary.outside_window = run.outside_window;
    summary.in_future = run.in_future;
    summary.field_unreadable = run.field_unreadable;
    summary.stale_pages = run.stale_pages;
}
