//! The store as the realtime side's [`KeyDirectory`] (API key hash → project and its
//! effective settings) and, on a single node, its [`CounterStore`].

use crate::platform::types::Limits;
use crate::platform::types::ProjectId;
use crate::realtime::counters::{CounterFuture, CounterStore};
use crate::realtime::{DirectoryFuture, KeyDirectory, ProjectAccess};
use crate::store::Store;

/// Looks API keys up in the database (the realtime side caches the answers).
pub struct StoreDirectory {
    store: Store,
    limits: Limits,
}

impl StoreDirectory {
    /// A directory over `store`, computing settings against the server `limits`.
    pub fn new(store: Store, limits: Limits) -> Self {
        Self { store, limits }
    }
}

impl KeyDirectory for StoreDirectory {
    fn find_by_key_hash(&self, key_hash: [u8; 32]) -> DirectoryFuture<'_> {
        Box::pin(async move {
            let project = self.store.find_project_by_key_hash(&key_hash).await?;
            Ok(project.map(|project| ProjectAccess {
                settings: project.overrides.effective(&self.limits),
                project_id: project.id,
            }))
        })
    }
}

impl CounterStore for StoreDirectory {
    fn add(&self, deltas: Vec<(ProjectId, [u64; 3])>) -> CounterFuture<'_, ()> {
        Box::pin(async move {
            self.store
                .add_message_counters(&deltas)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        })
    }

    fn read<'a>(&'a self, project: &'a ProjectId) -> CounterFuture<'a, [u64; 3]> {
        Box::pin(async move {
            let stored = self.store.message_counters(project).await;
            stored
                .map(Option::unwrap_or_default)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        })
    }
}
