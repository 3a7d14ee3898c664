//! What the SQLite and PostgreSQL stores share, written once.
//!
//! Each backend implements [`SqlStore`]: how to run a statement on its pools, how to
//! describe its errors, and the few operations whose SQL really differs (arrays and
//! `UNNEST` on Postgres, chunked `IN (…)` lists and the group writer on SQLite). On top
//! of that this module owns row decoding, the error wording shared by both, and blanket
//! impls of the store traits whose statements differ only in their placeholders.
//!
//! Statements here are written with anonymous `?` parameters; the Postgres backend
//! numbers them (`$1`, `$2`, …, [`numbered`]) before preparing them, so each still has
//! one fixed text per call site and is prepared once per connection.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateError;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use super::field_mappings::{
    put_step, FieldMapping, FieldMappingChanges, FieldMappingFilter, FieldMappingStore, FieldSide, FieldTable, PutStep,
};
use super::{
    check_keep, check_limit, check_query, now, CheckpointStore, EventLog, Failure, FailureLedger, FailureStatus,
    IntentBatch, IntentLog, Mapping, MappingQuery, MappingStore, RateBudget, RecordEvent, RunHistory, RunRecord,
    StoreError, WriteIntent,
};

// ---- parameters ----------------------------------------------------------------------

/// One bound parameter of a shared statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}

/// `query` with `args` bound in order.
pub(super) fn bind_args<'q, DB: Database>(
    mut query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    args: &[Arg<'q>],
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
{
    for arg in args {
        query = match *arg {
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::OptInt(v) => query.bind(v),
            Arg::Float(v) => query.bind(v),
        };
    }
    query
}

/// `sql` with each `?` replaced by `$1`, `$2`, … (PostgreSQL's placeholders). The
/// shared statements hold no `?` inside string literals.
pub(super) fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

// ---- decoding ------------------------------------------------------------------------

/// Typed column reads, the same on both backends' rows.
pub(super) trait SqlRow {
    fn text(&self, index: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, index: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    fn float(&self, index: usize) -> Result<f64, sqlx::Error>;
    fn boolean(&self, index: usize) -> Result<bool, sqlx::Error>;
}

impl<R: Row> SqlRow for R
where
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    f64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, index: usize) -> Result<String, sqlx::Error> {
        self.try_get(index)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(index)
    }
    fn int(&self, index: usize) -> Result<i64, sqlx::Error> {
        self.try_get(index)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }
    fn float(&self, index: usize) -> Result<f64, sqlx::Error> {
        self.try_get(index)
    }
    fn boolean(&self, index: usize) -> Result<bool, sqlx::Error> {
        self.try_get(index)
    }
}

/// A column read failure as the detail of [`StoreError::Corrupt`].
pub(super) fn detail(err: sqlx::Error) -> String {
    err.to_string()
}

pub(super) fn timestamp(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} is out of range"))
}

pub(super) fn optional_timestamp(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, String> {
    ms.map(timestamp).transpose()
}

pub(super) fn json(text: Option<String>) -> Result<Option<serde_json::Value>, String> {
    text.map(|t| serde_json::from_str(&t).map_err(|err| format!("stored JSON is invalid: {err}")))
        .transpose()
}

pub(super) fn to_json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::InvalidRequest(format!("a JSON value cannot be stored: {err}")))
}

fn parse<T: std::str::FromStr<Err = super::ParseStatusError>>(text: String) -> Result<T, String> {
    text.parse().map_err(|err: super::ParseStatusError| err.to_string())
}

/// How an upsert of `mappings` merges into the stored row (see the store module doc), as
/// a literal for `concat!`.
macro_rules! mapping_on_conflict {
    () => {
        " ON CONFLICT (scheme, source_object, source_id) DO UPDATE SET \
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
         detail_ids = COALESCE(excluded.detail_ids, mappings.detail_ids)"
    };
}
pub(super) use mapping_on_conflict;

/// Columns of `mappings` in the order [`decode_mapping`] reads them.
pub(super) const MAPPING_COLUMNS: &str = "scheme, source_object, source_id, source_name, target_object, \
     target_id, target_name, status, payload_hash, attempts, last_error, first_synced_at, last_synced_at, \
     detail_ids";

pub(super) fn decode_mapping(row: &impl SqlRow) -> Result<Mapping, String> {
    Ok(Mapping {
        scheme: row.text(0).map_err(detail)?,
        source_object: row.text(1).map_err(detail)?,
        source_id: row.text(2).map_err(detail)?,
        source_name: row.opt_text(3).map_err(detail)?,
        target_object: row.text(4).map_err(detail)?,
        target_id: row.opt_text(5).map_err(detail)?,
        target_name: row.opt_text(6).map_err(detail)?,
        status: parse(row.text(7).map_err(detail)?)?,
        payload_hash: row.opt_text(8).map_err(detail)?,
        attempts: row.int(9).map_err(detail)?,
        last_error: row.opt_text(10).map_err(detail)?,
        first_synced_at: optional_timestamp(row.opt_int(11).map_err(detail)?)?,
        last_synced_at: optional_timestamp(row.opt_int(12).map_err(detail)?)?,
        detail_ids: json(row.opt_text(13).map_err(detail)?)?,
    })
}

/// Columns of `failures` for [`decode_failure`]; `{as_text}` reads the JSON payload as text.
fn failure_columns<S: SqlStore>() -> String {
    format!(
        "id, scheme, source_id, stage, error_class, message, attempts, first_seen, last_seen, payload{}, status",
        S::JSON_AS_TEXT
    )
}

fn decode_failure(row: &impl SqlRow) -> Result<Failure, String> {
    Ok(Failure {
        id: row.int(0).map_err(detail)?,
        scheme: row.text(1).map_err(detail)?,
        source_id: row.text(2).map_err(detail)?,
        stage: parse(row.text(3).map_err(detail)?)?,
        error_class: row.text(4).map_err(detail)?,
        message: row.text(5).map_err(detail)?,
        attempts: row.int(6).map_err(detail)?,
        first_seen: timestamp(row.int(7).map_err(detail)?)?,
        last_seen: timestamp(row.int(8).map_err(detail)?)?,
        payload: json(row.opt_text(9).map_err(detail)?)?,
        status: parse(row.text(10).map_err(detail)?)?,
    })
}

fn run_columns<S: SqlStore>() -> String {
    format!(
        "id, scheme, started_at, finished_at, status, summary{}",
        S::JSON_AS_TEXT
    )
}

fn decode_run(row: &impl SqlRow) -> Result<RunRecord, String> {
    Ok(RunRecord {
        id: row.int(0).map_err(detail)?,
        scheme: row.text(1).map_err(detail)?,
        started_at: timestamp(row.int(2).map_err(detail)?)?,
        finished_at: optional_timestamp(row.opt_int(3).map_err(detail)?)?,
        status: row.text(4).map_err(detail)?,
        summary: json(row.opt_text(5).map_err(detail)?)?,
    })
}

const FIELD_MAPPING_COLUMNS: &str = "data_center, channel, data_type, crm_value, crm_name, erp_value, erp_name";
const FIELD_TABLE_IS: &str = "data_center = ? AND channel = ? AND data_type = ?";

fn decode_field_mapping(row: &impl SqlRow) -> Result<FieldMapping, String> {
    Ok(FieldMapping {
        data_center: row.text(0).map_err(detail)?,
        channel: row.text(1).map_err(detail)?,
        data_type: row.text(2).map_err(detail)?,
        crm_value: row.text(3).map_err(detail)?,
        crm_name: row.opt_text(4).map_err(detail)?,
        erp_value: row.text(5).map_err(detail)?,
        erp_name: row.opt_text(6).map_err(detail)?,
    })
}

fn table_args(table: &FieldTable) -> [Arg<'_>; 3] {
    [
        table.data_center.as_str().into(),
        table.channel.as_str().into(),
        table.data_type.as_str().into(),
    ]
}

/// `Debug` of a store: its type and where it is.
pub(super) fn debug_store(f: &mut std::fmt::Formatter<'_>, name: &str, location: &str) -> std::fmt::Result {
    f.debug_struct(name)
        .field("location", &location)
        .finish_non_exhaustive()
}

// ---- errors --------------------------------------------------------------------------

/// An error while opening: retryable ([`StoreError::Busy`]) or not ([`StoreError::Open`]).
pub(super) fn open_failure(location: &str, busy: bool, reason: String) -> StoreError {
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

/// What to tell the user when a migration fails, per backend.
pub(super) struct MigrateHints {
    /// The store is newer than this ferry.
    pub newer: &'static str,
    /// A shipped migration was changed.
    pub edited: &'static str,
    /// An earlier migration stopped half-way.
    pub dirty: &'static str,
    /// Anything else.
    pub other: &'static str,
}

/// A failed migration; `describe` classifies database errors and `clean` edits the
/// reason before it is shown (Postgres scrubs passwords from it).
pub(super) fn migrate_error(
    location: &str,
    err: MigrateError,
    hints: &MigrateHints,
    describe: fn(&sqlx::Error) -> (bool, String),
    clean: impl FnOnce(String) -> String,
) -> StoreError {
    let hint = match &err {
        MigrateError::VersionMissing(_) | MigrateError::VersionTooNew(..) => hints.newer,
        MigrateError::VersionMismatch(_) => hints.edited,
        MigrateError::Dirty(_) => hints.dirty,
        _ => hints.other,
    };
    let (busy, reason) = match &err {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => describe(inner),
        other => (false, other.to_string()),
    };
    let reason = clean(reason);
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

/// The statement runners of an [`SqlStore`] impl, alike on both backends: `$text` turns
/// the shared `?` text into the backend's, `self.pool_for(on)` picks the pool.
macro_rules! sql_runners {
    ($row:ty, $text:path) => {
        async fn fetch_all(&self, on: On, sql: &str, args: &[Arg<'_>]) -> Result<Vec<$row>, sqlx::Error> {
            let sql = $text(sql);
            bind_args(sqlx::query(&sql), args)
                .fetch_all(self.pool_for(on))
                .await
        }

        async fn fetch_optional(&self, on: On, sql: &str, args: &[Arg<'_>]) -> Result<Option<$row>, sqlx::Error> {
            let sql = $text(sql);
            bind_args(sqlx::query(&sql), args)
                .fetch_optional(self.pool_for(on))
                .await
        }

        async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
            let sql = $text(sql);
            let done = bind_args(sqlx::query(&sql), args)
                .execute(self.pool_for(On::Write))
                .await?;
            Ok(done.rows_affected())
        }

        async fn fetch_optional_in(
            tx: &mut Self::Tx,
            sql: &str,
            args: &[Arg<'_>],
        ) -> Result<Option<$row>, sqlx::Error> {
            let sql = $text(sql);
            bind_args(sqlx::query(&sql), args).fetch_optional(&mut **tx).await
        }

        async fn execute_in(tx: &mut Self::Tx, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
            let sql = $text(sql);
            let done = bind_args(sqlx::query(&sql), args).execute(&mut **tx).await?;
            Ok(done.rows_affected())
        }

        async fn commit(tx: Self::Tx) -> Result<(), sqlx::Error> {
            tx.commit().await
        }
    };
}
pub(super) use sql_runners;

/// The statement text as given (SQLite takes `?` as it is).
pub(super) fn as_written(sql: &str) -> Cow<'_, str> {
    Cow::Borrowed(sql)
}

// ---- the backend interface -------------------------------------------------------------

/// Which pool a read runs on (SQLite keeps a separate one for reads; Postgres has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum On {
    Read,
    Write,
}

/// A SQL backend: how to run statements, and the operations whose SQL differs.
/// Statements passed to the runners use `?` placeholders.
pub(super) trait SqlStore: Sync {
    type Row: SqlRow + Send;
    /// A write transaction.
    type Tx: Send;

    /// Appended to a JSON column to read it as text (`::text` on Postgres).
    const JSON_AS_TEXT: &'static str;
    /// Appended to a parameter stored in a JSON column (`::json` on Postgres).
    const TEXT_AS_JSON: &'static str;
    /// What follows `WHERE` in [`RunHistory::latest_runs`]: the newest run of each
    /// scheme, by scheme name; binds an optional scheme and an optional status.
    const LATEST_RUNS: &'static str;
    /// [`MappingStore::target_id_for`]; binds the source id and the object.
    const TARGET_ID_FOR: &'static str;
    /// Takes a token from a budget and returns the tokens left; binds the name, the
    /// burst, the rate per second and the time in ms.
    const TAKE_TOKEN: &'static str;

    /// Where the store is, for messages.
    fn location(&self) -> &str;
    /// Whether the error is worth retrying, and a description that quotes no data.
    fn describe(err: &sqlx::Error) -> (bool, String);

    fn fetch_all(
        &self,
        on: On,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
    fn fetch_optional(
        &self,
        on: On,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send;
    /// Runs a write outside any transaction; returns the rows it changed.
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    fn begin_write(&self) -> impl Future<Output = Result<Self::Tx, sqlx::Error>> + Send;
    fn fetch_optional_in(
        tx: &mut Self::Tx,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send;
    fn execute_in(
        tx: &mut Self::Tx,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    // The operations each backend writes its own way.

    /// [`MappingStore::mappings_for`].
    fn lookup_mappings(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Mapping>, StoreError>> + Send;
    /// [`MappingStore::query_mappings`], after the query is checked.
    fn select_mappings(&self, q: &MappingQuery) -> impl Future<Output = Result<Vec<Mapping>, StoreError>> + Send;
    /// [`MappingStore::upsert_mapping`].
    fn save_mapping(&self, m: &Mapping) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets a status other than `open` on all `ids` in one statement, when the backend
    /// can; `None` has them changed one at a time.
    fn close_failures_at_once(
        &self,
        ids: &[i64],
        status: FailureStatus,
    ) -> impl Future<Output = Option<Result<u64, StoreError>>> + Send;
    /// [`IntentLog::record_intents`] of at least one batch.
    fn save_intents(&self, batches: Vec<IntentBatch<'_>>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// [`EventLog::record_events`] of at least one event, with each event's detail JSON.
    fn save_events(
        &self,
        events: Vec<RecordEvent>,
        details: Vec<String>,
        keep: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // Provided.

    /// Turns a statement's error into a [`StoreError`] naming `action`.
    fn failed(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |err| {
            let (busy, reason) = Self::describe(&err);
            StoreError::statement(self.location().to_owned(), action, busy, reason)
        }
    }

    /// Turns an unreadable row into a [`StoreError::Corrupt`] naming `action`.
    fn corrupt(&self, action: &'static str) -> impl FnOnce(String) -> StoreError + '_ {
        move |detail| self.corrupt_row(action, detail)
    }

    fn corrupt_row(&self, action: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt {
            location: self.location().to_owned(),
            action,
            detail,
        }
    }

    /// Every row of `rows` decoded, or the first one that is unreadable.
    fn decode_all<R, T>(
        &self,
        action: &'static str,
        rows: &[R],
        decode: fn(&R) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        rows.iter()
            .map(|row| decode(row).map_err(self.corrupt(action)))
            .collect()
    }

    /// The rows of a `SELECT` on the read pool, each read by `decode`.
    fn fetch_decoded<T: Send>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        action: &'static str,
        decode: fn(&Self::Row) -> Result<T, String>,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send {
        async move {
            let rows = self.fetch_all(On::Read, sql, args).await.map_err(self.failed(action))?;
            self.decode_all(action, &rows, decode)
        }
    }

    /// The one row a statement returns (`sqlx::Error::RowNotFound` when none).
    fn fetch_one(
        &self,
        on: On,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Self::Row, sqlx::Error>> + Send {
        async move {
            self.fetch_optional(on, sql, args)
                .await?
                .ok_or(sqlx::Error::RowNotFound)
        }
    }
}

// ---- the store traits, once for both backends -----------------------------------------------

impl<S: SqlStore> MappingStore for S {
    async fn mappings_for(
        &self,
        scheme: &str,
        source_object: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Mapping>, StoreError> {
        self.lookup_mappings(scheme, source_object, source_ids).await
    }

    async fn query_mappings(&self, q: &MappingQuery) -> Result<Vec<Mapping>, StoreError> {
        check_query(q)?;
        self.select_mappings(q).await
    }

    async fn upsert_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        self.save_mapping(m).await
    }

    async fn delete_mapping(&self, scheme: &str, source_object: &str, source_id: &str) -> Result<bool, StoreError> {
        let done = self
            .execute(
                "DELETE FROM mappings WHERE scheme = ? AND source_object = ? AND source_id = ?",
                &[scheme.into(), source_object.into(), source_id.into()],
            )
            .await
            .map_err(self.failed("deleting a mapping"))?;
        Ok(done > 0)
    }

    async fn target_id_for(&self, object: &str, source_id: &str) -> Result<Option<String>, StoreError> {
        let found = self
            .fetch_optional(On::Read, S::TARGET_ID_FOR, &[source_id.into(), object.into()])
            .await;
        found
            .and_then(|row| row.map(|row| row.text(0)).transpose())
            .map_err(self.failed("looking up a mapped id"))
    }
}

impl<S: SqlStore> CheckpointStore for S {
    async fn checkpoint(&self, scheme: &str, key: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT value FROM checkpoints WHERE scheme = ? AND key = ?";
        let found = self.fetch_optional(On::Read, sql, &[scheme.into(), key.into()]).await;
        found
            .and_then(|row| row.map(|row| row.text(0)).transpose())
            .map_err(self.failed("reading a checkpoint"))
    }

    async fn set_checkpoint(&self, scheme: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO checkpoints (scheme, key, value, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (scheme, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[scheme.into(), key.into(), value.into(), now().timestamp_millis().into()],
        )
        .await
        .map_err(self.failed("saving a checkpoint"))?;
        Ok(())
    }

    async fn clear_checkpoint(&self, scheme: &str, key: &str) -> Result<bool, StoreError> {
        let done = self
            .execute(
                "DELETE FROM checkpoints WHERE scheme = ? AND key = ?",
                &[scheme.into(), key.into()],
            )
            .await
            .map_err(self.failed("clearing a checkpoint"))?;
        Ok(done > 0)
    }
}

/// Reopens one failure unless its key already has an open one (the unique index would
/// reject it).
const REOPEN_FAILURE: &str = "UPDATE failures SET status = 'open' WHERE id = ? AND status <> 'open' \
     AND NOT EXISTS (SELECT 1 FROM failures AS other WHERE other.status = 'open' \
       AND other.scheme = failures.scheme AND other.source_id = failures.source_id \
       AND other.stage = failures.stage)";

impl<S: SqlStore> FailureLedger for S {
    async fn list_failures(
        &self,
        scheme: Option<&str>,
        status: Option<FailureStatus>,
        limit: i64,
    ) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let mut sql = format!("SELECT {} FROM failures WHERE 1 = 1", failure_columns::<S>());
        let mut args = Vec::with_capacity(3);
        if let Some(scheme) = scheme {
            sql.push_str(" AND scheme = ?");
            args.push(scheme.into());
        }
        if let Some(status) = status {
            sql.push_str(" AND status = ?");
            args.push(status.as_str().into());
        }
        sql.push_str(" ORDER BY last_seen DESC, id DESC LIMIT ?");
        args.push(limit.into());
        self.fetch_decoded(&sql, &args, "listing failures", decode_failure)
            .await
    }

    async fn failure(&self, id: i64) -> Result<Option<Failure>, StoreError> {
        let sql = format!("SELECT {} FROM failures WHERE id = ?", failure_columns::<S>());
        let found = self
            .fetch_decoded(&sql, &[id.into()], "reading a failure", decode_failure)
            .await?;
        Ok(found.into_iter().next())
    }

    async fn set_failure_status(&self, ids: &[i64], status: FailureStatus) -> Result<u64, StoreError> {
        const ACTION: &str = "changing failure status";
        let reopen = status == FailureStatus::Open;
        if !reopen {
            if let Some(changed) = self.close_failures_at_once(ids, status).await {
                return changed;
            }
        }
        // One at a time: two of the ids may share a key, and only one may be open.
        let mut tx = self.begin_write().await.map_err(self.failed(ACTION))?;
        let mut changed = 0;
        for &id in ids {
            let done = if reopen {
                S::execute_in(&mut tx, REOPEN_FAILURE, &[id.into()]).await
            } else {
                let status = status.as_str();
                let sql = "UPDATE failures SET status = ? WHERE id = ? AND status <> ?";
                S::execute_in(&mut tx, sql, &[status.into(), id.into(), status.into()]).await
            };
            changed += done.map_err(self.failed(ACTION))?;
        }
        S::commit(tx).await.map_err(self.failed(ACTION))?;
        Ok(changed)
    }

    async fn count_open_failures(&self, scheme: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM failures WHERE scheme = ? AND status = 'open'";
        self.fetch_one(On::Read, sql, &[scheme.into()])
            .await
            .and_then(|row| row.int(0))
            .map_err(self.failed("counting open failures"))
    }

    async fn failures_of(&self, scheme: &str, source_id: &str, limit: i64) -> Result<Vec<Failure>, StoreError> {
        check_limit(limit)?;
        let sql = format!(
            "SELECT {} FROM failures WHERE scheme = ? AND source_id = ? ORDER BY last_seen DESC, id DESC LIMIT ?",
            failure_columns::<S>()
        );
        let args = [scheme.into(), source_id.into(), limit.into()];
        self.fetch_decoded(&sql, &args, "listing a record's failures", decode_failure)
            .await
    }
}

impl<S: SqlStore> RunHistory for S {
    async fn start_run(&self, scheme: &str) -> Result<i64, StoreError> {
        let sql = "INSERT INTO runs (scheme, started_at, status) VALUES (?, ?, 'running') RETURNING id";
        self.fetch_one(On::Write, sql, &[scheme.into(), now().timestamp_millis().into()])
            .await
            .and_then(|row| row.int(0))
            .map_err(self.failed("recording the start of a run"))
    }

    async fn finish_run(&self, id: i64, status: &str, summary: &serde_json::Value) -> Result<(), StoreError> {
        let summary = to_json_text(summary)?;
        let sql = format!(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ?{} WHERE id = ?",
            S::TEXT_AS_JSON
        );
        let args = [
            now().timestamp_millis().into(),
            status.into(),
            summary.as_str().into(),
            id.into(),
        ];
        let done = self
            .execute(&sql, &args)
            .await
            .map_err(self.failed("recording the end of a run"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                location: self.location().to_owned(),
                what: format!("run {id}"),
            });
        }
        Ok(())
    }

    async fn recent_runs(&self, scheme: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        check_limit(limit)?;
        let columns = run_columns::<S>();
        let (sql, args) = match scheme {
            Some(scheme) => (
                format!("SELECT {columns} FROM runs WHERE scheme = ? ORDER BY id DESC LIMIT ?"),
                vec![scheme.into(), limit.into()],
            ),
            None => (
                format!("SELECT {columns} FROM runs ORDER BY id DESC LIMIT ?"),
                vec![limit.into()],
            ),
        };
        self.fetch_decoded(&sql, &args, "listing runs", decode_run).await
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {} FROM runs WHERE id = ?", run_columns::<S>());
        let found = self
            .fetch_decoded(&sql, &[id.into()], "reading a run", decode_run)
            .await?;
        Ok(found.into_iter().next())
    }

    async fn latest_runs(&self, scheme: Option<&str>, status: Option<&str>) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!("SELECT {} FROM runs WHERE {}", run_columns::<S>(), S::LATEST_RUNS);
        self.fetch_decoded(
            &sql,
            &[scheme.into(), status.into()],
            "listing the latest runs",
            decode_run,
        )
        .await
    }
}

impl<S: SqlStore> IntentLog for S {
    async fn record_intents(&self, intents: &[WriteIntent]) -> Result<(), StoreError> {
        let batches = super::intent_batches(intents)?;
        if batches.is_empty() {
            return Ok(());
        }
        self.save_intents(batches).await
    }

    async fn pending_intents(&self, scheme: &str) -> Result<Vec<WriteIntent>, StoreError> {
        const ACTION: &str = "reading write intents";
        let sql = format!(
            "SELECT intents{} FROM write_intents WHERE scheme = ? ORDER BY created_at, batch_id, id",
            S::JSON_AS_TEXT
        );
        let rows = self
            .fetch_all(On::Write, &sql, &[scheme.into()])
            .await
            .and_then(|rows| rows.iter().map(|row| row.text(0)).collect::<Result<Vec<_>, _>>())
            .map_err(self.failed(ACTION))?;
        super::unpack_intents(rows.iter().map(String::as_str)).map_err(self.corrupt(ACTION))
    }
}

impl<S: SqlStore> EventLog for S {
    async fn record_events(&self, events: Vec<RecordEvent>, keep: u32) -> Result<(), StoreError> {
        check_keep(keep)?;
        if keep == 0 || events.is_empty() {
            return Ok(());
        }
        let details = events
            .iter()
            .map(RecordEvent::detail_json)
            .collect::<Result<Vec<_>, _>>()?;
        self.save_events(events, details, i64::from(keep)).await
    }

    async fn record_events_for(
        &self,
        scheme: &str,
        source_id: &str,
        limit: i64,
    ) -> Result<Vec<RecordEvent>, StoreError> {
        const ACTION: &str = "reading record events";
        check_limit(limit)?;
        let sql = "SELECT scheme, source_id, run_id, at, outcome, payload_hash, detail FROM record_events \
             WHERE scheme = ? AND source_id = ? ORDER BY id DESC LIMIT ?";
        let read = |row: &S::Row| -> Result<super::EventColumns, sqlx::Error> {
            Ok((
                row.text(0)?,
                row.text(1)?,
                row.int(2)?,
                row.int(3)?,
                row.text(4)?,
                row.opt_text(5)?,
                row.text(6)?,
            ))
        };
        let rows = self
            .fetch_all(On::Read, sql, &[scheme.into(), source_id.into(), limit.into()])
            .await
            .and_then(|rows| rows.iter().map(read).collect::<Result<Vec<_>, _>>())
            .map_err(self.failed(ACTION))?;
        rows.into_iter()
            .map(|(scheme, source_id, run_id, at, outcome, hash, detail)| {
                RecordEvent::from_columns(scheme, source_id, run_id, at, &outcome, hash, &detail)
            })
            .collect::<Result<_, _>>()
            .map_err(self.corrupt(ACTION))
    }
}

impl<S: SqlStore> RateBudget for S {
    async fn take_token(&self, name: &str, per_second: f64, burst: u32) -> Result<std::time::Duration, StoreError> {
        let args = [
            name.into(),
            f64::from(burst).into(),
            per_second.into(),
            now().timestamp_millis().into(),
        ];
        let tokens = self
            .fetch_one(On::Write, S::TAKE_TOKEN, &args)
            .await
            .and_then(|row| row.float(0))
            .map_err(self.failed("taking from a rate budget"))?;
        Ok(crate::rate::wait_for(tokens, per_second))
    }
}

impl<S: SqlStore> FieldMappingStore for S {
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
        let mut tx = self.begin_write().await.map_err(self.failed(ACTION))?;
        let mut changes = FieldMappingChanges::default();
        for row in rows {
            let table = row.table();
            let [center, channel, data_type] = table_args(&table);
            let stored = S::fetch_optional_in(
                &mut tx,
                &by_crm,
                &[center, channel, data_type, row.crm_value.as_str().into()],
            )
            .await
            .map_err(self.failed(ACTION))?
            .map(|found| decode_field_mapping(&found))
            .transpose()
            .map_err(self.corrupt(ACTION))?;
            let owner = S::fetch_optional_in(
                &mut tx,
                &erp_owner,
                &[center, channel, data_type, row.erp_value.as_str().into()],
            )
            .await
            .map_err(self.failed(ACTION))?
            .map(|found| found.text(0).map_err(detail))
            .transpose()
            .map_err(self.corrupt(ACTION))?;
            // Returning the error drops `tx`, which rolls the transaction back.
            let step = put_step(row, stored.as_ref(), owner.as_deref())?;
            changes.count(&step);
            if !matches!(step, PutStep::Keep) {
                let args = [
                    row.data_center.as_str().into(),
                    row.channel.as_str().into(),
                    row.data_type.as_str().into(),
                    row.crm_value.as_str().into(),
                    row.crm_name.as_deref().into(),
                    row.erp_value.as_str().into(),
                    row.erp_name.as_deref().into(),
                ];
                S::execute_in(&mut tx, &upsert, &args)
                    .await
                    .map_err(self.failed(ACTION))?;
            }
        }
        S::commit(tx).await.map_err(self.failed(ACTION))?;
        Ok(changes)
    }

    async fn list_field_mappings(&self, filter: &FieldMappingFilter) -> Result<Vec<FieldMapping>, StoreError> {
        const ACTION: &str = "listing field mappings";
        let mut sql = format!("SELECT {FIELD_MAPPING_COLUMNS} FROM field_mappings WHERE 1 = 1");
        let mut args = Vec::with_capacity(3);
        for (name, value) in [
            ("data_center", &filter.data_center),
            ("channel", &filter.channel),
            ("data_type", &filter.data_type),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {name} = ?"));
                args.push(value.as_str().into());
            }
        }
        sql.push_str(
            " ORDER BY data_center, channel, data_type, rtrim(crm_value, '0123456789'), length(crm_value), crm_value",
        );
        let rows = self
            .fetch_all(On::Read, &sql, &args)
            .await
            .map_err(self.failed(ACTION))?;
        self.decode_all(ACTION, &rows, decode_field_mapping)
    }

    async fn delete_field_mapping(&self, table: &FieldTable, crm_value: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM field_mappings WHERE {FIELD_TABLE_IS} AND crm_value = ?");
        let [center, channel, data_type] = table_args(table);
        let done = self
            .execute(&sql, &[center, channel, data_type, crm_value.into()])
            .await
            .map_err(self.failed("deleting a field mapping"))?;
        Ok(done > 0)
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
        let [center, channel, data_type] = table_args(table);
        let found = self
            .fetch_optional(On::Read, &sql, &[center, channel, data_type, value.into()])
            .await
            .map_err(self.failed(ACTION))?;
        found
            .map(|row| decode_field_mapping(&row))
            .transpose()
            .map_err(self.corrupt(ACTION))
    }
}
