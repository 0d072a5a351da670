//! The node's command connection to Redis, kept up by a supervisor task.
//!
//! redis-rs gives us the connections; reconnecting is ours because the node must keep
//! serving local clients while Redis is away and say so on `/readyz`, rather than fail
//! its callers. Users take a clone of the live connection, and report an error with
//! [`RedisLink::failed`], which drops it and wakes the supervisor to dial again.

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long dialing or a single command may take before Redis counts as unreachable.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// First pause after a failed attempt (doubled each time up to [`MAX_BACKOFF`]).
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The command connection and the health of both links to Redis.
pub struct RedisLink {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    wake: Notify,
    /// Whether the bus subscription is live (set by the subscriber task).
    subscribed: AtomicBool,
    /// The last failure, for `/readyz` and logs.
    last_error: Mutex<String>,
    /// Counts successful connections, so users can tell that a reconnect happened.
    generation: AtomicU64,
}

impl RedisLink {
    /// A link to the Redis at `client`, not connected yet.
    pub fn new(client: redis::Client) -> Self {
        Self {
            client,
            connection: Mutex::new(None),
            wake: Notify::new(),
            subscribed: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
            generation: AtomicU64::new(0),
        }
    }

    /// The Redis client (for the subscriber's own connection).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// How many times the command connection was established so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The live command connection, if there is one.
    pub fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().clone()
    }

    /// Runs one command on the command connection. An error (the connection's response
    /// timeout, [`REDIS_TIMEOUT`], included) drops the connection for the supervisor to
    /// dial again, and comes back as its text.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, String> {
        let mut connection = self
            .connection()
            .ok_or_else(|| "redis is not connected".to_owned())?;
        command.query_async(&mut connection).await.map_err(|error| {
            self.failed(&error);
            error.to_string()
        })
    }

    /// Runs a pipeline whose replies are all ignored, as [`Self::query`] runs a command.
    pub async fn run(&self, pipe: &redis::Pipeline) -> Result<(), String> {
        let mut connection = self
            .connection()
            .ok_or_else(|| "redis is not connected".to_owned())?;
        pipe.exec_async(&mut connection).await.map_err(|error| {
            self.failed(&error);
            error.to_string()
        })
    }

    /// A command failed: drop the connection and have the supervisor dial again.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let was_up = self.connection.lock().take().is_some();
        self.record(error);
        if was_up {
            tracing::warn!(error = %error, "redis connection lost; reconnecting");
            metrics::gauge!("roomcast_cluster_redis_up").set(0.0);
        }
        self.wake.notify_one();
    }

    /// Records why Redis is unusable.
    pub fn record(&self, error: &dyn std::fmt::Display) {
        *self.last_error.lock() = error.to_string();
    }

    /// Marks the bus subscription live or down.
    pub fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Release);
    }

    /// Whether the bus subscription is live (this node hears the other nodes' events).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Whether the node can reach the other nodes now; the reason when it cannot.
    pub fn health(&self) -> Result<(), String> {
        let connected = self.connection.lock().is_some();
        if connected && self.subscribed.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(format!(
                "redis is not reachable: {}",
                self.last_error.lock().as_str()
            ))
        }
    }

    /// Keeps a command connection up for as long as the process runs.
    pub async fn supervise(&self) {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut failures = 0;
        loop {
            if self.connection.lock().is_some() {
                self.wake.notified().await;
                continue;
            }
            match self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connection) => {
                    *self.connection.lock() = Some(connection);
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    metrics::gauge!("roomcast_cluster_redis_up").set(1.0);
                    tracing::info!("redis connected");
                    failures = 0;
                }
                Err(error) => {
                    self.record(&error);
                    tracing::debug!(error = %error, "redis connection attempt failed");
                    tokio::time::sleep(Self::backoff(failures)).await;
                    failures += 1;
                }
            }
        }
    }

    /// The pause before the next attempt after `failures` failed ones in a row.
    pub fn backoff(failures: u32) -> Duration {
        MIN_BACKOFF
            .saturating_mul(1 << failures.min(5))
            .min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_bounded() {
        assert_eq!(RedisLink::backoff(0), MIN_BACKOFF);
        assert_eq!(RedisLink::backoff(1), MIN_BACKOFF * 2);
        assert_eq!(RedisLink::backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn a_link_that_never_connected_is_not_healthy() {
        let link = RedisLink::new(redis::Client::open("redis://127.0.0.1:1").unwrap());
        let reason = link.health().unwrap_err();
        assert!(reason.starts_with("redis is not reachable"), "{reason}");
        link.set_subscribed(true);
        assert!(link.health().is_err(), "no command connection yet");
    }
}
