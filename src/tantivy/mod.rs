//! [`TantivyStorageAdapter`]: a tantivy 0.27 [`Directory`] over one (collection, shard) of a
//! segstore store.
//!
//! Files live at `StoragePath::new(collection, StorageBackend::Tantivy, shard, name)`. How
//! tantivy's calls map onto segstore (see `docs/ARCHITECTURE.md`, "Tantivy adapter"):
//!
//! - `open_write` streams into a blob; the file is readable (to this adapter) from
//!   `terminate()` on, but stays *pending*: it is not in the manifest yet.
//! - `atomic_write("meta.json")` is the commit: every pending file, every pending delete and
//!   `meta.json` go into one manifest version. `.managed.json` stays pending too (it is
//!   rewritten on every new file), except right after a garbage collection, when it is
//!   committed together with the deletes.
//! - Reads are zero-copy slices of the stored blob where the store has it locally (a
//!   memory mapping on local disk and in the cache's L1). On plain S3 a file is read lazily
//!   by verified range, through a bounded block cache shared by the adapter's handles.
//! - On a remote store each `meta.json` commit also writes a hotcache, what a reader reads
//!   at open (see the `hotcache` and `record` modules): a cold reader opens from it.
//! - Locks are in-process; watching polls the manifest head.

mod handle;
mod hotcache;
mod lock;
mod record;
mod remote;
pub(crate) mod runtime;
mod shard;
mod shared;
mod watch;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{fmt, io};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, WatchCallback, WatchHandle, WritePtr, INDEX_WRITER_LOCK,
};
use tantivy::Directory;

use crate::error::{Error, Result};
use crate::path::{StorageBackend, StoragePath};
use crate::storage::SegmentStorage;
use crate::store::core_store;
use crate::store::Store;

pub(crate) use shard::Mode;
pub(crate) use shared::{to_io, Shared};

use shared::{file_name, State};

/// tantivy's commit point.
const META_FILE: &str = "meta.json";
/// tantivy's list of the files it manages.
const MANAGED_FILE: &str = ".managed.json";

/// Tuning for a [`TantivyStorageAdapter`].
#[derive(Debug, Clone)]
pub struct TantivyAdapterOptions {
    /// How often `watch` polls the manifest head for commits made by other adapter
    /// instances or processes. The adapter's own commits fire callbacks at once.
    pub watch_interval: Duration,
    /// Bytes of verified content kept in memory for files read from a store without a
    /// local copy (plain S3): 64 KiB blocks and small whole files, shared by all of the
    /// adapter's open files. Not used on local disk or the cached tier, which map files.
    pub remote_cache_bytes: u64,
    /// Whether each `meta.json` commit also writes a hotcache (`.segstore-hotcache`: the
    /// bytes a reader reads at open, so that a cold reader on S3 opens from one object).
    /// `None` (the default): when the store's backend is remote (it wants outboards).
    /// Readers always use a valid hotcache when there is one.
    pub hotcache: Option<bool>,
    /// On a store without a local copy, a read that misses the cache fetches the
    /// aligned window of this many bytes around it (without the blocks already cached),
    /// so that reads close together cost one request: the stored documents of a query's
    /// hits, mostly. At most an eighth of `remote_cache_bytes`; 0 fetches only the 64 KiB
    /// blocks a read touches.
    pub remote_read_ahead: u64,
}

/// Default for [`TantivyAdapterOptions::remote_cache_bytes`]: 32 MiB.
pub const DEFAULT_REMOTE_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Default for [`TantivyAdapterOptions::remote_read_ahead`]: 512 KiB, about 5 ms more
/// transfer per request at 100 MB/s against 20-100 ms for a request's first byte on S3.
pub const DEFAULT_REMOTE_READ_AHEAD: u64 = 512 * 1024;

impl Default for TantivyAdapterOptions {
    fn default() -> Self {
        TantivyAdapterOptions {
            watch_interval: Duration::from_millis(500),
            remote_cache_bytes: DEFAULT_REMOTE_CACHE_BYTES,
            hotcache: None,
            remote_read_ahead: DEFAULT_REMOTE_READ_AHEAD,
        }
    }
}

/// A tantivy [`Directory`] storing one shard of a collection in a segstore store.
///
/// Cheap to clone (tantivy clones directories freely); clones share all state.
#[derive(Clone)]
pub struct TantivyStorageAdapter {
    shared: Arc<Shared>,
}

impl TantivyStorageAdapter {
    /// Opens the adapter for `shard` of `collection` in `store`, with default options.
    ///
    /// `store` must be one of segstore's stores ([`Store`], [`LocalStorage`](crate::LocalStorage));
    /// anything else is [`Error::Unsupported`].
    pub async fn open(
        store: Arc<dyn SegmentStorage>,
        collection: &str,
        shard: &str,
    ) -> Result<TantivyStorageAdapter> {
        Self::open_with(store, collection, shard, TantivyAdapterOptions::default()).await
    }

    /// Opens the adapter with tuning options.
    pub async fn open_with(
        store: Arc<dyn SegmentStorage>,
        collection: &str,
        shard: &str,
        options: TantivyAdapterOptions,
    ) -> Result<TantivyStorageAdapter> {
        let store = core_store(store.as_ref()).ok_or_else(|| {
            Error::Unsupported(
                "the tantivy adapter needs one of segstore's own stores (Store, LocalStorage)"
                    .into(),
            )
        })?;
        Self::open_mode(store, collection, shard, options, Mode::Direct)
    }

    /// Opens the adapter on a core store, committing as `mode` says.
    pub(crate) fn open_mode(
        store: Store,
        collection: &str,
        shard: &str,
        options: TantivyAdapterOptions,
        mode: Mode,
    ) -> Result<TantivyStorageAdapter> {
        StoragePath::new(collection, StorageBackend::Tantivy, shard, META_FILE).validate()?;
        let lock_scope = format!(
            "{:p}/{collection}/{shard}",
            Arc::as_ptr(store.backend()) as *const ()
        );
        Ok(TantivyStorageAdapter {
            shared: Arc::new(Shared {
                store,
                collection: collection.to_owned(),
                shard: shard.to_owned(),
                lock_scope,
                state: Mutex::new(State::default()),
                commit_lock: Mutex::new(()),
                kept_alive: Mutex::new(None),
                watcher: watch::Watcher::default(),
                remote_cache: Arc::new(remote::BlockCache::new(
                    options.remote_cache_bytes,
                    options.remote_read_ahead,
                )),
                hotcache: Mutex::new(None),
                written_hotcache: Mutex::new(None),
                options,
                mode,
            }),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The collection.
    pub fn collection(&self) -> &str {
        &self.shared.collection
    }

    /// The shard.
    pub fn shard(&self) -> &str {
        &self.shared.shard
    }

    /// The storage path of tantivy file `name`.
    pub fn path(&self, name: &str) -> StoragePath {
        self.shared.path(name)
    }

    /// Names of files terminated or deleted but not committed yet.
    pub fn pending(&self) -> Vec<String> {
        self.shared.lock_state().pending.keys().cloned().collect()
    }
}

impl fmt::Debug for TantivyStorageAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TantivyStorageAdapter")
            .field("collection", &self.shared.collection)
            .field("shard", &self.shared.shard)
            .finish()
    }
}

impl Directory for TantivyStorageAdapter {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        self.shared.checked_path(&name).map_err(read_err)?;
        let (entry, version) = self
            .shared
            .resolve_at(&name)
            .map_err(|e| read_err(to_io(e)))?
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        let handle = self
            .shared
            .open_handle(&name, entry, version)
            .map_err(|e| read_err(to_io(e)))?;
        Ok(Arc::new(handle))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let delete_err = |e: io::Error| DeleteError::IoError {
            io_error: Arc::new(e),
            filepath: path.to_path_buf(),
        };
        let name = file_name(path).map_err(delete_err)?;
        self.shared.checked_path(&name).map_err(delete_err)?;
        self.shared.writable().map_err(delete_err)?;
        if self
            .shared
            .resolve(&name)
            .map_err(|e| delete_err(to_io(e)))?
            .is_none()
        {
            return Err(DeleteError::FileDoesNotExist(path.to_path_buf()));
        }
        self.shared.lock_state().pending.insert(name, None);
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        self.shared.checked_path(&name).map_err(read_err)?;
        if self.shared.lock_state().writing.contains(&name) {
            return Ok(true);
        }
        let entry = self.shared.resolve(&name).map_err(|e| read_err(to_io(e)))?;
        Ok(entry.is_some())
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let write_err = |e: io::Error| OpenWriteError::wrap_io_error(e, path.to_path_buf());
        let exists = || OpenWriteError::FileAlreadyExists(path.to_path_buf());
        let name = file_name(path).map_err(write_err)?;
        self.shared.checked_path(&name).map_err(write_err)?;
        self.shared.writable().map_err(write_err)?;
        let committed = match self.shared.lock_state().pending.get(&name) {
            Some(Some(_)) => return Err(exists()),
            Some(None) => false,
            None => {
                let (_, entry) = self
                    .shared
                    .committed(&name)
                    .map_err(|e| write_err(to_io(e)))?;
                entry.is_some()
            }
        };
        {
            let mut state = self.shared.lock_state();
            let pending = state.pending.get(&name).cloned();
            let taken = match pending {
                Some(entry) => entry.is_some(),
                None => committed,
            };
            if taken || !state.writing.insert(name.clone()) {
                return Err(exists());
            }
        }
        let writer = writer::SegmentWriter::new(self.shared.clone(), name);
        Ok(io::BufWriter::new(Box::new(writer)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        self.shared.checked_path(&name).map_err(read_err)?;
        let pending = self.shared.lock_state().pending.get(&name).cloned();
        let entry = match pending {
            Some(entry) => entry,
            None => {
                let (root, entry) = self
                    .shared
                    .committed(&name)
                    .map_err(|e| read_err(to_io(e)))?;
                // A valid hotcache of this version may hold the whole file (one GET for
                // all of a cold open's small reads).
                let hotcache = self.shared.hot_for(&root);
                let hot = entry
                    .as_ref()
                    .filter(|e| e.inline.is_none())
                    .zip(hotcache)
                    .and_then(|(e, hot)| hot.file(&e.id, e.size)?.whole());
                if name == META_FILE {
                    self.shared.note_meta_read(root);
                }
                if let Some(whole) = hot {
                    return Ok(whole.to_vec());
                }
                entry
            }
        };
        let entry = entry.ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        let store = self.shared.store.clone();
        let data = runtime::run(async move { store.read_entry(&entry).await })
            .map_err(|e| read_err(to_io(e)))?;
        Ok(data.to_vec())
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let name = file_name(path)?;
        self.shared.checked_path(&name)?;
        self.shared.writable()?;
        let entry = self.shared.stage(data).map_err(to_io)?;
        let has_deletes = {
            let mut state = self.shared.lock_state();
            state.pending.insert(name.clone(), Some(entry.clone()));
            state.pending.values().any(Option::is_none)
        };
        let result = match name.as_str() {
            // In a shard, everything waits for the shard's transaction.
            _ if self.shared.mode.holds() => Ok(()),
            // The commit point: everything pending goes into one version, with a hotcache
            // of that version.
            META_FILE => {
                self.shared.stage_hotcache(&entry);
                self.shared.commit(&|_, _| true)
            }
            // Rewritten on every new file: stays pending, unless a garbage collection just
            // deleted files, whose deletes it then commits.
            MANAGED_FILE if has_deletes => {
                self.shared.commit(&|n, e| e.is_none() || n == MANAGED_FILE)
            }
            MANAGED_FILE => Ok(()),
            other => self.shared.commit(&|n, _| n == other),
        };
        if let Err(e) = result {
            // A commit point that failed must not be seen by this adapter's readers either.
            if name != MANAGED_FILE {
                let mut state = self.shared.lock_state();
                if state.pending.get(&name) == Some(&Some(entry)) {
                    state.pending.remove(&name);
                }
            }
            return Err(to_io(e));
        }
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        // Terminated files are durable blobs already; what is pending becomes visible with
        // the `meta.json` commit that tantivy writes right after this call.
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        let name = file_name(&lock.filepath).map_err(LockError::wrap_io_error)?;
        let held = lock::acquire(&self.shared.lock_scope, &name, lock.is_blocking)?;
        if lock.filepath == INDEX_WRITER_LOCK.filepath {
            // A new IndexWriter: the meta.json it loads next is its base. Ask for the head
            // now, so that a writer starting just after another process's commit builds
            // on it instead of failing its first commit on a head within the read bound.
            if self.shared.mode.pinned().is_none() {
                let (store, collection) =
                    (self.shared.store.clone(), self.shared.collection.clone());
                if let Err(e) = runtime::run(async move { store.refresh(&collection).await }) {
                    tracing::warn!(collection = %self.shared.collection, error = %e,
                        "refreshing the head for a new index writer");
                }
            }
            self.shared.lock_state().rebase = true;
        }
        Ok(held)
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        let handle = self.shared.watcher.subscribe(callback);
        if self.shared.watcher.start_polling() {
            self.shared.watch_baseline();
            watch::spawn_poller(
                Arc::downgrade(&self.shared),
                self.shared.options.watch_interval,
            )
            .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        }
        Ok(handle)
    }
}
