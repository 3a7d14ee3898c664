//! Types every connector shares (pure, no IO): how an answer is judged, how a batch write is
//! split per row, how a vendor pages and logs in. Vendor folders speak in these.

/// What a vendor's envelope says about one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The call succeeded.
    Ok,
    /// The vendor asked us to slow down; retry after a pause.
    Throttled(String),
    /// The session or token is no longer valid; log in again and retry once.
    SessionExpired(String),
    /// The call failed for a reason retrying will not fix. `code` is the vendor's own.
    Failed { code: String, message: String },
}

/// The `class` of a failed row whose write may nonetheless have happened (the answer was
/// lost, garbled or a server error): it must be checked, never blindly sent again.
pub const UNKNOWN_OUTCOME: &str = "unknown_outcome";

/// The `class` of a row the target answered for, in an answer Ferry cannot match to its
/// rows (ids that do not add up, a package the answer does not mention, no envelope). The
/// write may well have happened, so it is settled like [`UNKNOWN_OUTCOME`]; and since the
/// scheme's response paths or the vendor's answers are not what Ferry expects, the run
/// stops before sending more.
pub const UNMATCHED_ANSWER: &str = "unmatched_answer";

/// The `class` of a row whose request the target asked to repeat later without acting on
/// it (the operation's `response.retry` was true): safe to send again.
pub const RETRY_LATER: &str = "retry_later";

/// The result of writing one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// The target took the row. `details` holds the ids of its detail rows when the answer
    /// gave them (see [`DetailIds`]).
    Written {
        target_id: Option<String>,
        details: Option<DetailIds>,
    },
    Failed {
        message: String,
        class: &'static str,
    },
}

impl RowOutcome {
    /// A written row without detail row ids.
    pub fn written(target_id: Option<String>) -> RowOutcome {
        RowOutcome::Written {
            target_id,
            details: None,
        }
    }
}

/// A `for_each` list of the written row whose rows the target identifies by id: where it
/// sits in the rendered row and which field of its rows holds the target's row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailList {
    /// Field names from the row's top down to the list (e.g. `["FSaleOrderEntry"]`, or
    /// `["detailFieldVals", "SaleOrderEntryObj"]`).
    pub path: Vec<String>,
    /// The field of a detail row holding the target's id of that row (e.g. `FEntryID`).
    pub id_field: String,
}

impl DetailList {
    /// The list's path as stored in mappings (`detailFieldVals.SaleOrderEntryObj`).
    pub fn key(&self) -> String {
        self.path.join(".")
    }

    /// The list's own name (its path's last field), which is how targets name it in answers.
    pub fn name(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }
}

/// The target's ids of a written row's detail rows, by [`DetailList::key`]: all rows the
/// target reports for that list after the write, in the target's order. The engine matches
/// them to the rows it sent.
pub type DetailIds = std::collections::BTreeMap<String, Vec<serde_json::Value>>;

/// A request ready for the wire, as a vendor's pure request builder produces it.
/// `body` holds the exact bytes that were signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    /// `GET`, `POST`, …
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// How a vendor pages one of its list apis when the scheme leaves `pagination` out: the
/// scheme's own paging styles (`page_number`, `offset`, `cursor`), as data a vendor
/// folder can write down as a constant. The validator turns it into the scheme's paging
/// plan, so a vendor's default pages exactly like the same style written in a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingStyle {
    /// A page number counting up by one from `start`.
    PageNumber,
    /// A row offset counting up by the page size from `start`.
    Offset,
    /// Each answer names where the next request starts: the token at the JSONPath
    /// `cursor`, sent while the flag at `has_more` is true.
    Cursor {
        cursor: &'static str,
        has_more: &'static str,
    },
}

/// When a paginated read stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// Stop at the first page with no records.
    EmptyPage,
    /// Stop at the first page with fewer records than `size`.
    ShortPage,
    /// Stop once `total` records (read from the response) have been fetched.
    Total,
    /// Stop when the `has_more` flag is false.
    HasMore,
}

/// Paging a vendor applies to an api when the scheme does not describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingDefaults {
    pub style: PagingStyle,
    /// The first page number (or offset).
    pub start: i64,
    /// Rows asked for per page.
    pub size: u64,
    /// The largest page the vendor accepts, when known or assumed.
    pub max_size: Option<u64>,
    /// JSONPath of the total row count in an answer.
    pub total_path: Option<&'static str>,
    /// The parameter carrying the page number (or offset, or cursor).
    pub number_param: &'static str,
    /// The parameter carrying the page size.
    pub size_param: &'static str,
    /// When a numbered read stops; `None`: once `total_path`'s count has arrived when
    /// there is one, else at a short page. (Cursor styles stop on their `has_more` flag.)
    pub stop: Option<StopRule>,
}

/// Where one page of a read starts, as a vendor writes it into its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePosition {
    pub number: i64,
    pub offset: i64,
    pub size: Option<u64>,
    /// The cursor the previous answer named (none on a window's first page).
    pub cursor: Option<String>,
}

impl PagePosition {
    /// The page number or offset (as `paging` counts) and the page size; `None` for a
    /// cursor style.
    pub fn numbered(&self, paging: &PagingDefaults) -> Option<(i64, u64)> {
        let position = match paging.style {
            PagingStyle::Offset => self.offset,
            PagingStyle::PageNumber => self.number,
            PagingStyle::Cursor { .. } => return None,
        };
        Some((position, self.size.unwrap_or(paging.size)))
    }
}

/// An answer as a login step reads it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    /// Every `Set-Cookie` header of the answer.
    pub set_cookies: Vec<String>,
}

/// A logged-in session or token: opaque to everyone but the protocol that made it.
#[derive(Clone)]
pub struct Session {
    value: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    /// When to log in again before the vendor says the session expired (none: only then).
    pub renew_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Session {
    pub fn new<T: std::any::Any + Send + Sync>(value: T, renew_at: Option<chrono::DateTime<chrono::Utc>>) -> Session {
        Session {
            value: std::sync::Arc::new(value),
            renew_at,
        }
    }

    /// The protocol's own session value.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value holds credentials.
        f.debug_struct("Session")
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// What a login does next (see [`super::Protocol::login`]).
#[derive(Debug)]
pub enum LoginStep {
    /// Send this request; its answer is added to the login's answers.
    Send(WireRequest),
    /// Logged in.
    Done(Session),
}

/// One vendor call, as the engine hands it to [`super::Protocol::build`].
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub base_url: &'a str,
    /// The vendor operation (`BatchSave`, `gy.erp.shop.get`, …).
    pub api: &'a str,
    /// Its business parameters.
    pub params: &'a serde_json::Value,
    pub session: Option<&'a Session>,
    pub now: chrono::DateTime<chrono::Utc>,
    /// A fresh random number for nonces and trace ids.
    pub nonce: u128,
    /// A write (jdy builds reads and writes to one path differently).
    pub write: bool,
}

/// What a write's parameters need from the engine (see [`super::Protocol::prepare_write`]).
#[derive(Debug, Clone, Copy)]
pub struct WriteTargets<'a> {
    /// The mapped target id of each row (updates).
    pub target_ids: &'a [Option<&'a str>],
    pub is_update: bool,
    /// The detail lists whose row ids the scheme wants back.
    pub lists: &'a [DetailList],
}
