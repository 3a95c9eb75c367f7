//! Per-tracee state: one [`Tracee`] for each thread we trace, in one [`Tracees`] table keyed by
//! tid. An entry is created when the thread becomes known and removed as a whole when it exits
//! or is let go, so nothing of a thread outlives it to be mistaken for a later thread that
//! reuses its id.

use std::collections::HashMap;

use crate::event::ExecEvent;
use crate::sources::attempt::Call;
use crate::sources::proc::ProcDir;

/// What the tracer knows of one thread.
pub(super) struct Tracee {
    /// Its thread group (process).
    pub(super) tgid: i32,
    /// Stopped by job control and listening (`PTRACE_LISTEN`).
    pub(super) group_stopped: bool,
    /// Its fork record was emitted (or it is a thread, or the root). A new child can report
    /// its first stop, exec or even exit before its parent reports the fork event: its fork
    /// record is emitted at its own first report, so that the trace stays causally ordered.
    pub(super) announced: bool,
    /// Its process exec'd while traced, or was attached: once the command has exited it is let
    /// go at once; a process that has not exec'd yet only after its exec or the grace.
    pub(super) execd: bool,
    /// An exec attempt let through, whose syscall exit is due.
    pub(super) pending: Option<Call>,
    /// On a thread-group leader: its process's failed exec attempts not recorded yet. A `PATH`
    /// search tries one directory after another, and the misses of a search that then succeeds
    /// are not worth a record.
    pub(super) failed: Vec<ExecEvent>,
    /// On a leader that has not exec'd yet: its `/proc/PID`, opened ahead of its exec stop.
    proc_dir: Option<ProcDir>,
}

impl Tracee {
    /// A thread of process `tgid` that has not exec'd (as far as we know).
    pub(super) fn new(tgid: i32, announced: bool) -> Tracee {
        Tracee {
            tgid,
            group_stopped: false,
            announced,
            execd: false,
            pending: None,
            failed: Vec::new(),
            proc_dir: None,
        }
    }
}

/// Every tracee, by tid; also counts the `/proc` directories they hold open.
#[derive(Default)]
pub(super) struct Tracees {
    by_tid: HashMap<i32, Tracee>,
    open_dirs: usize,
}

impl Tracees {
    pub(super) fn get(&self, tid: i32) -> Option<&Tracee> {
        self.by_tid.get(&tid)
    }

    pub(super) fn get_mut(&mut self, tid: i32) -> Option<&mut Tracee> {
        self.by_tid.get_mut(&tid)
    }

    pub(super) fn contains(&self, tid: i32) -> bool {
        self.by_tid.contains_key(&tid)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_tid.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (i32, &Tracee)> {
        self.by_tid.iter().map(|(&tid, t)| (tid, t))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Tracee> {
        self.by_tid.values_mut()
    }

    /// The tracee `tid`, created (not announced, its own process) if unknown.
    pub(super) fn entry(&mut self, tid: i32) -> &mut Tracee {
        self.by_tid
            .entry(tid)
            .or_insert_with(|| Tracee::new(tid, false))
    }

    pub(super) fn insert(&mut self, tid: i32, tracee: Tracee) {
        if let Some(old) = self.by_tid.insert(tid, tracee) {
            self.forget(&old);
        }
        if self.by_tid[&tid].proc_dir.is_some() {
            self.open_dirs += 1;
        }
    }

    /// A new tracee `new` reported by `parent`'s fork event: a thread of the parent's process
    /// (exec'd if it has) or a new process (which has not).
    pub(super) fn add_child(&mut self, parent: i32, new: i32, thread: bool) {
        let (tgid, execd) = match (thread, self.get(parent)) {
            (true, Some(p)) => (p.tgid, p.execd),
            (true, None) => (parent, false),
            (false, _) => (new, false),
        };
        let mut t = Tracee::new(tgid, true);
        t.execd = execd;
        self.insert(new, t);
    }

    /// Whether any thread of process `tgid` belongs to a process that exec'd.
    pub(super) fn process_execd(&self, tgid: i32) -> bool {
        self.by_tid.values().any(|t| t.tgid == tgid && t.execd)
    }

    /// Thread `tid` exec'd (it was `former` before, when a non-leader thread exec'd, see
    /// ptrace(2)): it leads its process now, the former thread's entry is gone, and no exec
    /// attempt of either is due any more. Returns the `/proc` directory opened ahead for it.
    pub(super) fn exec(&mut self, tid: i32, former: i32) -> Option<ProcDir> {
        if former != tid {
            self.remove(former);
        }
        let t = self.entry(tid);
        t.tgid = tid;
        t.execd = true;
        t.pending = None;
        let dir = t.proc_dir.take();
        if dir.is_some() {
            self.open_dirs -= 1;
        }
        dir
    }

    /// Removes the tracee with all its state.
    pub(super) fn remove(&mut self, tid: i32) -> Option<Tracee> {
        let t = self.by_tid.remove(&tid)?;
        self.forget(&t);
        Some(t)
    }

    fn forget(&mut self, gone: &Tracee) {
        if gone.proc_dir.is_some() {
            self.open_dirs -= 1;
        }
    }

    /// How many `/proc` directories the tracees hold open.
    pub(super) fn open_dirs(&self) -> usize {
        self.open_dirs
    }

    pub(super) fn proc_dir(&self, tid: i32) -> Option<&ProcDir> {
        self.get(tid)?.proc_dir.as_ref()
    }

    /// Keeps `dir` for tracee `tid` (dropped, closing it, if there is no such tracee or it has
    /// one already).
    pub(super) fn set_proc_dir(&mut self, tid: i32, dir: ProcDir) {
        if let Some(t) = self.by_tid.get_mut(&tid) {
            if t.proc_dir.is_none() {
                t.proc_dir = Some(dir);
                self.open_dirs += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_a_new_process_that_has_not_execd() {
        let mut t = Tracees::default();
        t.insert(100, Tracee::new(100, true));
        t.add_child(100, 200, false);
        assert!(!t.get(200).unwrap().execd);
        assert!(t.exec(200, 200).is_none());
        assert!(t.get(200).unwrap().execd);
        assert!(t.process_execd(200));
        assert!(t.remove(200).is_some());
        assert!(!t.process_execd(200));
        // pid 200 is reused by a new child of the root, which has not exec'd yet.
        t.add_child(100, 200, false);
        assert!(!t.get(200).unwrap().execd);
        assert!(!t.process_execd(200));
        // ... and its own first report, before the fork event, does not make it exec'd either.
        t.remove(200);
        assert!(!t.entry(200).execd);
    }

    #[test]
    fn threads_share_their_process_execd() {
        let mut t = Tracees::default();
        t.insert(100, Tracee::new(100, true));
        t.add_child(100, 101, true);
        assert_eq!(t.get(101).unwrap().tgid, 100);
        assert!(!t.get(101).unwrap().execd);
        // A thread execs: it takes the leader's id, the other threads are gone.
        t.exec(100, 101);
        assert!(!t.contains(101));
        assert!(t.get(100).unwrap().execd);
        // Threads created after the exec belong to a process that exec'd; its children do not.
        t.add_child(100, 102, true);
        assert!(t.get(102).unwrap().execd);
        t.add_child(102, 300, false);
        assert_eq!(t.get(300).unwrap().tgid, 300);
        assert!(!t.get(300).unwrap().execd);
    }

    #[test]
    fn exec_and_exit_clear_a_pending_attempt() {
        let mut t = Tracees::default();
        t.insert(100, Tracee::new(100, true));
        t.add_child(100, 101, true);
        t.get_mut(101).unwrap().pending = Some(Call {
            arch: 0,
            nr: 0,
            args: [0; 6],
        });
        t.get_mut(100).unwrap().pending = Some(Call {
            arch: 0,
            nr: 0,
            args: [0; 6],
        });
        t.exec(100, 101);
        assert!(t.get(100).unwrap().pending.is_none());
        assert!(t.remove(101).is_none());
    }
}
