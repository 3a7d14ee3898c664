//! `ferry run DIR` and `ferry run PROJECT.yaml`: several schemes in one run, in dependency
//! order.
//!
//! A project is a directory (its `*.yaml`/`*.yml` scheme files, not its subdirectories and
//! not `*.test.yaml`) or a YAML file whose top level is `schemes: [path, …]` (paths relative
//! to the file). Every scheme is validated before any runs: one invalid scheme runs nothing
//! (exit 2). A scheme that reads `mapped_id('X', …)` with a literal `X` runs after the
//! scheme named `X` or writing target object `X`; cycles are refused. The schemes then run
//! one after another, sharing one HTTP client (its connection pool and the local rate
//! budgets of same-named connections), each under its own run lock, and one table sums
//! them up. A scheme whose dependency ended without a usable result (aborted, locked,
//! unreachable) is skipped, not run against missing mappings. The exit code is the worst
//! of the schemes' codes; a stop by signal ends the project with the signal's code.

use super::{logging, run_plan, LogFormat, RunArgs};
use crate::engine::Summary;
use crate::error::exit;
use crate::http::HttpClient;
use crate::scheme::model::ValueTemplate;
use crate::scheme::Plan;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// True when `path` names a project rather than one scheme.
pub fn is_project(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    project_entries(&text).is_some()
}

/// The `schemes:` list of a project file, with each entry's line; `None` when the text is
/// not a project file (no top-level `schemes:` list, or it also has a `source`).
fn project_entries(text: &str) -> Option<Vec<(String, usize)>> {
    let mut entries = Vec::new();
    let mut in_list = false;
    let mut seen = false;
    for (index, line) in text.lines().enumerate() {
        let bare = line.split(" #").next().unwrap_or("").trim_end();
        if bare.trim_start().starts_with('#') || bare.trim().is_empty() {
            continue;
        }
        let top_level = !bare.starts_with(' ') && !bare.starts_with('-');
        if top_level {
            if bare.starts_with("source:") {
                return None;
            }
            in_list = bare == "schemes:";
            seen |= in_list;
            if let Some(inline) = bare.strip_prefix("schemes:").map(str::trim) {
                if let Some(list) = inline.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    seen = true;
                    entries.extend(
                        list.split(',')
                            .map(|item| unquote(item.trim()))
                            .filter(|item| !item.is_empty())
                            .map(|item| (item, index + 1)),
                    );
                }
            }
            continue;
        }
        if in_list {
            if let Some(item) = bare.trim_start().strip_prefix("- ") {
                entries.push((unquote(item.trim()), index + 1));
            }
        }
    }
    seen.then_some(entries)
}

fn unquote(text: &str) -> String {
    text.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// The scheme files of a project, in the order given (a directory: by file name).
fn scheme_paths(project: &Path) -> Result<Vec<PathBuf>, String> {
    if project.is_dir() {
        let read =
            std::fs::read_dir(project).map_err(|e| format!("{}: cannot read the directory: {e}", project.display()))?;
        let mut paths: Vec<PathBuf> = read
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .filter(|path| {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.contains(".test.")
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(format!(
                "{}: the directory holds no scheme files (*.yaml)\n  hint: give a scheme file, or a directory of them",
                project.display()
            ));
        }
        return Ok(paths);
    }
    let text = std::fs::read_to_string(project).map_err(|e| format!("{}: {e}", project.display()))?;
    let entries = project_entries(&text).unwrap_or_default();
    if entries.is_empty() {
        return Err(format!(
            "{}: `schemes` lists no scheme files\n  hint: schemes: [customers.yaml, orders.yaml]",
            project.display()
        ));
    }
    let base = project.parent().unwrap_or(Path::new("."));
    let mut paths = Vec::new();
    for (entry, line) in entries {
        let path = base.join(&entry);
        if !path.is_file() {
            return Err(format!(
                "{}:{line}: schemes: {entry:?} is not a file (looked for {})\n  hint: paths are relative to the project file",
                project.display(),
                path.display()
            ));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// The literal objects a scheme's target fields read with `mapped_id('…')`.
pub fn mapped_objects(plan: &Plan) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    collect_mapped(&plan.target.fields, &mut found);
    found
}

fn collect_mapped(template: &ValueTemplate, found: &mut BTreeSet<String>) {
    match template {
        ValueTemplate::Template(t) => scan_mapped_id(t.source(), found),
        ValueTemplate::Array(items) => items.iter().for_each(|i| collect_mapped(i, found)),
        ValueTemplate::Object(items) => items.iter().for_each(|(_, i)| collect_mapped(i, found)),
        ValueTemplate::ForEach { fields, .. } => collect_mapped(fields, found),
        ValueTemplate::Literal(_) | ValueTemplate::Path(_) => {}
    }
}

/// Finds `mapped_id(` followed by a quoted literal in template text.
fn scan_mapped_id(source: &str, found: &mut BTreeSet<String>) {
    let mut rest = source;
    while let Some(at) = rest.find("mapped_id(") {
        rest = &rest[at + "mapped_id(".len()..];
        let arg = rest.trim_start();
        let Some(quote) = arg.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        if let Some(end) = arg[1..].find(quote) {
            found.insert(arg[1..1 + end].to_string());
        }
    }
}

/// Orders schemes so each runs after those whose mappings it reads; ties keep the given
/// order. Returns, per position, the indexes of its dependencies; or the cycle.
pub fn dependency_order(plans: &[&Plan]) -> Result<Vec<(usize, Vec<usize>)>, String> {
    let depends: Vec<Vec<usize>> = plans
        .iter()
        .enumerate()
        .map(|(me, plan)| {
            let wanted = mapped_objects(plan);
            (0..plans.len())
                .filter(|&other| {
                    other != me && (wanted.contains(&plans[other].name) || wanted.contains(&plans[other].target.object))
                })
                .collect()
        })
        .collect();
    let mut placed = vec![false; plans.len()];
    let mut order = Vec::with_capacity(plans.len());
    while order.len() < plans.len() {
        let next = (0..plans.len()).find(|&i| !placed[i] && depends[i].iter().all(|&d| placed[d]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push((i, depends[i].clone()));
            }
            None => {
                let stuck: Vec<&str> = (0..plans.len())
                    .filter(|&i| !placed[i])
                    .map(|i| plans[i].name.as_str())
                    .collect();
                return Err(format!(
                    "the schemes {} read each other's mappings with mapped_id in a cycle, so none can run first\n  hint: split the cycle: one of them must not need the other's ids",
                    stuck.join(", ")
                ));
            }
        }
    }
    Ok(order)
}

/// Whether a scheme that depends on one ending with `code` can still run.
fn usable(code: i32) -> bool {
    code == exit::OK || code == exit::ROWS_FAILED
}

/// The worse of two exit codes, for the project's own code.
fn worse(a: i32, b: i32) -> i32 {
    let rank = |code: i32| match code {
        exit::OK => 0,
        exit::ROWS_FAILED => 1,
        exit::LOCKED => 2,
        exit::UNAVAILABLE => 3,
        exit::ABORTED => 4,
        _ => 5,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

pub async fn run_project(args: RunArgs, log_format: LogFormat) -> i32 {
    let project = args.scheme.clone();
    let paths = match scheme_paths(&project) {
        Ok(paths) => paths,
        Err(message) => {
            logging::error(message);
            return exit::CONFIG;
        }
    };
    // Parse and validate every scheme before anything runs.
    let mut plans = Vec::with_capacity(paths.len());
    let mut invalid = false;
    for path in &paths {
        match super::load_for_run(path, &args.env, args.strict) {
            Ok(plan) => plans.push(plan),
            Err(_) => invalid = true,
        }
    }
    if invalid {
        logging::error(format_args!(
            "{}: a scheme of the project is not valid; nothing was run",
            project.display()
        ));
        return exit::CONFIG;
    }
    let mut names: HashMap<&str, &Path> = HashMap::new();
    for (plan, path) in plans.iter().zip(&paths) {
        if let Some(first) = names.insert(plan.name.as_str(), path) {
            logging::error(format_args!(
                "{} and {} are both named {:?}; a project's schemes need their own names (mappings and locks are kept by name)",
                first.display(),
                path.display(),
                plan.name
            ));
            return exit::CONFIG;
        }
    }
    let order = match dependency_order(&plans.iter().collect::<Vec<_>>()) {
        Ok(order) => order,
        Err(message) => {
            logging::error(format_args!("{}: {message}", project.display()));
            return exit::CONFIG;
        }
    };
    let http = match HttpClient::new() {
        Ok(http) => http,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    let mut codes: Vec<Option<i32>> = vec![None; plans.len()];
    let mut rows: Vec<(String, i32, Option<Summary>, Option<String>)> = Vec::new();
    let mut project_code = exit::OK;
    let mut slots: Vec<Option<Plan>> = plans.into_iter().map(Some).collect();
    for (index, dependencies) in order {
        let Some(plan) = slots[index].take() else { continue };
        let name = plan.name.clone();
        if let Some(&blocked) = dependencies
            .iter()
            .find(|&&d| codes[d].is_some_and(|code| !usable(code)))
        {
            let reason = format!(
                "skipped: it reads the mappings of {}, which exited {}",
                paths[blocked].display(),
                codes[blocked].unwrap_or_default()
            );
            logging::warn(format_args!("{name}: {reason}"));
            // A skipped scheme ends as its blocker did (75 stays "try again later").
            let code = codes[blocked].unwrap_or(exit::ABORTED);
            codes[index] = Some(code);
            project_code = worse(project_code, code);
            rows.push((name, code, None, Some(reason)));
            continue;
        }
        let mut scheme_args = args.clone();
        scheme_args.scheme = paths[index].clone();
        scheme_args.quiet = true;
        let (code, summary) = run_plan(plan, &scheme_args, log_format, None, Some(&http)).await;
        codes[index] = Some(code);
        rows.push((name, code, summary, None));
        if code == exit::INTERRUPTED || code == exit::TERMINATED {
            print_table(&rows, &args);
            return code;
        }
        project_code = worse(project_code, code);
    }
    print_table(&rows, &args);
    project_code
}

fn print_table(rows: &[(String, i32, Option<Summary>, Option<String>)], args: &RunArgs) {
    if args.output.is_json() {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, code, summary, note)| {
                serde_json::json!({"scheme": name, "exit_code": code, "summary": summary, "note": note})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        return;
    }
    if args.quiet && rows.iter().all(|(_, code, _, _)| *code == exit::OK) {
        return;
    }
    let width = rows.iter().map(|(name, ..)| name.len()).max().unwrap_or(6).max(6);
    println!(
        "{:width$}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7}",
        "scheme", "exit", "read", "created", "updated", "unchanged", "failed"
    );
    for (name, code, summary, note) in rows {
        match summary {
            Some(s) => println!(
                "{name:width$}  {code:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7}",
                s.read, s.created, s.updated, s.unchanged, s.failed
            ),
            None => println!("{name:width$}  {code:>4}  {}", note.as_deref().unwrap_or("did not run")),
        }
    }
    println!("store: {}", args.store.store);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_file_lists_its_schemes_in_block_or_flow_form() {
        let block = "# two flows\nschemes:\n  - customers.yaml\n  - \"orders.yaml\"  # after customers\n";
        let entries = project_entries(block).unwrap();
        assert_eq!(entries, vec![("customers.yaml".into(), 3), ("orders.yaml".into(), 4)]);
        let flow = "schemes: [a.yaml, 'b.yaml']\n";
        assert_eq!(project_entries(flow).unwrap().len(), 2);
        assert!(project_entries("name: x\nsource:\n  connection: a\n").is_none());
        assert!(project_entries("name: x\nschemes:\n  - a.yaml\nsource: {}\n").is_none());
    }

    #[test]
    fn mapped_id_literals_are_found_in_filter_and_call_forms() {
        let mut found = BTreeSet::new();
        scan_mapped_id(
            "<< customer | mapped_id('BD_Customer') >>-<< mapped_id(\"shops\", shop) >><< mapped_id(obj, x) >>",
            &mut found,
        );
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec!["BD_Customer", "shops"]);
    }

    #[test]
    fn worse_prefers_aborts_over_row_failures_over_success() {
        assert_eq!(worse(exit::OK, exit::ROWS_FAILED), exit::ROWS_FAILED);
        assert_eq!(worse(exit::ABORTED, exit::ROWS_FAILED), exit::ABORTED);
        assert_eq!(worse(exit::LOCKED, exit::UNAVAILABLE), exit::UNAVAILABLE);
        assert_eq!(worse(exit::OK, exit::OK), exit::OK);
    }
}
