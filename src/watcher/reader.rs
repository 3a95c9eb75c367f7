//! The proc connector reader: subscribes to the kernel's host-wide fork/exec/exit events and
//! turns them into records (each exec enriched from `/proc` at once), counting the events the
//! kernel dropped.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::{ExitEvent, ExitStatus, ForkEvent, Source};
use crate::sources::connector::{Connector, LossCounter, ProcEvent};
use crate::sources::fingerprint::Fingerprinter;
use crate::trace::Record;

use super::shared::{Msg, Shared};

/// The watcher sees every step of a job: each exec says which (`GITHUB_ACTION`).
pub(super) const WATCHER_EXTRAS: crate::sources::proc::Extras =
    crate::sources::proc::Extras { step: true };

/// Subscribes to the connector, gives every CPU's event sequence a starting point, and starts
/// the reader thread.
pub(super) fn start(
    rcvbuf: usize,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Msg>,
    fingerprinter: Fingerprinter,
) -> Result<JoinHandle<()>, String> {
    let connector = Connector::subscribe(rcvbuf).map_err(|e| {
        format!("{e}. In a container job, or without root, use `guard run -- CMD` instead.")
    })?;
    // One event on every CPU now, so that each CPU's sequence has a starting point: an event
    // lost on a CPU not heard from yet would otherwise go uncounted.
    close_sequence_gaps();
    let (shared, tx) = (shared.clone(), tx.clone());
    Ok(std::thread::Builder::new()
        .name("connector".into())
        .spawn(move || read_connector(connector, &shared, &tx, fingerprinter))
        .expect("spawning the connector thread"))
}

/// The connector reader: turns messages into records (enriching execs from `/proc` at once)
/// and never waits on anything but the socket.
fn read_connector(
    mut c: Connector,
    shared: &Shared,
    tx: &mpsc::Sender<Msg>,
    mut fingerprinter: Fingerprinter,
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
    fingerprinter: &mut Fingerprinter,
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
                let probe = e.argv.get(1).and_then(|a| {
                    a.as_bytes()
                        .strip_prefix(super::probe::PROBE_PREFIX.as_bytes())
                });
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

/// Makes one event on every CPU we may run on (a fork and an exit): at the start, and before the
/// reader drains the socket for the last time. Losses are counted from gaps in each CPU's event
/// sequence, and a gap is only seen between two events of that CPU: without these, the events
/// dropped (`ENOBUFS`) on a CPU not heard from yet, or at the end of a burst on a CPU that stays
/// quiet until the seal, would go uncounted.
pub(super) fn close_sequence_gaps() {
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
