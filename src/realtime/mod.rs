//! roomcast on the engine: API-key auth at CONNECT, one room per project, the `message`
//! relay with its limits, revocation, and per-project counters.
//!
//! The platform layer talks to this module only through [`Realtime`]'s methods and the
//! [`KeyDirectory`] trait it implements; nothing here touches the database directly.
//! (Work in progress: the engine wiring lands with the realtime-engine issue.)

use crate::platform::types::{Limits, ProjectId, ProjectSettings};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a live API key grants: the project it belongs to and that project's settings.
#[derive(Clone, Debug)]
pub struct ProjectAccess {
    /// The project the key belongs to.
    pub project_id: ProjectId,
    /// The project's effective settings.
    pub settings: ProjectSettings,
}

/// Boxed future returned by [`KeyDirectory`].
pub type DirectoryFuture<'a> =
    Pin<Box<dyn Future<Output = anyhow::Result<Option<ProjectAccess>>> + Send + 'a>>;

/// Where the realtime side looks up API keys it has not seen yet (the platform's store).
pub trait KeyDirectory: Send + Sync + 'static {
    /// Finds the live project whose API key has this SHA-256 hash.
    fn find_by_key_hash(&self, key_hash: [u8; 32]) -> DirectoryFuture<'_>;
}

/// Why an HTTP publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The message is over the project's `max_message_bytes`.
    #[error("message is larger than {limit} bytes")]
    MessageTooLarge {
        /// The project's limit in bytes.
        limit: u32,
    },
    /// The project's message rate is exhausted.
    #[error("rate limit reached, retry in {retry_after_ms} ms")]
    RateLimited {
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
}

/// A project's counters (SPEC §2 stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProjectStats {
    /// Live sockets.
    pub connections: u64,
    /// `message` events and HTTP publishes received, accepted or not.
    pub messages_received: u64,
    /// Copies sent to sockets.
    pub messages_delivered: u64,
    /// Received messages that were refused.
    pub messages_rejected: u64,
}

/// Handle to the realtime side, cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    #[allow(dead_code)]
    limits: Limits,
    #[allow(dead_code)]
    directory: Arc<dyn KeyDirectory>,
}

impl Realtime {
    /// Builds the realtime side over a key directory.
    pub fn new(limits: Limits, directory: Arc<dyn KeyDirectory>) -> Self {
        Self { limits, directory }
    }

    /// The SHA-256 of an API key, as stored and as looked up.
    pub fn hash_key(api_key: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(api_key.as_bytes()).into()
    }

    /// Resolves an API key (cached in memory; the directory is asked on a miss).
    pub async fn resolve_key(&self, api_key: &str) -> anyhow::Result<Option<ProjectAccess>> {
        self.directory
            .find_by_key_hash(Self::hash_key(api_key))
            .await
    }

    /// Broadcasts `message` to every socket of the project's room; returns the copies sent.
    pub fn publish(&self, _project: &ProjectAccess, _message: &str) -> Result<u64, PublishError> {
        Ok(0)
    }

    /// The project's key was regenerated or the project deleted: forget cached keys and
    /// disconnect its sockets with `API_KEY_REVOKED`.
    pub fn revoke_project(&self, _project: &ProjectId) {}

    /// The project's settings changed: apply them to live sockets at once.
    pub fn update_settings(&self, _project: &ProjectId, _settings: &ProjectSettings) {}

    /// The project's counters.
    pub fn stats(&self, _project: &ProjectId) -> ProjectStats {
        ProjectStats::default()
    }

    /// A live feed of the messages broadcast in the project's room (for the dashboard's
    /// console); lagging receivers skip ahead rather than slow the room down.
    pub fn subscribe(&self, _project: &ProjectId) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        tokio::sync::broadcast::channel(1).1
    }

    /// The router serving `/socket.io/`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }
}
