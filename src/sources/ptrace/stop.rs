//! Stop decoding: what a `waitpid` status word says about a tracee, as a [`Stop`] that names
//! the stops of ptrace(2), or the tracee's end.

use crate::event::ExitStatus;

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
pub(super) enum Wait {
    Stopped(Stop),
    Exited(ExitStatus),
}

/// `None` for a status that is neither (`WIFCONTINUED`, never asked for).
pub(super) fn decode(status: i32) -> Option<Wait> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A status word as `waitpid` reports a ptrace stop: 0x7f, the signal, the event.
    fn stopped(sig: i32, event: i32) -> i32 {
        0x7f | (sig << 8) | (event << 16)
    }

    #[test]
    fn status_words_decode_to_the_stops_of_ptrace_2() {
        use libc::*;
        let table: &[(i32, Option<Wait>)] = &[
            (0, Some(Wait::Exited(ExitStatus::Code(0)))),
            (3 << 8, Some(Wait::Exited(ExitStatus::Code(3)))),
            (SIGKILL, Some(Wait::Exited(ExitStatus::Signal(SIGKILL)))),
            // Killed with a core dump (bit 7).
            (
                SIGSEGV | 0x80,
                Some(Wait::Exited(ExitStatus::Signal(SIGSEGV))),
            ),
            (
                stopped(SIGUSR1, 0),
                Some(Wait::Stopped(Stop::Signal(SIGUSR1))),
            ),
            // A signal-delivery-stop of SIGTRAP is not a syscall stop without bit 7.
            (
                stopped(SIGTRAP, 0),
                Some(Wait::Stopped(Stop::Signal(SIGTRAP))),
            ),
            (
                stopped(SIGSTOP, 0),
                Some(Wait::Stopped(Stop::Signal(SIGSTOP))),
            ),
            (
                stopped(SIGRTMIN() + 1, 0),
                Some(Wait::Stopped(Stop::Signal(SIGRTMIN() + 1))),
            ),
            (
                stopped(SIGTRAP | 0x80, 0),
                Some(Wait::Stopped(Stop::Syscall)),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_FORK),
                Some(Wait::Stopped(Stop::Fork(PTRACE_EVENT_FORK as u8))),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_VFORK),
                Some(Wait::Stopped(Stop::Fork(PTRACE_EVENT_VFORK as u8))),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_CLONE),
                Some(Wait::Stopped(Stop::Fork(PTRACE_EVENT_CLONE as u8))),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_EXEC),
                Some(Wait::Stopped(Stop::Exec)),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_SECCOMP),
                Some(Wait::Stopped(Stop::Seccomp)),
            ),
            (
                stopped(SIGSTOP, PTRACE_EVENT_STOP),
                Some(Wait::Stopped(Stop::Group(SIGSTOP))),
            ),
            (
                stopped(SIGTSTP, PTRACE_EVENT_STOP),
                Some(Wait::Stopped(Stop::Group(SIGTSTP))),
            ),
            (
                stopped(SIGTTIN, PTRACE_EVENT_STOP),
                Some(Wait::Stopped(Stop::Group(SIGTTIN))),
            ),
            (
                stopped(SIGTTOU, PTRACE_EVENT_STOP),
                Some(Wait::Stopped(Stop::Group(SIGTTOU))),
            ),
            // A new child's first stop, PTRACE_INTERRUPT, a listening tracee woken.
            (
                stopped(SIGTRAP, PTRACE_EVENT_STOP),
                Some(Wait::Stopped(Stop::Trap)),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_EXIT),
                Some(Wait::Stopped(Stop::Other(PTRACE_EVENT_EXIT as u8))),
            ),
            (
                stopped(SIGTRAP, PTRACE_EVENT_VFORK_DONE),
                Some(Wait::Stopped(Stop::Other(PTRACE_EVENT_VFORK_DONE as u8))),
            ),
            // WIFCONTINUED: never asked for (no WCONTINUED).
            (0xffff, None),
        ];
        for &(status, want) in table {
            assert_eq!(decode(status), want, "status {status:#x}");
        }
    }

    /// The kernel's own words, from a real child: exit codes and a SIGSTOP stop.
    #[test]
    fn real_status_words_decode() {
        let child = |code: i32, stop: bool| -> i32 {
            // SAFETY: the child only calls async-signal-safe functions (raise, _exit).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: see above.
                unsafe {
                    if stop {
                        libc::raise(libc::SIGSTOP);
                    }
                    libc::_exit(code);
                }
            }
            let mut status = 0;
            // SAFETY: waitpid of our child with a valid out pointer.
            let got = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
            assert_eq!(got, pid);
            if stop {
                // SAFETY: plain kill(2) and waitpid(2) of our stopped child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
            status
        };
        assert_eq!(
            decode(child(7, false)),
            Some(Wait::Exited(ExitStatus::Code(7)))
        );
        assert_eq!(
            decode(child(0, true)),
            Some(Wait::Stopped(Stop::Signal(libc::SIGSTOP)))
        );
    }
}
