//! Environment files (`--env-file FILE`): `KEY=VALUE` lines that stand in for exported
//! variables, e.g. a CI job's dummy values or a developer's local credentials.
//!
//! The format is the common dotenv subset:
//! * blank lines and lines starting with `#` are skipped; `export KEY=VALUE` is accepted;
//! * `KEY` is letters, digits and `_`, not starting with a digit;
//! * an unquoted value runs to the end of the line or to ` #` (a comment), trimmed;
//! * `'single'` quotes keep the text as written; `"double"` quotes understand `\n`, `\t`,
//!   `\r`, `\"` and `\\`; a quoted value ends on its line, followed by nothing or a comment.
//!
//! Values are taken literally: no `${…}` expansion inside the file. Every malformed line is
//! reported (file, line and column), not only the first. Parsing is pure; the caller reads
//! the file.

use crate::diag::{Diagnostic, Position};
use std::collections::BTreeMap;

/// Parses an environment file. `file` is only used in messages.
pub fn parse(text: &str, file: &str) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((key, value))) => {
                vars.insert(key, value);
            }
            Err((column, message, hint)) => {
                let mut d = Diagnostic::error("", message).with_hint(hint).at(Position {
                    line: number,
                    column: column + 1,
                });
                d.file = file.to_string();
                problems.push(d);
            }
        }
    }
    if problems.is_empty() {
        Ok(vars)
    } else {
        Err(problems)
    }
}

/// A problem on one line: (0-based column in characters, message, hint).
type LineError = (usize, String, String);

fn parse_line(line: &str) -> Result<Option<(String, String)>, LineError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let indent = line.chars().count() - trimmed.chars().count();
    let body = trimmed.strip_prefix("export ").map(str::trim_start).unwrap_or(trimmed);
    let body_start = line.chars().count() - body.chars().count();
    let Some((raw_key, raw_value)) = body.split_once('=') else {
        return Err((
            indent,
            "expected `KEY=VALUE`".to_string(),
            "write one variable per line, e.g. `SHOP_TOKEN=abc`; start comments with `#`".to_string(),
        ));
    };
    let key = raw_key.trim_end();
    let valid = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err((
            body_start,
            format!("`{key}` is not a valid variable name"),
            "names use letters, digits and `_` and do not start with a digit, e.g. SHOP_TOKEN".to_string(),
        ));
    }
    let value_start = body_start + raw_key.chars().count() + 1;
    let leading = raw_value.chars().count() - raw_value.trim_start().chars().count();
    let value = raw_value.trim_start();
    let at = value_start + leading;
    let parsed = match value.chars().next() {
        Some(quote @ ('"' | '\'')) => quoted(value, quote, at)?,
        _ => match value.find(" #").or_else(|| value.find("\t#")) {
            Some(comment) => value[..comment].trim_end().to_string(),
            None => value.trim_end().to_string(),
        },
    };
    Ok(Some((key.to_string(), parsed)))
}

/// A quoted value starting at column `at`; what follows the closing quote may only be a comment.
fn quoted(value: &str, quote: char, at: usize) -> Result<String, LineError> {
    let mut out = String::new();
    let mut chars = value.char_indices().skip(1);
    let mut closed_at = None;
    while let Some((offset, c)) = chars.next() {
        if c == quote {
            closed_at = Some(offset);
            break;
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, other @ ('"' | '\\' | '$'))) => out.push(other),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            }
            continue;
        }
        out.push(c);
    }
    let Some(end) = closed_at else {
        return Err((
            at,
            format!("the value's opening {quote} is never closed"),
            format!("close the quote on the same line, e.g. KEY={quote}value{quote}"),
        ));
    };
    let rest = &value[end + quote.len_utf8()..];
    let after = rest.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        let column = at + value[..end].chars().count() + 1 + (rest.chars().count() - after.chars().count());
        return Err((
            column,
            "unexpected text after the closing quote".to_string(),
            "put everything inside the quotes, or start a comment with `#`".to_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_values_quotes_and_comments() {
        let text = "# CI values\n\nSHOP_URL=http://127.0.0.1:9\nexport SHOP_TOKEN = 'ab#c d' # comment\nMSG=\"line\\nnext \\\"q\\\"\"\nEMPTY=\nPLAIN=a b # trailing\nHASH=a#b\r\n";
        let vars = parse(text, "ci.env").unwrap();
        assert_eq!(vars["SHOP_URL"], "http://127.0.0.1:9");
        assert_eq!(vars["SHOP_TOKEN"], "ab#c d");
        assert_eq!(vars["MSG"], "line\nnext \"q\"");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars["PLAIN"], "a b");
        assert_eq!(vars["HASH"], "a#b");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn later_lines_win() {
        let vars = parse("A=1\nA=2\n", "x.env").unwrap();
        assert_eq!(vars["A"], "2");
    }

    #[test]
    fn every_malformed_line_is_reported_with_file_line_and_column() {
        let text = "OK=1\njust words\n9LIVES=x\nQ=\"open\nR='a' b\n";
        let problems = parse(text, "bad.env").unwrap_err();
        let found: Vec<(usize, usize, &str)> = problems
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (2, 1, "expected `KEY=VALUE`"),
                (3, 1, "`9LIVES` is not a valid variable name"),
                (4, 3, "the value's opening \" is never closed"),
                (5, 7, "unexpected text after the closing quote"),
            ]
        );
        assert!(problems.iter().all(|d| d.file == "bad.env" && d.hint.is_some()));
    }
}
