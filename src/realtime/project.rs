//! A project's live state on this node: its limits (changed at once by PATCH), rate
//! buckets, counters, the connection slots it hands out, and the console feed.

use crate::platform::types::{ProjectId, ProjectSettings};
use metrics::{Counter, Gauge};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// Keys revoked recently, remembered so a CONNECT that looked its key up just before the
/// revocation cannot slip in after it.
const REMEMBERED_REVOCATIONS: usize = 16;

/// A token bucket: `rate` tokens per second, holding at most twice that (SPEC §4 burst).
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub fn new(rate: u32) -> Self {
        Self {
            tokens: f64::from(rate) * 2.0,
            last: Instant::now(),
        }
    }

    /// Takes one token at the current `rate`, or says in how many ms one will be there.
    pub fn take(&mut self, rate: u32, now: Instant) -> Result<(), u64> {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / rate) * 1000.0).ceil().max(1.0) as u64)
        }
    }

    /// Takes one token for a message admitted elsewhere (another node), even when none is
    /// left: the bucket empties but never owes, so a race between nodes costs no more
    /// than the messages it let through.
    pub fn spend(&mut self, rate: u32, now: Instant) {
        if self.take(rate, now).is_err() {
            self.tokens = 0.0;
        }
    }
}

/// Tells a waiting reporter (the cluster's, or a single node's flush to the database)
/// which projects' counters moved; cheap enough for the message path: two relaxed loads
/// while the project is already marked.
///
/// Why a list of the moved projects: the reporter runs every few milliseconds while
/// messages flow, and a node may know thousands of projects; reading them all each time
/// cost more than the messages themselves (1,000 projects at 1,000 messages a second).
#[derive(Default)]
pub struct ChangeSignal {
    /// A reporter listens; without one (an embedder with no store) no list is kept.
    watched: AtomicBool,
    pending: AtomicBool,
    notify: tokio::sync::Notify,
    /// A cluster's announcer listens for disconnections (a single node keeps no list).
    connections_watched: AtomicBool,
    /// A connection went since the announcer last took the list.
    connections_pending: AtomicBool,
    connections_notify: tokio::sync::Notify,
    /// Projects that lost connections since the announcer last took the list.
    connections_moved: Mutex<Vec<ProjectId>>,
    /// Projects marked since the reporter last took the list, each once.
    moved: Mutex<Vec<ProjectId>>,
}

impl ChangeSignal {
    /// Records that `project`'s counters moved and wakes the reporter if it was not
    /// already told.
    fn mark(&self, project: &ProjectState) {
        if !self.watched.load(Ordering::Relaxed) {
            return;
        }
        if !project.moved.load(Ordering::Relaxed) && !project.moved.swap(true, Ordering::AcqRel) {
            self.moved.lock().push(project.id.clone());
        }
        if !self.pending.load(Ordering::Relaxed) && !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Like [`Self::mark`], for a connection that went. The cluster's announcer
    /// publishes those at once, on a task that never waits for Redis, rather than after
    /// the counters' coalescing pause and flush. (A connection that came is announced
    /// by the CONNECT itself, before it is answered: see `Peers::announce_connections`.)
    fn mark_disconnection(&self, project: &ProjectState) {
        if !self.watched.load(Ordering::Relaxed) {
            return;
        }
        self.mark(project);
        if !self.connections_watched.load(Ordering::Relaxed) {
            return;
        }
        self.connections_moved.lock().push(project.id.clone());
        if !self.connections_pending.swap(true, Ordering::AcqRel) {
            self.connections_notify.notify_one();
        }
    }

    /// Takes the projects that lost connections since the last call (each once), for
    /// the announcer; the next change wakes it again.
    pub fn take_connections_moved(&self) -> Vec<ProjectId> {
        self.connections_pending.store(false, Ordering::Release);
        let mut moved = std::mem::take(&mut *self.connections_moved.lock());
        moved.sort_unstable();
        moved.dedup();
        moved
    }

    /// From now on, changes are recorded for a reporter (until then nothing is kept).
    pub fn watch(&self) {
        self.watched.store(true, Ordering::Relaxed);
    }

    /// From now on, disconnections are also listed for an announcer.
    pub fn watch_connections(&self) {
        self.watch();
        self.connections_watched.store(true, Ordering::Relaxed);
    }

    /// Takes the projects marked since the last call. Each is marked again only once its
    /// counters were read with [`ProjectState::take_stats`].
    pub fn take_moved(&self) -> Vec<ProjectId> {
        std::mem::take(&mut *self.moved.lock())
    }

    /// Waits for the next change.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Waits for the next disconnection.
    pub async fn connections_changed(&self) {
        self.connections_notify.notified().await;
    }

    /// Clears the pending mark just before the reporter reads the counters.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// A project as the realtime side sees it.
pub struct ProjectState {
    /// The project id, which is also its room name.
    pub id: ProjectId,
    /// The room every socket of the project joins.
    pub room: Arc<str>,
    max_message_bytes: AtomicU32,
    messages_per_second: AtomicU32,
    project_messages_per_second: AtomicU32,
    max_connections: AtomicU32,
    allowed_origins: Mutex<Arc<Vec<String>>>,
    bucket: Mutex<TokenBucket>,
    connections: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    deleted: AtomicBool,
    /// Created before its settings were known (by a console subscription).
    provisional: AtomicBool,
    revoked_keys: Mutex<Vec<[u8; 32]>>,
    feed: Mutex<Option<broadcast::Sender<Arc<str>>>>,
    changes: Arc<ChangeSignal>,
    /// On the change signal's list of moved projects (see [`ChangeSignal`]).
    moved: AtomicBool,
    metric_connections: Gauge,
    metric_received: Counter,
    metric_delivered: Counter,
    /// The same counts summed over every project (`roomcast_messages_*_total`).
    metric_total_received: Counter,
    metric_total_delivered: Counter,
}

impl ProjectState {
    /// State for a project first seen with these settings.
    pub fn new(id: ProjectId, settings: &ProjectSettings, changes: Arc<ChangeSignal>) -> Self {
        let label = id.as_str().to_owned();
        let state = Self {
            room: Arc::from(id.as_str()),
            max_message_bytes: AtomicU32::new(0),
            messages_per_second: AtomicU32::new(0),
            project_messages_per_second: AtomicU32::new(0),
            max_connections: AtomicU32::new(0),
            allowed_origins: Mutex::new(Arc::new(Vec::new())),
            bucket: Mutex::new(TokenBucket::new(settings.project_messages_per_second)),
            connections: AtomicU64::new(0),
            received: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            deleted: AtomicBool::new(false),
            provisional: AtomicBool::new(false),
            revoked_keys: Mutex::new(Vec::new()),
            feed: Mutex::new(None),
            changes,
            moved: AtomicBool::new(false),
            metric_connections: metrics::gauge!("roomcast_project_connections", "project" => label.clone()),
            metric_received: metrics::counter!("roomcast_project_messages_received_total", "project" => label.clone()),
            metric_delivered: metrics::counter!("roomcast_project_messages_delivered_total", "project" => label),
            metric_total_received: metrics::counter!("roomcast_messages_received_total"),
            metric_total_delivered: metrics::counter!("roomcast_messages_delivered_total"),
            id,
        };
        state.apply(settings);
        state
    }

    /// Marks the settings as placeholders until the real ones are applied.
    pub fn mark_provisional(&self) {
        self.provisional.store(true, Ordering::Release);
    }

    /// Whether the settings are placeholders.
    pub fn is_provisional(&self) -> bool {
        self.provisional.load(Ordering::Acquire)
    }

    /// Applies new settings; live sockets see them on their next message.
    pub fn apply(&self, settings: &ProjectSettings) {
        self.provisional.store(false, Ordering::Release);
        self.max_message_bytes
            .store(settings.max_message_bytes, Ordering::Relaxed);
        self.messages_per_second
            .store(settings.messages_per_second, Ordering::Relaxed);
        self.project_messages_per_second
            .store(settings.project_messages_per_second, Ordering::Relaxed);
        self.max_connections
            .store(settings.max_connections, Ordering::Relaxed);
        *self.allowed_origins.lock() = Arc::new(
            settings
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        );
    }

    /// The settings in force.
    pub fn settings(&self) -> ProjectSettings {
        ProjectSettings {
            max_message_bytes: self.max_message_bytes(),
            messages_per_second: self.messages_per_second(),
            project_messages_per_second: self.project_messages_per_second.load(Ordering::Relaxed),
            max_connections: self.max_connections.load(Ordering::Relaxed),
            allowed_origins: self.allowed_origins.lock().as_ref().clone(),
        }
    }

    /// Largest message in UTF-8 bytes.
    pub fn max_message_bytes(&self) -> u32 {
        self.max_message_bytes.load(Ordering::Relaxed)
    }

    /// Per-connection rate.
    pub fn messages_per_second(&self) -> u32 {
        self.messages_per_second.load(Ordering::Relaxed)
    }

    /// Whether a browser `Origin` may connect (no `Origin`: not a browser, let through).
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed = self.allowed_origins.lock().clone();
        match origin {
            _ if allowed.is_empty() => true,
            None => true,
            // Normalised as the list was (case, a default port, a trailing `/`), so both
            // sides are compared in one spelling; what is not an origin (`null`) is refused.
            Some(origin) => crate::platform::validate::origin(origin)
                .is_ok_and(|origin| allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin))),
        }
    }

    /// Takes a token from the project-wide bucket.
    pub fn take_project_token(&self, now: Instant) -> Result<(), u64> {
        let rate = self.project_messages_per_second.load(Ordering::Relaxed);
        self.bucket.lock().take(rate, now)
    }

    /// Counts a message another node admitted against the project-wide bucket, so that the
    /// project's rate holds across the cluster (SPEC §6: the nodes act as one).
    pub fn spend_project_token(&self, now: Instant) {
        let rate = self.project_messages_per_second.load(Ordering::Relaxed);
        self.bucket.lock().spend(rate, now);
    }

    /// Reserves a connection slot if the project, counting the `elsewhere` connections
    /// it has on other nodes, is under its limit.
    pub fn try_reserve_connection(self: &Arc<Self>, elsewhere: u64) -> Option<ConnectionSlot> {
        let max = u64::from(self.max_connections.load(Ordering::Relaxed));
        let reserved = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n.saturating_add(elsewhere) < max).then_some(n + 1)
            })
            .is_ok();
        reserved.then(|| {
            self.metric_connections.increment(1.0);
            self.mark_moved();
            ConnectionSlot {
                project: self.clone(),
                held: AtomicBool::new(true),
            }
        })
    }

    /// Counts a received message (accepted or not).
    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.metric_received.increment(1);
        self.metric_total_received.increment(1);
        self.mark_moved();
    }

    /// Counts a refused message.
    pub fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.mark_moved();
    }

    /// Counts copies queued for sockets.
    pub fn count_delivered(&self, copies: u64) {
        self.delivered.fetch_add(copies, Ordering::Relaxed);
        self.metric_delivered.increment(copies);
        self.metric_total_delivered.increment(copies);
        self.mark_moved();
    }

    /// Puts the project on the reporter's list of moved projects (once until it is read).
    pub fn mark_moved(&self) {
        self.changes.mark(self);
    }

    /// The project's counters for the reporter: a change after this read puts the
    /// project on the list again.
    pub fn take_stats(&self) -> super::ProjectStats {
        self.moved.store(false, Ordering::Release);
        self.stats()
    }

    /// The project's counters.
    pub fn stats(&self) -> super::ProjectStats {
        super::ProjectStats {
            connections: self.connections.load(Ordering::Relaxed),
            messages_received: self.received.load(Ordering::Relaxed),
            messages_delivered: self.delivered.load(Ordering::Relaxed),
            messages_rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Marks keys as revoked (or the whole project as deleted).
    pub fn revoke(&self, keys: &[[u8; 32]], deleted: bool) {
        if deleted {
            self.deleted.store(true, Ordering::Release);
        }
        let mut revoked = self.revoked_keys.lock();
        revoked.extend_from_slice(keys);
        let excess = revoked.len().saturating_sub(REMEMBERED_REVOCATIONS);
        revoked.drain(..excess);
    }

    /// Whether a key of this project may still connect.
    pub fn key_is_live(&self, key_hash: &[u8; 32]) -> bool {
        !self.deleted.load(Ordering::Acquire) && !self.revoked_keys.lock().contains(key_hash)
    }

    /// A receiver of the room's messages, for the dashboard console.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        let mut feed = self.feed.lock();
        feed.get_or_insert_with(|| broadcast::channel(256).0)
            .subscribe()
    }

    /// Whether anyone watches the console feed (decoding is skipped otherwise).
    pub fn has_watchers(&self) -> bool {
        self.feed
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Sends a message to the console feed.
    pub fn feed(&self, message: Arc<str>) {
        if let Some(tx) = self.feed.lock().as_ref() {
            let _ = tx.send(message);
        }
    }
}

/// One of a project's connection places; given back when dropped or released.
pub struct ConnectionSlot {
    project: Arc<ProjectState>,
    held: AtomicBool,
}

impl ConnectionSlot {
    /// The project the slot belongs to.
    pub fn project(&self) -> &Arc<ProjectState> {
        &self.project
    }

    /// Gives the place back (idempotent).
    pub fn release(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.project.connections.fetch_sub(1, Ordering::AcqRel);
            self.project.metric_connections.decrement(1.0);
            self.project.changes.mark_disconnection(&self.project);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::types::Limits;
    use std::time::Duration;

    #[test]
    fn tokens_spent_elsewhere_empty_the_bucket_without_debt() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2);
        for _ in 0..10 {
            bucket.spend(2, start);
        }
        assert_eq!(
            bucket.take(2, start),
            Err(500),
            "emptied by the other node's messages"
        );
        assert!(
            bucket.take(2, start + Duration::from_millis(500)).is_ok(),
            "refills as if never overdrawn"
        );
    }

    #[test]
    fn bucket_allows_a_double_burst_then_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10);
        for _ in 0..20 {
            assert!(bucket.take(10, start).is_ok());
        }
        let wait = bucket.take(10, start).unwrap_err();
        assert!((1..=100).contains(&wait), "{wait}");
        assert!(bucket.take(10, start + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn slots_respect_the_limit_and_come_back() {
        let mut settings = ProjectSettings::defaults(&Limits::default());
        settings.max_connections = 1;
        let project = Arc::new(ProjectState::new(
            ProjectId("p".into()),
            &settings,
            Arc::default(),
        ));
        let slot = project.try_reserve_connection(0).expect("first fits");
        assert!(project.try_reserve_connection(0).is_none());
        slot.release();
        slot.release();
        assert_eq!(project.stats().connections, 0);
        let again = project.try_reserve_connection(0);
        assert!(again.is_some());
        drop(again);
        assert_eq!(project.stats().connections, 0);
    }

    #[test]
    fn the_reporter_is_told_each_moved_project_once_until_it_reads_it() {
        let settings = ProjectSettings::defaults(&Limits::default());
        let changes = Arc::new(ChangeSignal::default());
        let busy = ProjectState::new(ProjectId("busy".into()), &settings, changes.clone());
        let quiet = ProjectState::new(ProjectId("quiet".into()), &settings, changes.clone());
        busy.count_received();
        assert!(
            changes.take_moved().is_empty(),
            "nothing kept without a reporter"
        );
        changes.watch();
        busy.count_received();
        busy.count_delivered(3);
        busy.count_rejected();
        assert_eq!(
            changes.take_moved(),
            vec![busy.id.clone()],
            "once, quiet not listed"
        );
        busy.count_received();
        assert!(
            changes.take_moved().is_empty(),
            "not listed again before its counters were read"
        );
        let read = busy.take_stats();
        assert_eq!((read.messages_received, read.messages_delivered), (3, 3));
        busy.count_received();
        quiet.count_received();
        assert_eq!(
            changes.take_moved(),
            vec![busy.id.clone(), quiet.id.clone()],
            "a change after the read lists it again"
        );
    }

    #[test]
    fn connections_on_other_nodes_count_against_the_limit() {
        let mut settings = ProjectSettings::defaults(&Limits::default());
        settings.max_connections = 3;
        let project = Arc::new(ProjectState::new(
            ProjectId("p".into()),
            &settings,
            Arc::default(),
        ));
        let first = project
            .try_reserve_connection(1)
            .expect("1 here + 1 elsewhere < 3");
        assert!(project.try_reserve_connection(2).is_none());
        assert!(project.try_reserve_connection(1).is_some());
        drop(first);
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let mut settings = ProjectSettings::defaults(&Limits::default());
        let project = ProjectState::new(ProjectId("p".into()), &settings, Arc::default());
        assert!(project.origin_allowed(Some("https://evil.example")));
        settings.allowed_origins = vec!["https://app.example".into()];
        project.apply(&settings);
        assert!(project.origin_allowed(Some("https://APP.example")));
        assert!(project.origin_allowed(Some("https://app.example:443")));
        assert!(project.origin_allowed(Some("https://app.example/")));
        assert!(!project.origin_allowed(Some("http://app.example")));
        assert!(!project.origin_allowed(Some("null")));
        assert!(project.origin_allowed(None));
        assert!(!project.origin_allowed(Some("https://evil.example")));
    }
}
