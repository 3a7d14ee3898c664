//! The generic `http` connector: everything comes from the scheme (paths, query, headers,
//! body templates, success tests and per-row result paths); nothing is signed.
//!
//! It is the one folder without `sign.rs`, `request.rs` and `envelope.rs`: the scheme is
//! its request builder and envelope reader, rendered by [`crate::exchange`]. Its
//! [`Protocol`] says so ([`Protocol::templated`]) and keeps every default.

pub mod scaffold;

use crate::protocol::prelude::*;
use crate::protocol::SettingsError;
use std::sync::Arc;

pub const NAME: &str = "http";
pub const ABOUT: &str = "a plain HTTP/JSON or XML API described entirely by the scheme";

/// This connector's line in [`crate::protocol::CONNECTORS`].
pub const CONNECTOR: Connector = Connector {
    name: NAME,
    title: "HTTP",
    summary: "A plain HTTP API described entirely by the scheme.",
    about: ABOUT,
    secret_fields: &[],
    open,
    settings_schema: None,
    scaffold: &scaffold::SCAFFOLD,
    example_api: "",
};

/// The `http` connector's protocol: the scheme's templates do everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

fn open(settings: Option<&Value>) -> crate::protocol::Opened {
    match settings {
        None => Ok(Arc::new(Http)),
        Some(_) => Err(SettingsError::whole(
            "the `http` connector takes no `settings`; put credentials in `headers` (as `${VAR}`)",
        )),
    }
}

impl Protocol for Http {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templated(&self) -> bool {
        true
    }

    fn build(&self, _call: &Call<'_>) -> Result<WireRequest, String> {
        Err("the http connector builds requests from the scheme's templates".to_string())
    }
}
