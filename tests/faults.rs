//! Faults (issue 7): a second `guard start`, `guard stop` without a watcher, the state
//! directory removed while a watcher runs, the disk filling up under `guard run --trace`. Each
//! gives a clear message, exit status 125 (guard's own failure), and never a clean verdict that
//! hides lost evidence. Root is needed (the watcher, a small tmpfs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{alive, guard, need_root};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("guard-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn watcher_pid(state: &Path) -> u32 {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("watcher.json")).unwrap()).unwrap();
    info["pid"].as_u64().unwrap() as u32
}

#[test]
fn second_start_and_stop_without_start_are_refused_clearly() {
    if !need_root("second_start_and_stop_without_start_are_refused_clearly") {
        return;
    }
    let state = dir("twice");
    let s = state.to_str().unwrap();
    // Never started: nothing to stop.
    let o = guard(["stop", "--state-dir", s]).run();
    assert_eq!(o.code, Some(125), "{}", o.text());
    assert!(o.stderr.contains("does not exist"), "{}", o.text());
    let o = guard(["start", "--state-dir", s]).run();
    assert_eq!(o.code, Some(0), "{}", o.text());
    let pid = watcher_pid(&state);
    // A second start while it runs: refused, naming the running watcher, which is untouched.
    let o = guard(["start", "--state-dir", s]).run();
    assert_eq!(o.code, Some(125), "{}", o.text());
    assert!(
        o.stderr.contains(&format!("already running (pid {pid})")),
        "{}",
        o.text()
    );
    assert!(alive(pid));
    let o = guard(["stop", "--state-dir", s]).run();
    assert_eq!(o.code, Some(0), "{}", o.text());
    // Stopped twice: the second says there is nothing to stop.
    let o = guard(["stop", "--state-dir", s]).run();
    assert_eq!(o.code, Some(125), "{}", o.text());
    assert!(o.stderr.contains("no watcher was started"), "{}", o.text());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_watcher_whose_state_directory_is_removed_seals_and_stops() {
    if !need_root("a_watcher_whose_state_directory_is_removed_seals_and_stops") {
        return;
    }
    let state = dir("removed");
    let trace_dir = dir("removed-trace");
    std::fs::create_dir_all(&trace_dir).unwrap();
    let trace = trace_dir.join("trace.jsonl");
    let o = guard([
        "start",
        "--state-dir",
        state.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ])
    .run();
    assert_eq!(o.code, Some(0), "{}", o.text());
    let pid = watcher_pid(&state);
    // As `rm -rf` would, again if the watcher's once-a-second status file appears meanwhile
    // (ENOTEMPTY).
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(&state) {
        tries += 1;
        assert!(tries < 50, "cannot remove {}: {e}", state.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the watcher runs on, orphaned");
    // What it recorded is sealed and can still be checked.
    let o = guard(["check", "--trace", trace.to_str().unwrap()]).run();
    assert_eq!(o.code, Some(0), "{}", o.text());
    let o = guard(["stop", "--state-dir", state.to_str().unwrap()]).run();
    assert_eq!(o.code, Some(125), "{}", o.text());
    assert!(o.stderr.contains("removed while one ran"), "{}", o.text());
    let _ = std::fs::remove_dir_all(&trace_dir);
}

#[test]
fn a_full_disk_under_the_trace_is_never_a_clean_result() {
    if !need_root("a_full_disk_under_the_trace_is_never_a_clean_result") {
        return;
    }
    let mnt = dir("full");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    let o = common::command("mount", ["-t", "tmpfs", "-o", "size=16k", "tmpfs", m]).run();
    if o.code != Some(0) {
        common::skip(
            "a_full_disk_under_the_trace_is_never_a_clean_result",
            &format!("mounting a tmpfs ({})", o.stderr.trim()),
            "privilege to mount (CAP_SYS_ADMIN: run as root outside a restricted container)",
        );
        return;
    }
    let trace = mnt.join("t.jsonl");
    let report =
        std::env::temp_dir().join(format!("guard-faults-full-{}.json", std::process::id()));
    let o = guard([
        "run",
        "--trace",
        trace.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "for i in $(seq 100); do /bin/true; done; echo done",
    ])
    .run();
    // The command ran to its end; guard says the trace is incomplete and fails (125).
    assert!(o.stdout.contains("done"), "{}", o.text());
    assert_eq!(o.code, Some(125), "{}", o.text());
    assert!(o.stderr.contains("No space left on device"), "{}", o.text());
    // The live verdict is still reported, from all the execs.
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(r["stats"]["execs"].as_u64().unwrap() >= 101, "{r}");
    // Re-checking the partial trace is a critical finding, never a pass.
    let o = guard(["check", "--trace", trace.to_str().unwrap()]).run();
    assert_eq!(o.code, Some(3), "{}", o.text());
    assert!(
        o.text().contains("CRITICAL trace_incomplete"),
        "{}",
        o.text()
    );
    let _ = Command::new("umount").arg(m).status();
    let _ = std::fs::remove_dir_all(&mnt);
    let _ = std::fs::remove_file(&report);
}
