//! webserver-exec-guard: watch every program executed during a CI job and stop the job when a
//! web server is started (MITRE ATT&CK T1071.001).
//!
//! Data flows one way: exec sources ([`watch`]) produce [`trace::Record`]s; the [`check`]er turns
//! them, with the [`recipe`]s and the [`config`] allowlist, into findings; [`report`]ers render
//! findings to a writer.

pub mod action;
pub mod check;
pub mod config;
pub mod event;
pub mod fingerprint;
pub mod ghclient;
pub mod recipe;
pub mod report;
pub mod time;
pub mod trace;
pub mod watch;

pub const TOOL_NAME: &str = "webserver-exec-guard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
