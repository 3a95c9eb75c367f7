//! The watcher process, from its detachment to its seal: [`daemon_main`] is the sequence of
//! steps, each a function here or a module of its own.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use nix::sys::signal::{SigSet, Signal};

use crate::event::Source;
use crate::recorder::{AfterError, Recorder};
use crate::trace::{Header, Record};

use super::reader::{close_sequence_gaps, WATCHER_EXTRAS};
use super::shared::{Msg, Shared};
use super::writer::Writer;
use super::{probe, reader, starttime, tracer, write_json_atomic, StartOptions, WatcherInfo};

/// Runs the watcher in the (second) child of `start`; returns its exit code.
pub(super) fn daemon_main(
    opts: &StartOptions,
    trace: PathBuf,
    trace_file: File,
    log: File,
    ready: OwnedFd,
) -> i32 {
    detach(
        &log,
        &[trace_file.as_raw_fd(), log.as_raw_fd(), ready.as_raw_fd()],
    );
    let mut ready = Readiness(Some(File::from(ready)));
    let stop_signals = block_stop_signals();
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<Msg>();

    let reader = match reader::start(opts.rcvbuf, &shared, &tx, opts.fingerprinter.clone()) {
        Ok(r) => r,
        Err(e) => return ready.fail(e),
    };
    scan_running_processes(&tx);
    if let Err(e) = probe::self_test(&shared) {
        return ready.fail(e);
    }
    let tracer = if opts.attach.is_empty() {
        None
    } else {
        match tracer::start(&opts.attach, &shared, &tx, opts.fingerprinter.clone()) {
            Ok(t) => Some(t),
            Err(e) => return ready.fail(e),
        }
    };
    let recorder = match open_trace(trace_file) {
        Ok(r) => r,
        Err(e) => return ready.fail(format!("{}: {e}", trace.display())),
    };
    let pid = match write_watcher_info(opts, &trace) {
        Ok(pid) => pid,
        Err(e) => return ready.fail(e),
    };
    ready.ok();
    log!(
        "{} watcher: recording (pid {pid}, trace {})",
        crate::time::now(),
        trace.display()
    );

    stop_on_signals(stop_signals, &shared);
    // From now on only the reader and the tracer hold senders: the writer ends when they do.
    drop(tx);
    let mut writer = Writer::new(&shared, recorder, opts.state_dir.clone(), tracer);
    writer.run(&rx);
    let _ = reader.join();
    writer.seal()
}

/// Keeps nothing of the caller's terminal, pipes or working directory: stdin from `/dev/null`,
/// stdout/stderr to the log, and every other inherited descriptor (a runner's pipes, sockets)
/// closed but those in `keep`. Must run before any thread or file of ours is opened.
fn detach(log: &File, keep: &[RawFd]) {
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
}

/// The pipe on which `start` waits for "ok", or for why the watcher could not start.
struct Readiness(Option<File>);

impl Readiness {
    fn ok(&mut self) {
        if let Some(mut r) = self.0.take() {
            let _ = r.write_all(b"ok\n");
        }
    }

    /// Logs why the watcher cannot start, tells `start`, and returns the exit code.
    fn fail(&mut self, msg: String) -> i32 {
        log!("{} watcher: {msg}", crate::time::now());
        if let Some(mut r) = self.0.take() {
            let _ = r.write_all(msg.as_bytes());
        }
        1
    }
}

/// Blocks the signals that stop us (SIGTERM, SIGINT, SIGHUP) in this thread and so in every
/// thread started after it: [`stop_on_signals`] takes them with sigwait.
fn block_stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = set.thread_block();
    set
}

/// What already runs, for the ancestry of what will be exec'd (never matched itself).
fn scan_running_processes(tx: &mpsc::Sender<Msg>) {
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
}

/// The trace's recorder, its header written. After a write error it still seals: the status
/// file and the log say the trace is not whole.
fn open_trace(trace_file: File) -> std::io::Result<Recorder<std::io::BufWriter<File>>> {
    let mut header = Header::new("watcher");
    header.root = None;
    Recorder::to_file(trace_file, &header, AfterError::KeepSealing)
}

/// Writes `watcher.json`, which tells `stop` and `status` who we are; returns our pid.
fn write_watcher_info(opts: &StartOptions, trace: &Path) -> Result<u32, String> {
    // SAFETY: getpid(2) cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    let info = WatcherInfo {
        pid,
        starttime: starttime(pid).unwrap_or(0),
        started: crate::time::now(),
        trace: trace.to_path_buf(),
        attached: opts.attach.clone(),
    };
    let info_path = opts.state_dir.join("watcher.json");
    write_json_atomic(&info_path, &info).map_err(|e| format!("{}: {e}", info_path.display()))?;
    Ok(pid)
}

/// Stops the watcher on SIGTERM/SIGINT/SIGHUP, after one last event on every CPU so that the
/// losses at the end of a burst are counted.
fn stop_on_signals(signals: SigSet, shared: &Arc<Shared>) {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let _ = signals.wait();
            close_sequence_gaps();
            shared.stop.store(true, Ordering::SeqCst);
        })
        .expect("spawning the signal thread");
}
