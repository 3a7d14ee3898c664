//! Types every connector shares (pure, no IO): how an answer is judged and how a batch
//! write is split per row. Vendor folders classify their envelopes into these.

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
    Written { target_id: Option<String> },
    Failed { message: String, class: &'static str },
}

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
