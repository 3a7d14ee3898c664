//! `ferry init`: a new scheme and its test file, both valid from the start.
//!
//! The scheme is written as text, not serialized, so it carries comments telling a new user
//! what to change (every such line is marked `CHANGE`). Without connectors it is a small
//! shop → ERP scheme over plain HTTP that runs against `ferry simulate shop`. With built-in
//! connectors its two halves come from one table with an entry per connector
//! ([`profile`]): the connection with every setting the connector needs as a `${ENV}`
//! placeholder, a list request with an incremental window for reading, and a write for
//! writing. The target's fields read the source record through three expressions each
//! source offers (its business code, its name and a note), so any source fits any target.
//!
//! Before writing anything, the scheme is loaded as `ferry validate --no-env --strict`
//! would load it; a generated scheme with a problem is a bug in this module, reported and
//! never written. Existing files are never overwritten without `--force`.
//!
//! The test file's format belongs to `ferry test`; [`test_file`] is the one place that
//! writes it, so it can follow that command's format as it settles.

use crate::diag::choices_hint;
use crate::error::exit;
use crate::protocol::CONNECTORS;
use crate::scheme;
use clap::Args;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InitArgs {
    /// Name of the scheme and of its file (default `my-scheme`, or `<source>-to-<target>`
    /// when connectors are given).
    name: Option<String>,
    /// Built-in connector of the source (default `http`).
    #[arg(long, value_name = "NAME")]
    connector: Option<String>,
    /// Built-in connector of the target (default `http`).
    #[arg(long, value_name = "NAME")]
    target_connector: Option<String>,
    /// Directory for the scheme; its test file goes to DIR/tests/.
    #[arg(long, value_name = "DIR", default_value = "schemes")]
    dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

/// `ferry init`: writes the scheme and its test file and prints what to run next.
pub fn init(args: InitArgs) -> i32 {
    let source = match connector_arg(args.connector.as_deref(), "--connector") {
        Ok(name) => name,
        Err(code) => return code,
    };
    let target = match connector_arg(args.target_connector.as_deref(), "--target-connector") {
        Ok(name) => name,
        Err(code) => return code,
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(source, target),
    };
    if let Err(message) = check_name(&name) {
        eprintln!("error: {message}");
        eprintln!("  hint: the name becomes the file name: use letters, digits, `-` and `_`, e.g. shop-orders-to-erp");
        return exit::CONFIG;
    }
    let scheme_path = args.dir.join(format!("{name}.yaml"));
    let test_path = args.dir.join("tests").join(format!("{name}.test.yaml"));
    if !args.force {
        let existing: Vec<String> = [&scheme_path, &test_path]
            .iter()
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            let verb = if existing.len() == 1 { "exists" } else { "exist" };
            eprintln!("error: {} already {verb}; nothing was written", existing.join(" and "));
            eprintln!("  hint: pass --force to overwrite, or give another name: ferry init NAME");
            return exit::CONFIG;
        }
    }
    let schema_file = find_schema_file(&args.dir);
    let scaffold = match scaffold(&name, source, target, schema_file.as_deref()) {
        Ok(scaffold) => scaffold,
        Err(problems) => {
            eprintln!(
                "error: ferry init generated a scheme that does not validate (a bug in ferry; please report it):"
            );
            eprintln!("{problems}");
            return exit::ABORTED;
        }
    };
    let tests_dir = args.dir.join("tests");
    if let Err(e) = std::fs::create_dir_all(&tests_dir) {
        eprintln!("error: cannot create {}: {e}", tests_dir.display());
        return exit::CONFIG;
    }
    for (path, text) in [(&scheme_path, &scaffold.scheme), (&test_path, &scaffold.test)] {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return exit::CONFIG;
        }
        println!("wrote {}", path.display());
    }
    print_next_steps(&scheme_path, &scaffold.variables);
    exit::OK
}

/// A connector named on the command line, checked against [`CONNECTORS`].
fn connector_arg(given: Option<&str>, flag: &str) -> Result<&'static str, i32> {
    let Some(given) = given else {
        return Ok(crate::protocol::http::NAME);
    };
    let names: Vec<&'static str> = CONNECTORS.iter().map(|c| c.name).collect();
    match names.iter().find(|name| **name == given) {
        Some(name) => Ok(name),
        None => {
            eprintln!("error: unknown connector `{given}` for {flag}");
            // `k3cloud` is a part of `kingdee-k3cloud`, too far for a typo measure.
            let containing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|name| given.len() >= 3 && name.contains(&given.to_ascii_lowercase()))
                .collect();
            let hint = match containing.as_slice() {
                [one] => format!("did you mean `{one}`? (choose from: {})", names.join(", ")),
                _ => choices_hint(given, &names),
            };
            eprintln!("  hint: {hint}");
            Err(exit::CONFIG)
        }
    }
}

/// `my-scheme` for the generic scheme, else `<source>-to-<target>`.
pub fn default_name(source: &str, target: &str) -> String {
    if is_generic(source, target) {
        "my-scheme".to_string()
    } else {
        format!("{source}-to-{target}")
    }
}

fn is_generic(source: &str, target: &str) -> bool {
    source == crate::protocol::http::NAME && target == crate::protocol::http::NAME
}

/// A scheme name is also a file name, so it stays within letters, digits, `-`, `_` and `.`.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() {
        return Err("the scheme name is empty".into());
    }
    if name.len() > 100 {
        return Err(format!(
            "the scheme name is {} characters long; keep it to 100",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(allowed) {
        return Err(format!("`{name}` cannot be a scheme name"));
    }
    Ok(())
}

/// The committed JSON Schema nearest to `dir`, searched in `dir` and its ancestors as
/// `schema/scheme.schema.json`, as a path relative to `dir` for the modeline.
fn find_schema_file(dir: &Path) -> Option<String> {
    let absolute = std::path::absolute(dir).ok()?;
    for (ups, ancestor) in absolute.ancestors().enumerate() {
        if ancestor.join("schema").join("scheme.schema.json").is_file() {
            return Some(format!("{}schema/scheme.schema.json", "../".repeat(ups)));
        }
    }
    None
}

/// What `ferry init` writes.
#[derive(Debug)]
pub struct Scaffold {
    pub scheme: String,
    pub test: String,
    /// Every `${NAME}` the scheme reads, with whether it has a `:-default`.
    pub variables: Vec<(String, bool)>,
}

/// Builds the scheme `name` reading from `source` and writing to `target` (connector
/// names) and its test file, and checks the scheme as `ferry validate --no-env --strict`
/// does. `schema_file` is the modeline's path to the JSON Schema, relative to the scheme.
/// `Err` holds the rendered problems (a bug in the generator).
pub fn scaffold(name: &str, source: &str, target: &str, schema_file: Option<&str>) -> Result<Scaffold, String> {
    let scheme_text = scheme_text(name, source, target, schema_file)?;
    let variables = variables(&scheme_text);
    validate_no_env_strict(&scheme_text, &format!("{name}.yaml"))?;
    let test = test_file(&format!("../{name}.yaml"), &variables);
    Ok(Scaffold {
        scheme: scheme_text,
        test,
        variables,
    })
}

/// Loads `text` as `ferry validate --no-env --strict` does; `Err` renders every problem.
pub fn validate_no_env_strict(text: &str, file: &str) -> Result<(), String> {
    let mut loaded = scheme::load_str_with(
        text,
        file,
        &scheme::LoadOptions {
            env: &|_| None,
            missing_env: scheme::MissingEnv::Note,
        },
    );
    loaded.make_strict();
    if loaded.has_errors() {
        let rendered: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.render(&loaded.text))
            .collect();
        return Err(rendered.join("\n"));
    }
    Ok(())
}

/// Every `${NAME}` `text` reads, in order of first use, found by the scheme loader itself
/// (so comments and `$${…}` escapes are not counted); `true` when it is written with a
/// `:-default` somewhere (read from the text: it only decides how the names are listed).
pub fn variables(text: &str) -> Vec<(String, bool)> {
    let read = std::cell::RefCell::new(Vec::<String>::new());
    let record = |name: &str| {
        let mut read = read.borrow_mut();
        if !read.iter().any(|seen| seen == name) {
            read.push(name.to_string());
        }
        None
    };
    let _ = scheme::yaml::load_with(text, &record, scheme::MissingEnv::Note);
    let with_default: BTreeSet<String> = text
        .match_indices("${")
        .filter_map(|(at, _)| {
            let inner = &text[at + 2..at + 2 + text[at + 2..].find('}')?];
            inner.split_once(":-").map(|(name, _)| name.to_string())
        })
        .collect();
    read.into_inner()
        .into_iter()
        .map(|name| {
            let defaulted = with_default.contains(&name);
            (name, defaulted)
        })
        .collect()
}

/// The test file of a scheme for `ferry test`: the scheme's path (relative to the test
/// file), a stand-in value for every variable the scheme reads, and no recorded runs yet.
///
/// The format is `ferry test`'s; this function is the one place that writes it.
pub fn test_file(scheme_path: &str, variables: &[(String, bool)]) -> String {
    let mut out = String::new();
    out.push_str("# Hermetic test of the scheme below, for `ferry test`: it replays recorded answers, so it\n");
    out.push_str("# needs no network and no real credentials.\n");
    out.push_str(&format!("scheme: {scheme_path}\n"));
    out.push_str("# Stand-in values for every variable the scheme reads; never put real secrets here.\n");
    if variables.is_empty() {
        out.push_str("env: {}\n");
    } else {
        out.push_str("env:\n");
        for (name, _) in variables {
            out.push_str(&format!("  {name}: {}\n", yaml_quote(&stand_in(name))));
        }
    }
    out.push_str("# `ferry test --record` runs the scheme twice against the built-in simulators and fills\n");
    out.push_str("# this list with the requests it sent, the answers it got and the store afterwards.\n");
    out.push_str("runs: []\n");
    out
}

/// A harmless stand-in for variable `name`: an address that never resolves for URLs
/// (`.invalid` is reserved for that), a recognisable dummy otherwise.
fn stand_in(name: &str) -> String {
    let lower = name.to_ascii_lowercase().replace('_', "-");
    if name == "K3CLOUD_APP_ID" {
        // K3Cloud checks the shape before signing: <clientId>_<32 base64 characters>.
        "224466_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0".to_string()
    } else if name.ends_with("_URL") {
        format!("https://{}.invalid", lower.trim_end_matches("-url"))
    } else {
        format!("test-{lower}")
    }
}

fn yaml_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn print_next_steps(scheme_path: &Path, variables: &[(String, bool)]) {
    let scheme = scheme_path.display();
    let required: Vec<&str> = variables
        .iter()
        .filter(|(_, defaulted)| !defaulted)
        .map(|(name, _)| name.as_str())
        .collect();
    let optional: Vec<&str> = variables
        .iter()
        .filter(|(_, defaulted)| *defaulted)
        .map(|(name, _)| name.as_str())
        .collect();
    println!();
    println!("Edit the lines marked CHANGE, then set the variables the scheme reads (export them, or");
    println!("write KEY=VALUE lines to a file and add --env-file FILE to each command):");
    if !required.is_empty() {
        println!("  needed:       {}", required.join(" "));
    }
    if !optional.is_empty() {
        println!("  with default: {}", optional.join(" "));
    }
    println!();
    println!("Next:");
    println!("  ferry validate {scheme}");
    println!("  ferry check {scheme}");
    println!("  ferry run --dry-run {scheme}");
}

// ---------------------------------------------------------------------------
// The scheme text
// ---------------------------------------------------------------------------

use crate::protocol::scaffold::Scaffold as Profile;

/// The `ferry init` parts of built-in connector `connector`; `None` for a name not in
/// [`CONNECTORS`].
fn profile(connector: &str) -> Option<&'static Profile> {
    crate::protocol::connector(connector).map(|c| c.scaffold)
}

/// The scheme's text; `Err` for a connector without a profile (a bug: every name in
/// [`CONNECTORS`] has one).
fn scheme_text(name: &str, source: &str, target: &str, schema_file: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    if let Some(path) = schema_file {
        out.push_str(&format!("# yaml-language-server: $schema={path}\n#\n"));
    }
    let editor_hint = if schema_file.is_some() { "" } else { NO_SCHEMA_FILE };
    if is_generic(source, target) {
        out.push_str(GENERIC_HEADER);
        out.push_str(editor_hint);
        out.push_str(&GENERIC.replace("@NAME@", name));
        return Ok(out);
    }
    let missing = |connector: &str| format!("ferry init has no template for connector `{connector}`");
    let from = profile(source).ok_or_else(|| missing(source))?;
    let to = profile(target).ok_or_else(|| missing(target))?;
    let source_conn = from.connection.to_string();
    let source_env = from.env.to_string();
    let (target_conn, target_env) = if source == target {
        (format!("{}_target", to.connection), format!("{}_TARGET", to.env))
    } else if target == crate::protocol::http::NAME {
        ("target_api".to_string(), "TARGET_API".to_string())
    } else {
        (to.connection.to_string(), to.env.to_string())
    };
    let fill = |text: &str, conn: &str, env: &str| text.replace("@CONN@", conn).replace("@ENV@", env);
    out.push_str(&format!("# {} → {}.\n", capitalize(from.source.what), to.target.what));
    out.push_str("# Generated by `ferry init`: change every line marked CHANGE, and keep credentials in the\n");
    out.push_str("# environment (`${NAME}`), never in this file.\n");
    out.push_str(editor_hint);
    out.push_str(&format!("name: {name}\n"));
    out.push_str(&format!(
        "description: {} → {}   # CHANGE: say what this scheme is for\n\n",
        capitalize(from.source.what),
        to.target.what
    ));
    out.push_str("connections:\n");
    out.push_str(&format!("  {source_conn}:\n    connector: {source}\n"));
    out.push_str(&fill(from.connection_body, &source_conn, &source_env));
    out.push_str(&format!("  {target_conn}:\n    connector: {target}\n"));
    out.push_str(&fill(to.connection_body, &target_conn, &target_env));
    out.push_str(&format!("\nsource:\n  connection: {source_conn}\n"));
    out.push_str(&fill(from.source.body, &source_conn, &source_env));
    out.push_str(&format!("\ntarget:\n  connection: {target_conn}\n"));
    let target_body = fill(to.target.body, &target_conn, &target_env)
        .replace("@code@", from.source.code)
        .replace("@name@", from.source.name)
        .replace("@note@", from.source.note);
    out.push_str(&target_body);
    Ok(out)
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

const NO_SCHEMA_FILE: &str = "\
#
# Editors check and complete this file against Ferry's JSON Schema: write it with
# `ferry schema > schema/scheme.schema.json` and make the first line of this file
# `# yaml-language-server: $schema=<path to that file>`.
";

/// The generic scheme: shop orders → ERP orders over plain HTTP, runnable against
/// `ferry simulate shop`.
const GENERIC_HEADER: &str = "\
# Shop orders → ERP sales orders over plain HTTP. Generated by `ferry init`: change every
# line marked CHANGE. Try it first against the built-in simulator, which serves both APIs:
#   ferry simulate shop --port 8080 &
#   SHOP_TOKEN=demo-token ferry run <this file>
";

const GENERIC: &str = r#"name: @NAME@
description: Shop orders → ERP sales orders      # CHANGE: say what this scheme is for
timezone: Asia/Shanghai          # the zone of times without an offset, in both APIs

connections:
  shop:
    connector: http
    base_url: "${SHOP_URL:-http://127.0.0.1:8080}"          # CHANGE: your source API
    headers: {Authorization: "Bearer ${SHOP_TOKEN}"}        # credentials only as ${NAME}
  erp:
    connector: http
    base_url: "${ERP_URL:-http://127.0.0.1:8080}"           # CHANGE: your target API

source:
  connection: shop
  # CHANGE: the list request. `window` is the incremental window being read, `page` the page.
  request:
    method: GET
    path: /orders
    query:
      modified_from: "<< window.start | datetime >>"
      modified_to: "<< window.end | datetime >>"
      page: "<< page.number >>"
      size: "<< page.size >>"
  # How to tell a good answer from an error, and where the records are in it.
  response: {success: "<< body.ok >>", error: "<< body.message >>"}
  records: $.data.orders[*]
  pagination: {style: page_number, start: 1, size: 100, total: $.data.total}
  # Each run reads the windows since the last checkpoint; the first run starts at `start`.
  incremental: {field: modified_at, start: "2024-01-01 00:00:00", window: 1d, lookback: 10m, lag: 1m}
  id: "<< order_no >>"             # CHANGE: what identifies a record at the source
  name: "<< customer_name >>"

target:
  connection: erp
  batch: 100
  key: "<< FBillNo >>"             # the row's business key, matched against per-row errors
  create:                          # records not yet mapped to a target id
    request: {method: POST, path: /orders/batch, body: {items: "<< rows >>"}}
    response:
      success: "<< body.code == 0 >>"
      error: "<< body.message >>"
      row_ids: $.data.results[*].id
      row_errors: $.data.errors[*]
  # Finds a row by its key, so a create whose answer was lost is never sent twice.
  lookup:
    request: {method: GET, path: /orders/lookup, query: {number: "<< key >>"}}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>"}
    id: $.data.id
  update:                          # records already mapped; `target_id` is their id
    request: {method: PUT, path: "/orders/<< target_id >>", body: "<< row >>"}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>", id: $.data.id}
  # CHANGE: the row the target expects. Templates read the source record; a missing field
  # fails that record into the failure ledger, naming the field.
  fields:
    FBillNo: "<< order_no >>"
    FDate: "<< created_at | date >>"
    FCustomerId: {FNumber: "<< customer_code >>"}
    FAmount: "<< amount | float >>"
    FEntity:                       # detail rows: one per element of the record's `lines`
      for_each: $.lines[*]
      fields:
        FMaterialId: {FNumber: "<< sku >>"}
        FQty: "<< qty | int >>"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<&'static str> {
        CONNECTORS.iter().map(|c| c.name).collect()
    }

    #[test]
    fn every_connector_has_a_profile() {
        for name in names() {
            assert!(profile(name).is_some(), "no ferry init template for `{name}`");
        }
        assert!(profile("nope").is_none());
    }

    #[test]
    fn every_pair_of_connectors_validates_under_no_env_strict() {
        for source in names() {
            for target in names() {
                let name = default_name(source, target);
                if let Err(problems) = scaffold(&name, source, target, None) {
                    panic!("{source} → {target}:\n{problems}");
                }
            }
        }
    }

    /// Settings the schema leaves optional but the connector's default mode needs.
    const NEEDED_BY_DEFAULT_MODE: &[(&str, &[&str])] = &[
        // auth: signed_headers (reference §2, option A)
        ("kingdee-k3cloud", &["app_id", "app_secret"]),
        // generation: v2 pulls the tenant's authorization (reference §3, step 2)
        ("kingdee-jdy", &["outer_instance_id"]),
        // generation: corp_access_token names the operator (reference §6)
        ("fxiaoke", &["current_open_user_id"]),
    ];

    #[test]
    fn vendor_connections_carry_every_required_setting_as_a_variable() {
        let schema = crate::scheme::raw::json_schema();
        let variants = schema["$defs"]["RawConnection"]["oneOf"].as_array().unwrap();
        for connector in names().into_iter().filter(|n| *n != "http") {
            let variant = variants
                .iter()
                .find(|v| v["properties"]["connector"]["const"] == connector)
                .unwrap();
            let reference = variant["properties"]["settings"]["$ref"].as_str().unwrap();
            let settings_schema = schema.pointer(reference.trim_start_matches('#')).unwrap();
            let mut needed: Vec<&str> = settings_schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            for (name, more) in NEEDED_BY_DEFAULT_MODE {
                if *name == connector {
                    needed.extend_from_slice(more);
                }
            }
            for (source, target) in [(connector, "http"), ("http", connector)] {
                let text = scheme_text("t", source, target, None).unwrap();
                let loaded = scheme::yaml::load_with(&text, &|_| None, scheme::MissingEnv::Note);
                let connection = loaded.value["connections"]
                    .as_object()
                    .unwrap()
                    .values()
                    .find(|c| c["connector"] == connector)
                    .unwrap();
                let prefix = profile(connector).unwrap().env;
                for setting in &needed {
                    let path = format!("connections.*.settings.{setting}");
                    let written = text
                        .lines()
                        .find(|line| line.trim_start().starts_with(&format!("{setting}:")))
                        .unwrap_or_else(|| panic!("{connector}: no `{setting}` ({path})"));
                    let value = written.split_once(':').unwrap().1.trim();
                    let value = value.split(" #").next().unwrap().trim();
                    assert!(
                        value.starts_with(&format!("\"${{{prefix}_")) && value.ends_with("}\""),
                        "{connector}: `{setting}` is {value}, not a ${{{prefix}_…}} variable"
                    );
                    assert!(connection["settings"].get(*setting).is_some(), "{connector}: {setting}");
                }
            }
        }
    }

    #[test]
    fn the_same_connector_on_both_sides_gets_two_connections_and_two_sets_of_variables() {
        let text = scheme_text("t", "guanyi", "guanyi", None).unwrap();
        assert!(
            text.contains("  guanyi:\n") && text.contains("  guanyi_target:\n"),
            "{text}"
        );
        let names: Vec<String> = variables(&text).into_iter().map(|(name, _)| name).collect();
        assert!(names.contains(&"GUANYI_APPKEY".to_string()), "{names:?}");
        assert!(names.contains(&"GUANYI_TARGET_APPKEY".to_string()), "{names:?}");
    }

    #[test]
    fn variables_are_found_by_the_loader_in_order_with_their_defaults() {
        let text = "# ${IN_A_COMMENT}\nname: x\nconnections:\n  a: {connector: http, base_url: \"${A_URL:-http://x}\", headers: {T: \"$${LITERAL} ${A_TOKEN}\"}}\n";
        assert_eq!(
            variables(text),
            [("A_URL".to_string(), true), ("A_TOKEN".to_string(), false)]
        );
    }

    #[test]
    fn the_test_file_names_the_scheme_and_stands_in_for_every_variable() {
        let scaffold = scaffold("gy", "guanyi", "kingdee-k3cloud", None).unwrap();
        let loaded = scheme::yaml::load_with(&scaffold.test, &|_| None, scheme::MissingEnv::Note);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.value["scheme"], "../gy.yaml");
        assert_eq!(loaded.value["runs"], serde_json::json!([]));
        let env = loaded.value["env"].as_object().unwrap();
        let wanted: Vec<&str> = scaffold.variables.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            env.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            wanted.iter().copied().collect()
        );
        assert_eq!(env["GUANYI_URL"], "https://guanyi.invalid");
        assert_eq!(env["K3CLOUD_APP_SECRET"], "test-k3cloud-app-secret");
        // With the stand-ins the scheme loads into a plan, as `ferry test` will need.
        let values = |name: &str| env.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let loaded = scheme::load_str(&scaffold.scheme, "gy.yaml", &values);
        assert!(loaded.plan.is_some(), "{:?}", loaded.diagnostics);
    }

    #[test]
    fn names_are_file_names() {
        assert_eq!(default_name("http", "http"), "my-scheme");
        assert_eq!(default_name("guanyi", "http"), "guanyi-to-http");
        for good in ["my-scheme", "orders_2024", "v1.2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../up", "a/b", "-x", ".hidden", "with space", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
