//! REST API tests against the real server (in-process, port 0, temporary SQLite): every
//! row of SPEC §2's table, its error codes and the wrong-input cases.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod general;
mod messages;
mod projects;
