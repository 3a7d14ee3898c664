//! No run that exits 0 while the data is wrong: each test here shows Ferry stopping, or
//! parking the record in the ledger with the reason, where it once sent wrong data and
//! reported success.

mod support;

use ferry::sim::scripted::Reply;
use ferry::store::{CheckpointStore, FailureLedger, FailureStatus};
use serde_json::{json, Value};
use support::Scripted;

/// A generic source of `items` (pages of 2) and a batch target at `/write`.
const SCHEME: &str = r#"
name: strict
connections:
  src: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
  dst: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
source:
  connection: src
  request: {method: GET, path: /items, query: {page: "<< page.number >>"}}
  records: $.items[*]
  pagination: {style: page_number, start: 1, size: 2, stop: short_page}
  incremental: {start: "2024-01-01 00:00:00", window: 3650d}
  id: "<< code >>"
target:
  connection: dst
  batch: 10
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>"}
  fields:
    FNumber: "<< code >>"
    FCustomer: "<< customer_code >>"
"#;

fn page(items: Value) -> Reply {
    Reply::json(json!({ "items": items }))
}

fn ok() -> Vec<Reply> {
    vec![Reply::json(json!({"code": 0}))]
}

/// Every row the target received, in order.
fn written(s: &Scripted) -> Vec<Value> {
    s.sim
        .bodies("/write")
        .into_iter()
        .flat_map(|body| body["rows"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_missing_field_fails_its_record_naming_the_field_and_the_keys_it_has() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                page(json!([{"code": "A", "customer_code": "C1"}, {"code": "B", "customer": "C2"}])),
                page(json!([{"code": "C", "customer_code": null}])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let summary = s.run(SCHEME).await;
    assert_eq!(summary.aborted, None);
    assert_eq!((summary.created, summary.failed), (2, 1), "{summary:?}");
    assert_eq!(summary.exit_code(), ferry::error::exit::ROWS_FAILED);
    assert_eq!(summary.missing_fields.get("customer_code"), Some(&1));
    // Nothing went out with a null in place of the missing field; a present null is a value.
    assert_eq!(
        written(&s),
        vec![
            json!({"FNumber": "A", "FCustomer": "C1"}),
            json!({"FNumber": "C", "FCustomer": null})
        ]
    );
    let failures = s.open_failures("strict").await;
    assert_eq!(failures.len(), 1);
    let failure = &failures[0];
    assert_eq!(failure.source_id, "B");
    assert_eq!(failure.error_class, "missing_field");
    assert!(
        failure
            .message
            .contains("target.fields.FCustomer: missing field `customer_code`")
            && failure.message.contains("the record has: code, customer"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_first_page_whose_every_record_lacks_a_field_stops_the_run() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![page(
                json!([{"code": "A", "customer": "C1"}, {"code": "B", "customer": "C2"}]),
            )],
        ),
        ("/write", ok()),
    ])
    .await;
    let summary = s.run(SCHEME).await;
    let reason = summary.aborted.clone().unwrap_or_default();
    assert!(
        reason.contains("every record of the first page (2) lacks `customer_code`")
            && reason.contains("the record has: code, customer"),
        "{reason}"
    );
    assert_eq!(summary.exit_code(), ferry::error::exit::ABORTED);
    assert_eq!(s.sim.hits("/write"), 0, "nothing may be sent");
    assert_eq!(s.store.checkpoint("strict", "window_end").await.unwrap(), None);
}

#[tokio::test]
async fn default_and_optional_opt_a_field_out_and_lenient_restores_nulls() {
    let items = || {
        vec![(
            "/items",
            vec![
                page(json!([{"code": "A", "customer_code": "C1"}, {"code": "B"}])),
                page(json!([])),
            ],
        )]
    };
    for (field, expected) in [
        ("\"<< customer_code | default('NONE') >>\"", json!("NONE")),
        ("\"<< customer_code | optional >>\"", Value::Null),
    ] {
        let mut routes = items();
        routes.push(("/write", ok()));
        let s = Scripted::start(routes).await;
        let scheme = SCHEME.replace("\"<< customer_code >>\"", field);
        let summary = s.run(&scheme).await;
        assert_eq!((summary.created, summary.failed), (2, 0), "{field}: {summary:?}");
        assert_eq!(written(&s)[1]["FCustomer"], expected, "{field}");
    }
    let mut routes = items();
    routes.push(("/write", ok()));
    let s = Scripted::start(routes).await;
    let summary = s.run(&format!("{SCHEME}undefined: lenient\n")).await;
    assert_eq!((summary.created, summary.failed), (2, 0));
    assert_eq!(written(&s)[1]["FCustomer"], Value::Null);
}

#[tokio::test]
async fn replaying_after_the_scheme_is_fixed_sends_the_right_values() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                page(json!([{"code": "A", "customer_code": "C1"}, {"code": "B", "customer": "C2"}])),
                page(json!([])),
                page(json!([])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let first = s.run(SCHEME).await;
    assert_eq!((first.created, first.failed), (1, 1));
    let fixed = SCHEME.replace("<< customer_code >>", "<< customer_code | default(customer) >>");
    let second = s.run(&fixed).await;
    assert_eq!(
        (second.replayed, second.created, second.failed),
        (1, 1, 0),
        "{second:?}"
    );
    assert_eq!(written(&s).last(), Some(&json!({"FNumber": "B", "FCustomer": "C2"})));
    assert!(s.open_failures("strict").await.is_empty());
    let resolved = s
        .store
        .list_failures(Some("strict"), Some(FailureStatus::Resolved), 10)
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
}

#[tokio::test]
async fn times_cross_the_wire_in_each_servers_zone() {
    // The source keeps UTC, the target China time: the window is written in UTC, a naive
    // time in a record is read as UTC and written for the target in China time.
    let scheme = SCHEME
        .replace(
            "src: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 1}}",
            "src: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 1}, timezone: UTC}",
        )
        .replace(
            "query: {page: \"<< page.number >>\"}",
            "query: {page: \"<< page.number >>\", from: \"<< window.start | datetime >>\"}",
        )
        .replace(
            "FCustomer: \"<< customer_code >>\"",
            "FDate: \"<< changed | datetime >>\"",
        );
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                page(json!([{"code": "A", "changed": "2024-03-01 00:30:00"}])),
                page(json!([])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let plan = s.plan(&scheme);
    assert_eq!(plan.source_connection().zone, chrono_tz::UTC);
    assert_eq!(plan.target_connection().zone, chrono_tz::Asia::Shanghai);
    let summary = s.run(&scheme).await;
    assert_eq!((summary.created, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(
        written(&s),
        vec![json!({"FNumber": "A", "FDate": "2024-03-01 08:30:00"})]
    );
}

/// [`SCHEME`] with windows of one day on `changed` (naive China time, the source's zone)
/// and one request at a time, so that the scripted pages arrive in order.
fn windowed() -> String {
    SCHEME
        .replace(
            "src: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 1}}",
            "src: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 1}, in_flight: 1}",
        )
        .replace(
            "query: {page: \"<< page.number >>\"}",
            "query: {page: \"<< page.number >>\", from: \"<< window.start | datetime >>\"}",
        )
        .replace(
            "incremental: {start: \"2024-01-01 00:00:00\", window: 3650d}",
            "incremental: {field: changed, start: \"2024-03-01 00:00:00\", window: 1d, lookback: 10m}",
        )
}

/// A time written in China time (the scheme's zone).
fn china(text: &str) -> chrono::DateTime<chrono::Utc> {
    ferry::window::parse_time(text, chrono_tz::Asia::Shanghai).unwrap()
}

fn pinned(now: &str) -> ferry::engine::RunOptions {
    ferry::engine::RunOptions {
        now: Some(china(now)),
        ..Default::default()
    }
}

fn order(code: &str, changed: Option<&str>) -> Value {
    let mut record = json!({"code": code, "customer_code": format!("C-{code}")});
    if let Some(changed) = changed {
        record["changed"] = json!(changed);
    }
    record
}

#[tokio::test]
async fn records_outside_their_window_in_the_future_or_without_the_field_are_counted_not_failed() {
    // Two windows, [02-29 23:50, 03-02 00:00) and [03-01 23:50, 03-03 00:00).
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                page(json!([
                    order("A", Some("2024-03-01 10:00:00")),
                    order("B", Some("2023-06-01 00:00:00"))
                ])),
                page(json!([])),
                page(json!([
                    order("C", Some("2024-03-02 10:00:00")),
                    order("D", Some("2024-03-09 00:00:00"))
                ])),
                page(json!([order("E", None)])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let summary = s.run_with(&windowed(), pinned("2024-03-03 00:00:00")).await;
    assert_eq!(summary.aborted, None);
    assert_eq!(
        (summary.windows, summary.read, summary.created, summary.failed),
        (2, 5, 5, 0),
        "{summary:?}"
    );
    assert_eq!(
        (
            summary.outside_window,
            summary.in_future,
            summary.field_unreadable,
            summary.stale_pages
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(summary.exit_code(), ferry::error::exit::OK, "warnings, not failures");
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        (json["outside_window"].as_u64(), json["in_future"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn a_first_page_entirely_outside_its_window_stops_the_run() {
    // The source ignores the window filter and sends its oldest records.
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                page(json!([
                    order("A", Some("2019-05-01 08:00:00")),
                    order("B", Some("2019-06-01 08:00:00"))
                ])),
                page(json!([])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let summary = s.run_with(&windowed(), pinned("2024-03-03 00:00:00")).await;
    let reason = summary.aborted.clone().unwrap_or_default();
    assert!(
        reason.contains(
            "every record of the first page (2) lies outside the window it was read in, \
             [2024-02-29 23:50:00, 2024-03-02 00:00:00) Asia/Shanghai"
        ) && reason.contains("`changed` values run from `2019-05-01 08:00:00` to `2019-06-01 08:00:00`")
            && reason.contains("record `A`"),
        "{reason}"
    );
    assert_eq!(summary.exit_code(), ferry::error::exit::ABORTED);
    assert_eq!(s.sim.hits("/write"), 0, "nothing may be sent");
    assert_eq!(s.store.checkpoint("strict", "window_end").await.unwrap(), None);
}

#[tokio::test]
async fn a_page_older_than_the_checkpoint_is_counted() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                // First run: one window ending 03-02 00:00.
                page(json!([
                    order("A", Some("2024-03-01 10:00:00")),
                    order("B", Some("2024-03-01 11:00:00"))
                ])),
                page(json!([])),
                // Second run, resumed from 03-02 00:00: a new page, then A again.
                page(json!([
                    order("C", Some("2024-03-02 10:00:00")),
                    order("D", Some("2024-03-02 11:00:00"))
                ])),
                page(json!([order("A", Some("2024-03-01 10:00:00"))])),
            ],
        ),
        ("/write", ok()),
    ])
    .await;
    let first = s.run_with(&windowed(), pinned("2024-03-02 00:00:00")).await;
    assert_eq!(
        (first.created, first.stale_pages, first.outside_window),
        (2, 0, 0),
        "{first:?}"
    );
    let second = s.run_with(&windowed(), pinned("2024-03-03 00:00:00")).await;
    assert_eq!(second.aborted, None);
    assert_eq!(
        (second.read, second.failed, second.stale_pages, second.outside_window),
        (3, 0, 1, 1),
        "{second:?}"
    );
}

/// [`SCHEME`] plus an amount, for `ferry check`.
fn with_amount(scheme: &str) -> String {
    scheme.replace(
        "    FCustomer: \"<< customer_code >>\"",
        "    FCustomer: \"<< customer_code >>\"\n    FAmount: \"<< amount | float >>\"",
    )
}

#[tokio::test]
async fn check_renders_live_records_and_reports_each_problem_without_writing() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![page(json!([
                // In both windows (the later one starts 10 minutes early).
                {"code": "A", "customer_code": "C1", "amount": 1, "changed": "2024-03-01 23:55:00"},
                {"code": "B", "customer": "C2", "amount": 2, "changed": "2024-03-01 23:56:00"},
                {"code": "C", "customer_code": "C3", "amount": "x", "changed": "2024-03-01 23:57:00"},
            ]))],
        ),
        ("/write", ok()),
    ])
    .await;
    let options = ferry::engine::CheckOptions {
        now: Some(china("2024-03-03 00:00:00")),
        ..Default::default()
    };
    let report = s.check(&with_amount(&windowed()), options).await.unwrap();
    assert_eq!((report.windows, report.windows_read), (2, 2));
    assert_eq!((report.records, report.ok, report.failed), (6, 2, 4), "{report:#?}");
    let missing = &report.missing_fields["customer_code"];
    assert_eq!(missing.records, 2);
    assert!(
        missing
            .example
            .starts_with("record `B`: target.fields.FCustomer: missing field `customer_code`")
            && missing
                .example
                .contains("the record has: code, customer, amount, changed"),
        "{}",
        missing.example
    );
    let amount = &report.errors["target.fields.FAmount"];
    assert_eq!(amount.records, 2);
    assert!(amount.example.starts_with("record `C`:"), "{}", amount.example);
    assert_eq!(report.stops, None);
    assert_eq!(report.exit_code(), ferry::error::exit::ROWS_FAILED);
    let times = report.times.as_ref().unwrap();
    assert_eq!((times.tally.records, times.tally.outside_window), (6, 0));
    assert_eq!(times.newest_local.as_deref(), Some("2024-03-01 23:57:00"));
    assert_eq!(s.sim.hits("/write"), 0, "check sends nothing to the target");
    assert_eq!(s.sim.hits("/items"), 2, "one page per window");
}

#[tokio::test]
async fn check_shows_a_zone_mistake_as_whole_hours_between_the_newest_change_and_now() {
    // The server keeps UTC but the scheme reads its times as China time: a record changed a
    // minute ago shows as changed eight hours ago. Nothing else can see that mistake.
    let s = Scripted::start(vec![(
        "/items",
        vec![page(json!([order("A", Some("2024-03-01 02:00:00"))]))],
    )])
    .await;
    let options = ferry::engine::CheckOptions {
        now: Some("2024-03-01T02:01:00Z".parse().unwrap()),
        ..Default::default()
    };
    let report = s.check(&windowed(), options).await.unwrap();
    let times = report.times.as_ref().unwrap();
    assert_eq!(times.tally.outside_window + times.tally.in_future, 0);
    assert_eq!(times.newest_local.as_deref(), Some("2024-03-01 02:00:00"));
    assert_eq!(times.now, "2024-03-01 10:01:00");
    assert_eq!(times.zone, "Asia/Shanghai");
    assert_eq!(
        (times.newest_age_seconds, times.whole_hours),
        (Some(8 * 3600 + 60), Some(8))
    );
    assert!(report.has_warnings());
    assert_eq!(report.exit_code(), ferry::error::exit::OK);

    // The other way round (the server keeps China time, the scheme says UTC) puts the change
    // in the future, and a run would stop on it.
    let scheme = windowed().replace("in_flight: 1}", "in_flight: 1, timezone: UTC}");
    let s = Scripted::start(vec![(
        "/items",
        vec![page(json!([order("A", Some("2024-03-01 10:00:00"))]))],
    )])
    .await;
    let options = ferry::engine::CheckOptions {
        now: Some("2024-03-01T02:01:00Z".parse().unwrap()),
        ..Default::default()
    };
    let report = s.check(&scheme, options).await.unwrap();
    let times = report.times.as_ref().unwrap();
    assert_eq!((times.tally.in_future, times.whole_hours), (1, Some(-8)));
    assert!(
        times
            .tally
            .examples
            .in_future
            .as_deref()
            .unwrap()
            .contains("is 7h 59m 0s in the future"),
        "{times:?}"
    );
    assert!(report
        .stops
        .as_deref()
        .unwrap_or_default()
        .contains("lies outside the window"));
    assert_eq!(report.exit_code(), ferry::error::exit::ROWS_FAILED);
}

#[tokio::test]
async fn check_fails_when_the_source_cannot_be_read() {
    let s = Scripted::start(vec![("/items", vec![Reply::raw(500, "text/plain", "down")])]).await;
    let error = s.check(&windowed(), Default::default()).await.unwrap_err();
    assert_ne!(error.kind, ferry::error::ErrorKind::Config);
    assert!(error.message.contains("reading window"), "{}", error.message);
}
