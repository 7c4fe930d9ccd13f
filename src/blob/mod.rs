//! Blobs: immutable file contents stored once under their BLAKE3 hash.
//!
//! Writing the same bytes twice (from any shard or collection) stores them once: the
//! second writer finds the blob already there and reuses it. The blob layer remembers when
//! this process published each blob: a commit may reference those without
//! further checks for `max_writer_stall`; anything else it references is a *foreign*
//! reference, confirmed under the GC protocol before the commit point (see
//! `docs/ARCHITECTURE.md`, "GC protocol").
//!
//! On backends that [want outboards](crate::backend::LayerHooks::wants_outboards) (S3, the cache), a
//! blob of at least [`outboard::OUTBOARD_MIN`] bytes is written together with its outboard,
//! which lets readers verify ranges of it; the outboard is stored first, so a blob never
//! lacks one because of a crash (an orphan outboard is swept by GC like an orphan blob).

pub(crate) mod copy;
pub mod outboard;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;

use crate::backend::{BlobRead, ObjectBackend, PutOutcome, Upload};
use crate::clock::{Clock, Stamp};
use crate::error::{Error, Result};
use crate::hash::{update_hasher, BlobId};
use crate::keys;
use outboard::{Outboard, OutboardBuilder, OUTBOARD_MIN};

/// By default a dedup hit refreshes a blob's age when it is older than this, keeping it
/// well inside the GC grace period without a write on every hit.
pub const DEFAULT_FRESHEN_AFTER: Duration = Duration::from_secs(10 * 60);

/// Blob operations over an object backend.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Arc<dyn ObjectBackend>,
    freshen_after: Duration,
    clock: Arc<dyn Clock>,
    /// When this process published each blob it wrote lately, on the monotonic clock: the
    /// start of the blob's stall window.
    published: Arc<DashMap<BlobId, Stamp>>,
    /// Outboards found existing when this process published their blobs (see
    /// `put_outboard`), with their bytes.
    outboards_found: Arc<DashMap<BlobId, Bytes>>,
}

/// Past this many remembered blobs, entries older than the stall window are dropped.
const PUBLISHED_PRUNE_AT: usize = 65_536;

impl BlobStore {
    /// Blobs stored in `backend`, timed on `clock`; dedup hits on blobs older than
    /// `freshen_after` refresh their age (and their outboard's).
    pub fn new(
        backend: Arc<dyn ObjectBackend>,
        freshen_after: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        BlobStore {
            backend,
            freshen_after,
            clock,
            published: Arc::new(DashMap::new()),
            outboards_found: Arc::new(DashMap::new()),
        }
    }

    fn record_published(&self, id: &BlobId, at: Stamp) {
        if self.published.len() >= PUBLISHED_PRUNE_AT {
            let clock = self.clock.clone();
            let keep = self.freshen_after.max(Duration::from_secs(3600)) * 2;
            self.published
                .retain(|_, at| at.elapsed(clock.as_ref()) < keep);
            let published = &self.published;
            self.outboards_found
                .retain(|id, _| published.contains_key(id));
        }
        let mut slot = self.published.entry(*id).or_insert(at);
        if at > *slot {
            *slot = at;
        }
    }

    /// How long ago this process published blob `id`, if it did so
    /// within `limit`: a commit may then reference it without confirming it exists.
    pub(crate) fn published_within(&self, id: &BlobId, limit: Duration) -> Option<Duration> {
        let at = *self.published.get(id)?;
        let age = at.elapsed(self.clock.as_ref());
        (age <= limit).then_some(age)
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
        let (id, outboard) = self.hash_for_put(data.clone()).await?;
        if outboard.is_none() && self.backend.authoritative().is_none() {
            // A blob too small for an outboard: one create-only write costs less than
            // asking first. An existing blob is left untouched, and handled as a dedup
            // hit below (its age refreshed, or it is confirmed at commit).
            let at = Stamp::now(self.clock.as_ref());
            if self
                .backend
                .put_if_absent(&keys::blob(&id), data.clone())
                .await?
                == PutOutcome::Created
            {
                self.record_published(&id, at);
                return Ok(id);
            }
        }
        if !self.reuse_existing(&id).await? {
            let sent = Stamp::now(self.clock.as_ref());
            self.put_outboard(&id, outboard.clone()).await?;
            let at = Stamp::now(self.clock.as_ref());
            self.backend.put(&keys::blob(&id), data).await?;
            self.record_published(&id, at);
            self.outboard_again_if_late(&id, outboard, sent).await?;
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
        let (staged, id) = tokio::join!(staged, self.hash_for_put(data));
        let (id, outboard) = match (staged, id) {
            (Ok(()), Ok(id)) => id,
            (Err(e), _) | (_, Err(e)) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        if self.reuse_existing(&id).await? {
            upload.abort().await?;
        } else {
            let sent = Stamp::now(self.clock.as_ref());
            if let Err(e) = self.put_outboard(&id, outboard.clone()).await {
                let _ = upload.abort().await;
                return Err(e);
            }
            let at = Stamp::now(self.clock.as_ref());
            upload.publish(&keys::blob(&id)).await?;
            self.record_published(&id, at);
            self.outboard_again_if_late(&id, outboard, sent).await?;
        }
        Ok(id)
    }

    /// The hash of `data`, and its outboard when the backend wants one for a blob this big.
    async fn hash_for_put(&self, data: Bytes) -> Result<(BlobId, Option<Outboard>)> {
        if !self.backend.wants_outboards() || (data.len() as u64) < OUTBOARD_MIN {
            return Ok((hash_off_thread(data).await?, None));
        }
        tokio::task::spawn_blocking(move || (BlobId::of(&data), Outboard::compute(&data)))
            .await
            .map_err(|e| Error::backend("hashing a blob", e.to_string()))
    }

    /// Stores the outboard of blob `id`, if there is one. Called before the blob is, and
    /// created only if absent: an outboard that exists while its blob does not is an orphan
    /// a GC run may be deleting at this very moment (runs delete outboards after their
    /// blobs, long-run seed 56022). It is remembered, and the commit stores it again once
    /// no run may be deleting ([`outboard_to_store_again`](Self::outboard_to_store_again)).
    async fn put_outboard(&self, id: &BlobId, outboard: Option<Outboard>) -> Result<()> {
        let Some(ob) = outboard else {
            return Ok(());
        };
        let bytes = ob.encode();
        let key = keys::outboard(id);
        if self.backend.put_if_absent(&key, bytes.clone()).await? == PutOutcome::AlreadyExists {
            self.outboards_found.insert(*id, bytes);
        }
        Ok(())
    }

    /// The outboard of blob `id` that this process found existing when it published the
    /// blob, to be stored again before a commit names the blob.
    pub(crate) fn outboard_to_store_again(&self, id: &BlobId) -> Option<(keys::ObjectKey, Bytes)> {
        let bytes = self.outboards_found.get(id)?.clone();
        Some((keys::outboard(id), bytes))
    }

    /// Stores `outboard` again if its blob was published more than `freshen_after` after
    /// the outboard was sent (an answer stalled in between): until the blob existed, a GC
    /// run could sweep the outboard as an orphan of a missing blob (long-run seed 6505).
    async fn outboard_again_if_late(
        &self,
        id: &BlobId,
        outboard: Option<Outboard>,
        sent: Stamp,
    ) -> Result<()> {
        if let Some(ob) =
            outboard.filter(|_| sent.elapsed(self.clock.as_ref()) > self.freshen_after)
        {
            self.backend.put(&keys::outboard(id), ob.encode()).await?;
        }
        Ok(())
    }

    /// If blob `id` already exists, returns true, and the commit confirms it as a foreign
    /// reference: a GC run may be deleting it at this very moment, however young it looks
    /// (its young mtime may be another writer's refresh of an old blob that the run had
    /// already judged, long-run seed 6784). A blob older than `freshen_after` (on the
    /// store's clock) is also refreshed, with its outboard.
    pub async fn reuse_existing(&self, id: &BlobId) -> Result<bool> {
        let key = keys::blob(id);
        let Some(meta) = self.backend.head(&key).await? else {
            return Ok(false);
        };
        let store_now = self.backend.now().await?;
        let age = store_now
            .duration_since(meta.last_modified)
            .unwrap_or_default();
        if age < self.freshen_after {
            return Ok(true);
        }
        match self.backend.touch(&key).await {
            Ok(()) => {}
            // Deleted between head and touch (GC sweeping it): store it again.
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        if self.backend.wants_outboards() && meta.size >= OUTBOARD_MIN {
            match self.backend.touch(&keys::outboard(id)).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Keeps a blob this process staged protected while it waits for its commit (a Tantivy
    /// segment file waits for `meta.json`): a blob published within the stall window and
    /// older than `freshen_after` is refreshed (with its outboard) and its window restarts.
    /// Refreshing is safe only inside the window, where no GC run can be deleting the blob;
    /// past it, the commit confirms the blob instead. Returns whether it is still protected.
    pub(crate) async fn keep_alive(
        &self,
        id: &BlobId,
        size: u64,
        window: Duration,
    ) -> Result<bool> {
        let Some(age) = self.published_within(id, window) else {
            return Ok(false);
        };
        if age < self.freshen_after {
            return Ok(true);
        }
        let at = Stamp::now(self.clock.as_ref());
        self.backend.touch(&keys::blob(id)).await?;
        if self.backend.wants_outboards() && size >= OUTBOARD_MIN {
            match self.backend.touch(&keys::outboard(id)).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.record_published(id, at);
        Ok(true)
    }

    /// The keys a commit that references blob `id` of `size` bytes must confirm: the blob,
    /// and its outboard where the backend keeps one (optional: it may never have existed).
    pub(crate) fn reference_keys(
        &self,
        id: &BlobId,
        size: u64,
    ) -> (keys::ObjectKey, Option<keys::ObjectKey>) {
        let outboard =
            (self.backend.wants_outboards() && size >= OUTBOARD_MIN).then(|| keys::outboard(id));
        (keys::blob(id), outboard)
    }

    /// Starts a streaming write; the blob's name is known when it finishes.
    pub async fn writer(&self) -> Result<BlobWriter> {
        Ok(BlobWriter {
            store: self.clone(),
            upload: Some(self.backend.begin_upload().await?),
            hasher: Some(Box::new(blake3::Hasher::new())),
            outboard: self
                .backend
                .wants_outboards()
                .then(|| Box::new(OutboardBuilder::default())),
            size: 0,
        })
    }

    /// Reads a whole blob and checks it against its hash and expected size.
    pub async fn get_verified(&self, id: &BlobId, size: u64) -> Result<Bytes> {
        match self.get_verified_once(id, size).await {
            // A cache may have served a copy damaged after it was checked: if it drops
            // that copy, one more read goes to the source of truth.
            Err(Error::Corrupt { .. }) if self.backend.evict_damaged(&keys::blob(id)).await => {
                self.get_verified_once(id, size).await
            }
            other => other,
        }
    }

    async fn get_verified_once(&self, id: &BlobId, size: u64) -> Result<Bytes> {
        let read = self.get_sized(id, size).await?;
        // One hash per read: a backend that just hashed these bytes (a cache fill) says so.
        if !read.verified {
            let actual = hash_off_thread(read.bytes.clone()).await?;
            if actual != *id {
                return Err(Error::hash_mismatch(keys::blob(id), id, actual));
            }
        }
        Ok(read.bytes)
    }

    /// Reads a whole blob into a new `Vec`, checked as [`get_verified`](Self::get_verified)
    /// does. The copy out of the mapping runs on a thread of its own beside the hash
    /// instead of after it: a cold read (the copy then waits on the disk with the hash) went
    /// from 0.71 to 0.86 of `std::fs::read`; a warm one stays at 0.59 of the hash alone,
    /// since the hash already keeps both cores (and the memory bus) busy
    /// (`cargo bench --bench read`).
    pub async fn get_verified_vec(&self, id: &BlobId, size: u64) -> Result<Vec<u8>> {
        let first = self.get_verified_vec_once(id, size).await;
        match first {
            Err(Error::Corrupt { .. }) if self.backend.evict_damaged(&keys::blob(id)).await => {
                self.get_verified_vec_once(id, size).await
            }
            other => other,
        }
    }

    async fn get_verified_vec_once(&self, id: &BlobId, size: u64) -> Result<Vec<u8>> {
        let read = self.get_sized(id, size).await?;
        if read.verified {
            return Ok(read.bytes.to_vec());
        }
        if read.bytes.len() < PARALLEL_COPY_MIN {
            let actual = hash_off_thread(read.bytes.clone()).await?;
            if actual != *id {
                return Err(Error::hash_mismatch(keys::blob(id), id, actual));
            }
            return Ok(read.bytes.to_vec());
        }
        let bytes = read.bytes;
        let (data, actual) = tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                let copy = scope.spawn(|| bytes.to_vec());
                let actual = BlobId::of(&bytes);
                (copy.join(), actual)
            })
        })
        .await
        .map_err(|e| Error::backend("hashing a blob", e.to_string()))?;
        let data =
            data.map_err(|_| Error::backend("copying a blob", "the copying thread panicked"))?;
        if actual != *id {
            return Err(Error::hash_mismatch(keys::blob(id), id, actual));
        }
        Ok(data)
    }

    /// The whole blob from the backend, refused as corrupt unless it has `size` bytes.
    async fn get_sized(&self, id: &BlobId, size: u64) -> Result<BlobRead> {
        let key = keys::blob(id);
        let read = self
            .backend
            .get_blob(&key, id, size)
            .await
            .map_err(|e| missing_is_corrupt(e, id))?;
        if read.bytes.len() as u64 != size {
            return Err(Error::Corrupt {
                object: key.to_string(),
                expected: format!("{id} ({size} bytes)"),
                actual: format!("{} bytes", read.bytes.len()),
            });
        }
        Ok(read)
    }

    /// Reads part of a blob without verification (verified ranges belong to the cache).
    pub async fn get_range(&self, id: &BlobId, range: Range<u64>) -> Result<Bytes> {
        self.backend
            .get_range(&keys::blob(id), range)
            .await
            .map_err(|e| missing_is_corrupt(e, id))
    }

    /// The outboard of blob `id`, checked against the id; `None` when the blob has none
    /// (smaller than [`OUTBOARD_MIN`], or written to a backend that does not want them).
    pub async fn outboard(&self, id: &BlobId) -> Result<Option<Outboard>> {
        match self.backend.get(&keys::outboard(id)).await {
            Ok(bytes) => Outboard::decode(id, bytes).map(Some),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `range` of blob `id`, verified against its outboard `ob`: fetches the 16 KiB
    /// groups around the range in one request and checks each of them. A range that
    /// starts on a group boundary and ends on one (or at the end of the blob) costs no
    /// extra bytes.
    pub async fn get_range_verified(
        &self,
        id: &BlobId,
        ob: &Outboard,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let key = keys::blob(id);
        crate::backend::check_range(&key, &range, ob.size())?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let aligned = ob.aligned(&range);
        let data = self.get_range(id, aligned.clone()).await?;
        let start = aligned.start;
        let ok = data.len() as u64 == aligned.end - aligned.start
            && if data.len() < 256 * 1024 {
                ob.verify(start, &data)
            } else {
                let (ob, d) = (ob.clone(), data.clone());
                tokio::task::spawn_blocking(move || ob.verify(start, &d))
                    .await
                    .map_err(|e| Error::backend("verifying a range", e.to_string()))?
            };
        if !ok {
            return Err(Error::Corrupt {
                object: key.to_string(),
                expected: format!(
                    "bytes {}..{} matching the outboard",
                    aligned.start, aligned.end
                ),
                actual: "different bytes".into(),
            });
        }
        Ok(data.slice((range.start - start) as usize..(range.end - start) as usize))
    }
}

/// Blobs at least this large are written and hashed at the same time on local disk.
const OVERLAP_MIN: usize = 256 * 1024;

/// Hashes on the blocking pool (multi-threaded for large inputs), keeping async threads free.
/// Blobs from this size on are copied to a `Vec` on a thread of their own, beside the hash.
const PARALLEL_COPY_MIN: usize = 1024 * 1024;

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
    /// Builds the outboard alongside the hash, when the backend wants outboards.
    outboard: Option<Box<OutboardBuilder>>,
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
        let mut outboard = self.outboard.take();
        let hashing = tokio::task::spawn_blocking(move || {
            update_hasher(&mut hasher, &to_hash);
            if let Some(ob) = outboard.as_mut() {
                ob.update(&to_hash);
            }
            (hasher, outboard)
        });
        let (written, hashed) = tokio::join!(upload.write(chunk), hashing);
        let (hasher, outboard) =
            hashed.map_err(|e| Error::backend("hashing a blob", e.to_string()))?;
        self.hasher = Some(hasher);
        self.outboard = outboard;
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
            let outboard = self
                .outboard
                .take()
                .filter(|_| self.size >= OUTBOARD_MIN)
                .and_then(|b| b.finish());
            let sent = Stamp::now(self.store.clock.as_ref());
            if let Err(e) = self.store.put_outboard(&id, outboard.clone()).await {
                let _ = upload.abort().await;
                return Err(e);
            }
            let at = Stamp::now(self.store.clock.as_ref());
            upload.publish(&keys::blob(&id)).await?;
            self.store.record_published(&id, at);
            self.store
                .outboard_again_if_late(&id, outboard, sent)
                .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::clock::SystemClock;

    fn store() -> (Arc<MemoryBackend>, BlobStore) {
        let backend = Arc::new(MemoryBackend::new());
        let blobs = BlobStore::new(
            backend.clone(),
            Duration::from_secs(3600),
            Arc::new(SystemClock),
        );
        (backend, blobs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_to_a_vec_is_verified_small_and_large() {
        for len in [10, 200_000, 3 * 1024 * 1024 + 17] {
            let (backend, blobs) = store();
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let id = blobs.put(Bytes::from(data.clone())).await.unwrap();
            assert_eq!(blobs.get_verified_vec(&id, len as u64).await.unwrap(), data);

            // One flipped byte, then a short copy: both are refused.
            let mut damaged = data.clone();
            damaged[len / 2] ^= 1;
            backend.put(&keys::blob(&id), damaged.into()).await.unwrap();
            let err = blobs.get_verified_vec(&id, len as u64).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{len}: {err}");
            backend
                .put(&keys::blob(&id), Bytes::copy_from_slice(&data[1..]))
                .await
                .unwrap();
            let err = blobs.get_verified_vec(&id, len as u64).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{len}: {err}");
        }
    }
}
