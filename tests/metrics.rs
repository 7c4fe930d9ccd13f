//! The metrics of `segstore::observe`, read back through a recorder installed for this test
//! binary. The recorder is global, so the tests take turns (`TURN`) and read what was
//! recorded between two snapshots.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::clock::{Clock, TokioClock};
use segstore::gc::{GcOptions, RetentionPolicy};
use segstore::{
    BlobId, CachingBackend, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions,
};
use support::moto;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn recorder() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// What was recorded since the last call (a snapshot resets counters and drains
/// histograms), by `name{label=value,...}`: counters' increments, and each histogram's
/// number of samples (under its name with `#samples` appended).
fn take() -> BTreeMap<String, u64> {
    recorder()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => (name, n),
                DebugValue::Histogram(samples) => (format!("{name}#samples"), samples.len() as u64),
                DebugValue::Gauge(_) => (name, 0),
            }
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn p(name: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Vector, "s0", name)
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 11) as u8 ^ seed)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn commits_retries_and_gc_are_counted() {
    let _turn = TURN.lock().await;
    recorder();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let backend: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let options = StoreOptions {
        clock: clock.clone(),
        ..StoreOptions::default()
    };
    let a = Store::open(backend.clone(), options.clone()).await.unwrap();
    let b = Store::open(backend.clone(), options.clone()).await.unwrap();
    take();

    for i in 0..3u8 {
        SegmentStorage::write(&a, &p(&format!("f{i}")), &noise(10_000, i))
            .await
            .unwrap();
    }
    // The same bytes again change nothing: no new version.
    SegmentStorage::write(&a, &p("f0"), &noise(10_000, 0))
        .await
        .unwrap();
    // `b` commits behind `a`'s back; `a` builds on the head it knows and loses the race once.
    SegmentStorage::write(&b, &p("g"), b"from b").await.unwrap();
    SegmentStorage::write(&a, &p("f3"), b"after b")
        .await
        .unwrap();
    let commits = take();
    assert_eq!(
        commits["segstore_commits_total{outcome=created}"], 5,
        "{commits:?}"
    );
    assert_eq!(
        commits["segstore_commits_total{outcome=unchanged}"], 1,
        "{commits:?}"
    );
    assert_eq!(
        commits["segstore_commit_retries_total{reason=lost_race}"], 1,
        "{commits:?}"
    );
    assert_eq!(commits["segstore_commit_seconds{}#samples"], 6);

    // Two blobs lose their last reference; past the grace period GC deletes them.
    SegmentStorage::delete(&a, &p("f1")).await.unwrap();
    SegmentStorage::delete(&a, &p("f2")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    take();
    let report = a
        .gc(&GcOptions {
            retention: RetentionPolicy {
                keep_last: Some(1),
                keep_within: None,
                ..RetentionPolicy::keep_all()
            },
            ..GcOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(report.blobs_deleted, 2, "{report:?}");
    let gc = take();
    assert_eq!(gc["segstore_gc_runs_total{}"], 1, "{gc:?}");
    assert_eq!(
        gc["segstore_gc_objects_deleted_total{object=blob}"], 2,
        "{gc:?}"
    );
    assert_eq!(
        gc["segstore_gc_objects_deleted_total{object=version}"],
        report.versions_deleted
    );
    assert_eq!(
        gc["segstore_gc_bytes_freed_total{}"],
        report.bytes_freed + report.tree_bytes_freed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_and_misses_are_counted() {
    let _turn = TURN.lock().await;
    let data = Bytes::from(noise(200_000, 7));
    let id = BlobId::of(&data);
    let key = segstore::keys::blob(&id);
    let l2: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    l2.put(&key, data.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingBackend::open(dir.path(), 64 << 20, l2)
        .await
        .unwrap();
    take();
    for _ in 0..3 {
        assert_eq!(
            (&cache as &dyn ObjectBackend)
                .get_blob(&key, &id, data.len() as u64)
                .await
                .unwrap()
                .bytes,
            data
        );
    }
    let seen = take();
    let stats = cache.stats();
    assert_eq!(
        seen["segstore_cache_misses_total{}"], stats.misses,
        "{seen:?}"
    );
    assert_eq!(seen["segstore_cache_hits_total{}"], stats.hits, "{seen:?}");
    assert_eq!((stats.misses, stats.hits), (1, 2));
    assert_eq!(
        seen["segstore_cache_bytes_from_l2_total{}"],
        data.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_requests_and_bytes_are_counted_as_sent() {
    let _turn = TURN.lock().await;
    recorder();
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let raw: Arc<dyn ObjectBackend> = Arc::new(S3Backend::connect(config).await.unwrap());
    let store = Store::open(raw, StoreOptions::default()).await.unwrap();
    SegmentStorage::write(&store, &p("warm-up"), &noise(300_000, 1))
        .await
        .unwrap();

    take();
    let data = noise(300_000, 2);
    SegmentStorage::write(&store, &p("seg"), &data)
        .await
        .unwrap();
    let commit = take();
    let requests: u64 = commit
        .iter()
        .filter(|(name, _)| name.starts_with("segstore_s3_requests_total"))
        .map(|(_, n)| n)
        .sum();
    // The budget `tests/request_budget.rs` asserts from the counting backend: 3 requests.
    assert_eq!(requests, 3, "{commit:?}");
    assert!(
        commit["segstore_s3_requests_total{kind=put_if_absent}"] >= 1,
        "{commit:?}"
    );
    assert!(
        commit["segstore_s3_bytes_sent_total{}"] >= data.len() as u64,
        "{commit:?}"
    );

    take();
    assert_eq!(SegmentStorage::read(&store, &p("seg")).await.unwrap(), data);
    let read = take();
    assert_eq!(read["segstore_s3_requests_total{kind=get}"], 1, "{read:?}");
    assert!(
        read["segstore_s3_bytes_received_total{}"] >= data.len() as u64,
        "{read:?}"
    );
}

#[test]
fn every_metric_is_documented_in_operations() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .unwrap();
    for metric in segstore::observe::METRICS {
        let row = format!("| `{}` | {} |", metric.name, metric.kind);
        assert!(doc.contains(&row), "docs/OPERATIONS.md lacks {row}");
        assert!(
            doc.contains(metric.meaning),
            "docs/OPERATIONS.md: {}",
            metric.meaning
        );
    }
}
