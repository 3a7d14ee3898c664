//! Projects: `ferry run DIR` and `ferry run PROJECT.yaml` run several schemes in
//! dependency order (a scheme reading another's ids with `mapped_id` runs after it), one
//! lock each, one summary, against the shop simulator on 127.0.0.1.

mod support;

use ferry::sim::shop::{ShopConfig, ShopSim};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

fn orders_scheme() -> String {
    std::fs::read_to_string("schemes/shop-orders-to-erp.yaml").unwrap()
}

/// A second scheme over the same orders that refers to the first one's target ids; its
/// target is `${REFS_URL}` so a test can take the first scheme's target down alone.
fn refs_scheme() -> String {
    orders_scheme()
        .replace("name: shop-orders-to-erp", "name: order-refs")
        .replace("${ERP_URL:-http://127.0.0.1:8080}", "${REFS_URL}")
        .replace(
            "FBillNo: \"<< order_no >>\"",
            "FBillNo: \"REF-<< order_no >>\"\n    FOrderRef: \"<< order_no | mapped_id('SAL_SaleOrder') >>\"",
        )
}

fn start_sim(records: u64) -> (tokio::runtime::Runtime, ShopSim, String) {
    support::start_shop(ShopConfig {
        records,
        ..ShopConfig::default()
    })
}

fn ferry(args: &[&str], source: &str, orders_target: &str, refs_target: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("FERRY_STORE")
        .env("FERRY_LOG", "warn")
        .env("SHOP_URL", source)
        .env("SHOP_TOKEN", "demo-token")
        .env("ERP_URL", orders_target)
        .env("REFS_URL", refs_target)
        .output()
        .expect("run ferry")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes the two schemes so that file-name order is the wrong run order.
fn write_project(dir: &Path) {
    std::fs::write(dir.join("a-order-refs.yaml"), refs_scheme()).unwrap();
    std::fs::write(dir.join("b-orders.yaml"), orders_scheme()).unwrap();
}

#[test]
fn a_directory_runs_each_scheme_after_the_schemes_whose_ids_it_reads() {
    let (_runtime, sim, url) = start_sim(40);
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    write_project(&project);
    let store = dir.path().join("ferry.db");
    let store = store.to_str().unwrap();
    let out = ferry(&["run", project.to_str().unwrap(), "--store", store], &url, &url, &url);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Had the refs run first, every mapped_id would have missed and failed its record.
    let original = sim.target_row_by_bill_no("SO0000007").expect("orders were written");
    let reference = sim.target_row_by_bill_no("REF-SO0000007").expect("refs were written");
    assert_eq!(reference["FOrderRef"], original["id"], "{reference}");
    assert_eq!(sim.target_count(), 80);
    // One table for the project, in run order.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let orders_at = stdout.find("shop-orders-to-erp").expect("orders row");
    let refs_at = stdout.find("order-refs").expect("refs row");
    assert!(orders_at < refs_at, "{stdout}");

    // A project file names the schemes; the same order holds, and a second run changes nothing.
    let file = project.join("flows.project.yml");
    std::fs::write(
        &file,
        "# both flows\nschemes:\n  - a-order-refs.yaml\n  - b-orders.yaml\n",
    )
    .unwrap();
    let again = ferry(
        &["run", file.to_str().unwrap(), "--store", store, "--format", "json"],
        &url,
        &url,
        &url,
    );
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let rows: serde_json::Value = serde_json::from_slice(&again.stdout).expect("a JSON list");
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scheme"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop-orders-to-erp", "order-refs"]);
    for row in rows.as_array().unwrap() {
        let summary = &row["summary"];
        assert_eq!(
            (summary["created"].as_u64(), summary["updated"].as_u64()),
            (Some(0), Some(0)),
            "{row}"
        );
    }
    assert_eq!(sim.target_count(), 80);
}

#[test]
fn a_scheme_whose_dependency_could_not_run_is_skipped_not_run_without_its_ids() {
    let (_runtime, sim, url) = start_sim(20);
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path());
    let store = dir.path().join("ferry.db");
    // The orders' target is down: that scheme exits 75 and the refs must not run.
    let out = ferry(
        &["run", dir.path().to_str().unwrap(), "--store", store.to_str().unwrap()],
        &url,
        "http://127.0.0.1:9",
        &url,
    );
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("order-refs: skipped"), "{stderr}");
    assert!(sim.target_row_by_bill_no("REF-SO0000001").is_none());
    assert_eq!(sim.target_count(), 0);
}

#[test]
fn an_invalid_scheme_or_a_cycle_runs_nothing_and_exits_2() {
    let (_runtime, sim, url) = start_sim(10);
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path());
    std::fs::write(dir.path().join("c-broken.yaml"), "name: broken\nsource: 12\n").unwrap();
    let store = dir.path().join("ferry.db");
    let out = ferry(
        &["run", dir.path().to_str().unwrap(), "--store", store.to_str().unwrap()],
        &url,
        &url,
        &url,
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was run"),
        "{}",
        describe(&out)
    );
    assert_eq!(sim.target_count(), 0);

    // Each of two schemes reads the other's ids.
    std::fs::remove_file(dir.path().join("c-broken.yaml")).unwrap();
    let orders = orders_scheme().replace(
        "FBillNo: \"<< order_no >>\"",
        "FBillNo: \"<< order_no >>\"\n    FRef: \"<< order_no | mapped_id('order-refs') >>\"",
    );
    std::fs::write(dir.path().join("b-orders.yaml"), orders).unwrap();
    let out = ferry(
        &["run", dir.path().to_str().unwrap(), "--store", store.to_str().unwrap()],
        &url,
        &url,
        &url,
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cycle"),
        "{}",
        describe(&out)
    );
    assert_eq!(sim.target_count(), 0);

    // A project file naming a missing scheme says which line.
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "schemes:\n  - b-orders.yaml\n  - nope.yaml\n").unwrap();
    let out = ferry(
        &["run", file.to_str().unwrap(), "--store", store.to_str().unwrap()],
        &url,
        &url,
        &url,
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("p.yaml:3"),
        "{}",
        describe(&out)
    );
}
