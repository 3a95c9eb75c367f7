//! The host watcher: `guard start` launches it in the background, `guard stop` asks it to seal
//! its trace and waits for it, `guard status` tells whether it is alive and what it has seen.
//!
//! Inside, three threads feed one writer: the proc connector reader (host-wide fork/exec/exit,
//! each exec enriched from `/proc` at once), the ptrace follower (`--attach PID`: race-free exec
//! records for the attached trees) and the writer, which merges twins ([`crate::sources::merge`]) and is
//! the only one to touch the disk — so a slow disk never stalls the reader.
//!
//! State lives in a root-owned 0700 directory: `watcher.json` (who and since when),
//! `status.json` (rewritten every second: liveness and counts), `watcher.log` (the watcher's
//! stdout/stderr: it keeps no terminal and no pipe of the step that started it open), and by
//! default `trace.jsonl` (0600).
//!
//! This file holds what the commands share (the state directory and its files, `start`, `stop`,
//! `status`); the watcher process itself is [`daemon`]'s sequence of steps, each in its module.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod message;
pub mod session;

/// A line in the watcher's log (its stderr). A log that cannot be written (a full disk) must not
/// bring the watcher down.
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod channel;
mod daemon;
pub mod door;
pub mod lockdown;
mod probe;
mod reader;
mod shared;
mod tracer;
mod writer;

/// Default state directory (override with `--state-dir` or `GUARD_STATE_DIR`).
pub const DEFAULT_STATE_DIR: &str = "/run/webserver-exec-guard";
/// How long `stop` waits for the watcher to seal and exit.
const STOP_BOUND: Duration = Duration::from_secs(60);
/// Receive buffer of the netlink socket.
pub const RCVBUF: usize = 64 << 20;

/// `watcher.json`: written once the watcher is recording.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatcherInfo {
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`, to tell our watcher from a process that reused its pid.
    pub starttime: u64,
    pub started: String,
    pub trace: PathBuf,
    pub attached: Vec<u32>,
}

/// `status.json`: rewritten every second by the writer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatcherStatus {
    pub time: String,
    pub records: u64,
    pub execs: u64,
    pub lost: u64,
    pub merged: u64,
    pub sealed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Io(String),
    #[error("state directory {path}: {why}")]
    State { path: PathBuf, why: String },
    #[error("a watcher is already running (pid {0}); stop it with `guard stop`")]
    Running(u32),
    #[error("no watcher was started (no {0}); start one with `guard start`")]
    NotStarted(PathBuf),
    #[error("the state directory {0} does not exist: no watcher was started with it, or it was removed while one ran — such a watcher stops and seals its trace, but what it recorded cannot be checked from here")]
    StateGone(PathBuf),
    #[error("the watcher could not start: {0}")]
    Failed(String),
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Io(format!("{what}: {e}"))
}

/// The state directory in force.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GUARD_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Creates (or checks) the state directory: a real directory, owned by us (root), mode 0700.
pub fn prepare_state_dir(dir: &Path) -> Result<(), DaemonError> {
    match std::fs::symlink_metadata(dir) {
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| io(dir.display(), e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(dir.display(), e))?;
        }
        Ok(m) if !m.is_dir() => {
            return Err(DaemonError::State {
                path: dir.into(),
                why: "is not a directory (a symlink?)".into(),
            })
        }
        Ok(_) => {}
    }
    check_state_dir(dir)
}

fn check_state_dir(dir: &Path) -> Result<(), DaemonError> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| io(dir.display(), e))?;
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(DaemonError::State {
            path: dir.into(),
            why: format!(
                "must be a directory owned by uid {me} with mode 0700 (found uid {}, mode {:o}): another user could tamper with the watcher's state",
                m.uid(),
                m.mode() & 0o7777
            ),
        });
    }
    Ok(())
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    serde_json::to_writer(&mut f, value).map_err(std::io::Error::other)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes `value` as JSON to `path` (0600), for root only.
pub fn write_private_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    write_json_atomic(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The start time of a process (field 22 of `/proc/PID/stat`, in clock ticks since boot).
pub fn starttime(pid: u32) -> Option<u64> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    Some(stat.starttime)
}

/// Whether the recorded watcher still runs: same pid, same start time, and not a zombie (an
/// orphaned watcher killed where nothing reaps it stays a zombie).
pub fn alive(info: &WatcherInfo) -> bool {
    let Some(stat) = procfs::process::Process::new(info.pid as i32)
        .ok()
        .and_then(|p| p.stat().ok())
    else {
        return false;
    };
    !matches!(stat.state, 'Z' | 'X') && stat.starttime == info.starttime
}

/// Options of `guard start`.
pub struct StartOptions {
    pub state_dir: PathBuf,
    /// Receive buffer of the proc connector socket (bytes; [`RCVBUF`] by default).
    pub rcvbuf: usize,
    pub trace: Option<PathBuf>,
    pub attach: Vec<u32>,
    /// Let each process the attached ones start go at its first exec (follow only them).
    pub let_go_at_exec: bool,
    /// Fingerprints the executed files (each source keeps a cache of its own).
    pub fingerprinter: crate::sources::fingerprint::Fingerprinter,
    /// The Action's sealed job: the door, the channel and the verdict.
    pub sealed: Option<Sealed>,
}

/// What the watcher of an Action job has besides its trace (see [`session`]).
pub struct Sealed {
    pub session: std::sync::Arc<session::Session>,
    /// Computes the verdict once the trace is sealed (the Action's reports, [`crate::github`]).
    pub verdict: Box<dyn Fn(&VerdictInput) -> message::Message + Send + Sync>,
}

/// What the verdict is computed from.
pub struct VerdictInput<'a> {
    pub session: &'a session::Session,
    pub trace: &'a Path,
    /// Set when the trace is not sealed (the writer failed).
    pub last_seen: Option<String>,
    /// Each a `verdict_tampered` finding.
    pub tampered: Vec<String>,
    /// Said in the summary.
    pub notes: Vec<String>,
}

/// Starts the watcher in the background and returns once it is recording (or why it is not).
///
/// Must be called while the process is single-threaded (it forks).
pub fn start(opts: &StartOptions) -> Result<WatcherInfo, DaemonError> {
    prepare_state_dir(&opts.state_dir)?;
    let info_path = opts.state_dir.join("watcher.json");
    if let Some(info) = read_json::<WatcherInfo>(&info_path) {
        if alive(&info) {
            return Err(DaemonError::Running(info.pid));
        }
    }
    // A previous watcher's files: the new one starts afresh.
    for f in ["watcher.json", "status.json"] {
        let _ = std::fs::remove_file(opts.state_dir.join(f));
    }
    let trace = opts
        .trace
        .clone()
        .unwrap_or_else(|| opts.state_dir.join("trace.jsonl"));
    let trace = if trace.is_absolute() {
        trace
    } else {
        std::env::current_dir()
            .map_err(|e| io("current directory", e))?
            .join(trace)
    };
    let trace_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&trace)
        .map_err(|e| io(trace.display(), e))?;
    let log_path = opts.state_dir.join("watcher.log");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| io(log_path.display(), e))?;

    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded; we own both ends.
    let (ready_read, ready_write) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: single-threaded here; the child continues in Rust code of its own (it is a full
    // process after the second fork, not a between-fork-and-exec child).
    match unsafe { libc::fork() } {
        -1 => return Err(io("fork", std::io::Error::last_os_error())),
        0 => {
            drop(ready_read);
            // SAFETY: setsid/fork in the first child: a new session, then a grandchild that
            // is not a session leader and can never reacquire a terminal.
            unsafe {
                libc::setsid();
                match libc::fork() {
                    -1 => libc::_exit(1),
                    0 => {}
                    _ => libc::_exit(0),
                }
            }
            let code = daemon::daemon_main(opts, trace, trace_file, log, ready_write);
            // SAFETY: leaving without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        child => {
            drop(ready_write);
            let mut status = 0;
            // SAFETY: reap the first child (it exits right after the second fork).
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
    }
    let mut answer = String::new();
    File::from(ready_read)
        .read_to_string(&mut answer)
        .map_err(|e| io("watcher readiness", e))?;
    match answer.strip_prefix("ok\n") {
        Some(_) => read_json(&info_path)
            .ok_or_else(|| DaemonError::Failed("it wrote no watcher.json".into())),
        None if answer.is_empty() => Err(DaemonError::Failed(format!(
            "it exited before it was recording; see {}",
            log_path.display()
        ))),
        None => Err(DaemonError::Failed(answer.trim().to_string())),
    }
}

/// Asks the watcher to seal its trace and waits for it to exit. Returns what it recorded and
/// whether it ended cleanly; a watcher already gone is reported, never hidden.
pub fn stop(dir: &Path) -> Result<(WatcherInfo, Stopped), DaemonError> {
    let info_path = dir.join("watcher.json");
    if !dir.exists() {
        return Err(DaemonError::StateGone(dir.to_path_buf()));
    }
    if !info_path.exists() {
        return Err(DaemonError::NotStarted(info_path));
    }
    check_state_dir(dir)?;
    let info: WatcherInfo = read_json(&info_path).ok_or_else(|| DaemonError::State {
        path: info_path.clone(),
        why: "unreadable watcher.json".into(),
    })?;
    let status_path = dir.join("status.json");
    if !alive(&info) {
        // An Action job's watcher killed before its end: what it took from the host (read-only
        // mounts, the runner user's sudo) is given back here.
        release_leftovers(dir);
        let last: Option<WatcherStatus> = read_json(&status_path);
        return Ok(match last {
            Some(s) if s.sealed => (info, Stopped::AlreadySealed),
            Some(s) => (info, Stopped::Died { last_seen: s.time }),
            None => (
                info,
                Stopped::Died {
                    last_seen: "unknown".into(),
                },
            ),
        });
    }
    // SAFETY: kill(2) of the pid we verified by start time.
    unsafe { libc::kill(info.pid as i32, libc::SIGTERM) };
    let start = Instant::now();
    while alive(&info) {
        if start.elapsed() > STOP_BOUND {
            return Err(DaemonError::Failed(format!(
                "the watcher (pid {}) did not stop within {} s",
                info.pid,
                STOP_BOUND.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let last: Option<WatcherStatus> = read_json(&status_path);
    let result = match last {
        Some(s) if s.sealed => Stopped::Sealed,
        Some(s) => Stopped::Died { last_seen: s.time },
        None => Stopped::Died {
            last_seen: "unknown".into(),
        },
    };
    let _ = std::fs::remove_file(&info_path);
    Ok((info, result))
}

/// What an Action job's watcher took from the host and did not give back (it was killed): the
/// files `session.json` and `lockdown.json` of its state directory.
pub fn release_leftovers(dir: &Path) {
    if let Some(applied) = read_json::<lockdown::Applied>(&dir.join(LOCKDOWN_FILE)) {
        lockdown::release(&applied);
        let _ = std::fs::remove_file(dir.join(LOCKDOWN_FILE));
    }
    if let Some(session) = read_json::<session::Session>(&dir.join(SESSION_FILE)) {
        session.release();
        let _ = std::fs::remove_file(dir.join(SESSION_FILE));
    }
}

/// The sealed job in the state directory, while its watcher runs (root-only).
pub const SESSION_FILE: &str = "session.json";
/// What `disable-sudo` took, while the watcher runs.
pub const LOCKDOWN_FILE: &str = "lockdown.json";

/// How the watcher ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It sealed its trace on our request.
    Sealed,
    /// It had already sealed and exited.
    AlreadySealed,
    /// It was gone without sealing (killed): `last_seen` is its last status time.
    Died { last_seen: String },
}

/// What `guard status` shows.
pub fn status(dir: &Path) -> Result<(WatcherInfo, bool, Option<WatcherStatus>), DaemonError> {
    let info_path = dir.join("watcher.json");
    if !dir.exists() {
        return Err(DaemonError::StateGone(dir.to_path_buf()));
    }
    let info: WatcherInfo =
        read_json(&info_path).ok_or_else(|| DaemonError::NotStarted(info_path.clone()))?;
    let alive = alive(&info);
    Ok((info, alive, read_json(&dir.join("status.json"))))
}
