//! The platform's mapping-table API (seed 000 §5) and `ferry run` share one store's rows:
//! a mapping created through the API turns the next run's create into an update, and a
//! mapping a run created is answered with the seed's fields. Bad input is answered in the
//! platform's envelope, never with a 500. Everything on 127.0.0.1.

mod support;
use ferry::engine::{run, RunOptions};
use ferry::http::HttpClient;
use ferry::platform::{router, Binding, MappingApi, SUCCESS};
use ferry::scheme::Plan;
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::SimHandle;
use ferry::store::{IntentLog, Store, WriteIntent, WriteOperation};
use serde_json::{json, Value};
use std::sync::Arc;

use support::shop_rig;

const SCHEME: &str = include_str!("../schemes/shop-orders-to-erp.yaml");
const SHOP_TOKEN: &str = "it-token";
const API_TOKEN: &str = "api-secret-token";

struct Setup {
    sim: ShopSim,
    shop: SimHandle,
    plan: Plan,
    store: Store,
    api: String,
    _dir: tempfile::TempDir,
}

async fn setup(records: u64) -> Setup {
    let config = ShopConfig {
        records,
        ..ShopConfig::default()
    };
    let (sim, shop, plan, store, dir) = shop_rig(config, SCHEME, SHOP_TOKEN).await;
    let app = router(MappingApi {
        store: store.clone(),
        token: API_TOKEN.into(),
        bindings: Arc::new(vec![Binding::of(&plan)]),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Setup {
        sim,
        shop,
        plan,
        store,
        api,
        _dir: dir,
    }
}

impl Setup {
    async fn call(&self, function: &str, token: &str, body: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/erp/syncData/{function}", self.api))
            .header("token", token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("always a JSON envelope");
        (status, body)
    }

    async fn ok(&self, function: &str, params: Value) -> Value {
        let (status, body) = self.call(function, API_TOKEN, &params.to_string()).await;
        assert_eq!((status, body["errCode"].as_str()), (200, Some(SUCCESS)), "{body}");
        body
    }
}

fn objects(extra: Value) -> Value {
    let mut params = json!({"sourceObjectApiName": "order", "destObjectApiName": "SAL_SaleOrder"});
    params
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    params
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_made_through_the_api_turns_the_next_runs_create_into_an_update() {
    let s = setup(6).await;
    // Someone created SO0000004 in the ERP by hand, so a create would be refused as a
    // duplicate bill number.
    let made = reqwest::Client::new()
        .post(format!("{}/orders/batch", s.shop.base_url()))
        .json(&json!({"items": [{"FBillNo": "SO0000004", "FCustomerId": {"FNumber": "C-HAND"}, "FCustomerName": "by hand"}]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let by_hand = made["data"]["results"][0]["id"].as_str().expect("an id").to_string();
    s.ok(
        "createSyncDataMapping",
        objects(json!({"sourceDataId": "SO0000004", "destDataId": by_hand, "sourceDataName": "order 4", "remark": "mapped by hand"})),
    )
    .await;
    let summary = run(&s.plan, &s.store, &HttpClient::new().unwrap(), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (summary.created, summary.updated, summary.failed),
        (5, 1, 0),
        "{summary:?}"
    );
    let row = s.sim.target_row_by_bill_no("SO0000004").unwrap();
    assert_eq!(row["id"], by_hand.as_str());
    assert_ne!(
        row["FCustomerName"], "by hand",
        "the run's update reached the hand-made record"
    );

    // A mapping the run created is answered with the seed's fields, by source or by target id.
    let created = s.sim.target_row_by_bill_no("SO0000002").unwrap()["id"].clone();
    let body = s
        .ok(
            "getSyncDataMappingBySourceDataId",
            objects(json!({"sourceDataId": ["SO0000002", "SO0000004", "SO9999999"]})),
        )
        .await;
    let data = body["data"].as_object().unwrap();
    assert_eq!(data.len(), 2, "ids without a mapping are absent: {body}");
    let two = &data["SO0000002"];
    assert_eq!(two["destDataId"], created);
    assert_eq!(two["isCreated"], true);
    assert_eq!(two["statusName"], "新增成功");
    assert_eq!(two["lastSyncStatus"], 6);
    assert_eq!(two["sourceObjectApiName"], "order");
    assert_eq!(two["destObjectApiName"], "SAL_SaleOrder");
    assert!(
        two["updateTime"].as_i64().unwrap() > 1_600_000_000_000,
        "milliseconds: {two}"
    );
    let by_dest = s
        .ok(
            "getSyncDataMappingBySourceDataId",
            objects(json!({"destDataId": [created.clone()]})),
        )
        .await;
    assert_eq!(by_dest["data"]["SO0000002"]["destDataId"], created);

    // Changing a target id through the API is what the next lookup answers.
    s.ok(
        "updateSyncDataMapping",
        objects(json!({"sourceDataId": "SO0000002", "destDataId": "T-moved"})),
    )
    .await;
    let moved = s
        .ok(
            "getSyncDataMappingByDestDataId",
            objects(json!({"destDataId": ["T-moved"]})),
        )
        .await;
    assert_eq!(moved["data"]["SO0000002"]["destDataId"], "T-moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_in_the_envelope_and_never_with_a_500() {
    let s = setup(1).await;
    let (status, body) = s.call("createSyncDataMapping", "wrong", "{}").await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(body["errCode"], SUCCESS);
    let (status, body) = s.call("createSyncDataMapping", API_TOKEN, "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errMsg"].as_str().unwrap().contains("not JSON"), "{body}");
    let (status, body) = s
        .call(
            "createSyncDataMapping",
            API_TOKEN,
            &objects(json!({"sourceDataId": 12, "destDataId": "x"})).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errMsg"].as_str().unwrap().contains("sourceDataId"), "{body}");
    // Unknown objects, ids and functions: the envelope says so, as the platform's functions do.
    let (status, body) = s
        .call(
            "updateSyncDataMapping",
            API_TOKEN,
            &json!({"sourceObjectApiName": "AccountObj", "destObjectApiName": "BD_Customer.BillHead", "sourceDataId": "a", "destDataId": "b"}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_ne!(body["errCode"], SUCCESS);
    assert!(
        body["errMsg"]
            .as_str()
            .unwrap()
            .contains("shop-orders-to-erp (order → SAL_SaleOrder)"),
        "{body}"
    );
    let (status, body) = s
        .call(
            "updateSyncDataMapping",
            API_TOKEN,
            &objects(json!({"sourceDataId": "SO0000001", "destDataId": "b"})).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body["errMsg"].as_str().unwrap().contains("has no mapping"), "{body}");
    let (status, body) = s.call("dropEverything", API_TOKEN, "{}").await;
    assert_eq!(status, 200);
    assert_ne!(body["errCode"], SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_refused_while_a_run_holds_the_scheme_or_a_write_is_unsettled() {
    let s = setup(1).await;
    let params = objects(json!({"sourceDataId": "SO0000001", "destDataId": "T1"})).to_string();
    {
        let _held = ferry::store::lock::acquire(&s.store, &s.plan.name, false)
            .await
            .unwrap();
        let (status, body) = s.call("createSyncDataMapping", API_TOKEN, &params).await;
        assert_eq!(status, 409, "{body}");
        assert!(body["errMsg"].as_str().unwrap().contains("in progress"), "{body}");
    }
    s.store
        .record_intents(&[WriteIntent {
            scheme: s.plan.name.clone(),
            source_object: "order".into(),
            source_id: "SO0000001".into(),
            source_name: None,
            batch_id: "1-0".into(),
            operation: WriteOperation::Create,
            business_key: Some("SO0000001".into()),
            target_id: None,
            payload_hash: "h".into(),
            payload: None,
            sent: None,
            created_at: chrono::Utc::now(),
        }])
        .await
        .unwrap();
    let (status, body) = s.call("createSyncDataMapping", API_TOKEN, &params).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["errMsg"].as_str().unwrap().contains("write in flight"), "{body}");
    // Another record is not held up.
    s.ok(
        "createSyncDataMapping",
        objects(json!({"sourceDataId": "SO0000002", "destDataId": "T2"})),
    )
    .await;
    // And a mapped record is not created twice.
    let (status, body) = s
        .call(
            "createSyncDataMapping",
            API_TOKEN,
            &objects(json!({"sourceDataId": "SO0000002", "destDataId": "T3"})).to_string(),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["errMsg"].as_str().unwrap().contains("already mapped to `T2`"),
        "{body}"
    );
}

/// `ferry serve` hosts the API and the console for a polled scheme when
/// `FERRY_OPERATOR_TOKEN` is set, and refuses a polled scheme without it.
#[test]
fn ferry_serve_hosts_the_api_and_the_console_with_an_operator_token() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ferry.db");
    let serve = |token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args([
                "serve",
                "schemes/shop-orders-to-erp.yaml",
                "--listen",
                "127.0.0.1:0",
                "--store",
            ])
            .arg(&store)
            .env_remove("FERRY_STORE")
            .env_remove("FERRY_OPERATOR_TOKEN")
            .env("FERRY_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(token) = token {
            command.env("FERRY_OPERATOR_TOKEN", token);
        }
        command.spawn().unwrap()
    };
    let refused = serve(None).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FERRY_OPERATOR_TOKEN"));

    let mut child = serve(Some(API_TOKEN));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().strip_prefix("listening on ").expect(&line).to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let answer: Value = client
            .post(format!("{base}/erp/syncData/createSyncDataMapping"))
            .header("token", API_TOKEN)
            .json(&objects(json!({"sourceDataId": "SO0000001", "destDataId": "T-9"})))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["errCode"], SUCCESS, "{answer}");
        let login = client.get(format!("{base}/console/login")).send().await.unwrap();
        assert_eq!(login.status(), 200);
        let page = client.get(format!("{base}/console/")).send().await.unwrap();
        assert!(page.status().is_redirection(), "no session: {}", page.status());
    });
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_erp_field_mapping_adds_a_value_row_that_field_map_reads() {
    use ferry::store::{FieldMappingFilter, FieldMappingStore};
    let s = setup(1).await;
    let row = json!({"dataCenterId": "dc1", "channel": "ERP_K3CLOUD", "dataType": "employee",
        "fsDataId": "E1", "fsDataName": "Ada", "erpDataId": "0001", "erpDataName": "Ada L."});
    s.ok("createErpfieldmapping", row.clone()).await;
    let rows = s
        .store
        .list_field_mappings(&FieldMappingFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].crm_value.as_str(), rows[0].erp_value.as_str()), ("E1", "0001"));
    // The ERP value already belongs to E1.
    let mut clash = row.clone();
    clash["fsDataId"] = json!("E2");
    let (status, body) = s.call("createErpfieldmapping", API_TOKEN, &clash.to_string()).await;
    assert_eq!(status, 409, "{body}");
    let mut bad = row;
    bad["channel"] = json!("ERP_K3");
    let (status, body) = s.call("createErpfieldmapping", API_TOKEN, &bad.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errMsg"].as_str().unwrap().contains("ERP_K3CLOUD"), "{body}");
}
