//! The watcher process, from its detachment to its seal: [`daemon_main`] is the sequence of
//! steps, each a function here or a module of its own.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};

use crate::event::Source;
use crate::recorder::{AfterError, Recorder};
use crate::trace::{Header, Record};

use super::door::{Door, Ledger};
use super::reader::{close_sequence_gaps, WATCHER_EXTRAS};
use super::shared::{Msg, Shared};
use super::writer::Writer;
use super::{
    channel, lockdown, probe, reader, starttime, tracer, write_json_atomic, StartOptions,
    WatcherInfo,
};

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
    // The Action's job: the channel is bound before anything else can take its name, and the
    // door watches the worker's children.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let pending: channel::Pending = Arc::new(Mutex::new(None));
    let listener = match &opts.sealed {
        Some(sealed) => match channel::bind(&sealed.session.channel) {
            Ok(l) => Some(l),
            Err(e) => return ready.fail(format!("the watcher's channel: {e}")),
        },
        None => None,
    };
    let (attach, follow_steps) = match &opts.sealed {
        Some(sealed) => (vec![sealed.session.worker], sealed.session.follow_steps),
        None => (opts.attach.clone(), !opts.let_go_at_exec),
    };
    // disable-sudo: from now on no step can stop, trace or read us. (Before the tracer starts:
    // its waitpid(-1) would reap the children this runs.)
    let lockdown = match &opts.sealed {
        Some(sealed) => match lockdown::apply(
            sealed.session.lockdown,
            sealed.session.user,
            &sealed.session.container_sockets,
        ) {
            Ok(applied) => {
                let _ = write_json_atomic(&opts.state_dir.join(super::LOCKDOWN_FILE), &applied);
                applied
            }
            Err(e) => return ready.fail(e),
        },
        None => lockdown::Applied::default(),
    };
    let door = opts
        .sealed
        .as_ref()
        .map(|s| Door::new(s.session.clone(), ledger.clone(), shared.stop.clone()));
    let tracer = if attach.is_empty() {
        None
    } else {
        match tracer::start(
            &attach,
            &shared,
            &tx,
            opts.fingerprinter.clone(),
            door,
            follow_steps,
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                lockdown::release(&lockdown);
                return ready.fail(e);
            }
        }
    };
    let recorder = match open_trace(trace_file) {
        Ok(r) => r,
        Err(e) => {
            lockdown::release(&lockdown);
            return ready.fail(format!("{}: {e}", trace.display()));
        }
    };
    let pid = match write_watcher_info(opts, &trace) {
        Ok(pid) => pid,
        Err(e) => {
            lockdown::release(&lockdown);
            return ready.fail(e);
        }
    };
    if let (Some(sealed), Some(listener)) = (&opts.sealed, listener) {
        channel::serve(
            listener,
            sealed.session.clone(),
            ledger.clone(),
            pending.clone(),
            shared.stop.clone(),
            close_sequence_gaps,
        );
        watch_for_sigcont();
        end_with_the_worker(
            sealed.session.worker,
            sealed.session.worker_starttime,
            &shared,
        );
    }
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
    let code = writer.seal();
    if let Some(sealed) = &opts.sealed {
        // What the job's steps lost is given back before the post step has its answer: the
        // runner's own clean-up runs right after it.
        let answer = verdict(sealed, &trace, code, &ledger);
        sealed.session.release();
        lockdown::release(&lockdown);
        for f in [super::SESSION_FILE, super::LOCKDOWN_FILE] {
            let _ = std::fs::remove_file(opts.state_dir.join(f));
        }
        match pending.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(mut conn) => {
                channel::answer(&mut conn, &answer);
                log!("{} watcher: verdict given", crate::time::now());
                // Closed by our exit, which the post step waits for.
                std::mem::forget(conn);
            }
            None => log!(
                "{} watcher: stopped with no verdict requested",
                crate::time::now()
            ),
        }
    }
    // The post step reads until the channel closes, which is our exit.
    code
}

/// The verdict on the sealed trace, with what the door and the watcher itself found.
fn verdict(
    sealed: &super::Sealed,
    trace: &Path,
    sealed_code: i32,
    ledger: &Mutex<Ledger>,
) -> super::message::Message {
    let (mut tampered, notes) = {
        let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        (l.tampered.clone(), l.notes.clone())
    };
    tampered.extend(sealed.session.tampered_files());
    if CONTINUED.load(Ordering::SeqCst) {
        tampered.push(
            "the watcher was stopped (SIGSTOP) and continued during the job: what ran meanwhile was seen late, if at all".into(),
        );
    }
    let input = super::VerdictInput {
        session: &sealed.session,
        trace,
        last_seen: (sealed_code != 0).then(crate::time::now),
        tampered,
        notes,
    };
    (sealed.verdict)(&input)
}

/// Stops the watcher once the runner's worker is gone: the job is over, and no post step will
/// ask for the verdict (the runner died, or the post step was stopped at the door).
fn end_with_the_worker(worker: u32, since: u64, shared: &Arc<Shared>) {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let gone = procfs::process::Process::new(worker as i32)
                .and_then(|p| p.stat())
                .map_or(true, |st| {
                    st.starttime != since || matches!(st.state, 'Z' | 'X')
                });
            if gone {
                log!(
                    "{} watcher: the runner's worker (pid {worker}) is gone: the job is over",
                    crate::time::now()
                );
                close_sequence_gaps();
                shared.stop.store(true, Ordering::SeqCst);
                return;
            }
        })
        .expect("spawning the worker thread");
}

/// Set when the watcher receives SIGCONT: it was stopped, which nothing but an attack does.
static CONTINUED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigcont(_: libc::c_int) {
    CONTINUED.store(true, Ordering::SeqCst);
}

fn watch_for_sigcont() {
    // SAFETY: installing a handler that only stores to an atomic; sigaction is plain data.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigcont as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGCONT, &sa, std::ptr::null_mut());
    }
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
        attached: opts
            .sealed
            .as_ref()
            .map_or_else(|| opts.attach.clone(), |s| vec![s.session.worker]),
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
