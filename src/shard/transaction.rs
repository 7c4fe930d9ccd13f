//! [`ShardTransaction`]: a held Tantivy commit plus the shard's other files, as one version.

use std::sync::Arc;

use bytes::Bytes;

use super::ShardWriter;
use crate::error::{Error, Result};
use crate::manifest::{FileEntry, ManifestRoot};
use crate::path::{StorageBackend, StoragePath};
use crate::store::{CommitInfo, Op};
use crate::tantivy::runtime;

/// The changes of one shard commit: whatever the shard's Tantivy directory holds (segments,
/// deletes, `meta.json`) plus the puts, deletes and renames recorded here, committed as one
/// manifest version or not at all.
///
/// Conflict rules are [`Transaction`](crate::Transaction)'s: the commit fails with
/// [`Error::Conflict`] if another writer changed any path it records since the version it
/// began at, or any Tantivy file it commits since the version the shard's index writer
/// loaded; changes to other paths are merged in. A failed commit leaves the Tantivy
/// changes pending in the directory; after a conflict on Tantivy files, open a new
/// `IndexWriter` (as with a plain [`TantivyStorageAdapter`](crate::TantivyStorageAdapter)).
#[derive(Debug)]
pub struct ShardTransaction {
    writer: ShardWriter,
    base: Arc<ManifestRoot>,
    ops: Vec<Op>,
}

impl ShardTransaction {
    pub(super) fn new(writer: ShardWriter, base: Arc<ManifestRoot>) -> Self {
        ShardTransaction {
            writer,
            base,
            ops: Vec::new(),
        }
    }

    /// The version the transaction started from.
    pub fn base_version(&self) -> u64 {
        self.base.version
    }

    /// The operations recorded so far (the Tantivy changes are added at commit).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    fn check(&self, path: &StoragePath) -> Result<()> {
        path.validate()?;
        let writer = &self.writer;
        if path.collection != writer.collection() {
            return Err(Error::invalid_path(
                path.to_string(),
                format!(
                    "shard transaction is on collection {:?}; one commit cannot span collections",
                    writer.collection()
                ),
            ));
        }
        if path.backend == StorageBackend::Tantivy && path.shard.as_deref() == Some(writer.shard())
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
        let entry = self.writer.store().stage_bytes(data.into()).await?;
        self.ops.push(Op::Put {
            path: path.clone(),
            entry,
        });
        Ok(())
    }

    /// [`put`](Self::put), blocking the calling thread.
    pub fn put_blocking(&mut self, path: &StoragePath, data: impl Into<Bytes>) -> Result<()> {
        self.check(path)?;
        let store = self.writer.store().clone();
        let data = data.into();
        let entry = runtime::run(async move { store.stage_bytes(data).await })?;
        self.ops.push(Op::Put {
            path: path.clone(),
            entry,
        });
        Ok(())
    }

    /// Records a put of content already stored (see [`Transaction::put_entry`](crate::Transaction::put_entry)).
    pub fn put_entry(&mut self, path: &StoragePath, entry: FileEntry) -> Result<()> {
        self.check(path)?;
        self.ops.push(Op::Put {
            path: path.clone(),
            entry,
        });
        Ok(())
    }

    /// Records a delete of `path`.
    pub fn delete(&mut self, path: &StoragePath) -> Result<()> {
        self.check(path)?;
        self.ops.push(Op::Delete { path: path.clone() });
        Ok(())
    }

    /// Records a rename of `from` to `to`.
    pub fn rename(&mut self, from: &StoragePath, to: &StoragePath) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.ops.push(Op::Rename {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(())
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
        self.writer.adapter().commit_with(self.ops, self.base)
    }
}
