//! Many nodes as one (SPEC §6): every node publishes on, and subscribes to, one Redis
//! pub/sub channel, the bus.
//!
//! - A `message` broadcast on a node is published once, as its final frame; every other
//!   node writes it to its own sockets of the room. One publishing connection and one
//!   subscribing connection per node keep each sender's order.
//! - Key revocations and settings changes travel the same way, so they apply on every
//!   node at once. After the bus was down (and events may have been missed), a node
//!   looks up again every key its sockets use ([`Realtime::revalidate`]).
//! - Each node reports its live connections per project on the bus: a CONNECT is
//!   answered once Redis has the new count (one round trip), a disconnection is
//!   announced at once, and all counts every second; a node not heard of for
//!   [`PEER_TTL`] is forgotten. That view gives cluster-wide connection counts,
//!   `max_connections` and `delivered_to` without a Redis round trip on the publish path.
//! - Message counters are cumulative, so they live in Redis: each node adds its deltas
//!   to one hash per project (`HINCRBY`) moments after they change, and a stats read
//!   sums that hash with the reading node's own not-yet-flushed part.
//!
//! Redis going away stops only cross-node traffic: local delivery goes on, `/readyz`
//! reports it, and the supervisor and the subscriber reconnect by themselves. Messages
//! published while Redis is away are dropped (and counted), not queued without bound.
//!
//! Failed logins are counted in Redis too (one sorted set of failure times per account
//! and per IP, checked and added by one script), so the throttle's limits hold for the
//! cluster; while Redis is away each node counts in its own memory. The project-wide
//! message rate needs no Redis command: every node already receives every message over
//! the bus and takes a token from its own bucket for each (`Realtime::message_from_peer`).

pub mod link;
pub mod wire;

use crate::platform::throttle::{SharedAttempts, SharedFuture, ThrottleLimits};
use crate::platform::types::{ProjectId, ProjectSettings};
use crate::realtime::counters::{self, FlushedCounters};
use crate::realtime::{Peers, ProjectStats, Realtime, StatsFuture};
use bytes::Bytes;
use futures_util::StreamExt;
use link::{RedisLink, REDIS_TIMEOUT};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wire::{BusEvent, Envelope, NodeId};

/// The pub/sub channel every node publishes on and subscribes to.
pub const BUS_CHANNEL: &str = "roomcast:bus";
/// How often a node reports all its connections (and so shows it is alive).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard of for this long is forgotten (its connections no longer count).
pub const PEER_TTL: Duration = Duration::from_millis(3_500);
/// How long a CONNECT waits at most for its connection count to reach Redis.
const ANNOUNCE_WAIT: Duration = Duration::from_millis(250);
/// How long after announcing itself a node waits for the others' counts before it
/// says it is ready.
const CATCH_UP: Duration = Duration::from_millis(150);
/// How often a node that has lost the bus looks up its sockets' keys again.
const RECHECK_WHILE_DEAF: Duration = Duration::from_millis(700);
/// How long counter changes gather before they are flushed together.
const COALESCE: Duration = Duration::from_millis(5);
/// Events waiting for the publisher; past this, new ones are dropped and counted.
const OUTBOX_CAPACITY: usize = 65_536;
/// Events sent to Redis in one pipeline at most.
const PUBLISH_BATCH: usize = 256;
/// Cumulative counters of a project are kept this long after their last change.
const COUNTERS_TTL_SECONDS: i64 = 90 * 24 * 3600;

/// This node's marker: present while Redis still holds what the node added to the
/// shared counters. Gone after a restart of Redis without persistence, so the node adds
/// its whole totals again rather than let the counters go down.
fn marker_key(node: &NodeId) -> String {
    format!("roomcast:node:{}", hex::encode(node))
}

/// How long a node's marker outlives the node's last heartbeat.
const MARKER_TTL_SECONDS: i64 = 24 * 3600;

/// Checks an account's (KEYS[1]) and an IP's (KEYS[2], when ARGV[5] is 1) recent
/// failures against their limits (ARGV[2], ARGV[3]) within the window (ARGV[1], ms) and,
/// when neither is over, records this attempt (ARGV[4]) as a failure in both. Returns 0,
/// or the milliseconds until the oldest counted failure leaves the window. Uses Redis's
/// clock, so nodes need not agree on the time.
const LOGIN_ATTEMPT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait = 0
local function check(key, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local left = tonumber(oldest[2]) + window - now
    if left > wait then wait = left end
  end
end
check(KEYS[1], tonumber(ARGV[2]))
if ARGV[5] == '1' then check(KEYS[2], tonumber(ARGV[3])) end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], window)
end
return 0
";

/// The Redis keys of an account's and an IP's failed logins (the account hashed: no
/// email address is written to Redis).
fn login_keys(account: &str, ip: Option<std::net::IpAddr>) -> (String, String) {
    use sha2::Digest;
    let account = hex::encode(sha2::Sha256::digest(account.as_bytes()));
    let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
    (
        format!("roomcast:login:account:{account}"),
        format!("roomcast:login:ip:{ip}"),
    )
}

/// The Redis hash holding a project's cumulative message counters.
fn counters_key(project: &ProjectId) -> String {
    format!("roomcast:stats:{project}")
}

/// What the publisher task sends to Redis, in order.
enum Outgoing {
    /// An encoded bus event.
    Publish(Vec<u8>),
    /// A deleted project's counters.
    Forget(ProjectId),
    /// An encoded bus event whose sender waits until Redis has taken it.
    PublishAndTell(Vec<u8>, tokio::sync::oneshot::Sender<()>),
}

/// What this node knows of another node.
struct PeerView {
    seen: Instant,
    connections: HashMap<ProjectId, u64>,
}

/// This node's membership of a cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    link: RedisLink,
    outbox: mpsc::Sender<Outgoing>,
    peers: Mutex<HashMap<NodeId, PeerView>>,
    /// This node's counters as last added to Redis, per project.
    flushed: Mutex<FlushedCounters>,
    /// Held from reading the unflushed deltas until Redis has taken them, so that the
    /// reporter and the last flush at shutdown never add the same delta twice.
    flushing: tokio::sync::Mutex<()>,
    /// Held while connection counts are read and queued (see [`Cluster::announce`]).
    announcing: Mutex<()>,
    /// When this node counts as caught up with the others after joining the bus: `None`
    /// while it is off the bus or has not announced itself yet.
    caught_up_at: Mutex<Option<Instant>>,
    /// The command connection generation whose Redis was checked for this node's marker.
    checked_generation: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Joins the cluster on the Redis at `redis_url`: attaches to `realtime` and starts
    /// the publisher, subscriber, reporter and connection supervisor (inside a Tokio
    /// runtime). Redis need not be up yet; the node reconnects by itself.
    pub fn join(redis_url: &str, realtime: &Realtime) -> anyhow::Result<Self> {
        let client = redis::Client::open(redis_url)
            .map_err(|e| anyhow::anyhow!("--redis-url is not a valid Redis URL: {e}"))?;
        let (outbox, queued) = mpsc::channel(OUTBOX_CAPACITY);
        let cluster = Self {
            inner: Arc::new(Inner {
                node: rand::random(),
                link: RedisLink::new(client),
                outbox,
                peers: Mutex::new(HashMap::new()),
                flushed: Mutex::new(FlushedCounters::default()),
                flushing: tokio::sync::Mutex::new(()),
                announcing: Mutex::new(()),
                caught_up_at: Mutex::new(None),
                checked_generation: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        realtime.attach_peers(Arc::new(cluster.clone()));
        let supervisor = cluster.clone();
        tokio::spawn(async move { supervisor.inner.link.supervise().await });
        tokio::spawn(cluster.clone().publish(queued));
        tokio::spawn(cluster.clone().subscribe(realtime.clone()));
        tokio::spawn(cluster.clone().report(realtime.clone()));
        tokio::spawn(cluster.clone().announce_disconnections(realtime.clone()));
        tokio::spawn(cluster.clone().recheck_keys_while_deaf(realtime.clone()));
        Ok(cluster)
    }

    /// Whether the node reaches the other nodes; the reason for `/readyz` when not.
    pub async fn health(&self) -> Result<(), String> {
        self.inner.link.health()?;
        let caught_up = self
            .inner
            .caught_up_at
            .lock()
            .is_some_and(|at| Instant::now() >= at);
        if !caught_up {
            return Err("joining the other nodes on redis".into());
        }
        self.inner
            .link
            .query::<String>(&redis::cmd("PING"))
            .await
            .map(drop)
            .map_err(|error| format!("redis is not answering: {error}"))
    }

    /// Adds every counter change not yet in Redis (at shutdown, once the transports are
    /// closed, so that a message received just before the stop is still counted).
    pub async fn flush_all(&self, realtime: &Realtime) {
        let counters = realtime.local_counters(true);
        self.flush_counters(&counters, true).await;
    }

    /// Tells the other nodes this one is leaving (at shutdown), so they stop counting its
    /// connections at once instead of after [`PEER_TTL`].
    pub async fn leave(&self) {
        let mut command = redis::cmd("PUBLISH");
        command
            .arg(BUS_CHANNEL)
            .arg(self.envelope(BusEvent::Leave).encode());
        let publish = self.inner.link.query::<u64>(&command);
        let _ = tokio::time::timeout(Duration::from_millis(500), publish).await;
    }

    fn envelope(&self, event: BusEvent) -> Envelope {
        Envelope {
            node: self.inner.node,
            event,
        }
    }

    /// Queues an event for the publisher; never waits.
    fn send(&self, outgoing: Outgoing) {
        if self.inner.outbox.try_send(outgoing).is_err() {
            metrics::counter!("roomcast_cluster_events_dropped_total", "reason" => "backlog")
                .increment(1);
        }
    }

    /// Publisher task: drains the outbox in order, a pipeline at a time.
    async fn publish(self, mut queued: mpsc::Receiver<Outgoing>) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while queued.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            if self.inner.link.connection().is_none() {
                metrics::counter!("roomcast_cluster_events_dropped_total", "reason" => "redis_down")
                    .increment(batch.len() as u64);
                batch.clear();
                continue;
            }
            let mut pipe = redis::pipe();
            let mut waiting = Vec::new();
            for outgoing in batch.drain(..) {
                match outgoing {
                    Outgoing::Publish(bytes) => pipe.cmd("PUBLISH").arg(BUS_CHANNEL).arg(bytes),
                    Outgoing::Forget(project) => pipe.cmd("DEL").arg(counters_key(&project)),
                    Outgoing::PublishAndTell(bytes, done) => {
                        waiting.push(done);
                        pipe.cmd("PUBLISH").arg(BUS_CHANNEL).arg(bytes)
                    }
                }
                .ignore();
            }
            let _ = self.inner.link.run(&pipe).await;
            for done in waiting {
                let _ = done.send(());
            }
        }
    }

    /// Subscriber task: holds the bus subscription, reconnecting when it drops, and
    /// applies what the other nodes say.
    async fn subscribe(self, realtime: Realtime) {
        let mut failures = 0;
        let mut was_subscribed = false;
        loop {
            let pubsub = async {
                let mut pubsub = self.inner.link.client().get_async_pubsub().await?;
                pubsub.subscribe(BUS_CHANNEL).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match tokio::time::timeout(REDIS_TIMEOUT, pubsub).await {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(error)) => {
                    self.inner.link.record(&error);
                    tokio::time::sleep(RedisLink::backoff(failures)).await;
                    failures += 1;
                    continue;
                }
                Err(_) => {
                    self.inner.link.record(&"subscribing timed out");
                    tokio::time::sleep(RedisLink::backoff(failures)).await;
                    failures += 1;
                    continue;
                }
            };
            failures = 0;
            self.inner.link.set_subscribed(true);
            tracing::info!(channel = BUS_CHANNEL, "cluster bus subscribed");
            if was_subscribed {
                // Revocations published while we were away were missed.
                let realtime = realtime.clone();
                tokio::spawn(async move { realtime.revalidate().await });
            }
            was_subscribed = true;
            tokio::spawn(self.clone().join_peers(realtime.clone()));
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                self.receive(&realtime, message.get_payload_bytes());
            }
            self.inner.link.set_subscribed(false);
            *self.inner.caught_up_at.lock() = None;
            self.inner.link.record(&"the bus subscription closed");
            self.inner.peers.lock().clear();
            tracing::warn!("cluster bus subscription lost; reconnecting");
        }
    }

    /// Once subscribed: announces this node's connections as soon as the publishing
    /// connection is up too (an announcement queued before would be dropped), and counts
    /// as caught up [`CATCH_UP`] later, by when every other node, hearing from a node it
    /// did not know, has answered with its own counts. Until then `/readyz` says 503, so
    /// a node reported ready has the whole cluster's counts.
    async fn join_peers(self, realtime: Realtime) {
        while self.inner.link.connection().is_none() {
            if !self.inner.link.is_subscribed() {
                return; // lost again; the next subscription starts over
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.announce(&realtime);
        *self.inner.caught_up_at.lock() = Some(Instant::now() + CATCH_UP);
    }

    /// While the bus is down this node hears no revocations, so every
    /// [`RECHECK_WHILE_DEAF`] it looks up again each key its sockets use, and a key
    /// regenerated or deleted on another node still disconnects its sockets here within
    /// about a second (new connections and HTTP publishes ask the directory meanwhile:
    /// see [`Peers::hears_revocations`]).
    async fn recheck_keys_while_deaf(self, realtime: Realtime) {
        let mut tick = tokio::time::interval(RECHECK_WHILE_DEAF);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.inner.link.is_subscribed() {
                realtime.revalidate().await;
            }
        }
    }

    /// Applies one event read from the bus.
    fn receive(&self, realtime: &Realtime, bytes: &[u8]) {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                metrics::counter!("roomcast_cluster_events_invalid_total").increment(1);
                tracing::warn!(error = %error, "ignoring a malformed cluster event");
                return;
            }
        };
        if envelope.node == self.inner.node {
            return; // our own, already applied here
        }
        let newcomer = !self.inner.peers.lock().contains_key(&envelope.node);
        if newcomer && !matches!(envelope.event, BusEvent::Leave) {
            // A node that just started or came back from an outage (or that we had
            // forgotten) knows nothing of our sockets: tell it now, not at our next
            // heartbeat, so cluster-wide counts are right within milliseconds of
            // `/readyz` turning ready.
            self.announce(realtime);
        }
        let now = Instant::now();
        let mut peers = self.inner.peers.lock();
        let peer = peers.entry(envelope.node).or_insert_with(|| PeerView {
            seen: now,
            connections: HashMap::new(),
        });
        peer.seen = now;
        match envelope.event {
            BusEvent::Connections { full, counts } => {
                if full {
                    peer.connections.clear();
                }
                for (project, count) in counts {
                    if count == 0 {
                        peer.connections.remove(&project);
                    } else {
                        peer.connections.insert(project, count);
                    }
                }
            }
            BusEvent::Leave => {
                peers.remove(&envelope.node);
            }
            event => {
                drop(peers);
                match event {
                    BusEvent::Message { project, frame } => {
                        realtime.message_from_peer(&project, frame)
                    }
                    BusEvent::Revoke { project, surviving } => {
                        realtime.revoke_from_peer(&project, surviving)
                    }
                    BusEvent::Settings { project, settings } => {
                        realtime.settings_from_peer(&project, &settings)
                    }
                    BusEvent::Connections { .. } | BusEvent::Leave => {}
                }
            }
        }
    }

    /// Publishes this node's connections per project (all of them).
    fn announce(&self, realtime: &Realtime) {
        // Counts are read and queued under one lock by every announcer, so an older
        // reading is never published after a newer one.
        let _announcing = self.inner.announcing.lock();
        let counts = realtime.connection_counts();
        let event = BusEvent::Connections { full: true, counts };
        self.send(Outgoing::Publish(self.envelope(event).encode()));
    }

    /// Reporter task: flushes message counters soon after they move (reading only the
    /// projects that moved), and every [`HEARTBEAT`] announces all this node's
    /// connections (which also shows it is alive) and flushes every project.
    async fn report(self, realtime: Realtime) {
        let changes = realtime.changes();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let full = tokio::select! {
                _ = changes.changed() => {
                    tokio::time::sleep(COALESCE).await;
                    false
                }
                _ = heartbeat.tick() => true,
            };
            changes.clear();
            let mut counters = realtime.local_counters(full);
            if full {
                self.announce(&realtime);
            }
            let redis_emptied = self.check_marker(full).await;
            if redis_emptied && !full {
                // Every project's totals go again, not only those that moved.
                counters = realtime.local_counters(true);
            }
            self.flush_counters(&counters, full || redis_emptied).await;
            if full {
                self.forget_silent_peers();
            }
        }
    }

    /// Announcer task: publishes the connection count of each project that lost sockets,
    /// as soon as it did. It never waits for Redis (the publisher does), so a socket stops
    /// counting on the other nodes one Redis hop after it went.
    async fn announce_disconnections(self, realtime: Realtime) {
        let changes = realtime.connection_changes();
        loop {
            changes.connections_changed().await;
            let moved = changes.take_connections_moved();
            if moved.is_empty() {
                continue;
            }
            let _announcing = self.inner.announcing.lock();
            let counts = realtime.connection_counts_of(moved);
            let event = BusEvent::Connections {
                full: false,
                counts,
            };
            self.send(Outgoing::Publish(self.envelope(event).encode()));
        }
    }

    /// After (re)connecting, checks that Redis still holds this node's earlier counter
    /// additions; if it lost them (restarted empty), the node adds its totals again.
    /// On heartbeats, keeps the marker alive.
    /// Returns true when Redis had lost them (every total must be flushed again).
    async fn check_marker(&self, heartbeat: bool) -> bool {
        use std::sync::atomic::Ordering;
        let generation = self.inner.link.generation();
        let key = marker_key(&self.inner.node);
        if self.inner.checked_generation.load(Ordering::Acquire) == generation {
            if heartbeat {
                let mut command = redis::cmd("EXPIRE");
                command.arg(&key).arg(MARKER_TTL_SECONDS);
                let _ = self.inner.link.query::<u64>(&command).await;
            }
            return false;
        }
        let mut command = redis::cmd("SET");
        command
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(MARKER_TTL_SECONDS);
        let mut emptied = false;
        if let Ok(created) = self.inner.link.query::<Option<String>>(&command).await {
            if created.is_some() && self.inner.flushed.lock().clear() {
                tracing::warn!("redis lost the shared counters; adding this node's totals again");
                emptied = true;
            }
            self.inner
                .checked_generation
                .store(generation, Ordering::Release);
        }
        emptied
    }

    /// Adds what this node counted since the last flush to the shared counters.
    /// With `all`, `counters` lists every project this node knows, and what it flushed
    /// for projects not among them (deleted) is forgotten; a flush that failed is
    /// retried then, at the latest.
    async fn flush_counters(&self, counters: &[(ProjectId, Option<ProjectStats>)], all: bool) {
        let _flushing = self.inner.flushing.lock().await;
        let pending = self.inner.flushed.lock().pending(counters, all);
        if pending.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for counters in &pending {
            let [received, delivered, rejected] = counters.delta;
            let key = counters_key(&counters.project);
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("received")
                .arg(received)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("delivered")
                .arg(delivered)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("rejected")
                .arg(rejected)
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(COUNTERS_TTL_SECONDS)
                .ignore();
        }
        // On failure the deltas stay unflushed and are added once Redis is back.
        if self.inner.link.run(&pipe).await.is_ok() {
            self.inner.flushed.lock().added(pending);
        }
    }

    fn forget_silent_peers(&self) {
        let now = Instant::now();
        let mut peers = self.inner.peers.lock();
        peers.retain(|_, peer| now.duration_since(peer.seen) < PEER_TTL);
        metrics::gauge!("roomcast_cluster_peers").set(peers.len() as f64);
    }

    /// The project's cumulative counters in Redis: received, delivered, rejected.
    async fn shared_counters(&self, project: &ProjectId) -> Result<[u64; 3], String> {
        let mut command = redis::cmd("HMGET");
        command
            .arg(counters_key(project))
            .arg("received")
            .arg("delivered")
            .arg("rejected");
        let values = self.inner.link.query::<[Option<u64>; 3]>(&command).await?;
        Ok(values.map(Option::unwrap_or_default))
    }
}

impl SharedAttempts for Cluster {
    fn begin<'a>(
        &'a self,
        account: &'a str,
        ip: Option<std::net::IpAddr>,
        limits: ThrottleLimits,
    ) -> SharedFuture<'a, Option<Result<String, Duration>>> {
        Box::pin(async move {
            let (account_key, ip_key) = login_keys(account, ip);
            let token = hex::encode(rand::random::<[u8; 12]>());
            let mut command = redis::cmd("EVAL");
            command
                .arg(LOGIN_ATTEMPT_SCRIPT)
                .arg(2)
                .arg(&account_key)
                .arg(&ip_key)
                .arg(limits.window.as_millis() as u64)
                .arg(limits.account)
                .arg(limits.ip)
                .arg(&token)
                .arg(if ip.is_some() { "1" } else { "0" });
            match self.inner.link.query::<u64>(&command).await {
                Ok(0) => Some(Ok(token)),
                Ok(wait_ms) => Some(Err(Duration::from_millis(wait_ms))),
                Err(error) => {
                    tracing::warn!(%error, "shared login throttle unavailable; counting on this node");
                    None
                }
            }
        })
    }

    fn succeeded<'a>(
        &'a self,
        account: &'a str,
        ip: Option<std::net::IpAddr>,
        token: String,
    ) -> SharedFuture<'a, ()> {
        Box::pin(async move {
            let (account_key, ip_key) = login_keys(account, ip);
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(&account_key).arg(&token).ignore();
            if ip.is_some() {
                pipe.cmd("ZREM").arg(&ip_key).arg(&token).ignore();
            }
            let _ = self.inner.link.run(&pipe).await;
        })
    }
}

impl Peers for Cluster {
    fn forward_message(&self, project: &ProjectId, frame: &Bytes) {
        // Encoded straight from the borrowed parts: the message path copies the frame
        // once, into the bytes published.
        let bytes = wire::encode_message(&self.inner.node, project.as_str(), frame);
        self.send(Outgoing::Publish(bytes));
    }

    fn forward_revocation(&self, project: &ProjectId, surviving: Option<[u8; 32]>) {
        let event = BusEvent::Revoke {
            project: project.clone(),
            surviving,
        };
        self.send(Outgoing::Publish(self.envelope(event).encode()));
        if surviving.is_none() {
            self.send(Outgoing::Forget(project.clone()));
        }
    }

    fn forward_settings(&self, project: &ProjectId, settings: &ProjectSettings) {
        let event = BusEvent::Settings {
            project: project.clone(),
            settings: settings.clone(),
        };
        self.send(Outgoing::Publish(self.envelope(event).encode()));
    }

    fn connections_elsewhere(&self, project: &ProjectId) -> u64 {
        let now = Instant::now();
        self.inner
            .peers
            .lock()
            .values()
            .filter(|peer| now.duration_since(peer.seen) < PEER_TTL)
            .filter_map(|peer| peer.connections.get(project))
            .sum()
    }

    fn announce_connections<'a>(
        &'a self,
        project: &'a ProjectId,
        connections: &'a (dyn Fn() -> u64 + Sync),
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let (done, told) = tokio::sync::oneshot::channel();
            {
                let _announcing = self.inner.announcing.lock();
                let event = BusEvent::Connections {
                    full: false,
                    counts: vec![(project.clone(), connections())],
                };
                self.send(Outgoing::PublishAndTell(
                    self.envelope(event).encode(),
                    done,
                ));
            }
            // Dropped unsent (a full outbox, Redis away) ends the wait at once; a slow
            // Redis does not hold a handshake for long.
            let _ = tokio::time::timeout(ANNOUNCE_WAIT, told).await;
        })
    }

    fn hears_revocations(&self) -> bool {
        self.inner.link.is_subscribed()
    }

    fn cluster_stats<'a>(&'a self, project: &'a ProjectId, local: ProjectStats) -> StatsFuture<'a> {
        Box::pin(async move {
            let connections = local.connections + self.connections_elsewhere(project);
            match self.shared_counters(project).await {
                Ok(stored) => {
                    let unflushed = self.inner.flushed.lock().unflushed(project, &local);
                    ProjectStats {
                        connections,
                        ..counters::with_stored(local, stored, unflushed)
                    }
                }
                Err(reason) => {
                    tracing::warn!(%reason, "cluster counters unavailable; answering with this node's");
                    ProjectStats {
                        connections,
                        ..local
                    }
                }
            }
        })
    }
}
