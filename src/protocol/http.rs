//! The generic `http` connector: everything comes from the scheme (paths, query, headers,
//! body templates, success tests and per-row result paths); nothing is signed.

pub const NAME: &str = "http";
pub const ABOUT: &str = "a plain HTTP/JSON or XML API described entirely by the scheme";
