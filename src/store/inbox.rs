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

use super::sql::{detail, Arg, On, SqlRow, SqlStore};
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

/// Reads a row in [`COLUMNS`] order from either SQL backend.
fn decode_push(row: &impl SqlRow) -> Result<InboxRow, String> {
    let payload = row.text(6).map_err(detail)?;
    Ok(InboxRow {
        id: row.int(0).map_err(detail)?,
        scheme: row.text(1).map_err(detail)?,
        dedupe_key: row.text(2).map_err(detail)?,
        business_key: row.opt_text(3).map_err(detail)?,
        cancel: row.boolean(4).map_err(detail)?,
        received_as: row.text(5).map_err(detail)?,
        payload: serde_json::from_str(&payload).map_err(|e| format!("payload: {e}"))?,
        status: row
            .text(7)
            .map_err(detail)?
            .parse()
            .map_err(|e: ParseStatusError| e.to_string())?,
        attempts: row.int(8).map_err(detail)?,
        received_at: from_ms(row.int(9).map_err(detail)?),
        available_at: from_ms(row.int(10).map_err(detail)?),
        claimed_by: row.opt_text(11).map_err(detail)?,
        lease_until: row.opt_int(12).map_err(detail)?.map(from_ms),
        finished_at: row.opt_int(13).map_err(detail)?.map(from_ms),
        last_error: row.opt_text(14).map_err(detail)?,
    })
}

/// The rows a claim returned, oldest first.
fn claimed_rows<S: SqlStore>(store: &S, rows: &[S::Row]) -> Result<Vec<InboxRow>, StoreError> {
    let mut claimed = store.decode_all("claiming pushes from the inbox", rows, decode_push)?;
    claimed.sort_by_key(|row| row.id);
    Ok(claimed)
}

/// `AND scheme = ?` when a scheme is given (its argument goes to `args`).
fn scheme_filter<'a>(scheme: Option<&'a str>, args: &mut Vec<Arg<'a>>) -> &'static str {
    match scheme {
        Some(scheme) => {
            args.push(scheme.into());
            " AND scheme = ?"
        }
        None => "",
    }
}

/// The inbox methods whose SQL differs between the backends only in placeholders,
/// for the SQLite and Postgres impls of [`InboxStore`] (through [`SqlStore`]).
macro_rules! shared_inbox_methods {
    () => {
        async fn finish_pushes(&self, worker: &str, outcomes: &[PushOutcome]) -> Result<u64, StoreError> {
            const ACTION: &str = "settling inbox rows";
            let mut tx = self.begin_write().await.map_err(self.failed(ACTION))?;
            let at = ms(now());
            let mut changed = 0;
            // Rows that went through settle together, a statement per chunk of ids.
            let done: Vec<i64> = outcomes
                .iter()
                .filter(|o| o.error.is_none())
                .map(|o| o.id)
                .collect();
            for chunk in done.chunks(FINISH_ROWS_PER_STATEMENT) {
                let mut args: Vec<Arg<'_>> = vec![at.into(), worker.into()];
                args.extend(chunk.iter().map(|&id| Arg::from(id)));
                let sql = format!(
                    "UPDATE inbox SET status = 'done', finished_at = ?, last_error = NULL, claimed_by = NULL, \
                     lease_until = NULL WHERE claimed_by = ? AND id IN ({})",
                    vec!["?"; chunk.len()].join(", ")
                );
                changed += Self::execute_in(&mut tx, &sql, &args)
                    .await
                    .map_err(self.failed(ACTION))?;
            }
            for outcome in outcomes.iter().filter(|o| o.error.is_some()) {
                let (status, finished, available) = match outcome.retry_at {
                    Some(retry) => ("pending", None, Some(ms(retry))),
                    None => ("failed", Some(at), None),
                };
                let args = [
                    status.into(),
                    finished.into(),
                    available.into(),
                    outcome.error.as_deref().into(),
                    outcome.id.into(),
                    worker.into(),
                ];
                let sql = "UPDATE inbox SET status = ?, finished_at = ?, available_at = COALESCE(?, available_at), \
                     last_error = ?, claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?";
                changed += Self::execute_in(&mut tx, sql, &args)
                    .await
                    .map_err(self.failed(ACTION))?;
            }
            Self::commit(tx).await.map_err(self.failed(ACTION))?;
            Ok(changed)
        }

        async fn list_pushes(
            &self,
            scheme: Option<&str>,
            status: Option<PushStatus>,
            limit: i64,
        ) -> Result<Vec<InboxRow>, StoreError> {
            const ACTION: &str = "listing the inbox";
            check_limit(limit)?;
            let mut args = Vec::with_capacity(3);
            let mut sql = format!(
                "SELECT {COLUMNS} FROM inbox WHERE 1 = 1{}",
                scheme_filter(scheme, &mut args)
            );
            if let Some(status) = status {
                sql.push_str(" AND status = ?");
                args.push(status.as_str().into());
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(limit.into());
            let rows = self
                .fetch_all(On::Read, &sql, &args)
                .await
                .map_err(self.failed(ACTION))?;
            self.decode_all(ACTION, &rows, decode_push)
        }

        async fn push(&self, id: i64) -> Result<Option<InboxRow>, StoreError> {
            const ACTION: &str = "reading an inbox row";
            let sql = format!("SELECT {COLUMNS} FROM inbox WHERE id = ?");
            let row = self
                .fetch_optional(On::Read, &sql, &[id.into()])
                .await
                .map_err(self.failed(ACTION))?;
            row.map(|row| decode_push(&row))
                .transpose()
                .map_err(self.corrupt(ACTION))
        }

        async fn purge_pushes(
            &self,
            scheme: Option<&str>,
            status: PushStatus,
            before: DateTime<Utc>,
        ) -> Result<u64, StoreError> {
            refuse_pending_purge(status)?;
            let mut args = vec![status.as_str().into(), ms(before).into()];
            let sql = format!(
                "DELETE FROM inbox WHERE status = ? AND received_at < ?{}",
                scheme_filter(scheme, &mut args)
            );
            self.execute(&sql, &args)
                .await
                .map_err(self.failed("purging the inbox"))
        }

        async fn inbox_depth(&self, scheme: Option<&str>) -> Result<InboxDepth, StoreError> {
            let mut args: Vec<Arg<'_>> = Vec::with_capacity(2);
            // With a scheme both halves read the (scheme, status, id) index alone: rows are
            // appended in time order, so the oldest pending row is the first by id.
            let sql = match scheme {
                Some(scheme) => {
                    args.push(scheme.into());
                    args.push(scheme.into());
                    "SELECT COUNT(*), (SELECT received_at FROM inbox WHERE scheme = ? AND status = 'pending' \
                     ORDER BY id LIMIT 1) FROM inbox WHERE scheme = ? AND status = 'pending'"
                        .to_string()
                }
                None => "SELECT COUNT(*), MIN(received_at) FROM inbox WHERE status = 'pending'".to_string(),
            };
            let row = self
                .fetch_one(On::Read, &sql, &args)
                .await
                .and_then(|row| Ok((row.int(0)?, row.opt_int(1)?)))
                .map_err(self.failed("counting pending pushes"))?;
            Ok(InboxDepth {
                pending: row.0,
                oldest: row.1.map(from_ms),
            })
        }
    };
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
                push: PushHead {
                    scheme: push.scheme.clone(),
                    dedupe_key: push.dedupe_key.clone(),
                    business_key: push.business_key.clone(),
                    cancel: push.cancel,
                    received_as: push.received_as.clone(),
                },
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
        claimed_rows(self, &rows)
    }

    shared_inbox_methods!();

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
        claimed_rows(self, &rows)
    }

    shared_inbox_methods!();

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
    /// The push's columns (its payload as `payload` text).
    push: PushHead,
    payload: String,
    reply: tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
}

/// A push's columns other than the payload.
struct PushHead {
    scheme: String,
    dedupe_key: String,
    business_key: Option<String>,
    cancel: bool,
    received_as: String,
}

/// Transactions the appender commits in a row before handing the writer connection back.
const MAX_HELD_BATCHES: usize = 4;

/// Most pushes one inbox transaction takes.
const MAX_APPENDS: usize = 256;

/// Ids per settling `UPDATE … WHERE id IN (…)`.
const FINISH_ROWS_PER_STATEMENT: usize = 500;

/// Rows per multi-row `INSERT` (8 parameters each; SQLite allows 32,766 per statement).
const APPEND_ROWS_PER_STATEMENT: usize = 64;

/// Commits the pushes queued at the same moment in one transaction and answers each (its
/// row id, or the original row's for a repeat) only after the commit; if the transaction
/// fails, every push of it gets the error and none is acknowledged.
///
/// While pushes keep arriving the appender keeps the writer connection for up to
/// [`MAX_HELD_BATCHES`] transactions in a row (handing a connection back to the pool and
/// taking it again costs as much as the insert), then lets the store's other writers in.
pub(super) async fn appender(
    writer: sqlx::SqlitePool,
    location: String,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<AppendJob>,
) {
    let mut jobs: Vec<AppendJob> = Vec::with_capacity(MAX_APPENDS);
    loop {
        // Pushes left over when the connection was handed back go first.
        if jobs.is_empty() {
            match queue.recv().await {
                Some(first) => jobs.push(first),
                None => return,
            }
        }
        let mut connection = match writer.acquire().await {
            Ok(connection) => Some(connection),
            Err(err) => {
                refuse_all(&location, &err, &mut jobs);
                None
            }
        };
        let mut held = 0;
        while let Some(conn) = connection.as_mut() {
            while jobs.len() < MAX_APPENDS {
                match queue.try_recv() {
                    Ok(next) => jobs.push(next),
                    Err(_) => break,
                }
            }
            if jobs.is_empty() || held == MAX_HELD_BATCHES {
                break;
            }
            held += 1;
            match append_all(conn, &jobs).await {
                Ok(appended) => {
                    for (job, outcome) in jobs.drain(..).zip(appended) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(err) => {
                    refuse_all(&location, &err, &mut jobs);
                    break;
                }
            }
            // Give pushes that are on their way a moment to join the next transaction.
            tokio::task::yield_now().await;
        }
    }
}

/// Answers every waiting push with the error that kept its transaction from committing.
fn refuse_all(location: &str, err: &sqlx::Error, jobs: &mut Vec<AppendJob>) {
    let (busy, reason) = super::sqlite::describe_sqlx(err);
    for job in jobs.drain(..) {
        let error = StoreError::statement(location.to_owned(), "storing a push in the inbox", busy, reason.clone());
        let _ = job.reply.send(Err(error));
    }
}

async fn append_all(connection: &mut sqlx::SqliteConnection, jobs: &[AppendJob]) -> Result<Vec<Appended>, sqlx::Error> {
    // One round trip to SQLite's thread for the whole transaction: BEGIN, the inserts (each
    // returning the rows it added), a lookup of every key (finding the rows of repeats),
    // COMMIT. Rows come back as (id, scheme, dedupe_key, added).
    let at = ms(now());
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for chunk in jobs.chunks(APPEND_ROWS_PER_STATEMENT) {
        sql.push_str(
            " INSERT INTO inbox (scheme, dedupe_key, business_key, cancel, received_as, payload, status, attempts, \
             received_at, available_at) VALUES ",
        );
        for n in 0..chunk.len() {
            sql.push_str(if n == 0 { "" } else { ", " });
            sql.push_str("(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)");
        }
        sql.push_str(" ON CONFLICT (scheme, dedupe_key) DO NOTHING RETURNING id, scheme, dedupe_key, 1;");
    }
    for chunk in jobs.chunks(APPEND_ROWS_PER_STATEMENT) {
        sql.push_str(" SELECT id, scheme, dedupe_key, 0 FROM inbox WHERE (scheme, dedupe_key) IN (VALUES ");
        for n in 0..chunk.len() {
            sql.push_str(if n == 0 { "(?, ?)" } else { ", (?, ?)" });
        }
        sql.push_str(");");
    }
    sql.push_str(" COMMIT;");
    // Not cached: the text changes with the batch size, and the writer's statement cache
    // belongs to the engine's statements.
    let mut statement = sqlx::query_as::<_, (i64, String, String, bool)>(&sql).persistent(false);
    for job in jobs {
        let push = &job.push;
        statement = statement
            .bind(&push.scheme)
            .bind(&push.dedupe_key)
            .bind(&push.business_key)
            .bind(push.cancel)
            .bind(&push.received_as)
            .bind(&job.payload)
            .bind(at)
            .bind(at);
    }
    for job in jobs {
        statement = statement.bind(&job.push.scheme).bind(&job.push.dedupe_key);
    }
    let rows = match statement.fetch_all(&mut *connection).await {
        Ok(rows) => rows,
        Err(err) => {
            // Whatever failed, the transaction must not stay open on the shared connection.
            let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
            return Err(err);
        }
    };
    let mut added: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let mut ids: std::collections::HashMap<(&str, &str), i64> = std::collections::HashMap::new();
    for (id, scheme, key, was_added) in &rows {
        let Some(job) = jobs
            .iter()
            .find(|job| &job.push.scheme == scheme && &job.push.dedupe_key == key)
        else {
            continue;
        };
        let job_key = (job.push.scheme.as_str(), job.push.dedupe_key.as_str());
        ids.insert(job_key, *id);
        if *was_added {
            added.insert(job_key);
        }
    }
    jobs.iter()
        .map(|job| {
            let key = (job.push.scheme.as_str(), job.push.dedupe_key.as_str());
            let id = *ids
                .get(&key)
                .ok_or_else(|| sqlx::Error::Protocol(format!("the inbox returned no row for push key {}", key.1)))?;
            // The first push of a key added in this transaction is new; the rest repeat it.
            Ok(Appended {
                id,
                duplicate: !added.remove(&key),
            })
        })
        .collect()
}
