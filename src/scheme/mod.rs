//! The scheme language: load YAML, check its structure, validate its meaning, build a plan.
//!
//! Parse, then validate, then run. Everything here is pure except [`load_file`] and
//! [`load_file_with`], which read the file; `${ENV}` lookups go through a function the caller
//! passes, so tests inject theirs. All problems are reported at once, each with file,
//! line:column, field path and hint.
//!
//! Under [`MissingEnv::Note`] (`ferry validate --no-env`) an unset variable is a note and a
//! placeholder stands in for it; a scheme loaded that way never yields a plan, so a
//! placeholder can never reach a run.

pub mod check;
pub mod context;
pub mod envfile;
pub mod field_tables;
pub mod model;
pub mod raw;
pub mod sample;
pub mod validate;
pub mod yaml;

use crate::diag::{promote_warnings, tidy, Diagnostic};
pub use model::Plan;
pub use yaml::MissingEnv;

/// How a scheme's `${NAME}` references are resolved.
#[derive(Clone, Copy)]
pub struct LoadOptions<'a> {
    /// The value of a variable, if it is set.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// What a variable that is not set (and has no default) is.
    pub missing_env: MissingEnv,
}

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

    /// `--strict`: warnings become errors, and a scheme with errors has no plan.
    pub fn make_strict(&mut self) {
        promote_warnings(&mut self.diagnostics);
        if self.has_errors() {
            self.plan = None;
        }
    }
}

/// Loads a scheme from text. `file` is only used in messages.
pub fn load_str(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    load_str_with(
        text,
        file,
        &LoadOptions {
            env,
            missing_env: MissingEnv::Error,
        },
    )
}

/// Loads a scheme from text with the given environment rules. `file` is only used in messages.
pub fn load_str_with(text: &str, file: &str, options: &LoadOptions<'_>) -> Loaded {
    let mut parsed = yaml::load_with(text, options.env, options.missing_env);
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
            let env_facts = check::EnvFacts {
                scalars: Some(&parsed.env_scalars),
                unset: Some(&parsed.unset_paths),
            };
            let checked = check::check_with_env(&schema, &parsed.value, &parsed.spans, env_facts);
            for (path, typed) in checked.typed {
                if let Some(slot) = yaml::value_at_mut(&mut parsed.value, &path) {
                    *slot = typed;
                }
            }
            let structural = checked.diagnostics;
            let mut structural_paths: Vec<String> = structural.iter().map(|d| d.path.clone()).collect();
            structural_paths.extend(diagnostics.iter().filter(|d| d.is_error()).map(|d| d.path.clone()));
            diagnostics.extend(structural);
            let (built, semantic) = validate::validate(
                &parsed.value,
                &parsed.spans,
                &parsed.env_paths,
                &parsed.unset_paths,
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
        // A problem with a value that came whole from a variable names the variable.
        if let Some(name) = parsed.env_scalars.get(&d.path) {
            if d.is_error() && !d.message.contains(name.as_str()) {
                let from = format!("the value comes from ${{{name}}}");
                d.hint = Some(match d.hint.take() {
                    Some(hint) => format!("{hint} ({from})"),
                    None => from,
                });
            }
        }
        d.message = redactor.redact(&d.message).into_owned();
        if let Some(hint) = &mut d.hint {
            *hint = redactor.redact(hint).into_owned();
        }
    }
    tidy(&mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) || !parsed.unset_paths.is_empty() {
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
    load_file_with(
        path,
        &LoadOptions {
            env: &|name| std::env::var(name).ok(),
            missing_env: MissingEnv::Error,
        },
    )
}

/// Reads and loads a scheme file with the given environment rules.
pub fn load_file_with(path: &std::path::Path, options: &LoadOptions<'_>) -> Loaded {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str_with(&text, &file, options),
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
