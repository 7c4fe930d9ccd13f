//! What an incremental sync costs: requests and bytes on both sides after a one-file
//! change, counted by `CountingBackend`. The figures in `docs/BENCHMARKS.md` ("Sync") come
//! from `SEGSTORE_SYNC_PATHS=100000 cargo test --test sync_cost -- --nocapture`; the default
//! run uses 10,000 paths and checks that the cost does not grow with the collection.

use std::sync::Arc;

use bytes::Bytes;
use segstore::backend::counting::CountingBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::sync::SyncOptions;
use segstore::{SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions};

fn p(i: usize) -> StoragePath {
    StoragePath::new(
        "c",
        StorageBackend::Tantivy,
        format!("s{}", i % 4),
        format!("seg{i:07}"),
    )
}

/// Every tenth file is a blob (5 KB), the rest are inline (200 bytes).
fn content(i: usize, salt: u8) -> Bytes {
    let len = if i.is_multiple_of(10) { 5_000 } else { 200 };
    let mut bytes: Vec<u8> = (0..len).map(|k| (k as u8) ^ salt).collect();
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(bytes)
}

#[tokio::test]
async fn a_one_file_change_costs_requests_in_proportion_to_the_change() {
    let paths: usize = std::env::var("SEGSTORE_SYNC_PATHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let src_counts = CountingBackend::new(MemoryBackend::new());
    let dst_counts = CountingBackend::new(MemoryBackend::new());
    let src_counts = Arc::new(src_counts);
    let dst_counts = Arc::new(dst_counts);
    let src = Store::new(src_counts.clone(), StoreOptions::default());
    let dst = Store::new(dst_counts.clone(), StoreOptions::default());
    let mut tx = src.transaction("c").await.unwrap();
    for i in 0..paths {
        tx.put(&p(i), content(i, 0)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let first = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(first.blobs_copied as usize, paths.div_ceil(10));

    // One file changes (a blob), and the sync runs in a fresh process (cold node caches).
    src.write(&p(10), &content(10, 0xAA)).await.unwrap();
    let src = Store::new(src_counts.clone(), StoreOptions::default());
    let dst = Store::new(dst_counts.clone(), StoreOptions::default());
    let (s0, d0) = (src_counts.snapshot(), dst_counts.snapshot());
    let report = src
        .sync_to("c", &dst, &SyncOptions::default())
        .await
        .unwrap();
    let (s, d) = (
        src_counts.snapshot().since(&s0),
        dst_counts.snapshot().since(&d0),
    );
    println!("sync of a one-file change in {paths} paths: {report:?}");
    println!("  source:      {s} ({} requests)", s.total());
    println!("  destination: {d} ({} requests)", d.total());
    assert_eq!(
        (report.blobs_copied, report.trees_copied),
        (1, 2),
        "{report:?}"
    );
    // Independent of the collection's size: a few requests for the root, one shard node
    // and one page on each side, the blob, and the commit.
    assert!(s.total() <= 20, "source: {s}");
    assert!(d.total() <= 20, "destination: {d}");
    assert_eq!(s.list + d.list, 0, "a sync must not list the collection");
}
