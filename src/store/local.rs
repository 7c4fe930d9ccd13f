//! [`LocalStorage`]: the store on a local directory, the embedded default.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Store, StoreOptions};
use crate::backend::local::LocalBackend;
use crate::error::Result;
use crate::path::StoragePath;
use crate::storage::SegmentStorage;

/// A segment store in a local directory. Several processes may open the same root at
/// once; their commits never overwrite each other.
///
/// Derefs to [`Store`] for the API beyond [`SegmentStorage`]: zero-copy and range reads,
/// streaming writes, metadata and transactions.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    store: Store,
    backend: LocalBackend,
}

impl LocalStorage {
    /// Opens the store at `root`, creating the directory if it is missing.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, StoreOptions::default()).await
    }

    /// Opens the store at `root` with tuning options.
    pub async fn open_with(root: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let backend = LocalBackend::open(root).await?;
        Ok(LocalStorage {
            store: Store::new(Arc::new(backend.clone()), options),
            backend,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.backend.root()
    }

    /// The store core.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Deref for LocalStorage {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

#[async_trait]
impl SegmentStorage for LocalStorage {
    async fn write(&self, path: &StoragePath, data: &[u8]) -> Result<()> {
        SegmentStorage::write(&self.store, path, data).await
    }

    async fn read(&self, path: &StoragePath) -> Result<Vec<u8>> {
        SegmentStorage::read(&self.store, path).await
    }

    async fn exists(&self, path: &StoragePath) -> Result<bool> {
        SegmentStorage::exists(&self.store, path).await
    }

    async fn list(&self, prefix: &StoragePath) -> Result<Vec<StoragePath>> {
        SegmentStorage::list(&self.store, prefix).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        SegmentStorage::delete(&self.store, path).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<()> {
        SegmentStorage::rename(&self.store, from, to).await
    }
}
