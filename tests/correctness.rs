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
        // Look-ups run concurrently: each key has its own answer.
        ("/find?no=A", vec![Reply::json(json!({"id": "T-A"}))]),
        ("/find?no=B", vec![Reply::json(json!({}))]),
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

// ---- records deleted at the source -----------------------------------------------------

/// A generic source whose answers list deleted ids next to the records, and a target
/// that creates in batches (answering the new ids), updates and deletes.
const DELETING: &str = r#"
name: gone
connections:
  src: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
  dst: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}, in_flight: 1}
source:
  connection: src
  request: {method: GET, path: /items, query: {page: "<< page.number >>"}}
  records: $.items[*]
  deleted: $.deleted[*]
  pagination: {style: page_number, start: 1, size: 2, stop: empty_page}
  id: "<< code >>"
target:
  connection: dst
  batch: 10
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>", row_ids: "$.ids[*]"}
  update:
    request: {method: POST, path: /update, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>"}
  delete:
    request: {method: POST, path: /delete, body: {id: "<< target_id >>", source: "<< source_id >>"}}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>"}
  fields:
    FNumber: "<< code >>"
    FName: "<< name >>"
"#;

fn changes(items: Value, deleted: Value) -> Reply {
    Reply::json(json!({ "items": items, "deleted": deleted }))
}

fn nothing() -> Reply {
    changes(json!([]), json!([]))
}

fn ids(ids: Value) -> Vec<Reply> {
    vec![Reply::json(json!({"code": 0, "ids": ids}))]
}

async fn mapping_of(s: &Scripted, scheme: &str, source_id: &str) -> Option<ferry::store::Mapping> {
    use ferry::store::MappingStore;
    s.store
        .mappings_for(scheme, scheme, &[source_id.to_string()])
        .await
        .unwrap()
        .remove(source_id)
}

#[tokio::test]
async fn a_record_deleted_at_the_source_is_deleted_in_the_target_and_created_anew_if_it_returns() {
    let a = || json!({"code": "A", "name": "Alpha"});
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                changes(json!([a(), {"code": "B", "name": "Beta"}]), json!([])),
                nothing(),
                // Run 2: deletions alone fill a page; Z was never written.
                changes(json!([]), json!(["A", "Z"])),
                nothing(),
                // Run 3: A is back.
                changes(json!([a()]), json!([])),
                nothing(),
            ],
        ),
        (
            "/write",
            vec![
                Reply::json(json!({"code": 0, "ids": ["TA", "TB"]})),
                Reply::json(json!({"code": 0, "ids": ["TA2"]})),
            ],
        ),
        ("/delete", ok()),
    ])
    .await;
    let first = s.run(DELETING).await;
    assert_eq!((first.created, first.deleted, first.failed), (2, 0, 0), "{first:?}");

    let second = s.run(DELETING).await;
    assert_eq!(second.aborted, None, "{second:?}");
    assert_eq!(
        (second.read, second.deleted, second.failed, second.created),
        (0, 2, 0, 0),
        "{second:?}"
    );
    assert_eq!(second.exit_code(), ferry::error::exit::OK);
    assert_eq!(s.sim.bodies("/delete"), vec![json!({"id": "TA", "source": "A"})]);
    let deleted = mapping_of(&s, "gone", "A").await.unwrap();
    assert_eq!(deleted.status, ferry::store::MappingStatus::Deleted);
    assert_eq!(
        deleted.target_id.as_deref(),
        Some("TA"),
        "the deleted record is remembered"
    );
    assert!(mapping_of(&s, "gone", "Z").await.is_none());

    let third = s.run(DELETING).await;
    assert_eq!((third.created, third.updated, third.deleted), (1, 0, 0), "{third:?}");
    let back = mapping_of(&s, "gone", "A").await.unwrap();
    assert_eq!(
        (back.status, back.target_id.as_deref()),
        (ferry::store::MappingStatus::Created, Some("TA2"))
    );
    assert_eq!(s.sim.hits("/delete"), 1);
}

#[tokio::test]
async fn without_a_delete_operation_deleted_records_are_counted_and_the_target_keeps_them() {
    let scheme = DELETING.split("  delete:\n").next().unwrap().to_string()
        + "  fields:\n    FNumber: \"<< code >>\"\n    FName: \"<< name >>\"\n";
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                changes(json!([{"code": "A", "name": "Alpha"}]), json!([])),
                nothing(),
                changes(json!([]), json!(["A", "Z"])),
                nothing(),
            ],
        ),
        ("/write", ids(json!(["TA"]))),
        ("/delete", ok()),
    ])
    .await;
    assert_eq!(s.run(&scheme).await.created, 1);
    let second = s.run(&scheme).await;
    assert_eq!(
        (second.deleted, second.failed, second.aborted.clone()),
        (2, 0, None),
        "{second:?}"
    );
    assert_eq!(s.sim.hits("/delete"), 0);
    let kept = mapping_of(&s, "gone", "A").await.unwrap();
    assert_eq!(
        (kept.status, kept.target_id.as_deref()),
        (ferry::store::MappingStatus::Created, Some("TA"))
    );
}

#[tokio::test]
async fn of_two_events_of_one_id_in_a_run_the_later_wins() {
    let pages = |s: &str| -> Vec<Reply> {
        let _ = s;
        vec![
            changes(
                json!([{"code": "A", "name": "Alpha"}, {"code": "B", "name": "Beta"}]),
                json!([]),
            ),
            nothing(),
            // Run 2: A changes then goes; B goes then comes back changed.
            changes(json!([{"code": "A", "name": "Alpha 2"}]), json!(["B"])),
            changes(json!([{"code": "B", "name": "Beta 2"}]), json!(["A"])),
            nothing(),
        ]
    };
    // One batch: the later event replaces the earlier one before anything is sent.
    let s = Scripted::start(vec![
        ("/items", pages("batch")),
        ("/write", ids(json!(["TA", "TB"]))),
        ("/update", ok()),
        ("/delete", ok()),
    ])
    .await;
    s.run(DELETING).await;
    let second = s.run(DELETING).await;
    assert_eq!(
        (second.updated, second.deleted, second.created, second.duplicates),
        (1, 1, 0, 1),
        "{second:?}"
    );
    assert_eq!(s.sim.bodies("/delete"), vec![json!({"id": "TA", "source": "A"})]);
    assert_eq!(
        s.sim.bodies("/update"),
        vec![json!({"rows": [{"FNumber": "B", "FName": "Beta 2"}]})]
    );

    // One event per batch: batches sharing an id run in order, so B is deleted and then
    // created anew, and A is updated and then deleted.
    let scheme = DELETING.replace("batch: 10", "batch: 1");
    let s = Scripted::start(vec![
        ("/items", pages("row")),
        (
            "/write",
            vec![
                Reply::json(json!({"code": 0, "ids": ["TA"]})),
                Reply::json(json!({"code": 0, "ids": ["TB"]})),
                Reply::json(json!({"code": 0, "ids": ["TB2"]})),
            ],
        ),
        ("/update", ok()),
        ("/delete", ok()),
    ])
    .await;
    s.run(&scheme).await;
    let second = s.run(&scheme).await;
    assert_eq!(
        (second.updated, second.deleted, second.created, second.duplicates),
        (1, 2, 1, 0),
        "{second:?}"
    );
    assert_eq!(
        s.sim.bodies("/delete"),
        vec![json!({"id": "TB", "source": "B"}), json!({"id": "TA", "source": "A"})]
    );
    assert_eq!(
        s.sim.bodies("/update"),
        vec![json!({"rows": [{"FNumber": "A", "FName": "Alpha 2"}]})]
    );
    let a = mapping_of(&s, "gone", "A").await.unwrap();
    let b = mapping_of(&s, "gone", "B").await.unwrap();
    assert_eq!(a.status, ferry::store::MappingStatus::Deleted);
    assert_eq!(
        (b.status, b.target_id.as_deref()),
        (ferry::store::MappingStatus::Created, Some("TB2"))
    );
}

#[tokio::test]
async fn a_delete_the_target_refuses_goes_to_the_ledger_and_keeps_the_mapping() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                changes(json!([{"code": "A", "name": "Alpha"}]), json!([])),
                nothing(),
                changes(json!([]), json!(["A"])),
                nothing(),
            ],
        ),
        ("/write", ids(json!(["TA"]))),
        (
            "/delete",
            vec![Reply::json(json!({"code": 7, "message": "customer TA is audited"}))],
        ),
    ])
    .await;
    s.run(DELETING).await;
    let second = s.run(DELETING).await;
    assert_eq!((second.deleted, second.failed), (0, 1), "{second:?}");
    assert_eq!(second.exit_code(), ferry::error::exit::ROWS_FAILED);
    let failures = s.open_failures("gone").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].source_id, "A");
    assert!(
        failures[0].message.contains("deleting its target record TA failed")
            && failures[0].message.contains("customer TA is audited"),
        "{}",
        failures[0].message
    );
    assert_eq!(failures[0].payload, None, "nothing to replay as a record");
    let kept = mapping_of(&s, "gone", "A").await.unwrap();
    assert_eq!(kept.status, ferry::store::MappingStatus::Created);
}

#[tokio::test]
async fn a_deleted_record_is_not_brought_back_by_replaying_its_old_failure() {
    let s = Scripted::start(vec![
        (
            "/items",
            vec![
                // B lacks `name`: it fails and waits in the ledger.
                changes(json!([{"code": "A", "name": "Alpha"}, {"code": "B"}]), json!([])),
                nothing(),
                changes(json!([]), json!(["B"])),
                nothing(),
                nothing(),
            ],
        ),
        ("/write", ids(json!(["TA"]))),
        ("/delete", ok()),
    ])
    .await;
    let first = s.run(DELETING).await;
    assert_eq!((first.created, first.failed), (1, 1), "{first:?}");
    let second = s.run(DELETING).await;
    assert_eq!(second.deleted, 1, "{second:?}");
    assert!(
        s.open_failures("gone").await.is_empty(),
        "the deletion settled B's failure"
    );
    let writes = s.sim.hits("/write");
    let third = s.run(DELETING).await;
    assert_eq!((third.replayed, third.created, third.failed), (0, 0, 0), "{third:?}");
    assert_eq!(s.sim.hits("/write"), writes);
    assert_eq!(s.sim.hits("/delete"), 0, "B never reached the target");
}

// ---- Simply CRM `sync` -----------------------------------------------------------------

/// Simply CRM accounts read with `sync` from the scripted simulator, written to a generic
/// target that deletes what the CRM deleted.
const SYNCING: &str = r#"
name: synced
connections:
  crm:
    connector: simply-crm
    base_url: "${SIM_URL}"
    retry: {attempts: 1}
    settings: {username: admin, access_key: k, sync_type: application}
  dst: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
source:
  connection: crm
  request: {api: sync, body: {modifiedTime: 1709280000, elementType: Accounts}}
  id: "<< id >>"
target:
  connection: dst
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>", row_ids: "$.ids[*]"}
  delete:
    request: {method: POST, path: /delete, body: {ids: "<< target_ids | join(',') >>", rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>"}
  fields: {name: "<< accountname >>"}
"#;

fn vtiger(result: Value) -> Reply {
    Reply::json(json!({"success": true, "result": result}))
}

fn login() -> Vec<Reply> {
    vec![
        vtiger(json!({"token": "5e9f4b2a1c3d7", "serverTime": 1709280000, "expireTime": 1709280300})),
        vtiger(json!({"sessionName": "s1", "userId": "19x1", "version": "0.22"})),
    ]
}

fn account(id: &str) -> Value {
    json!({"id": id, "accountname": format!("Account {id}")})
}

#[tokio::test]
async fn simply_sync_pages_while_more_and_its_deleted_ids_reach_target_delete() {
    let mut crm = login();
    crm.push(vtiger(json!({"updated": [account("11x1"), account("11x2")], "deleted": [], "lastModifiedTime": 1709280100, "more": true})));
    crm.push(vtiger(
        json!({"updated": [account("11x3")], "deleted": [], "lastModifiedTime": 1709280200, "more": false}),
    ));
    crm.extend(login());
    crm.push(vtiger(
        json!({"updated": [], "deleted": ["11x1", "11x3", "11x9"], "lastModifiedTime": 1709280300, "more": false}),
    ));
    let s = Scripted::start(vec![
        ("/webservice.php", crm),
        ("/write", ids(json!(["T1", "T2", "T3"]))),
        ("/delete", ok()),
    ])
    .await;
    let first = s.run(SYNCING).await;
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.pages), (3, 3, 2), "{first:?}");

    let second = s.run(SYNCING).await;
    assert_eq!((second.deleted, second.failed), (3, 0), "{second:?}");
    assert_eq!(
        s.sim.bodies("/delete"),
        vec![json!({
            "ids": "T1,T3",
            "rows": [{"source_id": "11x1", "target_id": "T1"}, {"source_id": "11x3", "target_id": "T3"}]
        })]
    );
}

#[tokio::test]
async fn a_simply_sync_whose_last_modified_time_stalls_stops_the_run() {
    let mut crm = login();
    crm.push(vtiger(json!({"updated": [account("11x1"), account("11x2")], "deleted": [], "lastModifiedTime": 1709280100, "more": true})));
    // More changes wait, says the server, but the cursor stays where it was.
    crm.push(vtiger(
        json!({"updated": [account("11x3")], "deleted": [], "lastModifiedTime": 1709280100, "more": true}),
    ));
    let s = Scripted::start(vec![
        ("/webservice.php", crm),
        ("/write", ids(json!(["T1", "T2", "T3"]))),
    ])
    .await;
    let summary = s.run(SYNCING).await;
    let reason = summary.aborted.clone().unwrap_or_default();
    assert!(
        reason.contains("page 2 of the source")
            && reason.contains("lastModifiedTime 1709280100 did not advance past the modifiedTime 1709280100"),
        "{reason}"
    );
    assert_eq!(summary.exit_code(), ferry::error::exit::ABORTED);
    assert_eq!(s.sim.hits("/webservice.php"), 4, "no third sync call");
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
