//! Receive mode end to end: the built `ferry serve` binary takes pushes written from the
//! seeds' wire format (seed 000 §4 headers and bodies, seed 001's ERP push shape) by a
//! plain HTTP client, and the `shop` simulator's target shows what was written.

use ferry::sim::shop::{ShopConfig, ShopSim};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "push-token-for-tests";

/// The shipped receiving scheme, and a non-standard one reading XML `<orders>` bodies.
fn schemes(dir: &Path) -> (PathBuf, PathBuf) {
    let standard = dir.join("standard.yaml");
    std::fs::copy("schemes/receive-orders-to-erp.yaml", &standard).unwrap();
    let text = std::fs::read_to_string(&standard).unwrap();
    let xml = text
        .replace("name: receive-orders-to-erp", "name: receive-xml-orders")
        .replace(
            "    path: orders\n    objectApiName: SaleOrderObj\n",
            "    path: xml-orders\n    format: non_standard\n    codec: xml\n",
        )
        .replace(
            "  object: order\n  id: \"<< id >>\"",
            "  object: xml-order\n  records: $.orders.order[*]\n  id: \"<< no >>\"",
        )
        .replace("  name: \"<< masterFieldVal.customer >>\"\n", "")
        .replace("masterFieldVal.", "")
        .replace("$.detailFieldVals.SaleOrderLines[*]", "$.line[*]");
    let non_standard = dir.join("xml.yaml");
    std::fs::write(&non_standard, xml).unwrap();
    (standard, non_standard)
}

async fn start_sim() -> (ShopSim, ferry::sim::SimHandle, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sim, handle) = ShopSim::start(ShopConfig::default(), listener).await.unwrap();
    let url = handle.base_url();
    (sim, handle, url)
}

/// A temporary folder holding the receiving schemes and a SQLite store, in front of a shop
/// simulator.
struct Rig {
    _dir: tempfile::TempDir,
    standard: PathBuf,
    xml: PathBuf,
    sim: ShopSim,
    _handle: ferry::sim::SimHandle,
    url: String,
    store: String,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (standard, xml) = schemes(dir.path());
        let (sim, handle, url) = start_sim().await;
        let store = dir.path().join("ferry.db").display().to_string();
        Rig {
            _dir: dir,
            standard,
            xml,
            sim,
            _handle: handle,
            url,
            store,
        }
    }

    /// `ferry serve` of `schemes` on this store, writing to this simulator.
    async fn serve(&self, schemes: &[&Path]) -> Serve {
        Serve::start(schemes, &self.store, &self.url).await
    }
}

/// A running `ferry serve`.
struct Serve {
    child: tokio::process::Child,
    base: String,
}

impl Serve {
    async fn start(schemes: &[&Path], store: &str, erp_url: &str) -> Serve {
        Serve::start_with(schemes, store, erp_url, &[]).await
    }

    async fn start_with(schemes: &[&Path], store: &str, erp_url: &str, extra: &[&str]) -> Serve {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .arg("serve")
            .args(schemes)
            .args(["--listen", "127.0.0.1:0", "--store", store])
            .args(extra)
            .env("ERP_URL", erp_url)
            .env("PUSH_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("ferry serve prints its address")
            .unwrap()
            .expect("a line on stdout");
        let base = line.strip_prefix("listening on ").expect(&line).to_string();
        Serve { child, base }
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill").args([which, &pid]).status().unwrap();
        assert!(status.success());
    }

    async fn exit_code(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("ferry serve stops within a minute of SIGTERM")
            .unwrap()
            .code()
    }
}

/// A seed-000 standard-format push: `id` header and `{objAPIName, masterFieldVal, detailFieldVals}`.
fn standard_body(no: &str, amount: &str, qty: u32) -> String {
    format!(
        r#"{{"objAPIName":"SaleOrderObj","masterFieldVal":{{"no":"{no}","customer_code":"C-1","customer":"Ada","amount":"{amount}"}},"detailFieldVals":{{"SaleOrderLines":[{{"sku":"P-1","qty":"{qty}"}}]}}}}"#
    )
}

async fn push_standard(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    id: &str,
    body: String,
) -> (u16, Value) {
    let mut request = client
        .post(format!("{base}/receive/orders"))
        .header("id", id)
        .header("objectApiName", "SaleOrderObj")
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.header("token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn inbox_rows(store: &str) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["inbox", "list", "--json", "--limit", "100000", "--store", store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A scheme that takes the sender's `Idempotency-Key` header as a push's key (seed 000's
/// non-standard format has no `id` header to tell a new push from a repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_idempotency_key_tells_repeats_from_new_pushes() {
    let rig = Rig::new().await;
    let keyed = rig.xml.with_file_name("keyed.yaml");
    let text = std::fs::read_to_string(&rig.xml).unwrap().replace(
        "    codec: xml\n",
        "    codec: xml\n    idempotency_key: {header: Idempotency-Key}\n",
    );
    assert!(text.contains("idempotency_key"), "the scheme fixture changed shape");
    std::fs::write(&keyed, text).unwrap();
    let serve = rig.serve(&[&keyed]).await;
    let client = reqwest::Client::new();
    let body = "<orders><order><no>K-1</no><customer_code>C-2</customer_code><customer>Bo</customer>\
                <amount>5</amount><line><sku>P-9</sku><qty>4</qty></line></order></orders>";
    let push = |key: Option<&'static str>| {
        let mut request = client
            .post(format!("{}/receive/xml-orders", serve.base))
            .header("token", TOKEN)
            .header("Content-Type", "application/xml")
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = push(Some("evt-1")).await;
    assert_eq!((status, &first["errCode"]), (200, &json!("s106240000")), "{first}");
    let (status, repeat) = push(Some("evt-1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        repeat["inboxId"], first["inboxId"],
        "the same key and body is the same push"
    );
    let (status, second) = push(Some("evt-2")).await;
    assert_eq!(status, 200);
    assert_ne!(
        second["inboxId"], first["inboxId"],
        "a new key is a new push, even with the same body"
    );
    let (status, refused) = push(None).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["errMsg"].as_str().unwrap_or_default();
    assert!(message.contains("`Idempotency-Key` header"), "{message}");
    assert_eq!(inbox_rows(&rig.store).len(), 2, "the refused push was not stored");
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_in_each_format_land_in_the_target_and_a_second_push_updates() {
    let rig = Rig::new().await;
    let (sim, store) = (&rig.sim, rig.store.clone());
    let serve = rig.serve(&[&rig.standard, &rig.xml]).await;
    let client = reqwest::Client::new();

    // Standard format: created with its detail rows, then updated by a second push.
    let (status, answer) = push_standard(
        &client,
        &serve.base,
        Some(TOKEN),
        "SO-1",
        standard_body("SO-1", "12.50", 2),
    )
    .await;
    assert_eq!(
        (status, answer["errCode"].as_str()),
        (200, Some("s106240000")),
        "{answer}"
    );
    assert!(answer["inboxId"].is_i64());
    wait_for("SO-1 in the target", || sim.target_row_by_bill_no("SO-1").is_some()).await;
    let row = sim.target_row_by_bill_no("SO-1").unwrap();
    assert_eq!(row["FAmount"], json!(12.5));
    assert_eq!(row["FEntity"][0]["FQty"], json!(2));
    let (status, _) = push_standard(
        &client,
        &serve.base,
        Some(TOKEN),
        "SO-1",
        standard_body("SO-1", "13.50", 3),
    )
    .await;
    assert_eq!(status, 200);
    wait_for("SO-1 updated", || {
        sim.target_row_by_bill_no("SO-1")
            .is_some_and(|row| row["FAmount"] == json!(13.5))
    })
    .await;
    assert_eq!(sim.target_count(), 1, "the second push updated the first record");
    assert!(sim.update_calls() >= 1);

    // Non-standard format: no `id` header, an XML body the scheme reads with `records`.
    let order = |no: &str| {
        format!(
            "<order><no>{no}</no><customer_code>C-2</customer_code><customer>Bo</customer><amount>5</amount>\
             <line><sku>P-9</sku><qty>4</qty></line><line><sku>P-8</sku><qty>1</qty></line></order>"
        )
    };
    let xml_body = format!("<orders>{}{}</orders>", order("X-1"), order("X-2"));
    let response = client
        .post(format!("{}/receive/xml-orders", serve.base))
        .header("token", TOKEN)
        .header("Content-Type", "application/xml")
        .body(xml_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    wait_for("X-1 and X-2 in the target", || {
        sim.target_row_by_bill_no("X-2").is_some()
    })
    .await;
    let row = sim.target_row_by_bill_no("X-1").unwrap();
    assert_eq!(
        (row["FAmount"].clone(), row["FEntity"][1]["FQty"].clone()),
        (json!(5.0), json!(1))
    );

    // Fxiaoke push shape with directSync: answered after the record was written.
    let fxiaoke = r#"{"data":{"objAPIName":"SaleOrderObj","id":"SO-7","directSync":true,"destObjectApiName":"SalesOrderObj",
        "masterFieldVal":{"no":"SO-7","customer_code":"C-3","customer":"Cy","amount":"7"},"detailFieldVals":{}}}"#;
    let response = client
        .post(format!(
            "{}/cgi/crm/erp/syncdata/objdata/push?thirdTraceId=trace-7",
            serve.base
        ))
        .header("token", TOKEN)
        .header("Content-Type", "application/json")
        .body(fxiaoke)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["errorCode"].clone(), answer["traceId"].clone()),
        (json!(0), json!("trace-7")),
        "{answer}"
    );
    assert!(
        sim.target_row_by_bill_no("SO-7").is_some(),
        "directSync answers after the write"
    );

    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    let rows = inbox_rows(&store);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "done"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_push_is_stored_and_written_once() {
    let rig = Rig::new().await;
    let (sim, store) = (&rig.sim, rig.store.clone());
    let serve = rig.serve(&[&rig.standard]).await;
    let client = reqwest::Client::new();
    let (_, first) = push_standard(&client, &serve.base, Some(TOKEN), "SO-2", standard_body("SO-2", "1", 1)).await;
    let (_, second) = push_standard(&client, &serve.base, Some(TOKEN), "SO-2", standard_body("SO-2", "1", 1)).await;
    assert_eq!(
        first["inboxId"], second["inboxId"],
        "the repeat gets the original inbox id"
    );
    assert_eq!(second["errCode"], "s106240000");
    wait_for("SO-2 in the target", || sim.target_row_by_bill_no("SO-2").is_some()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!((sim.create_calls(), sim.update_calls()), (1, 0));
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    assert_eq!(inbox_rows(&store).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pushes_are_answered_and_never_stored() {
    let rig = Rig::new().await;
    let (sim, store) = (&rig.sim, rig.store.clone());
    let serve = rig.serve(&[&rig.standard]).await;
    let client = reqwest::Client::new();
    let body = || standard_body("SO-3", "1", 1);

    let (status, answer) = push_standard(&client, &serve.base, Some("wrong"), "SO-3", body()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["errMsg"].as_str().unwrap().contains("token"), "{answer}");
    assert!(
        !answer.to_string().contains(TOKEN),
        "the answer never quotes the secret"
    );
    let (status, _) = push_standard(&client, &serve.base, None, "SO-3", body()).await;
    assert_eq!(status, 401);

    // Routing: an objAPIName no scheme takes, and a path no scheme serves.
    let other = body().replace("SaleOrderObj", "ReturnOrderObj");
    let response = client
        .post(format!("{}/receive/orders", serve.base))
        .header("token", TOKEN)
        .header("id", "SO-3")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["errMsg"].as_str().unwrap().contains("ReturnOrderObj"),
        "{answer}"
    );
    let response = client
        .post(format!("{}/receive/nowhere", serve.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    // Malformed and oversized bodies.
    let (status, answer) = push_standard(
        &client,
        &serve.base,
        Some(TOKEN),
        "SO-3",
        r#"{"objAPIName":"SaleOrderObj"}"#.into(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["errMsg"].as_str().unwrap().contains("masterFieldVal"),
        "{answer}"
    );
    let huge = format!(
        r#"{{"objAPIName":"SaleOrderObj","masterFieldVal":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    // Its own connection: the server may close the one it refused an unread body on.
    let (status, _) = push_standard(&reqwest::Client::new(), &serve.base, Some(TOKEN), "SO-3", huge).await;
    assert_eq!(status, 413);
    let response = client
        .post(format!("{}/cgi/crm/erp/syncdata/objdata/push", serve.base))
        .header("token", TOKEN)
        .body(r#"{"nodata":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["errorCode"], 400);

    // Health and metrics.
    let health = client.get(format!("{}/readyz", serve.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = client
        .get(format!("{}/metrics", serve.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"ferry_receive_pushes_total{outcome="unauthorized",scheme="receive-orders-to-erp"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_inbox_pending"), "{metrics}");

    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    assert!(inbox_rows(&store).is_empty());
    assert_eq!(sim.target_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (standard, _) = schemes(dir.path());
    let text = std::fs::read_to_string(&standard).unwrap();
    std::fs::write(
        &standard,
        text.replace("    path: orders\n", "    path: orders\n    max_pending: 1\n"),
    )
    .unwrap();
    // The target is not listening, so the first push stays pending.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let store = dir.path().join("ferry.db").display().to_string();
    let serve = Serve::start(&[&standard], &store, &dead).await;
    let client = reqwest::Client::new();
    let (status, _) = push_standard(&client, &serve.base, Some(TOKEN), "SO-4", standard_body("SO-4", "1", 1)).await;
    assert_eq!(status, 200);
    let response = client
        .post(format!("{}/receive/orders", serve.base))
        .header("token", TOKEN)
        .header("id", "SO-5")
        .body(standard_body("SO-5", "1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    let rows = inbox_rows(&store);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["status"], "pending",
        "an unreachable target leaves the push for a retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_without_target_delete_is_recorded_and_reported() {
    let rig = Rig::new().await;
    let (sim, store) = (&rig.sim, rig.store.clone());
    let serve = rig.serve(&[&rig.standard]).await;
    let client = reqwest::Client::new();
    let (status, _) = push_standard(&client, &serve.base, Some(TOKEN), "SO-8", standard_body("SO-8", "1", 1)).await;
    assert_eq!(status, 200);
    wait_for("SO-8 in the target", || sim.target_row_by_bill_no("SO-8").is_some()).await;
    let response = client
        .post(format!("{}/receive/orders", serve.base))
        .header("token", TOKEN)
        .header("id", "SO-8")
        .header("operationType", "3")
        .body(standard_body("SO-8", "1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "a cancellation is a new push, not a repeat"
    );
    let answer: Value = response.json().await.unwrap();
    let id = answer["inboxId"].as_i64().unwrap();
    let rows = || inbox_rows(&store);
    wait_for("the cancellation settled", || {
        rows().iter().any(|r| r["id"] == json!(id) && r["status"] != "pending")
    })
    .await;
    let row = rows().into_iter().find(|r| r["id"] == json!(id)).unwrap();
    assert_eq!(
        (row["status"].as_str(), row["cancel"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert!(row["last_error"].as_str().unwrap().contains("target.delete"), "{row}");
    assert!(sim.target_row_by_bill_no("SO-8").is_some(), "nothing was deleted");
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
}

/// Pushes `count` standard pushes from `clients` concurrent clients; returns the bill
/// numbers that were acknowledged.
async fn storm(base: &str, clients: usize, count: usize, prefix: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let client = client.clone();
        let base = base.to_string();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for n in (c..count).step_by(clients) {
                let no = format!("{prefix}-{n:05}");
                let sent = client
                    .post(format!("{base}/receive/orders"))
                    .header("token", TOKEN)
                    .header("id", &no)
                    .body(standard_body(&no, "1", 1))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                if status == 200 && answer["errCode"] == "s106240000" {
                    acked.push(no);
                }
            }
            acked
        });
    }
    let mut acked = Vec::new();
    while let Some(done) = tasks.join_next().await {
        acked.extend(done.unwrap());
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_push_storm_loses_no_acknowledged_push() {
    let rig = Rig::new().await;
    let (sim, store) = (&rig.sim, rig.store.clone());
    let (standard, url) = (rig.standard.clone(), rig.url.clone());
    let serve = rig.serve(&[&rig.standard]).await;
    let base = serve.base.clone();
    let pushing = tokio::spawn(async move { storm(&base, 8, 5_000, "T").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0), "SIGTERM stops ferry serve cleanly");
    let acked = pushing.await.unwrap();
    println!("{} of 5,000 acknowledged before the stop", acked.len());
    assert!(!acked.is_empty() && acked.len() < 5_000, "the stop came mid-storm");

    // Every acknowledged push is in the inbox; a restart applies what was left pending.
    let rows = inbox_rows(&store);
    for no in &acked {
        assert!(
            rows.iter().any(|r| r["business_key"] == json!(no)),
            "{no} was acknowledged but not stored"
        );
    }
    let serve = Serve::start(&[&standard], &store, &url).await;
    wait_for("every acknowledged push in the target", || {
        acked.iter().all(|no| sim.target_row_by_bill_no(no).is_some())
    })
    .await;
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    assert_eq!(sim.duplicate_creates(), 0, "nothing was created twice");
    assert_eq!(sim.target_count(), rows.len(), "each stored push is one target record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_push_storm_then_a_restart_writes_every_acknowledged_push_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ferry.db").display().to_string();
    kill_during_storms_then_restart(&store, &[150, 350]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_push_storm_on_postgres_then_a_restart_writes_every_acknowledged_push_once() {
    let Some((url, pool, schema)) = postgres_schema().await else {
        return;
    };
    kill_during_storms_then_restart(&url, &[100, 250, 450]).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// One round a pause: `ferry serve` on `store` takes a storm of 5,000 pushes and is
/// SIGKILLed `pause` ms in. Then every acknowledged push is stored, nothing is stored that
/// was not sent, and a restart writes each stored push to the target exactly once.
async fn kill_during_storms_then_restart(store: &str, pauses_ms: &[u64]) {
    const PER_ROUND: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let (standard, _) = schemes(dir.path());
    let (sim, _handle, url) = start_sim().await;
    let mut acked = Vec::new();
    for (round, pause_ms) in pauses_ms.iter().enumerate() {
        let serve = Serve::start_with(&[&standard], store, &url, &["--lease", "1s"]).await;
        let base = serve.base.clone();
        let prefix = format!("K{round}");
        let pushing = tokio::spawn(async move { storm(&base, 8, PER_ROUND, &prefix).await });
        tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
        serve.signal("-KILL");
        assert_eq!(serve.exit_code().await, None, "killed by a signal");
        let round_acked = pushing.await.unwrap();
        println!(
            "round {round}: killed after {pause_ms} ms, {} acknowledged",
            round_acked.len()
        );
        acked.extend(round_acked);
    }
    let sent = PER_ROUND * pauses_ms.len();
    let rows = inbox_rows(store);
    println!("{} acknowledged, {} stored, of {sent} sent", acked.len(), rows.len());
    assert!(!acked.is_empty() && acked.len() < sent, "the kills came mid-storm");
    for no in &acked {
        assert!(
            rows.iter().any(|r| r["business_key"] == json!(no)),
            "{no} was acknowledged but not stored"
        );
    }
    // A stored push may have lost its answer to the kill, but each one was sent, once.
    let mut stored: Vec<&str> = rows.iter().map(|r| r["business_key"].as_str().unwrap()).collect();
    stored.sort_unstable();
    let before = stored.len();
    stored.dedup();
    assert_eq!(stored.len(), before, "a push is stored once");
    for key in &stored {
        let (prefix, n) = key.split_once('-').unwrap();
        let round: usize = prefix.strip_prefix('K').unwrap().parse().unwrap();
        assert!(
            round < pauses_ms.len() && n.parse::<usize>().unwrap() < PER_ROUND,
            "{key} was never sent"
        );
    }
    // A restart takes over the killed workers' rows once their lease ran out.
    let serve = Serve::start_with(&[&standard], store, &url, &["--lease", "1s"]).await;
    // Rows the killed process had claimed (and maybe written) are settled after their lease.
    wait_for("every stored push settled", || {
        inbox_rows(store).iter().all(|r| r["status"] == "done")
    })
    .await;
    assert_eq!(sim.target_count(), rows.len(), "each stored push is one target record");
    assert!(acked.iter().all(|no| sim.target_row_by_bill_no(no).is_some()));
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    assert_eq!(sim.duplicate_creates(), 0, "nothing was created twice");
}

/// The CI-sized storm's big brother: 10,000 pushes from 16 clients, a tenth repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10,000 pushes; run with --ignored"]
async fn ten_thousand_pushes_land_exactly_once() {
    let rig = Rig::new().await;
    let sim = &rig.sim;
    let serve = rig.serve(&[&rig.standard]).await;
    let started = Instant::now();
    let acked = storm(&serve.base, 16, 10_000, "B").await;
    let elapsed = started.elapsed();
    println!(
        "{} acknowledged in {:.2}s = {:.0} pushes/s",
        acked.len(),
        elapsed.as_secs_f64(),
        acked.len() as f64 / elapsed.as_secs_f64()
    );
    let repeats = storm(&serve.base, 16, 1_000, "B").await;
    assert_eq!(repeats.len(), 1_000);
    wait_for("the inbox drained", || sim.target_count() == 10_000).await;
    println!("drained in {:.2}s", started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((sim.target_count(), sim.duplicate_creates()), (10_000, 0));
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
}

/// A fresh schema on `FERRY_TEST_PG_URL` (default the local test server), or `None`
/// (printed as SKIPPED) when there is no server; with `CI=true` no server is a failure.
async fn postgres_schema() -> Option<(String, sqlx::PgPool, String)> {
    let base = std::env::var("FERRY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = match sqlx::PgPool::connect(&base).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no PostgreSQL at {base} ({e}); CI=true, so the Postgres tests must run")
        }
        Err(e) => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no PostgreSQL at {base}: {e}");
            return None;
        }
    };
    let schema = format!("ferry_receive_{}", rand::random::<u32>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some((
        format!("{base}{separator}options=-csearch_path%3D{schema}"),
        pool,
        schema,
    ))
}

/// Hosts running `ferry serve` on one Postgres inbox (a fresh schema), in front of one
/// shop simulator. `None` when there is no Postgres (outside CI).
struct PgHosts {
    pool: sqlx::PgPool,
    schema: String,
    sim: ShopSim,
    hosts: Vec<Serve>,
    _handle: ferry::sim::SimHandle,
    _dir: tempfile::TempDir,
}

impl PgHosts {
    async fn start(count: usize, extra: &[&str]) -> Option<PgHosts> {
        let (url, pool, schema) = postgres_schema().await?;
        let dir = tempfile::tempdir().unwrap();
        let (standard, _) = schemes(dir.path());
        let (sim, handle, erp) = start_sim().await;
        let mut hosts = Vec::with_capacity(count);
        for _ in 0..count {
            hosts.push(Serve::start_with(&[&standard], &url, &erp, extra).await);
        }
        Some(PgHosts {
            pool,
            schema,
            sim,
            hosts,
            _handle: handle,
            _dir: dir,
        })
    }

    /// The hosts, to own (stop, kill, wait for) one by one.
    fn take_hosts<const N: usize>(&mut self) -> [Serve; N] {
        std::mem::take(&mut self.hosts)
            .try_into()
            .ok()
            .expect("as many hosts as started")
    }

    /// Inbox rows, with a condition (`status = 'done'`, …).
    async fn count(&self, condition: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.inbox WHERE {condition}", self.schema))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_one_postgres_inbox() {
    let Some(mut pg) = PgHosts::start(2, &[]).await else {
        return;
    };
    let [first, second] = pg.take_hosts();
    // Each host takes half the clients; both workers drain the one inbox.
    let (a, b) = tokio::join!(storm(&first.base, 4, 300, "PA"), storm(&second.base, 4, 300, "PB"));
    assert_eq!((a.len(), b.len()), (300, 300));
    wait_for("all 600 pushes in the target", || pg.sim.target_count() == 600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((pg.sim.target_count(), pg.sim.duplicate_creates()), (600, 0));
    first.terminate();
    second.terminate();
    assert_eq!((first.exit_code().await, second.exit_code().await), (Some(0), Some(0)));
    assert_eq!(pg.count("status = 'done'").await, 600);
    pg.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_leaves_its_pushes_to_the_other_on_one_postgres_inbox() {
    let Some(mut pg) = PgHosts::start(2, &["--lease", "1s"]).await else {
        return;
    };
    let [doomed, survivor] = pg.take_hosts();
    let (doomed_base, survivor_base) = (doomed.base.clone(), survivor.base.clone());
    let to_doomed = tokio::spawn(async move { storm(&doomed_base, 4, 5_000, "KA").await });
    let to_survivor = tokio::spawn(async move { storm(&survivor_base, 4, 400, "KB").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    doomed.signal("-KILL");
    assert_eq!(doomed.exit_code().await, None);
    let mut acked = to_doomed.await.unwrap();
    assert!(acked.len() < 5_000, "the kill came mid-storm");
    acked.extend(to_survivor.await.unwrap());
    let stored = pg.count("TRUE").await;
    wait_for("every stored push in the target", || {
        pg.sim.target_count() as i64 == stored
    })
    .await;
    assert!(acked.iter().all(|no| pg.sim.target_row_by_bill_no(no).is_some()));
    assert_eq!(pg.sim.duplicate_creates(), 0, "nothing was created twice");
    survivor.terminate();
    assert_eq!(survivor.exit_code().await, Some(0));
    pg.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_pushes_follow_standard_webhooks() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let dir = tempfile::tempdir().unwrap();
    let (standard, _) = schemes(dir.path());
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(b"a shared signing key");
    let text = std::fs::read_to_string(&standard).unwrap();
    let signed = text.replace(
        "auth: {token: \"${PUSH_TOKEN:-demo-push-token}\"}",
        &format!(
            "auth: {{token: \"${{PUSH_TOKEN:-demo-push-token}}\", signing_secrets: [\"${{WEBHOOK_SECRET:-whsec_{secret_b64}}}\"]}}"
        ),
    );
    assert_ne!(signed, text);
    std::fs::write(&standard, signed).unwrap();
    let (sim, _handle, url) = start_sim().await;
    let store = dir.path().join("ferry.db").display().to_string();
    let serve = Serve::start(&[&standard], &store, &url).await;
    let client = reqwest::Client::new();
    let body = standard_body("SO-9", "9", 1);
    let now = chrono::Utc::now().timestamp();
    // The sender's side, from the Standard Webhooks spec: HMAC-SHA256 of `id.timestamp.body`.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"a shared signing key").unwrap();
    mac.update(format!("msg_1.{now}.{body}").as_bytes());
    let signature = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let send = |signature: Option<String>, timestamp: i64| {
        let mut request = client
            .post(format!("{}/receive/orders", serve.base))
            .header("token", TOKEN)
            .header("id", "SO-9")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", timestamp.to_string())
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("webhook-signature", signature);
        }
        request.send()
    };
    assert_eq!(send(None, now).await.unwrap().status().as_u16(), 401, "unsigned");
    assert_eq!(
        send(Some(signature.clone()), now - 3600)
            .await
            .unwrap()
            .status()
            .as_u16(),
        401,
        "stale"
    );
    assert_eq!(
        send(Some("v1,bm90IGl0".into()), now).await.unwrap().status().as_u16(),
        401,
        "wrong"
    );
    assert_eq!(send(Some(signature), now).await.unwrap().status().as_u16(), 200);
    wait_for("SO-9 in the target", || sim.target_row_by_bill_no("SO-9").is_some()).await;
    serve.terminate();
    assert_eq!(serve.exit_code().await, Some(0));
    assert_eq!(inbox_rows(&store).len(), 1);
}

#[test]
fn serve_and_run_refuse_the_wrong_kind_of_scheme_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ferry.db").display().to_string();
    let ferry = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--store", &store])
            .output()
            .unwrap()
    };
    let polled = ferry(&["serve", "schemes/shop-orders-to-erp.yaml", "--listen", "127.0.0.1:0"]);
    assert_eq!(polled.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&polled.stderr).contains("reads its source"));
    let receiving = ferry(&["run", "schemes/receive-orders-to-erp.yaml"]);
    assert_eq!(receiving.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&receiving.stderr).contains("ferry serve"));
    assert!(
        !dir.path().join("ferry.db").exists(),
        "refused before any store was created"
    );
}

/// A badly written `idempotency_key` is a configuration error at its line.
#[test]
fn an_idempotency_key_must_name_one_header_or_one_path() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string("schemes/receive-orders-to-erp.yaml").unwrap();
    for (key, expected) in [
        ("{header: X-Key, path: $.id}", "give exactly one of `header` and `path`"),
        ("{header: \"X Key\"}", "`X Key` is not a valid header name"),
        ("{path: \"$.[\"}", "source.receive.idempotency_key.path"),
    ] {
        let scheme = dir.path().join("keyed.yaml");
        let text = base.replace(
            "    path: orders\n",
            &format!("    path: orders\n    idempotency_key: {key}\n"),
        );
        assert!(text.contains("idempotency_key"), "the shipped scheme changed shape");
        std::fs::write(&scheme, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["validate"])
            .arg(&scheme)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(expected), "{key}: {stderr}");
        assert!(
            stderr.contains("keyed.yaml:"),
            "{key}: the file and line are named: {stderr}"
        );
    }
}

/// `ferry bench --workload receive` drives `ferry serve` with concurrent clients and
/// reports acknowledgements, latency and the drain (a functional check, not a timing).
#[test]
fn the_receive_bench_acknowledges_every_push_and_sees_the_inbox_drain() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "--workload", "receive", "--records", "40", "--clients", "4"])
        .env_remove("FERRY_STORE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("40 acknowledged, 0 refused"), "{stdout}");
    assert!(stdout.contains("all pushes applied to the target"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
}

/// Three hosts on one Postgres inbox, one killed mid-storm: every stored push reaches the
/// target once, and updates of one key sent to different hosts land in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_drain_one_postgres_inbox_in_key_order_while_one_is_killed() {
    let Some(mut pg) = PgHosts::start(3, &["--lease", "1s"]).await else {
        return;
    };
    let [doomed, second, third] = pg.take_hosts();
    let (doomed_base, second_base, third_base) = (doomed.base.clone(), second.base.clone(), third.base.clone());
    let to_doomed = tokio::spawn(async move { storm(&doomed_base, 4, 5_000, "TA").await });
    let to_second = tokio::spawn({
        let base = second.base.clone();
        async move { storm(&base, 2, 300, "TB").await }
    });
    // Versions 1..=6 of five keys, each sent after the previous one was acknowledged,
    // alternating between the two surviving hosts.
    let updates = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for version in 1..=6 {
            for key in 1..=5 {
                let base = if version % 2 == 0 { &second_base } else { &third_base };
                let id = format!("TK-{key}");
                let (status, answer) = push_standard(
                    &client,
                    base,
                    Some(TOKEN),
                    &id,
                    standard_body(&id, &version.to_string(), 1),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    doomed.signal("-KILL");
    assert_eq!(doomed.exit_code().await, None);
    let mut acked = to_doomed.await.unwrap();
    assert!(acked.len() < 5_000, "the kill came mid-storm");
    acked.extend(to_second.await.unwrap());
    updates.await.unwrap();
    // The killed host's claims expire and the others take them over.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = pg.count("status <> 'done'").await;
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} pushes still not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked.iter().all(|no| pg.sim.target_row_by_bill_no(no).is_some()));
    assert_eq!(pg.sim.duplicate_creates(), 0, "nothing was created twice");
    for key in 1..=5 {
        let row = pg.sim.target_row_by_bill_no(&format!("TK-{key}")).unwrap();
        assert_eq!(row["FAmount"], json!(6.0), "the last version of TK-{key} wins: {row}");
    }
    second.terminate();
    third.terminate();
    assert_eq!((second.exit_code().await, third.exit_code().await), (Some(0), Some(0)));
    pg.drop_schema().await;
}
