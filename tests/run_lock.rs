//! The run lock as systemd timers rely on it, against the built binary: two runs of one
//! scheme against one store never overlap — not when they start together on a store that
//! does not exist yet, not when the store is reached through another spelling of its path —
//! and a stopping run still dies at once on a second signal.

use ferry::sim::shop::{ShopConfig, ShopSim};
use ferry::sim::Faults;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const SCHEME: &str = "shop-orders-to-erp";
const SCHEME_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemes/shop-orders-to-erp.yaml");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A shop simulator serving source and target, kept alive by `runtime`.
fn start_shop(runtime: &tokio::runtime::Runtime, config: ShopConfig) -> (ShopSim, String) {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = ShopSim::start(config, listener).await.unwrap();
        let url = handle.base_url();
        std::mem::forget(handle); // lives as long as the runtime
        (sim, url)
    })
}

/// `ferry run` of the shop scheme against `url`, not yet started.
fn run_command(url: &str, store: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", SCHEME_FILE, "--store", store, "--quiet"])
        .args(extra)
        .env_remove("FERRY_STORE")
        .env("FERRY_LOG", "warn")
        .env("SHOP_URL", url)
        .env("ERP_URL", url)
        .env("SHOP_TOKEN", "demo-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits for `child` at most `limit`; panics (after killing it) when it is still running.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: ferry was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} failed");
}

/// Two runs started at the same instant on a store that does not exist yet: one creates
/// and migrates it and runs, the other is refused with exit 4 (or, with `--wait`, runs
/// after it and finds everything already written). Never a migration error (exit 2), also
/// not for a command opening the store meanwhile without the run lock.
#[test]
fn two_runs_started_together_on_a_fresh_store_never_overlap() {
    const ROUNDS: usize = 20;
    const AT_ONCE: usize = 5;
    const RECORDS: u64 = 10;
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    // Each round has its own simulator: the target refuses a bill number it already holds.
    let shops: Vec<(ShopSim, String)> = (0..ROUNDS)
        .map(|_| {
            start_shop(
                &runtime,
                ShopConfig {
                    records: RECORDS,
                    token: Some("demo-token".into()),
                    // Long enough that the winner still holds the lock when the loser asks.
                    faults: Faults {
                        latency_ms: 250,
                        ..Faults::default()
                    },
                    ..ShopConfig::default()
                },
            )
        })
        .collect();
    for wave in (0..ROUNDS).collect::<Vec<_>>().chunks(AT_ONCE) {
        let started: Vec<_> = wave
            .iter()
            .map(|&round| {
                let store = dir.path().join(format!("round-{round}")).join("ferry.db");
                std::fs::create_dir_all(store.parent().unwrap()).unwrap();
                let store = store.display().to_string();
                let wait: &[&str] = if round % 2 == 1 { &["--wait"] } else { &[] };
                // One window holds every record: a short run.
                let extra = [&["--until", "2024-01-15 00:00:00"], wait].concat();
                let url = &shops[round].1;
                let first = run_command(url, &store, &extra).spawn().unwrap();
                let second = run_command(url, &store, &extra).spawn().unwrap();
                // A command without the run lock opens (and migrates) the store meanwhile; it
                // never creates one, so it may also find none yet.
                let reader = Command::new(BIN)
                    .args(["mappings", "list", "--scheme", SCHEME, "--store", &store])
                    .env_remove("FERRY_STORE")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (round, wait.is_empty(), [first, second], reader)
            })
            .collect();
        for (round, refuse, runs, reader) in started {
            let outputs = runs.map(|run| run.wait_with_output().unwrap());
            let mut codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
            codes.sort();
            let expected = if refuse { [Some(0), Some(4)] } else { [Some(0), Some(0)] };
            assert_eq!(
                codes,
                expected,
                "round {round} ({}):\nfirst {}\nsecond {}",
                if refuse { "without --wait" } else { "with --wait" },
                describe(&outputs[0]),
                describe(&outputs[1])
            );
            let reader = reader.wait_with_output().unwrap();
            let too_early =
                reader.status.code() == Some(2) && String::from_utf8_lossy(&reader.stderr).contains("no store at");
            assert!(
                reader.status.code() == Some(0) || too_early,
                "round {round}: mappings list {}",
                describe(&reader)
            );
            let sim = &shops[round].0;
            assert_eq!(sim.target_count(), RECORDS as usize, "round {round}: every record once");
            assert_eq!(sim.duplicate_creates(), 0, "round {round}: no run sent a create twice");
        }
    }
}

/// The lock belongs to the database file, not to the text naming it: a run reaching a
/// locked store through a symlink, a symlinked directory, `..` or a relative path is refused.
#[cfg(unix)]
#[test]
fn a_store_reached_through_another_path_is_the_same_lock() {
    let runtime = runtime();
    let (sim, url) = start_shop(
        &runtime,
        ShopConfig {
            records: 10,
            token: Some("demo-token".into()),
            ..ShopConfig::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("data");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("ferry.db");
    std::os::unix::fs::symlink(&real, dir.path().join("link.db")).unwrap();
    std::os::unix::fs::symlink(&real_dir, dir.path().join("linked-dir")).unwrap();

    let held = runtime.block_on(async {
        let store = ferry::store::Store::open(&real.display().to_string()).await.unwrap();
        ferry::store::lock::acquire(&store, SCHEME, false).await.unwrap()
    });
    let spellings = [
        dir.path().join("link.db"),
        dir.path().join("linked-dir").join("ferry.db"),
        real_dir.join("..").join("data").join("ferry.db"),
    ];
    for spelling in spellings {
        let store = spelling.display().to_string();
        let out = run_command(&url, &store, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{store}: {}", describe(&out));
    }
    // A relative path, from the store's directory.
    let out = run_command(&url, "./ferry.db", &[])
        .current_dir(&real_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "./ferry.db: {}", describe(&out));
    assert_eq!(sim.target_count(), 0, "no refused run wrote anything");

    drop(held);
    let out = run_command(&url, &dir.path().join("link.db").display().to_string(), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!Path::new(&format!("{}.{SCHEME}.lock", dir.path().join("link.db").display())).exists());
}

/// A run whose target answers slowly, signalled while writes are in flight: one SIGTERM lets
/// those writes finish; a second signal ends the process at once. Either way the exit code is
/// 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process
/// ended by it, which the units of `ferry systemd` count as success (`systemctl stop`).
#[cfg(unix)]
#[test]
fn a_second_signal_ends_a_stopping_run_at_once() {
    const ANSWER_DELAY: Duration = Duration::from_secs(2);
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], Option<i32>); 4] = [
        (&["TERM"], Some(143)),
        (&["TERM", "TERM"], Some(143)),
        (&["INT", "INT"], Some(130)),
        (&["INT", "TERM"], Some(143)),
    ];
    // The cases run side by side, each with its own simulator and store.
    let started: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(case, _)| {
            let (sim, url) = start_shop(
                &runtime,
                ShopConfig {
                    records: 100, // one batch
                    token: Some("demo-token".into()),
                    // The target stores each batch, then holds its answer back.
                    faults: Faults {
                        latency_after_ms: ANSWER_DELAY.as_millis() as u64,
                        only_path_prefix: Some("/orders/".into()),
                        ..Faults::default()
                    },
                    ..ShopConfig::default()
                },
            );
            let store = dir.path().join(format!("signal-{case}.db")).display().to_string();
            (sim, run_command(&url, &store, &[]).spawn().unwrap())
        })
        .collect();
    std::thread::scope(|scope| {
        for ((signals, expected), (sim, mut child)) in cases.into_iter().zip(started) {
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while sim.create_calls() == 0 {
                    assert!(Instant::now() < deadline, "{signals:?}: no write was sent within 20 s");
                    std::thread::sleep(Duration::from_millis(10));
                }
                let first_sent = Instant::now();
                for name in signals {
                    signal(&child, name);
                    std::thread::sleep(Duration::from_millis(200));
                }
                let status = wait_at_most(&mut child, Duration::from_secs(20), &format!("{signals:?}"));
                let took = first_sent.elapsed();
                assert_eq!(status.code(), expected, "signals {signals:?}");
                if signals.len() == 1 {
                    assert!(
                        took >= ANSWER_DELAY / 2,
                        "one signal waits for the writes in flight ({took:?})"
                    );
                } else {
                    assert!(
                        took < ANSWER_DELAY / 2,
                        "{signals:?}: a second signal must not wait for the writes ({took:?})"
                    );
                }
            });
        }
    });
}
