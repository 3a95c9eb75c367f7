//! The proc connector against the real kernel (root only, initial namespaces).

mod common;

use std::time::{Duration, Instant};

use guard::sources::connector::{Connector, ProcEvent};

#[test]
fn sees_fork_exec_and_exit_of_a_real_process() {
    let mut c = Connector::subscribe(8 << 20).expect("subscribe (the tests run as root)");
    let child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    let mut child = child;
    child.wait().unwrap();
    let (mut fork, mut exec, mut exit) = (false, false, false);
    let start = Instant::now();
    while !(fork && exec && exit) && start.elapsed() < Duration::from_secs(10) {
        let msgs = match c.recv(true) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => panic!("recv: {e}"),
        };
        for m in msgs {
            match m.event {
                ProcEvent::Fork {
                    child_pid,
                    child_tgid,
                    ..
                } if child_tgid == pid => fork |= child_pid == pid,
                ProcEvent::Exec { tgid, .. } if tgid == pid => exec = true,
                ProcEvent::Exit { tgid, pid: p, .. } if tgid == pid && p == pid => exit = true,
                _ => {}
            }
        }
    }
    assert!(fork && exec && exit, "fork {fork} exec {exec} exit {exit}");
}
