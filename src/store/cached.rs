//! [`CachedStorage`]: the store on a remote backend (S3) with a bounded local L1 cache.

use std::path::Path;
use std::sync::Arc;

use super::{Store, StoreOptions};
use crate::backend::ObjectBackend;
use crate::cache::{CacheStats, CachingBackend};
use crate::error::Result;

/// A segment store whose objects live in `l2` (normally an `S3Backend`) and whose
/// immutable objects are cached, verified, in a local directory of bounded size.
///
/// Writes are write-through: a write or commit returns only once L2 holds it durably, so
/// losing the cache directory loses nothing. Reads of cached content are memory-mapped
/// from L1 ([`Store::open_file`] hands out zero-copy slices). See [`CachingBackend`](crate::CachingBackend).
///
/// Derefs to [`Store`] for the API beyond [`SegmentStorage`](crate::SegmentStorage).
#[derive(Debug, Clone)]
pub struct CachedStorage {
    store: Store,
    cache: CachingBackend,
}

impl CachedStorage {
    /// Opens the cache in `l1_dir` (at most `l1_max_size_bytes` bytes) in front of `l2`.
    ///
    /// The store's identity is read from `l2` (and created there if the store has none);
    /// the cache is bound to it. Stores opened on one `l1_dir` in one process share one
    /// cache; another process holding `l1_dir` is [`Error::CacheLocked`](crate::Error).
    pub async fn open(
        l1_dir: impl AsRef<Path>,
        l1_max_size_bytes: u64,
        l2: Arc<dyn ObjectBackend>,
        options: StoreOptions,
    ) -> Result<Self> {
        let identity = crate::store::identity::open(&l2, &options).await?;
        let store_id = identity.as_ref().map(|i| i.store_id.clone());
        let cache = CachingBackend::open_bound(l1_dir, l1_max_size_bytes, l2, store_id).await?;
        Ok(CachedStorage {
            store: Store::with_identity(Arc::new(cache.clone()), options, identity)?,
            cache,
        })
    }

    /// The caching backend.
    pub fn cache(&self) -> &CachingBackend {
        &self.cache
    }

    /// The cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The store core.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

super::delegate::delegate_segment_storage!(CachedStorage);
