//! The `guard` command line as users and scripts meet it: the exit-status contract of
//! DESIGN.md, signals, job control, the allowlist, `times` folding, `check` re-evaluating a trace
//! to the same result, and the errors for malformed recipes and configs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{finish, guard, tempdir, wait_for, NO_ARGS};

const BOUND: Duration = Duration::from_secs(60);
/// How long a test waits for a process to reach a state.
const WAIT: Duration = Duration::from_secs(20);

/// A stand-in web server: a `#!` script named `nginx` (matched by its script path) that exits
/// with the given status.
fn fake_nginx(dir: &Path, status: i32) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("nginx");
    std::fs::write(&p, format!("#!/bin/sh\nexit {status}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn exit_status_follows_the_command_without_findings() {
    let dir = tempdir("cli-status");
    for (script, want) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("exit 255", 255),
        ("true | false", 1),
    ] {
        let o = guard(["run", "--", "sh", "-c", script]).cwd(&dir).run();
        assert_eq!(o.code, Some(want), "{script}: {}", o.stderr);
        assert!(o.stderr.contains("PASS"), "{}", o.stderr);
    }
    for (sig, name) in [(9, "KILL"), (11, "SEGV"), (6, "ABRT")] {
        let o = guard(["run", "--", "sh", "-c", &format!("kill -{name} $$")])
            .cwd(&dir)
            .run();
        assert_eq!(o.code, Some(128 + sig), "{name}: {}", o.stderr);
    }
}

#[test]
fn exit_status_with_findings() {
    let dir = tempdir("cli-findings");
    let ok = fake_nginx(&dir, 0);
    let o = guard(["run", "--", ok.to_str().unwrap(), "-t"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(o.stderr.contains("FINDING webserver_exec"), "{}", o.stderr);
    assert!(
        o.stderr.contains("recommended actions (CI/CD)"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("Immediately review recent code changes"),
        "{}",
        o.stderr
    );

    let failing_cmd = tempdir("cli-findings-fail");
    let bad = fake_nginx(&failing_cmd, 5);
    let o = guard(["run", "--", bad.to_str().unwrap()]).cwd(&dir).run();
    assert_eq!(
        o.code,
        Some(5),
        "a failing command keeps its own status: {}",
        o.stderr
    );

    let o = guard(["run", "--mode", "warn", "--", ok.to_str().unwrap()])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("WARN"), "{}", o.stderr);
}

#[test]
fn exit_status_when_the_command_cannot_run() {
    let dir = tempdir("cli-noexec");
    let o = guard(["run", "--", "no-such-command-anywhere"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(127), "{}", o.stderr);
    assert!(
        o.stderr.contains("No such file or directory"),
        "{}",
        o.stderr
    );
    std::fs::write(dir.join("data.txt"), "not a program").unwrap();
    let o = guard(["run", "--", "./data.txt"]).cwd(&dir).run();
    assert_eq!(o.code, Some(126), "{}", o.stderr);
}

#[test]
fn guard_failure_is_125_before_the_command_runs() {
    let dir = tempdir("cli-guardfail");
    std::fs::write(
        dir.join("bad.yml"),
        "allow:\n  - recipe: webserver_exec\n    base: nginx\n",
    )
    .unwrap();
    let marker = dir.join("ran");
    let script = format!("touch {}", marker.display());
    let o = guard(["run", "--config", "bad.yml", "--", "sh", "-c", &script])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(125), "{}", o.stderr);
    assert!(
        o.stderr.contains("bad.yml:2:5:"),
        "file:line:column: {}",
        o.stderr
    );
    assert!(o.stderr.contains("reason"), "{}", o.stderr);
    assert!(
        !marker.exists(),
        "the command must not run when guard cannot start"
    );

    std::fs::write(
        dir.join("bad.yaml"),
        "- kind: x\n  name: x\n  importance: extreme\n",
    )
    .unwrap();
    let o = guard(["run", "--recipes", "bad.yaml", "--", "sh", "-c", &script])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(125), "{}", o.stderr);
    assert!(o.stderr.contains("bad.yaml:"), "{}", o.stderr);
    assert!(!marker.exists());

    let o = guard(["run", "--no-such-flag", "--", "true"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(125), "{}", o.stderr);
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn signals_sent_to_guard_reach_the_command() {
    let dir = tempdir("cli-sigterm");
    // Each forwarded signal reaches a command that handles it: its own exit status comes back.
    for (sig, name, code) in [
        (libc::SIGINT, "INT", 40),
        (libc::SIGHUP, "HUP", 41),
        (libc::SIGQUIT, "QUIT", 43),
    ] {
        let script = format!("trap 'exit {code}' {name}; while :; do sleep 0.05; done");
        let child = guard(NO_ARGS)
            .cwd(&dir)
            .command()
            .args(["run", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        wait_for("the command to start", WAIT, || !children(pid).is_empty());
        std::thread::sleep(Duration::from_millis(300));
        unsafe { libc::kill(pid as i32, sig) };
        let o = finish(child, BOUND);
        assert_eq!(o.code, Some(code), "SIG{name}: {}", o.stderr);
    }
    let child = guard(NO_ARGS)
        .cwd(&dir)
        .command()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the command to start", WAIT, || !children(pid).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let o = finish(child, BOUND);
    assert_eq!(o.code, Some(42), "{}", o.stderr);

    // A command that does not handle it dies of it: 128 + 15.
    let child = guard(NO_ARGS)
        .cwd(&dir)
        .command()
        .args(["run", "--", "sh", "-c", "while :; do sleep 0.05; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the command to start", WAIT, || !children(pid).is_empty());
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let o = finish(child, BOUND);
    assert_eq!(o.code, Some(143), "{}", o.stderr);
}

/// A signal reaches the command once, whether it was sent to guard alone (forwarded) or to the
/// whole process group guard and the command share (coreutils `timeout`, `kill -- -PGID`):
/// there the command got it from the kernel already and guard must not send it again.
#[test]
fn each_signal_reaches_the_command_exactly_once() {
    use std::os::unix::process::CommandExt;
    let dir = tempdir("cli-once");
    let script = "n=0; for s in TERM INT HUP USR1 USR2 ALRM; do trap \"n=\\$((n+1)); echo $s \\$n\" $s; done; \
                  echo ready; i=0; while [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done; echo total $n";
    for group in [false, true] {
        let child = guard(NO_ARGS)
            .cwd(&dir)
            .command()
            .args(["run", "--", "sh", "-c", script])
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        wait_for("the command to start", WAIT, || {
            !children(pid as u32).is_empty()
        });
        std::thread::sleep(Duration::from_millis(300));
        let signals = [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
        ];
        for sig in signals {
            unsafe { libc::kill(if group { -pid } else { pid }, sig) };
            std::thread::sleep(Duration::from_millis(200));
        }
        let o = finish(child, BOUND);
        let how = if group { "to the group" } else { "to guard" };
        assert_eq!(o.code, Some(0), "signals {how}: {}", o.stderr);
        assert!(
            o.stdout
                .contains("TERM 1\nINT 2\nHUP 3\nUSR1 4\nUSR2 5\nALRM 6\n"),
            "signals {how}: {}",
            o.stdout
        );
        assert!(
            o.stdout.ends_with("total 6\n"),
            "each signal {how} handled once: {}",
            o.stdout
        );
    }
}

/// A signal the command sends to its parent (guard) — `kill -USR1 $PPID`, a readiness notice —
/// is not sent back down to the command (whose default action would kill it).
#[test]
fn a_signal_from_the_command_to_its_parent_is_not_bounced_back() {
    let dir = tempdir("cli-bounce");
    let o = guard([
        "run",
        "--",
        "sh",
        "-c",
        "trap 'echo bounced' USR1 USR2; kill -USR1 $PPID; kill -USR2 $PPID; sleep 0.3; echo done",
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, "done\n", "{}", o.stderr);
}

#[test]
fn job_control_stop_and_continue() {
    let dir = tempdir("cli-jobctl");
    let child = guard(NO_ARGS)
        .cwd(&dir)
        .command()
        .args(["run", "--", "sh", "-c", "kill -STOP $$; echo resumed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The command stops itself; guard mirrors the stop so that a shell would see the job stopped.
    wait_for("guard to stop with its command", WAIT, || {
        proc_state(pid) == Some('T')
    });
    let sh = children(pid)[0];
    assert!(
        matches!(proc_state(sh), Some('t' | 'T')),
        "the command stays stopped"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "guard stays stopped until continued"
    );
    // `kill -CONT` to guard alone continues the command as well.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let o = finish(child, BOUND);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, "resumed\n");
}

#[test]
fn tracees_do_not_outlive_a_killed_guard() {
    let dir = tempdir("cli-exitkill");
    let child = guard(NO_ARGS)
        .cwd(&dir)
        .command()
        .args(["run", "--", "sh", "-c", "sleep 30; echo finished"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("sleep to start", WAIT, || {
        children(pid)
            .first()
            .is_some_and(|sh| !children(*sh).is_empty())
    });
    let sh = children(pid)[0];
    let sleep = children(sh)[0];
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let o = finish(child, BOUND);
    assert_eq!(o.signal, Some(9));
    assert!(!o.stdout.contains("finished"));
    wait_for("the tracees to be killed with guard", WAIT, || {
        proc_state(sleep).is_none_or(|s| s == 'Z') && proc_state(sh).is_none_or(|s| s == 'Z')
    });
}

#[test]
fn daemons_outlive_the_command_untraced() {
    let dir = tempdir("cli-outlived");
    let pidfile = dir.join("bg.pid");
    let script = format!("sleep 5 & echo $! > {}", pidfile.display());
    let o = guard(["run", "--", "sh", "-c", &script]).cwd(&dir).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        o.stderr.contains(&format!(
            "outlived the command (detached, still running untraced): pid {pid} sleep 5"
        )),
        "{}",
        o.stderr
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn allowlist_with_reason_and_expiry() {
    let dir = tempdir("cli-allow");
    let nginx = fake_nginx(&dir, 0);
    let cfg = format!(
        "version: 1\nallow:\n  - recipe: webserver_exec\n    exe: {}\n    argv: ' -t$'\n    reason: integration tests validate nginx.conf\n",
        nginx.display()
    );
    // `exe` is the resolved executable, which for a script is the interpreter; match the script by base.
    let cfg = cfg.replace(&format!("exe: {}", nginx.display()), "base: nginx");
    std::fs::write(dir.join("allow.yml"), &cfg).unwrap();
    let rep = dir.join("r.json");
    let o = guard([
        "run",
        "--config",
        "allow.yml",
        "--report",
        "r.json",
        "--",
        nginx.to_str().unwrap(),
        "-t",
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("allowed:   integration tests validate nginx.conf"),
        "{}",
        o.stderr
    );
    let r = report(&rep);
    assert_eq!(
        r["findings"][0]["allowed"],
        "integration tests validate nginx.conf"
    );
    assert_eq!(r["findings"][0]["failing"], false);

    // Not covered by the argv pattern: fails.
    let o = guard([
        "run",
        "--config",
        "allow.yml",
        "--",
        nginx.to_str().unwrap(),
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);

    // Expired: no longer allows, and says so.
    std::fs::write(
        dir.join("old.yml"),
        format!("{cfg}    expires: 2020-01-31\n"),
    )
    .unwrap();
    let o = guard([
        "run",
        "--config",
        "old.yml",
        "--",
        nginx.to_str().unwrap(),
        "-t",
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(o.stderr.contains("expired on 2020-01-31"), "{}", o.stderr);

    // The default config path is used when present.
    std::fs::create_dir_all(dir.join(".github")).unwrap();
    std::fs::write(dir.join(".github/webserver-exec-guard.yml"), &cfg).unwrap();
    let o = guard(["run", "--", nginx.to_str().unwrap(), "-t"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn times_limits_fold_repeats_into_one_finding() {
    let dir = tempdir("cli-times");
    let nginx = fake_nginx(&dir, 0);
    let rep = dir.join("r.json");
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do {} -t; i=$((i+1)); done",
        nginx.display()
    );
    let o = guard(["run", "--report", "r.json", "--", "sh", "-c", &script])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let r = report(&rep);
    let findings = r["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{:#}", r["findings"]);
    assert_eq!(findings[0]["count"], 200);
    assert_eq!(r["stats"]["suppressed"], 199);
    assert!(r["stats"]["execs"].as_u64().unwrap() >= 201);
}

#[test]
fn check_reaches_the_same_result_as_the_live_run() {
    let dir = tempdir("cli-check");
    let nginx = fake_nginx(&dir, 0);
    std::fs::write(
        dir.join("allow.yml"),
        "allow:\n  - recipe: webserver_exec\n    base: nginx\n    argv: ' -t$'\n    reason: config test\n",
    )
    .unwrap();
    // Non-UTF-8 and empty arguments must survive the trace.
    let script = format!(
        "{n} -t; {n} -g \"$(printf 'x\\377y')\" ''; ls >/dev/null",
        n = nginx.display()
    );
    let o = guard([
        "run",
        "--config",
        "allow.yml",
        "--trace",
        "t.jsonl",
        "--report",
        "live.json",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let mode = std::fs::metadata(dir.join("t.jsonl"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let live = report(&dir.join("live.json"));
    let argv = &live["findings"][1]["process"]["argv"];
    assert_eq!(argv[3], serde_json::json!({"bytes": "eP95"}), "{argv}");
    assert_eq!(argv[4], "");

    let c = guard([
        "check",
        "--config",
        "allow.yml",
        "--trace",
        "t.jsonl",
        "--format",
        "json",
    ])
    .cwd(&dir)
    .run();
    assert_eq!(c.code, Some(3), "{}", c.stderr);
    let checked: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
    assert_eq!(checked["findings"], live["findings"]);
    assert_eq!(checked["stats"], live["stats"]);
    assert_eq!(checked["command"], live["command"]);
    assert_eq!(checked["trace"]["integrity"], "sealed");
    assert_eq!(live["findings"].as_array().unwrap().len(), 2);

    let t = guard(["check", "--config", "allow.yml", "--trace", "t.jsonl"])
        .cwd(&dir)
        .run();
    assert_eq!(t.code, Some(3));
    assert!(
        t.stdout.contains("FAIL: 1 failing finding, 1 allowed"),
        "{}",
        t.stdout
    );
    assert!(
        !t.stdout.contains('\x1b'),
        "no colour when not on a terminal"
    );

    // Warn mode: report, exit 0.
    let w = guard(["check", "--mode", "warn", "--trace", "t.jsonl"])
        .cwd(&dir)
        .run();
    assert_eq!(w.code, Some(0), "{}", w.stdout);

    // A torn trace is read up to the tear and says so.
    let text = std::fs::read_to_string(dir.join("t.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = lines[..lines.len() - 1].join("\n");
    std::fs::write(dir.join("torn.jsonl"), &torn[..torn.len() - 5]).unwrap();
    let t = guard(["check", "--trace", "torn.jsonl"]).cwd(&dir).run();
    assert_eq!(
        t.code,
        Some(3),
        "an unsealed trace is never a clean verdict: {}",
        t.stdout
    );
    assert!(
        t.stdout.contains("CRITICAL trace_incomplete"),
        "{}",
        t.stdout
    );
    assert!(t.stdout.contains("last line is torn"), "{}", t.stdout);

    // An edited trace is a critical finding.
    std::fs::write(dir.join("edited.jsonl"), text.replace("\"-t\"", "\"-T\"")).unwrap();
    let t = guard(["check", "--mode", "warn", "--trace", "edited.jsonl"])
        .cwd(&dir)
        .run();
    assert!(t.stdout.contains("trace altered"), "{}", t.stdout);

    // Garbage is bad input: exit 2, naming the file and line.
    std::fs::write(
        dir.join("bad.jsonl"),
        format!("{}\n{{\"type\":\"exec\"}}\n", lines[0]),
    )
    .unwrap();
    let b = guard(["check", "--trace", "bad.jsonl"]).cwd(&dir).run();
    assert_eq!(b.code, Some(2), "{}", b.stderr);
    assert!(b.stderr.contains("bad.jsonl:2:"), "{}", b.stderr);
}

#[test]
fn recipes_list_show_validate() {
    let dir = tempdir("cli-recipes");
    let o = guard(["recipes", "list"]).cwd(&dir).run();
    assert_eq!(o.code, Some(0));
    assert!(
        o.stdout.contains("webserver_exec")
            && o.stdout.contains("built-in recipes/webserver_exec.yaml"),
        "{}",
        o.stdout
    );

    let o = guard(["recipes", "show", "webserver_exec"]).cwd(&dir).run();
    assert_eq!(o.code, Some(0));
    assert!(
        o.stdout.contains("tactic: command_and_control") && o.stdout.contains("T1071.001"),
        "{}",
        o.stdout
    );
    let o = guard(["recipes", "show", "nope"]).cwd(&dir).run();
    assert_eq!(o.code, Some(2));

    let builtin = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/webserver_exec.yaml");
    let o = guard(["recipes", "validate", builtin]).cwd(&dir).run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.starts_with("ok: "), "{}", o.stdout);

    std::fs::write(
        dir.join("bad.yaml"),
        "- kind: k\n  name: k\n  version: 1.0\n  description: d\n  breed: file_access\n  mechanism: execution\n  tactic: none\n  technique: none\n  importance: high\n  file_actions: execve\n  bases:\n    - regex: 'a(b'\n",
    )
    .unwrap();
    let o = guard(["recipes", "validate", builtin, "bad.yaml"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("bad.yaml:12:14: [0].bases[0].regex: invalid regex \"a(b\""),
        "{}",
        o.stderr
    );

    // A user recipe adds detections to `run`.
    std::fs::write(
        dir.join("nc.yaml"),
        "- kind: netcat_listener_exec\n  name: netcat_listener_exec\n  version: 1.0\n  description: netcat listening\n  breed: file_access\n  mechanism: execution\n  tactic: command_and_control\n  technique: non_application_layer_protocol\n  importance: high\n  arbitrary:\n    - how: OR\n      which: pertinent\n      items:\n        - {what: args, which: pertinent, pattern: '(^| )-l'}\n  file_actions: execve\n  bases:\n    - base: printf\n",
    )
    .unwrap();
    let o = guard([
        "run",
        "--recipes",
        "nc.yaml",
        "--",
        "sh",
        "-c",
        "/usr/bin/printf -l >/dev/null; /usr/bin/printf x >/dev/null",
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert_eq!(
        o.stderr.matches("FINDING netcat_listener_exec").count(),
        1,
        "{}",
        o.stderr
    );
}

#[test]
fn help_and_version() {
    let dir = tempdir("cli-help");
    let o = guard(["--version"]).cwd(&dir).run();
    assert_eq!(o.code, Some(0));
    assert_eq!(
        o.stdout.trim(),
        format!("guard {}", env!("CARGO_PKG_VERSION"))
    );
    let o = guard(["run", "--help"]).cwd(&dir).run();
    assert_eq!(o.code, Some(0));
    for flag in ["--trace", "--report", "--recipes", "--config", "--mode"] {
        assert!(o.stdout.contains(flag), "{flag}: {}", o.stdout);
    }
}

#[test]
fn real_time_signals_are_delivered() {
    let dir = tempdir("cli-rtsig");
    // SIGRTMIN (34 with glibc) kills a shell that does not handle it: 128 + 34.
    let o = guard(["run", "--", "sh", "-c", "kill -s RTMIN $$; echo survived"])
        .cwd(&dir)
        .run();
    assert_eq!(o.code, Some(162), "{}{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("survived"));
}

#[test]
fn clone_untraced_cannot_leave_the_traced_tree() {
    let dir = tempdir("cli-untraced");
    let bin = dir.join("untraced");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/untraced_clone.c"
    );
    let cc = Command::new("cc")
        .args(["-o", bin.to_str().unwrap(), src])
        .status()
        .unwrap();
    assert!(cc.success());
    // Without guard the clone succeeds; under guard it is refused, so nothing runs untraced.
    let bare = Command::new(&bin).output().unwrap();
    assert_eq!(
        bare.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bare.stdout)
    );
    let o = guard(["run", "--", bin.to_str().unwrap()]).cwd(&dir).run();
    assert_eq!(o.code, Some(3), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("clone refused: Operation not permitted"),
        "{}",
        o.stdout
    );
}

#[test]
fn a_zombie_leader_left_behind_does_not_stall_guard() {
    let dir = tempdir("cli-zombie");
    let bin = dir.join("zl");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zombie_leader.c"
    );
    let cc = Command::new("cc")
        .args(["-pthread", "-o", bin.to_str().unwrap(), src])
        .status()
        .unwrap();
    assert!(cc.success());
    let started = Instant::now();
    let o = guard([
        "run",
        "--",
        "sh",
        "-c",
        &format!("{} & sleep 0.3", bin.display()),
    ])
    .cwd(&dir)
    .run();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {}",
        started.elapsed(),
        o.stderr
    );
    assert!(!o.stderr.contains("did not let go"), "{}", o.stderr);
}
