//! Domain rules: signup, login throttling, sessions, projects and their API keys.

pub mod types;
