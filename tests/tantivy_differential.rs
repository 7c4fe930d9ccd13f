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
    let reference = tempfile::tempdir().unwrap();
    let mmap: Box<dyn Directory> = Box::new(MmapDirectory::open(reference.path()).unwrap());
    let expected = differential_run(mmap, DOCS, settings.clone());
    let actual = differential_run(candidate, DOCS, settings);
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

#[test]
fn adapter_over_s3_matches_mmap_directory() {
    with_runtime(|rt| {
        let Some(config) = rt.block_on(support::moto::fresh_bucket()) else {
            return;
        };
        let store = rt.block_on(segstore::S3Storage::connect(config)).unwrap();
        let shared: std::sync::Arc<dyn segstore::SegmentStorage> = std::sync::Arc::new(store);
        let adapter = rt
            .block_on(segstore::TantivyStorageAdapter::open(
                shared, COLLECTION, SHARD,
            ))
            .unwrap();
        compare(Box::new(adapter), IndexSettings::default());
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
