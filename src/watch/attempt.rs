//! Exec attempts, seen at the seccomp stop that `SECCOMP_RET_TRACE` gives for `execve` and
//! `execveat` (and at the syscall-exit stop that follows when the exec fails): what was asked
//! for — the path, argv, working directory — read from the stopped caller's memory, and the
//! file it names, resolved and fingerprinted as the exec would see it. `--mode enforce` refuses
//! a matching exec there, before the kernel loads anything: the system call is skipped and
//! returns `EACCES`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::event::{Bytes, ExecEvent, Source};
use crate::fingerprint::{FingerprintEvent, Fingerprinter};

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const OP_EXIT: u8 = 2;
const OP_SECCOMP: u8 = 3;
const AT_FDCWD: i64 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
/// Audit architectures whose pointers are 32 bits wide (i386, arm).
const ARCH_32: [u32; 2] = [0x4000_0003, 0x4000_0028];

/// At most this many arguments, and this many bytes of them, are read from an attempt.
const MAX_ARGS: usize = 1 << 17;
const MAX_ARG_BYTES: usize = 4 << 20;

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

/// Reads `len` bytes of the tracee's memory at `addr`, page by page, so that a read that
/// reaches past the end of a mapping returns what precedes it.
fn read_mem(tid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let here = addr.checked_add(done as u64)?;
        let want = ((4096 - here % 4096) as usize).min(len - done);
        let remote = [RemoteIoVec {
            base: here as usize,
            len: want,
        }];
        let mut local = [std::io::IoSliceMut::new(&mut buf[done..done + want])];
        match process_vm_readv(nix::unistd::Pid::from_raw(tid), &mut local, &remote) {
            Ok(n) if n > 0 => done += n,
            _ => break,
        }
    }
    buf.truncate(done);
    (done > 0).then_some(buf)
}

/// A NUL-terminated string of at most `max` bytes at `addr`.
pub(crate) fn read_string(tid: i32, addr: u64, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let chunk = (4096 - (at % 4096) as usize).min(max - out.len()).max(1);
        let data = read_mem(tid, at, chunk)?;
        if let Some(end) = data.iter().position(|&b| b == 0) {
            out.extend_from_slice(&data[..end]);
            return Some(out);
        }
        out.extend_from_slice(&data);
        at += data.len() as u64;
    }
    Some(out)
}

/// The argument vector at `addr` (an array of pointers ending with NULL).
fn read_argv(tid: i32, addr: u64, wide: bool) -> Vec<Bytes> {
    let mut out = Vec::new();
    if addr == 0 {
        return out;
    }
    let size = if wide { 8 } else { 4 };
    let mut total = 0;
    let mut at = addr;
    'outer: while out.len() < MAX_ARGS && total < MAX_ARG_BYTES {
        let Some(block) = read_mem(tid, at, 512 * size) else {
            break;
        };
        for ptr in block.chunks_exact(size) {
            let p = if wide {
                u64::from_ne_bytes(ptr.try_into().unwrap())
            } else {
                u64::from(u32::from_ne_bytes(ptr.try_into().unwrap()))
            };
            if p == 0 || out.len() >= MAX_ARGS {
                break 'outer;
            }
            let s = read_string(tid, p, MAX_ARG_BYTES - total).unwrap_or_default();
            total += s.len() + 1;
            out.push(Bytes(s));
            if total >= MAX_ARG_BYTES {
                break 'outer;
            }
        }
        at += block.len() as u64;
        if block.len() < 512 * size {
            break;
        }
    }
    out
}

fn readlink(path: String) -> Option<Bytes> {
    std::fs::read_link(path)
        .ok()
        .map(|p| Bytes::from(p.as_path()))
}

fn join_path(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut v = dir.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(rel.strip_prefix(b"./").unwrap_or(rel));
    v
}

/// What an exec attempt asks for, as an exec record would show it had it happened: `exe` the
/// file that would run (the interpreter for a `#!` script, which is then `script`), `execfn`
/// the path given (absolute), `argv` as the new program would see it, `content` its
/// fingerprints. Returns the fingerprint events of files read meanwhile.
pub fn candidate(
    tid: i32,
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
    let path = read_string(tid, path_ptr, 4096).unwrap_or_default();
    let argv = read_argv(tid, argv_ptr, wide);
    let (tgid, ppid, uid, euid) = ids(tid);
    let cwd = readlink(format!("/proc/{tid}/cwd"));
    // The path as the process names it, and the way we open the same file.
    let (given, through): (Vec<u8>, Vec<u8>) = if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
        let name = readlink(format!("/proc/{tid}/fd/{dirfd}")).unwrap_or_default();
        (name.0, format!("/proc/{tid}/fd/{dirfd}").into_bytes())
    } else if path.first() == Some(&b'/') {
        let mut through = format!("/proc/{tid}/root").into_bytes();
        through.extend_from_slice(&path);
        (path.clone(), through)
    } else {
        let base = if dirfd == AT_FDCWD {
            cwd.clone().map(|c| c.0)
        } else {
            readlink(format!("/proc/{tid}/fd/{dirfd}")).map(|b| b.0)
        };
        let through_dir = if dirfd == AT_FDCWD {
            format!("/proc/{tid}/cwd")
        } else {
            format!("/proc/{tid}/fd/{dirfd}")
        };
        (
            base.map(|b| join_path(&b, &path)).unwrap_or(path.clone()),
            join_path(through_dir.as_bytes(), &path),
        )
    };
    let through = Path::new(OsStr::from_bytes(&through));
    let resolved = std::fs::canonicalize(through)
        .ok()
        .map(|p| Bytes::from(p.as_path()));
    let mut e = ExecEvent::new(tgid, Source::Ptrace);
    e.ppid = ppid;
    e.former_tid = (tgid != tid as u32).then_some(tid as u32);
    e.uid = uid;
    e.euid = (euid != uid).then_some(euid);
    e.exe = resolved.clone().unwrap_or_else(|| Bytes(given.clone()));
    e.execfn = Some(Bytes(given.clone()));
    e.argv = argv.clone();
    e.cwd = cwd;
    let mut events = Vec::new();
    let Ok(mut file) = File::open(through) else {
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
            let mut through = format!("/proc/{tid}/root").into_bytes();
            through.extend_from_slice(interp);
            let through = Path::new(OsStr::from_bytes(&through));
            e.script = resolved;
            e.exe = std::fs::canonicalize(through)
                .ok()
                .map(|p| Bytes::from(p.as_path()))
                .unwrap_or_else(|| Bytes::from(interp));
            let mut new_argv = vec![Bytes::from(interp)];
            if let Some(a) = arg.filter(|a| !a.is_empty()) {
                new_argv.push(Bytes::from(a));
            }
            new_argv.push(Bytes(given));
            new_argv.extend(argv.into_iter().skip(1));
            e.argv = new_argv;
            match File::open(through) {
                Ok(f) => file = f,
                Err(_) => return (e, events),
            }
        }
    }
    let (content, event) = fingerprinter.identify(&file, tgid, &e.exe);
    e.content = content.to_vec();
    events.extend(event);
    (e, events)
}

/// (tgid, ppid, uid, euid) of a thread, from `/proc/TID/status`.
fn ids(tid: i32) -> (u32, u32, u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |name: &str, at: usize| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().nth(at)?.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Tgid:", 0).max(tid as u32),
        field("PPid:", 0),
        field("Uid:", 0),
        field("Uid:", 1),
    )
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
