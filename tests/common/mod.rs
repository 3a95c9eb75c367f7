//! What every integration-test crate shares (`mod common;`): one way to run `guard`, the
//! terminal-escape decoder, temp dirs, bounded waits, free ports, the skip policy, and the mock
//! GitHub API ([`mock_github`]).
//!
//! Skip policy: a test whose program or privilege is missing calls [`skip`] (through
//! [`need_program`], [`need_path`] or [`need_root`]). Under `CI=true` or `GUARD_TEST_STRICT=1`
//! that is a failure naming the Debian package to install; otherwise the test returns early,
//! says so on stderr and appends one line to the file named by `GUARD_TEST_SKIP_LOG` (set by
//! scripts/test.sh, which prints the count after `cargo test`).

// Each test crate uses a part of this module.
#![allow(dead_code)]

pub mod mock_github;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test, built by cargo for the integration tests.
pub const GUARD: &str = env!("CARGO_BIN_EXE_guard");

/// How long a `guard` run may take unless the test says otherwise.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(60);

/// `guard(NO_ARGS)`: arguments added later (to the [`Guard::command`]).
pub const NO_ARGS: [&str; 0] = [];

// ---------------------------------------------------------------------------------------------
// Skips
// ---------------------------------------------------------------------------------------------

/// Whether a missing program or privilege fails the test instead of skipping it.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("GUARD_TEST_STRICT").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Records that `test` cannot run because `what` is missing (`package`: the Debian package that
/// provides it, or a privilege such as "root"). Panics under [`strict`]; otherwise prints the
/// reason and appends it to `$GUARD_TEST_SKIP_LOG`. The caller returns right after.
pub fn skip(test: &str, what: &str, package: &str) {
    let fix = if package == "root" {
        "run the tests as root".to_string()
    } else if package.contains(' ') {
        package.to_string()
    } else {
        format!("apt-get install {package} (scripts/test.sh installs it)")
    };
    if strict() {
        panic!(
            "{test}: {what} is missing: {fix}; tests do not skip under CI=true / GUARD_TEST_STRICT"
        );
    }
    eprintln!("SKIPPED {test}: {what} is missing ({fix})");
    if let Some(log) = std::env::var_os("GUARD_TEST_SKIP_LOG") {
        static LOG: Mutex<()> = Mutex::new(());
        let _l = LOG.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {what} ({fix})");
        }
    }
}

/// The path of `program` (a name looked up in `PATH`, or a path), if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Whether `program` (name or path) is installed; a [`skip`] naming `package` when not.
pub fn need_program(test: &str, program: &str, package: &str) -> bool {
    if which(program).is_some() {
        return true;
    }
    skip(test, program, package);
    false
}

/// Whether the file `path` exists; a [`skip`] naming `package` when not.
pub fn need_path(test: &str, path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    skip(test, path, package);
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the tests run as root; a [`skip`] when not.
pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, "root privilege", "root");
    false
}

/// The Debian package that provides a program the tests use (for skip messages).
pub fn package_of(program: &str) -> &'static str {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "nginx" => "nginx-light",
        "apache2" | "apache2ctl" | "apachectl" => "apache2",
        "lighttpd" => "lighttpd",
        "caddy" => "caddy",
        "busybox" => "busybox",
        "php" => "php-cli",
        "python3" => "python3",
        "ruby" => "ruby",
        "strace" => "strace",
        "cc" | "gcc" => "gcc",
        "ld" | "ar" => "binutils",
        "make" => "make",
        "sudo" => "sudo",
        "ping" => "iputils-ping",
        "tmux" => "tmux",
        "gdb" => "gdb",
        "node" => "nodejs",
        "npm" => "npm",
        "java" => "default-jre-headless",
        "curl" => "curl",
        "wget" => "wget",
        "file" => "file",
        "man" => "man-db",
        "setpriv" => "util-linux",
        "apt-cache" => "apt",
        "timeout" | "true" | "echo" => "coreutils",
        _ => "the package providing it",
    }
}

// ---------------------------------------------------------------------------------------------
// Temp dirs, waits, ports
// ---------------------------------------------------------------------------------------------

/// A fresh directory `guard-<crate tag>-<name>-<pid>-<n>` under the temp dir (emptied first).
/// Not removed: see [`TempDir`] for one that is.
pub fn tempdir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("guard-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    d
}

/// A fresh directory, removed when dropped (kept when `GUARD_TEST_KEEP` is set).
pub struct TempDir {
    path: PathBuf,
    /// Made with [`TempDir::open_to_all`].
    open: bool,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TempDir {
            path: tempdir(&format!("{name}-{nanos}")),
            open: false,
        }
    }
    /// A [`TempDir::new`] that a program running as another user can enter (a server whose
    /// workers drop to nobody or www-data must reach its document root): the directory, and the
    /// one each [`TempDir::write`] puts a file in, are mode 0755 whatever the umask.
    pub fn open_to_all(name: &str) -> TempDir {
        let mut dir = TempDir::new(name);
        dir.open = true;
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.path.display()));
        dir
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
    /// `self.join(rel)` as a string.
    pub fn at(&self, rel: impl AsRef<Path>) -> String {
        self.join(rel)
            .to_str()
            .expect("UTF-8 temp path")
            .to_string()
    }
    /// The directory as a string.
    pub fn s(&self) -> String {
        self.path.to_str().expect("UTF-8 temp path").to_string()
    }
    /// Writes `bytes` to `rel` (its parent directories made first).
    pub fn write(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            if self.open {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
    /// [`TempDir::write`], executable (0755).
    pub fn write_exec(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.write(rel, bytes);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
    /// An executable copy of `src` at `rel`.
    pub fn copy_exec(&self, src: impl AsRef<Path>, rel: impl AsRef<Path>) -> PathBuf {
        let (src, p) = (src.as_ref(), self.join(rel));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(src, &p)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("GUARD_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("kept {}", self.path.display());
        }
    }
}

/// Polls `cond` every 20 ms until it holds; fails the test after `bound`.
pub fn wait_for(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < bound,
            "timed out ({bound:?}) waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on: bound on 127.0.0.1:0 and released. Never handed out twice in this
/// process, so that tests running in parallel do not collide.
pub fn free_port() -> u16 {
    static USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Whether `pid` names a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

pub fn json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Processes, from /proc
// ---------------------------------------------------------------------------------------------

/// A process as /proc shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub state: char,
    pub cmdline: String,
}

/// The state, parent and process group of `pid` (`/proc/PID/stat`).
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Every process of the host (zombies included), with its command line.
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((state, ppid, pgrp)) = proc_stat(pid) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim_end()
                    .to_string()
            })
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid,
            pgrp,
            state,
            cmdline,
        });
    }
    out
}

/// Live processes (not zombies: PID 1 of a container may not reap orphans) in process group
/// `pgid`, or whose command line names `marker`, and all their descendants; never the test
/// process itself.
pub fn leftovers(pgid: Option<u32>, marker: &str) -> Vec<Proc> {
    let me = std::process::id();
    let all: Vec<Proc> = processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X' && p.pid != me)
        .collect();
    let mut found: HashSet<u32> = all
        .iter()
        .filter(|p| Some(p.pgrp) == pgid || p.cmdline.contains(marker))
        .map(|p| p.pid)
        .collect();
    loop {
        let before = found.len();
        for p in &all {
            if found.contains(&p.ppid) {
                found.insert(p.pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    all.into_iter().filter(|p| found.contains(&p.pid)).collect()
}

/// Waits (10 s at most) until [`leftovers`] is empty; otherwise kills what is left and fails.
pub fn assert_no_leftovers(pgid: Option<u32>, marker: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(pgid, marker);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for p in &left {
                signal(p.pid as i32, libc::SIGKILL);
            }
            panic!("{what}: processes left running (now killed): {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kill(2): `sig` to `target` (a negative target is a process group); errors ignored.
pub fn signal(target: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(target, sig) };
}

/// The resident set of `pid` now and its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`), KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------------------------------------
// Running guard
// ---------------------------------------------------------------------------------------------

/// What a finished process did.
#[derive(Debug)]
pub struct Out {
    /// The program and its arguments, shortened (see [`Guard::shown`]).
    pub command: String,
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr_bytes: Vec<u8>,
    pub elapsed: Duration,
    /// The process's own peak resident set (its `VmHWM`, sampled until it exits), KiB: with
    /// [`Guard::peak_memory`], 0 otherwise. (Not `ru_maxrss` of wait4: it also holds the test
    /// process's own size when the child was forked rather than spawned.)
    pub peak_rss_kib: u64,
}

/// The command, its status, time and both outputs (their first 2,000 characters), for
/// assertion messages.
impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> code {:?}, signal {:?}, {:?}\nstdout: {}\nstderr: {}",
            self.command,
            self.code,
            self.signal,
            self.elapsed,
            self.stdout.chars().take(2000).collect::<String>(),
            self.stderr.chars().take(2000).collect::<String>()
        )
    }
}

impl Out {
    /// Status and both outputs, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "status {:?} (signal {:?})\nstdout: {}\nstderr: {}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// An output captured into an unlinked file: never blocks, even when a daemon the command left
/// behind keeps it open.
struct Capture(File);

impl Capture {
    fn new() -> Capture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "guard-test-out-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        let _ = std::fs::remove_file(&p);
        Capture(f)
    }
    fn stdio(&self) -> Stdio {
        Stdio::from(self.0.try_clone().expect("dup capture file"))
    }
    fn read(mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.0.seek(SeekFrom::Start(0)).unwrap();
        self.0.read_to_end(&mut v).unwrap();
        v
    }
}

/// A `guard` command line to run: `guard(args).cwd(dir).env(..).run()`.
#[must_use]
pub struct Guard {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
    no_github_env: bool,
    env_clear: bool,
    stdin: Option<Vec<u8>>,
    bound: Duration,
    memory: Option<u64>,
    stack: Option<u64>,
    process_group: bool,
    peak_memory: bool,
}

/// `guard ARGS`, with stdin from /dev/null, `NO_COLOR` unset, and the [`DEFAULT_BOUND`].
pub fn guard<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Guard {
    command(GUARD, args)
}

/// Any program, run the same way as [`guard`].
pub fn command<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
) -> Guard {
    Guard {
        program: program.as_ref().to_owned(),
        args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
        cwd: None,
        env: vec![("NO_COLOR".into(), None)],
        no_github_env: false,
        env_clear: false,
        stdin: None,
        bound: DEFAULT_BOUND,
        memory: None,
        stack: None,
        process_group: false,
        peak_memory: false,
    }
}

impl Guard {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Guard {
        self.args.push(a.as_ref().to_owned());
        self
    }
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Guard {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Guard {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Guard {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Guard {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }
    /// The watcher's state directory (`GUARD_STATE_DIR`).
    pub fn state_dir(self, dir: impl AsRef<Path>) -> Guard {
        self.env("GUARD_STATE_DIR", dir.as_ref())
    }
    /// Without any `GITHUB_*` variable of the environment the tests run in (CI).
    pub fn no_github_env(mut self) -> Guard {
        self.no_github_env = true;
        self
    }
    /// With only the variables given by [`Guard::env`], none of the tests' environment.
    pub fn env_clear(mut self) -> Guard {
        self.env_clear = true;
        self
    }
    /// Bytes written to stdin (then closed); /dev/null otherwise.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Guard {
        self.stdin = Some(bytes.into());
        self
    }
    /// Killed, and the test failed, beyond this.
    pub fn bound(mut self, bound: Duration) -> Guard {
        self.bound = bound;
        self
    }
    /// An address-space limit (`RLIMIT_AS`) on the process.
    pub fn memory_limit(mut self, bytes: u64) -> Guard {
        self.memory = Some(bytes);
        self
    }
    /// A stack limit (`RLIMIT_STACK`, soft; the hard limit unlimited): the kernel allows argv
    /// and the environment up to a quarter of it.
    pub fn stack_limit(mut self, bytes: u64) -> Guard {
        self.stack = Some(bytes);
        self
    }
    /// In a process group of its own, the whole group killed when the bound is exceeded.
    pub fn process_group(mut self) -> Guard {
        self.process_group = true;
        self
    }
    /// Measures the process's peak resident set ([`Out::peak_rss_kib`]).
    pub fn peak_memory(mut self) -> Guard {
        self.peak_memory = true;
        self
    }
    /// The arguments, shortened, for messages.
    pub fn shown(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().chars().take(80).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as configured (stdin /dev/null), stdout and stderr left to the caller.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c.stdin(Stdio::null());
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        if self.env_clear {
            c.env_clear();
        }
        if self.no_github_env {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("GITHUB_") {
                    c.env_remove(k);
                }
            }
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if self.process_group {
            c.process_group(0);
        }
        let (memory, stack) = (self.memory, self.stack);
        if memory.is_some() || stack.is_some() {
            // SAFETY: setrlimit(2) is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    let limits = [
                        memory.map(|m| (libc::RLIMIT_AS, m as libc::rlim_t, m as libc::rlim_t)),
                        stack.map(|s| (libc::RLIMIT_STACK, s as libc::rlim_t, libc::RLIM_INFINITY)),
                    ];
                    for (resource, cur, max) in limits.into_iter().flatten() {
                        let limit = libc::rlimit {
                            rlim_cur: cur,
                            rlim_max: max,
                        };
                        if libc::setrlimit(resource, &limit) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        c
    }

    /// Runs to the end within the bound, outputs captured.
    pub fn run(self) -> Out {
        let (out, err) = (Capture::new(), Capture::new());
        let mut c = self.command();
        c.stdout(out.stdio()).stderr(err.stdio());
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let start = Instant::now();
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?} {}: {e}", self.program, self.shown()));
        drop(c);
        if let (Some(bytes), Some(mut stdin)) = (self.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let pid = child.id();
        let mut peak_rss_kib = 0;
        let mut sample = || {
            if self.peak_memory {
                if let Some((_, hwm)) = rss_kib(pid) {
                    peak_rss_kib = peak_rss_kib.max(hwm);
                }
            }
        };
        let status = wait_bounded(
            &mut child,
            self.bound,
            start,
            self.process_group,
            &mut sample,
        );
        let elapsed = start.elapsed();
        let (stdout_bytes, stderr_bytes) = (out.read(), err.read());
        let Some(status) = status else {
            panic!(
                "{:?} {}: still running after {:?}, killed{}\nstdout: {}\nstderr: {}",
                self.program,
                self.shown(),
                self.bound,
                if self.process_group {
                    " (its process group)"
                } else {
                    ""
                },
                tail(&stdout_bytes),
                tail(&stderr_bytes)
            )
        };
        Out {
            command: format!("{} {}", self.program.to_string_lossy(), self.shown()),
            pid,
            peak_rss_kib,
            code: status.code(),
            signal: status.signal(),
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
            stdout_bytes,
            stderr_bytes,
            elapsed,
        }
    }
}

/// The last 4 KiB of an output, for messages.
fn tail(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(4096);
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// Waits for `child` until `start + bound`, calling `each` before every poll; kills it (and its
/// process group when `group`: it leads one) and returns `None` beyond.
fn wait_bounded(
    child: &mut Child,
    bound: Duration,
    start: Instant,
    group: bool,
    each: &mut dyn FnMut(),
) -> Option<std::process::ExitStatus> {
    loop {
        each();
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > bound {
            if group {
                signal(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child spawned by the test (its stdout and stderr piped, or not) within `bound`;
/// kills it and fails the test beyond.
pub fn finish(mut child: Child, bound: Duration) -> Out {
    let start = Instant::now();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let t_out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let t_err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = child.id();
    let Some(status) = wait_bounded(&mut child, bound, start, false, &mut || {}) else {
        panic!("command did not finish within {bound:?}");
    };
    let elapsed = start.elapsed();
    let (stdout_bytes, stderr_bytes) = (t_out.join().unwrap(), t_err.join().unwrap());
    Out {
        command: format!("pid {pid}"),
        pid,
        peak_rss_kib: 0,
        code: status.code(),
        signal: status.signal(),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
        stdout_bytes,
        stderr_bytes,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal-escape decoder
// ---------------------------------------------------------------------------------------------

/// Reverses guard's terminal escaping (`guard::escape::terminal`): `\\`, `\n`, `\r`, `\t`,
/// `\xHH` (a byte), `\u{H…}` (a character). `None` for anything else after a backslash, or an
/// unterminated escape.
pub fn unterminal(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match it.next()? {
            '\\' => out.push(b'\\'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'x' => {
                let h: String = [it.next()?, it.next()?].iter().collect();
                // A byte: a control below 0x80, or an invalid byte (C1 controls print the same
                // way).
                out.push(u8::from_str_radix(&h, 16).ok()?);
            }
            'u' => {
                if it.next()? != '{' {
                    return None;
                }
                let mut h = String::new();
                loop {
                    match it.next()? {
                        '}' => break,
                        d => h.push(d),
                    }
                }
                let c = char::from_u32(u32::from_str_radix(&h, 16).ok()?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The name of the running test (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string()
}
