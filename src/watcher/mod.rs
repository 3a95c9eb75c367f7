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

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::{ExitEvent, ExitStatus, ForkEvent, Source};
use crate::recorder::{AfterError, RecordError, Recorder};
use crate::trace::{Header, Record};

use crate::sources::connector::{Connector, LossCounter, ProcEvent};
use crate::sources::merge::Merger;

pub mod message;

/// A line in the watcher's log (its stderr). A log that cannot be written (a full disk) must not
/// bring the watcher down.
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Default state directory (override with `--state-dir` or `GUARD_STATE_DIR`).
pub const DEFAULT_STATE_DIR: &str = "/run/webserver-exec-guard";
/// argv[1] of the self-test's probe exec, followed by a nonce.
const PROBE_PREFIX: &str = "webserver-exec-guard-probe-";
/// How long the probe exec of the self-test may take to show up.
const PROBE_BOUND: Duration = Duration::from_secs(3);
/// How long `stop` waits for the watcher to seal and exit.
const STOP_BOUND: Duration = Duration::from_secs(60);
/// Receive buffer of the netlink socket.
pub const RCVBUF: usize = 64 << 20;
/// Hold window of the merger.
const HOLD: Duration = Duration::from_millis(250);
/// The writer's pause after a round of messages, and the most messages in a round (see the
/// writer's loop).
const WRITER_PACE: Duration = Duration::from_millis(10);
const WRITER_ROUND: usize = 1024;

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
    /// Fingerprints the executed files (each source keeps a cache of its own).
    pub fingerprinter: crate::sources::fingerprint::Fingerprinter,
}

/// Makes one event on every CPU we may run on (a fork and an exit): at the start, and before the
/// reader drains the socket for the last time. Losses are counted from gaps in each CPU's event
/// sequence, and a gap is only seen between two events of that CPU: without these, the events
/// dropped (`ENOBUFS`) on a CPU not heard from yet, or at the end of a burst on a CPU that stays
/// quiet until the seal, would go uncounted.
fn close_sequence_gaps() {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity(2) fills it for this thread.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: allowed is a valid cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return;
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads within the set for cpu < CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let workers: Vec<_> = cpus
        .into_iter()
        .filter_map(|cpu| {
            std::thread::Builder::new()
                .name("seq-flush".into())
                .spawn(move || {
                    // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread only.
                    unsafe {
                        let mut one: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut one);
                        if libc::sched_setaffinity(0, size, &one) != 0 {
                            return;
                        }
                        // The child only calls _exit: nothing of the parent's threads is used.
                        let pid = libc::fork();
                        if pid == 0 {
                            libc::_exit(0);
                        }
                        if pid > 0 {
                            let mut st = 0;
                            libc::waitpid(pid, &mut st, 0);
                        }
                    }
                })
                .ok()
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
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
            let code = daemon_main(opts, trace, trace_file, log, ready_write);
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

/// Counters shared between the threads.
#[derive(Default)]
struct Shared {
    stop: Arc<AtomicBool>,
    /// The nonce in the probe exec's argv[1] (`webserver-exec-guard-probe-NONCE`).
    probe_nonce: AtomicU64,
    /// The probe's pid, known once spawned (its exec may have been read before that).
    probe_pid: AtomicU32,
    /// Recent exec pids, to find the probe's exec when it was read before its pid was known.
    recent_execs: std::sync::Mutex<std::collections::VecDeque<u32>>,
    probe_seen: AtomicBool,
    lost: AtomicU64,
    tracer_tid: AtomicI32,
}

enum Msg {
    Record(Box<Record>, Source),
    /// The records of one read of the connector socket, in order (one message, one wake-up
    /// of the writer, for a batch of events).
    Records(Vec<Record>, Source),
    /// The ptrace follower ended (with an error message if attaching failed).
    TracerDone(Option<String>),
}

fn daemon_main(
    opts: &StartOptions,
    trace: PathBuf,
    trace_file: File,
    log: File,
    ready: OwnedFd,
) -> i32 {
    // Keep nothing of the caller's terminal or pipes: stdin from /dev/null, stdout/stderr to the log.
    // SAFETY: dup2 onto the standard descriptors of our own process.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        libc::dup2(null, 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
        if null > 2 {
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
    // Nor any other descriptor the caller let us inherit (a runner's pipes, sockets).
    let keep = [trace_file.as_raw_fd(), log.as_raw_fd(), ready.as_raw_fd()];
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in inherited {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor nothing in this process uses (listed before any
            // thread or file of ours was opened, apart from those kept).
            unsafe { libc::close(fd) };
        }
    }
    let mut ready = Some(File::from(ready));
    let fail = |ready: &mut Option<File>, msg: String| -> i32 {
        log!("{} watcher: {msg}", crate::time::now());
        if let Some(mut r) = ready.take() {
            let _ = r.write_all(msg.as_bytes());
        }
        1
    };

    // The signals that stop us are taken by sigwait in the main thread; block them everywhere.
    let mut stop_set = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        stop_set.add(s);
    }
    let _ = stop_set.thread_block();

    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<Msg>();

    let connector = match Connector::subscribe(opts.rcvbuf) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &mut ready,
                format!(
                    "{e}. In a container job, or without root, use `guard run -- CMD` instead."
                ),
            )
        }
    };
    // One event on every CPU now, so that each CPU's sequence has a starting point: an event
    // lost on a CPU not heard from yet would otherwise go uncounted.
    close_sequence_gaps();
    let reader = {
        let (shared, tx) = (shared.clone(), tx.clone());
        let fingerprinter = opts.fingerprinter.clone();
        std::thread::Builder::new()
            .name("connector".into())
            .spawn(move || read_connector(connector, &shared, &tx, fingerprinter))
            .expect("spawning the connector thread")
    };

    // What already runs, for the ancestry of what will be exec'd (never matched itself).
    for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = pid.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let mut p = crate::sources::proc::read_exec(pid, Source::Connector, WATCHER_EXTRAS);
        p.time = crate::time::now();
        if !p.exe.is_empty() || !p.argv.is_empty() {
            let _ = tx.send(Msg::Record(
                Box::new(Record::Process(Box::new(p))),
                Source::Connector,
            ));
        }
    }

    // The self-test: a probe exec must come back through the connector.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    shared.probe_nonce.store(nonce, Ordering::SeqCst);
    let probe = std::process::Command::new("/bin/true")
        .arg(format!("{PROBE_PREFIX}{nonce}"))
        .stdin(std::process::Stdio::null())
        .spawn();
    let probe_ok = match probe {
        Ok(mut child) => {
            shared.probe_pid.store(child.id(), Ordering::SeqCst);
            let _ = child.wait();
            let start = Instant::now();
            let seen = |shared: &Shared| {
                shared.probe_seen.load(Ordering::SeqCst)
                    || shared
                        .recent_execs
                        .lock()
                        .map(|r| r.contains(&child.id()))
                        .unwrap_or(false)
            };
            while !seen(&shared) && start.elapsed() < PROBE_BOUND {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen(&shared)
        }
        Err(_) => false,
    };
    if !probe_ok {
        return fail(
            &mut ready,
            format!(
                "the proc connector delivered no event for a probe exec within {} s: this happens in a non-initial network or PID namespace (a container job). Use `guard run -- CMD` to trace the build's commands instead.",
                PROBE_BOUND.as_secs()
            ),
        );
    }

    // The ptrace follower, if asked; it reports whether attaching worked before recording.
    let tracer = if opts.attach.is_empty() {
        None
    } else {
        let (shared2, tx2, pids) = (shared.clone(), tx.clone(), opts.attach.clone());
        let fingerprinter2 = opts.fingerprinter.clone();
        let (att_tx, att_rx) = mpsc::channel::<Result<(), String>>();
        let handle = std::thread::Builder::new()
            .name("ptrace".into())
            .spawn(move || {
                shared2
                    .tracer_tid
                    .store(crate::sources::ptrace::current_tid(), Ordering::SeqCst);
                let mut first = Some(att_tx);
                let mut emit = |r: Record| {
                    if let Some(t) = first.take() {
                        let _ = t.send(Ok(()));
                    }
                    let _ = tx2.send(Msg::Record(Box::new(r), Source::Ptrace));
                };
                let follow = crate::sources::ptrace::Follow {
                    fingerprinter: fingerprinter2,
                    refuse: None,
                    refuse_reads_ids: false,
                    extras: WATCHER_EXTRAS,
                    step: None,
                };
                let result = crate::sources::ptrace::attach_and_follow(
                    &pids,
                    shared2.stop.clone(),
                    follow,
                    &mut emit,
                );
                let err = result.err().map(|e| e.to_string());
                if let Some(t) = first.take() {
                    let _ = t.send(err.clone().map_or(Ok(()), Err));
                }
                let _ = tx2.send(Msg::TracerDone(err));
            })
            .expect("spawning the ptrace thread");
        match att_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(&mut ready, e),
            Err(_) => return fail(&mut ready, "attaching did not finish within 20 s".into()),
        }
        Some(handle)
    };

    let header = {
        let mut h = Header::new("watcher");
        h.root = None;
        h
    };
    let mut recorder = match Recorder::to_file(trace_file, &header, AfterError::KeepSealing) {
        Ok(r) => r,
        Err(e) => return fail(&mut ready, format!("{}: {e}", trace.display())),
    };
    // SAFETY: getpid(2) cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    let info = WatcherInfo {
        pid,
        starttime: starttime(pid).unwrap_or(0),
        started: crate::time::now(),
        trace: trace.clone(),
        attached: opts.attach.clone(),
    };
    let info_path = opts.state_dir.join("watcher.json");
    if let Err(e) = write_json_atomic(&info_path, &info) {
        return fail(&mut ready, format!("{}: {e}", info_path.display()));
    }
    if let Some(mut r) = ready.take() {
        let _ = r.write_all(b"ok\n");
    }
    log!(
        "{} watcher: recording (pid {pid}, trace {})",
        crate::time::now(),
        trace.display()
    );

    // Stop on SIGTERM/SIGINT/SIGHUP.
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let _ = stop_set.wait();
                close_sequence_gaps();
                shared.stop.store(true, Ordering::SeqCst);
            })
            .expect("spawning the signal thread");
    }
    drop(tx);

    let status_path = opts.state_dir.join("status.json");
    let mut merger = Merger::new(HOLD);
    let mut status = WatcherStatus::default();
    let mut last_status = Instant::now() - Duration::from_secs(2);
    let mut last_flush = Instant::now();
    let mut tracer = tracer;
    let write = |recorder: &mut Recorder<_>, status: &mut WatcherStatus, mut r: Record| {
        if matches!(r, Record::Exec(_)) {
            status.execs += 1;
        }
        recorder.record(&mut r);
        status.records = recorder.records();
    };
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        if stopping {
            if let Some(h) = tracer.as_ref() {
                if !h.is_finished() {
                    crate::sources::ptrace::wake_tracer(shared.tracer_tid.load(Ordering::SeqCst));
                }
            }
        }
        // The first message (waiting for it when idle), then whatever else has arrived — a
        // bounded round, so that flushing, the status file and the stop checks below run
        // under any inflow.
        let mut next = Some(rx.recv_timeout(Duration::from_millis(50)));
        let mut received = false;
        let mut senders_gone = false;
        for _ in 0..WRITER_ROUND {
            let msg = match next.take() {
                Some(first) => first,
                None => match rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        Err(mpsc::RecvTimeoutError::Disconnected)
                    }
                },
            };
            match msg {
                Ok(Msg::Record(r, source)) => merger.push(*r, source, Instant::now()),
                Ok(Msg::Records(rs, source)) => {
                    let now = Instant::now();
                    for r in rs {
                        merger.push(r, source, now);
                    }
                }
                Ok(Msg::TracerDone(err)) => {
                    if let Some(e) = err {
                        log!("{} watcher: ptrace follower: {e}", crate::time::now());
                    }
                    if let Some(h) = tracer.take() {
                        let _ = h.join();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                // Every sender is gone: the reader and the tracer have finished.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    senders_gone = true;
                    break;
                }
            }
            received = true;
        }
        if senders_gone {
            break;
        }
        for r in merger.ready(Instant::now()) {
            write(&mut recorder, &mut status, r);
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            let _ = recorder.flush();
            last_flush = Instant::now();
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            // The state directory removed under us: nobody can stop us any more, so stop now
            // and seal what was recorded rather than run on, orphaned.
            if !stopping && !opts.state_dir.join("watcher.json").exists() {
                log!(
                    "{} watcher: {} was removed; stopping and sealing the trace",
                    crate::time::now(),
                    opts.state_dir.display()
                );
                close_sequence_gaps();
                shared.stop.store(true, Ordering::SeqCst);
            }
            status.time = crate::time::now();
            status.lost = shared.lost.load(Ordering::SeqCst);
            status.merged = merger.merged;
            let _ = write_json_atomic(&status_path, &status);
            last_status = Instant::now();
        }
        // During a burst, records arrive in many small messages: the writer lets them gather
        // for a moment rather than wake for each one (its wake-ups take CPU from the build;
        // the merger holds records far longer than this anyway).
        if received && !stopping {
            std::thread::sleep(WRITER_PACE);
        }
    }
    let _ = reader.join();
    for r in merger.drain() {
        write(&mut recorder, &mut status, r);
    }
    let lost = shared.lost.load(Ordering::SeqCst);
    let sealed = recorder.seal(lost);
    status.time = crate::time::now();
    status.lost = lost;
    status.merged = merger.merged;
    status.sealed = sealed.is_ok();
    let _ = write_json_atomic(&status_path, &status);
    match sealed {
        Ok(()) => {
            log!(
                "{} watcher: sealed {} records ({} execs, {} lost, {} seen by both sources)",
                crate::time::now(),
                status.records,
                status.execs,
                lost,
                merger.merged
            );
            0
        }
        Err(RecordError::Seal(e)) => {
            log!(
                "{} watcher: sealing the trace failed: {e}",
                crate::time::now()
            );
            1
        }
        Err(RecordError::Write(e)) => {
            log!(
                "{} watcher: writing the trace failed: {e}",
                crate::time::now()
            );
            1
        }
    }
}

/// The connector reader: turns messages into records (enriching execs from `/proc` at once)
/// and never waits on anything but the socket.
/// The watcher sees every step of a job: each exec says which (`GITHUB_ACTION`).
const WATCHER_EXTRAS: crate::sources::proc::Extras = crate::sources::proc::Extras { step: true };

fn read_connector(
    mut c: Connector,
    shared: &Shared,
    tx: &mpsc::Sender<Msg>,
    mut fingerprinter: crate::sources::fingerprint::Fingerprinter,
) {
    let mut losses = LossCounter::default();
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        let mut pfd = libc::pollfd {
            fd: c.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, if stopping { 0 } else { 100 }) };
        if n <= 0 {
            if stopping {
                return;
            }
            continue;
        }
        // Everything the socket holds (up to a bound, and for a few milliseconds at most: the
        // merger pairs these records with ptrace's within its hold window), then one message
        // to the writer: one wake-up of it per burst of events, not per event.
        let mut batch = Vec::new();
        let began = Instant::now();
        for _ in 0..DRAIN_MAX {
            if began.elapsed() >= DRAIN_TIME {
                break;
            }
            let msgs = match c.recv(true) {
                Ok(m) => m,
                Err(nix::errno::Errno::ENOBUFS) => {
                    losses.overflows += 1;
                    shared.lost.store(losses.lost(), Ordering::SeqCst);
                    continue;
                }
                Err(_) => break,
            };
            read_events(msgs, shared, &mut losses, &mut fingerprinter, &mut batch);
        }
        if !batch.is_empty() && tx.send(Msg::Records(batch, Source::Connector)).is_err() {
            return;
        }
    }
}

/// Datagrams read from the connector, and time spent reading them, before the records go to
/// the writer.
const DRAIN_MAX: usize = 256;
const DRAIN_TIME: Duration = Duration::from_millis(5);

/// Turns connector messages into records (an exec enriched from `/proc` at once).
fn read_events(
    msgs: Vec<crate::sources::connector::Message>,
    shared: &Shared,
    losses: &mut LossCounter,
    fingerprinter: &mut crate::sources::fingerprint::Fingerprinter,
    batch: &mut Vec<Record>,
) {
    for m in msgs {
        if losses.observe(m.cpu, m.seq) > 0 {
            shared.lost.store(losses.lost(), Ordering::SeqCst);
        }
        let record = match m.event {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
            } if child_pid == child_tgid => Record::Fork(ForkEvent {
                seq: 0,
                time: crate::time::now(),
                pid: child_pid,
                ppid: parent_tgid,
                source: Source::Connector,
            }),
            ProcEvent::Exec { tgid, .. } => {
                let (e, read) = crate::sources::proc::read_exec_identified(
                    None,
                    tgid as i32,
                    Source::Connector,
                    WATCHER_EXTRAS,
                    fingerprinter,
                );
                if let Some(read) = read {
                    batch.push(Record::Fingerprint(read));
                }
                let probe = e
                    .argv
                    .get(1)
                    .and_then(|a| a.as_bytes().strip_prefix(PROBE_PREFIX.as_bytes()));
                if probe.is_some_and(|n| {
                    n == shared
                        .probe_nonce
                        .load(Ordering::SeqCst)
                        .to_string()
                        .as_bytes()
                }) || tgid == shared.probe_pid.load(Ordering::SeqCst)
                {
                    shared.probe_seen.store(true, Ordering::SeqCst);
                }
                if !shared.probe_seen.load(Ordering::SeqCst) {
                    if let Ok(mut recent) = shared.recent_execs.lock() {
                        recent.push_back(tgid);
                        if recent.len() > 4096 {
                            recent.pop_front();
                        }
                    }
                }
                Record::Exec(Box::new(e))
            }
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
            } if pid == tgid => {
                let status = if exit_code & 0x7f == 0 {
                    ExitStatus::Code(((exit_code >> 8) & 0xff) as i32)
                } else {
                    ExitStatus::Signal((exit_code & 0x7f) as i32)
                };
                Record::Exit(ExitEvent {
                    seq: 0,
                    time: crate::time::now(),
                    pid,
                    status,
                })
            }
            _ => continue,
        };
        batch.push(record);
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
