//! `segstore demo`: the main job, end to end in seconds on the embedded local store.
//!
//! 1. index a sample corpus (segstore's own documentation, shipped in the binary) with
//!    Tantivy through the segstore `Directory` adapter;
//! 2. commit (one manifest version holds the whole Tantivy commit);
//! 3. take a snapshot;
//! 4. rename and delete segment files, as a bad deploy might;
//! 5. restore the snapshot;
//! 6. run GC and verify;
//! 7. search;
//! 8. print a summary.

use segstore::clock::{self, Stamp};
use std::sync::Arc;

use segstore::gc::{GcOptions, VerifyOptions};
use segstore::{
    Error, Result, SegmentStorage, StorageBackend, StoragePath, Store, TantivyStorageAdapter,
    Target,
};
use serde_json::json;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, Value, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter, ReloadPolicy, TantivyDocument};

const COLLECTION: &str = "demo";
const SHARD: &str = "shard_0";
const SNAPSHOT: &str = "after-indexing";

/// The sample corpus: segstore's own documents.
const CORPUS: [(&str, &str); 5] = [
    ("README.md", include_str!("../../../README.md")),
    (
        "ARCHITECTURE.md",
        include_str!("../../../docs/ARCHITECTURE.md"),
    ),
    ("FORMAT.md", include_str!("../../../docs/FORMAT.md")),
    ("OPERATIONS.md", include_str!("../../../docs/OPERATIONS.md")),
    ("lib.rs", include_str!("../../../src/lib.rs")),
];

/// Paragraphs of the corpus, as (title, body) documents.
fn documents() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, text) in CORPUS {
        for (i, para) in text.split("\n\n").enumerate() {
            let body = para.trim();
            if body.len() > 40 {
                out.push((format!("{file} #{i}"), body.to_owned()));
            }
        }
    }
    out
}

fn tantivy_err(e: impl std::fmt::Display) -> Error {
    Error::backend("running tantivy", e.to_string())
}

/// Runs the demo and prints what happened.
pub async fn run(store: &Store, location: &str, json: bool) -> Result<()> {
    let clock = clock::system();
    let started = Stamp::now(clock.as_ref());
    let mut steps = Vec::new();
    let mut say = |line: String| {
        if !json {
            println!("{line}");
        }
        steps.push(line);
    };
    say(format!("segstore demo in {location}"));
    let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
    let adapter = TantivyStorageAdapter::open(shared, COLLECTION, SHARD).await?;

    // 1-2. Index and commit: Tantivy's meta.json write is the segstore commit.
    let docs = documents();
    let doc_count = docs.len();
    let indexing = adapter.clone();
    let segment_files = tokio::task::spawn_blocking(move || -> Result<usize> {
        let mut builder = Schema::builder();
        let title = builder.add_text_field("title", TEXT | STORED);
        let body = builder.add_text_field("body", TEXT | STORED);
        let index =
            Index::create(indexing, builder.build(), Default::default()).map_err(tantivy_err)?;
        let mut writer: IndexWriter = index.writer(50_000_000).map_err(tantivy_err)?;
        for (t, b) in &docs {
            writer
                .add_document(doc!(title => t.as_str(), body => b.as_str()))
                .map_err(tantivy_err)?;
        }
        writer.commit().map_err(tantivy_err)?;
        Ok(index.searchable_segment_ids().map_err(tantivy_err)?.len())
    })
    .await
    .map_err(tantivy_err)??;
    let committed = store.head(COLLECTION).await?;
    say(format!(
        "1-2. indexed {doc_count} paragraphs into {segment_files} segment(s); committed as version {}",
        committed.version
    ));

    // 3. Snapshot.
    let _ = store.delete_snapshot(COLLECTION, SNAPSHOT).await; // a previous run's
    let snap = store
        .create_snapshot(COLLECTION, SNAPSHOT, None, None)
        .await?;
    say(format!(
        "3.   snapshot {SNAPSHOT:?} pins version {}",
        snap.version
    ));

    // 4. Damage: rename one segment file and delete the others.
    let prefix = StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, "");
    let files = store.list(&prefix).await?;
    let segments: Vec<_> = files
        .iter()
        .filter(|p| !p.segment.ends_with(".json"))
        .cloned()
        .collect();
    if let Some(first) = segments.first() {
        let renamed = StoragePath {
            segment: format!("{}.moved", first.segment),
            ..first.clone()
        };
        store.rename(first, &renamed).await?;
        for p in &segments[1..] {
            store.delete(p).await?;
        }
        say(format!(
            "4.   renamed {} and deleted {} more segment files (the index is now broken)",
            first.segment,
            segments.len() - 1
        ));
    }

    // 5. Restore.
    let restored = store
        .restore(COLLECTION, &Target::Snapshot(SNAPSHOT.into()))
        .await?;
    say(format!(
        "5.   restored {SNAPSHOT:?} as version {} (history kept)",
        restored.version
    ));

    // 6. GC and verify.
    let gc = store.gc(&GcOptions::default()).await?;
    let verify = store.verify(&VerifyOptions::default()).await?;
    say(format!(
        "6.   gc: {} blobs deleted, {} young unreferenced kept (grace period); verify: {} of {} blobs checked, {}",
        gc.blobs_deleted,
        gc.young_unreferenced,
        verify.blobs_checked,
        verify.blobs_referenced,
        if verify.is_healthy() { "healthy" } else { "DAMAGED" }
    ));

    // 7. Search the restored index.
    let searching = adapter.clone();
    let hits = tokio::task::spawn_blocking(move || -> Result<Vec<(f32, String)>> {
        let index = Index::open(searching).map_err(tantivy_err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_err)?;
        let schema = index.schema();
        let title = schema.get_field("title").map_err(tantivy_err)?;
        let body = schema.get_field("body").map_err(tantivy_err)?;
        let query = QueryParser::for_index(&index, vec![title, body])
            .parse_query("\"content addressed\" OR crash")
            .map_err(tantivy_err)?;
        let searcher = reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(3).order_by_score())
            .map_err(tantivy_err)?;
        let mut out = Vec::new();
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(tantivy_err)?;
            let t = doc
                .get_first(title)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            out.push((score, t));
        }
        Ok(out)
    })
    .await
    .map_err(tantivy_err)??;
    say(format!(
        "7.   search '\"content addressed\" OR crash': {} hits",
        hits.len()
    ));
    for (score, title) in &hits {
        say(format!("       {score:>6.2}  {title}"));
    }

    // 8. Summary.
    let stats = store.stats().await?;
    let head = store.head(COLLECTION).await?;
    let elapsed = started.elapsed(clock.as_ref());
    if json {
        println!(
            "{}",
            json!({
                "collection": COLLECTION,
                "documents": doc_count,
                "version": head.version,
                "files": head.file_count(),
                "logical_bytes": stats.logical_bytes,
                "blobs": stats.blobs,
                "physical_bytes": stats.physical_bytes,
                "healthy": verify.is_healthy(),
                "hits": hits.len(),
                "elapsed_ms": elapsed.as_millis() as u64,
                "steps": steps,
            })
        );
    } else {
        println!(
            "8.   summary: version {}, {} files, {} logical bytes in {} blobs of {} bytes, {} hits, {:.2?}",
            head.version,
            head.file_count(),
            stats.logical_bytes,
            stats.blobs,
            stats.physical_bytes,
            hits.len(),
            elapsed
        );
    }
    if hits.is_empty() || !verify.is_healthy() {
        return Err(Error::backend(
            "running the demo",
            "the restored index did not answer",
        ));
    }
    Ok(())
}
