//! The host watcher (`guard start` / `stop` / `status`) against the real kernel: the proc
//! connector sees what no traced tree contains, ptrace attach follows a live multi-threaded JVM,
//! bursts are fully accounted for, tampering is reported, and no secret is ever recorded.
//!
//! The watcher sees the whole host, so these tests run one at a time (a lock), each with its own
//! state directory.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{finish, free_port, guard, json, need_root, tempdir, Out, GUARD, NO_ARGS};

/// How long one `guard` or `sh` command may take.
const BOUND: Duration = Duration::from_secs(120);
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sh(script: &str) -> Out {
    common::command("sh", ["-c", script]).bound(BOUND).run()
}

fn trace_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn execs_with_arg<'a>(lines: &'a [serde_json::Value], arg: &str) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|l| {
            l["type"] == "exec"
                && l["argv"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == arg))
        })
        .collect()
}

/// Stops a watcher left running by a failed test.
struct Watcher(PathBuf);

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.0.join("watcher.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(pid) = v["pid"].as_i64() {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

fn start(state: &Path, extra: &[&str]) -> Watcher {
    let mut args = vec!["start"];
    args.extend_from_slice(extra);
    let o = guard(args).state_dir(state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "guard start: {}", o.stderr);
    assert!(o.stderr.contains("watcher recording"), "{}", o.stderr);
    Watcher(state.to_path_buf())
}

#[test]
fn server_outside_any_traced_tree_is_detected() {
    let _l = serial();
    if !need_root("server_outside_any_traced_tree_is_detected") {
        return;
    }
    let dir = tempdir("watcher-setsid");
    let state = dir.join("state");
    let _w = start(&state, &[]);
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "state directory mode");
    let mode = std::fs::metadata(state.join("trace.jsonl"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "trace mode");
    let st = guard(["status"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(st.code, Some(0), "{}{}", st.stdout, st.stderr);
    assert!(st.stdout.contains("running"), "{}", st.stdout);
    let again = guard(["start"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(again.code, Some(125));
    assert!(again.stderr.contains("already running"), "{}", again.stderr);

    // A web server started in a new session, child of no traced process.
    let port = free_port();
    let o = sh(&format!(
        "setsid -w sh -c 'busybox httpd -f -p 127.0.0.1:{port} -h {d} & p=$!; sleep 0.3; kill $p; wait $p'; true",
        d = dir.display()
    ));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    std::thread::sleep(Duration::from_millis(300));
    let st = guard(["status"]).state_dir(&state).bound(BOUND).run();
    assert!(st.stdout.contains("execs"), "{}", st.stdout);

    let report = dir.join("r.json");
    let o = guard(["stop", "--report", report.to_str().unwrap()])
        .state_dir(&state)
        .bound(BOUND)
        .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(o.stderr.contains("FINDING webserver_exec"), "{}", o.stderr);
    let r = json(&report);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["process"]["argv"][1] == "httpd"
                && f["process"]["argv"][4] == format!("127.0.0.1:{port}")
        })
        .unwrap_or_else(|| panic!("no busybox httpd finding in {:#}", r["findings"]));
    assert_eq!(f["process"]["exe"], "/usr/bin/busybox");
    assert_eq!(f["failing"], true);
    assert!(
        f["process"]["ancestry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["argv"][0] == "sh"),
        "{f:#}"
    );
    assert_eq!(r["stats"]["lost"], 0);

    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(
        o.code,
        Some(125),
        "stop without a running watcher: {}",
        o.stderr
    );
    assert!(o.stderr.contains("no watcher was started"), "{}", o.stderr);
}

#[test]
fn server_in_new_pid_and_mount_namespaces_is_detected_with_its_host_pid() {
    let _l = serial();
    if !need_root("server_in_new_pid_and_mount_namespaces_is_detected_with_its_host_pid") {
        return;
    }
    let dir = tempdir("watcher-unshare");
    let state = dir.join("state");
    let _w = start(&state, &[]);
    let port = free_port();
    // Inside, the shell is pid 1 and the server pid 2 or 3; the watcher sees host pids.
    let o = sh(&format!(
        "unshare --pid --fork --mount-proc sh -c 'echo inner=$$; busybox httpd -f -p 127.0.0.1:{port} -h {d} & p=$!; echo server=$p; sleep 0.3; kill $p; wait $p'; true",
        d = dir.display()
    ));
    assert!(o.stdout.contains("inner=1"), "{}{}", o.stdout, o.stderr);
    let report = dir.join("r.json");
    let o = guard(["stop", "--report", report.to_str().unwrap()])
        .state_dir(&state)
        .bound(BOUND)
        .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let r = json(&report);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["process"]["argv"][4] == format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| {
            panic!(
                "no finding for the namespaced server in {:#}",
                r["findings"]
            )
        });
    assert_eq!(f["process"]["exe"], "/usr/bin/busybox");
    let pid = f["process"]["pid"].as_u64().unwrap();
    assert!(pid > 3, "the host pid, not the namespace's ({pid})");
}

#[test]
fn a_burst_of_20000_execs_is_fully_accounted_for() {
    let _l = serial();
    if !need_root("a_burst_of_20000_execs_is_fully_accounted_for") {
        return;
    }
    let dir = tempdir("watcher-burst");
    let state = dir.join("state");
    let src = dir.join("burst.c");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
/* N short execs of /bin/true with a marker, from two processes at once (two cores). */
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    char *args[] = {"true", argv[2], NULL}; /* argv[3] names the burst itself */
    pid_t half = fork();
    for (int i = 0; i < n / 2; i++) {
        pid_t p = fork();
        if (p == 0) { execv("/bin/true", args); _exit(127); }
        int st; waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "exec failed\n"); return 1; }
    }
    if (half == 0) _exit(0);
    int st; waitpid(half, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
"#,
    )
    .unwrap();
    let bin = dir.join("burst");
    let cc = sh(&format!("cc -O2 -o {} {}", bin.display(), src.display()));
    assert_eq!(cc.code, Some(0), "cc: {}", cc.stderr);

    let _w = start(&state, &[]);
    let marker = format!("guard-burst-{}", std::process::id());
    let started = Instant::now();
    let o = sh(&format!("{} 20000 {marker} {marker}", bin.display()));
    let took = started.elapsed();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);

    let lines = trace_lines(&state.join("trace.jsonl"));
    let seal = lines.last().unwrap();
    assert_eq!(seal["type"], "seal");
    let lost = seal["lost"].as_u64().unwrap();
    // An exec whose process is gone before /proc could be read is recorded partial (no argv):
    // count the execs of the burst's children, known from the fork records.
    let burst_pid = lines
        .iter()
        .find(|l| l["type"] == "exec" && l["argv"][2] == marker.as_str() && l["argv"][1] == "20000")
        .and_then(|l| l["pid"].as_u64())
        .expect("the burst program's exec");
    let mut parents = std::collections::HashSet::from([burst_pid]);
    let mut children = std::collections::HashSet::new();
    for l in &lines {
        if l["type"] == "fork" && parents.contains(&l["ppid"].as_u64().unwrap()) {
            let pid = l["pid"].as_u64().unwrap();
            if l["ppid"].as_u64() == Some(burst_pid) && parents.len() == 1 {
                parents.insert(pid); // the second half: the first child forked
            }
            children.insert(pid);
        }
    }
    let recorded = lines
        .iter()
        .filter(|l| l["type"] == "exec" && children.contains(&l["pid"].as_u64().unwrap()))
        .count() as u64;
    let with_argv = execs_with_arg(&lines, &marker).len();
    eprintln!(
        "burst: 20000 execs in {took:?} ({:.0}/s): {recorded} recorded ({with_argv} with their argv), {lost} lost",
        20000.0 / took.as_secs_f64()
    );
    assert!(recorded <= 20000);
    assert_eq!(
        recorded + lost.min(20000 - recorded),
        20000,
        "every exec recorded or counted lost"
    );
    assert_eq!(
        lost,
        0,
        "nothing lost at {:.0} execs/s",
        20000.0 / took.as_secs_f64()
    );
}

/// A flood the watcher cannot keep up with: the watcher is frozen (SIGSTOP) with a small
/// receive buffer while 400 execs run, so the kernel drops events (`ENOBUFS`). Every one must be
/// counted, and the verdict must say evidence was lost instead of passing.
#[test]
fn a_flood_beyond_the_receive_buffer_is_counted_and_never_a_clean_verdict() {
    let _l = serial();
    if !need_root("a_flood_beyond_the_receive_buffer_is_counted_and_never_a_clean_verdict") {
        return;
    }
    let dir = tempdir("watcher-flood");
    let state = dir.join("state");
    let _w = start(&state, &["--rcvbuf", "4096"]);
    let info = json(&state.join("watcher.json"));
    let pid = info["pid"].as_i64().unwrap() as i32;
    let marker = format!("guard-flood-{}", std::process::id());
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let o = sh(&format!(
        "i=0; while [ $i -lt 400 ]; do /bin/true {marker}; i=$((i+1)); done"
    ));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    std::thread::sleep(Duration::from_millis(500));
    let report = dir.join("report.json");
    let o = guard(["stop", "--report", report.to_str().unwrap()])
        .state_dir(&state)
        .bound(BOUND)
        .run();
    assert_eq!(o.code, Some(3), "lost events fail the run: {}", o.stderr);
    assert!(o.stderr.contains("CRITICAL events_lost"), "{}", o.stderr);

    let lines = trace_lines(&state.join("trace.jsonl"));
    let seal = lines.last().unwrap();
    assert_eq!(seal["type"], "seal");
    let lost = seal["lost"].as_u64().unwrap();
    let recorded = execs_with_arg(&lines, &marker).len() as u64;
    let r = json(&report);
    eprintln!("flood: 400 execs while frozen with a 4 KiB buffer: {recorded} recorded, {lost} event(s) lost");
    assert!(lost > 0, "the buffer overflowed, so events were lost");
    assert_eq!(r["stats"]["lost"], lost);
    assert!(
        recorded < 400,
        "{recorded} recorded: the flood did not overflow"
    );
    // Each exec of the loop is a fork, an exec and an exit event, 1,200 in all; an 8 KiB
    // buffer (the kernel doubles 4096) holds fewer than 16 of them: all the others are counted.
    assert!(
        lost + 16 >= 1200,
        "{recorded} recorded, only {lost} counted lost"
    );
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["recipe"] == "events_lost")
        .expect("an events_lost finding");
    assert_eq!(f["importance"], "critical");
    assert_eq!(f["process"], serde_json::Value::Null);
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{lost} event(s) lost")),
        "{f}"
    );
    // `guard check` of the sealed trace says the same.
    let o = guard(NO_ARGS)
        .command()
        .args(["check", "--trace"])
        .arg(state.join("trace.jsonl"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(all.contains("CRITICAL events_lost"), "{all}");
}

#[test]
fn a_killed_watcher_and_an_altered_trace_are_critical_findings() {
    let _l = serial();
    if !need_root("a_killed_watcher_and_an_altered_trace_are_critical_findings") {
        return;
    }
    let dir = tempdir("watcher-tamper");
    let state = dir.join("state");
    let _w = start(&state, &[]);
    let info = json(&state.join("watcher.json"));
    let pid = info["pid"].as_i64().unwrap() as i32;
    std::thread::sleep(Duration::from_millis(1200));
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let st = guard(["status"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(st.code, Some(1), "{}", st.stdout);
    assert!(st.stdout.contains("NOT RUNNING"), "{}", st.stdout);
    let report = dir.join("killed.json");
    let o = guard([
        "stop",
        "--mode",
        "warn",
        "--report",
        report.to_str().unwrap(),
    ])
    .state_dir(&state)
    .bound(BOUND)
    .run();
    assert!(
        o.stderr
            .contains("CRITICAL watcher_stopped: watcher stopped at 20"),
        "{}",
        o.stderr
    );
    let r = json(&report);
    assert_eq!(r["findings"][0]["recipe"], "watcher_stopped");
    assert_eq!(r["findings"][0]["importance"], "critical");
    assert_eq!(r["findings"][0]["process"], serde_json::Value::Null);
    // Asked again, it says the same: a dead watcher is never turned into a clean verdict.
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr.contains("CRITICAL watcher_stopped"),
        "{}",
        o.stderr
    );

    // A clean run, then its sealed trace altered in three ways.
    let _w = start(&state, &[]);
    sh("/bin/echo tamper-marker >/dev/null");
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let trace = state.join("trace.jsonl");
    let text = std::fs::read_to_string(&trace).unwrap();
    let check = |name: &str, content: &str| -> Out {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        guard(["check", "--trace", p.to_str().unwrap()])
            .state_dir(&state)
            .bound(BOUND)
            .run()
    };
    let o = check("intact.jsonl", &text);
    assert_eq!(o.code, Some(0), "{}", o.stdout);
    let edited = text.replacen("tamper-marker", "tamper-markes", 1);
    assert_ne!(edited, text);
    let o = check("edited.jsonl", &edited);
    assert_eq!(o.code, Some(3), "{}", o.stdout);
    assert!(o.stdout.contains("CRITICAL trace_altered"), "{}", o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let dropped: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let o = check("dropped.jsonl", &dropped);
    assert_eq!(o.code, Some(3), "{}", o.stdout);
    assert!(o.stdout.contains("CRITICAL trace_altered"), "{}", o.stdout);
    let truncated: String = lines[..lines.len() / 2]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let o = check("truncated.jsonl", &truncated);
    assert_eq!(o.code, Some(3), "{}", o.stdout);
    assert!(
        o.stdout.contains("CRITICAL watcher_stopped"),
        "{}",
        o.stdout
    );
}

#[test]
fn secrets_in_the_environment_are_never_recorded() {
    let _l = serial();
    if !need_root("secrets_in_the_environment_are_never_recorded") {
        return;
    }
    let dir = tempdir("watcher-secrets");
    let state = dir.join("state");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // It lives a moment, as a server would: the connector's reader finds it in /proc (a
    // process gone before it is read leaves only a partial record, without its environment).
    std::fs::write(bin.join("nginx"), "#!/bin/sh\nsleep 0.3\nexit 0\n").unwrap();
    std::fs::set_permissions(bin.join("nginx"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = format!("s3cr3t-{}-value", std::process::id());
    let script = format!("{}/nginx -t", bin.display());

    // Host watcher.
    let _w = start(&state, &[]);
    let o = Command::new("sh")
        .args(["-c", &script])
        .env("SECRET_TOKEN", &secret)
        .env("GITHUB_ACTION", "__run_7")
        .status()
        .unwrap();
    assert!(o.success());
    let report = dir.join("watch.json");
    let o = guard(["stop", "--report", report.to_str().unwrap()])
        .state_dir(&state)
        .bound(BOUND)
        .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    assert!(
        trace.contains(r#""step":"__run_7""#),
        "the step is attributed"
    );
    for (what, text) in [
        ("trace", trace),
        ("report", std::fs::read_to_string(&report).unwrap()),
        ("stderr", o.stderr),
    ] {
        assert!(!text.contains(&secret), "the secret leaked into the {what}");
        assert!(
            !text.contains("SECRET_TOKEN"),
            "an environment name leaked into the {what}"
        );
    }

    // guard run (ptrace).
    let child = guard(NO_ARGS)
        .command()
        .args([
            "run", "--trace", "t.jsonl", "--report", "r.json", "--", "sh", "-c", &script,
        ])
        .current_dir(&dir)
        .env("SECRET_TOKEN", &secret)
        .env("GITHUB_ACTION", "build")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = finish(child, Duration::from_secs(60));
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let trace = std::fs::read_to_string(dir.join("t.jsonl")).unwrap();
    assert!(trace.contains(r#""step":"build""#));
    for text in [
        trace,
        std::fs::read_to_string(dir.join("r.json")).unwrap(),
        o.stderr,
        o.stdout,
    ] {
        assert!(!text.contains(&secret));
    }
}

#[test]
fn an_exec_seen_by_both_sources_is_recorded_once() {
    let _l = serial();
    if !need_root("an_exec_seen_by_both_sources_is_recorded_once") {
        return;
    }
    let dir = tempdir("watcher-both");
    let state = dir.join("state");
    let mut shell = Command::new("sh")
        .args(["-c", "read x; /bin/echo both-sources-marker"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = shell.id().to_string();
    let _w = start(&state, &["--attach", &pid]);
    shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(shell.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(400));
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let lines = trace_lines(&state.join("trace.jsonl"));
    let execs = execs_with_arg(&lines, "both-sources-marker");
    assert_eq!(execs.len(), 1, "{execs:#?}");
    assert_eq!(execs[0]["source"], "ptrace");
    assert_eq!(
        execs[0]["sources"],
        serde_json::json!(["ptrace", "connector"])
    );
    assert!(execs[0].get("partial").is_none());
    let snapshot = lines
        .iter()
        .find(|l| l["type"] == "process" && l["pid"].as_u64() == pid.parse().ok());
    assert!(
        snapshot.is_some(),
        "the attached process is known for the ancestry"
    );
}

#[test]
fn attaching_to_a_live_multithreaded_jvm_and_detaching_keeps_it_working() {
    let _l = serial();
    if !need_root("attaching_to_a_live_multithreaded_jvm_and_detaching_keeps_it_working") {
        return;
    }
    let dir = tempdir("watcher-jvm");
    let state = dir.join("state");
    std::fs::write(
        dir.join("Spawner.java"),
        r#"
import java.util.*;
import java.util.concurrent.atomic.*;
/* Four threads start children for a while, while the JVM's own threads (GC, JIT, signal
   handling) run; it must finish its work and exit 0 whatever a tracer does meanwhile. */
public class Spawner {
    public static void main(String[] a) throws Exception {
        long until = System.currentTimeMillis() + Long.parseLong(a[0]);
        AtomicInteger ok = new AtomicInteger();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            final int id = t;
            Thread th = new Thread(() -> {
                int i = 0;
                while (System.currentTimeMillis() < until) {
                    try {
                        Process p = new ProcessBuilder("/bin/echo", "jvm-child-" + id + "-" + i++).start();
                        p.getInputStream().readAllBytes();
                        if (p.waitFor() == 0) ok.incrementAndGet();
                        byte[] junk = new byte[1 << 20]; junk[0] = 1;
                        Thread.sleep(20);
                    } catch (Exception e) { throw new RuntimeException(e); }
                }
            });
            th.start(); ts.add(th);
        }
        System.out.println("started"); System.out.flush();
        for (Thread th : ts) th.join();
        System.out.println("done " + ok.get());
    }
}
"#,
    )
    .unwrap();
    let mut jvm = Command::new("java")
        .args(["Spawner.java", "9000"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java (Java 17 is on the machine)");
    let mut out = jvm.stdout.take().unwrap();
    let mut first = [0u8; 8];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"started\n");
    let pid = jvm.id();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(
        threads > 10,
        "a heavily threaded runtime ({threads} threads)"
    );

    let _w = start(&state, &["--attach", &pid.to_string()]);
    std::thread::sleep(Duration::from_millis(2500));
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0\n"), "detached: {status}");

    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let st = jvm.wait().unwrap();
    let mut err = String::new();
    jvm.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(st.code(), Some(0), "the JVM exits normally: {err}");
    assert!(rest.starts_with("done "), "{rest}");

    let lines = trace_lines(&state.join("trace.jsonl"));
    let children: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["type"] == "exec"
                && l["argv"][1]
                    .as_str()
                    .is_some_and(|a| a.starts_with("jvm-child-"))
        })
        .collect();
    let by_ptrace = children.iter().filter(|c| c["source"] == "ptrace").count();
    assert!(
        by_ptrace > 0,
        "children recorded through ptrace: {} execs in all",
        children.len()
    );
    let threads_seen: std::collections::HashSet<&str> = children
        .iter()
        .filter_map(|c| c["argv"][1].as_str()?.split('-').nth(2))
        .collect();
    assert!(
        threads_seen.len() >= 2,
        "children of several threads: {threads_seen:?}"
    );
    eprintln!(
        "jvm: {} children recorded ({by_ptrace} through ptrace), {rest}",
        children.len()
    );
}

#[test]
fn the_watcher_keeps_no_descriptor_of_the_step_that_started_it() {
    let _l = serial();
    if !need_root("the_watcher_keeps_no_descriptor_of_the_step_that_started_it") {
        return;
    }
    let dir = tempdir("watcher-fds");
    let state = dir.join("state");
    // The Actions runner waits for a step's stdout/stderr to close: a watcher holding a copy
    // (here also as fd 5) would keep the step alive. Reading to EOF must end right away.
    let child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "exec 5>&1; GUARD_STATE_DIR={} {GUARD} start",
                state.display()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _w = Watcher(state.clone());
    let started = Instant::now();
    let o = finish(child, Duration::from_secs(30));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stdout/stderr closed at once"
    );
    let o = guard(["stop"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn start_fails_with_advice_where_the_connector_cannot_work() {
    let _l = serial();
    if !need_root("start_fails_with_advice_where_the_connector_cannot_work") {
        return;
    }
    let dir = tempdir("watcher-netns");
    let state = dir.join("state");
    // A new network namespace stands in for a container job.
    let child = Command::new("unshare")
        .args(["--net", GUARD, "start"])
        .env("GUARD_STATE_DIR", &state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = finish(child, Duration::from_secs(30));
    assert_eq!(o.code, Some(125), "{}", o.stderr);
    assert!(
        o.stderr.contains("guard run -- CMD"),
        "says what to do instead: {}",
        o.stderr
    );
    let st = guard(["status"]).state_dir(&state).bound(BOUND).run();
    assert_eq!(st.code, Some(125), "no watcher left behind: {}", st.stdout);
}
