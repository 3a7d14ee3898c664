//! `ferry test` as CI runs it: the binary with no environment at all, over the shipped
//! test files and edited copies of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("ferry runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of `schemes/` (schemes and tests) in a temporary directory.
fn copy_of_schemes() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "tests"] {
        let from = root().join("schemes").join(sub);
        let to = dir.path().join("schemes").join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

#[test]
fn every_shipped_scheme_has_a_test_and_all_pass_with_no_environment() {
    let schemes: Vec<String> = std::fs::read_dir(root().join("schemes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        // A receiving scheme reads no source to record; tests/receive.rs pushes to it.
        .filter(|p| !std::fs::read_to_string(p).unwrap().contains("\n  receive:"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(schemes.len() >= 6);
    for scheme in &schemes {
        assert!(
            root().join(format!("schemes/tests/{scheme}.test.yaml")).exists(),
            "{scheme} has no test"
        );
    }
    let junit = tempfile::NamedTempFile::new().unwrap();
    let out = ferry(
        &["test", "schemes/", "--junit", junit.path().to_str().unwrap()],
        &root(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", schemes.len())),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{}\" failures=\"0\"", schemes.len())),
        "{xml}"
    );
}

#[test]
fn a_changed_field_mapping_fails_with_exit_1_and_a_diff() {
    let dir = copy_of_schemes();
    let scheme = dir.path().join("schemes/guanyi-shops-to-kingdee-customers.yaml");
    let original = std::fs::read_to_string(&scheme).unwrap();
    let edited = original.replace("FName: \"<< name >>\"", "FName: \"<< code >>\"");
    assert_ne!(original, edited);
    std::fs::write(&scheme, edited).unwrap();
    let out = ferry(
        &[
            "test",
            "schemes/tests/guanyi-shops-to-kingdee-customers.test.yaml",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["passed"], false);
    let problems = reports[0]["problems"].to_string();
    assert!(problems.contains("body.data.Model[0].FName: expected"), "{problems}");
}

#[test]
fn an_invalid_test_file_is_exit_2_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.test.yaml"), "scheme: x.yaml\nrunz: []\n").unwrap();
    let out = ferry(&["test", "bad.test.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.test.yaml:2:1") && stderr.contains("unknown field `runz`"),
        "{stderr}"
    );
}

#[test]
fn scripted_faults_in_a_test_file_are_asserted() {
    let dir = copy_of_schemes();
    let path = dir.path().join("schemes/tests/shop-orders-to-erp.test.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    // A 5xx on the first source page is retried: the run still ends as recorded.
    let retried = original.replacen(
        "  exit: 0\n",
        "  exit: 0\n  faults:\n  - {connection: shop, request: 1, kind: server_error}\n",
        1,
    );
    std::fs::write(&path, &retried).unwrap();
    let out = ferry(&["test", "schemes/tests/shop-orders-to-erp.test.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // A crash after the write intent (the write happens, its answer is lost) cannot end
    // as the clean recording says.
    let lost = original.replacen(
        "  exit: 0\n",
        "  exit: 0\n  faults:\n  - {connection: erp, request: 1, kind: crash_after_write}\n",
        1,
    );
    std::fs::write(&path, &lost).unwrap();
    let out = ferry(&["test", "schemes/tests/shop-orders-to-erp.test.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("uncertain"), "{}", text(&out.stdout));
}

#[test]
fn record_writes_no_secret_and_the_recording_replays() {
    let dir = copy_of_schemes();
    let out = ferry(
        &[
            "test",
            "schemes/tests/guanyi-shops-to-kingdee-customers.test.yaml",
            "--record",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recorded = std::fs::read_to_string(
        dir.path()
            .join("schemes/tests/guanyi-shops-to-kingdee-customers.test.yaml"),
    )
    .unwrap();
    let config = ferry::sim::guanyi::GuanyiConfig::default();
    let k3 = ferry::sim::k3cloud::K3CloudConfig::default();
    for secret in [&config.secret, &config.sessionkey, &config.appkey, &k3.app_secret] {
        assert!(!recorded.contains(secret.as_str()), "{secret} was recorded");
    }
    assert!(recorded.contains("test-guanyi-secret") || recorded.contains("test-guanyi-sessionkey"));
    let out = ferry(
        &["test", "schemes/tests/guanyi-shops-to-kingdee-customers.test.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_scheme_from_ferry_init_records_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(
        &[
            "init",
            "shops",
            "--connector",
            "guanyi",
            "--target-connector",
            "kingdee-k3cloud",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ferry(&["test", "schemes/tests/shops.test.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1), "nothing recorded yet is a failing test");
    assert!(
        text(&out.stdout).contains("nothing recorded yet"),
        "{}",
        text(&out.stdout)
    );
    let out = ferry(&["test", "schemes/tests/shops.test.yaml", "--record"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recorded = std::fs::read_to_string(dir.path().join("schemes/tests/shops.test.yaml")).unwrap();
    assert!(recorded.contains("status: created"), "{recorded}");
    let out = ferry(&["test", "schemes/tests/shops.test.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
