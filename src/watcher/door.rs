//! The door: every step the runner's worker starts is looked at once, at its first exec, before
//! it runs an instruction (the ptrace follower holds it at its exec stop). A step that is not
//! one of this action's (`node <action>/dist/*.js`) is let go; one of ours runs only if what it
//! will run is what `pre` sealed:
//!
//! - its program is the runner's `node` that ran `pre` — same file (device and inode) and same
//!   bytes (hashed through `/proc/PID/exe`, the file being mapped);
//! - every script of the action's `dist/` has the bytes it had at `pre`;
//! - the variables that change what code `node`, the loader or OpenSSL load
//!   ([`session::is_code_variable`]) are those `pre` had, by value. One a step added through
//!   `$GITHUB_ENV` that only widens the library search, `LD_LIBRARY_PATH`
//!   ([`session::DISARMED_VARIABLES`]; setup actions add it for their own tools), is disarmed
//!   instead: renamed `XD_LIBRARY_PATH` in the process's environment block before the loader
//!   reads it. The post step needs no library outside the system's.
//!
//! A step of ours that fails any of these is killed before it runs, with the reason written to
//! its standard output (the job's log, as an error annotation): the critical finding
//! `verdict_tampered`. The steps that pass are remembered: only they (or the guard binary they
//! start) may ask the watcher for the verdict ([`super::channel`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::event::ExecEvent;

use super::session::{self, Session};

/// What the door decided about a process at its exec.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a step of this action.
    NotOurs,
    /// One of ours, as sealed; `disarmed` lists the variables removed from its environment.
    Ours { disarmed: Vec<String>, post: bool },
    /// The program the post step started: the guard binary sealed at `pre`.
    SealedGuard,
    /// One of ours, changed since `pre`: killed, for these reasons.
    Refused(Vec<String>),
}

impl Decision {
    /// Whether the tracer keeps following the process: the post step, up to the guard binary
    /// it starts, which must be the sealed one (a root step could replace that copy).
    pub fn keep_following(&self) -> bool {
        matches!(self, Decision::Ours { post: true, .. })
    }
}

/// A process the door let in: its pid and start time (so that a reused pid is not taken for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub pid: u32,
    pub starttime: u64,
    /// It runs the post step (whose child must be the sealed guard binary).
    pub post: bool,
}

/// The door's state, shared with the channel.
#[derive(Default)]
pub struct Ledger {
    pub verified: Vec<Verified>,
    /// Why the verdict cannot be trusted, as found so far (each a `verdict_tampered` finding).
    pub tampered: Vec<String>,
    /// Notes for the summary (a variable disarmed).
    pub notes: Vec<String>,
}

pub struct Door {
    session: Arc<Session>,
    pub ledger: Arc<Mutex<Ledger>>,
    /// Set when the post step itself is refused: nothing will ask for the verdict any more.
    stop: Arc<AtomicBool>,
}

impl Door {
    pub fn new(session: Arc<Session>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) -> Door {
        Door {
            session,
            ledger,
            stop,
        }
    }

    /// Looks at `pid`, stopped at the exec `event`; kills it when it is refused.
    pub fn at_exec(&self, pid: i32, event: &ExecEvent) -> Decision {
        if event.ppid != self.session.worker {
            return self.child_of_post(pid, event);
        }
        if !self.names_our_script(event) {
            return Decision::NotOurs;
        }
        let post = event
            .argv
            .iter()
            .any(|a| a.as_bytes().ends_with(b"/post.js"));
        let decision = match (
            self.unexpected_arguments(event),
            judge(&self.session, pid, post),
        ) {
            (None, decision) => decision,
            (Some(why), Decision::Refused(mut more)) => {
                more.insert(0, why);
                Decision::Refused(more)
            }
            (Some(why), _) => Decision::Refused(vec![why]),
        };
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        match &decision {
            Decision::Ours { disarmed, post } => {
                if let Some(starttime) = super::starttime(pid as u32) {
                    ledger.verified.push(Verified {
                        pid: pid as u32,
                        starttime,
                        post: *post,
                    });
                }
                for name in disarmed {
                    ledger.notes.push(format!(
                        "{name} was set by a step after pre; the guard's own steps ran without it (it was removed from their environment before the loader read it)"
                    ));
                }
            }
            Decision::Refused(why) => {
                let script = self.script_of(event);
                for w in why {
                    ledger.tampered.push(format!(
                        "the step running {script} was stopped before it ran: {w}"
                    ));
                }
                refuse(pid, self.session.user, &script, why);
                log!(
                    "{} watcher: door: refused pid {pid} ({script}): {}",
                    crate::time::now(),
                    why.join("; ")
                );
                if post {
                    log!(
                        "{} watcher: the post step was refused; stopping",
                        crate::time::now()
                    );
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
            Decision::NotOurs | Decision::SealedGuard => {}
        }
        decision
    }

    /// A process started by the post step the door let in: it must run the guard binary sealed
    /// at `pre` (lib.js runs nothing else), the same file with the same bytes.
    fn child_of_post(&self, pid: i32, event: &ExecEvent) -> Decision {
        let parent_is_post = {
            let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.verified.iter().any(|v| {
                v.post && v.pid == event.ppid && super::starttime(v.pid) == Some(v.starttime)
            })
        };
        if !parent_is_post {
            return Decision::NotOurs;
        }
        let guard = &self.session.guard;
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let why = match std::fs::metadata(&exe) {
            Ok(m) if (m.dev(), m.ino()) == (guard.dev, guard.ino) => {
                guard.verify(&exe).err().map(|e| {
                    e.replace(
                        &exe.display().to_string(),
                        &guard.path.display().to_string(),
                    )
                })
            }
            Ok(_) => Some(format!(
                "the post step started {}, not the guard binary sealed at pre ({})",
                crate::escape::terminal(event.exe.as_bytes()),
                guard.path.display()
            )),
            Err(e) => Some(format!(
                "cannot read the program the post step started: {e}"
            )),
        };
        match why {
            None => Decision::SealedGuard,
            Some(why) => {
                let script = "the guard binary";
                refuse(pid, self.session.user, script, std::slice::from_ref(&why));
                log!(
                    "{} watcher: door: refused pid {pid}: {why}",
                    crate::time::now()
                );
                let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
                ledger.tampered.push(why.clone());
                self.stop.store(true, Ordering::SeqCst);
                Decision::Refused(vec![why])
            }
        }
    }

    /// Why the arguments are not those the runner gives node for a script of ours: the script
    /// alone, after `--no-maglev` (the runner adds it when `ACTIONS_RUNNER_DISABLE_NODE_MAGLEV`
    /// is set).
    fn unexpected_arguments(&self, event: &ExecEvent) -> Option<String> {
        let args: Vec<&[u8]> = event.argv.iter().skip(1).map(|a| a.as_bytes()).collect();
        let script = match args.as_slice() {
            [script] | [b"--no-maglev", script] => script,
            _ => {
                return Some(format!(
                    "node's arguments are not the runner's ({})",
                    crate::escape::terminal_argv(&event.argv)
                ))
            }
        };
        let path = resolve(event, script);
        let sealed = self.session.scripts.iter().any(|s| {
            s.path.file_name() == path.file_name()
                && path.parent().and_then(|p| p.canonicalize().ok()).as_deref()
                    == Some(self.session.scripts_dir.as_path())
        });
        (!sealed).then(|| {
            format!(
                "its script {} is not one of the action's scripts sealed at pre",
                path.display()
            )
        })
    }

    /// Whether an argument of `event` names a file of the action's `dist/`.
    fn names_our_script(&self, event: &ExecEvent) -> bool {
        self.our_script(event).is_some()
    }

    /// The first argument of `event` that names a file of the action's `dist/`.
    fn our_script(&self, event: &ExecEvent) -> Option<PathBuf> {
        event.argv.iter().skip(1).find_map(|a| {
            let path = resolve(event, a.as_bytes());
            let parent = path.parent().and_then(|p| p.canonicalize().ok());
            (parent.as_deref() == Some(self.session.scripts_dir.as_path())).then_some(path)
        })
    }

    /// The script of ours `event` runs, as shown in messages.
    fn script_of(&self, event: &ExecEvent) -> String {
        self.our_script(event)
            .map(|p| crate::escape::terminal(p.as_os_str().as_encoded_bytes()))
            .unwrap_or_default()
    }
}

/// An argument of `event` as a path: a relative one is taken from the process's directory.
fn resolve(event: &ExecEvent, arg: &[u8]) -> PathBuf {
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(arg));
    match &event.cwd {
        Some(cwd) if path.is_relative() => {
            PathBuf::from(std::ffi::OsStr::from_bytes(cwd.as_bytes())).join(path)
        }
        _ => path,
    }
}

/// The checks of the module doc, on `pid` at its exec stop.
pub fn judge(session: &Session, pid: i32, post: bool) -> Decision {
    let mut why = Vec::new();
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    match std::fs::metadata(&exe) {
        Ok(m) if (m.dev(), m.ino()) == (session.node.dev, session.node.ino) => {
            if let Err(e) = session.node.verify(&exe) {
                why.push(e.replace(
                    &format!("/proc/{pid}/exe"),
                    &session.node.path.display().to_string(),
                ));
            }
        }
        Ok(_) => why.push(format!(
            "its program {} is not the runner's node that ran pre ({})",
            std::fs::read_link(&exe)
                .map(|p| crate::escape::terminal(p.as_os_str().as_encoded_bytes()))
                .unwrap_or_else(|_| "?".into()),
            session.node.path.display()
        )),
        Err(e) => why.push(format!("cannot read its program: {e}")),
    }
    for script in &session.scripts {
        if let Err(e) = script.verify(&script.path) {
            why.push(e);
        }
    }
    let env = match code_env_of(pid) {
        Ok(env) => env,
        Err(e) => {
            why.push(format!("cannot read its environment: {e}"));
            return Decision::Refused(why);
        }
    };
    let (refused, disarm) = compare_env(&session.code_env, &env);
    why.extend(refused);
    if !why.is_empty() {
        return Decision::Refused(why);
    }
    let mut disarmed = Vec::new();
    for name in disarm {
        match disarm_variable(pid, &name) {
            Ok(()) => disarmed.push(name),
            Err(e) => {
                return Decision::Refused(vec![format!(
                    "{name} was set by a step after pre and could not be removed: {e}"
                )])
            }
        }
    }
    Decision::Ours { disarmed, post }
}

/// The variables of `pre` (name → hash) against those of the process (name → value): the
/// reasons to refuse it, and the variables to disarm.
pub fn compare_env(
    sealed: &BTreeMap<String, String>,
    now: &BTreeMap<String, Vec<u8>>,
) -> (Vec<String>, Vec<String>) {
    let mut refused = Vec::new();
    let mut disarm = Vec::new();
    for (name, value) in now {
        let same = sealed
            .get(name)
            .is_some_and(|h| *h == session::hash_value(value));
        if same {
            continue;
        }
        if session::DISARMED_VARIABLES.contains(&name.as_str()) {
            disarm.push(name.clone());
            continue;
        }
        let how = if sealed.contains_key(name) {
            "has another value than at pre"
        } else {
            "was added after pre"
        };
        refused.push(format!(
            "{} {how} (a step wrote it to $GITHUB_ENV?): it changes what code the step loads",
            crate::escape::terminal(name.as_bytes())
        ));
    }
    (refused, disarm)
}

/// The [`session::is_code_variable`] and disarmed variables of `pid`'s environment.
fn code_env_of(pid: i32) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(code_env_in(&raw))
}

/// The variables of an environment block (`NAME=value\0…`) that the door compares.
pub fn code_env_in(raw: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut env = BTreeMap::new();
    for entry in raw.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&entry[..eq]) else {
            continue;
        };
        if session::is_code_variable(name) || session::DISARMED_VARIABLES.contains(&name) {
            env.insert(name.to_string(), entry[eq + 1..].to_vec());
        }
    }
    env
}

/// Renames `name=` to `X…=` (its first letter replaced) in the environment block of `pid`,
/// stopped at its exec: the loader, which has not run yet, never sees it.
fn disarm_variable(pid: i32, name: &str) -> Result<(), String> {
    let (start, end) = env_bounds(pid)?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(|e| format!("/proc/{pid}/mem: {e}"))?;
    let mut block = vec![0u8; (end - start) as usize];
    mem.read_exact_at(&mut block, start)
        .map_err(|e| format!("reading its environment: {e}"))?;
    let prefix = format!("{name}=");
    let mut at = 0usize;
    let mut found = 0;
    for entry in block.split(|&b| b == 0) {
        if entry.starts_with(prefix.as_bytes()) {
            mem.write_all_at(b"X", start + at as u64)
                .map_err(|e| format!("writing its environment: {e}"))?;
            found += 1;
        }
        at += entry.len() + 1;
    }
    if found == 0 {
        return Err(format!("{name} not found in its environment block"));
    }
    Ok(())
}

/// The environment block's bounds (fields 50 and 51 of `/proc/PID/stat`).
fn env_bounds(pid: i32) -> Result<(u64, u64), String> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let (start, end) = stat
        .env_start
        .zip(stat.env_end)
        .ok_or_else(|| format!("no environment bounds in /proc/{pid}/stat"))?;
    if end <= start || end - start > 16 << 20 {
        return Err(format!(
            "implausible environment bounds {start:#x}..{end:#x}"
        ));
    }
    Ok((start, end))
}

/// The error annotation that says why a step was refused: one workflow command, whatever the
/// reasons hold (a path the build chose may carry line breaks or terminal sequences: they are
/// made visible, then escaped for the runner, as every message of ours is).
fn refusal_line(script: &str, why: &[String]) -> String {
    let mut lines = vec![format!(
        "webserver-exec-guard: verdict_tampered: the guard stopped its own step ({script}) before it ran, because a step of this job changed what it would run:"
    )];
    lines.extend(why.iter().map(|w| format!("- {w}")));
    lines.push("Treat the job as compromised: review the steps that ran before this one.".into());
    let text = lines
        .iter()
        .map(|l| crate::escape::terminal(l.as_bytes()))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "::error title=webserver-exec-guard%3A verdict_tampered::{}\n",
        crate::escape::workflow_data(&text)
    )
}

/// Says why on the step's standard output (the job's log: an error annotation), then kills it.
fn refuse(pid: i32, user: u32, script: &str, why: &[String]) {
    let line = refusal_line(script, why);
    // Only to a pipe or socket (the runner's) or a file of the runner's user: the watcher is
    // root, and reopening a descriptor through /proc checks nothing. Appending: a file's start
    // must stay.
    let fd1 = format!("/proc/{pid}/fd/1");
    let writable = std::fs::metadata(&fd1).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        t.is_fifo() || t.is_socket() || (t.is_file() && m.uid() == user)
    });
    if writable {
        if let Ok(mut out) = std::fs::OpenOptions::new().append(true).open(&fd1) {
            let _ = out.write_all(line.as_bytes());
        }
    }
    // SAFETY: kill(2) of our stopped tracee: it dies before running an instruction.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), session::hash_value(v.as_bytes())))
            .collect()
    }

    #[test]
    fn a_refusal_is_one_inert_workflow_command() {
        let line = refusal_line(
            "/a/post.js",
            &["its program /tmp/x\n::error::forged\x1b[2J\u{202e} is not node".into()],
        );
        assert!(line.starts_with("::error title=webserver-exec-guard%3A verdict_tampered::"));
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert!(
            !line.contains('\x1b') && !line.contains('\u{202e}'),
            "{line}"
        );
        assert!(line.contains("\\x1b[2J"), "{line}");
        assert!(!line.contains("\n::error::forged"), "{line}");
    }

    #[test]
    fn the_environment_compared_is_the_code_loading_part() {
        let env = code_env_in(
            b"PATH=/evil\0LD_PRELOAD=/tmp/x.so\0NODE_AUTH_TOKEN=t\0LD_LIBRARY_PATH=/opt/py/lib\0NODE_OPTIONS=--require=x\0junk\0",
        );
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(names, ["LD_LIBRARY_PATH", "LD_PRELOAD", "NODE_OPTIONS"]);
    }

    #[test]
    fn an_added_or_changed_loader_variable_is_refused_and_a_library_path_disarmed() {
        let pre = sealed(&[("LD_LIBRARY_PATH", "/a"), ("NODE_PATH", "/n")]);
        // As at pre: nothing to say.
        let now = code_env_in(b"LD_LIBRARY_PATH=/a\0NODE_PATH=/n\0");
        assert_eq!(compare_env(&pre, &now), (vec![], vec![]));
        // Added and changed.
        let now = code_env_in(b"LD_LIBRARY_PATH=/a\0NODE_PATH=/evil\0LD_PRELOAD=/tmp/x.so\0");
        let (refused, disarm) = compare_env(&pre, &now);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with("LD_PRELOAD was added after pre"),
            "{refused:?}"
        );
        assert!(
            refused[1].starts_with("NODE_PATH has another value"),
            "{refused:?}"
        );
        assert!(disarm.is_empty());
        // A library path a setup action added: disarmed, not refused.
        let now =
            code_env_in(b"LD_LIBRARY_PATH=/opt/hostedtoolcache/Python/lib:/a\0NODE_PATH=/n\0");
        assert_eq!(
            compare_env(&pre, &now),
            (vec![], vec!["LD_LIBRARY_PATH".to_string()])
        );
        // A variable removed since pre loads nothing new.
        let now = code_env_in(b"");
        assert_eq!(compare_env(&pre, &now), (vec![], vec![]));
    }

    #[test]
    fn a_variable_is_disarmed_in_a_stopped_process_before_its_loader_runs() {
        // A child stopped at its exec by PTRACE_TRACEME; its environment block is rewritten
        // through /proc/PID/mem, then it prints what it got.
        use std::os::unix::process::CommandExt;
        let out = std::env::temp_dir().join(format!("guard-disarm-{}", std::process::id()));
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args([
            "-c",
            "printf '%s|%s' \"${LD_LIBRARY_PATH-unset}\" \"${XD_LIBRARY_PATH-unset}\" > \"$OUT\"",
        ])
        .env("LD_LIBRARY_PATH", "/tmp/evil")
        .env("OUT", &out);
        // SAFETY: ptrace(PTRACE_TRACEME) in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        let mut status = 0;
        // SAFETY: waitpid on our child: the SIGTRAP of its exec.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSTOPPED(status));
        disarm_variable(pid, "LD_LIBRARY_PATH").unwrap();
        // SAFETY: detach from our stopped child; it runs on.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "unset|/tmp/evil");
        let _ = std::fs::remove_file(&out);
        assert!(disarm_variable(std::process::id() as i32, "NO_SUCH_VARIABLE_HERE").is_err());
    }
}
