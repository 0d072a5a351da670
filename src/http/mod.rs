//! HTTP surface: the connection loop, REST handlers (one file per resource) and probes.

pub mod auth;
pub mod extract;
pub mod messages;
pub mod probes;
pub mod projects;
pub mod serve;
