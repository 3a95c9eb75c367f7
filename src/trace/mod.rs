//! The trace: a JSON Lines file of everything an exec source saw, written as it happens and
//! re-read by `guard check`.
//!
//! # Format (version 2)
//! One JSON object per line, each with a `"type"`:
//! - `header` (first line): `format` (2), `tool`, `version`, `watcher` (`"run"` or `"watcher"`),
//!   `started`, and for `guard run` the traced `command` and its `root` pid.
//! - `exec`: one successful exec ([`ExecEvent`]): `seq, time, pid, tgid, ppid, uid, exe, argv, cwd,
//!   comm, source` and, when present, `former_tid, euid, execfn, script, partial`.
//! - `process`: a process that existed before tracing began (same fields as `exec`): known for
//!   the ancestry of later execs, never matched against recipes.
//! - `attempt`: an exec that did not happen (same fields as `exec`, with `attempt`: `errno`,
//!   `error` and `blocked` when `--mode enforce` refused it). Recorded when exec attempts are
//!   traced (`guard run --attempts`, `--mode enforce`).
//! - `fingerprint`: an executable read to fingerprint it, once per file per run: `pid, path,
//!   file` (`dev, ino, size, mtime`), `matched`, `bytes`, `micros`. Exec records carry the
//!   fingerprints their file matched in `content`.
//! - `fork`: a new process (`seq, time, pid, ppid, source`).
//! - `exit`: a process ended (`seq, time, pid, status`), `status` being `{"code": N}` or
//!   `{"signal": N}`.
//! - `end`: the traced command ended (`status`, `outlived`: pids left running and detached).
//! - `seal` (last line): `records` (count of lines between header and seal), `lost` (events the
//!   source knows it missed), `chain` (see below), `time`.
//!
//! Strings that are not valid UTF-8 are written as `{"bytes": "<base64>"}` (see [`crate::event`]).
//!
//! `chain` is `sha256(c || records || lost || time)`, where `c` is the BLAKE3 hash of the lines
//! from the header to the last record, each followed by a newline (the file's bytes up to the
//! seal, as guard writes them; a reader takes CRLF for a newline and leaves out blank lines),
//! the counts are little-endian u64 and `time` is the seal's own UTF-8 string; the seal line
//! must be exactly as guard writes it (compact JSON, keys in order), so that no byte of a record
//! can change unseen. BLAKE3 because a trace of a large build is half a gigabyte, and it hashes
//! three times faster than SHA-256 here. (Format 1 chained the lines one by one with SHA-256,
//! `c(n+1) = sha256(c(n) || line(n))` from `c0 = sha256("webserver-exec-guard trace v1")`, a
//! hash finalisation per line, three million for a million-exec trace: it is still read.)
//! A reader recomputes it, so an edited, reordered or truncated trace, or a changed lost count,
//! is detected. The chain is not keyed: it proves that a trace is whole and unedited against
//! accidents and against anyone who cannot write the file, not against someone who can
//! rewrite it entirely — which is why the watcher's trace is root-owned and 0600.
//!
//! A reader accepts a trace whose last line is torn (a writer killed mid-line) and says so.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::FingerprintEvent;
use crate::event::{Bytes, EndEvent, ExecEvent, ExitEvent, ForkEvent};

mod fast;

pub const FORMAT_VERSION: u32 = 2;

/// The formats this guard reads.
pub const FORMATS_READ: [u32; 2] = [1, FORMAT_VERSION];

/// First line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: u32,
    pub tool: String,
    pub version: String,
    /// `"run"` for `guard run`, `"watcher"` for the host watcher.
    pub watcher: String,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<Bytes>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<u32>,
}

impl Header {
    pub fn new(watcher: &str) -> Header {
        Header {
            format: FORMAT_VERSION,
            tool: crate::TOOL_NAME.to_string(),
            version: crate::VERSION.to_string(),
            watcher: watcher.to_string(),
            started: crate::time::now(),
            command: None,
            root: None,
        }
    }
}

/// Last line of a complete trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub time: String,
    pub records: u64,
    pub lost: u64,
    pub chain: String,
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    /// (Boxed, as are `process` and `attempt`: a trace reader moves millions of records, and
    /// the other kinds are small.)
    Exec(Box<ExecEvent>),
    /// A process that existed before tracing began (attach, host watcher start): what it runs,
    /// for the ancestry of later execs. Never matched against recipes.
    Process(Box<ExecEvent>),
    /// An exec that did not happen (failed, or refused by `--mode enforce`): the same fields
    /// as `exec`, with `attempt`.
    Attempt(Box<ExecEvent>),
    /// An executable read to fingerprint it (once per file per run).
    Fingerprint(FingerprintEvent),
    Fork(ForkEvent),
    Exit(ExitEvent),
    End(EndEvent),
    Seal(Seal),
}

impl Record {
    /// Sets the sequence number of a record (header and seal have none).
    pub fn set_seq(&mut self, seq: u64) {
        match self {
            Record::Exec(e) | Record::Process(e) | Record::Attempt(e) => e.seq = seq,
            Record::Fingerprint(f) => f.seq = seq,
            Record::Fork(f) => f.seq = seq,
            Record::Exit(x) => x.seq = seq,
            Record::End(e) => e.seq = seq,
            Record::Header(_) | Record::Seal(_) => {}
        }
    }

    /// When the record was made (header and seal have no such time).
    pub fn time(&self) -> Option<&str> {
        match self {
            Record::Exec(e) | Record::Process(e) | Record::Attempt(e) => Some(&e.time),
            Record::Fingerprint(f) => Some(&f.time),
            Record::Fork(f) => Some(&f.time),
            Record::Exit(x) => Some(&x.time),
            Record::End(e) => Some(&e.time),
            Record::Header(_) | Record::Seal(_) => None,
        }
    }
}

/// Parses one line. Lines as guard writes them start with their tag (`{"type":"exec",`): the
/// rest is parsed straight into its type, which spares serde's buffering of internally tagged
/// enums (the bulk of `guard check`'s parse time). Anything else, and any line the fast path
/// rejects, goes through the general parser, whose error messages are the ones reported — with
/// the fast path's position when the general parser has none (buffered errors lose it).
fn parse_record(line: &[u8], scratch: &mut Vec<u8>) -> Result<Record, ParseFailure> {
    fn body(line: &[u8]) -> Option<(&[u8], &[u8])> {
        let rest = line.strip_prefix(b"{\"type\":\"")?;
        let q = rest.iter().position(|&b| b == b'"')?;
        Some((&rest[..q], rest[q + 1..].strip_prefix(b",")?))
    }
    let mut fast_error = None;
    if let Some((tag, rest)) = body(line) {
        scratch.clear();
        scratch.push(b'{');
        scratch.extend_from_slice(rest);
        let fast = match tag {
            b"exec" => Some(serde_json::from_slice(scratch).map(Record::Exec)),
            b"fork" => Some(serde_json::from_slice(scratch).map(Record::Fork)),
            b"exit" => Some(serde_json::from_slice(scratch).map(Record::Exit)),
            b"attempt" => Some(serde_json::from_slice(scratch).map(Record::Attempt)),
            b"fingerprint" => Some(serde_json::from_slice(scratch).map(Record::Fingerprint)),
            b"process" => Some(serde_json::from_slice(scratch).map(Record::Process)),
            _ => None,
        };
        match fast {
            Some(Ok(r)) => return Ok(r),
            // Column c of the scratch is column c + (line.len() - rest.len()) - 1 of the line.
            Some(Err(error)) => fast_error = Some((error, line.len() - rest.len() - 1)),
            None => {}
        }
    }
    serde_json::from_slice(line).map_err(|error| match fast_error {
        Some((fast, shift)) if error.column() == 0 && fast.column() > 0 => ParseFailure {
            error,
            column: fast.column() + shift,
        },
        _ => ParseFailure {
            column: error.column(),
            error,
        },
    })
}

/// A line that is not a record: the error, and its 1-based column in the line (0: unknown).
struct ParseFailure {
    error: serde_json::Error,
    column: usize,
}

/// The running hash of a trace's lines, in the way of its format.
#[derive(Clone)]
enum Chain {
    /// Format 1: each line chained to the hash of those before it.
    Lines([u8; 32]),
    /// Format 2: one BLAKE3 hash over the lines and their newlines (boxed: the hasher is
    /// large).
    Stream(Box<blake3::Hasher>),
}

impl Chain {
    fn new(format: u32) -> Chain {
        if format == 1 {
            Chain::Lines(Sha256::digest(b"webserver-exec-guard trace v1").into())
        } else {
            Chain::Stream(Box::new(blake3::Hasher::new()))
        }
    }

    /// Adds one line as it is in the file, newline included. Line endings do not count (a
    /// trace whose newlines became CRLF on the way still verifies), nor do blank lines.
    fn line(&mut self, raw: &[u8]) {
        let text = trim_newline(raw);
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match self {
            Chain::Lines(prev) => {
                let mut h = Sha256::new();
                h.update(*prev);
                h.update(text);
                *prev = h.finalize().into();
            }
            Chain::Stream(h) => {
                h.update(text);
                h.update(b"\n");
            }
        }
    }

    /// The hash of the lines so far.
    fn value(&self) -> [u8; 32] {
        match self {
            Chain::Lines(c) => *c,
            Chain::Stream(h) => *h.finalize().as_bytes(),
        }
    }
}

/// The value a seal carries: the chain over the lines, bound to the record and lost counts.
fn seal_value(chain: &[u8; 32], records: u64, lost: u64, time: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(chain);
    h.update(records.to_le_bytes());
    h.update(lost.to_le_bytes());
    h.update(time.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a trace line by line, keeping the chain and the record count for the seal.
pub struct TraceWriter<W: Write> {
    out: W,
    chain: Chain,
    records: u64,
    line: Vec<u8>,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = TraceWriter {
            out,
            chain: Chain::new(FORMAT_VERSION),
            records: 0,
            line: Vec::with_capacity(512),
        };
        w.write_line(&Record::Header(header.clone()))?;
        Ok(w)
    }

    fn write_line(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.chain.line(&self.line);
        self.out.write_all(&self.line)
    }

    /// Appends one record (not a header or a seal).
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        debug_assert!(!matches!(record, Record::Header(_) | Record::Seal(_)));
        self.write_line(record)?;
        self.records += 1;
        Ok(())
    }

    /// Writes the seal, flushes and returns the writer.
    pub fn seal(mut self, lost: u64) -> io::Result<W> {
        let time = crate::time::now();
        let chain = seal_value(&self.chain.value(), self.records, lost, &time);
        let seal = Seal {
            time,
            records: self.records,
            lost,
            chain: hex(&chain),
        };
        serde_json::to_writer(&mut self.out, &Record::Seal(seal)).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A trace line longer than this is refused: an exec record carries at most the kernel's
/// argument limit (6 MiB with an unlimited stack), which JSON's `\u0001` escapes can make six
/// times longer; 64 MiB leaves room, and a file that is not a trace (`/dev/zero`, a binary)
/// cannot make the reader hold more.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// What is wrong with a trace file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{}: {error}", shown(path))]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{}: is {kind}, not a regular file: a trace must be a regular file",
        shown(path)
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    /// `column` is 1-based, in bytes.
    #[error(
        "{}:{line}:{column}: not a trace record: {}",
        shown(path),
        crate::escape::inert(message)
    )]
    Parse {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}:{line}: line longer than the {} MiB limit for a trace line: not a trace", shown(path), MAX_LINE_BYTES >> 20)]
    LineTooLong { path: PathBuf, line: u64 },
    /// `starts`: the first bytes, escaped (empty: an empty file).
    #[error("{}:1: not a webserver-exec-guard trace (the first line must be a header; {})", shown(path), if starts.is_empty() { "the file is empty".to_string() } else { format!("it starts with \"{starts}\"") })]
    NoHeader { path: PathBuf, starts: String },
    #[error(
        "{}:1: trace format {found} is not supported (this guard reads formats 1 and {FORMAT_VERSION})",
        shown(path)
    )]
    Version { path: PathBuf, found: u32 },
}

/// A path for a terminal (a trace's name may be anything).
fn shown(path: &Path) -> String {
    crate::escape::terminal(path.as_os_str().as_encoded_bytes())
}

/// A serde_json error on one line: the column, and the message with the text where it stopped
/// quoted (escaped, at most 50 bytes).
fn parse_error(path: &Path, line_no: u64, line: &[u8], failure: &ParseFailure) -> TraceError {
    let e = &failure.error;
    let mut message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    if let Some(i) = message.rfind(&suffix) {
        message.truncate(i);
    }
    let column = failure.column.max(1);
    // serde_json places an error after the token it stopped at: show the 30 bytes before that,
    // and 20 after.
    let at = (column - 1).min(line.len());
    let (from, to) = (at.saturating_sub(30), line.len().min(at + 20));
    if from < to {
        message.push_str(&format!(
            ", near {}\"{}\"{}",
            if from > 0 { "…" } else { "" },
            crate::escape::terminal(&line[from..to]),
            if to < line.len() { "…" } else { "" }
        ));
    }
    TraceError::Parse {
        path: path.to_path_buf(),
        line: line_no,
        column: column as u64,
        message,
    }
}

/// Reads one line (with its newline, if any) into `buf`; `None` when it is longer than
/// [`MAX_LINE_BYTES`] (what was read so far is discarded).
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.clear();
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(Some(buf.len()));
        }
        let (take, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > MAX_LINE_BYTES {
            buf.clear();
            return Ok(None);
        }
        buf.extend_from_slice(&available[..take]);
        input.consume(take);
        if done {
            return Ok(Some(buf.len()));
        }
    }
}

/// How a trace ended, as established by the reader once it reached the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Sealed, and the seal matches the records.
    Sealed { lost: u64 },
    /// No seal: the writer stopped (killed, or still running). `torn` when the last line was cut.
    Unsealed { torn: bool },
    /// The seal does not match what precedes it, or records follow the seal.
    Altered { reason: String },
}

/// Streams the records of a trace, checking the chain and the seal as it goes.
///
/// The work is split over threads besides the caller's, so that a million-exec trace is
/// checked in under a second on two cores: one reads the file in large blocks, cuts it into
/// lines and hashes them (a hash runs in order by nature); [`PARSERS`] parse the batches of
/// lines into records, in turn; the caller gets the records in order and follows the seal.
/// Bounded channels and record pools keep memory flat whatever the trace's size. Dropping the
/// reader stops the threads.
pub struct TraceReader {
    path: PathBuf,
    header: Header,
    /// The parsers, taken in turn (batch `n` went to parser `n % PARSERS`).
    parsers: Vec<Parser>,
    turn: usize,
    /// The batch being handed out, the next record in it, and what follows its records.
    current: Vec<Record>,
    index: usize,
    from: usize,
    after: Option<(Option<Stop>, Option<Ending>)>,
    /// Records handed out (the seal must count as many).
    records: u64,
    /// A seal that matches the records was read (with its lost count): only blank lines may
    /// follow it.
    sealed: Option<u64>,
    integrity: Option<Integrity>,
    done: bool,
    /// The time of the last record of the batches handed out before `current` (the header's
    /// start before any): kept once per batch, not once per record.
    last_time: String,
}

/// Threads that parse lines into records.
pub const PARSERS: usize = 2;

struct Parser {
    incoming: mpsc::Receiver<Parsed>,
    /// Batches handed out, back to the thread that made their records, to be dropped there
    /// (cheap for the allocator).
    recycle: mpsc::Sender<Vec<Record>>,
}

/// Lines of the file, as cut by the reading thread.
struct Lines {
    /// Whole lines, newlines included, back to back.
    data: Vec<u8>,
    lines: Vec<Line>,
    /// Set on the last batch: how the file ended.
    end: Option<Ending>,
}

struct Line {
    /// The line in `data`, without its trailing newline characters.
    start: usize,
    end: usize,
    no: u64,
    /// It ended with a newline (the last line of a file being written may not).
    complete: bool,
    /// For a line that starts as a seal does: the hash of every line before it (the header
    /// and the records).
    chain: Option<[u8; 32]>,
}

enum Ending {
    Eof,
    TooLong { line: u64 },
    Io(io::Error),
}

/// A batch of lines, parsed.
struct Parsed {
    records: Vec<Record>,
    /// The line that stopped the batch early, when one did.
    stop: Option<Stop>,
    /// The batch's first line that is not blank (data, if a seal came before the batch).
    first_data: Option<u64>,
    /// Set on the last batch: how the file ended.
    end: Option<Ending>,
}

/// A line that is not a record.
enum Stop {
    Seal {
        seal: Seal,
        /// Written exactly as guard writes a seal.
        canonical: bool,
        /// The chain over the records before it, kept by the reading thread.
        chain: Option<[u8; 32]>,
        /// The first line after it, in the batch, that is not blank.
        data_after: Option<u64>,
    },
    /// The last line of the file is cut (a writer killed mid-line).
    Torn,
    Error(TraceError),
}

/// Lines per batch are cut at this many bytes (a batch holds at least one whole line).
const BATCH_BYTES: usize = 1 << 18;

const SEAL_PREFIX: &[u8] = b"{\"type\":\"seal\"";

impl TraceReader {
    pub fn open(path: &Path) -> Result<TraceReader, TraceError> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let io_err = |error| TraceError::Io {
            path: path.to_path_buf(),
            error,
        };
        // Not blocking on a FIFO without a writer, never taking a terminal as ours; then only a
        // regular file is read (a FIFO or a device could be endless).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io_err)?;
        let kind = file.metadata().map_err(io_err)?.file_type();
        let kind = if kind.is_file() {
            None
        } else if kind.is_dir() {
            Some("a directory")
        } else if kind.is_fifo() {
            Some("a FIFO")
        } else if kind.is_char_device() {
            Some("a character device")
        } else if kind.is_block_device() {
            Some("a block device")
        } else if kind.is_socket() {
            Some("a socket")
        } else {
            Some("not a regular file")
        };
        if let Some(kind) = kind {
            return Err(TraceError::NotRegular {
                path: path.to_path_buf(),
                kind,
            });
        }
        let mut input = BufReader::with_capacity(1 << 16, file);
        let mut buf = Vec::new();
        if read_line(&mut input, &mut buf).map_err(io_err)?.is_none() {
            return Err(TraceError::LineTooLong {
                path: path.to_path_buf(),
                line: 1,
            });
        }
        let line = trim_newline(&buf);
        let header = match serde_json::from_slice::<Record>(line) {
            Ok(Record::Header(h)) => h,
            _ => {
                // Distinguish a newer format from something that is not a trace at all.
                #[derive(Deserialize)]
                struct Probe {
                    #[serde(rename = "type")]
                    kind: String,
                    format: u32,
                }
                return Err(match serde_json::from_slice::<Probe>(line) {
                    Ok(p) if p.kind == "header" && !FORMATS_READ.contains(&p.format) => {
                        TraceError::Version {
                            path: path.to_path_buf(),
                            found: p.format,
                        }
                    }
                    _ => TraceError::NoHeader {
                        path: path.to_path_buf(),
                        starts: crate::escape::terminal(&line[..line.len().min(40)]),
                    },
                });
            }
        };
        if !FORMATS_READ.contains(&header.format) {
            return Err(TraceError::Version {
                path: path.to_path_buf(),
                found: header.format,
            });
        }
        let mut chain = Chain::new(header.format);
        chain.line(&buf);
        // What the header's read brought in beyond its line is the start of the rest.
        let ahead = input.buffer().to_vec();
        let file = input.into_inner();
        let mut to_parsers = Vec::new();
        let mut parsers = Vec::new();
        for n in 0..PARSERS {
            let (lines_tx, lines_rx) = mpsc::sync_channel::<Lines>(2);
            let (parsed_tx, parsed_rx) = mpsc::sync_channel::<Parsed>(2);
            let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<Record>>();
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name(format!("trace-parse-{n}"))
                .spawn(move || parse_lines(&path, &lines_rx, &parsed_tx, &recycle_rx))
                .map_err(io_err)?;
            to_parsers.push(lines_tx);
            parsers.push(Parser {
                incoming: parsed_rx,
                recycle: recycle_tx,
            });
        }
        std::thread::Builder::new()
            .name("trace-read".into())
            .spawn(move || cut_lines(file, ahead, chain, &to_parsers))
            .map_err(io_err)?;
        Ok(TraceReader {
            path: path.to_path_buf(),
            last_time: header.started.clone(),
            header,
            parsers,
            turn: 0,
            current: Vec::new(),
            index: 0,
            from: 0,
            after: None,
            records: 0,
            sealed: None,
            integrity: None,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The time of the last record handed out that has one, or the header's start.
    pub fn last_time(&self) -> &str {
        self.current[..self.index]
            .iter()
            .rev()
            .find_map(Record::time)
            .unwrap_or(&self.last_time)
    }

    /// Available once [`TraceReader::next_record`] has returned `Ok(None)` (not after an error:
    /// a trace that cannot be read has no integrity to speak of).
    pub fn integrity(&self) -> Option<&Integrity> {
        self.integrity.as_ref()
    }

    /// The next record, or `None` at the end of the trace. Header and seal are not returned.
    /// After an error, the trace is over: `None` follows.
    pub fn next_record(&mut self) -> Result<Option<&Record>, TraceError> {
        while self.index >= self.current.len() {
            let used = std::mem::take(&mut self.current);
            if let Some(time) = used.iter().rev().find_map(Record::time) {
                self.last_time.clear();
                self.last_time.push_str(time);
            }
            if !used.is_empty() {
                let _ = self.parsers[self.from].recycle.send(used);
            }
            self.index = 0;
            if let Some((stop, end)) = self.after.take() {
                if let Err(e) = self.settle(stop, end) {
                    self.done = true;
                    return Err(e);
                }
            }
            if self.done {
                return Ok(None);
            }
            self.from = self.turn;
            self.turn = (self.turn + 1) % PARSERS;
            let Ok(batch) = self.parsers[self.from].incoming.recv() else {
                // A thread of the reader panicked: never a silent end of the trace.
                self.done = true;
                return Err(TraceError::Io {
                    path: self.path.clone(),
                    error: io::Error::other("the trace reader stopped unexpectedly"),
                });
            };
            if self.sealed.is_some() {
                // Past the seal, any line but a blank one is data that does not belong.
                let _ = self.parsers[self.from].recycle.send(batch.records);
                if let Some(line) = batch.first_data {
                    self.altered(format!("data follows the seal at line {line}"));
                } else if let Some(end) = batch.end {
                    let _ = self.settle(None, Some(end));
                }
                continue;
            }
            self.records += batch.records.len() as u64;
            self.current = batch.records;
            if batch.stop.is_some() || batch.end.is_some() {
                self.after = Some((batch.stop, batch.end));
            }
        }
        self.index += 1;
        Ok(Some(&self.current[self.index - 1]))
    }

    fn altered(&mut self, reason: String) {
        self.integrity = Some(Integrity::Altered { reason });
        self.done = true;
    }

    /// What follows the records of a batch: the line that stopped it, the end of the file.
    fn settle(&mut self, stop: Option<Stop>, end: Option<Ending>) -> Result<(), TraceError> {
        match stop {
            None => {}
            Some(Stop::Torn) => {
                self.integrity = Some(Integrity::Unsealed { torn: true });
                self.done = true;
                return Ok(());
            }
            Some(Stop::Error(e)) => return Err(e),
            Some(Stop::Seal {
                seal,
                canonical,
                chain,
                data_after,
            }) => {
                // Exactly as written, newline included: a seal cut by one byte is a changed
                // file too. (A seal as written starts with its tag, so the reading thread has
                // kept the chain before it.)
                let Some(chain) = chain.filter(|_| canonical) else {
                    self.altered("the seal line is not as guard writes it".to_string());
                    return Ok(());
                };
                if seal.records != self.records {
                    self.altered(format!(
                        "the seal counts {} records but {} precede it",
                        seal.records, self.records
                    ));
                    return Ok(());
                }
                if seal.chain != hex(&seal_value(&chain, seal.records, seal.lost, &seal.time)) {
                    self.altered("the records do not match the seal's chain value".to_string());
                    return Ok(());
                }
                // Nothing may follow a seal: the rest of the file is read to be sure.
                if let Some(line) = data_after {
                    self.altered(format!("data follows the seal at line {line}"));
                    return Ok(());
                }
                self.sealed = Some(seal.lost);
            }
        }
        let Some(end) = end else {
            return Ok(());
        };
        self.done = true;
        self.integrity = Some(match (end, self.sealed) {
            (Ending::Eof, Some(lost)) => Integrity::Sealed { lost },
            (Ending::Eof, None) => Integrity::Unsealed { torn: false },
            // A line past the length limit is data too.
            (Ending::TooLong { line }, Some(_)) => Integrity::Altered {
                reason: format!("data follows the seal at line {line}"),
            },
            (Ending::TooLong { line }, None) => {
                return Err(TraceError::LineTooLong {
                    path: self.path.clone(),
                    line,
                })
            }
            (Ending::Io(e), Some(_)) => Integrity::Altered {
                reason: format!("the file cannot be read past the seal: {e}"),
            },
            (Ending::Io(error), None) => {
                return Err(TraceError::Io {
                    path: self.path.clone(),
                    error,
                })
            }
        });
        Ok(())
    }
}

/// The reading thread: cuts the file into lines, in batches handed to the parsers in turn, and
/// runs the chain over every record line (not blank lines, and not past the first line that
/// looks like a seal).
fn cut_lines(mut file: File, ahead: Vec<u8>, chain: Chain, parsers: &[mpsc::SyncSender<Lines>]) {
    use std::io::Read;
    let mut data = ahead;
    // Lines of `data` already cut, and where the next one starts.
    let mut lines: Vec<Line> = Vec::new();
    let mut from = 0;
    let mut no = 1u64;
    let mut chainer = Chainer {
        chain,
        on: true,
        run: 0..0,
    };
    let mut turn = 0;
    let mut cut = |data: &[u8],
                   start: usize,
                   end: usize,
                   complete: bool,
                   lines: &mut Vec<Line>,
                   chainer: &mut Chainer| {
        no += 1;
        let text = trim_newline(&data[start..end]);
        let chain = chainer.line(data, start..end, text.len());
        lines.push(Line {
            start,
            end: start + text.len(),
            no,
            complete,
            chain,
        });
    };
    let ending = 'read: loop {
        // Every whole line in what has been read.
        while let Some(i) = memchr::memchr(b'\n', &data[from..]) {
            let end = from + i + 1;
            if end - from > MAX_LINE_BYTES {
                break 'read Ending::TooLong { line: no + 1 };
            }
            cut(&data, from, end, true, &mut lines, &mut chainer);
            from = end;
        }
        if data.len() - from > MAX_LINE_BYTES {
            break Ending::TooLong { line: no + 1 };
        }
        // Hand over the lines cut so far once there are enough; the rest moves to a new batch.
        if from >= BATCH_BYTES {
            chainer.flush(&data);
            let rest = data[from..].to_vec();
            data.truncate(from);
            let batch = Lines {
                data: std::mem::replace(&mut data, rest),
                lines: std::mem::take(&mut lines),
                end: None,
            };
            if parsers[turn].send(batch).is_err() {
                return;
            }
            turn = (turn + 1) % parsers.len();
            from = 0;
        }
        if data.capacity() - data.len() < (1 << 16) {
            data.reserve(BATCH_BYTES.max(data.len() - from) + (1 << 16));
        }
        let len = data.len();
        data.resize(data.capacity(), 0);
        let read = loop {
            match file.read(&mut data[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                data.truncate(len);
                if from < len {
                    cut(&data, from, len, false, &mut lines, &mut chainer);
                }
                break Ending::Eof;
            }
            Ok(n) => data.truncate(len + n),
            Err(e) => {
                data.truncate(len);
                break Ending::Io(e);
            }
        }
    };
    let _ = parsers[turn].send(Lines {
        data,
        lines,
        end: Some(ending),
    });
}

/// The chain as the reading thread runs it: in format 2, a run of lines as guard writes them
/// (`…\n`, not blank) is hashed in one call (BLAKE3 hashes long inputs many blocks at a time); anything else, and
/// every line of format 1, one line at a time.
struct Chainer {
    chain: Chain,
    /// Until the first line that looks like a seal.
    on: bool,
    /// Lines not hashed yet, in the current batch's data.
    run: std::ops::Range<usize>,
}

impl Chainer {
    /// Takes the line at `at` in `data` (newline included; `text_len` bytes without it); for a
    /// line that starts as a seal does, returns the chain over everything before it.
    fn line(
        &mut self,
        data: &[u8],
        at: std::ops::Range<usize>,
        text_len: usize,
    ) -> Option<[u8; 32]> {
        if !self.on {
            return None;
        }
        let text = &data[at.start..at.start + text_len];
        if text.starts_with(SEAL_PREFIX) {
            self.flush(data);
            self.on = false;
            return Some(self.chain.value());
        }
        let plain = matches!(self.chain, Chain::Stream(_))
            && at.len() == text_len + 1
            && text.first().is_some_and(|b| !b.is_ascii_whitespace());
        if plain {
            if self.run.end != at.start {
                self.flush(data);
                self.run = at.start..at.start;
            }
            self.run.end = at.end;
        } else {
            self.flush(data);
            self.chain.line(&data[at]);
        }
        None
    }

    /// Hashes the lines held back (before their data moves on).
    fn flush(&mut self, data: &[u8]) {
        if let Chain::Stream(h) = &mut self.chain {
            h.update(&data[self.run.clone()]);
        }
        self.run = 0..0;
    }
}

/// A parsing thread: each batch of lines it is given, as records, and what stopped it.
fn parse_lines(
    path: &Path,
    input: &mpsc::Receiver<Lines>,
    out: &mpsc::SyncSender<Parsed>,
    recycle: &mpsc::Receiver<Vec<Record>>,
) {
    let mut scratch = Vec::new();
    let mut pool = fast::Pool::default();
    while let Ok(batch) = input.recv() {
        // Batches the caller is done with: their records' buffers are reused.
        let mut records = Vec::new();
        while let Ok(mut used) = recycle.try_recv() {
            pool.recycle(&mut used);
            records = used;
        }
        records.reserve(batch.lines.len());
        let text = |line: &Line| &batch.data[line.start..line.end];
        let blank = |line: &Line| text(line).iter().all(u8::is_ascii_whitespace);
        let first_data = batch.lines.iter().find(|l| !blank(l)).map(|l| l.no);
        let mut stop = None;
        for (i, line) in batch.lines.iter().enumerate() {
            if line.complete && blank(line) {
                continue;
            }
            let text = text(line);
            if fast::parse_into(text, &mut records, &mut pool) {
                continue;
            }
            stop = match parse_record(text, &mut scratch) {
                Ok(Record::Header(_)) => Some(Stop::Error(TraceError::Parse {
                    path: path.to_path_buf(),
                    line: line.no,
                    column: 1,
                    message: "a second header".into(),
                })),
                Ok(Record::Seal(seal)) => Some(Stop::Seal {
                    canonical: line.complete
                        && serde_json::to_vec(&Record::Seal(seal.clone())).is_ok_and(|c| c == text),
                    seal,
                    chain: line.chain,
                    data_after: batch.lines[i + 1..]
                        .iter()
                        .find(|l| !blank(l))
                        .map(|l| l.no),
                }),
                Ok(r) => {
                    records.push(r);
                    continue;
                }
                Err(_) if !line.complete => Some(Stop::Torn),
                Err(e) => Some(Stop::Error(parse_error(path, line.no, text, &e))),
            };
            break;
        }
        let parsed = Parsed {
            records,
            stop,
            first_data,
            end: batch.end,
        };
        if out.send(parsed).is_err() {
            return;
        }
    }
}

fn trim_newline(buf: &[u8]) -> &[u8] {
    let mut end = buf.len();
    while end > 0 && (buf[end - 1] == b'\n' || buf[end - 1] == b'\r') {
        end -= 1;
    }
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Source};

    fn exec(seq: u64, arg: &[u8]) -> Record {
        Record::Exec(Box::new(ExecEvent {
            seq,
            time: "2026-01-01T00:00:00.000000Z".into(),
            pid: 10,
            tgid: 10,
            ppid: 1,
            former_tid: None,
            uid: 0,
            euid: None,
            exe: "/usr/sbin/nginx".into(),
            execfn: None,
            script: None,
            argv: vec!["nginx".into(), Bytes(arg.to_vec()), Bytes::default()],
            cwd: Some("/".into()),
            comm: Some("nginx".into()),
            source: Source::Ptrace,
            sources: Vec::new(),
            container: None,
            step: None,
            partial: false,
            content: Vec::new(),
            blocked: false,
            attempt: None,
        }))
    }

    fn write_trace(dir: &Path, records: &[Record], seal: bool) -> PathBuf {
        let path = dir.join("t.jsonl");
        let mut w = TraceWriter::new(File::create(&path).unwrap(), &Header::new("run")).unwrap();
        for r in records {
            w.write(r).unwrap();
        }
        if seal {
            w.seal(7).unwrap();
        } else {
            w.flush().unwrap();
        }
        path
    }

    fn read_all(path: &Path) -> (Vec<Record>, Integrity) {
        let mut r = TraceReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.clone());
        }
        (out, r.integrity().unwrap().clone())
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("guard-trace-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn last_time_is_that_of_the_last_record_handed_out() {
        let dir = tempdir("last-time");
        // Enough records for many batches (BATCH_BYTES each), each with its own time.
        let records: Vec<Record> = (1..=6000u64)
            .map(|seq| {
                let mut r = exec(seq, &[b'x'; 100]);
                if let Record::Exec(e) = &mut r {
                    e.time = format!("t{seq}");
                }
                r
            })
            .collect();
        let path = write_trace(&dir, &records, false);
        let mut r = TraceReader::open(&path).unwrap();
        assert_eq!(r.last_time(), r.header().started);
        let mut n = 0u64;
        while r.next_record().unwrap().is_some() {
            n += 1;
            if n % 997 == 0 || n == 1 {
                assert_eq!(r.last_time(), format!("t{n}"));
            }
        }
        assert_eq!(n, 6000);
        assert_eq!(r.last_time(), "t6000");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn round_trips_non_utf8_and_seals() {
        let dir = tempdir("rt");
        let records = vec![
            exec(1, b"\xff\xfe-g"),
            Record::Exit(ExitEvent {
                seq: 2,
                time: "t".into(),
                pid: 10,
                status: ExitStatus::Signal(9),
            }),
        ];
        let path = write_trace(&dir, &records, true);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#"{"bytes":"//4tZw=="}"#), "{text}");
        assert!(
            text.contains(r#""argv":["nginx",{"bytes":"//4tZw=="},""]"#),
            "{text}"
        );
        let (back, integrity) = read_all(&path);
        assert_eq!(back, records);
        assert_eq!(integrity, Integrity::Sealed { lost: 7 });
    }

    #[test]
    fn detects_edit_truncation_and_torn_tail() {
        let dir = tempdir("tamper");
        let records = vec![exec(1, b"a"), exec(2, b"b"), exec(3, b"c")];
        let path = write_trace(&dir, &records, true);
        let text = std::fs::read_to_string(&path).unwrap();

        std::fs::write(&path, text.replace("nginx\",\"b", "nginx\",\"x")).unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));

        let lines: Vec<&str> = text.lines().collect();
        let dropped = [lines[0], lines[1], lines[3], lines[4]].join("\n") + "\n";
        std::fs::write(&path, dropped).unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));

        let appended = text.clone() + lines[1] + "\n";
        std::fs::write(&path, appended).unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));

        let torn = &text[..text.len() - 30];
        std::fs::write(&path, torn).unwrap();
        let (back, integrity) = read_all(&path);
        assert_eq!(back.len(), 3);
        assert_eq!(integrity, Integrity::Unsealed { torn: true });
    }

    /// A trace in format 1 (lines chained one by one), as guard wrote them before format 2.
    fn write_format_1(path: &Path, records: &[Record], lost: u64) {
        let mut header = Header::new("run");
        header.format = 1;
        let mut chain = Chain::new(1);
        let mut text = Vec::new();
        let mut lines = vec![serde_json::to_vec(&Record::Header(header)).unwrap()];
        lines.extend(records.iter().map(|r| serde_json::to_vec(r).unwrap()));
        for line in &lines {
            chain.line(line);
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let time = "2026-01-01T00:00:00.000000Z".to_string();
        let value = seal_value(&chain.value(), records.len() as u64, lost, &time);
        let seal = Record::Seal(Seal {
            time,
            records: records.len() as u64,
            lost,
            chain: hex(&value),
        });
        text.extend_from_slice(&serde_json::to_vec(&seal).unwrap());
        text.push(b'\n');
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_format_1_traces() {
        let dir = tempdir("v1");
        let path = dir.join("v1.jsonl");
        let records = vec![exec(1, b"a"), exec(2, b"\xff")];
        write_format_1(&path, &records, 2);
        let (back, integrity) = read_all(&path);
        assert_eq!(back, records);
        assert_eq!(integrity, Integrity::Sealed { lost: 2 });
        // A format-1 trace is held to its own chain: an edit shows, and so does a format-2 seal.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"pid\":10", "\"pid\":11")).unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));
        let v2 = write_trace(&dir, &records, true);
        let v2_seal = std::fs::read_to_string(&v2)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        *lines.last_mut().unwrap() = &v2_seal;
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));
    }

    #[test]
    fn seals_across_batches_and_parsers() {
        // Enough records for many batches, over both parsing threads; the seal verifies and
        // every record comes back in order.
        let dir = tempdir("batches");
        let records: Vec<Record> = (1..=20_000)
            .map(|i| exec(i, format!("arg{i}").as_bytes()))
            .collect();
        let path = write_trace(&dir, &records, true);
        let (back, integrity) = read_all(&path);
        assert_eq!(back.len(), records.len());
        assert!(back == records);
        assert_eq!(integrity, Integrity::Sealed { lost: 7 });
        // One record dropped from the middle: the count and the chain show it.
        let text = std::fs::read_to_string(&path).unwrap();
        let dropped: String = text
            .lines()
            .filter(|l| !l.contains("\"seq\":12345,"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, dropped).unwrap();
        assert!(matches!(read_all(&path).1, Integrity::Altered { .. }));
        // Data after the seal, far into a later batch.
        std::fs::write(&path, text.clone() + &"\n".repeat(300_000) + "x\n").unwrap();
        match read_all(&path).1 {
            Integrity::Altered { reason } => assert!(
                reason.contains("data follows the seal at line 320003"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        // Blank lines after the seal are not data.
        std::fs::write(&path, text + &"\n".repeat(300_000)).unwrap();
        assert_eq!(read_all(&path).1, Integrity::Sealed { lost: 7 });
    }

    #[test]
    fn rejects_garbage_with_line_number() {
        let dir = tempdir("garbage");
        let path = write_trace(&dir, &[exec(1, b"a")], false);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"type\":\"exec\",\"pid\":\"x\"}\n");
        std::fs::write(&path, &text).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        r.next_record().unwrap();
        let err = r.next_record().unwrap_err().to_string();
        assert!(err.contains("t.jsonl:3:"), "{err}");
        std::fs::write(&path, "hello\n").unwrap();
        assert!(matches!(
            TraceReader::open(&path),
            Err(TraceError::NoHeader { .. })
        ));
    }
}
