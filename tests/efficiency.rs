//! No wasted source requests: a window's pages are asked for only while the source may
//! still have more (issue: a page after a short one halves a rate-limited tenant's budget).

use chrono::NaiveDate;
use ferry::engine::{run, RunOptions};
use ferry::http::HttpClient;
use ferry::scheme::load_str;
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::store::Store;

/// The shipped shop scheme with `in_flight` pages in flight and windows of `window`.
fn scheme(in_flight: u32, window: &str, stop: &str) -> String {
    std::fs::read_to_string("schemes/shop-orders-to-erp.yaml")
        .unwrap()
        .replacen("in_flight: 2", &format!("in_flight: {in_flight}"), 1)
        .replace("window: 30d", &format!("window: {window}"))
        .replace("stop: total, total: $.data.total", stop)
}

/// Runs `scheme` once against a shop of `records` orders one `spacing_secs` apart;
/// returns (pages read, source requests the shop saw, records read).
async fn read(records: u64, spacing_secs: i64, scheme: &str) -> (u64, u64, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ShopConfig {
        records,
        spacing_secs,
        base_time: NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    };
    let (sim, handle) = ShopSim::start(config, listener).await.unwrap();
    let url = handle.base_url();
    let env = move |name: &str| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        _ => None,
    };
    let loaded = load_str(scheme, "shop.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let options = RunOptions {
        // The last order is a day old, so the windows up to now hold nothing more.
        now: Some(
            chrono::DateTime::parse_from_rfc3339("2024-02-01T00:00:00+08:00")
                .unwrap()
                .into(),
        ),
        ..RunOptions::default()
    };
    let summary = run(
        &loaded.plan.unwrap(),
        &Store::memory(),
        &HttpClient::new().unwrap(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(summary.aborted, None, "{summary:?}");
    assert_eq!(
        summary.source_requests,
        sim.source_calls(),
        "the summary counts every source request"
    );
    (summary.pages, sim.source_calls(), summary.read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_of_one_short_page_cost_one_request_each() {
    // 10 orders a day for 20 days, windows of one day, four pages allowed in flight.
    let (pages, requests, read_records) = read(200, 8640, &scheme(4, "1d", "stop: short_page")).await;
    assert_eq!(read_records, 200);
    assert_eq!(requests, pages, "a request per page read, none past a short page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_total_pages_are_read_ahead_but_never_past_the_last() {
    // 950 orders in one window: pages of 100, the first answer announces the total.
    let (pages, requests, read_records) = read(950, 60, &scheme(4, "60d", "stop: total, total: $.data.total")).await;
    assert_eq!(read_records, 950);
    assert_eq!(pages, 10);
    assert_eq!(requests, 10, "ten pages hold 950 records; no eleventh request");
}
