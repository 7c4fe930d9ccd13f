//! [`CachingBackend`]: a bounded local L1 directory in front of a remote L2 backend, as an
//! [`ObjectBackend`] decorator. Every byte that crosses from L2 or from disk is verified.
//!
//! - **What is cached.** Only immutable objects: blobs, outboards, tree nodes and manifest
//!   versions. Everything mutable or probing (`head`, `_latest`, `_boundary`, pins,
//!   `put_if_absent`, `list`, `touch`, `delete`) goes to L2.
//! - **Write-through.** `put` and upload `publish` return once L2 holds the object
//!   durably; the L1 copy is written right after (and dropped silently if it can't be).
//! - **Verified reads.** A miss fetches the whole object from L2 and checks it (see
//!   [`verify`]) before serving or caching it; a mismatch is `Corrupt` and caches nothing.
//!   Large blobs are streamed into an L1 file while being hashed, once (see [`fill`]), and
//!   the blob layer is told not to hash them again.
//!   L1 files found at open are checked on first use; a damaged one is evicted and
//!   refetched. Range reads of blobs with an outboard fetch only the 16 KiB groups
//!   around the range and verify them against the outboard (see [`range`]).
//! - **Single flight.** Concurrent misses on one key share one L2 fetch.
//! - **Eviction.** LRU with exact byte accounting; see [`l1`].

mod fill;
mod l1;
mod range;
mod upload;
mod verify;

use std::ops::Range;
use std::path::Path;
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

    /// Serves `key` from L1, or fetches, verifies and caches it.
    async fn cached(&self, key: &ObjectKey, kind: Kind, size: Option<u64>) -> Result<Bytes> {
        match self.l1_copy(key, kind).await? {
            Some(c) => Ok(c.bytes),
            None => self.fill(key, kind, size).await.map(|c| c.bytes),
        }
    }

    /// The L1 copy of `key`, verified if this is its first use in the process. A missing,
    /// unreadable or damaged file is forgotten and reported as a miss.
    async fn l1_copy(&self, key: &ObjectKey, kind: Kind) -> Result<Option<Served>> {
        let s = &self.inner;
        let Some(found) = s.l1.lookup(key) else {
            return Ok(None);
        };
        let bytes = match found.mapped {
            Some(b) => Some(b),
            None => {
                let (me, k) = (self.clone(), key.clone());
                match blocking(move || me.inner.l1.read(&k)).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "unreadable L1 file; refetching");
                        self.drop_damaged(key).await;
                        return Ok(None);
                    }
                }
            }
        };
        let Some(bytes) = bytes else {
            return Ok(None); // deleted underneath: a miss
        };
        let checked = !found.verified;
        let damaged = if bytes.len() as u64 != found.size {
            true
        } else if checked {
            match verify::check(kind, key, &bytes).await {
                Ok(()) => {
                    s.l1.mark_verified(key);
                    false
                }
                Err(_) => true,
            }
        } else {
            false
        };
        if damaged {
            tracing::warn!(key = %key, "damaged L1 file; evicting and refetching");
            drop(bytes);
            self.drop_damaged(key).await;
            return Ok(None);
        }
        bump(&s.counters.hits, 1);
        tracing::trace!(key = %key, "L1 hit");
        Ok(Some(Served { bytes, checked }))
    }

    async fn drop_damaged(&self, key: &ObjectKey) {
        bump(&self.inner.counters.verification_failures, 1);
        let (me, k) = (self.clone(), key.clone());
        let _ = blocking(move || Ok(me.inner.l1.remove(&k))).await;
    }

    /// Fetches `key` from L2 once however many callers miss at the same time, verifies it,
    /// and caches it. A blob whose `size` is known and large is streamed into L1 (see
    /// [`fill`]); anything else is read whole.
    async fn fill(&self, key: &ObjectKey, kind: Kind, size: Option<u64>) -> Result<Served> {
        let s = &self.inner;
        let flight = s
            .flights
            .entry(key.as_str().to_owned())
            .or_default()
            .clone();
        let guard = flight.lock().await;
        let result = async {
            // Another caller may have filled it while we waited.
            if let Some(c) = self.l1_copy(key, kind).await? {
                return Ok(c);
            }
            let bytes = match (kind, size) {
                (Kind::Blob(id), Some(size)) if size > fill::PIECE => {
                    self.stream_fill(key, id, size).await?
                }
                _ => self.whole_fill(key, kind).await?,
            };
            Ok(Served {
                bytes,
                checked: true,
            })
        }
        .await;
        drop(guard);
        // The map's reference and ours: nobody else is waiting on this flight.
        s.flights
            .remove_if(key.as_str(), |_, f| Arc::strong_count(f) <= 2);
        result
    }

    /// Reads `key` whole from L2, verifies it and caches it.
    async fn whole_fill(&self, key: &ObjectKey, kind: Kind) -> Result<Bytes> {
        let s = &self.inner;
        let data = s.l2.get(key).await?;
        bump(&s.counters.misses, 1);
        bump(&s.counters.bytes_from_l2, data.len() as u64);
        tracing::debug!(key = %key, bytes = data.len(), "L1 miss, fetched from L2");
        if let Err(e) = verify::check(kind, key, &data).await {
            bump(&s.counters.verification_failures, 1);
            tracing::warn!(key = %key, error = %e, "content from L2 failed verification");
            return Err(e);
        }
        self.store_l1(key, data.clone()).await;
        Ok(data)
    }

    /// Writes verified (or self-written) content to L1; failure only costs a later miss.
    async fn store_l1(&self, key: &ObjectKey, data: Bytes) {
        let (me, k) = (self.clone(), key.clone());
        match blocking(move || me.inner.l1.insert(&k, &data)).await {
            Ok(true) => {}
            Ok(false) => bump(&self.inner.counters.not_cached, 1),
            Err(e) => {
                bump(&self.inner.counters.not_cached, 1);
                tracing::warn!(key = %key, error = %e, "could not write to L1");
            }
        }
    }

    /// The verified outboard of blob `id`, if L2 has one.
    async fn outboard(&self, id: &BlobId) -> Result<Option<Arc<Outboard>>> {
        let s = &self.inner;
        if let Some(ob) = s.outboards.get(id) {
            return Ok(Some(ob));
        }
        if s.no_outboard.get(id).is_some() {
            return Ok(None);
        }
        match self
            .cached(&keys::outboard(id), Kind::Outboard(*id), None)
            .await
        {
            Ok(bytes) => {
                let ob = Arc::new(Outboard::decode(id, bytes)?);
                s.outboards.insert(*id, ob.clone());
                Ok(Some(ob))
            }
            Err(Error::NotFound { .. }) => {
                s.no_outboard.insert(*id, ());
                Ok(None)
            }
            Err(e) => Err(e),
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
        match Kind::of(key) {
            Some(kind) => self.cached(key, kind, None).await,
            None => self.inner.l2.get(key).await,
        }
    }

    async fn get_blob(&self, key: &ObjectKey, id: &BlobId, size: u64) -> Result<BlobRead> {
        let kind = Kind::Blob(*id);
        if Kind::of(key) != Some(kind) {
            return Ok(BlobRead {
                bytes: self.get(key).await?,
                verified: false,
            });
        }
        // Verified means hashed by this call: a fill, or an L1 file's first use. Other
        // hits are L1 disk, which could rot since; the caller hashes those.
        let copy = match self.l1_copy(key, kind).await? {
            Some(c) => c,
            None => self.fill(key, kind, Some(size)).await?,
        };
        Ok(BlobRead {
            bytes: copy.bytes,
            verified: copy.checked,
        })
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        let Some(kind) = Kind::of(key) else {
            return self.inner.l2.get_range(key, range).await;
        };
        let whole = match self.l1_copy(key, kind).await? {
            Some(c) => c.bytes,
            None => {
                if let Kind::Blob(id) = kind {
                    if let Some(ob) = self.outboard(&id).await? {
                        return self.verified_range(key, id, ob, range).await;
                    }
                }
                self.fill(key, kind, None).await?.bytes
            }
        };
        check_range(key, &range, whole.len() as u64)?;
        Ok(whole.slice(range.start as usize..range.end as usize))
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let Some(kind) = Kind::of(key) else {
            return self.inner.l2.map(key).await;
        };
        if let Some(c) = self.l1_copy(key, kind).await? {
            return Ok(Some(c.bytes));
        }
        // A blob's size lets the fill stream it instead of holding it in memory.
        let size = match kind {
            Kind::Blob(id) => match self.inner.outboards.get(&id) {
                Some(ob) => Some(ob.size()),
                None => match self.inner.l2.head(key).await? {
                    Some(meta) => Some(meta.size),
                    None => return Err(Error::not_found(key)),
                },
            },
            _ => None,
        };
        self.fill(key, kind, size).await.map(|c| Some(c.bytes))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.inner.l2.head(key).await
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
