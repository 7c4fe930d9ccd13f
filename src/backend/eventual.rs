//! [`EventualBackend`]: an eventual-consistency simulator in front of any backend. Test
//! support: it shows that segstore stays correct on object stores (or caches and proxies
//! in front of them) that answer with stale data for a while.
//!
//! # The model
//!
//! All handles made from one simulator ([`EventualBackend::new`], then
//! [`session`](EventualBackend::session)) share one "world": the wrapped backend plus the
//! time each key was first written through the simulator. Each session plays one client
//! (one process or machine); a [`Store`](crate::Store) is built on one session.
//!
//! - **Stale negative probes.** For [`EventualConfig::object_window`] after a key was
//!   created, `head` answers `None` and `get`/`get_range` answer
//!   [`NotFound`](crate::Error::NotFound) to every *other* session, as a negatively cached
//!   lookup would.
//! - **Delayed manifest versions.** Keys under `manifests/` stay invisible to other
//!   sessions for [`EventualConfig::manifest_window`] instead, so readers and writers keep
//!   seeing an older version as the latest one for a while.
//! - **Stale listings.** `list` omits every key created less than
//!   [`EventualConfig::list_window`] ago, for every session (listings lagged for everyone).
//! - **Sessions read their own writes.** A key a session created (with `put`,
//!   `put_if_absent` or an upload) is visible to that session at once.
//! - **A lost race brings a session up to date.** A create-only write that answers
//!   [`PutOutcome::AlreadyExists`] (or fails) tells the session the key exists: from then
//!   on it sees that key and every key created until that moment (causal consistency: a
//!   manifest version it learned of comes with the tree nodes and blobs it names).
//! - **Creations in flight are invisible.** While a `put_if_absent` is in flight its key
//!   is hidden from other sessions, and its window starts when the creation is decided, so
//!   a manifest version never shows before the nodes written ahead of it.
//! - **Visibility respects creation order.** `manifest_window` is at least
//!   `object_window` (raised if configured lower), so a manifest never becomes visible
//!   before the blobs and tree nodes it names, which were created before it. Once a key is
//!   visible to a session it stays visible (windows only ever run out).
//! - **Only creations are delayed.** A `put` or upload to a key that already existed is
//!   visible at once (the simulator asks the wrapped backend before writing); the bytes
//!   are those of one whole write.
//! - **Commit points stay atomic.** `put_if_absent` always goes straight to the wrapped
//!   backend: S3's conditional writes are strongly consistent, and without that no
//!   protocol could prevent lost updates.
//! - **No torn or mixed data.** The simulator never alters bytes: a visible key returns
//!   exactly what the wrapped backend holds, an invisible one returns nothing. Overwrites,
//!   deletes and `touch` pass straight through.
//!
//! Keys that existed before the simulator saw them written are always visible.
//! [`stats`](EventualBackend::stats) counts the stale answers given, so a test can check
//! that staleness really happened.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::{self as clock_mod, Stamp};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// How stale an [`EventualBackend`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventualConfig {
    /// How long a newly created key (other than a manifest version) stays invisible to
    /// `head` and `get` of other sessions.
    pub object_window: Duration,
    /// How long a newly created key under `manifests/` stays invisible to other sessions.
    /// Raised to `object_window` if lower.
    pub manifest_window: Duration,
    /// How long a newly created key is left out of every session's listings.
    pub list_window: Duration,
}

impl EventualConfig {
    /// The same window for everything.
    pub fn uniform(window: Duration) -> Self {
        EventualConfig {
            object_window: window,
            manifest_window: window,
            list_window: window,
        }
    }

    /// Consistent: no window at all (the simulator only passes through).
    pub fn consistent() -> Self {
        Self::uniform(Duration::ZERO)
    }
}

impl Default for EventualConfig {
    /// 50 ms for objects, 200 ms for manifest versions, 500 ms for listings.
    fn default() -> Self {
        EventualConfig {
            object_window: Duration::from_millis(50),
            manifest_window: Duration::from_millis(200),
            list_window: Duration::from_millis(500),
        }
    }
}

/// Stale answers an [`EventualBackend`] gave, over all its sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventualStats {
    /// `head` calls answered `None` for a key that existed.
    pub stale_heads: u64,
    /// `get`/`get_range` calls answered `NotFound` for a key that existed.
    pub stale_gets: u64,
    /// Keys left out of listings.
    pub hidden_from_lists: u64,
}

/// What the simulator knows of a key's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    /// A `put_if_absent` of it is in flight: hidden from every other session.
    Pending,
    /// Created at this instant: the windows run from here.
    At(Stamp),
}

#[derive(Debug)]
struct World {
    config: EventualConfig,
    /// When each key was first written through the simulator.
    created: Mutex<HashMap<String, Created>>,
    stale_heads: AtomicU64,
    stale_gets: AtomicU64,
    hidden_from_lists: AtomicU64,
    next_session: AtomicU64,
}

impl World {
    fn created(&self) -> MutexGuard<'_, HashMap<String, Created>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `key` as created now (or as being created), unless it was recorded before.
    fn record(&self, key: &str, state: Created) {
        self.created().entry(key.to_owned()).or_insert(state);
    }

    /// A creation in flight was decided: its window starts now (if nobody settled it yet).
    fn settle(&self, key: &str) {
        if let Some(state) = self.created().get_mut(key) {
            if *state == Created::Pending {
                *state = Created::At(Stamp::now(clock_mod::system().as_ref()));
            }
        }
    }

    fn window_of(&self, key: &str) -> Duration {
        if key.starts_with("manifests/") {
            self.config.manifest_window.max(self.config.object_window)
        } else {
            self.config.object_window
        }
    }
}

/// An eventual-consistency simulator around a backend; see the [module docs](self) for
/// the model. Clones are the same session; [`session`](Self::session) makes another
/// client of the same world.
#[derive(Debug)]
pub struct EventualBackend<B: ?Sized = dyn ObjectBackend> {
    inner: Arc<B>,
    world: Arc<World>,
    session: Arc<Session>,
}

impl<B: ?Sized> Clone for EventualBackend<B> {
    fn clone(&self) -> Self {
        EventualBackend {
            inner: self.inner.clone(),
            world: self.world.clone(),
            session: self.session.clone(),
        }
    }
}

#[derive(Debug)]
struct Session {
    id: u64,
    /// Keys this session created.
    known: Mutex<HashSet<String>>,
    /// Every key created at or before this instant is visible to the session: it learned
    /// of a key created then.
    horizon: Mutex<Option<Stamp>>,
}

impl Session {
    fn new(id: u64) -> Arc<Self> {
        Arc::new(Session {
            id,
            known: Mutex::new(HashSet::new()),
            horizon: Mutex::new(None),
        })
    }

    fn known(&self) -> MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn horizon(&self) -> MutexGuard<'_, Option<Stamp>> {
        self.horizon.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<B: ObjectBackend + ?Sized> EventualBackend<B> {
    /// A simulator around `inner` (a backend, or an `Arc` of one), and its first session.
    pub fn new(inner: impl Into<Arc<B>>, config: EventualConfig) -> Self {
        let world = Arc::new(World {
            config,
            created: Mutex::new(HashMap::new()),
            stale_heads: AtomicU64::new(0),
            stale_gets: AtomicU64::new(0),
            hidden_from_lists: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
        });
        EventualBackend {
            inner: inner.into(),
            world,
            session: Session::new(0),
        }
    }

    /// Another client of the same world, with its own view: it sees nothing of what other
    /// sessions wrote until the windows pass.
    pub fn session(&self) -> Self {
        EventualBackend {
            inner: self.inner.clone(),
            world: self.world.clone(),
            session: Session::new(self.world.next_session.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// This session's number (0 for the first).
    pub fn session_id(&self) -> u64 {
        self.session.id
    }

    /// The wrapped backend, which is always up to date.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The configuration.
    pub fn config(&self) -> EventualConfig {
        self.world.config
    }

    /// Stale answers given so far by every session.
    pub fn stats(&self) -> EventualStats {
        EventualStats {
            stale_heads: self.world.stale_heads.load(Ordering::Relaxed),
            stale_gets: self.world.stale_gets.load(Ordering::Relaxed),
            hidden_from_lists: self.world.hidden_from_lists.load(Ordering::Relaxed),
        }
    }

    /// The session learned that `key` exists now: it sees it and everything created so
    /// far.
    fn learn(&self, key: &str) {
        self.session.known().insert(key.to_owned());
        *self.session.horizon() = Some(Stamp::now(clock_mod::system().as_ref()));
    }

    /// Whether `key` (which may or may not exist) is visible to this session now.
    fn visible(&self, key: &str) -> bool {
        let state = self.world.created().get(key).copied();
        let created = match state {
            None => return true,
            Some(Created::Pending) => None,
            Some(Created::At(t)) => Some(t),
        };
        if let Some(created) = created {
            if created.elapsed(clock_mod::system().as_ref()) >= self.world.window_of(key) {
                return true;
            }
            if self.session.horizon().is_some_and(|h| created <= h) {
                return true;
            }
        }
        self.session.known().contains(key)
    }

    /// Before a plain write: if `key` is new, starts its window and makes it the
    /// session's own.
    async fn before_write(&self, key: &ObjectKey) -> Result<()> {
        if self.inner.head(key).await?.is_none() {
            self.world.record(
                key.as_str(),
                Created::At(Stamp::now(clock_mod::system().as_ref())),
            );
            self.session.known().insert(key.as_str().to_owned());
        }
        Ok(())
    }
}

#[async_trait]
impl<B: ObjectBackend + ?Sized> ObjectBackend for EventualBackend<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        if !self.visible(key.as_str()) {
            // Only stale if it really exists; otherwise the answer is simply true.
            if self.inner.head(key).await?.is_some() {
                self.world.stale_gets.fetch_add(1, Ordering::Relaxed);
            }
            return Err(Error::not_found(key));
        }
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        if !self.visible(key.as_str()) {
            if self.inner.head(key).await?.is_some() {
                self.world.stale_gets.fetch_add(1, Ordering::Relaxed);
            }
            return Err(Error::not_found(key));
        }
        self.inner.get_range(key, range).await
    }

    async fn now(&self) -> Result<std::time::SystemTime> {
        self.inner.now().await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let found = self.inner.head(key).await?;
        if found.is_some() && !self.visible(key.as_str()) {
            self.world.stale_heads.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(found)
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.before_write(key).await?;
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        // A key that exists already (say, from before the simulator) gets no window.
        if self.inner.head(key).await?.is_none() {
            // Hidden while in flight, so nobody sees it before its window starts.
            self.world.record(key.as_str(), Created::Pending);
        }
        let outcome = self.inner.put_if_absent(key, data).await;
        // Whoever hears first how the creation went starts its window.
        self.world.settle(key.as_str());
        match outcome {
            Ok(PutOutcome::Created) => {
                self.session.known().insert(key.as_str().to_owned());
            }
            // The authoritative answer says it exists, so the session now knows (and the
            // same goes for an error, after which the caller reads the key back to learn
            // whether its own write landed: it must see the truth).
            _ => self.learn(key.as_str()),
        }
        outcome
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut listed = self.inner.list(prefix).await?;
        let window = self.world.config.list_window;
        let before = listed.len();
        {
            let created = self.world.created();
            listed.retain(|m| match created.get(m.key.as_str()) {
                None => true,
                Some(Created::Pending) => false,
                Some(Created::At(t)) => t.elapsed(clock_mod::system().as_ref()) >= window,
            });
        }
        self.world
            .hidden_from_lists
            .fetch_add((before - listed.len()) as u64, Ordering::Relaxed);
        Ok(listed)
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.inner.touch(key).await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        let inner = self.inner.begin_upload().await?;
        Ok(Box::new(EventualUpload {
            inner,
            simulator: self.clone(),
        }))
    }
}

/// An upload whose published key, if new, is recorded as created when it is published.
struct EventualUpload<B: ?Sized> {
    inner: Box<dyn Upload>,
    simulator: EventualBackend<B>,
}

#[async_trait]
impl<B: ObjectBackend + ?Sized> Upload for EventualUpload<B> {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.inner.write(chunk).await
    }

    async fn publish(self: Box<Self>, key: &ObjectKey) -> Result<()> {
        self.simulator.before_write(key).await?;
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

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[tokio::test]
    async fn other_sessions_see_new_keys_only_after_the_window() {
        let config = EventualConfig {
            object_window: Duration::from_millis(100),
            manifest_window: Duration::from_millis(300),
            list_window: Duration::from_millis(100),
        };
        let writer = EventualBackend::new(MemoryBackend::new(), config);
        let reader = writer.session();
        writer
            .put(&key("blobs/x"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            writer
                .put_if_absent(&key("manifests/c/1"), Bytes::from_static(b"m"))
                .await
                .unwrap(),
            PutOutcome::Created
        );
        // The writer reads its own writes; the reader sees nothing yet, listings neither.
        assert_eq!(writer.get(&key("blobs/x")).await.unwrap(), "x");
        assert!(writer.head(&key("manifests/c/1")).await.unwrap().is_some());
        assert!(reader.head(&key("blobs/x")).await.unwrap().is_none());
        assert!(matches!(
            reader.get(&key("manifests/c/1")).await,
            Err(Error::NotFound { .. })
        ));
        assert!(writer.list("blobs/").await.unwrap().is_empty());
        // Missing keys are not stale answers.
        assert!(reader.head(&key("blobs/nope")).await.unwrap().is_none());
        assert_eq!(
            writer.stats(),
            EventualStats {
                stale_heads: 1,
                stale_gets: 1,
                hidden_from_lists: 1,
            }
        );

        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(reader.get(&key("blobs/x")).await.unwrap(), "x");
        assert_eq!(reader.list("blobs/").await.unwrap().len(), 1);
        assert!(reader.head(&key("manifests/c/1")).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reader.get(&key("manifests/c/1")).await.unwrap(), "m");
    }

    #[tokio::test]
    async fn create_only_writes_are_decided_by_the_real_backend() {
        let a = EventualBackend::new(
            MemoryBackend::new(),
            EventualConfig::uniform(Duration::from_secs(60)),
        );
        let b = a.session();
        let k = key("manifests/c/00000000000000000001");
        assert_eq!(
            a.put_if_absent(&k, Bytes::from_static(b"a")).await.unwrap(),
            PutOutcome::Created
        );
        // b cannot see it by probing, but cannot overwrite it either, and once told it
        // exists, b reads a's bytes.
        assert!(b.head(&k).await.unwrap().is_none());
        assert_eq!(
            b.put_if_absent(&k, Bytes::from_static(b"b")).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(b.get(&k).await.unwrap(), "a");
    }

    #[tokio::test]
    async fn losing_a_create_race_reveals_what_was_created_before() {
        let a = EventualBackend::new(
            MemoryBackend::new(),
            EventualConfig::uniform(Duration::from_secs(60)),
        );
        let b = a.session();
        a.put(&key("trees/t"), Bytes::from_static(b"t"))
            .await
            .unwrap();
        let m = key("manifests/c/1");
        a.put_if_absent(&m, Bytes::from_static(b"m")).await.unwrap();
        assert!(b.get(&key("trees/t")).await.is_err());
        assert_eq!(
            b.put_if_absent(&m, Bytes::from_static(b"other"))
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(b.get(&key("trees/t")).await.unwrap(), "t");
        assert_eq!(b.get(&m).await.unwrap(), "m");
        a.put(&key("blobs/later"), Bytes::from_static(b"l"))
            .await
            .unwrap();
        assert!(b.head(&key("blobs/later")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_older_than_the_simulator_and_overwrites_are_visible() {
        let memory = MemoryBackend::new();
        memory
            .put(&key("old"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        let a = EventualBackend::new(memory, EventualConfig::uniform(Duration::from_secs(60)));
        let b = a.session();
        assert_eq!(
            a.put_if_absent(&key("old"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        a.put(&key("old"), Bytes::from_static(b"2")).await.unwrap();
        assert_eq!(b.get(&key("old")).await.unwrap(), "2");
    }
}
