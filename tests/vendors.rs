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

async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simply_accounts_and_k3cloud_customers_flow_both_ways() {
    use ferry::sim::simply::{SimplyConfig, SimplySim};
    let simply_config = SimplyConfig {
        records: 150,
        ..SimplyConfig::default()
    };
    let k3_config = K3CloudConfig::default();
    let (simply, simply_handle) = SimplySim::start(simply_config.clone(), bind().await).await.unwrap();
    let (k3, k3_handle) = K3CloudSim::start(k3_config.clone(), bind().await).await.unwrap();
    let (simply_url, k3_url) = (simply_handle.base_url(), format!("{}/k3cloud/", k3_handle.base_url()));
    let env = move |name: &str| -> Option<String> {
        Some(match name {
            "SIMPLY_URL" => simply_url.clone(),
            "SIMPLY_USERNAME" => simply_config.username.clone(),
            "SIMPLY_ACCESS_KEY" => simply_config.access_key.clone(),
            "K3CLOUD_URL" => k3_url.clone(),
            "K3CLOUD_ACCT_ID" => k3_config.acct_id.clone(),
            "K3CLOUD_USERNAME" => k3_config.username.clone(),
            "K3CLOUD_APP_ID" => k3_config.app_id.clone(),
            "K3CLOUD_APP_SECRET" => k3_config.app_secret.clone(),
            _ => return None,
        })
    };
    let http = HttpClient::new().unwrap();

    // Simply → K3Cloud (query paging with LIMIT, session login).
    let text = std::fs::read_to_string("schemes/simply-accounts-to-kingdee-customers.yaml").unwrap();
    let loaded = load_str(&text, "simply-to-k3.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let customers_before = k3.row_count("BD_Customer");
    let first = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (150, 150, 0), "{first:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers_before + 150);
    // An expired session is renewed transparently.
    simply.expire_sessions();
    let again = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(
        (again.aborted.clone(), again.created, again.updated),
        (None, 0, 0),
        "{again:?}"
    );

    // K3Cloud → Simply (ExecuteBillQuery arrays named by FieldKeys; create then revise).
    let text = std::fs::read_to_string("schemes/kingdee-customers-to-simply-accounts.yaml").unwrap();
    let loaded = load_str(&text, "k3-to-simply.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let writes_before = simply.write_calls();
    let first = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    // Customers the first scheme created seconds ago are inside `lag`, so not read yet.
    assert_eq!(first.read, k3_config.records, "{first:?}");
    assert_eq!(first.created, first.read, "{first:?}");
    assert_eq!(simply.write_calls() - writes_before, first.created);
    assert!(k3.touch(2, shanghai_now_minus(90)));
    let second = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!((second.created, second.updated, second.failed), (0, 1, 0), "{second:?}");
    simply_handle.shutdown().await;
    k3_handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_standard_orders_are_pushed_to_fxiaoke_with_their_details() {
    use ferry::sim::erp_standard::{ErpStandardConfig, ErpStandardSim};
    use ferry::sim::fxiaoke::{FxiaokeConfig, FxiaokeSim};
    let erp_config = ErpStandardConfig {
        records: 120,
        ..ErpStandardConfig::default()
    };
    let fx_config = FxiaokeConfig {
        interface_limit: None,
        ..FxiaokeConfig::default()
    };
    let (_erp, erp_handle) = ErpStandardSim::start(erp_config.clone(), bind().await).await.unwrap();
    let (fx, fx_handle) = FxiaokeSim::start(fx_config.clone(), bind().await).await.unwrap();
    let (erp_url, fx_url) = (erp_handle.base_url(), fx_handle.base_url());
    let env = move |name: &str| -> Option<String> {
        Some(match name {
            "ERP_STD_URL" => erp_url.clone(),
            "ERP_STD_TOKEN" => erp_config.token.clone(),
            "FXIAOKE_URL" => fx_url.clone(),
            "FXIAOKE_APP_ID" => fx_config.app_id.clone(),
            "FXIAOKE_APP_SECRET" => fx_config.app_secret.clone(),
            "FXIAOKE_PERMANENT_CODE" => fx_config.permanent_code.clone(),
            "FXIAOKE_OPEN_USER_ID" => fx_config.open_user_id.clone(),
            "FXIAOKE_DATA_CENTER_ID" => fx_config.data_center_id.clone(),
            _ => return None,
        })
    };
    let text = std::fs::read_to_string("schemes/erp-standard-orders-to-fxiaoke.yaml").unwrap();
    let loaded = load_str(&text, "erp-to-fx.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let http = HttpClient::new().unwrap();
    let first = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (120, 120, 0), "{first:?}");
    let pushed = fx.written();
    assert_eq!(pushed.len(), 120);
    let details = &pushed[0]["detailFieldVals"]["erpSalesOrderProductObj"];
    assert!(details.as_array().is_some_and(|rows| !rows.is_empty()), "{}", pushed[0]);
    // Tokens are cached: one token call for 120 pushes; an expired token is renewed once.
    assert_eq!(fx.token_calls(), 1);
    fx.expire_tokens();
    let second = run(&plan, &store, &http, &RunOptions::default()).await.unwrap();
    assert_eq!((second.aborted.clone(), second.created), (None, 0), "{second:?}");
    erp_handle.shutdown().await;
    fx_handle.shutdown().await;
}
