//! Protocols: what each system Ferry talks to *is* (pure, no IO).
//!
//! One folder per connector, each the same shape: `mod.rs` (its settings, its [`Connector`]
//! entry and its [`Protocol`] implementation), `sign.rs` (pure signing, tested with the
//! vectors of `reference/vendor-apis.md` §9), `request.rs` (building the exact bytes of a
//! call), `envelope.rs` (judging answers, per-row outcomes, list keys and paging defaults).
//! The generic `http` connector is a folder of the same shape whose requests come from the
//! scheme's templates.
//!
//! [`CONNECTORS`] lists them all, one line each: scheme validation opens a connection's
//! settings through it, `ferry schema` describes each connector's settings from it, and
//! `ferry init` scaffolds from it. The engine talks to a connection only through its
//! [`Protocol`]: it renders a call, asks the protocol to [`build`](Protocol::build) the
//! request, sends it, asks the protocol to [`classify`](Protocol::classify) the answer, and
//! drives a [`login`](Protocol::login) the same way for every vendor.
//!
//! Every method but `build` has a default that fits a vendor without the feature, so a
//! new vendor implements what it has; `docs/adding-a-connector.md` walks through it.

pub mod erp_standard;
pub mod fxiaoke;
pub mod guanyi;
pub mod http;
pub mod jackyun;
pub mod jdy;
pub mod k3cloud;
pub mod locks;
pub mod scaffold;
pub mod simply;
pub mod types;

pub use types::{
    Answer, Call, DetailIds, DetailList, LoginStep, PagePosition, PagingDefaults, PagingStyle, RowOutcome, Session,
    Verdict, WireRequest, WriteTargets, RETRY_LATER, UNKNOWN_OUTCOME, UNMATCHED_ANSWER,
};

use crate::error::{Error, ErrorKind};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// What a connection speaks: its vendor's rules, with the connection's settings.
pub trait Protocol: Send + Sync + fmt::Debug {
    /// The connector's name (`kingdee-k3cloud`).
    fn name(&self) -> &'static str;

    /// Whether requests come from the scheme's templates (`path`, `query`, `body`) rather
    /// than from a vendor operation (`api` and its parameters).
    fn templated(&self) -> bool {
        false
    }

    /// Checks settings that read well but cannot work (an unknown zone). Scheme validation
    /// reports the error at the settings. Credentials are checked when a request is built,
    /// since validation may run with stand-in values.
    fn check(&self) -> Result<(), SettingsError> {
        Ok(())
    }

    /// Advice about reading from `api` (a message and a hint), shown as a warning.
    fn source_advice(&self, api: &str) -> Option<(String, String)> {
        let _ = api;
        None
    }

    /// The zone the server keeps its times in, where the vendor fixes one.
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        None
    }

    /// The exact request of one vendor call, signed.
    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String>;

    /// The next step of logging in, given the answers of the steps so far (`answers`
    /// starts empty): a request to send, or the session. `None`: this connection needs no
    /// login. Pure, so a login is data the engine drives, one path for every vendor.
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        now: chrono::DateTime<chrono::Utc>,
        nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        let _ = (base_url, answers, now, nonce);
        Ok(None)
    }

    /// What the vendor's envelope says about an answer.
    fn classify(&self, status: u16, body: &Value) -> Verdict {
        let _ = (status, body);
        Verdict::Ok
    }

    /// The JSONPath of an api's rows, when the vendor fixes it.
    fn records_path(&self, api: &str) -> Option<&'static str> {
        let _ = api;
        None
    }

    /// The JSONPath of the ids an api reports deleted (Simply CRM's `sync`).
    fn deleted_path(&self, api: &str) -> Option<&'static str> {
        let _ = api;
        None
    }

    /// How an api pages when the scheme does not say.
    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        let _ = api;
        None
    }

    /// Puts a page into an api's parameters. The default sets `number_param` (the page
    /// number, offset or cursor) and `size_param`.
    fn apply_page(
        &self,
        api: &str,
        params: &mut Value,
        page: &PagePosition,
        paging: &PagingDefaults,
    ) -> Result<(), String> {
        let _ = api;
        set_page_params(params, page, paging)
    }

    /// Checks a page's answer against the call that got it (a cursor that does not move).
    fn check_page(&self, api: &str, params: &Value, body: &Value) -> Result<(), String> {
        let _ = (api, params, body);
        Ok(())
    }

    /// Turns an api's raw rows into records (K3Cloud's arrays named by `FieldKeys`).
    fn shape_records(&self, api: &str, params: &Value, rows: Vec<Value>) -> Result<Vec<Value>, String> {
        let _ = (api, params);
        Ok(rows)
    }

    /// Prepares a write's parameters (target ids of an update, requests for detail ids).
    fn prepare_write(&self, api: &str, params: &mut Value, targets: &WriteTargets<'_>) -> Result<(), String> {
        let _ = (api, params, targets);
        Ok(())
    }

    /// The per-row outcomes of a batch write, when the vendor reports them.
    fn row_outcomes(&self, api: &str, body: &Value, rows: usize) -> Option<Vec<RowOutcome>> {
        let _ = (api, body, rows);
        None
    }

    /// The target id of a one-row write.
    fn written_id(&self, api: &str, body: &Value) -> Option<String> {
        let _ = (api, body);
        None
    }

    /// Whether write answers name the target's ids of detail rows.
    fn reports_detail_ids(&self) -> bool {
        false
    }

    /// Puts the detail row ids of a write answer on the written rows.
    fn attach_detail_ids(
        &self,
        api: &str,
        params: &Value,
        body: &Value,
        lists: &[DetailList],
        outcomes: &mut [RowOutcome],
    ) {
        let _ = (api, params, body, lists, outcomes);
    }

    /// How an update through `api` deals with rows the vendor locks (K3Cloud's submitted
    /// and audited rows); `None` when nothing is locked.
    fn row_locks(&self, api: &str, params: &Value) -> Option<locks::Relock> {
        let _ = (api, params);
        None
    }
}

/// The default [`Protocol::apply_page`]: the page position into two named parameters.
pub fn set_page_params(params: &mut Value, page: &PagePosition, paging: &PagingDefaults) -> Result<(), String> {
    let Some(map) = params.as_object_mut() else {
        return Err("the parameters must be a mapping to carry the page".to_string());
    };
    let position = match &paging.style {
        PagingStyle::Offset => Value::from(page.offset),
        PagingStyle::PageNumber => Value::from(page.number),
        // The first page keeps what the scheme's template gave.
        PagingStyle::Cursor { .. } => match &page.cursor {
            Some(cursor) => Value::String(cursor.clone()),
            None => return Ok(()),
        },
    };
    map.insert(paging.number_param.to_string(), position);
    if !paging.size_param.is_empty() && !matches!(paging.style, PagingStyle::Cursor { .. }) {
        map.insert(
            paging.size_param.to_string(),
            Value::from(page.size.unwrap_or(paging.size)),
        );
    }
    Ok(())
}

/// A connection's settings that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// Where in `settings` (`app_id`, `paging.size`); empty for the block as a whole.
    pub path: String,
    pub message: String,
}

impl SettingsError {
    pub fn new(path: impl Into<String>, message: impl fmt::Display) -> SettingsError {
        SettingsError {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// A problem with the settings as a whole (a missing credential for the chosen mode).
    pub fn whole(message: impl fmt::Display) -> SettingsError {
        SettingsError::new("", message)
    }
}

/// A connection's protocol, or why its settings could not be read.
pub type Opened = Result<Arc<dyn Protocol>, SettingsError>;

/// One line of the connector table.
pub struct Connector {
    /// What a scheme writes as `connector:`.
    pub name: &'static str,
    /// The vendor's name for people (`Kingdee K3Cloud`).
    pub title: &'static str,
    /// One sentence on its protocol, for the JSON Schema.
    pub summary: &'static str,
    /// What it talks to, for `ferry schema` and the docs.
    pub about: &'static str,
    /// The settings fields that hold credentials (masked, and warned about when literal).
    pub secret_fields: &'static [&'static str],
    /// Reads the connection's `settings` block (absent for connectors without one).
    pub open: fn(settings: Option<&Value>) -> Opened,
    /// The JSON Schema of its `settings` block; `None`: it takes no settings.
    pub settings_schema: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    /// What `ferry init` writes for it.
    pub scaffold: &'static scaffold::Scaffold,
    /// An example `api` for the JSON Schema and `ferry init` (empty for templated connectors).
    pub example_api: &'static str,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every connector Ferry knows, one line each.
pub static CONNECTORS: &[Connector] = &[
    http::CONNECTOR,
    guanyi::CONNECTOR,
    k3cloud::CONNECTOR,
    jdy::CONNECTOR,
    jackyun::CONNECTOR,
    simply::CONNECTOR,
    fxiaoke::CONNECTOR,
    erp_standard::CONNECTOR,
];

/// The connector named `name`.
pub fn connector(name: &str) -> Option<&'static Connector> {
    CONNECTORS.iter().find(|c| c.name == name)
}

/// Reads a vendor's settings block into its settings type, with the field path of the
/// first problem.
pub fn read_settings<T: serde::de::DeserializeOwned>(settings: Option<&Value>) -> Result<T, SettingsError> {
    let value = settings.cloned().unwrap_or(Value::Object(Default::default()));
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        SettingsError::new(path, e.into_inner())
    })
}

/// [`Connector::open`] for a connector whose settings type is its protocol.
pub fn open_settings<T>(settings: Option<&Value>) -> Opened
where
    T: Protocol + serde::de::DeserializeOwned + 'static,
{
    if settings.is_none() {
        return Err(SettingsError::whole(
            "missing `settings`: this connector needs its credentials",
        ));
    }
    Ok(Arc::new(read_settings::<T>(settings)?))
}

/// [`Connector::settings_schema`] for a settings type.
pub fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// The IANA zone `name`, or a message saying how to write one.
pub fn zone_named(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("`{name}` is not an IANA time zone; use e.g. UTC or Asia/Shanghai"))
}

/// What a vendor folder's `mod.rs` needs to implement [`Protocol`] and list itself.
/// The [`Protocol`] methods a connector answers from its `envelope` module alone:
/// `records_path`, `row_outcomes` and `written_id`, each forwarding to the function of the
/// same name there. For use inside `impl Protocol for …`.
macro_rules! envelope_answers {
    () => {
        fn records_path(&self, api: &str) -> Option<&'static str> {
            envelope::records_path(api)
        }

        fn row_outcomes(
            &self,
            api: &str,
            body: &serde_json::Value,
            rows: usize,
        ) -> Option<Vec<$crate::protocol::types::RowOutcome>> {
            envelope::row_outcomes(api, body, rows)
        }

        fn written_id(&self, api: &str, body: &serde_json::Value) -> Option<String> {
            envelope::written_id(api, body)
        }
    };
}
pub(crate) use envelope_answers;

/// A vendor connector's `CONNECTOR` line in [`CONNECTORS`], from its module's `NAME`,
/// `ABOUT`, `SECRET_FIELDS`, `Settings` and `scaffold::SCAFFOLD`, and the words given.
macro_rules! vendor_connector {
    (title: $title:expr, summary: $summary:expr, example_api: $example_api:expr $(,)?) => {
        /// This connector's line in [`crate::protocol::CONNECTORS`].
        pub const CONNECTOR: Connector = Connector {
            name: NAME,
            title: $title,
            summary: $summary,
            about: ABOUT,
            secret_fields: SECRET_FIELDS,
            open: open_settings::<Settings>,
            settings_schema: Some(schema_of::<Settings>),
            scaffold: &scaffold::SCAFFOLD,
            example_api: $example_api,
        };
    };
}
pub(crate) use vendor_connector;

pub mod prelude {
    pub use super::types::{StopRule, *};
    pub(crate) use super::{envelope_answers, vendor_connector};
    pub use super::{open_settings, schema_of, set_page_params, zone_named, Connector, Protocol};
    pub use chrono::{DateTime, Utc};
    pub use serde_json::Value;
}

/// Turns a verdict into an error the engine understands (`Ok` → `None`).
pub fn verdict_error(protocol: &dyn Protocol, api: &str, verdict: Verdict) -> Option<Error> {
    let name = protocol.name();
    match verdict {
        Verdict::Ok => None,
        Verdict::Throttled(m) => Some(Error::new(
            ErrorKind::Throttled,
            format!("{name} {api}: throttled: {m}"),
        )),
        Verdict::SessionExpired(m) => Some(Error::new(
            ErrorKind::SessionExpired,
            format!("{name} {api}: session expired: {m}"),
        )),
        Verdict::Failed { code, message } => Some(Error::envelope(format!("{name} {api} failed ({code}): {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connector_opens_and_names_itself() {
        let mut names = std::collections::BTreeSet::new();
        for connector in CONNECTORS {
            assert!(names.insert(connector.name), "{} is listed twice", connector.name);
            assert!(!connector.about.is_empty(), "{}", connector.name);
            assert_eq!(super::connector(connector.name).map(|c| c.name), Some(connector.name));
            // Empty settings either open (nothing required) or say what is missing.
            match (connector.open)(None) {
                Ok(protocol) => assert_eq!(protocol.name(), connector.name),
                Err(e) => assert!(!e.message.is_empty(), "{}", connector.name),
            }
            if let Some(schema) = connector.settings_schema {
                let mut generator = schemars::SchemaGenerator::default();
                let schema = schema(&mut generator);
                assert!(schema.as_value().is_object(), "{}", connector.name);
            }
            assert_eq!(
                connector.example_api.is_empty(),
                connector.settings_schema.is_none(),
                "{}",
                connector.name
            );
        }
        assert!(connector("http").is_some());
    }

    #[test]
    fn default_paging_writes_two_parameters() {
        let paging = PagingDefaults {
            style: PagingStyle::PageNumber,
            start: 1,
            size: 50,
            max_size: None,
            total_path: None,
            number_param: "page_no",
            size_param: "page_size",
            stop: None,
        };
        let page = PagePosition {
            number: 3,
            offset: 100,
            size: None,
            cursor: None,
        };
        let mut params = serde_json::json!({"a": 1});
        set_page_params(&mut params, &page, &paging).unwrap();
        assert_eq!(params, serde_json::json!({"a": 1, "page_no": 3, "page_size": 50}));
        assert!(set_page_params(&mut Value::Null, &page, &paging).is_err());
    }
}
