//! Receive mode: other systems push their changes to Ferry (seed 000 §4, seed 001).
//!
//! This module owns what a push is and who may send one, as pure functions: [`formats`]
//! reads the seed-000 standard and non-standard formats and the Fxiaoke push shape into a
//! [`formats::Push`] and writes the answers each family expects; [`auth`] checks the
//! `token` header in constant time and an optional Standard Webhooks signature.
//! `ferry serve` stores each accepted push in the durable inbox before it answers, and its
//! workers hand inbox rows to the same planner and writer as `ferry run` ([`serve`]).

pub mod auth;
pub mod formats;
pub mod serve;
