//! The store as the realtime side's [`KeyDirectory`]: API key hash → project and its
//! effective settings.

use crate::platform::types::Limits;
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
