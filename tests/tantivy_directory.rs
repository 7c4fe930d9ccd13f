//! The `Directory` contract of `TantivyStorageAdapter`, mirroring the behaviours tantivy's
//! own `src/directory/tests.rs` checks, plus segstore specifics: exact error variants, the
//! commit mapping, and calls from every kind of thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use segstore::backend::fault::{Fault, FaultBackend};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::gc::{GcOptions, RetentionPolicy};
use segstore::{
    Error, Freshness, LocalStorage, SegmentStorage, StorageBackend, StoragePath, Store,
    StoreOptions, TantivyAdapterOptions, TantivyStorageAdapter,
};
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryClone, Lock, TerminatingWrite, WatchCallback, INDEX_WRITER_LOCK,
};
use tantivy::Directory;

const COLLECTION: &str = "docs";
const SHARD: &str = "shard_0";

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn adapter_at(
    root: &Path,
    options: TantivyAdapterOptions,
) -> (LocalStorage, TantivyStorageAdapter) {
    adapter_with(root, options, StoreOptions::default())
}

/// Two adapters opened on one directory stand for two processes. The tests that pin what
/// one sees of the other's commits at once use strict read freshness; with the default
/// bound, a reload sees them within a second (the watcher's at once: it refreshes).
fn strict_adapter_at(root: &Path) -> (LocalStorage, TantivyStorageAdapter) {
    let strict = StoreOptions {
        read_freshness: Freshness::Strict,
        ..StoreOptions::default()
    };
    adapter_with(root, TantivyAdapterOptions::default(), strict)
}

fn adapter_with(
    root: &Path,
    options: TantivyAdapterOptions,
    store_options: StoreOptions,
) -> (LocalStorage, TantivyStorageAdapter) {
    block(async {
        let store = LocalStorage::open_with(root, store_options).await.unwrap();
        let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
        let adapter = TantivyStorageAdapter::open_with(shared, COLLECTION, SHARD, options)
            .await
            .unwrap();
        (store, adapter)
    })
}

fn adapter() -> (tempfile::TempDir, LocalStorage, TantivyStorageAdapter) {
    let dir = tempfile::tempdir().unwrap();
    let (store, adapter) = adapter_at(dir.path(), TantivyAdapterOptions::default());
    (dir, store, adapter)
}

fn version(store: &LocalStorage) -> u64 {
    block(store.head(COLLECTION)).unwrap().version
}

const TEST_PATH: &str = "some_path_for_test";

fn simple(directory: &dyn Directory) {
    let path = Path::new(TEST_PATH);
    let mut w = directory.open_write(path).unwrap();
    w.write_all(&[4]).unwrap();
    w.write_all(&[3]).unwrap();
    w.write_all(&[7, 3, 5]).unwrap();
    w.terminate().unwrap();
    let data = directory.open_read(path).unwrap().read_bytes().unwrap();
    assert_eq!(data.as_slice(), &[4u8, 3, 7, 3, 5]);
    drop(data);
    directory.delete(path).unwrap();
    assert!(!directory.exists(path).unwrap());
}

#[test]
fn simple_write_read_delete() {
    let (_dir, _store, adapter) = adapter();
    simple(&adapter);
}

#[test]
fn rewrite_is_forbidden() {
    let (_dir, _store, adapter) = adapter();
    let path = Path::new(TEST_PATH);
    let writer = adapter.open_write(path).unwrap();
    assert!(matches!(
        adapter.open_write(path),
        Err(OpenWriteError::FileAlreadyExists(_))
    ));
    writer.terminate().unwrap();
    assert!(adapter.exists(path).unwrap());
    assert!(matches!(
        adapter.open_write(path),
        Err(OpenWriteError::FileAlreadyExists(_))
    ));
    adapter.delete(path).unwrap();
}

#[test]
fn write_creates_the_file_and_drop_frees_the_name() {
    let (_dir, _store, adapter) = adapter();
    let path = Path::new(TEST_PATH);
    assert!(matches!(
        adapter.open_read(path),
        Err(OpenReadError::FileDoesNotExist(_))
    ));
    let writer = adapter.open_write(path).unwrap();
    assert!(adapter.exists(path).unwrap());
    writer.terminate().unwrap();
    assert!(adapter.open_read(path).is_ok());
    adapter.delete(path).unwrap();

    // A writer dropped without terminate frees the name and leaves nothing behind.
    let mut writer = adapter.open_write(path).unwrap();
    writer.write_all(&vec![7u8; 3 << 20]).unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert!(!adapter.exists(path).unwrap());
    let mut writer = adapter.open_write(path).unwrap();
    writer.write_all(b"second").unwrap();
    writer.terminate().unwrap();
    let data = adapter.open_read(path).unwrap().read_bytes().unwrap();
    assert_eq!(data.as_slice(), b"second");
}

#[test]
fn delete_keeps_open_slices_readable() {
    let (_dir, _store, adapter) = adapter();
    let path = Path::new(TEST_PATH);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for content in [vec![1u8, 2, 3, 4], big] {
        let mut w = adapter.open_write(path).unwrap();
        w.write_all(&content).unwrap();
        w.terminate().unwrap();
        // Committed, so the delete below removes a name from the manifest.
        adapter.atomic_write(Path::new("meta.json"), b"{}").unwrap();
        let slice = adapter.open_read(path).unwrap();
        let read = slice.read_bytes().unwrap();
        assert_eq!(read.as_slice(), &content[..]);
        adapter.delete(path).unwrap();
        adapter
            .atomic_write(Path::new("meta.json"), b"{ }")
            .unwrap();
        assert_eq!(read.as_slice(), &content[..]);
        assert_eq!(slice.read_bytes().unwrap().as_slice(), &content[..]);
        assert!(matches!(
            adapter.delete(Path::new("SomeOtherPath")),
            Err(DeleteError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            adapter.open_read(path),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            adapter.delete(path),
            Err(DeleteError::FileDoesNotExist(_))
        ));
    }
}

#[test]
fn handles_know_their_length_and_read_async() {
    let (_dir, _store, adapter) = adapter();
    let path = Path::new("seg.idx");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut w = adapter.open_write(path).unwrap();
    for piece in content.chunks(8192) {
        w.write_all(piece).unwrap();
    }
    w.terminate().unwrap();
    let handle = adapter.get_file_handle(path).unwrap();
    assert_eq!(handle.len(), content.len());
    let part = handle.read_bytes(1_000_000..1_000_100).unwrap();
    assert_eq!(part.as_slice(), &content[1_000_000..1_000_100]);
    let part = futures::executor::block_on(handle.read_bytes_async(5..2_500_000)).unwrap();
    assert_eq!(part.as_slice(), &content[5..2_500_000]);
    assert!(handle.read_bytes(0..content.len() + 1).is_err());
}

#[test]
fn names_with_a_slash_are_rejected() {
    let (_dir, _store, adapter) = adapter();
    assert!(matches!(
        adapter.open_write(Path::new("a/b")),
        Err(OpenWriteError::IoError { .. })
    ));
    assert!(adapter
        .atomic_write(Path::new("../meta.json"), b"x")
        .is_err());
    assert!(matches!(
        adapter.open_read(Path::new("x/../y")),
        Err(OpenReadError::IoError { .. })
    ));
}

#[test]
fn foreign_storage_is_unsupported() {
    struct Foreign;
    #[async_trait::async_trait]
    impl SegmentStorage for Foreign {
        async fn write(&self, _: &StoragePath, _: &[u8]) -> segstore::Result<()> {
            Ok(())
        }
        async fn read(&self, p: &StoragePath) -> segstore::Result<Vec<u8>> {
            Err(segstore::Error::not_found(p))
        }
        async fn exists(&self, _: &StoragePath) -> segstore::Result<bool> {
            Ok(false)
        }
        async fn list(&self, _: &StoragePath) -> segstore::Result<Vec<StoragePath>> {
            Ok(vec![])
        }
        async fn delete(&self, _: &StoragePath) -> segstore::Result<()> {
            Ok(())
        }
        async fn rename(&self, _: &StoragePath, _: &StoragePath) -> segstore::Result<()> {
            Ok(())
        }
    }
    let result = block(TantivyStorageAdapter::open(Arc::new(Foreign), "c", "s"));
    assert!(matches!(result, Err(segstore::Error::Unsupported(_))));
}

#[test]
fn one_version_per_meta_commit_and_managed_json_is_pending() {
    let (_dir, store, adapter) = adapter();
    let before = version(&store);
    for i in 0..3 {
        let name = format!("seg{i}.idx");
        adapter
            .atomic_write(Path::new(".managed.json"), format!("[{i}]").as_bytes())
            .unwrap();
        let mut w = adapter.open_write(Path::new(&name)).unwrap();
        w.write_all(&vec![i as u8; 100_000]).unwrap();
        w.terminate().unwrap();
    }
    // Reads see the pending .managed.json; nothing was committed yet.
    assert_eq!(
        adapter.atomic_read(Path::new(".managed.json")).unwrap(),
        b"[2]"
    );
    assert_eq!(version(&store), before);
    let path = |n: &str| StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, n);
    assert!(!block(store.exists(&path("seg0.idx"))).unwrap());

    adapter.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    assert_eq!(version(&store), before + 1);
    let listed = block(store.list(&path(""))).unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.segment.as_str()).collect();
    assert_eq!(
        names,
        [
            ".managed.json",
            "meta.json",
            "seg0.idx",
            "seg1.idx",
            "seg2.idx"
        ]
    );

    // Deletes wait for the next commit point; a .managed.json written after a garbage
    // collection commits them.
    adapter.delete(Path::new("seg0.idx")).unwrap();
    assert!(!adapter.exists(Path::new("seg0.idx")).unwrap());
    assert!(block(store.exists(&path("seg0.idx"))).unwrap());
    adapter
        .atomic_write(Path::new(".managed.json"), b"[1,2]")
        .unwrap();
    assert_eq!(version(&store), before + 2);
    assert!(!block(store.exists(&path("seg0.idx"))).unwrap());
    assert!(adapter.pending().is_empty());
}

#[test]
fn uncommitted_files_vanish_with_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, adapter) = adapter_at(dir.path(), TantivyAdapterOptions::default());
        adapter.atomic_write(Path::new("meta.json"), b"v1").unwrap();
        let mut w = adapter.open_write(Path::new("orphan.idx")).unwrap();
        w.write_all(b"never committed").unwrap();
        w.terminate().unwrap();
    }
    let (_store, adapter) = adapter_at(dir.path(), TantivyAdapterOptions::default());
    assert_eq!(adapter.atomic_read(Path::new("meta.json")).unwrap(), b"v1");
    assert!(!adapter.exists(Path::new("orphan.idx")).unwrap());
}

fn lock(name: &str, is_blocking: bool) -> Lock {
    Lock {
        filepath: PathBuf::from(name),
        is_blocking,
    }
}

#[test]
fn locks_non_blocking() {
    let (_dir, store, adapter) = adapter();
    {
        let a = adapter.acquire_lock(&lock("a.lock", false)).unwrap();
        let _b = adapter.acquire_lock(&lock("b.lock", false)).unwrap();
        assert!(matches!(
            adapter.acquire_lock(&lock("a.lock", false)),
            Err(LockError::LockBusy)
        ));
        // Another adapter instance over the same store and shard shares the lock table.
        let other = block(TantivyStorageAdapter::open(
            Arc::new(store.clone()),
            COLLECTION,
            SHARD,
        ))
        .unwrap();
        assert!(matches!(
            other.acquire_lock(&lock("a.lock", false)),
            Err(LockError::LockBusy)
        ));
        drop(a);
        assert!(other.acquire_lock(&lock("a.lock", false)).is_ok());
    }
    assert!(adapter.acquire_lock(&lock("a.lock", false)).is_ok());
    // Lock files are never written to storage.
    assert!(!adapter.exists(Path::new("a.lock")).unwrap());
}

#[test]
fn locks_blocking() {
    let (_dir, _store, adapter) = adapter();
    let held = adapter.acquire_lock(&lock("a.lock", true)).unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        release_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
    });
    assert!(matches!(
        adapter.acquire_lock(&lock("a.lock", false)),
        Err(LockError::LockBusy)
    ));
    let clone = adapter.box_clone();
    let waiter = std::thread::spawn(move || clone.acquire_lock(&lock("a.lock", true)).is_ok());
    release_tx.send(()).unwrap();
    assert!(waiter.join().unwrap());
    holder.join().unwrap();
}

#[test]
fn watch_fires_on_meta_json() {
    let (_dir, _store, adapter) = adapter();
    let counter = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let timeout = Duration::from_millis(500);
    let count = counter.clone();
    let handle = adapter
        .watch(WatchCallback::new(move || {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = tx.send(n);
        }))
        .unwrap();
    adapter
        .atomic_write(Path::new("meta.json"), b"foo")
        .unwrap();
    assert_eq!(rx.recv_timeout(timeout), Ok(1));
    adapter
        .atomic_write(Path::new("meta.json"), b"bar")
        .unwrap();
    assert_eq!(rx.recv_timeout(timeout), Ok(2));
    drop(handle);
    adapter
        .atomic_write(Path::new("meta.json"), b"qux")
        .unwrap();
    assert!(rx.recv_timeout(timeout).is_err());
}

#[test]
fn watch_sees_commits_of_another_instance() {
    let dir = tempfile::tempdir().unwrap();
    let fast = TantivyAdapterOptions {
        watch_interval: Duration::from_millis(20),
        ..TantivyAdapterOptions::default()
    };
    let (_s1, watcher) = adapter_at(dir.path(), fast.clone());
    // A separately opened store: as good as another process.
    let (_s2, writer) = adapter_at(dir.path(), fast);
    let (tx, rx) = mpsc::channel();
    let _handle = watcher
        .watch(WatchCallback::new(move || {
            let _ = tx.send(());
        }))
        .unwrap();
    writer.atomic_write(Path::new("meta.json"), b"one").unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    assert_eq!(watcher.atomic_read(Path::new("meta.json")).unwrap(), b"one");
}

#[test]
fn works_from_plain_threads_and_both_runtime_flavours() {
    let (_dir, _store, adapter) = adapter();
    let plain = adapter.clone();
    std::thread::spawn(move || simple(&plain)).join().unwrap();

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = adapter.clone();
    multi.block_on(async move {
        let a2 = a.clone();
        tokio::spawn(async move { simple(&a2) }).await.unwrap();
        simple(&a);
    });

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = adapter.clone();
    current.block_on(async move {
        simple(&a);
        a.atomic_write(Path::new("meta.json"), b"from a current-thread runtime")
            .unwrap();
        assert!(a.exists(Path::new("meta.json")).unwrap());
    });
}

#[test]
fn a_second_writer_process_gets_a_conflict_not_an_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    // Two separately opened stores: in-process locks cannot see each other, as with two
    // processes.
    let (_s1, a) = strict_adapter_at(dir.path());
    let (_s2, b) = strict_adapter_at(dir.path());
    a.atomic_write(Path::new("meta.json"), b"v1").unwrap();
    assert_eq!(a.atomic_read(Path::new("meta.json")).unwrap(), b"v1");
    assert_eq!(b.atomic_read(Path::new("meta.json")).unwrap(), b"v1");
    a.atomic_write(Path::new("meta.json"), b"a2").unwrap();
    // b's view (v1) is stale: its commit must fail rather than overwrite a's.
    assert!(b.atomic_write(Path::new("meta.json"), b"b2").is_err());
    // A reader of b's reloading sees a's commit, but that is not b's writer's view.
    assert_eq!(b.atomic_read(Path::new("meta.json")).unwrap(), b"a2");
    assert!(b.atomic_write(Path::new("meta.json"), b"b3").is_err());
    assert_eq!(a.atomic_read(Path::new("meta.json")).unwrap(), b"a2");
    // A new writer (the writer lock, then its read of meta.json) starts from a2.
    let _writer = b.acquire_lock(&INDEX_WRITER_LOCK).unwrap();
    assert_eq!(b.atomic_read(Path::new("meta.json")).unwrap(), b"a2");
    b.atomic_write(Path::new("meta.json"), b"b4").unwrap();
    assert_eq!(a.atomic_read(Path::new("meta.json")).unwrap(), b"b4");
}

/// Reads `meta.json` as a freshly started process would.
fn committed_meta(memory: &MemoryBackend) -> Vec<u8> {
    let store: Arc<dyn SegmentStorage> = Arc::new(Store::new(
        Arc::new(memory.clone()),
        StoreOptions::default(),
    ));
    let adapter = block(TantivyStorageAdapter::open(store, COLLECTION, SHARD)).unwrap();
    adapter.atomic_read(Path::new("meta.json")).unwrap()
}

/// A failure at each storage operation of a commit, in turn: the commit reports an error
/// only if it did not land (or says the outcome is unknown), and the adapter's next commit
/// works either way.
#[test]
fn a_commit_reports_failure_only_when_it_did_not_land() {
    // Lean commits (the default): the shard object and the root.
    let (points, unknown) = commit_fault_points(StoreOptions::default());
    assert!(points >= 2, "only {points} operations in a commit");
    assert_eq!(unknown, 0);
    // Probing commits: the head probe, the page, the shard node and the root.
    let (points, unknown) = commit_fault_points(StoreOptions {
        lean_commits: false,
        ..StoreOptions::default()
    });
    assert!(points > 3, "only {points} operations in a commit");
    assert_eq!(unknown, 0);
    // Every commit reads the retention boundary after creating its version, where a
    // failure makes the outcome unknown: the adapter settles it on its next commit.
    let (_, unknown) = commit_fault_points(StoreOptions {
        version_min_age: Duration::ZERO,
        ..StoreOptions::default()
    });
    assert!(unknown > 0, "no commit ended with an unknown outcome");
}

/// Runs the commit of [`a_commit_reports_failure_only_when_it_did_not_land`] with a failure
/// at each operation in turn; returns how many operations there were and how many
/// failures left the outcome unknown.
fn commit_fault_points(options: StoreOptions) -> (u64, usize) {
    let mut k = 0;
    let mut unknowns = 0;
    loop {
        let memory = MemoryBackend::new();
        let fault = FaultBackend::new(Arc::new(memory.clone()));
        let store: Arc<dyn SegmentStorage> =
            Arc::new(Store::new(Arc::new(fault.clone()), options.clone()));
        let adapter = block(TantivyStorageAdapter::open(store, COLLECTION, SHARD)).unwrap();
        let meta = Path::new("meta.json");
        adapter.atomic_write(meta, b"v1").unwrap();
        assert_eq!(adapter.atomic_read(meta).unwrap(), b"v1");
        // Operations count from here.
        fault.set_fault(Fault::FailAt(k));
        let result = adapter.atomic_write(meta, b"v2");
        let ops = fault.ops();
        fault.set_fault(Fault::None);
        if result.is_ok() && ops <= k {
            break; // the fault lay past the commit's last operation: all covered
        }
        let landed = committed_meta(&memory) == b"v2";
        match &result {
            Ok(()) => assert!(landed, "k={k}: Ok, but v2 did not land"),
            Err(e) => {
                let unknown = matches!(
                    e.get_ref().and_then(|e| e.downcast_ref::<Error>()),
                    Some(Error::CommitOutcomeUnknown { .. })
                );
                assert!(
                    unknown || !landed,
                    "k={k}: v2 landed but the commit failed with {e}"
                );
                unknowns += usize::from(unknown);
            }
        }
        // Never wedged: the next commit goes through.
        adapter
            .atomic_write(meta, b"v3")
            .unwrap_or_else(|e| panic!("k={k}: the commit after the fault failed: {e}"));
        assert_eq!(committed_meta(&memory), b"v3", "k={k}");
        assert!(
            adapter.pending().is_empty(),
            "k={k}: {:?}",
            adapter.pending()
        );
        k += 1;
    }
    (k, unknowns)
}

/// A reader opens the files of the version its `meta.json` came from, even when another
/// process's commit removed them in between (a merge and `garbage_collect_files`).
#[test]
fn a_reader_opens_the_files_of_the_version_it_read_meta_json_from() {
    let dir = tempfile::tempdir().unwrap();
    let (_s1, writer) = strict_adapter_at(dir.path());
    let (_s2, reader) = strict_adapter_at(dir.path());
    let segment = Path::new("old.store");
    let mut w = writer.open_write(segment).unwrap();
    w.write_all(b"old segment").unwrap();
    w.terminate().unwrap();
    writer
        .atomic_write(Path::new("meta.json"), b"names old")
        .unwrap();

    assert_eq!(
        reader.atomic_read(Path::new("meta.json")).unwrap(),
        b"names old"
    );
    // The writer's merge and garbage collection land before the reader opens the file.
    writer.delete(segment).unwrap();
    writer
        .atomic_write(Path::new("meta.json"), b"names new")
        .unwrap();
    assert!(!writer.exists(segment).unwrap());

    assert!(reader.exists(segment).unwrap());
    let handle = reader.get_file_handle(segment).unwrap();
    assert_eq!(handle.read_bytes(0..11).unwrap().as_slice(), b"old segment");
    // Its next reload moves it on.
    assert_eq!(
        reader.atomic_read(Path::new("meta.json")).unwrap(),
        b"names new"
    );
    assert!(!reader.exists(segment).unwrap());
    assert!(matches!(
        reader.get_file_handle(segment),
        Err(OpenReadError::FileDoesNotExist(_))
    ));
}

/// A searcher's open file whose version retention removed, and whose content GC then
/// deleted, fails with the documented `VersionExpired`, not as corruption. A blob missing
/// under a retained version is still `Corrupt`.
#[test]
fn a_file_of_an_expired_version_is_version_expired_not_corrupt() {
    let memory = MemoryBackend::new();
    let options = StoreOptions {
        version_min_age: Duration::ZERO,
        max_writer_stall: Duration::from_millis(500),
        freshen_after: Duration::ZERO,
        gc_delete_delay: Duration::from_millis(20),
        clock_margin: Duration::from_millis(5),
        ..StoreOptions::default()
    };
    let store = Store::new(Arc::new(memory.clone()), options);
    let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
    let writer = block(TantivyStorageAdapter::open(
        shared.clone(),
        COLLECTION,
        SHARD,
    ))
    .unwrap();
    let reader = block(TantivyStorageAdapter::open(shared, COLLECTION, SHARD)).unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for name in ["old.store", "kept.store"] {
        let mut w = writer.open_write(Path::new(name)).unwrap();
        w.write_all(&content).unwrap();
        w.write_all(name.as_bytes()).unwrap(); // distinct blobs
        w.terminate().unwrap();
    }
    writer.atomic_write(Path::new("meta.json"), b"v1").unwrap();
    reader.atomic_read(Path::new("meta.json")).unwrap();
    // In memory there is no mapping: reads go to the backend, as on S3.
    let old = reader.get_file_handle(Path::new("old.store")).unwrap();
    let kept = reader.get_file_handle(Path::new("kept.store")).unwrap();

    writer.delete(Path::new("old.store")).unwrap();
    writer.atomic_write(Path::new("meta.json"), b"v2").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let gc = GcOptions {
        retention: RetentionPolicy {
            keep_last: Some(1),
            keep_within: None,
            ..RetentionPolicy::keep_all()
        },
        grace: Duration::from_millis(510),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    };
    let report = block(store.gc(&gc)).unwrap();
    assert_eq!(report.versions_deleted, 1, "{report:?}");
    assert!(report.blobs_deleted >= 1, "{report:?}");

    let err = old.read_bytes(0..100).unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(
        matches!(inner, Some(Error::VersionExpired { version: 1, .. })),
        "{err:?}"
    );
    // Still referenced by the retained version 2: readable.
    assert_eq!(kept.read_bytes(0..100).unwrap().as_slice(), &content[..100]);
    // Damage under a retained version: the blob of kept.store vanishes.
    let id = segstore::BlobId::of(&[&content[..], b"kept.store"].concat());
    block(memory.delete(&segstore::keys::blob(&id))).unwrap();
    let fresh = block(TantivyStorageAdapter::open(
        Arc::new(store.clone()),
        COLLECTION,
        SHARD,
    ))
    .unwrap();
    let handle = fresh.get_file_handle(Path::new("kept.store")).unwrap();
    let err = handle.read_bytes(0..100).unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(matches!(inner, Some(Error::Corrupt { .. })), "{err:?}");
}
