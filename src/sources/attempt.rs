//! Exec attempts, seen at the seccomp stop that `SECCOMP_RET_TRACE` gives for `execve` and
//! `execveat` (and at the syscall-exit stop that follows when the exec fails): what was asked
//! for — the path, argv, working directory — read from the stopped caller's memory, and the
//! file it names, resolved and fingerprinted as the exec would see it. `--mode enforce` refuses
//! a matching exec there, before the kernel loads anything: the system call is skipped and
//! returns `EACCES`.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::memory::Memory;
use super::proc::{parse_status, ProcDir, Status};
use crate::event::{Bytes, ExecEvent, Source};
use crate::sources::fingerprint::{FingerprintEvent, Fingerprinter};

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const OP_EXIT: u8 = 2;
const OP_SECCOMP: u8 = 3;
const AT_FDCWD: i64 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
/// Audit architectures whose pointers are 32 bits wide (i386, arm).
const ARCH_32: [u32; 2] = [0x4000_0003, 0x4000_0028];

/// `struct ptrace_syscall_info` (linux/ptrace.h): the union is read as raw words.
#[repr(C)]
#[derive(Default)]
struct RawInfo {
    op: u8,
    _pad: [u8; 3],
    arch: u32,
    _ip: u64,
    _sp: u64,
    data: [u64; 8],
}

/// The system call a tracee is stopped in.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub arch: u32,
    pub nr: u64,
    pub args: [u64; 6],
}

fn syscall_info(tid: i32) -> Option<RawInfo> {
    let mut info = RawInfo::default();
    // SAFETY: the kernel writes at most size_of::<RawInfo>() bytes into info.
    let n = unsafe {
        libc::ptrace(
            PTRACE_GET_SYSCALL_INFO,
            tid,
            std::mem::size_of::<RawInfo>(),
            &mut info as *mut RawInfo,
        )
    };
    (n > 0).then_some(info)
}

/// The exec a tracee at its seccomp stop is asking for.
pub fn seccomp_call(tid: i32) -> Option<Call> {
    let info = syscall_info(tid)?;
    if info.op != OP_SECCOMP {
        return None;
    }
    let mut args = [0u64; 6];
    args.copy_from_slice(&info.data[1..7]);
    Some(Call {
        arch: info.arch,
        nr: info.data[0],
        args,
    })
}

/// At a syscall-exit stop: the errno of a failed call, `None` when it succeeded (or this is
/// not an exit stop).
pub fn exit_errno(tid: i32) -> Option<i32> {
    let info = syscall_info(tid)?;
    if info.op != OP_EXIT || info.data[1] & 0xff == 0 {
        return None;
    }
    Some(-(info.data[0] as i64) as i32)
}

/// Whether a system call number is `execveat` for the tracee's ABI (else it is `execve`).
fn is_execveat(arch: u32, nr: u64) -> bool {
    match arch {
        0xC000_003E => nr == 322, // x86_64
        0x4000_0003 => nr == 358, // i386
        0xC000_00B7 => nr == 281, // aarch64
        _ => nr == libc::SYS_execveat as u64,
    }
}

fn join_path(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut v = dir.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(rel.strip_prefix(b"./").unwrap_or(rel));
    v
}

/// The file a path names, opened without side effects (`O_PATH`: no device opened, no FIFO
/// waited on), with its name as the kernel resolves it (`/proc/self/fd/N`, the same form as
/// `/proc/PID/exe`), and the file itself opened for reading when it could be a program (see
/// [`worth_reading`]).
struct Target {
    name: Option<Bytes>,
    file: Option<File>,
}

impl Target {
    /// `rel` relative to the tracee's `/proc/TID` directory (`root/...`, `cwd/...`, `fd/N/...`).
    fn open(proc: &ProcDir, rel: &[u8]) -> Option<Target> {
        let fd = proc.open_at(rel, libc::O_PATH)?;
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let name = std::fs::read_link(&link)
            .ok()
            .map(|p| Bytes::from(p.as_path()));
        let file = worth_reading(&fd)
            .then(|| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&link)
                    .ok()
            })
            .flatten();
        Some(Target { name, file })
    }
}

/// File systems whose regular files are not files: reading one can wait for data or take it
/// from its other readers (`/proc/kmsg`, tracefs's `trace_pipe`), or read kernel memory
/// (`/proc/kcore`). The kernel runs nothing from them. (`linux/magic.h`)
const PSEUDO_FILE_SYSTEMS: [u64; 10] = [
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x7472_6163, // tracefs
    0x6462_6720, // debugfs
    0x7363_6673, // securityfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0xcafe_4a11, // bpf
    0x6165_676c, // pstore
    0x6265_6570, // configfs
];

/// Whether a file could be a program, and so is worth reading (its `#!` line, its
/// fingerprints): a non-empty regular file outside the pseudo file systems. Anything else —
/// a FIFO, a device, `/proc/kmsg` — the kernel refuses to run, and opening or reading it could
/// block guard (and every tracee waiting on it) or have side effects.
fn worth_reading(fd: &std::os::fd::OwnedFd) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) of an fd we own into a stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded and filled it.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size <= 0 {
        return false;
    }
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs(2) of an fd we own (O_PATH is enough) into a statfs buffer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), fs.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded and filled it.
    let kind = unsafe { fs.assume_init() }.f_type as u64;
    !PSEUDO_FILE_SYSTEMS.contains(&kind)
}

/// The way to reach an absolute path from the caller's `/proc/TID` directory: through its
/// `root` link, except for the paths that name the caller itself (`/proc/self/…`,
/// `/proc/thread-self/…`, `/dev/fd/N…`: `fexecve`'s fallback, `exec /dev/fd/3`), which walked
/// by guard would name guard's own files.
fn through_root(path: &[u8]) -> Vec<u8> {
    for (own, inside) in [
        (&b"/proc/self/"[..], &b""[..]),
        (b"/proc/thread-self/", b""),
        (b"/dev/fd/", b"fd/"),
    ] {
        if let Some(rest) = path.strip_prefix(own) {
            let mut through = inside.to_vec();
            through.extend_from_slice(rest);
            return through;
        }
    }
    let mut through = b"root".to_vec();
    through.extend_from_slice(path);
    through
}

/// What an exec attempt asks for, as an exec record would show it had it happened: `exe` the
/// file that would run (the interpreter for a `#!` script, which is then `script`), `execfn`
/// the path given (absolute), `argv` as the new program would see it, `content` its
/// fingerprints. Returns the fingerprint events of files read meanwhile.
///
/// Everything is read through the caller's `/proc/TID` opened once, and files are reached
/// through its `root`, `cwd` and `fd` links, so that its root, working directory and
/// descriptors are the starting points rather than guard's. (The walk from there is guard's:
/// an absolute symbolic link inside a chroot, or one to `/proc/self`, resolves as guard would
/// see it. What ran is recorded at the exec stop all the same, from `/proc/PID/exe`.)
///
/// With `group` (the caller's thread group, known to the tracer), the caller's ids and working
/// directory are not read unless the path needs the latter: for a decision that does not look
/// at them; [`complete`] reads them if the attempt is to be recorded. `proc` is the caller's
/// `/proc/TID` when the tracer has it open already.
pub(crate) fn candidate(
    tid: i32,
    proc: Option<&ProcDir>,
    group: Option<u32>,
    call: &Call,
    fingerprinter: &mut Fingerprinter,
) -> (ExecEvent, Vec<FingerprintEvent>) {
    let wide = !ARCH_32.contains(&call.arch);
    let (dirfd, path_ptr, argv_ptr, flags) = if is_execveat(call.arch, call.nr) {
        (
            call.args[0] as i32 as i64,
            call.args[1],
            call.args[2],
            call.args[4],
        )
    } else {
        (AT_FDCWD, call.args[0], call.args[1], 0)
    };
    let mut memory = Memory::new(tid);
    let path = memory.string(path_ptr, 4096).unwrap_or_default();
    let argv = memory.argv(argv_ptr, wide);
    let opened;
    let proc = match proc {
        Some(p) => Some(p),
        None => {
            opened = ProcDir::open(tid);
            opened.as_ref()
        }
    };
    let relative = !path.is_empty() && path.first() != Some(&b'/') && dirfd == AT_FDCWD;
    let (status, cwd) = match (proc, group) {
        (Some(p), None) => (
            p.read(c"status", 4096).as_deref().and_then(parse_status),
            p.readlink(c"cwd").map(Bytes),
        ),
        (Some(p), Some(_)) if relative => (None, p.readlink(c"cwd").map(Bytes)),
        _ => (None, None),
    };
    let fd_link = format!("fd/{dirfd}").into_bytes();
    // The path as the process names it, and the way we reach the same file.
    // (An empty path without AT_EMPTY_PATH names nothing: the kernel answers ENOENT.)
    let (given, through): (Vec<u8>, Option<Vec<u8>>) = if path.is_empty() {
        if flags & AT_EMPTY_PATH != 0 {
            let name = proc.and_then(|p| p.readlink_bytes(&fd_link));
            (name.unwrap_or_default(), Some(fd_link))
        } else {
            (Vec::new(), None)
        }
    } else if path.first() == Some(&b'/') {
        (path.clone(), Some(through_root(&path)))
    } else {
        let (base, through_dir) = if dirfd == AT_FDCWD {
            (cwd.clone().map(|c| c.0), b"cwd".to_vec())
        } else {
            let base = proc.and_then(|p| p.readlink_bytes(&fd_link));
            (base, fd_link)
        };
        (
            base.map(|b| join_path(&b, &path)).unwrap_or(path.clone()),
            Some(join_path(&through_dir, &path)),
        )
    };
    let target = proc.zip(through).and_then(|(p, t)| Target::open(p, &t));
    let resolved = target.as_ref().and_then(|t| t.name.clone());
    let mut e = ExecEvent::new(group.unwrap_or(tid as u32), Source::Ptrace);
    if let Some(st) = status {
        set_ids(&mut e, &st);
    }
    e.former_tid = (e.pid != tid as u32).then_some(tid as u32);
    e.exe = resolved.clone().unwrap_or_else(|| Bytes(given.clone()));
    e.execfn = Some(Bytes(given.clone()));
    e.argv = argv.clone();
    e.cwd = cwd;
    let mut events = Vec::new();
    let Some(mut file) = target.and_then(|t| t.file) else {
        return (e, events);
    };
    // A `#!` script: the kernel runs its interpreter with [interpreter, (argument), path,
    // arguments...].
    let mut head = [0u8; 256];
    let n = file.read(&mut head).unwrap_or(0);
    if let Some(line) = head[..n].strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.trim_ascii();
        let (interp, arg) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
            Some(i) => (&line[..i], Some(line[i..].trim_ascii())),
            None => (line, None),
        };
        if interp.first() == Some(&b'/') {
            let interpreter = proc.and_then(|p| Target::open(p, &through_root(interp)));
            e.script = resolved;
            e.exe = interpreter
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_else(|| Bytes::from(interp));
            let mut new_argv = vec![Bytes::from(interp)];
            if let Some(a) = arg.filter(|a| !a.is_empty()) {
                new_argv.push(Bytes::from(a));
            }
            new_argv.push(Bytes(given));
            new_argv.extend(argv.into_iter().skip(1));
            e.argv = new_argv;
            match interpreter.and_then(|t| t.file) {
                Some(f) => file = f,
                None => return (e, events),
            }
        }
    }
    let (content, event) = fingerprinter.identify(&file, e.pid, &e.exe);
    e.content = content.to_vec();
    events.extend(event);
    (e, events)
}

fn set_ids(e: &mut ExecEvent, st: &Status) {
    e.pid = st.tgid;
    e.tgid = st.tgid;
    e.ppid = st.ppid;
    e.uid = st.uid;
    e.euid = (st.euid != st.uid).then_some(st.euid);
}

/// Reads what [`candidate`] left out with a thread group given: the caller's ids and working
/// directory (the tracee is still at its seccomp stop).
pub fn complete(e: &mut ExecEvent, tid: i32) {
    let Some(proc) = ProcDir::open(tid) else {
        return;
    };
    if let Some(st) = proc.read(c"status", 4096).as_deref().and_then(parse_status) {
        set_ids(e, &st);
        e.former_tid = (e.pid != tid as u32).then_some(tid as u32);
    }
    if e.cwd.is_none() {
        e.cwd = proc.readlink(c"cwd").map(Bytes);
    }
}

/// Skips the system call the tracee is stopped in (at its seccomp stop) and makes it return
/// `-errno`.
#[cfg(target_arch = "x86_64")]
pub fn refuse(tid: i32, errno: i32) -> bool {
    let pid = nix::unistd::Pid::from_raw(tid);
    let Ok(mut regs) = nix::sys::ptrace::getregs(pid) else {
        return false;
    };
    regs.orig_rax = u64::MAX;
    regs.rax = (-(errno as i64)) as u64;
    nix::sys::ptrace::setregs(pid, regs).is_ok()
}

#[cfg(target_arch = "aarch64")]
pub fn refuse(tid: i32, errno: i32) -> bool {
    const NT_PRSTATUS: libc::c_int = 1;
    const NT_ARM_SYSTEM_CALL: libc::c_int = 0x404;
    let mut nr: libc::c_int = -1;
    let mut iov = libc::iovec {
        iov_base: (&mut nr as *mut libc::c_int).cast(),
        iov_len: std::mem::size_of::<libc::c_int>(),
    };
    // SAFETY: the iovec points at a live c_int of the size given.
    if unsafe { libc::ptrace(libc::PTRACE_SETREGSET, tid, NT_ARM_SYSTEM_CALL, &mut iov) } != 0 {
        return false;
    }
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: (&mut regs as *mut libc::user_regs_struct).cast(),
        iov_len: std::mem::size_of::<libc::user_regs_struct>(),
    };
    // SAFETY: the iovec points at a live user_regs_struct of the size given.
    unsafe {
        if libc::ptrace(libc::PTRACE_GETREGSET, tid, NT_PRSTATUS, &mut iov) != 0 {
            return false;
        }
        regs.regs[0] = (-(errno as i64)) as u64;
        libc::ptrace(libc::PTRACE_SETREGSET, tid, NT_PRSTATUS, &mut iov) == 0
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn refuse(_tid: i32, _errno: i32) -> bool {
    false
}

/// Whether this build can refuse an exec (`--mode enforce`).
pub const CAN_REFUSE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
