//! Regression tests for the lifecycle races of the GC protocol: long GC runs, staged files
//! committed long after, restore against retention, copied entries, imports, dedup hits
//! and outboards, slow streams, stale listings, concurrent retention, settled unknowns.
//!
//! Every test runs on virtual time (a paused tokio runtime, `TokioClock` for the store and
//! the backend), with the production settings: grace 1 h, stall 30 min, freshen 10 min,
//! delete delay 30 s, margin 10 s. Interleavings are forced with hooks in the backend.

#[path = "support/hooked.rs"]
mod hooked;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use hooked::{Hooked, Hooks};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::{ObjectBackend, ObjectMeta};
use segstore::clock::{Clock, TokioClock};
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::keys;
use segstore::snapshot::Target;
use segstore::{
    Error, Op, Result, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions,
};

const HOUR: Duration = Duration::from_secs(3600);
const MIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// After a `get` of the key returned its bytes.
    AfterGet,
    /// After a `list` of the prefix was taken, before it is returned.
    AfterList,
    /// Before a `put` of the key.
    BeforePut,
    /// Before a `put_if_absent` of the key.
    BeforeCreate,
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Hooks that run once, the first time an operation meets a key prefix.
#[derive(Clone)]
struct Once {
    outboards: bool,
    hooks: Arc<Mutex<Vec<(When, String, Hook)>>>,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Once")
    }
}

/// A memory backend with [`Once`] hooks.
type OnceHooked = Hooked<MemoryBackend, Once>;

impl OnceHooked {
    fn new(clock: Arc<dyn Clock>, outboards: bool) -> Self {
        Hooked {
            inner: MemoryBackend::with_clock(clock),
            hooks: Once {
                outboards,
                hooks: Arc::default(),
            },
        }
    }

    fn on<F>(&self, when: When, prefix: &str, hook: F)
    where
        F: FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
    {
        self.hooks
            .hooks
            .lock()
            .unwrap()
            .push((when, prefix.to_owned(), Box::new(hook)));
    }
}

impl Once {
    async fn fire(&self, when: When, key: &str) {
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            let at = hooks
                .iter()
                .position(|(w, p, _)| *w == when && key.starts_with(p.as_str()));
            at.map(|i| hooks.remove(i).2)
        };
        if let Some(hook) = hook {
            hook().await;
        }
    }
}

#[async_trait]
impl Hooks for Once {
    fn name(&self) -> &'static str {
        "hooked"
    }
    fn wants_outboards(&self) -> bool {
        self.outboards
    }
    async fn after_get(&self, key: &str) {
        self.fire(When::AfterGet, key).await;
    }
    async fn before_put(&self, key: &str) {
        self.fire(When::BeforePut, key).await;
    }
    async fn before_create(&self, key: &str) {
        self.fire(When::BeforeCreate, key).await;
    }
    async fn after_list(&self, prefix: &str, _listed: &mut Result<Vec<ObjectMeta>>) {
        self.fire(When::AfterList, prefix).await;
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

/// The production settings, on `clock`.
fn options(clock: &Arc<dyn Clock>) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        ..StoreOptions::default()
    }
}

fn gc_options(retention: RetentionPolicy) -> GcOptions {
    GcOptions {
        retention,
        ..GcOptions::default()
    }
}

fn keep_latest() -> RetentionPolicy {
    RetentionPolicy {
        keep_last: Some(1),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    }
}

fn p(name: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Vector, "s0", name)
}

fn big(seed: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| seed ^ (i % 251) as u8).collect::<Vec<_>>())
}

/// A store over a fresh hooked backend, and a second store (another process) over it.
fn stores(outboards: bool) -> (OnceHooked, Store, Store) {
    let clock = clock();
    let backend = OnceHooked::new(clock.clone(), outboards);
    let writer = Store::new(Arc::new(backend.clone()), options(&clock));
    let gc = Store::new(Arc::new(backend.clone()), options(&clock));
    (backend, writer, gc)
}

async fn assert_healthy(store: &Store) {
    let report = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.is_healthy(), "verify found damage: {report:?}");
}

/// Scenario 1: a GC run that lasts longer than the grace period (a slow listing of a large
/// bucket) must not delete what a commit made during the run references.
#[tokio::test(start_paused = true)]
async fn a_gc_run_longer_than_grace_keeps_commits_made_during_it() {
    // A lease longer than the run: with the default (1 h, no longer than grace) a run past
    // its lease stops deleting, which alone would hide a wrong cutoff.
    let time = clock();
    let backend = OnceHooked::new(time.clone(), false);
    let long_lease = StoreOptions {
        gc_lease: 3 * HOUR,
        ..options(&time)
    };
    let writer = Store::new(Arc::new(backend.clone()), long_lease.clone());
    let gc = Store::new(Arc::new(backend.clone()), long_lease);
    writer.write(&p("old"), &big(1, 10_000)).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let w = writer.clone();
    backend.on(When::AfterList, keys::BLOBS_PREFIX, move || {
        Box::pin(async move {
            // A commit lands while GC lists blobs, then the listing takes two hours.
            w.write(&p("new"), &big(2, 10_000)).await.unwrap();
            tokio::time::sleep(2 * HOUR).await;
        })
    });
    gc.gc(&gc_options(keep_latest())).await.unwrap();
    let fresh = Store::new(Arc::new(backend.clone()), options(&clock()));
    assert_eq!(fresh.read(&p("new")).await.unwrap(), big(2, 10_000));
    assert_healthy(&fresh).await;
}

/// Scenario 2: files staged long before their commit (Tantivy terminates segment files
/// long before `meta.json`) are confirmed at commit: swept ones fail the commit with a
/// typed error instead of committing a dangling reference; surviving ones commit.
#[tokio::test(start_paused = true)]
async fn staged_files_committed_long_after_are_confirmed_or_refused() {
    let (_backend, writer, gc) = stores(false);
    writer.write(&p("base"), b"x").await.unwrap();
    let swept = writer.stage_bytes(big(3, 50_000)).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let report = gc.gc(&gc_options(keep_latest())).await.unwrap();
    assert_eq!(report.blobs_deleted, 1);
    let ops = vec![Op::Put {
        path: p("seg.idx"),
        entry: swept,
    }];
    match writer.commit_ops("c", ops, None).await {
        Err(Error::ReferenceGone { .. }) => {}
        other => panic!("expected ReferenceGone, got {other:?}"),
    }
    assert!(!writer.exists(&p("seg.idx")).await.unwrap());

    // Staged long ago but not swept: confirmed, committed, readable.
    let kept = writer.stage_bytes(big(4, 50_000)).await.unwrap();
    tokio::time::sleep(HOUR).await;
    let ops = vec![Op::Put {
        path: p("seg2.idx"),
        entry: kept,
    }];
    writer.commit_ops("c", ops, None).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    gc.gc(&gc_options(keep_latest())).await.unwrap();
    assert_eq!(writer.read(&p("seg2.idx")).await.unwrap(), big(4, 50_000));
    assert_healthy(&writer).await;
}

/// Scenario 3: restore reads an old root, then retention deletes that version and GC its
/// objects before the restore commits. The restore must not commit dangling references.
#[tokio::test(start_paused = true)]
async fn restore_racing_retention_and_gc_never_dangles() {
    let (backend, writer, gc) = stores(false);
    writer.write(&p("a"), &big(5, 20_000)).await.unwrap();
    writer.delete(&p("a")).await.unwrap();
    writer.write(&p("b"), &big(6, 20_000)).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let g = gc.clone();
    // Right after the restore has read version 1, retention and GC run to completion.
    backend.on(When::AfterGet, keys::manifest("c", 1).as_str(), move || {
        Box::pin(async move {
            let report = g.gc(&gc_options(keep_latest())).await.unwrap();
            assert!(report.versions_deleted >= 1 && report.blobs_deleted >= 1);
        })
    });
    let restored = writer.restore("c", &Target::Version(1)).await;
    assert!(
        matches!(restored, Err(Error::NotFound { .. })),
        "restore of a version deleted meanwhile: {restored:?}"
    );
    assert_eq!(writer.read(&p("b")).await.unwrap(), big(6, 20_000));
    assert_healthy(&writer).await;
}

/// Restore of a retained version that GC sweeps around stays whole, even when the old
/// version is deleted by retention right after the restore commits.
#[tokio::test(start_paused = true)]
async fn a_restored_version_keeps_its_objects_through_later_gc() {
    let (_backend, writer, gc) = stores(false);
    writer.write(&p("a"), &big(7, 20_000)).await.unwrap();
    writer.delete(&p("a")).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    writer.restore("c", &Target::Version(1)).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    gc.gc(&gc_options(keep_latest())).await.unwrap();
    assert_eq!(writer.read(&p("a")).await.unwrap(), big(7, 20_000));
    assert_healthy(&writer).await;
}

/// Scenario 4: `put_entry` of an entry copied from elsewhere is confirmed before commit.
#[tokio::test(start_paused = true)]
async fn put_entry_of_a_swept_blob_is_refused() {
    let (_backend, writer, gc) = stores(false);
    writer.write(&p("src"), &big(8, 30_000)).await.unwrap();
    let entry = writer.entry(&p("src")).await.unwrap().unwrap();
    writer.delete(&p("src")).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let report = gc.gc(&gc_options(keep_latest())).await.unwrap();
    assert_eq!(report.blobs_deleted, 1);
    let mut tx = writer.transaction("c").await.unwrap();
    tx.put_entry(&p("copy"), entry).unwrap();
    match tx.commit().await {
        Err(Error::ReferenceGone { .. }) => {}
        other => panic!("expected ReferenceGone, got {other:?}"),
    }
    assert_healthy(&writer).await;
}

/// Scenario 5: an import whose early blobs GC swept while it was copying fails cleanly
/// (nothing visible), and a failure while writing roots leaves no partial import.
#[tokio::test(start_paused = true)]
async fn an_import_outlived_by_gc_commits_nothing() {
    let clock = clock();
    let source = MemoryBackend::with_clock(clock.clone());
    let src = Store::new(Arc::new(source.clone()), options(&clock));
    src.write(&p("x"), &big(9, 40_000)).await.unwrap();
    src.write(&p("y"), &big(10, 40_000)).await.unwrap();

    let dest_backend = OnceHooked::new(clock.clone(), false);
    let dest = Store::new(Arc::new(dest_backend.clone()), options(&clock));
    let gc = Store::new(Arc::new(dest_backend.clone()), options(&clock));
    // The import's first root is about to be written two hours after its blobs were, and a
    // GC has just swept them.
    let g = gc.clone();
    dest_backend.on(When::BeforePut, keys::boundary("c").as_str(), move || {
        Box::pin(async move {
            tokio::time::sleep(2 * HOUR).await;
            let report = g.gc(&gc_options(keep_latest())).await.unwrap();
            assert!(report.blobs_deleted >= 2, "{report:?}");
        })
    });
    let imported = dest.import_from(Arc::new(source.clone()), "c").await;
    assert!(
        matches!(imported, Err(Error::ReferenceGone { .. })),
        "{imported:?}"
    );
    assert_eq!(dest.head("c").await.unwrap().version, 0);
    assert_healthy(&dest).await;
}

/// Scenario 5 (atomicity): a failure while the roots are written leaves nothing behind.
#[tokio::test(start_paused = true)]
async fn an_import_failing_among_its_roots_leaves_no_partial_import() {
    let clock = clock();
    let source = MemoryBackend::with_clock(clock.clone());
    let src = Store::new(Arc::new(source.clone()), options(&clock));
    for k in 0..3u8 {
        src.write(&p(&format!("f{k}")), &big(k, 5_000))
            .await
            .unwrap();
    }
    let dest_backend = OnceHooked::new(clock.clone(), false);
    let dest = Store::new(Arc::new(dest_backend.clone()), options(&clock));
    // Someone else creates version 3 just before the import would: the import conflicts.
    let racer = dest_backend.inner.clone();
    dest_backend.on(
        When::BeforeCreate,
        keys::manifest("c", 2).as_str(),
        move || {
            Box::pin(async move {
                racer
                    .put_if_absent(&keys::manifest("c", 3), Bytes::from_static(b"other"))
                    .await
                    .unwrap();
            })
        },
    );
    let imported = dest.import_from(Arc::new(source.clone()), "c").await;
    assert!(
        matches!(imported, Err(Error::Conflict { .. })),
        "{imported:?}"
    );
    for v in 1..=2 {
        assert!(
            dest_backend
                .inner
                .head(&keys::manifest("c", v))
                .await
                .unwrap()
                .is_none(),
            "version {v} of a failed import is still there"
        );
    }
}

/// Scenario 6: a dedup hit on an old unreferenced blob keeps its outboard too, even when a
/// GC that read its roots before the commit sweeps meanwhile.
#[tokio::test(start_paused = true)]
async fn a_dedup_hit_keeps_the_outboard_of_the_blob() {
    let (backend, writer, gc) = stores(true);
    let data = big(11, 2 * 1024 * 1024);
    writer.write(&p("first"), &data).await.unwrap();
    writer.delete(&p("first")).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let id = segstore::BlobId::of(&data);
    assert!(backend
        .inner
        .head(&keys::outboard(&id))
        .await
        .unwrap()
        .is_some());
    let g = gc.clone();
    // GC runs after the dedup hit, while the commit writes its tree nodes.
    backend.on(When::BeforePut, keys::TREES_PREFIX, move || {
        Box::pin(async move {
            g.gc(&gc_options(keep_latest())).await.unwrap();
        })
    });
    writer.write(&p("again"), &data).await.unwrap();
    assert!(
        backend
            .inner
            .head(&keys::outboard(&id))
            .await
            .unwrap()
            .is_some(),
        "the outboard of a referenced blob was swept"
    );
    assert_eq!(writer.read(&p("again")).await.unwrap(), data);
    assert_healthy(&writer).await;
}

/// Scenario 9: a streaming write longer than `max_writer_stall` succeeds: the stall window
/// starts when the blob is published, not when streaming began.
#[tokio::test(start_paused = true)]
async fn a_slow_stream_longer_than_the_stall_limit_commits() {
    let (_backend, writer, gc) = stores(false);
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let feeder = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for k in 0..8u8 {
            tx.write_all(&big(k, 256 * 1024)).await.unwrap();
            tokio::time::sleep(10 * MIN).await;
        }
    });
    let path = p("slow.bin");
    let w = writer.clone();
    let write = tokio::spawn(async move { w.write_stream(&path, rx).await });
    feeder.await.unwrap();
    write.await.unwrap().unwrap();
    tokio::time::sleep(2 * HOUR).await;
    gc.gc(&gc_options(keep_latest())).await.unwrap();
    assert_eq!(
        writer.read(&p("slow.bin")).await.unwrap().len(),
        8 * 256 * 1024
    );
    assert_healthy(&writer).await;
}

/// Scenario 10a: a listing that still shows versions retention deleted must not make a
/// writer re-create a deleted version number (an acknowledged but invisible commit).
#[tokio::test(start_paused = true)]
async fn a_stale_listing_cannot_hide_a_commit() {
    let (backend, writer, gc) = stores(false);
    for k in 0..10u8 {
        writer.write(&p("f"), &[k; 8]).await.unwrap();
    }
    // A snapshot keeps version 3 below the boundary that retention sets.
    writer
        .create_snapshot("c", "v3", Some(3), None)
        .await
        .unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let policy = RetentionPolicy {
        keep_last: Some(2),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    };
    let report = gc.apply_retention("c", &policy, false).await.unwrap();
    assert_eq!(report.deleted, vec![1, 2, 4, 5, 6, 7, 8]);
    // No hint, and a lagging listing that shows only version 3.
    backend.inner.delete(&keys::latest_hint("c")).await.unwrap();
    let stale = Hooked {
        inner: backend.inner.clone(),
        hooks: StaleListing { shows_up_to: 5 },
    };
    let late = Store::new(Arc::new(stale), options(&clock()));
    late.write(&p("late"), b"acknowledged").await.unwrap();
    let reader = Store::new(Arc::new(backend.inner.clone()), options(&clock()));
    assert_eq!(reader.read(&p("late")).await.unwrap(), b"acknowledged");
}

/// Scenario 10b: two retention runs at once cannot interleave (one would lower the
/// boundary of the other): the second is refused while the first runs.
#[tokio::test(start_paused = true)]
async fn concurrent_retention_runs_are_refused() {
    let (backend, writer, gc) = stores(false);
    for k in 0..6u8 {
        writer.write(&p("f"), &[k; 8]).await.unwrap();
    }
    tokio::time::sleep(2 * HOUR).await;
    let second = writer.clone();
    let refused = Arc::new(Mutex::new(None));
    let seen = refused.clone();
    backend.on(When::BeforePut, keys::boundary("c").as_str(), move || {
        Box::pin(async move {
            let policy = RetentionPolicy {
                keep_last: Some(5),
                keep_within: None,
                ..RetentionPolicy::keep_all()
            };
            let r = second.apply_retention("c", &policy, false).await;
            *seen.lock().unwrap() = Some(r.map(|_| ()));
        })
    });
    let policy = RetentionPolicy {
        keep_last: Some(2),
        keep_within: None,
        ..RetentionPolicy::keep_all()
    };
    gc.apply_retention("c", &policy, false).await.unwrap();
    let second = refused.lock().unwrap().take().unwrap();
    assert!(
        matches!(second, Err(Error::GcInProgress { .. })),
        "{second:?}"
    );
    let boundary = backend.inner.get(&keys::boundary("c")).await.unwrap();
    assert_eq!(&boundary[..], b"5");
}

/// Scenario 10c: a commit that re-created a version below the boundary is not committed,
/// whatever its commit id says.
#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_below_the_boundary_is_not_committed() {
    let (backend, writer, _gc) = stores(false);
    for k in 0..4u8 {
        writer.write(&p("f"), &[k; 8]).await.unwrap();
    }
    let root = writer.root_at("c", 2).await.unwrap();
    assert!(writer.commit_outcome("c", 2, root.commit_id).await.unwrap());
    backend
        .inner
        .put(&keys::boundary("c"), Bytes::from_static(b"3"))
        .await
        .unwrap();
    assert!(!writer.commit_outcome("c", 2, root.commit_id).await.unwrap());
}

/// Lists as if the listing lagged: manifest versions above `shows_up_to` are not listed.
#[derive(Debug, Clone)]
struct StaleListing {
    shows_up_to: u64,
}

#[async_trait]
impl Hooks for StaleListing {
    fn name(&self) -> &'static str {
        "stale-listing"
    }

    async fn after_list(&self, prefix: &str, listed: &mut Result<Vec<ObjectMeta>>) {
        if let (true, Ok(listed)) = (prefix.starts_with(keys::MANIFESTS_PREFIX), listed) {
            // A listing that lags: the newer versions are not in it yet.
            listed.retain(|m| {
                keys::parse_manifest_version(m.key.file_name())
                    .is_none_or(|v| v <= self.shows_up_to)
            });
        }
    }
}

/// Scenario 8: the GC safety rule holds against the store's shared settings, not only the
/// GC process's own: a GC process with shorter writer settings than the store's is given
/// the store's, and a grace that does not cover them is refused.
#[tokio::test(start_paused = true)]
async fn gc_checks_its_grace_against_the_stores_settings() {
    let time = clock();
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(time.clone()));
    let slow_writers = segstore::identity::SharedSettings {
        gc_grace: 4 * HOUR,
        max_writer_stall: 3 * HOUR,
        ..segstore::identity::SharedSettings::default()
    };
    let creator = StoreOptions {
        shared: Some(slow_writers),
        ..options(&time)
    };
    let app = Store::open(backend.clone(), creator).await.unwrap();
    app.write(&p("f"), b"x").await.unwrap();
    // An operator's GC process with the defaults (stall 30 min) and grace 1 h.
    let gc = Store::open(backend.clone(), options(&time)).await.unwrap();
    assert_eq!(gc.options().max_writer_stall, 3 * HOUR);
    let refused = gc.gc(&gc_options(keep_latest())).await;
    assert!(
        matches!(refused, Err(Error::InvalidConfig(_))),
        "{refused:?}"
    );
    let enough = GcOptions {
        grace: 4 * HOUR,
        ..gc_options(keep_latest())
    };
    gc.gc(&enough).await.unwrap();
}

/// Import builds the outboard of every large blob it copies into a backend that keeps
/// outboards (an export carries none), so range reads never fetch such a blob whole.
#[tokio::test(start_paused = true)]
async fn an_import_builds_outboards_on_the_way_in() {
    let time = clock();
    let source = MemoryBackend::with_clock(time.clone());
    let src = Store::new(Arc::new(source.clone()), options(&time));
    let data = big(12, 2 * 1024 * 1024);
    src.write(&p("large"), &data).await.unwrap();
    let id = segstore::BlobId::of(&data);
    assert!(source.head(&keys::outboard(&id)).await.unwrap().is_none());
    let dest_backend = OnceHooked::new(time.clone(), true);
    let dest = Store::new(Arc::new(dest_backend.clone()), options(&time));
    dest.import_from(Arc::new(source.clone()), "c")
        .await
        .unwrap();
    assert!(
        dest_backend
            .inner
            .head(&keys::outboard(&id))
            .await
            .unwrap()
            .is_some(),
        "the imported blob has no outboard"
    );
    assert_eq!(
        dest.read_range(&p("large"), 10..20).await.unwrap(),
        data.slice(10..20)
    );
}

/// Long-lived staging stays protected while it is alive: files staged hours before their
/// commit (a Tantivy bulk load) and kept alive commit fine through hourly GC runs.
#[tokio::test(start_paused = true)]
async fn staged_files_kept_alive_survive_gc_until_their_commit() {
    let (_backend, writer, gc) = stores(false);
    writer.write(&p("base"), b"x").await.unwrap();
    let staged = writer.stage_bytes(big(13, 60_000)).await.unwrap();
    for _ in 0..4 {
        for _ in 0..12 {
            tokio::time::sleep(5 * MIN).await;
            writer
                .keep_staged_alive(std::slice::from_ref(&staged))
                .await
                .unwrap();
        }
        let report = gc.gc(&gc_options(keep_latest())).await.unwrap();
        assert_eq!(report.blobs_deleted, 0, "{report:?}");
    }
    let ops = vec![Op::Put {
        path: p("bulk.idx"),
        entry: staged,
    }];
    writer.commit_ops("c", ops, None).await.unwrap();
    assert_eq!(writer.read(&p("bulk.idx")).await.unwrap(), big(13, 60_000));
    assert_healthy(&writer).await;
}
