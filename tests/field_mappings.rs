//! Store-backed field mappings end to end, through the `ferry` binary and the built-in shop
//! simulator: a value with no mapping parks its record in the ledger naming the table and
//! the value, `ferry field-mappings lint` lists it, and after `ferry field-mappings add`
//! `ferry failures retry` sends the record with the mapped value.

mod support;
use ferry::sim::shop::ShopConfig;
use serde_json::Value;
use std::path::Path;
use support::{ferry, json, start_shop as start_sim, text};

/// The shop scheme with `FShop` mapped through the `shop` table, seeded from `shops.csv`
/// next to it, which knows SHOP01–SHOP04 but not SHOP05.
fn write_scheme(dir: &Path) -> String {
    let scheme = std::fs::read_to_string("schemes/shop-orders-to-erp.yaml")
        .unwrap()
        .replace(
            "    FShop: $.shop_code\n",
            "    FShop: \"<< shop_code | field_map('shop') >>\"\n",
        )
        .replace(
            "value_maps:\n",
            "field_mappings:\n  shop: {channel: ERP_K3CLOUD, file: shops.csv}\n\nvalue_maps:\n",
        );
    assert!(scheme.contains("field_map('shop')") && scheme.contains("file: shops.csv"));
    std::fs::write(
        dir.join("shops.csv"),
        "crm_value,erp_value,erp_name\nSHOP01,K01,North\nSHOP02,K02,South\nSHOP03,K03,East\nSHOP04,K04,West\n",
    )
    .unwrap();
    let path = dir.join("shop-orders.yaml");
    std::fs::write(&path, scheme).unwrap();
    path.display().to_string()
}

#[test]
fn an_unmapped_value_waits_in_the_ledger_until_its_mapping_is_added_and_retried() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 60,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = write_scheme(dir.path());
    let store = dir.path().join("ferry.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
    ];
    let orders: Vec<Value> = (1..=sim.order_count()).filter_map(|i| sim.order(i)).collect();
    assert_eq!(orders.len() as u64, sim.order_count());
    let unmapped: Vec<&str> = orders
        .iter()
        .filter(|o| o["shop_code"] == "SHOP05")
        .map(|o| o["order_no"].as_str().unwrap())
        .collect();
    assert!(!unmapped.is_empty() && unmapped.len() < orders.len());

    // The run maps SHOP01–04 from the seed file and parks every SHOP05 order.
    let run = ferry(&["run", &scheme, "--store", &store, "--json"], &envs);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let summary = json(&run);
    assert_eq!(summary["failed"].as_u64(), Some(unmapped.len() as u64));
    assert_eq!(sim.target_count(), orders.len() - unmapped.len());
    for order in &orders {
        let bill_no = order["order_no"].as_str().unwrap();
        let expected = order["shop_code"].as_str().unwrap().replace("SHOP", "K");
        match sim.target_row_by_bill_no(bill_no) {
            Some(row) => assert_eq!(row["FShop"], expected.as_str(), "{bill_no}"),
            None => assert!(unmapped.contains(&bill_no), "{bill_no} was not written"),
        }
    }
    let failures = ferry(
        &["failures", "list", "--scheme", &scheme, "--store", &store, "--json"],
        &[],
    );
    let failures = json(&failures);
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), unmapped.len());
    for failure in failures {
        let message = failure["message"].as_str().unwrap();
        assert!(
            message.contains(r#"no field mapping for "SHOP05" in table "shop" (CRM → ERP)"#),
            "{message}"
        );
    }

    // The lint names the value and the failures waiting for it; file and store agree.
    let lint = ferry(&["field-mappings", "lint", &scheme, "--store", &store, "--json"], &[]);
    assert_eq!(lint.status.code(), Some(1), "{}", text(&lint.stderr));
    let report = json(&lint);
    assert_eq!(report["drift"], serde_json::json!([]));
    assert_eq!(report["unmapped"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["unmapped"][0]["table"], "shop");
    assert_eq!(report["unmapped"][0]["value"], "SHOP05");
    assert_eq!(
        report["unmapped"][0]["failures"].as_array().unwrap().len(),
        unmapped.len()
    );

    // An operator adds the mapping (to the store only) and retries the ledger.
    let add = ferry(
        &[
            "field-mappings",
            "add",
            "--scheme",
            &scheme,
            "--table",
            "shop",
            "--crm",
            "SHOP05",
            "--erp",
            "K05",
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(add.status.code(), Some(0), "{}", text(&add.stderr));
    let retry = ferry(
        &["failures", "retry", &scheme, "--all", "--store", &store, "--json"],
        &envs,
    );
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry.stderr));
    assert_eq!(sim.target_count(), orders.len());
    for bill_no in &unmapped {
        let row = sim.target_row_by_bill_no(bill_no).unwrap();
        assert_eq!(row["FShop"], "K05", "{bill_no}");
    }
    let open = json(&ferry(
        &["failures", "list", "--scheme", &scheme, "--store", &store, "--json"],
        &[],
    ));
    assert_eq!(open.as_array().unwrap().len(), 0);

    // Nothing is unmapped now, but the store has a row the file lacks: that is drift.
    let lint = ferry(&["field-mappings", "lint", &scheme, "--store", &store], &[]);
    assert_eq!(lint.status.code(), Some(1), "{}", text(&lint.stderr));
    let out = text(&lint.stdout);
    assert!(
        out.contains(r#"table shop CRM value "SHOP05": in the store ("K05"), not in the file"#),
        "{out}"
    );
    assert!(
        out.contains("1 difference(s)") && out.contains("0 unmapped value(s)"),
        "{out}"
    );

    // Exporting the table back into the file brings them in line again.
    let csv = dir.path().join("shops.csv").display().to_string();
    let export = ferry(
        &[
            "field-mappings",
            "export",
            &csv,
            "--scheme",
            &scheme,
            "--table",
            "shop",
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(export.status.code(), Some(0), "{}", text(&export.stderr));
    let lint = ferry(&["field-mappings", "lint", &scheme, "--store", &store], &[]);
    assert_eq!(lint.status.code(), Some(0), "{}", text(&lint.stdout));
}

#[test]
fn a_changed_seed_file_updates_the_store_at_the_next_run_and_bad_files_stop_it() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 10,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = write_scheme(dir.path());
    let store = dir.path().join("ferry.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
    ];
    let csv = dir.path().join("shops.csv");

    // A file with a repeated ERP value stops the run before anything is sent: exit 2, file:line.
    std::fs::write(&csv, "crm_value,erp_value\nSHOP01,K01\nSHOP02,K01\n").unwrap();
    let run = ferry(&["run", &scheme, "--store", &store], &envs);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("shops.csv:3:") && stderr.contains("first on line 2"),
        "{stderr}"
    );
    assert_eq!(sim.target_count(), 0);

    // Every shop mapped: the run writes everything, and the store holds the file's rows.
    let all = "crm_value,erp_value\nSHOP01,K01\nSHOP02,K02\nSHOP03,K03\nSHOP04,K04\nSHOP05,K05\n";
    std::fs::write(&csv, all).unwrap();
    let run = ferry(&["run", &scheme, "--store", &store], &envs);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(sim.target_count(), 10);
    let listed = json(&ferry(
        &[
            "field-mappings",
            "list",
            "--table",
            "shop",
            "--channel",
            "ERP_K3CLOUD",
            "--store",
            &store,
            "--json",
        ],
        &[],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 5);

    // Reading the orders again sends nothing while the table is the same…
    let backfill = [
        "run",
        &scheme,
        "--store",
        &store,
        "--since",
        "2024-01-01 00:00:00",
        "--json",
    ];
    let again = json(&ferry(&backfill, &envs));
    assert_eq!(
        (again["unchanged"].as_u64(), again["updated"].as_u64()),
        (Some(10), Some(0))
    );
    // …and updates the orders once a row of the file changed, with the new value.
    std::fs::write(&csv, all.replace("SHOP01,K01", "SHOP01,K11")).unwrap();
    let changed = json(&ferry(&backfill, &envs));
    assert_eq!(changed["updated"].as_u64(), Some(10), "{changed}");
    for i in 1..=sim.order_count() {
        let order = sim.order(i).unwrap();
        let row = sim.target_row_by_bill_no(order["order_no"].as_str().unwrap()).unwrap();
        let expected = match order["shop_code"].as_str().unwrap() {
            "SHOP01" => "K11".to_owned(),
            other => other.replace("SHOP", "K"),
        };
        assert_eq!(row["FShop"], expected.as_str());
    }
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ferry.db").display().to_string();
    let scheme = write_scheme(dir.path());
    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(&bad_csv, "crm_value,erp_value,owner\nE1,0001,x\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "field-mappings",
                "add",
                "--table",
                "employee",
                "--channel",
                "SAP",
                "--crm",
                "E1",
                "--erp",
                "1",
            ],
            "unknown channel `SAP`",
        ),
        (
            vec![
                "field-mappings",
                "add",
                "--scheme",
                &scheme,
                "--table",
                "staff",
                "--crm",
                "E1",
                "--erp",
                "1",
            ],
            "no field mapping table `staff` — it declares shop",
        ),
        (
            vec![
                "field-mappings",
                "import",
                bad_csv.to_str().unwrap(),
                "--table",
                "employee",
            ],
            "bad.csv:1: unknown column `owner`",
        ),
    ];
    for (mut args, needle) in cases {
        args.extend(["--store", &store]);
        let out = ferry(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    // An undeclared table in a template is a validation error at its line and column.
    let undeclared = std::fs::read_to_string(&scheme)
        .unwrap()
        .replace("field_map('shop')", "field_map('shops')");
    let path = dir.path().join("undeclared.yaml");
    std::fs::write(&path, undeclared).unwrap();
    let out = ferry(&["validate", path.to_str().unwrap(), "--no-env"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown field mapping table \"shops\"") && stderr.contains("did you mean `shop`"),
        "{stderr}"
    );
}

#[test]
fn a_dry_run_reads_the_seed_file_over_the_store_and_writes_neither() {
    let (_rt, sim, url) = start_sim(ShopConfig {
        records: 10,
        token: Some("demo-token".into()),
        ..ShopConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let scheme = write_scheme(dir.path());
    let store = dir.path().join("ferry.db").display().to_string();
    let envs = [
        ("SHOP_URL", url.as_str()),
        ("ERP_URL", url.as_str()),
        ("SHOP_TOKEN", "demo-token"),
    ];
    // The store knows SHOP05 only; the file knows SHOP01–04: together they map every order.
    let add = ferry(
        &[
            "field-mappings",
            "add",
            "--scheme",
            &scheme,
            "--table",
            "shop",
            "--crm",
            "SHOP05",
            "--erp",
            "K05",
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(add.status.code(), Some(0), "{}", text(&add.stderr));
    let dry = ferry(&["run", &scheme, "--store", &store, "--dry-run", "--json"], &envs);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let summary: Value = text(&dry.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|value| value.get("read").is_some())
        .expect("a summary line");
    assert_eq!(
        (summary["read"].as_u64(), summary["failed"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(sim.target_count(), 0);
    let listed = json(&ferry(
        &[
            "field-mappings",
            "list",
            "--scheme",
            &scheme,
            "--store",
            &store,
            "--json",
        ],
        &[],
    ));
    let crm: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["crm_value"].as_str().unwrap())
        .collect();
    assert_eq!(crm, ["SHOP05"], "the dry run put nothing into the store");
}
