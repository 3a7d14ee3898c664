//! The scheme language: load YAML, check its structure, validate its meaning, build a plan.
//!
//! Parse, then validate, then run. Everything here is pure except [`load_file`], which reads
//! the file; `${ENV}` lookups go through a function the caller passes, so tests inject theirs.
//! All problems are reported at once, each with file, line:column, field path and hint.

pub mod check;
pub mod model;
pub mod raw;
pub mod sample;
pub mod validate;
pub mod yaml;

use crate::diag::{tidy, Diagnostic};
pub use model::Plan;

/// The result of loading a scheme: a plan when there were no errors, and every diagnostic.
pub struct Loaded {
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
    /// The scheme text, for rendering excerpts.
    pub text: String,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads a scheme from text. `file` is only used in messages.
pub fn load_str(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    let parsed = yaml::load(text, env);
    let mut diagnostics = parsed.diagnostics;
    let mut plan = None;
    let yaml_ok = diagnostics
        .iter()
        .all(|d| !d.message.starts_with("invalid YAML") && !d.message.contains("empty"));
    if yaml_ok {
        if !parsed.value.is_object() {
            diagnostics.push(
                Diagnostic::error(
                    "",
                    "a scheme must be a mapping with `name`, `connections`, `source` and `target`",
                )
                .with_hint("start from one of the files in schemes/")
                .at(parsed.spans.value_position("")),
            );
        } else {
            let schema = raw::json_schema();
            let structural = check::check(&schema, &parsed.value, &parsed.spans);
            let mut structural_paths: Vec<String> = structural.iter().map(|d| d.path.clone()).collect();
            structural_paths.extend(diagnostics.iter().filter(|d| d.is_error()).map(|d| d.path.clone()));
            diagnostics.extend(structural);
            let (built, semantic) = validate::validate(
                &parsed.value,
                &parsed.spans,
                &parsed.env_paths,
                parsed.secrets.clone(),
                file,
                &structural_paths,
            );
            diagnostics.extend(semantic);
            plan = built;
        }
    }
    // A secret in a place that expects something else (`timeout: ${API_KEY}`) would be
    // quoted by the message about it.
    let redactor = crate::redact::Redactor::new(parsed.secrets);
    for d in &mut diagnostics {
        d.file = file.to_string();
        d.message = redactor.redact(&d.message).into_owned();
        if let Some(hint) = &mut d.hint {
            *hint = redactor.redact(hint).into_owned();
        }
    }
    tidy(&mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        plan = None;
    }
    Loaded {
        plan,
        diagnostics,
        text: text.to_string(),
    }
}

/// Reads and loads a scheme file, resolving `${ENV}` from the process environment.
pub fn load_file(path: &std::path::Path) -> Loaded {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &file, &|name| std::env::var(name).ok()),
        Err(e) => {
            let mut d = Diagnostic::error("", format!("cannot read scheme file: {e}"))
                .with_hint("check the path; schemes usually live in schemes/*.yaml");
            d.file = file;
            Loaded {
                plan: None,
                diagnostics: vec![d],
                text: String::new(),
            }
        }
    }
}
