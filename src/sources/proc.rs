//! Reading what a process is running from `/proc/PID`, opened once as a directory so that every
//! later read refers to the same process (the pid cannot be recycled under us while we hold it,
//! and a traced process stopped at its exec stop cannot change).

use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::event::{Bytes, ExecEvent, Source};
use crate::sources::fingerprint::{FingerprintEvent, Fingerprinter};

/// `AT_EXECFN` (auxv): the address of the path that was passed to exec.
const AT_EXECFN: u64 = 31;

/// Splits `/proc/PID/cmdline` into arguments, keeping empty ones.
pub fn split_cmdline(raw: &[u8]) -> Vec<Bytes> {
    if raw.is_empty() {
        return Vec::new();
    }
    let body = raw.strip_suffix(b"\0").unwrap_or(raw);
    body.split(|&b| b == 0).map(Bytes::from).collect()
}

/// `/proc/PID`, opened once: every read below is relative to it, so it refers to the same
/// process even if the pid were reused meanwhile (it then fails instead of reading another
/// process).
pub(crate) struct ProcDir(OwnedFd);

impl ProcDir {
    pub(crate) fn open(pid: i32) -> Option<ProcDir> {
        let path = CString::new(format!("/proc/{pid}")).ok()?;
        // SAFETY: open(2) of a NUL-terminated path; the fd is owned below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a valid fd we own.
        (fd >= 0).then(|| ProcDir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Opens `rel` relative to the directory (a path through its `root`, `cwd` or `fd/N` links
    /// is resolved in that process's view).
    pub(crate) fn open_at(&self, rel: &[u8], flags: libc::c_int) -> Option<OwnedFd> {
        let rel = CString::new(rel).ok()?;
        // SAFETY: openat(2) relative to our directory fd; the fd is owned below.
        let fd = unsafe { libc::openat(self.0.as_raw_fd(), rel.as_ptr(), flags | libc::O_CLOEXEC) };
        // SAFETY: a valid fd we own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(crate) fn readlink_bytes(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.readlink(&CString::new(name).ok()?)
    }

    pub(crate) fn readlink(&self, name: &CStr) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat(2) into a buffer of the length given.
        let n = unsafe {
            libc::readlinkat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// Reads a file of the directory, at most `limit` bytes.
    ///
    /// A read that returns less than asked is the end of these files (the kernel renders each
    /// of them whole and copies out as much as fits), which spares the read that would return 0.
    pub(crate) fn read(&self, name: &CStr, limit: usize) -> Option<Vec<u8>> {
        // SAFETY: openat(2) relative to our directory fd; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a valid fd we own.
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut buf: Vec<u8> = Vec::with_capacity(limit.min(4096));
        loop {
            if buf.len() >= limit {
                return Some(buf);
            }
            if buf.len() == buf.capacity() {
                buf.reserve((limit - buf.len()).min(buf.len()));
            }
            let room = (buf.capacity() - buf.len()).min(limit - buf.len());
            // SAFETY: read(2) into the spare capacity of `buf`, at most `room` bytes.
            let n =
                unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().add(buf.len()).cast(), room) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return None;
            }
            let n = n as usize;
            // SAFETY: the kernel initialised `n` more bytes.
            unsafe { buf.set_len(buf.len() + n) };
            if n < room {
                return Some(buf);
            }
        }
    }
}

/// What an exec record takes from `/proc/PID/status`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Status {
    /// `Name:`, the command name (unescaped: the kernel writes `\n` and `\\` escaped).
    pub name: Vec<u8>,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub euid: u32,
}

pub(crate) fn parse_status(status: &[u8]) -> Option<Status> {
    let (mut name, mut tgid, mut ppid) = (None, None, None);
    for line in status.split(|&b| b == b'\n') {
        let numbers = |prefix: &[u8]| -> Option<Vec<u32>> {
            let rest = line.strip_prefix(prefix)?;
            Some(
                std::str::from_utf8(rest)
                    .ok()?
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect(),
            )
        };
        if let Some(raw) = line.strip_prefix(b"Name:\t") {
            let mut out = Vec::with_capacity(raw.len());
            let mut bytes = raw.iter();
            while let Some(&b) = bytes.next() {
                match (b, bytes.as_slice().first()) {
                    (b'\\', Some(b'n')) => {
                        out.push(b'\n');
                        bytes.next();
                    }
                    (b'\\', Some(b'\\')) => {
                        out.push(b'\\');
                        bytes.next();
                    }
                    _ => out.push(b),
                }
            }
            name = Some(out);
        } else if let Some(v) = numbers(b"Tgid:") {
            tgid = v.first().copied();
        } else if let Some(v) = numbers(b"PPid:") {
            ppid = v.first().copied();
        } else if let Some(v) = numbers(b"Uid:") {
            return Some(Status {
                name: name?,
                tgid: tgid?,
                ppid: ppid?,
                uid: *v.first()?,
                euid: *v.get(1)?,
            });
        }
    }
    None
}

/// `AT_EXECFN` in a `/proc/PID/auxv` block (native word size).
fn auxv_execfn(auxv: &[u8]) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * W).find_map(|pair| {
        let key = usize::from_ne_bytes(pair[..W].try_into().ok()?) as u64;
        let value = usize::from_ne_bytes(pair[W..].try_into().ok()?) as u64;
        (key == AT_EXECFN).then_some(value)
    })
}

/// What to read besides what every exec record holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// The GitHub Actions step (`GITHUB_ACTION` in `/proc/PID/environ`): for the host watcher,
    /// which sees every step. `guard run` knows its step from its own environment.
    pub step: bool,
}

fn absolute(path: Vec<u8>, cwd: Option<&Bytes>) -> Bytes {
    if path.first() == Some(&b'/') {
        return Bytes(path);
    }
    match cwd {
        Some(cwd) => {
            let mut abs = cwd.0.clone();
            if abs.last() != Some(&b'/') {
                abs.push(b'/');
            }
            let rel = path.strip_prefix(b"./").unwrap_or(&path);
            abs.extend_from_slice(rel);
            Bytes(abs)
        }
        None => Bytes(path),
    }
}

/// Everything we record about a process that has just exec'd. Fields that cannot be read
/// (the process is gone) are left empty and the event is marked partial.
pub fn read_exec(pid: i32, source: Source, extras: Extras) -> ExecEvent {
    read_exec_in(None, pid, source, extras, None).0
}

/// [`read_exec`], with the fingerprints of the executable (`content`) read through the same
/// `/proc/PID` (`dir`, when it is open already); the fingerprint event when the file was read
/// rather than found in the cache.
pub(crate) fn read_exec_identified(
    dir: Option<ProcDir>,
    pid: i32,
    source: Source,
    extras: Extras,
    fingerprinter: &mut Fingerprinter,
) -> (ExecEvent, Option<FingerprintEvent>) {
    read_exec_in(dir, pid, source, extras, Some(fingerprinter))
}

fn read_exec_in(
    dir: Option<ProcDir>,
    pid: i32,
    source: Source,
    extras: Extras,
    fingerprinter: Option<&mut Fingerprinter>,
) -> (ExecEvent, Option<FingerprintEvent>) {
    let mut e = ExecEvent::new(pid as u32, source);
    let Some(dir) = dir.or_else(|| ProcDir::open(pid)) else {
        e.partial = true;
        return (e, None);
    };
    let mut complete = true;
    if let Some(exe) = dir.readlink(c"exe") {
        e.exe = Bytes(exe);
    }
    match dir.read(c"cmdline", 64 << 20) {
        Some(raw) => e.argv = split_cmdline(&raw),
        None => complete = false,
    }
    e.cwd = dir.readlink(c"cwd").map(Bytes);
    match dir.read(c"status", 4096).as_deref().and_then(parse_status) {
        Some(st) => {
            e.comm = Some(Bytes(st.name));
            e.tgid = st.tgid;
            e.ppid = st.ppid;
            e.uid = st.uid;
            if st.euid != st.uid {
                e.euid = Some(st.euid);
            }
        }
        None => complete = false,
    }
    if let Some(addr) = dir.read(c"auxv", 4096).as_deref().and_then(auxv_execfn) {
        if let Some(path) = super::memory::read_string(pid, addr, 4096) {
            e.script = script_of(pid, &e.argv, &path);
            e.execfn = Some(absolute(path, e.cwd.as_ref()));
        }
    }
    // The kernel cannot name an executable whose absolute path is longer than PATH_MAX
    // (readlink of `exe` fails with ENAMETOOLONG; it was run by a relative path from deep
    // inside): the invoked path, made absolute with the working directory, names it then.
    if e.exe.0.is_empty() && e.script.is_none() {
        if let Some(f) = &e.execfn {
            e.exe = f.clone();
        }
    }
    if e.exe.0.is_empty() {
        complete = false;
    }
    e.container = dir.read(c"cgroup", 64 << 10).and_then(|c| container_id(&c));
    if extras.step {
        e.step = dir
            .read(c"environ", 4 << 20)
            .and_then(|env| github_action(&env));
    }
    e.partial = !complete;
    let mut read = None;
    if let Some(f) = fingerprinter {
        if let Some((content, event)) = f.identify_exe_in(dir.fd(), pid as u32, &e.exe) {
            e.content = content.to_vec();
            read = event;
        }
    }
    (e, read)
}

/// The container id in a `/proc/PID/cgroup` file: the last 64-hex-digit path component,
/// optionally wrapped by the runtime (`docker-ID.scope`, `cri-containerd-ID.scope`,
/// `crio-ID.scope`, `libpod-ID.scope`, `/docker/ID`, kubepods paths).
pub fn container_id(cgroup: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(cgroup).ok()?;
    let mut found = None;
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for comp in path.split('/') {
            let comp = comp.strip_suffix(".scope").unwrap_or(comp);
            let id = comp.rsplit(['-', ':']).next().unwrap_or(comp);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                found = Some(id.to_ascii_lowercase());
            }
        }
    }
    found
}

/// The value of `GITHUB_ACTION` in a `/proc/PID/environ` block, and nothing else: the rest of
/// the environment (where secrets live) is neither kept nor returned.
pub fn github_action(environ: &[u8]) -> Option<Bytes> {
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"GITHUB_ACTION="))
        .map(|v| Bytes(v.to_vec()))
}

/// The script of an exec that went through a `#!` interpreter, or `None`.
///
/// Only when the kernel's rewrite of argv shows it — `[interpreter, (optional argument),
/// path given to exec, original arguments...]` — and the path is not the executable itself. The
/// path is resolved in the process's own view (`/proc/PID/cwd`, `/proc/PID/root`), not ours,
/// so that a crafted working directory cannot make it name another file.
fn script_of(pid: i32, argv: &[Bytes], given: &[u8]) -> Option<Bytes> {
    if given.starts_with(b"/dev/fd/") || !argv.iter().skip(1).take(2).any(|a| a.as_bytes() == given)
    {
        return None;
    }
    let through = if given.first() == Some(&b'/') {
        format!("/proc/{pid}/root")
            .into_bytes()
            .into_iter()
            .chain(given.iter().copied())
            .collect::<Vec<u8>>()
    } else {
        let mut v = format!("/proc/{pid}/cwd/").into_bytes();
        v.extend_from_slice(given);
        v
    };
    let through = Path::new(std::ffi::OsStr::from_bytes(&through));
    let run = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    let meta = std::fs::metadata(through).ok()?;
    if meta.dev() == run.dev() && meta.ino() == run.ino() {
        return None;
    }
    std::fs::canonicalize(through)
        .ok()
        .map(|c| Bytes::from(c.as_path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = b"Name:\tmy\\nname\\\\x\nUmask:\t0022\nState:\tt (tracing stop)\nTgid:\t42\nNgid:\t0\nPid:\t43\nPPid:\t7\nTracerPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                name: b"my\nname\\x".to_vec(),
                tgid: 42,
                ppid: 7,
                uid: 1000,
                euid: 0
            })
        );
        assert_eq!(parse_status(b"Name:\tx\nTgid:\t1\n"), None);
        // Our own status parses, with our ids.
        let own = parse_status(&std::fs::read("/proc/self/status").unwrap()).unwrap();
        assert_eq!(own.tgid, std::process::id());
    }

    #[test]
    fn reads_proc_files_whole_or_up_to_the_limit() {
        // A file larger than the first buffer (an environment with a 10,000-byte value), files
        // that fit in it, and a limit that cuts them.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("GUARD_TEST_LONG_VALUE", "x".repeat(10_000))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let dir = ProcDir::open(pid).unwrap();
        let read_all = |name: &CStr| -> Vec<u8> {
            std::fs::read(format!("/proc/{pid}/{}", name.to_str().unwrap())).unwrap()
        };
        // spawn() can return while the child is still inside execve (vfork semantics), before
        // the kernel has laid out its arguments and environment.
        let started = std::time::Instant::now();
        while read_all(c"cmdline") != b"sleep\x0030\x00" || read_all(c"environ").len() < 10_000 {
            assert!(started.elapsed().as_secs() < 10, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for name in [c"environ", c"cmdline", c"auxv", c"cgroup"] {
            let whole = read_all(name);
            assert_eq!(dir.read(name, 64 << 20).unwrap(), whole, "{name:?}");
            assert_eq!(
                dir.read(name, 100).unwrap(),
                whole[..100.min(whole.len())],
                "{name:?}"
            );
        }
        assert!(dir.read(c"environ", 64 << 20).unwrap().len() > 10_000);
        assert_eq!(dir.read(c"environ", 8192).unwrap().len(), 8192);
        assert_eq!(dir.read(c"no-such-file", 10), None);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn cmdline_keeps_empty_and_non_utf8_arguments() {
        assert_eq!(split_cmdline(b""), Vec::<Bytes>::new());
        assert_eq!(
            split_cmdline(b"a\0\0b\0"),
            vec![Bytes::from("a"), Bytes::from(""), Bytes::from("b")]
        );
        assert_eq!(
            split_cmdline(b"a\0\xff\0\0"),
            vec![Bytes::from("a"), Bytes(vec![0xff]), Bytes::from("")]
        );
    }

    #[test]
    fn container_ids_from_cgroup_files() {
        let id = "4f1c6e0f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";
        for text in [
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!("12:pids:/docker/{id}\n0::/docker/{id}\n"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{id}.scope\n"),
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
            format!("0::/crio-{id}.scope\n"),
        ] {
            assert_eq!(container_id(text.as_bytes()).as_deref(), Some(id), "{text}");
        }
        assert_eq!(
            container_id(b"0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(container_id(b"0::/\n"), None);
    }

    #[test]
    fn only_github_action_is_taken_from_the_environment() {
        let env = b"SECRET_TOKEN=ghp_abc\0GITHUB_ACTIONS=true\0GITHUB_ACTION=__run_2\0HOME=/root\0";
        assert_eq!(github_action(env), Some(Bytes::from("__run_2")));
        assert_eq!(
            github_action(b"GITHUB_ACTIONS=true\0XGITHUB_ACTION=x\0"),
            None
        );
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let cwd = Bytes::from("/work");
        assert_eq!(
            absolute(b"./x.sh".to_vec(), Some(&cwd)),
            Bytes::from("/work/x.sh")
        );
        assert_eq!(
            absolute(b"bin/x".to_vec(), Some(&cwd)),
            Bytes::from("/work/bin/x")
        );
        assert_eq!(
            absolute(b"/bin/x".to_vec(), Some(&cwd)),
            Bytes::from("/bin/x")
        );
    }
}
