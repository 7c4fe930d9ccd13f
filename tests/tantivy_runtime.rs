//! The adapter called synchronously from async code, as a Prism backend calls it: from one
//! task of a multi-thread `#[tokio::main]` runtime, from a current-thread runtime and from a
//! plain thread. Each run makes well over 10,000 directory calls (opens, reads, writes,
//! commits, reader reloads, a merge, `garbage_collect_files`) without yielding to the
//! runtime once. The work runs on a helper thread with a deadline, so a hang fails the test
//! instead of stalling CI.

mod tantivy_support;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tantivy::collector::Count;
use tantivy::directory::TerminatingWrite;
use tantivy::query::QueryParser;
use tantivy::{Directory, Index, IndexSettings, IndexWriter, ReloadPolicy};
use tantivy_support::*;

/// Far above what the work takes (a few seconds), far below a CI timeout.
const DEADLINE: Duration = Duration::from_secs(120);
/// Directory calls made directly, on top of those tantivy makes.
const DIRECT_CALLS: usize = 10_000;

/// The work: an index with commits, queries through a manual reader, reloads, a merge, a
/// garbage collection, an `OnCommitWithDelay` reader built at the end (where the hang was
/// seen), and [`DIRECT_CALLS`] raw directory calls. Returns the documents seen.
fn workload(root: &Path) -> u64 {
    // The store is opened on a thread of its own: `open_adapter` runs a runtime, which
    // cannot start inside another.
    let owned = root.to_owned();
    let (_store, adapter) = std::thread::spawn(move || open_adapter(&owned))
        .join()
        .unwrap();
    let (schema, fields) = schema();
    let index = Index::create(adapter.clone(), schema, IndexSettings::default()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
    for round in 0..4u64 {
        add_docs(&writer, &fields, round * 500..(round + 1) * 500);
        writer.commit().unwrap();
        reader.reload().unwrap();
        for q in QUERIES {
            let query = parser.parse_query(q).unwrap();
            reader.searcher().search(&query, &Count).unwrap();
        }
    }
    let ids = index.searchable_segment_ids().unwrap();
    assert!(ids.len() > 1, "needs segments to merge");
    writer.merge(&ids).wait().unwrap();
    writer.garbage_collect_files().wait().unwrap();
    reader.reload().unwrap();

    // Raw calls: small files written, committed, read back, probed and deleted.
    let mut calls = 0;
    let mut i = 0u64;
    while calls < DIRECT_CALLS {
        let name = format!("raw-{i}.bin");
        let path = Path::new(&name);
        let mut w = adapter.open_write(path).unwrap();
        std::io::Write::write_all(&mut w, name.as_bytes()).unwrap();
        w.terminate().unwrap();
        let handle = adapter.get_file_handle(path).unwrap();
        assert_eq!(
            handle.read_bytes(0..name.len()).unwrap().as_slice(),
            name.as_bytes()
        );
        assert!(adapter.exists(path).unwrap());
        adapter
            .atomic_write(Path::new("raw-meta.json"), name.as_bytes())
            .unwrap();
        assert_eq!(
            adapter.atomic_read(Path::new("raw-meta.json")).unwrap(),
            name.as_bytes()
        );
        adapter.delete(path).unwrap();
        calls += 7;
        i += 1;
    }

    let on_commit: tantivy::IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::OnCommitWithDelay)
        .try_into()
        .unwrap();
    let docs = on_commit.searcher().num_docs();
    assert_eq!(docs, reader.searcher().num_docs());
    docs
}

/// Runs `work` on a helper thread and fails if it does not finish within [`DEADLINE`].
fn within_deadline(what: &str, work: impl FnOnce() -> u64 + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(docs)) => assert_eq!(docs, 2000, "{what}"),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: directory calls still running after {DEADLINE:?} (hang)"),
    }
}

#[test]
fn many_calls_from_one_task_of_a_multi_thread_runtime() {
    within_deadline("multi-thread runtime task", || {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let root = dir.path().to_owned();
        // Like `#[tokio::main]`: the block_on future, and a spawned task, both run it.
        runtime.block_on(async move {
            let spawned = root.join("spawned");
            let task = tokio::spawn(async move { workload(&spawned) });
            let docs = workload(&root.join("main"));
            assert_eq!(task.await.unwrap(), docs);
            docs
        })
    });
}

#[test]
fn many_calls_from_a_current_thread_runtime() {
    within_deadline("current-thread runtime", || {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = dir.path().to_owned();
        runtime.block_on(async move { workload(&root) })
    });
}

#[test]
fn many_calls_from_a_plain_thread() {
    within_deadline("plain thread", || {
        let dir = tempfile::tempdir().unwrap();
        workload(dir.path())
    });
}
