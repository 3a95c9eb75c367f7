//! The GitHub front end: the Action's phases ([`action`]), the runner's protocol, the GitHub
//! REST API ([`api`]) and the pull request feedback it sends ([`pr`]).

pub mod action;
pub mod api;
pub mod pr;
pub mod runner;
pub mod workflow;
