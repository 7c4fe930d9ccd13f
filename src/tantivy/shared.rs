//! The state behind a [`TantivyStorageAdapter`](super::TantivyStorageAdapter): pending
//! changes over the latest manifest, and commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use bytes::Bytes;

use super::handle::SegmentFileHandle;
use super::hotcache::{self, HotFile, Hotcache, HOTCACHE_FILE};
use super::remote::{BlockCache, Origin, RemoteFile};
use super::{runtime, watch, TantivyAdapterOptions, META_FILE};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::manifest::{CommitId, FileEntry, ManifestRoot};
use crate::path::{StorageBackend, StoragePath};
use crate::store::{Op, Store};

/// State shared by an adapter's clones, its writers and its watch thread.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(super) collection: String,
    pub(super) shard: String,
    /// Locks are shared by every adapter over the same store object and shard.
    pub(super) lock_scope: String,
    pub(super) state: Mutex<State>,
    /// Serialises this adapter's commits, so that each sees the previous one's result.
    pub(super) commit_lock: Mutex<()>,
    /// When pending files were last refreshed (see `keep_pending_alive`).
    pub(super) kept_alive: Mutex<Option<crate::clock::Stamp>>,
    pub(super) watcher: watch::Watcher,
    pub(super) options: TantivyAdapterOptions,
    /// Verified blocks of remote files, shared by all handles.
    pub(super) remote_cache: Arc<BlockCache>,
    /// Whether commits are the adapter's own, held for a shard transaction, or impossible.
    pub(super) mode: super::Mode,
    /// The hotcache of the latest version a committed read came from: that version, and
    /// the hotcache if it had a valid one.
    pub(super) hotcache: Mutex<Option<(u64, Option<Arc<Hotcache>>)>>,
    /// The hotcache this adapter staged last, and its blob id: its own reader reloads
    /// need not fetch it back.
    pub(super) written_hotcache: Mutex<Option<(crate::hash::BlobId, Arc<Hotcache>)>>,
}

#[derive(Default)]
pub(super) struct State {
    /// Files opened for writing and not yet terminated or dropped.
    pub(super) writing: HashSet<String>,
    /// Changes not yet committed: `Some` a terminated file, `None` a delete.
    pub(super) pending: BTreeMap<String, Option<FileEntry>>,
    /// The writer's view: the next commit fails with a conflict if another writer changed
    /// the files it touches since this version. Set by the first read of `meta.json` (what
    /// the adapter opened from), by the first read after the index writer lock is taken
    /// (what a new `IndexWriter` loads), and by this adapter's own commits. Other reads of
    /// `meta.json` (reader reloads) never move it.
    pub(super) base: Option<Arc<ManifestRoot>>,
    /// Set when the index writer lock is taken: the next read of `meta.json` is the new
    /// writer's and becomes the base.
    pub(super) rebase: bool,
    /// Set when a commit landed but its root could not be had without I/O: the base is
    /// that version, read before the next commit.
    pub(super) base_at: Option<u64>,
    /// A commit whose outcome was unknown, settled before the next commit.
    pub(super) unsettled: Option<Unsettled>,
    /// Per thread, the version its last read of `meta.json` came from (or its last commit
    /// landed at). tantivy opens a reader's segment files on the thread that read
    /// `meta.json`, so resolving names against that version first gives the reader the
    /// files of one version, even if another writer has removed them since.
    pub(super) views: HashMap<ThreadId, Arc<ManifestRoot>>,
}

/// Views kept at most; past that they are dropped (names then resolve against the latest
/// version, as for threads that never read `meta.json`).
const MAX_VIEWS: usize = 256;

impl State {
    /// Makes `root` the calling thread's view.
    pub(super) fn set_view(&mut self, root: Arc<ManifestRoot>) {
        if self.views.len() >= MAX_VIEWS {
            self.views.clear();
        }
        self.views.insert(std::thread::current().id(), root);
    }
}

/// A commit that ended in [`Error::CommitOutcomeUnknown`].
pub(super) struct Unsettled {
    pub(super) version: u64,
    pub(super) commit_id: CommitId,
    pub(super) items: Vec<(String, Option<FileEntry>)>,
}

impl Shared {
    /// Cached ranges of blob `id` in the hotcache loaded last, if it covers it. Any
    /// version's hotcache will do: its ranges are bound to blob ids, not names.
    pub(super) fn hot_file(&self, id: &BlobId, size: u64) -> Option<Arc<HotFile>> {
        let loaded = self.hotcache.lock().unwrap_or_else(|p| p.into_inner());
        loaded.as_ref()?.1.as_ref()?.file(id, size)
    }

    /// The hotcache of version `root`, loaded (one GET) the first time a committed read
    /// comes from that version. Missing, stale (made for another `meta.json`) or damaged:
    /// `None`, and reads go to the files.
    pub(super) fn hot_for(&self, root: &Arc<ManifestRoot>) -> Option<Arc<Hotcache>> {
        {
            let loaded = self.hotcache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((version, hot)) = loaded.as_ref() {
                if *version == root.version {
                    return hot.clone();
                }
            }
        }
        let store = self.store.clone();
        let (hot_path, meta_path) = (self.path(HOTCACHE_FILE), self.path(META_FILE));
        let written = self
            .written_hotcache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let found = runtime::run(hotcache::load(
            store,
            root.clone(),
            hot_path,
            meta_path,
            written,
        ));
        let hot = match found {
            Ok(hot) => hot,
            Err(e) => {
                tracing::warn!(collection = %self.collection, shard = %self.shard, error = %e,
                    "ignoring the tantivy hotcache");
                None
            }
        };
        let mut loaded = self.hotcache.lock().unwrap_or_else(|p| p.into_inner());
        *loaded = Some((root.version, hot.clone()));
        hot
    }
}

/// Converts a segstore error for tantivy, keeping it as the source.
pub(crate) fn to_io(err: Error) -> io::Error {
    let kind = match &err {
        Error::NotFound { .. } | Error::VersionExpired { .. } => io::ErrorKind::NotFound,
        Error::InvalidPath { .. } => io::ErrorKind::InvalidInput,
        Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

/// The flat tantivy file name of `path`, validated as a segment name.
pub(super) fn file_name(path: &Path) -> io::Result<String> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid tantivy file name {path:?}: {why}"),
        )
    };
    let name = path.to_str().ok_or_else(|| invalid("not UTF-8"))?;
    if name.contains('/') {
        return Err(invalid("tantivy file names are flat; '/' is not allowed"));
    }
    Ok(name.to_owned())
}

impl Shared {
    pub(super) fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn path(&self, name: &str) -> StoragePath {
        StoragePath::new(
            self.collection.as_str(),
            StorageBackend::Tantivy,
            self.shard.as_str(),
            name,
        )
    }

    pub(super) fn checked_path(&self, name: &str) -> io::Result<StoragePath> {
        let path = self.path(name);
        path.validate().map_err(to_io)?;
        Ok(path)
    }

    /// `name` in the latest committed version, and that version.
    pub(super) fn committed(&self, name: &str) -> Result<(Arc<ManifestRoot>, Option<FileEntry>)> {
        let store = self.store.clone();
        let path = self.path(name);
        let pinned = self.mode.pinned();
        runtime::run(async move {
            let root = match pinned {
                Some(root) => root,
                None => store.head(&path.collection).await?,
            };
            let entry = store.trees().lookup(&root, &path).await?;
            Ok((root, entry))
        })
    }

    /// `name` as this adapter sees it on the calling thread: pending changes, then the
    /// thread's view (see [`State::views`]), then the latest committed version (for files
    /// committed since the view, such as a merge's output opened by the writer).
    pub(super) fn resolve(&self, name: &str) -> Result<Option<FileEntry>> {
        Ok(self.resolve_at(name)?.map(|(entry, _)| entry))
    }

    /// [`Shared::resolve`], with the manifest version the entry came from (`None` for a
    /// pending file).
    pub(super) fn resolve_at(&self, name: &str) -> Result<Option<(FileEntry, Option<u64>)>> {
        let view = {
            let state = self.lock_state();
            if let Some(pending) = state.pending.get(name) {
                return Ok(pending.clone().map(|e| (e, None)));
            }
            state.views.get(&std::thread::current().id()).cloned()
        };
        if let Some(root) = view {
            let store = self.store.clone();
            let path = self.path(name);
            let version = root.version;
            let entry = runtime::run(async move { store.trees().lookup(&root, &path).await })?;
            if let Some(entry) = entry {
                return Ok(Some((entry, Some(version))));
            }
        }
        let (root, entry) = self.committed(name)?;
        Ok(entry.map(|e| (e, Some(root.version))))
    }

    /// A handle on the content `entry` names, without reading it: resident when the
    /// store has it locally (inline, a local blob or an L1 file, mapped), lazy otherwise.
    ///
    /// `version` is the manifest version `entry` was resolved from (`None`: pending): if the
    /// content is missing because retention removed that version since, the error is
    /// [`Error::VersionExpired`] (see [`Origin`]).
    pub(super) fn open_handle(
        &self,
        name: &str,
        entry: FileEntry,
        version: Option<u64>,
    ) -> Result<SegmentFileHandle> {
        let store = self.store.clone();
        let path = self.path(name);
        let (id, size) = (entry.id, entry.size);
        let origin = Origin {
            store: self.store.clone(),
            path: path.clone(),
            version,
        };
        let file = runtime::run(async move {
            match store.open_entry(&path, entry).await {
                Ok(file) => Ok(file),
                Err(e) => Err(origin.explain(e).await),
            }
        })?;
        if let Some(data) = file.resident() {
            return Ok(SegmentFileHandle::resident(name.to_owned(), data.clone()));
        }
        let len = usize::try_from(size).map_err(|_| {
            Error::Unsupported(format!(
                "{name}: {size} bytes do not fit in memory addresses"
            ))
        })?;
        let origin = Origin {
            store: self.store.clone(),
            path: self.path(name),
            version,
        };
        let remote = RemoteFile::new(self.store.clone(), id, size, self.remote_cache.clone())
            .with_origin(origin)
            .with_hot(self.hot_file(&id, size));
        Ok(SegmentFileHandle::remote(name.to_owned(), len, remote))
    }

    /// A committed read of `meta.json` came from `root`: it becomes the thread's view, and
    /// the base if there is none yet or a new index writer is loading it.
    pub(super) fn note_meta_read(&self, root: Arc<ManifestRoot>) {
        let mut state = self.lock_state();
        state.set_view(root.clone());
        if state.base.is_none() || state.rebase {
            state.base = Some(root);
            state.base_at = None;
            state.rebase = false;
        }
    }

    pub(super) fn stage(&self, data: &[u8]) -> Result<FileEntry> {
        let store = self.store.clone();
        let data = Bytes::copy_from_slice(data);
        runtime::run(async move { store.stage_bytes(data).await })
    }

    pub(crate) fn finish_write(&self, name: &str, entry: FileEntry) {
        let pending: Vec<FileEntry> = {
            let mut state = self.lock_state();
            state.writing.remove(name);
            state.pending.insert(name.to_owned(), Some(entry));
            state.pending.values().flatten().cloned().collect()
        };
        self.keep_pending_alive(pending);
    }

    /// Files terminated long before their commit (a bulk load commits once at the end)
    /// stay protected from GC: every so often a new file refreshes the pending ones.
    fn keep_pending_alive(&self, pending: Vec<FileEntry>) {
        let store = self.store.clone();
        let every = store.options().freshen_after / 2;
        {
            let clock = store.options().clock.clone();
            let mut last = self.kept_alive.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed(clock.as_ref()) < every) {
                return;
            }
            *last = Some(crate::clock::Stamp::now(clock.as_ref()));
        }
        let refresh = async move {
            if let Err(e) = store.keep_staged_alive(&pending).await {
                tracing::warn!(error = %e, "could not refresh pending tantivy files");
            }
        };
        if let Err(e) = runtime::spawn(refresh) {
            tracing::warn!(error = %e, "could not refresh pending tantivy files");
        }
    }

    pub(crate) fn abandon_write(&self, name: &str) {
        self.lock_state().writing.remove(name);
    }

    /// Commits the pending changes `select` picks as one manifest version, then fires the
    /// watch callbacks if `meta.json` changed.
    ///
    /// Once the store says the version landed, nothing can turn it into an error: the
    /// pending changes are dropped and the base advanced first, without further I/O.
    /// If the outcome is unknown ([`Error::CommitOutcomeUnknown`]), the error is returned
    /// and the commit is remembered; the next commit first settles it by reading that
    /// version back (see [`Shared::settle`]).
    pub(super) fn commit(&self, select: &dyn Fn(&str, &Option<FileEntry>) -> bool) -> Result<()> {
        let serialised = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.settle()?;
        let (items, base) = {
            let state = self.lock_state();
            let items: Vec<(String, Option<FileEntry>)> = state
                .pending
                .iter()
                .filter(|(name, entry)| select(name, entry))
                .map(|(n, e)| (n.clone(), e.clone()))
                .collect();
            (items, state.base.clone())
        };
        let ops: Vec<Op> = items
            .iter()
            .map(|(name, entry)| match entry {
                Some(entry) => Op::Put {
                    path: self.path(name),
                    entry: entry.clone(),
                },
                None => Op::Delete {
                    path: self.path(name),
                },
            })
            .collect();
        let store = self.store.clone();
        let collection = self.collection.clone();
        let outcome = runtime::run(async move { store.commit_ops(&collection, ops, base).await });
        let version = match outcome {
            Ok(info) => info.version,
            Err(e @ Error::CommitOutcomeUnknown { .. }) => {
                if let Error::CommitOutcomeUnknown {
                    version, commit_id, ..
                } = &e
                {
                    self.lock_state().unsettled = Some(Unsettled {
                        version: *version,
                        commit_id: *commit_id,
                        items,
                    });
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let meta = self.landed(version, items, None);
        drop(serialised);
        if let Some(meta) = meta {
            if self.writes_hotcache() {
                // A cold reader opens from the published head and the hotcache: two GETs.
                let store = self.store.clone();
                let collection = self.collection.clone();
                if let Err(e) = runtime::run(async move { store.publish_head(&collection).await }) {
                    tracing::warn!(collection = %self.collection, error = %e,
                        "could not publish the head");
                }
            }
            self.watcher.observe(version, meta.map(|m| m.id));
        }
        Ok(())
    }

    /// Records that `items` landed in version `version`: they stop being pending and the
    /// version becomes the base. Returns the `meta.json` entry the commit wrote, if it
    /// wrote one.
    pub(super) fn landed(
        &self,
        version: u64,
        items: Vec<(String, Option<FileEntry>)>,
        root: Option<Arc<ManifestRoot>>,
    ) -> Option<Option<FileEntry>> {
        // The store's cached head is this version's root unless another commit through the
        // same store object came in between; only then is it read (and a failure of that
        // read is kept for the next commit to retry, not reported: the commit landed).
        let root = root.or_else(|| {
            self.store
                .cached_head(&self.collection)
                .ok()
                .filter(|root| root.version == version)
        });
        let mut state = self.lock_state();
        let mut meta = None;
        for (name, entry) in items {
            if name == META_FILE {
                meta = Some(entry.clone());
            }
            if state.pending.get(&name) == Some(&entry) {
                state.pending.remove(&name);
            }
        }
        match root {
            Some(root) => {
                state.set_view(root.clone());
                state.base = Some(root);
                state.base_at = None;
            }
            None => {
                state.views.remove(&std::thread::current().id());
                state.base_at = Some(version);
            }
        }
        meta
    }

    /// Before a commit: resolves a base known only by its version, and settles a commit
    /// whose outcome was unknown by reading its version back. Landed: as if it had
    /// returned Ok. Another commit holds that version: it did not land, its changes stay
    /// pending. The version does not exist yet: still unknown, and the commit fails with
    /// [`Error::CommitOutcomeUnknown`] again (a delayed request may still create it).
    pub(super) fn settle(&self) -> Result<()> {
        let unsettled = self.lock_state().unsettled.take();
        if let Some(u) = unsettled {
            let store = self.store.clone();
            let collection = self.collection.clone();
            let (version, commit_id) = (u.version, u.commit_id);
            // Some(Some(root)): landed; Some(None): another commit holds the version (or
            // retention removed it, which needs a later version: treated as lost);
            // None: the version does not exist yet.
            let found = runtime::run(async move {
                match store.root_at(&collection, version).await {
                    Ok(root) if root.commit_id == commit_id => Ok(Some(Some(root))),
                    Ok(_) => Ok(Some(None)),
                    Err(Error::NotFound { .. }) => {
                        // Asked now: a head served within the read bound could make a
                        // version retention removed look not yet written.
                        Ok((store.refresh(&collection).await?.version >= version).then_some(None))
                    }
                    Err(e) => Err(e),
                }
            });
            match found {
                Ok(Some(Some(root))) => {
                    self.landed(u.version, u.items, Some(Arc::new(root)));
                }
                Ok(Some(None)) => {} // did not land: its changes stay pending
                Ok(None) => {
                    self.lock_state().unsettled = Some(u);
                    return Err(Error::CommitOutcomeUnknown {
                        collection: self.collection.clone(),
                        version,
                        commit_id,
                    });
                }
                Err(e) => {
                    self.lock_state().unsettled = Some(u);
                    return Err(e);
                }
            }
        }
        let base_at = self.lock_state().base_at;
        if let Some(version) = base_at {
            let store = self.store.clone();
            let collection = self.collection.clone();
            let root = runtime::run(async move { store.root_at(&collection, version).await })?;
            let mut state = self.lock_state();
            if state.base_at == Some(version) {
                state.base = Some(Arc::new(root));
                state.base_at = None;
            }
        }
        Ok(())
    }
}

impl Shared {
    /// The watcher's baseline, as the read freshness mode allows: in bounded mode a head
    /// the store confirmed lately (the open that just read `meta.json`) costs no request.
    pub(super) fn watch_baseline(&self) {
        let (store, path) = (self.store.clone(), self.path(META_FILE));
        let read = runtime::run(async move {
            let root = store.head(&path.collection).await?;
            let entry = store.trees().lookup(&root, &path).await?;
            Ok((root, entry))
        });
        match read {
            Ok((root, meta)) => self.watcher.observe(root.version, meta.map(|m| m.id)),
            Err(e) => tracing::warn!("watching {}/{}: {e}", self.collection, self.shard),
        }
    }
}

impl watch::Pollable for Shared {
    fn poll(&self) {
        // The watcher polls on its own schedule: it asks the store now, whatever the
        // read freshness mode.
        let (store, path) = (self.store.clone(), self.path(META_FILE));
        let polled = runtime::run(async move {
            let root = store.refresh(&path.collection).await?;
            let entry = store.trees().lookup(&root, &path).await?;
            Ok((root, entry))
        });
        match polled {
            Ok((root, meta)) => self.watcher.observe(root.version, meta.map(|m| m.id)),
            Err(e) => tracing::warn!("polling {}/{}: {e}", self.collection, self.shard),
        }
    }
}
