//! The GitHub front end: the Action's phases ([`action`]), the runner's protocol, the GitHub
//! REST API ([`api`]), the pull request feedback it sends ([`pr`]) and the repository files it
//! reads at the job's commit ([`contents`]).

pub mod action;
pub mod api;
pub mod contents;
pub mod pr;
pub mod runner;
pub mod verdict;
pub mod workflow;
