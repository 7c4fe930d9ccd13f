//! Sync between stores and forks: incremental copies, destination rules, mirrored history,
//! interrupted and resumed syncs (injected faults and a real SIGKILL), GC on either side
//! and writers racing the source.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use segstore::backend::fault::{Fault, FaultBackend};
use segstore::backend::local::LocalBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::clock::{Clock, TokioClock};
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::keys;
use segstore::sync::{History, SyncOptions};
use segstore::{Error, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions, Target};
use support::child;

const HOUR: Duration = Duration::from_secs(3600);

fn p(collection: &str, name: &str) -> StoragePath {
    StoragePath::new(collection, StorageBackend::Tantivy, "s0", name)
}

fn content(seed: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i % 251) as u8 ^ (seed as u8).wrapping_mul(31))
            .collect::<Vec<_>>(),
    )
}

fn memory_store() -> (MemoryBackend, Store) {
    let backend = MemoryBackend::new();
    let store = Store::new(Arc::new(backend.clone()), StoreOptions::default());
    (backend, store)
}

async fn assert_healthy(store: &Store) {
    let report = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.is_healthy(), "verify found damage: {report:?}");
}

/// `b_name` in `b` holds exactly the files of `collection` in `a`, each readable there.
async fn assert_same(a: &Store, collection: &str, b: &Store, b_name: &str) {
    let (ra, rb) = (
        a.head(collection).await.unwrap(),
        b.head(b_name).await.unwrap(),
    );
    assert_eq!(ra.shards, rb.shards, "different content");
    for shard in rb.shards.values() {
        for (name, entry) in b.trees().shard_entries(shard).await.unwrap() {
            let bytes = b.read_entry(&entry).await.unwrap();
            assert_eq!(segstore::BlobId::of(&bytes), entry.id, "{name}");
        }
    }
}

async fn fill(store: &Store, collection: &str, files: usize) {
    let mut tx = store.transaction(collection).await.unwrap();
    for i in 0..files {
        let len = if i % 2 == 0 { 200 } else { 9_000 + i };
        tx.put(&p(collection, &format!("f{i:04}")), content(i, len))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn local_to_local_is_incremental_and_verified() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = Store::open(
        Arc::new(LocalBackend::open(dirs.0.path()).await.unwrap()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let dst = Store::open(
        Arc::new(LocalBackend::open(dirs.1.path()).await.unwrap()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    fill(&src, "c", 600).await;
    let first = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(first.versions_committed, 1);
    assert_eq!(first.blobs_copied, 300);
    assert_same(&src, "c", &dst, "c").await;

    // One file changed: one blob and the page and shard node above it.
    src.write(&p("c", "f0001"), &content(99, 20_000))
        .await
        .unwrap();
    let second = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            second.blobs_copied,
            second.blobs_present,
            second.trees_copied
        ),
        (1, 0, 2),
        "{second:?}"
    );
    assert_same(&src, "c", &dst, "c").await;

    // Already equal: nothing sent, nothing committed.
    let third = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            third.versions_committed,
            third.blobs_copied,
            third.trees_copied
        ),
        (0, 0, 0)
    );
    assert_eq!(third.dest_version, second.dest_version);
    assert_healthy(&dst).await;
}

#[tokio::test]
async fn a_diverged_destination_is_refused_unless_overwritten() {
    let (_, src) = memory_store();
    let (_, dst) = memory_store();
    fill(&src, "c", 10).await;
    src.sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    dst.write(&p("c", "local-only"), b"written at the destination")
        .await
        .unwrap();
    src.write(&p("c", "f0000"), b"changed at the source")
        .await
        .unwrap();
    let refused = src.sync_to("c", &dst, &SyncOptions::default()).await;
    match refused {
        Err(Error::Diverged {
            collection,
            version: 2,
            source_version: 2,
        }) if collection == "c" => {}
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert!(dst.exists(&p("c", "local-only")).await.unwrap());
    let forced = SyncOptions {
        overwrite: true,
        ..SyncOptions::default()
    };
    src.sync_to("c", &dst, &forced).await.unwrap();
    assert!(!dst.exists(&p("c", "local-only")).await.unwrap());
    assert_same(&src, "c", &dst, "c").await;
}

#[tokio::test]
async fn mirror_copies_versions_and_snapshots_under_another_name() {
    let (_, src) = memory_store();
    let (_, dst) = memory_store();
    fill(&src, "c", 8).await;
    src.create_snapshot("c", "first", None, None).await.unwrap();
    src.write(&p("c", "g"), &content(5, 10_000)).await.unwrap();
    src.write(&p("c", "h"), &content(6, 10_000)).await.unwrap();
    src.create_snapshot("c", "third", None, None).await.unwrap();
    let mirror = SyncOptions {
        history: History::Mirror,
        rename: Some("copy".into()),
        target: Some(Target::Version(2)),
        ..SyncOptions::default()
    };
    let report = src.sync_to("c", &dst, &mirror).await.unwrap();
    assert_eq!((report.versions_committed, report.snapshots), (2, 1));
    assert_eq!(dst.snapshot("copy", "first").await.unwrap().version, 1);
    let up_to_date = SyncOptions {
        target: None,
        ..mirror
    };
    let report = src.sync_to("c", &dst, &up_to_date).await.unwrap();
    assert_eq!((report.versions_committed, report.snapshots), (1, 1));
    assert_eq!(dst.snapshot("copy", "third").await.unwrap().version, 3);
    for v in 1..=3 {
        let a = src.root_at("c", v).await.unwrap();
        let b = dst.root_at("copy", v).await.unwrap();
        assert_eq!(a.shards, b.shards, "version {v}");
    }
    assert_same(&src, "c", &dst, "copy").await;
}

/// Blobs (not outboards) stored in `backend`.
async fn stored_blobs(backend: &MemoryBackend) -> u64 {
    let listed = backend.list(keys::BLOBS_PREFIX).await.unwrap();
    listed
        .iter()
        .filter(|m| keys::id_from_key(m.key.as_str()).is_some())
        .count() as u64
}

/// A crash at every 9th operation of a sync leaves the destination at its previous
/// version (or, for a crash after the commit point, at the new one); the next sync, by a
/// restarted process, sends exactly what had not arrived.
#[tokio::test]
async fn an_interrupted_sync_resumes_without_resending() {
    let (_, src) = memory_store();
    fill(&src, "c", 40).await;
    let probe = FaultBackend::new(Arc::new(MemoryBackend::new()));
    let probe_store = Store::new(Arc::new(probe.clone()), StoreOptions::default());
    probe.set_fault(Fault::None);
    src.sync_to("c", &probe_store, &SyncOptions::default())
        .await
        .unwrap();
    let total = probe.ops();
    assert!(total > 40, "{total}");
    let mut crashed_before_commit = 0;
    for k in (0..total).step_by(9) {
        let dest_mem = MemoryBackend::new();
        let faulty = FaultBackend::new(Arc::new(dest_mem.clone()));
        faulty.set_fault(Fault::CrashAt {
            op: k,
            applied: k % 2 == 0,
        });
        let dst = Store::new(Arc::new(faulty.clone()), StoreOptions::default());
        let crashed = src.sync_to("c", &dst, &SyncOptions::default()).await;
        assert!(crashed.is_err(), "no crash at op {k} of {total}");
        let resumed = Store::new(Arc::new(dest_mem.clone()), StoreOptions::default());
        let at = resumed.head("c").await.unwrap().version;
        let arrived = stored_blobs(&dest_mem).await;
        let report = src
            .sync_to("c", &resumed, &SyncOptions::default())
            .await
            .unwrap();
        if at == 0 {
            crashed_before_commit += 1;
            assert_eq!(report.blobs_present, arrived, "crash at op {k}: {report:?}");
            assert_eq!(
                report.blobs_copied + arrived,
                20,
                "crash at op {k}: {report:?}"
            );
        } else {
            assert_eq!(at, 1, "crash at op {k}");
            assert_eq!(report.versions_committed, 0, "crash at op {k}: {report:?}");
        }
        assert_same(&src, "c", &resumed, "c").await;
        assert_healthy(&resumed).await;
    }
    assert!(crashed_before_commit > 3, "{crashed_before_commit}");
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

fn keep_latest() -> GcOptions {
    GcOptions {
        retention: RetentionPolicy {
            keep_last: Some(1),
            keep_within: None,
            ..RetentionPolicy::keep_all()
        },
        ..GcOptions::default()
    }
}

/// A source of 30 files and a destination (its memory backend) that a sync of them left
/// interrupted after its blobs arrived, before any root; the options of both.
async fn interrupted_sync(time: &Arc<dyn Clock>) -> (Store, MemoryBackend, StoreOptions) {
    let opts = StoreOptions {
        clock: time.clone(),
        ..StoreOptions::default()
    };
    let src = Store::new(
        Arc::new(MemoryBackend::with_clock(time.clone())),
        opts.clone(),
    );
    fill(&src, "c", 30).await;
    let dest_mem = MemoryBackend::with_clock(time.clone());
    let faulty = FaultBackend::new(Arc::new(dest_mem.clone()));
    let dst = Store::new(Arc::new(faulty.clone()), opts.clone());
    faulty.set_fault(Fault::CrashAt {
        op: 30,
        applied: true,
    });
    assert!(src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .is_err());
    (src, dest_mem, opts)
}

/// Objects an interrupted sync left at the destination long ago are swept by GC there
/// before the next sync commits: the resumed sync re-checks them (foreign references),
/// so it sends them again or fails, and never commits a dangling reference.
#[tokio::test(start_paused = true)]
async fn gc_on_the_destination_never_leaves_a_dangling_sync() {
    let time = clock();
    let (src, dest_mem, opts) = interrupted_sync(&time).await;
    let gc = Store::new(Arc::new(dest_mem.clone()), opts.clone());
    assert_eq!(gc.head("c").await.unwrap().version, 0);
    // Hours later, while a GC on the destination sweeps the orphans, the sync resumes.
    tokio::time::sleep(2 * HOUR).await;
    let swept = gc.gc(&keep_latest()).await.unwrap();
    assert!(swept.blobs_deleted > 0, "{swept:?}");
    let resumed = Store::new(Arc::new(dest_mem.clone()), opts.clone());
    src.sync_to("c", &resumed, &SyncOptions::default())
        .await
        .unwrap();
    assert_same(&src, "c", &resumed, "c").await;
    assert_healthy(&resumed).await;
}

/// The race itself: GC sweeps the objects a resumed sync found present, after it looked
/// them up and before its commit confirms them. The commit refuses; nothing dangles.
#[tokio::test(start_paused = true)]
async fn gc_between_the_lookup_and_the_commit_is_refused() {
    let time = clock();
    let (src, dest_mem, opts) = interrupted_sync(&time).await;
    tokio::time::sleep(2 * HOUR).await;
    let hooked = Hooked {
        inner: dest_mem.clone(),
        hook: Arc::default(),
    };
    let gc = Store::new(Arc::new(dest_mem.clone()), opts.clone());
    // The commit's look at the destination's versions (the second; the first is the
    // sync's own, before any lookup): GC runs to completion.
    *hooked.hook.lock().unwrap() = Some((
        keys::manifest_prefix("c"),
        1,
        Box::new(move || {
            Box::pin(async move {
                let report = gc.gc(&keep_latest()).await.unwrap();
                assert!(report.blobs_deleted > 0, "{report:?}");
            })
        }),
    ));
    let resumed = Store::new(Arc::new(hooked.clone()), opts.clone());
    let synced = src.sync_to("c", &resumed, &SyncOptions::default()).await;
    assert!(hooked.hook.lock().unwrap().is_none(), "the hook never ran");
    assert!(
        matches!(synced, Err(Error::ReferenceGone { .. })),
        "{synced:?}"
    );
    let fresh = Store::new(Arc::new(dest_mem.clone()), opts);
    assert_eq!(fresh.head("c").await.unwrap().version, 0);
    assert_healthy(&fresh).await;
    // The next sync sends what GC removed, and completes.
    src.sync_to("c", &fresh, &SyncOptions::default())
        .await
        .unwrap();
    assert_same(&src, "c", &fresh, "c").await;
}

type Hook = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// A memory backend that runs a hook once, before the first `head` of a key prefix.
#[derive(Clone)]
struct Hooked {
    inner: MemoryBackend,
    /// Prefix, how many matching `head`s to let pass first, and the hook.
    hook: Arc<Mutex<Option<(String, usize, Hook)>>>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked")
    }
}

impl Hooked {
    /// Runs the hook if `key` is its prefix's match to fire on.
    async fn fire(&self, key: &keys::ObjectKey) {
        let hook = {
            let mut slot = self.hook.lock().unwrap();
            match slot.as_mut() {
                Some((prefix, skip, _)) if key.as_str().starts_with(prefix.as_str()) => {
                    if *skip == 0 {
                        slot.take()
                    } else {
                        *skip -= 1;
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some((_, _, hook)) = hook {
            hook().await;
        }
    }
}

#[async_trait::async_trait]
impl ObjectBackend for Hooked {
    fn name(&self) -> &'static str {
        "hooked"
    }
    async fn now(&self) -> segstore::Result<std::time::SystemTime> {
        self.inner.now().await
    }
    async fn get(&self, key: &keys::ObjectKey) -> segstore::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &keys::ObjectKey,
        r: std::ops::Range<u64>,
    ) -> segstore::Result<Bytes> {
        self.fire(key).await;
        self.inner.get_range(key, r).await
    }
    async fn head(
        &self,
        key: &keys::ObjectKey,
    ) -> segstore::Result<Option<segstore::backend::ObjectMeta>> {
        self.fire(key).await;
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

/// GC on the source deletes the version being synced, and its blobs, while the sync reads
/// them: the sync fails with a typed error and the destination stays as it was.
#[tokio::test(start_paused = true)]
async fn gc_on_the_source_fails_the_sync_cleanly() {
    let time = clock();
    let opts = StoreOptions {
        clock: time.clone(),
        ..StoreOptions::default()
    };
    let src_mem = MemoryBackend::with_clock(time.clone());
    let hooked = Hooked {
        inner: src_mem.clone(),
        hook: Arc::default(),
    };
    let src = Store::new(Arc::new(hooked.clone()), opts.clone());
    fill(&src, "c", 20).await;
    for i in (1..20).step_by(2) {
        src.delete(&p("c", &format!("f{i:04}"))).await.unwrap();
    }
    tokio::time::sleep(2 * HOUR).await;
    let gc = Store::new(Arc::new(src_mem.clone()), opts.clone());
    *hooked.hook.lock().unwrap() = Some((
        keys::BLOBS_PREFIX.to_owned(),
        2,
        Box::new(move || {
            Box::pin(async move {
                let report = gc.gc(&keep_latest()).await.unwrap();
                assert!(report.blobs_deleted > 0, "{report:?}");
            })
        }),
    ));
    let dst = Store::new(Arc::new(MemoryBackend::with_clock(time.clone())), opts);
    let old = SyncOptions {
        target: Some(Target::Version(1)),
        ..SyncOptions::default()
    };
    let synced = src.sync_to("c", &dst, &old).await;
    assert!(hooked.hook.lock().unwrap().is_none(), "the hook never ran");
    assert!(
        matches!(
            synced,
            Err(Error::Corrupt { .. } | Error::NotFound { .. } | Error::CorruptManifest { .. })
        ),
        "{synced:?}"
    );
    assert_eq!(dst.head("c").await.unwrap().version, 0);
    assert_healthy(&dst).await;
    // The latest version syncs.
    src.sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_same(&src, "c", &dst, "c").await;
}

/// Writers keep committing to the source while it is synced, and GC runs on the source:
/// the destination gets exactly the version asked for, complete.
#[tokio::test(start_paused = true)]
async fn writers_racing_the_source_never_break_the_copy() {
    let time = clock();
    let opts = StoreOptions {
        clock: time.clone(),
        ..StoreOptions::default()
    };
    let src = Store::new(
        Arc::new(MemoryBackend::with_clock(time.clone())),
        opts.clone(),
    );
    let dst = Store::new(Arc::new(MemoryBackend::with_clock(time.clone())), opts);
    fill(&src, "c", 200).await;
    let writer = src.clone();
    let racing = tokio::spawn(async move {
        for i in 0..30 {
            writer
                .write(
                    &p("c", &format!("f{:04}", i * 3)),
                    &content(500 + i, 11_000),
                )
                .await
                .unwrap();
        }
    });
    let gc_src = src.clone();
    let gc = tokio::spawn(async move { gc_src.gc(&keep_latest()).await });
    let report = src
        .sync_to(
            "c",
            &dst,
            &SyncOptions {
                target: Some(Target::Version(1)),
                ..SyncOptions::default()
            },
        )
        .await
        .unwrap();
    racing.await.unwrap();
    gc.await.unwrap().unwrap();
    assert_eq!(report.source_version, 1);
    let v1 = src.root_at("c", 1).await.unwrap();
    assert_eq!(dst.root_at("c", 1).await.unwrap().shards, v1.shards);
    let latest = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert!(latest.source_version > 1);
    assert_same(&src, "c", &dst, "c").await;
    assert_healthy(&dst).await;
}

#[tokio::test(start_paused = true)]
async fn a_fork_shares_every_object_and_survives_gc_of_its_source() {
    let time = clock();
    let opts = StoreOptions {
        clock: time.clone(),
        ..StoreOptions::default()
    };
    let backend = MemoryBackend::with_clock(time.clone());
    let store = Store::new(Arc::new(backend.clone()), opts.clone());
    fill(&store, "live", 300).await;
    let before = store.stats().await.unwrap();
    let keys_before: std::collections::BTreeSet<_> = backend
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    let info = store.fork("live", None, "rebuild").await.unwrap();
    assert_eq!(info.version, 1);
    // One root (and the latest-version hint), nothing else.
    let added: Vec<String> = backend
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !keys_before.contains(&m.key))
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(
        added,
        [
            keys::manifest("rebuild", 1).to_string(),
            keys::latest_hint("rebuild").to_string()
        ]
    );
    let after = store.stats().await.unwrap();
    assert_eq!(
        (after.blobs, after.tree_nodes, after.physical_bytes),
        (before.blobs, before.tree_nodes, before.physical_bytes)
    );
    assert_eq!(after.logical_bytes, 2 * before.logical_bytes);
    assert!(matches!(
        store.fork("live", None, "rebuild").await,
        Err(Error::Conflict { .. })
    ));
    // The fork moves on by itself; the source is then deleted and GC runs.
    store
        .write(&p("rebuild", "extra"), &content(7, 30_000))
        .await
        .unwrap();
    store
        .create_snapshot("rebuild", "base", Some(1), None)
        .await
        .unwrap();
    for (v, _) in store.versions("live").await.unwrap() {
        backend.delete(&keys::manifest("live", v)).await.unwrap();
    }
    let _ = backend.delete(&keys::latest_hint("live")).await;
    tokio::time::sleep(2 * HOUR).await;
    let gc = Store::new(Arc::new(backend.clone()), opts.clone());
    gc.gc(&keep_latest()).await.unwrap();
    let fresh = Store::new(Arc::new(backend.clone()), opts);
    for i in [0, 1, 299] {
        let path = p("rebuild", &format!("f{i:04}"));
        let len = if i % 2 == 0 { 200 } else { 9_000 + i };
        assert_eq!(fresh.read(&path).await.unwrap(), content(i, len));
    }
    fresh
        .restore("rebuild", &Target::Snapshot("base".into()))
        .await
        .unwrap();
    assert_healthy(&fresh).await;
}

const CHILD_ENV: &str = "SEGSTORE_SYNC_CHILD";

/// Not a test on its own: the body of the child process, which syncs until killed.
#[test]
fn sync_child() {
    let Ok(roots) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (from, to) = roots.split_once('|').unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let src = segstore::LocalStorage::open(from).await.unwrap();
        let dst = segstore::LocalStorage::open(to).await.unwrap();
        let options = SyncOptions {
            progress: Some(segstore::ProgressFn::new(|p| {
                if p.items_done == 20 {
                    child::ready();
                }
                // Slow enough that the kill lands in the middle.
                std::thread::sleep(Duration::from_millis(3));
            })),
            ..SyncOptions::default()
        };
        src.store()
            .sync_to("c", dst.store(), &options)
            .await
            .unwrap();
        child::ack("synced");
    });
}

/// A real SIGKILL in the middle of a sync: the destination stays at its previous version
/// and reopens cleanly; the next sync resends nothing that had arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_by_sigkill_resumes() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = segstore::LocalStorage::open(from.path()).await.unwrap();
    fill(src.store(), "c", 600).await;
    let env = [(
        CHILD_ENV,
        format!("{}|{}", from.path().display(), to.path().display()),
    )];
    let mut running = child::Running::spawn(child::command("sync_child", &env), Stdio::inherit());
    running.wait_ready(Duration::from_secs(120));
    let acks = running.kill();
    let dst = segstore::LocalStorage::open(to.path()).await.unwrap();
    let at = dst.store().head("c").await.unwrap().version;
    if acks.is_empty() {
        assert_eq!(at, 0, "a killed sync moved the destination");
    }
    let report = src
        .store()
        .sync_to("c", dst.store(), &SyncOptions::default())
        .await
        .unwrap();
    if at == 0 {
        assert!(report.blobs_present > 0, "nothing had arrived: {report:?}");
        assert_eq!(report.blobs_copied + report.blobs_present, 300);
    }
    assert_same(src.store(), "c", dst.store(), "c").await;
    assert_healthy(dst.store()).await;
}
