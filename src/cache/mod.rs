//! [`CachingBackend`]: a bounded local L1 directory in front of a remote L2 backend, as an
//! [`ObjectBackend`] decorator. Every byte that crosses from L2 or from disk is verified.
//!
//! - **What is cached.** Only immutable, self-certifying objects: blobs, outboards and tree
//!   nodes. Manifest versions and everything mutable or probing (`head`, `_latest`,
//!   `_boundary`, pins, the identity, `put_if_absent`, `list`, `touch`, `delete`) go to L2.
//! - **Bound to one store.** The L1 directory records the id of the store it caches
//!   (`STORE`); opened over a different (or wiped and re-created) store, it is emptied
//!   first. Opening one directory twice in a process shares one cache.
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

use crate::backend::LayerHooks;
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
use crate::observe;
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

/// What kind of cacheable object a key names; `None` for everything that must go to L2
/// (manifest versions included: a cached root is no proof that the version still exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Blob(BlobId),
    Outboard(BlobId),
    Tree(BlobId),
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
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct Counters {
    hits: Metered,
    misses: Metered,
    range_fetches: Metered,
    bytes_from_l2: Metered,
    verification_failures: Metered,
    not_cached: Metered,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            hits: Metered::new(Some(observe::CACHE_HITS)),
            misses: Metered::new(Some(observe::CACHE_MISSES)),
            range_fetches: Metered::new(None),
            bytes_from_l2: Metered::new(Some(observe::CACHE_BYTES_FROM_L2)),
            verification_failures: Metered::new(Some(observe::CACHE_VERIFICATION_FAILURES)),
            not_cached: Metered::new(None),
        }
    }
}

/// A counter of this cache ([`CacheStats`]) that also feeds a process-wide metric.
#[derive(Debug)]
struct Metered {
    value: AtomicU64,
    metric: Option<&'static str>,
}

impl Metered {
    fn new(metric: Option<&'static str>) -> Self {
        Metered {
            value: AtomicU64::new(0),
            metric,
        }
    }

    fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }
}

fn bump(c: &Metered, n: u64) {
    c.value.fetch_add(n, Ordering::Relaxed);
    if let Some(metric) = c.metric {
        observe::count(metric, n);
    }
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
    /// The store the L1 directory and the memory caches below hold objects of.
    store_id: Option<String>,
    /// One lock per key being fetched from L2: later misses wait for the first.
    flights: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Verified, decoded outboards.
    outboards: quick_cache::sync::Cache<BlobId, Arc<Outboard>>,
    /// Verified 16 KiB groups of recent small range fetches.
    groups: range::Groups,
    /// Blobs known to have no outboard in L2 (small, or written by an older build).
    no_outboard: quick_cache::sync::Cache<BlobId, ()>,
    /// Blobs known to be too small for an outboard: range reads fill them whole.
    small: quick_cache::sync::Cache<BlobId, ()>,
    counters: Counters,
}

impl CachingBackend {
    /// Opens the cache in `l1_dir` (created if missing) with a budget of `l1_max_bytes`,
    /// in front of `l2`, bound to the identity of the store in `l2` (read, not created:
    /// see [`open_bound`](Self::open_bound)).
    pub async fn open(
        l1_dir: impl AsRef<Path>,
        l1_max_bytes: u64,
        l2: Arc<dyn ObjectBackend>,
    ) -> Result<Self> {
        let store_id = crate::identity::read(l2.as_ref())
            .await?
            .map(|identity| identity.store_id);
        Self::open_bound(l1_dir, l1_max_bytes, l2, store_id).await
    }

    /// Opens the cache in `l1_dir` for the store whose id is `store_id` (`None`: a store
    /// without identity).
    ///
    /// - If this process already has the directory open, the same cache is handed out
    ///   (one budget, one index, one lock; the first opener's budget and L2 connection
    ///   stay in use). It must be for the same store ([`Error::InvalidConfig`] if not).
    /// - Otherwise the directory is locked ([`Error::CacheLocked`] if another process
    ///   holds it). Files left by a previous run are kept only if the directory's `STORE`
    ///   file names this store: a directory that cached another store (or a wiped and
    ///   re-created one) is emptied first. The rest are counted, evicted down to the
    ///   budget, and verified on first use.
    pub async fn open_bound(
        l1_dir: impl AsRef<Path>,
        l1_max_bytes: u64,
        l2: Arc<dyn ObjectBackend>,
        store_id: Option<String>,
    ) -> Result<Self> {
        let dir = l1_dir.as_ref().to_path_buf();
        let inner = blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating cache dir {}", dir.display()), e))?;
            let canonical = dir
                .canonicalize()
                .map_err(|e| Error::io(format!("resolving cache dir {}", dir.display()), e))?;
            let mut open = OPEN_CACHES.lock().unwrap_or_else(|p| p.into_inner());
            open.retain(|_, cache| cache.strong_count() > 0);
            if let Some(shared) = open.get(&canonical).and_then(std::sync::Weak::upgrade) {
                if shared.store_id != store_id {
                    return Err(Error::InvalidConfig(format!(
                        "cache directory {} is in use in this process for store {};                          store {} needs its own L1 directory",
                        canonical.display(),
                        shared.store_id.as_deref().unwrap_or("(without identity)"),
                        store_id.as_deref().unwrap_or("(without identity)"),
                    )));
                }
                if shared.l1.max() != l1_max_bytes {
                    tracing::warn!(
                        dir = %canonical.display(),
                        budget = shared.l1.max(),
                        asked = l1_max_bytes,
                        "cache directory already open in this process; sharing it with its first budget"
                    );
                }
                return Ok(shared);
            }
            let l1 = L1::open(&canonical, l1_max_bytes)?;
            bind(&l1, &canonical, store_id.as_deref())?;
            let shared = Arc::new(Shared {
                l1,
                l2,
                store_id,
                flights: DashMap::new(),
                outboards: quick_cache::sync::Cache::new(OUTBOARDS_IN_MEMORY),
                groups: range::groups(),
                no_outboard: quick_cache::sync::Cache::new(64 * 1024),
                small: quick_cache::sync::Cache::new(64 * 1024),
                counters: Counters::default(),
            });
            open.insert(canonical, Arc::downgrade(&shared));
            Ok(shared)
        })
        .await?;
        Ok(CachingBackend { inner })
    }

    /// The id of the store this cache is bound to (`None`: a store without identity).
    pub fn store_id(&self) -> Option<&str> {
        self.inner.store_id.as_deref()
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

    fn describe(&self) -> String {
        self.inner.l2.describe()
    }

    async fn now(&self) -> Result<std::time::SystemTime> {
        self.inner.l2.now().await
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

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        match self.l1_hot(key) {
            Some(whole) => {
                check_range(key, &range, whole.len() as u64)?;
                Ok(whole.slice(range.start as usize..range.end as usize))
            }
            None => Box::pin(self.get_range_general(key, range)).await,
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

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl LayerHooks for CachingBackend {
    fn authoritative(&self) -> Option<Arc<dyn ObjectBackend>> {
        Some(self.inner.l2.clone())
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

    async fn get_blob(&self, key: &ObjectKey, id: &BlobId, size: u64) -> Result<Option<BlobRead>> {
        match self.l1_hot(key) {
            // L1 disk could have rotted since it was checked: the caller hashes it.
            Some(bytes) => Ok(Some(BlobRead {
                bytes,
                verified: false,
            })),
            None => Box::pin(self.get_blob_general(key, id, size))
                .await
                .map(Some),
        }
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        match self.l1_hot(key) {
            Some(bytes) => Ok(Some(bytes)),
            None => Box::pin(self.map_general(key)).await,
        }
    }
}

/// The caches this process has open, by canonical L1 directory: opening one directory
/// again shares its cache.
static OPEN_CACHES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<Shared>>>,
> = std::sync::LazyLock::new(Default::default);

/// Name of the file in the L1 directory that records the store it caches.
const STORE_FILE: &str = "STORE";

/// Binds the freshly opened (and locked) L1 directory `dir` to `store_id`: a directory
/// whose `STORE` file names another store (or none, as left by an older version) is
/// emptied, so nothing of another store is ever served.
fn bind(l1: &L1, dir: &Path, store_id: Option<&str>) -> Result<()> {
    let wanted = store_id.unwrap_or("none");
    let path = dir.join(STORE_FILE);
    let recorded = std::fs::read_to_string(&path).ok();
    if recorded.as_deref().map(str::trim) == Some(wanted) {
        return Ok(());
    }
    let dropped = l1.clear();
    if dropped > 0 {
        tracing::warn!(
            dir = %dir.display(),
            recorded = recorded.as_deref().map(str::trim).unwrap_or("(nothing)"),
            store = wanted,
            dropped,
            "L1 directory held objects of another store; emptied it"
        );
    }
    let temp = dir.join(format!("{STORE_FILE}.tmp"));
    std::fs::write(&temp, format!("{wanted}\n"))
        .and_then(|()| std::fs::rename(&temp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Runs blocking file system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("running a cache task", e.to_string()))?
}
