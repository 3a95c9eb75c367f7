//! The self-test: before the watcher says it records, a probe exec of its own must come back
//! through the proc connector (it does not in a non-initial network or PID namespace).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shared::Shared;

/// argv[1] of the self-test's probe exec, followed by a nonce.
pub(super) const PROBE_PREFIX: &str = "webserver-exec-guard-probe-";
/// How long the probe exec of the self-test may take to show up.
const PROBE_BOUND: Duration = Duration::from_secs(3);

/// Runs the probe and waits for the reader to see its exec (by nonce, or by pid when it was
/// read before the pid was known); the error says why the watcher cannot work here.
pub(super) fn self_test(shared: &Shared) -> Result<(), String> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    shared.probe_nonce.store(nonce, Ordering::SeqCst);
    let probe = std::process::Command::new("/bin/true")
        .arg(format!("{PROBE_PREFIX}{nonce}"))
        .stdin(std::process::Stdio::null())
        .spawn();
    let probe_ok = match probe {
        Ok(mut child) => {
            shared.probe_pid.store(child.id(), Ordering::SeqCst);
            let _ = child.wait();
            let start = Instant::now();
            let seen = |shared: &Shared| {
                shared.probe_seen.load(Ordering::SeqCst)
                    || shared
                        .recent_execs
                        .lock()
                        .map(|r| r.contains(&child.id()))
                        .unwrap_or(false)
            };
            while !seen(shared) && start.elapsed() < PROBE_BOUND {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen(shared)
        }
        Err(_) => false,
    };
    if probe_ok {
        return Ok(());
    }
    Err(format!(
        "the proc connector delivered no event for a probe exec within {} s: this happens in a non-initial network or PID namespace (a container job). Use `guard run -- CMD` to trace the build's commands instead.",
        PROBE_BOUND.as_secs()
    ))
}
