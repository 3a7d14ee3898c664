//! The PostgreSQL store: the same tables and promises as the SQLite store, on a
//! shared server, migrated on open.
//!
//! - **Where the tables live.** [`PostgresStore::open`] uses the URL as given, so
//!   the tables are created in the first schema of the connection's `search_path`
//!   (normally `public`). To give ferry a schema of its own, create it and name it
//!   in the URL: `postgres://ferry@db/erp?options=-csearch_path%3Dferry` (or
//!   `?options[search_path]=ferry`). The tests run each case in a fresh schema,
//!   `ferry_test_<random>`, set with `SET search_path` on every new connection,
//!   and drop it afterwards.
//! - **Same values as SQLite.** Timestamps are `BIGINT` milliseconds, JSON is
//!   stored as `JSON` (kept as written, like SQLite's text) and key columns use
//!   `COLLATE "C"`, so listings come out in byte order. One difference remains:
//!   PostgreSQL text cannot hold NUL characters, so an id containing `\0` is
//!   rejected with a [`StoreError::Query`]; SQLite and memory accept it.
//! - **Opening.** One connection is made first, without retries, to migrate (under
//!   sqlx's advisory lock, so ferry processes starting together take turns) and to
//!   fail fast with a plain reason: refused, wrong password, no such database.
//!   The pool connects lazily afterwards. Rejected: letting the pool connect,
//!   which retries a refused connection for the whole acquire timeout.
//! - **Speed.** Every statement has a fixed text (or one per combination of
//!   optional filters), so each is prepared once per connection; the statements
//!   shared with SQLite (`super::sql`) are written with `?` and numbered here. Rows
//!   travel as arrays: look-ups and resolutions `UNNEST`
//!   their ids, upserts are `INSERT … SELECT FROM UNNEST(…)`. So a look-up is one
//!   statement and a batch of any size at most three plus `BEGIN`/`COMMIT`.
//! - **Statistics.** A first import fills the tables faster than autovacuum
//!   analyses them (it looks once a minute), and without statistics the planner
//!   guesses one row everywhere: `source_id = ANY($3)` became a scan of the whole
//!   (scheme, source_object) range (9 ms instead of 0.07 ms per look-up at 30 000
//!   rows, and growing), and resolving failures a nested loop over every open one.
//!   So look-ups probe the primary key once per id (a `LATERAL` sub-query, which
//!   is fast with or without statistics), and the store runs `ANALYZE` itself after
//!   this process has written 1k, 2k, 4k, … up to 512k rows; past that autovacuum
//!   keeps up. Rejected: planner hints per statement, which PostgreSQL lacks, and
//!   rewriting every statement around the planner.
//! - **Batches.** PostgreSQL refuses to upsert one row twice in a statement, so
//!   [`BatchWriter::commit_batch`] first folds repeated keys exactly as applying
//!   them one by one would (a later mapping wins but keeps an earlier target id
//!   and first sync time; a repeated failure counts every occurrence). Mappings
//!   are written in key order, so concurrent batches lock rows in the same order.
//! - **Errors** never show the password: URLs in messages are redacted and open
//!   errors are scrubbed of it. Serialization failures, deadlocks, lock timeouts,
//!   too many connections and unique-key races (two writers reopening the same
//!   failure) are [`StoreError::Busy`], i.e. retryable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres};

use super::sql::{
    self, bind_args, decode_mapping, numbered, open_failure, to_json_text, Arg, MigrateHints, On, SqlStore,
    MAPPING_COLUMNS,
};
use super::{
    event_ids_by_scheme, now, BatchCommit, BatchWriter, FailureStage, FailureStatus, IntentBatch, Mapping,
    MappingQuery, NewFailure, RecordEvent, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const MAX_CONNECTIONS: u32 = 8;
/// Rows this process writes before its first `ANALYZE`; the next comes after
/// twice as many, and so on up to [`LAST_ANALYZE_AFTER`].
const FIRST_ANALYZE_AFTER: u64 = 1_000;
/// Past this many rows autovacuum's own `ANALYZE` (every 10% of growth) keeps up.
const LAST_ANALYZE_AFTER: u64 = 512_000;
/// How long a call waits for a free (or re-established) connection before it is
/// reported as busy.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upserts one row per array element; the arrays are bound in `MAPPING_COLUMNS` order.
const MAPPING_UPSERT: &str = concat!(
    "INSERT INTO mappings (scheme, source_object, source_id, source_name, \
     target_object, target_id, target_name, status, payload_hash, attempts, last_error, first_synced_at, \
     last_synced_at, detail_ids) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
       $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[], $12::int8[], $13::int8[], $14::text[])",
    sql::mapping_on_conflict!()
);

/// Opens failures, or counts them again; `$7` is the time, `$8` how often each occurred.
const FAILURE_UPSERT: &str = "INSERT INTO failures (scheme, source_id, stage, error_class, message, \
     payload, attempts, first_seen, last_seen, status) \
     SELECT f.scheme, f.source_id, f.stage, f.error_class, f.message, f.payload::json, f.attempts, \
       $7::int8, $7::int8, 'open' \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::int8[]) \
       WITH ORDINALITY AS f(scheme, source_id, stage, error_class, message, payload, attempts, position) \
     ORDER BY f.position \
     ON CONFLICT (scheme, source_id, stage) WHERE status = 'open' DO UPDATE SET \
     error_class = excluded.error_class, message = excluded.message, payload = excluded.payload, \
     attempts = failures.attempts + excluded.attempts, last_seen = excluded.last_seen";

/// Resolves the open failures of the `(scheme, source_id)` pairs in `$1`/`$2`.
const RESOLVE_FAILURES: &str = "UPDATE failures SET status = 'resolved' \
     WHERE status = 'open' AND (scheme, source_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))";

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A store in a PostgreSQL database. Clones share the connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL with its password masked; safe for messages and logs.
    location: String,
    pool: PgPool,
    /// Mapping and failure rows committed through this store (all clones).
    rows_written: AtomicU64,
    /// `rows_written` at which the next `ANALYZE` runs; past `LAST_ANALYZE_AFTER`, never.
    next_analyze_at: AtomicU64,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        sql::debug_store(f, "PostgresStore", &self.inner.location)
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://` or `postgresql://`) and
    /// migrate it to the current schema version. See the module doc for where the
    /// tables go.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(url, None).await
    }

    /// [`PostgresStore::open`] a database that already holds a Ferry store: one without
    /// Ferry's tables is refused instead of migrated (read-only commands create nothing).
    pub async fn open_existing(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, None, false).await
    }

    /// Open the store in `schema`, creating the schema if needed; every pooled
    /// connection runs `SET search_path` to it first.
    async fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, schema, true).await
    }

    /// [`PostgresStore::connect`]; without `create`, a database without Ferry's tables is
    /// refused rather than migrated.
    async fn connect_with(url: &str, schema: Option<&str>, create: bool) -> Result<PostgresStore, StoreError> {
        let location = redact_url(url);
        let secrets = url_secrets(url);
        let refuse = |reason: String| StoreError::Open {
            location: location.clone(),
            reason: scrub(&reason, &secrets),
        };
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|err| refuse(format!("this is not a valid PostgreSQL URL ({err})")))?;
        if !url.contains("application_name=") {
            options = options.application_name("ferry");
        }
        let set_search_path = schema.map(|s| format!("SET search_path TO {}", quote_identifier(s)));

        let mut first = PgConnection::connect_with(&options)
            .await
            .map_err(|err| open_error(&location, &secrets, &err))?;
        if let (Some(schema), Some(set)) = (schema, &set_search_path) {
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_identifier(schema));
            for statement in [create.as_str(), set.as_str()] {
                sqlx::raw_sql(statement)
                    .execute(&mut first)
                    .await
                    .map_err(|err| open_error(&location, &secrets, &err))?;
            }
        }
        if !create {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('runs') IS NOT NULL")
                .fetch_one(&mut first)
                .await
                .map_err(|err| open_error(&location, &secrets, &err))?;
            if !exists {
                return Err(StoreError::Missing {
                    location: location.clone(),
                    reason: "this database holds no Ferry tables yet (a `ferry run` with this --store creates them)"
                        .to_string(),
                });
            }
        }
        MIGRATOR
            .run(&mut first)
            .await
            .map_err(|err| migrate_error(&location, &secrets, err))?;
        // Closing politely only saves the server a log line; the migration is committed.
        let _ = first.close().await;

        let mut pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(set) = set_search_path {
            let set: Arc<str> = set.into();
            pool = pool.after_connect(move |conn, _meta| {
                let set = Arc::clone(&set);
                Box::pin(async move {
                    sqlx::Executor::execute(conn, &*set).await?;
                    Ok(())
                })
            });
        }
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                location,
                pool: pool.connect_lazy_with(options),
                rows_written: AtomicU64::new(0),
                next_analyze_at: AtomicU64::new(FIRST_ANALYZE_AFTER),
            }),
        })
    }

    /// The database URL with any password masked.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The connection pool (for session-scoped work such as advisory locks).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Reads and writes share one pool.
    fn pool_for(&self, _on: On) -> &PgPool {
        &self.inner.pool
    }

    /// Close every connection. Later calls fail.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Run `ANALYZE` when this process has written 1k, 2k, 4k, … rows (see the
    /// module doc); best effort, a failure only skips it.
    async fn analyze_while_young(&self, rows: usize) {
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        let written = self
            .inner
            .rows_written
            .fetch_add(rows, Ordering::Relaxed)
            .saturating_add(rows);
        let due = self.inner.next_analyze_at.load(Ordering::Relaxed);
        if written < due || due > LAST_ANALYZE_AFTER {
            return;
        }
        // Only the caller that moves the threshold runs ANALYZE.
        let next = written.saturating_mul(2);
        if self
            .inner
            .next_analyze_at
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if let Err(err) = sqlx::query("ANALYZE mappings, failures")
            .execute(&self.inner.pool)
            .await
        {
            tracing::debug!(location = %self.inner.location, error = %err, "ANALYZE of the store failed");
        }
    }
}

impl SqlStore for PostgresStore {
    type Row = PgRow;
    type Tx = sqlx::Transaction<'static, Postgres>;

    const JSON_AS_TEXT: &'static str = "::text";
    const TEXT_AS_JSON: &'static str = "::json";
    const LATEST_RUNS: &'static str = "id IN (SELECT MAX(id) FROM runs \
         WHERE ($1::text IS NULL OR scheme = $1) AND ($2::text IS NULL OR status = $2) GROUP BY scheme) \
         ORDER BY scheme COLLATE \"C\"";
    // NULLS LAST: SQLite sorts a missing sync time below any time, and so must we.
    const TARGET_ID_FOR: &'static str = "SELECT target_id FROM mappings \
         WHERE source_id = $1 AND (target_object = $2 OR scheme = $2) \
           AND status IN ('created', 'updated') AND target_id IS NOT NULL \
         ORDER BY scheme = $2 DESC, last_synced_at DESC NULLS LAST, scheme, source_object \
         LIMIT 1";
    const TAKE_TOKEN: &'static str = "INSERT INTO rate_budgets (name, tokens, updated_at) VALUES ($1, $2 - 1.0, $4) \
         ON CONFLICT (name) DO UPDATE SET \
           tokens = LEAST($2, rate_budgets.tokens \
                    + GREATEST(0, $4 - rate_budgets.updated_at) * $3 / 1000.0) - 1.0, \
           updated_at = GREATEST(rate_budgets.updated_at, $4) \
         RETURNING tokens";

    fn location(&self) -> &str {
        &self.inner.location
    }

    fn describe(err: &sqlx::Error) -> (bool, String) {
        describe_sqlx(err)
    }

    sql::sql_runners!(PgRow, numbered);

    async fn begin_write(&self) -> Result<Self::Tx, sqlx::Error> {
        self.inner.pool.begin().await
    }

    async fn lookup_mappings(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Mapping>, StoreError> {
        const ACTION: &str = "looking up mappings";
        if source_ids.is_empty() {
            return Ok(HashMap::new());
        }
        // One index probe per wanted id. With the plain `source_id = ANY($3)`, while
        // the table has no statistics yet (a first big import) the planner scans the
        // whole (scheme, source_object) range and filters it: 9 ms instead of 0.07 ms
        // at 30 000 rows, and growing. `OFFSET 0` keeps the lateral sub-query from
        // being flattened into a join the planner could reorder the same way.
        let sql = format!(
            "SELECT m.* FROM (SELECT DISTINCT UNNEST($3::text[]) AS id) AS wanted \
             CROSS JOIN LATERAL (SELECT {MAPPING_COLUMNS} FROM mappings \
               WHERE scheme = $1 AND source_object = $2 AND source_id = wanted.id OFFSET 0) AS m"
        );
        let rows = sqlx::query(&sql)
            .bind(scheme)
            .bind(source_object)
            .bind(source_ids)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(self.failed(ACTION))?;
        let found = self.decode_all(ACTION, &rows, decode_mapping)?;
        Ok(found.into_iter().map(|m| (m.source_id.clone(), m)).collect())
    }

    async fn select_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        const ACTION: &str = "listing mappings";
        let mut params = Params::default();
        let mut sql = format!("SELECT {MAPPING_COLUMNS} FROM mappings WHERE TRUE");
        if q.scheme.is_some() {
            sql.push_str(&format!(" AND scheme = {}", params.next()));
        }
        if !q.source_ids.is_empty() {
            sql.push_str(&format!(" AND source_id = ANY({})", params.next()));
        }
        if !q.target_ids.is_empty() {
            sql.push_str(&format!(" AND target_id = ANY({})", params.next()));
        }
        if q.status.is_some() {
            sql.push_str(&format!(" AND status = {}", params.next()));
        }
        // A NULL limit means "no limit" in PostgreSQL.
        sql.push_str(&format!(
            " ORDER BY scheme, source_object, rtrim(source_id, '0123456789'), length(source_id), source_id LIMIT {} OFFSET {}",
            params.next(),
            params.next()
        ));
        let mut query = sqlx::query(&sql);
        if let Some(scheme) = &q.scheme {
            query = query.bind(scheme.as_str());
        }
        if !q.source_ids.is_empty() {
            query = query.bind(q.source_ids.as_slice());
        }
        if !q.target_ids.is_empty() {
            query = query.bind(q.target_ids.as_slice());
        }
        if let Some(status) = q.status {
            query = query.bind(status.as_str());
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(self.failed(ACTION))?;
        self.decode_all(ACTION, &rows, decode_mapping)
    }

    async fn save_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        MappingColumns::from_rows(std::slice::from_ref(&MappingRow::new(m)))
            .bind(sqlx::query(MAPPING_UPSERT))
            .execute(&self.inner.pool)
            .await
            .map_err(self.failed("saving a mapping"))?;
        Ok(())
    }

    async fn close_failures_at_once(&self, ids: &[i64], status: FailureStatus) -> Option<Result<u64, StoreError>> {
        let done = sqlx::query("UPDATE failures SET status = $1 WHERE id = ANY($2) AND status <> $1")
            .bind(status.as_str())
            .bind(ids)
            .execute(&self.inner.pool)
            .await
            .map_err(self.failed("changing failure status"));
        Some(done.map(|done| done.rows_affected()))
    }

    async fn save_intents(&self, batches: Vec<IntentBatch<'_>>) -> Result<(), StoreError> {
        const ACTION: &str = "saving write intents";
        let mut tx = self.inner.pool.begin().await.map_err(self.failed(ACTION))?;
        for batch in &batches {
            sqlx::query(
                "INSERT INTO write_intents (scheme, batch_id, created_at, intents) VALUES ($1, $2, $3, $4::json)",
            )
            .bind(batch.scheme)
            .bind(batch.batch_id)
            .bind(batch.created_at)
            .bind(batch.json.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.failed(ACTION))?;
        }
        tx.commit().await.map_err(self.failed(ACTION))
    }

    async fn save_events(&self, events: Vec<RecordEvent>, details: Vec<String>, keep: i64) -> Result<(), StoreError> {
        const ACTION: &str = "saving record events";
        let column = |f: fn(&RecordEvent) -> String| events.iter().map(f).collect::<Vec<String>>();
        let events = &events[..];
        let mut tx = self.inner.pool.begin().await.map_err(self.failed(ACTION))?;
        sqlx::query(
            "INSERT INTO record_events (scheme, source_id, run_id, at, outcome, payload_hash, detail) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[])",
        )
        .bind(column(|e| e.scheme.clone()))
        .bind(column(|e| e.source_id.clone()))
        .bind(events.iter().map(|e| e.run_id).collect::<Vec<i64>>())
        .bind(events.iter().map(|e| e.at.timestamp_millis()).collect::<Vec<i64>>())
        .bind(column(|e| e.outcome.as_str().to_owned()))
        .bind(events.iter().map(|e| e.payload_hash.clone()).collect::<Vec<Option<String>>>())
        .bind(details)
        .execute(&mut *tx)
        .await
        .map_err(self.failed(ACTION))?;
        for (scheme, source_ids) in event_ids_by_scheme(events) {
            sqlx::query(
                "DELETE FROM record_events WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER \
                 (PARTITION BY source_id ORDER BY id DESC) AS n FROM record_events \
                 WHERE scheme = $1 AND source_id = ANY($2)) ranked WHERE n > $3)",
            )
            .bind(scheme)
            .bind(source_ids)
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(self.failed(ACTION))?;
        }
        tx.commit().await.map_err(self.failed(ACTION))
    }
}

impl BatchWriter for PostgresStore {
    async fn commit_batch(&self, batch: BatchCommit) -> Result<(), StoreError> {
        const ACTION: &str = "saving a batch";
        if batch.is_empty() {
            return Ok(());
        }
        let at = now().timestamp_millis();
        let mappings = fold_mappings(&batch.mappings);
        let failures = FailureColumns::fold(&batch.failures)?;
        let (resolved_schemes, resolved_ids): (Vec<&str>, Vec<&str>) = batch
            .resolved
            .iter()
            .map(|(scheme, source_id)| (scheme.as_str(), source_id.as_str()))
            .unzip();

        let mut tx = self.inner.pool.begin().await.map_err(self.failed(ACTION))?;
        if !mappings.is_empty() {
            MappingColumns::from_rows(&mappings)
                .bind(sqlx::query(MAPPING_UPSERT))
                .execute(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?;
        }
        if !resolved_ids.is_empty() {
            sqlx::query(RESOLVE_FAILURES)
                .bind(&resolved_schemes)
                .bind(&resolved_ids)
                .execute(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?;
        }
        if !failures.scheme.is_empty() {
            failures
                .bind(sqlx::query(FAILURE_UPSERT), at)
                .execute(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?;
        }
        for (scheme, batch_id) in &batch.settled {
            sqlx::query("DELETE FROM write_intents WHERE scheme = $1 AND batch_id = $2")
                .bind(scheme.as_str())
                .bind(batch_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(self.failed(ACTION))?;
        }
        tx.commit().await.map_err(self.failed(ACTION))?;
        self.analyze_while_young(batch.mappings.len() + batch.failures.len())
            .await;
        Ok(())
    }
}

// ---- batch rows --------------------------------------------------------------------

/// Numbers the parameters of a statement built piece by piece: `$1`, `$2`, …
#[derive(Default)]
struct Params(usize);

impl Params {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

/// A mapping to upsert, after folding earlier entries for the same key into it.
struct MappingRow<'a> {
    mapping: &'a Mapping,
    target_id: Option<&'a str>,
    target_name: Option<&'a str>,
    first_synced_at: Option<i64>,
    detail_ids: Option<&'a serde_json::Value>,
}

impl<'a> MappingRow<'a> {
    fn new(mapping: &'a Mapping) -> MappingRow<'a> {
        MappingRow {
            mapping,
            target_id: mapping.target_id.as_deref(),
            target_name: mapping.target_name.as_deref(),
            first_synced_at: mapping.first_synced_at.map(|t| t.timestamp_millis()),
            detail_ids: mapping.detail_ids.as_ref(),
        }
    }

    /// What upserting `self` and then `later` leaves, as the SQL upsert would.
    fn then(self, later: &'a Mapping) -> MappingRow<'a> {
        let later_row = MappingRow::new(later);
        MappingRow {
            mapping: later,
            target_id: later_row.target_id.or(self.target_id),
            target_name: later_row.target_name.or(self.target_name),
            first_synced_at: self.first_synced_at.or(later_row.first_synced_at),
            detail_ids: later_row.detail_ids.or(self.detail_ids),
        }
    }
}

/// One row per key, in key order (so concurrent batches lock rows in the same order).
fn fold_mappings(mappings: &[Mapping]) -> Vec<MappingRow<'_>> {
    let mut by_key: BTreeMap<(&str, &str, &str), MappingRow<'_>> = BTreeMap::new();
    for m in mappings {
        let key = (m.scheme.as_str(), m.source_object.as_str(), m.source_id.as_str());
        let row = match by_key.remove(&key) {
            Some(earlier) => earlier.then(m),
            None => MappingRow::new(m),
        };
        by_key.insert(key, row);
    }
    by_key.into_values().collect()
}

/// Mapping rows turned into one array per column, for `MAPPING_UPSERT`.
struct MappingColumns<'a> {
    scheme: Vec<&'a str>,
    source_object: Vec<&'a str>,
    source_id: Vec<&'a str>,
    source_name: Vec<Option<&'a str>>,
    target_object: Vec<&'a str>,
    target_id: Vec<Option<&'a str>>,
    target_name: Vec<Option<&'a str>>,
    status: Vec<&'static str>,
    payload_hash: Vec<Option<&'a str>>,
    attempts: Vec<i64>,
    last_error: Vec<Option<&'a str>>,
    first_synced_at: Vec<Option<i64>>,
    last_synced_at: Vec<Option<i64>>,
    detail_ids: Vec<Option<String>>,
}

impl<'a> MappingColumns<'a> {
    fn from_rows(rows: &[MappingRow<'a>]) -> MappingColumns<'a> {
        let n = rows.len();
        let mut columns = MappingColumns {
            scheme: Vec::with_capacity(n),
            source_object: Vec::with_capacity(n),
            source_id: Vec::with_capacity(n),
            source_name: Vec::with_capacity(n),
            target_object: Vec::with_capacity(n),
            target_id: Vec::with_capacity(n),
            target_name: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            payload_hash: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
            last_error: Vec::with_capacity(n),
            first_synced_at: Vec::with_capacity(n),
            last_synced_at: Vec::with_capacity(n),
            detail_ids: Vec::with_capacity(n),
        };
        for row in rows {
            let m = row.mapping;
            columns.scheme.push(&m.scheme);
            columns.source_object.push(&m.source_object);
            columns.source_id.push(&m.source_id);
            columns.source_name.push(m.source_name.as_deref());
            columns.target_object.push(&m.target_object);
            columns.target_id.push(row.target_id);
            columns.target_name.push(row.target_name);
            columns.status.push(m.status.as_str());
            columns.payload_hash.push(m.payload_hash.as_deref());
            columns.attempts.push(m.attempts);
            columns.last_error.push(m.last_error.as_deref());
            columns.first_synced_at.push(row.first_synced_at);
            columns
                .last_synced_at
                .push(m.last_synced_at.map(|t| t.timestamp_millis()));
            columns
                .detail_ids
                .push(row.detail_ids.map(serde_json::Value::to_string));
        }
        columns
    }

    fn bind<'q>(self, query: Query<'q>) -> Query<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.scheme)
            .bind(self.source_object)
            .bind(self.source_id)
            .bind(self.source_name)
            .bind(self.target_object)
            .bind(self.target_id)
            .bind(self.target_name)
            .bind(self.status)
            .bind(self.payload_hash)
            .bind(self.attempts)
            .bind(self.last_error)
            .bind(self.first_synced_at)
            .bind(self.last_synced_at)
            .bind(self.detail_ids)
    }
}

/// New failures, one entry per `(scheme, source_id, stage)` in order of first
/// appearance (which keeps ids in batch order), each with how often it occurred
/// and the details of its last occurrence.
struct FailureColumns<'a> {
    scheme: Vec<&'a str>,
    source_id: Vec<&'a str>,
    stage: Vec<&'static str>,
    error_class: Vec<&'a str>,
    message: Vec<&'a str>,
    payload: Vec<Option<String>>,
    occurrences: Vec<i64>,
}

impl<'a> FailureColumns<'a> {
    fn fold(failures: &'a [NewFailure]) -> Result<FailureColumns<'a>, StoreError> {
        let mut position: HashMap<(&str, &str, FailureStage), usize> = HashMap::new();
        let mut columns = FailureColumns {
            scheme: Vec::new(),
            source_id: Vec::new(),
            stage: Vec::new(),
            error_class: Vec::new(),
            message: Vec::new(),
            payload: Vec::new(),
            occurrences: Vec::new(),
        };
        for f in failures {
            let payload = f.payload.as_ref().map(to_json_text).transpose()?;
            let key = (f.scheme.as_str(), f.source_id.as_str(), f.stage);
            if let Some(&i) = position.get(&key) {
                columns.error_class[i] = f.error_class.as_str();
                columns.message[i] = f.message.as_str();
                columns.payload[i] = payload;
                columns.occurrences[i] += 1;
                continue;
            }
            position.insert(key, columns.scheme.len());
            columns.scheme.push(&f.scheme);
            columns.source_id.push(&f.source_id);
            columns.stage.push(f.stage.as_str());
            columns.error_class.push(&f.error_class);
            columns.message.push(&f.message);
            columns.payload.push(payload);
            columns.occurrences.push(1);
        }
        Ok(columns)
    }

    fn bind<'q>(self, query: Query<'q>, at: i64) -> Query<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.scheme)
            .bind(self.source_id)
            .bind(self.stage)
            .bind(self.error_class)
            .bind(self.message)
            .bind(self.payload)
            .bind(at)
            .bind(self.occurrences)
    }
}

// ---- URLs and errors ---------------------------------------------------------------

/// `url` with the password of its user info and any `password=` query value
/// replaced by `***`. Works on malformed URLs too: everything between `://` and
/// the last `@` before the query counts as user info.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut redacted = format!("{scheme}://");
    match before_query.rsplit_once('@') {
        Some((user_info, host_and_path)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => redacted.push_str(&format!("{user}:***")),
                None => redacted.push_str(user_info),
            }
            redacted.push('@');
            redacted.push_str(host_and_path);
        }
        None => redacted.push_str(before_query),
    }
    if let Some(query) = query {
        redacted.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push_str(&pairs.join("&"));
    }
    redacted
}

fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

/// Every spelling of the secrets in `url` (as written and percent-decoded), for [`scrub`].
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let Some((_, rest)) = url.split_once("://") else {
        return secrets;
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some((user_info, _)) = before_query.rsplit_once('@') {
        if let Some((_, password)) = user_info.split_once(':') {
            secrets.push(password.to_owned());
        }
    }
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=') {
            if is_secret_key(key) {
                secrets.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
}

/// `name` as a double-quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLSTATEs after which the same call may succeed: serialization failure,
/// deadlock, lock timeout, unique-key race, too many connections, server starting.
const RETRYABLE_STATES: [&str; 6] = ["40001", "40P01", "55P03", "23505", "53300", "57P03"];

/// Whether the error is worth retrying, and a description that quotes no data
/// (PostgreSQL's primary message names constraints and types, never values).
fn describe_sqlx(err: &sqlx::Error) -> (bool, String) {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let hint = match code.as_ref() {
                "22021" | "22P05" => " — PostgreSQL text cannot hold NUL characters; remove them from ids and names",
                "42501" => " — the database user lacks a privilege; GRANT it, or use another user",
                "42P01" | "42703" => {
                    " — the store's tables are missing or from another application; check the search_path in the URL"
                }
                "25006" => " — the server is read-only (a standby?); point the URL at the primary",
                "53100" => " — the server's disk is full; free some space and run again",
                "57P01" | "57P02" => " — the server shut down; run again once it is back",
                _ => "",
            };
            let busy = RETRYABLE_STATES.contains(&code.as_ref());
            (busy, format!("{} (SQLSTATE {code}){hint}", db.message()))
        }
        sqlx::Error::PoolTimedOut => (
            true,
            format!(
                "no connection became free within {}s — the server is unreachable or overloaded",
                ACQUIRE_TIMEOUT.as_secs()
            ),
        ),
        sqlx::Error::PoolClosed => (
            false,
            "the store was closed — this is a bug in ferry, please report it".to_owned(),
        ),
        sqlx::Error::Io(io) => (
            false,
            format!("lost the connection to the server ({io}) — check that it is running, then run again"),
        ),
        other => (false, other.to_string()),
    }
}

fn open_error(location: &str, secrets: &[String], err: &sqlx::Error) -> StoreError {
    let (busy, reason) = match err {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            false,
            "connection refused — check that PostgreSQL is running and listening on that host and port".to_owned(),
        ),
        sqlx::Error::Io(io) => (
            false,
            format!("cannot reach the server ({io}) — check the host and port in the URL"),
        ),
        sqlx::Error::Tls(tls) => (
            false,
            format!("TLS failed ({tls}) — check sslmode and sslrootcert in the URL"),
        ),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let hint = match code.as_ref() {
                "28P01" | "28000" => " — check the user and password in the URL (or in ~/.pgpass)",
                "3D000" => " — create the database (createdb NAME) or fix its name in the URL",
                "3F000" => " — create the schema named by search_path, or fix the options in the URL",
                "42501" => " — the user may not create the schema; GRANT CREATE ON DATABASE, or use another user",
                _ => "",
            };
            let busy = RETRYABLE_STATES.contains(&code.as_ref());
            (busy, format!("{} (SQLSTATE {code}){hint}", db.message()))
        }
        other => describe_sqlx(other),
    };
    open_failure(location, busy, scrub(&reason, secrets))
}

/// What to do when migrating the database fails.
const MIGRATE_HINTS: MigrateHints = MigrateHints {
    newer: "the store was written by a newer ferry; upgrade ferry or point --store at another database or schema",
    edited: "a shipped migration was edited; restore it (migrations are append-only) or use another database or schema",
    dirty: "an earlier upgrade stopped half-way; restore a backup or use another database or schema",
    other: "check that the user may create tables in the first schema of its search_path, and that no other \
            application's tables are there (give ferry its own schema with ?options=-csearch_path%3Dferry)",
};

fn migrate_error(location: &str, secrets: &[String], err: MigrateError) -> StoreError {
    sql::migrate_error(location, err, &MIGRATE_HINTS, describe_sqlx, |reason| {
        scrub(&reason, secrets)
    })
}

// ---- test support ------------------------------------------------------------------

/// A store in a schema of its own on the test server, for the shared suite and
/// the tests below.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use sqlx::Connection as _;
    use tokio::sync::OnceCell;

    use super::{redact_url, PostgresStore};
    use crate::store::Store;

    pub(crate) const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// The server URL the tests use: `FERRY_TEST_PG_URL` or [`DEFAULT_TEST_URL`].
    pub(crate) fn test_url() -> String {
        std::env::var("FERRY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned())
    }

    /// Whether the server answers, checked once per test binary.
    async fn reachable(url: &str) -> Result<(), String> {
        static PROBE: OnceCell<Result<(), String>> = OnceCell::const_new();
        PROBE
            .get_or_init(|| async {
                let connect = sqlx::PgConnection::connect(url);
                match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
                    Ok(Ok(conn)) => {
                        let _ = sqlx::Connection::close(conn).await;
                        Ok(())
                    }
                    Ok(Err(err)) => Err(super::scrub(&err.to_string(), &super::url_secrets(url))),
                    Err(_) => Err("no answer within 5s".to_owned()),
                }
            })
            .await
            .clone()
    }

    /// `None` (after a loud note on stderr) when no server is reachable, unless
    /// `CI=true`, where that is a failure.
    pub(crate) async fn server_url() -> Option<String> {
        let url = test_url();
        if let Err(reason) = reachable(&url).await {
            let message = format!(
                "Postgres not reachable at {} ({reason}); set FERRY_TEST_PG_URL",
                redact_url(&url)
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message} — CI=true, so the Postgres tests fail instead of skipping");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        }
        Some(url)
    }

    /// A fresh schema name; random, so parallel tests and repeated runs never meet.
    pub(crate) fn fresh_schema() -> String {
        format!("ferry_test_{:016x}", rand::random::<u64>())
    }

    /// A migrated store in its own schema; drop the schema with [`TestSchema::finish`].
    pub(crate) struct TestSchema {
        pub(crate) store: Store,
        pub(crate) url: String,
        pub(crate) schema: String,
    }

    impl TestSchema {
        /// `None` when the tests are skipped (see [`server_url`]).
        pub(crate) async fn create() -> Option<TestSchema> {
            let url = server_url().await?;
            let schema = fresh_schema();
            let store = match PostgresStore::connect(&url, Some(&schema)).await {
                Ok(store) => store,
                Err(err) => panic!("cannot set up test schema {schema}: {err}"),
            };
            Some(TestSchema {
                store: Store::Postgres(store),
                url,
                schema,
            })
        }

        /// Another store on the same schema (its own pool).
        pub(crate) async fn reopen(&self) -> PostgresStore {
            match PostgresStore::connect(&self.url, Some(&self.schema)).await {
                Ok(store) => store,
                Err(err) => panic!("cannot reopen test schema {}: {err}", self.schema),
            }
        }

        /// Run `case`, drop the schema whatever happened, then pass on a panic.
        pub(crate) async fn run<F: Future<Output = ()>>(self, case: impl FnOnce(Store) -> F) {
            let outcome = AssertUnwindSafe(case(self.store.clone())).catch_unwind().await;
            self.store.close().await;
            drop_schema(&self.url, &self.schema).await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }

    pub(crate) async fn drop_schema(url: &str, schema: &str) {
        let dropped = async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", super::quote_identifier(schema));
            sqlx::raw_sql(&sql).execute(&mut conn).await?;
            sqlx::Connection::close(conn).await
        };
        if let Err(err) = dropped.await {
            eprintln!("could not drop test schema {schema}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use chrono::DateTime;

    use super::testing::{drop_schema, fresh_schema, server_url, TestSchema};
    use super::*;
    use crate::store::{CheckpointStore, FailureLedger, MappingStatus, MappingStore, Store};

    fn mapping(scheme: &str, source_id: &str, target_id: Option<&str>) -> Mapping {
        Mapping {
            scheme: scheme.to_owned(),
            source_object: "customer".to_owned(),
            source_id: source_id.to_owned(),
            source_name: None,
            target_object: "bd_customer".to_owned(),
            target_id: target_id.map(str::to_owned),
            target_name: None,
            status: MappingStatus::Created,
            payload_hash: None,
            attempts: 1,
            last_error: None,
            first_synced_at: DateTime::from_timestamp_millis(1_700_000_000_000),
            last_synced_at: DateTime::from_timestamp_millis(1_700_000_000_000),
            detail_ids: None,
        }
    }

    fn new_failure(source_id: &str) -> NewFailure {
        NewFailure {
            scheme: "orders".to_owned(),
            source_id: source_id.to_owned(),
            stage: FailureStage::Write,
            error_class: "target_rejected".to_owned(),
            message: "rejected".to_owned(),
            payload: Some(json!({ "FNumber": source_id })),
        }
    }

    fn postgres(store: &Store) -> &PostgresStore {
        match store {
            Store::Postgres(pg) => pg,
            other => panic!("expected the Postgres backend, got {other:?}"),
        }
    }

    /// Runs `case` with an admin connection, the URL of a new empty schema (named in the
    /// URL's options, so `Store::open` migrates it) and the schema's name; drops the schema
    /// whatever happened.
    async fn in_new_schema<F: std::future::Future<Output = ()>>(
        url: &str,
        case: impl FnOnce(sqlx::PgConnection, String, String) -> F,
    ) {
        let schema = fresh_schema();
        let outcome = async {
            let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let separator = if url.contains('?') { '&' } else { '?' };
            let in_schema = format!("{url}{separator}options=-csearch_path%3D{schema}");
            case(admin, in_schema, schema.clone()).await;
        };
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        drop_schema(url, &schema).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://ferry:s3cret@db:5432/erp"),
            "postgres://ferry:***@db:5432/erp"
        );
        assert_eq!(
            redact_url("postgresql://ferry@db/erp?sslmode=require"),
            "postgresql://ferry@db/erp?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/erp?user=ferry&password=s3cret&options=-csearch_path%3Dferry"),
            "postgres://db/erp?user=ferry&password=***&options=-csearch_path%3Dferry"
        );
        // Unencoded '/' and '@' in a password still hide all of it.
        assert_eq!(redact_url("postgres://u:pa/s@s@host/db"), "postgres://u:***@host/db");
        assert_eq!(redact_url("postgres://host"), "postgres://host");
    }

    #[test]
    fn secrets_are_scrubbed_in_every_spelling() {
        let secrets = url_secrets("postgres://u:p%40ss%2Fword@h/db?sslpassword=key-pw");
        let text = "failed for p@ss/word, p%40ss%2Fword and key-pw";
        assert_eq!(scrub(text, &secrets), "failed for ***, *** and ***");
        assert!(url_secrets("postgres://u@h/db").is_empty());
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn repeated_keys_fold_like_sequential_upserts() {
        let first = mapping("s", "A", Some("T1"));
        let mut second = mapping("s", "A", None);
        second.status = MappingStatus::Failed;
        second.first_synced_at = DateTime::from_timestamp_millis(1_900_000_000_000);
        let other = mapping("s", "0", Some("T0"));
        let mappings = [first, second, other];
        let rows = fold_mappings(&mappings);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].mapping.source_id, "0");
        let a = &rows[1];
        assert_eq!(a.mapping.status, MappingStatus::Failed);
        assert_eq!(a.target_id, Some("T1"));
        assert_eq!(a.first_synced_at, Some(1_700_000_000_000));

        let mut later = new_failure("O1");
        later.message = "later".to_owned();
        let failures = [new_failure("O1"), new_failure("O2"), later];
        let columns = FailureColumns::fold(&failures).unwrap();
        assert_eq!(columns.source_id, ["O1", "O2"]);
        assert_eq!(columns.occurrences, [2, 1]);
        assert_eq!(columns.message, ["later", "rejected"]);
    }

    #[tokio::test]
    async fn a_refused_connection_is_explained_without_the_password() {
        let err = PostgresStore::open("postgres://ferry:hunter2-secret@127.0.0.1:1/erp")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("postgres://ferry:***@127.0.0.1:1/erp"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!err.is_retryable());

        let err = PostgresStore::open("postgres://ferry:hunter2-secret@127.0.0.1:notaport/erp")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a valid PostgreSQL URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_database_is_named() {
        let Some(url) = server_url().await else { return };
        let mut url = url::Url::parse(&url).unwrap();
        url.set_path("/ferry_no_such_database");
        url.set_password(Some("pw-never-shown")).unwrap();
        let err = PostgresStore::open(url.as_str()).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(text.contains("ferry_no_such_database"), "{text}");
        assert!(text.contains("createdb"), "{text}");
        assert!(!text.contains("pw-never-shown"), "{text}");
    }

    /// Ferry processes on several hosts may open one new store together: the migration runs
    /// under sqlx's advisory lock, so one migrates and the others find it done. The run lock
    /// is the same for all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opened_together_on_a_new_schema_all_migrate_it() {
        let Some(url) = server_url().await else { return };
        in_new_schema(&url, |_admin, in_schema, schema| async move {
            let opened = futures::future::join_all((0..6).map(|_| Store::open(&in_schema))).await;
            for (n, opened) in opened.into_iter().enumerate() {
                let store = opened.unwrap_or_else(|e| panic!("store {n}: {e}"));
                store.set_checkpoint("orders", "cursor", "1").await.unwrap();
                store.close().await;
            }

            let scheme = format!("orders-{schema}");
            let (store, held) = crate::store::lock::open_locked(&in_schema, &scheme, false)
                .await
                .unwrap();
            let refused = crate::store::lock::open_locked(&in_schema, &scheme, false).await;
            assert!(
                matches!(refused, Err(crate::store::lock::LockError::Held { .. })),
                "a second run must be refused"
            );
            drop(held);
            let (again, lock) = crate::store::lock::open_locked(&in_schema, &scheme, false)
                .await
                .unwrap();
            // Closing a pool waits for its connections, the lock's one too.
            drop(lock);
            store.close().await;
            again.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn store_open_takes_the_schema_from_the_url() {
        let Some(url) = server_url().await else { return };
        in_new_schema(&url, |mut admin, in_schema, schema| async move {
            let store = Store::open(&in_schema).await.unwrap();
            assert!(
                store.describe().starts_with("PostgreSQL store at postgres"),
                "{}",
                store.describe()
            );
            store.set_checkpoint("orders", "cursor", "9").await.unwrap();
            store.close().await;

            let sql = format!("SELECT value FROM {schema}.checkpoints WHERE scheme = 'orders'");
            let value: String = sqlx::query_scalar(&sql).fetch_one(&mut admin).await.unwrap();
            assert_eq!(value, "9");

            // Opening again finds the schema migrated and the data in place.
            let again = Store::open(&in_schema.replace("postgres://", "postgresql://"))
                .await
                .unwrap();
            assert_eq!(
                again.checkpoint("orders", "cursor").await.unwrap().as_deref(),
                Some("9")
            );
            again.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_commit_leaves_nothing_behind() {
        let Some(db) = TestSchema::create().await else { return };
        db.run(|store| async move {
            let pg = postgres(&store);
            sqlx::raw_sql(
                "CREATE FUNCTION reject_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.source_id = 'boom' THEN RAISE EXCEPTION 'rejected by test trigger'; END IF; \
                   RETURN NEW; END $$; \
                 CREATE TRIGGER reject_boom BEFORE INSERT ON failures FOR EACH ROW EXECUTE FUNCTION reject_boom();",
            )
            .execute(&pg.inner.pool)
            .await
            .unwrap();
            let text = crate::store::tests::a_refused_batch_leaves_nothing_behind(&store).await;
            assert!(text.contains("rejected by test trigger"), "{text}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_first_import_gets_statistics() {
        let Some(db) = TestSchema::create().await else { return };
        db.run(|store| async move {
            let pg = postgres(&store);
            let estimated_rows = || async {
                sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE oid = 'mappings'::regclass")
                    .fetch_one(&pg.inner.pool)
                    .await
                    .unwrap()
            };
            let batch = |from: usize, to: usize| BatchCommit {
                mappings: (from..to).map(|n| mapping("orders", &format!("O{n}"), None)).collect(),
                ..BatchCommit::default()
            };
            store.commit_batch(batch(0, 999)).await.unwrap();
            assert!(estimated_rows().await < 0.0, "not analysed before 1,000 rows");
            store.commit_batch(batch(999, 1_100)).await.unwrap();
            assert_eq!(estimated_rows().await, 1_100.0);
            assert_eq!(pg.inner.next_analyze_at.load(Ordering::Relaxed), 2_200);
        })
        .await;
    }

    #[tokio::test]
    async fn nul_characters_are_refused_with_a_hint() {
        let Some(db) = TestSchema::create().await else { return };
        db.run(|store| async move {
            let err = store
                .upsert_mapping(&mapping("orders", "bad\0id", None))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("NUL"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_held_lock_is_reported_as_retryable() {
        let Some(db) = TestSchema::create().await else { return };
        let url = db.url.clone();
        let schema = db.schema.clone();
        db.run(|store| async move {
            let separator = if url.contains('?') { '&' } else { '?' };
            let impatient = format!("{url}{separator}options=-csearch_path%3D{schema}%20-clock_timeout%3D100");
            // Opening checks the migrations under sqlx's database-wide advisory lock, which
            // other tests migrating their own schemas may hold for longer than 100 ms.
            let mut opened = Store::open(&impatient).await;
            for _ in 0..50 {
                match &opened {
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        opened = Store::open(&impatient).await;
                    }
                    _ => break,
                }
            }
            let waiter = opened.unwrap();
            let mut tx = postgres(&store).inner.pool.begin().await.unwrap();
            sqlx::raw_sql("LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            let err = waiter.set_checkpoint("orders", "cursor", "1").await.unwrap_err();
            assert!(err.is_retryable(), "{err:?}");
            assert!(err.to_string().contains("busy"), "{err}");
            tx.rollback().await.unwrap();
            waiter.set_checkpoint("orders", "cursor", "1").await.unwrap();
            waiter.close().await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_overlapping_batches_all_land() {
        let Some(db) = TestSchema::create().await else { return };
        let second = db.reopen().await;
        db.run(|store| async move {
            let writers = (0..4).map(|w| {
                let store = if w % 2 == 0 {
                    store.clone()
                } else {
                    Store::Postgres(second.clone())
                };
                tokio::spawn(async move {
                    for round in 0..10 {
                        let mut ids: Vec<String> = (0..50).map(|n| format!("K{n:02}")).collect();
                        if (w + round) % 2 == 1 {
                            ids.reverse();
                        }
                        let batch = BatchCommit {
                            mappings: ids.iter().map(|id| mapping("orders", id, Some(id))).collect(),
                            failures: ids.iter().take(5).map(|id| new_failure(id)).collect(),
                            resolved: Vec::new(),
                            settled: Vec::new(),
                        };
                        store.commit_batch(batch).await?;
                    }
                    Ok::<(), StoreError>(())
                })
            });
            for writer in futures::future::join_all(writers).await {
                writer.unwrap().unwrap();
            }
            let all = store.query_mappings(&MappingQuery::default()).await.unwrap();
            assert_eq!(all.len(), 50);
            let open = store.list_failures(Some("orders"), None, 100).await.unwrap();
            assert_eq!(open.len(), 10);
            let attempts: i64 = open.iter().map(|f| f.attempts).sum();
            assert_eq!(attempts, 4 * 10 * 5);
            second.close().await;
        })
        .await;
    }

    /// Manual measurement: `cargo test --lib store::postgres::tests::postgres_batch_throughput -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement; run by hand"]
    async fn postgres_batch_throughput() {
        let Some(db) = TestSchema::create().await else { return };
        db.run(|store| async move { crate::store::tests::batch_throughput(&store).await })
            .await;
    }

    /// Read-only commands never create Ferry's tables in an empty database.
    #[tokio::test]
    async fn opening_an_existing_store_refuses_a_database_without_ferry_tables() {
        let Some(url) = server_url().await else {
            return;
        };
        let schema = fresh_schema();
        let refused = PostgresStore::connect_with(&url, Some(&schema), false).await;
        let err = refused.expect_err("no Ferry tables yet");
        assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
        assert!(
            err.to_string().contains("a `ferry run` with this --store creates them"),
            "{err}"
        );
        PostgresStore::connect(&url, Some(&schema)).await.unwrap().close().await;
        let opened = PostgresStore::connect_with(&url, Some(&schema), false).await.unwrap();
        opened.close().await;
        drop_schema(&url, &schema).await;
    }
}
