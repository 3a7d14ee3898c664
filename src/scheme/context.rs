//! The names Ferry itself puts into a template's scope, and what each one holds.
//!
//! Validation checks every member a template reads from these names against the shapes
//! here (`page.sise` is an error with a did-you-mean), so the shapes must match the values
//! the engine builds. The engine builds `run`, `window` and `batch` with the functions below,
//! and `page` comes from [`crate::paginate::PageRequest::to_value`]; tests compare each
//! value's members with its shape.
//!
//! Data Ferry does not own stays [`Shape::Open`]: a record's fields and a response `body`
//! are whatever the vendor sends. The scheme never says which keys a body has (its
//! JSONPaths say where to find some, not that others are absent), so no member of `body`
//! is rejected. A written row (`row`, the items of `rows`) is the exception: its members are
//! exactly the keys of `target.fields`.

use crate::template::Shape;
use serde_json::{json, Value};

/// What `page` holds in source request templates.
pub fn page() -> Shape {
    Shape::scalars(&[
        ("index", "a number (pages requested so far in this window, from 0)"),
        ("number", "a number"),
        ("offset", "a number"),
        ("size", "a number, or nothing when the pagination has no size"),
        ("cursor", "text, or nothing on the first page"),
    ])
}

/// What `window` holds when `source.incremental` is set.
pub fn window() -> Shape {
    Shape::scalars(&[("start", "text (a time)"), ("end", "text (a time)")])
}

/// What `run` holds everywhere the run's context is in scope.
pub fn run() -> Shape {
    Shape::scalars(&[("id", "a number"), ("scheme", "text"), ("dry_run", "true or false")])
}

/// What `batch` holds in a write request.
pub fn batch() -> Shape {
    Shape::scalars(&[
        ("seq", "a number (the batch's position in the run)"),
        ("size", "a number (rows in this batch; 1 for `per: row`)"),
        (
            "key",
            "text naming this request, the same when it is sent again (for an idempotency key)",
        ),
    ])
}

/// `now`: the run's start time as text in the scheme's zone.
pub fn now() -> Shape {
    Shape::Scalar("text (the run's start time)")
}

/// `status`: the HTTP status code of a response.
pub fn status() -> Shape {
    Shape::Scalar("a number (the HTTP status code)")
}

/// The `run` value the engine passes to templates.
pub fn run_value(id: i64, scheme: &str, dry_run: bool) -> Value {
    json!({"id": id, "scheme": scheme, "dry_run": dry_run})
}

/// The `window` value the engine passes to source requests.
pub fn window_value(start: String, end: String) -> Value {
    json!({"start": start, "end": end})
}

/// The `batch` value the engine passes to write requests. `key` is the same every time
/// this request is sent: in a retry, and when a later run resends it after a crash.
pub fn batch_value(seq: u64, size: usize, key: &str) -> Value {
    json!({"seq": seq, "size": size, "key": key})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(value: &Value) -> Vec<String> {
        let mut names: Vec<String> = value.as_object().expect("a mapping").keys().cloned().collect();
        names.sort();
        names
    }

    fn declared(shape: &Shape) -> Vec<String> {
        let mut names: Vec<String> = shape.member_names().iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn declared_members_are_the_members_the_engine_builds() {
        assert_eq!(members(&run_value(7, "s", true)), declared(&run()));
        assert_eq!(members(&window_value("a".into(), "b".into())), declared(&window()));
        assert_eq!(members(&batch_value(1, 2, "7-1-create")), declared(&batch()));
        let page_value = crate::paginate::PageRequest {
            index: 0,
            number: 1,
            offset: 0,
            size: Some(10),
            cursor: None,
            next_url: None,
        }
        .to_value();
        assert_eq!(members(&page_value), declared(&page()));
    }
}
