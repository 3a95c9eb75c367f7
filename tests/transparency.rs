//! Transparency of `guard run` (issue 7, item 1): a command behaves under
//! `guard run --report FILE -- CMD` exactly as it does bare.
//!
//! A table of cases, each run twice — bare and under guard — and compared as a shell sees them:
//! the exit status (the code, or 128+N for a death by signal N: guard exits 128+N itself, it does
//! not die of the signal), stdout byte for byte, stderr byte for byte once guard's own summary
//! lines (`guard: …`, printed last) are removed, the report's verdict and status, the processes
//! left in the command's process group, plus what the case is about: signals received exactly
//! once, job control and the terminal (a real interactive bash in tmux), descriptors and limits,
//! exec from threads, vfork, large and deep process trees, zombies, orphans and daemons.
//! A few rows document where guard cannot be transparent (programs that use ptrace themselves,
//! set-user-ID and file-capability programs under an unprivileged guard): they assert the real,
//! stable behaviour.
//!
//! Every run has a time bound: past it, its process group (or process tree) is killed and the
//! case fails. All cases run, several at a time; then one line
//! `transparency: N cases tried, M passed`, and every failing case with what differed.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{is_root, GUARD};
/// Cases run at the same time (most of them sleep or wait on signals; 2 cores in CI).
const WORKERS: usize = 4;
/// The bound of one run (bare or guarded) of an ordinary case.
const BOUND: Duration = Duration::from_secs(20);
/// The bound of one run of a heavy case (thousands of processes, 10 MiB).
const HEAVY: Duration = Duration::from_secs(90);
/// How long a tmux step may wait for what it expects on the screen.
const SCREEN_BOUND: Duration = Duration::from_secs(15);
/// Set to skip (instead of failing) the cases whose tools (tmux, gdb, sudo, ping, …) are not
/// installed or that need root when not root.
const SKIP_ENV: &str = "GUARD_TRANSPARENCY_SKIP_WITHOUT_TOOLS";
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Programs compiled at test time.

const CRASH_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "";
    printf("crashing by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "segv")) { volatile int *p = (volatile int *)16; return *p; }
    if (!strcmp(how, "fpe")) { volatile int zero = 0, one = 1; return one / zero; }
    if (!strcmp(how, "abrt")) abort();
    if (!strcmp(how, "bus")) {
        char path[] = "busXXXXXX";
        int fd = mkstemp(path);
        if (fd < 0) return 90;
        unlink(path);
        if (ftruncate(fd, 4096)) return 91;
        volatile char *p = mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return 92;
        if (ftruncate(fd, 0)) return 93;
        return p[0];
    }
    return 99;
}
"#;

const THREAD_EXEC_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *run(void *arg) {
    (void)arg;
    char *argv[] = {"echo", "exec from a thread that is not the leader", NULL};
    execv("/bin/echo", argv);
    perror("execv");
    _exit(97);
}
int main(void) {
    pthread_t t;
    printf("main thread starts a thread that execs\n");
    fflush(stdout);
    if (pthread_create(&t, NULL, run, NULL)) return 98;
    for (;;) pause();
}
"#;

const SPAWN_C: &str = r#"
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "";
    char *cargv[] = {"sh", "-c", "echo child started by $0; exit 7", (char *)how, NULL};
    pid_t pid;
    if (!strcmp(how, "vfork")) {
        pid = vfork();
        if (pid < 0) return 90;
        if (pid == 0) { execve("/bin/sh", cargv, environ); _exit(127); }
    } else if (posix_spawn(&pid, "/bin/sh", NULL, NULL, cargv, environ) != 0) {
        return 91;
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return 92;
    printf("%s: child exited %d\n", how, WEXITSTATUS(st));
    return WEXITSTATUS(st) + 1;
}
"#;

const FORK_DEPTH_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 0;
    for (int level = 0; level < depth; level++) {
        pid_t pid = fork();
        if (pid < 0) { dprintf(1, "fork failed at level %d\n", level); return 90; }
        if (pid > 0) {
            int st;
            if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) _exit(91);
            if (level == 0) dprintf(1, "all %d levels returned, status %d\n", depth, WEXITSTATUS(st));
            _exit(WEXITSTATUS(st));
        }
    }
    dprintf(1, "depth %d reached\n", depth);
    return 42;
}
"#;

const ZOMBIES_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#define N 20
static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}
int main(int argc, char **argv) {
    int wait_at_end = argc > 1 && !strcmp(argv[1], "wait");
    pid_t pids[N];
    FILE *f = fopen("pids", "w");
    if (!f) return 90;
    for (int i = 0; i < N; i++) {
        pid_t p = fork();
        if (p < 0) return 91;
        if (p == 0) _exit(i);
        pids[i] = p;
        fprintf(f, "%d\n", (int)p);
    }
    fclose(f);
    int zombies = 0;
    for (int tries = 0; tries < 1000 && zombies < N; tries++) {
        zombies = 0;
        for (int i = 0; i < N; i++) zombies += state_of(pids[i]) == 'Z';
        if (zombies < N) usleep(5000);
    }
    printf("%d of %d children are zombies before their parent waits\n", zombies, N);
    if (!wait_at_end) { printf("the parent exits without waiting\n"); return 0; }
    int reaped = 0, sum = 0;
    for (int i = 0; i < N; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st)) { reaped++; sum += WEXITSTATUS(st); }
    }
    printf("reaped %d, their statuses sum to %d\n", reaped, sum);
    return 0;
}
"#;

const PROGRAMS: [(&str, &str, &[&str]); 5] = [
    ("crash", CRASH_C, &[]),
    ("thread_exec", THREAD_EXEC_C, &["-pthread"]),
    ("spawn", SPAWN_C, &[]),
    ("fork_depth", FORK_DEPTH_C, &[]),
    ("zombies", ZOMBIES_C, &[]),
];

// ---------------------------------------------------------------------------------------------
// The world every case shares.

struct World {
    root: PathBuf,
    reports: PathBuf,
    bins: BTreeMap<&'static str, PathBuf>,
    /// 10 MiB of deterministic pseudo-random bytes, and the same in a file.
    data: Arc<Vec<u8>>,
    data_file: PathBuf,
    /// A 0644 text file (not executable).
    not_exec: PathBuf,
    /// The guard binary, executable by `nobody`.
    guard_nobody: PathBuf,
    launcher_pgid: i32,
    launcher_sid: i32,
    /// Failed setup steps (a compiler missing, …): every case reports them.
    setup_errors: Vec<String>,
}

fn setup() -> World {
    let root = std::env::temp_dir().join(format!("guard-transparency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let reports = root.join("reports");
    let cases = root.join("cases");
    for d in [&reports, &cases] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut setup_errors = Vec::new();

    // The C programs, compiled in parallel.
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut bins = BTreeMap::new();
    let mut compiling = Vec::new();
    for (name, code, flags) in PROGRAMS {
        let c = src.join(format!("{name}.c"));
        std::fs::write(&c, code).unwrap();
        let bin = root.join(name);
        match Command::new("cc")
            .args(flags.iter())
            .arg("-O0")
            .arg("-o")
            .arg(&bin)
            .arg(&c)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => compiling.push((name, child)),
            Err(e) => setup_errors.push(format!("cannot run cc for {name}: {e}")),
        }
        bins.insert(name, bin);
    }
    for (name, child) in compiling {
        match child.wait_with_output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => setup_errors.push(format!(
                "cc {name}.c failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => setup_errors.push(format!("cc {name}.c: {e}")),
        }
    }

    // Deterministic pseudo-random data (xorshift64*), every byte value present.
    let mut data = Vec::with_capacity(10 * MIB);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 10 * MIB {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    let data_file = root.join("data.bin");
    std::fs::write(&data_file, &data).unwrap();
    let not_exec = root.join("not-executable.txt");
    std::fs::write(&not_exec, "echo this must not run\n").unwrap();
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();

    // guard for `nobody`: the build's binary when nobody can reach it, else a 0755 copy.
    let guard_nobody = if is_root() && !nobody_can_run(Path::new(GUARD)) {
        let copy = root.join("guard");
        std::fs::copy(GUARD, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        PathBuf::from(GUARD)
    };
    // SAFETY: getpgrp(2) and getsid(2) cannot fail for the calling process.
    let (launcher_pgid, launcher_sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    World {
        root,
        reports,
        bins,
        data: Arc::new(data),
        data_file,
        not_exec,
        guard_nobody,
        launcher_pgid,
        launcher_sid,
        setup_errors,
    }
}

fn nobody_can_run(path: &Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            "test",
            "-x",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn installed(tool: &str) -> bool {
    common::which(tool).is_some()
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// What a case gives its hooks: the shared world, and the case's own directory (the command's
/// working directory, the same path for the bare and the guarded run, emptied before each).
#[derive(Clone)]
struct Ctx {
    world: Arc<World>,
    dir: PathBuf,
    slug: String,
}

/// Runs while the command runs (sends signals, …), given the pid that was started (guard, or
/// the bare command).
type During = Arc<dyn Fn(&Ctx, u32) -> Result<(), String> + Send + Sync>;
/// Runs after each run; the bare and the guarded results must be equal.
type After = Arc<dyn Fn(&Ctx, &Outcome) -> String + Send + Sync>;
/// A case-specific check of both outcomes.
type Check = Arc<dyn Fn(&Ctx, &Outcome, &Outcome) -> Result<(), String> + Send + Sync>;
/// A case that drives everything itself (tmux); returns what differed.
type Custom = Arc<dyn Fn(&Ctx) -> Vec<String> + Send + Sync>;
type Norm = fn(&[u8]) -> Vec<u8>;

#[derive(Clone)]
enum Input {
    Null,
    Closed,
    Bytes(Arc<Vec<u8>>),
}

#[derive(Clone, Copy, PartialEq)]
enum Output {
    Pipe,
    Closed,
    /// Read this many bytes, then close the reading end (the writer gets SIGPIPE).
    CloseAfter(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Errput {
    Pipe,
    Closed,
    /// The same pipe as stdout (`2>&1`).
    Merged,
}

#[derive(Clone)]
struct Spec {
    argv: Vec<OsString>,
    stdin: Input,
    stdout: Output,
    stderr: Errput,
    /// Started in a process group of its own (`setsid`-like, as `timeout` does); else in the
    /// test's process group.
    own_group: bool,
    bound: Duration,
    /// Run as `nobody` (through `setpriv`), bare and guarded.
    nobody: bool,
    /// A working directory below the case directory.
    cwd: Option<&'static str>,
    umask: Option<u32>,
    nofile: Option<(u64, u64)>,
    /// Signals the launcher ignores / blocks before exec (inherited by the command).
    ignore: Vec<i32>,
    block: Vec<i32>,
    /// Descriptor 5 open (a copy of stdout) when the command starts.
    fd5: bool,
    env: Vec<(OsString, OsString)>,
    /// Compare status, stdout and stderr. `false` for rows that document a difference.
    transparent: bool,
    norm: Option<Norm>,
    during: Option<During>,
    after: Option<After>,
    checks: Vec<Check>,
}

enum What {
    Compare(Box<Spec>),
    Custom(Custom),
}

struct Case {
    group: &'static str,
    name: String,
    what: What,
    /// Programs the case needs (a failure, or skipped with SKIP_ENV, when missing).
    needs: Vec<&'static str>,
    root: bool,
    /// Heavy cases are started first.
    heavy: bool,
}

fn spec<S: Into<OsString>>(argv: impl IntoIterator<Item = S>) -> Spec {
    Spec {
        argv: argv.into_iter().map(Into::into).collect(),
        stdin: Input::Null,
        stdout: Output::Pipe,
        stderr: Errput::Pipe,
        own_group: true,
        bound: BOUND,
        nobody: false,
        cwd: None,
        umask: None,
        nofile: None,
        ignore: Vec::new(),
        block: Vec::new(),
        fd5: false,
        env: Vec::new(),
        transparent: true,
        norm: None,
        during: None,
        after: None,
        checks: Vec::new(),
    }
}

fn sh(script: &str) -> Spec {
    spec(["sh", "-c", script])
}

impl Spec {
    fn stdin(mut self, i: Input) -> Spec {
        self.stdin = i;
        self
    }
    fn stdout(mut self, o: Output) -> Spec {
        self.stdout = o;
        self
    }
    fn stderr(mut self, e: Errput) -> Spec {
        self.stderr = e;
        self
    }
    fn shared_group(mut self) -> Spec {
        self.own_group = false;
        self
    }
    fn heavy(mut self) -> Spec {
        self.bound = HEAVY;
        self
    }
    fn nobody(mut self) -> Spec {
        self.nobody = true;
        self
    }
    fn documents_a_difference(mut self) -> Spec {
        self.transparent = false;
        self
    }
    fn norm(mut self, n: Norm) -> Spec {
        self.norm = Some(n);
        self
    }
    fn during(mut self, d: During) -> Spec {
        self.during = Some(d);
        self
    }
    fn after(mut self, a: After) -> Spec {
        self.after = Some(a);
        self
    }
    fn check(mut self, c: Check) -> Spec {
        self.checks.push(c);
        self
    }
    fn status(self, want: i32) -> Spec {
        self.check(expect_status(want))
    }
    fn out(self, want: &str) -> Spec {
        self.check(expect_stdout(want))
    }
    fn stats(self, execs: u64, forks: Option<u64>) -> Spec {
        self.check(expect_stats(execs, forks))
    }
}

fn case(group: &'static str, name: impl Into<String>, spec: Spec) -> Case {
    Case {
        group,
        name: name.into(),
        what: What::Compare(Box::new(spec)),
        needs: Vec::new(),
        root: false,
        heavy: false,
    }
}

fn custom(group: &'static str, name: impl Into<String>, f: Custom) -> Case {
    Case {
        group,
        name: name.into(),
        what: What::Custom(f),
        needs: Vec::new(),
        root: false,
        heavy: false,
    }
}

impl Case {
    fn needs(mut self, tools: &[&'static str]) -> Case {
        self.needs.extend_from_slice(tools);
        self
    }
    fn needs_root(mut self) -> Case {
        self.root = true;
        self
    }
    fn heavy(mut self) -> Case {
        self.heavy = true;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// One run.

struct Outcome {
    guarded: bool,
    pid: u32,
    /// As a shell sees it: the code, or 128+N for a death by signal N. `None`: no status
    /// (timed out, could not start).
    status: Option<i32>,
    /// The started process died of a signal (for guard: it must not).
    died_of: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// guard's own trailing `guard: …` lines, removed from stderr (or from stdout when merged).
    guard_lines: Vec<String>,
    elapsed: Duration,
    report: Option<Value>,
    after: String,
    /// Live processes left in the command's process group once it ended (name, TracerPid).
    leftover: Vec<String>,
    problems: Vec<String>,
}

impl Outcome {
    fn label(&self) -> &'static str {
        if self.guarded {
            "guard"
        } else {
            "bare"
        }
    }

    fn stats(&self, key: &str) -> Option<u64> {
        self.report.as_ref()?["stats"][key].as_u64()
    }
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded; both descriptors are ours alone.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn reader(mut f: File, limit: Option<usize>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        match limit {
            Some(n) => {
                let _ = (&mut f).take(n as u64).read_to_end(&mut buf);
                drop(f);
            }
            None => {
                let _ = f.read_to_end(&mut buf);
            }
        }
        let _ = tx.send(buf);
    });
    rx
}

fn reset_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

fn execute(ctx: &Ctx, spec: &Spec, guarded: bool) -> Outcome {
    reset_dir(&ctx.dir);
    let report_path = ctx.world.reports.join(format!("{}.json", ctx.slug));
    let _ = std::fs::remove_file(&report_path);
    let mut argv: Vec<OsString> = Vec::new();
    if spec.nobody {
        for a in [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ] {
            argv.push(a.into());
        }
    }
    if guarded {
        let g = if spec.nobody {
            ctx.world.guard_nobody.clone()
        } else {
            PathBuf::from(GUARD)
        };
        argv.push(g.into());
        argv.push("run".into());
        argv.push("--report".into());
        argv.push(report_path.clone().into());
        argv.push("--".into());
    }
    argv.extend(spec.argv.iter().cloned());

    let cwd = match spec.cwd {
        Some(sub) => {
            let d = ctx.dir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
            d
        }
        None => ctx.dir.clone(),
    };
    // Built by tests/common, as every run of guard; spawned, fed and signalled here. The
    // environment is the tests' own but TMUX (common::command unsets NO_COLOR: kept as it is).
    let mut g = common::command(&argv[0], &argv[1..])
        .cwd(&cwd)
        .env_remove("TMUX");
    if let Some(v) = std::env::var_os("NO_COLOR") {
        g = g.env("NO_COLOR", v);
    }
    for (k, v) in &spec.env {
        g = g.env(k, v);
    }
    if spec.own_group {
        g = g.process_group();
    }
    let mut cmd = g.command();

    let mut stdin_data = None;
    match &spec.stdin {
        Input::Null | Input::Closed => {
            cmd.stdin(Stdio::null());
        }
        Input::Bytes(b) => {
            let (r, w) = pipe();
            cmd.stdin(Stdio::from(r));
            stdin_data = Some((w, b.clone()));
        }
    }
    let mut out_rx = None;
    let mut err_rx = None;
    match spec.stdout {
        Output::Closed => {
            cmd.stdout(Stdio::null());
        }
        Output::Pipe | Output::CloseAfter(_) => {
            let (r, w) = pipe();
            if spec.stderr == Errput::Merged {
                cmd.stderr(Stdio::from(w.try_clone().unwrap()));
            }
            cmd.stdout(Stdio::from(w));
            let limit = match spec.stdout {
                Output::CloseAfter(n) => Some(n),
                _ => None,
            };
            out_rx = Some(reader(r, limit));
        }
    }
    match spec.stderr {
        Errput::Closed => {
            cmd.stderr(Stdio::null());
        }
        Errput::Pipe => {
            let (r, w) = pipe();
            cmd.stderr(Stdio::from(w));
            err_rx = Some(reader(r, None));
        }
        Errput::Merged => {}
    }
    let close = [
        matches!(spec.stdin, Input::Closed),
        spec.stdout == Output::Closed,
        spec.stderr == Errput::Closed,
    ];
    let umask = spec.umask;
    let nofile = spec.nofile;
    let ignore = spec.ignore.clone();
    let block = spec.block.clone();
    let fd5 = spec.fd5;
    // SAFETY: the closure only makes async-signal-safe calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            if let Some(m) = umask {
                libc::umask(m);
            }
            if let Some((soft, hard)) = nofile {
                let r = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
            for &s in &ignore {
                libc::signal(s, libc::SIG_IGN);
            }
            if !block.is_empty() {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &s in &block {
                    libc::sigaddset(&mut set, s);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            if fd5 {
                libc::dup2(1, 5);
            }
            for (fd, c) in close.iter().enumerate() {
                if *c {
                    libc::close(fd as i32);
                }
            }
            Ok(())
        });
    }

    let mut o = Outcome {
        guarded,
        pid: 0,
        status: None,
        died_of: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        guard_lines: Vec::new(),
        elapsed: Duration::ZERO,
        report: None,
        after: String::new(),
        leftover: Vec::new(),
        problems: Vec::new(),
    };
    let start = Instant::now();
    let spawned = cmd.spawn();
    // The Command holds the write ends of the pipes: without this, no reader sees EOF.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if !guarded => {
            // What a shell reports for a command it cannot execute.
            match e.kind() {
                std::io::ErrorKind::NotFound => o.status = Some(127),
                std::io::ErrorKind::PermissionDenied => o.status = Some(126),
                _ => o.problems.push(format!("cannot start: {e}")),
            }
            o.stdout = out_rx
                .map(|rx| rx.recv().unwrap_or_default())
                .unwrap_or_default();
            o.stderr = err_rx
                .map(|rx| rx.recv().unwrap_or_default())
                .unwrap_or_default();
            return o;
        }
        Err(e) => {
            o.problems.push(format!("cannot start guard: {e}"));
            return o;
        }
    };
    o.pid = child.id();
    if let Some((mut w, data)) = stdin_data {
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let during = spec.during.clone().map(|d| {
        let ctx = ctx.clone();
        let pid = o.pid;
        std::thread::spawn(move || d(&ctx, pid))
    });

    let deadline = start + spec.bound;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => {
                o.problems.push(format!("wait: {e}"));
                break None;
            }
        }
        if Instant::now() > deadline {
            o.problems
                .push(format!("did not finish within {:?}: killed", spec.bound));
            kill_all(o.pid, spec.own_group);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    o.elapsed = start.elapsed();
    if let Some(s) = status {
        o.status = s.code().or(s.signal().map(|n| 128 + n));
        o.died_of = s.signal();
    }
    if let Some(h) = during {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => o.problems.push(e),
            Err(_) => o.problems.push("the during-hook panicked".into()),
        }
    }
    // The pipes reach EOF when the last process holding them has gone.
    let pipe_deadline = deadline.max(Instant::now() + Duration::from_secs(2));
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>, what: &str, o: &mut Outcome| {
        let Some(rx) = rx else { return Vec::new() };
        let left = pipe_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => b,
            Err(_) => {
                o.problems.push(format!(
                    "{what} still open at the end of the bound ({:?}): held by a process left running",
                    spec.bound
                ));
                Vec::new()
            }
        }
    };
    o.stdout = collect(out_rx, "stdout", &mut o);
    o.stderr = collect(err_rx, "stderr", &mut o);
    if guarded {
        if spec.stderr == Errput::Merged {
            let (rest, lines) = split_guard_lines(&o.stdout);
            o.stdout = rest;
            o.guard_lines = lines;
        } else {
            let (rest, lines) = split_guard_lines(&o.stderr);
            o.stderr = rest;
            o.guard_lines = lines;
        }
        match std::fs::read(&report_path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => o.report = Some(v),
                Err(e) => o.problems.push(format!("the report is not JSON: {e}")),
            },
            Err(e) => o
                .problems
                .push(format!("no report {}: {e}", report_path.display())),
        }
    }
    if guarded && o.pid > 0 {
        // guard has exited: nothing may still be traced by it.
        let traced: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&p| status_field(p, "TracerPid:") == Some(o.pid.to_string()))
            .collect();
        if !traced.is_empty() {
            o.problems.push(format!(
                "processes still traced by guard (pid {}) after it exited: {traced:?}",
                o.pid
            ));
        }
    }
    if let Some(a) = &spec.after {
        o.after = a(ctx, &o);
    }
    if spec.own_group && o.pid > 0 {
        o.leftover = leftovers(o.pid as i32);
    }
    o
}

/// Splits guard's trailing `guard: …` lines off (guard prints its summary last). A command
/// whose last output has no final newline gets the first of them on the same line.
fn split_guard_lines(text: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut end = text.len();
    let mut lines = Vec::new();
    while end > 0 {
        let body_end = if text[end - 1] == b'\n' { end - 1 } else { end };
        let start = text[..body_end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = &text[start..body_end];
        if line.starts_with(b"guard: ") {
            lines.push(String::from_utf8_lossy(line).into_owned());
            end = start;
            continue;
        }
        if let Some(p) = find(line, b"guard: ") {
            lines.push(String::from_utf8_lossy(&line[p..]).into_owned());
            end = start + p;
        }
        break;
    }
    lines.reverse();
    (text[..end].to_vec(), lines)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `/proc/PID/stat` after the command name: state, ppid, pgrp, session, tty, tpgid, …
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    Some(rest.split_whitespace().map(String::from).collect())
}

fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

fn status_field(pid: i32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .map(|d| d.filter_map(|e| e.ok()).collect::<Vec<_>>())
            .unwrap_or_default();
        for t in tasks {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

/// Kills what a run left behind when it timed out: its process group, or its process tree.
fn kill_all(pid: u32, own_group: bool) {
    let pid = pid as i32;
    if own_group {
        // SAFETY: kill(2) of the process group we created for this run.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    } else {
        let tree = descendants(pid);
        // SAFETY: kill(2) of processes we started (the run and its descendants).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for p in tree {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// Live processes of process group `pgid` once its leader has ended (given a moment to go),
/// described by name and tracer; they are killed.
fn leftovers(pgid: i32) -> Vec<String> {
    let live = || -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|&p| {
                stat_fields(p).is_some_and(|f| {
                    f.len() > 2 && f[2] == pgid.to_string() && !matches!(f[0].as_str(), "Z" | "X")
                })
            })
            .collect()
    };
    let start = Instant::now();
    let mut left = live();
    while !left.is_empty() && start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
        left = live();
    }
    let mut described: Vec<String> = left
        .iter()
        .map(|&p| {
            format!(
                "{} (TracerPid {})",
                status_field(p, "Name:").unwrap_or_default(),
                status_field(p, "TracerPid:").unwrap_or_default()
            )
        })
        .collect();
    described.sort();
    for &p in &left {
        // SAFETY: kill(2) of a process left in the process group this run created.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    described
}

// ---------------------------------------------------------------------------------------------
// Comparing.

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut e: String = s.escape_debug().collect();
    if e.len() > 300 {
        let mut cut = 300;
        while !e.is_char_boundary(cut) {
            cut -= 1;
        }
        e.truncate(cut);
        e.push('…');
    }
    format!("\"{e}\"")
}

fn diff_bytes(what: &str, bare: &[u8], guard: &[u8]) -> Option<String> {
    if bare == guard {
        return None;
    }
    let at = bare
        .iter()
        .zip(guard)
        .position(|(a, b)| a != b)
        .unwrap_or(bare.len().min(guard.len()));
    let from = at.saturating_sub(40);
    Some(format!(
        "{what} differs at byte {at} (bare {} bytes, guard {} bytes): bare {} / guard {}",
        bare.len(),
        guard.len(),
        show(&bare[from..bare.len().min(at + 80)]),
        show(&guard[from..guard.len().min(at + 80)])
    ))
}

fn expected_report_status(bare: &Outcome) -> Value {
    match (bare.died_of, bare.status) {
        (Some(sig), _) => json!({ "signal": sig }),
        (None, Some(code)) => json!({ "code": code }),
        _ => Value::Null,
    }
}

fn compare(ctx: &Ctx, spec: &Spec, bare: &Outcome, guard: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    for o in [bare, guard] {
        for p in &o.problems {
            d.push(format!("{}: {p}", o.label()));
        }
    }
    if let Some(sig) = guard.died_of {
        d.push(format!(
            "guard itself died of signal {sig} (it must exit with 128+N)"
        ));
    }
    // With stderr closed, guard's summary has nowhere to go.
    if guard.status.is_some() && spec.stderr != Errput::Closed {
        match guard.guard_lines.last() {
            Some(l) if l.starts_with("guard: PASS:") => {}
            _ => d.push(format!(
                "guard's summary line `guard: PASS: …` missing; its lines: {:?}",
                guard.guard_lines
            )),
        }
    }
    if guard.status.is_some() {
        if let Some(r) = &guard.report {
            if r["verdict"] != "pass" {
                d.push(format!("report verdict {} (want pass)", r["verdict"]));
            }
        }
    }
    if spec.transparent {
        if bare.status != guard.status {
            d.push(format!(
                "exit status: bare {:?}, guard {:?}",
                bare.status, guard.status
            ));
        }
        let norm = |b: &[u8]| spec.norm.map_or_else(|| b.to_vec(), |n| n(b));
        if let Some(x) = diff_bytes("stdout", &norm(&bare.stdout), &norm(&guard.stdout)) {
            d.push(x);
        }
        if let Some(x) = diff_bytes("stderr", &norm(&bare.stderr), &norm(&guard.stderr)) {
            d.push(x);
        }
        if let Some(r) = &guard.report {
            let want = expected_report_status(bare);
            if !want.is_null() && r["command"]["status"] != want {
                d.push(format!(
                    "report command.status {} (bare: {want})",
                    r["command"]["status"]
                ));
            }
        }
        if bare.after != guard.after {
            d.push(format!(
                "after the run: bare {:?}, guard {:?}",
                bare.after, guard.after
            ));
        }
        if bare.leftover != guard.leftover {
            d.push(format!(
                "processes left in the command's process group: bare {:?}, guard {:?}",
                bare.leftover, guard.leftover
            ));
        }
    }
    for c in &spec.checks {
        if let Err(e) = c(ctx, bare, guard) {
            d.push(e);
        }
    }
    d
}

fn expect_status(want: i32) -> Check {
    Arc::new(move |_, bare, guard| {
        if bare.status == Some(want) && guard.status == Some(want) {
            Ok(())
        } else {
            Err(format!(
                "want status {want}: bare {:?}, guard {:?}",
                bare.status, guard.status
            ))
        }
    })
}

fn expect_stdout(want: &str) -> Check {
    let want = want.to_string();
    Arc::new(move |_, bare, guard| {
        for o in [bare, guard] {
            if o.stdout != want.as_bytes() {
                return Err(format!(
                    "{} stdout {} (want {})",
                    o.label(),
                    show(&o.stdout),
                    show(want.as_bytes())
                ));
            }
        }
        Ok(())
    })
}

fn expect_stdout_bytes(want: &'static [u8]) -> Check {
    Arc::new(move |_: &Ctx, bare: &Outcome, guard: &Outcome| {
        for o in [bare, guard] {
            if o.stdout != want {
                return Err(format!(
                    "{} stdout {} (want {})",
                    o.label(),
                    show(&o.stdout),
                    show(want)
                ));
            }
        }
        Ok(())
    })
}

fn expect_stats(execs: u64, forks: Option<u64>) -> Check {
    Arc::new(move |_, _, guard| {
        let got = (guard.stats("execs"), guard.stats("forks"));
        if got.0 != Some(execs) || forks.is_some_and(|f| got.1 != Some(f)) {
            return Err(format!(
                "report stats: execs {:?}, forks {:?} (want {execs}, {forks:?})",
                got.0, got.1
            ));
        }
        Ok(())
    })
}

fn expect_after(want: &'static str) -> Check {
    Arc::new(move |_, bare, guard| {
        for o in [bare, guard] {
            if o.after != want {
                return Err(format!(
                    "{} after the run: {:?} (want {want:?})",
                    o.label(),
                    o.after
                ));
            }
        }
        Ok(())
    })
}

/// guard comes back within `limit` (a daemon the command left must not hold it).
fn expect_prompt(limit: Duration) -> Check {
    Arc::new(move |_, _, guard| {
        if guard.elapsed > limit {
            Err(format!(
                "guard took {:?} (want under {limit:?}: it must not wait for what the command left running)",
                guard.elapsed
            ))
        } else {
            Ok(())
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Signals.

/// The pid the command wrote to `ready` (its `$$`), once it is there.
fn wait_ready(dir: &Path) -> Result<i32, String> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(dir.join("ready")) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                return Ok(pid);
            }
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the command never wrote `ready`".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Clone, Copy)]
enum Target {
    /// The started process: guard, or the bare command.
    Launched,
    /// Its whole process group (`kill -SIG -- -PGID`).
    Group,
    /// The command itself (its pid from `ready`), bypassing guard.
    Command,
}

fn signal_when_ready(sig: i32, target: Target) -> During {
    Arc::new(move |ctx, pid| {
        let cmd = wait_ready(&ctx.dir)?;
        let to = match target {
            Target::Launched => pid as i32,
            Target::Group => -(pid as i32),
            Target::Command => cmd,
        };
        // SAFETY: kill(2) of a process (group) this run started.
        if unsafe { libc::kill(to, sig) } != 0 {
            return Err(format!(
                "kill({to}, {sig}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    })
}

/// How many times each counted signal is sent (each once the previous one was handled): a
/// second delivery that merges with a pending first one cannot be seen, so the cases give it
/// several chances to show. A signal to the process group reaches the command directly and
/// through guard at nearly the same time, and merges most of the time: more rounds.
const ROUNDS: usize = 3;
const GROUP_ROUNDS: usize = 12;

/// A bash script that traps `sig` and counts its arrivals: it waits for ROUNDS of them, then
/// half a second more for an extra one, and prints the count. It waits with `read -t` on a FIFO
/// nobody writes: a builtin, so no child of its own gets a signal sent to the process group
/// (a `sleep` killed by it makes the shell print `Terminated`, or not, depending on timing).
fn count_script(sig: &str, rounds: usize) -> Spec {
    let script = format!(
        "trap 'echo x >> got' {sig}\n\
         mkfifo fifo; exec 9<>fifo; : > got\n\
         echo $$ > ready\n\
         i=0\n\
         while mapfile -t a < got; [ ${{#a[@]}} -lt {rounds} ] && [ $i -lt 400 ]; do read -t 0.02 -u 9; i=$((i+1)); done\n\
         i=0\n\
         while [ $i -lt 25 ]; do read -t 0.02 -u 9; i=$((i+1)); done\n\
         mapfile -t a < got\n\
         echo \"SIG{sig} received ${{#a[@]}} time(s)\"\n"
    );
    spec(["bash", "-c", &script]).out(&format!("SIG{sig} received {rounds} time(s)\n"))
}

/// Sends `sig` `rounds` times, each once the command has counted the previous one.
fn count_rounds(sig: i32, target: Target, rounds: usize) -> During {
    Arc::new(move |ctx: &Ctx, pid: u32| {
        let cmd = wait_ready(&ctx.dir)?;
        let to = match target {
            Target::Launched => pid as i32,
            Target::Group => -(pid as i32),
            Target::Command => cmd,
        };
        for round in 1..=rounds {
            // SAFETY: kill(2) of a process (group) this run started.
            if unsafe { libc::kill(to, sig) } != 0 {
                return Err(format!(
                    "kill({to}, {sig}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            let start = Instant::now();
            loop {
                let n = std::fs::read_to_string(ctx.dir.join("got"))
                    .map(|s| s.lines().count())
                    .unwrap_or(0);
                if n >= round {
                    break;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    return Err(format!(
                        "signal {sig}, round {round}: the command counted {n}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        Ok(())
    })
}

const FORWARDED: [(&str, i32); 11] = [
    ("INT", libc::SIGINT),
    ("TERM", libc::SIGTERM),
    ("HUP", libc::SIGHUP),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("WINCH", libc::SIGWINCH),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
];

// ---------------------------------------------------------------------------------------------
// After-run probes.

fn read_pids(dir: &Path, file: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The children listed in `pids`: all gone (reaped) once the run is over?
fn children_gone() -> After {
    Arc::new(|ctx, _| {
        let pids = read_pids(&ctx.dir, "pids");
        if pids.is_empty() {
            return "no pids written".into();
        }
        let start = Instant::now();
        loop {
            let states: Vec<Option<char>> = pids.iter().map(|&p| proc_state(p)).collect();
            let zombies = states.iter().filter(|s| **s == Some('Z')).count();
            let alive = states.iter().filter(|s| s.is_some()).count() - zombies;
            let traced = pids
                .iter()
                .filter(|&&p| status_field(p, "TracerPid:").is_some_and(|t| t != "0"))
                .count();
            // Orphans are reaped by init, which may take a moment (2.5 s on a test VM).
            if (zombies == 0 && alive == 0) || start.elapsed() > Duration::from_secs(6) {
                return format!(
                    "{} children: {} gone, {zombies} zombie, {alive} alive, {traced} traced",
                    pids.len(),
                    pids.len() - zombies - alive
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// The daemon whose pid is in `daemon.pid`: running, and traced by nobody? Then killed.
fn daemon_state() -> After {
    Arc::new(|ctx, _| {
        let start = Instant::now();
        let pid = loop {
            if let Some(&p) = read_pids(&ctx.dir, "daemon.pid").first() {
                break p;
            }
            if start.elapsed() > Duration::from_secs(3) {
                return "no daemon.pid written".into();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // It may not have exec'd its final program yet (setsid, sh).
        while status_field(pid, "Name:").is_some_and(|n| n != "sleep")
            && start.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = proc_state(pid);
        let tracer = status_field(pid, "TracerPid:").unwrap_or_default();
        let name = status_field(pid, "Name:").unwrap_or_default();
        // SAFETY: kill(2) of the daemon this run started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        match state {
            Some('Z') | None => "the daemon is gone".into(),
            Some(_) => format!("daemon {name} running, TracerPid {tracer}"),
        }
    })
}

/// What the orphan wrote once its parent had exited.
fn orphan_result() -> After {
    Arc::new(|ctx, _| {
        let start = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(ctx.dir.join("orphan.txt")) {
                if s.ends_with('\n') {
                    return s;
                }
            }
            if start.elapsed() > Duration::from_secs(3) {
                return "the orphan wrote nothing".into();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn norm_ping(b: &[u8]) -> Vec<u8> {
    let re = regex::Regex::new(r"time[= ][0-9.]+ ?ms|rtt [^\n]*|\(127\.0\.0\.1\) [0-9]+\([0-9]+\)")
        .unwrap();
    re.replace_all(&String::from_utf8_lossy(b), "…")
        .into_owned()
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The terminal: an interactive bash in tmux.

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, cwd: &Path) -> Result<Tmux, String> {
        let t = Tmux {
            socket: format!("gt-{}-{tag}", std::process::id()),
        };
        let out = t
            .tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                "main",
                "-x",
                "200",
                "-y",
                "50",
                "-c",
            ])
            .arg(cwd)
            .args(["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
            .output()
            .map_err(|e| format!("cannot run tmux: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        t.wait_for("the prompt", |s| s.lines().any(|l| l.starts_with('$')))?;
        Ok(t)
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"])
            .env_remove("TMUX")
            .stdin(Stdio::null());
        c
    }

    fn keys(&self, keys: &[&str]) -> Result<(), String> {
        let out = self
            .tmux()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .output()
            .map_err(|e| format!("tmux send-keys: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tmux send-keys: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn type_line(&self, line: &str) -> Result<(), String> {
        self.keys(&["-l", line])?;
        self.keys(&["Enter"])
    }

    fn screen(&self) -> String {
        self.tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-500", "-t", "main"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return Ok(s);
            }
            if start.elapsed() > SCREEN_BOUND {
                return Err(format!(
                    "timed out waiting for {what}; the screen:\n{}",
                    s.trim_end()
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Waits for an output line that starts with `prefix` (after the `^C`/`^Z` the terminal
    /// echoed) and returns it.
    fn wait_line(&self, prefix: &str) -> Result<String, String> {
        let line = |l: &str| -> Option<String> {
            let l = l.trim_start_matches("^C").trim_start_matches("^Z");
            l.starts_with(prefix).then(|| l.to_string())
        };
        let s = self.wait_for(&format!("a line starting with {prefix:?}"), |s| {
            s.lines().any(|l| line(l).is_some())
        })?;
        Ok(s.lines().find_map(line).unwrap_or_default())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends bash and whatever still runs in it (SIGHUP), then the socket file.
        let _ = self.tmux().arg("kill-server").output();
        let base = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        // SAFETY: getuid(2) cannot fail.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(
            Path::new(&base)
                .join(format!("tmux-{uid}"))
                .join(&self.socket),
        );
    }
}

/// A flow typed into an interactive bash: `prefix` is empty (bare) or `guard run … -- `.
/// Returns what it observed, which must be the same bare and under guard.
type Flow = fn(&Tmux, &str, &Path) -> Result<Vec<String>, String>;

fn tmux_case(name: &'static str, flow: Flow, expect: &'static [&'static str]) -> Case {
    custom(
        "terminal (tmux)",
        name,
        Arc::new(move |ctx| {
            reset_dir(&ctx.dir);
            let report = ctx.world.reports.join(format!("{}.json", ctx.slug));
            let prefix = format!("{GUARD} run --report {} -- ", report.display());
            let run = |tag: &str, prefix: &str| -> Result<Vec<String>, String> {
                let dir = ctx.dir.join(tag);
                reset_dir(&dir);
                let t = Tmux::start(&format!("{}-{tag}", &ctx.slug[..3]), &dir)?;
                flow(&t, prefix, &dir)
            };
            let (bare, guard) = std::thread::scope(|s| {
                let b = s.spawn(|| run("bare", ""));
                let g = s.spawn(|| run("guard", &prefix));
                (b.join().unwrap(), g.join().unwrap())
            });
            let mut d = Vec::new();
            match (&bare, &guard) {
                (Ok(b), Ok(g)) => {
                    if b != g {
                        d.push(format!("observed: bare {b:?}, guard {g:?}"));
                    }
                    for want in expect {
                        if !b.iter().any(|x| x == want) {
                            d.push(format!("bare: {want:?} not observed in {b:?}"));
                        }
                    }
                }
                _ => {
                    if let Err(e) = &bare {
                        d.push(format!("bare: {e}"));
                    }
                    if let Err(e) = &guard {
                        d.push(format!("guard: {e}"));
                    }
                }
            }
            d
        }),
    )
    .needs(&["tmux", "bash"])
}

/// Ctrl-Z stops the job (bash says so), nothing runs while it is stopped, `fg` continues it and
/// `$?` is the command's status.
fn flow_ctrl_z(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    std::fs::write(
        dir.join("job.sh"),
        "echo S$((1+1))\nsleep 1\necho D$((2+2))\nexit 5\n",
    )
    .unwrap();
    t.type_line(&format!("{prefix}sh job.sh"))?;
    t.wait_line("S2")?;
    t.keys(&["C-z"])?;
    let stopped = t.wait_for("bash to report the job stopped", |s| {
        s.lines()
            .any(|l| l.starts_with("[1]+") && l.contains("Stopped"))
    })?;
    seen.push("bash reported the job stopped".to_string());
    std::thread::sleep(Duration::from_millis(1500));
    if t.screen().lines().any(|l| l == "D4") {
        return Err(format!("the job ran on while stopped:\n{stopped}"));
    }
    seen.push("nothing ran while stopped".into());
    t.type_line("fg")?;
    t.wait_line("D4")?;
    seen.push("fg continued it".into());
    t.type_line("echo rc=$?")?;
    seen.push(t.wait_line("rc=")?);
    Ok(seen)
}

/// What `jobs -l` says of a job stopped by Ctrl-Z: the word bash derives from the signal that
/// stopped the process it started.
fn flow_jobs_word(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(dir.join("job.sh"), "echo S$((1+1))\nsleep 1\n").unwrap();
    t.type_line(&format!("{prefix}sh job.sh"))?;
    t.wait_line("S2")?;
    t.keys(&["C-z"])?;
    t.wait_for("bash to report the job stopped", |s| {
        s.lines()
            .any(|l| l.starts_with("[1]+") && l.contains("Stopped"))
    })?;
    t.type_line("jobs -l; echo J$((3+4))")?;
    let s = t.wait_for("the jobs listing", |s| s.lines().any(|l| l == "J7"))?;
    let listing = s
        .lines()
        .rev()
        .find(|l| l.starts_with("[1]+"))
        .unwrap_or_default()
        .to_string();
    let word = listing
        .find("Stopped")
        .map(|i| {
            let rest = &listing[i..];
            rest[..rest.find("  ").unwrap_or(rest.len())].to_string()
        })
        .unwrap_or(listing);
    t.type_line("fg")?;
    t.type_line("echo rc=$?")?;
    let rc = t.wait_line("rc=")?;
    Ok(vec![format!("jobs -l: {word}"), rc])
}

/// Ctrl-C once, to a command that traps SIGINT: it gets it once.
fn flow_ctrl_c_trapped(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(
        dir.join("int.sh"),
        "trap 'n=$((n+1))' INT\nn=0\necho R$((1+1))\n\
         while [ $n -eq 0 ]; do sleep 0.05; done\nsleep 0.7\necho count=$n\n",
    )
    .unwrap();
    t.type_line(&format!("{prefix}sh int.sh"))?;
    t.wait_line("R2")?;
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["C-c"])?;
    let count = t.wait_line("count=")?;
    t.type_line("echo rc=$?")?;
    Ok(vec![count, t.wait_line("rc=")?])
}

/// Ctrl-C to a command that does not handle it: it dies of it, `$?` is 130.
fn flow_ctrl_c_kills(t: &Tmux, prefix: &str, _dir: &Path) -> Result<Vec<String>, String> {
    t.type_line(&format!("{prefix}sh -c 'echo R$((1+1)); exec sleep 30'"))?;
    t.wait_line("R2")?;
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    t.keys(&["C-c"])?;
    t.type_line("echo rc=$?")?;
    let rc = t.wait_line("rc=")?;
    let quick = if start.elapsed() < Duration::from_secs(10) {
        "ended at once"
    } else {
        "ended late"
    };
    Ok(vec![rc, quick.into()])
}

/// The command's stdio is the terminal, it is in the foreground process group, and the
/// terminal's settings are what they were before and after.
fn flow_tty(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(
        dir.join("tty.sh"),
        "r=\"\"\n\
         test -t 0 && r=\"$r stdin-tty\"\n\
         test -t 1 && r=\"$r stdout-tty\"\n\
         test -t 2 && r=\"$r stderr-tty\"\n\
         set -- $(cut -d')' -f2 /proc/$$/stat)\n\
         [ \"$3\" = \"$6\" ] && r=\"$r foreground\"\n\
         r=\"$r stty=$(stty -g)\"\n\
         echo \"$r\" > tty.out\n",
    )
    .unwrap();
    t.type_line(&format!(
        "stty -g > before.txt; {prefix}sh tty.sh; stty -g > after.txt; echo F$((3+3))"
    ))?;
    t.wait_line("F6")?;
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let (inside, before, after) = (read("tty.out"), read("before.txt"), read("after.txt"));
    let mut seen = vec![format!("command: {}", inside.trim())];
    seen.push(if before == after && !before.is_empty() {
        "stty -g unchanged by the run".into()
    } else {
        format!("stty -g before {before:?}, after {after:?}")
    });
    Ok(seen)
}

/// The command reads a line typed at the terminal.
fn flow_read_tty(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(dir.join("read.sh"), "echo R$((1+1))\nread x\necho got:$x\n").unwrap();
    t.type_line(&format!("{prefix}sh read.sh"))?;
    t.wait_line("R2")?;
    t.type_line("typed text")?;
    let got = t.wait_line("got:")?;
    t.type_line("echo rc=$?")?;
    Ok(vec![got, t.wait_line("rc=")?])
}

/// A background job that reads the terminal is stopped (SIGTTIN); `fg` lets it read.
fn flow_background_read(t: &Tmux, prefix: &str, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(dir.join("read.sh"), "read x\necho got:$x\n").unwrap();
    t.type_line(&format!("{prefix}sh read.sh &"))?;
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        t.type_line("jobs; echo J$((3+4))")?;
        std::thread::sleep(Duration::from_millis(200));
        let s = t.screen();
        if s.lines()
            .any(|l| l.starts_with("[1]+") && l.contains("Stopped"))
        {
            seen.push("the background job stopped on reading the terminal".to_string());
            break;
        }
        if start.elapsed() > SCREEN_BOUND {
            return Err(format!("the background job never stopped:\n{s}"));
        }
    }
    t.type_line("fg")?;
    std::thread::sleep(Duration::from_millis(300));
    t.type_line("typed text")?;
    seen.push(t.wait_line("got:")?);
    t.type_line("echo rc=$?")?;
    seen.push(t.wait_line("rc=")?);
    Ok(seen)
}

// ---------------------------------------------------------------------------------------------
// Custom cases.

/// `strace -p` of a process outside guard's tree: guard's tracee can itself trace a process
/// nobody traces.
fn strace_outside(ctx: &Ctx) -> Vec<String> {
    let mut d = Vec::new();
    let mut outs = Vec::new();
    for guarded in [false, true] {
        let mut sleeper = match Command::new("sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => return vec![format!("cannot start sleep: {e}")],
        };
        let target = sleeper.id();
        let s = spec([
            "strace".to_string(),
            "-e".into(),
            "trace=none".into(),
            "-o".into(),
            "strace.out".into(),
            "-p".into(),
            target.to_string(),
        ])
        .during(Arc::new(move |ctx, _| {
            // Once strace has attached (its output file exists), end the traced process.
            let start = Instant::now();
            while !ctx.dir.join("strace.out").exists() && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            while status_field(target as i32, "TracerPid:").is_none_or(|t| t == "0")
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: kill(2) of the sleep this case started.
            unsafe { libc::kill(target as i32, libc::SIGTERM) };
            Ok(())
        }));
        let o = execute(ctx, &s, guarded);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let text = std::fs::read_to_string(ctx.dir.join("strace.out")).unwrap_or_default();
        let last = text.lines().last().unwrap_or_default().to_string();
        for p in &o.problems {
            d.push(format!("{}: {p}", o.label()));
        }
        outs.push((o.status, last, o.label()));
    }
    for (status, last, label) in &outs {
        if *status != Some(0) || last != "+++ killed by SIGTERM +++" {
            d.push(format!(
                "{label}: status {status:?}, last line of strace's output {last:?} (want 0 and `+++ killed by SIGTERM +++`)"
            ));
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// The table.

fn cases(w: &World) -> Vec<Case> {
    let mut c = Vec::new();
    let bin = |name: &str| w.bins[name].display().to_string();

    // --- Heavy ones first: they set the pace.
    c.push(
        case(
            "process tree",
            "5,000 processes in sequence",
            sh("i=0; while [ $i -lt 5000 ]; do /bin/true; i=$((i+1)); done; echo $i")
                .heavy()
                .out("5000\n")
                .stats(5001, Some(5000)),
        )
        .heavy(),
    );
    c.push(
        case(
            "process tree",
            "1,000 processes at once (20 subshells x 50 background jobs)",
            sh("i=0\n\
                while [ $i -lt 20 ]; do\n\
                  ( j=0; while [ $j -lt 50 ]; do /bin/true & j=$((j+1)); done; wait ) &\n\
                  i=$((i+1))\n\
                done\n\
                wait\n\
                echo all done")
            .heavy()
            .out("all done\n")
            .stats(1001, Some(1020)),
        )
        .heavy(),
    );
    c.push(
        case(
            "process tree",
            "fork depth 500, each level waiting for the next",
            spec([bin("fork_depth"), "500".into()])
                .heavy()
                .status(42)
                .out("depth 500 reached\nall 500 levels returned, status 42\n")
                .stats(1, Some(500)),
        )
        .heavy(),
    );
    c.push(
        case(
            "stdio",
            "10 MiB through stdin and stdout",
            spec(["cat"])
                .stdin(Input::Bytes(w.data.clone()))
                .heavy()
                .check(Arc::new(|ctx, bare, guard| {
                    for o in [bare, guard] {
                        if o.stdout != *ctx.world.data {
                            return Err(format!("{}: stdout is not the 10 MiB input", o.label()));
                        }
                    }
                    Ok(())
                })),
        )
        .heavy(),
    );
    c.push(
        case(
            "stdio",
            "10 MiB of binary output",
            spec(["cat".to_string(), w.data_file.display().to_string()])
                .heavy()
                .check(Arc::new(|ctx, bare, guard| {
                    for o in [bare, guard] {
                        if o.stdout != *ctx.world.data {
                            return Err(format!("{}: stdout is not the 10 MiB file", o.label()));
                        }
                    }
                    Ok(())
                })),
        )
        .heavy(),
    );
    c.push(
        case(
            "process tree",
            "exec chain of 300 shells (each execs the next)",
            spec([
                "sh",
                "-c",
                "n=$1; if [ \"$n\" -gt 0 ]; then exec sh -c \"$0\" \"$0\" $((n-1)); fi; echo exec chain done",
                "n=$1; if [ \"$n\" -gt 0 ]; then exec sh -c \"$0\" \"$0\" $((n-1)); fi; echo exec chain done",
                "300",
            ])
            .heavy()
            .out("exec chain done\n")
            .stats(301, Some(0)),
        )
        .heavy(),
    );

    // --- Exit statuses.
    for n in [0, 1, 2, 42, 126, 127, 128, 200, 254, 255, 256] {
        c.push(case(
            "exit status",
            format!("exit {n}"),
            sh(&format!("echo out; echo err >&2; exit {n}")).status(n % 256),
        ));
    }

    // --- Deaths by signal.
    let death = |name: &str, s: Spec, want: i32| case("death by signal", name, s.status(want));
    c.push(death(
        "SIGKILL (kill -KILL $$): 137",
        sh("echo before; kill -KILL $$; echo after"),
        137,
    ));
    c.push(death(
        "SIGSEGV (a null pointer read): 139",
        spec([bin("crash"), "segv".into()]),
        139,
    ));
    c.push(death(
        "SIGSEGV (kill -SEGV $$): 139",
        sh("kill -SEGV $$"),
        139,
    ));
    c.push(death(
        "SIGABRT (abort()): 134",
        spec([bin("crash"), "abrt".into()]),
        134,
    ));
    c.push(death(
        "SIGTERM (kill $$): 143",
        sh("echo x; kill $$; echo y"),
        143,
    ));
    if cfg!(target_arch = "x86_64") {
        c.push(death(
            "SIGFPE (integer division by zero): 136",
            spec([bin("crash"), "fpe".into()]),
            136,
        ));
    } else {
        c.push(death("SIGFPE (kill -FPE $$): 136", sh("kill -FPE $$"), 136));
    }
    c.push(death(
        "SIGBUS (a mapping past the end of its file): 135",
        spec([bin("crash"), "bus".into()]),
        135,
    ));
    c.push(death(
        "SIGUSR1, default action: 138",
        sh("kill -USR1 $$"),
        138,
    ));
    c.push(death(
        "SIGQUIT, default action (core): 131",
        sh("kill -QUIT $$"),
        131,
    ));
    c.push(death(
        "SIGTRAP, default action: 133",
        sh("kill -TRAP $$"),
        133,
    ));
    c.push(death(
        "SIGTRAP handled by the command",
        sh("trap 'echo trapped' TRAP; kill -TRAP $$; echo after"),
        0,
    ));
    c.push(death(
        "real-time signal SIGRTMIN+3: 165",
        sh("kill -s RTMIN+3 $$; echo survived"),
        165,
    ));
    c.push(death(
        "SIGPIPE inside a pipeline (yes | head -1)",
        sh("yes | head -1"),
        0,
    ));
    c.push(death(
        "SIGPIPE with pipefail (bash): 141",
        spec(["bash", "-c", "set -o pipefail; yes | head -1"]),
        141,
    ));
    c.push(death(
        "SIGPIPE: the reader of the command's stdout goes away: 141",
        spec(["yes"]).stdout(Output::CloseAfter(4)).out("y\ny\n"),
        141,
    ));

    // --- Signals sent to guard's pid: forwarded once.
    for (name, signo) in FORWARDED {
        c.push(case(
            "signals sent to guard",
            format!("SIG{name} to guard's pid, trapped: each received once"),
            count_script(name, ROUNDS).during(count_rounds(signo, Target::Launched, ROUNDS)),
        ));
    }
    c.push(case(
        "signals sent to guard",
        "SIGTERM to guard's pid, not handled: 143",
        sh("echo $$ > ready; while :; do sleep 0.02 & wait $!; done")
            .during(signal_when_ready(libc::SIGTERM, Target::Launched))
            .status(143),
    ));
    let mut ignored = sh("echo $$ > ready; i=0; while [ $i -lt 30 ]; do sleep 0.02 & wait $!; i=$((i+1)); done; echo survived")
        .during(signal_when_ready(libc::SIGINT, Target::Launched))
        .out("survived\n")
        .status(0);
    ignored.ignore = vec![libc::SIGINT];
    c.push(case(
        "signals sent to guard",
        "SIGINT to guard's pid, ignored by the command (inherited SIG_IGN)",
        ignored,
    ));

    // --- Signals to the whole process group, and to the command itself.
    for (name, signo) in [
        ("TERM", libc::SIGTERM),
        ("INT", libc::SIGINT),
        ("HUP", libc::SIGHUP),
    ] {
        c.push(case(
            "signals to the process group",
            format!("SIG{name} to guard's process group (kill -{name} -- -PGID), trapped: each received once"),
            count_script(name, GROUP_ROUNDS).during(count_rounds(signo, Target::Group, GROUP_ROUNDS)),
        ));
    }
    c.push(case(
        "signals to the process group",
        "SIGTERM to the process group, not handled: 143",
        sh("echo $$ > ready; while :; do sleep 0.02 & wait $!; done")
            .during(signal_when_ready(libc::SIGTERM, Target::Group))
            .status(143),
    ));
    c.push(case(
        "signals to the process group",
        "SIGUSR1 to the command's own pid, trapped: each received once",
        count_script("USR1", ROUNDS).during(count_rounds(libc::SIGUSR1, Target::Command, ROUNDS)),
    ));
    c.push(case(
        "signals to the process group",
        "real-time SIGRTMIN+2 to the command's own pid (bash trap): each received once",
        count_script("RTMIN+2", ROUNDS).during(count_rounds(
            libc::SIGRTMIN() + 2,
            Target::Command,
            ROUNDS,
        )),
    ));
    c.push(case(
        "signals to the process group",
        "kill -STOP $$, then SIGCONT to the started pid: stopped, then resumed",
        sh("echo $$ > ready; kill -STOP $$; echo resumed")
            .during(Arc::new(|ctx, pid| {
                wait_ready(&ctx.dir)?;
                let start = Instant::now();
                while proc_state(pid as i32) != Some('T') {
                    if start.elapsed() > Duration::from_secs(10) {
                        return Err(format!(
                            "the started process (pid {pid}) was never seen stopped: state {:?}",
                            proc_state(pid as i32)
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(300));
                if proc_state(pid as i32) != Some('T') {
                    return Err("the started process did not stay stopped".into());
                }
                // SAFETY: kill(2) of the process this run started.
                unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                Ok(())
            }))
            .out("resumed\n"),
    ));

    // --- The terminal.
    c.push(tmux_case(
        "Ctrl-Z stops the job, fg continues it, $? is the command's",
        flow_ctrl_z,
        &[
            "bash reported the job stopped",
            "nothing ran while stopped",
            "fg continued it",
            "rc=5",
        ],
    ));
    c.push(tmux_case(
        "Ctrl-Z: `jobs -l` reports the same stop as bare",
        flow_jobs_word,
        &["jobs -l: Stopped", "rc=0"],
    ));
    c.push(tmux_case(
        "Ctrl-C to a command that traps SIGINT: received once",
        flow_ctrl_c_trapped,
        &["count=1", "rc=0"],
    ));
    c.push(tmux_case(
        "Ctrl-C to a command that does not handle it: 130",
        flow_ctrl_c_kills,
        &["rc=130", "ended at once"],
    ));
    c.push(tmux_case(
        "stdio is the terminal, the command is in the foreground, stty unchanged",
        flow_tty,
        &["stty -g unchanged by the run"],
    ));
    c.push(tmux_case(
        "the command reads a line typed at the terminal",
        flow_read_tty,
        &["got:typed text", "rc=0"],
    ));
    c.push(tmux_case(
        "a background job reading the terminal stops (SIGTTIN); fg lets it read",
        flow_background_read,
        &[
            "the background job stopped on reading the terminal",
            "got:typed text",
            "rc=0",
        ],
    ));

    // --- stdin, stdout, stderr, descriptors.
    let mut binary = Vec::new();
    for _ in 0..16 {
        binary.extend(0u8..=255);
    }
    binary.extend_from_slice(b"\0\0\n\r\n\xff");
    c.push(case(
        "stdio",
        "binary stdin with NUL bytes, echoed by cat",
        spec(["cat"])
            .stdin(Input::Bytes(Arc::new(binary.clone())))
            .check(Arc::new(move |_, bare, _| {
                if bare.stdout == binary {
                    Ok(())
                } else {
                    Err("bare: cat did not echo its input".into())
                }
            })),
    ));
    c.push(case(
        "stdio",
        "stdin closed",
        sh("if [ -e /proc/$$/fd/0 ]; then echo stdin open; else echo stdin closed; fi; cat; echo \"cat: $?\"")
            .stdin(Input::Closed)
            .out("stdin closed\ncat: 1\n"),
    ));
    c.push(case(
        "stdio",
        "stdin from /dev/null",
        sh("cat; echo \"cat: $?\"; wc -c").out("cat: 0\n0\n"),
    ));
    c.push(case(
        "stdio",
        "stdout closed",
        sh("echo to stdout; echo \"echo: $?\" >&2; ls /proc/$$/fd >&2").stdout(Output::Closed),
    ));
    c.push(case(
        "stdio",
        "stderr closed",
        sh("echo to stderr >&2; echo \"echo: $?\"; ls /proc/$$/fd").stderr(Errput::Closed),
    ));
    c.push(case(
        "stdio",
        "stdout and stderr on one pipe keep their order",
        sh("echo 1; echo 2 >&2; echo 3; echo 4 >&2; printf 5")
            .stderr(Errput::Merged)
            .out("1\n2\n3\n4\n5"),
    ));
    c.push(case(
        "stdio",
        "stderr without a final newline",
        sh("printf 'no final newline' >&2"),
    ));
    c.push(case(
        "stdio",
        "open descriptors: the inherited ones, nothing of guard's",
        spec(["ls", "/proc/self/fd"]),
    ));
    let mut fd5 = sh("echo through fd 5 >&5; ls /proc/$$/fd").check(Arc::new(
        |_: &Ctx, bare: &Outcome, _: &Outcome| {
            let s = String::from_utf8_lossy(&bare.stdout);
            if s.starts_with("through fd 5\n") && s.lines().any(|l| l == "5") {
                Ok(())
            } else {
                Err(format!("bare: {}", show(&bare.stdout)))
            }
        },
    ));
    fd5.fd5 = true;
    c.push(case(
        "stdio",
        "an inherited descriptor 5 passes through",
        fd5,
    ));

    // --- Process trees.
    c.push(case(
        "process tree",
        "exec from a thread that is not the leader (C, pthreads)",
        spec([bin("thread_exec")])
            .out("main thread starts a thread that execs\nexec from a thread that is not the leader\n")
            .stats(2, Some(0)),
    ));
    c.push(
        case(
            "process tree",
            "exec from a Python thread (os.execv)",
            spec([
                "/usr/bin/python3",
                "-c",
                "import os, threading\n\
                 print('python main thread', flush=True)\n\
                 t = threading.Thread(target=lambda: os.execv('/bin/echo', ['echo', 'from a python thread']))\n\
                 t.start()\n\
                 t.join()\n",
            ])
            .out("python main thread\nfrom a python thread\n")
            .stats(2, Some(0)),
        )
        .needs(&["/usr/bin/python3"]),
    );
    c.push(case(
        "process tree",
        "vfork + execve",
        spec([bin("spawn"), "vfork".into()])
            .status(8)
            .out("child started by vfork\nvfork: child exited 7\n")
            .stats(2, Some(1)),
    ));
    c.push(case(
        "process tree",
        "posix_spawn",
        spec([bin("spawn"), "posix_spawn".into()])
            .status(8)
            .out("child started by posix_spawn\nposix_spawn: child exited 7\n")
            .stats(2, Some(1)),
    ));
    c.push(case(
        "process tree",
        "20 zombies reaped by a parent that waits only at the end",
        spec([bin("zombies"), "wait".into()])
            .out("20 of 20 children are zombies before their parent waits\nreaped 20, their statuses sum to 190\n")
            .after(children_gone())
            .check(expect_after("20 children: 20 gone, 0 zombie, 0 alive, 0 traced")),
    ));
    c.push(case(
        "process tree",
        "20 zombies left behind by a parent that exits without waiting",
        spec([bin("zombies"), "nowait".into()])
            .out("20 of 20 children are zombies before their parent waits\nthe parent exits without waiting\n")
            .after(children_gone()),
    ));
    c.push(case(
        "process tree",
        "an orphan finishes its work after its parent exited",
        sh("(sleep 0.3; echo orphan done > orphan.txt) & echo parent exits")
            .out("parent exits\n")
            .after(orphan_result())
            .check(expect_after("orphan done\n")),
    ));
    c.push(case(
        "process tree",
        "a setsid daemon keeps running, untraced; guard returns at once",
        sh("setsid sleep 4 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid; echo started")
            .out("started\n")
            .after(daemon_state())
            .check(expect_after("daemon sleep running, TracerPid 0"))
            .check(expect_prompt(Duration::from_millis(2500))),
    ));
    c.push(case(
        "process tree",
        "a double-fork daemon keeps running, untraced; the status is the command's",
        sh("( setsid sh -c 'echo $$ > daemon.pid; exec sleep 4' </dev/null >/dev/null 2>&1 & ); exit 5")
            .status(5)
            .after(daemon_state())
            .check(expect_after("daemon sleep running, TracerPid 0"))
            .check(expect_prompt(Duration::from_millis(2500))),
    ));
    c.push(case(
        "process tree",
        "a background job left in the process group runs on untraced",
        sh("sleep 3 </dev/null >/dev/null 2>&1 & echo left")
            .out("left\n")
            .check(Arc::new(|_, _, guard| {
                if guard.leftover == ["sleep (TracerPid 0)"] {
                    Ok(())
                } else {
                    Err(format!(
                        "guard: left {:?} (want the sleep, untraced)",
                        guard.leftover
                    ))
                }
            }))
            .check(expect_prompt(Duration::from_millis(2500))),
    ));
    c.push(case(
        "process tree",
        "exec replaces the shell (same pid)",
        sh("echo before; exec sh -c '[ $$ = \"$1\" ] && echo same pid after exec' sh $$")
            .out("before\nsame pid after exec\n")
            .stats(2, Some(0)),
    ));

    // --- Attributes the command inherits.
    c.push(case(
        "attributes",
        "argv: newline, empty, spaces, glob, dash, non-UTF-8",
        spec(vec![
            OsString::from("sh"),
            "-c".into(),
            "printf '[%s]\\n' \"$@\"".into(),
            "sh".into(),
            "a\nb".into(),
            "".into(),
            "  spaced  ".into(),
            "*".into(),
            "--".into(),
            "-".into(),
            OsString::from_vec(b"\xff\xfe non-utf8 \xc3".to_vec()),
        ])
        .check(expect_stdout_bytes(
            b"[a\nb]\n[]\n[  spaced  ]\n[*]\n[--]\n[-]\n[\xff\xfe non-utf8 \xc3]\n",
        )),
    ));
    let mut many: Vec<OsString> = vec!["sh".into(), "-c".into(), "echo $#".into(), "sh".into()];
    many.extend((0..50_000).map(|i| OsString::from(format!("argument-{i}"))));
    c.push(case(
        "attributes",
        "argv of 50,000 arguments",
        spec(many).out("50000\n"),
    ));
    let mut env = spec(["sh", "-c", "env -0 | sort -z"]);
    env.env = vec![
        ("GUARD_T_NEWLINE".into(), "a\nb".into()),
        ("GUARD_T_EMPTY".into(), "".into()),
        ("GUARD_T_SPACES".into(), "  x  ".into()),
        (
            "GUARD_T_BYTES".into(),
            OsString::from_vec(b"\xff\x01value".to_vec()),
        ),
    ];
    c.push(case(
        "attributes",
        "environment passed unchanged (env -0 | sort -z)",
        env.check(Arc::new(|_, bare, _| {
            if find(&bare.stdout, b"GUARD_T_BYTES=\xff\x01value\0").is_some() {
                Ok(())
            } else {
                Err("bare: the test's variables are not in env's output".into())
            }
        })),
    ));
    let mut cwd = sh("pwd; umask; touch f; stat -c %a f").out_suffix("\n0027\n640\n");
    cwd.cwd = Some("dir with spaces é");
    cwd.umask = Some(0o027);
    c.push(case(
        "attributes",
        "working directory (spaces, non-ASCII) and umask 027",
        cwd,
    ));
    // guard's seccomp filter must not switch on the kernel's speculation mitigations where
    // they are in "seccomp" mode (SSBD, STIBP: slower code for the whole build). Telling only
    // on such hosts (`seccomp` in /sys/devices/system/cpu/vulnerabilities/spec_store_bypass or
    // spectre_v2); elsewhere both runs print the same lines whatever guard does.
    c.push(case(
        "attributes",
        "speculation mitigations of the process (/proc/self/status)",
        sh("grep -E '^Speculation' /proc/self/status"),
    ));
    let mut limits = spec(["sh", "-c", "prlimit --pid $$ --output RESOURCE,SOFT,HARD"]);
    limits.nofile = Some((1000, 2000));
    c.push(
        case(
            "attributes",
            "resource limits (prlimit), with RLIMIT_NOFILE set to 1000/2000",
            limits.check(Arc::new(|_, bare, _| {
                let s = String::from_utf8_lossy(&bare.stdout);
                if s.lines().any(|l| {
                    l.starts_with("NOFILE") && l.split_whitespace().skip(1).eq(["1000", "2000"])
                }) {
                    Ok(())
                } else {
                    Err(format!(
                        "bare: NOFILE 1000 2000 not in {}",
                        show(&bare.stdout)
                    ))
                }
            })),
        )
        .needs(&["prlimit"]),
    );
    let mut group = sh("set -- $(cut -d')' -f2 /proc/$$/stat)\n\
                        [ \"$3\" = \"$LAUNCHER_PGID\" ] && echo same process group as the launcher\n\
                        [ \"$4\" = \"$LAUNCHER_SID\" ] && echo same session as the launcher\n\
                        [ \"$3\" = $$ ] && echo group leader\n\
                        echo done")
    .shared_group()
    .out("same process group as the launcher\nsame session as the launcher\ndone\n");
    group.env = vec![
        ("LAUNCHER_PGID".into(), w.launcher_pgid.to_string().into()),
        ("LAUNCHER_SID".into(), w.launcher_sid.to_string().into()),
    ];
    c.push(case(
        "attributes",
        "process group and session: the launcher's",
        group,
    ));
    let mut masks = spec(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    masks.ignore = vec![libc::SIGINT, libc::SIGQUIT];
    masks.block = vec![libc::SIGUSR2];
    c.push(case(
        "attributes",
        "signal dispositions and mask inherited (INT, QUIT ignored as for `cmd &`; USR2 blocked)",
        masks.check(Arc::new(|_, bare, _| {
            if mask(&bare.stdout, "SigIgn:") & 0x6 == 0x6
                && mask(&bare.stdout, "SigBlk:") & 0x800 != 0
            {
                Ok(())
            } else {
                Err(format!("bare: unexpected masks {}", show(&bare.stdout)))
            }
        })),
    ));
    let mut pipe_ignored = sh(
        "grep -E '^SigIgn' /proc/$$/status; yes | head -c 0; echo \"status of the pipeline: $?\"",
    );
    pipe_ignored.ignore = vec![libc::SIGPIPE];
    c.push(case(
        "attributes",
        "SIGPIPE ignored by the launcher stays ignored",
        pipe_ignored.check(Arc::new(|_, bare, _| {
            if mask(&bare.stdout, "SigIgn:") & 0x1000 != 0 {
                Ok(())
            } else {
                Err(format!("bare: SIGPIPE not ignored: {}", show(&bare.stdout)))
            }
        })),
    ));
    c.push(case(
        "attributes",
        "command not found (sh): 127",
        sh("no-such-command-anywhere-xyz").status(127),
    ));
    c.push(case(
        "attributes",
        "not executable (sh): 126",
        sh(&format!("{}", w.not_exec.display())).status(126),
    ));
    c.push(case(
        "attributes",
        "command not found (guard run -- it): 127",
        spec(["no-such-command-anywhere-xyz"])
            .status(127)
            .check(guard_says("guard: cannot run no-such-command-anywhere-xyz")),
    ));
    c.push(case(
        "attributes",
        "not executable (guard run -- it): 126",
        spec([w.not_exec.display().to_string()])
            .status(126)
            .check(guard_says("guard: cannot run")),
    ));
    c.push(case(
        "attributes",
        "a directory given as the command: 126",
        spec(["/tmp"]).status(126),
    ));

    // --- Programs that use ptrace themselves (documented: a process has one tracer).
    c.push(
        case(
            "ptrace users",
            "strace -f under guard: PTRACE_TRACEME refused, strace exits 1 (documented)",
            spec(["strace", "-f", "-o", "/dev/null", "true"])
                .documents_a_difference()
                .check(Arc::new(|_, bare, guard| {
                    let err = String::from_utf8_lossy(&guard.stderr);
                    if bare.status != Some(0) {
                        return Err(format!("bare strace: status {:?}", bare.status));
                    }
                    if guard.status != Some(1)
                        || !err.contains("strace: ptrace(PTRACE_TRACEME, ...): Operation not permitted")
                    {
                        return Err(format!(
                            "guard: status {:?}, stderr {} (want 1 and PTRACE_TRACEME: Operation not permitted)",
                            guard.status,
                            show(&guard.stderr)
                        ));
                    }
                    if guard.stats("execs") != Some(1) {
                        return Err(format!(
                            "guard: {:?} execs recorded (want 1: strace; `true` never runs)",
                            guard.stats("execs")
                        ));
                    }
                    Ok(())
                })),
        )
        .needs(&["strace"]),
    );
    c.push(
        case(
            "ptrace users",
            "gdb -ex run under guard: the inferior cannot be traced, gdb exits 1 (documented)",
            spec(["gdb", "-nx", "--batch", "-ex", "run", "--args", "/bin/true"])
                .documents_a_difference()
                .check(Arc::new(|_, bare, guard| {
                    let out = String::from_utf8_lossy(&bare.stdout);
                    if bare.status != Some(0) || !out.contains("exited normally") {
                        return Err(format!(
                            "bare gdb: status {:?}, stdout {}",
                            bare.status,
                            show(&bare.stdout)
                        ));
                    }
                    let err = String::from_utf8_lossy(&guard.stderr);
                    if guard.status != Some(1)
                        || !err.contains("warning: ptrace: Operation not permitted")
                        || !err.contains("During startup program exited with code 127.")
                    {
                        return Err(format!(
                            "guard: status {:?}, stderr {} (want 1, `warning: ptrace: Operation not permitted`, `During startup program exited with code 127.`)",
                            guard.status,
                            show(&guard.stderr)
                        ));
                    }
                    Ok(())
                })),
        )
        .needs(&["gdb"]),
    );
    c.push(
        custom(
            "ptrace users",
            "strace -p of a process outside guard's tree works",
            Arc::new(strace_outside),
        )
        .needs(&["strace"])
        .needs_root(),
    );

    // --- Privileges: set-user-ID (sudo) and file capabilities (ping).
    c.push(
        case(
            "privileges",
            "root: sudo -n id -u",
            spec(["sudo", "-n", "id", "-u"]).out("0\n").stats(2, None),
        )
        .needs(&["sudo"])
        .needs_root(),
    );
    c.push(
        case(
            "privileges",
            "root: ping -c 1 127.0.0.1",
            spec(["ping", "-c", "1", "-W", "2", "127.0.0.1"])
                .norm(norm_ping)
                .status(0),
        )
        .needs(&["ping"])
        .needs_root(),
    );
    c.push(
        case(
            "privileges",
            "root: setpriv drops to nobody inside the traced tree",
            spec([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "sh",
                "-c",
                "id -u; id -g",
            ])
            .out("65534\n65534\n"),
        )
        .needs(&["setpriv"])
        .needs_root(),
    );
    c.push(
        case(
            "privileges",
            "nobody: an ordinary command",
            sh("id -u; umask; echo $((6*7))")
                .nobody()
                .out("65534\n0022\n42\n"),
        )
        .needs(&["setpriv"])
        .needs_root(),
    );
    c.push(
        case(
            "privileges",
            "nobody: sudo -n true runs without its set-user-ID bit (documented)",
            spec(["sudo", "-n", "true"])
                .nobody()
                .documents_a_difference()
                .check(Arc::new(|_, bare, guard| {
                    let nnp = "sudo: The \"no new privileges\" flag is set, which prevents sudo from running as root.";
                    let bare_err = String::from_utf8_lossy(&bare.stderr);
                    let err = String::from_utf8_lossy(&guard.stderr);
                    if bare.status != Some(1) || bare_err.contains(nnp) {
                        return Err(format!("bare sudo as nobody: status {:?}, stderr {}", bare.status, show(&bare.stderr)));
                    }
                    if guard.status != Some(1) || !err.contains(nnp) {
                        return Err(format!(
                            "guard: status {:?}, stderr {} (want 1 and {nnp:?})",
                            guard.status,
                            show(&guard.stderr)
                        ));
                    }
                    Ok(())
                })),
        )
        .needs(&["sudo", "setpriv"])
        .needs_root(),
    );
    c.push(
        case(
            "privileges",
            "nobody: ping runs without its file capability (documented)",
            spec(["ping", "-c", "1", "-W", "2", "127.0.0.1"])
                .nobody()
                .documents_a_difference()
                .check(Arc::new(|_, bare, guard| {
                    let err = String::from_utf8_lossy(&guard.stderr);
                    if bare.status != Some(0) {
                        return Err(format!("bare ping as nobody: status {:?}, stderr {}", bare.status, show(&bare.stderr)));
                    }
                    if guard.status != Some(2)
                        || !err.contains("ping: socket: Operation not permitted")
                        || !err.contains("ping: => missing cap_net_raw+p capability or setuid?")
                    {
                        return Err(format!(
                            "guard: status {:?}, stderr {} (want 2 and `ping: socket: Operation not permitted`)",
                            guard.status,
                            show(&guard.stderr)
                        ));
                    }
                    Ok(())
                })),
        )
        .needs(&["ping", "setpriv"])
        .needs_root(),
    );
    c
}

/// A signal mask line (`SigIgn:`, `SigBlk:`) of `/proc/PID/status` as printed.
fn mask(text: &[u8], name: &str) -> u64 {
    String::from_utf8_lossy(text)
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0)
}

fn guard_says(line: &'static str) -> Check {
    Arc::new(move |_, _, guard| {
        if guard.guard_lines.iter().any(|l| l.starts_with(line)) {
            Ok(())
        } else {
            Err(format!(
                "guard did not say {line:?}: {:?}",
                guard.guard_lines
            ))
        }
    })
}

impl Spec {
    /// stdout ends with `want` (bare and guarded alike).
    fn out_suffix(self, want: &'static str) -> Spec {
        self.check(Arc::new(move |_, bare, guard| {
            for o in [bare, guard] {
                if !o.stdout.ends_with(want.as_bytes()) {
                    return Err(format!(
                        "{} stdout {} does not end with {}",
                        o.label(),
                        show(&o.stdout),
                        show(want.as_bytes())
                    ));
                }
            }
            Ok(())
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Running the table.

struct Verdict {
    group: &'static str,
    name: String,
    diffs: Vec<String>,
    skipped: Option<String>,
    took: Duration,
}

fn slug(i: usize, name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut s = format!("{i:03}-{s}");
    s.truncate(60);
    s
}

fn run_case(world: &Arc<World>, i: usize, case: &Case) -> Verdict {
    let ctx = Ctx {
        world: world.clone(),
        dir: world.root.join("cases").join(slug(i, &case.name)),
        slug: slug(i, &case.name),
    };
    let start = Instant::now();
    let mut verdict = Verdict {
        group: case.group,
        name: case.name.clone(),
        diffs: Vec::new(),
        skipped: None,
        took: Duration::ZERO,
    };
    let mut missing: Vec<String> = case
        .needs
        .iter()
        .filter(|t| !installed(t))
        .map(|t| format!("{t} is not installed"))
        .collect();
    if case.root && !is_root() {
        missing.push("it needs root".into());
    }
    if !missing.is_empty() {
        if std::env::var_os(SKIP_ENV).is_some() && !common::strict() {
            common::skip(
                &format!("guard_run_is_transparent: {}", case.name),
                &missing.join(", "),
                "the package of each program named (scripts/test.sh installs them), or root",
            );
            verdict.skipped = Some(missing.join(", "));
        } else {
            verdict.diffs = missing
                .into_iter()
                .map(|m| format!("{m} (set {SKIP_ENV}=1 to skip instead)"))
                .collect();
        }
        return verdict;
    }
    if !world.setup_errors.is_empty() {
        verdict.diffs.extend(world.setup_errors.iter().cloned());
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &case.what {
        What::Compare(spec) => {
            let bare = execute(&ctx, spec, false);
            let guard = execute(&ctx, spec, true);
            let mut d = compare(&ctx, spec, &bare, &guard);
            if !d.is_empty() {
                d.push(format!(
                    "(bare took {:?}, guard {:?}; guard said {:?})",
                    bare.elapsed, guard.elapsed, guard.guard_lines
                ));
            }
            d
        }
        What::Custom(f) => f(&ctx),
    }));
    match result {
        Ok(d) => verdict.diffs.extend(d),
        Err(p) => verdict.diffs.push(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
    verdict.took = start.elapsed();
    verdict
}

#[test]
fn guard_run_is_transparent() {
    let started = Instant::now();
    let world = Arc::new(setup());
    let table = cases(&world);
    assert!(table.len() >= 40, "only {} cases", table.len());
    // GUARD_TRANSPARENCY_ONLY=text runs the cases whose name contains it (when working on one).
    let only = std::env::var("GUARD_TRANSPARENCY_ONLY").ok();
    let mut order: Vec<usize> = (0..table.len())
        .filter(|&i| {
            only.as_ref()
                .is_none_or(|o| table[i].name.contains(o.as_str()))
        })
        .collect();
    order.sort_by_key(|&i| !table[i].heavy);
    let queue = Mutex::new(order.into_iter().collect::<VecDeque<usize>>());
    let verdicts: Mutex<Vec<(usize, Verdict)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let Some(i) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let v = run_case(&world, i, &table[i]);
                eprintln!(
                    "{} {} / {} ({:.1?})",
                    if v.skipped.is_some() {
                        "skip"
                    } else if v.diffs.is_empty() {
                        "ok  "
                    } else {
                        "FAIL"
                    },
                    v.group,
                    v.name,
                    v.took
                );
                verdicts.lock().unwrap().push((i, v));
            });
        }
    });
    let mut verdicts = verdicts.into_inner().unwrap();
    verdicts.sort_by_key(|(i, _)| *i);
    let skipped: Vec<&Verdict> = verdicts
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v.skipped.is_some())
        .collect();
    let failed: Vec<&Verdict> = verdicts
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v.skipped.is_none() && !v.diffs.is_empty())
        .collect();
    let tried = verdicts.len() - skipped.len();
    let passed = tried - failed.len();
    let mut line = format!("transparency: {tried} cases tried, {passed} passed");
    if !skipped.is_empty() {
        line.push_str(&format!(
            " ({} skipped: {})",
            skipped.len(),
            skipped
                .iter()
                .map(|v| format!("{} ({})", v.name, v.skipped.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    // Straight to the descriptor: the test harness captures `println!`, and this line is meant
    // to be seen on every run.
    let _ = writeln!(std::io::stderr(), "{line} (in {:.1?})", started.elapsed());
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&world.root);
        return;
    }
    let mut msg = format!(
        "{line}\n{} case(s) where guard was not transparent:\n",
        failed.len()
    );
    for v in &failed {
        msg.push_str(&format!("\n* {} / {}\n", v.group, v.name));
        for d in &v.diffs {
            msg.push_str(&format!("    - {}\n", d.replace('\n', "\n      ")));
        }
    }
    msg.push_str(&format!(
        "\n(case directories and reports kept in {})",
        world.root.display()
    ));
    panic!("{msg}");
}
