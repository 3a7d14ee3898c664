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

#[tokio::test]
async fn an_answer_whose_ids_cannot_be_matched_stops_the_run_after_the_first_batch() {
    let scheme = SCHEME.replace("batch: 10", "batch: 2").replace(
        "response: {success: \"<< body.code == 0 >>\"}",
        "response: {success: \"<< body.code == 0 >>\", row_ids: \"$.data.ids[*]\"}",
    );
    let items = || {
        vec![
            page(json!([{"code": "A", "customer_code": "1"}, {"code": "B", "customer_code": "2"}])),
            page(json!([{"code": "C", "customer_code": "3"}, {"code": "D", "customer_code": "4"}])),
            page(json!([])),
        ]
    };
    let answer = vec![Reply::json(json!({"code": 0, "ids": [11, 12]}))];
    let s = Scripted::start(vec![("/items", items()), ("/write", answer.clone())]).await;
    let summary = s.run(&scheme).await;
    let reason = summary.aborted.clone().unwrap_or_default();
    assert!(
        reason.contains("`target.create.response.row_ids` (`$.data.ids[*]`) found 0 id(s)")
            && reason.contains("top-level keys are: code, ids")
            && reason.contains("stopped before sending another batch"),
        "{reason}"
    );
    assert_eq!(summary.exit_code(), ferry::error::exit::ABORTED);
    assert_eq!(s.sim.hits("/write"), 1, "no batch after the first");
    assert_eq!(s.store.checkpoint("strict", "window_end").await.unwrap(), None);
    // Without a look-up the rows may have landed: held, never created again blindly.
    let failures = s.open_failures("strict").await;
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|f| f.error_class == "uncertain"), "{failures:?}");
    let held = ferry::store::MappingStore::mappings_for(&s.store, "strict", "strict", &["A".into(), "B".into()])
        .await
        .unwrap();
    assert!(
        held.values().all(|m| m.status == ferry::store::MappingStatus::Pending),
        "{held:?}"
    );

    // With a look-up, the batch's rows are settled through it.
    let with_lookup = scheme.replace(
        "  fields:",
        "  key: \"<< FNumber >>\"\n  lookup:\n    request: {method: GET, path: /find, query: {no: \"<< key >>\"}}\n    id: $.id\n  fields:",
    );
    let s = Scripted::start(vec![
        ("/items", items()),
        ("/write", answer),
        ("/find", vec![Reply::json(json!({"id": "T-A"})), Reply::json(json!({}))]),
    ])
    .await;
    let summary = s.run(&with_lookup).await;
    assert!(summary.aborted.is_some());
    assert_eq!(s.sim.hits("/write"), 1);
    let mapped = ferry::store::MappingStore::mappings_for(&s.store, "strict", "strict", &["A".into(), "B".into()])
        .await
        .unwrap();
    assert_eq!(mapped["A"].target_id.as_deref(), Some("T-A"));
    let failures = s.open_failures("strict").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].source_id.as_str(), failures[0].error_class.as_str()),
        ("B", "not_written")
    );
}

#[tokio::test]
async fn soft_errors_marked_retryable_are_repeated_with_backoff() {
    // A 200 that says "busy": without `retry` the run dies on it; with it, the request is
    // simply repeated, on reads and on writes.
    let busy = || Reply::json(json!({"success": false, "code": "BUSY", "message": "server busy"}));
    let routes = || {
        vec![
            (
                "/items",
                vec![
                    page(json!([{"code": "A", "customer_code": "1"}, {"code": "B", "customer_code": "2"}])),
                    busy(),
                    busy(),
                    page(json!([{"code": "C", "customer_code": "3"}])),
                ],
            ),
            ("/write", vec![busy(), Reply::json(json!({"code": 0}))]),
        ]
    };
    let soft = SCHEME
        .replace(
            "retry: {attempts: 1}}\n  dst:",
            "retry: {attempts: 4, backoff: 1ms}}\n  dst:",
        )
        .replace(
            "dst: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 1}}",
            "dst: {connector: http, base_url: \"${SIM_URL}\", retry: {attempts: 4, backoff: 1ms}}",
        )
        .replace(
            "  records: $.items[*]",
            "  response: {retry: \"<< body.code | default('') == 'BUSY' >>\", error: \"<< body.message | default('') >>\"}\n  records: $.items[*]",
        )
        .replace(
            "response: {success: \"<< body.code == 0 >>\"}",
            "response: {success: \"<< body.code == 0 >>\", retry: \"<< body.code == 'BUSY' >>\"}",
        );
    let s = Scripted::start(routes()).await;
    let summary = s.run(&soft).await;
    assert_eq!(
        (summary.aborted.clone(), summary.created, summary.failed),
        (None, 3, 0),
        "{summary:?}"
    );
    assert!(s.sim.hits("/items") >= 4, "the busy pages were asked again");
    assert_eq!(s.sim.hits("/write"), 2);

    let s = Scripted::start(routes()).await;
    let summary = s.run(SCHEME).await;
    assert!(summary.aborted.is_some() || summary.failed > 0, "{summary:?}");
}
