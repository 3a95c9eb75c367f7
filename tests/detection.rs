//! Detection depth (issue 5): web servers recognised by what they are, not what they are called
//! (a renamed copy of nginx, a symlink, a spoofed argv[0], an ELF run from a memfd); servers run
//! by interpreters and multi-call binaries in their many spellings; failed exec attempts; and
//! `--mode enforce`, which refuses the exec before the server runs while the build goes on.
//!
//! Everything runs real programs from the Debian packages the test command installs (nginx,
//! busybox, php, python3), under `guard run`, each bounded in time.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TempDir;
use serde_json::Value;

const NGINX: &str = "/usr/sbin/nginx";
const BUSYBOX: &str = "/usr/bin/busybox";

/// A directory of its own for one test (mode 0755, for the cases run as nobody), removed at the
/// end (kept when GUARD_TEST_KEEP is set).
fn temp(tag: &str) -> TempDir {
    let d = TempDir::new(&format!("detect-{tag}"));
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
    report: Value,
    trace: Vec<Value>,
}

impl Ran {
    fn findings(&self) -> &Vec<Value> {
        self.report["findings"].as_array().unwrap()
    }
    fn stat(&self, name: &str) -> u64 {
        self.report["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats.{name} in {}", self.report["stats"]))
    }
    fn evidence(&self, i: usize) -> String {
        self.findings()[i]["evidence"].to_string()
    }
    fn context(&self) -> String {
        format!(
            "status {}\nstdout: {}\nstderr: {}\nreport: {}",
            self.status,
            self.stdout,
            self.stderr,
            serde_json::to_string_pretty(&self.report).unwrap()
        )
    }
}

/// `guard run ARGS -- sh -c SCRIPT` in `dir`, killed after 60 s.
fn guard_sh(dir: &TempDir, args: &[&str], script: &str) -> Ran {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let report = dir.join(format!(
        "report-{}.json",
        RUN.fetch_add(1, Ordering::SeqCst)
    ));
    let trace = dir.join("trace.jsonl");
    let o = common::guard(["run", "--report"])
        .arg(&report)
        .arg("--trace")
        .arg(&trace)
        .args(args)
        .args(["--", "sh", "-c", script])
        .cwd(dir.path())
        .bound(Duration::from_secs(60))
        .run();
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap_or_default()).unwrap_or(Value::Null);
    let trace = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ran {
        status: o.code.unwrap_or(-1),
        stdout: o.stdout,
        stderr: o.stderr,
        report,
        trace,
    }
}

/// Whether `path` is installed: a counted skip locally, a failure under CI, when not.
fn need(path: &str) -> bool {
    common::need_path(&common::test_name(), path, common::package_of(path))
}

fn copy_exec(from: &str, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The one finding of a run: by content, with the evidence naming nginx.
fn assert_nginx_by_content(r: &Ran, exe_contains: &str) {
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    let f = &r.findings()[0];
    let evidence = r.evidence(0);
    assert!(
        evidence.contains("content: ") && evidence.contains(" is nginx"),
        "{}",
        r.context()
    );
    let exe = f["process"]["exe"].as_str().unwrap_or_default();
    assert!(exe.contains(exe_contains), "exe {exe}: {}", r.context());
    assert_eq!(r.status, 3, "{}", r.context());
    assert!(
        r.stderr.contains("nginx version: nginx/"),
        "{}",
        r.context()
    );
}

#[test]
fn renamed_copy_of_nginx_is_detected_by_content() {
    if !need(NGINX) {
        return;
    }
    let d = temp("copy");
    copy_exec(NGINX, &d.join("build-helper"));
    let r = guard_sh(&d, &[], "./build-helper -v");
    assert_nginx_by_content(&r, "/build-helper");
    // The name says nothing: only the content matched.
    assert!(!r.evidence(0).contains("name: "), "{}", r.context());
}

#[test]
fn innocent_symlink_to_nginx_is_detected() {
    if !need(NGINX) {
        return;
    }
    let d = temp("link");
    std::os::unix::fs::symlink(NGINX, d.join("lint")).unwrap();
    let r = guard_sh(&d, &[], "./lint -v");
    assert_nginx_by_content(&r, "nginx");
    assert_eq!(r.findings()[0]["process"]["argv"][0], "./lint");
}

#[test]
fn spoofed_argv0_is_detected() {
    if !need(NGINX) {
        return;
    }
    let d = temp("argv0");
    copy_exec(NGINX, &d.join("tool"));
    let r = guard_sh(&d, &[], "exec bash -c 'exec -a make ./tool -v'");
    assert_nginx_by_content(&r, "/tool");
    assert_eq!(
        r.findings()[0]["process"]["argv"][0],
        "make",
        "{}",
        r.context()
    );
}

#[test]
fn nginx_run_from_a_memfd_is_detected() {
    if !need(NGINX) || !need("/usr/bin/python3") {
        return;
    }
    let d = temp("memfd");
    // fexecve (execveat with AT_EMPTY_PATH), and execve of /proc/self/fd/N.
    for how in [
        "os.execve(fd, ['helper', '-v'], {})",
        "os.execv('/proc/self/fd/%d' % fd, ['helper', '-v'])",
    ] {
        let script = format!(
            "exec /usr/bin/python3 -c \"import os; fd = os.memfd_create('x', 0); os.write(fd, open('{NGINX}', 'rb').read()); {how}\""
        );
        let r = guard_sh(&d, &[], &script);
        assert_nginx_by_content(&r, "memfd:x");
    }
}

#[test]
fn executing_one_binary_a_thousand_times_reads_it_once() {
    if !need(NGINX) {
        return;
    }
    let d = temp("cache");
    copy_exec(NGINX, &d.join("build-helper"));
    let r = guard_sh(
        &d,
        &[],
        "i=0; while [ $i -lt 1000 ]; do ./build-helper -v 2>/dev/null; i=$((i+1)); done",
    );
    // One finding, the 999 repeats folded by the recipe's times limits (noise control).
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    assert_eq!(r.findings()[0]["count"], 1000, "{}", r.context());
    assert_eq!(r.stat("suppressed"), 999);
    assert!(r.stat("execs") >= 1001, "{}", r.context());
    // Read once: the trace holds one fingerprint record for it, and the report's stats count
    // every file read (the copy and the shell).
    let reads: Vec<&Value> = r
        .trace
        .iter()
        .filter(|l| l["type"] == "fingerprint")
        .collect();
    let of_copy = reads
        .iter()
        .filter(|l| l["path"].as_str().unwrap_or("").ends_with("/build-helper"))
        .count();
    assert_eq!(of_copy, 1, "{reads:?}");
    assert_eq!(r.stat("fingerprint_reads"), reads.len() as u64);
    assert!(r.stat("fingerprint_reads") <= 3, "{}", r.report["stats"]);
    assert!(r.stat("fingerprint_bytes") > 0);
}

#[test]
fn repeated_nginx_config_tests_make_one_finding() {
    if !need(NGINX) {
        return;
    }
    let d = temp("repeat");
    let conf = d.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {}/nginx.pid;\nerror_log {}/error.log;\nevents {{}}\nhttp {{ access_log off; }}\n",
            d.path().display(),
            d.path().display()
        ),
    )
    .unwrap();
    let script = format!(
        "i=0; while [ $i -lt 2000 ]; do {NGINX} -t -q -p {dir} -c {conf} -e {dir}/error.log || exit 9; i=$((i+1)); done",
        dir = d.path().display(),
        conf = conf.display()
    );
    let r = guard_sh(&d, &[], &script);
    assert_eq!(r.status, 3, "{}", r.context());
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    assert_eq!(r.findings()[0]["count"], 2000);
    assert_eq!(r.stat("suppressed"), 1999);
}

/// (label, script) of interpreter and multi-call forms the machine can run; each starts a
/// server that is stopped by `timeout` after a moment.
fn interpreter_forms(d: &TempDir) -> Vec<(&'static str, String)> {
    let mut forms = Vec::new();
    if need("/usr/bin/python3") {
        let py = "/usr/bin/python3";
        forms.push((
            "python3 -m http.server",
            format!("{py} -m http.server 0 -b 127.0.0.1"),
        ));
        forms.push((
            "python3 -mhttp.server",
            format!("{py} -mhttp.server 0 -b 127.0.0.1"),
        ));
        forms.push((
            "python3 -Bm http.server",
            format!("{py} -Bm http.server 0 -b 127.0.0.1"),
        ));
        forms.push((
            "python3 -X 'a b' -m http.server",
            format!("{py} -X 'a b' -m http.server 0 -b 127.0.0.1"),
        ));
        forms.push((
            "python3 -m runpy http.server",
            format!("{py} -m runpy http.server 0 -b 127.0.0.1"),
        ));
        forms.push((
            "python3 -c (http.server code)",
            format!("{py} -c 'import http.server as h, sys; sys.argv[1:] = [\"0\", \"-b\", \"127.0.0.1\"]; h.test(HandlerClass=h.SimpleHTTPRequestHandler, port=0, bind=\"127.0.0.1\")'"),
        ));
        copy_exec("/usr/bin/python3", &d.join("interp"));
        forms.push((
            "renamed python -m http.server",
            format!(
                "{} -m http.server 0 -b 127.0.0.1",
                d.join("interp").display()
            ),
        ));
    }
    if need("/usr/bin/php") {
        forms.push(("php -S", "php -S 127.0.0.1:0 -t .".to_string()));
        forms.push(("php --server", "php -n --server 127.0.0.1:0".to_string()));
    }
    if need(BUSYBOX) {
        forms.push((
            "busybox httpd",
            format!("{BUSYBOX} httpd -f -p 127.0.0.1:0"),
        ));
        forms.push((
            "exec -a httpd busybox",
            format!("bash -c 'exec -a httpd {BUSYBOX} -f -p 127.0.0.1:0'"),
        ));
        std::os::unix::fs::symlink(BUSYBOX, d.join("httpd")).unwrap();
        forms.push((
            "busybox linked as httpd",
            format!("{} -f -p 127.0.0.1:0", d.join("httpd").display()),
        ));
    }
    if need("/usr/bin/ruby") {
        forms.push((
            "ruby -run -e httpd",
            "ruby -run -e httpd -- --bind-address=127.0.0.1 --port=0 .".to_string(),
        ));
        forms.push((
            "ruby -rwebrick",
            "ruby -rwebrick -e 'WEBrick::HTTPServer.new(BindAddress: \"127.0.0.1\", Port: 0).start'"
                .to_string(),
        ));
        forms.push((
            "ruby -e (WEBrick code)",
            "ruby -e 'require \"webrick\"; WEBrick::HTTPServer.new(BindAddress: \"127.0.0.1\", Port: 0).start'"
                .to_string(),
        ));
    }
    forms
}

#[test]
fn interpreter_and_multicall_forms_are_detected() {
    let d = temp("forms");
    let forms = interpreter_forms(&d);
    assert!(
        forms.len() >= 3,
        "too few interpreters installed: {}",
        forms.len()
    );
    for (label, cmd) in &forms {
        let r = guard_sh(&d, &[], &format!("timeout -s INT 1 {cmd}; true"));
        assert_eq!(r.findings().len(), 1, "{label}: {}", r.context());
        assert!(
            r.evidence(0).contains("arguments: ") || r.evidence(0).contains("name: "),
            "{label}: {}",
            r.context()
        );
        assert_eq!(r.status, 3, "{label}: {}", r.context());
    }
}

#[test]
fn enforce_refuses_each_form_and_the_build_goes_on() {
    if !need(NGINX) {
        return;
    }
    let d = temp("enforce");
    copy_exec(NGINX, &d.join("build-helper"));
    std::os::unix::fs::symlink(NGINX, d.join("lint")).unwrap();
    let mut forms: Vec<(&str, String)> = vec![
        (
            "nginx",
            format!("{NGINX} -g 'daemon off;' -p . -c /dev/null"),
        ),
        ("renamed nginx", "./build-helper -v".into()),
        ("symlinked nginx", "./lint -v".into()),
        (
            "argv0-spoofed nginx",
            "bash -c 'exec -a make ./build-helper -v'".into(),
        ),
    ];
    if Path::new("/usr/bin/python3").exists() {
        forms.push((
            "nginx from a memfd",
            format!("/usr/bin/python3 -c \"import os; fd = os.memfd_create('x', 0); os.write(fd, open('{NGINX}', 'rb').read()); os.execve(fd, ['helper', '-v'], {{}})\""),
        ));
    }
    forms.extend(interpreter_forms(&d));
    for (label, cmd) in &forms {
        let r = guard_sh(
            &d,
            &["--mode", "enforce"],
            &format!("timeout 20 {cmd}; echo \"continued $?\"; echo after > after.txt"),
        );
        // Never started: the exec was refused (or the process killed before it ran): no
        // version banner, no server; the script went on.
        assert!(r.stdout.contains("continued "), "{label}: {}", r.context());
        assert!(
            !r.stderr.contains("nginx version: nginx/"),
            "{label}: {}",
            r.context()
        );
        assert!(d.join("after.txt").exists(), "{label}: {}", r.context());
        let _ = std::fs::remove_file(d.join("after.txt"));
        assert!(!r.findings().is_empty(), "{label}: {}", r.context());
        assert!(
            r.findings().iter().all(|f| f["blocked"] == true),
            "{label}: {}",
            r.context()
        );
        assert!(r.stat("blocked") >= 1, "{label}");
        assert!(r.stderr.contains("BLOCKED"), "{label}: {}", r.context());
        // Failing findings still fail the run.
        assert_eq!(r.status, 3, "{label}: {}", r.context());
    }
}

#[test]
fn enforce_gives_the_caller_eacces_and_leaves_other_execs_alone() {
    if !need(NGINX) {
        return;
    }
    let d = temp("eacces");
    copy_exec(NGINX, &d.join("srv"));
    let probe = "import os, errno\ntry:\n    os.execv('./srv', ['srv', '-v'])\nexcept OSError as e:\n    print('errno', errno.errorcode[e.errno])\n";
    std::fs::write(d.join("probe.py"), probe).unwrap();
    let r = guard_sh(
        &d,
        &["--mode", "enforce"],
        "/usr/bin/python3 probe.py; echo hello | tr a-z A-Z; ls probe.py",
    );
    assert!(r.stdout.contains("errno EACCES"), "{}", r.context());
    assert!(
        r.stdout.contains("HELLO") && r.stdout.contains("probe.py"),
        "{}",
        r.context()
    );
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    assert_eq!(r.findings()[0]["attempt"]["error"], "EACCES");
    assert_eq!(r.stat("blocked"), 1);
}

#[test]
fn a_refused_attempt_is_recorded_with_its_caller() {
    if !need(NGINX) || !need("/usr/bin/python3") || !need("/usr/bin/setpriv") {
        return;
    }
    let d = temp("caller");
    copy_exec(NGINX, &d.join("srv"));
    // The same exec from the main thread, then from another thread of the process, then by
    // its absolute path (the working directory is then not needed to find the file).
    let probe = "import os, threading\n\
def attempt(path='./srv'):\n    try:\n        os.execv(path, ['srv', '-v'])\n    except OSError as e:\n        print('refused', e.errno, flush=True)\n\
attempt()\nt = threading.Thread(target=attempt)\nt.start()\nt.join()\n\
attempt(os.path.abspath('srv'))\nprint('pid', os.getpid())\n";
    std::fs::write(d.join("probe.py"), probe).unwrap();
    std::fs::set_permissions(d.join("probe.py"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // As another user when guard can make it one: the record's ids are the caller's.
    // SAFETY: geteuid(2) cannot fail.
    let (prefix, uid) = if unsafe { libc::geteuid() } == 0 {
        ("setpriv --reuid=65534 --regid=65534 --clear-groups ", 65534)
    } else {
        // SAFETY: getuid(2) cannot fail.
        ("", unsafe { libc::getuid() } as u64)
    };
    let r = guard_sh(
        &d,
        &["--mode", "enforce"],
        &format!("{prefix}/usr/bin/python3 probe.py; true"),
    );
    assert_eq!(r.stdout.matches("refused 13").count(), 3, "{}", r.context());
    let pid: u64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.context()));
    let root = r.trace[0]["root"].as_u64().unwrap();
    let attempts: Vec<&Value> = r.trace.iter().filter(|v| v["type"] == "attempt").collect();
    assert_eq!(attempts.len(), 3, "{:#?}", r.trace);
    let cwd = std::fs::canonicalize(d.path()).unwrap();
    for a in &attempts {
        assert_eq!(a["pid"], pid, "{a}");
        assert_eq!(a["tgid"], pid, "{a}");
        assert_eq!(a["ppid"], root, "{a}");
        assert_eq!(a["uid"], uid, "{a}");
        assert_eq!(a["cwd"], cwd.to_str().unwrap(), "{a}");
        assert_eq!(a["execfn"], cwd.join("srv").to_str().unwrap(), "{a}");
        assert_eq!(a["attempt"]["blocked"], true, "{a}");
    }
    // The second came from a thread that is not the leader: its own id is kept.
    assert!(attempts[0].get("former_tid").is_none(), "{}", attempts[0]);
    let tid = attempts[1]["former_tid"].as_u64().unwrap_or_default();
    assert!(tid != 0 && tid != pid, "{}", attempts[1]);
    assert!(attempts[2].get("former_tid").is_none(), "{}", attempts[2]);
}

#[test]
fn enforce_does_not_block_allowlisted_execs() {
    if !need(NGINX) {
        return;
    }
    let d = temp("allowed");
    let cfg = d.join("allow.yml");
    std::fs::write(
        &cfg,
        format!("version: 1\nallow:\n  - recipe: webserver_exec\n    exe: {NGINX}\n    argv: ' -v$'\n    reason: version check in the build\n"),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let r = guard_sh(
        &d,
        &["--mode", "enforce", "--config", &cfg],
        &format!("{NGINX} -v"),
    );
    assert_eq!(r.status, 0, "{}", r.context());
    assert!(
        r.stderr.contains("nginx version: nginx/"),
        "{}",
        r.context()
    );
    assert_eq!(r.findings().len(), 1);
    assert_eq!(r.findings()[0]["allowed"], "version check in the build");
    assert!(r.findings()[0].get("blocked").is_none(), "{}", r.context());
    assert_eq!(r.stat("blocked"), 0);
    // The same server with other arguments is not allowed: refused.
    let r = guard_sh(
        &d,
        &["--mode", "enforce", "--config", &cfg],
        &format!("{NGINX} -V; echo continued"),
    );
    assert!(r.stdout.contains("continued"), "{}", r.context());
    assert_eq!(r.stat("blocked"), 1, "{}", r.context());
}

#[test]
fn failed_attempts_are_evidence() {
    let d = temp("attempts");
    std::fs::write(d.join("noexec"), "#!/bin/sh\n").unwrap();
    // An executable FIFO: its exec fails (EACCES), and guard, which looks at the file, must
    // not open it as a file to read (that would wait for a writer forever).
    let made = Command::new("mkfifo").arg(d.join("pipe")).status().unwrap();
    assert!(made.success());
    std::fs::set_permissions(d.join("pipe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As root, /proc/kmsg too (a regular file that the kernel will not run): reading it would
    // take the kernel's messages from their reader, and wait for more.
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let kmsg = if root { "/proc/kmsg; /proc/kmsg; " } else { "" };
    // The kernel messages not yet read from /proc/kmsg (-1: not allowed here).
    // SAFETY: klogctl(2) SYSLOG_ACTION_SIZE_UNREAD (9) takes no buffer.
    let unread = || unsafe { libc::klogctl(9, std::ptr::null_mut(), 0) };
    let unread_before = if root { unread() } else { -1 };
    let r = guard_sh(
        &d,
        &["--attempts"],
        &format!("/nonexistent/sbin/nginx -g 'daemon off;'; ./noexec; ./pipe; {kmsg}echo done"),
    );
    assert!(r.stdout.contains("done"), "{}", r.context());
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    let f = &r.findings()[0];
    assert_eq!(f["attempt"]["error"], "ENOENT", "{}", r.context());
    assert_eq!(f["process"]["argv"][0], "/nonexistent/sbin/nginx");
    assert!(f.get("blocked").is_none());
    assert!(r.stderr.contains("ATTEMPTED"), "{}", r.context());
    // Three failed attempts: nginx (ENOENT), the script without x bit and the FIFO (EACCES),
    // and /proc/kmsg twice as root (EACCES).
    let want = if root { 5 } else { 3 };
    assert_eq!(r.stat("attempts"), want, "{}", r.context());
    // Nothing was taken from /proc/kmsg (with none unread, a read would have waited: the run
    // would not have ended).
    if unread_before >= 0 {
        let after = unread();
        assert!(
            after >= unread_before,
            "/proc/kmsg was read: {unread_before} bytes unread before, {after} after"
        );
    }
    let fifo = r
        .trace
        .iter()
        .find(|v| v["type"] == "attempt" && v["argv"][0] == "./pipe")
        .unwrap_or_else(|| panic!("{:#?}", r.trace));
    let named = std::fs::canonicalize(d.join("pipe")).unwrap();
    assert_eq!(fifo["exe"], named.to_str().unwrap(), "{fifo}");
    assert_eq!(fifo["attempt"]["error"], "EACCES", "{fifo}");
    assert_eq!(r.status, 3);
}

#[test]
fn a_path_search_that_succeeds_is_one_exec_not_attempts() {
    if !need(NGINX) {
        return;
    }
    let d = temp("search");
    // env(1) searches PATH with execvp: two misses, then /usr/sbin/nginx.
    let r = guard_sh(
        &d,
        &["--attempts"],
        "env PATH=/nonexistent/a:/nonexistent/b:/usr/sbin nginx -v",
    );
    assert_eq!(r.findings().len(), 1, "{}", r.context());
    assert!(r.findings()[0].get("attempt").is_none(), "{}", r.context());
    assert_eq!(r.stat("attempts"), 0, "{}", r.context());
}
