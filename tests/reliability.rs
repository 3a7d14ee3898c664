//! Reliability promises, proved against the shop simulator on 127.0.0.1:0: flaky and
//! throttling targets, lost answers, crashes (SIGKILL of the real binary), ledger replay,
//! uncertain creates and shared rate budgets.

use ferry::engine::{run, Replay, RunOptions, Summary};
use ferry::http::HttpClient;
use ferry::scheme::{load_str, Plan};
use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::{Faults, SimHandle, Simulator};
use ferry::store::{
    FailureLedger, FailureStatus, IntentLog, Mapping, MappingQuery, MappingStatus, MappingStore, Store,
};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SCHEME: &str = include_str!("../schemes/shop-orders-to-erp.yaml");
const TOKEN: &str = "rel-token";
const ERP_CONNECTION: &str =
    "  erp:\n    connector: http\n    base_url: \"${ERP_URL:-http://127.0.0.1:8080}\"\n    in_flight: 2\n";

/// The shipped scheme with extra lines under the `erp` connection.
fn scheme_with_erp(extra: &str) -> String {
    assert!(SCHEME.contains(ERP_CONNECTION), "the shipped scheme changed shape");
    SCHEME.replace(ERP_CONNECTION, &format!("{ERP_CONNECTION}{extra}"))
}

/// The shipped scheme without its `lookup` block.
fn scheme_without_lookup() -> String {
    let start = SCHEME
        .find("  # Finds an order by bill number")
        .expect("lookup comment");
    let end = SCHEME.find("  update:").expect("update block");
    format!("{}{}", &SCHEME[..start], &SCHEME[end..])
}

struct Rig {
    sim: ShopSim,
    handle: SimHandle,
    store: Store,
    http: HttpClient,
    dir: tempfile::TempDir,
}

impl Rig {
    /// A source of `records` orders and a target that refuses every `every`th bill.
    async fn rejecting_every(records: u64, every: u64) -> Rig {
        Rig::start(ShopConfig {
            records,
            reject_every: Some(every),
            ..ShopConfig::default()
        })
        .await
    }

    async fn start(config: ShopConfig) -> Rig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ShopConfig {
            token: Some(TOKEN.into()),
            record_bodies: false,
            ..config
        };
        let (sim, handle) = ShopSim::start(config, listener).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ferry.db").display().to_string())
            .await
            .unwrap();
        Rig {
            sim,
            handle,
            store,
            http: HttpClient::new().unwrap(),
            dir,
        }
    }

    fn plan(&self, text: &str) -> Plan {
        let url = self.handle.base_url();
        let loaded = load_str(text, "shop.yaml", &|name| match name {
            "SHOP_URL" | "ERP_URL" => Some(url.clone()),
            "SHOP_TOKEN" => Some(TOKEN.into()),
            _ => None,
        });
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        loaded.plan.unwrap()
    }

    async fn run(&self, plan: &Plan, options: RunOptions) -> Summary {
        run(plan, &self.store, &self.http, &options).await.unwrap()
    }

    async fn mappings(&self, plan: &Plan) -> Vec<Mapping> {
        let query = MappingQuery {
            scheme: Some(plan.name.clone()),
            limit: None,
            ..MappingQuery::default()
        };
        self.store.query_mappings(&query).await.unwrap()
    }

    async fn open_failures(&self, plan: &Plan) -> Vec<ferry::store::Failure> {
        self.store
            .list_failures(Some(&plan.name), Some(FailureStatus::Open), 10_000)
            .await
            .unwrap()
    }

    /// Every source order is in the target exactly once, with exactly one mapping that
    /// points at it; nothing was ever refused as a duplicate; the ledger is empty.
    async fn assert_exactly_once(&self, plan: &Plan, records: u64) {
        let rows = self.sim.target_rows();
        let mut by_bill: BTreeMap<String, usize> = BTreeMap::new();
        for row in &rows {
            *by_bill.entry(row["FBillNo"].as_str().unwrap().to_string()).or_default() += 1;
        }
        let twice: Vec<_> = by_bill.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "written more than once: {twice:?}");
        assert_eq!(rows.len() as u64, records, "records lost in the target");
        assert_eq!(self.sim.duplicate_creates(), 0, "ferry tried to create a record twice");
        let mappings = self.mappings(plan).await;
        assert_eq!(mappings.len() as u64, records);
        for m in &mappings {
            assert_eq!(m.status, MappingStatus::Created, "{m:?}");
            let stored = self
                .sim
                .target_row_by_bill_no(&m.source_id)
                .expect("mapped record in target");
            assert_eq!(m.target_id.as_deref(), stored["id"].as_str(), "{m:?}");
        }
        let open = self.open_failures(plan).await;
        assert!(open.is_empty(), "ledger not empty: {open:#?}");
        assert!(self.store.pending_intents(&plan.name).await.unwrap().is_empty());
    }
}

/// Issue acceptance: 20% of target requests fail with 5xx (after the write happened, the
/// hardest case) and every 10th is throttled; 10,000 records still land exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_throttling_target_still_gets_every_record_exactly_once() {
    let records = 10_000;
    let clean = Rig::start(ShopConfig {
        records,
        ..ShopConfig::default()
    })
    .await;
    let retry = "    retry: {attempts: 10, backoff: 5ms, max_backoff: 50ms}\n";
    let clean_plan = clean.plan(&scheme_with_erp(retry));
    let started = Instant::now();
    let baseline = clean.run(&clean_plan, RunOptions::default()).await;
    let clean_time = started.elapsed();
    assert_eq!(baseline.created, records);

    let rig = Rig::start(ShopConfig {
        records,
        faults: Faults {
            fail_rate: 0.2,
            fail_after_handler: true,
            throttle_every: Some(10),
            retry_after_secs: Some(0),
            only_path_prefix: Some("/orders/".into()),
            seed: 7,
            ..Faults::default()
        },
        ..ShopConfig::default()
    })
    .await;
    let plan = rig.plan(&scheme_with_erp(retry));
    let started = Instant::now();
    let summary = rig.run(&plan, RunOptions::default()).await;
    let faulty_time = started.elapsed();
    assert_eq!(summary.aborted, None);
    assert_eq!(summary.read, records);
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(summary.created, records);
    rig.assert_exactly_once(&plan, records).await;
    println!(
        "faults run: {records} records, fault-free {:.2}s, with faults {:.2}s ({:+.0}%), {} requests vs {}",
        clean_time.as_secs_f64(),
        faulty_time.as_secs_f64(),
        (faulty_time.as_secs_f64() / clean_time.as_secs_f64() - 1.0) * 100.0,
        summary.requests,
        baseline.requests
    );
    clean.handle.shutdown().await;
    rig.handle.shutdown().await;
}

/// Issue acceptance: SIGKILL the real binary at 20 random points of a 5,000-record run, then
/// let it finish. Every record ends in the target exactly once, with one mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_never_duplicate_or_lose_a_record() {
    let records = 5_000;
    let rig = Rig::start(ShopConfig {
        records,
        faults: Faults {
            // Slow answers widen the gap between "written" and "recorded", and spread a
            // run over enough time for 20 kills to land in the middle of it.
            latency_ms: 1,
            latency_after_ms: 40,
            only_path_prefix: Some("/orders/batch".into()),
            ..Faults::default()
        },
        ..ShopConfig::default()
    })
    .await;
    // Small batches: many writes, each a point where a kill can land.
    let text = SCHEME.replace("batch: 100", "batch: 25");
    let plan = rig.plan(&text);
    let scheme_file = rig.dir.path().join("shop.yaml");
    std::fs::write(&scheme_file, &text).unwrap();
    let db = rig.dir.path().join("ferry.db");
    let binary = env!("CARGO_BIN_EXE_ferry");
    let command = || {
        let mut command = std::process::Command::new(binary);
        command
            .arg("run")
            .arg(&scheme_file)
            .args(["--quiet", "--json", "--store"])
            .arg(&db)
            .env("SHOP_URL", rig.handle.base_url())
            .env("ERP_URL", rig.handle.base_url())
            .env("SHOP_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut kills = 0;
    let mut unsettled_after_kill = 0;
    let mut landed_unrecorded = 0;
    let mut batches_seen = BTreeSet::new();
    let mut kills_with_progress = 0;
    let mut recorded_before = 0;
    while kills < 20 {
        let mut child = command().spawn().unwrap();
        let delay = Duration::from_millis(rng.gen_range(30..300));
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill point: nothing left to interrupt
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let pending = rig.store.pending_intents(&plan.name).await.unwrap();
        unsettled_after_kill += usize::from(!pending.is_empty());
        // Rows of batches first seen at this kill that reached the target unrecorded.
        landed_unrecorded += pending
            .iter()
            .filter(|i| !batches_seen.contains(&i.batch_id))
            .filter(|i| rig.sim.target_row_by_bill_no(&i.source_id).is_some())
            .count();
        batches_seen.extend(pending.into_iter().map(|i| i.batch_id));
        let recorded = rig.mappings(&plan).await.len();
        kills_with_progress += usize::from(recorded > recorded_before);
        recorded_before = recorded;
    }
    assert_eq!(kills, 20, "the run finished before all 20 kill points");
    let status = command().status().unwrap();
    assert_eq!(status.code(), Some(0), "the final run did not finish cleanly");
    rig.assert_exactly_once(&plan, records).await;
    println!(
        "crash run: {kills} kills survived ({kills_with_progress} after the run had recorded new rows); \
         {unsettled_after_kill} left unsettled writes; {landed_unrecorded} rows had reached the target \
         without being recorded (adopted by look-up); {} records, 0 duplicates, 0 lost",
        rig.sim.target_count()
    );
    assert!(
        unsettled_after_kill > 0,
        "no kill landed between a write and its record"
    );
    rig.handle.shutdown().await;
}

/// Rows the target rejected are replayed at the start of the next run once the target
/// accepts them, and `Replay::Ids` retries exactly the rows named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_are_replayed_by_the_next_run() {
    let rig = Rig::rejecting_every(500, 50).await;
    let plan = rig.plan(SCHEME);
    let first = rig.run(&plan, RunOptions::default()).await;
    assert_eq!(first.failed, 10);
    assert_eq!(first.created, 490);
    let open = rig.open_failures(&plan).await;
    assert_eq!(open.len(), 10);
    assert!(open
        .iter()
        .all(|f| f.payload.as_ref().is_some_and(|p| p["order_no"].is_string())));

    // Still rejected: the replay counts another attempt.
    let second = rig.run(&plan, RunOptions::default()).await;
    assert_eq!((second.replayed, second.failed, second.created), (10, 10, 0));
    let attempts: BTreeSet<i64> = rig.open_failures(&plan).await.iter().map(|f| f.attempts).collect();
    assert_eq!(attempts, BTreeSet::from([2]));

    // Fixed on the target side: an explicit retry of two ids sends exactly those.
    rig.sim.set_reject_every(None);
    let ids: Vec<i64> = open.iter().take(2).map(|f| f.id).collect();
    let retried = rig
        .run(
            &plan,
            RunOptions {
                replay: Some(Replay::Ids(ids.clone())),
                replay_only: true,
                ..RunOptions::default()
            },
        )
        .await;
    assert_eq!((retried.read, retried.created, retried.pages), (2, 2, 0));
    for id in &ids {
        let f = rig.store.failure(*id).await.unwrap().unwrap();
        assert_eq!(f.status, FailureStatus::Resolved);
    }

    // The next ordinary run replays the other eight before reading anything.
    let third = rig.run(&plan, RunOptions::default()).await;
    assert_eq!((third.replayed, third.created, third.failed), (8, 8, 0));
    assert_eq!(rig.store.count_open_failures(&plan.name).await.unwrap(), 0);
    rig.assert_exactly_once(&plan, 500).await;
    rig.handle.shutdown().await;
}

/// A run that replays the ledger and then reads the same records from the source again
/// (here a backfill over the whole history) sends each of them once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_rows_read_again_are_sent_once() {
    let rig = Rig::rejecting_every(200, 20).await;
    let plan = rig.plan(SCHEME);
    assert_eq!(rig.run(&plan, RunOptions::default()).await.failed, 10);
    let (creates_before, updates_before) = (rig.sim.create_calls(), rig.sim.update_calls());
    let backfill = RunOptions {
        since: Some("2023-12-31T16:00:00Z".parse().unwrap()),
        ..RunOptions::default()
    };
    let second = rig.run(&plan, backfill).await;
    assert_eq!(second.replayed, 10);
    assert_eq!(second.read, 210, "ten replayed plus the whole source");
    assert_eq!((second.duplicates, second.failed, second.unchanged), (10, 10, 190));
    let attempts: BTreeSet<i64> = rig.open_failures(&plan).await.iter().map(|f| f.attempts).collect();
    assert_eq!(attempts, BTreeSet::from([2]), "one more attempt each, not two");
    // One batch for the ten replayed rows; nothing else was written.
    assert_eq!(rig.sim.create_calls() - creates_before, 1);
    assert_eq!(rig.sim.update_calls(), updates_before);
    rig.handle.shutdown().await;
}

/// Replay stops at `failures.max_attempts`; `replay: false` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_respects_max_attempts() {
    let rig = Rig::rejecting_every(100, 10).await;
    let plan = rig.plan(&format!("{SCHEME}\nfailures: {{max_attempts: 2}}\n"));
    assert_eq!(rig.run(&plan, RunOptions::default()).await.failed, 10);
    assert_eq!(rig.run(&plan, RunOptions::default()).await.replayed, 10);
    // Two attempts used up: nothing is replayed automatically any more.
    assert_eq!(rig.run(&plan, RunOptions::default()).await.replayed, 0);
    let off = rig.plan(&format!("{SCHEME}\nfailures: {{replay: false}}\n"));
    assert_eq!(rig.run(&off, RunOptions::default()).await.replayed, 0);
    rig.handle.shutdown().await;
}

/// Without a look-up, a create whose answer was lost cannot be checked: it is filed as
/// `uncertain`, its mapping is held, and no later run sends it again on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_without_a_lookup_are_held_as_uncertain() {
    let rig = Rig::start(ShopConfig {
        records: 200,
        faults: Faults {
            fail_rate: 1.0,
            fail_after_handler: true,
            only_path_prefix: Some("/orders/batch".into()),
            ..Faults::default()
        },
        ..ShopConfig::default()
    })
    .await;
    let plan = rig.plan(&scheme_without_lookup());
    let first = rig.run(&plan, RunOptions::default()).await;
    assert_eq!(first.failed, 200);
    assert_eq!(rig.sim.target_count(), 200, "the writes did land");
    let open = rig.open_failures(&plan).await;
    assert_eq!(open.len(), 200);
    assert!(open.iter().all(|f| f.error_class == "uncertain"), "{:?}", open[0]);
    assert!(open[0].message.contains("ferry mappings set"), "{}", open[0].message);
    let held = rig.mappings(&plan).await;
    assert!(held.iter().all(|m| m.status == MappingStatus::Pending));

    // The target is healthy again; the records are read again but held, never re-created.
    rig.sim.set_faults(Faults::default());
    let creates = rig.sim.create_calls();
    let second = rig
        .run(
            &plan,
            RunOptions {
                since: Some("2023-12-31T00:00:00Z".parse().unwrap()),
                ..RunOptions::default()
            },
        )
        .await;
    assert_eq!(
        (second.read, second.created, second.skipped, second.replayed),
        (200, 0, 200, 0),
        "{second:?}"
    );
    assert_eq!(rig.sim.create_calls(), creates);
    assert_eq!(rig.sim.duplicate_creates(), 0);
    rig.handle.shutdown().await;
}

/// A shared budget holds two runs on one store (two tenants' worth of schemes) under one
/// limit together: they can never go faster than the budget allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_rate_budget_limits_runs_together() {
    let rig = Rig::start(ShopConfig {
        records: 300,
        ..ShopConfig::default()
    })
    .await;
    let rate = "    rate: {per_second: 20, burst: 1, shared: erp-tenant}\n";
    let text = scheme_with_erp(rate);
    let plan_a = rig.plan(&text.replace("batch: 100", "batch: 20"));
    let plan_b = rig.plan(
        &text
            .replace("batch: 100", "batch: 20")
            .replace("name: shop-orders-to-erp", "name: shop-orders-to-erp-copy")
            .replace("FBillNo: \"<< order_no >>\"", "FBillNo: \"COPY-<< order_no >>\""),
    );
    let started = Instant::now();
    let (a, b) = tokio::join!(
        rig.run(&plan_a, RunOptions::default()),
        rig.run(&plan_b, RunOptions::default())
    );
    let elapsed = started.elapsed();
    assert_eq!((a.created, b.created, a.failed, b.failed), (300, 300, 0, 0));
    let requests = a.requests + b.requests;
    // One token up front, then 20 per second.
    let floor = Duration::from_secs_f64((requests - 1) as f64 / 20.0);
    assert!(
        elapsed >= floor,
        "{requests} target requests in {elapsed:?}: faster than the shared budget allows ({floor:?})"
    );
    rig.handle.shutdown().await;
}

/// A generic target with no look-up that fails 3% of writes with a 500 (before acting
/// for `server_errors`; acting first, a lost answer, for `idempotency_key`): each opt-in
/// lets every record land exactly once, exit 0, with an empty ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_without_a_lookup_finish_with_retry_writes() {
    let records = 10_000;
    let retry = "    retry: {attempts: 10, backoff: 5ms, max_backoff: 50ms}\n";
    let cases = [
        ("retry_writes: server_errors", false, ""),
        (
            "retry_writes: idempotency_key",
            true,
            ", headers: {Idempotency-Key: \"<< batch.key >>\"}",
        ),
    ];
    for (setting, acts_first, headers) in cases {
        let rig = Rig::start(ShopConfig {
            records,
            faults: Faults {
                fail_rate: 0.03,
                fail_after_handler: acts_first,
                only_path_prefix: Some("/orders/batch".into()),
                seed: 11,
                ..Faults::default()
            },
            ..ShopConfig::default()
        })
        .await;
        let scheme = scheme_with_erp(retry)
            .replace(
                "  lookup:\n    request: {method: GET, path: /orders/lookup, query: {number: \"<< key >>\"}}\n    response: {success: \"<< body.code == 0 >>\", error: \"<< body.message >>\"}\n    id: $.data.id\n",
                "",
            )
            .replace(
                "    request: {method: POST, path: /orders/batch, body: {items: \"<< rows >>\"}}\n",
                &format!(
                    "    request: {{method: POST, path: /orders/batch, body: {{items: \"<< rows >>\"}}{headers}}}\n    {setting}\n"
                ),
            );
        assert!(
            !scheme.contains("/orders/lookup") && scheme.contains(setting),
            "{scheme}"
        );
        let plan = rig.plan(&scheme);
        let summary = rig.run(&plan, RunOptions::default()).await;
        assert_eq!(
            (summary.created, summary.failed),
            (records, 0),
            "{setting}: {summary:?}"
        );
        assert_eq!(summary.exit_code(), 0);
        rig.assert_exactly_once(&plan, records).await;
        if acts_first {
            assert!(
                rig.sim.replayed_keys() > 0,
                "lost answers were sent again with their key"
            );
        }
        rig.handle.shutdown().await;
    }

    // Without either setting, the same faults stay safe: held, and the message says what to add.
    let rig = Rig::start(ShopConfig {
        records: 500,
        faults: Faults {
            fail_rate: 0.3,
            only_path_prefix: Some("/orders/batch".into()),
            seed: 11,
            ..Faults::default()
        },
        ..ShopConfig::default()
    })
    .await;
    let plan = rig.plan(&scheme_without_lookup());
    let summary = rig.run(&plan, RunOptions::default()).await;
    assert!(summary.failed > 0);
    let open = rig.open_failures(&plan).await;
    assert!(
        open[0].message.contains("retry_writes: idempotency_key")
            && open[0].message.contains("retry_writes: server_errors"),
        "{}",
        open[0].message
    );
    rig.handle.shutdown().await;
}

/// A run dies after its idempotent create reached the target but before the answer came
/// back: the next run sends the same rows under the same key, the target answers as the
/// first time, and the records are adopted, never created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_create_left_by_a_dead_run_is_sent_again_under_its_key() {
    let rig = Rig::start(ShopConfig {
        records: 100,
        faults: Faults {
            latency_after_ms: 3_000,
            only_path_prefix: Some("/orders/batch".into()),
            ..Faults::default()
        },
        ..ShopConfig::default()
    })
    .await;
    let scheme = scheme_without_lookup().replace(
        "    request: {method: POST, path: /orders/batch, body: {items: \"<< rows >>\"}}\n",
        "    request: {method: POST, path: /orders/batch, body: {items: \"<< rows >>\"}, headers: {Idempotency-Key: \"<< batch.key >>\"}}\n    retry_writes: idempotency_key\n",
    );
    assert!(scheme.contains("retry_writes"));
    let plan = rig.plan(&scheme);
    // The run is killed while the target holds its answer.
    let killed = tokio::time::timeout(Duration::from_millis(800), rig.run(&plan, RunOptions::default())).await;
    assert!(killed.is_err(), "the run should still be waiting for its answer");
    assert_eq!(rig.sim.target_count(), 100, "the batch landed");
    let pending = rig.store.pending_intents(&plan.name).await.unwrap();
    assert_eq!(pending.len(), 100);
    assert!(pending.iter().all(|i| i.sent.is_some()), "rows kept as sent");

    rig.sim.set_faults(Faults::default());
    let next = rig.run(&plan, RunOptions::default()).await;
    assert_eq!((next.reconciled, next.uncertain, next.failed), (100, 0, 0), "{next:?}");
    assert_eq!(rig.sim.replayed_keys(), 1, "the same request, answered from its key");
    rig.assert_exactly_once(&plan, 100).await;
    rig.handle.shutdown().await;
}
