//! Scheme diagnostics: every problem found while loading and validating a scheme.
//!
//! A [`Diagnostic`] knows its file, line and column (1-based), the field path inside the
//! scheme (`target.fields.FName`), what is wrong and a hint (valid choices or a did-you-mean).
//! Validation collects all of them before reporting, so one `ferry validate` shows everything.

use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Information that is neither wrong nor suspicious, e.g. an environment variable
    /// `ferry validate --no-env` checked with a placeholder. `--strict` leaves notes alone.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted field path, e.g. `source.pagination.size`; empty for the whole file.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A position in the scheme text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: String::new(),
            line: 0,
            column: 0,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }
    pub fn note(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Note,
            ..Diagnostic::error(path, message)
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }
    pub fn at(mut self, position: Position) -> Diagnostic {
        self.line = position.line;
        self.column = position.column;
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }

    /// Renders like a compiler: a headline, the source line with a caret, the path and the hint.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        let _ = writeln!(out, "  --> {}:{}:{}", self.file, self.line, self.column);
        if let Some(text) = source.lines().nth(self.line.saturating_sub(1)) {
            if self.line > 0 {
                let gutter = self.line.to_string();
                let pad = " ".repeat(gutter.len());
                let _ = writeln!(out, "  {pad} |");
                let _ = writeln!(out, "  {gutter} | {text}");
                let caret_at = text
                    .chars()
                    .take(self.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect::<String>();
                let _ = writeln!(out, "  {pad} | {caret_at}^");
            }
        }
        if !self.path.is_empty() {
            let _ = writeln!(out, "  = field: {}", self.path);
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        out
    }
}

/// Suggests the closest candidate, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A hint naming the likely intended word, or else listing every choice.
pub fn choices_hint(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? (choose from: {})", candidates.join(", ")),
        None => format!("choose from: {}", candidates.join(", ")),
    }
}

/// `--strict`: every warning becomes an error (notes stay notes).
pub fn promote_warnings(diagnostics: &mut [Diagnostic]) {
    for d in diagnostics.iter_mut().filter(|d| d.is_warning()) {
        d.severity = Severity::Error;
        let strict = "an error under --strict";
        d.hint = Some(match d.hint.take() {
            Some(hint) => format!("{hint} ({strict})"),
            None => strict.to_string(),
        });
    }
}

/// Sorts diagnostics by position and removes exact repeats.
pub fn tidy(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.severity, a.path.as_str()).cmp(&(
            b.file.as_str(),
            b.line,
            b.column,
            b.severity,
            b.path.as_str(),
        ))
    });
    diagnostics.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column() {
        let d = Diagnostic::error("source.records", "bad JSONPath")
            .with_hint("write $.data[*]")
            .at(Position { line: 2, column: 10 });
        let d = Diagnostic {
            file: "s.yaml".into(),
            ..d
        };
        let text = d.render("name: x\nrecords: data[*]\n");
        assert!(text.contains("--> s.yaml:2:10"), "{text}");
        assert!(text.contains("2 | records: data[*]"), "{text}");
        assert!(text.contains("  |          ^"), "{text}");
        assert!(text.contains("= field: source.records"));
        assert!(text.contains("= hint: write $.data[*]"));
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(did_you_mean("paginaton", ["pagination", "records"]), Some("pagination"));
        assert_eq!(did_you_mean("zzz", ["pagination", "records"]), None);
    }
}
