//! `ferry test`: hermetic scheme tests from recordings.
//!
//! A test file (`schemes/tests/<scheme>.test.yaml`, see [`format`]) names a scheme, gives a
//! stand-in for every `${VAR}` it reads, and holds two recorded runs: every request each
//! run sends with the answer it gets, the exit code, and the store afterwards. [`runner`]
//! runs the scheme twice in a fresh SQLite store with no environment and no network beyond
//! 127.0.0.1: each connection is served by a [`server`] that answers from the recording and
//! checks every request against it ([`matching`]: semantic JSON, volatile fields by rule).
//!
//! Promises:
//! * **Signatures are checked, not trusted.** A signed vendor request matches when all but
//!   its time-dependent sign fields match; those are verified by recomputing them with the
//!   simulators' own checks ([`crate::sim::signatures`]), never the connector's `sign`.
//! * **A rerun writes nothing** unless the test says the source changes between runs.
//! * **Recordings hold no secrets**: `--record` replaces each credential the simulators
//!   were given with the test's stand-in before anything is written.
//! * Exit codes: 0 all pass, 1 a test failed, 2 a test file (or its scheme) is invalid.

pub mod format;
pub mod matching;
pub mod record;
pub mod report;
pub mod runner;
pub mod server;

use std::path::{Path, PathBuf};

/// The test files under `paths`: files as given, directories searched (recursively) for
/// `*.test.yaml`, sorted.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut found).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        } else if path.exists() {
            found.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.to_string_lossy().ends_with(".test.yaml") {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
