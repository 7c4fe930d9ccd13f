//! A backend that passes every call to an inner one, with hooks a test overrides: the
//! delegation of the tests' interleaving, lagging and once-hooked wrappers, written once. The trait's
//! provided methods (streams, verified reads, maps) are not delegated: they reach the
//! inner backend through `get` and `get_range`, so the hooks see them too.
//!
//! Included with `#[path = "support/hooked.rs"] mod hooked;` by the tests that use it.
#![allow(dead_code)]

use segstore::backend::LayerHooks;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use segstore::backend::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use segstore::keys::ObjectKey;
use segstore::Result;

/// What a test changes about the calls that pass through a [`Hooked`] backend. Every hook
/// does nothing unless overridden.
#[async_trait]
pub trait Hooks: std::fmt::Debug + Send + Sync + 'static {
    /// The backend's name in errors and traces.
    fn name(&self) -> &'static str;

    /// Whether the store keeps BLAKE3 outboards on this backend.
    fn wants_outboards(&self) -> bool {
        false
    }

    /// Runs after a `get` of `key` returned (its answer is then handed on).
    async fn after_get(&self, _key: &str) {}

    /// What a `get` of `key` hands on instead of `bytes` (to watch how long they live).
    fn got(&self, _key: &str, bytes: Bytes) -> Bytes {
        bytes
    }

    /// Runs before a `put` of `key` reaches the inner backend.
    async fn before_put(&self, _key: &str) {}

    /// Runs before a `put_if_absent` of `key` reaches the inner backend.
    async fn before_create(&self, _key: &str) {}

    /// Runs after a listing of `prefix` was taken, before it is returned; may change it.
    async fn after_list(&self, _prefix: &str, _listed: &mut Result<Vec<ObjectMeta>>) {}

    /// Runs before a streamed upload begins (it becomes a blob when it finishes).
    async fn before_upload(&self) {}
}

/// `inner`, with `hooks` around its calls.
#[derive(Debug, Clone)]
pub struct Hooked<B, H> {
    pub inner: B,
    pub hooks: H,
}

#[async_trait]
impl<B: ObjectBackend, H: Hooks> ObjectBackend for Hooked<B, H> {
    fn name(&self) -> &'static str {
        self.hooks.name()
    }

    async fn now(&self) -> Result<SystemTime> {
        self.inner.now().await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        let got = self.inner.get(key).await;
        self.hooks.after_get(key.as_str()).await;
        got.map(|bytes| self.hooks.got(key.as_str(), bytes))
    }
    async fn get_range(&self, key: &ObjectKey, r: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(key, r).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.hooks.before_put(key.as_str()).await;
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        self.hooks.before_create(key.as_str()).await;
        self.inner.put_if_absent(key, data).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut listed = self.inner.list(prefix).await;
        self.hooks.after_list(prefix, &mut listed).await;
        listed
    }
    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.inner.touch(key).await
    }
    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        self.hooks.before_upload().await;
        self.inner.begin_upload().await
    }

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl<B: ObjectBackend, H: Hooks> LayerHooks for Hooked<B, H> {
    fn wants_outboards(&self) -> bool {
        self.hooks.wants_outboards()
    }
}
