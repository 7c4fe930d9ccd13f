//! segstore over an eventually consistent store: the `EventualBackend` simulator hides new
//! objects from other clients for a while (stale negative `HEAD`/`GET` answers), delays
//! new manifest versions longer, and serves stale listings. Writers and readers run
//! concurrently, each on its own simulator session (its own "machine"), over memory, local
//! disk and S3 (moto). The claims checked:
//!
//! - no commit is lost: every acknowledged write is there at the end, read through a
//!   fresh handle on the real (consistent) backend, and the history has exactly one
//!   version per write;
//! - no torn or mixed data: every read returns exactly the bytes of one write to that path;
//! - a writer reads its own writes at once;
//! - a stale probe only delays visibility: a reader's view moves forward, never back, and
//!   catches up once the windows pass.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::eventual::{EventualBackend, EventualConfig};
use segstore::backend::local::LocalBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::{
    Error, Freshness, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions,
};
use support::moto;

const COLLECTION: &str = "ec";
/// Paths per writer; each is rewritten several times, so versions of one path differ.
const FILES: usize = 3;

fn path(writer: usize, file: usize) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        format!("w{writer}"),
        format!("f{file}"),
    )
}

/// The bytes of writer `w`'s `k`-th write (to file `k % FILES`): a tag repeated to a size
/// that is inline (under 4 KiB) or a blob, depending on `k`.
fn content(writer: usize, k: usize) -> Bytes {
    let tag = format!("<w{writer} k{k}>");
    let len = [40, 6_000, 70_000][k % 3];
    Bytes::from(tag.bytes().cycle().take(len).collect::<Vec<u8>>())
}

/// Which write `data` is, if it is exactly the bytes of one write of `writer` to `file`.
fn which_write(writer: usize, file: usize, data: &[u8], writes: usize) -> Option<usize> {
    (0..writes)
        .filter(|k| k % FILES == file)
        .find(|k| content(writer, *k) == data)
}

/// A store in strict read freshness: what lags here is the backend's, not the store's
/// own bound.
fn store_on(backend: impl ObjectBackend) -> Store {
    Store::new(
        Arc::new(backend),
        StoreOptions {
            read_freshness: Freshness::Strict,
            ..StoreOptions::default()
        },
    )
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    writers: usize,
    writes_per_writer: usize,
    readers: usize,
    config: EventualConfig,
}

/// Runs concurrent writers and readers, each on its own session of one simulator around
/// `base`, and checks every claim of the module docs. Returns how many reads saw data.
async fn concurrent_writers_and_readers(base: Arc<dyn ObjectBackend>, s: Scenario) -> usize {
    let simulator: EventualBackend = EventualBackend::new(base.clone(), s.config);
    let done = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::new();
    for w in 0..s.writers {
        let store = store_on(simulator.session());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..s.writes_per_writer {
                let p = path(w, k % FILES);
                let data = content(w, k);
                let info = store.write_bytes(&p, data.clone()).await.unwrap();
                assert!(info.created, "writer {w} write {k} made no version");
                acked.push((k, info.version));
                // Read-your-writes, through the writer's own handle, at once.
                let got = store.read_bytes(&p).await.unwrap();
                assert_eq!(got, data, "writer {w} does not read its write {k}");
                assert_eq!(
                    store.read_range(&p, 5..25).await.unwrap(),
                    data.slice(5..25)
                );
                assert!(store.head(COLLECTION).await.unwrap().version >= info.version);
            }
            acked
        }));
    }

    let mut readers = Vec::new();
    for r in 0..s.readers {
        let store = store_on(simulator.session());
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            // The newest write seen per path; a reader's view never moves back.
            let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
            let mut last_version = 0;
            let mut reads = 0usize;
            let mut i = r;
            while !done.load(Ordering::Relaxed) {
                i += 1;
                let (w, f) = (i % s.writers, (i / s.writers) % FILES);
                let version = store.head(COLLECTION).await.unwrap().version;
                assert!(version >= last_version, "reader {r}: head went back");
                last_version = version;
                match SegmentStorage::read(&store, &path(w, f)).await {
                    Ok(data) => {
                        reads += 1;
                        let k =
                            which_write(w, f, &data, s.writes_per_writer).unwrap_or_else(|| {
                                panic!("reader {r} read bytes no write of w{w}/f{f} holds")
                            });
                        if let Some(before) = seen.insert((w, f), k) {
                            assert!(k >= before, "reader {r}: w{w}/f{f} went back {before}->{k}");
                        }
                    }
                    Err(Error::NotFound { .. }) => assert!(
                        !seen.contains_key(&(w, f)),
                        "reader {r}: w{w}/f{f} vanished after being seen"
                    ),
                    Err(e) => panic!("reader {r}: {e}"),
                }
                tokio::task::yield_now().await;
            }
            reads
        }));
    }

    let mut acked: BTreeMap<usize, Vec<(usize, u64)>> = BTreeMap::new();
    for (w, writer) in writers.into_iter().enumerate() {
        acked.insert(w, writer.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }

    // Staleness really happened (the simulator is not a pass-through here).
    let stats = simulator.stats();
    eprintln!("{} reads saw data; simulator: {stats:?}", reads);
    assert!(
        stats.stale_heads + stats.stale_gets > 0,
        "no stale answers: {stats:?}"
    );

    // No commit lost, checked on the consistent backend through a fresh handle: one
    // version per acknowledged write, each path holds its writer's last write to it, and
    // every acknowledged version holds exactly the write acknowledged with it.
    let fresh = Store::new(base.clone(), StoreOptions::default());
    let total = s.writers * s.writes_per_writer;
    assert_eq!(
        acked.values().map(Vec::len).sum::<usize>(),
        total,
        "every write was acknowledged"
    );
    let head = fresh.head(COLLECTION).await.unwrap();
    assert_eq!(head.version as usize, total, "one version per write");
    for (w, writes) in &acked {
        for f in 0..FILES {
            let last = (0..s.writes_per_writer).rfind(|k| k % FILES == f).unwrap();
            assert_eq!(
                fresh.read_bytes(&path(*w, f)).await.unwrap(),
                content(*w, last),
                "final content of w{w}/f{f}"
            );
        }
        for (k, version) in writes {
            let view = fresh
                .view(COLLECTION, &segstore::Target::Version(*version))
                .await
                .unwrap();
            assert_eq!(
                view.read_bytes(&path(*w, k % FILES)).await.unwrap(),
                content(*w, *k),
                "version {version} holds writer {w}'s write {k}"
            );
        }
    }
    let listed = SegmentStorage::list(
        &fresh,
        &StoragePath::unsharded(COLLECTION, StorageBackend::Tantivy, ""),
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), s.writers * FILES);
    reads
}

/// A stale probe only delays: a reader on another session sees an older version until the
/// window passes, then exactly the latest one; a write made from the stale view is rebased
/// and loses nothing; a fresh client (stale hint, stale listing) catches up too.
async fn stale_probes_only_delay(base: Arc<dyn ObjectBackend>, window: Duration) {
    let config = EventualConfig {
        object_window: window / 4,
        manifest_window: window,
        list_window: window,
    };
    let a_backend: EventualBackend = EventualBackend::new(base.clone(), config);
    let b_backend = a_backend.session();
    let (a, b) = (store_on(a_backend.clone()), store_on(b_backend));
    let p = StoragePath::unsharded(COLLECTION, StorageBackend::Tantivy, "meta.json");
    let q = StoragePath::unsharded(COLLECTION, StorageBackend::Tantivy, "seg.idx");

    assert_eq!(a.write_bytes(&p, "one".into()).await.unwrap().version, 1);
    assert_eq!(a.write_bytes(&p, "two".into()).await.unwrap().version, 2);
    // b is inside the window: it still sees the empty collection, without an error.
    assert_eq!(b.head(COLLECTION).await.unwrap().version, 0);
    assert!(!SegmentStorage::exists(&b, &p).await.unwrap());
    assert!(matches!(
        SegmentStorage::read(&b, &p).await,
        Err(Error::NotFound { .. })
    ));
    // A write from b's stale view is rebased onto version 2: nothing is lost.
    let big = Bytes::from(vec![7u8; 10_000]);
    assert_eq!(b.write_bytes(&q, big.clone()).await.unwrap().version, 3);
    assert_eq!(b.read_bytes(&p).await.unwrap(), "two");
    assert_eq!(b.read_bytes(&q).await.unwrap(), big);
    // a, still inside the window for b's commit, keeps its own view: version 2.
    assert_eq!(a.head(COLLECTION).await.unwrap().version, 2);
    assert_eq!(a.read_bytes(&p).await.unwrap(), "two");
    let stats = a_backend.stats();
    assert!(stats.stale_heads >= 2, "{stats:?}");

    // A brand-new client inside the window: the listing is stale too.
    let c = store_on(a_backend.session());
    assert!(c.head(COLLECTION).await.unwrap().version < 3);

    tokio::time::sleep(window + window / 2).await;
    for store in [&a, &b, &c] {
        assert_eq!(store.head(COLLECTION).await.unwrap().version, 3);
        assert_eq!(store.read_bytes(&p).await.unwrap(), "two");
        assert_eq!(store.read_bytes(&q).await.unwrap(), big);
    }
    let fresh = store_on(a_backend.session());
    assert_eq!(fresh.head(COLLECTION).await.unwrap().version, 3);
}

const MEMORY_SCENARIO: Scenario = Scenario {
    writers: 3,
    writes_per_writer: 24,
    readers: 2,
    config: EventualConfig {
        object_window: Duration::from_millis(20),
        manifest_window: Duration::from_millis(80),
        list_window: Duration::from_millis(200),
    },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_writers_and_readers() {
    let reads =
        concurrent_writers_and_readers(Arc::new(MemoryBackend::new()), MEMORY_SCENARIO).await;
    assert!(reads > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalBackend::open(dir.path()).await.unwrap();
    let reads = concurrent_writers_and_readers(Arc::new(local), MEMORY_SCENARIO).await;
    assert!(reads > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_writers_and_readers() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let s3 = S3Backend::connect(config).await.unwrap();
    let scenario = Scenario {
        writers: 3,
        writes_per_writer: 9,
        readers: 2,
        config: EventualConfig {
            object_window: Duration::from_millis(100),
            manifest_window: Duration::from_millis(400),
            list_window: Duration::from_millis(1000),
        },
    };
    let reads = concurrent_writers_and_readers(Arc::new(s3), scenario).await;
    assert!(reads > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stale_probes_only_delay() {
    stale_probes_only_delay(Arc::new(MemoryBackend::new()), Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stale_probes_only_delay() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let s3 = S3Backend::connect(config).await.unwrap();
    stale_probes_only_delay(Arc::new(s3), Duration::from_secs(2)).await;
}
