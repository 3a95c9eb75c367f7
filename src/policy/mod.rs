//! Policy: what the checker judges against — the [`recipe`]s (Jibril's format) and the
//! [`config`] allowlist, both loaded from untrusted YAML through [`yaml`]'s bounded loader.

pub mod config;
pub mod recipe;
pub mod yaml;
