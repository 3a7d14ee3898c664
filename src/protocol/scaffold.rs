//! What `ferry init` writes for a connector: its connection, a sensible source and a
//! sensible target, as text with placeholders. Each connector folder's `scaffold.rs` holds
//! its own; `cli::init` assembles a scheme from two of them.

/// One connector's parts. Texts use `@CONN@` (the connection's name), `@ENV@` (the prefix of
/// its variables) and, in a target, `@code@`, `@name@` and `@note@` (the source's
/// expressions).
pub struct Scaffold {
    /// Connection name and variable prefix, e.g. `guanyi` and `GUANYI`.
    pub connection: &'static str,
    pub env: &'static str,
    /// The connection's lines below `connector:` (indented four spaces).
    pub connection_body: &'static str,
    pub source: SourcePart,
    pub target: TargetPart,
}

pub struct SourcePart {
    /// A phrase for the header, e.g. "Guanyiyun shops".
    pub what: &'static str,
    /// The lines below `source:` after `connection:` (indented two spaces).
    pub body: &'static str,
    /// Templates over a source record: a business code, a display name and a note.
    pub code: &'static str,
    pub name: &'static str,
    pub note: &'static str,
}

pub struct TargetPart {
    pub what: &'static str,
    /// The lines below `target:` after `connection:` (indented two spaces).
    pub body: &'static str,
}
