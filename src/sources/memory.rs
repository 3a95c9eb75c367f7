//! A stopped tracee's memory, read with `process_vm_readv(2)`: the strings and pointer arrays
//! of an exec's arguments, which the kernel has not copied yet at a seccomp stop, and the path
//! `AT_EXECFN` points at.

use crate::event::Bytes;

/// At most this many arguments, and this many bytes of them, are read from an attempt.
const MAX_ARGS: usize = 1 << 17;
const MAX_ARG_BYTES: usize = 4 << 20;

/// Tracee memory is read in aligned blocks of this size: a block lies wholly inside one page
/// (pages are 4 KiB or a multiple), so it is either readable or not.
const BLOCK: u64 = 4096;
/// Blocks kept by a [`Memory`]: argv's pointers and strings, and the path, usually share two or
/// three.
const KEPT_BLOCKS: usize = 4;

/// A stopped tracee's memory, read one aligned block per `process_vm_readv(2)`, with the last
/// few blocks kept: reading argv no longer costs a system call per argument. Only for the
/// duration of one stop (the tracee must not run meanwhile).
pub(crate) struct Memory {
    tid: i32,
    blocks: Vec<(u64, Box<[u8]>)>,
    next: usize,
}

impl Memory {
    pub(crate) fn new(tid: i32) -> Memory {
        Memory {
            tid,
            blocks: Vec::with_capacity(KEPT_BLOCKS),
            next: 0,
        }
    }

    /// The block starting at `base` (aligned), `None` when it is not mapped readable.
    fn block(&mut self, base: u64) -> Option<&[u8]> {
        use nix::sys::uio::{process_vm_readv, RemoteIoVec};
        if let Some(i) = self.blocks.iter().position(|(b, _)| *b == base) {
            return Some(&self.blocks[i].1);
        }
        let mut data = vec![0u8; BLOCK as usize].into_boxed_slice();
        let remote = [RemoteIoVec {
            base: usize::try_from(base).ok()?,
            len: BLOCK as usize,
        }];
        let mut local = [std::io::IoSliceMut::new(&mut data)];
        match process_vm_readv(nix::unistd::Pid::from_raw(self.tid), &mut local, &remote) {
            Ok(n) if n == BLOCK as usize => {}
            _ => return None,
        }
        let i = if self.blocks.len() < KEPT_BLOCKS {
            self.blocks.push((base, data));
            self.blocks.len() - 1
        } else {
            let i = self.next;
            self.blocks[i] = (base, data);
            self.next = (i + 1) % KEPT_BLOCKS;
            i
        };
        Some(&self.blocks[i].1)
    }

    /// `len` bytes at `addr`, or what precedes the first unreadable block (`None` when that is
    /// nothing).
    pub(crate) fn read(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(BLOCK as usize));
        while out.len() < len {
            let Some(at) = addr.checked_add(out.len() as u64) else {
                break;
            };
            let offset = (at % BLOCK) as usize;
            let want = (BLOCK as usize - offset).min(len - out.len());
            let Some(block) = self.block(at - offset as u64) else {
                break;
            };
            out.extend_from_slice(&block[offset..offset + want]);
        }
        (!out.is_empty()).then_some(out)
    }

    /// A NUL-terminated string of at most `max` bytes at `addr` (cut at `max`); `None` when it
    /// runs into memory that cannot be read.
    pub(crate) fn string(&mut self, addr: u64, max: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            let offset = (at % BLOCK) as usize;
            let block = self.block(at - offset as u64)?;
            let rest = &block[offset..(offset + max - out.len()).min(BLOCK as usize)];
            if let Some(end) = memchr::memchr(0, rest) {
                out.extend_from_slice(&rest[..end]);
                return Some(out);
            }
            out.extend_from_slice(rest);
            at = at.checked_add(rest.len() as u64)?;
        }
        Some(out)
    }

    /// The argument vector at `addr` (an array of pointers ending with NULL), at most
    /// [`MAX_ARGS`] arguments and [`MAX_ARG_BYTES`] bytes of them.
    pub(crate) fn argv(&mut self, addr: u64, wide: bool) -> Vec<Bytes> {
        let mut out = Vec::new();
        if addr == 0 {
            return out;
        }
        let size: u64 = if wide { 8 } else { 4 };
        let mut total = 0;
        let mut at = addr;
        while out.len() < MAX_ARGS && total < MAX_ARG_BYTES {
            let Some(raw) = self.read(at, size as usize) else {
                break;
            };
            if raw.len() < size as usize {
                break;
            }
            let p = if wide {
                u64::from_ne_bytes(raw[..8].try_into().unwrap())
            } else {
                u64::from(u32::from_ne_bytes(raw[..4].try_into().unwrap()))
            };
            if p == 0 {
                break;
            }
            let s = self.string(p, MAX_ARG_BYTES - total).unwrap_or_default();
            total += s.len() + 1;
            out.push(Bytes(s));
            let Some(next) = at.checked_add(size) else {
                break;
            };
            at = next;
        }
        out
    }
}

/// A NUL-terminated string of at most `max` bytes at `addr` in a stopped tracee's memory.
pub(crate) fn read_string(tid: i32, addr: u64, max: usize) -> Option<Vec<u8>> {
    Memory::new(tid).string(addr, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of our own memory (process_vm_readv reads the caller as well as any tracee): `n`
    /// readable pages (of the machine's page size, a multiple of [`BLOCK`]) followed by one
    /// that is not.
    struct Pages {
        base: *mut u8,
        n: usize,
        page: usize,
    }

    impl Pages {
        fn new(n: usize) -> Pages {
            // SAFETY: sysconf(3) has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            let len = (n + 1) * page;
            // SAFETY: an anonymous private mapping of `len` bytes; its last page is then made
            // unreadable.
            let base = unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                let guard = p.cast::<u8>().add(n * page);
                assert_eq!(libc::mprotect(guard.cast(), page, libc::PROT_NONE), 0);
                p.cast::<u8>()
            };
            Pages { base, n, page }
        }
        /// The readable bytes: the unreadable page starts at `len()`.
        fn len(&self) -> usize {
            self.n * self.page
        }
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the first `n` pages are mapped readable and writable, and ours.
            unsafe { std::slice::from_raw_parts_mut(self.base, self.len()) }
        }
        fn addr(&self, offset: usize) -> u64 {
            self.base as u64 + offset as u64
        }
    }

    impl Drop for Pages {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`.
            unsafe { libc::munmap(self.base.cast(), (self.n + 1) * self.page) };
        }
    }

    fn me() -> Memory {
        Memory::new(std::process::id() as i32)
    }

    #[test]
    fn strings_across_blocks_cut_at_max_and_stopped_by_unreadable_memory() {
        let mut p = Pages::new(2);
        let at = BLOCK as usize - 5;
        p.bytes()[at..at + 12].copy_from_slice(b"hello world\0");
        assert_eq!(me().string(p.addr(at), 4096), Some(b"hello world".to_vec()));
        assert_eq!(me().string(p.addr(at), 3), Some(b"hel".to_vec()));
        // A string that runs into the unreadable page without its NUL.
        let end = p.len();
        p.bytes()[end - 4..].copy_from_slice(b"abcd");
        assert_eq!(me().string(p.addr(end - 4), 4096), None);
        // A read that reaches it returns what precedes it.
        assert_eq!(me().read(p.addr(end - 4), 100), Some(b"abcd".to_vec()));
        assert_eq!(me().read(p.addr(end), 100), None);
        assert_eq!(me().string(0, 10), None);
    }

    #[test]
    fn argv_from_many_blocks_is_read_whole() {
        // Ten arguments, each in its own page (more pages than the reader keeps), the pointer
        // array across a block boundary.
        let mut strings = Pages::new(10);
        let page = strings.page;
        let mut want = Vec::new();
        for i in 0..10 {
            let s = format!("arg-{i}-{}", "x".repeat(i * 100));
            let at = i * page + 7;
            strings.bytes()[at..at + s.len()].copy_from_slice(s.as_bytes());
            strings.bytes()[at + s.len()] = 0;
            want.push(Bytes::from(s.as_str()));
        }
        let mut array = Pages::new(2);
        let start = BLOCK as usize - 3 * 8;
        for i in 0..10 {
            let ptr = strings.addr(i * page + 7);
            array.bytes()[start + i * 8..start + i * 8 + 8].copy_from_slice(&ptr.to_ne_bytes());
        }
        array.bytes()[start + 80..start + 88].copy_from_slice(&0u64.to_ne_bytes());
        let mut m = me();
        assert_eq!(m.argv(array.addr(start), true), want);
        assert!(m.blocks.len() <= KEPT_BLOCKS);
        // An array whose end is unreadable: the arguments before it.
        let end = array.len();
        array.bytes()[end - 8..end].copy_from_slice(&strings.addr(7).to_ne_bytes());
        assert_eq!(
            me().argv(array.addr(end - 8), true),
            vec![Bytes::from("arg-0-")]
        );
        assert_eq!(me().argv(0, true), Vec::<Bytes>::new());
    }
}
