//! Bad input, tried on purpose: answers no well-behaved API sends, served by the scripted
//! simulator on 127.0.0.1:0. Every case ends in a clear error or a ledger row — never a
//! panic, never a moved checkpoint, never a silently dropped record.

use ferry::engine::{run, RunOptions, Summary};
use ferry::http::HttpClient;
use ferry::scheme::load_str;
use ferry::sim::scripted::{Reply, ScriptedSim};
use ferry::store::{CheckpointStore, FailureLedger, FailureStage, FailureStatus, MappingStore, Store};
use serde_json::json;

const SCHEME: &str = r#"
name: bad-input
connections:
  src: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}, max_response_mib: 1}
  dst: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
source:
  connection: src
  request: {method: GET, path: /items, query: {page: "<< page.number >>"}}
  response: {success: "<< body.ok >>", error: "<< body.message >>"}
  records: $.data.items[*]
  pagination: {style: page_number, start: 1, size: 2, stop: short_page}
  incremental: {start: "2024-01-01 00:00:00", window: 3650d}
  id: "<< code >>"
target:
  connection: dst
  batch: 10
  key: "<< FNumber >>"
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>"}
  fields:
    FNumber: "<< code >>"
    FAmount: "<< amount | float >>"
"#;

fn ok_write() -> Vec<Reply> {
    vec![Reply::json(json!({"code": 0}))]
}

struct Outcome {
    summary: Summary,
    store: Store,
    sim: ScriptedSim,
}

impl Outcome {
    async fn open_failures(&self) -> Vec<ferry::store::Failure> {
        self.store
            .list_failures(Some("bad-input"), Some(FailureStatus::Open), 100)
            .await
            .unwrap()
    }
}

/// Runs `scheme` against a scripted `/items` source and `/write` target.
async fn run_scripted(scheme: &str, items: Vec<Reply>, write: Vec<Reply>) -> Outcome {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sim, handle) = ScriptedSim::start(listener, vec![("/items", items), ("/write", write)])
        .await
        .unwrap();
    let url = handle.base_url();
    let loaded = load_str(scheme, "bad-input.yaml", &|name| {
        (name == "SIM_URL").then(|| url.clone())
    });
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let summary = run(&plan, &store, &HttpClient::new().unwrap(), &RunOptions::default())
        .await
        .expect("bad input is reported in the summary, not as a crash");
    handle.shutdown().await;
    Outcome { summary, store, sim }
}

/// The source answer is refused: the run aborts with `fragment` in its reason, writes
/// nothing and keeps the checkpoint where it was.
async fn assert_refused(items: Vec<Reply>, fragment: &str) {
    let out = run_scripted(SCHEME, items, ok_write()).await;
    let reason = out.summary.aborted.clone().unwrap_or_default();
    assert!(reason.contains(fragment), "expected `{fragment}` in: {reason:?}");
    assert_eq!(out.summary.created, 0);
    assert_eq!(out.sim.hits("/write"), 0);
    assert_eq!(out.summary.exit_code(), ferry::error::exit::ABORTED);
    assert_eq!(out.store.checkpoint("bad-input", "window_end").await.unwrap(), None);
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let truncated = Reply::raw(
        200,
        "application/json",
        r#"{"ok": true, "data": {"items": [{"code": "A"},"#,
    );
    assert_refused(vec![truncated], "could not be read").await;
}

#[tokio::test]
async fn an_empty_answer_is_refused() {
    assert_refused(vec![Reply::raw(200, "application/json", "")], "could not be read").await;
}

#[tokio::test]
async fn an_html_error_page_is_refused() {
    let html = Reply::raw(200, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>");
    assert_refused(vec![html], "could not be read").await;
}

#[tokio::test]
async fn xml_where_json_was_expected_is_refused() {
    let xml = Reply::raw(200, "application/xml", "<response><ok>true</ok><data/></response>");
    assert_refused(vec![xml], "could not be read").await;
}

#[tokio::test]
async fn a_200_with_an_error_envelope_is_refused() {
    let envelope = Reply::json(json!({"ok": false, "message": "sign check failed"}));
    assert_refused(vec![envelope], "sign check failed").await;
}

#[tokio::test]
async fn a_missing_list_key_is_refused() {
    let no_list = Reply::json(json!({"ok": true, "data": {"rows": []}}));
    assert_refused(vec![no_list], "the list key is missing").await;
}

#[tokio::test]
async fn a_huge_answer_is_refused() {
    let filler = "x".repeat(2 * 1024 * 1024);
    let huge = Reply::json(json!({"ok": true, "data": {"items": [{"code": "A", "note": filler}]}}));
    assert_refused(vec![huge], "larger than 1 MiB").await;
}

#[tokio::test]
async fn pagination_that_loops_is_stopped() {
    // Page after page, the same two records: the guard stops it.
    let same = Reply::json(json!({"ok": true, "data": {"items": [
        {"code": "A", "amount": 1}, {"code": "B", "amount": 2}
    ]}}));
    let out = run_scripted(SCHEME, vec![same], ok_write()).await;
    let reason = out.summary.aborted.clone().unwrap_or_default();
    assert!(reason.contains("same records"), "{reason}");
    assert!(out.sim.hits("/items") < 10, "the loop was not stopped early");
    assert_eq!(out.store.checkpoint("bad-input", "window_end").await.unwrap(), None);
}

#[tokio::test]
async fn a_cursor_that_repeats_is_stopped() {
    let scheme = SCHEME
        .replace(
            "query: {page: \"<< page.number >>\"}",
            "query: {cursor: \"<< page.cursor >>\"}",
        )
        .replace(
            "pagination: {style: page_number, start: 1, size: 2, stop: short_page}",
            "pagination: {style: cursor, cursor: $.data.next}",
        );
    let page =
        |code: &str| Reply::json(json!({"ok": true, "data": {"next": "c1", "items": [{"code": code, "amount": 1}]}}));
    let out = run_scripted(&scheme, vec![page("A"), page("B"), page("C")], ok_write()).await;
    let reason = out.summary.aborted.clone().unwrap_or_default();
    assert!(reason.contains("cursor"), "{reason}");
    assert!(out.sim.hits("/items") <= 3);
}

#[tokio::test]
async fn wrong_types_and_failing_templates_park_only_their_records() {
    let page = Reply::json(json!({"ok": true, "data": {"items": [
        {"code": "A", "amount": "1.50"},
        {"code": "B", "amount": "not a number"},
        {"amount": 3},
        {"code": "D", "amount": 4},
        {"code": ["E"], "amount": 5},
        {"code": "F", "amount": {"value": 6}}
    ]}}));
    let scheme = SCHEME.replace(
        "pagination: {style: page_number, start: 1, size: 2, stop: short_page}",
        "pagination: {style: none}",
    );
    let out = run_scripted(&scheme, vec![page], ok_write()).await;
    let s = &out.summary;
    assert_eq!(s.aborted, None);
    assert_eq!((s.read, s.created, s.failed), (6, 2, 4), "{s:?}");
    assert_eq!(s.exit_code(), ferry::error::exit::ROWS_FAILED);
    let open = out.open_failures().await;
    assert_eq!(open.len(), 4);
    assert!(open.iter().all(|f| f.stage == FailureStage::Transform), "{open:#?}");
    // Each parked record keeps its payload, so it can be replayed once fixed.
    assert!(open
        .iter()
        .all(|f| f.payload.as_ref().is_some_and(|p| p["amount"] != json!(null))));
    let messages: Vec<&str> = open.iter().map(|f| f.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("source.id")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("float")), "{messages:?}");
    // The good records were written and mapped; the checkpoint moved past them.
    let mapped = out
        .store
        .mappings_for("bad-input", "bad-input", &["A".into(), "D".into(), "B".into()])
        .await
        .unwrap();
    assert!(mapped.contains_key("A") && mapped.contains_key("D"));
    assert!(out.store.checkpoint("bad-input", "window_end").await.unwrap().is_some());
}

#[tokio::test]
async fn a_garbled_write_answer_is_held_as_uncertain_not_lost() {
    let page = Reply::json(json!({"ok": true, "data": {"items": [{"code": "A", "amount": 1}]}}));
    let html = Reply::raw(200, "text/html", "<html>upstream reset</html>");
    let out = run_scripted(SCHEME, vec![page], vec![html]).await;
    assert_eq!(out.summary.failed, 1);
    let open = out.open_failures().await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].error_class, "uncertain", "{:?}", open[0]);
    assert!(open[0].message.contains("could not be read"), "{}", open[0].message);
}

#[tokio::test]
async fn a_200_error_envelope_on_a_write_fails_its_rows() {
    let page = Reply::json(json!({"ok": true, "data": {"items": [
        {"code": "A", "amount": 1}, {"code": "B", "amount": 2}
    ]}}));
    let refused = Reply::json(json!({"code": 17, "message": "customer group is closed"}));
    let end = Reply::json(json!({"ok": true, "data": {"items": []}}));
    let out = run_scripted(SCHEME, vec![page, end], vec![refused]).await;
    assert_eq!((out.summary.created, out.summary.failed), (0, 2), "{:?}", out.summary);
    let open = out.open_failures().await;
    assert!(
        open.iter().all(|f| f.message.contains("customer group is closed")),
        "{open:#?}"
    );
    assert!(open.iter().all(|f| f.error_class != "uncertain"));
}
