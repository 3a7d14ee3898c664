//! The crate's runtime error: one type with a [`ErrorKind`] that decides retry and exit code.
//!
//! Module errors (`CodecError`, `StoreError`, `TemplateError`, …) convert into [`Error`] with one
//! `From` each, written next to the module's own error (this module imports no module above
//! it); the conversion picks the [`ErrorKind`], so `is_retryable()` survives it.
//! Scheme problems found before a run are not errors of this type: they are
//! [`crate::diag::Diagnostic`]s, reported all at once.

use std::fmt;

/// What went wrong, coarse enough to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The scheme or the command line is wrong (exit code 2).
    Config,
    /// Connecting, sending or receiving failed (retryable).
    Transport,
    /// The peer answered with an HTTP status that is not success.
    Status(u16),
    /// The peer answered, but its envelope says the call failed.
    Envelope,
    /// The peer asked us to slow down (retryable).
    Throttled,
    /// The session or token expired: log in again, then retry once.
    SessionExpired,
    /// The body could not be decoded (JSON/XML), or had the wrong shape.
    Decode,
    /// A template or JSONPath failed for one record.
    Transform,
    /// A template read a field the record does not have (see [`Error::missing`]).
    MissingField,
    /// A pagination guard stopped a run that would loop or contradict itself.
    Guard,
    /// The store failed.
    Store,
    /// The store is held by another writer for now (retryable).
    StoreBusy,
    /// The run was stopped (signal) or a worker died.
    Aborted,
}

/// A runtime error: a kind plus a message that a person can act on.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// For [`ErrorKind::MissingField`]: the names that were read and not found.
    pub missing: Vec<String>,
    /// For [`ErrorKind::Transport`]: the request never reached the peer (the connection was
    /// refused, the host name did not resolve, or connecting timed out), so it cannot
    /// have acted on it.
    pub unreachable: bool,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            missing: Vec::new(),
            unreachable: false,
        }
    }
    /// A record lacks fields its templates read.
    pub fn missing_field(message: impl Into<String>, missing: Vec<String>) -> Error {
        Error {
            kind: ErrorKind::MissingField,
            message: message.into(),
            missing,
            unreachable: false,
        }
    }
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }
    pub fn transport(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Transport, message)
    }
    /// A peer that could not be reached at all (see [`Error::unreachable`]).
    pub fn unreachable(message: impl Into<String>) -> Error {
        Error {
            unreachable: true,
            ..Error::transport(message)
        }
    }
    pub fn decode(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Decode, message)
    }
    pub fn envelope(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Envelope, message)
    }
    pub fn transform(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Transform, message)
    }
    pub fn guard(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Guard, message)
    }
    pub fn store(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Store, message)
    }

    /// Whether repeating the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Transport | ErrorKind::Throttled | ErrorKind::SessionExpired | ErrorKind::StoreBusy => true,
            ErrorKind::Status(code) => code == 429 || code == 408 || code >= 500,
            _ => false,
        }
    }

    /// A short class name stored in the failure ledger.
    /// For a failed write: whether the peer may have acted on it anyway (the answer was
    /// lost or garbled, or the server failed part way), so that sending it again blindly
    /// could duplicate it.
    pub fn may_have_landed(&self) -> bool {
        if self.unreachable {
            return false;
        }
        match self.kind {
            ErrorKind::Transport | ErrorKind::Decode => true,
            ErrorKind::Status(code) => code == 408 || code >= 500,
            _ => false,
        }
    }

    pub fn class(&self) -> &'static str {
        match self.kind {
            ErrorKind::Config => "config",
            ErrorKind::Transport => "transport",
            ErrorKind::Status(_) => "http_status",
            ErrorKind::Envelope => "rejected",
            ErrorKind::Throttled => "throttled",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::Decode => "decode",
            ErrorKind::Transform => "transform",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::Guard => "pagination_guard",
            ErrorKind::Store => "store",
            ErrorKind::StoreBusy => "store_busy",
            ErrorKind::Aborted => "aborted",
        }
    }

    /// Prefixes the message with where it happened.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Process exit codes, shared by every command: the contract schedulers act on (the
/// README's table and the units of `ferry systemd` follow it). Codes are added for cases
/// the others do not cover, never renumbered.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ROWS_FAILED: i32 = 1;
    pub const CONFIG: i32 = 2;
    pub const ABORTED: i32 = 3;
    /// Another run of the same scheme holds the run lock.
    pub const LOCKED: i32 = 4;
    /// Try again later (sysexits' EX_TEMPFAIL): a peer could not be reached and the target
    /// accepted nothing in this run, so nothing changed and the checkpoint did not move.
    pub const UNAVAILABLE: i32 = 75;
    /// Standard output was closed by its reader (`ferry schema | head`): 128 + SIGPIPE, as a
    /// shell reports a program stopped that way.
    pub const BROKEN_PIPE: i32 = 141;
    /// A run stopped by SIGINT: 128 + SIGINT, as a shell reports a process ended by it. The
    /// first signal stops it gracefully (the writes in flight are finished and committed),
    /// a second one at once. Not a failure: an operator asked for it.
    pub const INTERRUPTED: i32 = 130;
    /// A run stopped by SIGTERM (`systemctl stop`): 128 + SIGTERM, gracefully after the
    /// first signal, at once after a second. Not a failure (the units of `ferry systemd`
    /// list it in `SuccessExitStatus=`).
    pub const TERMINATED: i32 = 143;
}
