//! The writer: the only thread that touches the disk. It merges the records of both sources,
//! hands them to the recorder (flushed often, so that a killed watcher loses little), keeps
//! `status.json` current, and seals the trace at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::recorder::{RecordError, Recorder};
use crate::sources::merge::Merger;
use crate::trace::Record;

use super::reader::close_sequence_gaps;
use super::shared::{Msg, Shared};
use super::{write_json_atomic, WatcherStatus};

/// Hold window of the merger.
const HOLD: Duration = Duration::from_millis(250);
/// The writer's pause after a round of messages, and the most messages in a round (see
/// [`Writer::run`]).
const WRITER_PACE: Duration = Duration::from_millis(10);
const WRITER_ROUND: usize = 1024;
/// How often the buffered records go to the file: at most this much is lost with the watcher.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How often `status.json` is rewritten.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Writer<'a> {
    shared: &'a Shared,
    recorder: Recorder<BufWriter<File>>,
    merger: Merger,
    status: WatcherStatus,
    state_dir: PathBuf,
    tracer: Option<JoinHandle<()>>,
    last_status: Instant,
    last_flush: Instant,
}

/// What one round of receiving brought.
struct Round {
    received: bool,
    /// Every sender is gone: the reader and the tracer have finished.
    senders_gone: bool,
}

impl<'a> Writer<'a> {
    pub fn new(
        shared: &'a Shared,
        recorder: Recorder<BufWriter<File>>,
        state_dir: PathBuf,
        tracer: Option<JoinHandle<()>>,
    ) -> Self {
        Writer {
            shared,
            recorder,
            merger: Merger::new(HOLD),
            status: WatcherStatus::default(),
            state_dir,
            tracer,
            // The first status is written at once.
            last_status: Instant::now() - 2 * STATUS_EVERY,
            last_flush: Instant::now(),
        }
    }

    /// Writes what the sources send until they have all finished (after a stop).
    pub fn run(&mut self, rx: &mpsc::Receiver<Msg>) {
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            if stopping {
                self.wake_tracer();
            }
            let round = self.receive(rx);
            if round.senders_gone {
                break;
            }
            for r in self.merger.ready(Instant::now()) {
                self.write(r);
            }
            if self.last_flush.elapsed() >= FLUSH_EVERY {
                let _ = self.recorder.flush();
                self.last_flush = Instant::now();
            }
            if self.last_status.elapsed() >= STATUS_EVERY {
                self.stop_if_orphaned(stopping);
                self.write_status();
                self.last_status = Instant::now();
            }
            // During a burst, records arrive in many small messages: the writer lets them gather
            // for a moment rather than wake for each one (its wake-ups take CPU from the build;
            // the merger holds records far longer than this anyway).
            if round.received && !stopping {
                std::thread::sleep(WRITER_PACE);
            }
        }
    }

    /// A follower blocked in waitpid does not see the stop flag: interrupt it.
    fn wake_tracer(&self) {
        if let Some(h) = self.tracer.as_ref() {
            if !h.is_finished() {
                crate::sources::ptrace::wake_tracer(self.shared.tracer_tid.load(Ordering::SeqCst));
            }
        }
    }

    /// The first message (waiting for it when idle), then whatever else has arrived — a
    /// bounded round, so that flushing, the status file and the stop checks run under any
    /// inflow.
    fn receive(&mut self, rx: &mpsc::Receiver<Msg>) -> Round {
        let mut next = Some(rx.recv_timeout(Duration::from_millis(50)));
        let mut round = Round {
            received: false,
            senders_gone: false,
        };
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
                Ok(Msg::Record(r, source)) => self.merger.push(*r, source, Instant::now()),
                Ok(Msg::Records(rs, source)) => {
                    let now = Instant::now();
                    for r in rs {
                        self.merger.push(r, source, now);
                    }
                }
                Ok(Msg::TracerDone(err)) => {
                    if let Some(e) = err {
                        log!("{} watcher: ptrace follower: {e}", crate::time::now());
                    }
                    if let Some(h) = self.tracer.take() {
                        let _ = h.join();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    round.senders_gone = true;
                    break;
                }
            }
            round.received = true;
        }
        round
    }

    fn write(&mut self, mut r: Record) {
        if matches!(r, Record::Exec(_)) {
            self.status.execs += 1;
        }
        self.recorder.record(&mut r);
        self.status.records = self.recorder.records();
    }

    /// The state directory removed under us: nobody can stop us any more, so stop now and seal
    /// what was recorded rather than run on, orphaned.
    fn stop_if_orphaned(&self, stopping: bool) {
        if !stopping && !self.state_dir.join("watcher.json").exists() {
            log!(
                "{} watcher: {} was removed; stopping and sealing the trace",
                crate::time::now(),
                self.state_dir.display()
            );
            close_sequence_gaps();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
    }

    fn write_status(&mut self) {
        self.status.time = crate::time::now();
        self.status.lost = self.shared.lost.load(Ordering::SeqCst);
        self.status.merged = self.merger.merged;
        let _ = write_json_atomic(&self.state_dir.join("status.json"), &self.status);
    }

    /// Writes what the merger still holds (once the reader is joined: nothing more can come),
    /// seals the trace with the lost count, writes the last status, and returns the exit code.
    pub fn seal(mut self) -> i32 {
        for r in self.merger.drain() {
            self.write(r);
        }
        let lost = self.shared.lost.load(Ordering::SeqCst);
        let sealed = self.recorder.seal(lost);
        self.status.time = crate::time::now();
        self.status.lost = lost;
        self.status.merged = self.merger.merged;
        self.status.sealed = sealed.is_ok();
        let _ = write_json_atomic(&self.state_dir.join("status.json"), &self.status);
        match sealed {
            Ok(()) => {
                log!(
                    "{} watcher: sealed {} records ({} execs, {} lost, {} seen by both sources)",
                    crate::time::now(),
                    self.status.records,
                    self.status.execs,
                    lost,
                    self.merger.merged
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
}
