//! [`LocalStorage`]: the store on a local directory, the embedded default.

use std::path::Path;
use std::sync::Arc;

use super::{Store, StoreOptions};
use crate::backend::local::LocalBackend;
use crate::error::Result;

/// A segment store in a local directory. Several processes may open the same root at
/// once; their commits never overwrite each other.
///
/// Derefs to [`Store`] for the API beyond [`SegmentStorage`](crate::SegmentStorage): zero-copy and range reads,
/// streaming writes, metadata and transactions.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    store: Store,
    backend: LocalBackend,
}

impl LocalStorage {
    /// Opens the store at `root`, creating the directory (and the store identity) if it is
    /// missing.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, StoreOptions::default()).await
    }

    /// Opens the store at `root` with tuning options.
    pub async fn open_with(root: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let backend = LocalBackend::open(root).await?;
        Ok(LocalStorage {
            store: Store::open(Arc::new(backend.clone()), options).await?,
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

super::delegate::delegate_segment_storage!(LocalStorage);
