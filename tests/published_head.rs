//! The published head (`_head`, `StoreOptions::publish_head`): a cold reader starts from
//! it in one GET, trusts it only as far as its timestamp proves (within its freshness
//! bound without asking; within `version_min_age` as a version to probe forward from),
//! and ignores a garbled, foreign, future or old one. Every test runs on virtual time.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use segstore::backend::counting::CountingBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::clock::{Clock, TokioClock};
use segstore::gc::{GcOptions, RetentionPolicy};
use segstore::{keys, Freshness, StorageBackend, StoragePath, Store, StoreOptions};

fn p(name: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Tantivy, "s0", name)
}

fn clock() -> TokioClock {
    TokioClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

fn options(clock: &Arc<dyn Clock>, publish: bool, freshness: Freshness) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        publish_head: publish,
        read_freshness: freshness,
        ..StoreOptions::default()
    }
}

const BOUND: Duration = Duration::from_secs(60);

/// A cold reader on `backend`, counting its requests.
fn cold(
    backend: &Arc<dyn ObjectBackend>,
    clock: &Arc<dyn Clock>,
    freshness: Freshness,
) -> (CountingBackend, Store) {
    let counting = CountingBackend::with_log(backend.clone());
    let store = Store::new(Arc::new(counting.clone()), options(clock, false, freshness));
    (counting, store)
}

#[tokio::test(start_paused = true)]
async fn a_cold_reader_finds_a_published_head_in_one_request() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    for v in 1..=40u8 {
        writer
            .write_bytes(&p("a"), Bytes::from(vec![v]))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (counting, bounded) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    assert_eq!(bounded.head("c").await.unwrap().version, 40);
    let log: Vec<String> = counting.log().iter().map(|r| r.to_string()).collect();
    assert_eq!(log, ["get manifests/c/_head"], "{log:?}");
    assert_eq!(bounded.read_bytes(&p("a")).await.unwrap(), vec![40u8]);

    // Strict: the published version is a known one to probe forward from.
    let (counting, strict) = cold(&backend, &clock, Freshness::Strict);
    assert_eq!(strict.head("c").await.unwrap().version, 40);
    let log: Vec<String> = counting.log().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        log,
        [
            "get manifests/c/_head",
            "head manifests/c/00000000000000000041"
        ],
        "{log:?}"
    );

    // Without a published head: the hint, probes, the boundary and the root.
    let unpublished: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(
        unpublished.clone(),
        options(&clock, false, Freshness::Strict),
    );
    for v in 1..=40u8 {
        writer
            .write_bytes(&p("a"), Bytes::from(vec![v]))
            .await
            .unwrap();
    }
    let (counting, strict) = cold(&unpublished, &clock, Freshness::Strict);
    assert_eq!(strict.head("c").await.unwrap().version, 40);
    assert!(counting.snapshot().total() >= 5, "{:?}", counting.log());
}

#[tokio::test(start_paused = true)]
async fn a_published_head_is_used_without_asking_only_within_the_bound() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let publisher = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    let other = Store::new(backend.clone(), options(&clock, false, Freshness::Strict));
    publisher.write_bytes(&p("a"), "one".into()).await.unwrap();
    other.write_bytes(&p("a"), "two".into()).await.unwrap();

    // Version 2 landed after the published root's timestamp: within the bound, a cold
    // bounded reader may miss it (that is the bound), a strict one may not.
    let (_, bounded) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    assert_eq!(bounded.read_bytes(&p("a")).await.unwrap(), "one");
    let (_, strict) = cold(&backend, &clock, Freshness::Strict);
    assert_eq!(strict.read_bytes(&p("a")).await.unwrap(), "two");

    // Past the bound (the clock margin counts against it), the reader asks.
    let margin = StoreOptions::default().clock_margin;
    tokio::time::sleep(BOUND - margin).await;
    let (_, bounded) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    assert_eq!(bounded.read_bytes(&p("a")).await.unwrap(), "two");
}

#[tokio::test(start_paused = true)]
async fn an_old_published_head_is_ignored_once_retention_may_have_acted() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let publisher = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    let other = Store::new(backend.clone(), options(&clock, false, Freshness::Strict));
    publisher.write_bytes(&p("a"), "one".into()).await.unwrap();
    for word in ["two", "three", "four"] {
        other.write_bytes(&p("a"), word.into()).await.unwrap();
    }
    // Versions 1-3 grow older than version_min_age and the GC grace; retention keeps
    // only version 4, and GC frees what only they referenced. The published head still
    // names version 1.
    let gc = GcOptions {
        retention: RetentionPolicy {
            keep_last: Some(1),
            keep_within: None,
            ..RetentionPolicy::default()
        },
        ..GcOptions::default()
    };
    tokio::time::sleep(gc.grace + Duration::from_secs(1)).await;
    let report = other.gc(&gc).await.unwrap();
    assert_eq!(report.versions_deleted, 3, "{report:?}");
    assert!(backend
        .head(&keys::manifest("c", 1))
        .await
        .unwrap()
        .is_none());
    assert!(backend
        .head(&keys::published_head("c"))
        .await
        .unwrap()
        .is_some());

    let mut latest = 4;
    for freshness in [
        Freshness::Strict,
        Freshness::Bounded(Duration::from_secs(86_400)),
    ] {
        let (_, reader) = cold(&backend, &clock, freshness);
        assert_eq!(
            reader.head("c").await.unwrap().version,
            latest,
            "{freshness:?}"
        );
        assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "four");
        // Its commit lands after the latest, never on a re-created version number.
        let mine = Bytes::from(format!("{freshness:?}"));
        let info = reader.write_bytes(&p("b"), mine).await.unwrap();
        assert_eq!(info.version, latest + 1, "{info:?}");
        latest = info.version;
    }
}

#[tokio::test(start_paused = true)]
async fn garbled_foreign_and_future_published_heads_are_ignored() {
    let time = clock();
    let clock: Arc<dyn Clock> = Arc::new(time.clone());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(backend.clone(), options(&clock, false, Freshness::Strict));
    writer.write_bytes(&p("a"), "one".into()).await.unwrap();
    writer.write_bytes(&p("a"), "two".into()).await.unwrap();
    let bounded = Freshness::Bounded(Duration::from_secs(86_400));
    let key = keys::published_head("c");

    backend
        .put(&key, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let (_, reader) = cold(&backend, &clock, bounded);
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "two");

    // Another collection's root, copied under this collection's key.
    let elsewhere = StoragePath::new("d", StorageBackend::Tantivy, "s0", "a");
    for word in ["x", "y", "z"] {
        writer.write_bytes(&elsewhere, word.into()).await.unwrap();
    }
    let foreign = backend.get(&keys::manifest("d", 3)).await.unwrap();
    backend.put(&key, foreign).await.unwrap();
    let (_, reader) = cold(&backend, &clock, bounded);
    assert_eq!(reader.head("c").await.unwrap().version, 2);

    // A root stamped an hour ahead (a publisher whose clock is wrong) proves nothing.
    let ahead: Arc<dyn Clock> = Arc::new(time.with_skew(3_600_000));
    let skewed = Store::new(backend.clone(), options(&ahead, true, Freshness::Strict));
    skewed.write_bytes(&p("a"), "three".into()).await.unwrap();
    writer.write_bytes(&p("a"), "four".into()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let (_, reader) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    assert_eq!(reader.read_bytes(&p("a")).await.unwrap(), "four");
}

/// The tree requests in a log.
fn tree_reads(counting: &CountingBackend) -> Vec<String> {
    counting
        .log()
        .iter()
        .map(|r| r.to_string())
        .filter(|r| r.contains("trees/"))
        .collect()
}

/// The head carries the shard objects it references (up to a budget), so that a cold
/// reader looks a file up without fetching them: a lookup costs the `_head` GET alone.
#[tokio::test(start_paused = true)]
async fn a_published_head_carries_its_shard_to_a_cold_reader() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        writer
            .write_bytes(&p(name), Bytes::from(vec![i as u8; 10]))
            .await
            .unwrap();
    }
    let other_shard = StoragePath::new("c", StorageBackend::Vector, "s1", "v");
    writer
        .write_bytes(&other_shard, Bytes::from_static(b"vector"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    for freshness in [Freshness::Bounded(BOUND), Freshness::Strict] {
        let (counting, reader) = cold(&backend, &clock, freshness);
        assert_eq!(reader.read_bytes(&p("b")).await.unwrap(), vec![1u8; 10]);
        assert_eq!(
            reader.read_bytes(&other_shard).await.unwrap(),
            b"vector".to_vec()
        );
        assert_eq!(reader.list(&p("")).await.unwrap().len(), 3);
        assert!(
            tree_reads(&counting).is_empty(),
            "{freshness:?}: {:?}",
            counting.log()
        );
    }
}

/// `_head` as builds before attachments wrote it (the encoded root alone) still opens: the
/// reader uses it as the head and fetches the shard.
#[tokio::test(start_paused = true)]
async fn a_head_published_as_a_root_alone_still_opens() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    writer
        .write_bytes(&p("a"), Bytes::from_static(b"old format"))
        .await
        .unwrap();
    let root = writer.head("c").await.unwrap();
    let root_alone = segstore::manifest::encode_root(&root).unwrap();
    backend
        .put(&keys::published_head("c"), root_alone)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (counting, reader) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    assert_eq!(
        reader.read_bytes(&p("a")).await.unwrap(),
        b"old format".to_vec()
    );
    let log: Vec<String> = counting.log().iter().map(|r| r.to_string()).collect();
    assert_eq!(log.len(), 2, "the head, then the shard: {log:?}");
    assert_eq!(log[0], "get manifests/c/_head");
    assert_eq!(tree_reads(&counting).len(), 1, "{log:?}");
}

/// A head whose attachments exceed the budget leaves the big shard out, and the reader
/// fetches it: attachments are a shortcut, never required.
#[tokio::test(start_paused = true)]
async fn a_shard_too_big_to_attach_is_fetched() {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let writer = Store::new(backend.clone(), options(&clock, true, Freshness::Strict));
    // 200 inline files of 1 KiB: about 200 KiB of pages, beyond the 64 KiB budget.
    let mut txn = writer.transaction("c").await.unwrap();
    for i in 0..200u32 {
        txn.put(&p(&format!("f{i:03}")), vec![i as u8; 1024])
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (counting, reader) = cold(&backend, &clock, Freshness::Bounded(BOUND));
    for i in 0..200u32 {
        assert_eq!(
            reader.read_bytes(&p(&format!("f{i:03}"))).await.unwrap(),
            vec![i as u8; 1024]
        );
    }
    assert!(!tree_reads(&counting).is_empty(), "{:?}", counting.log());
}
