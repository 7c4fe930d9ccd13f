//! [`Store`]: the segment store core, over any [`ObjectBackend`].
//!
//! Writes stage content as blobs first, then commit a new manifest version with a
//! create-only write. Reads resolve a path through the latest manifest to a blob. The same
//! core runs on local disk ([`LocalStorage`]), S3 ([`S3Storage`]), and the cached tier
//! ([`CachedStorage`]).

mod cached;
mod commit;
mod delegate;
pub(crate) mod epoch;
mod file;
mod group;
pub mod identity;
mod local;
mod references;
#[cfg(feature = "s3")]
mod s3;
mod transaction;

use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::backend::ObjectBackend;
use crate::blob::BlobStore;
use crate::clock::{self, Clock, Stamp};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::identity::{SharedSettings, StoreIdentity};
use crate::manifest::tree::Trees;
use crate::manifest::{head, FileEntry, ManifestRoot, INLINE_MAX};
use crate::path::{validate_name, StoragePath};
use crate::storage::SegmentStorage;

pub use cached::CachedStorage;
pub(crate) use commit::Plan;
pub use file::SegmentFile;
pub use local::LocalStorage;
pub(crate) use references::Reference;
#[cfg(feature = "s3")]
pub use s3::S3Storage;
pub use transaction::{Op, Transaction};

/// Default for [`StoreOptions::max_writer_stall`]: half of the default GC grace period.
pub const DEFAULT_MAX_WRITER_STALL: Duration = Duration::from_secs(30 * 60);

/// Default GC grace period ([`SharedSettings::gc_grace`]): GC keeps unreferenced objects
/// younger than this.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default for [`StoreOptions::gc_delete_delay`].
pub const DEFAULT_GC_DELETE_DELAY: Duration = Duration::from_secs(30);
/// Default for [`StoreOptions::gc_lease`].
pub const DEFAULT_GC_LEASE: Duration = Duration::from_secs(3600);
/// Default for [`StoreOptions::clock_margin`].
pub const DEFAULT_CLOCK_MARGIN: Duration = Duration::from_secs(10);

/// Streaming writes read their source in chunks of this size.
const STREAM_CHUNK: usize = 1024 * 1024;

/// Tuning for a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many decoded tree nodes of each kind to keep in memory.
    pub cached_tree_nodes: usize,
    /// How many times a commit is rebased onto newer versions before giving up with
    /// [`Error::Conflict`].
    pub max_commit_attempts: u32,
    /// How long after this process published a blob a commit may reference it without
    /// confirming it still exists. Later commits confirm it under the GC protocol (and get
    /// [`Error::ReferenceGone`] if GC removed it meanwhile). Must be well below the GC grace
    /// period: `grace > max_writer_stall + freshen_after + clock_margin`.
    pub max_writer_stall: Duration,
    /// A write that finds its blob already stored refreshes the blob's age when it is
    /// older than this, so that GC's grace period protects it again.
    pub freshen_after: Duration,
    /// Retention never deletes versions younger than this, and a reader trusts its known
    /// head for forward probing only this long. Every process sharing a store must use the
    /// same value.
    pub version_min_age: Duration,
    /// A GC run deletes nothing earlier than this after it started, so that a commit that
    /// re-references old objects (restore, dedup hits, imports) and checked that no GC was
    /// deleting has this long to land. See `docs/ARCHITECTURE.md`, "GC protocol".
    pub gc_delete_delay: Duration,
    /// A GC run deletes nothing later than this after it started (it fences itself), so
    /// that a crashed GC blocks no writer for longer.
    pub gc_lease: Duration,
    /// Allowance for clock error between this host and the store and for request flight
    /// time, subtracted from every deadline of the GC protocol.
    pub clock_margin: Duration,
    /// How fresh path reads must be: see [`Freshness`]. Commits never depend on it.
    pub read_freshness: Freshness,
    /// Commits with fewer requests: a commit builds on a head this process confirmed
    /// within `version_min_age` without probing (a lost race is detected by the
    /// create-only root), and a shard that fits in one page is written as one object
    /// (format: kind 6, `docs/FORMAT.md`). On by default; off gives the probing commit
    /// of earlier versions (one HEAD more per commit) and shard node + page objects that
    /// readers older than single-page shards can read.
    pub lean_commits: bool,
    /// Every commit also publishes its root as the collection's head (one PUT more per
    /// commit), so that a cold process finds the head in one GET (see
    /// [`Store::publish_head`]). Off by default: commits stay at their request budget.
    pub publish_head: bool,
    /// Where time comes from: the system clock, or virtual time in tests.
    pub clock: Arc<dyn Clock>,
    /// The shared settings to create a new store with, and to require of an existing
    /// one. `None`: a new store gets the defaults with the three settings above, an
    /// existing store's settings are adopted (see [`SharedSettings::reconcile`]).
    pub shared: Option<SharedSettings>,
    /// Accept a backend whose create-only writes are not enforced, on the promise that
    /// only one process writes to the store. Recorded in the identity when the store is
    /// created; a store created so can only be opened with this set.
    pub single_writer: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cached_tree_nodes: 4096,
            max_commit_attempts: 1000,
            max_writer_stall: DEFAULT_MAX_WRITER_STALL,
            freshen_after: crate::blob::DEFAULT_FRESHEN_AFTER,
            version_min_age: head::PROBE_TRUST_WINDOW,
            gc_delete_delay: DEFAULT_GC_DELETE_DELAY,
            gc_lease: DEFAULT_GC_LEASE,
            clock_margin: DEFAULT_CLOCK_MARGIN,
            read_freshness: Freshness::default(),
            lean_commits: true,
            publish_head: false,
            clock: clock::system(),
            shared: None,
            single_writer: false,
        }
    }
}

/// How fresh the head a path read resolves through must be (`docs/OPERATIONS.md`,
/// "Read freshness").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Every read asks the store whether a newer version exists (one `HEAD` on S3):
    /// a read sees every commit that returned before it began, in any process.
    Strict,
    /// A read uses the head confirmed within this long without asking: it may see
    /// other processes' changes of the last interval late, never this process's own.
    /// A path missing from that head is looked up again in a head asked for at once, so
    /// a file another process created is never reported missing. [`Store::refresh`]
    /// asks at once. The default is [`DEFAULT_READ_BOUND`].
    Bounded(Duration),
}

/// The default [`Freshness`]: a head younger than this serves path reads without a
/// request (`docs/OPERATIONS.md`, "Read freshness", says why one second).
pub const DEFAULT_READ_BOUND: Duration = Duration::from_secs(1);

impl Default for Freshness {
    fn default() -> Self {
        Freshness::Bounded(DEFAULT_READ_BOUND)
    }
}

/// The result of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// The version now holding the change. When nothing changed (say, deleting a missing
    /// path), no version is created and this is the current version.
    pub version: u64,
    /// Whether a new version was created.
    pub created: bool,
}

/// Size and content hash of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub id: BlobId,
}

/// The store core. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn ObjectBackend>,
    blobs: BlobStore,
    trees: Trees,
    collections: DashMap<String, Arc<Collection>>,
    options: StoreOptions,
    /// The latest GC epoch this process has seen.
    epochs: crate::store::epoch::EpochTracker,
    /// The store's identity, when it has one (see [`crate::identity`]).
    identity: Option<StoreIdentity>,
    /// The identity's settings, or the defaults for a store without one.
    shared: SharedSettings,
}

/// What this process knows of one collection.
#[derive(Debug)]
struct Collection {
    name: String,
    /// The newest root seen; only ever moves forward.
    head: RwLock<Arc<ManifestRoot>>,
    /// When `head` was last confirmed to be the latest version. Probing forward from it is
    /// only sound for a while: retention may delete old versions, but never versions
    /// younger than `StoreOptions::version_min_age`, so only a recently confirmed head is
    /// guaranteed to have all its successors still in place.
    confirmed: std::sync::Mutex<Option<Stamp>>,
    /// Serialises this process's commits to the collection: they would only race each
    /// other. Other processes are kept out by the create-only commit itself.
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    /// Commit requests waiting for `commit_lock`, committed together (group commit).
    queue: group::Queue,
}

impl Collection {
    fn current(&self) -> Arc<ManifestRoot> {
        self.head.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// When the head was last confirmed to be the latest version.
    fn confirmed_at(&self) -> Option<Stamp> {
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the head was the latest version at `at` (never moves back).
    fn confirm(&self, at: Stamp) {
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if confirmed.is_none_or(|c| at > c) {
            *confirmed = Some(at);
        }
    }

    fn advance(&self, root: Arc<ManifestRoot>) -> Arc<ManifestRoot> {
        let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
        if root.version > head.version {
            *head = root;
        }
        head.clone()
    }
}

impl Store {
    /// A store over `backend`, without reading or creating its identity: the shared
    /// settings are those of `options` ([`SharedSettings::for_new_store`]). For tests and
    /// tools over a backend already opened; [`Store::open`] is what the stores use.
    pub fn new(backend: Arc<dyn ObjectBackend>, options: StoreOptions) -> Self {
        let shared = SharedSettings::for_new_store(&options);
        Self::assemble(backend, options, None, shared)
    }

    /// Opens the store over `backend`: reads its identity (creating it, after checking
    /// the backend's create-only writes, if the store has none) and reconciles `options`
    /// with the store's shared settings ([`Error::SettingsMismatch`] if they contradict).
    pub async fn open(backend: Arc<dyn ObjectBackend>, options: StoreOptions) -> Result<Self> {
        let identity = crate::store::identity::open(&backend, &options).await?;
        Self::with_identity(backend, options, identity)
    }

    /// A store over `backend` whose identity was already read ([`identity::open`]).
    pub fn with_identity(
        backend: Arc<dyn ObjectBackend>,
        options: StoreOptions,
        identity: Option<StoreIdentity>,
    ) -> Result<Self> {
        let shared = match &identity {
            Some(id) => id.settings,
            None => SharedSettings::default(),
        };
        let options = match &identity {
            Some(_) => shared.reconcile(&options)?,
            None => options,
        };
        Ok(Self::assemble(backend, options, identity, shared))
    }

    fn assemble(
        backend: Arc<dyn ObjectBackend>,
        options: StoreOptions,
        identity: Option<StoreIdentity>,
        shared: SharedSettings,
    ) -> Self {
        Store {
            inner: Arc::new(Inner {
                blobs: BlobStore::new(
                    backend.clone(),
                    options.freshen_after,
                    options.clock.clone(),
                ),
                trees: Trees::new(backend.clone(), options.cached_tree_nodes)
                    .with_single_page_shards(options.lean_commits),
                backend,
                collections: DashMap::new(),
                epochs: Default::default(),
                options,
                identity,
                shared,
            }),
        }
    }

    /// The settings every process sharing this store uses (from its identity).
    pub fn shared_settings(&self) -> &SharedSettings {
        &self.inner.shared
    }

    /// The store's identity, if it has one (a store made by an older version and opened
    /// read-only has none).
    pub fn identity(&self) -> Option<&StoreIdentity> {
        self.inner.identity.as_ref()
    }

    /// The object backend underneath.
    pub fn backend(&self) -> &Arc<dyn ObjectBackend> {
        &self.inner.backend
    }

    /// The blob layer.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// The tuning options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The manifest tree reader.
    pub fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        if let Some(c) = self.inner.collections.get(name) {
            return Ok(c.clone());
        }
        validate_name(name)?;
        let entry = self
            .inner
            .collections
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Collection {
                    name: name.to_owned(),
                    head: RwLock::new(Arc::new(ManifestRoot::empty(name))),
                    confirmed: std::sync::Mutex::new(None),
                    commit_lock: Default::default(),
                    queue: Default::default(),
                })
            });
        Ok(entry.clone())
    }

    /// The latest committed manifest of `collection` (version 0 if it has none), as
    /// [`StoreOptions::read_freshness`] defines latest: in [`Freshness::Strict`] mode the
    /// store is asked every time; in [`Freshness::Bounded`] mode a head confirmed within
    /// the bound is used without asking. This process's own commits are always visible.
    pub async fn head(&self, collection: &str) -> Result<Arc<ManifestRoot>> {
        let c = self.collection(collection)?;
        Ok(self.head_of(&c).await?.0)
    }

    /// The head as [`head`](Self::head) gives it, and whether it was asked for in this
    /// call (false: a bounded-freshness head served without a request).
    async fn head_of(&self, c: &Collection) -> Result<(Arc<ManifestRoot>, bool)> {
        if let Freshness::Bounded(bound) = self.inner.options.read_freshness {
            if c.confirmed_at()
                .is_some_and(|at| at.elapsed(self.clock()) < bound)
            {
                return Ok((c.current(), false));
            }
        }
        self.check_head(c, false).await
    }

    /// Asks the store for the latest version of `collection` now, whatever the read
    /// freshness mode: what a watcher polling on its own schedule calls, or a reader
    /// told out of band that another process committed.
    pub async fn refresh(&self, collection: &str) -> Result<Arc<ManifestRoot>> {
        let c = self.collection(collection)?;
        Ok(self.check_head(&c, true).await?.0)
    }

    /// Asks the store for the latest version of `c`. A published head within the read
    /// bound is taken as it is unless `now` (then it is a version to probe forward from).
    /// The flag says whether the answer is as of now (false: the published head's).
    async fn check_head(&self, c: &Collection, now: bool) -> Result<(Arc<ManifestRoot>, bool)> {
        let backend = self.inner.backend.as_ref();
        let current = c.current();
        let clock = self.inner.options.clock.as_ref();
        let started = Stamp::now(clock);
        let trusted = c
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed(clock) < self.inner.options.version_min_age);
        // A collection seen empty may be filled by an import, whose versions need not
        // start at 1: only probe forward from a version that exists.
        let latest = if trusted && current.version > 0 {
            head::probe_from(backend, &c.name, current.version).await?
        } else if let Some((published, at)) = self.published_head(&c.name).await? {
            let version = published.version;
            if version < current.version {
                head::discover(backend, &c.name).await?
            } else {
                c.advance(Arc::new(published));
                if let Freshness::Bounded(bound) = self.inner.options.read_freshness {
                    if !now && at.elapsed(clock) < bound {
                        c.confirm(at);
                        return Ok((c.current(), false));
                    }
                }
                head::probe_from(backend, &c.name, version).await?
            }
        } else {
            head::discover(backend, &c.name).await?
        };
        // Confirmed only with the latest root in hand: a head left behind by a failed
        // load must not pass for fresh (a lean commit would build on it without probing,
        // and re-create a version number retention deleted; long-run seed 18075).
        if latest > c.current().version {
            let root = head::load_root(backend, &c.name, latest).await?;
            c.advance(Arc::new(root));
        }
        c.confirm(started);
        Ok((c.current(), true))
    }

    /// The head published for `collection` (see [`head::publish`]), with the time it is
    /// known to have been the latest, if that is recent enough to probe forward from: its
    /// successors are younger than `version_min_age`, so retention has deleted none.
    async fn published_head(&self, collection: &str) -> Result<Option<(ManifestRoot, Stamp)>> {
        let Some((root, nodes)) =
            head::read_published_with_nodes(self.inner.backend.as_ref(), collection).await?
        else {
            return Ok(None);
        };
        let clock = self.clock();
        let margin = self.inner.options.clock_margin;
        let now_ms = clock.now_ms();
        let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
        // A timestamp ahead of this clock beyond the margin proves nothing.
        if root.timestamp_ms > now_ms.saturating_add(margin_ms) {
            return Ok(None);
        }
        let age = Duration::from_millis(now_ms.saturating_sub(root.timestamp_ms)) + margin;
        if age >= self.inner.options.version_min_age {
            return Ok(None);
        }
        self.inner.trees.adopt(&root, &nodes);
        Ok(Some((root, Stamp::now(clock).earlier_by(age))))
    }

    /// Publishes this process's head of `collection` for cold readers (`_head`, see
    /// `docs/FORMAT.md`): one PUT, after which a process that knows nothing of the
    /// collection finds its head in one GET instead of probing for it. Commits publish on
    /// their own with [`StoreOptions::publish_head`]; the Tantivy adapter publishes at
    /// each `meta.json` commit on a remote store. Failures are logged, never returned:
    /// the published head is only ever a shortcut.
    pub async fn publish_head(&self, collection: &str) -> Result<()> {
        let root = self.collection(collection)?.current();
        if root.version > 0 {
            self.publish_root(&root).await;
        }
        Ok(())
    }

    /// Writes `_head`: `root` with the shard objects of it that are cached, so that a cold
    /// reader looks its files up without fetching them.
    pub(crate) async fn publish_root(&self, root: &ManifestRoot) {
        let nodes = self
            .inner
            .trees
            .cached_encodings(root, head::PUBLISHED_NODES_MAX);
        head::publish_with_nodes(self.inner.backend.as_ref(), root, nodes).await;
    }

    /// The latest version of `collection` this store object has seen, without any I/O
    /// (version 0 if none). After a commit of this store returned version N, it is version
    /// N's root unless a later commit was seen since.
    #[cfg_attr(not(feature = "tantivy"), allow(dead_code))]
    pub(crate) fn cached_head(&self, collection: &str) -> Result<Arc<ManifestRoot>> {
        Ok(self.collection(collection)?.current())
    }

    /// Manifest version `version` of `collection`, if it is still retained.
    pub async fn root_at(&self, collection: &str, version: u64) -> Result<ManifestRoot> {
        validate_name(collection)?;
        head::load_root(self.inner.backend.as_ref(), collection, version).await
    }

    /// The manifest entry of `path`, if it exists.
    pub async fn entry(&self, path: &StoragePath) -> Result<Option<FileEntry>> {
        path.validate()?;
        let c = self.collection(&path.collection)?;
        let (root, asked) = self.head_of(&c).await?;
        let found = self.inner.trees.lookup(&root, path).await?;
        if found.is_some() || asked {
            return Ok(found);
        }
        // A head served from memory may predate the file: a miss is only reported from a
        // head asked for now, so that bounded freshness never hides a created file.
        let (root, _) = self.check_head(&c, true).await?;
        self.inner.trees.lookup(&root, path).await
    }

    async fn existing_entry(&self, path: &StoragePath) -> Result<FileEntry> {
        self.entry(path)
            .await?
            .ok_or_else(|| Error::not_found(path))
    }

    /// Size and hash of `path`.
    pub async fn metadata(&self, path: &StoragePath) -> Result<FileMeta> {
        let entry = self.existing_entry(path).await?;
        Ok(FileMeta {
            size: entry.size,
            id: entry.id,
        })
    }

    /// Reads a whole file without copying it (local blobs are memory-mapped), verified
    /// against its hash.
    pub async fn read_bytes(&self, path: &StoragePath) -> Result<Bytes> {
        let entry = self.existing_entry(path).await?;
        self.read_entry(&entry).await
    }

    /// Reads the content an entry names, verified.
    pub async fn read_entry(&self, entry: &FileEntry) -> Result<Bytes> {
        match &entry.inline {
            Some(data) => Ok(data.clone()),
            None => self.inner.blobs.get_verified(&entry.id, entry.size).await,
        }
    }

    /// Reads `range` of a file. Not verified against the hash (the cached tier verifies
    /// ranges); a range past the end is [`Error::OutOfRange`].
    pub async fn read_range(&self, path: &StoragePath, range: Range<u64>) -> Result<Bytes> {
        let entry = self.existing_entry(path).await?;
        self.read_entry_range(path, &entry, range).await
    }

    /// Reads `range` of the content an entry names, unverified.
    pub async fn read_entry_range(
        &self,
        path: &StoragePath,
        entry: &FileEntry,
        range: Range<u64>,
    ) -> Result<Bytes> {
        if range.start > range.end || range.end > entry.size {
            return Err(Error::OutOfRange {
                path: path.to_string(),
                start: range.start,
                end: range.end,
                size: entry.size,
            });
        }
        match &entry.inline {
            Some(data) => Ok(data.slice(range.start as usize..range.end as usize)),
            None => self.inner.blobs.get_range(&entry.id, range).await,
        }
    }

    /// Stores content and returns the manifest entry that names it, without committing.
    pub async fn stage_bytes(&self, data: Bytes) -> Result<FileEntry> {
        if data.len() <= INLINE_MAX {
            return Ok(FileEntry::inline(data));
        }
        let size = data.len() as u64;
        let id = self.inner.blobs.put(data).await?;
        Ok(FileEntry::blob(id, size))
    }

    /// Stores content read from `reader` without holding it all in memory, and returns the
    /// entry that names it, without committing.
    pub async fn stage_stream<R: AsyncRead + Unpin + Send>(
        &self,
        mut reader: R,
    ) -> Result<FileEntry> {
        let first = read_chunk(&mut reader, INLINE_MAX + 1).await?;
        if first.len() <= INLINE_MAX {
            return Ok(FileEntry::inline(first));
        }
        let mut writer = self.inner.blobs.writer().await?;
        let mut chunk = first;
        loop {
            if let Err(e) = writer.write(chunk).await {
                let _ = writer.abort().await;
                return Err(e);
            }
            chunk = match read_chunk(&mut reader, STREAM_CHUNK).await {
                Ok(c) if c.is_empty() => break,
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
        }
        let (id, size) = writer.finish().await?;
        Ok(FileEntry::blob(id, size))
    }

    /// Writes `data` to `path` as one commit.
    pub async fn write_bytes(&self, path: &StoragePath, data: Bytes) -> Result<CommitInfo> {
        path.validate()?;
        let entry = self.stage_bytes(data).await?;
        self.commit_put(path, entry).await
    }

    /// Writes everything `reader` yields to `path` as one commit, streaming: memory use
    /// stays bounded whatever the size.
    pub async fn write_stream<R: AsyncRead + Unpin + Send>(
        &self,
        path: &StoragePath,
        reader: R,
    ) -> Result<CommitInfo> {
        path.validate()?;
        let entry = self.stage_stream(reader).await?;
        self.commit_put(path, entry).await
    }

    async fn commit_put(&self, path: &StoragePath, entry: FileEntry) -> Result<CommitInfo> {
        let ops = vec![Op::Put {
            path: path.clone(),
            entry,
        }];
        self.commit_grouped(&path.collection, ops, None).await
    }

    /// Starts a transaction on `collection`, based on its latest version.
    pub async fn transaction(&self, collection: &str) -> Result<Transaction> {
        let base = self.head(collection).await?;
        Ok(Transaction::new(self.clone(), collection.to_owned(), base))
    }

    /// Every path selected by `prefix`, sorted.
    pub async fn list(&self, prefix: &StoragePath) -> Result<Vec<StoragePath>> {
        prefix.validate_prefix()?;
        let root = self.head(&prefix.collection).await?;
        self.inner.trees.list(&root, prefix).await
    }

    /// Deletes `path` as one commit.
    pub async fn delete(&self, path: &StoragePath) -> Result<CommitInfo> {
        let ops = vec![Op::Delete { path: path.clone() }];
        self.commit_ops(&path.collection, ops, None).await
    }

    /// Renames `from` to `to` as one commit.
    pub async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<CommitInfo> {
        from.validate()?;
        to.validate()?;
        if from.collection != to.collection {
            return Err(Error::invalid_path(
                to.to_string(),
                "rename cannot move a file to another collection",
            ));
        }
        let ops = vec![Op::Rename {
            from: from.clone(),
            to: to.clone(),
        }];
        self.commit_ops(&from.collection, ops, None).await
    }
}

impl Store {
    /// Wall-clock milliseconds since the Unix epoch on the store's injected clock, for
    /// commit and snapshot timestamps.
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.options.clock.now_ms()
    }

    /// The injected clock.
    pub(crate) fn clock(&self) -> &dyn Clock {
        self.inner.options.clock.as_ref()
    }
}

/// Reads until `limit` bytes or the end of the input.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(limit);
    while buf.len() < limit {
        let n = (&mut *reader)
            .take((limit - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::io("reading the input stream", e))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

#[async_trait]
impl SegmentStorage for Store {
    #[tracing::instrument(level = "debug", name = "write", skip_all, fields(path = %path, bytes = data.len()))]
    async fn write(&self, path: &StoragePath, data: &[u8]) -> Result<()> {
        self.write_bytes(path, Bytes::copy_from_slice(data))
            .await
            .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "read", skip_all, fields(path = %path))]
    async fn read(&self, path: &StoragePath) -> Result<Vec<u8>> {
        let entry = self.existing_entry(path).await?;
        match &entry.inline {
            Some(data) => Ok(data.to_vec()),
            None => {
                self.inner
                    .blobs
                    .get_verified_vec(&entry.id, entry.size)
                    .await
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "exists", skip_all, fields(path = %path))]
    async fn exists(&self, path: &StoragePath) -> Result<bool> {
        Ok(self.entry(path).await?.is_some())
    }

    #[tracing::instrument(level = "debug", name = "list", skip_all, fields(prefix = %prefix))]
    async fn list(&self, prefix: &StoragePath) -> Result<Vec<StoragePath>> {
        Store::list(self, prefix).await
    }

    #[tracing::instrument(level = "debug", name = "delete", skip_all, fields(path = %path))]
    async fn delete(&self, path: &StoragePath) -> Result<()> {
        Store::delete(self, path).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "rename", skip_all, fields(from = %from, to = %to))]
    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<()> {
        Store::rename(self, from, to).await.map(|_| ())
    }
}

impl Store {
    /// Keeps the blobs of staged, not yet committed `entries` protected from GC while they
    /// wait (see `BlobStore::keep_alive`); call it more often than `freshen_after`. Entries
    /// staged longer ago than the stall window are confirmed at commit instead.
    pub async fn keep_staged_alive(&self, entries: &[FileEntry]) -> Result<()> {
        let window = self.own_window();
        for entry in entries.iter().filter(|e| e.inline.is_none()) {
            self.inner
                .blobs
                .keep_alive(&entry.id, entry.size, window)
                .await?;
        }
        Ok(())
    }

    /// The GC epochs this process has seen.
    pub(crate) fn epochs(&self) -> &crate::store::epoch::EpochTracker {
        &self.inner.epochs
    }
}

/// The [`Store`] core behind `storage`, when it is one of the stores segstore ships.
///
/// Adapters such as [`TantivyStorageAdapter`](crate::TantivyStorageAdapter) need the
/// store's full API (range reads, staging, transactions), not just the six trait methods.
/// `None` means a foreign implementation: callers report
/// [`Error::Unsupported`]. New store types (S3, cached) add one
/// line here.
pub fn core_store(storage: &dyn SegmentStorage) -> Option<Store> {
    let any: &dyn std::any::Any = storage;
    if let Some(store) = any.downcast_ref::<Store>() {
        return Some(store.clone());
    }
    if let Some(local) = any.downcast_ref::<LocalStorage>() {
        return Some(local.store().clone());
    }
    #[cfg(feature = "s3")]
    if let Some(s3) = any.downcast_ref::<S3Storage>() {
        return Some(s3.store().clone());
    }
    if let Some(cached) = any.downcast_ref::<CachedStorage>() {
        return Some(cached.store().clone());
    }
    None
}
