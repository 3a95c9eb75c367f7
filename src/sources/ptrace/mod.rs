//! Spawn a command under ptrace and follow its whole process tree, recording every successful
//! exec at its exec stop (the process is stopped there, so what we read from `/proc` is exactly
//! what was executed: race-free).
//!
//! Only event stops are requested (fork, vfork, clone, exec) — never per-syscall stops — so a
//! traced process runs at full speed between execs. Signals are re-injected, group-stops are
//! handled with `PTRACE_LISTEN` so that job control behaves as without us, and the tracees are
//! seized with `PTRACE_O_EXITKILL`: if guard dies, they do not run on untraced.
//!
//! Terms follow ptrace(2): a *tracee* is a thread; a *process* is a thread group.
//!
//! One submodule per job: [`stop`] decodes what `waitpid` reports, [`spawn`] starts the command
//! (inside [`untraced_filter`], the seccomp program), [`signals`] forwards guard's signals to
//! it, [`attach`] seizes running processes instead, [`tracer`] is the loop that follows them,
//! and [`tracee`] holds its per-thread state.

mod attach;
mod signals;
mod spawn;
mod stop;
mod tracee;
mod tracer;
pub mod untraced_filter;

pub use attach::{attach_and_follow, current_tid, wake_tracer, AttachError, AttachResult};
pub use spawn::{record_inherited, spawn, RunResult, SpawnError, Traced};
pub use stop::Stop;

use crate::event::ExecEvent;
use crate::sources::fingerprint::Fingerprinter;

/// Called with a process stopped at its exec, and the exec; returns whether to keep following
/// the process (and what it starts) when [`Follow::let_go_at_exec`] would let it go.
pub type AtExec<'a> = dyn Fn(i32, &ExecEvent) -> bool + 'a;

/// What the tracer does besides recording execs.
#[derive(Default)]
pub struct Follow<'s> {
    /// Fingerprints the executed files (and caches them for the run).
    pub fingerprinter: Fingerprinter,
    /// `--mode enforce`: asked about every exec attempt (and again at the exec stop); `true`
    /// refuses it. Needs the command spawned with attempts traced.
    pub refuse: Option<&'s dyn Fn(&ExecEvent) -> bool>,
    /// Whether `refuse` looks at the uid or the parent pid of an exec (a recipe filters on
    /// them). If not, an attempt is decided on without reading them (`/proc/TID/status`), and
    /// they are read only for an attempt that is recorded.
    pub refuse_reads_ids: bool,
    /// What to read of each process besides the exec itself.
    pub extras: super::proc::Extras,
    /// The GitHub Actions step of every exec, when it is known once for all (`guard run`
    /// inside a step: its own `GITHUB_ACTION`).
    pub step: Option<crate::event::Bytes>,
    /// Asked about every exec at its exec stop, before the new program runs an instruction (the
    /// Action's door, [`crate::watcher`]); it may kill the process.
    pub at_exec: Option<&'s AtExec<'s>>,
    /// Attached: let every process go at its first exec (after `at_exec`, unless it says to
    /// keep it), so that only the attached processes are followed, not what they start.
    pub let_go_at_exec: bool,
}
