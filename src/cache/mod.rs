//! [`CachingBackend`]: a bounded local L1 directory in front of a remote L2 backend, as an
//! [`ObjectBackend`] decorator. Every byte that crosses from L2 or from disk is verified.
//!
//! - **What is cached.** Only immutable objects: blobs, outboards, tree nodes and manifest
//!   versions. Everything mutable or probing (`head`, `_latest`, `_boundary`, pins,
//!   `put_if_absent`, `list`, `touch`, `delete`) goes to L2.
//! - **Write-through.** `put` and upload `publish` return once L2 holds the object
//!   durably; the L1 copy is written right after (and dropped silently if it can't be).
//! - **Warm hits** (see `read`) are one index lookup and one reference count increment
//!   on the file's live mapping: no system call, and no large future (the other read
//!   paths run in a separate boxed future).
//! - **Verified reads.** A miss fetches the whole object from L2 and checks it (see
//!   `verify`) before serving or caching it; a mismatch is `Corrupt` and caches nothing.
//!   Large blobs are streamed into an L1 file while being hashed, once (see `fill`), and
//!   the blob layer is told not to hash them again.
//!   L1 files found at open are checked on first use; a damaged one is evicted and
//!   refetched. Range reads of blobs with an outboard fetch only the 16 KiB groups
//!   around the range and verify them against the outboard (see `range`).
//! - **Single flight.** Concurrent misses on one key share one L2 fetch.
//! - **Eviction.** LRU with exact byte accounting; see `l1` and `lru`.

mod fill;
mod l1;
mod lru;
mod range;
mod read;
mod upload;
mod verify;

use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;

use crate::backend::{check_range, BlobRead, ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::blob::outboard::Outboard;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::{self, ObjectKey};
use l1::L1;

/// How many verified outboards are kept decoded in memory.
const OUTBOARDS_IN_MEMORY: usize = 1024;

/// Counters of a [`CachingBackend`], since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from L1.
    pub hits: u64,
    /// Whole objects fetched from L2.
    pub misses: u64,
    /// Verified range reads fetched from L2 (only the groups around the range).
    pub range_fetches: u64,
    /// Bytes read from L2 by misses and range fetches.
    pub bytes_from_l2: u64,
    /// Objects evicted from L1 to make room.
    pub evictions: u64,
    /// Content that failed verification (from L2, or damaged in L1).
    pub verification_failures: u64,
    /// Objects served or written but not cached, for lack of unpinned room.
    pub not_cached: u64,
    /// Bytes L1 holds now (never above `l1_capacity`, except fills in flight).
    pub l1_bytes: u64,
    /// Objects L1 holds now.
    pub l1_entries: u64,
    /// The L1 budget in bytes.
    pub l1_capacity: u64,
}

/// What kind of cacheable object a key names; `None` for everything that must go to L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Blob(BlobId),
    Outboard(BlobId),
    Tree(BlobId),
    Manifest,
}

impl Kind {
    pub(crate) fn of(key: &ObjectKey) -> Option<Kind> {
        let k = key.as_str();
        if k.starts_with(keys::BLOBS_PREFIX) {
            keys::id_from_key(k)
                .map(Kind::Blob)
                .or_else(|| keys::outboard_id_from_key(k).map(Kind::Outboard))
        } else if k.starts_with(keys::TREES_PREFIX) {
            keys::id_from_key(k).map(Kind::Tree)
        } else if k.starts_with(keys::MANIFESTS_PREFIX) && k.split('/').count() == 3 {
            keys::parse_manifest_version(key.file_name()).map(|_| Kind::Manifest)
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    range_fetches: AtomicU64,
    bytes_from_l2: AtomicU64,
    verification_failures: AtomicU64,
    not_cached: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Content served from L1 or just filled into it.
struct Served {
    bytes: Bytes,
    /// Hashed against its key by this call (a fill, or the first use of an L1 file).
    checked: bool,
}

/// A bounded, verified L1 directory in front of an L2 backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CachingBackend {
    inner: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    l1: L1,
    l2: Arc<dyn ObjectBackend>,
    /// One lock per key being fetched from L2: later misses wait for the first.
    flights: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Verified, decoded outboards.
    outboards: quick_cache::sync::Cache<BlobId, Arc<Outboard>>,
    /// Verified 16 KiB groups of recent small range fetches.
    groups: range::Groups,
    /// Blobs known to have no outboard in L2 (small, or written by an older build).
    no_outboard: quick_cache::sync::Cache<BlobId, ()>,
    counters: Counters,
}

impl CachingBackend {
    /// Opens the cache in `l1_dir` (created if missing) with a budget of `l1_max_bytes`,
    /// in front of `l2`. Files left by a previous run are counted, evicted down to the
    /// budget, and verified on first use.
    pub async fn open(
        l1_dir: impl AsRef<Path>,
        l1_max_bytes: u64,
        l2: Arc<dyn ObjectBackend>,
    ) -> Result<Self> {
        let dir = l1_dir.as_ref().to_path_buf();
        let l1 = blocking(move || L1::open(&dir, l1_max_bytes)).await?;
        Ok(CachingBackend {
            inner: Arc::new(Shared {
                l1,
                l2,
                flights: DashMap::new(),
                outboards: quick_cache::sync::Cache::new(OUTBOARDS_IN_MEMORY),
                groups: range::groups(),
                no_outboard: quick_cache::sync::Cache::new(64 * 1024),
                counters: Counters::default(),
            }),
        })
    }

    /// The backend behind the cache.
    pub fn l2(&self) -> &Arc<dyn ObjectBackend> {
        &self.inner.l2
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let l1 = &self.inner.l1;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            range_fetches: c.range_fetches.load(Ordering::Relaxed),
            bytes_from_l2: c.bytes_from_l2.load(Ordering::Relaxed),
            evictions: l1.evictions(),
            verification_failures: c.verification_failures.load(Ordering::Relaxed),
            not_cached: c.not_cached.load(Ordering::Relaxed),
            l1_bytes: l1.used(),
            l1_entries: l1.entries(),
            l1_capacity: l1.max(),
        }
    }
}

#[async_trait]
impl ObjectBackend for CachingBackend {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn cheap_staging(&self) -> bool {
        self.inner.l2.cheap_staging()
    }

    fn wants_outboards(&self) -> bool {
        true
    }

    async fn now(&self) -> Result<std::time::SystemTime> {
        self.inner.l2.now().await
    }

    async fn evict_damaged(&self, key: &ObjectKey) -> bool {
        if Kind::of(key).is_none() {
            return false;
        }
        let (me, k) = (self.clone(), key.clone());
        let removed = blocking(move || Ok(me.inner.l1.remove(&k)))
            .await
            .unwrap_or(false);
        if removed {
            bump(&self.inner.counters.verification_failures, 1);
            tracing::warn!(key = %key, "caller found the L1 copy damaged; evicted");
        }
        removed
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        if let Some(c) = self.l1_copy(key).await? {
            return Ok(c.bytes);
        }
        match Kind::of(key) {
            Some(kind) => self.fill(key, kind, None).await.map(|c| c.bytes),
            None => self.inner.l2.get(key).await,
        }
    }

    async fn get_blob(&self, key: &ObjectKey, id: &BlobId, size: u64) -> Result<BlobRead> {
        match self.l1_hot(key) {
            // L1 disk could have rotted since it was checked: the caller hashes it.
            Some(bytes) => Ok(BlobRead {
                bytes,
                verified: false,
            }),
            None => Box::pin(self.get_blob_general(key, id, size)).await,
        }
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        match self.l1_hot(key) {
            Some(whole) => {
                check_range(key, &range, whole.len() as u64)?;
                Ok(whole.slice(range.start as usize..range.end as usize))
            }
            None => Box::pin(self.get_range_general(key, range)).await,
        }
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        match self.l1_hot(key) {
            Some(bytes) => Ok(Some(bytes)),
            None => Box::pin(self.map_general(key)).await,
        }
    }

    // Every path-based read probes for a newer manifest version with a `head`, so it
    // hands L2's future back as is instead of boxing a second future around it.
    fn head<'life0, 'life1, 'async_trait>(
        &'life0 self,
        key: &'life1 ObjectKey,
    ) -> Pin<Box<dyn Future<Output = Result<Option<ObjectMeta>>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.l2.head(key)
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.inner.l2.put(key, data.clone()).await?;
        if let Some(kind) = Kind::of(key) {
            if let Kind::Outboard(id) = kind {
                self.inner.no_outboard.remove(&id);
            }
            self.store_l1(key, data).await;
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        let outcome = self.inner.l2.put_if_absent(key, data.clone()).await?;
        if outcome == PutOutcome::Created && Kind::of(key).is_some() {
            self.store_l1(key, data).await;
        }
        Ok(outcome)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.l2.delete(key).await?;
        if let Some(kind) = Kind::of(key) {
            if let Kind::Outboard(id) = kind {
                self.inner.outboards.remove(&id);
            }
            let (me, k) = (self.clone(), key.clone());
            blocking(move || Ok(me.inner.l1.remove(&k))).await?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.l2.list(prefix).await
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.inner.l2.touch(key).await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        let l2 = self.inner.l2.begin_upload().await?;
        Ok(Box::new(upload::CachingUpload::new(self.inner.clone(), l2)))
    }
}

/// Runs blocking file system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("running a cache task", e.to_string()))?
}
