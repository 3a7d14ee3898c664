//! Where the variables a scheme reads (`${NAME}`) and `FERRY_STORE` come from.
//!
//! In this order: the process environment; then a systemd credential of the same name,
//! `$CREDENTIALS_DIRECTORY/NAME` (what `LoadCredential=NAME:…` in a unit of `ferry systemd`
//! provides, so secrets never sit in the unit or the environment); then `--env-file`.
//! A credential's one trailing newline (`echo secret > file`) is not part of the value.

use std::path::Path;

/// The variable `name` as a systemd credential, when the service manager passed one.
pub fn credential(name: &str) -> Option<String> {
    let directory = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    credential_in(Path::new(&directory), name)
}

/// `name` read from the credentials directory `directory`.
pub fn credential_in(directory: &Path, name: &str) -> Option<String> {
    let safe = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !safe {
        return None;
    }
    let mut text = std::fs::read_to_string(directory.join(name)).ok()?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Some(text)
}

/// The value of `name`: the environment, a credential, then the `--env-file` variables.
pub fn variable(name: &str, file_vars: &std::collections::BTreeMap<String, String>) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| credential(name))
        .or_else(|| file_vars.get(name).cloned())
}

/// `FERRY_STORE` from a credential when neither `--store` nor the variable is given.
/// Called before the arguments are parsed, while the process has one thread.
pub fn store_from_credential() {
    if std::env::var_os("FERRY_STORE").is_some() {
        return;
    }
    if let Some(store) = credential("FERRY_STORE") {
        // SAFETY-free in edition 2021; no other thread exists yet.
        std::env::set_var("FERRY_STORE", store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_loses_one_trailing_newline_and_names_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("SHOP_TOKEN"), "t0k3n\n").unwrap();
        std::fs::write(dir.path().join("TWO_LINES"), "a\nb\r\n").unwrap();
        assert_eq!(credential_in(dir.path(), "SHOP_TOKEN").as_deref(), Some("t0k3n"));
        assert_eq!(credential_in(dir.path(), "TWO_LINES").as_deref(), Some("a\nb"));
        assert_eq!(credential_in(dir.path(), "MISSING"), None);
        assert_eq!(credential_in(dir.path(), "../SHOP_TOKEN"), None);
        assert_eq!(credential_in(dir.path(), ""), None);
    }
}
