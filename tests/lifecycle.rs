//! Snapshots, time travel, restore, diff, retention, GC and verify.

#[path = "support/hooked.rs"]
mod hooked;
#[path = "support/progress.rs"]
mod progress;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::{
    keys, Error, LocalStorage, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions,
    Target,
};

fn p(seg: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Tantivy, "s", seg)
}

fn big(seed: u8) -> Bytes {
    Bytes::from(
        (0..10_000u32)
            .map(|i| (i as u8).wrapping_mul(7) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// Options with time scaled down so tests run in milliseconds.
fn fast_options() -> StoreOptions {
    StoreOptions {
        max_writer_stall: Duration::from_millis(150),
        freshen_after: Duration::from_millis(20),
        version_min_age: Duration::ZERO,
        gc_delete_delay: Duration::from_millis(40),
        clock_margin: Duration::from_millis(10),
        // A store these tests create gets the same settings (and a GC grace to match).
        shared: Some(segstore::identity::SharedSettings {
            gc_grace: Duration::from_millis(300),
            max_writer_stall: Duration::from_millis(150),
            freshen_after: Duration::from_millis(20),
            version_min_age: Duration::ZERO,
            gc_delete_delay: Duration::from_millis(40),
            gc_lease: segstore::store::DEFAULT_GC_LEASE,
            clock_margin: Duration::from_millis(10),
        }),
        ..StoreOptions::default()
    }
}

fn fast_gc(retention: RetentionPolicy) -> GcOptions {
    GcOptions {
        retention,
        grace: Duration::from_millis(300),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    }
}

fn memory_store() -> (MemoryBackend, Store) {
    let backend = MemoryBackend::new();
    let store = Store::new(Arc::new(backend.clone()), fast_options());
    (backend, store)
}

#[tokio::test]
async fn snapshots_pin_views_restore_and_diff() {
    let (_, store) = memory_store();
    store.write(&p("a"), b"a1").await.unwrap();
    store.write(&p("b"), &big(1)).await.unwrap();
    let snap = store
        .create_snapshot("c", "before", None, None)
        .await
        .unwrap();
    assert_eq!(snap.version, 2);
    assert!(matches!(
        store.create_snapshot("c", "before", None, None).await,
        Err(Error::Conflict { .. })
    ));

    store.write(&p("a"), b"a2").await.unwrap();
    store.delete(&p("b")).await.unwrap();
    store.write(&p("c"), b"c").await.unwrap();

    // Time travel: the view shows version 2, read-only.
    let view = store
        .view("c", &Target::Snapshot("before".into()))
        .await
        .unwrap();
    assert_eq!(view.version(), 2);
    assert_eq!(view.read(&p("a")).await.unwrap(), b"a1");
    assert_eq!(view.read(&p("b")).await.unwrap(), big(1).to_vec());
    assert!(!view.exists(&p("c")).await.unwrap());
    assert_eq!(view.list(&p("")).await.unwrap(), vec![p("a"), p("b")]);
    assert!(matches!(
        view.write(&p("x"), b"x").await,
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(
        view.delete(&p("a")).await,
        Err(Error::ReadOnly(_))
    ));

    // Diff between the snapshot and now.
    let head = store.head("c").await.unwrap().version;
    let diff = store
        .diff(
            "c",
            &Target::Snapshot("before".into()),
            &Target::Version(head),
        )
        .await
        .unwrap();
    let names =
        |l: &[segstore::DiffEntry]| l.iter().map(|e| e.path.segment.clone()).collect::<Vec<_>>();
    assert_eq!(names(&diff.added), ["c"]);
    assert_eq!(names(&diff.removed), ["b"]);
    assert_eq!(names(&diff.changed), ["a"]);

    // Restore makes a new version equal to the snapshot; history is kept.
    let restored = store
        .restore("c", &Target::Snapshot("before".into()))
        .await
        .unwrap();
    assert_eq!(restored.version, head + 1);
    assert_eq!(store.read(&p("a")).await.unwrap(), b"a1");
    assert_eq!(store.read(&p("b")).await.unwrap(), big(1).to_vec());
    assert!(!store.exists(&p("c")).await.unwrap());
    assert!(store
        .diff("c", &Target::Version(2), &Target::Version(restored.version))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.root_at("c", head).await.unwrap().version, head);

    // List and delete snapshots, with expiry.
    store
        .create_snapshot("c", "short", Some(1), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    let names: Vec<_> = store
        .snapshots("c")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["before", "short"]);
    store.delete_snapshot("c", "before").await.unwrap();
    assert!(matches!(
        store.snapshot("c", "before").await,
        Err(Error::NotFound { .. })
    ));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = store
        .apply_retention("c", &RetentionPolicy::keep_all(), false)
        .await
        .unwrap();
    assert_eq!(report.expired_snapshots, ["short"]);
    assert!(store.snapshots("c").await.unwrap().is_empty());
}

#[tokio::test]
async fn retention_keeps_last_n_and_pins_and_raises_the_boundary() {
    let (backend, store) = memory_store();
    for i in 0..10u8 {
        store.write(&p("f"), &[i; 5]).await.unwrap();
    }
    store
        .create_snapshot("c", "v3", Some(3), None)
        .await
        .unwrap();
    let policy = RetentionPolicy {
        keep_last: Some(4),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    };
    let dry = store.apply_retention("c", &policy, true).await.unwrap();
    assert_eq!(dry.deleted, vec![1, 2, 4, 5, 6]);
    assert_eq!(
        store.versions("c").await.unwrap().len(),
        10,
        "dry run deletes nothing"
    );
    let report = store.apply_retention("c", &policy, false).await.unwrap();
    assert_eq!(report.kept, vec![3, 7, 8, 9, 10]);
    assert_eq!(report.deleted, vec![1, 2, 4, 5, 6]);
    let left: Vec<u64> = store
        .versions("c")
        .await
        .unwrap()
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(left, vec![3, 7, 8, 9, 10]);
    let boundary = backend.get(&keys::boundary("c")).await.unwrap();
    assert_eq!(&boundary[..], b"7");
    // The pinned version still reads; a fresh handle still finds the latest.
    let view = store
        .view("c", &Target::Snapshot("v3".into()))
        .await
        .unwrap();
    assert_eq!(view.read(&p("f")).await.unwrap(), vec![2; 5]);
    let fresh = Store::new(Arc::new(backend.clone()), fast_options());
    assert_eq!(fresh.head("c").await.unwrap().version, 10);
    assert_eq!(fresh.read(&p("f")).await.unwrap(), vec![9; 5]);
}

/// Delegates to a memory backend, but holds the first create-only write of a manifest
/// version until released: a writer paused between choosing its version and committing.
#[derive(Debug, Clone)]
struct PausingBackend {
    inner: MemoryBackend,
    paused: Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
    reached: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl ObjectBackend for PausingBackend {
    fn name(&self) -> &'static str {
        "pausing"
    }
    async fn get(&self, key: &keys::ObjectKey) -> segstore::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &keys::ObjectKey,
        r: std::ops::Range<u64>,
    ) -> segstore::Result<Bytes> {
        self.inner.get_range(key, r).await
    }
    async fn head(
        &self,
        key: &keys::ObjectKey,
    ) -> segstore::Result<Option<segstore::backend::ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &keys::ObjectKey, data: Bytes) -> segstore::Result<()> {
        self.inner.put(key, data).await
    }
    async fn put_if_absent(
        &self,
        key: &keys::ObjectKey,
        data: Bytes,
    ) -> segstore::Result<segstore::backend::PutOutcome> {
        let gate = self.paused.lock().await.take();
        if let Some(gate) = gate {
            self.reached.notify_one();
            let _ = gate.await;
        }
        self.inner.put_if_absent(key, data).await
    }
    async fn delete(&self, key: &keys::ObjectKey) -> segstore::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> segstore::Result<Vec<segstore::backend::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn touch(&self, key: &keys::ObjectKey) -> segstore::Result<()> {
        self.inner.touch(key).await
    }
    async fn begin_upload(&self) -> segstore::Result<Box<dyn segstore::backend::Upload>> {
        self.inner.begin_upload().await
    }
}

#[tokio::test]
async fn a_stalled_writer_cannot_resurrect_a_deleted_version() {
    let memory = MemoryBackend::new();
    let other = Store::new(Arc::new(memory.clone()), fast_options());
    other.write(&p("base"), b"0").await.unwrap();
    let (release, gate) = tokio::sync::oneshot::channel();
    let pausing = PausingBackend {
        inner: memory.clone(),
        paused: Arc::new(tokio::sync::Mutex::new(Some(gate))),
        reached: Arc::new(tokio::sync::Notify::new()),
    };
    let reached = pausing.reached.clone();
    let stalled = Store::new(Arc::new(pausing), fast_options());
    let writer = tokio::spawn(async move {
        stalled.write(&p("mine"), b"m").await.unwrap();
        stalled
    });
    // The writer chose version 2 and is paused before creating it.
    reached.notified().await;
    for i in 0..10u8 {
        other.write(&p("theirs"), &[i]).await.unwrap();
    }
    let policy = RetentionPolicy {
        keep_last: Some(3),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    };
    let retention = other.apply_retention("c", &policy, false).await.unwrap();
    assert!(retention.deleted.contains(&2));
    // Resumed, its create of the deleted version 2 succeeds; the boundary check must undo
    // it and rebase the commit onto the real latest version.
    release.send(()).unwrap();
    let stalled = writer.await.unwrap();
    assert_eq!(stalled.head("c").await.unwrap().version, 12);
    let fresh = Store::new(Arc::new(memory.clone()), fast_options());
    assert_eq!(fresh.head("c").await.unwrap().version, 12);
    assert_eq!(fresh.read(&p("mine")).await.unwrap(), b"m");
    assert_eq!(fresh.read(&p("theirs")).await.unwrap(), vec![9]);
    assert!(
        fresh.root_at("c", 2).await.is_err(),
        "the resurrected version was removed"
    );
}

#[tokio::test]
async fn gc_removes_unreferenced_blobs_after_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open_with(dir.path(), fast_options())
        .await
        .unwrap();
    store.write(&p("keep"), &big(1)).await.unwrap();
    store.write(&p("gone"), &big(2)).await.unwrap();
    store.delete(&p("gone")).await.unwrap();
    let opts = fast_gc(RetentionPolicy {
        keep_last: Some(1),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    });
    // Too young: nothing deleted yet, but the orphan is counted.
    let young = store.gc(&opts).await.unwrap();
    assert_eq!(young.blobs_deleted, 0);
    assert!(young.young_unreferenced >= 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let dry = store
        .gc(&GcOptions {
            dry_run: true,
            ..opts.clone()
        })
        .await
        .unwrap();
    assert_eq!(dry.blobs_deleted, 1);
    assert_eq!(dry.bytes_freed, 10_000);
    assert_eq!(
        store.stats().await.unwrap().blobs,
        2,
        "dry run deleted nothing"
    );
    // The sweep reports every blob and tree node it looks at.
    let mut listed = (0, 0);
    for prefix in [keys::BLOBS_PREFIX, keys::TREES_PREFIX] {
        for meta in store.backend().list(prefix).await.unwrap() {
            listed = (listed.0 + 1, listed.1 + meta.size);
        }
    }
    let (callback, seen) = progress::recording();
    let report = store
        .gc(&GcOptions {
            progress: Some(callback),
            ..opts.clone()
        })
        .await
        .unwrap();
    let swept = progress::finished(&seen);
    assert_eq!((swept.items_total, swept.bytes_total), listed);
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(report.bytes_freed, 10_000);
    assert!(
        report.trees_deleted > 0,
        "old versions' tree nodes are garbage too"
    );
    assert!(report.failures.is_empty());
    assert_eq!(store.read(&p("keep")).await.unwrap(), big(1).to_vec());
    let verify = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verify.is_healthy(), "{verify:?}");
    assert!(verify.orphans.is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blobs, 1);
    assert_eq!(stats.collections[0].latest_version, 3);
    // Too short a grace is refused.
    let bad = GcOptions {
        grace: Duration::from_millis(10),
        ..opts
    };
    assert!(matches!(store.gc(&bad).await, Err(Error::InvalidConfig(_))));
}

#[tokio::test]
async fn a_writer_paused_until_gc_swept_its_blob_commits_nothing() {
    let (_, store) = memory_store();
    store.write(&p("base"), b"x").await.unwrap();
    let mut tx = store.transaction("c").await.unwrap();
    tx.put(&p("late"), big(9)).await.unwrap();
    // The writer pauses; GC runs and sweeps the staged, unreferenced blob.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let report = store
        .gc(&fast_gc(RetentionPolicy::keep_all()))
        .await
        .unwrap();
    assert_eq!(report.blobs_deleted, 1);
    match tx.commit().await {
        Err(Error::ReferenceGone { .. }) => {}
        other => panic!("expected ReferenceGone, got {other:?}"),
    }
    assert!(!store.exists(&p("late")).await.unwrap());
    assert!(store
        .verify(&VerifyOptions::default())
        .await
        .unwrap()
        .is_healthy());
}

#[tokio::test]
async fn verify_reports_each_kind_of_damage() {
    let (backend, store) = memory_store();
    store.write(&p("ok"), &big(1)).await.unwrap();
    store.write(&p("rotten"), &big(2)).await.unwrap();
    store.write(&p("lost"), &big(3)).await.unwrap();
    backend
        .put(
            &keys::blob(&segstore::BlobId::of(b"orphan")),
            Bytes::from_static(b"orphan"),
        )
        .await
        .unwrap();
    let rotten = store.metadata(&p("rotten")).await.unwrap().id;
    let lost = store.metadata(&p("lost")).await.unwrap().id;
    let mut damaged = big(2).to_vec();
    damaged[0] ^= 1;
    backend
        .put(&keys::blob(&rotten), Bytes::from(damaged))
        .await
        .unwrap();
    backend.delete(&keys::blob(&lost)).await.unwrap();
    let report = store.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(report.corrupt, vec![rotten]);
    assert_eq!(report.missing, vec![lost]);
    assert_eq!(report.orphans, vec![segstore::BlobId::of(b"orphan")]);
    assert!(!report.is_healthy());
    let sample = store
        .verify(&VerifyOptions {
            sample: Some(0.0),
            ..VerifyOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(sample.blobs_checked, 0);
    assert_eq!(sample.blobs_referenced, 3);
}

/// Writers (with many dedup hits), and GC with a tiny grace period, run concurrently over
/// many seeds. No blob that the latest version references may ever go missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_racing_writers_never_deletes_a_referenced_blob() {
    let seeds: u64 = std::env::var("SEGSTORE_GC_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for seed in 0..seeds {
        let (_, store) = memory_store();
        let mut writers = Vec::new();
        for w in 0..3u64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = BTreeMap::new();
                for i in 0..25u64 {
                    // Few distinct contents: most writes are dedup hits on old blobs.
                    let content = big(((seed + w * 3 + i * 7) % 4) as u8);
                    let path = p(&format!("w{w}-{}", i % 5));
                    store.write(&path, &content).await.unwrap();
                    acked.insert(path, content);
                    tokio::time::sleep(Duration::from_millis((seed + i) % 7 * 5)).await;
                }
                acked
            }));
        }
        let gc_store = store.clone();
        let gc = tokio::spawn(async move {
            let opts = fast_gc(RetentionPolicy {
                keep_last: Some(1),
                keep_within: None,
                ..RetentionPolicy::keep_all()
            });
            let mut deleted = 0;
            for _ in 0..8 {
                deleted += gc_store.gc(&opts).await.unwrap().blobs_deleted;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            deleted
        });
        let mut expected = BTreeMap::new();
        for w in writers {
            expected.extend(w.await.unwrap());
        }
        gc.await.unwrap();
        // Every path's last acknowledged content is readable and verified.
        for (path, content) in &expected {
            assert_eq!(
                store.read(path).await.unwrap(),
                content.to_vec(),
                "seed {seed} {path}"
            );
        }
        let report = store.verify(&VerifyOptions::default()).await.unwrap();
        assert!(report.is_healthy(), "seed {seed}: {report:?}");
    }
}

/// Bytes that count how many of their kind are alive, and the most ever at once.
#[derive(Debug, Clone, Default)]
struct Live {
    now: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

struct Tracked(Vec<u8>, Live);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl hooked::Hooks for Live {
    fn name(&self) -> &'static str {
        "live-bytes"
    }
    fn got(&self, key: &str, bytes: Bytes) -> Bytes {
        if !key.starts_with("blobs/") {
            return bytes;
        }
        use std::sync::atomic::Ordering::SeqCst;
        let alive = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(alive, SeqCst);
        Bytes::from_owner(Tracked(bytes.to_vec(), self.clone()))
    }
}

/// `verify` holds only the blobs it is reading (`parallelism` of them), never every blob
/// it has read: a store of multi-gigabyte segments must verify in bounded memory.
#[tokio::test]
async fn verify_holds_only_the_blobs_it_is_reading() {
    let live = Live::default();
    let backend = hooked::Hooked {
        inner: MemoryBackend::new(),
        hooks: live.clone(),
    };
    let store = Store::new(Arc::new(backend), StoreOptions::default());
    for i in 0..40u8 {
        let path = StoragePath::new("c", StorageBackend::Vector, "s", format!("f{i}"));
        store.write(&path, &vec![i; 10_000]).await.unwrap();
    }
    let report = store
        .verify(&VerifyOptions {
            parallelism: 4,
            ..VerifyOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(report.blobs_checked, 40);
    let most = live.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 4, "{most} blobs were held at once");
}
