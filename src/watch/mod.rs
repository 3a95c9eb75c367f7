//! Exec sources: they observe processes and produce [`crate::trace::Record`]s; they never match,
//! count findings or print.

pub mod attempt;
pub mod connector;
pub mod daemon;
pub mod merge;
pub mod proc;
pub mod ptrace;
