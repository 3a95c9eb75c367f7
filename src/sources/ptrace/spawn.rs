//! Spawn: start the command as a seized tracee, inside the seccomp filter that keeps its tree
//! traced ([`super::untraced_filter`]), with what guard inherited restored; then follow it
//! ([`Traced::follow`]) to its end.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

use crate::event::ExitStatus;
use crate::trace::Record;

use super::signals::{start_forwarder, Forwarding, FORWARDED};
use super::tracee::Tracee;
use super::tracer::{Command, Mode, Tracer};
use super::{untraced_filter, Follow};

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

/// A spawned command, seized and released to run its exec.
pub struct Traced {
    root: Pid,
    err_read: OwnedFd,
    signals: Arc<Forwarding>,
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
static INHERITED_CLOSED: AtomicU8 = AtomicU8::new(0);
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

impl Traced {
    pub fn root(&self) -> u32 {
        self.root.as_raw() as u32
    }

    /// Runs the event loop; `emit` receives every record (sequence numbers are left at 0).
    pub fn follow(self, follow: Follow<'_>, emit: &mut dyn FnMut(Record)) -> RunResult {
        let root = self.root.as_raw();
        let mut t = Tracer::new(
            Mode::Run(Command::new(root, self.signals.clone())),
            follow,
            emit,
        );
        t.tracees.insert(root, Tracee::new(root, true));
        let stuck = t.run();
        self.signals.root.store(0, Ordering::SeqCst);
        let (status, outlived) = match t.mode {
            Mode::Run(command) => (command.status, command.outlived),
            Mode::Attach { .. } => (None, Vec::new()),
        };
        let status = status.unwrap_or(ExitStatus::Code(125));
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
            outlived,
            stuck,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ExecEvent;

    /// Set for the test binary that the pid-reuse test runs inside a new pid namespace.
    const IN_PID_NAMESPACE: &str = "GUARD_TEST_IN_PID_NAMESPACE";

    /// The fix of the tracer's pid reuse, with real processes: a new child that reuses the pid
    /// of a process that exec'd and exited has not exec'd, so once the command has exited it
    /// gets the grace that exists to record its exec — were it taken for the earlier process,
    /// it would be let go at once, untraced. Steering the next pid needs a pid namespace of our
    /// own (`/proc/sys/kernel/ns_last_pid`) with the tracer inside it, since the tracer knows
    /// tracees by their pids in its own namespace: the test binary runs
    /// [`pid_reuse_in_a_pid_namespace`] there as pid 1, under `unshare` (util-linux), as root.
    #[test]
    fn a_child_reusing_the_pid_of_one_that_execd_has_its_late_exec_recorded() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "needs root under CI");
            eprintln!("skipped: a pid namespace of our own needs root");
            return;
        }
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let out = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(std::env::current_exe().expect("the test binary"))
            .arg(format!("{module}::pid_reuse_in_a_pid_namespace"))
            .args(["--exact", "--ignored", "--nocapture"])
            .env(IN_PID_NAMESPACE, "1")
            .output()
            .expect("unshare (util-linux) runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "in a new pid namespace: {}\n{text}",
            out.status
        );
    }

    /// Run by the test above, as pid 1 of a new pid namespace.
    #[test]
    #[ignore = "run inside a new pid namespace by the test above"]
    fn pid_reuse_in_a_pid_namespace() {
        if std::env::var_os(IN_PID_NAMESPACE).is_none() {
            return;
        }
        assert_eq!(std::process::id(), 1, "not in a pid namespace of our own");
        // `first` execs and exits; its pid is the next one again (nothing else forks in this
        // namespace meanwhile: the tracer starts no thread once the command runs), and taken
        // by a subshell that execs only after the command has exited (it is reaped), and
        // after running a child — let go at once, it would run both untraced.
        let script = r#"
/bin/true first & a=$!
wait
echo $((a - 1)) > /proc/sys/kernel/ns_last_pid
(while kill -0 $$ 2>/dev/null; do :; done; sleep 0.05; exec /bin/true reused) &
[ "$!" = "$a" ] || exit 3
"#;
        let cmd: Vec<OsString> = ["sh", "-c", script].iter().map(OsString::from).collect();
        let traced = spawn(&cmd, false).expect("the command is traced");
        let mut execs: Vec<ExecEvent> = Vec::new();
        let result = traced.follow(Follow::default(), &mut |r| {
            if let Record::Exec(e) = r {
                execs.push(*e);
            }
        });
        assert_eq!(
            result.status,
            ExitStatus::Code(0),
            "the pid was not reused: {execs:#?}"
        );
        let pid_of = |arg: &str| {
            execs
                .iter()
                .find(|e| {
                    e.argv
                        .get(1)
                        .is_some_and(|a| a.as_bytes() == arg.as_bytes())
                })
                .map(|e| e.pid)
        };
        let first = pid_of("first").expect("the first process's exec is recorded");
        assert_eq!(
            pid_of("reused"),
            Some(first),
            "the exec of the child that reused the pid is recorded: {execs:#?}"
        );
    }
}
