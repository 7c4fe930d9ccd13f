//! Building a hotcache on the writer side: a reference open of the version being
//! committed (`Index::open`, a reader, each indexed field's term dictionary) through a
//! read-only [`Directory`] that records every read, bound to the blob id it came from.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::{fmt, io};

use async_trait::async_trait;
use bytes::Bytes;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::{Directory, HasLen, Index, ReloadPolicy};

use super::hotcache::{self, Hotcache, HOTCACHE_FILE, RANGE_CAP};
use super::shared::{file_name, to_io, Shared};
use crate::error::Error;
use crate::hash::BlobId;
use crate::manifest::FileEntry;

/// Reads seen: (blob id, file size, offset, bytes).
type Reads = Arc<Mutex<Vec<(BlobId, u64, u64, Bytes)>>>;

fn push(reads: &Reads, id: BlobId, size: u64, start: u64, bytes: &[u8]) {
    if bytes.is_empty() || bytes.len() as u64 > RANGE_CAP {
        return;
    }
    let copy = Bytes::copy_from_slice(bytes);
    reads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, size, start, copy));
}

/// A read-only view of an adapter that records what tantivy reads.
#[derive(Clone)]
struct Recorder {
    shared: Arc<Shared>,
    reads: Reads,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recorder")
    }
}

struct RecordingHandle {
    inner: Arc<dyn FileHandle>,
    id: BlobId,
    size: u64,
    reads: Reads,
}

impl fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[async_trait]
impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let start = range.start as u64;
        let bytes = self.inner.read_bytes(range)?;
        push(&self.reads, self.id, self.size, start, bytes.as_slice());
        Ok(bytes)
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{path:?}: the hotcache recorder is read-only"),
    )
}

impl Directory for Recorder {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        // Resolved exactly as the adapter does, so the id is that of the bytes read.
        let (entry, version) = self
            .shared
            .resolve_at(&name)
            .map_err(|e| read_err(to_io(e)))?
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        let (id, size) = (entry.id, entry.size);
        let inner = self
            .shared
            .open_handle(&name, entry, version)
            .map_err(|e| read_err(to_io(e)))?;
        Ok(Arc::new(RecordingHandle {
            inner: Arc::new(inner),
            id,
            size,
            reads: self.reads.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        let entry = self.shared.resolve(&name).map_err(|e| read_err(to_io(e)))?;
        Ok(entry.is_some())
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(
            read_only(path),
            path.to_path_buf(),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let read_err = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(read_err)?;
        let entry = self
            .shared
            .resolve(&name)
            .map_err(|e| read_err(to_io(e)))?
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        let store = self.shared.store.clone();
        let data = super::runtime::run(async move { store.read_entry(&entry).await })
            .map_err(|e| read_err(to_io(e)))?;
        // Bound to the hash of what was read: whole files need no other binding.
        push(&self.reads, BlobId::of(&data), data.len() as u64, 0, &data);
        Ok(data.to_vec())
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        // The reader's meta lock keeps tantivy's GC from deleting files being opened; the
        // reference open runs inside the commit, before any deletes of it can land.
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

/// Opens the index as the adapter sees it now (the pending `meta.json` about to be
/// committed) and records what a reader reads: the hotcache for `meta`, the blob id of
/// that `meta.json`.
pub(crate) fn record(shared: &Arc<Shared>, meta: BlobId) -> tantivy::Result<Hotcache> {
    let recorder = Recorder {
        shared: shared.clone(),
        reads: Reads::default(),
    };
    let index = Index::open(recorder.clone())?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let schema = index.schema();
    for (field, entry) in schema.fields() {
        if !entry.is_indexed() {
            continue;
        }
        for segment in searcher.segment_readers() {
            segment.inverted_index(field)?;
        }
    }
    drop(searcher);
    let reads = recorder.reads.lock().unwrap_or_else(|p| p.into_inner());
    let outboards = reads
        .iter()
        .filter_map(|(id, ..)| Some((*id, shared.remote_cache.outboard(id)?)))
        .collect();
    Ok(hotcache::build(meta, &reads, &outboards))
}

impl Shared {
    /// Whether `meta.json` commits write a hotcache and publish the head: on a remote
    /// store unless the adapter's options say otherwise.
    pub(super) fn writes_hotcache(&self) -> bool {
        self.options
            .hotcache
            .unwrap_or_else(|| self.store.backend().wants_outboards())
    }

    /// Before a `meta.json` commit (`meta` is its entry, already pending): records what a
    /// reader of the new version reads at open and stages it as the hotcache, if hotcaches
    /// are on for this adapter. A failure only costs the optimisation: it is logged, and an
    /// older hotcache left in place names another `meta.json`, so readers ignore it.
    pub(super) fn stage_hotcache(self: &Arc<Self>, meta: &FileEntry) {
        if !self.writes_hotcache() {
            return;
        }
        let built = record(self, meta.id)
            .map_err(|e| Error::backend("recording the tantivy hotcache", e.to_string()))
            .and_then(|cache| Ok((self.stage(&hotcache::encode(&cache))?, cache)));
        match built {
            Ok((entry, cache)) => {
                *self
                    .written_hotcache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some((entry.id, Arc::new(cache)));
                self.lock_state()
                    .pending
                    .insert(HOTCACHE_FILE.to_owned(), Some(entry));
            }
            Err(e) => {
                tracing::warn!(collection = %self.collection, shard = %self.shard, error = %e,
                    "could not write the tantivy hotcache");
            }
        }
    }
}
