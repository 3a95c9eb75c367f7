//! Sources: they observe processes and produce [`crate::trace::Record`]s — ptrace
//! ([`ptrace`], exact, for the trees it follows), the kernel's proc connector ([`connector`],
//! every exec on the host), `/proc` ([`proc`]), failed exec attempts ([`attempt`]) and the
//! content of executables ([`fingerprint`]); [`merge`] joins two sources' twin records. They
//! never match, count findings or print.

pub mod attempt;
pub mod connector;
pub mod fingerprint;
pub mod memory;
pub mod merge;
pub mod proc;
pub mod ptrace;
