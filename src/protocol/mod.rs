//! Connectors: how a scheme's requests become bytes on the wire and how answers are read.
//!
//! The set of connectors is closed and listed in [`CONNECTORS`], one table that validation,
//! `ferry schema` and the docs all read. Every connector shares the pure steps in this module:
//! render a [`RequestPlan`] into an [`HttpRequest`], check a read envelope and select its
//! records, and split a write answer into per-row outcomes. A vendor connector (one folder
//! each under `connector/`) adds its signing and envelope rules on top of these steps.

pub mod erp_standard;
pub mod fxiaoke;
pub mod guanyi;
pub mod http;
pub mod jackyun;
pub mod jdy;
pub mod k3cloud;
pub mod simply;
pub mod types;
pub mod vendor;

pub use types::{
    DetailIds, DetailList, RowOutcome, Verdict, WireRequest, RETRY_LATER, UNKNOWN_OUTCOME, UNMATCHED_ANSWER,
};


/// Every connector Ferry knows: (name, what it talks to).
pub const CONNECTORS: &[(&str, &str)] = &[
    (http::NAME, http::ABOUT),
    (guanyi::NAME, guanyi::ABOUT),
    (k3cloud::NAME, k3cloud::ABOUT),
    (jdy::NAME, jdy::ABOUT),
    (jackyun::NAME, jackyun::ABOUT),
    (simply::NAME, simply::ABOUT),
    (fxiaoke::NAME, fxiaoke::ABOUT),
    (erp_standard::NAME, erp_standard::ABOUT),
];

