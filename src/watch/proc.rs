//! Reading what a process is running from `/proc/PID`, opened once as a directory so that every
//! later read refers to the same process (the pid cannot be recycled under us while we hold it,
//! and a traced process stopped at its exec stop cannot change).

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::process::Process;

use crate::event::{Bytes, ExecEvent, Source};

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

fn read_relative(p: &Process, name: &str, limit: usize) -> Option<Vec<u8>> {
    let f = p.open_relative(name).ok()?;
    let mut buf = Vec::new();
    f.take(limit as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Reads a NUL-terminated string of at most `max` bytes at `addr` in the process's memory.
fn read_c_string(pid: i32, addr: u64, max: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    let mut at = addr;
    while out.len() < max {
        let n = mem.read_at(&mut chunk, at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Some(out);
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    None
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
pub fn read_exec(pid: i32, source: Source) -> ExecEvent {
    let mut e = ExecEvent {
        seq: 0,
        time: crate::time::now(),
        pid: pid as u32,
        tgid: pid as u32,
        ppid: 0,
        former_tid: None,
        uid: 0,
        euid: None,
        exe: Bytes::default(),
        execfn: None,
        script: None,
        argv: Vec::new(),
        cwd: None,
        comm: None,
        source,
        sources: Vec::new(),
        container: None,
        step: None,
        partial: false,
        content: Vec::new(),
        blocked: false,
        attempt: None,
    };
    let Ok(p) = Process::new(pid) else {
        e.partial = true;
        return e;
    };
    let mut complete = true;
    match p.exe() {
        Ok(exe) => e.exe = Bytes::from(exe.as_path()),
        Err(_) => complete = false,
    }
    match read_relative(&p, "cmdline", 64 << 20) {
        Some(raw) => e.argv = split_cmdline(&raw),
        None => complete = false,
    }
    e.cwd = p.cwd().ok().map(|c| Bytes::from(c.as_path()));
    e.comm = read_relative(&p, "comm", 64).map(|mut c| {
        if c.last() == Some(&b'\n') {
            c.pop();
        }
        Bytes(c)
    });
    match p.status() {
        Ok(st) => {
            e.ppid = st.ppid as u32;
            e.tgid = st.tgid as u32;
            e.uid = st.ruid;
            if st.euid != st.ruid {
                e.euid = Some(st.euid);
            }
        }
        Err(_) => complete = false,
    }
    if let Some(addr) = p.auxv().ok().and_then(|a| a.get(&AT_EXECFN).copied()) {
        if let Some(path) = read_c_string(pid, addr, 4096) {
            e.script = script_of(&p, &e.argv, &path);
            e.execfn = Some(absolute(path, e.cwd.as_ref()));
        }
    }
    e.container = read_relative(&p, "cgroup", 64 << 10).and_then(|c| container_id(&c));
    e.step = read_relative(&p, "environ", 4 << 20).and_then(|env| github_action(&env));
    e.partial = !complete;
    e
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
fn script_of(p: &Process, argv: &[Bytes], given: &[u8]) -> Option<Bytes> {
    if given.starts_with(b"/dev/fd/") || !argv.iter().skip(1).take(2).any(|a| a.as_bytes() == given)
    {
        return None;
    }
    let through = if given.first() == Some(&b'/') {
        format!("/proc/{}/root", p.pid())
            .into_bytes()
            .into_iter()
            .chain(given.iter().copied())
            .collect::<Vec<u8>>()
    } else {
        let mut v = format!("/proc/{}/cwd/", p.pid()).into_bytes();
        v.extend_from_slice(given);
        v
    };
    let through = Path::new(std::ffi::OsStr::from_bytes(&through));
    let run = std::fs::metadata(format!("/proc/{}/exe", p.pid())).ok()?;
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
