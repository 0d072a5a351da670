//! Cumulative message counters kept outside the process (SPEC §2 stats), so they outlive
//! a restart and, in a cluster, add up across nodes: the database on a single node
//! ([`KeptCounters`]), Redis in a cluster (`crate::cluster`). Both add the deltas of this
//! process's own counters a moment after they move, and both answer a stats read with
//! the stored total plus what is not yet added ([`FlushedCounters`] tracks the line).

use super::{ProjectStats, Realtime};
use crate::platform::types::ProjectId;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Boxed future of a [`CounterStore`] call.
pub type CounterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where a single node keeps its projects' cumulative counters; implemented over the
/// database by [`crate::platform::directory::StoreDirectory`].
pub trait CounterStore: Send + Sync + 'static {
    /// Adds `[received, delivered, rejected]` deltas to projects (deleted ones skipped).
    fn add(&self, deltas: Vec<(ProjectId, [u64; 3])>) -> CounterFuture<'_, ()>;
    /// A project's stored `[received, delivered, rejected]` (zeros when unknown).
    fn read<'a>(&'a self, project: &'a ProjectId) -> CounterFuture<'a, [u64; 3]>;
}

/// Counters of one project that are not yet in the shared total.
pub struct PendingCounters {
    /// The project.
    pub project: ProjectId,
    /// Its local counters when read.
    now: ProjectStats,
    /// `[received, delivered, rejected]` to add.
    pub delta: [u64; 3],
}

/// Per project, this process's counters as they were when last added to the shared
/// total.
#[derive(Default)]
pub struct FlushedCounters {
    flushed: HashMap<ProjectId, ProjectStats>,
}

impl FlushedCounters {
    /// What to add for each project of `counters` (as read by
    /// [`Realtime::local_counters`]). A project gone here (deleted) is forgotten; with
    /// `all`, `counters` lists every project, and any other is forgotten too.
    pub fn pending(
        &mut self,
        counters: &[(ProjectId, Option<ProjectStats>)],
        all: bool,
    ) -> Vec<PendingCounters> {
        if all {
            let known: HashSet<&ProjectId> = counters
                .iter()
                .filter(|(_, stats)| stats.is_some())
                .map(|(project, _)| project)
                .collect();
            self.flushed.retain(|project, _| known.contains(project));
        }
        counters
            .iter()
            .filter_map(|(project, now)| {
                let Some(now) = now else {
                    self.flushed.remove(project);
                    return None;
                };
                let delta = self.unflushed(project, now);
                (delta != [0; 3]).then(|| PendingCounters {
                    project: project.clone(),
                    now: *now,
                    delta,
                })
            })
            .collect()
    }

    /// Records that `pending` is now in the shared total.
    pub fn added(&mut self, pending: Vec<PendingCounters>) {
        for counters in pending {
            self.flushed.insert(counters.project, counters.now);
        }
    }

    /// The part of the project's `local` counters not yet in the shared total:
    /// `[received, delivered, rejected]`.
    pub fn unflushed(&self, project: &ProjectId, local: &ProjectStats) -> [u64; 3] {
        let before = self.flushed.get(project).copied().unwrap_or_default();
        [
            local
                .messages_received
                .saturating_sub(before.messages_received),
            local
                .messages_delivered
                .saturating_sub(before.messages_delivered),
            local
                .messages_rejected
                .saturating_sub(before.messages_rejected),
        ]
    }

    /// Forgets everything (the shared total lost what this process had added); returns
    /// whether anything had been added.
    pub fn clear(&mut self) -> bool {
        let had = !self.flushed.is_empty();
        self.flushed.clear();
        had
    }
}

/// `stored + unflushed` as the project's stats, with the live connections of `local`.
pub fn with_stored(local: ProjectStats, stored: [u64; 3], unflushed: [u64; 3]) -> ProjectStats {
    ProjectStats {
        connections: local.connections,
        messages_received: stored[0] + unflushed[0],
        messages_delivered: stored[1] + unflushed[1],
        messages_rejected: stored[2] + unflushed[2],
    }
}

/// How long counter changes gather before a single node writes them to the database:
/// a stats read is exact either way (stored + unflushed), so this only bounds what a
/// crash (not a clean stop, which flushes) can lose, against one write per moved
/// project per interval.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A single node's counters in the database.
pub struct KeptCounters {
    store: Arc<dyn CounterStore>,
    /// Written across the store call, so a stats read (which reads it across its own)
    /// never sees a delta both stored and still unflushed; stats reads share it.
    flushed: tokio::sync::RwLock<FlushedCounters>,
}

impl KeptCounters {
    /// Counters kept in `store`.
    pub fn new(store: Arc<dyn CounterStore>) -> Self {
        Self {
            store,
            flushed: tokio::sync::RwLock::new(FlushedCounters::default()),
        }
    }

    /// Adds what moved since the last flush (with `all`, what any project has not yet
    /// added) to the store; false when the store failed (the deltas stay pending).
    pub async fn flush(&self, realtime: &Realtime, all: bool) -> bool {
        let mut flushed = self.flushed.write().await;
        let pending = flushed.pending(&realtime.local_counters(all), all);
        if pending.is_empty() {
            return true;
        }
        let deltas = pending
            .iter()
            .map(|p| (p.project.clone(), p.delta))
            .collect();
        match self.store.add(deltas).await {
            Ok(()) => {
                flushed.added(pending);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "could not store message counters; retrying");
                false
            }
        }
    }

    /// The project's stats: stored counters plus this node's unflushed part.
    pub async fn stats(&self, project: &ProjectId, local: ProjectStats) -> ProjectStats {
        let flushed = self.flushed.read().await;
        match self.store.read(project).await {
            Ok(stored) => with_stored(local, stored, flushed.unflushed(project, &local)),
            Err(error) => {
                tracing::warn!(%error, "stored message counters unavailable; answering with this process's");
                local
            }
        }
    }

    /// Flushes soon after counters move, until the process ends; a failed flush is
    /// retried (with every project) after the next interval.
    pub async fn run(self: Arc<Self>, realtime: Realtime) {
        let changes = realtime.changes();
        let mut failed = false;
        loop {
            if !failed {
                changes.changed().await;
            }
            tokio::time::sleep(FLUSH_INTERVAL).await;
            changes.clear();
            failed = !self.flush(&realtime, failed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(received: u64, delivered: u64, rejected: u64) -> ProjectStats {
        ProjectStats {
            connections: 7,
            messages_received: received,
            messages_delivered: delivered,
            messages_rejected: rejected,
        }
    }

    #[test]
    fn only_what_moved_since_the_last_addition_is_pending() {
        let a = ProjectId("a".into());
        let b = ProjectId("b".into());
        let mut flushed = FlushedCounters::default();
        let pending = flushed.pending(&[(a.clone(), Some(stats(3, 30, 1)))], false);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].delta, [3, 30, 1]);
        // Not added yet (the store failed): the same deltas are pending again.
        let pending = flushed.pending(&[(a.clone(), Some(stats(3, 30, 1)))], false);
        assert_eq!(pending[0].delta, [3, 30, 1]);
        flushed.added(pending);
        assert_eq!(flushed.unflushed(&a, &stats(5, 31, 1)), [2, 1, 0]);
        let pending = flushed.pending(
            &[
                (a.clone(), Some(stats(3, 30, 1))),
                (b.clone(), Some(stats(1, 0, 0))),
            ],
            false,
        );
        assert_eq!(pending.len(), 1, "a did not move");
        assert_eq!(pending[0].project, b);
        flushed.added(pending);
        // A deleted project is forgotten; with `all`, so is one no longer listed.
        assert!(flushed.pending(&[(a.clone(), None)], false).is_empty());
        assert_eq!(flushed.unflushed(&a, &stats(3, 30, 1)), [3, 30, 1]);
        assert!(flushed.pending(&[], true).is_empty());
        assert_eq!(flushed.unflushed(&b, &stats(1, 0, 0)), [1, 0, 0]);
        assert!(!flushed.clear(), "nothing left to forget");
    }

    #[test]
    fn stats_are_the_stored_total_plus_what_is_not_yet_stored() {
        let shown = with_stored(stats(10, 100, 2), [40, 400, 4], [1, 2, 3]);
        assert_eq!(shown, stats(41, 402, 7));
    }
}
