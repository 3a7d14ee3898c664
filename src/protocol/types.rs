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
