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
