//! `ferry checkpoint show|set|clear SCHEME`: the incremental watermark a scheme's next run
//! starts from (its windows begin at the checkpoint minus `lookback`).
//!
//! - `show` only reads: a missing store is an error naming its path (exit 2).
//! - `set` and `clear` take the scheme's run lock first and refuse (exit 4) while a run
//!   holds it, so a run never moves the checkpoint under an operator's edit or back.
//! - `set` validates the value before anything is opened: a time (`YYYY-MM-DD HH:MM:SS`,
//!   `YYYY-MM-DD` or RFC 3339) that is not in the future. A time without an offset is read
//!   in the scheme's `timezone`, so it needs the scheme file; given only a name, the value
//!   must carry its offset. Bad input exits 2 and changes nothing. The value is stored as
//!   a run stores it (RFC 3339 in the scheme's zone), so `status` and runs read it as theirs.

use super::{logging, stores, FormatArg, StoreArg};
use crate::engine::CHECKPOINT_KEY;
use crate::error::exit;
use crate::store::lock::LockError;
use crate::store::{CheckpointStore, Store};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand)]
pub enum CheckpointAction {
    /// Show the checkpoint the scheme's next run starts from, and how far it is behind now.
    #[command(after_help = "Examples:
  ferry checkpoint show shop-orders-to-erp
  ferry checkpoint show schemes/shop-orders-to-erp.yaml --format json --store /var/lib/ferry/ferry.db")]
    Show {
        /// The scheme: its `name` or its scheme file.
        scheme: String,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Move the checkpoint: the next run reads from this time (minus `lookback`). Refused
    /// while a run of the scheme holds the run lock.
    #[command(after_help = "Examples:
  ferry checkpoint set schemes/shop-orders-to-erp.yaml '2024-03-01 00:00:00'   # in the scheme's timezone
  ferry checkpoint set shop-orders-to-erp 2024-03-01T00:00:00+08:00")]
    Set {
        /// The scheme: its `name` or its scheme file (needed for a time without an offset).
        scheme: String,
        /// The time: `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD` or RFC 3339; not in the future.
        value: String,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        create_dirs: stores::CreateDirsArg,
    },
    /// Forget the checkpoint: the next run starts from `incremental.start`. Refused while a
    /// run of the scheme holds the run lock.
    #[command(after_help = "Examples:
  ferry checkpoint clear shop-orders-to-erp")]
    Clear {
        /// The scheme: its `name` or its scheme file.
        scheme: String,
        #[command(flatten)]
        store: StoreArg,
    },
}

/// What `checkpoint show` prints.
#[derive(Serialize)]
struct Shown {
    scheme: String,
    checkpoint: Option<String>,
    lag_seconds: Option<i64>,
}

pub async fn checkpoint(action: CheckpointAction) -> i32 {
    match action {
        CheckpointAction::Show { scheme, output, store } => show(&scheme, output, &store.store).await,
        CheckpointAction::Set {
            scheme,
            value,
            store,
            create_dirs,
        } => set(&scheme, &value, &store.store, create_dirs).await,
        CheckpointAction::Clear { scheme, store } => clear(&scheme, &store.store).await,
    }
}

async fn show(scheme: &str, output: FormatArg, location: &str) -> i32 {
    let name = match stores::scheme_name(scheme) {
        Ok(name) => name,
        Err(code) => return code,
    };
    let store = match stores::open_existing(location).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let value = match store.checkpoint(&name, CHECKPOINT_KEY).await {
        Ok(value) => value,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    let lag_seconds = value
        .as_deref()
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_seconds());
    let shown = Shown {
        scheme: name,
        checkpoint: value,
        lag_seconds,
    };
    if output.is_json() {
        println!("{}", serde_json::to_string_pretty(&shown).unwrap_or_default());
    } else {
        match (&shown.checkpoint, shown.lag_seconds) {
            (Some(value), Some(lag)) => println!(
                "scheme {}: checkpoint {value} ({} behind now)",
                shown.scheme,
                crate::window::describe_duration(chrono::Duration::seconds(lag.max(0)))
            ),
            (Some(value), None) => println!("scheme {}: checkpoint {value}", shown.scheme),
            (None, _) => println!(
                "scheme {}: no checkpoint (the next run starts from `incremental.start`)",
                shown.scheme
            ),
        }
    }
    exit::OK
}

/// The scheme's name and time zone (when SCHEME is its file) from a `--scheme`-style value.
fn scheme_and_zone(scheme: &str) -> Result<(String, Option<chrono_tz::Tz>), i32> {
    let name = stores::scheme_name(scheme)?;
    let path = std::path::Path::new(scheme);
    if !path.is_file() {
        return Ok((name, None));
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let parsed = crate::scheme::yaml::load_with(&text, &|_| None, crate::scheme::MissingEnv::Note);
    if parsed.value.get("source").and_then(|s| s.get("incremental")).is_none() {
        logging::error(format_args!(
            "{scheme} has no `source.incremental`, so its runs read the whole source and keep no checkpoint"
        ));
        return Err(exit::CONFIG);
    }
    let zone = match parsed.value.get("timezone").and_then(|t| t.as_str()) {
        None => chrono_tz::Asia::Shanghai,
        Some(text) => text.parse::<chrono_tz::Tz>().map_err(|_| {
            logging::error(format_args!("{scheme}: timezone: unknown time zone `{text}`"));
            exit::CONFIG
        })?,
    };
    Ok((name, Some(zone)))
}

/// The text to store for `value` (RFC 3339 in `zone`, or with the offset it was given),
/// or why it is not a checkpoint.
pub(crate) fn checkpoint_text(value: &str, zone: Option<chrono_tz::Tz>, now: DateTime<Utc>) -> Result<String, String> {
    let (time, text) = match zone {
        Some(zone) => {
            let time = crate::window::parse_time(value, zone)?;
            (time, crate::window::format_time(time, zone))
        }
        None => {
            let time = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
                format!(
                    "`{value}` has no offset; write it as RFC 3339 (e.g. 2024-03-01T00:00:00+08:00), or give the \
                     scheme file instead of its name so the scheme's `timezone` applies"
                )
            })?;
            (time.with_timezone(&Utc), time.to_rfc3339())
        }
    };
    if time > now {
        return Err(format!(
            "`{value}` is in the future; a run would read nothing until then (the checkpoint is where the next \
             window starts)"
        ));
    }
    Ok(text)
}

/// Opens the store holding the scheme's run lock; `Err` is the exit code (4 while a run
/// holds it).
async fn open_locked(location: &str, name: &str) -> Result<(Store, crate::store::lock::RunLock), i32> {
    crate::store::lock::open_locked(location, name, false)
        .await
        .map_err(|e| {
            let code = match e {
                LockError::Held { .. } => exit::LOCKED,
                LockError::Failed { .. } | LockError::Store(_) => exit::CONFIG,
            };
            match &e {
                LockError::Held { scheme, place } => logging::error(format_args!(
                    "a run of scheme `{scheme}` holds the run lock ({place}); the checkpoint was not changed — \
                     try again when the run has finished"
                )),
                _ => logging::error(&e),
            }
            code
        })
}

async fn set(scheme: &str, value: &str, location: &str, create_dirs: stores::CreateDirsArg) -> i32 {
    let (name, zone) = match scheme_and_zone(scheme) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let text = match checkpoint_text(value, zone, Utc::now()) {
        Ok(text) => text,
        Err(reason) => {
            logging::error(format_args!("checkpoint {value}: {reason}"));
            return exit::CONFIG;
        }
    };
    if let Err(code) = stores::check_creatable(location, create_dirs) {
        return code;
    }
    let (store, _lock) = match open_locked(location, &name).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let before = match store.checkpoint(&name, CHECKPOINT_KEY).await {
        Ok(before) => before,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    if let Err(e) = store.set_checkpoint(&name, CHECKPOINT_KEY, &text).await {
        logging::error(e);
        return exit::ABORTED;
    }
    match before {
        Some(before) => println!("scheme {name}: checkpoint {before} → {text}"),
        None => println!("scheme {name}: checkpoint set to {text}"),
    }
    exit::OK
}

async fn clear(scheme: &str, location: &str) -> i32 {
    let name = match stores::scheme_name(scheme) {
        Ok(name) => name,
        Err(code) => return code,
    };
    // Never create a store only to clear nothing in it.
    match stores::open_existing(location).await {
        Ok(existing) => existing.close().await,
        Err(code) => return code,
    }
    let (store, _lock) = match open_locked(location, &name).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match store.clear_checkpoint(&name, CHECKPOINT_KEY).await {
        Ok(true) => {
            println!("scheme {name}: checkpoint cleared; the next run starts from `incremental.start`");
            exit::OK
        }
        Ok(false) => {
            println!("scheme {name}: had no checkpoint; nothing changed");
            exit::OK
        }
        Err(e) => {
            logging::error(e);
            exit::ABORTED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_local_time_is_read_in_the_scheme_zone_and_stored_as_a_run_stores_it() {
        let text = checkpoint_text("2024-03-01 08:00:00", Some(chrono_tz::Asia::Shanghai), now()).unwrap();
        assert_eq!(text, "2024-03-01T08:00:00+08:00");
        let day = checkpoint_text("2024-03-01", Some(chrono_tz::UTC), now()).unwrap();
        assert_eq!(day, "2024-03-01T00:00:00+00:00");
    }

    #[test]
    fn without_a_zone_the_value_needs_its_offset() {
        let err = checkpoint_text("2024-03-01 08:00:00", None, now()).unwrap_err();
        assert!(err.contains("no offset"), "{err}");
        assert_eq!(
            checkpoint_text("2024-03-01T08:00:00+08:00", None, now()).unwrap(),
            "2024-03-01T08:00:00+08:00"
        );
    }

    #[test]
    fn nonsense_and_future_times_are_refused() {
        let zone = Some(chrono_tz::Asia::Shanghai);
        assert!(checkpoint_text("yesterday", zone, now())
            .unwrap_err()
            .contains("not a time"));
        let err = checkpoint_text("2030-01-01", zone, now()).unwrap_err();
        assert!(err.contains("future"), "{err}");
    }
}
