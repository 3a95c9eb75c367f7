//! What the watcher's threads share: the stop flag, the self-test's probe, the lost count, and
//! the messages they send the writer.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64};
use std::sync::Arc;

use crate::event::Source;
use crate::trace::Record;

/// Counters shared between the threads.
#[derive(Default)]
pub(super) struct Shared {
    pub stop: Arc<AtomicBool>,
    /// The nonce in the probe exec's argv[1] (`webserver-exec-guard-probe-NONCE`).
    pub probe_nonce: AtomicU64,
    /// The probe's pid, known once spawned (its exec may have been read before that).
    pub probe_pid: AtomicU32,
    /// Recent exec pids, to find the probe's exec when it was read before its pid was known.
    pub recent_execs: std::sync::Mutex<std::collections::VecDeque<u32>>,
    pub probe_seen: AtomicBool,
    pub lost: AtomicU64,
    pub tracer_tid: AtomicI32,
}

/// What the reader and the tracer send the writer.
pub(super) enum Msg {
    Record(Box<Record>, Source),
    /// The records of one read of the connector socket, in order (one message, one wake-up
    /// of the writer, for a batch of events).
    Records(Vec<Record>, Source),
    /// The ptrace follower ended (with an error message if attaching failed).
    TracerDone(Option<String>),
}
