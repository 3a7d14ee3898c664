//! The engine: the only place that wires IO together to run a [`Plan`].
//!
//! Data path: a fetch task reads source pages (windows `in_flight` at a time, their page
//! requests sharing the source connection's `in_flight` slots, pages handed on in window
//! order) and sends them through a bounded channel; the planner computes
//! each record's id and payload hash, groups records into batches, looks their ids up in the
//! mapping store (one query per batch) and decides create, update or unchanged; writer tasks
//! (up to the target connection's `in_flight`) render rows, send them, split the answer per
//! row and commit mappings and failures in one store transaction per batch.
//!
//! Promises:
//! - Memory depends on page size, batch size and in-flight limits, never on record count.
//! - A record id is never in two batches in flight at once, so one run cannot create a
//!   record twice; a record whose payload hash equals its last successful sync is skipped.
//! - A window's checkpoint moves only after every record in it was written or parked in the
//!   failure ledger, and windows are checkpointed in order.
//! - A run that aborts (bad answer, guard, store failure) finishes the writes in flight,
//!   commits them, and leaves the checkpoint where it was.
//! - Before a batch is sent its write intents are committed; a run starts by settling the
//!   intents an earlier run left behind and by replaying the failure ledger ([`recover`]).
//!   A create whose answer was lost is looked up by business key before it is sent again.
//! - `--dry-run` renders and prints the requests it would send (secrets masked) and writes
//!   nothing to the target or the store.
//! - Records deleted at the source travel the same path as records, in the order the
//!   source reported them (a page's records first, then its deleted ids), so of two events
//!   of one id in a run the later wins: a deletion replaces a pending write of the id in
//!   its batch, a record read after its deletion replaces the deletion, and batches that
//!   share an id run one after the other. What a deletion does is [`delete`]'s business.
//! - Each source page's `incremental.field` is checked against the window it was read in
//!   (see [`crate::window::PageTimes`]): records outside it, in the future or without the
//!   field, and pages older than the resumed checkpoint are counted in the [`Summary`] and
//!   the first of each kind is logged as a warning; they still go through. Only a first
//!   page whose every record lies outside its window stops the run (as one whose every
//!   record lacks a field does), before anything is sent.
//! - [`check`] (`ferry check`) reads first pages with the same fetch code and renders their
//!   records as a run would, sending nothing to the target and writing no store.
//! - Each counter of the [`Summary`] means one thing: `requests` are target requests,
//!   `source_requests` source requests (retries and per-record detail requests included),
//!   `windows` the windows read to their end. Every source request is logged at debug
//!   level (and handed to [`RunOptions::source_sink`]) with its window, page and record count.
//! - Each record written or failed leaves a [`crate::store::RecordEvent`] (its window, the
//!   rendered row and the target's answer, secrets masked) for `ferry explain`, the newest
//!   `keep_events` per record; a record found unchanged leaves none, so a run that changes
//!   nothing writes nothing per record.
//! - A run whose first batch could not reach the target at all (refused, unresolved, not
//!   connected) stops there rather than failing every record: the batch's rows are in the
//!   ledger, nothing was written, and the summary says `unreachable` (exit code 75), as it
//!   does when the source cannot be reached before anything was written.

//!
//! Files, top down: [`run`](self::run) (a run from start to end) uses [`context`] (its shared
//! state), [`plan`] (identify records and decide create or update), [`guard`] (checks on
//! what the source answered), `fetch` (source pages), `write` (target batches), `lookup`
//! (finding target records by key), `relock` (rows the target locks), `delete`, `details`
//! (detail row ids), `send` (one write request and its per-row outcomes), `writeback` (the
//! target id written back to the source after a create), `byid` (reading records by id for
//! `--ids` and `explain --fetch`) and `call` (vendor calls and logins). `recover` settles what an earlier
//! run left; `check` is `ferry check`. [`options`] and [`summary`] are what a run is
//! given and gives back.

mod byid;
mod call;
mod check;
mod context;
mod delete;
mod details;
mod fetch;
pub mod field_maps;
mod guard;
mod lookup;
mod options;
mod plan;
mod recover;
mod relock;
mod run;
mod send;
mod summary;
mod write;
mod writeback;

pub use byid::{check_readable_by_id, fetch_record, FetchedRecord};
pub use check::{check, CheckOptions, CheckReport, Problem, TimesReport};
pub use context::CHECKPOINT_KEY;
pub use options::{
    DryRunSink, PlannedRequest, Progress, Pushed, ReadPosition, Replay, RunOptions, SourceRequest, SourceSink,
    DEFAULT_KEEP_EVENTS,
};
pub use run::run;
pub use summary::{Outcome, Summary};
