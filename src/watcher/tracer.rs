//! The ptrace follower of the runner's worker, on a thread of its own: the door of the
//! Action's own steps ([`super::door`]), and with `follow_steps` (input `ptrace: true`, or
//! `guard start --attach`) race-free exec records for every step's whole process tree.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::{ExecEvent, Source};
use crate::sources::fingerprint::Fingerprinter;
use crate::trace::Record;

use super::door::Door;
use super::reader::WATCHER_EXTRAS;
use super::shared::{Msg, Shared};

/// How long attaching may take before the watcher gives up starting.
const ATTACH_BOUND: Duration = Duration::from_secs(20);

/// Starts following `pids` and returns once attaching worked (the follower's first record) or
/// why it did not. With a `door`, each process the attached ones start is looked at at its first
/// exec; unless `follow_steps`, it is let go right after.
pub(super) fn start(
    pids: &[u32],
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Msg>,
    fingerprinter: Fingerprinter,
    door: Option<Door>,
    follow_steps: bool,
) -> Result<JoinHandle<()>, String> {
    let (shared, tx, pids) = (shared.clone(), tx.clone(), pids.to_vec());
    let (att_tx, att_rx) = mpsc::channel::<Result<(), String>>();
    let handle = std::thread::Builder::new()
        .name("ptrace".into())
        .spawn(move || {
            shared
                .tracer_tid
                .store(crate::sources::ptrace::current_tid(), Ordering::SeqCst);
            let mut first = Some(att_tx);
            let mut emit = |r: Record| {
                if let Some(t) = first.take() {
                    let _ = t.send(Ok(()));
                }
                let _ = tx.send(Msg::Record(Box::new(r), Source::Ptrace));
            };
            // The door keeps following the post step it let in, up to the guard it starts.
            let at_exec = |pid: i32, e: &ExecEvent| {
                door.as_ref()
                    .is_some_and(|door| door.at_exec(pid, e).keep_following())
            };
            let follow = crate::sources::ptrace::Follow {
                fingerprinter,
                refuse: None,
                refuse_reads_ids: false,
                extras: WATCHER_EXTRAS,
                step: None,
                at_exec: Some(&at_exec),
                let_go_at_exec: !follow_steps,
            };
            let result = crate::sources::ptrace::attach_and_follow(
                &pids,
                shared.stop.clone(),
                follow,
                &mut emit,
            );
            let err = result.err().map(|e| e.to_string());
            if let Some(t) = first.take() {
                let _ = t.send(err.clone().map_or(Ok(()), Err));
            }
            let _ = tx.send(Msg::TracerDone(err));
        })
        .expect("spawning the ptrace thread");
    match att_rx.recv_timeout(ATTACH_BOUND) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "attaching did not finish within {} s",
            ATTACH_BOUND.as_secs()
        )),
    }
}
