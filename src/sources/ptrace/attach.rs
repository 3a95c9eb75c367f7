//! Attach: seize the threads of processes already running (the host-wide watcher) and follow
//! them and their descendants like `guard run` does, until asked to stop; then let them go.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::unistd::Pid;

use crate::event::Source;
use crate::trace::Record;

use super::tracee::Tracee;
use super::tracer::{Mode, Tracer};
use super::Follow;

/// Options for seized existing processes: as for `guard run`, but without `EXITKILL` — a
/// process we attach to must never be killed because of us.
const ATTACH_OPTIONS: Options = Options::PTRACE_O_TRACEFORK
    .union(Options::PTRACE_O_TRACEVFORK)
    .union(Options::PTRACE_O_TRACECLONE)
    .union(Options::PTRACE_O_TRACEEXEC);

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("cannot attach to pid {pid}: {errno} (root or CAP_SYS_PTRACE is needed, and the process must not be traced already)")]
    Seize { pid: u32, errno: Errno },
    #[error("no process with pid {0}")]
    NoProcess(u32),
}

/// The end of an attached session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachResult {
    /// Threads seized at the start.
    pub seized: usize,
    /// Tracees that did not let go within the deadline (they are detached by the kernel when
    /// this thread exits).
    pub stuck: Vec<u32>,
}

extern "C" fn wake(_: libc::c_int) {}

/// Interrupts the tracer thread's `waitpid` so that it sees the stop request.
pub fn wake_tracer(tid: i32) {
    // SAFETY: tgkill(2) of a thread of our own process with a signal it handles.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
}

/// The calling thread's id (for [`wake_tracer`]).
pub fn current_tid() -> i32 {
    // SAFETY: gettid(2) cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Seizes every thread of each process of `pids` (never stopping them) and follows them and
/// all their future descendants, with the same exec records as `guard run`, until `stop` is
/// set and [`wake_tracer`] is called; then detaches every tracee, which runs on untraced.
///
/// Must run on one thread from start to end: ptrace requests are per tracer thread.
pub fn attach_and_follow(
    pids: &[u32],
    stop: Arc<AtomicBool>,
    follow: Follow<'_>,
    emit: &mut dyn FnMut(Record),
) -> Result<AttachResult, AttachError> {
    // SIGUSR1 interrupts our waitpid (no SA_RESTART) when a stop is requested.
    // SAFETY: installing a handler that does nothing; sigaction is plain data.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wake as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let mut t = Tracer::new(Mode::Attach { stop }, follow, emit);
    let mut seized = 0;
    for &pid in pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(AttachError::NoProcess(pid));
        }
        // Threads created while we attach are auto-attached when their creator is already
        // seized; list the tasks until no new one appears.
        loop {
            let tasks: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let new: Vec<i32> = tasks
                .into_iter()
                .filter(|tid| !t.tracees.contains(*tid))
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match ptrace::seize(Pid::from_raw(tid), ATTACH_OPTIONS) {
                    Ok(()) => {
                        seized += 1;
                        // An attached process counts as exec'd: it is let go at once at the end.
                        let mut tracee = Tracee::new(pid as i32, true);
                        tracee.execd = true;
                        t.tracees.insert(tid, tracee);
                    }
                    // The thread ended meanwhile.
                    Err(Errno::ESRCH) => {}
                    Err(errno) => {
                        t.begin_detach();
                        t.run();
                        return Err(AttachError::Seize { pid, errno });
                    }
                }
            }
        }
        let mut snapshot =
            crate::sources::proc::read_exec(pid as i32, Source::Ptrace, t.follow.extras);
        snapshot.time = crate::time::now();
        (t.emit)(Record::Process(Box::new(snapshot)));
    }
    let stuck = t.run();
    Ok(AttachResult { seized, stuck })
}
