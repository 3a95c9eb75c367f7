//! Identity by content: what an executable *is*, whatever it is called.
//!
//! A recipe declares fingerprints (`x-guard.fingerprints`): byte strings that must all appear in
//! the file (a version banner, an exported symbol), or the Go module it was built from (Go build
//! information). The file read is the one the kernel executed — `/proc/PID/exe`, which opens a
//! deleted file or a `memfd` as well — so a renamed copy, a symlink with an innocent name, a
//! spoofed argv\[0\] or an anonymous in-memory ELF are recognised as what they are.
//!
//! Cost is bounded: only the parts of an ELF where such strings live are read (`.rodata`,
//! `.dynstr`, `.go.buildinfo`), each at most [`SECTION_LIMIT`] bytes; a file without section
//! headers is read from its start, at most [`FILE_LIMIT`] bytes. Each file is read once per run:
//! results are cached by (device, inode, size, mtime), and every read is reported as a
//! [`FingerprintEvent`] with the bytes read and the time it took.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use memchr::memmem;

use crate::event::Bytes;
pub use crate::event::{FileKey, FingerprintEvent};
use crate::policy::recipe::{Fingerprint, RecipeSet};

/// At most this many bytes of one ELF section are read.
pub const SECTION_LIMIT: u64 = 16 << 20;
/// At most this many bytes of a file without usable section headers are read.
pub const FILE_LIMIT: u64 = 32 << 20;
/// The sections that are read: where banners (`.rodata`), exported symbols (`.dynstr`) and Go
/// build information (`.go.buildinfo`) live.
const SECTIONS: [&[u8]; 3] = [b".rodata", b".dynstr", b".go.buildinfo"];
const GO_BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// The key of an open file.
pub fn file_key(f: &File) -> std::io::Result<FileKey> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) of an open fd into a stat buffer.
    if unsafe { libc::fstat(f.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and filled it.
    Ok(FileKey::of_stat(&unsafe { st.assume_init() }))
}

#[derive(Clone)]
struct Rule {
    name: String,
    strings: Vec<Vec<u8>>,
    patterns: Vec<regex::bytes::Regex>,
    /// (name, whether it is a prefix)
    symbols: Vec<(Vec<u8>, bool)>,
    go_module: Option<String>,
}

/// The fingerprints of a recipe set, with the per-run cache.
#[derive(Clone, Default)]
pub struct Fingerprinter {
    rules: Vec<Rule>,
    cache: HashMap<FileKey, Arc<[String]>>,
}

impl Fingerprinter {
    /// The fingerprints of every evaluated recipe (a name declared twice keeps its first
    /// definition; the recipe loader rejects duplicates within one recipe).
    pub fn new(recipes: &RecipeSet) -> Fingerprinter {
        let mut f = Fingerprinter::default();
        for r in recipes.evaluated() {
            for fp in &r.ext.fingerprints {
                f.add(fp);
            }
        }
        f
    }

    pub fn add(&mut self, fp: &Fingerprint) {
        if self.rules.iter().any(|r| r.name == fp.name) {
            return;
        }
        self.rules.push(Rule {
            name: fp.name.clone(),
            strings: fp.strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
            patterns: fp.patterns.iter().map(|p| p.regex.clone()).collect(),
            symbols: fp
                .symbols
                .iter()
                .map(|s| match s.strip_suffix('*') {
                    Some(prefix) => (prefix.as_bytes().to_vec(), true),
                    None => (s.as_bytes().to_vec(), false),
                })
                .collect(),
            go_module: fp.go_module.clone(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The fingerprints of the executable of a process: `exe` in `proc`, its `/proc/PID`
    /// directory (opened by the caller, who reads the rest of the exec there). `None` when there
    /// is nothing to match or the file cannot be opened (the process is gone); the event is
    /// returned when the file was read (not found in the cache).
    pub fn identify_exe_in(
        &mut self,
        proc: BorrowedFd<'_>,
        pid: u32,
        path: &Bytes,
    ) -> Option<(Arc<[String]>, Option<FingerprintEvent>)> {
        if self.rules.is_empty() {
            return None;
        }
        // One stat(2) for a file seen before; it is opened only to be read.
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat(2) relative to a directory fd, into a stat buffer.
        if unsafe { libc::fstatat(proc.as_raw_fd(), c"exe".as_ptr(), st.as_mut_ptr(), 0) } != 0 {
            return None;
        }
        // SAFETY: fstatat succeeded and filled it.
        let key = FileKey::of_stat(&unsafe { st.assume_init() });
        if let Some(hit) = self.cache.get(&key) {
            return Some((hit.clone(), None));
        }
        // SAFETY: openat(2) relative to a directory fd; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                proc.as_raw_fd(),
                c"exe".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a valid fd we own.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Some(self.identify(&file, pid, path))
    }

    /// The fingerprints of an open file.
    pub fn identify(
        &mut self,
        file: &File,
        pid: u32,
        path: &Bytes,
    ) -> (Arc<[String]>, Option<FingerprintEvent>) {
        let key = match file_key(file) {
            Ok(k) => k,
            Err(_) => return (Arc::from([]), None),
        };
        if let Some(hit) = self.cache.get(&key) {
            return (hit.clone(), None);
        }
        let started = Instant::now();
        let (chunks, note) = read_interesting(file, key.size);
        let matched: Vec<String> = self
            .rules
            .iter()
            .filter(|r| rule_matches(r, &chunks))
            .map(|r| r.name.clone())
            .collect();
        let micros = started.elapsed().as_micros() as u64;
        let matched: Arc<[String]> = matched.into();
        self.cache.insert(key, matched.clone());
        let event = FingerprintEvent {
            seq: 0,
            time: crate::time::now(),
            pid,
            path: path.clone(),
            file: key,
            matched: matched.to_vec(),
            bytes: chunks.iter().map(|c| c.data.len() as u64).sum(),
            micros,
            note,
        };
        (matched, Some(event))
    }
}

struct Chunk {
    /// The section's name (empty for a raw read of the file).
    name: Vec<u8>,
    data: Vec<u8>,
}

fn rule_matches(rule: &Rule, chunks: &[Chunk]) -> bool {
    if rule.strings.is_empty()
        && rule.patterns.is_empty()
        && rule.symbols.is_empty()
        && rule.go_module.is_none()
    {
        return false;
    }
    let strings = rule
        .strings
        .iter()
        .all(|s| chunks.iter().any(|c| memmem::find(&c.data, s).is_some()));
    let patterns = strings
        && rule
            .patterns
            .iter()
            .all(|p| chunks.iter().any(|c| p.is_match(&c.data)));
    let symbols = patterns
        && rule.symbols.iter().all(|(name, prefix)| {
            chunks
                .iter()
                .filter(|c| c.name == b".dynstr")
                .any(|c| has_symbol(&c.data, name, *prefix))
        });
    let module = rule.go_module.as_deref().is_none_or(|m| {
        chunks
            .iter()
            .filter(|c| c.name == b".go.buildinfo" || c.name.is_empty())
            .any(|c| go_modules(&c.data).iter().any(|p| module_in(p, m)))
    });
    symbols && module
}

/// Whether a string table (`.dynstr`: NUL-separated names) holds `name` (or a name starting
/// with it).
fn has_symbol(table: &[u8], name: &[u8], prefix: bool) -> bool {
    let mut needle = Vec::with_capacity(name.len() + 2);
    needle.push(0);
    needle.extend_from_slice(name);
    if !prefix {
        needle.push(0);
    }
    memmem::find(table, &needle).is_some()
}

/// Whether the Go package or module path `path` is module `m` or inside it.
fn module_in(path: &[u8], m: &str) -> bool {
    let m = m.as_bytes();
    path == m || (path.starts_with(m) && path.get(m.len()) == Some(&b'/'))
}

fn read_at_most(file: &File, offset: u64, len: u64, limit: u64) -> Option<Vec<u8>> {
    let len = len.min(limit) as usize;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(done);
    Some(buf)
}

/// The parts of the file worth searching: the ELF sections of [`SECTIONS`], or the start of the
/// file when it has no section headers (or is not an ELF).
fn read_interesting(file: &File, size: u64) -> (Vec<Chunk>, Option<String>) {
    match elf_sections(file, size) {
        Some(sections) if !sections.is_empty() => {
            let mut chunks = Vec::new();
            let mut note = None;
            for (name, offset, len) in sections {
                if len > SECTION_LIMIT {
                    note = Some(format!(
                        "section {} is {len} bytes: its first {SECTION_LIMIT} were read",
                        String::from_utf8_lossy(&name)
                    ));
                }
                if let Some(data) = read_at_most(file, offset, len, SECTION_LIMIT) {
                    chunks.push(Chunk { name, data });
                }
            }
            (chunks, note)
        }
        _ => {
            let note = (size > FILE_LIMIT).then(|| {
                format!("no ELF sections; the first {FILE_LIMIT} of {size} bytes were read")
            });
            let data = read_at_most(file, 0, size, FILE_LIMIT).unwrap_or_default();
            (
                vec![Chunk {
                    name: Vec::new(),
                    data,
                }],
                note,
            )
        }
    }
}

/// (name, offset, size) of the interesting sections of a little-endian ELF (32 or 64-bit);
/// `None` when the file is not one or its section headers are unusable.
fn elf_sections(file: &File, size: u64) -> Option<Vec<(Vec<u8>, u64, u64)>> {
    let head = read_at_most(file, 0, 64, 64)?;
    if head.len() < 52 || &head[..4] != b"\x7fELF" || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| -> u64 { u64::from(u16::from_le_bytes([b[o], b[o + 1]])) };
    let u32_at = |b: &[u8], o: usize| -> u64 {
        u64::from(u32::from_le_bytes(b[o..o + 4].try_into().unwrap()))
    };
    let u64_at =
        |b: &[u8], o: usize| -> u64 { u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) };
    let wide = match head[4] {
        1 => false,
        2 if head.len() >= 64 => true,
        _ => return None,
    };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            u64_at(&head, 0x28),
            u16_at(&head, 0x3A),
            u16_at(&head, 0x3C),
            u16_at(&head, 0x3E),
        )
    } else {
        (
            u32_at(&head, 0x20),
            u16_at(&head, 0x2E),
            u16_at(&head, 0x30),
            u16_at(&head, 0x32),
        )
    };
    let min_entry = if wide { 64 } else { 40 };
    if shoff == 0 || shnum == 0 || shnum > 4096 || shentsize < min_entry || shstrndx >= shnum {
        return None;
    }
    let table_len = shentsize * shnum;
    if shoff.checked_add(table_len)? > size {
        return None;
    }
    let table = read_at_most(file, shoff, table_len, table_len)?;
    let entry = |i: u64| -> (u64, u64, u64) {
        let e = &table[(i * shentsize) as usize..];
        if wide {
            (u32_at(e, 0), u64_at(e, 0x18), u64_at(e, 0x20))
        } else {
            (u32_at(e, 0), u32_at(e, 0x10), u32_at(e, 0x14))
        }
    };
    let (_, str_off, str_len) = entry(shstrndx);
    let names = read_at_most(file, str_off, str_len, 1 << 20)?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let (name_off, offset, len) = entry(i);
        let name = names.get(name_off as usize..).and_then(|n| {
            let end = n.iter().position(|&b| b == 0)?;
            Some(&n[..end])
        });
        let Some(name) = name else { continue };
        if SECTIONS.contains(&name) && offset < size {
            out.push((name.to_vec(), offset, len.min(size - offset)));
        }
    }
    Some(out)
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The package and module paths in Go build information (Go 1.18+ inline format): the main
/// package (`path`), the main module (`mod`) and the dependencies (`dep`, with `=>` replacements).
fn go_modules(data: &[u8]) -> Vec<&[u8]> {
    let Some(at) = memmem::find(data, GO_BUILDINFO_MAGIC) else {
        return Vec::new();
    };
    let b = &data[at..];
    // magic (14), pointer size (1), flags (1), then 16 bytes of pointers or padding.
    if b.len() < 32 || b[15] & 2 == 0 {
        return Vec::new();
    }
    let mut rest = &b[32..];
    let mut strings = Vec::new();
    for _ in 0..2 {
        let Some((len, n)) = uvarint(rest) else {
            return Vec::new();
        };
        let Some(s) = rest.get(n..n + len as usize) else {
            return Vec::new();
        };
        strings.push(s);
        rest = &rest[n + len as usize..];
    }
    // The module information is framed by two 16-byte sentinels.
    let modinfo = strings[1];
    let modinfo = if modinfo.len() >= 32 {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let mut out = Vec::new();
    for line in modinfo.split(|&c| c == b'\n') {
        let mut fields = line.split(|&c| c == b'\t');
        if matches!(fields.next(), Some(b"path" | b"mod" | b"dep" | b"=>")) {
            if let Some(p) = fields.next() {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rule(name: &str, strings: &[&str], go: Option<&str>) -> Fingerprint {
        Fingerprint {
            name: name.into(),
            strings: strings.iter().map(|s| s.to_string()).collect(),
            patterns: Vec::new(),
            symbols: Vec::new(),
            go_module: go.map(String::from),
            r#match: false,
        }
    }

    fn temp(name: &str, data: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("guard-fp-{}-{name}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(data).unwrap();
        drop(f);
        let f = File::open(&path).unwrap();
        (path, f)
    }

    fn go_blob(modinfo: &str) -> Vec<u8> {
        let mut b = GO_BUILDINFO_MAGIC.to_vec();
        b.push(8);
        b.push(2);
        b.extend_from_slice(&[0; 16]);
        let version = b"go1.22.1";
        b.push(version.len() as u8);
        b.extend_from_slice(version);
        let mut m = vec![0x30u8; 16];
        m.extend_from_slice(modinfo.as_bytes());
        m.extend_from_slice(&[0x31; 16]);
        let mut len = m.len();
        while len >= 0x80 {
            b.push((len as u8) | 0x80);
            len >>= 7;
        }
        b.push(len as u8);
        b.extend_from_slice(&m);
        b
    }

    #[test]
    fn strings_must_all_appear_and_results_are_cached() {
        let mut f = Fingerprinter::default();
        f.add(&rule("srv", &["srv version: ", "srv_main"], None));
        f.add(&rule("other", &["srv version: ", "absent"], None));
        let (path, file) = temp("a", b"\0\0junk srv version: 1.2 and srv_main\0");
        let (names, ev) = f.identify(&file, 1, &"/x".into());
        assert_eq!(&*names, ["srv".to_string()]);
        let ev = ev.expect("first read reported");
        assert_eq!(ev.bytes, 37);
        assert_eq!(ev.matched, ["srv"]);
        // The same file again: from the cache, no event.
        let (again, ev) = f.identify(&File::open(&path).unwrap(), 2, &"/y".into());
        assert_eq!(&*again, ["srv".to_string()]);
        assert!(ev.is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn go_module_from_build_information() {
        let mut f = Fingerprinter::default();
        f.add(&rule("caddy", &[], Some("github.com/caddyserver/caddy/v2")));
        let main = go_blob("path\tgithub.com/caddyserver/caddy/v2/cmd/caddy\nmod\tgithub.com/caddyserver/caddy/v2\t(devel)\t\n");
        let xcaddy = go_blob("path\tcaddy\nmod\tcaddy\t(devel)\t\ndep\tgithub.com/caddyserver/caddy/v2\tv2.7.6\th1:x=\n");
        let lookalike = go_blob("path\tgithub.com/caddyserver/caddy/v2x/cmd\nmod\tgithub.com/caddyserver/caddy/v2x\t(devel)\t\n");
        let mut junk = b"prefix".to_vec();
        for (name, blob, want) in [
            ("m", main, true),
            ("x", xcaddy, true),
            ("l", lookalike, false),
        ] {
            junk.truncate(6);
            junk.extend_from_slice(&blob);
            let (path, file) = temp(name, &junk);
            let (names, _) = f.identify(&file, 1, &"/x".into());
            assert_eq!(!names.is_empty(), want, "{name}");
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn elf_sections_of_real_binaries() {
        // This test binary is an ELF of the host: its sections are found.
        let me = File::open("/proc/self/exe").unwrap();
        let size = me.metadata().unwrap().len();
        let sections = elf_sections(&me, size).expect("an ELF");
        assert!(
            sections.iter().any(|(n, _, _)| n == b".rodata"),
            "{sections:?}"
        );
        // Not an ELF, or a truncated one: no sections (the file itself is read).
        let (path, file) = temp("t", b"\x7fELF\x02\x01\x01");
        assert!(elf_sections(&file, 7).is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn hostile_section_headers_are_bounded() {
        // An ELF header claiming 65535 sections at a huge offset.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        h[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        h[0x3C..0x3E].copy_from_slice(&u16::MAX.to_le_bytes());
        let (path, file) = temp("h", &h);
        assert!(elf_sections(&file, 64).is_none());
        let mut f = Fingerprinter::default();
        f.add(&rule("x", &["nothing"], None));
        let (names, ev) = f.identify(&file, 1, &"/h".into());
        assert!(names.is_empty());
        assert_eq!(ev.unwrap().bytes, 64);
        std::fs::remove_file(path).unwrap();
    }
}
