//! The event model: what an exec source saw, as lossless data.
//!
//! Paths and arguments are byte strings on Linux. They are kept as [`Bytes`], which serialises to a
//! plain JSON string when the bytes are valid UTF-8 and to `{"bytes": "<base64>"}` otherwise, so a
//! non-UTF-8 argument survives a round trip through the trace and the report unchanged.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine as _;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A lossless byte string (a path, an argument, a command name).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text form used for matching and display: invalid UTF-8 becomes U+FFFD.
    pub fn lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The last `/`-separated component (the whole string when there is no `/`).
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Everything before the last `/`, or `None` when there is no `/`. `"/x"` has dir `"/"`.
    pub fn dir(&self) -> Option<&[u8]> {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(0) => Some(b"/"),
            Some(i) => Some(&self.0[..i]),
            None => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        Bytes(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Bytes {
    fn from(s: &[u8]) -> Self {
        Bytes(s.to_vec())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(s: Vec<u8>) -> Self {
        Bytes(s)
    }
}

impl From<&Path> for Bytes {
    fn from(p: &Path) -> Self {
        Bytes(p.as_os_str().as_bytes().to_vec())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.lossy(), f)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(
                    "bytes",
                    &base64::engine::general_purpose::STANDARD.encode(&self.0),
                )?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a string, {"text": string} or {"bytes": base64}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty byte-string object"))?;
                let value: String = map.next_value()?;
                let out = match key.as_str() {
                    "text" => Bytes(value.into_bytes()),
                    "bytes" => Bytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(value.as_bytes())
                            .map_err(|e| de::Error::custom(format!("invalid base64: {e}")))?,
                    ),
                    other => return Err(de::Error::unknown_field(other, &["text", "bytes"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "byte-string object has more than one key",
                    ));
                }
                Ok(out)
            }
        }
        d.deserialize_any(BytesVisitor)
    }
}

/// Which exec source produced a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `guard run` (spawn and trace) or `--attach` (seize an existing tree).
    Ptrace,
    /// The kernel's proc connector (host-wide, netlink).
    Connector,
}

/// One successful `execve`/`execveat`, recorded at the exec stop while the process is stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecEvent {
    pub seq: u64,
    /// RFC 3339 UTC timestamp, microsecond precision.
    pub time: String,
    /// Thread id after the exec (always the thread-group id: exec makes the caller the leader).
    pub pid: u32,
    pub tgid: u32,
    /// The real parent (not the tracer).
    pub ppid: u32,
    /// The thread id that called exec, when it was not the thread-group leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub former_tid: Option<u32>,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    /// The executed file as the kernel resolved it (`/proc/PID/exe`). For a `#!` script this is
    /// the interpreter.
    pub exe: Bytes,
    /// The path given to exec (`AT_EXECFN`), absolute when it could be made so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execfn: Option<Bytes>,
    /// The script, when the exec went through a `#!` interpreter (or binfmt_misc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Bytes>,
    pub argv: Vec<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<Bytes>,
    pub source: Source,
    /// Every source that saw this exec, when more than one did (the record keeps the richest
    /// data, ptrace's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// The container the process ran in (its id, from `/proc/PID/cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The GitHub Actions step it belongs to: the value of `GITHUB_ACTION` in its environment.
    /// No other environment value is ever read into a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Bytes>,
    /// Some fields could not be read (the process was already gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The fingerprints the executed file matched (see [`crate::sources::fingerprint`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<String>,
    /// `--mode enforce` killed the process at its exec stop, before the new program ran one
    /// instruction (a matching exec that got past the refusal of the attempt: the file was
    /// swapped in between, or an interpreter chain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Set on `attempt` records: an exec that did not happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
}

impl ExecEvent {
    /// A record of `pid` stamped now, every other field empty, for a source to fill in.
    pub fn new(pid: u32, source: Source) -> ExecEvent {
        ExecEvent {
            time: crate::time::now(),
            pid,
            tgid: pid,
            source,
            ..ExecEvent::blank()
        }
    }

    /// A record with every field empty (pid 0, no time), to be filled in place.
    pub fn blank() -> ExecEvent {
        ExecEvent {
            seq: 0,
            time: String::new(),
            pid: 0,
            tgid: 0,
            ppid: 0,
            former_tid: None,
            uid: 0,
            euid: None,
            exe: Bytes::default(),
            execfn: None,
            script: None,
            argv: Vec::new(),
            cwd: None,
            comm: None,
            source: Source::Ptrace,
            sources: Vec::new(),
            container: None,
            step: None,
            partial: false,
            content: Vec::new(),
            blocked: false,
            attempt: None,
        }
    }
}

/// An exec that did not happen: it failed (`ENOENT`, `EACCES`, ...), or `--mode enforce`
/// refused it (`blocked`, with `EACCES`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub errno: i32,
    /// The errno's name (`ENOENT`).
    pub error: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

impl Attempt {
    pub fn new(errno: i32, blocked: bool) -> Attempt {
        Attempt {
            errno,
            error: errno_name(errno),
            blocked,
        }
    }
}

/// `ENOENT` for 2: the symbolic name of an errno.
pub fn errno_name(errno: i32) -> String {
    let name = format!("{:?}", nix::errno::Errno::from_raw(errno));
    if name == "UnknownErrno" {
        format!("errno {errno}")
    } else {
        name
    }
}

/// A new process (not a thread) created by fork, vfork or clone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkEvent {
    pub seq: u64,
    pub time: String,
    pub pid: u32,
    pub ppid: u32,
    pub source: Source,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn shell_status(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// A process (thread group) ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitEvent {
    pub seq: u64,
    pub time: String,
    pub pid: u32,
    pub status: ExitStatus,
}

/// The traced command ended: its status, and the processes it left running, which were detached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndEvent {
    pub seq: u64,
    pub time: String,
    pub status: ExitStatus,
    /// Processes (thread-group ids) still running when the command exited.
    pub outlived: Vec<u32>,
}

/// What a process is running: the image of its latest exec (inherited across fork).
///
/// Its strings are packed in one allocation: a checker keeps an image per live process and
/// makes one per exec, a million times for a large build.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub pid: u32,
    /// How many strings it holds: the executable, the command name, then each argument.
    parts: usize,
    /// Where each string ends (`parts` native-endian `usize`s, counted from the end of this
    /// table), then the strings back to back.
    data: Box<[u8]>,
    has_comm: bool,
}

const END: usize = std::mem::size_of::<usize>();

impl Image {
    pub fn new(pid: u32, exe: &[u8], argv: &[Bytes], comm: Option<&[u8]>) -> Image {
        let parts = || {
            std::iter::once(exe)
                .chain(std::iter::once(comm.unwrap_or_default()))
                .chain(argv.iter().map(Bytes::as_bytes))
        };
        let count = argv.len() + 2;
        let table = count * END;
        let mut data = Vec::with_capacity(table + parts().map(<[u8]>::len).sum::<usize>());
        let mut end = 0;
        for part in parts() {
            end += part.len();
            data.extend_from_slice(&end.to_ne_bytes());
        }
        for part in parts() {
            data.extend_from_slice(part);
        }
        Image {
            pid,
            parts: count,
            data: data.into_boxed_slice(),
            has_comm: comm.is_some(),
        }
    }

    pub fn of(e: &ExecEvent) -> Image {
        Image::new(
            e.pid,
            e.exe.as_bytes(),
            &e.argv,
            e.comm.as_ref().map(Bytes::as_bytes),
        )
    }

    /// Where string `i` ends, counted from the end of the table.
    fn end(&self, i: usize) -> usize {
        let at = i * END;
        usize::from_ne_bytes(self.data[at..at + END].try_into().expect("a usize"))
    }

    fn part(&self, i: usize) -> &[u8] {
        let base = self.parts * END;
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        &self.data[base + start..base + self.end(i)]
    }

    pub fn exe(&self) -> &[u8] {
        self.part(0)
    }

    pub fn comm(&self) -> Option<&[u8]> {
        self.has_comm.then(|| self.part(1))
    }

    /// The arguments, `argv[0]` first.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (2..self.parts).map(|i| self.part(i))
    }

    /// The arguments as owned byte strings (for a report).
    pub fn argv(&self) -> Vec<Bytes> {
        self.args().map(Bytes::from).collect()
    }

    /// `argv[from..]` joined with single spaces (the `cmd` and `args` views).
    pub fn join(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, a) in self.args().skip(from).enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(a);
        }
        out
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("pid", &self.pid)
            .field("exe", &Bytes::from(self.exe()))
            .field("argv", &self.argv())
            .field("comm", &self.comm().map(Bytes::from))
            .finish()
    }
}

/// Joins byte strings with single spaces (the `cmd` / `args` views of an argv).
pub fn join(parts: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.0.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(&p.0);
    }
    out
}

/// A file's identity for the cache: the same (device, inode, size, mtime) is the same content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time: seconds since the epoch, and nanoseconds.
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl FileKey {
    /// From a `stat` buffer (`fstat`, `fstatat`): every key is made here, so that the same file
    /// has the same key whichever way it was reached.
    // The field types of `struct stat` vary with the target (32-bit ones are narrower).
    #[allow(clippy::unnecessary_cast)]
    pub fn of_stat(st: &libc::stat) -> FileKey {
        FileKey {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
        }
    }
}

/// One file read to fingerprint it (a trace record: the proof that each file is read once, and
/// what it cost).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintEvent {
    pub seq: u64,
    pub time: String,
    /// The process whose executable it is.
    pub pid: u32,
    /// Its path (as `/proc/PID/exe` names it).
    pub path: Bytes,
    pub file: FileKey,
    /// The fingerprints it matched.
    pub matched: Vec<String>,
    /// Bytes read from it.
    pub bytes: u64,
    /// Time spent reading and matching, microseconds.
    pub micros: u64,
    /// Why it could not be fully read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_gives_back_what_it_was_made_of() {
        let argv: Vec<Bytes> = vec!["cc".into(), "".into(), Bytes(b"\xff -c".to_vec())];
        let img = Image::new(7, b"/usr/bin/cc", &argv, Some(b"cc"));
        assert_eq!(img.pid, 7);
        assert_eq!(img.exe(), b"/usr/bin/cc");
        assert_eq!(img.comm(), Some(&b"cc"[..]));
        assert_eq!(img.argv(), argv);
        assert_eq!(img.join(0), join(&argv));
        assert_eq!(img.join(1), join(&argv[1..]));
        assert_eq!(img.join(5), b"");
        // An empty command name is not a missing one.
        assert_eq!(Image::new(1, b"", &[], Some(b"")).comm(), Some(&b""[..]));
        let bare = Image::new(1, b"", &[], None);
        assert_eq!(
            (bare.exe(), bare.comm(), bare.argv()),
            (&b""[..], None, vec![])
        );
        let mut e = ExecEvent::new(3, Source::Ptrace);
        e.exe = "/bin/sh".into();
        e.argv = argv.clone();
        assert_eq!(Image::of(&e), Image::new(3, b"/bin/sh", &argv, None));
    }
}
