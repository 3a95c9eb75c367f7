//! The watcher's channel: how the post step gets the verdict, and the only way it reaches the job.
//!
//! An abstract Unix socket (no file to replace or delete; its name is in the post step's saved
//! state). Both ends check who is at the other end with the kernel's peer credentials
//! (`SO_PEERCRED`), never with a secret alone (saved state is printed in the runner's debug
//! logs, and a same-user process reads `/proc/PID/environ`):
//!
//! - the watcher answers only a process the door verified ([`super::door`]) or the guard binary
//!   such a process started: its parent verified (pid and start time), its program the
//!   root-owned copy of the guard sealed at `pre`;
//! - the post step talks only to the watcher `pre` started: the listening process's pid and
//!   start time saved at `pre`, uid 0.
//!
//! The exchange is one request line and answer lines ([`super::message`]): `accepted` at once,
//! then the verdict once the trace is sealed and checked. No `accepted` within
//! [`ACCEPT_BOUND`] means the watcher is frozen.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::door::Ledger;
use super::message::{Message, Request};
use super::session::Session;

/// How long the post step waits for the watcher to take its request.
pub const ACCEPT_BOUND: Duration = Duration::from_secs(15);
/// How long it waits for the verdict after that (sealing, checking a large trace).
pub const VERDICT_BOUND: Duration = Duration::from_secs(300);
/// How long the post step waits for the watcher to exit after the verdict.
const EXIT_BOUND: Duration = Duration::from_secs(10);
/// The longest answer read (a verdict carries the summary, the report and SARIF).
const ANSWER_MAX: u64 = 256 << 20;

/// A process's credentials as the kernel gives them for a socket's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
}

pub fn peer(stream: &UnixStream) -> std::io::Result<Peer> {
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) into a ucred we own, with its size.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid as u32,
        uid: cred.uid,
    })
}

/// Binds the channel (before any build step runs, so that nothing else holds its name).
pub fn bind(name: &str) -> std::io::Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixListener::bind_addr(&addr)
}

/// A verdict request the watcher took: answered once the trace is sealed.
pub type Pending = Arc<Mutex<Option<UnixStream>>>;

/// Serves the channel until a verified step asks for the verdict: then `pending` holds its
/// connection, `stop` is set and the thread ends. Requests from anyone else are refused (and
/// said in the log).
pub fn serve(
    listener: UnixListener,
    session: Arc<Session>,
    ledger: Arc<Mutex<Ledger>>,
    pending: Pending,
    stop: Arc<std::sync::atomic::AtomicBool>,
    wake: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("channel".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let who = match peer(&conn) {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                let mut line = Vec::new();
                let _ = BufReader::new((&conn).take(4096)).read_until(b'\n', &mut line);
                let refused = |conn: &mut UnixStream, why: String| {
                    log!(
                        "{} watcher: channel: refused pid {} (uid {}): {why}",
                        crate::time::now(),
                        who.pid,
                        who.uid
                    );
                    let _ = writeln!(conn, "{}", Message::Error { message: why }.to_line());
                };
                match Request::parse(&line) {
                    Ok(Request::Verdict) => {}
                    Err(e) => {
                        refused(&mut conn, e);
                        continue;
                    }
                }
                let verified = {
                    let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
                    admits(&session, &l, who)
                };
                if let Err(why) = verified {
                    refused(&mut conn, why);
                    continue;
                }
                if writeln!(conn, "{}", Message::Accepted.to_line()).is_err() {
                    continue;
                }
                log!(
                    "{} watcher: channel: verdict requested by pid {}",
                    crate::time::now(),
                    who.pid
                );
                *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                stop.store(true, Ordering::SeqCst);
                wake();
                return;
            }
        })
        .expect("spawning the channel thread")
}

/// Whether `who` may have the verdict: a process the door verified, or the sealed guard binary
/// started by one.
fn admits(session: &Session, ledger: &Ledger, who: Peer) -> Result<(), String> {
    if who.uid != session.user && who.uid != 0 {
        return Err(format!(
            "uid {} is not the runner's ({})",
            who.uid, session.user
        ));
    }
    let is_verified = |pid: u32| {
        ledger
            .verified
            .iter()
            .any(|v| v.pid == pid && super::starttime(pid) == Some(v.starttime))
    };
    if is_verified(who.pid) {
        return Ok(());
    }
    let parent = parent_of(who.pid).ok_or("its parent is unknown")?;
    if !is_verified(parent) {
        return Err(format!(
            "neither it nor its parent (pid {parent}) is a step the door verified"
        ));
    }
    let exe = std::fs::metadata(format!("/proc/{}/exe", who.pid))
        .map_err(|e| format!("its program: {e}"))?;
    if (exe.dev(), exe.ino()) != (session.guard.dev, session.guard.ino) {
        return Err("its program is not the guard binary sealed at pre".into());
    }
    Ok(())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    u32::try_from(stat.ppid).ok()
}

/// Sends `verdict` on a pending request.
pub fn answer(conn: &mut UnixStream, message: &Message) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = writeln!(conn, "{}", message.to_line());
}

/// Why the post step could not get a verdict it can trust: each is a `verdict_tampered` finding.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the watcher's channel does not answer ({0}): the watcher was killed or never started"
    )]
    Gone(std::io::Error),
    #[error("the process on the watcher's channel is pid {found} (uid {uid}), not the watcher pre started (pid {expected}): the channel was taken over")]
    Impostor { found: u32, uid: u32, expected: u32 },
    #[error(
        "the watcher (pid {0}) did not take the request within {1} s: it is frozen (SIGSTOP?)"
    )]
    Frozen(u32, u64),
    #[error("the watcher refused the request: {0}")]
    Refused(String),
    #[error("the watcher gave no verdict: {0}")]
    Broken(String),
}

/// The post step's side: asks the watcher (`pid`, started at `starttime`) on channel `name`
/// for the verdict.
pub fn request_verdict(
    name: &str,
    pid: u32,
    starttime: u64,
) -> Result<super::message::Verdict, ClientError> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(ClientError::Gone)?;
    let mut conn = UnixStream::connect_addr(&addr).map_err(ClientError::Gone)?;
    let p = peer(&conn).map_err(ClientError::Gone)?;
    if p.pid != pid || p.uid != 0 || super::starttime(pid) != Some(starttime) {
        return Err(ClientError::Impostor {
            found: p.pid,
            uid: p.uid,
            expected: pid,
        });
    }
    writeln!(conn, "{}", Request::Verdict.to_line())
        .map_err(|e| ClientError::Broken(e.to_string()))?;
    let mut reader = BufReader::new(
        conn.try_clone()
            .map_err(ClientError::Gone)?
            .take(ANSWER_MAX),
    );
    let _ = conn.set_read_timeout(Some(ACCEPT_BOUND));
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => return Err(ClientError::Broken("the channel closed".into())),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ClientError::Frozen(pid, ACCEPT_BOUND.as_secs()))
        }
        Err(e) => return Err(ClientError::Broken(e.to_string())),
    }
    match Message::parse(&line).map_err(ClientError::Broken)? {
        Message::Accepted => {}
        Message::Error { message } => return Err(ClientError::Refused(message)),
        other => return Err(ClientError::Broken(format!("unexpected {other:?}"))),
    }
    let _ = conn.set_read_timeout(Some(VERDICT_BOUND));
    line.clear();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => {
            return Err(ClientError::Broken(
                "the channel closed before the verdict".into(),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(ClientError::Broken(e.to_string())),
    }
    let verdict = match Message::parse(&line).map_err(ClientError::Broken)? {
        Message::Verdict(v) => *v,
        Message::Error { message } => return Err(ClientError::Broken(message)),
        other => return Err(ClientError::Broken(format!("unexpected {other:?}"))),
    };
    // The channel closes when the watcher exits, having given back what it took (mounts, sudo).
    let _ = conn.set_read_timeout(Some(EXIT_BOUND));
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    Ok(verdict)
}
