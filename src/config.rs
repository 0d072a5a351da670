//! Every setting of the server: its flag, its `ROOMCAST_*` environment variable and its
//! default, in one clap struct whose `///` docs are what `roomcast --help` prints.
//!
//! [`Config::validate`] runs once at start so that a bad value stops the process with a
//! clear message instead of surfacing later as a confusing runtime error.

use crate::platform::types::Limits;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Server settings (flags and `ROOMCAST_*` environment variables).
#[derive(Clone, Debug, Parser)]
#[command(
    name = "roomcast",
    version,
    about = "Self-hostable, multi-tenant realtime messaging over Socket.IO"
)]
pub struct Config {
    /// Address to listen on (dashboard, REST API and Socket.IO share it).
    #[arg(long, env = "ROOMCAST_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Database: `sqlite://PATH` (file created with its folder if missing) or
    /// `postgres://USER:PASS@HOST/DB`.
    #[arg(
        long,
        env = "ROOMCAST_DATABASE_URL",
        default_value = "sqlite://data/roomcast.db"
    )]
    pub database_url: String,

    /// Redis URL for multi-node fan-out (`redis://[:PASSWORD@]HOST[:PORT][/DB]`); unset
    /// means a single node. With several nodes, use one PostgreSQL database for all.
    #[arg(long, env = "ROOMCAST_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Log format; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "ROOMCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Days a login session stays valid.
    #[arg(long, env = "ROOMCAST_SESSION_TTL_DAYS", default_value_t = 30)]
    pub session_ttl_days: u32,

    /// Largest `message` string in UTF-8 bytes (server default and ceiling for projects).
    #[arg(long, env = "ROOMCAST_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: u32,

    /// Messages per second per connection, burst 2x (default and ceiling for projects).
    #[arg(long, env = "ROOMCAST_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub messages_per_second: u32,

    /// Messages per second across one project, burst 2x (default and ceiling).
    #[arg(
        long,
        env = "ROOMCAST_PROJECT_MESSAGES_PER_SECOND",
        default_value_t = 2_000
    )]
    pub project_messages_per_second: u32,

    /// Live connections per project (default and ceiling for projects).
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u32,

    /// Unsent bytes a socket may queue before it is disconnected as a slow reader.
    #[arg(long, env = "ROOMCAST_MAX_BACKLOG_BYTES", default_value_t = 1_048_576)]
    pub max_backlog_bytes: usize,

    /// Engine.IO ping interval in milliseconds.
    #[arg(long, env = "ROOMCAST_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// Engine.IO ping timeout in milliseconds.
    #[arg(long, env = "ROOMCAST_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,

    /// Largest Engine.IO frame or polling body in bytes (socket.io's maxHttpBufferSize).
    #[arg(long, env = "ROOMCAST_MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: usize,

    /// Origins allowed by CORS on the Socket.IO endpoint, comma-separated; empty reflects
    /// any origin (projects restrict theirs with `allowed_origins`).
    #[arg(long, env = "ROOMCAST_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Take the client IP for login throttling from `X-Forwarded-For` (only behind a
    /// reverse proxy that sets it; otherwise clients could pick their own IP).
    #[arg(long, env = "ROOMCAST_TRUST_PROXY", value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_proxy: bool,

    /// Mark session cookies `Secure` (set this when serving over HTTPS).
    #[arg(long, env = "ROOMCAST_SECURE_COOKIES", value_parser = clap::builder::BoolishValueParser::new())]
    pub secure_cookies: bool,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting --{flag}: {reason}")]
pub struct ConfigError {
    /// The flag at fault.
    pub flag: &'static str,
    /// Why its value is refused.
    pub reason: String,
}

impl Config {
    /// Checks every value once, at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 9] = [
            ("session-ttl-days", self.session_ttl_days.into()),
            ("max-message-bytes", self.max_message_bytes.into()),
            ("messages-per-second", self.messages_per_second.into()),
            (
                "project-messages-per-second",
                self.project_messages_per_second.into(),
            ),
            ("max-connections", self.max_connections.into()),
            ("max-backlog-bytes", self.max_backlog_bytes as u64),
            ("ping-interval-ms", self.ping_interval_ms),
            ("ping-timeout-ms", self.ping_timeout_ms),
            ("max-payload-bytes", self.max_payload_bytes as u64),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    flag,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.session_ttl_days > 36_500 {
            return Err(ConfigError {
                flag: "session-ttl-days",
                reason: "must be at most 36500".into(),
            });
        }
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                flag: "database-url",
                reason: "must start with sqlite:// or postgres://".into(),
            });
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            // `sqlite://` alone would open a temporary database that vanishes at exit.
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path.contains(":memory:") {
                return Err(ConfigError {
                    flag: "database-url",
                    reason: "a SQLite URL needs a file path: sqlite://PATH".into(),
                });
            }
        }
        if let Some(redis) = &self.redis_url {
            if redis.starts_with("rediss://") {
                return Err(ConfigError {
                    flag: "redis-url",
                    reason: "TLS to Redis (rediss://) is not built in; use redis:// on a \
                             private network or through a local TLS tunnel"
                        .into(),
                });
            }
            if !redis.starts_with("redis://") || redis::Client::open(redis.as_str()).is_err() {
                return Err(ConfigError {
                    flag: "redis-url",
                    reason: "must be a redis://HOST[:PORT][/DB] URL".into(),
                });
            }
        }
        for origin in &self.cors_origins {
            crate::platform::validate::origin(origin).map_err(|reason| ConfigError {
                flag: "cors-origins",
                reason,
            })?;
        }
        Ok(())
    }

    /// The server-wide limits of SPEC §4.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            messages_per_second: self.messages_per_second,
            project_messages_per_second: self.project_messages_per_second,
            max_connections: self.max_connections,
        }
    }

    /// How long a login session lives.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_ttl_days) * 24 * 60 * 60)
    }

    /// Whether the database is PostgreSQL (otherwise SQLite).
    pub fn uses_postgres(&self) -> bool {
        !self.database_url.starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let config = Config::parse_from(["roomcast"]);
        assert_eq!(config.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(config.database_url, "sqlite://data/roomcast.db");
        assert_eq!(config.limits(), Limits::default());
        assert_eq!(config.max_backlog_bytes, 1_048_576);
        assert_eq!(config.max_payload_bytes, 1_000_000);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn zero_limits_and_foreign_databases_are_refused() {
        let config = Config::parse_from(["roomcast", "--max-connections", "0"]);
        assert_eq!(
            config.validate().map_err(|e| e.flag).err(),
            Some("max-connections")
        );
        let config = Config::parse_from(["roomcast", "--database-url", "mysql://x"]);
        assert!(config.validate().is_err());
        let config =
            Config::parse_from(["roomcast", "--cors-origins", "https://a.example,ftp://b"]);
        assert!(config.validate().is_err());
    }

    /// The flag `validate` refuses for `--<flag> <value>`, if any.
    fn refused_flag(flag: &str, value: &str) -> Option<&'static str> {
        let config = Config::parse_from(["roomcast", &format!("--{flag}"), value]);
        config.validate().map_err(|e| e.flag).err()
    }

    #[test]
    fn sqlite_urls_need_a_file() {
        for url in [
            "sqlite://data/x.db",
            "sqlite:///tmp/x.db",
            "sqlite:x.db?mode=rwc",
        ] {
            assert_eq!(refused_flag("database-url", url), None, "{url}");
        }
        for url in [
            "sqlite://",
            "sqlite:",
            "sqlite://?mode=rwc",
            "sqlite::memory:",
        ] {
            assert_eq!(
                refused_flag("database-url", url),
                Some("database-url"),
                "{url}"
            );
        }
    }

    #[test]
    fn redis_urls_are_checked() {
        for url in ["redis://127.0.0.1:6379", "redis://:secret@redis.internal/2"] {
            assert_eq!(refused_flag("redis-url", url), None, "{url}");
        }
        for url in [
            "http://x",
            "rediss://127.0.0.1",
            "redis://host:notaport",
            "",
        ] {
            assert_eq!(refused_flag("redis-url", url), Some("redis-url"), "{url}");
        }
    }
}
