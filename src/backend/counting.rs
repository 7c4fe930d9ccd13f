//! [`CountingBackend`]: counts the requests and bytes that pass through to another
//! backend. Test and benchmark support: it answers "how many requests does a commit cost
//! on S3?" and "how much L2 traffic did the cache cause?" without touching the backend
//! being measured.
//!
//! Every call is counted once, when it is made, whatever its outcome; bytes are counted
//! only for calls that succeeded. Streaming uploads count as one `uploads` request each,
//! plus the bytes written to them; what a backend does inside an upload (multipart parts,
//! a server-side copy) is its own business and is not visible at this level.
//!
//! ```
//! # use std::sync::Arc;
//! # use segstore::backend::{counting::CountingBackend, memory::MemoryBackend};
//! # use segstore::{Store, StoreOptions, StoragePath, StorageBackend};
//! # tokio_test_run(async {
//! let counting = CountingBackend::new(MemoryBackend::new());
//! let store = Store::new(Arc::new(counting.clone()), StoreOptions::default());
//! let path = StoragePath::unsharded("c", StorageBackend::Tantivy, "meta.json");
//! counting.reset();
//! store.write_bytes(&path, "{}".into()).await.unwrap();
//! let counts = counting.snapshot();
//! assert_eq!(counts.put_if_absent, 2); // the single-page shard object, then the commit point
//! # });
//! # fn tokio_test_run(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::Result;
use crate::keys::ObjectKey;

/// The kinds of request an [`ObjectBackend`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// [`ObjectBackend::get`].
    Get,
    /// [`ObjectBackend::get_range`].
    GetRange,
    /// [`ObjectBackend::head`].
    Head,
    /// [`ObjectBackend::put`].
    Put,
    /// [`ObjectBackend::put_if_absent`].
    PutIfAbsent,
    /// [`ObjectBackend::delete`].
    Delete,
    /// [`ObjectBackend::list`].
    List,
    /// [`ObjectBackend::touch`].
    Touch,
    /// [`ObjectBackend::begin_upload`] (one per streaming upload).
    Upload,
    /// [`Upload::publish`] of a streaming upload, with the key it was published to.
    Publish,
}

impl RequestKind {
    /// A short lowercase name, as used in [`RequestCounts`]'s `Display`.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Get => "get",
            RequestKind::GetRange => "get_range",
            RequestKind::Head => "head",
            RequestKind::Put => "put",
            RequestKind::PutIfAbsent => "put_if_absent",
            RequestKind::Delete => "delete",
            RequestKind::List => "list",
            RequestKind::Touch => "touch",
            RequestKind::Upload => "upload",
            RequestKind::Publish => "publish",
        }
    }
}

/// One logged request (see [`CountingBackend::with_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// What was asked.
    pub kind: RequestKind,
    /// The key, or the prefix of a `list`; empty for `begin_upload`.
    pub key: String,
}

impl fmt::Display for LoggedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.key)
    }
}

/// Request and byte counts at one moment, from [`CountingBackend::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Whole-object reads.
    pub get: u64,
    /// Range reads.
    pub get_range: u64,
    /// Existence and metadata probes.
    pub head: u64,
    /// Plain (overwriting) writes.
    pub put: u64,
    /// Create-only writes (the commit point).
    pub put_if_absent: u64,
    /// Deletes.
    pub delete: u64,
    /// Listings (one per call, however many pages the backend needed).
    pub list: u64,
    /// Age refreshes.
    pub touch: u64,
    /// Streaming uploads begun.
    pub uploads: u64,
    /// Bytes returned by successful `get` and `get_range` calls.
    pub bytes_read: u64,
    /// Bytes accepted by successful `put`, `put_if_absent` and upload `write` calls.
    pub bytes_written: u64,
}

impl RequestCounts {
    /// Every request counted, of any kind.
    pub fn total(&self) -> u64 {
        self.reads() + self.writes() + self.delete + self.list
    }

    /// Requests that only read: `get`, `get_range`, `head`.
    pub fn reads(&self) -> u64 {
        self.get + self.get_range + self.head
    }

    /// Requests that write: `put`, `put_if_absent`, `touch`, `uploads`.
    pub fn writes(&self) -> u64 {
        self.put + self.put_if_absent + self.touch + self.uploads
    }

    /// The counts accumulated since `earlier` (field by field, saturating).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get.saturating_sub(earlier.get),
            get_range: self.get_range.saturating_sub(earlier.get_range),
            head: self.head.saturating_sub(earlier.head),
            put: self.put.saturating_sub(earlier.put),
            put_if_absent: self.put_if_absent.saturating_sub(earlier.put_if_absent),
            delete: self.delete.saturating_sub(earlier.delete),
            list: self.list.saturating_sub(earlier.list),
            touch: self.touch.saturating_sub(earlier.touch),
            uploads: self.uploads.saturating_sub(earlier.uploads),
            bytes_read: self.bytes_read.saturating_sub(earlier.bytes_read),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
        }
    }
}

impl fmt::Display for RequestCounts {
    /// `total 5: head 1, put 2, put_if_absent 1, get 1; read 0 B, written 1234 B`, listing
    /// only the kinds that occurred.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("get", self.get),
            ("get_range", self.get_range),
            ("head", self.head),
            ("put", self.put),
            ("put_if_absent", self.put_if_absent),
            ("delete", self.delete),
            ("list", self.list),
            ("touch", self.touch),
            ("uploads", self.uploads),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
        write!(
            f,
            "total {}: {}; read {} B, written {} B",
            self.total(),
            if parts.is_empty() {
                "none".to_owned()
            } else {
                parts.join(", ")
            },
            self.bytes_read,
            self.bytes_written
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    get_range: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    put_if_absent: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    touch: AtomicU64,
    uploads: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// `Some` when logging is on.
    log: Option<Mutex<Vec<LoggedRequest>>>,
}

impl Counters {
    fn count(&self, kind: RequestKind, key: &str) {
        let counter = match kind {
            RequestKind::Get => &self.get,
            RequestKind::GetRange => &self.get_range,
            RequestKind::Head => &self.head,
            RequestKind::Put => &self.put,
            RequestKind::PutIfAbsent => &self.put_if_absent,
            RequestKind::Delete => &self.delete,
            RequestKind::List => &self.list,
            RequestKind::Touch => &self.touch,
            RequestKind::Upload => &self.uploads,
            RequestKind::Publish => {
                // Not a request of its own at this level; only logged.
                self.log_request(kind, key);
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.log_request(kind, key);
    }

    fn log_request(&self, kind: RequestKind, key: &str) {
        if let Some(log) = &self.log {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(LoggedRequest {
                    kind,
                    key: key.to_owned(),
                });
        }
    }

    fn read(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn written(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Wraps a backend and counts every request made through it, by kind, and the bytes read
/// and written. Clones share the counters. Test and benchmark support; the overhead is a
/// few atomic increments per request (plus a lock per request when logging).
///
/// `B` may be unsized, so `CountingBackend<dyn ObjectBackend>` wraps an
/// `Arc<dyn ObjectBackend>`.
#[derive(Debug)]
pub struct CountingBackend<B: ?Sized = dyn ObjectBackend> {
    inner: Arc<B>,
    counters: Arc<Counters>,
}

impl<B: ?Sized> Clone for CountingBackend<B> {
    fn clone(&self) -> Self {
        CountingBackend {
            inner: self.inner.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<B: ObjectBackend + ?Sized> CountingBackend<B> {
    /// Counts requests to `inner` (a backend, or an `Arc` of one).
    pub fn new(inner: impl Into<Arc<B>>) -> Self {
        CountingBackend {
            inner: inner.into(),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Counts requests to `inner` and also logs each one (kind and key), for
    /// [`log`](Self::log). Meant for short measured sections: the log grows until
    /// [`reset`](Self::reset).
    pub fn with_log(inner: impl Into<Arc<B>>) -> Self {
        CountingBackend {
            inner: inner.into(),
            counters: Arc::new(Counters {
                log: Some(Mutex::new(Vec::new())),
                ..Counters::default()
            }),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            get: load(&c.get),
            get_range: load(&c.get_range),
            head: load(&c.head),
            put: load(&c.put),
            put_if_absent: load(&c.put_if_absent),
            delete: load(&c.delete),
            list: load(&c.list),
            touch: load(&c.touch),
            uploads: load(&c.uploads),
            bytes_read: load(&c.bytes_read),
            bytes_written: load(&c.bytes_written),
        }
    }

    /// Sets every count to zero and empties the log. Requests in flight while resetting
    /// may be counted on either side.
    pub fn reset(&self) {
        let c = &self.counters;
        for a in [
            &c.get,
            &c.get_range,
            &c.head,
            &c.put,
            &c.put_if_absent,
            &c.delete,
            &c.list,
            &c.touch,
            &c.uploads,
            &c.bytes_read,
            &c.bytes_written,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        if let Some(log) = &c.log {
            log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// The requests logged since the last reset, in the order they were made; empty
    /// unless built [`with_log`](Self::with_log).
    pub fn log(&self) -> Vec<LoggedRequest> {
        match &self.counters.log {
            Some(log) => log.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }
}

#[async_trait]
impl<B: ObjectBackend + ?Sized> ObjectBackend for CountingBackend<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        self.counters.count(RequestKind::Get, key.as_str());
        let data = self.inner.get(key).await?;
        self.counters.read(data.len());
        Ok(data)
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        self.counters.count(RequestKind::GetRange, key.as_str());
        let data = self.inner.get_range(key, range).await?;
        self.counters.read(data.len());
        Ok(data)
    }

    async fn now(&self) -> Result<std::time::SystemTime> {
        self.inner.now().await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.counters.count(RequestKind::Head, key.as_str());
        self.inner.head(key).await
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.counters.count(RequestKind::Put, key.as_str());
        let len = data.len();
        self.inner.put(key, data).await?;
        self.counters.written(len);
        Ok(())
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        self.counters.count(RequestKind::PutIfAbsent, key.as_str());
        let len = data.len();
        let outcome = self.inner.put_if_absent(key, data).await?;
        if outcome == PutOutcome::Created {
            self.counters.written(len);
        }
        Ok(outcome)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.counters.count(RequestKind::Delete, key.as_str());
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.counters.count(RequestKind::List, prefix);
        self.inner.list(prefix).await
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.counters.count(RequestKind::Touch, key.as_str());
        self.inner.touch(key).await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        self.counters.count(RequestKind::Upload, "");
        let inner = self.inner.begin_upload().await?;
        Ok(Box::new(CountingUpload {
            inner,
            counters: self.counters.clone(),
        }))
    }
}

/// An upload whose written bytes are counted.
struct CountingUpload {
    inner: Box<dyn Upload>,
    counters: Arc<Counters>,
}

#[async_trait]
impl Upload for CountingUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let len = chunk.len();
        self.inner.write(chunk).await?;
        self.counters.written(len);
        Ok(())
    }

    async fn publish(self: Box<Self>, key: &ObjectKey) -> Result<()> {
        self.counters.count(RequestKind::Publish, key.as_str());
        self.inner.publish(key).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[tokio::test]
    async fn counts_each_kind_and_bytes() {
        let counting = CountingBackend::with_log(MemoryBackend::new());
        let key = ObjectKey::new("a/b").unwrap();
        counting
            .put(&key, Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            counting
                .put_if_absent(&key, Bytes::from_static(b"other"))
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(counting.get(&key).await.unwrap(), "hello");
        assert_eq!(counting.get_range(&key, 1..3).await.unwrap(), "el");
        assert!(counting.head(&key).await.unwrap().is_some());
        assert_eq!(counting.list("a/").await.unwrap().len(), 1);
        counting.touch(&key).await.unwrap();
        let mut upload = counting.begin_upload().await.unwrap();
        upload.write(Bytes::from_static(b"xyz")).await.unwrap();
        upload
            .publish(&ObjectKey::new("a/c").unwrap())
            .await
            .unwrap();
        counting.delete(&key).await.unwrap();
        assert!(counting.get(&key).await.is_err());

        let counts = counting.snapshot();
        assert_eq!(
            counts,
            RequestCounts {
                get: 2,
                get_range: 1,
                head: 1,
                put: 1,
                put_if_absent: 1,
                delete: 1,
                list: 1,
                touch: 1,
                uploads: 1,
                bytes_read: 7,
                bytes_written: 8,
            }
        );
        assert_eq!(counts.total(), 10);
        let log: Vec<String> = counting.log().iter().map(|r| r.to_string()).collect();
        assert_eq!(log[0], "put a/b");
        assert!(log.contains(&"publish a/c".to_owned()));

        let before = counting.snapshot();
        counting.head(&key).await.unwrap();
        assert_eq!(counting.snapshot().since(&before).head, 1);
        counting.reset();
        assert_eq!(counting.snapshot(), RequestCounts::default());
        assert!(counting.log().is_empty());
    }

    #[tokio::test]
    async fn wraps_a_shared_dyn_backend() {
        let shared: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
        let counting: CountingBackend = CountingBackend::new(shared);
        counting
            .put(&ObjectKey::new("k").unwrap(), Bytes::new())
            .await
            .unwrap();
        assert_eq!(counting.snapshot().put, 1);
    }
}
