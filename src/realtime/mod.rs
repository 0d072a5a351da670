//! roomcast on the engine: API-key auth at CONNECT, one room per project, the `message`
//! relay with its limits, revocation, and per-project counters.
//!
//! The platform layer talks to this module only through [`Realtime`]'s methods and the
//! [`KeyDirectory`] trait it implements; nothing here touches the database directly.
//! Keys resolve through an in-memory cache (key hash → project) that revocation clears,
//! so neither a message nor a reconnect with a known key costs a database round trip.
//!
//! On several nodes, [`Peers`] (the cluster) carries broadcasts, revocations and settings
//! to the other nodes and reports their connections; what arrives from them comes back
//! in through the `*_from_peer` methods and [`Realtime::revalidate`].

pub mod counters;
mod handler;
mod project;

use crate::engine::{
    BinaryPolicy, Cors, Delivery, EioConfig, Namespace, OutFrame, SioConfig, Socket, SocketIo,
};
use crate::platform::types::{Limits, ProjectId, ProjectSettings};
use bytes::Bytes;
use counters::{CounterStore, KeptCounters};
use handler::{Client, Rejection, RoomcastHandler};
use parking_lot::RwLock;
pub use project::ChangeSignal;
use project::ProjectState;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What every `message` frame starts with; the event's one JSON string and `]` follow.
/// Other nodes relay only frames of this shape.
pub const MESSAGE_FRAME_PREFIX: &str = "42[\"message\",";

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

/// Boxed future of cluster-wide counters, returned by [`Peers::cluster_stats`].
pub type StatsFuture<'a> = Pin<Box<dyn Future<Output = ProjectStats> + Send + 'a>>;

/// The other nodes of a cluster, as the realtime side needs them; implemented by
/// [`crate::cluster::Cluster`], absent on a single node. Nothing here may block: the
/// forwarding calls sit on the message path and only queue.
pub trait Peers: Send + Sync + 'static {
    /// Sends a `message` frame broadcast in the project's room here to the other nodes.
    fn forward_message(&self, project: &ProjectId, frame: &Bytes);
    /// Tells the other nodes that the project's keys but `surviving` are revoked.
    fn forward_revocation(&self, project: &ProjectId, surviving: Option<[u8; 32]>);
    /// Tells the other nodes the project's new settings.
    fn forward_settings(&self, project: &ProjectId, settings: &ProjectSettings);
    /// The project's live connections on the other nodes, as last reported.
    fn connections_elsewhere(&self, project: &ProjectId) -> u64;
    /// Tells the other nodes the project's live connections here (`connections` is read
    /// when the announcement is queued, in order with every other) and resolves once
    /// Redis has taken it: a CONNECT is answered only then, so by the time a client sees
    /// `connect` every node counts it (for `delivered_to`, stats and `max_connections`).
    fn announce_connections<'a>(
        &'a self,
        project: &'a ProjectId,
        connections: &'a (dyn Fn() -> u64 + Sync),
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Whether this node hears the other nodes' revocations now; while it does not, the
    /// key cache may hold a key revoked elsewhere, so every lookup asks the directory.
    fn hears_revocations(&self) -> bool;
    /// The project's cluster-wide counters, given this node's own.
    fn cluster_stats<'a>(&'a self, project: &'a ProjectId, local: ProjectStats) -> StatsFuture<'a>;
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

/// Transport settings of the Socket.IO endpoint.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// Server-wide limits (SPEC §4).
    pub limits: Limits,
    /// Time between pings.
    pub ping_interval: Duration,
    /// Time allowed for a pong.
    pub ping_timeout: Duration,
    /// Engine.IO `maxPayload`.
    pub max_payload: usize,
    /// Unsent bytes a client may accumulate before it is disconnected.
    pub max_backlog: usize,
    /// Browser origins allowed by CORS; empty reflects any origin.
    pub cors_origins: Vec<String>,
}

impl RealtimeConfig {
    /// SPEC defaults with these limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_backlog: 1 << 20,
            cors_origins: Vec::new(),
        }
    }
}

/// State shared by the handler and the [`Realtime`] handle.
pub(crate) struct Shared {
    limits: Limits,
    directory: Arc<dyn KeyDirectory>,
    /// Key hash → project, for every key seen live.
    keys: RwLock<HashMap<[u8; 32], Arc<ProjectState>>>,
    projects: RwLock<HashMap<ProjectId, Arc<ProjectState>>>,
    namespace: OnceLock<Arc<Namespace<Client>>>,
    /// The other nodes, when this one is part of a cluster.
    peers: OnceLock<Arc<dyn Peers>>,
    /// Raised whenever a project's counters move (for the cluster's reporter, or a
    /// single node's flush to the database).
    changes: Arc<ChangeSignal>,
    /// A single node's counters in the database, once [`Realtime::keep_counters`] ran.
    kept: OnceLock<Arc<KeptCounters>>,
    /// Time from a message's arrival (over Socket.IO or HTTP) to its broadcast being
    /// queued: a handle kept so the message path does no registry lookup.
    path_latency: metrics::Histogram,
}

impl Shared {
    fn project(&self, id: &ProjectId, settings: &ProjectSettings) -> Arc<ProjectState> {
        if let Some(project) = self.projects.read().get(id) {
            return project.clone();
        }
        self.projects
            .write()
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(ProjectState::new(
                    id.clone(),
                    settings,
                    self.changes.clone(),
                ))
            })
            .clone()
    }

    /// The project's live connections on other nodes (none on a single node).
    pub(crate) fn connections_elsewhere(&self, id: &ProjectId) -> u64 {
        self.peers
            .get()
            .map_or(0, |peers| peers.connections_elsewhere(id))
    }

    /// The live project of a key hash: from the cache, else from the directory.
    async fn resolve_hash(&self, key_hash: [u8; 32]) -> anyhow::Result<Option<Arc<ProjectState>>> {
        let cache_trusted = self
            .peers
            .get()
            .is_none_or(|peers| peers.hears_revocations());
        if cache_trusted {
            if let Some(project) = self.keys.read().get(&key_hash) {
                return Ok(Some(project.clone()));
            }
        }
        let Some(access) = self.directory.find_by_key_hash(key_hash).await? else {
            return Ok(None);
        };
        let project = self.project(&access.project_id, &access.settings);
        project.apply(&access.settings);
        if !project.key_is_live(&key_hash) {
            return Ok(None); // revoked while we were looking it up
        }
        self.keys.write().insert(key_hash, project.clone());
        Ok(Some(project))
    }

    fn broadcast(
        &self,
        project: &ProjectState,
        frame: &OutFrame,
        except: Option<&Socket<Client>>,
        delivery: Delivery,
    ) -> u64 {
        let Some(namespace) = self.namespace.get() else {
            return 0;
        };
        let delivered = namespace.broadcast(&project.room, frame, except, delivery) as u64;
        project.count_delivered(delivered);
        if let (Some(peers), OutFrame::Text(bytes)) = (self.peers.get(), frame) {
            peers.forward_message(&project.id, bytes);
        }
        delivered
    }

    /// Disconnects the project's sockets whose key `is_revoked`, with `API_KEY_REVOKED`.
    fn disconnect_revoked(&self, project: &ProjectState, is_revoked: impl Fn(&[u8; 32]) -> bool) {
        let Some(namespace) = self.namespace.get() else {
            return;
        };
        for socket in namespace.sockets_in(&project.room) {
            if is_revoked(&socket.data.key_hash) {
                handler::announce_revocation(&socket);
                socket.disconnect();
            }
        }
    }
}

/// Handle to the realtime side, cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    shared: Arc<Shared>,
    io: SocketIo<RoomcastHandler>,
}

impl Realtime {
    /// Builds the realtime side over a key directory (inside a Tokio runtime).
    pub fn new(config: RealtimeConfig, directory: Arc<dyn KeyDirectory>) -> Self {
        handler::register_metrics();
        let shared = Arc::new(Shared {
            limits: config.limits.clone(),
            directory,
            keys: RwLock::new(HashMap::new()),
            projects: RwLock::new(HashMap::new()),
            namespace: OnceLock::new(),
            peers: OnceLock::new(),
            changes: Arc::default(),
            kept: OnceLock::new(),
            path_latency: metrics::histogram!("roomcast_message_path_seconds"),
        });
        let cors = if config.cors_origins.is_empty() {
            Cors::AnyOrigin
        } else {
            Cors::List(config.cors_origins.clone())
        };
        let sio = SioConfig {
            eio: EioConfig {
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
                max_payload: config.max_payload,
                max_backlog: config.max_backlog,
                cors,
                ..EioConfig::default()
            },
            binary: BinaryPolicy::Refuse,
            ..SioConfig::default()
        };
        let io = SocketIo::new(
            sio,
            RoomcastHandler {
                shared: shared.clone(),
            },
        );
        if let Some(root) = io.namespace("/") {
            let _ = shared.namespace.set(root.clone());
        }
        Self { shared, io }
    }

    /// The SHA-256 of an API key, as stored and as looked up.
    pub fn hash_key(api_key: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(api_key.as_bytes()).into()
    }

    /// Resolves an API key (cached in memory; the directory is asked on a miss).
    pub async fn resolve_key(&self, api_key: &str) -> anyhow::Result<Option<ProjectAccess>> {
        let Some(project) = self.shared.resolve_hash(Self::hash_key(api_key)).await? else {
            return Ok(None);
        };
        Ok(Some(ProjectAccess {
            project_id: project.id.clone(),
            settings: project.settings(),
        }))
    }

    /// An HTTP publish with a valid key whose body was not one `{"message": string}`
    /// (or was over the body limit): received and rejected, as a socket's malformed
    /// `message` is, so the project's stats count every publish (SPEC §2).
    pub fn count_malformed_publish(&self, access: &ProjectAccess) {
        let project = self.publishing_project(access);
        project.count_received();
        project.count_rejected();
        Rejection::InvalidPayload.count();
    }

    /// The project an HTTP publish goes to, brought up to date with its settings.
    fn publishing_project(&self, access: &ProjectAccess) -> Arc<ProjectState> {
        let project = self.shared.project(&access.project_id, &access.settings);
        if project.is_provisional() {
            project.apply(&access.settings);
        }
        project
    }

    /// Broadcasts `message` to every socket of the project's room on every node; returns
    /// the copies sent here plus the project's live sockets on the other nodes.
    pub fn publish(&self, access: &ProjectAccess, message: &str) -> Result<u64, PublishError> {
        let arrived = Instant::now();
        let project = self.publishing_project(access);
        project.count_received();
        let limit = project.max_message_bytes();
        let refused = if message.len() > limit as usize {
            Some(Rejection::MessageTooLarge(limit))
        } else {
            project
                .take_project_token(Instant::now())
                .err()
                .map(Rejection::RateLimited)
        };
        if let Some(rejection) = refused {
            project.count_rejected();
            rejection.count();
            return Err(match rejection {
                Rejection::MessageTooLarge(limit) => PublishError::MessageTooLarge { limit },
                Rejection::RateLimited(retry_after_ms) => {
                    PublishError::RateLimited { retry_after_ms }
                }
                _ => unreachable!("only size and rate are checked here"),
            });
        }
        let literal = serde_json::to_string(message).unwrap_or_default();
        let frame = handler::message_frame(&literal);
        let delivered = self
            .shared
            .broadcast(&project, &frame, None, Delivery::Queued);
        if project.has_watchers() {
            project.feed(message.into());
        }
        // The message path's latency covers HTTP publishes too (SPEC §1).
        self.shared
            .path_latency
            .record(arrived.elapsed().as_secs_f64());
        Ok(delivered + self.shared.connections_elsewhere(&project.id))
    }

    /// The project's key was regenerated (`surviving` is the new key's hash) or the
    /// project deleted (`None`): forget its old keys and disconnect every socket that
    /// used one, with `API_KEY_REVOKED`, on this node and on the others.
    pub fn revoke_project(&self, project_id: &ProjectId, surviving: Option<[u8; 32]>) {
        self.revoke_from_peer(project_id, surviving);
        if let Some(peers) = self.shared.peers.get() {
            peers.forward_revocation(project_id, surviving);
        }
    }

    /// A revocation made on another node (or this one): applied here only.
    pub fn revoke_from_peer(&self, project_id: &ProjectId, surviving: Option<[u8; 32]>) {
        let revoked: Vec<[u8; 32]> = {
            let mut keys = self.shared.keys.write();
            let old: Vec<_> = keys
                .iter()
                .filter(|(hash, p)| p.id == *project_id && Some(**hash) != surviving)
                .map(|(hash, _)| *hash)
                .collect();
            for hash in &old {
                keys.remove(hash);
            }
            old
        };
        let project = self.shared.projects.read().get(project_id).cloned();
        let Some(project) = project else { return };
        project.revoke(&revoked, surviving.is_none());
        if surviving.is_none() {
            self.shared.projects.write().remove(project_id);
            project.mark_moved(); // the reporter tells the others it is gone
        }
        self.shared
            .disconnect_revoked(&project, |hash| Some(*hash) != surviving);
    }

    /// The project's settings changed: apply them to live sockets at once, on every node.
    pub fn update_settings(&self, project_id: &ProjectId, settings: &ProjectSettings) {
        self.settings_from_peer(project_id, settings);
        if let Some(peers) = self.shared.peers.get() {
            peers.forward_settings(project_id, settings);
        }
    }

    /// Settings changed on another node: applied here only.
    pub fn settings_from_peer(&self, project_id: &ProjectId, settings: &ProjectSettings) {
        let project = self.shared.projects.read().get(project_id).cloned();
        if let Some(project) = project {
            project.apply(settings);
        }
    }

    /// A `message` frame broadcast on another node: delivered to this node's sockets of
    /// the project's room (and its console), and counted against the project's rate here.
    pub fn message_from_peer(&self, project_id: &ProjectId, frame: Bytes) {
        let project = self.shared.projects.read().get(project_id).cloned();
        let (Some(project), Some(namespace)) = (project, self.shared.namespace.get()) else {
            return; // no socket and no console of this project here
        };
        project.spend_project_token(Instant::now());
        if project.has_watchers() {
            let text = frame
                .get(MESSAGE_FRAME_PREFIX.len()..frame.len().saturating_sub(1))
                .and_then(|literal| serde_json::from_slice::<String>(literal).ok());
            if let Some(text) = text {
                project.feed(text.into());
            }
        }
        let delivered = namespace.broadcast_local(
            &project.room,
            &OutFrame::Text(frame),
            None,
            Delivery::Immediate,
        );
        project.count_delivered(delivered as u64);
    }

    /// After the link to the other nodes was down (revocations may have been missed):
    /// forgets every cached key, looks up each key live sockets use, disconnects the
    /// sockets whose key is gone and applies current settings.
    pub async fn revalidate(&self) {
        self.shared.keys.write().clear();
        let projects: Vec<Arc<ProjectState>> =
            self.shared.projects.read().values().cloned().collect();
        let Some(namespace) = self.shared.namespace.get() else {
            return;
        };
        for project in projects {
            let in_use: HashSet<[u8; 32]> = namespace
                .sockets_in(&project.room)
                .iter()
                .map(|socket| socket.data.key_hash)
                .collect();
            for hash in in_use {
                match self.shared.directory.find_by_key_hash(hash).await {
                    Ok(Some(access)) if access.project_id == project.id => {
                        project.apply(&access.settings);
                        self.shared.keys.write().insert(hash, project.clone());
                    }
                    Ok(_) => {
                        project.revoke(&[hash], false);
                        self.shared.disconnect_revoked(&project, |h| *h == hash);
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "revalidating a key failed");
                    }
                }
            }
        }
    }

    /// This node's own counters (for the cluster's reports): of the projects whose
    /// counters moved since the last call, or with `all` of every project it knows.
    /// `None`: a project that moved and is no longer known here (deleted).
    pub fn local_counters(&self, all: bool) -> Vec<(ProjectId, Option<ProjectStats>)> {
        let mut moved = self.shared.changes.take_moved();
        // A project deleted and seen again is a new state with the same id: list it once,
        // or its deltas would be flushed twice.
        moved.sort_unstable();
        moved.dedup();
        let projects = self.shared.projects.read();
        let mut counters: Vec<_> = moved
            .into_iter()
            .filter_map(|id| match projects.get(&id) {
                Some(_) if all => None, // listed below with every other project
                Some(project) => Some((id, Some(project.take_stats()))),
                None => Some((id, None)),
            })
            .collect();
        if all {
            counters.extend(
                projects
                    .values()
                    .map(|p| (p.id.clone(), Some(p.take_stats()))),
            );
        }
        counters
    }

    /// This node's live connections of every project that has some (read without
    /// taking the reporter's list of moved projects).
    pub fn connection_counts(&self) -> Vec<(ProjectId, u64)> {
        self.shared
            .projects
            .read()
            .values()
            .map(|p| (p.id.clone(), p.stats().connections))
            .filter(|(_, connections)| *connections > 0)
            .collect()
    }

    /// This node's live connections of the given projects (zero for one it no longer has).
    pub fn connection_counts_of(&self, ids: Vec<ProjectId>) -> Vec<(ProjectId, u64)> {
        let projects = self.shared.projects.read();
        ids.into_iter()
            .map(|id| {
                let connections = projects.get(&id).map_or(0, |p| p.stats().connections);
                (id, connections)
            })
            .collect()
    }

    /// Disconnections on this node, for the cluster's one announcer (listed from then
    /// on).
    pub fn connection_changes(&self) -> Arc<ChangeSignal> {
        self.shared.changes.watch_connections();
        self.shared.changes.clone()
    }

    /// Raised whenever a project's counters on this node move, for the one reporter that
    /// asks (changes are recorded from then on).
    pub fn changes(&self) -> Arc<ChangeSignal> {
        self.shared.changes.watch();
        self.shared.changes.clone()
    }

    /// Joins a cluster: from now on broadcasts, revocations and settings go to `peers`
    /// too. Set once, before serving.
    pub fn attach_peers(&self, peers: Arc<dyn Peers>) {
        if self.shared.peers.set(peers).is_err() {
            tracing::warn!("peers attached twice; keeping the first");
        }
    }

    /// On a single node: keeps the projects' cumulative message counters in `store`
    /// from now on (a task adds what moved every few seconds; [`Self::flush_counters`]
    /// adds the rest at shutdown), so stats survive a restart. Set once, before serving.
    pub fn keep_counters(&self, store: Arc<dyn CounterStore>) {
        let kept = Arc::new(KeptCounters::new(store));
        if self.shared.kept.set(kept.clone()).is_err() {
            tracing::warn!("counters kept twice; keeping the first");
            return;
        }
        tokio::spawn(kept.run(self.clone()));
    }

    /// Adds every counter not yet stored to the store (at shutdown); false when it failed.
    pub async fn flush_counters(&self) -> bool {
        match self.shared.kept.get() {
            Some(kept) => kept.flush(self, true).await,
            None => true,
        }
    }

    /// The project's counters, cluster-wide.
    pub async fn stats(&self, project_id: &ProjectId) -> ProjectStats {
        let local = self
            .shared
            .projects
            .read()
            .get(project_id)
            .map(|p| p.stats())
            .unwrap_or_default();
        if let Some(peers) = self.shared.peers.get() {
            return peers.cluster_stats(project_id, local).await;
        }
        match self.shared.kept.get() {
            Some(kept) => kept.stats(project_id, local).await,
            None => local,
        }
    }

    /// The project's live connections on every node.
    pub fn connections(&self, project_id: &ProjectId) -> u64 {
        let here = self
            .shared
            .projects
            .read()
            .get(project_id)
            .map_or(0, |p| p.stats().connections);
        here + self.shared.connections_elsewhere(project_id)
    }

    /// A live feed of the messages broadcast in the project's room (for the dashboard's
    /// console); lagging receivers skip ahead rather than slow the room down.
    pub fn subscribe(&self, project_id: &ProjectId) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        let project = self.shared.projects.read().get(project_id).cloned();
        let project = project.unwrap_or_else(|| {
            // Not seen yet: the real settings arrive with its first key or publish.
            let placeholder = ProjectSettings::defaults(&self.shared.limits);
            let project = self.shared.project(project_id, &placeholder);
            project.mark_provisional();
            project
        });
        project.subscribe()
    }

    /// Closes every client connection (shutdown); clients reconnect by themselves.
    pub fn close_all(&self) {
        self.io.close_all();
    }

    /// The WebSocket handshake for `/socket.io/`, taken before the HTTP server sees it.
    pub fn websocket_tap(&self) -> Arc<dyn crate::engine::ConnectionTap> {
        self.io.websocket_tap("/socket.io/")
    }

    /// The router serving `/socket.io/`.
    pub fn router(&self) -> axum::Router {
        self.io.router("/socket.io/")
    }
}
