//! Scheduled operation as an operator meets it: systemd units, the exit-code contract,
//! structured logs, the metrics textfile, run history and status, and a command line that
//! never surprises a timer (read-only commands create nothing, hints name the store).
//! Every network peer is one of Ferry's simulators on 127.0.0.1.

mod support;
use ferry::sim::shop::ShopConfig;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{describe, ferry, ferry_command as command, json, start_shop as start_sim, text};

const SCHEME: &str = "schemes/shop-orders-to-erp.yaml";
const SCHEME_NAME: &str = "shop-orders-to-erp";
/// Nothing listens there: connections are refused at once.
const DOWN: &str = "http://127.0.0.1:9";

fn shop_envs<'a>(source: &'a str, target: &'a str) -> [(&'static str, &'a str); 3] {
    [("SHOP_URL", source), ("ERP_URL", target), ("SHOP_TOKEN", "demo-token")]
}

// ---- systemd ------------------------------------------------------------------------

/// `systemd-analyze`, which must exist in CI (`.ci/run` installs it); elsewhere the test
/// says loudly that it skipped.
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("systemd-analyze");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "systemd-analyze is missing in CI: .ci/run installs the `systemd` package"
    );
    eprintln!("SKIPPED: systemd-analyze is not installed; the generated units were not verified");
    None
}

#[test]
fn generated_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics/ferry.prom");
    for (every, user, store) in [
        ("15m", false, None),
        ("45m", false, Some("/srv/ferry/data/ferry.db")),
        ("1d", false, Some("postgres://ferry:secret@db.internal/ferry")),
        ("30s", true, None),
        ("6h", true, Some("postgres://ferry@db.internal/ferry")),
    ] {
        let out_dir = dir.path().join(format!("{every}-{user}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut args = vec![
            "systemd",
            SCHEME,
            "--every",
            every,
            "--write",
            out_dir.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ];
        if user {
            args.push("--user");
        }
        if let Some(store) = store {
            args.extend(["--store", store]);
        }
        let out = ferry(&args, &[("SHOP_TOKEN", "tok-123456")]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let service = out_dir.join("ferry-shop-orders-to-erp.service");
        let timer = out_dir.join("ferry-shop-orders-to-erp.timer");
        let service_text = std::fs::read_to_string(&service).unwrap();
        assert!(
            !service_text.contains("tok-123456") && !service_text.contains("secret@"),
            "no secret in a unit:\n{service_text}"
        );
        let mut verify = Command::new(analyze);
        if user {
            // The user manager wants a runtime directory, which a CI container may lack.
            let runtime = dir.path().join("xdg-runtime");
            std::fs::create_dir_all(&runtime).unwrap();
            verify.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
        }
        let verified = verify.arg("verify").arg(&service).arg(&timer).output().unwrap();
        assert!(
            verified.status.success() && verified.stderr.is_empty(),
            "{every} user={user}: systemd-analyze verify says:\n{}{}\n{service_text}",
            text(&verified.stdout),
            text(&verified.stderr)
        );
        // A calendar timer fires exactly every period.
        let timer_text = std::fs::read_to_string(&timer).unwrap();
        if let Some(expression) = timer_text.lines().find_map(|l| l.strip_prefix("OnCalendar=")) {
            let period = ferry::window::parse_duration(every).unwrap().num_seconds();
            let listed = Command::new(analyze)
                .args(["calendar", "--iterations=4", expression])
                .env("TZ", "UTC")
                .output()
                .unwrap();
            let listed = text(&listed.stdout);
            let times: Vec<i64> = listed
                .lines()
                .filter_map(|l| l.split_once(": ").map(|(_, t)| t.trim()))
                .filter_map(|t| chrono::NaiveDateTime::parse_from_str(t, "%a %Y-%m-%d %H:%M:%S UTC").ok())
                .map(|t| t.and_utc().timestamp())
                .collect();
            assert_eq!(times.len(), 4, "{listed}");
            for pair in times.windows(2) {
                assert_eq!(pair[1] - pair[0], period, "{every}: {expression}\n{listed}");
            }
        } else {
            assert!(timer_text.contains("OnUnitActiveSec="), "{timer_text}");
        }
    }
}

/// The unit reads its secret from a credential: a run under `CREDENTIALS_DIRECTORY` with
/// the variable unset gets it from there, and never shows it.
#[test]
fn secrets_come_from_systemd_credentials() {
    let token = "cred-token-8a7b6c";
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 30,
        token: Some(token.into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = std::fs::read_to_string(SCHEME)
        .unwrap()
        .replace("${SHOP_TOKEN:-demo-token}", "${SHOP_TOKEN}");
    let scheme_file = dir.path().join("s.yaml");
    std::fs::write(&scheme_file, scheme).unwrap();
    let scheme_path = scheme_file.to_str().unwrap();

    let units = ferry(&["systemd", scheme_path, "--every", "15m"], &[]);
    assert_eq!(units.status.code(), Some(0), "{}", describe(&units));
    let unit_text = text(&units.stdout);
    assert!(
        unit_text.contains("LoadCredential=SHOP_TOKEN:/etc/ferry/credentials/SHOP_TOKEN"),
        "{unit_text}"
    );
    assert!(!unit_text.contains("Environment=SHOP_TOKEN"), "{unit_text}");

    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("SHOP_TOKEN"), format!("{token}\n")).unwrap();
    let store = dir.path().join("c.db").display().to_string();
    let out = command(
        &["run", scheme_path, "--store", &store, "--json"],
        &[("SHOP_URL", &url), ("ERP_URL", &url)],
    )
    .env_remove("SHOP_TOKEN")
    .env("CREDENTIALS_DIRECTORY", &credentials)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["created"], 30);
    assert_eq!(sim.target_count(), 30);
    assert!(!text(&out.stdout).contains(token) && !text(&out.stderr).contains(token));

    // Without the credential the variable is missing, as before.
    let missing = command(&["run", scheme_path, "--store", &store], &[("SHOP_URL", &url)])
        .env_remove("SHOP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(text(&missing.stderr).contains("SHOP_TOKEN"));
}

// ---- exit codes -------------------------------------------------------------------

/// 75, "try again later": the source cannot be reached, or the target refuses every
/// connection of the first batch; either way nothing was written. Before, the first exited 3
/// and the second failed every record into the ledger and exited 1.
#[test]
fn an_unreachable_peer_exits_75_without_writing() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 450,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("u.db").display().to_string();

    let source_down = ferry(&["run", SCHEME, "--store", &store, "--json"], &shop_envs(DOWN, &url));
    assert_eq!(source_down.status.code(), Some(75), "{}", describe(&source_down));
    let summary = json(&source_down);
    assert_eq!(summary["unreachable"], true);
    assert_eq!(summary["read"], 0);
    assert_eq!(
        summary["windows"], 0,
        "windows counts the windows read, not those planned"
    );
    assert!(text(&source_down.stderr).contains("try again later"));

    let target_down = ferry(&["run", SCHEME, "--store", &store, "--json"], &shop_envs(&url, DOWN));
    assert_eq!(target_down.status.code(), Some(75), "{}", describe(&target_down));
    let summary = json(&target_down);
    assert_eq!(summary["created"], 0);
    assert!(
        summary["failed"].as_u64().unwrap() <= 100,
        "the run stopped after its first batch: {summary}"
    );
    assert!(
        summary["aborted"].as_str().unwrap().contains("cannot be reached"),
        "{summary}"
    );

    // The first batch's rows wait in the ledger as ordinary failures (a refused connection
    // cannot have delivered them), not as uncertain creates.
    let failures = ferry(
        &["failures", "list", "--scheme", SCHEME_NAME, "--store", &store, "--json"],
        &[],
    );
    let rows = json(&failures);
    assert!(!rows.as_array().unwrap().is_empty());
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["error_class"] == "transport"),
        "{rows}"
    );

    // The run history names both outcomes, and the next run with both up settles everything.
    let ok = ferry(&["run", SCHEME, "--store", &store, "--json"], &shop_envs(&url, &url));
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert_eq!(sim.target_count(), 450);
    assert_eq!(sim.duplicate_creates(), 0);
    let runs = json(&ferry(&["runs", "list", "--store", &store, "--json"], &[]));
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "unreachable", "unreachable"]);
}

// ---- logs -------------------------------------------------------------------------

/// Every stderr line parses as JSON.
fn assert_json_lines(what: &str, stderr: &[u8]) -> Vec<serde_json::Value> {
    let stderr = text(stderr);
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{what}: a stderr line is not JSON ({e}): {line:?}\n{stderr}"))
        })
        .collect()
}

#[test]
fn json_logs_hold_only_json_lines() {
    let (rt, _sim, url) = start_sim(ShopConfig {
        records: 3000,
        token: Some("demo-token".into()),
        faults: ferry::sim::Faults {
            latency_ms: 30,
            ..Default::default()
        },
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("j.db").display().to_string();
    let envs = shop_envs(&url, &url);
    let json_run = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec!["--log-format", "json", "run", SCHEME, "--store", &store];
        args.extend_from_slice(extra);
        ferry(&args, envs)
    };

    // An aborted run: the source answers garbage. Its reason is told once.
    let garbage_dir = tempfile::tempdir().unwrap();
    let garbage_store = garbage_dir.path().join("g.db").display().to_string();
    let (_grt, _gsim, garbage_url) = start_sim(ShopConfig {
        records: 10,
        token: Some("demo-token".into()),
        faults: ferry::sim::Faults {
            garble_next: 50,
            ..Default::default()
        },
        ..ShopConfig::default()
    });
    let info = ("FERRY_LOG", "warn,ferry=info");
    let garbage_envs = shop_envs(&garbage_url, &garbage_url);
    let mut info_envs = garbage_envs.to_vec();
    info_envs.push(info);
    let aborted = ferry(
        &["--log-format", "json", "run", SCHEME, "--store", &garbage_store],
        &info_envs,
    );
    assert_eq!(aborted.status.code(), Some(3), "{}", describe(&aborted));
    let events = assert_json_lines("aborted run", &aborted.stderr);
    let errors: Vec<_> = events.iter().filter(|e| e["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "the abort reason once: {events:?}");
    assert!(errors[0]["message"].as_str().unwrap().contains("the run aborted"));
    let finished = events.iter().find(|e| e["message"] == "run finished").unwrap();
    assert_eq!(finished["outcome"], "aborted");
    // In text the reason is printed once too, on stderr (the summary only says ABORTED).
    let aborted_text = ferry(
        &["run", SCHEME, "--store", &garbage_store],
        &shop_envs(&garbage_url, &garbage_url),
    );
    assert_eq!(aborted_text.status.code(), Some(3), "{}", describe(&aborted_text));
    let both = format!("{}{}", text(&aborted_text.stdout), text(&aborted_text.stderr));
    assert_eq!(both.matches("the run aborted").count(), 1, "{both}");
    assert!(text(&aborted_text.stdout).contains("ABORTED"), "{both}");

    // A lock refusal.
    let lock = rt.block_on(async {
        let store = ferry::store::Store::open(&store).await.unwrap();
        ferry::store::lock::acquire(&store, SCHEME_NAME, false).await.unwrap()
    });
    let refused = json_run(&[], &envs);
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    let events = assert_json_lines("lock refusal", &refused.stderr);
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("--wait")),
        "{events:?}"
    );
    drop(lock);

    // A signal stop: exit 143, and the stop notice is an event too.
    let mut info_envs = envs.to_vec();
    info_envs.push(info);
    let mut child = command(&["--log-format", "json", "run", SCHEME, "--store", &store], &info_envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(143), "{}", describe(&stopped));
    let events = assert_json_lines("signal stop", &stopped.stderr);
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("stopping on SIGTERM")),
        "{events:?}"
    );
    let finished = events.iter().find(|e| e["message"] == "run finished").unwrap();
    assert_eq!(finished["outcome"], "stopped");
    assert_eq!(finished["exit_code"], 143);

    // A normal run, at debug level: every source request is an event with its window,
    // page, URL and record count.
    let mut debug = envs.to_vec();
    debug.push(("FERRY_LOG", "debug"));
    let normal = json_run(&["--json"], &debug);
    assert_eq!(normal.status.code(), Some(0), "{}", describe(&normal));
    let events = assert_json_lines("normal run", &normal.stderr);
    let sources: Vec<_> = events.iter().filter(|e| e["message"] == "source request").collect();
    assert!(!sources.is_empty());
    assert!(sources.iter().all(|e| e["url"].as_str().unwrap().contains("/orders?")
        && e["window"].as_str().unwrap().contains(" → ")
        && e["page"].as_u64().unwrap() >= 1
        && e["records"].is_u64()));
    let summary = json(&normal);
    assert_eq!(summary["source_requests"].as_u64().unwrap() as usize, sources.len());
    let finished = events.iter().find(|e| e["message"] == "run finished").unwrap();
    assert_eq!(finished["outcome"], "ok");
    assert!(finished["run_id"].as_i64().unwrap() > 0);
}

#[test]
fn journald_without_a_journal_falls_back_to_stderr() {
    if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("SKIPPED: this machine has a journal; the fallback cannot be shown");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("none.db").display().to_string();
    let out = ferry(&["--log-format", "journald", "runs", "list", "--store", &store], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no systemd journal here"), "{stderr}");
    assert!(stderr.contains("no store at"), "{stderr}");
}

// ---- metrics ------------------------------------------------------------------------

fn metric(file: &str, series: &str) -> Option<f64> {
    file.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[test]
fn the_metrics_file_survives_failed_runs_and_keeps_the_last_success() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 200,
        reject_every: Some(50),
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("m.db").display().to_string();
    let prom = dir.path().join("ferry.prom");
    let prom_arg = prom.to_str().unwrap();
    let run = |envs: &[(&str, &str)]| ferry(&["run", SCHEME, "--store", &store, "--metrics-file", prom_arg], envs);

    let failed_rows = run(&shop_envs(&url, &url));
    assert_eq!(failed_rows.status.code(), Some(1), "{}", describe(&failed_rows));
    let file = std::fs::read_to_string(&prom).unwrap();
    let labels = format!("{{scheme=\"{SCHEME_NAME}\"}}");
    assert_eq!(
        metric(&file, &format!("ferry_failures_open{labels}")),
        Some(4.0),
        "{file}"
    );
    assert_eq!(
        metric(&file, &format!("ferry_last_success_timestamp_seconds{labels}")),
        None
    );
    assert!(file.contains("# TYPE ferry_records_total counter"), "{file}");

    sim.set_reject_every(None);
    let ok = run(&shop_envs(&url, &url));
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    let file = std::fs::read_to_string(&prom).unwrap();
    let success = metric(&file, &format!("ferry_last_success_timestamp_seconds{labels}")).unwrap();
    assert_eq!(metric(&file, &format!("ferry_failures_open{labels}")), Some(0.0));
    assert!(metric(&file, &format!("ferry_checkpoint_lag_seconds{labels}")).unwrap() >= 0.0);
    let created = format!("ferry_records_total{{outcome=\"created\",scheme=\"{SCHEME_NAME}\"}}");
    assert_eq!(
        metric(&file, &created),
        Some(200.0),
        "counters add up over runs: {file}"
    );
    let target_requests = metric(&file, &format!("ferry_target_requests_total{labels}")).unwrap();
    assert!(metric(&file, &format!("ferry_source_requests_total{labels}")).unwrap() > 0.0);

    // The source goes down: the run fails, the last success stays.
    let down = run(&shop_envs(DOWN, &url));
    assert_eq!(down.status.code(), Some(75), "{}", describe(&down));
    let file = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&file, &format!("ferry_last_success_timestamp_seconds{labels}")),
        Some(success)
    );
    assert_eq!(metric(&file, &format!("ferry_last_run_exit_code{labels}")), Some(75.0));
    let unreachable = format!("ferry_last_run_timestamp_seconds{{outcome=\"unreachable\",scheme=\"{SCHEME_NAME}\"}}");
    assert!(metric(&file, &unreachable).unwrap() >= success);
    let runs_ok = format!("ferry_runs_total{{outcome=\"ok\",scheme=\"{SCHEME_NAME}\"}}");
    assert_eq!(metric(&file, &runs_ok), Some(1.0));
    assert_eq!(
        metric(&file, &format!("ferry_target_requests_total{labels}")),
        Some(target_requests)
    );

    // Even when the file is lost, the last success comes back from the store's history.
    std::fs::remove_file(&prom).unwrap();
    let down_again = run(&shop_envs(DOWN, &url));
    assert_eq!(down_again.status.code(), Some(75));
    let file = std::fs::read_to_string(&prom).unwrap();
    let restored = metric(&file, &format!("ferry_last_success_timestamp_seconds{labels}")).unwrap();
    assert!((restored - success).abs() < 2.0, "{restored} vs {success}");
    // Only the file itself and its lock are left beside it.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ferry.prom"))
        .collect();
    names.sort();
    assert_eq!(names, ["ferry.prom", "ferry.prom.lock"]);
}

// ---- run history and status -----------------------------------------------------------

#[test]
fn runs_and_status_show_what_the_store_knows() {
    let (_rt, _sim, url) = start_sim(ShopConfig {
        records: 120,
        reject_every: Some(60),
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db").display().to_string();
    let first = ferry(&["run", SCHEME, "--store", &store], &shop_envs(&url, &url));
    assert_eq!(first.status.code(), Some(1), "{}", describe(&first));
    // The hints after the run name the store it used.
    let stdout = text(&first.stdout);
    assert!(
        stdout.contains(&format!("ferry failures list --scheme {SCHEME_NAME} --store {store}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ferry runs show 1 --store {store}")),
        "{stdout}"
    );

    let list = ferry(&["runs", "list", "--scheme", SCHEME, "--store", &store], &[]);
    assert_eq!(list.status.code(), Some(0), "{}", describe(&list));
    assert!(text(&list.stdout).contains("failed_rows"), "{}", text(&list.stdout));
    let shown = json(&ferry(
        &["runs", "show", "1", "--store", &store, "--format", "json"],
        &[],
    ));
    assert_eq!(shown["status"], "failed_rows");
    assert_eq!(shown["summary"]["failed"], 2);
    assert_eq!(shown["summary"]["read"], 120);
    let unknown = ferry(&["runs", "show", "99", "--store", &store], &[]);
    assert_eq!(unknown.status.code(), Some(2));

    let status = json(&ferry(&["status", "--store", &store, "--json"], &[]));
    let scheme = &status[0];
    assert_eq!(scheme["scheme"], SCHEME_NAME);
    assert_eq!(scheme["last_run"]["status"], "failed_rows");
    assert_eq!(scheme["open_failures"], 2);
    assert_eq!(scheme["pending_intents"], 0);
    assert!(scheme["last_success"].is_null());
    assert!(scheme["checkpoint"].is_string());
    assert!(scheme["checkpoint_lag_seconds"].as_i64().unwrap() >= 0);
    let status_text = text(&ferry(&["status", "--store", &store], &[]).stdout);
    for line in ["last run", "checkpoint", "open failures   2", "pending writes  0"] {
        assert!(status_text.contains(line), "{status_text}");
    }
    // failures show of an unknown id is a usage error.
    let missing = ferry(&["failures", "show", "4242", "--store", &store], &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
}

// ---- a command line without surprises ---------------------------------------------------

#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("missing.db");
    let location = store.to_str().unwrap();
    for args in [
        vec!["mappings", "list", "--scheme", "s"],
        vec!["mappings", "get", "--scheme", "s", "--source-id", "1"],
        vec!["failures", "list"],
        vec!["failures", "show", "1"],
        vec!["failures", "skip", "1"],
        vec!["runs", "list"],
        vec!["runs", "show", "1"],
        vec!["status"],
    ] {
        let mut args = args.clone();
        args.extend(["--store", location]);
        let out = ferry(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("no store at {location}")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.ends_with('\n'), "{args:?}: the last line ends with a newline");
        assert!(!store.exists(), "{args:?} created the store");
    }
}

#[test]
fn a_store_in_a_missing_directory_needs_create_dirs() {
    let (_rt, _sim, url) = start_sim(ShopConfig {
        records: 5,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("typo/ferry.db");
    let location = store.to_str().unwrap();
    let refused = ferry(&["run", SCHEME, "--store", location], &shop_envs(&url, &url));
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(text(&refused.stderr).contains("--create-dirs"));
    assert!(!dir.path().join("typo").exists());
    let created = ferry(
        &["run", SCHEME, "--store", location, "--create-dirs"],
        &shop_envs(&url, &url),
    );
    assert_eq!(created.status.code(), Some(0), "{}", describe(&created));
    assert!(store.exists());
}

#[test]
fn quiet_prints_a_summary_only_when_something_failed() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 100,
        reject_every: Some(50),
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("q.db").display().to_string();
    let failed = ferry(&["run", SCHEME, "--store", &store, "--quiet"], &shop_envs(&url, &url));
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed.stdout).contains("failed"), "{}", describe(&failed));
    sim.set_reject_every(None);
    let ok = ferry(&["run", SCHEME, "--store", &store, "--quiet"], &shop_envs(&url, &url));
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert_eq!(text(&ok.stdout), "", "nothing to say");
    assert_eq!(text(&ok.stderr), "");
}

#[test]
fn a_json_dry_run_is_one_object_per_line_with_planned_counts() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 150,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("d.db").display().to_string();
    let out = ferry(
        &["run", SCHEME, "--store", &store, "--dry-run", "--format", "json"],
        &shop_envs(&url, &url),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (summary, requests) = lines.split_last().unwrap();
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["created"], 150, "a dry run counts the creates it planned");
    let sources = requests.iter().filter(|r| r["side"] == "source").count();
    let targets: Vec<_> = requests.iter().filter(|r| r["side"] == "target").collect();
    assert_eq!(sources as u64, summary["source_requests"].as_u64().unwrap());
    assert!(sources >= 2);
    assert_eq!(targets.iter().map(|r| r["rows"].as_u64().unwrap()).sum::<u64>(), 150);
    assert!(targets.iter().all(|r| r["operation"] == "create"));
    assert_eq!(sim.target_count(), 0);

    // In text, the source pages show with their window and record count.
    let plain = ferry(&["run", SCHEME, "--store", &store, "--dry-run"], &shop_envs(&url, &url));
    let stdout = text(&plain.stdout);
    assert!(stdout.contains("--- source page 1, window "), "{stdout}");
    assert!(stdout.contains("to create"), "{stdout}");
}

#[test]
fn scheme_options_take_a_file_or_a_name() {
    let (_rt, _sim, url) = start_sim(ShopConfig {
        records: 12,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("n.db").display().to_string();
    assert_eq!(
        ferry(&["run", SCHEME, "--store", &store], &shop_envs(&url, &url))
            .status
            .code(),
        Some(0)
    );
    for id in ["10", "2", "1"] {
        let set = ferry(
            &[
                "mappings",
                "set",
                "--scheme",
                SCHEME,
                "--source-id",
                id,
                "--target-id",
                "T",
                "--store",
                &store,
            ],
            &[],
        );
        assert_eq!(set.status.code(), Some(0), "{}", describe(&set));
    }
    for scheme in [SCHEME, SCHEME_NAME] {
        let listed = json(&ferry(
            &[
                "mappings", "list", "--scheme", scheme, "--store", &store, "--json", "--limit", "5",
            ],
            &[],
        ));
        let ids: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["source_id"].as_str().unwrap())
            .collect();
        // Natural order: 1, 2, 10 rather than 1, 10, 2.
        assert_eq!(ids, ["1", "2", "10", "SO0000001", "SO0000002"], "{scheme}");
    }
}
