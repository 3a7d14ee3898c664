//! Seed flows run end to end against the built-in vendor simulators on 127.0.0.1:0.
//! The simulators and the environment pointing each scheme at them come from
//! `ferry::sim::flows`, the same setup `ferry demo` uses.

use chrono::Utc;
use ferry::engine::{run, RunOptions, Summary};
use ferry::http::HttpClient;
use ferry::scheme::{load_str, Plan};
use ferry::sim::flows::{self, Flow, Running};
use ferry::sim::Simulator;
use ferry::store::Store;

/// The plan of `flow`'s scheme, pointed at `running`'s simulators.
fn plan_for(flow: Flow, running: &Running) -> Plan {
    let loaded = load_str(flow.scheme(), flow.file(), &running.env());
    assert!(!loaded.has_errors(), "{}: {:#?}", flow.file(), loaded.diagnostics);
    loaded.plan.unwrap()
}

/// `flow` on freshly started simulators: the running set, its plan and an empty store.
async fn start(flow: Flow) -> (Running, Plan, Store) {
    let running = flows::start(flow).await.unwrap();
    let plan = plan_for(flow, &running);
    (running, plan, Store::memory())
}

async fn run_once(plan: &Plan, store: &Store) -> Summary {
    run(plan, store, &HttpClient::new().unwrap(), &RunOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guanyi_shops_become_k3cloud_customers_and_changes_update_them() {
    let (running, plan, store) = start(Flow::GuanyiToK3Cloud).await;
    let k3 = running.sims.k3cloud.clone().unwrap();
    let customers_before = k3.row_count("BD_Customer");

    let first = run_once(&plan, &store).await;
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (230, 230, 0), "{first:?}");
    assert!(first.pages >= 3, "shops must be paged: {first:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers_before + 230);

    let second = run_once(&plan, &store).await;
    assert_eq!(
        (second.created, second.updated, second.requests),
        (0, 0, 0),
        "{second:?}"
    );

    assert!(running.change_one());
    let third = run_once(&plan, &store).await;
    assert_eq!((third.created, third.updated, third.failed), (0, 1, 0), "{third:?}");
    assert_eq!(
        k3.row_count("BD_Customer"),
        customers_before + 230,
        "an update must not add a customer"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdy_purchase_inbound_bills_become_jackyun_customers_once_per_supplier() {
    let (running, plan, store) = start(Flow::JdyToJackyun).await;
    let (jdy, jky) = (running.sims.jdy.clone().unwrap(), running.sims.jackyun.clone().unwrap());
    let customers_before = jky.customer_count();

    let first = run_once(&plan, &store).await;
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

    let second = run_once(&plan, &store).await;
    assert_eq!((second.created, second.requests), (0, 0), "{second:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simply_accounts_and_k3cloud_customers_flow_both_ways() {
    // One pair of simulators serves both directions.
    let running = flows::start(Flow::SimplyToK3Cloud).await.unwrap();
    let (simply, k3) = (
        running.sims.simply.clone().unwrap(),
        running.sims.k3cloud.clone().unwrap(),
    );

    // Simply → K3Cloud (query paging with LIMIT, session login).
    let plan = plan_for(Flow::SimplyToK3Cloud, &running);
    let store = Store::memory();
    let customers_before = k3.row_count("BD_Customer");
    let first = run_once(&plan, &store).await;
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (150, 150, 0), "{first:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers_before + 150);
    // An expired session is renewed transparently.
    simply.expire_sessions();
    let again = run_once(&plan, &store).await;
    assert_eq!(
        (again.aborted.clone(), again.created, again.updated),
        (None, 0, 0),
        "{again:?}"
    );

    // K3Cloud → Simply (ExecuteBillQuery arrays named by FieldKeys; create then revise).
    let plan = plan_for(Flow::K3CloudToSimply, &running);
    let store = Store::memory();
    let writes_before = simply.write_calls();
    let first = run_once(&plan, &store).await;
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    // Customers the first scheme created seconds ago are inside `lag`, so not read yet.
    assert_eq!(first.read, customers_before as u64, "{first:?}");
    assert_eq!(first.created, first.read, "{first:?}");
    assert_eq!(simply.write_calls() - writes_before, first.created);
    assert!(k3.touch(2, Utc::now() - chrono::Duration::seconds(90)));
    let second = run_once(&plan, &store).await;
    assert_eq!((second.created, second.updated, second.failed), (0, 1, 0), "{second:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_standard_orders_are_pushed_to_fxiaoke_with_their_details() {
    let (running, plan, store) = start(Flow::ErpStandardToFxiaoke).await;
    let fx = running.sims.fxiaoke.clone().unwrap();
    let first = run_once(&plan, &store).await;
    assert_eq!(first.aborted, None, "{first:?}");
    assert_eq!((first.read, first.created, first.failed), (120, 120, 0), "{first:?}");
    let pushed = fx.written();
    assert_eq!(pushed.len(), 120);
    let details = &pushed[0]["detailFieldVals"]["erpSalesOrderProductObj"];
    assert!(details.as_array().is_some_and(|rows| !rows.is_empty()), "{}", pushed[0]);
    // Tokens are cached: one token call for 120 pushes; an expired token is renewed once.
    assert_eq!(fx.token_calls(), 1);
    fx.expire_tokens();
    let second = run_once(&plan, &store).await;
    assert_eq!((second.aborted.clone(), second.created), (None, 0), "{second:?}");
    // A changed order goes out again as an update of the same pushed record.
    assert!(running.change_one());
    let third = run_once(&plan, &store).await;
    assert_eq!((third.created, third.updated, third.failed), (0, 1, 0), "{third:?}");
    running.shutdown().await;
}

/// A store that lost track of a run's creates (its intents survived, its mappings did not)
/// settles them by looking each customer up in K3Cloud by FNumber: no customer twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_k3cloud_creates_are_adopted_by_fnumber_lookup() {
    use ferry::store::{IntentLog, MappingQuery, MappingStore, WriteIntent, WriteOperation};
    let running = flows::start(Flow::GuanyiToK3Cloud).await.unwrap();
    let plan = plan_for(Flow::GuanyiToK3Cloud, &running);
    let k3 = running.sims.k3cloud.clone().unwrap();
    let first_store = Store::memory();
    assert_eq!(run_once(&plan, &first_store).await.created, 230);
    let customers = k3.row_count("BD_Customer");
    let created = first_store
        .query_mappings(&MappingQuery {
            scheme: Some(plan.name.clone()),
            ..MappingQuery::default()
        })
        .await
        .unwrap();

    // The crash: the writes landed, only their intents were stored.
    let store = Store::memory();
    let intents: Vec<WriteIntent> = created
        .iter()
        .map(|m| WriteIntent {
            scheme: plan.name.clone(),
            source_object: m.source_object.clone(),
            source_id: m.source_id.clone(),
            source_name: m.source_name.clone(),
            batch_id: "1-0".into(),
            operation: WriteOperation::Create,
            business_key: Some(m.source_id.clone()),
            target_id: None,
            payload_hash: "unknown".into(),
            payload: None,
            sent: None,
            created_at: Utc::now(),
        })
        .collect();
    store.record_intents(&intents).await.unwrap();
    let queries = |k3: &ferry::sim::k3cloud::K3CloudSim| {
        k3.requests()
            .iter()
            .filter(|r| {
                r.path.contains(".ExecuteBillQuery.") && String::from_utf8_lossy(&r.body).contains("FNumber IN")
            })
            .count()
    };
    let queries_before = queries(&k3);
    let second = run_once(&plan, &store).await;
    assert_eq!(second.reconciled, 230, "{second:?}");
    // One look-up per 100 keys (FNumber IN (…)), not one per customer.
    assert_eq!(queries(&k3) - queries_before, 3);
    assert_eq!(second.uncertain, 0);
    assert_eq!(second.created, 0, "{second:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers, "no customer was created twice");
    let adopted = store
        .mappings_for(&plan.name, &created[0].source_object, &[created[0].source_id.clone()])
        .await
        .unwrap();
    assert_eq!(adopted[&created[0].source_id].target_id, created[0].target_id);
    assert!(store.pending_intents(&plan.name).await.unwrap().is_empty());
    running.shutdown().await;
}

/// Replaying failed records of a list→detail scheme fetches each record's detail again,
/// so the target gets the source's current data, not the ledger's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_records_are_fetched_again_from_the_source() {
    use ferry::engine::Replay;
    use ferry::sim::Faults;
    use ferry::store::{FailureLedger, FailureStatus};
    let (running, plan, store) = start(Flow::JdyToJackyun).await;
    let (jdy, jky) = (running.sims.jdy.clone().unwrap(), running.sims.jackyun.clone().unwrap());
    jky.set_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    });
    let first = run_once(&plan, &store).await;
    assert!(first.failed > 0 && first.created == 0, "{first:?}");
    let open = store
        .list_failures(Some(&plan.name), Some(FailureStatus::Open), 1000)
        .await
        .unwrap();
    assert_eq!(open.len() as u64, first.failed);

    jky.set_faults(Faults::default());
    let details_before = jdy.detail_calls();
    let customers_before = jky.customer_count();
    let retried = run(
        &plan,
        &store,
        &HttpClient::new().unwrap(),
        &RunOptions {
            replay: Some(Replay::AllOpen),
            replay_only: true,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(retried.replayed, first.failed, "{retried:?}");
    assert_eq!(retried.failed, 0, "{retried:?}");
    assert!(retried.created > 0, "{retried:?}");
    assert_eq!((jky.customer_count() - customers_before) as u64, retried.created);
    assert_eq!(
        jdy.detail_calls() - details_before,
        first.failed,
        "every replayed record was fetched again"
    );
    assert_eq!(store.count_open_failures(&plan.name).await.unwrap(), 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simply_account_changed_on_vtigers_utc_clock_is_read_and_updated() {
    // vtiger stamps and compares `modifiedtime` in its database zone, UTC by default
    // (reference §5); the seed scheme's window must reach it in that zone.
    let (running, plan, store) = start(Flow::SimplyToK3Cloud).await;
    let simply = running.sims.simply.clone().unwrap();
    let first = run_once(&plan, &store).await;
    assert_eq!((first.created, first.failed), (150, 0), "{first:?}");
    let second = run_once(&plan, &store).await;
    assert_eq!((second.created, second.updated), (0, 0), "{second:?}");

    assert!(running.change_one());
    let third = run_once(&plan, &store).await;
    assert_eq!((third.read, third.updated, third.failed), (1, 1, 0), "{third:?}");
    // The VTQL window was written in UTC: its end is within a minute or two of UTC now.
    let queries: Vec<String> = simply
        .requests()
        .into_iter()
        .filter_map(|r| r.query_param("query"))
        .filter(|q| q.contains("modifiedtime <"))
        .collect();
    let last = queries.last().expect("a windowed query");
    let end = last.split("modifiedtime < '").nth(1).unwrap().get(..19).unwrap();
    let end = chrono::NaiveDateTime::parse_from_str(end, "%Y-%m-%d %H:%M:%S").unwrap();
    let drift = (Utc::now().naive_utc() - end).num_seconds();
    assert!(
        (0..180).contains(&drift),
        "window end {end} is {drift}s from UTC now: {last}"
    );
    running.shutdown().await;
}

/// Runs the Guanyi → K3Cloud flow once, then changes shops `changed`; returns what the
/// next run needs. The first run's customers are audited (`IsAutoSubmitAndAudit: true`).
async fn seed_003_with_changes(scheme: &str, changed: &[u64]) -> (Running, Plan, Store) {
    let running = flows::start(Flow::GuanyiToK3Cloud).await.unwrap();
    let loaded = load_str(scheme, Flow::GuanyiToK3Cloud.file(), &running.env());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    let store = Store::memory();
    let first = run_once(&plan, &store).await;
    assert_eq!((first.created, first.failed), (230, 0), "{first:?}");
    let (gy, k3) = (
        running.sims.guanyi.clone().unwrap(),
        running.sims.k3cloud.clone().unwrap(),
    );
    for &index in changed {
        let code = gy.shop(index).unwrap()["code"].as_str().unwrap().to_string();
        assert_eq!(k3.status("BD_Customer", &code).as_deref(), Some("C"), "created audited");
        assert!(gy.touch(index, Utc::now() - chrono::Duration::seconds(90)));
    }
    (running, plan, store)
}

fn shop_code(running: &Running, index: u64) -> String {
    let gy = running.sims.guanyi.clone().unwrap();
    gy.shop(index).unwrap()["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_updates_audited_customers_and_leaves_them_audited() {
    let (running, plan, store) = seed_003_with_changes(Flow::GuanyiToK3Cloud.scheme(), &[5, 9]).await;
    let (gy, k3) = (
        running.sims.guanyi.clone().unwrap(),
        running.sims.k3cloud.clone().unwrap(),
    );
    let customers = k3.row_count("BD_Customer");
    let second = run_once(&plan, &store).await;
    assert_eq!(
        (second.updated, second.failed, second.aborted.clone()),
        (2, 0, None),
        "{second:?}"
    );
    assert_eq!(second.exit_code(), 0);
    assert_eq!(k3.row_count("BD_Customer"), customers, "one row per FNumber");
    for index in [5, 9] {
        let code = shop_code(&running, index);
        let row = k3.row("BD_Customer", &code).unwrap();
        assert_eq!(row["FDescription"], gy.shop(index).unwrap()["note"], "{row}");
        assert_eq!(k3.status("BD_Customer", &code).as_deref(), Some("C"), "audited again");
    }
    // One UnAudit for the batch; the save re-audited by itself (IsAutoSubmitAndAudit).
    let ops: Vec<String> = k3.requests().iter().map(|r| r.path.clone()).collect();
    let count = |op: &str| ops.iter().filter(|p| p.contains(&format!(".{op}."))).count();
    assert_eq!(
        (count("UnAudit"), count("Submit"), count("Audit")),
        (1, 0, 0),
        "{ops:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_audit_the_update_is_submitted_and_audited_again() {
    let scheme = Flow::GuanyiToK3Cloud.scheme().replacen(
        "update:\n    request:\n      api: BatchSave\n      body: {formid: BD_Customer, data: {Model: \"<< rows >>\", IsAutoSubmitAndAudit: true,",
        "update:\n    request:\n      api: BatchSave\n      body: {formid: BD_Customer, data: {Model: \"<< rows >>\", IsAutoSubmitAndAudit: false,",
        1,
    );
    assert_ne!(scheme, Flow::GuanyiToK3Cloud.scheme());
    let (running, plan, store) = seed_003_with_changes(&scheme, &[5, 9]).await;
    let k3 = running.sims.k3cloud.clone().unwrap();
    let second = run_once(&plan, &store).await;
    assert_eq!((second.updated, second.failed), (2, 0), "{second:?}");
    for index in [5, 9] {
        assert_eq!(
            k3.status("BD_Customer", &shop_code(&running, index)).as_deref(),
            Some("C")
        );
    }
    let ops: Vec<String> = k3.requests().iter().map(|r| r.path.clone()).collect();
    let count = |op: &str| ops.iter().filter(|p| p.contains(&format!(".{op}."))).count();
    assert_eq!(
        (count("UnAudit"), count("Submit"), count("Audit")),
        (1, 1, 1),
        "{ops:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_row_fails_alone_and_refuse_leaves_audited_rows_alone() {
    let (running, plan, store) = seed_003_with_changes(Flow::GuanyiToK3Cloud.scheme(), &[5, 9]).await;
    let k3 = running.sims.k3cloud.clone().unwrap();
    let submitted = shop_code(&running, 9);
    assert!(k3.set_status("BD_Customer", &submitted, "B"));
    let second = run_once(&plan, &store).await;
    assert_eq!((second.updated, second.failed), (1, 1), "{second:?}");
    let failures = ferry::store::FailureLedger::list_failures(&store, Some(&plan.name), None, 10)
        .await
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].message.contains("submitted and waiting for approval"),
        "{}",
        failures[0].message
    );
    assert_eq!(
        k3.status("BD_Customer", &submitted).as_deref(),
        Some("B"),
        "never withdrawn"
    );
    running.shutdown().await;

    let scheme = Flow::GuanyiToK3Cloud.scheme().replace(
        "app_secret: \"${K3CLOUD_APP_SECRET}\"",
        "app_secret: \"${K3CLOUD_APP_SECRET}\"\n      locked_rows: refuse",
    );
    let (running, plan, store) = seed_003_with_changes(&scheme, &[5]).await;
    let k3 = running.sims.k3cloud.clone().unwrap();
    let second = run_once(&plan, &store).await;
    assert_eq!((second.updated, second.failed), (0, 1), "{second:?}");
    let failures = ferry::store::FailureLedger::list_failures(&store, Some(&plan.name), None, 10)
        .await
        .unwrap();
    assert!(
        failures[0].message.contains("`locked_rows` is `refuse`"),
        "{}",
        failures[0].message
    );
    assert!(!k3.requests().iter().any(|r| r.path.contains(".UnAudit.")));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_left_unaudited_by_a_dead_run_is_audited_by_the_next() {
    use ferry::store::{IntentLog, WriteIntent, WriteOperation};
    let (running, plan, store) = seed_003_with_changes(Flow::GuanyiToK3Cloud.scheme(), &[]).await;
    let k3 = running.sims.k3cloud.clone().unwrap();
    let code = shop_code(&running, 7);
    let mapping =
        ferry::store::MappingStore::mappings_for(&store, &plan.name, &plan.source.object, std::slice::from_ref(&code))
            .await
            .unwrap()
            .remove(&code)
            .unwrap();
    // The dead run: it recorded the relock, unaudited the row, and died.
    store
        .record_intents(&[WriteIntent {
            scheme: plan.name.clone(),
            source_object: plan.source.object.clone(),
            source_id: code.clone(),
            source_name: None,
            batch_id: "99-0".into(),
            operation: WriteOperation::Relock,
            business_key: None,
            target_id: mapping.target_id.clone(),
            payload_hash: "x".into(),
            payload: None,
            sent: None,
            created_at: Utc::now(),
        }])
        .await
        .unwrap();
    assert!(k3.set_status("BD_Customer", &code, "D"));
    let next = run_once(&plan, &store).await;
    assert_eq!((next.failed, next.aborted.clone()), (0, None), "{next:?}");
    assert_eq!(k3.status("BD_Customer", &code).as_deref(), Some("C"));
    assert!(store.pending_intents(&plan.name).await.unwrap().is_empty());
    running.shutdown().await;
}

/// A Simply CRM simulator with `records` accounts that all belong to the admin, and a
/// K3Cloud simulator; the environment points the Simply → K3Cloud seed scheme at them.
async fn simply_and_k3(
    records: u64,
) -> (
    ferry::sim::simply::SimplySim,
    ferry::sim::k3cloud::K3CloudSim,
    std::collections::HashMap<&'static str, String>,
    Vec<ferry::sim::SimHandle>,
) {
    use ferry::sim::k3cloud::{K3CloudConfig, K3CloudSim};
    use ferry::sim::simply::{SimplyConfig, SimplySim};
    let listener = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let simply_config = SimplyConfig {
        records,
        other_owner_every: 0,
        ..SimplyConfig::default()
    };
    let k3_config = K3CloudConfig::default();
    let (simply, simply_handle) = SimplySim::start(simply_config.clone(), listener().await.unwrap())
        .await
        .unwrap();
    let (k3, k3_handle) = K3CloudSim::start(k3_config.clone(), listener().await.unwrap())
        .await
        .unwrap();
    let env = std::collections::HashMap::from([
        ("SIMPLY_URL", simply_handle.base_url()),
        ("SIMPLY_USERNAME", simply_config.username.clone()),
        ("SIMPLY_ACCESS_KEY", simply_config.access_key.clone()),
        ("K3CLOUD_URL", format!("{}/k3cloud/", k3_handle.base_url())),
        ("K3CLOUD_ACCT_ID", k3_config.acct_id.clone()),
        ("K3CLOUD_USERNAME", k3_config.username.clone()),
        ("K3CLOUD_APP_ID", k3_config.app_id.clone()),
        ("K3CLOUD_APP_SECRET", k3_config.app_secret.clone()),
    ]);
    (simply, k3, env, vec![simply_handle, k3_handle])
}

/// The Simply → K3Cloud seed scheme reading with `sync` (the variant its comment shows):
/// one window per run, because `sync` reads every change after `modifiedTime`.
fn simply_sync_scheme() -> String {
    let seed = Flow::SimplyToK3Cloud.scheme();
    let start = seed.find("    api: query\n").expect("the seed reads with query");
    let end = seed[start..].find("  id: ").expect("source.id follows") + start;
    format!(
        "{}    api: sync\n    body: {{modifiedTime: \"<< window.start | timestamp >>\", elementType: Accounts}}\n  incremental: {{field: modifiedtime, start: \"2024-02-01 00:00:00\", window: 3650d, lookback: 10m, lag: 1m}}\n{}",
        &seed[..start],
        &seed[end..]
    )
}

fn sync_plan(scheme: &str, env: &std::collections::HashMap<&'static str, String>) -> Plan {
    let loaded = load_str(scheme, "simply-sync.yaml", &|name| env.get(name).cloned());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.plan.unwrap()
}

/// The `modifiedTime` of every `sync` call the simulator received.
fn sync_calls(simply: &ferry::sim::simply::SimplySim) -> Vec<i64> {
    simply
        .requests()
        .into_iter()
        .filter(|r| r.query_param("operation").as_deref() == Some("sync"))
        .map(|r| r.query_param("modifiedTime").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simply_sync_pages_by_last_modified_time_and_reads_each_change_once() {
    let (simply, k3, env, handles) = simply_and_k3(300).await;
    let plan = sync_plan(&simply_sync_scheme(), &env);
    // 250 accounts changed a second apart: vtiger answers 100 changes per call.
    let first_change = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        simply.touch_many(1..=250, first_change, chrono::Duration::seconds(1)),
        250
    );
    let store = Store::memory();
    let customers_before = k3.row_count("BD_Customer");
    let summary = run_once(&plan, &store).await;
    assert_eq!(summary.aborted, None, "{summary:?}");
    assert_eq!(
        (summary.read, summary.created, summary.duplicates, summary.failed),
        (250, 250, 0, 0),
        "{summary:?}"
    );
    assert_eq!(k3.row_count("BD_Customer"), customers_before + 250);
    let calls = sync_calls(&simply);
    assert_eq!(calls.len(), 3, "100 + 100 + 50 changes: {calls:?}");
    // The first call starts at the window (2024-02-01 in the scheme's zone, less the
    // lookback); each later one at the lastModifiedTime of the answer before it.
    let first = first_change.timestamp();
    assert_eq!(calls[0], 1_706_716_200, "{calls:?}");
    assert_eq!(calls[1..], [first + 99, first + 199], "{calls:?}");
    for handle in handles {
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simply_accounts_deleted_in_the_crm_are_deleted_from_k3cloud() {
    let (simply, k3, env, handles) = simply_and_k3(300).await;
    // Customers saved unaudited, since K3Cloud deletes only those (reference §2), and a
    // `Delete` of the mapped ids, comma-separated.
    let scheme = simply_sync_scheme()
        .replace("IsAutoSubmitAndAudit: true", "IsAutoSubmitAndAudit: false")
        .replace(
            "  fields:\n",
            "  delete:\n    request:\n      api: Delete\n      body: {formid: BD_Customer, data: {Ids: \"<< target_ids | join(',') >>\"}}\n  fields:\n",
        );
    let plan = sync_plan(&scheme, &env);
    assert!(plan.target.delete.is_some());
    assert_eq!(
        simply.touch_many(
            1..=20,
            Utc::now() - chrono::Duration::hours(1),
            chrono::Duration::seconds(1)
        ),
        20
    );
    let store = Store::memory();
    let first = run_once(&plan, &store).await;
    assert_eq!((first.created, first.failed), (20, 0), "{first:?}");
    let customers = k3.row_count("BD_Customer");
    let number = |index: u64| {
        simply.account(index).unwrap()["account_no"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(k3.row("BD_Customer", &number(5)).is_some());

    // Two accounts deleted in the CRM, and one that never reached K3Cloud.
    let at = Utc::now() - chrono::Duration::minutes(5);
    for id in ["11x5", "11x7", "11x250"] {
        assert!(simply.delete_record(id, at), "{id}");
    }
    let second = run_once(&plan, &store).await;
    assert_eq!(second.aborted, None, "{second:?}");
    assert_eq!((second.deleted, second.failed, second.read), (3, 0, 0), "{second:?}");
    assert_eq!(k3.row_count("BD_Customer"), customers - 2);
    assert!(k3.row("BD_Customer", &number(5)).is_none());
    assert!(k3.row("BD_Customer", &number(7)).is_none());
    assert!(k3.row("BD_Customer", &number(6)).is_some());
    for handle in handles {
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_k3cloud_row_carries_only_its_own_error() {
    // A second store that knows nothing: every customer is created again, and K3Cloud
    // refuses each as a duplicate FNumber, one error per package by DIndex (reference §2).
    let (running, plan, store) = start(Flow::GuanyiToK3Cloud).await;
    assert_eq!(run_once(&plan, &store).await.created, 230);
    let fresh = Store::memory();
    let again = run_once(&plan, &fresh).await;
    assert_eq!((again.created, again.failed), (0, 230), "{again:?}");
    let failures = ferry::store::FailureLedger::list_failures(&fresh, Some(&plan.name), None, 1000)
        .await
        .unwrap();
    assert_eq!(failures.len(), 230);
    let codes: Vec<String> = failures.iter().map(|f| f.source_id.clone()).collect();
    for failure in &failures {
        assert!(failure.message.contains(&failure.source_id), "{}", failure.message);
        let others = codes
            .iter()
            .filter(|code| **code != failure.source_id && failure.message.contains(&format!("“{code}”")))
            .count();
        assert_eq!(others, 0, "a row's message names other rows: {}", failure.message);
    }
    running.shutdown().await;
}

// ---- detail rows are matched, never duplicated -------------------------------------------

/// A shop (the order source, with `lines`) and a target simulator, with the environment a
/// detail-row scheme reads.
struct BillFlow {
    shop: ferry::sim::shop::ShopSim,
    env: std::collections::HashMap<&'static str, String>,
    handles: Vec<ferry::sim::SimHandle>,
}

impl BillFlow {
    async fn start_shop(orders: u64) -> BillFlow {
        use ferry::sim::shop::{ShopConfig, ShopSim};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ShopConfig {
            records: orders,
            ..ShopConfig::default()
        };
        let (shop, handle) = ShopSim::start(config, listener).await.unwrap();
        let mut env = std::collections::HashMap::new();
        env.insert("SHOP_URL", handle.base_url());
        BillFlow {
            shop,
            env,
            handles: vec![handle],
        }
    }

    fn plan(&self, scheme: &str) -> Plan {
        let loaded = load_str(scheme, "bills.yaml", &|name: &str| self.env.get(name).cloned());
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        loaded.plan.unwrap()
    }

    /// Changes the first line's quantity of shop order `index` (as a person editing the
    /// order would), inside the next run's window.
    fn change_first_line(&self, index: u64) -> String {
        let before = self.shop.order(index).unwrap()["lines"][0]["qty"].clone();
        let at = (Utc::now() - chrono::Duration::seconds(90))
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .naive_local();
        assert!(self.shop.touch(index, at));
        let after = self.shop.order(index).unwrap()["lines"][0]["qty"].clone();
        assert_ne!(before, after, "the first line's quantity changes");
        after.as_str().unwrap().to_string()
    }

    async fn shutdown(self) {
        for handle in self.handles {
            handle.shutdown().await;
        }
    }
}

/// The shop's orders source (incremental, paged), shared by the bill schemes.
const SHOP_ORDERS_SOURCE: &str = r#"
timezone: Asia/Shanghai
source:
  connection: shop
  object: order
  request:
    method: GET
    path: /orders
    query:
      modified_from: "<< window.start | datetime >>"
      modified_to: "<< window.end | datetime >>"
      page: "<< page.number >>"
      size: "<< page.size >>"
  response: {codec: json, success: "<< body.ok >>", error: "<< body.message >>"}
  records: $.data.orders[*]
  pagination: {style: page_number, start: 1, size: 50, stop: total, total: $.data.total}
  incremental: {field: modified_at, start: "2024-01-01 00:00:00", window: 3650d, lookback: 10m, lag: 1m}
  id: "<< order_no >>"
  name: "<< customer_name >>"
"#;

/// Shop orders → K3Cloud sale orders (`SAL_SaleOrder`, entry rows `FSaleOrderEntry`),
/// created audited; `entry_identity` is the `for_each`'s `key`/`target_id` lines (or none).
fn k3_bill_scheme(entry_identity: &str) -> String {
    format!(
        r#"
name: shop-orders-to-k3-bills
connections:
  shop: {{connector: http, base_url: "${{SHOP_URL}}"}}
  k3cloud:
    connector: kingdee-k3cloud
    base_url: "${{K3CLOUD_URL}}"
    settings:
      acct_id: "${{K3CLOUD_ACCT_ID}}"
      username: "${{K3CLOUD_USERNAME}}"
      app_id: "${{K3CLOUD_APP_ID}}"
      app_secret: "${{K3CLOUD_APP_SECRET}}"
{SHOP_ORDERS_SOURCE}
target:
  connection: k3cloud
  object: SAL_SaleOrder
  batch: 20
  create:
    request:
      api: BatchSave
      body: {{formid: SAL_SaleOrder, data: {{Model: "<< rows >>", IsAutoSubmitAndAudit: true}}}}
  update:
    request:
      api: BatchSave
      body: {{formid: SAL_SaleOrder, data: {{Model: "<< rows >>", IsAutoSubmitAndAudit: true}}}}
  fields:
    FBillNo: "<< order_no >>"
    FBillTypeID: {{FNUMBER: XSDD01_SYS}}
    FSaleOrgId: {{FNumber: "100"}}
    FCustId: {{FNumber: "CUST0<< 100 + (customer_code[1:] | int) % 100 >>"}}
    FSaleOrderEntry:
      for_each: $.lines[*]
{entry_identity}
      fields:
        FMaterialId: {{FNumber: "WL000<< 10 + (sku[4:] | int) % 90 >>"}}
        FQty: "<< qty | int >>"
        FTaxPrice: "<< price | float >>"
"#
    )
}

async fn k3_bill_flow(orders: u64) -> (BillFlow, ferry::sim::k3cloud::K3CloudSim) {
    use ferry::sim::k3cloud::{K3CloudConfig, K3CloudSim};
    let mut flow = BillFlow::start_shop(orders).await;
    // Enough customers and materials for the numbers the scheme derives.
    let config = K3CloudConfig {
        records: 200,
        materials: 100,
        ..K3CloudConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (k3, handle) = K3CloudSim::start(config.clone(), listener).await.unwrap();
    flow.env
        .insert("K3CLOUD_URL", format!("{}/k3cloud/", handle.base_url()));
    flow.env.insert("K3CLOUD_ACCT_ID", config.acct_id.clone());
    flow.env.insert("K3CLOUD_USERNAME", config.username.clone());
    flow.env.insert("K3CLOUD_APP_ID", config.app_id.clone());
    flow.env.insert("K3CLOUD_APP_SECRET", config.app_secret.clone());
    flow.handles.push(handle);
    (flow, k3)
}

fn entry_ids(lines: &[serde_json::Value]) -> Vec<i64> {
    lines.iter().map(|line| line["FEntryID"].as_i64().unwrap()).collect()
}

/// Changing one line of a bill updates that entry row of the K3Cloud bill: the bill keeps
/// its number of rows and their FEntryIDs (the audited bill is unaudited, saved and audited
/// again on the way). Without `target_id` the same update appends a copy of every line,
/// which is what Ferry did before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_bill_line_updates_its_k3cloud_entry_row_instead_of_appending_one() {
    const ORDERS: u64 = 12;
    const CHANGED: u64 = 3;
    let bill = "SO0000003";
    let (flow, k3) = k3_bill_flow(ORDERS).await;
    let plan = flow.plan(&k3_bill_scheme("      target_id: FEntryID"));
    let store = Store::memory();
    let lines = flow.shop.order(CHANGED).unwrap()["lines"].as_array().unwrap().len();

    let first = run_once(&plan, &store).await;
    assert_eq!(
        (first.aborted.clone(), first.created, first.failed),
        (None, ORDERS, 0),
        "{first:?}"
    );
    let before = k3.entries("SAL_SaleOrder", bill, "FSaleOrderEntry").unwrap();
    assert_eq!(before.len(), lines);
    assert_eq!(k3.status("SAL_SaleOrder", bill).as_deref(), Some("C"));
    // The create asked for the entry ids and the mapping keeps them by line position.
    let mapping = ferry::store::MappingStore::mappings_for(&store, &plan.name, "order", &[bill.to_string()])
        .await
        .unwrap()
        .remove(bill)
        .unwrap();
    let stored: Vec<i64> = (0..lines)
        .map(|i| {
            mapping.detail_ids.as_ref().unwrap()["FSaleOrderEntry"][i.to_string()]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(stored, entry_ids(&before));

    let qty = flow.change_first_line(CHANGED);
    let second = run_once(&plan, &store).await;
    assert_eq!(
        (second.aborted.clone(), second.updated, second.failed),
        (None, 1, 0),
        "{second:?}"
    );
    let after = k3.entries("SAL_SaleOrder", bill, "FSaleOrderEntry").unwrap();
    assert_eq!(after.len(), lines, "no entry row was appended: {after:?}");
    assert_eq!(entry_ids(&after), entry_ids(&before), "every row keeps its FEntryID");
    assert_eq!(after[0]["FQty"].to_string(), qty, "{after:?}");
    assert_eq!(after[1..], before[1..], "the other rows are as they were");
    assert_eq!(k3.status("SAL_SaleOrder", bill).as_deref(), Some("C"), "audited again");
    assert_eq!(k3.row_count("SAL_SaleOrder"), 20 + ORDERS as usize, "no bill was added");

    // The same scheme without `target_id` (Ferry before): the update appends every line again.
    let (other_flow, other_k3) = k3_bill_flow(ORDERS).await;
    let blind = other_flow.plan(&k3_bill_scheme(""));
    let blind_store = Store::memory();
    assert_eq!(run_once(&blind, &blind_store).await.created, ORDERS);
    other_flow.change_first_line(CHANGED);
    assert_eq!(run_once(&blind, &blind_store).await.updated, 1);
    let copied = other_k3.entries("SAL_SaleOrder", bill, "FSaleOrderEntry").unwrap();
    assert_eq!(copied.len(), 2 * lines, "without ids every line was appended again");
    other_flow.shutdown().await;
    flow.shutdown().await;
}

/// Shop orders → an ERP behind the standard interface (seed 000): `masterFieldVal` with the
/// order, `detailFieldVals.SaleOrderEntryObj` with its lines, identified by SKU.
fn erp_bill_scheme(entry_identity: &str) -> String {
    format!(
        r#"
name: shop-orders-to-erp-standard
connections:
  shop: {{connector: http, base_url: "${{SHOP_URL}}"}}
  erp:
    connector: erp-standard
    base_url: "${{ERP_STD_URL}}"
    settings: {{token: "${{ERP_STD_TOKEN}}"}}
{SHOP_ORDERS_SOURCE}
target:
  connection: erp
  object: SaleOrderObj
  batch: 10
  create:
    request: {{api: create, body: "<< row >>"}}
  update:
    request: {{api: update, body: "<< row >>"}}
  fields:
    objAPIName: SaleOrderObj
    masterFieldVal:
      id: "<< target_id >>"
      billNo: "<< order_no >>"
      customerName: "<< customer_name >>"
      totalAmount: "<< amount >>"
    detailFieldVals:
      SaleOrderEntryObj:
        for_each: $.lines[*]
{entry_identity}
        fields:
          productCode: "<< sku >>"
          qty: "<< qty >>"
          price: "<< price >>"
"#
    )
}

async fn erp_bill_flow(orders: u64) -> (BillFlow, ferry::sim::erp_standard::ErpStandardSim) {
    use ferry::sim::erp_standard::{ErpStandardConfig, ErpStandardSim};
    let mut flow = BillFlow::start_shop(orders).await;
    let config = ErpStandardConfig {
        records: 0,
        ..ErpStandardConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (erp, handle) = ErpStandardSim::start(config.clone(), listener).await.unwrap();
    flow.env.insert("ERP_STD_URL", handle.base_url());
    flow.env.insert("ERP_STD_TOKEN", config.token.clone());
    flow.handles.push(handle);
    (flow, erp)
}

/// The same scenario through the ERP-standard interface: the update names each line by
/// the id `detailDataIds` gave it, so the ERP updates that line; without `target_id` the
/// update appends every line again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_bill_line_updates_its_erp_standard_detail_row_instead_of_appending_one() {
    const ORDERS: u64 = 12;
    const CHANGED: u64 = 3;
    let bill = "SO0000003";
    let lines_of = |erp: &ferry::sim::erp_standard::ErpStandardSim| {
        erp.written_by_key(bill).unwrap()["detailFieldVals"]["SaleOrderEntryObj"]
            .as_array()
            .unwrap()
            .clone()
    };
    let ids_of = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .map(|line| line["id"].as_str().unwrap().to_string())
            .collect()
    };

    let (flow, erp) = erp_bill_flow(ORDERS).await;
    let plan = flow.plan(&erp_bill_scheme("        key: \"<< sku >>\"\n        target_id: id"));
    let store = Store::memory();
    let first = run_once(&plan, &store).await;
    assert_eq!(
        (first.aborted.clone(), first.created, first.failed),
        (None, ORDERS, 0),
        "{first:?}"
    );
    let before = lines_of(&erp);
    let source_lines = flow.shop.order(CHANGED).unwrap()["lines"].as_array().unwrap().clone();
    assert_eq!(before.len(), source_lines.len());
    let mapping = ferry::store::MappingStore::mappings_for(&store, &plan.name, "order", &[bill.to_string()])
        .await
        .unwrap()
        .remove(bill)
        .unwrap();
    let by_sku = &mapping.detail_ids.unwrap()["detailFieldVals.SaleOrderEntryObj"];
    for (line, stored) in source_lines.iter().zip(&before) {
        assert_eq!(by_sku[line["sku"].as_str().unwrap()], stored["id"], "{by_sku}");
    }

    let qty = flow.change_first_line(CHANGED);
    let second = run_once(&plan, &store).await;
    assert_eq!(
        (second.aborted.clone(), second.updated, second.failed),
        (None, 1, 0),
        "{second:?}"
    );
    let after = lines_of(&erp);
    assert_eq!(after.len(), before.len(), "no detail row was appended: {after:?}");
    assert_eq!(ids_of(&after), ids_of(&before));
    assert_eq!(after[0]["qty"], qty.as_str());
    assert_eq!(after[1..], before[1..]);
    assert_eq!(erp.written().len(), ORDERS as usize, "no order was added");

    // Without `target_id` (Ferry before) the ERP appends every line again.
    let (blind_flow, blind_erp) = erp_bill_flow(ORDERS).await;
    let blind = blind_flow.plan(&erp_bill_scheme(""));
    let blind_store = Store::memory();
    assert_eq!(run_once(&blind, &blind_store).await.created, ORDERS);
    blind_flow.change_first_line(CHANGED);
    assert_eq!(run_once(&blind, &blind_store).await.updated, 1);
    assert_eq!(
        lines_of(&blind_erp).len(),
        2 * before.len(),
        "without ids every line was appended again"
    );
    blind_flow.shutdown().await;
    flow.shutdown().await;
}
