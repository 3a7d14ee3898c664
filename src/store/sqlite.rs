//! The SQLite store: one database file, migrated on open.
//!
//! - **Opening.** The path is resolved first (symlinks, `.`, `..`; [`resolve_file`]) so
//!   the run lock can name the real file. Several processes may open a new store at
//!   once: sqlx takes no migration lock for SQLite, so a store that needs migrating is
//!   migrated in one `BEGIN IMMEDIATE` transaction (the others wait and find it done), and
//!   the switch to WAL, which SQLite does not wait for, is retried until `busy_timeout`.
//! - **Connections.** Writes go through a pool of exactly one connection, so
//!   writers in this process queue in Rust instead of spinning on SQLite's lock,
//!   and write transactions start with `BEGIN IMMEDIATE`, so a transaction never
//!   has to upgrade a read lock (the classic SQLITE_BUSY deadlock). Reads use a
//!   separate small pool; in WAL mode they never block the writer nor wait for it.
//!   Rejected: one shared pool, where reads queue behind commits.
//! - **Durability.** WAL journal with `synchronous=NORMAL`: a committed batch
//!   survives a crash of ferry; a power cut may lose the last few commits, never
//!   corrupt the file. `sqlite:PATH?synchronous=full` ([`SqliteSync::Full`]) syncs every
//!   commit, so it also survives a power cut. `busy_timeout` is 5 s for other processes' locks; past it
//!   the error is [`StoreError::Busy`] (retryable).
//! - **Speed.** Every statement is prepared once per connection (sqlx caches them
//!   by text). A batch commit is a handful of statements: multi-row `INSERT … ON
//!   CONFLICT` upserts and one `UPDATE … IN (…)`, chunked to at most
//!   [`MAX_BINDS`] parameters each. `mappings_for` returns its rows packed in one
//!   JSON array.
//! - **Group commit.** Batch commits and write intents go through one task
//!   ([`group_writer`]) that merges whatever is queued into one transaction, sent to
//!   SQLite's thread as one multi-statement text. The writer connection is the one
//!   serial resource of a run; this keeps it busy with SQLite's own work instead of
//!   waiting for callers' tasks between statements, and lets concurrent batches share
//!   a commit.
//! - **Anonymous `?` parameters only.** With numbered ones (`$1`, `?1`) sqlx asks
//!   SQLite for every parameter's name, which walks a list: quadratic in the
//!   parameter count, and it took 40% of a batch commit. So the Postgres backend
//!   gets its own SQL text (it wants `$n` and `UNNEST` anyway); otherwise the
//!   statements stay standard SQL plus `ON CONFLICT` upserts. SQLite-only bits:
//!   `LIMIT -1`, `BEGIN IMMEDIATE`, the schema file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::field_mappings::{
    put_step, FieldMapping, FieldMappingChanges, FieldMappingFilter, FieldMappingStore, FieldSide, FieldTable, PutStep,
};
use super::{
    check_keep, check_limit, check_query, event_ids_by_scheme, now, BatchCommit, BatchWriter, CheckpointStore,
    EventLog, Failure, FailureLedger, FailureStatus, IntentLog, Mapping, MappingQuery, MappingStatus, MappingStore,
    NewFailure, RateBudget, RecordEvent, RunHistory, RunRecord, StoreError, WriteIntent,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most bind parameters per statement (SQLite's historical default limit).
const MAX_BINDS: usize = 999;
/// Ids per `IN (…)` list, leaving room for the other parameters of the statement.
const IN_CHUNK: usize = 498;
const READ_CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Pause between tries to open a store that another process is creating.
const OPEN_RETRY_EVERY: Duration = Duration::from_millis(20);

const MAPPING_COLUMNS: &str = "scheme, source_object, source_id, source_name, target_object, \
     target_id, target_name, status, payload_hash, attempts, last_error, first_synced_at, last_synced_at, \
     detail_ids";
const MAPPING_COLUMN_COUNT: usize = 14;
const MAPPING_UPSERT_TAIL: &str = " ON CONFLICT (scheme, source_object, source_id) DO UPDATE SET \
     source_name = excluded.source_name, \
     target_object = excluded.target_object, \
     target_id = COALESCE(excluded.target_id, mappings.target_id), \
     target_name = COALESCE(excluded.target_name, mappings.target_name), \
     status = excluded.status, \
     payload_hash = excluded.payload_hash, \
     attempts = excluded.attempts, \
     last_error = excluded.last_error, \
     first_synced_at = COALESCE(mappings.first_synced_at, excluded.first_synced_at), \
     last_synced_at = excluded.last_synced_at, \
     detail_ids = COALESCE(excluded.detail_ids, mappings.detail_ids)";

const FAILURE_COLUMNS: &str = "id, scheme, source_id, stage, error_class, message, attempts, \
     first_seen, last_seen, payload, status";
/// Bound per inserted failure: scheme, source_id, stage, error_class, message, first_seen, last_seen, payload.
const FAILURE_BINDS_PER_ROW: usize = 8;
const FAILURE_UPSERT_TAIL: &str = " ON CONFLICT (scheme, source_id, stage) WHERE status = 'open' \
     DO UPDATE SET error_class = excluded.error_class, message = excluded.message, \
     payload = excluded.payload, attempts = failures.attempts + 1, last_seen = excluded.last_seen";

const RUN_COLUMNS: &str = "id, scheme, started_at, finished_at, status, summary";

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// A store in one SQLite file. Clones share the connection pools.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    /// The database file with every symlink, `.` and `..` resolved ([`prepare_file`]).
    resolved: PathBuf,
    writer: SqlitePool,
    readers: SqlitePool,
    /// Queue of the group writer ([`group_writer`]).
    group: mpsc::UnboundedSender<(GroupOp, GroupReply)>,
    /// Queue of the inbox appender (`super::inbox::appender`): pushes arriving together
    /// are committed in one transaction.
    pub(super) appends: mpsc::UnboundedSender<super::inbox::AppendJob>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

/// How durable a commit is (`?synchronous=` on a `sqlite:` store location).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// WAL with `synchronous=NORMAL`: a commit survives the process being killed; the last
    /// commits before a power loss or OS crash may be lost (the file stays consistent).
    #[default]
    Normal,
    /// `synchronous=FULL`: each commit is synced to disk before it returns, so it also
    /// survives a power loss; every commit costs an fsync.
    Full,
}

impl SqliteStore {
    /// Open (creating the file and its directory if missing) and migrate the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), BUSY_TIMEOUT, SqliteSync::Normal).await
    }

    /// [`SqliteStore::open`] with the durability of a commit chosen (`?synchronous=full`).
    pub async fn open_synchronous(path: impl AsRef<Path>, sync: SqliteSync) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), BUSY_TIMEOUT, sync).await
    }

    /// [`SqliteStore::open`] with a chosen wait for other processes' locks.
    pub(crate) async fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
    ) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), busy_timeout, SqliteSync::Normal).await
    }

    async fn open_with(path: &Path, busy_timeout: Duration, sync: SqliteSync) -> Result<SqliteStore, StoreError> {
        let location = path.display().to_string();
        let resolved = prepare_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(&resolved)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SqliteSync::Normal => SqliteSynchronous::Normal,
                SqliteSync::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
            // Checkpoints (copying the WAL back into the file, with an fsync) mostly run in
            // the background on a reader connection, off the writer's path (`checkpointer`);
            // the writer's own, at 4000 pages (16 MiB), only bounds the WAL's size.
            .pragma("wal_autocheckpoint", "4000");
        // Switching a new file to WAL takes an exclusive lock that SQLite does not wait for
        // (busy_timeout does not apply to it), so a process that opens a new store while
        // another one creates it tries again, until busy_timeout has passed.
        let give_up_at = Instant::now() + busy_timeout;
        let writer = loop {
            match open_writer(&options, &location).await {
                Ok(writer) => break writer,
                Err(err) if err.is_retryable() && Instant::now() < give_up_at => {
                    tokio::time::sleep(OPEN_RETRY_EVERY).await
                }
                Err(err) => return Err(err),
            }
        };
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|err| open_error(&location, err))?;
        let (group, queue) = mpsc::unbounded_channel();
        tokio::spawn(group_writer(writer.clone(), location.clone(), queue));
        let (appends, append_queue) = mpsc::unbounded_channel();
        tokio::spawn(super::inbox::appender(writer.clone(), location.clone(), append_queue));
        let inner = Arc::new(Inner {
            location,
            resolved,
            writer,
            readers,
            group,
            appends,
        });
        tokio::spawn(checkpointer(Arc::downgrade(&inner)));
        Ok(SqliteStore { inner })
    }

    /// The file this store lives in, as it was given.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The database file itself: absolute, with every symlink, `.` and `..` resolved, so
    /// every spelling of one store's path gives the same value.
    pub fn resolved_path(&self) -> &Path {
        &self.inner.resolved
    }

    /// Close every connection (checkpointing the WAL). Later calls fail.
    pub async fn close(&self) {
        self.inner.readers.close().await;
        // Leave a short WAL behind; failure only means the next open replays more of it.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.inner.writer)
            .await;
        self.inner.writer.close().await;
    }

    /// The write pool, for tests that need to reach behind the API.
    #[cfg(test)]
    pub(crate) fn writer_pool(&self) -> &SqlitePool {
        &self.inner.writer
    }

    /// The one-connection write pool and the read pool (for the inbox, `super::inbox`).
    pub(super) fn writer(&self) -> &SqlitePool {
        &self.inner.writer
    }
    /// Where the inbox appender takes pushes (see `super::inbox::appender`).
    pub(super) fn appends(&self) -> &mpsc::UnboundedSender<super::inbox::AppendJob> {
        &self.inner.appends
    }
    pub(super) fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }
    pub(super) fn corrupt_row(&self, action: &'static str, detail: String) -> StoreError {
        self.corrupt(action)(detail)
    }

    pub(super) fn failed(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |err| {
            let (busy, reason) = describe_sqlx(&err);
            StoreError::statement(self.inner.location.clone(), action, busy, reason)
        }
    }

    fn corrupt(&self, action: &'static str) -> impl FnOnce(String) -> StoreError + '_ {
        move |detail| StoreError::Corrupt {
            location: self.inner.location.clone(),
            action,
            detail,
        }
    }

    async fn fetch_mappings(&self, query: Query<'_>, action: &'static str) -> Result<Vec<Mapping>, StoreError> {
        let rows = query
            .fetch_all(&self.inner.readers)
            .await
            .map_err(self.failed(action))?;
        rows.iter()
            .map(|row| decode_mapping(row).map_err(self.corrupt(action)))
            .collect()
    }

    async fn fetch_failures(&self, query: Query<'_>, action: &'static str) -> Result<Vec<Failure>, StoreError> {
        let rows = query
            .fetch_all(&self.inner.readers)
            .await
            .map_err(self.failed(action))?;
        rows.iter()
            .map(|row| decode_failure(row).map_err(self.corrupt(action)))
            .collect()
    }
}

impl MappingStore for SqliteStore {
    async fn mappings_for(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Mapping>, StoreError> {
        const ACTION: &str = "looking up mappings";
        let mut found = HashMap::with_capacity(source_ids.len());
        for chunk in source_ids.chunks(IN_CHUNK) {
            // The rows come back as one JSON array: sqlx hands rows over one at a
            // time between threads, and at 100 rows that doubled the look-up time.
            let mut sql = String::from(
                "SELECT json_group_array(json_array(source_id, source_name, target_object, \
                 target_id, target_name, status, payload_hash, attempts, last_error, \
                 first_synced_at, last_synced_at, detail_ids)) \
                 FROM mappings WHERE scheme = ? AND source_object = ? AND source_id IN (",
            );
            push_params(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(scheme).bind(source_object);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let text = query
                .fetch_one(&self.inner.readers)
                .await
                .map_err(self.failed(ACTION))?;
            let rows: Vec<PackedMapping> = serde_json::from_str(&text)
                .map_err(|err| self.corrupt(ACTION)(format!("mapping rows are unreadable: {err}")))?;
            for row in rows {
                let m = unpack_mapping(row, scheme, source_object).map_err(self.corrupt(ACTION))?;
                found.insert(m.source_id.clone(), m);
            }
        }
        Ok(found)
    }

    async fn query_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        check_query(q)?;
        let mut sql = format!("SELECT {MAPPING_COLUMNS} FROM mappings WHERE 1 = 1");
        if q.scheme.is_some() {
            sql.push_str(" AND scheme = ?");
        }
        if !q.source_ids.is_empty() {
            sql.push_str(" AND source_id IN (");
            push_params(&mut sql, q.source_ids.len());
            sql.push(')');
        }
        if !q.target_ids.is_empty() {
            sql.push_str(" AND target_id IN (");
            push_params(&mut sql, q.target_ids.len());
            sql.push(')');
        }
        if q.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        sql.push_str(" ORDER BY scheme, source_object, rtrim(source_id, '0123456789'), length(source_id), source_id LIMIT ? OFFSET ?");
        let mut query = sqlx::query(&sql);
        if let Some(scheme) = &q.scheme {
            query = query.bind(scheme.as_str());
        }
        for id in q.source_ids.iter().chain(&q.target_ids) {
            query = query.bind(id.as_str());
        }
        if let Some(status) = q.status {
            query = query.bind(status.as_str());
        }
        // SQLite reads a negative LIMIT as "no limit".
        query = query.bind(q.limit.unwrap_or(-1)).bind(q.offset);
        self.fetch_mappings(query, "listing mappings").await
    }

    async fn upsert_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        let sql = mapping_upsert_sql(1);
        bind_mapping(sqlx::query(&sql), m)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("saving a mapping"))?;
        Ok(())
    }

    async fn delete_mapping(&self, scheme: &str, source_object: &str, source_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM mappings WHERE scheme = ? AND source_object = ? AND source_id = ?")
            .bind(scheme)
            .bind(source_object)
            .bind(source_id)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("deleting a mapping"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn target_id_for(&self, object: &str, source_id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<_, String>(
            "SELECT target_id FROM mappings \
             WHERE source_id = ? AND (target_object = ? OR scheme = ?) \
               AND status IN ('created', 'updated') AND target_id IS NOT NULL \
             ORDER BY scheme = ? DESC, last_synced_at DESC, scheme, source_object \
             LIMIT 1",
        )
        .bind(source_id)
        .bind(object)
        .bind(object)
        .bind(object)
        .fetch_optional(&self.inner.readers)
        .await
        .map_err(self.failed("looking up a mapped id"))
    }
}

impl CheckpointStore for SqliteStore {
    async fn checkpoint(&self, scheme: &str, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<_, String>("SELECT value FROM checkpoints WHERE scheme = ? AND key = ?")
            .bind(scheme)
            .bind(key)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(self.failed("reading a checkpoint"))
    }

    async fn set_checkpoint(&self, scheme: &str, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (scheme, key, value, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (scheme, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(scheme)
        .bind(key)
        .bind(value)
        .bind(now().timestamp_millis())
        .execute(&self.inner.writer)
        .await
        .map_err(self.failed("saving a checkpoint"))?;
        Ok(())
    }

    async fn clear_checkpoint(&self, scheme: &str, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM checkpoints WHERE scheme = ? AND key = ?")
            .bind(scheme)
            .bind(key)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("clearing a checkpoint"))?;
        Ok(done.rows_affected() > 0)
    }
}

impl FailureLedger for SqliteStore {
    async fn list_failures(
        &self,
        scheme: Option<&str>,
        status: Option<FailureStatus>,
        limit: i64,
    ) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let mut sql = format!("SELECT {FAILURE_COLUMNS} FROM failures WHERE 1 = 1");
        if scheme.is_some() {
            sql.push_str(" AND scheme = ?");
        }
        if status.is_some() {
            sql.push_str(" AND status = ?");
        }
        sql.push_str(" ORDER BY last_seen DESC, id DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(scheme) = scheme {
            query = query.bind(scheme);
        }
        if let Some(status) = status {
            query = query.bind(status.as_str());
        }
        self.fetch_failures(query.bind(limit), "listing failures").await
    }

    async fn failures_of(&self, scheme: &str, source_id: &str, limit: i64) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM failures WHERE scheme = ? AND source_id = ? \
             ORDER BY last_seen DESC, id DESC LIMIT ?"
        );
        let query = sqlx::query(&sql).bind(scheme).bind(source_id).bind(limit);
        self.fetch_failures(query, "listing a record's failures").await
    }

    async fn failure(&self, id: i64) -> Result<Option<Failure>, StoreError> {
        let sql = format!("SELECT {FAILURE_COLUMNS} FROM failures WHERE id = ?");
        let found = self
            .fetch_failures(sqlx::query(&sql).bind(id), "reading a failure")
            .await?;
        Ok(found.into_iter().next())
    }

    async fn set_failure_status(&self, ids: &[i64], status: FailureStatus) -> Result<u64, StoreError> {
        const ACTION: &str = "changing failure status";
        // Reopening must not collide with an open failure for the same key (the
        // unique index would reject it), so that case checks first.
        let sql = if status == FailureStatus::Open {
            "UPDATE failures SET status = 'open' WHERE id = ? AND status <> 'open' \
             AND NOT EXISTS (SELECT 1 FROM failures AS other WHERE other.status = 'open' \
               AND other.scheme = failures.scheme AND other.source_id = failures.source_id \
               AND other.stage = failures.stage)"
        } else {
            "UPDATE failures SET status = ? WHERE id = ? AND status <> ?"
        };
        let mut tx = self
            .inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed(ACTION))?;
        let mut changed = 0;
        for &id in ids {
            let query = if status == FailureStatus::Open {
                sqlx::query(sql).bind(id)
            } else {
                sqlx::query(sql).bind(status.as_str()).bind(id).bind(status.as_str())
            };
            let done = query.execute(&mut *tx).await.map_err(self.failed(ACTION))?;
            changed += done.rows_affected();
        }
        tx.commit().await.map_err(self.failed(ACTION))?;
        Ok(changed)
    }

    async fn count_open_failures(&self, scheme: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM failures WHERE scheme = ? AND status = 'open'")
            .bind(scheme)
            .fetch_one(&self.inner.readers)
            .await
            .map_err(self.failed("counting open failures"))
    }
}

impl RunHistory for SqliteStore {
    async fn start_run(&self, scheme: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO runs (scheme, started_at, status) VALUES (?, ?, 'running') RETURNING id",
        )
        .bind(scheme)
        .bind(now().timestamp_millis())
        .fetch_one(&self.inner.writer)
        .await
        .map_err(self.failed("recording the start of a run"))
    }

    async fn finish_run(&self, id: i64, status: &str, summary: &serde_json::Value) -> Result<(), StoreError> {
        let summary = to_json_text(summary)?;
        let done = sqlx::query("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?")
            .bind(now().timestamp_millis())
            .bind(status)
            .bind(summary)
            .bind(id)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("recording the end of a run"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                location: self.inner.location.clone(),
                what: format!("run {id}"),
            });
        }
        Ok(())
    }

    async fn recent_runs(&self, scheme: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        const ACTION: &str = "listing runs";
        check_limit(limit)?;
        let sql = match scheme {
            Some(_) => {
                format!("SELECT {RUN_COLUMNS} FROM runs WHERE scheme = ? ORDER BY id DESC LIMIT ?")
            }
            None => format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?"),
        };
        let mut query = sqlx::query(&sql);
        if let Some(scheme) = scheme {
            query = query.bind(scheme);
        }
        let query = query.bind(limit);
        let rows = query
            .fetch_all(&self.inner.readers)
            .await
            .map_err(self.failed(ACTION))?;
        rows.iter()
            .map(|row| decode_run(row).map_err(self.corrupt(ACTION)))
            .collect()
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        const ACTION: &str = "reading a run";
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(self.failed(ACTION))?;
        row.as_ref()
            .map(|row| decode_run(row).map_err(self.corrupt(ACTION)))
            .transpose()
    }

    async fn latest_runs(&self, scheme: Option<&str>, status: Option<&str>) -> Result<Vec<RunRecord>, StoreError> {
        const ACTION: &str = "listing the latest runs";
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs \
             WHERE (?1 IS NULL OR scheme = ?1) AND (?2 IS NULL OR status = ?2) GROUP BY scheme) ORDER BY scheme"
        );
        let rows = sqlx::query(&sql)
            .bind(scheme)
            .bind(status)
            .fetch_all(&self.inner.readers)
            .await
            .map_err(self.failed(ACTION))?;
        rows.iter()
            .map(|row| decode_run(row).map_err(self.corrupt(ACTION)))
            .collect()
    }
}

impl BatchWriter for SqliteStore {
    async fn commit_batch(&self, batch: BatchCommit) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let at = now().timestamp_millis();
        let payloads = batch
            .failures
            .iter()
            .map(|f| f.payload.as_ref().map(to_json_text).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        self.submit(GroupOp::Commit { batch, payloads, at }, "saving a batch")
            .await
    }
}

impl IntentLog for SqliteStore {
    async fn record_intents(&self, intents: &[WriteIntent]) -> Result<(), StoreError> {
        let batches: Vec<OwnedIntentBatch> = super::intent_batches(intents)?
            .into_iter()
            .map(|b| OwnedIntentBatch {
                scheme: b.scheme.to_owned(),
                batch_id: b.batch_id.to_owned(),
                created_at: b.created_at,
                json: b.json,
            })
            .collect();
        if batches.is_empty() {
            return Ok(());
        }
        self.submit(GroupOp::Intents { batches }, "saving write intents").await
    }

    async fn pending_intents(&self, scheme: &str) -> Result<Vec<WriteIntent>, StoreError> {
        const ACTION: &str = "reading write intents";
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT intents FROM write_intents WHERE scheme = ? ORDER BY created_at, batch_id, id")
                .bind(scheme)
                .fetch_all(&self.inner.writer)
                .await
                .map_err(self.failed(ACTION))?;
        super::unpack_intents(rows.iter().map(String::as_str)).map_err(self.corrupt(ACTION))
    }
}

impl SqliteStore {
    /// Hands one write to the group writer and waits for its transaction to commit.
    async fn submit(&self, op: GroupOp, action: &'static str) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let lost = || StoreError::Query {
            location: self.inner.location.clone(),
            action,
            reason: "the store's writer has stopped (is the store closed?)".to_owned(),
        };
        self.inner.group.send((op, reply)).map_err(|_| lost())?;
        answer.await.unwrap_or_else(|_| Err(lost()))
    }
}

// ---- group commit ---------------------------------------------------------------------

/// Writes that may share a transaction with others queued at the same moment.
enum GroupOp {
    Intents {
        batches: Vec<OwnedIntentBatch>,
    },
    Commit {
        batch: BatchCommit,
        /// The failures' payloads as JSON text, parallel to `batch.failures`.
        payloads: Vec<Option<String>>,
        at: i64,
    },
    /// Record events, then trim each record named to its newest `keep`.
    Events {
        events: Vec<RecordEvent>,
        /// Each event's `detail` JSON, parallel to `events`.
        details: Vec<String>,
        keep: i64,
    },
}

/// Columns of one `record_events` row as inserted.
const EVENT_COLUMNS: usize = 7;

struct OwnedIntentBatch {
    scheme: String,
    batch_id: String,
    created_at: i64,
    json: String,
}

type GroupReply = oneshot::Sender<Result<(), StoreError>>;

/// Most writes merged into one transaction.
const MAX_GROUP: usize = 16;

/// The one task that runs batch commits and intent records (group commit). It takes every
/// write queued while the previous transaction ran and commits them together, as one
/// multi-statement text sent to SQLite's thread in one go. Writers in flight at once (the
/// intents of one batch, the answer of another) then pay for one commit, and no statement
/// waits for its caller's task to be polled between statements. If a merged transaction
/// fails, each write is run again alone, so an error reaches only the write that caused it.
///
/// The task (not its callers) opens and closes each transaction, so a caller that is
/// dropped mid-write cannot leave one open. It ends when the store is dropped.
async fn group_writer(writer: SqlitePool, location: String, mut queue: mpsc::UnboundedReceiver<(GroupOp, GroupReply)>) {
    let mut group: Vec<(GroupOp, GroupReply)> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let ops: Vec<&GroupOp> = group.iter().map(|(op, _)| op).collect();
        let merged = run_group(&writer, &location, &ops).await;
        drop(ops);
        match merged {
            Ok(()) => {
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(err) if group.len() == 1 => {
                if let Some((_, reply)) = group.pop() {
                    let _ = reply.send(Err(err));
                }
            }
            Err(_) => {
                for (op, reply) in group.drain(..) {
                    let _ = reply.send(run_group(&writer, &location, &[&op]).await);
                }
            }
        }
    }
}

/// Runs `ops` in one transaction.
async fn run_group(writer: &SqlitePool, location: &str, ops: &[&GroupOp]) -> Result<(), StoreError> {
    let action = match ops {
        [GroupOp::Intents { .. }] => "saving write intents",
        [GroupOp::Events { .. }] => "saving record events",
        _ => "saving a batch",
    };
    let failed = |err: sqlx::Error| {
        let (busy, reason) = describe_sqlx(&err);
        StoreError::statement(location.to_owned(), action, busy, reason)
    };
    // Statements first, then their parameters in the same order.
    let mut sql = String::from("BEGIN IMMEDIATE;\n");
    for op in ops {
        push_group_statements(&mut sql, op);
    }
    sql.push_str("COMMIT;");
    // Not cached: the text differs with the number and size of the merged batches, and
    // sqlx's per-connection cache of up to 100 such prepared statements held tens of MiB
    // at `in_flight: 8` (peak RSS grew with in_flight × batch size).
    let mut query = sqlx::query(&sql).persistent(false);
    let resolved: Vec<BTreeMap<&str, Vec<&str>>> = ops.iter().map(|op| resolved_by_scheme(op)).collect();
    for (op, resolved) in ops.iter().zip(&resolved) {
        query = bind_group_op(query, op, resolved);
    }
    let mut conn = writer.acquire().await.map_err(failed)?;
    if let Err(err) = query.execute(&mut *conn).await {
        // A statement after BEGIN failed: end the transaction it left open. (When BEGIN
        // itself failed there is none, and this ROLLBACK fails harmlessly.)
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(failed(err));
    }
    Ok(())
}

fn resolved_by_scheme(op: &GroupOp) -> BTreeMap<&str, Vec<&str>> {
    let mut resolved: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    if let GroupOp::Commit { batch, .. } = op {
        for (scheme, source_id) in &batch.resolved {
            resolved.entry(scheme).or_default().push(source_id);
        }
    }
    resolved
}

fn push_group_statements(sql: &mut String, op: &GroupOp) {
    match op {
        GroupOp::Intents { batches } => {
            sql.push_str("INSERT INTO write_intents (scheme, batch_id, created_at, intents)");
            values_rows(sql, batches.len(), 4, "");
            sql.push_str(";\n");
        }
        GroupOp::Commit { batch, .. } => {
            for rows in batch.mappings.chunks(MAX_BINDS / MAPPING_COLUMN_COUNT) {
                sql.push_str(&mapping_upsert_sql(rows.len()));
                sql.push_str(";\n");
            }
            for source_ids in resolved_by_scheme(op).values() {
                for chunk in source_ids.chunks(IN_CHUNK) {
                    sql.push_str(
                        "UPDATE failures SET status = 'resolved' \
                         WHERE status = 'open' AND scheme = ? AND source_id IN (",
                    );
                    push_params(sql, chunk.len());
                    sql.push_str(");\n");
                }
            }
            for rows in batch.failures.chunks(MAX_BINDS / FAILURE_BINDS_PER_ROW) {
                sql.push_str(&failure_upsert_sql(rows.len()));
                sql.push_str(";\n");
            }
            for _ in &batch.settled {
                sql.push_str("DELETE FROM write_intents WHERE scheme = ? AND batch_id = ?;\n");
            }
        }
        GroupOp::Events { events, .. } => {
            for rows in events.chunks(MAX_BINDS / EVENT_COLUMNS) {
                sql.push_str(
                    "INSERT INTO record_events (scheme, source_id, run_id, at, outcome, payload_hash, detail)",
                );
                values_rows(sql, rows.len(), EVENT_COLUMNS, "");
                sql.push_str(";\n");
            }
            for source_ids in event_ids_by_scheme(events).values() {
                for chunk in source_ids.chunks(IN_CHUNK) {
                    sql.push_str(
                        "DELETE FROM record_events WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER \
                         (PARTITION BY source_id ORDER BY id DESC) AS n FROM record_events \
                         WHERE scheme = ? AND source_id IN (",
                    );
                    push_params(sql, chunk.len());
                    sql.push_str(")) WHERE n > ?);\n");
                }
            }
        }
    }
}

fn bind_group_op<'q>(mut query: Query<'q>, op: &'q GroupOp, resolved: &BTreeMap<&'q str, Vec<&'q str>>) -> Query<'q> {
    match op {
        GroupOp::Intents { batches } => {
            for batch in batches {
                query = query
                    .bind(batch.scheme.as_str())
                    .bind(batch.batch_id.as_str())
                    .bind(batch.created_at)
                    .bind(batch.json.as_str());
            }
        }
        GroupOp::Commit { batch, payloads, at } => {
            for m in &batch.mappings {
                query = bind_mapping(query, m);
            }
            for (scheme, source_ids) in resolved {
                for chunk in source_ids.chunks(IN_CHUNK) {
                    query = query.bind(*scheme);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                }
            }
            for (f, payload) in batch.failures.iter().zip(payloads) {
                query = bind_failure(query, f, *at, payload.as_deref());
            }
            for (scheme, batch_id) in &batch.settled {
                query = query.bind(scheme.as_str()).bind(batch_id.as_str());
            }
        }
        GroupOp::Events { events, details, keep } => {
            for (e, detail) in events.iter().zip(details) {
                query = query
                    .bind(e.scheme.as_str())
                    .bind(e.source_id.as_str())
                    .bind(e.run_id)
                    .bind(e.at.timestamp_millis())
                    .bind(e.outcome.as_str())
                    .bind(e.payload_hash.as_deref())
                    .bind(detail.as_str());
            }
            for (scheme, source_ids) in event_ids_by_scheme(events) {
                for chunk in source_ids.chunks(IN_CHUNK) {
                    query = query.bind(scheme);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query = query.bind(*keep);
                }
            }
        }
    }
    query
}

impl EventLog for SqliteStore {
    async fn record_events(&self, events: Vec<RecordEvent>, keep: u32) -> Result<(), StoreError> {
        check_keep(keep)?;
        if keep == 0 || events.is_empty() {
            return Ok(());
        }
        let details = events
            .iter()
            .map(RecordEvent::detail_json)
            .collect::<Result<Vec<_>, _>>()?;
        let op = GroupOp::Events {
            events,
            details,
            keep: i64::from(keep),
        };
        self.submit(op, "saving record events").await
    }

    async fn record_events_for(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> Result<Vec<RecordEvent>, StoreError> {
        const ACTION: &str = "reading record events";
        check_limit(limit)?;
        let rows: Vec<super::EventColumns> = sqlx::query_as(
            "SELECT scheme, source_id, run_id, at, outcome, payload_hash, detail FROM record_events \
             WHERE scheme = ? AND source_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(scheme)
        .bind(source_id)
        .bind(limit)
        .fetch_all(&self.inner.readers)
        .await
        .map_err(self.failed(ACTION))?;
        rows.into_iter()
            .map(|(scheme, source_id, run_id, at, outcome, hash, detail)| {
                RecordEvent::from_columns(scheme, source_id, run_id, at, &outcome, hash, &detail)
            })
            .collect::<Result<_, _>>()
            .map_err(self.corrupt(ACTION))
    }
}

impl RateBudget for SqliteStore {
    async fn take_token(&self, name: &str, per_second: f64, burst: u32) -> Result<Duration, StoreError> {
        let tokens: f64 = sqlx::query_scalar(
            "INSERT INTO rate_budgets (name, tokens, updated_at) VALUES (?1, ?2 - 1.0, ?4) \
             ON CONFLICT (name) DO UPDATE SET \
               tokens = min(?2, tokens + max(0, ?4 - updated_at) * ?3 / 1000.0) - 1.0, \
               updated_at = max(updated_at, ?4) \
             RETURNING tokens",
        )
        .bind(name)
        .bind(f64::from(burst))
        .bind(per_second)
        .bind(now().timestamp_millis())
        .fetch_one(&self.inner.writer)
        .await
        .map_err(self.failed("taking from a rate budget"))?;
        Ok(crate::rate::wait_for(tokens, per_second))
    }
}

/// Copies the WAL back into the database file every `CHECKPOINT_EVERY` with a PASSIVE
/// checkpoint, which never blocks the writer (the writer's own automatic checkpoints are
/// off). Ends when the store is closed or dropped.
async fn checkpointer(store: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(inner) = store.upgrade() else { return };
        if inner.readers.is_closed() {
            return;
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&inner.readers)
            .await
        {
            tracing::debug!(error = %err, "background WAL checkpoint failed; retrying later");
        }
    }
}

// ---- SQL text ----------------------------------------------------------------------

/// Append `count` anonymous parameters: `?, ?, …`.
fn push_params(sql: &mut String, count: usize) {
    for n in 0..count {
        sql.push_str(if n == 0 { "?" } else { ", ?" });
    }
}

fn values_rows(sql: &mut String, rows: usize, per_row: usize, literals: &str) {
    sql.push_str(" VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_params(sql, per_row);
        sql.push_str(literals);
        sql.push(')');
    }
}

fn mapping_upsert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(200 + rows * 60 + MAPPING_UPSERT_TAIL.len());
    let _ = write!(sql, "INSERT INTO mappings ({MAPPING_COLUMNS})");
    values_rows(&mut sql, rows, MAPPING_COLUMN_COUNT, "");
    sql.push_str(MAPPING_UPSERT_TAIL);
    sql
}

fn failure_upsert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(200 + rows * 50 + FAILURE_UPSERT_TAIL.len());
    sql.push_str(
        "INSERT INTO failures (scheme, source_id, stage, error_class, message, first_seen, \
         last_seen, payload, attempts, status)",
    );
    values_rows(&mut sql, rows, FAILURE_BINDS_PER_ROW, ", 1, 'open'");
    sql.push_str(FAILURE_UPSERT_TAIL);
    sql
}

fn bind_mapping<'q>(query: Query<'q>, m: &'q Mapping) -> Query<'q> {
    query
        .bind(m.scheme.as_str())
        .bind(m.source_object.as_str())
        .bind(m.source_id.as_str())
        .bind(m.source_name.as_deref())
        .bind(m.target_object.as_str())
        .bind(m.target_id.as_deref())
        .bind(m.target_name.as_deref())
        .bind(m.status.as_str())
        .bind(m.payload_hash.as_deref())
        .bind(m.attempts)
        .bind(m.last_error.as_deref())
        .bind(m.first_synced_at.map(|t| t.timestamp_millis()))
        .bind(m.last_synced_at.map(|t| t.timestamp_millis()))
        .bind(m.detail_ids.as_ref().map(serde_json::Value::to_string))
}

fn bind_failure<'q>(query: Query<'q>, f: &'q NewFailure, at: i64, payload: Option<&'q str>) -> Query<'q> {
    query
        .bind(f.scheme.as_str())
        .bind(f.source_id.as_str())
        .bind(f.stage.as_str())
        .bind(f.error_class.as_str())
        .bind(f.message.as_str())
        .bind(at)
        .bind(at)
        .bind(payload)
}

// ---- decoding ----------------------------------------------------------------------

fn column<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(row: &'r SqliteRow, index: usize) -> Result<T, String> {
    row.try_get(index).map_err(|err| err.to_string())
}

fn timestamp(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} is out of range"))
}

fn optional_timestamp(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, String> {
    ms.map(timestamp).transpose()
}

fn json(text: Option<String>) -> Result<Option<serde_json::Value>, String> {
    text.map(|t| serde_json::from_str(&t).map_err(|err| format!("stored JSON is invalid: {err}")))
        .transpose()
}

fn to_json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::InvalidRequest(format!("a JSON value cannot be stored: {err}")))
}

fn decode_mapping(row: &SqliteRow) -> Result<Mapping, String> {
    Ok(Mapping {
        scheme: column(row, 0)?,
        source_object: column(row, 1)?,
        source_id: column(row, 2)?,
        source_name: column(row, 3)?,
        target_object: column(row, 4)?,
        target_id: column(row, 5)?,
        target_name: column(row, 6)?,
        status: column::<&str>(row, 7)?
            .parse()
            .map_err(|err: super::ParseStatusError| err.to_string())?,
        payload_hash: column(row, 8)?,
        attempts: column(row, 9)?,
        last_error: column(row, 10)?,
        first_synced_at: optional_timestamp(column(row, 11)?)?,
        last_synced_at: optional_timestamp(column(row, 12)?)?,
        detail_ids: json(column(row, 13)?)?,
    })
}

/// A mapping row as `mappings_for` packs it with `json_array(…)`, minus the two key
/// columns the caller already knows.
type PackedMapping = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    MappingStatus,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn unpack_mapping(packed: PackedMapping, scheme: &str, source_object: &str) -> Result<Mapping, String> {
    let (
        source_id,
        source_name,
        target_object,
        target_id,
        target_name,
        status,
        payload_hash,
        attempts,
        last_error,
        first_synced_at,
        last_synced_at,
        detail_ids,
    ) = packed;
    Ok(Mapping {
        scheme: scheme.to_owned(),
        source_object: source_object.to_owned(),
        source_id,
        source_name,
        target_object,
        target_id,
        target_name,
        status,
        payload_hash,
        attempts,
        last_error,
        first_synced_at: optional_timestamp(first_synced_at)?,
        last_synced_at: optional_timestamp(last_synced_at)?,
        detail_ids: json(detail_ids)?,
    })
}

fn decode_failure(row: &SqliteRow) -> Result<Failure, String> {
    Ok(Failure {
        id: column(row, 0)?,
        scheme: column(row, 1)?,
        source_id: column(row, 2)?,
        stage: column::<&str>(row, 3)?
            .parse()
            .map_err(|err: super::ParseStatusError| err.to_string())?,
        error_class: column(row, 4)?,
        message: column(row, 5)?,
        attempts: column(row, 6)?,
        first_seen: timestamp(column(row, 7)?)?,
        last_seen: timestamp(column(row, 8)?)?,
        payload: json(column(row, 9)?)?,
        status: column::<&str>(row, 10)?
            .parse()
            .map_err(|err: super::ParseStatusError| err.to_string())?,
    })
}

fn decode_run(row: &SqliteRow) -> Result<RunRecord, String> {
    Ok(RunRecord {
        id: column(row, 0)?,
        scheme: column(row, 1)?,
        started_at: timestamp(column(row, 2)?)?,
        finished_at: optional_timestamp(column(row, 3)?)?,
        status: column(row, 4)?,
        summary: json(column(row, 5)?)?,
    })
}

// ---- opening ------------------------------------------------------------------------

/// Symlinks followed by hand before giving up (the kernel's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Checks that `path` can name a database file, creates its directory if missing, and
/// returns the file's resolved path ([`resolve_file`]). Creates nothing else, so the run
/// lock can be taken with it before the database is created or migrated.
pub(crate) async fn prepare_file(path: &Path) -> Result<PathBuf, StoreError> {
    let refuse = |reason: String| StoreError::Open {
        location: path.display().to_string(),
        reason,
    };
    if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
        return Err(refuse(format!(
            "it is a directory, not a file (try {})",
            path.join("ferry.db").display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(err) = tokio::fs::create_dir_all(parent).await {
            let is_file = tokio::fs::metadata(parent).await.is_ok_and(|m| !m.is_dir());
            return Err(refuse(if is_file {
                format!("{} is a file, not a directory", parent.display())
            } else {
                format!("cannot create its directory {}: {err}", parent.display())
            }));
        }
    }
    resolve_file(path)
        .await
        .map_err(|err| refuse(format!("cannot resolve its path: {err}")))
}

/// The absolute path of the file `path` names, with every symlink, `.` and `..` resolved.
/// A file that does not exist yet resolves through its directory; a dangling symlink
/// resolves to the file it points at, which is where SQLite creates the database.
pub(crate) async fn resolve_file(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = std::path::absolute(path)?;
    for _ in 0..MAX_SYMLINKS {
        match tokio::fs::canonicalize(&path).await {
            Ok(resolved) => return Ok(resolved),
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            Err(_) => {}
        }
        match tokio::fs::read_link(&path).await {
            // Relative link targets start from the link's directory.
            Ok(target) => path = path.parent().map_or_else(|| target.clone(), |dir| dir.join(&target)),
            Err(_) => break,
        }
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok(tokio::fs::canonicalize(dir).await?.join(name)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )),
    }
}

/// The pool of the one writing connection, on a store brought up to date.
async fn open_writer(options: &SqliteConnectOptions, location: &str) -> Result<SqlitePool, StoreError> {
    // No ping before each use: the file is local, and each ping was one more round trip
    // to SQLite's thread.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .map_err(|err| open_error(location, err))?;
    migrate(&writer, location).await?;
    Ok(writer)
}

/// Brings the schema up to date. Several processes may open a new store at the same
/// moment (two timers firing together, a run and `ferry mappings`), and sqlx takes no lock
/// for SQLite, so a store that needs migrating is migrated inside one `BEGIN IMMEDIATE`
/// transaction: the first process to take SQLite's write lock migrates, the others wait
/// for it (`busy_timeout`) and then find nothing left to do. A current store only has its
/// recorded migrations checked, which writes nothing.
async fn migrate(writer: &SqlitePool, location: &str) -> Result<(), StoreError> {
    let failed = |err: sqlx::Error| {
        let (busy, reason) = describe_sqlx(&err);
        StoreError::statement(location.to_owned(), "migrating", busy, reason)
    };
    let mut conn = writer.acquire().await.map_err(|err| open_error(location, err))?;
    if is_current(&mut conn).await {
        return MIGRATOR
            .run_direct(&mut *conn)
            .await
            .map_err(|err| migrate_error(location, err));
    }
    let mut transaction = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
    // Each migration runs in a savepoint of this transaction.
    MIGRATOR
        .run_direct(&mut *transaction)
        .await
        .map_err(|err| migrate_error(location, err))?;
    transaction.commit().await.map_err(failed)
}

/// True when every shipped migration is recorded as applied (false on a new file).
async fn is_current(conn: &mut SqliteConnection) -> bool {
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(applied) => applied,
        Err(_) => return false,
    };
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.contains(&m.version))
}

// ---- field mappings ------------------------------------------------------------------

const FIELD_MAPPING_COLUMNS: &str = "data_center, channel, data_type, crm_value, crm_name, erp_value, erp_name";
const FIELD_TABLE_IS: &str = "data_center = ? AND channel = ? AND data_type = ?";

fn decode_field_mapping(row: &SqliteRow) -> Result<FieldMapping, String> {
    Ok(FieldMapping {
        data_center: column(row, 0)?,
        channel: column(row, 1)?,
        data_type: column(row, 2)?,
        crm_value: column(row, 3)?,
        crm_name: column(row, 4)?,
        erp_value: column(row, 5)?,
        erp_name: column(row, 6)?,
    })
}

fn bind_table<'q>(query: Query<'q>, table: &'q FieldTable) -> Query<'q> {
    query
        .bind(table.data_center.as_str())
        .bind(table.channel.as_str())
        .bind(table.data_type.as_str())
}

impl FieldMappingStore for SqliteStore {
    async fn put_field_mappings(&self, rows: &[FieldMapping]) -> Result<FieldMappingChanges, StoreError> {
        const ACTION: &str = "saving field mappings";
        let by_crm =
            format!("SELECT {FIELD_MAPPING_COLUMNS} FROM field_mappings WHERE {FIELD_TABLE_IS} AND crm_value = ?");
        let erp_owner = format!("SELECT crm_value FROM field_mappings WHERE {FIELD_TABLE_IS} AND erp_value = ?");
        let upsert = format!(
            "INSERT INTO field_mappings ({FIELD_MAPPING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (data_center, channel, data_type, crm_value) DO UPDATE SET \
             crm_name = excluded.crm_name, erp_value = excluded.erp_value, erp_name = excluded.erp_name"
        );
        let mut tx = self
            .inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed(ACTION))?;
        let mut changes = FieldMappingChanges::default();
        for row in rows {
            let table = row.table();
            let stored = bind_table(sqlx::query(&by_crm), &table)
                .bind(row.crm_value.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?
                .map(|found| decode_field_mapping(&found))
                .transpose()
                .map_err(self.corrupt(ACTION))?;
            let owner: Option<String> = bind_table(sqlx::query(&erp_owner), &table)
                .bind(row.erp_value.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?
                .map(|found| column(&found, 0))
                .transpose()
                .map_err(self.corrupt(ACTION))?;
            // Returning the error drops `tx`, which rolls the transaction back.
            let step = put_step(row, stored.as_ref(), owner.as_deref())?;
            changes.count(&step);
            if !matches!(step, PutStep::Keep) {
                sqlx::query(&upsert)
                    .bind(row.data_center.as_str())
                    .bind(row.channel.as_str())
                    .bind(row.data_type.as_str())
                    .bind(row.crm_value.as_str())
                    .bind(row.crm_name.as_deref())
                    .bind(row.erp_value.as_str())
                    .bind(row.erp_name.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(ACTION))?;
            }
        }
        tx.commit().await.map_err(self.failed(ACTION))?;
        Ok(changes)
    }

    async fn list_field_mappings(&self, filter: &FieldMappingFilter) -> Result<Vec<FieldMapping>, StoreError> {
        const ACTION: &str = "listing field mappings";
        let mut sql = format!("SELECT {FIELD_MAPPING_COLUMNS} FROM field_mappings WHERE 1 = 1");
        for (name, value) in [
            ("data_center", &filter.data_center),
            ("channel", &filter.channel),
            ("data_type", &filter.data_type),
        ] {
            if value.is_some() {
                sql.push_str(&format!(" AND {name} = ?"));
            }
        }
        sql.push_str(
            " ORDER BY data_center, channel, data_type, rtrim(crm_value, '0123456789'), length(crm_value), crm_value",
        );
        let mut query = sqlx::query(&sql);
        for value in [&filter.data_center, &filter.channel, &filter.data_type]
            .into_iter()
            .flatten()
        {
            query = query.bind(value.as_str());
        }
        let rows = query
            .fetch_all(&self.inner.readers)
            .await
            .map_err(self.failed(ACTION))?;
        rows.iter()
            .map(|row| decode_field_mapping(row).map_err(self.corrupt(ACTION)))
            .collect()
    }

    async fn delete_field_mapping(&self, table: &FieldTable, crm_value: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM field_mappings WHERE {FIELD_TABLE_IS} AND crm_value = ?");
        let done = bind_table(sqlx::query(&sql), table)
            .bind(crm_value)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("deleting a field mapping"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_field_mapping(
        &self,
        table: &FieldTable,
        side: FieldSide,
        value: &str,
    ) -> Result<Option<FieldMapping>, StoreError> {
        const ACTION: &str = "looking up a field mapping";
        let by = match side {
            FieldSide::Crm => "crm_value",
            FieldSide::Erp => "erp_value",
        };
        let sql = format!("SELECT {FIELD_MAPPING_COLUMNS} FROM field_mappings WHERE {FIELD_TABLE_IS} AND {by} = ?");
        let found = bind_table(sqlx::query(&sql), table)
            .bind(value)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(self.failed(ACTION))?;
        found
            .map(|row| decode_field_mapping(&row))
            .transpose()
            .map_err(self.corrupt(ACTION))
    }
}

// ---- errors ------------------------------------------------------------------------

/// Whether the error means "busy or locked", and a description that quotes no data.
pub(super) fn describe_sqlx(err: &sqlx::Error) -> (bool, String) {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or_default();
            let primary = code & 0xff;
            let hint = match primary {
                8 => " — the file or its directory is read-only; make it writable or pass another --store",
                10 => " — a disk I/O error; check the disk and its free space",
                11 | 26 => " — the file is damaged or not a ferry store; pass another --store",
                13 => " — the disk is full; free some space and run again",
                14 => " — check that the directory exists and is writable",
                _ => "",
            };
            (primary == 5 || primary == 6, format!("{}{hint}", db.message()))
        }
        sqlx::Error::PoolTimedOut => (true, "timed out waiting for a connection".to_owned()),
        sqlx::Error::PoolClosed => (
            false,
            "the store was closed — this is a bug in ferry, please report it".to_owned(),
        ),
        other => (false, other.to_string()),
    }
}

fn open_error(location: &str, err: sqlx::Error) -> StoreError {
    let (busy, reason) = match &err {
        // The hint of the Open message already says what to do.
        sqlx::Error::Database(db) => {
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            let reason = if primary == Some(26) {
                "the file exists but is not a database (not a ferry store)".to_owned()
            } else {
                db.message().to_owned()
            };
            (matches!(primary, Some(5 | 6)), reason)
        }
        _ => describe_sqlx(&err),
    };
    if busy {
        StoreError::Busy {
            location: location.to_owned(),
            action: "opening",
            reason,
        }
    } else {
        StoreError::Open {
            location: location.to_owned(),
            reason,
        }
    }
}

fn migrate_error(location: &str, err: MigrateError) -> StoreError {
    let hint = match &err {
        MigrateError::VersionMissing(_) | MigrateError::VersionTooNew(..) => {
            "the store was written by a newer ferry; upgrade ferry or pass another --store"
        }
        MigrateError::VersionMismatch(_) => {
            "a shipped migration was edited; restore it (migrations are append-only) or pass another --store"
        }
        MigrateError::Dirty(_) => "an earlier upgrade stopped half-way; restore a backup or pass another --store",
        _ => "check that the file is a ferry store and writable, or pass another --store",
    };
    let (busy, reason) = match &err {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => describe_sqlx(inner),
        other => (false, other.to_string()),
    };
    if busy {
        StoreError::Busy {
            location: location.to_owned(),
            action: "migrating",
            reason,
        }
    } else {
        StoreError::Migrate {
            location: location.to_owned(),
            reason,
            hint,
        }
    }
}
