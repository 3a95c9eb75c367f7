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
