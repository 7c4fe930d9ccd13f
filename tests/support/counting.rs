//! A test-local `ObjectBackend` wrapper that counts reads per key and the bytes they
//! return, with an optional delay on whole-object reads (to line up concurrent misses).
#![allow(dead_code)]

use segstore::backend::LayerHooks;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use segstore::backend::{ByteChunks, ObjectBackend, ObjectMeta, PutOutcome, Upload};
use segstore::keys::ObjectKey;
use segstore::Result;

/// Reads of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// Whole-object reads (`get`, `get_stream`, `map`).
    pub gets: u64,
    /// Range reads.
    pub ranges: u64,
    /// Bytes returned by both.
    pub bytes: u64,
}

/// Counts every read that reaches `inner`.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectBackend>,
    reads: Arc<Mutex<HashMap<String, Reads>>>,
    get_delay: Duration,
}

impl Counting {
    pub fn new(inner: Arc<dyn ObjectBackend>) -> Arc<Self> {
        Self::with_delay(inner, Duration::ZERO)
    }

    pub fn with_delay(inner: Arc<dyn ObjectBackend>, get_delay: Duration) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            reads: Arc::new(Mutex::new(HashMap::new())),
            get_delay,
        })
    }

    fn record(&self, key: &ObjectKey, whole: bool, bytes: usize) {
        let mut reads = self.reads.lock().unwrap();
        let r = reads.entry(key.as_str().to_owned()).or_default();
        if whole {
            r.gets += 1;
        } else {
            r.ranges += 1;
        }
        r.bytes += bytes as u64;
    }

    /// Reads of `key` so far.
    pub fn of(&self, key: &ObjectKey) -> Reads {
        self.reads
            .lock()
            .unwrap()
            .get(key.as_str())
            .copied()
            .unwrap_or_default()
    }

    /// Reads of every key read so far.
    pub fn all(&self) -> Vec<(String, Reads)> {
        let reads = self.reads.lock().unwrap();
        reads.iter().map(|(k, r)| (k.clone(), *r)).collect()
    }

    /// Bytes read over all keys.
    pub fn total_bytes(&self) -> u64 {
        self.reads.lock().unwrap().values().map(|r| r.bytes).sum()
    }

    pub fn reset(&self) {
        self.reads.lock().unwrap().clear();
    }
}

#[async_trait]
impl ObjectBackend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        if !self.get_delay.is_zero() {
            tokio::time::sleep(self.get_delay).await;
        }
        let data = self.inner.get(key).await?;
        self.record(key, true, data.len());
        Ok(data)
    }

    async fn get_stream(&self, key: &ObjectKey) -> Result<ByteChunks> {
        if !self.get_delay.is_zero() {
            tokio::time::sleep(self.get_delay).await;
        }
        let chunks = self.inner.get_stream(key).await?;
        self.record(key, true, 0);
        // Bytes are counted as they arrive: a reader that stops early pays less.
        let (reads, key) = (self.reads.clone(), key.clone());
        Ok(Box::pin(chunks.inspect(move |c| {
            if let Ok(c) = c {
                let mut reads = reads.lock().unwrap();
                reads.entry(key.as_str().to_owned()).or_default().bytes += c.len() as u64;
            }
        })))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        let data = self.inner.get_range(key, range).await?;
        self.record(key, false, data.len());
        Ok(data)
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        self.inner.put_if_absent(key, data).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.inner.touch(key).await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        self.inner.begin_upload().await
    }

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl LayerHooks for Counting {
    fn cheap_staging(&self) -> bool {
        self.inner.cheap_staging()
    }

    fn wants_outboards(&self) -> bool {
        self.inner.wants_outboards()
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let data = self.inner.map(key).await?;
        if let Some(d) = &data {
            self.record(key, true, d.len());
        }
        Ok(data)
    }
}
