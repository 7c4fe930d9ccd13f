//! tantivy indexes on `TantivyStorageAdapter`: creation, reopening, locking, reloads across
//! adapter instances and processes, garbage collection, crash safety, and concurrent
//! searchers.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod tantivy_support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use segstore::{SegmentStorage, StorageBackend, StoragePath};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::error::LockError;
use tantivy::query::{AllQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{
    Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, Order, ReloadPolicy,
    TantivyDocument, TantivyError, Term,
};
use tantivy_support::*;

fn wait_for(reader: &IndexReader, docs: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.searcher().num_docs() != docs {
        assert!(
            Instant::now() < deadline,
            "reader stuck at {} docs, expected {docs}",
            reader.searcher().num_docs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn file_count(store: &segstore::LocalStorage) -> usize {
    let prefix = StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, "");
    block(store.list(&prefix)).unwrap().len()
}

#[test]
fn open_or_create_then_reopen_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    {
        let (_store, adapter) = open_adapter(dir.path());
        let index = Index::open_or_create(adapter, schema.clone()).unwrap();
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        add_docs(&writer, &fields, 0..100);
        writer.commit().unwrap();
        assert_eq!(num_docs(&index), 100);
    }
    let (_store, adapter) = open_adapter(dir.path());
    let index = Index::open_or_create(adapter, schema).unwrap();
    assert_eq!(num_docs(&index), 100);
    let searcher = index.reader().unwrap().searcher();
    let query = TermQuery::new(
        Term::from_field_u64(fields.id, 42),
        IndexRecordOption::Basic,
    );
    let top = searcher
        .search(&query, &TopDocs::with_limit(1).order_by_score())
        .unwrap();
    let doc: TantivyDocument = searcher.doc(top[0].1).unwrap();
    assert_eq!(id_of(&doc, &fields), 42);
}

#[test]
fn create_wipes_an_existing_index() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    // Strict: the second store's re-creation must be visible to this one at once.
    let (_store, adapter) = open_strict_adapter(dir.path());
    let index = Index::create(adapter.clone(), schema.clone(), IndexSettings::default()).unwrap();
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
    add_docs(&writer, &fields, 0..50);
    writer.commit().unwrap();
    drop(writer);
    assert_eq!(num_docs(&index), 50);

    let (_store2, adapter2) = open_adapter(dir.path());
    let fresh = Index::create(adapter2, schema, IndexSettings::default()).unwrap();
    assert_eq!(num_docs(&fresh), 0);
    assert_eq!(num_docs(&Index::open(adapter).unwrap()), 0);
}

#[test]
fn a_second_writer_gets_lock_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, _) = schema();
    let (store, adapter) = open_adapter(dir.path());
    let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
    let _writer: IndexWriter = index.writer(15_000_000).unwrap();
    let second = index.writer::<TantivyDocument>(15_000_000);
    assert!(matches!(
        second,
        Err(TantivyError::LockFailure(LockError::LockBusy, _))
    ));
    // Also through another adapter instance over the same store.
    let other = block(segstore::TantivyStorageAdapter::open(
        Arc::new(store),
        COLLECTION,
        SHARD,
    ))
    .unwrap();
    let third = Index::open(other)
        .unwrap()
        .writer::<TantivyDocument>(15_000_000);
    assert!(matches!(
        third,
        Err(TantivyError::LockFailure(LockError::LockBusy, _))
    ));
}

#[test]
fn reload_on_commit_across_two_adapter_instances_and_manual_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let (_s1, writer_side) = open_adapter(dir.path());
    let index = Index::create(writer_side, schema, IndexSettings::default()).unwrap();
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();

    // A separately opened store: it shares nothing in memory with the writer's.
    let (_s2, reader_side) = open_adapter(dir.path());
    let reader_index = Index::open(reader_side).unwrap();
    let auto = reader_index
        .reader_builder()
        .reload_policy(ReloadPolicy::OnCommitWithDelay)
        .try_into()
        .unwrap();
    let manual = reader_index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    assert_eq!(auto.searcher().num_docs(), 0);

    add_docs(&writer, &fields, 0..30);
    writer.commit().unwrap();
    wait_for(&auto, 30);
    add_docs(&writer, &fields, 30..45);
    writer.commit().unwrap();
    wait_for(&auto, 45);

    assert_eq!(manual.searcher().num_docs(), 0);
    manual.reload().unwrap();
    assert_eq!(manual.searcher().num_docs(), 45);
}

#[test]
fn gc_after_merges_shrinks_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let (store, adapter) = open_adapter(dir.path());
    let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
    for round in 0..5 {
        add_docs(&writer, &fields, round * 20..round * 20 + 20);
        writer.commit().unwrap();
    }
    let before = file_count(&store);
    let segments = index.searchable_segment_ids().unwrap();
    assert_eq!(segments.len(), 5);
    writer.merge(&segments).wait().unwrap();
    writer.garbage_collect_files().wait().unwrap();
    let after = file_count(&store);
    assert!(after < before, "{after} files after GC, {before} before");
    assert_eq!(index.searchable_segment_ids().unwrap().len(), 1);
    assert_eq!(num_docs(&index), 100);
    // Every committed file is still readable after a restart.
    drop(writer);
    let (_store, adapter) = open_adapter(dir.path());
    assert_eq!(num_docs(&Index::open(adapter).unwrap()), 100);
}

#[test]
fn a_crash_before_meta_json_keeps_the_previous_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let committed_files;
    {
        let (store, adapter) = open_adapter(dir.path());
        let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        add_docs(&writer, &fields, 0..40);
        writer.commit().unwrap();
        committed_files = file_count(&store);
        add_docs(&writer, &fields, 40..100);
        // Segments are written and terminated, but meta.json is never written.
        let prepared = writer.prepare_commit().unwrap();
        drop(prepared);
        assert_eq!(file_count(&store), committed_files);
        // The process "dies": everything of this adapter is dropped.
    }
    let (store, adapter) = open_adapter(dir.path());
    assert_eq!(file_count(&store), committed_files);
    let index = Index::open(adapter).unwrap();
    assert_eq!(num_docs(&index), 40);
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
    add_docs(&writer, &fields, 100..110);
    writer.commit().unwrap();
    assert_eq!(num_docs(&index), 50);
}

#[test]
fn searchers_never_miss_files_during_commits_merges_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let (_store, adapter) = open_adapter(dir.path());
    let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    let mut policy = tantivy::merge_policy::LogMergePolicy::default();
    policy.set_min_num_segments(2);
    writer.set_merge_policy(Box::new(policy));
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let searchers: Vec<_> = (0..2)
        .map(|_| {
            let reader: IndexReader = reader.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> tantivy::Result<usize> {
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) {
                    reader.reload()?;
                    let searcher = reader.searcher();
                    let count = searcher.search(&AllQuery, &Count)?;
                    assert_eq!(count as u64, searcher.num_docs());
                    for (_, addr) in
                        searcher.search(&AllQuery, &TopDocs::with_limit(3).order_by_score())?
                    {
                        let _doc: TantivyDocument = searcher.doc(addr)?;
                    }
                    rounds += 1;
                }
                Ok(rounds)
            })
        })
        .collect();
    for round in 0..12u64 {
        add_docs(&writer, &fields, round * 10..round * 10 + 10);
        if round % 3 == 2 {
            writer.delete_term(Term::from_field_u64(fields.id, round * 10));
        }
        writer.commit().unwrap();
    }
    writer.wait_merging_threads().unwrap();
    stop.store(true, Ordering::Relaxed);
    for s in searchers {
        let rounds = s.join().unwrap().expect("a searcher failed");
        assert!(rounds > 0);
    }
    assert_eq!(num_docs(&index), 120 - 4);
}

/// Two writers on two stores (as two processes): B's reader reloading onto A's commit must
/// not make B's stale writer overwrite it.
#[test]
fn a_reader_reload_does_not_let_a_stale_writer_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let (_sa, a) = open_adapter(dir.path());
    let index_a = Index::create(a, schema, IndexSettings::default()).unwrap();
    let mut writer_a: IndexWriter = index_a.writer_with_num_threads(1, 15_000_000).unwrap();
    add_docs(&writer_a, &fields, 0..10);
    writer_a.commit().unwrap();

    // Strict: the manual reload below must see A's commit at once, not within the read bound.
    let (_sb, b) = open_strict_adapter(dir.path());
    let index_b = Index::open(b).unwrap();
    let mut writer_b: IndexWriter = index_b.writer_with_num_threads(1, 15_000_000).unwrap();
    let reader_b = index_b
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();

    add_docs(&writer_a, &fields, 10..30);
    writer_a.commit().unwrap();
    reader_b.reload().unwrap();
    assert_eq!(reader_b.searcher().num_docs(), 30);

    add_docs(&writer_b, &fields, 100..105);
    let err = writer_b
        .commit()
        .expect_err("B's writer started before A's second commit");
    assert!(err.to_string().contains("conflict"), "{err}");
    // A's commit survives.
    let (_sc, c) = open_adapter(dir.path());
    assert_eq!(num_docs(&Index::open(c).unwrap()), 30);
}

#[test]
fn sort_by_field_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, fields) = schema();
    let (store, adapter) = open_adapter(dir.path());
    let settings = IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: "id".to_string(),
            order: Order::Desc,
        }),
        ..IndexSettings::default()
    };
    let index = Index::create(adapter, schema, settings).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    add_docs(&writer, &fields, 0..30);
    writer.commit().unwrap();
    writer.delete_term(Term::from_field_u64(fields.id, 29));
    writer.delete_term(Term::from_field_u64(fields.id, 3));
    writer.commit().unwrap();

    let prefix = StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, "");
    let names = block(store.list(&prefix)).unwrap();
    assert!(names.iter().any(|p| p.segment.ends_with(".del")));

    let (_store, adapter) = open_adapter(dir.path());
    let index = Index::open(adapter).unwrap();
    assert_eq!(
        index
            .settings()
            .sort_by_field
            .as_ref()
            .map(|s| s.field.as_str()),
        Some("id")
    );
    let searcher = index.reader().unwrap().searcher();
    assert_eq!(searcher.num_docs(), 28);
    let segment = searcher.segment_reader(0);
    let ids: Vec<u64> = segment
        .doc_ids_alive()
        .map(|d| {
            let doc: TantivyDocument = searcher.doc(tantivy::DocAddress::new(0, d)).unwrap();
            id_of(&doc, &fields)
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "documents are stored in id order, descending");
    assert_eq!(ids.first(), Some(&28));
}

const CHILD_ENV: &str = "SEGSTORE_TANTIVY_CHILD_ROOT";

/// Not a test on its own: the body of the writer process in the test below.
#[test]
fn child_index_writer() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (_, fields) = schema();
    let (_store, adapter) = open_adapter(std::path::Path::new(&root));
    let index = Index::open(adapter).unwrap();
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
    add_docs(&writer, &fields, 0..25);
    writer.commit().unwrap();
    add_docs(&writer, &fields, 25..40);
    writer.commit().unwrap();
}

#[test]
fn reload_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, _) = schema();
    let (_store, adapter) = open_adapter(dir.path());
    let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::OnCommitWithDelay)
        .try_into()
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_index_writer", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&reader, 40);
}
