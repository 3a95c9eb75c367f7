//! The kernel's proc connector: fork, exec and exit events of every process on the host, over a
//! netlink socket (`NETLINK_CONNECTOR`, group `CN_IDX_PROC`). Root (or CAP_NET_ADMIN) only, and
//! only in the initial network namespace.
//!
//! The kernel numbers the messages it sends per CPU (`cn_msg.seq`), so a gap in a CPU's
//! sequence is a count of events we did not receive; a full receive buffer shows as `ENOBUFS`.
//! Both are counted, never ignored.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// `what`, `cpu`, `timestamp_ns` before the event data.
const PROC_EVENT_HDRLEN: usize = 16;

const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 1;
const PROC_EVENT_EXEC: u32 = 2;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One event of interest from the proc connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new task: a process when `child_pid == child_tgid`, else a thread.
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    /// A task ended; `exit_code` is the wait status (code << 8 | signal).
    Exit {
        pid: u32,
        tgid: u32,
        exit_code: u32,
    },
    /// A task renamed itself (`prctl(PR_SET_NAME)`, a write to `/proc/PID/comm`); exec sets
    /// the name too, but without this event.
    Comm {
        pid: u32,
        tgid: u32,
        comm: crate::event::Bytes,
    },
    /// The kernel's answer to our subscription (`err` 0 on success).
    Ack {
        err: u32,
    },
    /// Any other event (uid/gid/sid/comm/ptrace/coredump changes).
    Other,
}

/// A connector message as received: the CPU's sequence number and the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub cpu: u32,
    pub seq: u32,
    pub timestamp_ns: u64,
    pub event: ProcEvent,
}

/// Why a datagram could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated {what}: {len} bytes")]
    Truncated { what: &'static str, len: usize },
    #[error("netlink message length {len} is out of bounds (datagram of {available} bytes)")]
    BadLength { len: usize, available: usize },
    #[error("not a proc connector message (idx {idx}, val {val})")]
    NotProc { idx: u32, val: u32 },
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Parses one datagram, which may hold several netlink messages. Never panics, whatever the
/// bytes: every length is checked against what is there.
pub fn parse_datagram(buf: &[u8]) -> Result<Vec<Message>, ParseError> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= NLMSG_HDRLEN {
        let len = u32_at(buf, off) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() - off {
            return Err(ParseError::BadLength {
                len,
                available: buf.len() - off,
            });
        }
        out.push(parse_cn_msg(&buf[off + NLMSG_HDRLEN..off + len])?);
        // Netlink messages are 4-byte aligned.
        off += (len + 3) & !3;
        if off > buf.len() {
            break;
        }
    }
    if out.is_empty() {
        return Err(ParseError::Truncated {
            what: "netlink header",
            len: buf.len(),
        });
    }
    Ok(out)
}

fn parse_cn_msg(b: &[u8]) -> Result<Message, ParseError> {
    if b.len() < CN_MSG_LEN {
        return Err(ParseError::Truncated {
            what: "connector header",
            len: b.len(),
        });
    }
    let (idx, val) = (u32_at(b, 0), u32_at(b, 4));
    if idx != CN_IDX_PROC || val != CN_VAL_PROC {
        return Err(ParseError::NotProc { idx, val });
    }
    let seq = u32_at(b, 8);
    let data_len = u16_at(b, 16) as usize;
    let data = &b[CN_MSG_LEN..];
    if data.len() < data_len || data_len < PROC_EVENT_HDRLEN {
        return Err(ParseError::Truncated {
            what: "proc event",
            len: data.len().min(data_len),
        });
    }
    let data = &data[..data_len];
    let what = u32_at(data, 0);
    let cpu = u32_at(data, 4);
    let timestamp_ns = u64_at(data, 8);
    let ev = &data[PROC_EVENT_HDRLEN..];
    let need = |n: usize| {
        if ev.len() < n {
            Err(ParseError::Truncated {
                what: "proc event data",
                len: ev.len(),
            })
        } else {
            Ok(())
        }
    };
    let event = match what {
        PROC_EVENT_NONE => {
            need(4)?;
            ProcEvent::Ack { err: u32_at(ev, 0) }
        }
        PROC_EVENT_FORK => {
            need(16)?;
            ProcEvent::Fork {
                parent_tgid: u32_at(ev, 4),
                child_pid: u32_at(ev, 8),
                child_tgid: u32_at(ev, 12),
            }
        }
        PROC_EVENT_EXEC => {
            need(8)?;
            ProcEvent::Exec {
                pid: u32_at(ev, 0),
                tgid: u32_at(ev, 4),
            }
        }
        PROC_EVENT_COMM => {
            need(24)?;
            let raw = &ev[8..24];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            ProcEvent::Comm {
                pid: u32_at(ev, 0),
                tgid: u32_at(ev, 4),
                comm: crate::event::Bytes::from(&raw[..end]),
            }
        }
        PROC_EVENT_EXIT => {
            need(12)?;
            ProcEvent::Exit {
                pid: u32_at(ev, 0),
                tgid: u32_at(ev, 4),
                exit_code: u32_at(ev, 8),
            }
        }
        _ => ProcEvent::Other,
    };
    Ok(Message {
        cpu,
        seq,
        timestamp_ns,
        event,
    })
}

/// Counts events missed, per CPU sequence gaps.
#[derive(Debug, Default)]
pub struct LossCounter {
    next: HashMap<u32, u32>,
    /// Events known missing from sequence gaps.
    pub gaps: u64,
    /// Times the socket reported `ENOBUFS` (its buffer overflowed).
    pub overflows: u64,
}

impl LossCounter {
    /// Accounts for a received message; returns how many were missed just before it.
    pub fn observe(&mut self, cpu: u32, seq: u32) -> u64 {
        let missed = match self.next.get(&cpu) {
            Some(&want) => {
                let d = seq.wrapping_sub(want);
                // A step back (more than half the space ahead) is a stale message, not a loss.
                if d >= u32::MAX / 2 {
                    return 0;
                }
                d as u64
            }
            None => 0,
        };
        self.next.insert(cpu, seq.wrapping_add(1));
        self.gaps += missed;
        missed
    }

    /// Events lost: the gaps, and at least one per overflow that no gap accounts for.
    pub fn lost(&self) -> u64 {
        self.gaps.max(self.overflows)
    }
}

/// A subscribed proc connector socket.
pub struct Connector {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// Why subscribing failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("cannot open a NETLINK_CONNECTOR socket: {0} (root or CAP_NET_ADMIN is needed)")]
    Socket(Errno),
    #[error("cannot bind to the proc connector group: {0} (root or CAP_NET_ADMIN is needed)")]
    Bind(Errno),
    #[error("cannot subscribe to process events: {0}")]
    Send(Errno),
}

impl Connector {
    /// Opens the socket, sets a receive buffer of `rcvbuf` bytes (forced past the sysctl limit
    /// when privileged) and subscribes to process events.
    pub fn subscribe(rcvbuf: usize) -> Result<Connector, SubscribeError> {
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(SubscribeError::Socket(Errno::last()));
        }
        // SAFETY: socket(2) returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = rcvbuf as libc::c_int;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a valid pointer to an int and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: bind with a valid sockaddr_nl and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(SubscribeError::Bind(Errno::last()));
        }
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + CN_MSG_LEN + 4);
        msg.extend_from_slice(&((NLMSG_HDRLEN + CN_MSG_LEN + 4) as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes()); // port id
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: send(2) of a buffer we own.
        let rc = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(SubscribeError::Send(Errno::last()));
        }
        Ok(Connector {
            fd,
            buf: vec![0; 1 << 16],
        })
    }

    /// The socket, for `poll(2)`.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Receives one datagram (blocking unless `nonblocking`). `Err(ENOBUFS)` means the
    /// receive buffer overflowed and events were dropped; `Err(EAGAIN)` that nothing is there.
    pub fn recv(&mut self, nonblocking: bool) -> Result<Vec<Message>, Errno> {
        let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: recv(2) into a buffer we own, bounded by its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                flags,
            )
        };
        if n < 0 {
            return Err(Errno::last());
        }
        // A malformed datagram from the kernel is not expected; it is skipped, not fatal.
        Ok(parse_datagram(&self.buf[..n as usize]).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a datagram as the kernel sends it.
    pub(crate) fn datagram(cpu: u32, seq: u32, what: u32, data: &[u32]) -> Vec<u8> {
        let payload = PROC_EVENT_HDRLEN + 4 * data.len().max(6);
        let len = NLMSG_HDRLEN + CN_MSG_LEN + payload;
        let mut b = Vec::new();
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        b.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(payload as u16).to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&cpu.to_ne_bytes());
        b.extend_from_slice(&123u64.to_ne_bytes());
        for i in 0..data.len().max(6) {
            b.extend_from_slice(&data.get(i).copied().unwrap_or(0).to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_fork_exec_exit() {
        let m = parse_datagram(&datagram(1, 7, PROC_EVENT_FORK, &[10, 10, 11, 11])).unwrap();
        assert_eq!(
            m,
            vec![Message {
                cpu: 1,
                seq: 7,
                timestamp_ns: 123,
                event: ProcEvent::Fork {
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                }
            }]
        );
        let m = parse_datagram(&datagram(0, 8, PROC_EVENT_EXEC, &[11, 11])).unwrap();
        assert_eq!(m[0].event, ProcEvent::Exec { pid: 11, tgid: 11 });
        let m = parse_datagram(&datagram(0, 9, PROC_EVENT_EXIT, &[11, 11, 256, 17])).unwrap();
        assert_eq!(
            m[0].event,
            ProcEvent::Exit {
                pid: 11,
                tgid: 11,
                exit_code: 256
            }
        );
        let m = parse_datagram(&datagram(0, 9, 0x4, &[11, 11])).unwrap();
        assert_eq!(m[0].event, ProcEvent::Other);
        let name = u32::from_ne_bytes(*b"ngin");
        let m = parse_datagram(&datagram(
            0,
            10,
            PROC_EVENT_COMM,
            &[11, 11, name, u32::from_ne_bytes(*b"x\0\0\0")],
        ))
        .unwrap();
        assert_eq!(
            m[0].event,
            ProcEvent::Comm {
                pid: 11,
                tgid: 11,
                comm: "nginx".into()
            }
        );
    }

    #[test]
    fn rejects_short_and_lying_lengths() {
        let good = datagram(0, 1, PROC_EVENT_EXEC, &[1, 1]);
        for cut in 0..good.len() {
            assert!(parse_datagram(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = good.clone();
        lying[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&lying),
            Err(ParseError::BadLength { .. })
        ));
        let mut other = good;
        other[16..20].copy_from_slice(&9u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&other),
            Err(ParseError::NotProc { idx: 9, .. })
        ));
    }

    #[test]
    fn counts_sequence_gaps_per_cpu() {
        let mut c = LossCounter::default();
        assert_eq!(c.observe(0, 100), 0);
        assert_eq!(c.observe(1, 5), 0);
        assert_eq!(c.observe(0, 101), 0);
        assert_eq!(c.observe(0, 105), 3);
        assert_eq!(c.observe(1, 6), 0);
        assert_eq!(
            c.observe(0, 90),
            0,
            "a stale message, not a loss of 4 billion"
        );
        assert_eq!(c.observe(0, 106), 0);
        assert_eq!(c.observe(2, u32::MAX - 1), 0);
        assert_eq!(c.observe(2, u32::MAX), 0);
        assert_eq!(c.observe(2, 1), 1, "wraps around: 0 is missing");
        assert_eq!(c.gaps, 4);
        c.overflows = 5;
        assert_eq!(c.lost(), 5);
    }
}
