//! Blobs: immutable file contents stored once under their BLAKE3 hash.
//!
//! Writing the same bytes twice (from any shard or collection) stores them once: the
//! second writer finds the blob already there and only refreshes its age, so that a GC
//! running at the same moment treats it as new (see `docs/ARCHITECTURE.md`, GC safety).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::backend::{ObjectBackend, Upload};
use crate::error::{Error, Result};
use crate::hash::{update_hasher, BlobId};
use crate::keys;

/// By default a dedup hit refreshes a blob's age when it is older than this, keeping it
/// well inside the GC grace period without a write on every hit.
pub const DEFAULT_FRESHEN_AFTER: Duration = Duration::from_secs(10 * 60);

/// Blob operations over an object backend.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Arc<dyn ObjectBackend>,
    freshen_after: Duration,
}

impl BlobStore {
    /// Blobs stored in `backend`; dedup hits on blobs older than `freshen_after` refresh
    /// their age.
    pub fn new(backend: Arc<dyn ObjectBackend>, freshen_after: Duration) -> Self {
        BlobStore {
            backend,
            freshen_after,
        }
    }

    /// The backend blobs live in.
    pub fn backend(&self) -> &Arc<dyn ObjectBackend> {
        &self.backend
    }

    /// Stores `data` unless an identical blob exists, and returns its id.
    pub async fn put(&self, data: Bytes) -> Result<BlobId> {
        let data_for_hash = data.clone();
        let id = tokio::task::spawn_blocking(move || BlobId::of(&data_for_hash))
            .await
            .map_err(|e| Error::backend("hashing a blob", e.to_string()))?;
        if !self.reuse_existing(&id).await? {
            self.backend.put(&keys::blob(&id), data).await?;
        }
        Ok(id)
    }

    /// If blob `id` already exists, refreshes its age when due and returns true.
    pub async fn reuse_existing(&self, id: &BlobId) -> Result<bool> {
        let key = keys::blob(id);
        let Some(meta) = self.backend.head(&key).await? else {
            return Ok(false);
        };
        let age = SystemTime::now()
            .duration_since(meta.last_modified)
            .unwrap_or_default();
        if age >= self.freshen_after {
            match self.backend.touch(&key).await {
                Ok(()) => {}
                // Deleted between head and touch (GC sweeping it): store it again.
                Err(Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Starts a streaming write; the blob's name is known when it finishes.
    pub async fn writer(&self) -> Result<BlobWriter> {
        Ok(BlobWriter {
            store: self.clone(),
            upload: Some(self.backend.begin_upload().await?),
            hasher: blake3::Hasher::new(),
            size: 0,
        })
    }

    /// Reads a whole blob and checks it against its hash and expected size.
    pub async fn get_verified(&self, id: &BlobId, size: u64) -> Result<Bytes> {
        let key = keys::blob(id);
        let bytes = self
            .backend
            .get(&key)
            .await
            .map_err(|e| missing_is_corrupt(e, id))?;
        if bytes.len() as u64 != size {
            return Err(Error::Corrupt {
                object: key.to_string(),
                expected: format!("{id} ({size} bytes)"),
                actual: format!("{} bytes", bytes.len()),
            });
        }
        let check = bytes.clone();
        let actual = tokio::task::spawn_blocking(move || BlobId::of(&check))
            .await
            .map_err(|e| Error::backend("hashing a blob", e.to_string()))?;
        if actual != *id {
            return Err(Error::Corrupt {
                object: key.to_string(),
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(bytes)
    }

    /// Reads part of a blob without verification (verified ranges belong to the cache).
    pub async fn get_range(&self, id: &BlobId, range: Range<u64>) -> Result<Bytes> {
        self.backend
            .get_range(&keys::blob(id), range)
            .await
            .map_err(|e| missing_is_corrupt(e, id))
    }
}

/// A blob that a manifest names but storage lacks is damage, not a missing path.
fn missing_is_corrupt(err: Error, id: &BlobId) -> Error {
    match err {
        Error::NotFound { path } => Error::Corrupt {
            object: path,
            expected: id.to_hex(),
            actual: "missing blob".into(),
        },
        other => other,
    }
}

/// A blob being written piece by piece, hashed as the bytes go by.
pub struct BlobWriter {
    store: BlobStore,
    upload: Option<Box<dyn Upload>>,
    hasher: blake3::Hasher,
    size: u64,
}

impl BlobWriter {
    /// Appends bytes.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| Error::backend("writing a blob", "writer already finished"))?;
        update_hasher(&mut self.hasher, &chunk);
        self.size += chunk.len() as u64;
        upload.write(chunk).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Publishes the blob (or drops the upload if an identical blob exists) and returns its
    /// id and size. Durable on return.
    pub async fn finish(mut self) -> Result<(BlobId, u64)> {
        let upload = self
            .upload
            .take()
            .ok_or_else(|| Error::backend("finishing a blob", "writer already finished"))?;
        let id = BlobId::from(self.hasher.finalize());
        if self.store.reuse_existing(&id).await? {
            upload.abort().await?;
        } else {
            upload.publish(&keys::blob(&id)).await?;
        }
        Ok((id, self.size))
    }

    /// Discards everything written.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}
