//! Signal forwarding: guard stands in for the command it runs, so a thread passes the signals
//! sent to guard on to the command (once: not those that reach it by themselves), and the
//! tracer mirrors the command's job-control stops on guard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

/// Signals sent to guard that are passed on to the command: those a user, a script or a CI
/// runner sends to stop, interrupt or poke a command (guard stands in for it).
pub(super) const FORWARDED: [Signal; 11] = [
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

/// What the signal thread and the tracer share: the command to forward to, and the signals the
/// command has just been delivered (seen by the tracer at their signal-delivery-stop).
pub(super) struct Forwarding {
    /// The command's pid; 0 once it has exited.
    pub(super) root: AtomicI32,
    /// (signal, sender pid, when) of signals delivered to the command by someone else than guard.
    pub(super) delivered: std::sync::Mutex<VecDeque<(i32, i32, Instant)>>,
}

/// How long a delivery is remembered, and how long the signal thread looks for a signal sent to
/// guard's whole process group reaching the command by itself.
const DELIVERY_MEMORY: Duration = Duration::from_secs(2);
const GROUP_SIGNAL_WAIT: Duration = Duration::from_millis(30);

impl Forwarding {
    pub(super) fn delivered(&self, signo: i32, sender: i32) {
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
/// to it (the tracer notes every delivery) for [`GROUP_SIGNAL_WAIT`] before sending it on.
pub(super) fn start_forwarder(set: SigSet, fwd: Arc<Forwarding>) {
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

/// The command was stopped by job control: stop guard as well, so that the shell that started
/// guard sees the job stopped (Ctrl-Z, `jobs`, `fg` work as without guard) — by the same signal,
/// so that `jobs -l` says `Stopped` or `Stopped (tty input)` as it would. Returns once guard
/// runs again.
pub(super) fn mirror_stop(sig: i32) {
    // SAFETY: querying a disposition only (a null new action).
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
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
}
