//! Merging the host watcher's two sources into one ordered stream. A fork, exec or exit seen by
//! both ptrace and the proc connector is written once — with ptrace's data, which is read at
//! the exec stop and so is exact, and, for an exec, both sources named.
//!
//! The kernel emits the two reports of one event in a fixed order (the connector's fork message
//! before the parent's ptrace fork stop; the ptrace exec stop before the connector's exec
//! message), but they reach us through different threads. Every record is therefore held for a
//! short window, in arrival order, while its twin may still arrive; a twin that arrives later
//! than that is recognised and dropped.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::event::Source;
use crate::trace::Record;

/// How long a twin is remembered after its record was written.
const LATE_TWIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Fork,
    Exec,
    Exit,
}

type Key = (Kind, u32);

fn key(r: &Record) -> Option<Key> {
    match r {
        Record::Fork(f) => Some((Kind::Fork, f.pid)),
        Record::Exec(e) => Some((Kind::Exec, e.pid)),
        Record::Exit(x) => Some((Kind::Exit, x.pid)),
        _ => None,
    }
}

struct Slot {
    record: Record,
    key: Option<Key>,
    source: Source,
    twinned: bool,
    at: Instant,
}

/// The reorder-and-merge buffer. Every operation is O(1) amortised (a watcher that falls
/// behind holds thousands of records, and must catch up, not slow down further).
pub struct Merger {
    hold: Duration,
    queue: VecDeque<Slot>,
    /// Sequence number of `queue[0]` (slots are numbered in arrival order).
    front: u64,
    /// Held records by key: their sequence numbers, oldest first.
    held: HashMap<Key, VecDeque<u64>>,
    /// Written records still waiting for a twin: key → (source, when written), oldest first.
    written: HashMap<Key, VecDeque<(Source, Instant)>>,
    /// The same entries in the order they were written, to expire them without a scan.
    expiry: VecDeque<(Instant, Key)>,
    /// Records seen by both sources (written once).
    pub merged: u64,
    /// Twins that arrived after their record was written (dropped).
    pub late_twins: u64,
}

impl Merger {
    pub fn new(hold: Duration) -> Merger {
        Merger {
            hold,
            queue: VecDeque::new(),
            front: 0,
            held: HashMap::new(),
            written: HashMap::new(),
            expiry: VecDeque::new(),
            merged: 0,
            late_twins: 0,
        }
    }

    fn enqueue(&mut self, slot: Slot) {
        if let Some(k) = slot.key {
            let seq = self.front + self.queue.len() as u64;
            self.held.entry(k).or_default().push_back(seq);
        }
        self.queue.push_back(slot);
    }

    /// Adds a record from `source`.
    pub fn push(&mut self, mut record: Record, source: Source, now: Instant) {
        let Some(k) = key(&record) else {
            self.enqueue(Slot {
                record,
                key: None,
                source,
                twinned: false,
                at: now,
            });
            return;
        };
        let front = self.front;
        let twin = self.held.get(&k).and_then(|seqs| {
            seqs.iter().copied().find(|&seq| {
                let s = &self.queue[(seq - front) as usize];
                !s.twinned && s.source != source
            })
        });
        if let Some(seq) = twin {
            let slot = &mut self.queue[(seq - front) as usize];
            // Ptrace's data wins, at the position of whichever arrived first.
            if source == Source::Ptrace {
                slot.record = record;
            }
            if let Record::Exec(e) = &mut slot.record {
                e.source = Source::Ptrace;
                e.sources = vec![Source::Ptrace, Source::Connector];
            }
            slot.twinned = true;
            self.merged += 1;
            return;
        }
        if let Some(waiting) = self.written.get_mut(&k) {
            if let Some(i) = waiting.iter().position(|(s, _)| *s != source) {
                waiting.remove(i);
                if waiting.is_empty() {
                    self.written.remove(&k);
                }
                self.late_twins += 1;
                return;
            }
        }
        if let Record::Exec(e) = &mut record {
            e.source = source;
        }
        self.enqueue(Slot {
            record,
            key: Some(k),
            source,
            twinned: false,
            at: now,
        });
    }

    /// Records whose hold window has passed, in order.
    pub fn ready(&mut self, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        while self
            .queue
            .front()
            .is_some_and(|s| now.duration_since(s.at) >= self.hold)
        {
            out.push(self.pop());
        }
        // Forget written records whose twin can no longer come, oldest first.
        while let Some(&(at, k)) = self.expiry.front() {
            if now.duration_since(at) < LATE_TWIN {
                break;
            }
            self.expiry.pop_front();
            if let Some(waiting) = self.written.get_mut(&k) {
                if waiting.front().is_some_and(|(_, t)| *t == at) {
                    waiting.pop_front();
                }
                if waiting.is_empty() {
                    self.written.remove(&k);
                }
            }
        }
        out
    }

    /// Everything still held, in order (at the end).
    pub fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        while !self.queue.is_empty() {
            out.push(self.pop());
        }
        out
    }

    fn pop(&mut self) -> Record {
        let slot = self.queue.pop_front().expect("caller checked");
        let seq = self.front;
        self.front += 1;
        if let Some(k) = slot.key {
            if let Some(seqs) = self.held.get_mut(&k) {
                if seqs.front() == Some(&seq) {
                    seqs.pop_front();
                } else if let Some(i) = seqs.iter().position(|&x| x == seq) {
                    seqs.remove(i);
                }
                if seqs.is_empty() {
                    self.held.remove(&k);
                }
            }
            if !slot.twinned {
                self.written
                    .entry(k)
                    .or_default()
                    .push_back((slot.source, slot.at));
                self.expiry.push_back((slot.at, k));
            }
        }
        slot.record
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Bytes, ExecEvent, ExitEvent, ExitStatus, ForkEvent};

    fn exec(pid: u32, exe: &str, source: Source) -> Record {
        Record::Exec(Box::new(ExecEvent {
            seq: 0,
            time: String::new(),
            pid,
            tgid: pid,
            ppid: 1,
            former_tid: None,
            uid: 0,
            euid: None,
            exe: exe.into(),
            execfn: None,
            script: None,
            argv: vec![Bytes::from(exe)],
            cwd: None,
            comm: None,
            source,
            sources: Vec::new(),
            container: None,
            step: None,
            partial: source == Source::Connector,
            content: Vec::new(),
            blocked: false,
            attempt: None,
        }))
    }

    fn fork(pid: u32, source: Source) -> Record {
        Record::Fork(ForkEvent {
            seq: 0,
            time: String::new(),
            pid,
            ppid: 1,
            source,
        })
    }

    fn exit(pid: u32) -> Record {
        Record::Exit(ExitEvent {
            seq: 0,
            time: String::new(),
            pid,
            status: ExitStatus::Code(0),
        })
    }

    #[test]
    fn twins_are_written_once_in_order_with_ptrace_data() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(100);
        let mut m = Merger::new(hold);
        // Connector's fork first, then ptrace's; ptrace's exec first, then the connector's.
        m.push(fork(10, Source::Connector), Source::Connector, t0);
        m.push(
            exec(9, "/bin/other", Source::Connector),
            Source::Connector,
            t0,
        );
        m.push(fork(10, Source::Ptrace), Source::Ptrace, t0);
        m.push(
            exec(10, "/usr/sbin/nginx", Source::Ptrace),
            Source::Ptrace,
            t0,
        );
        m.push(
            exec(10, "/usr/sbin/nginx-partial", Source::Connector),
            Source::Connector,
            t0,
        );
        m.push(exit(10), Source::Ptrace, t0);
        m.push(exit(10), Source::Connector, t0);
        assert!(m.ready(t0).is_empty(), "held");
        let out = m.ready(t0 + hold);
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(matches!(&out[0], Record::Fork(f) if f.pid == 10 && f.source == Source::Ptrace));
        assert!(matches!(&out[1], Record::Exec(e) if e.pid == 9 && e.sources.is_empty()));
        match &out[2] {
            Record::Exec(e) => {
                assert_eq!(e.exe, Bytes::from("/usr/sbin/nginx"));
                assert!(!e.partial);
                assert_eq!(e.sources, vec![Source::Ptrace, Source::Connector]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[3], Record::Exit(x) if x.pid == 10));
        assert_eq!(m.merged, 3);
    }

    #[test]
    fn late_twins_are_dropped_and_repeated_execs_pair_in_order() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(50);
        let mut m = Merger::new(hold);
        m.push(exec(5, "/bin/env", Source::Ptrace), Source::Ptrace, t0);
        m.push(
            exec(5, "/usr/bin/python3", Source::Ptrace),
            Source::Ptrace,
            t0,
        );
        m.push(
            exec(5, "/bin/env", Source::Connector),
            Source::Connector,
            t0,
        );
        let out = m.ready(t0 + hold);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], Record::Exec(e) if e.exe == Bytes::from("/bin/env") && e.sources.len() == 2)
        );
        assert!(matches!(&out[1], Record::Exec(e) if e.sources.is_empty()));
        // The second connector twin comes too late: it is recognised and dropped.
        m.push(
            exec(5, "/usr/bin/python3", Source::Connector),
            Source::Connector,
            t0 + hold,
        );
        assert!(m.drain().is_empty());
        assert_eq!(m.late_twins, 1);
        // But an unrelated later exec of the same pid from the connector alone is kept.
        m.push(
            exec(5, "/usr/bin/true", Source::Connector),
            Source::Connector,
            t0 + hold,
        );
        assert_eq!(m.drain().len(), 1);
    }

    #[test]
    fn a_large_backlog_keeps_order_and_twins_and_forgets_old_records() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(250);
        let mut m = Merger::new(hold);
        // 50,000 execs from the connector, every tenth also from ptrace (arriving later).
        for pid in 0..50_000u32 {
            m.push(
                exec(pid, "/bin/x", Source::Connector),
                Source::Connector,
                t0,
            );
            if pid % 10 == 0 {
                m.push(exec(pid, "/bin/x", Source::Ptrace), Source::Ptrace, t0);
            }
        }
        let out = m.ready(t0 + hold);
        assert_eq!(out.len(), 50_000);
        assert_eq!(m.merged, 5_000);
        let pids: Vec<u32> = out
            .iter()
            .map(|r| match r {
                Record::Exec(e) => e.pid,
                _ => unreachable!(),
            })
            .collect();
        assert!(pids.windows(2).all(|w| w[0] < w[1]), "arrival order kept");
        // A late twin (after its record was written) is recognised and dropped ...
        m.push(exec(1, "/bin/x", Source::Ptrace), Source::Ptrace, t0 + hold);
        assert_eq!(m.late_twins, 1);
        assert!(m.ready(t0 + hold * 2).is_empty());
        // ... but not once LATE_TWIN has passed: then it is a record of its own.
        let _ = m.ready(t0 + LATE_TWIN + hold);
        assert!(m.written.is_empty() && m.expiry.is_empty());
        m.push(
            exec(3, "/bin/x", Source::Ptrace),
            Source::Ptrace,
            t0 + LATE_TWIN + hold,
        );
        assert_eq!(m.late_twins, 1);
        assert_eq!(m.drain().len(), 1);
        assert!(m.held.is_empty());
    }
}
