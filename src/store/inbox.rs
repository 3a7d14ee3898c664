//! The receive-mode inbox ([`InboxStore`]): every push `ferry serve` accepts, committed
//! before it is answered, then drained by workers.
//!
//! Promises (every backend; the conformance suite checks them):
//! - **Durable and deduplicated.** [`InboxStore::append_push`] commits the row in one
//!   statement keyed by `(scheme, dedupe_key)`; a push whose key is already stored is not
//!   added again and gets the original row's id (`duplicate: true`).
//! - **Claims are leases.** [`InboxStore::claim_pushes`] hands a worker the oldest
//!   claimable rows of a scheme: `pending`, available, and not leased to anyone whose
//!   lease still runs. A crashed worker's rows are claimed again once its lease ends.
//!   Postgres claims with `FOR UPDATE SKIP LOCKED`, so several processes share one inbox.
//! - **Per-key order.** A row is not claimed while an earlier row of the same business key
//!   is leased or waiting for a retry, so one key's pushes are applied in arrival order.
//! - **Only the holder finishes.** [`InboxStore::finish_pushes`] changes a row only while
//!   `claimed_by` is the finishing worker: `done`, `failed`, or `pending` again at
//!   `retry_at`.
//! - Listing is newest first; [`InboxStore::replay_pushes`] makes rows pending again and
//!   [`InboxStore::purge_pushes`] deletes finished rows, never pending ones.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::sql::SqlStore;
use super::{check_limit, now, MemoryStore, ParseStatusError, PostgresStore, SqliteStore, Store, StoreError};

/// Where an inbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// Waiting for a worker, held by one (`claimed_by`), or waiting for a retry.
    Pending,
    /// Sent through the planner and writer.
    Done,
    /// Given up on; see `last_error` (and the failure ledger).
    Failed,
}

text_enum!(PushStatus, "push status", Pending => "pending", Done => "done", Failed => "failed");

/// A push to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPush {
    pub scheme: String,
    /// Unique per scheme: equal keys are one push.
    pub dedupe_key: String,
    /// The pushed record's id, when known: one key's rows are applied in order.
    pub business_key: Option<String>,
    /// `operationType: 3`: the record was cancelled at the sender.
    pub cancel: bool,
    /// How it arrived: `standard`, `non_standard`, `fxiaoke`, `fxiaoke_non_standard`.
    pub received_as: String,
    /// The record (standard) or the decoded body (non-standard).
    pub payload: serde_json::Value,
}

/// One stored push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxRow {
    pub id: i64,
    pub scheme: String,
    pub dedupe_key: String,
    pub business_key: Option<String>,
    pub cancel: bool,
    pub received_as: String,
    pub payload: serde_json::Value,
    pub status: PushStatus,
    /// Claims so far.
    pub attempts: i64,
    pub received_at: DateTime<Utc>,
    pub available_at: DateTime<Utc>,
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What [`InboxStore::append_push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub id: i64,
    /// The push was stored before; `id` is the original row.
    pub duplicate: bool,
}

/// How a claimed row ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PushOutcome {
    pub id: i64,
    /// `None`: done.
    pub error: Option<String>,
    /// With an error: pending again from this time; `None` marks the row failed.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Pending rows: how many, and when the oldest arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct InboxDepth {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// The inbox of pushes (see the module doc for the promises).
pub trait InboxStore {
    fn append_push(&self, push: &NewPush) -> impl Future<Output = Result<Appended, StoreError>> + Send;
    /// Claims up to `limit` rows of `scheme` for `worker` until `lease_until`, oldest first.
    fn claim_pushes(
        &self,
        scheme: &str,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<InboxRow>, StoreError>> + Send;
    /// Settles rows `worker` holds; returns how many changed.
    fn finish_pushes(
        &self,
        worker: &str,
        outcomes: &[PushOutcome],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn list_pushes(
        &self,
        scheme: Option<&str>,
        status: Option<PushStatus>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<InboxRow>, StoreError>> + Send;
    fn push(&self, id: i64) -> impl Future<Output = Result<Option<InboxRow>, StoreError>> + Send;
    /// Makes these rows pending and available now, with no lease.
    fn replay_pushes(&self, ids: &[i64]) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes `done` or `failed` rows received before `before`.
    fn purge_pushes(
        &self,
        scheme: Option<&str>,
        status: PushStatus,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn inbox_depth(&self, scheme: Option<&str>) -> impl Future<Output = Result<InboxDepth, StoreError>> + Send;
}

fn refuse_pending_purge(status: PushStatus) -> Result<(), StoreError> {
    if status == PushStatus::Pending {
        return Err(StoreError::InvalidRequest(
            "pending pushes are not purged (they were acknowledged and must still be applied); purge `done` or `failed`"
                .into(),
        ));
    }
    Ok(())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

const COLUMNS: &str = "id, scheme, dedupe_key, business_key, cancel, received_as, payload, status, attempts, \
     received_at, available_at, claimed_by, lease_until, finished_at, last_error";

/// Reads a row in [`COLUMNS`] order from either backend.
macro_rules! decode_row {
    ($row:expr, $cancel:ty) => {{
        use sqlx::Row;
        let row = $row;
        (|| -> Result<InboxRow, String> {
            let text = |e: sqlx::Error| e.to_string();
            let payload: String = row.try_get(6).map_err(text)?;
            let status: String = row.try_get(7).map_err(text)?;
            let cancel: $cancel = row.try_get(4).map_err(text)?;
            Ok(InboxRow {
                id: row.try_get(0).map_err(text)?,
                scheme: row.try_get(1).map_err(text)?,
                dedupe_key: row.try_get(2).map_err(text)?,
                business_key: row.try_get(3).map_err(text)?,
                cancel: cancel != <$cancel>::default(),
                received_as: row.try_get(5).map_err(text)?,
                payload: serde_json::from_str(&payload).map_err(|e| format!("payload: {e}"))?,
                status: status.parse().map_err(|e: ParseStatusError| e.to_string())?,
                attempts: row.try_get(8).map_err(text)?,
                received_at: from_ms(row.try_get(9).map_err(text)?),
                available_at: from_ms(row.try_get(10).map_err(text)?),
                claimed_by: row.try_get(11).map_err(text)?,
                lease_until: row.try_get::<Option<i64>, _>(12).map_err(text)?.map(from_ms),
                finished_at: row.try_get::<Option<i64>, _>(13).map_err(text)?.map(from_ms),
                last_error: row.try_get(14).map_err(text)?,
            })
        })()
    }};
}

fn payload_text(push: &NewPush) -> Result<String, StoreError> {
    serde_json::to_string(&push.payload)
        .map_err(|e| StoreError::InvalidRequest(format!("a push payload cannot be stored: {e}")))
}

// ---- SQLite ------------------------------------------------------------------------

impl InboxStore for SqliteStore {
    async fn append_push(&self, push: &NewPush) -> Result<Appended, StoreError> {
        // Through the appender: pushes arriving together share one commit.
        let payload = payload_text(push)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lost = || StoreError::Query {
            location: self.location().to_owned(),
            action: "storing a push in the inbox",
            reason: "the store's inbox writer has stopped (is the store closed?)".to_owned(),
        };
        self.appends()
            .send(AppendJob {
                push: push.clone(),
                payload,
                reply,
            })
            .map_err(|_| lost())?;
        answer.await.unwrap_or_else(|_| Err(lost()))
    }

    async fn claim_pushes(
        &self,
        scheme: &str,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let at = ms(now());
        let sql = format!(
            "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 WHERE id IN ( \
               SELECT i.id FROM inbox i WHERE i.scheme = ? AND i.status = 'pending' AND i.available_at <= ? \
               AND (i.lease_until IS NULL OR i.lease_until < ?) \
               AND NOT EXISTS (SELECT 1 FROM inbox e WHERE e.scheme = i.scheme AND e.business_key = i.business_key \
                 AND e.id < i.id AND e.status = 'pending' AND (e.lease_until >= ? OR e.available_at > ?)) \
               ORDER BY i.id LIMIT ?) RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(ms(lease_until))
            .bind(scheme)
            .bind(at)
            .bind(at)
            .bind(at)
            .bind(at)
            .bind(limit)
            .fetch_all(self.writer())
            .await
            .map_err(self.failed("claiming pushes from the inbox"))?;
        let mut claimed = rows
            .into_iter()
            .map(|row| decode_row!(row, bool))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| self.corrupt_row("claiming pushes from the inbox", detail))?;
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    async fn finish_pushes(&self, worker: &str, outcomes: &[PushOutcome]) -> Result<u64, StoreError> {
        let mut tx = self
            .writer()
            .begin()
            .await
            .map_err(self.failed("settling inbox rows"))?;
        let at = ms(now());
        let mut changed = 0;
        for outcome in outcomes {
            let (status, finished, available) = match (&outcome.error, outcome.retry_at) {
                (None, _) => ("done", Some(at), None),
                (Some(_), Some(retry)) => ("pending", None, Some(ms(retry))),
                (Some(_), None) => ("failed", Some(at), None),
            };
            let done = sqlx::query(
                "UPDATE inbox SET status = ?, finished_at = ?, available_at = COALESCE(?, available_at), \
                 last_error = ?, claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?",
            )
            .bind(status)
            .bind(finished)
            .bind(available)
            .bind(&outcome.error)
            .bind(outcome.id)
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(self.failed("settling inbox rows"))?;
            changed += done.rows_affected();
        }
        tx.commit().await.map_err(self.failed("settling inbox rows"))?;
        Ok(changed)
    }

    async fn list_pushes(
        &self,
        scheme: Option<&str>,
        status: Option<PushStatus>,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM inbox WHERE (? IS NULL OR scheme = ?) AND (? IS NULL OR status = ?) \
             ORDER BY id DESC LIMIT ?"
        );
        let status = status.map(PushStatus::as_str);
        let rows = sqlx::query(&sql)
            .bind(scheme)
            .bind(scheme)
            .bind(status)
            .bind(status)
            .bind(limit)
            .fetch_all(self.readers())
            .await
            .map_err(self.failed("listing the inbox"))?;
        rows.into_iter()
            .map(|row| decode_row!(row, bool))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| self.corrupt_row("listing the inbox", detail))
    }

    async fn push(&self, id: i64) -> Result<Option<InboxRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM inbox WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.readers())
            .await
            .map_err(self.failed("reading an inbox row"))?;
        row.map(|row| decode_row!(row, bool))
            .transpose()
            .map_err(|detail| self.corrupt_row("reading an inbox row", detail))
    }

    async fn replay_pushes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut changed = 0;
        for id in ids {
            let done = sqlx::query(
                "UPDATE inbox SET status = 'pending', available_at = ?, claimed_by = NULL, lease_until = NULL, \
                 finished_at = NULL WHERE id = ?",
            )
            .bind(ms(now()))
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(self.failed("replaying inbox rows"))?;
            changed += done.rows_affected();
        }
        Ok(changed)
    }

    async fn purge_pushes(
        &self,
        scheme: Option<&str>,
        status: PushStatus,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        refuse_pending_purge(status)?;
        let done = sqlx::query("DELETE FROM inbox WHERE (? IS NULL OR scheme = ?) AND status = ? AND received_at < ?")
            .bind(scheme)
            .bind(scheme)
            .bind(status.as_str())
            .bind(ms(before))
            .execute(self.writer())
            .await
            .map_err(self.failed("purging the inbox"))?;
        Ok(done.rows_affected())
    }

    async fn inbox_depth(&self, scheme: Option<&str>) -> Result<InboxDepth, StoreError> {
        let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(received_at) FROM inbox WHERE status = 'pending' AND (? IS NULL OR scheme = ?)",
        )
        .bind(scheme)
        .bind(scheme)
        .fetch_one(self.readers())
        .await
        .map_err(self.failed("counting pending pushes"))?;
        Ok(InboxDepth {
            pending,
            oldest: oldest.map(from_ms),
        })
    }
}

// ---- PostgreSQL ----------------------------------------------------------------------

impl InboxStore for PostgresStore {
    async fn append_push(&self, push: &NewPush) -> Result<Appended, StoreError> {
        let payload = payload_text(push)?;
        let at = ms(now());
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO inbox (scheme, dedupe_key, business_key, cancel, received_as, payload, status, attempts, \
             received_at, available_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
             ON CONFLICT (scheme, dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&push.scheme)
        .bind(&push.dedupe_key)
        .bind(&push.business_key)
        .bind(push.cancel)
        .bind(&push.received_as)
        .bind(payload)
        .bind(at)
        .fetch_optional(self.pool())
        .await
        .map_err(self.failed("storing a push in the inbox"))?;
        if let Some(id) = inserted {
            return Ok(Appended { id, duplicate: false });
        }
        let id = sqlx::query_scalar::<_, i64>("SELECT id FROM inbox WHERE scheme = $1 AND dedupe_key = $2")
            .bind(&push.scheme)
            .bind(&push.dedupe_key)
            .fetch_one(self.pool())
            .await
            .map_err(self.failed("finding a repeated push in the inbox"))?;
        Ok(Appended { id, duplicate: true })
    }

    async fn claim_pushes(
        &self,
        scheme: &str,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let sql = format!(
            "UPDATE inbox SET claimed_by = $1, lease_until = $2, attempts = attempts + 1 WHERE id IN ( \
               SELECT i.id FROM inbox i WHERE i.scheme = $3 AND i.status = 'pending' AND i.available_at <= $4 \
               AND (i.lease_until IS NULL OR i.lease_until < $4) \
               AND NOT EXISTS (SELECT 1 FROM inbox e WHERE e.scheme = i.scheme AND e.business_key = i.business_key \
                 AND e.id < i.id AND e.status = 'pending' AND (e.lease_until >= $4 OR e.available_at > $4)) \
               ORDER BY i.id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        );
        // Claims of one scheme take turns across hosts: otherwise a host could skip a key's
        // earlier row while another host is locking it, and claim the later one out of order.
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(self.failed("claiming pushes from the inbox"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ferry-inbox-claim:' || $1))")
            .bind(scheme)
            .execute(&mut *tx)
            .await
            .map_err(self.failed("claiming pushes from the inbox"))?;
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(ms(lease_until))
            .bind(scheme)
            .bind(ms(now()))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.failed("claiming pushes from the inbox"))?;
        tx.commit()
            .await
            .map_err(self.failed("claiming pushes from the inbox"))?;
        let mut claimed = rows
            .into_iter()
            .map(|row| decode_row!(row, bool))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| self.corrupt_row("claiming pushes from the inbox", detail))?;
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    async fn finish_pushes(&self, worker: &str, outcomes: &[PushOutcome]) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await.map_err(self.failed("settling inbox rows"))?;
        let at = ms(now());
        let mut changed = 0;
        for outcome in outcomes {
            let (status, finished, available) = match (&outcome.error, outcome.retry_at) {
                (None, _) => ("done", Some(at), None),
                (Some(_), Some(retry)) => ("pending", None, Some(ms(retry))),
                (Some(_), None) => ("failed", Some(at), None),
            };
            let done = sqlx::query(
                "UPDATE inbox SET status = $1, finished_at = $2, available_at = COALESCE($3, available_at), \
                 last_error = $4, claimed_by = NULL, lease_until = NULL WHERE id = $5 AND claimed_by = $6",
            )
            .bind(status)
            .bind(finished)
            .bind(available)
            .bind(&outcome.error)
            .bind(outcome.id)
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(self.failed("settling inbox rows"))?;
            changed += done.rows_affected();
        }
        tx.commit().await.map_err(self.failed("settling inbox rows"))?;
        Ok(changed)
    }

    async fn list_pushes(
        &self,
        scheme: Option<&str>,
        status: Option<PushStatus>,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM inbox WHERE ($1::text IS NULL OR scheme = $1) AND ($2::text IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(scheme)
            .bind(status.map(PushStatus::as_str))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(self.failed("listing the inbox"))?;
        rows.into_iter()
            .map(|row| decode_row!(row, bool))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| self.corrupt_row("listing the inbox", detail))
    }

    async fn push(&self, id: i64) -> Result<Option<InboxRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM inbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(self.failed("reading an inbox row"))?;
        row.map(|row| decode_row!(row, bool))
            .transpose()
            .map_err(|detail| self.corrupt_row("reading an inbox row", detail))
    }

    async fn replay_pushes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE inbox SET status = 'pending', available_at = $1, claimed_by = NULL, lease_until = NULL, \
             finished_at = NULL WHERE id = ANY($2)",
        )
        .bind(ms(now()))
        .bind(ids)
        .execute(self.pool())
        .await
        .map_err(self.failed("replaying inbox rows"))?;
        Ok(done.rows_affected())
    }

    async fn purge_pushes(
        &self,
        scheme: Option<&str>,
        status: PushStatus,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        refuse_pending_purge(status)?;
        let done = sqlx::query(
            "DELETE FROM inbox WHERE ($1::text IS NULL OR scheme = $1) AND status = $2 AND received_at < $3",
        )
        .bind(scheme)
        .bind(status.as_str())
        .bind(ms(before))
        .execute(self.pool())
        .await
        .map_err(self.failed("purging the inbox"))?;
        Ok(done.rows_affected())
    }

    async fn inbox_depth(&self, scheme: Option<&str>) -> Result<InboxDepth, StoreError> {
        let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(received_at) FROM inbox WHERE status = 'pending' AND ($1::text IS NULL OR scheme = $1)",
        )
        .bind(scheme)
        .fetch_one(self.pool())
        .await
        .map_err(self.failed("counting pending pushes"))?;
        Ok(InboxDepth {
            pending,
            oldest: oldest.map(from_ms),
        })
    }
}

// ---- memory --------------------------------------------------------------------------

/// The memory backend's inbox: rows by id.
#[derive(Default)]
pub(super) struct MemoryInbox {
    rows: std::collections::BTreeMap<i64, InboxRow>,
    last_id: i64,
}

impl MemoryInbox {
    /// Whether an earlier row of `row`'s key holds it back.
    fn held_back(&self, row: &InboxRow, at: DateTime<Utc>) -> bool {
        let Some(key) = &row.business_key else { return false };
        self.rows.range(..row.id).any(|(_, e)| {
            e.scheme == row.scheme
                && e.business_key.as_ref() == Some(key)
                && e.status == PushStatus::Pending
                && (e.lease_until.is_some_and(|l| l >= at) || e.available_at > at)
        })
    }
}

impl InboxStore for MemoryStore {
    async fn append_push(&self, push: &NewPush) -> Result<Appended, StoreError> {
        let mut inbox = self.inbox();
        if let Some(row) = inbox
            .rows
            .values()
            .find(|r| r.scheme == push.scheme && r.dedupe_key == push.dedupe_key)
        {
            return Ok(Appended {
                id: row.id,
                duplicate: true,
            });
        }
        inbox.last_id += 1;
        let id = inbox.last_id;
        let at = super::truncate_to_millis(now());
        inbox.rows.insert(
            id,
            InboxRow {
                id,
                scheme: push.scheme.clone(),
                dedupe_key: push.dedupe_key.clone(),
                business_key: push.business_key.clone(),
                cancel: push.cancel,
                received_as: push.received_as.clone(),
                payload: push.payload.clone(),
                status: PushStatus::Pending,
                attempts: 0,
                received_at: at,
                available_at: at,
                claimed_by: None,
                lease_until: None,
                finished_at: None,
                last_error: None,
            },
        );
        Ok(Appended { id, duplicate: false })
    }

    async fn claim_pushes(
        &self,
        scheme: &str,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let mut inbox = self.inbox();
        let at = super::truncate_to_millis(now());
        let chosen: Vec<i64> = inbox
            .rows
            .values()
            .filter(|r| {
                r.scheme == scheme
                    && r.status == PushStatus::Pending
                    && r.available_at <= at
                    && r.lease_until.is_none_or(|l| l < at)
                    && !inbox.held_back(r, at)
            })
            .take(limit as usize)
            .map(|r| r.id)
            .collect();
        let mut claimed = Vec::new();
        for id in chosen {
            if let Some(row) = inbox.rows.get_mut(&id) {
                row.claimed_by = Some(worker.to_string());
                row.lease_until = Some(super::truncate_to_millis(lease_until));
                row.attempts += 1;
                claimed.push(row.clone());
            }
        }
        Ok(claimed)
    }

    async fn finish_pushes(&self, worker: &str, outcomes: &[PushOutcome]) -> Result<u64, StoreError> {
        let mut inbox = self.inbox();
        let at = super::truncate_to_millis(now());
        let mut changed = 0;
        for outcome in outcomes {
            let Some(row) = inbox.rows.get_mut(&outcome.id) else {
                continue;
            };
            if row.claimed_by.as_deref() != Some(worker) {
                continue;
            }
            match (&outcome.error, outcome.retry_at) {
                (None, _) => {
                    row.status = PushStatus::Done;
                    row.finished_at = Some(at);
                }
                (Some(_), Some(retry)) => {
                    row.status = PushStatus::Pending;
                    row.finished_at = None;
                    row.available_at = super::truncate_to_millis(retry);
                }
                (Some(_), None) => {
                    row.status = PushStatus::Failed;
                    row.finished_at = Some(at);
                }
            }
            row.last_error = outcome.error.clone();
            row.claimed_by = None;
            row.lease_until = None;
            changed += 1;
        }
        Ok(changed)
    }

    async fn list_pushes(
        &self,
        scheme: Option<&str>,
        status: Option<PushStatus>,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        check_limit(limit)?;
        let inbox = self.inbox();
        Ok(inbox
            .rows
            .values()
            .rev()
            .filter(|r| scheme.is_none_or(|s| r.scheme == s) && status.is_none_or(|s| r.status == s))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn push(&self, id: i64) -> Result<Option<InboxRow>, StoreError> {
        Ok(self.inbox().rows.get(&id).cloned())
    }

    async fn replay_pushes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut inbox = self.inbox();
        let at = super::truncate_to_millis(now());
        let mut changed = 0;
        for id in ids {
            if let Some(row) = inbox.rows.get_mut(id) {
                row.status = PushStatus::Pending;
                row.available_at = at;
                row.claimed_by = None;
                row.lease_until = None;
                row.finished_at = None;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn purge_pushes(
        &self,
        scheme: Option<&str>,
        status: PushStatus,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        refuse_pending_purge(status)?;
        let mut inbox = self.inbox();
        let count = inbox.rows.len();
        inbox
            .rows
            .retain(|_, r| !(scheme.is_none_or(|s| r.scheme == s) && r.status == status && r.received_at < before));
        Ok((count - inbox.rows.len()) as u64)
    }

    async fn inbox_depth(&self, scheme: Option<&str>) -> Result<InboxDepth, StoreError> {
        let inbox = self.inbox();
        let pending = inbox
            .rows
            .values()
            .filter(|r| r.status == PushStatus::Pending && scheme.is_none_or(|s| r.scheme == s));
        let (mut count, mut oldest) = (0, None);
        for row in pending {
            count += 1;
            oldest = Some(oldest.map_or(row.received_at, |o: DateTime<Utc>| o.min(row.received_at)));
        }
        Ok(InboxDepth { pending: count, oldest })
    }
}

// ---- the engine's store ----------------------------------------------------------------

macro_rules! dispatch_inbox {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Memory($backend) => $call,
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl InboxStore for Store {
    async fn append_push(&self, push: &NewPush) -> Result<Appended, StoreError> {
        dispatch_inbox!(self, s => s.append_push(push).await)
    }
    async fn claim_pushes(
        &self,
        scheme: &str,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboxRow>, StoreError> {
        dispatch_inbox!(self, s => s.claim_pushes(scheme, worker, limit, lease_until).await)
    }
    async fn finish_pushes(&self, worker: &str, outcomes: &[PushOutcome]) -> Result<u64, StoreError> {
        dispatch_inbox!(self, s => s.finish_pushes(worker, outcomes).await)
    }
    async fn list_pushes(
        &self,
        scheme: Option<&str>,
        status: Option<PushStatus>,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        dispatch_inbox!(self, s => s.list_pushes(scheme, status, limit).await)
    }
    async fn push(&self, id: i64) -> Result<Option<InboxRow>, StoreError> {
        dispatch_inbox!(self, s => s.push(id).await)
    }
    async fn replay_pushes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        dispatch_inbox!(self, s => s.replay_pushes(ids).await)
    }
    async fn purge_pushes(
        &self,
        scheme: Option<&str>,
        status: PushStatus,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        dispatch_inbox!(self, s => s.purge_pushes(scheme, status, before).await)
    }
    async fn inbox_depth(&self, scheme: Option<&str>) -> Result<InboxDepth, StoreError> {
        dispatch_inbox!(self, s => s.inbox_depth(scheme).await)
    }
}

/// One push waiting for the SQLite inbox appender, and where its outcome goes.
pub(super) struct AppendJob {
    push: NewPush,
    payload: String,
    reply: tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
}

/// Most pushes one inbox transaction takes.
const MAX_APPENDS: usize = 256;

/// Commits the pushes queued at the same moment in one transaction and answers each (its
/// row id, or the original row's for a repeat) only after the commit; if the transaction
/// fails, every push of it gets the error and none is acknowledged.
pub(super) async fn appender(
    writer: sqlx::SqlitePool,
    location: String,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<AppendJob>,
) {
    let mut jobs: Vec<AppendJob> = Vec::with_capacity(MAX_APPENDS);
    while let Some(first) = queue.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_APPENDS {
            match queue.try_recv() {
                Ok(next) => jobs.push(next),
                Err(_) => break,
            }
        }
        match append_all(&writer, &jobs).await {
            Ok(appended) => {
                for (job, outcome) in jobs.drain(..).zip(appended) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                let (busy, reason) = super::sqlite::describe_sqlx(&err);
                for job in jobs.drain(..) {
                    let error =
                        StoreError::statement(location.clone(), "storing a push in the inbox", busy, reason.clone());
                    let _ = job.reply.send(Err(error));
                }
            }
        }
    }
}

async fn append_all(writer: &sqlx::SqlitePool, jobs: &[AppendJob]) -> Result<Vec<Appended>, sqlx::Error> {
    let mut tx = writer.begin().await?;
    let at = ms(now());
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let push = &job.push;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO inbox (scheme, dedupe_key, business_key, cancel, received_as, payload, status, attempts, \
             received_at, available_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
             ON CONFLICT (scheme, dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&push.scheme)
        .bind(&push.dedupe_key)
        .bind(&push.business_key)
        .bind(push.cancel)
        .bind(&push.received_as)
        .bind(&job.payload)
        .bind(at)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let appended = match inserted {
            Some(id) => Appended { id, duplicate: false },
            None => {
                let id = sqlx::query_scalar::<_, i64>("SELECT id FROM inbox WHERE scheme = ? AND dedupe_key = ?")
                    .bind(&push.scheme)
                    .bind(&push.dedupe_key)
                    .fetch_one(&mut *tx)
                    .await?;
                Appended { id, duplicate: true }
            }
        };
        out.push(appended);
    }
    tx.commit().await?;
    Ok(out)
}
