//! Trace fidelity: the exec list `guard run` records is the one `strace -f` records.
//!
//! One workload (built in a fresh temporary directory at test time) is run twice: under
//! `strace -f` and under `guard run --trace`. It has nested shells, a pipeline, background jobs,
//! a parallel and recursive `make`, a program that execs from a thread that is not the
//! thread-group leader (after that thread ran a child of its own with `posix_spawn`), a program
//! that uses `posix_spawn`, `posix_spawnp` (failed execs along `PATH` before the one that works)
//! and `vfork`, a command that is not found (a process that never execs), empty arguments
//! (in the middle, last, and as `argv[0]`), non-UTF-8 arguments, and long argument lists
//! (`/proc/PID/cmdline` spanning several pages).
//!
//! Compared, after renumbering pids:
//! - the multiset of argv lists of successful execs;
//! - the multiset of (argv, executable, comm) of successful execs;
//! - the multiset of per-process exec sequences (a process may exec several times: dash runs the
//!   last command of `sh -c` in place);
//! - the process tree (fork/vfork/clone parentage, threads excluded), each node labelled with its
//!   exec sequence, in a canonical form that does not depend on scheduling.
//!
//! strace is run with `-e trace=execve,execveat,fork,vfork,clone,clone3` (not only `execve`), so
//! that the process tree is known on its side too. Only execs whose result is `= 0` count.
//!
//! The workload never executes a `#!` script directly: strace shows the argv given to `execve`,
//! guard the argv the kernel built (the interpreter's), which legitimately differ there.
//!
//! The guard trace is also checked on its own: header, one `seal` whose `records` counts the
//! lines between header and seal, consecutive `seq`, every exec record with an absolute `exe`,
//! `cwd`, `uid`, `time`, `source: "ptrace"`, `pid == tgid`, and `former_tid` on the exec from the
//! non-leader thread (only there).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::GUARD;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fidelity");
/// Every external command is killed (with its process group) after this long.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Set to skip (instead of failing) when strace, cc or make is not installed; ignored under CI.
const SKIP_ENV: &str = "GUARD_FIDELITY_SKIP_WITHOUT_TOOLS";

/// The workload, run as `sh driver.sh` in the work directory.
const DRIVER: &str = r#"# Driver of tests/trace_fidelity.rs.
set -e
# Nested shells. dash runs the last command of `sh -c` in place, the others in a fork.
sh -c 'sh -c "/bin/echo fidelity-nested-inner \"\" end; /bin/true"; /bin/echo fidelity-nested-outer'
# A pipeline; printf is a builtin, run in a forked process that never execs.
printf 'hello fidelity\n' | tr a-z A-Z | wc -c
# A non-UTF-8 argument and empty ones (in the middle and last), built by the shell.
/bin/echo "$(printf 'fidelity-\377-shell')" "" fidelity-after-empty ""
# make: recipes run directly and through sh -c, two jobs at a time, and a recursive make.
make -s -j2 -C mk
# execve from a thread that is not the thread-group leader, the leader alive or gone.
./thread_exec join
./thread_exec leader-exits
# posix_spawn, posix_spawnp and vfork.
./spawner
# Background jobs.
/bin/echo fidelity-bg-1 & /bin/echo fidelity-bg-2 & wait
# Not found: a process that never execs (its failed execve is not an exec).
/nonexistent/fidelity-missing 2>/dev/null || true
# Many arguments, and a long one: /proc/PID/cmdline spans several pages.
/bin/echo $(seq 1 3000) >/dev/null
/bin/echo "$(printf '%020000d' 7)" >/dev/null
"#;

const MAKEFILE: &str = ".PHONY: all direct shell piped sub
all: direct shell piped sub
direct:
\techo fidelity-make-direct
shell:
\techo fidelity-make-shell; /bin/echo \"\" fidelity-make-empty-first
piped:
\tprintf 'fidelity-make-piped\\n' | tr a-z A-Z
sub:
\t$(MAKE) -C sub
";

const SUB_MAKEFILE: &str = "all:
\techo fidelity-make-sub
";

// ---------------------------------------------------------------------------------------------
// Running commands

struct Output {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` in its own process group, stdin from /dev/null and output to files in `logs`;
/// kills the group and fails the test after [`TIMEOUT`].
fn run(what: &str, cmd: &mut Command, logs: &Path) -> Output {
    let tag: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let out_path = logs.join(format!("{tag}.stdout"));
    let err_path = logs.join(format!("{tag}.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let pid = child.id();
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} did not finish within {TIMEOUT:?} and was killed; output in {}",
                    logs.display()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Output {
        pid,
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into_owned(),
    }
}

fn expect_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}).\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// Whether `tool` can be started. Fails the test when it is missing, unless [`SKIP_ENV`] is set.
fn have_tool(tool: &str, version_arg: &str) -> bool {
    match Command::new(tool)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::env::var_os(SKIP_ENV).is_some() && !common::strict() {
                common::skip(&common::test_name(), tool, common::package_of(tool));
                return false;
            }
            panic!(
                "`{tool}` is not installed, and this test needs it (strace, cc and make; on \
                 Debian: apt-get install strace gcc make). Set {SKIP_ENV}=1 to skip instead."
            )
        }
        Err(e) => panic!("cannot run `{tool} {version_arg}`: {e}"),
    }
}

/// A fresh directory, removed at the end unless the test failed (it holds the traces then).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "guard-trace-fidelity-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(fs::canonicalize(&dir).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("trace_fidelity: kept {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model both traces are reduced to

/// One successful exec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Exec {
    argv: Vec<Vec<u8>>,
    /// The executable, canonical (for guard: `/proc/PID/exe`; for strace: the canonicalised path
    /// given to execve).
    exe: Vec<u8>,
    /// The kernel's command name: the file name of the path given to exec, cut to 15 bytes.
    comm: Vec<u8>,
}

/// A process tree as one tracer saw it, by pid.
#[derive(Debug, Default)]
struct Tree {
    root: u32,
    /// Every process but the root, and the process that created it.
    parent: BTreeMap<u32, u32>,
    /// Each process's execs, in order.
    execs: BTreeMap<u32, Vec<Exec>>,
}

impl Tree {
    fn processes(&self) -> Vec<u32> {
        let mut all: Vec<u32> = std::iter::once(self.root)
            .chain(self.parent.keys().copied())
            .collect();
        all.sort_unstable();
        all
    }

    fn execs_of(&self, pid: u32) -> &[Exec] {
        self.execs.get(&pid).map(Vec::as_slice).unwrap_or(&[])
    }

    fn all_execs(&self) -> Vec<Exec> {
        let mut all: Vec<Exec> = self.execs.values().flatten().cloned().collect();
        all.sort();
        all
    }

    /// The tree without pids: a node is a process's argv sequence and its sorted children.
    fn canonical(&self) -> Node {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (&child, &parent) in &self.parent {
            children.entry(parent).or_default().push(child);
        }
        fn build(pid: u32, tree: &Tree, children: &HashMap<u32, Vec<u32>>) -> Node {
            let mut kids: Vec<Node> = children
                .get(&pid)
                .map(|c| c.iter().map(|&k| build(k, tree, children)).collect())
                .unwrap_or_default();
            kids.sort();
            Node {
                execs: tree.execs_of(pid).iter().map(|e| e.argv.clone()).collect(),
                children: kids,
            }
        }
        build(self.root, self, &children)
    }

    /// Pids renumbered: each process's argv sequence, sorted.
    fn renumbered(&self) -> Vec<Vec<Vec<Vec<u8>>>> {
        let mut seqs: Vec<Vec<Vec<Vec<u8>>>> = self
            .processes()
            .into_iter()
            .map(|p| self.execs_of(p).iter().map(|e| e.argv.clone()).collect())
            .collect();
        seqs.sort();
        seqs
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    execs: Vec<Vec<Vec<u8>>>,
    children: Vec<Node>,
}

fn show_arg(arg: &[u8]) -> String {
    let text = arg.escape_ascii().to_string();
    if text.len() > 60 {
        format!("\"{}...\" ({} bytes)", &text[..50], arg.len())
    } else {
        format!("\"{text}\"")
    }
}

fn show_argv(argv: &[Vec<u8>]) -> String {
    let mut parts: Vec<String> = argv.iter().take(8).map(|a| show_arg(a)).collect();
    if argv.len() > 8 {
        parts.push(format!("... ({} arguments)", argv.len()));
    }
    format!("[{}]", parts.join(", "))
}

fn show_seq(execs: &[Vec<Vec<u8>>]) -> String {
    if execs.is_empty() {
        return "(no exec)".to_string();
    }
    execs
        .iter()
        .map(|a| show_argv(a))
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn show_tree(node: &Node) -> String {
    fn walk(node: &Node, depth: usize, out: &mut String) {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&show_seq(&node.execs));
        out.push('\n');
        for child in &node.children {
            walk(child, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(node, 0, &mut out);
    out
}

/// Items of `a` missing from `b` and of `b` missing from `a`, as multisets.
fn multiset_diff<T: Ord + Clone>(a: &[T], b: &[T]) -> (Vec<T>, Vec<T>) {
    let mut count: BTreeMap<&T, i64> = BTreeMap::new();
    for x in a {
        *count.entry(x).or_default() += 1;
    }
    for x in b {
        *count.entry(x).or_default() -= 1;
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (x, n) in count {
        for _ in 0..n.max(0) {
            only_a.push(x.clone());
        }
        for _ in 0..(-n).max(0) {
            only_b.push(x.clone());
        }
    }
    (only_a, only_b)
}

/// Fails with the differences when two multisets differ.
fn assert_same_multiset<T: Ord + Clone>(
    what: &str,
    guard: &[T],
    strace: &[T],
    show: impl Fn(&T) -> String,
) {
    let (only_guard, only_strace) = multiset_diff(guard, strace);
    if only_guard.is_empty() && only_strace.is_empty() {
        return;
    }
    let list = |v: &[T]| {
        v.iter()
            .map(|x| format!("    {}\n", show(x)))
            .collect::<String>()
    };
    panic!(
        "{what} differ (guard: {}, strace: {}).\n  only in guard's trace:\n{}  only in strace's:\n{}",
        guard.len(),
        strace.len(),
        list(&only_guard),
        list(&only_strace)
    );
}

// ---------------------------------------------------------------------------------------------
// strace -f -xx output

/// The path given to exec and the argv.
type PathAndArgv = (Vec<u8>, Vec<Vec<u8>>);

/// What the strace log says, before paths are resolved.
#[derive(Debug, Default)]
struct StraceLog {
    root: Option<u32>,
    parent: BTreeMap<u32, u32>,
    /// Per process: (path given to exec, argv) of each successful exec.
    execs: BTreeMap<u32, Vec<PathAndArgv>>,
}

/// Parses the `-o` output of `strace -f -qq -xx -e trace=execve,execveat,fork,vfork,clone,clone3`.
///
/// Calls split by other processes' output (`<unfinished ...>` / `<... NAME resumed>`) are paired
/// per pid; an execve from a non-leader thread ends as `<pid changed to LEADER ...>`, resumed
/// under the leader's pid.
fn parse_strace(text: &str) -> Result<StraceLog, String> {
    let mut log = StraceLog::default();
    let mut pending: HashMap<u32, String> = HashMap::new();
    // Thread id -> thread-group id, for threads created by clone(CLONE_THREAD).
    let mut tgid: HashMap<u32, u32> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("strace output line {}: {m}: {line}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        let (pid, rest) = line.split_once(' ').ok_or_else(|| err("no pid"))?;
        let pid: u32 = pid.parse().map_err(|_| err("no pid"))?;
        let rest = rest.trim_start();
        if log.root.is_none() {
            log.root = Some(pid);
        }
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue; // "superseded by execve", exits and signals
        }
        let call = if let Some(resumed) = rest.strip_prefix("<... ") {
            let (name, tail) = resumed
                .split_once(" resumed>")
                .ok_or_else(|| err("malformed resumption"))?;
            let head = pending
                .remove(&pid)
                .ok_or_else(|| err("resumed without an unfinished call"))?;
            if !head.starts_with(&format!("{name}(")) {
                return Err(err(&format!(
                    "resumes {name}, but the unfinished call is {head}"
                )));
            }
            head + tail
        } else if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            if pending.insert(pid, head.trim_end().to_string()).is_some() {
                return Err(err("two unfinished calls"));
            }
            continue;
        } else if let (Some(at), true) = (rest.rfind("<pid changed to "), rest.ends_with(" ...>")) {
            let new: u32 = rest[at + "<pid changed to ".len()..rest.len() - " ...>".len()]
                .trim()
                .parse()
                .map_err(|_| err("malformed pid change"))?;
            if pending
                .insert(new, rest[..at].trim_end().to_string())
                .is_some()
            {
                return Err(err("the new pid has an unfinished call"));
            }
            continue;
        } else {
            rest.to_string()
        };
        let name = &call[..call.find('(').ok_or_else(|| err("not a call"))?];
        let result = call
            .rsplit_once(" = ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|r| r.parse::<i64>().ok());
        let caller = *tgid.get(&pid).unwrap_or(&pid);
        match (name, result) {
            ("execve" | "execveat", Some(0)) => {
                let exec = parse_exec_args(name, &call).map_err(|m| err(&m))?;
                log.execs.entry(caller).or_default().push(exec);
            }
            ("fork" | "vfork" | "clone" | "clone3", Some(child)) if child > 0 => {
                let child = child as u32;
                if name.starts_with("clone") && call.contains("CLONE_THREAD") {
                    tgid.insert(child, caller);
                } else if Some(child) == log.root || log.parent.insert(child, caller).is_some() {
                    return Err(err("a pid was used twice in the run (pid reuse)"));
                }
            }
            _ => {} // failed execs and clones
        }
    }
    if !pending.is_empty() {
        return Err(format!("strace output: calls never resumed: {pending:?}"));
    }
    Ok(log)
}

/// Path and argv of `execve("PATH", [ARGV], ...)` or `execveat(FD, "PATH", [ARGV], ...)`.
fn parse_exec_args(name: &str, call: &str) -> Result<PathAndArgv, String> {
    let mut s = &call[name.len() + 1..];
    if name == "execveat" {
        s = s.split_once(", ").ok_or("execveat without arguments")?.1;
    }
    let (path, s) = parse_string(s)?;
    let s = s.strip_prefix(", ").ok_or("no argv after the path")?;
    let mut s = s.strip_prefix('[').ok_or("argv is not an array")?;
    let mut argv = Vec::new();
    if s.starts_with(']') {
        return Ok((path, argv));
    }
    loop {
        let (arg, rest) = parse_string(s)?;
        argv.push(arg);
        if let Some(rest) = rest.strip_prefix(", ") {
            s = rest;
        } else if rest.starts_with(']') {
            return Ok((path, argv));
        } else {
            return Err(format!(
                "argv array abbreviated or malformed at: {rest:.40}"
            ));
        }
    }
}

/// A `-xx` string (`"\x61\x62"`) and what follows it.
fn parse_string(s: &str) -> Result<(Vec<u8>, &str), String> {
    let mut s = s
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a string at: {s:.40}"))?;
    let mut out = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('"') {
            if rest.starts_with("...") {
                return Err("a string was truncated (raise -s)".to_string());
            }
            return Ok((out, rest));
        }
        let byte = s
            .strip_prefix("\\x")
            .and_then(|h| h.get(..2))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("expected \\xHH at: {s:.40}"))?;
        out.push(byte);
        s = &s[4..];
    }
}

/// The exec model of a strace log: paths canonicalised (relative ones are relative to `cwd`,
/// where every relative exec of the workload happens).
fn strace_tree(log: StraceLog, cwd: &Path) -> Tree {
    let resolve = |path: &[u8], argv: &[Vec<u8>]| -> Exec {
        let p = Path::new(std::ffi::OsStr::from_bytes(path));
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        let exe = fs::canonicalize(&abs)
            .unwrap_or_else(|e| panic!("strace: cannot resolve exec path {}: {e}", abs.display()));
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        Exec {
            argv: argv.to_vec(),
            exe: exe.as_os_str().as_bytes().to_vec(),
            comm: name[..name.len().min(15)].to_vec(),
        }
    };
    Tree {
        root: log.root.expect("the strace output is empty"),
        parent: log.parent,
        execs: log
            .execs
            .into_iter()
            .map(|(pid, execs)| (pid, execs.iter().map(|(p, a)| resolve(p, a)).collect()))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// guard's JSONL trace

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let body = text.trim_end_matches('=');
    if text.len() % 4 != 0 || text.len() - body.len() > 2 {
        return Err(format!("not padded base64: {text:?}"));
    }
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("not base64: {text:?}"))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A trace byte string: a JSON string, or `{"bytes": base64}` when it is not UTF-8.
fn bytes(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((k, Value::String(b))) if k == "bytes" => {
                let raw = base64_decode(b)?;
                if std::str::from_utf8(&raw).is_ok() {
                    return Err(format!("valid UTF-8 written as bytes: {v}"));
                }
                Ok(raw)
            }
            _ => Err(format!("not a byte string: {v}")),
        },
        _ => Err(format!("not a byte string: {v}")),
    }
}

fn is_rfc3339_micros(t: &str) -> bool {
    // 2026-01-01T00:00:00.000000Z
    let b = t.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// An exec record as written by guard, with the fields checked beyond the model.
#[derive(Debug)]
struct GuardExec {
    line: String,
    pid: u32,
    ppid: u32,
    former_tid: Option<u32>,
    cwd: Vec<u8>,
    exec: Exec,
}

struct GuardTrace {
    tree: Tree,
    execs: Vec<GuardExec>,
}

fn our_uid() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Uid: in /proc/self/status")
}

/// Reads guard's trace, checking its format along the way.
fn read_guard_trace(path: &Path, guard_pid: u32) -> GuardTrace {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(text).expect("a trace is UTF-8 (non-UTF-8 strings are base64)");
    assert!(
        text.ends_with('\n'),
        "the trace does not end with a newline"
    );
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    assert!(
        lines.len() >= 2,
        "the trace has no header and seal:\n{text}"
    );
    let parse = |i: usize| -> Value {
        serde_json::from_str(lines[i])
            .unwrap_or_else(|e| panic!("trace line {}: not JSON ({e}): {}", i + 1, lines[i]))
    };
    let field_u32 = |v: &Value, key: &str, line: &str| -> u32 {
        v[key]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("no {key} (a number): {line}"))
    };

    let header = parse(0);
    assert_eq!(header["type"], "header", "the first line is not a header");
    assert_eq!(header["format"], 2);
    assert_eq!(header["watcher"], "run");
    assert_eq!(header["command"], serde_json::json!(["sh", "driver.sh"]));
    let root = field_u32(&header, "root", lines[0]);
    assert!(
        header["started"].as_str().is_some_and(is_rfc3339_micros),
        "header: started: {}",
        lines[0]
    );

    let last = lines.len() - 1;
    let seal = parse(last);
    assert_eq!(
        seal["type"], "seal",
        "the last line is not a seal: {}",
        lines[last]
    );
    assert_eq!(
        seal["records"].as_u64(),
        Some(last as u64 - 1),
        "the seal's `records` is not the number of lines between header and seal ({})",
        last - 1
    );
    assert_eq!(seal["lost"], 0, "the seal reports lost events");
    assert!(
        seal["time"].as_str().is_some_and(is_rfc3339_micros),
        "seal: time: {}",
        lines[last]
    );
    assert!(
        seal["chain"].as_str().is_some_and(|c| c.len() == 64),
        "the seal has no SHA-256 chain value: {}",
        lines[last]
    );

    let uid = our_uid();
    let mut tree = Tree {
        root,
        ..Tree::default()
    };
    let mut execs = Vec::new();
    let mut exits: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ends = 0;
    // Files read to fingerprint them: each at most once per run.
    let mut fingerprinted: std::collections::HashSet<String> = Default::default();
    for (i, &line) in lines.iter().enumerate().take(last).skip(1) {
        let v = parse(i);
        assert_eq!(
            v["seq"].as_u64(),
            Some(i as u64),
            "seq is not consecutive: {line}"
        );
        assert!(
            v["time"].as_str().is_some_and(is_rfc3339_micros),
            "time is not an RFC 3339 UTC time with microseconds: {line}"
        );
        match v["type"].as_str() {
            Some("exec") => {
                let pid = field_u32(&v, "pid", line);
                assert_eq!(field_u32(&v, "tgid", line), pid, "pid != tgid: {line}");
                assert_eq!(v["source"], "ptrace", "{line}");
                assert_eq!(v["uid"].as_u64(), Some(uid), "uid: {line}");
                assert!(v.get("partial").is_none(), "partial exec record: {line}");
                assert!(
                    v.get("script").is_none(),
                    "no exec of the workload runs a script: {line}"
                );
                let get = |key: &str| -> Vec<u8> {
                    bytes(&v[key]).unwrap_or_else(|e| panic!("{key}: {e}: {line}"))
                };
                let exe = get("exe");
                assert!(exe.starts_with(b"/"), "exe is not absolute: {line}");
                let cwd = get("cwd");
                assert!(cwd.starts_with(b"/"), "cwd is not absolute: {line}");
                let comm = get("comm");
                let argv: Vec<Vec<u8>> = v["argv"]
                    .as_array()
                    .unwrap_or_else(|| panic!("argv is not an array: {line}"))
                    .iter()
                    .map(|a| bytes(a).unwrap_or_else(|e| panic!("argv: {e}: {line}")))
                    .collect();
                if let Some(execfn) = v.get("execfn") {
                    let execfn = bytes(execfn).unwrap();
                    let resolved = fs::canonicalize(std::ffi::OsStr::from_bytes(&execfn))
                        .unwrap_or_else(|e| panic!("execfn does not resolve ({e}): {line}"));
                    assert_eq!(
                        resolved.as_os_str().as_bytes(),
                        exe.as_slice(),
                        "execfn is not the executable: {line}"
                    );
                }
                let former_tid = v
                    .get("former_tid")
                    .map(|_| field_u32(&v, "former_tid", line));
                let exec = Exec { argv, exe, comm };
                tree.execs.entry(pid).or_default().push(exec.clone());
                execs.push(GuardExec {
                    line: line.to_string(),
                    pid,
                    ppid: field_u32(&v, "ppid", line),
                    former_tid,
                    cwd,
                    exec,
                });
            }
            Some("fork") => {
                assert_eq!(v["source"], "ptrace", "{line}");
                let pid = field_u32(&v, "pid", line);
                let ppid = field_u32(&v, "ppid", line);
                assert!(
                    pid != root && tree.parent.insert(pid, ppid).is_none(),
                    "a fork record for a pid seen before (pid reuse, or a duplicate): {line}"
                );
            }
            Some("exit") => {
                let pid = field_u32(&v, "pid", line);
                let status = v["status"].as_object();
                assert!(
                    status.is_some_and(|s| s.len() == 1
                        && (s["code"].is_i64() || s.get("signal").is_some_and(Value::is_i64))),
                    "status: {line}"
                );
                *exits.entry(pid).or_default() += 1;
            }
            Some("end") => {
                ends += 1;
                assert_eq!(v["status"], serde_json::json!({"code": 0}), "{line}");
                assert_eq!(v["outlived"], serde_json::json!([]), "{line}");
            }
            Some("fingerprint") => {
                assert!(v["path"].is_string() && v["matched"].is_array(), "{line}");
                assert!(v["bytes"].is_u64() && v["micros"].is_u64(), "{line}");
                assert!(
                    fingerprinted.insert(v["file"].to_string()),
                    "a file was fingerprinted twice: {line}"
                );
            }
            _ => panic!("trace line {}: unexpected record: {line}", i + 1),
        }
    }
    assert_eq!(ends, 1, "the trace has {ends} end records");

    let processes = tree.processes();
    for e in &execs {
        assert!(
            processes.contains(&e.pid),
            "an exec by a process that is neither the root nor forked: {}",
            e.line
        );
        // Every parent in the workload waits for its children, so the real parent is alive
        // at each exec and is the process that forked it (guard for the root).
        let expected = tree.parent.get(&e.pid).copied().unwrap_or(guard_pid);
        assert_eq!(
            e.ppid, expected,
            "ppid is not the forking process: {}",
            e.line
        );
    }
    let expected_exits: BTreeMap<u32, usize> = processes.iter().map(|&p| (p, 1)).collect();
    assert_eq!(
        exits, expected_exits,
        "every process (and only processes) must have exactly one exit record"
    );
    GuardTrace { tree, execs }
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
fn guard_records_the_execs_strace_records() {
    if !(have_tool("strace", "-V")
        && have_tool("cc", "--version")
        && have_tool("make", "--version"))
    {
        return;
    }
    let tmp = TempDir::new();
    let work = tmp.0.join("work");
    let out = tmp.0.join("out");
    fs::create_dir_all(work.join("mk/sub")).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::write(work.join("driver.sh"), DRIVER).unwrap();
    fs::write(work.join("mk/Makefile"), MAKEFILE).unwrap();
    fs::write(work.join("mk/sub/Makefile"), SUB_MAKEFILE).unwrap();
    for program in ["thread_exec", "spawner"] {
        let compiled = run(
            &format!("cc {program}"),
            Command::new("cc")
                .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
                .arg(work.join(program))
                .arg(Path::new(FIXTURES).join(format!("{program}.c"))),
            &out,
        );
        expect_success(&format!("compiling {program}.c"), &compiled);
    }

    let strace_out = out.join("strace.txt");
    let traced = run(
        "strace",
        Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=execve,execveat,fork,vfork,clone,clone3",
            ])
            .args(["-e", "signal=none", "-s", "100000", "-xx", "-o"])
            .arg(&strace_out)
            .args(["sh", "driver.sh"])
            .current_dir(&work),
        &out,
    );
    expect_success("the workload under strace", &traced);

    let guard_out = out.join("guard.jsonl");
    let guarded = run(
        "guard",
        Command::new(GUARD)
            .args(["run", "--trace"])
            .arg(&guard_out)
            .args(["--", "sh", "driver.sh"])
            .current_dir(&work),
        &out,
    );
    expect_success("the workload under guard run", &guarded);
    // The workload printed the same under both (modulo the order of concurrent jobs).
    let mut a: Vec<&str> = traced.stdout.lines().collect();
    let mut b: Vec<&str> = guarded.stdout.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "the workload's output differs under strace and guard");

    let log =
        parse_strace(&fs::read_to_string(&strace_out).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let strace = strace_tree(log, &work);
    let guard = read_guard_trace(&guard_out, guarded.pid);

    compare(&guard.tree, &strace);
    check_workload_specifics(&guard, &work);
    eprintln!(
        "trace_fidelity: {} execs in {} processes, identical under guard and strace",
        guard.execs.len(),
        guard.tree.processes().len()
    );
}

/// The comparison proper: guard's model against strace's, pids renumbered.
fn compare(guard: &Tree, strace: &Tree) {
    let argvs = |t: &Tree| {
        let mut v: Vec<Vec<Vec<u8>>> = t.all_execs().into_iter().map(|e| e.argv).collect();
        v.sort();
        v
    };
    assert_same_multiset(
        "the argv lists of successful execs",
        &argvs(guard),
        &argvs(strace),
        |a| show_argv(a),
    );
    assert_same_multiset(
        "the execs (argv, executable, comm)",
        &guard.all_execs(),
        &strace.all_execs(),
        |e| {
            format!(
                "{} exe={} comm={}",
                show_argv(&e.argv),
                show_arg(&e.exe),
                show_arg(&e.comm)
            )
        },
    );
    assert_same_multiset(
        "the per-process exec sequences (pids renumbered)",
        &guard.renumbered(),
        &strace.renumbered(),
        |s| show_seq(s),
    );
    let (g, s) = (guard.canonical(), strace.canonical());
    if g != s {
        let (gt, st) = (show_tree(&g), show_tree(&s));
        let gl: Vec<&str> = gt.lines().collect();
        let sl: Vec<&str> = st.lines().collect();
        let (only_g, only_s) = multiset_diff(&gl, &sl);
        panic!(
            "the process trees differ.\n--- guard:\n{gt}--- strace:\n{st}--- lines only in guard's:\n{}\n--- lines only in strace's:\n{}",
            only_g.join("\n"),
            only_s.join("\n")
        );
    }
}

fn assert_argv(e: &GuardExec, expected: &[&[u8]]) {
    let expected: Vec<Vec<u8>> = expected.iter().map(|a| a.to_vec()).collect();
    assert!(
        e.exec.argv == expected,
        "argv {} instead of {}: {}",
        show_argv(&e.exec.argv),
        show_argv(&expected),
        e.line
    );
}

/// What the model cannot say: the non-leader exec's record, parentage across threads, the
/// argument edge cases and the cwd of make's children.
fn check_workload_specifics(guard: &GuardTrace, work: &Path) {
    // The execs having all these arguments (in this order, not necessarily adjacent).
    let find_with = |markers: &[&str]| -> &GuardExec {
        let found: Vec<&GuardExec> = guard
            .execs
            .iter()
            .filter(|e| {
                let mut args = e.exec.argv.iter();
                markers.iter().all(|m| args.any(|a| a == m.as_bytes()))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one exec with arguments {markers:?}: {:#?}",
            found.iter().map(|e| &e.line).collect::<Vec<_>>()
        );
        found[0]
    };
    let find = |marker: &str| find_with(&[marker]);
    let work_b = work.as_os_str().as_bytes();

    // execve from a non-leader thread: recorded under the process's pid (== tgid), after the
    // exec of ./thread_exec by the same process, with the thread's former id.
    let mut thread_execs = Vec::new();
    for mode in ["join", "leader-exits"] {
        let te = find_with(&["fidelity-thread-exec", mode]);
        thread_execs.push(te.pid);
        assert_argv(
            te,
            &[
                b"echo",
                b"fidelity-thread-exec",
                mode.as_bytes(),
                b"",
                b"\xff\xfe-not-utf8",
                b"",
            ],
        );
        let former = te.former_tid.unwrap_or_else(|| {
            panic!(
                "the exec from a non-leader thread has no former_tid: {}",
                te.line
            )
        });
        assert_ne!(former, te.pid, "former_tid is the leader's id: {}", te.line);
        let process: Vec<Vec<Vec<u8>>> = guard
            .tree
            .execs_of(te.pid)
            .iter()
            .map(|e| e.argv.clone())
            .collect();
        let expected = [
            vec![b"./thread_exec".to_vec(), mode.as_bytes().to_vec()],
            te.exec.argv.clone(),
        ];
        assert!(
            process == expected,
            "the thread's exec is not attributed to the process that ran ./thread_exec: \
             process {} ran {}, expected {}",
            te.pid,
            show_seq(&process),
            show_seq(&expected)
        );
        let echo = fs::canonicalize("/bin/echo").unwrap();
        assert_eq!(te.exec.exe, echo.as_os_str().as_bytes(), "{}", te.line);
        assert_eq!(te.exec.comm, b"echo", "{}", te.line);

        // The child that the non-leader thread spawned belongs to the process, not the thread.
        let from_thread = find_with(&["fidelity-from-thread-spawn", mode]);
        assert_eq!(from_thread.ppid, te.pid, "{}", from_thread.line);
        assert_eq!(guard.tree.parent.get(&from_thread.pid), Some(&te.pid));
    }
    let others: Vec<&str> = guard
        .execs
        .iter()
        .filter(|e| e.former_tid.is_some() && !thread_execs.contains(&e.pid))
        .map(|e| e.line.as_str())
        .collect();
    assert!(
        others.is_empty(),
        "former_tid on execs from leaders: {others:#?}"
    );

    // posix_spawn, posix_spawnp and vfork children of ./spawner.
    let spawner: Vec<u32> = guard
        .execs
        .iter()
        .filter(|e| e.exec.argv == [b"./spawner".to_vec()])
        .map(|e| e.pid)
        .collect();
    assert_eq!(spawner.len(), 1, "one exec of ./spawner");
    let spawned = find("fidelity-posix-spawn");
    assert_argv(spawned, &[b"echo", b"fidelity-posix-spawn", b"", b"x\xffy"]);
    assert_eq!(spawned.ppid, spawner[0], "{}", spawned.line);
    let vforked = find("fidelity-vfork");
    assert_argv(vforked, &[b"", b"fidelity-vfork", b"\xc3\x28"]);
    assert_eq!(vforked.ppid, spawner[0], "{}", vforked.line);
    let spawnedp = find("/bin/echo fidelity-posix-spawnp \"$0\"");
    assert_eq!(spawnedp.ppid, spawner[0], "{}", spawnedp.line);
    assert_eq!(
        spawnedp.exec.argv.last().map(Vec::len),
        Some(0),
        "{}",
        spawnedp.line
    );

    // The shell's non-UTF-8 and empty arguments.
    let shell = find("fidelity-after-empty");
    assert_argv(
        shell,
        &[
            b"/bin/echo",
            b"fidelity-\xff-shell",
            b"",
            b"fidelity-after-empty",
            b"",
        ],
    );
    // Long argument lists are whole.
    let long = guard
        .execs
        .iter()
        .find(|e| e.exec.argv.len() == 3001)
        .expect("the exec with 3000 arguments");
    assert_eq!(long.exec.argv[3000], b"3000");
    assert!(
        guard
            .execs
            .iter()
            .any(|e| e.exec.argv.len() == 2 && e.exec.argv[1].len() == 20000),
        "the exec with a 20000-byte argument"
    );

    // cwd: the work directory, and make's children in the directories make went into.
    for (marker, dir) in [
        ("fidelity-nested-outer", work.to_path_buf()),
        ("fidelity-make-direct", work.join("mk")),
        ("fidelity-make-sub", work.join("mk/sub")),
    ] {
        let e = find(marker);
        assert_eq!(e.cwd, dir.as_os_str().as_bytes(), "cwd: {}", e.line);
    }
    for e in &guard.execs {
        assert!(
            e.cwd.starts_with(work_b),
            "cwd outside the work directory: {}",
            e.line
        );
    }
}

/// Parents killed (SIGKILL) while they fork as fast as they can: some die between creating a
/// child and reporting the fork to guard, so the child's first stop is all guard learns of it
/// (guard holds such a stop while it reads the events already queued, then names the child from
/// `/proc`). The trace must stay causal all the same — a fork record before anything else of
/// its process, no process twice at once — and guard must let everything go promptly.
#[test]
fn forks_of_killed_parents_keep_the_trace_causal() {
    let work = TempDir::new();
    let trace = work.0.join("trace.jsonl");
    // Odd rounds kill the forking parent alone, even rounds its whole process group (setsid:
    // the parent and the children it has made, held ones included).
    let script = "i=0\n\
        while [ $i -lt 40 ]; do\n\
          setsid sh -c 'while :; do /bin/true & /bin/true & done' &\n\
          p=$!\n\
          sleep 0.02\n\
          if [ $((i % 2)) = 1 ]; then kill -9 $p; else kill -9 -$p; fi\n\
          i=$((i+1))\n\
        done\n\
        wait\n\
        echo rounds done";
    let started = Instant::now();
    let out = run(
        "guard run of killed forking parents",
        Command::new(GUARD)
            .arg("run")
            .arg("--trace")
            .arg(&trace)
            .args(["--", "sh", "-c", script])
            .current_dir(&work.0),
        &work.0,
    );
    expect_success("guard run", &out);
    assert_eq!(out.stdout, "rounds done\n");
    assert!(
        !out.stderr.contains("did not let go"),
        "processes were stuck: {}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "guard took {:?}",
        started.elapsed()
    );

    let text = fs::read_to_string(&trace).unwrap();
    let root = serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["root"]
        .as_u64()
        .unwrap() as u32;
    // pid -> alive (forked or the root, not yet exited).
    let mut alive: HashMap<u32, bool> = HashMap::from([(root, true)]);
    let (mut forks, mut execs) = (0, 0);
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).unwrap();
        let pid = v["pid"].as_u64().map(|p| p as u32);
        match v["type"].as_str() {
            Some("fork") => {
                let pid = pid.unwrap();
                assert!(
                    !alive.get(&pid).copied().unwrap_or(false),
                    "a fork record for a process that has not exited: {line}"
                );
                alive.insert(pid, true);
                forks += 1;
            }
            Some("exec") => {
                assert_eq!(
                    alive.get(&pid.unwrap()),
                    Some(&true),
                    "an exec before its process's fork record: {line}"
                );
                execs += 1;
            }
            Some("exit") => {
                let pid = pid.unwrap();
                assert_eq!(
                    alive.insert(pid, false),
                    Some(true),
                    "an exit of a process not forked or already gone: {line}"
                );
            }
            _ => {}
        }
    }
    // 40 rounds: a forking parent and a `sleep` each (80), and the children made in 20 ms.
    assert!(
        forks > 100 && execs > 100,
        "{forks} forks, {execs} execs recorded"
    );
}

#[test]
fn many_processes_waiting_to_exec_are_recorded_whole_with_fds_bounded() {
    // 400 subshells that wait, then exec: guard opens the /proc directory of a new process
    // ahead of its exec, but holds at most a bounded number (256, or a quarter of its
    // descriptor limit); every exec is recorded whole either way. While they wait, the
    // workload counts guard's open descriptors.
    let fds = waiting_execs(None);
    assert!(fds < 256 + 64, "guard held {fds} descriptors");
    let fds = waiting_execs(Some(256));
    assert!(
        fds < 64 + 64,
        "guard held {fds} descriptors under a limit of 256"
    );
}

/// Runs the 400 waiting subshells under `guard run` (with an open-files limit), checks the
/// trace, and returns how many descriptors guard had open while they waited.
fn waiting_execs(nofile: Option<u64>) -> usize {
    let work = TempDir::new();
    let trace = work.0.join("trace.jsonl");
    let script = "i=0\n\
        while [ $i -lt 400 ]; do\n\
          ( sleep 2; exec /bin/echo late-$i ) &\n\
          i=$((i+1))\n\
        done\n\
        sleep 1\n\
        ls /proc/$PPID/fd | wc -l > fds\n\
        wait";
    fs::write(work.0.join("driver.sh"), script).unwrap();
    let mut cmd = Command::new(GUARD);
    cmd.arg("run")
        .arg("--trace")
        .arg(&trace)
        .args(["--", "sh", "driver.sh"])
        .current_dir(&work.0);
    if let Some(n) = nofile {
        // SAFETY: setrlimit(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = run("guard run of processes waiting to exec", &mut cmd, &work.0);
    expect_success("guard run", &out);
    assert_eq!(out.stdout.lines().count(), 400, "{}", out.stdout);
    let fds: usize = fs::read_to_string(work.0.join("fds"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let guard = read_guard_trace(&trace, out.pid);
    let mut late: Vec<u32> = guard
        .execs
        .iter()
        .filter(|e| e.exec.argv.first().map(Vec::as_slice) == Some(b"/bin/echo"))
        .map(|e| {
            assert_eq!(e.exec.argv.len(), 2, "{}", e.line);
            assert!(e.exec.argv[1].starts_with(b"late-"), "{}", e.line);
            assert!(e.exec.exe.ends_with(b"/echo"), "{}", e.line);
            assert_eq!(e.exec.comm, b"echo", "{}", e.line);
            assert_eq!(e.cwd, work.0.as_os_str().as_bytes(), "{}", e.line);
            e.pid
        })
        .collect();
    late.sort_unstable();
    late.dedup();
    assert_eq!(late.len(), 400);
    fds
}

// ---------------------------------------------------------------------------------------------
// Tests of the test's own parsers (no tracing involved)

#[test]
fn strace_parser_pairs_split_calls_and_follows_a_non_leader_exec() {
    let log = r#"100 execve("\x2f\x62\x69\x6e\x2f\x73\x68", ["\x73\x68", ""], 0x7ffd /* 3 vars */) = 0
100 vfork( <unfinished ...>
101 execve("\x2e\x2f\x74", ["\x2e\x2f\x74"], 0x5600 /* 3 vars */ <unfinished ...>
100 <... vfork resumed>)              = 101
101 <... execve resumed>)             = 0
101 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x7f, parent_tid=0x7f, exit_signal=0, stack=0x7f, stack_size=0x7fff80, tls=0x7f} => {parent_tid=[102]}, 88) = 102
102 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f, stack_size=0x9000}, 88 <unfinished ...>
103 execve("\x2f\x62\x69\x6e\x2f\x65\x63\x68\x6f", ["\x65\x63\x68\x6f"], 0x7f /* 3 vars */) = 0
102 <... clone3 resumed>)             = 103
104 execve("\x2f\x6e\x6f", ["\x6e\x6f"], 0x7f /* 3 vars */) = -1 ENOENT (No such file or directory)
102 execve("\x2f\x62\x69\x6e\x2f\x65\x63\x68\x6f", ["\x65\x63\x68\x6f", "", "\xff\xfe", ""], 0x7ffe /* 3 vars */ <pid changed to 101 ...>
101 +++ superseded by execve in pid 102 +++
101 <... execve resumed>)             = 0
100 fork()                            = 104
"#;
    let log = parse_strace(log).unwrap();
    assert_eq!(log.root, Some(100));
    assert_eq!(
        log.parent,
        BTreeMap::from([(101, 100), (103, 101), (104, 100)])
    );
    let argvs =
        |pid| -> Vec<Vec<Vec<u8>>> { log.execs[&pid].iter().map(|(_, a)| a.clone()).collect() };
    assert_eq!(argvs(100), [vec![b"sh".to_vec(), vec![]]]);
    assert_eq!(
        argvs(101),
        [
            vec![b"./t".to_vec()],
            vec![b"echo".to_vec(), vec![], vec![0xff, 0xfe], vec![]]
        ]
    );
    assert_eq!(argvs(103), [vec![b"echo".to_vec()]]);
    assert!(!log.execs.contains_key(&104) && !log.execs.contains_key(&102));

    assert!(parse_strace("7 execve(\"\\x61\"..., [\"\\x61\"], 0x1) = 0\n").is_err());
    assert!(parse_strace("7 execve(\"\\x61\", [\"\\x61\", ...], 0x1) = 0\n").is_err());
    assert!(parse_strace("7 vfork( <unfinished ...>\n").is_err());
}

#[test]
fn trace_byte_strings_decode() {
    assert_eq!(base64_decode("//4tZw==").unwrap(), b"\xff\xfe-g");
    assert_eq!(base64_decode("eP95").unwrap(), b"x\xffy");
    assert_eq!(base64_decode("").unwrap(), b"");
    assert!(base64_decode("abc").is_err());
    assert_eq!(bytes(&serde_json::json!("")).unwrap(), b"");
    assert_eq!(
        bytes(&serde_json::json!({"bytes": "//4="})).unwrap(),
        b"\xff\xfe"
    );
    assert!(bytes(&serde_json::json!({"bytes": "YQ=="})).is_err());
    assert!(bytes(&serde_json::json!(3)).is_err());
    assert!(is_rfc3339_micros("2026-01-01T00:00:00.000000Z"));
    assert!(!is_rfc3339_micros("2026-01-01T00:00:00Z"));
}
