//! webserver-exec-guard: watch every program executed during a CI job and stop the job when a
//! web server is started (MITRE ATT&CK T1071.001).
//!
//! Data flows one way, and the imports follow it (`scripts/modgraph.py` checks that they have
//! no cycle):
//!
//! ```text
//! sources ──records──▶ recorder ──▶ trace ──records──▶ check ──findings, verdict──▶ report ──▶ writer
//!  ptrace, connector,   numbering,   format, writer,    with the policy:              text, json, sarif,
//!  /proc, attempts,     error latch, reader, chain      recipes + allowlist           markdown, annotations
//!  fingerprints         seal
//! ```
//!
//! - [`sources`] observe processes and produce [`trace::Record`]s; they never judge.
//! - [`recorder`] numbers the records of `guard run` and of the watcher, writes them to the
//!   trace, keeps the first write error and seals it.
//! - [`watcher`] is the root process that runs the host-wide sources and writes their trace;
//!   [`watcher::message`] is what it tells an unprivileged caller.
//! - [`trace`] writes, seals and re-reads records.
//! - [`policy`] loads the [`policy::recipe`]s and the [`policy::config`] allowlist.
//! - [`check`] turns records and a policy into findings and a [`check::Verdict`].
//! - [`report`] renders a checked run, one module per medium; [`escape`] holds every medium's
//!   escaping.
//! - [`pipeline`] is what the front ends share: options become a loaded policy, a verdict an
//!   exit status.
//! - Front ends: the CLI (`main.rs`) and [`github`] (the Action's phases, the runner protocol,
//!   the REST API).
//!
//! [`event`] (what records carry) and [`time`] are used by all.

pub mod check;
pub mod escape;
pub mod event;
pub mod github;
pub mod pipeline;
pub mod policy;
pub mod recorder;
pub mod report;
pub mod sources;
pub mod time;
pub mod trace;
pub mod watcher;

pub const TOOL_NAME: &str = "webserver-exec-guard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
