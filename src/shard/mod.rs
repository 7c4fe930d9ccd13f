//! A search shard in one version: the shard's Tantivy index, vector files, graph files and
//! metadata committed together.
//!
//! - [`ShardWriter`] gives tantivy a [`Directory`](tantivy::Directory) whose commits are
//!   *held*: `IndexWriter::commit` stages the segments, deletes and `meta.json` but creates
//!   no manifest version.
//! - [`ShardTransaction`] adds the shard's other files (any path of the collection) and
//!   commits everything, the held Tantivy commit included, as one manifest version, all or
//!   nothing, with [`Transaction`](crate::Transaction)'s conflict rules.
//! - [`ShardView`] reads one version: its Tantivy index, vector and graph files, never a
//!   mix, from any process and on every backend.
//!
//! Every call has an async form and a blocking form (`*_blocking`), for tantivy's
//! synchronous world; blocking forms may be called from any thread that is not a tokio
//! worker (inside async code, use the async forms or `spawn_blocking`).

mod transaction;
mod view;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::path::{StorageBackend, StoragePath};
use crate::storage::SegmentStorage;
use crate::store::core_store;
use crate::store::Store;
use crate::tantivy::{runtime, Mode, TantivyAdapterOptions, TantivyStorageAdapter};

pub use transaction::ShardTransaction;
pub use view::ShardView;

/// The writer of one shard of a collection: a held Tantivy directory and the shard's
/// transactions. Cheap to clone; clones share the directory's pending state.
#[derive(Clone, Debug)]
pub struct ShardWriter {
    directory: TantivyStorageAdapter,
}

pub(crate) fn own_store(storage: &dyn SegmentStorage) -> Result<Store> {
    core_store(storage).ok_or_else(|| {
        Error::Unsupported(
            "a shard needs one of segstore's own stores (Store, LocalStorage, S3Storage, \
             CachedStorage)"
                .into(),
        )
    })
}

impl ShardWriter {
    /// Opens the writer of `shard` in `collection`, with default adapter options.
    pub async fn open(
        storage: Arc<dyn SegmentStorage>,
        collection: &str,
        shard: &str,
    ) -> Result<ShardWriter> {
        Self::open_with(storage, collection, shard, TantivyAdapterOptions::default())
    }

    /// Opens the writer with tuning options for its Tantivy directory. No I/O.
    pub fn open_with(
        storage: Arc<dyn SegmentStorage>,
        collection: &str,
        shard: &str,
        options: TantivyAdapterOptions,
    ) -> Result<ShardWriter> {
        let store = own_store(storage.as_ref())?;
        let directory =
            TantivyStorageAdapter::open_mode(store, collection, shard, options, Mode::Held)?;
        Ok(ShardWriter { directory })
    }

    /// The Tantivy directory of the shard: pass it to `tantivy::Index::open_or_create`.
    /// Its commits are held until a [`ShardTransaction`] of this writer commits.
    pub fn directory(&self) -> TantivyStorageAdapter {
        self.directory.clone()
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        self.directory.store()
    }

    /// The collection.
    pub fn collection(&self) -> &str {
        self.directory.collection()
    }

    /// The shard.
    pub fn shard(&self) -> &str {
        self.directory.shard()
    }

    /// The path of file `name` of this shard in index family `backend`.
    pub fn path(&self, backend: StorageBackend, name: &str) -> StoragePath {
        StoragePath::new(self.collection(), backend, self.shard(), name)
    }

    /// Names of Tantivy files written or deleted and waiting for the next shard commit.
    pub fn pending_tantivy(&self) -> Vec<String> {
        self.directory.pending()
    }

    /// Starts a transaction at the latest version (see [`ShardTransaction`] for the
    /// conflict rules). Open the `IndexWriter` first: its commits join the transaction.
    pub async fn begin(&self) -> Result<ShardTransaction> {
        let base = self.store().head(self.collection()).await?;
        Ok(ShardTransaction::new(self.clone(), base))
    }

    /// [`begin`](Self::begin), blocking the calling thread.
    pub fn begin_blocking(&self) -> Result<ShardTransaction> {
        let this = self.clone();
        runtime::run(async move { this.begin().await })
    }

    pub(crate) fn adapter(&self) -> &TantivyStorageAdapter {
        &self.directory
    }
}
