//! The operator console (issue 16 §3–4): a login gives an HttpOnly, SameSite=Strict session
//! cookie; every change needs the session and its CSRF token; Retry, Skip and Resolve and a
//! mapping edit change the store; and a real headless Chromium (driven by Selenium, see
//! tests/browser/console_test.py) does the same through the pages. Everything on 127.0.0.1.

mod support;
use chrono::Utc;
use ferry::console::{router, ConsoleState, EngineReplayer, InboxDepthHook, Replayer, StoreInbox};
use ferry::engine::{run, RunOptions};
use ferry::http::HttpClient;
use ferry::platform::Binding;
use ferry::scheme::Plan;
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::SimHandle;
use ferry::store::{
    BatchCommit, BatchWriter, Failure, FailureLedger, FailureStage, FailureStatus, InboxStore, MappingStore,
    NewFailure, NewPush, Store,
};
use futures::future::BoxFuture;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use std::sync::Arc;

use support::shop_rig;

const SCHEME: &str = include_str!("../schemes/shop-orders-to-erp.yaml");
const SHOP_TOKEN: &str = "it-token";
const OPERATOR_TOKEN: &str = "operator-secret-token";

struct Setup {
    sim: ShopSim,
    _shop: SimHandle,
    plan: Plan,
    store: Store,
    console: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A shop whose ERP rejects every third order, one run over `records` orders (so the
/// ledger holds the rejected ones), then the ERP accepts everything again; the console
/// served over the same SQLite store, with the engine as its replayer.
async fn setup(records: u64) -> Setup {
    setup_with(records, None, true).await
}

/// [`setup`] with an inbox hook, and with or without the engine as replayer.
async fn setup_with(records: u64, inbox: Option<Arc<dyn InboxDepthHook>>, replays: bool) -> Setup {
    let config = ShopConfig {
        records,
        reject_every: Some(3),
        ..ShopConfig::default()
    };
    let (sim, shop, plan, store, dir) = shop_rig(config, SCHEME, SHOP_TOKEN).await;
    let summary = run(&plan, &store, &HttpClient::new().unwrap(), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, records / 3, "{summary:?}");
    sim.set_reject_every(None);
    let app = router(ConsoleState {
        store: store.clone(),
        token: OPERATOR_TOKEN.into(),
        bindings: Arc::new(vec![Binding::of(&plan)]),
        inbox,
        replayer: replays.then(|| {
            Arc::new(EngineReplayer {
                plans: vec![plan.clone()],
                store: store.clone(),
                http: HttpClient::new().unwrap(),
            }) as Arc<dyn Replayer>
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Setup {
        sim,
        _shop: shop,
        plan,
        store,
        console,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

/// A logged-in client's cookie and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

/// The value of the first `name="csrf"` field on a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_string()
}

impl Setup {
    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.console));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.console)).form(form);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn login(&self) -> Login {
        let response = self.post("/console/login", None, &[("token", OPERATOR_TOKEN)]).await;
        assert_eq!(response.status(), 303);
        let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let page = self.get("/console/", Some(&cookie)).await.text().await.unwrap();
        Login {
            csrf: csrf_of(&page),
            cookie,
        }
    }

    async fn open_failures(&self) -> Vec<Failure> {
        self.store
            .list_failures(Some(&self.plan.name), Some(FailureStatus::Open), 100)
            .await
            .unwrap()
    }

    async fn status_of(&self, id: i64) -> FailureStatus {
        self.store.failure(id).await.unwrap().unwrap().status
    }

    async fn target_of(&self, source_id: &str) -> Option<String> {
        let rows = self
            .store
            .mappings_for(&self.plan.name, &self.plan.source.object, &[source_id.to_string()])
            .await
            .unwrap();
        rows.get(source_id).and_then(|m| m.target_id.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_login_and_the_session_cookie_is_httponly_and_strict() {
    let s = setup(3).await;
    for page in [
        "/console/",
        "/console/failures",
        "/console/mappings?source_id=SO0000001",
    ] {
        let response = s.get(page, None).await;
        assert_eq!(response.status(), 303, "{page}");
        assert_eq!(response.headers()[LOCATION], "/console/login", "{page}");
    }
    let failure = s.open_failures().await[0].id;
    let response = s.post(&format!("/console/failures/{failure}/skip"), None, &[]).await;
    assert_eq!(response.status(), 401, "a change without a session");
    assert_eq!(s.status_of(failure).await, FailureStatus::Open);
    assert_eq!(
        s.get("/console/", Some("ferry_console=forged")).await.status(),
        303,
        "an unknown session id is no session"
    );

    let wrong = s.post("/console/login", None, &[("token", "guess")]).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not the server&#39;s operator token"));

    let response = s.post("/console/login", None, &[("token", OPERATOR_TOKEN)]).await;
    assert_eq!(response.status(), 303);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.starts_with("ferry_console="), "{set}");
    assert!(set.contains("; HttpOnly"), "{set}");
    assert!(set.contains("; SameSite=Strict"), "{set}");
    assert!(set.contains("; Path=/console"), "{set}");
    assert!(!set.contains(OPERATOR_TOKEN), "the token is not the session id");
    let cookie = set.split(';').next().unwrap().to_string();

    let overview = s.get("/console/", Some(&cookie)).await;
    assert_eq!(overview.status(), 200);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = overview.text().await.unwrap();
    assert!(page.contains("shop-orders-to-erp"), "{page}");
    assert!(page.contains("<svg class=\"plot\""), "the records-per-run plot");
    assert!(page.contains("inbox: n/a"), "no inbox hook was given");
    assert!(!page.contains("<script"), "no script");
    assert!(
        !page.contains("href=\"http") && !page.contains("src=\"http"),
        "nothing from elsewhere"
    );

    // Logging out ends the session.
    let csrf = csrf_of(&page);
    let out = s.post("/console/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(s.get("/console/", Some(&cookie)).await.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_the_sessions_csrf_token_is_refused_with_403() {
    let s = setup(3).await;
    let me = s.login().await;
    let other = s.login().await;
    assert_ne!(me.csrf, other.csrf, "each session has its own token");
    let failure = s.open_failures().await[0].clone();
    let path = format!("/console/failures/{}/skip", failure.id);
    for form in [vec![], vec![("csrf", "wrong")], vec![("csrf", other.csrf.as_str())]] {
        let response = s.post(&path, Some(&me.cookie), &form).await;
        assert_eq!(response.status(), 403, "{form:?}");
    }
    assert_eq!(s.status_of(failure.id).await, FailureStatus::Open, "nothing changed");
    let before = s.target_of(&failure.source_id).await;
    let edit = s
        .post(
            "/console/mappings",
            Some(&me.cookie),
            &[
                ("scheme", "shop-orders-to-erp"),
                ("source_id", "SO0000001"),
                ("target_id", "T-x"),
            ],
        )
        .await;
    assert_eq!(edit.status(), 403);
    assert_eq!(s.target_of(&failure.source_id).await, before);
    assert_ne!(s.target_of("SO0000001").await.as_deref(), Some("T-x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_skip_and_resolve_change_the_ledger() {
    let s = setup(9).await;
    let me = s.login().await;
    let open = s.open_failures().await;
    assert_eq!(open.len(), 3);
    let page = s.get("/console/failures", Some(&me.cookie)).await.text().await.unwrap();
    for f in &open {
        assert!(page.contains(&format!("id=\"retry-{}\"", f.id)), "{page}");
    }
    let (retried, skipped, resolved) = (&open[0], &open[1], &open[2]);
    assert!(s.sim.target_row_by_bill_no(&retried.source_id).is_none());

    let response = s
        .post(
            &format!("/console/failures/{}/retry", retried.id),
            Some(&me.cookie),
            &[("csrf", &me.csrf)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        s.status_of(retried.id).await,
        FailureStatus::Resolved,
        "the replay sent it"
    );
    assert!(
        s.sim.target_row_by_bill_no(&retried.source_id).is_some(),
        "it reached the ERP"
    );
    assert!(s.target_of(&retried.source_id).await.is_some(), "and has a mapping");
    let page = s.get("/console/failures", Some(&me.cookie)).await.text().await.unwrap();
    assert!(
        page.contains("replayed 1: 1 created"),
        "the outcome is shown once: {page}"
    );

    s.post(
        &format!("/console/failures/{}/skip", skipped.id),
        Some(&me.cookie),
        &[("csrf", &me.csrf)],
    )
    .await;
    s.post(
        &format!("/console/failures/{}/resolve", resolved.id),
        Some(&me.cookie),
        &[("csrf", &me.csrf)],
    )
    .await;
    assert_eq!(s.status_of(skipped.id).await, FailureStatus::Skipped);
    assert_eq!(s.status_of(resolved.id).await, FailureStatus::Resolved);
    assert!(s.open_failures().await.is_empty());
    assert!(
        s.sim.target_row_by_bill_no(&skipped.source_id).is_none(),
        "skip and resolve send nothing"
    );
    let page = s.get("/console/failures", Some(&me.cookie)).await.text().await.unwrap();
    assert!(page.contains("No open failures"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_edit_changes_the_store_and_waits_for_no_run() {
    let s = setup(3).await;
    let me = s.login().await;
    let old = s.target_of("SO0000001").await.expect("the run mapped it");
    let page = s
        .get(&format!("/console/mappings?target_id={old}"), Some(&me.cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("SO0000001") && page.contains(&old),
        "found by target id: {page}"
    );

    let edit = [
        ("csrf", me.csrf.as_str()),
        ("scheme", "shop-orders-to-erp"),
        ("source_id", "SO0000001"),
        ("target_id", "T-<moved>"),
    ];
    // While a run holds the scheme's lock, the edit is refused and nothing changes.
    let held = ferry::store::lock::acquire(&s.store, &s.plan.name, false)
        .await
        .unwrap();
    let refused = s.post("/console/mappings", Some(&me.cookie), &edit).await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("in progress"));
    assert_eq!(s.target_of("SO0000001").await, Some(old.clone()));
    drop(held);

    let response = s.post("/console/mappings", Some(&me.cookie), &edit).await;
    assert_eq!(response.status(), 303);
    assert_eq!(s.target_of("SO0000001").await.as_deref(), Some("T-<moved>"));
    let page = s
        .get("/console/mappings?source_id=SO0000001", Some(&me.cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"T-&lt;moved&gt;\""), "escaped: {page}");
    assert!(!page.contains("T-<moved>"), "never raw");

    let unknown = s
        .post(
            "/console/mappings",
            Some(&me.cookie),
            &[
                ("csrf", &me.csrf),
                ("scheme", "shop-orders-to-erp"),
                ("source_id", "SO9"),
                ("target_id", "x"),
            ],
        )
        .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_value_is_escaped_on_the_pages() {
    let s = setup(1).await;
    s.store
        .commit_batch(BatchCommit {
            failures: vec![NewFailure {
                scheme: s.plan.name.clone(),
                source_id: "<script>alert(1)</script>".into(),
                stage: FailureStage::Write,
                error_class: "rejected\"><b>".into(),
                message: "bad & <img src=x onerror=alert(1)>".into(),
                payload: None,
            }],
            ..BatchCommit::default()
        })
        .await
        .unwrap();
    let me = s.login().await;
    let page = s.get("/console/failures", Some(&me.cookie)).await.text().await.unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(page.contains("rejected&quot;&gt;&lt;b&gt;"), "{page}");
    assert!(page.contains("bad &amp; &lt;img src=x onerror=alert(1)&gt;"), "{page}");
    assert!(!page.contains("<script") && !page.contains("<img"), "{page}");
}

/// An inbox with a fixed depth for one scheme.
struct FixedInbox(&'static str, u64);

impl InboxDepthHook for FixedInbox {
    fn depth<'a>(&'a self, scheme: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move { (scheme == self.0).then_some(self.1) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_hook_shows_its_depth_and_retry_without_a_replayer_leaves_the_row_to_the_next_run() {
    let s = setup_with(3, Some(Arc::new(FixedInbox("shop-orders-to-erp", 42))), false).await;
    let me = s.login().await;
    let page = s.get("/console/", Some(&me.cookie)).await.text().await.unwrap();
    assert!(page.contains("inbox: 42"), "{page}");

    // The store's inbox, through the adapter `ferry serve` plugs in.
    let inbox = StoreInbox {
        store: s.store.clone(),
        receiving: vec!["shop-orders-to-erp".into()],
    };
    assert_eq!(inbox.depth("shop-orders-to-erp").await, Some(0));
    for key in ["a", "b", "a"] {
        s.store
            .append_push(&NewPush {
                scheme: "shop-orders-to-erp".into(),
                dedupe_key: key.into(),
                business_key: None,
                cancel: false,
                received_as: "standard".into(),
                payload: serde_json::json!({"order_no": key}),
            })
            .await
            .unwrap();
    }
    assert_eq!(
        inbox.depth("shop-orders-to-erp").await,
        Some(2),
        "two distinct pushes wait"
    );
    assert_eq!(inbox.depth("not-receiving").await, None);
    // Its history: the last moment of the series is now, with both pushes waiting.
    let (_, series) = inbox.depth_history("shop-orders-to-erp").await.expect("a history");
    assert_eq!(series.len(), ferry::console::DEPTH_SAMPLES);
    assert_eq!(series.last(), Some(&2), "{series:?}");
    assert_eq!(inbox.depth_history("not-receiving").await, None);

    let failure = s.open_failures().await[0].clone();
    let response = s
        .post(
            &format!("/console/failures/{}/retry", failure.id),
            Some(&me.cookie),
            &[("csrf", &me.csrf)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        s.status_of(failure.id).await,
        FailureStatus::Open,
        "nothing was sent now"
    );
    assert!(s.sim.target_row_by_bill_no(&failure.source_id).is_none());
    let page = s.get("/console/failures", Some(&me.cookie)).await.text().await.unwrap();
    assert!(
        page.contains("the next run of `shop-orders-to-erp` replays it"),
        "{page}"
    );

    // … and the next run does.
    let summary = run(&s.plan, &s.store, &HttpClient::new().unwrap(), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.replayed, 1, "{summary:?}");
    assert_eq!(s.status_of(failure.id).await, FailureStatus::Resolved);
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing() -> Option<String> {
    let probe = std::process::Command::new("python3")
        .args(["tests/browser/console_test.py", "--check"])
        .output();
    match probe {
        Err(e) => Some(format!("python3 cannot be started: {e}")),
        Ok(out) if !out.status.success() => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(_) => None,
    }
}

/// A real headless Chromium logs in, loads every page, is refused a change without the
/// CSRF token, retries a failed record and edits a mapping; the store shows the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_logs_in_retries_a_failure_and_edits_a_mapping() {
    if let Some(why) = browser_missing() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the browser test must run in CI, but: {why}");
        }
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED the headless-browser console test: {why}\n\
             !!!!!!!! install: apt-get install -y chromium chromium-driver && pip install selenium\n"
        );
        return;
    }
    let s = setup(9).await;
    // A few more real runs (the ERP rejecting every third order again), so the plot has
    // a history to show and the ledger rows stay open.
    s.sim.set_reject_every(Some(3));
    // Inside the next window: after the checkpoint's lookback, before the scheme's lag.
    let later = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).naive_local() - chrono::Duration::minutes(5);
    for n in [4, 12, 7] {
        s.sim.add_orders(n, later);
        run(&s.plan, &s.store, &HttpClient::new().unwrap(), &RunOptions::default())
            .await
            .unwrap();
    }
    s.sim.set_reject_every(None);
    let open = s.open_failures().await;
    assert!(open.len() >= 2, "{open:?}");
    let (retried, tampered) = (&open[0], &open[1]);
    let old = s.target_of("SO0000001").await.unwrap();
    let screenshot = match std::env::var("FERRY_CONSOLE_SCREENSHOT") {
        Ok(path) => path,
        Err(_) => format!("{}/console.png", env!("CARGO_TARGET_TMPDIR")),
    };
    let out = tokio::process::Command::new("python3")
        .arg("tests/browser/console_test.py")
        .args(["--url", &s.console])
        .args(["--token", OPERATOR_TOKEN])
        .args(["--retry", &retried.id.to_string()])
        .args(["--tamper", &tampered.id.to_string()])
        .args(["--source-id", "SO0000001"])
        .args(["--new-target", "T-browser"])
        .args(["--screenshot", &screenshot])
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser script failed:\n{log}");
    eprintln!("{log}");

    assert_eq!(
        s.status_of(retried.id).await,
        FailureStatus::Resolved,
        "retried through the page"
    );
    assert!(s.sim.target_row_by_bill_no(&retried.source_id).is_some());
    assert_eq!(
        s.status_of(tampered.id).await,
        FailureStatus::Open,
        "the form without its CSRF token changed nothing"
    );
    assert_eq!(s.target_of("SO0000001").await.as_deref(), Some("T-browser"));
    assert_ne!(old, "T-browser");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
