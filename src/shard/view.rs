//! [`ShardView`]: one shard of a collection at one version, every index family alike.

use std::sync::Arc;

use bytes::Bytes;

use super::own_store;
use crate::error::{Error, Result};
use crate::manifest::ManifestRoot;
use crate::path::{StorageBackend, StoragePath};
use crate::snapshot::Target;
use crate::storage::SegmentStorage;
use crate::store::{SegmentFile, Store};
use crate::tantivy::{runtime, Mode, TantivyAdapterOptions, TantivyStorageAdapter};

/// A read-only view of one shard at one version: the Tantivy index, vector, graph and
/// other files all come from that version's manifest, whatever is committed later.
/// Works the same from any process and on every backend.
#[derive(Debug, Clone)]
pub struct ShardView {
    store: Store,
    root: Arc<ManifestRoot>,
    shard: String,
}

impl ShardView {
    /// The shard at the latest version of `collection`.
    pub async fn latest(
        storage: &dyn SegmentStorage,
        collection: &str,
        shard: &str,
    ) -> Result<ShardView> {
        let store = own_store(storage)?;
        let root = store.head(collection).await?;
        Self::new(store, root, shard)
    }

    /// The shard at `target` (a version or a snapshot).
    pub async fn at(
        storage: &dyn SegmentStorage,
        collection: &str,
        shard: &str,
        target: &Target,
    ) -> Result<ShardView> {
        let store = own_store(storage)?;
        let version = store.resolve_target(collection, target).await?;
        let root = Arc::new(store.root_at(collection, version).await?);
        Self::new(store, root, shard)
    }

    /// [`at`](Self::at), blocking the calling thread (not a tokio worker).
    pub fn at_blocking(
        storage: Arc<dyn SegmentStorage>,
        collection: &str,
        shard: &str,
        target: &Target,
    ) -> Result<ShardView> {
        let (collection, shard, target) = (collection.to_owned(), shard.to_owned(), target.clone());
        runtime::run(async move { Self::at(storage.as_ref(), &collection, &shard, &target).await })
    }

    fn new(store: Store, root: Arc<ManifestRoot>, shard: &str) -> Result<ShardView> {
        StoragePath::new(
            root.collection.as_str(),
            StorageBackend::Tantivy,
            shard,
            "meta.json",
        )
        .validate()?;
        Ok(ShardView {
            store,
            root,
            shard: shard.to_owned(),
        })
    }

    /// The version shown.
    pub fn version(&self) -> u64 {
        self.root.version
    }

    /// The collection.
    pub fn collection(&self) -> &str {
        &self.root.collection
    }

    /// The shard.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// The path of file `name` of this shard in index family `backend`.
    pub fn path(&self, backend: StorageBackend, name: &str) -> StoragePath {
        StoragePath::new(self.collection(), backend, self.shard.as_str(), name)
    }

    /// A read-only Tantivy directory of the shard at this version: open it with
    /// `tantivy::Index::open`. Writes fail with [`Error::ReadOnly`].
    pub fn directory(&self) -> Result<TantivyStorageAdapter> {
        TantivyStorageAdapter::open_mode(
            self.store.clone(),
            self.collection(),
            &self.shard,
            TantivyAdapterOptions::default(),
            Mode::Pinned(self.root.clone()),
        )
    }

    /// The shard's Tantivy index at this version.
    pub fn index(&self) -> Result<tantivy::Index> {
        let directory = self.directory()?;
        tantivy::Index::open(directory).map_err(|e| Error::Corrupt {
            object: self.path(StorageBackend::Tantivy, "meta.json").to_string(),
            expected: format!("a tantivy index at version {}", self.version()),
            actual: e.to_string(),
        })
    }

    async fn existing(&self, path: &StoragePath) -> Result<crate::manifest::FileEntry> {
        self.store
            .trees()
            .lookup(&self.root, path)
            .await?
            .ok_or_else(|| Error::not_found(path))
    }

    /// A handle on file `name` of `backend` at this version. On local disk and the cached
    /// tier its [`SegmentFile::resident`] is a memory map of the blob (zero-copy); on plain
    /// S3 it reads by range.
    pub async fn open_file(&self, backend: StorageBackend, name: &str) -> Result<SegmentFile> {
        let path = self.path(backend, name);
        let entry = self.existing(&path).await?;
        self.store.open_entry(&path, entry).await
    }

    /// The whole file `name` of `backend`, verified against its hash.
    pub async fn read(&self, backend: StorageBackend, name: &str) -> Result<Bytes> {
        let entry = self.existing(&self.path(backend, name)).await?;
        self.store.read_entry(&entry).await
    }

    /// Names of the shard's files in `backend` at this version.
    pub async fn list(&self, backend: StorageBackend) -> Result<Vec<String>> {
        let prefix = self.path(backend, "");
        let paths = self.store.trees().list(&self.root, &prefix).await?;
        Ok(paths.into_iter().map(|p| p.segment).collect())
    }
}
