//! The state behind a [`TantivyStorageAdapter`](super::TantivyStorageAdapter): pending
//! changes over the latest manifest, and commits.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::handle::SegmentFileHandle;
use super::remote::{BlockCache, RemoteFile};
use super::{runtime, watch, TantivyAdapterOptions, META_FILE};
use crate::error::{Error, Result};
use crate::manifest::{FileEntry, ManifestRoot};
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
    pub(super) watcher: watch::Watcher,
    pub(super) options: TantivyAdapterOptions,
    /// Verified blocks of remote files, shared by all handles.
    pub(super) remote_cache: Arc<BlockCache>,
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
}

/// Converts a segstore error for tantivy, keeping it as the source.
pub(crate) fn to_io(err: Error) -> io::Error {
    let kind = match &err {
        Error::NotFound { .. } => io::ErrorKind::NotFound,
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
        runtime::run(async move {
            let root = store.head(&path.collection).await?;
            let entry = store.trees().lookup(&root, &path).await?;
            Ok((root, entry))
        })
    }

    /// `name` as this adapter sees it: pending changes over the latest committed version.
    pub(super) fn resolve(&self, name: &str) -> Result<Option<FileEntry>> {
        if let Some(pending) = self.lock_state().pending.get(name) {
            return Ok(pending.clone());
        }
        Ok(self.committed(name)?.1)
    }

    /// A handle on the content `entry` names, without reading it: resident when the
    /// store has it locally (inline, a local blob or an L1 file, mapped), lazy otherwise.
    pub(super) fn open_handle(&self, name: &str, entry: FileEntry) -> Result<SegmentFileHandle> {
        let store = self.store.clone();
        let path = self.path(name);
        let (id, size) = (entry.id, entry.size);
        let file = runtime::run(async move { store.open_entry(&path, entry).await })?;
        if let Some(data) = file.resident() {
            return Ok(SegmentFileHandle::resident(name.to_owned(), data.clone()));
        }
        let len = usize::try_from(size).map_err(|_| {
            Error::Unsupported(format!(
                "{name}: {size} bytes do not fit in memory addresses"
            ))
        })?;
        let remote = RemoteFile::new(self.store.clone(), id, size, self.remote_cache.clone());
        Ok(SegmentFileHandle::remote(name.to_owned(), len, remote))
    }

    pub(super) fn stage(&self, data: &[u8]) -> Result<FileEntry> {
        let store = self.store.clone();
        let data = Bytes::copy_from_slice(data);
        runtime::run(async move { store.stage_bytes(data).await })
    }

    pub(crate) fn finish_write(&self, name: &str, entry: FileEntry) {
        let mut state = self.lock_state();
        state.writing.remove(name);
        state.pending.insert(name.to_owned(), Some(entry));
    }

    pub(crate) fn abandon_write(&self, name: &str) {
        self.lock_state().writing.remove(name);
    }

    /// Commits the pending changes `select` picks as one manifest version, then fires the
    /// watch callbacks if `meta.json` changed.
    pub(super) fn commit(&self, select: &dyn Fn(&str, &Option<FileEntry>) -> bool) -> Result<()> {
        let serialised = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
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
        let meta_path = self.path(META_FILE);
        let (root, meta) = runtime::run(async move {
            let info = store.commit_ops(&collection, ops, base).await?;
            let head = store.head(&collection).await?;
            let root = if head.version == info.version {
                head
            } else {
                Arc::new(store.root_at(&collection, info.version).await?)
            };
            let meta = store.trees().lookup(&root, &meta_path).await?;
            Ok((root, meta))
        })?;
        {
            let mut state = self.lock_state();
            for (name, entry) in items {
                if state.pending.get(&name) == Some(&entry) {
                    state.pending.remove(&name);
                }
            }
            state.base = Some(root.clone());
        }
        drop(serialised);
        self.watcher.observe(root.version, meta.map(|m| m.id));
        Ok(())
    }
}

impl watch::Pollable for Shared {
    fn poll(&self) {
        match self.committed(META_FILE) {
            Ok((root, meta)) => self.watcher.observe(root.version, meta.map(|m| m.id)),
            Err(e) => tracing::warn!("polling {}/{}: {e}", self.collection, self.shard),
        }
    }
}
