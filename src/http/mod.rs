//! HTTP surface: the connection loop, REST handlers (one file per resource) and probes.

pub mod serve;
