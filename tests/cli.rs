//! The `ferry` binary as a user runs it: exit codes, output formats, store commands,
//! and a run against the in-process simulator.

mod support;
use ferry::sim::shop::ShopConfig;
use std::path::Path;
use std::process::{Command, Output};
use support::{ferry, ferry_command, start_scripted, start_shop as start_sim, text};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// `ferry failures list --json` of the shop scheme's open failures.
fn list_shop_failures(store: &str) -> Output {
    ferry(
        &[
            "failures",
            "list",
            "--scheme",
            "shop-orders-to-erp",
            "--json",
            "--store",
            store,
        ],
        &[],
    )
}

const FIXTURE_ENV: &[(&str, &str)] = &[("SHOP_URL", "http://127.0.0.1:9"), ("SHOP_TOKEN", "t0k3n-value")];

#[test]
fn validate_ok_and_broken_with_exit_codes() {
    let ok = ferry(&["validate", "tests/fixtures/valid/minimal.yaml"], FIXTURE_ENV);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("minimal.yaml: ok"));

    let broken = ferry(
        &["validate", "tests/fixtures/invalid/29-many-problems-at-once.yaml"],
        FIXTURE_ENV,
    );
    assert_eq!(broken.status.code(), Some(2));
    let stderr = text(&broken.stderr);
    assert!(stderr.matches("error:").count() >= 5, "{stderr}");
    assert!(stderr.contains("29-many-problems-at-once.yaml:17:10"), "{stderr}");

    let json = ferry(
        &[
            "validate",
            "--format",
            "json",
            "tests/fixtures/invalid/06-unknown-connection.yaml",
            "tests/fixtures/valid/minimal.yaml",
        ],
        FIXTURE_ENV,
    );
    assert_eq!(json.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let first = &report["diagnostics"][0];
    assert_eq!(first["path"], "source.connection");
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(6), Some(15)));
    assert!(first["hint"].as_str().unwrap().contains("did you mean `shop`"));
}

#[test]
fn missing_file_and_bad_flags_are_usage_errors() {
    assert_eq!(ferry(&["validate", "no/such/file.yaml"], &[]).status.code(), Some(2));
    assert_eq!(ferry(&["run"], &[]).status.code(), Some(2));
    assert_eq!(ferry(&["frobnicate"], &[]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("f.db").display().to_string();
    let inverted = ferry(
        &[
            "run",
            "tests/fixtures/valid/minimal.yaml",
            "--since",
            "2024-02-01 00:00:00",
            "--until",
            "2024-01-01 00:00:00",
            "--store",
            &store,
        ],
        FIXTURE_ENV,
    );
    assert_eq!(inverted.status.code(), Some(2));
    assert!(text(&inverted.stderr).contains("--since must be earlier than --until"));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = ferry(&["schema"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("schema/scheme.schema.json").unwrap()).unwrap();
    assert_eq!(printed, committed);
    assert_eq!(printed["title"], "Ferry integration scheme");
}

/// `ferry schema | head -1`: a reader that leaves early is not a crash.
#[test]
fn closed_stdout_is_not_a_panic() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("schema")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn mapping_table_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("m.db").display().to_string();
    let set = |source: &str, target: &str, objects: &[&str]| {
        let mut args = vec![
            "mappings",
            "set",
            "--scheme",
            "s",
            "--source-id",
            source,
            "--target-id",
            target,
            "--store",
            &store,
        ];
        args.extend_from_slice(objects);
        ferry(&args, &[])
    };
    // A scheme with no mappings yet: its objects cannot be guessed.
    let unknown = set("A1", "T1", &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("--source-object and --target-object"));
    let objects = ["--source-object", "order", "--target-object", "SAL_SaleOrder"];
    assert_eq!(set("A1", "T1", &objects).status.code(), Some(0));
    // Later changes use the objects the scheme's mappings already have.
    assert_eq!(set("A2", "T2", &[]).status.code(), Some(0));
    assert_eq!(
        set("A1", "T9", &[]).status.code(),
        Some(0),
        "changing the target id of a source id"
    );

    let by_source = ferry(
        &[
            "mappings",
            "get",
            "--scheme",
            "s",
            "--source-id",
            "A1",
            "--json",
            "--store",
            &store,
        ],
        &[],
    );
    let rows: serde_json::Value = serde_json::from_slice(&by_source.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["target_id"], "T9");
    assert_eq!(
        (rows[0]["source_object"].as_str(), rows[0]["target_object"].as_str()),
        (Some("order"), Some("SAL_SaleOrder"))
    );

    let by_target = ferry(
        &[
            "mappings",
            "get",
            "--scheme",
            "s",
            "--target-id",
            "T2",
            "--json",
            "--store",
            &store,
        ],
        &[],
    );
    let rows: serde_json::Value = serde_json::from_slice(&by_target.stdout).unwrap();
    assert_eq!(rows[0]["source_id"], "A2");

    let list = ferry(&["mappings", "list", "--scheme", "s", "--store", &store], &[]);
    assert!(text(&list.stdout).contains("2 mapping(s)"), "{}", text(&list.stdout));

    let delete = [
        "mappings",
        "delete",
        "--scheme",
        "s",
        "--source-id",
        "A2",
        "--store",
        &store,
    ];
    assert_eq!(ferry(&delete, &[]).status.code(), Some(0));
    assert_eq!(
        ferry(&delete, &[]).status.code(),
        Some(1),
        "the second delete finds nothing"
    );
    let list = ferry(&["mappings", "list", "--scheme", "s", "--json", "--store", &store], &[]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_unwritable_store_is_a_clear_configuration_error() {
    let out = ferry(
        &[
            "mappings",
            "list",
            "--scheme",
            "s",
            "--store",
            "/proc/ferry-cannot-write-here/x.db",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/proc/ferry-cannot-write-here/x.db"), "{stderr}");
}

#[test]
fn run_reports_failed_rows_with_exit_code_1_and_keeps_secrets_out() {
    let token = "sekret-shop-token";
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 400,
        reject_every: Some(100),
        token: Some(token.into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("run.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", token),
    ];
    let out = ferry(
        &["run", "schemes/shop-orders-to-erp.yaml", "--store", &store, "--json"],
        &envs,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["read"].as_u64(),
            summary["created"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(400), Some(396), Some(4))
    );
    assert_eq!(sim.target_count(), 396);

    let failures = list_shop_failures(&store);
    let rows: serde_json::Value = serde_json::from_slice(&failures.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let show = ferry(&["failures", "show", &id, "--store", &store], &[]);
    assert!(
        text(&show.stdout).contains("stage       write"),
        "{}",
        text(&show.stdout)
    );

    // An operator closes the ledger: one skipped by id, the rest resolved with --all.
    let skip = ferry(&["failures", "skip", &id, "--store", &store], &[]);
    assert!(
        text(&skip.stdout).contains("1 failure(s) marked skipped"),
        "{}",
        text(&skip.stderr)
    );
    let resolve = ferry(
        &[
            "failures",
            "resolve",
            "--all",
            "--scheme",
            "shop-orders-to-erp",
            "--store",
            &store,
        ],
        &[],
    );
    assert!(
        text(&resolve.stdout).contains("3 failure(s) marked resolved"),
        "{}",
        text(&resolve.stdout)
    );
    let open = list_shop_failures(&store);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&open.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The secret appears nowhere: not in output, not in the store file.
    for output in [&out, &failures, &show] {
        assert!(!text(&output.stdout).contains(token) && !text(&output.stderr).contains(token));
    }
    let bytes = std::fs::read(Path::new(&store)).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(token));
}

#[test]
fn dry_run_prints_redacted_requests_and_writes_nothing() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 150,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let scheme = std::fs::read_to_string("schemes/shop-orders-to-erp.yaml")
        .unwrap()
        .replace(
            "base_url: \"${ERP_URL:-http://127.0.0.1:8080}\"",
            "base_url: \"${ERP_URL}\"\n    headers: {X-Api-Key: \"${ERP_KEY}\"}",
        );
    let dir = tempfile::tempdir().unwrap();
    let scheme_path = dir.path().join("s.yaml");
    std::fs::write(&scheme_path, scheme).unwrap();
    let store = dir.path().join("dry.db");
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
        ("ERP_KEY", "erp-key-123456"),
    ];
    let out = ferry(
        &[
            "run",
            scheme_path.to_str().unwrap(),
            "--dry-run",
            "--store",
            store.to_str().unwrap(),
        ],
        &envs,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("POST ") && stdout.contains("/orders/batch"), "{stdout}");
    assert!(stdout.contains("X-Api-Key: ***"), "{stdout}");
    assert!(!stdout.contains("erp-key-123456"));
    assert!(stdout.contains("dry run: nothing written"));
    assert_eq!(sim.target_count(), 0);
    assert!(!store.exists(), "a dry run must not create the store");

    // A key from --env-file is a secret like one from the environment.
    let env_file = dir.path().join("run.env");
    std::fs::write(&env_file, "ERP_KEY='erp-key-from-file-987'\n").unwrap();
    let out = ferry(
        &[
            "run",
            scheme_path.to_str().unwrap(),
            "--dry-run",
            "--env-file",
            env_file.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        &envs[..3],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("X-Api-Key: ***"), "{stdout}");
    assert!(!stdout.contains("erp-key-from-file-987") && !text(&out.stderr).contains("erp-key-from-file-987"));
}

#[test]
fn a_second_run_of_a_locked_scheme_exits_4_and_sigterm_exits_143() {
    let (rt, sim, url) = start_sim(ShopConfig {
        records: 3000,
        token: Some("demo-token".into()),
        faults: ferry::sim::Faults {
            latency_ms: 30,
            ..Default::default()
        },
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("lock.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
    ];

    // Hold the lock as a running scheme would.
    let lock = rt.block_on(async {
        let store = ferry::store::Store::open(&store_path).await.unwrap();
        ferry::store::lock::acquire(&store, "shop-orders-to-erp", false)
            .await
            .unwrap()
    });
    let refused = ferry(
        &["run", "schemes/shop-orders-to-erp.yaml", "--store", &store_path],
        &envs,
    );
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("--wait"));
    drop(lock);

    // SIGTERM: the run stops, commits what it wrote, and exits 143 (stopped on request, no failure).
    let mut child = Command::new(BIN)
        .args([
            "run",
            "schemes/shop-orders-to-erp.yaml",
            "--store",
            &store_path,
            "--quiet",
        ])
        .envs(envs)
        .env_remove("FERRY_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ferry did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(143));
    let written = sim.target_count();
    assert!(written < 20_000, "stopped before the end");
    let mappings = ferry(
        &[
            "mappings",
            "list",
            "--scheme",
            "shop-orders-to-erp",
            "--limit",
            "10000",
            "--json",
            "--store",
            &store_path,
        ],
        &[],
    );
    let rows: serde_json::Value = serde_json::from_slice(&mappings.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        written,
        "every written row has its mapping"
    );
}

/// Secrets stay out of everything ferry writes: logs (debug, JSON), errors, the failure
/// ledger, dry-run output, the summary and the store file.
#[test]
fn secrets_never_leave_the_process() {
    let shop_token = "shop-sekret-4711";
    let erp_key = "erp-sekret-0815";
    let (_rt, _sim, url) = start_sim(ShopConfig {
        records: 300,
        reject_every: Some(50),
        token: Some(shop_token.into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    // The ERP key travels in a header, in the create URL's query and inside every row.
    let scheme = std::fs::read_to_string("schemes/shop-orders-to-erp.yaml")
        .unwrap()
        .replace(
            "    base_url: \"${ERP_URL:-http://127.0.0.1:8080}\"\n",
            "    base_url: \"${ERP_URL:-http://127.0.0.1:8080}\"\n    headers: {X-Erp-Key: \"${ERP_KEY}\"}\n",
        )
        .replace(
            "path: /orders/batch,",
            "path: /orders/batch, query: {key: \"${ERP_KEY}\"},",
        )
        .replace(
            "    FShop: $.shop_code\n",
            "    FShop: $.shop_code\n    FNote: \"${ERP_KEY}\"\n",
        );
    assert!(scheme.contains("FNote") && scheme.contains("query: {key:"));
    let scheme_file = dir.path().join("secret.yaml");
    std::fs::write(&scheme_file, scheme).unwrap();
    let scheme_path = scheme_file.display().to_string();
    let store = dir.path().join("secret.db").display().to_string();
    let run = |erp_url: &str, extra: &[&str]| {
        let mut args = vec![
            "--log-format",
            "json",
            "run",
            scheme_path.as_str(),
            "--store",
            &store,
            "--json",
        ];
        args.extend_from_slice(extra);
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env("FERRY_LOG", "debug")
            .env("SHOP_URL", &url)
            .env("ERP_URL", erp_url)
            .env("SHOP_TOKEN", shop_token)
            .env("ERP_KEY", erp_key);
        command.output().unwrap()
    };

    let dry = run(&url, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains("FNote"), "the dry run shows the rows");
    let written = run(&url, &[]);
    assert_eq!(written.status.code(), Some(1), "{}", text(&written.stderr));
    // The ERP is down: every write fails with a transport error naming the URL.
    let down = run("http://127.0.0.1:9", &["--since", "2023-12-31 00:00:00"]);
    assert!(text(&down.stderr).contains("127.0.0.1:9") || text(&down.stdout).contains("127.0.0.1:9"));

    let failures = list_shop_failures(&store);
    let listed: serde_json::Value = serde_json::from_slice(&failures.stdout).unwrap();
    assert!(!listed.as_array().unwrap().is_empty());
    let first = listed[0]["id"].as_i64().unwrap().to_string();
    let show = ferry(&["failures", "show", &first, "--json", "--store", &store], &[]);

    for (what, output) in [
        ("dry run", &dry),
        ("run", &written),
        ("failing run", &down),
        ("failures list", &failures),
        ("failures show", &show),
    ] {
        for secret in [shop_token, erp_key] {
            assert!(!text(&output.stdout).contains(secret), "{what} stdout shows {secret}");
            assert!(!text(&output.stderr).contains(secret), "{what} logs show {secret}");
        }
    }
    let bytes = std::fs::read(&store).unwrap();
    let wal = std::fs::read(format!("{store}-wal")).unwrap_or_default();
    for secret in [shop_token, erp_key] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the store file holds {secret}"
        );
        assert!(
            !String::from_utf8_lossy(&wal).contains(secret),
            "the store's WAL holds {secret}"
        );
    }
}

/// `ferry failures retry` sends the named ledger rows again without reading the source.
#[test]
fn failures_retry_sends_named_rows_again() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 200,
        reject_every: Some(50),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("retry.db").display().to_string();
    let envs = [("SHOP_URL", url.as_str()), ("ERP_URL", url.as_str())];
    let scheme = "schemes/shop-orders-to-erp.yaml";
    let first = ferry(&["run", scheme, "--store", &store, "--json"], &envs);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let list = || serde_json::from_slice::<serde_json::Value>(&list_shop_failures(&store).stdout).unwrap();
    let open = list();
    assert_eq!(open.as_array().unwrap().len(), 4);

    let usage = ferry(&["failures", "retry", scheme, "--store", &store], &envs);
    assert_eq!(usage.status.code(), Some(2), "naming nothing is a usage error");

    sim.set_reject_every(None);
    let id = open[0]["id"].as_i64().unwrap().to_string();
    let one = ferry(&["failures", "retry", scheme, &id, "--store", &store, "--json"], &envs);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(
        (summary["created"].as_u64(), summary["pages"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(list().as_array().unwrap().len(), 3);

    let rest = ferry(
        &["failures", "retry", scheme, "--all", "--store", &store, "--json"],
        &envs,
    );
    assert_eq!(rest.status.code(), Some(0), "{}", text(&rest.stderr));
    assert_eq!(list().as_array().unwrap().len(), 0);
    assert_eq!(sim.target_count(), 200);
    assert_eq!(sim.duplicate_creates(), 0);
}

/// Runs ferry without the listed variables, whatever the test process has.
fn ferry_without(args: &[&str], envs: &[(&str, &str)], removed: &[&str]) -> Output {
    let mut command = ferry_command(args, &[]);
    for name in removed {
        command.env_remove(name);
    }
    command.envs(envs.iter().copied());
    command.output().expect("run ferry")
}

/// CI has no secrets: `--no-env` checks the scheme anyway, noting each missing variable.
#[test]
fn validate_without_the_environment_for_ci() {
    let unset = ["SHOP_URL", "SHOP_TOKEN"];
    let minimal = "tests/fixtures/valid/minimal.yaml";
    let plain = ferry_without(&["validate", minimal], &[], &unset);
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain.stderr));

    let out = ferry_without(&["validate", "--no-env", minimal], &[], &unset);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("minimal.yaml: ok (2 note(s))"),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: environment variable `SHOP_URL` is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("minimal.yaml:3:38"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    let json = ferry_without(&["validate", "--no-env", "--format", "json", minimal], &[], &unset);
    assert_eq!(json.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["diagnostics"][0]["severity"], "note");

    // Real problems still fail the check.
    let broken = ferry_without(
        &[
            "validate",
            "--no-env",
            "tests/fixtures/invalid/36-unknown-page-member.yaml",
        ],
        &[],
        &unset,
    );
    assert_eq!(broken.status.code(), Some(2));
    assert!(text(&broken.stderr).contains("unknown member `sise` of `page`"));
}

#[test]
fn env_file_supplies_variables_and_its_secrets_stay_masked() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("ci.env");
    std::fs::write(
        &env_file,
        "# CI stand-ins\nSHOP_URL=http://127.0.0.1:9\nexport SHOP_TOKEN=\"env-file-secret-42\"\n",
    )
    .unwrap();
    let env_arg = env_file.to_str().unwrap();
    let unset = ["SHOP_URL", "SHOP_TOKEN"];
    let ok = ferry_without(
        &["validate", "--env-file", env_arg, "tests/fixtures/valid/minimal.yaml"],
        &[],
        &unset,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));

    // The token, put where a duration belongs, is reported without its value.
    let scheme = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml")
        .unwrap()
        .replace(
            "headers: {Authorization",
            "timeout: \"${SHOP_TOKEN}\", headers: {Authorization",
        );
    let scheme_path = dir.path().join("leak.yaml");
    std::fs::write(&scheme_path, scheme).unwrap();
    for format in ["text", "json"] {
        let out = ferry_without(
            &[
                "validate",
                "--env-file",
                env_arg,
                "--format",
                format,
                scheme_path.to_str().unwrap(),
            ],
            &[],
            &unset,
        );
        assert_eq!(out.status.code(), Some(2));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(all.contains("timeout"), "{all}");
        assert!(!all.contains("env-file-secret-42"), "{all}");
        assert!(all.contains("***"), "{all}");
    }

    // Exported variables win over the file.
    let exported = ferry_without(
        &["validate", "--env-file", env_arg, scheme_path.to_str().unwrap()],
        &[("SHOP_TOKEN", "30s")],
        &["SHOP_URL"],
    );
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported.stderr));

    // A malformed line is a configuration error at its line.
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "SHOP_URL=http://x\nnot a pair\n").unwrap();
    let out = ferry_without(
        &[
            "validate",
            "--env-file",
            bad.to_str().unwrap(),
            "tests/fixtures/valid/minimal.yaml",
        ],
        &[],
        &unset,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.env:2:1"), "{stderr}");
    assert!(stderr.contains("expected `KEY=VALUE`"), "{stderr}");
    let missing = ferry(
        &[
            "validate",
            "--env-file",
            "no/such.env",
            "tests/fixtures/valid/minimal.yaml",
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read the environment file"));
}

#[test]
fn strict_turns_warnings_into_errors_for_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let scheme = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml")
        .unwrap()
        .replace(
            "FBillNo: \"<< order_no >>\"",
            "FBillNo: \"<< order_no >>\"\n    W: \"<< page.number >>\"",
        );
    let path = dir.path().join("warn.yaml");
    std::fs::write(&path, scheme).unwrap();
    let path = path.to_str().unwrap();
    let lenient = ferry(&["validate", path], FIXTURE_ENV);
    assert_eq!(lenient.status.code(), Some(0), "{}", text(&lenient.stderr));
    assert!(text(&lenient.stdout).contains("ok (1 warning(s))"));

    let strict = ferry(&["validate", "--strict", path], FIXTURE_ENV);
    assert_eq!(strict.status.code(), Some(2));
    assert!(text(&strict.stderr).contains("(an error under --strict)"));
    assert!(text(&strict.stdout).contains("1 error(s)"), "{}", text(&strict.stdout));

    let store = dir.path().join("s.db");
    let run = ferry(
        &["run", path, "--strict", "--dry-run", "--store", store.to_str().unwrap()],
        FIXTURE_ENV,
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("is not valid; nothing was run"));
}

/// `--format json` is the one spelling of machine output; `--json` stays as its alias.
#[test]
fn every_machine_output_takes_format_json_and_the_json_alias() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("f.db");
    let store = store.to_str().unwrap();
    let set = ferry(
        &[
            "mappings",
            "set",
            "--scheme",
            "s",
            "--source-id",
            "A",
            "--target-id",
            "1",
            "--source-object",
            "o",
            "--target-object",
            "t",
            "--store",
            store,
        ],
        &[],
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    let commands: [&[&str]; 4] = [
        &["mappings", "list", "--scheme", "s", "--store", store],
        &["mappings", "get", "--scheme", "s", "--source-id", "A", "--store", store],
        &["failures", "list", "--store", store],
        &["validate", "tests/fixtures/valid/minimal.yaml"],
    ];
    for command in commands {
        let mut by_format = command.to_vec();
        by_format.extend(["--format", "json"]);
        let mut by_alias = command.to_vec();
        by_alias.push("--json");
        let a = ferry(&by_format, FIXTURE_ENV);
        let b = ferry(&by_alias, FIXTURE_ENV);
        assert_eq!(a.status.code(), Some(0), "{command:?}: {}", text(&a.stderr));
        let parsed: serde_json::Value = serde_json::from_slice(&a.stdout).expect("JSON");
        assert_eq!(a.stdout, b.stdout, "{command:?}");
        assert!(!parsed.is_null());
        let mut both = command.to_vec();
        both.extend(["--json", "--format", "text"]);
        assert_eq!(
            ferry(&both, FIXTURE_ENV).status.code(),
            Some(2),
            "{command:?}: contradicting flags"
        );
    }
    let show = ferry(&["failures", "show", "1", "--format", "json", "--store", store], &[]);
    // An unknown id is a usage error (exit 2), and the flag is accepted.
    assert_eq!(show.status.code(), Some(2), "{}", text(&show.stderr));
    assert!(
        text(&show.stderr).contains("no failure with id 1"),
        "{}",
        text(&show.stderr)
    );
    for command in [&["run", "--help"][..], &["failures", "retry", "--help"][..]] {
        let help = text(&ferry(command, &[]).stdout);
        assert!(help.contains("--format <FORMAT>") && help.contains("--json"), "{help}");
    }
}

/// A generic source of `items` with a change time, and a batch target at `/write`.
const ITEMS_SCHEME: &str = r#"
name: items
connections:
  src: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}, in_flight: 1}
  dst: {connector: http, base_url: "${SIM_URL}", retry: {attempts: 1}}
source:
  connection: src
  request: {method: GET, path: /items, query: {page: "<< page.number >>", from: "<< window.start | datetime >>"}}
  records: $.items[*]
  pagination: {style: page_number, start: 1, size: 2, stop: short_page}
  incremental: {field: changed, start: "2024-01-01 00:00:00", window: 3650d}
  id: "<< code >>"
target:
  connection: dst
  batch: 10
  create:
    request: {method: POST, path: /write, body: {rows: "<< rows >>"}}
    response: {success: "<< body.code == 0 >>"}
  fields:
    FNumber: "<< code >>"
    FCustomer: "<< customer_code >>"
"#;

fn items_routes(items: serde_json::Value) -> Vec<(&'static str, Vec<ferry::sim::scripted::Reply>)> {
    use ferry::sim::scripted::Reply;
    vec![
        ("/items", vec![Reply::json(serde_json::json!({ "items": items }))]),
        ("/write", vec![Reply::json(serde_json::json!({"code": 0}))]),
    ]
}

#[test]
fn check_probes_the_source_reports_what_would_fail_and_writes_nothing() {
    let items = serde_json::json!([
        {"code": "A", "customer_code": "C1", "changed": "2024-03-01 10:00:00"},
        {"code": "B", "customer": "C2", "changed": "2024-03-01 11:00:00"},
    ]);
    let (_rt, sim, url) = start_scripted(items_routes(items));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, ITEMS_SCHEME).unwrap();
    let envs = [("SIM_URL", url.as_str())];

    let out = ferry(&["check", broken.to_str().unwrap()], &envs);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL  missing field `customer_code` in 1 record(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("e.g. record `B`: target.fields.FCustomer: missing field `customer_code`")
            && stdout.contains("the record has: code, customer, changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("time  newest `changed`: 2024-03-01 11:00:00, now "),
        "{stdout}"
    );
    assert!(stdout.contains("result: 1 of 2 record(s) would fail"), "{stdout}");

    let json = ferry(
        &["check", broken.to_str().unwrap(), "--format", "json", "--limit", "1"],
        &envs,
    );
    assert_eq!(json.status.code(), Some(0), "the first record alone renders");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (report["records"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(report["times"]["field"], "changed");

    let fixed = dir.path().join("fixed.yaml");
    std::fs::write(
        &fixed,
        ITEMS_SCHEME.replace("<< customer_code >>", "<< customer_code | default(customer) >>"),
    )
    .unwrap();
    let ok = ferry(&["check", fixed.to_str().unwrap()], &envs);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert!(text(&ok.stdout).contains("result: ok: all 2 record(s) render"));
    assert_eq!(sim.hits("/write"), 0, "check never writes to the target");
    assert!(!dir.path().join("ferry.db").exists() && !Path::new("ferry.db").exists());

    let down = ferry(
        &["check", fixed.to_str().unwrap()],
        &[("SIM_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(down.status.code(), Some(3));
    assert!(
        text(&down.stderr).contains("the source could not be read"),
        "{}",
        text(&down.stderr)
    );

    let invalid = ferry(
        &["check", "tests/fixtures/invalid/06-unknown-connection.yaml"],
        FIXTURE_ENV,
    );
    assert_eq!(invalid.status.code(), Some(2));
}

#[test]
fn validate_sample_reports_each_missing_field_at_its_template() {
    let dir = tempfile::tempdir().unwrap();
    let scheme = dir.path().join("items.yaml");
    std::fs::write(&scheme, ITEMS_SCHEME).unwrap();
    let sample = dir.path().join("sample.json");
    std::fs::write(
        &sample,
        r#"[{"code": "A", "customer_code": "C1", "changed": "2024-03-01 10:00:00"},
            {"code": "B", "customer": "C2", "changed": "2024-03-01 11:00:00"}]"#,
    )
    .unwrap();
    let envs = [("SIM_URL", "http://127.0.0.1:9")];
    let scheme_arg = scheme.to_str().unwrap();

    let plain = ferry(&["validate", scheme_arg], &envs);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));

    let out = ferry(&["validate", scheme_arg, "--sample", sample.to_str().unwrap()], &envs);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: missing field `customer_code`")
            && stderr.contains("sample record 2 of 2 in")
            && stderr.contains("items.yaml:21:20")
            && stderr.contains("= field: target.fields.FCustomer")
            && stderr.contains("did you mean `customer`?"),
        "{stderr}"
    );

    let json = ferry(
        &[
            "validate",
            scheme_arg,
            "--sample",
            sample.to_str().unwrap(),
            "--format",
            "json",
        ],
        &envs,
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["diagnostics"][0]["path"], "target.fields.FCustomer");
    assert_eq!(report["diagnostics"][0]["line"], 21);

    std::fs::write(
        &sample,
        r#"{"code": "A", "customer_code": "C1", "changed": "2024-03-01 10:00:00"}"#,
    )
    .unwrap();
    let good = ferry(&["validate", scheme_arg, "--sample", sample.to_str().unwrap()], &envs);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));

    std::fs::write(&sample, "{not json").unwrap();
    let bad = ferry(&["validate", scheme_arg, "--sample", sample.to_str().unwrap()], &envs);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("the sample is not JSON"));
}

#[test]
fn dry_run_says_which_field_a_failing_record_lacks() {
    let items = serde_json::json!([
        {"code": "A", "customer_code": "C1", "changed": "2024-03-01 10:00:00"},
        {"code": "B", "customer": "C2", "changed": "2024-03-01 11:00:00"},
    ]);
    let (_rt, sim, url) = start_scripted(items_routes(items));
    let dir = tempfile::tempdir().unwrap();
    let scheme = dir.path().join("items.yaml");
    // One page only, so the run ends.
    std::fs::write(&scheme, ITEMS_SCHEME.replace("size: 2,", "size: 5,")).unwrap();
    let store = dir.path().join("dry.db");
    let out = ferry(
        &[
            "run",
            scheme.to_str().unwrap(),
            "--dry-run",
            "--store",
            store.to_str().unwrap(),
        ],
        &[("SIM_URL", url.as_str())],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("this record would fail")
            && stderr.contains("target.fields.FCustomer: missing field `customer_code`")
            && stderr.contains("the record has: code, customer, changed"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("customer_code missing in 1 record"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(sim.hits("/write"), 0);
}

#[test]
fn a_run_warns_about_records_outside_their_window_and_counts_them() {
    // The source ignores the window: a second window gets the first one's records again.
    let items = serde_json::json!([
        {"code": "A", "customer_code": "C1", "changed": "2024-03-01 10:00:00"},
    ]);
    let (_rt, _sim, url) = start_scripted(items_routes(items));
    let dir = tempfile::tempdir().unwrap();
    let scheme = dir.path().join("items.yaml");
    std::fs::write(&scheme, ITEMS_SCHEME.replace("window: 3650d", "window: 1d")).unwrap();
    let store = dir.path().join("run.db").display().to_string();
    let out = ferry(
        &[
            "run",
            scheme.to_str().unwrap(),
            "--store",
            &store,
            "--since",
            "2024-03-01 00:00:00",
            "--until",
            "2024-03-03 00:00:00",
        ],
        &[("SIM_URL", url.as_str())],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: 1 record(s) changed outside the window"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "record `A`: `changed` `2024-03-01 10:00:00` is before the window it was read in, \
             [2024-03-02 00:00:00, 2024-03-03 00:00:00) Asia/Shanghai"
        ),
        "{stderr}"
    );
}

/// Names of every built-in connector.
fn connector_names() -> Vec<&'static str> {
    ferry::protocol::CONNECTORS.iter().map(|c| c.name).collect()
}

/// The `env:` keys of a test file `ferry init` wrote.
fn test_file_variables(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let loaded = ferry::scheme::yaml::load(&text, &|_| None);
    loaded.value["env"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn init_writes_a_valid_generic_scheme_and_its_test_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes");
    let schemes_arg = schemes.display().to_string();
    let out = ferry(&["init", "--dir", &schemes_arg], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scheme = schemes.join("my-scheme.yaml");
    let test = schemes.join("tests").join("my-scheme.test.yaml");
    let stdout = text(&out.stdout);
    for wanted in [
        format!("wrote {}", scheme.display()),
        format!("wrote {}", test.display()),
        format!("ferry validate {}", scheme.display()),
        format!("ferry check {}", scheme.display()),
        format!("ferry run --dry-run {}", scheme.display()),
        "SHOP_TOKEN".to_string(),
    ] {
        assert!(stdout.contains(&wanted), "`{wanted}` missing from:\n{stdout}");
    }
    let scheme_text = std::fs::read_to_string(&scheme).unwrap();
    assert!(scheme_text.contains("name: my-scheme\n"), "{scheme_text}");
    assert!(scheme_text.contains("CHANGE"), "{scheme_text}");
    let valid = ferry(
        &["validate", "--no-env", "--strict", &scheme.display().to_string()],
        &[],
    );
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid.stderr));

    // The test file names its scheme relative to itself and stands in for every variable.
    let test_text = std::fs::read_to_string(&test).unwrap();
    assert!(test_text.contains("scheme: ../my-scheme.yaml\n"), "{test_text}");
    assert!(
        test_text.contains("runs: []\n") && test_text.contains("ferry test --record"),
        "{test_text}"
    );
    assert_eq!(test_file_variables(&test), ["SHOP_URL", "SHOP_TOKEN", "ERP_URL"]);

    // A second init refuses, names the file, and leaves the edited scheme alone.
    std::fs::write(&scheme, "# edited by hand\n").unwrap();
    let again = ferry(&["init", "--dir", &schemes_arg], &[]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("already exist") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(stderr.contains(&scheme.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read_to_string(&scheme).unwrap(), "# edited by hand\n");
    let forced = ferry(&["init", "--dir", &schemes_arg, "--force"], &[]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert_eq!(std::fs::read_to_string(&scheme).unwrap(), scheme_text);
}

#[test]
fn init_for_every_connector_as_source_and_as_target_passes_strict_validation() {
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes");
    let schemes_arg = schemes.display().to_string();
    let mut written = Vec::new();
    for connector in connector_names() {
        for (flag, name) in [
            ("--connector", format!("{connector}-to-http")),
            ("--target-connector", format!("http-to-{connector}")),
        ] {
            if connector == "http" && flag == "--target-connector" {
                continue; // the same generic scheme as `--connector http`
            }
            let out = ferry(&["init", flag, connector, "--dir", &schemes_arg], &[]);
            assert_eq!(out.status.code(), Some(0), "{flag} {connector}: {}", text(&out.stderr));
            let path = schemes.join(format!("{name}.yaml"));
            let path = if connector == "http" {
                schemes.join("my-scheme.yaml")
            } else {
                path
            };
            assert!(path.is_file(), "{flag} {connector}: no {}", path.display());
            written.push(path.display().to_string());
        }
    }
    assert_eq!(written.len(), 2 * connector_names().len() - 1);
    let mut args = vec!["validate", "--no-env", "--strict"];
    args.extend(written.iter().map(String::as_str));
    let valid = ferry(&args, &[]);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid.stderr));
    assert_eq!(text(&valid.stdout).matches(": ok").count(), written.len());
}

#[test]
fn init_refuses_an_unknown_connector_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes").display().to_string();
    for (args, suggestion) in [
        (vec!["--connector", "guanyii"], "did you mean `guanyi`?"),
        (vec!["--target-connector", "k3cloud"], "did you mean `kingdee-k3cloud`?"),
    ] {
        let mut all = vec!["init", "--dir", schemes.as_str()];
        all.extend(args);
        let out = ferry(&all, &[]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("unknown connector") && stderr.contains(suggestion),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("schemes").exists(),
        "nothing is written for a bad command"
    );
    let bad_name = ferry(&["init", "../escape", "--dir", &schemes], &[]);
    assert_eq!(bad_name.status.code(), Some(2));
}

#[test]
fn the_generic_scheme_runs_against_the_shop_simulator() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 120,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes");
    let init = ferry(&["init", "--dir", &schemes.display().to_string()], &[]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
    let store = dir.path().join("ferry.db").display().to_string();
    let scheme = schemes.join("my-scheme.yaml").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
    ];
    let run = ferry(
        &[
            "run",
            &scheme,
            "--store",
            &store,
            "--json",
            "--since",
            "2024-01-01 00:00:00",
            "--until",
            "2024-01-03 00:00:00",
        ],
        &envs,
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(summary["created"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(sim.target_count() as u64, summary["created"].as_u64().unwrap());
}

/// The seed flows' simulators, which together serve every built-in connector, and the
/// variables (named as `ferry init` names them) that point a scheme at them.
struct VendorSims {
    runtime: tokio::runtime::Runtime,
    running: Vec<ferry::sim::flows::Running>,
}

impl VendorSims {
    fn start() -> VendorSims {
        use ferry::sim::flows::{self, Flow};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime.block_on(async {
            let mut all = Vec::new();
            for flow in [
                Flow::GuanyiToK3Cloud,
                Flow::JdyToJackyun,
                Flow::SimplyToK3Cloud,
                Flow::ErpStandardToFxiaoke,
            ] {
                all.push(flows::start(flow).await.unwrap());
            }
            all
        });
        VendorSims { runtime, running }
    }

    fn value(&self, name: &str) -> Option<String> {
        self.running.iter().find_map(|running| running.env()(name))
    }

    /// Records a target simulator holds that were written through its API.
    fn written(&self, connector: &str) -> usize {
        let sims = self.running.iter().map(|r| &r.sims);
        let mut counts = sims.filter_map(|s| match connector {
            "guanyi" => s.guanyi.as_ref().map(|sim| sim.written().len()),
            "kingdee-k3cloud" => s.k3cloud.as_ref().map(|sim| sim.written().len()),
            "kingdee-jdy" => s.jdy.as_ref().map(|sim| sim.written().len()),
            "jackyun" => s.jackyun.as_ref().map(|sim| sim.written().len()),
            "simply-crm" => s.simply.as_ref().map(|sim| sim.written().len()),
            "fxiaoke" => s.fxiaoke.as_ref().map(|sim| sim.written().len()),
            "erp-standard" => s.erp_standard.as_ref().map(|sim| sim.written().len()),
            _ => None,
        });
        counts.next().unwrap_or_default()
    }

    fn shop_code(&self) -> String {
        let guanyi = self.running.iter().find_map(|r| r.sims.guanyi.clone()).unwrap();
        guanyi.shop(1).unwrap()["code"].as_str().unwrap().to_string()
    }
}

impl Drop for VendorSims {
    fn drop(&mut self) {
        let running = std::mem::take(&mut self.running);
        self.runtime.block_on(async {
            for r in running {
                r.shutdown().await;
            }
        });
    }
}

/// `ferry init --connector X`: the generated list request, paging and window read records
/// from X's simulator (`ferry check` reads the source only and renders every record).
#[test]
fn each_generated_source_reads_its_vendors_simulator() {
    let sims = VendorSims::start();
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes");
    for connector in connector_names().into_iter().filter(|c| *c != "http") {
        let init = ferry(
            &[
                "init",
                "--connector",
                connector,
                "--dir",
                &schemes.display().to_string(),
            ],
            &[],
        );
        assert_eq!(init.status.code(), Some(0), "{connector}: {}", text(&init.stderr));
        let name = format!("{connector}-to-http");
        let variables = test_file_variables(&schemes.join("tests").join(format!("{name}.test.yaml")));
        let values: Vec<(String, String)> = variables
            .iter()
            .map(|var| {
                let value = sims.value(var).unwrap_or_else(|| match var.as_str() {
                    "TARGET_API_URL" => "http://127.0.0.1:9".to_string(),
                    "TARGET_API_TOKEN" => "unused".to_string(),
                    other => panic!("{connector}: no simulator value for {other}"),
                });
                (var.clone(), value)
            })
            .collect();
        let envs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let scheme = schemes.join(format!("{name}.yaml")).display().to_string();
        let mut args = vec!["check", scheme.as_str(), "--format", "json"];
        if connector == "erp-standard" {
            // Its simulator's orders were all changed on 2023-12-31, before the scheme's `start`.
            args.extend(["--since", "2023-12-30 00:00:00", "--until", "2024-01-01 00:00:00"]);
        }
        let check = ferry(&args, &envs);
        let report = text(&check.stdout);
        assert_eq!(
            check.status.code(),
            Some(0),
            "{connector}: {report}\n{}",
            text(&check.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert!(
            report["records"].as_u64().unwrap_or_default() > 0,
            "{connector} read nothing: {report}"
        );
        assert_eq!(report["failed"], 0, "{connector}: {report}");
    }
}

/// `ferry init --target-connector X`: shop orders (from the shop simulator) are written
/// to X's simulator by the generated target, which signs, logs in and shapes its creates
/// and updates the way X's simulator checks them.
#[test]
fn each_generated_target_writes_to_its_vendors_simulator() {
    let sims = VendorSims::start();
    let (_shop_rt, shop, shop_url) = start_sim(ShopConfig {
        records: 5,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let schemes = dir.path().join("schemes");
    let shop_code = sims.shop_code();
    let targets: Vec<&str> = connector_names().into_iter().filter(|c| *c != "http").collect();
    let run = |connector: &str| -> (Option<i32>, serde_json::Value) {
        let name = format!("http-to-{connector}");
        let variables = test_file_variables(&schemes.join("tests").join(format!("{name}.test.yaml")));
        let values: Vec<(String, String)> = variables
            .iter()
            .filter(|var| *var != "SIMPLY_ASSIGNED_USER_ID") // its default names the simulator's admin
            .map(|var| {
                let value = sims.value(var).unwrap_or_else(|| match var.as_str() {
                    "SHOP_URL" => shop_url.clone(),
                    "SHOP_TOKEN" => "demo-token".to_string(),
                    "GUANYI_SHOP_CODE" => shop_code.clone(),
                    "JDY_SUPPLIER_NUMBER" => "GYS0001".to_string(),
                    other => panic!("{connector}: no simulator value for {other}"),
                });
                (var.clone(), value)
            })
            .collect();
        let envs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let scheme = schemes.join(format!("{name}.yaml")).display().to_string();
        let store = dir.path().join(format!("{connector}.db")).display().to_string();
        let out = ferry(
            &[
                "run",
                &scheme,
                "--store",
                &store,
                "--json",
                "--since",
                "2024-01-01 00:00:00",
                "--until",
                "2024-01-02 00:00:00",
            ],
            &envs,
        );
        let summary = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{connector}: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code(), summary)
    };
    for connector in &targets {
        let init = ferry(
            &[
                "init",
                "--target-connector",
                connector,
                "--dir",
                &schemes.display().to_string(),
            ],
            &[],
        );
        assert_eq!(init.status.code(), Some(0), "{connector}: {}", text(&init.stderr));
        let (code, summary) = run(connector);
        assert_eq!(summary["read"], 5, "{connector}: {summary}");
        if *connector == "kingdee-jdy" {
            // Shop order lines name no Xingchen material: each bill is refused and parked.
            assert_eq!(
                (code, &summary["failed"]),
                (Some(1), &serde_json::json!(5)),
                "{connector}: {summary}"
            );
            continue;
        }
        assert_eq!(code, Some(0), "{connector}: {summary}");
        assert_eq!(summary["created"], 5, "{connector}: {summary}");
        assert_eq!(sims.written(connector), 5, "{connector}: {summary}");
    }
    // One order changes: each target updates its record (Jackyun, which has no update
    // here, counts it as skipped).
    let changed_at = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    assert!(shop.touch(2, changed_at));
    for connector in targets.iter().filter(|c| **c != "kingdee-jdy") {
        let (code, summary) = run(connector);
        assert_eq!(code, Some(0), "{connector}: {summary}");
        let (updated, skipped) = if *connector == "jackyun" { (0, 1) } else { (1, 0) };
        assert_eq!(
            (&summary["created"], &summary["updated"], &summary["skipped"]),
            (
                &serde_json::json!(0),
                &serde_json::json!(updated),
                &serde_json::json!(skipped)
            ),
            "{connector}: {summary}"
        );
    }
}

#[test]
fn init_points_the_modeline_at_the_nearest_schema_file() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("ops").join("schemes");
    let deep_arg = deep.display().to_string();
    // No schema anywhere above: the scheme says how to get one instead of a dead modeline.
    let out = ferry(&["init", "--dir", &deep_arg], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let without = std::fs::read_to_string(deep.join("my-scheme.yaml")).unwrap();
    assert!(!without.starts_with("# yaml-language-server"), "{without}");
    assert!(
        without.contains("ferry schema > schema/scheme.schema.json"),
        "{without}"
    );

    std::fs::create_dir_all(dir.path().join("schema")).unwrap();
    std::fs::write(dir.path().join("schema").join("scheme.schema.json"), "{}").unwrap();
    let out = ferry(&["init", "--dir", &deep_arg, "--force"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let with = std::fs::read_to_string(deep.join("my-scheme.yaml")).unwrap();
    let first = with.lines().next().unwrap();
    assert_eq!(first, "# yaml-language-server: $schema=../../schema/scheme.schema.json");
    let target = first.split_once("$schema=").unwrap().1;
    assert!(
        deep.join(target).is_file(),
        "the modeline resolves from the scheme's directory"
    );
}
