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

use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

use crate::event::{Attempt, EndEvent, ExecEvent, ExitEvent, ExitStatus, ForkEvent, Source};
use crate::sources::fingerprint::Fingerprinter;
use crate::trace::Record;

use super::attempt::{self, Call};

/// The options set on every tracee (inherited by auto-attached children).
const OPTIONS: Options = Options::PTRACE_O_TRACEFORK
    .union(Options::PTRACE_O_TRACEVFORK)
    .union(Options::PTRACE_O_TRACECLONE)
    .union(Options::PTRACE_O_TRACEEXEC)
    .union(Options::PTRACE_O_EXITKILL);

/// With exec attempts traced: the seccomp stops of the filter's `SECCOMP_RET_TRACE`, and
/// syscall stops told apart from signals (for the exit of a failed exec).
const ATTEMPT_OPTIONS: Options = OPTIONS
    .union(Options::PTRACE_O_TRACESECCOMP)
    .union(Options::PTRACE_O_TRACESYSGOOD);

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

/// Signals sent to guard that are passed on to the command: those a user, a script or a CI
/// runner sends to stop, interrupt or poke a command (guard stands in for it).
const FORWARDED: [Signal; 11] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGWINCH,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

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

/// A ptrace stop, as ptrace(2) names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Signal-delivery-stop: the tracee is about to receive this signal.
    Signal(i32),
    /// Group-stop (`PTRACE_EVENT_STOP` with a stopping signal): the process is stopped by job control.
    Group(i32),
    /// `PTRACE_EVENT_STOP` with `SIGTRAP`: a new child's first stop, `PTRACE_INTERRUPT`, or a
    /// `SIGCONT` waking a listening tracee.
    Trap,
    /// `PTRACE_EVENT_FORK` / `VFORK` / `CLONE`.
    Fork(u8),
    /// `PTRACE_EVENT_EXEC`.
    Exec,
    /// `PTRACE_EVENT_SECCOMP`: an exec attempt, before the kernel acts on it.
    Seccomp,
    /// A syscall stop (`SIGTRAP | 0x80`): the exit of an exec attempt we asked to see.
    Syscall,
    /// Any other event (not requested; resumed as is).
    Other(u8),
}

/// What `waitpid` reported for one tracee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Stopped(Stop),
    Exited(ExitStatus),
}

fn decode(status: i32) -> Option<Wait> {
    if libc::WIFEXITED(status) {
        return Some(Wait::Exited(ExitStatus::Code(libc::WEXITSTATUS(status))));
    }
    if libc::WIFSIGNALED(status) {
        return Some(Wait::Exited(ExitStatus::Signal(libc::WTERMSIG(status))));
    }
    if !libc::WIFSTOPPED(status) {
        return None;
    }
    let sig = libc::WSTOPSIG(status);
    let event = ((status >> 16) & 0xff) as u8;
    let stop = match event as i32 {
        0 if sig == libc::SIGTRAP | 0x80 => Stop::Syscall,
        0 => Stop::Signal(sig),
        libc::PTRACE_EVENT_SECCOMP => Stop::Seccomp,
        libc::PTRACE_EVENT_STOP => match sig {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Stop::Group(sig),
            _ => Stop::Trap,
        },
        libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
            Stop::Fork(event)
        }
        libc::PTRACE_EVENT_EXEC => Stop::Exec,
        _ => Stop::Other(event),
    };
    Some(Wait::Stopped(stop))
}

/// Why a command could not be traced.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create a pipe: {0}")]
    Pipe(Errno),
    #[error("cannot fork: {0}")]
    Fork(Errno),
    #[error("tracing refused by the kernel (PTRACE_SEIZE: {0}); a container may need CAP_SYS_PTRACE or a seccomp profile that allows ptrace")]
    Seize(Errno),
    #[error("a command argument contains a NUL byte")]
    Nul,
    #[error("no command given")]
    Empty,
}

/// The end of a traced run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// How the command ended (`None` if it was never started).
    pub status: ExitStatus,
    /// Set when the command could not be executed at all (exit status 126/127 follows).
    pub exec_error: Option<Errno>,
    /// Set when the seccomp filter that keeps the traced tree closed could not be installed
    /// (guard's own failure: 125; the command did not run).
    pub filter_error: Option<Errno>,
    /// Processes still running when the command exited; they were detached and run on untraced.
    pub outlived: Vec<u32>,
    /// Tracees that did not let go within the deadline (killed by `EXITKILL` when guard exits).
    pub stuck: Vec<u32>,
}

struct Tracee {
    tgid: i32,
    /// Stopped by job control and listening (`PTRACE_LISTEN`).
    group_stopped: bool,
    /// Its fork record was emitted (or it is a thread, or the root). A new child can report
    /// its first stop, exec or even exit before its parent reports the fork event: its fork
    /// record is emitted at its own first report, so that the trace stays causally ordered.
    announced: bool,
}

/// A spawned command, seized and released to run its exec.
pub struct Traced {
    root: Pid,
    err_read: OwnedFd,
    signals: Arc<Forwarding>,
}

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
}

fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(SpawnError::Pipe(Errno::last()));
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `cmd` (looked up in `PATH` like a shell does) as a seized tracee. With `attempts`,
/// every `execve`/`execveat` of the tree also stops before it happens (seccomp
/// `SECCOMP_RET_TRACE`), so that failed and refused execs are seen.
///
/// Must be called while the process is single-threaded: the child between fork and exec only
/// makes async-signal-safe calls.
pub fn spawn(cmd: &[OsString], attempts: bool) -> Result<Traced, SpawnError> {
    if cmd.is_empty() {
        return Err(SpawnError::Empty);
    }
    let argv: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| SpawnError::Nul))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    // Block the signals we forward before any thread exists, so that the forwarding thread
    // inherits the mask and receives them with sigwaitinfo; the child restores the old mask.
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let old_mask = forwarded
        .thread_swap_mask(signal::SigmaskHow::SIG_BLOCK)
        .map_err(SpawnError::Fork)?;

    let (go_read, go_write) = pipe_cloexec()?;
    let (err_read, err_write) = pipe_cloexec()?;
    let filter = untraced_filter::program(attempts);
    let fprog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: getpid(2) cannot fail.
    let parent = unsafe { libc::getpid() };
    let closed = INHERITED_CLOSED.load(Ordering::SeqCst);
    let pipe_ignored = INHERITED_PIPE_IGNORED.load(Ordering::SeqCst);

    // SAFETY: the child only calls async-signal-safe functions (signal, sigprocmask, close, read,
    // execvp, write, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: see above; raw pointers point into argv/argv_ptrs, alive until exec.
        unsafe {
            // If guard dies before it has seized us, we must not run on untraced.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(125);
            }
            // Rust ignores SIGPIPE, and an ignored disposition survives exec: give the command
            // the one guard inherited. Standard descriptors guard inherited closed are closed
            // again (the runtime put /dev/null on them).
            libc::signal(
                libc::SIGPIPE,
                if pipe_ignored {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                },
            );
            for fd in 0..3 {
                if closed & (1 << fd) != 0 {
                    libc::close(fd);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, old_mask.as_ref(), std::ptr::null_mut());
            // Our copies of the parent's ends: the release is a byte from the parent.
            libc::close(go_write.as_raw_fd());
            libc::close(err_read.as_raw_fd());
            let mut byte = 0u8;
            // Wait until the parent has seized us, so that our exec is seen; EOF means it
            // died or gave up, and then we do not run at all.
            loop {
                let n = libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n == 0 || *libc::__errno_location() != libc::EINTR {
                    libc::_exit(125);
                }
            }
            // Close the way out of the traced tree (see `untraced_filter`). Unprivileged, a
            // filter needs no_new_privs — which changes nothing here: a set-user-ID exec under
            // an unprivileged tracer gains no privilege anyway.
            if libc::geteuid() != 0 {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            }
            // SPEC_ALLOW: the kernel would otherwise switch on its speculation mitigations for
            // every filtered process where they are in "seccomp" mode (SSBD, STIBP: slower
            // code), which the command did not ask for; it runs as it would without guard.
            let mut rc = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                &fprog as *const libc::sock_fprog,
            );
            let errno = *libc::__errno_location();
            if rc != 0 && (errno == libc::EINVAL || errno == libc::ENOSYS) {
                // Before Linux 4.17 (no such flag: no mitigation is tied to seccomp there), or
                // before 3.17 / a sandbox without seccomp(2): the older interface.
                rc = libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) as libc::c_long;
            }
            if rc != 0 {
                let errno: i32 = -*libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                libc::_exit(125);
            }
            libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
            let errno: i32 = *libc::__errno_location();
            libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
            libc::_exit(if errno == libc::ENOENT { 127 } else { 126 });
        }
    }
    drop(go_read);
    drop(err_write);
    let root = Pid::from_raw(pid);
    let options = if attempts { ATTEMPT_OPTIONS } else { OPTIONS };
    if let Err(e) = ptrace::seize(root, options) {
        let _ = signal::kill(root, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(root, None);
        let _ = old_mask.thread_set_mask();
        return Err(SpawnError::Seize(e));
    }
    // Release the child: it execs now.
    // SAFETY: write(2) of one byte from a local.
    unsafe { libc::write(go_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    drop(go_write);

    let signals = Arc::new(Forwarding {
        root: AtomicI32::new(pid),
        delivered: Default::default(),
    });
    start_forwarder(forwarded, signals.clone());
    Ok(Traced {
        root,
        err_read,
        signals,
    })
}

/// Standard descriptors (bits 0-2) that were closed when guard was started.
static INHERITED_CLOSED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
/// Whether SIGPIPE was ignored when guard was started.
static INHERITED_PIPE_IGNORED: AtomicBool = AtomicBool::new(false);

/// Notes what guard inherited that Rust's runtime changes before `main`: standard descriptors
/// that were closed (the runtime opens `/dev/null` on them) and an ignored SIGPIPE (the runtime
/// ignores it in any case). The command gets them back as they were, so that `cmd <&-` or
/// `trap '' PIPE` mean under guard what they mean without it.
///
/// Must run before the runtime's initialisation: the binary calls it from an `.init_array`
/// constructor. Only async-signal-safe calls, no allocation.
pub fn record_inherited() {
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: F_GETFD takes no argument; EBADF means the descriptor is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        {
            closed |= 1 << fd;
        }
    }
    INHERITED_CLOSED.store(closed, Ordering::SeqCst);
    // SAFETY: querying the disposition only (a null new action).
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    };
    INHERITED_PIPE_IGNORED.store(ignored, Ordering::SeqCst);
}

/// What the signal thread and the tracer share: the command to forward to, and the signals the
/// command has just been delivered (seen by the tracer at their signal-delivery-stop).
struct Forwarding {
    /// The command's pid; 0 once it has exited.
    root: AtomicI32,
    /// (signal, sender pid, when) of signals delivered to the command by someone else than guard.
    delivered: std::sync::Mutex<VecDeque<(i32, i32, Instant)>>,
}

/// How long a delivery is remembered, and how long the signal thread looks for a signal sent to
/// guard's whole process group reaching the command by itself.
const DELIVERY_MEMORY: Duration = Duration::from_secs(2);
const GROUP_SIGNAL_WAIT: Duration = Duration::from_millis(30);

impl Forwarding {
    fn delivered(&self, signo: i32, sender: i32) {
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while d
            .front()
            .is_some_and(|&(_, _, t)| now.duration_since(t) > DELIVERY_MEMORY)
        {
            d.pop_front();
        }
        if d.len() >= 64 {
            d.pop_front();
        }
        d.push_back((signo, sender, now));
    }

    /// Takes the record of `signo` from `sender` reaching the command, when there is one.
    fn take(&self, signo: i32, sender: i32) -> bool {
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        let found = d
            .iter()
            .position(|&(s, p, t)| s == signo && p == sender && t.elapsed() <= DELIVERY_MEMORY);
        found.map(|i| d.remove(i)).is_some()
    }
}

/// Whether process `pid` is one of our tracees (its `TracerPid` is guard).
fn traced_by_us(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    // SAFETY: getpid(2) cannot fail.
    let me = unsafe { libc::getpid() };
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse::<i32>().ok())
        == Some(me)
}

/// Whether `signo` is pending for process `pid` (shared or for its main thread).
fn pending(pid: i32, signo: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status.lines().any(|l| {
        let mask = l
            .strip_prefix("ShdPnd:")
            .or_else(|| l.strip_prefix("SigPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1u64 << (signo - 1)) != 0)
    })
}

/// A thread that receives the forwarded signals and passes those sent *to guard* on to the
/// command, once: a signal reaches the command by itself when it came from the terminal
/// (`si_code == SI_KERNEL`) or was sent to the whole process group that guard and the command
/// share (`kill -TERM -- -PGID`, coreutils `timeout`). The second case cannot be told from a
/// signal sent to guard alone by its `siginfo`, so when the command shares guard's group, the
/// thread looks for the same signal from the same sender pending at the command or delivered
/// to it (the tracer notes every delivery) for up to 30 ms before sending it on.
fn start_forwarder(set: SigSet, fwd: Arc<Forwarding>) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
            // SAFETY: set is a valid sigset; info is written by the kernel on success.
            let signo = unsafe { libc::sigwaitinfo(set.as_ref(), info.as_mut_ptr()) };
            if signo < 0 {
                continue;
            }
            // SAFETY: sigwaitinfo returned a signal, so info is initialised.
            let info = unsafe { info.assume_init() };
            if info.si_code == libc::SI_KERNEL {
                continue;
            }
            // SAFETY: for SI_USER/SI_QUEUE/SI_TKILL the kernel fills si_pid; for other codes
            // the field reads as some pid that matches no delivery, and the signal is sent on.
            let sender = unsafe { info.si_pid() };
            let pid = fwd.root.load(Ordering::SeqCst);
            if pid <= 0 {
                continue;
            }
            // A signal from the command's own tree to its parent (`kill -USR1 $PPID`, a
            // readiness notice) is meant for whoever started it, not for the command: guard
            // does not send it back down.
            if sender == pid || traced_by_us(sender) {
                continue;
            }
            // SAFETY: getpgid(2)/getpgrp(2) take plain integers.
            let same_group = unsafe { libc::getpgid(pid) == libc::getpgrp() };
            if same_group {
                let deadline = Instant::now() + GROUP_SIGNAL_WAIT;
                // One last look after the deadline: we may have been stopped or descheduled
                // past it (guard stopped by the same Ctrl-Z), and the delivery noted meanwhile.
                let reached = loop {
                    let late = Instant::now() >= deadline;
                    if fwd.take(signo, sender) || pending(pid, signo) {
                        break true;
                    }
                    if late {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                if reached {
                    continue;
                }
            }
            // SAFETY: plain kill(2) with a signal number we received.
            unsafe { libc::kill(pid, signo) };
        })
        .expect("spawning the signal thread");
}

/// Follows the tree until the command exits, then detaches what it left running.
pub struct Tracer<'s> {
    /// The spawned command (`guard run`); `None` when attached to existing processes.
    root: Option<Pid>,
    /// Set (and the tracer thread interrupted with `SIGUSR1`) to end an attached session.
    stop: Option<Arc<AtomicBool>>,
    tracees: HashMap<i32, Tracee>,
    emit: &'s mut dyn FnMut(Record),
    ending: Option<Instant>,
    root_status: Option<ExitStatus>,
    outlived: Vec<u32>,
    /// After guard was stopped and continued: when to check that the command was continued too.
    cont_check: Option<Instant>,
    /// Exits of new children reported before anything else about them (killed before their
    /// first stop): emitted after their fork record.
    early_exits: HashMap<i32, ExitStatus>,
    /// New children announced at their own first report, whose parent's fork event is due.
    early: std::collections::HashSet<i32>,
    /// Processes (thread groups) that exec'd while traced, or were attached: once the command
    /// has exited they are let go at once; the others only after their exec or the grace.
    execd: std::collections::HashSet<i32>,
    /// Set when the grace for processes that have not exec'd yet has run out.
    grace_over: bool,
    follow: Follow<'s>,
    /// Exec attempts let through, whose syscall exit is due (by thread).
    pending: HashMap<i32, Call>,
    /// Failed exec attempts not recorded yet (by process): a `PATH` search tries one directory
    /// after another, and the misses of a search that then succeeds are not worth a record.
    failed: HashMap<i32, Vec<ExecEvent>>,
    /// `guard run`: where the signals delivered to the command are noted for the signal thread.
    forwarding: Option<Arc<Forwarding>>,
    /// Guard stopped itself for the command's current stop (until the command gets SIGCONT).
    root_stop_mirrored: bool,
    /// First stops of new tracees whose parent's fork event has not been seen yet, held (the
    /// tracee stays stopped) until the events already queued are read: the parent's fork event
    /// is nearly always among them and names the child, which spares a `/proc` read.
    deferred: Vec<(i32, Stop)>,
    /// When the oldest of them was held: none is held longer than [`DEFERRED_FOR`], however
    /// busy the queue (its parent may have been killed before reporting the fork).
    deferred_since: Option<Instant>,
    /// `/proc/PID` of processes that have not exec'd yet, opened ahead of their exec stop
    /// (see [`Tracer::open_proc_dir`]); closed at their exec or exit.
    proc_dirs: HashMap<i32, super::proc::ProcDir>,
    /// [`PROC_DIRS_MAX`], or a quarter of the descriptors guard may open if that is less.
    proc_dirs_max: usize,
}

impl Traced {
    pub fn root(&self) -> u32 {
        self.root.as_raw() as u32
    }

    /// Runs the event loop; `emit` receives every record (sequence numbers are left at 0).
    pub fn follow(self, follow: Follow<'_>, emit: &mut dyn FnMut(Record)) -> RunResult {
        let mut t = Tracer::new(Some(self.root), None, follow, emit);
        t.forwarding = Some(self.signals.clone());
        t.tracees.insert(
            self.root.as_raw(),
            Tracee {
                tgid: self.root.as_raw(),
                group_stopped: false,
                announced: true,
            },
        );
        let stuck = t.run();
        self.signals.root.store(0, Ordering::SeqCst);
        let status = t.root_status.unwrap_or(ExitStatus::Code(125));
        let mut exec_error = None;
        let mut buf = [0u8; 4];
        // SAFETY: reading into a 4-byte buffer from an fd we own.
        let n = unsafe { libc::read(self.err_read.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        let mut filter_error = None;
        if n == 4 {
            let code = i32::from_ne_bytes(buf);
            if code < 0 {
                filter_error = Some(Errno::from_raw(-code));
            } else {
                exec_error = Some(Errno::from_raw(code));
            }
        }
        RunResult {
            status,
            exec_error,
            filter_error,
            outlived: t.outlived,
            stuck,
        }
    }
}

impl<'s> Tracer<'s> {
    fn new(
        root: Option<Pid>,
        stop: Option<Arc<AtomicBool>>,
        follow: Follow<'s>,
        emit: &'s mut dyn FnMut(Record),
    ) -> Tracer<'s> {
        Tracer {
            root,
            stop,
            tracees: HashMap::new(),
            emit,
            ending: None,
            root_status: None,
            outlived: Vec::new(),
            cont_check: None,
            early_exits: HashMap::new(),
            early: Default::default(),
            execd: Default::default(),
            grace_over: false,
            follow,
            pending: HashMap::new(),
            failed: HashMap::new(),
            forwarding: None,
            root_stop_mirrored: false,
            deferred: Vec::new(),
            deferred_since: None,
            proc_dirs: HashMap::new(),
            proc_dirs_max: PROC_DIRS_MAX.min(open_files_limit() / 4),
        }
    }

    fn run(&mut self) -> Vec<u32> {
        let stuck = self.event_loop();
        let held: Vec<i32> = self.failed.keys().copied().collect();
        for tgid in held {
            self.flush_failed(tgid, None);
        }
        stuck
    }

    fn event_loop(&mut self) -> Vec<u32> {
        loop {
            if self.ending.is_some() && self.tracees.is_empty() && self.deferred.is_empty() {
                return Vec::new();
            }
            if self.ending.is_none() && self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            {
                self.begin_detach();
                continue;
            }
            if let Some(deadline) = self.cont_check {
                if Instant::now() >= deadline {
                    self.cont_check = None;
                    self.continue_root_if_stopped();
                }
            }
            if self
                .deferred_since
                .is_some_and(|since| since.elapsed() >= DEFERRED_FOR)
            {
                self.settle_deferred(None);
            }
            let polling =
                self.ending.is_some() || self.cont_check.is_some() || !self.deferred.is_empty();
            let mut status = 0;
            let flags = libc::__WALL | if polling { libc::WNOHANG } else { 0 };
            // SAFETY: waitpid with a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    // Attached, and every tracee is gone: wait for the stop request.
                    Errno::ECHILD if self.stop.is_some() && self.ending.is_none() => {
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
                        return self.tracees.keys().map(|&t| t as u32).collect();
                    }
                    // A thread-group leader that ended with pthread_exit while its other
                    // threads run is a zombie that never stops again: nothing to let go of.
                    if self.grace_over && since.elapsed().as_millis() % 50 == 0 {
                        self.tracees.retain(|tid, _| !is_zombie(*tid));
                        let tracees = &self.tracees;
                        self.proc_dirs.retain(|pid, _| tracees.contains_key(pid));
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
        self.root.is_some_and(|r| r.as_raw() == pid)
    }

    /// Whether a thread belongs to the command's own process (any of its threads).
    fn in_root(&self, tid: i32) -> bool {
        self.root
            .is_some_and(|r| self.tracees.get(&tid).map(|t| t.tgid) == Some(r.as_raw()))
    }

    fn exited(&mut self, pid: i32, status: ExitStatus) {
        self.proc_dirs.remove(&pid);
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
        if !self.is_root(pid) && !self.tracees.get(&pid).is_some_and(|t| t.announced) {
            self.tracees.remove(&pid);
            self.early_exits.insert(pid, status);
            return;
        }
        let tracee = self.tracees.remove(&pid);
        self.pending.remove(&pid);
        let is_leader = tracee.as_ref().is_none_or(|t| t.tgid == pid);
        if is_leader {
            self.flush_failed(pid, None);
            (self.emit)(Record::Exit(ExitEvent {
                seq: 0,
                time: crate::time::now(),
                pid: pid as u32,
                status,
            }));
        }
        if self.is_root(pid) && self.ending.is_none() {
            self.root_status = Some(status);
            self.begin_end(status);
        }
    }

    /// The command exited: every remaining tracee is interrupted and, at its next stop,
    /// detached. They run on untraced, and are reported as having outlived the command.
    fn begin_end(&mut self, status: ExitStatus) {
        self.ending = Some(Instant::now());
        let mut outlived: Vec<u32> = self.tracees.values().map(|t| t.tgid as u32).collect();
        outlived.sort_unstable();
        outlived.dedup();
        self.outlived = outlived.clone();
        (self.emit)(Record::End(EndEvent {
            seq: 0,
            time: crate::time::now(),
            status,
            outlived,
        }));
        self.begin_detach();
    }

    /// Interrupts every tracee; each is detached at its next stop.
    fn begin_detach(&mut self) {
        self.ending.get_or_insert_with(Instant::now);
        for (&tid, t) in &self.tracees {
            if self.grace_over || self.execd.contains(&t.tgid) {
                // ESRCH: it is exiting; its exit will be reported.
                let _ = ptrace::interrupt(Pid::from_raw(tid));
            }
        }
    }

    /// Whether a tracee is let go at its next stop (once the command has exited).
    fn letting_go(&self, tid: i32) -> bool {
        self.ending.is_some()
            && (self.grace_over
                || self
                    .tracees
                    .get(&tid)
                    .is_none_or(|t| self.execd.contains(&t.tgid)))
    }

    fn tracee(&mut self, tid: i32) -> &mut Tracee {
        self.tracees.entry(tid).or_insert_with(|| Tracee {
            tgid: tid,
            group_stopped: false,
            announced: false,
        })
    }

    /// First report of a new tracee whose parent's fork event we have not seen yet: learn
    /// its thread group and parent from `/proc` (it is stopped) and emit its fork record now.
    fn announce(&mut self, tid: i32) {
        self.announce_as(tid, ids_of(tid).unwrap_or((tid, 0)));
    }

    /// [`Self::announce`] with the thread group and parent already read.
    fn announce_as(&mut self, tid: i32, (tgid, ppid): (i32, i32)) {
        let t = self.tracee(tid);
        t.tgid = tgid;
        t.announced = true;
        self.early.insert(tid);
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

    fn stopped(&mut self, tid: i32, stop: Stop) {
        if !self.tracees.get(&tid).is_some_and(|t| t.announced) {
            if self.ending.is_none() && self.deferred.len() < DEFERRED_MAX {
                self.deferred.push((tid, stop));
                self.deferred_since.get_or_insert_with(Instant::now);
                return;
            }
            self.announce(tid);
        }
        self.tracee(tid).group_stopped = false;
        match stop {
            Stop::Signal(sig) => {
                self.note_delivery(tid, sig);
                if sig == libc::SIGCONT && self.in_root(tid) {
                    self.root_stop_mirrored = false;
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
                    self.tracee(tid).group_stopped = true;
                    // Once per stop: a stopped tracee reports its group-stop again when a
                    // signal (a SIGCHLD from its own stopped child) wakes it; only a SIGCONT
                    // ends the stop guard mirrored.
                    if self.is_root(tid) && !self.root_stop_mirrored {
                        self.root_stop_mirrored = true;
                        self.mirror_stop(sig);
                    }
                }
            }
            Stop::Trap | Stop::Other(_) => {
                // The end of a group-stop (SIGCONT came) is reported as such a stop too.
                if self.in_root(tid) {
                    self.root_stop_mirrored = false;
                }
                self.resume(tid, 0);
                self.open_proc_dir(tid);
            }
            Stop::Fork(event) => {
                if let Ok(new) = ptrace::getevent(Pid::from_raw(tid)) {
                    let new = new as i32;
                    let parent_tgid = self.tracee(tid).tgid;
                    let thread = event as i32 == libc::PTRACE_EVENT_CLONE
                        && std::path::Path::new(&format!("/proc/{parent_tgid}/task/{new}"))
                            .exists();
                    let tgid = if thread { parent_tgid } else { new };
                    let early_exit = self.early_exits.remove(&new);
                    if !self.early.remove(&new) {
                        if !thread {
                            (self.emit)(Record::Fork(ForkEvent {
                                seq: 0,
                                time: crate::time::now(),
                                pid: new as u32,
                                ppid: parent_tgid as u32,
                                source: Source::Ptrace,
                            }));
                        }
                        match early_exit {
                            Some(status) if !thread => (self.emit)(Record::Exit(ExitEvent {
                                seq: 0,
                                time: crate::time::now(),
                                pid: new as u32,
                                status,
                            })),
                            Some(_) => {}
                            None => {
                                self.tracees.insert(
                                    new,
                                    Tracee {
                                        tgid,
                                        group_stopped: false,
                                        announced: true,
                                    },
                                );
                            }
                        }
                    }
                    // The child held at its first stop goes on now that it is known.
                    self.settle_deferred(Some(new));
                }
                self.resume(tid, 0);
            }
            Stop::Exec => {
                // On an exec from a non-leader thread the kernel gives the execing thread the
                // leader's id; GETEVENTMSG holds the id it had (ptrace(2), "execve(2) under ptrace").
                let former = ptrace::getevent(Pid::from_raw(tid))
                    .map(|f| f as i32)
                    .unwrap_or(tid);
                if former != tid {
                    self.tracees.remove(&former);
                }
                self.pending.remove(&former);
                self.pending.remove(&tid);
                self.tracee(tid).tgid = tid;
                self.execd.insert(tid);
                let (mut event, read) = super::proc::read_exec_identified(
                    self.proc_dirs.remove(&tid),
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
                self.flush_failed(tid, event.execfn.as_ref().map(|p| p.file_name().to_vec()));
                // An exec that got past the refusal of its attempt (the file was swapped in
                // between, an interpreter chain): it has not run an instruction yet.
                if self.follow.refuse.is_some_and(|refuse| refuse(&event)) {
                    // SAFETY: plain kill(2) of our stopped tracee.
                    unsafe { libc::kill(tid, libc::SIGKILL) };
                    event.blocked = true;
                }
                (self.emit)(Record::Exec(Box::new(event)));
                self.resume(tid, 0);
            }
            Stop::Seccomp => self.exec_attempt(tid),
            Stop::Syscall => {
                if let Some(call) = self.pending.remove(&tid) {
                    if let Some(errno) = attempt::exit_errno(tid) {
                        let mut e = self.candidate(tid, None, &call);
                        e.attempt = Some(Attempt::new(errno, false));
                        let tgid = e.tgid as i32;
                        let held = self.failed.entry(tgid).or_default();
                        held.push(e);
                        if held.len() > HELD_ATTEMPTS {
                            let oldest = held.remove(0);
                            (self.emit)(Record::Attempt(Box::new(oldest)));
                        }
                    }
                }
                self.resume(tid, 0);
            }
        }
    }

    /// A new process (its first stop, typically) that may exec next: its `/proc/PID` is opened
    /// now that it runs again, while the tracer has nothing else to do, rather than at its
    /// exec stop, where the process waits for it. A fork-and-exec child spends far longer
    /// getting to its exec than this takes.
    fn open_proc_dir(&mut self, tid: i32) {
        if self.proc_dirs.len() >= self.proc_dirs_max
            || self.ending.is_some()
            || self.execd.contains(&tid)
            || self.proc_dirs.contains_key(&tid)
            || self.tracees.get(&tid).is_none_or(|t| t.tgid != tid)
        {
            return;
        }
        if let Some(dir) = super::proc::ProcDir::open(tid) {
            self.proc_dirs.insert(tid, dir);
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
            if !self.tracees.get(&tid).is_some_and(|t| t.announced) {
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
            self.proc_dirs.get(&tid),
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
                .then(|| self.tracees.get(&tid).map(|t| t.tgid as u32))
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
        self.pending.insert(tid, call);
        // SAFETY: PTRACE_SYSCALL takes no pointer: resume to the syscall's exit stop.
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, 0) };
    }

    /// Records the failed attempts held for a process, but those of a `PATH` search for the
    /// file name it then exec'd (`succeeded`).
    fn flush_failed(&mut self, tgid: i32, succeeded: Option<Vec<u8>>) {
        let Some(held) = self.failed.remove(&tgid) else {
            return;
        };
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
    /// signal thread must not send it again (see [`start_forwarder`]).
    fn note_delivery(&mut self, tid: i32, sig: i32) {
        let Some(fwd) = &self.forwarding else { return };
        let root = self.root.map_or(0, |r| r.as_raw());
        if self.tracees.get(&tid).map(|t| t.tgid) != Some(root)
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
            fwd.delivered(sig, sender);
        }
    }

    /// Continues a tracee (or, once the command has exited, detaches it), delivering `sig`.
    fn resume(&mut self, tid: i32, sig: i32) {
        // Raw requests: the signal is any number the kernel reported, real-time signals (32–64)
        // included, which `nix::Signal` cannot represent — dropping them would break glibc's
        // setxid broadcast and programs that use SIGRTMIN.
        let request = if self.letting_go(tid) {
            self.tracees.remove(&tid);
            self.proc_dirs.remove(&tid);
            libc::PTRACE_DETACH
        } else {
            libc::PTRACE_CONT
        };
        // SAFETY: PTRACE_CONT/PTRACE_DETACH take no pointer; `data` is the signal number.
        // ESRCH (it died meanwhile) needs no handling: its exit is reported.
        unsafe { libc::ptrace(request, tid, 0, sig as libc::c_long) };
    }

    /// The command was stopped by job control: stop guard as well, so that the shell that
    /// started guard sees the job stopped (Ctrl-Z, `jobs`, `fg` work as without guard) — by the
    /// same signal, so that `jobs -l` says `Stopped` or `Stopped (tty input)` as it would.
    fn mirror_stop(&mut self, sig: i32) {
        // SAFETY: querying a disposition only (a null new action).
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        // An ignored stop signal (inherited from a launcher that ignores it) would not stop
        // us: SIGSTOP always does.
        if ignored || ![libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&sig) {
            // SAFETY: signalling ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
        } else {
            // The terminal stop signals are blocked in every thread (the signal thread waits
            // for them): unblock this one in this thread only and send it to this thread, so
            // that its default action stops the process instead of the signal thread taking it.
            // The terminal's own copy (Ctrl-Z reaches guard's process group too) may still be
            // pending: take it first, or it would stop us once more right after `fg`.
            // SAFETY: sigset_t and timespec are plain data; the calls take valid pointers.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                let now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                while libc::sigtimedwait(&set, std::ptr::null_mut(), &now) > 0 {}
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::syscall(libc::SYS_gettid),
                    sig,
                );
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
        }
        // We run again: `fg` continued the whole process group (the command included), or
        // someone continued only guard — then the command must be continued too.
        self.cont_check = Some(Instant::now() + Duration::from_millis(50));
    }

    fn continue_root_if_stopped(&mut self) {
        let Some(root) = self.root.map(|r| r.as_raw()) else {
            return;
        };
        if self.tracees.get(&root).is_some_and(|t| t.group_stopped) {
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
    let mut t = Tracer::new(None, Some(stop), follow, emit);
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
                .filter(|tid| !t.tracees.contains_key(tid))
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match ptrace::seize(Pid::from_raw(tid), ATTACH_OPTIONS) {
                    Ok(()) => {
                        seized += 1;
                        t.execd.insert(pid as i32);
                        t.tracees.insert(
                            tid,
                            Tracee {
                                tgid: pid as i32,
                                group_stopped: false,
                                announced: true,
                            },
                        );
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
        let mut snapshot = super::proc::read_exec(pid as i32, Source::Ptrace, t.follow.extras);
        snapshot.time = crate::time::now();
        (t.emit)(Record::Process(Box::new(snapshot)));
    }
    let stuck = t.run();
    Ok(AttachResult { seized, stuck })
}

/// A seccomp filter for the spawned command that closes the one way out of the traced tree:
/// `clone(CLONE_UNTRACED)`, which creates a child the kernel does not auto-attach. It fails with
/// `EPERM`; `clone3` (whose flags a filter cannot read) fails with `ENOSYS`, so that libc falls
/// back to `clone`. With exec attempts traced, `execve` and `execveat` return
/// `SECCOMP_RET_TRACE` (a seccomp stop for the tracer) — and no other system call stops.
pub mod untraced_filter {
    const LD_ABS_W: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_TRACE: u32 = 0x7ff0_0000;
    const OFF_NR: u32 = 0;
    const OFF_ARCH: u32 = 4;
    /// Low 32 bits of the first argument (little-endian), where `clone` takes its flags.
    const OFF_ARG0: u32 = 16;
    const CLONE_UNTRACED: u32 = 0x0080_0000;
    const CLONE3: u32 = 435;

    #[derive(Clone, Copy)]
    enum Target {
        Next,
        Allow,
        Enosys,
        Eperm,
        Trace,
        At(usize),
    }

    enum Ins {
        Ld(u32),
        Jump(u16, u32, Target, Target),
        Ret(u32),
    }

    /// One ABI the kernel accepts from a process of this build.
    struct Abi {
        arch: u32,
        clone: u32,
        execve: u32,
        execveat: u32,
        /// Whether the x32 bit must be refused.
        x32: bool,
    }

    fn abis() -> Vec<Abi> {
        if cfg!(target_arch = "x86_64") {
            vec![
                Abi {
                    arch: 0xC000_003E,
                    clone: 56,
                    execve: 59,
                    execveat: 322,
                    x32: true,
                },
                Abi {
                    arch: 0x4000_0003,
                    clone: 120,
                    execve: 11,
                    execveat: 358,
                    x32: false,
                },
            ]
        } else if cfg!(target_arch = "aarch64") {
            vec![Abi {
                arch: 0xC000_00B7,
                clone: 220,
                execve: 221,
                execveat: 281,
                x32: false,
            }]
        } else {
            Vec::new()
        }
    }

    /// The classic BPF program; `trace_exec` adds the seccomp stops of exec attempts.
    pub fn program(trace_exec: bool) -> Vec<libc::sock_filter> {
        let mut ins: Vec<Ins> = vec![Ins::Ld(OFF_ARCH)];
        let abis = abis();
        for (i, abi) in abis.iter().enumerate() {
            // Each ABI block: 6 instructions, +1 for x32, +2 for exec; the next block starts
            // after it (with the arch still in the accumulator).
            let len = 6 + usize::from(abi.x32) + if trace_exec { 2 } else { 0 };
            let next_block = if i + 1 < abis.len() {
                Target::At(ins.len() + len)
            } else {
                Target::Allow
            };
            let (arch, clone, x32) = (&abi.arch, &abi.clone, &abi.x32);
            ins.push(Ins::Jump(JEQ_K, *arch, Target::Next, next_block));
            ins.push(Ins::Ld(OFF_NR));
            if *x32 {
                ins.push(Ins::Jump(JGE_K, 0x4000_0000, Target::Enosys, Target::Next));
            }
            if trace_exec {
                ins.push(Ins::Jump(JEQ_K, abi.execve, Target::Trace, Target::Next));
                ins.push(Ins::Jump(JEQ_K, abi.execveat, Target::Trace, Target::Next));
            }
            ins.push(Ins::Jump(JEQ_K, CLONE3, Target::Enosys, Target::Next));
            ins.push(Ins::Jump(JEQ_K, *clone, Target::Next, Target::Allow));
            ins.push(Ins::Ld(OFF_ARG0));
            ins.push(Ins::Jump(
                JSET_K,
                CLONE_UNTRACED,
                Target::Eperm,
                Target::Allow,
            ));
        }
        let allow = ins.len();
        ins.push(Ins::Ret(RET_ALLOW));
        ins.push(Ins::Ret(RET_ERRNO | libc::ENOSYS as u32));
        ins.push(Ins::Ret(RET_ERRNO | libc::EPERM as u32));
        ins.push(Ins::Ret(RET_TRACE));
        let at = |t: Target, here: usize| -> u8 {
            let to = match t {
                Target::Next => here + 1,
                Target::Allow => allow,
                Target::Enosys => allow + 1,
                Target::Eperm => allow + 2,
                Target::Trace => allow + 3,
                Target::At(i) => i,
            };
            (to - here - 1) as u8
        };
        ins.iter()
            .enumerate()
            .map(|(here, i)| match *i {
                Ins::Ld(off) => libc::sock_filter {
                    code: LD_ABS_W,
                    jt: 0,
                    jf: 0,
                    k: off,
                },
                Ins::Jump(code, k, t, f) => libc::sock_filter {
                    code,
                    jt: at(t, here),
                    jf: at(f, here),
                    k,
                },
                Ins::Ret(k) => libc::sock_filter {
                    code: RET_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
            })
            .collect()
    }
}
