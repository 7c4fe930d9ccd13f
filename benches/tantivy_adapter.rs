//! tantivy on `TantivyStorageAdapter` (over `LocalStorage`) against tantivy's own
//! `MmapDirectory`, side by side in one run, on a real text corpus: the `.rs`, `.md` and
//! `.txt` files under `~/.cargo/registry/src/`, one document per 40 lines.
//!
//! Prints the indexing time ratio (adapter / mmap, target <= 1.1) and warm top-10 query
//! QPS ratios for rare terms, common terms, AND and phrase queries (target >= 0.95).
//!
//! Environment: `SEGSTORE_BENCH_DOCS` caps the number of documents (default: all),
//! `SEGSTORE_BENCH_ROUNDS` sets how many alternating indexing rounds to take the best of
//! (default 3), `SEGSTORE_BENCH_QUERY_SECS` the measuring time per query class and side
//! (default 6).
//!
//! Then the remote part (`benches/tantivy/remote.rs`): the same one-segment query index on
//! S3 (moto) and on the cached tier; cold open to first query, GET requests per query, and
//! warm QPS against the same `MmapDirectory` index. `SEGSTORE_BENCH_REMOTE=0` skips it,
//! `SEGSTORE_BENCH_LOCAL=0` skips the local indexing rounds and QPS (the query index is
//! still built), `SEGSTORE_BENCH_COLD_ROUNDS` (default 5) and `SEGSTORE_BENCH_COLD_QUERIES`
//! (per class, default 10) size the cold measurements.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "tantivy/remote.rs"]
mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use segstore::{LocalStorage, SegmentStorage, TantivyStorageAdapter};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{Query, QueryParser};
use tantivy::schema::{Field, Schema, STORED, STRING, TEXT};
use tantivy::{doc, Directory, Index, IndexWriter, Searcher};

const LINES_PER_DOC: usize = 40;
const COMMIT_EVERY: usize = 25_000;
const WRITER_BUDGET: usize = 256_000_000;
/// Large enough for the whole corpus to become one segment.
const QUERY_INDEX_BUDGET: usize = 2_000_000_000;

struct Corpus {
    docs: Vec<(String, String)>,
    bytes: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_files(&path, out);
        } else if kind.is_file()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rs" | "md" | "txt")
            )
        {
            out.push(path);
        }
    }
}

fn load_corpus(max_docs: usize) -> Corpus {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut files = Vec::new();
    let registry = Path::new(&home).join(".cargo/registry/src");
    collect_files(&registry, &mut files);
    files.sort();
    let mut docs = Vec::new();
    let mut bytes = 0;
    'files: for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for (i, chunk) in lines.chunks(LINES_PER_DOC).enumerate() {
            if docs.len() >= max_docs {
                break 'files;
            }
            let body = chunk.join("\n");
            bytes += body.len();
            docs.push((format!("{}#{i}", file.display()), body));
        }
    }
    Corpus { docs, bytes }
}

fn schema() -> (Schema, Field, Field) {
    let mut builder = Schema::builder();
    let path = builder.add_text_field("path", STRING | STORED);
    let body = builder.add_text_field("body", TEXT);
    (builder.build(), path, body)
}

/// Indexes the corpus into `dir` and returns the index and the time it took (including
/// commits and merges).
fn index_into(dir: Box<dyn Directory>, corpus: &Corpus) -> (Index, Duration) {
    let (schema, path, body) = schema();
    let index = Index::create(dir, schema, Default::default()).expect("create index");
    let start = Instant::now();
    let mut writer: IndexWriter = index.writer(WRITER_BUDGET).expect("writer");
    for (i, (p, b)) in corpus.docs.iter().enumerate() {
        writer
            .add_document(doc!(path => p.as_str(), body => b.as_str()))
            .expect("add");
        if (i + 1).is_multiple_of(COMMIT_EVERY) {
            writer.commit().expect("commit");
        }
    }
    writer.commit().expect("commit");
    writer.wait_merging_threads().expect("merges");
    (index, start.elapsed())
}

struct QueryClass {
    name: &'static str,
    queries: Vec<String>,
}

/// Rare terms are sampled from the reference index's term dictionary (document frequency
/// 2 to 30), the other classes are fixed.
fn query_classes(reference: &Searcher, body: Field) -> Vec<QueryClass> {
    let mut rare = Vec::new();
    'segments: for segment in reference.segment_readers() {
        let inverted = segment.inverted_index(body).expect("inverted index");
        let mut stream = inverted.terms().stream().expect("terms");
        let mut n = 0u64;
        while stream.advance() {
            n += 1;
            let df = stream.value().doc_freq;
            if n.is_multiple_of(211) && (2..=30).contains(&df) {
                if let Ok(term) = std::str::from_utf8(stream.key()) {
                    if term.chars().all(|c| c.is_ascii_alphanumeric()) {
                        rare.push(term.to_owned());
                    }
                }
            }
            if rare.len() >= 40 {
                break 'segments;
            }
        }
    }
    let owned = |qs: &[&str]| qs.iter().map(|q| q.to_string()).collect::<Vec<_>>();
    vec![
        QueryClass {
            name: "rare terms",
            queries: rare,
        },
        QueryClass {
            name: "common terms",
            queries: owned(&["fn", "self", "let", "the", "impl", "use", "pub", "return"]),
        },
        QueryClass {
            name: "AND",
            queries: owned(&[
                "+async +await",
                "+error +result",
                "+unsafe +pointer",
                "+thread +spawn",
                "+serde +deserialize",
                "+iterator +next",
            ]),
        },
        QueryClass {
            name: "phrase",
            queries: owned(&[
                "\"pub fn new\"",
                "\"impl default for\"",
                "\"use std io\"",
                "\"the following\"",
                "\"returns an error\"",
                "\"if let some\"",
            ]),
        },
    ]
}

/// Builds the index the queries run on: one indexing thread and one commit, so that both
/// directories hold exactly one segment with identical content (background merges and
/// several indexing threads make the segment layout timing-dependent, which changes query
/// cost more than the directory does).
fn build_query_index(dir: Box<dyn Directory>, corpus: &Corpus) -> (Index, Duration) {
    let (schema, path, body) = schema();
    let index = Index::create(dir, schema, Default::default()).expect("create index");
    let start = Instant::now();
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, QUERY_INDEX_BUDGET)
        .expect("writer");
    for (p, b) in &corpus.docs {
        writer
            .add_document(doc!(path => p.as_str(), body => b.as_str()))
            .expect("add");
    }
    writer.commit().expect("commit");
    writer.wait_merging_threads().expect("merges");
    (index, start.elapsed())
}

/// Runs `queries` on `searcher` for about `secs` seconds; returns queries per second.
fn measure(searcher: &Searcher, queries: &[Box<dyn Query>], secs: f64) -> f64 {
    let collector = TopDocs::with_limit(10).order_by_score();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for q in queries {
            let top = searcher.search(q.as_ref(), &collector).expect("search");
            std::hint::black_box(top);
            done += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

type Queries = Box<dyn Query>;

/// Length of one measuring slice. mmap and adapter slices alternate, so that load from
/// other processes on the machine hits both sides alike.
const SLICE_SECS: f64 = 0.25;

/// Warm single-threaded top-10 QPS of both indexes for one query class: the best slice of
/// each side, and the median of the ratios of adjacent (mmap, adapter) slice pairs.
fn compare_class(
    (mmap, adapter): (&Searcher, &Searcher),
    (qm, qa): (&[Queries], &[Queries]),
    secs: f64,
) -> (f64, f64, f64) {
    for (searcher, queries) in [(mmap, qm), (adapter, qa)] {
        measure(searcher, queries, SLICE_SECS); // warm-up
    }
    let pairs = ((secs / SLICE_SECS / 2.0).ceil() as usize).max(1);
    let (mut best_m, mut best_a) = (0.0f64, 0.0f64);
    let mut ratios = Vec::with_capacity(pairs);
    for i in 0..pairs {
        // Alternate which side goes first, too.
        let (m, a) = if i % 2 == 0 {
            let m = measure(mmap, qm, SLICE_SECS);
            (m, measure(adapter, qa, SLICE_SECS))
        } else {
            let a = measure(adapter, qa, SLICE_SECS);
            (measure(mmap, qm, SLICE_SECS), a)
        };
        best_m = best_m.max(m);
        best_a = best_a.max(a);
        ratios.push(a / m);
    }
    ratios.sort_by(f64::total_cmp);
    (best_m, best_a, ratios[ratios.len() / 2])
}

fn dir_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(es) = std::fs::read_dir(d) {
            for e in es.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out)
                } else {
                    out.push(p)
                }
            }
        }
    }
    walk(dir, &mut files);
    files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let max_docs = env_usize("SEGSTORE_BENCH_DOCS", usize::MAX);
    let local = env_usize("SEGSTORE_BENCH_LOCAL", 1) != 0;
    let rounds = if local {
        env_usize("SEGSTORE_BENCH_ROUNDS", 3).max(1)
    } else {
        0
    };
    let secs = env_usize("SEGSTORE_BENCH_QUERY_SECS", 6) as f64;
    let corpus = load_corpus(max_docs);
    println!(
        "corpus: {} documents, {:.1} MB of text ({} lines per document)",
        corpus.docs.len(),
        corpus.bytes as f64 / 1e6,
        LINES_PER_DOC
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let mut best_mmap = Duration::MAX;
    let mut best_adapter = Duration::MAX;
    let mut round_ratios = Vec::new();
    for round in 0..rounds {
        let mmap_dir = tempfile::tempdir().expect("tempdir");
        let (mmap_index, t_mmap) = index_into(
            Box::new(MmapDirectory::open(mmap_dir.path()).expect("mmap dir")),
            &corpus,
        );
        let store_dir = tempfile::tempdir().expect("tempdir");
        let adapter = rt.block_on(async {
            let store = LocalStorage::open(store_dir.path()).await.expect("store");
            let store: Arc<dyn SegmentStorage> = Arc::new(store);
            TantivyStorageAdapter::open(store, "bench", "shard_0")
                .await
                .expect("adapter")
        });
        let (adapter_index, t_adapter) = index_into(Box::new(adapter), &corpus);
        println!(
            "round {}: indexing mmap {:.2}s ({:.0} MB on disk), adapter {:.2}s ({:.0} MB on disk, \
             with blobs of merged-away segments that only segstore's GC removes)",
            round + 1,
            t_mmap.as_secs_f64(),
            dir_size(mmap_dir.path()) as f64 / 1e6,
            t_adapter.as_secs_f64(),
            dir_size(store_dir.path()) as f64 / 1e6,
        );
        round_ratios.push(t_adapter.as_secs_f64() / t_mmap.as_secs_f64());
        best_mmap = best_mmap.min(t_mmap);
        best_adapter = best_adapter.min(t_adapter);
        drop((mmap_index, adapter_index));
    }
    round_ratios.sort_by(f64::total_cmp);
    let median_round_ratio = round_ratios.get(round_ratios.len() / 2).copied();
    let index_ratio = best_adapter.as_secs_f64() / best_mmap.as_secs_f64();

    let mmap_dir = tempfile::tempdir().expect("tempdir");
    let (mmap_index, t_mmap) = build_query_index(
        Box::new(MmapDirectory::open(mmap_dir.path()).expect("mmap dir")),
        &corpus,
    );
    let store_dir = tempfile::tempdir().expect("tempdir");
    let adapter = rt.block_on(async {
        let store = LocalStorage::open(store_dir.path()).await.expect("store");
        let store: Arc<dyn SegmentStorage> = Arc::new(store);
        TantivyStorageAdapter::open(store, "bench", "shard_0")
            .await
            .expect("adapter")
    });
    let (adapter_index, t_adapter) = build_query_index(Box::new(adapter), &corpus);
    println!(
        "query indexes (1 thread, 1 commit, 1 segment): mmap {:.2}s, adapter {:.2}s, segments {} / {}",
        t_mmap.as_secs_f64(),
        t_adapter.as_secs_f64(),
        mmap_index.searchable_segment_ids().map(|s| s.len()).unwrap_or(0),
        adapter_index.searchable_segment_ids().map(|s| s.len()).unwrap_or(0),
    );

    let (_, _, body) = schema();
    let reference = mmap_index.reader().expect("reader").searcher();
    let classes = query_classes(&reference, body);
    if local {
        local_queries(&classes, (&mmap_index, &adapter_index), secs, body);
        report_indexing(index_ratio, (best_mmap, best_adapter), median_round_ratio);
    }
    drop(adapter_index);
    if env_usize("SEGSTORE_BENCH_REMOTE", 1) != 0 {
        remote::run(&rt, &corpus, &classes, (mmap_dir.path(), &mmap_index), secs);
    }
}

fn report_indexing(
    index_ratio: f64,
    (best_mmap, best_adapter): (Duration, Duration),
    median_round_ratio: Option<f64>,
) {
    let median_round_ratio = median_round_ratio.unwrap_or(f64::NAN);
    println!(
        "\nindexing time ratio adapter/mmap: best-of-rounds {:.3} (mmap {:.2}s, adapter {:.2}s), \
         median of per-round ratios {:.3} (target <= 1.1) {}",
        index_ratio,
        best_mmap.as_secs_f64(),
        best_adapter.as_secs_f64(),
        median_round_ratio,
        verdict(index_ratio <= 1.1 && median_round_ratio <= 1.1)
    );
}

/// Runs every class on both sides, prints a row per class, and returns the mix ratio
/// (every class weighted equally by time per query, best slices) and the worst class's
/// median ratio.
fn class_rows(
    classes: &[QueryClass],
    (mmap_index, mmap): (&Index, &Searcher),
    (index, searcher): (&Index, &Searcher),
    secs: f64,
    body: Field,
) -> (f64, f64) {
    let mut worst = f64::MAX;
    let mut total = (0.0, 0.0);
    for class in classes {
        let parse = |index: &Index| -> Vec<Box<dyn Query>> {
            let parser = QueryParser::for_index(index, vec![body]);
            class
                .queries
                .iter()
                .map(|q| parser.parse_query(q).expect("query"))
                .collect()
        };
        let (qm, qa) = (parse(mmap_index), parse(index));
        let (m, a, ratio) = compare_class((mmap, searcher), (&qm, &qa), secs);
        worst = worst.min(ratio);
        total.0 += 1.0 / m;
        total.1 += 1.0 / a;
        println!(
            "{:<14} {:>8} {:>12.0} {:>12.0} {:>13.3}",
            class.name,
            class.queries.len(),
            m,
            a,
            ratio
        );
    }
    (total.0 / total.1, worst)
}

/// Warm QPS of the local adapter against mmap, per class.
fn local_queries(
    classes: &[QueryClass],
    (mmap_index, adapter_index): (&Index, &Index),
    secs: f64,
    body: Field,
) {
    println!(
        "\nwarm top-10 QPS, one thread, {SLICE_SECS}s slices alternating for {secs}s per side \
         and class (QPS: best slice; ratio: median of paired slices):"
    );
    println!(
        "{:<14} {:>8} {:>12} {:>12} {:>13}",
        "class", "queries", "mmap", "adapter", "ratio (median)"
    );
    let searchers = (
        mmap_index.reader().expect("reader").searcher(),
        adapter_index.reader().expect("reader").searcher(),
    );
    let (mix_ratio, worst) = class_rows(
        classes,
        (mmap_index, &searchers.0),
        (adapter_index, &searchers.1),
        secs,
        body,
    );
    println!(
        "query QPS ratio adapter/mmap, mix (best slices): {:.3}, worst class (median of pairs): {:.3} (target >= 0.95) {}",
        mix_ratio,
        worst,
        verdict(mix_ratio >= 0.95 && worst >= 0.95)
    );
}
