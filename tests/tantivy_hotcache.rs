//! The tantivy hotcache (`.segstore-hotcache`, written with each `meta.json` commit): a
//! cold reader opens from it, and gets the same results with it, without it (an index
//! written by an adapter that wrote none) and with a damaged or stale one, which only
//! costs requests.
//!
//! Over the in-memory backend, whose blobs are read remotely (nothing is mapped), counted.

mod tantivy_support;

use std::sync::Arc;

use bytes::Bytes;
use segstore::backend::counting::{CountingBackend, RequestCounts};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::{
    SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions, TantivyAdapterOptions,
    TantivyStorageAdapter,
};
use tantivy::{Index, IndexSettings, IndexWriter};
use tantivy_support::*;

const DOCS: u64 = 1_000;
const HOTCACHE: &str = ".segstore-hotcache";

fn hot_path() -> StoragePath {
    StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, HOTCACHE)
}

async fn store_on(raw: &Arc<dyn ObjectBackend>) -> Store {
    Store::open(raw.clone(), StoreOptions::default())
        .await
        .expect("store")
}

fn adapter_on(store: Store, hotcache: bool) -> TantivyStorageAdapter {
    let options = TantivyAdapterOptions {
        hotcache: Some(hotcache),
        ..TantivyAdapterOptions::default()
    };
    let shared: Arc<dyn SegmentStorage> = Arc::new(store);
    block(TantivyStorageAdapter::open_with(
        shared, COLLECTION, SHARD, options,
    ))
    .expect("adapter")
}

/// Writes the corpus in two commits (with a delete), merges everything into one segment
/// and lets tantivy collect its garbage (which deletes files the hotcache of the
/// earlier commits covered).
/// Returns the requests the writer sent.
fn write_index(raw: &Arc<dyn ObjectBackend>, hotcache: bool) -> RequestCounts {
    let counting: CountingBackend = CountingBackend::new(raw.clone());
    let counted: Arc<dyn ObjectBackend> = Arc::new(counting.clone());
    let adapter = adapter_on(block(store_on(&counted)), hotcache);
    let (schema, fields) = schema();
    let index = Index::create(adapter, schema, IndexSettings::default()).expect("create");
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 50_000_000).unwrap();
    add_long_docs(&writer, &fields, 0..DOCS / 2, 300);
    writer.commit().unwrap();
    add_long_docs(&writer, &fields, DOCS / 2..DOCS, 300);
    writer.delete_term(tantivy::Term::from_field_u64(fields.id, 7));
    writer.commit().unwrap();
    let ids = index.searchable_segment_ids().unwrap();
    writer.merge(&ids).wait().unwrap();
    writer.garbage_collect_files().wait().unwrap();
    writer.wait_merging_threads().unwrap();
    counting.snapshot()
}

/// A cold process: requests of the open (`Index::open` and a reader) and every query's hits.
fn cold_read(raw: &Arc<dyn ObjectBackend>) -> (RequestCounts, Vec<Hits>) {
    let counting: CountingBackend = CountingBackend::with_log(raw.clone());
    let store = block(Store::open(
        Arc::new(counting.clone()),
        StoreOptions::default(),
    ))
    .unwrap();
    counting.reset();
    let index = Index::open(adapter_on(store, false)).expect("open");
    let searcher = index.reader().unwrap().searcher();
    let open = counting.snapshot();
    assert_eq!(searcher.segment_readers().len(), 1);
    (open, run_queries(&index, DOCS))
}

fn memory() -> Arc<dyn ObjectBackend> {
    Arc::new(MemoryBackend::new())
}

#[test]
fn cold_reader_gets_the_same_results_with_and_without_a_hotcache() {
    let (with, without) = (memory(), memory());
    let hot_writes = write_index(&with, true);
    let plain_writes = write_index(&without, false);
    // What the hotcache costs the writer: its reference opens' reads and the hotcache blobs.
    println!("writer with hotcache {hot_writes:?}, without {plain_writes:?}");
    assert!(block(block(store_on(&with)).entry(&hot_path()))
        .unwrap()
        .is_some());
    // An index written without a hotcache (as by an older adapter) opens as before.
    assert!(block(block(store_on(&without)).entry(&hot_path()))
        .unwrap()
        .is_none());
    let (hot_open, hot_hits) = cold_read(&with);
    let (plain_open, plain_hits) = cold_read(&without);
    assert!(hot_hits.iter().any(|h| h.len() > 10));
    assert_eq!(hot_hits, plain_hits);
    println!("open with hotcache {hot_open:?}, without {plain_open:?}");
    assert!(
        hot_open.get + hot_open.get_range < plain_open.get + plain_open.get_range,
        "with {hot_open:?}, without {plain_open:?}"
    );
}

#[test]
fn damaged_or_stale_hotcache_falls_back_to_the_files() {
    let raw = memory();
    write_index(&raw, true);
    let store = block(store_on(&raw));
    let old = block(store.read_bytes(&hot_path())).unwrap();
    // One more commit (a new meta.json, so a new hotcache).
    {
        let adapter = adapter_on(store.clone(), true);
        let index = Index::open(adapter).unwrap();
        let (_, fields) = schema();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 50_000_000).unwrap();
        add_docs(&writer, &fields, DOCS..DOCS + 1);
        writer.commit().unwrap();
        let ids = index.searchable_segment_ids().unwrap();
        writer.merge(&ids).wait().unwrap();
        writer.wait_merging_threads().unwrap();
    }
    let (good_open, expected) = cold_read(&raw);
    let good = block(store.read_bytes(&hot_path())).unwrap();
    assert_ne!(good, old);

    // Stale: the hotcache of an earlier version (another meta.json) put back in place.
    block(store.write_bytes(&hot_path(), old)).unwrap();
    let (stale_open, hits) = cold_read(&raw);
    assert_eq!(hits, expected);
    assert!(stale_open.total() > good_open.total(), "{stale_open:?}");

    // Damaged: one flipped bit (its checksum fails), truncated, or not a hotcache at all.
    let mut flipped = good.to_vec();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    for bad in [
        Bytes::from(flipped),
        good.slice(..good.len() - 1),
        Bytes::from_static(b"{\"not\": \"a hotcache\"}"),
    ] {
        block(store.write_bytes(&hot_path(), bad)).unwrap();
        let (open, hits) = cold_read(&raw);
        assert_eq!(hits, expected);
        assert!(open.total() > good_open.total(), "{open:?}");
    }
}
