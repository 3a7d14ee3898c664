//! Issue 14 §3 and §5 as an operator meets them: `ferry checkpoint`, `ferry explain`,
//! resync by id and alerts. Every network peer is one of Ferry's simulators (or a test
//! receiver) on 127.0.0.1.

mod support;
use std::process::Output;
use support::{describe, ferry, json, start_shop as start_sim, text};

const SCHEME: &str = "schemes/shop-orders-to-erp.yaml";
const SCHEME_NAME: &str = "shop-orders-to-erp";

fn checkpoint_of(store: &str) -> serde_json::Value {
    let shown = ferry(&["checkpoint", "show", SCHEME_NAME, "--store", store, "--json"], &[]);
    assert_eq!(shown.status.code(), Some(0), "{}", describe(&shown));
    json(&shown)["checkpoint"].clone()
}

#[test]
fn checkpoints_are_shown_set_validated_and_cleared_but_never_under_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("c.db").display().to_string();

    // `show` never creates a store.
    let missing = ferry(&["checkpoint", "show", SCHEME_NAME, "--store", &store], &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(!std::path::Path::new(&store).exists());

    // Bad values exit 2 and change nothing.
    for (scheme, value, says) in [
        (SCHEME_NAME, "2024-03-01 08:00:00", "no offset"),
        (SCHEME, "the first of March", "not a time"),
        (SCHEME, "2999-01-01", "future"),
    ] {
        let out = ferry(&["checkpoint", "set", scheme, value, "--store", &store], &[]);
        assert_eq!(out.status.code(), Some(2), "{value}: {}", describe(&out));
        assert!(text(&out.stderr).contains(says), "{value}: {}", describe(&out));
    }
    assert!(
        !std::path::Path::new(&store).exists(),
        "a refused set created the store"
    );

    // A local time is read in the scheme's timezone (Asia/Shanghai).
    let set = ferry(
        &["checkpoint", "set", SCHEME, "2024-03-01 08:00:00", "--store", &store],
        &[],
    );
    assert_eq!(set.status.code(), Some(0), "{}", describe(&set));
    assert_eq!(checkpoint_of(&store), "2024-03-01T08:00:00+08:00");
    let shown = json(&ferry(
        &["checkpoint", "show", SCHEME, "--store", &store, "--json"],
        &[],
    ));
    assert!(shown["lag_seconds"].as_i64().unwrap() > 0);

    // While a run holds the lock, set and clear are refused with exit 4.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (held_store, lock) = runtime.block_on(async {
        let s = ferry::store::Store::open(&store).await.unwrap();
        let lock = ferry::store::lock::acquire(&s, SCHEME_NAME, false).await.unwrap();
        (s, lock)
    });
    let refused = ferry(
        &[
            "checkpoint",
            "set",
            SCHEME_NAME,
            "2024-04-01T00:00:00+08:00",
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    assert!(
        text(&refused.stderr).contains("holds the run lock"),
        "{}",
        describe(&refused)
    );
    let refused = ferry(&["checkpoint", "clear", SCHEME_NAME, "--store", &store], &[]);
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    assert_eq!(
        checkpoint_of(&store),
        "2024-03-01T08:00:00+08:00",
        "a refused edit changed it"
    );
    drop(lock);
    runtime.block_on(held_store.close());

    let set = ferry(
        &[
            "checkpoint",
            "set",
            SCHEME_NAME,
            "2024-04-01T00:00:00+08:00",
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(set.status.code(), Some(0), "{}", describe(&set));
    assert!(
        text(&set.stdout).contains("→ 2024-04-01T00:00:00+08:00"),
        "{}",
        describe(&set)
    );
    let cleared = ferry(&["checkpoint", "clear", SCHEME, "--store", &store], &[]);
    assert_eq!(cleared.status.code(), Some(0), "{}", describe(&cleared));
    assert!(checkpoint_of(&store).is_null());
}

// ---- events, explain and resync by id ---------------------------------------------------

use ferry::sim::shop::ShopConfig;
use ferry::store::{EventLog, EventOutcome, Store};

const TOKEN: &str = "sekrit-token-42";

/// The demo scheme plus a `source.detail` read by order number (so records can be read by
/// id) and a field that renders the source token (which must never be shown or stored).
fn scheme_with_detail(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(SCHEME).unwrap();
    let text = text.replacen(
        "  name: \"<< customer_name >>\"\n",
        "  name: \"<< customer_name >>\"\n  detail:\n    request: {method: GET, path: \"/orders/<< order_no >>\"}\n    records: $.data.order\n",
        1,
    );
    let text = text.replacen(
        "    FShop: $.shop_code\n",
        "    FShop: $.shop_code\n    FNote: \"${SHOP_TOKEN}\"\n",
        1,
    );
    assert!(
        text.contains("detail:") && text.contains("FNote"),
        "the demo scheme changed shape"
    );
    let path = dir.join("orders-by-id.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn events_of(
    runtime: &tokio::runtime::Runtime,
    store: &str,
    ids: impl Iterator<Item = String>,
) -> Vec<Vec<ferry::store::RecordEvent>> {
    runtime.block_on(async {
        let s = Store::open_existing(store).await.unwrap();
        let mut all = Vec::new();
        for id in ids {
            all.push(s.record_events_for(SCHEME_NAME, &id, 100).await.unwrap());
        }
        s.close().await;
        all
    })
}

fn order(i: u64) -> String {
    format!("SO{i:07}")
}

#[test]
fn records_leave_bounded_events_that_explain_shows_and_ids_resend() {
    let (rt, sim, url) = start_sim(ShopConfig {
        records: 30,
        reject_every: Some(7),
        token: Some(TOKEN.into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = scheme_with_detail(dir.path());
    let store = dir.path().join("e.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", TOKEN),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", scheme.as_str(), "--store", store.as_str(), "--json"];
        args.extend_from_slice(extra);
        ferry(&args, &envs)
    };
    let total = |rt: &tokio::runtime::Runtime| {
        events_of(rt, &store, (1..=30).map(order))
            .iter()
            .map(Vec::len)
            .sum::<usize>()
    };

    // Run 1: 26 created, 4 rejected (7, 14, 21, 28): one event each.
    let first = run(&[]);
    assert_eq!(first.status.code(), Some(1), "{}", describe(&first));
    assert_eq!(total(&rt), 30);
    let seventh = &events_of(&rt, &store, std::iter::once(order(7)))[0];
    assert_eq!(seventh[0].outcome, EventOutcome::Failed);
    assert!(
        seventh[0].answer.as_ref().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{seventh:?}"
    );
    // Bytes per event of this record shape (3 lines at most), as the store keeps it.
    let sizes: Vec<usize> = events_of(&rt, &store, (1..=30).map(order))
        .iter()
        .flatten()
        .map(|e| serde_json::to_string(e).unwrap().len())
        .collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    eprintln!(
        "bytes per event (JSON, this scheme): mean {mean}, max {}",
        sizes.iter().max().unwrap()
    );
    assert!(mean < 1_500, "an event is {mean} bytes");

    // Run 2 replays the 4 failures, now accepted; run 3 changes nothing and writes no event.
    sim.set_reject_every(None);
    let second = run(&[]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(total(&rt), 34);
    let third = run(&[]);
    assert_eq!(third.status.code(), Some(0), "{}", describe(&third));
    assert_eq!(
        json(&third)["unchanged"],
        0,
        "nothing was read again: {}",
        describe(&third)
    );
    assert_eq!(total(&rt), 34, "a run that changes nothing writes no event");

    // A changed record is updated: its newest event says so, with its window and request.
    let now = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local();
    assert!(sim.touch(3, now - chrono::Duration::minutes(5)));
    let fourth = run(&[]);
    assert_eq!(json(&fourth)["updated"], 1, "{}", describe(&fourth));
    let third_order = &events_of(&rt, &store, std::iter::once(order(3)))[0];
    assert_eq!(
        third_order.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![EventOutcome::Updated, EventOutcome::Created]
    );
    assert_ne!(third_order[0].payload_hash, third_order[1].payload_hash);
    assert!(
        third_order[0]
            .request
            .as_deref()
            .unwrap()
            .starts_with("update PUT /orders/"),
        "{third_order:?}"
    );
    assert!(
        third_order[0].window.as_deref().unwrap().contains(" → "),
        "{third_order:?}"
    );

    // explain: mapping, history, ledger and the row field by field; the token never shows.
    let explained = ferry(&["explain", &scheme, &order(7), "--store", &store], &envs);
    assert_eq!(explained.status.code(), Some(0), "{}", describe(&explained));
    let out = text(&explained.stdout);
    for wanted in [
        "status        created → target T",
        "run 2  created",
        "run 1  failed",
        "resolved write rejected",
        "← << order_no >>",
        "FEntity[0].FQty",
        "← << qty | int >>",
        "FNote",
    ] {
        assert!(out.contains(wanted), "`{wanted}` missing:\n{out}");
    }
    assert!(!out.contains(TOKEN), "the token leaked:\n{out}");
    let by_name = json(&ferry(
        &["explain", SCHEME_NAME, &order(7), "--store", &store, "--json"],
        &[],
    ));
    assert_eq!(by_name["mapping"]["status"], "created");
    assert_eq!(by_name["events"].as_array().unwrap().len(), 2);
    assert!(
        by_name["row"]["fields"][0]["template"].is_null(),
        "no scheme file, no templates"
    );

    // --fetch reads the record now and renders its row (masked), unchanged since the sync.
    let fetched = ferry(
        &["explain", &scheme, &order(3), "--store", &store, "--fetch", "--json"],
        &envs,
    );
    assert_eq!(fetched.status.code(), Some(0), "{}", describe(&fetched));
    assert!(
        !text(&fetched.stdout).contains(TOKEN),
        "the token leaked: {}",
        describe(&fetched)
    );
    let fetched = json(&fetched)["fetched"].clone();
    assert_eq!(fetched["record"]["order_no"], order(3));
    assert_eq!(fetched["changed_since_sync"], false);
    let note = fetched["row"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "FNote")
        .cloned();
    assert_eq!(note.unwrap()["value"], "***");
    let unknown = ferry(&["explain", &scheme, "SO9999999", "--store", &store, "--fetch"], &envs);
    assert_eq!(unknown.status.code(), Some(3), "{}", describe(&unknown));
    assert!(
        text(&unknown.stderr).contains("no order SO9999999"),
        "{}",
        describe(&unknown)
    );

    // --ids: an unchanged record is not sent (but leaves an event); --force sends it.
    let updates = sim.update_calls();
    let again = run(&["--ids", &order(5)]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(json(&again)["unchanged"], 1, "{}", describe(&again));
    assert_eq!(sim.update_calls(), updates);
    let fifth = &events_of(&rt, &store, std::iter::once(order(5)))[0];
    assert_eq!(fifth[0].outcome, EventOutcome::Unchanged);
    for _ in 0..3 {
        let forced = run(&["--ids", &order(5), "--force", "--keep-events", "2"]);
        assert_eq!(json(&forced)["updated"], 1, "{}", describe(&forced));
    }
    assert_eq!(sim.update_calls(), updates + 3);
    let fifth = &events_of(&rt, &store, std::iter::once(order(5)))[0];
    assert_eq!(fifth.len(), 2, "--keep-events 2 keeps the newest two: {fifth:?}");
    assert!(fifth.iter().all(|e| e.outcome == EventOutcome::Updated));
    assert_eq!(fifth[0].window.as_deref(), Some("read by id (ferry run --ids)"));
    // A checkpoint is not moved by a run by id.
    let before = checkpoint_of(&store);
    let missing = run(&["--ids", "SO9999999", &order(6)]);
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert_eq!(json(&missing)["failed"], 1);
    assert_eq!(checkpoint_of(&store), before);
    // A scheme that cannot read by id says what to add (exit 2).
    let refused = ferry(&["run", SCHEME, "--store", &store, "--ids", "SO0000001"], &envs);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        text(&refused.stderr).contains("source.detail"),
        "{}",
        describe(&refused)
    );
}

// ---- alerts ---------------------------------------------------------------------------

/// What the test receiver was sent: path, query and JSON body.
type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, std::collections::HashMap<String, String>, serde_json::Value)>>>;

fn start_receiver(runtime: &tokio::runtime::Runtime) -> (String, Received) {
    use axum::extract::{Query, State};
    let received: Received = Default::default();
    let record = |State(log): State<Received>,
                  uri: axum::http::Uri,
                  Query(query): Query<std::collections::HashMap<String, String>>,
                  axum::Json(body): axum::Json<serde_json::Value>| async move {
        let path = uri.path().to_owned();
        let refuse = path.ends_with("/refuse");
        log.lock().unwrap().push((path, query, body));
        if refuse {
            axum::Json(serde_json::json!({"errcode": 310000, "errmsg": "sign not match"}))
        } else {
            axum::Json(serde_json::json!({"errcode": 0, "code": 0}))
        }
    };
    let app = axum::Router::new()
        .fallback(axum::routing::post(record))
        .with_state(received.clone());
    let url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    (url, received)
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn failed_runs_alert_robots_and_webhooks_with_their_formats_and_signatures() {
    let (rt, _sim, url) = start_sim(ShopConfig {
        records: 20,
        reject_every: Some(5),
        token: Some(TOKEN.into()),
        ..ShopConfig::default()
    });
    let (hooks, received) = start_receiver(&rt);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("a.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", TOKEN),
    ];
    let wecom = format!("wecom+{hooks}/cgi-bin/webhook/send?key=wecom-key-1");
    let ding = format!("dingtalk+{hooks}/robot/send?access_token=ding-token-1&secret=SEC-ding-9");
    let feishu = format!("feishu+{hooks}/open-apis/bot/v2/hook/feishu-hook-1?secret=SEC-feishu-9");
    let hook = format!("{hooks}/generic?token=generic-1");
    let refusing = format!("dingtalk+{hooks}/refuse?access_token=ding-token-2");
    let before = chrono::Utc::now().timestamp_millis();
    let out = ferry(
        &[
            "run", SCHEME, "--store", &store, "--quiet", "--alert", &wecom, "--alert", &ding, "--alert", &feishu,
            "--alert", &hook, "--alert", &refusing,
        ],
        &envs,
    );
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    for secret in [
        "wecom-key-1",
        "ding-token-1",
        "ding-token-2",
        "SEC-ding-9",
        "SEC-feishu-9",
        "feishu-hook-1",
        "generic-1",
        TOKEN,
    ] {
        assert!(
            !stderr.contains(secret) && !text(&out.stdout).contains(secret),
            "{secret} leaked: {}",
            describe(&out)
        );
    }
    assert!(
        stderr.contains("the alert to DingTalk robot") && stderr.contains("sign not match"),
        "{stderr}"
    );
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 5, "{got:?}");
    let by_path = |p: &str| {
        got.iter()
            .find(|(path, _, _)| path.as_str() == p)
            .cloned()
            .unwrap_or_else(|| panic!("nothing at {p}: {got:?}"))
    };

    let (_, query, body) = by_path("/cgi-bin/webhook/send");
    assert_eq!(query["key"], "wecom-key-1");
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(&format!("**ferry: {SCHEME_NAME} — records failed**")),
        "{content}"
    );
    assert!(
        content.contains("failed 4") && content.contains("open failures: 4"),
        "{content}"
    );

    let (_, query, body) = by_path("/robot/send");
    assert_eq!(query["access_token"], "ding-token-1");
    assert!(!query.contains_key("secret"));
    let timestamp: i64 = query["timestamp"].parse().unwrap();
    assert!(
        (before..=after).contains(&timestamp),
        "{timestamp} not in {before}..{after}"
    );
    assert_eq!(
        query["sign"],
        hmac_base64(b"SEC-ding-9", format!("{timestamp}\nSEC-ding-9").as_bytes())
    );
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"].as_str().unwrap().contains(SCHEME_NAME));

    let (_, query, body) = by_path("/open-apis/bot/v2/hook/feishu-hook-1");
    assert!(query.is_empty(), "the secret is not sent: {query:?}");
    assert_eq!(body["msg_type"], "text");
    let seconds: i64 = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!((before / 1000..=after / 1000).contains(&seconds));
    assert_eq!(
        body["sign"],
        hmac_base64(format!("{seconds}\nSEC-feishu-9").as_bytes(), b"")
    );
    assert!(body["content"]["text"].as_str().unwrap().contains("records failed"));

    let (_, query, body) = by_path("/generic");
    assert_eq!(query["token"], "generic-1");
    assert_eq!(body["event"], "ferry.run");
    assert_eq!(body["facts"]["outcome"], "failed_rows");
    assert_eq!(body["facts"]["run_id"], 1);
    assert_eq!(body["facts"]["open_failures"], 4);
    assert_eq!(body["facts"]["summary"]["failed"], 4);

    // A run that goes through alerts nobody, unless open failures pass the threshold.
    received.lock().unwrap().clear();
    let quiet = ferry(&["run", SCHEME, "--store", &store, "--quiet", "--alert", &hook], &envs);
    assert_eq!(
        quiet.status.code(),
        Some(1),
        "the 4 rows fail again on replay: {}",
        describe(&quiet)
    );
    assert_eq!(received.lock().unwrap().len(), 1, "failed rows alert again");
    // An ok run (here: one record by id) alerts when open failures pass the threshold.
    received.lock().unwrap().clear();
    let by_id = scheme_with_detail(dir.path());
    let over = ferry(
        &[
            "run",
            &by_id,
            "--store",
            &store,
            "--quiet",
            "--ids",
            "SO0000001",
            "--alert",
            &hook,
            "--alert-open-failures",
            "3",
        ],
        &envs,
    );
    assert_eq!(over.status.code(), Some(0), "{}", describe(&over));
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].2["facts"]["outcome"], "ok");
    assert_eq!(
        got[0].2["facts"]["reason"],
        "4 open failures, more than --alert-open-failures 3"
    );
    received.lock().unwrap().clear();
    _sim.set_reject_every(None);
    let ok = ferry(
        &[
            "run",
            SCHEME,
            "--store",
            &store,
            "--quiet",
            "--alert",
            &hook,
            "--alert-open-failures",
            "0",
        ],
        &envs,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(
        received.lock().unwrap().is_empty(),
        "an ok run with no open failures alerts nobody"
    );
    // A bad --alert is a usage error naming no token.
    let bad = ferry(
        &[
            "run",
            SCHEME,
            "--store",
            &store,
            "--alert",
            "smtp+mailto:ops@example.com?key=k-9",
        ],
        &envs,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(!text(&bad.stderr).contains("k-9"));
}

#[test]
fn a_row_that_does_not_render_leaves_a_failed_event_with_its_reason() {
    let (rt, _sim, url) = start_sim(ShopConfig {
        records: 5,
        token: Some(TOKEN.into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = scheme_with_detail(dir.path());
    let text = std::fs::read_to_string(&scheme)
        .unwrap()
        .replace("\"${SHOP_TOKEN}\"", "\"<< no_such_field >>\"");
    std::fs::write(&scheme, text).unwrap();
    let store = dir.path().join("t.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", TOKEN),
    ];
    let out = ferry(
        &["run", &scheme, "--store", &store, "--json", "--ids", &order(2)],
        &envs,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let events = &events_of(&rt, &store, std::iter::once(order(2)))[0];
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].outcome, EventOutcome::Failed);
    assert_eq!(events[0].row, None);
    assert_eq!(
        events[0].request.as_deref(),
        Some("nothing sent: the row did not render")
    );
    let answer = events[0].answer.as_ref().unwrap();
    assert_eq!(answer["class"], "missing_field");
    assert!(
        answer["message"].as_str().unwrap().contains("no_such_field"),
        "{answer}"
    );
    let explained = text_of(&ferry(&["explain", &scheme, &order(2), "--store", &store], &envs));
    assert!(
        explained.contains("nothing sent: the row did not render"),
        "{explained}"
    );
    assert!(explained.contains("open transform missing_field"), "{explained}");
}

fn text_of(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    text(&out.stdout)
}
