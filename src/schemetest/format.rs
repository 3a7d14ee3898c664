//! The test file of `ferry test` (`schemes/tests/<scheme>.test.yaml`), parsed with the
//! scheme's own YAML module so every problem has a file:line:col.
//!
//! ```yaml
//! scheme: ../orders.yaml            # relative to the test file
//! env: {SHOP_TOKEN: test-token}     # a stand-in for every ${VAR} the scheme reads
//! change_between_runs: false        # run two must send no write unless this is true
//! volatile: [body.nonce]            # more fields matched by presence only
//! runs:                             # run one, run two (each in the same fresh store)
//!   - now: 2026-12-07T12:00:00Z     # the run's pinned clock
//!     exit: 0
//!     exchanges:                    # every request the run sends, with the answer to give
//!       - connection: shop
//!         request: {method: GET, path: /orders, query: {page: "1"}}
//!         response: {status: 200, body: {ok: true}}
//!     faults: [{connection: erp, request: 1, kind: server_error}]
//!     store:                        # what the store holds afterwards
//!       checkpoint: "2026-12-07 19:59:00"
//!       mappings: [{source_id: A1, target_id: "100", status: created}]
//!       ledger: [{source_id: A7, error_class: rejected}]
//! ```

use super::matching::RequestShape;
use crate::diag::Diagnostic;
use crate::scheme::yaml;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    /// The scheme file, resolved against the test file's directory.
    pub scheme_path: PathBuf,
    pub spec: TestSpec,
}

/// What a test file says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// The scheme, relative to the test file.
    pub scheme: String,
    /// Stand-in values for the scheme's `${VAR}`s (no real secrets).
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// The source changes between run one and run two, so run two may write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub change_between_runs: bool,
    /// More request fields matched by presence only (`body.nonce`, `query.ts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volatile: Vec<String>,
    #[serde(default)]
    pub runs: Vec<RunSpec>,
}

/// A YAML scalar used as text (`port: 8080` is the text "8080").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// One run of the scheme and what must be true after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The run's clock (windows and the checkpoint follow from it).
    pub now: DateTime<Utc>,
    /// The exit code `ferry run` would give.
    #[serde(default)]
    pub exit: i32,
    /// Faults the replay injects into this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSpec>,
    /// Every request the run sends, in order, with the answer the replay gives.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// The store after the run; left out, it is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreExpect>,
}

/// One recorded request and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The scheme's connection the request goes to.
    pub connection: String,
    pub request: RequestShape,
    pub response: ResponseSpec,
}

/// A recorded answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Headers to send back (`content-type`, `set-cookie`, `retry-after`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// A body that is not JSON, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn ok_status() -> u16 {
    200
}

/// A fault the replay injects: the `request`-th request (from 1) of `connection` in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub connection: String,
    pub request: usize,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 503 before the request is handled (no exchange is used).
    ServerError,
    /// HTTP 429 with `Retry-After: 1` (no exchange is used).
    Throttle,
    /// No answer until the client gives up (no exchange is used).
    Timeout,
    /// The request is handled (its exchange is used) but the answer is cut short, like a
    /// crash after the write intent: the write happened and the client never learns ids.
    CrashAfterWrite,
}

/// The store after a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub mappings: Vec<MappingExpect>,
    #[serde(default)]
    pub ledger: Vec<LedgerExpect>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingExpect {
    pub source_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerExpect {
    pub source_id: String,
    pub error_class: String,
}

/// Reads and parses `path`; `Err` holds every problem with its position (rendered by the caller).
pub fn load(path: &Path) -> Result<TestFile, (String, Vec<Diagnostic>)> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let d = Diagnostic::error("", format!("cannot read test file: {e}"));
            return Err((String::new(), vec![with_file(d, &file)]));
        }
    };
    let spec = parse(&text, &file).map_err(|ds| (text.clone(), ds))?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(TestFile {
        path: path.to_path_buf(),
        scheme_path: base.join(&spec.scheme),
        spec,
    })
}

fn with_file(mut d: Diagnostic, file: &str) -> Diagnostic {
    d.file = file.to_string();
    d
}

/// Parses test-file text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<TestSpec, Vec<Diagnostic>> {
    // A test file reads no environment: `${…}` in it stays literal text.
    let loaded = yaml::load_with(&text.replace("${", "$${"), &|_| None, yaml::MissingEnv::Note);
    let errors: Vec<Diagnostic> = loaded
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| with_file(d, file))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let spec: TestSpec = match serde_path_to_error::deserialize(&loaded.value) {
        Ok(spec) => spec,
        Err(e) => {
            let path = dotted(&e.path().to_string());
            let message = e.inner().to_string();
            // An unknown key is shown at the key; a bad value at the value.
            let position = if message.starts_with("unknown field") {
                loaded.spans.key_position(&path)
            } else {
                loaded.spans.value_position(&path)
            };
            let d = Diagnostic::error(path, format!("invalid test file: {message}")).at(position);
            return Err(vec![with_file(d, file)]);
        }
    };
    let mut problems = Vec::new();
    if spec.runs.len() == 1 || spec.runs.len() > 2 {
        let d = Diagnostic::error(
            "runs",
            format!("a test has two runs (or none yet), found {}", spec.runs.len()),
        )
        .at(loaded.spans.value_position("runs"))
        .with_hint("`ferry test --record` writes both runs");
        problems.push(with_file(d, file));
    }
    for (index, run) in spec.runs.iter().enumerate() {
        for (at, fault) in run.faults.iter().enumerate() {
            if fault.request == 0 {
                let path = format!("runs[{index}].faults[{at}].request");
                let d = Diagnostic::error(&path, "requests count from 1").at(loaded.spans.value_position(&path));
                problems.push(with_file(d, file));
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

/// serde_path_to_error's `runs[0].exchanges[1].request` is already the dotted form the
/// spans use; `.` alone means the root.
fn dotted(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_reported_at_its_line_and_column() {
        let text = "scheme: ../x.yaml\nenv: {A: b}\nruns:\n  - now: 2026-01-01T00:00:00Z\n    exchangez: []\n  - now: 2026-01-01T00:01:00Z\n";
        let problems = parse(text, "t.test.yaml").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let d = &problems[0];
        assert_eq!(d.file, "t.test.yaml");
        assert_eq!((d.line, d.column), (5, 5), "{d:?}");
        assert!(d.message.contains("exchangez"), "{}", d.message);
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let text = "scheme: x.yaml\nruns:\n  - now: yesterday\n  - now: 2026-01-01T00:01:00Z\n";
        let d = &parse(text, "t").unwrap_err()[0];
        assert_eq!(d.path, "runs[0].now");
        assert_eq!(d.line, 3);
    }

    #[test]
    fn the_file_ferry_init_writes_parses() {
        let text = crate::cli::init_test_file("../gy.yaml", &[("GUANYI_URL".into(), true)]);
        let spec = parse(&text, "t").unwrap();
        assert_eq!(spec.scheme, "../gy.yaml");
        assert!(spec.runs.is_empty());
        assert_eq!(spec.env["GUANYI_URL"].text(), "https://guanyi.invalid");
    }
}
