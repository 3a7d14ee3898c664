//! End-to-end runs of whole schemes against the in-process shop simulator on 127.0.0.1:0.

use chrono::Utc;
use ferry::engine::{run, RunOptions, Summary};
use ferry::http::HttpClient;
use ferry::scheme::{load_str, Plan};
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::{SimHandle, Simulator};
use ferry::store::{CheckpointStore, FailureLedger, FailureStatus, MappingQuery, MappingStore, Store};
use std::collections::BTreeSet;

const SCHEME: &str = include_str!("../schemes/shop-orders-to-erp.yaml");
const TOKEN: &str = "it-token";

struct Harness {
    sim: ShopSim,
    handle: SimHandle,
    plan: Plan,
    store: Store,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

async fn harness(config: ShopConfig, scheme_text: &str) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ShopConfig {
        token: Some(TOKEN.into()),
        ..config
    };
    let (sim, handle) = ShopSim::start(config, listener).await.unwrap();
    let url = handle.base_url();
    let loaded = load_str(scheme_text, "shop.yaml", &|name| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        "SHOP_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ferry.db").display().to_string())
        .await
        .unwrap();
    Harness {
        sim,
        handle,
        plan: loaded.plan.unwrap(),
        store,
        http: HttpClient::new().unwrap(),
        _dir: dir,
    }
}

impl Harness {
    async fn run(&self) -> Summary {
        self.run_with(RunOptions::default()).await
    }
    async fn run_with(&self, options: RunOptions) -> Summary {
        run(&self.plan, &self.store, &self.http, &options).await.unwrap()
    }
    async fn mapping_count(&self) -> usize {
        let query = MappingQuery {
            scheme: Some(self.plan.name.clone()),
            limit: None,
            ..MappingQuery::default()
        };
        self.store.query_mappings(&query).await.unwrap().len()
    }
}

fn shanghai_now_minus(seconds: i64) -> chrono::NaiveDateTime {
    (Utc::now() - chrono::Duration::seconds(seconds))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_exactly_once_and_a_rerun_writes_nothing() {
    let h = harness(
        ShopConfig {
            records: 2500,
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    let first = h.run().await;
    assert_eq!(first.aborted, None);
    assert_eq!(first.read, 2500);
    assert_eq!(first.created, 2500);
    assert_eq!(first.failed, 0);
    assert!(first.pages >= 25, "pages: {}", first.pages);
    assert_eq!(h.sim.target_count(), 2500);
    let bill_numbers: BTreeSet<String> = h
        .sim
        .target_rows()
        .iter()
        .map(|r| r["FBillNo"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bill_numbers.len(), 2500, "a bill number was written twice");
    assert_eq!(h.mapping_count().await, 2500);
    let row = h.sim.target_row_by_bill_no("SO0000042").unwrap();
    assert!(row["FEntity"].as_array().map(Vec::len).unwrap_or(0) > 0, "{row}");
    assert!(row["FAmount"].is_f64(), "{row}");
    assert!(row["FStatus"].is_string());

    let creates_before = h.sim.create_calls();
    let second = h.run().await;
    assert_eq!((second.created, second.updated, second.failed), (0, 0, 0));
    assert_eq!(second.requests, 0);
    assert_eq!(h.sim.create_calls(), creates_before);
    assert_eq!(h.sim.update_calls(), 0);
    assert_eq!(h.mapping_count().await, 2500);
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_is_updated_through_its_target_id() {
    let h = harness(
        ShopConfig {
            records: 300,
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    h.run().await;
    let target_id = h.sim.target_row_by_bill_no("SO0000017").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h.sim.touch(17, shanghai_now_minus(90)));
    let summary = h.run().await;
    assert_eq!(
        (summary.created, summary.updated, summary.failed),
        (0, 1, 0),
        "{summary:?}"
    );
    assert_eq!(h.sim.target_count(), 300);
    let puts: Vec<_> = h.sim.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, format!("/orders/{target_id}"));
    let query = MappingQuery {
        scheme: Some(h.plan.name.clone()),
        source_ids: vec!["SO0000017".into()],
        ..MappingQuery::default()
    };
    let mapping = h.store.query_mappings(&query).await.unwrap().remove(0);
    assert_eq!(mapping.target_id.as_deref(), Some(target_id.as_str()));
    assert_eq!(mapping.status.to_string(), "updated");
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_rows_and_only_those_land_in_the_ledger() {
    let h = harness(
        ShopConfig {
            records: 1000,
            reject_every: Some(100),
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    let summary = h.run().await;
    assert_eq!(summary.failed, 10);
    assert_eq!(summary.created, 990);
    assert_eq!(summary.exit_code(), 1);
    let failures = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    let ids: BTreeSet<String> = failures.iter().map(|f| f.source_id.clone()).collect();
    let expected: BTreeSet<String> = (1..=10).map(|i| format!("SO{:07}", i * 100)).collect();
    assert_eq!(ids, expected);
    assert!(failures
        .iter()
        .all(|f| f.error_class == "rejected" && !f.message.is_empty()));
    assert_eq!(h.sim.target_count(), 990);
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_source_answer_aborts_and_keeps_the_checkpoint() {
    let h = harness(
        ShopConfig {
            records: 200,
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    let first = h.run().await;
    assert_eq!(first.aborted, None);
    let checkpoint = h.store.checkpoint(&h.plan.name, "window_end").await.unwrap();
    assert!(checkpoint.is_some());
    h.sim.touch(5, shanghai_now_minus(90));
    // Every answer garbled (a single garbled page could be a prefetched one that is never used).
    h.sim.update_faults(|f| f.garble_next = 1000);
    let second = h.run().await;
    let reason = second.aborted.clone().expect("the run must abort");
    assert!(reason.contains("could not be read"), "{reason}");
    assert_eq!(second.exit_code(), 3);
    assert_eq!(second.updated, 0);
    assert_eq!(
        h.store.checkpoint(&h.plan.name, "window_end").await.unwrap(),
        checkpoint
    );
    // Once the source is healthy again the change arrives.
    h.sim.update_faults(|f| f.garble_next = 0);
    let third = h.run().await;
    assert_eq!((third.updated, third.aborted), (1, None));
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_limit_stops_early() {
    let h = harness(
        ShopConfig {
            records: 120,
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    let planned = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_planned = planned.clone();
    let summary = h
        .run_with(RunOptions {
            dry_run: true,
            dry_run_sink: Some(std::sync::Arc::new(move |p: &ferry::engine::PlannedRequest| {
                sink_planned.lock().unwrap().push(p.clone())
            })),
            ..RunOptions::default()
        })
        .await;
    assert_eq!(summary.read, 120);
    assert_eq!(h.sim.target_count(), 0);
    assert_eq!(h.mapping_count().await, 0);
    assert_eq!(h.store.checkpoint(&h.plan.name, "window_end").await.unwrap(), None);
    let planned = planned.lock().unwrap().clone();
    assert_eq!(planned.len(), 2);
    assert!(planned
        .iter()
        .all(|p| p.operation == "create" && p.url.ends_with("/orders/batch")));
    assert!(planned
        .iter()
        .all(|p| !p.headers.iter().any(|(_, v)| v.contains(TOKEN))));

    let limited = h
        .run_with(RunOptions {
            limit: Some(50),
            ..RunOptions::default()
        })
        .await;
    assert_eq!(limited.read, 50);
    assert_eq!(h.sim.target_count(), 50);
    assert_eq!(
        h.store.checkpoint(&h.plan.name, "window_end").await.unwrap(),
        None,
        "a partial window must not move the checkpoint"
    );
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paging_styles_read_everything() {
    let styles = [
        (
            "offset",
            "{style: offset, size: 70, stop: short_page}",
            "offset: \"<< page.offset >>\"\n      limit: \"<< page.size >>\"",
        ),
        (
            "cursor",
            "{style: cursor, cursor: $.data.next_cursor, size: 70}",
            "cursor: \"<< page.cursor >>\"\n      size: 70",
        ),
        ("next_link", "{style: next_link, next: $.data.next}", "size: 70"),
    ];
    for (name, pagination, query) in styles {
        let text = SCHEME
            .replace(
                "{style: page_number, start: 1, size: 100, stop: total, total: $.data.total}",
                pagination,
            )
            .replace("page: \"<< page.number >>\"\n      size: \"<< page.size >>\"", query);
        let h = harness(
            ShopConfig {
                records: 500,
                ..ShopConfig::default()
            },
            &text,
        )
        .await;
        let summary = h.run().await;
        assert_eq!(
            (summary.read, summary.created, summary.aborted.clone()),
            (500, 500, None),
            "{name}: {summary:?}"
        );
        assert_eq!(h.sim.target_count(), 500, "{name}");
        h.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_ignoring_paging_is_stopped_by_the_guard() {
    // The request never sends the page number, so every page is the same.
    let text = SCHEME
        .replace("      page: \"<< page.number >>\"\n", "")
        .replace("stop: total, total: $.data.total}", "stop: empty_page}");
    let h = harness(
        ShopConfig {
            records: 300,
            ..ShopConfig::default()
        },
        &text,
    )
    .await;
    let summary = h.run().await;
    let reason = summary.aborted.expect("guard must abort");
    assert!(reason.contains("same records"), "{reason}");
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_id_reads_the_target_id_another_scheme_created() {
    let h = harness(
        ShopConfig {
            records: 150,
            ..ShopConfig::default()
        },
        SCHEME,
    )
    .await;
    assert_eq!(h.run().await.created, 150);
    // A second scheme (its own name, so its own mappings) refers to the first one's orders.
    let text = SCHEME.replace("name: shop-orders-to-erp", "name: order-refs").replace(
        "FBillNo: \"<< order_no >>\"",
        "FBillNo: \"REF-<< order_no >>\"\n    FOrderRef: \"<< order_no | mapped_id('SAL_SaleOrder') >>\"",
    );
    let url = h.handle.base_url();
    let loaded = load_str(&text, "refs.yaml", &|name| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        "SHOP_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let refs = run(&loaded.plan.unwrap(), &h.store, &h.http, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!((refs.created, refs.failed), (150, 0), "{refs:?}");
    let original = h.sim.target_row_by_bill_no("SO0000009").unwrap();
    let reference = h.sim.target_row_by_bill_no("REF-SO0000009").unwrap();
    assert_eq!(reference["FOrderRef"], original["id"], "{reference}");
    h.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_finishes_writes_in_flight_and_loses_nothing() {
    use ferry::sim::Faults;
    let config = ShopConfig {
        records: 10_000,
        faults: Faults {
            latency_ms: 40,
            ..Faults::default()
        },
        ..ShopConfig::default()
    };
    let h = harness(config, SCHEME).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let options = RunOptions {
        stop: Some(stop_rx),
        ..RunOptions::default()
    };
    let plan = h.plan.clone();
    let (store, http) = (h.store.clone(), h.http.clone());
    let running = tokio::spawn(async move { run(&plan, &store, &http, &options).await });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    stop.send(true).unwrap();
    let summary = tokio::time::timeout(std::time::Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reason = summary.aborted.clone().expect("a stopped run reports itself aborted");
    assert!(reason.contains("stopped by a signal"), "{reason}");
    assert_eq!(summary.exit_code(), 3);
    assert!(summary.read < 10_000, "the run stopped early: {summary:?}");
    // Every row the target received has its mapping: nothing written is forgotten.
    assert_eq!(h.sim.target_count(), h.mapping_count().await, "{summary:?}");
    // The next run completes the rest without duplicates.
    let rest = h.run().await;
    assert_eq!(rest.aborted, None);
    assert_eq!(h.sim.target_count(), 10_000, "first: {summary:?}\nrest: {rest:?}");
    assert_eq!(h.mapping_count().await, 10_000);
    h.handle.shutdown().await;
}
