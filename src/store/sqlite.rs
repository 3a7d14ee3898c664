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
//!   parameter count, and it took 40% of a batch commit. Statements the two SQL
//!   backends share live in `super::sql`, written with `?` (the Postgres backend
//!   numbers them); this file keeps what only SQLite does: chunked `IN (…)` lists,
//!   multi-row `VALUES`, the group writer, `LIMIT -1`, `BEGIN IMMEDIATE`, the
//!   schema file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::sql::{
    self, bind_args, json, open_failure, optional_timestamp, to_json_text, Arg, MigrateHints, On, SqlStore,
    MAPPING_COLUMNS,
};
use super::{
    event_ids_by_scheme, now, BatchCommit, BatchWriter, FailureStatus, IntentBatch, Mapping, MappingQuery,
    MappingStatus, NewFailure, RecordEvent, StoreError,
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

const MAPPING_COLUMN_COUNT: usize = 14;
const MAPPING_UPSERT_TAIL: &str = sql::mapping_on_conflict!();

/// Bound per inserted failure: scheme, source_id, stage, error_class, message, first_seen, last_seen, payload.
const FAILURE_BINDS_PER_ROW: usize = 8;
const FAILURE_UPSERT_TAIL: &str = " ON CONFLICT (scheme, source_id, stage) WHERE status = 'open' \
     DO UPDATE SET error_class = excluded.error_class, message = excluded.message, \
     payload = excluded.payload, attempts = failures.attempts + 1, last_seen = excluded.last_seen";

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
        sql::debug_store(f, "SqliteStore", &self.inner.location)
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
    #[cfg(test)]
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

    /// The one-connection write pool (for the inbox, `super::inbox`).
    pub(super) fn writer(&self) -> &SqlitePool {
        &self.inner.writer
    }
    /// Where the inbox appender takes pushes (see `super::inbox::appender`).
    pub(super) fn appends(&self) -> &mpsc::UnboundedSender<super::inbox::AppendJob> {
        &self.inner.appends
    }

    pub(super) fn pool_for(&self, on: On) -> &SqlitePool {
        match on {
            On::Read => &self.inner.readers,
            On::Write => &self.inner.writer,
        }
    }
}

impl SqlStore for SqliteStore {
    type Row = SqliteRow;
    type Tx = sqlx::Transaction<'static, Sqlite>;

    const JSON_AS_TEXT: &'static str = "";
    const TEXT_AS_JSON: &'static str = "";
    const LATEST_RUNS: &'static str = "id IN (SELECT MAX(id) FROM runs \
         WHERE (?1 IS NULL OR scheme = ?1) AND (?2 IS NULL OR status = ?2) GROUP BY scheme) ORDER BY scheme";
    const TARGET_ID_FOR: &'static str = "SELECT target_id FROM mappings \
         WHERE source_id = ?1 AND (target_object = ?2 OR scheme = ?2) \
           AND status IN ('created', 'updated') AND target_id IS NOT NULL \
         ORDER BY scheme = ?2 DESC, last_synced_at DESC, scheme, source_object \
         LIMIT 1";
    const TAKE_TOKEN: &'static str = "INSERT INTO rate_budgets (name, tokens, updated_at) VALUES (?1, ?2 - 1.0, ?4) \
         ON CONFLICT (name) DO UPDATE SET \
           tokens = min(?2, tokens + max(0, ?4 - updated_at) * ?3 / 1000.0) - 1.0, \
           updated_at = max(updated_at, ?4) \
         RETURNING tokens";

    fn location(&self) -> &str {
        &self.inner.location
    }

    fn describe(err: &sqlx::Error) -> (bool, String) {
        describe_sqlx(err)
    }

    sql::sql_runners!(SqliteRow, sql::as_written);

    async fn begin_write(&self) -> Result<Self::Tx, sqlx::Error> {
        self.inner.writer.begin_with("BEGIN IMMEDIATE").await
    }

    async fn lookup_mappings(
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

    async fn select_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        let mut sql = format!("SELECT {MAPPING_COLUMNS} FROM mappings WHERE 1 = 1");
        let mut args: Vec<Arg<'_>> = Vec::new();
        if let Some(scheme) = &q.scheme {
            sql.push_str(" AND scheme = ?");
            args.push(scheme.as_str().into());
        }
        for (column, ids) in [("source_id", &q.source_ids), ("target_id", &q.target_ids)] {
            if !ids.is_empty() {
                sql.push_str(&format!(" AND {column} IN ("));
                push_params(&mut sql, ids.len());
                sql.push(')');
                args.extend(ids.iter().map(|id| Arg::from(id.as_str())));
            }
        }
        if let Some(status) = q.status {
            sql.push_str(" AND status = ?");
            args.push(status.as_str().into());
        }
        sql.push_str(" ORDER BY scheme, source_object, rtrim(source_id, '0123456789'), length(source_id), source_id LIMIT ? OFFSET ?");
        // SQLite reads a negative LIMIT as "no limit".
        args.push(q.limit.unwrap_or(-1).into());
        args.push(q.offset.into());
        self.fetch_decoded(&sql, &args, "listing mappings", sql::decode_mapping)
            .await
    }

    async fn save_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        let sql = mapping_upsert_sql(1);
        bind_mapping(sqlx::query(&sql), m)
            .execute(&self.inner.writer)
            .await
            .map_err(self.failed("saving a mapping"))?;
        Ok(())
    }

    async fn close_failures_at_once(&self, _ids: &[i64], _status: FailureStatus) -> Option<Result<u64, StoreError>> {
        None
    }

    async fn save_intents(&self, batches: Vec<IntentBatch<'_>>) -> Result<(), StoreError> {
        let batches = batches
            .into_iter()
            .map(|b| OwnedIntentBatch {
                scheme: b.scheme.to_owned(),
                batch_id: b.batch_id.to_owned(),
                created_at: b.created_at,
                json: b.json,
            })
            .collect();
        self.submit(GroupOp::Intents { batches }, "saving write intents").await
    }

    async fn save_events(&self, events: Vec<RecordEvent>, details: Vec<String>, keep: i64) -> Result<(), StoreError> {
        self.submit(GroupOp::Events { events, details, keep }, "saving record events")
            .await
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
    Ok(Mapping {
        scheme: scheme.to_owned(),
        source_object: source_object.to_owned(),
        source_id: packed.0,
        source_name: packed.1,
        target_object: packed.2,
        target_id: packed.3,
        target_name: packed.4,
        status: packed.5,
        payload_hash: packed.6,
        attempts: packed.7,
        last_error: packed.8,
        first_synced_at: optional_timestamp(packed.9)?,
        last_synced_at: optional_timestamp(packed.10)?,
        detail_ids: json(packed.11)?,
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
    open_failure(location, busy, reason)
}

/// What to do when migrating the file fails.
const MIGRATE_HINTS: MigrateHints = MigrateHints {
    newer: "the store was written by a newer ferry; upgrade ferry or pass another --store",
    edited: "a shipped migration was edited; restore it (migrations are append-only) or pass another --store",
    dirty: "an earlier upgrade stopped half-way; restore a backup or pass another --store",
    other: "check that the file is a ferry store and writable, or pass another --store",
};

fn migrate_error(location: &str, err: MigrateError) -> StoreError {
    sql::migrate_error(location, err, &MIGRATE_HINTS, describe_sqlx, |reason| reason)
}
