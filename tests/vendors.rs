//! Seed flows run end to end against the built-in vendor simulators on 127.0.0.1:0.

use chrono::Utc;
use ferry::engine::{run, RunOptions};
use ferry::http::HttpClient;
use ferry::scheme::load_str;
use ferry::sim::guanyi::{GuanyiConfig, GuanyiSim};
use ferry::sim::k3cloud::{K3CloudConfig, K3CloudSim};
use ferry::store::Store;

fn shanghai_now_minus(seconds: i64) -> chrono::NaiveDateTime {
    (Utc::now() - chrono::Duration::seconds(seconds))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guanyi_shops_become_k3cloud_customers_and_changes_update_them() {
    let gy_config = GuanyiConfig {
        shops: 230,
        ..GuanyiConfig::default()
    };
    let k3_config = K3CloudConfig::default();
    let (gy, gy_handle) = GuanyiSim::start(
        gy_config.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let (k3, k3_handle) = K3CloudSim::start(
        k3_config.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let gy_url = GuanyiSim::api_url(&gy_handle);
    let k3_url = format!("{}/k3cloud/", k3_handle.base_url());
    let env = move |name: &str| -> Option<String> {
        Some(match name {
            "GUANYI_URL" => gy_url.clone(),
            "GUANYI_APPKEY" => gy_config.appkey.clone(),
            "GUANYI_SESSIONKEY" => gy_config.sessionkey.clone(),
            "GUANYI_SECRET" => gy_config.secret.clone(),
            "K3CLOUD_URL" => k3_url.clone(),
            "K3CLOUD_ACCT_ID" => k3_config.acct_id.clone(),
            "K3CLOUD_USERNAME" => k3_config.username.clone(),
            "K3CLOUD_APP_ID" => k3_config.app_id.clone(),
            "K3CLOUD_APP_SECRET" => k3_config.app_secret.clone(),
            _ => return None,
        })
    };
    let text = std::fs::read_to_string("schemes/guanyi-shops-to-kingdee-customers.yaml").unwrap();
    let loaded = load_str(&text, "seed-003.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let http = HttpClient::new().unwrap();
    let customers_before = k3.row_count("BD_Customer");

    let first = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (230, 230, 0), "{first:?}");
    assert!(first.pages >= 3, "shops must be paged: {first:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers_before + 230);

    let second = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(
        (second.created, second.updated, second.requests),
        (0, 0, 0),
        "{second:?}"
    );

    assert!(gy.touch(3, shanghai_now_minus(90)));
    let third = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!((third.created, third.updated, third.failed), (0, 1, 0), "{third:?}");
    assert_eq!(
        k3.row_count("BD_Customer"),
        customers_before + 230,
        "an update must not add a customer"
    );
    gy_handle.shutdown().await;
    k3_handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdy_purchase_inbound_bills_become_jackyun_customers_once_per_supplier() {
    use ferry::sim::jackyun::{JackyunConfig, JackyunSim};
    use ferry::sim::jdy::{JdyConfig, JdySim};
    let jdy_config = JdyConfig {
        records: 180,
        ..JdyConfig::default()
    };
    let jky_config = JackyunConfig::default();
    let (jdy, jdy_handle) = JdySim::start(
        jdy_config.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let (jky, jky_handle) = JackyunSim::start(
        jky_config.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let (jdy_url, jky_url) = (jdy_handle.base_url(), jky_handle.base_url());
    let env = move |name: &str| -> Option<String> {
        Some(match name {
            "JDY_URL" => jdy_url.clone(),
            "JDY_CLIENT_ID" => jdy_config.client_id.clone(),
            "JDY_CLIENT_SECRET" => jdy_config.client_secret.clone(),
            "JDY_OUTER_INSTANCE_ID" => jdy_config.outer_instance_id.clone(),
            "JACKYUN_URL" => jky_url.clone(),
            "JACKYUN_APPKEY" => jky_config.appkey.clone(),
            "JACKYUN_SECRET" => jky_config.secret.clone(),
            _ => return None,
        })
    };
    let text = std::fs::read_to_string("schemes/jdy-purchase-inbound-to-jackyun-customers.yaml").unwrap();
    let loaded = load_str(&text, "seed-004.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let http = HttpClient::new().unwrap();
    let customers_before = jky.customer_count();

    let first = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!(first.read, 180, "{first:?}");
    assert!(first.pages >= 2, "the list is paged by 100: {first:?}");
    assert!(jdy.detail_calls() >= 180, "every bill's detail was fetched");
    let created = jky.customer_count() - customers_before;
    assert_eq!(created as u64, first.created);
    assert!(
        first.created > 0 && first.created < 180,
        "one customer per supplier: {first:?}"
    );
    assert_eq!(first.failed, 0, "{first:?}");
    let written = jky.written();
    let reminder = written[0]["specialReminding"].as_str().unwrap_or_default().to_string();
    assert!(reminder.contains("行"), "detail rows summarised: {reminder}");

    let second = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!((second.created, second.requests), (0, 0), "{second:?}");
    jdy_handle.shutdown().await;
    jky_handle.shutdown().await;
}
