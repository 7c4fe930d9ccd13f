//! The object layer: the minimal trait each storage medium implements.
//!
//! Everything above this layer (blobs, manifests, commits) is written once against
//! [`ObjectBackend`]. An implementation only stores opaque bytes under [`ObjectKey`]s; it
//! knows nothing of hashes or manifests. The contract of every method is stated on the
//! method, because the commit protocol's safety rests on exactly these guarantees.
//!
//! Implementations: [`local::LocalBackend`] (a directory), [`memory::MemoryBackend`] (the
//! in-memory reference used by tests), and `s3::S3Backend` (feature `s3`).
//!
//! With the feature `testing`, wrappers for tests of code built on segstore: `counting`
//! (requests by kind), `eventual` (S3's old stale reads and listings) and `fault`
//! (injected failures, lost acknowledgements, crashes at an operation).

#[cfg(any(test, feature = "testing"))]
pub mod counting;
#[cfg(any(test, feature = "testing"))]
pub mod eventual;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
pub mod local;
pub mod memory;
pub mod s3;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::Clock;
use crate::error::Result;
use crate::hash::BlobId;
use crate::keys::ObjectKey;

/// What a backend reports about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written or [touched](ObjectBackend::touch). GC's grace period is
    /// measured from here.
    pub last_modified: SystemTime,
}

/// The result of a create-only write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and now holds the given bytes.
    Created,
    /// An object already existed under the key; it was left untouched.
    AlreadyExists,
}

/// A whole object as a stream of chunks; see [`ObjectBackend::get_stream`].
pub type ByteChunks = futures::stream::BoxStream<'static, Result<Bytes>>;

/// A whole blob as [`LayerHooks::get_blob`] returns it.
#[derive(Debug, Clone)]
pub struct BlobRead {
    /// The blob's bytes.
    pub bytes: Bytes,
    /// True when the backend itself checked, in this call, that `bytes` hash to the id
    /// that was asked for (a cache filling from its L2 hashes on the way in); the caller
    /// may then skip its own hash. False means "check it yourself".
    pub verified: bool,
}

/// A storage medium holding opaque objects under keys.
///
/// Guarantees every implementation must give:
///
/// - **Atomic visibility.** A reader sees an object entirely or not at all, never a prefix.
/// - **Durability.** When a writing method returns `Ok`, the write survives a process crash
///   (and, on local disk, a power loss).
/// - **Read-after-write.** Once a write returned, every later `get`, `head` and
///   `put_if_absent` on any handle to the same storage observes it. `list` may lag.
#[async_trait]
pub trait ObjectBackend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and errors, such as `"local"` or `"s3"`.
    fn name(&self) -> &'static str;

    /// Where the objects live, for messages (an S3 endpoint and bucket, a directory).
    fn describe(&self) -> String {
        format!("the {} backend", self.name())
    }

    /// The store's current time: the clock that `last_modified` is measured on (S3's
    /// server time, the local file system's clock). GC measures ages against it, so that a
    /// host whose own clock is wrong cannot shorten the grace period. The default is the
    /// system clock, right for a backend whose objects get their times from this host.
    async fn now(&self) -> Result<SystemTime> {
        Ok(crate::clock::SystemClock.now())
    }

    /// Reads a whole object. A missing object is [`Error::NotFound`](crate::Error::NotFound).
    async fn get(&self, key: &ObjectKey) -> Result<Bytes>;

    /// Reads a whole object as a stream of chunks, in order, so that a large object is
    /// never held in memory at once (a cache fill streams L2 into an L1 file). The
    /// default is [`get`](Self::get) as one chunk: right where `get` maps a file.
    async fn get_stream(&self, key: &ObjectKey) -> Result<ByteChunks> {
        let data = self.get(key).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(data) })))
    }

    /// Reads `range` of an object. A range past the end is
    /// [`Error::OutOfRange`](crate::Error::OutOfRange); an empty range is allowed.
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes>;

    /// Size and age of an object, or `None` when it does not exist.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// Writes an object, replacing any previous one atomically. Durable on return.
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()>;

    /// Creates an object only if none exists under `key`: the commit point of the manifest
    /// protocol. Exactly one of any number of concurrent callers gets
    /// [`PutOutcome::Created`]. Durable on return.
    ///
    /// If the outcome cannot be known (for example a timeout after the request was sent),
    /// the method returns an error and the caller must read the key back to find out.
    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome>;

    /// Deletes an object. Deleting a missing object is `Ok`.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Every object whose key starts with `prefix` (empty, or ending in `/`), sorted by key.
    /// Objects still being uploaded are never listed. May lag behind recent writes.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Resets an existing object's `last_modified` to now, without changing its bytes.
    /// A missing object is [`Error::NotFound`](crate::Error::NotFound).
    async fn touch(&self, key: &ObjectKey) -> Result<()>;

    /// Starts a streaming upload whose final key is chosen when it ends; used for blobs,
    /// whose name (their hash) is only known once every byte was seen.
    async fn begin_upload(&self) -> Result<Box<dyn Upload>>;

    /// What this backend offers the layers above it beyond bytes (see [`LayerHooks`]).
    /// `None`, the default, is right for a plain byte store: an implementer of a new
    /// backend leaves it alone.
    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        None
    }
}

/// An optional capability of a backend that is more than a plain byte store: local disk
/// (memory maps, cheap staging) or a cache in front of a remote store (verified reads,
/// eviction of a damaged copy). The blob and cache layers ask for it through
/// [`ObjectBackend::layer_hooks`]. Every default is a plain byte store's answer (no
/// memory maps, no cheap staging, no outboards, nothing to evict), which is also what a
/// backend without hooks gets; a wrapper (counting, fault injection) implements the hooks
/// and passes them through to what it wraps.
#[async_trait]
pub trait LayerHooks: Send + Sync {
    /// The authoritative backend behind a cache, for checks that must not trust the
    /// cache (`verify`). `None` for a backend that is itself authoritative.
    fn authoritative(&self) -> Option<Arc<dyn ObjectBackend>> {
        None
    }

    /// True when staging an upload costs no more than the final write (local disk): the
    /// blob layer then writes and hashes at the same time, and drops the staged copy on a
    /// dedup hit. False (the default) makes it hash first and skip uploading content that
    /// already exists, which is what saves bandwidth on a remote store.
    fn cheap_staging(&self) -> bool {
        false
    }

    /// True when large blobs should be written with an outboard (`<hex>.obao`) so that
    /// readers can verify ranges fetched from this backend: remote stores and caches in
    /// front of them. False (the default) for local disk, where ranges are never fetched
    /// across a trust boundary.
    fn wants_outboards(&self) -> bool {
        false
    }

    /// Called by the blob layer when the bytes it got for `key` failed verification. A
    /// backend that keeps a copy it could have served wrongly (a cache) drops that copy
    /// and returns true, so that one retry reads from the source of truth. The default
    /// keeps nothing and returns false.
    async fn evict_damaged(&self, key: &ObjectKey) -> bool {
        let _ = key;
        false
    }

    /// Reads the whole blob `key`, expected to hash to `id` and hold `size` bytes. A
    /// backend that verifies content on its way (a cache filling L1 from L2) says so in
    /// [`BlobRead::verified`], sparing the caller a second pass over the bytes; it must
    /// never say so for bytes it did not hash against `id` during this call. The default
    /// (`None`) is [`ObjectBackend::get`], unverified.
    async fn get_blob(&self, key: &ObjectKey, id: &BlobId, size: u64) -> Result<Option<BlobRead>> {
        let _ = (key, id, size);
        Ok(None)
    }

    /// A zero-copy view of a whole object, when the backend can give one cheaply (a
    /// memory map of a local file). `None` (the default) means "read ranges instead".
    /// Only for immutable objects (blobs): the view never changes once handed out.
    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let _ = key;
        Ok(None)
    }
}

/// The hooks as the layers above (and wrappers passing them through) call them, with a
/// plain store's answers for a backend that offers none.
impl dyn ObjectBackend {
    /// [`LayerHooks::authoritative`], `None` for a plain store.
    pub fn authoritative(&self) -> Option<Arc<dyn ObjectBackend>> {
        self.layer_hooks().and_then(|h| h.authoritative())
    }

    /// [`LayerHooks::cheap_staging`], false for a plain store.
    pub fn cheap_staging(&self) -> bool {
        self.layer_hooks().is_some_and(|h| h.cheap_staging())
    }

    /// [`LayerHooks::wants_outboards`], false for a plain store.
    pub fn wants_outboards(&self) -> bool {
        self.layer_hooks().is_some_and(|h| h.wants_outboards())
    }

    /// [`LayerHooks::evict_damaged`], false for a plain store.
    pub async fn evict_damaged(&self, key: &ObjectKey) -> bool {
        match self.layer_hooks() {
            Some(h) => h.evict_damaged(key).await,
            None => false,
        }
    }

    /// [`LayerHooks::get_blob`], or the whole object by [`get`](ObjectBackend::get),
    /// unverified.
    pub async fn get_blob(&self, key: &ObjectKey, id: &BlobId, size: u64) -> Result<BlobRead> {
        if let Some(h) = self.layer_hooks() {
            if let Some(read) = h.get_blob(key, id, size).await? {
                return Ok(read);
            }
        }
        Ok(BlobRead {
            bytes: self.get(key).await?,
            verified: false,
        })
    }

    /// [`LayerHooks::map`], `None` for a plain store.
    pub async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        match self.layer_hooks() {
            Some(h) => h.map(key).await,
            None => Ok(None),
        }
    }
}

/// A streaming upload in progress. Nothing is visible under any key until
/// [`publish`](Upload::publish) returns.
#[async_trait]
pub trait Upload: Send {
    /// Appends bytes. Implementations must not keep more than a bounded amount in memory.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;

    /// Makes the bytes written so far durable ahead of [`publish`](Upload::publish), so
    /// that callers can overlap that wait with other work (hashing). Optional: `publish`
    /// does it too.
    async fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes the uploaded bytes durable and visible under `key`. If an object already
    /// exists there, implementations may keep the existing one (keys are content
    /// addresses, so both hold the same bytes).
    async fn publish(self: Box<Self>, key: &ObjectKey) -> Result<()>;

    /// Discards the upload and everything it staged.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Checks `range` against an object of `size` bytes, for implementations.
pub fn check_range(key: &ObjectKey, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(crate::Error::OutOfRange {
            path: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}
