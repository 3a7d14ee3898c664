//! Ferry: a declarative, config-driven integration runner.
//!
//! A YAML *scheme* names a source API, transforms and a target API; Ferry reads the source
//! page by page, transforms each record, writes batches to the target and keeps source-id →
//! target-id mappings, checkpoints and failures in a store (SQLite by default).
//!
//! # Module map (a module imports only from lower layers)
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 0 | [`error`], [`diag`], [`redact`] | the runtime error and its kind; scheme diagnostics; secret masking |
//! | 1 | [`codec`], [`extract`], [`template`] | JSON/XML/form codecs, JSONPath, `<< >>` templates — pure leaves |
//! | 2 | [`scheme`], [`transform`], [`paginate`], [`window`], [`rate`] | the pure domain: load → check → validate → [`scheme::Plan`]; rendering rows; paging, window and token-bucket decisions |
//! | 3 | [`http`], [`protocol`], [`exchange`], [`store`] | IO edges: transport with retries and rate budgets; request building and answer reading per connector; mappings, checkpoints, ledger, write intents, shared budgets, runs, the receive inbox, record events, field mapping tables |
//! | 4 | [`engine`] | runs a plan: the only place IO is wired together |
//! | 5 | [`receiver`], [`platform`], [`console`] | `ferry serve`: receive mode's push formats, auth, endpoints and inbox workers; the platform's mapping-table API; the operator console |
//! | 6 | [`sim`], [`schemetest`], [`cli`] | simulators (real servers on 127.0.0.1), hermetic scheme tests (`ferry test`), the command line |
//!
//! Layers 0–2 do no IO (no tokio, reqwest, sqlx or filesystem), except [`scheme::load_file`] and
//! [`scheme::load_file_with`], which read a scheme file.

pub mod cli;
pub mod codec;
pub mod console;
pub mod diag;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod extract;
pub mod http;
pub mod paginate;
pub mod platform;
pub mod protocol;
pub mod rate;
pub mod receiver;
pub mod redact;
pub mod scheme;
pub mod schemetest;
pub mod sim;
pub mod store;
pub mod template;
pub mod transform;
pub mod window;

/// The old name of [`protocol`], kept while callers move.
pub use protocol as connector;
