//! roomcast: a self-hostable, multi-tenant realtime messaging platform.
//!
//! ```text
//!  client ──HTTP──▶ http (REST, probes) ──▶ platform (rules) ──▶ store (SQLite/PostgreSQL)
//!     │                                          │
//!     └─Socket.IO─▶ engine (Engine.IO/Socket.IO) ◀── realtime (auth, project rooms, limits)
//! ```
//!
//! - [`engine`]: our own Engine.IO v4 / Socket.IO v5 server; knows nothing of projects.
//! - [`realtime`]: roomcast on the engine: API-key auth, one room per project, the relay.
//! - [`platform`]: domain rules for accounts, sessions, projects and keys.
//! - [`http`]: the accept loop and REST handlers, one file per resource.
//! - [`cluster`]: many nodes as one over Redis pub/sub (SPEC §6).
//! - [`dashboard`]: server-rendered pages for people (sign up, projects, keys, live console).
//! - [`store`]: accounts, sessions and projects in SQLite or PostgreSQL.
//! - [`app`]: `AppState`, building the app and the one place where routes are mounted.
//! - [`config`]: every setting with its flag, env var and default.
//! - [`error`]: the REST error type and its single mapping to HTTP.
//! - [`telemetry`]: logging and the Prometheus registry.

pub mod app;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod error;
pub mod http;
pub mod platform;
pub mod realtime;
pub mod store;
pub mod telemetry;
