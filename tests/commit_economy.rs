//! The request economies of issue 17 keep the protocol's rules: bounded read freshness
//! (own writes visible, `refresh` asks at once), commits built on a head without probing
//! (`lean_commits`: a lost race is detected by the create-only root and retried), small blobs created
//! optimistically (a dedup hit still refreshes the blob's age and is confirmed at commit),
//! and single-page shards (GC still marks what they reference).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::counting::{CountingBackend, RequestKind};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::gc::{GcOptions, RetentionPolicy};
use segstore::{keys, Freshness, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions};

fn p(name: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Tantivy, "s0", name)
}

fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

fn bounded() -> StoreOptions {
    StoreOptions {
        read_freshness: Freshness::Bounded(Duration::from_secs(3600)),
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn bounded_reads_may_lag_others_but_never_own_writes_and_refresh_catches_up() {
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let reader = Store::new(backend.clone(), bounded());
    let other = Store::new(backend.clone(), StoreOptions::default());
    other.write_bytes(&p("a"), "one".into()).await.unwrap();
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "one");

    other.write_bytes(&p("a"), "two".into()).await.unwrap();
    // Within the bound the reader keeps the head it confirmed.
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "one");
    // Its own commit builds on the latest version (the create-only root refuses a stale
    // one) and is visible to it at once, with the other process's change.
    reader.write_bytes(&p("b"), "mine".into()).await.unwrap();
    assert_eq!(reader.read_bytes(&p("b")).await.unwrap(), "mine");
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "two");

    other.write_bytes(&p("a"), "three".into()).await.unwrap();
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "two");
    assert_eq!(reader.refresh("c").await.unwrap().version, 4);
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "three");

    // Strict mode sees every commit that returned.
    other.write_bytes(&p("a"), "four".into()).await.unwrap();
    let strict = Store::new(
        backend,
        StoreOptions {
            read_freshness: Freshness::Strict,
            ..StoreOptions::default()
        },
    );
    assert_eq!(strict.read_bytes(&p("a")).await.unwrap(), "four");
    other.write_bytes(&p("a"), "five".into()).await.unwrap();
    assert_eq!(strict.read_bytes(&p("a")).await.unwrap(), "five");
}

#[tokio::test]
async fn bounded_reads_never_report_a_file_another_process_created_as_missing() {
    let counting = Arc::new(CountingBackend::new(MemoryBackend::new()));
    let backend: Arc<dyn ObjectBackend> = counting.clone();
    let reader = Store::new(backend.clone(), bounded());
    let other = Store::new(backend.clone(), StoreOptions::default());
    other.write_bytes(&p("a"), "one".into()).await.unwrap();
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "one");

    // Created after the reader confirmed its head, well within the bound: a lookup that
    // misses asks for the head again instead of answering "not found".
    other.write_bytes(&p("new"), "fresh".into()).await.unwrap();
    assert!(SegmentStorage::exists(&reader, &p("new")).await.unwrap());
    assert_eq!(reader.read_bytes(&p("new")).await.unwrap(), "fresh");
    assert_eq!(reader.metadata(&p("new")).await.unwrap().size, 5);
    let err = reader.read_bytes(&p("never")).await.unwrap_err();
    assert!(matches!(err, segstore::Error::NotFound { .. }), "{err}");

    // A hit costs no request for the head; a miss costs one probe and no more.
    counting.reset();
    reader.read_bytes(&p("a")).await.unwrap();
    assert_eq!(counting.snapshot().head, 0);
    assert!(!SegmentStorage::exists(&reader, &p("never")).await.unwrap());
    assert_eq!(counting.snapshot().head, 1, "{:?}", counting.snapshot());
}

#[tokio::test]
async fn the_default_is_a_one_second_bound() {
    assert_eq!(
        StoreOptions::default().read_freshness,
        Freshness::Bounded(Duration::from_secs(1))
    );
    assert_eq!(segstore::store::DEFAULT_READ_BOUND, Duration::from_secs(1));
}

#[tokio::test]
async fn a_commit_on_a_stale_head_loses_the_create_and_lands_on_the_latest() {
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let counting: CountingBackend = CountingBackend::with_log(backend.clone());
    let lean = StoreOptions {
        lean_commits: true,
        ..StoreOptions::default()
    };
    let a = Store::new(Arc::new(counting.clone()), lean);
    let b = Store::new(backend, StoreOptions::default());
    a.write_bytes(&p("a"), "a1".into()).await.unwrap();
    b.write_bytes(&p("b"), "b1".into()).await.unwrap();
    b.write_bytes(&p("b"), "b2".into()).await.unwrap();

    // `a` knows version 1 and sends version 2 without probing: refused, settled, rebased.
    counting.reset();
    let info = a.write_bytes(&p("a"), "a2".into()).await.unwrap();
    assert_eq!(info.version, 4);
    let log: Vec<String> = counting.log().iter().map(|r| r.to_string()).collect();
    assert!(
        log[0].starts_with("put_if_absent trees/")
            && log[1] == "put_if_absent manifests/c/00000000000000000002",
        "the first attempt sends the root without probing: {log:?}"
    );
    for (path, want) in [("a", "a2"), ("b", "b2")] {
        assert_eq!(a.read_bytes(&p(path)).await.unwrap(), want);
    }

    // The next commit builds on the head its own commit confirmed: no probe.
    counting.reset();
    a.write_bytes(&p("c"), "c1".into()).await.unwrap();
    let snapshot = counting.snapshot();
    assert_eq!(
        (snapshot.head, snapshot.total()),
        (0, 2),
        "{:?}",
        counting.log()
    );
}

#[tokio::test]
async fn a_dedup_hit_on_an_old_small_blob_refreshes_it_and_is_confirmed() {
    let backend = MemoryBackend::new();
    let counting: CountingBackend =
        CountingBackend::with_log(Arc::new(backend.clone()) as Arc<dyn ObjectBackend>);
    let options = StoreOptions {
        freshen_after: Duration::from_millis(20),
        max_writer_stall: Duration::from_millis(100),
        clock_margin: Duration::from_millis(10),
        ..StoreOptions::default()
    };
    let store = Store::new(Arc::new(counting.clone()), options);
    let content = data(300_000, 1);
    store.write_bytes(&p("one"), content.clone()).await.unwrap();
    let id = store.entry(&p("one")).await.unwrap().unwrap().id;
    let key = keys::blob(&id);
    let before = backend.head(&key).await.unwrap().unwrap().last_modified;
    // Past the stall window: the blob is foreign to the next commit.
    tokio::time::sleep(Duration::from_millis(150)).await;

    counting.reset();
    store.write_bytes(&p("two"), content.clone()).await.unwrap();
    let on_blob: Vec<RequestKind> = counting
        .log()
        .into_iter()
        .filter(|r| r.key == key.as_str())
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        on_blob,
        vec![
            RequestKind::PutIfAbsent, // refused: it exists
            RequestKind::Head,        // its age
            RequestKind::Touch,       // refreshed
            RequestKind::Head,        // confirmed under the GC protocol at commit
        ]
    );
    let after = backend.head(&key).await.unwrap().unwrap().last_modified;
    assert!(after > before, "the dedup hit refreshed the blob's age");
    assert_eq!(store.read_bytes(&p("two")).await.unwrap(), content);
}

#[tokio::test]
async fn gc_keeps_what_a_single_page_shard_references() {
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let options = StoreOptions {
        max_writer_stall: Duration::from_millis(150),
        freshen_after: Duration::from_millis(20),
        version_min_age: Duration::ZERO,
        gc_delete_delay: Duration::from_millis(40),
        clock_margin: Duration::from_millis(10),
        lean_commits: true,
        ..StoreOptions::default()
    };
    let store = Store::new(backend.clone(), options);
    let keep = data(300_000, 2);
    store.write_bytes(&p("keep"), keep.clone()).await.unwrap();
    store
        .write_bytes(&p("gone"), data(300_000, 3))
        .await
        .unwrap();
    store.delete(&p("gone")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let report = store.gc(&keep_last_one()).await.unwrap();
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    let fresh = Store::new(backend, StoreOptions::default());
    assert_eq!(fresh.read_bytes(&p("keep")).await.unwrap(), keep);
}

/// A GC run keeping the latest version only, with a grace the tests sleep past.
fn keep_last_one() -> GcOptions {
    GcOptions {
        retention: RetentionPolicy {
            keep_last: Some(1),
            keep_within: None,
            ..RetentionPolicy::keep_all()
        },
        grace: Duration::from_millis(300),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    }
}

/// GC and retention on a store whose reads are bounded must still see every version
/// committed before they ran: the marks come from the latest version asked for now, not
/// from a head served within the read bound (which would leave another process's newest
/// blobs unmarked and sweep them).
#[tokio::test]
async fn gc_on_a_bounded_reader_marks_what_other_processes_committed() {
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let options = StoreOptions {
        max_writer_stall: Duration::from_millis(150),
        freshen_after: Duration::from_millis(20),
        version_min_age: Duration::ZERO,
        gc_delete_delay: Duration::from_millis(40),
        clock_margin: Duration::from_millis(10),
        read_freshness: Freshness::Bounded(Duration::from_secs(3600)),
        ..StoreOptions::default()
    };
    let operator = Store::new(backend.clone(), options.clone());
    let writer = Store::new(backend.clone(), options);
    writer
        .write_bytes(&p("old"), data(300_000, 7))
        .await
        .unwrap();
    // The operator's service reads once: its head is now confirmed for an hour.
    assert_eq!(operator.head("c").await.unwrap().version, 1);
    let new = data(300_000, 8);
    writer.write_bytes(&p("new"), new.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let report = operator.gc(&keep_last_one()).await.unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    let fresh = Store::new(backend, StoreOptions::default());
    assert_eq!(fresh.read_bytes(&p("new")).await.unwrap(), new);
}

/// The other operations that act on "the latest version" ask for it too: a snapshot, a
/// fork and a sync of it are of the version that exists, not of a head cached for reads.
#[tokio::test]
async fn lifecycle_operations_on_a_bounded_reader_act_on_the_latest_version() {
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let operator = Store::new(backend.clone(), bounded());
    let writer = Store::new(backend.clone(), StoreOptions::default());
    writer.write_bytes(&p("a"), "one".into()).await.unwrap();
    assert_eq!(operator.head("c").await.unwrap().version, 1);
    writer.write_bytes(&p("a"), "two".into()).await.unwrap();

    let snapshot = operator
        .create_snapshot("c", "latest", None, None)
        .await
        .unwrap();
    assert_eq!(snapshot.version, 2, "{snapshot:?}");
}
