//! The tracer loop: waits for the tracees' stops and exits, keeps the trace causally ordered
//! (a child's fork record before anything else about it), records execs, failed and refused
//! exec attempts, and lets every tracee go when the command has exited (`guard run`) or a stop
//! was requested (attached).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid;

use crate::event::{Attempt, EndEvent, ExecEvent, ExitEvent, ExitStatus, ForkEvent, Source};
use crate::sources::attempt::{self, Call};
use crate::sources::proc::{self as procfs, ProcDir};
use crate::trace::Record;

use super::signals::{mirror_stop, Forwarding, FORWARDED};
use super::stop::{decode, Stop, Wait};
use super::tracee::Tracees;
use super::Follow;

/// At most this many `/proc/PID` directories are held open ahead of execs (fewer under a low
/// `RLIMIT_NOFILE`: see [`open_files_limit`]).
const PROC_DIRS_MAX: usize = 256;

/// How many descriptors guard may have open (the soft `RLIMIT_NOFILE`).
fn open_files_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Failed attempts held per process (to drop those of a `PATH` search that then succeeds).
const HELD_ATTEMPTS: usize = 64;

/// At most this many new tracees are held at their first stop waiting for their parent's fork
/// event (beyond, they are announced from `/proc` at once).
const DEFERRED_MAX: usize = 64;
/// ... and for at most this long.
const DEFERRED_FOR: Duration = Duration::from_millis(2);

/// How long we give the processes a command left running to let go of (detach) once it exited.
const DETACH_DEADLINE: Duration = Duration::from_secs(10);

/// Once the command has exited, how long a process it forked that has not exec'd yet (`nginx &`
/// in a script whose shell exits at once) is still followed, so that its exec is recorded.
const EXEC_GRACE: Duration = Duration::from_millis(500);

/// After guard mirrored the command's stop and runs again: when to check that the command was
/// continued too.
const CONT_CHECK_AFTER: Duration = Duration::from_millis(50);

/// Whom the tracer follows, and what matters only for that.
pub(super) enum Mode {
    /// `guard run`: the spawned command; the tracer ends when it has exited.
    Run(Command),
    /// Attached to existing processes: the tracer ends when `stop` is set (and the tracer
    /// thread interrupted with `SIGUSR1`).
    Attach { stop: Arc<AtomicBool> },
}

/// The command of `guard run`.
pub(super) struct Command {
    root: i32,
    /// Where the signals delivered to the command are noted for the signal thread.
    forwarding: Arc<Forwarding>,
    /// How it ended.
    pub(super) status: Option<ExitStatus>,
    /// Processes still running when it exited (let go, they run on untraced).
    pub(super) outlived: Vec<u32>,
    /// Guard stopped itself for the command's current stop (until the command gets SIGCONT).
    stop_mirrored: bool,
    /// After guard was stopped and continued: when to check that the command was continued too.
    cont_check: Option<Instant>,
}

impl Command {
    pub(super) fn new(root: i32, forwarding: Arc<Forwarding>) -> Command {
        Command {
            root,
            forwarding,
            status: None,
            outlived: Vec::new(),
            stop_mirrored: false,
            cont_check: None,
        }
    }
}

/// What was reported of a new child before its parent's fork event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Early {
    /// It was announced at its own first report (its fork record is out).
    Announced,
    /// It exited before anything else was reported about it (killed before its first stop):
    /// its exit is recorded after its fork record.
    Exited(ExitStatus),
}

/// An [`Early`] report, waiting for the parent's fork event. This is the one piece of a
/// thread's state that outlives it: the event may come after its exit. It may also never come
/// (the parent was killed between the fork and its event stop), so a birth names its process
/// by start time as well as by pid, and is not applied to a later process that reuses the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Birth {
    /// The child's start time, `None` if it was gone already (see [`start_time`]).
    start: Option<u64>,
    early: Early,
}

/// Follows the tree until the command exits (or a stop is requested), then detaches what is
/// left running.
pub(super) struct Tracer<'s> {
    pub(super) mode: Mode,
    pub(super) tracees: Tracees,
    /// New children whose parent's fork event is due, by tid.
    births: HashMap<i32, Birth>,
    pub(super) emit: &'s mut dyn FnMut(Record),
    pub(super) follow: Follow<'s>,
    /// When the tracees began to be let go.
    ending: Option<Instant>,
    /// Set when the grace for processes that have not exec'd yet has run out.
    grace_over: bool,
    /// First stops of new tracees whose parent's fork event has not been seen yet, held (the
    /// tracee stays stopped) until the events already queued are read: the parent's fork event
    /// is nearly always among them and names the child, which spares a `/proc` read.
    deferred: Vec<(i32, Stop)>,
    /// When the oldest of them was held: none is held longer than [`DEFERRED_FOR`], however
    /// busy the queue (its parent may have been killed before reporting the fork).
    deferred_since: Option<Instant>,
    /// [`PROC_DIRS_MAX`], or a quarter of the descriptors guard may open if that is less.
    proc_dirs_max: usize,
    /// Failed exec attempts held for processes that were let go: recorded at the end.
    let_go_failed: Vec<ExecEvent>,
}

impl<'s> Tracer<'s> {
    pub(super) fn new(
        mode: Mode,
        follow: Follow<'s>,
        emit: &'s mut dyn FnMut(Record),
    ) -> Tracer<'s> {
        Tracer {
            mode,
            tracees: Tracees::default(),
            births: HashMap::new(),
            emit,
            follow,
            ending: None,
            grace_over: false,
            deferred: Vec::new(),
            deferred_since: None,
            proc_dirs_max: PROC_DIRS_MAX.min(open_files_limit() / 4),
            let_go_failed: Vec::new(),
        }
    }

    fn command(&self) -> Option<&Command> {
        match &self.mode {
            Mode::Run(command) => Some(command),
            Mode::Attach { .. } => None,
        }
    }

    fn command_mut(&mut self) -> Option<&mut Command> {
        match &mut self.mode {
            Mode::Run(command) => Some(command),
            Mode::Attach { .. } => None,
        }
    }

    /// Runs the loop to its end; returns the tracees that did not let go in time.
    pub(super) fn run(&mut self) -> Vec<u32> {
        let stuck = self.event_loop();
        let mut held = std::mem::take(&mut self.let_go_failed);
        for t in self.tracees.iter_mut() {
            held.append(&mut t.failed);
        }
        self.flush_failed(held, None);
        stuck
    }

    fn event_loop(&mut self) -> Vec<u32> {
        loop {
            if self.ending.is_some() && self.tracees.is_empty() && self.deferred.is_empty() {
                return Vec::new();
            }
            let stop_requested =
                matches!(&self.mode, Mode::Attach { stop } if stop.load(Ordering::SeqCst));
            if self.ending.is_none() && stop_requested {
                self.begin_detach();
                continue;
            }
            if let Some(command) = self.command_mut() {
                if command.cont_check.is_some_and(|at| Instant::now() >= at) {
                    command.cont_check = None;
                    self.continue_root_if_stopped();
                }
            }
            if self
                .deferred_since
                .is_some_and(|since| since.elapsed() >= DEFERRED_FOR)
            {
                self.settle_deferred(None);
            }
            let polling = self.ending.is_some()
                || self.command().is_some_and(|c| c.cont_check.is_some())
                || !self.deferred.is_empty();
            let mut status = 0;
            let flags = libc::__WALL | if polling { libc::WNOHANG } else { 0 };
            // SAFETY: waitpid with a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    // Attached, and every tracee is gone: wait for the stop request.
                    Errno::ECHILD
                        if matches!(self.mode, Mode::Attach { .. }) && self.ending.is_none() =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    // No tracee and no child left.
                    _ => return Vec::new(),
                }
            }
            if pid == 0 {
                if !self.deferred.is_empty() {
                    // Nothing else is queued: the parent has not reported the fork yet.
                    self.settle_deferred(None);
                    continue;
                }
                if let Some(since) = self.ending {
                    if !self.grace_over && since.elapsed() >= EXEC_GRACE {
                        self.grace_over = true;
                        self.begin_detach();
                    }
                    if since.elapsed() > DETACH_DEADLINE {
                        return self.tracees.iter().map(|(t, _)| t as u32).collect();
                    }
                    // A thread-group leader that ended with pthread_exit while its other
                    // threads run is a zombie that never stops again: nothing to let go of.
                    if self.grace_over && since.elapsed().as_millis() % 50 == 0 {
                        let zombies: Vec<i32> = self
                            .tracees
                            .iter()
                            .map(|(tid, _)| tid)
                            .filter(|&tid| is_zombie(tid))
                            .collect();
                        for tid in zombies {
                            self.let_go(tid);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            match decode(status) {
                Some(Wait::Exited(st)) => self.exited(pid, st),
                Some(Wait::Stopped(stop)) => self.stopped(pid, stop),
                None => {}
            }
        }
    }

    fn is_root(&self, pid: i32) -> bool {
        self.command().is_some_and(|c| c.root == pid)
    }

    /// Whether a thread belongs to the command's own process (any of its threads).
    fn in_root(&self, tid: i32) -> bool {
        self.command()
            .is_some_and(|c| self.tracees.get(tid).map(|t| t.tgid) == Some(c.root))
    }

    fn exited(&mut self, pid: i32, status: ExitStatus) {
        // Killed while held at its first stop: named from `/proc` while its zombie is there
        // (its parent may be gone too, never to report the fork), else its exit is its first
        // report after all.
        let held = self.deferred.iter().any(|&(tid, _)| tid == pid);
        self.deferred.retain(|&(tid, _)| tid != pid);
        if let Some(ids) = held.then(|| ids_of(pid)).flatten() {
            self.announce_as(pid, ids);
        }
        if self.deferred.is_empty() {
            self.deferred_since = None;
        }
        // The command's end lists the processes left running: the held ones are among them.
        if self.is_root(pid) {
            self.settle_deferred(None);
        }
        if !self.is_root(pid) && !self.tracees.get(pid).is_some_and(|t| t.announced) {
            self.tracees.remove(pid);
            self.note_birth(pid, Early::Exited(status));
            return;
        }
        let tracee = self.tracees.remove(pid);
        let is_leader = tracee.as_ref().is_none_or(|t| t.tgid == pid);
        if is_leader {
            self.flush_failed(tracee.map(|t| t.failed).unwrap_or_default(), None);
            (self.emit)(Record::Exit(ExitEvent {
                seq: 0,
                time: crate::time::now(),
                pid: pid as u32,
                status,
            }));
        }
        if self.is_root(pid) && self.ending.is_none() {
            if let Some(command) = self.command_mut() {
                command.status = Some(status);
            }
            self.begin_end(status);
        }
    }

    /// The command exited: every remaining tracee is interrupted and, at its next stop,
    /// detached. They run on untraced, and are reported as having outlived the command.
    fn begin_end(&mut self, status: ExitStatus) {
        self.ending = Some(Instant::now());
        let mut outlived: Vec<u32> = self.tracees.iter().map(|(_, t)| t.tgid as u32).collect();
        outlived.sort_unstable();
        outlived.dedup();
        if let Some(command) = self.command_mut() {
            command.outlived = outlived.clone();
        }
        (self.emit)(Record::End(EndEvent {
            seq: 0,
            time: crate::time::now(),
            status,
            outlived,
        }));
        self.begin_detach();
    }

    /// Interrupts every tracee; each is detached at its next stop.
    pub(super) fn begin_detach(&mut self) {
        self.ending.get_or_insert_with(Instant::now);
        for (tid, t) in self.tracees.iter() {
            if self.grace_over || t.execd {
                // ESRCH: it is exiting; its exit will be reported.
                let _ = ptrace::interrupt(Pid::from_raw(tid));
            }
        }
    }

    /// Whether a tracee is let go at its next stop (once the command has exited).
    fn letting_go(&self, tid: i32) -> bool {
        self.ending.is_some() && (self.grace_over || self.tracees.get(tid).is_none_or(|t| t.execd))
    }

    /// Forgets a tracee we let go (or that will never stop again); the attempts it held are
    /// recorded at the end.
    fn let_go(&mut self, tid: i32) {
        if let Some(t) = self.tracees.remove(tid) {
            self.let_go_failed.extend(t.failed);
        }
    }

    /// First report of a new tracee whose parent's fork event we have not seen yet: learn
    /// its thread group and parent from `/proc` (it is stopped) and emit its fork record now.
    fn announce(&mut self, tid: i32) {
        self.announce_as(tid, ids_of(tid).unwrap_or((tid, 0)));
    }

    /// [`Self::announce`] with the thread group and parent already read.
    fn announce_as(&mut self, tid: i32, (tgid, ppid): (i32, i32)) {
        // A thread of a process that exec'd counts as exec'd, as if its clone event had come.
        let execd = tgid != tid && self.tracees.process_execd(tgid);
        let t = self.tracees.entry(tid);
        t.tgid = tgid;
        t.announced = true;
        t.execd |= execd;
        self.note_birth(tid, Early::Announced);
        if tgid == tid && ppid > 0 {
            (self.emit)(Record::Fork(ForkEvent {
                seq: 0,
                time: crate::time::now(),
                pid: tid as u32,
                ppid: ppid as u32,
                source: Source::Ptrace,
            }));
        }
    }

    /// Keeps what was reported of `tid` before its parent's fork event.
    fn note_birth(&mut self, tid: i32, early: Early) {
        let start = start_time(tid);
        self.births.insert(tid, Birth { start, early });
    }

    /// What was reported of `new` before its parent's fork event, if that was about this
    /// process. A birth left by an earlier process with the same pid, whose parent never
    /// reported the fork, is dropped: applied, it would record a fork or an exit that did not
    /// happen, and keep the new process out of the table.
    fn take_birth(&mut self, new: i32) -> Option<Early> {
        let birth = self.births.remove(&new)?;
        // `new` gone means this is about it: the kernel reports a tracee's exit to us before
        // its pid can be reused, and that report, like its first stop, replaces any older birth.
        let now = start_time(new);
        (now.is_none() || now == birth.start).then_some(birth.early)
    }

    fn stopped(&mut self, tid: i32, stop: Stop) {
        if !self.tracees.get(tid).is_some_and(|t| t.announced) {
            // Its first report: a birth kept for this tid is of an earlier thread (an announced
            // one stays in the table until it exits, and then reports nothing more).
            self.births.remove(&tid);
            if self.ending.is_none() && self.deferred.len() < DEFERRED_MAX {
                self.deferred.push((tid, stop));
                self.deferred_since.get_or_insert_with(Instant::now);
                return;
            }
            self.announce(tid);
        }
        self.tracees.entry(tid).group_stopped = false;
        match stop {
            Stop::Signal(sig) => {
                self.note_delivery(tid, sig);
                if sig == libc::SIGCONT && self.in_root(tid) {
                    self.unmirror_stop();
                }
                self.resume(tid, sig)
            }
            Stop::Group(sig) => {
                if self.letting_go(tid) {
                    // The kernel keeps a detached tracee in its group-stop.
                    self.resume(tid, 0);
                    return;
                }
                // SAFETY: PTRACE_LISTEN on a tracee in group-stop; no pointers involved.
                let rc = unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid, 0, 0) };
                if rc == 0 {
                    self.tracees.entry(tid).group_stopped = true;
                    // Once per stop: a stopped tracee reports its group-stop again when a
                    // signal (a SIGCHLD from its own stopped child) wakes it; only a SIGCONT
                    // ends the stop guard mirrored.
                    if self.is_root(tid) {
                        if let Some(command) = self.command_mut() {
                            if !command.stop_mirrored {
                                command.stop_mirrored = true;
                                mirror_stop(sig);
                                // We run again: `fg` continued the whole process group (the
                                // command included), or someone continued only guard — then
                                // the command must be continued too.
                                command.cont_check = Some(Instant::now() + CONT_CHECK_AFTER);
                            }
                        }
                    }
                }
            }
            Stop::Trap | Stop::Other(_) => {
                // The end of a group-stop (SIGCONT came) is reported as such a stop too.
                if self.in_root(tid) {
                    self.unmirror_stop();
                }
                self.resume(tid, 0);
                self.open_proc_dir(tid);
            }
            Stop::Fork(event) => {
                if let Ok(new) = ptrace::getevent(Pid::from_raw(tid)) {
                    self.forked(tid, new as i32, event);
                }
                self.resume(tid, 0);
            }
            Stop::Exec => self.execd(tid),
            Stop::Seccomp => self.exec_attempt(tid),
            Stop::Syscall => {
                let call = self.tracees.get_mut(tid).and_then(|t| t.pending.take());
                if let Some(call) = call {
                    if let Some(errno) = attempt::exit_errno(tid) {
                        let mut e = self.candidate(tid, None, &call);
                        e.attempt = Some(Attempt::new(errno, false));
                        self.hold_failed(e);
                    }
                }
                self.resume(tid, 0);
            }
        }
    }

    /// The command got SIGCONT: its next stop is mirrored again.
    fn unmirror_stop(&mut self) {
        if let Some(command) = self.command_mut() {
            command.stop_mirrored = false;
        }
    }

    /// `parent` reported the fork (vfork, clone: `event`) of `new`.
    fn forked(&mut self, parent: i32, new: i32, event: u8) {
        let parent_tgid = self.tracees.entry(parent).tgid;
        let thread = event as i32 == libc::PTRACE_EVENT_CLONE
            && std::path::Path::new(&format!("/proc/{parent_tgid}/task/{new}")).exists();
        match self.take_birth(new) {
            Some(Early::Announced) => {}
            birth => {
                if !thread {
                    (self.emit)(Record::Fork(ForkEvent {
                        seq: 0,
                        time: crate::time::now(),
                        pid: new as u32,
                        ppid: parent_tgid as u32,
                        source: Source::Ptrace,
                    }));
                }
                match birth {
                    Some(Early::Exited(status)) => {
                        if !thread {
                            (self.emit)(Record::Exit(ExitEvent {
                                seq: 0,
                                time: crate::time::now(),
                                pid: new as u32,
                                status,
                            }));
                        }
                    }
                    _ => self.tracees.add_child(parent, new, thread),
                }
            }
        }
        // The child held at its first stop goes on now that it is known.
        self.settle_deferred(Some(new));
    }

    /// `tid` is at its exec stop: the exec is recorded (and, in `--mode enforce`, the process
    /// killed before it runs an instruction of a refused program).
    fn execd(&mut self, tid: i32) {
        // On an exec from a non-leader thread the kernel gives the execing thread the
        // leader's id; GETEVENTMSG holds the id it had (ptrace(2), "execve(2) under ptrace").
        let former = ptrace::getevent(Pid::from_raw(tid))
            .map(|f| f as i32)
            .unwrap_or(tid);
        let dir = self.tracees.exec(tid, former);
        let (mut event, read) = procfs::read_exec_identified(
            dir,
            tid,
            Source::Ptrace,
            self.follow.extras,
            &mut self.follow.fingerprinter,
        );
        if let Some(read) = read {
            (self.emit)(Record::Fingerprint(read));
        }
        if event.step.is_none() {
            event.step.clone_from(&self.follow.step);
        }
        if former != tid {
            event.former_tid = Some(former as u32);
        }
        let failed = std::mem::take(&mut self.tracees.entry(tid).failed);
        self.flush_failed(
            failed,
            event.execfn.as_ref().map(|p| p.file_name().to_vec()),
        );
        // An exec that got past the refusal of its attempt (the file was swapped in
        // between, an interpreter chain): it has not run an instruction yet.
        if self.follow.refuse.is_some_and(|refuse| refuse(&event)) {
            // SAFETY: plain kill(2) of our stopped tracee.
            unsafe { libc::kill(tid, libc::SIGKILL) };
            event.blocked = true;
        }
        let keep = self
            .follow
            .at_exec
            .is_some_and(|at_exec| at_exec(tid, &event));
        (self.emit)(Record::Exec(Box::new(event)));
        if self.follow.let_go_at_exec && !keep && matches!(self.mode, Mode::Attach { .. }) {
            // The process runs on untraced; what it starts is not followed.
            if ptrace::detach(Pid::from_raw(tid), None).is_ok() {
                self.let_go(tid);
                return;
            }
        }
        self.resume(tid, 0);
    }

    /// A new process (its first stop, typically) that may exec next: its `/proc/PID` is opened
    /// now that it runs again, while the tracer has nothing else to do, rather than at its
    /// exec stop, where the process waits for it. A fork-and-exec child spends far longer
    /// getting to its exec than this takes.
    fn open_proc_dir(&mut self, tid: i32) {
        if self.tracees.open_dirs() >= self.proc_dirs_max
            || self.ending.is_some()
            || self.tracees.proc_dir(tid).is_some()
            || self
                .tracees
                .get(tid)
                .is_none_or(|t| t.execd || t.tgid != tid)
        {
            return;
        }
        if let Some(dir) = ProcDir::open(tid) {
            self.tracees.set_proc_dir(tid, dir);
        }
    }

    /// Handles the held first stops (of `only` that child, or all of them): a child its parent
    /// has not named yet is announced from `/proc`.
    fn settle_deferred(&mut self, only: Option<i32>) {
        if self.deferred.is_empty() {
            return;
        }
        let held: Vec<(i32, Stop)> = match only {
            Some(child) => {
                let Some(i) = self.deferred.iter().position(|&(t, _)| t == child) else {
                    return;
                };
                vec![self.deferred.swap_remove(i)]
            }
            None => std::mem::take(&mut self.deferred),
        };
        if self.deferred.is_empty() {
            self.deferred_since = None;
        }
        for (tid, stop) in held {
            if !self.tracees.get(tid).is_some_and(|t| t.announced) {
                self.announce(tid);
            }
            self.stopped(tid, stop);
        }
    }

    /// What an exec attempt asks for (see [`attempt::candidate`]), read through the caller's
    /// `/proc` directory when it is open already; the files read meanwhile are recorded.
    fn candidate(&mut self, tid: i32, group: Option<u32>, call: &Call) -> ExecEvent {
        let (e, reads) = attempt::candidate(
            tid,
            self.tracees.proc_dir(tid),
            group,
            call,
            &mut self.follow.fingerprinter,
        );
        for r in reads {
            (self.emit)(Record::Fingerprint(r));
        }
        e
    }

    /// An exec attempt at its seccomp stop: refused when `--mode enforce` says so, else let
    /// through with its syscall exit to be seen (to record it if it fails).
    fn exec_attempt(&mut self, tid: i32) {
        let Some(call) = attempt::seccomp_call(tid) else {
            self.resume(tid, 0);
            return;
        };
        if let Some(refuse) = self.follow.refuse {
            // The caller's ids are read only if the decision needs them, else only for a
            // refusal that is recorded.
            let group = (!self.follow.refuse_reads_ids)
                .then(|| self.tracees.get(tid).map(|t| t.tgid as u32))
                .flatten();
            let mut e = self.candidate(tid, group, &call);
            if refuse(&e) && attempt::refuse(tid, libc::EACCES) {
                if group.is_some() {
                    attempt::complete(&mut e, tid);
                }
                e.attempt = Some(Attempt::new(libc::EACCES, true));
                (self.emit)(Record::Attempt(Box::new(e)));
                self.resume(tid, 0);
                return;
            }
        }
        if self.letting_go(tid) {
            self.resume(tid, 0);
            return;
        }
        self.tracees.entry(tid).pending = Some(call);
        // SAFETY: PTRACE_SYSCALL takes no pointer: resume to the syscall's exit stop.
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, 0) };
    }

    /// Holds a failed exec attempt on its process's leader, recording the oldest beyond
    /// [`HELD_ATTEMPTS`]; with no leader to hold it on (it is gone), records it at once.
    fn hold_failed(&mut self, e: ExecEvent) {
        let Some(leader) = self.tracees.get_mut(e.tgid as i32) else {
            (self.emit)(Record::Attempt(Box::new(e)));
            return;
        };
        leader.failed.push(e);
        if leader.failed.len() > HELD_ATTEMPTS {
            let oldest = leader.failed.remove(0);
            (self.emit)(Record::Attempt(Box::new(oldest)));
        }
    }

    /// Records held failed attempts, but those of a `PATH` search for the file name the
    /// process then exec'd (`succeeded`).
    fn flush_failed(&mut self, held: Vec<ExecEvent>, succeeded: Option<Vec<u8>>) {
        for e in held {
            let name = e.execfn.as_ref().map(|p| p.file_name().to_vec());
            let search_miss = succeeded.is_some()
                && name == succeeded
                && e.attempt.as_ref().is_some_and(|a| {
                    matches!(a.errno, libc::ENOENT | libc::ENOTDIR | libc::EACCES)
                });
            if !search_miss {
                (self.emit)(Record::Attempt(Box::new(e)));
            }
        }
    }

    /// A forwarded kind of signal about to reach the command from someone else than guard: the
    /// signal thread must not send it again (see [`super::signals::start_forwarder`]).
    fn note_delivery(&self, tid: i32, sig: i32) {
        let Some(command) = self.command() else {
            return;
        };
        if self.tracees.get(tid).map(|t| t.tgid) != Some(command.root)
            || !FORWARDED.iter().any(|s| *s as i32 == sig)
        {
            return;
        }
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
        // SAFETY: PTRACE_GETSIGINFO on a tracee in signal-delivery-stop writes a siginfo_t.
        let rc = unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid, 0, info.as_mut_ptr()) };
        if rc != 0 {
            return;
        }
        // SAFETY: the kernel filled info; si_pid is meaningful for signals sent by a process.
        let sender = unsafe { info.assume_init().si_pid() };
        // SAFETY: getpid(2) cannot fail.
        if sender != unsafe { libc::getpid() } {
            command.forwarding.delivered(sig, sender);
        }
    }

    /// Continues a tracee (or, once the command has exited, detaches it), delivering `sig`.
    fn resume(&mut self, tid: i32, sig: i32) {
        // Raw requests: the signal is any number the kernel reported, real-time signals (32–64)
        // included, which `nix::Signal` cannot represent — dropping them would break glibc's
        // setxid broadcast and programs that use SIGRTMIN.
        let request = if self.letting_go(tid) {
            self.let_go(tid);
            libc::PTRACE_DETACH
        } else {
            libc::PTRACE_CONT
        };
        // SAFETY: PTRACE_CONT/PTRACE_DETACH take no pointer; `data` is the signal number.
        // ESRCH (it died meanwhile) needs no handling: its exit is reported.
        unsafe { libc::ptrace(request, tid, 0, sig as libc::c_long) };
    }

    fn continue_root_if_stopped(&mut self) {
        let Some(root) = self.command().map(|c| c.root) else {
            return;
        };
        if self.tracees.get(root).is_some_and(|t| t.group_stopped) {
            // SAFETY: plain kill(2) to our traced command.
            unsafe { libc::kill(root, libc::SIGCONT) };
        }
    }
}

/// Whether a task is a zombie (or gone).
fn is_zombie(tid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// When a thread started (clock ticks after boot, field 22 of `/proc/TID/stat`): with its id,
/// this names the thread, whose id may be reused once it is gone. `None` if it is gone.
fn start_time(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The command name (field 2) may hold anything; the fields after it start with the state.
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// The thread-group id and the parent of a thread, from `/proc/TID/status`.
fn ids_of(tid: i32) -> Option<(i32, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| -> Option<i32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("Tgid:")?, field("PPid:")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ptrace::tracee::Tracee;

    /// The leak this module's one-table state fixes: the old tracer remembered exec'd
    /// processes by pid and never forgot them, so a new child that reused the pid of one that
    /// exec'd and exited was let go at once at the end, without the grace to record its exec.
    #[test]
    fn a_new_child_reusing_the_pid_of_one_that_execd_gets_the_grace() {
        let mut records = Vec::new();
        let mut emit = |r: Record| records.push(r);
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Tracer::new(Mode::Attach { stop }, Follow::default(), &mut emit);
        let mut attached = Tracee::new(100, true);
        attached.execd = true;
        t.tracees.insert(100, attached);
        t.tracees.add_child(100, 200, false);
        t.tracees.exec(200, 200);
        t.exited(200, ExitStatus::Code(0));
        // pid 200 is reused by a new child of 100 that has not exec'd yet.
        t.tracees.add_child(100, 200, false);
        t.ending = Some(Instant::now());
        assert!(t.letting_go(100), "an attached process is let go at once");
        assert!(
            !t.letting_go(200),
            "a child that has not exec'd gets the grace"
        );
        t.grace_over = true;
        assert!(t.letting_go(200));
        drop(t);
        assert!(matches!(
            records[..],
            [Record::Exit(ExitEvent { pid: 200, .. })]
        ));
    }

    /// A child's exit reported before its parent's fork event is recorded after its fork.
    #[test]
    fn an_early_exit_is_recorded_after_the_fork() {
        let mut records = Vec::new();
        let mut emit = |r: Record| records.push(r);
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Tracer::new(Mode::Attach { stop }, Follow::default(), &mut emit);
        t.tracees.insert(100, Tracee::new(100, true));
        t.exited(300, ExitStatus::Signal(libc::SIGKILL));
        assert!(!t.tracees.contains(300));
        t.forked(100, 300, libc::PTRACE_EVENT_FORK as u8);
        assert!(!t.tracees.contains(300), "it is gone");
        assert!(t.births.is_empty());
        drop(t);
        assert!(matches!(
            records[..],
            [
                Record::Fork(ForkEvent {
                    pid: 300,
                    ppid: 100,
                    ..
                }),
                Record::Exit(ExitEvent { pid: 300, .. })
            ]
        ));
    }

    /// A real process, untraced: it lends its pid and start time.
    fn a_process() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep runs")
    }

    /// A birth left by an earlier process with a pid (its parent was killed before reporting
    /// the fork) is not applied when a new process with that pid is forked: it is recorded
    /// and followed like any child. The same birth of this very process is applied.
    #[test]
    fn a_birth_is_applied_only_to_its_own_process() {
        let mut child = a_process();
        let pid = child.id() as i32;
        let start = start_time(pid).expect("it runs");
        let at_boot = Some(0);
        let killed = Early::Exited(ExitStatus::Signal(libc::SIGKILL));
        // (the birth kept, whether the fork record is out, whether the exit is recorded,
        // whether the child is followed)
        let cases = [
            (at_boot, Early::Announced, false, false, true),
            (at_boot, killed, false, false, true),
            (Some(start), Early::Announced, true, false, false),
            (Some(start), killed, false, true, false),
        ];
        for (birth_start, early, announced, exited, followed) in cases {
            let mut records = Vec::new();
            let mut emit = |r: Record| records.push(r);
            let stop = Arc::new(AtomicBool::new(false));
            let mut t = Tracer::new(Mode::Attach { stop }, Follow::default(), &mut emit);
            t.tracees.insert(100, Tracee::new(100, true));
            let birth = Birth {
                start: birth_start,
                early,
            };
            t.births.insert(pid, birth);
            t.forked(100, pid, libc::PTRACE_EVENT_FORK as u8);
            assert!(t.births.is_empty());
            let tracee = t.tracees.get(pid);
            assert_eq!(tracee.is_some(), followed, "{birth:?}");
            assert!(tracee.is_none_or(|t| t.announced && !t.execd && t.tgid == pid));
            drop(t);
            let forks = records
                .iter()
                .filter(|r| matches!(r, Record::Fork(ForkEvent { pid: p, ppid: 100, .. }) if *p == pid as u32))
                .count();
            let exits = records
                .iter()
                .filter(|r| matches!(r, Record::Exit(ExitEvent { pid: p, .. }) if *p == pid as u32))
                .count();
            assert_eq!(
                (forks, exits),
                (usize::from(!announced), usize::from(exited)),
                "{birth:?}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A first stop of a pid drops the birth an earlier process with that pid left, so that its
    /// parent's fork event, even if it comes after the first stop is held, does not apply it.
    #[test]
    fn a_first_stop_drops_an_earlier_birth() {
        let mut records = Vec::new();
        let mut emit = |r: Record| records.push(r);
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Tracer::new(Mode::Attach { stop }, Follow::default(), &mut emit);
        t.tracees.insert(100, Tracee::new(100, true));
        let early = Early::Exited(ExitStatus::Code(0));
        // A pid that no process has: no stop is really resumed.
        let pid = i32::MAX;
        t.births.insert(pid, Birth { start: None, early });
        t.stopped(pid, Stop::Trap);
        assert!(t.births.is_empty());
        assert_eq!(t.deferred.len(), 1, "held for its parent's fork event");
    }
}
