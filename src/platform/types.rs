//! Shared domain types: project ids and the per-project limits the realtime side enforces.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A project's public identifier (a UUID in its canonical text form).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectId(pub String);

impl ProjectId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server-wide limits (SPEC §4): the defaults every project starts from and the
/// ceilings a project's own settings may not exceed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest `message` string, in UTF-8 bytes.
    pub max_message_bytes: u32,
    /// Sustained messages per second per connection (burst is twice this).
    pub messages_per_second: u32,
    /// Sustained messages per second across a project (burst is twice this).
    pub project_messages_per_second: u32,
    /// Live connections a project may hold at once.
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 65_536,
            messages_per_second: 20,
            project_messages_per_second: 2_000,
            max_connections: 10_000,
        }
    }
}

/// A project's effective settings: the server limits with the project's own lower values
/// applied, plus its allowed origins (empty = any origin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSettings {
    /// Largest `message` string, in UTF-8 bytes.
    pub max_message_bytes: u32,
    /// Sustained messages per second per connection (burst is twice this).
    pub messages_per_second: u32,
    /// Sustained messages per second across the project (burst is twice this).
    pub project_messages_per_second: u32,
    /// Live connections the project may hold at once.
    pub max_connections: u32,
    /// Browser origins allowed to connect; empty means any.
    pub allowed_origins: Vec<String>,
}

impl ProjectSettings {
    /// Settings of a project that overrides nothing.
    pub fn defaults(limits: &Limits) -> Self {
        Self {
            max_message_bytes: limits.max_message_bytes,
            messages_per_second: limits.messages_per_second,
            project_messages_per_second: limits.project_messages_per_second,
            max_connections: limits.max_connections,
            allowed_origins: Vec::new(),
        }
    }
}
