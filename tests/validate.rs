//! Snapshot tests of `ferry validate` diagnostics for every broken scheme under
//! tests/fixtures/invalid, plus checks that the shipped schemes and fixtures/valid pass.

use ferry::scheme::load_str;

fn fixture_env(name: &str) -> Option<String> {
    match name {
        "SHOP_URL" => Some("http://127.0.0.1:9".into()),
        "SHOP_TOKEN" => Some("fixture-token".into()),
        _ => None,
    }
}

#[test]
fn broken_schemes_report_every_problem_with_a_location() {
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let loaded = load_str(&text, &name, &fixture_env);
        assert!(loaded.has_errors(), "{name} should be invalid");
        assert!(loaded.plan.is_none());
        for d in &loaded.diagnostics {
            assert!(d.line > 0 && d.column > 0, "{name}: diagnostic without position: {d:?}");
            assert!(!d.message.is_empty());
        }
        let rendered: String = loaded
            .diagnostics
            .iter()
            .map(|d| d.render(&text))
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(rendered);
    });
}

/// `window` and `page` belong to source requests; in a record's fields they draw a warning
/// (they would resolve only to a record field of that name), not silence.
#[test]
fn request_only_names_in_record_templates_are_warned_about() {
    let text = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml").unwrap();
    let fields = text.find("  fields:\n").expect("fields block");
    let text = format!(
        "{}  fields:\n    W: \"<< window.start >>\"\n{}",
        &text[..fields],
        &text[fields + "  fields:\n".len()..]
    );
    let loaded = load_str(&text, "w.yaml", &fixture_env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let warning = loaded
        .diagnostics
        .iter()
        .find(|d| d.path == "target.fields.W")
        .expect("a warning at the field");
    assert!(warning.message.contains("`window`"), "{}", warning.message);
    assert!(warning.hint.as_deref().unwrap_or_default().contains("source request"));
}

/// A secret put where something else belongs is reported without its value.
#[test]
fn diagnostics_never_quote_secret_values() {
    let text = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml")
        .unwrap()
        .replace(
            "headers: {Authorization",
            "timeout: \"${API_SECRET}\", headers: {Authorization",
        );
    assert!(text.contains("${API_SECRET}"), "the fixture changed shape");
    let env = |name: &str| match name {
        "API_SECRET" => Some("hunter2hunter".to_string()),
        other => fixture_env(other),
    };
    let loaded = load_str(&text, "leak.yaml", &env);
    let timeout = loaded
        .diagnostics
        .iter()
        .find(|d| d.path.ends_with("timeout"))
        .expect("the timeout is reported");
    let rendered = format!("{} {:?} {}", timeout.message, timeout.hint, timeout.render(&text));
    assert!(!rendered.contains("hunter2hunter"), "{rendered}");
    assert!(rendered.contains("***"), "{rendered}");
}

#[test]
fn many_problems_are_reported_at_once() {
    let text = std::fs::read_to_string("tests/fixtures/invalid/29-many-problems-at-once.yaml").unwrap();
    let loaded = load_str(&text, "29.yaml", &fixture_env);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(errors.len() >= 5, "expected at least 5 errors, got {errors:#?}");
    for path in [
        "target.batch",
        "source.records",
        "source.request.query.from",
        "target.connection",
        "source.incremental.window",
    ] {
        assert!(errors.iter().any(|d| d.path == path), "no error at {path}: {errors:#?}");
    }
}

#[test]
fn json_diagnostics_carry_file_line_column_path_and_hint() {
    let text = std::fs::read_to_string("tests/fixtures/invalid/02-unknown-top-level-key.yaml").unwrap();
    let loaded = load_str(&text, "02.yaml", &fixture_env);
    let json = serde_json::to_value(&loaded.diagnostics).unwrap();
    let first = json
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "valuemaps")
        .unwrap();
    assert_eq!(first["file"], "02.yaml");
    assert_eq!(first["path"], "valuemaps");
    assert_eq!(first["severity"], "error");
    assert!(first["line"].as_u64().unwrap() > 1);
    assert!(first["hint"].as_str().unwrap().contains("value_maps"));
}

#[test]
fn shipped_and_valid_schemes_validate() {
    // Scheme files only: schemes/tests/ holds their `ferry test` files.
    let mut files: Vec<_> = std::fs::read_dir("schemes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.extend(
        std::fs::read_dir("tests/fixtures/valid")
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    assert!(files.len() >= 2);
    // Shipped schemes read their credentials from the environment; give every variable a value.
    let any_env = |name: &str| {
        Some(if name.ends_with("_URL") {
            "http://127.0.0.1:9/".to_string()
        } else {
            format!("{name}-value")
        })
    };
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = load_str(&text, &path.display().to_string(), &any_env);
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        assert!(loaded.plan.is_some());
    }
}

#[test]
fn shipped_schemes_carry_the_schema_modeline() {
    for entry in std::fs::read_dir("schemes").unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue; // schemes/tests/: `ferry test` files, not schemes
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/scheme.schema.json"),
            "{} lacks the modeline",
            path.display()
        );
    }
}

/// Every `$ref` in the schema points at something from the document root; an editor
/// stops validating a file at the first one that does not.
#[test]
fn json_schema_references_resolve() {
    fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let schema = ferry::scheme::raw::json_schema();
    let mut found = Vec::new();
    refs(&schema, &mut found);
    assert!(found.contains(&"#/$defs/FieldValue"), "{found:?}");
    for target in found {
        let pointer = target.strip_prefix('#').expect("local reference");
        assert!(schema.pointer(pointer).is_some(), "{target} does not resolve");
    }
}

#[test]
fn committed_json_schema_is_current() {
    let generated = serde_json::to_string_pretty(&ferry::scheme::raw::json_schema()).unwrap() + "\n";
    let committed = std::fs::read_to_string("schema/scheme.schema.json").unwrap_or_default();
    if std::env::var("FERRY_UPDATE_SCHEMA").is_ok() {
        std::fs::create_dir_all("schema").unwrap();
        std::fs::write("schema/scheme.schema.json", &generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "schema/scheme.schema.json is stale; regenerate it with `FERRY_UPDATE_SCHEMA=1 cargo test --test validate committed_json_schema_is_current` (or `ferry schema > schema/scheme.schema.json`)"
    );
}

/// Replaces `old` with `new` in the minimal valid scheme (which must contain `old`).
fn minimal_with(edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml").unwrap();
    for (old, new) in edits {
        assert!(text.contains(old), "the fixture has no {old:?}");
        text = text.replacen(old, new, 1);
    }
    text
}

/// A scalar that is exactly one `${VAR}` takes the type its place expects: numbers,
/// booleans and durations from the environment work; strings stay strings.
#[test]
fn env_references_take_the_type_their_place_expects() {
    let text = minimal_with(&[
        (
            "erp: {connector: http, base_url: \"http://127.0.0.1:8080\"}",
            "erp: {connector: http, base_url: \"http://127.0.0.1:8080\", in_flight: \"${FERRY_IN_FLIGHT:-4}\", timeout: \"${FERRY_TIMEOUT:-45s}\", rate: {per_second: \"${FERRY_RATE}\"}}",
        ),
        ("  batch: 50\n", "  batch: ${FERRY_BATCH}\n  object: ${CODE}\n"),
        ("value_maps:", "failures: {replay: \"${FERRY_REPLAY:-false}\", max_attempts: \"${FERRY_ATTEMPTS}\"}\nvalue_maps:"),
        ("size: \"<< page.size >>\"", "size: \"<< page.size >>\", code: \"${CODE}\""),
    ]);
    let env = |name: &str| match name {
        "FERRY_BATCH" => Some("25".to_string()),
        "FERRY_RATE" => Some("1.5".to_string()),
        "FERRY_ATTEMPTS" => Some(" 3 ".to_string()),
        "CODE" => Some("007".to_string()),
        other => fixture_env(other),
    };
    let loaded = load_str(&text, "typed.yaml", &env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.expect("a plan");
    let erp = &plan.connections["erp"];
    assert_eq!(erp.in_flight, 4);
    assert_eq!(erp.timeout, std::time::Duration::from_secs(45));
    assert_eq!(erp.rate.as_ref().map(|r| r.per_second), Some(1.5));
    assert_eq!(plan.target.batch, 25);
    assert!(!plan.failures.replay);
    assert_eq!(plan.failures.max_attempts, 3);
    assert_eq!(plan.target.object, "007", "a string place keeps the text");
    let code = &plan.raw.source.request.query["code"];
    assert_eq!(code, "007", "a free-form value keeps the text");
}

/// A value that came whole from a variable and is wrong for another reason (here: below the
/// minimum) says where it came from.
#[test]
fn problems_with_a_value_from_the_environment_name_the_variable() {
    let text = minimal_with(&[("  batch: 50\n", "  batch: ${FERRY_BATCH:-0}\n")]);
    let loaded = load_str(&text, "zero.yaml", &fixture_env);
    let batch = loaded
        .diagnostics
        .iter()
        .find(|d| d.path == "target.batch")
        .expect("an error at target.batch");
    assert!(batch.is_error());
    assert!(
        batch
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("the value comes from ${FERRY_BATCH}"),
        "{batch:?}"
    );
}

/// Under `--no-env` a missing variable is a note, a placeholder stands in (no type or URL
/// errors from it), real problems are still reported, and no plan comes out.
#[test]
fn no_env_notes_missing_variables_and_checks_the_rest() {
    use ferry::scheme::{load_str_with, LoadOptions, MissingEnv};
    let text = minimal_with(&[
        (
            "erp: {connector: http, base_url: \"http://127.0.0.1:8080\"}",
            "erp: {connector: http, base_url: \"http://${ERP_HOST}:8080\", in_flight: \"${FERRY_IN_FLIGHT}\", timeout: \"${FERRY_TIMEOUT}\", retry: {attempts: \"${FERRY_ATTEMPTS}\"}}",
        ),
        ("  batch: 50\n", "  batch: ${FERRY_BATCH}\n"),
        ("start: \"2024-01-01 00:00:00\"", "start: \"${SYNC_START}\""),
        ("value_maps:", "failures: {replay: \"${FERRY_REPLAY}\"}\nvalue_maps:"),
    ]);
    let nothing = |_: &str| None;
    let options = LoadOptions {
        env: &nothing,
        missing_env: MissingEnv::Note,
    };
    let loaded = load_str_with(&text, "ci.yaml", &options);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert!(loaded.plan.is_none(), "a placeholder never reaches a plan");
    let mut noted: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == ferry::diag::Severity::Note)
        .map(|d| d.message.split('`').nth(1).unwrap())
        .collect();
    noted.sort();
    assert_eq!(
        noted,
        [
            "ERP_HOST",
            "FERRY_ATTEMPTS",
            "FERRY_BATCH",
            "FERRY_IN_FLIGHT",
            "FERRY_REPLAY",
            "FERRY_TIMEOUT",
            "SHOP_TOKEN",
            "SHOP_URL",
            "SYNC_START"
        ],
        "one note per variable"
    );
    assert!(loaded.diagnostics.iter().all(|d| d.line > 0 && d.column > 0));

    // Without --no-env the same scheme fails on every missing variable.
    let strict = load_str(&text, "ci.yaml", &nothing);
    let missing = strict
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.message.contains("is not set"))
        .count();
    assert_eq!(missing, 9, "{:#?}", strict.diagnostics);
    assert_eq!(
        strict.diagnostics.len(),
        9,
        "only the missing variables, no errors about their stand-ins: {:#?}",
        strict.diagnostics
    );

    // Real mistakes still surface under --no-env.
    let broken = text.replace("<< page.size >>", "<< page.sise >>");
    let loaded = load_str_with(&broken, "ci.yaml", &options);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].message.contains("unknown member `sise` of `page`"));
}

/// `--strict` turns warnings into errors; notes stay notes.
#[test]
fn strict_makes_warnings_errors() {
    let text = minimal_with(&[(
        "FBillNo: \"<< order_no >>\"",
        "FBillNo: \"<< order_no >>\"\n    W: \"<< window.start >>\"",
    )]);
    let mut loaded = load_str(&text, "w.yaml", &fixture_env);
    assert!(!loaded.has_errors() && loaded.plan.is_some());
    loaded.make_strict();
    assert!(loaded.has_errors());
    assert!(loaded.plan.is_none());
    let promoted = loaded.diagnostics.iter().find(|d| d.path == "target.fields.W").unwrap();
    assert!(promoted.is_error());
    assert!(promoted.hint.as_deref().unwrap().ends_with("(an error under --strict)"));
}

/// The Simply → K3Cloud seed scheme with its source request replaced by `request`.
fn simply_source(request: &str, settings_extra: &str) -> String {
    let seed = std::fs::read_to_string("schemes/simply-accounts-to-kingdee-customers.yaml").unwrap();
    let start = seed.find("  request:\n    api: query").unwrap();
    let end = seed[start..].find("  incremental:").unwrap() + start;
    let text = format!("{}{request}{}", &seed[..start], &seed[end..]);
    text.replace(
        "      access_key: \"${SIMPLY_ACCESS_KEY}\"\n",
        &format!("      access_key: \"${{SIMPLY_ACCESS_KEY}}\"\n{settings_extra}"),
    )
}

fn any_env(name: &str) -> Option<String> {
    Some(if name.ends_with("_URL") {
        "http://127.0.0.1:9/".to_string()
    } else {
        format!("{name}-value")
    })
}

#[test]
fn simply_sync_warns_that_it_reads_only_the_login_users_records() {
    let sync = "  request:\n    api: sync\n    body: {modifiedTime: \"<< window.start | timestamp >>\", elementType: Accounts}\n";
    let loaded = load_str(&simply_source(sync, ""), "sync.yaml", &any_env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let warning = loaded
        .diagnostics
        .iter()
        .find(|d| d.path == "source.request.api")
        .expect("the owner warning");
    assert_eq!(
        warning.message,
        "sync returns only records the login user owns (reference §5): use an admin user or `query` on modifiedtime"
    );
    assert!(warning.line > 0);
    let plan = loaded.plan.unwrap();
    assert_eq!(
        plan.source.deleted.as_ref().map(|p| p.as_str()),
        Some("$.result.deleted[*]"),
        "sync reports deleted ids"
    );

    // An application sync reads every user's records; `query` has no such limit.
    let application = simply_source(sync, "      sync_type: application\n");
    let loaded = load_str(&application, "sync.yaml", &any_env);
    assert!(loaded.diagnostics.iter().all(|d| d.path != "source.request.api"));
    let seed = std::fs::read_to_string("schemes/simply-accounts-to-kingdee-customers.yaml").unwrap();
    let loaded = load_str(&seed, "seed.yaml", &any_env);
    assert!(loaded.diagnostics.iter().all(|d| d.path != "source.request.api"));
    assert!(loaded.plan.unwrap().source.deleted.is_none());
}

#[test]
fn delete_operations_read_ids_only() {
    let base = std::fs::read_to_string("tests/fixtures/valid/minimal.yaml").unwrap();
    let with_delete = |delete: &str| {
        let fields = base.find("  fields:\n").unwrap();
        format!("{}  delete:\n{delete}{}", &base[..fields], &base[fields..])
    };
    let ok = [
        "    request: {method: DELETE, path: \"/orders/<< target_id >>\", query: {source: \"<< source_id >>\"}}\n",
        "    request: {method: POST, path: /orders/delete, body: {ids: \"<< target_ids >>\", rows: \"<< rows >>\"}}\n",
    ];
    for delete in ok {
        let loaded = load_str(&with_delete(delete), "d.yaml", &fixture_env);
        assert!(!loaded.has_errors(), "{delete}: {:#?}", loaded.diagnostics);
        let per = loaded.plan.unwrap().target.delete.unwrap().per;
        assert_eq!(
            per == ferry::scheme::raw::Per::Batch,
            delete.contains("target_ids"),
            "{delete}"
        );
    }
    let wrong = [
        ("    request: {method: DELETE, path: \"/orders/<< record.id >>\"}\n", "unknown variable `record`"),
        ("    request: {method: POST, path: /d, body: {ids: \"<< target_ids >>\", one: \"<< target_id >>\"}}\n", "this delete sends a whole batch"),
        ("    request: {method: POST, path: /d, body: {ids: \"<< target_ids >>\"}}\n    per: row\n", "only available when the delete sends a batch"),
        ("    request: {method: POST, path: /d, body: {ids: \"<< target_ids >>\"}}\n    response: {row_error_key: \"<< key >>\"}\n", "a delete sends no row"),
    ];
    for (delete, expected) in wrong {
        let loaded = load_str(&with_delete(delete), "d.yaml", &fixture_env);
        let errors: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.as_str())
            .collect();
        assert!(errors.iter().any(|m| m.contains(expected)), "{delete}: {errors:#?}");
    }
}

/// A bill scheme whose `FSaleOrderEntry` block is `entries` (indented under it), writing to
/// `target` (a K3Cloud or an http connection).
fn bill_scheme(target: &str, entries: &str) -> String {
    let request = if target == "k3" {
        "{api: BatchSave, body: {formid: SAL_SaleOrder, data: {Model: \"<< rows >>\"}}}"
    } else {
        "{method: POST, path: /orders/batch, body: {items: \"<< rows >>\"}}"
    };
    format!(
        r#"
name: bills
connections:
  shop: {{connector: http, base_url: "http://127.0.0.1:8080"}}
  k3: {{connector: kingdee-k3cloud, base_url: "http://127.0.0.1:8081/k3cloud/", settings: {{acct_id: a, username: u, password: p, auth: validate_user}}}}
source:
  connection: shop
  request: {{method: GET, path: /orders}}
  records: $.orders[*]
  id: "<< order_no >>"
target:
  connection: {target}
  create:
    request: {request}
  fields:
    FBillNo: "<< order_no >>"
    FSaleOrderEntry:
      for_each: $.lines[*]
{entries}
"#
    )
}

fn errors_of(text: &str) -> Vec<(String, String)> {
    let loaded = load_str(text, "bills.yaml", &|_: &str| None);
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.path.clone(), d.message.clone()))
        .collect()
}

#[test]
fn for_each_key_and_target_id_name_the_detail_lists_to_match() {
    let text = bill_scheme(
        "k3",
        "      key: \"<< line_no >>\"\n      target_id: FEntryID\n      fields: {FQty: \"<< qty >>\"}",
    );
    let loaded = load_str(&text, "bills.yaml", &|_: &str| None);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let plan = loaded.plan.unwrap();
    assert_eq!(
        plan.target.detail_lists,
        [ferry::connector::DetailList {
            path: vec!["FSaleOrderEntry".into()],
            id_field: "FEntryID".into()
        }]
    );
    // Without `target_id` nothing is matched.
    let plain = bill_scheme("k3", "      fields: {FQty: \"<< qty >>\"}");
    assert!(load_str(&plain, "bills.yaml", &|_: &str| None)
        .plan
        .unwrap()
        .target
        .detail_lists
        .is_empty());
}

#[test]
fn detail_identities_that_cannot_work_are_refused_where_they_are_written() {
    let at = |entries: &str, target: &str| errors_of(&bill_scheme(target, entries));
    let base = "target.fields.FSaleOrderEntry";
    // Ferry fills the id field; the scheme must not.
    let errors = at(
        "      target_id: FEntryID\n      fields: {FQty: \"<< qty >>\", FEntryID: \"<< id >>\"}",
        "k3",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, format!("{base}.fields.FEntryID"));
    assert!(errors[0].1.contains("Ferry fills it"), "{errors:?}");
    // A key that is the same for every row.
    for key in ["\"LINE\"", "\"<< 'x' >>\"", "\"<< now >>\""] {
        let errors = at(
            &format!("      key: {key}\n      target_id: FEntryID\n      fields: {{FQty: \"<< qty >>\"}}"),
            "k3",
        );
        assert_eq!(errors.len(), 1, "{key}: {errors:?}");
        assert_eq!(errors[0].0, format!("{base}.key"));
        assert!(errors[0].1.contains("cannot tell them apart"), "{errors:?}");
    }
    // A key without target_id.
    let errors = at("      key: \"<< sku >>\"\n      fields: {FQty: \"<< qty >>\"}", "k3");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].1.contains("lacks"), "{errors:?}");
    // A misspelt member gets a suggestion.
    let loaded = load_str(
        &bill_scheme("k3", "      targetid: FEntryID\n      fields: {FQty: \"<< qty >>\"}"),
        "bills.yaml",
        &|_: &str| None,
    );
    let misspelt = loaded.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert!(
        misspelt.hint.as_deref().unwrap_or_default().contains("`target_id`"),
        "{misspelt:?}"
    );
    // A target whose answers carry no detail ids could never fill it.
    let errors = at("      target_id: id\n      fields: {FQty: \"<< qty >>\"}", "shop");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, format!("{base}.target_id"));
    assert!(
        errors[0].1.contains("does not report the ids of detail rows"),
        "{errors:?}"
    );
    // Rows nested in another for_each have no one place to be matched at.
    let nested = "      fields:\n        FQty: \"<< qty >>\"\n        FSub:\n          for_each: $.parts[*]\n          target_id: FDetailID\n          fields: {FNo: \"<< no >>\"}";
    let errors = at(nested, "k3");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, format!("{base}.fields.FSub.target_id"));
}
