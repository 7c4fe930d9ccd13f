//! [`ShardTransaction`]: a held Tantivy commit plus the shard's other files, as one version.

use std::sync::Arc;

use bytes::Bytes;

use super::ShardWriter;
use crate::error::{Error, Result};
use crate::manifest::{FileEntry, ManifestRoot};
use crate::path::{StorageBackend, StoragePath};
use crate::store::{CommitInfo, Op};
use crate::tantivy::runtime;
use crate::Transaction;

/// The changes of one shard commit: whatever the shard's Tantivy directory holds (segments,
/// deletes, `meta.json`) plus the puts, deletes and renames recorded here, committed as one
/// manifest version or not at all.
///
/// Conflict rules are [`Transaction`]'s: the commit fails with
/// [`Error::Conflict`] if another writer changed any path it records since the version it
/// began at, or any Tantivy file it commits since the version the shard's index writer
/// loaded; changes to other paths are merged in. A failed commit leaves the Tantivy
/// changes pending in the directory; after a conflict on Tantivy files, open a new
/// `IndexWriter` (as with a plain [`TantivyStorageAdapter`](crate::TantivyStorageAdapter)).
pub struct ShardTransaction {
    writer: ShardWriter,
    /// Records the operations with the store's rules; this type adds the shard's own.
    ops: Transaction,
}

impl std::fmt::Debug for ShardTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardTransaction")
            .field("writer", &self.writer)
            .field("base_version", &self.ops.base_version())
            .field("ops", &self.ops.ops())
            .finish()
    }
}

impl ShardTransaction {
    pub(super) fn new(writer: ShardWriter, base: Arc<ManifestRoot>) -> Self {
        let ops = Transaction::new(writer.store().clone(), writer.collection().to_owned(), base);
        ShardTransaction { writer, ops }
    }

    /// The version the transaction started from.
    pub fn base_version(&self) -> u64 {
        self.ops.base_version()
    }

    /// The operations recorded so far (the Tantivy changes are added at commit).
    pub fn ops(&self) -> &[Op] {
        self.ops.ops()
    }

    /// The shard's Tantivy files go through its directory, never through this record.
    fn check(&self, path: &StoragePath) -> Result<()> {
        let writer = &self.writer;
        if path.collection == writer.collection()
            && path.backend == StorageBackend::Tantivy
            && path.shard.as_deref() == Some(writer.shard())
        {
            return Err(Error::invalid_path(
                path.to_string(),
                "the shard's Tantivy files are written through ShardWriter::directory",
            ));
        }
        Ok(())
    }

    /// Stores `data` now (a blob, or inline if small) and records a put of `path`.
    pub async fn put(&mut self, path: &StoragePath, data: impl Into<Bytes>) -> Result<()> {
        self.check(path)?;
        self.ops.put(path, data).await
    }

    /// [`put`](Self::put), blocking the calling thread.
    pub fn put_blocking(&mut self, path: &StoragePath, data: impl Into<Bytes>) -> Result<()> {
        self.check(path)?;
        self.ops.check(path)?;
        let store = self.writer.store().clone();
        let data = data.into();
        let entry = runtime::run(async move { store.stage_bytes(data).await })?;
        self.ops.put_entry(path, entry)
    }

    /// Records a put of content already stored (see [`Transaction::put_entry`]).
    pub fn put_entry(&mut self, path: &StoragePath, entry: FileEntry) -> Result<()> {
        self.check(path)?;
        self.ops.put_entry(path, entry)
    }

    /// Records a delete of `path`.
    pub fn delete(&mut self, path: &StoragePath) -> Result<()> {
        self.check(path)?;
        self.ops.delete(path)
    }

    /// Records a rename of `from` to `to`.
    pub fn rename(&mut self, from: &StoragePath, to: &StoragePath) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.ops.rename(from, to)
    }

    /// Commits the held Tantivy changes and every recorded operation as one version.
    /// Runs on tokio's blocking pool, so it must be awaited inside a tokio runtime.
    pub async fn commit(self) -> Result<CommitInfo> {
        tokio::task::spawn_blocking(move || self.commit_blocking())
            .await
            .map_err(|e| Error::backend("committing a shard", e.to_string()))?
    }

    /// [`commit`](Self::commit), blocking the calling thread (not a tokio worker).
    pub fn commit_blocking(self) -> Result<CommitInfo> {
        let (ops, base) = self.ops.into_parts();
        self.writer.adapter().commit_with(ops, base)
    }
}
