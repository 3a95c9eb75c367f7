//! The recorder: between the sources and the trace, it numbers every record, writes it, keeps
//! the first write error and seals the trace — the same way for `guard run` and the watcher.
//!
//! Records are numbered from 1 in the order they reach the recorder, whether or not a trace is
//! written (the checker sees the same numbers as the file). After the first write error no
//! record is written any more: the error is kept, and what happens to the trace then is the
//! recorder's [`AfterError`].

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::trace::{Header, Record, TraceWriter};

/// The trace's write buffer: one write(2) per many records, flushed by the seal (and by
/// [`Recorder::flush`] for a caller that bounds what a crash would lose).
const BUFFER: usize = 1 << 16;

/// What becomes of the trace once a write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterError {
    /// The writer is dropped and the trace left unsealed: a reader reports it incomplete
    /// (`guard run`, which reports the failure itself at once).
    Abandon,
    /// The writer is kept: later flushes retry what it buffered and the seal is still written
    /// (the watcher, which reports the failure in its status and log).
    KeepSealing,
}

/// Why a trace is not whole.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record could not be written (the first such error).
    #[error("{0}")]
    Write(io::Error),
    /// The seal could not be written.
    #[error("{0}")]
    Seal(io::Error),
}

/// Numbers records and writes them to a trace, if any.
pub struct Recorder<W: Write> {
    writer: Option<TraceWriter<W>>,
    after_error: AfterError,
    /// The last sequence number given.
    seq: u64,
    /// The first write error.
    error: Option<io::Error>,
}

impl Recorder<BufWriter<File>> {
    /// A recorder writing a trace to `file`, buffered, starting with `header`.
    pub fn to_file(file: File, header: &Header, after_error: AfterError) -> io::Result<Self> {
        Recorder::new(BufWriter::with_capacity(BUFFER, file), header, after_error)
    }
}

impl<W: Write> Recorder<W> {
    /// A recorder writing a trace to `out`, starting with `header`.
    pub fn new(out: W, header: &Header, after_error: AfterError) -> io::Result<Self> {
        Ok(Recorder {
            writer: Some(TraceWriter::new(out, header)?),
            after_error,
            seq: 0,
            error: None,
        })
    }

    /// A recorder that only numbers records (no trace was asked for).
    pub fn numbering_only() -> Self {
        Recorder {
            writer: None,
            after_error: AfterError::Abandon,
            seq: 0,
            error: None,
        }
    }

    /// Gives `record` the next sequence number and writes it (unless a write failed before).
    pub fn record(&mut self, record: &mut Record) {
        self.seq += 1;
        record.set_seq(self.seq);
        if self.error.is_some() {
            return;
        }
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if let Err(e) = w.write(record) {
            self.error = Some(e);
            if self.after_error == AfterError::Abandon {
                self.writer = None;
            }
        }
    }

    /// Records numbered so far (the last sequence number).
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Whether every record so far was written (or no trace is written).
    pub fn is_whole(&self) -> bool {
        self.error.is_none()
    }

    /// Hands the buffered records to the file. A failure loses nothing: they stay buffered
    /// for the next flush or the seal.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Seals the trace with the count of events the sources know they missed, and flushes it.
    /// A failed seal is the error reported, else the first write error.
    pub fn seal(self, lost: u64) -> Result<(), RecordError> {
        let sealed = match self.writer {
            Some(w) => w.seal(lost).map(drop),
            None => Ok(()),
        };
        match (sealed, self.error) {
            (Err(e), _) => Err(RecordError::Seal(e)),
            (Ok(()), Some(e)) => Err(RecordError::Write(e)),
            (Ok(()), None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::event::{ExitEvent, ExitStatus, ForkEvent, Source};

    fn fork(pid: u32) -> Record {
        Record::Fork(ForkEvent {
            seq: 0,
            time: crate::time::now(),
            pid,
            ppid: 1,
            source: Source::Connector,
        })
    }

    fn exit(pid: u32) -> Record {
        Record::Exit(ExitEvent {
            seq: 0,
            time: crate::time::now(),
            pid,
            status: ExitStatus::Code(0),
        })
    }

    fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// A writer that accepts `room` bytes, then fails every write.
    struct Full {
        room: usize,
        written: Vec<u8>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room < buf.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room -= buf.len();
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn numbers_writes_and_seals_like_a_trace_writer() {
        let header = Header::new("run");
        let mut expected = TraceWriter::new(Vec::new(), &header).unwrap();
        let mut recorder = Recorder::new(Vec::new(), &header, AfterError::Abandon).unwrap();
        for (i, mut r) in [fork(10), exit(10), fork(11)].into_iter().enumerate() {
            recorder.record(&mut r);
            let mut numbered = r.clone();
            numbered.set_seq(i as u64 + 1);
            assert_eq!(r, numbered);
            expected.write(&r).unwrap();
        }
        assert_eq!(recorder.records(), 3);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        // The seal's time differs between the two: compare everything up to it, and its counts.
        let w = recorder.writer.take().unwrap();
        got.extend(w.seal(2).unwrap());
        want.extend(expected.seal(2).unwrap());
        let (got, want) = (lines(&got), lines(&want));
        assert_eq!(got[..4], want[..4]);
        assert_eq!(got[4]["records"], 3);
        assert_eq!(got[4]["lost"], 2);
    }

    #[test]
    fn numbers_records_without_a_trace() {
        let mut recorder: Recorder<Vec<u8>> = Recorder::numbering_only();
        let mut r = fork(10);
        recorder.record(&mut r);
        recorder.record(&mut r);
        assert!(matches!(r, Record::Fork(ForkEvent { seq: 2, .. })));
        assert!(recorder.seal(0).is_ok());
    }

    #[test]
    fn keeps_the_first_write_error_and_numbers_on() {
        for after_error in [AfterError::Abandon, AfterError::KeepSealing] {
            let full = Full {
                room: 200,
                written: Vec::new(),
            };
            let mut recorder = Recorder::new(full, &Header::new("run"), after_error).unwrap();
            for pid in 0..20 {
                recorder.record(&mut fork(pid));
                recorder.flush().ok();
            }
            assert_eq!(recorder.records(), 20);
            assert!(!recorder.is_whole());
            assert_eq!(
                recorder.writer.is_some(),
                after_error == AfterError::KeepSealing
            );
            match (after_error, recorder.seal(0)) {
                (AfterError::Abandon, Err(RecordError::Write(e)))
                | (AfterError::KeepSealing, Err(RecordError::Seal(e))) => {
                    assert!(e.to_string().contains("No space left"), "{e}")
                }
                (a, r) => panic!("{a:?}: {r:?}"),
            }
        }
    }
}
