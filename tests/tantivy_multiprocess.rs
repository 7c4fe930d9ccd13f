//! A reader process against a writer process that merges and garbage-collects in a loop:
//! every reload opens one consistent version, and never fails.
//!
//! Scale with `SEGSTORE_TANTIVY_RELOADS` (reloads of the reader; default 200).

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod tantivy_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tantivy::collector::{Count, TopDocs};
use tantivy::query::AllQuery;
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument};
use tantivy_support::*;

const ROOT_ENV: &str = "SEGSTORE_TANTIVY_MP_ROOT";
const RELOADS_ENV: &str = "SEGSTORE_TANTIVY_RELOADS";
/// The child stops when the file this names appears.
const STOP_ENV: &str = "SEGSTORE_TANTIVY_MP_STOP";
/// The child gives up after this long, so that nothing hangs if the parent dies.
const CHILD_LIMIT: Duration = Duration::from_secs(600);

/// Not a test on its own: the body of the writer process of the test below. Adds a few
/// documents, commits, merges every segment once there are four, collects garbage; again,
/// until told to stop.
#[test]
fn child_merging_writer() {
    let Ok(root) = std::env::var(ROOT_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    let stop = PathBuf::from(std::env::var(STOP_ENV).unwrap());
    let (_, fields) = schema();
    let (_store, adapter) = open_adapter(&root);
    let index = Index::open(adapter).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
    let started = Instant::now();
    let mut next = 1000u64;
    let mut rounds = 0;
    while !stop.exists() && started.elapsed() < CHILD_LIMIT {
        add_docs(&writer, &fields, next..next + 5);
        next += 5;
        writer.commit().unwrap();
        let ids = index.searchable_segment_ids().unwrap();
        // Several segments per version, so that a reload opens many files.
        if ids.len() >= 4 {
            writer.merge(&ids).wait().unwrap();
        }
        writer.garbage_collect_files().wait().unwrap();
        rounds += 1;
    }
    println!("WRITER ROUNDS {rounds}");
}

fn reload_and_search(reader: &IndexReader) -> tantivy::Result<u64> {
    reader.reload()?;
    let searcher = reader.searcher();
    let count = searcher.search(&AllQuery, &Count)? as u64;
    assert_eq!(count, searcher.num_docs(), "one consistent version");
    for (_, addr) in searcher.search(&AllQuery, &TopDocs::with_limit(3).order_by_score())? {
        let _doc: TantivyDocument = searcher.doc(addr)?;
    }
    Ok(count)
}

#[test]
fn a_reader_process_reloads_cleanly_while_a_writer_process_merges_and_collects() {
    let target: usize = std::env::var(RELOADS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let (root, stop) = (tmp.path().join("store"), tmp.path().join("stop"));
    let (schema, fields) = schema();
    {
        let (_store, adapter) = open_adapter(&root);
        let index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        add_docs(&writer, &fields, 0..100);
        writer.commit().unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_merging_writer", "--nocapture"])
        .env(ROOT_ENV, &root)
        .env(STOP_ENV, &stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // The reader: a separately opened store, as in another process. Strict, so that every
    // manual reload asks for the newest version (a bounded store would serve the same one
    // for up to a second, and the loop could end before the writer's commits show).
    let (_store, adapter) = open_strict_adapter(&root);
    let index = Index::open(adapter).unwrap();
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let mut errors = Vec::new();
    let (mut reloads, mut changes, mut last) = (0usize, 0usize, 0u64);
    while reloads < target {
        match reload_and_search(&reader) {
            Ok(count) => {
                changes += usize::from(count != last);
                last = count;
            }
            Err(e) => errors.push(e.to_string()),
        }
        reloads += 1;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the writer ended early: {status}");
        }
    }
    std::fs::write(&stop, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "writer failed: {stdout}");
    eprintln!(
        "{reloads} reloads, {changes} saw a new version, {} errors; writer: {}",
        errors.len(),
        stdout
            .lines()
            .find(|l| l.contains("WRITER ROUNDS"))
            .unwrap_or("?")
    );
    assert!(changes > 1, "the writer's commits were never seen");
    assert!(
        errors.is_empty(),
        "{} of {reloads} reloads failed, first: {}",
        errors.len(),
        errors[0]
    );
}
