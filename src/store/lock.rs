//! The run lock: two runs of one scheme against one store never overlap.
//!
//! SQLite stores use an OS file lock on `<store>.<scheme>.lock` beside the database;
//! Postgres stores use a session advisory lock keyed by the scheme name. Both are released
//! by the operating system or the server when the holder dies, so a lock left by a killed
//! run is taken over by the next one without any stale-lock bookkeeping. Rejected: a lock
//! row with a heartbeat, which needs a takeover timeout that is either too short (two runs
//! overlap) or too long (a crashed run blocks the next timer).
//!
//! - **One file, one lock.** The lock file is named after the database file with every
//!   symlink, `.` and `..` resolved, so `ferry.db`, `./ferry.db`, an absolute path and a
//!   symlink to it all share one lock (and it lies beside the real file).
//! - **Lock before create.** [`open_locked`] takes a SQLite lock before the database is
//!   created or migrated, so of two runs started together on a new store the loser never
//!   touches it. A Postgres advisory lock needs a session, so there the store is opened
//!   (and migrated, under sqlx's own advisory lock) first.

use super::{parse_location, sqlite, Location, Store, StoreError};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting run (`--wait`) tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Held for the whole run; dropping it releases the lock.
#[must_use = "the lock is released when this is dropped"]
pub struct RunLock {
    _file: Option<File>,
    _pg: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run of scheme `{scheme}` holds the run lock ({place}); it is still running, so this run did not start (pass --wait to queue behind it)")]
    Held { scheme: String, place: String },
    #[error("cannot take the run lock for scheme `{scheme}` ({place}): {reason}")]
    Failed {
        scheme: String,
        place: String,
        reason: String,
    },
    /// The store could not be opened (only from [`open_locked`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn file_name_safe(scheme: &str) -> String {
    scheme
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<database>.<scheme>.lock`, beside the resolved database file.
fn lock_file_path(resolved_database: &Path, scheme: &str) -> PathBuf {
    let mut name = resolved_database.as_os_str().to_owned();
    name.push(format!(".{}.lock", file_name_safe(scheme)));
    PathBuf::from(name)
}

/// Opens the store at `location` (see [`Store::open`]) holding the run lock of `scheme`;
/// with `wait`, queues until the lock is free. For SQLite the lock is taken first, so a run
/// that is refused (or waits) never creates nor migrates the database.
pub async fn open_locked(location: &str, scheme: &str, wait: bool) -> Result<(Store, RunLock), LockError> {
    if let Location::SqliteFile(path) = parse_location(location)? {
        let resolved = sqlite::prepare_file(Path::new(path)).await?;
        let lock = lock_file(&lock_file_path(&resolved, scheme), scheme, wait).await?;
        return Ok((Store::open(location).await?, lock));
    }
    let store = Store::open(location).await?;
    let lock = acquire(&store, scheme, wait).await?;
    Ok((store, lock))
}

/// Takes the run lock of `scheme` on an open store; with `wait`, queues until it is free.
pub async fn acquire(store: &Store, scheme: &str, wait: bool) -> Result<RunLock, LockError> {
    match store {
        Store::Memory(_) => Ok(RunLock { _file: None, _pg: None }),
        Store::Sqlite(sqlite) => lock_file(&lock_file_path(sqlite.resolved_path(), scheme), scheme, wait).await,
        Store::Postgres(pg) => {
            let place = format!("advisory lock in {}", pg.location());
            let failed = |e: &dyn std::fmt::Display| LockError::Failed {
                scheme: scheme.to_string(),
                place: place.clone(),
                reason: e.to_string(),
            };
            let mut connection = pg.pool().acquire().await.map_err(|e| failed(&e))?;
            loop {
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(format!("ferry-run:{scheme}"))
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(|e| failed(&e))?;
                if taken {
                    // The lock lives with this session: keep the connection out of the pool.
                    return Ok(RunLock {
                        _file: None,
                        _pg: Some(connection),
                    });
                }
                if !wait {
                    return Err(LockError::Held {
                        scheme: scheme.to_string(),
                        place,
                    });
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
}

/// An exclusive OS lock on the file at `path`, created if missing.
async fn lock_file(path: &Path, scheme: &str, wait: bool) -> Result<RunLock, LockError> {
    let place = path.display().to_string();
    let failed = |reason: String| LockError::Failed {
        scheme: scheme.to_string(),
        place: place.clone(),
        reason,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| failed(e.to_string()))?;
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(RunLock {
                    _file: Some(file),
                    _pg: None,
                })
            }
            Err(TryLockError::WouldBlock) if wait => tokio::time::sleep(RETRY_EVERY).await,
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    scheme: scheme.to_string(),
                    place,
                })
            }
            Err(TryLockError::Error(e)) => return Err(failed(e.to_string())),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(connection) = self._pg.take() {
            // Closing the session releases its advisory locks.
            drop(connection.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_run_of_the_same_scheme_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db").display().to_string())
            .await
            .unwrap();
        let first = acquire(&store, "orders", false).await.unwrap();
        let refused = acquire(&store, "orders", false).await.err().expect("must be refused");
        assert!(matches!(refused, LockError::Held { .. }), "{refused}");
        assert!(refused.to_string().contains("--wait"));
        // Another scheme is independent.
        let _other = acquire(&store, "customers", false).await.unwrap();
        drop(first);
        let _again = acquire(&store, "orders", false).await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_run_never_creates_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("s.db");
        let resolved = sqlite::prepare_file(&path).await.unwrap();
        let _held = lock_file(&lock_file_path(&resolved, "orders"), "orders", false)
            .await
            .unwrap();
        let location = path.display().to_string();
        let refused = open_locked(&location, "orders", false)
            .await
            .err()
            .expect("must be refused");
        assert!(matches!(refused, LockError::Held { .. }), "{refused}");
        assert!(!path.exists(), "the refused run created the database");
        // Another scheme opens (and creates) it.
        let (store, _lock) = open_locked(&location, "customers", false).await.unwrap();
        assert!(path.exists());
        store.close().await;
    }

    #[tokio::test]
    async fn an_unusable_store_is_a_store_error() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().display().to_string();
        let err = open_locked(&location, "orders", false)
            .await
            .err()
            .expect("a directory");
        assert!(matches!(err, LockError::Store(StoreError::Open { .. })), "{err:?}");
        assert!(err.to_string().contains("it is a directory"), "{err}");
    }

    #[tokio::test]
    async fn wait_queues_behind_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db").display().to_string())
            .await
            .unwrap();
        let first = acquire(&store, "orders", false).await.unwrap();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { acquire(&store, "orders", true).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the waiter must wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
