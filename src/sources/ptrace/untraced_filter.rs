//! A seccomp filter for the spawned command that closes the one way out of the traced tree:
//! `clone(CLONE_UNTRACED)`, which creates a child the kernel does not auto-attach. It fails with
//! `EPERM`; `clone3` (whose flags a filter cannot read) fails with `ENOSYS`, so that libc falls
//! back to `clone`. With exec attempts traced, `execve` and `execveat` return
//! `SECCOMP_RET_TRACE` (a seccomp stop for the tracer) — and no other system call stops.

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

/// The ABIs a process of a build for `target_arch` (as [`std::env::consts::ARCH`] names it)
/// can call the kernel with; empty for an architecture the filter does not know (it then allows
/// everything).
fn abis(target_arch: &str) -> Vec<Abi> {
    match target_arch {
        "x86_64" => vec![
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
        ],
        "aarch64" => vec![Abi {
            arch: 0xC000_00B7,
            clone: 220,
            execve: 221,
            execveat: 281,
            x32: false,
        }],
        _ => Vec::new(),
    }
}

/// The classic BPF program; `trace_exec` adds the seccomp stops of exec attempts.
pub fn program(trace_exec: bool) -> Vec<libc::sock_filter> {
    program_for(std::env::consts::ARCH, trace_exec)
}

/// [`program`] for a build for `target_arch`.
fn program_for(target_arch: &str, trace_exec: bool) -> Vec<libc::sock_filter> {
    let mut ins: Vec<Ins> = vec![Ins::Ld(OFF_ARCH)];
    let abis = abis(target_arch);
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

#[cfg(test)]
mod tests {
    use super::*;

    const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
    const SIGCHLD: u64 = libc::SIGCHLD as u64;

    /// Runs `prog` as the kernel would on a system call, with the checks the kernel makes when
    /// the program is loaded (forward jumps within the program, a return at its end).
    fn eval(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let jump = |taken: bool| {
                let to = pc + 1 + usize::from(if taken { i.jt } else { i.jf });
                assert!(to < prog.len(), "jump out of the program at {pc}");
                to
            };
            pc = match i.code {
                LD_ABS_W => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc + 1
                }
                JEQ_K => jump(acc == i.k),
                JGE_K => jump(acc >= i.k),
                JSET_K => jump(acc & i.k != 0),
                RET_K => return i.k,
                code => panic!("unexpected instruction {code:#x} at {pc}"),
            };
        }
    }

    const ALLOW: u32 = RET_ALLOW;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;
    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn every_abi_of_every_architecture_is_filtered_as_its_table_says() {
        for target in ARCHES {
            let abis = abis(target);
            assert!(!abis.is_empty(), "{target}");
            for trace in [false, true] {
                let prog = program_for(target, trace);
                assert!(prog.len() <= 255, "{target}: jumps are 8 bits");
                assert_eq!(prog.last().map(|i| i.code), Some(RET_K));
                let exec = if trace { RET_TRACE } else { ALLOW };
                for abi in &abis {
                    let run = |nr: u32, arg0: u64| eval(&prog, abi.arch, nr, arg0);
                    let what = format!("{target} arch {:#x} trace {trace}", abi.arch);
                    assert_eq!(run(abi.clone, SIGCHLD), ALLOW, "{what}: fork");
                    assert_eq!(
                        run(abi.clone, SIGCHLD | u64::from(CLONE_UNTRACED)),
                        EPERM,
                        "{what}: clone(CLONE_UNTRACED)"
                    );
                    // Only the low 32 bits hold clone's flags.
                    assert_eq!(run(abi.clone, SIGCHLD | 1 << 55), ALLOW, "{what}");
                    assert_eq!(run(CLONE3, 0), ENOSYS, "{what}: clone3");
                    assert_eq!(run(abi.execve, 0), exec, "{what}: execve");
                    assert_eq!(run(abi.execveat, 0), exec, "{what}: execveat");
                    for other in [0, 1, CLONE3 - 1, CLONE3 + 1, abi.clone + 1] {
                        if ![abi.execve, abi.execveat].contains(&other) {
                            assert_eq!(run(other, u64::from(CLONE_UNTRACED)), ALLOW, "{what}");
                        }
                    }
                    let x32 = |nr: u32| run(0x4000_0000 | nr, u64::from(CLONE_UNTRACED));
                    if abi.x32 {
                        assert_eq!(x32(abi.execve), ENOSYS, "{what}: x32 refused");
                        assert_eq!(x32(abi.clone), ENOSYS, "{what}: x32 refused");
                    } else {
                        assert_eq!(x32(0), ALLOW, "{what}");
                    }
                }
                // An ABI no process of this build can use is not filtered.
                for abi in &abis {
                    let foreign = 0xC000_0028; // AUDIT_ARCH_ARM
                    let untraced = SIGCHLD | u64::from(CLONE_UNTRACED);
                    assert_eq!(eval(&prog, foreign, abi.clone, untraced), ALLOW);
                    assert_eq!(eval(&prog, foreign, CLONE3, 0), ALLOW);
                }
            }
        }
        // An architecture without a table: everything is allowed.
        let prog = program_for("riscv64", true);
        assert_eq!(eval(&prog, 0xC000_00F3, CLONE3, 0), ALLOW);
    }

    /// The table agrees with libc's system call numbers for the architecture of this build.
    #[test]
    fn the_native_abi_has_libc_numbers() {
        let Some(native) = abis(std::env::consts::ARCH).into_iter().next() else {
            return;
        };
        assert_eq!(libc::c_long::from(native.clone), libc::SYS_clone);
        assert_eq!(libc::c_long::from(native.execve), libc::SYS_execve);
        assert_eq!(libc::c_long::from(native.execveat), libc::SYS_execveat);
        assert_eq!(libc::c_long::from(CLONE3), libc::SYS_clone3);
        assert_eq!(CLONE_UNTRACED, libc::CLONE_UNTRACED as u32);
    }

    /// The program installed in a forked child: the kernel refuses what it should.
    #[test]
    fn the_kernel_refuses_untraced_clones_and_stops_execs() {
        if abis(std::env::consts::ARCH).is_empty() {
            return;
        }
        let prog = program(true);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        let path = c"/bin/true";
        let argv = [path.as_ptr(), std::ptr::null()];
        // SAFETY: the child only makes raw system calls and _exit on data prepared before.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                let errno = || *libc::__errno_location();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0
                {
                    libc::_exit(10);
                }
                if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) != -1
                    || errno() != libc::ENOSYS
                {
                    libc::_exit(11);
                }
                let flags = libc::CLONE_UNTRACED | libc::SIGCHLD;
                if libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) != -1 || errno() != libc::EPERM
                {
                    libc::_exit(12);
                }
                // SECCOMP_RET_TRACE without a tracer: "the system call is not executed and
                // returns a failure status with errno set to ENOSYS" (seccomp(2)).
                if libc::execv(path.as_ptr(), argv.as_ptr()) != -1 || errno() != libc::ENOSYS {
                    libc::_exit(13);
                }
                // A plain fork is allowed.
                let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
                if child == 0 {
                    libc::_exit(0);
                }
                if child < 0 || libc::waitpid(child as i32, std::ptr::null_mut(), 0) != child as i32
                {
                    libc::_exit(14);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waitpid of our child with a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "see the _exit codes above");
    }
}
