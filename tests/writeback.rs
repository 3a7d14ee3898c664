//! Write-back (`target.writeback`, 回写): after a create, the target's id is stored on the
//! source record; refusals go to the ledger and are sent again by later runs, and a
//! write-back cut off by a dead run is not lost. Against the shop simulator, whose
//! `POST /orders/{order_no}/erp-link` keeps the ids written back.

use ferry::engine::{run, RunOptions, Summary};
use ferry::http::HttpClient;
use ferry::scheme::{load_str, Plan};
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::SimHandle;
use ferry::store::{FailureLedger, FailureStatus, IntentLog, Store, WriteIntent, WriteOperation};

const SCHEME: &str = include_str!("../schemes/shop-orders-to-erp.yaml");
const TOKEN: &str = "it-token";
const WRITEBACK: &str = "  writeback:
    request: {method: POST, path: \"/orders/<< source_id >>/erp-link\", body: {erp_id: \"<< target_id >>\"}}
    response: {success: \"<< body.ok >>\", error: \"<< body.message >>\"}
";

fn with_writeback(block: &str) -> String {
    assert!(SCHEME.contains("\n  fields:\n"));
    SCHEME.replacen("\n  fields:\n", &format!("\n{block}  fields:\n"), 1)
}

struct Harness {
    sim: ShopSim,
    _handle: SimHandle,
    plan: Plan,
    store: Store,
    http: HttpClient,
}

async fn harness(records: u64, scheme: &str) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ShopConfig {
        records,
        token: Some(TOKEN.into()),
        ..ShopConfig::default()
    };
    let (sim, handle) = ShopSim::start(config, listener).await.unwrap();
    let url = handle.base_url();
    let loaded = load_str(scheme, "shop.yaml", &|name| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        "SHOP_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Harness {
        sim,
        _handle: handle,
        plan: loaded.plan.unwrap(),
        store: Store::memory(),
        http: HttpClient::new().unwrap(),
    }
}

impl Harness {
    async fn run(&self) -> Summary {
        run(&self.plan, &self.store, &self.http, &RunOptions::default())
            .await
            .unwrap()
    }

    fn target_id(&self, order_no: &str) -> String {
        let row = self.sim.target_row_by_bill_no(order_no).expect("created in the target");
        row["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_created_target_id_is_written_back_to_its_source_order_once() {
    let h = harness(30, &with_writeback(WRITEBACK)).await;
    let first = h.run().await;
    assert_eq!((first.created, first.failed), (30, 0), "{first:?}");
    assert_eq!(h.sim.erp_link_count(), 30);
    for order in ["SO0000001", "SO0000017", "SO0000030"] {
        assert_eq!(h.sim.erp_link(order), Some(h.target_id(order)), "{order}");
    }
    // Write-back requests go to the source and are counted there: 1 page + 30 links.
    assert!(first.source_requests >= 31, "{first:?}");
    // Nothing new: nothing is written back again.
    let second = h.run().await;
    assert_eq!((second.created, second.updated, second.failed), (0, 0, 0), "{second:?}");
    assert_eq!(h.sim.erp_link_count(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_back_is_filed_and_sent_again_by_the_next_run() {
    let h = harness(12, &with_writeback(WRITEBACK)).await;
    h.sim.refuse_erp_links(true);
    let first = h.run().await;
    assert_eq!(first.created, 12, "{first:?}");
    assert_eq!(first.failed, 12, "a refused write-back is a failure: {first:?}");
    assert_eq!(h.sim.erp_link_count(), 0);
    let open = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 12);
    let one = open.iter().find(|f| f.source_id == "SO0000005").unwrap();
    assert_eq!(one.error_class, "writeback");
    assert!(one.message.contains(&h.target_id("SO0000005")), "{}", one.message);
    assert!(one.message.contains("is locked"), "{}", one.message);

    // The source accepts again: the next run sends the write-backs first, creates nothing.
    h.sim.refuse_erp_links(false);
    let second = h.run().await;
    assert_eq!((second.created, second.failed), (0, 0), "{second:?}");
    assert_eq!(h.sim.erp_link_count(), 12);
    assert_eq!(h.sim.erp_link("SO0000005"), Some(h.target_id("SO0000005")));
    let still_open = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    assert!(still_open.is_empty(), "{still_open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_that_keeps_failing_is_given_up_after_max_attempts() {
    let scheme = with_writeback(WRITEBACK).replace(
        "timezone: Asia/Shanghai",
        "timezone: Asia/Shanghai\nfailures: {max_attempts: 2}",
    );
    let h = harness(3, &scheme).await;
    h.sim.refuse_erp_links(true);
    h.run().await;
    h.run().await; // second attempt: given up
    let third = h.run().await;
    assert_eq!(third.failed, 0, "nothing is sent a third time: {third:?}");
    let open = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 3, "the ledger keeps them open for a person");
    assert!(
        open.iter().all(|f| f.message.contains("given up after 2 attempts")),
        "{open:?}"
    );
    assert!(h.store.pending_intents(&h.plan.name).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_cut_off_by_a_dead_run_is_sent_by_the_next() {
    let h = harness(5, &with_writeback(WRITEBACK)).await;
    h.sim.refuse_erp_links(true);
    h.run().await; // creates; write-backs refused and pending
                   // As if a run had died between committing the creates and sending the write-back:
                   // an intent the ledger knows nothing about.
    h.store
        .record_intents(&[WriteIntent {
            scheme: h.plan.name.clone(),
            source_object: h.plan.source.object.clone(),
            source_id: "SO0000999".into(),
            source_name: None,
            batch_id: "9-1-writeback-SO0000999".into(),
            operation: WriteOperation::Writeback,
            business_key: None,
            target_id: Some("T-999".into()),
            payload_hash: "h".into(),
            payload: Some(serde_json::json!({"order_no": "SO0000999"})),
            sent: None,
            created_at: chrono::Utc::now(),
        }])
        .await
        .unwrap();
    h.sim.refuse_erp_links(false);
    let next = h.run().await;
    assert_eq!(next.failed, 1, "SO0000999 is no order of the shop: {next:?}");
    assert_eq!(h.sim.erp_link_count(), 5);
    let open = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].message.contains("no order SO0000999"), "{}", open[0].message);
}

#[test]
fn write_back_templates_are_checked_where_they_are_written() {
    let bad_name = with_writeback(
        "  writeback:\n    request: {method: POST, path: /orders/links, body: {items: \"<< rows >>\"}}\n",
    );
    let loaded = load_str(&bad_name, "shop.yaml", &|_| Some("http://127.0.0.1:1".into()));
    let text = format!("{:?}", loaded.diagnostics);
    assert!(loaded.has_errors(), "{text}");
    assert!(text.contains("target.writeback.request"), "{text}");
    assert!(text.contains("rows"), "{text}");

    let bad_connection = with_writeback(&WRITEBACK.replace("  writeback:\n", "  writeback:\n    connection: crm\n"));
    let loaded = load_str(&bad_connection, "shop.yaml", &|_| Some("http://127.0.0.1:1".into()));
    let text = format!("{:?}", loaded.diagnostics);
    assert!(text.contains("unknown connection `crm`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answer_without_an_id_is_filed_rather_than_written_back_silently() {
    let lookup_start = SCHEME
        .find("  # Finds an order by bill number")
        .expect("the lookup block");
    let lookup_end = SCHEME.find("  update:").expect("the update block");
    let scheme = format!("{}{}", &SCHEME[..lookup_start], &SCHEME[lookup_end..])
        .replace("  key: \"<< FBillNo >>\"\n", "")
        .replace("      row_ids: \"$.data.results[*].id\"\n", "");
    let h = harness(4, &with_writeback_in(&scheme)).await;
    let run = h.run().await;
    assert_eq!(run.created, 4, "{run:?}");
    assert_eq!(run.failed, 4, "each one is reported: {run:?}");
    assert_eq!(h.sim.erp_link_count(), 0);
    let open = h
        .store
        .list_failures(Some(&h.plan.name), Some(FailureStatus::Open), 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 4);
    assert!(
        open.iter()
            .all(|f| f.error_class == "writeback" && f.message.contains("named no id")),
        "{open:?}"
    );
}

fn with_writeback_in(scheme: &str) -> String {
    scheme.replacen("\n  fields:\n", &format!("\n{WRITEBACK}  fields:\n"), 1)
}
