//! Issue 14 §3 and §5 as an operator meets them: `ferry checkpoint`, `ferry explain`,
//! resync by id and alerts. Every network peer is one of Ferry's simulators (or a test
//! receiver) on 127.0.0.1.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const SCHEME: &str = "schemes/shop-orders-to-erp.yaml";
const SCHEME_NAME: &str = "shop-orders-to-erp";

fn ferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("FERRY_STORE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("FERRY_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

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
    assert!(!std::path::Path::new(&store).exists(), "a refused set created the store");

    // A local time is read in the scheme's timezone (Asia/Shanghai).
    let set = ferry(&["checkpoint", "set", SCHEME, "2024-03-01 08:00:00", "--store", &store], &[]);
    assert_eq!(set.status.code(), Some(0), "{}", describe(&set));
    assert_eq!(checkpoint_of(&store), "2024-03-01T08:00:00+08:00");
    let shown = json(&ferry(&["checkpoint", "show", SCHEME, "--store", &store, "--json"], &[]));
    assert!(shown["lag_seconds"].as_i64().unwrap() > 0);

    // While a run holds the lock, set and clear are refused with exit 4.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (held_store, lock) = runtime.block_on(async {
        let s = ferry::store::Store::open(&store).await.unwrap();
        let lock = ferry::store::lock::acquire(&s, SCHEME_NAME, false).await.unwrap();
        (s, lock)
    });
    let refused = ferry(
        &["checkpoint", "set", SCHEME_NAME, "2024-04-01T00:00:00+08:00", "--store", &store],
        &[],
    );
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    assert!(text(&refused.stderr).contains("holds the run lock"), "{}", describe(&refused));
    let refused = ferry(&["checkpoint", "clear", SCHEME_NAME, "--store", &store], &[]);
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    assert_eq!(checkpoint_of(&store), "2024-03-01T08:00:00+08:00", "a refused edit changed it");
    drop(lock);
    runtime.block_on(held_store.close());

    let set = ferry(
        &["checkpoint", "set", SCHEME_NAME, "2024-04-01T00:00:00+08:00", "--store", &store],
        &[],
    );
    assert_eq!(set.status.code(), Some(0), "{}", describe(&set));
    assert!(text(&set.stdout).contains("→ 2024-04-01T00:00:00+08:00"), "{}", describe(&set));
    let cleared = ferry(&["checkpoint", "clear", SCHEME, "--store", &store], &[]);
    assert_eq!(cleared.status.code(), Some(0), "{}", describe(&cleared));
    assert!(checkpoint_of(&store).is_null());
}
