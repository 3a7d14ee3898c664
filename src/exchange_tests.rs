use super::*;
use crate::scheme::load_str;
use bytes::Bytes;
use serde_json::json;

const SCHEME: &str = r#"
name: t
connections:
  src: {connector: http, base_url: "http://127.0.0.1:1/api/", headers: {X-Token: "${TOKEN}"}}
  dst: {connector: http, base_url: "http://127.0.0.1:2"}
source:
  connection: src
  request: {path: /items, query: {from: "<< window.start >>", page: "<< page.number >>", empty: "<< page.cursor >>"}}
  response: {success: "<< body.ok >>", error: "<< body.msg >>"}
  records: $.data.items[*]
  pagination: {style: page_number, size: 10}
  incremental: {field: modified, start: "2024-01-01 00:00:00"}
  id: "<< id >>"
target:
  connection: dst
  key: "<< no >>"
  create:
    request: {path: /batch, body: {items: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>", row_ids: "$.data.ids[*]", row_errors: "$.data.errors[*]"}
  update:
    request: {method: PUT, path: "/items/<< target_id >>", body: "<< row >>"}
    response: {success: "<< body.code == 0 >>", id: $.data.id, row_error_key: "<< no >>", row_errors: "$.data.errors[*]"}
  fields: {no: "<< id >>"}
"#;

fn plan() -> crate::scheme::Plan {
    let loaded = load_str(SCHEME, "t.yaml", &|name| {
        (name == "TOKEN").then(|| "tok-123".to_string())
    });
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.plan.unwrap()
}

fn response(body: serde_json::Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        body: Bytes::from(body.to_string()),
        retry_after: None,
        set_cookies: Vec::new(),
    }
}

#[test]
fn builds_urls_query_headers_and_body() {
    let plan = plan();
    let mut vars = Map::new();
    vars.insert("window".into(), json!({"start": "2024-01-01 00:00:00"}));
    vars.insert("page".into(), json!({"number": 3, "cursor": null}));
    let scope = Scope {
        vars: Arc::new(vars),
        ..Scope::default()
    };
    let request = build_request(plan.source_connection(), &plan.source.request, &scope, None).unwrap();
    assert_eq!(
        request.url,
        "http://127.0.0.1:1/api/items?from=2024-01-01+00%3A00%3A00&page=3&empty="
    );
    assert_eq!(request.headers, vec![("X-Token".to_string(), "tok-123".to_string())]);
    assert!(request.body.is_none());
    let next = build_request(
        plan.source_connection(),
        &plan.source.request,
        &scope,
        Some("/items?p=2"),
    )
    .unwrap();
    assert_eq!(next.url, "http://127.0.0.1:1/api/items?p=2");

    let mut vars = Map::new();
    vars.insert("rows".into(), json!([{"no": "A"}, {"no": "B"}]));
    let scope = Scope {
        vars: Arc::new(vars),
        ..Scope::default()
    };
    let write = build_request(plan.target_connection(), &plan.target.create.request, &scope, None).unwrap();
    assert_eq!(write.body.unwrap(), br#"{"items":[{"no":"A"},{"no":"B"}]}"#.to_vec());
    assert!(write
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
}

#[test]
fn read_page_checks_envelope_and_list_key() {
    let plan = plan();
    let parent = records_parent(&plan.source.records);
    let ok = read_page(
        &plan.source.response,
        &plan.source.records,
        parent.as_ref(),
        &response(json!({"ok": true, "data": {"items": [{"id": 1}]}})),
        plan.source.response.codec,
    )
    .unwrap();
    assert_eq!(ok.records.len(), 1);
    let empty = read_page(
        &plan.source.response,
        &plan.source.records,
        parent.as_ref(),
        &response(json!({"ok": true, "data": {"items": []}})),
        plan.source.response.codec,
    )
    .unwrap();
    assert!(empty.records.is_empty());
    let missing = read_page(
        &plan.source.response,
        &plan.source.records,
        parent.as_ref(),
        &response(json!({"ok": true, "data": {"rows": []}})),
        plan.source.response.codec,
    );
    assert!(missing.unwrap_err().message.contains("list key is missing"));
    let rejected = read_page(
        &plan.source.response,
        &plan.source.records,
        parent.as_ref(),
        &response(json!({"ok": false, "msg": "bad sign"})),
        plan.source.response.codec,
    );
    assert!(rejected.unwrap_err().message.contains("bad sign"));
    let html = HttpResponse {
        status: 200,
        body: Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>"),
        retry_after: None,
        set_cookies: Vec::new(),
    };
    let garbled = read_page(
        &plan.source.response,
        &plan.source.records,
        parent.as_ref(),
        &html,
        plan.source.response.codec,
    );
    assert_eq!(garbled.unwrap_err().kind, ErrorKind::Decode);
}

#[test]
fn per_row_outcomes_by_index() {
    let plan = plan();
    let body =
        json!({"code": 0, "data": {"ids": ["T1", "T3"], "errors": [{"index": 1, "message": "FNumber is required"}]}});
    let outcomes = read_write_outcome(
        &plan.target.create,
        &response(body),
        3,
        &[None, None, None],
        "target.create.response",
    );
    assert_eq!(
        outcomes,
        vec![
            RowOutcome::written(Some("T1".into())),
            RowOutcome::Failed {
                message: "FNumber is required".into(),
                class: "rejected"
            },
            RowOutcome::written(Some("T3".into())),
        ]
    );
}

#[test]
fn whole_request_failure_fails_every_row() {
    let plan = plan();
    let outcomes = read_write_outcome(
        &plan.target.create,
        &response(json!({"code": 9, "message": "locked"})),
        2,
        &[None, None],
        "target.create.response",
    );
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, RowOutcome::Failed { message, .. } if message.contains("locked"))));
}

#[test]
fn unplaceable_errors_and_id_count_mismatch_are_not_guessed() {
    let plan = plan();
    let body = json!({"code": 0, "data": {"ids": [], "errors": [{"index": 7, "message": "?"}]}});
    let outcomes = read_write_outcome(
        &plan.target.create,
        &response(body),
        2,
        &[None, None],
        "target.create.response",
    );
    assert!(outcomes.iter().all(|o| matches!(o, RowOutcome::Failed { .. })));
    let body = json!({"code": 0, "data": {"ids": ["T1"], "errors": []}});
    let outcomes = read_write_outcome(
        &plan.target.create,
        &response(body),
        2,
        &[None, None],
        "target.create.response",
    );
    assert!(outcomes.iter().all(|o| matches!(
        o,
        RowOutcome::Failed {
            class: crate::protocol::UNMATCHED_ANSWER,
            ..
        }
    )));
}

#[test]
fn per_row_errors_by_key_and_single_id() {
    let plan = plan();
    let update = plan.target.update.as_ref().unwrap();
    let ok = read_write_outcome(
        update,
        &response(json!({"code": 0, "data": {"id": "T9"}})),
        1,
        &[Some("A".into())],
        "target.create.response",
    );
    assert_eq!(ok, vec![RowOutcome::written(Some("T9".into()))]);
    let failed = read_write_outcome(
        update,
        &response(json!({"code": 0, "data": {"errors": [{"no": "A", "message": "closed"}]}})),
        1,
        &[Some("A".into())],
        "target.create.response",
    );
    assert_eq!(
        failed,
        vec![RowOutcome::Failed {
            message: "closed".into(),
            class: "rejected"
        }]
    );
}
