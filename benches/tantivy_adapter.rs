//! tantivy on `TantivyStorageAdapter` (over `LocalStorage`) against tantivy's own
//! `MmapDirectory`, side by side in one run, on a real text corpus: the `.rs`, `.md` and
//! `.txt` files under `~/.cargo/registry/src/`, one document per 40 lines.
//!
//! Prints the indexing time ratio (adapter / mmap, target <= 1.1) and warm top-10 query
//! QPS ratios for rare terms, common terms, AND and phrase queries (target >= 0.95).
//!
//! Environment: `SEGSTORE_BENCH_DOCS` caps the number of documents (default: all),
//! `SEGSTORE_BENCH_ROUNDS` sets how many alternating rounds to take the best of (default 2),
//! `SEGSTORE_BENCH_QUERY_SECS` the measuring time per query class and round (default 2).

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

/// Merges every segment of `index` into one, so that both indexes are queried with the
/// same structure (background merges make segment counts timing-dependent). Returns the
/// number of segments before and the time the merge took.
fn merge_to_one(index: &Index) -> (usize, Duration) {
    let segments = index.searchable_segment_ids().expect("segments");
    let start = Instant::now();
    let mut writer: IndexWriter = index.writer(WRITER_BUDGET).expect("writer");
    if segments.len() > 1 {
        writer.merge(&segments).wait().expect("merge");
    }
    writer.wait_merging_threads().expect("merges");
    (segments.len(), start.elapsed())
}

/// Warm QPS of one query class on one index, single-threaded, top 10 by score.
fn measure(index: &Index, queries: &[Box<dyn Query>], secs: f64) -> f64 {
    let searcher = index.reader().expect("reader").searcher();
    let collector = TopDocs::with_limit(10).order_by_score();
    for q in queries {
        searcher.search(q.as_ref(), &collector).expect("warm-up");
    }
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
    let rounds = env_usize("SEGSTORE_BENCH_ROUNDS", 2).max(1);
    let secs = env_usize("SEGSTORE_BENCH_QUERY_SECS", 2) as f64;
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
    let mut indexes = None;
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
        best_mmap = best_mmap.min(t_mmap);
        best_adapter = best_adapter.min(t_adapter);
        indexes = Some((mmap_index, mmap_dir, adapter_index, store_dir));
    }
    let Some((mmap_index, _mmap_dir, adapter_index, _store_dir)) = indexes else {
        return;
    };
    let index_ratio = best_adapter.as_secs_f64() / best_mmap.as_secs_f64();
    let (seg_m, merge_m) = merge_to_one(&mmap_index);
    let (seg_a, merge_a) = merge_to_one(&adapter_index);
    println!(
        "force merge to one segment: mmap {} segments in {:.2}s, adapter {} segments in {:.2}s",
        seg_m,
        merge_m.as_secs_f64(),
        seg_a,
        merge_a.as_secs_f64()
    );

    let (_, _, body) = schema();
    let reference = mmap_index.reader().expect("reader").searcher();
    let classes = query_classes(&reference, body);
    let query_rounds = rounds + 1;
    println!(
        "\nwarm top-10 QPS on the merged indexes, one thread, best of {query_rounds} alternating rounds of {secs}s:"
    );
    println!(
        "{:<14} {:>8} {:>12} {:>12} {:>7}",
        "class", "queries", "mmap", "adapter", "ratio"
    );
    let mut worst = f64::MAX;
    let mut total = (0.0, 0.0);
    for class in &classes {
        let parse = |index: &Index| -> Vec<Box<dyn Query>> {
            let parser = QueryParser::for_index(index, vec![body]);
            class
                .queries
                .iter()
                .map(|q| parser.parse_query(q).expect("query"))
                .collect()
        };
        let (qm, qa) = (parse(&mmap_index), parse(&adapter_index));
        let (mut m, mut a) = (0.0f64, 0.0f64);
        for _ in 0..query_rounds {
            m = m.max(measure(&mmap_index, &qm, secs));
            a = a.max(measure(&adapter_index, &qa, secs));
        }
        let ratio = a / m;
        worst = worst.min(ratio);
        total.0 += 1.0 / m;
        total.1 += 1.0 / a;
        println!(
            "{:<14} {:>8} {:>12.0} {:>12.0} {:>7.3}",
            class.name,
            class.queries.len(),
            m,
            a,
            ratio
        );
    }
    // Mix: every class weighted equally by time per query.
    let mix_ratio = total.0 / total.1;
    println!(
        "\nindexing time ratio adapter/mmap: {:.3} (mmap {:.2}s, adapter {:.2}s; target <= 1.1) {}",
        index_ratio,
        best_mmap.as_secs_f64(),
        best_adapter.as_secs_f64(),
        verdict(index_ratio <= 1.1)
    );
    println!(
        "query QPS ratio adapter/mmap, mix: {:.3}, worst class: {:.3} (target >= 0.95) {}",
        mix_ratio,
        worst,
        verdict(mix_ratio >= 0.95 && worst >= 0.95)
    );
}
