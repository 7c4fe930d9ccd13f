//! segstore: content-addressed, crash-safe storage for search-engine segment files.
//!
//! Files are stored as immutable blobs named by their BLAKE3 hash; a versioned manifest per
//! collection maps each [`StoragePath`] to a blob; every change is a new manifest version
//! created with a create-only write, so commits are atomic and crash-safe on local disk and
//! on S3 alike. See `docs/ARCHITECTURE.md`.
//!
//! ```no_run
//! use segstore::{LocalStorage, SegmentStorage, StorageBackend, StoragePath};
//!
//! # async fn demo() -> segstore::Result<()> {
//! let store = LocalStorage::open("./segstore-data").await?;
//! let path = StoragePath::new("products", StorageBackend::Tantivy, "shard_0", "seg.idx");
//! store.write(&path, b"segment bytes").await?;
//! assert_eq!(store.read(&path).await?, b"segment bytes");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod backend;
pub mod blob;
mod cache;
pub mod clock;
mod commit_id;
pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
mod hash;
pub mod identity;
pub mod keys;
pub mod manifest;
pub mod observe;
mod path;
mod progress;
#[cfg(feature = "tantivy")]
mod shard;
pub mod snapshot;
mod storage;
pub mod store;
pub mod sync;
#[cfg(feature = "tantivy")]
mod tantivy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;

#[cfg(feature = "tantivy")]
pub use crate::tantivy::{
    TantivyAdapterOptions, TantivyStorageAdapter, DEFAULT_REMOTE_CACHE_BYTES,
    DEFAULT_REMOTE_READ_AHEAD,
};
pub use backend::s3::{S3Config, S3Credentials};
pub use cache::{CacheStats, CachingBackend};
pub use config::StorageConfig;
pub use error::{Error, Result};
pub use hash::BlobId;
pub use identity::{SharedSettings, StoreIdentity};
pub use path::{StorageBackend, StoragePath};
pub use progress::{Progress, ProgressFn};
#[cfg(feature = "tantivy")]
pub use shard::{ShardTransaction, ShardView, ShardWriter};
pub use snapshot::{Diff, DiffEntry, Target, VersionView};
pub use storage::SegmentStorage;
pub use store::core_store;
#[cfg(feature = "s3")]
pub use store::S3Storage;
pub use store::{
    CachedStorage, CommitInfo, FileMeta, Freshness, LocalStorage, Op, SegmentFile, Store,
    StoreOptions, Transaction,
};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
