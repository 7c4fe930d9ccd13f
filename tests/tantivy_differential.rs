//! Differential test: the same corpus and queries on tantivy's `MmapDirectory` and on the
//! adapter give identical top-k results (scores and order) and stored documents.
//!
//! The comparison takes any `Box<dyn Directory>`, so other stores (S3, cached) can be
//! added as more cases.

mod tantivy_support;

use tantivy::directory::MmapDirectory;
use tantivy::{Directory, IndexSettings, IndexSortByField, Order};
use tantivy_support::*;

const DOCS: u64 = 3_000;

fn compare(candidate: Box<dyn Directory>, settings: IndexSettings) {
    compare_long(candidate, settings, 0)
}

/// [`compare`] with `payload` bytes of stored noise per document.
fn compare_long(candidate: Box<dyn Directory>, settings: IndexSettings, payload: usize) {
    let reference = tempfile::tempdir().unwrap();
    let mmap: Box<dyn Directory> = Box::new(MmapDirectory::open(reference.path()).unwrap());
    let expected = differential_run_long(mmap, DOCS, settings.clone(), payload);
    let actual = differential_run_long(candidate, DOCS, settings, payload);
    assert!(expected.iter().any(|hits| hits.len() > 10));
    assert!(expected
        .iter()
        .any(|hits| !hits.is_empty() && hits.len() < 10));
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        // The top 10 first, for a readable failure, then every hit.
        let top = |h: &Hits| h.iter().take(10).cloned().collect::<Vec<_>>();
        assert_eq!(top(e), top(a), "top-10 of query {:?} differs", QUERIES[i]);
        assert_eq!(e, a, "hits of query {:?} differ", QUERIES[i]);
    }
}

#[test]
fn adapter_over_local_storage_matches_mmap_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, adapter) = open_adapter(dir.path());
    compare(Box::new(adapter), IndexSettings::default());
}

#[test]
fn adapter_matches_mmap_directory_with_a_sorted_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, adapter) = open_adapter(dir.path());
    let settings = IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: "id".into(),
            order: Order::Asc,
        }),
        ..IndexSettings::default()
    };
    compare(Box::new(adapter), settings);
}

#[path = "support/counting.rs"]
mod counting;
mod support;

/// Runs `f` on a runtime that stays alive for the whole test, so S3 connections made while
/// opening stay usable afterwards.
fn with_runtime<T>(f: impl FnOnce(&tokio::runtime::Runtime) -> T) -> T {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    f(&rt)
}

/// Stored bytes per document enough for the doc stores to pass 1 MiB, the size from which
/// S3 blobs get an outboard and the adapter reads them by verified range, not whole.
const S3_PAYLOAD: usize = 1024;

#[test]
fn adapter_over_s3_matches_mmap_directory() {
    with_runtime(|rt| {
        let Some(config) = rt.block_on(support::moto::fresh_bucket()) else {
            return;
        };
        let s3 = rt
            .block_on(segstore::backend::s3::S3Backend::connect(config))
            .unwrap();
        let counting = counting::Counting::new(std::sync::Arc::new(s3));
        let store = segstore::Store::new(counting.clone(), segstore::StoreOptions::default());
        let shared: std::sync::Arc<dyn segstore::SegmentStorage> = std::sync::Arc::new(store);
        let adapter = rt
            .block_on(segstore::TantivyStorageAdapter::open(
                shared, COLLECTION, SHARD,
            ))
            .unwrap();
        compare_long(Box::new(adapter), IndexSettings::default(), S3_PAYLOAD);
        // Plain S3 has no local mapping: files were read lazily, some by verified range.
        let reads = counting.all();
        assert!(
            reads.iter().any(|(key, _)| key.ends_with(".obao")),
            "no file was large enough for range reads: {reads:?}"
        );
        assert!(reads
            .iter()
            .any(|(key, r)| key.starts_with("blobs/") && !key.ends_with(".obao") && r.ranges > 0));
    });
}

#[test]
fn adapter_over_the_cached_tier_matches_mmap_directory() {
    with_runtime(|rt| {
        let dir = tempfile::tempdir().unwrap();
        let l2 = rt
            .block_on(segstore::backend::local::LocalBackend::open(
                dir.path().join("l2"),
            ))
            .unwrap();
        // A small L1, so that evictions happen while the index is built and searched.
        let store = rt
            .block_on(segstore::store::CachedStorage::open(
                dir.path().join("l1"),
                2 * 1024 * 1024,
                std::sync::Arc::new(l2),
                segstore::StoreOptions::default(),
            ))
            .unwrap();
        let shared: std::sync::Arc<dyn segstore::SegmentStorage> = std::sync::Arc::new(store);
        let adapter = rt
            .block_on(segstore::TantivyStorageAdapter::open(
                shared, COLLECTION, SHARD,
            ))
            .unwrap();
        compare(Box::new(adapter), IndexSettings::default());
    });
}
