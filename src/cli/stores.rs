//! Opening the store a command names, and the scheme a `--scheme` names.
//!
//! - Commands that only read (`mappings list|get`, `failures list|show`, `runs`, `status`)
//!   open a store that exists or fail naming its location (exit 2): they never create one.
//! - Commands that may create a store refuse a `--store` whose directory is missing unless
//!   `--create-dirs` is given: a typo in a path must not start a fresh, empty store that a
//!   scheduled run then fills from the beginning.
//! - `--scheme` takes a scheme's `name` or the path of its file (`*.yaml`, `*.yml`, or any
//!   existing file), whose `name` is then used.

use super::logging;
use crate::error::exit;
use crate::store::Store;
use clap::Args;

/// Whether a command may create the store's missing directories.
#[derive(Args, Clone, Copy, Default)]
pub struct CreateDirsArg {
    /// Create the directories of a `--store` path that do not exist (otherwise a missing
    /// directory is an error, so a mistyped path does not start an empty store).
    #[arg(long)]
    pub create_dirs: bool,
}

/// Opens a store that must already exist; `Err` is the exit code.
pub async fn open_existing(location: &str) -> Result<Store, i32> {
    Store::open_existing(location).await.map_err(|e| {
        logging::error(e);
        exit::CONFIG
    })
}

/// Checks that a store at `location` may be created; `Err` is the exit code.
pub fn check_creatable(location: &str, create: CreateDirsArg) -> Result<(), i32> {
    let Some(missing) = Store::missing_directory(location) else {
        return Ok(());
    };
    if create.create_dirs {
        return std::fs::create_dir_all(&missing).map_err(|e| {
            logging::error(format_args!(
                "cannot create the store's directory {}: {e}",
                missing.display()
            ));
            exit::CONFIG
        });
    }
    logging::error(format_args!(
        "the directory of the store {location} does not exist ({}); check the path, or pass --create-dirs to create it",
        missing.display()
    ));
    Err(exit::CONFIG)
}

/// The scheme name a `--scheme` value stands for; `Err` is the exit code.
pub fn scheme_name(value: &str) -> Result<String, i32> {
    let path = std::path::Path::new(value);
    let looks_like_file = value.ends_with(".yaml") || value.ends_with(".yml") || value.contains('/');
    if !looks_like_file && !path.is_file() {
        return Ok(value.to_string());
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        logging::error(format_args!(
            "--scheme {value}: cannot read the scheme file ({e}); give the scheme's file or its `name`"
        ));
        exit::CONFIG
    })?;
    let parsed = crate::scheme::yaml::load_with(&text, &|_| None, crate::scheme::MissingEnv::Note);
    match parsed.value.get("name").and_then(|n| n.as_str()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => {
            logging::error(format_args!("--scheme {value}: the file has no `name`"));
            Err(exit::CONFIG)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_is_named_by_its_name_or_its_file() {
        assert_eq!(scheme_name("shop-orders").unwrap(), "shop-orders");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.yaml");
        std::fs::write(&file, "name: from-file\nconnections: {}\n").unwrap();
        assert_eq!(scheme_name(file.to_str().unwrap()).unwrap(), "from-file");
        assert_eq!(scheme_name("no/such/file.yaml"), Err(exit::CONFIG));
    }
}
