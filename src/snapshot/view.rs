//! [`VersionView`]: a collection frozen at one version, readable like a live store.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, ManifestRoot};
use crate::path::StoragePath;
use crate::storage::SegmentStorage;
use crate::store::{FileMeta, Store};

/// A read-only view of one collection at one version (time travel). Implements the read
/// side of [`SegmentStorage`]; every mutation returns [`Error::ReadOnly`].
#[derive(Debug, Clone)]
pub struct VersionView {
    store: Store,
    root: Arc<ManifestRoot>,
}

impl VersionView {
    pub(crate) fn new(store: Store, root: ManifestRoot) -> Self {
        VersionView {
            store,
            root: Arc::new(root),
        }
    }

    /// The version this view shows.
    pub fn version(&self) -> u64 {
        self.root.version
    }

    /// The manifest root this view shows.
    pub fn root(&self) -> &ManifestRoot {
        &self.root
    }

    fn check(&self, path: &StoragePath) -> Result<()> {
        path.validate()?;
        if path.collection != self.root.collection {
            return Err(Error::invalid_path(
                path.to_string(),
                format!("this view shows collection {:?}", self.root.collection),
            ));
        }
        Ok(())
    }

    /// The entry of `path` at this version.
    pub async fn entry(&self, path: &StoragePath) -> Result<Option<FileEntry>> {
        self.check(path)?;
        self.store.trees().lookup(&self.root, path).await
    }

    async fn existing(&self, path: &StoragePath) -> Result<FileEntry> {
        self.entry(path)
            .await?
            .ok_or_else(|| Error::not_found(path))
    }

    /// Size and hash of `path` at this version.
    pub async fn metadata(&self, path: &StoragePath) -> Result<FileMeta> {
        let e = self.existing(path).await?;
        Ok(FileMeta {
            size: e.size,
            id: e.id,
        })
    }

    /// The whole file, verified.
    pub async fn read_bytes(&self, path: &StoragePath) -> Result<Bytes> {
        let e = self.existing(path).await?;
        self.store.read_entry(&e).await
    }

    /// Part of the file, unverified.
    pub async fn read_range(&self, path: &StoragePath, range: Range<u64>) -> Result<Bytes> {
        let e = self.existing(path).await?;
        self.store.read_entry_range(path, &e, range).await
    }

    fn read_only(&self) -> Error {
        Error::ReadOnly(format!(
            "collection {:?} at version {} is a read-only view",
            self.root.collection, self.root.version
        ))
    }
}

#[async_trait]
impl SegmentStorage for VersionView {
    async fn write(&self, _path: &StoragePath, _data: &[u8]) -> Result<()> {
        Err(self.read_only())
    }

    async fn read(&self, path: &StoragePath) -> Result<Vec<u8>> {
        Ok(self.read_bytes(path).await?.to_vec())
    }

    async fn exists(&self, path: &StoragePath) -> Result<bool> {
        Ok(self.entry(path).await?.is_some())
    }

    async fn list(&self, prefix: &StoragePath) -> Result<Vec<StoragePath>> {
        prefix.validate_prefix()?;
        if prefix.collection != self.root.collection {
            return Ok(Vec::new());
        }
        self.store.trees().list(&self.root, prefix).await
    }

    async fn delete(&self, _path: &StoragePath) -> Result<()> {
        Err(self.read_only())
    }

    async fn rename(&self, _from: &StoragePath, _to: &StoragePath) -> Result<()> {
        Err(self.read_only())
    }
}
