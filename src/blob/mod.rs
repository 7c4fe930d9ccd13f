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

    /// Stores `data` unless an identical blob exists, and returns its id. Durable on
    /// return.
    pub async fn put(&self, data: Bytes) -> Result<BlobId> {
        if self.backend.cheap_staging() && data.len() >= OVERLAP_MIN {
            return self.put_overlapped(data).await;
        }
        let id = hash_off_thread(data.clone()).await?;
        if !self.reuse_existing(&id).await? {
            self.backend.put(&keys::blob(&id), data).await?;
        }
        Ok(id)
    }

    /// Local disk: write and sync the staged copy while hashing, so the hash costs no
    /// extra time; publish it under the hash, or drop it on a dedup hit.
    async fn put_overlapped(&self, data: Bytes) -> Result<BlobId> {
        let mut upload = self.backend.begin_upload().await?;
        let to_write = data.clone();
        let staged = async {
            upload.write(to_write).await?;
            upload.prepare().await
        };
        let (staged, id) = tokio::join!(staged, hash_off_thread(data));
        let id = match (staged, id) {
            (Ok(()), Ok(id)) => id,
            (Err(e), _) | (_, Err(e)) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        if self.reuse_existing(&id).await? {
            upload.abort().await?;
        } else {
            upload.publish(&keys::blob(&id)).await?;
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
            hasher: Some(Box::new(blake3::Hasher::new())),
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
        let actual = hash_off_thread(bytes.clone()).await?;
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

/// Blobs at least this large are written and hashed at the same time on local disk.
const OVERLAP_MIN: usize = 256 * 1024;

/// Hashes on the blocking pool (multi-threaded for large inputs), keeping async threads free.
async fn hash_off_thread(data: Bytes) -> Result<BlobId> {
    if data.len() < 64 * 1024 {
        return Ok(BlobId::of(&data));
    }
    tokio::task::spawn_blocking(move || BlobId::of(&data))
        .await
        .map_err(|e| Error::backend("hashing a blob", e.to_string()))
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
    /// `None` only while a chunk is being hashed on the blocking pool.
    hasher: Option<Box<blake3::Hasher>>,
    size: u64,
}

impl BlobWriter {
    /// Appends bytes.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let (Some(upload), Some(mut hasher)) = (self.upload.as_mut(), self.hasher.take()) else {
            return Err(Error::backend("writing a blob", "writer already finished"));
        };
        self.size += chunk.len() as u64;
        // Hash this chunk on another thread while the upload takes it.
        let to_hash = chunk.clone();
        let hashing = tokio::task::spawn_blocking(move || {
            update_hasher(&mut hasher, &to_hash);
            hasher
        });
        let (written, hashed) = tokio::join!(upload.write(chunk), hashing);
        self.hasher = Some(hashed.map_err(|e| Error::backend("hashing a blob", e.to_string()))?);
        written
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
        let hasher = self
            .hasher
            .take()
            .ok_or_else(|| Error::backend("finishing a blob", "writer already finished"))?;
        let id = BlobId::from(hasher.finalize());
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
